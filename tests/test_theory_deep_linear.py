"""Tests of the deep-linear UFM global minima (Dang et al. 2023) against the notes and independent optimisation.

The numerical reference minimises the original problem in weighted form (one column per class weighing
`n_k`, exact by separability, see `ufm_jax._problem`) with scipy's L-BFGS-B in float64 from several O(1)
random starts and keeps the best (for `L >= 2` the origin and partially-zero points are local minima).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import optimize

from _certificate import certify
from ufm_jax.theory._deep_linear import (
    class_vanishing_lambdas,
    collapse_threshold,
    deep_linear_ce_balanced_solution,
    deep_linear_mse_solution,
    largest_root,
)
from ufm_jax.theory._solution import TheorySolution, padded_singular_values

# ---- helpers ----------------------------------------------------------------------------------------


def _assert_printed(value, printed: str):
    """`value` agrees with `printed` to the printed digits (half a unit of the last digit)."""
    if "." in printed:
        decimals = len(printed.split(".")[1].split("e")[0])
        tol = 0.5 * 10.0 ** (-decimals) * (1 + 1e-9)
    else:
        tol = 1e-12 * abs(float(printed))
    assert abs(value - float(printed)) <= tol, (value, printed)


def _dims(class_sizes, dim, widths):
    return (dim, *widths, len(class_sizes))


def _unpack(theta, dims, bias):
    k = dims[-1]
    out, off = [], 0
    for l in range(len(dims) - 1):
        size = dims[l + 1] * dims[l]
        out.append(theta[off : off + size].reshape(dims[l + 1], dims[l]))
        off += size
    hbar = theta[off : off + dims[0] * k].reshape(dims[0], k)
    off += dims[0] * k
    b = theta[off : off + k] if bias else None
    return out, hbar, b


def _forward(ws, hbar):
    acts = [hbar]
    for w in ws:
        acts.append(w @ acts[-1])
    return acts


def _backward(ws, acts, grad_z, lam_w):
    gws = [None] * len(ws)
    back = grad_z
    for l in reversed(range(len(ws))):
        gws[l] = back @ acts[l].T + lam_w[l] * ws[l]
        back = ws[l].T @ back
    return gws, back


def _mse_fg(n, dims, lam_w, lam_h):
    n = np.asarray(n, float)
    frac = n / n.sum()
    eye = np.eye(dims[-1])

    def fg(theta):
        ws, hbar, _ = _unpack(theta, dims, False)
        acts = _forward(ws, hbar)
        resid = acts[-1] - eye
        f = 0.5 * np.sum(resid**2 * frac[None, :])
        f += sum(lam / 2 * np.sum(w**2) for lam, w in zip(lam_w, ws)) + lam_h / 2 * np.sum(hbar**2 * n[None, :])
        gws, gh = _backward(ws, acts, resid * frac[None, :], lam_w)
        gh = gh + lam_h * hbar * n[None, :]
        return f, np.concatenate([g.ravel() for g in gws] + [gh.ravel()])

    return fg


def _ce_fg(n, dims, lam_w, lam_h, bias, lam_b=0.0):
    n = np.asarray(n, float)
    frac = n / n.sum()
    eye = np.eye(dims[-1])
    has_b = bias != "none"

    def fg(theta):
        ws, hbar, b = _unpack(theta, dims, has_b)
        acts = _forward(ws, hbar)
        z = acts[-1] + (b[:, None] if has_b else 0.0)
        zmax = z.max(axis=0, keepdims=True)
        lse = zmax[0] + np.log(np.sum(np.exp(z - zmax), axis=0))
        f = np.sum(frac * (lse - np.diag(z)))
        f += sum(lam / 2 * np.sum(w**2) for lam, w in zip(lam_w, ws)) + lam_h / 2 * np.sum(hbar**2 * n[None, :])
        soft = np.exp(z - lse[None, :])
        gz = (soft - eye) * frac[None, :]
        gws, gh = _backward(ws, acts, gz, lam_w)
        gh = gh + lam_h * hbar * n[None, :]
        parts = [g.ravel() for g in gws] + [gh.ravel()]
        if has_b:
            gb = gz.sum(axis=1)
            if bias == "regularised":
                f += lam_b / 2 * np.sum(b**2)
                gb = gb + lam_b * b
            parts.append(gb)
        return f, np.concatenate(parts)

    return fg


def _minimise(fg, size, *, starts=6, scales=(0.7, 1.5), seed=0):
    """Best of `starts` L-BFGS-B runs, with its `Certificate` as `.cert` (tests/_certificate.py)."""
    rng = np.random.default_rng(seed)
    best = None
    for i in range(starts):
        x0 = rng.normal(scale=scales[i % len(scales)], size=size)
        res = optimize.minimize(
            fg, x0, jac=True, method="L-BFGS-B",
            options={"maxiter": 20000, "maxcor": 30, "ftol": 0.0, "gtol": 1e-13, "maxls": 60},
        )
        if best is None or res.fun < best.fun:
            best = res
    return _certified(fg, best)


def _certified(fg, res):
    res.cert = certify(lambda x: fg(x)[1], res.x)
    return res


def _size(dims, bias=False):
    return sum(dims[l + 1] * dims[l] for l in range(len(dims) - 1)) + dims[0] * dims[-1] + (dims[-1] if bias else 0)


def _numeric_invariants(theta, dims, bias=False):
    ws, hbar, b = _unpack(theta, dims, bias)
    prod = ws[0]
    for w in ws[1:]:
        prod = w @ prod
    k = dims[-1]
    return {
        "weights": [padded_singular_values(np.linalg.svd(w, compute_uv=False), min(w.shape)) for w in ws],
        "product": padded_singular_values(np.linalg.svd(prod, compute_uv=False), min(k, dims[0])),
        "mean": padded_singular_values(np.linalg.svd(hbar, compute_uv=False), min(dims[0], k)),
        "ws": ws, "hbar": hbar, "prod": prod, "bias": b,
    }


def _tol(res, dims, quantity, bias=False):
    """The certified tolerance of `quantity(invariants)` at the numerical run `res`: its own Newton step's
    first-order change ×10, plus round-off (tests/_certificate.py)."""
    return res.cert.tolerance(lambda x: quantity(_numeric_invariants(x, dims, bias)))


def _assert_certified(res, dims, bias, quantity, theory):
    """`quantity(invariants)` of the numerical run equals `theory` to within the run's certified error."""
    got = quantity(_numeric_invariants(res.x, dims, bias))
    tol = _tol(res, dims, quantity, bias)
    assert np.abs(np.asarray(got) - theory).max() <= tol, (got, theory, tol)


