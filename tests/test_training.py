"""Training: a tiny run end to end, exact resume after a kill, refusal of bad runs,
NaN handling, data-parallel sharding (8 simulated devices) and 2 processes."""

from __future__ import annotations

import functools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import tracks4d as train_configs
from tracks4d import synthetic
from tracks4d.io.dataset import DatasetInfo, TrackDataset
from tracks4d.tracks import batch_tracks
from tracks4d.training import checkpoint, data, loop

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "JAX_PLATFORMS": "cpu"}


def tiny(**overrides):
  config = train_configs.get_config("tiny")
  for k, v in overrides.items():
    config[k] = v
  return config


def train_cmd(workdir, *extra):
  return [sys.executable, "-m", "experiments.train", "--config=experiments/configs/tracks4d.py:tiny",
          f"--workdir={workdir}", *extra]


def params_of(workdir: Path):
  net = checkpoint.load_model(workdir)
  from flax import nnx

  return jax.tree.map(np.asarray, nnx.state(net, nnx.Param))


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("run")
  result = loop.train_and_evaluate(tiny(), str(workdir), progress=False)
  return workdir, result


def test_tiny_run_writes_everything(finished_run):
  workdir, result = finished_run
  assert result["step"] == 6 and np.isfinite(result["val"]["abs_rel"])
  assert list((workdir / "tensorboard").glob("events.out.tfevents.*"))
  lines = [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert any("val/abs_rel" in x for x in lines) and any("throughput/clips_per_s" in x for x in lines)
  assert (workdir / "checkpoints" / "latest" / "6").is_dir()
  assert (workdir / "checkpoints" / "best").is_dir()
  net = checkpoint.load_model(workdir)  # The exported best model loads.
  assert net.cfg.dim == 32
  # Settings without parameters can be changed on loading; the parameters stay the same.
  other = checkpoint.load_model(workdir, triangulation_ridge=0.5)
  assert other.cfg.triangulation_ridge == 0.5 and other.cfg.dim == 32
  np.testing.assert_array_equal(other.embed.kernel[...], net.embed.kernel[...])
  with pytest.raises(ValueError, match=r"load_model: unknown settings \['width'\]"):
    checkpoint.load_model(workdir, width=3)


def test_rerun_of_finished_run_resumes_and_returns(finished_run):
  workdir, result = finished_run
  again = loop.train_and_evaluate(tiny(), str(workdir), progress=False)
  assert again["step"] == 6


def test_other_config_in_workdir_is_refused(finished_run):
  workdir, _ = finished_run
  config = tiny()
  config.model.attention = "full"
  with pytest.raises(ValueError, match=r"holds checkpoints of another config \(model.attention: 'chunked' there"):
    loop.train_and_evaluate(config, str(workdir), progress=False)


@pytest.mark.parametrize("key,new_value", [("model.uncorrected_starts", True), ("model.occlusion_weight", 1.0),
                                           ("model.start_score_weights", (50.0, 1.0)),
                                           ("data.generator.mocap_exclude", ("drink",))])
def test_workdir_from_before_an_added_setting_resumes_only_with_its_old_value(tmp_path, key, new_value):
  # A run whose config.json predates an added setting behaves as its old value.
  assert key in checkpoint.ADDED_KEYS
  *parents, leaf = key.split(".")
  node = lambda d: functools.reduce(lambda x, k: x[k], parents, d)
  config = tiny().to_dict()
  checkpoint.check_config_matches(tmp_path, config)
  saved = json.loads((tmp_path / "config.json").read_text())
  del node(saved)[leaf]
  (tmp_path / "config.json").write_text(json.dumps(saved))
  checkpoint.check_config_matches(tmp_path, config)
  node(config)[leaf] = new_value
  shown = repr(list(new_value) if isinstance(new_value, tuple) else new_value)
  with pytest.raises(ValueError, match=rf"{re.escape(key)}: None there vs {re.escape(shown)} now"):
    checkpoint.check_config_matches(tmp_path, config)


def test_init_from_starts_from_a_saved_model(finished_run, tmp_path):
  """`init_from` copies a model's parameters (fine-tuning); another architecture
  or a folder without a model is refused, naming the setting."""
  workdir, _ = finished_run
  config = tiny()
  net = loop.model_lib.create_model(loop.parse_config(config).model, seed=123)
  loop.init_params(net, str(workdir / "model"))
  from flax import nnx

  got = jax.tree.map(np.asarray, nnx.state(net, nnx.Param))
  jax.tree.map(np.testing.assert_array_equal, got, params_of(workdir))
  # A part the saved model lacks (the camera refinement) keeps its initial values;
  # with its zero read-out the outputs are the saved model's.
  refined = loop.model_lib.create_model(loop.parse_config(config).model, seed=123, refine_layers=1)
  loop.init_params(refined, str(workdir / "model"))
  assert np.abs(np.asarray(refined.refine_embed.kernel[...])).max() > 0
  batch = jax.tree.map(jnp.asarray, batch_tracks([synthetic.generate_clip(loop.parse_config(config).generator, 0, 0)]))
  np.testing.assert_allclose(loop.model_lib.forward_jit(refined, batch).c2w, loop.model_lib.forward_jit(net, batch).c2w,
                             atol=1e-6)
  bigger = loop.model_lib.create_model("tiny", seed=0, dim=48)
  with pytest.raises(ValueError, match="init_from: .* another architecture"):
    loop.init_params(bigger, str(workdir / "model"))
  config.init_from = str(tmp_path / "nothing")
  with pytest.raises(ValueError, match="init_from: .*not a tracks4d model folder"):
    loop.train_and_evaluate(config, str(tmp_path / "w"), progress=False)


def test_train_only_updates_just_the_matching_parameters(finished_run, tmp_path):
  """`optimizer.train_only`: a part added to a saved model (the camera refinement)
  is trained while the saved parameters stay; a pattern matching nothing is
  refused at the start, naming the setting."""
  workdir, _ = finished_run
  config = tiny()
  config.init_from = str(workdir / "model")
  config.model.refine_layers = 1
  config.optimizer.train_only = "^refine_"
  loop.train_and_evaluate(config, str(tmp_path / "refine"), progress=False)
  flat = lambda tree: {jax.tree_util.keystr(p): x for p, x in jax.tree_util.tree_leaves_with_path(tree)}
  before, after = flat(params_of(workdir)), flat(params_of(tmp_path / "refine"))
  assert set(before) < set(after)
  for key, value in before.items():
    np.testing.assert_array_equal(after[key], value, err_msg=key)
  trained = [k for k in after if k not in before]
  assert trained and all("refine_" in k for k in trained)
  assert np.abs(next(v for k, v in after.items() if "refine_head" in k and "kernel" in k)).max() > 0
  config.optimizer.train_only = "^nothing_here"
  with pytest.raises(ValueError, match=r"optimizer.train_only: '\^nothing_here' matches no parameter"):
    loop.train_and_evaluate(config, str(tmp_path / "none"), progress=False)


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda c: c.model.update(variant="giant"), "unknown 'giant'"),
        (lambda c: c.update(batch_size=0), "batch_size: expected a positive integer"),
        (lambda c: c.data.update(min_frames=9), "min_frames/max_frames"),
        (lambda c: c.data.update(max_frames=20), "exceeds the generator's longest clip"),
        (lambda c: c.data.update(source="web"), "data.source"),
        (lambda c: c.data.update(source="dataset"), "data.dataset: a folder"),
    ],
)
def test_misconfigured_runs_stop_at_start(tmp_path, edit, match):
  config = tiny()
  edit(config)
  with pytest.raises(ValueError, match=match):
    loop.train_and_evaluate(config, str(tmp_path / "w"), progress=False)


