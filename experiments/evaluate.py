r"""Accuracy and time of a trained model against baselines, per scene family and on mocap.

  python -m experiments.evaluate --model=tracks4d/pretrained/small --out=runs/eval_small

The BENCHMARKS.md table (18 min on 2 CPU cores; the shipped model gives
feed-forward AbsRel 0.213-0.242 per family against 0.351-0.526 for identity+const,
0.068 on object-only clips against 0.072, 0.016 on CMU-mocap against 0.041):

  python -m experiments.evaluate --model=tracks4d/pretrained/small --out=runs/eval_small_v12 \
      --clips_per_family=8 --opt_clips=1 --opt_steps=300 --object_only_clips=48 --mocap_windows=8 \
      --ttft_steps=100

Methods, all on the same held-out clips (seed 2,000,003: never used for training
or validation), each clip cut to `--num_frames` frames and `--num_tracks` tracks:
  identity+const  every camera at the identity, every depth 1 (trivial baseline)
  untrained       the same architecture and config.json, freshly initialised
  feed-forward    the model, one forward pass
  feed-forward, static points only  the same pass, depth of the static points
                  alone (the predicted motion left out): what the motion adds
  optimisation    the same unsupervised losses optimised per clip from scratch
                  (a fresh network triangulating with ridge `--opt_ridge`, Adam,
                  `--opt_steps` steps, best state kept), on
                  the first `--opt_clips` clips of each group (slow on CPU)
  rigid factorisation  Tomasi-Kanade orthographic factorisation with the mirror
                  chosen by perspective (tracks4d/baselines), on groups whose
                  tracks are all complete (visible in every frame: CMU-mocap)
  fine-tuned      with `--ttft_steps` > 0: the model fine-tuned on each of those
                  clips by the same losses (test-time fine-tuning as in
                  `reconstruct --finetune_steps`: step size `--ttft_lr`, a ramp
                  over the first quarter, lowest-loss state kept)
Groups: the five synthetic families; the same synthetic clips pooled by camera
motion, `parallax` (orbit, dolly, handheld: depth is observable from the tracks)
and `no parallax` (pan, static camera: no geometric method can recover depth, so
constant depth is the ceiling there; no optimisation rows: the clips are the
families'); `object only` (`--object_only_clips` clips of the dynamic families in
turn, without room or clutter: no static point, as in CMU-mocap), pooled again by
how many independently moving objects their tracks see (`object only (1 object)` and
`object only (2-3 objects)`; an articulated chain or a body is one object; no
optimisation rows, as for the camera-motion groups); and the CMU-mocap
sequences (projected with a perspective camera that follows the file's rotating
virtual camera; skipped with a message when ../shared/data/nrsfm is absent),
`--mocap_windows` windows of each, spread evenly over the sequence.

The synthetic `mocap` family animates bodies with these same sequences' motion, so a
model trained with it has seen their motion (not their points or cameras). To measure
unseen motion, train with `--config.data.generator.mocap_exclude="('drink', 'yoga')"`
and evaluate with `--mocap_sequences=drink,yoga`.

Fast camera turns (orbits of 90-110 degrees over the clip, about 4 degrees per frame,
as in the CMU-mocap sequences), feed-forward and trivial baselines only:

  python -m experiments.evaluate --model=tracks4d/pretrained/small --out=runs/eval_fast_orbit \
      --camera_paths=orbit --orbit_deg=90,110 --clips_per_family=4 --opt_clips=0

The same parameters with a setting changed (`--override`, repeatable), e.g. without the
occlusion evidence, on the tuning seed 7 instead of the held-out one:

  python -m experiments.evaluate --model=tracks4d/pretrained/small --out=runs/tune7_occ0 \
      --seed=7 --clips_per_family=6 --object_only_clips=24 --opt_clips=0 --override=occlusion_weight=0

CMU-mocap only (`--groups` keeps the named groups):

  python -m experiments.evaluate --model=tracks4d/pretrained/small --out=runs/eval_cmu \
      --groups=nrsfm-mocap --opt_clips=0

Writes results.json (every score's mean per group and method, each clip's AbsRel in
the order of the group's clips, and the machine and library versions: `environment`)
and results.md to --out and prints the table
(`abs_rel_median`: the median over clips, which a few failed clips move less than the mean).
"""

