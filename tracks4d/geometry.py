"""Coordinate conventions of tracks4d, and the geometry that depends on them.

This module is the single owner of the conventions; every other module calls it
instead of re-deriving them. `tests/test_geometry.py` pins each rule down.

Conventions
-----------
* Camera axes are OpenCV's: x right, y down, z forward (depth = camera-frame z > 0
  in front of the camera).
* Pixel coordinates are (x, y) = (column, row), in that order, everywhere: arrays
  named `xy_px` have last axis (x, y). The centre of pixel (row i, column j) is at
  (x, y) = (j, i); the image of size (h, w) spans x in [-0.5, w - 0.5) and
  y in [-0.5, h - 0.5).
* Intrinsics `K` are 3x3 [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] in pixels, with the
  convention above, so u = fx * X / Z + cx.
* Normalised camera coordinates are x = (u - cx) / fx, y = (v - cy) / fy.
* Poses are 4x4 homogeneous matrices. `w2c` maps world points to the camera frame
  (X_cam = R X_world + t); `c2w` is its inverse; the camera centre is c2w[:3, 3].
* Rotation 6D representation (Zhou et al. 2019): the first two *columns* of the
  rotation matrix, concatenated as (a1, a2) of 3 values each; Gram-Schmidt
  recovers the matrix.
* Image size is (h, w) in pixels, in that order (array shape order).

Every function accepts NumPy or JAX arrays and returns the same kind it was given
(JAX when any argument is a JAX array or tracer), so the NumPy data layer and the
jitted network share one implementation.

Shape letters: b batch, t time, n tracks, h height, w width, and `...` for any
leading axes.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

Array = Any  # np.ndarray | jax.Array

# Smallest camera-frame depth used when dividing by z (the peer clamps at 0.01).
MIN_DEPTH = 1e-2


def _xp(*arrays: Array):
  """The array namespace of the inputs: jax.numpy if any is a JAX array."""
  for a in arrays:
    if isinstance(a, jax.Array):
      return jnp
  return np


# ---------------------------------------------------------------------------
# Rotations.
# ---------------------------------------------------------------------------


def rot6d_to_matrix(r6: Array) -> Array:
  """Rotation matrices from the 6D representation by Gram-Schmidt.

  Args:
    r6: (..., 6) the first two columns (a1, a2) of the rotation, unnormalised.

  Returns:
    (..., 3, 3) rotation matrices whose columns are (b1, b2, b1 x b2).

  Example:
    >>> rot6d_to_matrix(np.array([1., 0, 0, 0, 1, 0]))  # identity
  """
  xp = _xp(r6)
  # Norms clamped inside the square root: at a zero vector the gradient is zero,
  # not NaN (the gradient of an unclamped norm is 0/0 there).
  safe_norm = lambda v: xp.sqrt(xp.maximum((v * v).sum(-1, keepdims=True), 1e-16))
  a1, a2 = r6[..., :3], r6[..., 3:]
  b1 = a1 / safe_norm(a1)
  a2 = a2 - (b1 * a2).sum(-1, keepdims=True) * b1
  b2 = a2 / safe_norm(a2)
  b3 = xp.cross(b1, b2)
  return xp.stack([b1, b2, b3], axis=-1)


def matrix_to_rot6d(rot: Array) -> Array:
  """The 6D representation (first two columns) of rotation matrices (..., 3, 3)."""
  xp = _xp(rot)
  return xp.concatenate([rot[..., :, 0], rot[..., :, 1]], axis=-1)


def skew(v: Array) -> Array:
  """(..., 3, 3) cross-product matrices [v]_x, so that skew(v) @ u = v x u."""
  xp = _xp(v)
  z = xp.zeros_like(v[..., 0])
  return xp.stack(
      [
          xp.stack([z, -v[..., 2], v[..., 1]], -1),
          xp.stack([v[..., 2], z, -v[..., 0]], -1),
          xp.stack([-v[..., 1], v[..., 0], z], -1),
      ],
      axis=-2,
  )


def axis_angle_to_matrix(aa: Array) -> Array:
  """Rodrigues' formula (the SO(3) exponential map).

  Args:
    aa: (..., 3) axis times angle in radians.

  Returns:
    (..., 3, 3) rotation matrices. Exact and differentiable at zero angle.
  """
  xp = _xp(aa)
  theta2 = (aa * aa).sum(-1)[..., None, None]
  small = theta2 < 1e-8
  theta2_safe = xp.where(small, 1.0, theta2)
  theta = xp.sqrt(theta2_safe)
  # sin(t)/t and (1-cos(t))/t^2 with Taylor series near zero.
  a = xp.where(small, 1.0 - theta2 / 6.0, xp.sin(theta) / theta)
  b = xp.where(small, 0.5 - theta2 / 24.0, (1.0 - xp.cos(theta)) / theta2_safe)
  k = skew(aa)
  eye = xp.broadcast_to(xp.eye(3, dtype=k.dtype), k.shape)
  return eye + a * k + b * (k @ k)


def matrix_to_axis_angle(rot: Array) -> Array:
  """The SO(3) logarithm: (..., 3, 3) rotations to (..., 3) axis-angle.

  Angles are returned in [0, pi]. Near pi the axis is taken from the symmetric
  part of the matrix, so the result stays accurate there too.
  """
  xp = _xp(rot)
  trace = rot[..., 0, 0] + rot[..., 1, 1] + rot[..., 2, 2]
  cos = xp.clip((trace - 1.0) / 2.0, -1.0, 1.0)
  theta = xp.arccos(cos)
  vee = xp.stack(
      [rot[..., 2, 1] - rot[..., 1, 2], rot[..., 0, 2] - rot[..., 2, 0], rot[..., 1, 0] - rot[..., 0, 1]],
      axis=-1,
  )
  sin = xp.sin(theta)
  small = theta < 1e-4
  near_pi = theta > np.pi - 1e-3
  # Generic case: axis = vee / (2 sin theta).
  scale = xp.where(small, 0.5 + theta**2 / 12.0, theta / (2.0 * xp.where(small | near_pi, 1.0, sin)))
  generic = vee * scale[..., None]
  # Near pi: sym(R) - cos I = (1 - cos) a a^T; take the column with the largest norm.
  sym = (rot + xp.swapaxes(rot, -1, -2)) / 2.0 - xp.eye(3, dtype=rot.dtype) * cos[..., None, None]
  col_norms = xp.linalg.norm(sym, axis=-2)
  idx = xp.argmax(col_norms, axis=-1)
  col = xp.take_along_axis(sym, xp.broadcast_to(idx[..., None, None], sym.shape[:-2] + (3, 1)), axis=-1)[..., 0]
  axis = col / xp.maximum(xp.linalg.norm(col, axis=-1, keepdims=True), 1e-12)
  # Fix the sign with the (small) antisymmetric part.
  sign = xp.where((axis * vee).sum(-1) < 0, -1.0, 1.0)
  at_pi = axis * (sign * theta)[..., None]
  return xp.where(near_pi[..., None], at_pi, generic)


# ---------------------------------------------------------------------------
# Poses.
# ---------------------------------------------------------------------------


def make_pose(rot: Array, trans: Array) -> Array:
  """4x4 homogeneous matrices from rotations (..., 3, 3) and translations (..., 3)."""
  xp = _xp(rot, trans)
  top = xp.concatenate([rot, trans[..., :, None]], axis=-1)
  bottom = xp.broadcast_to(xp.asarray([0.0, 0.0, 0.0, 1.0], dtype=top.dtype), top.shape[:-2] + (1, 4))
  return xp.concatenate([top, bottom], axis=-2)


def invert_pose(pose: Array) -> Array:
  """Inverse of rigid 4x4 poses (..., 4, 4): w2c <-> c2w."""
  xp = _xp(pose)
  rot_t = xp.swapaxes(pose[..., :3, :3], -1, -2)
  trans = -(rot_t @ pose[..., :3, 3:4])[..., 0]
  return make_pose(rot_t, trans)


def camera_centers(w2c: Array) -> Array:
  """Camera centres in the world frame (..., 3) from world-to-camera poses (..., 4, 4)."""
  rot_t = _xp(w2c).swapaxes(w2c[..., :3, :3], -1, -2)
  return -(rot_t @ w2c[..., :3, 3:4])[..., 0]


def transform_points(pose: Array, xyz: Array) -> Array:
  """Apply 4x4 poses to points: pose (..., 4, 4) with xyz (..., n, 3) -> (..., n, 3)."""
  xp = _xp(pose, xyz)
  rot, trans = pose[..., :3, :3], pose[..., :3, 3]
  return xyz @ xp.swapaxes(rot, -1, -2) + trans[..., None, :]


def look_at(eye: Array, target: Array, up: Array = (0.0, -1.0, 0.0)) -> Array:
  """Camera-to-world poses of cameras at `eye` looking at `target` (OpenCV axes).

  Args:
    eye: (..., 3) camera centres.
    target: (..., 3) points the optical axis (+z) passes through.
    up: (3,) or (..., 3) world direction that appears up in the image (-y). The
      default (0, -1, 0) suits a world whose +y points down, like OpenCV's.

  Returns:
    (..., 4, 4) camera-to-world matrices.

  Raises:
    ValueError: if eye and target coincide or the view direction is parallel to
      `up` (checked for NumPy inputs only).
  """
  xp = _xp(eye, target)
  eye = xp.asarray(eye, dtype=xp.float32) if xp is np else eye
  target = xp.asarray(target, dtype=eye.dtype)
  up = xp.broadcast_to(xp.asarray(up, dtype=eye.dtype), eye.shape)
  fwd = target - eye
  fwd_norm = xp.linalg.norm(fwd, axis=-1, keepdims=True)
  right = xp.cross(-up, fwd)  # x = y cross z with y = -up.
  right_norm = xp.linalg.norm(right, axis=-1, keepdims=True)
  if xp is np:
    if np.any(fwd_norm < 1e-9):
      raise ValueError("look_at: `eye` and `target` coincide; the view direction is undefined.")
    if np.any(right_norm < 1e-9 * np.maximum(fwd_norm, 1.0)):
      raise ValueError("look_at: the view direction is parallel to `up`; pass another `up` vector.")
  z = fwd / fwd_norm
  x = right / right_norm
  y = xp.cross(z, x)
  return make_pose(xp.stack([x, y, z], axis=-1), eye)


# ---------------------------------------------------------------------------
# Intrinsics and projection.
# ---------------------------------------------------------------------------


def make_intrinsics(fx: Array, fy: Array, cx: Array, cy: Array) -> Array:
  """(..., 3, 3) intrinsics matrices from broadcastable fx, fy, cx, cy in pixels."""
  xp = _xp(fx, fy, cx, cy)
  fx, fy, cx, cy = xp.broadcast_arrays(*(xp.asarray(v, dtype=xp.float32) for v in (fx, fy, cx, cy)))
  z, o = xp.zeros_like(fx), xp.ones_like(fx)
  return xp.stack([xp.stack([fx, z, cx], -1), xp.stack([z, fy, cy], -1), xp.stack([z, z, o], -1)], -2)


def intrinsics_from_fov(fov_x_deg: Array, image_hw: tuple[int, int]) -> Array:
  """Pinhole intrinsics (3, 3) with square pixels, a horizontal field of view in
  degrees and the principal point at the image centre."""
  h, w = image_hw
  fx = (w / 2.0) / np.tan(np.deg2rad(fov_x_deg) / 2.0)
  return make_intrinsics(fx, fx, (w - 1) / 2.0, (h - 1) / 2.0)


def guess_intrinsics(image_hw: tuple[int, int]) -> np.ndarray:
  """The peer's fallback when intrinsics are unknown: f = mean(w, h), centred."""
  h, w = image_hw
  f = (w + h) / 2.0
  return make_intrinsics(f, f, (w - 1) / 2.0, (h - 1) / 2.0)


