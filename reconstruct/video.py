"""Reading the inputs of a reconstruction: a video file or a folder of frames.

A `Video` holds RGB frames as uint8 (t, h, w, 3), the frame rate and where the
frames came from. `read_video` decodes a video file with ffmpeg (imageio-ffmpeg),
`read_frame_folder` reads a folder of .png / .jpg / .jpeg images in natural
order (frame_2.png before frame_10.png), and `load_video` picks one of the two
from the path. Grayscale and RGBA inputs become RGB.

Nothing is dropped behind the caller's back: `stride` (keep every stride-th
frame) and `max_frames` (keep the first max_frames of those) are explicit
choices, and a file that cannot be read, an empty input, a single frame or
frames of differing sizes raise an error naming the path and what was expected.

Shapes: t frames, h w image, c = 3 channels (RGB).
"""

from __future__ import annotations

import dataclasses
import re
import warnings
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import cv2
import numpy as np

# File name suffixes treated as videos by `is_video_file` / `load_video` (lower case).
VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".gif")
# Image suffixes read by `read_frame_folder` (lower case); other files in the folder are ignored.
FRAME_SUFFIXES = (".png", ".jpg", ".jpeg")
# Frame rate of a frame folder when none is given.
DEFAULT_FOLDER_FPS = 30.0