from __future__ import annotations

import dataclasses
import json
import platform
import time
from pathlib import Path

from absl import app, flags
import flax
import jax
import numpy as np

from tracks4d import model as model_lib
from tracks4d import synthetic
from tracks4d.baselines import factorization
from tracks4d.io import mocap_mat
from tracks4d.training import checkpoint, data, evaluate, finetune


NO_PARALLAX_CAMERAS = ("pan", "static")
POOLED_GROUPS = ("parallax", "no parallax", "object only (1 object)", "object only (2-3 objects)")
METRICS = ("abs_rel", "abs_rel_median", "delta_1", "abs_rel_dyn", "abs_rel_clip_scale", "ate_rel", "rpe_rot_deg")


# Object-only clips take indices from here on, apart from the family groups' clips.
OBJECT_ONLY_INDEX = 100_000


def mocap_windows(num_frames: int, windows: int, sequences: tuple[str, ...] = ()) -> list:
  """`windows` clips of `num_frames` frames from each CMU-mocap sequence (those
  named in `sequences`, or all), their first frames spread evenly from the
  sequence's start to its end (the first window starts at frame 0); [] when the
  data is absent.

  Raises:
    ValueError: for `windows` < 1, or a name in `sequences` that is not there.
  """
  if windows < 1:
    raise ValueError(f"mocap_windows: windows must be >= 1; got {windows}.")
  names = mocap_mat.list_sequences()
  unknown = sorted(set(sequences) - set(names))
  if names and unknown:
    raise ValueError(f"mocap_windows: sequences {unknown} not found; there are {names}.")
  clips = []
  for name in (n for n in names if not sequences or n in sequences):
    seq = mocap_mat.load_mocap(name)
    length = min(num_frames, seq.num_frames)
    starts = np.unique(np.round(np.linspace(0, seq.num_frames - length, windows)).astype(int))
    clips += [mocap_mat.mocap_to_tracks(seq, num_frames=length, start=int(s)) for s in starts]
  return clips


def environment() -> dict[str, str]:
  """The machine and library versions a results.json was made with.

  The synthetic clips and the network run in float32 on XLA's CPU backend, whose
  code depends on the host's instruction set, and a few discrete choices (which
  tracks are hidden, which camera start wins) amplify last-bit differences: the
  same command gives the same numbers on the same kind of machine, and numbers a
  few thousandths apart on another."""
  cpu = platform.processor() or platform.machine()
  try:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
      if line.startswith("model name"):
        cpu = line.split(":", 1)[1].strip()
        break
  except OSError:
    pass
  return {"cpu": cpu, "jax": jax.__version__, "flax": flax.__version__, "numpy": np.__version__,
          "python": platform.python_version(), "devices": ", ".join(str(d) for d in jax.devices())}


