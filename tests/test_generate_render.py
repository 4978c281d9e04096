"""generate.scene / render / multiview_data: exact depth and tracks, motion kinds, scene views, bad input."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from generate import cameras, multiview_data, render, scene
from generate.cameras import Trajectory
from tracks4d import geometry

T, HW = 8, (32, 40)


@pytest.fixture(scope="module")
def samples():
  return [scene.random_scene(np.random.default_rng(i), T, HW) for i in range(4)]


def world_points(frames: render.Frames, traj: Trajectory) -> np.ndarray:
  """(t, h, w, 3) world points of the pixels' centres at their depth."""
  t, h, w = frames.depth.shape
  ys, xs = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
  xy = np.stack([xs.ravel(), ys.ravel()], -1).astype(np.float64)
  out = []
  for i in range(t):
    cam = geometry.unproject(xy, np.asarray(frames.depth[i], np.float64).ravel(), np.asarray(traj.intrinsics[i],
                                                                                             np.float64))
    out.append(geometry.transform_points(geometry.invert_pose(np.asarray(traj.w2c[i], np.float64)), cam))
  return np.stack(out).reshape(t, h, w, 3)


def test_render_is_exact_on_room_and_objects(samples):
  for s in samples:
    frames = render.render(s.scene, s.source)
    rgb, depth, sid = np.asarray(frames.rgb), np.asarray(frames.depth), np.asarray(frames.surface_id)
    assert rgb.shape == (T,) + HW + (3,) and depth.shape == (T,) + HW and sid.shape == (T,) + HW
    assert rgb.min() >= 0 and rgb.max() <= 1 and np.isfinite(depth).all() and depth.min() > 0
    pts = world_points(frames, s.source)
    floor = sid == 3
    assert floor.mean() > 0.1
    np.testing.assert_allclose(pts[floor][:, 1], 0.0, atol=1e-3)  # The floor is the plane y = 0.
    lo, hi = np.asarray(s.scene.room_min), np.asarray(s.scene.room_max)
    assert (pts > lo - 1e-2).all() and (pts < hi + 1e-2).all()
    lin, centre, kind = np.asarray(s.scene.obj_linear), np.asarray(s.scene.obj_centre), np.asarray(s.scene.obj_kind)
    for i in range(T):
      for j in np.unique(sid[i][sid[i] >= scene.NUM_FACES]) - scene.NUM_FACES:
        u = (pts[i][sid[i] == j + scene.NUM_FACES] - centre[i, j]) @ np.linalg.inv(lin[i, j]).T
        size = np.abs(u).max(-1) if kind[j] == scene.BOX else np.linalg.norm(u, axis=-1)
        np.testing.assert_allclose(size, 1.0, atol=2e-3)  # On the canonical cube / sphere.
  again = render.render(samples[0].scene, samples[0].source)
  np.testing.assert_array_equal(np.asarray(again.rgb), np.asarray(render.render(samples[0].scene,
                                                                                samples[0].source).rgb))


def test_tracks_are_exact_material_points(samples):
  moved_rigid = moved_deforming = 0
  for s in samples:
    tracks = render.sample_tracks(s.scene, s.source, np.random.default_rng(0), grid_size=6, query_frames=(0, T - 1))
    n = tracks.xyz_world.shape[1]
    assert n == 72 and tracks.xyz_world.shape == (T, n, 3)
    xy, depth, vis = render.track_views(s.scene, tracks, s.source)
    rows = np.arange(n)
    # At its query frame a track projects onto its query pixel and is visible.
    np.testing.assert_allclose(xy[tracks.query_frame, rows], tracks.query_xy_px, atol=2e-3)
    assert vis[tracks.query_frame, rows].mean() > 0.97
    # Visible tracks agree with the rendered depth at their pixel (away from depth edges).
    frames = render.render(s.scene, s.source)
    r = np.clip(np.round(xy).astype(int), 0, [HW[1] - 1, HW[0] - 1])
    rendered = np.asarray(frames.depth)[np.arange(T)[:, None], r[..., 1], r[..., 0]]
    close = np.abs(rendered - depth) < 0.05 * depth
    assert close[vis].mean() > 0.9
    assert not vis[depth <= 0].any()
    # Room points stay put; rigid objects keep distances; deforming ones do not.
    sid = tracks.surface_id
    room = sid < scene.NUM_FACES
    np.testing.assert_allclose(tracks.xyz_world[:, room], np.broadcast_to(tracks.xyz_world[:1, room],
                                                                          (T, room.sum(), 3)), atol=1e-6)
    for j in range(s.scene.num_objects):
      on = sid == j + scene.NUM_FACES
      if on.sum() < 3 or not s.scene.obj_dynamic[j]:
        continue
      p = tracks.xyz_world[:, on]
      dist = np.linalg.norm(p[:, :, None] - p[:, None], axis=-1)
      lin = np.asarray(s.scene.obj_linear)[:, j]
      rigid = np.allclose(np.swapaxes(lin, -1, -2) @ lin, (lin[:1].swapaxes(-1, -2) @ lin[:1]), atol=1e-4)
      if rigid:
        np.testing.assert_allclose(dist, np.broadcast_to(dist[:1], dist.shape), atol=1e-4)
        moved_rigid += np.abs(p - p[:1]).max() > 1e-2
      else:
        moved_deforming += np.abs(dist - dist[:1]).max() > 1e-2
      assert tracks.dynamic[on].all()
  assert moved_rigid + moved_deforming > 0


