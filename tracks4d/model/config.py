"""Model settings and the named variants.

Variants (`model_config(name)`):
  tiny   d 32, 1 block, 2 x 16 heads, MLP 64, K 4: for CPU tests (28 k parameters).
  small  d 64, 2 blocks, 4 x 16 heads, MLP 256, K 8, one time-attention layer in
         the camera head: the shipped model, sized to train on a 2-core CPU in
         under an hour (0.26 M parameters, 1 MB in fp32).
  peer   d 256, 3 blocks, 16 x 64 heads, MLP 2048, linear camera head: the size
         of TracksTo4D (NeurIPS 2024; about 12.8 M there, 12.66 M here).
small and peer start the cameras from the prior or a rigid factorisation, per clip
(`camera_init="factorization"`); tiny from the prior only.
All three triangulate the static points from the predicted cameras
(`triangulate_static`, model/triangulation.py); the peer predicts them directly,
which a ModelConfig with `triangulate_static=False` reproduces (and checkpoints
saved without the field load that way).
"""

from __future__ import annotations

import ast
import dataclasses

import jax.numpy as jnp

ATTENTION_IMPLS = ("chunked", "full", "cudnn")
CAMERA_INITS = ("prior", "factorization")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Architecture of the tracks-to-4D network.

  Attributes:
    dim: token width d.
    num_blocks: blocks; each is a time-attention layer then a track-attention layer.
    num_heads: attention heads per layer.
    head_dim: width of each head (num_heads * head_dim need not equal dim).
    mlp_dim: hidden width of each layer's MLP.
    num_bases: K, motion bases per track including the static one (the peer uses 12).
    num_freqs: Fourier frequencies 2^j pi, j < num_freqs, per input channel.
    head_layers: time-attention layers in the per-frame camera head.
    focal_correction: predict a per-frame focal-length factor. The synthetic
      training clips have exact intrinsics, so the factor never learns to fix a
      wrong focal length; it can only absorb motion the model does not explain
      (0.90 on the CMU sequences). The shipped `small` model is fine-tuned and
      run without it (its config.json); reconstruct estimates the focal length
      from the tracks instead (reconstruct/intrinsics.py).
    centre_prior: camera centre the heads start from (the peer's warm-up target).
    attention: "chunked" (queries in chunks: memory linear in the number of
      tracks; any backend), "full" (all scores at once) or "cudnn" (fused, GPU).
    chunk_size: query chunk of the chunked attention.
    dtype: compute dtype name ("float32" or "bfloat16"); parameters stay float32.
    triangulate_static: replace the network's static points by their closed-form
      triangulation under the predicted cameras (tracks4d/model/triangulation.py);
      the network's points only act as the ridge prior.
    triangulation_ridge: relative ridge weight of that triangulation.
    triangulation_gamma_ref: when > 0, the ridge of track j grows as
      1 + (gamma_j / triangulation_gamma_ref)^2 (gamma under stop-gradient): a moving
      track's observations are down-weighted like its static residuals, so it keeps
      the network's point instead of a least-squares point that explains nothing.
      0 (default): the same ridge for every track.
    camera_init: where the camera head's output starts. "prior": identity
      rotations and `centre_prior` for every frame. "factorization": per clip,
      either that or the cameras of a rigid factorisation of the tracks, in
      either mirror (model/camera_init.py), whichever gives the lower static
      loss term (Tracks4DNet._choose_start). Adds no parameters, so a model trained with
      "prior" loads and runs with it.
    uncorrected_starts: with "factorization", also score each start without the
      head's correction (the head's output replaced by the identity and the
      prior), so a clip where the correction makes the static fit worse keeps
      the start as it is; the head is then not trained on that clip's cameras.
    occlusion_weight: with "factorization", the two mirrors of the factorisation
      are also weighed by their occlusion-order evidence (outputs.occlusion_order:
      whether the points the tracker marks hidden inside the image lie behind the
      visible ones): the mirror with more evidence has its score lowered, the
      other raised, each by half this weight times the difference (bounded to
      0.5), so the pair's mean and the contest with the prior start are
      unchanged. It tells a factorisation's two mirror images apart where weak
      perspective cannot (content without a static background, seen from far).
      0 (default) leaves the scores as they were; no parameters, no training.
    start_score_weights: (dynamic, negative depth) weights of the loss terms that,
      with "factorization", are added to the static term when scoring the starts:
      the mean dynamic reprojection error and the negative depth of the full model
      (triangulated static points plus the bases' motion) under each start. (0, 0)
      (default): the static term alone; (50, 1): the training loss's own weights
      (LossWeights), so the start is the one the loss prefers.
    refine_layers: time-attention layers of the camera refinement (0: none). After
      the start is chosen and the static points triangulated, each token also sees
      the reprojection residual of its static point under those cameras; the
      refinement attends over time per track, pools over tracks and predicts a
      per-frame rotation and centre correction on top of the chosen cameras (a
      learned update step, its read-out zero-initialised so that an untrained or
      newly added refinement changes nothing). The static points are then
      triangulated again under the refined cameras.
    resection_steps: Gauss-Newton steps of camera resection after that (0: none;
      model/resection.py): each step moves every frame's camera to better fit the
      static points (tracks weighted by 1 / gamma, Cauchy-robust) and triangulates
      the points again: resection-intersection, a cheap bundle adjustment. No
      parameters; the update passes gradients straight through to the cameras it
      starts from.
    fallback_residual: with "factorization", in clips whose chosen start is a
      factorisation (content explained by one rigid motion, no static
      background), the static points are triangulated once more at the end
      (model/triangulation.fallback_static): a track whose rms reprojection
      error is rho gets its ridge grown by 1 + (rho / fallback_residual)^2,
      towards the network's point or a point at the clip's typical depth on its
      rays, whichever reprojects better. Another object's tracks, which one
      rigid fit cannot explain, then get about constant depth instead of an
      arbitrary one. Normalised image units; 0 (default): off. No parameters.
      Off in the shipped model: it helps clips with no static background and
      hurts background scenes that also start from a factorisation
      (BENCHMARKS.md).
    fallback_relative: with fallback_residual, the residual scale set per clip
      to the larger of fallback_residual and this multiple of a low quantile
      (triangulation.FALLBACK_QUANTILE) of the clip's rms residuals, so clips
      whose tracks all fit roughly (a deforming body, a background scene fitted
      by a factorisation) keep their points; 0 (default): the absolute scale.
    fallback_second_body: with fallback_residual, the fallback only in clips
      where the tracks the cameras explain worst move as a rigid body of their
      own (triangulation.second_body: a factorisation of those tracks alone
      explains them much better), a second object; not in clips whose tracks
      all fit the clip's motion roughly. False (default): wherever the chosen
      start is a factorisation. No parameters.
  """

  dim: int = 128
  num_blocks: int = 3
  num_heads: int = 4
  head_dim: int = 32
  mlp_dim: int = 512
  num_bases: int = 12
  num_freqs: int = 12
  head_layers: int = 1
  focal_correction: bool = True
  centre_prior: tuple[float, float, float] = (0.0, 0.0, -15.0)
  attention: str = "chunked"
  chunk_size: int = 256
  dtype: str = "float32"
  triangulate_static: bool = False
  triangulation_ridge: float = 1e-3
  triangulation_gamma_ref: float = 0.0
  camera_init: str = "prior"
  uncorrected_starts: bool = False
  occlusion_weight: float = 0.0
  start_score_weights: tuple[float, float] = (0.0, 0.0)
  refine_layers: int = 0
  resection_steps: int = 0
  fallback_residual: float = 0.0
  fallback_relative: float = 0.0
  fallback_second_body: bool = False

  def __post_init__(self):
    # JSON and ml_collections give lists; keep the config hashable (jit caches on it).
    try:
      object.__setattr__(self, "start_score_weights", tuple(float(w) for w in self.start_score_weights))
    except (TypeError, ValueError) as e:
      raise ValueError("ModelConfig.start_score_weights: expected two numbers (dynamic, negative depth); "
                       f"got {self.start_score_weights!r}.") from e
    for field in ("dim", "num_blocks", "num_heads", "head_dim", "mlp_dim", "num_freqs", "chunk_size"):
      if getattr(self, field) < 1:
        raise ValueError(f"ModelConfig.{field}: expected a positive integer; got {getattr(self, field)}.")
    if self.num_bases < 1:
      raise ValueError(f"ModelConfig.num_bases: expected >= 1 (the static basis); got {self.num_bases}.")
    for field in ("head_layers", "refine_layers", "resection_steps"):
      if getattr(self, field) < 0:
        raise ValueError(f"ModelConfig.{field}: expected >= 0; got {getattr(self, field)}.")
    if self.refine_layers and not self.triangulate_static:
      raise ValueError("ModelConfig.refine_layers: only with triangulate_static=True (it refines the cameras that "
                       "the static points are triangulated under).")
    if self.resection_steps and not self.triangulate_static:
      raise ValueError("ModelConfig.resection_steps: only with triangulate_static=True (the cameras are fitted to "
                       "the triangulated static points).")
    if not self.fallback_residual >= 0:
      raise ValueError(f"ModelConfig.fallback_residual: expected >= 0 (0: off); got {self.fallback_residual}.")
    if not self.fallback_relative >= 0:
      raise ValueError(f"ModelConfig.fallback_relative: expected >= 0 (0: off); got {self.fallback_relative}.")
    if self.fallback_second_body and not self.fallback_residual > 0:
      raise ValueError("ModelConfig.fallback_second_body: only with fallback_residual > 0 (the fallback it "
                       f"gates); got fallback_residual={self.fallback_residual}.")
    if self.fallback_relative > 0 and not self.fallback_residual > 0:
      raise ValueError("ModelConfig.fallback_relative: only with fallback_residual > 0 (its floor); got "
                       f"fallback_residual={self.fallback_residual}.")
    if self.attention not in ATTENTION_IMPLS:
      raise ValueError(f"ModelConfig.attention: expected one of {ATTENTION_IMPLS}; got {self.attention!r}.")
    if self.dtype not in ("float32", "bfloat16"):
      raise ValueError(f"ModelConfig.dtype: expected 'float32' or 'bfloat16'; got {self.dtype!r}.")
    if not self.triangulation_ridge > 0:
      raise ValueError(f"ModelConfig.triangulation_ridge: expected > 0; got {self.triangulation_ridge}.")
    if not self.triangulation_gamma_ref >= 0:
      raise ValueError(f"ModelConfig.triangulation_gamma_ref: expected >= 0; got {self.triangulation_gamma_ref}.")
    if self.camera_init not in CAMERA_INITS:
      raise ValueError(f"ModelConfig.camera_init: expected one of {CAMERA_INITS}; got {self.camera_init!r}.")
    if not self.occlusion_weight >= 0:
      raise ValueError(f"ModelConfig.occlusion_weight: expected >= 0; got {self.occlusion_weight}.")
    if len(self.start_score_weights) != 2 or not all(w >= 0 for w in self.start_score_weights):
      raise ValueError("ModelConfig.start_score_weights: expected two weights >= 0 (dynamic, negative depth); "
                       f"got {self.start_score_weights}.")
    # Settings of the choice among camera starts: they need the factorisation's starts.
    for field, on in (("uncorrected_starts", self.uncorrected_starts), ("occlusion_weight", self.occlusion_weight > 0),
                      ("fallback_residual", self.fallback_residual > 0),
                      ("start_score_weights", any(self.start_score_weights))):
      if on and self.camera_init != "factorization":
        raise ValueError(f"ModelConfig.{field}: only with camera_init='factorization' (the starts it scores); "
                         f"got camera_init={self.camera_init!r}.")
    if self.head_dim % 2:
      raise ValueError(f"ModelConfig.head_dim: must be even for rotary time encoding; got {self.head_dim}.")

  @property
  def compute_dtype(self):
    return jnp.dtype(self.dtype)


VARIANTS = {
    # tiny keeps the prior start: most tests compile it, and the factorisation's
    # compilation would double their time (tests that need it ask for it).
    "tiny": ModelConfig(dim=32, num_blocks=1, num_heads=2, head_dim=16, mlp_dim=64, num_bases=4, num_freqs=6,
                        triangulate_static=True),
    "small": ModelConfig(dim=64, num_blocks=2, num_heads=4, head_dim=16, mlp_dim=256, num_bases=8,
                         triangulate_static=True, camera_init="factorization"),
    # The peer's per-frame head is a temporal convolution; ours is a linear read-out
    # of the (already time-attended) pooled features: 12.66 M parameters in all.
    "peer": ModelConfig(dim=256, num_blocks=3, num_heads=16, head_dim=64, mlp_dim=2048, num_bases=12, head_layers=0,
                        triangulate_static=True, camera_init="factorization"),
}


def model_config(name: str, **overrides) -> ModelConfig:
  """The named variant, with optional field overrides.

  Raises:
    ValueError: for an unknown variant or field.
  """
  if name not in VARIANTS:
    raise ValueError(f"model variant: unknown {name!r}; expected one of {sorted(VARIANTS)}.")
  unknown = set(overrides) - {f.name for f in dataclasses.fields(ModelConfig)}
  if unknown:
    raise ValueError(f"model variant {name!r}: unknown settings {sorted(unknown)}.")
  return dataclasses.replace(VARIANTS[name], **overrides)


def parse_overrides(items) -> dict:
  """ModelConfig settings from 'key=value' strings (command-line flags).

  Values are read as Python literals (numbers, True/False, tuples such as
  (50, 1)); anything else stays a string.

  Raises:
    ValueError: naming the item, for one without '=', an unknown setting, or a
      value of another type than the setting's default (e.g. text for a number;
      an int is accepted for a float).

  Example:
    >>> parse_overrides(["occlusion_weight=0", "camera_init=prior"])
    {'occlusion_weight': 0.0, 'camera_init': 'prior'}
  """
  out = {}
  defaults = {f.name: f.default for f in dataclasses.fields(ModelConfig)}
  for item in items:
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or key not in defaults:
      raise ValueError(f"model override {item!r}: expected 'key=value' with key one of {sorted(defaults)}.")
    try:
      value = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError):
      value = text.strip()
    expected = type(defaults[key])
    numeric = expected is float and type(value) is int
    if type(value) is not expected and not numeric:  # `type is`: a bool is not taken for an int.
      raise ValueError(f"model override {item!r}: {key} expects a {expected.__name__} (like its default "
                       f"{defaults[key]!r}); got {value!r}. Give one setting per item.")
    out[key] = float(value) if numeric else value
  return out

