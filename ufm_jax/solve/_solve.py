"""`solve`: one problem or a batch, several random starts each, in one compiled and sharded program."""

from __future__ import annotations

import functools
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from jaxtyping import Array, Float, Int, PRNGKeyArray

from .. import _validation as V
from .._cache import ensure_compilation_cache
from .._params import Params, expand_params, init_params, reduce_params
from .._problem import Problem, batch_size, reduce_problem
from ._minimise import (TRAJECTORY_FIELDS, SingleResult, default_gtol, evaluate_batch, history_records,
                        minimise_batch)
from ._registry import check_solver, default_solver
from ._results import Status
from ._solvers import AbstractSolver
from ._trajectory import Trajectory, pick_trajectories


class Solution(eqx.Module):
    """The result of `solve`: the best of `seeds` random starts for each problem.

    Array fields have a leading batch axis `(B, ...)` when the problem was batched, none otherwise.

    **Fields:**

    - `params`: the best start's parameters (original coordinates).
    - `objective`: its objective value.
    - `grad_norm`: its (projected) gradient norm in the solver's coordinates (`solver.coordinates`:
      balanced by default; see `minimise_batch`).
    - `iterations`: its iteration count.
    - `status`: its integer status code (`ufm_jax.Status`: converged, max_steps, nonfinite, diverged,
      stalled).
    - `seed_objectives`, `seed_status`: every start's objective and status, shape `(..., seeds)`.
    - `objective_spread`: max − min objective over the starts that ended finite (0 for one start). A large
      spread flags traps (the deep-linear origin, dead ReLU classes): see the theory check.
    - `problem`: the problem solved.
    - `timing`: `{"compile_s": ..., "solve_s": ...}` (compile excluded from solve_s), a static field.
    - `history`: the returned start's `Trajectory` with `solve(..., history=k)`, else `None`.
    """

    params: Params
    objective: Float[Array, "*B"]
    grad_norm: Float[Array, "*B"]
    iterations: Int[Array, "*B"]
    status: Int[Array, "*B"]
    seed_objectives: Float[Array, "*B S"]
    seed_status: Int[Array, "*B S"]
    objective_spread: Float[Array, "*B"]
    problem: Problem
    timing: dict = eqx.field(static=True, default_factory=dict)
    history: Trajectory | None = None

    @property
    def converged(self) -> Array:
        return self.status == Status.converged

    def __repr__(self) -> str:
        status = Status.names(np.asarray(self.status))
        timing = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in self.timing.items())
        if np.ndim(self.objective) == 0:
            return (f"Solution(objective={float(self.objective):.12g}, grad_norm={float(self.grad_norm):.3g}, "
                    f"iterations={int(self.iterations)}, status={status}, "
                    f"starts={np.shape(self.seed_objectives)[-1]}, "
                    f"objective_spread={float(self.objective_spread):.3g}, timing({timing}))")
        names, counts = np.unique(status, return_counts=True)
        objective = np.asarray(self.objective)
        return (f"Solution(batch of {objective.size}: objective in [{np.nanmin(objective):.6g}, "
                f"{np.nanmax(objective):.6g}], max grad_norm={np.nanmax(self.grad_norm):.3g}, status "
                f"{dict(zip(names.tolist(), counts.tolist()))}, starts={np.shape(self.seed_objectives)[-1]}, "
                f"timing({timing}))")

    def __getitem__(self, index) -> Solution:
        """The solution of problem `index` of a batch."""
        dynamic, static = eqx.partition(self, eqx.is_array)
        return eqx.combine(jax.tree.map(lambda x: x[index], dynamic), static)


# The most memory the recorded trajectories of one solve may take.
MAX_HISTORY_BYTES = 2 * 2**30

# Problems iterated at a time per device. 256 weighted CE problems (K = 10, d = 16) on 2 CPU cores, one
# device each, three runs (`benchmarks/bench_throughput.py`, slots_scan): 4 slots 717–1347 problems/s,
# 8: 1027–1300, 16: 956–1266, 32: 1018–1332, 64: 874–1028, all 256 at once: 647–921.
DEFAULT_SLOTS = 32


def _sharding():
    """Shard the leading axis over every device (of every host, under `jax.distributed`)."""
    devices = jax.devices()
    mesh = Mesh(np.asarray(devices), ("batch",))
    return NamedSharding(mesh, PartitionSpec("batch")), len(devices)


def _put(x: np.ndarray, sharding):
    """Place a host array, sharded; every host holds the whole batch (multi-host: each process builds
    the same batch deterministically, and takes its own shards)."""
    return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])


def _gather(x) -> np.ndarray:
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)


