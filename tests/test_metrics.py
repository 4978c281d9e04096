"""Tests of tracks4d.metrics: hand-computed cases, invariances, validation, and the
published NRSfM e3D figures on the CMU-mocap data (REFERENCE.md section 4)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tracks4d import geometry
from tracks4d.io import mocap_mat
from tracks4d.metrics import (depth_metrics, e3d, global_rotation, norm_scale, nrsfm_metrics, pose_metrics,
                              tapvid3d_metrics)


def _random_rotation(rng) -> np.ndarray:
  return geometry.axis_angle_to_matrix(rng.normal(size=3))


# ---------------------------------------------------------------------------
# Depth.
# ---------------------------------------------------------------------------

GT_DEPTH = np.array([[1.0, 2.0, 4.0], [3.0, 3.0, 3.0]])
PRED_DEPTH = np.array([[1.0, 2.0, 2.0], [1.0, 1.0, 2.0]])
DYNAMIC = np.array([[False, False, True], [False, False, True]])


def test_depth_per_frame_hand_computed():
  # Frame 0: s = 2/2 = 1 -> [1, 2, 2] vs [1, 2, 4]: rel 0, 0, 0.5; ratios 1, 1, 2.
  # Frame 1: s = 3/1 = 3 -> [3, 3, 6] vs [3, 3, 3]: rel 0, 0, 1; ratios 1, 1, 2.
  m = depth_metrics(PRED_DEPTH, GT_DEPTH, dynamic=DYNAMIC, scaling="per_frame")
  assert m.abs_rel == pytest.approx(1.5 / 6)
  assert (m.delta_1, m.delta_2, m.delta_3) == pytest.approx((4 / 6, 4 / 6, 4 / 6))
  assert m.abs_rel_dyn == pytest.approx(0.75)
  assert (m.delta_1_dyn, m.delta_2_dyn, m.delta_3_dyn) == (0.0, 0.0, 0.0)
  assert (m.num_points, m.num_points_dyn, m.scaling) == (6, 2, "per_frame")


def test_depth_per_clip_hand_computed():
  # s = median(gt) / median(pred) = 3 / 1.5 = 2 -> [2, 4, 4, 2, 2, 4] vs [1, 2, 4, 3, 3, 3].
  m = depth_metrics(PRED_DEPTH, GT_DEPTH, scaling="per_clip")
  assert m.abs_rel == pytest.approx((1 + 1 + 0 + 1 / 3 + 1 / 3 + 1 / 3) / 6)
  # Ratios 2, 2, 1, 1.5, 1.5, 4/3.
  assert (m.delta_1, m.delta_2, m.delta_3) == pytest.approx((1 / 6, 4 / 6, 4 / 6))
  assert math.isnan(m.abs_rel_dyn) and math.isnan(m.delta_1_dyn) and m.num_points_dyn == 0


def test_depth_masks_exclude_invalid_and_nonpositive_gt():
  gt = GT_DEPTH.copy()
  gt[0, 0] = 0.0  # Unknown gt depth.
  valid = np.ones_like(gt, bool)
  valid[1, 2] = False
  m = depth_metrics(PRED_DEPTH, gt, valid=valid, scaling="none")
  # Left: (0,1) 2 vs 2, (0,2) 2 vs 4, (1,0) 1 vs 3, (1,1) 1 vs 3.
  assert m.num_points == 4
  assert m.abs_rel == pytest.approx((0 + 0.5 + 2 / 3 + 2 / 3) / 4)


def test_depth_perfect_scores_for_gt_and_scaled_gt():
  rng = np.random.default_rng(0)
  gt = rng.uniform(1.0, 10.0, size=(5, 20))
  dyn = rng.random((5, 20)) < 0.5
  for scaling in ("per_frame", "per_clip"):
    for pred in (gt, 3.7 * gt):
      m = depth_metrics(pred, gt, dynamic=dyn, scaling=scaling)
      assert m.abs_rel == pytest.approx(0.0, abs=1e-12) and m.abs_rel_dyn == pytest.approx(0.0, abs=1e-12)
      assert (m.delta_1, m.delta_2, m.delta_3, m.delta_1_dyn) == (1.0, 1.0, 1.0, 1.0)


def test_depth_per_frame_hides_scale_drift_per_clip_does_not():
  gt = np.random.default_rng(1).uniform(1.0, 5.0, size=(10, 30))
  pred = gt * (1.0 + 0.2 * np.arange(10))[:, None]  # Scale drifts over time.
  per_frame = depth_metrics(pred, gt, scaling="per_frame")
  per_clip = depth_metrics(pred, gt, scaling="per_clip")
  assert per_frame.abs_rel == pytest.approx(0.0, abs=1e-12) and per_frame.delta_1 == 1.0
  assert per_clip.abs_rel > 0.2 and per_clip.delta_1 < 0.6


def test_depth_nonpositive_prediction_never_within_delta():
  m = depth_metrics(np.array([[1.0, 1.0, -1.0]]), np.ones((1, 3)), scaling="none")
  assert m.delta_3 == pytest.approx(2 / 3)
  assert m.abs_rel == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    "kwargs, word",
    [
        (dict(pred_depth=np.ones((2, 3)), gt_depth=np.ones((2, 4))), "gt_depth"),
        (dict(pred_depth=np.ones((2, 3, 1)), gt_depth=np.ones((2, 3))), "pred_depth"),
        (dict(pred_depth=np.array([[1.0, np.nan]]), gt_depth=np.ones((1, 2))), "pred_depth"),
        (dict(pred_depth=np.ones((1, 2)), gt_depth=np.ones((1, 2)), valid=np.ones((1, 2))), "valid"),
        (dict(pred_depth=np.ones((1, 2)), gt_depth=np.ones((1, 2)), dynamic=np.ones((2, 1), bool)), "dynamic"),
        (dict(pred_depth=np.ones((1, 2)), gt_depth=np.ones((1, 2)), scaling="median"), "scaling"),
        (dict(pred_depth=np.ones((1, 2)), gt_depth=np.zeros((1, 2))), "valid"),
        (dict(pred_depth=-np.ones((1, 2)), gt_depth=np.ones((1, 2))), "pred_depth"),
    ],
)
def test_depth_bad_input_raises(kwargs, word):
  with pytest.raises(ValueError, match=word):
    depth_metrics(**kwargs)


# ---------------------------------------------------------------------------
# Poses.
# ---------------------------------------------------------------------------


def _trajectory(rng, t=12):
  rots = geometry.axis_angle_to_matrix(0.3 * rng.normal(size=(t, 3)))
  centres = np.cumsum(rng.normal(size=(t, 3)), axis=0)
  return geometry.invert_pose(geometry.make_pose(rots, centres))  # w2c


def _transform_world(w2c, scale, rot, trans):
  """The same cameras expressed in a world X' = scale * rot @ X + trans."""
  c2w = geometry.invert_pose(w2c)
  return geometry.invert_pose(geometry.make_pose(rot @ c2w[:, :3, :3], scale * c2w[:, :3, 3] @ rot.T + trans))


