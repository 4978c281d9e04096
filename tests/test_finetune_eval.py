"""Per-clip fine-tuning and the evaluation scores."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from flax import nnx

from tracks4d import model, synthetic
from tracks4d.synthetic.sampling import TrackerNoise
from tracks4d.training import evaluate, finetune

CFG = synthetic.SyntheticConfig(num_frames=(8, 10), grid_size=5, query_stride=4)


def params(net):
  return jax.tree.map(np.asarray, nnx.state(net, nnx.Param))


def test_finetune_lowers_the_loss_and_keeps_the_best_state():
  clip = synthetic.generate_clip(CFG, seed=0, index=0, family="rigid")
  net = model.create_model("tiny", seed=0)
  before = params(net)
  res = finetune.finetune(net, clip, steps=25, learning_rate=3e-3)
  assert np.isfinite(res.losses).all() and len(res.losses) == 25
  assert res.losses[res.best_step] == res.losses.min()
  assert res.losses.min() < res.losses[0]
  jax.tree.map(np.testing.assert_array_equal, params(net), before)  # Input untouched.
  # A second clip of the same shape reuses the compiled step.
  again = finetune.finetune(net, clip, steps=2, learning_rate=3e-3)
  assert again.seconds < res.seconds
  with pytest.raises(ValueError, match="steps must be >= 0"):
    finetune.finetune(net, clip, steps=-1)


def test_scores_of_ground_truth_are_perfect_and_trivial_baseline_is_not():
  clean = synthetic.SyntheticConfig(num_frames=(10, 10), grid_size=6, query_stride=4,
                                    noise=TrackerNoise(0.0, 0.0, 0.0))
  clip = synthetic.generate_clip(clean, seed=1, index=0, family="nonrigid", camera="orbit")
  gt = evaluate.Reconstruction3D(w2c=clip.gt.w2c, depth=clip.gt.depth)
  s = evaluate.score_clip(gt, clip)
  assert s.abs_rel < 1e-6 and s.delta_1 == 1.0 and s.ate < 1e-4 and s.rpe_rot_deg < 1e-2
  trivial = evaluate.score_clip(evaluate.identity_constant_depth(clip), clip)
  assert trivial.abs_rel > 0.01 and trivial.ate > 1e-3 and trivial.rpe_rot_deg > 0.1
  summary = evaluate.mean_scores([s, trivial])
  np.testing.assert_allclose(summary["abs_rel"], (s.abs_rel + trivial.abs_rel) / 2)


def test_predict_with_model_unpads_each_clip():
  clips = [synthetic.generate_clip(CFG, seed=2, index=i) for i in range(3)]
  preds = evaluate.predict_with_model(model.create_model("tiny"), clips, batch_size=2)
  for p, c in zip(preds, clips):
    assert p.w2c.shape == (c.num_frames, 4, 4) and p.depth.shape == (c.num_frames, c.num_tracks)
