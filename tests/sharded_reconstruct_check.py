"""Run as a script with 8 simulated CPU devices (see test_reconstruct.py):
`reconstruct` with its network batches sharded over 8 devices (batch size 3,
rounded up to 8, the last batch filled up) must equal the single-device run."""

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
  """Reconstructions and the number of devices each network batch was on."""
  seen = []
  forward = model_lib.forward_jit

  def recording(n, batch):
    seen.append((batch.xy_px.shape[0], len(batch.xy_px.sharding.device_set)))
    return forward(n, batch)

  with mock.patch.object(model_lib, "forward_jit", recording):
    recs = reconstruct.reconstruct(clips, model=net, **OPTIONS)
  return recs, seen


def main():
  assert jax.device_count() == 8, jax.devices()
  clips = [synthetic.generate_clip(CFG, 5, i) for i in range(2)]
  net = pipeline.load_network(None)  # The shipped model (parameters on device 0).
  sharded, seen8 = _run(net, clips)
  # The single-device path of `_forward`, taken when jax reports one device.
  with mock.patch.object(jax, "device_count", lambda backend=None: 1):
    single, seen1 = _run(net, clips)
  windows = sum(len(r.window_starts) for r in single)
  assert windows % 8, f"want a filled-up last batch; got {windows} windows"
  assert seen8 == [(8, 8)] * -(-windows // 8), seen8
  assert seen1 == [(3, 1)] * -(-windows // 3), seen1
  for a, b in zip(sharded, single):
    np.testing.assert_array_equal(a.window_starts, b.window_starts)
    for f in ("c2w", "tracks_world", "tracks_cam"):
      np.testing.assert_allclose(getattr(a, f), getattr(b, f), rtol=1e-4, atol=1e-5, err_msg=f)
    # The static fit (triangulation) amplifies the float32 rounding differences
    # of the cameras (~1e-6 relative) to ~1e-4 relative in movement (pixels).
    np.testing.assert_allclose(a.movement, b.movement, rtol=1e-3, atol=1e-3)
  print("SHARDED_RECONSTRUCT_OK", windows, seen8, seen1)


if __name__ == "__main__":
  sys.exit(main())
