"""The two-cluster machinery of Hong & Ling (2023): the scalar equations, the block layout, the thresholds.

Hong & Ling (2023), "Neural Collapse for Unconstrained Feature Model under Cross-entropy Loss with
Imbalanced Data" (arXiv 2309.09725), eqs. (3.4)–(3.5), Thm 3.2, Prop. 5.5 and Cor. 3.3 — with the
corrections listed in `docs/errata.md` (ids `E-HLk`). The public solution is
`ufm_jax.theory._hong_ling.ce_two_cluster_solution`; this module is the numbers behind it.

**Two-cluster block form** (eq. 3.4–3.5): cluster A has `k_A` classes of `n_A` samples, cluster B has
`k_B` classes of `n_B < n_A` samples, `N = k_A n_A + k_B n_B`, `L = Nλ_Z`, and

    Z̄ = [ a(k_A I − J) + c k_B I      −b J                    ]      b_vec = m [k_B 1_A; −k_A 1_B]
        [ −c J                        d(k_B I − J) + b k_A I   ]

Regimes: `"full-rank"` (case (a), `L < √n_B`), `"minority-collapse"` (case (b), `√n_B ≤ L < √n_A`, ξ < 0),
`"minority-zero"` (case (c), `√n_B ≤ L < √n_A`, ξ ≥ 0), `"complete-collapse"` (case (d), `L ≥ √n_A`).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import brentq

from .. import _validation as V
from ._solution import not_applicable

REGIMES = ("full-rank", "minority-collapse", "minority-zero", "complete-collapse")
_XTOL = 1e-300
_RTOL = 4 * np.finfo(float).eps


def _grow_until(done, x, step, what: str, limit: int = 2000):
    """Apply `x = step(x)` until `done(x)`: the outer end of a root bracket. `RuntimeError` if it never is."""
    for _ in range(limit):
        if done(x):
            return x
        x = step(x)
    raise RuntimeError(f"Hong & Ling two-cluster equations: no bracket found for {what}.")  # pragma: no cover


class TwoClusterEquations:
    """Scalar equations of note §2.4 for one `(k_A, n_A, k_B, n_B, λ_Z, λ_b)`; `λ_b = None` is bias-free.

    Implements eqs. (5.16)–(5.24), (5.32), (5.41), (5.51) of Hong & Ling 2023 with errata E-HL2, E-HL4,
    E-HL5 and E-HL6; `solve()` returns the regime and the block scalars `a, b, c, d, m` of `B(a, b, c, d)`.
    """

    def __init__(self, k_a, n_a, k_b, n_b, lam_z, lam_b):
        self.ka, self.kb = float(k_a), float(k_b)
        self.na, self.nb = float(n_a), float(n_b)
        self.K = self.ka + self.kb
        self.N = self.ka * self.na + self.kb * self.nb
        self.lam_z, self.lam_b = lam_z, lam_b
        self.L = self.N * lam_z
        self.rho_a = math.sqrt(self.na) / self.L
        self.rho_b = math.sqrt(self.nb) / self.L

    # eq. (5.23): bias scalar as a function of t = b/c
    def m(self, t):
        if self.lam_b is None:
            return 0.0
        ka, kb, na, nb, K = self.ka, self.kb, self.na, self.nb, self.K
        return (self.lam_z / self.lam_b) * (na - nb * t) / math.sqrt(K * (kb * na + ka * nb * t * t))

    def x2(self, t):
        ka, kb, K = self.ka, self.kb, self.K
        return ka / (math.sqrt(K * (kb + ka * self.nb * t * t / self.na)) - kb)

    def g2(self, x):
        return math.log((self.rho_a - 1.0) * (self.ka + self.kb * x) + 1.0) - self.ka * math.log(x)

    def f2(self, t):
        return self.g2(self.x2(t)) - self.K * self.ka * self.m(t)

    # case (a)
    def x1a(self, t):
        ka, kb, K = self.ka, self.kb, self.K
        # = k_B / (√(K(k_A + k_B n_A/(n_B t²))) − k_A), written to be finite as t → 0
        return kb * t / (math.sqrt(K * (ka * t * t + kb * self.na / self.nb)) - ka * t)

    def f1a(self, t):
        x = self.x1a(t)
        g1 = math.log((self.rho_b - 1.0) * (self.ka * x + self.kb) + 1.0) - self.kb * math.log(x)
        return g1 + self.K * self.kb * self.m(t)

    # case (b)
    def den_b(self, t):
        ka, kb, K = self.ka, self.kb, self.K
        return math.sqrt(K * (ka * self.nb + kb * self.na / (t * t))) / self.L - ka

    def f1b(self, t):
        # x_1^b = k_B / den_b(t) = k_B L t / (√(K(k_A n_B t² + k_B n_A)) − k_A L t), finite as t → 0
        ka, kb, K = self.ka, self.kb, self.K
        den = math.sqrt(K * (ka * self.nb * t * t + kb * self.na)) - ka * self.L * t
        if den <= 0:
            return -math.inf
        return -kb * math.log(kb * self.L * t / den) + K * kb * self.m(t)

    def t_singular_b(self):
        """`t` where the denominator of `x_1^b` vanishes (`∞` if it never does)."""
        ka, kb, K = self.ka, self.kb, self.K
        q = ka * ka * self.L**2 - K * ka * self.nb
        return math.inf if q <= 0 else math.sqrt(K * kb * self.na / q)

    def t_star(self):
        """Root of `f_2` (eqs. 5.19–5.20): `0` if `η = f_2(0) >= 0`."""
        if self.f2(0.0) >= 0:
            return 0.0
        hi = _grow_until(lambda h: self.f2(h) > 0, 1.0, lambda h: 2.0 * h, "t* (the root of f_2)")
        return brentq(self.f2, 0.0, hi, xtol=_XTOL, rtol=_RTOL, maxiter=500)

    def xi(self):
        """The regime test ξ(λ_Z, λ_b) of eq. (5.24) (`−∞` when `t* = 0`); `ξ < 0` ⇔ case (b)."""
        t = self.t_star()
        if t == 0.0:
            return -math.inf
        return self.kb * math.exp(min(700.0, -self.K * self.m(t))) - self.den_b(t)

    def _root_decreasing(self, phi, lo, cap=math.inf):
        """Root of `phi`, strictly decreasing on `(lo, cap)`, positive at `lo⁺` and `→ −∞`/negative later."""
        hi = max(2.0 * lo, 1e-3)
        if cap < math.inf:
            hi = min(hi, 0.5 * (lo + cap))
        for _ in range(4000):
            if phi(hi) < 0:
                break
            if cap < math.inf and 2.0 * hi >= cap:
                hi = 0.5 * (hi + cap)
            else:
                hi *= 2.0
        else:  # pragma: no cover - defensive
            raise RuntimeError("Hong & Ling two-cluster equations: no sign change for the case-(b) root.")
        return brentq(phi, lo, hi, xtol=_XTOL, rtol=_RTOL, maxiter=500)

    def _lo(self):
        t = self.t_star()
        return t if t > 0 else 1e-200

    def solve_a(self):
        """Case (a): `t = f_1(t)/f_2(t)`; `c = f_2/K`, `b = tc`, `a = c + Km + log x_2`, `d = b − Km + log x_1`."""

        def phi(s):  # in log t, for conditioning
            t = math.exp(s)
            return self.f1a(t) - t * self.f2(t)

        lo = self._lo()
        s_lo = math.log(lo)
        if phi(s_lo) <= 0:  # pragma: no cover - excluded by Prop. 5.5(a)
            raise RuntimeError("Hong & Ling two-cluster equations, case (a): no root with f_1, f_2 > 0.")
        s_hi = _grow_until(lambda s: phi(s) < 0, s_lo + 1.0, lambda s: s + 1.0 + (s - s_lo),
                           "the case-(a) root")
        s = brentq(phi, s_lo, s_hi, xtol=1e-15, rtol=_RTOL, maxiter=500)
        t = math.exp(s)
        m = self.m(t)
        c = self.f2(t) / self.K
        b = t * c
        a = c + self.K * m + math.log(self.x2(t))
        d = b - self.K * m + math.log(self.x1a(t))
        return dict(a=a, b=b, c=c, d=d, m=m, t=t)

    def solve_b(self):
        """Case (b): `t = f_1^b(t)/f_2(t)`; `c = f_2/K`, `b = f_1^b/K`, `d = −k_A b/k_B`; `None` if no root."""
        lo = self._lo()
        if not self.f1b(lo) > 0:
            return None
        cap = self.t_singular_b()

        def phi(t):
            return self.f1b(t) - t * self.f2(t)

        t = self._root_decreasing(phi, lo, cap)
        m = self.m(t)
        c = self.f2(t) / self.K
        b = self.f1b(t) / self.K
        d = -self.ka * b / self.kb
        a = c + self.K * m + math.log(self.x2(t))
        return dict(a=a, b=b, c=c, d=d, m=m, t=t)

    def _g2_log(self, u):
        """`g_2(e^u)`, overflow-free: `log[(ρ_A−1)k_A + 1 + (ρ_A−1)k_B e^u] − k_A u`."""
        r = self.rho_a - 1.0
        return float(np.logaddexp(math.log(r * self.ka + 1.0), math.log(r * self.kb) + u)) - self.ka * u

    def _log_x_of_m(self, m):
        """E1 of case (c): `u = log x` with `g_2(x) = k_A K m` (`g_2` decreasing, so a unique root)."""
        target = self.ka * self.K * m
        lo = _grow_until(lambda u: self._g2_log(u) >= target, -1.0, lambda u: 2.0 * u, "x(m) of case (c)")
        hi = _grow_until(lambda u: self._g2_log(u) <= target, 1.0, lambda u: 2.0 * u, "x(m) of case (c)")
        return brentq(lambda u: self._g2_log(u) - target, lo, hi, xtol=1e-15, rtol=_RTOL, maxiter=500)

    def solve_c(self):
        """Case (c): `Z̄ = B(a, 0, 0, 0)`; E1 `g_2(e^{a−mK}) = k_A K m`, E2 `Nλ_b m = n_A c_P − n_B b_P`."""
        ka, kb, K, na, nb = self.ka, self.kb, self.K, self.na, self.nb
        if self.lam_b is None:
            return dict(a=self._log_x_of_m(0.0), b=0.0, c=0.0, d=0.0, m=0.0)

        def e2(m):
            u = self._log_x_of_m(m)  # u = a − mK
            a = u + m * K
            # c_P = 1/(k_B + e^{−u}(k_A − 1 + e^{k_A a})), b_P = 1/(k_A + k_B e^{−mK}), in logs
            t_c = float(np.logaddexp(math.log(ka - 1.0), ka * a)) - u
            c_p = math.exp(-float(np.logaddexp(math.log(kb), t_c)))
            b_p = math.exp(-float(np.logaddexp(math.log(ka), math.log(kb) - m * K)))
            return self.N * self.lam_b * m - (na * c_p - nb * b_p)

        bound = na / (self.N * self.lam_b) * (1 + 1e-12)
        m = brentq(e2, -bound, bound, xtol=_XTOL, rtol=_RTOL, maxiter=500)
        return dict(a=self._log_x_of_m(m) + m * K, b=0.0, c=0.0, d=0.0, m=m)

    def solve_d(self):
        """Case (d): `Z̄ = 0`, `m = log(w)/K` with `(n_A − n_B w)/(k_B + k_A w) = Nλ_b log(w)/K` (eq. 5.51)."""
        if self.lam_b is None:
            return dict(a=0.0, b=0.0, c=0.0, d=0.0, m=0.0)
        ka, kb, K, na, nb = self.ka, self.kb, self.K, self.na, self.nb

        def eq(w):
            return (na - nb * w) / (kb + ka * w) - self.N * self.lam_b * math.log(w) / K

        w = brentq(eq, 1.0, na / nb, xtol=_XTOL, rtol=_RTOL, maxiter=500)
        return dict(a=0.0, b=0.0, c=0.0, d=0.0, m=math.log(w) / K, w=w)

    def solve(self):
        if self.L >= math.sqrt(self.na):
            return "complete-collapse", self.solve_d()
        if self.L < math.sqrt(self.nb):
            return "full-rank", self.solve_a()
        sol = self.solve_b()
        if sol is not None:
            return "minority-collapse", sol
        return "minority-zero", self.solve_c()


def block_matrix(is_a, a, b, c, d):
    """`B(a, b, c, d)` (eq. 3.4) laid out in the caller's class order (`is_a`: mask of cluster A)."""
    ka, kb = int(is_a.sum()), int((~is_a).sum())
    K = is_a.size
    Z = np.empty((K, K))
    col_a = np.where(is_a, -a, -c)  # rows of an A column: −a on other A rows, −c on B rows
    col_b = np.where(is_a, -b, -d)  # rows of a B column: −b on A rows, −d on other B rows
    Z[:, is_a] = col_a[:, None]
    Z[:, ~is_a] = col_b[:, None]
    idx = np.arange(K)
    Z[idx[is_a], idx[is_a]] = a * (ka - 1) + c * kb
    Z[idx[~is_a], idx[~is_a]] = d * (kb - 1) + b * ka
    return Z


