"""CMU-mocap NRSfM sequences (Akhter et al. 2008 .mat files) -> `MocapSequence`.

The files (see ../shared/data/nrsfm/README.md) stack frames along rows: `S` and
`Shat` are (3F, P) with rows x_f, y_f, z_f of frame f; `W` is (2F, P) with rows
u_f, v_f; `Rs` is (2F, 3) with the two camera rows of frame f. This module
turns them into per-frame arrays (F, P, 3) / (F, P, 2) / (F, 2, 3).

What frame S lives in (checked on all five files, to 1e-15):
* `S` is NOT in the camera frame (W differs from the first two rows of S by up
  to 1.6). It is a fixed WORLD frame, centred on the body per frame, with +z up
  (the 4-marker head clique has the largest z), and W_f = Rs_f @ S_f exactly:
  an orthographic camera whose rows are r1 = (cos a_f, sin a_f, 0) and
  r2 = (0, 0, 1), turning a_f by `theta` = 5 degrees per frame about the
  vertical axis. W's second axis therefore points UP.
* dance has no `Rs`: its camera is fixed, W_f = [[0, 1, 0], [0, 0, 1]] @ S_f.
  `MocapSequence.camera_rows` holds those rows, fitted by least squares.

`mocap_to_tracks` keeps this virtual camera motion: the w2c rotation of frame f
is diag(1, -1, -1) @ [r1; r2; r1 x r2] = [r1; -r2; -(r1 x r2)], i.e. the
orthographic camera read as an OpenGL-style camera (y up, looking along -z) and
converted to OpenCV axes (y down, z forward). Its image x is W's x, its image y
is -W's y, so the person is upright (head at smaller pixel y). The orthographic
data cannot tell which side the camera looks from; this choice keeps x.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Optional, Union

import numpy as np
import scipy.io

from tracks4d import geometry
from tracks4d.tracks import GroundTruth, Tracks

DEFAULT_NRSFM_DIR = Path(
    os.environ.get("TRACKS4D_NRSFM_DIR")
    or Path(__file__).resolve().parents[2].parent / "shared" / "data" / "nrsfm")

# The w2c rotation is this flip times the orthographic camera's [r1; r2; r1 x r2].
_GL_TO_CV = np.diag([1.0, -1.0, -1.0])


@dataclasses.dataclass(frozen=True, eq=False)
class MocapSequence:
  """One CMU-mocap NRSfM sequence, per frame. F frames, P points.

  Attributes:
    name: sequence name (the file stem, e.g. "drink").
    path: the file read.
    S: (F, P, 3) ground-truth 3D points in the world frame (+z up, centred per
      frame; see module doc), units normalised to about +-1.
    W: (F, P, 2) orthographic 2D tracks, W[f] = S[f] @ camera_rows[f].T; the
      second axis points up.
    Rs: (F, 2, 3) the file's camera rows, or None where the file has none
      (dance, whose camera is fixed).
    camera_rows: (F, 2, 3) the camera rows always: `Rs`, or the fixed rows
      fitted to W and S when `Rs` is absent.
    Shat: (F, P, 3) the published reconstruction, already divided by `scale`.
    scale: the file's `scale` (Shat in the file is Shat here times scale).
    edges: (E, 2) int zero-based skeleton edges (file key `list`), or None.
    basis_size: the file's `K` (trajectory basis size used), or None.
    theta_deg: the file's `theta` (camera turn per frame, degrees), or None.
  """

  name: str
  path: Path
  S: np.ndarray
  W: np.ndarray
  Rs: Optional[np.ndarray]
  camera_rows: np.ndarray
  Shat: np.ndarray
  scale: float
  edges: Optional[np.ndarray]
  basis_size: Optional[int]
  theta_deg: Optional[float]

  @property
  def num_frames(self) -> int:
    return self.S.shape[0]

  @property
  def num_points(self) -> int:
    return self.S.shape[1]

  @property
  def camera_rotations(self) -> np.ndarray:
    """(F, 3, 3) the orthographic camera's rotation [r1; r2; r1 x r2] (world -> camera, y up)."""
    r1, r2 = self.camera_rows[:, 0], self.camera_rows[:, 1]
    return np.stack([r1, r2, np.cross(r1, r2)], axis=1)


def list_sequences(directory: Union[str, Path, None] = None) -> list[str]:
  """Names of the .mat sequences in `directory` (default `DEFAULT_NRSFM_DIR`), sorted.

  Returns an empty list when the directory does not exist.
  """
  directory = Path(DEFAULT_NRSFM_DIR if directory is None else directory)
  if not directory.is_dir():
    return []
  return sorted(p.stem for p in directory.glob("*.mat") if p.is_file())


def _resolve(name_or_path: Union[str, Path], directory) -> Path:
  p = Path(name_or_path)
  if p.suffix == ".mat" or p.is_file():
    return p
  return Path(DEFAULT_NRSFM_DIR if directory is None else directory) / f"{p.name}.mat"


