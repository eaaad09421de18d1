"""Certify a numerical solution against the analytic global minimum, and report it."""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np

from . import _validation as V
from ._basins import AGREE, MAX_UNSEEN, MIN_STARTS, basin_statistics, is_confident, missed_mass
from ._families import analytic_solution
from ._problem import batch_size
from ._json import jsonable
from ._second_order import hessian_check
from .metrics import compare_with_theory, nc_metrics
from .solve import Solution, Status
from .theory import NoTheory, TheorySolution


def default_tolerances(dtype) -> tuple[float, float]:
    """`(objective_rtol, geometry_rtol)`: `(1e-8, 1e-4)` in float64, `(1e-4, 1e-2)` in float32.

    The objective tolerance is relative to `max(1, |f*|)`. The geometry tolerance applies to the
    rotation-free invariants (class-mean Gram, mean logits, bias, singular values), each relative to
    `max(1, its size)`: they are first order in the distance to the minimiser while the objective is
    second order, hence the looser bound.
    """
    return (1e-8, 1e-4) if jnp.dtype(dtype) == jnp.float64 else (1e-4, 1e-2)


@dataclasses.dataclass(frozen=True)
class Evidence:
    """What a solution's claim to be the global minimum rests on: one vocabulary for `check`, `ufm solve
    --json`, reports and sweeps.

    - `kind`: `"theorem"` (a closed form of a paper, corrected), `"convex"` (the certified minimiser of
      the convex reduced problem), `"search"` (no theory: several starts), or `"none"` (no theory and one
      start).
    - `starts`, `hits`, `minima`: the starts drawn, those at the best value, and each distinct
      local-minimum value with its count, ascending (`ufm_jax._basins.basin_statistics`).
    - `hessian_min_eig`: the smallest Hessian eigenvalue at the returned point off the symmetry
      directions (balanced coordinates; `None` where a theory decides); `hessian_verdict`: `"negative"`
      (a saddle), `"nonnegative"` or `"inconclusive"`.
    - `unseen_mass`: the Good–Turing estimate of the start mass leading to basins not seen; `missed_mass`:
      the basin mass this many starts may have missed (95 % bound).
    - `confident`: theorem/convex: the point is certified; search: the returned point converged, `agree`
      starts reached the best, at least `min_starts` were drawn, the unseen mass is small, the Hessian check passed and no start beat
      the returned value (`ufm_jax._basins.is_confident`); never for `"none"`.
    """

    kind: str
    starts: int
    hits: int
    minima: list
    hessian_min_eig: float | None
    hessian_verdict: str | None
    unseen_mass: float
    missed_mass: float
    confident: bool

    def as_dict(self) -> dict:
        """JSON-ready: `{kind, starts, hits, minima, hessian_min_eig, confident, ...}`."""
        return jsonable(dataclasses.asdict(self))


@dataclasses.dataclass(frozen=True)
class Check:
    """The verdict on one solution.

    - `theory_objective`, `regime`: from the theory (NaN / `None` without one).
    - `gap`: `(f − f*) / max(1, |f*|)`, signed: a clearly negative gap would mean the theory is wrong.
    - `geometry_gap`: the largest invariant gap; `geometry`: each invariant's gap.
    - `certified`: converged, `|gap| <= objective_rtol` and `geometry_gap <= geometry_rtol`: only ever
      true where a theorem or the convex certificate applies.
    - `reason`: why not certified (empty when certified).
    - `evidence`: an `Evidence` record (always given).
    """

    theory_objective: float
    regime: str | None
    gap: float
    geometry_gap: float
    geometry: dict
    certified: bool
    reason: str
    objective_rtol: float
    geometry_rtol: float
    evidence: Evidence | None = None


def evidence(solution: Solution, theory: TheorySolution | NoTheory, certified: bool, *,
             agree: int = AGREE, min_starts: int = MIN_STARTS, max_unseen: float = MAX_UNSEEN) -> Evidence:
    """The `Evidence` of one solution (see there): its starts' basin statistics, and without a theory
    the second-order check at the returned point."""
    codes = np.asarray(solution.seed_status).ravel()
    drawn = codes >= 0  # a search's undrawn starts are marked -1
    stats = basin_statistics(np.asarray(solution.seed_objectives).ravel()[drawn], codes[drawn],
                             dtype=solution.problem.lam_h.dtype)
    minima = [[float(v), int(c)] for v, c in stats.minima]
    if isinstance(theory, TheorySolution):
        return Evidence(theory.kind, stats.starts, stats.hits, minima, None, None, stats.unseen_mass,
                        missed_mass(stats.starts), bool(certified))
    hessian = hessian_check(solution.params, solution.problem)
    kind = "search" if stats.starts >= 2 else "none"
    confident = kind == "search" and is_confident(stats, hessian.verdict, float(solution.objective),
                                                  converged=int(solution.status) == Status.converged,
                                                  agree=agree, min_starts=min_starts,
                                                  max_unseen=max_unseen)
    return Evidence(kind, stats.starts, stats.hits, minima, float(hessian.min_eig), hessian.verdict,
                    stats.unseen_mass, missed_mass(stats.starts), bool(confident))


