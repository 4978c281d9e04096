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


def static_projection(rot6d, centre, log_focal, static):
  """Projections and camera depths of static points under cameras.

  Args:
    rot6d: (b, t, 6) camera-to-world rotations; centre (b, t, 3); log_focal (b, t).
    static: (b, n, 3) world points.

  Returns:
    ((b, t, n, 2) normalised projections, (b, t, n) camera depths).
  """
  cam = _to_camera(geometry.rot6d_to_matrix(rot6d), centre, static[:, None])
  return _project(cam, jnp.exp(log_focal)), cam[..., 2]


def static_score(rot6d, centre, log_focal, static, gamma, xy_norm, valid):
  """Per-clip mean static term of static points under cameras.

  Args:
    rot6d: (b, t, 6) camera-to-world rotations; centre (b, t, 3); log_focal (b, t).
    static: (b, n, 3) static points; gamma: (b, n) movement levels.
    xy_norm: (b, t, n, 2) observations; valid: (b, t, n) bool.

  Returns:
    (b,) mean of `robust_static_term` over each clip's valid entries.
  """
  xy, _ = static_projection(rot6d, centre, log_focal, static)
  r2 = ((xy - xy_norm) ** 2).sum(-1)
  w = valid.astype(r2.dtype)
  return (robust_static_term(r2, gamma[:, None, :]) * w).sum((1, 2)) / jnp.maximum(w.sum((1, 2)), 1.0)


def occlusion_order(rot6d, centre, static, xy_norm, visible, real):
  """Per-clip evidence that hidden points lie behind the visible ones.

  A point the tracker marks hidden while its track stays inside the image is
  behind something it would otherwise be seen through, so under the right cameras
  it tends to be deeper than the points seen in the same frame. In each frame,
  the mean depth of such hidden points over the mean depth of the visible points,
  minus one; averaged over frames weighted by their hidden count. Positive: the
  hidden points are deeper (what occlusion implies); negative: nearer, as happens
  under the mirror image of a rigid factorisation (a depth reversal that weak
  perspective cannot tell apart).

  Args:
    rot6d: (b, t, 6) camera-to-world rotations; centre (b, t, 3).
    static: (b, n, 3) world points.
    xy_norm: (b, t, n, 2) observations in normalised coordinates.
    visible: (b, t, n) bool tracker visibility.
    real: (b, t, n) bool, False on padded frames or tracks.

  Returns:
    (b,) the depth-order evidence; 0 for a clip with no hidden point inside the
    image (e.g. every track visible throughout).
  """
  z = _to_camera(geometry.rot6d_to_matrix(rot6d), centre, static[:, None])[..., 2]  # (b, t, n)
  seen = visible & real
  big = jnp.asarray(jnp.finfo(xy_norm.dtype).max, xy_norm.dtype)
  # The image's extent in normalised coordinates: the box of every seen observation.
  lo = jnp.where(seen[..., None], xy_norm, big).min((1, 2))[:, None, None]  # (b, 1, 1, 2)
  hi = jnp.where(seen[..., None], xy_norm, -big).max((1, 2))[:, None, None]
  inside = ((xy_norm >= lo) & (xy_norm <= hi)).all(-1)
  hidden = (real & ~visible & inside).astype(z.dtype)
  w_seen = seen.astype(z.dtype)
  n_hidden = hidden.sum(2)  # (b, t)
  z_hidden = (z * hidden).sum(2) / jnp.maximum(n_hidden, 1.0)
  z_seen = (z * w_seen).sum(2) / jnp.maximum(w_seen.sum(2), 1.0)
  ok = (n_hidden > 0) & (w_seen.sum(2) > 0) & (jnp.abs(z_seen) > MIN_DEPTH)
  ratio = jnp.where(ok, z_hidden / jnp.where(ok, z_seen, 1.0) - 1.0, 0.0)
  weight = jnp.where(ok, n_hidden, 0.0)
  return (ratio * weight).sum(1) / jnp.maximum(weight.sum(1), 1.0)


def dynamic_fit(rot6d, centre, log_focal, static, motion, xy_norm, valid):
  """Per-clip dynamic reprojection error and negative depth of the full model
  (static points plus motion) under cameras, as the losses define them.

  Args:
    rot6d: (b, t, 6) camera-to-world rotations; centre (b, t, 3); log_focal (b, t).
    static: (b, n, 3) static points; motion: (b, t, n, 3) the bases' motion.
    xy_norm: (b, t, n, 2) observations; valid: (b, t, n) bool.

  Returns:
    ((b,) mean of |projection - observation| over valid entries, (b,) sum over
    valid entries of the negative part of the full and the static depth).
  """
  rot = geometry.rot6d_to_matrix(rot6d)
  cam_static = _to_camera(rot, centre, static[:, None])
  cam = _to_camera(rot, centre, static[:, None] + motion)
  err = jnp.sqrt(((_project(cam, jnp.exp(log_focal)) - xy_norm) ** 2).sum(-1) + 1e-12)
  w = valid.astype(err.dtype)
  neg = jax.nn.relu(-cam[..., 2]) + jax.nn.relu(-cam_static[..., 2])
  return (err * w).sum((1, 2)) / jnp.maximum(w.sum((1, 2)), 1.0), (neg * w).sum((1, 2))
