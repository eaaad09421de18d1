"""The second-order check: saddles are negative, certified minima are not, symmetries are excluded.

Eigenvalues are in balanced coordinates (`x̃ = √λ·x`), where the penalty is `½‖x̃‖²`. Near the origin of a
one-layer model the data term is bilinear in `(W̃, h̃_k)` with coefficient `√n_k/(Nλ_Z)` times the
gradient of the loss in the logits, so the Hessian there is `I + [[0, B], [Bᵀ, 0]]` and its smallest
eigenvalue is `1 − σ_max(B)` — the exact values the first tests compare with.
"""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
from jax.flatten_util import ravel_pytree
from scipy import optimize

import ufm_jax as u
from ufm_jax._params import Params
from ufm_jax._second_order import (
    HessianCheck,
    curvature_tolerance,
    free_coordinates,
    hessian_check,
    hessian_vector_product,
    hessian_verdict,
    lanczos_extremes,
    symmetry_directions,
)
from ufm_jax._starts import point_from_invariants, theory_start
from ufm_jax.solve._minimise import from_balanced, to_balanced


def _zeros(problem):
    return jax.tree.map(jnp.zeros_like, u.init_params(problem, 0))


def _dense_hessian(params, problem):
    """The Hessian of the objective in balanced coordinates, dense, one product per column (small
    problems only)."""
    hvp = hessian_vector_product(params, problem)
    n = ravel_pytree(params)[0].size
    return np.stack([hvp(e) for e in np.eye(n)], axis=1)


def _rotate(params, key):
    """The point moved along its symmetry orbit: a random rotation of every space between factors."""
    rng = np.random.default_rng(key)

    def orthogonal(n):
        q, r = np.linalg.qr(rng.standard_normal((n, n)))
        return q * np.sign(np.diag(r))

    weights = [np.asarray(w) for w in params.weights]
    q0 = orthogonal(params.features.shape[-1])
    features = np.asarray(params.features) @ q0.T
    weights[0] = weights[0] @ q0.T
    for l in range(1, len(weights)):
        q = orthogonal(weights[l - 1].shape[0])
        weights[l - 1] = q @ weights[l - 1]
        weights[l] = weights[l] @ q.T
    return Params(tuple(jnp.asarray(w) for w in weights), jnp.asarray(features), params.bias)


# ---- saddles ----------------------------------------------------------------------------------------


def test_origin_of_one_layer_mse_is_a_saddle_with_the_exact_curvature():
    n, lam = np.array([8.0, 4.0, 2.0]), 0.02
    problem = u.mse(list(n), 4, lam_w=lam, lam_h=lam, per_class=1)
    check = hessian_check(_zeros(problem), problem)
    # MSE: ∂data/∂z_k = −e_k n_k/N at z = 0, so B = −diag(√n)/(Nλ_Z): λ_min = 1 − √n_max/(Nλ_Z) = −9.10.
    exact = 1 - math.sqrt(n.max()) / (n.sum() * lam)
    assert check.min_eig == pytest.approx(exact, rel=1e-12)
    assert check.verdict == "negative" and check.grad_norm == 0.0 and check.symmetries == 0


def test_origin_of_one_layer_ce_is_a_saddle_with_the_exact_curvature():
    n, lam = np.array([6.0, 3.0, 2.0, 2.0]), 0.03
    problem = u.ce(list(n), 3, lam_w=lam, lam_h=lam, columns=7)  # explicit, padded: checked reduced
    check = hessian_check(_zeros(problem), problem)
    # CE: ∂CE(z, k)/∂z = 1/K − e_k at z = 0, so B = −(I − 11ᵀ/K) diag(√n)/(Nλ_Z).
    K = n.size
    sigma = np.linalg.norm((np.eye(K) - 1 / K) * np.sqrt(n)[None, :], 2)
    assert check.min_eig == pytest.approx(1 - sigma / (n.sum() * lam), rel=1e-12)
    assert check.verdict == "negative" and check.reduced
    # The full explicit problem (every column, padding excluded) has the same smallest eigenvalue: the
    # within-class directions have curvature >= 1 (module docstring of ufm_jax._second_order).
    full = hessian_check(_zeros(problem), problem, reduce=False)
    assert not full.reduced and full.min_eig == pytest.approx(check.min_eig, rel=1e-10)


