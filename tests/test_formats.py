"""Tests of tracks4d.io: the peer npz and TAPVid-3D npz formats and npz helpers."""

from __future__ import annotations

import os
import re

import numpy as np
import pytest

from tracks4d import geometry
from tracks4d.io import npz_utils
from tracks4d.io.peer_npz import read_peer_npz, write_peer_npz
from tracks4d.io.tapvid3d_npz import (
    TapVid3DClip,
    read_tapvid3d_npz,
    read_tapvid3d_prediction,
    tapvid3d_to_tracks,
    write_tapvid3d_npz,
    write_tapvid3d_prediction,
)
from tracks4d.tracks import GroundTruth, Tracks, batch_tracks

IMAGE_HW = (48, 64)


def _random_scene(seed: int, t: int = 8, n: int = 20):
  """Random cameras (w2c), world points moving a little, their pixels and depth."""
  rng = np.random.default_rng(seed)
  rot_c2w = geometry.axis_angle_to_matrix(rng.normal(scale=0.3, size=(t, 3)))
  centres = rng.normal(scale=0.5, size=(t, 3)) + np.array([0.0, 0.0, -4.0])
  c2w = geometry.make_pose(rot_c2w, centres)
  w2c = geometry.invert_pose(c2w)
  xyz_world = rng.uniform(-1.0, 1.0, size=(1, n, 3)) + 0.05 * rng.normal(size=(t, n, 3))
  xyz_cam = geometry.transform_points(w2c, xyz_world)
  K = geometry.make_intrinsics(
      rng.uniform(50, 70, t), rng.uniform(50, 70, t), rng.uniform(28, 34, t), rng.uniform(20, 26, t))
  xy_px, depth = geometry.project(xyz_cam, K.astype(np.float64))
  visible = rng.random((t, n)) > 0.3
  visible[0] = True
  return rng, w2c, xyz_world, xyz_cam, K, xy_px, depth, visible


def _clip_with_gt(seed: int = 0, t: int = 8, n: int = 20) -> Tracks:
  rng, w2c, xyz_world, _, K, xy_px, depth, visible = _random_scene(seed, t, n)
  invalid = rng.random((t, n)) < 0.2
  depth = np.where(invalid, 0.0, depth)
  xyz_world = np.where(invalid[..., None], 0.0, xyz_world)
  gt = GroundTruth(w2c=w2c, depth=depth, xyz_world=xyz_world, dynamic=rng.random((t, n)) > 0.5)
  query_frame = rng.integers(0, t, size=n)
  return Tracks.create(xy_px, visible, image_hw=IMAGE_HW, intrinsics=K, query_frame=query_frame, gt=gt)


def _assert_same_tracks(a: Tracks, b: Tracks) -> None:
  for field in ("xy_px", "visible", "query_frame", "intrinsics", "image_hw", "intrinsics_known"):
    x, y = np.asarray(getattr(a, field)), np.asarray(getattr(b, field))
    assert x.dtype == y.dtype, field
    np.testing.assert_array_equal(x, y, err_msg=field)


# ---------------------------------------------------------------------------
# Peer npz.
# ---------------------------------------------------------------------------


def test_peer_round_trip_with_gt(tmp_path):
  tracks = _clip_with_gt()
  path = tmp_path / "clip.npz"
  write_peer_npz(path, tracks)
  back = read_peer_npz(path)
  _assert_same_tracks(tracks, back)
  for field in ("w2c", "depth", "dynamic"):
    x, y = np.asarray(getattr(tracks.gt, field)), np.asarray(getattr(back.gt, field))
    assert x.dtype == y.dtype, field
    np.testing.assert_array_equal(x, y, err_msg=field)
  # xyz_world is derived from (xy_px, depth) through K and c2w: equal up to float32 rounding.
  np.testing.assert_allclose(back.gt.xyz_world, tracks.gt.xyz_world, atol=2e-4)
  assert np.all(back.gt.xyz_world[tracks.gt.depth <= 0] == 0)
  # Nothing else lies in the directory (the atomic writer cleaned up).
  assert os.listdir(tmp_path) == ["clip.npz"]


