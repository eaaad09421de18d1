"""Shared set-up of the benchmarks: float64, CPU, problem builders, timing and JSON output."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path

# The platform: the CPU unless UFM_BENCH_PLATFORM says otherwise (`gpu_check.sh` sets "cuda"). On the
# CPU, one XLA device per core, so a batch runs on every core (each device iterates its own share); set
# XLA_FLAGS yourself to override. Must happen before jax is imported.
PLATFORM = os.environ.get("UFM_BENCH_PLATFORM", "cpu")
if PLATFORM == "cpu":
    os.environ.setdefault("XLA_FLAGS", f"--xla_force_host_platform_device_count={os.cpu_count() or 1}")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_platforms", PLATFORM)

RESULTS = Path(os.environ.get("UFM_BENCH_RESULTS") or Path(__file__).resolve().parent / "results")

# The baseline problem family: CE, K = 10 (5 classes of 500, 5 of 100: N = 3000), d = 16.
CE_SIZES = [500] * 5 + [100] * 5
CE_LAMS = dict(lam_w=0.01, lam_h=4e-4, lam_b=0.01)
# The side-by-side problem: MSE with a free bias, K = 10, n = 100, d = 64, λ = 5e-4; f* = 0.043875.
MSE_SIZES, MSE_DIM, MSE_LAM, MSE_MIN = [100] * 10, 64, 5e-4, 0.043875


def ce_problem(*, weighted: bool = False, dim: int = 16, scale: float = 1.0, sizes=None):
    import ufm_jax as u

    lams = {k: v * scale for k, v in CE_LAMS.items()}
    return u.ce(sizes or CE_SIZES, dim, per_class=1 if weighted else None, **lams)


def mse_problem(*, weighted: bool = False):
    import ufm_jax as u

    return u.biased_mse(MSE_SIZES, MSE_DIM, lam_w=MSE_LAM, lam_h=MSE_LAM,
                        per_class=1 if weighted else None)


def median_time(fn, repeats: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), times


def environment() -> dict:
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "jax": jax.__version__, "python": platform.python_version(), "cpus": os.cpu_count(),
        "XLA_FLAGS": os.environ.get("XLA_FLAGS", ""), "devices": jax.device_count(),
        "device_kind": jax.devices()[0].device_kind,
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "loadavg_1m": None if load is None else load[0],
    }


def write(name: str, results: dict) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    results = {"environment": environment(), **results}
    path.write_text(json.dumps(results, indent=2, default=float))
    return path
