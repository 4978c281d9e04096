"""Target camera trajectories: the six camera moves, static views, user poses.

A `Trajectory` is what a video is seen through: world-to-camera poses and
intrinsics per frame and one image size. Target trajectories are built from the
source trajectory (REFERENCE.md section 2, Reangle-A-Video's camera types):

  orbit_left / orbit_right   the camera circles the look-at point about the
                             anchor camera's y axis (image vertical); orbit left
                             moves the camera centre to the left (-x).
  orbit_up / orbit_down      circles about the anchor camera's x axis; orbit up
                             moves the camera centre up (-y, OpenCV y is down).
  dolly_in / dolly_out       moves along the line to the look-at point (the
                             optical axis when the point is on it); optionally a
                             dolly zoom (focal length scaled with the distance
                             so the look-at plane keeps its image size).

Amounts are per frame and accumulate: frame i of the target is the move by
i * amount (degrees for orbits, scene units for dollies), so target frame 0 is
the anchor view. The anchor is the first source camera (`follow_source=False`,
the camera path replaces the source's motion) or each source camera
(`follow_source=True`, the move is added on top of the source's motion). A
*static view* (static view transport) holds one new view for all frames. Any
user trajectory enters through `Trajectory.create`, which validates it.

The look-at point is "placed at the scene's depth": `scene_depth` is the median
depth of the scene points seen near the optical axis by the first camera.
Axes and pixels follow `tracks4d.geometry` (OpenCV camera, x right, y down,
z forward).

Shapes: t frames, n points.
"""

from __future__ import annotations

from typing import Any, Union

import flax.struct
import numpy as np

from generate import checks
from tracks4d import geometry

MOVES = ("orbit_left", "orbit_right", "orbit_up", "orbit_down", "dolly_in", "dolly_out")
# Moves plus the static view; the label set of synthetic target trajectories.
TARGET_KINDS = MOVES + ("static",)

LookAt = Union[float, np.ndarray]


@flax.struct.dataclass
class Trajectory:
  """The cameras of one video.

  Attributes:
    w2c: (t, 4, 4) float32 world-to-camera poses (OpenCV axes).
    intrinsics: (t, 3, 3) float32 K per frame, pixels.
    image_hw: (height, width) in pixels, static (not a pytree leaf).
  """

  w2c: Any
  intrinsics: Any
  image_hw: tuple[int, int] = flax.struct.field(pytree_node=False)

  @classmethod
  def create(cls, w2c, intrinsics, image_hw, num_frames: int | None = None,
             name: str = "trajectory") -> "Trajectory":
    """Validates and packs a camera trajectory (e.g. a user's).

    Args:
      w2c: (t, 4, 4) world-to-camera poses; rigid (orthonormal rotation, det +1).
      intrinsics: (3, 3) shared or (t, 3, 3) per-frame K in pixels.
      image_hw: (height, width), positive.
      num_frames: required t (e.g. the source video's length), if any.
      name: how errors refer to this trajectory (e.g. "target").

    Returns:
      A `Trajectory` with float32 NumPy arrays.

    Raises:
      ValueError: naming `<name>.w2c`, `<name>.intrinsics` or `<name>.image_hw`
        for a wrong shape or length, NaN/inf, a non-rigid pose or a zero size.

    Example:
      >>> traj = Trajectory.create(w2c, K, (64, 64), num_frames=16, name="target")
    """
    hw = checks.image_hw(image_hw, f"{name}.image_hw")
    checks.poses(w2c, f"{name}.w2c", num_frames)
    t = int(np.shape(w2c)[0])
    K = np.asarray(intrinsics, dtype=np.float32)
    if K.shape == (3, 3):
      K = np.broadcast_to(K, (t, 3, 3)).copy()
    checks.intrinsics(K, f"{name}.intrinsics", t)
    return cls(w2c=np.asarray(w2c, np.float32), intrinsics=K, image_hw=hw)

  @property
  def num_frames(self) -> int:
    return int(np.shape(self.w2c)[-3])

  @property
  def c2w(self):
    """(t, 4, 4) camera-to-world poses."""
    return geometry.invert_pose(self.w2c)

  @property
  def centers(self):
    """(t, 3) camera centres in the world frame."""
    return geometry.camera_centers(self.w2c)


