"""COLMAP text model of a reconstruction: the cameras and the static points.

Writes a sparse model folder in COLMAP's text format
(https://colmap.github.io/format.html): `cameras.txt`, `images.txt` and
`points3D.txt`, loadable by COLMAP (`colmap model_converter`, the GUI's
File > Import model) and by tools that read COLMAP models.

What is written
---------------
* cameras.txt: `CAMERA_ID MODEL WIDTH HEIGHT PARAMS[]` with model PINHOLE
  (fx fy cx cy). One camera (CAMERA_ID 1) shared by all images when K is the
  same in every frame (to a relative 1e-6), else one camera per frame
  (CAMERA_ID = IMAGE_ID).
* images.txt: one image per frame f, IMAGE_ID = f + 1, NAME
  `frame_{f:06d}.png`, pose `QW QX QY QZ TX TY TZ` of the world-to-camera
  transform (quaternion scalar first, QW >= 0; X_cam = R(q) X_world + T), then
  the POINTS2D line `X Y POINT3D_ID ...` of the static points observed in that
  frame (possibly empty). COLMAP's camera axes are OpenCV's, like ours.
* points3D.txt: `POINT3D_ID X Y Z R G B ERROR TRACK[]`, TRACK as
  (IMAGE_ID, POINT2D_IDX) pairs, POINT2D_IDX the 0-based position in that
  image's POINTS2D line.

Points: the tracks labelled static (`rec.is_dynamic == False`) that are
observed at least once, POINT3D_ID = track index + 1 (input order). The 3D
position is the mean of `tracks_world` over the frames where the track is
visible (the static basis point, averaged over windows; see
`common.static_points`). Observations: the visible entries, at the input track
positions when `xy_px` is given, else at the projections of `tracks_cam` (then
entries at depth <= MIN_DEPTH are left out). ERROR is the mean reprojection
error (pixels) of the exported 3D point over its observations.

Pixel convention
----------------
COLMAP puts the centre of the top-left pixel at (0.5, 0.5); tracks4d puts it at
(0, 0) (tracks4d/geometry.py). The writer therefore adds 0.5 to cx, cy and to
every observed x, y; `ColmapCamera.K_tracks4d` subtracts it again. Focal
lengths and poses are unchanged.

Example:
  >>> write_colmap_text("out/colmap", rec)
  >>> model = read_colmap_text("out/colmap"); len(model.points)
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np

from reconstruct.export import common
from tracks4d import geometry

# Offset from tracks4d pixel coordinates (pixel centres at integers) to COLMAP's.
PIXEL_OFFSET = 0.5
FILES = ("cameras.txt", "images.txt", "points3D.txt")


# ---------------------------------------------------------------------------
# Quaternions (scalar first, COLMAP's order).
# ---------------------------------------------------------------------------


def rotation_to_quaternion(rot) -> np.ndarray:
  """Unit quaternion (qw, qx, qy, qz), qw >= 0, of a 3x3 rotation matrix.

  Args:
    rot: (3, 3) rotation matrix.

  Returns:
    (4,) float64 quaternion, scalar first.

  Example:
    >>> rotation_to_quaternion(np.diag([1.0, -1.0, -1.0]))  # 180 degrees about x
    array([0., 1., 0., 0.])
  """
  m = np.asarray(rot, np.float64)
  tr = m[0, 0] + m[1, 1] + m[2, 2]
  if tr > 0:
    s = 2.0 * np.sqrt(tr + 1.0)
    q = [0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s]
  elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
    s = 2.0 * np.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2])
    q = [(m[2, 1] - m[1, 2]) / s, 0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s]
  elif m[1, 1] > m[2, 2]:
    s = 2.0 * np.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2])
    q = [(m[0, 2] - m[2, 0]) / s, (m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s]
  else:
    s = 2.0 * np.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1])
    q = [(m[1, 0] - m[0, 1]) / s, (m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s]
  q = np.asarray(q) / np.linalg.norm(q)
  return -q if q[0] < 0 else q


def quaternion_to_rotation(q) -> np.ndarray:
  """3x3 rotation matrix of a quaternion (qw, qx, qy, qz) (normalised first)."""
  w, x, y, z = np.asarray(q, np.float64) / np.linalg.norm(q)
  return np.array([
      [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
      [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
      [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
  ])


# ---------------------------------------------------------------------------
# The model as read back.
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class ColmapCamera:
  """One line of cameras.txt.

  Attributes:
    camera_id: CAMERA_ID.
    model: camera model name, e.g. "PINHOLE".
    width, height: image size in pixels.
    params: (p,) float64 model parameters as stored (COLMAP pixel convention).
  """

  camera_id: int
  model: str
  width: int
  height: int
  params: np.ndarray

  @property
  def K(self) -> np.ndarray:
    """(3, 3) intrinsics in COLMAP's pixel convention (top-left pixel centre at (0.5, 0.5)).

    Raises:
      ValueError: for models other than PINHOLE and SIMPLE_PINHOLE (distortion).
    """
    p = self.params
    if self.model == "PINHOLE":
      fx, fy, cx, cy = p
    elif self.model == "SIMPLE_PINHOLE":
      fx, cx, cy = p
      fy = fx
    else:
      raise ValueError(f"camera {self.camera_id}: model {self.model} has distortion; only PINHOLE and "
                       "SIMPLE_PINHOLE have a plain K.")
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])

  @property
  def K_tracks4d(self) -> np.ndarray:
    """(3, 3) intrinsics in tracks4d's pixel convention (pixel centres at integers): cx, cy - 0.5."""
    k = self.K.copy()
    k[:2, 2] -= PIXEL_OFFSET
    return k


