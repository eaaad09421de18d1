"""Adaptive multi-start search: keep drawing starts until the evidence for the answer is enough.

Where a theorem (or the convex certificate) applies, the answer is certified as soon as one start
reaches it. Where none applies, the evidence is what the starts found (`ufm_jax._basins`): how many
reached the best value, and how much of the start distribution may lead to basins not seen yet. Rare
basins are real: some global minima are reached by a few percent of random starts, so the search also
draws *structured* starts (`ufm_jax._starts`: the theory's point, a neighbouring theory's point, the
one-layer minimiser lifted to depth `L`), which reach basins random starts almost never find.

Rounds, for a batch of problems (each problem leaves as soon as it is done):

0. one random start (the default path's cost: a certified problem stops here);
1. the structured starts that apply, and random starts up to `round_starts`;
2. … `round_starts` random starts per round,

until the theory's minimum is reached (certified), or, without a theory, `enough_evidence` holds
(`agree` hits of the best, at least `min_starts` starts, Good–Turing unseen mass `<= max_unseen`), or
`max_starts` starts were drawn. Random start `j` of a problem is `init_params(..., index=j)` of its key,
so a search's starts do not depend on the batch or on when the other problems stopped.
"""

from __future__ import annotations

import math
import time

import jax
import jax.numpy as jnp
import numpy as np

from . import _validation as V
from ._basins import AGREE, MAX_UNSEEN, MIN_STARTS, basin_statistics, enough_evidence
from ._check import check
from ._families import analytic_solution
from ._params import Params, init_params
from ._problem import Problem, batch_size, reduce_problem
from ._starts import structured_starts
from .solve import Solution, default_solver, solve
from .solve._solve import key_words, start_scales
from .theory import TheorySolution

SEARCH_HIGH_SCALE = 10.0
"""A search's random rounds spread their scales over `[init_scale/3, 10·init_scale]`, wider than a plain
multi-start's `[/3, ×3]`: on twelve depth-2–4 imbalanced CE problems (64 starts each against the best of
512), the global basin's hits rose on the hard ones (1 → 7, 7 → 10, 3 → 4 of 64) and stayed level on
the rest; in deep models some global basins are reached mainly from large starts (scale 3–10)."""

ROUND_STARTS = 16
"""Random starts per problem and round of a search (the most starts it solves at once per problem)."""

NOT_DRAWN = -1
"""The `seed_status` of a start a search did not draw (the search stopped before it); its objective is
NaN. `ufm_jax.check` counts only drawn starts."""


