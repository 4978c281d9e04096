"""Exports of a reconstruction: files for programs (npz, TAPVid-3D, COLMAP, PLY) and people (PNG, mp4, JSON).

`export_all(out_dir, rec, frames=...)` writes everything into one folder:

  reconstruction.npz        cameras + 3D tracks (`npz.write_reconstruction_npz`)
  tapvid3d_prediction.npz   TAPVid-3D prediction (tracks_XYZ camera frame, visibility)
  colmap/                   COLMAP text model of the static points (`colmap.write_colmap_text`)
  points_static.ply         static points          } `ply.write_reconstruction_plys`
  tracks.ply                all visible 3D tracks  }
  cameras.ply               camera centres         }
  reconstruction.png        camera path + points (`plots.plot_reconstruction`)
  tracks.mp4                tracks over the video, only with `frames` (`overlay.write_tracks_video`)
  summary.json              numbers of the run (`summary.write_summary`)

Each module does one job and can be used alone. Every file is written to a
temporary name and renamed into place.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from reconstruct.export import common
from reconstruct.export.colmap import ColmapModel, read_colmap_text, write_colmap_text
from reconstruct.export.npz import read_reconstruction_npz, write_reconstruction_npz
from reconstruct.export.overlay import draw_tracks, write_tracks_video
from reconstruct.export.plots import plot_reconstruction
from reconstruct.export.ply import read_ply, write_ply, write_reconstruction_plys
from reconstruct.export.summary import summary_dict, write_summary
from tracks4d.io.tapvid3d_npz import write_tapvid3d_prediction

__all__ = [
    "ColmapModel", "draw_tracks", "export_all", "plot_reconstruction", "read_colmap_text", "read_ply",
    "read_reconstruction_npz", "summary_dict", "write_colmap_text", "write_ply", "write_reconstruction_npz",
    "write_reconstruction_plys", "write_summary", "write_tracks_video",
]

VIDEO_NAME = "tracks.mp4"


def export_all(out_dir: str | os.PathLike, rec: Any, frames=None, settings: Mapping | None = None,
               extra: Mapping | None = None, fps: float = 10.0, xy_px=None, tail: int = 10) -> dict[str, Path]:
  """Writes every export of a reconstruction into `out_dir` (listed in the module docstring).

  Args:
    out_dir: output folder (created).
    rec: a `reconstruct.result.Reconstruction`.
    frames: optional (t, h, w, 3) uint8 RGB input video: enables tracks.mp4 and
      colours the static points (PLY, COLMAP) with the video's pixels. Without
      it, a tracks.mp4 left in `out_dir` by an earlier export is removed so the
      folder describes one reconstruction.
    settings: the run's settings, recorded in summary.json.
    extra: anything else recorded in summary.json.
    fps: frame rate of tracks.mp4.
    xy_px: optional (t, n, 2) input 2D tracks (x, y), default `rec.xy_px`: the COLMAP observations and
      the overlay positions. None: the projections of `rec.tracks_cam` (the
      `Reconstruction` does not hold the input tracks).
    tail: trail length of tracks.mp4 in frames.

  Returns:
    name -> path: reconstruction_npz, tapvid3d_prediction, colmap (folder),
    points_static_ply, tracks_ply, cameras_ply, plot, video (only with frames),
    summary.

  Raises:
    ValueError: naming the field of `rec`, `frames` or `xy_px` with a wrong shape,
      or non-finite camera-frame tracks (TAPVid-3D file).
    OSError: when a file cannot be written.

  Example:
    >>> paths = export_all("out", rec, frames=video, settings={"model": "small"}, xy_px=tracks.xy_px)
    >>> paths["summary"]
    PosixPath('out/summary.json')
  """
  a = common.check_reconstruction(rec)
  if xy_px is None:
    xy_px = getattr(rec, "xy_px", None)  # The input tracks the reconstruction keeps.
  out = Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  _, obs_ok = common.observed_xy(a, xy_px)  # Checks the shape of xy_px early.
  xy = common.projected_xy(a) if xy_px is None else np.asarray(xy_px, np.float64)
  colors = None
  if frames is not None:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[0] != a.num_frames or frames.shape[-1] != 3 or frames.dtype != np.uint8:
      raise ValueError(f"frames: expected (t, h, w, 3) uint8 RGB with t={a.num_frames}; "
                       f"got {frames.dtype} {frames.shape}.")
    colors = common.colors_from_frames(frames, xy, obs_ok)

  paths = {"reconstruction_npz": write_reconstruction_npz(out / "reconstruction.npz", rec)}
  paths["tapvid3d_prediction"] = out / "tapvid3d_prediction.npz"
  write_tapvid3d_prediction(paths["tapvid3d_prediction"], a.tracks_cam.astype(np.float32), a.visible)
  paths["colmap"] = write_colmap_text(out / "colmap", rec, colors=colors, xy_px=xy_px)
  paths.update(write_reconstruction_plys(out, rec, colors=colors))
  plot_reconstruction(out / "reconstruction.png", rec)
  paths["plot"] = out / "reconstruction.png"
  if frames is not None:
    paths["video"] = write_tracks_video(out / VIDEO_NAME, frames, xy, a.visible, a.movement, tail=tail, fps=fps,
                                        threshold=a.movement_threshold)
  else:
    with contextlib.suppress(FileNotFoundError):
      (out / VIDEO_NAME).unlink()
  paths["summary"] = write_summary(out / "summary.json", rec, settings, extra)
  return paths
