"""Tests of reconstruct.bundle_adjust on small synthetic static scenes.

Every scene has the same shape (t = 12 frames, p = 150 points), so the jitted
solver compiles once for the whole file.
"""

from __future__ import annotations

import numpy as np
import pytest

from reconstruct.bundle_adjust import BundleAdjustResult, bundle_adjust
from tracks4d import geometry
from tracks4d.metrics import pose_metrics

T, P = 12, 150
F_PX = 500.0
HW = (480, 640)


def _scene(seed: int, noise_px: float = 0.5):
  """Random points in a 4-unit cube seen by look_at cameras on a 60 degree arc at distance 6.

  Returns (gt_w2c (t,4,4), K (t,3,3), xy_px (t,p,2) noisy observations, valid (t,p), gt points (p,3)).
  """
  rng = np.random.default_rng(seed)
  h, w = HW
  K = np.broadcast_to(geometry.make_intrinsics(F_PX, F_PX, (w - 1) / 2, (h - 1) / 2), (T, 3, 3)).astype(np.float64)
  ang = np.deg2rad(np.linspace(-30.0, 30.0, T))
  eye = np.stack([6 * np.sin(ang), -1.0 + 0.3 * np.sin(3 * ang), -6 * np.cos(ang)], -1)
  w2c = geometry.invert_pose(geometry.look_at(eye, np.zeros((T, 3))).astype(np.float64))
  pts = rng.uniform(-2.0, 2.0, size=(P, 3))
  xy, depth = geometry.project(geometry.transform_points(w2c, np.broadcast_to(pts, (T, P, 3))), K)
  valid = (depth > 0.1) & geometry.in_image(xy, np.array(HW)) & (rng.random((T, P)) > 0.2)
  assert valid.sum(0).min() >= 2
  return w2c, K, xy + noise_px * rng.normal(size=xy.shape), valid, pts


def _perturb(w2c, pts, seed: int):
  """1-2 degree rotations and ~3% translations on every camera but the first; ~2% on the points."""
  rng = np.random.default_rng(seed)
  axis = rng.normal(size=(T, 3))
  axis /= np.linalg.norm(axis, axis=-1, keepdims=True)
  rot = geometry.axis_angle_to_matrix(axis * np.deg2rad(rng.uniform(1.0, 2.0, size=(T, 1)))) @ w2c[:, :3, :3]
  trans = w2c[:, :3, 3] + 0.03 * 6.0 * rng.normal(size=(T, 3)) / np.sqrt(3)
  out = geometry.make_pose(rot, trans)
  out[0] = w2c[0]
  return out, pts + 0.08 * rng.normal(size=pts.shape)


def _rot_err_deg(pred_w2c, gt_w2c) -> float:
  """Mean rotation error (degrees) of the poses relative to the first frame: free of the gauge."""
  rel_pred = pred_w2c[:, :3, :3] @ pred_w2c[0, :3, :3].T
  rel_gt = gt_w2c[:, :3, :3] @ gt_w2c[0, :3, :3].T
  err = np.swapaxes(rel_gt, -1, -2) @ rel_pred
  return float(np.degrees(np.linalg.norm(geometry.matrix_to_axis_angle(err[1:]), axis=-1)).mean())


def _rms_px(w2c, K, xy_px, valid, pts) -> float:
  proj, _ = geometry.project(geometry.transform_points(w2c, np.broadcast_to(pts, (T, P, 3))), K)
  return float(np.sqrt(np.mean(np.sum((proj - xy_px) ** 2, -1)[valid])))


def _cameras(res_or_w2c, gt_w2c):
  w2c = res_or_w2c.w2c if isinstance(res_or_w2c, BundleAdjustResult) else res_or_w2c
  return _rot_err_deg(w2c, gt_w2c), pose_metrics(w2c, gt_w2c).ate


