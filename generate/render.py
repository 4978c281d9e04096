"""A JAX ray-casting renderer of procedural scenes: RGB, depth and exact tracks.

`render` casts one ray per pixel centre through any camera at any scene time
and returns colour, camera-frame depth and the id of the surface hit. Rays are
intersected analytically with the room box (from inside) and every object
(the ray is mapped into the object's canonical frame by the inverse of its
affine map, then met with the unit sphere or cube), so depth is exact.

Shading: Lambertian, ambient + (1 - ambient) max(0, n . l) (view-independent,
so warps between views of one instant are consistent). Textures are filtered
by a Gaussian pixel prefilter of std sigma = filter_px x the pixel footprint
(distance / focal / |cos incidence|, in texture units): a pattern frequency nu
keeps exp(-2 pi^2 sigma^2 nu^2) of its contrast and checker edges are about
2 sigma wide, an analytic anti-aliasing that keeps one ray per pixel (and depth
exactly at the pixel centre). `antialias` > 1 also averages several rays per
pixel (smooth silhouettes).

Tracks: `sample_tracks` queries a jittered grid of pixels at some frames of a
camera (as a point tracker's query grid), keeps the material point each ray
hits, and follows it exactly through time (room points are fixed; object
points move with their object's affine map). `track_views` projects them into
any trajectory with exact visibility: a ray is cast through each projection
and the track is visible when the first hit is the track itself.

Everything is jitted and vectorised over frames and rays (vmap).

Shapes: t frames, f rendered frames, h w image, r rays, o objects, n tracks.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from generate import checks
from generate.cameras import Trajectory
from generate.scene import BOX, NUM_FACES, ProceduralScene
from tracks4d import geometry

# Relative depth agreement for a track to count as the first hit of its ray.
VISIBILITY_TOLERANCE = 1e-3
# Std of the Gaussian pixel prefilter of textures, in pixels.
TEXTURE_FILTER_PX = 0.5
_EPS = 1e-5


@flax.struct.dataclass
class Frames:
  """Rendered frames.

  Attributes:
    rgb: (f, h, w, 3) float32 colours in [0, 1].
    depth: (f, h, w) float32 camera-frame depth at pixel centres.
    surface_id: (f, h, w) int32 surface hit (0..5 room faces, 6 + j object j).
  """

  rgb: Any
  depth: Any
  surface_id: Any


@flax.struct.dataclass
class SceneTracks:
  """Material points of a scene followed over time (ground-truth 3D tracks).

  Attributes:
    xyz_world: (t, n, 3) float32 world positions per scene frame.
    surface_id: (n,) int32 surface each point lies on.
    dynamic: (n,) bool, True on moving objects.
    query_frame: (n,) int32 frame the point was queried at.
    query_xy_px: (n, 2) float32 the query pixel (x, y) in the query camera.
  """

  xyz_world: Any
  surface_id: Any
  dynamic: Any
  query_frame: Any
  query_xy_px: Any


@flax.struct.dataclass
class _Hit:
  s: Any  # (r,) ray parameter (camera depth for z-normalised directions), inf if none.
  sid: Any  # (r,) int32 surface id.
  local: Any  # (r, 3) world point (room) or canonical point (objects).
  normal: Any  # (r, 3) unit world normal facing the ray origin.


def _raycast(scene: ProceduralScene, frame, origin, dirs) -> _Hit:
  """First hits of rays origin + s dirs (origin (3,) or (r, 3), dirs (r, 3)) at scene time `frame`."""
  origin_shared = origin.ndim == 1
  origin = jnp.broadcast_to(origin, dirs.shape)
  # Room, from inside: the exit of the box.
  safe = jnp.where(jnp.abs(dirs) < 1e-12, 1e-12, dirs)
  exit_s = jnp.where(dirs > 0, (scene.room_max - origin) / safe, (scene.room_min - origin) / safe)
  exit_s = jnp.where(jnp.abs(dirs) < 1e-12, jnp.inf, exit_s)
  axis = jnp.argmin(exit_s, axis=-1)
  s_room = jnp.min(exit_s, axis=-1)
  d_axis = jnp.take_along_axis(dirs, axis[:, None], -1)[:, 0]
  sid_room = 2 * axis + (d_axis > 0)
  n_room = -jnp.sign(d_axis)[:, None] * jax.nn.one_hot(axis, 3, dtype=dirs.dtype)
  p_room = origin + s_room[:, None] * dirs
  # Objects, in their canonical frames.
  lin = scene.obj_linear[frame]  # (o, 3, 3)
  inv = jnp.linalg.inv(lin)
  if origin_shared:  # One origin for all rays (a pinhole camera): map it once per object.
    o_c = jnp.broadcast_to(jnp.einsum("oij,oj->oi", inv, origin[0] - scene.obj_centre[frame])[None],
                           (dirs.shape[0],) + inv.shape[:1] + (3,))
  else:
    o_c = jnp.einsum("oij,roj->roi", inv, origin[:, None, :] - scene.obj_centre[frame][None])  # (r, o, 3)
  d_c = jnp.einsum("oij,rj->roi", inv, dirs)
  # Unit sphere.
  a = (d_c * d_c).sum(-1)
  b = (o_c * d_c).sum(-1)
  c = (o_c * o_c).sum(-1) - 1.0
  disc = b * b - a * c
  s_sph = (-b - jnp.sqrt(jnp.maximum(disc, 0.0))) / a
  s_sph = jnp.where((disc > 0) & (s_sph > _EPS), s_sph, jnp.inf)
  # Cube [-1, 1]^3 by slabs.
  safe_c = jnp.where(jnp.abs(d_c) < 1e-12, 1e-12, d_c)
  t1, t2 = (-1.0 - o_c) / safe_c, (1.0 - o_c) / safe_c
  t_near = jnp.minimum(t1, t2).max(-1)
  t_far = jnp.maximum(t1, t2).min(-1)
  s_box = jnp.where((t_near <= t_far) & (t_near > _EPS), t_near, jnp.inf)
  s_obj = jnp.where(scene.obj_kind[None] == BOX, s_box, s_sph)
  s_obj = jnp.where(scene.obj_active[None], s_obj, jnp.inf)
  j = jnp.argmin(s_obj, axis=-1)  # (r,)
  s_best = jnp.take_along_axis(s_obj, j[:, None], -1)[:, 0]
  u = jnp.take_along_axis(o_c, j[:, None, None], 1)[:, 0] + s_best[:, None] * jnp.take_along_axis(
      d_c, j[:, None, None], 1)[:, 0]
  u = jnp.where(jnp.isfinite(u), u, 0.0)
  kind = scene.obj_kind[j]
  big = jnp.argmax(jnp.abs(u), axis=-1)
  n_box = jax.nn.one_hot(big, 3, dtype=u.dtype) * jnp.sign(jnp.take_along_axis(u, big[:, None], -1))
  n_can = jnp.where((kind == BOX)[:, None], n_box, u)
  n_obj = jnp.einsum("ri,rij->rj", n_can, inv[j])  # L^-T n as a row vector.
  n_obj = n_obj / jnp.maximum(jnp.linalg.norm(n_obj, axis=-1, keepdims=True), 1e-12)
  use_obj = s_best < s_room
  return _Hit(
      s=jnp.where(use_obj, s_best, s_room),
      sid=jnp.where(use_obj, NUM_FACES + j, sid_room).astype(jnp.int32),
      local=jnp.where(use_obj[:, None], u, p_room),
      normal=jnp.where(use_obj[:, None], n_obj, n_room))


def _shade(scene: ProceduralScene, hit: _Hit, dirs, focal_px, filter_px):
  """Colours (r, 3) of hits seen along dirs (r, 3) by a camera of focal length focal_px."""
  tex = jax.tree.map(lambda x: x[hit.sid], scene.textures)
  p = hit.local * tex.tex_scale[:, None]
  dist = hit.s * jnp.linalg.norm(dirs, axis=-1)
  cos = jnp.abs((hit.normal * dirs).sum(-1)) / jnp.linalg.norm(dirs, axis=-1)
  # Gaussian pixel prefilter of std sigma (texture units): a frequency nu keeps exp(-2 pi^2 sigma^2 nu^2).
  sigma = filter_px * dist / focal_px / jnp.maximum(cos, 0.1)
  f = tex.checker_freq
  cu = jnp.sin(2 * jnp.pi * f * (tex.axis_u * p).sum(-1) + tex.checker_phase[:, 0])
  cv = jnp.sin(2 * jnp.pi * f * (tex.axis_v * p).sum(-1) + tex.checker_phase[:, 1])
  sharp = jnp.minimum(1.0 / (2 * jnp.pi * f * 2.0 * sigma), 50.0)  # Edges about 2 sigma wide.
  mix = 0.5 + 0.5 * jnp.tanh(sharp * cu * cv) * jnp.exp(-2.0 * (jnp.pi * f * sigma) ** 2)
  base = tex.colour_b + (tex.colour_a - tex.colour_b) * mix[:, None]
  nu = jnp.linalg.norm(tex.noise_freq, axis=-1)  # (r, k)
  wave = jnp.sin(2 * jnp.pi * jnp.einsum("rkc,rc->rk", tex.noise_freq, p) + tex.noise_phase)
  wave = wave * jnp.exp(-2.0 * (jnp.pi * nu * sigma[:, None]) ** 2)
  albedo = jnp.clip(base * (1.0 + jnp.einsum("rk,rkc->rc", wave, tex.noise_amp)), 0.0, 1.0)
  light = scene.ambient + (1.0 - scene.ambient) * jnp.maximum((hit.normal * scene.light_dir).sum(-1), 0.0)
  return albedo * light[:, None]


def _camera_rays(w2c, K, xy_px):
  """World origin (3,) and z-normalised world directions (r, 3) through pixels xy_px (r, 2)."""
  c2w = geometry.invert_pose(w2c)
  d_cam = geometry.unproject(xy_px, jnp.ones(xy_px.shape[:-1], xy_px.dtype), K)
  return c2w[:3, 3], d_cam @ c2w[:3, :3].T


@functools.partial(jax.jit, static_argnames=("image_hw", "antialias"))
def _render(scene, frame_index, w2c, K, image_hw, filter_px, antialias):
  h, w = image_hw
  a = antialias
  off = (jnp.arange(a, dtype=jnp.float32) + 0.5) / a - 0.5  # Odd a: the middle offset is 0.
  ys = (jnp.arange(h, dtype=jnp.float32)[:, None] + off[None]).reshape(-1)
  xs = (jnp.arange(w, dtype=jnp.float32)[:, None] + off[None]).reshape(-1)
  gy, gx = jnp.meshgrid(ys, xs, indexing="ij")
  xy = jnp.stack([gx.ravel(), gy.ravel()], -1)
  mid = a // 2

  def one(frame, w2c_i, K_i):
    origin, dirs = _camera_rays(w2c_i, K_i, xy)
    hit = _raycast(scene, frame, origin, dirs)
    rgb = _shade(scene, hit, dirs, 0.5 * (K_i[0, 0] + K_i[1, 1]) * a, filter_px)
    rgb = rgb.reshape(h, a, w, a, 3).mean(axis=(1, 3))
    depth = hit.s.reshape(h, a, w, a)[:, mid, :, mid]
    sid = hit.sid.reshape(h, a, w, a)[:, mid, :, mid]
    return rgb, depth, sid

  return jax.vmap(one)(frame_index, w2c, K)


def _check_scene(scene) -> None:
  if not isinstance(scene, ProceduralScene):
    raise ValueError(f"scene: expected a generate.scene.ProceduralScene; got {type(scene).__name__}.")


def _frame_index(scene: ProceduralScene, trajectory: Trajectory, frame_index, name: str) -> np.ndarray:
  if not isinstance(trajectory, Trajectory):
    raise ValueError(f"{name}: expected a generate.cameras.Trajectory; got {type(trajectory).__name__}.")
  checks.image_hw(trajectory.image_hw, f"{name}.image_hw")
  checks.poses(trajectory.w2c, f"{name}.w2c")
  checks.intrinsics(trajectory.intrinsics, f"{name}.intrinsics", trajectory.num_frames)
  f = trajectory.num_frames
  if frame_index is None:
    if f != scene.num_frames:
      raise ValueError(f"{name}.w2c: expected {scene.num_frames} poses, one per scene frame; got {f} "
                       "(pass frame_index to render other scene times).")
    return np.arange(f, dtype=np.int32)
  idx = np.asarray(frame_index)
  if idx.shape != (f,) or not np.issubdtype(idx.dtype, np.integer):
    raise ValueError(f"frame_index: expected ({f},) integer scene frames, one per camera; got {idx.shape} {idx.dtype}.")
  if idx.min() < 0 or idx.max() >= scene.num_frames:
    raise ValueError(f"frame_index: expected frames in [0, {scene.num_frames}); got [{idx.min()}, {idx.max()}].")
  return idx.astype(np.int32)


def render(scene: ProceduralScene, trajectory: Trajectory, frame_index=None,
           filter_px: float = TEXTURE_FILTER_PX, antialias: int = 1) -> Frames:
  """Renders a scene through a trajectory (one ray per pixel centre).

  Args:
    scene: the scene (t frames).
    trajectory: f cameras; by default one per scene frame (f = t).
    frame_index: optional (f,) scene frame seen by each camera (e.g. to render
      several trajectories in one call, concatenated).
    filter_px: std of the Gaussian texture prefilter in pixels (anti-aliasing).
    antialias: odd number of rays per pixel side; colours are averaged over the
      antialias^2 rays (smooth silhouettes), depth and surface id are the
      middle ray's (the pixel centre). Costs antialias^2 times more.

  Returns:
    `Frames` (rgb, depth, surface_id) as JAX arrays of f frames at the
    trajectory's image size.

  Raises:
    ValueError: naming `scene`, `trajectory.*` (wrong length, bad poses,
      zero-size image), `frame_index` or `antialias`.

  Example:
    >>> frames = render(sample.scene, sample.source)
    >>> frames.rgb.shape     # (t, h, w, 3)
  """
  _check_scene(scene)
  idx = _frame_index(scene, trajectory, frame_index, "trajectory")
  if int(antialias) != antialias or antialias < 1 or antialias % 2 == 0:
    raise ValueError(f"antialias: expected a positive odd integer (rays per pixel side); got {antialias!r}.")
  rgb, depth, sid = _render(scene, jnp.asarray(idx), jnp.asarray(trajectory.w2c, jnp.float32),
                            jnp.asarray(trajectory.intrinsics, jnp.float32), tuple(trajectory.image_hw),
                            float(filter_px), int(antialias))
  return Frames(rgb=rgb, depth=depth, surface_id=sid)


@jax.jit
def _follow(scene, hit_sid, hit_local):
  """World trajectories (t, n, 3) of material points (surface ids (n,), local points (n, 3))."""
  j = jnp.maximum(hit_sid - NUM_FACES, 0)
  on_obj = hit_sid >= NUM_FACES
  lin = scene.obj_linear[:, j]  # (t, n, 3, 3)
  moved = jnp.einsum("tnij,nj->tni", lin, hit_local) + scene.obj_centre[:, j]
  return jnp.where(on_obj[None, :, None], moved, hit_local[None])


@jax.jit
def _query(scene, frames, w2c, K, xy):
  def one(frame, w2c_i, K_i, xy_i):
    origin, dirs = _camera_rays(w2c_i, K_i, xy_i)
    hit = _raycast(scene, frame, origin, dirs)
    return hit.sid, hit.local

  return jax.vmap(one)(frames, w2c, K, xy)


def sample_tracks(scene: ProceduralScene, trajectory: Trajectory, rng: np.random.Generator, grid_size: int,
                  query_frames=(0,)) -> SceneTracks:
  """Exact 3D tracks of material points queried on a jittered pixel grid.

  At each query frame, a grid_size x grid_size grid of pixels (one random
  sub-cell offset per frame, as a tracker's query grid) is cast through that
  frame's camera; each hit material point is then followed over all frames.

  Args:
    scene: the scene (t frames).
    trajectory: the query cameras (t frames, e.g. the source).
    rng: random generator for the grid offsets.
    grid_size: queries per image side per query frame.
    query_frames: frames to query at.

  Returns:
    `SceneTracks` with n = grid_size^2 * len(query_frames) tracks (NumPy).

  Raises:
    ValueError: naming `grid_size`, `query_frames` or `trajectory.*`.

  Example:
    >>> tracks = sample_tracks(scene, source, rng, grid_size=10, query_frames=(0, 8, 15))
  """
  _check_scene(scene)
  _frame_index(scene, trajectory, None, "trajectory")
  if int(grid_size) != grid_size or grid_size < 1:
    raise ValueError(f"grid_size: expected a positive integer; got {grid_size!r}.")
  qf = np.asarray(query_frames, np.int32).reshape(-1)
  if len(qf) == 0 or qf.min() < 0 or qf.max() >= scene.num_frames:
    raise ValueError(f"query_frames: expected frames in [0, {scene.num_frames}); got {list(qf)}.")
  h, w = trajectory.image_hw
  xy = []
  for _ in qf:
    ys = (np.arange(grid_size) + rng.uniform(0.1, 0.9)) * h / grid_size - 0.5
    xs = (np.arange(grid_size) + rng.uniform(0.1, 0.9)) * w / grid_size - 0.5
    gy, gx = np.meshgrid(ys, xs, indexing="ij")
    xy.append(np.stack([gx.ravel(), gy.ravel()], -1))
  xy = np.asarray(xy, np.float32)  # (q, g^2, 2)
  sid, local = _query(scene, jnp.asarray(qf), jnp.asarray(trajectory.w2c, jnp.float32)[qf],
                      jnp.asarray(trajectory.intrinsics, jnp.float32)[qf], jnp.asarray(xy))
  sid, local = sid.reshape(-1), local.reshape(-1, 3)
  xyz = _follow(scene, sid, local)
  sid = np.asarray(sid)
  dyn = np.asarray(scene.obj_dynamic)[np.maximum(sid - NUM_FACES, 0)] & (sid >= NUM_FACES)
  return SceneTracks(xyz_world=np.asarray(xyz, np.float32), surface_id=sid, dynamic=dyn,
                     query_frame=np.repeat(qf, grid_size**2), query_xy_px=xy.reshape(-1, 2))


@functools.partial(jax.jit, static_argnames=("image_hw",))
def _views(scene, frame_index, w2c, K, xyz_world, image_hw, tol):
  def one(frame, w2c_i, K_i, xyz):
    xy, depth = geometry.project(geometry.transform_points(w2c_i, xyz), K_i)
    origin, dirs = _camera_rays(w2c_i, K_i, xy)
    hit = _raycast(scene, frame, origin, dirs)
    seen = jnp.abs(hit.s - depth) <= tol * jnp.maximum(depth, geometry.MIN_DEPTH)
    ok = (depth > geometry.MIN_DEPTH) & geometry.in_image(xy, np.array(image_hw)) & seen
    return xy, depth, ok

  return jax.vmap(one)(frame_index, w2c, K, xyz_world)


def track_views(scene: ProceduralScene, tracks: SceneTracks, trajectory: Trajectory, frame_index=None,
                tolerance: float = VISIBILITY_TOLERANCE):
  """Projections of exact tracks into a trajectory, with exact visibility.

  Args:
    scene: the scene the tracks were sampled from.
    tracks: the `SceneTracks`.
    trajectory: f cameras (by default one per scene frame).
    frame_index: optional (f,) scene frame of each camera.
    tolerance: relative depth agreement between the track and the first hit of
      the ray through its projection.

  Returns:
    xy_px (f, n, 2), depth (f, n) and visible (f, n) bool, NumPy: visible when
    inside the image, in front of the camera and the first surface on its ray.

  Raises:
    ValueError: naming `trajectory.*` or `frame_index`.
  """
  _check_scene(scene)
  idx = _frame_index(scene, trajectory, frame_index, "trajectory")
  xyz = np.asarray(tracks.xyz_world, np.float32)[idx]
  xy, depth, vis = _views(scene, jnp.asarray(idx), jnp.asarray(trajectory.w2c, jnp.float32),
                          jnp.asarray(trajectory.intrinsics, jnp.float32), jnp.asarray(xyz),
                          tuple(trajectory.image_hw), float(tolerance))
  return np.asarray(xy), np.asarray(depth), np.asarray(vis)
