"""Pictures for people: camera-path previews (PNG) and side-by-side videos (mp4).

`preview_trajectories` draws camera paths with the scene points in the first
source camera's frame, seen from above (x right, z forward) and from the side
(z forward, y down), so it works for reconstructions without a known world up.
`panels` lays videos side by side with titles; `write_video` writes an mp4.

Shapes: t frames, h w image, n points.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import cv2
import imageio.v2 as imageio
import numpy as np

from generate import checks
from generate.cameras import Trajectory
from tracks4d import geometry

_COLOURS = ((230, 80, 60), (60, 140, 230), (60, 180, 90), (220, 160, 40), (170, 80, 200), (40, 190, 190),
            (200, 60, 140), (120, 120, 120))


def preview_trajectories(path: str | Path | None, trajectories: Mapping[str, Trajectory], points_world=None,
                         look_at_world=None, size_px: int = 360) -> np.ndarray:
  """Draws camera paths and scene points from above and from the side; saves a PNG.

  Coordinates are those of the first camera of the first trajectory (usually
  the source): top view x (right) against z (forward), side view z against y
  (down). Each camera is a dot with a short line along its optical axis; the
  path's first camera is circled.

  Args:
    path: where to write the PNG (None: only return the image).
    trajectories: name -> Trajectory, drawn in order with distinct colours.
    points_world: optional (n, 3) or (t, n, 3) scene points (frame 0 is used).
    look_at_world: optional (3,) look-at point, drawn as a cross.
    size_px: side of each of the two square panels.

  Returns:
    The image (size_px, 2 size_px, 3) uint8 RGB.

  Raises:
    ValueError: naming `trajectories` when empty, `points_world` for a bad shape.

  Example:
    >>> preview_trajectories("paths.png", {"source": src, "orbit_left": tgt}, xyz_world)
  """
  if not trajectories:
    raise ValueError("trajectories: expected at least one trajectory to draw.")
  names = list(trajectories)
  ref = np.asarray(trajectories[names[0]].w2c, np.float64)[0]
  cams = {}
  for name in names:
    tr = trajectories[name]
    checks.poses(tr.w2c, f"trajectories[{name!r}].w2c")
    c2w = ref @ geometry.invert_pose(np.asarray(tr.w2c, np.float64))  # Cameras in the reference frame.
    cams[name] = (c2w[:, :3, 3], c2w[:, :3, 2])
  pts = np.zeros((0, 3))
  if points_world is not None:
    p = np.asarray(points_world, np.float64)
    if p.ndim == 3:
      p = p[0]
    checks.array_shape(p, "points_world", (None, 3), "(n, 3) or (t, n, 3) world points")
    pts = geometry.transform_points(ref, p[np.isfinite(p).all(-1)])
  look = None if look_at_world is None else geometry.transform_points(ref, np.asarray(look_at_world)[None])[0]
  # Frame the cameras and the look-at point (the room's far walls would shrink everything).
  centres_all = np.concatenate([c for c, _ in cams.values()])
  keep = centres_all if look is None else np.concatenate([centres_all, look[None]])
  lo, hi = keep.min(0), keep.max(0)
  margin = max(float(np.max(hi - lo)), 1e-3) * 0.6
  lo, hi = lo - margin, hi + margin
  arrow = 0.08 * float(np.max(hi - lo))
  # (title, horizontal axis, vertical axis, vertical sign): forward points up in the top view.
  views = (("top: x right, z forward (up)", 0, 2, -1.0), ("side: z forward (right), y down", 2, 1, 1.0))
  out = []
  for title, ax, ay, sign in views:
    img = np.full((size_px, size_px, 3), 255, np.uint8)
    span = max(hi[ax] - lo[ax], hi[ay] - lo[ay], 1e-9)
    mid = np.array([(hi[ax] + lo[ax]) / 2, (hi[ay] + lo[ay]) / 2])

    def px(v, ax=ax, ay=ay, mid=mid, span=span, sign=sign):
      q = (np.stack([v[..., ax], v[..., ay]], -1) - mid) / span * (size_px - 20)
      q[..., 1] *= sign
      return np.round(q + size_px / 2).astype(int)

    if len(pts):
      q = px(pts)
      q = q[(q >= 0).all(-1) & (q < size_px - 1).all(-1)]
      for dy in (0, 1):
        for dx in (0, 1):
          img[q[:, 1] + dy, q[:, 0] + dx] = (150, 150, 150)
    if look is not None:
      x, y = px(look)
      cv2.drawMarker(img, (int(x), int(y)), (0, 0, 0), cv2.MARKER_CROSS, 12, 2)
    for i, name in enumerate(names):
      colour = _COLOURS[i % len(_COLOURS)]
      centres, axes = cams[name]
      c_px = px(centres)
      cv2.polylines(img, [c_px.reshape(-1, 1, 2).astype(np.int32)], False, colour, 1, cv2.LINE_AA)
      step = max(1, len(centres) // 8)
      tips = px(centres + arrow * axes)
      for j in range(0, len(centres), step):
        cv2.line(img, tuple(map(int, c_px[j])), tuple(map(int, tips[j])), colour, 1, cv2.LINE_AA)
      cv2.circle(img, tuple(map(int, c_px[0])), 4, colour, 1, cv2.LINE_AA)
      cv2.circle(img, tuple(map(int, c_px[-1])), 2, colour, -1, cv2.LINE_AA)
      cv2.putText(img, name, (6, 30 + 14 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.4, colour, 1, cv2.LINE_AA)
    cv2.putText(img, title, (6, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    out.append(img)
  image = np.concatenate(out, axis=1)
  if path is not None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    imageio.imwrite(str(path), image)
  return image


def to_uint8(video) -> np.ndarray:
  """Float video in [0, 1] (or bool mask) to uint8 RGB (..., h, w, 3)."""
  v = np.asarray(video)
  if v.dtype == np.bool_:
    v = v.astype(np.float32)
  if v.ndim >= 1 and v.shape[-1] not in (1, 3):
    v = v[..., None]
  if v.shape[-1] == 1:
    v = np.repeat(v, 3, axis=-1)
  return np.round(np.clip(v, 0.0, 1.0) * 255).astype(np.uint8)


def panels(videos: Sequence, titles: Sequence[str], scale: int = 4, gap_px: int = 4) -> np.ndarray:
  """Videos (t, h, w, 3) floats in [0, 1] or (t, h, w) masks, side by side, upscaled.

  Args:
    videos: same t, h, w each.
    titles: one per video, written above it.
    scale: integer upscaling (nearest) of every frame.
    gap_px: white gap between panels.

  Returns:
    (t, 18 + h scale, total width, 3) uint8.

  Raises:
    ValueError: naming `videos` for mismatched sizes or `titles` for a wrong count.
  """
  if len(videos) != len(titles):
    raise ValueError(f"titles: expected {len(videos)} titles (one per video); got {len(titles)}.")
  frames = [to_uint8(v) for v in videos]
  shapes = {f.shape for f in frames}
  if len(shapes) != 1:
    raise ValueError(f"videos: expected equal (t, h, w) for all; got {sorted(shapes)}.")
  t, h, w, _ = frames[0].shape
  cols = []
  for f, title in zip(frames, titles):
    big = np.repeat(np.repeat(f, scale, axis=1), scale, axis=2)
    head = np.full((t, 18, w * scale, 3), 255, np.uint8)
    for i in range(t):
      cv2.putText(head[i], title, (3, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    cols.append(np.concatenate([head, big], axis=1))
    cols.append(np.full((t, 18 + h * scale, gap_px, 3), 255, np.uint8))
  return np.concatenate(cols[:-1], axis=2)


def write_video(path: str | Path, frames, fps: float = 8.0) -> Path:
  """Writes (t, h, w, 3) uint8 frames to an mp4 (H.264 via imageio-ffmpeg); returns the path.

  Frame sides are padded to even sizes (yuv420p needs them).
  """
  import warnings
  frames = np.asarray(frames)
  t, h, w, _ = frames.shape
  frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), constant_values=255)
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  with warnings.catch_warnings():
    # The ffmpeg subprocess starts by fork; JAX warns about forks in general, harmless here (exec follows).
    warnings.filterwarnings("ignore", message="os.fork", category=RuntimeWarning)
    with imageio.get_writer(str(path), fps=fps, codec="libx264", quality=8, pixelformat="yuv420p",
                            macro_block_size=1) as writer:
      for frame in frames:
        writer.append_data(frame)
  return path