def _check_against_numeric(sol: TheorySolution, res, dims, bias=False):
    # The objective is second order in the run's error (f − f* ≤ ‖g‖·d ≈ 1e-17): 1e-8 relative is loose
    # for the certificate and far below every erratum's miss (> 1e-3).
    assert abs(res.fun - sol.objective) <= 1e-8 * abs(sol.objective), (res.fun, sol.objective)
    for l, th in enumerate(sol.weight_singular_values):
        _assert_certified(res, dims, bias, lambda inv, l=l: inv["weights"][l], th)
    _assert_certified(res, dims, bias, lambda inv: inv["product"], sol.product_singular_values)
    _assert_certified(res, dims, bias, lambda inv: inv["mean"], sol.mean_singular_values)
    # Invariants up to rotations inside tied blocks: compare spectra (eigenvalues are 1-Lipschitz).
    _assert_certified(res, dims, bias, lambda inv: np.linalg.eigvalsh(inv["hbar"].T @ inv["hbar"]),
                      np.linalg.eigvalsh(sol.mean_gram))

    def logit_spectrum(inv):
        logits = inv["prod"] @ inv["hbar"]
        return np.linalg.eigvalsh((logits + logits.T) / 2)

    _assert_certified(res, dims, bias, logit_spectrum, np.linalg.eigvalsh(sol.mean_logits))
    return _numeric_invariants(res.x, dims, bias)


# ---- MSE reference values (note §6) -------------------------------------------------------------------

# (class sizes, M, f* bias-free, x* per class, σ(W_m) per class, σ(W_M⋯W_1) per class)
_PAPER_SETTING = [
    ((100,) * 4, 1, "0.0198", ["49"] * 4, ["3.1304952"] * 4, ["3.1304952"] * 4),
    ((100,) * 4, 3, "0.012629046992", ["5.3902372"] * 4, ["1.775452"] * 4, ["5.5966328"] * 4),
    ((100,) * 4, 6, "0.013507408250", ["2.5219001"] * 4, ["1.3887256"] * 4, ["7.1729641"] * 4),
    ((100,) * 4, 9, "0.015843895355", ["1.8940301"] * 4, ["1.2585248"] * 4, ["7.9205603"] * 4),
    ((200, 100, 50, 50), 1, "0.018942135624", ["69.7107", "49", "34.3553", "34.3553"],
     ["3.733917", "3.130495", "2.621272", "2.621272"], ["3.733917", "3.130495", "2.621272", "2.621272"]),
    ((200, 100, 50, 50), 3, "0.012218400372", ["6.41842", "5.39024", "4.52270", "4.52270"],
     ["1.937398", "1.775452", "1.626312", "1.626312"], ["7.272048", "5.596633", "4.301419", "4.301419"]),
    ((200, 100, 50, 50), 6, "0.013220353373", ["2.78579", "2.52190", "2.28207", "2.28207"],
     ["1.459576", "1.388726", "1.321044", "1.321044"], ["9.668523", "7.172964", "5.315007", "5.315007"]),
    ((200, 100, 50, 50), 9, "0.015596261534", ["2.03057", "1.89403", "1.76621", "1.76621"],
     ["1.303099", "1.258525", "1.215317", "1.215317"], ["10.834231", "7.92056", "5.78371", "5.78371"]),
]


@pytest.mark.parametrize("case", _PAPER_SETTING, ids=lambda c: f"n{c[0][0]}-M{c[1]}")
def test_reference_paper_setting(case):
    sizes, depth, f_star, xs, sw, sp = case
    sol = deep_linear_mse_solution(sizes, 64, (64,) * (depth - 1), 5e-4, 5e-4)
    _assert_printed(sol.objective, f_star)
    for k in range(4):
        _assert_printed(sol.details["x"][k], xs[k])
        for l in range(depth):  # all λ equal: every layer has the same singular values
            _assert_printed(sol.weight_singular_values[l][k], sw[k])
        _assert_printed(sol.product_singular_values[k], sp[k])
        # σ(H_1) = s_k too, i.e. ‖h̄_k‖ = s_k/√n_k (mean_singular_values are those of H̄).
        assert math.sqrt(sol.mean_gram[k, k] * sizes[k]) == pytest.approx(float(sw[k]), abs=1e-6)
    assert sol.regime == "all-classes"


def test_reference_balanced_feature_norms_and_fit():
    for depth, norm in zip((1, 3, 6, 9), ("0.31305", "0.177545", "0.138873", "0.125852")):
        sol = deep_linear_mse_solution((100,) * 4, 64, (64,) * (depth - 1), 5e-4, 5e-4)
        _assert_printed(math.sqrt(sol.mean_gram[0, 0]), norm)
    _assert_printed(deep_linear_mse_solution((100,) * 4, 64, (), 5e-4, 5e-4).mean_logits[0, 0], "0.98")
    sol = deep_linear_mse_solution((200, 100, 50, 50), 64, (64, 64), 5e-4, 5e-4)
    for k, v in enumerate(("0.996232", "0.993655", "0.989306", "0.989306")):
        _assert_printed(sol.mean_logits[k, k], v)