def test_peer_round_trip_without_gt_and_guessed_intrinsics(tmp_path):
  rng = np.random.default_rng(1)
  xy = rng.uniform(0, 60, size=(5, 7, 2))
  tracks = Tracks.create(xy, rng.random((5, 7)) > 0.2, image_hw=(50, 61))
  path = tmp_path / "guess.npz"
  write_peer_npz(path, tracks)
  back = read_peer_npz(path)
  _assert_same_tracks(tracks, back)
  assert back.gt is None and not bool(back.intrinsics_known)


def test_peer_file_without_extensions(tmp_path):
  """A file as the peer writes it: no image size, 3x4 poses, float mask, -1 depth."""
  tracks = _clip_with_gt(seed=2)
  t, n = tracks.num_frames, tracks.num_tracks
  K = np.asarray(tracks.intrinsics).copy()
  K[:, 0, 2], K[:, 1, 2] = (IMAGE_HW[1] - 1) / 2, (IMAGE_HW[0] - 1) / 2
  depth = np.asarray(tracks.gt.depth).copy()
  depth[depth == 0] = -1.0
  common = dict(pred_tracks=tracks.xy_px[None], pred_visibility=tracks.visible[None],
                started_at=tracks.query_frame[None, None].astype(np.float32))
  path = tmp_path / "peer.npz"
  np.savez(path, Ks_all=K, Ms_all=np.asarray(tracks.gt.w2c)[:, :3], GT_depth_tracks_all=depth[None],
           GT_mask_tracks_all=tracks.gt.dynamic[None].astype(np.float64) * 2.0, **common)
  back = read_peer_npz(path)
  assert tuple(back.image_hw) == IMAGE_HW  # h = 2 cy + 1, w = 2 cx + 1.
  assert bool(back.intrinsics_known)
  np.testing.assert_array_equal(back.query_frame, tracks.query_frame)
  np.testing.assert_array_equal(back.gt.depth, np.maximum(depth, 0))
  np.testing.assert_array_equal(back.gt.dynamic, tracks.gt.dynamic)
  np.testing.assert_array_equal(back.gt.w2c[:, 3], np.tile([0, 0, 0, 1], (t, 1)))
  assert np.all(back.gt.xyz_world[depth <= 0] == 0)

  # No Ms_all: no ground truth; no Ks_all: the image size must be given.
  bare = tmp_path / "bare.npz"
  np.savez(bare, GT_depth_tracks_all=depth[None], **common)
  with pytest.raises(ValueError, match=r"bare\.npz.*image_hw"):
    read_peer_npz(bare)
  back = read_peer_npz(bare, image_hw=(40, 50))
  assert back.gt is None and tuple(back.image_hw) == (40, 50) and not bool(back.intrinsics_known)
  np.testing.assert_array_equal(back.intrinsics[0], geometry.guess_intrinsics((40, 50)))

  # Poses without depth or mask: depth unknown (0), dynamic unknown (True).
  poses = tmp_path / "poses.npz"
  np.savez(poses, Ms_all=np.asarray(tracks.gt.w2c)[:, :3], Ks_all=K, **common)
  back = read_peer_npz(poses)
  assert np.all(back.gt.depth == 0) and np.all(back.gt.xyz_world == 0) and np.all(back.gt.dynamic)
  assert back.gt.dynamic.shape == (t, n)


def test_write_peer_rejects_batch(tmp_path):
  tracks = _clip_with_gt()
  with pytest.raises(ValueError, match="unbatch_tracks"):
    write_peer_npz(tmp_path / "b.npz", batch_tracks([tracks, tracks]))


# ---------------------------------------------------------------------------
# TAPVid-3D npz.
# ---------------------------------------------------------------------------


