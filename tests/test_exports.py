"""Tests of reconstruct.export: npz, COLMAP text, PLY, plot, overlay video, summary, export_all."""

from __future__ import annotations

import json

import cv2
import imageio.v2 as imageio
import numpy as np
import pytest

from reconstruct import export
from reconstruct.export import colmap, common, overlay, ply
from reconstruct.export.npz import KEYS, read_reconstruction_npz, write_reconstruction_npz
from reconstruct.result import Reconstruction, ReprojectionStats, Timings
from tracks4d import geometry
from tracks4d.io import npz_utils
from tracks4d.io.tapvid3d_npz import read_tapvid3d_prediction

IMAGE_HW = (48, 64)
NUM_DYNAMIC = 4


def _make_rec(seed: int = 0, t: int = 6, n: int = 40, shared_k: bool = True, num_dynamic: int = NUM_DYNAMIC):
  """A consistent synthetic Reconstruction: look_at cameras around random points; the
  first `num_dynamic` tracks move along a straight line (rank-2 low-rank model)."""
  rng = np.random.default_rng(seed)
  theta = np.linspace(-0.3, 0.3, t)
  eyes = np.stack([5 * np.sin(theta), np.full(t, -0.5), -5 * np.cos(theta)], -1)
  c2w = np.asarray(geometry.look_at(eyes, np.zeros((t, 3))), np.float64)
  w2c = geometry.invert_pose(c2w)
  x0 = rng.uniform(-1.0, 1.0, size=(n, 3))
  direction = np.zeros((n, 3))
  direction[:num_dynamic] = rng.normal(scale=0.5, size=(num_dynamic, 3))
  bases = np.stack([x0, direction], -1)[None]  # (1, n, 3, k=2)
  coeffs = np.stack([np.ones(t), np.linspace(0.0, 1.0, t)], -1)  # (t, 2)
  tracks_world = np.einsum("nck,tk->tnc", bases[0], coeffs)
  tracks_cam = geometry.transform_points(w2c, tracks_world)
  fx = np.full(t, 60.0) if shared_k else np.linspace(55.0, 65.0, t)
  K = np.asarray(geometry.make_intrinsics(fx, fx, np.full(t, 31.5), np.full(t, 23.5)), np.float64)
  visible = rng.random((t, n)) > 0.25
  movement = np.where(np.arange(n) < num_dynamic, 0.1 + rng.random(n) * 0.1, rng.random(n) * 0.005)
  xy_px = geometry.project(tracks_cam, K)[0]  # Exact observations.
  rec = Reconstruction(
      c2w=c2w, w2c=w2c, K=K, image_hw=np.array(IMAGE_HW, np.int32), xy_px=xy_px, gamma=movement,
      tracks_world=tracks_world,
      tracks_cam=tracks_cam, visible=visible, movement=movement, is_dynamic=movement > 0.02,
      movement_threshold=0.02, bases=bases, coeffs=coeffs, frame_window=np.zeros(t, np.int32),
      window_starts=np.array([0], np.int32), focal_source="given",
      reprojection=ReprojectionStats(mean_px=0.5, median_px=0.4, p90_px=float("nan"), static_median_px=0.3,
                                     dynamic_median_px=float("nan"), num_visible=int(visible.sum())),
      timings=Timings(feed_forward=1.25, total=2.5))
  return rec


def _projections(rec) -> np.ndarray:
  xy, _ = geometry.project(rec.tracks_cam, rec.K)
  return np.asarray(xy, np.float64)


# ---------------------------------------------------------------------------
# reconstruction.npz
# ---------------------------------------------------------------------------


