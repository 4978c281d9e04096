"""Chunked tensorstore zarr arrays under one root, with a commit marker.

The storage shared by the datasets (`tracks4d.io.dataset.TrackDataset`,
`generate.dataset.MultiViewDataset`): they subclass `ChunkedZarrStore` and say
which arrays their info implies; this module creates, opens, checks and commits
them. A root is a local folder or any kvstore URL (`gs://bucket/path/`,
`memory://name/`, ...) and holds:

  dataset.json    the dataset's info as JSON; written last, so its presence
                  marks a fully created layout
  progress.json   {"complete_chunks": k}: items [0, k * chunk_items) are complete
  <path>/         one zarr array per field, the items along the first axis,
                  chunked by `chunk_items` items along that axis only (blosc zstd)

Writes go chunk by chunk: a chunk's items are written to every array, then
`commit` rewrites progress.json (the kvstore replaces it atomically). A writer
killed at any moment leaves every chunk below the recorded progress complete;
resuming rewrites from there, and readers look no further.
"""

from __future__ import annotations

import json
import os
from typing import Any, NamedTuple, Sequence, TypeVar

import numpy as np
import tensorstore as ts

INFO_KEY = "dataset.json"
PROGRESS_KEY = "progress.json"

_ZARR_DTYPE = {"float32": "<f4", "float16": "<f2", "int32": "<i4", "bool": "|b1", "uint8": "|u1"}
_COMPRESSOR = {"id": "blosc", "cname": "zstd", "clevel": 3, "shuffle": 1}

_Store = TypeVar("_Store", bound="ChunkedZarrStore")


def kvstore_spec(location: str) -> Any:
  """A kvstore spec for a local path or a URL (`gs://`, `s3://`, `memory://`, ...)."""
  location = str(location)
  if "://" in location:
    return location if location.endswith("/") else location + "/"
  return {"driver": "file", "path": os.path.abspath(location) + "/"}


def join(spec: Any, path: str) -> Any:
  """The kvstore spec of folder `path` below `spec` (a spec from `kvstore_spec`)."""
  if isinstance(spec, str):
    return spec + path + "/"
  return {**spec, "path": spec["path"] + path + "/"}


class Layout(NamedTuple):
  """What an info implies is stored.

  Attributes:
    arrays: {name: (path below the root, dtype name, full shape)}; every shape
      starts with `num_items`.
    num_items: items (clips, scenes) along the first axis.
    chunk_items: items per zarr chunk, and per commit.
  """

  arrays: dict[str, tuple[str, str, tuple[int, ...]]]
  num_items: int
  chunk_items: int


