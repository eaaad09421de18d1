"""Throughput: problems/s vs batch size, N, d, explicit vs weighted; the issue's targets; compile separately.

Run: `python benchmarks/bench_throughput.py [--quick]` → `benchmarks/results/throughput.json`.

Targets measured (issue 5): (1) speed-up over the baseline (optax zoom L-BFGS, naive vmap over 32 explicit
CE problems, 400 steps); (2) 32 starts in one batch vs one start; (3) a 32×32 grid (λ_Z × imbalance
ratio) of two-cluster CE problems solved and certified against Hong & Ling's closed form; (4) weighted-mode
problems/s. Solve times exclude compilation; each is the median of `--repeats` runs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402

import ufm_jax as u  # noqa: E402
from ufm_jax import LockstepLBFGS  # noqa: E402
from ufm_jax.theory._hong_ling import ce_two_cluster_solution  # noqa: E402


def _batch(problem, b: int, spread: float = 0.5):
    """`b` copies of `problem` with λ's spread log-uniformly over ×[1/(1+spread), 1+spread]."""
    scales = np.geomspace(1 / (1 + spread), 1 + spread, b) if b > 1 else [1.0]
    return u.stack_problems([jax.tree.map(lambda x: x, problem) if s == 1.0 else
                             _scaled(problem, s) for s in scales])


def _scaled(problem, s):
    return u.Problem(problem.class_sizes, problem.column_weights, problem.lam_w * s, problem.lam_h * s,
                     problem.lam_b * s, problem.loss, problem.bias, problem.nonneg, problem.dim,
                     problem.widths, problem.weighted)


def timed_solve(problem, solver, *, seeds: int = 1, repeats: int = 3, slots: int | None = None,
                solution: list | None = None, reduce: bool = True) -> dict:
    """Median solve time (compile excluded) of `repeats` runs after a compiling one; `repeats=0` times
    the compiling run itself (its `solve_s` excludes the compile too). The first solution is appended
    to `solution` if given. `reduce=False` optimises every sample column of an explicit problem (the
    default path solves its exact reduction and verifies on the full problem)."""
    kw = dict(seeds=seeds, slots=slots, reduce=reduce)
    sol = first = u.solve(problem, solver, key=0, **kw)
    times = [u.solve(problem, solver, key=r + 1, **kw).timing["solve_s"]
             for r in range(repeats)] or [first.timing["solve_s"]]
    if solution is not None:
        solution.append(sol)
    return {"compile_s": first.timing["compile_s"], "solve_s": statistics.median(times), "solve_all": times,
            "iterations_max": int(np.max(sol.iterations)), "iterations_mean": float(np.mean(sol.iterations)),
            "converged": float(np.mean(np.asarray(sol.status) == 0))}


def baseline(b: int, steps: int, measured_steps: int, repeats: int) -> dict:
    """optax zoom L-BFGS vmapped over `b` explicit problems: time per iteration × `steps`."""
    solver = u.LBFGS(max_steps=measured_steps, gtol=1e-300)  # never stops on the gradient
    r = timed_solve(_batch(C.ce_problem(), b), solver, repeats=repeats, reduce=False)  # every column
    per_iter = r["solve_s"] / measured_steps
    return {**r, "per_iteration_s": per_iter, "estimated_total_s": per_iter * steps, "steps": steps}