def _cluster_counts(k_a, k_b) -> tuple[int, int]:
    """`(k_A, k_B)` as ints; Thm 3.2's condition `k_A, k_B >= 2` else `TheoremNotApplicable`."""
    k_a, k_b = V.integer("k_a", k_a, 1), V.integer("k_b", k_b, 1)
    for name, k in (("k_a", k_a), ("k_b", k_b)):
        if k < 2:
            raise not_applicable(name, k, "Hong & Ling's Thm 3.2 needs k_A >= 2 and k_B >= 2 classes per "
                                 "cluster; a cluster with a single class has no within-cluster subspace")
    return k_a, k_b


def two_clusters(n: np.ndarray):
    """`(is_a, k_A, n_A, k_B, n_B)` of validated class sizes; `TheoremNotApplicable` unless they form two
    clusters of at least two classes each (the larger size is cluster A)."""
    values = np.unique(n)
    if values.size != 2:
        raise not_applicable("class_sizes", n, "the two-cluster theorem needs exactly two distinct class "
                             f"sizes (found {values.size})")
    n_b, n_a = float(values[0]), float(values[1])
    is_a = n == n_a
    k_a, k_b = int(is_a.sum()), int((~is_a).sum())
    if k_a < 2 or k_b < 2:
        raise not_applicable(
            "class_sizes", n, f"Hong & Ling's Thm 3.2 needs k_A >= 2 and k_B >= 2 classes per cluster (got "
            f"k_A={k_a} of size {n_a:g}, k_B={k_b} of size {n_b:g}); a cluster with a single class has no "
            "within-cluster subspace and is not covered")
    return is_a, k_a, n_a, k_b, n_b