def _get(mat: dict, key: str, path: Path, expected: str, required: bool = True):
  if key not in mat:
    if required:
      raise ValueError(f"{path}: missing key `{key}`; expected {expected}.")
    return None
  value = np.asarray(mat[key])
  if not (np.issubdtype(value.dtype, np.floating) or np.issubdtype(value.dtype, np.integer)):
    raise ValueError(f"{path}: key `{key}` is not numeric (dtype {value.dtype}); expected {expected}.")
  if not np.all(np.isfinite(value)):
    raise ValueError(f"{path}: key `{key}` holds NaN/inf; expected finite {expected}.")
  return value


def _stacked_to_frames(x: np.ndarray, rows_per_frame: int) -> np.ndarray:
  """(k F, P) with rows grouped per frame -> (F, P, k)."""
  return x.reshape(-1, rows_per_frame, x.shape[-1]).transpose(0, 2, 1)


def _fit_fixed_rows(S: np.ndarray, W: np.ndarray, path: Path) -> np.ndarray:
  """The (2, 3) orthonormal rows R with W[f] = S[f] @ R.T for every frame."""
  s_all, w_all = S.reshape(-1, 3), W.reshape(-1, 2)
  rows = np.linalg.lstsq(s_all, w_all, rcond=None)[0].T
  u, _, vt = np.linalg.svd(rows, full_matrices=False)
  rows = u @ vt
  if np.abs(s_all @ rows.T - w_all).max() > 1e-6 * max(1.0, np.abs(w_all).max()):
    raise ValueError(f"{path}: key `Rs` is absent and `W` is not one fixed orthographic projection of `S`.")
  return rows


def load_mocap(name_or_path: Union[str, Path], directory: Union[str, Path, None] = None) -> MocapSequence:
  """Reads one CMU-mocap NRSfM .mat file.

  Args:
    name_or_path: a sequence name ("drink") looked up in `directory`, or a
      path to a .mat file.
    directory: where names are looked up; default `DEFAULT_NRSFM_DIR`
      (env TRACKS4D_NRSFM_DIR, else ../shared/data/nrsfm from the repo root).

  Returns:
    A `MocapSequence` with per-frame arrays.

  Raises:
    ValueError: naming the file (and the key, with its expected shape) when the
      file is missing or unreadable, a key is missing, has the wrong shape or
      holds NaN, or W does not equal the camera rows applied to S.

  Example:
    >>> seq = load_mocap("drink")
    >>> seq.S.shape, seq.W.shape, seq.Rs.shape   # (1102, 41, 3) (1102, 41, 2) (1102, 2, 3)
  """
  path = _resolve(name_or_path, directory)
  if not path.is_file():
    raise ValueError(f"{path}: no such file; available sequences in {path.parent}: {list_sequences(path.parent)}.")
  try:
    mat = scipy.io.loadmat(str(path))
  except Exception as err:  # scipy raises several types (ValueError, MatReadError, TypeError...) on bad bytes.
    raise ValueError(f"{path}: not a readable MATLAB .mat file ({type(err).__name__}: {err}).") from err

  S = _get(mat, "S", path, "a (3F, P) array of 3D points, rows x_f, y_f, z_f per frame")
  if S.ndim != 2 or S.shape[0] % 3 or S.shape[0] == 0 or S.shape[1] < 2:
    raise ValueError(f"{path}: key `S` has shape {S.shape}; expected (3F, P) with F >= 1, P >= 2.")
  num_frames, num_points = S.shape[0] // 3, S.shape[1]
  W = _get(mat, "W", path, f"a (2F, P) = ({2 * num_frames}, {num_points}) array of 2D tracks")
  if W.shape != (2 * num_frames, num_points):
    raise ValueError(f"{path}: key `W` has shape {W.shape}; expected (2F, P) = ({2 * num_frames}, {num_points}).")
  Shat = _get(mat, "Shat", path, f"a (3F, P) = {S.shape} reconstruction")
  if Shat.shape != S.shape:
    raise ValueError(f"{path}: key `Shat` has shape {Shat.shape}; expected (3F, P) = {S.shape}.")
  scale = _get(mat, "scale", path, "a positive scalar (1, 1)")
  if scale.size != 1 or float(scale.ravel()[0]) <= 0:
    raise ValueError(f"{path}: key `scale` is {scale!r}; expected a positive scalar (1, 1).")
  scale = float(scale.ravel()[0])
  Rs = _get(mat, "Rs", path, f"a (2F, 3) = ({2 * num_frames}, 3) array of camera rows", required=False)
  if Rs is not None and Rs.shape != (2 * num_frames, 3):
    raise ValueError(f"{path}: key `Rs` has shape {Rs.shape}; expected (2F, 3) = ({2 * num_frames}, 3).")
  edges = _get(mat, "list", path, "an (E, 2) array of 1-based point indices", required=False)
  if edges is not None:
    if edges.ndim != 2 or edges.shape[1] != 2 or edges.min() < 1 or edges.max() > num_points:
      raise ValueError(f"{path}: key `list` has shape {edges.shape} / range [{edges.min()}, {edges.max()}]; "
                       f"expected (E, 2) 1-based indices in [1, {num_points}].")
    edges = edges.astype(np.int64) - 1
  basis = _get(mat, "K", path, "a scalar (1, 1)", required=False)
  theta = _get(mat, "theta", path, "a scalar (1, 1)", required=False)

  S3 = _stacked_to_frames(S.astype(np.float64), 3)
  W2 = _stacked_to_frames(W.astype(np.float64), 2)
  if Rs is not None:
    Rs = Rs.astype(np.float64).reshape(num_frames, 2, 3)
    rows = Rs
    tol = 1e-6 * max(1.0, np.abs(W2).max())
    if np.abs(np.einsum("fpj,fij->fpi", S3, Rs) - W2).max() > tol:
      raise ValueError(f"{path}: keys `W`, `Rs`, `S` disagree: W_f != Rs_f S_f.")
  else:
    rows = np.broadcast_to(_fit_fixed_rows(S3, W2, path), (num_frames, 2, 3)).copy()
  return MocapSequence(
      name=path.stem,
      path=path,
      S=S3,
      W=W2,
      Rs=Rs,
      camera_rows=rows,
      Shat=_stacked_to_frames(Shat.astype(np.float64), 3) / scale,
      scale=scale,
      edges=edges,
      basis_size=None if basis is None else int(basis.ravel()[0]),
      theta_deg=None if theta is None else float(theta.ravel()[0]),
  )


