r"""The embedded demo: one synthetic clip, written, read back, and reconstructed
feed-forward by the shipped model, compared with its ground truth.

  python -m experiments.demo_data --out=demo_out

Generates a fixed synthetic dynamic scene (non-rigid objects, orbiting camera, seed 0,
50 frames, grid 15, tracker noise on), writes it as a TracksTo4D peer npz (`demo_out/demo_clip.npz`) and
a picture of its tracks (`demo_out/demo_tracks.png`), reads the npz back,
prints its statistics, runs the shipped model (tracks4d/pretrained/small, or
--model) and prints depth and camera errors next to the trivial baseline
(identity cameras, constant depth). Takes about half a minute on a CPU.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from absl import app, flags
import cv2
import numpy as np

from tracks4d import geometry, pretrained, synthetic
from tracks4d.io import peer_npz
from tracks4d.training import checkpoint, evaluate


def draw_tracks(clip, frames=(0, -1)) -> np.ndarray:
  """An RGB picture of the tracks at some frames: dynamic red, static blue,
  occluded grey, with each track's path over the clip."""
  h, w = (int(v) for v in clip.image_hw)
  panels = []
  for f in frames:
    img = np.full((h, w, 3), 255, np.uint8)
    dyn = clip.gt.dynamic[f] if clip.gt is not None else np.zeros(clip.num_tracks, bool)
    for j in range(clip.num_tracks):
      colour = (40, 40, 220) if dyn[j] else (200, 120, 30)
      path = clip.xy_px[:, j][clip.visible[:, j]].astype(np.int32)
      if len(path) > 1:
        cv2.polylines(img, [path], False, tuple(int(c * 0.4 + 150) for c in colour), 1)
    for j in range(clip.num_tracks):
      colour = (40, 40, 220) if dyn[j] else (200, 120, 30)
      colour = colour if clip.visible[f, j] else (200, 200, 200)
      cv2.circle(img, tuple(int(v) for v in clip.xy_px[f, j]), max(2, w // 200), colour, -1)
    cv2.putText(img, f"frame {f % clip.num_frames}", (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 0, 0), 2)
    panels.append(img)
  return np.concatenate(panels, axis=1)[..., ::-1]


def run(out: Path, model_path: str = "") -> dict:
  """Makes, writes, re-reads, summarises and reconstructs the demo clip; returns
  the statistics and scores."""
  out.mkdir(parents=True, exist_ok=True)
  cfg = dataclasses.replace(synthetic.SyntheticConfig(), num_frames=(50, 50))
  # Family and camera fixed, so the demo is the same with or without ../shared data.
  clip, info = synthetic.generate_clip(cfg, seed=0, index=0, family="nonrigid", camera="orbit", with_info=True)
  path = out / "demo_clip.npz"
  peer_npz.write_peer_npz(path, clip)
  back = peer_npz.read_peer_npz(path)
  np.testing.assert_array_equal(back.xy_px, clip.xy_px)
  cv2.imwrite(str(out / "demo_tracks.png"), draw_tracks(clip)[..., ::-1])
  centres = geometry.camera_centers(clip.gt.w2c)
  depth = clip.gt.depth[clip.visible]
  stats = {
      "family": info.family, "camera": info.camera, "frames": clip.num_frames, "tracks": clip.num_tracks,
      "image_hw": tuple(int(v) for v in clip.image_hw), "visible_fraction": float(clip.visible.mean()),
      "dynamic_fraction": float(clip.gt.dynamic[0].mean()), "depth_range": (float(depth.min()), float(depth.max())),
      "camera_path_length": float(np.linalg.norm(np.diff(centres, axis=0), axis=-1).sum()),
  }
  net = checkpoint.load_model(model_path or pretrained.default_model_path())
  t0 = time.perf_counter()
  pred = evaluate.predict_with_model(net, [back], batch_size=1)[0]
  stats["model_seconds (with compile)"] = time.perf_counter() - t0
  for name, p in (("model", pred), ("identity+const", evaluate.identity_constant_depth(back))):
    s = evaluate.score_clip(p, clip)
    stats[f"{name}: depth AbsRel / delta<1.25"] = (round(s.abs_rel, 4), round(s.delta_1, 4))
    stats[f"{name}: ATE / median depth, RPE rot (deg)"] = (round(s.ate_rel, 4), round(s.rpe_rot_deg, 3))
  return stats


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  stats = run(Path(_OUT.value), _MODEL.value)
  for key, value in stats.items():
    print(f"{key:>20}: {value}")
  print(f"wrote {_OUT.value}/demo_clip.npz and {_OUT.value}/demo_tracks.png")


if __name__ == "__main__":
  # Flags exist only when run as a script, so this module's functions can be
  # imported beside other mains (absl flags are process-global).
  _OUT = flags.DEFINE_string("out", "demo_out", "Output folder.")
  _MODEL = flags.DEFINE_string("model", "", "Model folder (default: the shipped tracks4d/pretrained/small).")
  app.run(main)