# ---- thresholds ---------------------------------------------------------------------------------------


def _bias_free_switch_1d(k_a, n_a, k_b, n_b) -> float:
    """Bias-free (b)/(c) switch `L* = Nλ*` from the single equation of note §2.3(e)/§2.4 (E-HL8)."""
    K = k_a + k_b

    def h(L):
        y = math.sqrt(k_b * K / (1.0 - k_a * n_b / (K * L * L)))
        x = k_a / (y - k_b)
        return math.log((math.sqrt(n_a) / L - 1.0) * (k_a + k_b * x) + 1.0) - k_a * math.log(x)

    lo, hi = math.sqrt(n_b) * (1 + 1e-13), math.sqrt(n_a) * (1 - 1e-13)
    return brentq(h, lo, hi, xtol=_XTOL, rtol=_RTOL, maxiter=500)


def _switch_from_xi(k_a, n_a, k_b, n_b, lam_b) -> float:
    """`L*` where the regime test ξ(λ_Z, λ_b) of eq. (5.24) changes sign: case (b) below, case (c) above."""
    N = k_a * n_a + k_b * n_b
    lo, hi = math.sqrt(n_b) * (1 + 1e-12), math.sqrt(n_a) * (1 - 1e-14)

    def squashed_xi(L):
        # ξ = −∞ where t* = 0 (case (b); ξ → −∞ continuously as t* ↓ 0). ξ/(1 + |ξ|) has the same sign and
        # roots and stays finite and continuous, as brentq's interpolation steps need.
        xi = TwoClusterEquations(k_a, n_a, k_b, n_b, L / N, lam_b).xi()
        return -1.0 if xi == -math.inf else xi / (1.0 + abs(xi))

    if squashed_xi(lo) >= 0:
        return math.sqrt(n_b)
    if squashed_xi(hi) < 0:  # pragma: no cover - excluded by Prop. 5.5(c)
        return math.sqrt(n_a)
    return brentq(squashed_xi, lo, hi, xtol=_XTOL, rtol=_RTOL, maxiter=500)


