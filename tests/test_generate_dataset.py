"""generate.dataset and experiments.render_views: write, resume after a kill, read back; the video."""

from __future__ import annotations

import json

import imageio.v2 as imageio
import jax
import numpy as np
import pytest
import tensorstore as ts

from experiments import render_views
from experiments.configs import render_views as render_views_config
from generate import dataset, multiview_data

CFG = multiview_data.MultiViewConfig(num_frames=8, image_hw=(32, 32), num_targets=2, grid_size=4)


def assert_same(read: multiview_data.SceneViews, made: multiview_data.SceneViews) -> None:
  for field in ("source_rgb", "target_rgb"):
    np.testing.assert_allclose(getattr(read, field), getattr(made, field), atol=0.5 / 255 + 1e-6)
  for field in ("source_depth_map", "target_depth_map"):
    np.testing.assert_allclose(getattr(read, field), getattr(made, field), rtol=1e-3)  # float16 on disk.
  for field in ("xyz_world", "source_xy_px", "target_xy_px", "source_visible", "target_visible", "target_w2c",
                "target_kind", "target_amount", "dynamic", "query_frame", "camera", "look_at_depth"):
    np.testing.assert_array_equal(getattr(read, field), getattr(made, field), err_msg=field)


@pytest.mark.parametrize("where", ["file", "memory"])
def test_write_kill_resume_and_read_back(tmp_path, where):
  context = ts.Context()
  out = str(tmp_path / "mv") if where == "file" else "memory://mv/"
  ds = dataset.write_dataset(CFG, out, num_scenes=5, seed=3, chunk_scenes=2, context=context, progress=False,
                             max_chunks=1)
  assert ds.num_complete == 2
  with pytest.raises(ValueError, match=r"read: scene indices must be in \[0, 2\)"):
    ds.read([2])
  # A writer killed inside chunk 1: arrays partly written, progress not committed.
  half = dataset.MultiViewDataset.open(out, context=context)
  half._arrays["source_rgb"][2:4].write(np.full((2,) + half._arrays["source_rgb"].shape[1:], 7, np.uint8)).result()
  assert half.num_complete == 2
  ds = dataset.write_dataset(CFG, out, num_scenes=5, seed=3, chunk_scenes=2, context=context, progress=False)
  assert ds.num_complete == 5 and ds.complete_chunks == 3
  batch = ds.read([4, 0, 2])
  assert batch.target_rgb.shape == (3, 2, 8, 32, 32, 3) and batch.source_rgb.dtype == np.float32
  for row, index in enumerate([4, 0, 2]):
    assert_same(jax.tree.map(lambda x, row=row: x[row], batch), multiview_data.make_scene_views(CFG, 3, index))
  one = ds.read_scene(1)
  assert one.paired(1).target_xy_px.shape == (8, CFG.num_tracks, 2)
  info = json.loads(ds._kv.read("dataset.json").result().value.decode())
  assert info["num_targets"] == 2 and info["source"]["seed"] == 3
  # Another config at the same place is refused, never overwritten.
  with pytest.raises(ValueError, match="holds a different dataset"):
    dataset.write_dataset(CFG, out, num_scenes=5, seed=4, chunk_scenes=2, context=context, progress=False)


def test_open_checks_the_layout(tmp_path):
  with pytest.raises(ValueError, match="not a multi-view dataset"):
    dataset.MultiViewDataset.open(str(tmp_path / "nothing"))
  with pytest.raises(ValueError, match="MultiViewInfo.num_scenes"):
    dataset.MultiViewInfo(num_scenes=0, num_frames=8, image_hw=(32, 32), num_targets=1, num_tracks=4)


@pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")  # ffmpeg reads the mp4 in a subprocess.
def test_render_views_writes_a_watchable_video(tmp_path):
  config = render_views_config.get_config("tiny")
  results = render_views.render_views(config, str(tmp_path))
  assert [r.kind for r in results] == list(config.views.kinds)
  assert all(r.psnr_true_depth > 20 and r.cover_true_depth > 0.3 for r in results)
  frames = imageio.mimread(str(tmp_path / "views.mp4"))
  assert len(frames) == config.generator.num_frames and frames[0].ndim == 3
  assert (tmp_path / "cameras.png").stat().st_size > 1000
  summary = json.loads((tmp_path / "summary.json").read_text())
  assert len(summary["targets"]) == len(results)


def test_eval_mode_measures(tmp_path):
  result = render_views.evaluate(render_views_config.get_config("eval_tiny"), str(tmp_path))
  assert result["num_pairs"] == 4 and result["clip_pairs_per_minute"] > 0
  assert result["psnr_true"]["mean"] > result["psnr_nowarp"]["mean"]
  assert 0 <= result["mask_precision"]["min"] <= 1 and result["vis_agree"]["mean"] > 0.8
  assert json.loads((tmp_path / "eval.json").read_text())["num_pairs"] == 4


def test_configs_build():
  for arg in ("default", "tiny", "dataset", "dataset_val", "dataset_tiny", "eval", "eval_tiny"):
    config = render_views_config.get_config(arg)
    multiview_data.MultiViewConfig.from_dict(config.generator)
  with pytest.raises(ValueError, match="unknown variant"):
    render_views_config.get_config("huge")