def scene_depth(xyz_world, w2c, intrinsics, image_hw, visible=None, central_frac: float = 0.5) -> float:
  """The scene's depth for the look-at point: a robust depth seen by one camera.

  The median camera-frame depth of the points in front of the camera that
  project into the central `central_frac` of the image (all points in front and
  inside the image when fewer than 8 are central).

  Args:
    xyz_world: (n, 3) world points (e.g. a reconstruction's tracks at frame 0).
    w2c: (4, 4) the camera (e.g. the first source camera).
    intrinsics: (3, 3) its K.
    image_hw: (height, width).
    visible: optional (n,) bool; only these points count.
    central_frac: side fraction of the central window.

  Returns:
    The depth (> 0) in scene units.

  Raises:
    ValueError: naming `xyz_world` if no point is in front of the camera inside
      the image, or for NaN/inf.

  Example:
    >>> d = scene_depth(tracks.gt.xyz_world[0], tracks.gt.w2c[0], tracks.intrinsics[0], (h, w))
  """
  h, w = checks.image_hw(image_hw)
  xyz = np.asarray(xyz_world, np.float64)
  checks.array_shape(xyz, "xyz_world", (None, 3), "world points")
  checks.finite(xyz, "xyz_world")
  xy, depth = geometry.project(geometry.transform_points(np.asarray(w2c, np.float64), xyz),
                               np.asarray(intrinsics, np.float64))
  ok = (depth > geometry.MIN_DEPTH) & geometry.in_image(xy, np.array([h, w]))
  if visible is not None:
    ok &= np.asarray(visible, bool)
  if not ok.any():
    raise ValueError("xyz_world: no point lies in front of the camera inside the image; the scene depth is undefined.")
  lo = (1.0 - central_frac) / 2.0
  central = ok & (xy[:, 0] >= lo * w - 0.5) & (xy[:, 0] < (1 - lo) * w - 0.5)
  central &= (xy[:, 1] >= lo * h - 0.5) & (xy[:, 1] < (1 - lo) * h - 0.5)
  return float(np.median(depth[central if central.sum() >= 8 else ok]))


def _look_at_in_camera(look_at: LookAt, anchor_w2c: np.ndarray) -> np.ndarray:
  """The look-at point (3,) in the anchor camera's frame; checks it is in front."""
  if np.ndim(look_at) == 0:
    d = float(look_at)
    if not np.isfinite(d):
      raise ValueError(f"look_at: expected a finite depth; got {look_at!r}.")
    p = np.array([0.0, 0.0, d])
  else:
    p_world = np.asarray(look_at, np.float64)
    checks.array_shape(p_world, "look_at", (3,), "world point, or a depth along the optical axis")
    checks.finite(p_world, "look_at")
    p = geometry.transform_points(anchor_w2c, p_world[None])[0]
  if p[2] <= geometry.MIN_DEPTH:
    raise ValueError(f"look_at: the look-at point is behind the camera (depth {p[2]:.4g} <= 0 in the first "
                     "camera's frame); orbits and dollies need it in front.")
  return p


def move_delta(move: str, amounts: np.ndarray, look_at_cam: np.ndarray) -> np.ndarray:
  """Relative poses of a camera move, in the anchor camera's frame.

  Args:
    move: one of MOVES.
    amounts: (t,) cumulative amount per frame (degrees for orbits, scene
      units for dollies; positive, the direction is the move's).
    look_at_cam: (3,) the look-at point in the anchor camera's frame.

  Returns:
    (t, 4, 4) target-camera-to-anchor-camera poses (c2w of the target in the
    anchor camera's frame): target c2w = anchor c2w @ delta.

  Raises:
    ValueError: naming `move` for an unknown move, or `amount` when a dolly
      reaches the look-at point.
  """
  if move not in MOVES:
    raise ValueError(f"move: expected one of {MOVES}; got {move!r}.")
  amounts = np.asarray(amounts, np.float64)
  t = len(amounts)
  p = np.asarray(look_at_cam, np.float64)
  if move.startswith("orbit"):
    # Orbit left: +angle about +y (the camera centre goes to -x); up: -angle about +x.
    axis, sign = {"orbit_left": ((0, 1, 0), 1.0), "orbit_right": ((0, 1, 0), -1.0),
                  "orbit_up": ((1, 0, 0), -1.0), "orbit_down": ((1, 0, 0), 1.0)}[move]
    rot = geometry.axis_angle_to_matrix(np.deg2rad(sign * amounts)[:, None] * np.asarray(axis, np.float64))
    trans = p - rot @ p  # Rotation about the axis through p.
    return geometry.make_pose(rot, trans)
  dist = float(np.linalg.norm(p))
  step = amounts if move == "dolly_in" else -amounts
  if np.any(step >= dist - geometry.MIN_DEPTH):
    raise ValueError(f"amount: the dolly reaches the look-at point (it is {dist:.4g} units away; the move travels "
                     f"{float(step.max()):.4g}); use a smaller amount per frame.")
  trans = step[:, None] * (p / dist)
  return geometry.make_pose(np.broadcast_to(np.eye(3), (t, 3, 3)), trans)


def _apply_delta(source: Trajectory, delta: np.ndarray, follow_source: bool) -> np.ndarray:
  c2w_src = geometry.invert_pose(np.asarray(source.w2c, np.float64))
  anchor = c2w_src if follow_source else np.broadcast_to(c2w_src[0], c2w_src.shape)
  return geometry.invert_pose(anchor @ delta).astype(np.float32)


def _check_source(source: Trajectory) -> None:
  if not isinstance(source, Trajectory):
    raise ValueError(f"source: expected a Trajectory; got {type(source).__name__}.")
  checks.image_hw(source.image_hw, "source.image_hw")
  checks.poses(source.w2c, "source.w2c")
  checks.intrinsics(source.intrinsics, "source.intrinsics", source.num_frames)


