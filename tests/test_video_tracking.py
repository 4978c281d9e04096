"""reconstruct.video and reconstruct.trackers: reading inputs, LK accuracy, occlusion, queries, tapnet errors and
tapnet wiring (JAX path end to end against a test double of TAPIR; the real model is not run here)."""

from __future__ import annotations

import importlib.util
import sys
import types

import cv2
import numpy as np
import pytest

from generate import multiview_data, preview
from reconstruct import video
from reconstruct.trackers import TRACKERS, lk, tapnet_tracker, track_video
from tracks4d import geometry
from tracks4d.tracks import validate

T, H, W = 12, 96, 128
SHIFT = np.array([0.73, -0.41])  # Pixels per frame (x, y).


def smooth_texture(rng: np.random.Generator, h: int, w: int, sigma: float = 2.0) -> np.ndarray:
  """(h, w) float32 random texture in [0, 255], blurred so LK has gradients at every scale."""
  tex = cv2.GaussianBlur(rng.uniform(0, 255, (h, w)).astype(np.float32), (0, 0), sigma)
  return (tex - tex.min()) / (tex.max() - tex.min()) * 255.0


def translated(tex: np.ndarray, shift, t: int, h: int, w: int, margin: int = 32) -> np.ndarray:
  """(t, h, w) float32: frame i shows `tex` moved by i * shift pixels (subpixel, bicubic)."""
  out = []
  for i in range(t):
    m = np.array([[1, 0, -margin + shift[0] * i], [0, 1, -margin + shift[1] * i]], np.float32)
    out.append(cv2.warpAffine(tex, m, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT))
  return np.stack(out)


def to_uint8_rgb(gray: np.ndarray) -> np.ndarray:
  return np.repeat(np.clip(np.round(gray), 0, 255).astype(np.uint8)[..., None], 3, axis=-1)


@pytest.fixture(scope="module")
def moving_texture() -> np.ndarray:
  """(T, H, W, 3) uint8: a random texture translated by SHIFT per frame."""
  tex = smooth_texture(np.random.default_rng(0), H + 64, W + 64)
  return to_uint8_rgb(translated(tex, SHIFT, T, H, W))


def true_positions(tracks) -> np.ndarray:
  """(t, n, 2) positions of a translation: query position + SHIFT * (frame - query frame)."""
  n = np.arange(tracks.num_tracks)
  q = tracks.xy_px[tracks.query_frame, n]
  dt = np.arange(tracks.num_frames)[:, None] - tracks.query_frame[None, :]
  return q[None] + dt[..., None] * SHIFT


# ---------------------------------------------------------------------------
# Reading videos and frame folders.
# ---------------------------------------------------------------------------


def test_video_file_round_trip_with_stride_and_max_frames(tmp_path):
  rng = np.random.default_rng(1)
  tex = smooth_texture(rng, 48 + 64, 64 + 64, sigma=4.0)
  frames = to_uint8_rgb(translated(tex, (1.0, 0.5), 8, 48, 64))
  path = preview.write_video(tmp_path / "clip.mp4", frames, fps=8.0)
  assert video.is_video_file(path) and not video.is_frame_folder(path)
  clip = video.read_video(path)
  assert clip.frames.shape == (8, 48, 64, 3) and clip.frames.dtype == np.uint8
  assert clip.fps == pytest.approx(8.0) and clip.source == str(path) and clip.image_hw == (48, 64)
  # H.264 is lossy, but close on smooth content.
  assert np.abs(clip.frames.astype(float) - frames).mean() < 6.0
  part = video.read_video(path, max_frames=3, stride=2)
  assert part.num_frames == 3 and part.fps == pytest.approx(4.0)
  np.testing.assert_array_equal(part.frames, clip.frames[[0, 2, 4]])
  np.testing.assert_array_equal(video.load_video(path).frames, clip.frames)


def test_frame_folder_natural_order_grayscale_and_rgb_order(tmp_path):
  for i in range(12):  # 0.png .. 11.png: a plain sort would put 10.png before 2.png.
    image = np.full((20, 30, 3), 10 * i, np.uint8)
    if i == 3:
      cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((20, 30), 30, np.uint8))  # Grayscale file.
    else:
      cv2.imwrite(str(tmp_path / f"{i}.png"), image)
  (tmp_path / "README.txt").write_text("not a frame")
  clip = video.read_frame_folder(tmp_path)
  assert clip.frames.shape == (12, 20, 30, 3) and clip.frames.dtype == np.uint8 and clip.fps == 30.0
  np.testing.assert_array_equal(clip.frames[:, 0, 0, 0], 10 * np.arange(12))
  assert (clip.frames[3] == 30).all()  # Gray became RGB.
  assert video.is_frame_folder(tmp_path) and not video.is_video_file(tmp_path)
  assert video.read_frame_folder(tmp_path, stride=5, fps=24.0).fps == pytest.approx(4.8)
  assert video.load_video(tmp_path, max_frames=4).num_frames == 4
  # Channel order: OpenCV writes BGR, we return RGB.
  rgb = tmp_path / "rgb"
  rgb.mkdir()
  for name in ("a1.jpg", "a2.png"):
    bgr = np.zeros((8, 8, 3), np.uint8)
    bgr[..., 2] = 200  # Red in OpenCV's BGR.
    cv2.imwrite(str(rgb / name), bgr)
  clip = video.read_frame_folder(rgb)
  assert clip.frames[..., 0].min() > 180 and clip.frames[..., 2].max() < 30


