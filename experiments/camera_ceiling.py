r"""Where a model's depth error comes from: its cameras, or what a rigid triangulation misses.

  python -m experiments.camera_ceiling --model=tracks4d/pretrained/small --out=runs/ceiling \
      --clips_per_family=0 --object_only_clips=24 --mocap_windows=8 --seed=7

On the clips of `experiments.evaluate` (same flags, same clips for the same seed),
the camera-frame depth AbsRel (per-frame median scaling, as there) of static points
triangulated in closed form (`triangulate_static`) under three sets of cameras:
  model            the model's cameras and its own static points (the
                   "feed-forward, static points only" row of experiments.evaluate)
  ground truth     the ground-truth cameras, ridge 1e-3 towards a point on each
                   track's first-frame ray at the clip's median true depth (so a
                   track without parallax falls back to constant depth)
  model + rigid BA the model's cameras and points refined by reconstruct's bundle
                   adjustment over all tracks (Cauchy loss, 2 px, 30 iterations)
If the ground-truth row is far better than the model's, better cameras would close
the gap; if not, a rigid triangulation itself is the limit (moving content), and
the motion model must supply the depth. On clips filmed with little parallax (a
still or panning camera) every row is at best the prior, and the ground-truth row
is noisy (the synthetic "static" camera shakes slightly). A clip whose depth has a frame
with a non-positive median scores 1.0; "AbsRel >= 1" counts the clips at or above
that (in practice, bundle adjustments that diverged on moving content).

Writes results.json (mean, median and per-clip AbsRel per group and camera set)
and prints a table.
"""

from __future__ import annotations

import json
from pathlib import Path

from absl import app, flags
import jax
import jax.numpy as jnp
import numpy as np

from experiments import evaluate as evaluate_script
from reconstruct.bundle_adjust import bundle_adjust
from tracks4d import geometry
from tracks4d import model as model_lib
from tracks4d.model.triangulation import triangulate_static
from tracks4d.tracks import Tracks, batch_tracks
from tracks4d.training import checkpoint, evaluate

GT_RIDGE = 1e-3
FAILED = 1.0  # The AbsRel a clip scores when its depth has no positive median in some frame.


def _abs_rel(w2c: np.ndarray, depth: np.ndarray, clip: Tracks) -> float:
  try:
    return evaluate.score_clip(evaluate.Reconstruction3D(w2c=w2c, depth=depth), clip).abs_rel
  except ValueError:  # A non-positive median depth: the per-frame scale is undefined.
    return FAILED


def ground_truth_camera_depth(clip: Tracks) -> np.ndarray:
  """(t, n) camera depth of the static points triangulated under the true cameras."""
  c2w = np.linalg.inv(np.asarray(clip.gt.w2c, np.float64))
  xy = np.asarray(geometry.pixels_to_normalized(jnp.asarray(clip.xy_px), jnp.asarray(clip.intrinsics)), np.float64)
  gt_depth = np.asarray(clip.gt.depth, np.float64)
  median = float(np.median(gt_depth[gt_depth > 0]))
  ray0 = np.concatenate([xy[0], np.ones_like(xy[0, :, :1])], -1) @ c2w[0, :3, :3].T  # (n, 3) world directions
  prior = c2w[0, :3, 3] + median * ray0
  args = (geometry.matrix_to_rot6d(jnp.asarray(c2w[None, :, :3, :3], jnp.float32)),
          jnp.asarray(c2w[None, :, :3, 3], jnp.float32), jnp.zeros((1, clip.num_frames)),
          jnp.asarray(xy[None], jnp.float32), jnp.asarray(clip.visible[None]), jnp.asarray(prior[None], jnp.float32))
  points = np.asarray(triangulate_static(*args, ridge=GT_RIDGE))[0].astype(np.float64)
  cam = np.einsum("tij,nj->tni", np.asarray(clip.gt.w2c, np.float64)[:, :3, :3], points)
  return cam[..., 2] + np.asarray(clip.gt.w2c, np.float64)[:, None, 2, 3]


