"""reconstruct: the API on synthetic clips with ground truth, windows and
stitching, focal estimation, bad inputs, and the command line's outputs."""

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import reconstruct
from reconstruct import cli, intrinsics, windows
from reconstruct.export import read_reconstruction_npz
from tracks4d import geometry, metrics, synthetic
from tracks4d.io import peer_npz
from tracks4d.tracks import select_tracks

REPO = Path(__file__).resolve().parents[1]
CFG = synthetic.SyntheticConfig(num_frames=(24, 24), grid_size=8, query_stride=12)


def _clip(family="static", camera="orbit", index=0, cfg=CFG):
  return synthetic.generate_clip(cfg, 5, index, family=family, camera=camera)


def _rot_error_deg(w2c, gt_w2c):
  """Mean rotation error of each camera relative to frame 0, degrees."""
  rel = lambda w: np.einsum("tij,kj->tik", w[:, :3, :3], w[0, :3, :3])
  d = np.einsum("tji,tjk->tik", rel(np.asarray(w2c, np.float64)), rel(np.asarray(gt_w2c, np.float64)))
  return float(np.degrees(np.linalg.norm(geometry.matrix_to_axis_angle(d), axis=-1)).mean())


@pytest.fixture(scope="module")
def clip():
  return _clip()


@pytest.fixture(scope="module")
def rec(clip):
  return reconstruct.reconstruct(clip)


def test_result_shapes_and_conventions(rec, clip):
  t, n = clip.num_frames, clip.num_tracks
  assert rec.c2w.shape == (t, 4, 4) and rec.K.shape == (t, 3, 3) and rec.tracks_world.shape == (t, n, 3)
  np.testing.assert_allclose(np.einsum("tij,tjk->tik", rec.c2w, rec.w2c), np.broadcast_to(np.eye(4), (t, 4, 4)),
                             atol=1e-4)
  np.testing.assert_allclose(rec.tracks_cam, geometry.transform_points(rec.w2c, rec.tracks_world), atol=1e-3)
  np.testing.assert_array_equal(rec.visible, clip.visible)
  np.testing.assert_array_equal(rec.xy_px, clip.xy_px)
  assert rec.movement.shape == (n,) and rec.is_dynamic.shape == (n,)
  assert rec.focal_source == "given" and np.allclose(rec.K, clip.intrinsics)
  assert np.isfinite(rec.reprojection.median_px) and rec.timings.total > 0 and rec.timings.feed_forward > 0


def test_reprojection_consistent_with_k(rec):
  proj, _ = geometry.project(rec.tracks_cam.astype(np.float64), rec.K.astype(np.float64))
  err = np.linalg.norm(proj - rec.xy_px, axis=-1)[rec.visible]
  assert abs(np.median(err) - rec.reprojection.median_px) < 1e-3


def test_tracks_in_input_order(clip, rec):
  perm = np.random.default_rng(0).permutation(clip.num_tracks)
  rec_p = reconstruct.reconstruct(select_tracks(clip, perm))
  np.testing.assert_allclose(rec_p.tracks_cam[..., 2], rec.tracks_cam[:, perm, 2], rtol=1e-3, atol=1e-3)


def test_arrays_in_equal_tracks_in(clip, rec):
  out = reconstruct.reconstruct(np.asarray(clip.xy_px), visible=np.asarray(clip.visible),
                                image_hw=tuple(clip.image_hw), intrinsics=np.asarray(clip.intrinsics))
  np.testing.assert_allclose(out.c2w, rec.c2w, atol=1e-5)


def test_batch_equals_one_by_one(clip, rec):
  other = _clip("rigid", "handheld", index=1)
  both = reconstruct.reconstruct([clip, other])
  alone = reconstruct.reconstruct(other)
  np.testing.assert_allclose(both[0].c2w, rec.c2w, atol=1e-4)
  np.testing.assert_allclose(both[1].tracks_cam, alone.tracks_cam, atol=1e-3)


def test_sharded_batches_equal_single_device():
  out = subprocess.run([sys.executable, str(REPO / "tests" / "sharded_reconstruct_check.py")], cwd=REPO,
                       env={**os.environ, "JAX_PLATFORMS": "cpu"}, capture_output=True, text=True, timeout=300)
  assert out.returncode == 0 and "SHARDED_RECONSTRUCT_OK" in out.stdout, out.stderr[-3000:]


