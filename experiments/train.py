r"""Trains the tracks-to-4D network (absl + ml_collections; logic in tracks4d.training.loop).

  python -m experiments.train --config=experiments/configs/tracks4d.py:small --workdir=workdirs/small

Multi-host: start one process per host with --coordinator=HOST:PORT
--num_processes=P --process_id=I (jax.distributed); every process runs the same
command otherwise.
"""

from __future__ import annotations

import json

from absl import app, flags, logging
import jax
from ml_collections import config_flags

from tracks4d.training import loop


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO.
  if _COORDINATOR.value:
    # CPU processes exchange gradients through gloo (accelerators use their own).
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=_COORDINATOR.value, num_processes=_NUM_PROCESSES.value,
                               process_id=_PROCESS_ID.value)
  result = loop.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  if jax.process_index() == 0:
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
  # Flags exist only when run as a script, so this module's functions can be
  # imported beside other mains (absl flags are process-global).
  _CONFIG = config_flags.DEFINE_config_file("config", None, "Training config (…/tracks4d.py:variant).")
  _WORKDIR = flags.DEFINE_string("workdir", None, "Checkpoints, logs and the exported model go here.")
  _COORDINATOR = flags.DEFINE_string("coordinator", None, "jax.distributed coordinator HOST:PORT (multi-host).")
  _NUM_PROCESSES = flags.DEFINE_integer("num_processes", 1, "Processes in a multi-host run.")
  _PROCESS_ID = flags.DEFINE_integer("process_id", 0, "This process's index in a multi-host run.")
  flags.mark_flags_as_required(["config", "workdir"])
  app.run(main)