def eval_clips(num_per_family: int, num_frames: int, num_tracks: int, seed: int,
               camera_paths: tuple[str, ...] = synthetic.CAMERA_PATHS,
               orbit_deg: tuple[float, float] = synthetic.ORBIT_DEG, object_only: int = 0,
               mocap_windows_per_sequence: int = 1, mocap_sequences: tuple[str, ...] = ()) -> dict[str, list]:
  """Held-out clips per group: each synthetic family (camera paths drawn from
  `camera_paths`, orbits sweeping `orbit_deg`), `object_only` clips of the
  dynamic families in turn with no background, and mocap when available
  (`mocap_windows_per_sequence` windows of each sequence in `mocap_sequences`,
  or of all)."""
  gen = synthetic.SyntheticConfig(num_frames=(num_frames, num_frames), camera_paths=tuple(camera_paths),
                                  orbit_deg=orbit_deg)
  sub = data.SubsampleConfig(min_frames=num_frames, max_frames=num_frames, num_tracks=num_tracks)
  groups, by_motion = {}, {name: [] for name in POOLED_GROUPS}
  for fam in synthetic.FAMILIES:
    if fam == "mocap" and not mocap_mat.list_sequences():
      continue
    groups[fam] = []
    for i in range(num_per_family):
      clip, info = synthetic.generate_clip(gen, seed, i, family=fam, with_info=True)
      groups[fam].append(data.subsample_clip(clip, np.random.default_rng([seed, i]), sub))
      by_motion["no parallax" if info.camera in NO_PARALLAX_CAMERAS else "parallax"].append(groups[fam][-1])
  groups.update({k: v for k, v in by_motion.items() if v})
  dynamic = [f for f in groups if f in synthetic.FAMILIES and f != "static"]
  if object_only and dynamic:
    groups["object only"], by_objects = [], {}
    for i in range(object_only):
      clip, info = synthetic.generate_clip(gen, seed, OBJECT_ONLY_INDEX + i, family=dynamic[i % len(dynamic)],
                                           background=False, with_info=True)
      groups["object only"].append(data.subsample_clip(clip, np.random.default_rng([seed, OBJECT_ONLY_INDEX + i]), sub))
      name = "object only (1 object)" if info.moving_objects <= 1 else "object only (2-3 objects)"
      by_objects.setdefault(name, []).append(groups["object only"][-1])
    groups.update(sorted(by_objects.items()))
  mocap = mocap_windows(num_frames, mocap_windows_per_sequence, mocap_sequences)
  if mocap:
    groups["nrsfm-mocap"] = mocap
  else:
    print(f"mocap sequences not found in {mocap_mat.DEFAULT_NRSFM_DIR}: the nrsfm-mocap group is skipped.")
  return groups