def _smooth_images(t: int, hw=IMAGE_HW) -> np.ndarray:
  yy, xx = np.mgrid[0:hw[0], 0:hw[1]].astype(np.float64)
  frames = [np.stack([128 + 100 * np.sin(xx / 9 + i / 3), 128 + 100 * np.cos(yy / 7 - i / 4),
                      64 + 0.5 * xx + yy], -1) for i in range(t)]
  return np.clip(np.stack(frames), 0, 255).astype(np.uint8)


def _tapvid_clip(seed: int = 3, with_images: bool = True, with_extrinsics: bool = True) -> TapVid3DClip:
  rng, w2c, _, xyz_cam, K, xy_px, _, visible = _random_scene(seed)
  t, n = visible.shape
  fx_fy_cx_cy = np.array([K[0, 0, 0], K[0, 1, 1], K[0, 0, 2], K[0, 1, 2]])
  xy0, _ = geometry.project(xyz_cam, geometry.make_intrinsics(*fx_fy_cx_cy).astype(np.float64))
  q_t = rng.integers(0, t, size=n)
  queries = np.concatenate([xy0[q_t, np.arange(n)], q_t[:, None]], axis=-1)
  return TapVid3DClip(images=_smooth_images(t) if with_images else None, queries_xyt=queries,
                      tracks_xyz_cam=xyz_cam, visibility=visible, fx_fy_cx_cy=fx_fy_cx_cy,
                      extrinsics_w2c=w2c if with_extrinsics else None)


@pytest.mark.parametrize("with_extrinsics", [True, False])
def test_tapvid3d_round_trip(tmp_path, with_extrinsics):
  clip = _tapvid_clip(with_extrinsics=with_extrinsics)
  path = tmp_path / "clip.npz"
  write_tapvid3d_npz(path, clip)
  back = read_tapvid3d_npz(path)
  for field in ("queries_xyt", "tracks_xyz_cam", "visibility", "fx_fy_cx_cy"):
    np.testing.assert_array_equal(getattr(back, field), getattr(clip, field), err_msg=field)
    assert getattr(back, field).dtype == getattr(clip, field).dtype
  if with_extrinsics:
    np.testing.assert_array_equal(back.extrinsics_w2c, clip.extrinsics_w2c)
  else:
    assert back.extrinsics_w2c is None
  assert back.images.shape == clip.images.shape and back.images.dtype == np.uint8
  assert np.abs(back.images.astype(float) - clip.images.astype(float)).mean() < 3.0  # JPEG is lossy.
  # The layout loads without pickle as a fixed-width bytes array of JPEGs.
  with np.load(path, allow_pickle=False) as npz:
    assert npz["images_jpeg_bytes"].dtype.kind == "S"
    assert bytes(npz["images_jpeg_bytes"][0]).startswith(b"\xff\xd8")
  assert read_tapvid3d_npz(path, load_images=False).images is None


def test_tapvid3d_without_images(tmp_path):
  clip = _tapvid_clip(with_images=False)
  path = tmp_path / "noimg.npz"
  write_tapvid3d_npz(path, clip)
  assert read_tapvid3d_npz(path, load_images=False).images is None
  with pytest.raises(ValueError, match=r"noimg\.npz.*images_jpeg_bytes.*load_images=False"):
    read_tapvid3d_npz(path)


def test_tapvid3d_pickled_images(tmp_path):
  """Released TAPVid-3D files store the JPEGs as a pickled object array."""
  clip = _tapvid_clip(with_extrinsics=False)
  import cv2

  jpegs = np.empty(clip.num_frames, dtype=object)
  for i, im in enumerate(clip.images):
    jpegs[i] = cv2.imencode(".jpg", im[..., ::-1])[1].tobytes()
  path = tmp_path / "released.npz"
  np.savez(path, images_jpeg_bytes=jpegs, queries_xyt=clip.queries_xyt, tracks_XYZ=clip.tracks_xyz_cam,
           visibility=clip.visibility, fx_fy_cx_cy=clip.fx_fy_cx_cy)
  back = read_tapvid3d_npz(path, load_images=False)
  assert back.images is None
  np.testing.assert_array_equal(back.tracks_xyz_cam, clip.tracks_xyz_cam)
  with pytest.raises(ValueError) as err:
    read_tapvid3d_npz(path, load_images=True)
  msg = str(err.value)
  assert "released.npz" in msg and "images_jpeg_bytes" in msg
  assert "pickled" in msg and "refuses to unpickle" in msg and "load_images=False" in msg


