"""Analytic global minimum of the cross-entropy UFM (bias-free or with a regularised bias).

Hong & Ling (2023), "Neural Collapse for Unconstrained Feature Model under Cross-entropy Loss with
Imbalanced Data" (arXiv 2309.09725), Theorems 3.1(c), 3.2, Corollary 3.3 and Proposition 5.5 — with the
corrections listed in `docs/errata.md` (ids `E-HL1` … `E-HL17`).

**Problem** (`ufm_jax.Problem` with `loss="ce"`, depth 1, `bias="none"` or `"regularised"`):

    min_{W, H, b}  (1/N) Σ_i CE(W h_i + b, y_i) + (λ_W/2)‖W‖_F² + (λ_H/2)‖H‖_F² + (λ_b/2)‖b‖²

with `W ∈ R^{K×d}`. The paper writes `W ∈ R^{d×K}` and logits `Wᵀh`; its `W` is our `Wᵀ`. Everything
below is stated in our convention. With `λ_Z = √(λ_W λ_H)`, `D = diag(n)` and `Z̄ = W H̄` (column `k`: the
bias-free logit of class `k`), the problem reduces to the convex `K×K` problem

    min_{Z̄, b}  Σ_k (n_k/N) CE(z̄_k + b, e_k) + λ_Z ‖Z̄ D^{1/2}‖_* + (λ_b/2)‖b‖²

(valid for `d >= K − 1`, the largest rank `Z̄` can have since `1ᵀZ̄ = 0` at the optimum), and the factors
follow from the SVD `Z̄ D^{1/2} = Ū Σ̄ V̄ᵀ` as (erratum E-HL11)

    W = (λ_H/λ_W)^{1/4} Ū Σ̄^{1/2} Qᵀ,   H̄ = (λ_W/λ_H)^{1/4} Q Σ̄^{1/2} V̄ᵀ D^{-1/2},   H = H̄ Y,

for any `Q ∈ R^{d×K}` with orthonormal columns.

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
from scipy.special import logsumexp

from .. import _validation as V
from ._solution import TheoremNotApplicable, TheorySolution, padded_singular_values

PAPER = "Hong & Ling 2023 (CE UFM, imbalanced data, arXiv 2309.09725)"
REGIMES = ("full-rank", "minority-collapse", "minority-zero", "complete-collapse")
_CASE_OF = {"full-rank": "a", "minority-collapse": "b", "minority-zero": "c", "complete-collapse": "d"}
_ERRATA_OF = {
    "full-rank": "E-HL2 (d > 0 is false), E-HL11",
    "minority-collapse": "E-HL4 (certificate constant 1/(N lam_Z)), E-HL5, E-HL11",
    "minority-zero": "E-HL7, E-HL11",
    "complete-collapse": "E-HL6 (v = e^{+m k_B}, m = log(w)/K), E-HL11",
}
_XTOL = 1e-300
_RTOL = 4 * np.finfo(float).eps


# ---- validation -------------------------------------------------------------------------------------


def _sizes(class_sizes) -> np.ndarray:
    n = np.atleast_1d(np.asarray(class_sizes, dtype=np.float64))
    if n.ndim != 1 or n.size < 2:
        raise ValueError(f"class_sizes={class_sizes!r} is not allowed: expected K >= 2 class sizes.")
    if not np.all(np.isfinite(n)) or np.any(n <= 0):
        raise ValueError(f"class_sizes={class_sizes!r} is not allowed: every value must be finite and > 0.")
    return n


def _lam(name: str, value, *, allow_none: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    arr = np.atleast_1d(np.asarray(value, dtype=np.float64))
    if arr.size != 1:
        raise ValueError(f"{name}={value!r} is not allowed: Hong & Ling 2023 covers one layer (one number).")
    lam = float(arr[0])
    if not math.isfinite(lam) or lam <= 0:
        raise ValueError(f"{name}={value!r} is not allowed: expected a finite number > 0.")
    return lam


def _check_dim(dim, num_classes: int) -> int:
    V.integer("dim", dim, 1)
    if dim < max(1, num_classes - 1):
        raise TheoremNotApplicable(
            f"dim={dim!r} is not allowed: expected an integer >= K - 1 = {num_classes - 1} (the optimal "
            "mean logits have rank <= K - 1, so the convex reformulation is exact for d >= K - 1)."
        )
    return int(dim)


# ---- generic pieces: objective, factor geometry, KKT certificate --------------------------------------


def _reduced_objective(Z, bias, n, lam_z, lam_b) -> float:
    """`Σ_k (n_k/N) CE(z̄_k + b, e_k) + λ_Z ‖Z̄ D^{1/2}‖_* + (λ_b/2)‖b‖²` (no bias term if `λ_b = None`)."""
    logits = Z + bias[:, None]
    ce = logsumexp(logits, axis=0) - np.diag(logits)
    value = float(np.sum(n / n.sum() * ce))
    value += lam_z * float(np.sum(np.linalg.svd(Z * np.sqrt(n)[None, :], compute_uv=False)))
    if lam_b is not None:
        value += 0.5 * lam_b * float(bias @ bias)
    return value


def _softmax_columns(logits):
    e = np.exp(logits - logits.max(axis=0, keepdims=True))
    return e / e.sum(axis=0, keepdims=True)


def _kkt(Z, bias, n, lam_z, lam_b) -> dict:
    """Convex KKT certificate of the reduced problem (Lemma 5.2 / Cor. 5.3; note §1.5).

    `G = (I − P̄) D^{1/2} / (N λ_Z)` must equal `U Vᵀ + R` with `UᵀR = 0`, `RV = 0`, `‖R‖_2 ≤ 1`, and
    `(I − P̄) n / N = λ_b b`. Returns the residuals and `tau = ‖R‖_2`.
    """
    N = n.sum()
    K = n.size
    P = _softmax_columns(Z + bias[:, None])
    M = Z * np.sqrt(n)[None, :]
    U, s, Vt = np.linalg.svd(M)
    r = int(np.sum(s > 1e-9 * max(1.0, s[0] if s.size else 0.0)))
    Ur, Vr = U[:, :r], Vt[:r].T
    G = (np.eye(K) - P) * np.sqrt(n)[None, :] / (N * lam_z)
    R = G - Ur @ Vr.T
    res = max(float(np.abs(Ur.T @ R).max(initial=0.0)), float(np.abs(R @ Vr).max(initial=0.0)))
    out = {"kkt_rank": r, "kkt_residual": res, "certificate_tau": float(np.linalg.norm(R, 2))}
    if lam_b is not None:
        out["bias_residual"] = float(np.abs((np.eye(K) - P) @ n / N - lam_b * bias).max())
    else:
        out["bias_residual"] = 0.0
    return out


def _svd(M):
    """Full SVD with round-off singular values (`< 1e-12 σ_max`; exact zeros in theory) set to 0."""
    U, s, Vt = np.linalg.svd(M)
    if s.size and s[0] > 0:
        s = np.where(s < 1e-12 * s[0], 0.0, s)
    return U, s, Vt


def _assemble(Z, bias, n, dim, lam_w, lam_h, lam_b, regime, source, details) -> TheorySolution:
    """Objective, `H̄ᵀH̄` and singular values from `Z̄` via the factorisation of note §1.6 (E-HL11)."""
    K = n.size
    lam_z = math.sqrt(lam_w * lam_h)
    M = Z * np.sqrt(n)[None, :]
    _, s, Vt = _svd(M)
    inv_sqrt_n = 1.0 / np.sqrt(n)
    gram = math.sqrt(lam_w / lam_h) * (inv_sqrt_n[:, None] * ((Vt.T * s[None, :]) @ Vt) * inv_sqrt_n[None, :])
    gram = 0.5 * (gram + gram.T)
    sv_w = padded_singular_values((lam_h / lam_w) ** 0.25 * np.sqrt(s), min(K, dim))
    sv_h = padded_singular_values(np.sqrt(np.clip(np.linalg.eigvalsh(gram), 0.0, None)), min(dim, K))
    details = dict(details)
    details.update(_kkt(Z, bias, n, lam_z, lam_b))
    details.setdefault("lam_z", lam_z)
    details["nuclear_norm"] = float(np.sum(s))  # ‖Z̄D^{1/2}‖_*; λ_W‖W‖² = λ_H‖H‖² = λ_Z × this
    return TheorySolution(
        objective=_reduced_objective(Z, bias, n, lam_z, lam_b),
        regime=regime,
        mean_gram=gram,
        mean_logits=Z,
        bias=bias,
        weight_singular_values=(sv_w,),
        product_singular_values=sv_w.copy(),
        mean_singular_values=sv_h,
        source=source,
        details=details,
    )


def ce_factors(mean_logits, class_sizes, dim: int, lam_w, lam_h):
    """One global minimiser `(W, H̄)` with `W H̄ = Z̄`, from the mean logits (note §1.6, erratum E-HL11).

    `W = (λ_H/λ_W)^{1/4} Ū Σ̄^{1/2} Qᵀ`, `H̄ = (λ_W/λ_H)^{1/4} Q Σ̄^{1/2} V̄ᵀ D^{-1/2}` with
    `Z̄ D^{1/2} = Ū Σ̄ V̄ᵀ` and `Q = [I_K; 0] ∈ R^{d×K}` (for `d < K`, the first `d` singular directions;
    exact when `rank Z̄ <= d`). Implements Thm 3.1(d) of Hong & Ling 2023; corrected as in erratum E-HL11
    (the printed `W = Σ̄^{1/2}Ūᵀ`, `H̄ = Σ̄^{1/2}V̄ᵀD^{-1/2}` drop the `(λ_H/λ_W)^{±1/4}` constants).

    **Arguments:**

    - `mean_logits`: `Z̄`, shape `(K, K)`.
    - `class_sizes`: `n_1..n_K`.
    - `dim`: `d`.
    - `lam_w`, `lam_h`: `λ_W, λ_H > 0`.

    **Returns:** `(W, H̄)` with shapes `(K, d)` and `(d, K)`; every feature of class `k` equals `H̄[:, k]`.
    """
    Z = np.asarray(mean_logits, dtype=np.float64)
    n = _sizes(class_sizes)
    K = n.size
    lw, lh = _lam("lam_w", lam_w), _lam("lam_h", lam_h)
    U, s, Vt = _svd(Z * np.sqrt(n)[None, :])
    r = min(K, int(dim))
    W = np.zeros((K, int(dim)))
    Hbar = np.zeros((int(dim), K))
    W[:, :r] = (lh / lw) ** 0.25 * U[:, :r] * np.sqrt(s[:r])[None, :]
    Hbar[:r, :] = (lw / lh) ** 0.25 * (np.sqrt(s[:r])[:, None] * Vt[:r]) / np.sqrt(n)[None, :]
    return W, Hbar


# ---- balanced case (Thm 3.1(c), corrected) ------------------------------------------------------------


def _balanced_a(K: int, n: float, lam_z: float) -> float:
    N = K * n
    L = N * lam_z
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

    - `class_sizes`: `n_1..n_K`, all equal and > 0, `K >= 2` (else `ValueError`).
    - `dim`: `d >= K − 1` (the optimum `Z̄` has rank `K − 1`), else `ValueError`.
    - `lam_w`, `lam_h`: `λ_W, λ_H > 0`.
    - `lam_b`: `λ_b > 0` (regularised bias) or `None` (bias-free); the solution is the same (`b = 0`).

    **Returns:**

    A `TheorySolution` with `regime` `"full-rank"` (`a > 0`, simplex ETF) or `"complete-collapse"`
    (`a = 0`); `details` holds `a` (and `b = c = d = a`, the block form `B(a, a, a, a) = a(KI − J)`), `m = 0`, `L = Nλ_Z`,
    `threshold_lam_z = 1/(K√n)` and the KKT certificate (`kkt_residual`, `certificate_tau`).
    """
    n = _sizes(class_sizes)
    K = n.size
    if not np.all(n == n[0]):
        raise TheoremNotApplicable(f"class_sizes={class_sizes!r} is not allowed: the balanced case needs "
                                   "all n_k equal.")
    dim = _check_dim(dim, K)
    lw, lh = _lam("lam_w", lam_w), _lam("lam_h", lam_h)
    lb = _lam("lam_b", lam_b, allow_none=True)
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
    return _assemble(Z, np.zeros(K), n, dim, lw, lh, lb, regime, source, details)


