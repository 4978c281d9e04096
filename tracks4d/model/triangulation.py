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
from tracks4d.model.camera_init import factorization_cameras
from tracks4d.model.outputs import static_projection


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



def _rms_error(xy: jax.Array, xy_norm: jax.Array, w: jax.Array) -> jax.Array:
  """(b, n) rms over frames of the reprojection error, entries weighted by w (b, t, n)."""
  return jnp.sqrt((((xy - xy_norm) ** 2).sum(-1) * w).sum(1) / jnp.maximum(w.sum(1), 1.0))

# Quantile of the tracks' rms residuals that a clip-relative fallback scale is a
# multiple of (`fallback_static`'s `relative`): a low one, set by the tracks the fit explains.
FALLBACK_QUANTILE = 0.25
# `second_body`: the tracks fitted worse than this multiple of the clip's median rms residual are
# the candidates for a second body; it is one when a rigid factorisation of those tracks alone
# brings their median residual under SECOND_BODY_GAIN times what the clip's cameras leave, and
# there are at least SECOND_BODY_MIN_TRACKS of them.
SECOND_BODY_RESIDUAL = 2.0
SECOND_BODY_GAIN = 0.7
SECOND_BODY_MIN_TRACKS = 8


def fallback_static(rot6d: jax.Array, centre: jax.Array, log_focal: jax.Array, xy_norm: jax.Array,
                    valid: jax.Array, static: jax.Array, prior: jax.Array, ridge: float,
                    scale: float, relative: float = 0.0) -> jax.Array:
  """Static points again, with the tracks the rigid fit leaves unexplained pulled to a typical depth.

  Under cameras fitted to one rigid body (a rigid factorisation of content with no
  static background), the tracks of another body, or of a limb that moves on its own,
  triangulate to points that explain nothing and whose depth can be anywhere. Here
  each track j is triangulated again with its ridge grown to ridge * (1 + (rho_j /
  scale)^2), rho_j the rms reprojection error of its point in `static` (normalised
  units), towards whichever of two points reprojects better: the network's `prior`,
  or the mean over its valid frames of the point at depth z_ref on its viewing ray
  (log z_ref: the mean log depth of the valid entries of `static`, weighted by 1 /
  (1 + (rho_j / scale)^2), the tracks that fit). A track that fits (rho_j << scale)
  keeps about its least-squares point; one that does not goes to its prior: the
  network's where that explains the track (a scene whose background the network
  reads), else constant depth, the trivial baseline, which such tracks cannot be
  reconstructed better than without a motion model. The network predicts its
  points for the prior start's cameras, so under a factorisation's they often fit
  worse than constant depth. All weights and choices are under stop-gradient.

  With `relative` > 0 the scale is set per clip, to the larger of `scale` and
  `relative` times the FALLBACK_QUANTILE quantile of the clip's rho_j: in a clip
  whose tracks all fit the rigid cameras only roughly (a background scene that
  starts from a factorisation, a deforming body) no track is singled out, while
  in a clip where most tracks fit and another body's do not, those are.

  Args:
    rot6d, centre, log_focal, xy_norm, valid: as in `triangulate_static`.
    static: (b, n, 3) the points triangulated under these cameras.
    prior: (b, n, 3) the network's points (the first triangulation's ridge prior).
    ridge: the triangulation's relative ridge weight: a float, or (b, n).
    scale: residual scale (> 0), normalised image units; with `relative`, its floor.
    relative: 0, or the clip's scale as a multiple of its tracks' FALLBACK_QUANTILE
      rms residual.

  Returns:
    (b, n, 3) static points, world frame.

  Example:
    >>> pts = fallback_static(rot6d, centre, lf, xy, valid, pts, raw.bases[..., 0], 1e-2, 1e-2)
  """
  sg = jax.lax.stop_gradient
  rot = geometry.rot6d_to_matrix(rot6d)  # (b, t, 3, 3)
  focal = jnp.exp(log_focal)[..., None, None]  # (b, t, 1, 1)
  w = valid.astype(xy_norm.dtype)
  count = w.sum(1)  # (b, n)
  xy, z = (sg(x) for x in static_projection(rot6d, centre, log_focal, static))
  rho = _rms_error(xy, xy_norm, w)
  scale = jnp.full(rho.shape[:1], scale, rho.dtype)  # (b,)
  if relative > 0:
    seen = jnp.where(count > 0, rho, jnp.nan)
    typical_rho = jnp.nanquantile(seen, FALLBACK_QUANTILE, axis=1)
    scale = jnp.maximum(scale, relative * jnp.where(jnp.isfinite(typical_rho), typical_rho, 0.0))
  misfit = (rho / scale[:, None]) ** 2
  fit_w = w / (1.0 + misfit[:, None])  # (b, t, n)
  log_z = jnp.log(jnp.maximum(z, 1e-3))
  z_ref = jnp.exp((log_z * fit_w).sum((1, 2)) / jnp.maximum(fit_w.sum((1, 2)), 1e-6))  # (b,)
  ray = jnp.concatenate([xy_norm / focal, jnp.ones_like(xy_norm[..., :1])], -1)  # (b, t, n, 3), camera frame
  on_ray = centre[:, :, None] + z_ref[:, None, None, None] * jnp.einsum("btij,btnj->btni", rot, ray)
  typical = jnp.einsum("btn,btnj->bnj", w, on_ray) / jnp.maximum(count, 1.0)[..., None]  # (b, n, 3)
  rho_typical = _rms_error(static_projection(rot6d, centre, log_focal, typical)[0], xy_norm, w)
  rho_prior = _rms_error(static_projection(rot6d, centre, log_focal, prior)[0], xy_norm, w)
  use_typical = sg((rho_typical < rho_prior) & (count > 0))[..., None]
  target = jnp.where(use_typical, sg(typical), prior)
  return triangulate_static(rot6d, centre, log_focal, xy_norm, valid, target, ridge * (1.0 + misfit))


