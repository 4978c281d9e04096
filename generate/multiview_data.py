"""Synthetic multi-view videos with ground-truth paired tracks (one scene at a time).

`make_scene_views(cfg, seed, index)` samples a procedural scene
(`generate.scene`), renders its source video along a casual camera path and k
target videos along target trajectories made by `generate.cameras` from the
source (the six moves and static views, about a look-at point at the scene's
depth, as at inference), and follows exact 3D tracks through all of them
(`generate.render`). The result, a `SceneViews`, is the training and test data
of the diffusion stage and the demo clip of `reconstruct --demo`
(`SceneViews.source_tracks()` gives a `tracks4d.tracks.Tracks` with ground
truth). It depends only on (cfg, seed, index).

`SceneViews` layout (one scene; a dataset batch adds a leading b):

  source_rgb        (t, h, w, 3)    float32 in [0, 1]   source video
  source_depth_map  (t, h, w)       float32             source camera-frame depth per pixel
  target_rgb        (k, t, h, w, 3) float32 in [0, 1]   target videos
  target_depth_map  (k, t, h, w)    float32             target depth per pixel
  source_w2c        (t, 4, 4), source_intrinsics (t, 3, 3)        float32
  target_w2c        (k, t, 4, 4), target_intrinsics (k, t, 3, 3)  float32
  xyz_world         (t, n, 3)  float32   exact 3D tracks (world)
  source_xy_px      (t, n, 2)  float32   their source pixels (x, y)
  source_depth      (t, n)     float32   their source depth
  source_visible    (t, n)     bool      exact visibility (first hit of the pixel's ray)
  target_xy_px      (k, t, n, 2), target_depth (k, t, n), target_visible (k, t, n)
  dynamic           (n,)  bool    track on a moving object
  query_frame       (n,)  int32   frame the track was queried at (grid queries)
  target_kind       (k,)  int32   index into cameras.TARGET_KINDS (six moves + static)
  target_amount     (k,)  float32 degrees (orbits, static) or scene units (dollies) per
                                  frame (per clip for static views)
  follow_source     (k,)  bool    move applied on top of each source camera
  dolly_zoom        (k,)  bool    focal length scaled with the dolly
  camera            ()    int32   source path kind, index into CAMERA_PATHS
  look_at_depth     ()    float32 the look-at depth used for the moves

`paired(j)` gives target j's `PairedTracks` (the layout of
`generate.paired_tracks`), with the renderer's exact visibility.

Shapes: t frames, h w image, n tracks, k targets, b batch.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.struct
import numpy as np

from generate import cameras, render
from generate.cameras import TARGET_KINDS, Trajectory
from generate.paired_tracks import PairedTracks
from generate.scene import cameras_clear, random_scene
from tracks4d.synthetic.cameras import CAMERA_PATHS
from tracks4d.tracks import GroundTruth, Tracks


@dataclasses.dataclass(frozen=True)
class MultiViewConfig:
  """Settings of the multi-view generator.

  Attributes:
    num_frames: t per video (16; 1 + 4 k suits a video autoencoder: 17).
    image_hw: (height, width).
    num_targets: k target trajectories per scene.
    target_kinds: kinds to draw from (subset of cameras.TARGET_KINDS).
    orbit_deg: (min, max) orbit degrees per frame.
    dolly_frac: (min, max) dolly distance per frame, as a fraction of the look-at depth.
    static_deg: (min, max) total orbit of a static view, degrees.
    follow_source_prob: probability that a move is applied on top of the
      source's own motion (else it replaces it, from the first source camera).
    dolly_zoom_prob: probability that a dolly is a dolly zoom.
    source_cameras: source path kinds (tracks4d.synthetic.cameras.CAMERA_PATHS).
    max_objects: object slots per scene.
    grid_size: track queries per image side per query frame.
    num_query_frames: query frames, spread evenly from the first to the last.
    antialias: rays per pixel side of the renderer (odd).
    fov_deg: (min, max) horizontal field of view.
  """

  num_frames: int = 16
  image_hw: tuple[int, int] = (64, 64)
  num_targets: int = 2
  target_kinds: tuple[str, ...] = TARGET_KINDS
  orbit_deg: tuple[float, float] = (0.5, 2.0)
  dolly_frac: tuple[float, float] = (0.005, 0.025)
  static_deg: tuple[float, float] = (10.0, 30.0)
  follow_source_prob: float = 0.25
  dolly_zoom_prob: float = 0.25
  source_cameras: tuple[str, ...] = ("static", "handheld", "orbit", "dolly", "pan")
  max_objects: int = 4
  grid_size: int = 10
  num_query_frames: int = 3
  antialias: int = 1
  fov_deg: tuple[float, float] = (50.0, 70.0)

  def __post_init__(self):
    if int(self.num_frames) != self.num_frames or self.num_frames < 2:
      raise ValueError(f"MultiViewConfig.num_frames: expected an integer >= 2; got {self.num_frames!r}.")
    hw = tuple(self.image_hw)
    if len(hw) != 2 or min(hw) <= 0:
      raise ValueError(f"MultiViewConfig.image_hw: expected positive (height, width); got {self.image_hw!r}.")
    if self.num_targets < 1:
      raise ValueError(f"MultiViewConfig.num_targets: expected >= 1; got {self.num_targets!r}.")
    bad = [k for k in self.target_kinds if k not in TARGET_KINDS]
    if bad or not self.target_kinds:
      raise ValueError(f"MultiViewConfig.target_kinds: expected a non-empty subset of {TARGET_KINDS}; got "
                       f"{self.target_kinds!r}.")
    bad = [k for k in self.source_cameras if k not in CAMERA_PATHS]
    if bad or not self.source_cameras:
      raise ValueError(f"MultiViewConfig.source_cameras: expected a non-empty subset of {CAMERA_PATHS}; got "
                       f"{self.source_cameras!r}.")
    if not 1 <= self.num_query_frames <= self.num_frames:
      raise ValueError(f"MultiViewConfig.num_query_frames: expected 1..num_frames; got {self.num_query_frames!r}.")
    if self.grid_size < 1:
      raise ValueError(f"MultiViewConfig.grid_size: expected >= 1; got {self.grid_size!r}.")

  @classmethod
  def from_dict(cls, d) -> "MultiViewConfig":
    """From a mapping such as an ml_collections ConfigDict."""
    d = dict(d.to_dict() if hasattr(d, "to_dict") else d)
    unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
      raise ValueError(f"MultiViewConfig: unknown settings {sorted(unknown)}.")
    return cls(**{k: tuple(v) if isinstance(v, (list, tuple)) else v for k, v in d.items()})

  @property
  def num_tracks(self) -> int:
    return self.grid_size**2 * self.num_query_frames

  @property
  def query_frames(self) -> np.ndarray:
    return np.unique(np.round(np.linspace(0, self.num_frames - 1, self.num_query_frames)).astype(np.int32))


@flax.struct.dataclass
class SceneViews:
  """One scene's source and target videos with paired tracks; see the module doc."""

  source_rgb: Any
  source_depth_map: Any
  target_rgb: Any
  target_depth_map: Any
  source_w2c: Any
  source_intrinsics: Any
  target_w2c: Any
  target_intrinsics: Any
  xyz_world: Any
  source_xy_px: Any
  source_depth: Any
  source_visible: Any
  target_xy_px: Any
  target_depth: Any
  target_visible: Any
  dynamic: Any
  query_frame: Any
  target_kind: Any
  target_amount: Any
  follow_source: Any
  dolly_zoom: Any
  camera: Any
  look_at_depth: Any

  @property
  def image_hw(self) -> tuple[int, int]:
    return tuple(int(v) for v in np.shape(self.source_rgb)[-3:-1])

  @property
  def num_targets(self) -> int:
    return int(np.shape(self.target_rgb)[-5])

  def source_trajectory(self) -> Trajectory:
    return Trajectory(w2c=np.asarray(self.source_w2c), intrinsics=np.asarray(self.source_intrinsics),
                      image_hw=self.image_hw)

  def target_trajectory(self, j: int) -> Trajectory:
    return Trajectory(w2c=np.asarray(self.target_w2c)[j], intrinsics=np.asarray(self.target_intrinsics)[j],
                      image_hw=tuple(int(v) for v in np.shape(self.target_rgb)[-3:-1]))

  def paired(self, j: int) -> PairedTracks:
    """Target j's `PairedTracks` (exact visibility)."""
    hw = np.asarray(self.image_hw, np.int32)
    return PairedTracks(
        xyz_world=np.asarray(self.xyz_world), source_xy_px=np.asarray(self.source_xy_px),
        source_depth=np.asarray(self.source_depth), source_visible=np.asarray(self.source_visible),
        target_xy_px=np.asarray(self.target_xy_px)[j], target_depth=np.asarray(self.target_depth)[j],
        target_visible=np.asarray(self.target_visible)[j], source_w2c=np.asarray(self.source_w2c),
        target_w2c=np.asarray(self.target_w2c)[j], source_intrinsics=np.asarray(self.source_intrinsics),
        target_intrinsics=np.asarray(self.target_intrinsics)[j], source_hw=hw, target_hw=hw)

  def source_tracks(self, name: str = "synthetic multi-view source") -> Tracks:
    """The source view as a validated `tracks4d.tracks.Tracks` with ground truth (exact
    tracks, no tracker noise), e.g. the demo clip of the reconstruction stage.

    Raises:
      ValueError: from `Tracks.create` when no track is visible.
    """
    vis = np.asarray(self.source_visible)
    gt = GroundTruth(w2c=np.asarray(self.source_w2c), depth=np.asarray(self.source_depth),
                     xyz_world=np.asarray(self.xyz_world),
                     dynamic=np.broadcast_to(np.asarray(self.dynamic), vis.shape).copy())
    return Tracks.create(np.asarray(self.source_xy_px), vis, image_hw=self.image_hw,
                         intrinsics=np.asarray(self.source_intrinsics), query_frame=np.asarray(self.query_frame),
                         gt=gt, name=name)