def test_tapvid3d_to_tracks():
  clip = _tapvid_clip()
  tracks = tapvid3d_to_tracks(clip)
  K = geometry.make_intrinsics(*clip.fx_fy_cx_cy)
  xy, z = geometry.project(clip.tracks_xyz_cam.astype(np.float64), K.astype(np.float64))
  np.testing.assert_allclose(tracks.xy_px, xy, rtol=1e-5, atol=1e-3)
  np.testing.assert_allclose(tracks.gt.depth, z, rtol=1e-5)
  np.testing.assert_array_equal(tracks.visible, clip.visibility)
  np.testing.assert_array_equal(tracks.query_frame, clip.queries_xyt[:, 2].astype(int))
  # queries_xyt is (x, y, t): the track's pixel position at its query frame.
  n = clip.num_tracks
  np.testing.assert_allclose(tracks.xy_px[tracks.query_frame, np.arange(n)], clip.queries_xyt[:, :2], atol=1e-3)
  assert tuple(tracks.image_hw) == IMAGE_HW and bool(tracks.intrinsics_known)
  assert np.all(tracks.gt.dynamic)  # Unknown -> True (documented).
  np.testing.assert_allclose(tracks.gt.w2c, clip.extrinsics_w2c, atol=1e-6)
  xyz_cam = geometry.transform_points(np.asarray(tracks.gt.w2c, np.float64), tracks.gt.xyz_world)
  np.testing.assert_allclose(xyz_cam, clip.tracks_xyz_cam, atol=1e-4)

  # No extrinsics: identity poses, world = camera frame; no images: size from cx, cy.
  bare = TapVid3DClip(images=None, queries_xyt=clip.queries_xyt, tracks_xyz_cam=clip.tracks_xyz_cam,
                      visibility=clip.visibility, fx_fy_cx_cy=[60.0, 60.0, 31.5, 23.5])
  tr = tapvid3d_to_tracks(bare)
  np.testing.assert_array_equal(tr.gt.w2c, np.broadcast_to(np.eye(4, dtype=np.float32), (clip.num_frames, 4, 4)))
  np.testing.assert_allclose(tr.gt.xyz_world, clip.tracks_xyz_cam, atol=1e-6)
  assert tuple(tr.image_hw) == (48, 64)
  assert tuple(tapvid3d_to_tracks(bare, image_hw=(10, 20)).image_hw) == (10, 20)

  # NaN positions are allowed only where invisible.
  xyz = clip.tracks_xyz_cam.copy()
  vis = clip.visibility.copy()
  xyz[1, 2] = np.nan
  vis[1, 2] = False
  tr = tapvid3d_to_tracks(TapVid3DClip(None, clip.queries_xyt, xyz, vis, clip.fx_fy_cx_cy))
  assert np.all(tr.xy_px[1, 2] == 0) and tr.gt.depth[1, 2] == 0
  vis[1, 2] = True
  with pytest.raises(ValueError, match="non-finite"):
    tapvid3d_to_tracks(TapVid3DClip(None, clip.queries_xyt, xyz, vis, clip.fx_fy_cx_cy))


