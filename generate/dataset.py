"""A dataset of multi-view scenes (`SceneViews`) in tensorstore zarr arrays.

Stored like `tracks4d.io.dataset`, by `tracks4d.io.zarr_store`: local folders
or any kvstore URL, chunk-by-chunk writes, a progress.json commit marker,
kill-safe and resumable.
Layout under the root (c scenes, k targets, t frames, n tracks, h w image):

  dataset.json                 MultiViewInfo as JSON (sizes, label names, source)
  progress.json                {"complete_chunks": j}: scenes [0, j * chunk_scenes) are complete
  video/source_rgb             (c, t, h, w, 3)    uint8    colours * 255, rounded
  video/source_depth_map       (c, t, h, w)       float16  depth per pixel (relative precision 5e-4)
  video/target_rgb             (c, k, t, h, w, 3) uint8
  video/target_depth_map       (c, k, t, h, w)    float16
  cameras/source_w2c           (c, t, 4, 4)       float32
  cameras/source_intrinsics    (c, t, 3, 3)       float32
  cameras/target_w2c           (c, k, t, 4, 4)    float32
  cameras/target_intrinsics    (c, k, t, 3, 3)    float32
  tracks/xyz_world             (c, t, n, 3)       float32
  tracks/source_xy_px          (c, t, n, 2)       float32
  tracks/source_depth          (c, t, n)          float32
  tracks/source_visible        (c, t, n)          bool
  tracks/target_xy_px          (c, k, t, n, 2)    float32
  tracks/target_depth          (c, k, t, n)       float32
  tracks/target_visible        (c, k, t, n)       bool
  tracks/dynamic               (c, n)             bool
  tracks/query_frame           (c, n)             int32
  labels/target_kind           (c, k)             int32    index into info.target_kinds
  labels/target_amount         (c, k)             float32
  labels/follow_source         (c, k)             bool
  labels/dolly_zoom            (c, k)             bool
  labels/camera                (c,)               int32    index into info.cameras
  labels/look_at_depth         (c,)               float32

Each array is chunked by `chunk_scenes` along c (one chunk = one commit). A
writer killed at any moment leaves every chunk below the recorded progress
complete; rerunning resumes there. Readers see complete scenes only, as
`SceneViews` batches (leading b) with colours back in [0, 1] float32.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Sequence

import numpy as np
import tensorstore as ts

from generate.cameras import TARGET_KINDS
from generate.multiview_data import MultiViewConfig, SceneViews, make_scene_views
from tracks4d.io.zarr_store import ChunkedZarrStore, Layout
from tracks4d.synthetic.cameras import CAMERA_PATHS

FORMAT_VERSION = 1

# field of SceneViews: (zarr path, dtype, trailing shape from (k, t, n, h, w)).
_ARRAYS = {
    "source_rgb": ("video/source_rgb", "uint8", lambda k, t, n, h, w: (t, h, w, 3)),
    "source_depth_map": ("video/source_depth_map", "float16", lambda k, t, n, h, w: (t, h, w)),
    "target_rgb": ("video/target_rgb", "uint8", lambda k, t, n, h, w: (k, t, h, w, 3)),
    "target_depth_map": ("video/target_depth_map", "float16", lambda k, t, n, h, w: (k, t, h, w)),
    "source_w2c": ("cameras/source_w2c", "float32", lambda k, t, n, h, w: (t, 4, 4)),
    "source_intrinsics": ("cameras/source_intrinsics", "float32", lambda k, t, n, h, w: (t, 3, 3)),
    "target_w2c": ("cameras/target_w2c", "float32", lambda k, t, n, h, w: (k, t, 4, 4)),
    "target_intrinsics": ("cameras/target_intrinsics", "float32", lambda k, t, n, h, w: (k, t, 3, 3)),
    "xyz_world": ("tracks/xyz_world", "float32", lambda k, t, n, h, w: (t, n, 3)),
    "source_xy_px": ("tracks/source_xy_px", "float32", lambda k, t, n, h, w: (t, n, 2)),
    "source_depth": ("tracks/source_depth", "float32", lambda k, t, n, h, w: (t, n)),
    "source_visible": ("tracks/source_visible", "bool", lambda k, t, n, h, w: (t, n)),
    "target_xy_px": ("tracks/target_xy_px", "float32", lambda k, t, n, h, w: (k, t, n, 2)),
    "target_depth": ("tracks/target_depth", "float32", lambda k, t, n, h, w: (k, t, n)),
    "target_visible": ("tracks/target_visible", "bool", lambda k, t, n, h, w: (k, t, n)),
    "dynamic": ("tracks/dynamic", "bool", lambda k, t, n, h, w: (n,)),
    "query_frame": ("tracks/query_frame", "int32", lambda k, t, n, h, w: (n,)),
    "target_kind": ("labels/target_kind", "int32", lambda k, t, n, h, w: (k,)),
    "target_amount": ("labels/target_amount", "float32", lambda k, t, n, h, w: (k,)),
    "follow_source": ("labels/follow_source", "bool", lambda k, t, n, h, w: (k,)),
    "dolly_zoom": ("labels/dolly_zoom", "bool", lambda k, t, n, h, w: (k,)),
    "camera": ("labels/camera", "int32", lambda k, t, n, h, w: ()),
    "look_at_depth": ("labels/look_at_depth", "float32", lambda k, t, n, h, w: ()),
}
_RGB = ("source_rgb", "target_rgb")


@dataclasses.dataclass(frozen=True)
class MultiViewInfo:
  """What a multi-view dataset holds.

  Attributes:
    num_scenes: c.
    num_frames: t.
    image_hw: (height, width).
    num_targets: k target videos per scene.
    num_tracks: n tracks per scene.
    chunk_scenes: scenes per zarr chunk (and per commit).
    target_kinds, cameras: names indexed by labels/target_kind and labels/camera.
    source: how the scenes were made (generator config and seed), compared on resume.
    format_version: layout version.
  """

  num_scenes: int
  num_frames: int
  image_hw: tuple[int, int]
  num_targets: int
  num_tracks: int
  chunk_scenes: int = 32
  target_kinds: tuple[str, ...] = TARGET_KINDS
  cameras: tuple[str, ...] = CAMERA_PATHS
  source: dict = dataclasses.field(default_factory=dict)
  format_version: int = FORMAT_VERSION

  def __post_init__(self):
    for field in ("num_scenes", "num_frames", "num_targets", "num_tracks", "chunk_scenes"):
      value = getattr(self, field)
      if not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"MultiViewInfo.{field}: expected a positive integer; got {value!r}.")
    if len(self.image_hw) != 2 or min(self.image_hw) < 1:
      raise ValueError(f"MultiViewInfo.image_hw: expected positive (height, width); got {self.image_hw!r}.")

  def to_json(self) -> str:
    return json.dumps(dataclasses.asdict(self), indent=1, sort_keys=True)

  @classmethod
  def from_json(cls, text: str, where: str) -> "MultiViewInfo":
    try:
      raw = json.loads(text)
      for key in ("image_hw", "target_kinds", "cameras"):
        raw[key] = tuple(raw[key])
      return cls(**raw)
    except (ValueError, TypeError, KeyError) as e:
      raise ValueError(f"{where}: dataset.json is malformed: {e}") from e

  @property
  def num_chunks(self) -> int:
    return -(-self.num_scenes // self.chunk_scenes)

  def shape(self, field: str) -> tuple[int, ...]:
    h, w = self.image_hw
    return (self.num_scenes,) + _ARRAYS[field][2](self.num_targets, self.num_frames, self.num_tracks, h, w)


class MultiViewDataset(ChunkedZarrStore):
  """Reads and writes multi-view scenes; see the module docstring for the layout.

  `create`, `open` and the progress (`complete_chunks`, `num_complete`, `commit`,
  `chunk_range`) come from `ChunkedZarrStore`; here scenes are its items.

  Example:
    >>> info = MultiViewInfo(num_scenes=64, num_frames=16, image_hw=(64, 64), num_targets=2, num_tracks=300)
    >>> ds = MultiViewDataset.create("data/mv", info)
    >>> ds.write_chunk(0, views[:32]); ds.commit(1)
    >>> batch = MultiViewDataset.open("data/mv").read([5, 2])   # SceneViews with a leading b
  """

  _what = "multi-view dataset"
  _item = "scene"
  _info_type = MultiViewInfo

  @staticmethod
  def _layout(info: MultiViewInfo) -> Layout:
    return Layout({field: (path, dtype, info.shape(field)) for field, (path, dtype, _) in _ARRAYS.items()},
                  info.num_scenes, info.chunk_scenes)

  @staticmethod
  def _check(info: MultiViewInfo, location: str) -> None:
    if info.format_version != FORMAT_VERSION:
      raise ValueError(f"{location}: format_version {info.format_version}; this code reads {FORMAT_VERSION}.")

  # Writing -------------------------------------------------------------------

  def write_chunk(self, chunk: int, scenes: Sequence[SceneViews]) -> None:
    """Writes the scenes of one chunk (all of them, in order) and waits for it.

    Raises:
      ValueError: for a wrong scene count or a scene whose arrays do not have
        the dataset's shapes (naming the field).
    """
    rng = self.chunk_range(chunk)
    if len(scenes) != len(rng):
      raise ValueError(f"write_chunk({chunk}): expected {len(rng)} scenes; got {len(scenes)}.")
    futures = []
    for field, (path, dtype, _) in _ARRAYS.items():
      values = np.stack([np.asarray(getattr(s, field)) for s in scenes])
      if values.shape[1:] != self.info.shape(field)[1:]:
        raise ValueError(f"write_chunk: {field} has shape {values.shape[1:]} per scene; the dataset holds "
                         f"{self.info.shape(field)[1:]}.")
      if field in _RGB:
        values = np.round(np.clip(values, 0.0, 1.0) * 255.0)
      futures.append(self._arrays[field][rng.start:rng.stop].write(values.astype(dtype)))
    for f in futures:
      f.result()

  # Reading -------------------------------------------------------------------

  def read(self, indices: Sequence[int]) -> SceneViews:
    """Reads scenes as one `SceneViews` batch (leading b), colours in [0, 1].

    Raises:
      ValueError: for an index outside the complete scenes.
    """
    out = {}
    for field, value in self._read_items(indices).items():
      if field in _RGB:
        value = value.astype(np.float32) / 255.0
      elif value.dtype == np.float16:
        value = value.astype(np.float32)
      out[field] = value
    return SceneViews(**out)

  def read_scene(self, index: int) -> SceneViews:
    """One scene (no batch axis)."""
    import jax

    return jax.tree.map(lambda x: x[0], self.read([index]))


def write_dataset(cfg: MultiViewConfig, out: str, num_scenes: int, seed: int, chunk_scenes: int = 32,
                  context: ts.Context | None = None, progress: bool = True,
                  max_chunks: int | None = None) -> MultiViewDataset:
  """Generates scenes [0, num_scenes) of `make_scene_views(cfg, seed, .)` into `out`, resuming if possible.

  Args:
    cfg: generator settings.
    out: folder or kvstore URL.
    num_scenes: c.
    seed: dataset seed.
    chunk_scenes: scenes per chunk (and per commit).
    context: tensorstore context (share one to use a `memory://` store).
    progress: show a progress bar.
    max_chunks: stop after writing this many chunks in this call (to test
      resuming; None = all).

  Returns:
    The dataset, opened for reading.

  Raises:
    ValueError: when `out` holds a different dataset.

  Example:
    >>> ds = write_dataset(MultiViewConfig(), "data/mv_val", num_scenes=256, seed=1000)
  """
  import time

  import tqdm
  from absl import logging

  info = MultiViewInfo(num_scenes=int(num_scenes), num_frames=cfg.num_frames, image_hw=tuple(cfg.image_hw),
                       num_targets=cfg.num_targets, num_tracks=cfg.num_tracks, chunk_scenes=int(chunk_scenes),
                       source={"generator": _jsonable(dataclasses.asdict(cfg)), "seed": int(seed)})
  ds = MultiViewDataset.create(out, info, context=context)
  start = ds.complete_chunks
  if start:
    logging.info("Resuming %s at chunk %d of %d.", out, start, info.num_chunks)
  stop = info.num_chunks if max_chunks is None else min(info.num_chunks, start + int(max_chunks))
  bar = tqdm.tqdm(total=info.num_scenes, initial=ds.num_complete, unit="scene", disable=not progress,
                  desc="multiview")
  t0, made = time.time(), 0
  for chunk in range(start, stop):
    scenes = [make_scene_views(cfg, seed, i) for i in ds.chunk_range(chunk)]
    ds.write_chunk(chunk, scenes)
    ds.commit(chunk + 1)
    made += len(scenes)
    bar.update(len(scenes))
  bar.close()
  if made:
    dt = time.time() - t0
    logging.info("Wrote %d scenes (%d clip pairs) in %.1f s: %.0f clip pairs per minute.", made,
                 made * cfg.num_targets, dt, 60.0 * made * cfg.num_targets / dt)
  return MultiViewDataset.open(out, context=context)


def _jsonable(x):
  if isinstance(x, dict):
    return {k: _jsonable(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_jsonable(v) for v in x]
  return x
