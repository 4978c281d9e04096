"""How well a single static 3D point explains each track, given the cameras.

The movement level of a track is the RMS reprojection error (pixels) of the
best static point (linear DLT triangulation over its visible frames): near the
tracker's noise for static tracks, large for moving ones. It is the quantity
the network's gamma learns (the residual scale of the static fit), measured
directly with the final cameras.

Shapes: t frames, n tracks.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tracks4d import geometry


@dataclasses.dataclass(frozen=True)
class StaticFit:
  """Per-track static fit.

  Attributes:
    xyz_world: (n, 3) the triangulated static point (NaN when not `ok`).
    rms_px: (n,) RMS reprojection error over visible frames (NaN when not `ok`).
    ok: (n,) at least two visible frames and the point in front of them.
  """

  xyz_world: np.ndarray
  rms_px: np.ndarray
  ok: np.ndarray


def triangulate_static(w2c: np.ndarray, K: np.ndarray, xy_px: np.ndarray, valid: np.ndarray) -> StaticFit:
  """DLT-triangulates every track as a static point and scores the fit.

  Args:
    w2c: (t, 4, 4) cameras.
    K: (t, 3, 3) intrinsics.
    xy_px: (t, n, 2) observed pixels.
    valid: (t, n) entries to use.

  Returns:
    StaticFit.

  Example:
    >>> fit = triangulate_static(rec.w2c, rec.K, clip.xy_px, clip.visible)
    >>> fit.rms_px   # small for static tracks
  """
  w2c = np.asarray(w2c, np.float64)
  K = np.asarray(K, np.float64)
  xy = np.asarray(xy_px, np.float64)
  valid = np.asarray(valid, bool)
  xn = geometry.pixels_to_normalized(xy, K)  # (t, n, 2)
  P = w2c[:, :3, :]  # (t, 3, 4) normalised cameras
  rows_x = xn[..., 0:1] * P[:, None, 2] - P[:, None, 0]  # (t, n, 4)
  rows_y = xn[..., 1:2] * P[:, None, 2] - P[:, None, 1]
  A = np.concatenate([rows_x, rows_y], 0) * np.concatenate([valid, valid], 0)[..., None]  # (2t, n, 4)
  A = np.transpose(A, (1, 0, 2))  # (n, 2t, 4)
  # Scale rows for conditioning (each row has its own scale; the null vector is unchanged).
  A = A / np.maximum(np.linalg.norm(A, axis=-1, keepdims=True), 1e-12)
  _, _, vt = np.linalg.svd(A, full_matrices=False)
  h = vt[:, -1]  # (n, 4)
  with np.errstate(divide="ignore", invalid="ignore"):
    xyz = h[:, :3] / h[:, 3:4]
  cam = np.einsum("tij,nj->tni", w2c[:, :3, :3], xyz) + w2c[:, None, :3, 3]
  proj, _ = geometry.project(cam, K)
  err2 = ((proj - xy) ** 2).sum(-1)
  count = valid.sum(0)
  in_front = np.where(valid, cam[..., 2] > geometry.MIN_DEPTH, True).all(0)
  ok = (count >= 2) & np.isfinite(xyz).all(-1) & in_front
  with np.errstate(invalid="ignore", divide="ignore"):
    rms = np.sqrt(np.where(valid, err2, 0.0).sum(0) / np.maximum(count, 1))
  return StaticFit(xyz_world=np.where(ok[:, None], xyz, np.nan), rms_px=np.where(ok, rms, np.nan), ok=ok)


def movement_threshold(rms_px: np.ndarray, min_px: float = 2.0, factor: float = 3.0) -> float:
  """Threshold between static and dynamic: `factor` x the median static-fit
  error (most tracks of a casual video are static; the median reflects the
  tracker's noise and the cameras' error), at least `min_px` pixels."""
  finite = np.asarray(rms_px)[np.isfinite(rms_px)]
  med = float(np.median(finite)) if finite.size else 0.0
  return max(min_px, factor * med)
