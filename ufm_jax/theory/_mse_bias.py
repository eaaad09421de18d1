"""Global minimum of the L-extended MSE UFM with a free bias (Liu 2024, Thm 4.3), corrected.

Conventions. Liu's objective (Def. 3.1 / eq. 4.3, with her ρ_b = 0) is *literally* ours:

    f = 1/(2N) ‖W_L ⋯ W_1 H + b 1ᵀ − Y‖_F² + Σ_l (λ_{W_l}/2) ‖W_l‖_F² + (λ_H/2) ‖H‖_F²,

with `W_l ∈ R^{d_l × d_{l-1}}`, `W_1` nearest the features, `d_0 = d`, `d_L = K`, `λ_H` on the
whole `‖H‖_F²` (not per sample), `N = Σ_k n_k`, and `L` counting weight matrices only (the product
`P H` has `L + 1` factors). So `lam_w[l-1] = λ_{W_l}`, `lam_h = λ_H`, `widths = (d_1..d_{L-1})`,
with no conversion.

The reduction (notes §2): `b* = n/N`, the global feature mean is 0, features collapse to class
means `H̄`, and with `D = diag(√n)`, `Ē = H̄ D`, the problem becomes a bias-free deep-linear problem
with labels

    Ŷ = (I_K − n 1ᵀ/N) D = Û diag(κ) V̂ᵀ,   κ_1 ≥ … ≥ κ_K = 0.

Per singular direction j it leaves the scalar problem `(κ_j²/2N) g_j(x)`, with
`g_j(x) = 1/(1+x^L) + α_j x`, `α_j = L N (NΠ)^{1/L} / κ_j²`, `Π = λ_{W_1}⋯λ_{W_L} λ_H`, whose global
minimiser over `x ≥ 0` is either 0 or the largest root of `L x^{L-1}/(1+x^L)² = α_j` (Lemma A.2).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.optimize import brentq

from .. import _validation as V
from ._solution import TheorySolution, padded_singular_values

SOURCE = (
    "Liu 2024, 'The Exploration of Neural Collapse under Imbalanced Data', Thm 4.3 "
    "(with Lemma A.2, proof B.3); corrected as in errata E-LI1 (4th identity), E-LI2 (collapse "
    "sign), E-LI3 (c), E-LI4 (L-th root), E-LI6 (r includes d_0), E-LI8 (Υ₂), "
    "E-LI9 (constant in B.13), E-LI10 (V_{W_1})"
)


def _inputs(class_sizes, dim, widths, lam_w, lam_h):
    """Checked `(n, dims (d_0..d_L), λ_W per layer, λ_H)`; every size, width and `λ > 0` is covered."""
    n, dim, widths, lam_w, lam_h = V.layered(class_sizes, dim, widths, lam_w, lam_h)
    return n, (dim, *widths, n.size), lam_w, lam_h


def _label_svd(n: np.ndarray):
    """SVD of `Ŷ = (I − n1ᵀ/N) diag(√n)`: `(Û, κ, V̂)`, κ descending, `κ_K` set to exactly 0."""
    big_n = n.sum()
    y_hat = (np.eye(n.size) - np.outer(n, np.ones(n.size)) / big_n) * np.sqrt(n)[None, :]
    u, kappa, vt = np.linalg.svd(y_hat)
    kappa = kappa.copy()
    kappa[-1] = 0.0  # Ŷ √n = 0, so rank Ŷ = K − 1 exactly.
    return u, kappa, vt.T


def survival_threshold(depth: int, num_samples: float, lam_product: float) -> float:
    """The survival threshold `τ_L`: direction j survives iff `κ_j² > τ_L`.

        τ_L = L² N (N Π)^{1/L} / (L−1)^{(L−1)/L}   (with 0⁰ = 1)


    Implements the survival condition of Thm 4.3 of Liu 2024 (`τ_1 = N² λ_W λ_H`); corrected as
    in errata E-LI2 (the remark's sign is reversed) and E-LI4 (the root is the L-th).

    **Arguments:**

    - `depth`: `L ≥ 1`.
    - `num_samples`: `N`.
    - `lam_product`: `Π = λ_{W_1} ⋯ λ_{W_L} λ_H`.

    **Returns:** `τ_L` as a float.
    """
    big_l = float(depth)
    return big_l**2 * num_samples * (num_samples * lam_product) ** (1.0 / big_l) / (
        (big_l - 1.0) ** ((big_l - 1.0) / big_l)
    )


def _scalar_minimiser(alpha: float, depth: int) -> float:
    """Global minimiser over `x ≥ 0` of `g(x) = 1/(1+x^L) + α x` (Lemma A.2's normalisation)."""
    if depth == 1:
        # g is convex: stationarity 1/(1+x)² = α.
        return max(alpha**-0.5 - 1.0, 0.0)
    big_l = float(depth)

    def slope(x):  # L x^{L-1}/(1+x^L)², increasing then decreasing; peak at x^L = (L-1)/(L+1)
        return big_l * x ** (big_l - 1.0) / (1.0 + x**big_l) ** 2

    x_peak = ((big_l - 1.0) / (big_l + 1.0)) ** (1.0 / big_l)
    if alpha >= slope(x_peak):
        return 0.0  # no interior stationary point: g is increasing
    # The largest root lies on the decreasing branch; slope(x) <= L x^{-L-1} bounds it above.
    x_hi = max(2.0 * x_peak, (big_l / alpha) ** (1.0 / (big_l + 1.0)) * 1.01)
    x = brentq(lambda t: slope(t) - alpha, x_peak, x_hi, xtol=1e-15, rtol=1e-15, maxiter=500)
    # Among the candidates {0, largest root} keep the smaller g; ties (κ² = τ_L exactly) go to 0.
    g_root = 1.0 / (1.0 + x**big_l) + alpha * x
    return x if g_root < 1.0 else 0.0


def mse_free_bias_solution(
    class_sizes: Sequence[float],
    dim: int,
    widths: Sequence[int],
    lam_w: float | Sequence[float],
    lam_h: float,
) -> TheorySolution:
    """Analytic global minimum of the L-extended MSE UFM with a free (unpenalised) bias.

    With `Ŷ = (I − n1ᵀ/N) diag(√n) = Û diag(κ) V̂ᵀ`, `Π = λ_{W_1}⋯λ_{W_L} λ_H`,
    `c = λ_{W_1}^{L−1}/(λ_{W_2}⋯λ_{W_L})` and `r = min(K, d_0, …, d_{L−1})`:

        b* = n/N,   τ_L = L² N (NΠ)^{1/L} / (L−1)^{(L−1)/L},
        x_j = argmin_{x≥0} 1/(1+x^L) + α_j x,   α_j = L N (NΠ)^{1/L}/κ_j²
              (x_j = 0 unless j ≤ r and κ_j² > τ_L)
        σ_j² = (Nλ_H/c)^{1/L} x_j                     (singular values of W_1)
        sv_j(W_l) = √(λ_{W_1}/λ_{W_l}) σ_j,   sv_j(P) = √(Nλ_H x_j^L),
        sv_j(H̄D) = √(λ_{W_1}/λ_H) σ_j
        P H̄ D = Û diag(κ_j x_j^L/(1+x_j^L)) V̂ᵀ,   H̄ᵀH̄ = D⁻¹ V̂ diag(sv(H̄D)²) V̂ᵀ D⁻¹
        F* = Σ_{j≤r} (κ_j²/2N) [1/(1+x_j^L) + α_j x_j]  +  Σ_{j>r} κ_j²/(2N).

    Implements Thm 4.3 of Liu 2024 (with Lemma A.2 and proof B.3); corrected as in errata E-LI1
    (`P H̄ D V̂` identity), E-LI2 (collapse sign), E-LI3 (`c`), E-LI4 (L-th root), E-LI6 (`r`
    includes `d_0`), E-LI8 (`Υ₂`), E-LI9 (the constant dropped from B.13) and E-LI10 (`V_{W_1}`).

    Conventions: the paper's objective is exactly `ufm_jax`'s (`1/(2N)` data term, `λ/2`
    penalties, `λ_H` on the whole `‖H‖_F²`, `W_1` nearest the features), so `lam_w[l-1] = λ_{W_l}`
    and `lam_h = λ_H` unchanged. Needs every `λ > 0`.

    The minimiser is unique up to rotations of the hidden spaces, except (flagged by
    `details["unique"] = False`) when some `κ_j² = τ_L` (x = 0 and x = (L−1)^{1/L} tie; 0 is
    returned) or when the rank limit `r` cuts through a block of equal surviving `κ` (then
    `mean_gram` and `mean_logits` are one of several optima; singular values and objective are
    still exact).

    **Arguments:**

    - `class_sizes`: `n_1..n_K`, each > 0 (any reals), `K ≥ 2`.
    - `dim`: the feature dimension `d = d_0`.
    - `widths`: hidden widths `(d_1, …, d_{L−1})`; `()` for `L = 1`.
    - `lam_w`: `λ_W > 0` for every layer, or one per layer `W_1..W_L`.
    - `lam_h`: `λ_H > 0`.

    **Returns:** a `TheorySolution`; `regime` is `"s/(K−1) directions"` (e.g. `"4/9 directions"`)
    when `s ≥ 1` singular directions of `Ŷ` survive, else `"collapsed"`. `details` holds `kappa`
    (all K singular values of `Ŷ`), `tau` (`τ_L`), `num_surviving`, `rank_limit` (`r`), `x`,
    `alpha` (Lemma A.2 normalisation, `inf` where `κ_j = 0`), `c`, `feature_singular_values` (of
    the full `H`, = of `H̄D`, per direction j), `output_singular_values` (`z_j` of `P H̄ D`),
    `width_limited` (a direction with `κ_j² > τ_L` is cut by `r`) and `unique`.

    **Raises:** `ValueError` naming the bad argument.
    """
    n, dims, lam_w_arr, lam_h = _inputs(class_sizes, dim, widths, lam_w, lam_h)
    num_classes = n.size
    depth = len(dims) - 1
    big_n = float(n.sum())
    u_hat, kappa, v_hat = _label_svd(n)

    lam_product = float(np.prod(lam_w_arr)) * lam_h
    c = lam_w_arr[0] ** (depth - 1) / float(np.prod(lam_w_arr[1:]))  # empty product = 1 for L = 1
    tau = survival_threshold(depth, big_n, lam_product)
    rank_limit = min(dims)  # min(K, d_0, …, d_{L−1}); d_L = K is in dims
    root = (big_n * lam_product) ** (1.0 / depth)

    alpha = np.full(num_classes, np.inf)
    positive = kappa > 0
    alpha[positive] = depth * big_n * root / kappa[positive] ** 2
    x = np.zeros(num_classes)
    for j in range(min(rank_limit, num_classes)):
        if kappa[j] ** 2 > tau:
            x[j] = _scalar_minimiser(alpha[j], depth)
    alive = x > 0
    num_surviving = int(alive.sum())

    x_pow = x**depth
    sigma = np.sqrt((big_n * lam_h / c) ** (1.0 / depth) * x)  # singular values of W_1
    sv_product = np.sqrt(big_n * lam_h * x_pow)
    sv_e = np.sqrt(lam_w_arr[0] / lam_h) * sigma  # of Ē = H̄D (= those of H)
    z = sv_product * sv_e  # of P Ē; = κ x^L/(1+x^L) at the optimum (corrected identity, E-LI1)

    alpha_x = np.zeros(num_classes)
    alpha_x[alive] = alpha[alive] * x[alive]  # α = ∞ where κ = 0, and there x = 0
    # g_j = 1 for dead directions and for j > r: the constant that (B.13) drops (E-LI9).
    objective = float(np.sum(kappa**2 / (2 * big_n) * (1 / (1 + x_pow) + alpha_x)))

    d_inv = 1.0 / np.sqrt(n)
    e_gram = (v_hat * sv_e**2) @ v_hat.T  # ĒᵀĒ
    mean_gram = d_inv[:, None] * e_gram * d_inv[None, :]
    mean_gram = 0.5 * (mean_gram + mean_gram.T)
    mean_logits = (u_hat * z) @ v_hat.T * d_inv[None, :]
    mean_sv = np.sqrt(np.clip(np.linalg.eigvalsh(mean_gram), 0.0, None))

    weight_sv = tuple(
        padded_singular_values(
            np.sqrt(lam_w_arr[0] / lam_w_arr[l]) * sigma, min(dims[l], dims[l + 1])
        )
        for l in range(depth)
    )

    regime = f"{num_surviving}/{num_classes - 1} directions" if num_surviving else "collapsed"
    return TheorySolution(
        objective=objective,
        regime=regime,
        mean_gram=mean_gram,
        mean_logits=mean_logits,
        bias=n / big_n,
        weight_singular_values=weight_sv,
        product_singular_values=padded_singular_values(sv_product, min(num_classes, dims[0])),
        mean_singular_values=padded_singular_values(mean_sv, min(dims[0], num_classes)),
        source=SOURCE,
        details={
            "kappa": kappa,
            "tau": tau,
            "num_surviving": num_surviving,
            "rank_limit": rank_limit,
            "x": x,
            "alpha": alpha,
            "c": c,
            "feature_singular_values": sv_e,
            "output_singular_values": z,
            "width_limited": bool(np.any(kappa[rank_limit:] ** 2 > tau)),
            "unique": _unique(kappa, tau, rank_limit),
        },
    )


def _unique(kappa: np.ndarray, tau: float, rank_limit: int) -> bool:
    """False at an exact tie `κ_j² = τ_L` (x = 0 and x = (L−1)^{1/L} tie), or when the rank limit `r`
    cuts through a block of equal surviving `κ` (then `H̄ᵀH̄`, `P H̄` are one of several optima)."""
    tie = bool(np.any(np.isclose(kappa[kappa > 0] ** 2, tau, rtol=1e-12, atol=0.0)))
    cut = False
    if rank_limit < kappa.size:
        last_in, first_out = kappa[rank_limit - 1], kappa[rank_limit]
        cut = bool(first_out**2 > tau and np.isclose(last_in, first_out, rtol=1e-10, atol=0.0))
    return not (tie or cut)


def surviving_direction_thresholds(
    class_sizes: Sequence[float],
    dim: int,
    widths: Sequence[int] = (),
    lam_w: float | Sequence[float] = 1.0,
    lam_h: float = 1.0,
) -> np.ndarray:
    """Regularisation scale at which each direction of `Ŷ` dies (phase boundaries for sweeps).

    Scale every regulariser by one factor `s`: `λ_{W_l} = s·lam_w[l-1]`, `λ_H = s·lam_h`. Then
    `τ_L(s) = s^{(L+1)/L} τ_L(1)`, so direction j survives iff `s < s_j` with

        s_j = (κ_j² / τ_L(1))^{L/(L+1)}
            = [κ_j² (L−1)^{(L−1)/L} / (L² N^{(L+1)/L} Π̄^{1/L})]^{L/(L+1)},
        Π̄ = (Π_l lam_w[l]) · lam_h,

    and `s_j = 0` for `j > r = min(K, d_0, …, d_{L−1})` (never alive). With the defaults (all `λ`
    equal to `s`), `s_j` is the common `λ_crit,j` of the notes' §6 tables. For `L ≥ 2` the
    direction's singular values jump from `x = (L−1)^{1/L}` to 0 at `s_j`; for `L = 1` they shrink
    continuously to 0.

    Implements the survival condition of Thm 4.3 of Liu 2024; corrected as in errata E-LI2,
    E-LI4, E-LI6.

    **Arguments:**

    - `class_sizes`, `dim`, `widths`: as in `mse_free_bias_solution`.
    - `lam_w`: the relative layer weights `lam_w` (one number or one per layer), > 0; default 1.
    - `lam_h`: the relative `λ_H` weight, > 0; default 1.

    **Returns:** `s_j` for the `K − 1` nonzero-κ directions, in the order of descending `κ_j`
    (non-increasing), shape `(K − 1,)`.

    **Raises:** `ValueError` naming the bad argument.
    """
    n, dims, lam_w_arr, lam_h = _inputs(class_sizes, dim, widths, lam_w, lam_h)
    depth = len(dims) - 1
    _, kappa, _ = _label_svd(n)
    tau_unit = survival_threshold(depth, float(n.sum()), float(np.prod(lam_w_arr)) * lam_h)
    thresholds = (kappa[:-1] ** 2 / tau_unit) ** (depth / (depth + 1.0))
    thresholds[min(dims):] = 0.0
    return thresholds
