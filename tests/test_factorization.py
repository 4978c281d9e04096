"""The rigid factorisation baseline: exact on a rigid object, refuses incomplete tracks."""

from __future__ import annotations

import numpy as np
import pytest

from tracks4d import geometry
from tracks4d.baselines import rigid_factorization
from tracks4d.io import mocap_mat
from tracks4d.tracks import Tracks


def _rigid_clip(distance: float, t: int = 12, n: int = 30, seed: int = 0) -> tuple[Tracks, np.ndarray]:
  """A rigid point cloud (+-1) seen from a camera orbiting it at `distance`; returns the depth too."""
  rng = np.random.default_rng(seed)
  xyz = rng.uniform(-1.0, 1.0, size=(n, 3))
  angles = np.deg2rad(np.linspace(0.0, 60.0, t))
  rot = geometry.axis_angle_to_matrix(np.stack([0.2 * angles, angles, np.zeros(t)], -1))
  w2c = geometry.make_pose(rot, np.broadcast_to([0.1, -0.2, distance], (t, 3)))
  K = geometry.make_intrinsics(500.0, 500.0, 320.0, 240.0)
  xy, depth = geometry.project(geometry.transform_points(w2c, np.broadcast_to(xyz, (t, n, 3))), K)
  return Tracks.create(xy, np.ones((t, n), bool), image_hw=(480, 640), intrinsics=K), depth


def test_recovers_the_depth_of_a_far_rigid_object():
  clip, depth = _rigid_clip(distance=40.0)
  rec = rigid_factorization(clip)
  scale = np.median(depth) / np.median(rec.depth)
  assert np.abs(rec.depth * scale - depth).max() / depth.min() < 2e-3
  assert rec.reproj_px < 0.3  # Weak perspective at 40 units: a tenth of a pixel off.
  # The recovered shape and cameras reproduce the tracks.
  xy, _ = geometry.project(geometry.transform_points(rec.w2c, np.broadcast_to(rec.xyz_world, (12, 30, 3))),
                           clip.intrinsics)
  np.testing.assert_allclose(xy, clip.xy_px, atol=0.5)


def test_picks_the_mirror_that_perspective_explains():
  """Closer up, the orthographic mirror ambiguity is broken by perspective: the
  relative depth order of the points is the true one (weak perspective only
  approximates, so the tolerance is looser)."""
  clip, depth = _rigid_clip(distance=5.0, seed=1)
  rec = rigid_factorization(clip)
  rel_true = depth - depth.mean(1, keepdims=True)
  rel_pred = rec.depth * np.median(depth) / np.median(rec.depth)
  rel_pred = rel_pred - rel_pred.mean(1, keepdims=True)
  assert np.corrcoef(rel_true.ravel(), rel_pred.ravel())[0, 1] > 0.95


def test_refuses_hidden_entries_and_tiny_clips():
  clip, _ = _rigid_clip(distance=10.0)
  visible = np.ones((12, 30), bool)
  visible[3, 7] = False
  hidden = Tracks.create(clip.xy_px, visible, image_hw=(480, 640), intrinsics=clip.intrinsics)
  with pytest.raises(ValueError, match="`visible` must be true everywhere.*1 of 360"):
    rigid_factorization(hidden)
  tiny = Tracks.create(clip.xy_px[:2], np.ones((2, 30), bool), image_hw=(480, 640), intrinsics=clip.intrinsics[:2])
  with pytest.raises(ValueError, match="num_frames >= 3"):
    rigid_factorization(tiny)


def test_mocap_depth_beats_constant_depth():
  if not mocap_mat.list_sequences():
    pytest.skip(f"mocap data not found: {mocap_mat.DEFAULT_NRSFM_DIR} (set TRACKS4D_NRSFM_DIR)")
  clip = mocap_mat.mocap_to_tracks(mocap_mat.load_mocap("pickup"), num_frames=32)
  rec = rigid_factorization(clip)
  gt = clip.gt.depth
  rel = lambda d: np.mean(np.abs(d * np.median(gt, 1, keepdims=True) / np.median(d, 1, keepdims=True) - gt) / gt)
  assert rel(rec.depth) < 0.5 * rel(np.ones_like(gt))