def key_words(key, num: int, batched: bool) -> list[np.ndarray]:
    """The seed words of each of `num` problems' random starts: `key[i]` for an array of keys (one per
    problem: a sweep's points keep their starts whatever the batch they land in), `(key, i)` for a single
    key of a batch, `key` for a single problem. A key is a JAX PRNG key or an int in `[0, 2^63)`."""
    if jnp.issubdtype(getattr(key, "dtype", np.int64), jax.dtypes.prng_key):
        words = np.asarray(jax.random.key_data(key))
        per_problem = words.ndim == 2
    else:  # an int seed, or an integer array of seeds (one per problem)
        for k in np.ravel(np.asarray(key, dtype=object)):
            V.integer("key", k, 0, 2**63 - 1)
        words = np.asarray(key, dtype=np.int64)
        per_problem = words.ndim == 1
        words = words[:, None] if per_problem else words.reshape(1)
    if per_problem and words.shape[0] != num:
        raise ValueError(f"key has {words.shape[0]} keys, but the batch has {num} problems: expected one "
                         "key, or one per problem.")
    if per_problem:
        return [words[i] for i in range(num)]
    return [np.append(words.ravel(), i) for i in range(num)] if batched else [words.ravel()]


def start_scales(scale: float, seeds: int, high: float = 3.0) -> np.ndarray:
    """The scales of `seeds` starts: spread geometrically over `[scale/3, high·scale]` (traps sit at both
    ends: a deep model's small class dies from a small start, a direction that should vanish stays alive
    from a large one, so one scale for all starts can miss the global minimum every time)."""
    return scale * np.geomspace(1 / 3, high, seeds) if seeds > 1 else np.asarray([scale])


def _random_starts(problem: Problem, key, seeds: int, scale: float, batched: bool,
                   first: int = 0) -> Params:
    """`seeds` host-drawn starts per problem, flat `(B·S, ...)`, problem-major: start `j` of problem `i`
    is `init_params(problem_i, key_words[i], start_scales[j], index=first + j)`."""
    num = batch_size(problem)
    words = key_words(key, num, batched)
    scales = start_scales(scale, seeds)
    starts = []
    for i in range(num):
        problem_i = jax.tree.map(lambda x: x[i], problem) if batched else problem
        starts.extend(init_params(problem_i, words[i], scales[j], index=first + j) for j in range(seeds))
    return jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *starts)


