"""A classical point tracker: OpenCV pyramidal Lucas-Kanade with forward-backward checks.

Queries sit on a regular `grid_size` x `grid_size` grid (the peer's grid 15 gives
225 queries per query frame) at `num_query_frames` frames spread evenly from the
first to the last frame (as `generate.multiview_data`'s query frames). A query
at a later frame is skipped when an earlier query's track is visible within
`min_query_distance_px` of it at that frame, so the new queries fill the parts
of the image that the earlier tracks no longer cover.

Each track is followed forwards from its query frame to the end and backwards
to the start, one frame pair at a time, with all active points of the pair in
one `cv2.calcOpticalFlowPyrLK` call. Every step is checked forward-backward: a
point p_t tracked to p_{t+1} and back must land within `fb_threshold_px` of p_t,
and the matched windows must look alike (OpenCV's mean absolute difference <=
`max_error`; an occluder with its own texture can pass the forward-backward
check). A failed check, a bad LK status or leaving the image loses the track for the
rest of that direction: it is invisible there and keeps its last known position
(so positions stay finite everywhere, as `tracks4d.tracks.Tracks` requires).

The result is deterministic. Pixel convention: OpenCV's point coordinates put
the centre of pixel (row i, column j) at (x, y) = (j, i), as tracks4d.geometry.

Shapes: t frames, h w image, n tracks, g grid points.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import cv2
import numpy as np
from tqdm.auto import tqdm

from reconstruct.video import as_frames
from tracks4d import geometry
from tracks4d.tracks import Tracks


@dataclasses.dataclass(frozen=True)
class LKConfig:
  """Settings of the Lucas-Kanade tracker.

  Attributes:
    grid_size: queries per image side per query frame (grid_size^2 per frame).
    num_query_frames: query frames, spread evenly from frame 0 to the last frame.
    fb_threshold_px: largest forward-backward error of one frame step, pixels.
    win_size: LK window side in pixels (odd, >= 5).
    max_level: pyramid levels above the image (0: no pyramid).
    min_query_distance_px: a later query within this distance of a track already
      visible at its frame is skipped; None: half the grid spacing; 0: keep all.
    border_px: distance of the outermost grid points from the image border.
    max_iterations: LK iterations per pyramid level.
    epsilon: LK convergence threshold (pixels of update).
    min_eig_threshold: OpenCV's minimum eigenvalue of the window's gradient
      matrix (divided by the window area); weaker (textureless) points are lost.
    max_error: largest appearance error of one step, OpenCV's mean absolute
      gray-level difference (0-255) between the matched windows; catches
      occluders whose own texture passes the forward-backward check. None: off.
  """

  grid_size: int = 15
  num_query_frames: int = 3
  fb_threshold_px: float = 1.0
  win_size: int = 21
  max_level: int = 3
  min_query_distance_px: Optional[float] = None
  border_px: float = 8.0
  max_iterations: int = 30
  epsilon: float = 0.01
  min_eig_threshold: float = 1e-4
  max_error: Optional[float] = 25.0

  def __post_init__(self):
    for field in ("grid_size", "num_query_frames", "max_iterations"):
      value = getattr(self, field)
      if int(value) != value or value < 1:
        raise ValueError(f"LKConfig.{field}: expected an integer >= 1; got {value!r}.")
    if int(self.win_size) != self.win_size or self.win_size < 5 or self.win_size % 2 == 0:
      raise ValueError(f"LKConfig.win_size: expected an odd integer >= 5; got {self.win_size!r}.")
    if int(self.max_level) != self.max_level or not 0 <= self.max_level <= 8:
      raise ValueError(f"LKConfig.max_level: expected an integer in [0, 8]; got {self.max_level!r}.")
    if not self.fb_threshold_px > 0:
      raise ValueError(f"LKConfig.fb_threshold_px: expected > 0 pixels; got {self.fb_threshold_px!r}.")
    if self.min_query_distance_px is not None and not self.min_query_distance_px >= 0:
      raise ValueError(f"LKConfig.min_query_distance_px: expected None or >= 0 pixels; got "
                       f"{self.min_query_distance_px!r}.")
    if not self.border_px >= 0:
      raise ValueError(f"LKConfig.border_px: expected >= 0 pixels; got {self.border_px!r}.")
    if self.max_error is not None and not self.max_error > 0:
      raise ValueError(f"LKConfig.max_error: expected None or > 0 gray levels; got {self.max_error!r}.")
    if not self.epsilon > 0 or not self.min_eig_threshold >= 0:
      raise ValueError(f"LKConfig.epsilon / min_eig_threshold: expected > 0 / >= 0; got {self.epsilon!r} / "
                       f"{self.min_eig_threshold!r}.")


# ---------------------------------------------------------------------------
# Queries (shared with the other trackers).
# ---------------------------------------------------------------------------


def query_frames(num_frames: int, num_query_frames: int) -> np.ndarray:
  """Query frames spread evenly from 0 to num_frames - 1 (duplicates removed).

  Example:
    >>> query_frames(50, 3)        # array([ 0, 24, 49])
  """
  return np.unique(np.round(np.linspace(0, num_frames - 1, num_query_frames)).astype(np.int32))


def grid_points(image_hw: tuple[int, int], grid_size: int, border_px: float) -> np.ndarray:
  """A regular grid of query positions, row by row.

  Args:
    image_hw: (height, width).
    grid_size: points per side (1: the image centre).
    border_px: distance of the outermost points from the border pixels' centres.

  Returns:
    (g, 2) float32 pixel positions (x, y), g = grid_size^2.

  Raises:
    ValueError: when the border leaves no room in the image.
  """
  h, w = image_hw
  if w - 1 - 2 * border_px < 0 or h - 1 - 2 * border_px < 0:
    raise ValueError(f"border_px: {border_px} leaves no room for queries in an image of (h, w) = {image_hw}.")
  if grid_size == 1:
    return np.array([[(w - 1) / 2.0, (h - 1) / 2.0]], np.float32)
  xs = np.linspace(border_px, w - 1 - border_px, grid_size)
  ys = np.linspace(border_px, h - 1 - border_px, grid_size)
  gy, gx = np.meshgrid(ys, xs, indexing="ij")
  return np.stack([gx.ravel(), gy.ravel()], -1).astype(np.float32)


def grid_spacing(image_hw: tuple[int, int], grid_size: int, border_px: float) -> float:
  """The smaller of the grid's horizontal and vertical point spacings, pixels."""
  h, w = image_hw
  return min(w - 1 - 2 * border_px, h - 1 - 2 * border_px) / max(grid_size - 1, 1)


