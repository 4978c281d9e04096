"""Bundle adjustment: jitted Levenberg-Marquardt over per-frame cameras and static points.

Minimises the robust reprojection cost

  C = sum_{i, j valid} rho(|| pi(K_i, s, R_i X_j + t_i) - xy_ij ||)

over the world-to-camera poses (R_i, t_i) of every frame, the static 3D points
X_j and, optionally, one global focal scale s (fx and fy of every frame are
multiplied by s; the principal point stays fixed). `pi` is `geometry.project`:
depth is clamped at `geometry.MIN_DEPTH` (in the caller's units), so points
behind a camera give a finite residual, never NaN.

Method
------
* Parameters: a camera update left-multiplies the pose,
  w2c <- [exp(omega) | dt] w2c (axis-angle rotation omega, translation dt in the
  camera frame: 6 numbers); a point update adds dX (3 numbers); the focal scale
  is a log-parameter log s shared by all frames.
* Robust loss by IRLS: "huber" and "cauchy" act on the 2D residual norm with
  scale `robust_scale_px`; "none" is plain least squares.
* Each iteration builds the normal equations block by block from analytic
  per-residual Jacobians (2x6 camera, 2x3 point, 2x1 focal), damps them with
  Marquardt's diagonal (lambda * diag(H)), eliminates the points by the Schur
  complement (one 3x3 block per point) and solves the reduced camera system
  (6t + 1 unknowns) densely by a Jacobi-preconditioned Cholesky (plain XLA
  ops). A step is accepted when it lowers the robust cost; lambda follows
  Nielsen's rule.
* Gauge: the first camera is held fixed when `fix_first_camera`; the scale
  gauge (and, otherwise, the whole Sim(3) gauge) is left to the damping.
* Conditioning in float32: the scene is re-centred on the median point and
  scaled so the median depth of the observations is 1; residuals are divided
  by the median focal length. Everything is undone on output.
* The whole loop runs under one `jax.jit` (a `lax.while_loop`), compiled once
  per padded input shape: t is padded up to a multiple of 4 and p to a
  multiple of 64 (padding frames are fixed, padding points have no
  observations), so nearby shapes share one compilation. `iterations`, the
  robust loss and its scale, the focal switch and the gauge are traced values:
  changing them does not recompile (the cost history buffer is padded to a
  multiple of 32 entries). On 2 shared CPU cores compilation takes ~5-10 s and
  a warm call with t = 50, p = 500 ~0.15-0.3 s.

Shape letters: t frames, p points (tracks of a static scene).

Example:
  >>> res = bundle_adjust(w2c, K, xy_px, valid, points_world, robust="huber")
  >>> res.rms_px_before, res.rms_px_after
"""

from __future__ import annotations

import time

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from tracks4d import geometry

ROBUST_LOSSES = ("none", "huber", "cauchy")
# Initial, smallest and largest Levenberg-Marquardt damping (relative to diag(H)).
_LAMBDA_INIT = 1e-3
_LAMBDA_MIN = 1e-7
_LAMBDA_MAX = 1e10
# Stop when a step lowers (or the damped model predicts it lowers) the cost by
# less than this fraction: about the float32 resolution of the summed cost.
_REL_DECREASE_TOL = 1e-6
# Inliers: residual within this many robust scales.
_INLIER_SCALES = 3.0
# Frames and points are padded up to multiples of these (fewer compilations).
_T_BUCKET = 4
_P_BUCKET = 64
_HISTORY_BUCKET = 32  # iterations + 1 padded likewise (iterations itself is traced).


