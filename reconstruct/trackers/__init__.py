"""2D point trackers that turn a video into `tracks4d.tracks.Tracks`.

`track_video(video, tracker=..., **options)` runs one of `TRACKERS`:

  lk      OpenCV pyramidal Lucas-Kanade with forward-backward checks
          (`reconstruct.trackers.lk`); needs nothing beyond OpenCV.
  tapnet  TAPIR / BootsTAPIR through the tapnet package and a user-given
          checkpoint (`reconstruct.trackers.tapnet_tracker`); tapnet is not on
          the package index and is imported only when this tracker is chosen.

Options are the fields of the tracker's config (`LKConfig`, `TapnetConfig`),
e.g. `grid_size=15`, or `cfg=` a whole config, plus `query_xy_px` /
`query_frame` for custom queries.
"""

from __future__ import annotations

import dataclasses

from reconstruct.video import Video
from tracks4d.tracks import Tracks

TRACKERS = ("lk", "tapnet")
# Options every tracker takes besides its config fields.
_COMMON_OPTIONS = ("cfg", "query_xy_px", "query_frame", "name")


def _config(config_cls, tracker: str, options: dict):
  """Splits options into a config (from `cfg` and field overrides) and the rest."""
  fields = {f.name for f in dataclasses.fields(config_cls)}
  unknown = set(options) - fields - set(_COMMON_OPTIONS)
  if unknown:
    raise ValueError(f"track_video: unknown option(s) {sorted(unknown)} for tracker {tracker!r}; expected fields of "
                     f"{config_cls.__name__} {sorted(fields)} or {list(_COMMON_OPTIONS)}.")
  cfg = options.pop("cfg", None) or config_cls()
  if not isinstance(cfg, config_cls):
    raise ValueError(f"track_video: cfg must be a {config_cls.__name__} for tracker {tracker!r}; got {type(cfg)}.")
  overrides = {k: options.pop(k) for k in list(options) if k in fields}
  return dataclasses.replace(cfg, **overrides), options


def track_video(video_or_frames, tracker: str = "lk", progress: bool = True, **options) -> Tracks:
  """Tracks points through a video with the chosen tracker.

  Args:
    video_or_frames: a `reconstruct.video.Video`, or (t, h, w, 3) frames
      (uint8, or float in [0, 1]).
    tracker: one of TRACKERS.
    progress: show a progress bar.
    **options: config fields of the tracker (e.g. grid_size=15,
      num_query_frames=3; for tapnet checkpoint=...), `cfg=` a whole config,
      `query_xy_px` (n, 2) / `query_frame` (n,) for custom queries, `name`.

  Returns:
    A validated `Tracks` (intrinsics guessed, intrinsics_known False).

  Raises:
    ValueError: for an unknown tracker (listing TRACKERS) or option, or bad
      input (from the tracker).
    ImportError: (tapnet) when tapnet is not installed, saying how to install it.

  Example:
    >>> tracks = track_video(read_video("clip.mp4"), "lk", grid_size=15, num_query_frames=3)
  """
  if tracker not in TRACKERS:
    raise ValueError(f"tracker: unknown tracker {tracker!r}; choose one of {list(TRACKERS)}.")
  if isinstance(video_or_frames, Video) and "name" not in options:
    options["name"] = f"{tracker} tracks of {video_or_frames.source}"
  if tracker == "lk":
    from reconstruct.trackers import lk

    cfg, rest = _config(lk.LKConfig, tracker, dict(options))
    return lk.track_lk(video_or_frames, cfg, progress=progress, **rest)
  from reconstruct.trackers import tapnet_tracker

  cfg, rest = _config(tapnet_tracker.TapnetConfig, tracker, dict(options))
  return tapnet_tracker.track_tapnet(video_or_frames, cfg, progress=progress, **rest)
