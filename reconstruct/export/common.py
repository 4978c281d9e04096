"""Helpers shared by the exporters: input checks, colours, static points, atomic writes.

* `check_reconstruction` turns a `Reconstruction` into float64/bool NumPy arrays
  with consistent shapes (t frames, n tracks), or raises naming the field.
* `movement_colors` is THE colour scale of the exports (PLY, COLMAP, plot,
  video): blue (static, movement 0) -> purple (movement = threshold) -> red
  (movement >= 2 x threshold).
* `static_points` picks the static tracks and their 3D positions (the mean of
  `tracks_world` over the frames where the track is visible).
* `observed_xy` gives the 2D observations used by the COLMAP export: the input
  tracks when given, else the projections of `tracks_cam`.
* `write_bytes_atomic` / `write_text_atomic` replace a file atomically.

Shapes: t frames, n tracks, h w image, p points.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np

from tracks4d import geometry
from tracks4d.io import npz_utils

# Ends of the movement colour scale (RGB): static and dynamic.
STATIC_RGB = np.array([40, 90, 235], np.float64)
DYNAMIC_RGB = np.array([235, 40, 40], np.float64)


@dataclasses.dataclass(frozen=True)
class Arrays:
  """The arrays of a `Reconstruction` the exporters use, as checked NumPy arrays.

  Attributes:
    c2w, w2c: (t, 4, 4) float64 poses.
    K: (t, 3, 3) float64 intrinsics, pixels.
    image_hw: (height, width) ints.
    tracks_world, tracks_cam: (t, n, 3) float64.
    visible: (t, n) bool.
    movement: (n,) float64.
    is_dynamic: (n,) bool.
    movement_threshold: float.
  """

  c2w: np.ndarray
  w2c: np.ndarray
  K: np.ndarray
  image_hw: tuple[int, int]
  tracks_world: np.ndarray
  tracks_cam: np.ndarray
  visible: np.ndarray
  movement: np.ndarray
  is_dynamic: np.ndarray
  movement_threshold: float

  @property
  def num_frames(self) -> int:
    return self.c2w.shape[0]

  @property
  def num_tracks(self) -> int:
    return self.movement.shape[0]


def check_reconstruction(rec: Any) -> Arrays:
  """Checks the shapes of a `Reconstruction` and returns its arrays as NumPy.

  Args:
    rec: a `reconstruct.result.Reconstruction` (NumPy or JAX arrays).

  Returns:
    `Arrays` with float64 / bool copies of the fields.

  Raises:
    ValueError: naming the field (`rec.<field>`) for a wrong shape or a
      non-numeric dtype.

  Example:
    >>> a = check_reconstruction(rec); a.tracks_world.shape
    (t, n, 3)
  """

  def get(name, kind="f"):
    x = np.asarray(getattr(rec, name))
    if kind == "b":
      if x.dtype.kind not in "biu":
        raise ValueError(f"rec.{name}: expected a bool array; got dtype {x.dtype}.")
      return x.astype(bool)
    if x.dtype.kind not in "biuf":
      raise ValueError(f"rec.{name}: expected a numeric array; got dtype {x.dtype}.")
    return x.astype(np.float64)

  movement = get("movement")
  if movement.ndim != 1:
    raise ValueError(f"rec.movement: expected shape (n,); got {movement.shape}.")
  n = movement.shape[0]
  c2w = get("c2w")
  if c2w.ndim != 3 or c2w.shape[1:] != (4, 4) or c2w.shape[0] < 1:
    raise ValueError(f"rec.c2w: expected shape (t, 4, 4) with t >= 1; got {c2w.shape}.")
  t = c2w.shape[0]
  expected = {"w2c": (t, 4, 4), "K": (t, 3, 3), "tracks_world": (t, n, 3), "tracks_cam": (t, n, 3),
              "visible": (t, n), "is_dynamic": (n,)}
  out = {}
  for name, shape in expected.items():
    x = get(name, "b" if name in ("visible", "is_dynamic") else "f")
    if x.shape != shape:
      raise ValueError(f"rec.{name}: expected shape {shape} (t={t} frames, n={n} tracks); got {x.shape}.")
    out[name] = x
  hw = np.asarray(rec.image_hw).reshape(-1)
  if hw.shape != (2,) or np.any(hw <= 0):
    raise ValueError(f"rec.image_hw: expected positive (height, width); got {np.asarray(rec.image_hw)!r}.")
  return Arrays(c2w=c2w, image_hw=(int(hw[0]), int(hw[1])), movement=movement,
                movement_threshold=float(rec.movement_threshold), **out)


def movement_scale(movement: np.ndarray, threshold: float | None) -> float:
  """The movement level drawn fully red: 2 x threshold (a usable threshold), else
  the 95th percentile of the finite movements (else 1)."""
  if threshold is not None and np.isfinite(threshold) and threshold > 0:
    return 2.0 * float(threshold)
  m = np.asarray(movement, np.float64)
  m = m[np.isfinite(m)]
  top = float(np.percentile(m, 95)) if m.size else 0.0
  return top if top > 0 else 1.0


def movement_colors(movement, threshold: float | None = None) -> np.ndarray:
  """Colours of tracks by movement: blue static -> purple at the threshold -> red dynamic.

  Args:
    movement: (n,) movement levels (>= 0; NaN is drawn as static).
    threshold: the static/dynamic threshold; the scale runs linearly from 0
      (blue) to 2 x threshold (red), so the threshold itself is the middle
      (purple). None or <= 0: the scale ends at the 95th percentile instead.

  Returns:
    (n, 3) uint8 RGB.

  Example:
    >>> movement_colors(np.array([0.0, 0.02, 1.0]), threshold=0.02)[:, 0]  # red channel
    array([ 40, 138, 235], dtype=uint8)
  """
  m = np.asarray(movement, np.float64).reshape(-1)
  u = np.clip(np.nan_to_num(m / movement_scale(m, threshold), nan=0.0), 0.0, 1.0)[:, None]
  return np.round((1.0 - u) * STATIC_RGB + u * DYNAMIC_RGB).astype(np.uint8)


def colors_from_frames(frames, xy_px, visible) -> np.ndarray:
  """Colour of each track in the video: the pixel under its first visible position.

  Args:
    frames: (t, h, w, 3) uint8 RGB video.
    xy_px: (t, n, 2) pixel positions (x, y).
    visible: (t, n) bool.

  Returns:
    (n, 3) uint8 RGB; grey (128) for tracks never visible inside the image.
  """
  frames = np.asarray(frames)
  xy = np.asarray(xy_px, np.float64)
  vis = np.asarray(visible, bool)
  t, h, w = frames.shape[:3]
  ij = np.round(np.clip(np.nan_to_num(xy, nan=-1.0, posinf=-1.0, neginf=-1.0), -1.0, 1e9)).astype(np.int64)
  ok = vis & (ij[..., 0] >= 0) & (ij[..., 0] < w) & (ij[..., 1] >= 0) & (ij[..., 1] < h)
  colors = np.full((xy.shape[1], 3), 128, np.uint8)
  has = ok.any(0)
  first = np.argmax(ok, axis=0)
  cols = np.nonzero(has)[0]
  f = first[cols]
  colors[cols] = frames[f, ij[f, cols, 1], ij[f, cols, 0]]
  return colors


def static_points(a: Arrays) -> tuple[np.ndarray, np.ndarray]:
  """The static tracks and their 3D positions.

  A track is exported as a static point when `is_dynamic` is False and it is
  visible in at least one frame; its position is the mean of `tracks_world`
  over the frames where it is visible (for a static track this is its static
  basis point, averaged over windows when there are several).

  Args:
    a: checked arrays (`check_reconstruction`).

  Returns:
    index: (p,) int track indices (input order, increasing).
    xyz: (p, 3) float64 world positions.
  """
  index = np.nonzero(~a.is_dynamic & a.visible.any(0))[0]
  vis = a.visible[:, index].astype(np.float64)
  xyz = np.einsum("tp,tpc->pc", vis, a.tracks_world[:, index]) / vis.sum(0)[:, None]
  keep = np.isfinite(xyz).all(-1)
  return index[keep], xyz[keep]


def projected_xy(a: Arrays) -> np.ndarray:
  """(t, n, 2) projections (x, y) of `tracks_cam` with K (our pixel convention)."""
  xy, _ = geometry.project(a.tracks_cam, a.K)
  return np.asarray(xy, np.float64)


def observed_xy(a: Arrays, xy_px=None) -> tuple[np.ndarray, np.ndarray]:
  """The 2D observations of the tracks and where they can be used.

  Args:
    a: checked arrays.
    xy_px: optional (t, n, 2) input tracks (x, y); None: the projections of
      `tracks_cam` (entries at depth <= MIN_DEPTH are then unusable).

  Returns:
    xy: (t, n, 2) float64 positions.
    ok: (t, n) bool: visible and finite (and in front of the camera when
      projected).

  Raises:
    ValueError: naming `xy_px` for a wrong shape.
  """
  if xy_px is None:
    xy = projected_xy(a)
    ok = a.visible & (a.tracks_cam[..., 2] > geometry.MIN_DEPTH)
  else:
    xy = np.asarray(xy_px, np.float64)
    if xy.shape != (a.num_frames, a.num_tracks, 2):
      raise ValueError(f"xy_px: expected shape (t, n, 2) = {(a.num_frames, a.num_tracks, 2)}; got {xy.shape}.")
    ok = a.visible.copy()
  return xy, ok & np.isfinite(xy).all(-1)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
  """Writes bytes to `path` atomically (temporary file + rename); returns the path."""
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  with npz_utils.atomic_write(path) as f:
    f.write(data)
  return path


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
  """Writes UTF-8 text to `path` atomically; returns the path."""
  return write_bytes_atomic(path, text.encode("utf-8"))
