"""Tests of tracks4d.io.mocap_mat on the CMU-mocap NRSfM files (skipped when absent)
and on small synthetic .mat files written to tmp_path."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from tracks4d import geometry
from tracks4d.io import mocap_mat
from tracks4d.io.mocap_mat import list_sequences, load_mocap, mocap_to_tracks
from tracks4d.tracks import Tracks, validate

DATA = mocap_mat.DEFAULT_NRSFM_DIR
SHAPES = {"drink": (1102, 41), "pickup": (357, 41), "stretch": (370, 41), "yoga": (307, 41), "dance": (264, 75)}


def _need_data() -> None:
  if not all((DATA / f"{name}.mat").is_file() for name in SHAPES):
    pytest.skip(f"CMU-mocap NRSfM data not found: {DATA}")


@pytest.fixture(scope="module")
def sequences():
  _need_data()
  return {name: load_mocap(name) for name in SHAPES}


def test_default_dir_is_shared_data_next_to_repo():
  if os.environ.get("TRACKS4D_NRSFM_DIR"):
    assert DATA == Path(os.environ["TRACKS4D_NRSFM_DIR"])
  else:
    repo = Path(mocap_mat.__file__).resolve().parents[2]
    assert DATA == repo.parent / "shared" / "data" / "nrsfm"


def test_list_sequences(tmp_path):
  _need_data()
  assert list_sequences() == sorted(SHAPES)
  assert list_sequences(tmp_path / "absent") == []
  (tmp_path / "b.mat").write_bytes(b"x")
  (tmp_path / "a.mat").write_bytes(b"x")
  (tmp_path / "notes.txt").write_text("x")
  assert list_sequences(tmp_path) == ["a", "b"]


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_load_shapes_and_frame(sequences, name):
  seq = sequences[name]
  f, p = SHAPES[name]
  assert (seq.name, seq.num_frames, seq.num_points) == (name, f, p)
  assert seq.S.shape == (f, p, 3) and seq.Shat.shape == (f, p, 3) and seq.W.shape == (f, p, 2)
  assert seq.camera_rows.shape == (f, 2, 3) and seq.camera_rotations.shape == (f, 3, 3)
  if name == "dance":
    assert seq.Rs is None and seq.edges is None
    np.testing.assert_allclose(seq.camera_rows[0], [[0, 1, 0], [0, 0, 1]], atol=1e-9)
  else:
    assert seq.Rs.shape == (f, 2, 3) and seq.theta_deg == 5.0
    assert seq.edges.ndim == 2 and seq.edges.shape[1] == 2
    assert seq.edges.min() >= 0 and seq.edges.max() < p
  assert seq.scale > 0 and seq.basis_size > 0
  # W is the orthographic projection of the world-frame S by the per-frame camera rows ...
  np.testing.assert_allclose(np.einsum("fpj,fij->fpi", seq.S, seq.camera_rows), seq.W, atol=1e-9)
  # ... and not simply the first two coordinates of S.
  assert np.abs(seq.W - seq.S[..., :2]).max() > 0.5
  # S is centred per frame and +z is up: most markers (upper body) lie above the centre.
  np.testing.assert_allclose(seq.S.mean(axis=1), 0.0, atol=1e-9)
  assert np.median(seq.S[..., 2]) > 0


def test_camera_turns_five_degrees_per_frame(sequences):
  rot = sequences["drink"].camera_rotations
  rel = rot[1:] @ np.swapaxes(rot[:-1], -1, -2)
  angles = np.degrees(np.linalg.norm(geometry.matrix_to_axis_angle(rel), axis=-1))
  np.testing.assert_allclose(angles, 5.0, atol=1e-6)


@pytest.mark.parametrize("name", ["drink", "dance"])
def test_mocap_to_tracks_is_consistent(sequences, name):
  seq = sequences[name]
  tracks = mocap_to_tracks(seq, focal_px=600.0, image_hw=(480, 640), distance=4.0, num_frames=40, start=10)
  assert isinstance(tracks, Tracks)
  validate(tracks)
  gt = tracks.gt
  assert tracks.xy_px.shape == (40, seq.num_points, 2)
  assert np.all(gt.depth > 0) and gt.dynamic.all() and tracks.visible.all()
  np.testing.assert_allclose(gt.xyz_world, seq.S[10:50], atol=1e-6)
  # Reprojecting the gt world points through gt w2c and K gives the tracks.
  xyz_cam = geometry.transform_points(gt.w2c.astype(np.float64), gt.xyz_world.astype(np.float64))
  xy, depth = geometry.project(xyz_cam, tracks.intrinsics.astype(np.float64))
  np.testing.assert_allclose(xy, tracks.xy_px, atol=1e-3)
  np.testing.assert_allclose(depth, gt.depth, atol=1e-5)
  # Camera-frame x, y are the orthographic W's x and -y: the virtual camera motion is kept.
  np.testing.assert_allclose(xyz_cam[..., 0], seq.W[10:50, :, 0], atol=1e-5)
  np.testing.assert_allclose(xyz_cam[..., 1], -seq.W[10:50, :, 1], atol=1e-5)
  # Upright: the highest marker (head) has a smaller pixel y than the lowest one.
  frames = np.arange(40)
  top, bottom = gt.xyz_world[..., 2].argmax(1), gt.xyz_world[..., 2].argmin(1)
  assert np.all(tracks.xy_px[frames, top, 1] < tracks.xy_px[frames, bottom, 1])
  # Cameras circle the body centre at `distance`.
  np.testing.assert_allclose(np.linalg.norm(geometry.camera_centers(gt.w2c), axis=-1), 4.0, atol=1e-5)


def test_mocap_to_tracks_bad_arguments(sequences):
  seq = sequences["yoga"]
  with pytest.raises(ValueError, match="distance"):
    mocap_to_tracks(seq, distance=0.5)
  with pytest.raises(ValueError, match="start"):
    mocap_to_tracks(seq, start=seq.num_frames)
  with pytest.raises(ValueError, match="num_frames"):
    mocap_to_tracks(seq, num_frames=seq.num_frames + 1)
  with pytest.raises(ValueError, match="focal_px"):
    mocap_to_tracks(seq, focal_px=0.0)


# ---------------------------------------------------------------------------
# Malformed files (no real data needed).
# ---------------------------------------------------------------------------


def _synthetic_mat(num_frames=4, num_points=5, seed=0) -> dict:
  rng = np.random.default_rng(seed)
  s = rng.normal(size=(num_frames, 3, num_points))
  angles = np.deg2rad(5.0 * np.arange(1, num_frames + 1))
  rows = np.stack([np.stack([np.cos(angles), np.sin(angles), 0 * angles], -1),
                   np.broadcast_to([0.0, 0.0, 1.0], (num_frames, 3))], axis=1)
  w = rows @ s
  return {"S": s.reshape(-1, num_points), "W": w.reshape(-1, num_points), "Rs": rows.reshape(-1, 3),
          "Shat": 2.0 * s.reshape(-1, num_points), "scale": np.array([[2.0]]), "K": np.array([[3]]),
          "list": np.array([[1, 2], [2, 5]]), "theta": np.array([[5]])}


def test_synthetic_file_round_trip(tmp_path):
  path = tmp_path / "toy.mat"
  scipy.io.savemat(path, _synthetic_mat())
  seq = load_mocap(path)
  assert seq.name == "toy" and seq.S.shape == (4, 5, 3) and seq.W.shape == (4, 5, 2)
  np.testing.assert_allclose(seq.Shat, seq.S)  # Shat / scale.
  np.testing.assert_array_equal(seq.edges, [[0, 1], [1, 4]])
  assert load_mocap("toy", directory=tmp_path).num_frames == 4
  tracks = mocap_to_tracks(seq, distance=6.0)
  assert tracks.num_frames == 4 and np.all(tracks.gt.depth > 0)


def test_corrupt_file_raises_naming_the_file(tmp_path):
  path = tmp_path / "garbage.mat"
  path.write_bytes(bytes(range(7, 256)) * 3)
  with pytest.raises(ValueError, match="garbage.mat"):
    load_mocap(path)
  scipy.io.savemat(tmp_path / "full.mat", _synthetic_mat())
  truncated = tmp_path / "truncated.mat"
  truncated.write_bytes((tmp_path / "full.mat").read_bytes()[:300])
  with pytest.raises(ValueError, match="truncated.mat"):
    load_mocap(truncated)


def test_missing_file_raises_naming_the_file(tmp_path):
  with pytest.raises(ValueError, match="nothere.mat"):
    load_mocap("nothere", directory=tmp_path)


@pytest.mark.parametrize("key", ["S", "W", "Shat", "scale"])
def test_missing_key_raises_naming_file_and_key(tmp_path, key):
  data = _synthetic_mat()
  del data[key]
  path = tmp_path / "nokey.mat"
  scipy.io.savemat(path, data)
  with pytest.raises(ValueError, match=f"nokey.mat.*`{key}`"):
    load_mocap(path)


@pytest.mark.parametrize(
    "key, value, shape_hint",
    [
        ("W", np.zeros((7, 5)), r"\(2F, P\)"),
        ("Shat", np.zeros((12, 4)), r"\(3F, P\)"),
        ("Rs", np.zeros((8, 2)), r"\(2F, 3\)"),
        ("S", np.zeros((13, 5)), r"\(3F, P\)"),
        ("list", np.array([[0, 9]]), r"\(E, 2\)"),
    ],
)
def test_wrong_shape_raises_naming_key_and_shape(tmp_path, key, value, shape_hint):
  data = _synthetic_mat()
  data[key] = value
  path = tmp_path / "bad.mat"
  scipy.io.savemat(path, data)
  with pytest.raises(ValueError, match=f"bad.mat.*`{key}`.*{shape_hint}"):
    load_mocap(path)


def test_inconsistent_cameras_raise(tmp_path):
  data = _synthetic_mat()
  data["W"] = data["W"] + 0.1
  path = tmp_path / "mismatch.mat"
  scipy.io.savemat(path, data)
  with pytest.raises(ValueError, match="mismatch.mat.*`W`"):
    load_mocap(path)