@flax.struct.dataclass
class BundleAdjustResult:
  """The outcome of `bundle_adjust`.

  Attributes:
    w2c: (t, 4, 4) refined world-to-camera poses (rotation blocks exactly
      orthonormal), in the input's world frame and units.
    K: (t, 3, 3) refined intrinsics: the input's with fx and fy multiplied by
      the common focal scale when `refine_focal`, else the input unchanged.
    points_world: (p, 3) refined points; points with fewer than `min_views`
      valid observations are returned unchanged.
    optimised_points: (p,) bool, the points that were optimised (>= min_views
      valid observations). Only their observations enter the cost.
    inlier: (t, p) bool, valid entries whose final reprojection error is at most
      3 x `robust_scale_px` ("huber", "cauchy"); every valid entry for "none".
      Evaluated on all valid entries, optimised points or not.
    rms_px_before, rms_px_after: RMS reprojection error in pixels over the
      valid entries of the optimised points, before and after.
    median_px_before, median_px_after: the median, likewise.
    cost_history: (iterations + 1,) robust cost in pixels^2 (sum over the valid
      entries of optimised points of rho(error_px)) after each iteration
      (entry 0 = the input); iterations after convergence repeat the last value.
    num_iterations: number of accepted Levenberg-Marquardt steps.
    seconds: wall time of the call, validation and compilation included.
  """

  w2c: np.ndarray
  K: np.ndarray
  points_world: np.ndarray
  optimised_points: np.ndarray
  inlier: np.ndarray
  rms_px_before: float
  rms_px_after: float
  median_px_before: float
  median_px_after: float
  cost_history: np.ndarray
  num_iterations: int
  seconds: float


# ---------------------------------------------------------------------------
# Validation.
# ---------------------------------------------------------------------------


def _as_float(x, name: str, shape_doc: str) -> np.ndarray:
  x = np.asarray(x)
  if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
    raise ValueError(f"bundle_adjust: `{name}` {shape_doc} must be a real number array; got dtype {x.dtype}.")
  if not np.all(np.isfinite(x)):
    raise ValueError(f"bundle_adjust: `{name}` {shape_doc} must be finite; found "
                     f"{int((~np.isfinite(x)).sum())} NaN/inf value(s).")
  return x


