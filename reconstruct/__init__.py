"""reconstruct: 2D tracks or a video in; cameras, 3D tracks, depth and exports out.

Example:
  >>> import reconstruct
  >>> rec = reconstruct.reconstruct(clip, bundle_adjust=True)    # a tracks4d Tracks
  >>> rec.c2w.shape, rec.tracks_world.shape, rec.K.shape
  ((t, 4, 4), (t, n, 3), (t, 3, 3))
  >>> reconstruct.export.export_all("out/", rec)

Command line: `python -m reconstruct INPUT --out DIR` (see reconstruct/__main__.py).
"""

from reconstruct.pipeline import ReconstructOptions, load_network, reconstruct
from reconstruct.result import Reconstruction, ReprojectionStats, Timings

__all__ = ["ReconstructOptions", "Reconstruction", "ReprojectionStats", "Timings", "load_network", "reconstruct"]
