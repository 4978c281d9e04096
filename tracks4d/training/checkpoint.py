"""orbax checkpoints of a training run, and loading a trained model.

A workdir holds:
  config.json             the run's config (a later run must match it)
  checkpoints/latest/N/   the latest TrainState + metadata (kept: 1)
  checkpoints/best/N/     the best TrainState by validation (kept: 1)
Each checkpoint is a `state` item (the TrainState pytree: step, params,
optimiser state) and a `meta` JSON item (step, data state, validation metric,
config). orbax writes a checkpoint to a temporary folder and renames it when
complete, so a run killed at any moment resumes from the last complete one.

A model folder (see `export_params`) holds `config.json` and `params/`
(parameters only); the training loop exports its best model to `WORKDIR/model`.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp
from flax import nnx

from tracks4d import model as model_lib

# Settings that may differ when a run is resumed (they do not change the result of
# the steps already taken).
RESUMABLE_KEYS = ("num_steps", "log_every", "checkpoint_every", "eval.every", "data.workers", "data.prefetch")
# Settings added after runs existed, with the value that behaves as the code did
# before them: a workdir whose config lacks one resumes when the new config has it.
ADDED_KEYS = {"model.uncorrected_starts": False, "model.occlusion_weight": 0.0,
              "model.start_score_weights": [0.0, 0.0], "model.refine_layers": 0,
              "model.resection_steps": 0, "model.fallback_residual": 0.0,
              "model.fallback_relative": 0.0, "model.fallback_second_body": False, "data.generator.mocap_exclude": [],
              "optimizer.train_only": ""}  # Values as config.json holds them.


def _flatten(d: dict, prefix: str = "") -> dict:
  out = {}
  for k, v in d.items():
    key = f"{prefix}{k}"
    if isinstance(v, dict):
      out.update(_flatten(v, key + "."))
    else:
      out[key] = v
  return out


def check_config_matches(workdir: Path, config: dict) -> None:
  """Writes config.json on first use; afterwards refuses a different config.

  Raises:
    ValueError: naming the differing settings, when `workdir` holds another
      config's run.
  """
  path = Path(workdir) / "config.json"
  normal = json.loads(json.dumps(config))
  if not path.exists():
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(normal, indent=1, sort_keys=True))
    tmp.replace(path)
    return
  try:
    old = _flatten(json.loads(path.read_text()))
  except ValueError as e:
    raise ValueError(f"{path}: unreadable config ({e}); use another workdir.") from e
  new = _flatten(normal)
  old.update({k: v for k, v in ADDED_KEYS.items() if k not in old and new.get(k) == v})
  diff = sorted(k for k in set(old) | set(new) if k not in RESUMABLE_KEYS and old.get(k) != new.get(k))
  if diff:
    shown = "; ".join(f"{k}: {old.get(k)!r} there vs {new.get(k)!r} now" for k in diff[:6])
    raise ValueError(f"workdir {workdir} holds checkpoints of another config ({shown}). "
                     "Use a new --workdir, or the same config to resume.")


class RunCheckpoints:
  """The latest and best checkpoints of a run (synchronous, atomic saves)."""

  def __init__(self, workdir: Path):
    root = Path(workdir).absolute() / "checkpoints"
    opts = dict(max_to_keep=1, create=True, enable_async_checkpointing=False)
    self.latest = ocp.CheckpointManager(root / "latest", options=ocp.CheckpointManagerOptions(**opts))
    self.best = ocp.CheckpointManager(root / "best", options=ocp.CheckpointManagerOptions(**opts))

  def save(self, manager: ocp.CheckpointManager, state, meta: dict) -> None:
    step = int(meta["step"])
    if step in manager.all_steps():
      return
    manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)))
    manager.wait_until_finished()

  def restore(self, manager: ocp.CheckpointManager, abstract_state) -> tuple[Any, dict] | None:
    """(state, meta) of the manager's latest step, or None when it has none."""
    step = manager.latest_step()
    if step is None:
      return None
    out = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state),
                                                        meta=ocp.args.JsonRestore()))
    return out["state"], out["meta"]

  def best_meta(self) -> dict | None:
    step = self.best.latest_step()
    if step is None:
      return None
    return self.best.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]


def export_params(params, model_cfg: model_lib.ModelConfig, out: Path, info: dict) -> None:
  """Writes a model folder: `config.json` (model config + `info`) and `params/`.

  Args:
    params: the network's nnx.Param state (e.g. `nnx.state(net, nnx.Param)`, or a
      training state's replicated global params in a multi-host run: every
      process must call this then).
    model_cfg: its architecture.
    out: the folder.
    info: extra JSON-able facts to record (step, validation scores, ...).
  """
  out = Path(out).absolute()
  out.mkdir(parents=True, exist_ok=True)
  ckpt = ocp.StandardCheckpointer()
  ckpt.save(out / "params", params, force=True)
  ckpt.wait_until_finished()
  if jax.process_index() == 0:
    cfg = {"model": dataclasses.asdict(model_cfg), **info}
    (out / "config.json").write_text(json.dumps(cfg, indent=1, sort_keys=True))


def load_model(path: str | Path, **overrides) -> model_lib.Tracks4DNet:
  """Loads a model folder written by `export_params` (a training workdir's best
  model is exported to `WORKDIR/model`, which may also be given as WORKDIR).
  `overrides` replace settings of its config.json that add no parameters
  (e.g. occlusion_weight=0.0), to measure the same parameters another way.

  Raises:
    ValueError: naming the path when it holds no model or its files are broken,
      or naming the setting for an invalid override.
  """
  path = Path(path).absolute()
  if not (path / "params").exists() and (path / "model" / "params").exists():
    path = path / "model"
  cfg_path = path / "config.json"
  if not cfg_path.exists() or not (path / "params").exists():
    raise ValueError(f"load_model: {path} is not a tracks4d model folder (expected config.json and params/).")
  try:
    cfg_json = json.loads(cfg_path.read_text())
  except ValueError as e:
    raise ValueError(f"load_model: {cfg_path} is not valid JSON ({e}).") from e
  if "model" not in cfg_json:
    raise ValueError(f"load_model: {cfg_path} has no 'model' section.")
  d = dict(cfg_json["model"])
  d["centre_prior"] = tuple(d.get("centre_prior", (0.0, 0.0, -15.0)))
  try:
    model_cfg = model_lib.ModelConfig(**d)
  except TypeError as e:
    raise ValueError(f"load_model: {cfg_path} has an invalid model config ({e}).") from e
  unknown = set(overrides) - {f.name for f in dataclasses.fields(model_lib.ModelConfig)}
  if unknown:
    raise ValueError(f"load_model: unknown settings {sorted(unknown)}.")
  model_cfg = dataclasses.replace(model_cfg, **overrides)
  # Shapes only (no random initialisation to overwrite): loading is then mostly reading.
  graphdef, abstract = nnx.split(nnx.eval_shape(lambda: model_lib.create_model(model_cfg)), nnx.Param)
  # On this process's first device, not on the sharding the checkpoint was saved
  # with (a training run saves on its "data" mesh): arrays carrying that mesh
  # make jitted functions whose other inputs lack it compile twice.
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), abstract)
  try:
    params = ocp.StandardCheckpointer().restore(path / "params", abstract)
  except Exception as e:  # orbax raises several types for missing or corrupt files.
    raise ValueError(f"load_model: could not read parameters from {path / 'params'}: {e}") from e
  return nnx.merge(graphdef, params)
