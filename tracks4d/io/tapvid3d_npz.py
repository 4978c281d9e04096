"""TAPVid-3D clip and prediction npz files (REFERENCE.md section 3).

Clip file keys (T frames, N tracks):
  images_jpeg_bytes  (T,)       one JPEG per frame (layout below)
  queries_xyt        (N, 3)     float  query of each track as (x, y, t): pixel x
                                       (column), pixel y (row), frame index t, in
                                       that order (not tapnet's (t, y, x) query order)
  tracks_XYZ         (T, N, 3)  float  3D position in metres, camera frame of each
                                       frame (OpenCV axes, see tracks4d.geometry)
  visibility         (T, N)     bool
  fx_fy_cx_cy        (4,)       float  intrinsics in pixels
  extrinsics_w2c     (T, 4, 4)  float  world-to-camera poses (optional)
Prediction file keys: `tracks_XYZ` (T, N, 3) and `visibility` (T, N).

Image storage layout
--------------------
tracks4d reads every npz with `allow_pickle=False`. The released TAPVid-3D files
store `images_jpeg_bytes` as an object array of `bytes`, which only loads through
pickle. `write_tapvid3d_npz` instead stores `images_jpeg_bytes` as a fixed-width
bytes array (dtype `S<longest JPEG>`, shape (T,)), in a deflate-compressed npz so
the zero padding of shorter frames costs next to nothing. This loads without
pickle, keeps the key name, and each element is a `bytes` (np.bytes_) JPEG that
tapnet-style readers decode unchanged. It is lossless because numpy strips only
trailing NUL bytes and every JPEG ends with the EOI marker FF D9.

Reading a released (pickled) file: every other key loads normally (npz members
load lazily, one per key); `load_images=False` returns the clip with
`images=None`, and `load_images=True` raises a ValueError saying the file stores
its images as pickled objects, which tracks4d refuses to unpickle.

Conversion to `Tracks` (`tapvid3d_to_tracks`): see its docstring for the choices
(w2c identity without extrinsics, dynamic unknown -> True, image size).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Optional, Sequence

import numpy as np

from tracks4d import geometry
from tracks4d.io import npz_utils
from tracks4d.tracks import GroundTruth, Tracks

IMAGES_KEY = "images_jpeg_bytes"
DEFAULT_JPEG_QUALITY = 95


@dataclasses.dataclass(frozen=True, eq=False)
class TapVid3DClip:
  """One TAPVid-3D clip; validated and converted to canonical dtypes on creation.

  Attributes:
    images: (T, H, W, 3) uint8 RGB frames, or None when not loaded.
    queries_xyt: (N, 3) float32 queries as (x, y, t): pixel column, pixel row,
      frame index (integer-valued).
    tracks_xyz_cam: (T, N, 3) float32 positions in metres in each frame's camera
      frame (OpenCV axes: z forward).
    visibility: (T, N) bool.
    fx_fy_cx_cy: (4,) float32 intrinsics in pixels.
    extrinsics_w2c: (T, 4, 4) float32 world-to-camera poses, or None.

  Raises (on construction):
    ValueError: naming the field for a wrong shape or dtype, non-bool
      visibility, non-positive focal lengths or non-finite intrinsics/poses.
  """

  images: Optional[np.ndarray]
  queries_xyt: np.ndarray
  tracks_xyz_cam: np.ndarray
  visibility: np.ndarray
  fx_fy_cx_cy: np.ndarray
  extrinsics_w2c: Optional[np.ndarray] = None

  def __post_init__(self):
    set_ = lambda k, v: object.__setattr__(self, k, v)
    xyz = _numeric(self.tracks_xyz_cam, "tracks_xyz_cam")
    if xyz.ndim != 3 or xyz.shape[-1] != 3:
      raise ValueError(f"TapVid3DClip.tracks_xyz_cam: expected shape (T, N, 3) metres; got {xyz.shape}.")
    t, n = xyz.shape[:2]
    set_("tracks_xyz_cam", xyz)
    vis = np.asarray(self.visibility)
    if vis.shape != (t, n) or vis.dtype != np.bool_:
      raise ValueError(
          f"TapVid3DClip.visibility: expected a bool array of shape (T, N) = {(t, n)}; "
          f"got {vis.dtype} {vis.shape}.")
    set_("visibility", vis)
    q = _numeric(self.queries_xyt, "queries_xyt")
    if q.shape != (n, 3):
      raise ValueError(f"TapVid3DClip.queries_xyt: expected shape (N, 3) = {(n, 3)} as (x, y, t); got {q.shape}.")
    set_("queries_xyt", q)
    f = _numeric(self.fx_fy_cx_cy, "fx_fy_cx_cy")
    if f.shape != (4,) or not np.all(np.isfinite(f)) or f[0] <= 0 or f[1] <= 0:
      raise ValueError(
          f"TapVid3DClip.fx_fy_cx_cy: expected 4 finite values (fx, fy, cx, cy) with fx, fy > 0; got {f}.")
    set_("fx_fy_cx_cy", f)
    if self.extrinsics_w2c is not None:
      e = _numeric(self.extrinsics_w2c, "extrinsics_w2c")
      if e.shape != (t, 4, 4) or not np.all(np.isfinite(e)):
        raise ValueError(
            f"TapVid3DClip.extrinsics_w2c: expected finite (T, 4, 4) = {(t, 4, 4)} poses; got shape {e.shape}.")
      set_("extrinsics_w2c", e)
    if self.images is not None:
      im = np.asarray(self.images)
      if im.dtype != np.uint8 or im.ndim != 4 or im.shape[0] != t or im.shape[-1] != 3:
        raise ValueError(
            f"TapVid3DClip.images: expected uint8 (T, H, W, 3) RGB with T={t}; got {im.dtype} {im.shape}.")
      set_("images", im)

  @property
  def num_frames(self) -> int:
    return self.tracks_xyz_cam.shape[0]

  @property
  def num_tracks(self) -> int:
    return self.tracks_xyz_cam.shape[1]

  @property
  def intrinsics(self) -> np.ndarray:
    """(3, 3) float32 K built from fx_fy_cx_cy."""
    return geometry.make_intrinsics(*self.fx_fy_cx_cy)


def _numeric(x, field: str) -> np.ndarray:
  x = np.asarray(x)
  if x.dtype.kind not in "iuf":
    raise ValueError(f"TapVid3DClip.{field}: expected a numeric array; got dtype {x.dtype}.")
  return x.astype(np.float32)


# ---------------------------------------------------------------------------
# JPEG frames.
# ---------------------------------------------------------------------------


def _encode_jpegs(images: np.ndarray, quality: int) -> np.ndarray:
  """(T, H, W, 3) uint8 RGB -> (T,) fixed-width bytes array of JPEGs."""
  import cv2  # Local: only image I/O needs OpenCV.

  frames = []
  for i, rgb in enumerate(images):
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    data = buf.tobytes() if ok else b""
    if not data.endswith(b"\xff\xd9"):  # A NUL-terminated JPEG would not survive the 'S' dtype.
      raise RuntimeError(f"JPEG encoding of frame {i} failed or produced no EOI marker.")
    frames.append(data)
  return np.array(frames, dtype=f"S{max(len(b) for b in frames)}")


def _decode_jpegs(encoded: np.ndarray, name: str) -> np.ndarray:
  """(T,) bytes array of JPEGs -> (T, H, W, 3) uint8 RGB."""
  import cv2

  frames = []
  for i, data in enumerate(encoded):
    bgr = cv2.imdecode(np.frombuffer(bytes(data), np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
      raise ValueError(f"{name}: key '{IMAGES_KEY}' frame {i} is not a decodable JPEG.")
    if frames and bgr.shape != frames[0].shape:
      raise ValueError(
          f"{name}: key '{IMAGES_KEY}' frame {i} has size {bgr.shape[:2]}; frame 0 has {frames[0].shape[:2]}.")
    frames.append(bgr[..., ::-1])
  return np.ascontiguousarray(np.stack(frames))


# ---------------------------------------------------------------------------
# Clip files.
# ---------------------------------------------------------------------------


def read_tapvid3d_npz(path: npz_utils.PathLike, load_images: bool = True) -> TapVid3DClip:
  """Reads one TAPVid-3D clip npz without unpickling anything.

  Args:
    path: the clip file (our layout or a released TAPVid-3D file).
    load_images: decode `images_jpeg_bytes`; False skips it (images=None), which
      is the way to read the tracks of released files (pickled images).

  Returns:
    A validated `TapVid3DClip`.

  Raises:
    ValueError: naming the file (and the key and expected shape where one is at
      fault) for an unreadable, corrupt or truncated file, a missing or
      mis-shaped key, undecodable JPEGs, and, with load_images=True, images stored
      as pickled objects (the message says load_images=False reads the tracks).

  Example:
    >>> clip = read_tapvid3d_npz("adt_clip.npz", load_images=False)
    >>> clip.tracks_xyz_cam.shape
    (300, 128, 3)
  """
  name = os.fspath(path)
  with npz_utils.open_npz(path) as npz:
    xyz = npz_utils.require(npz, "tracks_XYZ", name, "(T, N, 3) metres in the camera frame",
                            shape=(None, None, 3), kinds="iuf")
    t, n = xyz.shape[:2]
    tn = f"with T={t}, N={n} as in tracks_XYZ"
    vis = npz_utils.require(npz, "visibility", name, f"(T, N) bool {tn}", shape=(t, n))
    queries = npz_utils.require(npz, "queries_xyt", name, f"(N, 3) queries (x, y, t) {tn}", shape=(n, 3),
                                kinds="iuf")
    intr = npz_utils.require(npz, "fx_fy_cx_cy", name, "(4,) intrinsics fx, fy, cx, cy in pixels", shape=(4,),
                             kinds="iuf")
    ext = npz_utils.require(npz, "extrinsics_w2c", name, f"(T, 4, 4) world-to-camera poses {tn}",
                            shape=(t, 4, 4), kinds="iuf", optional=True)
    images = None
    if load_images:
      hint = "Pass load_images=False to read the tracks without the images."
      encoded = npz_utils.require(npz, IMAGES_KEY, name, f"(T,) JPEG bytes (fixed-width 'S' array) {tn}",
                                  shape=(t,), kinds="S", hint=hint)
      images = _decode_jpegs(encoded, name)
  visibility = vis if vis.dtype == np.bool_ else vis > 0.5
  try:
    return TapVid3DClip(images=images, queries_xyt=queries, tracks_xyz_cam=xyz, visibility=visibility,
                        fx_fy_cx_cy=intr, extrinsics_w2c=ext)
  except ValueError as e:
    raise ValueError(f"{name}: {e}") from None


def write_tapvid3d_npz(path: npz_utils.PathLike, clip: TapVid3DClip,
                       jpeg_quality: int = DEFAULT_JPEG_QUALITY) -> None:
  """Writes one clip as a compressed TAPVid-3D npz, atomically and without pickle.

  Images are JPEG-encoded (lossy) into the fixed-width bytes layout of the module
  docstring; `images=None` writes no `images_jpeg_bytes` key (read such a file
  with load_images=False). `extrinsics_w2c` is written only when set.

  Args:
    path: destination, used exactly as given.
    clip: the clip.
    jpeg_quality: JPEG quality in [1, 100].

  Raises:
    ValueError: for a jpeg_quality out of range.
    OSError: when the file cannot be written.

  Example:
    >>> write_tapvid3d_npz("clip.npz", clip)
  """
  if not 1 <= int(jpeg_quality) <= 100:
    raise ValueError(f"write_tapvid3d_npz: jpeg_quality must be in [1, 100]; got {jpeg_quality}.")
  arrays = {
      "queries_xyt": clip.queries_xyt,
      "tracks_XYZ": clip.tracks_xyz_cam,
      "visibility": clip.visibility,
      "fx_fy_cx_cy": clip.fx_fy_cx_cy,
  }
  if clip.extrinsics_w2c is not None:
    arrays["extrinsics_w2c"] = clip.extrinsics_w2c
  if clip.images is not None:
    arrays[IMAGES_KEY] = _encode_jpegs(clip.images, jpeg_quality)
  npz_utils.save_npz_atomic(path, arrays, compressed=True)


def tapvid3d_to_tracks(clip: TapVid3DClip, image_hw: Optional[Sequence[int]] = None,
                       name: str = "tapvid3d") -> Tracks:
  """2D tracks with ground truth from a TAPVid-3D clip.

  xy_px and depth come from projecting `tracks_xyz_cam` with the clip's
  intrinsics (`geometry.project`); depth is the camera-frame Z.

  Documented choices:
    * w2c: `extrinsics_w2c` when present, else identity for every frame. With
      identity the "world" frame is each frame's camera frame, so camera motion
      shows up as point motion in xyz_world.
    * xyz_world: the tracks mapped through c2w = inverse(w2c).
    * depth: Z where finite and > 0, else 0 (unknown).
    * dynamic: TAPVid-3D does not say which points move; it is unknown and set
      to True everywhere (no point is claimed static; most TAPVid-3D tracks lie
      on moving objects).
    * Non-finite 3D positions are allowed only on invisible entries; there
      xy_px, depth and xyz_world are 0.
    * image size: `image_hw` if given, else the decoded images' (H, W), else from
      the principal point assumed at the image centre: h = round(2 cy + 1),
      w = round(2 cx + 1).
    * query_frame: queries_xyt[:, 2] (must be integer-valued).

  Args:
    clip: the clip; images are only used for their size.
    image_hw: optional (height, width) override.
    name: how errors refer to the clip (e.g. its file name).

  Returns:
    A validated `Tracks` with t = T, n = N, known intrinsics and `gt` set.

  Raises:
    ValueError: for non-finite positions on visible entries, non-integer query
      frames, or anything `Tracks.create` rejects (e.g. no visible entry).

  Example:
    >>> tracks = tapvid3d_to_tracks(read_tapvid3d_npz(path, load_images=False))
  """
  t, n = clip.num_frames, clip.num_tracks
  xyz = clip.tracks_xyz_cam.astype(np.float64)
  finite = np.all(np.isfinite(xyz), axis=-1)
  bad = ~finite & clip.visibility
  if bad.any():
    first = tuple(int(i) for i in np.argwhere(bad)[0])
    raise ValueError(f"{name}.tracks_xyz_cam: non-finite 3D positions on {int(bad.sum())} visible entries "
                     f"(first at (t, n) = {first}).")
  xyz = np.where(finite[..., None], xyz, 0.0)
  fx, fy, cx, cy = (float(v) for v in clip.fx_fy_cx_cy)
  K = geometry.make_intrinsics(fx, fy, cx, cy)
  xy_px, z = geometry.project(xyz, K.astype(np.float64))
  xy_px = np.where(finite[..., None], xy_px, 0.0)
  depth = np.where(finite & (z > 0), z, 0.0)
  if clip.extrinsics_w2c is not None:
    w2c = clip.extrinsics_w2c.astype(np.float64)
  else:
    w2c = np.broadcast_to(np.eye(4), (t, 4, 4))
  xyz_world = geometry.transform_points(geometry.invert_pose(w2c), xyz)
  xyz_world = np.where(finite[..., None], xyz_world, 0.0)
  q = clip.queries_xyt[:, 2]
  if not np.all(np.isfinite(q)) or not np.all(q == np.round(q)):
    raise ValueError(f"{name}.queries_xyt: the t column must hold integer frame indices; got {q[:8]}...")
  if image_hw is None:
    if clip.images is not None:
      image_hw = clip.images.shape[1:3]
    else:
      image_hw = (int(round(2.0 * cy + 1.0)), int(round(2.0 * cx + 1.0)))
  gt = GroundTruth(w2c=w2c.astype(np.float32), depth=depth.astype(np.float32),
                   xyz_world=xyz_world.astype(np.float32), dynamic=np.ones((t, n), bool))
  return Tracks.create(xy_px.astype(np.float32), clip.visibility, image_hw=image_hw, intrinsics=K,
                       query_frame=np.round(q).astype(np.int32), gt=gt, name=name)


# ---------------------------------------------------------------------------
# Prediction files.
# ---------------------------------------------------------------------------


def read_tapvid3d_prediction(path: npz_utils.PathLike) -> tuple[np.ndarray, np.ndarray]:
  """Reads a TAPVid-3D prediction npz.

  Args:
    path: a file with `tracks_XYZ` (T, N, 3) metres in the camera frame and
      `visibility` (T, N) (bool; numbers are thresholded at 0.5).

  Returns:
    tracks_xyz_cam: (T, N, 3) float32.
    visibility: (T, N) bool.

  Raises:
    ValueError: naming the file, key and expected shape for an unreadable file,
      a missing or mis-shaped key, or non-finite positions.

  Example:
    >>> xyz, vis = read_tapvid3d_prediction("pred/adt_clip.npz")
  """
  name = os.fspath(path)
  with npz_utils.open_npz(path) as npz:
    xyz = npz_utils.require(npz, "tracks_XYZ", name, "(T, N, 3) predicted metres in the camera frame",
                            shape=(None, None, 3), kinds="iuf")
    t, n = xyz.shape[:2]
    vis = npz_utils.require(npz, "visibility", name, f"(T, N) bool with T={t}, N={n} as in tracks_XYZ",
                            shape=(t, n))
  if not np.all(np.isfinite(xyz)):
    raise ValueError(f"{name}: key 'tracks_XYZ' holds NaN/inf; expected finite (T, N, 3) positions.")
  return xyz.astype(np.float32), (vis if vis.dtype == np.bool_ else vis > 0.5)


def write_tapvid3d_prediction(path: npz_utils.PathLike, tracks_xyz_cam: np.ndarray, visibility: np.ndarray) -> None:
  """Writes a TAPVid-3D prediction npz (`tracks_XYZ`, `visibility`), atomically.

  Args:
    path: destination, used exactly as given.
    tracks_xyz_cam: (T, N, 3) predicted positions in metres, camera frame; finite.
    visibility: (T, N) bool.

  Raises:
    ValueError: for wrong shapes, a non-bool visibility or non-finite positions.
    OSError: when the file cannot be written.

  Example:
    >>> write_tapvid3d_prediction("pred/adt_clip.npz", xyz, vis)
  """
  name = os.fspath(path)
  xyz = np.asarray(tracks_xyz_cam)
  vis = np.asarray(visibility)
  if xyz.ndim != 3 or xyz.shape[-1] != 3 or xyz.dtype.kind not in "iuf":
    raise ValueError(f"write_tapvid3d_prediction({name}): tracks_xyz_cam must be numeric (T, N, 3); "
                     f"got {xyz.dtype} {xyz.shape}.")
  if not np.all(np.isfinite(xyz)):
    raise ValueError(f"write_tapvid3d_prediction({name}): tracks_xyz_cam holds NaN/inf.")
  if vis.shape != xyz.shape[:2] or vis.dtype != np.bool_:
    raise ValueError(f"write_tapvid3d_prediction({name}): visibility must be bool (T, N) = {xyz.shape[:2]}; "
                     f"got {vis.dtype} {vis.shape}.")
  npz_utils.save_npz_atomic(path, {"tracks_XYZ": xyz.astype(np.float32), "visibility": vis}, compressed=True)
