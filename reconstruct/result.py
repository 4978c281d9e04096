"""The typed result of a reconstruction (one clip).

Shapes: t frames, n tracks (in the input order), k motion bases, m windows.
Conventions (tracks4d/geometry.py): OpenCV camera axes, `c2w`/`w2c` 4x4,
`K` in pixels, depth = camera-frame z.
"""

from __future__ import annotations

import dataclasses

import flax.struct
import numpy as np


@flax.struct.dataclass
class ReprojectionStats:
  """Reprojection error of the reconstruction's 3D tracks on the visible input
  tracks, in pixels.

  Attributes:
    mean_px, median_px, p90_px: over all visible entries.
    static_median_px: median over visible entries of tracks labelled static.
    dynamic_median_px: median over visible entries of tracks labelled dynamic
      (NaN when there is none).
    num_visible: number of visible entries scored.
  """

  mean_px: float
  median_px: float
  p90_px: float
  static_median_px: float
  dynamic_median_px: float
  num_visible: int


@flax.struct.dataclass
class Timings:
  """Wall time of each stage in seconds (0 for a stage that did not run).

  Attributes:
    tracking: 2D point tracking of a video input.
    intrinsics: focal-length estimation.
    feed_forward: the network forward passes (compilation included).
    finetune: test-time fine-tuning.
    bundle_adjust: bundle adjustment.
    stitching: aligning and merging windows.
    total: the whole call.
  """

  tracking: float = 0.0
  intrinsics: float = 0.0
  feed_forward: float = 0.0
  finetune: float = 0.0
  bundle_adjust: float = 0.0
  stitching: float = 0.0
  total: float = 0.0


@flax.struct.dataclass
class Reconstruction:
  """Cameras and 3D tracks of one clip.

  Attributes:
    c2w: (t, 4, 4) camera-to-world poses.
    w2c: (t, 4, 4) world-to-camera poses (the inverse of `c2w`).
    K: (t, 3, 3) intrinsics in pixels.
    image_hw: (2,) image (height, width).
    xy_px: (t, n, 2) the input 2D tracks (pixels, x then y).
    tracks_world: (t, n, 3) 3D tracks in the world frame.
    tracks_cam: (t, n, 3) 3D tracks in each camera frame; depth = [..., 2].
    visible: (t, n) the input visibility.
    movement: (n,) movement level, pixels: the RMS reprojection error of the
      best static 3D point for the track given the final cameras (what the
      network's gamma learns, measured); ~ tracker noise for static tracks.
    is_dynamic: (n,) the static/dynamic label (movement > `movement_threshold`).
    movement_threshold: the threshold used for `is_dynamic`, pixels.
    gamma: (n,) the network's own movement level (normalised image units),
      averaged over windows.
    bases: (m, n, 3, k) the network's low-rank bases of each window, mapped
      into the stitched world frame; bases[..., 0] is the static point; zero
      for tracks with no visible entry in the window.
    coeffs: (t, k) basis coefficients of each frame (coeffs[:, 0] = 1), from
      the window that owns the frame.
    frame_window: (t,) index of the window that owns each frame. Outside
      window overlaps, without bundle adjustment and with a network focal
      factor of 1, tracks_world[f] = bases[frame_window[f]] @ coeffs[f]
      (see reconstruct/pipeline.py).
    window_starts: (m,) first frame of each window (windows have
      `window_size` frames except possibly the last).
    focal_source: where the focal length came from: "given" (known
      intrinsics), "estimated" (self-calibration from the tracks), "refined"
      (estimated or guessed, then refined by bundle adjustment),
      "refined-from-given" (given, then refined) or "guess" (estimation
      failed; the conventional (w + h) / 2).
    reprojection: reprojection error statistics.
    timings: wall time of each stage.
  """

  c2w: np.ndarray
  w2c: np.ndarray
  K: np.ndarray
  image_hw: np.ndarray
  xy_px: np.ndarray
  tracks_world: np.ndarray
  tracks_cam: np.ndarray
  visible: np.ndarray
  movement: np.ndarray
  is_dynamic: np.ndarray
  movement_threshold: float
  gamma: np.ndarray
  bases: np.ndarray
  coeffs: np.ndarray
  frame_window: np.ndarray
  window_starts: np.ndarray
  focal_source: str = flax.struct.field(pytree_node=False, default="given")
  reprojection: ReprojectionStats | None = None
  timings: Timings = dataclasses.field(default_factory=Timings)

  @property
  def num_frames(self) -> int:
    return int(self.c2w.shape[0])

  @property
  def num_tracks(self) -> int:
    return int(self.movement.shape[0])

  @property
  def depth(self) -> np.ndarray:
    """(t, n) camera-frame depth of every track."""
    return self.tracks_cam[..., 2]