def test_scene_views_shapes_determinism_and_demo_tracks():
  cfg = multiview_data.MultiViewConfig(num_frames=T, image_hw=HW, num_targets=3, grid_size=5)
  a = multiview_data.make_scene_views(cfg, seed=5, index=2)
  b = multiview_data.make_scene_views(cfg, seed=5, index=2)
  jax.tree.map(np.testing.assert_array_equal, a, b)
  n = cfg.num_tracks
  assert a.source_rgb.shape == (T,) + HW + (3,) and a.target_rgb.shape == (3, T) + HW + (3,)
  assert a.target_xy_px.shape == (3, T, n, 2) and a.xyz_world.shape == (T, n, 3)
  assert a.source_visible.mean() > 0.5
  the_scene = multiview_data.scene_setup(cfg, 5, 2).sample.scene
  for j in range(3):
    pairs = a.paired(j)
    assert pairs.target_xy_px.shape == (T, n, 2)
    assert 0 <= a.target_kind[j] < len(cameras.TARGET_KINDS)
    assert scene.cameras_clear(the_scene, a.target_trajectory(j))  # New cameras stay in the room, off objects.
  clip = a.source_tracks()
  assert clip.num_frames == T and clip.num_tracks == n and clip.gt is not None
  np.testing.assert_allclose(clip.gt.depth, a.source_depth)
  c = multiview_data.make_scene_views(cfg, seed=5, index=3)
  assert not np.array_equal(a.source_rgb, c.source_rgb)


def test_bad_input_names_the_argument(samples):
  s = samples[0]
  src = s.source
  short = Trajectory(w2c=np.asarray(src.w2c)[:3], intrinsics=np.asarray(src.intrinsics)[:3], image_hw=HW)
  with pytest.raises(ValueError, match=rf"trajectory\.w2c: expected {T} poses"):
    render.render(s.scene, short)
  with pytest.raises(ValueError, match=r"trajectory\.image_hw: height and width must be positive"):
    render.render(s.scene, Trajectory(w2c=src.w2c, intrinsics=src.intrinsics, image_hw=(0, 40)))
  with pytest.raises(ValueError, match="frame_index"):
    render.render(s.scene, src, frame_index=np.arange(T) + 1)
  with pytest.raises(ValueError, match="antialias"):
    render.render(s.scene, src, antialias=2)
  with pytest.raises(ValueError, match="grid_size"):
    render.sample_tracks(s.scene, src, np.random.default_rng(0), grid_size=0)
  with pytest.raises(ValueError, match="query_frames"):
    render.sample_tracks(s.scene, src, np.random.default_rng(0), grid_size=3, query_frames=(T,))
  with pytest.raises(ValueError, match="image_hw"):
    scene.random_scene(np.random.default_rng(0), T, (0, 0))
  with pytest.raises(ValueError, match="num_frames"):
    scene.random_scene(np.random.default_rng(0), 0, HW)
  with pytest.raises(ValueError, match="scene: expected"):
    render.render(None, src)
  with pytest.raises(ValueError, match="MultiViewConfig.image_hw"):
    multiview_data.MultiViewConfig(image_hw=(64, 0))
