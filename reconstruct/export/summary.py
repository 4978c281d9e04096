"""`summary.json`: the numbers of a reconstruction run in one small, valid JSON file.

Keys: num_frames, num_tracks, num_dynamic_tracks, image_hw, focal_source,
K_frame0 (3x3, pixels), movement_threshold, reprojection (the
`ReprojectionStats` fields, or null), timings (seconds per stage), windows
({count, starts, size_max}), settings, extra. NaN and +-inf are written as
null (strict JSON); NumPy scalars and arrays become numbers and lists,
dataclasses become objects, other unknown values their `str`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from reconstruct.export import common


def to_json(value: Any) -> Any:
  """Converts a value to plain JSON types; NaN/inf -> None.

  Handles dicts (keys -> str), lists/tuples, dataclasses, NumPy arrays and
  scalars, Paths; any other object becomes its `str`.

  Example:
    >>> to_json({"a": np.float32("nan"), "b": np.arange(2)})
    {'a': None, 'b': [0, 1]}
  """
  if value is None or isinstance(value, (bool, str)):
    return value
  if isinstance(value, (np.bool_,)):
    return bool(value)
  if isinstance(value, (int, np.integer)):
    return int(value)
  if isinstance(value, (float, np.floating)):
    v = float(value)
    return v if math.isfinite(v) else None
  if isinstance(value, Mapping):
    return {str(k): to_json(v) for k, v in value.items()}
  if dataclasses.is_dataclass(value) and not isinstance(value, type):
    return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
  if isinstance(value, (list, tuple)):
    return [to_json(v) for v in value]
  if isinstance(value, np.ndarray) or hasattr(value, "__array__"):
    arr = np.asarray(value)
    if arr.dtype.kind in "biuf":
      return to_json(arr.tolist())
    return to_json(arr.astype(str).tolist())
  if isinstance(value, os.PathLike):
    return os.fspath(value)
  return str(value)


def summary_dict(rec: Any, settings: Mapping | None = None, extra: Mapping | None = None) -> dict:
  """The summary of a reconstruction as a JSON-ready dict (see the module docstring).

  Args:
    rec: a `reconstruct.result.Reconstruction`.
    settings: the settings of the run (any JSON-convertible mapping).
    extra: anything else to record (e.g. input path, device).

  Returns:
    dict of plain JSON values (NaN already None).

  Raises:
    ValueError: naming the field of `rec` with a wrong shape.
  """
  a = common.check_reconstruction(rec)
  starts = np.asarray(rec.window_starts).reshape(-1)
  lengths = np.diff(np.append(starts, a.num_frames)) if starts.size else np.zeros(0)
  out = {
      "num_frames": a.num_frames,
      "num_tracks": a.num_tracks,
      "num_dynamic_tracks": int(a.is_dynamic.sum()),
      "image_hw": list(a.image_hw),
      "focal_source": str(getattr(rec, "focal_source", "")),
      "K_frame0": a.K[0],
      "movement_threshold": a.movement_threshold,
      "reprojection": getattr(rec, "reprojection", None),
      "timings": getattr(rec, "timings", None),
      "windows": {"count": int(starts.size), "starts": starts, "size_max": int(lengths.max()) if lengths.size else 0},
      "settings": dict(settings or {}),
      "extra": dict(extra or {}),
  }
  return to_json(out)


def write_summary(path: str | os.PathLike, rec: Any, settings: Mapping | None = None,
                  extra: Mapping | None = None) -> Path:
  """Writes `summary.json` atomically (strict JSON: NaN written as null).

  Args:
    path: destination file (parent folders created).
    rec: a `reconstruct.result.Reconstruction`.
    settings: the settings of the run.
    extra: anything else to record.

  Returns:
    The path written.

  Raises:
    ValueError: naming the field of `rec` with a wrong shape.
    OSError: when the file cannot be written.

  Example:
    >>> write_summary("out/summary.json", rec, {"model": "small", "finetune_steps": 0})
  """
  data = summary_dict(rec, settings, extra)
  text = json.dumps(data, indent=2, allow_nan=False) + "\n"
  return common.write_text_atomic(path, text)
