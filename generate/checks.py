"""Eager input checks of the generate stage: clear errors that name the argument.

Every public function of `generate` validates its inputs with these helpers
before any jit, so a bad pose, a trajectory of the wrong length or a zero-size
image fails with `ValueError("<argument>: what was expected; what was given")`
instead of NaNs or an XLA shape error. Traced (abstract) values are skipped:
the checks run on concrete NumPy or JAX arrays only.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

# Tolerances of the rigidity test of poses: max |R R^T - I| and |det R - 1|.
RIGID_ATOL = 1e-3


def is_traced(x: Any) -> bool:
  """Whether `x` is an abstract JAX value (inside jit/vmap), where checks are skipped."""
  return isinstance(x, jax.core.Tracer)


def image_hw(value: Any, name: str = "image_hw") -> tuple[int, int]:
  """(height, width) as two positive Python ints.

  Raises:
    ValueError: naming `name` for a wrong length, non-integer or non-positive size.
  """
  try:
    hw = tuple(int(v) for v in np.asarray(value).reshape(-1))
    exact = np.allclose(np.asarray(value, dtype=np.float64).reshape(-1), hw)
  except (TypeError, ValueError) as e:
    raise ValueError(f"{name}: expected (height, width) in pixels; got {value!r}.") from e
  if len(hw) != 2 or not exact:
    raise ValueError(f"{name}: expected (height, width) as two integers; got {value!r}.")
  if hw[0] <= 0 or hw[1] <= 0:
    raise ValueError(f"{name}: height and width must be positive; got {hw}.")
  return hw


def finite(x: Any, name: str) -> None:
  """Raises ValueError naming `name` (and the first bad index) if x has NaN or inf."""
  if is_traced(x):
    return
  a = np.asarray(x)
  bad = ~np.isfinite(a)
  if bad.any():
    first = tuple(int(i) for i in np.argwhere(bad)[0])
    raise ValueError(f"{name}: expected finite values; found {int(bad.sum())} NaN/inf (first at index {first}).")


def poses(w2c: Any, name: str, num_frames: int | None = None) -> None:
  """Checks world-to-camera poses (t, 4, 4): shape, length, finite, rigid, no reflection.

  Args:
    w2c: the poses.
    name: the argument name used in errors.
    num_frames: the required t, if any.

  Raises:
    ValueError: naming `name` for a wrong shape or length, NaN/inf, a bottom row
      other than (0, 0, 0, 1), a rotation block that is not orthonormal
      (non-rigid: scale or shear) or a reflection (det -1).
  """
  if is_traced(w2c):
    return
  a = np.asarray(w2c, dtype=np.float64)
  if a.ndim != 3 or a.shape[1:] != (4, 4):
    raise ValueError(f"{name}: expected shape (t, 4, 4) world-to-camera poses; got {a.shape}.")
  if a.shape[0] == 0:
    raise ValueError(f"{name}: expected at least one pose; got t=0.")
  if num_frames is not None and a.shape[0] != num_frames:
    raise ValueError(f"{name}: expected {num_frames} poses (one per frame); got {a.shape[0]}.")
  finite(a, name)
  if not np.allclose(a[:, 3], [0.0, 0.0, 0.0, 1.0], atol=1e-6):
    frame = int(np.argmax(np.abs(a[:, 3] - [0.0, 0.0, 0.0, 1.0]).max(-1)))
    raise ValueError(f"{name}: the bottom row must be (0, 0, 0, 1); frame {frame} has {a[frame, 3].tolist()}.")
  rot = a[:, :3, :3]
  err = np.abs(rot @ np.swapaxes(rot, -1, -2) - np.eye(3)).max(axis=(-1, -2))
  if np.any(err > RIGID_ATOL):
    frame = int(np.argmax(err))
    raise ValueError(f"{name}: pose of frame {frame} is not rigid: its rotation block is not orthonormal "
                     f"(max |R R^T - I| = {err[frame]:.3g}); scale or shear is not a camera pose.")
  det = np.linalg.det(rot)
  if np.any(det < 0):
    frame = int(np.argmin(det))
    raise ValueError(f"{name}: pose of frame {frame} is a reflection (det R = {det[frame]:.3g}), not a rotation.")


def intrinsics(K: Any, name: str, num_frames: int | None = None) -> None:
  """Checks intrinsics (t, 3, 3): shape, length, finite, positive focal lengths.

  Raises:
    ValueError: naming `name`.
  """
  if is_traced(K):
    return
  a = np.asarray(K, dtype=np.float64)
  if a.ndim != 3 or a.shape[1:] != (3, 3):
    raise ValueError(f"{name}: expected shape (t, 3, 3) intrinsics; got {a.shape}.")
  if num_frames is not None and a.shape[0] != num_frames:
    raise ValueError(f"{name}: expected {num_frames} intrinsics (one per frame); got {a.shape[0]}.")
  finite(a, name)
  if np.any(a[:, 0, 0] <= 0) or np.any(a[:, 1, 1] <= 0):
    raise ValueError(f"{name}: focal lengths fx, fy must be positive.")
  if not np.allclose(a[:, 2], [0.0, 0.0, 1.0]) or not np.allclose(a[:, 1, 0], 0) or not np.allclose(a[:, 0, 1], 0):
    raise ValueError(f"{name}: expected [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] (no skew).")


def array_shape(x: Any, name: str, shape: tuple, meaning: str) -> np.ndarray | Any:
  """Checks x's shape against `shape` (None entries match any size); returns x.

  Raises:
    ValueError: naming `name`, the expected `meaning` and the shape given.
  """
  s = tuple(np.shape(x))
  if len(s) != len(shape) or any(e is not None and e != g for e, g in zip(shape, s)):
    want = tuple("?" if e is None else e for e in shape)
    raise ValueError(f"{name}: expected shape {want} {meaning}; got {s}.")
  return x
