"""Tracks from a scene: queries as 2D trackers get them, visibility, tracker noise.

Visibility is decided by a coarse z-buffer: every surface point is projected into
every frame and binned into cells of about `cell_px` pixels; a point is visible
where it is in the image, in front of the camera, facing it, and not behind the
nearest surface of its cell (a point is never hidden by its own surface, so
slanted planes do not hide themselves inside one cell).

Shapes: t frames, m scene points, n tracks.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tracks4d import geometry
from tracks4d.synthetic import surfaces
from tracks4d.synthetic.scene import Scene

# Relative depth margin of the occlusion test.
_DEPTH_TOLERANCE = 0.03


@dataclasses.dataclass(frozen=True)
class ScenePoints:
  """All point-sampled content of a scene (room ray-cast at the query frames).

  Attributes:
    xyz: (t, m, 3) world positions.
    normal: (t, m, 3) normals (zeros = two-sided).
    surface_id: (m,) int32 which surface each point belongs to.
    dynamic: (m,) bool.
  """

  xyz: np.ndarray
  normal: np.ndarray
  surface_id: np.ndarray
  dynamic: np.ndarray


def _cells_hw(image_hw: tuple[int, int], cell_px: float) -> tuple[int, int]:
  return int(np.ceil(image_hw[0] / cell_px)), int(np.ceil(image_hw[1] / cell_px))


def _cell_index(xy_px: np.ndarray, cell_px: float, rows: int, cols: int) -> np.ndarray:
  """Flat z-buffer cell index (row-major) of pixel positions (..., 2)."""
  cx = np.clip(((xy_px[..., 0] + 0.5) / cell_px).astype(np.int64), 0, cols - 1)
  cy = np.clip(((xy_px[..., 1] + 0.5) / cell_px).astype(np.int64), 0, rows - 1)
  return cy * cols + cx


def query_frames(t: int, stride: int) -> np.ndarray:
  """Frames 0, stride, 2 stride, ... plus the last frame (the peer's query scheme)."""
  return np.unique(np.concatenate([np.arange(0, t, stride), [t - 1]])).astype(np.int32)


def scene_points(rng: np.random.Generator, scene: Scene, frames: np.ndarray, cell_px: float) -> ScenePoints:
  """Samples the room (if any) by ray-casting a jittered cell grid from the
  cameras at `frames`, and gathers the objects' points."""
  t = scene.w2c.shape[0]
  h, w = scene.image_hw
  rows, cols = _cells_hw(scene.image_hw, cell_px)
  gy, gx = np.meshgrid(np.arange(rows) * cell_px, np.arange(cols) * cell_px, indexing="ij")
  c2w = geometry.invert_pose(scene.w2c)
  room_xyz, room_nrm = [], []
  for f in frames if scene.room is not None else ():
    px = np.stack([gx.ravel(), gy.ravel()], -1) + rng.uniform(0, cell_px, size=(gx.size, 2)) - 0.5
    if room_xyz:  # Cast only the rays of cells the earlier casts leave empty.
      prev = np.concatenate(room_xyz)
      xy, depth = geometry.project(geometry.transform_points(scene.w2c[f], prev), scene.intrinsics)
      ok = (depth > 0) & geometry.in_image(xy, np.array([h, w]))
      cell = _cell_index(xy[ok], cell_px, rows, cols)
      covered = np.zeros(rows * cols, bool)
      covered[cell] = True
      px = px[~covered]
    xyz, nrm = surfaces.raycast_room(scene.room, c2w[f], scene.intrinsics, px)
    room_xyz.append(xyz)
    room_nrm.append(nrm)
  room_xyz = np.concatenate(room_xyz) if room_xyz else np.zeros((0, 3), np.float32)
  room_nrm = np.concatenate(room_nrm) if room_nrm else np.zeros((0, 3), np.float32)
  xyz = [np.broadcast_to(room_xyz, (t,) + room_xyz.shape)]
  nrm = [np.broadcast_to(room_nrm, (t,) + room_nrm.shape)]
  # All room planes share id 0: a plane never hides itself, and walls meet the
  # floor at a crease where either may win a cell.
  ids = [np.zeros(len(room_xyz), np.int32)]
  dyn = [np.zeros(len(room_xyz), bool)]
  for i, obj in enumerate(scene.objects):
    m = obj.xyz.shape[1]
    xyz.append(obj.xyz)
    nrm.append(obj.normal if obj.normal is not None else np.zeros_like(obj.xyz))
    ids.append(np.full(m, i + 1, np.int32))
    dyn.append(np.full(m, obj.dynamic))
  return ScenePoints(np.concatenate(xyz, 1).astype(np.float32), np.concatenate(nrm, 1).astype(np.float32),
                     np.concatenate(ids), np.concatenate(dyn))


@dataclasses.dataclass(frozen=True)
class Rendered:
  """All scene points projected into all frames, and the coarse z-buffer.

  Attributes:
    xy_px: (t, m, 2) projections.
    depth: (t, m) camera-frame depth.
    candidate: (t, m) in the image, in front of the camera and facing it.
    cell: (t, m) flat index over (frame, cell row, cell column).
    zbuf: (t * cells,) nearest candidate depth per cell (inf when empty).
    winner: (t * cells,) index of that nearest point, or -1.
    cells_hw: (rows, cols) of the cell grid.
  """

  xy_px: np.ndarray
  depth: np.ndarray
  candidate: np.ndarray
  cell: np.ndarray
  zbuf: np.ndarray
  winner: np.ndarray
  cells_hw: tuple[int, int]

  def visibility(self, point_index: np.ndarray, surface_id: np.ndarray) -> np.ndarray:
    """(t, n) visibility of the points `point_index`: candidates not behind the
    nearest surface of their cell (never hidden by their own surface)."""
    cell = self.cell[:, point_index]
    depth = self.depth[:, point_index]
    win = self.winner[cell]
    own = (win >= 0) & (surface_id[np.maximum(win, 0)] == surface_id[point_index][None, :])
    return self.candidate[:, point_index] & (own | (depth <= self.zbuf[cell] * (1.0 + _DEPTH_TOLERANCE)))


def render_points(scene: Scene, pts: ScenePoints, cell_px: float, near: float) -> Rendered:
  """Projects every point into every frame and builds the coarse z-buffer."""
  t = pts.xyz.shape[0]
  h, w = scene.image_hw
  xyz_cam = geometry.transform_points(scene.w2c.astype(np.float32), pts.xyz)
  xy, depth = geometry.project(xyz_cam, scene.intrinsics.astype(np.float32), min_depth=near)
  centres = geometry.camera_centers(scene.w2c).astype(np.float32)
  facing = (pts.normal * (centres[:, None] - pts.xyz)).sum(-1) >= 0  # Zero normal: two-sided.
  cand = (depth > near) & geometry.in_image(xy, np.array([h, w])) & facing
  rows, cols = _cells_hw(scene.image_hw, cell_px)
  cell = np.arange(t)[:, None] * (rows * cols) + _cell_index(xy, cell_px, rows, cols)  # (t, m) over frames, cells.
  zbuf = np.full(t * rows * cols, np.inf, np.float32)
  np.minimum.at(zbuf, cell[cand], depth[cand])
  # The nearest point's index per cell (ties: any of them).
  tt, mm = np.nonzero(cand & (depth <= zbuf[cell]))
  winner = np.full(t * rows * cols, -1, np.int64)
  winner[cell[tt, mm]] = mm
  return Rendered(xy, depth, cand, cell, zbuf, winner, (rows, cols))


def sample_queries(rng: np.random.Generator, rendered: Rendered, frames: np.ndarray, grid_size: int,
                   image_hw: tuple[int, int], cell_px: float,
                   max_per_frame: int | None = None) -> tuple[np.ndarray, np.ndarray]:
  """Grid queries at each query frame, resolved to the visible scene point there.

  A frame whose grid hits more than `max_per_frame` points keeps a random
  `max_per_frame` of them (a grid finer than the track budget).

  Returns:
    point_index: (n,) scene point of each track, unique (first query kept).
    query_frame: (n,) frame it was queried at.
  """
  h, w = image_hw
  rows, cols = rendered.cells_hw
  idx, qf = [], []
  for f in frames:
    # Grid of queries with a random sub-cell offset, as a tracker's query grid.
    ys = (np.arange(grid_size) + rng.uniform(0.2, 0.8)) * h / grid_size - 0.5
    xs = (np.arange(grid_size) + rng.uniform(0.2, 0.8)) * w / grid_size - 0.5
    qy, qx = np.meshgrid(ys, xs, indexing="ij")
    cells = f * rows * cols + _cell_index(np.stack([qx.ravel(), qy.ravel()], -1), cell_px, rows, cols)
    win = rendered.winner[cells]
    win = win[win >= 0]
    if max_per_frame is not None and len(win) > max_per_frame:
      win = win[np.sort(rng.choice(len(win), max_per_frame, replace=False))]
    idx.append(win)
    qf.append(np.full(len(win), f, np.int32))
  idx, qf = np.concatenate(idx), np.concatenate(qf)
  _, first = np.unique(idx, return_index=True)
  first = np.sort(first)
  return idx[first], qf[first]


@dataclasses.dataclass(frozen=True)
class TrackerNoise:
  """Levels of simulated tracker errors.

  Attributes:
    noise_px: std of Gaussian jitter on every position, in pixels at a 512-pixel
      image side (scaled with the image).
    outlier_frac: fraction of tracks that jump to a wrong place for a while
      (still marked visible: what makes them outliers).
    drop_frac: fraction of tracks the tracker loses: invisible from a random
      frame away from the query on.
  """

  noise_px: float = 0.5
  outlier_frac: float = 0.02
  drop_frac: float = 0.05


def apply_tracker_noise(rng: np.random.Generator, xy_px: np.ndarray, visible: np.ndarray, query_frame: np.ndarray,
                        image_hw: tuple[int, int], noise: TrackerNoise) -> tuple[np.ndarray, np.ndarray]:
  """Adds jitter, outlier jumps and drop-outs to exact tracks.

  Occluded entries keep a guess (the true projection plus a larger jitter, kept
  inside a margin around the image), as trackers report them.

  Returns:
    xy_px (t, n, 2) and visible (t, n) with the errors applied.
  """
  t, n = visible.shape
  h, w = image_hw
  px_scale = max(h, w) / 512.0
  xy = xy_px + rng.normal(size=xy_px.shape) * noise.noise_px * px_scale
  xy = xy + (~visible)[..., None] * rng.normal(size=xy_px.shape) * 4.0 * noise.noise_px * px_scale
  vis = visible.copy()
  frames = np.arange(t)[:, None]
  if noise.outlier_frac > 0:
    hit = rng.uniform(size=n) < noise.outlier_frac
    start = rng.integers(0, t, size=n)
    length = rng.integers(1, max(2, t // 3), size=n)
    active = hit & (frames >= start) & (frames < start + length) & (frames != query_frame)
    jump = rng.uniform(0.05, 0.15, size=(n, 2)) * np.array([w, h]) * rng.choice([-1, 1], size=(n, 2))
    xy = xy + active[..., None] * jump
  if noise.drop_frac > 0:
    lost = rng.uniform(size=n) < noise.drop_frac
    forward = rng.uniform(size=n) < 0.5
    cut = np.where(forward, rng.integers(query_frame + 1, t + 1), rng.integers(0, query_frame + 1))
    gone = lost & np.where(forward, frames >= cut, frames < cut)
    vis &= ~gone
  margin = 0.25 * np.array([w, h])
  xy = np.clip(xy, -margin - 0.5, np.array([w, h]) + margin - 0.5)
  return xy.astype(np.float32), vis
