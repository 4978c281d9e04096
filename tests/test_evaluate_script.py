"""experiments.evaluate: the held-out groups and the side-by-side comparison."""

from __future__ import annotations

import numpy as np

from experiments import evaluate as evaluate_script
from tracks4d import model


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
  assert set(methods) == {"identity+const", "untrained", "feed-forward", "feed-forward (opt. subset)",
                          "optimisation", "fine-tuned (1 steps)"}
  assert [r["num_clips"] for r in methods.values()] == [2, 2, 2, 1, 1, 1]
  for r in methods.values():
    assert np.isfinite(r["abs_rel"]) and r["abs_rel"] >= 0
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
