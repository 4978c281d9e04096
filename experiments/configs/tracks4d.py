r"""Training the tracks-to-4D network on synthetic clips (no 3D labels used).

Run:

  python -m experiments.train --config=experiments/configs/tracks4d.py:small --workdir=workdirs/small

Variants (`:arg`):
  small  0.26 M parameters, batch 8 clips x 16-32 frames x 64 tracks, synthetic
         clips generated on the fly by 1 worker process, static points
         triangulated from the predicted cameras (model/triangulation.py).
         Expected: 1,400 steps (11,200 clips) in about 50 min on a 2-core CPU;
         final validation on 32 held-out clips: depth AbsRel 0.313 (identity
         cameras + constant depth: 0.423), 0.547 on moving points, ATE / median
         depth 0.011 (trivial: 0.063), RPE rotation 0.31 deg (trivial 0.54).
         `--config.model.triangulate_static=False` is the peer's parameterisation
         (an earlier shipped model: AbsRel 0.424 at step 1,400).
         `--config.model.triangulation_gamma_ref=0.01` lets moving tracks (large
         gamma) keep the network's static point: tried (workdirs/small_gr), final
         validation AbsRel 0.414 (0.264 on moving points); worse overall, see
         BENCHMARKS.md.

  peer   the TracksTo4D-sized model (12.66 M parameters); for accelerators.
  tiny   for CPU tests: 28 k parameters, 6-frame clips, a few steps, seconds.

The shipped checkpoint (tracks4d/pretrained/small, see its MODEL_CARD.md) is the `small`
run above (--workdir=workdirs/small_vp) fine-tuned three times, plus a learned camera
refinement trained on top (the fourth run below). The first two, 600 steps
each, about 25 min each on a 2-core CPU, predate `camera_init` and `focal_correction`
(equivalent to `--config.model.camera_init=prior --config.model.focal_correction=True`):

  python -m experiments.train --config=experiments/configs/tracks4d.py:small \
      --workdir=workdirs/ft_prior --config.init_from=workdirs/small_vp/model \
      --config.seed=1 --config.num_steps=600 --config.eval.every=150 \
      --config.loss.warmup_steps=0 --config.optimizer.warmup_steps=50 \
      --config.optimizer.learning_rate=2e-4 --config.model.triangulation_ridge=1e-2 \
      --config.loss.static_prior=1.0
  # then the same with --workdir=workdirs/ft_orbit
  #   --config.init_from=workdirs/ft_prior/model --config.seed=2
  #   "--config.data.generator.orbit_deg=(20.0, 120.0)"

A 10x larger triangulation ridge and the static-prior loss (which trains the ridge's
prior point) improve the depth of moving and low-parallax tracks; the wider orbits
teach fast camera turns (up to ~5 deg per frame). Expected: validation AbsRel 0.270
after the first (the `small` run's 32 clips; 0.235 on moving points, ATE / median
depth 0.013); 0.257 after the second, on its own validation clips, which have its
wider orbits (0.256, 0.017).

The third (2,000 steps scheduled, about 45 min on a 2-core CPU at 6 clips/s) adds the
factorisation camera start (`camera_init="factorization"`, the default of small and peer),
switches the focal factor off and uses 30% object-only clips:
  ... --workdir=workdirs/cpu_ft4 --config.init_from=workdirs/ft_orbit/model --config.seed=4
      --config.num_steps=2000 --config.eval.every=500 --config.model.focal_correction=False
      --config.data.generator.object_only_frac=0.3 (other flags as above)
Expected: validation AbsRel 0.217, 0.206, 0.203 at steps 500-1,500 on its own mix (30%
object-only); its best export, step 1,500, is the shipped model's starting point
(MODEL_CARD.md has the command). With the code of its time it stopped at step 1,828 on a non-finite gradient (a
clip with fully occluded frames; fixed in commit 892cc22). The shipped config.json adds
`uncorrected_starts=True` (`--config.model.uncorrected_starts=True`: each start is also
scored without the head's correction; much better on fast camera turns, slightly worse on
ordinary clips) and `occlusion_weight=1.0` (`--config.model.occlusion_weight=1.0`: the
factorisation's mirrors are also weighed by where the tracker's hidden points lie).

The fourth (1,500 steps, about 30 min on an idle 2-core CPU) adds the camera refinement
(`refine_layers=1`) and trains only it, the third run's parameters frozen:
  ... --workdir=workdirs/ft_refine_only --config.init_from=<the third run's model>
      --config.seed=6 --config.num_steps=1500 --config.eval.every=500
      --config.optimizer.learning_rate=1e-3 "--config.optimizer.train_only=^refine_"
      --config.model.refine_layers=1 --config.model.uncorrected_starts=True
      --config.model.occlusion_weight=1.0 (other flags as the third)
Expected: validation AbsRel 0.1938, 0.1925, 0.1921 at steps 500-1,500; step 1,500 is the
shipped model. The held-out comparison with the baselines is in BENCHMARKS.md.

Override anything on the command line, e.g. `--config.num_steps=500`,
`--config.data.source=dataset --config.data.dataset=data/synthetic_train`,
`--config.model.dtype=bfloat16`. Resuming: rerun the same command; a workdir that
holds another config's checkpoints is refused.
"""

