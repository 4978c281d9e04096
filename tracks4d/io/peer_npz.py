"""The TracksTo4D peer npz format (one clip per file) <-> `tracks4d.tracks.Tracks`.

Keys (REFERENCE.md section 1; T frames, N tracks):
  pred_tracks          (1, T, N, 2) float  pixel positions (u, v) = (x, y)
  pred_visibility      (1, T, N)    bool   tracker visibility
  started_at           (1, 1, N)    int    query frame of each track
  Ks_all               (T, 3, 3)    float  intrinsics (optional)
  Ms_all               (T, 3, 4)    float  world-to-camera [R | t] (optional)
  GT_depth_tracks_all  (1, T, N)    float  camera-frame depth, <= 0 invalid (optional)
  GT_mask_tracks_all   (1, T, N)    float  > 0 = foreground / dynamic (optional)

tracks4d extension keys (ignored by the peer's code, written so that our own
files round-trip exactly):
  tracks4d_image_hw           (2,) int32  image (height, width)
  tracks4d_intrinsics_known   ()   bool   False when Ks_all holds guessed intrinsics

Documented choices when reading
-------------------------------
* Image size. The peer format has none. `read_peer_npz` uses, in order: the
  `image_hw` argument; the `tracks4d_image_hw` key; the principal point of the
  first frame's `Ks_all`, assumed at the image centre (cx = (w - 1) / 2, see
  tracks4d.geometry), i.e. h = round(2 cy + 1), w = round(2 cx + 1). Without any
  of these it raises ValueError asking for `image_hw`.
* Intrinsics. `Ks_all` when present (known, unless `tracks4d_intrinsics_known` is
  False); otherwise the peer's guess from the image size, `intrinsics_known` False.
* Query frames. `started_at` when present; otherwise the first visible frame.
* Visibility stored as numbers instead of bools is thresholded at 0.5.
* Ground truth. `gt` is None unless `Ms_all` is present: the poses are the one
  part of `GroundTruth` that cannot be filled in (depth and mask without poses
  are then dropped). With `Ms_all`:
    - depth: `GT_depth_tracks_all`; entries <= 0 or non-finite are invalid and
      become 0; all 0 (unknown) when the key is absent.
    - xyz_world is DERIVED, not stored: the pixel tracks `pred_tracks` are
      unprojected with their depth through K and c2w = inverse(w2c). Entries with
      invalid depth get xyz_world = 0 (and depth 0). Since `pred_tracks` are the
      tracker's positions, xyz_world carries the tracker's 2D error.
    - dynamic: `GT_mask_tracks_all > 0`; all True when the key is absent (unknown:
      no point is claimed static, so "dynamic" metrics then cover every point).

Writing stores `gt.depth` as is, `gt.dynamic` as float32 0/1 and not
`gt.xyz_world` (the peer format has no world points), so a round trip preserves
xy_px, visible, query_frame, intrinsics, intrinsics_known, image_hw, w2c, depth
and dynamic exactly (float32; depth entries <= 0 come back as 0), and recomputes
xyz_world as described above.
"""

from __future__ import annotations

import os
from typing import Optional, Sequence

import numpy as np

from tracks4d import geometry
from tracks4d.io import npz_utils
from tracks4d.tracks import GroundTruth, Tracks, unpad_tracks, validate

IMAGE_HW_KEY = "tracks4d_image_hw"
INTRINSICS_KNOWN_KEY = "tracks4d_intrinsics_known"


def _image_hw_from_principal_point(K: np.ndarray) -> tuple[int, int]:
  cx, cy = float(K[0, 2]), float(K[1, 2])
  return int(round(2.0 * cy + 1.0)), int(round(2.0 * cx + 1.0))