def test_perturbed_scene_converges_to_noise_level():
  gt_w2c, K, xy, valid, gt_pts = _scene(seed=0, noise_px=0.5)
  w2c0, pts0 = _perturb(gt_w2c, gt_pts, seed=1)
  res = bundle_adjust(w2c0, K, xy, valid, pts0)

  rms_gt = _rms_px(gt_w2c, K, xy, valid, gt_pts)  # ~0.5 * sqrt(2): the noise level.
  rot_before, ate_before = _cameras(w2c0, gt_w2c)
  rot_after, ate_after = _cameras(res, gt_w2c)
  # Measured: rms 14.0 -> 0.63 px (gt 0.70); rotation 1.51 -> 0.072 deg; ATE 0.151 -> 0.0033.
  assert res.rms_px_before > 5.0
  assert 0.8 * rms_gt < res.rms_px_after <= rms_gt
  assert res.median_px_after < res.rms_px_after
  assert rot_before > 1.0 and rot_after < rot_before / 8
  assert ate_after < ate_before / 8
  assert res.rms_px_after == pytest.approx(_rms_px(res.w2c, K, xy, valid, res.points_world), rel=1e-3)
  # Cost history: starts at the input, never increases, ends well below.
  assert res.cost_history.shape == (21,)
  assert np.all(np.diff(res.cost_history) <= 1e-6 * res.cost_history[0])
  assert res.cost_history[-1] < 0.01 * res.cost_history[0]
  assert 1 <= res.num_iterations <= 20 and res.seconds > 0
  # The gauge: the first camera is exactly the input's; K unchanged; all points optimised.
  np.testing.assert_array_equal(res.w2c[0], w2c0[0])
  np.testing.assert_array_equal(res.K, K)
  assert res.optimised_points.all() and res.inlier[valid].mean() > 0.99 and not res.inlier[~valid].any()
  rot = res.w2c[1:, :3, :3]  # Refined rotations are re-orthonormalised in float64.
  np.testing.assert_allclose(rot @ np.swapaxes(rot, -1, -2), np.broadcast_to(np.eye(3), rot.shape), atol=1e-9)


def test_free_gauge_still_converges():
  gt_w2c, K, xy, valid, gt_pts = _scene(seed=0, noise_px=0.5)
  w2c0, pts0 = _perturb(gt_w2c, gt_pts, seed=1)
  res = bundle_adjust(w2c0, K, xy, valid, pts0, fix_first_camera=False)
  assert res.rms_px_after <= _rms_px(gt_w2c, K, xy, valid, gt_pts) * 1.01
  rot_after, ate_after = _cameras(res, gt_w2c)
  assert rot_after < 0.2 and ate_after < 0.02


def _with_outliers(xy, valid, seed: int, fraction: float = 0.1):
  rng = np.random.default_rng(seed)
  idx = np.flatnonzero(valid)
  out_idx = rng.choice(idx, size=int(fraction * idx.size), replace=False)
  outlier = np.zeros(valid.shape, bool)
  outlier.flat[out_idx] = True
  angle = rng.uniform(0, 2 * np.pi, size=out_idx.size)
  radius = rng.uniform(20.0, 40.0, size=out_idx.size)
  xy = xy.copy()
  xy.reshape(-1, 2)[out_idx] += radius[:, None] * np.stack([np.cos(angle), np.sin(angle)], -1)
  return xy, outlier


def test_robust_losses_beat_least_squares_with_outliers():
  gt_w2c, K, xy, valid, gt_pts = _scene(seed=2, noise_px=0.5)
  xy_bad, outlier = _with_outliers(xy, valid, seed=3)
  w2c0, pts0 = _perturb(gt_w2c, gt_pts, seed=4)
  plain = bundle_adjust(w2c0, K, xy_bad, valid, pts0, robust="none")
  rot_plain, ate_plain = _cameras(plain, gt_w2c)
  assert plain.inlier[valid].all()  # "none": every valid entry is an inlier.
  # Measured: rotation 1.47 (input) -> 0.74 (none) vs 0.061 (huber) / 0.053 (cauchy) deg;
  # ATE 0.20 -> 0.044 vs 0.0057 / 0.0046; outliers flagged 100%, clean entries kept 100%.
  for robust in ("huber", "cauchy"):
    res = bundle_adjust(w2c0, K, xy_bad, valid, pts0, robust=robust, robust_scale_px=2.0)
    rot, ate = _cameras(res, gt_w2c)
    assert rot < rot_plain / 3 and rot < 0.15, robust
    assert ate < ate_plain / 3, robust
    # Inlier mask: nearly all outliers flagged, nearly all clean entries kept.
    assert (~res.inlier[outlier]).mean() > 0.95, robust
    assert res.inlier[valid & ~outlier].mean() > 0.98, robust
    assert res.median_px_after < 0.8