def test_reading_errors_name_the_path(tmp_path):
  missing = tmp_path / "nope.mp4"
  for read in (video.read_video, video.read_frame_folder, video.load_video):
    with pytest.raises(FileNotFoundError, match="nope.mp4"):
      read(missing)
  corrupt = tmp_path / "corrupt.mp4"
  corrupt.write_bytes(np.random.default_rng(0).bytes(4096))
  with pytest.raises(ValueError, match="corrupt.mp4.*could not be opened"):
    video.read_video(corrupt)
  single = preview.write_video(tmp_path / "single.mp4", np.zeros((1, 16, 16, 3), np.uint8))
  with pytest.raises(ValueError, match="single.mp4.*at least 2 frames"):
    video.read_video(single)
  empty = tmp_path / "empty"
  empty.mkdir()
  with pytest.raises(ValueError, match="empty.*no .png"):
    video.read_frame_folder(empty)
  one = tmp_path / "one"
  one.mkdir()
  cv2.imwrite(str(one / "0.png"), np.zeros((8, 8, 3), np.uint8))
  with pytest.raises(ValueError, match="one.*at least 2 frames"):
    video.read_frame_folder(one)
  mixed = tmp_path / "mixed"
  mixed.mkdir()
  cv2.imwrite(str(mixed / "0.png"), np.zeros((8, 8, 3), np.uint8))
  cv2.imwrite(str(mixed / "1.png"), np.zeros((8, 9, 3), np.uint8))
  with pytest.raises(ValueError, match=r"1.png: frame size \(8, 9\).*same size"):
    video.read_frame_folder(mixed)
  broken = tmp_path / "broken"
  broken.mkdir()
  cv2.imwrite(str(broken / "0.png"), np.zeros((8, 8, 3), np.uint8))
  (broken / "1.png").write_bytes(b"not a png")
  with pytest.raises(ValueError, match="1.png: could not be read as an image"):
    video.read_frame_folder(broken)
  with pytest.raises(ValueError, match="is a folder"):
    video.read_video(mixed)
  with pytest.raises(ValueError, match="stride"):
    video.read_frame_folder(mixed, stride=0)
  with pytest.raises(ValueError, match="at least 2 frames"):
    video.Video(np.zeros((1, 4, 4, 3), np.uint8), 30.0, "memory")


def test_as_frames_accepts_float_and_grayscale_and_rejects_bad_input():
  f = np.linspace(0, 1, 2 * 4 * 5).reshape(2, 4, 5)
  out = video.as_frames(f)
  assert out.shape == (2, 4, 5, 3) and out.dtype == np.uint8 and out.max() == 255
  with pytest.raises(ValueError, match=r"\[0, 1\]"):
    video.as_frames(f * 2)
  with pytest.raises(ValueError, match="at least 2 frames"):
    video.as_frames(np.zeros((1, 4, 5, 3), np.uint8))


# ---------------------------------------------------------------------------
# Lucas-Kanade.
# ---------------------------------------------------------------------------


def test_lk_recovers_a_known_subpixel_translation(moving_texture):
  tracks = lk.track_lk(moving_texture, lk.LKConfig(grid_size=10), progress=False)
  err = np.linalg.norm(tracks.xy_px - true_positions(tracks), axis=-1)
  print(f"LK translation: n={tracks.num_tracks}, visible {tracks.visible.mean():.3f}, median error "
        f"{np.median(err[tracks.visible]):.3f} px, p90 {np.percentile(err[tracks.visible], 90):.3f} px")
  assert np.median(err[tracks.visible]) < 0.3
  assert np.percentile(err[tracks.visible], 90) < 0.5
  assert tracks.visible.mean() > 0.9


