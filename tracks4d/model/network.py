"""The tracks-to-4D network (flax NNX): 2D tracks in, cameras and low-rank 3D motion out.

Per (frame, track) token: Fourier features of (x, y, visible) in normalised
camera coordinates -> LayerNorm -> Linear -> LayerNorm. Blocks alternate a
transformer layer over time (per track, rotary frame positions) with one over
tracks (per frame, no positional encoding: the network is equivariant to track
permutations). Occluded and padded tokens are masked as attention keys and in
every pooling.

Heads (REFERENCE.md section 1, without the peer's circular time convolution):
  per frame: masked mean over tracks -> time-attention layer(s) -> camera centre
    c_t (3), focal factor (1), K-1 basis coefficients (the first fixed to 1),
    6D rotation (6); initialised at the camera prior (identity, centre_prior).
    With `camera_init="factorization"` the head's output is also applied on top of
    a rigid factorisation's cameras (model/camera_init.py), and each clip keeps
    the start whose static points explain the tracks better (`_choose_start`).
  per track: masked mean over time -> basis B_j (3 x K) and movement level
    gamma_j = ELU(.) + 1 + 1e-5. With `triangulate_static`, the static point
    B_j^0 is the closed-form triangulation of the track under the predicted
    cameras, with the head's point as ridge prior (model/triangulation.py).
  With `refine_layers`, a learned update then corrects the cameras from how the
    static points fit under them (`_refine`), and the static points are
    triangulated again. With `resection_steps`, parameter-free Gauss-Newton
    steps fit each frame's camera to the static points (model/resection.py),
    each followed by the triangulation. With `fallback_residual`, in clips that
    start from a factorisation, the tracks whose static points do not fit are
    then pulled to the clip's typical depth (triangulation.fallback_static).

Shapes: b batch, t frames, n tracks, d width, k bases.
"""

from __future__ import annotations

import einops
import jax
import jax.numpy as jnp
from flax import nnx

from tracks4d import geometry
from tracks4d.model.attention import TransformerLayer
from tracks4d.model.camera_init import factorization_cameras
from tracks4d.model.config import ModelConfig
from tracks4d.model.outputs import RawOutputs, dynamic_fit, occlusion_order, static_projection, static_score
from tracks4d.model.resection import resection_step
from tracks4d.model.triangulation import fallback_static, second_body, triangulate_static

_IDENTITY_6D = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
# Bound of the difference in occlusion-order evidence between two mirrors that
# enters their scores: a clip's few hidden points cannot outweigh a large
# difference in the static fit.
OCCLUSION_ORDER_CLIP = 0.5
# Scales of the residual features of the camera refinement: normalised-coordinate
# residuals are squashed by tanh(scale * r), resolving about 0.3 to 0.001.
REFINE_RESIDUAL_SCALES = (3.0, 30.0, 300.0)
# Per token: tanh-squashed residual (x, y) at each scale, log depth minus the
# frame's mean log depth (clipped), validity.
REFINE_FEATURES = 2 * len(REFINE_RESIDUAL_SCALES) + 2


def fourier_features(x, num_freqs: int):
  """x (..., c) -> (..., c * (1 + 2 num_freqs) + 1): raw values, sin/cos of
  2^j pi x for j < num_freqs, and a constant 1."""
  freqs = (2.0 ** jnp.arange(num_freqs)) * jnp.pi
  ang = x[..., None] * freqs
  feats = jnp.concatenate([x[..., None], jnp.sin(ang), jnp.cos(ang)], axis=-1)
  feats = einops.rearrange(feats, "... c f -> ... (c f)")
  return jnp.concatenate([feats, jnp.ones_like(x[..., :1])], axis=-1)


def masked_mean(x, mask, axis: int):
  """Mean of x (…, d) over `axis` where mask (…) is True; zero where none is."""
  m = mask[..., None].astype(x.dtype)
  return (x * m).sum(axis) / jnp.maximum(m.sum(axis), 1.0)


