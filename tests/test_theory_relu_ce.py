"""Tests of the analytic ReLU-constrained CE UFM minimum (Dang, Tran, Nguyen, Ho 2024).

Reference values: `shared/theory/seed003_dang_relu_ce.md` §5. Independent check: L-BFGS-B on the original
problem with exact box constraints `H ≥ 0` (float64 NumPy/SciPy, 3 random starts (best kept), `d = 8K`; dead-class
local minima exist, note §6.3). Errata: `docs/errata.md`.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.special import logsumexp, softmax

from _certificate import Certificate, certify
from ufm_jax.theory._relu_ce import relu_ce_point, relu_ce_solution, relu_dead_class_thresholds


# --------------------------------------------------------------------------------------------------
# Independent objective (the paper's eq. (4)) with columns `labels`, column weights `weights`.
# --------------------------------------------------------------------------------------------------


def objective_and_grad(W, H, labels, weights, lam_w, lam_h):
    """`Σ_j (ω_j/N) CE(W h_j, y_j) + (λ_W/2)‖W‖² + (λ_H/2) Σ_j ω_j ‖h_j‖²`, `N = Σ ω_j`, and its gradient."""
    labels = np.asarray(labels)
    w = np.asarray(weights, dtype=np.float64)
    N, m = w.sum(), labels.size
    K = W.shape[0]
    Y = np.zeros((K, m))
    Y[labels, np.arange(m)] = 1.0
    Z = W @ H
    ce = logsumexp(Z, axis=0) - Z[labels, np.arange(m)]
    val = (
        np.sum(w * ce) / N
        + lam_w / 2 * np.sum(W * W)
        + lam_h / 2 * np.sum(w * np.sum(H * H, axis=0))
    )
    G = (softmax(Z, axis=0) - Y) * (w / N)[None, :]
    gW = G @ H.T + lam_w * W
    gH = W.T @ G + lam_h * H * w[None, :]
    return val, gW, gH


def weighted_objective(W, Hbar, n, lam_w, lam_h):
    K = len(n)
    return objective_and_grad(W, Hbar, np.arange(K), n, lam_w, lam_h)[0]


def _unpack(z, K, d, m):
    return z[: K * d].reshape(K, d), z[K * d :].reshape(d, m)


def _fun(z, labels, weights, K, d, lam_w, lam_h):
    W, H = _unpack(z, K, d, len(labels))
    val, gW, gH = objective_and_grad(W, H, labels, weights, lam_w, lam_h)
    return val, np.concatenate([gW.ravel(), gH.ravel()])


def lbfgsb(labels, weights, K, d, lam_w, lam_h, z0):
    m = len(labels)

    def fun(z):
        return _fun(z, labels, weights, K, d, lam_w, lam_h)

    bounds = [(None, None)] * (K * d) + [(0.0, None)] * (d * m)
    res = minimize(
        fun,
        z0,
        jac=True,
        method="L-BFGS-B",
        bounds=bounds,
        options={"maxiter": 20000, "maxfun": 40000, "ftol": 1e-16, "gtol": 1e-12, "maxcor": 30},
    )
    return res.fun, res.x


@dataclasses.dataclass(frozen=True)
class _Numeric:
    """The best L-BFGS-B run: value `f`, `W`, `H`, `labels`, `weights`, and its `Certificate`.

    Iterates as `(f, W, H, labels, weights)`. `tol(q)` is the certified tolerance of an invariant `q(W, H)`
    (the first-order error its Newton step shows, ×10, plus round-off; tests/_certificate.py). The Newton
    step moves the free coordinates and sends the entries of `H` on the active face to the bound `H = 0`.
    """

    f: float
    W: np.ndarray
    H: np.ndarray
    labels: np.ndarray
    weights: np.ndarray
    cert: Certificate

    def __iter__(self):
        return iter((self.f, self.W, self.H, self.labels, self.weights))

    def tol(self, quantity) -> float:
        K, (d, m) = self.W.shape[0], self.H.shape
        return self.cert.tolerance(lambda z: quantity(*_unpack(z, K, d, m)))


@functools.cache
def numerical_optimum(
    n: tuple,
    lam_w: float,
    lam_h: float,
    d: int | None = None,
    starts: int = 3,
    explicit: bool = False,
    disjoint_init: bool = False,
):
    """Best of `starts` L-BFGS-B runs: `(f, W, H, labels, weights)`; weighted (one column per class) by default."""
    K = len(n)
    d = 8 * K if d is None else d
    if explicit:
        labels = np.repeat(np.arange(K), n)
        weights = np.ones(labels.size)
    else:
        labels, weights = np.arange(K), np.asarray(n, dtype=np.float64)
    m = labels.size
    best = None
    for seed in range(starts):
        rng = np.random.default_rng(seed)
        W0 = rng.normal(0.0, 0.5, (K, d))
        H0 = np.abs(rng.normal(0.0, 0.5, (d, m)))
        if disjoint_init:  # d = K: start near a disjoint-support frame (note §6.3)
            H0 = np.eye(d, K)[:, labels] + 0.05 * np.abs(rng.normal(size=(d, m)))
        out = lbfgsb(labels, weights, K, d, lam_w, lam_h, np.concatenate([W0.ravel(), H0.ravel()]))
        if best is None or out[0] < best[0]:
            best = out
    f, z = best

    def grad(z):
        return _fun(z, labels, weights, K, d, lam_w, lam_h)[1]

    # The active face: entries of H at (or, within the run's error, just above) the bound H = 0. A true
    # nonzero entry is O(0.1) here (even just inside a class's death threshold), so 1e-6 of the largest
    # separates them; the Newton step sends the active entries to 0.
    active = np.r_[np.zeros(K * d, bool), z[K * d :] <= 1e-6 * np.abs(z[K * d :]).max()]
    W, H = _unpack(z, K, d, m)
    return _Numeric(f, W, H, labels, weights, certify(grad, z, free=~active, bound=0.0))


def class_means(H, labels, K):
    return np.stack([H[:, labels == k].mean(axis=1) for k in range(K)], axis=1)


# --------------------------------------------------------------------------------------------------
# Cases (note §5 table) and near-threshold instances.
# --------------------------------------------------------------------------------------------------

T1 = ((5, 10, 20, 40), 0.01, 0.01)
T2 = ((5, 10, 20, 40), 0.05, 0.002)
T3 = ((3, 6, 6, 15), 0.02, 0.005)
T4 = ((2, 4, 8, 30), 0.04, 0.03)
T5 = ((10, 10, 10, 10), 0.01, 0.01)
T6 = ((2, 2, 8, 30), 0.04, 0.03)
T7 = ((3, 9), 0.02, 0.02)
T8 = ((5, 10, 20, 40), 0.1, 0.1)

_P1 = float(relu_dead_class_thresholds(T1[0], 1.0, 1.0).lam_product_thresholds[0])
NEAR_ALIVE = (T1[0], math.sqrt(0.97 * _P1), math.sqrt(0.97 * _P1))  # class 1 just alive
NEAR_DEAD = (T1[0], math.sqrt(1.03 * _P1), math.sqrt(1.03 * _P1))  # class 1 just dead

REFERENCE = {  # note §5: M_k, ‖h_k‖², ‖w_k‖², L*
    "T1": (
        T1,
        [1.991696567, 2.451516594, 2.871070638, 3.266212351],
        [0.7713807635, 0.6713754692, 0.5559804384, 0.4472445456],
        [5.869606637, 7.774173887, 10.71140994, 15.22485864],
        0.5489742412662593,
        "all-alive",
    ),
    "T2": (
        T2,
        [1.991696567, 2.451516594, 2.871070638, 3.266212351],
        [3.856903817, 3.356877346, 2.779902192, 2.236222728],
        [1.173921327, 1.554834777, 2.142281988, 3.044971728],
        0.5489742412662593,
        "all-alive",
    ),
    "T3": (
        T3,
        [2.833213344, 3.230182513, 3.230182513, 3.731013217],
        [2.833213344, 2.284083959, 2.284083959, 1.668559836],
        [2.686128445, 3.553605732, 3.553605732, 5.440921362],
        0.4005054651751215,
        "all-alive",
    ),
    "T4": (
        T4,
        [0, 0.4353180713, 1.232048021, 2.245828475],
        [0, 0.2176590356, 0.4355947551, 0.4100303053],
        [1.041018959, 1.476337030, 2.783397979, 7.191473539],
        0.9630885736587527,
        "1-dead",
    ),
    "T5": (
        T5,
        [3.194014441] * 4,
        [0.8747168791] * 4,
        [8.747168792] * 4,
        0.4659089140009253,
        "all-alive",
    ),
    "T6": (
        T6,
        [0, 0, 1.317573854, 2.306678033],
        [0, 0, 0.4658327033, 0.4211398638],
        [1.022553596, 1.022553596, 2.885884409, 7.339651554],
        0.9218970142035454,
        "2-dead",
    ),
    "T7": (
        T7,
        [2.219877959, 2.814070671],
        [0.9062613818, 0.6632828180],
        [4.344164754] * 2,
        0.24321979588542997,
        "all-alive",
    ),
    "T8": (T8, [0] * 4, [0] * 4, [0] * 4, 1.3862943611198906, "all-dead"),
}


def _close(a, b, rel=6e-10, abs_=1e-9):
    np.testing.assert_allclose(
        np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64), rtol=rel, atol=abs_
    )


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_reference_values(name):
    (n, lw, lh), M, x, wn, L, regime = REFERENCE[name]
    sol = relu_ce_solution(n, 4 if name == "T3" else 8, lw, lh)
    _close(sol.details["margins"], M)
    _close(sol.details["feature_sq_norms"], x)
    _close(sol.details["weight_sq_norms"], wn)
    _close(sol.objective, L, rel=1e-14, abs_=0)
    assert sol.regime == regime
    # L* closed forms agree (note §2): Σ_act (n_k/N)[−log(1−r_k) + r_k M_k] + Σ_dead (n_k/N) log K.
    nn, K = np.asarray(n, float), len(n)
    r, alive = sol.details["ratios_r"], sol.details["alive"]
    ra = np.where(alive, r, 0.0)
    alt = np.sum(
        nn / nn.sum() * np.where(alive, -np.log1p(-ra) + ra * sol.details["margins"], math.log(K))
    )
    _close(alt, sol.objective, rel=1e-13, abs_=0)
    assert sol.details["dead_classes"] == tuple(int(k) for k in np.flatnonzero(np.asarray(M) == 0))


def test_reference_ratios_cosines_and_scalings():
    s1 = relu_ce_solution(*((T1[0], 8) + T1[1:]))
    _close(s1.details["ratios_r"], [0.290473751, 0.2053959591, 0.1452368755, 0.1026979795])
    G = s1.details["weight_gram"]
    cos = G / np.sqrt(np.outer(np.diag(G), np.diag(G)))
    _close([cos[0, 1], cos[0, 3], cos[2, 3]], [-0.033340068, -0.417904729, -0.498929253], rel=1e-8)
    _close(s1.details["weight_sq_frobenius"], 39.58004910, rel=1e-9)  # P8
    _close(
        1.0 * s1.details["weight_sq_frobenius"], 1.0 * s1.details["feature_sq_frobenius"], rel=1e-13
    )  # Lemma 1
    # Prop 1 closed form of W Wᵀ.
    n, K = np.asarray(T1[0], float), 4
    a = np.sqrt(n) * s1.details["margins"]
    P = math.sqrt(T1[2] / T1[1]) / (K * math.sqrt(K * (K - 1)))
    prop1 = P * (np.full((K, K), a.sum()) - K * (a[:, None] + a[None, :]) + np.diag(K * K * a))
    _close(G, prop1, rel=1e-12, abs_=1e-12)
    # P9: T2 has the same λ_Wλ_H: same L*, M, cosines; x ×5, ‖w‖² ÷5.
    s2 = relu_ce_solution(T2[0], 8, T2[1], T2[2])
    _close(s2.objective, s1.objective, rel=1e-14, abs_=0)
    _close(s2.details["feature_sq_norms"], 5 * s1.details["feature_sq_norms"], rel=1e-13)
    _close(s2.details["weight_sq_norms"], s1.details["weight_sq_norms"] / 5, rel=1e-13)
    # T5 balanced: cosines −1/(K−1); T6: the two dead classes share w.
    G5 = relu_ce_solution(T5[0], 8, T5[1], T5[2]).details["weight_gram"]
    _close(G5 / G5[0, 0], np.eye(4) * 4 / 3 - 1 / 3, rel=1e-13, abs_=1e-13)
    W6, _ = relu_ce_point(T6[0], 8, T6[1], T6[2])
    assert np.linalg.norm(W6[0] - W6[1]) < 1e-14
    # Cor 3 (two groups): cos_maj from eq. (15)/(16) and cos_maj < cos_min.
    nA, nB, KA, KB = 20, 5, 2, 3
    s = relu_ce_solution([nA] * KA + [nB] * KB, 5, 0.005, 0.005)
    G = s.details["weight_gram"]
    cosG = G / np.sqrt(np.outer(np.diag(G), np.diag(G)))
    aA, aB, K = (
        math.sqrt(nA) * s.details["margins"][0],
        math.sqrt(nB) * s.details["margins"][-1],
        KA + KB,
    )
    cmaj = 1 - K**2 * aA / (K**2 * aA - K * aA - KB * aA + KB * aB)
    cmin = 1 - K**2 * aB / (K**2 * aB - K * aB - KA * aB + KA * aA)
    _close([cosG[0, 1], cosG[2, 3]], [cmaj, cmin], rel=1e-12)
    assert cmaj < cmin


def test_invariants_match_explicit_point():
    for (n, lw, lh), d in [(T1, 8), (T4, 4), (T6, 9), (T8, 5), (T7, 2)]:
        sol = relu_ce_solution(n, d, lw, lh)
        W, Hb = relu_ce_point(n, d, lw, lh)
        K = len(n)
        assert W.shape == (K, d) and Hb.shape == (d, K) and np.all(Hb >= 0)
        _close(Hb.T @ Hb, sol.mean_gram, rel=1e-13, abs_=1e-14)
        _close(W @ Hb, sol.mean_logits, rel=1e-12, abs_=1e-13)
        _close(W @ W.T, sol.details["weight_gram"], rel=1e-12, abs_=1e-13)
        _close(W.sum(axis=0), np.zeros(d), abs_=1e-13)
        sv = np.linalg.svd(W, compute_uv=False)[: min(K, d)]
        _close(sol.weight_singular_values[0], sv, rel=1e-12, abs_=1e-12)
        _close(sol.product_singular_values, sv, rel=1e-12, abs_=1e-12)
        _close(
            sol.mean_singular_values,
            np.linalg.svd(Hb, compute_uv=False)[: min(K, d)],
            rel=1e-12,
            abs_=1e-13,
        )
        assert (
            len(sol.weight_singular_values) == 1 and sol.bias.shape == (K,) and not sol.bias.any()
        )
        _close(weighted_objective(W, Hb, n, lw, lh), sol.objective, rel=1e-14, abs_=0)
        assert "E-RL1" in sol.source and "Thm 1" in sol.source


def test_input_validation():
    with pytest.raises(ValueError, match="dim"):
        relu_ce_solution([5, 10, 20], 2, 0.01, 0.01)
    with pytest.raises(ValueError, match="lam_w"):
        relu_ce_solution([5, 10], 4, [0.01, 0.02], 0.01)
    with pytest.raises(ValueError, match="lam_h"):
        relu_ce_solution([5, 10], 4, 0.01, 0.0)
    with pytest.raises(ValueError, match="class_sizes"):
        relu_ce_solution([5], 4, 0.01, 0.01)
    assert relu_ce_solution([5.5, 1e9], 2, [1e-12], 1e-12).regime in ("all-alive", "1-dead")


def test_dead_class_thresholds():
    n, lw, lh = T4
    t = relu_dead_class_thresholds(n, lw, lh)
    _close(t.size_threshold, 3.0976, rel=1e-12)  # note P10
    assert relu_ce_solution(n, 4, lw, lh).details["dead_classes"] == tuple(
        np.flatnonzero(np.asarray(n) <= 3.0976)
    )
    _close(t.lam_product_thresholds, (4 - 1) * np.asarray(n) / (4 * 44.0**2), rel=1e-14)
    _close(t.lam_h_thresholds * lw, t.lam_product_thresholds, rel=1e-14)
    _close(t.lam_w_thresholds * lh, t.lam_product_thresholds, rel=1e-14)
    _close(t.ratios, relu_ce_solution(n, 4, lw, lh).details["ratios_r"] * 4 / 3, rel=1e-14)
    for k in range(4):
        p = t.lam_product_thresholds[k]
        for fac, dead in [(1 - 1e-9, False), (1 + 1e-9, True)]:  # λ_H crossing, λ_W fixed
            s = relu_ce_solution(n, 4, lw, fac * p / lw)
            assert (k in s.details["dead_classes"]) == dead
        s = relu_ce_solution(n, 4, lw, (1 - 1e-6) * p / lw)
        assert 0 < s.details["feature_sq_norms"][k] < 1e-4  # continuous at the boundary
        lo, hi = t.own_size_interval[k]
        assert 0 < lo < hi
        for size, dead in [
            (lo * (1 - 1e-9), True),
            (lo * (1 + 1e-9), False),
            (hi * (1 - 1e-9), False),
            (hi * (1 + 1e-9), True),
        ]:
            m = np.asarray(n, float).copy()
            m[k] = size
            assert (k in relu_ce_solution(m, 4, lw, lh).details["dead_classes"]) == dead
    t8 = relu_dead_class_thresholds(*T8)
    assert np.all(np.isnan(t8.own_size_interval)) and np.all(t8.ratios > 1)
    assert relu_ce_solution(T8[0], 4, T8[1], T8[2]).regime == "all-dead"
    assert relu_ce_solution(*NEAR_ALIVE[:1], 4, *NEAR_ALIVE[1:]).regime == "all-alive"
    assert relu_ce_solution(*NEAR_DEAD[:1], 4, *NEAR_DEAD[1:]).regime == "1-dead"


# --------------------------------------------------------------------------------------------------
# Independent numerical optimum, every regime.
# --------------------------------------------------------------------------------------------------

NUMERIC_CASES = {
    "T1": T1,
    "T4": T4,
    "T6": T6,
    "T8": T8,
    "T7": T7,
    "T5": T5,
    "T2": T2,
    "near-alive": NEAR_ALIVE,
    "near-dead": NEAR_DEAD,
}


def _check_against_theory(sol, num, n):
    """The numerical optimum `num` against the theory `sol`: the objective (second order in the run's error,
    `f − f* ≤ ‖g‖·d ≈ 1e-17`, so 1e-8 relative is loose yet catches every erratum), and each first-order
    invariant of the class means within the error the run's own Newton step shows (`num.tol`)."""
    K = len(n)
    f, W, H, labels, _ = num

    def means(H):
        return class_means(H, labels, K)

    assert f >= sol.objective * (1 - 1e-12)
    assert abs(f - sol.objective) <= 1e-8 * sol.objective
    for invariant, theory in (
        (lambda W, H: np.sum(means(H) ** 2, axis=0), sol.details["feature_sq_norms"]),
        (lambda W, H: means(H).T @ means(H), sol.mean_gram),  # orthogonality + norms
        (lambda W, H: W @ means(H), sol.mean_logits),
        (lambda W, H: W @ W.T, sol.details["weight_gram"]),
        (lambda W, H: np.linalg.svd(W, compute_uv=False)[:K], sol.weight_singular_values[0]),
    ):
        assert np.abs(invariant(W, H) - theory).max() <= num.tol(invariant)