def test_npz_exact_keys_dtypes_and_round_trip(tmp_path):
  rec = _make_rec()
  path = write_reconstruction_npz(tmp_path / "reconstruction.npz", rec)
  with np.load(path, allow_pickle=False) as npz:
    assert sorted(npz.files) == sorted(KEYS) == sorted(["c2w", "K", "tracks_world", "tracks_cam", "visible",
                                                         "movement"])
    assert npz["c2w"].dtype == np.float32 and npz["visible"].dtype == np.bool_
  back = read_reconstruction_npz(path)
  assert set(back) == set(KEYS)
  for key in KEYS:
    want = np.asarray(getattr(rec, key))
    assert back[key].shape == want.shape, key
    if key == "visible":
      np.testing.assert_array_equal(back[key], want)
    else:
      assert back[key].dtype == np.float32, key
      np.testing.assert_allclose(back[key], want, rtol=1e-6, atol=1e-6, err_msg=key)


def _valid_arrays(rec):
  return {k: np.asarray(getattr(rec, k)).astype(bool if k == "visible" else np.float32) for k in KEYS}


@pytest.mark.parametrize("case, key, match", [
    ("missing", "K", "missing key 'K'"),
    ("shape", "tracks_cam", "key 'tracks_cam' has shape"),
    ("dtype", "visible", "key 'visible' has dtype"),
    ("pickle", "movement", "key 'movement' stores pickled"),
])
def test_npz_read_errors_name_the_key(tmp_path, case, key, match):
  rec = _make_rec()
  arrays = _valid_arrays(rec)
  path = tmp_path / "bad.npz"
  if case == "missing":
    del arrays[key]
  elif case == "shape":
    arrays[key] = arrays[key][..., :2]
  elif case == "dtype":
    arrays[key] = arrays[key].astype(np.float32)
  if case == "pickle":
    arrays[key] = np.array([object()] * arrays[key].shape[0], dtype=object)
    np.savez(path, **arrays)  # allow_pickle defaults to True when saving.
  else:
    npz_utils.save_npz_atomic(path, arrays)
  with pytest.raises(ValueError, match=match):
    read_reconstruction_npz(path)


def test_npz_write_rejects_inconsistent_rec(tmp_path):
  rec = _make_rec()
  bad = rec.replace(visible=np.asarray(rec.visible)[:, :-1])
  with pytest.raises(ValueError, match=r"rec\.visible"):
    write_reconstruction_npz(tmp_path / "r.npz", bad)


# ---------------------------------------------------------------------------
# COLMAP
# ---------------------------------------------------------------------------


def test_colmap_round_trip_and_geometric_consistency(tmp_path):
  rec = _make_rec(seed=1)
  xy = _projections(rec)
  colmap.write_colmap_text(tmp_path / "colmap", rec, xy_px=xy)
  model = colmap.read_colmap_text(tmp_path / "colmap")
  t, n = np.asarray(rec.visible).shape

  # One shared PINHOLE camera, principal point shifted by +0.5 (COLMAP pixel centres).
  assert list(model.cameras) == [1]
  cam = model.cameras[1]
  assert (cam.model, cam.width, cam.height) == ("PINHOLE", IMAGE_HW[1], IMAGE_HW[0])
  np.testing.assert_allclose(cam.params, [60.0, 60.0, 32.0, 24.0])
  np.testing.assert_allclose(cam.K_tracks4d, rec.K[0], atol=1e-12)

  assert sorted(model.images) == list(range(1, t + 1))
  for f in range(t):
    img = model.images[f + 1]
    assert img.name == f"frame_{f:06d}.png" and img.camera_id == 1
    np.testing.assert_allclose(img.w2c, rec.w2c[f], atol=1e-9)

  # Only static, observed tracks; ids are track index + 1; positions are the visible means.
  static = ~np.asarray(rec.is_dynamic) & np.asarray(rec.visible).any(0)
  assert sorted(model.points) == [int(j) + 1 for j in np.nonzero(static)[0]]
  for pid, pt in model.points.items():
    j = pid - 1
    np.testing.assert_allclose(pt.xyz, rec.tracks_world[0, j], atol=1e-9)
    assert pt.error < 1e-6
    np.testing.assert_array_equal(np.sort(pt.image_ids), np.nonzero(rec.visible[:, j])[0] + 1)

  # Every observation: its point projected with the parsed camera and pose (COLMAP convention).
  count = 0
  for img in model.images.values():
    k = model.cameras[img.camera_id].K
    assert img.xys.shape[0] == len(img.point3d_ids) > 0
    for idx, (obs, pid) in enumerate(zip(img.xys, img.point3d_ids)):
      pt = model.points[int(pid)]
      x_cam = img.w2c[:3, :3] @ pt.xyz + img.w2c[:3, 3]
      uv = (k @ (x_cam / x_cam[2]))[:2]
      assert np.linalg.norm(uv - obs) < 1e-3
      # The point's track points back at this observation.
      assert idx in pt.point2d_idxs[pt.image_ids == img.image_id]
      # The stored 2D position is our pixel + 0.5.
      np.testing.assert_allclose(obs, xy[img.image_id - 1, int(pid) - 1] + 0.5, atol=1e-9)
      count += 1
  assert count == int(np.asarray(rec.visible)[:, static].sum())


