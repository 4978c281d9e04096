"""Small helpers shared by the npz readers and writers of `tracks4d.io`.

* `open_npz` opens an npz archive without pickle and turns every failure (missing
  file, not a zip, truncated or corrupt archive, a lone .npy) into a `ValueError`
  naming the file.
* `require` fetches one array from an open archive and checks its shape and dtype
  kind; every problem (missing key, unreadable or pickled member, wrong shape or
  dtype) is a `ValueError` naming the file, the key and what was expected.
* `atomic_write` / `save_npz_atomic` write to a temporary file in the destination
  directory and `os.replace` it into place, so a killed process never leaves a
  half-written file under the final name.

tracks4d never unpickles: a pickled member (an object array) is reported, not
loaded.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from typing import Iterator, Mapping, Optional, Sequence, Union

import numpy as np

PathLike = Union[str, "os.PathLike[str]"]
Shape = Sequence[Optional[int]]

# dtype kinds (np.dtype.kind) accepted by `require` by default: bool, int, uint, float.
NUMERIC_KINDS = "biuf"


def open_npz(path: PathLike) -> np.lib.npyio.NpzFile:
  """Opens an npz archive with `allow_pickle=False`; members are loaded lazily.

  Args:
    path: the file to open.

  Returns:
    The open `NpzFile`; use it as a context manager so the file gets closed.

  Raises:
    ValueError: naming the file when it does not exist, is a directory, is not a
      zip archive (garbage bytes, a pickle), is truncated or corrupt, or is a
      single .npy array instead of an npz archive.

  Example:
    >>> with open_npz("clip.npz") as npz:
    ...   xy = require(npz, "pred_tracks", "clip.npz", "(1, T, N, 2)", ndim=4)
  """
  name = os.fspath(path)
  try:
    npz = np.load(name, allow_pickle=False)
  except FileNotFoundError:
    raise ValueError(f"{name}: no such file; expected an npz archive.") from None
  except IsADirectoryError:
    raise ValueError(f"{name}: is a directory; expected an npz archive file.") from None
  except Exception as e:  # BadZipFile, EOFError, OSError, pickle refusal, ...
    raise ValueError(
        f"{name}: cannot be read as an npz archive ({type(e).__name__}: {e}); "
        "the file is corrupt, truncated or not an npz file.") from e
  if not isinstance(npz, np.lib.npyio.NpzFile):
    raise ValueError(f"{name}: is a single .npy array; expected an npz archive of named arrays.")
  return npz


def _shape_matches(actual: tuple, expected: Shape) -> bool:
  return len(actual) == len(expected) and all(e is None or a == e for a, e in zip(actual, expected))


def require(
    npz: np.lib.npyio.NpzFile,
    key: str,
    file: PathLike,
    expected_shape_text: str,
    ndim: Optional[int] = None,
    shape: Union[Shape, Sequence[Shape], None] = None,
    kinds: Optional[str] = NUMERIC_KINDS,
    optional: bool = False,
    hint: str = "",
) -> Optional[np.ndarray]:
  """Loads one array from an open npz archive and checks it.

  Args:
    npz: an archive opened by `open_npz`.
    key: the array's name in the archive (without ".npy").
    file: the archive's path, for error messages.
    expected_shape_text: what the array should be, in words and symbols, e.g.
      "(1, T, N, 2) pixel positions (u, v) with T=12, N=30"; quoted in errors.
    ndim: required number of dimensions, or None.
    shape: required shape, None entries matching any size; or a list of such
      shapes, any of which is accepted; or None for no shape check.
    kinds: accepted `dtype.kind` characters (default bool/int/uint/float), or
      None to accept any dtype that loads without pickle.
    optional: return None instead of raising when the key is absent.
    hint: a sentence appended to every error (e.g. how to avoid the problem).

  Returns:
    The array, or None for an absent optional key.

  Raises:
    ValueError: naming the file, the key and the expected shape when the key is
      missing (and not optional), the member is pickled (object array) or cannot
      be decompressed/parsed, or the shape, ndim or dtype kind does not match.

  Example:
    >>> vis = require(npz, "pred_visibility", path, "(1, T, N) bool", shape=(1, t, n))
  """
  name = os.fspath(file)
  tail = f" {hint}" if hint else ""
  if key not in npz.files:
    if optional:
      return None
    raise ValueError(
        f"{name}: missing key '{key}'; expected {expected_shape_text}. "
        f"Keys present: {sorted(npz.files)}.{tail}")
  try:
    arr = npz[key]
  except Exception as e:
    if "pickle" in str(e).lower():
      raise ValueError(
          f"{name}: key '{key}' stores pickled Python objects (an object array), which tracks4d "
          f"refuses to unpickle; expected {expected_shape_text}.{tail}") from None
    raise ValueError(
        f"{name}: key '{key}' cannot be read ({type(e).__name__}: {e}); the file is corrupt or "
        f"truncated. Expected {expected_shape_text}.{tail}") from e
  if ndim is not None and arr.ndim != ndim:
    raise ValueError(
        f"{name}: key '{key}' has shape {arr.shape} ({arr.ndim} dims); expected {expected_shape_text}.{tail}")
  if shape is not None:
    shapes = list(shape) if shape and not isinstance(shape[0], (int, np.integer, type(None))) else [shape]
    if not any(_shape_matches(arr.shape, tuple(s)) for s in shapes):
      raise ValueError(f"{name}: key '{key}' has shape {arr.shape}; expected {expected_shape_text}.{tail}")
  if kinds is not None and arr.dtype.kind not in kinds:
    raise ValueError(
        f"{name}: key '{key}' has dtype {arr.dtype} (kind '{arr.dtype.kind}' not in '{kinds}'); "
        f"expected {expected_shape_text}.{tail}")
  return arr


def _umask() -> int:
  """The process umask, read without changing it (Linux), else the usual 0o022."""
  try:
    with open("/proc/self/status") as f:
      for line in f:
        if line.startswith("Umask:"):
          return int(line.split()[1], 8)
  except (OSError, ValueError, IndexError):
    pass
  return 0o022


@contextlib.contextmanager
def atomic_write(path: PathLike) -> Iterator:
  """Opens a binary temporary file that replaces `path` when the block succeeds.

  The temporary file lives in the destination directory (so `os.replace` is an
  atomic rename on the same file system), is flushed and fsynced before the
  rename, and is removed if the block raises. Readers see either the old file or
  the complete new one, never a partial write. The final file gets the usual
  permissions (0o666 minus the umask).

  Args:
    path: the final file name, used exactly as given (no suffix is added).

  Yields:
    A binary file object to write to.

  Raises:
    OSError: when the directory does not exist or is not writable.

  Example:
    >>> with atomic_write("out.bin") as f:
    ...   f.write(b"payload")
  """
  final = os.fspath(path)
  directory = os.path.dirname(os.path.abspath(final))
  fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(final)}.", suffix=".tmp", dir=directory)
  try:
    with os.fdopen(fd, "wb") as f:
      yield f
      f.flush()
      os.fsync(f.fileno())
    os.chmod(tmp, 0o666 & ~_umask())
    os.replace(tmp, final)
  except BaseException:
    with contextlib.suppress(FileNotFoundError):
      os.unlink(tmp)
    raise
  with contextlib.suppress(OSError):  # Best effort: make the rename itself durable.
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
      os.fsync(dir_fd)
    finally:
      os.close(dir_fd)


def save_npz_atomic(path: PathLike, arrays: Mapping[str, np.ndarray], compressed: bool = False) -> None:
  """Writes arrays to an npz archive atomically and without pickle.

  Args:
    path: destination, used exactly as given (numpy's automatic ".npz" suffix is
      not added).
    arrays: name -> array; every array must have a non-object dtype.
    compressed: deflate the members (`np.savez_compressed`) instead of storing them.

  Raises:
    ValueError: if an array has an object dtype (it would need pickle).
    OSError: when the file cannot be written.

  Example:
    >>> save_npz_atomic("clip.npz", {"xy_px": xy})
  """
  arrays = {k: np.asarray(v) for k, v in arrays.items()}
  for key, arr in arrays.items():
    if arr.dtype.hasobject:
      raise ValueError(f"{os.fspath(path)}: key '{key}' has an object dtype; tracks4d writes no pickled data.")
  save = np.savez_compressed if compressed else np.savez
  with atomic_write(path) as f:
    save(f, **arrays)
