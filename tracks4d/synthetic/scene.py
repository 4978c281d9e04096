"""Assembly of a random dynamic scene and its camera: the content of one clip.

A scene is a room (floor and walls), static clutter boxes, and the dynamic
content of its family, seen by a camera moving along one of the camera paths.
An object-only scene (`background=False`) has the dynamic content alone, as a
mocap subject in front of a blank backdrop: no point is static, so a camera
turning about the content and the content turning are the same tracks.
Sizes scale with a random scene scale, so absolute depth ranges vary widely
(from about 1 to 100 units) while framing stays casual-video-like.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from pathlib import Path

import numpy as np

from tracks4d import geometry
from tracks4d.synthetic import surfaces
from tracks4d.synthetic.cameras import ORBIT_DEG, camera_path

FAMILIES = ("static", "rigid", "nonrigid", "articulated", "mocap")

IMAGE_SIZES_HW = ((256, 256), (288, 512), (360, 640), (480, 640), (384, 512), (512, 384), (720, 1280))


@dataclasses.dataclass(frozen=True)
class Scene:
  """Everything one clip is rendered from.

  Attributes:
    family: scene family name.
    camera: camera path kind.
    w2c: (t, 4, 4) world-to-camera poses.
    intrinsics: (3, 3) K in pixels.
    image_hw: (height, width).
    room: the static room (ray-cast on demand, so not point-sampled here), or
      None for an object-only scene.
    objects: point-sampled surfaces (static clutter and dynamic content).
  """

  family: str
  camera: str
  w2c: np.ndarray
  intrinsics: np.ndarray
  image_hw: tuple[int, int]
  room: surfaces.Room | None
  objects: tuple[surfaces.Surface, ...]


def default_mocap_dir() -> Path:
  """The mocap folder: $TRACKS4D_NRSFM_DIR or ../shared/data/nrsfm beside the repository."""
  from tracks4d.io import mocap_mat

  return Path(mocap_mat.DEFAULT_NRSFM_DIR)


# The mocap world has +z up; ours has +y down: (x, y, z) -> (x, -z, y), a rotation.
_ZUP_TO_YDOWN = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])


@functools.lru_cache(maxsize=4)
def load_mocap_skeletons(directory: str) -> tuple:
  """(name, joints (f, j, 3) upright in the y-down world, edges (e, 2)) for each
  sequence in `directory`; empty when there is none."""
  from tracks4d.io import mocap_mat  # Local: only this family needs it.

  out = []
  for name in mocap_mat.list_sequences(directory) if Path(directory).is_dir() else []:
    seq = mocap_mat.load_mocap(name, directory)
    joints = np.asarray(seq.S) @ _ZUP_TO_YDOWN.T
    edges = np.asarray(seq.edges) if seq.edges is not None else np.zeros((0, 2), np.int64)
    if edges.ndim != 2 or len(edges) == 0:  # No skeleton in the file (dance): bones by a spanning tree.
      edges = _spanning_tree_edges(joints.mean(0))
    out.append((seq.name, joints, edges.astype(np.int64)))
  return tuple(out)


def _spanning_tree_edges(xyz: np.ndarray) -> np.ndarray:
  """(p - 1, 2) edges of the Euclidean minimum spanning tree of points (p, 3)."""
  from scipy.sparse.csgraph import minimum_spanning_tree
  from scipy.spatial.distance import cdist

  tree = minimum_spanning_tree(cdist(xyz, xyz)).tocoo()
  return np.stack([tree.row, tree.col], axis=-1)


_warned_no_mocap = False


def available_families(families, mocap_dir: Path) -> tuple[str, ...]:
  """The requested families that can be generated; warns once (never silently)
  when the mocap family is requested but no sequences are found."""
  global _warned_no_mocap
  out = tuple(families)
  if "mocap" in out and not load_mocap_skeletons(str(mocap_dir)):
    out = tuple(f for f in out if f != "mocap")
    if not _warned_no_mocap:
      logging.warning("synthetic: family 'mocap' skipped: no .mat sequences in %s (set TRACKS4D_NRSFM_DIR).",
                      mocap_dir)
      _warned_no_mocap = True
    if not out:
      raise ValueError(f"synthetic: only family 'mocap' was requested but {mocap_dir} holds no .mat sequences.")
  return out


def _points_for(area: float, depth: float, f_px: float, cell_px: float, density: float, cap: int) -> int:
  """Points needed so the surface covers each z-buffer cell with ~density points."""
  cell_world = cell_px * depth / f_px
  return int(np.clip(density * area / max(cell_world**2, 1e-12) / 2.0, 16, cap))


def make_scene(rng: np.random.Generator, t: int, family: str, camera: str, cells_per_side: int = 48,
               mocap_dir: Path | None = None, density: float = 3.0, max_points_per_object: int = 6000,
               orbit_deg: tuple[float, float] = ORBIT_DEG, background: bool = True,
               mocap_exclude: tuple[str, ...] = ()) -> Scene:
  """Samples one random scene of a family with a camera path.

  Args:
    rng: random generator (all randomness comes from it).
    t: number of frames.
    family: one of FAMILIES.
    camera: one of cameras.CAMERA_PATHS.
    cells_per_side: z-buffer cells along the larger image side, used to set the
      point density.
    mocap_dir: where the mocap .mat files are (family 'mocap').
    density: points per z-buffer cell on a surface seen face-on.
    max_points_per_object: cap on any object's point count.
    orbit_deg: (min, max) azimuth an orbiting camera sweeps over the clip, degrees.
    background: with False, no room and no clutter: the family's dynamic
      content alone (object-only scene).
    mocap_exclude: mocap sequence names the 'mocap' family must not use.

  Returns:
    A `Scene`.

  Raises:
    ValueError: for an unknown family, or `background=False` with family
      'static' (which has no dynamic content).
  """
  if family not in FAMILIES:
    raise ValueError(f"make_scene: family must be one of {FAMILIES}; got {family!r}.")
  if not background and family == "static":
    raise ValueError("make_scene: family 'static' has no dynamic content, so it cannot be object-only "
                     "(background=False).")
  scale = float(np.exp(rng.uniform(np.log(0.3), np.log(5.0))))
  image_hw = IMAGE_SIZES_HW[rng.integers(len(IMAGE_SIZES_HW))]
  K = geometry.intrinsics_from_fov(rng.uniform(40, 90), image_hw)
  f_px = float(K[0, 0])
  cell_px = max(image_hw) / cells_per_side
  distance = scale * rng.uniform(4.0, 8.0)
  target = np.array([0.0, -scale * rng.uniform(0.3, 0.8), 0.0])
  w2c = camera_path(rng, camera, t, target, distance, orbit_deg)
  eyes = geometry.camera_centers(w2c)
  # The room always encloses the camera path (walls are seen from inside only).
  room = surfaces.Room(
      half_x=max(scale * rng.uniform(4, 12), np.abs(eyes[:, 0]).max() + scale),
      half_z=max(scale * rng.uniform(4, 12), np.abs(eyes[:, 2]).max() + scale),
      height=max(scale * rng.uniform(2.5, 5), -eyes[:, 1].min() + scale),
      ceiling=bool(rng.uniform() < 0.4))
  count = functools.partial(_points_for, f_px=f_px, cell_px=cell_px, density=density, cap=max_points_per_object)

  def nearest_depth(centre, radius):  # Closest approach of the object to the camera path.
    return max(float(np.linalg.norm(eyes - centre, axis=-1).min()) - radius, 0.1 * distance)

  objects = []
  # Static clutter: boxes on the floor, kept off the camera path and off the line
  # of sight to the target.
  for _ in range(int(rng.integers(1, 5)) if background else 0):
    half = scale * rng.uniform(0.2, 0.8, size=3)
    centre = np.array([rng.uniform(-1, 1), 0.0, rng.uniform(-1, 1)]) * scale * 4.0
    centre[1] = -half[1]
    radius = float(np.linalg.norm(half))
    if _distance_to_segments(centre, eyes, target).min() < radius * 1.2:
      continue
    area = 8 * (half[0] * half[1] + half[1] * half[2] + half[0] * half[2])
    xyz, nrm = surfaces.sample_box(rng, half, count(area, nearest_depth(centre, radius)))
    objects.append(surfaces.Surface(np.broadcast_to(xyz + centre, (t,) + xyz.shape),
                                    np.broadcast_to(nrm, (t,) + nrm.shape), False))

  num_dynamic = {"static": 0, "rigid": int(rng.integers(1, 4)), "nonrigid": int(rng.integers(1, 3)),
                 "articulated": int(rng.integers(1, 3)), "mocap": 1}[family]
  for _ in range(num_dynamic):
    articulated = family in ("articulated", "mocap")
    rot, shift = surfaces.rigid_motion(rng, t, travel=scale * rng.uniform(0.0 if articulated else 0.3, 1.0),
                                       max_angle_deg=rng.uniform(0, 60) if articulated else rng.uniform(10, 120))
    for _ in range(10):  # Keep the whole path of the object 3 scale units from the camera path.
      place = np.array([rng.uniform(-1.0, 1.0), 0.0, rng.uniform(-1.0, 1.0)]) * scale
      if np.linalg.norm(eyes - (place + shift), axis=-1).min() > 3.0 * scale:
        break
    depth_min = max(float(np.linalg.norm(eyes - (place + shift), axis=-1).min()) - scale, 0.1 * distance)
    if family == "articulated":
      joints, edges = surfaces.kinematic_chain(rng, t, int(rng.integers(2, 4)), length=scale * rng.uniform(1.5, 3.0))
      radius = scale * rng.uniform(0.15, 0.3)
    elif family == "mocap":
      joints, edges = _mocap_joints(rng, t, mocap_dir or default_mocap_dir(), height=scale * rng.uniform(2.2, 3.2),
                                    exclude=mocap_exclude)
      radius = scale * 0.15
    if articulated:
      joints = joints @ np.swapaxes(rot, -1, -2) + (shift + place)[:, None]
      bone_len = np.linalg.norm(joints[:, edges[:, 0]] - joints[:, edges[:, 1]], axis=-1).mean(0).sum()
      xyz, nrm = surfaces.sample_capsules(rng, joints, edges, radius, count(2 * np.pi * radius * bone_len, depth_min))
    else:
      if family == "rigid" and rng.uniform() < 0.5:
        half = scale * rng.uniform(0.4, 1.2, size=3)
        area = 8 * (half[0] * half[1] + half[1] * half[2] + half[0] * half[2])
        xyz0, nrm0 = surfaces.sample_box(rng, half, count(area, depth_min))
        size, lift = half.max(), half[1]
      else:
        radii = scale * rng.uniform(0.5, 1.4, size=3)
        area = 4 * np.pi * (np.prod(radii) ** (2 / 3))
        xyz0, nrm0 = surfaces.sample_ellipsoid(rng, radii, count(area, depth_min))
        size, lift = radii.max(), radii[1]
      local = np.broadcast_to(xyz0, (t,) + xyz0.shape)
      if family == "nonrigid":
        local = local + surfaces.low_rank_deformation(rng, xyz0, t, size, rank=int(rng.integers(1, 5)))
      xyz = local @ np.swapaxes(rot, -1, -2) + (shift + place + np.array([0, -lift * 1.05, 0]))[:, None]
      nrm = nrm0 @ np.swapaxes(rot, -1, -2)
    objects.append(surfaces.Surface(xyz, nrm, True))
  return Scene(family=family, camera=camera, w2c=w2c, intrinsics=K, image_hw=tuple(image_hw),
               room=room if background else None, objects=tuple(objects))


def _distance_to_segments(point: np.ndarray, starts: np.ndarray, end: np.ndarray) -> np.ndarray:
  """Distances (t,) from a point to the segments starts[i] -> end."""
  d = end - starts
  lam = np.clip(((point - starts) * d).sum(-1) / np.maximum((d * d).sum(-1), 1e-12), 0.0, 1.0)
  return np.linalg.norm(starts + lam[:, None] * d - point, axis=-1)


def _mocap_joints(rng: np.random.Generator, t: int, mocap_dir: Path, height: float, exclude: tuple[str, ...] = ()):
  """A random t-frame window of a random mocap sequence not in `exclude`, scaled
  to `height`, feet on the ground, centred at the origin. Short sequences are
  played back and forth."""
  seqs = load_mocap_skeletons(str(mocap_dir))
  if not seqs:
    raise ValueError(f"family 'mocap': no .mat sequences found in {mocap_dir}.")
  if exclude:
    names = [name for name, _, _ in seqs]
    unknown = sorted(set(exclude) - set(names))
    if unknown:
      raise ValueError(f"SyntheticConfig.mocap_exclude: {unknown} not among the sequences in {mocap_dir} "
                       f"({names}).")
    seqs = tuple(s for s in seqs if s[0] not in exclude)
    if not seqs:
      raise ValueError(f"SyntheticConfig.mocap_exclude: excludes every sequence in {mocap_dir}; the 'mocap' "
                       "family needs at least one.")
  _, joints, edges = seqs[rng.integers(len(seqs))]
  f = joints.shape[0]
  if f >= t:
    start = int(rng.integers(0, f - t + 1))
    idx = np.arange(start, start + t)
  else:  # Ping-pong: never cut, never loop with a jump.
    cycle = np.concatenate([np.arange(f), np.arange(f - 2, 0, -1)])
    idx = cycle[np.arange(t) % len(cycle)]
  joints = joints[idx]
  extent = joints[..., 1].max() - joints[..., 1].min()
  joints = joints * (height / max(extent, 1e-6))
  joints = joints - np.array([joints[..., 0].mean(), joints[..., 1].max(), joints[..., 2].mean()])
  return joints, edges