def test_dataset_whose_arrays_disagree_is_refused(tmp_path):
  path = tmp_path / "ds"
  TrackDataset.create(str(path), DatasetInfo(num_clips=4, max_frames=8, max_tracks=40, chunk_clips=2))
  meta = json.loads((path / "dataset.json").read_text())
  meta["max_frames"] = 9
  (path / "dataset.json").write_text(json.dumps(meta))
  config = tiny()
  config.data.source, config.data.dataset = "dataset", str(path)
  with pytest.raises(ValueError, match="array 'xy_px' has shape"):
    loop.train_and_evaluate(config, str(tmp_path / "w"), progress=False)


def test_nan_loss_stops_with_step_and_clips_after_checkpoint(tmp_path, monkeypatch):
  original = data.SyntheticSource.iterate

  def poisoned(self, start, stop):
    for step, batch in original(self, start, stop):
      if step == 3:
        xy = np.array(batch.xy_px)
        xy[0, 0, 0, 0] = np.nan
        batch = batch.replace(xy_px=xy)
      yield step, batch

  monkeypatch.setattr(data.SyntheticSource, "iterate", poisoned)
  with pytest.raises(FloatingPointError, match=r"at step 3 \(batch of clips \[6, 7\].*last good checkpoint is step 2"):
    loop.train_and_evaluate(tiny(), str(tmp_path / "w"), progress=False)
  assert (tmp_path / "w" / "checkpoints" / "latest" / "2").is_dir()