def _perturb(w2c, rng, sigma=0.05):
  c2w = geometry.invert_pose(w2c)
  rots = geometry.axis_angle_to_matrix(sigma * rng.normal(size=(len(w2c), 3))) @ c2w[:, :3, :3]
  return geometry.invert_pose(geometry.make_pose(rots, c2w[:, :3, 3] + sigma * rng.normal(size=(len(w2c), 3))))


def test_pose_gt_against_itself_and_a_similar_copy_is_perfect():
  rng = np.random.default_rng(2)
  gt = _trajectory(rng)
  for pred in (gt, _transform_world(gt, 0.37, _random_rotation(rng), rng.normal(size=3))):
    m = pose_metrics(pred, gt)
    assert m.ate == pytest.approx(0.0, abs=1e-9)
    assert m.rpe_trans == pytest.approx(0.0, abs=1e-9)
    assert m.rpe_rot_deg == pytest.approx(0.0, abs=1e-5)
    assert (m.num_frames, m.num_pairs) == (12, 11)
  assert m.sim3_scale == pytest.approx(1 / 0.37)


def test_pose_invariant_to_similarity_of_prediction():
  rng = np.random.default_rng(3)
  gt = _trajectory(rng)
  pred = _perturb(gt, rng)
  base = pose_metrics(pred, gt)
  assert base.ate > 1e-3 and base.rpe_trans > 1e-3 and base.rpe_rot_deg > 0.1
  for _ in range(3):
    moved = _transform_world(pred, rng.uniform(0.1, 10.0), _random_rotation(rng), rng.normal(size=3) * 5)
    m = pose_metrics(moved, gt)
    assert m.ate == pytest.approx(base.ate, rel=1e-7)
    assert m.rpe_trans == pytest.approx(base.rpe_trans, rel=1e-7)
    assert m.rpe_rot_deg == pytest.approx(base.rpe_rot_deg, rel=1e-6)