@pytest.mark.parametrize("name", list(NUMERIC_CASES))
def test_numerical_optimum_weighted(name):
    n, lw, lh = NUMERIC_CASES[name]
    _check_against_theory(relu_ce_solution(n, 8 * len(n), lw, lh), numerical_optimum(n, lw, lh), n)


def test_numerical_optimum_d_equals_k():
    n, lw, lh = T3
    num = numerical_optimum(n, lw, lh, d=4, starts=3, disjoint_init=True)
    _check_against_theory(relu_ce_solution(n, 4, lw, lh), num, n)


@pytest.mark.parametrize("case", [T7, T4])
def test_numerical_optimum_explicit_samples(case):
    """Every sample its own column (tests NC1 too): within-class spread 0, to the certified error."""
    n, lw, lh = case
    num = numerical_optimum(n, lw, lh, explicit=True)
    K = len(n)

    def spread(W, H):
        return np.linalg.norm(H - class_means(H, num.labels, K)[:, num.labels], axis=0)

    assert np.max(spread(num.W, num.H)) <= num.tol(spread)
    _check_against_theory(relu_ce_solution(n, 8 * K, lw, lh), num, n)


def test_theory_point_is_kkt():
    """Gradient in W vanishes; projected gradient in H ≥ 0 vanishes; multipliers ≥ 0 (weighted and explicit)."""
    for n, lw, lh in [T1, T3, T4, T6, T7, T8, NEAR_ALIVE, NEAR_DEAD]:
        K = len(n)
        d = 2 * K + 1
        W, Hb = relu_ce_point(n, d, lw, lh)
        for labels, weights in [
            (np.arange(K), np.asarray(n, float)),
            (np.repeat(np.arange(K), n), np.ones(int(sum(n)))),
        ]:
            H = Hb[:, labels]
            _, gW, gH = objective_and_grad(W, H, labels, weights, lw, lh)
            scale = 1.0 + np.abs(gH).max()
            assert np.abs(gW).max() <= 1e-12 * scale
            proj = H - np.maximum(H - gH, 0.0)
            assert np.abs(proj).max() <= 1e-12 * scale
            assert np.all(gH[H == 0] >= -1e-14)  # bound multipliers λ = ∇_H ≥ 0
            assert np.abs(gH[H > 0]).max(initial=0.0) <= 1e-12 * scale


