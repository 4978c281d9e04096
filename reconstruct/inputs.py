"""What `python -m reconstruct INPUT` accepts, turned into clips.

INPUT is one of: a video file; a folder of frames (png/jpg); a TracksTo4D peer
npz (`pred_tracks`, ...); a TAPVid-3D npz (`tracks_XYZ`, `queries_xyt`, ...);
or a folder of such npz files (one clip each). Videos and frame folders are
tracked first (reconstruct/trackers).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np

from reconstruct import trackers
from reconstruct import video as video_lib
from tracks4d.io import npz_utils, peer_npz, tapvid3d_npz
from tracks4d.tracks import Tracks


@dataclasses.dataclass(frozen=True)
class InputClip:
  """One clip to reconstruct.

  Attributes:
    name: a file-system friendly name (the file stem).
    tracks: the 2D tracks (with ground truth when the file has it).
    frames: (t, h, w, 3) uint8 video when the input was a video, else None.
    fps: frame rate of the video (10 when unknown).
    tracking_seconds: time spent tracking (0 for track files).
  """

  name: str
  tracks: Tracks
  frames: np.ndarray | None = None
  fps: float = 10.0
  tracking_seconds: float = 0.0


def npz_kind(path: Path) -> str:
  """'peer' or 'tapvid3d' from the keys of an npz file.

  Raises:
    ValueError: naming the file and its keys when it is neither.
  """
  with npz_utils.open_npz(path) as z:
    keys = set(z.files)
  if "pred_tracks" in keys:
    return "peer"
  if {"tracks_XYZ", "queries_xyt"} <= keys:
    return "tapvid3d"
  raise ValueError(f"{path}: not a TracksTo4D peer npz (needs 'pred_tracks', 'pred_visibility') nor a TAPVid-3D "
                   f"npz (needs 'tracks_XYZ', 'queries_xyt', 'visibility', 'fx_fy_cx_cy'); its keys are "
                   f"{sorted(keys)}.")


def read_track_file(path: Path) -> InputClip:
  """One npz file of tracks as a clip."""
  if npz_kind(path) == "peer":
    return InputClip(name=path.stem, tracks=peer_npz.read_peer_npz(path))
  clip = tapvid3d_npz.read_tapvid3d_npz(path, load_images=False)
  return InputClip(name=path.stem, tracks=tapvid3d_npz.tapvid3d_to_tracks(clip, name=str(path)))


def load_inputs(path, tracker: str = "lk", tracker_options: dict | None = None, max_frames: int | None = None,
                stride: int = 1, progress: bool = True) -> list[InputClip]:
  """The clips of an INPUT path (see the module doc).

  Args:
    path: the INPUT.
    tracker: tracker for videos and frame folders (trackers.TRACKERS).
    tracker_options: the tracker's options (e.g. grid_size, checkpoint).
    max_frames, stride: frames of a video or frame folder to use.
    progress: progress bar while tracking.

  Returns:
    One InputClip per clip (npz files of a folder in sorted order).

  Raises:
    FileNotFoundError: naming a missing path.
    ValueError: naming a path that is none of the accepted inputs, or a folder
      with no frame or npz file.
  """
  path = Path(path)
  if not path.exists():
    raise FileNotFoundError(f"INPUT: {path} does not exist (expected a video, a frame folder, a peer or "
                            "TAPVid-3D npz, or a folder of npz files).")
  if path.is_file() and path.suffix.lower() == ".npz":
    return [read_track_file(path)]
  if path.is_dir():
    npzs = sorted(path.glob("*.npz"), key=lambda p: video_lib.natural_key(p.name))
    if npzs and not video_lib.is_frame_folder(path):
      return [read_track_file(p) for p in npzs]
  if video_lib.is_video_file(path) or (path.is_dir() and video_lib.is_frame_folder(path)):
    vid = video_lib.load_video(path, max_frames=max_frames, stride=stride)
    t0 = time.perf_counter()
    tracks = trackers.track_video(vid, tracker, progress=progress, **dict(tracker_options or {}))
    return [InputClip(name=path.stem, tracks=tracks, frames=vid.frames, fps=vid.fps,
                      tracking_seconds=time.perf_counter() - t0)]
  raise ValueError(f"INPUT: {path} is not a video file, a folder of frames or npz files, or an npz file.")