def _validate(w2c, K, xy_px, valid, points_world, iterations, robust, robust_scale_px, min_views):
  w2c_in, K_in, xy_in, pts_in = (np.asarray(a) for a in (w2c, K, xy_px, points_world))
  valid = np.asarray(valid)
  if w2c_in.ndim != 3 or w2c_in.shape[1:] != (4, 4):
    raise ValueError(f"bundle_adjust: `w2c` must be world-to-camera poses of shape (t, 4, 4); got {w2c_in.shape}.")
  t = w2c_in.shape[0]
  if t < 2:
    raise ValueError(f"bundle_adjust: `w2c` has t = {t} frame(s); bundle adjustment needs t >= 2.")
  if pts_in.ndim != 2 or pts_in.shape[1] != 3 or pts_in.shape[0] < 1:
    raise ValueError(f"bundle_adjust: `points_world` must have shape (p, 3) with p >= 1; got {pts_in.shape}.")
  p = pts_in.shape[0]
  if K_in.shape != (t, 3, 3):
    raise ValueError(f"bundle_adjust: `K` must have shape (t, 3, 3) = ({t}, 3, 3) like `w2c`; got {K_in.shape}.")
  if xy_in.shape != (t, p, 2):
    raise ValueError(f"bundle_adjust: `xy_px` must have shape (t, p, 2) = ({t}, {p}, 2) (t from `w2c`, p from "
                     f"`points_world`); got {xy_in.shape}.")
  if valid.shape != (t, p):
    raise ValueError(f"bundle_adjust: `valid` must have shape (t, p) = ({t}, {p}); got {valid.shape}.")
  if valid.dtype != np.bool_:
    raise ValueError(f"bundle_adjust: `valid` (t, p) must be boolean; got dtype {valid.dtype}.")
  w2c64 = _as_float(w2c_in, "w2c", "(t, 4, 4)").astype(np.float64)
  K64 = _as_float(K_in, "K", "(t, 3, 3)").astype(np.float64)
  xy64 = _as_float(xy_in, "xy_px", "(t, p, 2)").astype(np.float64)
  pts64 = _as_float(pts_in, "points_world", "(p, 3)").astype(np.float64)

  if not np.allclose(w2c64[:, 3, :], [0.0, 0.0, 0.0, 1.0], atol=1e-6):
    raise ValueError("bundle_adjust: `w2c` (t, 4, 4) must have last row [0, 0, 0, 1].")
  rot = w2c64[:, :3, :3]
  if not np.allclose(rot @ np.swapaxes(rot, -1, -2), np.eye(3), atol=1e-3) or np.any(np.linalg.det(rot) < 0):
    raise ValueError("bundle_adjust: `w2c` (t, 4, 4) rotation blocks must be orthonormal with determinant +1.")
  fx, fy = K64[:, 0, 0], K64[:, 1, 1]
  off = K64[:, [0, 1, 2, 2], [1, 0, 0, 1]]
  if np.any(np.abs(off) > 1e-6 * np.maximum(1.0, np.abs(K64).max())) or not np.allclose(K64[:, 2, 2], 1.0, atol=1e-6):
    raise ValueError("bundle_adjust: `K` (t, 3, 3) must be of the form [[fx, 0, cx], [0, fy, cy], [0, 0, 1]].")
  if np.any(fx <= 0) or np.any(fy <= 0):
    raise ValueError(f"bundle_adjust: `K` (t, 3, 3) needs fx > 0 and fy > 0; got min fx {fx.min():g}, "
                     f"min fy {fy.min():g}.")

  if robust not in ROBUST_LOSSES:
    raise ValueError(f"bundle_adjust: `robust` must be one of {ROBUST_LOSSES}; got {robust!r}.")
  try:
    scale_ok = np.ndim(robust_scale_px) == 0 and np.isfinite(float(robust_scale_px)) and float(robust_scale_px) > 0
  except (TypeError, ValueError):
    scale_ok = False
  if not scale_ok:
    raise ValueError(f"bundle_adjust: `robust_scale_px` must be a finite number > 0; got {robust_scale_px!r}.")
  if isinstance(iterations, bool) or not isinstance(iterations, (int, np.integer)) or iterations < 0:
    raise ValueError(f"bundle_adjust: `iterations` must be an integer >= 0; got {iterations!r}.")
  if isinstance(min_views, bool) or not isinstance(min_views, (int, np.integer)) or min_views < 1:
    raise ValueError(f"bundle_adjust: `min_views` must be an integer >= 1; got {min_views!r}.")
  views = valid.sum(0)
  optimised = views >= min_views
  if not optimised.any():
    raise ValueError(f"bundle_adjust: no point of `points_world` has >= min_views = {min_views} valid observations "
                     f"in `valid` (most: {int(views.max())}).")
  return w2c64, K64, xy64, pts64, valid, optimised


# ---------------------------------------------------------------------------
# The jitted solver (normalised units: scene scaled to median depth 1,
# residuals divided by the median focal f0).
# ---------------------------------------------------------------------------


def _mm(a, b):
  """(..., i, k) @ (..., k, j) for small matrices."""
  return (a[..., :, :, None] * b[..., None, :, :]).sum(-2)


def _mv(a, v):
  """(..., i, k) @ (..., k) for small matrices."""
  return (a * v[..., None, :]).sum(-1)


def _residuals(rot, trans, pts, log_f, a0, dobs, min_depth):
  """Camera-frame points (t, p, 3), clamped depth (t, p), residuals (t, p, 2), predictions (t, p, 2)."""
  xc = jnp.einsum("tij,pj->tpi", rot, pts) + trans[:, None, :]
  zc = jnp.maximum(xc[..., 2], min_depth)
  a = a0 * jnp.exp(log_f)  # (t, 2): fx s / f0, fy s / f0.
  pred = a[:, None, :] * (xc[..., :2] / zc[..., None])
  return xc, zc, pred - dobs, pred


