"""The typed container for a clip's 2D point tracks, its validation and batching.

A `Tracks` holds one clip (shapes below) or a batch of clips (one leading axis b,
made by `batch_tracks`). It is a pytree, so it passes through `jax.jit`; build it
with `Tracks.create`, which validates everything eagerly (before any jit) and
raises `ValueError` naming the field, what was expected and what was given.

Shapes (one clip; a batch adds a leading b):
  xy_px           (t, n, 2) float32  pixel positions (x, y), see tracks4d.geometry
  visible         (t, n)    bool     the tracker's visibility
  intrinsics      (t, 3, 3) float32  K per frame, pixels
  image_hw        (2,)      int32    image (height, width)
  frame_mask      (t,)      bool     False on padded frames
  track_mask      (n,)      bool     False on padded tracks
  query_frame     (n,)      int32    frame each track was queried at
  intrinsics_known ()       bool     False when K was guessed, not given
  gt              GroundTruth | None

Padding is always at the end (frames t_valid.., tracks n_valid..) so `unpad`
recovers the original clip exactly.
"""

from __future__ import annotations

from typing import Optional, Sequence

import flax.struct
import numpy as np

from tracks4d import geometry


@flax.struct.dataclass
class GroundTruth:
  """Optional ground truth of a clip (one clip's shapes; a batch adds b).

  Attributes:
    w2c: (t, 4, 4) world-to-camera poses, OpenCV axes.
    depth: (t, n) camera-frame depth of each track; values <= 0 mean unknown.
    xyz_world: (t, n, 3) 3D position of each track in the world frame.
    dynamic: (t, n) bool, True where the track lies on moving content.
  """

  w2c: np.ndarray
  depth: np.ndarray
  xyz_world: np.ndarray
  dynamic: np.ndarray


@flax.struct.dataclass
class Tracks:
  """2D point tracks of one clip (or a padded batch of clips). See module doc."""

  xy_px: np.ndarray
  visible: np.ndarray
  intrinsics: np.ndarray
  image_hw: np.ndarray
  frame_mask: np.ndarray
  track_mask: np.ndarray
  query_frame: np.ndarray
  intrinsics_known: np.ndarray
  gt: Optional[GroundTruth] = None

  @classmethod
  def create(
      cls,
      xy_px,
      visible,
      image_hw,
      intrinsics=None,
      query_frame=None,
      gt: Optional[GroundTruth] = None,
      name: str = "tracks",
  ) -> "Tracks":
    """Validates and packs one clip's arrays.

    Args:
      xy_px: (t, n, 2) pixel positions (x, y); finite everywhere (occluded entries
        keep the tracker's guess).
      visible: (t, n) boolean visibility (not 0/1 floats: pass `visible > 0.5`).
      image_hw: (height, width) in pixels.
      intrinsics: (3, 3) or (t, 3, 3) K in pixels; None uses the peer's guess
        f = (w + h) / 2 at the image centre and sets `intrinsics_known` False.
      query_frame: (n,) query frame per track; default: first visible frame.
      gt: optional ground truth; its shapes are checked against t and n.
      name: how errors refer to this clip (e.g. a file name).

    Returns:
      A validated `Tracks` with all-True masks.

    Raises:
      ValueError: naming the field for wrong shapes or dtypes, NaN/inf values,
        fewer than 2 frames, no tracks, no visible entry, non-positive focal
        lengths or image size, or out-of-range query frames.

    Example:
      >>> tr = Tracks.create(xy, vis, image_hw=(480, 640), intrinsics=K)
    """
    xy_px = _as_float(xy_px, f"{name}.xy_px")
    if xy_px.ndim != 3 or xy_px.shape[-1] != 2:
      raise ValueError(f"{name}.xy_px: expected shape (t, n, 2) pixel (x, y); got {xy_px.shape}.")
    t, n = xy_px.shape[:2]
    visible = np.asarray(visible)
    if visible.dtype != np.bool_:
      raise ValueError(
          f"{name}.visible: expected a boolean array (t, n); got dtype {visible.dtype}. "
          "Convert explicitly, e.g. `visible > 0.5`.")
    image_hw = np.asarray(image_hw)
    if image_hw.shape != (2,) or not np.issubdtype(image_hw.dtype, np.number):
      raise ValueError(f"{name}.image_hw: expected (height, width); got {image_hw!r}.")
    image_hw = image_hw.astype(np.int32)
    if np.any(image_hw <= 0):
      raise ValueError(f"{name}.image_hw: height and width must be positive; got {tuple(image_hw)}.")
    known = intrinsics is not None
    if intrinsics is None:
      intrinsics = geometry.guess_intrinsics(tuple(image_hw))
    intrinsics = _as_float(intrinsics, f"{name}.intrinsics")
    if intrinsics.shape == (3, 3):
      intrinsics = np.broadcast_to(intrinsics, (t, 3, 3)).copy()
    if query_frame is None:
      query_frame = np.argmax(visible, axis=0) if visible.ndim == 2 else np.zeros(0)
    tracks = cls(
        xy_px=xy_px,
        visible=visible,
        intrinsics=intrinsics,
        image_hw=image_hw,
        frame_mask=np.ones((t,), bool),
        track_mask=np.ones((n,), bool),
        query_frame=np.asarray(query_frame).astype(np.int32),
        intrinsics_known=np.asarray(known),
        gt=None if gt is None else GroundTruth(
            w2c=_as_float(gt.w2c, f"{name}.gt.w2c"),
            depth=_as_float(gt.depth, f"{name}.gt.depth"),
            xyz_world=_as_float(gt.xyz_world, f"{name}.gt.xyz_world"),
            dynamic=np.asarray(gt.dynamic),
        ),
    )
    validate(tracks, name)
    return tracks

  # Derived quantities -------------------------------------------------------

  @property
  def num_frames(self) -> int:
    return self.xy_px.shape[-3]

  @property
  def num_tracks(self) -> int:
    return self.xy_px.shape[-2]

  @property
  def valid(self):
    """(…, t, n) bool: visible, on a real frame and a real track."""
    return self.visible & self.frame_mask[..., :, None] & self.track_mask[..., None, :]

  def xy_normalized(self):
    """(…, t, n, 2) normalised camera coordinates x = (u - cx) / fx, y = (v - cy) / fy."""
    return geometry.pixels_to_normalized(self.xy_px, self.intrinsics)


