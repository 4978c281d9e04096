"""Initial cameras by rigid weak-perspective factorisation of incomplete tracks.

With `ModelConfig.camera_init = "factorization"` the network may start its
cameras from these instead of identity cameras, per clip
(Tracks4DNet._choose_start). Where no point is static (a person filmed by a
turning camera, the CMU-mocap sequences) the tracks' dominant rigid motion is the
camera's, and this classical estimate finds it where the network alone did not
(BENCHMARKS.md, "The shipped model vs baselines").

Method (Tomasi and Kanade 1992, with missing data):
  1. The tracks form W (2t, n) (x and y rows per frame), known where `valid`.
     Alternating least squares fits W ~ M S + c (M (2t, 3), S (3, n), row
     offsets c) on the known entries only, from the SVD of W with unknown entries
     set to their row means; tracks that fit badly are then down-weighted
     (a few Cauchy re-weighting rounds), so moving content counts less.
  2. Metric upgrade: the symmetric L = Q Q^T that makes each real frame's two
     rows of M Q orthogonal and of equal norm (least squares, 6 unknowns), in
     the gauge where frame 0's rows are e1 and e2, with a small ridge towards
     L = s I (frame 0's own metric) for what the frames leave free (a camera
     that barely turns).
  3. Per frame: the rows' norm is 1 / distance; the orthonormalised rows and their
     cross product are the world-to-camera rotation; the offsets give the
     translation. The shape is re-solved for M Q.
  4. The mirror ambiguity (S_z -> -S_z) is broken by the perspective
     reprojection error on the known entries.
  5. The world is re-anchored: frame 0's camera gets the identity rotation and
     centre `centre_prior`, and the scale puts the content at the prior's
     distance on average.

Without camera turns the content's depth axis is unobservable: noise-free
tracks give identical rotations for all frames (identity after step 5), but
tracker noise then drives the rotations (about 2 deg at 1e-4 normalised units of
noise on a static cloud, 8 deg at 1e-3); the network's choice of start
(Tracks4DNet._choose_start) is what rejects them. Everything is computed under
stop-gradient: a starting point, not a trained quantity.
`tracks4d/baselines/factorization.py` is the exact (complete-track, numpy)
version used as a classical baseline.

Shapes: b batch, t frames, n tracks.
"""

from __future__ import annotations

import einops
import jax
import jax.numpy as jnp

from tracks4d import geometry

ALS_ITERS = 30
ROBUST_ROUNDS = 2  # Rounds of per-track Cauchy re-weighting (moving tracks count less).
_EPS = 1e-4
METRIC_RIDGE = 1e-5


def _sym_rows(a, b):
  """Coefficients of a^T L b over the 6 entries (l00, l01, l02, l11, l12, l22) of a symmetric L."""
  return jnp.stack([a[..., 0] * b[..., 0], a[..., 0] * b[..., 1] + a[..., 1] * b[..., 0],
                    a[..., 0] * b[..., 2] + a[..., 2] * b[..., 0], a[..., 1] * b[..., 1],
                    a[..., 1] * b[..., 2] + a[..., 2] * b[..., 1], a[..., 2] * b[..., 2]], -1)