def solve(
    problem: Problem,
    solver: AbstractSolver | None = None,
    *,
    key: PRNGKeyArray | int = 0,
    seeds: int = 1,
    init_scale: float = 1.0,
    start: Params | None = None,
    shard: bool = True,
    slots: int | None = None,
    reduce: bool = True,
    history: int | None = None,
    start_index: int = 0,
) -> Solution:
    """Solve one problem, or a batch (a `Problem` whose leaves have a leading axis, `stack_problems`).

    **The default path (`reduce=True`).** The problem is solved in its exact reduction, one column per
    class weighing `n_k` (`reduce_problem`; exact because the objective is separable and strictly
    convex in each column, see `ufm_jax.Problem`), the solution is written out to every sample column
    (`expand_params`) and verified on the full problem: its objective and gradient norm there are
    recomputed, and a converged point whose full gradient norm misses `gtol` (round-off) is polished by
    the same solver on the full problem. The cost is then independent of `N`. `reduce=False` optimises
    every column from sample-level starts (for studies of what plain optimisation reaches); a problem
    that already has one column per class is solved as it is.

    All `B × seeds` solves run as one compiled program whose batch axis is sharded over `jax.devices()`
    (padded to a multiple of the device count); each device runs its own loop over its share, `slots`
    problems at a time, the rest queued (`minimise_batch`). The compiled program is reused for any
    problem with the same static options and shapes: new `λ`'s or class sizes do not recompile. Random
    starts are drawn on the host (`init_params`), so the program holds only the solver.

    **Arguments:**

    - `problem`: from `make_problem` or a preset; batched with `stack_problems`.
    - `solver`: default `default_solver(problem)`; any registered solver (`ufm_jax.SOLVERS`).
    - `key`: PRNG key (or an int seed) for the random starts; for a batch, also an array of keys or of
      int seeds, one per problem.
    - `seeds`: number of random starts per problem (>= 1); the best finite one is returned.
    - `init_scale`: scale of the random starts (O(1): the origin is a trap for deep models); with
      `seeds > 1` the starts' scales spread over `[init_scale/3, 3·init_scale]`.
    - `start`: optional explicit start (a `Params` of `problem`, batched like it); then `seeds` must
      be 1. On the default path it enters as its class means (`reduce_params`).
    - `shard`: shard the batch over all devices (default); `False` runs on the default device.
    - `slots`: how many problems each device iterates at a time; the rest wait in a queue and take a
      slot as soon as one frees up (`minimise_batch`). Default `None`: `DEFAULT_SLOTS`. Results do not
      depend on it (up to round-off).
    - `reduce`: solve the exact one-column-per-class reduction and verify on the full problem
      (default), or optimise every column.
    - `history`: record every `history` iterations (`Trajectory`: objective, gradient norm, scalar NC
      metrics) inside the compiled loop; `None` records nothing. Memory: `B × seeds × (max_steps /
      history + 2) × 10` numbers.
    - `start_index`: the index of the first random start (`init_params(..., index=...)`): a later call
      with `start_index = seeds` draws `seeds` new starts (how `search` adds rounds).

    **Returns:** a `Solution` of `problem` (in its own representation). `timing["solve_s"]` counts
    everything after compilation: the reduced solve, the expansion and the verification.

    **Raises:** `ValueError` for a bad `seeds`, `init_scale`, `key`, `slots` or solver, before anything
    is compiled.
    """
    V.integer("seeds", seeds, 1)
    V.positive("init_scale", init_scale)
    ensure_compilation_cache()
    if start is not None and seeds != 1:
        raise V.fail("seeds", seeds, "expected 1 with an explicit start")
    if slots is not None:
        V.integer("slots", slots, 1)
    solver = default_solver(problem) if solver is None else solver
    check_solver(problem, solver)
    if history is not None:
        V.integer("history", history, 1)
        records = batch_size(problem) * seeds * history_records(solver.max_steps, history)
        if records * len(TRAJECTORY_FIELDS) * 8 > MAX_HISTORY_BYTES:
            raise V.fail("history", history, f"{records} records of {len(TRAJECTORY_FIELDS)} numbers exceed "
                         f"{MAX_HISTORY_BYTES / 2**30:.0f} GiB: record less often, or lower max_steps")
    batched = problem.lam_h.ndim == 1
    # Random starts are drawn for the representation solved (the reduced problem when `reduce`);
    # everything after works on a batch.
    if start is None:
        drawn = problem if not reduce else reduce_problem(problem)
        start = _random_starts(drawn, key, seeds, float(init_scale), batched, V.integer("start_index",
                                                                                         start_index, 0))
    elif not batched:
        start = jax.tree.map(lambda x: x[None], start)
    batch = problem if batched else jax.tree.map(lambda x: x[None], problem)
    run = functools.partial(_solve_batch, solver=solver, seeds=seeds, shard=shard,
                            slots=DEFAULT_SLOTS if slots is None else int(slots), history=history)
    if not reduce or problem.columns_per_class == 1:
        solution = run(batch, start)
    else:
        reduced = reduce_problem(batch)
        if start.features.shape[-2] != 1:  # a start given in the full representation
            start = reduce_params(start, jax.tree.map(lambda x: jnp.repeat(x, seeds, axis=0), batch))
        solution = _expand(run(reduced, start), batch, solver, run)
    return solution if batched else solution[0]


def _expand(reduced: Solution, problem: Problem, solver: AbstractSolver, run) -> Solution:
    """The reduced solution of a batch written out for `problem`, verified there (objective and gradient
    norm on the full problem), and polished where a converged point misses `gtol` on the full problem."""
    t0 = time.perf_counter()
    leaves, treedef = jax.tree.flatten((problem, reduced.params))
    c0 = time.perf_counter()
    verify = _compiled_expand(treedef, tuple(jax.ShapeDtypeStruct(x.shape, x.dtype) for x in leaves),
                              solver.coordinates)
    c1 = time.perf_counter()
    params, value, gnorm = jax.block_until_ready(verify(leaves))
    t1 = time.perf_counter() - (c1 - c0)
    gtol = default_gtol(problem.lam_h.dtype) if solver.gtol is None else solver.gtol
    polish = np.asarray((reduced.status == Status.converged) & (gnorm > gtol))
    status, iterations = reduced.status, reduced.iterations
    timing = {"compile_s": reduced.timing["compile_s"] + c1 - c0,
              "solve_s": reduced.timing["solve_s"] + t1 - t0}
    if np.any(polish):
        # Round-off made the full gradient norm miss gtol: iterations of the same solver on the full
        # problem from the expanded point (rare; it compiles the full problem's program).
        again = run(problem, params, seeds=1, history=None)

        def pick(new, old):
            return jnp.where(polish.reshape(polish.shape + (1,) * (jnp.ndim(new) - 1)), new, old)

        params = jax.tree.map(pick, again.params, params)
        value, gnorm, status = pick(again.objective, value), pick(again.grad_norm, gnorm), \
            pick(again.status, status)
        iterations = pick(iterations + again.iterations, iterations)
        timing = {k: timing[k] + again.timing[k] for k in timing}
    return Solution(params=params, objective=value, grad_norm=gnorm, iterations=iterations,
                    status=status, seed_objectives=reduced.seed_objectives,
                    seed_status=reduced.seed_status, objective_spread=reduced.objective_spread,
                    problem=problem, timing={**timing, "reduced": True}, history=reduced.history)