def search(
    problem: Problem,
    solver=None,
    *,
    key=0,
    max_starts: int = 64,
    agree: int = AGREE,
    min_starts: int | None = None,
    max_unseen: float = MAX_UNSEEN,
    round_starts: int = ROUND_STARTS,
    init_scale: float = 1.0,
    shard: bool = True,
    slots: int | None = None,
    reduce: bool = True,
    history: int | None = None,
    callback=None,
) -> Solution:
    """Solve one problem or a batch with as many starts as the evidence needs (module docstring).

    **Arguments:** as `ufm_jax.solve` (`solver`, `key`, `init_scale`, `shard`, `slots`, `reduce`,
    `history`), and

    - `max_starts`: the budget of starts per problem (>= 1).
    - `agree`: hits of the best value needed without a theory (>= 1).
    - `min_starts`: starts needed without a theory; default 59 (`ufm_jax._basins.MIN_STARTS`), whatever
      the budget: a search with `max_starts < min_starts` runs to its budget and cannot be confident.
    - `max_unseen`: the largest Good–Turing mass of unseen basins, in `(0, 1]`.
    - `round_starts`: random starts per problem and round (>= 1).
    - `callback`: called after each round with `{"round", "starts", "remaining", "best", "seconds",
      "eta_s"}` (starts drawn so far over all problems, problems still searching, the best objective of
      each problem, seconds so far, and an upper estimate of the seconds left: the rounds the budget
      still allows at the mean time per round).

    **Returns:** a `Solution` (batched like `problem`) with the best start of each problem;
    `seed_objectives` and `seed_status` hold every start drawn (NaN and `NOT_DRAWN` past a problem's
    count); `timing` adds `rounds`. `ufm_jax.check` turns it into evidence.

    **Raises:** `ValueError` naming a bad argument, before anything is compiled.
    """
    V.integer("max_starts", max_starts, 1)
    V.integer("agree", agree, 1)
    # The standard of evidence does not bend to the budget: with max_starts < min_starts (or < agree) a
    # search without a theory runs to its budget and is not confident (check says so).
    min_starts = MIN_STARTS if min_starts is None else V.integer("min_starts", min_starts, 1)
    if not 0 < max_unseen <= 1:
        raise V.fail("max_unseen", max_unseen, "expected a number in (0, 1]")
    V.integer("round_starts", round_starts, 1)
    V.positive("init_scale", init_scale)
    solver = default_solver(problem) if solver is None else solver
    batched = problem.lam_h.ndim == 1
    num = batch_size(problem)
    problems = [jax.tree.map(lambda x: x[i], problem) for i in range(num)] if batched else [problem]
    # The rounds solve the one-column reduction (exact); only each problem's best point is written out
    # to every sample column and verified on the full problem, once, at the end.
    reduced = reduce and problem.columns_per_class > 1
    work = [reduce_problem(p) for p in problems] if reduced else problems
    words = key_words(key, num, batched)
    theories = [analytic_solution(p) for p in problems]
    options = dict(solver=solver, shard=shard, slots=slots, reduce=reduce, history=history)

    state = _State(num)
    randoms = [0] * num  # random starts drawn per problem: the next one's index
    rounds = 0
    todo = list(range(num))
    t0 = time.perf_counter()
    while todo:
        starts = {}
        for i in todo:
            room = max_starts - state.count(i)
            if rounds == 0:  # one random start: a certified problem stops here
                group, count = [], 1
            else:
                group = [_as_start(s, work[i]) for s in structured_starts(problems[i])] if rounds == 1 else []
                group = group[:room]
                count = max(0, min(round_starts, room) - len(group))
            scales = start_scales(init_scale, count, high=SEARCH_HIGH_SCALE)
            group += [init_params(work[i], words[i], scales[j], index=randoms[i] + j) for j in range(count)]
            randoms[i] += count
            starts[i] = group
        state.add(*_solve_starts(work, starts, options))
        rounds += 1
        todo = [i for i in range(num)
                if not state.done(i, theories[i], max_starts, agree, min_starts, max_unseen)]
        if callback is not None:
            seconds = time.perf_counter() - t0
            left = max((math.ceil((max_starts - state.count(i)) / round_starts) for i in todo), default=0)
            callback({"round": rounds, "starts": sum(state.count(i) for i in range(num)),
                      "remaining": len(todo), "best": [state.best(i)[0] for i in range(num)],
                      "seconds": seconds, "eta_s": left * seconds / rounds})
    found = state.solution(problem if not reduced else reduce_problem(problem), batched, rounds)
    return _write_out(found, problem, options) if reduced else found


def _write_out(found: Solution, problem: Problem, options: dict) -> Solution:
    """The search's best points (of the one-column reduction) written out to every sample column of
    `problem` and verified there: `solve` from each best point (already converged: it stops at once, or
    polishes where round-off on the full problem needs it)."""
    full = solve(problem, options["solver"], start=found.params, shard=options["shard"],
                 slots=options["slots"], reduce=True)
    timing = {**found.timing, "compile_s": found.timing["compile_s"] + full.timing["compile_s"],
              "solve_s": found.timing["solve_s"] + full.timing["solve_s"], "reduced": True}
    return Solution(params=full.params, objective=full.objective, grad_norm=full.grad_norm,
                    iterations=found.iterations + full.iterations, status=full.status,
                    seed_objectives=found.seed_objectives, seed_status=found.seed_status,
                    objective_spread=found.objective_spread, problem=full.problem, timing=timing,
                    history=found.history)


def _as_start(params: Params, drawn: Problem) -> Params:
    """A structured start (every column of a class at the class's point) in the representation drawn:
    its first column per class when the search solves the one-column reduction."""
    if drawn.columns_per_class == params.features.shape[-2]:
        return params
    return Params(params.weights, params.features[..., :1, :], params.bias)


