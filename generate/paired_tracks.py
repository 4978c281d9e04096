"""Paired tracks: the source tracks and their images in a target trajectory.

From 3D tracks (a reconstruction's, or ground truth) and a target trajectory,
every source track gets its target-view 2D position, depth and visibility; the
pairing is one-to-one by construction (track j in the source is track j in the
target), which is what the track-conditioned generator consumes (Track2View's
dual-view conditioner, REFERENCE.md section 2).

Array layout of `PairedTracks` (one clip; a batch adds a leading b, a set of
targets a leading k):

  xyz_world          (t, n, 3) float32  3D track positions, world frame
  source_xy_px       (t, n, 2) float32  source-view pixel positions (x, y)
  source_depth       (t, n)    float32  source camera-frame depth (z; <= 0 behind)
  source_visible     (t, n)    bool     visible in the source view
  target_xy_px       (t, n, 2) float32  target-view pixel positions (x, y)
  target_depth       (t, n)    float32  target camera-frame depth (z; <= 0 behind)
  target_visible     (t, n)    bool     visible in the target view
  source_w2c         (t, 4, 4) float32  source world-to-camera poses
  target_w2c         (t, 4, 4) float32  target world-to-camera poses
  source_intrinsics  (t, 3, 3) float32  source K (pixels)
  target_intrinsics  (t, 3, 3) float32  target K (pixels)
  source_hw          (2,)      int32    source image (height, width)
  target_hw          (2,)      int32    target image (height, width)

Conventions are `tracks4d.geometry`'s: pixel centres at integers, the image
spans [-0.5, w - 0.5) x [-0.5, h - 0.5); OpenCV camera axes. Positions are
finite everywhere: invisible entries keep their projection (clamped depth for
points behind the camera), so use the `*_visible` masks. A target entry is
visible when it is (1) inside the target image, (2) in front of the camera
(depth > `tracks4d.geometry.MIN_DEPTH`) and (3) not hidden by a nearer track
in a coarse z-buffer: every track covers a disk of `radius_px` pixels (default
0.75 x the mean track spacing) and an entry is hidden when its depth exceeds
the nearest depth covering its position by more than `depth_tolerance`
(relative, default 0.2). On the synthetic scenes this agrees with the exact
visibility on about 96% of the entries. Source visibility is the tracker's (or the
renderer's exact one) when given, else the same test in the source cameras.

Shapes: t frames, n tracks, b batch, k targets.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from generate import checks
from generate.cameras import Trajectory
from tracks4d import geometry
from tracks4d.tracks import Tracks

# Default relative depth margin of the coarse occlusion test among tracks.
DEPTH_TOLERANCE = 0.2


@flax.struct.dataclass
class PairedTracks:
  """Source tracks paired one-to-one with their target-view images; see the module doc."""

  xyz_world: Any
  source_xy_px: Any
  source_depth: Any
  source_visible: Any
  target_xy_px: Any
  target_depth: Any
  target_visible: Any
  source_w2c: Any
  target_w2c: Any
  source_intrinsics: Any
  target_intrinsics: Any
  source_hw: Any
  target_hw: Any

  @property
  def num_frames(self) -> int:
    return int(np.shape(self.source_xy_px)[-3])

  @property
  def num_tracks(self) -> int:
    return int(np.shape(self.source_xy_px)[-2])

  def swap(self) -> "PairedTracks":
    """The same pairs seen from the other side (target as source)."""
    return PairedTracks(
        xyz_world=self.xyz_world, source_xy_px=self.target_xy_px, source_depth=self.target_depth,
        source_visible=self.target_visible, target_xy_px=self.source_xy_px, target_depth=self.source_depth,
        target_visible=self.source_visible, source_w2c=self.target_w2c, target_w2c=self.source_w2c,
        source_intrinsics=self.target_intrinsics, target_intrinsics=self.source_intrinsics,
        source_hw=self.target_hw, target_hw=self.source_hw)


def default_radius_px(image_hw: tuple[int, int], num_tracks: int) -> float:
  """The coarse z-buffer's disk radius: 0.75 x the mean track spacing sqrt(h w / n).

  Chosen on the synthetic multi-view scenes (n = 300 at 64x64, exact visibility
  from the renderer): with `DEPTH_TOLERANCE` it agrees with the exact visibility on
  96% of the target entries (9% of the hidden entries are called visible, 3% of
  the visible ones hidden); larger disks hide slanted surfaces (floors) by their
  own nearer tracks, smaller ones let background tracks through.
  """
  h, w = image_hw
  return float(max(1.0, 0.75 * np.sqrt(h * w / max(num_tracks, 1))))


@functools.partial(jax.jit, static_argnames=("image_hw", "radius_px"))
def occlusion_test(xy_px, depth, image_hw: tuple[int, int], radius_px: float, depth_tolerance=DEPTH_TOLERANCE):
  """Visibility of tracks among themselves by a coarse z-buffer of disks (JAX, jitted).

  Every candidate track (inside the image, in front of the camera) writes its
  depth into the pixels of a disk of `radius_px` around it (a min-scatter,
  `.at[].min()`, on a grid of stride ceil(radius / 6) pixels); a track is
  hidden when its depth exceeds the buffer at its own position by more than
  `depth_tolerance` (relative): a nearer track covers it.

  Args:
    xy_px: (t, n, 2) pixel positions (x, y).
    depth: (t, n) camera-frame depths.
    image_hw: (height, width), static.
    radius_px: disk radius in pixels, static.
    depth_tolerance: relative depth margin.

  Returns:
    (t, n) bool: inside the image, in front of the camera (depth > MIN_DEPTH) and
    not hidden by a nearer track.

  Example:
    >>> vis = occlusion_test(xy, depth, image_hw=(64, 64), radius_px=2.8)
  """
  h, w = image_hw
  stride = max(1, int(np.ceil(radius_px / 6.0)))
  hc, wc = -(-h // stride), -(-w // stride)
  reach = int(np.ceil(radius_px / stride))
  t = xy_px.shape[0]
  cand = (depth > geometry.MIN_DEPTH) & geometry.in_image(xy_px, np.array([h, w]))
  c = (xy_px + 0.5) / stride - 0.5  # Coarse-grid coordinates (cell centres at integers).
  base = jnp.round(c).astype(jnp.int32)
  oy, ox = np.meshgrid(np.arange(-reach, reach + 1), np.arange(-reach, reach + 1), indexing="ij")
  offsets = jnp.asarray(np.stack([ox.ravel(), oy.ravel()], -1), jnp.int32)  # (m, 2)
  pix = base[..., None, :] + offsets  # (t, n, m, 2)
  near = ((pix - c[..., None, :]) ** 2).sum(-1) <= (radius_px / stride) ** 2
  inside = (pix[..., 0] >= 0) & (pix[..., 0] < wc) & (pix[..., 1] >= 0) & (pix[..., 1] < hc)
  write = cand[..., None] & inside & near
  flat = jnp.clip(pix[..., 1], 0, hc - 1) * wc + jnp.clip(pix[..., 0], 0, wc - 1)
  frame = jnp.broadcast_to(jnp.arange(t)[:, None, None], flat.shape)
  zbuf = jnp.full((t, hc * wc), jnp.inf, depth.dtype).at[frame, flat].min(jnp.where(write, depth[..., None], jnp.inf))
  own = jnp.clip(base[..., 1], 0, hc - 1) * wc + jnp.clip(base[..., 0], 0, wc - 1)
  return cand & (depth <= jnp.take_along_axis(zbuf, own, axis=1) * (1.0 + depth_tolerance))


@functools.partial(jax.jit, static_argnames=("image_hw", "radius_px"))
def _project(xyz_world, w2c, intrinsics, image_hw, radius_px, depth_tolerance):
  xy, depth = geometry.project(geometry.transform_points(w2c, xyz_world), intrinsics)
  return xy, depth, occlusion_test(xy, depth, image_hw, radius_px, depth_tolerance)


def project_tracks(xyz_world, trajectory: Trajectory, radius_px: float | None = None,
                   depth_tolerance: float = DEPTH_TOLERANCE):
  """2D tracks, depth and visibility of 3D tracks seen through a trajectory.

  Args:
    xyz_world: (t, n, 3) world positions of the tracks.
    trajectory: the cameras (t frames).
    radius_px: disk radius of the coarse z-buffer; default `default_radius_px`.
    depth_tolerance: relative depth margin of the occlusion test.

  Returns:
    xy_px (t, n, 2) float32, depth (t, n) float32, visible (t, n) bool, as JAX arrays.

  Raises:
    ValueError: naming `xyz_world` or `trajectory` for wrong shapes, lengths or NaN.

  Example:
    >>> xy, depth, vis = project_tracks(xyz, target)
  """
  t, n = _check_xyz(xyz_world, trajectory, "trajectory")
  if radius_px is not None and not (np.isfinite(radius_px) and radius_px > 0):
    raise ValueError(f"radius_px: expected a positive radius in pixels; got {radius_px!r}.")
  radius = float(radius_px) if radius_px is not None else default_radius_px(trajectory.image_hw, n)
  return _project(jnp.asarray(xyz_world, jnp.float32), jnp.asarray(trajectory.w2c, jnp.float32),
                  jnp.asarray(trajectory.intrinsics, jnp.float32), tuple(trajectory.image_hw), radius,
                  float(depth_tolerance))


def _check_xyz(xyz_world, trajectory: Trajectory, name: str) -> tuple[int, int]:
  checks.array_shape(xyz_world, "xyz_world", (None, None, 3), "(t, n, 3) world positions of the tracks")
  t, n = np.shape(xyz_world)[:2]
  if t < 1 or n < 1:
    raise ValueError(f"xyz_world: expected at least one frame and one track; got shape {np.shape(xyz_world)}.")
  checks.finite(xyz_world, "xyz_world")
  if not isinstance(trajectory, Trajectory):
    raise ValueError(f"{name}: expected a generate.cameras.Trajectory; got {type(trajectory).__name__}.")
  checks.image_hw(trajectory.image_hw, f"{name}.image_hw")
  checks.poses(trajectory.w2c, f"{name}.w2c", t)
  checks.intrinsics(trajectory.intrinsics, f"{name}.intrinsics", t)
  return t, n


def paired_tracks(xyz_world, source: Trajectory, target: Trajectory, source_xy_px=None, source_visible=None,
                  target_visible=None, radius_px: float | None = None,
                  depth_tolerance: float = DEPTH_TOLERANCE) -> PairedTracks:
  """Pairs 3D tracks' source views with their images in a target trajectory.

  Args:
    xyz_world: (t, n, 3) world positions (a reconstruction or ground truth).
    source: the source trajectory (t frames).
    target: the target trajectory (t frames; any image size and intrinsics).
    source_xy_px: optional (t, n, 2) observed source positions (e.g. the
      tracker's); default: the projections of xyz_world.
    source_visible: optional (t, n) bool source visibility (e.g. the tracker's,
      or the renderer's exact one); default: the coarse test in the source view.
    target_visible: optional (t, n) bool exact target visibility (ground truth
      from the renderer); default: the coarse test in the target view.
    radius_px: coarse z-buffer disk radius; default `default_radius_px` per view.
    depth_tolerance: relative depth margin of the occlusion test.

  Returns:
    A `PairedTracks` of NumPy arrays (layout in the module docstring).

  Raises:
    ValueError: naming `xyz_world`, `source`, `target`, `source_xy_px`,
      `source_visible` or `target_visible` for wrong shapes or lengths (a
      trajectory of another length than the tracks), NaN/inf, non-rigid poses
      or zero-size images.

  Example:
    >>> target = cameras.camera_move(source, "orbit_left", 1.5, look_at=d)
    >>> pairs = paired_tracks(xyz_world, source, target)
    >>> pairs.target_xy_px.shape       # (t, n, 2)
  """
  t, n = _check_xyz(xyz_world, source, "source")
  _check_xyz(xyz_world, target, "target")
  s_xy, s_depth, s_vis = project_tracks(xyz_world, source, radius_px, depth_tolerance)
  t_xy, t_depth, t_vis = project_tracks(xyz_world, target, radius_px, depth_tolerance)
  if source_xy_px is not None:
    checks.array_shape(source_xy_px, "source_xy_px", (t, n, 2), "(t, n, 2) matching xyz_world")
    checks.finite(source_xy_px, "source_xy_px")
    s_xy = source_xy_px
  for name, vis in (("source_visible", source_visible), ("target_visible", target_visible)):
    if vis is not None:
      checks.array_shape(vis, name, (t, n), "(t, n) matching xyz_world")
      if np.asarray(vis).dtype != np.bool_:
        raise ValueError(f"{name}: expected a boolean array; got dtype {np.asarray(vis).dtype}.")
  s_vis = s_vis if source_visible is None else source_visible
  t_vis = t_vis if target_visible is None else target_visible
  f32 = lambda x: np.asarray(x, np.float32)
  return PairedTracks(
      xyz_world=f32(xyz_world), source_xy_px=f32(s_xy), source_depth=f32(s_depth),
      source_visible=np.asarray(s_vis, bool), target_xy_px=f32(t_xy), target_depth=f32(t_depth),
      target_visible=np.asarray(t_vis, bool), source_w2c=f32(source.w2c), target_w2c=f32(target.w2c),
      source_intrinsics=f32(source.intrinsics), target_intrinsics=f32(target.intrinsics),
      source_hw=np.asarray(source.image_hw, np.int32), target_hw=np.asarray(target.image_hw, np.int32))


def paired_tracks_from_tracks(tracks: Tracks, target: Trajectory, xyz_world=None, w2c=None,
                              **kwargs) -> PairedTracks:
  """Paired tracks of an observed clip: the tracker's source positions and visibility.

  Args:
    tracks: one unbatched clip (`tracks4d.tracks.Tracks`).
    target: the target trajectory (same number of frames).
    xyz_world: (t, n, 3) 3D tracks (a reconstruction's); default `tracks.gt.xyz_world`.
    w2c: (t, 4, 4) source poses; default `tracks.gt.w2c`.
    **kwargs: passed to `paired_tracks` (radius_px, depth_tolerance).

  Returns:
    A `PairedTracks` whose source fields are the observed tracks.

  Raises:
    ValueError: naming `xyz_world` or `w2c` when neither is given nor in
      `tracks.gt`, and as `paired_tracks`.
  """
  gt = tracks.gt
  if xyz_world is None:
    if gt is None:
      raise ValueError("xyz_world: not given and the clip has no ground truth (tracks.gt is None).")
    xyz_world = gt.xyz_world
  if w2c is None:
    if gt is None:
      raise ValueError("w2c: not given and the clip has no ground truth (tracks.gt is None).")
    w2c = gt.w2c
  source = Trajectory.create(w2c, tracks.intrinsics, tuple(np.asarray(tracks.image_hw)), name="source")
  return paired_tracks(xyz_world, source, target, source_xy_px=tracks.xy_px, source_visible=np.asarray(tracks.visible),
                       **kwargs)
