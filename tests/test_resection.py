"""Camera resection (model/resection.py) and `ModelConfig.resection_steps`."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tracks4d import geometry, model, synthetic
from tracks4d.model.resection import resection_step
from tracks4d.synthetic.sampling import TrackerNoise
from tracks4d.tracks import batch_tracks, pad_tracks, select_tracks

CLEAN = synthetic.SyntheticConfig(num_frames=(12, 12), grid_size=6, query_stride=6, camera_paths=("orbit",),
                                  noise=TrackerNoise(noise_px=0.0, outlier_frac=0.0, drop_frac=0.0))
step_jit = jax.jit(resection_step)


def _static_orbit():
  c = synthetic.generate_clip(CLEAN, seed=7, index=0, family="static")
  xy = geometry.pixels_to_normalized(np.asarray(c.xy_px, np.float64), np.asarray(c.intrinsics, np.float64))
  c2w = geometry.invert_pose(np.asarray(c.gt.w2c, np.float64))
  return c, xy, c2w, np.asarray(c.gt.xyz_world, np.float64)[0]  # Static: the same points in every frame.


def _errors(rot6d, centre, c2w):
  """(mean rotation error in degrees, mean centre error) against the truth."""
  rot = np.asarray(geometry.rot6d_to_matrix(np.asarray(rot6d[0], np.float64)))
  rel = np.swapaxes(rot, -1, -2) @ c2w[:, :3, :3]
  return (np.degrees(np.linalg.norm(geometry.matrix_to_axis_angle(rel), axis=-1)).mean(),
          np.linalg.norm(np.asarray(centre[0]) - c2w[:, :3, 3], axis=-1).mean())


def _inputs(c, xy, c2w, points, rot_noise=0.03, centre_noise=0.05, seed=0):
  rng = np.random.default_rng(seed)
  t = c.num_frames
  rot = c2w[:, :3, :3] @ geometry.axis_angle_to_matrix(rng.normal(scale=rot_noise, size=(t, 3)))
  f32 = lambda a: jnp.asarray(np.asarray(a)[None], jnp.float32)
  return dict(rot6d=f32(geometry.matrix_to_rot6d(rot)), centre=f32(c2w[:, :3, 3] + rng.normal(scale=centre_noise,
                                                                                                size=(t, 3))),
              log_focal=jnp.zeros((1, t)), static=f32(points), xy_norm=f32(xy), valid=jnp.asarray(c.visible)[None],
              track_weight=jnp.ones((1, c.num_tracks)))


def test_steps_converge_to_the_true_cameras_of_a_static_scene():
  """Perturbed true cameras (about 2.5 deg, 0.09 units) with the true points: each
  Gauss-Newton step cuts the error by more than 5x, and the last ones by far more
  (quadratic convergence: the Jacobian is right)."""
  c, xy, c2w, points = _static_orbit()
  inp = _inputs(c, xy, c2w, points)
  errs = [_errors(inp["rot6d"], inp["centre"], c2w)]
  for _ in range(3):
    inp["rot6d"], inp["centre"] = step_jit(**inp)
    errs.append(_errors(inp["rot6d"], inp["centre"], c2w))
  assert errs[0][0] > 1.0 and errs[0][1] > 0.03, errs
  for before, after in zip(errs, errs[1:]):
    assert after[0] < 0.2 * before[0] and after[1] < 0.2 * before[1], errs
  assert errs[-1][0] < 0.01 and errs[-1][1] < 1e-3, errs


def test_outliers_are_downweighted_and_unusable_frames_keep_their_camera():
  c, xy, c2w, points = _static_orbit()
  inp = _inputs(c, xy, c2w, points)
  # A tenth of the tracks jump by 0.3 (normalised units, ~150 px) in every frame.
  xy_bad = np.array(xy)
  bad = np.arange(c.num_tracks) % 10 == 0
  xy_bad[:, bad] += 0.3
  inp["xy_norm"] = jnp.asarray(xy_bad[None], jnp.float32)
  for _ in range(4):
    inp["rot6d"], inp["centre"] = step_jit(**inp)
  rot_err, centre_err = _errors(inp["rot6d"], inp["centre"], c2w)
  assert rot_err < 0.05 and centre_err < 5e-3, (rot_err, centre_err)
  # Frame 3 with two visible tracks (a pose needs three) and frame 5 with none keep their cameras.
  inp = _inputs(c, xy, c2w, points)
  valid = np.array(inp["valid"])
  valid[0, 3, 2:] = False
  valid[0, 5] = False
  inp["valid"] = jnp.asarray(valid)
  rot6d, centre = step_jit(**inp)
  for i in (3, 5):
    np.testing.assert_array_equal(centre[0, i], inp["centre"][0, i])
    np.testing.assert_allclose(rot6d[0, i], inp["rot6d"][0, i], atol=1e-6)
  assert np.abs(np.asarray(centre[0, 4] - inp["centre"][0, 4])).max() > 1e-3


def test_network_with_resection_steps_follows_permutations_and_ignores_padding():
  """`resection_steps` in the network: it moves the cameras, adds no parameters,
  keeps the outputs equivariant to track order, ignores padding, and its gradients
  are finite."""
  from flax import nnx

  plain = model.create_model("tiny", seed=1, chunk_size=8)
  resected = model.create_model("tiny", seed=1, chunk_size=8, resection_steps=1)
  assert model.num_parameters(resected) == model.num_parameters(plain)
  c = synthetic.generate_clip(synthetic.SyntheticConfig(num_frames=(12, 12), grid_size=6, query_stride=6), 0, 1)
  run = lambda net, clip: model.forward_jit(net, jax.tree.map(jnp.asarray, batch_tracks([clip])))
  a, b = run(plain, c), run(resected, c)
  assert np.abs(np.asarray(b.c2w) - np.asarray(a.c2w)).max() > 1e-4
  perm = np.random.default_rng(0).permutation(c.num_tracks)
  p = run(resected, select_tracks(c, perm))
  np.testing.assert_allclose(p.c2w[..., :3, :3], b.c2w[..., :3, :3], atol=1e-4)
  np.testing.assert_allclose(p.c2w[..., :3, 3], b.c2w[..., :3, 3], atol=1e-4 * 15.0)
  t, n = c.num_frames, c.num_tracks
  padded = pad_tracks(c, t + 3, n + 5)
  xy = np.array(padded.xy_px)
  xy[t:] = np.random.default_rng(1).normal(size=xy[t:].shape) * 500
  q = run(resected, padded.replace(xy_px=xy))
  np.testing.assert_allclose(q.c2w[:, :t, :3, :3], b.c2w[..., :3, :3], atol=1e-4)
  graphdef, params = nnx.split(resected, nnx.Param)
  batch = jax.tree.map(jnp.asarray, batch_tracks([c]))
  grads = jax.jit(jax.grad(lambda p: model.forward(nnx.merge(graphdef, p), batch).depth.mean()))(params)
  assert all(bool(jnp.isfinite(g).all()) for g in jax.tree.leaves(grads))
  with pytest.raises(ValueError, match="ModelConfig.resection_steps: only with triangulate_static=True"):
    model.model_config("tiny", resection_steps=1, triangulate_static=False)
  with pytest.raises(ValueError, match=r"ModelConfig.resection_steps: expected >= 0"):
    model.model_config("tiny", resection_steps=-1)
