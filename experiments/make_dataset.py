r"""Writes a synthetic clip dataset (tensorstore zarr), resumable after a kill.

  python -m experiments.make_dataset \
      --config=experiments/configs/synthetic_data.py:val --out=data/synthetic_val

`--out` is a local folder or a kvstore URL (gs://bucket/path, ...). Rerunning the
same command continues from the last complete chunk; a different config on an
existing dataset is refused. See experiments/configs/synthetic_data.py for the
variants and their expected time.
"""

from __future__ import annotations

import json
import multiprocessing
import time
from typing import Iterator

from absl import app, flags, logging
from ml_collections import config_flags
import tensorstore as ts
import tqdm

from tracks4d import synthetic
from tracks4d.io.dataset import DatasetInfo, TrackDataset
from tracks4d.training import checkpoint


def _make(args):
  cfg, seed, index = args
  tracks, info = synthetic.generate_clip(cfg, seed, index, with_info=True)
  return tracks, synthetic.FAMILIES.index(info.family), synthetic.CAMERA_PATHS.index(info.camera)


def _clips(cfg, seed: int, indices, workers: int) -> Iterator:
  jobs = [(cfg, seed, i) for i in indices]
  if workers <= 1:
    yield from map(_make, jobs)
    return
  # spawn, not fork: the parent has imported JAX, which is multithreaded.
  with multiprocessing.get_context("spawn").Pool(workers) as pool:
    yield from pool.imap(_make, jobs, chunksize=4)


def make_dataset(config, out: str, context: ts.Context | None = None, progress: bool = True) -> TrackDataset:
  """Generates `config.num_clips` clips into a dataset at `out`, resuming if possible.

  Args:
    config: a synthetic_data config (num_clips, seed, chunk_clips, workers, generator).
    out: folder or kvstore URL.
    context: tensorstore context (share one to use a `memory://` store).
    progress: show a progress bar.

  Returns:
    The complete dataset, opened for reading.

  Raises:
    ValueError: for invalid settings, or when `out` holds a different dataset.
  """
  cfg = synthetic.SyntheticConfig.from_dict(config.generator)
  generator = json.loads(json.dumps(config.generator.to_dict()))  # As the dataset's info stores it.
  for key, unset in checkpoint.ADDED_KEYS.items():  # Recorded only when set, so older datasets resume.
    name = key.removeprefix("data.generator.")
    if name != key and generator.get(name, unset) == unset:
      generator.pop(name, None)
  info = DatasetInfo(
      num_clips=int(config.num_clips), max_frames=cfg.num_frames[1], max_tracks=cfg.max_tracks,
      chunk_clips=int(config.chunk_clips), has_gt=True, families=synthetic.FAMILIES,
      cameras=synthetic.CAMERA_PATHS,
      source={"generator": generator, "seed": int(config.seed)})
  ds = TrackDataset.create(out, info, context=context)
  start = ds.complete_chunks
  if start:
    logging.info("Resuming %s at chunk %d of %d.", out, start, info.num_chunks)
  indices = [i for c in range(start, info.num_chunks) for i in ds.chunk_range(c)]
  bar = tqdm.tqdm(total=info.num_clips, initial=ds.num_complete, unit="clip", disable=not progress,
                  desc="make_dataset")
  t0 = time.time()
  clips = _clips(cfg, int(config.seed), indices, int(config.workers))
  for chunk in range(start, info.num_chunks):
    batch = [next(clips) for _ in ds.chunk_range(chunk)]
    ds.write_chunk(chunk, [b[0] for b in batch], family=[b[1] for b in batch], camera=[b[2] for b in batch])
    ds.commit(chunk + 1)
    bar.update(len(batch))
  bar.close()
  made = len(indices)
  if made:
    logging.info("Wrote %d clips in %.1f s (%.1f clips/s).", made, time.time() - t0, made / (time.time() - t0))
  return TrackDataset.open(out, context=context)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  make_dataset(_CONFIG.value, _OUT.value)


if __name__ == "__main__":
  # Flags exist only when run as a script, so this module's functions can be
  # imported beside other mains (absl flags are process-global).
  _CONFIG = config_flags.DEFINE_config_file("config", None, "Dataset config file (…/synthetic_data.py:variant).")
  _OUT = flags.DEFINE_string("out", None, "Output folder or kvstore URL.")
  flags.mark_flags_as_required(["config", "out"])
  app.run(main)
