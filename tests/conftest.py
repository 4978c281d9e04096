"""Test session set-up: one persistent XLA compilation cache for the session.

Most of the suite's time is XLA compilation, and many tests compile the same
programs again (the training command line in subprocesses, the reconstruct CLI,
the shipped model at the same window shapes). The cache lives in a fresh
temporary folder per session (set before jax is imported, and inherited by the
subprocesses the tests start), so runs stay independent of each other; cached
executables are the same programs, so results are unchanged.
"""

import os
import shutil
import tempfile

if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  _CACHE = tempfile.mkdtemp(prefix="tracks4d-test-xla-cache-")
  os.environ["JAX_COMPILATION_CACHE_DIR"] = _CACHE
  os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
else:
  _CACHE = None


def pytest_sessionfinish(session, exitstatus):  # pylint: disable=unused-argument
  if _CACHE is not None:
    shutil.rmtree(_CACHE, ignore_errors=True)
