"""TAPIR / BootsTAPIR point tracking through DeepMind's tapnet package (optional).

tapnet is not on the Python package index; it is imported only when this
tracker runs, and its absence raises `TapnetUnavailableError` (an ImportError)
that says how to install it and that `--tracker=lk` works without it. The model
weights are a user-given checkpoint (`--tapnet_checkpoint`):

  *.npy  JAX / Haiku checkpoint (a pickled dict with 'params' and 'state'), run
         with `tapnet.models.tapir_model.TAPIR` under `hk.transform_with_state`
         (needs dm-haiku), as tapnet's colabs/tapir_demo.ipynb;
  *.pt   PyTorch state dict, run with `tapnet.torch.tapir_model.TAPIR` (needs
         torch), as tapnet's colabs/torch_tapir_demo.ipynb.

The model kind (TAPIR or BootsTAPIR) comes from `TapnetConfig.model`, by default
from the file name ('bootstap' in it: BootsTAPIR). Model settings per kind follow
tapnet: TAPIR (JAX) `bilinear_interp_with_depthwise_conv=False, pyramid_level=0`
(colabs/tapir_demo.ipynb); BootsTAPIR (JAX) adds `pyramid_level=1,
extra_convs=True, softmax_temperature=10.0` (configs/tapir_bootstrap_config.py);
BootsTAPIR (PyTorch) `TAPIR(pyramid_level=1)` (colabs/torch_tapir_demo.ipynb).

Inference follows tapnet's documented interface: the video is resized to the
model resolution (256 x 256) with values in [-1, 1], shape (1, t, 256, 256, 3);
queries are (1, n, 3) as (t, y, x) in raster pixels of the resized video; the
outputs are `tracks` (1, n, t, 2) as (x, y) raster pixels and `occlusion` /
`expected_dist` logits (1, n, t); visible = (1 - sigmoid(occlusion)) *
(1 - sigmoid(expected_dist)) > 0.5. tapnet's raster coordinates put (0, 0) at
the upper-left *corner* of the image (pixel centres at +0.5), so
    raster = (xy_px + 0.5) * (model size / image size),
    xy_px  = raster * (image size / model size) - 0.5.

Queries: the same grid as the LK tracker (`lk.grid_points` at `lk.query_frames`),
all tracked in one pass (no de-duplication: the model sees every query at
once), or custom queries. Entries whose position leaves the image are marked
invisible; each track is visible at its query frame, at its query position.

Shapes: t frames, h w image, n tracks.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
from tqdm.auto import tqdm

from reconstruct.trackers import lk
from reconstruct.video import as_frames
from tracks4d import geometry
from tracks4d.tracks import Tracks

TAPNET_REPO = "https://github.com/google-deepmind/tapnet"
INSTALL_HINT = (
    "tapnet (TAPIR / BootsTAPIR) is not on the Python package index: install it from source with "
    f"`pip install git+{TAPNET_REPO}` (plus dm-haiku for .npy JAX checkpoints or torch for .pt ones), download a "
    "checkpoint (e.g. bootstapir_checkpoint_v2.npy, linked from that repository's README) and pass it as "
    "--tapnet_checkpoint. The classical tracker `--tracker=lk` (OpenCV Lucas-Kanade) works without tapnet.")
JAX_SUFFIXES = (".npy",)
TORCH_SUFFIXES = (".pt", ".pth")
MODEL_KINDS = ("auto", "tapir", "bootstapir")

# Constructor settings per (backend, kind), following tapnet (see the module doc).
_TAPIR_KWARGS = {
    ("jax", "tapir"): dict(bilinear_interp_with_depthwise_conv=False, pyramid_level=0),
    ("jax", "bootstapir"): dict(bilinear_interp_with_depthwise_conv=False, pyramid_level=1, extra_convs=True,
                                softmax_temperature=10.0),
    ("torch", "tapir"): dict(pyramid_level=0, extra_convs=False),
    ("torch", "bootstapir"): dict(pyramid_level=1),
}


class TapnetUnavailableError(ImportError):
  """tapnet, or the backend its checkpoint needs (dm-haiku / torch), is not installed."""


@dataclasses.dataclass(frozen=True)
class TapnetConfig:
  """Settings of the TAPIR / BootsTAPIR tracker.

  Attributes:
    checkpoint: path of a tapnet checkpoint, *.npy (JAX) or *.pt (PyTorch).
    model: 'tapir', 'bootstapir', or 'auto' (BootsTAPIR when the file name
      contains 'bootstap').
    grid_size: queries per image side per query frame (as LKConfig).
    num_query_frames: query frames, spread evenly from 0 to the last frame.
    border_px: distance of the outermost grid points from the border.
    resolution_hw: model input (height, width); TAPIR was trained at 256 x 256.
    query_chunk_size: queries per cost-volume chunk inside the model (memory).
    device: PyTorch device ('auto': cuda when available, else cpu); JAX uses
      its default device.
  """

  checkpoint: str = ""
  model: str = "auto"
  grid_size: int = 15
  num_query_frames: int = 3
  border_px: float = 8.0
  resolution_hw: tuple[int, int] = (256, 256)
  query_chunk_size: int = 64
  device: str = "auto"

  def __post_init__(self):
    if self.model not in MODEL_KINDS:
      raise ValueError(f"TapnetConfig.model: expected one of {MODEL_KINDS}; got {self.model!r}.")
    for field in ("grid_size", "num_query_frames", "query_chunk_size"):
      value = getattr(self, field)
      if int(value) != value or value < 1:
        raise ValueError(f"TapnetConfig.{field}: expected an integer >= 1; got {value!r}.")
    hw = tuple(self.resolution_hw)
    if len(hw) != 2 or any(int(v) != v or v < 8 or v % 8 for v in hw):
      raise ValueError(f"TapnetConfig.resolution_hw: expected (height, width), multiples of 8 (tapnet's "
                       f"requirement); got {self.resolution_hw!r}.")
    if not self.border_px >= 0:
      raise ValueError(f"TapnetConfig.border_px: expected >= 0 pixels; got {self.border_px!r}.")


# ---------------------------------------------------------------------------
# Availability, checkpoint and model.
# ---------------------------------------------------------------------------


def tapnet_available() -> bool:
  """Whether the tapnet package can be imported."""
  return importlib.util.find_spec("tapnet") is not None


def require_tapnet() -> None:
  """Raises TapnetUnavailableError (with install instructions) unless tapnet imports."""
  try:
    importlib.import_module("tapnet")
  except ImportError as e:
    raise TapnetUnavailableError(f"The 'tapnet' tracker needs the tapnet package ({e}). {INSTALL_HINT}") from e


def checkpoint_backend(checkpoint: str) -> tuple[Path, str]:
  """The checkpoint's path and backend ('jax' for .npy, 'torch' for .pt / .pth).

  Raises:
    ValueError: for an empty path or an unknown suffix (naming the path).
    FileNotFoundError: when the file does not exist.
  """
  if not checkpoint:
    raise ValueError("TapnetConfig.checkpoint: the 'tapnet' tracker needs a model checkpoint; pass "
                     "--tapnet_checkpoint=PATH (a tapnet .npy JAX or .pt PyTorch checkpoint, e.g. "
                     f"bootstapir_checkpoint_v2.npy from {TAPNET_REPO}).")
  path = Path(checkpoint)
  suffix = path.suffix.lower()
  if suffix not in JAX_SUFFIXES + TORCH_SUFFIXES:
    raise ValueError(f"{path}: unknown tapnet checkpoint type {suffix!r}; expected {JAX_SUFFIXES} (JAX) or "
                     f"{TORCH_SUFFIXES} (PyTorch).")
  if not path.is_file():
    raise FileNotFoundError(f"{path}: tapnet checkpoint not found; expected a .npy (JAX) or .pt (PyTorch) file "
                            f"from {TAPNET_REPO}.")
  return path, "jax" if suffix in JAX_SUFFIXES else "torch"


def model_kind(cfg: TapnetConfig, path: Path) -> str:
  """'tapir' or 'bootstapir' from the config, or from the file name when 'auto'."""
  if cfg.model != "auto":
    return cfg.model
  return "bootstapir" if "bootstap" in path.name.lower() else "tapir"


def _import_backend(module: str, package: str):
  try:
    return importlib.import_module(module)
  except ImportError as e:
    raise TapnetUnavailableError(f"The 'tapnet' tracker with this checkpoint needs {package} ({e}). "
                                 f"{INSTALL_HINT}") from e


def load_jax_checkpoint(path: Path) -> tuple[dict, dict]:
  """(params, state) of a tapnet .npy checkpoint.

  The file is tapnet's pickled dict, so it is loaded with allow_pickle=True:
  only load checkpoints you trust.

  Raises:
    ValueError: naming the path when the file is not such a checkpoint.
  """
  try:
    ckpt = np.load(path, allow_pickle=True).item()
    return ckpt["params"], ckpt["state"]
  except Exception as e:  # Truncated / corrupt / wrong file: numpy, pickle or key errors.
    raise ValueError(f"{path}: could not be read as a tapnet JAX checkpoint (a .npy dict with 'params' and "
                     f"'state'): {type(e).__name__}: {e}") from e


def _model_kwargs(backend: str, kind: str, cfg: TapnetConfig) -> dict:
  """TAPIR constructor settings; a non-default resolution is passed as `initial_resolution`."""
  kwargs = dict(_TAPIR_KWARGS[(backend, kind)])
  if tuple(cfg.resolution_hw) != (256, 256):
    kwargs["initial_resolution"] = tuple(cfg.resolution_hw)
  return kwargs


def _jax_predictor(path: Path, kind: str, cfg: TapnetConfig) -> Callable:
  """predict(video (1,t,H,W,3) in [-1,1], queries (1,n,3) tyx) -> outputs dict of NumPy arrays (JAX)."""
  params, state = load_jax_checkpoint(path)  # First: a bad file is reported before any backend import.
  hk = _import_backend("haiku", "dm-haiku")
  import jax

  try:
    tapir_model = importlib.import_module("tapnet.models.tapir_model")
  except ImportError:  # Older tapnet layouts kept the model at the top level.
    tapir_model = _import_backend("tapnet.tapir_model", "tapnet's TAPIR model (tapnet.models.tapir_model)")
  kwargs = _model_kwargs("jax", kind, cfg)

  def forward(video, query_points):
    model = tapir_model.TAPIR(**kwargs)
    return model(video=video, is_training=False, query_points=query_points, query_chunk_size=cfg.query_chunk_size)

  apply = jax.jit(hk.transform_with_state(forward).apply)

  def predict(video: np.ndarray, queries: np.ndarray) -> dict:
    out, _ = apply(params, state, jax.random.PRNGKey(0), video, queries)
    return {k: np.asarray(out[k]) for k in ("tracks", "occlusion", "expected_dist")}

  return predict


def _torch_predictor(path: Path, kind: str, cfg: TapnetConfig) -> Callable:
  """As `_jax_predictor`, with tapnet's PyTorch TAPIR."""
  torch = _import_backend("torch", "torch")
  tapir_model = _import_backend("tapnet.torch.tapir_model", "tapnet's PyTorch TAPIR (tapnet.torch.tapir_model)")
  device = cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
  model = tapir_model.TAPIR(**_model_kwargs("torch", kind, cfg))
  try:
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
  except Exception as e:  # Corrupt file or a checkpoint of another model kind.
    raise ValueError(f"{path}: could not be loaded as a tapnet PyTorch {kind} checkpoint (set "
                     f"TapnetConfig.model if the kind is wrong): {type(e).__name__}: {e}") from e
  model = model.to(device).eval()

  def predict(video: np.ndarray, queries: np.ndarray) -> dict:
    with torch.no_grad():
      out = model(torch.from_numpy(video).to(device), torch.from_numpy(queries).to(device),
                  query_chunk_size=cfg.query_chunk_size)
    return {k: out[k].cpu().numpy() for k in ("tracks", "occlusion", "expected_dist")}

  return predict