def test_lk_queries_at_several_frames_are_valid_and_deterministic(moving_texture):
  cfg = lk.LKConfig(grid_size=8, min_query_distance_px=0.0)
  tracks = lk.track_lk(moving_texture, cfg, progress=False)
  validate(tracks)
  frames = lk.query_frames(T, 3)
  np.testing.assert_array_equal(frames, [0, 6, 11])
  np.testing.assert_array_equal(tracks.query_frame, np.repeat(frames, 64))
  grid = lk.grid_points((H, W), 8, cfg.border_px)
  n = np.arange(tracks.num_tracks)
  np.testing.assert_allclose(tracks.xy_px[tracks.query_frame, n], np.tile(grid, (3, 1)), atol=1e-5)
  assert tracks.visible[tracks.query_frame, n].all()
  assert np.isfinite(tracks.xy_px).all()
  np.testing.assert_allclose(tracks.intrinsics, np.broadcast_to(geometry.guess_intrinsics((H, W)), (T, 3, 3)))
  assert not bool(tracks.intrinsics_known) and tuple(tracks.image_hw) == (H, W)
  again = lk.track_lk(moving_texture, cfg, progress=False)
  np.testing.assert_array_equal(again.xy_px, tracks.xy_px)
  np.testing.assert_array_equal(again.visible, tracks.visible)
  # With the default spacing rule, a later query is never near a track already visible at its frame.
  dedup = track_video(moving_texture, "lk", progress=False, grid_size=8)
  assert (dedup.query_frame == 0).sum() == 64 and dedup.num_tracks < 3 * 64
  min_dist = 0.5 * lk.grid_spacing((H, W), 8, cfg.border_px)
  for j in np.flatnonzero(dedup.query_frame > 0):
    f = dedup.query_frame[j]
    earlier = dedup.visible[f] & (dedup.query_frame < f)
    assert np.linalg.norm(dedup.xy_px[f, earlier] - dedup.xy_px[f, j], axis=-1).min() >= min_dist


def test_lk_custom_queries_keep_the_callers_order(moving_texture):
  rng = np.random.default_rng(3)
  qf = rng.integers(0, T, 40)
  qxy = rng.uniform([20, 20], [W - 20, H - 20], (40, 2)).astype(np.float32)
  tracks = track_video(moving_texture, "lk", progress=False, query_xy_px=qxy, query_frame=qf)
  np.testing.assert_array_equal(tracks.query_frame, qf)
  np.testing.assert_allclose(tracks.xy_px[qf, np.arange(40)], qxy)
  err = np.linalg.norm(tracks.xy_px - true_positions(tracks), axis=-1)
  assert np.median(err[tracks.visible]) < 0.3
  with pytest.raises(ValueError, match="query_xy_px.*inside the image"):
    lk.track_lk(moving_texture, query_xy_px=[[W + 3.0, 5.0]], query_frame=[0], progress=False)
  with pytest.raises(ValueError, match="query_frame"):
    lk.track_lk(moving_texture, query_xy_px=[[5.0, 5.0]], query_frame=[T], progress=False)


def test_lk_loses_tracks_under_an_occluder():
  """A square of another texture covers part of the moving background from frame 6 on."""
  rng = np.random.default_rng(5)
  frames = translated(smooth_texture(rng, H + 64, W + 64), SHIFT, T, H, W)
  occluder = smooth_texture(rng, 48, 48)
  y0, x0, side, switch = 24, 40, 48, 6
  frames[switch:, y0:y0 + side, x0:x0 + side] = occluder
  frames = to_uint8_rgb(frames)
  tracks = lk.track_lk(frames, lk.LKConfig(grid_size=15), progress=False)
  n = np.arange(tracks.num_tracks)
  q = tracks.xy_px[tracks.query_frame, n]
  # Frame-0 queries whose point lies well inside the square at the switch frame.
  at_switch = q + switch * SHIFT
  inside = np.all((at_switch >= [x0 + 8, y0 + 8]) & (at_switch <= [x0 + side - 9, y0 + side - 9]), -1)
  under = inside & (tracks.query_frame == 0)
  assert under.sum() >= 15
  assert not tracks.visible[switch:, under].any()  # Lost from the switch on ...
  assert tracks.visible[:switch, under].mean() > 0.95  # ... and tracked before.
  # A lost track keeps its last known position, and its earlier positions are right.
  np.testing.assert_allclose(tracks.xy_px[switch:, under], np.broadcast_to(tracks.xy_px[switch - 1, under],
                                                                          (T - switch, under.sum(), 2)))
  err = np.linalg.norm(tracks.xy_px - true_positions(tracks), axis=-1)[:switch, under]
  assert np.median(err) < 0.3
  # Queries on the (static) occluder are lost going back past its appearance.
  on_occ = (tracks.query_frame >= switch) & np.all((q >= [x0 + 10, y0 + 10]) & (q <= [x0 + side - 11, y0 + side - 11]),
                                                   -1)
  assert on_occ.sum() >= 10
  assert not tracks.visible[:switch, on_occ].any() and tracks.visible[switch:, on_occ].mean() > 0.95


