r"""Renders a synthetic scene and its warps to a video a person can watch, or writes the
multi-view dataset of the diffusion stage.

  python -m experiments.render_views --config=experiments/configs/render_views.py --out=runs/render_views
  python -m experiments.render_views --config=experiments/configs/render_views.py:dataset --out=data/multiview

Mode `views` (variants default, tiny) writes under --out:
  views.mp4       one row per target trajectory (six moves and a static view), columns
                  source | warp with true depth | warp with depth from tracks | true target | mask
  cameras.png     the camera paths with the scene points, from above and from the side
  summary.json    per target: masked PSNR of both warps against the true target, mask cover
Mode `dataset` (variants dataset, dataset_val, dataset_tiny) writes a resumable tensorstore
dataset (generate.dataset) at --out. Mode `eval` (variants eval, eval_tiny) measures, over
random scene pairs, the warp PSNR against the true target (true depth, depth from tracks,
no warp), the warp mask against the true co-visibility, the coarse track visibility
against the renderer's exact one, dense depth from tracks, and the generator's speed in
clip pairs per minute; it prints them and writes eval.json under --out.
Times are in experiments/configs/render_views.py.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
import time

from absl import app, flags, logging
from ml_collections import config_flags
import numpy as np

from generate import cameras, dataset, multiview_data, paired_tracks, preview, warp


@dataclasses.dataclass(frozen=True)
class ViewResult:
  """What `render_views` measured for one target trajectory."""

  kind: str
  amount: float
  psnr_true_depth: float
  psnr_track_depth: float
  cover_true_depth: float
  cover_track_depth: float


def _targets(cfg_views, setup):
  source, d = setup.sample.source, setup.look_at_depth
  out = []
  for kind in cfg_views.kinds:
    if kind == "static":
      amount = float(cfg_views.static_deg)
      out.append((kind, amount, cameras.static_view(source, "orbit_right", amount, d)))
    else:
      amount = float(cfg_views.orbit_deg) if kind.startswith("orbit") else float(cfg_views.dolly_frac) * d
      out.append((kind, amount, cameras.camera_move(source, kind, amount, d)))
  return out


def render_views(config, out: str) -> list[ViewResult]:
  """Renders one scene with each configured target trajectory, warps, video and summary.

  Args:
    config: a render_views config (mode "views").
    out: output folder.

  Returns:
    One `ViewResult` per target kind.
  """
  cfg = multiview_data.MultiViewConfig.from_dict(config.generator)
  setup = multiview_data.scene_setup(cfg, int(config.seed), int(config.index))
  chosen = _targets(config.views, setup)
  views = multiview_data.render_scene_views(setup, [c[2] for c in chosen], [c[0] for c in chosen],
                                            [c[1] for c in chosen], antialias=cfg.antialias)
  source = views.source_trajectory()
  dense = warp.dense_depth_from_tracks(views.source_xy_px, views.source_depth, views.source_visible,
                                       views.image_hw)
  rows, results = [], []
  for j, (kind, amount, target) in enumerate(chosen):
    true_w = warp.warp_video(views.source_rgb, views.source_depth_map, source, target)
    track_w = warp.warp_video(views.source_rgb, dense, source, target)
    gt = views.target_rgb[j]
    res = ViewResult(
        kind=kind, amount=amount,
        psnr_true_depth=warp.psnr(true_w.rgb, gt, true_w.mask), psnr_track_depth=warp.psnr(track_w.rgb, gt,
                                                                                         track_w.mask),
        cover_true_depth=float(np.mean(true_w.mask)), cover_track_depth=float(np.mean(track_w.mask)))
    results.append(res)
    logging.info("%-12s amount %.3g: PSNR %.2f dB (true depth), %.2f dB (depth from tracks); cover %.2f / %.2f",
                 kind, amount, res.psnr_true_depth, res.psnr_track_depth, res.cover_true_depth,
                 res.cover_track_depth)
    rows.append(preview.panels(
        [views.source_rgb, true_w.rgb, track_w.rgb, gt, true_w.mask],
        ["source", f"warp {kind}", "warp, track depth", "true target", "mask"], scale=int(config.views.scale)))
  gap = np.full(rows[0].shape[:1] + (6,) + rows[0].shape[2:], 255, np.uint8)
  frames = np.concatenate([x for r in rows for x in (r, gap)][:-1], axis=1)
  out_dir = Path(out)
  video = preview.write_video(out_dir / "views.mp4", frames, fps=float(config.views.fps))
  look = np.asarray(source.centers)[0] + float(setup.look_at_depth) * np.asarray(source.c2w)[0, :3, 2]
  preview.preview_trajectories(out_dir / "cameras.png", {"source": source, **{c[0]: c[2] for c in chosen}},
                               views.xyz_world, look_at_world=look)
  (out_dir / "summary.json").write_text(json.dumps(
      {"seed": int(config.seed), "index": int(config.index), "look_at_depth": float(setup.look_at_depth),
       "targets": [dataclasses.asdict(r) for r in results]}, indent=1))
  logging.info("Wrote %s (%d frames), %s and %s.", video, frames.shape[0], out_dir / "cameras.png",
               out_dir / "summary.json")
  return results


def evaluate(config, out: str | None) -> dict:
  """Measures warping, masks, track visibility, dense depth and speed on random scenes.

  Args:
    config: a render_views config (mode "eval": generator, seed, num_scenes).
    out: folder for eval.json (None: do not write).

  Returns:
    The measured numbers (also logged).
  """
  cfg = multiview_data.MultiViewConfig.from_dict(config.generator)
  m = {k: [] for k in ("psnr_true", "psnr_tracks", "psnr_nowarp", "mask_precision", "mask_recall", "vis_agree",
                       "false_visible", "false_hidden", "depth_absrel")}
  gen_time = 0.0
  for i in range(int(config.num_scenes) + 1):
    t0 = time.perf_counter()
    views = multiview_data.make_scene_views(cfg, int(config.seed), i)
    if i == 0:
      continue  # Compiles; not timed, not scored.
    gen_time += time.perf_counter() - t0
    src = views.source_trajectory()
    dense = warp.dense_depth_from_tracks(views.source_xy_px, views.source_depth, views.source_visible, views.image_hw)
    m["depth_absrel"].append(float(np.mean(np.abs(np.asarray(dense) - views.source_depth_map)
                                           / views.source_depth_map)))
    for j in range(views.num_targets):
      tgt, gt = views.target_trajectory(j), views.target_rgb[j]
      w_true = warp.warp_video(views.source_rgb, views.source_depth_map, src, tgt)
      w_tracks = warp.warp_video(views.source_rgb, dense, src, tgt)
      mask = np.asarray(w_true.mask)
      truth = np.asarray(warp.covisibility(views.target_depth_map[j], views.source_depth_map, src, tgt))
      m["psnr_true"].append(warp.psnr(w_true.rgb, gt, mask))
      m["psnr_tracks"].append(warp.psnr(w_tracks.rgb, gt, w_tracks.mask))
      m["psnr_nowarp"].append(warp.psnr(views.source_rgb, gt, mask))
      m["mask_precision"].append(float((mask & truth).sum() / max(mask.sum(), 1)))
      m["mask_recall"].append(float((mask & truth).sum() / max(truth.sum(), 1)))
      coarse = paired_tracks.paired_tracks(views.xyz_world, src, tgt).target_visible
      exact = views.target_visible[j]
      m["vis_agree"].append(float((coarse == exact).mean()))
      m["false_visible"].append(float((coarse & ~exact).sum() / max((~exact).sum(), 1)))
      m["false_hidden"].append(float((~coarse & exact).sum() / max(exact.sum(), 1)))
  pairs = int(config.num_scenes) * cfg.num_targets
  result = {k: {"mean": float(np.mean(v)), "min": float(np.min(v)), "median": float(np.median(v))} for k, v in m.items()}
  result["clip_pairs_per_minute"] = 60.0 * pairs / gen_time
  result["num_pairs"] = pairs
  result["clip"] = {"num_frames": cfg.num_frames, "image_hw": list(cfg.image_hw), "num_targets": cfg.num_targets}
  for k, v in m.items():
    logging.info("%-15s mean %.3f  median %.3f  min %.3f", k, np.mean(v), np.median(v), np.min(v))
  logging.info("generator: %.0f clip pairs per minute (%d pairs of %d frames at %s, no writing)",
               result["clip_pairs_per_minute"], pairs, cfg.num_frames, tuple(cfg.image_hw))
  if out:
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / "eval.json").write_text(json.dumps(result, indent=1))
  return result


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  config = _CONFIG.value
  if config.mode == "views":
    render_views(config, _OUT.value)
  elif config.mode == "dataset":
    cfg = multiview_data.MultiViewConfig.from_dict(config.generator)
    dataset.write_dataset(cfg, _OUT.value, num_scenes=int(config.num_scenes), seed=int(config.seed),
                          chunk_scenes=int(config.chunk_scenes))
  elif config.mode == "eval":
    evaluate(config, _OUT.value)
  else:
    raise app.UsageError(f"config.mode: expected 'views', 'dataset' or 'eval'; got {config.mode!r}.")


if __name__ == "__main__":
  # Flags exist only when run as a script, so this module's functions can be
  # imported beside other mains (absl flags are process-global).
  _CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (.../render_views.py:variant).")
  _OUT = flags.DEFINE_string("out", None, "Output folder (views) or folder / kvstore URL (dataset).")
  flags.mark_flags_as_required(["config", "out"])
  app.run(main)
