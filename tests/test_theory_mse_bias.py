"""Liu (2024) Thm 4.3: the L-extended MSE UFM with a free bias, against the notes and an independent optimiser.

Reference values: shared/theory/seed000_liu_lextended_bias.md (§4, §6, §7). Errata: docs/errata.md.
"""

from __future__ import annotations

import functools
from decimal import Decimal

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import brentq, minimize

from _certificate import certify
from ufm_jax.theory._mse_bias import (
    _label_svd,
    mse_free_bias_solution,
    surviving_direction_thresholds,
    survival_threshold,
)
from ufm_jax.theory._solution import TheorySolution, padded_singular_values

CIFAR = (500, 500, 400, 400, 300, 300, 200, 200, 100, 100)
EMNIST = (1500,) + (600,) * 5 + (50,) * 20


def assert_printed(actual, printed: str, units: float = 0.5):
    """`actual` rounds to the printed decimal string (within `units` of its last printed digit)."""
    step = Decimal(1).scaleb(Decimal(printed).as_tuple().exponent)
    assert abs(float(actual) - float(printed)) <= units * float(step) * (1 + 1e-9) + 1e-15, (actual, printed)


def _shapes(dim, widths, num_classes):
    dims = (dim, *widths, num_classes)
    return [(dims[l + 1], dims[l]) for l in range(len(dims) - 1)] + [(dim, num_classes), (num_classes,)]


def _unpack(theta, shapes):
    out, i = [], 0
    for s in shapes:
        size = int(np.prod(s))
        out.append(theta[i : i + size].reshape(s))
        i += size
    return out


def _objective_and_grad(theta, n, shapes, lam_w, lam_h):
    *ws, h, b = _unpack(theta, shapes)
    big_n, k = n.sum(), n.size
    # prefix[l] = W_l ⋯ W_1 H̄ (prefix[0] = H̄)
    prefix = [h]
    for w in ws:
        prefix.append(w @ prefix[-1])
    resid = prefix[-1] + b[:, None] - np.eye(k)
    f = (np.sum(n[None, :] * resid**2) / (2 * big_n) + sum(lw / 2 * np.sum(w**2) for lw, w in zip(lam_w, ws))
         + lam_h / 2 * np.sum(n[None, :] * h**2))
    g_out = resid * n[None, :] / big_n
    grads = [None] * len(ws)
    back = g_out  # (W_L ⋯ W_{l+1})ᵀ G
    for l in range(len(ws) - 1, -1, -1):
        grads[l] = back @ prefix[l].T + lam_w[l] * ws[l]
        back = ws[l].T @ back
    g_h = back + lam_h * h * n[None, :]
    g_b = g_out.sum(axis=1)
    return f, np.concatenate([g.ravel() for g in (*grads, g_h, g_b)])


@functools.lru_cache(maxsize=None)
def numerical_minimum(n, dim, widths, lam_w, lam_h, starts=6, seed=0):
    """Best of several O(1) random L-BFGS-B starts (the origin is a local minimum for L ≥ 2).

    `tol(q)` is the certified tolerance of an invariant `q(ws, h, b)`: the first-order error that the run's
    own Newton step shows, ×10, plus round-off (tests/_certificate.py; L-BFGS-B stalls at ‖∇f‖ ≈ 1e-9, so
    first-order quantities are good to ~1e-8, not to its gtol).
    """
    n_arr = np.asarray(n, dtype=np.float64)
    shapes = _shapes(dim, widths, n_arr.size)
    lam_w_arr = np.broadcast_to(np.asarray(lam_w, dtype=np.float64), (len(widths) + 1,))
    size = sum(int(np.prod(s)) for s in shapes)
    rng = np.random.default_rng(seed)
    best = None
    for _ in range(starts):
        res = minimize(_objective_and_grad, rng.standard_normal(size), jac=True, method="L-BFGS-B",
                       args=(n_arr, shapes, lam_w_arr, lam_h),
                       options=dict(maxiter=50000, maxfun=100000, ftol=1e-16, gtol=1e-13, maxcor=50))
        if best is None or res.fun < best.fun:
            best = res
    *ws, h, b = _unpack(best.x, shapes)
    product = functools.reduce(lambda acc, w: w @ acc, ws[1:], ws[0])
    cert = certify(lambda x: _objective_and_grad(x, n_arr, shapes, lam_w_arr, lam_h)[1], best.x)

    def tol(quantity):
        return cert.tolerance(lambda x: quantity(*_split(x, shapes)))

    return dict(objective=best.fun, ws=ws, h=h, b=b, product=product, tol=tol)


def _split(theta, shapes):
    """`(ws, h, b)` of a parameter vector."""
    *ws, h, b = _unpack(theta, shapes)
    return ws, h, b


def _product(ws):
    return functools.reduce(lambda acc, w: w @ acc, ws[1:], ws[0])


def _padded_svd(a, length):
    return padded_singular_values(np.linalg.svd(a, compute_uv=False), length)