def test_a_dead_class_of_one_layer_mse_is_a_saddle():
    # The theory's minimum with class 1 killed (its mean and output set to zero) is still a critical
    # point (bias-free one-layer MSE decouples the classes), and class 1's block, in the direction the
    # dead class frees (d = K), is the origin's: λ_min = 1 − √n_1/(Nλ_Z).
    n, lam = np.array([8.0, 4.0, 2.0]), 0.02
    problem = u.mse(list(n), 3, lam_w=lam, lam_h=lam, per_class=1)
    theory = u.analytic_solution(problem)
    keep = np.array([1.0, 0.0, 1.0])
    point = point_from_invariants(problem, theory.mean_gram * np.outer(keep, keep),
                                  theory.mean_logits * keep[None, :], theory.bias)
    check = hessian_check(point, problem)
    assert check.grad_norm < 1e-12  # a critical point: a gradient test passes it
    assert float(u.objective(point, problem)) > theory.objective + 0.01
    assert check.min_eig == pytest.approx(1 - math.sqrt(n[1]) / (n.sum() * lam), rel=1e-9)
    assert check.verdict == "negative"


def _small_root(beta, depth):
    """The smaller positive root of `β (x^L + 1)² = x^{L−1}` (the largest is the theory's)."""
    peak = ((depth - 1) / (depth + 1)) ** (1 / depth)
    return optimize.brentq(lambda x: x ** (depth - 1) / (x**depth + 1) ** 2 - beta, 1e-12, peak, xtol=1e-15)


def test_a_deep_linear_class_at_the_small_root_is_a_saddle():
    # Depth 3 (four factors): the origin and dead classes are local minima (the data term starts at
    # order 4), but the per-class scalar problem g(x) = 1/(x^L+1) + Lβx has a local maximum at the
    # smaller root of β(x^L+1)² = x^{L−1}: with class 0 there (balanced factors, Thm 4.4's formulas
    # with that root) the point is critical and a saddle along that class's scale.
    n, lam, depth = np.array([8.0, 4.0, 2.0]), 0.02, 3
    problem = u.deep_linear_mse(list(n), 4, depth=depth, lam_w=lam, lam_h=lam, per_class=1)
    theory = u.analytic_solution(problem)
    x = np.array(theory.details["x"])
    x[0] = _small_root(theory.details["beta"][0], depth)
    N = n.sum()
    gram = np.diag(x**depth / (N * lam * (x**depth + 1) ** 2))
    logits = np.diag(x**depth / (x**depth + 1))
    point = point_from_invariants(problem, gram, logits, theory.bias)
    check = hessian_check(point, problem)
    assert check.grad_norm < 1e-10
    assert float(u.objective(point, problem)) > theory.objective
    assert check.verdict == "negative" and check.min_eig < -0.1, check
    # The theory's own point: the same construction with the largest root is a minimum.
    assert hessian_check(theory_start(problem), problem).verdict == "nonnegative"


# ---- minima -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, problem", [
    ("two-cluster CE", u.ce([5, 5, 2, 2], 4, lam_w=0.01, lam_h=0.01, lam_b=0.01, per_class=1)),
    ("deep-linear MSE", u.deep_linear_mse([8, 4, 2], 4, depth=3, lam_w=0.02, lam_h=0.02, per_class=1)),
])
def test_certified_minima_of_solve_are_not_negative(name, problem):
    solution = u.solve(problem, key=0, seeds=4)
    assert u.check(solution).certified
    check = hessian_check(solution.params, problem)
    # Minimum curvatures of these strict minima (off the rotations) are O(1): 0.98 and 1.0 here.
    assert check.verdict == "nonnegative" and check.min_eig > 0.5, check
    assert check.tolerance == pytest.approx(1e3 * check.grad_norm)  # the gradient term dominates


@pytest.mark.parametrize("name, problem", [
    ("CE free bias (shift symmetry)", u.ce([5, 5, 5], 3, lam_w=0.02, lam_h=0.02, free_bias=True)),
    ("Liu MSE free bias, L = 2", u.biased_mse([8, 4, 2, 2], 4, widths=[4], lam_w=0.045, lam_h=0.045,
                                             per_class=2)),
    ("deep MSE, two classes dead", u.deep_linear_mse([8, 4, 2], 4, depth=3, lam_w=0.04, lam_h=0.04)),
    ("ReLU CE, H >= 0, d > K", u.relu_ce([6, 6, 1], 4, lam_w=0.01, lam_h=0.01)),
    ("ReLU CE, a dead class", u.relu_ce([20, 20, 1], 4, lam_w=0.01, lam_h=0.01)),
])
def test_theory_minimisers_are_not_negative(name, problem):
    theory = u.analytic_solution(problem)
    check = hessian_check(theory_start(problem), problem)
    assert check.verdict == "nonnegative", (name, check)
    assert check.min_eig > -check.tolerance
    if problem.loss == "ce" and problem.bias == "free":
        # CE is invariant under b → b + c1: one more null direction, excluded (K = 3, d = 3: the
        # rotations of R^3 moving the rank-2 class means: 1 + 2·1 = 3; plus the shift).
        assert check.symmetries == 4
    if problem.nonneg and "dead" in theory.regime:
        assert check.active > 0