def ce_two_cluster_thresholds(k_a, n_a, k_b, n_b, lam_b=None, *, switch: bool = True) -> dict:
    """The `λ_Z` thresholds of the two-cluster CE UFM (Thm 3.2, Prop. 5.5(e)).

    Minority collapse iff `Nλ_Z ≥ √n_B`; complete collapse iff `Nλ_Z ≥ √n_A` (any `λ_b`, `k_A`, `k_B`);
    between them case (b) for `λ_Z < λ*` and case (c) for `λ_Z > λ*`. Bias-free, `L* = Nλ*` solves
    `log[(√n_A/L − 1)(k_A + k_B x) + 1] = k_A log x`, `x = k_A/(y − k_B)`, `y = √(k_B K/(1 − k_A n_B/(K L²)))`;
    for finite `λ_b` (no closed form in the paper) `λ*` is where the regime test ξ(λ_Z, λ_b) of eq. (5.24)
    changes sign, found by `brentq`.

    Implements Thm 3.2(b)–(e) of Hong & Ling 2023; corrected as in errata E-HL3 (thresholds are `√n/N`,
    not `√(n/N)`) and E-HL8 (the λ* equation at L1006/L1225 uses `λ_Z` where `λ*` is meant).

    **Arguments:**

    - `k_a, n_a`: classes and samples per class of the majority cluster A.
    - `k_b, n_b`: the same for the minority cluster B (`n_b < n_a`).
    - `lam_b`: `λ_b > 0` or `None` (bias-free).
    - `switch`: compute the (b)/(c) switch (default `True`).

    **Returns:**

    A dict with `minority_collapse` (`√n_B/N`), `complete_collapse` (`√n_A/N`) and, if `switch`,
    `minority_zero` (`λ*`, the (b)/(c) switch); bias-free also `minority_zero_xi` (the same switch as the
    sign change of ξ, a cross-check of the 1-D equation).

    **Raises:** `TheoremNotApplicable` (naming `k_a` or `k_b`) if a cluster has fewer than two classes;
    `ValueError` naming any other bad argument (`n_a <= n_b` included).
    """
    k_a, k_b = _cluster_counts(k_a, k_b)
    n_a, n_b = V.positive("n_a", n_a), V.positive("n_b", n_b)
    if not n_a > n_b:
        raise V.fail("n_a", n_a, f"expected n_a > n_b = {n_b:g} (cluster A is the majority)")
    lb = V.finite_positive_or_none("lam_b", lam_b)
    N = k_a * n_a + k_b * n_b
    out = {"minority_collapse": math.sqrt(n_b) / N, "complete_collapse": math.sqrt(n_a) / N}
    if switch:
        by_xi = _switch_from_xi(k_a, n_a, k_b, n_b, lb) / N
        if lb is None:
            out["minority_zero"] = _bias_free_switch_1d(k_a, n_a, k_b, n_b) / N
            out["minority_zero_xi"] = by_xi
        else:
            out["minority_zero"] = by_xi
    return out