def second_body(rot6d: jax.Array, centre: jax.Array, log_focal: jax.Array, xy_norm: jax.Array, valid: jax.Array,
                frame_mask: jax.Array, static: jax.Array, prior: jax.Array, ridge, centre_prior) -> jax.Array:
  """Whether the tracks the clip's cameras explain worst move as a rigid body of their own.

  The candidates are the tracks whose rms reprojection error under these cameras
  is above SECOND_BODY_RESIDUAL times the clip's median. They are factorised
  alone (camera_init.factorization_cameras) and every track is triangulated
  under those cameras: if that brings the candidates' median error under
  SECOND_BODY_GAIN times their error under the clip's cameras, another rigid
  motion explains them, a second object, not the clip's own motion fitted
  roughly (a background scene under slightly wrong cameras, a deforming body,
  whose worst tracks gain less from cameras of their own). Its inputs are under
  stop-gradient and its result is a bool: no gradient passes through it.

  Args:
    rot6d, centre, log_focal, xy_norm, valid: as in `triangulate_static`.
    frame_mask: (b, t) bool, False on padded frames.
    static: (b, n, 3) the points triangulated under these cameras.
    prior, ridge: the triangulation's ridge prior and weight.
    centre_prior: the factorisation's frame-0 centre.

  Returns:
    (b,) bool.

  Example:
    >>> two = second_body(rot6d, centre, lf, xy, valid, frame_mask, pts, raw.bases[..., 0], 1e-2, (0, 0, -15))
  """
  sg = jax.lax.stop_gradient
  rot6d, centre, log_focal, xy_norm, static, prior = (sg(x) for x in (rot6d, centre, log_focal, xy_norm, static,
                                                                        prior))
  w = valid.astype(xy_norm.dtype)
  seen = w.sum(1) > 0  # (b, n)
  rho = _rms_error(static_projection(rot6d, centre, log_focal, static)[0], xy_norm, w)
  median = lambda r, m: jnp.nanmedian(jnp.where(m, r, jnp.nan), axis=1)  # (b,)
  candidate = seen & (rho > SECOND_BODY_RESIDUAL * median(rho, seen)[:, None])
  own_rot6d, own_centre, _ = factorization_cameras(xy_norm, valid & candidate[:, None, :], frame_mask, centre_prior)
  own_static = triangulate_static(own_rot6d, own_centre, log_focal, xy_norm, valid, prior, ridge)
  own_rho = _rms_error(static_projection(own_rot6d, own_centre, log_focal, own_static)[0], xy_norm, w)
  gain = median(own_rho, candidate) / median(rho, candidate)
  return (candidate.sum(1) >= SECOND_BODY_MIN_TRACKS) & jnp.isfinite(gain) & (gain < SECOND_BODY_GAIN)