def test_weakly_active_bounds_are_left_out_because_their_escapes_are_infeasible():
    # ReLU CE, d = 4 > K = 3: at the theory's global minimum coordinate 3 is unused, at the bound h = 0
    # with a zero gradient for every class. Including those coordinates in the face gives a negative
    # eigenvalue, but along a direction with h of both signs there: clipped to h >= 0, the objective
    # rises both ways. `free_coordinates` leaves them out, and the check reports a minimum.
    problem = u.relu_ce([6, 6, 1], 4, lam_w=0.01, lam_h=0.01, per_class=1)
    point = theory_start(problem)
    theory = u.analytic_solution(problem)
    balanced = to_balanced(point, problem)
    x, unravel = ravel_pytree(balanced)
    on_face = np.asarray(ravel_pytree(Params(tuple(jnp.ones(w.shape, bool) for w in point.weights),
                                             jnp.ones(point.features.shape, bool),
                                             jnp.zeros(point.bias.shape, bool)))[0])
    extended = lanczos_extremes(hessian_vector_product(point, problem), lambda v: v * on_face,
                                np.random.default_rng(0).standard_normal(x.size), int(on_face.sum()))
    assert extended.min_value < -0.1
    for t in (1e-3, -1e-3, 1e-2, -1e-2):
        moved = unravel(x + t * extended.vector)
        moved = Params(moved.weights, jnp.maximum(moved.features, 0), moved.bias)
        assert float(u.objective(from_balanced(moved, problem), problem)) > theory.objective
    check = hessian_check(point, problem)
    assert check.verdict == "nonnegative" and check.weakly_active == 3 and check.min_eig > 0.5
    assert int(np.sum(np.asarray(free_coordinates(point, problem)))) == check.dimension


# ---- symmetries -------------------------------------------------------------------------------------


def test_rotations_span_the_null_space_and_are_excluded():
    # Deep MSE, d = 5 > K = 3, hidden widths (4, 6): every space has unused directions.
    problem = u.deep_linear_mse([8, 4, 2], 5, widths=[4, 6], lam_w=0.02, lam_h=0.02, per_class=1)
    point = theory_start(problem)
    sym = symmetry_directions(point, problem)
    np.testing.assert_allclose(sym @ sym.T, np.eye(sym.shape[0]), atol=1e-12)
    # Orbit dimension: every space has rank r = 3 (all classes alive), so r(r−1)/2 + r(d − r) per space:
    # d = 5: 3 + 6, d_1 = 4: 3 + 3, d_2 = 6: 3 + 9.
    assert sym.shape[0] == 9 + 6 + 12
    hvp = hessian_vector_product(point, problem)
    H = _dense_hessian(point, problem)
    assert np.allclose(H, H.T, atol=1e-12 * np.abs(H).max())
    H = 0.5 * (H + H.T)
    scale = np.linalg.norm(H, 2)
    for q in sym:
        assert np.linalg.norm(hvp(q)) <= 1e-10 * scale  # the point is exact: H q = A ∇f = 0
    free = np.asarray(free_coordinates(point, problem))
    Hf = H[np.ix_(free, free)]
    eig = np.linalg.eigvalsh(Hf)
    assert np.sum(np.abs(eig) < 1e-9 * scale) == sym.shape[0]  # exactly the rotations are null
    # On the complement of the rotations the smallest eigenvalue is the smallest positive one, and
    # Lanczos finds it.
    complement = scipy.linalg.null_space(sym[:, free])
    reference = np.linalg.eigvalsh(complement.T @ Hf @ complement)[0]
    check = hessian_check(point, problem)
    assert reference == pytest.approx(eig[sym.shape[0]], rel=1e-9)
    assert check.min_eig == pytest.approx(reference, rel=1e-9)


