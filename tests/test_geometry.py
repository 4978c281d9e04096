"""Pins down the coordinate conventions of tracks4d.geometry (axis order is the classic bug)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tracks4d import geometry as g


def random_rotations(rng, n):
  return g.axis_angle_to_matrix(rng.normal(size=(n, 3)))


def test_pixel_order_is_x_then_y():
  # A point right of the optical axis lands at larger x (column); below it at larger y (row).
  K = g.make_intrinsics(100.0, 100.0, 320.0, 240.0)
  xy, depth = g.project(np.array([[1.0, 0.0, 10.0], [0.0, 1.0, 10.0]]), K)
  np.testing.assert_allclose(xy, [[330.0, 240.0], [320.0, 250.0]])
  np.testing.assert_allclose(depth, [10.0, 10.0])


def test_image_bounds_use_pixel_centres():
  hw = np.array([4, 6])  # 4 rows, 6 columns.
  xy = np.array([[-0.5, -0.5], [5.49, 3.49], [5.5, 0.0], [0.0, 3.5], [-0.51, 0.0]])
  np.testing.assert_array_equal(g.in_image(xy, hw), [True, True, False, False, False])


def test_intrinsics_from_fov_centres_principal_point():
  K = g.intrinsics_from_fov(90.0, (480, 640))
  np.testing.assert_allclose(K[0, 0], 320.0, rtol=1e-6)
  np.testing.assert_allclose(K[:2, 2], [319.5, 239.5])


def test_project_unproject_round_trip():
  rng = np.random.default_rng(0)
  K = g.make_intrinsics(500.0, 480.0, 300.0, 200.0)
  xyz = rng.uniform([-2, -2, 1], [2, 2, 9], size=(50, 3))
  xy, depth = g.project(xyz, K)
  np.testing.assert_allclose(g.unproject(xy, depth, K), xyz, rtol=1e-10)
  np.testing.assert_allclose(g.pixels_to_normalized(xy, K), xyz[:, :2] / xyz[:, 2:], rtol=1e-10)


def test_look_at_uses_opencv_axes():
  # Camera at z = -5 looking at the origin with y-down world: identity rotation.
  c2w = g.look_at(np.array([0.0, 0.0, -5.0]), np.zeros(3))
  np.testing.assert_allclose(c2w[:3, :3], np.eye(3), atol=1e-7)
  np.testing.assert_allclose(c2w[:3, 3], [0, 0, -5])
  # The target projects to the image centre, in front of the camera.
  K = g.make_intrinsics(100.0, 100.0, 50.0, 40.0)
  xy, depth = g.project(g.transform_points(g.invert_pose(c2w), np.zeros((1, 3))), K)
  np.testing.assert_allclose(xy, [[50.0, 40.0]], atol=1e-6)
  assert depth[0] > 0
  # Something above the target (smaller world y, since +y is down) appears higher (smaller row).
  xy_up, _ = g.project(g.transform_points(g.invert_pose(c2w), np.array([[0.0, -1.0, 0.0]])), K)
  assert xy_up[0, 1] < 40.0


def test_look_at_errors():
  with pytest.raises(ValueError, match="coincide"):
    g.look_at(np.zeros(3), np.zeros(3))
  with pytest.raises(ValueError, match="parallel"):
    g.look_at(np.zeros(3), np.array([0.0, -1.0, 0.0]))


def test_pose_inverse_and_centres():
  rng = np.random.default_rng(1)
  w2c = g.make_pose(random_rotations(rng, 5), rng.normal(size=(5, 3)))
  np.testing.assert_allclose(w2c @ g.invert_pose(w2c), np.broadcast_to(np.eye(4), (5, 4, 4)), atol=1e-12)
  centres = g.camera_centers(w2c)
  # The camera centre maps to the camera-frame origin.
  np.testing.assert_allclose(g.transform_points(w2c, centres[:, None])[:, 0], 0.0, atol=1e-12)
  np.testing.assert_allclose(g.invert_pose(w2c)[:, :3, 3], centres, atol=1e-12)


def test_rot6d_is_first_two_columns():
  rng = np.random.default_rng(2)
  rot = random_rotations(rng, 10)
  r6 = g.matrix_to_rot6d(rot)
  np.testing.assert_allclose(r6[:, :3], rot[:, :, 0])
  np.testing.assert_allclose(r6[:, 3:], rot[:, :, 1])
  np.testing.assert_allclose(g.rot6d_to_matrix(r6), rot, atol=1e-12)
  # Unnormalised inputs give proper rotations.
  out = g.rot6d_to_matrix(rng.normal(size=(10, 6)))
  np.testing.assert_allclose(out @ np.swapaxes(out, 1, 2), np.broadcast_to(np.eye(3), (10, 3, 3)), atol=1e-12)
  np.testing.assert_allclose(np.linalg.det(out), 1.0, atol=1e-12)


@pytest.mark.parametrize("angle", [0.0, 1e-7, 0.3, 2.0, np.pi - 1e-5, np.pi])
def test_axis_angle_round_trip(angle):
  rng = np.random.default_rng(3)
  axis = rng.normal(size=(8, 3))
  axis /= np.linalg.norm(axis, axis=-1, keepdims=True)
  rot = g.axis_angle_to_matrix(axis * angle)
  back = g.matrix_to_axis_angle(rot)
  np.testing.assert_allclose(g.axis_angle_to_matrix(back), rot, atol=1e-7)
  np.testing.assert_allclose(np.linalg.norm(back, axis=-1), angle, atol=1e-6)


def test_axis_angle_rotates_counter_clockwise_about_axis():
  rot = g.axis_angle_to_matrix(np.array([0.0, 0.0, np.pi / 2]))
  np.testing.assert_allclose(rot @ np.array([1.0, 0.0, 0.0]), [0.0, 1.0, 0.0], atol=1e-12)


def test_jax_and_numpy_agree_and_gradients_are_finite():
  rng = np.random.default_rng(4)
  aa = rng.normal(size=(6, 3))
  np.testing.assert_allclose(np.asarray(g.axis_angle_to_matrix(jnp.asarray(aa))), g.axis_angle_to_matrix(aa),
                             atol=1e-6)
  grad = jax.grad(lambda v: g.axis_angle_to_matrix(v).sum())(jnp.zeros(3))
  assert np.all(np.isfinite(grad))
  grad6 = jax.grad(lambda v: g.rot6d_to_matrix(v).sum())(jnp.asarray(rng.normal(size=6), jnp.float32))
  assert np.all(np.isfinite(grad6))
  # A zero (or zero-column) 6D input, e.g. a camera start from a frame with no
  # observation, has a zero gradient, not NaN (the shipped run's step-1,828 NaN).
  for r6 in ([0.0] * 6, [1.0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 1.0, 0]):
    grad0 = jax.grad(lambda v: g.rot6d_to_matrix(v).sum())(jnp.asarray(r6, jnp.float32))
    assert np.all(np.isfinite(grad0)), r6
  out = jax.jit(g.project)(jnp.ones((3, 3)), jnp.eye(3))
  assert isinstance(out[0], jax.Array)


def test_umeyama_recovers_similarity():
  rng = np.random.default_rng(5)
  src = rng.normal(size=(30, 3))
  rot = random_rotations(rng, 1)[0]
  dst = 2.5 * src @ rot.T + np.array([1.0, -2.0, 3.0])
  s, r, t = g.umeyama(src, dst)
  np.testing.assert_allclose(s, 2.5, rtol=1e-10)
  np.testing.assert_allclose(r, rot, atol=1e-10)
  np.testing.assert_allclose(t, [1.0, -2.0, 3.0], atol=1e-10)
  s1, _, _ = g.umeyama(src, dst, with_scale=False)
  assert s1 == 1.0
  with pytest.raises(ValueError, match="src and dst"):
    g.umeyama(src, dst[:5])