def test_colmap_only_static_points_and_skips_unobserved(tmp_path):
  rec = _make_rec(seed=2)
  vis = np.asarray(rec.visible).copy()
  vis[:, NUM_DYNAMIC] = False  # A static track never seen: no point.
  rec = rec.replace(visible=vis)
  colmap.write_colmap_text(tmp_path, rec)
  model = colmap.read_colmap_text(tmp_path)
  ids = set(model.points)
  dynamic_ids = {j + 1 for j in np.nonzero(rec.is_dynamic)[0]}
  assert dynamic_ids and not ids & dynamic_ids
  assert NUM_DYNAMIC + 1 not in ids
  assert len(ids) == int((~rec.is_dynamic & vis.any(0)).sum())
  for img in model.images.values():
    assert not set(img.point3d_ids.tolist()) & dynamic_ids


def test_colmap_per_frame_cameras_when_k_varies(tmp_path):
  rec = _make_rec(seed=3, shared_k=False)
  colmap.write_colmap_text(tmp_path, rec)
  model = colmap.read_colmap_text(tmp_path)
  t = rec.num_frames
  assert sorted(model.cameras) == list(range(1, t + 1))
  for f in range(t):
    img = model.images[f + 1]
    assert img.camera_id == f + 1
    np.testing.assert_allclose(model.cameras[img.camera_id].K_tracks4d, rec.K[f], atol=1e-9)
  # Observations from the projections (default) are still consistent.
  for img in model.images.values():
    k = model.cameras[img.camera_id].K
    for obs, pid in zip(img.xys, img.point3d_ids):
      x_cam = img.w2c[:3, :3] @ model.points[int(pid)].xyz + img.w2c[:3, 3]
      assert np.linalg.norm((k @ (x_cam / x_cam[2]))[:2] - obs) < 1e-3


def test_colmap_quaternion_is_scalar_first_of_world_to_camera(tmp_path):
  rec = _make_rec(seed=4)
  rz90 = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # World x -> camera y.
  w2c = np.asarray(rec.w2c).copy()
  w2c[0] = geometry.make_pose(rz90, np.array([1.0, 2.0, 3.0]))
  rec = rec.replace(w2c=w2c, c2w=geometry.invert_pose(w2c))
  colmap.write_colmap_text(tmp_path, rec)
  lines = [ln for ln in (tmp_path / "images.txt").read_text().splitlines() if ln and not ln.startswith("#")]
  tokens = lines[0].split()
  s = np.sqrt(0.5)
  np.testing.assert_allclose([float(v) for v in tokens[1:8]], [s, 0.0, 0.0, s, 1.0, 2.0, 3.0], atol=1e-12)
  np.testing.assert_allclose(colmap.read_colmap_text(tmp_path).images[1].w2c, w2c[0], atol=1e-12)


