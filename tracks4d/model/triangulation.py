"""Static points in closed form from the predicted cameras (variable projection).

Given the cameras of a clip, the static point B_j^0 that best explains track j's
observations solves a linear least-squares problem (the DLT triangulation). For
each valid observation (u, v) (normalised coordinates) in frame t, with
camera-to-world rotation R_t (columns r1, r2, r3), centre c_t and focal factor f_t:
  (f_t r1 - u r3) . (X - c_t) = 0,    (f_t r2 - v r3) . (X - c_t) = 0.
Summing the normal equations over frames gives one 3 x 3 system per track,
regularised towards the network's own point P_j (ridge lambda = `ridge` times the
mean diagonal), so tracks without parallax (a static or panning camera) keep the
network's point:
  (A_j + lambda_j I) X_j = b_j + lambda_j P_j.

Used in place of the network's static point (`ModelConfig.triangulate_static`),
the static loss becomes a function of the cameras alone and its gradient flows
through the solve: the camera head is trained on the reduced problem, which is
far better conditioned than moving cameras and points jointly (the classic
argument for variable projection in bundle adjustment).

Shapes: b batch, t frames, n tracks.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from tracks4d import geometry


def triangulate_static(rot6d: jax.Array, centre: jax.Array, log_focal: jax.Array, xy_norm: jax.Array,
                       valid: jax.Array, prior: jax.Array, ridge: float) -> jax.Array:
  """Least-squares static points of every track under the given cameras.

  Args:
    rot6d: (b, t, 6) camera-to-world rotations, 6D.
    centre: (b, t, 3) camera centres, world frame.
    log_focal: (b, t) log focal-length factors.
    xy_norm: (b, t, n, 2) observations, normalised camera coordinates.
    valid: (b, t, n) bool, the observations to use (visible, real frame and track).
    prior: (b, n, 3) the points the ridge pulls towards (the network's).
    ridge: relative ridge weight (> 0): a float, or (b, n) per track.

  Returns:
    (b, n, 3) static points, world frame; `prior` for tracks with no valid entry.

  Example:
    >>> pts = triangulate_static(raw.rot6d, raw.centre, raw.log_focal, xy, valid, raw.bases[..., 0], 1e-5)
  """
  rot = geometry.rot6d_to_matrix(rot6d)  # (b, t, 3, 3); columns = camera axes in the world
  focal = jnp.exp(log_focal)[..., None, None]  # (b, t, 1, 1)
  axis = lambda i: rot[:, :, None, :, i]  # (b, t, 1, 3)
  rows = jnp.stack([focal * axis(0) - xy_norm[..., 0:1] * axis(2),
                    focal * axis(1) - xy_norm[..., 1:2] * axis(2)], axis=-2)  # (b, t, n, 2, 3)
  rows = rows * valid[..., None, None].astype(rows.dtype)
  # Solve for X - o, o = each track's mean camera centre over its valid frames:
  # small right-hand sides, so float32 rounding is not magnified by the solve.
  w = valid.astype(rows.dtype)
  origin = jnp.einsum("btn,btj->bnj", w, centre) / jnp.maximum(w.sum(1), 1.0)[..., None]  # (b, n, 3)
  offset = centre[:, :, None, :] - origin[:, None]  # (b, t, n, 3)
  normal = jnp.einsum("btnri,btnrj->bnij", rows, rows)  # (b, n, 3, 3)
  rhs = jnp.einsum("btnri,btnrj,btnj->bni", rows, rows, offset)  # (b, n, 3)
  lam = jnp.asarray(ridge, normal.dtype) * jnp.trace(normal, axis1=-2, axis2=-1) / 3.0 + 1e-8  # (b, n)
  system = normal + lam[..., None, None] * jnp.eye(3, dtype=normal.dtype)
  return origin + jnp.linalg.solve(system, (rhs + lam[..., None] * (prior - origin))[..., None])[..., 0]
