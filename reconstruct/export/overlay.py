"""`tracks.mp4`: the 2D tracks drawn over the input video.

Each visible track is a dot (with a dark rim) coloured by its movement (blue
static -> red dynamic, `common.movement_colors`) and a trail through its
positions in the last `tail` frames; a trail segment is drawn only when both of
its ends are visible, and invisible entries are not drawn. Positions use the
tracks4d pixel convention (pixel centres at integers), which is also OpenCV's
drawing convention. The mp4 is written by `generate.preview.write_video` to a
temporary name, then renamed into place.

Shapes: t frames, h w image, n tracks.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import cv2
import numpy as np

from generate import preview
from reconstruct.export import common

_SHIFT = 4  # Sub-pixel bits of the OpenCV line drawing.
_LEVELS = 32  # Colour levels of the trails (tracks are grouped by level per drawing call).


def _disk(radius: int) -> np.ndarray:
  """(m, 2) integer offsets (dx, dy) of a filled disk."""
  r = np.arange(-radius, radius + 1)
  dx, dy = np.meshgrid(r, r)
  keep = dx * dx + dy * dy <= radius * radius + radius * 0.5
  return np.stack([dx[keep], dy[keep]], -1)


def _stamp(img: np.ndarray, xy: np.ndarray, colours: np.ndarray, radius: int) -> None:
  """Draws filled disks of `radius` at (p, 2) pixel positions, (p, 3) colours, in place."""
  h, w = img.shape[:2]
  centres = np.round(xy).astype(np.int64)
  pts = centres[:, None, :] + _disk(radius)[None]  # (p, m, 2)
  cols = np.broadcast_to(colours[:, None, :], pts.shape[:2] + (3,))
  inside = (pts[..., 0] >= 0) & (pts[..., 0] < w) & (pts[..., 1] >= 0) & (pts[..., 1] < h)
  img[pts[..., 1][inside], pts[..., 0][inside]] = cols[inside]


def draw_tracks(frames, xy_px, visible, movement, tail: int = 10, threshold: float | None = None,
                radius: int | None = None) -> np.ndarray:
  """The video with the tracks drawn over it (see the module docstring).

  Args:
    frames: (t, h, w, 3) uint8 RGB video.
    xy_px: (t, n, 2) track positions (x, y) in pixels; non-finite entries are
      treated as invisible.
    visible: (t, n) bool.
    movement: (n,) movement level of each track.
    tail: trail length in frames (0: dots only).
    threshold: the movement threshold (the middle of the colour scale); None:
      the scale ends at the 95th percentile of `movement`.
    radius: dot radius in pixels; None: about 1/200 of the smaller image side
      (at least 2).

  Returns:
    (t, h, w, 3) uint8 RGB frames.

  Raises:
    ValueError: naming the argument with a wrong shape or dtype.
  """
  frames = np.asarray(frames)
  if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
    raise ValueError(f"frames: expected (t, h, w, 3) uint8 RGB; got {frames.dtype} {frames.shape}.")
  t, h, w, _ = frames.shape
  xy = np.asarray(xy_px, np.float64)
  if xy.ndim != 3 or xy.shape[0] != t or xy.shape[2] != 2:
    raise ValueError(f"xy_px: expected (t, n, 2) with t={t} frames; got {xy.shape}.")
  n = xy.shape[1]
  vis = np.asarray(visible)
  if vis.shape != (t, n) or vis.dtype.kind not in "biu":
    raise ValueError(f"visible: expected (t, n) = {(t, n)} bool; got {vis.dtype} {vis.shape}.")
  move = np.asarray(movement, np.float64)
  if move.shape != (n,):
    raise ValueError(f"movement: expected (n,) = ({n},); got {move.shape}.")
  if int(tail) < 0:
    raise ValueError(f"tail: expected a number of frames >= 0; got {tail}.")
  tail = int(tail)
  radius = max(2, int(round(min(h, w) / 200))) if radius is None else max(1, int(radius))
  ok = vis.astype(bool) & np.isfinite(xy).all(-1)
  xy = np.clip(np.nan_to_num(xy), -4.0 * max(h, w), 5.0 * max(h, w))  # Keep OpenCV's fixed point in range.
  scale = common.movement_scale(move, threshold)
  level = np.round(np.clip(np.nan_to_num(move / scale), 0.0, 1.0) * (_LEVELS - 1)).astype(int)
  level_rgb = common.movement_colors(np.arange(_LEVELS) / (_LEVELS - 1) * scale, threshold)
  track_rgb = common.movement_colors(move, threshold)
  fixed = np.round(xy * (1 << _SHIFT)).astype(np.int32)
  out = frames.copy()
  rim = np.zeros((n, 3), np.uint8) + 20
  for f in range(t):
    img = out[f]
    for lag in range(min(tail, f), 0, -1):  # Oldest segments first, newer on top.
      a, b = f - lag, f - lag + 1
      seg = ok[a] & ok[b]
      for lv in np.unique(level[seg]):
        j = np.nonzero(seg & (level == lv))[0]
        lines = np.stack([fixed[a, j], fixed[b, j]], 1)  # (m, 2, 2)
        cv2.polylines(img, list(lines), False, tuple(int(v) for v in level_rgb[lv]), 1, cv2.LINE_AA, _SHIFT)
    j = np.nonzero(ok[f])[0]
    if j.size:
      _stamp(img, xy[f, j], rim[j], radius + 1)
      _stamp(img, xy[f, j], track_rgb[j], radius)
  return out


def write_tracks_video(path: str | os.PathLike, frames, xy_px, visible, movement, tail: int = 10,
                       fps: float = 10.0, threshold: float | None = None, radius: int | None = None) -> Path:
  """Writes the input video with the tracks drawn over it as an mp4.

  Args:
    path: destination .mp4 (parent folders created; replaced atomically).
    frames: (t, h, w, 3) uint8 RGB video.
    xy_px: (t, n, 2) track positions (x, y) in pixels.
    visible: (t, n) bool; invisible entries are not drawn.
    movement: (n,) movement level (colour: blue static -> red dynamic).
    tail: trail length in frames.
    fps: frame rate of the mp4.
    threshold: movement threshold (middle of the colour scale), or None.
    radius: dot radius in pixels, or None (automatic).

  Returns:
    The path written.

  Raises:
    ValueError: naming the argument with a wrong shape or dtype.
    OSError: when the video cannot be written.

  Example:
    >>> write_tracks_video("out/tracks.mp4", video, tracks.xy_px, tracks.visible, rec.movement)
  """
  drawn = draw_tracks(frames, xy_px, visible, movement, tail=tail, threshold=threshold, radius=radius)
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(f".{path.stem}.partial{os.getpid()}.mp4")
  try:
    preview.write_video(tmp, drawn, fps=fps)
    os.replace(tmp, path)
  finally:
    with contextlib.suppress(FileNotFoundError):
      os.unlink(tmp)
  return path
