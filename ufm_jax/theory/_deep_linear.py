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

This module holds the bias-free MSE results (Thm 4.1, Thm 4.4, Remark 4.6); the balanced CE result
(Thm A.1) is `_deep_linear_ce.deep_linear_ce_balanced_solution`, re-exported here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import optimize

from .. import _validation as V
from ._deep_linear_ce import PAPER as _PAPER
from ._deep_linear_ce import deep_linear_ce_balanced_solution
from ._solution import TheorySolution, padded_singular_values

__all__ = [
    "deep_linear_mse_solution",
    "deep_linear_ce_balanced_solution",
    "class_vanishing_lambdas",
    "collapse_threshold",
    "largest_root",
]


# ---- the scalar problem ---------------------------------------------------------------------------


def collapse_threshold(depth: int) -> float:
    """The death threshold `τ_L = (L−1)^{(L−1)/L} / L²` of a class's `β_k = a/n_k` (with `τ_1 = 1`).

    Implements Thm 4.4 of Dang et al. 2023 (and Thm 4.1 for `L = 1`); corrected as in erratum E-DL2
    (the printed exponent `(M−1)^{(M−1)/M}` was lost).

    **Arguments:**

    - `depth`: `L >= 1` (the paper's `M`).

    **Returns:** `τ_L` as a float.
    """
    depth = V.integer("depth", depth, 1)
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
    beta, depth = V.positive("beta", beta), V.integer("depth", depth, 1)
    if depth == 1:
        return 1.0 / math.sqrt(beta) - 1.0 if beta < 1.0 else math.nan
    x_pk, h_max = _h_peak(depth)
    if beta >= h_max:
        return math.nan
    log_beta = math.log(beta)

    def f(x):
        return log_beta + 2.0 * math.log1p(x**depth) - (depth - 1) * math.log(x)

    # f > 0 for every x >= 2 β^{−1/(L+1)}: there x^{L−1}/(x^L+1)² < x^{−L−1} <= β/2^{L+1} < β.
    hi = max(2.0 * x_pk, 2.0 * beta ** (-1.0 / (depth + 1)))
    return optimize.brentq(f, x_pk, hi, xtol=1e-300, rtol=4 * np.finfo(float).eps, maxiter=500)


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

    **Raises:** `ValueError` naming the argument for invalid input (every class size, dimension and
    `λ > 0` is covered by the theorem).
    """
    n, dim, widths, lam_w, lam_h = V.layered(class_sizes, dim, widths, lam_w, lam_h)
    num_classes, depth = n.size, len(widths) + 1
    total = float(np.sum(n))
    rank = min(num_classes, dim, *widths)
    c = float(lam_w[0] ** (depth - 1) / np.prod(lam_w[1:]))
    a = total * (total * float(np.prod(lam_w)) * lam_h) ** (1.0 / depth)
    tau = collapse_threshold(depth)
    beta = a / n
    by_threshold, within_rank = beta < tau, _within_rank(n, rank)
    alive = by_threshold & within_rank

    x = np.zeros(num_classes)
    for k in np.flatnonzero(alive):
        x[k] = largest_root(float(beta[k]), depth)
    xm = x**depth
    per_class = np.where(alive, 1.0 / (xm + 1.0) + depth * beta * x, 1.0)
    prod_sq = np.where(alive, total * lam_h * xm, 0.0)  # σ_k(P)²
    s = np.where(alive, (total * lam_h * xm / c) ** (1.0 / (2 * depth)), 0.0)  # σ_k(W_1)
    feat_sq = np.where(alive, xm / (total * lam_h * (xm + 1.0) ** 2), 0.0)  # ‖h̄_k‖²
    fitted = np.where(alive, xm / (xm + 1.0), 0.0)
    dims = (dim, *widths, num_classes)
    num_alive = int(np.sum(alive))
    theorem = ("Thm 4.1" if depth == 1 else "Thm 4.4") + (" + Remark 4.6" if rank < num_classes else "")
    x_pk, h_max = _h_peak(depth) if depth >= 2 else (0.0, 1.0)
    cut = np.flatnonzero(by_threshold & ~within_rank)
    return TheorySolution(
        objective=float(np.sum(n * per_class) / (2 * total)),
        regime=_regime(num_alive, num_classes),
        mean_gram=np.diag(feat_sq),
        mean_logits=np.diag(fitted),
        bias=np.zeros(num_classes),
        weight_singular_values=tuple(
            padded_singular_values(np.sqrt(lam_w[0] / lam_w[l]) * s[alive], min(dims[l], dims[l + 1]))
            for l in range(depth)
        ),
        product_singular_values=padded_singular_values(np.sqrt(prod_sq[alive]), min(num_classes, dim)),
        mean_singular_values=padded_singular_values(np.sqrt(feat_sq[alive]), min(dim, num_classes)),
        source=(f"{_PAPER}, {theorem} (MSE, bias-free); corrected as in errata "
                "E-DL1, E-DL2, E-DL3, E-DL6, E-DL7"),
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
            "vanished_by_rank": cut,
            "vanishing_class_size": a / tau,  # class k is zero iff n_k < this (or beyond the rank)
            # A tie at the rank boundary: a class alive by threshold but cut by the rank limit has the same
            # n_k as a survivor, so the survivors' Gram is only defined up to a projector on the tied block.
            "rank_tie": bool(any(np.any(n[alive] == n[k]) for k in cut)),
            "boundary_classes": (np.flatnonzero(np.abs(beta / tau - 1.0) < 1e-9) if depth >= 2
                                 else np.array([], int)),
        },
    )


def _within_rank(n: np.ndarray, rank: int) -> np.ndarray:
    """Mask of the `rank` largest classes (ties broken by class index): the only ones that can survive."""
    order = np.argsort(-n, kind="stable")
    position = np.empty(n.size, dtype=int)
    position[order] = np.arange(n.size)
    return position < rank


def _regime(num_alive: int, num_classes: int) -> str:
    if num_alive == num_classes:
        return "all-classes"
    if num_alive == 0:
        return "collapsed"
    return f"{num_classes - num_alive}-vanished"


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
    n, dim, widths, rho_w, rho_h = V.layered(class_sizes, dim, widths, lam_w_ratio, lam_h_ratio,
                                             lam_w_name="lam_w_ratio", lam_h_name="lam_h_ratio")
    depth = len(widths) + 1
    total = float(np.sum(n))
    tau = collapse_threshold(depth)
    lam = (tau * n / total) ** (depth / (depth + 1)) * (total * np.prod(rho_w) * rho_h) ** (-1.0 / (depth + 1))
    lam[~_within_rank(n, min(n.size, dim, *widths))] = 0.0
    return lam
