"""Camera paths of casual videos for the synthetic generator (NumPy).

All paths look at (or near) a target point, in a world whose +y points down (see
`surfaces`). Each returns world-to-camera poses (t, 4, 4).
"""

from __future__ import annotations

import numpy as np

from tracks4d import geometry
from tracks4d.synthetic.surfaces import smooth_curve

CAMERA_PATHS = ("handheld", "orbit", "dolly", "pan", "static")
# Default (min, max) azimuth, degrees, that an orbit sweeps over a clip.
ORBIT_DEG = (20.0, 70.0)


def _eye(target: np.ndarray, distance, azimuth, elevation) -> np.ndarray:
  """Eye positions at `distance` from target; azimuth 0 looks along +z."""
  return target + np.stack(
      [
          -distance * np.sin(azimuth) * np.cos(elevation),
          -distance * np.sin(elevation),
          -distance * np.cos(azimuth) * np.cos(elevation),
      ],
      axis=-1,
  )


def camera_path(rng: np.random.Generator, kind: str, t: int, target: np.ndarray, distance: float,
                orbit_deg: tuple[float, float] = ORBIT_DEG) -> np.ndarray:
  """A camera path of the given kind.

  Args:
    rng: random generator.
    kind: one of CAMERA_PATHS: handheld jitter, orbit about the target, dolly in
      or out, pan (rotation about a fixed centre), near-static.
    t: number of frames.
    target: (3,) point the camera looks at, world frame.
    distance: camera distance from the target at the start.
    orbit_deg: (min, max) azimuth an orbit sweeps over the clip, degrees.

  Returns:
    (t, 4, 4) world-to-camera poses.

  Raises:
    ValueError: for an unknown kind.
  """
  if kind not in CAMERA_PATHS:
    raise ValueError(f"camera_path: kind must be one of {CAMERA_PATHS}; got {kind!r}.")
  s = np.linspace(0.0, 1.0, t)
  az0 = rng.uniform(-np.pi, np.pi)
  elevation = np.full(t, np.deg2rad(rng.uniform(5, 35)))
  azimuth = np.full(t, az0)
  dist = np.full(t, distance)
  look = np.broadcast_to(target, (t, 3)).copy()
  jitter = 0.0
  if kind == "handheld":
    jitter = 0.03
    azimuth = az0 + np.deg2rad(rng.uniform(-8, 8)) * s
  elif kind == "orbit":
    azimuth = az0 + np.deg2rad(rng.uniform(*orbit_deg)) * rng.choice([-1, 1]) * s
    elevation = elevation + np.deg2rad(rng.uniform(-10, 10)) * s
    jitter = 0.01
  elif kind == "dolly":
    dist = distance * (1.0 + rng.uniform(0.2, 0.35) * rng.choice([-1, 1]) * s)
    jitter = 0.01
  elif kind == "static":
    jitter = 0.002
  eye = _eye(target, dist, azimuth, elevation)
  if kind == "pan":
    # Fixed centre; the look-at point sweeps sideways by up to ~30 degrees.
    pan = np.deg2rad(rng.uniform(10, 30)) * rng.choice([-1, 1]) * s
    view = target - eye[0]
    rot = geometry.axis_angle_to_matrix(pan[:, None] * np.array([0.0, 1.0, 0.0]))
    eye = np.broadcast_to(eye[0], (t, 3)).copy()
    look = eye + np.einsum("tij,j->ti", rot, view)
  if jitter:
    eye = eye + jitter * distance * smooth_curve(rng, t, 3, max_cycles=3.0)
    look = look + 0.5 * jitter * distance * smooth_curve(rng, t, 3, max_cycles=3.0)
  c2w = geometry.look_at(eye, look)
  return geometry.invert_pose(c2w)
