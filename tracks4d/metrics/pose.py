"""Camera trajectory metrics: ATE and RPE after a Sim(3) alignment.

The prediction is aligned to the ground truth with one Umeyama similarity
(scale, rotation, translation) fitted to the camera centres, as TracksTo4D and
its baselines do. Then
* ATE is the RMSE of the aligned centres against the gt centres;
* RPE compares the relative pose between consecutive frames (t, t + 1):
  E_t = (Q_t^-1 Q_t+1)^-1 (P_t^-1 P_t+1) with P the aligned predicted and Q the
  gt camera-to-world poses (TUM / evo convention). RPE translation is the RMS of
  |trans(E_t)|, RPE rotation the RMS of angle(E_t) in degrees.

Relative poses do not change under a rotation or translation of the world, so
RPE depends on the alignment only through its scale.

Units: ATE and RPE translation are in the units of the gt poses (the paper's
tables: mm); RPE rotation is in degrees.

Shape letters: t frames.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional

import numpy as np

from tracks4d import geometry


@dataclasses.dataclass(frozen=True)
class PoseMetrics:
  """Trajectory errors of one clip.

  Attributes:
    ate: RMSE of the Sim(3)-aligned camera centres, gt units.
    rpe_trans: RMS translation error of consecutive relative poses, gt units;
      NaN when no pair (t, t + 1) of valid frames exists.
    rpe_rot_deg: RMS rotation error of consecutive relative poses in degrees;
      NaN likewise.
    sim3_scale: the scale of the alignment (gt units per predicted unit).
    num_frames: number of valid frames used for the alignment and ATE.
    num_pairs: number of consecutive valid pairs used for RPE.
  """

  ate: float
  rpe_trans: float
  rpe_rot_deg: float
  sim3_scale: float
  num_frames: int
  num_pairs: int


def _check_w2c(w2c, name: str, num_frames: Optional[int]) -> np.ndarray:
  w2c = np.asarray(w2c)
  if w2c.ndim != 3 or w2c.shape[1:] != (4, 4) or (num_frames is not None and w2c.shape[0] != num_frames):
    want = "(t, 4, 4)" if num_frames is None else f"(t, 4, 4) with t = {num_frames}"
    raise ValueError(f"pose_metrics: `{name}` must be world-to-camera poses of shape {want}; got {w2c.shape}.")
  if not np.issubdtype(w2c.dtype, np.number):
    raise ValueError(f"pose_metrics: `{name}` (t, 4, 4) must be numeric; got dtype {w2c.dtype}.")
  w2c = w2c.astype(np.float64)
  if not np.all(np.isfinite(w2c)):
    raise ValueError(f"pose_metrics: `{name}` (t, 4, 4) must be finite; found {int((~np.isfinite(w2c)).sum())} NaN/inf.")
  rot = w2c[:, :3, :3]
  if not np.allclose(rot @ np.swapaxes(rot, -1, -2), np.eye(3), atol=1e-3):
    raise ValueError(f"pose_metrics: `{name}` (t, 4, 4) rotation blocks are not orthonormal.")
  return w2c


def align_sim3(pred_w2c, gt_w2c, valid_frames=None) -> tuple[float, np.ndarray, np.ndarray]:
  """Umeyama Sim(3) aligning predicted camera centres to gt centres.

  Args:
    pred_w2c: (t, 4, 4) predicted world-to-camera poses.
    gt_w2c: (t, 4, 4) ground-truth world-to-camera poses.
    valid_frames: optional (t,) bool; frames used for the fit.

  Returns:
    (s, R, t): scale, (3, 3) rotation, (3,) translation with
    gt_centre ~= s * R @ pred_centre + t.

  Raises:
    ValueError: naming the argument, for bad shapes, NaN, or fewer than 2
      valid frames.
  """
  pred_w2c = _check_w2c(pred_w2c, "pred_w2c", None)
  gt_w2c = _check_w2c(gt_w2c, "gt_w2c", pred_w2c.shape[0])
  valid = _check_valid(valid_frames, pred_w2c.shape[0])
  s, rot, trans = geometry.umeyama(geometry.camera_centers(pred_w2c)[valid], geometry.camera_centers(gt_w2c)[valid])
  return float(s), np.asarray(rot), np.asarray(trans)


def _check_valid(valid_frames, t: int) -> np.ndarray:
  if valid_frames is None:
    valid = np.ones((t,), bool)
  else:
    valid = np.asarray(valid_frames)
    if valid.shape != (t,) or valid.dtype != np.bool_:
      raise ValueError(f"pose_metrics: `valid_frames` must be a boolean (t,) mask with t = {t}; "
                       f"got shape {valid.shape}, dtype {valid.dtype}.")
  if valid.sum() < 2:
    raise ValueError(f"pose_metrics: `valid_frames` selects {int(valid.sum())} frame(s); the Sim(3) alignment "
                     "needs at least 2.")
  return valid


def pose_metrics(pred_w2c, gt_w2c, valid_frames=None) -> PoseMetrics:
  """ATE and RPE of a predicted camera trajectory after Sim(3) alignment.

  Args:
    pred_w2c: (t, 4, 4) predicted world-to-camera poses, any world frame and
      scale.
    gt_w2c: (t, 4, 4) ground-truth world-to-camera poses.
    valid_frames: optional (t,) bool; invalid frames (e.g. padding) are left
      out of the alignment, of ATE, and of every RPE pair they belong to. RPE
      uses the pairs (t, t + 1) with both frames valid.

  Returns:
    A `PoseMetrics` (ATE and RPE translation in gt units, rotation in degrees).

  Raises:
    ValueError: naming the argument, for wrong shapes, NaN/inf, non-orthonormal
      rotations, or fewer than 2 valid frames.

  Example:
    >>> m = pose_metrics(pred_w2c, tracks.gt.w2c)
    >>> m.ate, m.rpe_trans, m.rpe_rot_deg
  """
  pred_w2c = _check_w2c(pred_w2c, "pred_w2c", None)
  gt_w2c = _check_w2c(gt_w2c, "gt_w2c", pred_w2c.shape[0])
  valid = _check_valid(valid_frames, pred_w2c.shape[0])
  scale, rot, trans = align_sim3(pred_w2c, gt_w2c, valid)

  # Aligned predicted camera-to-world poses: rotation R @ R_c2w, centre s R c + t.
  pred_c2w = geometry.invert_pose(pred_w2c)
  aligned = geometry.make_pose(rot @ pred_c2w[:, :3, :3], scale * pred_c2w[:, :3, 3] @ rot.T + trans)
  gt_c2w = geometry.invert_pose(gt_w2c)
  ate = float(np.sqrt(np.mean(np.sum((aligned[valid, :3, 3] - gt_c2w[valid, :3, 3]) ** 2, axis=-1))))

  pairs = valid[:-1] & valid[1:]
  if not pairs.any():
    return PoseMetrics(ate, math.nan, math.nan, scale, int(valid.sum()), 0)
  rel_pred = geometry.invert_pose(aligned[:-1]) @ aligned[1:]
  rel_gt = geometry.invert_pose(gt_c2w[:-1]) @ gt_c2w[1:]
  err = (geometry.invert_pose(rel_gt) @ rel_pred)[pairs]
  rpe_trans = float(np.sqrt(np.mean(np.sum(err[:, :3, 3] ** 2, axis=-1))))
  angles_deg = np.degrees(np.linalg.norm(geometry.matrix_to_axis_angle(err[:, :3, :3]), axis=-1))
  rpe_rot_deg = float(np.sqrt(np.mean(angles_deg**2)))
  return PoseMetrics(ate, rpe_trans, rpe_rot_deg, scale, int(valid.sum()), int(pairs.sum()))