def test_pose_ate_hand_computed():
  # gt centres on a square; pred lifts them alternately by +-1 in z. The best
  # similarity is a pure scale s = 2 / (2 + 1) about the origin, so
  # ATE^2 = 2 (s - 1)^2 + s^2 = 2/9 + 4/9.
  gt_c = np.array([[1.0, 1, 0], [1, -1, 0], [-1, -1, 0], [-1, 1, 0]])
  pred_c = gt_c + np.array([[0, 0, 1.0], [0, 0, -1], [0, 0, 1], [0, 0, -1]])
  eye = np.broadcast_to(np.eye(3), (4, 3, 3))
  m = pose_metrics(geometry.invert_pose(geometry.make_pose(eye, pred_c)),
                   geometry.invert_pose(geometry.make_pose(eye, gt_c)))
  assert m.sim3_scale == pytest.approx(2 / 3)
  assert m.ate == pytest.approx(math.sqrt(6 / 9))


def test_pose_rpe_rotation_hand_computed():
  # Same centres; the predicted camera turns by 90 degrees about z between frames 1 and 2.
  centres = np.array([[0.0, 0, 0], [1, 0, 0], [1, 1, 0]])
  gt = geometry.invert_pose(geometry.make_pose(np.broadcast_to(np.eye(3), (3, 3, 3)), centres))
  rots = geometry.axis_angle_to_matrix(np.array([[0, 0, 0], [0, 0, 0], [0, 0, np.pi / 2]]))
  pred = geometry.invert_pose(geometry.make_pose(rots, centres))
  m = pose_metrics(pred, gt)
  assert m.ate == pytest.approx(0.0, abs=1e-12)
  assert m.rpe_trans == pytest.approx(0.0, abs=1e-12)
  assert m.rpe_rot_deg == pytest.approx(math.sqrt(90.0**2 / 2))


def test_pose_valid_frames_drop_frames_and_pairs():
  rng = np.random.default_rng(4)
  gt = _trajectory(rng, t=8)
  pred = gt.copy()
  pred[-2:] = _perturb(gt[-2:], rng, sigma=1.0)  # Garbage on padded frames.
  valid = np.array([True] * 6 + [False] * 2)
  m = pose_metrics(pred, gt, valid_frames=valid)
  assert m.ate == pytest.approx(0.0, abs=1e-9) and m.rpe_trans == pytest.approx(0.0, abs=1e-9)
  assert (m.num_frames, m.num_pairs) == (6, 5)
  assert pose_metrics(pred, gt).ate > 1e-2


@pytest.mark.parametrize(
    "pred, gt, valid, word",
    [
        (np.zeros((4, 3, 4)), None, None, "pred_w2c"),
        (None, np.broadcast_to(np.eye(4), (3, 4, 4)), None, "gt_w2c"),
        (None, np.full((4, 4, 4), np.nan), None, "gt_w2c"),
        (np.broadcast_to(2 * np.eye(4), (4, 4, 4)), None, None, "pred_w2c"),
        (None, None, np.ones(3, bool), "valid_frames"),
        (None, None, np.array([True, False, False, False]), "valid_frames"),
    ],
)
def test_pose_bad_input_raises(pred, gt, valid, word):
  ident = np.broadcast_to(np.eye(4), (4, 4, 4))
  with pytest.raises(ValueError, match=word):
    pose_metrics(ident if pred is None else pred, ident if gt is None else gt, valid_frames=valid)


# ---------------------------------------------------------------------------
# TAPVid-3D.
# ---------------------------------------------------------------------------

INTR = np.array([100.0, 100.0, 64.0, 48.0])


