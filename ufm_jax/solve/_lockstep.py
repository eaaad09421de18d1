"""A batch-native L-BFGS: the same work in every iteration for every problem of a batch.

Why a separate solver. Under `vmap`, optax's L-BFGS runs its zoom line search as a `while_loop`; a
batched `while_loop` iterates until the slowest problem of the batch is done, and each round is a
full batched function evaluation. So a batch costs (max over problems of the line-search length)
per iteration, and the zoom search's nested loops make the program slow to compile.

`LockstepLBFGS` replaces the line search by a *fixed* set of trial steps `t_j = τ ρ^j`
(`j < num_trials`), each evaluated for the whole batch: every problem does `num_trials` objective
evaluations and one gradient per iteration, with no data-dependent loop inside the iteration. It
works on the whole batch at once (`init_batch`/`step_batch`), not problem by problem under `vmap`:
the batch shares one iteration clock, so the L-BFGS memory is a circular buffer `(B, M, n)` whose
write row `k mod M` is the same for every problem (an in-place write, not a per-problem scatter or
a shift of the whole memory). The direction uses the compact representation of the L-BFGS matrix
with inner products kept up to date, so an iteration reads the memory in two matrix products
rather than in the two-loop recursion's 2M dependent passes. What each choice measured is in
`benchmarks/README.md` (`benchmarks/compare_commits.py`).
"""

from __future__ import annotations

from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int

from .. import _validation as V
from ._minimise import default_gtol
from ._solvers import AbstractSolver


class _LockstepState(eqx.Module):
    # A circular buffer shared by the batch: pair k (k = 0, 1, ...) is written to row k mod M, so
    # rows (count + i) mod M, i = 0..M−1, are the pairs oldest first. A row is used only if `valid`
    # (a pair that failed the curvature test, or an empty row, is not).
    s: Float[Array, "B M n"]  # steps x_{k+1} − x_k
    y: Float[Array, "B M n"]  # gradient changes
    valid: Bool[Array, "B M"]
    sy: Float[Array, "B M M"]  # s_aᵀ y_b, by row (not time order)
    yy: Float[Array, "B M M"]  # y_aᵀ y_b
    s_grad: Float[Array, "B M"]  # s_aᵀ ∇f at the current iterate
    y_grad: Float[Array, "B M"]  # y_aᵀ ∇f
    gamma: Float[Array, " B"]  # initial inverse-Hessian scale sᵀy / yᵀy of the newest pair
    scale: Float[Array, " B"]  # τ, the largest trial step (shrinks after a failed trial set)
    count: Int[Array, ""]  # iterations taken by the batch: the clock of the circular buffer


def _compact_direction(g: Float[Array, "B n"], state: _LockstepState):
    """`−H g` from the compact representation of the L-BFGS matrix (Byrd, Nocedal & Schnabel 1994,
    Thm 2.2; Nocedal & Wright 2006, eq. 7.24), with `H_0 = γI` and the pairs in time order:

        H = γI + [S  γY] [[R⁻ᵀ(D + γYᵀY)R⁻¹, −R⁻ᵀ], [−R⁻¹, 0]] [Sᵀ; γYᵀ],

    `R` the upper triangle of `SᵀY` (time order), `D` its diagonal. With `u = Sᵀg`, `w = γYᵀg`:
    `p₂ = −R⁻¹u`, `p₁ = R⁻ᵀ((D + γYᵀY)(−p₂) − w)`, `Hg = γg + S p₁ + γY p₂`. The inner products
    are kept up to date by `step_batch`, so this reads the memory once (the two-loop recursion reads
    it twice, in 2M dependent passes). Invalid rows get an identity row in `R` and zeros elsewhere:
    they drop out. Returns `−Hg` and the coefficients `p₁`, `γp₂` of the rows of `S` and `Y`.
    """
    m = state.valid.shape[-1]
    eye = jnp.eye(m, dtype=g.dtype)
    order = (state.count + jnp.arange(m)) % m  # rows, oldest first
    valid = state.valid[:, order]
    both = valid[:, :, None] & valid[:, None, :]
    sy = state.sy[:, order][:, :, order]
    r = jnp.where(both & jnp.triu(jnp.ones((m, m), bool))[None], sy, 0) + jnp.where(
        valid, 0.0, 1.0)[:, :, None] * eye[None]
    d = jnp.where(valid, jnp.diagonal(sy, axis1=1, axis2=2), 0)
    gamma = state.gamma
    yy = jnp.where(both, state.yy[:, order][:, :, order], 0)
    u = jnp.where(valid, state.s_grad[:, order], 0)
    w = jnp.where(valid, gamma[:, None] * state.y_grad[:, order], 0)
    solve = jax.scipy.linalg.solve_triangular
    p2 = -solve(r, u[..., None], lower=False)[..., 0]
    rhs = -(d[:, :, None] * eye[None] + gamma[:, None, None] * yy) @ p2[..., None]
    p1 = solve(r, rhs - w[..., None], trans="T", lower=False)[..., 0]
    back = (jnp.arange(m) - state.count) % m  # row a holds time index back[a]
    on_s, on_y = p1[:, back], gamma[:, None] * p2[:, back]
    hg = (gamma[:, None] * g + jnp.einsum("bmn,bm->bn", state.s, on_s)
          + jnp.einsum("bmn,bm->bn", state.y, on_y))
    return -hg, on_s, on_y