# The demo clip of the reconstruction stage (`reconstruct --demo`): one longer source video at
# 256x256 with a 15x15 query grid at 3 frames, as the peer's tracker would give;
# `make_scene_views(DEMO_CONFIG, 0, 0)` renders it in about 15 s on 2 CPU cores (with compiling), and
# `.source_rgb` / `.source_tracks()` are the video and its exact tracks with ground truth.
DEMO_CONFIG = MultiViewConfig(num_frames=48, image_hw=(256, 256), num_targets=1, grid_size=15, num_query_frames=3)


def scene_rng(seed: int, index: int) -> np.random.Generator:
  """The generator of scene `index` under `seed` (independent streams per scene)."""
  return np.random.default_rng([int(seed), int(index), 5])


def _target(rng: np.random.Generator, cfg: MultiViewConfig, sample, look_at_depth: float):
  """One random target trajectory that keeps its cameras clear of the scene's walls
  and objects (the amount is halved until it does; 0 in the worst case)."""
  kind = cfg.target_kinds[int(rng.integers(len(cfg.target_kinds)))]
  follow = bool(rng.uniform() < cfg.follow_source_prob) and kind != "static"
  zoom = bool(rng.uniform() < cfg.dolly_zoom_prob) and kind.startswith("dolly")
  if kind.startswith("orbit"):
    amount = rng.uniform(*cfg.orbit_deg)
  elif kind.startswith("dolly"):
    amount = rng.uniform(*cfg.dolly_frac) * look_at_depth
    amount = min(amount, 0.9 * look_at_depth / max(cfg.num_frames - 1, 1))  # Never reach the look-at point.
  else:
    amount = rng.uniform(*cfg.static_deg)
  static_move = ("orbit_left", "orbit_right", "orbit_up", "orbit_down")[int(rng.integers(4))]
  for _ in range(6):
    if kind == "static":
      traj = cameras.static_view(sample.source, static_move, amount, look_at_depth)
    else:
      traj = cameras.camera_move(sample.source, kind, amount, look_at_depth, follow_source=follow, dolly_zoom=zoom)
    if cameras_clear(sample.scene, traj):
      return traj, kind, amount, follow, zoom
    amount *= 0.5
  if kind == "static":
    traj = cameras.static_view(sample.source, static_move, 0.0, look_at_depth)
  else:
    traj = cameras.camera_move(sample.source, kind, 0.0, look_at_depth, follow_source=follow)
  return traj, kind, 0.0, follow, False