def test_bundle_adjustment_improves_cameras():
  errs = {}
  for cam in ("orbit", "pan"):
    c = _clip("static", cam, index=2)
    ff = reconstruct.reconstruct(c)
    ba = reconstruct.reconstruct(c, bundle_adjust=True)
    errs[cam] = (_rot_error_deg(ff.w2c, c.gt.w2c), _rot_error_deg(ba.w2c, c.gt.w2c))
    assert ba.timings.bundle_adjust > 0
  for cam, (before, after) in errs.items():
    assert after < 0.8 * before, (cam, errs)


def test_refined_focal_keeps_each_track_on_its_pixel():
  """With `refine_focal`, BA changes K; the camera-frame tracks are re-aimed so they
  still project where they did (as without it, BA keeps them), at the same depth."""
  c = _clip("static", "orbit", index=2)
  wrong = c.intrinsics.copy()
  wrong[..., :2, :2] *= 1.2
  ff = reconstruct.reconstruct(c, intrinsics=wrong)
  ba = reconstruct.reconstruct(c, intrinsics=wrong, bundle_adjust=True, refine_focal=True)
  assert ba.focal_source == "refined-from-given" and not np.allclose(ba.K, ff.K, rtol=1e-3)
  proj = lambda r: geometry.project(r.tracks_cam.astype(np.float64), r.K.astype(np.float64))[0]
  np.testing.assert_allclose(proj(ba), proj(ff), atol=0.05)
  np.testing.assert_allclose(ba.tracks_cam[..., 2], ff.tracks_cam[..., 2], rtol=1e-4)
  assert abs(ba.reprojection.median_px - ff.reprojection.median_px) < 0.05


def test_bundle_adjustment_rounds_relabel_static_tracks_on_a_dynamic_scene():
  """A rigid object moves in front of an orbiting camera. Under the network's
  cameras the static/dynamic split is poor; each round relabels with the refined
  cameras, and three rounds recover the cameras where one round does not."""
  c = _clip("rigid", "orbit", index=0)
  net = reconstruct.load_network(None)
  err = {name: _rot_error_deg(reconstruct.reconstruct(c, model=net, **kw).w2c, c.gt.w2c)
         for name, kw in (("ff", {}), ("one", dict(bundle_adjust=True, ba_rounds=1)),
                          ("three", dict(bundle_adjust=True)))}
  assert err["three"] < 0.25 * err["one"] and err["three"] < 0.1 * err["ff"], err


def test_finetuning_improves_cameras_on_a_static_orbit():
  """Test-time fine-tuning (the unsupervised losses, best state kept) with the
  shipped model moves the cameras towards the truth on a static scene seen
  from an orbit. (On non-rigid scenes it can move them away; BENCHMARKS.md
  measures both.) The shipped model keeps the uncorrected start on this clip, so
  this also checks that fine-tuning still trains the camera head then (it did
  not: the cameras stayed exactly the same)."""
  c = _clip("static", "orbit", index=0)
  net = reconstruct.load_network(None)
  ff = reconstruct.reconstruct(c, model=net)
  ft = reconstruct.reconstruct(c, model=net, finetune_steps=40)
  assert ft.timings.finetune > 0 and ff.timings.finetune == 0
  scale = float(np.median(np.asarray(c.gt.depth)[np.asarray(c.visible)]))
  ate = [metrics.pose_metrics(r.w2c, c.gt.w2c).ate / scale for r in (ff, ft)]
  rot = [_rot_error_deg(r.w2c, c.gt.w2c) for r in (ff, ft)]
  # Measured (run 5): ATE / median depth 0.0087 -> 0.0040, rotation error 4.1 -> 1.3 deg.
  assert ate[1] < 0.9 * ate[0], ate
  assert rot[1] < 0.5 * rot[0], rot


@pytest.mark.parametrize("t,w,o,expected", [(20, 32, 8, [0]), (32, 32, 8, [0]), (100, 32, 8, [0, 24, 48, 68]),
                                            (57, 32, 8, [0, 24, 25])])
def test_plan_windows(t, w, o, expected):
  starts = windows.plan_windows(t, w, o)
  np.testing.assert_array_equal(starts, expected)
  assert starts[-1] + min(w, t) == t


@pytest.mark.parametrize("w,o", [(1, 0), (32, 1), (32, 32)])
def test_plan_windows_rejects(w, o):
  with pytest.raises(ValueError, match="window_size|overlap"):
    windows.plan_windows(100, w, o)


