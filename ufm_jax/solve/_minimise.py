"""The iteration loop shared by all solvers, and the balanced coordinates it runs in."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from .._params import Params
from .._problem import Problem
from ..losses import objective
from . import _results as R
from ._solvers import AbstractSolver, tree_dot

# Incremented each time the single-problem solve is traced: tests use it to prove that new λ's or
# class sizes reuse the compiled program.
TRACE_COUNT = [0]


def _scales(problem: Problem) -> Params:
    """Per-entry factors `s` with `x̃ = s·x`: `√λ_{W,l}` on `W_l`, `√(λ_H w_kj)` on column `h_kj`, `√λ_b` on
    a regularised bias (1 on a free one).

    In these *balanced coordinates* every penalty is `½‖x̃‖²`, so `W` and `H` enter on one scale whatever
    `λ` and `n_k` are (at a minimum `λ_W‖W‖² = λ_H‖H‖²`). This is a diagonal preconditioner: minimisers
    map one-to-one, and results are always returned in the original coordinates. Padding columns
    (`w_kj = 0`) get scale 0 and are pinned at zero.
    """
    weights = tuple(jnp.sqrt(lam) for lam in problem.lam_w)
    features = jnp.sqrt(problem.lam_h * problem.column_weights)[..., None]
    bias = jnp.sqrt(problem.lam_b) if problem.bias == "regularised" else jnp.ones_like(problem.lam_b)
    return Params(weights, features, bias)


def to_balanced(params: Params, problem: Problem) -> Params:
    return jax.tree.map(lambda x, s: x * s, params, _scales(problem))


def from_balanced(balanced: Params, problem: Problem) -> Params:
    def unscale(x, s):
        positive = s > 0
        return jnp.where(positive, x / jnp.where(positive, s, 1), 0)

    return jax.tree.map(unscale, balanced, _scales(problem))


def _project(problem: Problem):
    if not problem.nonneg:
        return lambda x: x
    return lambda x: eqx.tree_at(lambda p: p.features, x, jnp.maximum(x.features, 0))


def _stationarity(x, grad, project) -> Array:
    """`‖x − P(x − ∇f)‖`: the gradient norm without constraints, the projected one with `H >= 0`."""
    residual = jax.tree.map(jnp.subtract, x, project(jax.tree.map(jnp.subtract, x, grad)))
    return jnp.sqrt(tree_dot(residual, residual))


def default_gtol(dtype) -> float:
    """1e-9 in float64, 1e-4 in float32 (the gradient in balanced coordinates)."""
    return 1e-9 if jnp.dtype(dtype) == jnp.float64 else 1e-4


class SingleResult(eqx.Module):
    params: Params
    objective: Float[Array, ""]
    grad_norm: Float[Array, ""]
    iterations: Int[Array, ""]
    status: Int[Array, ""]


def minimise_problem(problem: Problem, start: Params, solver: AbstractSolver) -> SingleResult:
    """Minimise one (unbatched) problem from `start`, in balanced coordinates.

    Stops when the (projected) gradient norm in balanced coordinates is `<= gtol` (`converged`), after
    `max_steps` (`max_steps`), when `f` or `∇f` is not finite (`nonfinite`: the last finite iterate is
    kept), or when `f` exceeds `1e6 (1 + |f_0|)` (`diverged`).
    """
    TRACE_COUNT[0] += 1
    dtype = problem.lam_h.dtype
    gtol = default_gtol(dtype) if solver.gtol is None else solver.gtol
    project = _project(problem)

    def fn(x):
        return objective(from_balanced(x, problem), problem)

    x0 = project(to_balanced(start, problem))
    v0, g0 = jax.value_and_grad(fn)(x0)
    state0 = solver.init(fn, x0, v0, g0)
    limit = 1e6 * (1 + jnp.abs(v0))

    def classify(x, value, grad, step):
        gnorm = _stationarity(x, grad, project)
        finite = jnp.isfinite(value) & jnp.isfinite(gnorm)
        status = jnp.where(
            ~finite, R.NONFINITE,
            jnp.where(value > limit, R.DIVERGED,
                      jnp.where(gnorm <= gtol, R.CONVERGED,
                                jnp.where(step >= solver.max_steps, R.MAX_STEPS, R._RUNNING))))
        return gnorm, status

    gnorm0, status0 = classify(x0, v0, g0, 0)
    carry0 = (x0, v0, g0, state0, jnp.asarray(0), gnorm0, status0, x0, v0)

    def cond(carry):
        return carry[6] == R._RUNNING

    def body(carry):
        x, value, grad, state, step, _, _, last_x, last_v = carry
        x, value, grad, state = solver.step(fn, project, x, value, grad, state)
        step = step + 1
        gnorm, status = classify(x, value, grad, step)
        ok = jnp.isfinite(value)
        last_x = jax.tree.map(lambda a, b: jnp.where(ok, a, b), x, last_x)
        last_v = jnp.where(ok, value, last_v)
        return x, value, grad, state, step, gnorm, status, last_x, last_v

    _, _, _, _, steps, gnorm, status, x, value = jax.lax.while_loop(cond, body, carry0)
    return SingleResult(from_balanced(x, problem), value, gnorm, steps, status)
