"""The tensorstore clip dataset and experiments.make_dataset: round trip, kvstores,
resume after a kill, and errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest
import tensorstore as ts

from experiments import make_dataset
from experiments.configs import synthetic_data
from tracks4d import synthetic
from tracks4d.io.dataset import BatchSampler, DatasetInfo, TrackDataset
from tracks4d.tracks import batch_tracks, unbatch_tracks

REPO = Path(__file__).resolve().parents[1]


def tiny_config(num_clips=6):
  config = synthetic_data.get_config("tiny")
  config.num_clips = num_clips
  return config


def expected_clips(config):
  cfg = synthetic.SyntheticConfig.from_dict(config.generator)
  return [synthetic.generate_clip(cfg, config.seed, i) for i in range(config.num_clips)]


def assert_same_clips(dataset, clips):
  got = unbatch_tracks(dataset.read(list(range(len(clips)))))
  for a, b in zip(got, clips):
    jax.tree.map(np.testing.assert_array_equal, a, b)


@pytest.mark.parametrize("where", ["local", "memory"])
def test_make_dataset_round_trip(tmp_path, where):
  config = tiny_config()
  context = ts.Context()
  out = str(tmp_path / "ds") if where == "local" else "memory://ds/"
  ds = make_dataset.make_dataset(config, out, context=context, progress=False)
  assert ds.num_complete == 6
  assert_same_clips(ds, expected_clips(config))
  fams = ds.read_labels("family")
  assert ((fams >= 0) & (fams < len(synthetic.FAMILIES))).all()


def test_added_generator_setting_is_recorded_only_when_set(tmp_path):
  """A dataset begun before `mocap_exclude` existed (its source lacks the key) resumes
  under the new code; one made with the setting records it."""
  config = tiny_config(2)
  ds = make_dataset.make_dataset(config, str(tmp_path / "a"), progress=False)
  assert "mocap_exclude" not in ds.info.source["generator"]
  config.generator.mocap_exclude = ("nosuch",)  # Only mocap clips would check the name.
  config.generator.families = ("static",)
  ds = make_dataset.make_dataset(config, str(tmp_path / "b"), progress=False)
  assert ds.info.source["generator"]["mocap_exclude"] == ["nosuch"]


def test_read_batches_with_masks(tmp_path):
  clips = expected_clips(tiny_config(4))
  info = DatasetInfo(num_clips=4, max_frames=12, max_tracks=200, chunk_clips=2)
  ds = TrackDataset.create(str(tmp_path / "d"), info)
  ds.write_chunk(0, clips[:2])
  ds.commit(1)
  with pytest.raises(ValueError, match=r"clip indices must be in \[0, 2\)"):
    ds.read([3])
  ds.write_chunk(1, clips[2:])
  ds.commit(2)
  batch = ds.read([3, 1], trim=False)
  assert batch.xy_px.shape == (2, 12, 200, 2)
  ref = batch_tracks([clips[3], clips[1]], 12, 200)
  jax.tree.map(np.testing.assert_array_equal, batch, ref)


def test_write_refuses_oversized_clip_and_other_dataset(tmp_path):
  clips = expected_clips(tiny_config(2))
  info = DatasetInfo(num_clips=2, max_frames=12, max_tracks=5, chunk_clips=2)
  ds = TrackDataset.create(str(tmp_path / "d"), info)
  with pytest.raises(ValueError, match="Nothing is cut"):
    ds.write_chunk(0, clips)
  other = DatasetInfo(num_clips=3, max_frames=12, max_tracks=5, chunk_clips=2)
  with pytest.raises(ValueError, match="holds a different dataset"):
    TrackDataset.create(str(tmp_path / "d"), other)


def test_open_detects_disagreeing_arrays(tmp_path):
  path = tmp_path / "d"
  TrackDataset.create(str(path), DatasetInfo(num_clips=4, max_frames=6, max_tracks=5, chunk_clips=2))
  meta = json.loads((path / "dataset.json").read_text())
  meta["max_tracks"] = 7
  (path / "dataset.json").write_text(json.dumps(meta))
  with pytest.raises(ValueError, match=r"array 'xy_px' has shape \(4, 6, 5, 2\); dataset.json implies \(4, 6, 7, 2\)"):
    TrackDataset.open(str(path))
  with pytest.raises(ValueError, match="not a tracks4d dataset"):
    TrackDataset.open(str(tmp_path / "nothing"))
  (path / "dataset.json").write_text("{broken")
  with pytest.raises(ValueError, match="dataset.json is malformed"):
    TrackDataset.open(str(path))


def test_batch_sampler_resumes_identically():
  a = BatchSampler(10, 3, seed=5)
  first = [a.next() for _ in range(4)]
  b = BatchSampler.from_state(10, 3, a.state())
  np.testing.assert_array_equal(b.next(), a.next())
  assert all(len(x) == 3 for x in first)
  # Within an epoch, no clip repeats.
  c = BatchSampler(9, 3, seed=1)
  assert len(set(np.concatenate([c.next() for _ in range(3)]).tolist())) == 9
  with pytest.raises(ValueError, match="batch_size"):
    BatchSampler(2, 3, seed=0)


def test_kill_and_resume_gives_identical_dataset(tmp_path):
  """Kill make_dataset after its first committed chunk, rerun, compare with a clean run."""
  out = tmp_path / "killed"
  args = [sys.executable, "-m", "experiments.make_dataset",
          "--config=experiments/configs/synthetic_data.py:tiny", "--config.num_clips=10",
          f"--out={out}"]
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
  deadline = time.time() + 120
  progress = out / "progress.json"
  while time.time() < deadline and proc.poll() is None:
    if progress.exists():
      try:
        if json.loads(progress.read_text())["complete_chunks"] >= 1:
          break
      except ValueError:  # Being replaced right now.
        pass
    time.sleep(0.05)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  done_at_kill = json.loads(progress.read_text())["complete_chunks"]
  assert done_at_kill >= 1
  rerun = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert rerun.returncode == 0, rerun.stderr[-2000:]
  config = tiny_config(10)
  assert_same_clips(TrackDataset.open(str(out)), expected_clips(config))


def test_training_batches_from_a_dataset(tmp_path):
  from tracks4d.training import data

  ds = make_dataset.make_dataset(tiny_config(6), str(tmp_path / "ds"), progress=False)
  sub = data.SubsampleConfig(min_frames=4, max_frames=8, num_tracks=10)
  source = data.DatasetSource(ds, sub, batch_size=2, seed=3)
  a, b = source.batch(4), source.batch(4)
  jax.tree.map(np.testing.assert_array_equal, a, b)  # A pure function of the step.
  assert a.xy_px.shape == (2, 8, 10, 2)
  np.testing.assert_array_equal(source.clip_ids(4), BatchSampler(6, 2, seed=3).indices_at(4))