def test_stitch_recovers_trajectory_from_windows_in_their_own_frames():
  """Windows cut from the truth, each moved by its own random Sim(3), stitch back
  to the truth up to one global Sim(3), with no jump at the borders."""
  c = _clip("nonrigid", "orbit", cfg=dataclasses.replace(CFG, num_frames=(100, 100)))
  rng = np.random.default_rng(0)
  c2w = geometry.invert_pose(np.asarray(c.gt.w2c, np.float64))
  xyz = np.asarray(c.gt.xyz_world, np.float64)
  vis = np.asarray(c.visible)
  wins = []
  for s in windows.plan_windows(c.num_frames, 32, 8):
    sl = slice(s, s + 32)
    scale, rot, trans = rng.uniform(0.5, 2), geometry.axis_angle_to_matrix(rng.normal(size=3)), rng.normal(size=3)
    win = windows.WindowResult(start=int(s), c2w=c2w[sl], K=np.asarray(c.intrinsics, np.float64)[sl],
                               tracks_world=xyz[sl], in_window=vis[sl].any(0), visible=vis[sl],
                               bases=np.zeros((c.num_tracks, 3, 2)), coeffs=np.ones((32, 2)),
                               gamma=np.zeros(c.num_tracks))
    wins.append(win.transformed(scale, rot, trans))
  st = windows.stitch(wins, c.num_frames)
  s, r, tr = geometry.umeyama(st.c2w[:, :3, 3], c2w[:, :3, 3])
  np.testing.assert_allclose(s * st.c2w[:, :3, 3] @ r.T + tr, c2w[:, :3, 3], atol=1e-6)
  seen = vis.any(0)
  np.testing.assert_allclose((s * st.tracks_world @ r.T + tr)[:, seen][vis[:, seen]], xyz[:, seen][vis[:, seen]],
                             atol=1e-5)


def test_long_clip_stitches_without_jumps():
  """A 400-frame clip runs in 17 windows; camera steps at window borders are like
  the steps inside windows, and the trajectory follows the truth."""
  cfg = synthetic.SyntheticConfig(num_frames=(400, 400), grid_size=4, query_stride=100, families=("static",),
                                  camera_paths=("orbit",))
  c = synthetic.generate_clip(cfg, 0, 0)
  rec = reconstruct.reconstruct(c, batch_size=16)
  assert rec.c2w.shape == (400, 4, 4) and np.isfinite(rec.tracks_world).all()
  assert len(rec.window_starts) == 17
  steps = np.linalg.norm(np.diff(rec.c2w[:, :3, 3].astype(np.float64), axis=0), axis=-1)
  border = np.zeros(len(steps), bool)
  for s in rec.window_starts[1:]:
    border[s - 1:s + 8] = True  # The overlap (8 frames) and the step into it.
  assert steps[border].max() < 1.5 * steps[~border].max(), (steps[border].max(), steps[~border].max())
  p = metrics.pose_metrics(rec.w2c, c.gt.w2c)
  scale = float(np.median(np.asarray(c.gt.depth)[np.asarray(c.gt.depth) > 0]))
  assert p.ate / scale < 0.05


def test_focal_estimated_for_rotating_camera_and_refused_for_orbit():
  pan = _clip("static", "pan", index=3, cfg=dataclasses.replace(CFG, grid_size=12))
  est = intrinsics.estimate_focal(pan)
  assert est.source == "estimated", est
  assert abs(est.focal_px / float(pan.intrinsics[0, 0, 0]) - 1) < 0.05
  orbit = _clip("static", "orbit", index=3, cfg=dataclasses.replace(CFG, grid_size=12))
  est = intrinsics.estimate_focal(orbit)
  assert est.source == "guess" and est.reason


def test_unknown_intrinsics_are_estimated_in_reconstruct():
  pan = _clip("static", "pan", index=3, cfg=dataclasses.replace(CFG, grid_size=12))
  unknown = pan.replace(intrinsics=np.broadcast_to(geometry.guess_intrinsics(tuple(pan.image_hw)),
                                                   pan.intrinsics.shape).astype(np.float32),
                        intrinsics_known=np.asarray(False))
  rec = reconstruct.reconstruct(unknown)
  assert rec.focal_source == "estimated"
  assert abs(rec.K[0, 0, 0] / float(pan.intrinsics[0, 0, 0]) - 1) < 0.05