# --------------------------------------------------------------------------------------------------
# Errata (docs/errata.md): printed fails, corrected agrees with the numerical optimum.
# --------------------------------------------------------------------------------------------------


def _printed_point(n, d, lw, lh):
    """The paper's eqs. (6), (9), (10) with the printed `λ_W λ_H` (no sqrt) in M̄_k."""
    nn, K = np.asarray(n, float), len(n)
    r = nn.sum() * math.sqrt((K - 1) / K) * lw * lh / np.sqrt(nn)
    with np.errstate(divide="ignore", invalid="ignore"):
        Mbar = np.log((K - 1) * (1 / r - 1))
    M = np.where(np.isfinite(Mbar) & (Mbar > 0), Mbar, 0.0)
    x = np.sqrt((K - 1) / K * (lw / lh) / nn) * M
    Hb = np.zeros((d, K))
    Hb[np.arange(K), np.arange(K)] = np.sqrt(x)
    c = math.sqrt(lh / (lw * K * (K - 1)))
    HD = Hb * np.sqrt(nn)
    return M, c * (K * HD - HD.sum(axis=1, keepdims=True)).T, Hb


def test_erratum_E_RL1_sqrt_lambda_product():
    """Eq. (6) l.102, (41)-(42) l.448-452, iv)-v) l.478-480: λ_Wλ_H must be √(λ_Wλ_H)."""
    printed_L = {"T1": 1.0678, "T3": 0.7339, "T4": 1.9017, "T5": 0.8680}  # note P14
    for name, (n, lw, lh) in [("T1", T1), ("T3", T3), ("T4", T4), ("T5", T5)]:
        K = len(n)
        num = numerical_optimum(n, lw, lh)
        f = num.f
        sol = relu_ce_solution(n, 8 * K, lw, lh)
        M_pr, W_pr, H_pr = _printed_point(n, 8 * K, lw, lh)
        f_pr = weighted_objective(W_pr, H_pr, n, lw, lh)
        assert abs(f_pr - printed_L[name]) < 1e-4
        assert f_pr > f + 0.3  # printed construction is far from optimal
        assert abs(sol.objective - f) <= 1e-8 * f  # corrected is the optimum (second order: loose)

        def margins(W, Hbar):  # margin q_k = (W h_k)_k − max_{m≠k} (W h_k)_m
            L = W @ Hbar
            return np.diag(L) - np.array([np.max(np.delete(L[:, k], k)) for k in range(K)])

        margin_num = margins(num.W, num.H)
        assert np.abs(margin_num - sol.details["margins"]).max() <= num.tol(margins)
        assert np.max(np.abs(margin_num - M_pr)) > 1.0
    # NC3 (eq. 21) at the true optimum of T1: ≈ 0 with the corrected M, 0.13 with the printed M.
    n, lw, lh = T1
    num = numerical_optimum(n, lw, lh)

    def nc3(M, W=num.W, Hbar=num.H):
        Z = M[None, :] * (np.eye(4) - 0.25)
        L = W @ Hbar
        return np.linalg.norm(L / np.linalg.norm(L) - Z / np.linalg.norm(Z))

    corrected = relu_ce_solution(n, 32, lw, lh).details["margins"]
    assert nc3(corrected) <= num.tol(lambda W, Hbar: nc3(corrected, W, Hbar))
    assert abs(nc3(_printed_point(n, 32, lw, lh)[0]) - 0.13) < 0.01