# ---------------------------------------------------------------------------
# Coordinates and outputs.
# ---------------------------------------------------------------------------


def model_video(frames: np.ndarray, resolution_hw: tuple[int, int]) -> np.ndarray:
  """(t, h, w, 3) uint8 -> (1, t, H, W, 3) float32 in [-1, 1] at the model resolution (H, W)."""
  rh, rw = resolution_hw
  h, w = frames.shape[1:3]
  interp = cv2.INTER_AREA if (rh < h and rw < w) else cv2.INTER_LINEAR
  resized = np.stack([cv2.resize(f, (rw, rh), interpolation=interp) for f in frames])
  return (resized.astype(np.float32) / 255.0 * 2.0 - 1.0)[None]


def to_model_queries(xy_px: np.ndarray, frame: np.ndarray, image_hw, resolution_hw) -> np.ndarray:
  """Our (n, 2) pixels (x, y) and (n,) frames -> tapnet (1, n, 3) (t, y, x) raster of the model input."""
  (h, w), (rh, rw) = image_hw, resolution_hw
  x = (xy_px[:, 0] + 0.5) * (rw / w)
  y = (xy_px[:, 1] + 0.5) * (rh / h)
  return np.stack([frame.astype(np.float32), y, x], -1)[None].astype(np.float32)