def run_comparison(net, clips_by_group: dict, opt_clips: int, opt_steps: int, opt_lr: float,
                   opt_ridge: float = 1e-3, ttft_steps: int = 0, ttft_lr: float = 3e-4) -> dict:
  """Scores and seconds per clip of every method on every group; the optimisation
  baseline's fresh network triangulates with ridge `opt_ridge`; with `ttft_steps`
  > 0 the model fine-tuned per clip is scored on the optimisation subset too."""
  fresh = model_lib.create_model(net.cfg, seed=0)
  fresh_opt = model_lib.create_model(net.cfg, seed=0, triangulation_ridge=opt_ridge)
  pad = (max(c.num_frames for g in clips_by_group.values() for c in g),
         max(c.num_tracks for g in clips_by_group.values() for c in g))

  def feed_forward(m, static_only=False):
    def predict(clips):
      evaluate.predict_with_model(m, clips[:1], batch_size=1, pad_to=pad)  # Compile outside the timing.
      t0 = time.perf_counter()
      out = evaluate.predict_with_model(m, clips, batch_size=1, pad_to=pad, static_only=static_only)
      predict.seconds = (time.perf_counter() - t0) / len(clips)
      return out
    return predict

  def fitted(start, **finetune_kwargs):
    """`start` fitted to each clip by finetune.finetune (the optimisation and fine-tuned rows)."""
    def predict(clips):
      out, secs = [], []
      for c in clips:
        res = finetune.finetune(start, c, **finetune_kwargs)
        out += evaluate.predict_with_model(res.net, [c], batch_size=1)
        secs.append(res.seconds)
      predict.seconds = float(np.mean(secs))
      return out
    return predict

  def trivial(clips):
    trivial.seconds = 0.0
    return [evaluate.identity_constant_depth(c) for c in clips]

  def rigid_factorisation(clips):
    t0 = time.perf_counter()
    out = []
    for c in clips:
      rec = factorization.rigid_factorization(c)
      out.append(evaluate.Reconstruction3D(w2c=rec.w2c, depth=rec.depth))
    rigid_factorisation.seconds = (time.perf_counter() - t0) / len(clips)
    return out

  optimisation = fitted(fresh_opt, steps=opt_steps, learning_rate=opt_lr, warmup_steps=opt_steps // 10)
  fine_tuned = fitted(net, steps=ttft_steps, learning_rate=ttft_lr, lr_warmup_fraction=0.25)
  results = {}
  for group, clips in clips_by_group.items():
    results[group] = {}
    complete = all(np.asarray(c.visible).all() for c in clips)
    for name, fn, subset in (("identity+const", trivial, clips), ("untrained", feed_forward(fresh), clips),
                             ("rigid factorisation", rigid_factorisation, clips if complete else []),
                             ("feed-forward", feed_forward(net), clips),
                             ("feed-forward, static points only", feed_forward(net, static_only=True), clips),
                             ("feed-forward (opt. subset)", feed_forward(net), clips[:opt_clips]),
                             ("optimisation", optimisation, clips[:opt_clips]),
                             (f"fine-tuned ({ttft_steps} steps)", fine_tuned, clips[:opt_clips])):
      # The pooled camera-motion groups re-use the family groups' clips: no second optimisation run.
      if name.startswith(("feed-forward (opt", "optimisation", "fine-tuned")) and (
          opt_clips <= 0 or group in POOLED_GROUPS):
        continue
      if (name.startswith("fine-tuned") and ttft_steps <= 0) or not subset:
        continue
      per_clip = [evaluate.score_clip(p, c) for p, c in zip(fn(subset), subset)]
      scores = evaluate.mean_scores(per_clip)
      abs_rel = [s.abs_rel for s in per_clip]
      results[group][name] = {**scores, "abs_rel_median": float(np.median(abs_rel)), "abs_rel_per_clip": abs_rel,
                              "seconds_per_clip": getattr(fn, "seconds", float("nan")), "num_clips": len(subset)}
      print(f"{group:>12} {name:>27}: abs_rel {scores['abs_rel']:.3f} ate_rel {scores['ate_rel']:.4f} "
            f"({results[group][name]['seconds_per_clip']:.2f} s/clip)", flush=True)
  return results


def markdown(results: dict) -> str:
  """A table: one row per (group, method)."""
  head = "| group | method | clips | " + " | ".join(METRICS) + " | s/clip |"
  rows = [head, "|" + "---|" * (len(METRICS) + 4)]
  for group, methods in results.items():
    for name, r in methods.items():
      vals = " | ".join(f"{r[m]:.3f}" if m != "ate_rel" else f"{r[m]:.4f}" for m in METRICS)
      rows.append(f"| {group} | {name} | {r['num_clips']} | {vals} | {r['seconds_per_clip']:.2f} |")
  return "\n".join(rows)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  try:
    net = checkpoint.load_model(_MODEL.value, **model_lib.parse_overrides(_OVERRIDE.value))
  except ValueError as e:
    raise app.UsageError(f"--model / --override: {e}") from e
  try:
    orbit_deg = tuple(float(x) for x in _ORBIT.value)
  except ValueError:
    orbit_deg = ()
  if len(orbit_deg) != 2:
    raise app.UsageError(f"--orbit_deg: expected two numbers min,max; got {_ORBIT.value}.")
  found = mocap_mat.list_sequences()
  unknown = sorted(set(_MOCAP_SEQUENCES.value) - set(found))
  if found and unknown:
    raise app.UsageError(f"--mocap_sequences: {unknown} not found; there are {found}.")
  groups = eval_clips(_CLIPS.value, _FRAMES.value, _TRACKS.value, _SEED.value, tuple(_CAMERAS.value), orbit_deg,
                      _OBJECT_ONLY.value, _MOCAP_WINDOWS.value, tuple(_MOCAP_SEQUENCES.value))
  if _GROUPS.value:
    unknown = sorted(set(_GROUPS.value) - set(groups))
    if unknown:
      raise app.UsageError(f"--groups: unknown {unknown}; expected some of {sorted(groups)}.")
    groups = {k: v for k, v in groups.items() if k in _GROUPS.value}
  results = run_comparison(net, groups, _OPT_CLIPS.value, _OPT_STEPS.value, _OPT_LR.value, _OPT_RIDGE.value,
                           _TTFT_STEPS.value, _TTFT_LR.value)
  out = Path(_OUT.value)
  out.mkdir(parents=True, exist_ok=True)
  settings = {k: getattr(flags.FLAGS, k) for k in ("model", "clips_per_family", "num_frames", "num_tracks",
                                                   "opt_clips", "opt_steps", "opt_lr", "opt_ridge", "seed",
                                                   "camera_paths", "orbit_deg", "object_only_clips", "ttft_steps",
                                                   "ttft_lr", "groups", "override", "mocap_windows",
                                                   "mocap_sequences")}
  (out / "results.json").write_text(json.dumps({"settings": settings, "environment": environment(),
                                                "results": results}, indent=1))
  table = markdown(results)
  (out / "results.md").write_text(table + "\n")
  print(table)


if __name__ == "__main__":
  # Flags exist only when run as a script, so this module's functions can be
  # imported beside other mains (absl flags are process-global).
  _MODEL = flags.DEFINE_string("model", "tracks4d/pretrained/small", "Model folder or training workdir.")
  _OUT = flags.DEFINE_string("out", "runs/eval", "Output folder.")
  _CLIPS = flags.DEFINE_integer("clips_per_family", 16, "Synthetic clips per family.", lower_bound=0)
  _OBJECT_ONLY = flags.DEFINE_integer(
      "object_only_clips", 8, "Object-only synthetic clips (dynamic families in turn, no background).", lower_bound=0)
  _FRAMES = flags.DEFINE_integer("num_frames", 32, "Frames per clip.", lower_bound=2)
  _TRACKS = flags.DEFINE_integer("num_tracks", 128, "Tracks per clip.", lower_bound=1)
  _OPT_CLIPS = flags.DEFINE_integer("opt_clips", 2, "Clips per group for the optimisation-only baseline.",
                                    lower_bound=0)
  _OPT_STEPS = flags.DEFINE_integer("opt_steps", 300, "Steps of the optimisation-only baseline.", lower_bound=0)
  _OPT_LR = flags.DEFINE_float("opt_lr", 1e-3, "Learning rate of the optimisation-only baseline.")
  _OPT_RIDGE = flags.DEFINE_float(
      "opt_ridge", 1e-3, "Triangulation ridge of the optimisation-only baseline (the from-scratch training "
      "recipe's; a larger one pulls the points towards a fresh network's untrained ones).")
  _TTFT_STEPS = flags.DEFINE_integer("ttft_steps", 0, "Test-time fine-tuning steps of the model on the "
                                     "optimisation subset (0: no fine-tuned row).", lower_bound=0)
  _TTFT_LR = flags.DEFINE_float("ttft_lr", 3e-4, "Test-time fine-tuning step size (reconstruct's default).")
  _SEED = flags.DEFINE_integer("seed", 2_000_003, "Seed of the held-out clips.")
  _MOCAP_WINDOWS = flags.DEFINE_integer(
      "mocap_windows", 1, "Windows of --num_frames frames per CMU-mocap sequence, spread evenly over it (1: its "
      "first frames only).", lower_bound=1)
  _MOCAP_SEQUENCES = flags.DEFINE_list(
      "mocap_sequences", [], "CMU-mocap sequences to evaluate (default: all), e.g. those a training run held out "
      "of its 'mocap' family with --config.data.generator.mocap_exclude.")
  _OVERRIDE = flags.DEFINE_multi_string(
      "override", [], "A model setting that adds no parameters, 'key=value', replacing the model's config.json "
      "value for every method (e.g. --override=occlusion_weight=0); repeatable.")
  _GROUPS = flags.DEFINE_list("groups", [], "Evaluate only these groups (default: all).")
  _CAMERAS = flags.DEFINE_list("camera_paths", list(synthetic.CAMERA_PATHS),
                               "Camera paths of the synthetic clips (e.g. orbit).")
  _ORBIT = flags.DEFINE_list("orbit_deg", [f"{x:g}" for x in synthetic.ORBIT_DEG],
                             "Azimuth (min,max) an orbit sweeps over a clip, degrees.")
  app.run(main)
