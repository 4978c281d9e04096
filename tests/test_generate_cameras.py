"""generate.cameras: the six moves do what they say, static views, user trajectories, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from generate import cameras, preview
from generate.cameras import Trajectory
from tracks4d import geometry

T = 9
HW = (48, 64)


def source_trajectory(t: int = T, moving: bool = False) -> Trajectory:
  """Cameras around the origin looking at (0, 0, 0) from about 4 units."""
  angle = np.linspace(0.0, 0.3, t) if moving else np.zeros(t)
  eye = np.stack([4 * np.sin(angle), -1.0 + 0 * angle, -4 * np.cos(angle)], -1)
  w2c = geometry.invert_pose(geometry.look_at(eye, np.zeros((t, 3))))
  K = geometry.intrinsics_from_fov(60.0, HW)
  return Trajectory.create(w2c, K, HW, name="source")


def in_first_camera(source: Trajectory, target: Trajectory) -> np.ndarray:
  """(t, 3) target camera centres in the first source camera's frame."""
  return geometry.transform_points(np.asarray(source.w2c, np.float64)[0], np.asarray(target.centers, np.float64))


def test_orbits_move_the_centre_the_way_they_say_and_keep_looking_at_the_point():
  src = source_trajectory()
  d = 4.0
  p = np.array([0.0, 0.0, d])
  expected = {"orbit_left": (0, -1), "orbit_right": (0, 1), "orbit_up": (1, -1), "orbit_down": (1, 1)}
  for move, (axis, sign) in expected.items():
    tgt = cameras.camera_move(src, move, 2.0, look_at=d)
    c = in_first_camera(src, tgt)
    np.testing.assert_allclose(c[0], 0.0, atol=1e-5)  # Frame 0 is the anchor view.
    steps = sign * np.diff(c[:, axis])
    assert (steps > 0).all(), (move, c[:, axis])  # Left = -x, up = -y (OpenCV y is down).
    other = 1 - axis
    np.testing.assert_allclose(c[:, other], 0.0, atol=1e-5)  # Pure left/right or up/down.
    np.testing.assert_allclose(np.linalg.norm(c - p, axis=-1), d, rtol=1e-5)  # On a circle about p.
    # The optical axis still passes through the look-at point (it projects to the principal point).
    xy, depth = geometry.project(geometry.transform_points(tgt.w2c, np.broadcast_to(
        geometry.transform_points(geometry.invert_pose(np.asarray(src.w2c[0])), p[None]), (T, 1, 3))), tgt.intrinsics)
    np.testing.assert_allclose(xy[:, 0], np.broadcast_to(np.asarray(src.intrinsics)[0, :2, 2], (T, 2)), atol=1e-3)
    np.testing.assert_allclose(depth[:, 0], d, rtol=1e-5)


def test_per_frame_angles_and_distances_accumulate():
  src = source_trajectory()
  tgt = cameras.camera_move(src, "orbit_left", 1.5, look_at=3.0)
  rel = np.asarray(tgt.w2c, np.float64)[:, :3, :3] @ np.asarray(src.w2c, np.float64)[0, :3, :3].T
  angles = np.rad2deg(np.linalg.norm(geometry.matrix_to_axis_angle(rel), axis=-1))
  np.testing.assert_allclose(angles, 1.5 * np.arange(T), atol=1e-3)
  for move, sign in (("dolly_in", -1.0), ("dolly_out", 1.0)):
    tgt = cameras.camera_move(src, move, 0.2, look_at=3.0)
    dist = np.linalg.norm(in_first_camera(src, tgt) - [0, 0, 3.0], axis=-1)
    np.testing.assert_allclose(dist, 3.0 + sign * 0.2 * np.arange(T), rtol=1e-5)  # In: nearer each frame.
    # A dolly only translates: the orientation is the anchor's.
    np.testing.assert_allclose(np.asarray(tgt.w2c)[:, :3, :3], np.broadcast_to(np.asarray(src.w2c)[0, :3, :3],
                                                                               (T, 3, 3)), atol=1e-6)


def test_dolly_zoom_keeps_the_look_at_plane_size():
  src = source_trajectory()
  tgt = cameras.camera_move(src, "dolly_in", 0.2, look_at=3.0, dolly_zoom=True)
  c2w0 = geometry.invert_pose(np.asarray(src.w2c, np.float64)[0])
  edge = geometry.transform_points(c2w0, np.array([[0.5, 0.3, 3.0]]))  # A point on the look-at plane.
  xy, _ = geometry.project(geometry.transform_points(tgt.w2c, np.broadcast_to(edge, (T, 1, 3))), tgt.intrinsics)
  np.testing.assert_allclose(xy[:, 0], np.broadcast_to(xy[0, 0], (T, 2)), atol=1e-3)
  assert np.asarray(tgt.intrinsics)[-1, 0, 0] < np.asarray(src.intrinsics)[0, 0, 0]


def test_follow_source_adds_the_move_to_each_source_camera():
  src = source_trajectory(moving=True)
  tgt = cameras.camera_move(src, "orbit_up", 1.0, look_at=4.0, follow_source=True)
  fixed = cameras.camera_move(source_trajectory(), "orbit_up", 1.0, look_at=4.0)
  # The relative pose target <- source is the same as for a static source.
  rel = np.asarray(tgt.w2c, np.float64) @ geometry.invert_pose(np.asarray(src.w2c, np.float64))
  rel_fixed = np.asarray(fixed.w2c, np.float64) @ geometry.invert_pose(np.asarray(source_trajectory().w2c, np.float64))
  np.testing.assert_allclose(rel, rel_fixed, atol=1e-5)