def check_queries(query_xy_px, query_frame, num_frames: int, image_hw: tuple[int, int]):
  """Validates user-given queries.

  Args:
    query_xy_px: (n, 2) pixel positions (x, y) inside the image.
    query_frame: (n,) integer frames in [0, num_frames).

  Returns:
    (query_xy_px float32 (n, 2), query_frame int32 (n,)).

  Raises:
    ValueError: naming the argument for a wrong shape, no query, NaN/inf,
      positions outside the image or frames out of range.
  """
  xy = np.asarray(query_xy_px, np.float64)
  if xy.ndim != 2 or xy.shape[-1] != 2 or len(xy) == 0:
    raise ValueError(f"query_xy_px: expected (n, 2) pixel positions (x, y) with n >= 1; got shape {xy.shape}.")
  qf = np.asarray(query_frame)
  if qf.shape != (len(xy),) or not np.issubdtype(qf.dtype, np.integer):
    raise ValueError(f"query_frame: expected ({len(xy)},) integer frames matching query_xy_px; got shape "
                     f"{qf.shape}, dtype {qf.dtype}.")
  if not np.isfinite(xy).all():
    raise ValueError("query_xy_px: expected finite positions; got NaN/inf.")
  if not geometry.in_image(xy, np.asarray(image_hw)).all():
    raise ValueError(f"query_xy_px: every query must lie inside the image (h, w) = {tuple(image_hw)}, i.e. "
                     "x in [-0.5, w - 0.5), y in [-0.5, h - 0.5).")
  if qf.min() < 0 or qf.max() >= num_frames:
    raise ValueError(f"query_frame: expected frames in [0, {num_frames}); got range [{qf.min()}, {qf.max()}].")
  return xy.astype(np.float32), qf.astype(np.int32)


def far_from(points: np.ndarray, others: np.ndarray, min_distance: float) -> np.ndarray:
  """(g,) bool: whether each of points (g, 2) is at least min_distance from all others (m, 2)."""
  if len(others) == 0 or min_distance <= 0:
    return np.ones(len(points), bool)
  d2 = ((points[:, None, :] - others[None, :, :]) ** 2).sum(-1)
  return d2.min(axis=1) >= min_distance**2


# ---------------------------------------------------------------------------
# One LK step.
# ---------------------------------------------------------------------------


