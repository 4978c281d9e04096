"""generate.paired_tracks: one-to-one pairs, the source as target, visibility rules, bad input."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from generate import cameras, multiview_data, paired_tracks
from generate.cameras import Trajectory
from tracks4d import geometry, synthetic
from tracks4d.synthetic.sampling import TrackerNoise

CLEAN = synthetic.SyntheticConfig(num_frames=(10, 12), grid_size=8, query_stride=5,
                                  noise=TrackerNoise(0.0, 0.0, 0.0), families=("static", "rigid", "nonrigid"))


def clip_and_source(index: int = 0):
  clip = synthetic.generate_clip(CLEAN, seed=4, index=index)
  source = Trajectory.create(clip.gt.w2c, clip.intrinsics, tuple(clip.image_hw), name="source")
  return clip, source


def test_source_trajectory_as_target_reproduces_the_source_tracks():
  for index in range(3):
    clip, source = clip_and_source(index)
    pairs = paired_tracks.paired_tracks_from_tracks(clip, source)
    vis = clip.visible
    # Noise-free tracks are the projections of the 3D tracks: the target is the source.
    np.testing.assert_allclose(pairs.target_xy_px[vis], clip.xy_px[vis], atol=2e-3 * clip.image_hw.max())
    np.testing.assert_allclose(pairs.target_depth, clip.gt.depth, rtol=1e-4)
    np.testing.assert_array_equal(pairs.source_visible, vis)
    # Computed on both sides the same way, source and target agree exactly.
    same = paired_tracks.paired_tracks(clip.gt.xyz_world, source, source)
    np.testing.assert_array_equal(same.target_xy_px, same.source_xy_px)
    np.testing.assert_array_equal(same.target_depth, same.source_depth)
    np.testing.assert_array_equal(same.target_visible, same.source_visible)
    # The coarse test mostly agrees with the generator's visibility.
    assert (same.target_visible == vis).mean() > 0.85
    assert pairs.target_xy_px.shape == clip.xy_px.shape and pairs.num_tracks == clip.num_tracks


def test_points_behind_the_camera_or_outside_the_image_are_never_visible():
  rng = np.random.default_rng(0)
  t, n = 5, 400
  K = geometry.intrinsics_from_fov(70.0, (32, 48))
  w2c = np.broadcast_to(np.eye(4, dtype=np.float32), (t, 4, 4))
  traj = Trajectory.create(w2c, K, (32, 48), name="target")
  xyz = rng.uniform([-3, -3, -4], [3, 3, 4], size=(t, n, 3)).astype(np.float32)
  pairs = paired_tracks.paired_tracks(xyz, traj, traj)
  behind = xyz[..., 2] <= 0
  assert behind.any() and not pairs.target_visible[behind].any()
  outside = ~geometry.in_image(pairs.target_xy_px, np.array([32, 48]))
  assert outside.any() and not pairs.target_visible[outside].any()
  assert np.isfinite(pairs.target_xy_px).all()  # Positions stay finite for the conditioner.
  # A camera move that puts points behind the camera (a dolly past them).
  clip, source = clip_and_source(1)
  d = cameras.scene_depth(clip.gt.xyz_world[0], source.w2c[0], source.intrinsics[0], tuple(clip.image_hw))
  target = cameras.camera_move(source, "dolly_in", 0.09 * d, look_at=d)
  pairs = paired_tracks.paired_tracks_from_tracks(clip, target)
  assert (pairs.target_depth <= 0).any()
  assert not pairs.target_visible[pairs.target_depth <= geometry.MIN_DEPTH].any()


def test_a_nearer_track_hides_the_one_behind_it():
  K = geometry.intrinsics_from_fov(60.0, (32, 32))
  traj = Trajectory.create(np.broadcast_to(np.eye(4), (2, 4, 4)), K, (32, 32), name="target")
  # Track 0 far on the axis, track 1 near on the axis, track 2 far off to the side.
  xyz = np.array([[[0.0, 0.0, 5.0], [0.0, 0.0, 2.0], [2.0, 0.0, 5.0]]] * 2, np.float32)
  xyz[1, 1] = [-0.8, 0.0, 2.0]  # Frame 1: the near track moves aside and uncovers track 0.
  xy, depth, vis = paired_tracks.project_tracks(xyz, traj, radius_px=2.0)
  np.testing.assert_array_equal(np.asarray(vis), [[False, True, True], [True, True, True]])


def test_coarse_visibility_agrees_with_the_renderers_exact_visibility():
  cfg = multiview_data.MultiViewConfig(num_frames=8, image_hw=(48, 48), grid_size=8)
  agree = []
  for index in range(3):
    views = multiview_data.make_scene_views(cfg, seed=2, index=index)
    for j in range(views.num_targets):
      pairs = paired_tracks.paired_tracks(views.xyz_world, views.source_trajectory(), views.target_trajectory(j))
      np.testing.assert_allclose(pairs.target_xy_px, views.target_xy_px[j], atol=1e-3)
      agree.append((pairs.target_visible == views.target_visible[j]).mean())
  # Measured: about 0.95 on average over many scenes.
  assert np.mean(agree) > 0.9, agree


def test_paired_tracks_is_a_pytree_and_swaps():
  clip, source = clip_and_source(0)
  target = cameras.camera_move(source, "orbit_left", 1.0, look_at=float(np.median(clip.gt.depth[0])))
  pairs = paired_tracks.paired_tracks(clip.gt.xyz_world, source, target)
  stacked = jax.tree.map(lambda *x: np.stack(x), pairs, pairs)
  assert stacked.target_xy_px.shape == (2,) + pairs.target_xy_px.shape
  back = pairs.swap().swap()
  jax.tree.map(np.testing.assert_array_equal, back, pairs)
  assert pairs.target_xy_px.dtype == np.float32 and pairs.target_visible.dtype == np.bool_
  assert pairs.source_hw.tolist() == list(clip.image_hw) and pairs.target_w2c.shape == (clip.num_frames, 4, 4)


def test_bad_input_names_the_argument():
  clip, source = clip_and_source(0)
  xyz = clip.gt.xyz_world
  t = clip.num_frames
  short = Trajectory(w2c=np.asarray(source.w2c)[:-1], intrinsics=np.asarray(source.intrinsics)[:-1],
                     image_hw=source.image_hw)
  with pytest.raises(ValueError, match=rf"target\.w2c: expected {t} poses"):
    paired_tracks.paired_tracks(xyz, source, short)
  bad = xyz.copy()
  bad[1, 2, 0] = np.nan
  with pytest.raises(ValueError, match="xyz_world: expected finite"):
    paired_tracks.paired_tracks(bad, source, source)
  with pytest.raises(ValueError, match="xyz_world: expected shape"):
    paired_tracks.paired_tracks(xyz[..., :2], source, source)
  sheared = np.asarray(source.w2c).copy()
  sheared[0, 0, 1] += 0.3
  with pytest.raises(ValueError, match=r"target\.w2c: pose of frame 0 is not rigid"):
    paired_tracks.paired_tracks(xyz, source, Trajectory(w2c=sheared, intrinsics=source.intrinsics,
                                                        image_hw=source.image_hw))
  with pytest.raises(ValueError, match=r"target\.image_hw"):
    paired_tracks.paired_tracks(xyz, source, Trajectory(w2c=source.w2c, intrinsics=source.intrinsics,
                                                        image_hw=(0, 0)))
  with pytest.raises(ValueError, match="source_visible: expected a boolean"):
    paired_tracks.paired_tracks(xyz, source, source, source_visible=clip.visible.astype(np.float32))
  with pytest.raises(ValueError, match="radius_px"):
    paired_tracks.project_tracks(xyz, source, radius_px=0.0)
  with pytest.raises(ValueError, match="xyz_world: not given"):
    paired_tracks.paired_tracks_from_tracks(clip.replace(gt=None), source)