def test_refine_focal_recovers_a_wrong_focal():
  gt_w2c, K, xy, valid, gt_pts = _scene(seed=5, noise_px=0.5)
  w2c0, pts0 = _perturb(gt_w2c, gt_pts, seed=6)
  K_wrong = K.copy()
  K_wrong[:, :2, :2] *= 1.15
  res = bundle_adjust(w2c0, K_wrong, xy, valid, pts0, refine_focal=True)
  fixed = bundle_adjust(w2c0, K_wrong, xy, valid, pts0, refine_focal=False)
  # Measured: focal ratio 1.15 -> 0.9999; rms 0.65 px (refined) vs 0.92 px (fixed focal);
  # rotation error 0.05 vs 2.17 deg.
  ratio = res.K[:, 0, 0] / F_PX
  assert np.all(np.abs(ratio - 1.0) < 0.02), ratio[0]
  np.testing.assert_allclose(res.K[:, 1, 1], res.K[:, 0, 0])  # One common scale, square pixels kept.
  np.testing.assert_array_equal(res.K[:, :2, 2], K_wrong[:, :2, 2])  # Principal point fixed.
  np.testing.assert_array_equal(fixed.K, K_wrong)
  assert res.rms_px_after < fixed.rms_px_after
  assert _cameras(res, gt_w2c)[0] < _cameras(fixed, gt_w2c)[0]


def test_exact_input_is_not_degraded():
  gt_w2c, K, xy, valid, gt_pts = _scene(seed=7, noise_px=0.0)
  for refine_focal in (False, True):
    res = bundle_adjust(gt_w2c, K, xy, valid, gt_pts, refine_focal=refine_focal)
    assert res.rms_px_before < 1e-4  # The float32 resolution of the solver's residuals.
    # Measured: 1e-5 px before and after; rotations within 2e-7 deg, positions within 4e-7.
    assert res.rms_px_after < 1e-3, refine_focal
    assert _rot_err_deg(res.w2c, gt_w2c) < 1e-4
    np.testing.assert_allclose(res.w2c[:, :3, 3], gt_w2c[:, :3, 3], atol=1e-5)
    np.testing.assert_allclose(res.points_world, gt_pts, atol=1e-5)
    np.testing.assert_allclose(res.K, K, rtol=1e-6)


def test_points_with_too_few_views_are_untouched_and_flagged():
  gt_w2c, K, xy, valid, gt_pts = _scene(seed=8, noise_px=0.5)
  w2c0, pts0 = _perturb(gt_w2c, gt_pts, seed=9)
  valid = valid.copy()
  few = np.arange(10)
  valid[:, few] = False
  valid[3, few[:8]] = True  # 8 single-view points, 2 points never seen.
  pts0 = pts0.astype(np.float32)
  pts0[few] += 0.5  # Far off: would move if they were optimised.
  pts0[20] = gt_w2c[0, :3, :3].T @ (np.array([0.2, 0.1, -1.0]) - gt_w2c[0, :3, 3])  # Behind camera 0.
  res = bundle_adjust(w2c0, K, xy, valid, pts0)
  assert res.points_world.dtype == np.float32
  np.testing.assert_array_equal(res.points_world[few], pts0[few])
  np.testing.assert_array_equal(res.optimised_points, np.arange(P) >= 10)
  assert all(np.all(np.isfinite(a)) for a in (res.w2c, res.K, res.points_world, res.cost_history))
  assert res.rms_px_after < 0.8 and _cameras(res, gt_w2c)[0] < 0.15
  # min_views = 3 leaves out more points, each returned unchanged.
  res3 = bundle_adjust(w2c0, K, xy, valid, pts0, min_views=3)
  left_out = valid.sum(0) < 3
  np.testing.assert_array_equal(res3.optimised_points, ~left_out)
  np.testing.assert_array_equal(res3.points_world[left_out], pts0[left_out])