def _lk_params(cfg: LKConfig) -> dict:
  return dict(winSize=(cfg.win_size, cfg.win_size), maxLevel=cfg.max_level,
              criteria=(cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, cfg.max_iterations, cfg.epsilon),
              minEigThreshold=cfg.min_eig_threshold)


def lk_step(src, dst, points: np.ndarray, cfg: LKConfig, image_hw: tuple[int, int]):
  """Tracks points from one frame to the next, with the forward-backward check.

  Args:
    src, dst: grayscale (h, w) uint8 frames (OpenCV's Python binding takes no
      prebuilt pyramids, so each call builds its own).
    points: (m, 2) float32 positions (x, y) in src.
    cfg: LK settings.
    image_hw: (height, width).

  Returns:
    moved: (m, 2) float32 positions in dst (meaningful where ok).
    ok: (m,) bool, tracked: good LK status both ways, forward-backward error
      <= cfg.fb_threshold_px, appearance error <= cfg.max_error, finite and
      inside the image.
  """
  if len(points) == 0:
    return np.zeros((0, 2), np.float32), np.zeros((0,), bool)
  params = _lk_params(cfg)
  p0 = np.ascontiguousarray(points, np.float32).reshape(-1, 1, 2)
  p1, st1, err = cv2.calcOpticalFlowPyrLK(src, dst, p0, None, **params)
  back, st2, _ = cv2.calcOpticalFlowPyrLK(dst, src, p1, None, **params)
  p1, back = p1.reshape(-1, 2), back.reshape(-1, 2)
  fb = np.linalg.norm(back - p0.reshape(-1, 2), axis=-1)
  finite = np.isfinite(p1).all(-1) & np.isfinite(fb)
  ok = (st1.ravel() == 1) & (st2.ravel() == 1) & finite & (np.where(finite, fb, np.inf) <= cfg.fb_threshold_px)
  ok &= geometry.in_image(np.where(finite[:, None], p1, -1.0), np.asarray(image_hw))
  if cfg.max_error is not None:
    ok &= err.ravel() <= cfg.max_error
  return p1.astype(np.float32), ok


# ---------------------------------------------------------------------------
# The sweeps.
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class _TrackState:
  """Growing per-track arrays of one tracking run (n grows as queries are added)."""

  xy: np.ndarray  # (t, n, 2) float32
  visible: np.ndarray  # (t, n) bool
  query_xy: np.ndarray  # (n, 2) float32
  query_frame: np.ndarray  # (n,) int32

  @classmethod
  def empty(cls, t: int) -> "_TrackState":
    return cls(np.zeros((t, 0, 2), np.float32), np.zeros((t, 0), bool), np.zeros((0, 2), np.float32),
               np.zeros((0,), np.int32))

  def add(self, xy: np.ndarray, frame: int) -> None:
    """Adds queries at `frame`; positions start at the query everywhere (finite)."""
    t = self.xy.shape[0]
    m = len(xy)
    vis = np.zeros((t, m), bool)
    vis[frame] = True
    self.xy = np.concatenate([self.xy, np.broadcast_to(xy[None], (t, m, 2))], axis=1)
    self.visible = np.concatenate([self.visible, vis], axis=1)
    self.query_xy = np.concatenate([self.query_xy, xy.astype(np.float32)])
    self.query_frame = np.concatenate([self.query_frame, np.full((m,), frame, np.int32)])


def _planned_queries(cfg: LKConfig, t: int, image_hw, query_xy_px, query_frame):
  """The queries of a run.

  Returns:
    plan: {frame: (m, 2) positions queried at that frame}.
    order: None for the grid (later queries de-duplicated); for custom queries
      (never de-duplicated) the (n,) stable order by frame in which the sweep
      adds them, to restore the caller's order at the end.
  """
  if query_xy_px is None and query_frame is None:
    grid = grid_points(image_hw, cfg.grid_size, cfg.border_px)
    return {int(f): grid for f in query_frames(t, cfg.num_query_frames)}, None
  if query_xy_px is None or query_frame is None:
    raise ValueError("query_xy_px / query_frame: give both (custom queries) or neither (the query grid).")
  xy, qf = check_queries(query_xy_px, query_frame, t, image_hw)
  order = np.argsort(qf, kind="stable")
  return {int(f): xy[order][qf[order] == f] for f in np.unique(qf)}, order