# (class sizes, dim, widths, lam_w, lam_h, regime): every regime, L = 1, 2, 3, balanced and imbalanced.
CASES = [
    ((8, 4, 2, 1), 4, (), 0.02, 0.02, "3/3 directions"),  # L=1, all alive
    ((8, 4, 2, 1), 4, (), 0.08, 0.08, "2/3 directions"),  # L=1, κ_3 = 1.094 < Nλ = 1.2 dies
    ((8, 4, 2, 1), 4, (), 0.2, 0.2, "collapsed"),  # L=1, Nλ = 3 > κ_1 = 2.36
    ((8, 4, 2, 1), 4, (4,), 0.01, 0.01, "3/3 directions"),  # L=2, all alive
    ((8, 4, 2, 1), 4, (4,), 0.04, 0.04, "2/3 directions"),  # L=2, some dead (notes §7 row 5)
    ((8, 4, 2, 1), 4, (4,), 0.1, 0.1, "collapsed"),  # L=2, all dead: F* = Σκ²/(2N) = 0.3111
    ((8, 4, 2, 1), 5, (5, 5), (0.004, 0.006, 0.008), 0.005, "3/3 directions"),  # L=3, unequal λ
    ((8, 4, 2, 1), 2, (3, 4), (0.004, 0.006, 0.008), 0.005, "2/3 directions"),  # L=3, width-limited d_0 = 2
    ((8, 4, 2, 1), 4, (4, 4), 0.028, 0.028, "2/3 directions"),  # L=3, some dead
    ((6, 6, 2, 2), 4, (4,), (0.02, 0.01), 0.015, "3/3 directions"),  # repeated κ, unequal λ
    ((5, 5, 5, 5), 4, (4,), 0.01, 0.01, "3/3 directions"),  # balanced: simplex ETF
    ((5, 5, 5, 5), 3, (1, 3), 0.01, 0.01, "1/3 directions"),  # balanced, hidden width d_1 = 1 cuts a block
    ((3, 3, 3), 3, (3, 3), 0.1, 0.1, "collapsed"),  # balanced L=3, all dead
]


def _case_id(case):
    n, dim, widths, lam_w, lam_h, regime = case
    return f"n{list(n)}-d{dim}-w{list(widths)}-L{len(widths) + 1}-{regime.replace('/', 'of').replace(' ', '')}"


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_matches_numerical_minimum(case):
    n, dim, widths, lam_w, lam_h, regime = case
    theory = mse_free_bias_solution(n, dim, widths, lam_w, lam_h)
    assert isinstance(theory, TheorySolution)
    assert theory.regime == regime
    num = numerical_minimum(n, dim, widths, lam_w, lam_h)
    # Global value to 1e-8 relative: second order in the run's error (f − f* ≤ ‖g‖·d ≈ 1e-17), so loose,
    # and still far below every erratum's miss (> 1e-2).
    assert abs(num["objective"] - theory.objective) <= 1e-8 * theory.objective
    k = len(n)
    invariants = [
        *((lambda ws, h, b, l=l: _padded_svd(ws[l], min(ws[l].shape)), want)
          for l, want in enumerate(theory.weight_singular_values)),
        (lambda ws, h, b: _padded_svd(_product(ws), min(k, dim)), theory.product_singular_values),
        (lambda ws, h, b: _padded_svd(h, min(k, dim)), theory.mean_singular_values),
        (lambda ws, h, b: b, np.asarray(n) / sum(n)),  # b* = n/N
    ]
    if theory.details["unique"]:
        invariants += [(lambda ws, h, b: h.T @ h, theory.mean_gram),
                       (lambda ws, h, b: _product(ws) @ h, theory.mean_logits)]
    else:  # r cuts through a repeated-κ block: H̄ᵀH̄ and P H̄ are one of several optima; their spectra are not
        invariants += [(lambda ws, h, b: np.linalg.eigvalsh(h.T @ h), np.linalg.eigvalsh(theory.mean_gram)),
                       (lambda ws, h, b: np.linalg.svd(_product(ws) @ h, compute_uv=False),
                        np.linalg.svd(theory.mean_logits, compute_uv=False))]
    for invariant, want in invariants:
        assert np.abs(invariant(num["ws"], num["h"], num["b"]) - want).max() <= num["tol"](invariant)
    np.testing.assert_allclose(theory.bias, np.asarray(n) / sum(n), rtol=1e-15)


def _jax_objective(params, n, lam_w, lam_h):
    *ws, h, b = params
    out = h
    for w in ws:
        out = w @ out
    resid = out + b[:, None] - jnp.eye(n.shape[0])
    big_n = jnp.sum(n)
    return (jnp.sum(n[None, :] * resid**2) / (2 * big_n)
            + sum(lw / 2 * jnp.sum(w**2) for lw, w in zip(lam_w, ws))
            + lam_h / 2 * jnp.sum(n[None, :] * h**2))


def build_minimiser(n, dim, widths, lam_w, lam_h, seed=0):
    """W_l = Q_l diag(sv(W_l)) Q_{l−1}ᵀ (Q_L = Û), Ē = Q_0 diag(sv(Ē)) V̂ᵀ, H̄ = Ē D⁻¹, b = n/N (notes §4)."""
    theory = mse_free_bias_solution(n, dim, widths, lam_w, lam_h)
    n_arr = np.asarray(n, dtype=np.float64)
    dims = (dim, *widths, len(n))
    r = theory.details["rank_limit"]
    u_hat, _, v_hat = _label_svd(n_arr)
    rng = np.random.default_rng(seed)
    frames = [np.linalg.qr(rng.standard_normal((d, r)))[0] for d in dims[:-1]] + [u_hat[:, :r]]
    lam_w_arr = np.broadcast_to(np.asarray(lam_w, dtype=np.float64), (len(dims) - 1,))
    # Per-direction singular values (paired by direction, not re-sorted), from the theory's x_j.
    sigma = theory.weight_singular_values[0][:r]
    ws = [frames[l + 1] @ np.diag(np.sqrt(lam_w_arr[0] / lam_w_arr[l]) * sigma) @ frames[l].T
          for l in range(len(dims) - 1)]
    e_bar = frames[0] @ np.diag(theory.details["feature_singular_values"][:r]) @ v_hat[:, :r].T
    h = e_bar / np.sqrt(n_arr)[None, :]
    return theory, ws, h, n_arr / n_arr.sum(), frames


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_theory_point_is_stationary(case):
    n, dim, widths, lam_w, lam_h, _ = case
    theory, ws, h, b, _ = build_minimiser(n, dim, widths, lam_w, lam_h)
    lam_w_arr = np.broadcast_to(np.asarray(lam_w, dtype=np.float64), (len(widths) + 1,))
    theta = np.concatenate([p.ravel() for p in (*ws, h, b)])
    value, grad = _objective_and_grad(theta, np.asarray(n, dtype=np.float64), _shapes(dim, widths, len(n)),
                                      lam_w_arr, lam_h)
    assert abs(value - theory.objective) <= 1e-12 * theory.objective
    assert np.max(np.abs(grad)) < 1e-12
    # The constructed point reproduces the returned invariants.
    product = functools.reduce(lambda acc, w: w @ acc, ws[1:], ws[0])
    np.testing.assert_allclose(h.T @ h, theory.mean_gram, atol=1e-12)
    np.testing.assert_allclose(product @ h, theory.mean_logits, atol=1e-12)


