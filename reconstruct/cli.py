"""What the command line does, as importable functions (reconstruct/__main__.py
only parses flags)."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from reconstruct import demo as demo_lib
from reconstruct import export
from reconstruct import inputs as inputs_lib
from reconstruct import trackers
from reconstruct.pipeline import ReconstructOptions, reconstruct
from reconstruct.result import Reconstruction
from tracks4d.training import evaluate


def _settings(opts: ReconstructOptions, **extra) -> dict:
  return {**dataclasses.asdict(opts), **extra}


def _ground_truth_scores(rec: Reconstruction, clip) -> dict | None:
  """Scores against the clip's ground truth when the input file has it."""
  if clip.gt is None or not (np.asarray(clip.gt.depth) > 0).any():
    return None
  s = evaluate.score_clip(evaluate.Reconstruction3D(w2c=rec.w2c, depth=rec.depth), clip)
  return dataclasses.asdict(s)


def run_input(path, out, options: ReconstructOptions, model=None, tracker: str = "lk",
              tracker_options: dict | None = None, max_frames: int | None = None, stride: int = 1) -> list[dict]:
  """Reconstructs every clip of INPUT `path` and writes the outputs.

  One clip: outputs in `out`; several (a folder of npz files): `out/<name>/`.

  Returns:
    Per clip, the summary written to summary.json (as a dict).
  """
  clips = inputs_lib.load_inputs(path, tracker, tracker_options, max_frames, stride, options.progress)
  recs = reconstruct([c.tracks for c in clips], options=options, model=model)
  out = Path(out)
  summaries = []
  for c, rec in zip(clips, recs):
    rec = rec.replace(timings=dataclasses.replace(rec.timings, tracking=c.tracking_seconds,
                                                  total=rec.timings.total + c.tracking_seconds))
    folder = out if len(clips) == 1 else out / c.name
    extra = {"input": str(path), "clip": c.name, "num_frames": rec.num_frames, "num_tracks": rec.num_tracks}
    gt = _ground_truth_scores(rec, c.tracks)
    if gt is not None:
      extra["ground_truth_scores"] = gt
    settings = _settings(options, model=str(model or "shipped small"), tracker=tracker if c.frames is not None
                         else None)
    export.export_all(folder, rec, frames=c.frames, settings=settings, extra=extra, fps=c.fps)
    summaries.append(json.loads((folder / "summary.json").read_text()))
  return summaries


def run_demo(out, options: ReconstructOptions, model=None, seed: int = 0) -> dict:
  """Renders the demo video, reconstructs it feed-forward and with bundle
  adjustment, scores both against the truth, and writes the outputs of the
  run selected by `options` to `out`.

  Returns:
    {"feed_forward": scores, "bundle_adjust": scores, "baseline": scores,
     "focal": {...}, "seconds": {...}} (also in out/summary.json as "demo").
  """
  t0 = time.perf_counter()
  demo = demo_lib.render_demo(seed)
  render_s = time.perf_counter() - t0
  t0 = time.perf_counter()
  tracks = trackers.track_video(demo.frames, "lk", progress=options.progress, name="demo video")
  track_s = time.perf_counter() - t0
  runs = {}
  recs = {}
  for name, ba in (("feed_forward", False), ("bundle_adjust", True)):
    rec = reconstruct(tracks, options=dataclasses.replace(options, bundle_adjust=ba), model=model)
    runs[name] = {**demo_lib.score(demo, rec.w2c, rec.depth, rec.xy_px, rec.visible),
                  "seconds": rec.timings.total}
    recs[name] = rec
  vis = np.asarray(tracks.visible)
  runs["baseline"] = demo_lib.score(demo, np.broadcast_to(np.eye(4), demo.w2c.shape), np.ones(vis.shape),
                                    np.asarray(tracks.xy_px), vis)
  chosen = recs["bundle_adjust" if options.bundle_adjust else "feed_forward"]
  chosen = chosen.replace(timings=dataclasses.replace(chosen.timings, tracking=track_s))
  result = {**runs, "focal": {"true_px": float(demo.K[0, 0]), "used_px": float(chosen.K[0, 0, 0]),
                              "source": chosen.focal_source},
            "num_tracks": int(tracks.num_tracks), "num_frames": int(tracks.num_frames),
            "seconds": {"render": render_s, "tracking": track_s}}
  export.export_all(out, chosen, frames=demo.frames, settings=_settings(options, input="demo"),
                    extra={"demo": result}, fps=demo.fps)
  return result
