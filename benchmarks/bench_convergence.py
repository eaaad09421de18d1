"""Convergence: iterations and wall time to a gap <= 1e-8 (float64) against a known optimum.

Run: `python benchmarks/bench_convergence.py [--quick]` → `results/convergence.json` and `.png`.

Problems: the issue's CE problem (K = 10, 5×500 + 5×100, d = 16, λ_W = λ_b = 0.01, λ_H = 4e-4; optimum from
Hong & Ling's two-cluster closed form) and the MSE free-bias problem (K = 10, n = 100, d = 64, λ = 5e-4;
f* = 0.043875, Liu 2024 Thm 4.3). The gap history is recorded by a jitted `scan` of the solver's `step`;
the time axis is iterations × (median time per iteration of the compiled `solve`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import ufm_jax as u  # noqa: E402
from ufm_jax import LockstepLBFGS  # noqa: E402
from ufm_jax.solve import objective_history  # noqa: E402
from ufm_jax.theory._hong_ling import ce_two_cluster_solution  # noqa: E402

SOLVERS = {
    "LBFGS (optax zoom)": u.LBFGS(),
    "Lockstep T=2": LockstepLBFGS(num_trials=2),
    "Lockstep T=4": LockstepLBFGS(num_trials=4),
    "Lockstep T=6 ρ=0.5": LockstepLBFGS(num_trials=6, shrink=0.5),
}


def history(problem, solver, steps: int) -> np.ndarray:
    """Objective after each of `steps` iterations from the seed-0 start (balanced coordinates)."""
    batch = jax.tree.map(lambda a: jnp.asarray(a)[None], (problem, u.init_params(problem, 0)))
    run = jax.jit(lambda p, x: objective_history(p, x, solver, steps)[:, 0])
    return np.asarray(run(*batch))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--all", action="store_true", help="also the explicit CE problem and the T=6 variant")
    args = ap.parse_args(argv)
    q = args.quick
    problems = {
        "ce-weighted": (C.ce_problem(weighted=True),
                        ce_two_cluster_solution(C.CE_SIZES, 16, 0.01, 4e-4, 0.01).objective),
        "mse-free-bias-weighted": (C.mse_problem(weighted=True), C.MSE_MIN),
    }
    if args.all:
        problems["ce-explicit"] = (C.ce_problem(), problems["ce-weighted"][1])
    solvers = {k: v for i, (k, v) in enumerate(SOLVERS.items()) if args.all or i in ((0, 2) if q else (0, 1, 2))}
    out: dict = {"quick": q, "tolerance": 1e-8, "runs": []}
    for pname, (problem, fstar) in problems.items():
        for sname, solver in solvers.items():
            steps = 40 if q else 400
            gaps = np.abs(history(problem, solver, steps) - fstar) / abs(fstar)
            reps = 1 if q else args.repeats
            sols = [u.solve(problem, solver, key=0, shard=False, reduce=False) for _ in range(reps + 1)]
            per_iter = float(np.median([s.timing["solve_s"] for s in sols[1:]])) / max(int(sols[0].iterations), 1)
            hit = np.nonzero(gaps <= 1e-8)[0]
            its = int(hit[0]) + 1 if hit.size else None
            out["runs"].append({
                "problem": pname, "solver": sname, "iterations_to_1e-8": its,
                "time_to_1e-8_s": None if its is None else its * per_iter, "per_iteration_s": per_iter,
                "compile_s": sols[0].timing["compile_s"], "solve_s_to_gtol": sols[1].timing["solve_s"],
                "iterations_to_gtol": int(sols[0].iterations), "status": u.Status(int(sols[0].status)).name,
                "final_rel_gap": float(abs(float(sols[0].objective) - fstar) / abs(fstar)),
                "gap_history": gaps.tolist(),
            })
            print(pname, sname, its, per_iter, sols[0].timing)
    path = C.write("convergence" + ("_quick" if q else ""), out)
    _plot(out["runs"], path.with_suffix(".png"))
    return out


def _plot(runs, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted({r["problem"] for r in runs})
    fig, axes = plt.subplots(2, len(names), figsize=(3.3 * len(names), 5), dpi=70, squeeze=False)
    for j, name in enumerate(names):
        for r in (r for r in runs if r["problem"] == name):
            g = np.maximum(np.asarray(r["gap_history"]), 1e-17)
            it = np.arange(1, g.size + 1)
            axes[0, j].semilogy(it, g, label=r["solver"])
            axes[1, j].semilogy(it * r["per_iteration_s"], g)
        axes[0, j].set_title(name, fontsize=9)
        axes[0, j].set_xlabel("iteration")
        axes[1, j].set_xlabel("time (s)")
        for ax in axes[:, j]:
            ax.axhline(1e-8, color="k", lw=0.5)
    axes[0, 0].set_ylabel("relative gap")
    axes[1, 0].set_ylabel("relative gap")
    axes[0, 0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    main()