def camera_move(source: Trajectory, move: str, amount: float, look_at: LookAt, follow_source: bool = False,
                dolly_zoom: bool = False) -> Trajectory:
  """A target trajectory doing one of the six camera moves, frame by frame.

  Frame i is the anchor camera moved by i * amount: orbits turn about the
  look-at point (degrees per frame), dollies move towards it (dolly_in) or away
  (dolly_out) by scene units per frame.

  Args:
    source: the source trajectory (t frames); frame 0 is the anchor, or every
      frame with `follow_source`.
    move: one of MOVES.
    amount: degrees per frame (orbits) or scene units per frame (dollies), >= 0.
    look_at: the look-at point: a depth along the anchor's optical axis (e.g.
      `scene_depth(...)`) or a (3,) world point. It must be in front of the camera.
    follow_source: apply the move relative to each source camera (keeps the
      source's own motion) instead of the first one.
    dolly_zoom: for dollies, scale the focal length by the distance to the
      look-at point so that its plane keeps its image size.

  Returns:
    The target `Trajectory` (t frames, the source's image size).

  Raises:
    ValueError: naming `move`, `amount` (negative, NaN, or a dolly reaching the
      look-at point), `look_at` (behind the camera) or `source`.

  Example:
    >>> d = scene_depth(xyz[0], source.w2c[0], source.intrinsics[0], source.image_hw)
    >>> target = camera_move(source, "orbit_left", 2.0, look_at=d)   # 2 degrees per frame
  """
  _check_source(source)
  if move not in MOVES:
    raise ValueError(f"move: expected one of {MOVES}; got {move!r}.")
  if not np.isfinite(amount) or amount < 0:
    raise ValueError(f"amount: expected a finite amount per frame >= 0 (the move sets the direction); got {amount!r}.")
  t = source.num_frames
  w2c_src = np.asarray(source.w2c, np.float64)
  p = _look_at_in_camera(look_at, w2c_src[0])
  amounts = amount * np.arange(t)
  w2c = _apply_delta(source, move_delta(move, amounts, p), follow_source)
  K = np.asarray(source.intrinsics, np.float32).copy()
  if dolly_zoom and move.startswith("dolly"):
    dist = float(np.linalg.norm(p))
    step = amounts if move == "dolly_in" else -amounts
    K[:, :2, :2] *= ((dist - step) / dist)[:, None, None].astype(np.float32)
  return Trajectory.create(w2c, K, source.image_hw, num_frames=t, name="target")


def static_view(source: Trajectory, move: str | None = None, amount: float = 0.0, look_at: LookAt | None = None,
                w2c=None) -> Trajectory:
  """A fixed new view for every frame (static view transport).

  Either the view reached by `move` at `amount` in total (degrees or scene
  units) from the first source camera, or a given pose `w2c` (4, 4).

  Args:
    source: the source trajectory (fixes t, intrinsics and image size).
    move: one of MOVES, with `amount` and `look_at` (see `camera_move`).
    amount: the total amount of the move.
    look_at: depth or (3,) world point the move turns about.
    w2c: alternatively, the world-to-camera pose (4, 4) of the view.

  Returns:
    A `Trajectory` repeating one camera t times (with the source's intrinsics).

  Raises:
    ValueError: naming `w2c` (bad pose), `move`, `amount` or `look_at`.

  Example:
    >>> target = static_view(source, "orbit_right", 20.0, look_at=d)
  """
  _check_source(source)
  t = source.num_frames
  if w2c is not None:
    pose = np.asarray(w2c, np.float64)
    if pose.shape != (4, 4):
      raise ValueError(f"w2c: expected one world-to-camera pose (4, 4); got shape {pose.shape}.")
    checks.poses(pose[None], "w2c")
    return Trajectory.create(np.broadcast_to(pose, (t, 4, 4)), source.intrinsics, source.image_hw, t, "target")
  if move is None or look_at is None:
    raise ValueError("move: a static view needs either `w2c` or `move`, `amount` and `look_at`.")
  if not np.isfinite(amount) or amount < 0:
    raise ValueError(f"amount: expected a finite total amount >= 0; got {amount!r}.")
  p = _look_at_in_camera(look_at, np.asarray(source.w2c, np.float64)[0])
  delta = move_delta(move, np.full(t, float(amount)), p)
  return Trajectory.create(_apply_delta(source, delta, False), source.intrinsics, source.image_hw, t, "target")


def make_target(source: Trajectory, kind: str, amount: float, look_at: LookAt, **kwargs) -> Trajectory:
  """`camera_move` for a move in MOVES, or `static_view` (total `amount` of an
  orbit, kwargs["static_move"], default orbit_left) for kind "static"."""
  if kind == "static":
    return static_view(source, kwargs.pop("static_move", "orbit_left"), amount, look_at)
  if kind not in MOVES:
    raise ValueError(f"kind: expected one of {TARGET_KINDS}; got {kind!r}.")
  return camera_move(source, kind, amount, look_at, **kwargs)
