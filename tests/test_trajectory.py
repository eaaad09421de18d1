"""Trajectories (`solve(..., history=k)`) and training dynamics (`coordinates="sample"`)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ufm_jax as u
from ufm_jax.solve._minimise import TRAJECTORY_FIELDS


def test_records_every_k_and_the_returned_point():
    problem = u.ce([20, 20, 5, 5], 4, lam_w=0.01, lam_h=0.01)
    solution = u.solve(problem, history=5, seeds=2, key=1)
    h = solution.history.as_lists()
    assert list(h) == ["iteration", *TRAJECTORY_FIELDS]
    n = int(solution.iterations)
    # Iterations 0, 5, 10, ... and the last one (the returned point), nothing else.
    expected = list(range(0, n + 1, 5)) + ([] if n % 5 == 0 else [n])
    assert h["iteration"] == expected
    assert h["objective"][-1] == pytest.approx(float(solution.objective), rel=1e-12)
    assert h["grad_norm"][-1] <= 1e-9
    # One column per class (the default path): NC1 is zero by construction.
    assert max(h["nc1"]) <= 1e-20


def test_batch_records_each_problem_and_the_best_start():
    batch = u.stack_problems([u.ce([5, 4, 1], 4, lam_w=0.01, lam_h=0.01, columns=5),
                              u.ce([3, 3, 3], 4, lam_w=0.02, lam_h=0.01, columns=5)])
    solution = u.solve(batch, history=3, seeds=3, reduce=False)
    for i in range(2):
        h = solution[i].history.as_lists()
        assert h["iteration"][-1] == int(solution.iterations[i])
        assert h["objective"][-1] == pytest.approx(float(solution.objective[i]), rel=1e-12)
        assert h["nc1"][0] > 0  # sample-level starts: the within-class variability starts positive


def test_history_is_refused_when_it_would_not_fit():
    problem = u.ce([3, 3], 2, lam_w=0.1, lam_h=0.1)
    with pytest.raises(ValueError, match="history=0 is not allowed"):
        u.solve(problem, history=0)
    with pytest.raises(ValueError, match="history=1 is not allowed: .* GiB"):
        u.solve(u.stack_problems([problem] * 4096), u.GradientDescent(max_steps=100_000), history=1)


def test_sample_coordinates_are_plain_gradient_descent():
    # x ← x − η ∇f on the original (W, H, b), every sample column its own parameter.
    problem = u.ce([4, 3, 2], 3, lam_w=0.05, lam_h=0.05, lam_b=0.1)
    start = u.init_params(problem, 0)
    eta, steps = 0.5, 30
    solver = u.GradientDescent(learning_rate=eta, coordinates="sample", max_steps=steps, gtol=1e-30)
    ours = u.solve(problem, solver, start=start, reduce=False)
    grad = jax.jit(jax.grad(u.objective))
    x = start
    for _ in range(steps):
        x = jax.tree.map(lambda a, g: a - eta * g, x, grad(x, problem))
    for a, b in zip(jax.tree.leaves(ours.params), jax.tree.leaves(x)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_sample_coordinates_give_the_same_dynamics_reduced_or_not():
    # A start whose columns are equal within each class stays so under per-sample gradient descent, so
    # the one-column-per-class reduction follows the same trajectory.
    problem = u.ce([6, 6, 2], 3, lam_w=0.02, lam_h=0.02)
    reduced_start = u.init_params(u.ce([6, 6, 2], 3, lam_w=0.02, lam_h=0.02, per_class=1), 3)
    start = jax.tree.map(jnp.asarray, u._params.expand_params(reduced_start, problem))
    solver = u.GradientDescent(learning_rate=0.3, momentum=0.9, coordinates="sample", max_steps=200,
                               gtol=1e-30)
    full = u.solve(problem, solver, start=start, reduce=False, history=20).history.as_lists()
    red = u.solve(problem, solver, start=start, history=20).history.as_lists()
    assert full["iteration"] == red["iteration"]
    np.testing.assert_allclose(full["objective"], red["objective"], rtol=1e-10)
    np.testing.assert_allclose(full["etf_distance"], red["etf_distance"], rtol=1e-8, atol=1e-12)


def test_coordinates_are_validated():
    with pytest.raises(ValueError, match="coordinates='raw' is not allowed"):
        u.GradientDescent(coordinates="raw")
