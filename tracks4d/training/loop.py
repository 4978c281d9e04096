"""The training loop: `train_and_evaluate(config, workdir)`.

Resumes from the latest checkpoint in `workdir` (refusing a workdir made by
another config), trains data-parallel over all devices of all processes, logs
losses and throughput (TensorBoard events and metrics.jsonl), validates on
held-out synthetic clips, keeps the latest and the best checkpoints, exports the
best model to `workdir/model`, and stops on a NaN loss naming the step and the
clips of the batch once the last good checkpoint is safe.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
import tqdm
from absl import logging
from flax import nnx

from tracks4d import losses as losses_lib
from tracks4d import model as model_lib
from tracks4d import synthetic
from tracks4d.io.dataset import TrackDataset
from tracks4d.training import checkpoint, data, evaluate, step as step_lib


@dataclasses.dataclass(frozen=True)
class RunSettings:
  """The typed pieces of a training config (validated at start)."""

  model: model_lib.ModelConfig
  generator: synthetic.SyntheticConfig
  subsample: data.SubsampleConfig
  optimizer: step_lib.OptimizerConfig
  loss: losses_lib.LossWeights
  loss_warmup_steps: int


def parse_config(config) -> RunSettings:
  """Validates a training ConfigDict into typed settings.

  Raises:
    ValueError: naming the setting for unknown variants, impossible sizes,
      a batch that does not split over the devices, or an unknown data source.
  """
  m = config.model
  model_cfg = model_lib.model_config(m.variant, **{k: v for k, v in m.items() if k != "variant"})
  d = config.data
  if d.source not in ("synthetic", "dataset"):
    raise ValueError(f"data.source: expected 'synthetic' or 'dataset'; got {d.source!r}.")
  if d.source == "dataset" and not d.dataset:
    raise ValueError("data.dataset: a folder or kvstore URL is required when data.source == 'dataset'.")
  gen = synthetic.SyntheticConfig.from_dict(d.generator)
  sub = data.SubsampleConfig(min_frames=d.min_frames, max_frames=d.max_frames, num_tracks=d.num_tracks,
                             min_visible=d.min_visible)
  for key in ("num_steps", "batch_size", "log_every", "checkpoint_every"):
    if config[key] < 1:
      raise ValueError(f"{key}: expected a positive integer; got {config[key]}.")
  if config.eval.every < 1 or config.eval.num_clips < 1 or config.eval.batch_size < 1:
    raise ValueError("eval.every, eval.num_clips, eval.batch_size: expected positive integers.")
  devices = jax.device_count()
  if config.batch_size % devices:
    raise ValueError(f"batch_size: {config.batch_size} does not split evenly over {devices} devices.")
  loss = dict(config.loss)
  warmup_steps = int(loss.pop("warmup_steps"))
  return RunSettings(model=model_cfg, generator=gen, subsample=sub,
                     optimizer=step_lib.OptimizerConfig(**dict(config.optimizer)),
                     loss=losses_lib.LossWeights(**loss), loss_warmup_steps=warmup_steps)


class MetricsWriter:
  """Scalars to TensorBoard event files (workdir/tensorboard) and metrics.jsonl."""

  def __init__(self, workdir: Path, enabled: bool):
    self.enabled = enabled
    self.jsonl = Path(workdir) / "metrics.jsonl"
    self.tb = None
    if enabled:
      from tensorboardX import SummaryWriter  # A dependency of the package.

      self.tb = SummaryWriter(str(Path(workdir) / "tensorboard"))

  def write(self, step: int, scalars: dict) -> None:
    if not self.enabled:
      return
    for k, v in scalars.items():
      self.tb.add_scalar(k, v, step)
    self.tb.flush()
    with self.jsonl.open("a") as f:
      f.write(json.dumps({"step": step, **{k: float(v) for k, v in scalars.items()}}) + "\n")

  def close(self):
    if self.tb is not None:
      self.tb.close()


def make_eval_clips(settings: RunSettings, config) -> tuple[list, list[str]]:
  """Held-out full clips (all tracks) and their family names."""
  clips, fams = [], []
  for i in range(config.eval.num_clips):
    clip, info = synthetic.generate_clip(settings.generator, config.eval.seed, i, with_info=True)
    clips.append(clip)
    fams.append(info.family)
  return clips, fams


def init_params(net: model_lib.Tracks4DNet, model_dir: str) -> None:
  """Overwrites `net`'s parameters with those of a saved model (fine-tuning).

  Only the parameters are taken: the run's own model settings (e.g. the
  triangulation ridge) stay. Parameters the saved model lacks keep their fresh
  values: a part added by a setting (e.g. `refine_layers`, whose read-out starts
  at zero) is trained on top of the saved model. A run that resumes restores its
  checkpoint over them.

  Raises:
    ValueError: naming `init_from` when the folder holds no model, or a saved
      parameter that the configured architecture lacks or has in another shape.
  """
  try:
    source = checkpoint.load_model(model_dir)
  except ValueError as e:
    raise ValueError(f"init_from: {e}") from e
  want = dict(nnx.to_flat_state(nnx.state(net, nnx.Param)))
  got = dict(nnx.to_flat_state(nnx.state(source, nnx.Param)))
  shape = lambda v: tuple(v.shape)
  bad = sorted("/".join(map(str, k)) for k in got if k not in want or shape(want[k]) != shape(got[k]))
  if bad:
    raise ValueError(f"init_from: {model_dir} holds a model of another architecture ({source.cfg}) than the "
                     f"configured one ({net.cfg}): parameters {bad[:4]} are missing here or differ in shape.")
  new = sorted("/".join(map(str, k)) for k in want if k not in got)
  if new:
    logging.info("init_from: %d parameters not in %s keep their initial values: %s", len(new), model_dir,
                 ", ".join(new[:8]))
  nnx.update(net, nnx.from_flat_state(got))


def train_and_evaluate(config, workdir: str, progress: bool = True) -> dict:
  """Trains (or resumes) a run; returns the last validation scores.

  Args:
    config: a tracks4d training ConfigDict (experiments/configs/tracks4d.py).
    workdir: where checkpoints, logs and the exported model go.
    progress: show a progress bar.

  Returns:
    {"step": final step, "val": last validation scores (all clips), "best": best
    validation abs_rel}.

  Raises:
    ValueError: for a misconfigured run (see parse_config) or a workdir of
      another config, before any training.
    FloatingPointError: when a loss is NaN/inf, naming the step and the clips.
  """
  settings = parse_config(config)
  workdir = Path(workdir).absolute()
  is_main = jax.process_index() == 0
  if is_main:
    checkpoint.check_config_matches(workdir, config.to_dict())
  mesh = step_lib.make_mesh()
  net = model_lib.create_model(settings.model, seed=config.seed)
  if config.init_from:
    init_params(net, config.init_from)
  tx = step_lib.make_optimizer(settings.optimizer, config.num_steps)
  graphdef, state = step_lib.init_state(net, tx)
  train_step = step_lib.make_train_step(graphdef, tx, settings.loss, settings.loss_warmup_steps,
                                        settings.model.centre_prior, mesh)
  ckpts = checkpoint.RunCheckpoints(workdir)
  restored = ckpts.restore(ckpts.latest, jax.tree.map(ocp.utils.to_shape_dtype_struct, state))
  best_meta = ckpts.best_meta()
  best_score = best_meta["val_abs_rel"] if best_meta else float("inf")
  if restored is not None:
    state, meta = restored
    logging.info("Resumed %s at step %d.", workdir, meta["step"])
  state = step_lib.replicate(state, mesh)
  start = int(state.step)

  proc = (jax.process_index(), jax.process_count())
  if config.data.source == "synthetic":
    source = data.SyntheticSource(settings.generator, settings.subsample, config.batch_size, config.seed,
                                  workers=config.data.workers, prefetch=config.data.prefetch,
                                  process_index=proc[0], process_count=proc[1])
  else:
    source = data.DatasetSource(TrackDataset.open(config.data.dataset), settings.subsample, config.batch_size,
                                config.seed, process_index=proc[0], process_count=proc[1])
  eval_clips, eval_fams = make_eval_clips(settings, config)
  pad_to = (settings.generator.num_frames[1], settings.generator.max_tracks)

  writer = MetricsWriter(workdir, enabled=is_main)
  last_val: dict = {}

  def meta_for(step: int, extra: dict | None = None) -> dict:
    return {"step": step, "data_state": {**source.description, "next_step": step}, "config": config.to_dict(),
            **(extra or {})}

  def validate(step: int) -> dict:
    nonlocal best_score, last_val
    params_net = nnx.merge(graphdef, jax.device_get(state.params))
    scores = evaluate.evaluate(lambda cs: evaluate.predict_with_model(params_net, cs, config.eval.batch_size, pad_to),
                               eval_clips, eval_fams)
    last_val = scores["all"]
    writer.write(step, {f"val/{k}": v for k, v in scores["all"].items()})
    if scores["all"]["abs_rel"] < best_score:  # Every process saves: orbax coordinates the hosts.
      best_score = scores["all"]["abs_rel"]
      ckpts.save(ckpts.best, state, meta_for(step, {"val_abs_rel": best_score, "val": scores}))
      checkpoint.export_params(state.params, settings.model, workdir / "model", {"step": step, "val": scores})
    return scores

  bar = tqdm.tqdm(total=config.num_steps, initial=start, disable=not (progress and is_main), desc="train",
                  unit="step")
  t_log, clips_since = time.perf_counter(), 0
  step = start
  try:
    for step, host_batch in source.iterate(start, config.num_steps):
      batch = step_lib.shard_batch(host_batch, mesh)
      state, metrics = train_step(state, batch)
      metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
      # A finite loss with a non-finite gradient would leave NaN parameters: stop before they are saved.
      if not (np.isfinite(metrics["loss/total"]) and np.isfinite(metrics["grad_norm"])):
        raise FloatingPointError(
            f"loss is {metrics['loss/total']} (gradient norm {metrics['grad_norm']}) at step {step} (batch of "
            f"clips {source.clip_ids(step)} of {source.description}); the last good checkpoint is step "
            f"{ckpts.latest.latest_step()} in {workdir}.")
      clips_since += config.batch_size
      done = step + 1
      bar.update(1)
      if done % config.log_every == 0 or done == config.num_steps:
        now = time.perf_counter()
        metrics["throughput/clips_per_s"] = clips_since / (now - t_log)
        t_log, clips_since = now, 0
        writer.write(done, metrics)
        bar.set_postfix(loss=f"{metrics['loss/total']:.3f}", clips_s=f"{metrics['throughput/clips_per_s']:.1f}")
      if done % config.eval.every == 0 or done == config.num_steps:
        validate(done)
      if done % config.checkpoint_every == 0 or done == config.num_steps:
        ckpts.save(ckpts.latest, state, meta_for(done))
    step = config.num_steps
  finally:
    bar.close()
    writer.close()
  if not last_val:  # Resumed an already finished run.
    last_val = validate(int(jax.device_get(state.step)))["all"]
  return {"step": int(jax.device_get(state.step)), "val": last_val, "best": best_score}