def test_quaternion_round_trip_including_half_turns():
  rng = np.random.default_rng(0)
  rots = list(np.asarray(geometry.axis_angle_to_matrix(rng.normal(size=(20, 3)))))
  rots += [np.diag([1.0, -1.0, -1.0]), np.diag([-1.0, 1.0, -1.0]), np.diag([-1.0, -1.0, 1.0]), np.eye(3)]
  for r in rots:
    q = colmap.rotation_to_quaternion(r)
    assert q[0] >= 0 and abs(np.linalg.norm(q) - 1) < 1e-12
    np.testing.assert_allclose(colmap.quaternion_to_rotation(q), r, atol=1e-6)
  np.testing.assert_allclose(colmap.rotation_to_quaternion(np.diag([1.0, -1.0, -1.0])), [0, 1, 0, 0], atol=1e-12)


def test_colmap_reader_errors_name_file_and_line(tmp_path):
  colmap.write_colmap_text(tmp_path, _make_rec())
  path = tmp_path / "points3D.txt"
  path.write_text(path.read_text() + "99 1.0 2.0\n")
  with pytest.raises(ValueError, match=r"points3D\.txt:\d+"):
    colmap.read_colmap_text(tmp_path)
  (tmp_path / "cameras.txt").unlink()
  with pytest.raises(ValueError, match="cameras.txt: no such file"):
    colmap.read_colmap_text(tmp_path)


# ---------------------------------------------------------------------------
# PLY
# ---------------------------------------------------------------------------


def test_ply_header_and_round_trip(tmp_path):
  rng = np.random.default_rng(0)
  xyz = rng.normal(size=(17, 3))
  rgb = rng.integers(0, 256, size=(17, 3)).astype(np.uint8)
  path = ply.write_ply(tmp_path / "p.ply", xyz, rgb)
  data = path.read_bytes()
  header = data[:data.index(b"end_header\n") + len(b"end_header\n")]
  lines = header.decode("ascii").splitlines()
  assert lines[:2] == ["ply", "format binary_little_endian 1.0"]
  assert "element vertex 17" in lines
  props = [ln for ln in lines if ln.startswith("property")]
  assert props == ["property float x", "property float y", "property float z", "property uchar red",
                   "property uchar green", "property uchar blue"]
  assert len(data) == len(header) + 17 * (3 * 4 + 3)
  # The body is little-endian float32 x y z then 3 bytes of colour per vertex.
  first = np.frombuffer(data[len(header):len(header) + 12], "<f4")
  np.testing.assert_allclose(first, xyz[0], rtol=1e-6)
  back_xyz, back_rgb = ply.read_ply(path)
  np.testing.assert_allclose(back_xyz, xyz.astype(np.float32))
  np.testing.assert_array_equal(back_rgb, rgb)
  empty = ply.write_ply(tmp_path / "e.ply", np.zeros((0, 3)), np.zeros((0, 3), np.uint8))
  assert ply.read_ply(empty)[0].shape == (0, 3)
  with pytest.raises(ValueError, match="xyz"):
    ply.write_ply(tmp_path / "nan.ply", np.full((1, 3), np.nan), np.zeros((1, 3), np.uint8))
  with pytest.raises(ValueError, match="format"):
    (tmp_path / "a.ply").write_bytes(b"ply\nformat ascii 1.0\nelement vertex 0\nend_header\n")
    ply.read_ply(tmp_path / "a.ply")