# (class sizes, dim, widths, lam_w, lam_h, f*, x* or None, regime)
_SMALL = [
    ((10,) * 4, 6, (6,), (0.02, 0.01), 0.02, "0.195360341868", ["2.43733725"] * 4, "all-classes"),
    ((10,) * 4, 2, (6,), (0.02, 0.01), 0.02, "0.347680170934", None, "2-vanished"),
    ((10,) * 4, 5, (6, 7), (0.03, 0.01, 0.02), 0.015, "0.238279507142", ["1.87206745"] * 4, "all-classes"),
    ((10,) * 4, 6, (6,), (0.2, 0.2), 0.2, "0.5", None, "collapsed"),
    ((20, 10, 5, 5), 6, (), 0.004, 0.003, "0.040978317920", None, "all-classes"),
    ((20, 10, 5, 5), 6, (), 0.07, 0.07, "0.463408953062", None, "2-vanished"),
    ((20, 10, 5, 5), 6, (6,), (0.02, 0.01), 0.02, "0.186575909539",
     ["3.20146985", "2.43733725", "1.79071827", "1.79071827"], "all-classes"),
    ((20, 10, 5, 5), 6, (6,), (0.05, 0.03), 0.04, "0.382133756654", ["1.81898438", "1.22474487", "0", "0"],
     "2-vanished"),
    ((20, 10, 5, 5), 5, (6, 7), (0.03, 0.01, 0.02), 0.015, "0.228948219765",
     ["2.29703946", "1.87206745", "1.4759133", "1.4759133"], "all-classes"),
    ((20, 10, 5, 5), 2, (6,), (0.02, 0.01), 0.02, "0.236559221107", None, "2-vanished"),
    ((20, 10, 10, 5), 6, (2,), (0.02, 0.01), 0.02, "0.277651087751", None, "2-vanished"),
]


@pytest.mark.parametrize("case", _SMALL, ids=[f"small{i}" for i in range(len(_SMALL))])
def test_reference_small(case):
    sizes, dim, widths, lam_w, lam_h, f_star, xs, regime = case
    sol = deep_linear_mse_solution(sizes, dim, widths, lam_w, lam_h)
    _assert_printed(sol.objective, f_star)
    assert sol.regime == regime
    if xs is not None:
        for k, x in enumerate(xs):
            _assert_printed(sol.details["x"][k], x)


def test_reference_details():
    sol = deep_linear_mse_solution((20, 10, 5, 5), 6, (), 0.004, 0.003)
    for k, v in enumerate(("3.75298335", "2.61861279", "1.81649167", "1.81649167")):
        _assert_printed(sol.details["s"][k] ** 2, v)
    # Thm 4.1 closed form s_k² = sqrt(n_k λ_H/λ_W) − N λ_H.
    np.testing.assert_allclose(sol.details["s"] ** 2, np.sqrt(np.array([20, 10, 5, 5]) * 0.003 / 0.004) - 40 * 0.003)
    assert deep_linear_mse_solution((10,) * 4, 5, (6, 7), (0.03, 0.01, 0.02), 0.015).details["c"] == pytest.approx(4.5)
    # P10: M = 1, a/n_k in (1/4, 1): ‖h_k‖² is not monotone in n_k.
    lam = math.sqrt(2) / 40
    sol = deep_linear_mse_solution((20, 10, 5, 5), 6, (), lam, lam)
    for k, v in enumerate(("0.152896", "0.174806", "0.164371", "0.164371")):
        _assert_printed(sol.mean_gram[k, k], v)
    # Table of constants (note §3).
    for depth, tau, x_at, h_max in ((2, "0.25", "1", "0.3247595"), (3, "0.1763779", "1.2599210", "0.2799825"),
                                    (4, "0.1424692", "1.3160740", "0.2663014"), (9, "0.0783902", "1.2599210", "0.2531120")):
        _assert_printed(collapse_threshold(depth), tau)
        assert largest_root(collapse_threshold(depth) * (1 - 1e-13), depth) == pytest.approx(float(x_at), abs=5e-7)
        sol = deep_linear_mse_solution((10, 10), 3, (3,) * (depth - 1), 1.0, 1.0)
        _assert_printed(sol.details["h_max"], h_max)


def test_discontinuous_jump_and_rank_tie():
    # L >= 2: just below τ the root is ≈ (L−1)^{1/L}, just above the class is zero.
    for depth in (2, 3):
        tau = collapse_threshold(depth)
        assert largest_root(tau * (1 - 1e-12), depth) == pytest.approx((depth - 1) ** (1 / depth), rel=1e-5)
    # L = 1: continuous.
    assert largest_root(1 - 1e-12, 1) == pytest.approx(0.0, abs=1e-11)
    sol = deep_linear_mse_solution((20, 10, 10, 5), 6, (2,), (0.02, 0.01), 0.02)
    assert sol.details["rank_tie"] and sol.details["rank_limit"] == 2
    assert list(sol.details["alive"]) == [True, True, False, False]
    assert list(sol.details["vanished_by_rank"]) == [2, 3]
    assert list(sol.details["vanished_by_threshold"]) == []


def test_unsorted_class_order():
    a = deep_linear_mse_solution((5, 20, 5, 10), 6, (6,), (0.05, 0.03), 0.04)
    b = deep_linear_mse_solution((20, 10, 5, 5), 6, (6,), (0.05, 0.03), 0.04)
    assert a.objective == pytest.approx(b.objective, rel=1e-14)
    np.testing.assert_allclose(a.details["x"], b.details["x"][[2, 0, 3, 1]])
    assert list(a.details["alive"]) == [False, True, False, True]