def _as_float(x, field: str) -> np.ndarray:
  x = np.asarray(x)
  if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
    raise ValueError(f"{field}: expected a numeric array; got dtype {x.dtype}.")
  return x.astype(np.float32)


def _check_finite(x: np.ndarray, field: str) -> None:
  bad = ~np.isfinite(x)
  if bad.any():
    first = tuple(int(i) for i in np.argwhere(bad)[0])
    raise ValueError(f"{field}: expected finite values; found {int(bad.sum())} NaN/inf (first at index {first}).")


def _check_shape(x: np.ndarray, shape: tuple, field: str, meaning: str) -> None:
  if x.shape != shape:
    raise ValueError(f"{field}: expected shape {shape} {meaning}; got {x.shape}.")


def validate(tracks: Tracks, name: str = "tracks") -> None:
  """Checks one unbatched clip; raises ValueError naming the offending field.

  Called by `Tracks.create`; call it again after editing fields by hand.
  """
  xy = np.asarray(tracks.xy_px)
  if xy.ndim != 3 or xy.shape[-1] != 2:
    raise ValueError(f"{name}.xy_px: expected shape (t, n, 2) pixel (x, y); got {xy.shape}.")
  t, n = xy.shape[:2]
  if t < 2:
    raise ValueError(f"{name}.xy_px: needs at least 2 frames to reconstruct motion; got t={t}.")
  if n < 1:
    raise ValueError(f"{name}.xy_px: no tracks (n=0); expected at least one track.")
  _check_finite(xy, f"{name}.xy_px")
  vis = np.asarray(tracks.visible)
  _check_shape(vis, (t, n), f"{name}.visible", "(t, n) matching xy_px")
  if vis.dtype != np.bool_:
    raise ValueError(f"{name}.visible: expected dtype bool; got {vis.dtype}.")
  if not vis.any():
    raise ValueError(f"{name}.visible: no visible entry in any frame; the clip carries no observation.")
  K = np.asarray(tracks.intrinsics)
  _check_shape(K, (t, 3, 3), f"{name}.intrinsics", "(t, 3, 3) or (3, 3)")
  _check_finite(K, f"{name}.intrinsics")
  if np.any(K[:, 0, 0] <= 0) or np.any(K[:, 1, 1] <= 0):
    raise ValueError(f"{name}.intrinsics: focal lengths fx, fy must be positive.")
  if not np.allclose(K[:, 2], [0.0, 0.0, 1.0]) or not np.allclose(K[:, 1, 0], 0.0) or not np.allclose(K[:, 0, 1], 0.0):
    raise ValueError(f"{name}.intrinsics: expected [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] (no skew).")
  _check_shape(np.asarray(tracks.frame_mask), (t,), f"{name}.frame_mask", "(t,)")
  _check_shape(np.asarray(tracks.track_mask), (n,), f"{name}.track_mask", "(n,)")
  q = np.asarray(tracks.query_frame)
  _check_shape(q, (n,), f"{name}.query_frame", "(n,) one query frame per track")
  if np.any(q < 0) or np.any(q >= t):
    raise ValueError(f"{name}.query_frame: expected frame indices in [0, {t}); got range [{q.min()}, {q.max()}].")
  gt = tracks.gt
  if gt is not None:
    _check_shape(np.asarray(gt.w2c), (t, 4, 4), f"{name}.gt.w2c", "(t, 4, 4) world-to-camera")
    _check_shape(np.asarray(gt.depth), (t, n), f"{name}.gt.depth", "(t, n)")
    _check_shape(np.asarray(gt.xyz_world), (t, n, 3), f"{name}.gt.xyz_world", "(t, n, 3)")
    _check_shape(np.asarray(gt.dynamic), (t, n), f"{name}.gt.dynamic", "(t, n)")
    if np.asarray(gt.dynamic).dtype != np.bool_:
      raise ValueError(f"{name}.gt.dynamic: expected dtype bool; got {np.asarray(gt.dynamic).dtype}.")
    for field in ("w2c", "depth", "xyz_world"):
      _check_finite(np.asarray(getattr(gt, field)), f"{name}.gt.{field}")
    rot = np.asarray(gt.w2c)[:, :3, :3]
    if not np.allclose(rot @ np.swapaxes(rot, -1, -2), np.eye(3), atol=1e-3):
      raise ValueError(f"{name}.gt.w2c: rotation blocks are not orthonormal.")


