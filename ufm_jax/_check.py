"""Certify a numerical solution against the analytic global minimum, and report it."""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np

from . import _validation as V
from ._families import analytic_solution
from ._problem import batch_size
from ._json import jsonable
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
class Check:
    """The verdict on one solution.

    - `theory_objective`, `regime`: from the theory (NaN / `None` without one).
    - `gap`: `(f − f*) / max(1, |f*|)`, signed: a clearly negative gap would mean the theory is wrong.
    - `geometry_gap`: the largest invariant gap; `geometry`: each invariant's gap.
    - `certified`: converged, `|gap| <= objective_rtol` and `geometry_gap <= geometry_rtol`.
    - `reason`: why not certified (empty when certified).
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


def check(
    solution: Solution,
    theory: TheorySolution | NoTheory | None = None,
    *,
    objective_rtol: float | None = None,
    geometry_rtol: float | None = None,
) -> Check | list[Check]:
    """Compare a solution with the analytic minimum (`analytic_solution` if not given); a batched
    solution gives one `Check` per problem (each against its own theory).

    A converged point whose objective is above the theory's by more than the tolerance is a local
    minimum or a saddle (e.g. the origin of a deep linear model, a dead ReLU class): it is reported as
    such and never certified.
    """
    problem = solution.problem
    if problem.lam_h.ndim != 0:
        if theory is not None:
            raise V.fail("theory", type(theory).__name__, "give no theory with a batch: each problem is "
                         "checked against its own")
        return [check(solution[i], objective_rtol=objective_rtol, geometry_rtol=geometry_rtol)
                for i in range(batch_size(problem))]
    theory = analytic_solution(problem) if theory is None else theory
    default_obj, default_geo = default_tolerances(problem.lam_h.dtype)
    objective_rtol = default_obj if objective_rtol is None else objective_rtol
    geometry_rtol = default_geo if geometry_rtol is None else geometry_rtol
    status = int(solution.status)
    if isinstance(theory, NoTheory):
        return Check(np.nan, None, np.nan, np.nan, {}, False, f"no theory: {theory.reason}",
                     objective_rtol, geometry_rtol)
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
    return Check(theory.objective, theory.regime, gap, geometry_gap, geometry, not reasons,
                 "; ".join(reasons), objective_rtol, geometry_rtol)


def report(solution: Solution, theory: TheorySolution | NoTheory | None = None) -> dict | list[dict]:
    """A JSON-ready summary of a solution: result, metrics, timing, theory, gap and certificate (what
    `ufm solve --json` prints); a batched solution gives one summary per problem."""
    problem = solution.problem
    if problem.lam_h.ndim != 0:
        if theory is not None:
            raise V.fail("theory", type(theory).__name__, "give no theory with a batch: each problem is "
                         "checked against its own")
        return [report(solution[i]) for i in range(batch_size(problem))]
    theory = analytic_solution(problem) if theory is None else theory
    verdict = check(solution, theory)
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
        "seed_objectives": jsonable(solution.seed_objectives),
        "objective_spread": float(solution.objective_spread),
        "metrics": metrics,
        "timing": dict(solution.timing),
        "theory": theory_dict,
        "theory_reason": theory.reason if isinstance(theory, NoTheory) else None,
        "gap": verdict.gap,
        "geometry_gap": verdict.geometry_gap,
        "certified": verdict.certified,
        "reason": verdict.reason,
        **({} if history is None else {"history": jsonable(history)}),
    }