def test_erratum_E_RL2_feature_norm_ratio():
    """Cor. 2 eq. (14) l.180: ‖h_i‖²/‖h_j‖² = √(n_j/n_i)·M_i/M_j, not √((n_j/n_i)(M_i/M_j))."""
    n, lw, lh = T1
    num = numerical_optimum(n, lw, lh)
    M = relu_ce_solution(n, 32, lw, lh).details["margins"]
    i, j = 0, 3

    def ratio(W, Hbar):
        x = np.sum(Hbar * Hbar, axis=0)
        return x[i] / x[j]

    numeric = ratio(num.W, num.H)
    corrected = math.sqrt(n[j] / n[i]) * M[i] / M[j]
    printed = math.sqrt(n[j] / n[i] * M[i] / M[j])
    assert abs(corrected - 1.72474) < 1e-5 and abs(printed - 2.20869) < 1e-5  # note §2
    assert abs(numeric - corrected) <= num.tol(ratio)
    assert abs(numeric - printed) > 0.4


def test_erratum_E_RL3_classifier_index():
    """Eq. (10) vs l.140 / (45) l.408, 426, 518, 532: w_k uses K√n_k h_k, not K√n_m h_m / K h_K."""
    for n, lw, lh in [T1, T5]:
        K = len(n)
        num = numerical_optimum(n, lw, lh)
        f, W, Hbar = num.f, num.W, num.H
        nn = np.sqrt(np.asarray(n, float))
        c = math.sqrt(lh / (lw * K * (K - 1)))

        def corrected_w(Hbar):
            return c * (K * (Hbar * nn).T - (Hbar * nn).sum(axis=1)[None, :])

        corrected = corrected_w(Hbar)
        S = (Hbar * nn).sum(axis=1)
        printed = c * np.tile(
            K * nn[-1] * Hbar[:, -1] - S, (K, 1)
        )  # the only reading of "m": the last class
        scale = np.abs(W).max()
        assert np.abs(W - corrected).max() <= num.tol(lambda W, Hbar: W - corrected_w(Hbar))
        assert np.abs(W - printed).max() > 0.1 * scale
        assert np.linalg.norm(printed.sum(axis=0)) > 0.1 * scale  # violates Σ w_k = 0 of Thm 1(d)
        assert weighted_objective(printed, Hbar, n, lw, lh) > f + 0.1
        # W − corrected is first order in the run's error; the objective moves only to second order.
        assert abs(weighted_objective(corrected, Hbar, n, lw, lh) - f) <= 1e-8 * f


