r"""Throughput of the synthetic generator, in one process and in a worker pool.

  python -m experiments.bench_synthetic --num_clips=300 --workers=2

Prints clips/s and clips/min for the default SyntheticConfig (t in 24..50, grid 15,
all families, tracker noise on) after a short warm-up.
"""

from __future__ import annotations

import multiprocessing
import time

from absl import app, flags

from tracks4d import synthetic


def _one(i: int):
  clip = synthetic.generate_clip(synthetic.SyntheticConfig(), seed=123, index=i)
  return clip.num_frames, clip.num_tracks


def measure(num_clips: int, workers: int = 0) -> tuple[float, float, float]:
  """(clips per second, mean frames, mean tracks) over `num_clips` clips."""
  for i in range(3):
    _one(10_000_000 + i)  # Warm-up (imports, mocap loading).
  t0 = time.perf_counter()
  if workers:
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
      pool.map(_one, range(2 * workers))  # Warm the workers before timing.
      t0 = time.perf_counter()
      sizes = pool.map(_one, range(num_clips), chunksize=8)
  else:
    sizes = [_one(i) for i in range(num_clips)]
  dt = time.perf_counter() - t0
  return num_clips / dt, sum(s[0] for s in sizes) / num_clips, sum(s[1] for s in sizes) / num_clips


def main(argv):
  del argv
  rate, t, n = measure(_NUM.value)
  print(f"1 process : {rate:6.1f} clips/s = {60 * rate:6.0f} clips/min  (mean t={t:.1f}, n={n:.0f})")
  if _WORKERS.value:
    rate, _, _ = measure(_NUM.value, _WORKERS.value)
    print(f"{_WORKERS.value} workers : {rate:6.1f} clips/s = {60 * rate:6.0f} clips/min")


if __name__ == "__main__":
  # Flags exist only when run as a script, so this module's functions can be
  # imported beside other mains (absl flags are process-global).
  _NUM = flags.DEFINE_integer("num_clips", 300, "Clips to generate per measurement.")
  _WORKERS = flags.DEFINE_integer("workers", 2, "Worker processes for the pooled measurement (0: skip).")
  app.run(main)