def grid(n: int, *, weighted: bool, repeats: int = 1, slots: int | None = None, reduce: bool = True) -> dict:
    """An `n × n` grid of two-cluster CE problems: λ_Z = √(λ_Wλ_H) × imbalance ratio n_A/n_B (N ≈ 3000);
    `slots`: problems iterated at a time per device (default `ufm_jax.DEFAULT_SLOTS`); explicit problems
    through the default path (`reduce=True`) or every column optimised (`reduce=False`)."""
    lam_z = np.geomspace(1e-4, 3e-2, n)
    ratios = np.geomspace(1.5, 20, n)
    sizes = []
    for ratio in ratios:
        n_b = max(2, int(round(3000 / (5 * ratio + 5))))
        sizes.append([int(round(ratio * n_b))] * 5 + [n_b] * 5)
    columns = None if weighted else max(max(s) for s in sizes)  # explicit: one padded width for all
    problems, theory = [], []
    for lz in lam_z:
        for s in sizes:
            problems.append(u.ce(s, 16, per_class=1 if weighted else None, columns=columns,
                                 lam_w=lz, lam_h=lz, lam_b=0.01))
            theory.append(ce_two_cluster_solution(s, 16, lz, lz, 0.01).objective)
    batch = u.stack_problems(problems)
    solver = LockstepLBFGS()
    solutions: list = []
    r = timed_solve(batch, solver, repeats=repeats, slots=slots, solution=solutions, reduce=reduce)
    t = time.perf_counter()
    sol = solutions[0]
    gap = np.abs(np.asarray(sol.objective) - np.asarray(theory)) / np.abs(np.asarray(theory))
    certified = (np.asarray(sol.status) == 0) & (gap <= 1e-8)
    return {**r, "problems": n * n, "certified": int(certified.sum()), "max_rel_gap": float(gap.max()),
            "check_s": time.perf_counter() - t}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--explicit-batch", type=int, default=32,
                    help="batch size of our explicit solve in target 1 (the baseline is always 32)")
    ap.add_argument("--explicit-starts", action="store_true", help="also 32 starts of the explicit problem")
    ap.add_argument("--out", default="throughput")
    ap.add_argument("--explicit-grid", action="store_true",
                    help="only the 32×32 grid in explicit mode, one run (≈ 5 min here) → grid_explicit.json")
    args = ap.parse_args(argv)
    q = args.quick
    reps = 1 if q else args.repeats
    res: dict = {"quick": q}
    lock = LockstepLBFGS()
    if args.explicit_grid:
        res["grid_explicit_default_path"] = grid(4 if q else 32, weighted=False, repeats=reps)
        print(res["grid_explicit_default_path"])
        res["grid_explicit"] = grid(4 if q else 32, weighted=False, repeats=0, reduce=False)
        print(res["grid_explicit"])
        C.write("grid_explicit" + ("_quick" if q else ""), res)
        return res

    # Target 1: baseline vs ours on the baseline's problem (32 CE problems, N = 3000, d = 16).
    nb = 2 if q else 32
    res["baseline"] = baseline(nb, 400, 2 if q else 5, reps)
    ne = 2 if q else args.explicit_batch
    res["ours_explicit"] = timed_solve(_batch(C.ce_problem(), ne), lock, repeats=reps, reduce=False)
    res["ours_explicit"]["batch"] = ne
    # Per problem, scaled to the baseline's 32 (exact when ne = 32).
    res["ours_explicit"]["solve_s_for_32"] = res["ours_explicit"]["solve_s"] * nb / ne
    res["ours_weighted"] = timed_solve(_batch(C.ce_problem(weighted=True), nb), lock, repeats=reps)
    res["ours_explicit"]["speedup_vs_baseline"] = (res["baseline"]["estimated_total_s"]
                                                   / res["ours_explicit"]["solve_s_for_32"])
    res["ours_weighted"]["speedup_vs_baseline"] = (res["baseline"]["estimated_total_s"]
                                                   / res["ours_weighted"]["solve_s"])

    # Target 2: 32 starts of one problem in one batch vs one start: the side-by-side MSE problem (the
    # target's), and the CE problem above.
    starts = 4 if q else 32
    cases = {"mse_weighted": C.mse_problem(weighted=True), "mse_explicit": C.mse_problem(),
             "ce_weighted": C.ce_problem(weighted=True), "ce_explicit": C.ce_problem()}
    for name, p in cases.items():
        if name == "ce_explicit" and (q or not args.explicit_starts):
            continue
        r = reps if "explicit" in name else 4 * reps + 1  # weighted solves take milliseconds: more runs
        one = timed_solve(p, lock, seeds=1, repeats=r, reduce=False)
        many = timed_solve(p, lock, seeds=starts, repeats=r, reduce=False)
        res[f"starts_{name}"] = {"one": one, "many": many, "starts": starts,
                                 "ratio": many["solve_s"] / one["solve_s"]}

    # Target 3: the λ_Z × ratio grid; all problems at once vs the default queue.
    g = 4 if q else 32
    res["grid_weighted"] = grid(g, weighted=True, repeats=reps + 1)
    res["grid_weighted_all_at_once"] = grid(g, weighted=True, slots=g * g)

    # Slots per device, on 256 weighted problems.
    res["slots_scan"] = []
    for k in ([4, 16] if q else [4, 8, 16, 32, 64, 256]):
        r = timed_solve(_batch(C.ce_problem(weighted=True), 16 if q else 256), lock, repeats=reps, slots=k)
        res["slots_scan"].append({"slots": k, **r, "problems_per_s": (16 if q else 256) / r["solve_s"]})

    # Target 4 and the scans: problems/s vs batch size, d, N, mode.
    scans = []
    batches_w = [1, 16] if q else [1, 32, 256, 1024]
    for b in batches_w:
        r = timed_solve(_batch(C.ce_problem(weighted=True), b), lock, repeats=reps)
        scans.append({"mode": "weighted", "B": b, "d": 16, "N": 3000, **r, "problems_per_s": b / r["solve_s"]})
    for d in ([] if q else [64]):
        r = timed_solve(_batch(C.ce_problem(weighted=True, dim=d), 256), lock, repeats=reps)
        scans.append({"mode": "weighted", "B": 256, "d": d, "N": 3000, **r, "problems_per_s": 256 / r["solve_s"]})
    for b in ([2] if q else [1, 8]):
        r = timed_solve(_batch(C.ce_problem(), b), lock, repeats=reps, reduce=False)
        scans.append({"mode": "explicit", "B": b, "d": 16, "N": 3000, **r, "problems_per_s": b / r["solve_s"]})
    for f in ([] if q else [0.25]):
        sizes = [int(n * f) for n in C.CE_SIZES]
        r = timed_solve(_batch(C.ce_problem(sizes=sizes), 8), lock, repeats=reps, reduce=False)
        scans.append({"mode": "explicit", "B": 8, "d": 16, "N": sum(sizes), **r, "problems_per_s": 8 / r["solve_s"]})
    res["scans"] = scans
    path = C.write(args.out + ("_quick" if q else ""), res)
    _plot(scans, path.with_suffix(".png"))
    print(path)
    return res


def _plot(scans, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 3.2), dpi=80)
    for mode in ("weighted", "explicit"):
        rows = [s for s in scans if s["mode"] == mode and s["d"] == 16 and s["N"] == 3000]
        ax.loglog([s["B"] for s in rows], [s["problems_per_s"] for s in rows], "o-", label=mode)
    ax.set_xlabel("batch size B")
    ax.set_ylabel("problems / s (solve, excl. compile)")
    ax.set_title("CE K=10 d=16 N=3000, LockstepLBFGS", fontsize=9)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    main()