def _rho_and_weight(err, code, sigma):
  """Robust cost rho(e) and IRLS weight rho'(e)/e of residual norms (normalised units)."""
  ratio2 = (err / sigma) ** 2
  rho_none = 0.5 * err**2
  rho_huber = jnp.where(err <= sigma, rho_none, sigma * (err - 0.5 * sigma))
  rho_cauchy = 0.5 * sigma**2 * jnp.log1p(ratio2)
  w_huber = jnp.where(err <= sigma, 1.0, sigma / jnp.maximum(err, 1e-30))
  w_cauchy = 1.0 / (1.0 + ratio2)
  rho = jnp.where(code == 0, rho_none, jnp.where(code == 1, rho_huber, rho_cauchy))
  w = jnp.where(code == 0, 1.0, jnp.where(code == 1, w_huber, w_cauchy))
  return rho, w


def _cost(rot, trans, pts, log_f, a0, dobs, mask, min_depth, code, sigma):
  _, _, r, _ = _residuals(rot, trans, pts, log_f, a0, dobs, min_depth)
  err = jnp.sqrt((r * r).sum(-1))
  rho, _ = _rho_and_weight(err, code, sigma)
  return jnp.where(mask, rho, 0.0).sum()


def _lm_step(rot, trans, pts, log_f, lam, a0, dobs, mask, cam_free, point_free, focal_on, min_depth, code, sigma):
  """One damped Gauss-Newton (IRLS) step: returns the updates and the predicted cost decrease."""
  t, p = mask.shape
  dtype = rot.dtype
  xc, zc, r, pred = _residuals(rot, trans, pts, log_f, a0, dobs, min_depth)
  err = jnp.sqrt((r * r).sum(-1))
  _, w = _rho_and_weight(err, code, sigma)
  w = jnp.where(mask, w, 0.0)

  # dr/dx_cam (t, p, 2, 3); the depth derivative vanishes where the depth is clamped.
  in_front = (xc[..., 2] > min_depth).astype(dtype)
  a = (a0 * jnp.exp(log_f))[:, None, :]  # (t, 1, 2)
  inv_z = 1.0 / zc
  zero = jnp.zeros_like(inv_z)
  d_dz = -pred * (inv_z * in_front)[..., None]  # (t, p, 2)
  dr_dxc = jnp.stack([
      jnp.stack([a[..., 0] * inv_z, zero, d_dz[..., 0]], -1),
      jnp.stack([zero, a[..., 1] * inv_z, d_dz[..., 1]], -1),
  ], -2)
  # Camera-side Jacobian (t, p, 2, 7): x_cam <- exp(omega) x_cam + dt gives
  # d x_cam = -[x_cam]_x omega + dt; the last column is d r / d log s = pred.
  j_rot = -jnp.einsum("tpkc,tpcd->tpkd", dr_dxc, geometry.skew(xc))
  j_c = jnp.concatenate([(j_rot * cam_free[:, None, None, None]), dr_dxc * cam_free[:, None, None, None],
                         (pred * focal_on)[..., None]], -1)
  j_p = jnp.einsum("tpkc,tcd->tpkd", dr_dxc, rot) * point_free[None, :, None, None]  # (t, p, 2, 3)

  wr = w[..., None] * r
  u_c = jnp.einsum("tpka,tpkb,tp->tab", j_c, j_c, w)  # (t, 7, 7)
  w_cp = jnp.einsum("tpka,tpkb,tp->tpab", j_c, j_p, w)  # (t, p, 7, 3)
  v_pp = jnp.einsum("tpka,tpkb,tp->pab", j_p, j_p, w)  # (p, 3, 3)
  g_c = jnp.einsum("tpka,tpk->ta", j_c, wr)  # (t, 7)
  g_p = jnp.einsum("tpka,tpk->pa", j_p, wr)  # (p, 3)

  # Reduced system over n = 6t + 1 camera-side unknowns (the last: log focal scale).
  n = 6 * t + 1
  eye_t = jnp.eye(t, dtype=dtype)
  h_cc = (eye_t[:, None, :, None] * u_c[:, :6, None, :6]).reshape(6 * t, 6 * t)
  u_cf = u_c[:, :6, 6].reshape(6 * t, 1)
  h_c = jnp.concatenate([
      jnp.concatenate([h_cc, u_cf], 1),
      jnp.concatenate([u_cf.T, u_c[:, 6, 6].sum().reshape(1, 1)], 1),
  ], 0)
  # Fixed parameters (first camera, focal off, points not optimised) get an
  # identity row; their gradient is 0, so their update is 0.
  free_c = jnp.concatenate([jnp.repeat(cam_free, 6), focal_on[None]])
  h_c = h_c + jnp.diag(1.0 - free_c)
  eye3 = jnp.eye(3, dtype=dtype)
  v_pp = v_pp + (1.0 - point_free)[:, None, None] * eye3
  g_cf = jnp.concatenate([g_c[:, :6].reshape(-1), g_c[:, 6].sum()[None]])

  # Marquardt damping lambda * diag(H).
  d_c = jnp.maximum(jnp.diagonal(h_c), 1e-9)
  d_p = jnp.maximum(jnp.diagonal(v_pp, axis1=-2, axis2=-1), 1e-9)  # (p, 3)
  h_cd = h_c + jnp.diag(lam * d_c)
  v_inv = _inv3(v_pp + lam * d_p[..., None] * eye3)  # (p, 3, 3)

  w_full = jnp.concatenate([jnp.transpose(w_cp[:, :, :6], (0, 2, 1, 3)).reshape(6 * t, p, 3),
                            w_cp[:, :, 6].sum(0)[None]], 0)  # (n, p, 3)
  y = jnp.einsum("npc,pcd->npd", w_full, v_inv)  # W V^-1
  schur = h_cd - y.reshape(n, 3 * p) @ w_full.reshape(n, 3 * p).T
  schur = 0.5 * (schur + schur.T)
  rhs = -(g_cf - jnp.einsum("npd,pd->n", y, g_p))
  # Jacobi preconditioning, then Cholesky (NaN when not positive definite: the step is rejected).
  scale = 1.0 / jnp.sqrt(jnp.maximum(jnp.diagonal(schur), 1e-30))
  delta_c = _cholesky_solve(_cholesky(schur * scale[:, None] * scale[None, :]), rhs * scale) * scale
  delta_p = -jnp.einsum("pab,pb->pa", v_inv, g_p + jnp.einsum("npc,n->pc", w_full, delta_c))

  # Predicted decrease of the (IRLS) quadratic model: 0.5 (lam d^T D d - g^T d).
  g_dot = g_cf @ delta_c + (g_p * delta_p).sum()
  d_damp = (d_c * delta_c**2).sum() + (d_p * delta_p**2).sum()
  predicted = 0.5 * (lam * d_damp - g_dot)
  return delta_c[:-1].reshape(t, 6), delta_c[-1], delta_p, predicted


