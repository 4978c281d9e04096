r"""Forward time of the model variants, and how memory grows with the number of tracks.

  python -m experiments.bench_model --variants=small,peer --frames=50 --tracks=900
  python -m experiments.bench_model --variants=small --memory_variant= --override=uncorrected_starts=True

For each variant: parameters, compile time and mean forward time (batch
`--batch`, default 1, float32 unless `--override=dtype=bfloat16`, chunked attention)
on random tracks. Then XLA's compiled temporary
memory of one forward of `--memory_variant` for N in `--memory_tracks`, with
chunked and with full attention (compiled only, not run), showing that chunked
attention grows about linearly with N while full attention grows with N^2.
"""

from __future__ import annotations

import time

from absl import app, flags
import jax
import jax.numpy as jnp
import numpy as np

from tracks4d import model as model_lib


def random_inputs(t: int, n: int, seed: int = 0, b: int = 1):
  """Random tracks (b, t, n, 2), 90% visible, no padding."""
  rng = np.random.default_rng(seed)
  xy = jnp.asarray(rng.uniform(-1, 1, size=(b, t, n, 2)), jnp.float32)
  vis = jnp.asarray(rng.uniform(size=(b, t, n)) < 0.9)
  return xy, vis, jnp.ones((b, t), bool), jnp.ones((b, n), bool)


def forward_fn(net):
  from flax import nnx

  graphdef, params = nnx.split(net, nnx.Param)

  @jax.jit
  def fwd(params, xy, vis, fm, tm):
    return model_lib.decode(nnx.merge(graphdef, params)(xy, vis, fm, tm)).xyz_world

  return fwd, params


def time_forward(variant: str, t: int, n: int, repeats: int, overrides: dict | None = None, b: int = 1) -> dict:
  """Parameters, compile seconds and mean seconds of one forward of a batch of `b` clips."""
  net = model_lib.create_model(variant, **(overrides or {}))
  fwd, params = forward_fn(net)
  inputs = random_inputs(t, n, b=b)
  t0 = time.perf_counter()
  jax.block_until_ready(fwd(params, *inputs))
  compile_s = time.perf_counter() - t0
  t0 = time.perf_counter()
  for _ in range(repeats):
    jax.block_until_ready(fwd(params, *inputs))
  return {"params": model_lib.num_parameters(net), "compile_s": compile_s,
          "forward_s": (time.perf_counter() - t0) / repeats}


def temp_memory_bytes(variant: str, attention: str, t: int, n: int) -> int | None:
  """XLA's temporary memory of one compiled forward; None where the compiler
  itself runs out of device memory (e.g. full attention at large n on a GPU,
  whose autotuner allocates the whole score tensor)."""
  net = model_lib.create_model(variant, attention=attention)
  fwd, params = forward_fn(net)
  try:
    compiled = fwd.lower(params, *random_inputs(t, n)).compile()
  except jax.errors.JaxRuntimeError as e:
    if "RESOURCE_EXHAUSTED" not in str(e):
      raise
    return None
  return int(compiled.memory_analysis().temp_size_in_bytes)


def _gib(nbytes: int | None) -> str:
  return "out of memory at compile time" if nbytes is None else f"{nbytes / 2**30:.2f} GiB"


def main(argv):
  del argv
  t, n = _FRAMES.value, _TRACKS.value
  try:
    overrides = model_lib.parse_overrides(_OVERRIDE.value)
  except ValueError as e:
    raise app.UsageError(f"--override: {e}") from e
  print(f"device: {jax.devices()[0].device_kind} x{jax.device_count()}; overrides {overrides or 'none'}")
  for v in _VARIANTS.value:
    b = _BATCH.value
    r = time_forward(v, t, n, _REPEATS.value, overrides, b)
    print(f"{v:>6}: {r['params'] / 1e6:.2f} M params, b={b} t={t} n={n}: forward {r['forward_s']:.4f} s "
          f"({b / r['forward_s']:.3g} clips/s; compile {r['compile_s']:.1f} s)", flush=True)
  if _MEM_VARIANT.value:
    for nn in (int(x) for x in _MEM_TRACKS.value):
      c = temp_memory_bytes(_MEM_VARIANT.value, "chunked", t, nn)
      f = temp_memory_bytes(_MEM_VARIANT.value, "full", t, nn)
      print(f"{_MEM_VARIANT.value} t={t} n={nn}: temp memory chunked {_gib(c)}, full {_gib(f)}", flush=True)


if __name__ == "__main__":
  # Flags exist only when run as a script, so this module's functions can be
  # imported beside other mains (absl flags are process-global).
  _VARIANTS = flags.DEFINE_list("variants", ["small", "peer"], "Variants to time.")
  _FRAMES = flags.DEFINE_integer("frames", 50, "Frames t.")
  _TRACKS = flags.DEFINE_integer("tracks", 900, "Tracks n.")
  _REPEATS = flags.DEFINE_integer("repeats", 3, "Timed forward passes.")
  _BATCH = flags.DEFINE_integer("batch", 1, "Clips per forward pass (timing only).", lower_bound=1)
  _MEM_VARIANT = flags.DEFINE_string("memory_variant", "peer", "Variant for the memory sweep ('' to skip).")
  _MEM_TRACKS = flags.DEFINE_list("memory_tracks", ["900", "1800", "3600"], "N values of the memory sweep.")
  _OVERRIDE = flags.DEFINE_multi_string("override", [], "Model setting 'key=value' for the timed variants "
                                        "(e.g. --override=camera_init=prior); repeatable.")
  app.run(main)