def test_erratum_E_RL4_dual_variables_positive():
    """L.495 claims the bound multipliers are 0 (∇_H L = 0); at the optimum some are strictly positive."""
    for n, lw, lh in [T1, T4]:
        num = numerical_optimum(n, lw, lh, explicit=True)
        W, H, labels, weights = num.W, num.H, num.labels, num.weights
        active = H <= 1e-6 * H.max()  # on the bound H = 0 (to the run's error), as in numerical_optimum

        def grad_h(W, H):
            return objective_and_grad(W, H, labels, weights, lw, lh)[2]

        _, gW, gH = objective_and_grad(W, H, labels, weights, lw, lh)
        # The run is a certified local minimum (tests/_certificate.py: converged, no negative curvature on
        # the free entries), so its free gradient is round-off next to the multipliers of the bound ...
        assert max(np.abs(gW).max(), np.abs(gH[~active]).max()) <= 1e-4 * gH[active].max()
        assert gH[active].max() > 1e-3  # ... and the printed claim ∇_H L = 0 fails
        # Multipliers ≥ 0 (KKT), to within their first-order error.
        assert gH[active].min() >= -num.tol(lambda W, H: grad_h(W, H)[active])

        # Lemma 1 still holds by complementary slackness: λ_W‖W‖² = λ_H‖H‖².
        def balance(W, H):
            return lw * np.sum(W * W) - lh * np.sum(H * H)

        assert abs(balance(W, H)) <= num.tol(balance)


