r"""Configs of `experiments.render_views`: a watchable video of one scene and its warps, or a
multi-view dataset for the diffusion stage.

Run:

  # One scene, the six camera moves and a static view: an mp4 (rows = moves; columns =
  # source | warped with true depth | warped with depth from tracks | true target | mask)
  # and a PNG of the camera paths, with warp PSNRs printed and saved as summary.json.
  python -m experiments.render_views --config=experiments/configs/render_views.py --out=runs/render_views
  # about 20 s on 2 CPU cores (most of it compiling).

  # The multi-view dataset (tensorstore zarr, resumable: rerun the same command after a kill).
  python -m experiments.render_views --config=experiments/configs/render_views.py:dataset --out=data/multiview
  # 2,000 scenes x 2 targets = 4,000 clip pairs of 16 frames at 64x64: about 7 minutes on 2 busy
  # cores (measured 583 clip pairs per minute with writing, about 1,000 without), about 1.2 GB.

  # Measurements over 32 random scenes (64 clip pairs): warp PSNR, masks, track visibility, speed.
  python -m experiments.render_views --config=experiments/configs/render_views.py:eval --out=runs/render_eval
  # about 40 s.

Variants (`:arg`):
  default        the video of scene (seed 0, index 0) at 64x64, 17 frames.
  tiny           the same at 32x32, 9 frames, two moves (for tests): a few seconds.
  dataset        2,000 training scenes (seed 0), 2 targets each, 16 frames at 64x64.
  dataset_val    256 held-out scenes (seed 1000): about 55 s, 150 MB.
  dataset_tiny   6 scenes at 32x32, 8 frames (for tests): a few seconds.
  eval           measurements over 32 scenes (seed 2000) of the dataset's generator settings.
  eval_tiny      the same over 2 tiny scenes (for tests).

Override anything on the command line, e.g. `--config.index=7 --config.generator.image_hw=128,128`.
"""

from __future__ import annotations

import ml_collections

from generate.cameras import TARGET_KINDS


def generator_config() -> ml_collections.ConfigDict:
  """generate.multiview_data.MultiViewConfig settings as a ConfigDict."""
  return ml_collections.ConfigDict({
      "num_frames": 16,
      "image_hw": (64, 64),
      "num_targets": 2,
      "target_kinds": TARGET_KINDS,
      "orbit_deg": (0.5, 2.0),
      "dolly_frac": (0.005, 0.025),
      "static_deg": (10.0, 30.0),
      "follow_source_prob": 0.25,
      "dolly_zoom_prob": 0.25,
      "source_cameras": ("static", "handheld", "orbit", "dolly", "pan"),
      "max_objects": 4,
      "grid_size": 10,
      "num_query_frames": 3,
      "antialias": 1,
      "fov_deg": (50.0, 70.0),
  })


def get_config(arg: str = "default") -> ml_collections.ConfigDict:
  """Config of variant `arg` in {default, tiny, dataset, dataset_val, dataset_tiny, eval, eval_tiny}."""
  variants = {
      "default": dict(mode="views", seed=0, index=0),
      "tiny": dict(mode="views", seed=0, index=0),
      "dataset": dict(mode="dataset", seed=0, num_scenes=2000, chunk_scenes=32),
      "dataset_val": dict(mode="dataset", seed=1000, num_scenes=256, chunk_scenes=32),
      "dataset_tiny": dict(mode="dataset", seed=7, num_scenes=6, chunk_scenes=2),
      "eval": dict(mode="eval", seed=2000, num_scenes=32),
      "eval_tiny": dict(mode="eval", seed=2000, num_scenes=2),
  }
  if arg not in variants:
    raise ValueError(f"render_views config: unknown variant {arg!r}; expected one of {sorted(variants)}.")
  config = ml_collections.ConfigDict({"mode": "views", "seed": 0, "index": 0, "num_scenes": 1, "chunk_scenes": 1})
  config.update(variants[arg])
  config.generator = generator_config()
  # The video: which target trajectories to show, and their amounts per frame.
  config.views = ml_collections.ConfigDict({
      "kinds": TARGET_KINDS,
      "orbit_deg": 1.5,        # degrees per frame
      "dolly_frac": 0.02,      # fraction of the look-at depth per frame
      "static_deg": 20.0,      # total orbit of the static view (orbit_right)
      "scale": 4,              # upscaling of each panel
      "fps": 8.0,
  })
  if arg in ("default", "tiny"):
    config.generator.num_frames = 17
  if arg == "tiny":
    config.generator.num_frames = 9
    config.generator.image_hw = (32, 32)
    config.generator.grid_size = 6
    config.views.kinds = ("orbit_left", "dolly_in")
  if arg in ("dataset_tiny", "eval_tiny"):
    config.generator.num_frames = 8
    config.generator.image_hw = (32, 32)
    config.generator.grid_size = 5
  return config
