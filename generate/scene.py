"""Procedural textured scenes for the JAX renderer, and their random sampler.

A `ProceduralScene` is a closed room (an axis-aligned box seen from inside:
floor, ceiling, four walls) holding up to o objects, each a box or an
ellipsoid. Object j at frame i maps its canonical shape (the cube [-1, 1]^3 or
the unit sphere) to the world by the affine map

  X = obj_linear[i, j] @ u + obj_centre[i, j],   u on the canonical surface,

so a material point u has the exact trajectory X_i(u) over time. Rigid
objects have obj_linear = R_i diag(size); deforming objects add a smooth
low-rank affine deformation, obj_linear = R_i (I + sum_k c_k(i) S_k) diag(size)
(squash, stretch and shear that change over time). Ray casting inverts the map
per ray, so depth and tracks are exact.

Textures are procedural functions of a texture-space point p (the world point
for room faces, u * tex_scale for objects, so object textures stick to the
material): a two-colour checker sin(2 pi f (a . p) + phi_a) sin(2 pi f (b . p) + phi_b)
times a smooth colour modulation, a sum of sinusoids. The renderer filters both
by the pixel footprint (analytic anti-aliasing, see `render`).

World frame: y points down (as `tracks4d.synthetic`), the floor is y = 0.

Shapes: t frames, o objects, s = 6 + o surfaces (room faces first), k noise waves.
"""

from __future__ import annotations

from typing import Any

import flax.struct
import numpy as np

from generate import checks
from generate.cameras import Trajectory
from tracks4d import geometry
from tracks4d.synthetic import surfaces
from tracks4d.synthetic.cameras import camera_path

# Room faces, in surface-id order 0..5: the face hit when leaving the box along
# -x, +x, -y (ceiling, y down), +y (floor), -z, +z.
ROOM_FACES = ("wall_x_min", "wall_x_max", "ceiling", "floor", "wall_z_min", "wall_z_max")
NUM_FACES = len(ROOM_FACES)
BOX, ELLIPSOID = 0, 1
MOTIONS = ("static", "rigid", "deforming")
NOISE_WAVES = 3


@flax.struct.dataclass
class Textures:
  """Procedural texture parameters of s surfaces.

  Attributes:
    colour_a, colour_b: (s, 3) the two checker colours, RGB in [0, 1].
    axis_u, axis_v: (s, 3) unit directions of the checker's two stripe families.
    checker_freq: (s,) checker cycles per texture unit.
    checker_phase: (s, 2) phases of the two stripe families.
    noise_freq: (s, k, 3) frequency vectors (cycles per unit) of the colour modulation.
    noise_phase: (s, k) their phases.
    noise_amp: (s, k, 3) their amplitudes per channel (relative).
    tex_scale: (s,) texture units per canonical unit (1 for room faces).
  """

  colour_a: Any
  colour_b: Any
  axis_u: Any
  axis_v: Any
  checker_freq: Any
  checker_phase: Any
  noise_freq: Any
  noise_phase: Any
  noise_amp: Any
  tex_scale: Any


@flax.struct.dataclass
class ProceduralScene:
  """A room with moving objects; see the module doc.

  Attributes:
    room_min, room_max: (3,) corners of the room box (floor at room_max[1] = 0).
    obj_kind: (o,) int32, BOX or ELLIPSOID.
    obj_active: (o,) bool, False for padding slots (never hit).
    obj_dynamic: (o,) bool, whether the object moves.
    obj_linear: (t, o, 3, 3) world-from-canonical linear maps.
    obj_centre: (t, o, 3) world positions of the canonical origin.
    textures: `Textures` of the 6 room faces then the o objects.
    light_dir: (3,) unit direction towards the light (world).
    ambient: () ambient light fraction in [0, 1].
  """

  room_min: Any
  room_max: Any
  obj_kind: Any
  obj_active: Any
  obj_dynamic: Any
  obj_linear: Any
  obj_centre: Any
  textures: Textures
  light_dir: Any
  ambient: Any

  @property
  def num_frames(self) -> int:
    return int(np.shape(self.obj_linear)[0])

  @property
  def num_objects(self) -> int:
    return int(np.shape(self.obj_linear)[1])

  def bounding_spheres(self) -> tuple[np.ndarray, np.ndarray]:
    """(t, o, 3) centres and (t, o) radii of spheres holding each object (inactive: radius 0)."""
    lin = np.asarray(self.obj_linear, np.float64)
    # The canonical shapes fit in the sphere of radius sqrt(3) (cube) or 1 (sphere).
    canon = np.where(np.asarray(self.obj_kind) == BOX, np.sqrt(3.0), 1.0)
    radius = np.linalg.norm(lin, ord=2, axis=(-2, -1)) * canon * np.asarray(self.obj_active)
    return np.asarray(self.obj_centre, np.float64), radius


@flax.struct.dataclass
class SceneSample:
  """A random scene with its source camera path.

  Attributes:
    scene: the `ProceduralScene`.
    source: the source `Trajectory`.
    camera: the source path kind (tracks4d.synthetic.cameras.CAMERA_PATHS).
    target_point: (3,) world point the source camera path looks at.
  """

  scene: ProceduralScene
  source: Trajectory
  camera: str = flax.struct.field(pytree_node=False)
  target_point: Any = None