@pytest.fixture(scope="module")
def rendered_clips():
  cfg = multiview_data.MultiViewConfig(num_frames=12, image_hw=(96, 96), num_targets=1, grid_size=10)
  return [multiview_data.make_scene_views(cfg, seed=0, index=i) for i in range(4)]


def test_lk_matches_rendered_ground_truth(rendered_clips):
  errors, agree, precision, recall = [], [], [], []
  for views in rendered_clips:
    gt = views.source_tracks()
    n = np.arange(gt.num_tracks)
    ok = gt.visible[gt.query_frame, n]  # Queries on visible points (all, for exact tracks).
    q = gt.query_frame[ok]
    tracks = lk.track_lk(views.source_rgb, progress=False, query_xy_px=gt.xy_px[q, n[ok]], query_frame=q)
    gv = gt.visible[:, ok]
    both = tracks.visible & gv
    errors.append(np.linalg.norm(tracks.xy_px - gt.xy_px[:, ok], axis=-1)[both])
    agree.append((tracks.visible == gv).mean())
    precision.append(both.sum() / tracks.visible.sum())
    recall.append(both.sum() / gv.sum())
  err = np.concatenate(errors)
  print("LK vs rendered truth: median error per clip", [round(float(np.median(e)), 3) for e in errors],
        f"pooled {np.median(err):.3f} px, p90 {np.percentile(err, 90):.3f} px; visibility agreement",
        np.round(agree, 3), "precision", np.round(precision, 3), "recall", np.round(recall, 3))
  assert np.median(err) < 0.5
  assert max(np.median(e) for e in errors) < 1.5
  assert min(precision) > 0.9 and np.mean(recall) > 0.75 and np.mean(agree) > 0.8


def test_lk_config_and_registry_errors(moving_texture):
  with pytest.raises(ValueError, match="win_size"):
    lk.LKConfig(win_size=20)
  with pytest.raises(ValueError, match="fb_threshold_px"):
    lk.LKConfig(fb_threshold_px=0.0)
  with pytest.raises(ValueError, match="border_px"):
    lk.track_lk(moving_texture[:, :10, :10], lk.LKConfig(border_px=8.0), progress=False)
  with pytest.raises(ValueError, match=r"unknown tracker 'raft'.*\['lk', 'tapnet'\]"):
    track_video(moving_texture, "raft")
  with pytest.raises(ValueError, match="unknown option.*gridsize"):
    track_video(moving_texture, "lk", gridsize=3)
  assert TRACKERS == ("lk", "tapnet")
  tracks = track_video(video.Video(moving_texture, 30.0, "memory clip"), "lk", progress=False, grid_size=4,
                       num_query_frames=1)
  assert tracks.num_tracks == 16 and (tracks.query_frame == 0).all()


# ---------------------------------------------------------------------------
# tapnet.
# ---------------------------------------------------------------------------


@pytest.mark.skipif(tapnet_tracker.tapnet_available(), reason="tapnet is installed here")
def test_tapnet_missing_gives_install_instructions(moving_texture, tmp_path):
  with pytest.raises(ImportError) as info:
    track_video(moving_texture, "tapnet", progress=False, checkpoint=str(tmp_path / "bootstapir_checkpoint_v2.npy"))
  message = str(info.value)
  assert isinstance(info.value, tapnet_tracker.TapnetUnavailableError)
  assert "not on the Python package index" in message
  assert "pip install git+https://github.com/google-deepmind/tapnet" in message
  assert "--tracker=lk" in message and "--tapnet_checkpoint" in message


@pytest.fixture
def fake_tapnet(monkeypatch):
  """Makes `import tapnet` succeed (an empty module) for the checkpoint and output paths."""
  monkeypatch.setitem(sys.modules, "tapnet", types.ModuleType("tapnet"))


def test_tapnet_checkpoint_errors_name_the_path(fake_tapnet, moving_texture, tmp_path):
  with pytest.raises(ValueError, match="--tapnet_checkpoint"):
    track_video(moving_texture, "tapnet", progress=False)
  with pytest.raises(FileNotFoundError, match="missing.npy"):
    track_video(moving_texture, "tapnet", progress=False, checkpoint=str(tmp_path / "missing.npy"))
  odd = tmp_path / "model.onnx"
  odd.write_bytes(b"x")
  with pytest.raises(ValueError, match="model.onnx.*unknown tapnet checkpoint type"):
    track_video(moving_texture, "tapnet", progress=False, checkpoint=str(odd))
  corrupt = tmp_path / "tapir_checkpoint.npy"
  corrupt.write_bytes(np.random.default_rng(0).bytes(1000))
  with pytest.raises(ValueError, match="tapir_checkpoint.npy: could not be read as a tapnet JAX checkpoint"):
    track_video(moving_texture, "tapnet", progress=False, checkpoint=str(corrupt))
  assert tapnet_tracker.model_kind(tapnet_tracker.TapnetConfig(), corrupt) == "tapir"
  assert tapnet_tracker.model_kind(tapnet_tracker.TapnetConfig(), tmp_path / "bootstapir_v2.pt") == "bootstapir"