class LockstepLBFGS(AbstractSolver):
    """L-BFGS whose line search runs in lock-step over a batch.

    Direction `d = −H_k ∇f` with the L-BFGS matrix `H_k` (Nocedal & Wright 2006, §7.2), `H_0 = γ I`,
    `γ = sᵀy / yᵀy`, in its compact representation (`_compact_direction`). Step: the first of the trials
    `t = τ, τρ, τρ², …` (at most `num_trials`) that satisfies the Armijo condition

        f(x + t d) <= f(x) + c₁ t ∇fᵀd + ε_f |f(x)|

    (`ε_f` absorbs round-off, so the iteration can reach a gradient norm at the floor of the
    precision, where `f` no longer changes in its last digit). The first trial is evaluated with its
    gradient for the whole batch, and an L-BFGS step is accepted there in most iterations: the common
    iteration costs one batched value-and-gradient. Further trials are batch-wide rounds of values,
    run only while some problem still fails the test. If none qualifies, `x` stays, the memory is
    cleared and `τ` shrinks by `ρ^num_trials`: the next iteration is a (scaled) steepest-descent step
    with smaller trials. `τ` grows back by `1/ρ` (to at most 1) whenever the first trial is taken. A
    pair `(s, y)` enters the memory only if `sᵀy > 1e-10 ‖s‖ ‖y‖` (there is no Wolfe curvature test
    without trial gradients).

    **Arguments:**

    - `max_steps`: iteration limit.
    - `gtol`: gradient-norm tolerance (balanced coordinates); `None`: the precision's default (1e-9
      in float64, 1e-4 in float32). Problems that have stopped are masked: `step_batch` leaves them
      unchanged.
    - `memory_size`: number of `(s, y)` pairs kept.
    - `num_trials`: the most trial steps per iteration.
    - `shrink`: `ρ`, the ratio between consecutive trial steps, in `(0, 1)`.
    - `armijo`: `c₁`.
    - `f_rtol`: `ε_f`, the relative round-off allowance in the Armijo test; `None`: 64 machine epsilons
      of the working precision (1.4e-14 in float64, 7.6e-6 in float32).
    """

    max_steps: int = 5000
    gtol: float | None = None
    coordinates: str = "balanced"
    memory_size: int = 10
    num_trials: int = 4
    shrink: float = 0.3
    armijo: float = 1e-4
    f_rtol: float | None = None
    supports_projection: ClassVar[bool] = False
    name: ClassVar[str] = "lockstep_lbfgs"
    aliases: ClassVar[tuple[str, ...]] = ("lockstep",)

    def __check_init__(self):
        if not (0 < self.shrink < 1):
            raise V.fail("shrink", self.shrink, "expected a number in (0, 1)")
        if not (0 < self.armijo < 1):
            raise V.fail("armijo", self.armijo, "expected a number in (0, 1)")
        V.integer("memory_size", self.memory_size, 1)
        V.integer("num_trials", self.num_trials, 1)
        if self.f_rtol is not None and not (0 <= self.f_rtol < 1):
            raise V.fail("f_rtol", self.f_rtol, "expected a number in [0, 1) (or None: 64 machine epsilons)")

    def init_batch(self, fn, problems, x, value, grad) -> _LockstepState:
        dtype = x.dtype
        # First direction −γ∇f with ‖γ∇f‖ <= 1: a unit-length step at most, in balanced coordinates
        # where the minimiser is O(1).
        gamma = 1 / jnp.maximum(jnp.linalg.norm(grad, axis=-1), 1).astype(dtype)
        (batch, n), m = x.shape, self.memory_size
        rows = jnp.zeros((batch, m, n), dtype)
        gram = jnp.zeros((batch, m, m), dtype)
        vec = jnp.zeros((batch, m), dtype)
        return _LockstepState(rows, rows, jnp.zeros((batch, m), bool), gram, gram, vec, vec, gamma,
                              jnp.ones(batch, dtype), jnp.zeros((), int))

    def reset_batch(self, fn, problems, state: _LockstepState, mask, x, value, grad) -> _LockstepState:
        """Rows `mask` start afresh: their memory is marked invalid (its contents are never read
        again with a nonzero weight, so the memory itself is not touched) and `γ`, `τ` restart."""
        fresh = self.init_batch(fn, problems, x[:, :0], value, grad)
        return eqx.tree_at(
            lambda s: (s.valid, s.gamma, s.scale), state,
            (jnp.where(mask[:, None], False, state.valid), jnp.where(mask, fresh.gamma, state.gamma),
             jnp.where(mask, fresh.scale, state.scale)))

    def _line_search(self, fn, problems, x, value, grad, direction, slope, scale, active):
        """Armijo backtracking in lock-step: `t = τ, τρ, τρ², …` (at most `num_trials` values).

        The first trial is evaluated with its gradient, for the whole batch: an L-BFGS direction is
        accepted at `t = τ` in most iterations, and its gradient is needed there anyway. Only if some
        active problem fails the test does the batch evaluate further trials, one round per trial,
        each round a batch of values; problems that already passed keep their step. Returns the step
        `t` (0 where none passed), whether one passed, whether it was the first, and the value and
        gradient at `x + t d`.
        """
        dtype = x.dtype
        f_rtol = 64 * jnp.finfo(dtype).eps if self.f_rtol is None else self.f_rtol
        bound = value + f_rtol * jnp.abs(value)  # the round-off allowance (class docstring)

        def armijo(t, v):
            return jnp.isfinite(v) & (v <= bound + self.armijo * t * slope)

        value_and_grad = jax.vmap(jax.value_and_grad(fn))
        v1, g1 = value_and_grad(x + scale[:, None] * direction, problems)
        first = armijo(scale, v1)

        def more(carry):
            t, ok, k = carry
            return jnp.any(active & ~ok) & (k < self.num_trials)

        def backtrack(carry):
            t, ok, k = carry
            trial = jnp.where(ok, t, t * self.shrink)
            passed = ok | armijo(trial, jax.vmap(fn)(x + trial[:, None] * direction, problems))
            return trial, passed, k + 1

        t, found, _ = jax.lax.while_loop(more, backtrack, (scale, first, jnp.asarray(1)))
        t = jnp.where(found, t, 0).astype(dtype)
        # The gradient at an accepted later trial: one more batch evaluation, only when some problem
        # needed one (rare).
        later = active & found & ~first
        value_t, grad_t = jax.lax.cond(
            jnp.any(later), lambda: value_and_grad(x + t[:, None] * direction, problems),
            lambda: (v1, g1))
        value_t = jnp.where(first, v1, value_t)
        grad_t = jnp.where(first[:, None], g1, grad_t)
        return t, found, first, value_t, grad_t

    def step_batch(self, fn, project, problems, x, value, grad, state: _LockstepState,
                   active: Bool[Array, " B"]):
        dot = lambda a, b: jnp.sum(a * b, axis=-1)  # noqa: E731

        direction, on_s, on_y = _compact_direction(grad, state)
        slope = dot(grad, direction)
        # A non-descent (or non-finite) quasi-Newton direction: use steepest descent this iteration.
        bad = ~(slope < 0) | ~jnp.all(jnp.isfinite(direction), axis=-1)
        direction = jnp.where(bad[:, None], -state.gamma[:, None] * grad, direction)
        slope = jnp.where(bad, -state.gamma * dot(grad, grad), slope)

        t, found, first, new_value, new_grad = self._line_search(
            fn, problems, x, value, grad, direction, slope, state.scale, active)
        moved = active & found
        new_x = x + t[:, None] * direction
        new_state = self._remember(state, x, grad, new_x, new_grad, t, moved, found, first, bad,
                                   on_s, on_y, active)
        # A failed line search keeps x; a problem that is not active keeps everything.
        new_x = jnp.where(moved[:, None], new_x, x)
        new_value = jnp.where(moved, new_value, value)
        new_grad = jnp.where(moved[:, None], new_grad, grad)
        return new_x, new_value, new_grad, new_state

    def _remember(self, state: _LockstepState, x, grad, new_x, new_grad, t, moved, found, first, bad,
                  on_s, on_y, active) -> _LockstepState:
        """The state after a step: the new pair `(s, y)` in the memory, the kept inner products, `γ`
        and the trial scale `τ`."""
        dtype = x.dtype
        dot = lambda a, b: jnp.sum(a * b, axis=-1)  # noqa: E731
        # Rows are written finite: a stopped problem's row may be read (times a zero coefficient) by
        # the problem that takes its slot next.
        s = jnp.where(jnp.isfinite(new_x), new_x - x, 0)
        y = jnp.where(jnp.isfinite(new_grad), new_grad - grad, 0)
        s = jnp.where(moved[:, None], s, 0)
        y = jnp.where(moved[:, None], y, 0)
        sy_new, yy_new = dot(s, y), dot(y, y)
        curvature = moved & (sy_new > 1e-10 * jnp.sqrt(dot(s, s) * yy_new)) & jnp.isfinite(sy_new)

        # The new pair goes to row `count mod M`, valid if it passed the curvature test (a problem
        # that did not move writes an invalid row: it has stopped, or its failed line search
        # invalidates the whole memory, so that the next direction is steepest descent). Writing
        # unconditionally lets XLA update the memory in place.
        m = self.memory_size
        slot = state.count % m
        # Keep the inner products current. Only `Sᵀ∇f` and `Yᵀ∇f` at the new iterate take a pass
        # over the memory; the new pair's products with the other rows a follow from them:
        # s_aᵀy = s_aᵀ∇f_new − s_aᵀ∇f_old, y_aᵀy likewise, and y_aᵀs = t y_aᵀd with
        # d = −(γ∇f + S p₁ + γY p₂) (or −γ∇f after the steepest-descent fallback).
        g_now = jnp.where(moved[:, None], new_grad, grad)  # the gradient of the returned iterate
        write = lambda mem, row: jax.lax.dynamic_update_slice(mem, row[:, None], (0, slot, 0))  # noqa: E731
        if x.shape[0] > 1:
            mem_s, mem_y = write(state.s, s), write(state.y, y)
            s_grad = jnp.einsum("bmn,bn->bm", mem_s, g_now)
            y_grad = jnp.einsum("bmn,bn->bm", mem_y, g_now)
        else:
            # A batch of one: XLA CPU drops the unit batch axis of the products, and a product of
            # the freshly written memory then made it copy the memory 4 times per iteration
            # (measured: 9.3 → 6.4 ms per iteration on one explicit CE problem). Read before writing.
            s_grad = jnp.einsum("bmn,bn->bm", state.s, g_now).at[:, slot].set(dot(s, g_now))
            y_grad = jnp.einsum("bmn,bn->bm", state.y, g_now).at[:, slot].set(dot(y, g_now))
            s_grad, y_grad, s, y = jax.lax.optimization_barrier((s_grad, y_grad, s, y))
            mem_s, mem_y = write(state.s, s), write(state.y, y)
        valid = state.valid.at[:, slot].set(curvature)
        valid = jnp.where((active & ~found)[:, None], False, valid)
        y_dot_d = -(state.gamma[:, None] * state.y_grad + jnp.einsum("bca,bc->ba", state.sy, on_s)
                    + jnp.einsum("bca,bc->ba", state.yy, on_y))
        y_dot_d = jnp.where(bad[:, None], -state.gamma[:, None] * state.y_grad, y_dot_d)
        s_y_new = (s_grad - state.s_grad).at[:, slot].set(sy_new)  # s_aᵀ y_new
        y_y_new = (y_grad - state.y_grad).at[:, slot].set(yy_new)  # y_aᵀ y_new
        y_s_new = (t[:, None] * y_dot_d).at[:, slot].set(sy_new)  # y_aᵀ s_new
        sy = state.sy.at[:, slot, :].set(y_s_new).at[:, :, slot].set(s_y_new)
        yy = state.yy.at[:, slot, :].set(y_y_new).at[:, :, slot].set(y_y_new)
        scale = jnp.where(found,
                          jnp.where(first, jnp.minimum(state.scale / self.shrink, 1), state.scale),
                          state.scale * self.shrink**self.num_trials).astype(dtype)
        return _LockstepState(
            s=mem_s, y=mem_y, valid=valid, sy=sy, yy=yy, s_grad=s_grad, y_grad=y_grad,
            gamma=jnp.where(curvature, sy_new / jnp.where(curvature, yy_new, 1), state.gamma),
            scale=jnp.where(active, scale, state.scale), count=state.count + 1)

    # One problem (`x` of shape `(n,)`) as a batch of one; the state keeps its batch axis of 1. The
    # problem counts as active while its gradient norm is above `gtol`.

    def init(self, fn, x, value, grad):
        return self.init_batch(lambda z, _: fn(z), None, x[None], value[None], grad[None])

    def step(self, fn, project, x, value, grad, state):
        gtol = default_gtol(x.dtype) if self.gtol is None else self.gtol
        active = jnp.linalg.norm(grad, axis=-1, keepdims=True) > gtol
        out = self.step_batch(lambda z, _: fn(z), project, None, x[None], value[None], grad[None],
                              state, active)
        return (*(a[0] for a in out[:3]), out[3])
