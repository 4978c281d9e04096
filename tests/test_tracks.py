"""The Tracks container: validation errors, padding and batching."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from tracks4d import geometry
from tracks4d.tracks import (GroundTruth, Tracks, batch_tracks, pad_tracks, select_frames, select_tracks,
                             unbatch_tracks, validate)


def make_clip(t=5, n=7, seed=0, gt=True):
  rng = np.random.default_rng(seed)
  xy = rng.uniform(0, 100, size=(t, n, 2)).astype(np.float32)
  vis = rng.uniform(size=(t, n)) < 0.8
  vis[0] = True
  truth = None
  if gt:
    w2c = geometry.make_pose(geometry.axis_angle_to_matrix(rng.normal(size=(t, 3)) * 0.1), rng.normal(size=(t, 3)))
    truth = GroundTruth(w2c=w2c, depth=rng.uniform(1, 5, size=(t, n)), xyz_world=rng.normal(size=(t, n, 3)),
                        dynamic=rng.uniform(size=(t, n)) < 0.3)
  return Tracks.create(xy, vis, image_hw=(120, 160), intrinsics=geometry.make_intrinsics(100, 100, 80, 60), gt=truth)


def test_create_fills_defaults():
  clip = make_clip()
  assert clip.xy_px.dtype == np.float32 and clip.visible.dtype == np.bool_
  assert clip.intrinsics.shape == (5, 3, 3) and bool(clip.intrinsics_known)
  assert clip.frame_mask.all() and clip.track_mask.all()
  np.testing.assert_array_equal(clip.query_frame, 0)  # First visible frame.
  guessed = Tracks.create(clip.xy_px, clip.visible, image_hw=(120, 160))
  assert not bool(guessed.intrinsics_known)
  np.testing.assert_allclose(guessed.intrinsics[0, 0, 0], 140.0)  # (w + h) / 2.


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(xy_px=np.zeros((5, 7))), r"tracks\.xy_px: expected shape \(t, n, 2\)"),
        (dict(xy_px=np.zeros((1, 7, 2))), "at least 2 frames"),
        (dict(xy_px=np.zeros((5, 0, 2)), visible=np.zeros((5, 0), bool)), "no tracks"),
        (dict(visible=np.ones((5, 7), np.float32)), r"tracks\.visible: expected a boolean"),
        (dict(visible=np.zeros((5, 7), bool)), "no visible entry"),
        (dict(visible=np.ones((4, 7), bool)), r"tracks\.visible: expected shape \(5, 7\)"),
        (dict(intrinsics=np.eye(3) * -1), "focal lengths"),
        (dict(intrinsics=np.ones((4, 3, 3))), r"tracks\.intrinsics: expected shape \(5, 3, 3\)"),
        (dict(image_hw=(0, 10)), "must be positive"),
        (dict(query_frame=np.full(7, 9)), r"query_frame: expected frame indices in \[0, 5\)"),
    ],
)
def test_bad_input_names_the_field(kwargs, match):
  args = dict(xy_px=np.zeros((5, 7, 2)), visible=np.ones((5, 7), bool), image_hw=(10, 10))
  args.update(kwargs)
  with pytest.raises(ValueError, match=match):
    Tracks.create(**args)


def test_nan_is_reported_with_its_index():
  xy = np.zeros((5, 7, 2))
  xy[2, 3, 1] = np.nan
  with pytest.raises(ValueError, match=r"xy_px: expected finite values; found 1 NaN/inf \(first at index \(2, 3, 1\)\)"):
    Tracks.create(xy, np.ones((5, 7), bool), image_hw=(10, 10))


def test_gt_shapes_are_checked():
  clip = make_clip()
  bad = clip.gt.replace(depth=clip.gt.depth[:, :3])
  with pytest.raises(ValueError, match=r"gt\.depth: expected shape \(5, 7\)"):
    validate(clip.replace(gt=bad))
  skew = clip.gt.w2c.copy()
  skew[0, 0, 0] = 3.0
  with pytest.raises(ValueError, match="not orthonormal"):
    validate(clip.replace(gt=clip.gt.replace(w2c=skew)))


def test_pad_refuses_to_cut():
  with pytest.raises(ValueError, match="nothing is cut"):
    pad_tracks(make_clip(t=5, n=7), 4, 10)


def test_batch_round_trip_and_masks():
  clips = [make_clip(t=5, n=7, seed=0), make_clip(t=3, n=9, seed=1), make_clip(t=6, n=2, seed=2)]
  batch = batch_tracks(clips)
  assert batch.xy_px.shape == (3, 6, 9, 2)
  np.testing.assert_array_equal(batch.frame_mask.sum(1), [5, 3, 6])
  np.testing.assert_array_equal(batch.track_mask.sum(1), [7, 9, 2])
  # Padded entries are never valid; padded frames repeat the last camera.
  assert not batch.valid[1, 3:].any() and not batch.valid[2, :, 2:].any()
  np.testing.assert_array_equal(batch.gt.w2c[1, 4], clips[1].gt.w2c[-1])
  for a, b in zip(unbatch_tracks(batch), clips):
    jax.tree.map(np.testing.assert_array_equal, a, b)


def test_batch_is_a_pytree_through_jit():
  batch = batch_tracks([make_clip(seed=0), make_clip(seed=1)])
  out = jax.jit(lambda tr: (tr.xy_normalized() * tr.valid[..., None]).sum())(batch)
  assert np.isfinite(out)


def test_mixed_ground_truth_is_refused():
  with pytest.raises(ValueError, match="every clip or none"):
    batch_tracks([make_clip(gt=True), make_clip(gt=False)])


def test_select_tracks_and_frames():
  clip = make_clip(t=6, n=7)
  sub = select_tracks(clip, np.array([4, 1]))
  np.testing.assert_array_equal(sub.xy_px, clip.xy_px[:, [4, 1]])
  np.testing.assert_array_equal(sub.gt.xyz_world, clip.gt.xyz_world[:, [4, 1]])
  validate(sub)
  win = select_frames(clip, 2, 5)
  assert win.num_frames == 3 and win.gt.w2c.shape == (3, 4, 4)
  validate(win)