@pytest.mark.parametrize("case", [CASES[1], CASES[7]], ids=["L1", "L3-width-limited"])
def test_stationarity_with_jax_grad(case):
    # jax.grad of an independent JAX objective vanishes at the theory point and equals the NumPy gradient
    # (used above and by the optimiser) at a random point.
    n, dim, widths, lam_w, lam_h, _ = case
    theory, ws, h, b, _ = build_minimiser(n, dim, widths, lam_w, lam_h)
    lam_w_t = tuple(float(v) for v in np.broadcast_to(np.asarray(lam_w, dtype=np.float64), (len(widths) + 1,)))
    n_j = jnp.asarray(n, dtype=jnp.float64)
    value_and_grad = jax.jit(jax.value_and_grad(_jax_objective), static_argnums=2)
    value, grads = value_and_grad([jnp.asarray(p) for p in (*ws, h, b)], n_j, lam_w_t, lam_h)
    assert abs(float(value) - theory.objective) <= 1e-12 * theory.objective
    assert max(float(jnp.max(jnp.abs(g))) for g in grads) < 1e-12
    shapes = _shapes(dim, widths, len(n))
    theta = np.random.default_rng(7).standard_normal(sum(int(np.prod(s)) for s in shapes))
    value_np, grad_np = _objective_and_grad(theta, np.asarray(n, dtype=np.float64), shapes, np.asarray(lam_w_t), lam_h)
    value_j, grads_j = value_and_grad([jnp.asarray(p) for p in _unpack(theta, shapes)], n_j, lam_w_t, lam_h)
    np.testing.assert_allclose(value_np, float(value_j), rtol=1e-13)
    np.testing.assert_allclose(grad_np, np.concatenate([np.ravel(g) for g in grads_j]), rtol=1e-11, atol=1e-12)


# ---- Reference values printed in the notes -----------------------------------------------------

# notes §7.1 table: (n, dim, widths, lam_w, lam_h, x*, σ (sv W_1), F*)
REFERENCE_ROWS = [
    ((8, 4, 2, 1), 4, (), 0.02, 0.02, ["6.8746441463", "4.3291885988", "2.6460159286"],
     ["1.4361034934", "1.1396300188", "0.890957226"], "0.092099092042"),
    ((8, 4, 2, 1), 4, (4,), (0.01, 0.01), 0.01, ["4.4306817034", "3.3331567278", "2.4789092303"],
     ["1.3099601692", "1.1361892667", "0.9798354028"], "0.061304216001"),
    ((8, 4, 2, 1), 4, (4, 4), (0.004, 0.006, 0.008), 0.005, ["3.4754494364", "2.8312274642", "2.3002234567"],
     ["1.4539045876", "1.3122536848", "1.1828112148"], "0.042361495020"),
    ((8, 4, 2, 1), 2, (3, 4), (0.004, 0.006, 0.008), 0.005, ["3.4754494364", "2.8312274642", "0"],
     ["1.4539045876", "1.3122536848"], "0.070819546265"),
    ((8, 4, 2, 1), 4, (4,), (0.04, 0.04), 0.04, ["1.9636464829", "1.2896560473", "0"],
     ["1.2333020819", "0.999481505", "0"], "0.210981958124"),
    ((8, 4, 2, 1), 4, (4, 4), 0.028, 0.028, ["1.921419", "1.473833", "0"], None, "0.189935870144"),
    ((8, 4, 2, 1), 4, (), 0.06, 0.05, ["1.875413", "0.945945", "0.331337"], None, "0.209371266274"),
    ((6, 6, 2, 2), 4, (4,), (0.02, 0.01), 0.015, ["3.5998237775", "2.7663129962", "2.3466665532"],
     ["1.1166984983", "0.9789172242", "0.9016147402"], "0.094236830521"),
    ((5, 5, 5, 5), 4, (4,), (0.01, 0.01), 0.01, ["3.642839752"] * 3, ["1.276372776"] * 3, "0.075152212387"),
    (CIFAR, 12, (12, 12), 5.7e-3, 5.7e-3, ["1.663676", "1.607497", "1.537092", "1.441897", "1.371226"] + ["0"] * 4,
     None, "0.346848057857"),
]


@pytest.mark.parametrize("row", REFERENCE_ROWS, ids=[f"row{i}" for i in range(len(REFERENCE_ROWS))])
def test_reference_table(row):
    n, dim, widths, lam_w, lam_h, x_ref, sigma_ref, f_ref = row
    sol = mse_free_bias_solution(n, dim, widths, lam_w, lam_h)
    assert_printed(sol.objective, f_ref)
    for got, want in zip(sol.details["x"], x_ref):
        assert_printed(got, want)
    if sigma_ref is not None:
        for got, want in zip(sol.weight_singular_values[0], sigma_ref):
            assert_printed(got, want)