def _in_caller_order(state: _TrackState, order) -> _TrackState:
  """The tracks of a run with custom queries back in the caller's order (grid runs unchanged)."""
  if order is None:
    return state
  inverse = np.empty_like(order)
  inverse[order] = np.arange(len(order))
  return _TrackState(state.xy[:, inverse], state.visible[:, inverse], state.query_xy[inverse],
                     state.query_frame[inverse])


def _step(state: _TrackState, gray, pos: np.ndarray, alive: np.ndarray, started: np.ndarray, src: int, dst: int,
          cfg: LKConfig, image_hw) -> None:
  """Advances the started, alive tracks from frame src to dst (in place); lost ones stop."""
  idx = np.flatnonzero(started & alive)
  moved, ok = lk_step(gray[src], gray[dst], pos[idx], cfg, image_hw)
  pos[idx[ok]] = moved[ok]
  alive[idx[~ok]] = False
  state.visible[dst, idx[ok]] = True
  state.xy[dst, started] = pos[started]  # Lost tracks keep their last known position.


def _forward(state: _TrackState, gray, plan: dict, dedupe: bool, cfg: LKConfig, image_hw, bar) -> None:
  """Forward sweep: adds each frame's queries, then tracks every started track to the next frame."""
  t = len(gray)
  min_dist = cfg.min_query_distance_px
  if min_dist is None:
    min_dist = 0.5 * grid_spacing(image_hw, cfg.grid_size, cfg.border_px)
  pos = np.zeros((0, 2), np.float32)
  alive = np.zeros((0,), bool)
  for f in range(t):
    if f in plan:
      new = plan[f]
      if dedupe:
        seen = state.visible[f] & (state.query_frame < f)
        new = new[far_from(new, state.xy[f, seen], min_dist)]
      state.add(new, f)
      pos = np.concatenate([pos, new.astype(np.float32)])
      alive = np.concatenate([alive, np.ones(len(new), bool)])
    if f == t - 1:
      break
    _step(state, gray, pos, alive, state.query_frame <= f, f, f + 1, cfg, image_hw)
    bar.update(1)


def _backward(state: _TrackState, gray, cfg: LKConfig, image_hw, bar) -> None:
  """Backward sweep: tracks every track from its query frame back to frame 0."""
  t = len(gray)
  pos = state.query_xy.copy()
  alive = np.ones(len(pos), bool)
  for f in range(t - 1, 0, -1):
    _step(state, gray, pos, alive, state.query_frame >= f, f, f - 1, cfg, image_hw)
    bar.update(1)


def track_lk(frames, cfg: LKConfig = LKConfig(), progress: bool = True, query_xy_px=None, query_frame=None,
             name: str = "lk tracks") -> Tracks:
  """Tracks points through a video with pyramidal Lucas-Kanade (see the module doc).

  Args:
    frames: a `reconstruct.video.Video`, or (t, h, w, 3) / (t, h, w) frames,
      uint8 or float in [0, 1].
    cfg: tracker settings.
    progress: show a progress bar over the frame steps.
    query_xy_px: optional (n, 2) query positions (x, y) instead of the grid
      (then no query is skipped).
    query_frame: (n,) query frames of `query_xy_px`.
    name: how errors and the `Tracks` refer to this clip.

  Returns:
    A validated `Tracks`: xy_px (t, n, 2), visible (t, n), query_frame (n,),
    intrinsics the guess `geometry.guess_intrinsics(image_hw)` on every frame
    with intrinsics_known False. Track order: by query frame, then grid row by
    row; with custom queries, the order of `query_xy_px`.

  Raises:
    ValueError: for bad frames, settings or queries (naming them).

  Example:
    >>> tracks = track_lk(read_video("clip.mp4"), LKConfig(grid_size=15))
    >>> tracks.xy_px.shape          # (t, n, 2), n <= 3 * 225
  """
  frames = as_frames(frames, name)
  t, h, w = frames.shape[:3]
  image_hw = (h, w)
  plan, order = _planned_queries(cfg, t, image_hw, query_xy_px, query_frame)
  gray = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
  state = _TrackState.empty(t)
  with tqdm(total=2 * (t - 1), desc="LK tracking", unit="step", disable=not progress) as bar:
    _forward(state, gray, plan, order is None, cfg, image_hw, bar)
    _backward(state, gray, cfg, image_hw, bar)
  state = _in_caller_order(state, order)
  return Tracks.create(state.xy, state.visible, image_hw=image_hw, intrinsics=None, query_frame=state.query_frame,
                       name=name)
