"""The accelerator rows: the 32 × 32 two-cluster CE grid (weighted; explicit through the default path;
explicit with every column optimised), each certified against Hong & Ling's closed form, and weighted
throughput (problems/s) against the batch size.

Meant for `gpu_check.sh` on one accelerator (`UFM_BENCH_PLATFORM=cuda`); runs anywhere (CPU: slowly).
Run: `python benchmarks/bench_gpu.py [--quick]` → `results/gpu.json` (`gpu_quick.json` with `--quick`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402
import bench_throughput as T  # noqa: E402


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args(argv)
    n = 4 if args.quick else 32
    reps = 1 if args.quick else args.repeats
    res: dict = {"quick": args.quick}
    res["grid_weighted"] = T.grid(n, weighted=True, repeats=reps)
    print("grid weighted", res["grid_weighted"], flush=True)
    res["grid_explicit_default_path"] = T.grid(n, weighted=False, repeats=reps)
    print("grid explicit (default path)", res["grid_explicit_default_path"], flush=True)
    res["grid_explicit_every_column"] = T.grid(n, weighted=False, repeats=0, reduce=False)
    print("grid explicit (every column)", res["grid_explicit_every_column"], flush=True)
    res["throughput"] = []
    for b in ([1, 16] if args.quick else [1, 32, 256, 1024, 4096]):
        r = T.timed_solve(T._batch(C.ce_problem(weighted=True), b), T.LockstepLBFGS(), repeats=reps)
        res["throughput"].append({"B": b, **r, "problems_per_s": b / r["solve_s"]})
        print(f"B = {b}: {b / r['solve_s']:.0f} problems/s", flush=True)
    C.write("gpu" + ("_quick" if args.quick else ""), res)
    return res


if __name__ == "__main__":
    main()