def test_reference_kappa_and_singular_values():
    sol = mse_free_bias_solution((8, 4, 2, 1), 4, (4, 4), (0.004, 0.006, 0.008), 0.005)
    for got, want in zip(sol.details["kappa"], ["2.3623932439", "1.5987565796", "1.0938047786", "0"]):
        assert_printed(got, want)
    refs = {  # notes §7.1 "Further singular values"
        "W2": (sol.weight_singular_values[1], ["1.1871081247", "1.0714506469", "0.9657613128"]),
        "W3": (sol.weight_singular_values[2], ["1.0280657931", "0.9279034792", "0.8363738309"]),
        "H": (sol.details["feature_singular_values"], ["1.3004117962", "1.1737153772", "1.0579385123"]),
        "P": (sol.product_singular_values, ["1.7743818781", "1.3046462655", "0.9554009604"]),
        "PE": (sol.details["output_singular_values"], ["2.3074271253", "1.5312833836", "1.0107554708"]),
    }
    for got, want in refs.values():
        for g, w in zip(got, want):
            assert_printed(g, w)
    # sv(PĒ) = κ x^L/(1+x^L) (the corrected 4th identity) holds as an identity of the returned numbers.
    x, kappa = sol.details["x"], sol.details["kappa"]
    np.testing.assert_allclose(sol.details["output_singular_values"], kappa * x**3 / (1 + x**3), rtol=1e-13)


def test_reference_dataset_spectra_bias_and_thresholds():
    cifar_kappa = ["22.36068", "21.28035", "20", "18.40282", "17.32051", "15.06111", "14.14214", "10.72284",
                   "10", "0"]
    sol = mse_free_bias_solution(CIFAR, 2048, (2048,) * 2, 5e-4, 5e-4)
    for got, want in zip(sol.details["kappa"], cifar_kappa):
        assert_printed(got, want)
    np.testing.assert_allclose(sol.bias, [1 / 6, 1 / 6, 2 / 15, 2 / 15, 1 / 10, 1 / 10, 1 / 15, 1 / 15, 1 / 30, 1 / 30])
    assert sol.regime == "9/9 directions"  # notes §6: with weight decay 5e-4 every direction survives
    emnist = mse_free_bias_solution(EMNIST, 2048, (), 5e-4, 5e-4)
    expected = [35.09782] + [24.49490] * 4 + [13.14109] + [7.07107] * 19 + [0]
    np.testing.assert_allclose(emnist.details["kappa"], expected, atol=0.5e-5)
    assert emnist.regime == "25/25 directions"

    cifar_table = {  # notes §6, λ_crit,j for equal λ
        1: "7.454e-3 7.093e-3 6.667e-3 6.134e-3 5.774e-3 5.020e-3 4.714e-3 3.574e-3 3.333e-3",
        3: "9.593e-3 8.906e-3 8.114e-3 7.162e-3 6.540e-3 5.303e-3 4.825e-3 3.186e-3 2.869e-3",
        6: "1.004e-2 9.219e-3 8.289e-3 7.187e-3 6.478e-3 5.097e-3 4.576e-3 2.847e-3 2.526e-3",
    }
    # One unit in the last digit: the notes print 3.186e-3 for CIFAR L = 3, j = 8, where the exact value is
    # 3.18549e-3 (κ_8 = 10.72284 and every other entry agree to half a unit).
    for depth, row in cifar_table.items():
        got = surviving_direction_thresholds(CIFAR, 2048, (2048,) * (depth - 1))
        for g, w in zip(got, row.split(), strict=True):
            assert_printed(g, w, units=1.0)
    emnist_table = {1: "6.381e-3 4.454e-3 2.389e-3 1.286e-3", 3: "1.029e-2 5.999e-3 2.357e-3 9.305e-4",
                    6: "1.186e-2 6.400e-3 2.201e-3 7.607e-4"}
    for depth, row in emnist_table.items():
        got = surviving_direction_thresholds(EMNIST, 2048, (2048,) * (depth - 1))
        for g, w in zip(got[[0, 1, 5, 6]], row.split(), strict=True):
            assert_printed(g, w, units=1.0)


def test_thresholds_are_phase_boundaries():
    # Scaling all λ's by s: direction j is alive iff s < s_j; and s_j = 0 beyond the rank limit r.
    n, dim, widths, lam_w, lam_h = (8, 4, 2, 1), 3, (2, 4), (1.0, 2.0, 0.5), 1.5
    s = surviving_direction_thresholds(n, dim, widths, lam_w, lam_h)
    assert s[2] == 0 and s[0] > s[1] > 0  # r = 2
    for j in range(2):
        for factor, alive in ((0.999, j + 1), (1.001, j)):
            sol = mse_free_bias_solution(n, dim, widths, np.multiply(lam_w, factor * s[j]), lam_h * factor * s[j])
            assert sol.details["num_surviving"] == alive


def test_threshold_jump_reference():
    # notes §7.8: n = [8,4,2,1], L = 2, equal λ; κ_2 dies at λ = 0.049459; x jumps from ≈ (L−1)^{1/L} = 1 to 0.
    lam_crit = surviving_direction_thresholds((8, 4, 2, 1), 4, (4,))[1]
    assert_printed(lam_crit, "0.049459")
    below = mse_free_bias_solution((8, 4, 2, 1), 4, (4,), 0.99 * lam_crit, 0.99 * lam_crit)
    above = mse_free_bias_solution((8, 4, 2, 1), 4, (4,), 1.01 * lam_crit, 1.01 * lam_crit)
    assert_printed(below.details["x"][1], "1.014966")
    assert_printed(below.objective, "0.243598286311")
    assert_printed(above.objective, "0.246392164525")
    assert below.regime == "2/3 directions" and above.regime == "1/3 directions"
    # Every surviving direction has x ≥ (L−1)^{1/L} (the discontinuity).
    assert np.all(below.details["x"][below.details["x"] > 0] >= 1.0)


