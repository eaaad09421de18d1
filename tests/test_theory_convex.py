"""The convex certificate of every one-layer UFM without H >= 0 (`ufm_jax.theory.convex_solution`).

Against an independent optimum (scipy L-BFGS-B on the original `(W, H, b)`, float64), against every
closed form where both apply, through the package's own `solve` and `check`, its rank condition and the
free-bias gauge. Tolerances: `tests/_convex_bounds.py` (what the KKT residual guarantees) and
`tests/_certificate.py` (what the scipy run's own Newton step shows).
"""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize
from _certificate import certify
from _convex_bounds import bounds

import ufm_jax as u
from ufm_jax.theory import (
    TheoremNotApplicable,
    ce_balanced_solution,
    ce_two_cluster_solution,
    convex_solution,
    deep_linear_mse_solution,
    kkt_residual,
    mse_free_bias_solution,
)


def scipy_original(loss, sizes, dim, lam_w, lam_h, lam_b=None, free_bias=False, starts=3, seed=0):
    """L-BFGS-B on the original `(W, H, b)`, one feature column per class weighing `n_k` (exact: given
    `(W, b)` the problem in each feature is strictly convex and the same within a class, so features
    collapse; this uses no part of the convex reduction).

    Returns `(f, W, H, b, tol)`, `tol(q)` the certified tolerance of an invariant `q(W, H, b)`
    (`_certificate.certify`: the first-order error its Newton step shows, ×10, plus round-off).
    """
    n = np.asarray(sizes, float)
    K = n.size
    pi, nn = jnp.asarray(n / n.sum()), jnp.asarray(n)
    nb = K if (lam_b is not None or free_bias) else 0

    def unpack(x):
        W = x[: K * dim].reshape(K, dim)
        H = x[K * dim: 2 * K * dim].reshape(dim, K)
        return W, H, (x[2 * K * dim:] if nb else jnp.zeros(K))

    def objective(x):
        W, H, b = unpack(x)
        Z = W @ H + b[:, None]
        if loss == "ce":
            per_class = jax.nn.logsumexp(Z, axis=0) - jnp.diagonal(Z)
        else:
            per_class = 0.5 * jnp.sum((Z - jnp.eye(K)) ** 2, axis=0)
        value = pi @ per_class + 0.5 * lam_w * jnp.sum(W * W) + 0.5 * lam_h * nn @ jnp.sum(H * H, axis=0)
        return value + (0.5 * lam_b * b @ b if lam_b is not None else 0.0)

    fg = jax.jit(jax.value_and_grad(objective))
    rng = np.random.default_rng(seed)
    best = None
    for _ in range(starts):
        r = scipy.optimize.minimize(lambda x: tuple(np.asarray(v, float) for v in fg(jnp.asarray(x))),
                                    0.3 * rng.standard_normal(2 * K * dim + nb), jac=True, method="L-BFGS-B",
                                    options={"maxiter": 20000, "maxfun": 40000, "ftol": 1e-16, "gtol": 1e-13,
                                             "maxcor": 30})
        best = r if best is None or r.fun < best.fun else best
    cert = certify(lambda x: np.asarray(fg(jnp.asarray(x))[1], float), best.x)

    def tol(quantity):
        return cert.tolerance(lambda x: quantity(*(np.asarray(v) for v in unpack(jnp.asarray(x)))))

    return float(best.fun), *(np.asarray(v) for v in unpack(jnp.asarray(best.x))), tol


def _centred(b):
    return b - b.mean()


# ---- Against scipy on the original variables. -----------------------------------------------------

AGAINST_SCIPY = [
    # (loss, sizes, λ_W, λ_H, λ_b, free bias, regime of the convex minimiser)
    ("mse", [50, 20, 5], 0.01, 0.01, 1.0, False, "full-rank"),               # rank 3 = K: needs d = K
    ("mse", [50, 20, 5], 0.06, 0.015, 0.01, False, "rank 2"),                # one direction vanishes
    ("mse", [30, 30, 10, 2], 0.12, 0.03, 1.0, False, "zero logits: 2,3; rank 1"),  # two classes vanish
    ("mse", [12, 12, 12], 0.02, 0.02, 0.1, False, "rank 2"),                 # balanced: b takes the 1 direction
    ("ce", [30, 20, 12, 5], 0.02, 0.005, None, True, "full-rank"),           # four distinct sizes
    ("ce", [30, 20, 12, 5], 0.06, 0.06, None, True, "rank 1"),
    ("ce", [10, 10, 10, 10], 0.01, 0.01, None, True, "full-rank"),           # balanced
]


