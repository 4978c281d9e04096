"""Per-clip optimisation of the network with the unsupervised losses.

Used two ways: test-time fine-tuning of a trained model (start from its
parameters), and the optimisation-only baseline (start from a fresh model: the
same losses optimised per clip from scratch). The state with the lowest loss is
kept.
"""

from __future__ import annotations

import dataclasses
import functools
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import tqdm
from flax import nnx

from tracks4d import losses as losses_lib
from tracks4d import model as model_lib
from tracks4d.tracks import Tracks, batch_tracks


@dataclasses.dataclass(frozen=True)
class FinetuneResult:
  """What per-clip optimisation did.

  Attributes:
    net: the network with the best parameters found.
    losses: (steps,) total loss before each update.
    best_step: the step whose parameters were kept (0 = the starting ones).
    seconds: wall time, compilation included.
  """

  net: model_lib.Tracks4DNet
  losses: np.ndarray
  best_step: int
  seconds: float


def finetune(net: model_lib.Tracks4DNet, clip: Tracks, steps: int, learning_rate: float = 1e-4,
             weights: losses_lib.LossWeights = losses_lib.LossWeights(), warmup_steps: int = 0,
             progress: bool = False, lr_warmup_fraction: float = 0.0) -> FinetuneResult:
  """Optimises the network on one clip (or a batch) with Adam, keeping the best state.

  Args:
    net: starting network (not modified).
    clip: one clip, or a batched Tracks.
    steps: optimisation steps (>= 0).
    learning_rate: Adam step size (the peer uses 1e-4).
    weights: loss weights.
    warmup_steps: steps with the camera warm-up term on (for a fresh network).
    progress: show a progress bar.
    lr_warmup_fraction: fraction of `steps` over which the step size ramps
      linearly from 0 (keeps Adam's first steps from raising the loss).

  Returns:
    FinetuneResult with a new network holding the parameters of lowest loss.
    With `uncorrected_starts` the steps (and the losses) are those of the
    network without them, which trains the head's camera correction; the
    returned network has them (so it keeps an uncorrected start where that
    still scores better) unless the network without them has the lower loss on
    the clip (the start is chosen before the camera refinement, which the steps
    also trained).

  Raises:
    ValueError: for negative steps.
  """
  if steps < 0:
    raise ValueError(f"finetune: steps must be >= 0; got {steps}.")
  t0 = time.perf_counter()
  batch = clip if np.asarray(clip.xy_px).ndim == 4 else batch_tracks([clip])
  batch = jax.tree.map(jnp.asarray, batch)
  graphdef, params = nnx.split(net, nnx.Param)
  # The steps train the head's camera correction, so they run without the
  # uncorrected starts (where one is chosen the head gets no gradient); the
  # returned network has them again and keeps whichever start scores best.
  train_graphdef = graphdef
  if net.cfg.uncorrected_starts:
    # Only the graph is needed: an abstract model, no parameters initialised.
    abstract = nnx.eval_shape(lambda: model_lib.create_model(dataclasses.replace(net.cfg, uncorrected_starts=False)))
    train_graphdef = nnx.split(abstract, nnx.Param)[0]
  ramp = int(steps * lr_warmup_fraction)
  schedule = optax.linear_schedule(0.0, float(learning_rate), ramp) if ramp else optax.constant_schedule(
      float(learning_rate))
  tx, step_fn = _step_function(train_graphdef, weights, net.cfg.centre_prior)

  # Everything committed to one device: the step's outputs are, and inputs that
  # are not would make the second step compile again.
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  params, opt_state, batch_dev = jax.device_put((params, tx.init(params), batch), device)
  best, best_loss, best_step = params, np.inf, 0
  history = []
  for step in tqdm.trange(steps, disable=not progress, desc="finetune", leave=False):
    # The step size and the warm-up switch are inputs, so one compilation
    # serves every schedule, step count and warm-up length.
    opt_state.hyperparams["learning_rate"] = jax.device_put(np.float32(schedule(step)), device)
    warmup_on = jax.device_put(np.bool_(step < warmup_steps), device)
    new_params, opt_state, loss = step_fn(params, opt_state, batch_dev, warmup_on)
    loss = float(loss)  # Loss of `params`, before this update.
    history.append(loss)
    # Warm-up steps have a different objective: only compare after them.
    if step >= warmup_steps and np.isfinite(loss) and loss < best_loss:
      best, best_loss, best_step = params, loss, step
    params = new_params
  out = nnx.merge(graphdef, best if steps else params)
  if steps and net.cfg.uncorrected_starts:
    # The steps optimised the network without the uncorrected starts. The choice
    # among starts comes before the camera refinement (`refine_layers`), so with
    # them the fine-tuned network can fall back to a start whose refined cameras
    # are worse; keep whichever of the two gives the lower loss on the clip.
    # `best_loss` is the loss of `best` without them (warm-up off by then).
    if best_loss < _clip_loss(out, batch, weights, net.cfg.centre_prior):
      out = nnx.merge(train_graphdef, best)
  return FinetuneResult(net=out, losses=np.asarray(history), best_step=best_step,
                        seconds=time.perf_counter() - t0)


def _clip_loss(net: model_lib.Tracks4DNet, batch, weights: losses_lib.LossWeights, centre_prior) -> float:
  """The unsupervised loss of `net` on a batch (camera warm-up off)."""
  pred = model_lib.forward_jit(net, batch)
  return float(losses_lib.unsupervised_losses(pred, batch, weights, warmup_on=False, centre_prior=centre_prior).total)


@functools.lru_cache(maxsize=16)
def _step_function(graphdef, weights: losses_lib.LossWeights, centre_prior: tuple):
  """(optimiser, jitted step) for one architecture and setting, built once so
  clips of the same shape reuse one compilation. The optimiser is Adam with its
  step size in the state (`hyperparams["learning_rate"]`), set before each step."""
  tx = optax.inject_hyperparams(optax.adam)(learning_rate=0.0)

  @jax.jit
  def step_fn(params, opt_state, batch, warmup_on):
    def loss_fn(p):
      pred = model_lib.forward(nnx.merge(graphdef, p), batch)
      return losses_lib.unsupervised_losses(pred, batch, weights, warmup_on=warmup_on,
                                            centre_prior=centre_prior).total

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  return tx, step_fn