def _bad(name: str):
  gt_w2c, K, xy, valid, pts = _scene(seed=10, noise_px=0.0)
  args = dict(w2c=gt_w2c, K=K, xy_px=xy, valid=valid, points_world=pts)
  kwargs = {}
  if name == "w2c_shape":
    args["w2c"] = gt_w2c[:, :3]
  elif name == "one_frame":
    args.update(w2c=gt_w2c[:1], K=K[:1], xy_px=xy[:1], valid=valid[:1])
  elif name == "w2c_nan":
    args["w2c"] = gt_w2c.copy()
    args["w2c"][2, 0, 3] = np.nan
  elif name == "w2c_not_rotation":
    args["w2c"] = gt_w2c.copy()
    args["w2c"][2, :3, :3] *= 1.1
  elif name == "K_shape":
    args["K"] = K[:-1]
  elif name == "K_skew":
    args["K"] = K.copy()
    args["K"][:, 0, 1] = 3.0
  elif name == "K_negative_focal":
    args["K"] = K.copy()
    args["K"][4, 1, 1] = -F_PX
  elif name == "K_inf":
    args["K"] = K.copy()
    args["K"][0, 0, 2] = np.inf
  elif name == "xy_shape":
    args["xy_px"] = xy[:, :-1]
  elif name == "xy_nan":
    args["xy_px"] = xy.copy()
    args["xy_px"][0, 0, 0] = np.nan
  elif name == "valid_shape":
    args["valid"] = valid[:, :-1]
  elif name == "valid_dtype":
    args["valid"] = valid.astype(np.float32)
  elif name == "points_shape":
    args["points_world"] = pts[:, :2]
  elif name == "points_nan":
    args["points_world"] = pts.copy()
    args["points_world"][5, 1] = np.nan
  elif name == "robust":
    kwargs["robust"] = "tukey"
  elif name == "robust_scale":
    kwargs["robust_scale_px"] = 0.0
  elif name == "iterations":
    kwargs["iterations"] = -1
  elif name == "min_views":
    kwargs["min_views"] = 0
  elif name == "no_point_with_enough_views":
    args["valid"] = np.zeros_like(valid)
    args["valid"][0] = True
  return args, kwargs


@pytest.mark.parametrize("case, expected", [
    ("w2c_shape", "`w2c`"), ("one_frame", "t >= 2"), ("w2c_nan", "`w2c`.*NaN"),
    ("w2c_not_rotation", "`w2c`.*orthonormal"), ("K_shape", "`K`"), ("K_skew", "`K`.*form"),
    ("K_negative_focal", "`K`.*fx > 0"), ("K_inf", "`K`.*NaN/inf"), ("xy_shape", "`xy_px`"), ("xy_nan", "`xy_px`.*NaN"),
    ("valid_shape", "`valid`"), ("valid_dtype", "`valid`.*boolean"),
    ("points_shape", "`points_world`"), ("points_nan", "`points_world`.*NaN"), ("robust", "`robust`"),
    ("robust_scale", "`robust_scale_px`"), ("iterations", "`iterations`"), ("min_views", "`min_views`"),
    ("no_point_with_enough_views", "min_views"),
])
def test_bad_inputs_raise_naming_the_argument(case, expected):
  args, kwargs = _bad(case)
  with pytest.raises(ValueError, match=expected):
    bundle_adjust(**args, **kwargs)


def test_zero_iterations_only_evaluates():
  gt_w2c, K, xy, valid, gt_pts = _scene(seed=0, noise_px=0.5)
  w2c0, pts0 = _perturb(gt_w2c, gt_pts, seed=1)
  res = bundle_adjust(w2c0, K, xy, valid, pts0, iterations=0)
  assert res.num_iterations == 0 and res.cost_history.shape == (1,)
  assert res.rms_px_after == pytest.approx(res.rms_px_before)
  np.testing.assert_allclose(res.w2c, w2c0, atol=1e-5)
  np.testing.assert_allclose(res.points_world, pts0, atol=1e-5)