def _unit(v: np.ndarray) -> np.ndarray:
  return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def _random_textures(rng: np.random.Generator, num: int, freq_range, scale: np.ndarray,
                     axes_u: np.ndarray | None = None, axes_v: np.ndarray | None = None) -> dict:
  colour_a = rng.uniform(0.15, 0.95, size=(num, 3))
  other = rng.uniform(0.05, 0.9, size=(num, 3))
  colour_b = np.where(rng.uniform(size=(num, 1)) < 0.5, colour_a * rng.uniform(0.25, 0.6, (num, 1)), other)
  if axes_u is None:
    axes_u = _unit(rng.normal(size=(num, 3)))
    axes_v = _unit(np.cross(axes_u, _unit(rng.normal(size=(num, 3)))))
  noise_dir = _unit(rng.normal(size=(num, NOISE_WAVES, 3)))
  return dict(
      colour_a=colour_a, colour_b=colour_b, axis_u=axes_u, axis_v=axes_v,
      checker_freq=rng.uniform(*freq_range, size=num), checker_phase=rng.uniform(0, 2 * np.pi, size=(num, 2)),
      noise_freq=noise_dir * rng.uniform(0.15, 1.2, size=(num, NOISE_WAVES, 1)),
      noise_phase=rng.uniform(0, 2 * np.pi, size=(num, NOISE_WAVES)),
      noise_amp=rng.uniform(0.03, 0.2, size=(num, NOISE_WAVES, 3)),
      tex_scale=np.asarray(scale, np.float64))


def _face_axes() -> tuple[np.ndarray, np.ndarray]:
  """In-plane checker axes of the 6 room faces (so the checker is square on each)."""
  eye = np.eye(3)
  u, v = [], []
  for face in range(NUM_FACES):
    a = face // 2
    others = [i for i in range(3) if i != a]
    u.append(eye[others[0]])
    v.append(eye[others[1]])
  return np.array(u), np.array(v)


def _deformation(rng: np.random.Generator, t: int, amount: float) -> np.ndarray:
  """(t, 3, 3) smooth low-rank affine deformations A_i = I + sum_k c_k(i) S_k, A_0 = I,
  with |A_i - I| (spectral) at most `amount`."""
  rank = int(rng.integers(1, 4))
  sym = rng.normal(size=(rank, 3, 3))
  sym = (sym + np.swapaxes(sym, -1, -2)) / 2.0
  coeff = surfaces.smooth_curve(rng, t, rank, max_cycles=2.0)
  coeff = coeff - coeff[:1]
  delta = np.einsum("tk,kij->tij", coeff, sym)
  peak = np.linalg.norm(delta, ord=2, axis=(-2, -1)).max()
  return np.eye(3) + delta * (amount / max(peak, 1e-9))