def test_class_vanishing_lambdas():
    sizes, dim, widths, rho = (20, 10, 5, 5), 6, (6, 6), (1.0, 2.0, 0.5)
    lam_star = class_vanishing_lambdas(sizes, dim, widths, rho, 1.5)
    assert np.all(np.diff(lam_star) <= 0)
    for k, ls in enumerate(lam_star):
        for factor, expect in ((1 - 1e-9, True), (1 + 1e-9, False)):
            lam = ls * factor
            sol = deep_linear_mse_solution(sizes, dim, widths, lam * np.array(rho), 1.5 * lam)
            assert bool(sol.details["alive"][k]) is expect
    # L = 1: N² λ*² ρ_W ρ_H = n_k; rank limit gives 0.
    lam1 = class_vanishing_lambdas((20, 10, 5, 5), 2, ())
    np.testing.assert_allclose(lam1[:2], np.sqrt([20, 10]) / 40)
    np.testing.assert_array_equal(lam1[2:], 0.0)


def test_invalid_arguments():
    with pytest.raises(ValueError, match="lam_w"):
        deep_linear_mse_solution((10, 10), 3, (3,), (0.1, 0.1, 0.1), 0.1)
    with pytest.raises(ValueError, match="class_sizes"):
        deep_linear_mse_solution((10,), 3, (), 0.1, 0.1)
    with pytest.raises(ValueError, match="widths"):
        deep_linear_mse_solution((10, 10), 3, (0,), 0.1, 0.1)
    with pytest.raises(ValueError, match="lam_h"):
        deep_linear_mse_solution((10, 10), 3, (), 0.1, -1.0)
    with pytest.raises(ValueError, match="class_sizes"):
        deep_linear_ce_balanced_solution((10, 5), 3, (), 0.1, 0.1, "free")
    with pytest.raises(ValueError, match="bias"):
        deep_linear_ce_balanced_solution((10, 10), 3, (), 0.1, 0.1, "learned")
    with pytest.raises(ValueError, match="widths"):
        deep_linear_ce_balanced_solution((10,) * 4, 3, (2,), 0.1, 0.1, "free", allow_uncertified=True)
    with pytest.raises(ValueError, match="dim"):
        deep_linear_ce_balanced_solution((10,) * 4, 2, (), 0.1, 0.1, "free")


# ---- MSE: independent numerical minimisation -------------------------------------------------------

_NUMERIC = [
    # (class sizes, dim, widths, lam_w, lam_h): all regimes, L = 1, 2, 3, width-limited rank
    ((10,) * 4, 6, (6,), (0.02, 0.01), 0.02),  # L=2 all alive (balanced)
    ((10,) * 4, 2, (6,), (0.02, 0.01), 0.02),  # L=2 rank 2 < K (balanced: tie at the rank boundary)
    ((10,) * 4, 6, (6,), (0.2, 0.2), 0.2),  # L=2 collapsed
    ((20, 10, 5, 5), 6, (), 0.004, 0.003),  # L=1 all alive
    ((20, 10, 5, 5), 6, (), 0.07, 0.07),  # L=1 two vanished
    ((20, 10, 5, 5), 2, (), 0.004, 0.003),  # L=1 d < K
    ((20, 10, 5, 5), 6, (), 0.3, 0.3),  # L=1 collapsed
    ((20, 10, 5, 5), 6, (6,), (0.02, 0.01), 0.02),  # L=2 all alive
    ((20, 10, 5, 5), 6, (6,), (0.05, 0.03), 0.04),  # L=2 two vanished (jump)
    ((20, 10, 5, 5), 2, (6,), (0.02, 0.01), 0.02),  # L=2 d < K
    ((20, 10, 10, 5), 6, (2,), (0.02, 0.01), 0.02),  # L=2 width < K, tie at the rank boundary
    ((20, 10, 5, 5), 5, (6, 7), (0.03, 0.01, 0.02), 0.015),  # L=3 all alive
    ((20, 10, 5, 5), 5, (3, 7), (0.03, 0.01, 0.02), 0.015),  # L=3 width 3 < K
    ((20, 10, 5, 5), 5, (6, 7), (0.06, 0.04, 0.05), 0.05),  # L=3 some vanished
]


def _solved(case):
    """The case with `lam_w` as one value per layer, and its theory solution."""
    sizes, dim, widths, lam_w, lam_h = case
    lam_w = np.broadcast_to(np.asarray(lam_w, float), (len(widths) + 1,))
    return sizes, dim, widths, lam_w, lam_h, deep_linear_mse_solution(sizes, dim, widths, lam_w, lam_h)


@pytest.mark.parametrize("case", _NUMERIC, ids=[f"num{i}" for i in range(len(_NUMERIC))])
def test_mse_matches_numerical_minimum(case):
    sizes, dim, widths, lam_w, lam_h, sol = _solved(case)
    dims = _dims(sizes, dim, widths)
    res = _minimise(_mse_fg(sizes, dims, lam_w, lam_h), _size(dims), starts=6 if widths else 3)
    _check_against_numeric(sol, res, dims)


def test_mse_regimes_covered():
    regimes = {deep_linear_mse_solution(*c).regime for c in _NUMERIC}
    assert {"all-classes", "2-vanished", "collapsed"} <= regimes
    assert deep_linear_mse_solution(*_NUMERIC[-1]).regime != "all-classes"


def _theory_point(sol: TheorySolution, class_sizes, dim, widths, lam_w):
    """SVD-aligned factors realising the theory invariants (survivor j on coordinate j)."""
    k = len(class_sizes)
    dims = _dims(class_sizes, dim, widths)
    depth = len(dims) - 1
    lam_w = np.broadcast_to(np.asarray(lam_w, float), (depth,))
    alive = np.flatnonzero(sol.details["alive"])
    s = sol.details["s"]
    ws = [np.zeros((dims[l + 1], dims[l])) for l in range(depth)]
    hbar = np.zeros((dims[0], k))
    for j, cls in enumerate(alive):
        for l in range(depth):
            row = cls if l == depth - 1 else j
            ws[l][row, j] = math.sqrt(lam_w[0] / lam_w[l]) * s[cls]
        hbar[j, cls] = math.sqrt(sol.mean_gram[cls, cls])
    return ws, hbar