def check(
    solution: Solution,
    theory: TheorySolution | NoTheory | None = None,
    *,
    objective_rtol: float | None = None,
    geometry_rtol: float | None = None,
    agree: int = AGREE,
    min_starts: int = MIN_STARTS,
    max_unseen: float = MAX_UNSEEN,
) -> Check | list[Check]:
    """Compare a solution with the analytic minimum (`analytic_solution` if not given), and state its
    `Evidence`; a batched solution gives one `Check` per problem (each against its own theory).

    A converged point whose objective is above the theory's by more than the tolerance is a local
    minimum or a saddle (e.g. the origin of a deep linear model, a dead ReLU class): it is reported as
    such and never certified. Without a theory nothing is certified; the evidence says what the
    starts found, whether the returned point passes the second-order check, and whether the search is
    `confident` (`agree`, `min_starts`, `max_unseen`: the rule of `ufm_jax._basins.is_confident`).
    """
    problem = solution.problem
    if problem.lam_h.ndim != 0:
        if theory is not None:
            raise V.fail("theory", type(theory).__name__, "give no theory with a batch: each problem is "
                         "checked against its own")
        return [check(solution[i], objective_rtol=objective_rtol, geometry_rtol=geometry_rtol, agree=agree,
                      min_starts=min_starts, max_unseen=max_unseen) for i in range(batch_size(problem))]
    theory = analytic_solution(problem) if theory is None else theory
    default_obj, default_geo = default_tolerances(problem.lam_h.dtype)
    objective_rtol = default_obj if objective_rtol is None else objective_rtol
    geometry_rtol = default_geo if geometry_rtol is None else geometry_rtol
    status = int(solution.status)
    rule = dict(agree=agree, min_starts=min_starts, max_unseen=max_unseen)
    if isinstance(theory, NoTheory):
        found = evidence(solution, theory, False, **rule)
        return Check(np.nan, None, np.nan, np.nan, {}, False, f"no theory: {theory.reason}",
                     objective_rtol, geometry_rtol, found)
    objective = float(solution.objective)
    gap = (objective - theory.objective) / max(1.0, abs(theory.objective))
    geometry = {k: float(v) for k, v in compare_with_theory(solution.params, problem, theory).items()}
    geometry_gap = max(geometry.values(), default=0.0)
    reasons = []
    if status != Status.converged:
        reasons.append(f"not converged (status {Status(status).name})")
    if not np.isfinite(gap):
        reasons.append("objective is not finite")
    elif gap > objective_rtol:
        reasons.append(f"objective above the global minimum by {gap:.3g} (relative): "
                       "a local minimum or saddle")
    elif gap < -objective_rtol:
        reasons.append(f"objective below the theory's minimum by {-gap:.3g} (relative): theory disagrees")
    if not geometry_gap <= geometry_rtol:
        worst = max(geometry, key=geometry.get) if geometry else "?"
        reasons.append(f"geometry differs from theory ({worst} gap {geometry_gap:.3g})")
    if theory.details.get("certified", True) is False:
        reasons.append(f"the theory's point is not a certified global minimum (regime {theory.regime})")
    certified = not reasons
    return Check(theory.objective, theory.regime, gap, geometry_gap, geometry, certified,
                 "; ".join(reasons), objective_rtol, geometry_rtol, evidence(solution, theory, certified, **rule))


def report(solution: Solution, theory: TheorySolution | NoTheory | None = None, **rule) -> dict | list[dict]:
    """A JSON-ready summary of a solution: result, metrics, timing, theory, gap, certificate and
    evidence (what `ufm solve --json` prints); a batched solution gives one summary per problem.
    `rule`: `agree`, `min_starts`, `max_unseen`, as in `check`."""
    problem = solution.problem
    if problem.lam_h.ndim != 0:
        if theory is not None:
            raise V.fail("theory", type(theory).__name__, "give no theory with a batch: each problem is "
                         "checked against its own")
        return [report(solution[i], **rule) for i in range(batch_size(problem))]
    theory = analytic_solution(problem) if theory is None else theory
    verdict = check(solution, theory, **rule)
    metrics = jsonable(nc_metrics(solution.params, problem))
    theory_dict = None
    if isinstance(theory, TheorySolution):
        theory_dict = {"objective": theory.objective, "regime": theory.regime, "source": theory.source,
                       "details": jsonable({k: v for k, v in theory.details.items()
                                            if np.asarray(v).dtype.kind in "fiub"})}
    history = None
    if solution.history is not None:
        history = solution.history.as_lists()
        if isinstance(theory, TheorySolution):
            scale = max(1.0, abs(theory.objective))
            history["gap"] = [(f - theory.objective) / scale for f in history["objective"]]
    return {
        "objective": float(solution.objective),
        "grad_norm": float(solution.grad_norm),
        "iterations": int(solution.iterations),
        "status": Status(int(solution.status)).name,
        "seed_objectives": jsonable(np.asarray(solution.seed_objectives)[np.asarray(solution.seed_status) >= 0]),
        "objective_spread": float(solution.objective_spread),
        "metrics": metrics,
        "timing": dict(solution.timing),
        "theory": theory_dict,
        "theory_reason": theory.reason if isinstance(theory, NoTheory) else None,
        "gap": verdict.gap,
        "geometry_gap": verdict.geometry_gap,
        "certified": verdict.certified,
        "precision": jnp.dtype(problem.lam_h.dtype).name,
        "tolerances": {"objective_rtol": verdict.objective_rtol, "geometry_rtol": verdict.geometry_rtol},
        "reason": verdict.reason,
        "evidence": verdict.evidence.as_dict(),
        **({} if history is None else {"history": jsonable(history)}),
    }