def random_scene(rng: np.random.Generator, num_frames: int, image_hw, max_objects: int = 4,
                 camera: str | None = None, cameras=("static", "handheld", "orbit", "dolly", "pan"),
                 fov_deg=(50.0, 70.0)) -> SceneSample:
  """Samples a procedural scene and its source camera path.

  The source camera looks at a point above the middle of the floor from 3-5
  units away along one of `tracks4d.synthetic.cameras` paths; 1..max_objects
  boxes and ellipsoids (static, rigidly moving, or deforming) stand on the floor
  around that point, kept away from the camera path; the room encloses the
  path with room to move new cameras around the point.

  Args:
    rng: the random generator (fixes the scene).
    num_frames: t, >= 1.
    image_hw: (height, width) of the source video.
    max_objects: o, the number of object slots (unused slots are inactive).
    camera: force a source path kind; default drawn from `cameras`.
    cameras: kinds to draw from.
    fov_deg: (min, max) horizontal field of view in degrees.

  Returns:
    A `SceneSample` (scene, source trajectory, camera kind, look-at point).

  Raises:
    ValueError: naming `num_frames`, `image_hw`, `max_objects` or `camera`.

  Example:
    >>> sample = random_scene(np.random.default_rng(0), 16, (64, 64))
  """
  hw = checks.image_hw(image_hw)
  if int(num_frames) != num_frames or num_frames < 1:
    raise ValueError(f"num_frames: expected a positive integer; got {num_frames!r}.")
  if int(max_objects) != max_objects or max_objects < 1:
    raise ValueError(f"max_objects: expected a positive integer; got {max_objects!r}.")
  from tracks4d.synthetic.cameras import CAMERA_PATHS
  for kind in ((camera,) if camera is not None else tuple(cameras)):
    if kind not in CAMERA_PATHS:
      raise ValueError(f"camera: expected one of {CAMERA_PATHS}; got {kind!r}.")
  t, o = int(num_frames), int(max_objects)
  camera = camera or cameras[int(rng.integers(len(cameras)))]
  target = np.array([rng.uniform(-0.3, 0.3), -rng.uniform(0.3, 0.7), rng.uniform(-0.3, 0.3)])
  distance = rng.uniform(3.0, 5.0)
  w2c = camera_path(rng, camera, t, target, distance)
  eyes = geometry.camera_centers(w2c)
  K = geometry.intrinsics_from_fov(rng.uniform(*fov_deg), hw)
  # Room: encloses the path, and a sphere of 1.5 x distance about the target (for new views).
  reach = 1.5 * distance
  half_x = max(rng.uniform(6.0, 9.0), np.abs(eyes[:, 0]).max() + 1.0, abs(target[0]) + reach)
  half_z = max(rng.uniform(6.0, 9.0), np.abs(eyes[:, 2]).max() + 1.0, abs(target[2]) + reach)
  height = max(rng.uniform(4.0, 6.0), -eyes[:, 1].min() + 1.0, -target[1] + reach)
  room_min, room_max = np.array([-half_x, -height, -half_z]), np.array([half_x, 0.0, half_z])

  num_active = int(rng.integers(1, o + 1))
  kind = rng.integers(0, 2, size=o).astype(np.int32)
  active = np.arange(o) < num_active
  linear = np.broadcast_to(np.eye(3) * 1e-3, (t, o, 3, 3)).copy()
  centre = np.broadcast_to(np.array([0.0, 10.0, 0.0]), (t, o, 3)).copy()  # Parked below the floor.
  dynamic = np.zeros(o, bool)
  placed: list[tuple[np.ndarray, float]] = []
  for j in range(num_active):
    size = rng.uniform(0.25, 0.7, size=3)
    motion = MOTIONS[int(rng.integers(len(MOTIONS)))]
    if motion == "static":
      rot, shift = np.broadcast_to(np.eye(3), (t, 3, 3)), np.zeros((t, 3))
    else:
      rot, shift = surfaces.rigid_motion(rng, t, travel=rng.uniform(0.3, 1.0), max_angle_deg=rng.uniform(10, 90))
    deform = _deformation(rng, t, rng.uniform(0.15, 0.35)) if motion == "deforming" else np.eye(3)[None]
    lin = rot @ deform @ np.diag(size)
    bound = float(np.linalg.norm(lin, ord=2, axis=(-2, -1)).max() * (np.sqrt(3.0) if kind[j] == BOX else 1.0))
    for _ in range(20):  # Around the target, clear of the camera path and of the other objects.
      place = target + np.array([rng.uniform(-1.8, 1.8), 0.0, rng.uniform(-1.8, 1.8)])
      place[1] = -size[1]  # Resting on the floor at rest.
      path = place + shift
      clear_cam = np.linalg.norm(eyes[:, None] - path[None], axis=-1).min() > bound + 0.5
      clear_obj = all(np.linalg.norm(path - c, axis=-1).min() > 0.7 * (bound + r) for c, r in placed)
      if clear_cam and clear_obj:
        break
    else:
      active[j] = False
      continue
    placed.append((path, bound))
    linear[:, j] = lin
    centre[:, j] = path
    dynamic[j] = motion != "static"

  face_u, face_v = _face_axes()
  room_tex = _random_textures(rng, NUM_FACES, (0.5, 1.5), np.ones(NUM_FACES), face_u, face_v)
  obj_scale = np.asarray([np.linalg.norm(linear[0, j], ord=2) for j in range(o)])
  obj_tex = _random_textures(rng, o, (1.5, 4.0), np.maximum(obj_scale, 1e-3))
  tex = Textures(**{k: np.concatenate([room_tex[k], obj_tex[k]]).astype(np.float32) for k in room_tex})
  light = _unit(np.array([rng.uniform(-0.6, 0.6), -1.0, rng.uniform(-0.6, 0.6)]))
  scene = ProceduralScene(
      room_min=room_min.astype(np.float32), room_max=room_max.astype(np.float32), obj_kind=kind,
      obj_active=active, obj_dynamic=dynamic, obj_linear=linear.astype(np.float32),
      obj_centre=centre.astype(np.float32), textures=tex, light_dir=light.astype(np.float32),
      ambient=np.float32(rng.uniform(0.35, 0.55)))
  source = Trajectory.create(w2c, K, hw, num_frames=t, name="source")
  return SceneSample(scene=scene, source=source, camera=camera, target_point=target.astype(np.float32))


def cameras_clear(scene: ProceduralScene, trajectory: Trajectory, margin: float = 0.3) -> bool:
  """Whether every camera centre is inside the room (by `margin`) and outside
  every object's bounding sphere (by `margin`) at its frame."""
  eyes = np.asarray(trajectory.centers, np.float64)
  room_min, room_max = np.asarray(scene.room_min), np.asarray(scene.room_max)
  if np.any(eyes < room_min + margin) or np.any(eyes > room_max - margin):
    return False
  centres, radii = scene.bounding_spheres()
  gap = np.linalg.norm(eyes[:, None] - centres, axis=-1) - radii - margin
  return bool(np.all(gap[:, np.asarray(scene.obj_active)] > 0))
