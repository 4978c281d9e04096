"""experiments.evaluate: the held-out groups and the side-by-side comparison."""

from __future__ import annotations

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import evaluate as evaluate_script
from tracks4d import model
from tracks4d.io import mocap_mat
from tracks4d.tracks import batch_tracks
from tracks4d.training import evaluate


def test_groups_hold_object_only_clips_without_static_points():
  groups = evaluate_script.eval_clips(num_per_family=1, num_frames=8, num_tracks=24, seed=11, object_only=3)
  assert {"static", "rigid", "nonrigid", "articulated", "object only"} <= set(groups)
  assert len(groups["object only"]) == 3
  for clip in groups["object only"]:
    assert clip.gt.dynamic.all() and clip.num_frames == 8 and clip.num_tracks <= 24
  assert not groups["static"][0].gt.dynamic.any()
  assert "object only" not in evaluate_script.eval_clips(1, 8, 24, seed=11, camera_paths=("orbit",))


def test_comparison_scores_every_method():
  groups = evaluate_script.eval_clips(num_per_family=1, num_frames=8, num_tracks=16, seed=12, object_only=2)
  net = model.create_model("tiny", seed=0)
  results = evaluate_script.run_comparison(net, {"object only": groups["object only"]}, opt_clips=1, opt_steps=1,
                                           opt_lr=1e-3, ttft_steps=1)
  methods = results["object only"]
  assert set(methods) == {"identity+const", "untrained", "feed-forward", "feed-forward, static points only",
                          "feed-forward (opt. subset)", "optimisation", "fine-tuned (1 steps)"}
  assert [r["num_clips"] for r in methods.values()] == [2, 2, 2, 2, 1, 1, 1]
  for r in methods.values():
    assert np.isfinite(r["abs_rel"]) and r["abs_rel"] >= 0
    assert len(r["abs_rel_per_clip"]) == r["num_clips"]
    np.testing.assert_allclose(r["abs_rel"], np.mean(r["abs_rel_per_clip"]))
    np.testing.assert_allclose(r["abs_rel_median"], np.median(r["abs_rel_per_clip"]))
  # The trained and the fresh network are the same weights here (seed 0): same scores.
  assert methods["untrained"]["abs_rel"] == methods["feed-forward"]["abs_rel"]
  assert "| object only | fine-tuned (1 steps) | 1 |" in evaluate_script.markdown(results)


def test_rigid_factorisation_row_only_for_complete_tracks():
  groups = evaluate_script.eval_clips(num_per_family=1, num_frames=8, num_tracks=16, seed=12, object_only=1)
  clip = groups["object only"][0]
  assert not np.asarray(clip.visible).all()  # Synthetic clips have hidden entries: no factorisation row.
  complete = clip.replace(visible=np.ones_like(clip.visible))
  results = evaluate_script.run_comparison(model.create_model("tiny", seed=0),
                                           {"hidden": [clip], "complete": [complete]}, opt_clips=0, opt_steps=0,
                                           opt_lr=1e-3)
  assert "rigid factorisation" not in results["hidden"]
  assert np.isfinite(results["complete"]["rigid factorisation"]["abs_rel"])


def test_mocap_windows_spread_over_each_sequence():
  if not mocap_mat.list_sequences():
    pytest.skip(f"CMU-mocap sequences not found in {mocap_mat.DEFAULT_NRSFM_DIR} (../shared/data/nrsfm).")
  names = mocap_mat.list_sequences()
  one, three = evaluate_script.mocap_windows(8, 1), evaluate_script.mocap_windows(8, 3)
  assert len(one) == len(names) and len(three) == 3 * len(names)
  seq = mocap_mat.load_mocap(names[0])
  first, last = three[0], three[2]
  np.testing.assert_allclose(first.xy_px, one[0].xy_px)  # The first window starts at frame 0.
  np.testing.assert_allclose(last.gt.xyz_world, seq.S[-8:])  # The last one ends at the sequence's end.
  with pytest.raises(ValueError, match="windows"):
    evaluate_script.mocap_windows(8, 0)
  picked = evaluate_script.mocap_windows(8, 2, sequences=(names[-1],))
  assert len(picked) == 2
  np.testing.assert_allclose(picked[0].gt.xyz_world, mocap_mat.load_mocap(names[-1]).S[:8])
  with pytest.raises(ValueError, match="'nosuch'"):
    evaluate_script.mocap_windows(8, 1, sequences=("nosuch",))