# ---------------------------------------------------------------------------
# Padding and batching.
# ---------------------------------------------------------------------------


def _pad_axis(x: np.ndarray, axis: int, size: int) -> np.ndarray:
  pad = [(0, 0)] * x.ndim
  pad[axis] = (0, size - x.shape[axis])
  return np.pad(x, pad)


def pad_tracks(tracks: Tracks, num_frames: int, num_tracks: int) -> Tracks:
  """Pads one clip at the end to (num_frames, num_tracks); padding is masked.

  Padded frames repeat the last real frame's intrinsics and camera (so geometry on
  them stays finite); padded entries are invisible and have zero positions.

  Raises:
    ValueError: if the clip is larger than the requested size (nothing is cut).
  """
  t, n = tracks.num_frames, tracks.num_tracks
  if t > num_frames or n > num_tracks:
    raise ValueError(
        f"pad_tracks: clip of (t={t}, n={n}) does not fit the padded size "
        f"(t={num_frames}, n={num_tracks}); nothing is cut, raise the size.")
  dt, dn = num_frames - t, num_tracks - n

  def edge_t(x):  # Repeat the last frame along time.
    return np.concatenate([x, np.repeat(x[-1:], dt, axis=0)], axis=0) if dt else x

  def pad_tn(x):
    return _pad_axis(_pad_axis(np.asarray(x), 0, num_frames), 1, num_tracks)

  gt = tracks.gt
  if gt is not None:
    gt = GroundTruth(
        w2c=edge_t(np.asarray(gt.w2c)),
        depth=pad_tn(gt.depth),
        xyz_world=pad_tn(gt.xyz_world),
        dynamic=pad_tn(gt.dynamic),
    )
  return Tracks(
      xy_px=pad_tn(tracks.xy_px),
      visible=pad_tn(tracks.visible),
      intrinsics=edge_t(np.asarray(tracks.intrinsics)),
      image_hw=np.asarray(tracks.image_hw),
      frame_mask=_pad_axis(np.asarray(tracks.frame_mask), 0, num_frames),
      track_mask=_pad_axis(np.asarray(tracks.track_mask), 0, num_tracks),
      query_frame=_pad_axis(np.asarray(tracks.query_frame), 0, num_tracks),
      intrinsics_known=np.asarray(tracks.intrinsics_known),
      gt=gt,
  )