def minority_collapse_ratio(lam_z, k_a, k_b, n_b) -> float:
    """The imbalance ratio `r = n_A/n_B` above which the minority classes collapse (Cor. 3.3).

    `r ≥ (1/k_A)[1/(λ_Z √n_B) − k_B]` (⇔ `Nλ_Z ≥ √n_B`).

    Implements Corollary 3.3 of Hong & Ling 2023; corrected as in erratum E-HL9 (the proof at L1789
    prints `1/√(n_B λ_Z)`; the statement's `1/(λ_Z √n_B)` is right).

    **Arguments:**

    - `lam_z`: `λ_Z = √(λ_W λ_H) > 0`.
    - `k_a`, `k_b`: classes in the majority and minority clusters (each `>= 2`).
    - `n_b`: samples per minority class.

    **Returns:** the threshold ratio `r` (a float; minority collapse iff `n_A/n_B ≥ r`).
    """
    k_a, k_b = _cluster_counts(k_a, k_b)
    return (1.0 / (V.positive("lam_z", lam_z) * math.sqrt(V.positive("n_b", n_b))) - k_b) / k_a


def complete_collapse_ratio(lam_z, k_a, k_b, n_b) -> float:
    """The imbalance ratio `r = n_A/n_B` from which on everything collapses (`Z̄ = 0`; from Thm 3.2(d)).

    Complete collapse holds iff `(k_A n_A + k_B n_B) λ_Z ≥ √n_A`, i.e. with `s = √n_A` iff
    `k_A λ_Z s² − s + k_B n_B λ_Z ≥ 0`: `s ≤ s₋` or `s ≥ s₊`, the roots
    `s± = [1 ± √(1 − 4 k_A k_B n_B λ_Z²)]/(2 k_A λ_Z)`. This returns `max(1, s₊²/n_B)`, `1.0` when the
    discriminant is negative (complete collapse for every `r`). Complete collapse also holds on the
    window `1 ≤ r ≤ s₋²/n_B` when `s₋ > √n_B` (possible only for `k_B > k_A`): the returned ratio is where
    the last collapsed interval begins, not the only one.

    Implements Thm 3.2(d) of Hong & Ling 2023 (threshold `√n_A/N`, erratum E-HL3).

    **Arguments:**

    - `lam_z`: `λ_Z > 0`; `k_a`, `k_b`: classes per cluster (each `>= 2`); `n_b`: samples per minority class.

    **Returns:** the threshold ratio `r` (complete collapse for every `n_A/n_B ≥ r`).
    """
    k_a, k_b = _cluster_counts(k_a, k_b)
    lam_z, n_b = V.positive("lam_z", lam_z), V.positive("n_b", n_b)
    disc = 1.0 - 4.0 * k_a * k_b * n_b * lam_z * lam_z
    if disc < 0:
        return 1.0
    s = (1.0 + math.sqrt(disc)) / (2.0 * k_a * lam_z)
    return max(1.0, s * s / n_b)
