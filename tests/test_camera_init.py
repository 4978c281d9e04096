"""Initial cameras by factorisation (model/camera_init.py) and the network's choice of start."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from tracks4d import geometry, model
from tracks4d.io import mocap_mat
from tracks4d.model import network, outputs
from tracks4d.model.camera_init import factorization_cameras
from tracks4d.training import evaluate
from tracks4d.training.data import batch_tracks

PRIOR = np.array([0.0, 0.0, -15.0])
# One compilation each instead of op-by-op dispatch (much faster on CPU).
call_jit = nnx.jit(lambda net, *inputs: net(*inputs))
fact_jit = jax.jit(factorization_cameras, static_argnames=("both_mirrors",))


@functools.partial(jax.jit, static_argnums=0)
def depth_and_grads(graphdef, params, *inputs):
  """((mean depth, raw outputs), gradients of the mean depth); one compilation per
  architecture and input shape, shared by the tests below."""
  def depth_mean(p):
    raw = nnx.merge(graphdef, p)(*inputs)
    return model.decode(raw).depth.mean(), raw
  return jax.value_and_grad(depth_mean, has_aux=True)(params)


def orbit_scene(num_frames=20, num_tracks=60, distance=20.0, deg_per_frame=2.0, seed=0):
  """A rigid cloud in [-1, 1]^3 seen by a camera orbiting it: (xy_norm (t, n, 2), gt c2w (t, 4, 4))."""
  rng = np.random.default_rng(seed)
  pts = rng.uniform(-1.0, 1.0, size=(num_tracks, 3))
  ang = np.deg2rad(deg_per_frame) * np.arange(num_frames)
  eye = distance * np.stack([np.sin(ang), 0.3 * np.ones_like(ang), -np.cos(ang)], -1)
  c2w = np.asarray(geometry.look_at(eye, np.zeros(3)))
  pts_t = np.broadcast_to(pts, (num_frames,) + pts.shape)
  cam = np.asarray(geometry.transform_points(geometry.invert_pose(c2w), pts_t))
  return cam[..., :2] / cam[..., 2:], c2w


def relative_rotation_error_deg(rot6d, c2w_gt):
  """Largest angle between predicted and true rotations relative to frame 0."""
  pred = np.asarray(geometry.rot6d_to_matrix(rot6d))
  gt = np.swapaxes(c2w_gt[0, :3, :3], -1, -2) @ c2w_gt[:, :3, :3]
  diff = np.swapaxes(pred, -1, -2) @ gt
  return float(np.rad2deg(np.linalg.norm(np.asarray(geometry.matrix_to_axis_angle(diff)), axis=-1)).max())


def run(xy, valid, frame_mask=None):
  frame_mask = np.ones(xy.shape[:1], bool) if frame_mask is None else frame_mask
  rot6d, centre, err = fact_jit(jnp.asarray(xy[None], jnp.float32), jnp.asarray(valid[None]),
                                jnp.asarray(frame_mask[None]))
  return np.asarray(rot6d[0]), np.asarray(centre[0]), float(err[0])


def test_recovers_an_orbit_and_anchors_frame_zero():
  xy, c2w = orbit_scene()
  rot6d, centre, err = run(xy, np.ones(xy.shape[:2], bool))
  assert relative_rotation_error_deg(rot6d, c2w) < 0.5  # weak perspective at 10x the content's size
  np.testing.assert_allclose(geometry.rot6d_to_matrix(rot6d[0]), np.eye(3), atol=1e-5)
  np.testing.assert_allclose(centre[0], PRIOR, atol=1e-4)
  # The camera turns 38 deg about the content at the prior's distance: the centres move accordingly.
  assert 5.0 < np.linalg.norm(centre[-1] - centre[0]) < 15.0
  assert err < 0.01


def test_missing_entries_and_padding():
  xy, c2w = orbit_scene(seed=1)
  valid = np.random.default_rng(0).uniform(size=xy.shape[:2]) > 0.3
  rot6d, centre, _ = run(xy, valid)
  assert relative_rotation_error_deg(rot6d, c2w) < 1.0
  # Padding (garbage positions, masked) changes nothing.
  t, n = xy.shape[:2]
  xy_pad = np.random.default_rng(1).normal(size=(t + 4, n + 9, 2)) * 50
  xy_pad[:t, :n] = xy
  valid_pad = np.zeros((t + 4, n + 9), bool)
  valid_pad[:t, :n] = valid
  frame_mask = np.arange(t + 4) < t
  rot6d_pad, centre_pad, _ = run(xy_pad, valid_pad, frame_mask)
  np.testing.assert_allclose(geometry.rot6d_to_matrix(rot6d_pad[:t]), geometry.rot6d_to_matrix(rot6d), atol=1e-4)
  np.testing.assert_allclose(centre_pad[:t], centre, atol=1e-3)
  np.testing.assert_allclose(geometry.rot6d_to_matrix(rot6d_pad[t:]), np.broadcast_to(np.eye(3), (4, 3, 3)))
  np.testing.assert_allclose(centre_pad[t:], np.broadcast_to(PRIOR, (4, 3)))


def test_frames_where_nothing_is_visible_take_the_nearest_seen_camera():
  # Every track hidden in frame 0, frames 8-10 and the last three real frames
  # (an object that leaves the view). Those frames had zero rows, a zero rotation
  # and a distance of 1e6 that threw off the scale of the whole clip; the zero
  # rotation gave the shipped run's NaN gradient at step 1,828.
  xy, c2w = orbit_scene(seed=5)
  t, n = xy.shape[:2]
  valid = np.ones((t, n), bool)
  blank = [0, 8, 9, 10, 17, 18, 19]
  valid[blank] = False
  nearest = np.array([1, 1, 2, 3, 4, 5, 6, 7, 7, 7, 11, 11, 12, 13, 14, 15, 16, 16, 16, 16])
  # The padded frame after them stays at the prior.
  xy_pad = np.concatenate([xy, np.zeros((1, n, 2))], 0)
  valid_pad = np.concatenate([valid, np.zeros((1, n), bool)], 0)
  rot6d, centre, _ = run(xy_pad, valid_pad, np.arange(t + 1) < t)
  assert np.isfinite(rot6d).all() and np.isfinite(centre).all()
  np.testing.assert_allclose(geometry.rot6d_to_matrix(rot6d[t]), np.eye(3))
  rot6d, centre = rot6d[:t], centre[:t]
  np.testing.assert_array_equal(rot6d, rot6d[nearest])
  np.testing.assert_array_equal(centre, centre[nearest])
  assert relative_rotation_error_deg(rot6d, c2w[nearest]) < 1.0
  # The scale is that of the fully visible clip: the path between seen frames is as long.
  _, centre_full, _ = run(xy_pad, np.arange(t + 1)[:, None] < np.full((1, n), t), np.arange(t + 1) < t)
  span = lambda c: np.linalg.norm(c[16] - c[1])
  np.testing.assert_allclose(span(centre), span(centre_full[:t]), rtol=0.02)

  # The network's gradients through the chosen (factorisation) start are finite.
  inputs = (jnp.asarray(xy[None], jnp.float32), jnp.asarray(valid[None]), jnp.ones((1, t), bool),
            jnp.ones((1, n), bool))
  net = model.create_model("tiny", seed=0, camera_init="factorization")
  graphdef, params = nnx.split(net)
  _, grads = depth_and_grads(graphdef, params, *inputs)
  assert all(bool(jnp.isfinite(g).all()) for g in jax.tree.leaves(grads))


def test_a_still_camera_stays_still():
  # Without turns the content's depth axis is unobservable: with tiny noise the
  # rotations stay put; with tracker-sized noise they do not (module doc), and the
  # network's choice of start (below) is what rejects them.
  xy, _ = orbit_scene(deg_per_frame=0.0)
  xy = xy + np.random.default_rng(0).normal(scale=1e-5, size=xy.shape)
  rot6d, centre, _ = run(xy, np.ones(xy.shape[:2], bool))
  assert np.isfinite(rot6d).all() and np.isfinite(centre).all()
  aa = np.asarray(geometry.matrix_to_axis_angle(geometry.rot6d_to_matrix(rot6d)))
  angles = np.rad2deg(np.linalg.norm(aa, axis=-1))
  assert angles.max() < 0.1


@pytest.mark.parametrize("camera_init", ["prior", "factorization"])
def test_network_starts_from_the_factorisation_where_it_explains_the_tracks(camera_init):
  # A fresh network's camera head outputs zero corrections, so its candidates are
  # exactly the prior (identity) and the factorisation; on a rigid orbit the
  # factorisation's static points explain the tracks and win.
  xy, c2w = orbit_scene(seed=2)
  t, n = xy.shape[:2]
  net = model.create_model("tiny", seed=0, camera_init=camera_init)
  raw = call_jit(net, jnp.asarray(xy[None], jnp.float32), jnp.ones((1, t, n), bool), jnp.ones((1, t), bool),
                 jnp.ones((1, n), bool))
  rot6d = np.asarray(raw.rot6d[0])
  if camera_init == "factorization":
    assert relative_rotation_error_deg(rot6d, c2w) < 0.5
  else:
    np.testing.assert_allclose(geometry.rot6d_to_matrix(rot6d), np.broadcast_to(np.eye(3), (t, 3, 3)), atol=1e-6)


@pytest.mark.parametrize("uncorrected_starts", [False, True])
def test_uncorrected_starts_keep_a_start_the_head_would_spoil(uncorrected_starts):
  # A head whose correction turns every camera by 30 deg (as a head that never
  # saw such a clip might): with `uncorrected_starts` the factorisation's own
  # cameras score better and are kept; without, the correction is applied.
  xy, c2w = orbit_scene(seed=6)
  t, n = xy.shape[:2]
  net = model.create_model("tiny", seed=0, camera_init="factorization", uncorrected_starts=uncorrected_starts)
  k = net.cfg.num_bases
  turn = geometry.matrix_to_rot6d(np.asarray(geometry.axis_angle_to_matrix(np.array([0.0, np.deg2rad(30.0), 0.0]))))
  net.frame_head.bias[...] = net.frame_head.bias[...].at[4 + k - 1:].add(
      jnp.asarray(turn - network._IDENTITY_6D, jnp.float32))
  inputs = (jnp.asarray(xy[None], jnp.float32), jnp.ones((1, t, n), bool), jnp.ones((1, t), bool),
            jnp.ones((1, n), bool))
  (_, raw), grads = depth_and_grads(*nnx.split(net), *inputs)
  err = relative_rotation_error_deg(np.asarray(raw.rot6d[0]), c2w)
  first = np.asarray(geometry.rot6d_to_matrix(raw.rot6d[0, 0]))
  if uncorrected_starts:
    assert err < 0.5
    np.testing.assert_allclose(first, np.eye(3), atol=1e-5)
    # The head's camera output is not used: no gradient reaches it.
    assert float(jnp.abs(grads["frame_head"]["kernel"][...][:, 4 + k - 1:]).max()) == 0.0
  else:
    np.testing.assert_allclose(first, np.asarray(geometry.axis_angle_to_matrix(np.array([0.0, np.deg2rad(30.0), 0.0]))),
                               atol=1e-5)
  assert all(bool(jnp.isfinite(g).all()) for g in jax.tree.leaves(grads))


def test_both_mirrors_the_picked_one_first():
  xy, c2w = orbit_scene(seed=3)
  args = (jnp.asarray(xy[None], jnp.float32), jnp.ones((1,) + xy.shape[:2], bool), jnp.ones((1, xy.shape[0]), bool))
  rot6d, centre, err = fact_jit(*args)
  both_rot6d, both_centre, both_err = fact_jit(*args, both_mirrors=True)
  assert both_rot6d.shape == (1, 2) + rot6d.shape[1:] and both_centre.shape == (1, 2) + centre.shape[1:]
  np.testing.assert_array_equal(both_rot6d[:, 0], rot6d)
  np.testing.assert_array_equal(both_centre[:, 0], centre)
  assert float(both_err[0, 0]) == float(err[0]) <= float(both_err[0, 1])
  # The other mirror (depth axis flipped) turns the other way: R' = D R D, D = diag(1, 1, -1).
  d = np.diag([1.0, 1.0, -1.0])
  first, other = (np.asarray(geometry.rot6d_to_matrix(both_rot6d[0, i])) for i in (0, 1))
  np.testing.assert_allclose(other, d @ first @ d, atol=1e-5)
  assert relative_rotation_error_deg(both_rot6d[0, 1], c2w) > 10.0


def test_a_broken_factorisation_falls_back_to_the_prior_with_finite_gradients(monkeypatch):
  # Non-finite starts are never chosen, and only the chosen start carries
  # gradients: an unusable candidate cannot turn an update into NaN.
  def broken(xy_norm, valid, frame_mask, centre_prior, both_mirrors):
    b, t = frame_mask.shape
    return jnp.full((b, 2, t, 6), jnp.nan), jnp.full((b, 2, t, 3), jnp.inf), jnp.full((b, 2), jnp.nan)

  xy, _ = orbit_scene(seed=4)
  t, n = xy.shape[:2]
  inputs = (jnp.asarray(xy[None], jnp.float32), jnp.ones((1, t, n), bool), jnp.ones((1, t), bool),
            jnp.ones((1, n), bool))
  monkeypatch.setattr(network, "factorization_cameras", broken)
  net = model.create_model("tiny", seed=0, camera_init="factorization")
  graphdef, params = nnx.split(net)

  def depth_mean(p):
    raw = nnx.merge(graphdef, p)(*inputs)
    return model.decode(raw).depth.mean(), raw

  (_, raw), grads = jax.jit(jax.value_and_grad(depth_mean, has_aux=True))(params)
  # A fresh camera head's correction is zero: the prior start is the identity at the prior centre.
  np.testing.assert_allclose(geometry.rot6d_to_matrix(raw.rot6d[0]), np.broadcast_to(np.eye(3), (t, 3, 3)),
                             atol=1e-6)
  np.testing.assert_allclose(raw.centre[0], np.broadcast_to(PRIOR, (t, 3)), atol=1e-5)
  assert all(bool(jnp.isfinite(g).all()) for g in jax.tree.leaves(grads))


def test_both_mirrors_are_scored_on_a_dancer_in_front_of_a_still_camera():
  # CMU "dance": the camera stands still while the dancer turns and deforms. The
  # factorisation's own weak-perspective error picks the wrong mirror here; the
  # network scores both after triangulation and keeps the right one, so its
  # depth beats constant depth (it was 2.3x worse with the single pick).
  if "dance" not in mocap_mat.list_sequences():
    pytest.skip(f"CMU-mocap data not found: {mocap_mat.DEFAULT_NRSFM_DIR} (set TRACKS4D_NRSFM_DIR)")
  clip = mocap_mat.mocap_to_tracks(mocap_mat.load_mocap("dance"), num_frames=32)
  net = model.create_model("tiny", seed=0, camera_init="factorization")
  batch = jax.tree.map(jnp.asarray, batch_tracks([clip], clip.num_frames, clip.num_tracks))
  depth = np.asarray(model.forward_jit(net, batch).depth[0])
  scores = evaluate.score_clip(evaluate.Reconstruction3D(w2c=np.asarray(clip.gt.w2c), depth=depth), clip)
  const = evaluate.score_clip(evaluate.identity_constant_depth(clip), clip)
  assert scores.abs_rel < 0.8 * const.abs_rel, (scores.abs_rel, const.abs_rel)


def test_occlusion_order_says_whether_hidden_points_lie_behind():
  # One frame, camera at the origin looking along +z: the depth of a point is its z.
  rot6d = jnp.asarray(network._IDENTITY_6D, jnp.float32)[None, None]
  centre = jnp.zeros((1, 1, 3))
  xy = jnp.asarray([[[[0.0, 0.0], [0.1, 0.1], [0.05, 0.0], [0.5, 0.5]]]])  # The last is outside the seen box.
  visible = jnp.asarray([[[True, True, False, False]]])
  real = jnp.ones((1, 1, 4), bool)

  def order(z, vis=visible, rl=real):
    static = jnp.asarray([[[0.0, 0.0, zz] for zz in z]], jnp.float32)
    return float(outputs.occlusion_order(rot6d, centre, static, xy, vis, rl)[0])

  assert order([5.0, 5.0, 10.0, 1.0]) == pytest.approx(1.0)  # Hidden point twice as deep: 10 / 5 - 1.
  assert order([5.0, 5.0, 2.5, 100.0]) == pytest.approx(-0.5)  # Hidden in front: what a mirror image gives.
  # Hidden outside the image's extent (a track that left the view), padded, or none hidden: no evidence.
  assert order([5.0, 5.0, 10.0, 1.0], rl=jnp.asarray([[[True, True, False, True]]])) == 0.0
  assert order([5.0, 5.0, 10.0, 1.0], vis=jnp.ones((1, 1, 4), bool)) == 0.0


def spinning_ball(seed, deg_per_frame, num_frames=24, num_tracks=80, distance=150.0, noise=2e-4):
  """Points on a unit sphere spinning about the vertical axis in front of a still,
  far camera; a point is hidden while it faces away. Returns (xy_norm (t, n, 2),
  visible (t, n), true depth (t, n))."""
  rng = np.random.default_rng(seed)
  p = rng.normal(size=(num_tracks, 3))
  p /= np.linalg.norm(p, axis=1, keepdims=True)
  ang = np.deg2rad(deg_per_frame) * np.arange(num_frames)
  turn = np.asarray(geometry.axis_angle_to_matrix(np.stack([0 * ang, ang, 0 * ang], -1)))  # (t, 3, 3)
  pts = np.einsum("tij,nj->tni", turn, p)
  visible = pts[..., 2] < 0.1  # Facing the camera, which looks along +z from z = -distance.
  cam = pts + np.array([0.0, 0.0, distance])
  return cam[..., :2] / cam[..., 2:] + rng.normal(scale=noise, size=cam[..., :2].shape), visible, cam[..., 2]


@pytest.mark.parametrize("occlusion_weight", [0.0, 1.0])
def test_occlusion_order_picks_the_mirror_of_a_spinning_ball(occlusion_weight):
  # Far away, the two mirrors of the factorisation explain the tracks almost
  # equally well; which points the tracker loses (those turning away) tells them
  # apart. Depth correlates with the truth under the right mirror, and
  # anticorrelates under the wrong one.
  net = model.create_model("tiny", seed=0, camera_init="factorization", occlusion_weight=occlusion_weight)
  corr = {}
  for seed in range(6):
    for deg in (3.0, -3.0):
      xy, vis, z = spinning_ball(seed, deg)
      t, n = vis.shape
      raw = call_jit(net, jnp.asarray(xy[None], jnp.float32), jnp.asarray(vis[None]), jnp.ones((1, t), bool),
                     jnp.ones((1, n), bool))
      depth = np.asarray(model.decode(raw).depth[0])
      corr[seed, deg] = np.mean([np.corrcoef(depth[i][vis[i]], z[i][vis[i]])[0, 1] for i in range(t)])
  if occlusion_weight:
    assert min(corr.values()) > 0.5, corr
  else:  # Without the occlusion evidence some balls get the mirror image (measured: 2 of 12).
    assert min(corr.values()) < -0.5, corr


def test_dynamic_fit_is_zero_for_the_true_model_and_counts_points_behind():
  # Camera at the origin looking along +z in both frames; the point moves by `motion`.
  rot6d = jnp.broadcast_to(jnp.asarray(network._IDENTITY_6D, jnp.float32), (1, 2, 6))
  centre, log_focal = jnp.zeros((1, 2, 3)), jnp.zeros((1, 2))
  static = jnp.asarray([[[0.5, -0.2, 4.0]]])
  motion = jnp.asarray([[[[0.0, 0.0, 0.0]], [[1.0, 0.0, 0.0]]]])
  xy = jnp.asarray([[[[0.125, -0.05]], [[0.375, -0.05]]]])
  valid = jnp.ones((1, 2, 1), bool)
  err, neg = outputs.dynamic_fit(rot6d, centre, log_focal, static, motion, xy, valid)
  assert float(err[0]) < 1e-5 and float(neg[0]) == 0.0
  # Frame 1's point 5 units behind the camera: its negative depth counts (the static part stays in front).
  behind = motion.at[0, 1, 0, 2].set(-9.0)
  assert float(outputs.dynamic_fit(rot6d, centre, log_focal, static, behind, xy, valid)[1][0]) == pytest.approx(5.0)
  # An entry that is not valid counts for nothing.
  assert float(outputs.dynamic_fit(rot6d, centre, log_focal, static, behind, xy, valid.at[0, 1].set(False))[1][0]) == 0.0
