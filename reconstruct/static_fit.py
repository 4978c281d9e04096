"""How well a single static 3D point explains each track, given the cameras.

The movement level of a track is the RMS reprojection error (pixels) of the
best static point over its visible frames: near the tracker's noise for static
tracks, large for moving ones. It is the quantity the network's gamma learns
(the residual scale of the static fit), measured directly with the final cameras.

The point starts from the linear (DLT) triangulation and is refined by a few
Levenberg-Marquardt steps on the pixel error. The algebraic DLT solution of a
moving track is ill-defined (near-equal smallest singular values) and jumps
with tiny changes of the cameras; the minimum pixel error is a continuous
function of the cameras, so the labels built on it are stable.

Shapes: t frames, n tracks.
"""

from __future__ import annotations

import dataclasses

import einops
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


def triangulate_static(w2c: np.ndarray, K: np.ndarray, xy_px: np.ndarray, valid: np.ndarray,
                       refine_steps: int = 10) -> StaticFit:
  """Triangulates every track as a static point (DLT, then refined on the pixel
  error) and scores the fit.

  Args:
    w2c: (t, 4, 4) cameras.
    K: (t, 3, 3) intrinsics.
    xy_px: (t, n, 2) observed pixels.
    valid: (t, n) entries to use.
    refine_steps: Levenberg-Marquardt steps on the pixel error from each start
      (the DLT point and three points on the track's middle ray; 0: the best start).

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
  xyz, sq_err = _refine(_starts(xyz, w2c, xn, valid), w2c, K, xy, valid, steps=refine_steps)
  count = valid.sum(0)
  ok = (count >= 2) & np.isfinite(sq_err)  # finite: the point is in front of every camera that sees it
  with np.errstate(invalid="ignore"):
    rms = np.sqrt(sq_err / np.maximum(count, 1))
  return StaticFit(xyz_world=np.where(ok[:, None], xyz, np.nan), rms_px=np.where(ok, rms, np.nan), ok=ok)


def _starts(dlt, w2c, xn, valid, depth_factors=(0.3, 1.0, 3.0)):
  """(c, n, 3) starting points: the DLT point, and points on the ray of each
  track's middle visible frame at multiples of the scene's median DLT depth
  (the DLT point of a moving track can lie behind the cameras or far off)."""
  cam = geometry.transform_points(w2c, np.where(np.isfinite(dlt), dlt, 0.0))
  in_front = np.isfinite(dlt).all(-1) & np.where(valid, cam[..., 2] > geometry.MIN_DEPTH, True).all(0)
  depths = np.where(valid, cam[..., 2], np.nan)[:, in_front]
  scale = float(np.nanmedian(depths)) if np.isfinite(depths).any() else 1.0
  rank = np.cumsum(valid, 0)  # (t, n) visible frames up to and including t
  middle = np.argmax(rank >= np.maximum((valid.sum(0) + 1) // 2, 1), 0)  # (n,)
  ray = np.concatenate([xn[middle, np.arange(xn.shape[1])], np.ones((xn.shape[1], 1))], -1)  # (n, 3)
  c2w = geometry.invert_pose(w2c)[middle]  # (n, 4, 4)
  starts = [np.where(np.isfinite(dlt), dlt, 0.0)]
  for f in depth_factors:
    starts.append(np.einsum("nij,nj->ni", c2w[:, :3, :3], ray * f * scale) + c2w[:, :3, 3])
  return np.stack(starts)


def _sq_err(xyz, w2c, K, xy, valid):
  """(n,) summed squared pixel error of static points (n, 3) over valid frames."""
  proj, _ = geometry.project(geometry.transform_points(w2c, xyz), K)
  return np.where(valid, ((proj - xy) ** 2).sum(-1), 0.0).sum(0)


def _refine(starts, w2c, K, xy, valid, steps: int):
  """Levenberg-Marquardt on the pixel error of each static point from each of
  the starts (c, n, 3), all at once (a step is kept only where it lowers the
  error). Returns per track the end point (n, 3) with the least error among
  those in front of every camera that sees the track, and that summed squared
  error (n,) (inf where no end point is in front)."""
  c, n = starts.shape[:2]
  xyz = einops.rearrange(starts, "c n d -> (c n) d")
  xy = einops.repeat(xy, "t n d -> t (c n) d", c=c)
  valid = einops.repeat(valid, "t n -> t (c n)", c=c)
  rot, fx, fy = w2c[:, :3, :3], K[:, 0, 0], K[:, 1, 1]
  w = valid.astype(np.float64)
  damping = np.full(xyz.shape[0], 1e-3)
  cost = _sq_err(xyz, w2c, K, xy, valid)
  for _ in range(steps):
    cam = geometry.transform_points(w2c, xyz)  # (t, n, 3)
    z = np.maximum(cam[..., 2], geometry.MIN_DEPTH)
    proj, _ = geometry.project(cam, K)
    res = (proj - xy) * w[..., None]  # (t, n, 2)
    # d(pixel)/d(cam): fx/z [1, 0, -x/z] and fy/z [0, 1, -y/z]; d(cam)/d(X) = R.
    du = (fx[:, None, None] / z[..., None]) * (rot[:, None, 0] - (cam[..., 0] / z)[..., None] * rot[:, None, 2])
    dv = (fy[:, None, None] / z[..., None]) * (rot[:, None, 1] - (cam[..., 1] / z)[..., None] * rot[:, None, 2])
    jac = np.stack([du, dv], -2) * w[..., None, None]  # (t, n, 2, 3)
    jac = einops.rearrange(jac, "t n r i -> n (t r) i")
    jtj = np.swapaxes(jac, 1, 2) @ jac  # (n, 3, 3)
    jtr = (np.swapaxes(jac, 1, 2) @ einops.rearrange(res, "t n r -> n (t r) 1"))[..., 0]  # (n, 3)
    diag = np.diagonal(jtj, axis1=1, axis2=2)
    system = jtj + (damping[:, None] * np.maximum(diag, 1e-12))[..., None] * np.eye(3)
    step = np.linalg.solve(system, -jtr[..., None])[..., 0]
    trial = xyz + step
    new_cost = _sq_err(trial, w2c, K, xy, valid)
    better = np.isfinite(new_cost) & (new_cost < cost)
    xyz = np.where(better[:, None], trial, xyz)
    cost = np.where(better, new_cost, cost)
    damping = np.clip(np.where(better, damping / 3, damping * 4), 1e-9, 1e6)
  cam = geometry.transform_points(w2c, xyz)
  in_front = np.where(valid, cam[..., 2] > geometry.MIN_DEPTH, True).all(0)
  cost = einops.rearrange(np.where(in_front & np.isfinite(cost), cost, np.inf), "(c n) -> c n", c=c)
  best = np.argmin(cost, 0)  # (n,)
  return einops.rearrange(xyz, "(c n) d -> c n d", c=c)[best, np.arange(n)], cost[best, np.arange(n)]


def movement_threshold(rms_px: np.ndarray, min_px: float = 2.0, factor: float = 3.0) -> float:
  """Threshold between static and dynamic: `factor` x the median static-fit
  error (most tracks of a casual video are static; the median reflects the
  tracker's noise and the cameras' error), at least `min_px` pixels."""
  finite = np.asarray(rms_px)[np.isfinite(rms_px)]
  med = float(np.median(finite)) if finite.size else 0.0
  return max(min_px, factor * med)
