"""Depth metrics at track points: AbsRel and the delta < 1.25^k accuracies.

TracksTo4D evaluates depth at the track points only, after a median scale
alignment: the paper's per-frame scale s_t = median(gt_t) / median(pred_t), and,
because a per-frame scale is lenient (it hides scale drift), one median scale for
the whole clip as well. Scores are reported for all valid entries ("all") and for
the entries on moving content ("dyn").

Shape letters: t frames, n tracks.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional

import numpy as np

SCALINGS = ("per_frame", "per_clip", "none")
DELTA_BASE = 1.25


@dataclasses.dataclass(frozen=True)
class DepthMetrics:
  """Depth scores of one clip. All values are unitless.

  Attributes:
    abs_rel: mean |s d - g| / g over all valid entries.
    delta_1: fraction of valid entries with max(s d / g, g / (s d)) < 1.25.
    delta_2: same with 1.25^2.
    delta_3: same with 1.25^3.
    abs_rel_dyn: `abs_rel` over the valid dynamic entries; NaN when there is
      none (no `dynamic` mask given, or no valid entry on moving content).
    delta_1_dyn, delta_2_dyn, delta_3_dyn: the deltas over the same entries;
      NaN likewise.
    num_points: number of valid entries ("all").
    num_points_dyn: number of valid dynamic entries (0 when NaN above).
    scaling: how the prediction was scaled: "per_frame", "per_clip" or "none".
  """

  abs_rel: float
  delta_1: float
  delta_2: float
  delta_3: float
  abs_rel_dyn: float
  delta_1_dyn: float
  delta_2_dyn: float
  delta_3_dyn: float
  num_points: int
  num_points_dyn: int
  scaling: str


def _check_tn(x, name: str, shape: Optional[tuple], dtype: str) -> np.ndarray:
  x = np.asarray(x)
  if x.ndim != 2 or (shape is not None and x.shape != shape):
    want = "(t, n)" if shape is None else f"(t, n) = {shape}"
    raise ValueError(f"depth_metrics: `{name}` must have shape {want}; got {x.shape}.")
  if dtype == "bool":
    if x.dtype != np.bool_:
      raise ValueError(f"depth_metrics: `{name}` must be a boolean (t, n) mask; got dtype {x.dtype}.")
    return x
  if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
    raise ValueError(f"depth_metrics: `{name}` must be a numeric (t, n) array; got dtype {x.dtype}.")
  x = x.astype(np.float64)
  if not np.all(np.isfinite(x)):
    raise ValueError(f"depth_metrics: `{name}` (t, n) must be finite; found {int((~np.isfinite(x)).sum())} NaN/inf.")
  return x


def median_scales(pred_depth, gt_depth, mask, scaling: str = "per_frame") -> np.ndarray:
  """The median scale factors applied to the predicted depth.

  Args:
    pred_depth: (t, n) predicted depth.
    gt_depth: (t, n) ground-truth depth.
    mask: (t, n) bool, the entries the medians are taken over.
    scaling: "per_frame" (s_t = median(gt_t) / median(pred_t) over each frame's
      masked entries), "per_clip" (one s over all masked entries) or "none" (1).

  Returns:
    (t,) scale per frame (constant for "per_clip" and "none"); NaN on frames
    without a masked entry under "per_frame".

  Raises:
    ValueError: for an unknown `scaling`, or a non-positive median predicted
      depth (the scale would be undefined or flip the sign).
  """
  t = pred_depth.shape[0]
  if scaling not in SCALINGS:
    raise ValueError(f"depth_metrics: `scaling` must be one of {SCALINGS}; got {scaling!r}.")
  if scaling == "none":
    return np.ones((t,))
  if scaling == "per_clip":
    med_pred = np.median(pred_depth[mask])
    if med_pred <= 0:
      raise ValueError(f"depth_metrics: `pred_depth` has a non-positive median ({med_pred:.3g}) over the valid "
                       "entries; the median scale is undefined.")
    return np.full((t,), np.median(gt_depth[mask]) / med_pred)
  scales = np.full((t,), np.nan)
  for i in range(t):
    if mask[i].any():
      med_pred = np.median(pred_depth[i][mask[i]])
      if med_pred <= 0:
        raise ValueError(f"depth_metrics: `pred_depth` has a non-positive median ({med_pred:.3g}) in frame {i}; "
                         "the per-frame median scale is undefined.")
      scales[i] = np.median(gt_depth[i][mask[i]]) / med_pred
  return scales


def _scores(scaled: np.ndarray, gt: np.ndarray) -> tuple[float, float, float, float]:
  if scaled.size == 0:
    return (math.nan,) * 4
  abs_rel = float(np.mean(np.abs(scaled - gt) / gt))
  positive = scaled > 0
  safe = np.where(positive, scaled, 1.0)
  ratio = np.where(positive, np.maximum(safe / gt, gt / safe), np.inf)
  deltas = [float(np.mean(ratio < DELTA_BASE**k)) for k in (1, 2, 3)]
  return (abs_rel, *deltas)


def depth_metrics(pred_depth, gt_depth, valid=None, dynamic=None, scaling: str = "per_frame") -> DepthMetrics:
  """AbsRel and delta accuracies of predicted track depths after median scaling.

  The scale is estimated over all valid entries (of the frame, or of the clip)
  and applied to both splits; "dyn" scores are then taken over the valid entries
  that are also dynamic. A predicted depth <= 0 at a valid entry never counts as
  within a delta threshold (its AbsRel term is computed as usual).

  Args:
    pred_depth: (t, n) predicted camera-frame depth, any scale; finite.
    gt_depth: (t, n) ground-truth depth; entries <= 0 are invalid; finite.
    valid: optional (t, n) bool; entries to evaluate (e.g. visible tracks).
      Combined with gt_depth > 0. Default: all entries.
    dynamic: optional (t, n) bool, True on moving content. Default: none, so
      the "dyn" fields are NaN.
    scaling: "per_frame" (the paper's), "per_clip" (one scale) or "none".

  Returns:
    A `DepthMetrics`.

  Raises:
    ValueError: naming the argument, for wrong shapes or dtypes, NaN/inf
      depths, an unknown `scaling`, no valid entry at all, or a non-positive
      median predicted depth.

  Example:
    >>> m = depth_metrics(pred, gt, valid=tracks.visible, dynamic=gt_dyn)
    >>> m.abs_rel, m.delta_1, m.abs_rel_dyn
  """
  pred_depth = _check_tn(pred_depth, "pred_depth", None, "float")
  gt_depth = _check_tn(gt_depth, "gt_depth", pred_depth.shape, "float")
  shape = pred_depth.shape
  valid = np.ones(shape, bool) if valid is None else _check_tn(valid, "valid", shape, "bool")
  dyn = np.zeros(shape, bool) if dynamic is None else _check_tn(dynamic, "dynamic", shape, "bool")
  mask = valid & (gt_depth > 0)
  if not mask.any():
    raise ValueError("depth_metrics: no valid entry (`valid` & `gt_depth` > 0 is empty); nothing to evaluate.")
  scales = median_scales(pred_depth, gt_depth, mask, scaling)
  scaled = pred_depth * scales[:, None]
  all_scores = _scores(scaled[mask], gt_depth[mask])
  dyn_mask = mask & dyn
  dyn_scores = _scores(scaled[dyn_mask], gt_depth[dyn_mask])
  return DepthMetrics(*all_scores, *dyn_scores, num_points=int(mask.sum()), num_points_dyn=int(dyn_mask.sum()),
                      scaling=scaling)
