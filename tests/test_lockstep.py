"""Tests of `LockstepLBFGS`, the fixed-work-per-iteration L-BFGS for batched solves."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ufm_jax as u
from ufm_jax import LockstepLBFGS
from ufm_jax.theory._deep_linear import deep_linear_mse_solution
from ufm_jax.theory._mse_bias import mse_free_bias_solution


def _start(problem: u.Problem, seed: int) -> u.Params:
    """A random O(1) start drawn in NumPy (no PRNG in the compiled program: it compiles faster)."""
    rng = np.random.default_rng(seed)
    dims = problem.layer_dims
    weights = tuple(jnp.asarray(rng.normal(size=(o, i)) / np.sqrt(i))
                    for i, o in zip(dims[:-1], dims[1:]))
    k, m = problem.column_weights.shape
    features = jnp.asarray(rng.normal(size=(k, m, problem.dim)) / np.sqrt(problem.dim))
    bias = jnp.asarray(rng.normal(size=k) / np.sqrt(k)) if problem.bias != "none" else jnp.zeros(k)
    return u.Params(weights, features, bias)


K, N_PER, D, LAM = 10, 100, 64, 5e-4
# (name, problem, exact minimum). Weighted mode with one column per class is exact (see
# `ufm_jax.Problem`).
CASES = [
    # Liu 2024 Thm 4.3 with L = 1: b* = 1/K, and f* = 0.043875 here (the target).
    ("mse-free-bias", u.biased_mse([N_PER] * K, D, lam_w=LAM, lam_h=LAM, per_class=1),
     mse_free_bias_solution([N_PER] * K, D, (), LAM, LAM).objective),
    # Dang et al. 2023 Thm 4.1 (L = 1, balanced): β = N(Nλ_Wλ_H)/n = 0.0025, x = 1/√β − 1, and
    # f* = ½(1/(1+x) + βx) = √β − β/2 = 0.04875 here.
    ("plain-mse", u.plain_mse([N_PER] * K, D, lam_w=LAM, lam_h=LAM, per_class=1),
     deep_linear_mse_solution([N_PER] * K, D, (), LAM, LAM).objective),
]


@pytest.mark.parametrize("name, problem, expected", CASES, ids=[c[0] for c in CASES])
def test_reaches_known_minimum(name, problem, expected):
    beta = K * N_PER * (K * N_PER * LAM * LAM) / N_PER
    if name == "plain-mse":
        assert expected == pytest.approx(np.sqrt(beta) - beta / 2, rel=1e-14)
    else:
        assert expected == pytest.approx(0.043875, rel=1e-12)
    with jax.numpy_dtype_promotion("standard"):
        sol = u.solve(problem, LockstepLBFGS(), start=_start(problem, 0))
    assert u.Status(int(sol.status)).name == "converged"
    assert float(sol.grad_norm) <= 1e-9
    assert float(sol.objective) == pytest.approx(expected, rel=1e-10)


def test_vmap_equals_loop():
    lams = [1e-3, 3e-3, 1e-2, 3e-2]
    problems = [u.ce([50, 50, 10, 10], 4, lam_w=lam, lam_h=lam, lam_b=lam, per_class=2)
                for lam in lams]
    starts = [_start(p, i) for i, p in enumerate(problems)]
    solver = LockstepLBFGS()
    with jax.numpy_dtype_promotion("standard"):
        batch = u.solve(u.stack_problems(problems), solver,
                        start=jax.tree.map(lambda *xs: jnp.stack(xs), *starts))
        singles = [u.solve(p, solver, start=s) for p, s in zip(problems, starts)]
    for i, single in enumerate(singles):
        assert int(batch.status[i]) == int(single.status) == 0
        # Batched and single matmuls may round differently in the last bit, so iterates agree to
        # round-off, not bit for bit.
        assert abs(int(batch.iterations[i]) - int(single.iterations)) <= 2
        np.testing.assert_allclose(batch.objective[i], single.objective, rtol=1e-12)
        np.testing.assert_allclose(batch.params.features[i], single.params.features, atol=1e-7)


def test_inactive_problems_are_masked():
    """A problem that is not active does not move, nor does its solver state; its batch-mate does."""
    solver = LockstepLBFGS()

    def fn(x, _):
        return 0.5 * jnp.sum((x - 1.0) ** 2) + 0.25 * jnp.sum(x**4)

    x = jnp.stack([jnp.zeros(5), jnp.full(5, 0.3)])
    active = jnp.asarray([True, False])

    @jax.jit
    def two_steps(x):
        value, grad = jax.vmap(jax.value_and_grad(fn))(x, None)
        state = solver.init_batch(fn, None, x, value, grad)
        carry = (x, value, grad, state)
        for _ in range(2):
            carry = solver.step_batch(fn, lambda z: z, None, *carry, active)
        return carry, state

    (new_x, _, _, new_state), state = two_steps(x)
    assert not np.allclose(new_x[0], x[0])  # the active problem moved ...
    np.testing.assert_array_equal(new_x[1], x[1])  # ... the inactive one did not,
    assert bool(jnp.any(new_state.valid[0])) and not bool(jnp.any(new_state.valid[1]))  # nor learnt,
    for name in ("gamma", "scale"):  # nor changed its step parameters.
        assert float(getattr(new_state, name)[1]) == float(getattr(state, name)[1])
    assert int(new_state.count) == 2


def _two_loop(g, pairs, gamma):
    """Reference `−H g`: the L-BFGS two-loop recursion (Nocedal & Wright 2006, Alg. 7.4), `pairs`
    oldest first."""
    q, alphas = g.copy(), []
    for s, y in reversed(pairs):
        a = (s @ q) / (s @ y)
        q -= a * y
        alphas.append(a)
    r = gamma * q
    for (s, y), a in zip(pairs, reversed(alphas)):
        r += (a - (y @ r) / (s @ y)) * s
    return -r


@pytest.mark.floors
@pytest.mark.parametrize("batch", [1, 3])  # a batch of one takes its own code path
def test_compact_direction_equals_two_loop_recursion(batch):
    """The compact representation, the circular buffer and the incrementally kept inner products
    give the two-loop recursion's direction, with invalid rows skipped, after the buffer wrapped."""
    from ufm_jax.solve._lockstep import _compact_direction

    rng = np.random.default_rng(0)
    n, m = 12, 4
    a = rng.normal(size=(n, n))
    hess = a @ a.T / n + np.eye(n)  # + cos: every pair passes the curvature test here
    solver = LockstepLBFGS(memory_size=m)

    def fn(x, _):
        return 0.5 * x @ (jnp.asarray(hess) @ x) + jnp.sum(jnp.cos(x))

    x = jnp.asarray(rng.normal(size=(batch, n)))
    value, grad = jax.vmap(jax.value_and_grad(fn))(x, None)
    state = solver.init_batch(fn, None, x, value, grad)
    pairs, active = [], jnp.ones(batch, bool)
    step = jax.jit(lambda *c: solver.step_batch(fn, lambda z: z, None, *c, active))
    for _ in range(7):  # 7 pairs through 4 rows: the buffer wraps
        new = step(x, value, grad, state)
        pairs.append((np.asarray(new[0] - x), np.asarray(new[2] - grad)))
        x, value, grad, state = new
    assert bool(jnp.all(state.valid))
    direction, _, _ = _compact_direction(grad, state)
    row = (int(state.count) - 2) % m  # the second newest pair
    dropped = eqx.tree_at(lambda s: s.valid, state, state.valid.at[:, row].set(False))
    without, _, _ = _compact_direction(grad, dropped)
    for i in range(batch):
        gamma, own = float(state.gamma[i]), [(s[i], y[i]) for s, y in pairs[-m:]]
        expected = _two_loop(np.asarray(grad[i]), own, gamma)
        np.testing.assert_allclose(direction[i], expected, rtol=1e-8, atol=1e-12)
        # An invalid row drops out: the recursion without that pair.
        expected = _two_loop(np.asarray(grad[i]), own[:-2] + own[-1:], gamma)
        np.testing.assert_allclose(without[i], expected, rtol=1e-8, atol=1e-12)


def test_rejects_bad_hyperparameters():
    with pytest.raises(ValueError, match="shrink"):
        LockstepLBFGS(shrink=1.5)
    with pytest.raises(ValueError, match="num_trials"):
        LockstepLBFGS(num_trials=0)
