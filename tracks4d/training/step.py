"""Optimiser, train state, and the jitted, data-parallel train step.

Data parallelism: a 1D mesh ("data") over all devices (all processes' devices in
a multi-host run); the batch is sharded along its leading axis, parameters and
optimiser state are replicated, and XLA inserts the gradient all-reduce.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Callable

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from tracks4d import losses as losses_lib
from tracks4d import model as model_lib


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
  """Adam(W) with linear warm-up, cosine decay and global-norm clipping.

  `train_only`: when set, a regular expression; only parameters whose path (e.g.
  "refine_head/kernel") it matches (re.search) are updated, the others stay as
  they are (fine-tuning a part added to a saved model, `init_from`).
  """

  learning_rate: float = 3e-4
  warmup_steps: int = 200
  end_lr_factor: float = 0.05
  weight_decay: float = 0.0
  clip_norm: float = 1.0
  train_only: str = ""

  def __post_init__(self):
    if self.learning_rate <= 0:
      raise ValueError(f"optimizer.learning_rate: expected > 0; got {self.learning_rate}.")
    if self.clip_norm <= 0:
      raise ValueError(f"optimizer.clip_norm: expected > 0; got {self.clip_norm}.")
    try:
      re.compile(self.train_only)
    except re.error as e:
      raise ValueError(f"optimizer.train_only: not a regular expression ({e}); got {self.train_only!r}.") from e


def param_path(path) -> str:
  """'a/b/c' for a pytree key path of a parameter state."""
  return "/".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)


def trainable_mask(params, train_only: str):
  """A bool pytree like `params`: True where `train_only` (a regex, "" for all)
  matches the parameter's path.

  Raises:
    ValueError: naming `optimizer.train_only` when it matches no parameter.
  """
  mask = jax.tree_util.tree_map_with_path(lambda p, _: not train_only or bool(re.search(train_only, param_path(p))),
                                          params)
  if not any(jax.tree.leaves(mask)):
    names = [param_path(p) for p, _ in jax.tree_util.tree_leaves_with_path(params)]
    raise ValueError(f"optimizer.train_only: {train_only!r} matches no parameter; they are e.g. {names[:6]}.")
  return mask


def make_optimizer(cfg: OptimizerConfig, num_steps: int) -> optax.GradientTransformation:
  """clip_by_global_norm -> adamw with a warm-up + cosine learning-rate schedule;
  with `cfg.train_only`, parameters it does not match get no update (and their
  gradients do not count in the clipping norm)."""
  schedule = optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=cfg.learning_rate, warmup_steps=max(1, min(cfg.warmup_steps, num_steps - 1)),
      decay_steps=max(num_steps, 2), end_value=cfg.learning_rate * cfg.end_lr_factor)
  tx = optax.chain(optax.clip_by_global_norm(cfg.clip_norm), optax.adamw(schedule, weight_decay=cfg.weight_decay))
  if not cfg.train_only:
    return tx
  labels = lambda params: jax.tree.map(lambda m: "train" if m else "frozen", trainable_mask(params, cfg.train_only))
  return optax.multi_transform({"train": tx, "frozen": optax.set_to_zero()}, labels)


@flax.struct.dataclass
class TrainState:
  """Everything that changes during training (a pytree; checkpointed whole)."""

  step: jax.Array
  params: nnx.State
  opt_state: optax.OptState


def init_state(net: model_lib.Tracks4DNet, tx: optax.GradientTransformation) -> tuple[nnx.GraphDef, TrainState]:
  graphdef, params = nnx.split(net, nnx.Param)
  return graphdef, TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))


def make_mesh(devices=None) -> Mesh:
  """A 1D data-parallel mesh over `devices` (default: all devices of all processes)."""
  devices = np.asarray(devices if devices is not None else jax.devices())
  return Mesh(devices, ("data",))


def make_train_step(graphdef: nnx.GraphDef, tx: optax.GradientTransformation, weights: losses_lib.LossWeights,
                    warmup_steps: int, centre_prior, mesh: Mesh | None = None) -> Callable:
  """A jitted step (state, batch) -> (state, metrics); with a mesh, the batch is
  sharded over its leading axis and the state replicated.

  Returns:
    A function of (TrainState, batched Tracks) returning the new state and a dict
    of scalar metrics (losses and the gradient norm).
  """

  def step_fn(state: TrainState, batch):
    def loss_fn(params):
      pred = model_lib.forward(nnx.merge(graphdef, params), batch)
      out = losses_lib.unsupervised_losses(pred, batch, weights, warmup_on=state.step < warmup_steps,
                                           centre_prior=centre_prior)
      return out.total, out

    (_, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {f"loss/{f.name}": getattr(terms, f.name) for f in dataclasses.fields(terms)}
    metrics["grad_norm"] = optax.tree.norm(grads)
    return TrainState(step=state.step + 1, params=params, opt_state=opt_state), metrics

  if mesh is None:
    return jax.jit(step_fn, donate_argnums=0)
  replicated = NamedSharding(mesh, P())
  sharded = NamedSharding(mesh, P("data"))
  return jax.jit(step_fn, in_shardings=(replicated, sharded), out_shardings=(replicated, replicated),
                 donate_argnums=0)


def shard_batch(batch, mesh: Mesh):
  """Places a host batch (NumPy leaves with leading axis b_local) onto the mesh.

  In a multi-process run each process passes its own slice of the global batch.
  """
  sharding = NamedSharding(mesh, P("data"))
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), batch)


def replicate(tree, mesh: Mesh):
  """Places a pytree replicated on every device of the mesh."""
  return jax.device_put(tree, NamedSharding(mesh, P()))