@dataclasses.dataclass(frozen=True)
class SceneSetup:
  """A sampled scene before its targets are chosen.

  Attributes:
    rng: the scene's generator, advanced past the scene and its tracks.
    sample: the `generate.scene.SceneSample` (scene, source trajectory, path kind).
    tracks: the exact `generate.render.SceneTracks`.
    look_at_depth: the scene's depth seen by the first source camera (`cameras.scene_depth`).
  """

  rng: np.random.Generator
  sample: Any
  tracks: render.SceneTracks
  look_at_depth: float


def scene_setup(cfg: MultiViewConfig, seed: int, index: int) -> SceneSetup:
  """Samples scene `index` of `seed`, its source path and exact tracks, and the look-at depth."""
  rng = scene_rng(seed, index)
  sample = random_scene(rng, cfg.num_frames, cfg.image_hw, max_objects=cfg.max_objects, cameras=cfg.source_cameras,
                        fov_deg=cfg.fov_deg)
  tracks = render.sample_tracks(sample.scene, sample.source, rng, cfg.grid_size, cfg.query_frames)
  _, _, vis = render.track_views(sample.scene, tracks, sample.source)
  source = sample.source
  d = cameras.scene_depth(tracks.xyz_world[0], source.w2c[0], source.intrinsics[0], source.image_hw, visible=vis[0])
  return SceneSetup(rng=rng, sample=sample, tracks=tracks, look_at_depth=d)