def test_finite_loss_with_a_nan_gradient_stops_before_any_save(tmp_path, monkeypatch):
  # The shipped run's step 1,828: a finite loss but a non-finite gradient, so
  # the parameters after the update are NaN. The run stops at that step, and the
  # NaN state is never checkpointed (checkpoint_every=1 here).
  from tracks4d.training import step as step_lib
  marker = 12345.0
  original_iterate, original_losses = data.SyntheticSource.iterate, step_lib.losses_lib.unsupervised_losses

  def marked(self, start, stop):
    for step, batch in original_iterate(self, start, stop):
      if step == 3:
        xy = np.array(batch.xy_px)
        xy[0, 0, 0, 0] = marker
        batch = batch.replace(xy_px=xy)
      yield step, batch

  def nan_gradient_on_the_marked_batch(pred, batch, *args, **kwargs):
    out = original_losses(pred, batch, *args, **kwargs)
    # Value 0 always; gradient 0 * sqrt'(1) = 0, but 0 * sqrt'(0) = NaN on the marked batch.
    d = pred.depth.sum()
    off = jnp.minimum(jnp.abs(batch.xy_px[0, 0, 0, 0] - marker), 1.0)
    return out.replace(total=out.total + 0.0 * jnp.sqrt(d - d + off))

  monkeypatch.setattr(data.SyntheticSource, "iterate", marked)
  monkeypatch.setattr(step_lib.losses_lib, "unsupervised_losses", nan_gradient_on_the_marked_batch)
  config = tiny()
  config.checkpoint_every = 1
  with pytest.raises(FloatingPointError, match=r"loss is -?[0-9.]+ \(gradient norm nan\) at step 3 \(batch of "
                                               r"clips \[6, 7\].*last good checkpoint is step 3"):
    loop.train_and_evaluate(config, str(tmp_path / "w"), progress=False)
  latest = tmp_path / "w" / "checkpoints" / "latest"
  assert sorted(p.name for p in latest.iterdir()) == ["3"]


def test_killed_run_resumes_to_identical_parameters(finished_run, tmp_path):
  """The command line run is killed mid-way (SIGKILL), then resumed; it ends with
  the parameters of the uninterrupted run (the module's finished run, same config)."""
  clean, killed = finished_run[0], tmp_path / "killed"
  proc = subprocess.Popen(train_cmd(killed), cwd=REPO, env=ENV, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
  latest = killed / "checkpoints" / "latest"
  deadline = time.time() + 240
  while time.time() < deadline and proc.poll() is None:
    if latest.is_dir() and any(p.name.isdigit() for p in latest.iterdir()):
      break
    time.sleep(0.05)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  steps = [int(p.name) for p in latest.iterdir() if p.name.isdigit()]
  assert steps and max(steps) < 6, f"the run was not interrupted mid-way: {steps}"
  result = loop.train_and_evaluate(tiny(), str(killed), progress=False)
  assert result["step"] == 6
  a, b = params_of(clean), params_of(killed)
  jax.tree.map(np.testing.assert_array_equal, a, b)


def test_sharded_step_equals_single_device_step():
  out = subprocess.run([sys.executable, str(REPO / "tests" / "sharded_step_check.py")], cwd=REPO, env=ENV,
                       capture_output=True, text=True, timeout=300)
  assert out.returncode == 0 and "SHARDED_STEP_OK" in out.stdout, out.stderr[-3000:]


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def test_two_process_run_on_localhost(tmp_path):
  port = _free_port()
  procs = [subprocess.Popen(train_cmd(tmp_path / "w", f"--coordinator=localhost:{port}", "--num_processes=2",
                                      f"--process_id={i}", "--config.num_steps=3"),
                            cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
           for i in range(2)]
  outs = [p.communicate(timeout=300) for p in procs]
  for p, (_, err) in zip(procs, outs):
    assert p.returncode == 0, err[-3000:]
  result = json.loads(outs[0][0][outs[0][0].index("{"):])
  assert result["step"] == 3


def test_data_workers_exit_when_the_run_is_killed():
  """A run killed with SIGKILL leaves no data worker behind (data.exit_with_parent,
  the synthetic source's worker initializer)."""
  script = (
      "import concurrent.futures, multiprocessing, os, time\n"
      "from tracks4d.training import data\n"
      "pool = concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context('spawn'),\n"
      "    initializer=data.exit_with_parent, initargs=(os.getpid(), 0.1))\n"
      "print(pool.submit(os.getpid).result(), flush=True)\n"
      "time.sleep(60)\n")
  proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=REPO, env=ENV)
  worker = int(proc.stdout.readline())
  os.kill(worker, 0)  # Alive while the parent is.
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  deadline = time.time() + 20
  while time.time() < deadline:
    try:
      os.kill(worker, 0)
    except ProcessLookupError:
      return
    time.sleep(0.1)
  os.kill(worker, signal.SIGKILL)
  pytest.fail(f"data worker {worker} still running 20 s after its parent was killed")