class Tracks4DNet(nnx.Module):
  """Maps normalised 2D tracks to raw per-frame and per-track predictions.

  Example:
    >>> net = Tracks4DNet(model_config("tiny"), rngs=nnx.Rngs(0))
    >>> raw = net(xy_norm, visible, frame_mask, track_mask)   # RawOutputs
  """

  def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
    self.cfg = cfg
    dt = cfg.compute_dtype
    in_dim = 3 * (1 + 2 * cfg.num_freqs) + 1
    self.embed_norm_in = nnx.LayerNorm(in_dim, rngs=rngs)
    self.embed = nnx.Linear(in_dim, cfg.dim, dtype=dt, rngs=rngs)
    self.embed_norm_out = nnx.LayerNorm(cfg.dim, dtype=dt, rngs=rngs)

    def layer():
      return TransformerLayer(cfg.dim, cfg.num_heads, cfg.head_dim, cfg.mlp_dim, impl=cfg.attention,
                              chunk_size=cfg.chunk_size, dtype=dt, rngs=rngs)

    self.time_layers = nnx.List([layer() for _ in range(cfg.num_blocks)])
    self.track_layers = nnx.List([layer() for _ in range(cfg.num_blocks)])
    self.frame_layers = nnx.List([layer() for _ in range(cfg.head_layers)])
    self.frame_norm = nnx.LayerNorm(cfg.dim, rngs=rngs)
    k = cfg.num_bases
    zeros = nnx.initializers.zeros
    self.frame_head = nnx.Linear(cfg.dim, 3 + 1 + (k - 1) + 6, kernel_init=zeros, rngs=rngs)
    self.track_norm = nnx.LayerNorm(cfg.dim, rngs=rngs)
    self.track_head = nnx.Linear(cfg.dim, 3 * k + 1, rngs=rngs)
    if cfg.refine_layers:
      self.refine_embed = nnx.Linear(REFINE_FEATURES, cfg.dim, dtype=dt, rngs=rngs)
      self.refine_time_layers = nnx.List([layer() for _ in range(cfg.refine_layers)])
      self.refine_norm = nnx.LayerNorm(cfg.dim, rngs=rngs)
      self.refine_head = nnx.Linear(cfg.dim, 6 + 3, kernel_init=zeros, rngs=rngs)

  def __call__(self, xy_norm, visible, frame_mask, track_mask) -> RawOutputs:
    """Runs the network.

    Args:
      xy_norm: (b, t, n, 2) normalised camera coordinates.
      visible: (b, t, n) bool tracker visibility.
      frame_mask: (b, t) bool, False on padded frames.
      track_mask: (b, n) bool, False on padded tracks.

    Returns:
      RawOutputs with per-frame (b, t, ...) and per-track (b, n, ...) fields.
    """
    cfg = self.cfg
    b, t, n, _ = xy_norm.shape
    valid = visible & frame_mask[:, :, None] & track_mask[:, None, :]
    real = frame_mask[:, :, None] & track_mask[:, None, :]
    inp = jnp.concatenate([xy_norm * real[..., None], valid[..., None].astype(xy_norm.dtype)], axis=-1)
    x = self.embed_norm_out(self.embed(self.embed_norm_in(fourier_features(inp, cfg.num_freqs))))
    x = x.astype(cfg.compute_dtype)
    frame_pos = jnp.broadcast_to(jnp.arange(t), (b * n, t))
    time_mask = einops.rearrange(valid, "b t n -> (b n) t")
    track_mask_bt = einops.rearrange(valid, "b t n -> (b t) n")
    for time_layer, track_layer in zip(self.time_layers, self.track_layers):
      x = einops.rearrange(x, "b t n d -> (b n) t d")
      x = time_layer(x, time_mask, frame_pos)
      x = einops.rearrange(x, "(b n) t d -> (b t) n d", b=b)
      x = track_layer(x, track_mask_bt)
      x = einops.rearrange(x, "(b t) n d -> b t n d", b=b)
    x = x.astype(jnp.float32)

    # Per-frame head.
    prior = jnp.asarray(cfg.centre_prior, jnp.float32)
    f = masked_mean(x, valid, axis=2)  # (b, t, d)
    for layer in self.frame_layers:
      f = layer(f, frame_mask, jnp.broadcast_to(jnp.arange(t), (b, t)))
    f = self.frame_head(self.frame_norm(f))
    k = cfg.num_bases
    log_focal = f[..., 3] if cfg.focal_correction else jnp.zeros_like(f[..., 3])
    coeff = jnp.concatenate([jnp.ones_like(f[..., :1]), f[..., 4:4 + k - 1]], axis=-1)
    rot6d = f[..., 4 + k - 1:] + jnp.asarray(_IDENTITY_6D, jnp.float32)
    centre = f[..., :3] + prior
    # Per-track head.
    g = self.track_head(self.track_norm(masked_mean(x, valid, axis=1)))  # (b, n, 3k + 1)
    bases = einops.rearrange(g[..., :3 * k], "b n (xyz k) -> b n xyz k", xyz=3)
    gamma = jax.nn.elu(g[..., -1]) + 1.0 + 1e-5
    ridge = jnp.full(gamma.shape, cfg.triangulation_ridge)  # (b, n)
    if cfg.triangulation_gamma_ref > 0:
      ridge = ridge * (1.0 + (jax.lax.stop_gradient(gamma) / cfg.triangulation_gamma_ref) ** 2)
    static = None  # The triangulated static points, when the choice of start already made them.
    factorised = None  # (b,) bool: the clip's chosen start is a factorisation's.
    if cfg.camera_init == "factorization":
      rot6d, centre, static, factorised = self._choose_start(rot6d, centre, log_focal, bases, coeff, gamma, ridge,
                                                             xy_norm, valid, frame_mask, real)
    prior_static = None
    if cfg.triangulate_static:
      prior_static = bases[..., 0]
      if static is None:
        static = triangulate_static(rot6d, centre, log_focal, xy_norm, valid, bases[..., 0], ridge)
      if cfg.refine_layers:
        rot6d, centre = self._refine(x, rot6d, centre, log_focal, static, xy_norm, valid)
        static = triangulate_static(rot6d, centre, log_focal, xy_norm, valid, bases[..., 0], ridge)
      sg = jax.lax.stop_gradient
      for _ in range(cfg.resection_steps):
        # Straight through: the step's change is a constant for the gradient.
        new_rot6d, new_centre = resection_step(sg(rot6d), sg(centre), sg(log_focal), sg(static), xy_norm, valid,
                                               1.0 / sg(gamma))
        rot6d, centre = rot6d + sg(new_rot6d - rot6d), centre + sg(new_centre - centre)
        static = triangulate_static(rot6d, centre, log_focal, xy_norm, valid, bases[..., 0], ridge)
      if cfg.fallback_residual > 0:
        fallback = fallback_static(rot6d, centre, log_focal, xy_norm, valid, static, bases[..., 0], ridge,
                                   cfg.fallback_residual, cfg.fallback_relative)
        if cfg.fallback_second_body:  # Only where the unexplained tracks move as a body of their own.
          factorised = factorised & second_body(rot6d, centre, log_focal, xy_norm, valid, frame_mask, static,
                                                bases[..., 0], ridge, cfg.centre_prior)
        static = jnp.where(factorised[:, None, None], fallback, static)
      bases = bases.at[..., 0].set(static)
    return RawOutputs(rot6d=rot6d, centre=centre, log_focal=log_focal, coeff=coeff, bases=bases, gamma=gamma,
                      prior_static=prior_static)

  def _refine(self, x, rot6d, centre, log_focal, static, xy_norm, valid):
    """The cameras corrected by the refinement (`ModelConfig.refine_layers`).

    Each token x (b, t, n, d) gets an embedding of how its static point fits
    under the current cameras (the reprojection residual at several scales and
    the log depth relative to its frame's mean log depth, under stop-gradient: the
    refinement reads the fit, as a learned update step would); time attention
    per track, a masked mean over tracks and a zero-initialised read-out give a
    per-frame rotation (6D, on top of the identity) and centre offset, applied
    after the current cameras: R <- R R_refine, c <- c + offset.

    Returns:
      (rot6d (b, t, 6), centre (b, t, 3)).
    """
    cfg = self.cfg
    sg = jax.lax.stop_gradient
    b, t, n, _ = x.shape
    xy, depth = static_projection(sg(rot6d), sg(centre), sg(log_focal), sg(static))
    w = valid.astype(depth.dtype)
    log_z = jnp.log(jnp.maximum(depth, 1e-3))
    mean_log_z = (log_z * w).sum(2, keepdims=True) / jnp.maximum(w.sum(2, keepdims=True), 1.0)
    resid = (xy - xy_norm) * w[..., None]
    feats = [jnp.tanh(s * resid) for s in REFINE_RESIDUAL_SCALES]
    feats += [jnp.clip(log_z - mean_log_z, -3.0, 3.0)[..., None] * w[..., None], w[..., None]]
    y = x + self.refine_embed(jnp.concatenate(feats, -1).astype(x.dtype)).astype(x.dtype)
    y = einops.rearrange(y.astype(cfg.compute_dtype), "b t n d -> (b n) t d")
    time_mask = einops.rearrange(valid, "b t n -> (b n) t")
    frame_pos = jnp.broadcast_to(jnp.arange(t), (b * n, t))
    for layer in self.refine_time_layers:
      y = layer(y, time_mask, frame_pos)
    y = einops.rearrange(y, "(b n) t d -> b t n d", b=b).astype(jnp.float32)
    out = self.refine_head(self.refine_norm(masked_mean(y, valid, axis=2)))  # (b, t, 9)
    step = geometry.rot6d_to_matrix(out[..., :6] + jnp.asarray(_IDENTITY_6D, jnp.float32))
    return geometry.matrix_to_rot6d(geometry.rot6d_to_matrix(rot6d) @ step), centre + out[..., 6:]

  def _choose_start(self, rot6d, centre, log_focal, bases, coeff, gamma, ridge, xy_norm, valid, frame_mask, real):
    """Per clip, the head's cameras from the prior start or on top of the factorisation's.

    Returns (rot6d, centre, static points triangulated under them (b, n, 3),
    (b,) bool: the chosen start is a factorisation's, not the prior).

    Three candidates get the head's per-frame correction (rotation R_head, centre
    offset): the prior start (R_head, prior + offset) and each mirror of the
    factorisation (R_fact R_head, c_fact + offset). Each is scored by the static
    loss term, mean log(gamma + r^2 / gamma) over valid entries, with r the
    reprojection error of its triangulated static points (ridge to `own_static`);
    the lowest score wins, the prior on ties (a hard choice under stop-gradient;
    the chosen cameras keep their gradients). Where nothing is static but the
    content moves rigidly enough (a person filmed by a turning camera) the
    factorisation explains the tracks as static and wins; in scenes with a static
    background seen in perspective, the prior start usually does. Scoring both
    mirrors after triangulation, rather than trusting the factorisation's own
    weak-perspective pick, matters for deforming content that turns in front of a
    still camera (the CMU "dance" sequence). With `start_score_weights`, the
    score also has the loss's dynamic reprojection and negative-depth terms of
    the full model (those static points plus the bases' motion). With `occlusion_weight`, the two
    mirrors' scores also weigh which of them puts the tracker's hidden points
    behind the visible ones (outputs.occlusion_order).
    """
    cfg = self.cfg
    sg = jax.lax.stop_gradient
    own_static = bases[..., 0]
    prior = jnp.asarray(cfg.centre_prior, jnp.float32)
    fact_rot6d, fact_centre, _ = factorization_cameras(xy_norm, valid, frame_mask, cfg.centre_prior,
                                                       both_mirrors=True)  # (b, 2, t, 6), (b, 2, t, 3)
    b, t = rot6d.shape[:2]
    # Starts (c: prior, mirror 1, mirror 2), each a rotation and centre per frame.
    init_rot = jnp.concatenate([jnp.broadcast_to(jnp.eye(3), (b, 1, t, 3, 3)),
                                geometry.rot6d_to_matrix(fact_rot6d)], 1)  # (b, c, t, 3, 3)
    init_centre = jnp.concatenate([jnp.broadcast_to(prior, (b, 1, t, 3)), fact_centre], 1)  # (b, c, t, 3)
    usable = jnp.isfinite(init_rot).all((2, 3, 4)) & jnp.isfinite(init_centre).all((2, 3))  # (b, c)
    init_rot = jnp.where(usable[..., None, None, None], init_rot, jnp.eye(3))
    init_centre = jnp.where(usable[..., None, None], init_centre, prior)
    num = init_rot.shape[1]

    def apply(rot, cen, head_rot6d, head_centre):  # The head's correction on top of a start.
      return geometry.matrix_to_rot6d(rot @ geometry.rot6d_to_matrix(head_rot6d)), cen + (head_centre - prior)

    # Scoring is under stop-gradient: only the chosen start carries gradients, so
    # nothing from the others (e.g. an ill-conditioned solve) reaches the update.
    head_rot6d = jnp.broadcast_to(sg(rot6d)[:, None], (b, num) + rot6d.shape[1:])  # (b, c, t, 6)
    head_centre = jnp.broadcast_to(sg(centre)[:, None], (b, num) + centre.shape[1:])  # (b, c, t, 3)
    use_head = jnp.ones((b, num), bool)
    if cfg.uncorrected_starts:  # The same starts again, without the head's correction.
      head_rot6d = jnp.concatenate([head_rot6d, jnp.broadcast_to(jnp.asarray(_IDENTITY_6D, jnp.float32),
                                                                 head_rot6d.shape)], 1)
      head_centre = jnp.concatenate([head_centre, jnp.broadcast_to(prior, head_centre.shape)], 1)
      init_rot, init_centre, usable = (jnp.concatenate([x, x], 1) for x in (init_rot, init_centre, usable))
      use_head = jnp.concatenate([use_head, ~use_head], 1)
      num = 2 * num
    per_clip = lambda x: einops.repeat(sg(x), "b ... -> (b c) ...", c=num)
    flat = lambda x: einops.rearrange(x, "b c ... -> (b c) ...")
    cand_rot6d, cand_centre = apply(flat(init_rot), flat(init_centre), flat(head_rot6d), flat(head_centre))
    lf, xy, v = per_clip(log_focal), per_clip(xy_norm), per_clip(valid)
    cand_static = triangulate_static(cand_rot6d, cand_centre, lf, xy, v, per_clip(own_static), per_clip(ridge))
    score = static_score(cand_rot6d, cand_centre, lf, cand_static, per_clip(gamma), xy, v)
    dynamic_weight, negative_depth_weight = cfg.start_score_weights
    if dynamic_weight or negative_depth_weight:  # The rest of the training loss, with the bases' motion.
      motion = jnp.einsum("btk,bnxk->btnx", coeff[..., 1:], bases[..., 1:])  # (b, t, n, 3), as decode has it
      dyn, neg = dynamic_fit(cand_rot6d, cand_centre, lf, cand_static, per_clip(motion), xy, v)
      score = score + dynamic_weight * dyn + negative_depth_weight * neg
    if cfg.occlusion_weight > 0:
      # Between the two mirrors of a factorisation, prefer the depth order that the
      # tracker's hidden points imply; the pair's mean score, and so the contest
      # with the prior start, stays as it was.
      order = occlusion_order(cand_rot6d, cand_centre, cand_static, xy, per_clip(valid), per_clip(real))
      order = einops.rearrange(order, "(b g s) -> b g s", b=b, s=3)  # g: corrected (, uncorrected); s: starts
      diff = jnp.clip(order[..., 1] - order[..., 2], -OCCLUSION_ORDER_CLIP, OCCLUSION_ORDER_CLIP)  # (b, g)
      diff = jnp.where(jnp.isfinite(diff), diff, 0.0)  # An unusable mirror must not disqualify the other.
      shift = 0.5 * cfg.occlusion_weight * jnp.stack([jnp.zeros_like(diff), -diff, diff], -1)
      score = score + einops.rearrange(shift, "b g s -> (b g s)")
    score = jnp.where(flat(usable) & jnp.isfinite(score), score, jnp.inf)
    best = jnp.argmin(einops.rearrange(score, "(b c) -> b c", c=num), axis=1)  # (b,); the first on ties
    pick = lambda x: jnp.take_along_axis(x, best.reshape((-1,) + (1,) * (x.ndim - 1)), axis=1)[:, 0]
    corrected = pick(use_head)[:, None, None]  # (b, 1, 1)
    rot6d = jnp.where(corrected, rot6d, jnp.asarray(_IDENTITY_6D, jnp.float32))
    centre = jnp.where(corrected, centre, prior)
    rot6d, centre = apply(pick(init_rot), pick(init_centre), rot6d, centre)
    static = triangulate_static(rot6d, centre, log_focal, xy_norm, valid, own_static, ridge)
    return rot6d, centre, static, best % 3 != 0  # Starts in each group: prior, mirror 1, mirror 2.