def test_tapvid3d_clip_validation():
  clip = _tapvid_clip(with_images=False)
  with pytest.raises(ValueError, match="visibility"):
    TapVid3DClip(None, clip.queries_xyt, clip.tracks_xyz_cam, clip.visibility.astype(np.float32),
                 clip.fx_fy_cx_cy)
  with pytest.raises(ValueError, match="queries_xyt"):
    TapVid3DClip(None, clip.queries_xyt[:3], clip.tracks_xyz_cam, clip.visibility, clip.fx_fy_cx_cy)
  with pytest.raises(ValueError, match="fx_fy_cx_cy"):
    TapVid3DClip(None, clip.queries_xyt, clip.tracks_xyz_cam, clip.visibility, [0.0, 1.0, 2.0, 3.0])


def test_tapvid3d_prediction_round_trip(tmp_path):
  rng = np.random.default_rng(4)
  xyz = rng.normal(size=(6, 9, 3)).astype(np.float32)
  vis = rng.random((6, 9)) > 0.5
  path = tmp_path / "pred.npz"
  write_tapvid3d_prediction(path, xyz, vis)
  xyz2, vis2 = read_tapvid3d_prediction(path)
  np.testing.assert_array_equal(xyz2, xyz)
  np.testing.assert_array_equal(vis2, vis)
  with pytest.raises(ValueError, match="visibility"):
    write_tapvid3d_prediction(path, xyz, vis.astype(np.float32))
  bad = tmp_path / "badpred.npz"
  np.savez(bad, tracks_XYZ=xyz, visibility=vis[:, :4])
  with pytest.raises(ValueError, match=r"badpred\.npz.*'visibility'.*\(T, N\).*N=9"):
    read_tapvid3d_prediction(bad)


# ---------------------------------------------------------------------------
# Malformed files.
# ---------------------------------------------------------------------------


def _peer_arrays(tracks: Tracks) -> dict:
  return dict(pred_tracks=tracks.xy_px[None], pred_visibility=tracks.visible[None],
              started_at=tracks.query_frame[None, None], Ks_all=tracks.intrinsics)


def test_wrong_shape_names_file_key_and_shape(tmp_path):
  tracks = _clip_with_gt()
  arrays = _peer_arrays(tracks)
  arrays["pred_visibility"] = arrays["pred_visibility"][:, :, :5]
  path = tmp_path / "wrongshape.npz"
  np.savez(path, **arrays)
  with pytest.raises(ValueError) as err:
    read_peer_npz(path)
  msg = str(err.value)
  assert "wrongshape.npz" in msg and "'pred_visibility'" in msg and "(1, T, N)" in msg and "N=20" in msg

  arrays = _peer_arrays(tracks)
  arrays["Ks_all"] = arrays["Ks_all"][:, :2]
  np.savez(path, **arrays)
  with pytest.raises(ValueError, match=r"wrongshape\.npz.*'Ks_all'.*\(T, 3, 3\)"):
    read_peer_npz(path)

  clip = _tapvid_clip(with_images=False)
  tv = tmp_path / "tv_wrongshape.npz"
  np.savez(tv, queries_xyt=clip.queries_xyt, tracks_XYZ=clip.tracks_xyz_cam[..., :2],
           visibility=clip.visibility, fx_fy_cx_cy=clip.fx_fy_cx_cy)
  with pytest.raises(ValueError, match=r"tv_wrongshape\.npz.*'tracks_XYZ'.*\(T, N, 3\)"):
    read_tapvid3d_npz(tv, load_images=False)


def test_missing_key_names_file_and_key(tmp_path):
  arrays = _peer_arrays(_clip_with_gt())
  del arrays["pred_tracks"]
  path = tmp_path / "nokey.npz"
  np.savez(path, **arrays)
  with pytest.raises(ValueError, match=r"nokey\.npz: missing key 'pred_tracks'; expected \(1, T, N, 2\)"):
    read_peer_npz(path)

  clip = _tapvid_clip(with_images=False)
  tv = tmp_path / "tv_nokey.npz"
  np.savez(tv, queries_xyt=clip.queries_xyt, tracks_XYZ=clip.tracks_xyz_cam, visibility=clip.visibility)
  with pytest.raises(ValueError, match=r"tv_nokey\.npz: missing key 'fx_fy_cx_cy'; expected \(4,\)"):
    read_tapvid3d_npz(tv, load_images=False)


