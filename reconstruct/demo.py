"""The embedded demo: a rendered video reconstructed and compared with its truth.

`generate.multiview_data.DEMO_CONFIG` renders a 48-frame 256x256 video of a
procedural scene with moving content (seed 0, scene 0) with its true cameras
and depth maps. The demo tracks the video (LK), reconstructs it as any video
(focal length estimated from the tracks), and scores cameras (ATE after Sim(3)
relative to the median depth, RPE) and depth at the tracked pixels (AbsRel,
delta < 1.25 with the per-frame median scale) against the renderer's truth,
next to the trivial baseline (identity cameras, constant depth).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from generate import multiview_data
from tracks4d import metrics


@dataclasses.dataclass(frozen=True)
class DemoInput:
  """The rendered demo: frames (t, h, w, 3) uint8, true w2c (t, 4, 4), K (3, 3),
  depth maps (t, h, w) and fps."""

  frames: np.ndarray
  w2c: np.ndarray
  K: np.ndarray
  depth_map: np.ndarray
  fps: float = 10.0


def render_demo(seed: int = 0, index: int = 0) -> DemoInput:
  """Renders the demo video (about 15 s on 2 CPU cores)."""
  views = multiview_data.make_scene_views(multiview_data.DEMO_CONFIG, seed, index)
  rgb = np.asarray(views.source_rgb)
  frames = rgb if rgb.dtype == np.uint8 else np.clip(np.round(rgb * 255), 0, 255).astype(np.uint8)
  return DemoInput(frames=frames, w2c=np.asarray(views.source_w2c, np.float64),
                   K=np.asarray(views.source_intrinsics, np.float64).reshape(-1, 3, 3)[0],
                   depth_map=np.asarray(views.source_depth_map, np.float64))


def true_depth_at(depth_map: np.ndarray, xy_px: np.ndarray) -> np.ndarray:
  """(t, n) true depth at the nearest pixel of each track position (0 outside)."""
  t, h, w = depth_map.shape
  col = np.round(xy_px[..., 0]).astype(int)
  row = np.round(xy_px[..., 1]).astype(int)
  inside = (col >= 0) & (col < w) & (row >= 0) & (row < h)
  d = depth_map[np.arange(t)[:, None], np.clip(row, 0, h - 1), np.clip(col, 0, w - 1)]
  return np.where(inside, d, 0.0)


def score(demo: DemoInput, w2c: np.ndarray, depth: np.ndarray, xy_px: np.ndarray, visible: np.ndarray) -> dict:
  """Camera and depth scores of a reconstruction of the demo video."""
  gt_depth = true_depth_at(demo.depth_map, xy_px)
  valid = visible & (gt_depth > 0) & np.isfinite(gt_depth)
  d = metrics.depth_metrics(depth, gt_depth, valid=valid, scaling="per_frame")
  p = metrics.pose_metrics(w2c, demo.w2c)
  return {"abs_rel": d.abs_rel, "delta_1": d.delta_1, "ate_rel": p.ate / float(np.median(gt_depth[valid])),
          "rpe_trans": p.rpe_trans, "rpe_rot_deg": p.rpe_rot_deg}
