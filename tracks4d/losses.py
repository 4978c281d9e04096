"""The unsupervised reprojection losses of TracksTo4D (REFERENCE.md section 1).

All terms use valid entries only (visible, on a real frame, on a real track), in
normalised image coordinates:
  static        mean log(gamma_j + r^2 / gamma_j), r = |p_static - x|    weight 1
  dynamic       mean |p_dynamic - x| (L2 norm, not squared)              weight 50
  negative depth  sum over entries of max(0, -z), per clip, mean over clips  weight 1
  sparsity      mean |B_j^k| / stopgrad(gamma_j) over k >= 1 and real tracks  weight 0.001
  warm-up       mean |c_t - centre_prior|^2 + |R_t - I|^2 over real frames, while
                warming up (weight 1 then, 0 after)
  static prior  mean log(g_j + r^2 / g_j), r = |p_prior - x|, g = stopgrad(gamma):
                the static loss of the network's own static point (the
                triangulation's ridge prior) under stop-gradient cameras.
                Weight 0 by default (the peer has no such term). With
                `triangulate_static` it trains the point that tracks without
                parallax, or moving ones, fall back to.

Shapes: b batch, t frames, n tracks.
"""

from __future__ import annotations

import dataclasses

import flax.struct
import jax
import jax.numpy as jnp

from tracks4d import geometry
from tracks4d.model.outputs import Prediction, robust_static_term


@dataclasses.dataclass(frozen=True)
class LossWeights:
  """Weights of the loss terms (defaults: the peer's)."""

  static: float = 1.0
  dynamic: float = 50.0
  negative_depth: float = 1.0
  sparsity: float = 0.001
  warmup: float = 1.0
  static_prior: float = 0.0


@flax.struct.dataclass
class Losses:
  """Weighted total and the unweighted terms (scalars)."""

  total: jax.Array
  static: jax.Array
  dynamic: jax.Array
  negative_depth: jax.Array
  sparsity: jax.Array
  warmup: jax.Array
  static_prior: jax.Array


def _masked_mean(x, mask):
  m = mask.astype(x.dtype)
  return (x * m).sum() / jnp.maximum(m.sum(), 1.0)


def unsupervised_losses(pred: Prediction, tracks, weights: LossWeights = LossWeights(), warmup_on=False,
                        centre_prior=(0.0, 0.0, -15.0)) -> Losses:
  """Computes the losses of a batch.

  Args:
    pred: the decoded prediction for `tracks`.
    tracks: the batched `Tracks` the prediction was made from.
    weights: term weights.
    warmup_on: bool (or 0/1 array) switching the camera warm-up term on.
    centre_prior: the warm-up target of the camera centres.

  Returns:
    Losses with `total` = the weighted sum.

  Example:
    >>> losses = unsupervised_losses(model.forward(net, batch), batch)
    >>> losses.total
  """
  x = geometry.pixels_to_normalized(tracks.xy_px, tracks.intrinsics)
  valid = tracks.visible & tracks.frame_mask[..., :, None] & tracks.track_mask[..., None, :]
  gamma = pred.raw.gamma[:, None, :]  # (b, 1, n)
  r2 = ((pred.xy_static - x) ** 2).sum(-1)
  static = _masked_mean(robust_static_term(r2, gamma), valid)
  g = jax.lax.stop_gradient(gamma)
  r2_prior = ((pred.xy_prior - x) ** 2).sum(-1)
  static_prior = _masked_mean(robust_static_term(r2_prior, g), valid)
  # sqrt with a floor keeps the gradient finite at a perfect fit.
  dynamic = _masked_mean(jnp.sqrt(((pred.xy_dynamic - x) ** 2).sum(-1) + 1e-12), valid)
  neg = jax.nn.relu(-pred.depth) + jax.nn.relu(-pred.depth_static)
  negative_depth = (neg * valid).sum() / tracks.xy_px.shape[0]
  real_tracks = tracks.track_mask[..., None, None] & jnp.ones_like(pred.raw.bases[..., 1:], bool)
  sparsity = _masked_mean(jnp.abs(pred.raw.bases[..., 1:]) / jax.lax.stop_gradient(pred.raw.gamma)[..., None, None],
                          real_tracks)
  rot = pred.c2w[..., :3, :3]
  cam_err = ((pred.raw.centre - jnp.asarray(centre_prior)) ** 2).sum(-1) + ((rot - jnp.eye(3)) ** 2).sum((-1, -2))
  warmup = _masked_mean(cam_err, tracks.frame_mask)
  on = jnp.asarray(warmup_on, jnp.float32)
  total = (weights.static * static + weights.dynamic * dynamic + weights.negative_depth * negative_depth
           + weights.sparsity * sparsity + on * weights.warmup * warmup + weights.static_prior * static_prior)
  return Losses(total=total, static=static, dynamic=dynamic, negative_depth=negative_depth, sparsity=sparsity,
                warmup=warmup, static_prior=static_prior)
