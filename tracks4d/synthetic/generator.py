"""The synthetic clip generator: seeded, deterministic, with full ground truth.

Example:
  >>> from tracks4d import synthetic
  >>> cfg = synthetic.SyntheticConfig(num_frames=(24, 48))
  >>> clip = synthetic.generate_clip(cfg, seed=0, index=7)   # a validated Tracks
  >>> clip.gt.w2c.shape, clip.xy_px.shape
  ((T, 4, 4), (T, N, 2))

`generate_clip(cfg, seed, index)` depends only on (cfg, seed, index), so a dataset
can be regenerated or resumed clip by clip.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from tracks4d import geometry
from tracks4d.synthetic import sampling
from tracks4d.synthetic.cameras import CAMERA_PATHS, ORBIT_DEG
from tracks4d.synthetic.sampling import TrackerNoise
from tracks4d.synthetic.scene import FAMILIES, available_families, default_mocap_dir, make_scene
from tracks4d.tracks import GroundTruth, Tracks


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
  """Settings of the synthetic generator.

  Attributes:
    num_frames: (min, max) clip length, inclusive; drawn uniformly per clip.
    grid_size: queries per image side at each query frame (the peer uses 15).
    query_stride: frames between query frames (plus the last frame).
    families: scene families to draw from, uniformly (see scene.FAMILIES).
    camera_paths: camera path kinds to draw from (see cameras.CAMERA_PATHS).
    noise: tracker error levels.
    cells_per_side: z-buffer cells along the larger image side (occlusion
      resolution, and point density).
    min_depth: points nearer than this to the camera are invisible.
    mocap_dir: folder of the mocap .mat files (family 'mocap'); None uses
      ../shared/data/nrsfm or $TRACKS4D_NRSFM_DIR. Missing data drops the family
      with a warning.
    mocap_exclude: sequences (file stems, e.g. "drink") the 'mocap' family never
      animates, so that a model trained on these clips can be evaluated on them
      as unseen motion (`experiments.evaluate --mocap_sequences`). A name that is
      not in mocap_dir, or excluding every sequence, is an error when a mocap
      clip is made.
    orbit_deg: (min, max) azimuth, in degrees, that an orbiting camera sweeps
      over a clip, drawn uniformly.
    object_only_frac: probability that a clip of a dynamic family is
      object-only: its moving content with no room and no clutter (as the
      CMU-mocap sequences: no static point). Drawn from a stream of its own, so
      the other clips of a (seed, index) set stay as they are with 0. The
      content covers a small part of the image, so object-only clips query a
      grid twice as fine (2 grid_size per side), keeping at most grid_size^2
      queries per query frame, as the other clips.
  """

  num_frames: tuple[int, int] = (24, 50)
  grid_size: int = 15
  query_stride: int = 20
  families: tuple[str, ...] = FAMILIES
  camera_paths: tuple[str, ...] = CAMERA_PATHS
  noise: TrackerNoise = TrackerNoise()
  cells_per_side: int = 48
  min_depth: float = 0.05
  mocap_dir: str | None = None
  mocap_exclude: tuple[str, ...] = ()
  orbit_deg: tuple[float, float] = ORBIT_DEG
  object_only_frac: float = 0.0

  @classmethod
  def from_dict(cls, d) -> "SyntheticConfig":
    """From a mapping such as an ml_collections ConfigDict (`noise` a nested mapping)."""
    d = dict(d.to_dict() if hasattr(d, "to_dict") else d)
    unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
      raise ValueError(f"SyntheticConfig: unknown settings {sorted(unknown)}.")
    if "noise" in d:
      d["noise"] = TrackerNoise(**dict(d["noise"]))
    for key in ("num_frames", "families", "camera_paths", "orbit_deg", "mocap_exclude"):
      if key in d:
        d[key] = tuple(d[key])
    d["mocap_dir"] = d.get("mocap_dir") or None
    return cls(**d)

  @property
  def max_tracks(self) -> int:
    """The most tracks a clip can have: grid_size^2 per query frame."""
    lo, hi = self.num_frames
    most_queries = max(len(sampling.query_frames(t, self.query_stride)) for t in range(lo, hi + 1))
    return self.grid_size**2 * most_queries

  def __post_init__(self):
    lo, hi = self.num_frames
    if not 2 <= lo <= hi:
      raise ValueError(f"SyntheticConfig.num_frames: expected (min, max) with 2 <= min <= max; got {self.num_frames}.")
    if len(self.orbit_deg) != 2 or not 0 <= self.orbit_deg[0] <= self.orbit_deg[1] <= 360:
      raise ValueError(f"SyntheticConfig.orbit_deg: expected (min, max) with 0 <= min <= max <= 360; "
                       f"got {self.orbit_deg}.")
    if not 0.0 <= self.object_only_frac <= 1.0:
      raise ValueError(f"SyntheticConfig.object_only_frac: expected a probability in [0, 1]; "
                       f"got {self.object_only_frac}.")
    if self.grid_size < 1:
      raise ValueError(f"SyntheticConfig.grid_size: expected >= 1; got {self.grid_size}.")
    if self.query_stride < 1:
      raise ValueError(f"SyntheticConfig.query_stride: expected >= 1; got {self.query_stride}.")
    for fam in self.families:
      if fam not in FAMILIES:
        raise ValueError(f"SyntheticConfig.families: unknown family {fam!r}; expected a subset of {FAMILIES}.")
    if not self.families:
      raise ValueError("SyntheticConfig.families: expected at least one family.")
    for cam in self.camera_paths:
      if cam not in CAMERA_PATHS:
        raise ValueError(f"SyntheticConfig.camera_paths: unknown path {cam!r}; expected a subset of {CAMERA_PATHS}.")
    if not self.camera_paths:
      raise ValueError("SyntheticConfig.camera_paths: expected at least one camera path.")
    n = self.noise
    if n.noise_px < 0 or not 0 <= n.outlier_frac <= 1 or not 0 <= n.drop_frac <= 1:
      raise ValueError(f"SyntheticConfig.noise: expected noise_px >= 0 and fractions in [0, 1]; got {n}.")


@dataclasses.dataclass(frozen=True)
class ClipInfo:
  """What a clip was made of (for per-family evaluation)."""

  family: str
  camera: str
  seed: int
  index: int
  background: bool = True
  moving_objects: int = 0  # Independently moving objects (bodies, chains) that the clip's tracks see.


# Third seed words of the object-only draw and of scene redraws: streams apart from `clip_rng`'s.
_OBJECT_ONLY_STREAM = 1
_REDRAW_STREAM = 2
# A scene whose content no query hits (an object-only scene whose object leaves the
# view) is drawn again, up to this many times in all.
_SCENE_ATTEMPTS = 10


def clip_rng(seed: int, index: int) -> np.random.Generator:
  """The generator of clip `index` under `seed` (independent streams per clip)."""
  return np.random.default_rng([int(seed), int(index)])


def generate_clip(cfg: SyntheticConfig, seed: int, index: int, family: str | None = None,
                  camera: str | None = None, with_info: bool = False, background: bool | None = None):
  """Generates one clip with ground truth.

  Args:
    cfg: generator settings.
    seed: dataset seed.
    index: clip index; (seed, index) fixes the clip.
    family: force a scene family (default: drawn from cfg.families).
    camera: force a camera path kind (default: drawn from cfg.camera_paths).
    with_info: also return a `ClipInfo`.
    background: force a room and clutter (True) or an object-only scene
      (False); default: object-only with probability cfg.object_only_frac for
      the dynamic families, never for 'static'.

  Returns:
    A validated `Tracks` whose `gt` holds w2c, depth, xyz_world and the
    per-entry dynamic mask; with `with_info`, (tracks, info).

  Raises:
    ValueError: if no draw of the scene yields a visible track (the message
      names seed and index; a scene that no query hits is drawn again, which
      object-only scenes sometimes need), for a forced family or camera that
      is unknown, or for `background=False` with family 'static'.
  """
  rng = clip_rng(seed, index)
  mocap_dir = Path(cfg.mocap_dir) if cfg.mocap_dir else default_mocap_dir()
  fams = available_families(cfg.families, mocap_dir)
  family = family or fams[rng.integers(len(fams))]
  camera = camera or cfg.camera_paths[rng.integers(len(cfg.camera_paths))]
  t = int(rng.integers(cfg.num_frames[0], cfg.num_frames[1] + 1))
  if background is None:
    coin = np.random.default_rng([int(seed), int(index), _OBJECT_ONLY_STREAM]).uniform()
    background = family == "static" or coin >= cfg.object_only_frac
  for attempt in range(_SCENE_ATTEMPTS):
    if attempt:  # A redraw of the scene only (family, camera path, length kept), from a stream of its own.
      rng = np.random.default_rng([int(seed), int(index), _REDRAW_STREAM, attempt])
    scene = make_scene(rng, t, family, camera, cells_per_side=cfg.cells_per_side, mocap_dir=mocap_dir,
                       orbit_deg=cfg.orbit_deg, background=background, mocap_exclude=cfg.mocap_exclude)
    h, w = scene.image_hw
    cell_px = max(h, w) / cfg.cells_per_side
    frames = sampling.query_frames(t, cfg.query_stride)
    pts = sampling.scene_points(rng, scene, frames, cell_px)
    rendered = sampling.render_points(scene, pts, cell_px, near=cfg.min_depth * _scene_unit(scene))
    grid_size = cfg.grid_size * (1 if background else 2)
    point_index, query_frame = sampling.sample_queries(rng, rendered, frames, grid_size, scene.image_hw, cell_px,
                                                       max_per_frame=cfg.grid_size**2)
    if len(point_index):
      break
  else:
    raise ValueError(f"generate_clip: seed={seed} index={index} produced no visible track in "
                     f"{_SCENE_ATTEMPTS} draws of its scene.")
  xy_true = rendered.xy_px[:, point_index]
  vis_true = rendered.visibility(point_index, pts.surface_id)
  xy, vis = sampling.apply_tracker_noise(rng, xy_true, vis_true, query_frame, scene.image_hw, cfg.noise)
  xyz_world = pts.xyz[:, point_index]
  gt = GroundTruth(
      w2c=scene.w2c.astype(np.float32),
      depth=rendered.depth[:, point_index].astype(np.float32),
      xyz_world=xyz_world.astype(np.float32),
      dynamic=np.broadcast_to(pts.dynamic[point_index], vis.shape).copy(),
  )
  tracks = Tracks.create(xy, vis, image_hw=scene.image_hw, intrinsics=scene.intrinsics,
                         query_frame=query_frame, gt=gt, name=f"synthetic[seed={seed}, index={index}]")
  if with_info:
    tracked = pts.surface_id[point_index]
    moving = len(np.unique(tracked[pts.dynamic[point_index]]))
    return tracks, ClipInfo(family=family, camera=camera, seed=int(seed), index=int(index), background=background,
                            moving_objects=moving)
  return tracks


def _scene_unit(scene) -> float:
  """Distance from the first camera to the origin: the scene's length unit."""
  return float(np.linalg.norm(geometry.camera_centers(scene.w2c[0])))