@pytest.mark.parametrize("loss, sizes, lam_w, lam_h, lam_b, free_bias, regime", AGAINST_SCIPY)
def test_against_scipy_on_the_original_problem(loss, sizes, lam_w, lam_h, lam_b, free_bias, regime):
    K = len(sizes)
    sol = convex_solution(loss, sizes, K, lam_w, lam_h, lam_b, free_bias=free_bias)
    assert sol.kind == "convex" and sol.source.startswith("convex certificate")
    assert sol.regime == regime and sol.details["kkt_residual"] <= 1e-12
    value, W, H, b, tol = scipy_original(loss, sizes, K, lam_w, lam_h, lam_b, free_bias)
    err = bounds(sol, sizes, lam_w, lam_h)
    # The convex value is a lower bound of the original problem: value >= F* >= sol.objective − err.
    assert value >= sol.objective - err.objective - 1e-15
    # scipy's value is second order in its distance (≲ 1e-17 here) and so is ours: 1e-12 relative is
    # loose for both, and far tighter than the 1e-8 that `check` certifies.
    assert value == pytest.approx(sol.objective, rel=1e-12, abs=1e-12)
    shift = _centred if (loss == "ce" and free_bias) else (lambda x: x)  # CE: b + c1 is a symmetry
    for invariant, theory, ours in (
        (lambda W, H, b: W @ H, sol.mean_logits, err.mean_logits),
        (lambda W, H, b: H.T @ H, sol.mean_gram, err.mean_gram),
        (lambda W, H, b: np.linalg.svd(W, compute_uv=False),
         sol.weight_singular_values[0], err.weight_singular_values(sol.weight_singular_values[0])),
        (lambda W, H, b: shift(b), sol.bias, err.bias),
    ):
        assert np.all(np.abs(invariant(W, H, b) - theory) <= tol(invariant) + ours), invariant
    # The numerical point passes the certificate only approximately (a residual first order in its
    # distance ≈ 1e-7 through U Vᵀ and the dropped singular values: 1e-3 is loose).
    lam_z = math.sqrt(lam_w * lam_h)
    assert kkt_residual(sizes, lam_z, lam_b, W @ H, b if (lam_b or free_bias) else None, loss=loss,
                        free_bias=free_bias) < 1e-3


# ---- Against every closed form that applies (one layer). ---------------------------------------------


def _assert_agrees(sol, ref, sizes, lam_w, lam_h, shift=lambda b: b):
    """`sol` (convex) within its certified errors (`_convex_bounds.bounds`) of the closed form `ref`, whose
    own error is round-off (brentq to 1e-15, an SVD): `ROUND_OFF` relative more."""
    err = bounds(sol, sizes, lam_w, lam_h)

    def close(ours, theirs, bound):
        theirs = np.asarray(theirs)
        slack = 1e-12 * max(1.0, float(np.max(np.abs(theirs), initial=0.0)))
        assert np.all(np.abs(np.asarray(ours) - theirs) <= bound + slack), (ours, theirs, bound)

    close(sol.objective, ref.objective, err.objective)
    close(sol.mean_logits, ref.mean_logits, err.mean_logits)
    close(shift(sol.bias), shift(ref.bias), err.bias)
    close(sol.mean_gram, ref.mean_gram, err.mean_gram)
    close(sol.weight_singular_values[0], ref.weight_singular_values[0],
          err.weight_singular_values(ref.weight_singular_values[0]))
    close(sol.product_singular_values, ref.product_singular_values,
          err.weight_singular_values(ref.product_singular_values))
    close(sol.mean_singular_values, ref.mean_singular_values, err.mean_singular_values(ref.mean_singular_values))
    return err


# [50, 20, 5], λ_W = 4λ_H: all alive; the smallest class (Dang) / direction (Liu) vanishes; all vanish.
MSE_LAMS = [(0.02, 0.005), (0.1, 0.025), (0.4, 0.1)]


@pytest.mark.parametrize("lam_w, lam_h", MSE_LAMS)
def test_mse_no_bias_agrees_with_dang(lam_w, lam_h):
    sizes = [50, 20, 5]
    ref = deep_linear_mse_solution(sizes, 3, (), lam_w, lam_h)
    _assert_agrees(convex_solution("mse", sizes, 3, lam_w, lam_h), ref, sizes, lam_w, lam_h)


@pytest.mark.parametrize("lam_w, lam_h", MSE_LAMS)
def test_mse_free_bias_agrees_with_liu(lam_w, lam_h):
    sizes = [50, 20, 5]
    ref = mse_free_bias_solution(sizes, 3, (), lam_w, lam_h)
    sol = convex_solution("mse", sizes, 3, lam_w, lam_h, free_bias=True)
    _assert_agrees(sol, ref, sizes, lam_w, lam_h)
    assert sol.bias == pytest.approx(np.asarray(sizes) / 75, abs=bounds(sol, sizes, lam_w, lam_h).bias)


