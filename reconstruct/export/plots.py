"""`reconstruction.png`: the camera path and the 3D points of a reconstruction, for people.

Two panels in the first camera's frame, with the view conventions of
`generate.preview.preview_trajectories`: from above (x right, z forward = up
in the panel) and from the side (z forward = right, y down). Points are the
tracks' mean positions over their visible frames, coloured by movement (blue
static -> red dynamic, the scale of `common.movement_colors`, shown in a
colour bar); dynamic tracks also get their 3D paths. The camera path is dark
grey with short optical-axis ticks, its first camera circled.

`preview_trajectories` is not reused: it draws points in one grey and frames
the view on the cameras only (points outside are clipped), while here the
points are the subject and the framing covers both.

Shapes: t frames, n tracks.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from reconstruct.export import common
from tracks4d import geometry

_CAMERA_RGB = (60, 60, 60)
_TEXT_RGB = (0, 0, 0)
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def _text(img, text, xy, scale=0.45, colour=_TEXT_RGB, thickness=1):
  cv2.putText(img, text, (int(xy[0]), int(xy[1])), _FONT, scale, colour, thickness, cv2.LINE_AA)


def _robust_box(points: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
  """(lo, hi) of points per axis, ignoring the outer 2% on each side when there are many."""
  if points.shape[0] == 0:
    return None
  if points.shape[0] >= 50:
    return np.percentile(points, 2, axis=0), np.percentile(points, 98, axis=0)
  return points.min(0), points.max(0)


def plot_reconstruction(path: str | os.PathLike | None, rec: Any, size_px: int = 420, max_points: int = 5000,
                        max_paths: int = 300) -> np.ndarray:
  """Draws the cameras and the 3D points of a reconstruction; saves a PNG.

  Args:
    path: where to write the PNG (atomically; parent folders created), or None
      to only return the image.
    rec: a `reconstruct.result.Reconstruction`.
    size_px: side of each of the two square panels.
    max_points: at most this many tracks are drawn (evenly subsampled).
    max_paths: at most this many dynamic tracks get their 3D path drawn.

  Returns:
    The image, (size_px + 110, 2 size_px + 10, 3) uint8 RGB.

  Raises:
    ValueError: naming the field of `rec` with a wrong shape.
    OSError: when the PNG cannot be written.

  Example:
    >>> img = plot_reconstruction("out/reconstruction.png", rec)
  """
  a = common.check_reconstruction(rec)
  t, n = a.num_frames, a.num_tracks
  ref = a.w2c[0] if np.all(np.isfinite(a.w2c[0])) else np.eye(4)
  c2w = ref @ a.c2w  # Cameras in the first camera's frame.
  cam_ok = np.isfinite(c2w[:, :3, 2:4]).all((-1, -2))
  centres, axes = c2w[cam_ok, :3, 3], c2w[cam_ok, :3, 2]
  world = geometry.transform_points(ref, a.tracks_world)  # (t, n, 3), first camera's frame.
  vis = a.visible & np.isfinite(world).all(-1)
  counts = vis.sum(0)
  mean = np.einsum("tn,tnc->nc", vis.astype(np.float64), np.where(vis[..., None], world, 0.0)) / np.maximum(
      counts, 1)[:, None]
  has = counts > 0
  colours = common.movement_colors(a.movement, a.movement_threshold)
  order = np.argsort(np.nan_to_num(a.movement, nan=0.0), kind="stable")  # Dynamic drawn last (on top).
  order = order[has[order]]
  if order.size > max_points:
    order = order[np.round(np.linspace(0, order.size - 1, max_points)).astype(int)]
  dyn = order[a.is_dynamic[order]]
  if dyn.size > max_paths:
    dyn = dyn[np.round(np.linspace(0, dyn.size - 1, max_paths)).astype(int)]

  # Framing: cameras and (robustly) points, equal scale on both axes of a panel.
  boxes = [b for b in (_robust_box(centres), _robust_box(mean[order])) if b is not None]
  if boxes:
    lo = np.min([b[0] for b in boxes], axis=0)
    hi = np.max([b[1] for b in boxes], axis=0)
  else:
    lo, hi = -np.ones(3), np.ones(3)
  pad = 22
  views = (("top: x right, z forward (up)", 0, 2, -1.0), ("side: z forward (right), y down", 2, 1, 1.0))
  panels = []
  for title, ax, ay, sign in views:
    img = np.full((size_px, size_px, 3), 255, np.uint8)
    span = float(max(hi[ax] - lo[ax], hi[ay] - lo[ay]))
    scale_ref = float(max(np.abs([lo[ax], hi[ax], lo[ay], hi[ay]]).max(), 1.0))
    if not np.isfinite(span) or span < 1e-6 * scale_ref:
      span = 1e-6 * scale_ref  # Degenerate (everything at one spot): drawn at the centre.
    span *= 1.12  # Margin.
    mid = np.array([(hi[ax] + lo[ax]) / 2, (hi[ay] + lo[ay]) / 2])

    def px(v, ax=ax, ay=ay, mid=mid, span=span, sign=sign):
      q = (np.stack([v[..., ax], v[..., ay]], -1) - mid) / span * (size_px - 2 * pad)
      q[..., 1] *= sign
      return np.clip(np.round(q + size_px / 2), -4 * size_px, 5 * size_px).astype(np.int32)

    cv2.rectangle(img, (0, 0), (size_px - 1, size_px - 1), (200, 200, 200), 1)
    for j in dyn:  # 3D paths of dynamic tracks.
      q = px(world[vis[:, j], j])
      if len(q) > 1:
        c = tuple(int(v) for v in (0.5 * colours[j] + 127.5))  # Lighter than the dot.
        cv2.polylines(img, [q.reshape(-1, 1, 2)], False, c, 1, cv2.LINE_AA)
    r = 3 if order.size < 200 else 2 if order.size < 2000 else 1
    for j, q in zip(order, px(mean[order])):
      cv2.circle(img, (int(q[0]), int(q[1])), r, tuple(int(v) for v in colours[j]), -1, cv2.LINE_AA)
    if centres.shape[0]:
      c_px = px(centres)
      arrow = 0.06 * span
      tips = px(centres + arrow * axes)
      cv2.polylines(img, [c_px.reshape(-1, 1, 2)], False, _CAMERA_RGB, 2, cv2.LINE_AA)
      step = max(1, len(centres) // 12)
      for k in range(0, len(centres), step):
        cv2.line(img, tuple(map(int, c_px[k])), tuple(map(int, tips[k])), _CAMERA_RGB, 1, cv2.LINE_AA)
      cv2.circle(img, tuple(map(int, c_px[0])), 6, _CAMERA_RGB, 2, cv2.LINE_AA)
      cv2.circle(img, tuple(map(int, c_px[-1])), 3, _CAMERA_RGB, -1, cv2.LINE_AA)
    _text(img, title, (6, 16), 0.42)
    _text(img, f"width {span:.3g} units", (6, size_px - 8), 0.38, (110, 110, 110))
    panels.append(img)

  gap = np.full((size_px, 10, 3), 255, np.uint8)
  body = np.concatenate([panels[0], gap, panels[1]], axis=1)
  width = body.shape[1]
  head = np.full((52, width, 3), 255, np.uint8)
  num_dyn = int(a.is_dynamic.sum())
  _text(head, f"tracks4d reconstruction: {t} frames, {n} tracks ({num_dyn} dynamic)", (8, 20), 0.55, thickness=1)
  fx = float(a.K[0, 0, 0])
  line = f"focal {getattr(rec, 'focal_source', '?')}, fx = {fx:.1f} px"
  stats = getattr(rec, "reprojection", None)
  if stats is not None and np.isfinite(getattr(stats, "median_px", np.nan)):
    line += f"; reprojection median {stats.median_px:.2f} px"
    if np.isfinite(getattr(stats, "p90_px", np.nan)):
      line += f", p90 {stats.p90_px:.2f} px"
  _text(head, line, (8, 42), 0.45, (60, 60, 60))

  foot = np.full((58, width, 3), 255, np.uint8)
  scale = common.movement_scale(a.movement, a.movement_threshold)
  x0, x1, y0, y1 = 150, 150 + 260, 10, 26
  ramp = common.movement_colors(np.linspace(0.0, scale, x1 - x0), a.movement_threshold)
  foot[y0:y1, x0:x1] = ramp[None]
  cv2.rectangle(foot, (x0 - 1, y0 - 1), (x1, y1), (120, 120, 120), 1)
  _text(foot, "movement:", (8, 23), 0.45)
  _text(foot, "0 static", (x0 - 2, 44), 0.4)
  thr = a.movement_threshold
  if np.isfinite(thr) and thr > 0:
    xm = (x0 + x1) // 2
    cv2.line(foot, (xm, y0 - 3), (xm, y1 + 2), (0, 0, 0), 1)
    _text(foot, f"threshold {thr:.3g}", (xm - 45, 44), 0.4)
  _text(foot, f"{scale:.3g}+ dynamic", (x1 - 50, 44), 0.4)
  lx = x1 + 40
  cv2.line(foot, (lx, 18), (lx + 30, 18), _CAMERA_RGB, 2, cv2.LINE_AA)
  cv2.circle(foot, (lx, 18), 6, _CAMERA_RGB, 2, cv2.LINE_AA)
  _text(foot, "camera path (circle: first frame)", (lx + 38, 23), 0.42)
  _text(foot, "dots: tracks (mean position); lines: dynamic tracks' paths", (lx, 46), 0.4, (60, 60, 60))

  image = np.concatenate([head, body, foot], axis=0)
  if path is not None:
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(image[..., ::-1]))
    if not ok:
      raise RuntimeError("PNG encoding of the reconstruction plot failed.")
    common.write_bytes_atomic(Path(path), buf.tobytes())
  return image
