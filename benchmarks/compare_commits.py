"""The same three measurements on another checkout of ufm_jax: how each design change paid.

Run: `git worktree add /tmp/ufm_old <commit> && python benchmarks/compare_commits.py /tmp/ufm_old`
(and once with the current tree: `python benchmarks/compare_commits.py .`) → prints one JSON line and
appends it to `benchmarks/results/commits.jsonl`. One XLA CPU device (the design changes, not the
second core); `LockstepLBFGS`, float64, solve time without compilation, the best of `--repeats` runs.

1. 256 weighted CE problems (K = 10, d = 16, λ spread ×[0.5, 2] around a minority-collapse boundary,
   so their iteration counts differ): all at once, and 16 at a time where the checkout can queue them;
2. one explicit CE problem (N = 3000): time per iteration.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkout", help="the root of a ufm_jax checkout (a git worktree)")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    root = Path(args.checkout).resolve()
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=1"
    sys.path.insert(0, str(root))
    import jax
    import numpy as np

    jax.config.update("jax_enable_x64", True)
    import ufm_jax as u

    assert Path(u.__file__).resolve().is_relative_to(root), u.__file__
    commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "-C", str(root), "status", "--porcelain", "ufm_jax"],
                                capture_output=True, text=True).stdout.strip())
    has_slots = "slots" in inspect.signature(u.solve).parameters
    sizes, solver = [500] * 5 + [100] * 5, u.LockstepLBFGS()

    def best(problem, **kw):
        sol = u.solve(problem, solver, key=0, **kw)
        times = [u.solve(problem, solver, key=0, **kw).timing["solve_s"] for _ in range(args.repeats)]
        return min(times), sol

    batch = u.stack_problems([u.ce(sizes, 16, per_class=1, lam_w=0.01 * s, lam_h=4e-4 * s, lam_b=0.01)
                              for s in np.geomspace(0.5, 2, 256)])
    out = {"commit": commit + ("+dirty" if dirty else ""), "load_1m": os.getloadavg()[0]}
    for name, kw in (("all_at_once", {"slots": 256} if has_slots else {}),
                     ("slots_16", {"slots": 16} if has_slots else None)):
        if kw is None:
            continue
        t, sol = best(batch, **kw)
        its = np.asarray(sol.iterations)
        out[f"weighted_256_{name}"] = {"solve_s": t, "problems_per_s": 256 / t, "iterations_sum": int(its.sum()),
                                       "iterations_max": int(its.max()),
                                       "us_per_problem_iteration": t / its.sum() * 1e6}
    t, sol = best(u.ce(sizes, 16, lam_w=0.01, lam_h=4e-4, lam_b=0.01))
    out["explicit_one"] = {"solve_s": t, "iterations": int(sol.iterations),
                           "ms_per_iteration": t / int(sol.iterations) * 1e3}
    line = json.dumps(out)
    print(line)
    results = Path(__file__).resolve().parent / "results"
    results.mkdir(exist_ok=True)
    with open(results / "commits.jsonl", "a") as f:
        f.write(line + "\n")
    return out


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"{time.perf_counter() - t0:.0f} s", file=sys.stderr)