def from_model_tracks(tracks: np.ndarray, image_hw, resolution_hw) -> np.ndarray:
  """tapnet (n, t, 2) raster (x, y) of the model input -> our (t, n, 2) pixels (x, y)."""
  (h, w), (rh, rw) = image_hw, resolution_hw
  scale = np.array([w / rw, h / rh], np.float32)
  return np.swapaxes(tracks * scale - 0.5, 0, 1).astype(np.float32)


def visibility(occlusion: np.ndarray, expected_dist: np.ndarray) -> np.ndarray:
  """tapnet's rule: (1 - sigmoid(occlusion)) * (1 - sigmoid(expected_dist)) > 0.5, (n, t) -> (t, n)."""
  def sigmoid(z):
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # Overflow-free.
  return np.swapaxes((1.0 - sigmoid(occlusion)) * (1.0 - sigmoid(expected_dist)) > 0.5, 0, 1)


def tracks_from_outputs(out: dict, query_xy: np.ndarray, query_frame: np.ndarray, image_hw, resolution_hw,
                        name: str) -> Tracks:
  """Validated `Tracks` from one clip's model outputs (batch index 0 taken here).

  Positions outside the image, or not finite, are invisible (non-finite ones
  take the query position); each track is visible at its query position on
  its query frame.
  """
  xy = from_model_tracks(np.asarray(out["tracks"])[0], image_hw, resolution_hw)
  vis = visibility(np.asarray(out["occlusion"])[0], np.asarray(out["expected_dist"])[0])
  finite = np.isfinite(xy).all(-1)
  xy = np.where(finite[..., None], xy, query_xy[None])
  vis &= finite & geometry.in_image(xy, np.asarray(image_hw))
  n = np.arange(len(query_xy))
  xy[query_frame, n] = query_xy
  vis[query_frame, n] = True
  return Tracks.create(xy, vis, image_hw=image_hw, intrinsics=None, query_frame=query_frame, name=name)


