"""A dataset of many clips in tensorstore zarr arrays: local paths or any kvstore.

Layout under the dataset root (a local folder, or a kvstore URL such as
`gs://bucket/path/` or `memory://name/`):

  dataset.json          metadata (DatasetInfo as JSON)
  progress.json         {"complete_chunks": k}: clips [0, k * chunk_clips) are complete
  xy_px/                (c, T, N, 2) float32   zarr arrays, c = num_clips, padded to
  visible/              (c, T, N)    bool        T = max_frames, N = max_tracks
  intrinsics/           (c, T, 3, 3) float32
  image_hw/             (c, 2)       int32
  num_frames/           (c,)         int32     real length of each clip
  num_tracks/           (c,)         int32     real track count of each clip
  query_frame/          (c, N)       int32
  intrinsics_known/     (c,)         bool
  family/, camera/      (c,)         int32     index into info.families / info.cameras (-1 unknown)
  gt_w2c/ gt_depth/ gt_xyz_world/ gt_dynamic/   ground truth, when info.has_gt

Writes go chunk by chunk (one zarr chunk = `chunk_clips` clips along c); after a
chunk's arrays are all written, progress.json is rewritten (atomically by the
kvstore). A writer killed at any moment leaves every chunk below the recorded
progress complete; resuming rewrites from there. Readers only see complete clips.
The storage itself (opening, checking, progress) is `tracks4d.io.zarr_store`'s.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Sequence

import numpy as np

from tracks4d.io.zarr_store import ChunkedZarrStore, Layout
from tracks4d.io.zarr_store import kvstore_spec  # Re-exported: it was defined here first.
from tracks4d.tracks import GroundTruth, Tracks, pad_tracks

FORMAT_VERSION = 1

# name: (dtype, trailing shape as a function of (T, N)).
_ARRAYS = {
    "xy_px": ("float32", lambda T, N: (T, N, 2)),
    "visible": ("bool", lambda T, N: (T, N)),
    "intrinsics": ("float32", lambda T, N: (T, 3, 3)),
    "image_hw": ("int32", lambda T, N: (2,)),
    "num_frames": ("int32", lambda T, N: ()),
    "num_tracks": ("int32", lambda T, N: ()),
    "query_frame": ("int32", lambda T, N: (N,)),
    "intrinsics_known": ("bool", lambda T, N: ()),
    "family": ("int32", lambda T, N: ()),
    "camera": ("int32", lambda T, N: ()),
}
_GT_ARRAYS = {
    "gt_w2c": ("float32", lambda T, N: (T, 4, 4)),
    "gt_depth": ("float32", lambda T, N: (T, N)),
    "gt_xyz_world": ("float32", lambda T, N: (T, N, 3)),
    "gt_dynamic": ("bool", lambda T, N: (T, N)),
}


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """What a dataset holds.

  Attributes:
    num_clips: number of clips c.
    max_frames: padded time size T.
    max_tracks: padded track count N.
    chunk_clips: clips per zarr chunk (and per commit).
    has_gt: whether ground-truth arrays are stored.
    families, cameras: names indexed by the `family` and `camera` arrays.
    source: free-form description of how the clips were made (e.g. the
      generator config and seed), compared on resume.
    format_version: layout version.
  """

  num_clips: int
  max_frames: int
  max_tracks: int
  chunk_clips: int = 16
  has_gt: bool = True
  families: tuple[str, ...] = ()
  cameras: tuple[str, ...] = ()
  source: dict = dataclasses.field(default_factory=dict)
  format_version: int = FORMAT_VERSION

  def __post_init__(self):
    for field in ("num_clips", "max_frames", "max_tracks", "chunk_clips"):
      value = getattr(self, field)
      if not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"DatasetInfo.{field}: expected a positive integer; got {value!r}.")
    if self.max_frames < 2:
      raise ValueError(f"DatasetInfo.max_frames: clips need at least 2 frames; got {self.max_frames}.")
    # Normalise through JSON (tuples -> lists) so a stored info equals a fresh one.
    object.__setattr__(self, "source", json.loads(json.dumps(self.source)))
    object.__setattr__(self, "families", tuple(self.families))
    object.__setattr__(self, "cameras", tuple(self.cameras))

  def to_json(self) -> str:
    return json.dumps(dataclasses.asdict(self), indent=1, sort_keys=True)

  @classmethod
  def from_json(cls, text: str, where: str) -> "DatasetInfo":
    try:
      return cls(**json.loads(text))
    except (ValueError, TypeError) as e:
      raise ValueError(f"{where}: dataset.json is malformed: {e}") from e

  @property
  def num_chunks(self) -> int:
    return -(-self.num_clips // self.chunk_clips)


class TrackDataset(ChunkedZarrStore):
  """Reads and writes a clip dataset; see the module docstring for the layout.

  `create`, `open` and the progress (`complete_chunks`, `num_complete`, `commit`,
  `chunk_range`) come from `ChunkedZarrStore`; here clips are its items.

  Example:
    >>> ds = TrackDataset.create("data/val", DatasetInfo(num_clips=64, max_frames=50, max_tracks=900))
    >>> ds.write_chunk(0, clips[:16]); ds.commit(1)
    >>> batch = TrackDataset.open("data/val").read([3, 1, 4])   # a padded Tracks batch
  """

  _what = "tracks4d dataset"
  _item = "clip"
  _info_type = DatasetInfo

  @staticmethod
  def _layout(info: DatasetInfo) -> Layout:
    arrays = {**_ARRAYS, **(_GT_ARRAYS if info.has_gt else {})}
    return Layout({name: (name, dtype, (info.num_clips,) + trailing(info.max_frames, info.max_tracks))
                   for name, (dtype, trailing) in arrays.items()}, info.num_clips, info.chunk_clips)

  @staticmethod
  def _check(info: DatasetInfo, location: str) -> None:
    if info.format_version != FORMAT_VERSION:
      raise ValueError(f"{location}: dataset format_version {info.format_version}; this code reads {FORMAT_VERSION}.")

  # Writing -----------------------------------------------------------------

  def write_chunk(self, chunk: int, clips: Sequence[Tracks], family: Sequence[int] | None = None,
                  camera: Sequence[int] | None = None) -> None:
    """Writes the clips of one chunk (all of them, in order) and waits for it.

    Raises:
      ValueError: for a wrong clip count, a clip larger than (max_frames,
        max_tracks) (nothing is cut), or missing/extra ground truth.
    """
    rng = self.chunk_range(chunk)
    if len(clips) != len(rng):
      raise ValueError(f"write_chunk({chunk}): expected {len(rng)} clips; got {len(clips)}.")
    info = self.info
    cols: dict[str, list] = {name: [] for name in self._arrays}
    for i, clip in zip(rng, clips):
      if (clip.gt is not None) != info.has_gt:
        raise ValueError(f"write_chunk: clip {i} {'lacks' if info.has_gt else 'has'} ground truth; "
                         f"the dataset has has_gt={info.has_gt}.")
      if clip.num_frames > info.max_frames or clip.num_tracks > info.max_tracks:
        raise ValueError(f"write_chunk: clip {i} has (t={clip.num_frames}, n={clip.num_tracks}); the dataset holds "
                         f"at most (t={info.max_frames}, n={info.max_tracks}). Nothing is cut: raise the sizes.")
      p = pad_tracks(clip, info.max_frames, info.max_tracks)
      cols["xy_px"].append(p.xy_px)
      cols["visible"].append(p.visible)
      cols["intrinsics"].append(p.intrinsics)
      cols["image_hw"].append(p.image_hw)
      cols["num_frames"].append(clip.num_frames)
      cols["num_tracks"].append(clip.num_tracks)
      cols["query_frame"].append(p.query_frame)
      cols["intrinsics_known"].append(p.intrinsics_known)
      if info.has_gt:
        cols["gt_w2c"].append(p.gt.w2c)
        cols["gt_depth"].append(p.gt.depth)
        cols["gt_xyz_world"].append(p.gt.xyz_world)
        cols["gt_dynamic"].append(p.gt.dynamic)
    cols["family"] = list(family) if family is not None else [-1] * len(clips)
    cols["camera"] = list(camera) if camera is not None else [-1] * len(clips)
    futures = []
    for name, values in cols.items():
      dtype = _ARRAYS.get(name, _GT_ARRAYS.get(name))[0]
      futures.append(self._arrays[name][rng.start:rng.stop].write(np.asarray(np.stack(values), dtype=dtype)))
    for f in futures:
      f.result()

  # Reading -----------------------------------------------------------------

  def read(self, indices: Sequence[int], trim: bool = True) -> Tracks:
    """Reads clips as one padded batch.

    Args:
      indices: clip indices (any order, repeats allowed), all < num_complete.
      trim: pad only to the largest clip in the batch instead of (T, N).

    Returns:
      A batched `Tracks` (leading axis b = len(indices)) with frame and track masks.

    Raises:
      ValueError: for an index outside the complete clips.
    """
    a = self._read_items(indices)
    t = int(a["num_frames"].max()) if trim else self.info.max_frames
    n = int(a["num_tracks"].max()) if trim else self.info.max_tracks
    frames = np.arange(t)[None, :] < a["num_frames"][:, None]
    tracks = np.arange(n)[None, :] < a["num_tracks"][:, None]
    gt = None
    if self.info.has_gt:
      gt = GroundTruth(w2c=a["gt_w2c"][:, :t], depth=a["gt_depth"][:, :t, :n],
                       xyz_world=a["gt_xyz_world"][:, :t, :n], dynamic=a["gt_dynamic"][:, :t, :n])
    return Tracks(xy_px=a["xy_px"][:, :t, :n], visible=a["visible"][:, :t, :n], intrinsics=a["intrinsics"][:, :t],
                  image_hw=a["image_hw"], frame_mask=frames, track_mask=tracks, query_frame=a["query_frame"][:, :n],
                  intrinsics_known=a["intrinsics_known"], gt=gt)

  def read_labels(self, name: str) -> np.ndarray:
    """The per-clip `family` or `camera` indices of the complete clips."""
    if name not in ("family", "camera"):
      raise ValueError(f"read_labels: name must be 'family' or 'camera'; got {name!r}.")
    return self._arrays[name][: self.num_complete].read().result()


class BatchSampler:
  """Random batches of clip indices, epoch by epoch, as a pure function of the step.

  Epoch e is a permutation of [0, num_clips) drawn from (seed, e), cut into
  num_clips // batch_size batches (a trailing partial batch is not used in that
  epoch; every clip still has equal odds over epochs). Batch `step` is therefore
  fixed by (seed, step), and the resumable state is just the step.

  Example:
    >>> sampler = BatchSampler(num_clips=1000, batch_size=8, seed=0)
    >>> idx = sampler.next()            # 8 indices; same as sampler.indices_at(0)
    >>> state = sampler.state()         # store with the checkpoint
    >>> BatchSampler.from_state(1000, 8, state).next()  # continues identically
  """

  def __init__(self, num_clips: int, batch_size: int, seed: int, step: int = 0):
    if batch_size < 1 or num_clips < batch_size:
      raise ValueError(f"BatchSampler: need 1 <= batch_size <= num_clips; got batch_size={batch_size}, "
                       f"num_clips={num_clips}.")
    self.num_clips, self.batch_size, self.seed, self.step = num_clips, batch_size, seed, step

  def indices_at(self, step: int) -> np.ndarray:
    """The clip indices of batch `step`."""
    epoch, j = divmod(step, self.num_clips // self.batch_size)
    perm = np.random.default_rng([self.seed, epoch]).permutation(self.num_clips)
    return perm[j * self.batch_size:(j + 1) * self.batch_size]

  def next(self) -> np.ndarray:
    out = self.indices_at(self.step)
    self.step += 1
    return out

  def state(self) -> dict:
    return {"seed": self.seed, "step": self.step}

  @classmethod
  def from_state(cls, num_clips: int, batch_size: int, state: dict) -> "BatchSampler":
    return cls(num_clips, batch_size, int(state["seed"]), int(state["step"]))