def _solve_starts(problems: list[Problem], starts: dict[int, list[Params]], options: dict):
    """Solve every `(problem i, start)` pair as one batch (problem rows repeated, one start each):
    `{i: [(objective, status, solution of that start)]}` and the timing."""
    rows = [(i, s) for i, group in starts.items() for s in group]
    if not rows:
        return {}, {"compile_s": 0.0, "solve_s": 0.0}
    # Pad the batch to a power of two (repeating the last row, results dropped), so that rounds of
    # different sizes share a few compiled programs.
    size = 1 << (len(rows) - 1).bit_length()
    padded = rows + [rows[-1]] * (size - len(rows))
    batch = jax.tree.map(lambda *xs: jnp.asarray(np.stack([np.asarray(x) for x in xs])),
                         *[problems[i] for i, _ in padded])
    start = jax.tree.map(lambda *xs: jnp.asarray(np.stack([np.asarray(x) for x in xs])), *[s for _, s in padded])
    sol = solve(batch, options["solver"], start=start, shard=options["shard"], slots=options["slots"],
                reduce=options["reduce"], history=options["history"])
    out: dict[int, list] = {}
    for row, (i, _) in enumerate(rows):
        out.setdefault(i, []).append((float(sol.objective[row]), int(sol.status[row]), sol, row))
    return out, sol.timing


class _State:
    """Every start drawn for each problem (objective, status, the round's solution and its row)."""

    def __init__(self, num: int):
        self.results: list[list] = [[] for _ in range(num)]
        self.timing = {"compile_s": 0.0, "solve_s": 0.0}

    def add(self, results: dict[int, list], timing: dict):
        for i, group in results.items():
            self.results[i].extend(group)
        for k in self.timing:
            self.timing[k] += timing.get(k, 0.0)

    def count(self, i: int) -> int:
        return len(self.results[i])

    def best(self, i: int):
        finite = [r for r in self.results[i] if math.isfinite(r[0])]
        return min(finite, key=lambda r: r[0]) if finite else self.results[i][0]

    def done(self, i: int, theory, max_starts: int, agree: int, min_starts: int, max_unseen: float) -> bool:
        if self.count(i) >= max_starts:
            return True
        if isinstance(theory, TheorySolution):
            _, _, sol, row = self.best(i)
            return check(sol[row], theory).certified
        objectives = [r[0] for r in self.results[i]]
        status = [r[1] for r in self.results[i]]
        # Clustered in the solve's precision, as `check`'s evidence clusters them.
        dtype = self.best(i)[2].problem.lam_h.dtype
        stats = basin_statistics(np.asarray(objectives), np.asarray(status), dtype=dtype)
        return enough_evidence(stats, agree=agree, min_starts=min_starts, max_unseen=max_unseen)

    def solution(self, problem: Problem, batched: bool, rounds: int) -> Solution:
        num = len(self.results)
        width = max(self.count(i) for i in range(num))
        objectives = np.full((num, width), np.nan)
        status = np.full((num, width), NOT_DRAWN)
        for i, group in enumerate(self.results):
            objectives[i, : len(group)] = [r[0] for r in group]
            status[i, : len(group)] = [r[1] for r in group]
        best = [self.best(i) for i in range(num)]
        picks = [sol[row] for _, _, sol, row in best]
        stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *[_strip(p) for p in picks])
        with np.errstate(invalid="ignore"):
            finite = np.where(np.isfinite(objectives), objectives, np.nan)
            spread = np.nanmax(finite, axis=1) - np.nanmin(finite, axis=1)
        timing = {**self.timing, "rounds": rounds, "reduced": picks[0].timing.get("reduced", False)}
        solution = Solution(
            params=stacked.params, objective=stacked.objective, grad_norm=stacked.grad_norm,
            iterations=stacked.iterations, status=stacked.status,
            seed_objectives=jnp.asarray(objectives), seed_status=jnp.asarray(status),
            objective_spread=jnp.asarray(np.nan_to_num(spread, nan=0.0)),
            problem=problem if batched else jax.tree.map(lambda x: x[None], problem), timing=timing,
            history=None if picks[0].history is None else jax.tree.map(lambda *xs: np.stack(xs),
                                                                       *[p.history for p in picks]))
        return solution if batched else solution[0]


def _strip(solution: Solution) -> Solution:
    """A one-problem solution without the fields the search rebuilds (so that solutions of different
    rounds stack)."""
    return Solution(params=solution.params, objective=solution.objective, grad_norm=solution.grad_norm,
                    iterations=solution.iterations, status=solution.status,
                    seed_objectives=jnp.zeros(0), seed_status=jnp.zeros(0, int),
                    objective_spread=solution.objective_spread, problem=solution.problem)