@pytest.mark.parametrize("lam", [0.02, 0.2])        # Nλ_Z = 0.4 < √5 (alive), 4 > √5 (collapsed)
@pytest.mark.parametrize("mode", ["none", "regularised", "free"])
def test_ce_balanced_agrees_with_hong_ling(lam, mode):
    sizes = [5] * 4
    lam_b = 0.1 if mode == "regularised" else None
    # A free bias: the bias-free closed form, modulo b + c1 (the convex one is in the gauge Σb = 0).
    ref = ce_balanced_solution(sizes, 4, 2 * lam, lam / 2, lam_b)
    sol = convex_solution("ce", sizes, 4, 2 * lam, lam / 2, lam_b, free_bias=mode == "free")
    _assert_agrees(sol, ref, sizes, 2 * lam, lam / 2, shift=lambda b: b - b.mean())


@pytest.mark.parametrize("lam_b, lam, case", [
    # ce_two_cluster_thresholds(2, 8, 2, 2): minority collapse 0.0707, (b)/(c) switch 0.1063 (λ_b = 0.1:
    # 0.0885), complete collapse 0.1414 (test_certify.test_d_ce_two_clusters).
    (None, 0.03, "a"), (None, 0.08, "b"), (None, 0.12, "c"), (None, 0.2, "d"),
    (0.1, 0.03, "a"), (0.1, 0.078, "b"), (0.1, 0.11, "c"), (0.1, 0.2, "d"),
])
def test_ce_two_clusters_agree_with_hong_ling(lam_b, lam, case):
    sizes = [8, 8, 2, 2]
    ref = ce_two_cluster_solution(sizes, 4, lam, lam, lam_b)
    assert ref.details["case"] == case
    _assert_agrees(convex_solution("ce", sizes, 4, lam, lam, lam_b), ref, sizes, lam, lam)


# ---- The package's own solve, certified through the registry. ---------------------------------------


@pytest.mark.parametrize("loss, sizes, dim, lam_w, lam_h, lam_b, free_bias", [
    ("mse", [50, 20, 5], 3, 0.06, 0.015, 0.01, False),
    ("mse", [30, 30, 10, 2], 4, 0.12, 0.03, 1.0, False),
    ("mse", [30, 30, 10, 2], 1, 0.12, 0.03, 1.0, False),   # rank 1: d = 1 < K is exact
    ("ce", [30, 20, 12, 5], 4, 0.02, 0.005, None, True),
])
def test_package_solve_is_certified(loss, sizes, dim, lam_w, lam_h, lam_b, free_bias):
    problem = u.make_problem(loss, sizes, dim, lam_w=lam_w, lam_h=lam_h, lam_b=lam_b, free_bias=free_bias)
    theory = u.analytic_solution(problem)
    assert theory.kind == "convex" and theory.details["kkt_residual"] <= 1e-12
    verdict = u.check(u.solve(problem, seeds=2), theory)
    assert verdict.certified, verdict
    assert (verdict.objective_rtol, verdict.geometry_rtol) == (1e-8, 1e-4)


def test_issue_9_balanced_ce_free_bias_is_certified():
    """`ufm solve --loss ce --classes 100x4 --dim 4 --lam-w 0.005 --lam-h 0.005 --free-bias --x64 --key 0`
    was "geometry differs from theory (bias gap 0.281)": the bias is now compared modulo b + c1."""
    problem = u.ce([100] * 4, 4, lam_w=0.005, lam_h=0.005, free_bias=True)
    solution = u.solve(problem, key=0)
    verdict = u.check(solution)
    assert verdict.certified, verdict
    # The shift is a symmetry: moving the point along it changes nothing. With a regularised bias it is
    # not, and the comparison sees it (theory bias 0, so the gap is the point's |b_k|).
    theory = u.analytic_solution(problem)
    shifted = eqx.tree_at(lambda p: p.bias, solution.params, solution.params.bias + 0.7)
    gaps = u.metrics.compare_with_theory(shifted, problem, theory)
    assert float(gaps["bias"]) == pytest.approx(verdict.geometry["bias"], abs=1e-12)
    regularised = u.ce([100] * 4, 4, lam_w=0.005, lam_h=0.005, lam_b=0.01)
    gap = u.metrics.compare_with_theory(shifted, regularised, u.analytic_solution(regularised))["bias"]
    assert float(gap) == pytest.approx(float(np.max(np.abs(shifted.bias))), rel=1e-12)