def test_tapnet_outputs_become_tracks_in_our_pixel_convention(fake_tapnet, moving_texture, tmp_path, monkeypatch):
  """A stand-in model that moves every query by SHIFT per frame, in tapnet's raster coordinates at 256 x 256."""
  ckpt = tmp_path / "bootstapir_checkpoint_v2.npy"
  ckpt.write_bytes(b"unused by the stand-in")
  seen = {}

  def fake_predictor(path, kind, cfg):
    seen.update(path=path, kind=kind)

    def predict(video_in, queries):
      seen.update(video=video_in, queries=queries)
      t = video_in.shape[1]
      qt, qy, qx = queries[0, :, 0], queries[0, :, 1], queries[0, :, 2]
      sx, sy = 256 / W, 256 / H  # Raster scale; a pixel shift scales the same way.
      dt = np.arange(t)[None, :] - qt[:, None]
      tracks = np.stack([qx[:, None] + dt * SHIFT[0] * sx, qy[:, None] + dt * SHIFT[1] * sy], -1)
      occ = np.where(dt < -8, 5.0, -5.0)  # Occluded long before the query frame.
      return dict(tracks=tracks[None], occlusion=occ[None], expected_dist=np.full_like(occ, -5.0)[None])

    return predict

  monkeypatch.setattr(tapnet_tracker, "_jax_predictor", fake_predictor)
  tracks = track_video(moving_texture, "tapnet", progress=False, checkpoint=str(ckpt), grid_size=6)
  assert seen["kind"] == "bootstapir" and seen["video"].shape == (1, T, 256, 256, 3)
  assert -1.0 <= seen["video"].min() and seen["video"].max() <= 1.0
  # Queries as (t, y, x) raster: the centre of pixel (0, 0) is raster (0.5, 0.5) before scaling.
  grid = lk.grid_points((H, W), 6, 8.0)
  np.testing.assert_allclose(seen["queries"][0, :36, 1:], (grid[:, ::-1] + 0.5) * [256 / H, 256 / W], rtol=1e-6)
  validate(tracks)
  np.testing.assert_array_equal(tracks.query_frame, np.repeat([0, 6, 11], 36))
  err = np.linalg.norm(tracks.xy_px - true_positions(tracks), axis=-1)
  assert err.max() < 1e-3
  dt = np.arange(T)[:, None] - tracks.query_frame[None]
  inside = geometry.in_image(tracks.xy_px, np.array([H, W]))
  np.testing.assert_array_equal(tracks.visible, (dt >= -8) & inside)
  assert not bool(tracks.intrinsics_known)


# ---------------------------------------------------------------------------
# tapnet JAX path, end to end, with a TEST DOUBLE of the model.
#
# Neither tapnet nor dm-haiku is installed here (tapnet is not on the package
# index), so the real TAPIR / BootsTAPIR has NOT been run by these tests. What
# they pin is OUR side of tapnet's documented interface: the checkpoint file,
# the constructor settings, the haiku transform / apply call, the input
# contract (video and query_points) and the conversion of the outputs. The
# double's outputs come from the known motion of the clip, not from a network.
# ---------------------------------------------------------------------------

# A short non-square clip, far from 256 x 256, so that the x and y raster scales
# differ at every model resolution tested.
CT, CH, CW = 8, 72, 112
_TEX_PAD = 96  # The texture is (CH + pad, CW + pad): frames never see past its border.


def clip_motion(i: int) -> np.ndarray:
  """(2, 3) affine of frame i, texture pixel u -> frame pixel p (our convention, pixel centres at integers).

  p = c + k_i R(theta_i) (u - c_tex) + i * shift: a zoom and rotation about the
  image centre plus a drift. Not a translation on purpose: under a translation
  a +-0.5 px convention error made symmetrically on the way in and out cancels;
  under a zoom / rotation it does not (dropping the +0.5 both ways errs by 0.26 px
  on this clip; the right conversion by ~1e-5 px).
  """
  k, th = 1.0 + 0.04 * i, 0.03 * i
  a = k * np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
  c = np.array([(CW - 1) / 2, (CH - 1) / 2])
  c_tex = np.array([(CW + _TEX_PAD - 1) / 2, (CH + _TEX_PAD - 1) / 2])
  b = c - a @ c_tex + i * np.array([0.6, -0.35])
  return np.concatenate([a, b[:, None]], 1)


