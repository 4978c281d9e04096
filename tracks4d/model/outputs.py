"""From raw network outputs to cameras, 3D tracks, depths and projections.

The low-rank model (REFERENCE.md section 1): the 3D point of track j at frame t is
  X_j(t) = B_j^0 + sum_{k>=1} c_k(t) B_j^k,
with B_j^0 the static point. Cameras: R_t (camera-to-world rotation, from 6D) and
centre c_t; X_cam = R_t^T (X - c_t); projection in normalised coordinates
f_t * (x / z, y / z) with z clamped at 0.01.

Gradient structure (as the peer): the *static* projection uses the cameras and
B^0 with gradients, so they are trained by the static loss only; the *dynamic*
projection uses stop-gradient cameras and B^0 plus the motion part with
gradients, so bases k >= 1 and coefficients are trained by the dynamic loss only.

Shapes: b batch, t frames, n tracks, k bases.
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp

from tracks4d import geometry

MIN_DEPTH = geometry.MIN_DEPTH


@flax.struct.dataclass
class RawOutputs:
  """What the network predicts.

  Attributes:
    rot6d: (b, t, 6) camera-to-world rotation, 6D.
    centre: (b, t, 3) camera centres, world frame.
    log_focal: (b, t) log of the focal-length factor (0: the input intrinsics).
    coeff: (b, t, k) basis coefficients, coeff[..., 0] == 1.
    bases: (b, n, 3, k) per-track bases; bases[..., 0] is the static point.
    gamma: (b, n) movement level (> 0): the residual scale of the static fit.
    prior_static: (b, n, 3) the network's own static point, or None when it is
      bases[..., 0] (with `triangulate_static`, bases[..., 0] is the triangulated
      point and this is its ridge prior).
  """

  rot6d: jax.Array
  centre: jax.Array
  log_focal: jax.Array
  coeff: jax.Array
  bases: jax.Array
  gamma: jax.Array
  prior_static: jax.Array | None = None


@flax.struct.dataclass
class Prediction:
  """Decoded reconstruction of a batch.

  Attributes:
    raw: the network outputs.
    c2w: (b, t, 4, 4) camera-to-world poses (OpenCV axes).
    focal: (b, t) focal-length factor.
    xyz_world: (b, t, n, 3) 3D tracks, world frame (full low-rank model).
    xyz_cam: (b, t, n, 3) 3D tracks in each camera frame; depth = [..., 2].
    xy_static: (b, t, n, 2) projection of the static points B^0 (normalised).
    xy_dynamic: (b, t, n, 2) projection of the full model, stop-gradient cameras.
    depth_static: (b, t, n) camera depth of B^0.
    xy_prior: (b, t, n, 2) projection of the network's own static point
      (`raw.prior_static`, else B^0) by the stop-gradient cameras (normalised).
  """

  raw: RawOutputs
  c2w: jax.Array
  focal: jax.Array
  xyz_world: jax.Array
  xyz_cam: jax.Array
  xy_static: jax.Array
  xy_dynamic: jax.Array
  depth_static: jax.Array
  xy_prior: jax.Array

  @property
  def w2c(self) -> jax.Array:
    return geometry.invert_pose(self.c2w)

  @property
  def depth(self) -> jax.Array:
    """(b, t, n) camera-frame depth of the full model."""
    return self.xyz_cam[..., 2]


def _to_camera(rot, centre, xyz):
  """R^T (X - c): rot (b, t, 3, 3), centre (b, t, 3), xyz (b, t, n, 3) or (b, 1, n, 3)."""
  return jnp.einsum("btji,btnj->btni", rot, xyz - centre[:, :, None, :])


def _project(xyz_cam, focal):
  z = jnp.maximum(xyz_cam[..., 2:], MIN_DEPTH)
  return focal[..., None, None] * xyz_cam[..., :2] / z


def decode(raw: RawOutputs) -> Prediction:
  """Cameras, 3D tracks and both projections from raw outputs (see module doc)."""
  sg = jax.lax.stop_gradient
  rot = geometry.rot6d_to_matrix(raw.rot6d)  # (b, t, 3, 3)
  focal = jnp.exp(raw.log_focal)
  static = raw.bases[..., 0]  # (b, n, 3)
  motion = jnp.einsum("btk,bnxk->btnx", raw.coeff[..., 1:], raw.bases[..., 1:])  # (b, t, n, 3)
  cam_static = _to_camera(rot, raw.centre, static[:, None])
  xyz_dyn_sg = sg(static)[:, None] + motion
  cam_dynamic = _to_camera(sg(rot), sg(raw.centre), xyz_dyn_sg)
  xyz_world = static[:, None] + motion
  xyz_cam = _to_camera(rot, raw.centre, xyz_world)
  prior = static if raw.prior_static is None else raw.prior_static
  cam_prior = _to_camera(sg(rot), sg(raw.centre), prior[:, None])
  return Prediction(
      raw=raw,
      c2w=geometry.make_pose(rot, raw.centre),
      focal=focal,
      xyz_world=xyz_world,
      xyz_cam=xyz_cam,
      xy_static=_project(cam_static, focal),
      xy_dynamic=_project(cam_dynamic, sg(focal)),
      depth_static=cam_static[..., 2],
      xy_prior=_project(cam_prior, sg(focal)),
  )


def robust_static_term(r2, gamma):
  """The static loss's per-entry term log(gamma + r^2 / gamma) (REFERENCE.md section 1)."""
  return jnp.log(gamma + r2 / gamma)


def static_score(rot6d, centre, log_focal, static, gamma, xy_norm, valid):
  """Per-clip mean static term of static points under cameras.

  Args:
    rot6d: (b, t, 6) camera-to-world rotations; centre (b, t, 3); log_focal (b, t).
    static: (b, n, 3) static points; gamma: (b, n) movement levels.
    xy_norm: (b, t, n, 2) observations; valid: (b, t, n) bool.

  Returns:
    (b,) mean of `robust_static_term` over each clip's valid entries.
  """
  cam = _to_camera(geometry.rot6d_to_matrix(rot6d), centre, static[:, None])
  r2 = ((_project(cam, jnp.exp(log_focal)) - xy_norm) ** 2).sum(-1)
  w = valid.astype(r2.dtype)
  return (robust_static_term(r2, gamma[:, None, :]) * w).sum((1, 2)) / jnp.maximum(w.sum((1, 2)), 1.0)
