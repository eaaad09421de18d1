"""A batch-friendly L-BFGS: the same work in every iteration for every problem of a batch.

Why a separate solver. Under `vmap`, optax's L-BFGS runs its zoom line search as a `while_loop`; a
batched `while_loop` iterates until the slowest problem of the batch is done, and each round is a
full batched function evaluation. So a batch costs (max over problems of the line-search length)
per iteration, and the zoom search's nested loops make the program slow to compile.

`LockstepLBFGS` replaces the line search by a *fixed* set of trial steps `t_j = τ ρ^j`
(`j < num_trials`) evaluated in one vectorised call: every problem does `num_trials` objective
evaluations and one gradient per iteration, with no data-dependent loop inside the iteration. The
outer loop of `minimise_problem` is the only `while_loop`; under `vmap` it runs while any problem
runs, and finished problems are masked (their iterate is frozen, both by the batched loop's select
and by the solver's own mask).
"""

from __future__ import annotations

from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, Float

from ._minimise import default_gtol
from ._solvers import AbstractSolver


class _LockstepState(eqx.Module):
    # The memory in time order, oldest first, newest in row M−1. A new pair shifts the rows (one
    # copy of the memory) rather than overwriting a slot of a circular buffer: under `vmap` a
    # per-problem slot index turns every read and write into a gather/scatter; with the shift every
    # index is static. (Measured: no faster on CPU, but simpler; the copy is in the byte count.)
    s: Float[Array, "M n"]  # steps x_{k+1} − x_k
    y: Float[Array, "M n"]  # gradient changes
    rho: Float[Array, " M"]  # 1 / sᵀy; 0 marks an empty row (it then drops out of the two-loop)
    gamma: Float[Array, ""]  # initial inverse-Hessian scale sᵀy / yᵀy of the newest pair
    scale: Float[Array, ""]  # τ, the largest trial step (shrinks after a failed trial set)