def mocap_w2c(seq: MocapSequence, distance: float) -> np.ndarray:
  """(F, 4, 4) OpenCV world-to-camera poses keeping the sequence's camera motion.

  Rotation [r1; -r2; -(r1 x r2)] (module doc), translation (0, 0, distance):
  the body centre sits `distance` in front of every camera, which circles it.
  """
  rot = _GL_TO_CV @ seq.camera_rotations
  trans = np.broadcast_to(np.array([0.0, 0.0, float(distance)]), (seq.num_frames, 3))
  return geometry.make_pose(rot, trans)


def mocap_to_tracks(
    seq: MocapSequence,
    focal_px: float = 500.0,
    image_hw: tuple[int, int] = (480, 640),
    distance: float = 4.0,
    num_frames: Optional[int] = None,
    start: int = 0,
) -> Tracks:
  """Projects a mocap sequence through a perspective camera into a `Tracks`.

  The ground-truth points S (world frame) are viewed by the sequence's own
  (virtual, turning) camera, made perspective: pose `mocap_w2c(seq, distance)`,
  intrinsics fx = fy = focal_px with the principal point at the image centre.

  Args:
    seq: a loaded sequence.
    focal_px: focal length in pixels.
    image_hw: image (height, width) in pixels.
    distance: distance from the camera centre to the body centre, in S units
      (S spans about +-1); must keep every point in front of the camera.
    num_frames: frames to keep (default: all from `start`).
    start: first frame.

  Returns:
    A validated `Tracks` with `gt` (w2c, depth, xyz_world = S, dynamic all
    True); `visible` marks the points that land inside the image.

  Raises:
    ValueError: for a frame range outside the sequence, non-positive
      `focal_px`, or a `distance` that puts a point at depth <= 0.01.

  Example:
    >>> tracks = mocap_to_tracks(load_mocap("pickup"), num_frames=50)
  """
  if not 0 <= start < seq.num_frames:
    raise ValueError(f"mocap_to_tracks: `start` must be in [0, {seq.num_frames}); got {start}.")
  stop = seq.num_frames if num_frames is None else start + int(num_frames)
  if num_frames is not None and (num_frames < 2 or stop > seq.num_frames):
    raise ValueError(f"mocap_to_tracks: `num_frames` must be in [2, {seq.num_frames - start}] from start={start}; "
                     f"got {num_frames}.")
  if focal_px <= 0:
    raise ValueError(f"mocap_to_tracks: `focal_px` must be positive; got {focal_px}.")
  h, w = image_hw
  w2c = mocap_w2c(seq, distance)[start:stop]
  xyz_world = seq.S[start:stop]
  xyz_cam = geometry.transform_points(w2c, xyz_world)
  K = geometry.make_intrinsics(focal_px, focal_px, (w - 1) / 2.0, (h - 1) / 2.0).astype(np.float64)
  xy_px, depth = geometry.project(xyz_cam, K)
  if depth.min() <= geometry.MIN_DEPTH:
    raise ValueError(f"mocap_to_tracks: `distance`={distance} puts points at depth {depth.min():.3g} <= "
                     f"{geometry.MIN_DEPTH}; use a larger distance.")
  visible = geometry.in_image(xy_px, np.asarray(image_hw))
  gt = GroundTruth(w2c=w2c, depth=depth, xyz_world=xyz_world, dynamic=np.ones(depth.shape, bool))
  return Tracks.create(xy_px, visible, image_hw=image_hw, intrinsics=K, gt=gt, name=f"mocap[{seq.name}]")