def test_reconstruction_plys_contents(tmp_path):
  rec = _make_rec(seed=5)
  paths = ply.write_reconstruction_plys(tmp_path, rec)
  vis = np.asarray(rec.visible)
  xyz, rgb = ply.read_ply(paths["tracks_ply"])
  assert xyz.shape == (int(vis.sum()), 3)
  np.testing.assert_allclose(xyz, rec.tracks_world[vis], rtol=1e-6, atol=1e-6)
  _, track = np.nonzero(vis)
  dyn = np.asarray(rec.is_dynamic)[track]
  assert dyn.any() and (~dyn).any()
  assert np.all(rgb[dyn, 0] > rgb[dyn, 2]) and np.all(rgb[~dyn, 2] > rgb[~dyn, 0])  # Red dynamic, blue static.
  cams, _ = ply.read_ply(paths["cameras_ply"])
  np.testing.assert_allclose(cams, rec.c2w[:, :3, 3], rtol=1e-6, atol=1e-6)
  pts, _ = ply.read_ply(paths["points_static_ply"])
  static = ~np.asarray(rec.is_dynamic) & vis.any(0)
  np.testing.assert_allclose(pts, rec.tracks_world[0, static], rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------------------
# Plot
# ---------------------------------------------------------------------------


def _count_near(img, rgb, tol=40):
  return int((np.abs(img.astype(int) - np.asarray(rgb, int)).max(-1) < tol).sum())


def test_plot_png_written_and_not_blank(tmp_path):
  from reconstruct.export.plots import plot_reconstruction
  rec = _make_rec(seed=6)
  image = plot_reconstruction(tmp_path / "sub" / "reconstruction.png", rec)
  decoded = cv2.imread(str(tmp_path / "sub" / "reconstruction.png"), cv2.IMREAD_COLOR)
  assert decoded is not None and decoded.shape == image.shape and image.dtype == np.uint8
  np.testing.assert_array_equal(decoded[..., ::-1], image)
  assert (image < 250).any(-1).mean() > 0.01  # Something is drawn.
  assert _count_near(image[52:-58], common.STATIC_RGB) > 20  # Static points (blue), inside the panels.
  assert _count_near(image[52:-58], common.DYNAMIC_RGB) > 5  # Dynamic points (red).


@pytest.mark.parametrize("case", ["one_camera_spot", "single_point", "nothing_visible", "nan_tracks"])
def test_plot_degenerate_inputs(case):
  from reconstruct.export.plots import plot_reconstruction
  rec = _make_rec(seed=7, n=1 if case == "single_point" else 20, num_dynamic=0 if case == "single_point" else 2)
  if case == "one_camera_spot":
    c2w = np.broadcast_to(np.asarray(rec.c2w)[:1], rec.c2w.shape).copy()
    world = np.broadcast_to(np.asarray(rec.tracks_world)[:, :1], rec.tracks_world.shape).copy()
    rec = rec.replace(c2w=c2w, w2c=geometry.invert_pose(c2w), tracks_world=world)
  elif case == "nothing_visible":
    rec = rec.replace(visible=np.zeros_like(rec.visible))
  elif case == "nan_tracks":
    world = np.asarray(rec.tracks_world).copy()
    world[:, ::2] = np.nan
    rec = rec.replace(tracks_world=world)
  image = plot_reconstruction(None, rec)
  assert image.ndim == 3 and image.dtype == np.uint8 and (image < 250).any()


# ---------------------------------------------------------------------------
# Overlay video
# ---------------------------------------------------------------------------


def test_overlay_draws_visible_tracks_only_in_movement_colours():
  t, h, w = 4, 40, 50
  frames = np.full((t, h, w, 3), 128, np.uint8)
  xy = np.zeros((t, 3, 2))
  xy[:, 0] = [10.0, 10.0]  # Static track.
  xy[:, 1] = [30.0, 20.0]  # Dynamic track.
  xy[:, 2] = np.stack([np.linspace(5, 45, t), np.full(t, 32.0)], -1)  # Moving track (trail).
  visible = np.ones((t, 3), bool)
  visible[2, 1] = False
  movement = np.array([0.0, 1.0, 0.0])
  out = overlay.draw_tracks(frames, xy, visible, movement, tail=3, threshold=0.1, radius=2)
  np.testing.assert_array_equal(out[0, 10, 10], common.movement_colors(np.array([0.0]), 0.1)[0])
  np.testing.assert_array_equal(out[0, 20, 30], common.movement_colors(np.array([1.0]), 0.1)[0])
  np.testing.assert_array_equal(out[2, 18:23, 28:33], frames[2, 18:23, 28:33])  # Invisible: untouched.
  assert not np.array_equal(out[3, 32, 20], frames[3, 32, 20])  # Trail between two past positions.
  np.testing.assert_array_equal(out[0, 32, 20], frames[0, 32, 20])  # No trail before it was there.


def test_overlay_video_readable_with_t_frames(tmp_path):
  rec = _make_rec(seed=8)
  t = rec.num_frames
  frames = np.random.default_rng(0).integers(0, 80, size=(t, *IMAGE_HW, 3)).astype(np.uint8)
  path = overlay.write_tracks_video(tmp_path / "v" / "tracks.mp4", frames, _projections(rec), rec.visible,
                                    rec.movement, tail=3, fps=5)
  reader = imageio.get_reader(str(path))
  got = [frame for frame in reader]
  reader.close()
  assert len(got) == t and got[0].shape == (*IMAGE_HW, 3)
  assert not list(path.parent.glob(".*partial*"))  # The temporary file was renamed away.


# ---------------------------------------------------------------------------
# Summary and export_all
# ---------------------------------------------------------------------------


def test_summary_is_strict_json_with_nan_as_null(tmp_path):
  rec = _make_rec(seed=9)
  settings = {"model": "small", "lr": np.float32(1e-3), "bad": float("nan"), "steps": np.int64(3),
              "nested": {"inf": float("inf"), "arr": np.arange(3)}}
  path = export.write_summary(tmp_path / "summary.json", rec, settings, extra={"input": tmp_path})
  text = path.read_text()
  assert "NaN" not in text and "Infinity" not in text
  with open(path) as f:
    data = json.load(f)
  assert data["num_frames"] == rec.num_frames and data["num_tracks"] == rec.num_tracks
  assert data["num_dynamic_tracks"] == NUM_DYNAMIC
  assert data["focal_source"] == "given"
  np.testing.assert_allclose(data["K_frame0"], rec.K[0])
  assert data["reprojection"]["p90_px"] is None and data["reprojection"]["median_px"] == 0.4
  assert data["timings"]["total"] == 2.5
  assert data["windows"] == {"count": 1, "starts": [0], "size_max": rec.num_frames}
  assert data["settings"]["bad"] is None and data["settings"]["nested"] == {"inf": None, "arr": [0, 1, 2]}
  assert data["settings"]["steps"] == 3 and data["extra"]["input"] == str(tmp_path)


EXPECTED = {"reconstruction.npz", "tapvid3d_prediction.npz", "colmap", "points_static.ply", "tracks.ply",
            "cameras.ply", "reconstruction.png", "summary.json"}


def test_export_all_file_set(tmp_path):
  rec = _make_rec(seed=10)
  t = rec.num_frames
  frames = np.full((t, *IMAGE_HW, 3), 90, np.uint8)
  paths = export.export_all(tmp_path / "with", rec, frames=frames, settings={"model": "tiny"}, fps=4)
  assert {p.name for p in (tmp_path / "with").iterdir()} == EXPECTED | {"tracks.mp4"}
  assert all(p.exists() for p in paths.values()) and "video" in paths
  assert sorted(p.name for p in (tmp_path / "with" / "colmap").iterdir()) == sorted(colmap.FILES)
  xyz, vis = read_tapvid3d_prediction(paths["tapvid3d_prediction"])
  np.testing.assert_allclose(xyz, rec.tracks_cam, rtol=1e-6, atol=1e-6)
  np.testing.assert_array_equal(vis, rec.visible)
  np.testing.assert_allclose(read_reconstruction_npz(paths["reconstruction_npz"])["c2w"], rec.c2w, atol=1e-6)
  # With frames, static points take the video's colour (uniform grey 90 here).
  _, rgb = ply.read_ply(paths["points_static_ply"])
  assert len(rgb) and np.all(rgb == 90)

  paths = export.export_all(tmp_path / "without", rec)
  assert {p.name for p in (tmp_path / "without").iterdir()} == EXPECTED
  assert "video" not in paths
  # A stale video from an earlier export with frames is removed.
  export.export_all(tmp_path / "with", rec)
  assert not (tmp_path / "with" / "tracks.mp4").exists()
