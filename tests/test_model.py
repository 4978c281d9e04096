"""The network: track-permutation equivariance, masking of padding, batching, attention."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tracks4d import model, synthetic
from tracks4d.model.attention import dot_product_attention
from tracks4d.tracks import batch_tracks, pad_tracks, select_tracks

CFG = synthetic.SyntheticConfig(num_frames=(9, 12), grid_size=5, query_stride=4)


def clip(i=0):
  return synthetic.generate_clip(CFG, seed=0, index=i)


def run(net, tracks):
  return model.forward_jit(net, jax.tree.map(jnp.asarray, tracks))


def as_batch(*clips, **kw):
  return batch_tracks(list(clips), **kw)


def assert_same_cameras(c2w_a, c2w_b):
  """Rotations to 1e-5; centres to 1e-5 of the scene's distance (|centre_prior| = 15).

  The centres are ~15 units, where float32 resolves ~1e-6; the factorisation that
  initialises the cameras (model/camera_init.py) sums over tracks, so another track
  order or padding changes its rounding, magnified by its conditioning.
  """
  c2w_a, c2w_b = np.asarray(c2w_a), np.asarray(c2w_b)
  np.testing.assert_allclose(c2w_a[..., :3, :3], c2w_b[..., :3, :3], atol=1e-5)
  np.testing.assert_allclose(c2w_a[..., :3, 3], c2w_b[..., :3, 3], atol=1e-5 * 15.0)
  np.testing.assert_array_equal(c2w_a[..., 3, :], c2w_b[..., 3, :])


@pytest.fixture(scope="module")
def net():
  # Small chunks so the chunked attention path runs with several chunks. The
  # network's own static points: exact equalities below are then float32
  # rounding only (the triangulated points are tested below).
  return model.create_model("tiny", seed=1, chunk_size=8, triangulate_static=False, camera_init="factorization")


def test_permuting_tracks_permutes_outputs(net):
  c = clip(0)
  perm = np.random.default_rng(0).permutation(c.num_tracks)
  a = run(net, as_batch(c))
  b = run(net, as_batch(select_tracks(c, perm)))
  assert_same_cameras(b.c2w, a.c2w)
  np.testing.assert_allclose(b.focal, a.focal, atol=1e-5)
  np.testing.assert_allclose(b.raw.coeff, a.raw.coeff, atol=1e-5)
  np.testing.assert_allclose(b.raw.bases, a.raw.bases[:, perm], atol=1e-5)
  np.testing.assert_allclose(b.raw.gamma, a.raw.gamma[:, perm], atol=1e-5)
  np.testing.assert_allclose(b.xyz_world, a.xyz_world[:, :, perm], atol=1e-4)


def test_padding_tracks_and_frames_changes_nothing(net):
  c = clip(1)
  t, n = c.num_frames, c.num_tracks
  a = run(net, as_batch(c))
  padded = pad_tracks(c, t + 5, n + 13)
  # Padded entries hold garbage: it must not leak into real outputs.
  rng = np.random.default_rng(0)
  xy = np.array(padded.xy_px)
  xy[t:] = rng.normal(size=xy[t:].shape) * 500
  xy[:, n:] = rng.normal(size=xy[:, n:].shape) * 500
  vis = np.array(padded.visible)
  vis[t:], vis[:, n:] = True, True
  padded = padded.replace(xy_px=xy, visible=vis)
  b = run(net, as_batch(padded))
  assert_same_cameras(b.c2w[:, :t], a.c2w)
  np.testing.assert_allclose(b.raw.bases[:, :n], a.raw.bases, atol=1e-5)
  np.testing.assert_allclose(b.xyz_world[:, :t, :n], a.xyz_world, atol=1e-4)


def test_triangulated_static_points_ignore_padding_and_follow_permutations():
  # Under near-identical (untrained) cameras the 3 x 3 solves are ill-conditioned
  # and magnify float32 rounding of the frame sums, hence the relative tolerance.
  net = model.create_model("tiny", seed=1, chunk_size=8)
  assert net.cfg.triangulate_static
  c = clip(1)
  t, n = c.num_frames, c.num_tracks
  a = run(net, as_batch(c))
  padded = pad_tracks(c, t + 5, n + 13)
  xy = np.array(padded.xy_px)
  xy[t:] = np.random.default_rng(0).normal(size=xy[t:].shape) * 500
  vis = np.array(padded.visible)
  vis[t:], vis[:, n:] = True, True
  b = run(net, as_batch(padded.replace(xy_px=xy, visible=vis)))
  np.testing.assert_allclose(b.raw.bases[:, :n, :, 0], a.raw.bases[..., 0], rtol=2e-3, atol=1e-3)
  perm = np.random.default_rng(0).permutation(n)
  p = run(net, as_batch(select_tracks(c, perm)))
  np.testing.assert_allclose(p.raw.bases[..., 0], np.asarray(a.raw.bases[..., 0])[:, perm], rtol=2e-3, atol=1e-3)


def test_batch_with_padding_equals_clips_one_by_one(net):
  clips = [clip(i) for i in range(3)]
  batch = run(net, as_batch(*clips))
  for i, c in enumerate(clips):
    one = run(net, as_batch(c))
    t, n = c.num_frames, c.num_tracks
    assert_same_cameras(batch.c2w[i, :t], one.c2w[0])
    np.testing.assert_allclose(batch.xyz_world[i, :t, :n], one.xyz_world[0], atol=1e-4)


def test_occluded_entries_do_not_influence_through_attention(net):
  c = clip(2)
  a = run(net, as_batch(c))
  xy = np.array(c.xy_px)
  xy[~c.visible] += 1000.0  # The tracker's guesses for occluded entries change.
  b = run(net, as_batch(c.replace(xy_px=xy)))
  assert_same_cameras(b.c2w, a.c2w)
  np.testing.assert_allclose(b.raw.bases, a.raw.bases, atol=1e-5)


def test_any_clip_length_and_time_shift(net):
  # Rotary time encoding: no fixed window; outputs exist for long clips.
  long_cfg = synthetic.SyntheticConfig(num_frames=(120, 120), grid_size=3, query_stride=40)
  c = synthetic.generate_clip(long_cfg, seed=0, index=0)
  p = run(net, as_batch(c))
  assert p.c2w.shape[1] == 120 and np.isfinite(np.asarray(p.xyz_world)).all()


def test_chunked_attention_equals_full():
  rng = np.random.default_rng(0)
  q, k, v = (jnp.asarray(rng.normal(size=(3, 37, 2, 8)), jnp.float32) for _ in range(3))
  mask = jnp.asarray(rng.uniform(size=(3, 37)) < 0.7)
  mask = mask.at[2].set(False)  # A sequence with no valid key: zeros, not NaN.
  full = dot_product_attention(q, k, v, mask, impl="full")
  chunked = dot_product_attention(q, k, v, mask, impl="chunked", chunk_size=8)
  np.testing.assert_allclose(chunked, full, atol=1e-6)
  assert np.all(np.asarray(full[2]) == 0)
  g = jax.grad(lambda q: dot_product_attention(q, k, v, mask, "chunked", 8).sum())(q)
  g_full = jax.grad(lambda q: dot_product_attention(q, k, v, mask, "full").sum())(q)
  np.testing.assert_allclose(g, g_full, atol=1e-5)


def test_bfloat16_compute_runs_close_to_float32():
  c = as_batch(clip(0))
  a = run(model.create_model("tiny", seed=3), c)
  b = run(model.create_model("tiny", seed=3, dtype="bfloat16"), c)
  assert b.xyz_world.dtype == jnp.float32
  np.testing.assert_allclose(b.xyz_world, a.xyz_world, rtol=0.05, atol=0.05)


def test_variants_and_bad_config():
  assert model.num_parameters(model.create_model("tiny")) < 100_000
  with pytest.raises(ValueError, match="unknown 'huge'"):
    model.model_config("huge")
  with pytest.raises(ValueError, match="ModelConfig.attention"):
    model.model_config("tiny", attention="magic")
  with pytest.raises(ValueError, match="unknown settings"):
    model.model_config("tiny", width=3)
  # Settings that only act on the factorisation's starts are refused without them.
  for setting in ({"uncorrected_starts": True}, {"occlusion_weight": 1.0}):
    with pytest.raises(ValueError, match=rf"ModelConfig.{next(iter(setting))}: only with camera_init='factorization'"):
      model.model_config("tiny", **setting)
  with pytest.raises(ValueError, match=r"ModelConfig.occlusion_weight: expected >= 0; got -1.0"):
    model.model_config("small", occlusion_weight=-1.0)
  with pytest.raises(ValueError, match=r"ModelConfig.start_score_weights: only with camera_init='factorization'"):
    model.model_config("tiny", start_score_weights=(50.0, 1.0))
  for bad in ((50.0,), (50.0, -1.0), "ab"):
    with pytest.raises(ValueError, match=r"ModelConfig.start_score_weights: expected two"):
      model.model_config("small", start_score_weights=bad)
  # Command-line overrides: literals where they parse, strings otherwise; bad items are named.
  assert model.parse_overrides(["occlusion_weight=1", "camera_init=prior", "start_score_weights=(50, 1)"]) == {
      "occlusion_weight": 1, "camera_init": "prior", "start_score_weights": (50, 1)}
  assert isinstance(model.parse_overrides(["occlusion_weight=1"])["occlusion_weight"], float)
  for bad in ("occlusion_weight", "width=3"):
    with pytest.raises(ValueError, match=rf"model override '{bad}': expected 'key=value'"):
      model.parse_overrides([bad])
  # A value of the wrong type (here two settings in one item) is named before any model is built.
  for bad, kind in (("resection_steps=10,triangulation_ridge=1e-4", "int"), ("refine_layers=True", "int"),
                    ("triangulate_static=1", "bool"), ("triangulation_ridge=abc", "float")):
    with pytest.raises(ValueError, match=rf"model override '{bad}': \w+ expects a {kind}"):
      model.parse_overrides([bad])
  # A list (as JSON gives it) becomes a tuple: the config stays hashable.
  assert hash(model.model_config("small", start_score_weights=[50, 1])) == hash(
      model.model_config("small", start_score_weights=(50.0, 1.0)))
  # Overrides apply to a ModelConfig as to a variant name (they were once ignored there).
  cfg = model.model_config("tiny")
  assert model.create_model(cfg, triangulation_ridge=0.5).cfg.triangulation_ridge == 0.5
  with pytest.raises(ValueError, match="unknown settings"):
    model.create_model(cfg, width=3)


def test_camera_refinement_starts_as_identity_and_stays_equivariant():
  """`refine_layers`: its zero-initialised read-out leaves a model's outputs as they
  were (so it can be added to a trained model); once it predicts something, the
  cameras move and the outputs still follow track permutations and ignore padding."""
  from flax import nnx

  plain = model.create_model("tiny", seed=1, chunk_size=8)
  refined = model.create_model("tiny", seed=1, chunk_size=8, refine_layers=1)
  nnx.update(refined, nnx.state(plain, nnx.Param))
  c = clip(1)
  a, b = run(plain, as_batch(c)), run(refined, as_batch(c))
  np.testing.assert_array_equal(b.c2w, a.c2w)
  np.testing.assert_array_equal(b.xyz_world, a.xyz_world)
  rng = np.random.default_rng(0)
  kernel = refined.refine_head.kernel
  kernel[...] = jnp.asarray(rng.normal(size=kernel[...].shape) * 0.05, jnp.float32)
  moved = run(refined, as_batch(c))
  assert np.abs(np.asarray(moved.c2w) - np.asarray(a.c2w)).max() > 1e-3
  perm = rng.permutation(c.num_tracks)
  p = run(refined, as_batch(select_tracks(c, perm)))
  assert_same_cameras(p.c2w, moved.c2w)
  np.testing.assert_allclose(p.xyz_world, np.asarray(moved.xyz_world)[:, :, perm], rtol=2e-3, atol=1e-3)
  t, n = c.num_frames, c.num_tracks
  padded = pad_tracks(c, t + 3, n + 7)
  xy = np.array(padded.xy_px)
  xy[t:] = rng.normal(size=xy[t:].shape) * 500
  q = run(refined, as_batch(padded.replace(xy_px=xy)))
  assert_same_cameras(q.c2w[:, :t], moved.c2w)
  with pytest.raises(ValueError, match="ModelConfig.refine_layers: only with triangulate_static=True"):
    model.model_config("tiny", refine_layers=1, triangulate_static=False)
  with pytest.raises(ValueError, match=r"ModelConfig.refine_layers: expected >= 0"):
    model.model_config("tiny", refine_layers=-1)