from __future__ import annotations

import ml_collections

from experiments.configs.synthetic_data import generator_config
from tracks4d.model.config import model_config


def get_config(arg: str = "small") -> ml_collections.ConfigDict:
  """Training config of variant `arg` in {small, peer, tiny}."""
  if arg not in ("small", "peer", "tiny"):
    raise ValueError(f"tracks4d config: unknown variant {arg!r}; expected one of ['peer', 'small', 'tiny'].")
  c = ml_collections.ConfigDict()
  c.seed = 0
  # A model folder (e.g. tracks4d/pretrained/small) whose parameters start the run.
  c.init_from = ""
  c.num_steps = 20_000
  c.batch_size = 8
  c.log_every = 50
  c.checkpoint_every = 250
  # Model: a named variant (tracks4d.model.config) plus overrides.
  c.model = ml_collections.ConfigDict({"variant": arg, "dtype": "float32", "attention": "chunked",
                                       "chunk_size": 256, "triangulate_static": True, "triangulation_ridge": 1e-3,
                                       "triangulation_gamma_ref": 0.0,
                                       "camera_init": model_config(arg).camera_init,
                                       "focal_correction": model_config(arg).focal_correction,
                                       "uncorrected_starts": model_config(arg).uncorrected_starts,
                                       "occlusion_weight": model_config(arg).occlusion_weight,
                                       "start_score_weights": model_config(arg).start_score_weights,
                                       "refine_layers": model_config(arg).refine_layers,
                                       "resection_steps": model_config(arg).resection_steps,
                                       "fallback_residual": model_config(arg).fallback_residual,
                                       "fallback_relative": model_config(arg).fallback_relative,
                                       "fallback_second_body": model_config(arg).fallback_second_body})
  c.data = ml_collections.ConfigDict({
      "source": "synthetic",  # or "dataset"
      "dataset": "",  # folder or kvstore URL when source == "dataset"
      "generator": generator_config(),
      "min_frames": 20, "max_frames": 49, "num_tracks": 100, "min_visible": 2,
      "workers": 1, "prefetch": 4,
  })
  c.optimizer = ml_collections.ConfigDict({"learning_rate": 3e-4, "warmup_steps": 200, "end_lr_factor": 0.05,
                                           "weight_decay": 0.0, "clip_norm": 1.0,
                                           # A regex: train only the parameters whose path it matches.
                                           "train_only": ""})
  c.loss = ml_collections.ConfigDict({"static": 1.0, "dynamic": 50.0, "negative_depth": 1.0, "sparsity": 0.001,
                                      "warmup": 1.0, "warmup_steps": 100,
                                      "static_prior": 0.0})
  # Validation on held-out synthetic clips (seed disjoint from training clips).
  c.eval = ml_collections.ConfigDict({"every": 1000, "num_clips": 48, "seed": 1_000_003, "batch_size": 8})
  if arg == "small":  # Sized for a 2-core CPU.
    c.num_steps = 1400
    c.eval.every = 350
    c.eval.num_clips = 32
    c.data.min_frames, c.data.max_frames, c.data.num_tracks = 16, 32, 64
    c.optimizer.learning_rate = 5e-4
    c.optimizer.warmup_steps = 100
  if arg == "peer":
    c.optimizer.learning_rate = 1e-4
  if arg == "tiny":
    c.num_steps = 6
    c.batch_size = 2
    c.log_every = 1
    c.checkpoint_every = 2
    c.data.generator.num_frames = (6, 8)
    c.data.generator.grid_size = 4
    c.data.generator.query_stride = 4
    c.data.min_frames, c.data.max_frames, c.data.num_tracks = 4, 6, 12
    c.data.workers = 0
    c.eval.every = 3
    c.eval.num_clips = 2
    c.eval.batch_size = 2
    c.loss.warmup_steps = 2
    c.optimizer.warmup_steps = 2
  return c