def batch_tracks(clips: Sequence[Tracks], num_frames: int | None = None, num_tracks: int | None = None) -> Tracks:
  """Pads clips to a common size and stacks them along a new leading axis b.

  Args:
    clips: unbatched clips; all with ground truth or all without.
    num_frames, num_tracks: padded size; default the largest clip's.

  Returns:
    A `Tracks` whose arrays have a leading axis b = len(clips).

  Raises:
    ValueError: for an empty list, mixed ground truth, or a clip larger than the
      requested size.
  """
  if not clips:
    raise ValueError("batch_tracks: got no clips.")
  if len({c.gt is None for c in clips}) > 1:
    raise ValueError("batch_tracks: either every clip or none must carry ground truth (gt).")
  t = num_frames or max(c.num_frames for c in clips)
  n = num_tracks or max(c.num_tracks for c in clips)
  padded = [pad_tracks(c, t, n) for c in clips]
  import jax  # Local: the data layer is NumPy; jax is only used for tree mapping here.

  return jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *padded)


def unbatch_tracks(batch: Tracks) -> list[Tracks]:
  """Splits a batch into its clips with padding removed (inverse of batch_tracks)."""
  import jax

  b = np.asarray(batch.xy_px).shape[0]
  return [unpad_tracks(jax.tree.map(lambda x, i=i: np.asarray(x)[i], batch)) for i in range(b)]


def unpad_tracks(tracks: Tracks) -> Tracks:
  """Removes trailing padded frames and tracks of one clip."""
  t = int(np.asarray(tracks.frame_mask).sum())
  n = int(np.asarray(tracks.track_mask).sum())
  gt = tracks.gt
  if gt is not None:
    gt = GroundTruth(w2c=np.asarray(gt.w2c)[:t], depth=np.asarray(gt.depth)[:t, :n],
                     xyz_world=np.asarray(gt.xyz_world)[:t, :n], dynamic=np.asarray(gt.dynamic)[:t, :n])
  return Tracks(
      xy_px=np.asarray(tracks.xy_px)[:t, :n],
      visible=np.asarray(tracks.visible)[:t, :n],
      intrinsics=np.asarray(tracks.intrinsics)[:t],
      image_hw=np.asarray(tracks.image_hw),
      frame_mask=np.asarray(tracks.frame_mask)[:t],
      track_mask=np.asarray(tracks.track_mask)[:n],
      query_frame=np.asarray(tracks.query_frame)[:n],
      intrinsics_known=np.asarray(tracks.intrinsics_known),
      gt=gt,
  )


def select_tracks(tracks: Tracks, index) -> Tracks:
  """One clip restricted to the tracks `index` (a boolean (n,) mask or integer array)."""
  gt = tracks.gt
  if gt is not None:
    gt = gt.replace(depth=np.asarray(gt.depth)[:, index], xyz_world=np.asarray(gt.xyz_world)[:, index],
                    dynamic=np.asarray(gt.dynamic)[:, index])
  return tracks.replace(
      xy_px=np.asarray(tracks.xy_px)[:, index], visible=np.asarray(tracks.visible)[:, index],
      track_mask=np.asarray(tracks.track_mask)[index], query_frame=np.asarray(tracks.query_frame)[index], gt=gt)


def select_frames(tracks: Tracks, start: int, stop: int) -> Tracks:
  """One clip restricted to frames [start, stop); query frames are clipped into range."""
  gt = tracks.gt
  if gt is not None:
    gt = gt.replace(w2c=np.asarray(gt.w2c)[start:stop], depth=np.asarray(gt.depth)[start:stop],
                    xyz_world=np.asarray(gt.xyz_world)[start:stop], dynamic=np.asarray(gt.dynamic)[start:stop])
  return tracks.replace(
      xy_px=np.asarray(tracks.xy_px)[start:stop], visible=np.asarray(tracks.visible)[start:stop],
      intrinsics=np.asarray(tracks.intrinsics)[start:stop], frame_mask=np.asarray(tracks.frame_mask)[start:stop],
      query_frame=np.clip(np.asarray(tracks.query_frame) - start, 0, stop - start - 1).astype(np.int32), gt=gt)