# ---- two clusters (Thm 3.2 / Prop. 5.5) ---------------------------------------------------------------


class _TwoCluster:
    """Scalar equations of note §2.4 for one `(k_A, n_A, k_B, n_B, λ_Z, λ_b)`; `λ_b = None` is bias-free."""

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
        hi = 1.0
        while self.f2(hi) <= 0:
            hi *= 2.0
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
            raise RuntimeError("Hong & Ling root-finder: no sign change found.")
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
            raise RuntimeError("Hong & Ling case (a): no root with f_1, f_2 > 0.")
        s_hi = s_lo + 1.0
        while phi(s_hi) >= 0:
            s_hi += 1.0 + (s_hi - s_lo)
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
        lo, hi = -1.0, 1.0
        while self._g2_log(lo) < target:
            lo = 2.0 * lo
        while self._g2_log(hi) > target:
            hi = 2.0 * hi
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


def _block_matrix(is_a, a, b, c, d):
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


def _two_clusters(n: np.ndarray):
    values = np.unique(n)
    if values.size != 2:
        raise TheoremNotApplicable(
            f"class_sizes={n.tolist()!r} is not allowed: the two-cluster theorem needs exactly two distinct "
            f"class sizes (found {values.size})."
        )
    n_b, n_a = float(values[0]), float(values[1])
    is_a = n == n_a
    k_a, k_b = int(is_a.sum()), int((~is_a).sum())
    if k_a < 2 or k_b < 2:
        raise TheoremNotApplicable(
            f"class_sizes={n.tolist()!r} is not allowed: Hong & Ling's Thm 3.2 needs k_A >= 2 and k_B >= 2 "
            f"classes per cluster (got k_A={k_a} of size {n_a:g}, k_B={k_b} of size {n_b:g}); a cluster "
            "with a single class has no within-cluster subspace and is not covered."
        )
    return is_a, k_a, n_a, k_b, n_b