def _jax_mse_objective(ws, hbar, n, lam_w, lam_h):
    n = jnp.asarray(n, dtype=jnp.float64)
    z = hbar
    for w in ws:
        z = w @ z
    resid = z - jnp.eye(z.shape[0])
    data = 0.5 * jnp.sum(resid**2 * (n / jnp.sum(n))[None, :])
    pen = sum(lam / 2 * jnp.sum(w**2) for lam, w in zip(lam_w, ws))
    return data + pen + lam_h / 2 * jnp.sum(hbar**2 * n[None, :])


def test_numpy_gradient_matches_jax_grad():
    """The hand-written gradient used by the optimiser and the stationarity test equals jax.grad."""
    sizes, dim, widths, lam_w, lam_h = (20, 10, 5, 5), 5, (3, 7), (0.03, 0.01, 0.02), 0.015
    dims = _dims(sizes, dim, widths)
    theta = np.random.default_rng(1).normal(size=_size(dims))
    f, g = _mse_fg(sizes, dims, lam_w, lam_h)(theta)
    ws, hbar, _ = _unpack(theta, dims, False)
    fj, (gws, gh) = jax.value_and_grad(_jax_mse_objective, argnums=(0, 1))(
        [jnp.asarray(w) for w in ws], jnp.asarray(hbar), sizes, lam_w, lam_h)
    gj = np.concatenate([np.asarray(x).ravel() for x in [*gws, gh]])
    assert f == pytest.approx(float(fj), rel=1e-13)
    np.testing.assert_allclose(g, gj, rtol=1e-11, atol=1e-13)
    # and the CE gradient against central finite differences
    fg = _ce_fg((5,) * 3, (3, 3), (0.1,), 0.05, "regularised", 0.2)
    theta = np.random.default_rng(2).normal(size=_size((3, 3), True))
    _, g = fg(theta)
    eps = 1e-6
    fd = [(fg(theta + eps * e)[0] - fg(theta - eps * e)[0]) / (2 * eps) for e in np.eye(theta.size)]
    # Central differences: round-off eps_mach·|f|/h ≈ 7.5e-10 (|f| = 3.4) plus truncation h²|f‴|/6 ≈ 1e-12.
    np.testing.assert_allclose(g, fd, atol=1e-8)


