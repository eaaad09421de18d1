"""Analytic global minimum of the ReLU-constrained (`H ≥ 0`), bias-free cross-entropy UFM.

Dang, Tran, Nguyen, Ho (Jan 2024), "Neural Collapse for Cross-entropy Class-Imbalanced Learning with
Unconstrained ReLU Feature Model", Theorem 1, Proposition 1, Corollary 4 — with the corrections listed in
`docs/errata.md` (ids `E-RL1` … `E-RL9`).

**Problem** (paper eq. (4); identical to `ufm_jax.Problem` with `loss="ce"`, `bias="none"`, `nonneg=True`,
depth 1, so the convention mapping is the identity):

    min_{W, H ≥ 0}  (1/N) Σ_k Σ_{i ≤ n_k} CE(W h_{k,i}, k) + (λ_W/2) ‖W‖_F² + (λ_H/2) ‖H‖_F²

with `W ∈ R^{K×d}` (rows `w_kᵀ`), `H ∈ R^{d×N}`, `N = Σ_k n_k`. The CE term is averaged over the `N` samples,
the penalties are plain (not averaged) sums with the ½ — exactly the paper's `L0` — and `λ_W` here is the
paper's `λ_W`, `λ_H` the paper's `λ_H`, `W_1 = W` (no transposition).

**Solution** (corrected per E-RL1: `√(λ_W λ_H)` where the paper prints `λ_W λ_H`):

    r_k = N √((K−1)/K) √(λ_W λ_H) / √n_k
    M_k = log((K−1)(1/r_k − 1))  if r_k < (K−1)/K  (class alive), else 0 (class dead, h̄_k = 0)
    x_k = ‖h̄_k‖² = √((K−1)/K · (λ_W/λ_H) / n_k) · M_k
    h̄_kᵀ h̄_l = 0 (k ≠ l; disjoint supports since H̄ ≥ 0)
    w_k = √(λ_H / (λ_W K(K−1))) (K √n_k h̄_k − Σ_m √n_m h̄_m)          (E-RL3: index k, not m / K)
    W h̄_k = M_k (e_k − 1/K)
    L* = Σ_k (n_k/N) log(1 + (K−1) e^{−M_k}) + λ_H Σ_k n_k x_k

Class `k` is dead iff `r_k ≥ (K−1)/K`, i.e. iff `n_k ≤ C = N² K/(K−1) λ_W λ_H` (Cor. 4).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from .. import _validation as V
from ._solution import TheorySolution, not_applicable, padded_singular_values

SOURCE = (
    "Dang, Tran, Nguyen, Ho 2024 (UFM+ cross-entropy, imbalanced), Thm 1 + Prop 1 + Cor 4; "
    "corrected as in errata E-RL1 (sqrt(lam_W lam_H) in eqs. 6, 41, 42), E-RL3 (w_k index, eq. 10/45)"
)


def _inputs(class_sizes, lam_w, lam_h) -> tuple[np.ndarray, float, float]:
    """Checked `(n, λ_W, λ_H)` (one layer: one number each)."""
    return V.class_sizes("class_sizes", class_sizes), V.positive("lam_w", lam_w), V.positive("lam_h", lam_h)


def _margin_ratio(n: np.ndarray, lam_w: float, lam_h: float) -> np.ndarray:
    """`r_k = N √((K−1)/K) √(λ_W λ_H) / √n_k` (E-RL1)."""
    K = n.size
    return n.sum() * math.sqrt((K - 1) / K) * math.sqrt(lam_w * lam_h) / np.sqrt(n)


def _margins(r: np.ndarray, K: int) -> tuple[np.ndarray, np.ndarray]:
    alive = r < (K - 1) / K
    M = np.zeros_like(r)
    M[alive] = np.log((K - 1) * (1.0 / r[alive] - 1.0))
    M = np.maximum(M, 0.0)  # rounding exactly at the threshold
    return M, alive


@dataclasses.dataclass(frozen=True)
class ReluDeadThresholds:
    """Where each class of the ReLU-constrained CE UFM dies (`h̄_k = 0`), for phase-boundary lines.

    All conditions are "dead iff ..." with the boundary itself dead (the margin `M_k` is 0 there, and
    `‖h̄_k‖ → 0` continuously as it is approached).

    **Fields:**

    - `size_threshold`: `C = N² K/(K−1) λ_W λ_H`; class `k` is dead iff `n_k ≤ C` (Cor. 4, `N` fixed).
    - `lam_product_thresholds`: shape `(K,)`, `(K−1) n_k / (K N²)`; class `k` is dead iff
      `λ_W λ_H ≥` this (sizes fixed). The solution depends on `(λ_W, λ_H)` only through this product,
      apart from the scale `√(λ_W/λ_H)` of the features.
    - `lam_h_thresholds`: shape `(K,)`, the same at the given `λ_W`: dead iff `λ_H ≥` this.
    - `lam_w_thresholds`: shape `(K,)`, the same at the given `λ_H`: dead iff `λ_W ≥` this.
    - `own_size_interval`: shape `(K, 2)`, `[n_lo, n_hi]`: varying `n_k` alone (others fixed, so `N`
      varies with it), class `k` is alive iff `n_lo < n_k < n_hi`; `[nan, nan]` if it is dead for every
      `n_k > 0`. (Large `n_k` also kills it, because `N² / n_k` grows.)
    - `ratios`: shape `(K,)`, `r_k / ((K−1)/K)` at the given point; `≥ 1` means dead.
    """

    size_threshold: float
    lam_product_thresholds: np.ndarray
    lam_h_thresholds: np.ndarray
    lam_w_thresholds: np.ndarray
    own_size_interval: np.ndarray
    ratios: np.ndarray


def relu_dead_class_thresholds(class_sizes, lam_w, lam_h) -> ReluDeadThresholds:
    """Thresholds at which each class dies in the ReLU-constrained CE UFM (bias-free, `H ≥ 0`).

    Class `k` is dead iff `r_k = N √((K−1)/K) √(λ_W λ_H)/√n_k ≥ (K−1)/K`, equivalently
    `n_k ≤ N² K/(K−1) λ_W λ_H`, equivalently `λ_W λ_H ≥ (K−1) n_k/(K N²)`.

    Implements Thm 1 / Cor 4 of Dang et al. 2024; corrected as in erratum E-RL1 (the sqrt form, which
    is the form the paper's own threshold statements on lines 104, 106, 134, 204 already use).

    **Arguments:**

    - `class_sizes`: `n_1..n_K`, each > 0, `K >= 2` (floats allowed).
    - `lam_w`: `λ_W > 0` (a number, or a one-element list).
    - `lam_h`: `λ_H > 0`.

    **Returns:**

    A `ReluDeadThresholds` (see its fields) giving the threshold in `n_k`, in `λ_W λ_H`, in `λ_H` at
    fixed `λ_W`, in `λ_W` at fixed `λ_H`, and the alive interval of each `n_k` with the others fixed.

    **Raises:** `ValueError` naming the bad argument.
    """
    n, lw, lh = _inputs(class_sizes, lam_w, lam_h)
    K, N = n.size, float(n.sum())
    kappa = K / (K - 1) * lw * lh
    prod = (K - 1) * n / (K * N**2)
    # Own-size interval: dead iff kappa (n + R)^2 >= n, R = N - n_k.
    R = N - n
    disc = 1.0 - 4.0 * kappa * R
    interval = np.full((K, 2), np.nan)
    ok = disc >= 0
    s = np.sqrt(np.where(ok, disc, 0.0))
    b = 1.0 - 2.0 * kappa * R
    # n_lo = (b - s)/(2 kappa) = 2 kappa R^2 / (b + s) (stable form; b + s > 0 when disc >= 0 since b >= s).
    interval[ok, 0] = (2.0 * kappa * R[ok] ** 2) / (b[ok] + s[ok])
    interval[ok, 1] = (b[ok] + s[ok]) / (2.0 * kappa)
    r = _margin_ratio(n, lw, lh)
    return ReluDeadThresholds(
        size_threshold=float(N**2 * kappa),
        lam_product_thresholds=prod,
        lam_h_thresholds=prod / lw,
        lam_w_thresholds=prod / lh,
        own_size_interval=interval,
        ratios=r / ((K - 1) / K),
    )


def relu_ce_point(class_sizes, dim: int, lam_w, lam_h) -> tuple[np.ndarray, np.ndarray]:
    """One explicit global minimiser `(W, H̄)` of the ReLU-constrained CE UFM.

    `H̄ = [√x_1 e_1, …, √x_K e_K] ∈ R^{d×K}` (coordinate frame; any disjoint-support non-negative frame with
    these norms is equally optimal, E-RL8) and `W = c (K H̄ D − H̄ D 1 1ᵀ)ᵀ`, `D = diag(√n)`,
    `c = √(λ_H/(λ_W K(K−1)))`. Every sample of class `k` has feature `h̄_k`.

    Implements Thm 1 of Dang et al. 2024; corrected as in errata E-RL1 and E-RL3.

    **Arguments:** as `relu_ce_solution`.

    **Returns:**

    `(W, Hbar)` with `W` of shape `(K, dim)` and `Hbar` of shape `(dim, K)`, float64.

    **Raises:** as `relu_ce_solution`.
    """
    n, lw, lh = _inputs(class_sizes, lam_w, lam_h)
    K = n.size
    dim = _check_dim(dim, K)
    x = _feature_sq_norms(n, lw, lh)
    Hbar = np.zeros((dim, K))
    Hbar[np.arange(K), np.arange(K)] = np.sqrt(x)
    c = math.sqrt(lh / (lw * K * (K - 1)))
    HD = Hbar * np.sqrt(n)[None, :]
    W = c * (K * HD - HD.sum(axis=1, keepdims=True)).T
    return W, Hbar


def _check_dim(dim, K: int) -> int:
    """`d` as an int; Theorem 1's condition `d >= K` else `TheoremNotApplicable`."""
    dim = V.integer("dim", dim, 1)
    if dim < K:
        raise not_applicable("dim", dim, f"Theorem 1 of Dang et al. 2024 needs dim >= K = {K} (the case "
                             "dim < K is open)")
    return dim


def _feature_sq_norms(n: np.ndarray, lam_w: float, lam_h: float) -> np.ndarray:
    K = n.size
    M, _ = _margins(_margin_ratio(n, lam_w, lam_h), K)
    return np.sqrt((K - 1) / K * (lam_w / lam_h) / n) * M


def relu_ce_solution(class_sizes, dim: int, lam_w, lam_h) -> TheorySolution:
    """The global minimum of the bias-free cross-entropy UFM with ReLU-constrained features `H ≥ 0`.

    Objective (identical to `ufm_jax.Problem(loss="ce", bias="none", nonneg=True)`, depth 1; the
    paper's eq. (4) uses the same `1/N`, `λ/2` and `W ∈ R^{K×d}` conventions):
    `(1/N) Σ_i CE(W h_i, y_i) + (λ_W/2)‖W‖_F² + (λ_H/2)‖H‖_F²`, `H ≥ 0`.

    With `r_k = N √((K−1)/K) √(λ_W λ_H)/√n_k`:
    `M_k = log((K−1)(1/r_k − 1))` if `r_k < (K−1)/K`, else `0` (dead class, `h̄_k = 0`);
    `‖h̄_k‖² = x_k = √((K−1)/K · (λ_W/λ_H)/n_k) M_k`; `h̄_kᵀh̄_l = 0`;
    `w_k = √(λ_H/(λ_W K(K−1))) (K√n_k h̄_k − Σ_m √n_m h̄_m)`; `W h̄_k = M_k (e_k − 1/K)`;
    `L* = Σ_k (n_k/N) log(1 + (K−1)e^{−M_k}) + λ_H Σ_k n_k x_k`.

    Implements Thm 1 (with Prop 1 and Cor 4) of Dang et al. 2024; corrected as in erratum E-RL1
    (`√(λ_W λ_H)` in eqs. (6), (41), (42)) and E-RL3 (index of `h̄_k` in the classifier formula).

    **Arguments:**

    - `class_sizes`: `n_1..n_K`, each > 0 (floats allowed), `K >= 2`.
    - `dim`: feature dimension `d`; must be `>= K` (Theorem 1's assumption).
    - `lam_w`: `λ_W > 0` (a number or a one-element list: one layer only).
    - `lam_h`: `λ_H > 0`.

    **Returns:**

    A `TheorySolution`. `regime` is `"all-alive"`, `"{j}-dead"` (e.g. `"1-dead"`, `j` of the `K` classes
    have `h̄_k = 0`: minority collapse) or `"all-dead"` (complete collapse, `W = 0`, `H = 0`,
    `L* = log K`). `mean_gram = diag(x)`, `mean_logits` has column `k` equal to `M_k(e_k − 1/K)`,
    `bias = 0`. `details` holds: `margins` (`M_k`), `ratios_r` (`r_k`), `feature_sq_norms` (`x_k`),
    `weight_gram` (`WWᵀ`, Prop. 1), `weight_sq_norms`, `alive` (bool mask), `dead_classes` (tuple of
    0-based indices), `num_dead`, `size_threshold` (`C`), `lam_product_thresholds`, `weight_sq_frobenius`
    and `feature_sq_frobenius` (`‖W‖_F²`, `‖H‖_F² = Σ n_k x_k`; `λ_W‖W‖² = λ_H‖H‖²`, Lemma 1).

    **Raises:** `TheoremNotApplicable` naming `dim` if `d < K`; `ValueError` naming any other bad argument.
    """
    n, lw, lh = _inputs(class_sizes, lam_w, lam_h)
    K = n.size
    dim = _check_dim(dim, K)
    N = float(n.sum())
    r = _margin_ratio(n, lw, lh)
    M, alive = _margins(r, K)
    x = np.sqrt((K - 1) / K * (lw / lh) / n) * M

    # W restricted to the K support coordinates: W = c (K I − 11ᵀ) diag(√(n x)).
    c = math.sqrt(lh / (lw * K * (K - 1)))
    Wk = c * (K * np.eye(K) - np.ones((K, K))) * np.sqrt(n * x)[None, :]
    weight_gram = Wk @ Wk.T
    logits = M[None, :] * (np.eye(K) - 1.0 / K)  # column k: M_k (e_k − 1/K)
    objective = float(np.sum(n / N * np.log1p((K - 1) * np.exp(-M))) + lh * np.sum(n * x))

    dead = tuple(int(k) for k in np.flatnonzero(~alive))
    if not dead:
        regime = "all-alive"
    elif len(dead) == K:
        regime = "all-dead"
    else:
        regime = f"{len(dead)}-dead"

    thresholds = relu_dead_class_thresholds(n, lw, lh)
    sv_w = padded_singular_values(np.linalg.svd(Wk, compute_uv=False), min(K, dim))
    return TheorySolution(
        objective=objective,
        regime=regime,
        mean_gram=np.diag(x),
        mean_logits=logits,
        bias=np.zeros(K),
        weight_singular_values=(sv_w,),
        product_singular_values=sv_w.copy(),
        mean_singular_values=padded_singular_values(np.sqrt(x), min(dim, K)),
        source=SOURCE,
        details={
            "margins": M,
            "ratios_r": r,
            "feature_sq_norms": x,
            "weight_gram": weight_gram,
            "weight_sq_norms": np.diag(weight_gram).copy(),
            "alive": alive,
            "dead_classes": dead,
            "num_dead": len(dead),
            "size_threshold": thresholds.size_threshold,
            "lam_product_thresholds": thresholds.lam_product_thresholds,
            "weight_sq_frobenius": float(np.sum(Wk**2)),
            "feature_sq_frobenius": float(np.sum(n * x)),
        },
    )
