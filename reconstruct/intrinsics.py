"""Focal length from the tracks (self-calibration), when the intrinsics are unknown.

The principal point is taken at the image centre and the pixels square
(fx = fy = f), as for nearly every camera. For pairs of frames with enough
common visible tracks, RANSAC (OpenCV MAGSAC) fits a fundamental matrix F and a
homography H to the visible tracks (dynamic tracks are RANSAC outliers when the
static background dominates). For a candidate f with K_f:
  - general motion: E = K_f^T F K_f must have two equal singular values
    (Mendonca & Cipolla 1999); cost (s1 - s2) / (s1 + s2);
  - rotation-dominated pairs (H explains as many tracks as F): K_f^-1 H K_f
    must be a rotation up to scale; cost (s1 - s3) / (s1 + s3).
Each pair's cost curve over a log grid of f (0.25x to 4x the conventional
guess (w + h) / 2) is normalised, weighted by its inlier count and summed; the
minimum is the estimate.

Many casual camera motions do not determine f from two views: an orbit about a
point (optical axes meeting), a dolly along the optical axis, a near-static
camera. Such clips give pair estimates that disagree. The estimate is accepted
only when at least `min_pairs` pairs agree (inter-quartile range of their log f
at most `max_log_spread`) and the minimum is inside the grid; otherwise the
result says "guess" with the reason, and the conventional guess is used.
Bundle adjustment can refine f afterwards (`refine_focal`).
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from tracks4d import geometry
from tracks4d.tracks import Tracks

_GRID = np.exp(np.linspace(np.log(0.25), np.log(4.0), 161))


@dataclasses.dataclass(frozen=True)
class FocalEstimate:
  """The focal length found for a clip.

  Attributes:
    focal_px: the focal length used, pixels (the guess when not accepted).
    source: "estimated" or "guess".
    reason: why the estimate was not accepted ("" when it was).
    num_pairs: frame pairs that gave a cost curve.
    log_spread: inter-quartile range of the pairs' log focal estimates.
    candidate_px: the self-calibration minimum, even when not accepted (NaN
      when no pair could be used).
  """

  focal_px: float
  source: str
  reason: str
  num_pairs: int
  log_spread: float
  candidate_px: float


def _frame_pairs(visible: np.ndarray, min_common: int) -> list[tuple[int, int]]:
  """Pairs (i, j) at several gaps and start frames with enough common tracks."""
  t = visible.shape[0]
  gaps = sorted({max(1, t // 6), max(1, t // 3), max(1, t // 2), max(1, 2 * t // 3), t - 1})
  out = set()
  for gap in gaps:
    for i in np.linspace(0, t - 1 - gap, 4).astype(int):
      if (visible[i] & visible[i + gap]).sum() >= min_common:
        out.add((int(i), int(i + gap)))
  return sorted(out)


def _pair_cost(p1: np.ndarray, p2: np.ndarray, T: np.ndarray, ransac_px: float, critical_px: float):
  """(normalised cost over _GRID, inlier count) of one pair, or None."""
  H, h_inl = cv2.findHomography(p1, p2, cv2.USAC_MAGSAC, ransac_px, maxIters=2000, confidence=0.999)
  F, f_inl = cv2.findFundamentalMat(p1, p2, cv2.USAC_MAGSAC, ransac_px, 0.999, 2000)
  n_h = 0 if H is None else int(h_inl.sum())
  n_f = 0 if F is None or F.shape != (3, 3) else int(f_inl.sum())
  if max(n_h, n_f) < 8:
    return None
  costs = np.empty(len(_GRID))
  if n_h >= 0.9 * n_f:  # Rotation-dominated (or planar): K^-1 H K is a rotation.
    Hn = np.linalg.inv(T) @ H @ T
    for i, s in enumerate(_GRID):
      sv = np.linalg.svd(np.diag([1 / s, 1 / s, 1.0]) @ Hn @ np.diag([s, s, 1.0]), compute_uv=False)
      costs[i] = (sv[0] - sv[2]) / (sv[0] + sv[2])
  else:
    # The optical axes meet (the principal points correspond) in the critical
    # configuration where F says nothing about f: skip near-critical pairs.
    pp = T[:, 2]
    line = F @ pp
    if abs(pp @ line) / max(np.hypot(line[0], line[1]), 1e-12) < critical_px:
      return None
    Fn = T.T @ F @ T
    for i, s in enumerate(_GRID):
      S = np.diag([s, s, 1.0])
      sv = np.linalg.svd(S @ Fn @ S, compute_uv=False)
      costs[i] = (sv[0] - sv[1]) / (sv[0] + sv[1])
  return costs / max(costs.max(), 1e-12), max(n_h, n_f)


def estimate_focal(tracks: Tracks, *, min_common: int = 20, min_pairs: int = 3, max_log_spread: float = 0.15,
                   ransac_px: float = 1.0, min_motion_px: float = 2.0, critical_fraction: float = 0.05,
                   seed: int = 0) -> FocalEstimate:
  """Estimates one focal length for a clip from its 2D tracks.

  Args:
    tracks: one clip (unbatched); only `xy_px`, `valid` and `image_hw` are
      used (its intrinsics are not).
    min_common: common visible tracks a frame pair needs.
    min_pairs: pairs needed to accept the estimate.
    max_log_spread: largest accepted inter-quartile range of the pairs' log f.
    ransac_px: RANSAC inlier threshold, pixels.
    min_motion_px: pairs whose median track motion is smaller are skipped.
    critical_fraction: fundamental-matrix pairs whose principal point lies
      within this fraction of the guessed focal length of the other's epipolar
      line (optical axes nearly meeting: f is not determined) are skipped.
    seed: OpenCV's RANSAC seed (results are deterministic given it).

  Returns:
    FocalEstimate (source "estimated" or "guess" with the reason).

  Raises:
    ValueError: for a batched `tracks`.

  Example:
    >>> est = estimate_focal(clip)
    >>> est.focal_px, est.source
  """
  xy = np.asarray(tracks.xy_px, np.float64)
  if xy.ndim != 3:
    raise ValueError(f"estimate_focal: tracks.xy_px must be one clip (t, n, 2); got shape {xy.shape}.")
  vis = np.asarray(tracks.valid)
  h, w = (int(v) for v in np.asarray(tracks.image_hw))
  guess = float(geometry.guess_intrinsics((h, w))[0, 0])
  T = np.array([[guess, 0, (w - 1) / 2], [0, guess, (h - 1) / 2], [0, 0, 1.0]])
  cv2.setRNGSeed(seed)
  curves, weights, per_pair = [], [], []
  for i, j in _frame_pairs(vis, min_common):
    m = vis[i] & vis[j]
    p1, p2 = xy[i, m], xy[j, m]
    if np.median(np.linalg.norm(p1 - p2, axis=-1)) < min_motion_px:
      continue
    out = _pair_cost(p1, p2, T, ransac_px, critical_fraction * guess)
    if out is not None:
      curves.append(out[0])
      weights.append(out[1])
      per_pair.append(np.log(_GRID[np.argmin(out[0])]))
  if not curves:
    return FocalEstimate(guess, "guess", "no frame pair with enough common tracks and motion", 0, np.nan, np.nan)
  total = np.einsum("p,pg->g", np.asarray(weights, np.float64), np.asarray(curves))
  k = int(np.argmin(total))
  candidate = float(_GRID[k] * guess)
  spread = float(np.subtract(*np.percentile(per_pair, [75, 25]))) if len(per_pair) > 1 else np.inf
  reason = ""
  if len(curves) < min_pairs:
    reason = f"only {len(curves)} usable frame pairs (need {min_pairs})"
  elif spread > max_log_spread:
    reason = (f"frame pairs disagree (log-focal spread {spread:.2f} > {max_log_spread}): the camera motion "
              "does not determine the focal length (e.g. an orbit about a point, a dolly, little motion)")
  elif k in (0, len(_GRID) - 1):
    reason = "the minimum is at the edge of the search range"
  if reason:
    return FocalEstimate(guess, "guess", reason, len(curves), spread, candidate)
  return FocalEstimate(candidate, "estimated", "", len(curves), spread, candidate)


def intrinsics_for(tracks: Tracks, focal_px: float) -> np.ndarray:
  """(t, 3, 3) intrinsics with the given focal length and the image-centre
  principal point."""
  h, w = (int(v) for v in np.asarray(tracks.image_hw))
  K = geometry.make_intrinsics(focal_px, focal_px, (w - 1) / 2, (h - 1) / 2)
  return np.broadcast_to(np.asarray(K, np.float32), (tracks.num_frames, 3, 3)).copy()
