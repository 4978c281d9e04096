r"""Feed-forward vs + bundle adjustment vs + fine-tuning, on synthetic clips with
ground truth (the BENCHMARKS.md table).

  bash .ci/in_venv python -m experiments.bench_reconstruct --finetune_steps=40

Another model folder with --model, and a setting that adds no parameters changed
with --override (repeatable, as in experiments.evaluate), e.g. the shipped model
without its second-body fallback:

  bash .ci/in_venv python -m experiments.bench_reconstruct --finetune_steps=40 \
      --override=fallback_second_body=False --override=fallback_residual=0

Scores per clip (depth AbsRel with the per-frame median scale, ATE relative to
the median depth, RPE rotation in degrees) and wall time of each setting,
compilation included (the first clip of a setting pays it).
"""

import json

import numpy as np
from absl import app, flags

import reconstruct
from tracks4d import model as model_lib
from tracks4d import pretrained, synthetic
from tracks4d.training import checkpoint, evaluate

# Every family with a moving camera: orbit and dolly (wide baselines) and
# handheld (small baseline); pan (rotation only) is in bench_focal.
_CLIPS = tuple((f, c) for c in ("orbit", "dolly", "handheld") for f in ("static", "rigid", "nonrigid"))


def run(finetune_steps: int, learning_rate: float, seed: int, net: model_lib.Tracks4DNet | None = None) -> dict:
  """Scores of every setting on every clip; `net` None: the shipped model."""
  cfg = synthetic.SyntheticConfig(num_frames=(24, 24), grid_size=8)
  settings = {"feed_forward": {}, "bundle_adjust": {"bundle_adjust": True},
              "finetune": {"finetune_steps": finetune_steps, "finetune_learning_rate": learning_rate},
              "finetune_bundle_adjust": {"finetune_steps": finetune_steps, "finetune_learning_rate": learning_rate,
                                         "bundle_adjust": True}}
  out = {}
  for name, kw in settings.items():
    rows = []
    for i, (family, camera) in enumerate(_CLIPS):
      clip = synthetic.generate_clip(cfg, seed, i, family=family, camera=camera)
      rec = reconstruct.reconstruct(clip, model=net, **kw)
      s = evaluate.score_clip(evaluate.Reconstruction3D(w2c=rec.w2c, depth=rec.depth), clip)
      rows.append({"clip": f"{family}/{camera}", "abs_rel": s.abs_rel, "ate_rel": s.ate_rel,
                   "rpe_rot_deg": s.rpe_rot_deg, "seconds": rec.timings.total})
      print(name, rows[-1], flush=True)
    out[name] = {"clips": rows, "mean": {k: float(np.mean([r[k] for r in rows]))
                                         for k in ("abs_rel", "ate_rel", "rpe_rot_deg", "seconds")}}
  return out


def main(argv):
  del argv
  try:
    path = flags.FLAGS.model or pretrained.default_model_path()
    net = checkpoint.load_model(path, **model_lib.parse_overrides(flags.FLAGS.override))
  except (FileNotFoundError, ValueError) as e:
    raise app.UsageError(f"--model / --override: {e}") from e
  res = run(flags.FLAGS.finetune_steps, flags.FLAGS.learning_rate, flags.FLAGS.seed, net)
  ff = [r["ate_rel"] for r in res["feed_forward"]["clips"]]
  for name, v in res.items():
    ate = [r["ate_rel"] for r in v["clips"]]
    v["mean"]["ate_lower_than_feed_forward"] = f"{sum(a < b for a, b in zip(ate, ff))}/{len(ff)}"
  print(json.dumps({k: v["mean"] for k, v in res.items()}, indent=1))


if __name__ == "__main__":
  flags.DEFINE_integer("finetune_steps", 40, "Fine-tuning steps per clip.")
  flags.DEFINE_float("learning_rate", 3e-4, "Fine-tuning step size.")
  flags.DEFINE_integer("seed", 11, "Synthetic seed.")
  flags.DEFINE_string("model", None, "Model folder (default: the shipped model).")
  flags.DEFINE_multi_string("override", [], "A model setting that adds no parameters, 'key=value', replacing the "
                            "model's config.json value (e.g. --override=fallback_second_body=False); repeatable.")
  app.run(main)
