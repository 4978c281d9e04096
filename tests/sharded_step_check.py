"""Run as a script with 8 simulated CPU devices (see test_training.py): one train
step on a mesh of 8 devices must equal the same step on 1 device."""

import os
import sys

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from experiments.configs import tracks4d as train_configs  # noqa: E402
from tracks4d import model  # noqa: E402
from tracks4d.training import data, loop, step as step_lib  # noqa: E402


def main():
  assert jax.device_count() == 8, jax.devices()
  config = train_configs.get_config("tiny")
  config.batch_size = 8
  settings = loop.parse_config(config)
  source = data.SyntheticSource(settings.generator, settings.subsample, 8, seed=0, workers=0)
  batch = source.batch(0)
  results = []
  for devices in (jax.devices()[:1], jax.devices()):
    mesh = step_lib.make_mesh(devices)
    # SGD: the update is the gradient itself (Adam's first step maps any tiny
    # gradient to +-lr, amplifying harmless reduction-order differences).
    tx = optax.sgd(1e-2)
    graphdef, state = step_lib.init_state(model.create_model(settings.model, seed=0), tx)
    p0 = jax.device_get(state.params)
    fn = step_lib.make_train_step(graphdef, tx, settings.loss, 2, settings.model.centre_prior, mesh)
    state = step_lib.replicate(state, mesh)
    sharded = step_lib.shard_batch(batch, mesh)
    assert len(sharded.xy_px.sharding.device_set) == len(devices)
    for _ in range(2):
      state, metrics = fn(state, sharded)
    results.append((jax.device_get(state.params), float(metrics["loss/total"])))
  (p1, l1), (p8, l8) = results
  np.testing.assert_allclose(l8, l1, rtol=1e-5)
  # The two updates (parameters minus their start) agree to 1e-3 of each leaf's
  # largest update: float32 sums in another order differ by more than 1e-6 on a
  # few entries whose gradient goes through the triangulation's 3 x 3 solves.
  worst, largest = 0.0, 0.0
  for a, b, s in zip(jax.tree.leaves(p1), jax.tree.leaves(p8), jax.tree.leaves(p0)):
    update = np.abs(np.asarray(a) - np.asarray(s)).max()
    diff = np.abs(np.asarray(a) - np.asarray(b)).max()
    assert diff <= 1e-3 * update + 1e-7, (diff, update, a.shape)
    worst, largest = max(worst, diff / max(update, 1e-12)), max(largest, update)
  assert largest > 0  # The steps did update the parameters.
  print("SHARDED_STEP_OK", l1, l8, "worst relative update difference", worst)


if __name__ == "__main__":
  sys.exit(main())