# Dense Cholesky in plain XLA ops. LAPACK (jnp.linalg.cholesky) is as fast
# alone, but its OpenBLAS threads spin against XLA's own thread pool inside the
# loop: ~8x the CPU time per call on 2 cores.
def _cholesky(a):
  """Lower Cholesky factor of a symmetric (n, n) matrix; NaN when not positive definite."""
  n = a.shape[0]
  idx = jnp.arange(n)

  def column(j, low):
    v = a[:, j] - low @ low[j]  # Only the columns < j of `low` are filled yet.
    return low.at[:, j].set(jnp.where(idx >= j, v / jnp.sqrt(v[j]), 0.0))

  return jax.lax.fori_loop(0, n, column, jnp.zeros_like(a))


def _cholesky_solve(low, b):
  """x with (low low^T) x = b by forward and back substitution."""
  n = b.shape[0]

  def forward(j, y):
    return y.at[j].set((b[j] - low[j] @ y) / low[j, j])

  y = jax.lax.fori_loop(0, n, forward, jnp.zeros_like(b))

  def backward(k, x):
    j = n - 1 - k
    return x.at[j].set((y[j] - low[:, j] @ x) / low[j, j])

  return jax.lax.fori_loop(0, n, backward, jnp.zeros_like(b))


def _inv3(m):
  """Inverse of (..., 3, 3) matrices by the adjugate (well conditioned after damping)."""
  c0 = jnp.cross(m[..., 1, :], m[..., 2, :])
  c1 = jnp.cross(m[..., 2, :], m[..., 0, :])
  c2 = jnp.cross(m[..., 0, :], m[..., 1, :])
  det = (m[..., 0, :] * c0).sum(-1)
  return jnp.stack([c0, c1, c2], -1) / det[..., None, None]