@pytest.mark.parametrize("case", _NUMERIC, ids=[f"stat{i}" for i in range(len(_NUMERIC))])
def test_mse_theory_point_is_stationary(case):
    sizes, dim, widths, lam_w, lam_h, sol = _solved(case)
    ws, hbar = _theory_point(sol, sizes, dim, widths, lam_w)
    dims = _dims(sizes, dim, widths)
    theta = np.concatenate([w.ravel() for w in ws] + [hbar.ravel()])
    value, grad = _mse_fg(sizes, dims, lam_w, lam_h)(theta)
    assert value == pytest.approx(sol.objective, rel=1e-13)
    assert np.max(np.abs(grad)) <= 1e-12 * max(1.0, np.max(np.abs(theta)))
    # The point realises the reported invariants.
    inv = _numeric_invariants(theta, dims)
    for num, th in zip(inv["weights"], sol.weight_singular_values):
        np.testing.assert_allclose(num, th, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(inv["product"], sol.product_singular_values, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(inv["hbar"].T @ inv["hbar"], sol.mean_gram, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(inv["prod"] @ inv["hbar"], sol.mean_logits, atol=1e-14)


def test_origin_is_local_minimum_for_deep():
    # L >= 2: the all-zero point is stationary with objective 1/2 (> f*), so restarts are needed.
    sizes, dim, widths, lam_w, lam_h = _NUMERIC[7]
    dims = _dims(sizes, dim, widths)
    f, g = _mse_fg(sizes, dims, lam_w, lam_h)(np.zeros(_size(dims)))
    assert f == 0.5 and np.max(np.abs(g)) == 0.0
    res = optimize.minimize(_mse_fg(sizes, dims, lam_w, lam_h), 1e-3 * np.ones(_size(dims)), jac=True, method="L-BFGS-B")
    # Stops at ‖g‖ <= 1e-5 (default gtol) near the origin: f − 1/2 ≈ ‖g‖²/(2α) with α ≳ λ = 0.01, ≲ 1e-8.
    assert res.fun == pytest.approx(0.5, abs=1e-6)
    assert deep_linear_mse_solution(sizes, dim, widths, lam_w, lam_h).objective < 0.2


# ---- CE balanced (Thm A.1) ---------------------------------------------------------------------------

_CE = [
    # (class sizes, dim, widths, lam_w, lam_h, bias): L = 1, where Thm A.1 is certified
    ((5,) * 3, 2, (), 0.01, 0.02, "free"),
    ((5,) * 3, 2, (), 0.01, 0.02, "regularised"),
    ((10,) * 4, 5, (), 0.005, 0.01, "none"),
    ((5,) * 3, 3, (), 0.5, 0.5, "none"),  # collapsed
]


@pytest.mark.parametrize("case", _CE, ids=[f"ce{i}" for i in range(len(_CE))])
def test_ce_matches_numerical_minimum(case):
    sizes, dim, widths, lam_w, lam_h, bias = case
    lam_w = np.broadcast_to(np.asarray(lam_w, float), (1,))
    sol = deep_linear_ce_balanced_solution(sizes, dim, widths, lam_w, lam_h, bias)
    assert sol.details["certified"]
    dims = _dims(sizes, dim, widths)
    has_b = bias != "none"
    res = _minimise(_ce_fg(sizes, dims, lam_w, lam_h, bias, lam_b=0.05), _size(dims, has_b), starts=3)
    _check_against_numeric(sol, res, dims, has_b)
    if bias == "regularised":
        _assert_certified(res, dims, has_b, lambda inv: inv["bias"], 0.0)
    elif bias == "free":  # any b·1 is optimal: the centred bias is 0
        _assert_certified(res, dims, has_b, lambda inv: inv["bias"] - inv["bias"].mean(), 0.0)
    if sol.regime == "etf":
        _assert_certified(res, dims, has_b, lambda inv: inv["prod"] @ inv["prod"].T
                          / sol.product_singular_values[0] ** 2, np.eye(len(sizes)) - 1 / len(sizes))
    else:
        assert sol.regime == "collapsed" and sol.objective == pytest.approx(math.log(len(sizes)))


def test_ce_deep_is_uncertified_critical_point():
    """For L >= 2 the ETF is returned only on request; it is a critical point (L-BFGS started at a
    perturbation of it returns to it), not certified as global (E-DL16)."""
    sizes, dim, widths, lam_w, lam_h = (10,) * 4, 6, (6,), (0.02, 0.01), 0.02
    with pytest.raises(ValueError, match="widths"):
        deep_linear_ce_balanced_solution(sizes, dim, widths, lam_w, lam_h, "free")
    sol = deep_linear_ce_balanced_solution(sizes, dim, widths, lam_w, lam_h, "none", allow_uncertified=True)
    assert sol.regime == "etf-uncertified" and not sol.details["certified"]
    dims = _dims(sizes, dim, widths)
    res = _ce_local_etf(sol, sizes, dims, np.asarray(lam_w), lam_h)
    _check_against_numeric(sol, res, dims)


def _ce_local_etf(sol, sizes, dims, lam_w, lam_h):
    """L-BFGS-B (bias-free) from a small perturbation of an SVD-aligned realisation of the ETF candidate."""
    k, depth = len(sizes), len(dims) - 1
    centre = np.eye(k) - 1 / k
    basis = np.linalg.svd(centre)[0][:, : k - 1]  # K × (K−1), orthonormal, ⟂ 1
    ws = []
    for l in range(depth):
        w = np.zeros((dims[l + 1], dims[l]))
        sv = sol.weight_singular_values[l][0]
        if l == depth - 1:
            w[:, : k - 1] = sv * basis
        else:
            w[: k - 1, : k - 1] = sv * np.eye(k - 1)
        ws.append(w)
    hbar = np.zeros((dims[0], k))
    hbar[: k - 1, :] = sol.mean_singular_values[0] * basis.T
    theta = np.concatenate([w.ravel() for w in ws] + [hbar.ravel()])
    fg = _ce_fg(sizes, dims, lam_w, lam_h, "none")
    assert fg(theta)[0] == pytest.approx(sol.objective, rel=1e-13)
    assert np.max(np.abs(fg(theta)[1])) < 1e-10
    theta = theta + 1e-3 * np.random.default_rng(3).normal(size=theta.size)
    return _certified(fg, optimize.minimize(fg, theta, jac=True, method="L-BFGS-B",
                                            options={"maxiter": 20000, "ftol": 0.0, "gtol": 1e-13, "maxls": 60}))


# ---- one test per formula erratum (note §9) ----------------------------------------------------------


def _numeric_mse(sizes, dim, widths, lam_w, lam_h, starts=6):
    dims = _dims(sizes, dim, widths)
    lam_w = np.broadcast_to(np.asarray(lam_w, float), (len(dims) - 1,))
    res = _minimise(_mse_fg(sizes, dims, lam_w, lam_h), _size(dims), starts=starts)
    return res, _numeric_invariants(res.x, dims)


def test_erratum_E_DL1_constant_c():
    """Thm 4.4 L240 prints c = λ_1^{M−1}/(λ_M⋯λ_1 λ_H); Lemma D.2 L1572 has λ_1^{M−1}/(λ_M⋯λ_2)."""
    sizes, dim, widths, lam_w, lam_h = (10,) * 4, 5, (6, 7), (0.03, 0.01, 0.02), 0.015
    sol = deep_linear_mse_solution(sizes, dim, widths, lam_w, lam_h)
    res, inv = _numeric_mse(sizes, dim, widths, lam_w, lam_h)
    s_num = inv["weights"][0][0]
    s_tol = _tol(res, _dims(sizes, dim, widths), lambda inv: inv["weights"][0][0])
    depth, total, x = 3, 40.0, sol.details["x"][0]
    c_printed = lam_w[0] ** 2 / (np.prod(lam_w) * lam_h)
    c_fixed = lam_w[0] ** 2 / (lam_w[1] * lam_w[2])
    assert c_printed == pytest.approx(10000.0) and c_fixed == pytest.approx(4.5)
    s_printed = (total * lam_h * x**depth / c_printed) ** (1 / (2 * depth))
    s_fixed = (total * lam_h * x**depth / c_fixed) ** (1 / (2 * depth))
    assert abs(s_fixed - s_num) <= s_tol
    assert abs(s_printed - s_num) > 0.5 * s_num  # 0.271 vs 0.978


def test_erratum_E_DL2_threshold_exponent():
    """Thm 4.4 L250–270 prints the threshold as (M−1)·(M−1)/M / M²; it is (M−1)^{(M−1)/M}/M²."""
    depth, n, k = 2, 10, 3
    printed = (depth - 1) * ((depth - 1) / depth) / depth**2  # 0.125
    assert collapse_threshold(depth) == 0.25
    beta = 0.2  # printed: collapsed; corrected: alive
    lam_w = 0.05
    lam_h = (beta / k) ** 2 / (n * k) / lam_w**2  # β = K (N λ_W² λ_H)^{1/2}
    sol = deep_linear_mse_solution((n,) * k, 4, (4,), lam_w, lam_h)
    assert sol.details["beta"][0] == pytest.approx(beta)
    assert beta > printed and sol.regime == "all-classes"
    res, _ = _numeric_mse((n,) * k, 4, (4,), lam_w, lam_h, starts=8)
    assert abs(res.fun - sol.objective) <= 1e-8 * sol.objective
    assert 0.5 - res.fun > 1e-2  # the printed threshold's prediction, f* = 1/2, is wrong


def test_erratum_E_DL3_symbol_a():
    """The 'a' of Thm 3.1 (L113) is K(KnΠλ)^{1/M}, compared with τ; the 'a' of Thm 4.4 (L240) is N(NΠλ)^{1/M},
    compared through a/n_k. They agree (a_3.1 = a_4.4/n); comparing a_4.4 itself with τ would be wrong."""
    sizes, dim, widths, lam_w, lam_h = (10,) * 4, 6, (6,), (0.02, 0.01), 0.02
    sol = deep_linear_mse_solution(sizes, dim, widths, lam_w, lam_h)
    a31 = 4 * (4 * 10 * np.prod(lam_w) * lam_h) ** 0.5
    assert a31 == pytest.approx(sol.details["a"] / 10, rel=1e-14)
    assert sol.details["a"] > collapse_threshold(2)  # misread: would predict collapse
    res, _ = _numeric_mse(sizes, dim, widths, lam_w, lam_h)
    assert abs(res.fun - sol.objective) <= 1e-8 * sol.objective and res.fun < 0.25


def test_erratum_E_DL4_feature_norm_ratio():
    """Lemma 4.3 L224 swaps the square-root terms of ‖h_i‖²/‖h_j‖²."""
    sizes, lam_w, lam_h = (20, 10, 5, 5), 0.004, 0.003
    total = 40.0
    res, inv = _numeric_mse(sizes, 6, (), lam_w, lam_h, starts=3)
    i, j = 0, 2

    def feature_ratio(inv):
        norms = np.sum(inv["hbar"] ** 2, axis=0)
        return norms[i] / norms[j]

    def weight_ratio(inv):
        wnorms = np.sum(inv["ws"][0] ** 2, axis=1)
        return wnorms[i] / wnorms[j]

    dims = _dims(sizes, 6, ())
    root = [math.sqrt(n * lam_h / lam_w) - total * lam_h for n in sizes]
    printed = sizes[j] / sizes[i] * root[j] / root[i]
    fixed = sizes[j] / sizes[i] * root[i] / root[j]
    ratio = feature_ratio(inv)
    assert abs(fixed - ratio) <= _tol(res, dims, feature_ratio)
    assert abs(printed - ratio) > 0.3 * ratio  # 0.121 vs 0.516
    # the w-ratio of L224 is right
    assert abs(weight_ratio(inv) - root[i] / root[j]) <= _tol(res, dims, weight_ratio)


def test_erratum_E_DL5_ce_nc3_constant():
    """Thm A.1 L537 prints h_k = λ_H^M/Πλ_W · Σs²/Σs^{2M} · (W_M⋯W_1)_k; the constant is
    sqrt(Πλ_W Σs²/(n λ_H^M Σs^{2M})). Checked at the certified L = 1 global minimum and at the L = 2
    ETF critical point."""

    def kappas(inv, n, depth, lam_w, lam_h):
        """`[κ fitted from h̄ = κ Pᵀ, the printed constant, the corrected one]` and the NC3 residual."""
        k = inv["hbar"].shape[1]
        fitted = inv["hbar"] @ np.linalg.pinv(inv["prod"].T)  # h̄ = κ Pᵀ ⇒ κ·(projector)
        kappa = np.trace(fitted) / (k - 1)
        s = np.linalg.svd(inv["hbar"] * math.sqrt(n), compute_uv=False)[: k - 1]
        printed = lam_h**depth / np.prod(lam_w) * np.sum(s**2) / np.sum(s ** (2 * depth))
        fixed = math.sqrt(np.prod(lam_w) * np.sum(s**2) / (n * lam_h**depth * np.sum(s ** (2 * depth))))
        return np.array([kappa, printed, fixed]), inv["hbar"] - kappa * inv["prod"].T

    def check(res, dims, bias, n, depth, lam_w, lam_h):
        """NC3 holds and the corrected constant is κ, each to the run's certified error; returns κ's."""
        (kappa, printed, fixed), nc3 = kappas(_numeric_invariants(res.x, dims, bias), n, depth, lam_w, lam_h)
        assert np.abs(nc3).max() <= _tol(res, dims, lambda inv: kappas(inv, n, depth, lam_w, lam_h)[1], bias)
        tol = _tol(res, dims, lambda inv: kappas(inv, n, depth, lam_w, lam_h)[0], bias)
        assert abs(fixed - kappa) <= 2 * tol  # both are first order in the run's error
        return kappa, printed, tol

    sizes, dim, widths, lam_w, lam_h, bias = _CE[0]
    sol = deep_linear_ce_balanced_solution(sizes, dim, widths, lam_w, lam_h, bias)
    dims = _dims(sizes, dim, widths)
    res = _minimise(_ce_fg(sizes, dims, (lam_w,), lam_h, bias), _size(dims, True), starts=2)
    kappa, printed, tol = check(res, dims, True, 5, 1, (lam_w,), lam_h)
    assert abs(sol.details["kappa"] - kappa) <= tol
    assert abs(printed - kappa) > 0.5 * kappa  # printed = λ_H/λ_W = 2 vs 0.316

    sizes, dim, widths, lam_w, lam_h = (10,) * 4, 6, (6,), (0.02, 0.01), 0.02
    sol = deep_linear_ce_balanced_solution(sizes, dim, widths, lam_w, lam_h, "none", allow_uncertified=True)
    dims = _dims(sizes, dim, widths)
    res = _ce_local_etf(sol, sizes, dims, np.asarray(lam_w), lam_h)
    kappa, printed, tol = check(res, dims, False, 10, 2, lam_w, lam_h)
    assert abs(sol.details["kappa"] - kappa) <= tol
    assert abs(printed - kappa) > 1.0 * kappa  # 0.485 vs 0.110
    assert abs(sol.details["kappa_printed"] - printed) <= tol


def test_erratum_E_DL6_rank_limited_threshold():
    """Remark 4.6 L272 keeps the tied rank-boundary block alive for a/n_R ≤ 1; for M ≥ 2 the bound is τ_M."""
    sizes, dim, widths = (20, 10, 10), 6, (2,)  # R = 2, n_2 = n_3 at the boundary
    lam = 0.05
    lam_h = (3.0 / 40) ** 2 / 40 / lam**2  # a = 3, a/n_2 = 0.3 in (τ_2, h_max) = (0.25, 0.3248)
    sol = deep_linear_mse_solution(sizes, dim, widths, lam, lam_h)
    beta = sol.details["beta"]
    assert beta[1] == pytest.approx(0.3) and collapse_threshold(2) < beta[1] <= 1.0
    assert list(sol.details["alive"]) == [True, False, False]
    # The printed rule keeps one class of the tied block, with the positive root.
    x2 = largest_root(beta[1], 2)
    f_printed = sol.objective + 10 / 80 * (1 / (x2**2 + 1) + 2 * beta[1] * x2 - 1)
    res, inv = _numeric_mse(sizes, dim, widths, lam, lam_h, starts=10)
    assert abs(res.fun - sol.objective) <= 1e-8 * sol.objective  # second order: loose (see above)
    assert f_printed - res.fun > 1e-3
    tol = _tol(res, _dims(sizes, dim, widths), lambda inv: inv["product"])
    assert inv["product"][1] <= tol < inv["product"][0]  # one class alive, the tied block dead


def test_erratum_E_DL7_balancing_transposes():
    """Lemma D.2 L1566/L1584 prints λ_{j+1}W_{j+1}ᵀW_{j+1} = λ_j W_jᵀW_j and λ_1W_1ᵀW_1 = λ_H H_1ᵀH_1;
    correct (warm-up L1365–1371): λ_{j+1}W_{j+1}ᵀW_{j+1} = λ_j W_jW_jᵀ and λ_1W_1ᵀW_1 = λ_H H_1H_1ᵀ."""
    # square hidden layers and N = d, so that the printed (transposed) identities are well-typed
    sizes, dim, widths, lam_w, lam_h = (2, 1, 1), 4, (4, 4), (0.03, 0.01, 0.02), 0.015
    res, inv = _numeric_mse(sizes, dim, widths, lam_w, lam_h)
    sol = deep_linear_mse_solution(sizes, dim, widths, lam_w, lam_h)
    assert abs(res.fun - sol.objective) <= 1e-8 * sol.objective  # second order: loose (see above)
    scale = lam_w[0] * np.sum(inv["ws"][0] ** 2)

    def errors(inv, printed=False):
        ws = inv["ws"]
        h1 = np.repeat(inv["hbar"], sizes, axis=1)  # H_1 = H̄ Y, d × N
        left = [lam_w[j + 1] * ws[j + 1].T @ ws[j + 1] for j in range(2)] + [lam_w[0] * ws[0].T @ ws[0]]
        if printed:
            right = [lam_w[j] * ws[j].T @ ws[j] for j in range(2)] + [lam_h * h1.T @ h1]
        else:
            right = [lam_w[j] * ws[j] @ ws[j].T for j in range(2)] + [lam_h * h1 @ h1.T]
        return np.array([np.linalg.norm(a - b) for a, b in zip(left, right)]) / scale

    # The corrected identities hold at the minimum: the numerical point satisfies them to its certified error.
    assert errors(inv).max() <= _tol(res, _dims(sizes, dim, widths), errors)
    assert errors(inv, printed=True).min() > 1e-2


def test_erratum_E_DL16_deep_ce_etf_not_global():
    """Thm A.1 (L533–549) claims every global minimiser of (7) is a simplex ETF. For M >= 2 a low-rank point
    with a non-constant bias (K = 3, M = 3) or without bias (K = 4, M = 2) has a lower objective."""
    for sizes, dim, widths, lam_w, lam_h, bias, rank in (
        ((5,) * 3, 2, (3, 2), (0.03, 0.01, 0.02), 0.015, "free", 1),
        ((10,) * 4, 6, (6,), (0.02, 0.01), 0.02, "none", 2),
    ):
        etf = deep_linear_ce_balanced_solution(sizes, dim, widths, lam_w, lam_h, bias, allow_uncertified=True)
        dims = _dims(sizes, dim, widths)
        has_b = bias != "none"
        fg = _ce_fg(sizes, dims, np.asarray(lam_w), lam_h, bias)
        res = _minimise(fg, _size(dims, has_b), starts=6, scales=(0.3, 3.0), seed=4)
        assert etf.objective - res.fun > 5e-3, (etf.objective, res.fun)
        inv = _numeric_invariants(res.x, dims, has_b)
        z = inv["prod"] @ inv["hbar"]

        def logit_sv(inv):
            return np.linalg.svd(inv["prod"] @ inv["hbar"], compute_uv=False)

        # rank: singular values above the run's certified error (the others are 0 at its minimum)
        assert np.sum(logit_sv(inv) > _tol(res, dims, logit_sv, has_b)) == rank
        # recompute the objective from scratch with explicit samples (n_k copies of each class mean)
        logits = np.repeat(z + (inv["bias"][:, None] if has_b else 0.0), sizes, axis=1)
        labels = np.repeat(np.arange(len(sizes)), sizes)
        lse = np.log(np.sum(np.exp(logits), axis=0))
        data = np.mean(lse - logits[labels, np.arange(labels.size)])
        pen = sum(l / 2 * np.sum(w**2) for l, w in zip(lam_w, inv["ws"]))
        pen += lam_h / 2 * np.sum(np.repeat(inv["hbar"], sizes, axis=1) ** 2)
        assert data + pen == pytest.approx(res.fun, rel=1e-12)
