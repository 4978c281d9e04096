r"""Forward time of the model variants, and how memory grows with the number of tracks.

  python -m experiments.bench_model --variants=small,peer --frames=50 --tracks=900
  python -m experiments.bench_model --variants=small --memory_variant= --override=uncorrected_starts=True

For each variant: parameters, compile time and mean forward time (batch 1,
float32, chunked attention) on random tracks. Then XLA's compiled temporary
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


def random_inputs(t: int, n: int, seed: int = 0):
  rng = np.random.default_rng(seed)
  xy = jnp.asarray(rng.uniform(-1, 1, size=(1, t, n, 2)), jnp.float32)
  vis = jnp.asarray(rng.uniform(size=(1, t, n)) < 0.9)
  return xy, vis, jnp.ones((1, t), bool), jnp.ones((1, n), bool)


def forward_fn(net):
  from flax import nnx

  graphdef, params = nnx.split(net, nnx.Param)

  @jax.jit
  def fwd(params, xy, vis, fm, tm):
    return model_lib.decode(nnx.merge(graphdef, params)(xy, vis, fm, tm)).xyz_world

  return fwd, params


def time_forward(variant: str, t: int, n: int, repeats: int, overrides: dict | None = None) -> dict:
  net = model_lib.create_model(variant, **(overrides or {}))
  fwd, params = forward_fn(net)
  inputs = random_inputs(t, n)
  t0 = time.perf_counter()
  jax.block_until_ready(fwd(params, *inputs))
  compile_s = time.perf_counter() - t0
  t0 = time.perf_counter()
  for _ in range(repeats):
    jax.block_until_ready(fwd(params, *inputs))
  return {"params": model_lib.num_parameters(net), "compile_s": compile_s,
          "forward_s": (time.perf_counter() - t0) / repeats}


def temp_memory_bytes(variant: str, attention: str, t: int, n: int) -> int:
  net = model_lib.create_model(variant, attention=attention)
  fwd, params = forward_fn(net)
  compiled = fwd.lower(params, *random_inputs(t, n)).compile()
  return int(compiled.memory_analysis().temp_size_in_bytes)


def main(argv):
  del argv
  t, n = _FRAMES.value, _TRACKS.value
  try:
    overrides = model_lib.parse_overrides(_OVERRIDE.value)
  except ValueError as e:
    raise app.UsageError(f"--override: {e}") from e
  print(f"device: {jax.devices()[0].device_kind} x{jax.device_count()}; overrides {overrides or 'none'}")
  for v in _VARIANTS.value:
    r = time_forward(v, t, n, _REPEATS.value, overrides)
    print(f"{v:>6}: {r['params'] / 1e6:.2f} M params, t={t} n={n}: forward {r['forward_s']:.2f} s "
          f"(compile {r['compile_s']:.1f} s)", flush=True)
  if _MEM_VARIANT.value:
    for nn in (int(x) for x in _MEM_TRACKS.value):
      c = temp_memory_bytes(_MEM_VARIANT.value, "chunked", t, nn) / 2**30
      f = temp_memory_bytes(_MEM_VARIANT.value, "full", t, nn) / 2**30
      print(f"{_MEM_VARIANT.value} t={t} n={nn}: temp memory chunked {c:.2f} GiB, full {f:.2f} GiB", flush=True)


if __name__ == "__main__":
  # Flags exist only when run as a script, so this module's functions can be
  # imported beside other mains (absl flags are process-global).
  _VARIANTS = flags.DEFINE_list("variants", ["small", "peer"], "Variants to time.")
  _FRAMES = flags.DEFINE_integer("frames", 50, "Frames t.")
  _TRACKS = flags.DEFINE_integer("tracks", 900, "Tracks n.")
  _REPEATS = flags.DEFINE_integer("repeats", 3, "Timed forward passes.")
  _MEM_VARIANT = flags.DEFINE_string("memory_variant", "peer", "Variant for the memory sweep ('' to skip).")
  _MEM_TRACKS = flags.DEFINE_list("memory_tracks", ["900", "1800", "3600"], "N values of the memory sweep.")
  _OVERRIDE = flags.DEFINE_multi_string("override", [], "Model setting 'key=value' for the timed variants "
                                        "(e.g. --override=camera_init=prior); repeatable.")
  app.run(main)