def test_tapvid3d_hand_computed():
  # fx = fy = 100 and gt depth 100: the radius is exactly delta (in XYZ units).
  gt = np.tile(np.array([0.0, 0.0, 100.0]), (1, 4, 1))
  pred = gt + np.array([[[0.5, 0, 0], [0, 3.0, 0], [20.0, 0, 0], [0, 0, 0]]])
  gt_vis = np.array([[True, True, True, False]])
  pred_vis = np.array([[True, True, False, True]])
  m = tapvid3d_metrics(pred, pred_vis, gt, gt_vis, INTR, scaling="none")
  assert m.pts_within_by_threshold == pytest.approx((1 / 3, 1 / 3, 2 / 3, 2 / 3, 2 / 3))
  assert m.average_pts_within == pytest.approx(8 / 15)
  # thr 1, 2: TP 1, FP 2 (point 1 too far, point 3 gt-occluded); thr >= 4: TP 2, FP 1.
  assert m.jaccard_by_threshold == pytest.approx((0.2, 0.2, 0.5, 0.5, 0.5))
  assert m.average_jaccard == pytest.approx(0.38)
  assert m.occlusion_accuracy == pytest.approx(0.5)
  assert m.thresholds_px == (1.0, 2.0, 4.0, 8.0, 16.0) and m.scale == 1.0


def _tapvid_gt(rng, t=6, n=25):
  xyz = np.concatenate([rng.uniform(-1, 1, (t, n, 2)), rng.uniform(2, 6, (t, n, 1))], axis=-1)
  return xyz, rng.random((t, n)) < 0.7


def test_tapvid3d_gt_against_itself_and_scaled_copy_is_perfect():
  rng = np.random.default_rng(5)
  gt, vis = _tapvid_gt(rng)
  for pred in (gt, 0.25 * gt):
    m = tapvid3d_metrics(pred, vis, gt, vis, INTR)
    assert (m.average_pts_within, m.occlusion_accuracy, m.average_jaccard) == pytest.approx((1.0, 1.0, 1.0))
  assert m.scale == pytest.approx(4.0)


def test_tapvid3d_median_scale_uses_entries_visible_in_both():
  rng = np.random.default_rng(6)
  gt, vis = _tapvid_gt(rng)
  pred = 2.0 * gt
  pred_vis = vis.copy()
  pred_vis[0, 0] = False
  pred[0, 0] = 1e6  # Outlier on an entry the prediction calls occluded: ignored by the scale.
  m = tapvid3d_metrics(pred, pred_vis, gt, vis, INTR)
  assert m.scale == pytest.approx(0.5)
  norms_gt = np.linalg.norm(gt, axis=-1)[vis & pred_vis]
  norms_pred = np.linalg.norm(pred, axis=-1)[vis & pred_vis]
  assert m.scale == pytest.approx(np.median(norms_gt) / np.median(norms_pred))


def test_tapvid3d_radius_grows_with_depth():
  # The same 3D offset is within 1 px at depth 200 but not at depth 50.
  gt = np.array([[[0.0, 0.0, 50.0], [0.0, 0.0, 200.0]]])
  pred = gt + np.array([1.0, 0.0, 0.0])
  vis = np.ones((1, 2), bool)
  m = tapvid3d_metrics(pred, vis, gt, vis, INTR, scaling="none", thresholds_px=(1,))
  assert m.pts_within_by_threshold == (0.5,)


@pytest.mark.parametrize(
    "change, word",
    [
        (dict(pred_xyz=np.zeros((6, 25, 2))), "pred_xyz"),
        (dict(gt_xyz=np.zeros((6, 24, 3))), "gt_xyz"),
        (dict(pred_xyz=np.full((6, 25, 3), np.nan)), "pred_xyz"),
        (dict(gt_visible=np.ones((6, 25))), "gt_visible"),
        (dict(pred_visible=np.ones((25, 6), bool)), "pred_visible"),
        (dict(fx_fy_cx_cy=np.eye(3)), "fx_fy_cx_cy"),
        (dict(fx_fy_cx_cy=np.array([0.0, 1, 1, 1])), "fx_fy_cx_cy"),
        (dict(gt_visible=np.zeros((6, 25), bool)), "gt_visible"),
        (dict(scaling="per_point"), "scaling"),
    ],
)
def test_tapvid3d_bad_input_raises(change, word):
  gt, vis = _tapvid_gt(np.random.default_rng(7))
  kwargs = dict(pred_xyz=gt, pred_visible=vis, gt_xyz=gt, gt_visible=vis, fx_fy_cx_cy=INTR)
  kwargs.update(change)
  with pytest.raises(ValueError, match=word):
    tapvid3d_metrics(**kwargs)