def true_trajectories(xy_px: np.ndarray, frame: np.ndarray, t: int) -> np.ndarray:
  """(t, n, 2): where the points xy_px (n, 2), seen at frames `frame` (n,), are in every frame (our pixels)."""
  m = np.stack([clip_motion(i) for i in range(t)])  # (t, 2, 3)
  a, b = m[..., :2], m[..., 2]
  u = np.einsum("nij,nj->ni", np.linalg.inv(a[frame]), xy_px - b[frame])  # Texture coordinates (n, 2).
  return np.einsum("tij,nj->tni", a, u) + b[:, None]


@pytest.fixture(scope="module")
def zooming_clip() -> np.ndarray:
  """(CT, CH, CW, 3) uint8: a smooth texture under `clip_motion`."""
  tex = smooth_texture(np.random.default_rng(1), CH + _TEX_PAD, CW + _TEX_PAD, sigma=3.0)
  # warpAffine without WARP_INVERSE_MAP takes the source -> destination map: dst(M u) = tex(u).
  gray = np.stack([cv2.warpAffine(tex, clip_motion(i), (CW, CH), flags=cv2.INTER_CUBIC,
                                  borderMode=cv2.BORDER_REFLECT) for i in range(CT)])
  return to_uint8_rgb(gray)


def oracle_logits(n: int, t: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(n, t) occlusion and expected_dist logits of the double, and the visibility they mean.

  Tracks n % 3 == 1 are occluded in frames 2-4 (occlusion logit); tracks
  n % 3 == 2 are uncertain in frames 5-6 (expected_dist logit); tracks
  n % 3 == 0 have both logits at -0.5 in frame 7: each alone says 'visible'
  (p = 0.62), but tapnet's product rule gives 0.62^2 = 0.39 < 0.5, invisible.
  """
  occ = np.full((n, t), -6.0, np.float32)
  dist = np.full((n, t), -6.0, np.float32)
  k = np.arange(n) % 3
  occ[k == 1, 2:5] = 6.0
  dist[k == 2, 5:7] = 6.0
  occ[k == 0, 7:8] = dist[k == 0, 7:8] = -0.5
  visible = np.ones((n, t), bool)
  visible[k == 1, 2:5] = visible[k == 2, 5:7] = visible[k == 0, 7:8] = False
  return occ, dist, visible


def _bilinear(img: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
  """img (h, w) float32 sampled at float pixel indices (x, y) (n,)."""
  return cv2.remap(img, x.astype(np.float32)[:, None], y.astype(np.float32)[:, None], cv2.INTER_LINEAR,
                   borderMode=cv2.BORDER_REPLICATE)[:, 0]


class _OracleTAPIR:
  """TEST DOUBLE of `tapnet.models.tapir_model.TAPIR` (JAX); the real network is not run.

  The constructor has the real keyword names (tapnet's TAPIR.__init__), so a
  misspelt setting fails as it would with tapnet; each instance records its
  kwargs. A call checks tapnet's documented input contract on the concrete
  arrays (through `jax.pure_callback`, as the tracker jit-compiles the apply)
  and answers with the clip's TRUE motion in tapnet's raster coordinates:
  raster = pixel + 0.5, scaled by (model size / image size) per axis.
  """

  instances: list = []
  clip: np.ndarray = None  # (t, h, w, 3) uint8 frames the test passes to the tracker.
  calls: list = []

  def __init__(self, bilinear_interp_with_depthwise_conv=False, num_pips_iter=4, pyramid_level=1,
               mixer_hidden_dim=512, num_mixer_blocks=12, mixer_kernel_shape=3, patch_size=7,
               softmax_temperature=20.0, use_causal_conv=False, parallelize_query_extraction=False,
               initial_resolution=(256, 256), blocks_per_group=(2, 2, 2, 2), extra_convs=False,
               extra_convs_kwargs=None, feature_extractor_chunk_size=None, name="tapir", **unknown):
    assert not unknown, f"not a tapnet TAPIR constructor argument: {sorted(unknown)}"
    kwargs = dict(locals())
    kwargs.pop("self"), kwargs.pop("unknown")
    self.kwargs = kwargs
    type(self).instances.append(self)

  def __call__(self, video, is_training, query_points, query_chunk_size=None, get_query_feats=False,
               refinement_resolutions=None, feature_grids=None):
    import jax

    assert is_training is False and not get_query_feats and refinement_resolutions is None
    _, t, rh, rw, _ = video.shape
    n = query_points.shape[1]
    self.query_chunk_size = query_chunk_size
    out_shapes = dict(tracks=jax.ShapeDtypeStruct((1, n, t, 2), np.float32),
                      occlusion=jax.ShapeDtypeStruct((1, n, t), np.float32),
                      expected_dist=jax.ShapeDtypeStruct((1, n, t), np.float32))
    return jax.pure_callback(self._answer, out_shapes, video, query_points)

  def _answer(self, video, query_points) -> dict:
    video, query_points = np.asarray(video), np.asarray(query_points)
    clip = type(self).clip
    t, h, w = clip.shape[:3]
    rh, rw = self.kwargs["initial_resolution"]
    # The input contract (tapnet's colab): (1, t, H, W, 3) float32 in [-1, 1] at the model resolution.
    assert video.shape == (1, t, rh, rw, 3) and video.dtype == np.float32, (video.shape, video.dtype)
    assert video.min() >= -1.0 and video.max() <= 1.0
    assert video.min() < -0.5 and video.max() > 0.5  # Spans [-1, 1], not [0, 1].
    # query_points (1, n, 3) float32 as (t, y, x): integer frames, raster positions inside the model image.
    assert query_points.ndim == 3 and query_points.shape[::2] == (1, 3) and query_points.dtype == np.float32
    qt, qy, qx = query_points[0].T
    assert (qt == np.round(qt)).all() and qt.min() >= 0 and qt.max() <= t - 1
    assert (qy > 0).all() and (qy < rh).all() and (qx > 0).all() and (qx < rw).all()
    sx, sy = rw / w, rh / h  # Raster units per image pixel.
    q_px = np.stack([qx / sx - 0.5, qy / sy - 0.5], -1)  # Raster -> our pixels (pixel centres at +0.5).
    traj = true_trajectories(q_px, qt.astype(int), t)  # (t, n, 2) our pixels: the known truth.
    raster = (traj + 0.5) * [sx, sy]
    # The video is this clip, resized, aligned with the queries: sample both along the true trajectories.
    inside = geometry.in_image(traj, np.array([h, w]))
    for i in range(t):
      ours = _bilinear(video[0, i, :, :, 0], raster[i, :, 0] - 0.5, raster[i, :, 1] - 0.5)
      truth = _bilinear(clip[i, :, :, 0].astype(np.float32) / 127.5 - 1.0, traj[i, :, 0], traj[i, :, 1])
      assert np.abs(ours - truth)[inside[i]].mean() < 0.01, f"frame {i}: the video does not match the clip"
    occ, dist, _ = oracle_logits(len(q_px), t)
    type(self).calls.append(dict(video_shape=video.shape, query_points=query_points))
    return dict(tracks=np.swapaxes(raster, 0, 1)[None].astype(np.float32), occlusion=occ[None],
                expected_dist=dist[None])


@pytest.fixture
def tapnet_double(monkeypatch, zooming_clip):
  """Installs the test double as `tapnet.models.tapir_model` (sys.modules only, undone after the test).

  Also installs a minimal TEST DOUBLE of `haiku` when dm-haiku is not
  importable: `transform_with_state(f).apply(params, state, rng, *args)`
  returns (f(*args), state), and records what params / state reached apply.
  """
  seen = {}
  tapnet = types.ModuleType("tapnet")
  models = types.ModuleType("tapnet.models")
  tapir_model = types.ModuleType("tapnet.models.tapir_model")
  tapir_model.TAPIR = _OracleTAPIR
  tapnet.models, models.tapir_model = models, tapir_model
  for name, module in (("tapnet", tapnet), ("tapnet.models", models), ("tapnet.models.tapir_model", tapir_model)):
    monkeypatch.setitem(sys.modules, name, module)
  monkeypatch.setattr(_OracleTAPIR, "instances", [])
  monkeypatch.setattr(_OracleTAPIR, "calls", [])
  monkeypatch.setattr(_OracleTAPIR, "clip", zooming_clip)

  if importlib.util.find_spec("haiku") is None:
    import jax

    def transform_with_state(f):  # TEST DOUBLE of hk.transform_with_state (apply only).
      def apply(params, state, rng, *args):
        shapes = lambda tree: jax.tree_util.tree_map(lambda a: (tuple(a.shape), str(a.dtype)), tree)
        seen.update(params=shapes(params), state=shapes(state), rng_shape=tuple(np.shape(rng)))
        return f(*args), state

      return types.SimpleNamespace(apply=apply)

    haiku = types.ModuleType("haiku")  # TEST DOUBLE of dm-haiku.
    haiku.transform_with_state = transform_with_state
    monkeypatch.setitem(sys.modules, "haiku", haiku)
  return seen


def _write_checkpoint(path) -> dict:
  """A .npy checkpoint as tapnet ships them: np.save of {'params': {...}, 'state': {...}} (pickled)."""
  ckpt = {"params": {"tapir/~/resnet/conv": {"w": np.zeros((3, 3, 3, 8), np.float32),
                                              "b": np.zeros((8,), np.float32)}},
          "state": {"tapir/~/resnet/norm": {"mean": np.zeros((1, 8), np.float32)}}}
  np.save(path, ckpt, allow_pickle=True)
  return ckpt


@pytest.mark.parametrize("ckpt_name, resolution_hw, expected_kwargs", [
    ("bootstapir_checkpoint_v2.npy", (256, 256),
     dict(bilinear_interp_with_depthwise_conv=False, pyramid_level=1, extra_convs=True, softmax_temperature=10.0,
          initial_resolution=(256, 256))),
    ("bootstapir_checkpoint_v2.npy", (128, 192),
     dict(bilinear_interp_with_depthwise_conv=False, pyramid_level=1, extra_convs=True, softmax_temperature=10.0,
          initial_resolution=(128, 192))),
    ("tapir_checkpoint_panning.npy", (256, 256),
     dict(bilinear_interp_with_depthwise_conv=False, pyramid_level=0, extra_convs=False, softmax_temperature=20.0,
          initial_resolution=(256, 256))),
])
def test_tapnet_jax_path_end_to_end_with_an_oracle_double(tapnet_double, zooming_clip, tmp_path, ckpt_name,
                                                          resolution_hw, expected_kwargs):
  """track_video(..., 'tapnet') through the JAX path, with a TEST DOUBLE of TAPIR (see `_OracleTAPIR`).

  This pins our side of tapnet's documented interface (checkpoint, constructor
  settings chosen by 'auto' from the file name, haiku apply, video / query
  contract, raster <-> pixel conversion both ways on a non-square image,
  visibility rule, track order). The real TAPIR / BootsTAPIR model has NOT
  been run here: tapnet and dm-haiku are not installed.
  """
  ckpt = _write_checkpoint(tmp_path / ckpt_name)
  grid_size = 5
  tracks = track_video(zooming_clip, "tapnet", progress=False, checkpoint=str(tmp_path / ckpt_name),
                       grid_size=grid_size, resolution_hw=resolution_hw, query_chunk_size=16)

  # Constructor: 'auto' picked the kind from the file name; a non-default resolution is initial_resolution.
  (model,) = _OracleTAPIR.instances  # jit traces the apply once.
  assert {k: model.kwargs[k] for k in expected_kwargs} == expected_kwargs
  assert model.query_chunk_size == 16
  if "params" in tapnet_double:  # The haiku double saw the checkpoint's params and state, in their slots.
    shapes = lambda tree: {m: {k: (v.shape, str(v.dtype)) for k, v in d.items()} for m, d in tree.items()}
    assert tapnet_double["params"] == shapes(ckpt["params"]) and tapnet_double["state"] == shapes(ckpt["state"])
    assert tapnet_double["rng_shape"] in ((2,), ())  # A raw uint32 key or a typed key.

  # Queries: the grid at the query frames, by query frame then row by row, at (t, y, x) raster positions.
  (call,) = _OracleTAPIR.calls
  assert call["video_shape"] == (1, CT) + tuple(resolution_hw) + (3,)
  grid = lk.grid_points((CH, CW), grid_size, 8.0)
  qframes = lk.query_frames(CT, 3)
  g, n = len(grid), len(grid) * len(qframes)
  rh, rw = resolution_hw
  expected_q = np.concatenate([np.repeat(qframes, g)[:, None],
                               (np.tile(grid, (len(qframes), 1))[:, ::-1] + 0.5) * [rh / CH, rw / CW]], -1)
  np.testing.assert_allclose(call["query_points"][0], expected_q, rtol=0, atol=1e-4)

  validate(tracks)
  assert tracks.xy_px.shape == (CT, n, 2) and tracks.image_hw.tolist() == [CH, CW]
  np.testing.assert_array_equal(tracks.query_frame, np.repeat(qframes, g))
  np.testing.assert_allclose(tracks.xy_px[tracks.query_frame, np.arange(n)], np.tile(grid, (len(qframes), 1)),
                             atol=1e-5)
  # Positions: the clip's true trajectories, in our pixels, to well under a pixel (the double is exact, so
  # any convention slip -- a missing +0.5, swapped x / y scales -- shows as >= ~0.1 px).
  truth = true_trajectories(tracks.xy_px[tracks.query_frame, np.arange(n)], tracks.query_frame, CT)
  err = np.linalg.norm(tracks.xy_px - truth, axis=-1)
  assert err.max() < 0.05, f"max error {err.max():.4f} px"
  # Visibility: the double's logits under tapnet's product rule, invisible outside the image, and visible at
  # every query frame whatever the logits say.
  _, _, vis = oracle_logits(n, CT)
  expected_vis = vis.T & geometry.in_image(truth, np.array([CH, CW]))
  expected_vis[tracks.query_frame, np.arange(n)] = True
  assert not vis.T[tracks.query_frame, np.arange(n)].all()  # The forcing is exercised: the logits say otherwise.
  np.testing.assert_array_equal(tracks.visible, expected_vis)
  assert not bool(tracks.intrinsics_known)