def test_minority_collapse_cifar():
    # notes §7.9: CIFAR, L = 3, λ = 5.7e-3: τ = 249.78; groups 200 and 100 collapse within pairs.
    sol = mse_free_bias_solution(CIFAR, 12, (12, 12), 5.7e-3, 5.7e-3)
    assert_printed(sol.details["tau"], "249.78")
    logits = sol.mean_logits + sol.bias[:, None]
    for a, b in ((6, 7), (8, 9)):
        np.testing.assert_allclose(logits[:, a], logits[:, b], atol=1e-13)
        np.testing.assert_allclose(sol.mean_gram[a, a], sol.mean_gram[a, b], rtol=1e-12)
    assert mse_free_bias_solution(CIFAR, 12, (12, 12), 9e-3, 9e-3).regime == "1/9 directions"


def test_balanced_is_simplex_etf():
    sol = mse_free_bias_solution((5, 5, 5, 5), 4, (4,), 0.01, 0.01)
    etf = np.eye(4) - np.ones((4, 4)) / 4
    np.testing.assert_allclose(sol.mean_gram / sol.mean_gram[0, 0] * etf[0, 0], etf, atol=1e-13)


def test_invalid_arguments():
    with pytest.raises(ValueError, match="lam_w"):
        mse_free_bias_solution((3, 2), 2, (2,), (0.1, 0.1, 0.1), 0.1)
    with pytest.raises(ValueError, match="lam_h"):
        mse_free_bias_solution((3, 2), 2, (), 0.1, 0.0)
    with pytest.raises(ValueError, match="class_sizes"):
        mse_free_bias_solution((3,), 2, (), 0.1, 0.1)
    with pytest.raises(ValueError, match="widths"):
        mse_free_bias_solution((3, 2), 2, (0,), 0.1, 0.1)


def test_huge_class_sizes():
    # Nothing in the formulas depends on N being a sample count; n_k = 1e9 works in float64.
    sol = mse_free_bias_solution((4e9, 2e9, 1e9), 3, (3,), 1e-10, 1e-10)
    assert np.isfinite(sol.objective) and sol.details["num_surviving"] >= 1


# ---- One test per formula erratum of notes §8 --------------------------------------------------
# Each computes the formula as printed, shows it disagrees with the numerical optimum (or with the
# exact quantity it claims to equal), and shows the corrected formula agrees.

L3 = ((8, 4, 2, 1), 5, (5, 5), (0.004, 0.006, 0.008), 0.005)  # unequal λ, so c ≠ 1


def _numerical_direction_values(case):
    """κ and the numerical optimum's Ûᵀ P Ē V̂, V̂ᵀ ĒᵀĒ V̂ and sv(W_1) (diagonal when κ distinct), with
    `tol`: the certified tolerance of each, as a function of the name (`"pe"`, `"ee"`, `"sv_w1"`)."""
    n, dim, widths, lam_w, lam_h = case
    num = numerical_minimum(n, dim, widths, lam_w, lam_h)
    n_arr = np.asarray(n, dtype=np.float64)
    u_hat, kappa, v_hat = _label_svd(n_arr)

    def values(ws, h, b):
        e_bar = h * np.sqrt(n_arr)[None, :]
        return dict(pe=u_hat.T @ _product(ws) @ e_bar @ v_hat, ee=v_hat.T @ e_bar.T @ e_bar @ v_hat,
                    sv_w1=np.linalg.svd(ws[0], compute_uv=False))

    got = values(num["ws"], num["h"], num["b"])
    return kappa, got["pe"], got["ee"], got["sv_w1"], lambda name: num["tol"](lambda *p: values(*p)[name])


def test_erratum_e_li1_fourth_identity():
    # Thm 4.3 (R1:176, R2:620): Ûᵀ P H̄ D V̂ = cΥ₂κ (printed) vs cΥ₂κ(cΥ₁ᴸ + Nλ_H I) (corrected).
    n, dim, widths, lam_w, lam_h = case = ((8, 4, 2, 1), 4, (4,), (0.01, 0.01), 0.01)
    kappa, pe, _, _, tol = _numerical_direction_values(case)
    sol = mse_free_bias_solution(*case)
    big_n, depth, c = sum(n), 2, sol.details["c"]
    sigma2 = sol.weight_singular_values[0] ** 2
    ups1 = sigma2
    ups2 = sigma2**depth / (c * sigma2**depth + big_n * lam_h) ** 2
    printed = c * ups2 * kappa
    corrected = c * ups2 * kappa * (c * ups1**depth + big_n * lam_h)
    assert np.abs(pe - np.diag(corrected)).max() <= tol("pe")
    assert np.max(np.abs(np.diag(pe) - printed)) > 1.0  # printed [0.726, 0.807, 0.878] vs [2.248, 1.467, 0.941]
    # The paper's NC2^{WH} target (R1:261) is therefore not 0 at the optimum (notes: 0.407 for this case).
    nc2_wh = np.linalg.norm(pe / np.linalg.norm(pe) - np.diag(printed) / np.linalg.norm(printed))
    nc2_wh_corrected = np.linalg.norm(pe / np.linalg.norm(pe) - np.diag(corrected) / np.linalg.norm(corrected))
    # Normalising is 2/‖pe‖-Lipschitz, so the corrected NC2 is within 2 × tol(pe)·K/‖pe‖ of its exact 0.
    assert nc2_wh > 0.3 and nc2_wh_corrected <= 2 * tol("pe") * pe.shape[0] / np.linalg.norm(pe)
    assert_printed(nc2_wh, "0.407")