def ce_two_cluster_solution(class_sizes, dim: int, lam_w, lam_h, lam_b=None) -> TheorySolution:
    """The global minimum of the two-cluster imbalanced cross-entropy UFM (Thm 3.2 / Prop. 5.5).

    `Z̄ = B(a, b, c, d)` (eq. 3.4), bias `m[k_B 1_A; −k_A 1_B]`, with `L = Nλ_Z`:
    (a) `L < √n_B`: full rank `K−1`, `t = b/c` the root of `t = f_1(t)/f_2(t)`;
    (b) `√n_B ≤ L < √n_A`, ξ < 0: `k_A b + k_B d = 0` (minority columns identical, nonzero);
    (c) `√n_B ≤ L < √n_A`, ξ ≥ 0: `b = c = d = 0` (minority columns zero, majority a `k_A`-simplex);
    (d) `L ≥ √n_A`: `Z̄ = 0`, `m = log(w)/K` with `(n_A − n_B w)/(k_B + k_A w) = Nλ_b log(w)/K`.
    The scalar equations are those of note §2.4 (eqs. 5.16–5.18, 5.23, 5.32, 5.41, 5.51).

    Implements Thm 3.2 and eq. (3.5) of Hong & Ling 2023; corrected as in errata E-HL2 (`d` may be
    negative in case (a); `L ≤ √n_B` must be strict), E-HL4 (case-(b) certificate `R̄ = (0 ⊕ C_{k_B})/(Nλ_Z)`),
    E-HL5 (`e^{−a+mk_B}` in eq. 5.40), E-HL6 (`v = e^{+mk_B}` in case (d)) and E-HL11 (factor constants).

    **Arguments:**

    - `class_sizes`: length-`K` vector with exactly two distinct values, in any order; the larger value
      is cluster A. Each cluster needs at least two classes (`k_A, k_B >= 2`), else `ValueError`. If all
      sizes are equal the balanced solution (`ce_balanced_solution`) is returned.
    - `dim`: `d >= K − 1`, else `ValueError`.
    - `lam_w`, `lam_h`: `λ_W, λ_H > 0`.
    - `lam_b`: `λ_b > 0` (regularised bias) or `None` (bias-free, `b ≡ 0`).

    **Returns:**

    A `TheorySolution` in the caller's class order; `regime` is one of `"full-rank"`, `"minority-collapse"`,
    `"minority-zero"`, `"complete-collapse"`. `details` holds `a, b, c, d, m`, `case` (`"a"`–`"d"`), `L`,
    `k_A, n_A, k_B, n_B`, `cluster_a` (mask), `t` (`b/c` where defined), `xi` (regime test, cases (b)/(c)),
    `thresholds` (`lam_z` of minority and complete collapse), `sigma_A, sigma_B, sigma_s` (singular values
    of `Z̄D^{1/2}`), `p_own_minus_p_other` per class, and the KKT certificate (`kkt_residual`,
    `bias_residual`, `certificate_tau = ‖R‖_2 ≤ 1`); in case (d) with a bias also `w = e^{mK}`.
    """
    n = _sizes(class_sizes)
    K = n.size
    if np.all(n == n[0]):
        return ce_balanced_solution(n, dim, lam_w, lam_h, lam_b)
    is_a, k_a, n_a, k_b, n_b = _two_clusters(n)
    dim = _check_dim(dim, K)
    lw, lh = _lam("lam_w", lam_w), _lam("lam_h", lam_h)
    lb = _lam("lam_b", lam_b, allow_none=True)
    lam_z = math.sqrt(lw * lh)
    tc = _TwoCluster(k_a, n_a, k_b, n_b, lam_z, lb)
    regime, sol = tc.solve()
    a, b, c, d, m = (sol[key] for key in "abcdm")
    Z = _block_matrix(is_a, a, b, c, d)
    bias = np.where(is_a, m * k_b, -m * k_a)
    P = _softmax_columns(Z + bias[:, None])
    own = np.diag(P)
    other = np.array([P[np.flatnonzero((is_a == is_a[k]) & (np.arange(K) != k))[0], k] for k in range(K)])
    case = _CASE_OF[regime]
    details = {
        "a": a,
        "b": b,
        "c": c,
        "d": d,
        "m": m,
        "case": case,
        "L": tc.L,
        "k_A": k_a,
        "n_A": n_a,
        "k_B": k_b,
        "n_B": n_b,
        "cluster_a": is_a,
        "t": sol.get("t", b / c if c != 0 else float("nan")),
        "xi": tc.xi() if case in ("b", "c") else float("nan"),
        "thresholds": ce_two_cluster_thresholds(k_a, n_a, k_b, n_b, lb, switch=False),
        "sigma_A": math.sqrt(n_a) * abs(k_a * a + k_b * c),
        "sigma_B": math.sqrt(n_b) * abs(k_a * b + k_b * d),
        "sigma_s": math.sqrt(tc.K * (k_a * n_b * b * b + k_b * n_a * c * c)),
        "p_own_minus_p_other": own - other,
    }
    if "w" in sol:
        details["w"] = sol["w"]  # case (d): w = e^{mK}
    source = f"{PAPER}, Thm 3.2({case}) / Prop. 5.5({case}), eq. (3.5); errata {_ERRATA_OF[regime]}"
    return _assemble(Z, bias, n, dim, lw, lh, lb, regime, source, details)