def _solve_batch(problem: Problem, start: Params, *, solver: AbstractSolver, seeds: int, shard: bool,
                 slots: int, history: int | None) -> Solution:
    """A batch of `B` problems from `start` (`B × seeds` starts, problem-major), in one sharded, queued
    program; the best start of each problem is kept."""
    num = batch_size(problem)
    total = num * seeds
    # (B, S) → flat (B·S,), problem-major.
    flat_problem = jax.tree.map(lambda x: jnp.repeat(x, seeds, axis=0), problem)
    out, compile_s, solve_s = _run(solver, flat_problem, start, shard, total, slots, history)

    out = jax.tree.map(lambda x: x.reshape(num, seeds, *x.shape[1:]), out)
    finite = np.isfinite(out.objective) & (out.status != Status.nonfinite)
    best = np.argmin(np.where(finite, out.objective, np.inf), axis=1)
    rows = np.arange(num)
    pick = lambda x: jnp.asarray(x[rows, best])  # noqa: E731
    with np.errstate(invalid="ignore"):
        kept = np.where(finite, out.objective, np.nan)
        spread = (np.where(finite.any(axis=1), np.nanmax(kept, axis=1, initial=-np.inf)
                           - np.nanmin(kept, axis=1, initial=np.inf), np.nan)
                  if seeds > 1 else np.zeros(num))
    return Solution(
        params=jax.tree.map(pick, out.params),
        objective=pick(out.objective),
        grad_norm=pick(out.grad_norm),
        iterations=pick(out.iterations),
        status=pick(out.status),
        seed_objectives=jnp.asarray(out.objective),
        seed_status=jnp.asarray(out.status),
        objective_spread=jnp.asarray(spread),
        problem=problem,
        timing={"compile_s": compile_s, "solve_s": solve_s},
        history=None if history is None else pick_trajectories(out.history, best, history),
    )


def _run(solver, flat_problem, flat_start, shard: bool, total: int, slots: int,
         history: int | None) -> tuple[SingleResult, float, float]:
    """Run `total` solves as one compiled (cached), sharded program, `slots` at a time on each
    device, recording every `history` iterations; host arrays back."""
    sharding, num_devices = _sharding()
    if not shard:
        num_devices = 1
    padded = -(-total // num_devices) * num_devices

    def pad(x):
        x = np.asarray(x)
        if padded == total:
            return x
        return np.concatenate([x, np.repeat(x[-1:], padded - total, axis=0)], axis=0)

    args = jax.tree.map(pad, (flat_problem, flat_start))
    if shard:
        args = jax.tree.map(lambda x: _put(x, sharding), args)
    else:
        args = jax.tree.map(jnp.asarray, args)

    leaves, treedef = jax.tree.flatten(args)
    avals = tuple(jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None))
                  for x in leaves)
    slots = min(slots, padded // num_devices)
    mesh = sharding.mesh if shard and num_devices > 1 else None
    t0 = time.perf_counter()
    compiled = _compiled(solver, treedef, avals, mesh, slots, history)
    t1 = time.perf_counter()
    out: SingleResult = jax.block_until_ready(compiled(leaves))
    t2 = time.perf_counter()
    return jax.tree.map(lambda x: _gather(x)[:total], out), t1 - t0, t2 - t1


@functools.lru_cache(maxsize=64)
def _compiled_expand(treedef, avals: tuple, coordinates: str):
    """The compiled expansion and verification of reduced points on their full problems: the expanded
    parameters, their objective and gradient norm (`evaluate_batch`) in the solver's coordinates."""

    def expand(leaves):
        problem, reduced = jax.tree.unflatten(treedef, leaves)
        params = expand_params(reduced, problem)
        return (params, *evaluate_batch(problem, params, coordinates))

    return jax.jit(expand).lower(list(avals)).compile()


@functools.lru_cache(maxsize=64)
def _compiled(solver: AbstractSolver, treedef, avals: tuple, mesh: Mesh | None, slots: int,
              history: int | None):
    """The compiled solve loop for one structure: solver (hashable: its fields are static numbers),
    problem and start treedef (it carries the problem's static options), leaf shapes, dtypes and
    shardings, device mesh, slot count and recording interval. Bounded: a long session with many shapes
    keeps the last 64."""

    def run(leaves):
        problems, starts = jax.tree.unflatten(treedef, leaves)
        return minimise_batch(problems, starts, solver, slots, history)

    if mesh is not None:
        # Each device runs its own loop over its shard: it stops when its own problems are done, and no
        # device waits on another's slowest problem.
        run = jax.shard_map(run, mesh=mesh, in_specs=PartitionSpec("batch"),
                            out_specs=PartitionSpec("batch"), check_vma=False)
    return jax.jit(run).lower(list(avals)).compile()