def test_erratum_E_RL5_metric_global_mean():
    """L.226: h_G printed as (1/K) Σ_k Σ_i h_{k,i} (and h_k with 1/n); the mean needs 1/N and 1/n_k."""
    n, lw, lh = T7
    _f, _W, H, labels, _ = numerical_optimum(n, lw, lh, explicit=True)
    K, N = len(n), H.shape[1]
    means = class_means(H, labels, K)
    printed_hG = H.sum(axis=1) / K
    corrected_hG = H.sum(axis=1) / N
    _close(corrected_hG, means @ (np.asarray(n) / N), rel=1e-12, abs_=1e-14)  # line 88 definition
    assert np.linalg.norm(printed_hG - corrected_hG) > 1.0  # printed is N/K = 6 times the mean
    # Duplicating every sample leaves a mean unchanged; the printed h_G doubles.
    H2 = np.concatenate([H, H], axis=1)
    _close(H2.sum(axis=1) / (2 * N), corrected_hG, rel=1e-14, abs_=0)
    _close(H2.sum(axis=1) / K, 2 * printed_hG, rel=1e-14, abs_=0)
    # Printed 1/n (with n = n_1) class means are not means for the other classes.
    printed_means = np.stack([H[:, labels == k].sum(axis=1) / n[0] for k in range(K)], axis=1)
    assert np.linalg.norm(printed_means[:, 1] - means[:, 1]) > 1.0