def read_peer_npz(path: npz_utils.PathLike, image_hw: Optional[Sequence[int]] = None) -> Tracks:
  """Reads one clip in the TracksTo4D peer npz format.

  Args:
    path: the npz file.
    image_hw: (height, width) in pixels; None derives it as described in the
      module docstring (extension key, else the principal point of Ks_all).

  Returns:
    A validated `Tracks` (t = T, n = N) with `gt` filled when `Ms_all` is
    present (xyz_world derived from depth; see the module docstring), else None.

  Raises:
    ValueError: naming the file (and the key and expected shape where one is at
      fault) for an unreadable, corrupt or truncated file, a missing
      `pred_tracks` / `pred_visibility`, a wrong shape or dtype, non-integer
      query frames, an unknown image size, or anything `Tracks.create` rejects.

  Example:
    >>> tracks = read_peer_npz("cat_01.npz", image_hw=(480, 640))
    >>> tracks.xy_px.shape
    (50, 900, 2)
  """
  name = os.fspath(path)
  with npz_utils.open_npz(path) as npz:
    xy = npz_utils.require(
        npz, "pred_tracks", name, "(1, T, N, 2) pixel positions (u, v)", shape=(1, None, None, 2), kinds="iuf")
    t, n = xy.shape[1], xy.shape[2]
    tn = f"with T={t}, N={n} as in pred_tracks"
    vis = npz_utils.require(npz, "pred_visibility", name, f"(1, T, N) bool {tn}", shape=(1, t, n))
    started = npz_utils.require(
        npz, "started_at", name, f"(1, 1, N) integer query frames {tn}", shape=(1, 1, n), optional=True)
    Ks = npz_utils.require(
        npz, "Ks_all", name, f"(T, 3, 3) intrinsics {tn}", shape=(t, 3, 3), kinds="iuf", optional=True)
    Ms = npz_utils.require(
        npz, "Ms_all", name, f"(T, 3, 4) world-to-camera [R | t] (or (T, 4, 4)) {tn}",
        shape=[(t, 3, 4), (t, 4, 4)], kinds="iuf", optional=True)
    depth = npz_utils.require(
        npz, "GT_depth_tracks_all", name, f"(1, T, N) depth {tn}", shape=(1, t, n), optional=True)
    mask = npz_utils.require(
        npz, "GT_mask_tracks_all", name, f"(1, T, N) dynamic mask (> 0 = dynamic) {tn}", shape=(1, t, n),
        optional=True)
    stored_hw = npz_utils.require(
        npz, IMAGE_HW_KEY, name, "(2,) image (height, width)", shape=(2,), kinds="iu", optional=True)
    stored_known = npz_utils.require(
        npz, INTRINSICS_KNOWN_KEY, name, "() bool", shape=(), kinds="b", optional=True)

  visible = vis[0] if vis.dtype == np.bool_ else vis[0] > 0.5
  query_frame = None
  if started is not None:
    q = started[0, 0]
    if not np.all(np.isfinite(q)) or not np.all(q == np.round(q)):
      raise ValueError(f"{name}: key 'started_at' must hold integer frame indices; got {q[:8]}...")
    query_frame = np.round(q).astype(np.int32)

  if image_hw is None:
    if stored_hw is not None:
      image_hw = tuple(int(v) for v in stored_hw)
    elif Ks is not None:
      image_hw = _image_hw_from_principal_point(Ks[0])
    else:
      raise ValueError(
          f"{name}: the peer format stores no image size and this file has no 'Ks_all' to derive it "
          "from; pass image_hw=(height, width) to read_peer_npz.")

  tracks = Tracks.create(xy[0], visible, image_hw=image_hw, intrinsics=Ks, query_frame=query_frame, name=name)
  if Ks is not None and stored_known is not None and not bool(stored_known):
    tracks = tracks.replace(intrinsics_known=np.asarray(False))
  if Ms is None:
    return tracks

  Ms = Ms.astype(np.float64)
  w2c = geometry.make_pose(Ms[:, :3, :3], Ms[:, :3, 3])
  if depth is None:
    d = np.zeros((t, n), np.float64)
  else:
    d = depth[0].astype(np.float64)
  valid = np.isfinite(d) & (d > 0)
  d = np.where(valid, d, 0.0)
  K = np.asarray(tracks.intrinsics, np.float64)
  xyz_cam = geometry.unproject(np.asarray(tracks.xy_px, np.float64), d, K)
  xyz_world = geometry.transform_points(geometry.invert_pose(w2c), xyz_cam)
  xyz_world = np.where(valid[..., None], xyz_world, 0.0)
  dynamic = np.ones((t, n), bool) if mask is None else np.asarray(mask[0] > 0)
  gt = GroundTruth(
      w2c=w2c.astype(np.float32),
      depth=d.astype(np.float32),
      xyz_world=xyz_world.astype(np.float32),
      dynamic=dynamic,
  )
  tracks = tracks.replace(gt=gt)
  validate(tracks, name)
  return tracks


def write_peer_npz(path: npz_utils.PathLike, tracks: Tracks) -> None:
  """Writes one clip in the TracksTo4D peer npz format, atomically.

  Args:
    path: destination, used exactly as given.
    tracks: one clip (not a batch); padded frames and tracks are dropped
      (`unpad_tracks`). `Ks_all` is always written (guessed intrinsics too; the
      `tracks4d_intrinsics_known` key records which); `Ms_all`,
      `GT_depth_tracks_all` and `GT_mask_tracks_all` only when `tracks.gt` is set.

  Raises:
    ValueError: for a batched `Tracks` or a clip that fails validation.
    OSError: when the file cannot be written.

  Example:
    >>> write_peer_npz("cat_01.npz", tracks)
    >>> read_peer_npz("cat_01.npz").xy_px.shape == tracks.xy_px.shape
    True
  """
  name = os.fspath(path)
  if np.asarray(tracks.xy_px).ndim != 3:
    raise ValueError(
        f"write_peer_npz({name}): expected one clip with xy_px (t, n, 2); got shape "
        f"{np.asarray(tracks.xy_px).shape}. Split a batch with tracks4d.tracks.unbatch_tracks.")
  tracks = unpad_tracks(tracks)
  validate(tracks, f"write_peer_npz({name})")
  arrays = {
      "pred_tracks": np.asarray(tracks.xy_px, np.float32)[None],
      "pred_visibility": np.asarray(tracks.visible, bool)[None],
      "started_at": np.asarray(tracks.query_frame, np.int64)[None, None],
      "Ks_all": np.asarray(tracks.intrinsics, np.float32),
      IMAGE_HW_KEY: np.asarray(tracks.image_hw, np.int32),
      INTRINSICS_KNOWN_KEY: np.asarray(bool(np.asarray(tracks.intrinsics_known))),
  }
  gt = tracks.gt
  if gt is not None:
    arrays["Ms_all"] = np.asarray(gt.w2c, np.float32)[:, :3, :]
    arrays["GT_depth_tracks_all"] = np.asarray(gt.depth, np.float32)[None]
    arrays["GT_mask_tracks_all"] = np.asarray(gt.dynamic).astype(np.float32)[None]
  npz_utils.save_npz_atomic(path, arrays)