@dataclasses.dataclass(frozen=True, eq=False)
class ColmapImage:
  """Two lines of images.txt.

  Attributes:
    image_id: IMAGE_ID.
    qvec: (4,) quaternion (qw, qx, qy, qz) of the world-to-camera rotation.
    tvec: (3,) world-to-camera translation.
    camera_id: CAMERA_ID.
    name: NAME (file name of the frame).
    xys: (p, 2) observed positions (x, y), COLMAP pixel convention.
    point3d_ids: (p,) int64 POINT3D_ID of each observation (-1: none).
  """

  image_id: int
  qvec: np.ndarray
  tvec: np.ndarray
  camera_id: int
  name: str
  xys: np.ndarray
  point3d_ids: np.ndarray

  @property
  def w2c(self) -> np.ndarray:
    """(4, 4) world-to-camera pose [R(q) | t]."""
    out = np.eye(4)
    out[:3, :3] = quaternion_to_rotation(self.qvec)
    out[:3, 3] = self.tvec
    return out


@dataclasses.dataclass(frozen=True, eq=False)
class ColmapPoint:
  """One line of points3D.txt.

  Attributes:
    point3d_id: POINT3D_ID.
    xyz: (3,) world position.
    rgb: (3,) uint8 colour.
    error: mean reprojection error in pixels.
    image_ids: (k,) int64 IMAGE_ID of each observation.
    point2d_idxs: (k,) int64 index into that image's `xys`.
  """

  point3d_id: int
  xyz: np.ndarray
  rgb: np.ndarray
  error: float
  image_ids: np.ndarray
  point2d_idxs: np.ndarray


@dataclasses.dataclass(frozen=True, eq=False)
class ColmapModel:
  """A COLMAP sparse model: dicts keyed by CAMERA_ID, IMAGE_ID and POINT3D_ID."""

  cameras: dict[int, ColmapCamera]
  images: dict[int, ColmapImage]
  points: dict[int, ColmapPoint]


# ---------------------------------------------------------------------------
# Writing.
# ---------------------------------------------------------------------------


def _f(x) -> str:
  """Shortest text of a float that reads back exactly."""
  return repr(float(x))