def render_scene_views(setup: SceneSetup, targets, kinds, amounts, follow_source=None, dolly_zoom=None,
                       antialias: int = 1) -> SceneViews:
  """Renders the source and the given target trajectories of a scene, with paired tracks.

  Args:
    setup: from `scene_setup`.
    targets: k target `Trajectory`s (t frames each, the source's image size).
    kinds: k target kind names (cameras.TARGET_KINDS), stored as labels.
    amounts: k amounts (labels).
    follow_source, dolly_zoom: k bools (labels); default all False.
    antialias: rays per pixel side.

  Returns:
    A `SceneViews`.

  Raises:
    ValueError: naming `targets` for a trajectory of the wrong length or image size.
  """
  sample, tracks = setup.sample, setup.tracks
  scene, source = sample.scene, sample.source
  t, k = source.num_frames, len(targets)
  for j, tr in enumerate(targets):
    if tr.num_frames != t or tuple(tr.image_hw) != tuple(source.image_hw):
      raise ValueError(f"targets[{j}]: expected {t} frames at {tuple(source.image_hw)}; got {tr.num_frames} frames "
                       f"at {tuple(tr.image_hw)}.")
  follow_source = [False] * k if follow_source is None else follow_source
  dolly_zoom = [False] * k if dolly_zoom is None else dolly_zoom
  # One render call for the source and all targets (one compiled shape).
  every = Trajectory.create(np.concatenate([source.w2c] + [tr.w2c for tr in targets]),
                            np.concatenate([source.intrinsics] + [tr.intrinsics for tr in targets]),
                            source.image_hw, name="targets")
  frame_index = np.tile(np.arange(t, dtype=np.int32), k + 1)
  frames = render.render(scene, every, frame_index=frame_index, antialias=antialias)
  xy, depth, vis = render.track_views(scene, tracks, every, frame_index=frame_index)
  h, w = source.image_hw
  rgb = np.asarray(frames.rgb).reshape(k + 1, t, h, w, 3)
  dmap = np.asarray(frames.depth).reshape(k + 1, t, h, w)
  n = tracks.xyz_world.shape[1]
  xy, depth, vis = xy.reshape(k + 1, t, n, 2), depth.reshape(k + 1, t, n), vis.reshape(k + 1, t, n)
  return SceneViews(
      source_rgb=rgb[0], source_depth_map=dmap[0], target_rgb=rgb[1:], target_depth_map=dmap[1:],
      source_w2c=np.asarray(source.w2c, np.float32), source_intrinsics=np.asarray(source.intrinsics, np.float32),
      target_w2c=np.stack([np.asarray(tr.w2c) for tr in targets]).astype(np.float32),
      target_intrinsics=np.stack([np.asarray(tr.intrinsics) for tr in targets]).astype(np.float32),
      xyz_world=np.asarray(tracks.xyz_world, np.float32), source_xy_px=xy[0], source_depth=depth[0],
      source_visible=vis[0], target_xy_px=xy[1:], target_depth=depth[1:], target_visible=vis[1:],
      dynamic=np.asarray(tracks.dynamic), query_frame=np.asarray(tracks.query_frame, np.int32),
      target_kind=np.asarray([TARGET_KINDS.index(kd) for kd in kinds], np.int32),
      target_amount=np.asarray(amounts, np.float32), follow_source=np.asarray(follow_source, bool),
      dolly_zoom=np.asarray(dolly_zoom, bool), camera=np.int32(CAMERA_PATHS.index(sample.camera)),
      look_at_depth=np.float32(setup.look_at_depth))


def make_scene_views(cfg: MultiViewConfig, seed: int, index: int) -> SceneViews:
  """Renders one scene's source video, k random target videos and their paired tracks.

  Args:
    cfg: generator settings.
    seed: dataset seed.
    index: scene index; (cfg, seed, index) fixes the result.

  Returns:
    A `SceneViews` of NumPy arrays (layout in the module doc).

  Example:
    >>> views = make_scene_views(MultiViewConfig(), seed=0, index=3)
    >>> views.target_rgb.shape      # (2, 16, 64, 64, 3)
  """
  setup = scene_setup(cfg, seed, index)
  chosen = [_target(setup.rng, cfg, setup.sample, setup.look_at_depth) for _ in range(cfg.num_targets)]
  return render_scene_views(setup, [c[0] for c in chosen], [c[1] for c in chosen], [c[2] for c in chosen],
                            [c[3] for c in chosen], [c[4] for c in chosen], antialias=cfg.antialias)