def test_erratum_E_RL6_nc3_uses_class_mean_logits():
    """L.238: "WH" in NC3 must be W H̄ (K×K); W H is K×N and cannot be compared with Z* (K×K)."""
    n, lw, lh = T7
    num = numerical_optimum(n, lw, lh, explicit=True)
    K = len(n)
    Z = relu_ce_solution(n, 16, lw, lh).mean_logits
    assert (num.W @ num.H).shape != Z.shape

    def nc3(W, H):
        L = W @ class_means(H, num.labels, K)
        return np.linalg.norm(L / np.linalg.norm(L) - Z / np.linalg.norm(Z))

    assert nc3(num.W, num.H) <= num.tol(nc3)


def test_erratum_E_RL7_proof_jensen_index():
    """L.315: Σ_i ‖h_{k,i}‖² ≥ (1/n_k)‖Σ_{i≤n_k} h_{k,i}‖² (printed: Σ_{k=1}^K h_{k,i}, false in general)."""
    rng = np.random.default_rng(0)
    n = (3, 9)
    labels = np.repeat([0, 1], n)
    violated = 0
    for _ in range(50):
        H = np.abs(rng.normal(size=(5, 12))) * np.where(labels == 0, 0.1, 1.0)
        for i in range(n[0]):
            lhs = np.sum(H[:, labels == 0] ** 2)
            printed_rhs = np.sum((H[:, labels == 0][:, i] + H[:, labels == 1][:, i]) ** 2) / n[0]
            violated += lhs < printed_rhs
        corrected_rhs = np.sum(H[:, labels == 0].sum(axis=1) ** 2) / n[0]
        assert np.sum(H[:, labels == 0] ** 2) >= corrected_rhs - 1e-12
    assert violated > 0
    # Tight at the numerical optimum (NC1), as the proof needs.
    num = numerical_optimum(T7[0], T7[1], T7[2], explicit=True)

    def jensen_gap(W, H):
        Hk = H[:, num.labels == 0]
        return np.sum(Hk**2) - np.sum(Hk.sum(axis=1) ** 2) / n[0]

    assert abs(jensen_gap(num.W, num.H)) <= num.tol(jensen_gap)


