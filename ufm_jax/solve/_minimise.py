"""The iteration loop shared by all solvers, and the coordinates it runs in (balanced by default)."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, Float, Int, PyTree

from .._params import Params
from .._problem import Problem
from ..losses import objective
from ..metrics import nc_metrics
from ._results import RUNNING, STALL_PATIENCE, Status
from ._solvers import AbstractSolver, where_rows


def _scales(problem: Problem, coordinates: str = "balanced") -> Params:
    """Per-entry factors `s` of the coordinates `x̃ = s·x` a solver works in.

    - `"balanced"` (the default of every solver): `√λ_{W,l}` on `W_l`, `√(λ_H w_kj)` on column `h_kj`,
      `√λ_b` on a regularised bias (1 on a free one). Every penalty is then `½‖x̃‖²`, so `W` and `H`
      enter on one scale whatever `λ` and `n_k` are (at a minimum `λ_W‖W‖² = λ_H‖H‖²`): a diagonal
      preconditioner, minimisers map one-to-one.
    - `"sample"`: `√w_kj` on column `h_kj`, 1 elsewhere. A gradient step of size `η` is then
      `x ← x − η ∇f / s²`: plain gradient descent on the original parameters, per sample column, in the
      explicit representation (`w = 1`) and in the weighted one alike (a class column weighing `n_k`
      moves as each of its `n_k` samples would): the training dynamics of the papers' experiments.

    Results are always returned in the original coordinates. Padding columns (`w_kj = 0`) get scale 0
    and are pinned at zero.
    """
    if coordinates == "sample":
        ones = jnp.ones_like(problem.lam_h)
        return Params(tuple(ones for _ in problem.lam_w), jnp.sqrt(problem.column_weights)[..., None], ones)
    weights = tuple(jnp.sqrt(lam) for lam in problem.lam_w)
    features = jnp.sqrt(problem.lam_h * problem.column_weights)[..., None]
    bias = jnp.sqrt(problem.lam_b) if problem.bias == "regularised" else jnp.ones_like(problem.lam_b)
    return Params(weights, features, bias)


def to_balanced(params: Params, problem: Problem, coordinates: str = "balanced") -> Params:
    return jax.tree.map(lambda x, s: x * s, params, _scales(problem, coordinates))


def from_balanced(balanced: Params, problem: Problem, coordinates: str = "balanced") -> Params:
    def unscale(x, s):
        positive = s > 0
        return jnp.where(positive, x / jnp.where(positive, s, 1), 0)

    return jax.tree.map(unscale, balanced, _scales(problem, coordinates))


def _flat_project(problem: Problem, template: Params):
    """The projection onto `H >= 0` on flattened parameters (`(n,)` or `(B, n)`), or the identity.

    `template` is one problem's parameters: it fixes where the features sit in the flat vector.
    """
    if not problem.nonneg:
        return lambda x: x
    marks = Params(tuple(jnp.zeros(w.shape, bool) for w in template.weights),
                   jnp.ones(template.features.shape, bool), jnp.zeros(template.bias.shape, bool))
    mask, _ = ravel_pytree(marks)
    return lambda x: jnp.where(mask, jnp.maximum(x, 0), x)


def _stationarity(x, grad, project) -> Array:
    """`‖x − P(x − ∇f)‖` along the last axis: the gradient norm without constraints, the projected
    one with `H >= 0`."""
    residual = x - project(x - grad)
    return jnp.sqrt(jnp.sum(residual * residual, axis=-1))


def default_gtol(dtype) -> float:
    """1e-9 in float64, 1e-4 in float32 (the gradient in balanced coordinates)."""
    return 1e-9 if jnp.dtype(dtype) == jnp.float64 else 1e-4


# The scalar NC metrics a trajectory records (keys of `ufm_jax.metrics.nc_metrics`), after the objective
# and the gradient norm.
TRAJECTORY_METRICS = ("nc1", "within_class_spread", "etf_distance", "orthogonal_frame_distance", "nc3",
                      "nc3_directional", "minority_spread", "minority_logit_spread")
TRAJECTORY_FIELDS = ("objective", "grad_norm", *TRAJECTORY_METRICS)


class Recorded(eqx.Module):
    """Trajectories of a batch: record `r < length[q]` of problem `q` was taken at iteration
    `iteration[q, r]` and holds `values[q, r]` (`TRAJECTORY_FIELDS` in order)."""

    iteration: Int[Array, "Q R"]
    values: Float[Array, "Q R F"]
    length: Int[Array, " Q"]


class SingleResult(eqx.Module):
    params: Params
    objective: Float[Array, "*B"]
    grad_norm: Float[Array, "*B"]
    iterations: Int[Array, "*B"]
    status: Int[Array, "*B"]
    history: Recorded | None = None


def history_records(max_steps: int, every: int) -> int:
    """Records a trajectory can hold: iterations 0, every, 2·every, … up to `max_steps`, and the last."""
    return max_steps // every + 2


def flat_batch(problems: Problem, starts: Params, coordinates: str = "balanced"):
    """A batch in the solvers' layout: `(fn, project, x, to_params)` with `x` the starts in the solver's
    coordinates (`_scales`), flattened to `(B, n)` and projected; `fn(x_i, problem_i)` one problem's
    objective; `project` the projection onto `H >= 0` (or the identity); `to_params(x_i, problem_i)` back
    to `Params` in the original coordinates."""
    balanced = jax.vmap(lambda p, q: to_balanced(p, q, coordinates))(starts, problems)
    template = jax.tree.map(lambda a: a[0], balanced)
    _, unravel = ravel_pytree(template)
    project = _flat_project(problems, template)
    x = project(jax.vmap(lambda p: ravel_pytree(p)[0])(balanced))

    def to_params(x, problem):
        return from_balanced(unravel(x), problem, coordinates)

    def fn(x, problem):
        return objective(to_params(x, problem), problem)

    return fn, project, x, to_params


@eqx.filter_jit
def evaluate_batch(problems: Problem, params: Params,
                   coordinates: str = "balanced") -> tuple[Float[Array, " B"], Float[Array, " B"]]:
    """The objective and the stationarity measure of `minimise_batch` (the (projected) gradient norm in
    the solver's coordinates) of a batch of points: how `solve` verifies a reduced solution on the full
    problem."""
    fn, project, x, _ = flat_batch(problems, params, coordinates)
    value, grad = jax.vmap(jax.value_and_grad(fn))(x, problems)
    return value, _stationarity(x, grad, project)


def objective_history(problem: Problem, start: Params, solver: AbstractSolver,
                      steps: int) -> Float[Array, "steps *B"]:
    """The objective after each of `steps` iterations of `solver` from `start`, with no stopping test
    (for convergence plots and per-iteration timings; `solve(..., history=k)` records trajectories of
    a real solve). `problem` and `start` may be one problem or a batch (leading axis `B`)."""
    if problem.lam_h.ndim == 0:
        batch = jax.tree.map(lambda a: a[None], (problem, start))
        return objective_history(*batch, solver, steps)[:, 0]
    fn, project, x, _ = flat_batch(problem, start, solver.coordinates)
    value, grad = jax.vmap(jax.value_and_grad(fn))(x, problem)
    state = solver.init_batch(fn, problem, x, value, grad)
    active = jnp.ones(value.shape, bool)

    def body(carry, _):
        carry = solver.step_batch(fn, project, problem, *carry, active)
        return carry, carry[1]

    return jax.lax.scan(body, (x, value, grad, state), None, length=steps)[1]



class _Slots(eqx.Module):
    """The problems being iterated: one row per slot (`index == Q` marks an idle slot)."""

    index: Int[Array, " S"]
    problem: Problem
    x: Float[Array, "S n"]
    value: Float[Array, " S"]
    grad: Float[Array, "S n"]
    state: PyTree
    steps: Int[Array, " S"]
    limit: Float[Array, " S"]
    gnorm: Float[Array, " S"]
    status: Int[Array, " S"]
    last_x: Float[Array, "S n"]  # the last finite iterate and its value
    last_value: Float[Array, " S"]
    best_value: Float[Array, " S"]  # progress: the lowest objective and gradient norm so far, and
    best_gnorm: Float[Array, " S"]  # the iterations since either last improved
    since: Int[Array, " S"]


def minimise_batch(problems: Problem, starts: Params, solver: AbstractSolver,
                   slots: int | None = None, history: int | None = None) -> SingleResult:
    """Minimise a batch of `Q` problems (leaves with a leading axis) from `starts`, in the solver's
    coordinates (`solver.coordinates`: balanced by default), iterating `slots` of them at a time
    (default: all).

    Each problem stops on its own (`Status`): when its (projected) gradient norm in those coordinates
    is `<= gtol` (`converged`); when `f` or `∇f` is not finite (`nonfinite`: the last
    finite iterate is kept); when `f` exceeds `1e6 (1 + |f_0|)` (`diverged`); when neither `f` (beyond
    16 machine epsilons) nor the gradient norm (a new low) has improved for `STALL_PATIENCE`
    iterations (`stalled`); after `max_steps` (`max_steps`).

    The problems form a queue: a slot whose problem has stopped writes its result out and takes the
    next problem (fresh solver state), inside the one compiled loop. A batched loop otherwise runs
    until its slowest member is done, and near a phase boundary a few problems need several times the
    iterations of the rest; with `slots < Q` the work follows the sum of the iteration counts rather
    than `Q ×` their maximum, with no recompilation. The parameters are flattened to one vector per
    problem, `x` of shape `(slots, n)`: the solvers' memory and the batch arithmetic are dense arrays.

    With `history = k`, every problem records its objective, gradient norm and the scalar NC metrics
    (`TRAJECTORY_FIELDS`) at iteration 0, every `k` iterations and where it stops (the returned point),
    inside the loop: the metrics are computed only in iterations where some slot records (a conditional
    whose output is the `(slots, F)` records, so the stored trajectories never pass through it).
    """
    loop = _Loop(problems, starts, solver, history)
    slots = loop.total if slots is None else min(int(slots), loop.total)
    out = SingleResult(loop.x_all, jnp.zeros(loop.total, loop.dtype), jnp.zeros(loop.total, loop.dtype),
                       jnp.zeros(loop.total, int), jnp.zeros(loop.total, int))
    hist = None
    if history is not None:
        size = history_records(solver.max_steps, history)
        hist = Recorded(jnp.zeros((loop.total, size), int),
                        jnp.full((loop.total, size, len(TRAJECTORY_FIELDS)), jnp.nan, loop.dtype),
                        jnp.zeros(loop.total, int))
    index0 = jnp.arange(slots)
    first = loop.fresh(index0, *loop.start_values(index0))
    first = eqx.tree_at(lambda s: s.state, first,
                        solver.init_batch(loop.fn, first.problem, first.x, first.value, first.grad),
                        is_leaf=lambda x: x is None)
    hist = loop.record(hist, first, first.index < loop.total)
    _, out, _, hist = jax.lax.while_loop(loop.cond, loop.body, (first, out, jnp.asarray(slots), hist))
    params = jax.vmap(loop.to_params)(out.params, problems)
    return SingleResult(params, out.objective, out.grad_norm, out.iterations, out.status, hist)


class _Loop:
    """The pieces of `minimise_batch`'s loop over a queue of `Q` problems (used while tracing): the
    batch in the solver's layout, and one method per step."""

    def __init__(self, problems: Problem, starts: Params, solver: AbstractSolver, history: int | None):
        self.problems, self.solver, self.history = problems, solver, history
        self.dtype = problems.lam_h.dtype
        self.gtol = default_gtol(self.dtype) if solver.gtol is None else solver.gtol
        self.ftol = 16 * jnp.finfo(self.dtype).eps
        self.total = problems.lam_h.shape[0]
        self.fn, self.project, self.x_all, self.to_params = flat_batch(problems, starts, solver.coordinates)

    def classify(self, x, value, grad, steps, limit, since):
        """The stationarity measure and the `Status` (or `RUNNING`) of each slot."""
        gnorm = _stationarity(x, grad, self.project)
        finite = jnp.isfinite(value) & jnp.isfinite(gnorm)
        status = jnp.select(
            [~finite, value > limit, gnorm <= self.gtol, since >= STALL_PATIENCE,
             steps >= self.solver.max_steps],
            [Status.nonfinite, Status.diverged, Status.converged, Status.stalled, Status.max_steps],
            RUNNING)
        return gnorm, status

    def gather(self, index):
        """Problems `index` and their starts (clamped: `index == total` marks an idle slot)."""
        rows = jnp.minimum(index, self.total - 1)
        return jax.tree.map(lambda a: a[rows], self.problems), self.x_all[rows]

    def start_values(self, index):
        problem, x = self.gather(index)
        return jax.vmap(jax.value_and_grad(self.fn))(x, problem)

    def fresh(self, index, value, grad) -> _Slots:
        """Slots for problems `index`, their solver state aside; `(value, grad)` at their starts."""
        problem, x = self.gather(index)
        zeros = jnp.zeros(index.shape, int)
        limit = 1e6 * (1 + jnp.abs(value))
        gnorm, status = self.classify(x, value, grad, zeros, limit, zeros)
        return _Slots(index, problem, x, value, grad, None, zeros, limit, gnorm, status, x, value,
                      value, gnorm, zeros)

    def advance(self, slot: _Slots) -> _Slots:
        """One solver step for the running problems, and their new status."""
        active = (slot.status == RUNNING) & (slot.index < self.total)
        x, value, grad, state = self.solver.step_batch(self.fn, self.project, slot.problem, slot.x,
                                                       slot.value, slot.grad, slot.state, active)
        gnorm = _stationarity(x, grad, self.project)
        progress = ((value < slot.best_value - self.ftol * jnp.maximum(1, jnp.abs(slot.best_value)))
                    | (gnorm < slot.best_gnorm))
        since = jnp.where(progress, 0, slot.since + 1)
        steps = slot.steps + active
        _, status = self.classify(x, value, grad, steps, slot.limit, since)
        keep = lambda new, old: jnp.where(active, new, old)  # noqa: E731
        ok = active & jnp.isfinite(value)
        return _Slots(slot.index, slot.problem, x, value, grad, state, steps, slot.limit,
                      keep(gnorm, slot.gnorm), keep(status, slot.status),
                      jnp.where(ok[:, None], x, slot.last_x), jnp.where(ok, value, slot.last_value),
                      keep(jnp.minimum(value, slot.best_value), slot.best_value),
                      keep(jnp.minimum(gnorm, slot.best_gnorm), slot.best_gnorm), keep(since, slot.since))

    def refill(self, slot: _Slots, out: SingleResult, next_index):
        """Stopped problems write their result out, and their slots take the next problems of the
        queue (or fall idle). Also returns which slots took a new problem."""
        total = self.total
        done = (slot.status != RUNNING) & (slot.index < total)
        where = jnp.where(done, slot.index, total)  # out of range: dropped
        put = lambda a, b: a.at[where].set(b, mode="drop")  # noqa: E731
        out = SingleResult(put(out.params, slot.last_x), put(out.objective, slot.last_value),
                           put(out.grad_norm, slot.gnorm), put(out.iterations, slot.steps),
                           put(out.status, slot.status))
        new_index = jnp.where(done, jnp.minimum(next_index + jnp.cumsum(done) - 1, total), slot.index)
        refill = done & (new_index < total)
        # Only the objective at the new starts is computed under a conditional (when some slot
        # refills). The solver state, which may be large (an L-BFGS memory), never passes through
        # one (a conditional copies what it returns, every iteration): the solver resets its rows.
        value, grad = jax.lax.cond(jnp.any(refill), self.start_values,
                                   lambda _: (slot.value, slot.grad), new_index)
        new = self.fresh(new_index, value, grad)
        state = self.solver.reset_batch(self.fn, new.problem, slot.state, refill, new.x, new.value, new.grad)
        kept = eqx.tree_at(lambda s: (s.index, s.state), slot, (new_index, None),
                           is_leaf=lambda x: x is None)
        slot = eqx.tree_at(lambda s: s.state, where_rows(refill, new, kept), state,
                           is_leaf=lambda x: x is None)
        return slot, out, next_index + jnp.sum(done), refill

    def record(self, hist: Recorded | None, slot: _Slots, mask) -> Recorded | None:
        """Append a record for the slots in `mask` (their current point, the one they would return)."""
        if hist is None:
            return None

        def values():
            params = jax.vmap(self.to_params)(slot.last_x, slot.problem)
            metrics = jax.vmap(nc_metrics)(params, slot.problem)
            return jnp.stack([slot.last_value, slot.gnorm, *(metrics[k] for k in TRAJECTORY_METRICS)],
                             axis=-1).astype(self.dtype)

        rows = jax.lax.cond(jnp.any(mask), values,
                            lambda: jnp.zeros((slot.index.shape[0], len(TRAJECTORY_FIELDS)), self.dtype))
        q = jnp.where(mask, slot.index, self.total)  # out of range: dropped
        position = hist.length[jnp.minimum(slot.index, self.total - 1)]
        return Recorded(hist.iteration.at[q, position].set(slot.steps, mode="drop"),
                        hist.values.at[q, position].set(rows, mode="drop"),
                        hist.length.at[q].add(1, mode="drop"))

    def cond(self, carry):
        slot, _, _, _ = carry
        return jnp.any(slot.index < self.total)

    def body(self, carry):
        slot, out, next_index, hist = carry
        running = (slot.status == RUNNING) & (slot.index < self.total)
        slot = self.advance(slot)
        if hist is not None:
            stops = (slot.steps % self.history == 0) | (slot.status != RUNNING)
            hist = self.record(hist, slot, running & stops)
        slot, out, next_index, refilled = self.refill(slot, out, next_index)
        return slot, out, next_index, self.record(hist, slot, refilled)


def minimise_problem(problem: Problem, start: Params, solver: AbstractSolver) -> SingleResult:
    """Minimise one (unbatched) problem from `start`: `minimise_batch` on a batch of one."""
    batch = jax.tree.map(lambda a: a[None], (problem, start))
    return jax.tree.map(lambda a: a[0], minimise_batch(*batch, solver))