@dataclasses.dataclass(frozen=True)
class Video:
  """RGB frames of one clip.

  Attributes:
    frames: (t, h, w, 3) uint8 RGB, t >= 2.
    fps: frames per second of `frames` (after any stride).
    source: where the frames came from (a path, or a description).

  Raises:
    ValueError: for frames that are not (t, h, w, 3) uint8 with t >= 2, or a
      non-positive fps.
  """

  frames: np.ndarray
  fps: float
  source: str

  def __post_init__(self):
    frames = np.asarray(self.frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
      raise ValueError(f"{self.source}: Video.frames must be (t, h, w, 3) uint8 RGB; got shape {frames.shape}, "
                       f"dtype {frames.dtype}.")
    if frames.shape[0] < 2:
      raise ValueError(f"{self.source}: a video needs at least 2 frames to track motion; got {frames.shape[0]}.")
    if min(frames.shape[1:3]) < 1:
      raise ValueError(f"{self.source}: frames have an empty size {frames.shape[1:3]}.")
    if not np.isfinite(self.fps) or self.fps <= 0:
      raise ValueError(f"{self.source}: Video.fps must be positive; got {self.fps!r}.")
    object.__setattr__(self, "frames", frames)

  @property
  def num_frames(self) -> int:
    return int(self.frames.shape[0])

  @property
  def image_hw(self) -> tuple[int, int]:
    """(height, width) in pixels."""
    return int(self.frames.shape[1]), int(self.frames.shape[2])


# ---------------------------------------------------------------------------
# Small helpers.
# ---------------------------------------------------------------------------


def _check_stride(stride: int, max_frames: int | None) -> None:
  if int(stride) != stride or stride < 1:
    raise ValueError(f"stride: expected an integer >= 1 (keep every stride-th frame); got {stride!r}.")
  if max_frames is not None and (int(max_frames) != max_frames or max_frames < 2):
    raise ValueError(f"max_frames: expected None or an integer >= 2; got {max_frames!r}.")


def _take(items: Iterable, stride: int, max_frames: int | None) -> Iterator:
  """Every stride-th item, at most max_frames of them (lazily)."""
  kept = 0
  for i, item in enumerate(items):
    if max_frames is not None and kept >= max_frames:
      return
    if i % stride == 0:
      kept += 1
      yield item


def to_rgb(frame: np.ndarray, where: str) -> np.ndarray:
  """One frame as (h, w, 3) uint8 RGB: grayscale is repeated, alpha dropped.

  Args:
    frame: (h, w), (h, w, 1), (h, w, 3) or (h, w, 4) uint8.
    where: how errors name the frame (a path and index).

  Returns:
    (h, w, 3) uint8.

  Raises:
    ValueError: naming `where` for another shape or dtype.
  """
  frame = np.asarray(frame)
  if frame.dtype != np.uint8:
    raise ValueError(f"{where}: expected 8-bit pixels; got dtype {frame.dtype}.")
  if frame.ndim == 2:
    frame = frame[..., None]
  if frame.ndim != 3 or frame.shape[-1] not in (1, 3, 4):
    raise ValueError(f"{where}: expected a (h, w), (h, w, 3) or (h, w, 4) image; got shape {frame.shape}.")
  if frame.shape[-1] == 1:
    return np.repeat(frame, 3, axis=-1)
  return np.ascontiguousarray(frame[..., :3])


def as_frames(video_or_frames, name: str = "frames") -> np.ndarray:
  """Frames of a `Video` or an array as (t, h, w, 3) uint8 RGB.

  Float arrays are read as values in [0, 1] (e.g. a rendered `source_rgb`) and
  rounded to uint8; (t, h, w) arrays are grayscale.

  Args:
    video_or_frames: a `Video`, or (t, h, w, 3) / (t, h, w) uint8 or float in [0, 1].
    name: how errors name the input.

  Returns:
    (t, h, w, 3) uint8 RGB.

  Raises:
    ValueError: naming `name` for fewer than 2 frames, another shape, NaN/inf
      or float values outside [0, 1].

  Example:
    >>> frames = as_frames(views.source_rgb)   # float [0, 1] -> uint8
  """
  if isinstance(video_or_frames, Video):
    return video_or_frames.frames
  frames = np.asarray(video_or_frames)
  if frames.ndim == 3:
    frames = frames[..., None]
  if frames.ndim != 4 or frames.shape[-1] not in (1, 3):
    raise ValueError(f"{name}: expected video frames (t, h, w, 3) or (t, h, w); got shape {frames.shape}.")
  if np.issubdtype(frames.dtype, np.floating):
    if not np.isfinite(frames).all() or frames.min() < 0.0 or frames.max() > 1.0:
      raise ValueError(f"{name}: float frames must be finite values in [0, 1]; got range "
                       f"[{np.nanmin(frames)}, {np.nanmax(frames)}].")
    frames = np.round(frames * 255.0).astype(np.uint8)
  elif frames.dtype != np.uint8:
    raise ValueError(f"{name}: expected uint8 or float frames in [0, 1]; got dtype {frames.dtype}.")
  if frames.shape[0] < 2:
    raise ValueError(f"{name}: tracking needs at least 2 frames; got {frames.shape[0]}.")
  if frames.shape[-1] == 1:
    frames = np.repeat(frames, 3, axis=-1)
  return frames


def natural_key(name: str) -> tuple:
  """Sort key that orders digit runs by value: 'f2.png' < 'f10.png'."""
  parts = re.split(r"(\d+)", name)
  return tuple((0, int(p), "") if p.isdigit() else (1, 0, p.lower()) for p in parts if p)


def is_video_file(path) -> bool:
  """Whether `path` is an existing file with a video suffix (VIDEO_SUFFIXES)."""
  path = Path(path)
  return path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES


def frame_files(path) -> list[Path]:
  """The .png / .jpg / .jpeg files directly in folder `path`, in natural order."""
  files = [p for p in Path(path).iterdir() if p.is_file() and p.suffix.lower() in FRAME_SUFFIXES]
  return sorted(files, key=lambda p: natural_key(p.name))


def is_frame_folder(path) -> bool:
  """Whether `path` is a folder holding at least one .png / .jpg / .jpeg file."""
  path = Path(path)
  return path.is_dir() and bool(frame_files(path))


def _stack(frames: Sequence[np.ndarray], source: str, what: str) -> np.ndarray:
  if not frames:
    raise ValueError(f"{source}: no frames could be read ({what}); expected a video with at least 2 frames.")
  if len(frames) < 2:
    raise ValueError(f"{source}: only 1 frame was read ({what}); tracking needs at least 2 frames.")
  return np.stack(frames)


# ---------------------------------------------------------------------------
# Video files.
# ---------------------------------------------------------------------------


def _open_reader(path: Path):
  """An imageio ffmpeg reader and the file's frame rate; errors name the path."""
  import imageio.v2 as imageio

  try:
    with warnings.catch_warnings():
      # The ffmpeg subprocess starts by fork; JAX warns about forks in general, harmless here (exec follows).
      warnings.filterwarnings("ignore", message="os.fork", category=RuntimeWarning)
      reader = imageio.get_reader(str(path), format="ffmpeg")
      meta = reader.get_meta_data()
  except Exception as e:  # imageio-ffmpeg raises OSError, RuntimeError, IndexError, ... for bad files.
    raise ValueError(f"{path}: could not be opened as a video by ffmpeg ({type(e).__name__}: "
                     f"{str(e).strip().splitlines()[0] if str(e).strip() else ''}); expected a readable video "
                     f"file such as an .mp4.") from e
  fps = float(meta.get("fps") or 0.0)
  return reader, fps


def _decoded(reader, path: Path) -> Iterator[np.ndarray]:
  """Frames of an open reader; a decoding failure is an error naming the path."""
  count = 0
  try:
    for frame in reader:
      count += 1
      yield frame
  except Exception as e:
    raise ValueError(f"{path}: decoding failed after {count} frames ({type(e).__name__}: {e}); the file may be "
                     "corrupt or truncated.") from e


def read_video(path, max_frames: int | None = None, stride: int = 1) -> Video:
  """Decodes a video file into RGB frames.

  Args:
    path: a video file ffmpeg can read (.mp4, .mov, .avi, ...).
    max_frames: keep at most this many frames (after the stride); None: all.
    stride: keep every stride-th frame (1: all); the returned fps is divided by it.

  Returns:
    A `Video` with (t, h, w, 3) uint8 RGB frames.

  Raises:
    FileNotFoundError: when `path` does not exist.
    ValueError: naming the path for a folder, an unreadable or corrupt file,
      no decodable frame or a single frame; naming `stride` / `max_frames`
      for bad values.

  Example:
    >>> video = read_video("clip.mp4", max_frames=50)
    >>> video.frames.shape                      # (50, 720, 1296, 3)
  """
  path = Path(path)
  _check_stride(stride, max_frames)
  if not path.exists():
    raise FileNotFoundError(f"{path}: video file not found; expected a video file (e.g. .mp4) or a folder of frames.")
  if path.is_dir():
    raise ValueError(f"{path}: is a folder; expected a video file (read a folder of frames with read_frame_folder).")
  reader, fps = _open_reader(path)
  try:
    frames = [to_rgb(f, f"{path} frame {i * stride}")
              for i, f in enumerate(_take(_decoded(reader, path), stride, max_frames))]
  finally:
    reader.close()
  frames = _stack(frames, str(path), f"stride {stride}, max_frames {max_frames}")
  fps = fps if fps > 0 else DEFAULT_FOLDER_FPS
  return Video(frames=frames, fps=fps / stride, source=str(path))


# ---------------------------------------------------------------------------
# Frame folders.
# ---------------------------------------------------------------------------


def read_image(path: Path) -> np.ndarray:
  """One image file as (h, w, 3) uint8 RGB (grayscale repeated, alpha dropped).

  Raises:
    ValueError: naming the file when it cannot be decoded.
  """
  image = cv2.imread(str(path), cv2.IMREAD_COLOR)  # Always 3-channel 8-bit BGR.
  if image is None:
    raise ValueError(f"{path}: could not be read as an image; expected a valid .png / .jpg file.")
  return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_frame_folder(path, max_frames: int | None = None, stride: int = 1, fps: float = DEFAULT_FOLDER_FPS) -> Video:
  """Reads the .png / .jpg / .jpeg frames of a folder in natural order.

  Other files in the folder (e.g. a README) are ignored; sub-folders are not read.

  Args:
    path: a folder of frames, e.g. 0.png, 1.png, ..., 10.png (natural order:
      2.png comes before 10.png).
    max_frames: keep at most this many frames (after the stride); None: all.
    stride: keep every stride-th frame (1: all); the returned fps is divided by it.
    fps: frame rate of the folder's frames.

  Returns:
    A `Video` with (t, h, w, 3) uint8 RGB frames.

  Raises:
    FileNotFoundError: when `path` does not exist.
    ValueError: naming the path for a file instead of a folder, no image in it,
      a single frame, an unreadable image or frames of differing sizes.

  Example:
    >>> video = read_frame_folder("frames/", fps=24)
  """
  path = Path(path)
  _check_stride(stride, max_frames)
  if not np.isfinite(fps) or fps <= 0:
    raise ValueError(f"fps: expected a positive frame rate; got {fps!r}.")
  if not path.exists():
    raise FileNotFoundError(f"{path}: frame folder not found; expected a folder of .png / .jpg frames.")
  if not path.is_dir():
    raise ValueError(f"{path}: is not a folder; expected a folder of .png / .jpg frames (read a video file "
                     "with read_video).")
  files = frame_files(path)
  if not files:
    raise ValueError(f"{path}: no {' / '.join(FRAME_SUFFIXES)} frames found in the folder.")
  files = list(_take(files, stride, max_frames))
  frames = []
  for f in files:
    image = read_image(f)
    if frames and image.shape != frames[0].shape:
      raise ValueError(f"{f}: frame size {image.shape[:2]} (h, w) differs from {files[0].name}'s "
                       f"{frames[0].shape[:2]}; all frames of a folder must have the same size.")
    frames.append(image)
  frames = _stack(frames, str(path), f"{len(files)} image file(s) with stride {stride}, max_frames {max_frames}")
  return Video(frames=frames, fps=float(fps) / stride, source=str(path))


def load_video(path, max_frames: int | None = None, stride: int = 1, fps: float | None = None) -> Video:
  """Reads a video file or a folder of frames, whichever `path` is.

  Args:
    path: a video file or a folder of .png / .jpg frames.
    max_frames, stride: as in `read_video`.
    fps: frame rate of a frame folder (default 30); for a video file, None
      keeps the file's rate and a value overrides it.

  Returns:
    A `Video`.

  Raises:
    FileNotFoundError: when `path` does not exist.
    ValueError: as `read_video` / `read_frame_folder`.

  Example:
    >>> video = load_video("../shared/data/video/apple.mp4")
  """
  path = Path(path)
  if not path.exists():
    raise FileNotFoundError(f"{path}: not found; expected a video file (e.g. .mp4) or a folder of .png / .jpg frames.")
  if path.is_dir():
    return read_frame_folder(path, max_frames, stride, DEFAULT_FOLDER_FPS if fps is None else fps)
  video = read_video(path, max_frames, stride)
  return video if fps is None else dataclasses.replace(video, fps=float(fps) / stride)