class LockstepLBFGS(AbstractSolver):
    """L-BFGS with a fixed-size, vectorised line search, so a `vmap`ped batch runs in lock-step.

    Direction `d = −H_k ∇f` by the L-BFGS two-loop recursion (Nocedal & Wright 2006, Alg. 7.4)
    with `H_0 = γ I`, `γ = sᵀy / yᵀy`. Trial steps `t_j = τ ρ^j`, `j = 0..num_trials−1`, are
    evaluated in one `vmap`ped call; the largest `t_j` that satisfies the Armijo condition

        f(x + t d) <= f(x) + c₁ t ∇fᵀd + ε_f |f(x)|

    is taken (`ε_f` absorbs round-off, so the iteration can reach `‖∇f‖ ≈ 1e-9` in float64, where
    `f` no longer changes in its 16th digit). If none qualifies, `x` stays, the memory is cleared
    and `τ` shrinks by `ρ^num_trials`: the next iteration is a (scaled) steepest-descent step with
    smaller trials. `τ` grows back by `1/ρ` (to at most 1) whenever the largest trial is taken. A
    pair `(s, y)` enters the memory only if `sᵀy > 1e-10 ‖s‖ ‖y‖` (there is no Wolfe curvature
    test without trial gradients).

    Cost per iteration: `num_trials` objective evaluations plus one gradient, for every problem.

    **Arguments:**

    - `max_steps`: iteration limit.
    - `gtol`: gradient-norm tolerance (balanced coordinates); `None` is 1e-9 (float64) / 1e-4
      (float32). Problems at or below it are masked: `step` returns them unchanged.
    - `memory_size`: number of `(s, y)` pairs kept.
    - `num_trials`: trial steps per iteration.
    - `shrink`: `ρ`, the ratio between consecutive trial steps, in `(0, 1)`.
    - `armijo`: `c₁`.
    - `f_rtol`: `ε_f`, the relative round-off allowance in the Armijo test.
    """

    max_steps: int = 5000
    gtol: float | None = None
    memory_size: int = 10
    num_trials: int = 4
    shrink: float = 0.3
    armijo: float = 1e-4
    f_rtol: float = 1e-14
    supports_projection: ClassVar[bool] = False

    def __check_init__(self):
        if not (0 < self.shrink < 1):
            raise ValueError(f"shrink={self.shrink!r} is not allowed: expected a number in (0, 1).")
        for name in ("memory_size", "num_trials", "max_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r} is not allowed: expected an integer >= 1.")

    def init(self, fn, x, value, grad):
        flat, _ = ravel_pytree(x)
        dtype = flat.dtype
        flat_g, _ = ravel_pytree(grad)
        gnorm = jnp.sqrt(jnp.vdot(flat_g, flat_g))
        # First direction −γ∇f with ‖γ∇f‖ <= 1: a unit-length step at most, in balanced coordinates
        # where the minimiser is O(1).
        gamma = 1 / jnp.maximum(gnorm, 1).astype(dtype)
        zeros = jnp.zeros((self.memory_size, flat.size), dtype)
        return _LockstepState(zeros, zeros, jnp.zeros(self.memory_size, dtype), gamma,
                              jnp.ones((), dtype))

    def _direction(self, g: Array, state: _LockstepState) -> Array:
        """`−H g` by the two-loop recursion: newest pair first, then oldest first.

        Scans over the rows of the memory (static slices, no gathers); empty rows have `ρ = 0` and
        contribute nothing.
        """

        def newest_first(q, row):
            s, y, rho = row
            a = rho * jnp.vdot(s, q)
            return q - a * y, a

        q, alphas = jax.lax.scan(newest_first, g, (state.s, state.y, state.rho), reverse=True)

        def oldest_first(r, row):
            s, y, rho, a = row
            b = rho * jnp.vdot(y, r)
            return r + (a - b) * s, None

        r, _ = jax.lax.scan(oldest_first, state.gamma * q, (state.s, state.y, state.rho, alphas))
        return -r

    def step(self, fn, project, x, value, grad, state: _LockstepState):
        flat_x, unravel = ravel_pytree(x)
        flat_g, _ = ravel_pytree(grad)
        dtype = flat_x.dtype
        gtol = default_gtol(dtype) if self.gtol is None else self.gtol
        done = jnp.sqrt(jnp.vdot(flat_g, flat_g)) <= gtol

        direction = self._direction(flat_g, state)
        slope = jnp.vdot(flat_g, direction)
        # A non-descent (or non-finite) quasi-Newton direction: use steepest descent this iteration.
        bad = ~(slope < 0) | ~jnp.all(jnp.isfinite(direction))
        direction = jnp.where(bad, -state.gamma * flat_g, direction)
        slope = jnp.where(bad, -state.gamma * jnp.vdot(flat_g, flat_g), slope)

        ratios = jnp.asarray(self.shrink, dtype) ** jnp.arange(self.num_trials, dtype=dtype)
        steps = state.scale * ratios
        trial_values = jax.vmap(lambda t: fn(unravel(flat_x + t * direction)))(steps)
        allowance = self.f_rtol * jnp.abs(value)
        bound = value + self.armijo * steps * slope + allowance
        ok = jnp.isfinite(trial_values) & (trial_values <= bound)
        found = jnp.any(ok)
        first = jnp.argmax(ok)  # the largest qualifying step (steps are decreasing)
        t = jnp.where(found, steps[first], 0)

        new_flat = flat_x + t * direction
        new_x = unravel(new_flat)
        new_value, new_grad = jax.value_and_grad(fn)(new_x)
        new_flat_g, _ = ravel_pytree(new_grad)

        s = new_flat - flat_x
        y = new_flat_g - flat_g
        sy = jnp.vdot(s, y)
        yy = jnp.vdot(y, y)
        curvature = found & (sy > 1e-10 * jnp.sqrt(jnp.vdot(s, s) * yy)) & jnp.isfinite(sy)

        def shift(rows, new):
            return jnp.where(curvature, jnp.concatenate([rows[1:], new[None]]), rows)

        rho = shift(state.rho, 1 / jnp.where(curvature, sy, 1))
        # A failed trial set clears the memory (the next direction is steepest descent).
        rho = jnp.where(found, rho, jnp.zeros_like(rho))
        new_state = _LockstepState(
            s=shift(state.s, s),
            y=shift(state.y, y),
            rho=rho,
            gamma=jnp.where(curvature, sy / jnp.where(curvature, yy, 1), state.gamma),
            scale=jnp.where(
                found,
                jnp.where(first == 0, jnp.minimum(state.scale / self.shrink, 1), state.scale),
                state.scale * self.shrink**self.num_trials,
            ).astype(dtype),
        )
        # Failed trial set: keep x (the value and gradient there are recomputed identically).
        new_x = jax.tree.map(lambda a, b: jnp.where(found, a, b), new_x, x)
        new_value = jnp.where(found, new_value, value)
        new_grad = jax.tree.map(lambda a, b: jnp.where(found, a, b), new_grad, grad)

        # Mask converged problems: nothing changes.
        keep = lambda a, b: jnp.where(done, b, a)  # noqa: E731
        new_x = jax.tree.map(keep, new_x, x)
        new_value = keep(new_value, value)
        new_grad = jax.tree.map(keep, new_grad, grad)
        new_state = jax.tree.map(keep, new_state, state)
        return new_x, new_value, new_grad, new_state
