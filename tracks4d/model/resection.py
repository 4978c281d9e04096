"""Camera resection: Gauss-Newton steps on each frame's pose given the static points.

With the static points X_j held fixed, the reprojection error of frame t depends
on that frame's camera alone, so one Gauss-Newton step is one 6 x 6 solve per
frame. Alternated with the closed-form static points (`triangulation.py`), this
is resection-intersection, the cheap relative of bundle adjustment
(`ModelConfig.resection_steps`).

The pose is perturbed on the right, in the camera frame:
  R <- R exp([w]),  c <- c + d,
so a camera-frame point X_cam = R^T (X - c) moves by
  dX_cam = [X_cam]_x w - R^T d
and its projection p = f (x / z, y / z) by J_p dX_cam with
  J_p = f / z [[1, 0, -x / z], [0, 1, -y / z]].
Each observation is weighted by 1 / gamma_j (the track's movement level: moving
tracks count less), a Cauchy weight of its residual (scale `scale`, normalised
units) and validity; the step is damped (Levenberg-Marquardt, relative to the
diagonal). Observations behind or too close to the camera get no weight.

Shapes: b batch, t frames, n tracks.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from tracks4d import geometry

MIN_DEPTH_FRACTION = 0.05  # Of the frame's median depth: closer points are left out.
DAMPING = 1e-2  # Levenberg-Marquardt, relative to the normal matrix's diagonal.


def resection_step(rot6d: jax.Array, centre: jax.Array, log_focal: jax.Array, static: jax.Array,
                   xy_norm: jax.Array, valid: jax.Array, track_weight: jax.Array,
                   scale: float = 0.01) -> tuple[jax.Array, jax.Array]:
  """One damped Gauss-Newton step on every frame's camera, static points fixed.

  Args:
    rot6d: (b, t, 6) camera-to-world rotations, 6D.
    centre: (b, t, 3) camera centres, world frame.
    log_focal: (b, t) log focal-length factors (kept).
    static: (b, n, 3) static points, world frame (kept).
    xy_norm: (b, t, n, 2) observations, normalised camera coordinates.
    valid: (b, t, n) bool, the observations to use.
    track_weight: (b, n) weight of each track (e.g. 1 / gamma).
    scale: Cauchy scale of the residuals, normalised units.

  Returns:
    (rot6d (b, t, 6), centre (b, t, 3)) after the step. A frame with no usable
    observation keeps its camera.

  Example:
    >>> rot6d, centre = resection_step(raw.rot6d, raw.centre, raw.log_focal, static, xy, valid, 1 / raw.gamma)
  """
  rot = geometry.rot6d_to_matrix(rot6d)  # (b, t, 3, 3), columns = camera axes in the world
  focal = jnp.exp(log_focal)[..., None]  # (b, t, 1)
  cam = jnp.einsum("btji,btnj->btni", rot, static[:, None] - centre[:, :, None])  # R^T (X - c): (b, t, n, 3)
  x, y, z = cam[..., 0], cam[..., 1], cam[..., 2]
  median_z = jnp.nanmedian(jnp.where(valid, z, jnp.nan), axis=2, keepdims=True)
  median_z = jnp.where(jnp.isfinite(median_z), median_z, 1.0)
  usable = valid & (z > MIN_DEPTH_FRACTION * jnp.abs(median_z))
  zs = jnp.where(usable, z, 1.0)
  proj = focal[..., None] * jnp.stack([x / zs, y / zs], -1)  # (b, t, n, 2)
  resid = (proj - xy_norm) * usable[..., None]
  cauchy = 1.0 / (1.0 + jnp.sum(resid ** 2, -1) / scale ** 2)
  weight = usable * cauchy * track_weight[:, None, :]  # (b, t, n)
  zero = jnp.zeros_like(x)
  jp = (focal / zs)[..., None, None] * jnp.stack([jnp.stack([jnp.ones_like(x), zero, -x / zs], -1),
                                                 jnp.stack([zero, jnp.ones_like(x), -y / zs], -1)], -2)  # (b,t,n,2,3)
  d_rot = geometry.skew(cam)  # [X_cam]_x: (b, t, n, 3, 3)
  d_centre = -jnp.swapaxes(rot, -1, -2)[:, :, None]  # -R^T: (b, t, 1, 3, 3)
  jac = jnp.concatenate([jp @ d_rot, jp @ d_centre], -1)  # (b, t, n, 2, 6)
  normal = jnp.einsum("btn,btnri,btnrj->btij", weight, jac, jac)  # (b, t, 6, 6)
  grad = jnp.einsum("btn,btnri,btnr->bti", weight, jac, resid)  # (b, t, 6)
  diag = jnp.diagonal(normal, axis1=-2, axis2=-1)
  damped = normal + (DAMPING * diag + 1e-9)[..., None] * jnp.eye(6, dtype=normal.dtype)
  delta = -jnp.linalg.solve(damped, grad[..., None])[..., 0]
  enough = (usable.sum(-1) >= 3)[..., None]  # A pose needs 3 points.
  delta = jnp.where(enough & jnp.isfinite(delta).all(-1, keepdims=True), delta, 0.0)
  new_rot = rot @ geometry.axis_angle_to_matrix(delta[..., :3])
  return geometry.matrix_to_rot6d(new_rot), centre + delta[..., 3:]
