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