def project(xyz_cam: Array, K: Array, min_depth: float = MIN_DEPTH) -> tuple[Array, Array]:
  """Perspective projection of camera-frame points to pixels.

  Args:
    xyz_cam: (..., n, 3) points in the camera frame.
    K: (..., 3, 3) intrinsics.
    min_depth: depth is clamped to at least this before division (points behind
      the camera still project somewhere finite; use the returned depth to mask).

  Returns:
    xy_px: (..., n, 2) pixel positions (x, y).
    depth: (..., n) camera-frame z, unclamped.
  """
  xp = _xp(xyz_cam, K)
  depth = xyz_cam[..., 2]
  z = xp.maximum(depth, min_depth)
  xy_n = xyz_cam[..., :2] / z[..., None]
  return normalized_to_pixels(xy_n, K), depth


def unproject(xy_px: Array, depth: Array, K: Array) -> Array:
  """Camera-frame points (..., n, 3) from pixels (..., n, 2) and depths (..., n)."""
  xp = _xp(xy_px, depth, K)
  xy_n = pixels_to_normalized(xy_px, K)
  return xp.concatenate([xy_n * depth[..., None], depth[..., None]], axis=-1)


def pixels_to_normalized(xy_px: Array, K: Array) -> Array:
  """x = (u - cx) / fx, y = (v - cy) / fy for (..., n, 2) pixels and (..., 3, 3) K."""
  f = _xp(K).stack([K[..., 0, 0], K[..., 1, 1]], -1)[..., None, :]
  c = _xp(K).stack([K[..., 0, 2], K[..., 1, 2]], -1)[..., None, :]
  return (xy_px - c) / f