def metric_upgrade(rows_x, rows_y, frame_weight):
  """Q (..., 3, 3) making each frame's rows (rows_x Q, rows_y Q) orthogonal and of equal norm.

  Args:
    rows_x, rows_y: (..., t, 3) each frame's affine camera rows.
    frame_weight: (..., t) weight of each frame's constraints (0 on padded frames).

  Returns:
    (..., 3, 3) Q with mean squared row norm 1 over the weighted frames. Negative
    eigenvalues of L (noise, perspective) are clipped, so Q may be singular.
  """
  w = frame_weight[..., None]
  a = jnp.concatenate([(_sym_rows(rows_x, rows_x) - _sym_rows(rows_y, rows_y)) * w,
                       _sym_rows(rows_x, rows_y) * w], axis=-2)  # (..., 2t, 6)
  norm_row = ((_sym_rows(rows_x, rows_x) + _sym_rows(rows_y, rows_y)) * w).sum(-2) / (
      2.0 * jnp.maximum(frame_weight.sum(-1, keepdims=True), 1.0))  # (..., 6): mean squared row norm
  normal = jnp.einsum("...ri,...rj->...ij", a, a) + jnp.einsum("...i,...j->...ij", norm_row, norm_row)
  # Ridge towards the isotropic L = s I that meets the norm constraint: it pins the
  # directions the frames leave free (a camera that barely turns).
  iso = jnp.asarray([1.0, 0.0, 0.0, 1.0, 0.0, 1.0])
  iso = iso / jnp.maximum((norm_row * iso).sum(-1, keepdims=True), 1e-12)
  lam = METRIC_RIDGE * (jnp.trace(normal, axis1=-2, axis2=-1)[..., None] + 1e-12)
  l = jnp.linalg.solve(normal + lam[..., None] * jnp.eye(6), (norm_row + lam * iso)[..., None])[..., 0]
  big_l = jnp.stack([jnp.stack([l[..., 0], l[..., 1], l[..., 2]], -1),
                     jnp.stack([l[..., 1], l[..., 3], l[..., 4]], -1),
                     jnp.stack([l[..., 2], l[..., 4], l[..., 5]], -1)], -2)
  evals, evecs = jnp.linalg.eigh(big_l)
  return evecs * jnp.sqrt(jnp.maximum(evals, 1e-12))[..., None, :]


def _solve_ridge(normal, rhs):
  """Solves (normal + ridge I) x = rhs for batched small systems; ridge relative to the trace."""
  d = normal.shape[-1]
  ridge = _EPS * jnp.trace(normal, axis1=-2, axis2=-1)[..., None, None] + 1e-9
  return jnp.linalg.solve(normal + ridge * jnp.eye(d), rhs[..., None])[..., 0]


def _solve_shape(motion, offset, w, mask):
  """S (b, 3, n) given M (b, 2t, 3) and offsets (b, 2t): per-track masked least squares."""
  normal = jnp.einsum("brn,bri,brj->bnij", mask, motion, motion)
  rhs = jnp.einsum("brn,bri->bni", mask * (w - offset[..., None]), motion)
  return einops.rearrange(_solve_ridge(normal, rhs), "b n i -> b i n")


def _solve_motion(shape, w, mask):
  """[M | c] (b, 2t, 4) given S (b, 3, n): per-row masked least squares with an offset."""
  s1 = jnp.concatenate([shape, jnp.ones_like(shape[:, :1])], axis=1)  # (b, 4, n)
  normal = jnp.einsum("brn,bin,bjn->brij", mask, s1, s1)
  rhs = jnp.einsum("brn,bin->bri", mask * w, s1)
  return _solve_ridge(normal, rhs)


