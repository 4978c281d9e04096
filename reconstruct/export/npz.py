"""`reconstruction.npz`: the cameras and 3D tracks of a reconstruction in one npz.

Keys (exactly these; t frames, n tracks in the input order):
  c2w           (t, 4, 4)  float32  camera-to-world poses (OpenCV axes)
  K             (t, 3, 3)  float32  intrinsics in pixels (pixel centres at integers)
  tracks_world  (t, n, 3)  float32  3D tracks, world frame
  tracks_cam    (t, n, 3)  float32  3D tracks, each frame's camera frame (depth = [..., 2])
  visible       (t, n)     bool     the input visibility
  movement      (n,)       float32  movement level (larger = more dynamic)

Written atomically without pickle; read with `allow_pickle=False`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from reconstruct.export import common
from tracks4d.io import npz_utils

KEYS = ("c2w", "K", "tracks_world", "tracks_cam", "visible", "movement")


def write_reconstruction_npz(path: npz_utils.PathLike, rec: Any) -> Path:
  """Writes `reconstruction.npz` (the keys in the module docstring), atomically.

  Args:
    path: destination file, used exactly as given.
    rec: a `reconstruct.result.Reconstruction`.

  Returns:
    The path written.

  Raises:
    ValueError: naming the field of `rec` with a wrong shape.
    OSError: when the file cannot be written.

  Example:
    >>> write_reconstruction_npz("out/reconstruction.npz", rec)
  """
  a = common.check_reconstruction(rec)
  arrays = {
      "c2w": a.c2w.astype(np.float32),
      "K": a.K.astype(np.float32),
      "tracks_world": a.tracks_world.astype(np.float32),
      "tracks_cam": a.tracks_cam.astype(np.float32),
      "visible": a.visible,
      "movement": a.movement.astype(np.float32),
  }
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  npz_utils.save_npz_atomic(path, arrays)
  return path


def read_reconstruction_npz(path: npz_utils.PathLike) -> dict[str, np.ndarray]:
  """Reads and checks a `reconstruction.npz` written by `write_reconstruction_npz`.

  Args:
    path: the file.

  Returns:
    Dict with exactly the six keys of the module docstring: float32 arrays and
    `visible` bool, with consistent t and n. Extra keys in the file are ignored.

  Raises:
    ValueError: naming the file and the key when the file is not an npz, a key
      is missing, pickled (an object array), of the wrong shape or dtype (float
      for all but `visible`, which must be bool), or t / n disagree between keys.

  Example:
    >>> d = read_reconstruction_npz("out/reconstruction.npz"); d["tracks_world"].shape
    (t, n, 3)
  """
  with npz_utils.open_npz(path) as npz:
    c2w = npz_utils.require(npz, "c2w", path, "(t, 4, 4) float camera-to-world poses", shape=(None, 4, 4),
                            kinds="f")
    t = c2w.shape[0]
    movement = npz_utils.require(npz, "movement", path, "(n,) float movement levels", ndim=1, kinds="f")
    n = movement.shape[0]
    tn = f"t={t} (from 'c2w'), n={n} (from 'movement')"
    out = {
        "c2w": c2w,
        "K": npz_utils.require(npz, "K", path, f"(t, 3, 3) float intrinsics with {tn}", shape=(t, 3, 3), kinds="f"),
        "tracks_world": npz_utils.require(npz, "tracks_world", path, f"(t, n, 3) float world points with {tn}",
                                          shape=(t, n, 3), kinds="f"),
        "tracks_cam": npz_utils.require(npz, "tracks_cam", path, f"(t, n, 3) float camera-frame points with {tn}",
                                        shape=(t, n, 3), kinds="f"),
        "visible": npz_utils.require(npz, "visible", path, f"(t, n) bool visibility with {tn}", shape=(t, n),
                                     kinds="b"),
        "movement": movement,
    }
  return {k: (v if k == "visible" else v.astype(np.float32)) for k, v in ((k, out[k]) for k in KEYS)}
