"""Analytic global minimum of the cross-entropy UFM (bias-free or with a regularised bias), Hong & Ling.

Hong & Ling (2023), "Neural Collapse for Unconstrained Feature Model under Cross-entropy Loss with
Imbalanced Data" (arXiv 2309.09725), Theorems 3.1(c), 3.2 and Proposition 5.5 — with the corrections
listed in `docs/errata.md` (ids `E-HL1` … `E-HL17`).

Both closed forms are solutions of the convex `K×K` problem of `_reduced_ce` (its docstring states the
problem, the reduction and the factors, in our `W ∈ R^{K×d}` convention): the balanced case here, the two
clusters here with their scalar equations and thresholds in `_two_cluster`. Any other class sizes:
`_convex.convex_solution` (the convex certificate).
"""

from __future__ import annotations

import math

import numpy as np

from .. import _validation as V
from ._reduced_ce import assemble, reduction_dim, softmax_columns
from ._solution import TheorySolution, not_applicable
from ._two_cluster import TwoClusterEquations, block_matrix, ce_two_cluster_thresholds, two_clusters

__all__ = ["ce_balanced_solution", "ce_two_cluster_solution", "ce_two_cluster_thresholds"]

PAPER = "Hong & Ling 2023 (CE UFM, imbalanced data, arXiv 2309.09725)"
_CASE_OF = {"full-rank": "a", "minority-collapse": "b", "minority-zero": "c", "complete-collapse": "d"}
_ERRATA_OF = {
    "full-rank": "E-HL2 (d > 0 is false), E-HL11",
    "minority-collapse": "E-HL4 (certificate constant 1/(N lam_Z)), E-HL5, E-HL11",
    "minority-zero": "E-HL7, E-HL11",
    "complete-collapse": "E-HL6 (v = e^{+m k_B}, m = log(w)/K), E-HL11",
}


def _lambdas(lam_w, lam_h, lam_b) -> tuple[float, float, float | None]:
    return V.positive("lam_w", lam_w), V.positive("lam_h", lam_h), V.finite_positive_or_none("lam_b", lam_b)


# ---- balanced case (Thm 3.1(c), corrected) ------------------------------------------------------------


def _balanced_a(K: int, n: float, lam_z: float) -> float:
    L = K * n * lam_z
    if L >= math.sqrt(n):
        return 0.0
    return math.log(K * math.sqrt(n) / L - K + 1) / K


def ce_balanced_solution(class_sizes, dim: int, lam_w, lam_h, lam_b=None) -> TheorySolution:
    """The global minimum of the balanced cross-entropy UFM (all `n_k = n`, `N = Kn`).

    `Z̄ = a (K I − J)`, `b = 0` for any `λ_b`, with
    `a = (1/K) log(K√n/(Nλ_Z) − K + 1)` if `Nλ_Z < √n`, else `a = 0` (complete collapse, `W = H = 0`);
    objective `log(1 + (K−1)e^{−aK}) + λ_Z √n K(K−1) a`.

    Implements Thm 3.1(c) of Hong & Ling 2023; corrected as in erratum E-HL1 (the printed
    `a = (1/K)log(K/(Nλ_Z) − K + 1)` with threshold `Nλ_Z ≥ K/(K−1)` drops the `D^{1/2}` factor; the
    correct threshold is `Nλ_Z ≥ √n`), and E-HL11 for the factors.

    **Arguments:**

    - `class_sizes`: `n_1..n_K`, all equal and > 0, `K >= 2`.
    - `dim`: `d >= K − 1` (the optimum `Z̄` has rank `K − 1`).
    - `lam_w`, `lam_h`: `λ_W, λ_H > 0`.
    - `lam_b`: `λ_b > 0` (regularised bias) or `None` (bias-free); the solution is the same (`b = 0`).

    **Returns:**

    A `TheorySolution` with `regime` `"full-rank"` (`a > 0`, simplex ETF) or `"complete-collapse"`
    (`a = 0`); `details` holds `a` (and `b = c = d = a`, the block form `B(a, a, a, a) = a(KI − J)`),
    `m = 0`, `L = Nλ_Z`, `threshold_lam_z = 1/(K√n)` and the KKT certificate (`kkt_residual`,
    `certificate_tau`).

    **Raises:** `TheoremNotApplicable` naming `class_sizes` (unequal) or `dim` (`< K − 1`); `ValueError`
    naming any other bad argument.
    """
    n = V.class_sizes("class_sizes", class_sizes)
    K = n.size
    if not np.all(n == n[0]):
        raise not_applicable("class_sizes", n, "the balanced case needs all n_k equal")
    dim = reduction_dim(dim, K)
    lw, lh, lb = _lambdas(lam_w, lam_h, lam_b)
    lam_z = math.sqrt(lw * lh)
    nn = float(n[0])
    a = _balanced_a(K, nn, lam_z)
    Z = a * (K * np.eye(K) - np.ones((K, K)))
    regime = "full-rank" if a > 0 else "complete-collapse"
    source = f"{PAPER}, Thm 3.1(c)+(d); errata E-HL1 (balanced formula and threshold), E-HL11 (factors)"
    details = {
        "a": a,
        "b": a,
        "c": a,
        "d": a,
        "m": 0.0,
        "L": K * nn * lam_z,
        "threshold_lam_z": 1.0 / (K * math.sqrt(nn)),
        "case": "balanced",
    }
    return assemble(Z, np.zeros(K), n, dim, lw, lh, lb, regime, source, details)


# ---- two clusters (Thm 3.2 / Prop. 5.5) ---------------------------------------------------------------


