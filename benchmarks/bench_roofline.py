"""Roofline of one LockstepLBFGS iteration from first principles: the bytes it must move, against the time
it takes.

An iteration on a batch of `B` problems with `n` parameters each, memory `M` pairs, in float64 (8 bytes):

- the L-BFGS memory: the direction reads `S` and `Y` once (`S p₁ + γ Y p₂`), the update reads them again
  (`Sᵀ∇f`, `Yᵀ∇f`) and writes one new row of each: `(4M + 2) n` numbers;
- the iterate: read `x`, `∇f`, write the direction `d`, read `x`, `d` and write the trial point, write
  `s`, `y`: about `8 n` numbers;
- the function evaluation (value and gradient at the trial point): read the point, write the gradient,
  and write then read the logits `(K, m, K)` of every column: `2 n + 2 K m K` numbers.

So `bytes = 8 B [(4M + 12) n + 2 K² m]`, the least any implementation of the same algorithm moves; the
compute (a few flops per byte) is far below the machine's flop rate, so the roofline time is
`bytes / bandwidth`, with the bandwidth measured here (a large array sum) at the working-set size
(the L-BFGS memory of the batch: `2 B M n` numbers). XLA's own estimate ("bytes accessed" of the compiled
iteration) is reported beside it for comparison. Measured time: `objective_history` (`steps`
iterations, no stopping test), per iteration.

Run: `python benchmarks/bench_roofline.py [--quick]` → `results/roofline.json`.
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


def bandwidth(nbytes: int) -> float:
    """Bytes per second of reading an array of `nbytes` (at least 256 KiB, at most 2 GiB): sums repeated
    inside one compiled loop, so that dispatch does not count (`a + i` keeps each sum in the loop)."""
    size = min(max(nbytes, 2**18), 2**31) // 8
    reps = max(4, 2**28 // (size * 8))
    big = jnp.ones(size)
    total = jax.jit(lambda a: jax.lax.fori_loop(0, reps, lambda i, acc: acc + jnp.sum(a + i), 0.0))
    total(big).block_until_ready()
    t, _ = C.median_time(lambda: total(big).block_until_ready(), 5)
    return big.nbytes * reps / t


def model_bytes(problem, batch: int, n: int, memory: int) -> float:
    """The first-principles bytes of one iteration (module docstring)."""
    K, m = problem.num_classes, problem.columns_per_class
    return 8.0 * batch * ((4 * memory + 12) * n + 2 * K * K * m)


def xla_bytes(problem, batch: int, solver) -> float:
    stack = lambda t: jax.tree.map(lambda a: jnp.stack([a] * batch), t)  # noqa: E731
    P, X = stack(problem), stack(u.init_params(problem, 0))
    active = jnp.ones(batch, bool)

    def one_step(p, x):
        fn, project, x, _ = flat_batch(p, x)
        v, g = jax.vmap(jax.value_and_grad(fn))(x, p)
        state = solver.init_batch(fn, p, x, v, g)
        return solver.step_batch(fn, project, p, x, v, g, state, active)

    def setup_only(p, x):
        fn, project, x, _ = flat_batch(p, x)
        v, g = jax.vmap(jax.value_and_grad(fn))(x, p)
        return x, v, g, solver.init_batch(fn, p, x, v, g)

    cost = lambda f: jax.jit(f).lower(P, X).compile().cost_analysis()  # noqa: E731
    step, setup = cost(one_step), cost(setup_only)
    step = step[0] if isinstance(step, list) else step
    setup = setup[0] if isinstance(setup, list) else setup
    return float(step.get("bytes accessed", 0.0)) - float(setup.get("bytes accessed", 0.0))


def iteration(name: str, problem, batch: int, steps: int) -> dict:
    solver = LockstepLBFGS()
    stack = lambda t: jax.tree.map(lambda a: jnp.stack([a] * batch), t)  # noqa: E731
    P, X = stack(problem), stack(u.init_params(problem, 0))
    n = flat_batch(P, X)[2].shape[1]
    f = jax.jit(lambda p, x: objective_history(p, x, solver, steps))
    f(P, X).block_until_ready()
    t, _ = C.median_time(lambda: f(P, X).block_until_ready(), 3)
    seconds = t / steps
    nbytes = model_bytes(problem, batch, n, solver.memory_size)
    bw = bandwidth(int(2 * batch * solver.memory_size * n * 8))
    roof = nbytes / bw
    row = {"problem": name, "batch": batch, "params": n, "seconds": seconds, "model_bytes": nbytes,
           "bandwidth_bytes_per_s": bw, "roofline_s": roof, "measured_over_roofline": seconds / roof,
           "xla_bytes": xla_bytes(problem, batch, solver)}
    print(f"{name:28s} B={batch:4d} n={n:6d}  {seconds * 1e6:9.1f} us/iter   model {nbytes / 1e6:8.3f} MB "
          f"at {bw / 1e9:5.1f} GB/s = {roof * 1e6:8.1f} us   measured/roofline {seconds / roof:5.2f}   "
          f"XLA bytes {row['xla_bytes'] / 1e6:8.3f} MB", flush=True)
    return row


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    steps = 5 if args.quick else 50
    cases = [
        ("side-by-side explicit", C.mse_problem(), 1),
        ("side-by-side reduced", C.mse_problem(weighted=True), 1),
        ("side-by-side reduced", C.mse_problem(weighted=True), 32),
        ("ce explicit", C.ce_problem(), 1),
        ("ce weighted", C.ce_problem(weighted=True), 256),
    ]
    rows = [iteration(name, problem, batch, steps) for name, problem, batch in (cases[1:3] if args.quick else cases)]
    out = {"quick": args.quick, "rows": rows}
    C.write("roofline" + ("_quick" if args.quick else ""), out)
    return out


if __name__ == "__main__":
    main()