def ceiling_scores(net: model_lib.Tracks4DNet, clips: list[Tracks]) -> dict[str, list[float]]:
  """Per-clip AbsRel of each camera set (see the module doc) on `clips`."""
  out = {"model": [], "ground truth": [], "model + rigid BA": []}
  for clip in clips:
    pred = model_lib.forward_jit(net, jax.tree.map(jnp.asarray, batch_tracks([clip])))
    w2c = np.asarray(pred.w2c[0], np.float64)
    out["model"].append(_abs_rel(w2c, np.asarray(pred.depth_static[0]), clip))
    out["ground truth"].append(_abs_rel(np.asarray(clip.gt.w2c), ground_truth_camera_depth(clip), clip))
    k = np.broadcast_to(np.asarray(clip.intrinsics, np.float64), (clip.num_frames, 3, 3))
    ba = bundle_adjust(w2c, k, np.asarray(clip.xy_px, np.float64), np.asarray(clip.visible),
                       np.asarray(pred.raw.bases[0, :, :, 0], np.float64), iterations=30, robust="cauchy",
                       robust_scale_px=2.0)
    cam = np.einsum("tij,nj->tni", ba.w2c[:, :3, :3], ba.points_world) + ba.w2c[:, None, :3, 3]
    out["model + rigid BA"].append(_abs_rel(ba.w2c, cam[..., 2], clip))
  return out


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  net = checkpoint.load_model(_MODEL.value)
  groups = evaluate_script.eval_clips(_CLIPS.value, _FRAMES.value, _TRACKS.value, _SEED.value,
                                      object_only=_OBJECT_ONLY.value,
                                      mocap_windows_per_sequence=_MOCAP_WINDOWS.value)
  results = {}
  print("| group | cameras | clips | AbsRel mean | median | AbsRel >= 1 |\n|---|---|---|---|---|---|")
  for group, clips in groups.items():
    if group in evaluate_script.POOLED_GROUPS:
      continue
    results[group] = {}
    for name, per_clip in ceiling_scores(net, clips).items():
      results[group][name] = {"abs_rel": float(np.mean(per_clip)), "abs_rel_median": float(np.median(per_clip)),
                              "abs_rel_per_clip": per_clip, "at_least_1": int(sum(v >= FAILED for v in per_clip))}
      r = results[group][name]
      print(f"| {group} | {name} | {len(clips)} | {r['abs_rel']:.3f} | {r['abs_rel_median']:.3f} | {r['at_least_1']} |",
            flush=True)
  out = Path(_OUT.value)
  out.mkdir(parents=True, exist_ok=True)
  settings = {k: getattr(flags.FLAGS, k) for k in ("model", "clips_per_family", "object_only_clips", "num_frames",
                                                   "num_tracks", "seed", "mocap_windows")}
  (out / "results.json").write_text(json.dumps({"settings": settings, "results": results}, indent=1))


if __name__ == "__main__":
  _MODEL = flags.DEFINE_string("model", "tracks4d/pretrained/small", "Model folder or training workdir.")
  _OUT = flags.DEFINE_string("out", "runs/ceiling", "Output folder.")
  _CLIPS = flags.DEFINE_integer("clips_per_family", 4, "Synthetic clips per family.", lower_bound=0)
  _OBJECT_ONLY = flags.DEFINE_integer("object_only_clips", 8, "Object-only synthetic clips.", lower_bound=0)
  _FRAMES = flags.DEFINE_integer("num_frames", 32, "Frames per clip.", lower_bound=2)
  _TRACKS = flags.DEFINE_integer("num_tracks", 128, "Tracks per clip.", lower_bound=1)
  _SEED = flags.DEFINE_integer("seed", 7, "Seed of the clips (experiments.evaluate's held-out seed is 2,000,003).")
  _MOCAP_WINDOWS = flags.DEFINE_integer("mocap_windows", 1, "Windows per CMU-mocap sequence.", lower_bound=1)
  app.run(main)