def normalized_to_pixels(xy_n: Array, K: Array) -> Array:
  """Inverse of `pixels_to_normalized`."""
  f = _xp(K).stack([K[..., 0, 0], K[..., 1, 1]], -1)[..., None, :]
  c = _xp(K).stack([K[..., 0, 2], K[..., 1, 2]], -1)[..., None, :]
  return xy_n * f + c


def in_image(xy_px: Array, image_hw: Array) -> Array:
  """Whether pixel positions (..., 2) fall inside one image of size (h, w) (shape (2,))."""
  h, w = image_hw[0], image_hw[1]
  x, y = xy_px[..., 0], xy_px[..., 1]
  return (x >= -0.5) & (x < w - 0.5) & (y >= -0.5) & (y < h - 0.5)


# ---------------------------------------------------------------------------
# Similarity alignment.
# ---------------------------------------------------------------------------


def umeyama(src: Array, dst: Array, with_scale: bool = True, weights: Array | None = None):
  """Least-squares similarity (Umeyama 1991) with dst ~= s * R @ src + t.

  Args:
    src: (n, 3) points to move (e.g. predicted camera centres).
    dst: (n, 3) target points (e.g. ground-truth centres).
    with_scale: estimate the scale s (Sim(3)); otherwise s = 1 (SE(3)).
    weights: optional (n,) non-negative weights.

  Returns:
    (s, R, t): scalar scale, (3, 3) rotation with det +1, (3,) translation.

  Raises:
    ValueError: for NumPy inputs with mismatched shapes or fewer than 2 points
      with positive weight.

  Example:
    >>> s, R, t = umeyama(pred_centres, gt_centres)
    >>> aligned = s * pred_centres @ R.T + t
  """
  xp = _xp(src, dst)
  if xp is np:
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[-1] != 3:
      raise ValueError(f"umeyama: src and dst must both be (n, 3); got {src.shape} and {dst.shape}.")
  w = xp.ones(src.shape[0], dtype=src.dtype) if weights is None else xp.asarray(weights, dtype=src.dtype)
  if xp is np and (w > 0).sum() < 2:
    raise ValueError("umeyama: needs at least 2 points with positive weight.")
  w = w / w.sum()
  mu_s = (w[:, None] * src).sum(0)
  mu_d = (w[:, None] * dst).sum(0)
  xs, xd = src - mu_s, dst - mu_d
  var_s = (w * (xs * xs).sum(-1)).sum()
  cov = (w[:, None] * xd).T @ xs
  u, sig, vt = xp.linalg.svd(cov)
  d = xp.sign(xp.linalg.det(u) * xp.linalg.det(vt))
  d = xp.where(d == 0, 1.0, d)
  diag = xp.asarray([1.0, 1.0, 1.0], dtype=src.dtype)
  diag = diag * xp.asarray([1.0, 1.0, 0.0], dtype=src.dtype) + xp.asarray([0.0, 0.0, 1.0], dtype=src.dtype) * d
  rot = (u * diag) @ vt
  if with_scale:
    scale = (sig * diag).sum() / xp.maximum(var_s, 1e-12)
  else:
    scale = xp.asarray(1.0, dtype=src.dtype)
  trans = mu_d - scale * rot @ mu_s
  return scale, rot, trans