def _queries(cfg: TapnetConfig, t: int, image_hw, query_xy_px, query_frame):
  """(n, 2) positions and (n,) frames: the grid at the query frames, or the given queries."""
  if query_xy_px is None and query_frame is None:
    grid = lk.grid_points(image_hw, cfg.grid_size, cfg.border_px)
    frames = lk.query_frames(t, cfg.num_query_frames)
    return np.concatenate([grid] * len(frames)), np.repeat(frames, len(grid)).astype(np.int32)
  if query_xy_px is None or query_frame is None:
    raise ValueError("query_xy_px / query_frame: give both (custom queries) or neither (the query grid).")
  return lk.check_queries(query_xy_px, query_frame, t, image_hw)


def track_tapnet(frames, cfg: TapnetConfig = TapnetConfig(), progress: bool = True, query_xy_px=None,
                 query_frame=None, name: str = "tapnet tracks") -> Tracks:
  """Tracks points with TAPIR / BootsTAPIR (see the module doc).

  Args:
    frames: a `reconstruct.video.Video`, or (t, h, w, 3) frames (uint8, or
      float in [0, 1]).
    cfg: tracker settings; `cfg.checkpoint` is required.
    progress: show a progress bar over the stages (load, inference).
    query_xy_px: optional (n, 2) query positions (x, y) instead of the grid.
    query_frame: (n,) query frames of `query_xy_px`.
    name: how errors and the `Tracks` refer to this clip.

  Returns:
    A validated `Tracks` (t, n): intrinsics guessed (`geometry.guess_intrinsics`)
    with intrinsics_known False; track order: by query frame, grid row by row,
    or the order of `query_xy_px`.

  Raises:
    TapnetUnavailableError: (an ImportError) when tapnet, or the checkpoint's
      backend (dm-haiku / torch), is not installed; says how to install it.
    ValueError: no checkpoint given, an unknown checkpoint type, a corrupt
      checkpoint (naming the path), bad frames or queries.
    FileNotFoundError: when the checkpoint does not exist.

  Example:
    >>> cfg = TapnetConfig(checkpoint="checkpoints/bootstapir_checkpoint_v2.npy")
    >>> tracks = track_tapnet(read_video("clip.mp4"), cfg)
  """
  require_tapnet()
  path, backend = checkpoint_backend(cfg.checkpoint)
  frames = as_frames(frames, name)
  t, h, w = frames.shape[:3]
  query_xy, qf = _queries(cfg, t, (h, w), query_xy_px, query_frame)
  kind = model_kind(cfg, path)
  with tqdm(total=2, desc=f"{kind} ({backend})", unit="stage", disable=not progress) as bar:
    predict = (_jax_predictor if backend == "jax" else _torch_predictor)(path, kind, cfg)
    bar.update(1)
    out = predict(model_video(frames, cfg.resolution_hw),
                  to_model_queries(query_xy, qf, (h, w), cfg.resolution_hw))
    bar.update(1)
  return tracks_from_outputs(out, query_xy, qf, (h, w), tuple(cfg.resolution_hw), name)