def test_erratum_e_li2_collapse_sign():
    # Remark after Thm 4.3 (R1:199, R2:714-730): "collapse if (NΠ)^{1/L} L² N − κ²(L−1)^{(L−1)/L} is negative".
    n, dim, widths, lam_w, lam_h = case = ((8, 4, 2, 1), 4, (4,), (0.04, 0.04), 0.04)
    _, _, _, sv_w1, tol = _numerical_direction_values(case)
    kappa = mse_free_bias_solution(*case).details["kappa"][:3]
    depth, big_n = 2, sum(n)
    sign_quantity = (big_n * 0.04**3) ** (1 / depth) * depth**2 * big_n - kappa**2 * (depth - 1) ** ((depth - 1) / depth)
    printed_collapse = sign_quantity < 0
    corrected_collapse = sign_quantity > 0
    numerical_collapse = sv_w1[:3] <= tol("sv_w1")  # zero to within the run's certified error
    np.testing.assert_array_equal(numerical_collapse, [False, False, True])
    np.testing.assert_array_equal(corrected_collapse, numerical_collapse)
    np.testing.assert_array_equal(printed_collapse, ~numerical_collapse)


def test_erratum_e_li3_c_numerator():
    # Thm 4.3 (R1:159): c = λ_{W_L}^{L−1}/(λ_{W_L}⋯λ_{W_2}) (OCR) vs λ_{W_1}^{L−1}/(λ_{W_L}⋯λ_{W_2}).
    n, dim, widths, lam_w, lam_h = L3
    _, _, _, sv_w1, tol = _numerical_direction_values(L3)
    x = mse_free_bias_solution(*L3).details["x"][:3]
    depth, big_n = 3, sum(n)
    denominator = lam_w[2] * lam_w[1]
    for c, agrees in ((lam_w[2] ** 2 / denominator, False), (lam_w[0] ** 2 / denominator, True)):
        sigma = np.sqrt((big_n * lam_h / c) ** (1 / depth) * x)
        assert (np.max(np.abs(sigma - sv_w1[:3])) <= tol("sv_w1")) == agrees
    # printed c = 4/3 → σ = [1.154, 1.042, 0.939] vs numerical [1.4539, 1.3123, 1.1828]


def test_erratum_e_li4_lth_root():
    # Thm 4.3 (R1:159 "\sqrt[k]" in α; R1:194 "\sqrt" in the alignment condition) vs the L-th root.
    # Theorem normalisation: α_k = (N/κ_k²)·root(NΠ), x_k = largest root of α = x^{L−1}/(1+x^L)².
    n, dim, widths, lam_w, lam_h = L3
    _, _, _, sv_w1, tol = _numerical_direction_values(L3)
    sol = mse_free_bias_solution(*L3)
    kappa, c, depth, big_n = sol.details["kappa"][:3], sol.details["c"], 3, sum(n)
    prod = big_n * np.prod(lam_w) * lam_h

    def sigma_from(root_index):
        sig = []
        for k, kap in enumerate(kappa, start=1):
            index = k if root_index == "k" else root_index
            alpha = big_n / kap**2 * prod ** (1 / index)
            # Largest root of x^{L−1}/(1+x^L)² = α: on the decreasing branch x^L > (L−1)/(L+1).
            x_peak = ((depth - 1) / (depth + 1)) ** (1 / depth)
            x = brentq(lambda t: t ** (depth - 1) / (1 + t**depth) ** 2 - alpha, x_peak,
                       2 * alpha ** (-1 / (depth + 1)), xtol=1e-14)
            sig.append(np.sqrt((big_n * lam_h / c) ** (1 / depth) * x))
        return np.array(sig)

    assert np.max(np.abs(sigma_from("k") - sv_w1[:3])) > 0.1  # k-th root: k = 1 gives (NΠ)^1
    assert np.max(np.abs(sigma_from(2) - sv_w1[:3])) > 0.1  # square root
    # σ: k-th root [6.585, 1.930, 1.183], square root [2.129, 1.930, 1.754], L-th root = numerical
    # [1.4539, 1.3123, 1.1828].
    # brentq (xtol 1e-14) is exact next to the run's certified error.
    assert np.abs(sigma_from(depth) - sv_w1[:3]).max() <= tol("sv_w1")
    # The alignment condition with "\sqrt" would call direction 3 alive at λ = 0.028 (L = 3), where it is dead.
    kappa3 = mse_free_bias_solution((8, 4, 2, 1), 4, (4, 4), 0.028, 0.028).details["kappa"][2]
    lhs = lambda root: root(4.0 * 0.028**4 * 15) * 9 * 15  # noqa: E731
    assert lhs(np.sqrt) <= kappa3**2 * 2 ** (2 / 3) < lhs(np.cbrt)
    num = numerical_minimum((8, 4, 2, 1), 4, (4, 4), 0.028, 0.028)
    sv = np.linalg.svd(num["ws"][0], compute_uv=False)
    assert sv[2] <= num["tol"](lambda ws, h, b: np.linalg.svd(ws[0], compute_uv=False))


