"""Closed-form static points from cameras (model/triangulation.py)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tracks4d import geometry, synthetic
from tracks4d import tracks as tracks_lib
from tracks4d.model.triangulation import triangulate_static
from tracks4d.synthetic.sampling import TrackerNoise

CLEAN = synthetic.SyntheticConfig(num_frames=(10, 10), grid_size=6, query_stride=5,
                                  noise=TrackerNoise(noise_px=0.0, outlier_frac=0.0, drop_frac=0.0))


def _cameras(w2c):
  """(rot6d, centre) of world-to-camera poses (t, 4, 4), batched (1, t, ...)."""
  c2w = np.linalg.inv(np.asarray(w2c, np.float64))
  rot6d = np.concatenate([c2w[:, :3, 0], c2w[:, :3, 1]], -1)
  return jnp.asarray(rot6d[None], jnp.float32), jnp.asarray(c2w[None, :, :3, 3], jnp.float32)


def test_recovers_the_points_of_a_static_scene_with_true_cameras():
  clip = synthetic.generate_clip(CLEAN, seed=3, index=0, family="static", camera="orbit")
  rot6d, centre = _cameras(clip.gt.w2c)
  xy = geometry.pixels_to_normalized(jnp.asarray(clip.xy_px), jnp.asarray(clip.intrinsics))[None]
  valid = jnp.asarray(clip.visible)[None]
  prior = jnp.zeros((1, clip.num_tracks, 3))
  pts = np.asarray(triangulate_static(rot6d, centre, jnp.zeros((1, clip.num_frames)), xy, valid, prior, 1e-7))[0]
  gt = np.asarray(clip.gt.xyz_world)[0]  # static: the same point in every frame
  seen = np.asarray(clip.visible).sum(0) >= 2
  err = np.linalg.norm(pts - gt, axis=-1)[seen] / np.median(np.asarray(clip.gt.depth)[np.asarray(clip.visible)])
  assert seen.sum() > 20
  assert np.median(err) < 1e-3, np.median(err)


def test_no_parallax_keeps_the_prior_depth_along_the_ray_and_no_entry_keeps_the_prior():
  # A panning camera: every frame at the same centre, so depth is unobservable.
  t, n = 6, 4
  rng = np.random.default_rng(0)
  angles = np.linspace(0.0, 0.2, t)
  rot = np.stack([geometry.axis_angle_to_matrix(np.array([0.0, a, 0.0])) for a in angles])  # c2w rotations
  centre = np.zeros((t, 3))
  pts = rng.uniform([-1, -1, 4], [1, 1, 6], (n, 3))
  cam = np.einsum("tji,nj->tni", rot, pts)
  xy = cam[..., :2] / cam[..., 2:]
  valid = np.ones((t, n), bool)
  valid[:, 3] = False
  prior = pts * 0.5 + np.array([0.3, -0.2, 0.0])
  rot6d = np.concatenate([rot[:, :, 0], rot[:, :, 1]], -1)
  out = np.asarray(triangulate_static(*(jnp.asarray(a[None], jnp.float32) for a in (rot6d, centre, np.zeros(t), xy)),
                                      jnp.asarray(valid[None]), jnp.asarray(prior[None], jnp.float32), 1e-5))[0]
  np.testing.assert_allclose(out[3], prior[3], atol=1e-6)
  for j in range(3):  # On the observed ray, at the point nearest to the prior.
    ray = pts[j] / np.linalg.norm(pts[j])
    np.testing.assert_allclose(out[j], ray * (ray @ prior[j]), rtol=2e-3, atol=2e-3)


def test_gradients_are_finite_when_all_cameras_coincide():
  t, n = 5, 7
  rng = np.random.default_rng(1)
  xy = jnp.asarray(rng.normal(0, 0.3, (1, t, n, 2)), jnp.float32)
  valid = jnp.ones((1, t, n), bool)
  prior = jnp.asarray(rng.normal(0, 1, (1, n, 3)) + [0, 0, 5], jnp.float32)
  rot6d = jnp.tile(jnp.asarray([1.0, 0, 0, 0, 1, 0]), (1, t, 1))

  def f(centre):
    return triangulate_static(rot6d, centre, jnp.zeros((1, t)), xy, valid, prior, 1e-5).sum()

  g = jax.grad(f)(jnp.zeros((1, t, 3)))
  assert np.isfinite(np.asarray(g)).all()


def test_per_track_ridge_keeps_the_prior_only_where_it_is_large():
  """A (b, n) ridge (what `triangulation_gamma_ref` builds from gamma): tracks with a
  large ridge keep the prior, the others are triangulated as with a scalar ridge."""
  clip = synthetic.generate_clip(CLEAN, seed=3, index=0, family="static", camera="orbit")
  rot6d, centre = _cameras(clip.gt.w2c)
  xy = geometry.pixels_to_normalized(jnp.asarray(clip.xy_px), jnp.asarray(clip.intrinsics))[None]
  valid = jnp.asarray(clip.visible)[None]
  prior = jnp.asarray(np.asarray(clip.gt.xyz_world)[0][None] + 0.5, jnp.float32)
  large = np.arange(clip.num_tracks) % 2 == 0
  ridge = jnp.asarray(np.where(large, 1e4, 1e-7)[None], jnp.float32)
  args = (rot6d, centre, jnp.zeros((1, clip.num_frames)), xy, valid, prior)
  per_track = np.asarray(triangulate_static(*args, ridge))[0]
  scalar = np.asarray(triangulate_static(*args, 1e-7))[0]
  np.testing.assert_allclose(per_track[large], np.asarray(prior)[0][large], rtol=0, atol=1e-3)
  np.testing.assert_allclose(per_track[~large], scalar[~large], rtol=1e-4, atol=1e-4)


def test_gamma_ref_option_builds_and_validates():
  from tracks4d import model

  with pytest.raises(ValueError, match="triangulation_gamma_ref"):
    model.model_config("tiny", triangulation_gamma_ref=-1.0)
  net = model.create_model("tiny", seed=0, triangulation_gamma_ref=0.01)
  batch = tracks_lib.batch_tracks([synthetic.generate_clip(CLEAN, seed=3, index=0)])
  out = model.forward_jit(net, jax.tree.map(jnp.asarray, batch))
  assert np.isfinite(np.asarray(out.raw.bases)).all()


def _two_bodies(t=8, n1=12, n2=6, seed=0):
  """Cameras that orbit body 1 (static points at depth ~6) and the tracks of a
  second body that moves on its own (nearer, ~4): (rot6d, centre, xy, valid, pts1)."""
  rng = np.random.default_rng(seed)
  angles = np.linspace(-0.6, 0.6, t)
  rot = np.stack([geometry.axis_angle_to_matrix(np.array([0.0, a, 0.0])) for a in angles])  # c2w
  centre = np.einsum("tij,j->ti", rot, np.array([0.0, 0.0, -6.0]))  # looking at the origin from 6 units
  pts1 = rng.uniform(-1.0, 1.0, (n1, 3))
  pts2 = rng.uniform(-0.5, 0.5, (n2, 3)) + np.array([0.0, 0.0, -2.0])
  pts2 = pts2[None] + np.linspace(-1.5, 1.5, t)[:, None, None] * np.array([1.0, 0.6, 0.0])  # (t, n2, 3)
  world = np.concatenate([np.broadcast_to(pts1, (t, n1, 3)), pts2], 1)
  cam = np.einsum("tji,tnj->tni", rot, world - centre[:, None])
  xy = cam[..., :2] / cam[..., 2:]
  rot6d = np.concatenate([rot[:, :, 0], rot[:, :, 1]], -1)
  f32 = lambda a: jnp.asarray(a[None], jnp.float32)
  return f32(rot6d), f32(centre), f32(xy), jnp.ones((1, t, n1 + n2), bool), pts1


def test_fallback_keeps_the_tracks_that_fit_and_puts_the_others_at_the_typical_depth():
  from tracks4d.model.outputs import static_projection
  from tracks4d.model.triangulation import fallback_static

  rot6d, centre, xy, valid, pts1 = _two_bodies()
  n1, t = len(pts1), xy.shape[1]
  log_focal = jnp.zeros((1, t))
  plain = triangulate_static(rot6d, centre, log_focal, xy, valid, jnp.zeros((1, xy.shape[2], 3)), 1e-2)
  out = fallback_static(rot6d, centre, log_focal, xy, valid, plain, jnp.zeros_like(plain), 1e-2, 1e-2)
  _, depth_true = static_projection(rot6d, centre, log_focal, jnp.asarray(pts1[None], jnp.float32))
  _, depth_plain = static_projection(rot6d, centre, log_focal, plain)
  _, depth = static_projection(rot6d, centre, log_focal, out)
  for d in (depth_plain, depth):  # Body 1 fits: triangulated, up to the ridge's pull.
    assert np.abs(np.asarray(d)[0, :, :n1] / np.asarray(depth_true)[0] - 1.0).max() < 0.02
  typical = float(np.exp(np.log(np.asarray(depth)[0, :, :n1]).mean()))
  moved = np.asarray(depth)[0, :, n1:]
  assert abs(typical - 6.0) < 0.3, typical
  # The second body near that depth (a static point, off the rays that diverge as it moves), far from it before.
  before = np.abs(np.asarray(depth_plain)[0, :, n1:] / typical - 1.0)
  after = np.abs(moved / typical - 1.0)
  assert before.min() > 0.3 and after.mean() < 0.55 * before.mean(), (before, after)


def test_relative_fallback_scale_spares_a_clip_whose_tracks_all_fit_roughly():
  from tracks4d.model.outputs import static_projection
  from tracks4d.model.triangulation import fallback_static

  rot6d, centre, xy, valid, pts1 = _two_bodies()
  n1, t = len(pts1), xy.shape[1]
  log_focal = jnp.zeros((1, t))
  depth_of = lambda pts: np.asarray(static_projection(rot6d, centre, log_focal, pts)[1])[0]
  # Two bodies: body 1 fits, so the clip's scale stays at the floor and body 2 is still pulled.
  plain = triangulate_static(rot6d, centre, log_focal, xy, valid, jnp.zeros((1, xy.shape[2], 3)), 1e-2)
  rel = fallback_static(rot6d, centre, log_focal, xy, valid, plain, jnp.zeros_like(plain), 1e-2, 1e-2, relative=2.0)
  typical = float(np.exp(np.log(depth_of(rel)[:, :n1]).mean()))
  before = np.abs(depth_of(plain)[:, n1:] / typical - 1.0)
  after = np.abs(depth_of(rel)[:, n1:] / typical - 1.0)
  assert after.mean() < 0.55 * before.mean(), (before, after)
  # Body 1 alone, every track noisy (rms 0.02 > the floor 0.005): the absolute scale pulls them all
  # off their points, the clip-relative one keeps them.
  noisy = xy[:, :, :n1] + 0.02 * jax.random.normal(jax.random.key(0), xy[:, :, :n1].shape)
  v1 = valid[:, :, :n1]
  plain1 = triangulate_static(rot6d, centre, log_focal, noisy, v1, jnp.zeros((1, n1, 3)), 1e-2)
  prior = jnp.zeros_like(plain1)
  moved = {}
  for relative in (0.0, 2.0):
    out = fallback_static(rot6d, centre, log_focal, noisy, v1, plain1, prior, 1e-2, 5e-3, relative=relative)
    moved[relative] = float(np.abs(depth_of(out) / depth_of(plain1) - 1.0).mean())
  assert moved[2.0] < 0.3 * moved[0.0], moved
  from tracks4d import model
  with pytest.raises(ValueError, match="fallback_relative: only with fallback_residual"):
    model.model_config("tiny", camera_init="factorization", fallback_relative=2.0)
  with pytest.raises(ValueError, match="fallback_relative: expected >= 0"):
    model.model_config("tiny", camera_init="factorization", fallback_residual=0.01, fallback_relative=-1.0)


def test_fallback_option_validates_and_ignores_padding():
  from tracks4d import model

  with pytest.raises(ValueError, match="fallback_residual: expected >= 0"):
    model.model_config("tiny", camera_init="factorization", fallback_residual=-1.0)
  with pytest.raises(ValueError, match="fallback_residual: only with camera_init='factorization'"):
    model.model_config("tiny", fallback_residual=0.01)
  clip = synthetic.generate_clip(CLEAN, seed=3, index=1, family="rigid", background=False)
  n, t = clip.num_tracks, clip.num_frames
  # With the clip-relative scale and the second-body test, which padded tracks and frames must not enter
  # either (the scale's floor is the fixed scale).
  net = model.create_model("tiny", seed=0, camera_init="factorization", fallback_residual=0.01,
                           fallback_relative=2.0, fallback_second_body=True)
  one = model.forward_jit(net, jax.tree.map(jnp.asarray, tracks_lib.batch_tracks([clip])))
  padded = model.forward_jit(net, jax.tree.map(jnp.asarray, tracks_lib.batch_tracks(
      [clip], clip.num_frames + 3, clip.num_tracks + 5)))
  assert np.isfinite(np.asarray(one.depth)).all()
  np.testing.assert_allclose(np.asarray(padded.depth)[:, :t, :n], np.asarray(one.depth), rtol=1e-4, atol=1e-4)


def test_second_body_is_found_where_another_rigid_motion_explains_the_worst_tracks():
  from tracks4d import model
  from tracks4d.model.triangulation import second_body

  rot6d, centre, xy, valid, pts1 = _two_bodies(t=12, n1=24, n2=12)
  t = xy.shape[1]
  log_focal, frame_mask = jnp.zeros((1, t)), jnp.ones((1, t), bool)
  # Jitted: run eagerly, the factorisation's many small ops took most of this test's 30-45 s.
  found = jax.jit(lambda xy, valid: second_body(
      rot6d, centre, log_focal, xy, valid, frame_mask,
      triangulate_static(rot6d, centre, log_focal, xy, valid, jnp.zeros((1, xy.shape[2], 3)), 1e-2),
      jnp.zeros((1, xy.shape[2], 3)), 1e-2, (0.0, 0.0, -6.0)))
  gate = lambda xy, valid: bool(found(xy, valid)[0])
  assert gate(xy, valid)  # Body 2 moves on its own.
  # Body 1 alone, 10 of its tracks with 10x the tracker noise of the others: those are the worst
  # fitted, but cameras of their own explain them no better (measured: gain about 1, against 0.1 above).
  n1 = len(pts1)
  sigma = jnp.where(jnp.arange(n1) < 10, 1e-2, 1e-3)[None, None, :, None]
  noisy = xy[:, :, :n1] + sigma * jax.random.normal(jax.random.key(1), xy[:, :, :n1].shape)
  assert not gate(noisy, valid[:, :, :n1])
  # Fewer than SECOND_BODY_MIN_TRACKS candidates: no second body.
  assert not gate(xy[:, :, :n1 + 4], valid[:, :, :n1 + 4])
  with pytest.raises(ValueError, match="fallback_second_body: only with fallback_residual"):
    model.model_config("tiny", camera_init="factorization", fallback_second_body=True)
