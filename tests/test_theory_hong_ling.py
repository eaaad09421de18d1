"""Hong & Ling (2023) CE UFM: analytic minimum vs reference values, an independent optimiser, and errata.

Reference numbers are from `shared/theory/seed001_hong_ling_ce.md` (§4.1, §5); erratum ids E-HLk
follow its §6 and `docs/errata.md`.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np
import pytest
from scipy.optimize import brentq, minimize
from scipy.special import logsumexp

from _certificate import Certificate, certify
from ufm_jax.theory._hong_ling import ce_balanced_solution, ce_two_cluster_solution, ce_two_cluster_thresholds
from ufm_jax.theory._reduced_ce import ce_factors, within_cluster_margin
from ufm_jax.theory._two_cluster import REGIMES, complete_collapse_ratio, minority_collapse_ratio
from ufm_jax.theory._solution import TheorySolution

# ---- an independent solver of the original (W, H, b) problem, weighted form --------------------------


def _objective_and_grad(W, Hb, b, n, lam_w, lam_h, lam_b):
    """Weighted-form objective (one column per class, weight n_k) and its gradient, plain numpy."""
    N, K = n.sum(), n.size
    Z = W @ Hb + (0.0 if b is None else b[:, None])
    lse = logsumexp(Z, axis=0)
    f = np.sum(n / N * (lse - np.diag(Z))) + 0.5 * lam_w * np.sum(W**2)
    f += 0.5 * lam_h * np.sum(n * np.sum(Hb**2, axis=0))
    G = (np.exp(Z - lse[None, :]) - np.eye(K)) * (n / N)[None, :]
    gW = G @ Hb.T + lam_w * W
    gH = W.T @ G + lam_h * Hb * n[None, :]
    gb = None
    if b is not None:
        f += 0.5 * lam_b * b @ b
        gb = G.sum(axis=1) + lam_b * b
    return f, gW, gH, gb


@dataclasses.dataclass(frozen=True)
class _Numeric:
    """An L-BFGS-B minimiser of the original problem: value `f`, `W`, `H̄`, `b`, and its `Certificate`.

    Iterates as `(f, W, H̄, b)`. `tol(q)` is the certified tolerance of an invariant `q(W, H̄, b)` (the
    first-order error that the run's Newton step shows, ×10, plus round-off; tests/_certificate.py).
    """

    f: float
    W: np.ndarray
    Hb: np.ndarray
    b: np.ndarray
    cert: Certificate
    unpack: object

    def __iter__(self):
        return iter((self.f, self.W, self.Hb, self.b))

    def tol(self, quantity) -> float:
        return self.cert.tolerance(lambda x: quantity(*self.unpack(x)))


@functools.lru_cache(maxsize=None)
def _numeric(sizes: tuple, dim: int, lam_w: float, lam_h: float, lam_b, seed: int = 0) -> _Numeric:
    """L-BFGS-B on the original non-convex problem (features rescaled g_k = √n_k h̄_k for conditioning)."""
    n = np.asarray(sizes, dtype=np.float64)
    K = n.size
    sq = np.sqrt(n)
    nb = K if lam_b is not None else 0

    def unpack(x):
        W = x[: K * dim].reshape(K, dim)
        Hb = x[K * dim : 2 * K * dim].reshape(dim, K) / sq[None, :]
        return W, Hb, (x[2 * K * dim :] if nb else np.zeros(K))

    def fun(x):
        W, Hb, b = unpack(x)
        f, gW, gH, gb = _objective_and_grad(W, Hb, b if nb else None, n, lam_w, lam_h, lam_b)
        parts = [gW.ravel(), (gH / sq[None, :]).ravel()] + ([gb] if nb else [])
        return f, np.concatenate(parts)

    x0 = 0.5 * np.random.default_rng(seed).normal(size=2 * K * dim + nb)
    res = minimize(
        fun, x0, jac=True, method="L-BFGS-B",
        options=dict(maxiter=50000, maxfun=100000, gtol=1e-13, ftol=1e-16, maxcor=50),
    )
    W, Hb, b = unpack(res.x)
    return _Numeric(float(res.fun), W, Hb, b, certify(lambda x: fun(x)[1], res.x), unpack)


def _solve(sizes, L, lam_b, *, ratio=2.0, dim=None):
    """Analytic and numerical solutions at `N λ_Z = L`, with `λ_W = ratio λ_Z`, `λ_H = λ_Z/ratio`."""
    n = np.asarray(sizes, dtype=np.float64)
    lam_z = L / n.sum()
    lam_w, lam_h = ratio * lam_z, lam_z / ratio
    dim = n.size + 1 if dim is None else dim
    sol = ce_two_cluster_solution(n, dim, lam_w, lam_h, lam_b)
    num = _numeric(tuple(n.tolist()), dim, lam_w, lam_h, lam_b)
    return sol, num, (n, dim, lam_w, lam_h, lam_z)


def _softmax(Z):
    e = np.exp(Z - Z.max(axis=0, keepdims=True))
    return e / e.sum(axis=0, keepdims=True)


# Instances crossing every regime; class orders are mixed on purpose. For (2,50,2,10): Nλ thresholds
# √10 = 3.162 (minority collapse), √50 = 7.071 (complete); (b)/(c) at 5.139 bias-free, 3.994 at λ_b = 0.05.
# For (3,50,2,10), λ_b = 0.05: (b)/(c) at 3.709.
INSTANCES = [
    ((10, 50, 10, 50), 1.5, None, "full-rank"),
    ((10, 50, 10, 50), 3.5, None, "minority-collapse"),
    ((10, 50, 10, 50), 5.5, None, "minority-zero"),
    ((10, 50, 10, 50), 8.0, None, "complete-collapse"),
    ((10, 50, 10, 50), 1.5, 0.05, "full-rank"),
    ((10, 50, 10, 50), 3.3, 0.05, "minority-collapse"),
    ((10, 50, 10, 50), 5.5, 0.05, "minority-zero"),
    ((10, 50, 10, 50), 8.0, 0.05, "complete-collapse"),
    ((50, 10, 50, 10, 50), 2.5, 0.05, "full-rank"),
    ((50, 10, 50, 10, 50), 3.4, 0.05, "minority-collapse"),
    ((50, 10, 50, 10, 50), 5.5, 0.05, "minority-zero"),
    ((50, 10, 50, 10, 50), 9.0, 0.05, "complete-collapse"),
]


# ---- reference values (note §4.1 and §5) ---------------------------------------------------------------

# (λ_b, λ_Z, regime, a, b, c, d, m, objective, σ_A, σ_B, σ_s) for (k_A,n_A,k_B,n_B) = (5,500,5,100).
TABLE_5_5 = [
    (0.01, 0.001, "full-rank", 0.618642, 0.570177, 0.189077, 0.096305, 0.074754, 0.71031628, 90.3057, 33.3241, 50.1922),
    (0.01, 0.002, "full-rank", 0.496009, 0.465881, 0.127968, -0.018028, 0.089993, 1.18133992, 69.7627, 22.3926, 38.6603),
    (0.01, 0.003, "full-rank", 0.418458, 0.335617, 0.084643, -0.156690, 0.096456, 1.53080660, 56.2484, 8.9464, 27.2453),
    (0.01, 0.0035, "minority-collapse", 0.403519, 0.196047, 0.048361, -0.196047, 0.101165, 1.65527360, 50.5217, 0, 15.8317),
    (0.01, 0.004, "minority-collapse", 0.403317, 0.000831, 0.000202, -0.000831, 0.107571, 1.75496395, 45.1149, 0, 0.0669),
    (0.01, 0.005, "minority-zero", 0.297677, 0, 0, 0, 0.121913, 1.91153630, 33.2812, 0, 0),
    (0.01, 0.0063, "minority-zero", 0.157388, 0, 0, 0, 0.133804, 2.04458400, 17.5965, 0, 0),
    (0.01, 0.008, "complete-collapse", 0, 0, 0, 0, 0.137915, 2.08764844, 0, 0, 0),
    (None, 0.001, "full-rank", 0.577012, 0.472685, 0.289842, 0.136221, 0, 0.72653766, 96.9173, 30.4453, 56.7219),
    (None, 0.002, "full-rank", 0.485315, 0.350268, 0.211333, 0.031868, 0, 1.21952792, 77.8876, 19.1068, 41.5931),
    (None, 0.003, "full-rank", 0.435963, 0.237066, 0.145888, -0.103419, 0, 1.59278954, 65.0529, 6.6824, 28.5146),
    (None, 0.0035, "minority-collapse", 0.432798, 0.157693, 0.102157, -0.157693, 0, 1.73446457, 59.8098, 0, 19.6275),
    (None, 0.004, "minority-collapse", 0.435687, 0.079545, 0.055088, -0.079545, 0, 1.85660343, 54.8703, 0, 10.3685),
    (None, 0.005, "minority-zero", 0.391540, 0, 0, 0, 0, 2.05840036, 43.7755, 0, 0),
    (None, 0.0063, "minority-zero", 0.223722, 0, 0, 0, 0, 2.23927387, 25.0128, 0, 0),
    (None, 0.008, "complete-collapse", 0, 0, 0, 0, 0, 2.30258509, 0, 0, 0),
]

# (λ_b, λ_Z, regime, a, b, c, d, m, objective) for (3,500,7,100).
TABLE_3_7 = [
    (0.01, 0.001, "full-rank", 0.822022, 0.780814, 0.267313, 0.190683, 0.084457, 0.62044239),
    (0.01, 0.003, "full-rank", 0.582329, 0.607629, 0.153456, 0.020832, 0.108968, 1.36923648),
    (0.01, 0.005, "minority-collapse", 0.497652, 0.317459, 0.074035, -0.136054, 0.118571, 1.76127979),
    (0.01, 0.0063, "minority-collapse", 0.506606, 0.029352, 0.006704, -0.012579, 0.128857, 1.88104397),
    (0.01, 0.007, "minority-zero", 0.428658, 0, 0, 0, 0.134761, 1.92592925),
    (0.01, 0.009, "minority-zero", 0.164406, 0, 0, 0, 0.145283, 2.00544114),
    (0.01, 0.011, "complete-collapse", 0, 0, 0, 0, 0.147046, 2.01853140),
    (None, 0.005, "minority-collapse", 0.520006, 0.230622, 0.158888, -0.098838, 0, 1.87654189),
    (None, 0.007, "minority-collapse", 0.532590, 0.070067, 0.058431, -0.030029, 0, 2.13001426),
    (None, 0.009, "minority-zero", 0.323469, 0, 0, 0, 0, 2.27598570),
]


def _close(value, ref, digits):
    """`value` rounds to the printed reference `ref` (`digits` decimals); allow one unit in the last place."""
    return abs(value - ref) <= 10.0 ** (-digits) * 0.5 + 1e-12


@pytest.mark.parametrize("row", TABLE_5_5)
def test_reference_table_5_5(row):
    lam_b, lam_z, regime, a, b, c, d, m, obj, s_a, s_b, s_s = row
    sizes = [500] * 5 + [100] * 5
    sol = ce_two_cluster_solution(sizes, 10, lam_z, lam_z, lam_b)
    assert isinstance(sol, TheorySolution)
    assert sol.regime == regime
    got = sol.details
    for key, ref in zip("abcdm", (a, b, c, d, m)):
        assert _close(got[key], ref, 6), (key, got[key], ref)
    assert _close(sol.objective, obj, 8)
    assert _close(got["sigma_A"], s_a, 4) and _close(got["sigma_B"], s_b, 4) and _close(got["sigma_s"], s_s, 4)
    # Same objective for any split λ_W λ_H = λ_Z² (only λ_Z matters).
    assert ce_two_cluster_solution(sizes, 12, 3 * lam_z, lam_z / 3, lam_b).objective == pytest.approx(obj, abs=5e-9)
    # The convex KKT certificate holds at the analytic point.
    assert got["kkt_residual"] < 1e-11 and got["bias_residual"] < 1e-12 and got["certificate_tau"] <= 1 + 1e-12


@pytest.mark.parametrize("row", TABLE_3_7)
def test_reference_table_3_7(row):
    lam_b, lam_z, regime, a, b, c, d, m, obj = row
    sol = ce_two_cluster_solution([100] * 7 + [500] * 3, 10, lam_z, lam_z, lam_b)  # minority listed first
    assert sol.regime == regime
    for key, ref in zip("abcdm", (a, b, c, d, m)):
        assert _close(sol.details[key], ref, 6), (key, sol.details[key], ref)
    assert _close(sol.objective, obj, 8)


def test_reference_certificates_and_sigma_b():
    # Case-(c) certificate τ (note §4.1) and σ_B near the minority-collapse threshold (note §5 item 5).
    s = [500] * 5 + [100] * 5
    assert _close(ce_two_cluster_solution(s, 10, 0.005, 0.005, 0.01).details["certificate_tau"], 0.83169, 5)
    assert _close(ce_two_cluster_solution(s, 10, 0.0063, 0.0063, 0.01).details["certificate_tau"], 0.67951, 5)
    assert _close(ce_two_cluster_solution(s, 10, 0.005, 0.005).details["certificate_tau"], 0.96655, 5)
    for lam_b, refs in ((0.01, (1.24213, 0.130271)), (None, (0.819864, 0.084169))):
        for frac, ref in zip((0.99, 0.999), refs):
            lz = frac / 300
            sol = ce_two_cluster_solution(s, 10, lz, lz, lam_b)
            assert sol.regime == "full-rank"
            assert sol.details["sigma_B"] == pytest.approx(ref, rel=1e-5)
        sol = ce_two_cluster_solution(s, 10, 1.001 / 300, 1.001 / 300, lam_b)
        assert sol.regime == "minority-collapse" and sol.details["sigma_B"] == 0.0


def test_reference_paper_settings_fig7_and_thm34():
    # Fig. 7/8 type (λ_Z = 0.005, λ_b = 0.01, n_B = 100), note §4.1.
    rows = [
        ((5, 5), 200, "full-rank", dict(a=0.296496, b=0.254667, c=0.137417, d=0.059319, m=0.044516)),
        ((5, 5), 350, "minority-collapse", dict(a=0.347345, b=0.058806, c=0.019212, d=-0.058806, m=0.086565)),
        ((5, 5), 400, "minority-zero", dict(a=0.343110, m=0.099721)),
        ((5, 5), 1392, "minority-zero", dict(a=0.000289)),
        ((5, 5), 1393, "complete-collapse", {}),
        ((3, 7), 600, "minority-collapse", dict(a=0.537370, b=0.212470, c=0.041943, d=-0.091059, m=0.135438)),
        ((3, 7), 1000, "minority-zero", dict(a=0.493949, m=0.185502)),
    ]
    for (ka, kb), na, regime, ref in rows:
        sol = ce_two_cluster_solution([na] * ka + [100] * kb, 10, 0.005, 0.005, 0.01)
        assert sol.regime == regime
        for key, value in ref.items():
            assert _close(sol.details[key], value, 6), (na, key, sol.details[key], value)
    # (b)->(c) in n_A at λ_Z = 0.005: 371.39 (λ_b=0.01), 369.77 (0.02), 439.84 (bias-free) for (5,5).
    for lam_b, na_switch in ((0.01, 371.39), (0.02, 369.77), (None, 439.84), (None, 1757.15)):
        ka, kb = (5, 5) if na_switch < 1000 else (3, 7)
        below = ce_two_cluster_solution([na_switch - 0.1] * ka + [100] * kb, 10, 0.005, 0.005, lam_b)
        above = ce_two_cluster_solution([na_switch + 0.1] * ka + [100] * kb, 10, 0.005, 0.005, lam_b)
        assert (below.regime, above.regime) == ("minority-collapse", "minority-zero")
    # Thm 3.4 setting: k_A = k_B = 5, r = 2, Nλ_Z = 0.1, λ_b = 0.01 (note §4.1).
    for na, ref in ((500, (0.87013, 0.82573, 0.68783, 0.63004, 2.570e-3)), (5500, (0.99272, 0.94819, 0.80778, 0.74596, 8.08e-4))):
        nb = na / 2
        lz = 0.1 / (5 * na + 5 * nb)
        sol = ce_two_cluster_solution([na] * 5 + [nb] * 5, 10, lz, lz, 0.01)
        for key, value in zip("abcd", ref[:4]):
            assert _close(sol.details[key], value, 5)
        assert sol.details["m"] == pytest.approx(ref[4], rel=2e-3)
    # Thm 3.4 asymptotics: b/c − 1 = 0.2005, 0.1738, 0.1063 at n_A = 500, 5500, 1e12.
    for na, ref in ((500, 0.2005), (5500, 0.1738), (1e12, 0.1063)):
        nb = na / 2
        lz = 0.1 / (5 * na + 5 * nb)
        d = ce_two_cluster_solution([na] * 5 + [nb] * 5, 10, lz, lz, 0.01).details
        assert _close(d["b"] / d["c"] - 1, ref, 4)


def test_reference_thresholds():
    th = ce_two_cluster_thresholds(5, 500, 5, 100)
    assert _close(th["minority_collapse"], 1 / 300, 10)
    assert _close(th["complete_collapse"], 0.0074536, 7)
    assert _close(th["minority_zero"], 0.0046053, 7)
    # 1-D eq. = ξ root: two brentq roots (rtol 4·eps) of functions whose round-off (≲ 1e-14) over their O(1)
    # slopes moves each root by ≲ 1e-14 relative; 1e-12 leaves a margin of ~100.
    assert th["minority_zero_xi"] == pytest.approx(th["minority_zero"], rel=1e-12)
    assert _close(ce_two_cluster_thresholds(5, 500, 5, 100, 0.01)["minority_zero"], 0.0040019, 7)
    assert _close(ce_two_cluster_thresholds(5, 500, 5, 100, 0.02)["minority_zero"], 0.0039833, 7)
    th37 = ce_two_cluster_thresholds(3, 500, 7, 100)
    assert _close(th37["minority_collapse"], 0.0045455, 7) and _close(th37["complete_collapse"], 0.0101639, 7)
    assert _close(th37["minority_zero"], 0.0081201, 7)
    assert _close(ce_two_cluster_thresholds(3, 500, 7, 100, 0.01)["minority_zero"], 0.0064270, 7)
    assert _close(ce_two_cluster_thresholds(3, 500, 7, 100, 0.02)["minority_zero"], 0.0064069, 7)
    for args, ref in (((2, 1000, 2, 10), 0.0093269), ((5, 200, 5, 100), 0.0077593), ((4, 300, 6, 50), 0.0077612)):
        assert _close(ce_two_cluster_thresholds(*args)["minority_zero"], ref, 7)
    # The solver's case choice switches exactly there.
    lstar = ce_two_cluster_thresholds(5, 500, 5, 100, 0.01)["minority_zero"]
    s = [500] * 5 + [100] * 5
    assert ce_two_cluster_solution(s, 10, lstar * 0.999, lstar * 0.999, 0.01).regime == "minority-collapse"
    assert ce_two_cluster_solution(s, 10, lstar * 1.001, lstar * 1.001, 0.01).regime == "minority-zero"
    # Corollary 3.3 at λ_Z = 0.005, n_B = 100.
    assert _close(100 * minority_collapse_ratio(0.005, 5, 5, 100), 300.0, 6)
    assert _close(100 * minority_collapse_ratio(0.005, 3, 7, 100), 433.33, 2)
    assert _close(100 * complete_collapse_ratio(0.005, 5, 5, 100), 1392.82, 2)
    assert _close(100 * complete_collapse_ratio(0.005, 3, 7, 100), 3964.04, 2)


@pytest.mark.parametrize("L, a_ref", [(0.5, 0.5252273), (3.0, 0.3191847), (9.0, 0.0747214), (10.0, 0.0), (12.0, 0.0)])
def test_reference_balanced(L, a_ref):
    lam_z = L / 1000
    for lam_b in (None, 0.01):
        sol = ce_balanced_solution([100] * 10, 10, lam_z, lam_z, lam_b)
        assert _close(sol.details["a"], a_ref, 7)
        assert np.allclose(sol.mean_logits, a_ref * (10 * np.eye(10) - 1), atol=1e-7)
        assert np.all(sol.bias == 0)
        assert sol.regime == ("full-rank" if L < 10 else "complete-collapse")
        assert sol.details["kkt_residual"] < 1e-12 and sol.details["certificate_tau"] <= 1 + 1e-12
    # n_A == n_B delegates to the balanced case.
    assert ce_two_cluster_solution([100] * 10, 10, lam_z, lam_z).objective == sol.objective


# ---- independent numerical check --------------------------------------------------------------------


@pytest.mark.parametrize("sizes, L, lam_b, regime", INSTANCES)
def test_matches_numerical_optimum(sizes, L, lam_b, regime):
    sol, num, (n, dim, lam_w, lam_h, lam_z) = _solve(sizes, L, lam_b)
    f_num, W, Hb, b = num
    assert sol.regime == regime
    # The objective is second order in the run's error (f − f* ≈ ½ gᵀH⁺g ≤ ‖g‖·d ≈ 1e-17): 1e-8 relative
    # is loose for the certificate and still catches every erratum (they miss by > 1e-3).
    assert abs(f_num - sol.objective) <= 1e-8 * abs(sol.objective)
    # First-order invariants: each within the error its own Newton step shows (×10, + round-off).
    for invariant, theory in (
        (lambda W, Hb, b: W @ Hb, sol.mean_logits),
        (lambda W, Hb, b: b, sol.bias),
        (lambda W, Hb, b: Hb.T @ Hb, sol.mean_gram),
        (lambda W, Hb, b: np.linalg.svd(W, compute_uv=False), sol.weight_singular_values[0]),
        (lambda W, Hb, b: np.linalg.svd(Hb, compute_uv=False), sol.mean_singular_values),
    ):
        assert np.abs(invariant(W, Hb, b) - theory).max() <= num.tol(invariant)
    assert len(sol.weight_singular_values) == 1 and sol.weight_singular_values[0].shape == (min(n.size, dim),)
    assert np.array_equal(sol.product_singular_values, sol.weight_singular_values[0])
    # Universal within-cluster identity (§2.5) at the numerical optimum and in the analytic details.
    others = [next(j for j in range(n.size) if j != k and n[j] == n[k]) for k in range(n.size)]

    def gaps(W, Hb, b):
        P = _softmax(W @ Hb + b[:, None])
        return np.diag(P) - P[others, np.arange(n.size)]

    assert np.abs(gaps(W, Hb, b) - within_cluster_margin(n, lam_z)).max() <= num.tol(gaps)
    # Closed form against closed form: round-off.
    assert np.allclose(sol.details["p_own_minus_p_other"], within_cluster_margin(n, lam_z), atol=1e-12)
    # Sign facts: Σ b_k = 0, W 1 = 0 direction: columns of Z̄ sum to zero.
    assert abs(sol.bias.sum()) < 1e-12 and np.abs(sol.mean_logits.sum(axis=0)).max() < 1e-12


@pytest.mark.parametrize("sizes, L, lam_b, regime", INSTANCES)
def test_theory_point_is_stationary(sizes, L, lam_b, regime):
    n = np.asarray(sizes, dtype=np.float64)
    lam_z = L / n.sum()
    lam_w, lam_h = 3 * lam_z, lam_z / 3
    dim = n.size + 2
    sol = ce_two_cluster_solution(n, dim, lam_w, lam_h, lam_b)
    W, Hb = ce_factors(sol.mean_logits, n, dim, lam_w, lam_h)
    assert np.allclose(W @ Hb, sol.mean_logits, atol=1e-12)
    assert np.allclose(Hb.T @ Hb, sol.mean_gram, atol=1e-12)
    f, gW, gH, gb = _objective_and_grad(W, Hb, None if lam_b is None else sol.bias, n, lam_w, lam_h, lam_b)
    assert f == pytest.approx(sol.objective, rel=1e-13)
    grads = [gW, gH / np.sqrt(n)[None, :]] + ([] if gb is None else [gb])
    assert max(np.abs(g).max() for g in grads) < 1e-10
    # Norm balance λ_W‖W‖² = λ_H‖H‖² = λ_Z ‖Z̄D^{1/2}‖_*.
    nuc = lam_z * sol.details["nuclear_norm"]
    assert lam_w * np.sum(W**2) == pytest.approx(nuc, rel=1e-10, abs=1e-14)
    assert lam_h * np.sum(n * np.sum(Hb**2, axis=0)) == pytest.approx(nuc, rel=1e-10, abs=1e-14)


def test_dim_k_minus_one_suffices_and_validation():
    sizes = (10, 50, 10, 50)
    sol, (f_num, *_), _ = _solve(sizes, 1.5, 0.05, dim=3)  # rank K-1 = 3 = d
    assert abs(f_num - sol.objective) <= 1e-8 * sol.objective  # second order in the run's error: loose
    assert ce_balanced_solution([7] * 4, 3, 0.01, 0.01).weight_singular_values[0].shape == (3,)
    with pytest.raises(ValueError, match="K - 1"):
        ce_two_cluster_solution(sizes, 2, 0.01, 0.01)
    with pytest.raises(ValueError, match="single class"):
        ce_two_cluster_solution([50, 10, 10], 3, 0.01, 0.01)
    with pytest.raises(ValueError, match="two distinct"):
        ce_two_cluster_solution([50, 10, 20, 10], 4, 0.01, 0.01)
    with pytest.raises(ValueError, match="all n_k equal"):
        ce_balanced_solution([50, 10], 2, 0.01, 0.01)
    with pytest.raises(ValueError):
        ce_two_cluster_solution(sizes, 4, 0.01, 0.01, lam_b=-1.0)


def test_class_order_is_respected():
    sorted_sol = ce_two_cluster_solution([50, 50, 50, 10, 10], 5, 0.03, 0.03, 0.05)
    perm = np.array([1, 3, 0, 4, 2])
    sizes = np.array([50, 50, 50, 10, 10])[perm]
    sol = ce_two_cluster_solution(sizes, 5, 0.03, 0.03, 0.05)
    assert np.allclose(sol.mean_logits, sorted_sol.mean_logits[np.ix_(perm, perm)], atol=1e-14)
    assert np.allclose(sol.mean_gram, sorted_sol.mean_gram[np.ix_(perm, perm)], atol=1e-14)
    assert np.allclose(sol.bias, sorted_sol.bias[perm], atol=1e-14)
    assert sol.objective == pytest.approx(sorted_sol.objective, rel=1e-14)
    assert set(REGIMES) == {"full-rank", "minority-collapse", "minority-zero", "complete-collapse"}


# ---- errata: printed formula fails, corrected formula matches the numerical optimum ------------------


def test_erratum_E_HL1_balanced_formula():
    K, n = 4, 25
    for L in (3.0, 1.1):  # N λ_Z; √n = 5, printed threshold K/(K−1) = 4/3
        lam_z = L / (K * n)
        num = _numeric((float(n),) * K, K, 2 * lam_z, lam_z / 2, None)
        f_num, W, Hb, _ = num

        def a_of(W, Hb, b):
            return -np.mean((W @ Hb)[~np.eye(K, dtype=bool)])  # Z̄ = a(KI − J): off-diagonal −a

        a_num = a_of(W, Hb, None)
        corrected = math.log(K * math.sqrt(n) / L - K + 1) / K
        printed = 0.0 if L >= K / (K - 1) else math.log(K / L - K + 1) / K
        sol = ce_balanced_solution([n] * K, K, 2 * lam_z, lam_z / 2)
        assert sol.details["a"] == pytest.approx(corrected, rel=1e-14)
        assert abs(a_num - corrected) <= num.tol(a_of)
        assert abs(a_num - printed) > 0.1
        assert abs(f_num - sol.objective) <= 1e-10  # second order (‖g‖·d ≈ 1e-17) + round-off
        printed_obj = math.log1p((K - 1) * math.exp(-printed * K)) + lam_z * math.sqrt(n) * K * (K - 1) * abs(printed)
        assert printed_obj - f_num > 1e-2


def test_erratum_E_HL2_d_negative_in_case_a():
    # Printed Thm 3.2(a): "a, b, c, d > 0". Small instance just below L = √n_B (= 3.162): d < 0.
    sol, num, _ = _solve((10, 50, 10, 50), 3.0, None)
    f_num, W, Hb, _ = num
    assert sol.regime == "full-rank" and sol.details["sigma_B"] > 0.05
    Z = W @ Hb

    def d_of(W, Hb, b):
        return -(W @ Hb)[2, 0]  # B column 0, other B row 2: entry −d

    d_num = d_of(W, Hb, None)
    assert d_num < -0.01 and abs(d_num - sol.details["d"]) <= num.tol(d_of)
    assert np.linalg.svd(Z[np.ix_([0, 2], [0, 2])] - Z[np.ix_([0, 2], [0, 2])].mean(axis=1, keepdims=True),
                         compute_uv=False)[0] > 0.05  # minority columns distinct: genuinely case (a)
    d, a, b, c = (sol.details[k] for k in "dabc")
    assert a > 0 and b > 0 and c > 0 and a - c + d - b <= 0  # the parts of the claim that do hold
    # Reference: (5,500,5,100) d < 0 iff λ_Z > 0.0018330 (λ_b = 0.01) / 0.0022902 (bias-free).
    s = [500] * 5 + [100] * 5
    for lam_b, ref in ((0.01, 0.0018330), (None, 0.0022902)):
        root = brentq(lambda lz: ce_two_cluster_solution(s, 10, lz, lz, lam_b).details["d"], 0.001, 0.0033, xtol=1e-12)
        assert _close(root, ref, 7)


def test_erratum_E_HL3_thresholds_are_sqrt_n_over_N():
    sizes = (10, 50, 10, 50)
    sol, num, (n, *_rest, lam_z) = _solve(sizes, 8.0, 0.05)
    f_num, W, Hb, b = num
    printed = math.sqrt(50 / n.sum())  # "√(n_A/N)" at L407/L1058/...
    assert lam_z < printed  # the printed threshold predicts no complete collapse here ...
    # ... but the numerical optimum has Z̄ = 0 (λ_Z > √n_A/N), to within its certified error
    assert np.abs(W @ Hb).max() <= num.tol(lambda W, Hb, b: W @ Hb)
    assert sol.regime == "complete-collapse"
    assert 0.0074536 == pytest.approx(math.sqrt(500) / 3000, abs=5e-8)  # the Sec. 4.3 "0.075" typo


def test_erratum_E_HL4_case_b_certificate_constant():
    sol, num, (n, dim, lam_w, lam_h, lam_z) = _solve((10, 50, 10, 50), 3.5, None)
    assert sol.regime == "minority-collapse"
    N = n.sum()
    L = N * lam_z
    Zbar = sol.mean_logits
    Dm = np.diag(n)
    evals, evecs = np.linalg.eigh(Zbar @ Dm @ Zbar.T)
    inv_half = (evecs * np.where(evals > 1e-9 * evals.max(), evals, np.inf) ** -0.5) @ evecs.T

    def r_needed(W, Hb, b):  # the certificate's R̄, from the numerical optimum's probabilities
        return (np.eye(n.size) - _softmax(W @ Hb + b[:, None])) / (N * lam_z) - inv_half @ Zbar

    R_needed = r_needed(num.W, num.Hb, num.b)
    minority = n == 10
    C = np.zeros((n.size, n.size))
    C[np.ix_(minority, minority)] = np.eye(2) - 0.5
    corrected, printed = C / L, C / math.sqrt(10.0)
    assert np.abs(R_needed - corrected).max() <= num.tol(r_needed)
    assert np.abs(R_needed - printed).max() > 1e-2
    assert np.linalg.norm(corrected * np.sqrt(n)[None, :], 2) == pytest.approx(math.sqrt(10) / L)  # ≤ 1


def test_erratum_E_HL5_eq_5_40_exponent():
    sol, num, (n, dim, lam_w, lam_h, lam_z) = _solve((50, 10, 50, 10, 50), 3.4, 0.05)
    assert sol.regime == "minority-collapse"
    ka, kb = 3, 2

    def lhs(W, Hb, b, printed=False):  # eq. (5.40) at the numerical optimum (class 0 ∈ A, 1 ∈ B)
        Z = W @ Hb
        a, c, m = -Z[2, 0], -Z[1, 0], b[0] / kb
        exponent = m * ka - a if printed else -a + m * kb
        top = ka * math.exp(-a + m * kb) + kb * math.exp(-c - m * ka)
        return top / (kb * math.exp(-c - m * ka) + math.exp(exponent) * (ka - 1 + math.exp(ka * a + kb * c)))

    rhs = n.sum() * lam_z / math.sqrt(50)
    assert abs(lhs(num.W, num.Hb, num.b) - rhs) <= num.tol(lhs)  # corrected e^{−a+mk_B}
    assert abs(lhs(num.W, num.Hb, num.b, printed=True) - rhs) > 1e-3  # printed e^{mk_A−a}


def test_erratum_E_HL6_case_d_bias():
    sol, num, (n, *_rest) = _solve((50, 10, 50, 10, 50), 9.0, 0.05)
    b = num.b
    assert sol.regime == "complete-collapse"
    ka, kb, K = 3, 2, 5
    w = sol.details["w"]
    m_num = b[0] / kb
    m_corrected = math.log(w) / K  # v = e^{+mk_B}, w = v/u = e^{mK}
    m_printed = math.log(w) / (ka - kb)  # v = e^{−mk_B}: w = v/u = e^{m(k_A − k_B)}
    assert abs(m_num - m_corrected) <= num.tol(lambda W, Hb, b: b[0] / kb)
    assert abs(m_num - m_printed) > 0.1
    assert np.abs(b - np.where(n == 50, m_corrected * kb, -m_corrected * ka)).max() <= num.tol(lambda W, Hb, b: b)


def test_erratum_E_HL9_corollary_3_3_proof():
    lam_z, ka, kb, nb = 0.005, 5, 5, 100
    r_printed_proof = (1 / math.sqrt(nb * lam_z) - kb) / ka  # L1789: 1/√(n_B λ_Z)
    r = minority_collapse_ratio(lam_z, ka, kb, nb)  # statement: 1/(λ_Z √n_B)
    assert r_printed_proof < 0 < r
    below = ce_two_cluster_solution([0.99 * r * nb] * ka + [nb] * kb, 10, lam_z, lam_z, 0.01)
    above = ce_two_cluster_solution([1.01 * r * nb] * ka + [nb] * kb, 10, lam_z, lam_z, 0.01)
    assert below.regime == "full-rank" and above.regime == "minority-collapse"


def test_erratum_E_HL11_factor_constants():
    sizes = (10, 50, 10, 50)
    sol, num, (n, dim, lam_w, lam_h, lam_z) = _solve(sizes, 1.5, 0.05, ratio=4.0)
    f_num, W_num, Hb_num, b_num = num
    U, s, Vt = np.linalg.svd(sol.mean_logits * np.sqrt(n)[None, :])
    W_pr = np.zeros((n.size, dim))
    Hb_pr = np.zeros((dim, n.size))
    W_pr[:, : n.size] = U * np.sqrt(s)[None, :]  # printed W = Σ̄^{1/2}Ūᵀ (paper's d×K; ours is its transpose)
    Hb_pr[: n.size] = (np.sqrt(s)[:, None] * Vt) / np.sqrt(n)[None, :]
    W_co, Hb_co = ce_factors(sol.mean_logits, n, dim, lam_w, lam_h)
    for W, Hb in ((W_pr, Hb_pr), (W_co, Hb_co)):
        assert np.allclose(W @ Hb, sol.mean_logits, atol=1e-12)  # both factor Z̄ ...
    gnorm = {}
    for name, (W, Hb) in {"printed": (W_pr, Hb_pr), "corrected": (W_co, Hb_co)}.items():
        f, gW, gH, gb = _objective_and_grad(W, Hb, sol.bias, n, lam_w, lam_h, 0.05)
        gnorm[name] = max(np.abs(gW).max(), np.abs(gH / np.sqrt(n)[None, :]).max(), np.abs(gb).max())
        if name == "printed":
            assert f - f_num > 1e-3  # ... but only the corrected one attains the minimum
    assert gnorm["corrected"] < 1e-10 and gnorm["printed"] > 1e-3
    # Rotation-invariant check against the numerical optimum: W Wᵀ (our K×K) and norm balance.
    assert np.abs(W_num @ W_num.T - W_co @ W_co.T).max() <= num.tol(lambda W, Hb, b: W @ W.T)
    assert np.abs(W_num @ W_num.T - W_pr @ W_pr.T).max() > 1e-2
    assert lam_w * np.sum(W_pr**2) / (lam_h * np.sum(n * np.sum(Hb_pr**2, axis=0))) == pytest.approx(16.0)
