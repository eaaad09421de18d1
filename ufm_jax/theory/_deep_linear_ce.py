"""The balanced cross-entropy deep-linear UFM (Dang et al., ICML 2023, App. A, Thm A.1), corrected.

"Neural Collapse in Deep Linear Networks: From Balanced to Imbalanced Data", Dang, Tran, Osher,
Tran-The, Ho, Nguyen. Notation map and conventions: module docstring of `_deep_linear`; the paper's
eq. (7) uses `1/N Σ CE` and `λ/2`, as `ufm_jax.Problem(loss="ce")` does. Thm A.1 is certified here for
`L = 1` only (erratum E-DL16); for `L >= 2` the ETF is a critical point, returned only on request.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import optimize

from .. import _validation as V
from ._solution import TheorySolution, not_applicable, padded_singular_values

__all__ = ["deep_linear_ce_balanced_solution"]

PAPER = "Dang, Tran, Osher, Tran-The, Ho, Nguyen (ICML 2023)"
BIASES = ("none", "free", "regularised")
_RTOL = 4 * np.finfo(float).eps


def _inputs(class_sizes, dim, widths, lam_w, lam_h, bias, allow_uncertified):
    """Checked numbers `(n, dim, widths, λ_W per layer, λ_H)`; Thm A.1's conditions else
    `TheoremNotApplicable` (balanced classes, every layer dimension `>= K − 1`, `L = 1` unless
    `allow_uncertified`)."""
    n, dim, widths, lam_w, lam_h = V.layered(class_sizes, dim, widths, lam_w, lam_h)
    V.choice("bias", bias, BIASES)
    if not np.all(n == n[0]):
        raise not_applicable("class_sizes", n, "Thm A.1 covers balanced classes only (all n_k equal)")
    km1 = n.size - 1
    if dim < km1:
        raise not_applicable("dim", dim, f"Thm A.1 needs every layer dimension >= K - 1 = {km1}")
    if any(w < km1 for w in widths):
        raise not_applicable("widths", list(widths), f"Thm A.1 needs every layer dimension >= K - 1 = {km1}")
    if widths and not allow_uncertified:
        raise not_applicable("widths", list(widths), "Thm A.1 (deep CE) is not a global minimum for "
                             "L >= 2 in general (erratum E-DL16); pass allow_uncertified=True for the ETF "
                             "critical point")
    return n, dim, widths, lam_w, lam_h


def _etf_scale(num_classes: int, depth: int, big_c: float) -> float:
    """The largest root `t_+` of `t^{(L−1)/(L+1)} = C (e^t + K − 1)`, or `nan` if there is none.

    `L = 1`: `t_+ = log(1/C − K + 1)` if `C < 1/K`. `L >= 2`: `φ(t) = t^α/(e^t + K − 1)`, `α = (L−1)/(L+1)`,
    rises from 0 to a single peak `t_pk` (the root of `(log φ)' = α/t − 1/(1 + (K−1)e^{−t})`) and then
    decreases, so `t_+` is the root of `log φ − log C` on `(t_pk, ∞)` when `φ(t_pk) > C`. Found by `brentq`
    (the paper gives no closed form, E-DL15).
    """
    km1 = num_classes - 1
    if depth == 1:
        return math.log(1.0 / big_c - km1) if big_c < 1.0 / num_classes else math.nan
    alpha = (depth - 1) / (depth + 1)

    def log_phi(t):
        return alpha * math.log(t) - np.logaddexp(t, math.log(km1))

    def dlog_phi(t):
        return alpha / t - 1.0 / (1.0 + km1 * math.exp(-t))

    t_pk = optimize.brentq(dlog_phi, 1e-12, 100.0, xtol=1e-300, rtol=_RTOL)
    log_c = math.log(big_c)
    if log_phi(t_pk) <= log_c:
        return math.nan
    hi = max(2 * t_pk, 1.0)
    for _ in range(2000):  # log φ(t) ≈ α log t − t → −∞: a few doublings
        if log_phi(hi) < log_c:
            break
        hi *= 2.0
    else:  # pragma: no cover - defensive
        raise RuntimeError("deep-linear CE scale: no bracket found for the root t_+.")
    return optimize.brentq(lambda t: log_phi(t) - log_c, t_pk, hi, xtol=1e-300, rtol=_RTOL)


def deep_linear_ce_balanced_solution(
    class_sizes: Sequence[float],
    dim: int,
    widths: Sequence[int],
    lam_w: float | Sequence[float],
    lam_h: float,
    bias: str = "free",
    *,
    allow_uncertified: bool = False,
) -> TheorySolution:
    """The global minimum of the balanced linear CE UFM (simplex ETF, scale from a 1-D problem).

    **Certified for `L = 1` only.** For `L >= 2` Thm A.1 is false in general (erratum E-DL16): with
    `K = 3`, `dim = 2`, `widths = (3, 2)`, `λ_W = (0.03, 0.01, 0.02)`, `λ_H = 0.015`, `n = 5`, free bias,
    a rank-1 point with a non-constant bias reaches `0.2311824196 < 0.2415601943` (the ETF value), and
    with `K = 4`, `L = 2` even the bias-free problem has a rank-2 point below the ETF. The ETF of this
    function is then only a critical point; it is returned for `L >= 2` only with
    `allow_uncertified=True`, with `regime="etf-uncertified"` and `details["certified"] = False`.

    Thm A.1 fixes the shape: `W_L⋯W_1 H̄ = t (I_K − 11ᵀ/K)` (`K−1` equal singular values `t`), `b = b·1`
    (`b = 0` if penalised). The scale follows from the minimal factorisation penalty of a product with
    singular value `t` over `L+1` factors (AM-GM; attained by the balanced factors of E-DL7):

        f(t) = log(1 + (K−1) e^{−t}) + (K−1)(L+1)/2 · C t^{2/(L+1)},   C = (n λ_H λ_{W,1}⋯λ_{W,L})^{1/(L+1)},
        f* = min(f(t_+), log K),   t_+ = largest root of t^{(L−1)/(L+1)} = C (e^t + K − 1),

    (`L = 1`: `t_+ = log(1/C − K + 1)`, alive iff `C < 1/K`). With `μ = C t^{2/(L+1)}`:
    `σ(W_l) = sqrt(μ/λ_{W,l})`, `σ(H̄) = sqrt(μ/(n λ_H))` (`K−1` times), `σ(W_L⋯W_1) = t/σ(H̄)`,
    `H̄ᵀH̄ = σ(H̄)² (I − 11ᵀ/K)`, and NC3 `h̄_k = κ (W_L⋯W_1)_kᵀ` with the corrected constant
    `κ = sqrt(λ_{W,1}⋯λ_{W,L} Σs² / (n λ_H^L Σ s^{2L}))`, `s` the singular values of `H = H̄Y`.

    Implements Thm A.1 of Dang et al. 2023 (certified for `L = 1`, where it is the plain-UFM result
    of Zhu et al. 2021); corrected as in errata E-DL5 (the NC3 constant) and E-DL16 (false for
    `L >= 2`), with E-DL7 (balancing). Thm A.1 covers the last-layer bias with `λ_b >= 0` (`bias="regularised"`:
    `b* = 0`; `bias="free"`: `b*` any constant vector, `0` returned). `bias="none"` follows exactly:
    restricting to `b = 0` cannot lower the minimum, and the free-bias minimum has `b ∝ 1`, which CE
    ignores, so the three minima coincide. The paper gives no closed form for `t` (E-DL15); it is found
    here by `brentq`.

    Mapping to the paper: `M = L`, `d_1 = dim`, `(d_2..d_M) = widths`, `λ_{W_m} = lam_w[m−1]`,
    `λ_{H_1} = lam_h`; eq. (7) uses `1/N Σ CE` and `λ/2`, as here.

    **Arguments:**

    - `class_sizes`: `n_1 = … = n_K = n` (balanced; `K >= 2`).
    - `dim`, `widths`: feature dimension and hidden widths, each `>= K − 1` (Thm A.1's assumption).
    - `lam_w`: `λ_{W,l} > 0`, one number or one per layer `W_1..W_L`.
    - `lam_h`: `λ_H > 0`.
    - `bias`: `"none"`, `"free"` or `"regularised"` (the value of `λ_b > 0` does not matter).
    - `allow_uncertified`: for `L >= 2`, return the ETF critical point instead of raising.

    **Returns:** a `TheorySolution` with `regime` `"etf"` (nonzero simplex ETF) or `"collapsed"`
    (everything zero, `f* = log K`); `details` has `t`, `C`, `kappa` and the printed constant.

    **Raises:** `TheoremNotApplicable` naming `class_sizes` (imbalanced), `dim`/`widths` (`< K − 1`) or
    `widths` (`L >= 2` without `allow_uncertified`); `ValueError` naming `bias` or any other bad argument.
    """
    n_arr, dim, widths, lam_w, lam_h = _inputs(class_sizes, dim, widths, lam_w, lam_h, bias, allow_uncertified)
    num_classes, depth, n = n_arr.size, len(widths) + 1, float(n_arr[0])
    km1 = num_classes - 1
    big_c = (n * lam_h * float(np.prod(lam_w))) ** (1.0 / (depth + 1))

    def f(t):
        return math.log1p(km1 * math.exp(-t)) + km1 * (depth + 1) / 2 * big_c * t ** (2.0 / (depth + 1))

    t_root = _etf_scale(num_classes, depth, big_c)
    f_zero = math.log(num_classes)
    alive = bool(np.isfinite(t_root)) and f(t_root) < f_zero
    t = t_root if alive else 0.0

    mu = big_c * t ** (2.0 / (depth + 1))
    feat = math.sqrt(mu / (n * lam_h))  # σ(H̄); ‖h̄_k‖² = σ(H̄)² (K−1)/K
    prod_sv = t / feat if alive else 0.0
    s_h = math.sqrt(n) * feat  # singular values of H = H̄ Y
    centre = np.eye(num_classes) - np.ones((num_classes, num_classes)) / num_classes
    dims = (dim, *widths, num_classes)
    ones = np.ones(km1) if alive else np.zeros(0)
    src_bias = {"none": "bias-free (exact corollary)", "free": "free bias (λ_b = 0)",
                "regularised": "regularised bias (λ_b > 0)"}[bias]
    return TheorySolution(
        objective=float(f(t) if alive else f_zero),
        regime=("etf" if alive else "collapsed") + ("" if depth == 1 else "-uncertified"),
        mean_gram=feat**2 * centre,
        mean_logits=t * centre,
        bias=np.zeros(num_classes),
        weight_singular_values=tuple(
            padded_singular_values(math.sqrt(mu / lam_w[l]) * ones, min(dims[l], dims[l + 1]))
            for l in range(depth)
        ),
        product_singular_values=padded_singular_values(prod_sv * ones, min(num_classes, dim)),
        mean_singular_values=padded_singular_values(feat * ones, min(dim, num_classes)),
        source=(f"{PAPER}, Thm A.1 (CE, balanced, {src_bias}); corrected as in errata E-DL5, E-DL7"
                + ("" if depth == 1 else "; NOT a global minimum in general for L >= 2 (E-DL16)")),
        details={
            "certified": depth == 1,
            "depth": depth,
            "n": n,
            "t": t,
            "t_root": t_root,
            "C": big_c,
            "objective_if_collapsed": f_zero,
            "feature_singular_value": s_h,
            "kappa": feat / prod_sv if alive else math.nan,
            "kappa_printed": ((lam_h**depth / float(np.prod(lam_w))) * s_h ** (2 - 2 * depth)
                              if alive else math.nan),
            "bias_note": "any b·1 is optimal" if bias == "free" else "b = 0",
        },
    )