def _apply(rot, trans, pts, log_f, d_cam, d_f, d_pts):
  step_rot = geometry.axis_angle_to_matrix(d_cam[:, :3])
  rot_new = _mm(step_rot, rot)
  trans_new = _mv(step_rot, trans) + d_cam[:, 3:]
  return rot_new, trans_new, pts + d_pts, log_f + d_f


def _solve(rot, trans, pts, a0, dobs, mask, cam_free, point_free, focal_on, min_depth, code, sigma, iterations,
           history_len):
  cost_fn = lambda r_, t_, x_, f_: _cost(r_, t_, x_, f_, a0, dobs, mask, min_depth, code, sigma)
  log_f = jnp.zeros((), rot.dtype)
  cost0 = cost_fn(rot, trans, pts, log_f)
  history = jnp.full((history_len,), cost0)
  lam = jnp.asarray(_LAMBDA_INIT, rot.dtype)
  nu = jnp.asarray(2.0, rot.dtype)
  state = (jnp.int32(0), jnp.int32(0), jnp.bool_(False), rot, trans, pts, log_f, cost0, lam, nu, history)

  def cond(s):
    k, _, done = s[:3]
    return (k < iterations) & ~done

  def body(s):
    k, accepted, _, rot, trans, pts, log_f, cost, lam, nu, history = s
    d_cam, d_f, d_pts, predicted = _lm_step(rot, trans, pts, log_f, lam, a0, dobs, mask, cam_free, point_free,
                                            focal_on, min_depth, code, sigma)
    cand = _apply(rot, trans, pts, log_f, d_cam, d_f, d_pts)
    new_cost = cost_fn(*cand)
    finite = jnp.isfinite(new_cost) & jnp.isfinite(predicted)
    for c in cand:
      finite = finite & jnp.all(jnp.isfinite(c))
    ok = finite & (new_cost < cost)
    gain = (cost - new_cost) / jnp.maximum(predicted, 1e-30)
    lam_ok = lam * jnp.maximum(1.0 / 3.0, 1.0 - (2.0 * jnp.clip(gain, 0.0, 1.0) - 1.0) ** 3)
    lam_new = jnp.clip(jnp.where(ok, lam_ok, lam * nu), _LAMBDA_MIN, _LAMBDA_MAX)
    nu_new = jnp.where(ok, 2.0, nu * 2.0)
    rot, trans, pts, log_f = (jnp.where(ok, c, o) for c, o in zip(cand, (rot, trans, pts, log_f)))
    converged = (ok & (cost - new_cost <= _REL_DECREASE_TOL * cost)) | (predicted <= _REL_DECREASE_TOL * cost)
    stuck = ~ok & (lam >= _LAMBDA_MAX)
    cost = jnp.where(ok, new_cost, cost)
    history = jnp.where(jnp.arange(history_len) > k, cost, history)
    return (k + 1, accepted + ok.astype(jnp.int32), converged | stuck | (cost <= 0.0), rot, trans, pts, log_f, cost,
            lam_new, nu_new, history)

  _, accepted, _, rot, trans, pts, log_f, _, _, _, history = jax.lax.while_loop(cond, body, state)
  _, _, r0, _ = _residuals(state[3], state[4], state[5], state[6], a0, dobs, min_depth)
  _, _, r1, _ = _residuals(rot, trans, pts, log_f, a0, dobs, min_depth)
  err0 = jnp.sqrt((r0 * r0).sum(-1))
  err1 = jnp.sqrt((r1 * r1).sum(-1))
  return rot, trans, pts, log_f, history, accepted, err0, err1


_solve_jit = jax.jit(_solve, static_argnames=("history_len",))


# ---------------------------------------------------------------------------
# Public API.
# ---------------------------------------------------------------------------


