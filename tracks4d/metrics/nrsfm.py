"""The normalised 3D error e3D of non-rigid structure from motion.

e3D = 1 / (t n) * sum_{f, p} |S_hat_f,p - S_f,p| / s, where |.| is the Euclidean
norm of the 3D difference of one point in one frame, and the normaliser s is the
mean, over the 3t rows of the stacked (3t x n) ground truth (rows x_f, y_f, z_f
of every frame), of each row's population standard deviation (ddof = 0) over
its n points.

This convention was found by reproducing the published figures on the
CMU-mocap data (REFERENCE.md section 4, `Shat / scale`): per-point norm (not
per-coordinate absolute values), ddof = 0 (ddof = 1 is off by about 1 %), rows
of the 3t x n matrix (not columns, frames or coordinates), no centring (the
data is already centred per frame, so centring changes nothing there).
"Global orthogonal alignment" is one 3 x 3 rotation for all frames, the
orthogonal Procrustes solution minimising sum_f |R S_hat_f - S_f|^2, without
translation or scale (a fitted scale does not reproduce the figures). On that
data the unconstrained optimum is already a proper rotation, so allowing
reflections gives the same numbers; by default reflections are excluded.

Shape letters: t frames, n points.
"""

from __future__ import annotations

import dataclasses

import numpy as np

ALIGNMENTS = ("none", "global_rotation")


@dataclasses.dataclass(frozen=True)
class NrsfmMetrics:
  """NRSfM errors of one sequence (unitless: normalised by `norm_scale`).

  Attributes:
    e3d: normalised 3D error without alignment.
    e3d_aligned: normalised 3D error after one global orthogonal alignment.
    norm_scale: the normaliser s, in the units of the ground truth.
  """

  e3d: float
  e3d_aligned: float
  norm_scale: float


def _check_points(x, name: str, shape=None) -> np.ndarray:
  x = np.asarray(x)
  if x.ndim != 3 or x.shape[-1] != 3 or (shape is not None and x.shape != shape):
    want = "(t, n, 3)" if shape is None else f"(t, n, 3) = {shape}"
    raise ValueError(f"nrsfm: `{name}` must have shape {want} (3D points per frame); got {x.shape}.")
  if not np.issubdtype(x.dtype, np.number):
    raise ValueError(f"nrsfm: `{name}` (t, n, 3) must be numeric; got dtype {x.dtype}.")
  x = x.astype(np.float64)
  if not np.all(np.isfinite(x)):
    raise ValueError(f"nrsfm: `{name}` (t, n, 3) must be finite; found {int((~np.isfinite(x)).sum())} NaN/inf.")
  if x.shape[0] < 1 or x.shape[1] < 2:
    raise ValueError(f"nrsfm: `{name}` (t, n, 3) needs at least 1 frame and 2 points; got {x.shape}.")
  return x


def norm_scale(s_gt) -> float:
  """The e3D normaliser: mean over the 3t rows of the stacked gt of each row's std.

  Args:
    s_gt: (t, n, 3) ground-truth points; row (f, c) of the 3t x n matrix is
      s_gt[f, :, c].

  Returns:
    The mean population standard deviation (ddof = 0) of the rows.

  Raises:
    ValueError: for a bad shape or NaN, or a zero normaliser.
  """
  s_gt = _check_points(s_gt, "s_gt")
  scale = float(np.std(s_gt, axis=1).mean())
  if scale <= 0:
    raise ValueError("nrsfm: `s_gt` (t, n, 3) has zero spread; the e3D normaliser is 0.")
  return scale


def global_rotation(s_hat, s_gt, allow_reflection: bool = False) -> np.ndarray:
  """The orthogonal 3 x 3 matrix R minimising sum_f |R S_hat_f - S_f|^2.

  Args:
    s_hat: (t, n, 3) reconstruction.
    s_gt: (t, n, 3) ground truth.
    allow_reflection: if True, R may have det -1 (the orthographic reflection
      ambiguity); otherwise R is a proper rotation.

  Returns:
    (3, 3) R; apply it as s_hat @ R.T.
  """
  s_hat = _check_points(s_hat, "s_hat")
  s_gt = _check_points(s_gt, "s_gt", s_hat.shape)
  cov = s_gt.reshape(-1, 3).T @ s_hat.reshape(-1, 3)  # sum over frames and points of s s_hat^T.
  u, _, vt = np.linalg.svd(cov)
  d = 1.0 if allow_reflection or np.linalg.det(u @ vt) >= 0 else -1.0
  return (u * np.array([1.0, 1.0, d])) @ vt


def e3d(s_hat, s_gt, alignment: str = "none", allow_reflection: bool = False) -> float:
  """Normalised 3D error of a non-rigid reconstruction.

  Args:
    s_hat: (t, n, 3) reconstructed points per frame, in the gt's frame and
      units (for the CMU-mocap files: `Shat / scale`).
    s_gt: (t, n, 3) ground-truth points per frame.
    alignment: "none", or "global_rotation" (one orthogonal Procrustes rotation
      over all frames, no translation or scale).
    allow_reflection: for "global_rotation", whether R may reflect.

  Returns:
    e3D = mean_{f,p} |s_hat - s_gt| / norm_scale(s_gt).

  Raises:
    ValueError: naming the argument, for mismatched shapes, NaN/inf, or an
      unknown `alignment`.

  Example:
    >>> e3d(seq.Shat, seq.S)                      # drink: 0.0250
    >>> e3d(seq.Shat, seq.S, "global_rotation")   # drink: 0.0249
  """
  s_hat = _check_points(s_hat, "s_hat")
  s_gt = _check_points(s_gt, "s_gt", s_hat.shape)
  if alignment not in ALIGNMENTS:
    raise ValueError(f"nrsfm: `alignment` must be one of {ALIGNMENTS}; got {alignment!r}.")
  if alignment == "global_rotation":
    s_hat = s_hat @ global_rotation(s_hat, s_gt, allow_reflection).T
  return float(np.linalg.norm(s_hat - s_gt, axis=-1).mean() / norm_scale(s_gt))


def nrsfm_metrics(s_hat, s_gt, allow_reflection: bool = False) -> NrsfmMetrics:
  """e3D without alignment and with one global orthogonal alignment.

  Args:
    s_hat: (t, n, 3) reconstruction, gt units.
    s_gt: (t, n, 3) ground truth.
    allow_reflection: whether the global alignment may reflect.

  Returns:
    An `NrsfmMetrics`.

  Raises:
    ValueError: as `e3d`.

  Example:
    >>> nrsfm_metrics(seq.Shat, seq.S).e3d_aligned
  """
  return NrsfmMetrics(
      e3d=e3d(s_hat, s_gt, "none"),
      e3d_aligned=e3d(s_hat, s_gt, "global_rotation", allow_reflection),
      norm_scale=norm_scale(s_gt),
  )
