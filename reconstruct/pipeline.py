"""`reconstruct`: 2D tracks in, cameras + 3D tracks out.

Stages (each timed): focal estimation when the intrinsics are unknown
(reconstruct/intrinsics.py); the network on overlapping windows, in padded
batches of one shape (sharded over all local devices when there are several);
optional test-time fine-tuning per clip; optional bundle adjustment per window (cameras
and static points, on the tracks the static fit marks static, in rounds
that relabel them with the refined cameras; the refined
cameras are kept and every track keeps its camera-frame position, so depth is
the network's, as in the peer's post-processing); stitching of the windows
(reconstruct/windows.py); the movement level of each track from the static fit
with the final cameras (reconstruct/static_fit.py).

The network predicts a focal factor phi_t that multiplies the focal length it
was given. Its reconstruction is expressed for the reported K by scaling the
camera-frame x and y of every point by phi_t (depth unchanged), so the 3D
tracks reproject with the reported K; `bases`/`coeffs` are the network's
(before that scaling).

Shapes: b batch, t frames, n tracks, w window frames, k bases.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import tqdm
from flax import nnx

from reconstruct import bundle_adjust as ba_lib
from reconstruct import intrinsics as intrinsics_lib
from reconstruct import static_fit
from reconstruct import windows as windows_lib
from reconstruct.result import Reconstruction, ReprojectionStats, Timings
from tracks4d import geometry
from tracks4d import model as model_lib
from tracks4d import pretrained
from tracks4d.training import checkpoint
from tracks4d.training import finetune as finetune_lib
from tracks4d.training import step as step_lib
from tracks4d.tracks import Tracks, batch_tracks, pad_tracks, select_frames, select_tracks, unbatch_tracks


@dataclasses.dataclass(frozen=True)
class ReconstructOptions:
  """Settings of `reconstruct`.

  Attributes:
    window_size: frames per window (the shipped model was trained on 16-32).
    overlap: least number of frames shared by consecutive windows.
    batch_size: windows per network call (memory is that of one batch); with
      several local devices, rounded up to a multiple of their number.
    bundle_adjust: refine cameras and static points by bundle adjustment.
    ba_iterations: Levenberg-Marquardt iterations per window and round.
    ba_rounds: rounds of (label static tracks by their static-fit error with
      the current cameras, bundle-adjust on them); each round relabels with
      the refined cameras, so tracks wrongly left out (or in) under the
      network's cameras are corrected.
    ba_robust: "huber", "cauchy" or "none".
    ba_robust_scale_px: scale of the robust loss, pixels.
    refine_focal: also refine the focal length in bundle adjustment.
    finetune_steps: test-time fine-tuning steps per clip (0: off).
    finetune_learning_rate: Adam step size of fine-tuning (3e-4: tens of steps
      on a CPU; the peer's 1e-4 is meant for hundreds).
    estimate_focal: estimate the focal length from the tracks when the clip's
      intrinsics are not known (otherwise keep the conventional guess).
    movement_min_px: least static-fit error (pixels) labelled dynamic; see
      static_fit.movement_threshold.
    progress: show progress bars.
  """

  window_size: int = 32
  overlap: int = 8
  batch_size: int = 8
  bundle_adjust: bool = False
  ba_iterations: int = 20
  ba_rounds: int = 3
  ba_robust: str = "huber"
  ba_robust_scale_px: float = 2.0
  refine_focal: bool = False
  finetune_steps: int = 0
  finetune_learning_rate: float = 3e-4
  estimate_focal: bool = True
  movement_min_px: float = 2.0
  progress: bool = False

  def __post_init__(self):
    windows_lib.plan_windows(2, self.window_size, self.overlap)  # Validates both.
    checks = {"batch_size": self.batch_size >= 1, "ba_iterations": self.ba_iterations >= 0, "ba_rounds": self.ba_rounds >= 1,
              "finetune_steps": self.finetune_steps >= 0, "finetune_learning_rate": self.finetune_learning_rate > 0,
              "ba_robust_scale_px": self.ba_robust_scale_px > 0, "movement_min_px": self.movement_min_px >= 0,
              "ba_robust": self.ba_robust in ("huber", "cauchy", "none")}
    for name, ok in checks.items():
      if not ok:
        raise ValueError(f"ReconstructOptions.{name}: invalid value {getattr(self, name)!r}.")


def load_network(model: str | Path | model_lib.Tracks4DNet | None) -> model_lib.Tracks4DNet:
  """The network: a loaded one as is, a model folder, or None for the shipped
  checkpoint.

  Raises:
    FileNotFoundError: naming the path when it does not exist.
    ValueError: when the folder holds no readable model.
  """
  if isinstance(model, model_lib.Tracks4DNet):
    return model
  path = Path(model) if model is not None else pretrained.default_model_path()
  if not path.exists():
    raise FileNotFoundError(f"model: checkpoint folder {path} does not exist (expected a tracks4d model folder "
                            "with config.json and params/, e.g. a training workdir or tracks4d/pretrained/small).")
  return checkpoint.load_model(path)


def _as_clips(tracks, visible, image_hw, intrinsics) -> tuple[list[Tracks], bool]:
  """(clips, single): a Tracks, a batched Tracks, a list of Tracks, or arrays."""
  if isinstance(tracks, Tracks):
    if np.asarray(tracks.xy_px).ndim == 4:
      return unbatch_tracks(tracks), False
    return [tracks], True
  if isinstance(tracks, (list, tuple)) and tracks and all(isinstance(c, Tracks) for c in tracks):
    for i, c in enumerate(tracks):
      if np.asarray(c.xy_px).ndim != 3:
        raise ValueError(f"tracks[{i}]: expected one clip with xy_px (t, n, 2); got {np.shape(c.xy_px)}.")
    return list(tracks), False
  if isinstance(tracks, (list, tuple)) and not tracks:
    raise ValueError("tracks: got an empty list of clips.")
  if visible is None or image_hw is None:
    raise ValueError("tracks: given as an array, it needs `visible` (t, n) and `image_hw` (height, width) too.")
  return [Tracks.create(np.asarray(tracks), np.asarray(visible), image_hw, intrinsics=intrinsics)], True


def _with_intrinsics(clip: Tracks, opts: ReconstructOptions):
  """(clip with the K to use, focal source, FocalEstimate or None)."""
  if bool(np.asarray(clip.intrinsics_known)):
    return clip, "given", None
  if not opts.estimate_focal:
    return clip, "guess", None
  est = intrinsics_lib.estimate_focal(clip)
  if est.source != "estimated":
    return clip, "guess", est
  return clip.replace(intrinsics=intrinsics_lib.intrinsics_for(clip, est.focal_px)), "estimated", est


@dataclasses.dataclass
class _WindowInput:
  clip: int
  start: int
  tracks: Tracks       # (w, n_pad) padded window
  selected: np.ndarray  # (n_sel,) track indices of the clip in the window, in order


def _window_inputs(clips: list[Tracks], opts: ReconstructOptions) -> list[_WindowInput]:
  raw = []
  for ci, clip in enumerate(clips):
    w = min(opts.window_size, clip.num_frames)
    for start in windows_lib.plan_windows(clip.num_frames, opts.window_size, opts.overlap):
      sub = select_frames(clip, int(start), int(start) + w)
      sel = np.flatnonzero(np.asarray(sub.visible).any(0))
      sub = select_tracks(sub, sel).replace(gt=None)
      sub = sub.replace(query_frame=np.zeros(len(sel), np.int32))
      raw.append((ci, int(start), sub, sel))
  n_pad = max(len(r[3]) for r in raw)
  n_pad = int(np.ceil(n_pad / 64) * 64)  # Fewer distinct shapes, fewer compilations.
  w_pad = max(r[2].num_frames for r in raw)
  return [_WindowInput(ci, s, pad_tracks(sub, w_pad, n_pad), sel) for ci, s, sub, sel in raw]


def _forward(net, inputs: list[_WindowInput], batch_size: int, progress: bool) -> list[dict]:
  """Network outputs (NumPy, unpadded) for each window, in fixed-shape batches.

  With several local devices (one process) every batch is sharded over all of
  them: the batch size is rounded up to a multiple of the device count and the
  parameters are replicated. The last batch is filled up by repeating its last
  window; those outputs are discarded.
  """
  batch_size = min(batch_size, len(inputs))
  mesh = None
  if jax.device_count() > 1 and jax.process_count() == 1:
    mesh = step_lib.make_mesh(jax.local_devices())
    batch_size = -(-batch_size // mesh.size) * mesh.size
    graphdef, state = nnx.split(net)  # A replicated copy: the caller's net is left where it is.
    net = nnx.merge(graphdef, step_lib.replicate(state, mesh))
  outs = []
  for i in tqdm.trange(0, len(inputs), batch_size, desc="network", disable=not progress, leave=False):
    group = inputs[i:i + batch_size]
    filler = group[-1:] * (batch_size - len(group))
    batch = batch_tracks([g.tracks for g in group + filler])
    batch = step_lib.shard_batch(batch, mesh) if mesh is not None else jax.tree.map(jnp.asarray, batch)
    pred = model_lib.forward_jit(net, batch)
    fields = {"c2w": pred.c2w, "focal": pred.focal, "xyz_cam": pred.xyz_cam, "bases": pred.raw.bases,
              "coeff": pred.raw.coeff, "gamma": pred.raw.gamma}
    fields = {k: np.asarray(v) for k, v in fields.items()}
    for j, g in enumerate(group):
      t, n = int(np.asarray(g.tracks.frame_mask).sum()), len(g.selected)
      outs.append({"c2w": fields["c2w"][j, :t], "focal": fields["focal"][j, :t],
                   "xyz_cam": fields["xyz_cam"][j, :t, :n], "bases": fields["bases"][j, :n],
                   "coeff": fields["coeff"][j, :t], "gamma": fields["gamma"][j, :n]})
  return outs


def _window_result(out: dict, inp: _WindowInput, clip: Tracks) -> windows_lib.WindowResult:
  """A network window output as a WindowResult over all of the clip's tracks."""
  t = out["c2w"].shape[0]
  n = clip.num_tracks
  sel = inp.selected
  fold = np.stack([out["focal"], out["focal"], np.ones_like(out["focal"])], -1)  # (w, 3)
  cam = out["xyz_cam"].astype(np.float64) * fold[:, None, :]
  world = geometry.transform_points(out["c2w"].astype(np.float64), cam)
  k = out["bases"].shape[-1]
  xyz = np.zeros((t, n, 3))
  xyz[:, sel] = world
  bases = np.zeros((n, 3, k))
  bases[sel] = out["bases"]
  gamma = np.zeros(n)
  gamma[sel] = out["gamma"]
  in_window = np.zeros(n, bool)
  in_window[sel] = True
  vis = np.asarray(clip.valid)[inp.start:inp.start + t]
  return windows_lib.WindowResult(start=inp.start, c2w=out["c2w"].astype(np.float64),
                                  K=np.asarray(clip.intrinsics, np.float64)[inp.start:inp.start + t],
                                  tracks_world=xyz, in_window=in_window, visible=vis, bases=bases,
                                  coeffs=out["coeff"].astype(np.float64), gamma=gamma)


def _bundle_adjust_window(win: windows_lib.WindowResult, clip: Tracks, opts: ReconstructOptions):
  """Bundle adjustment of one window on its statically-fitting tracks, in
  `opts.ba_rounds` rounds that relabel the static tracks with the refined
  cameras (points start from the network's, then from the last round's);
  returns the window with the refined cameras (and K), every track keeping its
  camera-frame depth and the pixel it projects to."""
  xy = np.asarray(clip.xy_px, np.float64)[win.start:win.stop]
  w2c = geometry.invert_pose(win.c2w)
  valid = win.visible & win.in_window[None]
  # Start from the network's points (time mean over the window): triangulation
  # with small baselines puts points at unreliable depths.
  points = (win.tracks_world * valid[..., None]).sum(0) / np.maximum(valid.sum(0), 1)[:, None]
  new_w2c, K = w2c, win.K
  for _ in range(opts.ba_rounds):
    fit = static_fit.triangulate_static(new_w2c, K, xy, valid)
    static = fit.ok & (fit.rms_px <= static_fit.movement_threshold(fit.rms_px, opts.movement_min_px))
    if static.sum() < 8:
      break
    idx = np.flatnonzero(static)
    res = ba_lib.bundle_adjust(new_w2c, K, xy[:, idx], valid[:, idx], points[idx],
                               iterations=opts.ba_iterations, robust=opts.ba_robust,
                               robust_scale_px=opts.ba_robust_scale_px, refine_focal=opts.refine_focal)
    new_w2c, K = np.asarray(res.w2c, np.float64), np.asarray(res.K, np.float64)
    points[idx] = np.asarray(res.points_world, np.float64)
  if new_w2c is w2c:
    return win
  new_c2w = geometry.invert_pose(new_w2c)
  # As the peer's: the refined cameras are kept, every track keeps its
  # camera-frame position (and so its depth). Depth of static points along
  # their rays is weakly determined by short baselines (none for a pure
  # rotation) and bundle adjustment can move it far.
  cam = geometry.transform_points(w2c, win.tracks_world)
  if opts.refine_focal:
    # A new focal length moves the pixel a camera-frame point projects to: put each
    # point back on the ray of its old pixel, at the same depth (K has last row 0 0 1).
    cam = np.einsum("tij,tjk,tnk->tni", np.linalg.inv(K), np.asarray(win.K, np.float64), cam)
  xyz = geometry.transform_points(new_c2w, cam)
  return dataclasses.replace(win, c2w=new_c2w, K=K, tracks_world=xyz)


def _movement(stitched: windows_lib.Stitched, clip: Tracks, min_px: float):
  """(movement (n,) px, threshold): static-fit RMS per window with the final
  cameras, combined over windows weighted by visible entries."""
  xy = np.asarray(clip.xy_px, np.float64)
  w2c = geometry.invert_pose(stitched.c2w)
  sq = np.zeros(clip.num_tracks)
  cnt = np.zeros(clip.num_tracks)
  for win in stitched.windows:
    sl = slice(win.start, win.stop)
    vis = win.visible & win.in_window[None]
    fit = static_fit.triangulate_static(w2c[sl], stitched.K[sl], xy[sl], vis)
    c = np.where(fit.ok, vis.sum(0), 0)
    sq += np.where(fit.ok, fit.rms_px, 0.0) ** 2 * c
    cnt += c
  with np.errstate(invalid="ignore"):
    movement = np.sqrt(sq / cnt)
  # Tracks never fitted (seen in < 2 frames of every window): no evidence of motion.
  movement = np.where(cnt > 0, movement, 0.0)
  return movement, static_fit.movement_threshold(movement[cnt > 0], min_px)


def _reprojection(tracks_cam, K, xy_px, visible, dynamic) -> ReprojectionStats:
  proj, _ = geometry.project(tracks_cam, K)
  err = np.linalg.norm(proj - xy_px, axis=-1)
  e = err[visible]
  es, ed = err[visible & ~dynamic[None]], err[visible & dynamic[None]]
  med = lambda x: float(np.median(x)) if x.size else float("nan")
  return ReprojectionStats(mean_px=float(e.mean()), median_px=med(e), p90_px=float(np.percentile(e, 90)),
                           static_median_px=med(es), dynamic_median_px=med(ed), num_visible=int(e.size))


def reconstruct(tracks, *, visible=None, image_hw=None, intrinsics=None, model=None,
                options: ReconstructOptions | None = None, **overrides):
  """Reconstructs cameras and 3D tracks from 2D tracks.

  Args:
    tracks: a `Tracks` clip, a batched `Tracks` or a list of clips (one result
      per clip, run as padded batches), or an (t, n, 2) array of pixels (x, y)
      with `visible` and `image_hw`.
    visible: (t, n) bool, when `tracks` is an array.
    image_hw: (height, width), when `tracks` is an array.
    intrinsics: (3, 3) or (t, 3, 3) K when `tracks` is an array (None:
      unknown, estimated from the tracks).
    model: a network, a model folder (a training workdir, or an exported
      model), or None for the shipped checkpoint.
    options: ReconstructOptions; `overrides` replace single fields.

  Returns:
    A `Reconstruction` for one clip, a list of them for several.

  Raises:
    ValueError: naming the field for bad tracks or options (before any jit).
    FileNotFoundError: for a missing model folder.

  Example:
    >>> rec = reconstruct(clip, bundle_adjust=True)
    >>> rec.c2w.shape, rec.tracks_world.shape   # (t, 4, 4), (t, n, 3)
  """
  t_start = time.perf_counter()
  opts = dataclasses.replace(options or ReconstructOptions(), **overrides)
  clips, single = _as_clips(tracks, visible, image_hw, intrinsics)
  net = load_network(model)

  timings = [dict(intrinsics=0.0, feed_forward=0.0, finetune=0.0, bundle_adjust=0.0, stitching=0.0)
             for _ in clips]
  prepared, sources = [], []
  for i, clip in enumerate(clips):
    t0 = time.perf_counter()
    clip, source, _ = _with_intrinsics(clip, opts)
    timings[i]["intrinsics"] = time.perf_counter() - t0
    prepared.append(clip)
    sources.append(source)

  inputs = _window_inputs(prepared, opts)
  outs: list[dict | None] = [None] * len(inputs)
  if opts.finetune_steps:
    for ci in range(len(prepared)):
      idx = [i for i, inp in enumerate(inputs) if inp.clip == ci]
      t0 = time.perf_counter()
      tuned = finetune_lib.finetune(net, batch_tracks([inputs[i].tracks for i in idx]), opts.finetune_steps,
                                    learning_rate=opts.finetune_learning_rate, progress=opts.progress,
                                    lr_warmup_fraction=0.25).net
      timings[ci]["finetune"] = time.perf_counter() - t0
      t0 = time.perf_counter()
      for i, o in zip(idx, _forward(tuned, [inputs[i] for i in idx], opts.batch_size, opts.progress)):
        outs[i] = o
      timings[ci]["feed_forward"] = time.perf_counter() - t0
  else:
    t0 = time.perf_counter()
    outs = _forward(net, inputs, opts.batch_size, opts.progress)
    for ci in range(len(prepared)):  # One batched pass: each clip reports its share by windows.
      share = sum(inp.clip == ci for inp in inputs) / len(inputs)
      timings[ci]["feed_forward"] = (time.perf_counter() - t0) * share

  results = []
  for ci, clip in enumerate(prepared):
    wins = [_window_result(o, inp, clip) for o, inp in zip(outs, inputs) if inp.clip == ci]
    source = sources[ci]
    if opts.bundle_adjust:
      t0 = time.perf_counter()
      wins = [_bundle_adjust_window(w, clip, opts)
              for w in tqdm.tqdm(wins, desc="bundle adjustment", disable=not opts.progress, leave=False)]
      if opts.refine_focal:
        source = "refined" if source in ("estimated", "guess") else "refined-from-given"
      timings[ci]["bundle_adjust"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    st = windows_lib.stitch(wins, clip.num_frames)
    movement, thr = _movement(st, clip, opts.movement_min_px)
    timings[ci]["stitching"] = time.perf_counter() - t0
    results.append(_assemble(st, clip, movement, thr, source, timings[ci]))
  total = time.perf_counter() - t_start
  results = [r.replace(timings=dataclasses.replace(r.timings, total=total)) for r in results]
  return results[0] if single else results


def _assemble(st: windows_lib.Stitched, clip: Tracks, movement, thr, source, timing: dict) -> Reconstruction:
  w2c = geometry.invert_pose(st.c2w)
  tracks_cam = geometry.transform_points(w2c, st.tracks_world)
  dynamic = movement > thr
  visible = np.asarray(clip.visible)
  coeffs = np.stack([st.windows[m].coeffs[f - st.windows[m].start] for f, m in enumerate(st.frame_window)])
  f32 = lambda x: np.asarray(x, np.float32)
  return Reconstruction(
      c2w=f32(st.c2w), w2c=f32(w2c), K=f32(st.K), image_hw=np.asarray(clip.image_hw, np.int32),
      xy_px=f32(clip.xy_px), tracks_world=f32(st.tracks_world), tracks_cam=f32(tracks_cam), visible=visible,
      movement=f32(movement), is_dynamic=dynamic, movement_threshold=float(thr),
      gamma=f32(_combined_gamma(st)), bases=f32(np.stack([w.bases for w in st.windows])), coeffs=f32(coeffs),
      frame_window=st.frame_window.astype(np.int32),
      window_starts=np.asarray([w.start for w in st.windows], np.int32), focal_source=source,
      reprojection=_reprojection(tracks_cam, st.K, np.asarray(clip.xy_px, np.float64), visible, dynamic),
      timings=Timings(**timing))


def _combined_gamma(st: windows_lib.Stitched) -> np.ndarray:
  """The network's gamma averaged over windows, weighted by visible entries."""
  num = sum(w.gamma * w.visible.sum(0) for w in st.windows)
  den = sum(w.visible.sum(0) for w in st.windows)
  return np.where(den > 0, num / np.maximum(den, 1), 0.0)
