"""Analytic global minima of the deep-linear UFMs of Dang, Tran, Osher, Tran-The, Ho, Nguyen (ICML 2023).

"Neural Collapse in Deep Linear Networks: From Balanced to Imbalanced Data". The formulas below are the
corrected ones of `docs/errata.md` (erratum ids `E-DLk`).

**Notation map (paper → `ufm_jax.Problem`).**

| paper | here |
|---|---|
| depth `M` (weight matrices after `H_1`) | `L = len(widths) + 1` |
| feature dim `d_1`, layer dims `d_2..d_M` | `dim = d_0`, `widths = (d_1..d_{L-1})` |
| `W_m ∈ R^{d_{m+1}×d_m}`, `W_1` nearest `H_1` | `W_l ∈ R^{d_l×d_{l-1}}`, `W_1` nearest `H` |
| `λ_{W_m}`, `λ_{H_1}` | `lam_w[m-1]`, `lam_h` |
| `1/(2N)‖·‖²` (MSE, eq. 6), `1/N Σ CE` (eq. 7), penalties `λ/2‖·‖²` | identical |

The normalisations of the paper and of this package coincide, so no rescaling of `λ` is needed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import optimize

from ._solution import TheoremNotApplicable, TheorySolution, padded_singular_values

__all__ = [
    "deep_linear_mse_solution",
    "deep_linear_ce_balanced_solution",
    "class_vanishing_lambdas",
    "collapse_threshold",
    "largest_root",
]

_PAPER = "Dang, Tran, Osher, Tran-The, Ho, Nguyen (ICML 2023)"


# ---- validation -----------------------------------------------------------------------------------


def _fail(name: str, value, allowed: str) -> ValueError:
    return ValueError(f"{name}={value!r} is not allowed: {allowed}.")


def _sizes(class_sizes) -> np.ndarray:
    arr = np.atleast_1d(np.asarray(class_sizes, dtype=np.float64))
    if arr.ndim != 1 or arr.size < 2 or not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise _fail("class_sizes", class_sizes, "expected K >= 2 finite class sizes > 0")
    return arr


def _dims(dim, widths) -> tuple[int, tuple[int, ...]]:
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
        raise _fail("dim", dim, "expected an integer >= 1")
    widths = tuple(widths)
    for w in widths:
        if isinstance(w, bool) or not isinstance(w, (int, np.integer)) or w < 1:
            raise _fail("widths", widths, "expected a sequence of integers >= 1")
    return int(dim), tuple(int(w) for w in widths)


def _positive(name: str, value, length: int | None = None) -> np.ndarray:
    arr = np.atleast_1d(np.asarray(value, dtype=np.float64))
    if arr.ndim != 1 or arr.size == 0 or not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise _fail(name, value, "expected finite values > 0")
    if length is not None:
        if arr.size == 1:
            arr = np.full(length, arr[0])
        elif arr.size != length:
            raise _fail(name, value, f"expected one value or L = {length} values (W_1..W_L)")
    return arr


# ---- the scalar problem ---------------------------------------------------------------------------


def collapse_threshold(depth: int) -> float:
    """The death threshold `τ_L = (L−1)^{(L−1)/L} / L²` of a class's `β_k = a/n_k` (with `τ_1 = 1`).

    Implements Thm 4.4 of Dang et al. 2023 (and Thm 4.1 for `L = 1`); corrected as in erratum E-DL2
    (the printed exponent `(M−1)^{(M−1)/M}` was lost).

    **Arguments:**

    - `depth`: `L >= 1` (the paper's `M`).

    **Returns:** `τ_L` as a float.
    """
    if depth == 1:
        return 1.0
    return (depth - 1) ** ((depth - 1) / depth) / depth**2


def _h_peak(depth: int) -> tuple[float, float]:
    """`(x_pk, h_max)` of `h(x) = x^{L−1}/(x^L+1)²` (`x_pk = ((L−1)/(L+1))^{1/L}`)."""
    x_pk = ((depth - 1) / (depth + 1)) ** (1.0 / depth)
    return x_pk, x_pk ** (depth - 1) / (x_pk**depth + 1) ** 2


def largest_root(beta: float, depth: int) -> float:
    """The largest positive root of `β = x^{L−1}/(x^L+1)²`, or `nan` if there is none.

    Implements Thm 4.4 of Dang et al. 2023 (`x_k*` of its NC2 part; Remark 4.5); `L = 1` gives the
    closed form `x = 1/√β − 1` of Thm 4.1. For `L >= 2`, `h(x) = x^{L−1}/(x^L+1)²` increases up to
    `x_pk = ((L−1)/(L+1))^{1/L}` and decreases after it, so the largest root is the unique root on
    `(x_pk, ∞)` (found by `brentq` on `log β + 2 log(1+x^L) − (L−1) log x`). The root is the global
    minimiser of `g(x) = 1/(x^L+1) + Lβx` only when `β < τ_L` (see `collapse_threshold`).

    **Arguments:**

    - `beta`: `β > 0`.
    - `depth`: `L >= 1`.

    **Returns:** the root (a float), `nan` when `β >= h_max` (`β >= 1` for `L = 1`).
    """
    if depth == 1:
        return 1.0 / math.sqrt(beta) - 1.0 if beta < 1.0 else math.nan
    x_pk, h_max = _h_peak(depth)
    if beta >= h_max:
        return math.nan
    log_beta = math.log(beta)

    def f(x):
        return log_beta + 2.0 * math.log1p(x**depth) - (depth - 1) * math.log(x)

    hi = max(2.0 * x_pk, 2.0 * beta ** (-1.0 / (depth + 1)))
    while f(hi) <= 0.0:  # pragma: no cover - the bound above already suffices
        hi *= 2.0
    return optimize.brentq(f, x_pk, hi, xtol=1e-300, rtol=4 * np.finfo(float).eps, maxiter=500)


def _g(x: float, beta: float, depth: int) -> float:
    """Per-class reduced objective `g(x) = 1/(x^L+1) + Lβx` (paper eq. (23), L1430–1438)."""
    return 1.0 / (x**depth + 1.0) + depth * beta * x


# ---- MSE, bias-free, any class sizes ----------------------------------------------------------------


def deep_linear_mse_solution(
    class_sizes: Sequence[float],
    dim: int,
    widths: Sequence[int],
    lam_w: float | Sequence[float],
    lam_h: float,
) -> TheorySolution:
    """The global minimum of the bias-free deep-linear MSE UFM, any class sizes, any depth `L >= 1`.

    With `N = Σ n_k`, `c = λ_{W,1}^{L−1}/(λ_{W,2}⋯λ_{W,L})` (`c = 1` for `L = 1`),
    `a = N (N λ_{W,1}⋯λ_{W,L} λ_H)^{1/L}`, `β_k = a/n_k`, `τ_L = (L−1)^{(L−1)/L}/L²` (`τ_1 = 1`) and the
    rank limit `r = min(K, d, d_1, …, d_{L−1})`: class `k` survives iff `β_k < τ_L` and `k` is among
    the `r` largest classes (ties broken by class index). A survivor has `x_k` = the largest root of
    `β_k (x^L+1)² = x^{L−1}` (`x_k = 1/√β_k − 1` for `L = 1`), and

        f* = Σ_{alive} (n_k/2N) (1/(x_k^L+1) + L β_k x_k) + Σ_{dead} n_k/(2N)
        σ_k(W_L⋯W_1)² = N λ_H x_k^L,    σ_k(W_1) = s_k = (N λ_H x_k^L / c)^{1/(2L)},
        σ_k(W_l) = sqrt(λ_{W,1}/λ_{W,l}) s_k,    ‖h̄_k‖² = x_k^L / (N λ_H (x_k^L+1)²),
        H̄ᵀH̄ = diag(‖h̄_k‖²),    W_L⋯W_1 H̄ = diag(x_k^L/(x_k^L+1)),

    dead classes having all of these zero. For `L >= 2` the death is a discontinuous jump (as
    `β_k ↑ τ_L`, `x_k ↓ (L−1)^{1/L}`, then 0); for `L = 1` it is continuous.

    Implements Thm 4.4 of Dang et al. 2023 (Thm 4.1 for `L = 1`; Remark 4.6 for `r < K`); corrected as
    in errata E-DL1 (the constant `c`), E-DL2 (the threshold exponent), E-DL3 (the symbol `a`), E-DL6
    (the rank-limited threshold is `τ_L`, not 1) and E-DL7 (the balancing identities).

    Mapping to the paper: `M = L`, paper `d_1 = dim`, paper `(d_2..d_M) = widths`,
    `λ_{W_m} = lam_w[m−1]`, `λ_{H_1} = lam_h`; both use `1/(2N)` and `λ/2` (no conversion).

    Non-uniqueness (erratum E-DL12): classes with equal `n_k` may rotate inside their block, and at a
    tie at the rank boundary (`n_r = n_{r+1}`, alive) any rank-`r'` projector on the tied block is
    optimal; `mean_gram`/`mean_logits` then give the representative that keeps the lowest-index tied
    classes, and `details["rank_tie"]` is `True`. Exactly at `β_k = τ_L` (`L >= 2`) both `x_k = 0` and
    the root are optimal; the root is returned and the class is listed in `details["boundary_classes"]`.

    **Arguments:**

    - `class_sizes`: `n_1..n_K` (any order; `K >= 2`; floats allowed).
    - `dim`: the feature dimension `d >= 1`.
    - `widths`: hidden widths `(d_1..d_{L−1})`; `()` for the plain UFM (`L = 1`).
    - `lam_w`: `λ_{W,l} > 0`, one number for every layer or one per layer `W_1..W_L`.
    - `lam_h`: `λ_H > 0`.

    **Returns:** a `TheorySolution` with `regime` `"all-classes"` (every class alive),
    `"{m}-vanished"` (`m` of the `K` classes are zero, by threshold or rank) or `"collapsed"` (all
    zero, `f* = 1/2`); per-class arrays in `details` follow the input class order.

    **Raises:** `ValueError` naming the argument for invalid input.
    """
    n = _sizes(class_sizes)
    dim, widths = _dims(dim, widths)
    depth = len(widths) + 1
    lam_w = _positive("lam_w", lam_w, depth)
    lam_h = float(_positive("lam_h", lam_h)[0]) if np.size(lam_h) == 1 else None
    if lam_h is None:
        raise _fail("lam_h", lam_h, "expected one number > 0")
    num_classes = n.size
    total = float(np.sum(n))
    rank = min(num_classes, dim, *widths)
    c = float(lam_w[0] ** (depth - 1) / np.prod(lam_w[1:]))
    a = total * (total * float(np.prod(lam_w)) * lam_h) ** (1.0 / depth)
    tau = collapse_threshold(depth)
    beta = a / n

    order = np.argsort(-n, kind="stable")  # largest classes first, ties by index
    rank_pos = np.empty(num_classes, dtype=int)
    rank_pos[order] = np.arange(num_classes)
    by_threshold = beta < tau
    within_rank = rank_pos < rank
    alive = by_threshold & within_rank

    x = np.zeros(num_classes)
    for k in np.flatnonzero(alive):
        x[k] = largest_root(float(beta[k]), depth)
    xm = x**depth
    per_class = np.where(alive, 1.0 / (xm + 1.0) + depth * beta * x, 1.0)
    objective = float(np.sum(n * per_class) / (2 * total))

    prod_sq = np.where(alive, total * lam_h * xm, 0.0)  # σ_k(P)²
    s = np.where(alive, (total * lam_h * xm / c) ** (1.0 / (2 * depth)), 0.0)  # σ_k(W_1)
    feat_sq = np.where(alive, xm / (total * lam_h * (xm + 1.0) ** 2), 0.0)  # ‖h̄_k‖²
    fitted = np.where(alive, xm / (xm + 1.0), 0.0)

    dims = (dim, *widths, num_classes)
    weight_svs = tuple(
        padded_singular_values(np.sqrt(lam_w[0] / lam_w[l]) * s[alive], min(dims[l], dims[l + 1]))
        for l in range(depth)
    )
    num_alive = int(np.sum(alive))
    if num_alive == num_classes:
        regime = "all-classes"
    elif num_alive == 0:
        regime = "collapsed"
    else:
        regime = f"{num_classes - num_alive}-vanished"

    # A tie at the rank boundary: an alive-by-threshold class cut by the rank limit has the same n_k
    # as a survivor, so the survivors' Gram is only defined up to a projector on the tied block.
    cut = np.flatnonzero(by_threshold & ~within_rank)
    rank_tie = bool(any(np.any(n[alive] == n[k]) for k in cut))
    boundary = np.flatnonzero(np.abs(beta / tau - 1.0) < 1e-9) if depth >= 2 else np.array([], int)
    x_pk, h_max = _h_peak(depth) if depth >= 2 else (0.0, 1.0)
    errata = "E-DL1, E-DL2, E-DL3, E-DL6, E-DL7"
    theorem = "Thm 4.1" if depth == 1 else "Thm 4.4"
    if rank < num_classes:
        theorem += " + Remark 4.6"
    return TheorySolution(
        objective=objective,
        regime=regime,
        mean_gram=np.diag(feat_sq),
        mean_logits=np.diag(fitted),
        bias=np.zeros(num_classes),
        weight_singular_values=weight_svs,
        product_singular_values=padded_singular_values(np.sqrt(prod_sq[alive]), min(num_classes, dim)),
        mean_singular_values=padded_singular_values(np.sqrt(feat_sq[alive]), min(dim, num_classes)),
        source=f"{_PAPER}, {theorem} (MSE, bias-free); corrected as in errata {errata}",
        details={
            "depth": depth,
            "num_samples": total,
            "rank_limit": rank,
            "c": c,
            "a": a,
            "tau": tau,
            "h_max": h_max,
            "x_peak": x_pk,
            "beta": beta,
            "x": x,
            "s": s,
            "product_sq": prod_sq,
            "feature_norm_sq": feat_sq,
            "fitted": fitted,
            "alive": alive,
            "num_alive": num_alive,
            "vanished_by_threshold": np.flatnonzero(~by_threshold),
            "vanished_by_rank": np.flatnonzero(by_threshold & ~within_rank),
            "vanishing_class_size": a / tau,  # class k is zero iff n_k < this (or beyond the rank)
            "rank_tie": rank_tie,
            "boundary_classes": boundary,
        },
    )


def class_vanishing_lambdas(
    class_sizes: Sequence[float],
    dim: int,
    widths: Sequence[int],
    lam_w_ratio: float | Sequence[float] = 1.0,
    lam_h_ratio: float = 1.0,
) -> np.ndarray:
    """The common scale `λ*_k` at which class `k` vanishes from the bias-free deep-linear MSE minimum.

    Along the ray `λ_{W,l} = λ ρ_l`, `λ_H = λ ρ_H` (`ρ` = `lam_w_ratio`, `lam_h_ratio`), class `k` is
    nonzero at the global minimum iff `λ < λ*_k` (and it is within the rank limit), where `β_k = τ_L`:

        λ*_k = (τ_L n_k / N)^{L/(L+1)} · (N ρ_1⋯ρ_L ρ_H)^{−1/(L+1)}

    (`L = 1`: `N² λ*² ρ_W ρ_H = n_k`). For `λ > max_k λ*_k` the minimum is zero. Classes that the rank
    limit `r = min(K, d, d_1..d_{L−1})` removes at every `λ` (beyond the `r` largest, ties broken by
    class index) get `0`. For `L >= 2` the class jumps to zero at `λ*_k`; for `L = 1` it fades out
    continuously.

    Implements Thm 4.4 of Dang et al. 2023 (Thm 4.1 for `L = 1`); corrected as in errata E-DL2 and
    E-DL6 (threshold `τ_L`).

    **Arguments:**

    - `class_sizes`: `n_1..n_K`.
    - `dim`: feature dimension `d`.
    - `widths`: hidden widths `(d_1..d_{L−1})`.
    - `lam_w_ratio`: `ρ_l > 0`, one number or one per layer `W_1..W_L` (default 1: `λ_W = λ`).
    - `lam_h_ratio`: `ρ_H > 0` (default 1: `λ_H = λ`).

    **Returns:** `λ*`, shape `(K,)`, in the input class order.
    """
    n = _sizes(class_sizes)
    dim, widths = _dims(dim, widths)
    depth = len(widths) + 1
    rho_w = _positive("lam_w_ratio", lam_w_ratio, depth)
    rho_h = float(_positive("lam_h_ratio", lam_h_ratio)[0])
    total = float(np.sum(n))
    tau = collapse_threshold(depth)
    lam = (tau * n / total) ** (depth / (depth + 1)) * (total * np.prod(rho_w) * rho_h) ** (-1.0 / (depth + 1))
    rank = min(n.size, dim, *widths)
    order = np.argsort(-n, kind="stable")
    lam[order[rank:]] = 0.0
    return lam


# ---- CE, balanced, deep linear (App. A, Thm A.1) ---------------------------------------------------


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

    **Raises:** `ValueError` naming `class_sizes` (imbalanced), `dim`/`widths` (`< K − 1`), `widths`
    (`L >= 2` without `allow_uncertified`), `bias`, or any invalid argument.
    """
    n_arr = _sizes(class_sizes)
    if not np.all(n_arr == n_arr[0]):
        raise TheoremNotApplicable(f"class_sizes={class_sizes!r} is not allowed: Thm A.1 covers balanced "
                                   "classes only (all n_k equal).")
    dim, widths = _dims(dim, widths)
    if bias not in ("none", "free", "regularised"):
        raise _fail("bias", bias, "expected 'none', 'free' or 'regularised'")
    num_classes = n_arr.size
    if dim < num_classes - 1:
        raise TheoremNotApplicable(f"dim={dim!r} is not allowed: Thm A.1 needs every layer dimension "
                                   f">= K - 1 = {num_classes - 1}.")
    if any(w < num_classes - 1 for w in widths):
        raise TheoremNotApplicable(f"widths={widths!r} is not allowed: Thm A.1 needs every layer "
                                   f"dimension >= K - 1 = {num_classes - 1}.")
    depth = len(widths) + 1
    if depth >= 2 and not allow_uncertified:
        raise TheoremNotApplicable(f"widths={widths!r} is not allowed: Thm A.1 (deep CE) is not a global "
                                   "minimum for L >= 2 in general (erratum E-DL16); pass "
                                   "allow_uncertified=True for the ETF critical point.")
    lam_w = _positive("lam_w", lam_w, depth)
    if np.size(lam_h) != 1:
        raise _fail("lam_h", lam_h, "expected one number > 0")
    lam_h = float(_positive("lam_h", lam_h)[0])
    n = float(n_arr[0])
    km1 = num_classes - 1
    big_c = (n * lam_h * float(np.prod(lam_w))) ** (1.0 / (depth + 1))
    alpha = (depth - 1) / (depth + 1)

    def f(t):
        return math.log1p(km1 * math.exp(-t)) + km1 * (depth + 1) / 2 * big_c * t ** (2.0 / (depth + 1))

    def log_phi(t):  # log(t^α / (e^t + K − 1))
        return alpha * math.log(t) - np.logaddexp(t, math.log(km1))

    t_root = math.nan
    if depth == 1:
        if big_c < 1.0 / num_classes:
            t_root = math.log(1.0 / big_c - km1)
    else:
        # φ(t) = t^α/(e^t+K−1) rises from 0 to a single peak and then decreases.
        def dlog_phi(t):
            return alpha / t - 1.0 / (1.0 + km1 * math.exp(-t))

        t_pk = optimize.brentq(dlog_phi, 1e-12, 100.0, xtol=1e-300, rtol=4 * np.finfo(float).eps)
        log_c = math.log(big_c)
        if log_phi(t_pk) > log_c:
            hi = max(2 * t_pk, 1.0)
            while log_phi(hi) >= log_c:
                hi *= 2.0
            t_root = optimize.brentq(
                lambda t: log_phi(t) - log_c, t_pk, hi, xtol=1e-300, rtol=4 * np.finfo(float).eps
            )
    f_zero = math.log(num_classes)
    alive = bool(np.isfinite(t_root)) and f(t_root) < f_zero
    t = t_root if alive else 0.0
    objective = f(t) if alive else f_zero

    mu = big_c * t ** (2.0 / (depth + 1))
    w_sv = np.sqrt(mu / lam_w)  # per layer, K−1 times
    feat = math.sqrt(mu / (n * lam_h))  # σ(H̄); ‖h̄_k‖² = σ(H̄)² (K−1)/K
    prod_sv = t / feat if alive else 0.0
    s_h = math.sqrt(n) * feat  # singular values of H = H̄ Y
    kappa = feat / prod_sv if alive else math.nan
    printed_kappa = (lam_h**depth / float(np.prod(lam_w))) * s_h ** (2 - 2 * depth) if alive else math.nan
    centre = np.eye(num_classes) - np.ones((num_classes, num_classes)) / num_classes
    dims = (dim, *widths, num_classes)
    ones = np.ones(km1) if alive else np.zeros(0)
    weight_svs = tuple(
        padded_singular_values(w_sv[l] * ones, min(dims[l], dims[l + 1])) for l in range(depth)
    )
    src_bias = {"none": "bias-free (exact corollary)", "free": "free bias (λ_b = 0)",
                "regularised": "regularised bias (λ_b > 0)"}[bias]
    return TheorySolution(
        objective=float(objective),
        regime=("etf" if alive else "collapsed") + ("" if depth == 1 else "-uncertified"),
        mean_gram=feat**2 * centre,
        mean_logits=t * centre,
        bias=np.zeros(num_classes),
        weight_singular_values=weight_svs,
        product_singular_values=padded_singular_values(prod_sv * ones, min(num_classes, dim)),
        mean_singular_values=padded_singular_values(feat * ones, min(dim, num_classes)),
        source=(f"{_PAPER}, Thm A.1 (CE, balanced, {src_bias}); corrected as in errata E-DL5, E-DL7"
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
            "kappa": kappa,
            "kappa_printed": printed_kappa,
            "bias_note": "any b·1 is optimal" if bias == "free" else "b = 0",
        },
    )