def test_erratum_e_li6_rank_includes_d0():
    # Thm 4.3 restates r = min(d_L, …, d_1, K) (R1:159, R2:560), dropping d_0; r = min(K, d_{L−1}, …, d_0).
    n, dim, widths, lam_w, lam_h = case = ((8, 4, 2, 1), 2, (3, 4), (0.004, 0.006, 0.008), 0.005)
    num = numerical_minimum(*case)
    printed_r = min(4, 4, 3, len(n))  # d_3 = K, d_2, d_1, K → 3
    corrected = mse_free_bias_solution(*case)
    assert corrected.details["rank_limit"] == 2 and printed_r == 3
    printed_value = mse_free_bias_solution(n, 5, widths, lam_w, lam_h).objective  # as if d_0 did not limit
    assert abs(num["objective"] - corrected.objective) < 1e-8 * corrected.objective
    assert num["objective"] - printed_value > 0.02  # 0.070820 vs 0.042361
    sv_tol = num["tol"](lambda ws, h, b: np.linalg.svd(ws[0], compute_uv=False))
    assert np.sum(np.linalg.svd(num["ws"][0], compute_uv=False) > sv_tol) == 2


def test_erratum_e_li8_upsilon2_coefficient():
    # Thm 4.3 Υ₂ (R1:182): σ_j^{2L}/(σσ_j^{2L} + Nλ_H)² (printed) vs σ_j^{2L}/(cσ_j^{2L} + Nλ_H)² (R2:640).
    # Checked through the 3rd identity V̂ᵀ D H̄ᵀH̄ D V̂ = cΥ₂κ².
    n, dim, widths, lam_w, lam_h = L3
    kappa, _, ee, _, tol = _numerical_direction_values(L3)
    sol = mse_free_bias_solution(*L3)
    c, depth, big_n = sol.details["c"], 3, sum(n)
    sigma = sol.weight_singular_values[0][: len(n)]  # σ_j is increasing in κ_j, so sorted = by direction
    s2l = sigma ** (2 * depth)
    printed = c * s2l / (sigma * s2l + big_n * lam_h) ** 2 * kappa**2
    corrected = c * s2l / (c * s2l + big_n * lam_h) ** 2 * kappa**2
    assert np.abs(ee - np.diag(corrected)).max() <= tol("ee")
    assert np.max(np.abs(np.diag(ee) - printed)) > 0.1


def test_erratum_e_li9_dropped_constant():
    # (B.13) last line (R1:750, R2:3306): ½ Σ_{j≤r} (λ_H κ_j²/(cσ_j^{2L} + Nλ_H) + Lλ_{W_1}σ_j²), without
    # the constant Σ_{j>r} κ_j²/(2N). Visible when the widths cut r below K − 1.
    n, dim, widths, lam_w, lam_h = case = ((8, 4, 2, 1), 2, (3, 4), (0.004, 0.006, 0.008), 0.005)
    num = numerical_minimum(*case)
    sol = mse_free_bias_solution(*case)
    kappa, c, r, depth, big_n = sol.details["kappa"], sol.details["c"], 2, 3, sum(n)
    sigma = sol.weight_singular_values[0][:r]
    printed = 0.5 * np.sum(lam_h * kappa[:r] ** 2 / (c * sigma ** (2 * depth) + big_n * lam_h)
                           + depth * lam_w[0] * sigma**2)
    corrected = printed + np.sum(kappa[r:] ** 2) / (2 * big_n)
    assert abs(corrected - num["objective"]) < 1e-8 * num["objective"]
    assert num["objective"] - printed > 0.03  # the constant κ_3²/(2N) = 0.0399
    assert abs(corrected - sol.objective) < 1e-13


def test_erratum_e_li10_feature_frame():
    # Proof B.3 (R1:726-730, R2:3133): Ē = U_{W_1}(…)κV̂ᵀ (printed) vs V_{W_1}(…)κV̂ᵀ: Ē lives in ℝ^{d_0} and
    # must align with the input singular vectors of W_1. With d_1 = d_0 the printed point is a valid shape
    # but not a minimiser.
    n, dim, widths, lam_w, lam_h = L3
    theory, ws, h, b, frames = build_minimiser(*L3, seed=1)
    n_arr = np.asarray(n, dtype=np.float64)
    shapes = _shapes(dim, widths, len(n))

    def objective(h_bar):
        theta = np.concatenate([p.ravel() for p in (*ws, h_bar, b)])
        return _objective_and_grad(theta, n_arr, shapes, np.asarray(lam_w), lam_h)[0]

    # W_1 = Q_1 Σ Q_0ᵀ: U_{W_1} = Q_1, V_{W_1} = Q_0. Rebuild Ē with the printed frame Q_1.
    r = theory.details["rank_limit"]
    _, _, v_hat = _label_svd(n_arr)
    e_printed = frames[1] @ np.diag(theory.details["feature_singular_values"][:r]) @ v_hat[:, :r].T
    h_printed = e_printed / np.sqrt(n_arr)[None, :]
    f_corrected, f_printed = objective(h), objective(h_printed)
    num = numerical_minimum(*L3)
    assert abs(f_corrected - num["objective"]) < 1e-8 * num["objective"]
    assert f_printed - num["objective"] > 0.01