def test_erratum_E_RL8_minimiser_not_unique():
    """Thm 1 "any global minimizer": any disjoint-support non-negative frame with the norms x_k is optimal."""
    n, lw, lh = T1
    K, d = 4, 10
    sol = relu_ce_solution(n, d, lw, lh)
    x = sol.details["feature_sq_norms"]
    rng = np.random.default_rng(1)
    perm = rng.permutation(d)
    supports = [
        perm[0:3],
        perm[3:4],
        perm[4:6],
        perm[6:9],
    ]  # class 1 spread over 3 coordinates, etc.
    Hb = np.zeros((d, K))
    for k, s in enumerate(supports):
        v = rng.uniform(0.2, 1.0, s.size)
        Hb[s, k] = math.sqrt(x[k]) * v / np.linalg.norm(v)
    nn = np.sqrt(np.asarray(n, float))
    c = math.sqrt(lh / (lw * K * (K - 1)))
    W = c * (K * (Hb * nn).T - (Hb * nn).sum(axis=1)[None, :])
    _close(weighted_objective(W, Hb, n, lw, lh), sol.objective, rel=1e-14, abs_=0)
    _, gW, gH = objective_and_grad(W, Hb, np.arange(K), n, lw, lh)
    assert np.abs(gW).max() < 1e-12 and np.abs(Hb - np.maximum(Hb - gH, 0)).max() < 1e-12
    _close(Hb.T @ Hb, sol.mean_gram, rel=1e-13, abs_=1e-15)
    _close(W @ Hb, sol.mean_logits, rel=1e-12, abs_=1e-14)
    _W0, H0 = relu_ce_point(n, d, lw, lh)
    assert np.abs(Hb - H0).max() > 0.1  # a different point, same invariants