def write_colmap_text(directory: str | os.PathLike, rec: Any, colors=None, xy_px=None) -> Path:
  """Writes the COLMAP text model (cameras.txt, images.txt, points3D.txt) of `rec`.

  See the module docstring for what is written and the +0.5 pixel offset.

  Args:
    directory: output folder (created); the three files are replaced atomically.
    rec: a `reconstruct.result.Reconstruction`.
    colors: optional (n, 3) uint8 RGB per track (input order); default: the
      movement colour scale (`common.movement_colors`).
    xy_px: optional (t, n, 2) input tracks (x, y) used as the observations;
      default: the projections of `rec.tracks_cam` with `rec.K`.

  Returns:
    The folder.

  Raises:
    ValueError: naming the field of `rec`, `colors` or `xy_px` for a wrong shape.
    OSError: when the files cannot be written.

  Example:
    >>> write_colmap_text("out/colmap", rec, xy_px=tracks.xy_px)
  """
  a = common.check_reconstruction(rec)
  t, n = a.num_frames, a.num_tracks
  if colors is None:
    colors = common.movement_colors(a.movement, a.movement_threshold)
  colors = np.asarray(colors)
  if colors.shape != (n, 3):
    raise ValueError(f"colors: expected (n, 3) = {(n, 3)} uint8 RGB per track; got {colors.shape}.")
  colors = np.clip(colors, 0, 255).astype(np.uint8)
  xy, ok = common.observed_xy(a, xy_px)
  index, xyz = common.static_points(a)
  obs = ok[:, index]  # (t, p)
  keep = obs.any(0)
  index, xyz, obs = index[keep], xyz[keep], obs[:, keep]

  # Cameras.
  h, w = a.image_hw
  shared = bool(np.allclose(a.K, a.K[:1], rtol=1e-6, atol=0.0))
  cam_ids = np.ones(t, np.int64) if shared else np.arange(1, t + 1)
  cam_lines = []
  for f in range(1 if shared else t):
    k = a.K[f]
    params = (k[0, 0], k[1, 1], k[0, 2] + PIXEL_OFFSET, k[1, 2] + PIXEL_OFFSET)
    cam_lines.append(f"{f + 1} PINHOLE {w} {h} " + " ".join(_f(v) for v in params))
  cameras_txt = ("# Camera list with one line of data per camera:\n"
                 "#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]\n"
                 f"# Number of cameras: {len(cam_lines)}\n" + "".join(line + "\n" for line in cam_lines))

  # Images and their observations.
  point_ids = index + 1
  point2d_idx = np.full(obs.shape, -1, np.int64)  # (t, p) position in the image's POINTS2D line.
  img_lines = []
  for f in range(t):
    q = rotation_to_quaternion(a.w2c[f, :3, :3])
    tr = a.w2c[f, :3, 3]
    cols = np.nonzero(obs[f])[0]
    point2d_idx[f, cols] = np.arange(cols.size)
    pts = xy[f, index[cols]] + PIXEL_OFFSET
    img_lines.append(f"{f + 1} " + " ".join(_f(v) for v in (*q, *tr)) + f" {cam_ids[f]} frame_{f:06d}.png")
    img_lines.append(" ".join(f"{_f(x)} {_f(y)} {pid}" for (x, y), pid in zip(pts, point_ids[cols])))
  mean_obs = float(obs.sum()) / max(t, 1)
  images_txt = ("# Image list with two lines of data per image:\n"
                "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME\n"
                "#   POINTS2D[] as (X, Y, POINT3D_ID)\n"
                f"# Number of images: {t}, mean observations per image: {mean_obs:g}\n"
                + "".join(line + "\n" for line in img_lines))

  # Points and their reprojection errors.
  proj, _ = geometry.project(geometry.transform_points(a.w2c, np.broadcast_to(xyz, (t,) + xyz.shape)), a.K)
  err = np.linalg.norm(np.asarray(proj) - xy[:, index], axis=-1)  # (t, p)
  mean_err = np.where(obs, err, 0.0).sum(0) / np.maximum(obs.sum(0), 1)
  pt_lines = []
  for p in range(index.size):
    frames = np.nonzero(obs[:, p])[0]
    track = " ".join(f"{f + 1} {point2d_idx[f, p]}" for f in frames)
    r, g, b = colors[index[p]]
    pt_lines.append(f"{point_ids[p]} " + " ".join(_f(v) for v in xyz[p]) + f" {r} {g} {b} {_f(mean_err[p])} {track}")
  mean_track = float(obs.sum()) / max(index.size, 1)
  points_txt = ("# 3D point list with one line of data per point:\n"
                "#   POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[] as (IMAGE_ID, POINT2D_IDX)\n"
                f"# Number of points: {index.size}, mean track length: {mean_track:g}\n"
                + "".join(line + "\n" for line in pt_lines))

  directory = Path(directory)
  directory.mkdir(parents=True, exist_ok=True)
  for name, text in zip(FILES, (cameras_txt, images_txt, points_txt)):
    common.write_text_atomic(directory / name, text)
  return directory