def test_static_only_depth_leaves_the_motion_out():
  clips = evaluate_script.eval_clips(num_per_family=0, num_frames=8, num_tracks=16, seed=12, object_only=1)["object only"]
  net = model.create_model("tiny", seed=0)
  # A fresh network's motion head starts at zero: perturb every parameter so it predicts motion.
  params = nnx.state(net, nnx.Param)
  keys = iter(jax.random.split(jax.random.key(0), len(jax.tree.leaves(params))))
  nnx.update(net, jax.tree.map(lambda x: x + 0.05 * jax.random.normal(next(keys), x.shape), params))
  full = evaluate.predict_with_model(net, clips, batch_size=1)[0]
  static = evaluate.predict_with_model(net, clips, batch_size=1, static_only=True)[0]
  pred = model.forward_jit(net, jax.tree.map(jnp.asarray, batch_tracks(clips)))
  np.testing.assert_allclose(static.depth, np.asarray(pred.depth_static)[0], rtol=1e-3)
  np.testing.assert_array_equal(static.w2c, full.w2c)
  assert not np.allclose(static.depth, full.depth)


def test_camera_ceiling_ground_truth_cameras_recover_a_static_scene():
  """experiments.camera_ceiling: under the true cameras, a static scene filmed by an
  orbit is triangulated to its true depth (this pins the camera conventions of its
  ground-truth row); every camera set gets one finite score per clip."""
  from experiments import camera_ceiling
  from tracks4d import synthetic

  gen = synthetic.SyntheticConfig(num_frames=(16, 16), camera_paths=("orbit",))
  orbit = synthetic.generate_clip(gen, 7, 0, family="static")
  depth = camera_ceiling.ground_truth_camera_depth(orbit)
  assert camera_ceiling._abs_rel(np.asarray(orbit.gt.w2c), depth, orbit) < 0.03
  # Constant depth is far off on the same clip: the bound above is a real constraint.
  assert camera_ceiling._abs_rel(np.asarray(orbit.gt.w2c), np.ones_like(depth), orbit) > 0.1
  still = synthetic.generate_clip(synthetic.SyntheticConfig(num_frames=(16, 16), camera_paths=("static",)), 7, 0,
                                  family="static")
  scores = camera_ceiling.ceiling_scores(model.create_model("tiny", seed=0), [orbit, still])
  assert set(scores) == {"model", "ground truth", "model + rigid BA"}
  assert all(len(v) == 2 and all(np.isfinite(v)) for v in scores.values())


def test_object_only_clips_are_pooled_by_their_moving_objects():
  """The pooled groups split the object-only clips by ClipInfo.moving_objects, which
  counts the distinct moving surfaces that the tracks hit."""
  groups = evaluate_script.eval_clips(num_per_family=0, num_frames=8, num_tracks=24, seed=7, object_only=8)
  one, several = groups.get("object only (1 object)", []), groups.get("object only (2-3 objects)", [])
  assert len(one) + len(several) == 8 and one and several
  assert {id(c) for c in one + several} == {id(c) for c in groups["object only"]}
  from tracks4d import synthetic
  _, info = synthetic.generate_clip(synthetic.SyntheticConfig(num_frames=(8, 8)), 7, 0, family="static",
                                    with_info=True)
  assert info.moving_objects == 0


def test_environment_names_the_machine_and_versions():
  env = evaluate_script.environment()
  assert set(env) == {"cpu", "jax", "flax", "numpy", "python", "devices"}
  assert env["jax"] == jax.__version__ and env["numpy"] == np.__version__
  assert all(isinstance(v, str) and v for v in env.values()), env