# ---------------------------------------------------------------------------
# NRSfM e3D.
# ---------------------------------------------------------------------------


def test_e3d_hand_computed():
  # Rows of the 3 x 2 gt: x = [1, -1] (std 1), y = z = [0, 0] (std 0) -> s = 1/3.
  s_gt = np.array([[[1.0, 0, 0], [-1.0, 0, 0]]])
  assert norm_scale(s_gt) == pytest.approx(1 / 3)
  s_hat = s_gt + np.array([0.0, 0.1, 0.0])
  assert e3d(s_hat, s_gt) == pytest.approx(0.3)
  s_hat = s_gt + np.array([[[0.3, 0.4, 0.0], [0.0, 0.0, 0.0]]])  # |.| = 0.5 on one of 2 points.
  assert e3d(s_hat, s_gt) == pytest.approx(0.75)


def test_e3d_global_rotation_removes_a_rotation_and_respects_reflection():
  rng = np.random.default_rng(8)
  s_gt = rng.normal(size=(7, 15, 3))
  rot = _random_rotation(rng)
  s_hat = s_gt @ rot.T
  assert e3d(s_hat, s_gt) > 0.5
  assert e3d(s_hat, s_gt, "global_rotation") == pytest.approx(0.0, abs=1e-9)
  np.testing.assert_allclose(global_rotation(s_hat, s_gt), rot.T, atol=1e-9)
  mirrored = s_gt * np.array([1.0, 1.0, -1.0])
  assert e3d(mirrored, s_gt, "global_rotation") > 0.1
  assert e3d(mirrored, s_gt, "global_rotation", allow_reflection=True) == pytest.approx(0.0, abs=1e-9)
  m = nrsfm_metrics(s_hat, s_gt)
  assert m.e3d_aligned == pytest.approx(0.0, abs=1e-9) and m.norm_scale == pytest.approx(norm_scale(s_gt))


@pytest.mark.parametrize(
    "s_hat, s_gt, kwargs, word",
    [
        (np.zeros((2, 3, 3)), np.zeros((2, 4, 3)), {}, "s_gt"),
        (np.zeros((2, 3)), np.zeros((2, 3)), {}, "s_hat"),
        (np.full((2, 3, 3), np.nan), np.ones((2, 3, 3)), {}, "s_hat"),
        (np.ones((2, 3, 3)), np.ones((2, 3, 3)), {}, "s_gt"),  # zero spread
        (np.ones((2, 3, 3)), np.arange(18.0).reshape(2, 3, 3), dict(alignment="per_frame"), "alignment"),
    ],
)
def test_e3d_bad_input_raises(s_hat, s_gt, kwargs, word):
  with pytest.raises(ValueError, match=word):
    e3d(s_hat, s_gt, **kwargs)


E3D_REFERENCE = {  # REFERENCE.md section 4: (no alignment, global orthogonal alignment).
    "drink": (0.0250, 0.0249),
    "pickup": (0.2369, 0.2222),
    "yoga": (0.1625, 0.1483),
    "stretch": (0.1088, 0.1087),
    "dance": (0.2956, 0.3137),
}


@pytest.mark.parametrize("name", sorted(E3D_REFERENCE))
def test_e3d_reproduces_published_figures(name):
  path = mocap_mat.DEFAULT_NRSFM_DIR / f"{name}.mat"
  if not path.is_file():
    pytest.skip(f"CMU-mocap NRSfM data not found: {path}")
  seq = mocap_mat.load_mocap(path)
  ref_none, ref_aligned = E3D_REFERENCE[name]
  m = nrsfm_metrics(seq.Shat, seq.S)
  assert abs(m.e3d - ref_none) < 5e-5, (name, m.e3d)
  assert abs(m.e3d_aligned - ref_aligned) < 5e-5, (name, m.e3d_aligned)
  # The optimal orthogonal matrix is a proper rotation on this data: reflections change nothing.
  assert abs(e3d(seq.Shat, seq.S, "global_rotation", allow_reflection=True) - ref_aligned) < 5e-5
