"""Run as a script with 8 simulated CPU devices (see test_reconstruct.py):
`reconstruct` with its network batches sharded over 8 devices (batch size 3,
rounded up to 8, the last batch filled up) must equal the single-device run.

What sharding can break (the window order, the filled-up rows, the gather) shows
in the network's outputs per window, compared tightly. Per-device batches of 1
instead of 3 round differently (~1e-7 relative); the static points, triangulated
from the cameras per track (condition number up to ~1/ridge), magnify that to
~1e-4 of the scene's depth, and the stitched cameras and the float64 static fit
inherit it. So points are compared relative to the scene's depth, the movement
levels (least static-fit pixel error, continuous in the cameras) to 0.05 px, and
the static/dynamic labels must agree except within 1% of the threshold."""

import os
import sys
from unittest import mock

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"

import jax  # noqa: E402
import numpy as np  # noqa: E402

import reconstruct  # noqa: E402
from reconstruct import pipeline  # noqa: E402
from tracks4d import model as model_lib  # noqa: E402
from tracks4d import synthetic  # noqa: E402

CFG = synthetic.SyntheticConfig(num_frames=(24, 40), grid_size=8, query_stride=12)
OPTIONS = dict(batch_size=3, window_size=16, overlap=4, bundle_adjust=False, finetune_steps=0)


def _run(net, clips):
  """Reconstructions, the network's outputs per window and the number of
  devices each network batch was on."""
  seen, windows = [], []
  forward, per_window = model_lib.forward_jit, pipeline._forward  # pylint: disable=protected-access

  def recording(n, batch):
    seen.append((batch.xy_px.shape[0], len(batch.xy_px.sharding.device_set)))
    return forward(n, batch)

  def keep(*args, **kwargs):
    outs = per_window(*args, **kwargs)
    windows.extend(outs)
    return outs

  with mock.patch.object(model_lib, "forward_jit", recording), mock.patch.object(pipeline, "_forward", keep):
    recs = reconstruct.reconstruct(clips, model=net, **OPTIONS)
  return recs, windows, seen


def main():
  assert jax.device_count() == 8, jax.devices()
  clips = [synthetic.generate_clip(CFG, 5, i) for i in range(2)]
  net = pipeline.load_network(None)  # The shipped model (parameters on device 0).
  sharded, outs8, seen8 = _run(net, clips)
  # The single-device path of `_forward`, taken when jax reports one device.
  with mock.patch.object(jax, "device_count", lambda backend=None: 1):
    single, outs1, seen1 = _run(net, clips)
  windows = sum(len(r.window_starts) for r in single)
  assert windows % 8, f"want a filled-up last batch; got {windows} windows"
  assert seen8 == [(8, 8)] * -(-windows // 8), seen8
  assert seen1 == [(3, 1)] * -(-windows // 3), seen1
  assert len(outs8) == len(outs1) == windows, (len(outs8), len(outs1))
  for i, (a, b) in enumerate(zip(outs8, outs1)):
    for f in ("c2w", "focal", "coeff", "gamma"):  # Straight from the heads.
      np.testing.assert_allclose(a[f], b[f], rtol=1e-4, atol=1e-5, err_msg=f"window {i} {f}")
    depth = np.median(np.abs(b["xyz_cam"][..., 2]))
    for f in ("xyz_cam", "bases"):  # Through the triangulation.
      np.testing.assert_allclose(a[f], b[f], rtol=0, atol=2e-3 * depth, err_msg=f"window {i} {f}")
  for a, b in zip(sharded, single):
    np.testing.assert_array_equal(a.window_starts, b.window_starts)
    depth = np.median(np.abs(b.tracks_cam[..., 2]))
    np.testing.assert_allclose(a.c2w[:, :3, :3], b.c2w[:, :3, :3], rtol=0, atol=1e-4, err_msg="c2w rotation")
    for f, x, y in (("c2w centre", a.c2w[:, :3, 3], b.c2w[:, :3, 3]), ("tracks_world", a.tracks_world, b.tracks_world),
                    ("tracks_cam", a.tracks_cam, b.tracks_cam)):
      np.testing.assert_allclose(x, y, rtol=0, atol=2e-3 * depth, err_msg=f)
    np.testing.assert_allclose(a.movement, b.movement, rtol=0, atol=0.05, err_msg="movement")
    near = np.abs(b.movement - b.movement_threshold) < 0.01 * b.movement_threshold
    np.testing.assert_array_equal(a.is_dynamic[~near], b.is_dynamic[~near], err_msg="is_dynamic")
    np.testing.assert_allclose(a.movement_threshold, b.movement_threshold, rtol=1e-2)
  print("SHARDED_RECONSTRUCT_OK", windows, seen8, seen1)


if __name__ == "__main__":
  sys.exit(main())
