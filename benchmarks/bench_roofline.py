"""Roofline: flops and bytes of one LockstepLBFGS iteration (XLA's cost analysis) vs measured time.

Peak compute is measured with a large float64 matmul and peak bandwidth with a large array sum on this
machine; the roofline time of one iteration is max(flops / peak_flops, bytes / peak_bandwidth), and the
report gives measured / roofline. Run: `python benchmarks/bench_roofline.py [--quick]`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import ufm_jax as u  # noqa: E402
from ufm_jax import LockstepLBFGS  # noqa: E402
from ufm_jax.solve import objective_history  # noqa: E402
from ufm_jax.solve._minimise import flat_batch  # noqa: E402


def peaks(quick: bool) -> dict:
    n = 512 if quick else 2048
    a = jnp.ones((n, n))
    mm = jax.jit(lambda a: a @ a)
    t_mm, _ = C.median_time(lambda: mm(a).block_until_ready(), 3)
    big = jnp.ones(2**22 if quick else 2**25)
    sm = jax.jit(jnp.sum)
    t_bw, _ = C.median_time(lambda: sm(big).block_until_ready(), 5)
    return {"flops_per_s": 2 * n**3 / t_mm, "bytes_per_s": big.nbytes / t_bw}


def _cost(compiled) -> dict:
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return {"flops": float(cost.get("flops", 0.0)), "bytes": float(cost.get("bytes accessed", 0.0))}


def iteration(problem, batch: int, steps: int) -> dict:
    """XLA's flops and bytes for one `LockstepLBFGS.step_batch` on `batch` copies of `problem`, and the
    measured time per iteration (`objective_history`: `steps` iterations, no stopping test)."""
    solver = LockstepLBFGS()
    stack = lambda t: jax.tree.map(lambda a: jnp.stack([a] * batch), t)  # noqa: E731
    P, X = stack(problem), stack(u.init_params(problem, 0))
    active = jnp.ones(batch, bool)

    def setup(p, x):
        fn, project, x, _ = flat_batch(p, x)
        v, g = jax.vmap(jax.value_and_grad(fn))(x, p)
        return fn, project, (x, v, g, solver.init_batch(fn, p, x, v, g))

    def one_step(p, x, carry):
        fn, project, _ = setup(p, x)
        return solver.step_batch(fn, project, p, *carry, active)

    carry = jax.jit(lambda p, x: setup(p, x)[2])(P, X)
    cost = _cost(jax.jit(one_step).lower(P, X, carry).compile())
    f = jax.jit(lambda p, x: objective_history(p, x, solver, steps))
    f(P, X).block_until_ready()
    t, _ = C.median_time(lambda: f(P, X).block_until_ready(), 3)
    return {"batch": batch, **cost, "seconds": t / steps}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    q = args.quick
    pk = peaks(q)
    rows = []
    cases = [("ce-explicit", C.ce_problem(), 1), ("ce-weighted", C.ce_problem(weighted=True), 1),
             ("ce-weighted", C.ce_problem(weighted=True), 256)]
    for name, problem, batch in cases[1:2] if q else cases:
        r = iteration(problem, batch, 5 if q else 50)
        roof = max(r["flops"] / pk["flops_per_s"], r["bytes"] / pk["bytes_per_s"])
        rows.append({"problem": name, **r, "roofline_s": roof, "measured_over_roofline": r["seconds"] / roof,
                     "gflops_achieved": r["flops"] / r["seconds"] / 1e9})
        print(rows[-1])
    out = {"quick": q, "peaks": pk, "rows": rows}
    C.write("roofline" + ("_quick" if q else ""), out)
    return out


if __name__ == "__main__":
    main()
