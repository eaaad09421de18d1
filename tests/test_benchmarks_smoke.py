"""Smoke test of the benchmark scripts with tiny arguments (the benchmarks themselves are never run
by the test suite)."""

from __future__ import annotations

import importlib
import os
import subprocess
from pathlib import Path

import jax
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def bench(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(BENCH))
    common = importlib.import_module("_common")
    monkeypatch.setattr(common, "RESULTS", tmp_path)  # keep benchmarks/results/ untouched
    return lambda name: importlib.import_module(name)


def test_roofline_quick(bench):
    with jax.numpy_dtype_promotion("standard"):
        out = bench("bench_roofline").main(["--quick"])
    row = out["rows"][0]
    assert row["model_bytes"] > 0 and row["xla_bytes"] > 0 and row["measured_over_roofline"] > 0


def test_torch_quick(bench):
    pytest.importorskip("torch")
    mod = bench("bench_baseline_torch")
    run = mod.torch_run(5)
    assert run["steps"] == 5
    assert "main" in dir(mod)


def test_scripts_import(bench):
    for name in ("bench_convergence", "bench_throughput", "compare_commits", "bench_side_by_side",
                 "bench_gpu", "peer_torch_lbfgs"):
        assert callable(bench(name).main)


@pytest.mark.slow
def test_convergence_and_throughput_quick(bench):
    # ~1 min: run with `pytest -m slow`; the scripts' imports are checked above in every run.
    with jax.numpy_dtype_promotion("standard"):
        conv = bench("bench_convergence").main(["--quick", "--repeats", "1"])
        thr = bench("bench_throughput").main(["--quick"])
    assert conv["runs"] and thr


@pytest.mark.slow
def test_gpu_check_runs_on_the_cpu(tmp_path):
    # ~2 min: the accelerator script must run anywhere (nothing may require a GPU).
    env = {**os.environ, "UFM_BENCH_PLATFORM": "cpu", "UFM_BENCH_RESULTS": str(tmp_path)}
    env.pop("XLA_FLAGS", None)
    subprocess.run([str(BENCH / "gpu_check.sh"), "--quick"], env=env, check=True, timeout=600)
    assert (tmp_path / "gpu_quick.json").is_file() and (tmp_path / "side_by_side_quick.json").is_file()