@pytest.mark.parametrize("reader", [read_peer_npz, read_tapvid3d_npz, read_tapvid3d_prediction])
def test_garbage_truncated_and_missing_files(tmp_path, reader):
  garbage = tmp_path / "garbage.npz"
  garbage.write_bytes(np.random.default_rng(0).bytes(500))
  with pytest.raises(ValueError, match=r"garbage\.npz.*corrupt"):
    reader(garbage)

  good = tmp_path / "good.npz"
  write_peer_npz(good, _clip_with_gt())
  data = good.read_bytes()
  truncated = tmp_path / "truncated.npz"
  truncated.write_bytes(data[: len(data) // 2])
  with pytest.raises(ValueError, match=r"truncated\.npz.*truncated"):
    reader(truncated)

  with pytest.raises(ValueError, match=r"absent\.npz: no such file"):
    reader(tmp_path / "absent.npz")


def test_corrupt_member_names_file_and_key(tmp_path):
  """Bytes flipped inside one member: the archive opens, the member fails its CRC."""
  tracks = _clip_with_gt()
  path = tmp_path / "flipped.npz"
  write_peer_npz(path, tracks)
  data = bytearray(path.read_bytes())
  start = data.index(b"pred_tracks.npy") + 400  # Inside the stored (uncompressed) array data.
  data[start:start + 16] = bytes(b ^ 0xFF for b in data[start:start + 16])
  path.write_bytes(bytes(data))
  with pytest.raises(ValueError, match=r"flipped\.npz: key 'pred_tracks' cannot be read.*\(1, T, N, 2\)"):
    read_peer_npz(path)


# ---------------------------------------------------------------------------
# npz helpers.
# ---------------------------------------------------------------------------


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
  path = tmp_path / "out.npz"
  npz_utils.save_npz_atomic(path, {"a": np.arange(3)})
  with pytest.raises(RuntimeError):
    with npz_utils.atomic_write(path) as f:
      f.write(b"half a file")
      raise RuntimeError("killed")
  assert os.listdir(tmp_path) == ["out.npz"]
  with npz_utils.open_npz(path) as npz:
    np.testing.assert_array_equal(npz["a"], np.arange(3))
  with pytest.raises(ValueError, match="object dtype"):
    npz_utils.save_npz_atomic(path, {"o": np.array([b"x", None], dtype=object)})
  npz_utils.save_npz_atomic(tmp_path / "nosuffix", {"a": np.zeros(2)})
  assert (tmp_path / "nosuffix").exists()


def test_require_checks(tmp_path):
  path = tmp_path / "req.npz"
  np.savez(path, a=np.zeros((2, 3)), s=np.array(["x"]))
  with npz_utils.open_npz(path) as npz:
    assert npz_utils.require(npz, "a", path, "(2, 3)", shape=(2, None)).shape == (2, 3)
    assert npz_utils.require(npz, "a", path, "(2, 3)", shape=[(1, 3), (2, 3)]).shape == (2, 3)
    assert npz_utils.require(npz, "b", path, "(2,)", optional=True) is None
    with pytest.raises(ValueError, match=re.escape("req.npz: key 'a' has shape (2, 3) (2 dims); expected (2,)")):
      npz_utils.require(npz, "a", path, "(2,)", ndim=1)
    with pytest.raises(ValueError, match=r"req\.npz: key 's' has dtype <U1"):
      npz_utils.require(npz, "s", path, "(1,)")
  np.save(tmp_path / "single.npy", np.zeros(3))
  with pytest.raises(ValueError, match=r"single\.npy: is a single \.npy array"):
    npz_utils.open_npz(tmp_path / "single.npy")
