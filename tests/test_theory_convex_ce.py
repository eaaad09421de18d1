"""Convex reduced cross-entropy UFM solver (Hong & Ling 2023 §3.1) against the seed-001 note's values,
closed forms, the KKT certificate and an independent L-BFGS on the original (W, H, b) problem."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize
from scipy.special import logsumexp, softmax

from _certificate import certify
from ufm_jax.theory._convex import ce_convex_solution, kkt_residual
from ufm_jax.theory._solution import TheorySolution

DATASET1 = [5000] * 4 + [4000] * 3 + [3000] * 3
DATASET2 = [5000] * 4 + [3000] * 2 + [1000] * 4
TWO = [500] * 5 + [100] * 5          # (k_A, n_A, k_B, n_B) = (5, 500, 5, 100), N = 3000


def reduced_objective(n, lam_z, lam_b, zbar, bias):
    """Σ_k (n_k/N) CE(z̄_k + b, e_k) + λ_Z‖Z̄D^{1/2}‖_* + (λ_b/2)‖b‖², in plain numpy."""
    n = np.asarray(n, float)
    Z = zbar + bias[:, None]
    ce = logsumexp(Z, axis=0) - np.diag(Z)
    nuc = np.linalg.svd(zbar * np.sqrt(n)[None, :], compute_uv=False).sum()
    return float(n @ ce / n.sum() + lam_z * nuc + (0.0 if lam_b is None else 0.5 * lam_b * bias @ bias))


def block_matrix(a, b, c, d, kA=5, kB=5):
    """B(a, b, c, d) of the note §2.2 (eq. 3.4)."""
    top = np.hstack([a * (kA * np.eye(kA) - 1) + c * kB * np.eye(kA), -b * np.ones((kA, kB))])
    bot = np.hstack([-c * np.ones((kB, kA)), d * (kB * np.eye(kB) - 1) + b * kA * np.eye(kB)])
    return np.vstack([top, bot])


def solve(sizes, lam_z, lam_b, **kw):
    return ce_convex_solution(sizes, len(sizes) + 1, lam_z, lam_z, lam_b, **kw)


def smooth_curvature(sizes, zbar, bias, lam_b) -> float:
    """`α`: the smallest curvature of the smooth part of F(M, b) at `(Z̄, b)` on S = {1ᵀM = 0, 1ᵀb = 0}.

    In the normalised variables (`_convex_ce`'s docstring) the smooth part is Σ_k π_k CE(m_k/√π_k + b, e_k)
    + (λ_b/2)‖b‖², with quadratic form Σ_k (δm_k + √π_k δb)ᵀ H_k (δm_k + √π_k δb) + λ_b‖δb‖², H_k = diag(p_k)
    − p_k p_kᵀ. Every FISTA iterate lies in S (the gradient and the prox keep it), so does the minimiser
    (Lemma 5.2); on S the form is positive (bias-free: α >= min p; the CE-invariant shifts δm_k ∝ 1 are
    excluded by S).
    """
    n = np.asarray(sizes, float)
    K = n.size
    sqrt_pi = np.sqrt(n / n.sum())
    P = softmax(zbar + bias[:, None], axis=0)
    nb = 0 if lam_b is None else K
    hess = np.zeros((K * K + nb, K * K + nb))
    for k in range(K):
        A = np.zeros((K, K * K + nb))
        A[:, k * K:(k + 1) * K] = np.eye(K)  # δm_k
        if nb:
            A[:, K * K:] = sqrt_pi[k] * np.eye(K)  # √π_k δb
        hess += A.T @ (np.diag(P[:, k]) - np.outer(P[:, k], P[:, k])) @ A
    if nb:
        hess[K * K:, K * K:] += lam_b * np.eye(K)
    basis = np.linalg.svd(np.ones((K, 1)))[0][:, 1:]  # orthonormal basis of 1⊥
    S = np.kron(np.eye(K + (1 if nb else 0)), basis)
    return float(np.linalg.eigvalsh(S.T @ hess @ S)[0])


def certified_error(sol, sizes, lam_b) -> tuple[float, float]:
    """`(max|Z̄ − Z̄*|, ‖(M, b) − (M*, b*)‖)` bounded by what FISTA certifies, `kkt = dist(0, ∂F)`.

    For `g ∈ ∂F(x)` with `‖g‖ = kkt`, and `0 ∈ ∂F(x*)`: `kkt·d ≥ ⟨g, x − x*⟩ ≥ α d²` (α-strong convexity
    of the smooth part on S, monotonicity of the nuclear norm's subdifferential), so `d ≤ kkt/α`; α is
    evaluated at the returned point (it moves by O(d) ≈ 1e-9 along the segment). The returned `M` also
    has its singular values `<= 1e-13 max(1, σ_1)` set to zero (after the certificate): up to
    `√K·1e-13·max(1, σ_1)` more. Then `|δZ̄_jk| ≤ ‖δM‖_F/√π_min` (`Z̄ = M Π^{-1/2}`).
    """
    n = np.asarray(sizes, float)
    pi = n / n.sum()
    alpha = smooth_curvature(sizes, sol.mean_logits, sol.bias, lam_b)
    sigma_1 = np.linalg.svd(sol.mean_logits * np.sqrt(pi)[None, :], compute_uv=False)[0]
    d = sol.details["kkt_residual"] / alpha + math.sqrt(n.size) * 1e-13 * max(1.0, sigma_1)
    return d / math.sqrt(pi.min()), d


def objective_tolerance(sol, d) -> float:
    """|F(x) − F*| ≤ kkt·d (convexity), plus the round-off of two evaluations of F (sums of K² terms:
    ≲ K²·eps·|F| ≈ 2e-14|F|)."""
    return sol.details["kkt_residual"] * d + 1e-13 * max(1.0, abs(sol.objective))


# ---- Three clusters (note §4.1): no closed form; reference values from a FISTA with accuracy ~1e-6. ----


@pytest.mark.parametrize(
    "sizes, objective, diag, within, offblocks, bias, svals",
    [
        (DATASET1, 0.13038078, [5.62459, 5.55634, 5.46396], [-0.69338, -0.61406, -0.51734],
         {(0, 1): -0.67923, (0, 2): -0.66095, (1, 0): -0.62882, (1, 2): -0.59515, (2, 0): -0.55267,
          (2, 1): -0.53711},
         [0.028877, -0.001585, -0.036918],
         [446.748] * 3 + [416.808] + [390.250] * 2 + [350.354] + [327.609] * 2 + [0.0]),
        (DATASET2, 0.10865261, [5.85586, 5.69715, 5.31306], [-0.86902, -0.68093, -0.32815],
         {(0, 1): -0.84139, (0, 2): -0.77671, (1, 0): -0.71331, (1, 2): -0.61089, (2, 0): -0.45554,
          (2, 1): -0.41267},
         [0.079430, 0.014744, -0.086802], None),
    ],
)
def test_three_cluster_reference(sizes, objective, diag, within, offblocks, bias, svals):
    lam_w, lam_h, lam_b = 1e-3, 1e-6, 0.01          # the paper's literal values: λ_Z = √1e-9
    sol = ce_convex_solution(sizes, 12, lam_w, lam_h, lam_b)
    assert isinstance(sol, TheorySolution)
    assert sol.details["kkt_residual"] <= 1e-12 and sol.details["converged"]
    assert sol.regime == "full-rank"
    # Against the note's printed values: their rounding (half a unit: 5e-9, 5e-6, 5e-7) plus the note's
    # solver accuracy (~1e-6 in Z̄, second order in the objective) dominate; ours is within
    # certified_error (≈ 1e-8 in Z̄, ≈ 1e-20 in F).
    assert sol.objective == pytest.approx(objective, abs=6e-9)
    Z, n = sol.mean_logits, np.asarray(sizes, float)
    first = [0, 4, 4 + (sizes[4:].count(sizes[4]))]           # first class of each cluster
    np.testing.assert_allclose(np.diag(Z)[first], diag, atol=1e-5)
    np.testing.assert_allclose([Z[i + 1, i] for i in first], within, atol=1e-5)
    for (r, c), v in offblocks.items():
        assert Z[first[r], first[c]] == pytest.approx(v, abs=1e-5)
    np.testing.assert_allclose(sol.bias[first], bias, atol=2e-6)
    # Block structure (Thm 3.1(b)); columns and bias sum to 0. FISTA commutes with permuting classes of
    # equal size and keeps 1ᵀM = 0, 1ᵀb = 0 (smooth_curvature), and starts at 0: both hold to round-off
    # (≲ 1e-13 over the ~60 iterations), not merely to the certified error.
    labels = np.unique(n, return_inverse=True)[1]
    for i in range(10):
        for j in range(10):
            same = [(k, l) for k in range(10) for l in range(10)
                    if labels[k] == labels[i] and labels[l] == labels[j] and (k == l) == (i == j)]
            assert np.ptp([Z[k, l] for k, l in same]) < 1e-10
    assert np.abs(Z.sum(axis=0)).max() < 1e-10 and abs(sol.bias.sum()) < 1e-12
    Mt = Z * np.sqrt(n)[None, :]                                # Z̄D^{1/2}
    _, sv, Vt = np.linalg.svd(Mt)
    if svals is not None:
        np.testing.assert_allclose(sv, svals, atol=1e-3)
    # Factor geometry (note §1.6), with λ_W ≠ λ_H: identities of the returned Z̄, so round-off only.
    # Singular values are perfectly conditioned (|δσ| ≤ ‖δM‖ ≲ K·eps·σ_1).
    np.testing.assert_allclose(sol.product_singular_values ** 2, (lam_h / lam_w) ** 0.5 * sv, rtol=1e-10,
                               atol=1e-12 * sv.max())
    np.testing.assert_allclose(sol.weight_singular_values[0], sol.product_singular_values)
    # H̄ᵀH̄ = √(λ_W/λ_H) D^{-1/2} |Z̄D^{1/2}| D^{-1/2}, |A| = (AᵀA)^{1/2} = VΣVᵀ. The reference takes |A| from
    # the SVD of A: backward stable (the exact |A + E|, ‖E‖ ≤ K·eps·‖A‖) and ‖|A + E| − |A|‖_F ≤ √2‖E‖_F,
    # so it is good to ~K·eps·‖A‖_F even though A is rank-deficient. (A square root of the Gram AᵀA
    # instead turns its round-off null eigenvalue ±eps·σ_1² into √eps·σ_1 ≈ 1e-8 relative — first-order
    # sensitive, machine-dependent in sign: the 5.9e-8 seen on a clean 2-core machine.) Scaled by
    # √(λ_W/λ_H)/n_min, 1e-12·‖A‖_F leaves a margin of ~100 over K·eps·‖A‖_F√2 and none for a wrong factor.
    gram = math.sqrt(lam_w / lam_h) * (n ** -0.5)[:, None] * ((Vt.T * sv[None, :]) @ Vt) * (n ** -0.5)[None, :]
    gram_atol = 1e-12 * math.sqrt(lam_w / lam_h) * np.linalg.norm(Mt) / n.min()
    np.testing.assert_allclose(sol.mean_gram, gram, rtol=0, atol=gram_atol)
    # Eigenvalues of a symmetric matrix move by at most ‖δG‖_2 ≤ K·max|δG| (Weyl).
    np.testing.assert_allclose(sol.mean_singular_values ** 2,
                               np.sort(np.clip(np.linalg.eigvalsh(gram), 0, None))[::-1],
                               rtol=0, atol=n.size * gram_atol)
    # Norm balance λ_W‖W‖² = λ_H‖H‖² = λ_Z‖Z̄D^{1/2}‖_*.
    lam_z = math.sqrt(lam_w * lam_h)
    assert lam_w * np.sum(sol.weight_singular_values[0] ** 2) == pytest.approx(lam_z * sv.sum(), rel=1e-10)
    assert lam_h * float(n @ np.diag(sol.mean_gram)) == pytest.approx(lam_z * sv.sum(), rel=1e-10)


@pytest.mark.parametrize("sizes, objective", [(DATASET1, 0.23528720), (DATASET2, 0.19651187)])
def test_three_cluster_code_convention(sizes, objective):
    sol = solve(sizes, 2 * math.sqrt(1e-9), 0.02)
    assert sol.objective == pytest.approx(objective, abs=6e-9)


def test_within_cluster_identity_three_clusters():
    """p_own − p_other = max(0, 1 − Nλ_Z/√n_j) for every cluster (note §2.5), also with one collapsed."""
    for sizes, lam_z, lam_b, collapsed in [
        (DATASET1, math.sqrt(1e-9), 0.01, ()),
        ([500] * 4 + [200] * 3 + [50] * 3, 10.0 / 2750, 0.05, (7, 8, 9)),      # √50 < Nλ_Z < √200
        ([500] * 4 + [200] * 3 + [50] * 3, 16.0 / 2750, None, (4, 5, 6, 7, 8, 9)),
    ]:
        sol = solve(sizes, lam_z, lam_b)
        n = np.asarray(sizes, float)
        Z = sol.mean_logits + sol.bias[:, None]
        P = np.exp(Z - logsumexp(Z, axis=0, keepdims=True))
        for cluster in sol.details["clusters"]:
            g = list(cluster["classes"])
            expect = max(0.0, 1.0 - n.sum() * lam_z / math.sqrt(cluster["size"]))
            # On the within-cluster subspace (invariant under the iterates, by symmetry) the stationarity
            # condition is the scalar (1 − gap)√π_j = μ; a KKT residual kkt moves it by at most kkt/√π_j.
            # A collapsed cluster has gap 0 exactly (identical columns). Plus round-off.
            tol = sol.details["kkt_residual"] / math.sqrt(cluster["size"] / n.sum()) + 1e-12
            for i in g:
                for j in g:
                    if i != j:
                        assert P[i, i] - P[j, i] == pytest.approx(expect, abs=tol)
        assert sol.details["collapsed_classes"] == collapsed
        if collapsed:
            assert sol.regime.startswith("collapsed classes: " + ",".join(map(str, collapsed)))


# ---- Two clusters (note §4.1 tables) and closed forms. ------------------------------------------------


@pytest.mark.parametrize(
    "lam_b, lam_z, case, abcdm, objective",
    [
        (0.01, 0.002, "a", (0.496009, 0.465881, 0.127968, -0.018028, 0.089993), 1.18133992),
        (0.01, 0.0035, "b", (0.403519, 0.196047, 0.048361, -0.196047, 0.101165), 1.65527360),
        (0.01, 0.005, "c", (0.297677, 0, 0, 0, 0.121913), 1.91153630),
        (0.01, 0.008, "d", (0, 0, 0, 0, 0.137915), 2.08764844),
        (None, 0.001, "a", (0.577012, 0.472685, 0.289842, 0.136221, 0), 0.72653766),
        (None, 0.002, "a", (0.485315, 0.350268, 0.211333, 0.031868, 0), 1.21952792),
        (None, 0.003, "a", (0.435963, 0.237066, 0.145888, -0.103419, 0), 1.59278954),
        (None, 0.0035, "b", (0.432798, 0.157693, 0.102157, -0.157693, 0), 1.73446457),
        (None, 0.004, "b", (0.435687, 0.079545, 0.055088, -0.079545, 0), 1.85660343),
        (None, 0.005, "c", (0.391540, 0, 0, 0, 0), 2.05840036),
        (None, 0.0063, "c", (0.223722, 0, 0, 0, 0), 2.23927387),
        (None, 0.008, "d", (0, 0, 0, 0, 0), math.log(10)),
    ],
)
def test_two_cluster_table(lam_b, lam_z, case, abcdm, objective):
    sol = solve(TWO, lam_z, lam_b)
    assert sol.details["kkt_residual"] <= 1e-12
    # Against printed values: their rounding (5e-9; 5e-7 for the 6-digit scalars) dominates the certified
    # error (certified_error: ≲ 1e-9 in Z̄, ≲ 1e-20 in F).
    assert sol.objective == pytest.approx(objective, abs=1e-8)
    Z = sol.mean_logits
    # The block scalars of B(a, b, c, d) (6 printed digits) and the bias m[k_B 1; −k_A 1].
    np.testing.assert_allclose([-Z[0, 1], -Z[0, 5], -Z[5, 0], -Z[5, 6], sol.bias[0] / 5], abcdm, atol=1e-6)
    # The block pattern itself is exact up to round-off (FISTA commutes with permutations within a cluster),
    # and so are the exact zeros below: strict complementarity (certificate τ < 1) makes the thresholding
    # set the collapsed singular values to exactly 0 once the iterate is close.
    np.testing.assert_allclose(Z, block_matrix(*(-Z[0, 1], -Z[0, 5], -Z[5, 0], -Z[5, 6])), atol=1e-11)
    np.testing.assert_allclose(sol.bias, sol.bias[0] * np.r_[np.ones(5), -np.ones(5)], atol=1e-12)
    rank = sol.details["rank"]
    if case == "a":
        assert sol.regime == "full-rank" and rank == 9
    elif case == "b":   # minority columns identical and nonzero
        assert rank == 5 and np.ptp(Z[:, 5:], axis=1).max() < 1e-10 and np.abs(Z[:, 5:]).max() > 1e-2
        assert sol.details["collapsed_classes"] == (5, 6, 7, 8, 9)
    elif case == "c":   # minority columns exactly zero, majority simplex
        assert rank == 4 and np.abs(Z[:, 5:]).max() < 1e-12
        cos = (Z[:, :5].T @ Z[:, :5]) / np.sum(Z[:, 0] ** 2)
        assert cos[0, 1] == pytest.approx(-0.25, abs=1e-10)
    else:
        assert sol.regime == "complete-collapse" and np.abs(Z).max() == 0.0
    # The same point evaluated twice (jax and numpy): round-off.
    assert sol.objective == pytest.approx(reduced_objective(TWO, lam_z, lam_b, Z, sol.bias), abs=1e-14)


def test_two_cluster_closed_forms():
    """Bias-free case (a) via the note's scalar equations (§2.4), case (c), and case (d) with a bias:
    logits, bias and objectives to what the KKT certificate guarantees (certified_error)."""
    kA, kB, nA, nB = 5, 5, 500.0, 100.0
    K, N = kA + kB, kA * nA + kB * nB

    # Case (a), bias-free: λ_Z = 0.002.
    lam_z = 0.002
    L = N * lam_z
    rA, rB = math.sqrt(nA) / L, math.sqrt(nB) / L
    x2 = lambda t: kA / (math.sqrt(K * (kB + kA * nB * t * t / nA)) - kB)
    x1 = lambda t: kB / (math.sqrt(K * (kA + kB * nA / (nB * t * t))) - kA)
    g2 = lambda x: math.log((rA - 1) * (kA + kB * x) + 1) - kA * math.log(x)
    g1 = lambda x: math.log((rB - 1) * (kA * x + kB) + 1) - kB * math.log(x)
    t = scipy.optimize.brentq(lambda t: g1(x1(t)) - t * g2(x2(t)), 0.3, 3.0, xtol=1e-15, rtol=1e-15)
    c = g2(x2(t)) / K
    b = t * c
    a, d = c + math.log(x2(t)), b + math.log(x1(t))
    zbar = block_matrix(a, b, c, d)
    sol = solve(TWO, lam_z, None)
    z_err, dist = certified_error(sol, TWO, None)
    np.testing.assert_allclose(sol.mean_logits, zbar, rtol=0, atol=z_err)  # brentq here: ~1e-15 on Z̄
    assert sol.objective == pytest.approx(reduced_objective(TWO, lam_z, None, zbar, np.zeros(K)),
                                          abs=objective_tolerance(sol, dist))

    # Case (c), bias-free: e^{k_A a} = (ρ_A − 1)(k_A + k_B e^a) + 1.
    lam_z = 0.005
    rA = math.sqrt(nA) / (N * lam_z)
    a = scipy.optimize.brentq(lambda a: math.exp(kA * a) - (rA - 1) * (kA + kB * math.exp(a)) - 1, 1e-6, 5.0,
                              xtol=1e-15, rtol=1e-15)
    zbar = block_matrix(a, 0, 0, 0)
    sol = solve(TWO, lam_z, None)
    z_err, dist = certified_error(sol, TWO, None)
    np.testing.assert_allclose(sol.mean_logits, zbar, rtol=0, atol=z_err)
    assert sol.objective == pytest.approx(reduced_objective(TWO, lam_z, None, zbar, np.zeros(K)),
                                          abs=objective_tolerance(sol, dist))

    # Case (d), λ_b = 0.01: (n_A − n_B w)/(k_B + k_A w) = Nλ_b log(w)/K, m = log(w)/K.
    lam_z, lam_b = 0.008, 0.01
    w = scipy.optimize.brentq(lambda w: (nA - nB * w) / (kB + kA * w) - N * lam_b * math.log(w) / K,
                              1.0 + 1e-12, nA / nB, xtol=1e-15, rtol=1e-15)
    bias = math.log(w) / K * np.r_[kB * np.ones(kA), -kA * np.ones(kB)]
    sol = solve(TWO, lam_z, lam_b)
    _, dist = certified_error(sol, TWO, lam_b)
    np.testing.assert_allclose(sol.bias, bias, rtol=0, atol=dist)  # ‖δb‖ ≤ d
    assert sol.objective == pytest.approx(reduced_objective(TWO, lam_z, lam_b, np.zeros((K, K)), bias),
                                          abs=objective_tolerance(sol, dist))


@pytest.mark.parametrize("L, a_ref", [(0.5, 0.5252273), (3.0, 0.3191847), (9.0, 0.0747214), (10.0, 0.0),
                                      (12.0, 0.0)])
@pytest.mark.parametrize("lam_b", [None, 0.1])
def test_balanced_corrected_formula(L, a_ref, lam_b):
    K, n = 10, 100.0
    N = K * n
    sol = solve([n] * K, L / N, lam_b)
    a = math.log(K * math.sqrt(n) / L - K + 1) / K if L < math.sqrt(n) else 0.0
    assert a == pytest.approx(a_ref, abs=5e-8)
    # The certificate bounds the error (3e-10 at L = 0.5, where the smallest probability is 0.005 and so
    # is α: a fixed 1e-10 would ask for more than FISTA guarantees).
    z_err, dist = certified_error(sol, [n] * K, lam_b)
    np.testing.assert_allclose(sol.mean_logits, a * (K * np.eye(K) - 1), rtol=0, atol=z_err)
    # b = 0 by symmetry (every column's gradient in b sums the same probabilities): round-off only.
    np.testing.assert_allclose(sol.bias, 0.0, atol=1e-12)
    objective = math.log1p((K - 1) * math.exp(-a * K)) + (L / N) * (K - 1) * a * K * math.sqrt(n)
    assert sol.objective == pytest.approx(objective, abs=objective_tolerance(sol, dist))
    assert sol.regime == ("full-rank" if a > 0 else "complete-collapse")


# ---- Certificate. -------------------------------------------------------------------------------------


def test_kkt_certificate_and_perturbations():
    lam_z, lam_b = math.sqrt(1e-9), 0.01
    sol = solve(DATASET1, lam_z, lam_b)
    res = kkt_residual(DATASET1, lam_z, lam_b, sol.mean_logits, sol.bias)
    assert res <= 1e-8
    # Recomputed from the returned Z̄ (a fresh SVD): U Vᵀ moves by ~eps·σ_1/gap ≈ 1e-15 (the gap between
    # distinct singular values is ~7% of σ_1), times μ ≈ 6e-3: round-off far below 1e-12.
    assert res == pytest.approx(sol.details["kkt_residual"], abs=1e-12)
    rng = np.random.default_rng(0)
    assert kkt_residual(DATASET1, lam_z, lam_b, sol.mean_logits * 1.01, sol.bias) > 1e-3
    assert kkt_residual(DATASET1, lam_z, lam_b, sol.mean_logits, sol.bias + 0.01 * np.r_[1, -1, 0, 0, 0,
                                                                                            0, 0, 0, 0, 0]) > 1e-4
    assert kkt_residual(DATASET1, lam_z, lam_b,
                        sol.mean_logits + 1e-2 * rng.standard_normal((10, 10)), sol.bias) > 1e-4
    assert kkt_residual(DATASET1, 1.1 * lam_z, lam_b, sol.mean_logits, sol.bias) > 1e-3
    # Rank-deficient solutions (case b, c, d) and the bias-free model (1e-8: the solver's 1e-12 plus the
    # recomputation's round-off, as above).
    for lz, lb in [(0.0035, None), (0.005, 0.01), (0.008, 0.01), (0.002, None)]:
        s = solve(TWO, lz, lb)
        assert kkt_residual(TWO, lz, lb, s.mean_logits, s.bias) <= 1e-8
        assert kkt_residual(TWO, lz / 1.2, lb, s.mean_logits, s.bias) > 1e-4
    with pytest.raises(ValueError, match="bias"):
        kkt_residual(TWO, 0.002, None, s.mean_logits, np.ones(10))


def test_dim_scale_and_warm_start():
    sol = solve(TWO, 0.002, 0.01)
    # d = K − 1 is exact (rank Z̄ ≤ K − 1 since 1ᵀZ̄ = 0); d < K − 1 is refused.
    low = ce_convex_solution(TWO, 9, 0.002, 0.002, 0.01)
    assert low.objective == sol.objective and low.product_singular_values.shape == (9,)
    assert sol.product_singular_values.shape == (10,) and sol.product_singular_values[-1] == 0.0
    with pytest.raises(ValueError, match="dim"):
        ce_convex_solution(TWO, 8, 0.002, 0.002, 0.01)
    # Scaling n → c n with λ_Z → λ_Z/√c leaves π and λ_Z√N unchanged: n_k ~ 10⁹ is fine.
    c = 2e6
    big = ce_convex_solution(np.array(TWO) * c, 11, 0.002 / math.sqrt(c), 0.002 / math.sqrt(c), 0.01)
    assert big.details["kkt_residual"] <= 1e-12
    # Two certified solutions of the same problem: each within its certified_error of the minimiser.
    (z_sol, d_sol), (z_big, d_big) = certified_error(sol, TWO, 0.01), certified_error(big, TWO, 0.01)
    assert big.objective == pytest.approx(sol.objective, abs=objective_tolerance(sol, d_sol)
                                          + objective_tolerance(big, d_big))
    np.testing.assert_allclose(big.mean_logits, sol.mean_logits, rtol=0, atol=z_sol + z_big)
    # Warm start from the solution: (almost) no iterations, same answer.
    warm = solve(TWO, 0.002, 0.01, init=sol)
    assert warm.details["iterations"] <= 5
    d_warm = certified_error(warm, TWO, 0.01)[1]
    assert warm.objective == pytest.approx(sol.objective, abs=objective_tolerance(sol, d_sol)
                                           + objective_tolerance(warm, d_warm))
    warm2 = solve(TWO, 0.0021, 0.01, init=(sol.mean_logits, sol.bias))
    cold2 = solve(TWO, 0.0021, 0.01)
    assert warm2.objective == pytest.approx(cold2.objective, abs=objective_tolerance(
        warm2, certified_error(warm2, TWO, 0.01)[1]) + objective_tolerance(cold2, certified_error(cold2, TWO, 0.01)[1]))


# ---- Independent check: L-BFGS on the original non-convex (W, H̄, b) problem. ------------------------


def _lbfgs_original(sizes, dim, lam_w, lam_h, lam_b, starts=4, seed=0):
    """Weighted form (one feature column per class, weight n_k): exact for the original problem.

    Returns `(f, W, H, b, tol)`, `tol(q)` the certified tolerance of an invariant `q(W, H, b)` (the first-order
    error the run's own Newton step shows, ×10, plus round-off; tests/_certificate.py)."""
    n = np.asarray(sizes, float)
    K, N = n.size, n.sum()
    pi, nn = jnp.asarray(n / N), jnp.asarray(n)
    nb = K if lam_b is not None else 0

    def unpack(x):
        W = x[: K * dim].reshape(K, dim)
        H = x[K * dim: 2 * K * dim].reshape(dim, K)
        b = x[2 * K * dim:] if nb else jnp.zeros(K)
        return W, H, b

    def objective(x):
        W, H, b = unpack(x)
        Z = W @ H + b[:, None]
        ce = jax.nn.logsumexp(Z, axis=0) - jnp.diagonal(Z)
        value = jnp.dot(pi, ce) + 0.5 * lam_w * jnp.sum(W * W) + 0.5 * lam_h * jnp.dot(nn, jnp.sum(H * H, axis=0))
        if nb:
            value = value + 0.5 * lam_b * jnp.dot(b, b)
        return value

    fg = jax.jit(jax.value_and_grad(objective))
    rng = np.random.default_rng(seed)
    best = None
    for _ in range(starts):
        x0 = 0.3 * rng.standard_normal(2 * K * dim + nb)
        r = scipy.optimize.minimize(lambda x: tuple(np.asarray(v, float) for v in fg(jnp.asarray(x))), x0,
                                    jac=True, method="L-BFGS-B",
                                    options=dict(maxiter=20000, maxfun=40000, ftol=1e-16, gtol=1e-13,
                                                 maxcor=30))
        if best is None or r.fun < best.fun:
            best = r
    W, H, b = (np.asarray(v) for v in unpack(jnp.asarray(best.x)))
    cert = certify(lambda x: np.asarray(fg(jnp.asarray(x))[1], float), best.x)

    def tol(quantity):
        return cert.tolerance(lambda x: quantity(*(np.asarray(v) for v in unpack(jnp.asarray(x)))))

    return float(best.fun), W, H, b, tol


@pytest.mark.parametrize(
    "sizes, lam_w, lam_h, lam_b",
    [
        ([30] * 4 + [12] * 3 + [5] * 3, 0.02, 0.002, 0.05),   # full rank, regularised bias (Nλ_Z ≈ 1.0)
        ([30] * 4 + [12] * 3 + [5] * 3, 0.06, 0.01, None),    # √12 < Nλ_Z ≈ 4.2 < √30: two clusters collapse
    ],
)
def test_against_lbfgs_on_original_problem(sizes, lam_w, lam_h, lam_b):
    K = len(sizes)
    sol = ce_convex_solution(sizes, K + 1, lam_w, lam_h, lam_b)
    assert sol.details["collapsed_classes"] == (() if lam_b is not None else tuple(range(4, 10)))
    value, W, H, b, tol = _lbfgs_original(sizes, K + 1, lam_w, lam_h, lam_b)
    # The objective is second order in the run's error (f − f* ≤ ‖g‖·d ≈ 1e-17): 1e-8 relative is loose.
    assert value == pytest.approx(sol.objective, rel=1e-8)
    # The convex value is a lower bound: value ≥ F* ≥ sol.objective − kkt·d (≈ 1e-21), up to round-off.
    assert value >= sol.objective - 1e-12
    # First-order invariants: the run's certified error (≈ 1e-7), plus FISTA's (certified_error, ≈ 1e-9 in
    # Z̄ — negligible here; added with a generous Lipschitz factor 10(1 + |value|) for H̄ᵀH̄, σ(W) and b,
    # whose collapsed directions FISTA sets to exactly 0).
    z_err, _ = certified_error(sol, sizes, lam_b)
    for invariant, theory in (
        (lambda W, H, b: W @ H, sol.mean_logits),
        (lambda W, H, b: H.T @ H, sol.mean_gram),
        (lambda W, H, b: np.linalg.svd(W, compute_uv=False)[:K], sol.weight_singular_values[0]),
        (lambda W, H, b: b, sol.bias),
    ):
        assert np.abs(invariant(W, H, b) - theory).max() <= tol(invariant) + 10 * z_err * (1 + np.abs(theory).max())
    # The numerical point passes the certificate only approximately (a residual first order in its
    # distance ≈ 1e-7, through U Vᵀ and the dropped singular values: 1e-3 is loose); the exact one tightly.
    n = np.asarray(sizes, float)
    lam_z = math.sqrt(lam_w * lam_h)
    assert kkt_residual(sizes, lam_z, lam_b, W @ H, b if lam_b is not None else None) < 1e-3
    assert sol.details["kkt_residual"] <= 1e-12
    # The same point evaluated twice (jax and numpy): round-off.
    assert sol.objective == pytest.approx(reduced_objective(n, lam_z, lam_b, sol.mean_logits, sol.bias), abs=1e-14)