@pytest.mark.parametrize("kwargs,match", [
    (dict(tracks=np.full((10, 5, 2), np.nan), visible=np.ones((10, 5), bool), image_hw=(64, 64)), "xy_px"),
    (dict(tracks=np.zeros((10, 5, 2)), visible=np.ones((10, 4), bool), image_hw=(64, 64)), "visible"),
    (dict(tracks=np.zeros((1, 5, 2)), visible=np.ones((1, 5), bool), image_hw=(64, 64)), "frames"),
    (dict(tracks=np.zeros((10, 5, 2))), "visible"),
    (dict(tracks=[]), "empty"),
])
def test_bad_inputs_raise_clear_errors(kwargs, match):
  with pytest.raises(ValueError, match=match):
    reconstruct.reconstruct(**kwargs)


def test_bad_options_and_missing_model(clip, tmp_path):
  with pytest.raises(ValueError, match="batch_size"):
    reconstruct.reconstruct(clip, batch_size=0)
  with pytest.raises(ValueError, match="overlap"):
    reconstruct.reconstruct(clip, overlap=40)
  with pytest.raises(ValueError, match="ba_rounds"):
    reconstruct.reconstruct(clip, bundle_adjust=True, ba_rounds=0)
  with pytest.raises(FileNotFoundError, match="does not exist"):
    reconstruct.reconstruct(clip, model=tmp_path / "nope")


def test_cli_on_peer_npz_files(tmp_path, clip):
  folder = tmp_path / "in"
  folder.mkdir()
  peer_npz.write_peer_npz(folder / "a.npz", clip)
  peer_npz.write_peer_npz(folder / "b.npz", _clip("rigid", "handheld", index=1))
  opts = reconstruct.ReconstructOptions()
  one = cli.run_input(folder / "a.npz", tmp_path / "one", opts)
  assert len(one) == 1 and np.isfinite(one[0]["extra"]["ground_truth_scores"]["abs_rel"])
  z = read_reconstruction_npz(tmp_path / "one" / "reconstruction.npz")
  assert set(z) == {"c2w", "K", "tracks_world", "tracks_cam", "visible", "movement"}
  assert z["tracks_world"].shape == (clip.num_frames, clip.num_tracks, 3)
  for name in ("tapvid3d_prediction.npz", "colmap/cameras.txt", "colmap/images.txt", "colmap/points3D.txt",
               "points_static.ply", "reconstruction.png", "summary.json"):
    assert (tmp_path / "one" / name).exists(), name
  assert not (tmp_path / "one" / "tracks.mp4").exists()
  many = cli.run_input(folder, tmp_path / "many", opts)
  assert [m["extra"]["clip"] for m in many] == ["a", "b"]
  assert (tmp_path / "many" / "b" / "reconstruction.npz").exists()


def test_cli_bad_input_files(tmp_path):
  bad = tmp_path / "bad.npz"
  np.savez(bad, something=np.zeros(3))
  with pytest.raises(ValueError, match="pred_tracks"):
    cli.run_input(bad, tmp_path / "o", reconstruct.ReconstructOptions())
  corrupt = tmp_path / "corrupt.npz"
  corrupt.write_bytes(b"not a zip file")
  with pytest.raises(ValueError, match="corrupt.npz"):
    cli.run_input(corrupt, tmp_path / "o", reconstruct.ReconstructOptions())
  with pytest.raises(FileNotFoundError, match="does not exist"):
    cli.run_input(tmp_path / "missing.mp4", tmp_path / "o", reconstruct.ReconstructOptions())


def test_cli_on_a_video(tmp_path):
  """A short rendered video: tracked (LK), reconstructed, with the overlay video."""
  from generate import multiview_data
  from generate.preview import write_video
  views = multiview_data.make_scene_views(
      multiview_data.MultiViewConfig(num_frames=12, image_hw=(96, 96), num_targets=1, grid_size=8), 0, 0)
  rgb = np.asarray(views.source_rgb)
  frames = rgb if rgb.dtype == np.uint8 else np.clip(np.round(rgb * 255), 0, 255).astype(np.uint8)
  path = write_video(tmp_path / "clip.mp4", frames, fps=8.0)
  out = cli.run_input(path, tmp_path / "out", reconstruct.ReconstructOptions(), tracker_options={"grid_size": 8})
  assert out[0]["num_frames"] == 12 and out[0]["extra"]["num_tracks"] > 0
  assert (tmp_path / "out" / "tracks.mp4").exists()
  assert out[0]["timings"]["tracking"] > 0