# ---------------------------------------------------------------------------
# Reading.
# ---------------------------------------------------------------------------


def _data_lines(path: Path):
  """(line number, stripped text) of the lines of a file; FileNotFoundError -> ValueError."""
  try:
    text = path.read_text(encoding="utf-8")
  except FileNotFoundError:
    raise ValueError(f"{path}: no such file; expected a COLMAP text model file.") from None
  return [(i + 1, line.strip()) for i, line in enumerate(text.splitlines())]


def _parse(path: Path, lineno: int, what: str, fn):
  try:
    return fn()
  except (ValueError, IndexError) as e:
    raise ValueError(f"{path}:{lineno}: cannot parse {what} ({e}).") from None


def read_colmap_text(directory: str | os.PathLike) -> ColmapModel:
  """Reads a COLMAP text model (cameras.txt, images.txt, points3D.txt).

  Args:
    directory: the model folder.

  Returns:
    `ColmapModel` with cameras, images and points keyed by their ids. Values are
    as stored (COLMAP pixel convention: subtract 0.5 from x, y, cx, cy to get
    tracks4d pixels; see `ColmapCamera.K_tracks4d`).

  Raises:
    ValueError: naming the file (and line) when a file is missing or a line
      cannot be parsed.

  Example:
    >>> model = read_colmap_text("out/colmap")
    >>> w2c = model.images[1].w2c; K = model.cameras[model.images[1].camera_id].K
  """
  directory = Path(directory)
  cameras = {}
  path = directory / "cameras.txt"
  for i, line in _data_lines(path):
    if not line or line.startswith("#"):
      continue
    f = line.split()
    cam = _parse(path, i, "CAMERA_ID MODEL WIDTH HEIGHT PARAMS[]", lambda: ColmapCamera(
        int(f[0]), f[1], int(f[2]), int(f[3]), np.array([float(v) for v in f[4:]])))
    cameras[cam.camera_id] = cam

  images = {}
  path = directory / "images.txt"
  lines = _data_lines(path)
  j = 0
  while j < len(lines):
    i, line = lines[j]
    j += 1
    if not line or line.startswith("#"):
      continue
    f = line.split()
    if len(f) < 10:
      raise ValueError(f"{path}:{i}: expected IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME; got {line!r}.")
    # The POINTS2D line always follows the image line (it may be empty).
    pts = lines[j][1].split() if j < len(lines) else []
    j += 1
    if len(pts) % 3:
      raise ValueError(f"{path}:{i + 1}: expected POINTS2D as (X, Y, POINT3D_ID) triples; got {len(pts)} values.")

    def make(f=f, pts=pts):
      triples = np.array(pts, dtype=object).reshape(-1, 3)
      return ColmapImage(
          image_id=int(f[0]), qvec=np.array([float(v) for v in f[1:5]]), tvec=np.array([float(v) for v in f[5:8]]),
          camera_id=int(f[8]), name=" ".join(f[9:]),
          xys=np.array([[float(x), float(y)] for x, y, _ in triples], np.float64).reshape(-1, 2),
          point3d_ids=np.array([int(p) for _, _, p in triples], np.int64))

    img = _parse(path, i, "an image and its POINTS2D line", make)
    images[img.image_id] = img

  points = {}
  path = directory / "points3D.txt"
  for i, line in _data_lines(path):
    if not line or line.startswith("#"):
      continue
    f = line.split()
    if len(f) < 8 or (len(f) - 8) % 2:
      raise ValueError(f"{path}:{i}: expected POINT3D_ID X Y Z R G B ERROR and (IMAGE_ID, POINT2D_IDX) pairs; "
                       f"got {len(f)} values.")

    def make(f=f):
      track = np.array([int(v) for v in f[8:]], np.int64).reshape(-1, 2)
      return ColmapPoint(point3d_id=int(f[0]), xyz=np.array([float(v) for v in f[1:4]]),
                         rgb=np.array([int(v) for v in f[4:7]], np.uint8), error=float(f[7]),
                         image_ids=track[:, 0], point2d_idxs=track[:, 1])

    pt = _parse(path, i, "a 3D point", make)
    points[pt.point3d_id] = pt
  return ColmapModel(cameras=cameras, images=images, points=points)
