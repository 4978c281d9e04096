r"""Synthetic track datasets written by `experiments.make_dataset`.

Run (writes a resumable tensorstore zarr dataset; rerun the same command to resume
after a kill):

  python -m experiments.make_dataset \
      --config=experiments/configs/synthetic_data.py:val --out=data/synthetic_val

Variants (`:arg`):
  default  10,000 training clips, seed 0, t in 24..50, grid 15. Not run here;
           extrapolated from `val` (23 clips/s, 131 MB per 512 clips): about
           7 minutes with 2 workers on a 2-core machine, about 2.6 GB on disk.
  val      512 held-out clips (seed 1000, disjoint from training seeds): measured
           24 s with 2 workers on a 2-core machine, 131 MB.
  tiny     6 short clips (for CPU tests): about 1 s.

Every variant can be overridden on the command line, e.g.
`--config.num_clips=100 --config.generator.noise.noise_px=0`.
"""

from __future__ import annotations

import ml_collections

from tracks4d.synthetic import CAMERA_PATHS, FAMILIES, ORBIT_DEG


def generator_config() -> ml_collections.ConfigDict:
  """The generator's settings (tracks4d.synthetic.SyntheticConfig) as a ConfigDict."""
  return ml_collections.ConfigDict({
      "num_frames": (24, 50),
      "grid_size": 15,
      "query_stride": 20,
      "families": FAMILIES,
      "camera_paths": CAMERA_PATHS,
      "noise": {"noise_px": 0.5, "outlier_frac": 0.02, "drop_frac": 0.05},
      "cells_per_side": 48,
      "min_depth": 0.05,
      "mocap_dir": "",
      "mocap_exclude": (),
      "orbit_deg": ORBIT_DEG,
      "object_only_frac": 0.0,
  })


def get_config(arg: str = "default") -> ml_collections.ConfigDict:
  """Dataset config for variant `arg` in {default, val, tiny}."""
  variants = {
      "default": dict(num_clips=10_000, seed=0, chunk_clips=32, workers=2),
      "val": dict(num_clips=512, seed=1000, chunk_clips=32, workers=2),
      "tiny": dict(num_clips=6, seed=7, chunk_clips=2, workers=1),
  }
  if arg not in variants:
    raise ValueError(f"synthetic_data config: unknown variant {arg!r}; expected one of {sorted(variants)}.")
  config = ml_collections.ConfigDict(variants[arg])
  config.generator = generator_config()
  if arg == "tiny":
    config.generator.num_frames = (8, 12)
    config.generator.grid_size = 6
    config.generator.query_stride = 5
  return config