def ce_two_cluster_solution(class_sizes, dim: int, lam_w, lam_h, lam_b=None) -> TheorySolution:
    """The global minimum of the two-cluster imbalanced cross-entropy UFM (Thm 3.2 / Prop. 5.5).

    `Z̄ = B(a, b, c, d)` (eq. 3.4), bias `m[k_B 1_A; −k_A 1_B]`, with `L = Nλ_Z`:
    (a) `L < √n_B`: full rank `K−1`, `t = b/c` the root of `t = f_1(t)/f_2(t)`;
    (b) `√n_B ≤ L < √n_A`, ξ < 0: `k_A b + k_B d = 0` (minority columns identical, nonzero);
    (c) `√n_B ≤ L < √n_A`, ξ ≥ 0: `b = c = d = 0` (minority columns zero, majority a `k_A`-simplex);
    (d) `L ≥ √n_A`: `Z̄ = 0`, `m = log(w)/K` with `(n_A − n_B w)/(k_B + k_A w) = Nλ_b log(w)/K`.
    The scalar equations are those of note §2.4 (eqs. 5.16–5.18, 5.23, 5.32, 5.41, 5.51), solved by
    `_two_cluster.TwoClusterEquations`.

    Implements Thm 3.2 and eq. (3.5) of Hong & Ling 2023; corrected as in errata E-HL2 (`d` may be
    negative in case (a); `L ≤ √n_B` must be strict), E-HL4 (case-(b) certificate `R̄ = (0 ⊕ C_{k_B})/(Nλ_Z)`),
    E-HL5 (`e^{−a+mk_B}` in eq. 5.40), E-HL6 (`v = e^{+mk_B}` in case (d)) and E-HL11 (factor constants).

    **Arguments:**

    - `class_sizes`: length-`K` vector with exactly two distinct values, in any order; the larger value
      is cluster A. Each cluster needs at least two classes (`k_A, k_B >= 2`). If all sizes are equal the
      balanced solution (`ce_balanced_solution`) is returned.
    - `dim`: `d >= K − 1`.
    - `lam_w`, `lam_h`: `λ_W, λ_H > 0`.
    - `lam_b`: `λ_b > 0` (regularised bias) or `None` (bias-free, `b ≡ 0`).

    **Returns:**

    A `TheorySolution` in the caller's class order; `regime` is one of `"full-rank"`, `"minority-collapse"`,
    `"minority-zero"`, `"complete-collapse"`. `details` holds `a, b, c, d, m`, `case` (`"a"`–`"d"`), `L`,
    `k_A, n_A, k_B, n_B`, `cluster_a` (mask), `t` (`b/c` where defined), `xi` (regime test, cases (b)/(c)),
    `thresholds` (`lam_z` of minority and complete collapse), `sigma_A, sigma_B, sigma_s` (singular values
    of `Z̄D^{1/2}`), `p_own_minus_p_other` per class, and the KKT certificate (`kkt_residual`,
    `bias_residual`, `certificate_tau = ‖R‖_2 ≤ 1`); in case (d) with a bias also `w = e^{mK}`.

    **Raises:** `TheoremNotApplicable` naming `class_sizes` (not two clusters of >= 2 classes) or `dim`
    (`< K − 1`); `ValueError` naming any other bad argument.
    """
    n = V.class_sizes("class_sizes", class_sizes)
    if np.all(n == n[0]):
        return ce_balanced_solution(n, dim, lam_w, lam_h, lam_b)
    is_a, k_a, n_a, k_b, n_b = two_clusters(n)
    dim = reduction_dim(dim, n.size)
    lw, lh, lb = _lambdas(lam_w, lam_h, lam_b)
    equations = TwoClusterEquations(k_a, n_a, k_b, n_b, math.sqrt(lw * lh), lb)
    regime, sol = equations.solve()
    a, b, c, d, m = (sol[key] for key in "abcdm")
    Z = block_matrix(is_a, a, b, c, d)
    bias = np.where(is_a, m * k_b, -m * k_a)
    case = _CASE_OF[regime]
    details = {
        "a": a,
        "b": b,
        "c": c,
        "d": d,
        "m": m,
        "case": case,
        "L": equations.L,
        "k_A": k_a,
        "n_A": n_a,
        "k_B": k_b,
        "n_B": n_b,
        "cluster_a": is_a,
        "t": sol.get("t", b / c if c != 0 else float("nan")),
        "xi": equations.xi() if case in ("b", "c") else float("nan"),
        "thresholds": ce_two_cluster_thresholds(k_a, n_a, k_b, n_b, lb, switch=False),
        "sigma_A": math.sqrt(n_a) * abs(k_a * a + k_b * c),
        "sigma_B": math.sqrt(n_b) * abs(k_a * b + k_b * d),
        "sigma_s": math.sqrt(equations.K * (k_a * n_b * b * b + k_b * n_a * c * c)),
        "p_own_minus_p_other": _within_cluster_gaps(Z + bias[:, None], is_a),
    }
    if "w" in sol:
        details["w"] = sol["w"]  # case (d): w = e^{mK}
    source = f"{PAPER}, Thm 3.2({case}) / Prop. 5.5({case}), eq. (3.5); errata {_ERRATA_OF[regime]}"
    return assemble(Z, bias, n, dim, lw, lh, lb, regime, source, details)


def _within_cluster_gaps(logits, is_a) -> np.ndarray:
    """`p_own − p_other` per class, `p_other` the probability of another class of the same cluster."""
    P = softmax_columns(logits)
    K = is_a.size
    other = [np.flatnonzero((is_a == is_a[k]) & (np.arange(K) != k))[0] for k in range(K)]
    return np.diag(P) - P[other, np.arange(K)]
