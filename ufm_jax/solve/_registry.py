"""The solver registry: one name per solver, used by `solve`, the CLI (`--solver`) and sweep configs
(`solver.method`).

A solver class carries its canonical `name` and its short `aliases` as class variables; this module only
collects them (optax builds its aliases the same way, from one definition per transformation).
"""

from __future__ import annotations

from .. import _validation as V
from .._problem import Problem
from ._lockstep import LockstepLBFGS
from ._solvers import LBFGS, AbstractSolver, Adam, GradientDescent, ProjectedGradient

SOLVERS: dict[str, type[AbstractSolver]] = {
    cls.name: cls for cls in (LBFGS, LockstepLBFGS, GradientDescent, Adam, ProjectedGradient)
}
"""Canonical name → solver class."""

ALIASES: dict[str, str] = {alias: cls.name for cls in SOLVERS.values() for alias in cls.aliases}
"""Short name → canonical name (`lockstep`, `gd`, `pg`)."""

AUTO = "auto"
"""The method name that picks `default_solver(problem)`."""


def solver_names() -> tuple[str, ...]:
    """Every accepted method name: `auto`, the canonical names, then the aliases."""
    return (AUTO, *SOLVERS, *ALIASES)


def canonical_solver_name(name: str, parameter: str = "solver") -> str:
    """The canonical name of `name` (an alias resolved; `auto` kept).

    **Raises:** `ValueError` naming `parameter` and the allowed names.
    """
    V.choice(parameter, name, solver_names())
    return ALIASES.get(name, name)


def default_solver(problem: Problem) -> AbstractSolver:
    """`LockstepLBFGS`, or the spectral projected gradient method when `H >= 0` (L-BFGS has no
    projection).

    Lock-step L-BFGS, not optax's zoom L-BFGS: under `vmap` a zoom line search iterates until the
    slowest problem of the batch is done, so a batch of starts costs several times more (measured in
    `benchmarks/README.md`); lock-step trials cost one batched value-and-gradient per iteration in the
    common case. Both converge in float32 and float64. On the deep-linear trap point of
    `examples/seed004_dang_deep_linear.toml` (L = 6, λ = 0.0041) optax's L-BFGS reached the global
    minimum from 22 of 128 starts in 6.0 s, lock-step L-BFGS from 10 of 128 in 2.0 s: fewer per start,
    more per second; multi-start is what guards against such traps."""
    return ProjectedGradient() if problem.nonneg else LockstepLBFGS()


def make_solver(name: str | None, problem: Problem, parameter: str = "solver",
                **options) -> AbstractSolver:
    """The solver called `name` (`None` or `auto`: `default_solver(problem)`), with `options` (e.g.
    `max_steps`, `gtol`; `None` values are left at the solver's default), checked against `problem`.

    **Raises:** `ValueError` for an unknown name, a bad option value, or a solver that cannot handle the
    problem (`H >= 0` needs a projection).
    """
    name = canonical_solver_name(AUTO if name is None else name, parameter)
    options = {k: v for k, v in options.items() if v is not None}
    cls = type(default_solver(problem)) if name == AUTO else SOLVERS[name]
    solver = cls(**options)
    check_solver(problem, solver, parameter)
    return solver


def check_solver(problem: Problem, solver, parameter: str = "solver") -> None:
    """Refuse a non-solver, or a solver without a projection for an `H >= 0` problem."""
    if not isinstance(solver, AbstractSolver):
        raise V.fail(parameter, solver, f"expected a solver instance ({', '.join(c.__name__ for c in SOLVERS.values())})")
    if problem.nonneg and not solver.supports_projection:
        allowed = [name for name, cls in SOLVERS.items() if cls.supports_projection]
        raise V.fail(parameter, solver.name, f"H >= 0 (nonneg) needs a solver with a projection: "
                     f"{', '.join(allowed)}")
