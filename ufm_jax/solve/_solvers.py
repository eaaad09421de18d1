"""Solvers: frozen modules whose fields are hyperparameters, each with `init` and `step`.

L-BFGS, gradient descent and Adam are optax's; the spectral projected gradient method (SPG) for the
`H >= 0` constraint is written here because neither optax nor optimistix has a bound-constrained
method. Every solver stops on the (projected) gradient norm: `‖x − P(x − ∇f)‖ <= gtol`.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, PyTree, Scalar

from .. import _validation as V

Fn = Callable[[PyTree], Scalar]
Project = Callable[[PyTree], PyTree]


def where_rows(mask, new, old):
    """Row-wise select between two pytrees whose leaves have a leading batch axis: row `i` of `new`
    where `mask[i]`, else of `old`; 0-d leaves (a solver's shared clock) are taken from `old`."""

    def pick(a, b):
        if jnp.ndim(b) == 0:
            return b
        return jnp.where(mask.reshape(mask.shape + (1,) * (jnp.ndim(b) - 1)), a, b)

    return jax.tree.map(pick, new, old)


def tree_dot(a, b) -> Array:
    return sum(jnp.vdot(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


class AbstractSolver(eqx.Module):
    """A minimiser of `fn(x)` over pytrees, optionally with a projection onto a convex set.

    `init(fn, x, value, grad) -> state`; `step(fn, project, x, value, grad, state) ->
    (x, value, grad, state)`. Subclasses are final (equinox's abstract/final pattern).
    """

    max_steps: eqx.AbstractVar[int]
    gtol: eqx.AbstractVar[float | None]
    supports_projection: eqx.AbstractClassVar[bool]
    # The coordinates the solver works in (`_minimise._scales`): "balanced" or "sample".
    coordinates: eqx.AbstractVar[str]
    # The registry name (CLI `--solver` = config `solver.method`) and its short aliases.
    name: eqx.AbstractClassVar[str]
    aliases: eqx.AbstractClassVar[tuple[str, ...]]

    def __check_init__(self):
        V.integer("max_steps", self.max_steps, 1)
        if self.gtol is not None:
            V.positive("gtol", self.gtol)
        V.choice("coordinates", self.coordinates, ("balanced", "sample"))

    @abc.abstractmethod
    def init(self, fn: Fn, x, value, grad): ...

    @abc.abstractmethod
    def step(self, fn: Fn, project: Project, x, value, grad, state): ...

    # The batch interface used by `minimise_batch`: `x` is `(B, n)`, `value` `(B,)`, and
    # `fn(x_i, problem_i)` is the objective of one problem. By default every problem runs its own
    # `init`/`step` (`vmap`), and problems not `active` keep their iterate and state. A solver that
    # works on the whole batch at once (`LockstepLBFGS`) overrides all three.

    def init_batch(self, fn, problems, x, value, grad):
        return jax.vmap(lambda p, *a: self.init(lambda z: fn(z, p), *a))(problems, x, value, grad)

    def reset_batch(self, fn, problems, state, mask, x, value, grad):
        """The state with rows `mask` started afresh at `x` (a new problem took those slots)."""
        return jax.lax.cond(jnp.any(mask),
                            lambda s: where_rows(mask, self.init_batch(fn, problems, x, value, grad), s),
                            lambda s: s, state)

    def step_batch(self, fn, project: Project, problems, x, value, grad, state, active):
        def one(p, *args):
            return self.step(lambda z: fn(z, p), project, *args)

        new = jax.vmap(one)(problems, x, value, grad, state)
        keep = lambda a, b: jnp.where(active.reshape(active.shape + (1,) * (a.ndim - 1)), a, b)  # noqa: E731
        return jax.tree.map(keep, new, (x, value, grad, state))


class _OptaxSolver(AbstractSolver):
    """Shared step for solvers that are an optax gradient transformation."""

    evaluates_in_linesearch: eqx.AbstractClassVar[bool]

    @abc.abstractmethod
    def transformation(self) -> optax.GradientTransformationExtraArgs: ...

    def init(self, fn, x, value, grad):
        return self.transformation().init(x)

    def step(self, fn, project, x, value, grad, state):
        opt = self.transformation()
        updates, state = opt.update(grad, state, x, value=value, grad=grad, value_fn=fn)
        x = project(optax.apply_updates(x, updates))
        if self.evaluates_in_linesearch:
            # The line search already evaluated f and ∇f at the accepted point.
            value, grad = optax.value_and_grad_from_state(fn)(x, state=state)
        else:
            value, grad = jax.value_and_grad(fn)(x)
        return x, value, grad, state


class LBFGS(_OptaxSolver):
    """L-BFGS with optax's zoom line search (strong Wolfe conditions); the default solver."""

    max_steps: int = 5000
    gtol: float | None = None
    memory_size: int = 10
    max_linesearch_steps: int = 30
    coordinates: str = "balanced"
    supports_projection: ClassVar[bool] = False
    evaluates_in_linesearch: ClassVar[bool] = True
    name: ClassVar[str] = "lbfgs"
    aliases: ClassVar[tuple[str, ...]] = ()

    def __check_init__(self):
        V.integer("memory_size", self.memory_size, 1)
        V.integer("max_linesearch_steps", self.max_linesearch_steps, 1)

    def transformation(self):
        linesearch = optax.scale_by_zoom_linesearch(
            max_linesearch_steps=self.max_linesearch_steps, initial_guess_strategy="one"
        )
        return optax.lbfgs(memory_size=self.memory_size, linesearch=linesearch)


class GradientDescent(_OptaxSolver):
    """(Heavy-ball) gradient descent, `x ← x − lr ∇f + momentum·(previous step)` (optax.sgd).

    With `coordinates="sample"` the step is taken on the original parameters, per sample column:
    training dynamics as in the papers' experiments (`GradientDescent(learning_rate=0.1, momentum=0.9,
    coordinates="sample")` with `solve(..., history=k)` records collapse over training); the default
    `"balanced"` coordinates precondition by `√λ` (see `ufm_jax.solve.minimise_batch`)."""

    learning_rate: float = 0.1
    momentum: float | None = None
    max_steps: int = 100_000
    gtol: float | None = None
    coordinates: str = "balanced"
    supports_projection: ClassVar[bool] = True
    evaluates_in_linesearch: ClassVar[bool] = False
    name: ClassVar[str] = "gradient_descent"
    aliases: ClassVar[tuple[str, ...]] = ("gd",)

    def __check_init__(self):
        V.positive("learning_rate", self.learning_rate)
        if self.momentum is not None and not (0 <= self.momentum < 1):
            raise V.fail("momentum", self.momentum, "expected a number in [0, 1) or None")

    def transformation(self):
        return optax.sgd(self.learning_rate, momentum=self.momentum)


class Adam(_OptaxSolver):
    """Adam (optax.adam)."""

    learning_rate: float = 1e-2
    max_steps: int = 100_000
    gtol: float | None = None
    coordinates: str = "balanced"
    supports_projection: ClassVar[bool] = True
    evaluates_in_linesearch: ClassVar[bool] = False
    name: ClassVar[str] = "adam"
    aliases: ClassVar[tuple[str, ...]] = ()

    def __check_init__(self):
        V.positive("learning_rate", self.learning_rate)

    def transformation(self):
        return optax.adam(self.learning_rate)


class _SPGState(eqx.Module):
    alpha: Array
    recent: Array  # the last `memory` objective values, for the non-monotone Armijo test


class ProjectedGradient(AbstractSolver):
    """Spectral projected gradient (Birgin, Martínez & Raydan 2000), for `H >= 0`.

    Direction `d = P(x − α∇f) − x` with the Barzilai–Borwein step `α = sᵀs / sᵀy` (clipped), and a
    non-monotone Armijo backtracking `f(x + t d) <= max(recent f) + γ t ∇fᵀd`, halving `t`.
    """

    max_steps: int = 20_000
    gtol: float | None = None
    coordinates: str = "balanced"
    memory: int = 10
    gamma: float = 1e-4
    alpha_min: float = 1e-10
    alpha_max: float = 1e10
    max_backtracks: int = 40
    supports_projection: ClassVar[bool] = True
    name: ClassVar[str] = "projected_gradient"
    aliases: ClassVar[tuple[str, ...]] = ("pg",)

    def __check_init__(self):
        V.integer("memory", self.memory, 1)
        V.integer("max_backtracks", self.max_backtracks, 1)
        if not 0 < self.gamma < 1:
            raise V.fail("gamma", self.gamma, "expected a number in (0, 1)")
        if not 0 < self.alpha_min <= self.alpha_max:
            raise V.fail("alpha_min", self.alpha_min, f"expected 0 < alpha_min <= alpha_max = {self.alpha_max}")

    def init(self, fn, x, value, grad):
        alpha = 1 / jnp.maximum(jnp.sqrt(tree_dot(grad, grad)), 1.0)
        return _SPGState(alpha.astype(value.dtype), jnp.full(self.memory, value))

    def step(self, fn, project, x, value, grad, state):
        target = project(jax.tree.map(lambda a, g: a - state.alpha * g, x, grad))
        direction = jax.tree.map(jnp.subtract, target, x)
        slope = tree_dot(grad, direction)
        reference = jnp.max(state.recent)

        def trial(t):
            return fn(jax.tree.map(lambda a, d: a + t * d, x, direction))

        def cond(carry):
            t, f_t, k = carry
            armijo = f_t <= reference + self.gamma * t * slope
            return (~armijo | ~jnp.isfinite(f_t)) & (k < self.max_backtracks)

        def body(carry):
            t, _, k = carry
            return t / 2, trial(t / 2), k + 1

        one = jnp.ones((), value.dtype)
        t, _, _ = jax.lax.while_loop(cond, body, (one, trial(one), 0))
        new_x = jax.tree.map(lambda a, d: a + t * d, x, direction)
        new_value, new_grad = jax.value_and_grad(fn)(new_x)
        s = jax.tree.map(jnp.subtract, new_x, x)
        y = jax.tree.map(jnp.subtract, new_grad, grad)
        sy, ss = tree_dot(s, y), tree_dot(s, s)
        alpha = jnp.where(sy > 0, ss / jnp.where(sy > 0, sy, 1), self.alpha_max)
        alpha = jnp.clip(alpha, self.alpha_min, self.alpha_max)
        recent = jnp.roll(state.recent, 1).at[0].set(new_value)
        return new_x, new_value, new_grad, _SPGState(alpha, recent)
