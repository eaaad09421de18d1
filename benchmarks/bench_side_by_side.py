"""Side by side, in one run: our default `ufm solve` against PyTorch's full-batch L-BFGS (strong Wolfe, the
strongest peer) and the gradient-descent baseline, on the peer's own problem.

Problem: MSE UFM, K = 10 classes of n = 100, d = 64, free bias, λ_W = λ_H = 5e-4, f* = 0.043875 (Liu 2024
Thm 4.3). Every configuration runs as its own process, as a user would run it:

- ours: `ufm solve --loss mse --classes 100x10 --dim 64 --lam-w 5e-4 --lam-h 5e-4 --free-bias --json`
  (defaults: float64, the exact reduction verified on all N = 1000 columns, LockstepLBFGS, one XLA CPU
  device per core, persistent compilation cache), first with an empty cache (cold), then repeated
  (warm); also `--seeds 32`, `--x32` and `--no-reduce`. Our time is `timing.solve_s`: everything after
  compilation (reduction, solve, expansion, the verification on the full problem).
- the peer: `peer_torch_lbfgs.py` in float32 and float64, with 1 thread and with torch's default threads;
  its time is set-up to stop (torch import excluded), stopping at f − f* <= 1e-6.
- the baseline: `bench_baseline_torch.py`'s full-batch gradient descent with momentum (float32).

Wall times are whole processes (Python start and imports included). Run:
`python benchmarks/bench_side_by_side.py [--repeats 5] [--quick]` → `results/side_by_side.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROBLEM = ["--loss", "mse", "--classes", "100x10", "--dim", "64", "--lam-w", "5e-4", "--lam-h", "5e-4",
           "--free-bias"]
F_STAR = 0.043875


def _process(cmd: list[str], env: dict) -> tuple[dict, float]:
    """Run `cmd`; its last stdout line as JSON, and the process's wall time."""
    t = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t
    return json.loads(done.stdout.strip().splitlines()[-1]), wall


def _ufm() -> list[str]:
    found = shutil.which("ufm")
    return [found] if found else [sys.executable, "-m", "ufm_jax.cli"]


def ours(extra: list[str], repeats: int, env: dict) -> dict:
    runs = [_process([*_ufm(), "solve", *PROBLEM, "--json", *extra], env) for _ in range(repeats)]
    out = [r for r, _ in runs]
    return {"command": "ufm solve " + " ".join(PROBLEM + ["--json"] + extra),
            "solve_s": statistics.median(r["timing"]["solve_s"] for r in out),
            "compile_s": statistics.median(r["timing"]["compile_s"] for r in out),
            "wall_s": statistics.median(w for _, w in runs), "solve_s_all": [r["timing"]["solve_s"] for r in out],
            "gap": out[0]["objective"] - F_STAR, "status": out[0]["status"],
            "certified": out[0]["certified"], "iterations": out[0]["iterations"]}


def peer(dtype: str, threads: int, repeats: int, env: dict, device: str = "cpu") -> dict:
    cmd = [sys.executable, str(HERE / "peer_torch_lbfgs.py"), "--dtype", dtype, "--threads", str(threads),
           "--device", device]
    runs = [_process(cmd, env) for _ in range(repeats)]
    out = [r for r, _ in runs]
    return {"command": " ".join(["python", "benchmarks/peer_torch_lbfgs.py", *cmd[2:]]),
            "dtype": dtype, "threads": out[0]["threads"],
            "solve_s": statistics.median(r["solve_s"] for r in out),
            "wall_s": statistics.median(w for _, w in runs), "solve_s_all": [r["solve_s"] for r in out],
            "outer_steps": out[0]["outer_steps"], "iterations": out[0]["iterations"],
            "gap": out[0]["gap"], "reached": all(r["reached"] for r in out)}


def baseline(max_steps: int, env: dict) -> dict:
    code = ("import sys, json; sys.path.insert(0, %r); import bench_baseline_torch as B; "
            "print(json.dumps(B.torch_run(%d)))" % (str(HERE), max_steps))
    out, wall = _process([sys.executable, "-c", code], {**env, "OMP_NUM_THREADS": "1"})
    return {"command": "bench_baseline_torch.torch_run (GD, momentum 0.9, lr 0.1, float32, 1 thread)",
            **out, "wall_s": wall}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="one repeat, a short GD baseline")
    ap.add_argument("--device", default="cpu", help="the peer's torch device (cpu, cuda); ours runs on "
                    "JAX's default backend")
    ap.add_argument("--no-baseline", action="store_true", help="skip the gradient-descent baseline")
    args = ap.parse_args(argv)
    repeats = 1 if args.quick else args.repeats
    cache = tempfile.mkdtemp(prefix="ufm-bench-cache-")
    env = {**os.environ, "UFM_CACHE_DIR": cache, "PYTHONUNBUFFERED": "1"}
    env.pop("XLA_FLAGS", None)  # the CLI's own default: one device per core
    rows: dict = {}
    try:
        rows["ours_cold"] = ours([], 1, env)  # empty cache: compiles
        rows["ours"] = ours([], repeats, env)  # warm: the cache holds the programs
        rows["ours_32_starts"] = ours(["--seeds", "32"], 1, env)  # compiles the 32-start program
        rows["ours_32_starts"] = ours(["--seeds", "32"], repeats, env)
        rows["ours_x32"] = ours(["--x32"], 1, env)
        rows["ours_x32"] = ours(["--x32"], repeats, env)
        rows["ours_no_reduce"] = ours(["--no-reduce"], 1, env)
        rows["ours_no_reduce"] = ours(["--no-reduce"], repeats, env)
        for dtype in ("float32", "float64"):
            for threads in (1, 0):
                rows[f"peer_{dtype}_{'1thread' if threads == 1 else 'default'}"] = peer(
                    dtype, threads, repeats, env, args.device)
        if not args.no_baseline:
            rows["baseline_gd"] = baseline(2000 if args.quick else 40000, env)
    finally:
        shutil.rmtree(cache, ignore_errors=True)

    best_peer64 = min((r for k, r in rows.items() if k.startswith("peer_float64")), key=lambda r: r["solve_s"])
    best_peer32 = min((r for k, r in rows.items() if k.startswith("peer_float32")), key=lambda r: r["solve_s"])
    summary = {
        "speedup_vs_peer_float64": best_peer64["solve_s"] / rows["ours"]["solve_s"],
        "speedup_x32_vs_peer_float32": best_peer32["solve_s"] / rows["ours_x32"]["solve_s"],
        "speedup_vs_gd": (rows["baseline_gd"]["time_s"] / rows["ours"]["solve_s"]
                          if "baseline_gd" in rows else None),
        "starts_32_over_1": rows["ours_32_starts"]["solve_s"] / rows["ours"]["solve_s"],
        "warm_wall_over_peer_wall": rows["ours"]["wall_s"] / best_peer64["wall_s"],
    }
    for key, row in rows.items():
        print(f"{key:28s} solve {row.get('solve_s', row.get('time_s')):.4f} s   wall {row['wall_s']:.2f} s",
              flush=True)
    print(json.dumps(summary, indent=1))
    sys.path.insert(0, str(HERE))
    import _common as C

    out = {"quick": args.quick, "repeats": repeats, "device": args.device, "rows": rows, "summary": summary}
    name = "side_by_side" if args.device == "cpu" else f"side_by_side_{args.device}"
    C.write(name + ("_quick" if args.quick else ""), out)
    return out


if __name__ == "__main__":
    main()