def affine_factorization(xy_norm, valid, iters: int = ALS_ITERS, robust_rounds: int = ROBUST_ROUNDS):
  """Rank-3 affine fit W ~ M S + c of the known entries (step 1 of the module doc).

  After `iters` alternating least-squares iterations, each of `robust_rounds`
  rounds re-weights every track by 1 / (1 + e_j / mean e) (e_j: its mean squared
  residual) and runs iters // 2 more, so tracks that move unlike the rest count less.

  Args:
    xy_norm: (b, t, n, 2) normalised camera coordinates.
    valid: (b, t, n) bool, the known entries.
    iters: alternating least-squares iterations after the SVD start.
    robust_rounds: re-weighting rounds.

  Returns:
    (motion (b, 2t, 3), offset (b, 2t), shape (b, 3, n), weight (b, 2t, n)):
    rows are x0, y0, x1, ...; the shape is centred on its (weighted) tracks; `weight` is
    the known-entry mask times the final track weights.
  """
  w = einops.rearrange(xy_norm, "b t n c -> b (t c) n")
  mask = einops.repeat(valid, "b t n -> b (t c) n", c=2).astype(w.dtype)
  w = w * mask
  row_mean = w.sum(-1) / jnp.maximum(mask.sum(-1), 1.0)  # (b, 2t)
  filled = w + (1.0 - mask) * row_mean[..., None] - row_mean[..., None]
  _, _, vt = jnp.linalg.svd(filled, full_matrices=False)
  shape = vt[:, :3]  # (b, 3, n)
  seen = mask.max(1)  # (b, n): tracks with a known entry

  def iterate(shape, weight, num):
    def step(_, shape):
      m = _solve_motion(shape, w, weight)
      return _solve_shape(m[..., :3], m[..., 3], w, weight)
    return jax.lax.fori_loop(0, num, step, shape)

  weight = mask
  shape = iterate(shape, weight, iters)
  for _ in range(robust_rounds):
    m = _solve_motion(shape, w, weight)
    res = (w - jnp.einsum("bri,bin->brn", m[..., :3], shape) - m[..., 3:]) * mask
    per_track = (res ** 2).sum(1) / jnp.maximum(mask.sum(1), 1.0)  # (b, n) mean squared residual
    mean = (per_track * seen).sum(-1, keepdims=True) / jnp.maximum(seen.sum(-1, keepdims=True), 1.0)
    weight = mask / (1.0 + per_track / (mean + 1e-12))[:, None]
    shape = iterate(shape, weight, iters // 2)
  track_weight = weight.max(1)[:, None]  # (b, 1, n): the weighted centroid is the reference point
  shape = shape - (shape * track_weight).sum(-1, keepdims=True) / jnp.maximum(track_weight.sum(-1, keepdims=True), 1.0)
  m = _solve_motion(shape, w, weight)
  return m[..., :3], m[..., 3], shape, weight


def factorization_cameras(xy_norm, valid, frame_mask, centre_prior=(0.0, 0.0, -15.0),
                          iters: int = ALS_ITERS, robust_rounds: int = ROBUST_ROUNDS, both_mirrors: bool = False):
  """Camera-to-world rotations (6D) and centres of every frame from a rigid factorisation.

  Args:
    xy_norm: (b, t, n, 2) normalised camera coordinates (focal 1).
    valid: (b, t, n) bool, the observations to use (visible, real frame and track).
    frame_mask: (b, t) bool, False on padded frames (padding is at the end). A
      real frame with no valid observation gets the camera of the nearest frame
      that has some.
    centre_prior: frame 0's camera centre; the content is put at its distance.
    iters: alternating least-squares iterations.
    robust_rounds: rounds of per-track Cauchy re-weighting.
    both_mirrors: also return the other mirror's cameras (the perspective error
      that picks the mirror is a weak cue when the content is far, turns little
      or deforms; the network scores both, Tracks4DNet._choose_start).

  Returns:
    (rot6d (b, t, 6), centre (b, t, 3), reproj (b,)): camera-to-world rotations
    and centres, frame 0 with the identity rotation and centre `centre_prior`,
    and the rigid fit's mean perspective reprojection error (normalised units;
    how rigid the content looks), of the mirror with the lower error. With
    `both_mirrors`, (b, 2, t, 6), (b, 2, t, 3) and (b, 2): that mirror first,
    then the other. All under stop-gradient.

  Example:
    >>> rot6d, centre, reproj = factorization_cameras(xy_norm, valid, frame_mask)
    >>> geometry.rot6d_to_matrix(rot6d[:, 0])   # identity
  """
  sg = jax.lax.stop_gradient
  xy_norm, valid = sg(xy_norm), valid & frame_mask[..., None]
  motion, offset, _, wmask = affine_factorization(xy_norm, valid, iters, robust_rounds)
  # A real frame where no track is visible has no rows of its own (zeros): it
  # takes those of the nearest frame that has some, and only frames with
  # observations weigh in the metric upgrade and the scale.
  seen = valid.any(-1)  # (b, t)
  t = seen.shape[1]
  gap = jnp.abs(jnp.arange(t)[:, None] - jnp.arange(t)[None, :])  # (t, t)
  nearest = jnp.argmin(jnp.where(seen[:, None, :], gap, t + 1), axis=-1)  # (b, t); earlier frame on ties
  take = lambda x: jnp.take_along_axis(x, nearest.reshape(nearest.shape + (1,) * (x.ndim - 2)), axis=1)
  motion = einops.rearrange(take(einops.rearrange(motion, "b (t c) i -> b t c i", c=2)), "b t c i -> b (t c) i")
  offset = einops.rearrange(take(einops.rearrange(offset, "b (t c) -> b t c", c=2)), "b t c -> b (t c)")
  fw = seen.astype(xy_norm.dtype)
  # Gauge: frame 0's rows become e1, e2 (its cross product e3), so the ridge's
  # isotropic L = s I is frame 0's metric and pins what the other frames leave free.
  m1, m2 = motion[:, 0], motion[:, 1]
  m3 = jnp.cross(m1, m2) / jnp.sqrt(jnp.linalg.norm(m1, axis=-1) * jnp.linalg.norm(m2, axis=-1) + 1e-12)[:, None]
  motion = jnp.einsum("bri,bij->brj", motion, jnp.linalg.inv(jnp.stack([m1, m2, m3], -2)))
  rows_x, rows_y = motion[:, 0::2], motion[:, 1::2]  # (b, t, 3)
  q = metric_upgrade(rows_x, rows_y, fw)
  motion = jnp.einsum("bri,bij->brj", motion, q)
  w = einops.rearrange(xy_norm, "b t n c -> b (t c) n")
  shape = _solve_shape(motion, offset, w, wmask)  # (b, 3, n); wmask is 0 off the known entries

  rows = einops.rearrange(motion, "b (t c) i -> b t c i", c=2)
  scale = jnp.maximum(jnp.linalg.norm(rows, axis=-1).mean(-1), 1e-6)  # (b, t): 1 / distance
  dist = jnp.where(frame_mask, 1.0 / scale, 1.0)
  off = einops.rearrange(offset, "b (t c) -> b t c", c=2)
  trans = jnp.concatenate([off * dist[..., None], dist[..., None]], -1)  # (b, t, 3): X_cam = R X + T

  def fit(mirror):
    flip = jnp.array([1.0, 1.0, mirror])
    r = rows * flip
    c2w = geometry.rot6d_to_matrix(einops.rearrange(r, "b t c i -> b t (c i)"))  # columns: camera axes
    xyz_cam = jnp.einsum("btij,bin->btnj", c2w, shape * flip[:, None]) + trans[:, :, None]
    z = xyz_cam[..., 2]
    proj = xyz_cam[..., :2] / jnp.maximum(z, 1e-3 * dist[..., None])[..., None]
    err = jnp.linalg.norm(proj - xy_norm, axis=-1) + 10.0 * (z <= 0)
    v = valid.astype(err.dtype)
    return c2w, (err * v).sum((1, 2)) / jnp.maximum(v.sum((1, 2)), 1.0)

  c2w_a, err_a = fit(1.0)
  c2w_b, err_b = fit(-1.0)
  a_first = (err_a <= err_b)[:, None, None, None]
  c2w = jnp.where(a_first, c2w_a, c2w_b)  # (b, t, 3, 3), the lower-error mirror
  err = jnp.minimum(err_a, err_b)

  # Re-anchor: world' = frame 0's camera frame, shifted by centre_prior, scaled to the prior distance.
  prior = jnp.asarray(centre_prior, xy_norm.dtype)
  sigma = jnp.linalg.norm(prior) / ((dist * fw).sum(-1) / jnp.maximum(fw.sum(-1), 1.0))  # (b,)
  eye = jnp.eye(3, dtype=xy_norm.dtype)

  def anchor(c2w):
    rel = jnp.einsum("bij,btjk->btik", jnp.swapaxes(c2w[:, 0], -1, -2), c2w)  # R_0 R_t^T = c2w' of frame t
    rel_t = jnp.einsum("btij,btj->bti", rel, trans)  # R_0 R_t^T T_t
    centre = prior + sigma[:, None, None] * (trans[:, :1] - rel_t)
    rel = jnp.where(frame_mask[..., None, None], rel, eye)
    centre = jnp.where(frame_mask[..., None], centre, prior)
    return sg(geometry.matrix_to_rot6d(rel)), sg(centre)

  rot6d, centre = anchor(c2w)
  if not both_mirrors:
    return rot6d, centre, sg(err)
  other_rot6d, other_centre = anchor(jnp.where(a_first, c2w_b, c2w_a))
  return (jnp.stack([rot6d, other_rot6d], 1), jnp.stack([centre, other_centre], 1),
          sg(jnp.stack([err, jnp.maximum(err_a, err_b)], 1)))
