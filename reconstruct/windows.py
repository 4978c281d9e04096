"""Long clips: overlapping windows, and stitching their reconstructions into one.

A clip longer than the window is cut into windows of exactly `window_size`
frames (one network shape, one compilation) that overlap by at least `overlap`
frames; the last window ends at the last frame. Each window is reconstructed in
its own frame and scale. Window m + 1 is mapped into window m's (already
stitched) world by the similarity (Sim(3), weighted Umeyama) that best aligns
the 3D positions of the tracks visible in both windows on their common frames
together with the camera centres of those frames (the cameras weighing as much
as all points; robust: refitted once without the worst residuals); the first window defines the world
frame and scale. On the overlap, cameras (centre linearly, rotation along the
geodesic) and 3D tracks are blended with weights ramping from one window to the
next, so the trajectory has no jump at window borders. Memory is that of one
batch of windows, whatever the clip length.

Shapes: t frames, n tracks, w frames of a window, k bases.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tracks4d import geometry


def plan_windows(num_frames: int, window_size: int, overlap: int) -> np.ndarray:
  """First frame of each window.

  Args:
    num_frames: clip length t (>= 2).
    window_size: frames per window; a clip no longer than this is one window.
    overlap: least number of frames shared by consecutive windows
      (>= 2, < window_size).

  Returns:
    (m,) int starts; every window has min(window_size, t) frames.

  Raises:
    ValueError: for impossible settings.

  Example:
    >>> plan_windows(100, 32, 8)   # array([ 0, 24, 48, 68])
  """
  if window_size < 2:
    raise ValueError(f"window_size must be >= 2; got {window_size}.")
  if not 2 <= overlap < window_size:
    raise ValueError(f"overlap must be in [2, window_size - 1] = [2, {window_size - 1}]; got {overlap}.")
  if num_frames <= window_size:
    return np.zeros(1, np.int64)
  stride = window_size - overlap
  starts = list(range(0, num_frames - window_size, stride)) + [num_frames - window_size]
  return np.asarray(sorted(set(starts)), np.int64)


@dataclasses.dataclass
class WindowResult:
  """The reconstruction of one window, in its own world frame.

  Attributes:
    start: first frame of the window in the clip.
    c2w: (w, 4, 4) cameras.
    K: (w, 3, 3) intrinsics.
    tracks_world: (w, n, 3) 3D tracks (every track of the clip; meaningless
      where `in_window` is False).
    in_window: (n,) tracks with a visible entry in the window.
    visible: (w, n) visibility.
    bases: (n, 3, k) low-rank bases (zero for tracks not in the window).
    coeffs: (w, k) coefficients.
    gamma: (n,) the network's movement level (0 for tracks not in the window).
  """

  start: int
  c2w: np.ndarray
  K: np.ndarray
  tracks_world: np.ndarray
  in_window: np.ndarray
  visible: np.ndarray
  bases: np.ndarray
  coeffs: np.ndarray
  gamma: np.ndarray

  @property
  def stop(self) -> int:
    return self.start + self.c2w.shape[0]

  def transformed(self, scale: float, rot: np.ndarray, trans: np.ndarray) -> "WindowResult":
    """The window mapped by X -> scale * rot @ X + trans."""
    c2w = self.c2w.copy()
    c2w[:, :3, :3] = rot @ self.c2w[:, :3, :3]
    c2w[:, :3, 3] = scale * self.c2w[:, :3, 3] @ rot.T + trans
    bases = scale * np.einsum("ij,njk->nik", rot, self.bases)
    bases[..., 0] += trans * self.in_window[:, None]
    return dataclasses.replace(self, c2w=c2w, tracks_world=scale * self.tracks_world @ rot.T + trans, bases=bases)


def align_windows(prev: WindowResult, nxt: WindowResult, min_points: int = 6):
  """Sim(3) (scale, rot, trans) mapping `nxt` into `prev`'s world, from the
  tracks visible in both on their common frames (cameras when too few).

  Raises:
    ValueError: when the windows share no frame.
  """
  lo, hi = nxt.start, prev.stop
  if hi <= lo:
    raise ValueError(f"align_windows: windows starting at {prev.start} and {nxt.start} do not overlap.")
  a = prev.tracks_world[lo - prev.start:hi - prev.start]
  b = nxt.tracks_world[:hi - lo]
  both = (prev.visible[lo - prev.start:hi - prev.start] & nxt.visible[:hi - lo]
          & prev.in_window[None] & nxt.in_window[None])
  if both.sum() >= min_points:
    # Points and the overlap's camera centres (the cameras as a block weigh as
    # much as all points: the trajectory must continue smoothly).
    cen_a = prev.c2w[lo - prev.start:hi - prev.start, :3, 3]
    cen_b = nxt.c2w[:hi - lo, :3, 3]
    src = np.concatenate([b[both], cen_b]).astype(np.float64)
    dst = np.concatenate([a[both], cen_a]).astype(np.float64)
    wgt = np.concatenate([np.ones(int(both.sum())), np.full(hi - lo, both.sum() / (hi - lo))])
    s, r, tr = geometry.umeyama(src, dst, weights=wgt)
    res = np.linalg.norm(s * src @ r.T + tr - dst, axis=-1)
    keep = res <= 3.0 * np.median(res) + 1e-12
    if keep[:int(both.sum())].sum() >= min_points:
      s, r, tr = geometry.umeyama(src[keep], dst[keep], weights=wgt[keep])
    return float(s), r, tr
  # Too few shared points: match the cameras of the first common frame, with
  # the scale of the camera centres' spread on the overlap (1 if degenerate).
  ca, cb = prev.c2w[lo - prev.start], nxt.c2w[0]
  r = ca[:3, :3] @ cb[:3, :3].T
  cen_a, cen_b = prev.c2w[lo - prev.start:hi - prev.start, :3, 3], nxt.c2w[:hi - lo, :3, 3]
  spread_a, spread_b = np.ptp(cen_a, 0).max(), np.ptp(cen_b, 0).max()
  s = spread_a / spread_b if spread_b > 1e-9 and spread_a > 1e-9 else 1.0
  return float(s), r, ca[:3, 3] - s * r @ cb[:3, 3]


def _blend_rotation(ra: np.ndarray, rb: np.ndarray, w: float) -> np.ndarray:
  return ra @ geometry.axis_angle_to_matrix(w * geometry.matrix_to_axis_angle(ra.T @ rb))


@dataclasses.dataclass(frozen=True)
class Stitched:
  """Windows merged into one clip (see `stitch`)."""

  c2w: np.ndarray          # (t, 4, 4)
  K: np.ndarray            # (t, 3, 3)
  tracks_world: np.ndarray  # (t, n, 3)
  frame_window: np.ndarray  # (t,)
  windows: list            # the WindowResults, mapped into the stitched world
  sim3: list               # per window (scale, rot, trans) applied to it


def stitch(windows: list[WindowResult], num_frames: int) -> Stitched:
  """Aligns consecutive windows and merges them into one trajectory.

  Args:
    windows: per-window results, ordered by start, covering [0, num_frames).
    num_frames: clip length t.

  Returns:
    Stitched cameras, intrinsics and 3D tracks. Entries of a track at frames of
    windows where it has no visible entry are filled from its nearest frame that
    has an estimate (held constant).

  Raises:
    ValueError: for no windows, or windows that do not cover the clip.
  """
  if not windows:
    raise ValueError("stitch: no windows.")
  if windows[0].start != 0 or windows[-1].stop != num_frames:
    raise ValueError(f"stitch: windows cover [{windows[0].start}, {windows[-1].stop}), expected [0, {num_frames}).")
  aligned = [windows[0]]
  sims = [(1.0, np.eye(3), np.zeros(3))]
  for nxt in windows[1:]:
    s, r, tr = align_windows(aligned[-1], nxt)
    aligned.append(nxt.transformed(s, r, tr))
    sims.append((s, r, tr))
  n = windows[0].tracks_world.shape[1]
  c2w = np.zeros((num_frames, 4, 4))
  K = np.zeros((num_frames, 3, 3))
  xyz = np.zeros((num_frames, n, 3))
  have = np.zeros((num_frames, n), bool)
  owner = np.zeros(num_frames, np.int64)
  for m, win in enumerate(aligned):
    for f in range(win.start, win.stop):
      i = f - win.start
      if m > 0 and f < aligned[m - 1].stop:  # Overlap with the previous window: blend.
        prev = aligned[m - 1]
        wgt = (f - win.start + 1) / (prev.stop - win.start + 1)
        j = f - prev.start
        c2w[f] = geometry.make_pose(_blend_rotation(prev.c2w[j, :3, :3], win.c2w[i, :3, :3], wgt),
                                    (1 - wgt) * prev.c2w[j, :3, 3] + wgt * win.c2w[i, :3, 3])
        K[f] = (1 - wgt) * prev.K[j] + wgt * win.K[i]
        both = prev.in_window & win.in_window
        xyz[f] = np.where(both[:, None], (1 - wgt) * prev.tracks_world[j] + wgt * win.tracks_world[i],
                          np.where(win.in_window[:, None], win.tracks_world[i], prev.tracks_world[j]))
        have[f] = prev.in_window | win.in_window
        owner[f] = m if wgt >= 0.5 else m - 1
      else:
        c2w[f], K[f], xyz[f], have[f], owner[f] = win.c2w[i], win.K[i], win.tracks_world[i], win.in_window, m
  xyz = _fill_nearest(xyz, have)
  return Stitched(c2w=c2w, K=K, tracks_world=xyz, frame_window=owner, windows=aligned, sim3=sims)


def _fill_nearest(xyz: np.ndarray, have: np.ndarray) -> np.ndarray:
  """Fills entries without an estimate from the nearest frame with one (per track)."""
  if have.all():
    return xyz
  t = xyz.shape[0]
  idx = np.arange(t)[:, None]
  prev_idx = np.maximum.accumulate(np.where(have, idx, -1), axis=0)
  next_idx = np.minimum.accumulate(np.where(have, idx, t)[::-1], axis=0)[::-1]
  use_prev = (prev_idx >= 0) & ((next_idx >= t) | (idx - prev_idx <= next_idx - idx))
  src = np.where(use_prev, prev_idx, next_idx)
  src = np.where((src < 0) | (src >= t), idx, src)  # A track never estimated keeps its values.
  return np.take_along_axis(xyz, src[:, :, None], axis=0)
