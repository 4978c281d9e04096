"""Point-sampled surfaces of synthetic scenes, moving over time (NumPy).

Every piece of scene content is a `Surface`: m material points with, per frame,
a world position and an outward normal, plus an id (for the occlusion test) and a
dynamic flag. Positions of one material point over time are its ground-truth 3D
track. World frame: y points down (OpenCV-like), the ground is the plane y = 0,
so things above the ground have negative y.

Shapes: t frames, m points, j joints.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tracks4d import geometry


@dataclasses.dataclass(frozen=True)
class Surface:
  """Material points of one object.

  Attributes:
    xyz: (t, m, 3) world positions per frame.
    normal: (t, m, 3) unit outward normals per frame, or None for open surfaces
      seen from both sides (no back-face culling).
    dynamic: whether the object moves.
  """

  xyz: np.ndarray
  normal: np.ndarray | None
  dynamic: bool


def _unit(v: np.ndarray) -> np.ndarray:
  return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def smooth_curve(rng: np.random.Generator, t: int, dims: int, num_waves: int = 3, max_cycles: float = 1.5):
  """Smooth random curves (t, dims) with values in about [-1, 1]: sums of sinusoids
  with at most `max_cycles` periods over the clip."""
  s = np.linspace(0.0, 1.0, t)[:, None, None]
  freq = rng.uniform(0.1, max_cycles, size=(1, dims, num_waves))
  phase = rng.uniform(0, 2 * np.pi, size=(1, dims, num_waves))
  amp = rng.uniform(0.3, 1.0, size=(1, dims, num_waves))
  return (amp * np.sin(2 * np.pi * freq * s + phase)).sum(-1) / amp.sum(-1)


# ---------------------------------------------------------------------------
# Static background: the room, ray-cast from cameras so its density is uniform in
# the image.
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Room:
  """Floor y = 0, four walls at x = +-half_x and z = +-half_z, optional ceiling."""

  half_x: float
  half_z: float
  height: float
  ceiling: bool


def raycast_room(room: Room, c2w: np.ndarray, K: np.ndarray, xy_px: np.ndarray):
  """Points where pixel rays first hit the room's planes.

  Args:
    room: the room.
    c2w: (4, 4) camera-to-world pose.
    K: (3, 3) intrinsics.
    xy_px: (r, 2) pixel positions of the rays.

  Returns:
    xyz: (r', 3) hit points and normal: (r', 3) their normals (facing the room's
    inside), for the rays that hit something.
  """
  d_cam = geometry.unproject(xy_px, np.ones(len(xy_px)), K)
  d = d_cam @ c2w[:3, :3].T
  o = c2w[:3, 3]
  # (plane axis, plane value, inward normal) for each plane.
  planes = [(1, 0.0, (0, -1, 0)), (0, room.half_x, (-1, 0, 0)), (0, -room.half_x, (1, 0, 0)),
            (2, room.half_z, (0, 0, -1)), (2, -room.half_z, (0, 0, 1))]
  if room.ceiling:
    planes.append((1, -room.height, (0, 1, 0)))
  best = np.full(len(d), np.inf)
  normal = np.zeros_like(d)
  for axis, value, nrm in planes:
    with np.errstate(divide="ignore", invalid="ignore"):
      lam = (value - o[axis]) / d[:, axis]
    hit = o + lam[:, None] * d
    ok = (lam > 1e-6) & np.isfinite(lam)
    # Within the room's bounds on the other axes (small margin for edges).
    ok &= (np.abs(hit[:, 0]) <= room.half_x + 1e-6) & (np.abs(hit[:, 2]) <= room.half_z + 1e-6)
    ok &= (hit[:, 1] <= 1e-6) & (hit[:, 1] >= -room.height - 1e-6)
    closer = ok & (lam < best)
    best = np.where(closer, lam, best)
    normal[closer] = nrm
  hit_any = np.isfinite(best)
  return o + best[hit_any, None] * d[hit_any], normal[hit_any]


# ---------------------------------------------------------------------------
# Closed shapes sampled by area.
# ---------------------------------------------------------------------------


def sample_box(rng: np.random.Generator, half: np.ndarray, m: int):
  """m points on the surface of a box with half-extents (3,), with normals."""
  areas = 4 * np.array([half[1] * half[2], half[0] * half[2], half[0] * half[1]])
  axis = rng.choice(3, size=m, p=np.repeat(areas, 1) / areas.sum())
  sign = rng.choice([-1.0, 1.0], size=m)
  xyz = rng.uniform(-1, 1, size=(m, 3)) * half
  xyz[np.arange(m), axis] = sign * half[axis]
  normal = np.zeros((m, 3))
  normal[np.arange(m), axis] = sign
  return xyz, normal


def sample_ellipsoid(rng: np.random.Generator, radii: np.ndarray, m: int):
  """m points on an ellipsoid with semi-axes (3,), with normals (roughly uniform by area)."""
  u = _unit(rng.normal(size=(4 * m, 3)))
  # Rejection by the local area stretch keeps the density near uniform.
  stretch = np.linalg.norm(u / radii * np.prod(radii), axis=-1)
  keep = rng.uniform(0, stretch.max(), size=len(u)) < stretch
  u = u[keep][:m]
  if len(u) < m:
    u = np.concatenate([u, _unit(rng.normal(size=(m - len(u), 3)))])
  return u * radii, _unit(u / radii)


def sample_capsules(rng: np.random.Generator, joints: np.ndarray, edges: np.ndarray, radius: float, m: int):
  """Points on cylinders around skeleton bones, moving with the skeleton.

  Args:
    joints: (t, j, 3) joint positions over time.
    edges: (e, 2) joint index pairs (bones).
    radius: cylinder radius.
    m: number of points.

  Returns:
    xyz, normal: (t, m, 3) each. A point keeps its bone, its position along the
    bone and its angle around it, in a frame that follows the bone smoothly.
  """
  a, b = joints[:, edges[:, 0]], joints[:, edges[:, 1]]  # (t, e, 3)
  length = np.linalg.norm(b - a, axis=-1).mean(0)
  bone = rng.choice(len(edges), size=m, p=length / length.sum())
  s = rng.uniform(0, 1, size=m)
  phi = rng.uniform(0, 2 * np.pi, size=m)
  axis = _unit(b - a)  # (t, e, 3)
  # A reference direction per bone, least aligned with the bone's mean direction.
  mean_axis = _unit(axis.mean(0))
  ref = np.eye(3)[np.argmin(np.abs(mean_axis), axis=-1)]  # (e, 3)
  u = _unit(np.cross(axis, ref[None]))
  v = np.cross(axis, u)
  normal = np.cos(phi)[None, :, None] * u[:, bone] + np.sin(phi)[None, :, None] * v[:, bone]
  centre = a[:, bone] + s[None, :, None] * (b - a)[:, bone]
  return centre + radius * normal, normal


# ---------------------------------------------------------------------------
# Motion.
# ---------------------------------------------------------------------------


def rigid_motion(rng: np.random.Generator, t: int, travel: float, max_angle_deg: float):
  """Smooth rigid motion: rotations (t, 3, 3) about a mostly vertical axis and
  translations (t, 3) on the ground plane, starting at the identity."""
  angle = np.deg2rad(max_angle_deg) * smooth_curve(rng, t, 1)[:, 0]
  axis = _unit(np.array([0.0, 1.0, 0.0]) + 0.3 * rng.normal(size=3))
  rot = geometry.axis_angle_to_matrix((angle - angle[0])[:, None] * axis)
  shift = travel * smooth_curve(rng, t, 3)
  shift[:, 1] *= 0.2  # Mostly along the ground.
  return rot, shift - shift[:1]


def low_rank_deformation(rng: np.random.Generator, xyz0: np.ndarray, t: int, size: float, rank: int):
  """Non-rigid low-rank motion X(t) = X0 + sum_k c_k(t) D_k(X0).

  The bases D_k are smooth vector fields (random sinusoids of the rest position)
  and the coefficients c_k(t) smooth curves, so the true motion has rank `rank`.

  Returns:
    (t, m, 3) displacements.
  """
  freq = rng.normal(size=(rank, 3, 3)) * (2.0 / size)
  phase = rng.uniform(0, 2 * np.pi, size=(rank, 3))
  amp = rng.uniform(0.1, 0.35, size=(rank, 3)) * size
  bases = amp[:, None, :] * np.sin(xyz0 @ np.swapaxes(freq, -1, -2) + phase[:, None, :])  # (k, m, 3)
  coeff = smooth_curve(rng, t, rank, max_cycles=2.0)
  coeff = coeff - coeff[:1]
  return (coeff @ bases.reshape(rank, -1)).reshape(t, -1, 3)


def kinematic_chain(rng: np.random.Generator, t: int, num_segments: int, length: float):
  """A procedural articulated figure: a root with `num_segments`-long limbs.

  Returns:
    joints: (t, j, 3) joint positions in the object frame (y down, root on the
      ground), edges: (e, 2) bones.
  """
  num_limbs = int(rng.integers(2, 5))
  seg = length / num_segments
  joints_t, edges = [np.zeros((t, 3)) + np.array([0.0, -length, 0.0])], []
  for limb in range(num_limbs):
    yaw = 2 * np.pi * limb / num_limbs + rng.uniform(-0.3, 0.3)
    parent, pos = 0, joints_t[0]
    direction = np.array([np.cos(yaw), rng.uniform(-0.2, 1.0), np.sin(yaw)])
    for _ in range(num_segments):
      swing = np.deg2rad(rng.uniform(15, 60)) * smooth_curve(rng, t, 1, max_cycles=2.5)[:, 0]
      bend_axis = _unit(np.cross(direction, [0.0, 1.0, 0.0]) + 1e-3)
      rot = geometry.axis_angle_to_matrix(swing[:, None] * bend_axis)
      direction_t = np.einsum("tij,j->ti", rot, _unit(direction))
      pos = pos + seg * direction_t
      joints_t.append(pos)
      edges.append((parent, len(joints_t) - 1))
      parent = len(joints_t) - 1
      direction = _unit(direction + rng.normal(size=3) * 0.3)
  return np.stack(joints_t, axis=1), np.array(edges)
