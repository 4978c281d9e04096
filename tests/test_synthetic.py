"""The synthetic generator: determinism, ground-truth consistency, visibility, noise."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest

from tracks4d import geometry, synthetic
from tracks4d.synthetic import scene as scene_lib
from tracks4d.synthetic.sampling import TrackerNoise

CLEAN = synthetic.SyntheticConfig(num_frames=(10, 14), grid_size=8, query_stride=5,
                                  noise=TrackerNoise(0.0, 0.0, 0.0), families=("static", "rigid", "nonrigid",
                                                                               "articulated"))


def test_same_seed_same_clip_and_different_index_differs():
  a = synthetic.generate_clip(CLEAN, seed=3, index=5)
  b = synthetic.generate_clip(CLEAN, seed=3, index=5)
  jax.tree.map(np.testing.assert_array_equal, a, b)
  c = synthetic.generate_clip(CLEAN, seed=3, index=6)
  assert a.xy_px.shape != c.xy_px.shape or not np.array_equal(a.xy_px, c.xy_px)


@pytest.mark.parametrize("family", ["static", "rigid", "nonrigid", "articulated"])
@pytest.mark.parametrize("camera", synthetic.CAMERA_PATHS)
def test_noise_free_tracks_are_projections_of_ground_truth(family, camera):
  clip = synthetic.generate_clip(CLEAN, seed=0, index=1, family=family, camera=camera)
  xyz_cam = geometry.transform_points(clip.gt.w2c, clip.gt.xyz_world)
  xy, depth = geometry.project(xyz_cam, clip.intrinsics)
  vis = clip.visible
  np.testing.assert_allclose(clip.xy_px[vis], xy[vis], atol=2e-3 * clip.image_hw.max())
  np.testing.assert_allclose(clip.gt.depth, depth, rtol=1e-4)
  # Visible entries are in the image and in front of the camera; each track is
  # visible at its query frame.
  assert (depth[vis] > 0).all()
  assert geometry.in_image(clip.xy_px[vis], clip.image_hw).all()
  assert vis[clip.query_frame, np.arange(clip.num_tracks)].all()
  assert clip.num_tracks >= 20
  dyn = clip.gt.dynamic
  assert (dyn == dyn[:1]).all()  # Per-track label, constant in time.
  static_xyz = clip.gt.xyz_world[:, ~dyn[0]]
  np.testing.assert_allclose(static_xyz, np.broadcast_to(static_xyz[:1], static_xyz.shape), atol=1e-5)
  if family == "static":
    assert not dyn.any()
  else:
    moving = np.linalg.norm(clip.gt.xyz_world[-1, dyn[0]] - clip.gt.xyz_world[0, dyn[0]], axis=-1)
    assert dyn.any() and moving.max() > 0


def test_occlusion_hides_background_behind_objects():
  # Over many clips, some static tracks are hidden at some frame while in the image
  # and in front of the camera: the z-buffer occludes.
  hidden = 0
  for i in range(6):
    clip = synthetic.generate_clip(CLEAN, seed=1, index=i, family="rigid")
    xyz_cam = geometry.transform_points(clip.gt.w2c, clip.gt.xyz_world)
    xy, depth = geometry.project(xyz_cam, clip.intrinsics)
    could_see = (depth > 0) & geometry.in_image(xy, clip.image_hw)
    hidden += int((could_see & ~clip.visible & ~clip.gt.dynamic).sum())
  assert hidden > 0


def test_tracker_noise_levels():
  noisy = dataclasses.replace(CLEAN, noise=TrackerNoise(noise_px=2.0, outlier_frac=0.5, drop_frac=0.5))
  a = synthetic.generate_clip(CLEAN, seed=2, index=0, family="static", camera="static")
  b = synthetic.generate_clip(noisy, seed=2, index=0, family="static", camera="static")
  # Same scene and tracks; noise only changes observations.
  np.testing.assert_array_equal(a.gt.xyz_world, b.gt.xyz_world)
  err = np.linalg.norm(b.xy_px - a.xy_px, axis=-1)[a.visible & b.visible]
  assert 0.5 < np.median(err) < 10.0
  assert err.max() > 0.04 * a.image_hw.max()  # Outlier jumps.
  assert b.visible.sum() < a.visible.sum()  # Drop-outs.


def test_config_errors_name_the_setting():
  with pytest.raises(ValueError, match="num_frames"):
    synthetic.SyntheticConfig(num_frames=(1, 5))
  with pytest.raises(ValueError, match="families: unknown family 'cats'"):
    synthetic.SyntheticConfig(families=("cats",))
  with pytest.raises(ValueError, match="camera_paths"):
    synthetic.SyntheticConfig(camera_paths=("drone",))
  with pytest.raises(ValueError, match="unknown settings"):
    synthetic.SyntheticConfig.from_dict({"grid": 3})
  with pytest.raises(ValueError, match="orbit_deg"):
    synthetic.SyntheticConfig(orbit_deg=(90.0, 30.0))
  with pytest.raises(ValueError, match="object_only_frac"):
    synthetic.SyntheticConfig(object_only_frac=1.5)
  with pytest.raises(ValueError, match="family 'static' .* object-only"):
    synthetic.generate_clip(CLEAN, seed=0, index=0, family="static", background=False)


@pytest.mark.parametrize("family", ["rigid", "nonrigid", "articulated"])
def test_object_only_clip_has_no_static_point(family):
  """An object-only clip tracks the moving content alone, and each track is still
  the projection of its ground-truth point."""
  clip, info = synthetic.generate_clip(CLEAN, seed=2, index=3, family=family, with_info=True, background=False)
  assert not info.background
  assert clip.gt.dynamic.all()
  assert clip.num_tracks >= 20
  xy, _ = geometry.project(geometry.transform_points(clip.gt.w2c, clip.gt.xyz_world), clip.intrinsics)
  np.testing.assert_allclose(clip.xy_px[clip.visible], xy[clip.visible], atol=2e-3 * clip.image_hw.max())
  with_room = synthetic.generate_clip(CLEAN, seed=2, index=3, family=family, background=True)
  assert not with_room.gt.dynamic.all()


def test_object_only_frac_draws_object_only_clips_and_leaves_the_others():
  """With object_only_frac 0.5 about half the dynamic-family clips are object-only;
  a clip that keeps its background is the same clip as with 0; 'static' clips always
  keep theirs."""
  half = dataclasses.replace(CLEAN, object_only_frac=0.5)
  kinds = []
  for i in range(12):
    clip, info = synthetic.generate_clip(half, seed=6, index=i, with_info=True)
    kinds.append((info.family, info.background))
    assert info.background == (not clip.gt.dynamic.all())
    if info.background:
      jax.tree.map(np.testing.assert_array_equal, clip, synthetic.generate_clip(CLEAN, seed=6, index=i))
  assert all(bg for fam, bg in kinds if fam == "static")
  assert 2 <= sum(not bg for _, bg in kinds) <= 10


@pytest.mark.parametrize("orbit_deg", [(30.0, 30.0), (100.0, 100.0)])
def test_orbit_sweeps_the_configured_azimuth(orbit_deg):
  """An orbiting camera turns by `orbit_deg` about the vertical over the clip (the
  jitter on its position and look-at point adds a few degrees)."""
  cfg = dataclasses.replace(CLEAN, orbit_deg=orbit_deg)
  c = synthetic.generate_clip(cfg, seed=3, index=0, family="static", camera="orbit")
  axes = geometry.invert_pose(c.gt.w2c)[:, :3, 2]  # (t, 3) viewing directions, world frame
  heading = np.unwrap(np.arctan2(axes[:, 0], axes[:, 2]))
  assert abs(np.rad2deg(abs(heading[-1] - heading[0])) - orbit_deg[0]) < 8.0


@pytest.mark.parametrize("object_only_frac,grid_size", [(0.0, 8), (1.0, 8), (1.0, 2)])
def test_max_tracks_bounds_every_clip(object_only_frac, grid_size):
  """Also object-only clips, whose finer query grid is capped at grid_size^2 per query frame."""
  cfg = dataclasses.replace(CLEAN, object_only_frac=object_only_frac, grid_size=grid_size)
  for i in range(5):
    clip = synthetic.generate_clip(cfg, seed=4, index=i)
    assert clip.num_tracks <= cfg.max_tracks
    assert cfg.num_frames[0] <= clip.num_frames <= cfg.num_frames[1]


def test_mocap_family_without_data_warns_and_is_skipped(tmp_path, caplog):
  cfg = dataclasses.replace(CLEAN, families=("static", "mocap"), mocap_dir=str(tmp_path))
  scene_lib._warned_no_mocap = False
  families = scene_lib.available_families(cfg.families, tmp_path)
  assert families == ("static",)
  assert "mocap" in caplog.text
  only = dataclasses.replace(cfg, families=("mocap",))
  with pytest.raises(ValueError, match="holds no .mat sequences"):
    synthetic.generate_clip(only, seed=0, index=0)


def test_mocap_family_with_data():
  directory = scene_lib.default_mocap_dir()
  if not list(directory.glob("*.mat")):
    pytest.skip(f"mocap data not found: {directory} (set TRACKS4D_NRSFM_DIR)")
  cfg = dataclasses.replace(CLEAN, families=("mocap",))
  clip = synthetic.generate_clip(cfg, seed=0, index=0)
  assert clip.gt.dynamic[0].any()
  # The body is upright: dynamic points span more height (world y) than width.
  body = clip.gt.xyz_world[0, clip.gt.dynamic[0]]
  assert body[:, 1].max() <= 1e-3 * np.abs(body).max() + 0.2 * np.ptp(body[:, 1])  # Feet near the floor (y=0).


def test_mocap_exclude_keeps_sequences_out_of_the_mocap_family():
  directory = scene_lib.default_mocap_dir()
  seqs = scene_lib.load_mocap_skeletons(str(directory))
  if not seqs:
    pytest.skip(f"mocap data not found: {directory} (set TRACKS4D_NRSFM_DIR)")
  names = [name for name, _, _ in seqs]
  counts = {name: joints.shape[1] for name, joints, _ in seqs}
  keep = names[0]  # The joint count tells the sequences apart (dance has 75, the others 41).
  others = tuple(n for n in names if counts[n] != counts[keep])
  rng = np.random.default_rng(0)
  for _ in range(6):
    joints, _ = scene_lib._mocap_joints(rng, 8, directory, 3.0, exclude=others)
    assert joints.shape[1] == counts[keep]
  with pytest.raises(ValueError, match="mocap_exclude.*'nosuch'"):
    scene_lib._mocap_joints(rng, 8, directory, 3.0, exclude=("nosuch",))
  with pytest.raises(ValueError, match="mocap_exclude: excludes every sequence"):
    scene_lib._mocap_joints(rng, 8, directory, 3.0, exclude=tuple(names))
  # Through the generator's config (a list from a ConfigDict becomes a tuple).
  cfg = synthetic.SyntheticConfig.from_dict({**dataclasses.asdict(CLEAN), "noise": dataclasses.asdict(CLEAN.noise),
                                             "families": ["mocap"], "mocap_exclude": list(names[1:])})
  assert cfg.mocap_exclude == tuple(names[1:])
  assert synthetic.generate_clip(cfg, seed=0, index=0).gt.dynamic.any()


def test_scene_without_visible_track_is_drawn_again(monkeypatch):
  """Clip (3, 469) of this config is an object-only scene whose object no query
  hits in its first draw: it is drawn again (deterministically), not dropped.
  (No mocap family, so the clip does not depend on ../shared being present.)"""
  cfg = synthetic.SyntheticConfig(num_frames=(10, 14), grid_size=8, orbit_deg=(20.0, 120.0), object_only_frac=1.0,
                                  families=("rigid", "nonrigid", "articulated"))
  clip = synthetic.generate_clip(cfg, seed=3, index=469)
  assert clip.num_tracks > 0 and clip.gt.dynamic.all()
  jax.tree.map(np.testing.assert_array_equal, clip, synthetic.generate_clip(cfg, seed=3, index=469))
  from tracks4d.synthetic import generator
  monkeypatch.setattr(generator, "_SCENE_ATTEMPTS", 1)
  with pytest.raises(ValueError, match=r"seed=3 index=469 produced no visible track in 1 draws"):
    synthetic.generate_clip(cfg, seed=3, index=469)
