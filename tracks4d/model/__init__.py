"""The tracks-to-4D network: config and variants, attention, network, decoding.

Example:
  >>> from flax import nnx
  >>> from tracks4d import model
  >>> net = model.create_model("small", seed=0)
  >>> pred = model.forward(net, batch)        # batch: a batched Tracks
  >>> pred.c2w.shape, pred.xyz_world.shape    # (b, t, 4, 4), (b, t, n, 3)
"""

from __future__ import annotations

import dataclasses

import jax
from flax import nnx

from tracks4d import geometry
from tracks4d.model.config import VARIANTS, ModelConfig, model_config, parse_overrides
from tracks4d.model.network import Tracks4DNet
from tracks4d.model.outputs import Prediction, RawOutputs, decode


def create_model(variant: str | ModelConfig, seed: int = 0, **overrides) -> Tracks4DNet:
  """A freshly initialised network of a named variant (or a ModelConfig), with
  optional field overrides.

  Raises:
    ValueError: for an unknown variant or field.
  """
  if isinstance(variant, ModelConfig):
    unknown = set(overrides) - {f.name for f in dataclasses.fields(ModelConfig)}
    if unknown:
      raise ValueError(f"create_model: unknown settings {sorted(unknown)}.")
    cfg = dataclasses.replace(variant, **overrides)
  else:
    cfg = model_config(variant, **overrides)
  return Tracks4DNet(cfg, rngs=nnx.Rngs(seed))


def forward(net: Tracks4DNet, tracks) -> Prediction:
  """Runs the network on a batched `Tracks` (pixels are normalised with its
  intrinsics) and decodes cameras and 3D tracks."""
  xy_norm = geometry.pixels_to_normalized(tracks.xy_px, tracks.intrinsics)
  return decode(net(xy_norm, tracks.visible, tracks.frame_mask, tracks.track_mask))


forward_jit = nnx.jit(forward)
forward_jit.__doc__ = "`forward` under nnx.jit (one compilation per input shape)."


def num_parameters(net: Tracks4DNet) -> int:
  """Number of trainable parameters."""
  return sum(x.size for x in jax.tree.leaves(nnx.state(net, nnx.Param)))
