"""Scores of reconstructions against ground truth, per clip and averaged.

Depth at track points (AbsRel, delta < 1.25) with the paper's per-frame median
scale and with one scale per clip, all tracks and dynamic tracks; camera poses by
ATE after Sim(3) alignment (also relative to the median ground-truth depth, so
scenes of different scale average fairly) and RPE (translation, rotation in degrees).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from tracks4d import metrics
from tracks4d import model as model_lib
from tracks4d.tracks import Tracks, batch_tracks


@dataclasses.dataclass(frozen=True)
class ClipScores:
  """Scores of one clip (NaN where undefined, e.g. no dynamic track)."""

  abs_rel: float
  delta_1: float
  abs_rel_dyn: float
  delta_1_dyn: float
  abs_rel_clip_scale: float
  delta_1_clip_scale: float
  ate: float
  ate_rel: float
  rpe_trans: float
  rpe_rot_deg: float


@dataclasses.dataclass(frozen=True)
class Reconstruction3D:
  """The minimal prediction the scores need, for one clip.

  Attributes:
    w2c: (t, 4, 4) predicted world-to-camera poses.
    depth: (t, n) predicted depth of each track.
  """

  w2c: np.ndarray
  depth: np.ndarray


def score_clip(pred: Reconstruction3D, clip: Tracks) -> ClipScores:
  """Scores one clip with ground truth on its visible entries with known depth."""
  if clip.gt is None:
    raise ValueError("score_clip: the clip has no ground truth (gt).")
  valid = np.asarray(clip.visible) & (np.asarray(clip.gt.depth) > 0)
  dyn = np.asarray(clip.gt.dynamic)
  per_frame = metrics.depth_metrics(pred.depth, clip.gt.depth, valid=valid, dynamic=dyn, scaling="per_frame")
  per_clip = metrics.depth_metrics(pred.depth, clip.gt.depth, valid=valid, dynamic=dyn, scaling="per_clip")
  pose = metrics.pose_metrics(pred.w2c, clip.gt.w2c)
  scale = float(np.median(np.asarray(clip.gt.depth)[valid]))
  return ClipScores(abs_rel=per_frame.abs_rel, delta_1=per_frame.delta_1, abs_rel_dyn=per_frame.abs_rel_dyn,
                    delta_1_dyn=per_frame.delta_1_dyn, abs_rel_clip_scale=per_clip.abs_rel,
                    delta_1_clip_scale=per_clip.delta_1, ate=pose.ate, ate_rel=pose.ate / scale,
                    rpe_trans=pose.rpe_trans, rpe_rot_deg=pose.rpe_rot_deg)


def mean_scores(scores: Sequence[ClipScores]) -> dict[str, float]:
  """Mean of each score over clips, ignoring NaN (e.g. clips with no dynamic track)."""
  out = {}
  for field in dataclasses.fields(ClipScores):
    vals = np.array([getattr(s, field.name) for s in scores], np.float64)
    out[field.name] = float(np.nanmean(vals)) if np.isfinite(vals).any() else float("nan")
  return out


def predict_with_model(net: model_lib.Tracks4DNet, clips: Sequence[Tracks], batch_size: int = 8,
                       pad_to: tuple[int, int] | None = None, static_only: bool = False) -> list[Reconstruction3D]:
  """Feed-forward predictions for clips, in padded batches of one fixed shape
  (so the network compiles once).

  With `static_only`, the depth is that of the static points B^0 alone
  (`Prediction.depth_static`: the motion bases left out), which measures what
  the predicted motion adds to the depth."""
  t = pad_to[0] if pad_to else max(c.num_frames for c in clips)
  n = pad_to[1] if pad_to else max(c.num_tracks for c in clips)
  out = []
  for i in range(0, len(clips), batch_size):
    group = list(clips[i:i + batch_size])
    filler = group[-1:] * (batch_size - len(group))  # Keep the batch shape fixed.
    batch = jax.tree.map(jnp.asarray, batch_tracks(group + filler, t, n))
    pred = model_lib.forward_jit(net, batch)
    w2c, depth = np.asarray(pred.w2c), np.asarray(pred.depth_static if static_only else pred.depth)
    for j, c in enumerate(group):
      out.append(Reconstruction3D(w2c=w2c[j, :c.num_frames], depth=depth[j, :c.num_frames, :c.num_tracks]))
  return out


def identity_constant_depth(clip: Tracks) -> Reconstruction3D:
  """The trivial baseline: every camera at the identity, every depth 1."""
  t, n = clip.num_frames, clip.num_tracks
  return Reconstruction3D(w2c=np.broadcast_to(np.eye(4), (t, 4, 4)).copy(), depth=np.ones((t, n)))


def evaluate(predict: Callable[[Sequence[Tracks]], list[Reconstruction3D]], clips: Sequence[Tracks],
             groups: Sequence[str] | None = None) -> dict[str, dict[str, float]]:
  """Mean scores over all clips and per group (e.g. scene family).

  Returns:
    {"all": scores, group: scores, ...}.
  """
  preds = predict(clips)
  scores = [score_clip(p, c) for p, c in zip(preds, clips)]
  out = {"all": mean_scores(scores)}
  if groups is not None:
    for g in sorted(set(groups)):
      out[g] = mean_scores([s for s, gg in zip(scores, groups) if gg == g])
  return out
