"""Rigid orthographic factorisation (Tomasi and Kanade, IJCV 1992) of complete tracks.

The classical answer to a rigid object seen by a turning camera: the centred
normalised tracks W (2t, n) have rank 3 under weak perspective, W = M S; an SVD
gives M and S up to an affine map, fixed by asking every frame's two camera rows
to be orthogonal and of equal norm (the metric upgrade). Depth in camera frame i
is D_i + k_i . S_j, with D_i = 1 / (the rows' scale) in units of S and k_i the
viewing axis. The upgrade leaves a mirror ambiguity (S_z -> -S_z); perspective
breaks it, so the mirror whose perspective reprojection error is lower is kept.

Non-rigid content is fitted by its rank-3 (rigid) part only. Only tracks visible
in every frame can be factorised: others are refused, not dropped.

Shapes: t frames, n tracks.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tracks4d import geometry
from tracks4d.tracks import Tracks


@dataclasses.dataclass(frozen=True)
class RigidFactorization:
  """A rigid factorisation of one clip.

  Attributes:
    w2c: (t, 4, 4) world-to-camera poses (world = the factorised shape's frame).
    xyz_world: (n, 3) the rigid shape.
    depth: (t, n) camera-frame depth of every track.
    reproj_px: mean perspective reprojection error, pixels (of the kept mirror).
  """

  w2c: np.ndarray
  xyz_world: np.ndarray
  depth: np.ndarray
  reproj_px: float


def _metric_upgrade(motion: np.ndarray) -> np.ndarray:
  """(3, 3) Q such that the rows of motion @ Q are orthogonal with equal norms per frame."""
  m, n = motion[0::2], motion[1::2]

  def sym_rows(a, b):  # Coefficients of a^T L b over the 6 entries of a symmetric L.
    return np.stack([a[:, 0] * b[:, 0], a[:, 0] * b[:, 1] + a[:, 1] * b[:, 0], a[:, 0] * b[:, 2] + a[:, 2] * b[:, 0],
                     a[:, 1] * b[:, 1], a[:, 1] * b[:, 2] + a[:, 2] * b[:, 1], a[:, 2] * b[:, 2]], -1)

  a = np.concatenate([sym_rows(m, m) - sym_rows(n, n), sym_rows(m, n), sym_rows(m[:1], m[:1])])
  y = np.concatenate([np.zeros(2 * len(m)), [1.0]])
  l = np.linalg.lstsq(a, y, rcond=None)[0]
  big_l = np.array([[l[0], l[1], l[2]], [l[1], l[3], l[4]], [l[2], l[4], l[5]]])
  w, v = np.linalg.eigh(big_l)
  return v @ np.diag(np.sqrt(np.clip(w, 1e-12, None)))


def rigid_factorization(tracks: Tracks) -> RigidFactorization:
  """Cameras and depth of a clip by rigid orthographic factorisation.

  Args:
    tracks: one clip whose tracks are all visible in every frame, with
      intrinsics (t >= 3 frames, n >= 4 tracks).

  Returns:
    RigidFactorization with the mirror of lower perspective reprojection error.

  Raises:
    ValueError: naming `visible` when a track is hidden in some frame, or
      `num_frames` / `num_tracks` when there are too few.

  Example:
    >>> rec = rigid_factorization(mocap_mat.mocap_to_tracks(mocap_mat.load_mocap("pickup"), num_frames=32))
    >>> rec.depth.shape
    (32, 41)
  """
  t, n = tracks.num_frames, tracks.num_tracks
  if t < 3 or n < 4:
    raise ValueError(f"rigid_factorization: needs num_frames >= 3 and num_tracks >= 4; got {t} and {n}.")
  visible = np.asarray(tracks.visible)
  if not visible.all():
    raise ValueError(f"rigid_factorization: `visible` must be true everywhere (complete tracks); "
                     f"{int((~visible).sum())} of {visible.size} entries are hidden.")
  k = np.asarray(tracks.intrinsics, np.float64)
  k = np.broadcast_to(k, (t, 3, 3))
  xy_n = np.asarray(geometry.pixels_to_normalized(np.asarray(tracks.xy_px, np.float64), k))  # (t, n, 2)
  w = np.transpose(xy_n, (0, 2, 1)).reshape(2 * t, n)
  centre = w.mean(1, keepdims=True)
  u, s, vt = np.linalg.svd(w - centre, full_matrices=False)
  motion, shape = u[:, :3] * np.sqrt(s[:3]), np.sqrt(s[:3])[:, None] * vt[:3]
  q = _metric_upgrade(motion)
  motion, shape = motion @ q, np.linalg.solve(q, shape)
  xy_px = np.asarray(tracks.xy_px, np.float64)
  best = None
  for mirror in (1.0, -1.0):
    flip = np.array([1.0, 1.0, mirror])  # M S = (M F)(F S) with F = diag(1, 1, mirror).
    xyz = (shape * flip[:, None]).T  # (n, 3)
    rows = motion.reshape(t, 2, 3) * flip  # Each frame's two camera rows, scaled by 1 / distance.
    dist = 1.0 / np.linalg.norm(rows, axis=-1).mean(-1)  # (t,)
    # Rows r1, r2 orthonormalised, r3 = r1 x r2: the transpose of the 6D rotation's columns.
    rot = np.swapaxes(geometry.rot6d_to_matrix(rows.reshape(t, 6)), -1, -2)
    w2c = geometry.make_pose(rot, np.stack([centre[0::2, 0] * dist, centre[1::2, 0] * dist, dist], -1))
    xyz_cam = np.asarray(geometry.transform_points(w2c, np.broadcast_to(xyz, (t, n, 3))))
    proj_px, depth = geometry.project(xyz_cam, k)
    reproj_px = float(np.mean(np.linalg.norm(proj_px - xy_px, axis=-1)))
    if depth.min() > 0 and (best is None or reproj_px < best.reproj_px):
      best = RigidFactorization(w2c=w2c, xyz_world=xyz, depth=depth, reproj_px=reproj_px)
  if best is None:
    raise ValueError("rigid_factorization: both mirrors put points behind the camera (the content is too close "
                     "for a weak-perspective fit).")
  return best
