"""Smoke test of the benchmark scripts with tiny arguments (the benchmarks themselves are never run
by the test suite)."""

from __future__ import annotations

import importlib
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
    assert out["rows"][0]["flops"] > 0


def test_torch_quick(bench):
    pytest.importorskip("torch")
    mod = bench("bench_baseline_torch")
    run = mod.torch_run(5)
    assert run["steps"] == 5
    assert "main" in dir(mod)


def test_scripts_import(bench):
    for name in ("bench_convergence", "bench_throughput", "compare_commits"):
        assert callable(bench(name).main)


@pytest.mark.slow
def test_convergence_and_throughput_quick(bench):
    # ~1 min: run with `pytest -m slow`; the scripts' imports are checked above in every run.
    with jax.numpy_dtype_promotion("standard"):
        conv = bench("bench_convergence").main(["--quick", "--repeats", "1"])
        thr = bench("bench_throughput").main(["--quick"])
    assert conv["runs"] and thr