def test_static_view_and_world_look_at_point():
  src = source_trajectory(moving=True)
  st = cameras.static_view(src, "orbit_right", 20.0, look_at=4.0)
  np.testing.assert_allclose(np.asarray(st.w2c), np.broadcast_to(np.asarray(st.w2c)[0], (T, 4, 4)), atol=1e-6)
  one = cameras.camera_move(source_trajectory(t=2), "orbit_right", 20.0, look_at=4.0)
  np.testing.assert_allclose(np.asarray(st.w2c)[0], np.asarray(one.w2c)[1], atol=1e-5)
  pose = np.asarray(src.w2c)[3]
  np.testing.assert_allclose(np.asarray(cameras.static_view(src, w2c=pose).w2c), np.broadcast_to(pose, (T, 4, 4)))
  # A world look-at point on the optical axis gives the same orbit as its depth.
  p_world = geometry.transform_points(geometry.invert_pose(np.asarray(src.w2c, np.float64)[0]), np.array([[0, 0, 4.0]]))
  a = cameras.camera_move(src, "orbit_left", 2.0, look_at=4.0)
  b = cameras.camera_move(src, "orbit_left", 2.0, look_at=p_world[0])
  np.testing.assert_allclose(np.asarray(a.w2c), np.asarray(b.w2c), atol=1e-5)


def test_scene_depth_is_the_median_central_depth():
  src = source_trajectory()
  rng = np.random.default_rng(0)
  cam_pts = np.concatenate([rng.uniform([-0.3, -0.3, 2.0], [0.3, 0.3, 6.0], size=(101, 3)),
                            [[0, 0, -3.0]]])  # One point behind the camera, ignored.
  world = geometry.transform_points(geometry.invert_pose(np.asarray(src.w2c, np.float64)[0]), cam_pts)
  d = cameras.scene_depth(world, src.w2c[0], src.intrinsics[0], HW)
  assert d == pytest.approx(np.median(cam_pts[:101, 2]), rel=1e-5)
  with pytest.raises(ValueError, match="xyz_world"):
    cameras.scene_depth(world[-1:], src.w2c[0], src.intrinsics[0], HW)


def test_bad_input_names_the_argument():
  src = source_trajectory()
  w2c, K = np.asarray(src.w2c), np.asarray(src.intrinsics)
  with pytest.raises(ValueError, match=r"target\.w2c: expected 9 poses"):
    Trajectory.create(w2c[:5], K[0], HW, num_frames=T, name="target")
  bad = w2c.copy()
  bad[2, 0, 1] = np.nan
  with pytest.raises(ValueError, match=r"target\.w2c: expected finite"):
    Trajectory.create(bad, K[0], HW, name="target")
  scaled = w2c.copy()
  scaled[4, :3, :3] *= 1.5
  with pytest.raises(ValueError, match=r"target\.w2c: pose of frame 4 is not rigid"):
    Trajectory.create(scaled, K[0], HW, name="target")
  mirrored = w2c.copy()
  mirrored[1, :3, 0] *= -1
  with pytest.raises(ValueError, match=r"target\.w2c: pose of frame 1 is a reflection"):
    Trajectory.create(mirrored, K[0], HW, name="target")
  with pytest.raises(ValueError, match=r"target\.image_hw: height and width must be positive"):
    Trajectory.create(w2c, K[0], (0, 64), name="target")
  with pytest.raises(ValueError, match=r"target\.intrinsics"):
    Trajectory.create(w2c, K[:3], HW, name="target")
  with pytest.raises(ValueError, match="look_at: the look-at point is behind the camera"):
    cameras.camera_move(src, "orbit_left", 1.0, look_at=-2.0)
  behind = geometry.transform_points(geometry.invert_pose(w2c[0].astype(np.float64)), np.array([[0.0, 0.0, -1.0]]))
  with pytest.raises(ValueError, match="look_at: the look-at point is behind the camera"):
    cameras.camera_move(src, "orbit_left", 1.0, look_at=behind[0])
  with pytest.raises(ValueError, match="amount: the dolly reaches the look-at point"):
    cameras.camera_move(src, "dolly_in", 1.0, look_at=3.0)
  with pytest.raises(ValueError, match="amount"):
    cameras.camera_move(src, "orbit_left", float("nan"), look_at=3.0)
  with pytest.raises(ValueError, match="move: expected one of"):
    cameras.camera_move(src, "spin", 1.0, look_at=3.0)
  with pytest.raises(ValueError, match="w2c: expected one world-to-camera pose"):
    cameras.static_view(src, w2c=w2c)


def test_preview_png(tmp_path):
  src = source_trajectory(moving=True)
  trajs = {"source": src, **{m: cameras.camera_move(src, m, 2.0 if m.startswith("orbit") else 0.2, look_at=4.0)
                             for m in cameras.MOVES}}
  pts = np.random.default_rng(0).uniform(-1, 1, size=(50, 3))
  img = preview.preview_trajectories(tmp_path / "paths.png", trajs, pts, look_at_world=np.zeros(3), size_px=200)
  assert img.shape == (200, 400, 3) and img.dtype == np.uint8
  assert (tmp_path / "paths.png").stat().st_size > 1000
  assert (img < 250).any(axis=-1).mean() > 0.01  # Something was drawn.
