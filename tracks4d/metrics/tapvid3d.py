"""TAPVid-3D metrics (APD, OA, 3D-AJ) as google-deepmind/tapnet defines them.

Written from the definitions in tapnet's `tapvid3d/evaluation/metrics.py`
(`compute_tapvid3d_metrics`, default scaling "median", per-video metrics):

* Scaling "median": ONE global factor per clip,
  s = median(|gt_xyz|) / median(|pred_xyz|), where |.| is the Euclidean norm of
  the camera-frame 3D point (distance to the camera centre, not the depth) and
  both medians run over the entries visible in BOTH gt and prediction. Every
  predicted point is multiplied by s. ("mean" uses means instead; "none" s = 1.)
* Radius: a point is within threshold delta (pixels) when
  |s pred - gt|^2 < (delta * z_gt / sqrt(fx fy))^2, z_gt the gt depth (camera
  z), for delta in {1, 2, 4, 8, 16}: the pixel threshold back-projected to the
  gt depth.
* APD (average_pts_within_thresh): per threshold, the fraction of gt-visible
  entries that are within it (predicted visibility ignored); then the mean over
  thresholds.
* OA (occlusion_accuracy): fraction of all entries whose predicted visibility
  equals the gt visibility.
* 3D-AJ (average_jaccard): per threshold TP / (gt visible + FP) with
  TP = within & gt visible & pred visible and
  FP = pred visible & (gt occluded | not within); mean over thresholds.

All scores are fractions in [0, 1] (the paper multiplies by 100).
One difference: when no entry is visible in both gt and prediction, tapnet's
median is NaN and so are its APD and AJ; here the scale falls back to 1 (the
`scale` field then reads 1.0) so APD stays defined (AJ is then 0: no TP).

Shape letters: t frames, n tracks (the order of TAPVid-3D's `tracks_XYZ`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

THRESHOLDS_PX = (1, 2, 4, 8, 16)
SCALINGS = ("median", "mean", "none")


@dataclasses.dataclass(frozen=True)
class TapVid3DMetrics:
  """TAPVid-3D scores of one clip, fractions in [0, 1].

  Attributes:
    average_jaccard: 3D-AJ, mean of `jaccard_by_threshold`.
    average_pts_within: APD, mean of `pts_within_by_threshold`.
    occlusion_accuracy: OA.
    jaccard_by_threshold: 3D Jaccard per threshold in `thresholds_px`.
    pts_within_by_threshold: fraction within radius per threshold.
    thresholds_px: the pixel thresholds delta.
    scale: the factor the prediction was multiplied by.
  """

  average_jaccard: float
  average_pts_within: float
  occlusion_accuracy: float
  jaccard_by_threshold: tuple[float, ...]
  pts_within_by_threshold: tuple[float, ...]
  thresholds_px: tuple[float, ...]
  scale: float


def _check_xyz(x, name: str, shape=None) -> np.ndarray:
  x = np.asarray(x)
  if x.ndim != 3 or x.shape[-1] != 3 or (shape is not None and x.shape != shape):
    want = "(t, n, 3)" if shape is None else f"(t, n, 3) = {shape}"
    raise ValueError(f"tapvid3d_metrics: `{name}` must have shape {want} camera-frame XYZ; got {x.shape}.")
  if not np.issubdtype(x.dtype, np.number):
    raise ValueError(f"tapvid3d_metrics: `{name}` (t, n, 3) must be numeric; got dtype {x.dtype}.")
  x = x.astype(np.float64)
  if not np.all(np.isfinite(x)):
    raise ValueError(f"tapvid3d_metrics: `{name}` (t, n, 3) must be finite; found "
                     f"{int((~np.isfinite(x)).sum())} NaN/inf.")
  return x


def _check_visible(x, name: str, shape: tuple) -> np.ndarray:
  x = np.asarray(x)
  if x.shape != shape or x.dtype != np.bool_:
    raise ValueError(f"tapvid3d_metrics: `{name}` must be a boolean (t, n) = {shape} mask; "
                     f"got shape {x.shape}, dtype {x.dtype}.")
  return x


def _check_intrinsics(x) -> np.ndarray:
  x = np.asarray(x)
  if x.shape != (4,) or not np.issubdtype(x.dtype, np.number) or not np.all(np.isfinite(x)):
    raise ValueError(f"tapvid3d_metrics: `fx_fy_cx_cy` must be 4 finite numbers (fx, fy, cx, cy) in pixels; "
                     f"got {x!r}.")
  if x[0] <= 0 or x[1] <= 0:
    raise ValueError(f"tapvid3d_metrics: `fx_fy_cx_cy` focal lengths must be positive; got fx={x[0]}, fy={x[1]}.")
  return x.astype(np.float64)


def global_scale(pred_xyz, gt_xyz, both_visible, scaling: str = "median") -> float:
  """The tapnet global scale factor for the prediction (see module doc).

  Args:
    pred_xyz: (t, n, 3) predicted camera-frame points.
    gt_xyz: (t, n, 3) gt camera-frame points.
    both_visible: (t, n) bool, entries visible in gt and prediction.
    scaling: "median", "mean" or "none".

  Returns:
    s with gt ~= s * pred; 1.0 for "none" or when `both_visible` is empty.
  """
  if scaling not in SCALINGS:
    raise ValueError(f"tapvid3d_metrics: `scaling` must be one of {SCALINGS}; got {scaling!r}.")
  if scaling == "none" or not both_visible.any():
    return 1.0
  reduce = np.median if scaling == "median" else np.mean
  pred_norm = np.sqrt(np.maximum(1e-12, np.sum(pred_xyz**2, axis=-1)))[both_visible]
  gt_norm = np.sqrt(np.maximum(1e-12, np.sum(gt_xyz**2, axis=-1)))[both_visible]
  return float(reduce(gt_norm) / reduce(pred_norm))


def tapvid3d_metrics(pred_xyz, pred_visible, gt_xyz, gt_visible, fx_fy_cx_cy, scaling: str = "median",
                     thresholds_px=THRESHOLDS_PX) -> TapVid3DMetrics:
  """APD, occlusion accuracy and 3D average Jaccard of one clip.

  Args:
    pred_xyz: (t, n, 3) predicted camera-frame points, any scale; finite.
    pred_visible: (t, n) bool predicted visibility.
    gt_xyz: (t, n, 3) gt camera-frame points (TAPVid-3D `tracks_XYZ`, metres).
    gt_visible: (t, n) bool gt visibility (`visibility`).
    fx_fy_cx_cy: (4,) intrinsics in pixels; only sqrt(fx fy) is used.
    scaling: "median" (tapnet's default), "mean" or "none".
    thresholds_px: pixel thresholds delta; default (1, 2, 4, 8, 16).

  Returns:
    A `TapVid3DMetrics`.

  Raises:
    ValueError: naming the argument, for wrong shapes or dtypes, NaN/inf,
      non-positive focal lengths, an unknown `scaling`, or no gt-visible entry.

  Example:
    >>> m = tapvid3d_metrics(pred["tracks_XYZ"], pred["visibility"] > 0.5,
    ...                      clip["tracks_XYZ"], clip["visibility"] > 0.5, clip["fx_fy_cx_cy"])
    >>> m.average_jaccard, m.average_pts_within, m.occlusion_accuracy
  """
  pred_xyz = _check_xyz(pred_xyz, "pred_xyz")
  gt_xyz = _check_xyz(gt_xyz, "gt_xyz", pred_xyz.shape)
  shape = pred_xyz.shape[:2]
  pred_vis = _check_visible(pred_visible, "pred_visible", shape)
  gt_vis = _check_visible(gt_visible, "gt_visible", shape)
  intr = _check_intrinsics(fx_fy_cx_cy)
  if not gt_vis.any():
    raise ValueError("tapvid3d_metrics: `gt_visible` has no visible entry; APD and AJ are undefined.")

  scale = global_scale(pred_xyz, gt_xyz, gt_vis & pred_vis, scaling)
  sq_dist = np.sum((scale * pred_xyz - gt_xyz) ** 2, axis=-1)
  radius_per_px = gt_xyz[..., 2] / np.sqrt(intr[0] * intr[1])
  occlusion_accuracy = float(np.mean(pred_vis == gt_vis))
  num_gt_visible = gt_vis.sum()
  jaccards, fractions = [], []
  for delta in thresholds_px:
    within = sq_dist < (delta * radius_per_px) ** 2
    correct = within & gt_vis
    fractions.append(float(correct.sum() / num_gt_visible))
    true_pos = (correct & pred_vis).sum()
    false_pos = (pred_vis & (~gt_vis | ~within)).sum()
    jaccards.append(float(true_pos / (num_gt_visible + false_pos)))
  return TapVid3DMetrics(
      average_jaccard=float(np.mean(jaccards)),
      average_pts_within=float(np.mean(fractions)),
      occlusion_accuracy=occlusion_accuracy,
      jaccard_by_threshold=tuple(jaccards),
      pts_within_by_threshold=tuple(fractions),
      thresholds_px=tuple(float(d) for d in thresholds_px),
      scale=scale,
  )