# ---- thresholds ---------------------------------------------------------------------------------------


def _bias_free_switch_1d(k_a, n_a, k_b, n_b) -> float:
    """Bias-free (b)/(c) switch `L* = Nλ*` from the single equation of note §2.3(e)/§2.4 (E-HL8)."""
    K = k_a + k_b

    def h(L):
        y = math.sqrt(k_b * K / (1.0 - k_a * n_b / (K * L * L)))
        x = k_a / (y - k_b)
        return math.log((math.sqrt(n_a) / L - 1.0) * (k_a + k_b * x) + 1.0) - k_a * math.log(x)

    lo, hi = math.sqrt(n_b) * (1 + 1e-13), math.sqrt(n_a) * (1 - 1e-13)
    return brentq(h, lo, hi, xtol=1e-300, rtol=_RTOL, maxiter=500)


def _switch_by_bisection(k_a, n_a, k_b, n_b, lam_b) -> float:
    """`L*` where the regime test ξ(λ_Z, λ_b) changes sign (case (b) below, case (c) above), by bisection."""
    N = k_a * n_a + k_b * n_b
    lo, hi = math.sqrt(n_b), math.sqrt(n_a) * (1 - 1e-14)

    def is_b(L):
        return _TwoCluster(k_a, n_a, k_b, n_b, L / N, lam_b).xi() < 0

    if not is_b(lo * (1 + 1e-12)):
        return lo
    if is_b(hi):  # pragma: no cover - excluded by Prop. 5.5(c)
        return math.sqrt(n_a)
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if mid <= lo or mid >= hi:
            break
        if is_b(mid):
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def ce_two_cluster_thresholds(k_a, n_a, k_b, n_b, lam_b=None, *, switch: bool = True) -> dict:
    """The `λ_Z` thresholds of the two-cluster CE UFM (Thm 3.2, Prop. 5.5(e)).

    Minority collapse iff `Nλ_Z ≥ √n_B`; complete collapse iff `Nλ_Z ≥ √n_A` (any `λ_b`, `k_A`, `k_B`);
    between them case (b) for `λ_Z < λ*` and case (c) for `λ_Z > λ*`. Bias-free, `L* = Nλ*` solves
    `log[(√n_A/L − 1)(k_A + k_B x) + 1] = k_A log x`, `x = k_A/(y − k_B)`, `y = √(k_B K/(1 − k_A n_B/(K L²)))`;
    for finite `λ_b` (no closed form in the paper) `λ*` is where the regime test ξ(λ_Z, λ_b) of eq. (5.24)
    changes sign, found by bisection.

    Implements Thm 3.2(b)–(e) of Hong & Ling 2023; corrected as in errata E-HL3 (thresholds are `√n/N`,
    not `√(n/N)`) and E-HL8 (the λ* equation at L1006/L1225 uses `λ_Z` where `λ*` is meant).

    **Arguments:**

    - `k_a, n_a`: classes and samples per class of the majority cluster A.
    - `k_b, n_b`: the same for the minority cluster B (`n_b < n_a`, `k_a, k_b >= 2`).
    - `lam_b`: `λ_b > 0` or `None` (bias-free).
    - `switch`: compute the (b)/(c) switch (default `True`).

    **Returns:**

    A dict with `minority_collapse` (`√n_B/N`), `complete_collapse` (`√n_A/N`) and, if `switch`,
    `minority_zero` (`λ*`, the (b)/(c) switch); bias-free also `minority_zero_xi` (the same switch by
    bisection on ξ, a cross-check of the 1-D equation).
    """
    k_a, k_b = int(k_a), int(k_b)
    n_a, n_b = float(n_a), float(n_b)
    if k_a < 2 or k_b < 2 or not n_a > n_b > 0:
        raise ValueError(
            f"(k_a, n_a, k_b, n_b)={(k_a, n_a, k_b, n_b)!r} is not allowed: expected k_a, k_b >= 2 and n_a > n_b > 0."
        )
    lb = _lam("lam_b", lam_b, allow_none=True)
    N = k_a * n_a + k_b * n_b
    out = {"minority_collapse": math.sqrt(n_b) / N, "complete_collapse": math.sqrt(n_a) / N}
    if switch:
        by_xi = _switch_by_bisection(k_a, n_a, k_b, n_b, lb) / N
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
    - `k_a`, `k_b`: classes in the majority and minority clusters.
    - `n_b`: samples per minority class.

    **Returns:** the threshold ratio `r` (a float; minority collapse iff `n_A/n_B ≥ r`).
    """
    return (1.0 / (lam_z * math.sqrt(n_b)) - k_b) / k_a


def complete_collapse_ratio(lam_z, k_a, k_b, n_b) -> float:
    """The imbalance ratio `r = n_A/n_B` above which everything collapses (`Z̄ = 0`; from Thm 3.2(d)).

    `(k_A n_A + k_B n_B) λ_Z = √n_A` with `s = √n_A`: `s = [1 + √(1 − 4 k_A k_B n_B λ_Z²)]/(2 k_A λ_Z)`,
    the larger root. Returns `1.0` when the discriminant is negative (complete collapse for every `r`).

    Implements Thm 3.2(d) of Hong & Ling 2023 (threshold `√n_A/N`, erratum E-HL3).

    **Arguments:**

    - `lam_z`: `λ_Z > 0`; `k_a`, `k_b`: classes per cluster; `n_b`: samples per minority class.

    **Returns:** the threshold ratio `r` (complete collapse for `n_A/n_B ≥ r`).
    """
    disc = 1.0 - 4.0 * k_a * k_b * n_b * lam_z * lam_z
    if disc < 0:
        return 1.0
    s = (1.0 + math.sqrt(disc)) / (2.0 * k_a * lam_z)
    return max(1.0, s * s / n_b)


def within_cluster_margin(class_sizes, lam_z) -> np.ndarray:
    """`p_own − p_other` (same cluster) per class at the global minimum: `max(0, 1 − Nλ_Z/√n_j)`.

    Holds for any number of clusters (classes with equal `n_k`), any `λ_b`, for every class whose
    cluster has at least two classes (note §2.5; eq. 1–2 of (5.31) of Hong & Ling 2023). Probabilities
    are `softmax(z̄_k + b)`.

    **Arguments:**

    - `class_sizes`: `n_1..n_K`.
    - `lam_z`: `λ_Z = √(λ_W λ_H) > 0`.

    **Returns:** array of shape `(K,)`.
    """
    n = _sizes(class_sizes)
    return np.maximum(0.0, 1.0 - n.sum() * float(lam_z) / np.sqrt(n))