def _orthonormalise(rot: np.ndarray) -> np.ndarray:
  u, _, vt = np.linalg.svd(rot)
  d = np.sign(np.linalg.det(u @ vt))
  return u @ (np.eye(3) * np.concatenate([np.ones((rot.shape[0], 2)), d[:, None]], 1)[:, None, :]) @ vt


def _bucket(size: int, multiple: int) -> int:
  return -(-size // multiple) * multiple


def _out_dtype(x) -> np.dtype:
  dt = np.asarray(x).dtype
  return dt if np.issubdtype(dt, np.floating) else np.dtype(np.float32)


def bundle_adjust(w2c, K, xy_px, valid, points_world, *, iterations: int = 20, robust: str = "huber",
                  robust_scale_px: float = 2.0, refine_focal: bool = False, fix_first_camera: bool = True,
                  min_views: int = 2) -> BundleAdjustResult:
  """Refines cameras, static points and optionally the focal length by robust LM.

  Minimises the sum over valid observations of rho(reprojection error in
  pixels) by Levenberg-Marquardt with a Schur complement on the points (see the
  module docstring). Points with fewer than `min_views` valid observations do
  not take part (their observations are ignored) and are returned unchanged.

  Args:
    w2c: (t, 4, 4) initial world-to-camera poses (OpenCV axes), t >= 2.
    K: (t, 3, 3) intrinsics [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] in pixels.
    xy_px: (t, p, 2) observed pixel positions (x, y); finite everywhere.
    valid: (t, p) bool, which observations to use.
    points_world: (p, 3) initial static points in the world frame.
    iterations: maximum number of LM iterations (one trial step each; stops
      early at convergence); 0 only evaluates the errors.
    robust: "huber", "cauchy" (on the 2D error norm) or "none".
    robust_scale_px: the robust loss scale in pixels.
    refine_focal: also refine one focal scale common to all frames (fx and fy
      multiplied by it; principal points fixed).
    fix_first_camera: hold the first camera fixed (gauge); the scale gauge is
      left to the damping.
    min_views: points need at least this many valid observations to be
      optimised.

  Returns:
    A `BundleAdjustResult`: refined w2c (t, 4, 4), K (t, 3, 3),
    points_world (p, 3), the optimised-point (p,) and inlier (t, p) masks,
    error statistics in pixels, the cost history and the wall time.

  Raises:
    ValueError: naming the argument, when shapes disagree, an array holds
      NaN/inf, `valid` is not boolean, a rotation is not orthonormal, `K` is not
      [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] with fx, fy > 0, `robust` is
      unknown, `robust_scale_px` <= 0, `iterations` < 0, `min_views` < 1,
      t < 2, or no point has `min_views` valid observations.

  Example:
    >>> res = bundle_adjust(w2c, K, xy_px, valid, xyz, robust="cauchy", refine_focal=True)
    >>> res.rms_px_after, res.K[0, 0, 0], res.optimised_points.mean()
  """
  start = time.perf_counter()
  w2c64, K64, xy64, pts64, valid, optimised = _validate(w2c, K, xy_px, valid, points_world, iterations, robust,
                                                        robust_scale_px, min_views)
  t, p = valid.shape
  mask = valid & optimised[None, :]

  # Normalisation: world centred on the median optimised point and scaled to median depth 1.
  rot, trans = w2c64[:, :3, :3], w2c64[:, :3, 3]
  centre = np.median(pts64[optimised], axis=0)
  depth = (pts64 @ np.swapaxes(rot, -1, -2) + trans[:, None, :])[..., 2]
  scale = float(np.median(np.abs(depth[mask])))
  if not scale > 1e-12:
    scale = float(np.median(np.linalg.norm(geometry.camera_centers(w2c64) - centre, axis=-1)))
  if not scale > 1e-12:
    scale = 1.0
  pts_n = (pts64 - centre) / scale
  trans_n = (np.einsum("tij,j->ti", rot, centre) + trans) / scale
  f0 = float(np.median(np.concatenate([K64[:, 0, 0], K64[:, 1, 1]])))
  a0 = np.stack([K64[:, 0, 0], K64[:, 1, 1]], -1) / f0
  pp = np.stack([K64[:, 0, 2], K64[:, 1, 2]], -1)
  dobs = (xy64 - pp[:, None, :]) / f0

  # Pad to buckets (extra frames fixed, extra points not optimised, no
  # observations) so that nearby shapes share one compilation.
  tp, pp_ = _bucket(t, _T_BUCKET), _bucket(p, _P_BUCKET)
  pad_t, pad_p = ((0, tp - t),), ((0, pp_ - p),)
  rot_pad = np.concatenate([rot, np.broadcast_to(np.eye(3), (tp - t, 3, 3))], 0)
  trans_pad = np.pad(trans_n, pad_t + ((0, 0),))
  pts_pad = np.pad(pts_n, pad_p + ((0, 0),))
  a0_pad = np.pad(a0, pad_t + ((0, 0),), constant_values=1.0)
  dobs_pad = np.pad(dobs, pad_t + pad_p + ((0, 0),))
  mask_pad = np.pad(mask, pad_t + pad_p)
  cam_free = np.pad(np.ones((t,), np.float32), pad_t)
  if fix_first_camera:
    cam_free[0] = 0.0
  point_free = np.pad(optimised.astype(np.float32), pad_p)

  f32 = lambda x: jnp.asarray(x, jnp.float32)
  out = _solve_jit(f32(rot_pad), f32(trans_pad), f32(pts_pad), f32(a0_pad), f32(dobs_pad), jnp.asarray(mask_pad),
                   f32(cam_free), f32(point_free), f32(1.0 if refine_focal else 0.0), f32(geometry.MIN_DEPTH / scale),
                   jnp.int32(ROBUST_LOSSES.index(robust)), f32(float(robust_scale_px) / f0), jnp.int32(iterations),
                   history_len=_bucket(int(iterations) + 1, _HISTORY_BUCKET))
  rot_o, trans_o, pts_o, log_f, history, accepted, err0, err1 = jax.device_get(out)
  rot_o, trans_o, pts_o, err0, err1 = rot_o[:t], trans_o[:t], pts_o[:p], err0[:t, :p], err1[:t, :p]
  history = history[:int(iterations) + 1]

  # Undo the normalisation (float64).
  rot_o = _orthonormalise(np.asarray(rot_o, np.float64))
  trans_o = np.asarray(trans_o, np.float64) * scale - np.einsum("tij,j->ti", rot_o, centre)
  w2c_out = geometry.make_pose(rot_o, trans_o).astype(_out_dtype(w2c))
  if fix_first_camera:  # Exactly the input, not its float32 round trip.
    w2c_out[0] = np.asarray(w2c)[0]
  pts_out = np.asarray(pts_o, np.float64) * scale + centre
  K_out = K64.copy()
  if refine_focal:
    K_out[:, 0, 0] *= np.exp(float(log_f))
    K_out[:, 1, 1] *= np.exp(float(log_f))
  err0_px = np.asarray(err0, np.float64) * f0
  err1_px = np.asarray(err1, np.float64) * f0
  inlier = valid.copy() if robust == "none" else valid & (err1_px <= _INLIER_SCALES * float(robust_scale_px))

  # Points not optimised: the input values, bit for bit.
  points_out = pts_out.astype(_out_dtype(points_world))
  points_out[~optimised] = np.asarray(points_world)[~optimised]
  return BundleAdjustResult(
      w2c=w2c_out,
      K=K_out.astype(_out_dtype(K)) if refine_focal else np.array(K, dtype=_out_dtype(K)),
      points_world=points_out,
      optimised_points=optimised,
      inlier=inlier,
      rms_px_before=float(np.sqrt(np.mean(err0_px[mask] ** 2))),
      rms_px_after=float(np.sqrt(np.mean(err1_px[mask] ** 2))),
      median_px_before=float(np.median(err0_px[mask])),
      median_px_after=float(np.median(err1_px[mask])),
      cost_history=np.asarray(history, np.float64) * f0**2,
      num_iterations=int(accepted),
      seconds=time.perf_counter() - start,
  )