# ---- The rank condition, the gauge, the registry. ----------------------------------------------------


def test_dim_below_the_rank_is_not_applicable():
    # Full rank 3 = K (MSE, regularised bias) and 3 = K − 1 (CE, free bias): d = 2 cannot hold Z̄*.
    with pytest.raises(TheoremNotApplicable, match="^dim=2 is not allowed: .*rank 3"):
        convex_solution("mse", [50, 20, 5], 2, 0.01, 0.01, 1.0)
    with pytest.raises(TheoremNotApplicable, match="^dim=2 is not allowed: .*rank 3"):
        convex_solution("ce", [30, 20, 12, 5], 2, 0.02, 0.005, free_bias=True)
    theory = u.analytic_solution(u.make_problem("mse", [50, 20, 5], 2, lam_w=0.01, lam_h=0.01, lam_b=1.0))
    assert isinstance(theory, u.NoTheory) and "rank 3" in theory.reason


def test_dim_below_k_where_the_rank_fits():
    # Rank 1 (two classes vanish): d = 1 has the minimum of d = K, and scipy with d = 1 reaches it.
    sizes, lam_w, lam_h, lam_b = [30, 30, 10, 2], 0.12, 0.03, 1.0
    full = convex_solution("mse", sizes, 4, lam_w, lam_h, lam_b)
    low = convex_solution("mse", sizes, 1, lam_w, lam_h, lam_b)
    assert low.details["rank"] == 1 and low.objective == full.objective
    assert low.product_singular_values.shape == (1,)
    value = scipy_original("mse", sizes, 1, lam_w, lam_h, lam_b)[0]
    assert value == pytest.approx(low.objective, rel=1e-12)


def test_free_ce_bias_gauge():
    sizes, lam_w, lam_h = [30, 20, 12, 5], 0.02, 0.005
    sol = convex_solution("ce", sizes, 4, lam_w, lam_h, free_bias=True)
    # Σ_k b_k = 0, which is also the minimum-norm member of {b + c1}: argmin_c ‖b + c1‖ = −mean(b) = 0.
    assert abs(sol.bias.sum()) <= 1e-14 * np.abs(sol.bias).max()
    assert np.abs(sol.bias).max() > 0.1     # the classes are unequal: the gauge fixes a nonzero bias
    # The certificate does not see the shift (softmax is invariant; round-off only).
    lam_z = math.sqrt(lam_w * lam_h)
    res = kkt_residual(sizes, lam_z, None, sol.mean_logits, sol.bias, free_bias=True)
    assert kkt_residual(sizes, lam_z, None, sol.mean_logits, sol.bias + 3.0, free_bias=True) == pytest.approx(
        res, abs=1e-13)
    # A warm start anywhere on the family lands in the gauge (within the two certified errors).
    warm = convex_solution("ce", sizes, 4, lam_w, lam_h, free_bias=True, init=(sol.mean_logits, sol.bias + 5.0))
    tol = bounds(sol, sizes, lam_w, lam_h).bias + bounds(warm, sizes, lam_w, lam_h).bias
    np.testing.assert_allclose(warm.bias, sol.bias, rtol=0, atol=tol)
    # A free MSE bias has no such symmetry and no gauge: it is b = n/N (Liu 2024; see the Liu test above).


def test_registry_says_which_kind():
    kinds = {
        "theorem": [u.mse([5, 3, 1], 3, lam_w=0.05, lam_h=0.05), u.biased_mse([5, 3, 1], 3, lam_w=0.05, lam_h=0.05),
                    u.ce([4] * 4, 4, lam_w=0.02, lam_h=0.02, free_bias=True),
                    u.ce([4, 4, 2, 2], 4, lam_w=0.02, lam_h=0.02, lam_b=0.1)],
        "convex": [u.mse([5, 3, 1], 3, lam_w=0.05, lam_h=0.05, lam_b=0.1),
                   u.ce([4, 4, 2, 2], 4, lam_w=0.02, lam_h=0.02, free_bias=True),
                   u.ce([6, 4, 2, 1], 4, lam_w=0.02, lam_h=0.02, lam_b=0.1)],
    }
    for kind, problems in kinds.items():
        for problem in problems:
            theory = u.analytic_solution(problem)
            assert theory.kind == kind, problem
            assert theory.source.startswith("convex certificate") == (kind == "convex")
    deep = u.make_problem("mse", [5, 3, 1], 3, lam_w=0.05, lam_h=0.05, lam_b=0.1, widths=[3])
    assert isinstance(u.analytic_solution(deep), u.NoTheory)