def test_the_check_is_invariant_under_rotating_the_point():
    problem = u.biased_mse([8, 4, 2, 2], 4, widths=[5], lam_w=0.03, lam_h=0.03, per_class=1)
    point = theory_start(problem)
    rotated = _rotate(point, 7)
    assert float(u.objective(rotated, problem)) == pytest.approx(float(u.objective(point, problem)),
                                                                   rel=1e-13)
    a, b = hessian_check(point, problem), hessian_check(rotated, problem, seed=3)
    assert a.symmetries == b.symmetries and a.dimension == b.dimension
    assert b.min_eig == pytest.approx(a.min_eig, rel=1e-9)
    assert b.max_eig == pytest.approx(a.max_eig, rel=1e-6)


# ---- Lanczos and the verdict --------------------------------------------------------------------------


def test_lanczos_finds_the_extremes_on_a_subspace():
    rng = np.random.default_rng(0)
    n = 60
    A = rng.standard_normal((n, n))
    A = A + A.T
    basis = np.linalg.qr(rng.standard_normal((n, 8)))[0]  # excluded directions
    P = np.eye(n) - basis @ basis.T
    reference = np.linalg.eigvalsh(scipy.linalg.null_space(basis.T).T @ A @ scipy.linalg.null_space(basis.T))
    result = lanczos_extremes(lambda v: A @ v, lambda v: P @ v, rng.standard_normal(n), n - 8,
                              max_steps=n, min_steps=n)
    assert result.steps == n - 8
    assert result.min_value == pytest.approx(reference[0], rel=1e-10)
    assert result.max_value == pytest.approx(reference[-1], rel=1e-10)
    assert np.linalg.norm(P @ A @ result.vector - result.min_value * result.vector) <= 1e-8
    assert abs(basis.T @ result.vector).max() <= 1e-12


def _check(min_eig, residual=0.0, steps=10, dimension=20, grad_norm=1e-10):
    tol = curvature_tolerance(grad_norm, 5.0, dimension)
    return HessianCheck(min_eig, 5.0, residual, steps, dimension, 0, 0, 0, grad_norm, tol, True)


def test_verdict_rules():
    # τ = max(1e3·‖g‖, 10·√n·eps·max(1, scale)): 1e-7 for ‖g‖ = 1e-10; 10·√20·eps·5 ≈ 5e-14 if ‖g‖ = 0.
    assert _check(0.0).tolerance == pytest.approx(1e-7)
    assert _check(0.0, grad_norm=0.0).tolerance == pytest.approx(10 * math.sqrt(20) * 2.220446e-16 * 5)
    assert hessian_verdict(_check(-2e-7)) == "negative"  # a Rayleigh quotient: needs no convergence
    assert hessian_verdict(_check(-2e-7, residual=1.0)) == "negative"
    assert hessian_verdict(_check(-5e-8)) == "nonnegative"  # round-off / off-criticality
    assert hessian_verdict(_check(0.3, residual=1e-3)) == "inconclusive"  # not converged
    assert hessian_verdict(_check(0.3, residual=1e-3, steps=20)) == "nonnegative"  # whole space
    # A point far from critical cannot be called a saddle by its curvature alone.
    assert hessian_verdict(_check(-1e-3, grad_norm=1e-5)) == "nonnegative"


def test_bad_input_is_named():
    problem = u.ce([3, 3], 2, lam_w=0.1, lam_h=0.1, per_class=1)
    batch = u.stack_problems([problem, problem])
    with pytest.raises(ValueError, match="problem="):
        hessian_check(u.init_params(problem, 0), batch)
    other = u.init_params(u.ce([3, 3], 3, lam_w=0.1, lam_h=0.1, per_class=1), 0)
    with pytest.raises(ValueError, match="params="):
        hessian_check(other, problem)


def test_a_float32_point_is_checked_in_float64_with_its_own_gradient_as_tolerance():
    problem = u.ce([5, 5, 2, 2], 4, lam_w=0.01, lam_h=0.01, lam_b=0.01, per_class=1)
    point = theory_start(problem)
    as32 = jax.tree.map(lambda a: a.astype(jnp.float32) if eqx.is_inexact_array(a) else a, (point, problem))
    exact, rounded = hessian_check(point, problem), hessian_check(*as32)
    # The float32 point is ~6e-8 (relative) off the minimiser: its gradient sets τ (1e3·‖g‖), and the
    # curvature moves by O(that distance).
    assert rounded.grad_norm > 1e-9 and rounded.tolerance == pytest.approx(1e3 * rounded.grad_norm)
    assert rounded.min_eig == pytest.approx(exact.min_eig, rel=1e-5)
    assert rounded.verdict == exact.verdict == "nonnegative"
    # Too few Lanczos steps to converge: not called a minimum.
    assert hessian_check(point, problem, max_steps=3, min_steps=1).verdict == "inconclusive"
