"""The unsupervised losses: a prediction built from ground truth fits exactly;
gradients stay finite on degenerate clips."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from tracks4d import geometry, losses, model, synthetic
from tracks4d.model.outputs import RawOutputs, decode
from tracks4d.synthetic.sampling import TrackerNoise
from tracks4d.tracks import batch_tracks

CLEAN = synthetic.SyntheticConfig(num_frames=(8, 10), grid_size=5, query_stride=4, noise=TrackerNoise(0.0, 0.0, 0.0))


def raw_from_ground_truth(c) -> RawOutputs:
  """An exact low-rank prediction with K = t: B^0 = X(0), B^k = X(k) - X(0), c_k(t) = [k == t]."""
  t = c.num_frames
  c2w = geometry.invert_pose(c.gt.w2c)
  xyz = c.gt.xyz_world  # (t, n, 3)
  bases = np.concatenate([xyz[:1], xyz[1:] - xyz[:1]], axis=0)  # (t, n, 3) indexed by k
  coeff = np.eye(t)
  coeff[:, 0] = 1.0
  gamma = np.where(c.gt.dynamic[0], 1.0, 1e-3)
  return RawOutputs(rot6d=geometry.matrix_to_rot6d(c2w[:, :3, :3])[None], centre=c2w[None, :, :3, 3],
                    log_focal=np.zeros((1, t)), coeff=coeff[None],
                    bases=np.transpose(bases, (1, 2, 0))[None], gamma=gamma[None])


@pytest.mark.parametrize("family", ["static", "rigid", "nonrigid"])
def test_ground_truth_prediction_has_zero_reprojection_error(family):
  c = synthetic.generate_clip(CLEAN, seed=0, index=3, family=family)
  batch = jax.tree.map(jnp.asarray, batch_tracks([c]))
  pred = decode(jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), raw_from_ground_truth(c)))
  out = losses.unsupervised_losses(pred, batch)
  assert float(out.dynamic) < 1e-5
  assert float(out.negative_depth) == 0.0
  # Static tracks reproject exactly through B^0: their static term is log(gamma).
  x = geometry.pixels_to_normalized(batch.xy_px, batch.intrinsics)
  r = np.linalg.norm(np.asarray(pred.xy_static - x), axis=-1)[0]
  static = ~c.gt.dynamic
  assert r[static & c.visible].max() < 1e-5
  np.testing.assert_allclose(pred.depth[0][c.visible], c.gt.depth[c.visible], rtol=1e-4)
  if family != "static":
    assert r[c.gt.dynamic & c.visible].max() > 1e-3  # Moving points leave the static fit.


def test_weights_scale_the_terms():
  c = synthetic.generate_clip(CLEAN, seed=1, index=0)
  batch = jax.tree.map(jnp.asarray, batch_tracks([c]))
  net = model.create_model("tiny", seed=0)
  pred = model.forward_jit(net, batch)
  base = losses.unsupervised_losses(pred, batch)
  doubled = losses.unsupervised_losses(pred, batch, dataclasses.replace(losses.LossWeights(), dynamic=100.0))
  np.testing.assert_allclose(doubled.total - base.total, 50.0 * base.dynamic, rtol=1e-4)
  warm = losses.unsupervised_losses(pred, batch, warmup_on=True)
  np.testing.assert_allclose(warm.total - base.total, base.warmup, rtol=1e-4)


def test_static_prior_term_trains_the_network_point_only():
  """The static-prior term is the static loss of the ridge prior (the network's own
  point) under stop-gradient cameras: log(gamma) at the true points, a gradient for
  the prior but none for the cameras or gamma; it is added with its weight."""
  c = synthetic.generate_clip(CLEAN, seed=0, index=3, family="static")
  batch = jax.tree.map(jnp.asarray, batch_tracks([c]))
  raw = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), raw_from_ground_truth(c))
  raw = raw.replace(prior_static=raw.bases[..., 0])
  exact = losses.unsupervised_losses(decode(raw), batch)
  np.testing.assert_allclose(exact.static_prior, np.log(1e-3), rtol=1e-4)

  def term(prior, centre, gamma):
    return losses.unsupervised_losses(decode(raw.replace(prior_static=prior, centre=centre, gamma=gamma)),
                                      batch).static_prior

  shifted = raw.prior_static + jnp.asarray([0.3, -0.2, 0.1])
  g_prior, g_centre, g_gamma = jax.grad(term, argnums=(0, 1, 2))(shifted, raw.centre, raw.gamma)
  assert float(jnp.abs(g_prior).max()) > 0
  assert float(jnp.abs(g_centre).max()) == 0 and float(jnp.abs(g_gamma).max()) == 0
  pred = decode(raw.replace(prior_static=shifted))
  base = losses.unsupervised_losses(pred, batch)
  weighted = losses.unsupervised_losses(pred, batch, losses.LossWeights(static_prior=2.0))
  assert float(base.static_prior) > float(exact.static_prior)
  np.testing.assert_allclose(weighted.total - base.total, 2.0 * base.static_prior, rtol=1e-4)


def degenerate_clips():
  """No motion at all, pure camera rotation, and all tracks static."""
  c = synthetic.generate_clip(CLEAN, seed=2, index=0, family="static", camera="static")
  frozen_w2c = np.broadcast_to(c.gt.w2c[:1], c.gt.w2c.shape).copy()
  xy, _ = geometry.project(geometry.transform_points(frozen_w2c, c.gt.xyz_world), c.intrinsics)
  no_motion = c.replace(xy_px=xy.astype(np.float32), visible=np.ones_like(c.visible))
  pan = synthetic.generate_clip(CLEAN, seed=2, index=1, family="static", camera="pan")
  static = synthetic.generate_clip(CLEAN, seed=2, index=2, family="static", camera="orbit")
  return [no_motion, pan, static]


@pytest.mark.parametrize("which", [0, 1, 2])
def test_gradients_are_finite_on_degenerate_clips(which):
  c = degenerate_clips()[which]
  batch = jax.tree.map(jnp.asarray, batch_tracks([c]))
  net = model.create_model("tiny", seed=0)
  graphdef, params = nnx.split(net, nnx.Param)

  @jax.jit
  def grads(params, batch):  # The batch as an input: the three clips share one compilation.
    def loss_fn(p):
      return losses.unsupervised_losses(model.forward(nnx.merge(graphdef, p), batch), batch, warmup_on=True).total
    return jax.grad(loss_fn)(params)

  g = grads(params, batch)
  leaves = jax.tree.leaves(g)
  assert all(np.isfinite(np.asarray(x)).all() for x in leaves)
  assert any(np.abs(np.asarray(x)).max() > 0 for x in leaves)
