"""Coloured point clouds as binary PLY files, and the three clouds of a reconstruction.

`write_ply` writes `binary_little_endian 1.0` with one `vertex` element of
`float x, y, z` and `uchar red, green, blue` (what MeshLab, CloudCompare, Open3D
and Blender read); `read_ply` reads such files back (tests, users).

`write_reconstruction_plys` writes, in the world frame of the reconstruction:
  points_static.ply  the static points (positions as in the COLMAP export:
                     the mean of tracks_world over the visible frames)
  tracks.ply         every visible 3D track point of every frame, coloured by
                     the track's movement (blue static -> red dynamic)
  cameras.ply        the camera centres, coloured by time (dark -> bright green)

Shapes: p points, t frames, n tracks.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from reconstruct.export import common

_VERTEX_DTYPE = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")])
_PLY_TYPES = {"char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "<i2", "int16": "<i2",
              "ushort": "<u2", "uint16": "<u2", "int": "<i4", "int32": "<i4", "uint": "<u4", "uint32": "<u4",
              "float": "<f4", "float32": "<f4", "double": "<f8", "float64": "<f8"}


def write_ply(path: str | os.PathLike, xyz, rgb) -> Path:
  """Writes a coloured point cloud as a binary little-endian PLY, atomically.

  Args:
    path: destination file (parent folders are created).
    xyz: (p, 3) finite positions (stored as float32); p may be 0.
    rgb: (p, 3) uint8 colours (other integer dtypes are clipped to 0..255).

  Returns:
    The path written.

  Raises:
    ValueError: naming `xyz` / `rgb` for a wrong shape, a non-integer colour
      dtype or non-finite positions.
    OSError: when the file cannot be written.

  Example:
    >>> write_ply("points.ply", xyz, np.full((len(xyz), 3), 255, np.uint8))
  """
  xyz = np.asarray(xyz, np.float64)
  rgb = np.asarray(rgb)
  if xyz.ndim != 2 or xyz.shape[1] != 3:
    raise ValueError(f"xyz: expected shape (p, 3); got {xyz.shape}.")
  if rgb.shape != xyz.shape:
    raise ValueError(f"rgb: expected shape (p, 3) = {xyz.shape} like xyz; got {rgb.shape}.")
  if rgb.dtype.kind not in "iu":
    raise ValueError(f"rgb: expected integer (uint8) colours; got dtype {rgb.dtype}.")
  if not np.all(np.isfinite(xyz)):
    raise ValueError("xyz: holds NaN/inf; drop non-finite points before writing a PLY.")
  vertices = np.empty(xyz.shape[0], _VERTEX_DTYPE)
  for i, name in enumerate("xyz"):
    vertices[name] = xyz[:, i]
  for i, name in enumerate(("red", "green", "blue")):
    vertices[name] = np.clip(rgb[:, i], 0, 255)
  header = ("ply\nformat binary_little_endian 1.0\ncomment written by tracks4d reconstruct.export\n"
            f"element vertex {xyz.shape[0]}\n"
            "property float x\nproperty float y\nproperty float z\n"
            "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n")
  return common.write_bytes_atomic(path, header.encode("ascii") + vertices.tobytes())


def read_ply(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
  """Reads a binary little-endian PLY point cloud with x, y, z and red, green, blue.

  Other scalar vertex properties are allowed (and ignored); list properties and
  other elements after the vertices are not supported.

  Args:
    path: the file.

  Returns:
    xyz: (p, 3) float32 positions.
    rgb: (p, 3) uint8 colours.

  Raises:
    ValueError: naming the file for a missing or malformed header, another
      format (ascii, big-endian), missing properties or a truncated body.

  Example:
    >>> xyz, rgb = read_ply("out/points_static.ply")
  """
  path = Path(path)
  try:
    data = path.read_bytes()
  except FileNotFoundError:
    raise ValueError(f"{path}: no such file; expected a PLY file.") from None
  end = data.find(b"end_header\n")
  if not data.startswith(b"ply\n") or end < 0:
    raise ValueError(f"{path}: not a PLY file (expected 'ply' and 'end_header' lines).")
  lines = data[:end].decode("ascii", errors="replace").splitlines()
  body = data[end + len(b"end_header\n"):]
  fmt, count, fields, element = None, None, [], None
  for line in lines[1:]:
    words = line.split()
    if not words or words[0] in ("comment", "obj_info"):
      continue
    if words[0] == "format":
      fmt = words[1] if len(words) > 1 else None
    elif words[0] == "element":
      element = words[1] if len(words) > 1 else None
      if element == "vertex":
        count = int(words[2])
      elif count is not None and element != "vertex":
        break  # Elements after the vertices are not read.
    elif words[0] == "property" and element == "vertex":
      if words[1] == "list" or words[1] not in _PLY_TYPES or len(words) != 3:
        raise ValueError(f"{path}: unsupported vertex property line {line!r}.")
      fields.append((words[2], _PLY_TYPES[words[1]]))
  if fmt != "binary_little_endian":
    raise ValueError(f"{path}: format {fmt!r} is not supported; expected binary_little_endian.")
  if count is None:
    raise ValueError(f"{path}: no 'element vertex' in the header.")
  names = [name for name, _ in fields]
  missing = [k for k in ("x", "y", "z", "red", "green", "blue") if k not in names]
  if missing:
    raise ValueError(f"{path}: vertex properties {missing} are missing; found {names}.")
  dtype = np.dtype(fields)
  if len(body) < count * dtype.itemsize:
    raise ValueError(f"{path}: truncated: {count} vertices need {count * dtype.itemsize} bytes; "
                     f"the body has {len(body)}.")
  v = np.frombuffer(body, dtype, count=count)
  xyz = np.stack([v["x"], v["y"], v["z"]], -1).astype(np.float32)
  rgb = np.stack([v["red"], v["green"], v["blue"]], -1).astype(np.uint8)
  return xyz, rgb


def camera_colors(t: int) -> np.ndarray:
  """(t, 3) uint8 colours of cameras over time: dark green (first) -> bright yellow-green (last)."""
  u = np.linspace(0.0, 1.0, t)[:, None] if t > 1 else np.zeros((t, 1))
  return np.round((1 - u) * np.array([20, 90, 20]) + u * np.array([190, 255, 60])).astype(np.uint8)


def write_reconstruction_plys(directory: str | os.PathLike, rec: Any, colors=None) -> dict[str, Path]:
  """Writes points_static.ply, tracks.ply and cameras.ply (see the module docstring).

  Args:
    directory: output folder (created).
    rec: a `reconstruct.result.Reconstruction`.
    colors: optional (n, 3) uint8 RGB per track for points_static.ply (e.g.
      colours sampled from the video); default: the movement colour scale.
      tracks.ply is always coloured by movement.

  Returns:
    {"points_static_ply", "tracks_ply", "cameras_ply"} -> path.

  Raises:
    ValueError: naming the field of `rec` or `colors` for a wrong shape.

  Example:
    >>> paths = write_reconstruction_plys("out", rec)
  """
  a = common.check_reconstruction(rec)
  directory = Path(directory)
  directory.mkdir(parents=True, exist_ok=True)
  by_movement = common.movement_colors(a.movement, a.movement_threshold)
  if colors is None:
    colors = by_movement
  colors = np.asarray(colors)
  if colors.shape != (a.num_tracks, 3):
    raise ValueError(f"colors: expected (n, 3) = {(a.num_tracks, 3)} uint8 RGB per track; got {colors.shape}.")
  index, xyz = common.static_points(a)
  out = {"points_static_ply": write_ply(directory / "points_static.ply", xyz, colors[index])}
  vis = a.visible & np.isfinite(a.tracks_world).all(-1)
  _, track = np.nonzero(vis)
  out["tracks_ply"] = write_ply(directory / "tracks.ply", a.tracks_world[vis], by_movement[track])
  centres = a.c2w[:, :3, 3]
  fin = np.isfinite(centres).all(-1)
  out["cameras_ply"] = write_ply(directory / "cameras.ply", centres[fin], camera_colors(a.num_frames)[fin])
  return out