class ChunkedZarrStore:
  """Base class of a dataset kept as described in the module docstring.

  A subclass sets the class attributes `_what` (what it is, for messages: "not
  a <what>"), `_item` (what an item is: "<item> indices must be in ...") and
  `_info_type` (its info class, with `from_json(text, where)` raising ValueError
  for a malformed file, `to_json()` and `==`), and defines `_layout(info)` and
  `_check(info, location)`. Errors are ValueErrors that start with the location
  (or with the method).

  Attributes:
    location: the root as given (a path or URL).
    info: the dataset's info.
  """

  _what: str
  _item: str
  _info_type: type

  def __init__(self, location: str, info: Any, arrays: dict[str, ts.TensorStore], kvstore: ts.KvStore):
    self.location = location
    self.info = info
    self._arrays = arrays
    self._kv = kvstore
    layout = self._layout(info)
    self._num_items, self._chunk_items = layout.num_items, layout.chunk_items

  @staticmethod
  def _layout(info: Any) -> Layout:
    """The arrays and chunking that `info` implies."""
    raise NotImplementedError

  @staticmethod
  def _check(info: Any, location: str) -> None:
    """Raises ValueError for an info this code cannot read (e.g. another format_version)."""

  # Opening -------------------------------------------------------------------

  @classmethod
  def create(cls: type[_Store], location: str, info: Any, context: ts.Context | None = None) -> _Store:
    """Creates a dataset, or reopens an unfinished one with the same info to resume.

    Arrays left by a creation killed before it wrote dataset.json are replaced.

    Raises:
      ValueError: if `location` holds a dataset with different info (it is never
        overwritten).
    """
    context = context or ts.Context()
    kv = ts.KvStore.open(kvstore_spec(location), context=context).result()
    existing = kv.read(INFO_KEY).result()
    if existing.state == "value":
      old = cls._info_type.from_json(existing.value.decode(), str(location))
      if old != info:
        raise ValueError(
            f"{location}: holds a different dataset ({INFO_KEY} differs from the requested one); "
            f"use another location or remove it.\n  existing: {old}\n  requested: {info}")
      return cls.open(location, context=context)
    layout = cls._layout(info)
    arrays = {}
    for name, (path, dtype, shape) in layout.arrays.items():
      arrays[name] = ts.open({
          "driver": "zarr",
          "kvstore": join(kvstore_spec(location), path),
          "metadata": {"shape": list(shape), "chunks": [layout.chunk_items] + list(shape[1:]),
                       "dtype": _ZARR_DTYPE[dtype], "compressor": _COMPRESSOR},
      }, create=True, delete_existing=True, context=context).result()
    store = cls(str(location), info, arrays, kv)
    store.commit(0)
    kv.write(INFO_KEY, info.to_json().encode()).result()  # Last: marks a fully created layout.
    return store

  @classmethod
  def open(cls: type[_Store], location: str, context: ts.Context | None = None) -> _Store:
    """Opens an existing dataset and checks that its arrays agree with its info.

    Raises:
      ValueError: naming the location and the array when dataset.json is missing
        or malformed, an array is missing, or its shape or dtype disagrees.
    """
    context = context or ts.Context()
    kv = ts.KvStore.open(kvstore_spec(location), context=context).result()
    meta = kv.read(INFO_KEY).result()
    if meta.state != "value":
      raise ValueError(f"{location}: not a {cls._what} (no {INFO_KEY}).")
    info = cls._info_type.from_json(meta.value.decode(), str(location))
    cls._check(info, location)
    arrays = {}
    for name, (path, dtype, shape) in cls._layout(info).arrays.items():
      try:
        arr = ts.open({"driver": "zarr", "kvstore": join(kvstore_spec(location), path)}, context=context).result()
      except ValueError as e:
        raise ValueError(f"{location}: array {path!r} is missing or unreadable ({e}).") from e
      if tuple(arr.shape) != tuple(shape):
        raise ValueError(f"{location}: array {path!r} has shape {tuple(arr.shape)}; {INFO_KEY} implies "
                         f"{tuple(shape)}.")
      if arr.dtype.numpy_dtype != np.dtype(dtype):
        raise ValueError(f"{location}: array {path!r} has dtype {arr.dtype.numpy_dtype}; expected {dtype}.")
      arrays[name] = arr
    return cls(str(location), info, arrays, kv)

  # Progress ------------------------------------------------------------------

  @property
  def complete_chunks(self) -> int:
    """The committed chunk count k: chunks [0, k) are fully written.

    Raises:
      ValueError: when progress.json is missing or malformed, or counts more
        chunks than the dataset has.
    """
    raw = self._kv.read(PROGRESS_KEY).result()
    if raw.state != "value":
      raise ValueError(f"{self.location}: {PROGRESS_KEY} is missing.")
    try:
      k = int(json.loads(raw.value.decode())["complete_chunks"])
    except (ValueError, KeyError, TypeError) as e:
      raise ValueError(f"{self.location}: {PROGRESS_KEY} is malformed: {e}") from e
    num_chunks = -(-self._num_items // self._chunk_items)
    if not 0 <= k <= num_chunks:
      raise ValueError(f"{self.location}: {PROGRESS_KEY} says {k} chunks; the dataset has {num_chunks}.")
    return k

  @property
  def num_complete(self) -> int:
    """Number of items fully written (readable)."""
    return min(self.complete_chunks * self._chunk_items, self._num_items)

  def commit(self, complete_chunks: int) -> None:
    """Records that chunks [0, complete_chunks) are fully written."""
    self._kv.write(PROGRESS_KEY, json.dumps({"complete_chunks": int(complete_chunks)}).encode()).result()

  def chunk_range(self, chunk: int) -> range:
    """The items of chunk number `chunk` (the last one may be short)."""
    start = chunk * self._chunk_items
    return range(start, min(start + self._chunk_items, self._num_items))

  # Reading -------------------------------------------------------------------

  def _read_items(self, indices: Sequence[int]) -> dict[str, np.ndarray]:
    """{name: the array's values at `indices`} (any order, repeats allowed), read concurrently.

    Raises:
      ValueError: for indices that are not a non-empty 1D list, or one outside
        the complete items.
    """
    idx = np.asarray(indices, dtype=np.int64)
    done = self.num_complete
    if idx.ndim != 1 or len(idx) == 0:
      raise ValueError(f"read: expected a non-empty 1D list of {self._item} indices; got shape {idx.shape}.")
    if idx.min() < 0 or idx.max() >= done:
      raise ValueError(f"read: {self._item} indices must be in [0, {done}) (complete {self._item}s of "
                       f"{self.location}); got range [{idx.min()}, {idx.max()}].")
    futures = {name: arr[idx].read() for name, arr in self._arrays.items()}
    return {name: f.result() for name, f in futures.items()}