def test_erratum_e_li11_lemma_a1_exponents():
    # Lemma A.1 (R1:325, R2:1177): ‖Z‖_* = min_{Z=WE} ½(‖W‖²/α + α‖E‖²); printed minimisers
    # W = α^{−1/4}UΣ^{1/2}Rᵀ, E = α^{1/4}RΣ^{1/2}Vᵀ; corrected W = α^{1/2}UΣ^{1/2}Rᵀ, E = α^{−1/2}RΣ^{1/2}Vᵀ.
    rng = np.random.default_rng(3)
    z = rng.standard_normal((3, 4))
    alpha = 2.5
    u, s, vt = np.linalg.svd(z, full_matrices=False)

    def value(w, e):
        assert np.allclose(w @ e, z)
        return 0.5 * (np.sum(w**2) / alpha + alpha * np.sum(e**2))

    nuclear = s.sum()
    # The numerical minimum over factorisations Z = W E with W invertible (E = W⁻¹Z); it attains ‖Z‖_*.
    res = minimize(lambda t: value(t.reshape(3, 3), np.linalg.solve(t.reshape(3, 3), z)),
                   (np.eye(3) + 0.1 * rng.standard_normal((3, 3))).ravel(), method="BFGS",
                   options=dict(gtol=1e-10))
    # BFGS stops at ‖g‖ ≈ 1e-7: the value is second order (≈ ‖g‖²/α ≲ 1e-12), 1e-8 relative is loose.
    assert abs(res.fun - nuclear) < 1e-8 * nuclear
    printed = value(alpha**-0.25 * u * np.sqrt(s), alpha**0.25 * np.sqrt(s)[:, None] * vt)
    corrected = value(alpha**0.5 * u * np.sqrt(s), alpha**-0.5 * np.sqrt(s)[:, None] * vt)
    assert abs(corrected - nuclear) < 1e-12 * nuclear
    assert printed - nuclear > 0.5 * nuclear  # ½(α^{−3/2} + α^{3/2}) = 2.05 × ‖Z‖_*


def _group_matrix(sizes, counts, printed=False):
    """Thm 4.4's m×m matrix G for groups of `counts[i]` classes of `sizes[i]` samples."""
    sizes, counts = np.asarray(sizes, dtype=np.float64), np.asarray(counts, dtype=np.float64)
    big_n = np.sum(sizes * counts)
    g = -(sizes[:, None] * np.sqrt(sizes)[None, :] / big_n) * np.sqrt(np.outer(counts, counts))
    g[np.diag_indices_from(g)] = np.sqrt(sizes) * (1 - sizes * counts / big_n)
    if printed:  # R1:216: the (2, m) entry reads −N_2√N_1/N √(ℓ_2ℓ_m)
        m = sizes.size
        g[1, m - 1] = -sizes[1] * np.sqrt(sizes[0]) / big_n * np.sqrt(counts[1] * counts[m - 1])
    return g


def test_erratum_e_li13_m3_roots_are_squared():
    # Thm 4.4 / B.2 (R1:230, R1:843, R2:941, R2:4120): for m = 3 "the singular values of G are 0 and the roots
    # of λ² − aλ + b"; they are the squared singular values. EMNIST subset: N = (1500, 600, 50), ℓ = (1, 5, 20).
    sizes, counts = (1500, 600, 50), (1, 5, 20)
    big_n, k = 5500, 26
    a = (sizes[0] * (sizes[1] * counts[1] + sizes[2] * counts[2]) + sizes[1] * (sizes[0] * counts[0]
         + sizes[2] * counts[2]) + sizes[2] * (sizes[0] * counts[0] + sizes[1] * counts[1])) / big_n
    b = k * sizes[0] * sizes[1] * sizes[2] / big_n
    roots = np.sort(np.roots([1, -a, b]).real)[::-1]
    kappa = mse_free_bias_solution(EMNIST, 2048, (), 5e-4, 5e-4).details["kappa"]
    exact = np.array([kappa[0], kappa[5]])  # σ̃_1, σ̃_2 in the interlaced order
    np.testing.assert_allclose(np.linalg.svd(_group_matrix(sizes, counts), compute_uv=False)[:2], exact, rtol=1e-12)
    np.testing.assert_allclose(np.sqrt(roots), exact, rtol=1e-12)  # corrected
    assert np.min(np.abs(roots - exact)) > 100  # printed: 1231.86, 172.69 vs 35.098, 13.141


def test_erratum_e_li14_group_matrix_entry():
    # Thm 4.4 G (R1:216, 760, 795): (2, m) entry −N_2√N_1/N √(ℓ_2ℓ_m) vs −N_2√N_m/N √(ℓ_2ℓ_m).
    sizes, counts = (9, 4, 2), (2, 3, 2)
    n = np.repeat(sizes, counts)
    kappa = mse_free_bias_solution(n, 8, (), 1e-4, 1e-4).details["kappa"]
    # Group singular values σ̃_j sit at positions ℓ_1, ℓ_1+ℓ_2, … (1-based) of the interlaced list.
    exact = kappa[np.cumsum(counts) - 1]
    corrected = np.linalg.svd(_group_matrix(sizes, counts), compute_uv=False)
    printed = np.linalg.svd(_group_matrix(sizes, counts, printed=True), compute_uv=False)
    np.testing.assert_allclose(corrected, exact, atol=1e-12)
    assert np.max(np.abs(printed - exact)) > 0.1


def test_details_flags():
    cut = mse_free_bias_solution((5, 5, 5, 5), 3, (1, 3), 0.01, 0.01)  # r = 1 inside the √5 ×3 block
    assert cut.details["rank_limit"] == 1 and cut.details["width_limited"] and not cut.details["unique"]
    limited = mse_free_bias_solution((8, 4, 2, 1), 2, (3, 4), (0.004, 0.006, 0.008), 0.005)
    assert limited.details["width_limited"] and limited.details["unique"]
    free = mse_free_bias_solution((8, 4, 2, 1), 4, (4,), 0.04, 0.04)
    assert not free.details["width_limited"] and free.details["num_surviving"] == 2
    assert free.details["tau"] == survival_threshold(2, 15.0, 0.04**3)
    assert len(free.weight_singular_values) == 2 and free.product_singular_values.shape == (4,)
    assert "E-LI1" in free.source and "Thm 4.3" in free.source
