"""Test configuration: float64, strict promotion, two CPU devices (so the sharded path runs in CI)."""

import atexit
import os
import shutil
import tempfile

# Must happen before JAX initialises its backends.
# One OpenBLAS thread: the theory tests' scipy optimisers make many tiny BLAS calls, which OpenBLAS's
# worker threads slow down ~10x on a 2-core machine (and numpy is not imported yet at this point).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
# The persistent compilation cache (on by default) goes to a folder of this test session, not the user's.
# It is removed when the session ends, so test runs leave nothing behind in the temp folder.
os.environ["UFM_CACHE_DIR"] = _cache_dir = tempfile.mkdtemp(prefix="ufm-test-cache-")
atexit.register(shutil.rmtree, _cache_dir, ignore_errors=True)
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2"
).strip()

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_platforms", "cpu")


@pytest.fixture
def getkey():
    """A fresh PRNG key per call, deterministic per test."""
    keys = iter(jax.random.split(jax.random.key(5678), 1000))
    return lambda: next(keys)


@pytest.fixture
def count_traces(monkeypatch):
    """How many times the solve loop is traced (compiled) from here on: `count_traces()` returns the
    count. Wraps `minimise_batch` where `solve` looks it up; no hook lives in the package."""
    from ufm_jax.solve import _solve

    calls = []
    original = _solve.minimise_batch

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(_solve, "minimise_batch", counting)
    _solve._compiled.cache_clear()
    return lambda: len(calls)


@pytest.fixture(autouse=True)
def _float64_after_each_test():
    """`ufm solve --x32` run in-process (CliRunner) switches JAX to float32 for the whole process: every
    test starts in float64 again."""
    yield
    jax.config.update("jax_enable_x64", True)
