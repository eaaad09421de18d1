"""The convex `K×K` reduction of the one-layer cross-entropy UFM, shared by every CE solution here.

Hong & Ling (2023), "Neural Collapse for Unconstrained Feature Model under Cross-entropy Loss with
Imbalanced Data" (arXiv 2309.09725), eq. (2.3), Thm 3.1(a), Lemma 5.2 / Cor. 5.3 and Thm 3.1(d) — with
the corrections listed in `docs/errata.md` (ids `E-HLk`).

**Problem** (`ufm_jax.Problem` with `loss="ce"`, depth 1, `bias="none"` or `"regularised"`):

    min_{W, H, b}  (1/N) Σ_i CE(W h_i + b, y_i) + (λ_W/2)‖W‖_F² + (λ_H/2)‖H‖_F² + (λ_b/2)‖b‖²

with `W ∈ R^{K×d}`. The paper writes `W ∈ R^{d×K}` and logits `Wᵀh`; its `W` is our `Wᵀ`. Everything
below is stated in our convention. With `λ_Z = √(λ_W λ_H)`, `D = diag(n)` and `Z̄ = W H̄` (column `k`: the
bias-free logit of class `k`), the problem reduces to the convex `K×K` problem

    min_{Z̄, b}  Σ_k (n_k/N) CE(z̄_k + b, e_k) + λ_Z ‖Z̄ D^{1/2}‖_* + (λ_b/2)‖b‖²

(valid for `d >= K − 1`, the largest rank `Z̄` can have since `1ᵀZ̄ = 0` at the optimum), and the factors
follow from the SVD `Z̄ D^{1/2} = Ū Σ̄ V̄ᵀ` as (erratum E-HL11)

    W = (λ_H/λ_W)^{1/4} Ū Σ̄^{1/2} Qᵀ,   H̄ = (λ_W/λ_H)^{1/4} Q Σ̄^{1/2} V̄ᵀ D^{-1/2},   H = H̄ Y,

for any `Q ∈ R^{d×K}` with orthonormal columns. This module holds the pieces every closed form needs:
the reduced objective, its KKT certificate, the assembly of a `TheorySolution` from `Z̄`, the explicit
factors, and the within-cluster identity.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import logsumexp

from .. import _validation as V
from ._solution import TheorySolution, factor_geometry, not_applicable


def reduction_dim(dim, num_classes: int) -> int:
    """`d` as an int; `TheoremNotApplicable` (naming `dim`) unless `d >= K − 1` (the reduction is exact)."""
    dim = V.integer("dim", dim, 1)
    if dim < num_classes - 1:
        raise not_applicable(
            "dim", dim, f"the convex reduction needs d >= K - 1 = {num_classes - 1} (the optimal mean "
            "logits have rank <= K - 1, so it is exact for every d >= K - 1)")
    return dim


def reduced_objective(Z, bias, n, lam_z, lam_b) -> float:
    """`Σ_k (n_k/N) CE(z̄_k + b, e_k) + λ_Z ‖Z̄ D^{1/2}‖_* + (λ_b/2)‖b‖²` (no bias term if `λ_b = None`)."""
    logits = Z + bias[:, None]
    ce = logsumexp(logits, axis=0) - np.diag(logits)
    value = float(np.sum(n / n.sum() * ce))
    value += lam_z * float(np.sum(np.linalg.svd(Z * np.sqrt(n)[None, :], compute_uv=False)))
    if lam_b is not None:
        value += 0.5 * lam_b * float(bias @ bias)
    return value


def softmax_columns(logits):
    """`softmax` of every column of `logits` (the class probabilities `P̄`)."""
    e = np.exp(logits - logits.max(axis=0, keepdims=True))
    return e / e.sum(axis=0, keepdims=True)


def kkt_certificate(Z, bias, n, lam_z, lam_b) -> dict:
    """Convex KKT certificate of the reduced problem (Lemma 5.2 / Cor. 5.3; note §1.5).

    `G = (I − P̄) D^{1/2} / (N λ_Z)` must equal `U Vᵀ + R` with `UᵀR = 0`, `RV = 0`, `‖R‖_2 ≤ 1`, and
    `(I − P̄) n / N = λ_b b`. Returns the residuals (`kkt_residual`, `bias_residual`), the rank used
    (`kkt_rank`) and `certificate_tau = ‖R‖_2`.
    """
    N = n.sum()
    K = n.size
    P = softmax_columns(Z + bias[:, None])
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


def assemble(Z, bias, n, dim, lam_w, lam_h, lam_b, regime, source, details) -> TheorySolution:
    """The `TheorySolution` of a closed-form `(Z̄, b)`: objective, `H̄ᵀH̄`, singular values, certificate.

    `H̄ᵀH̄ = √(λ_W/λ_H) D^{-1/2} V̄ Σ̄ V̄ᵀ D^{-1/2}` and `σ(W) = (λ_H/λ_W)^{1/4} Σ̄^{1/2}` from the factors of
    note §1.6 (erratum E-HL11); `details` gains the KKT certificate (`kkt_certificate`), `lam_z` and
    `nuclear_norm = ‖Z̄D^{1/2}‖_*` (`λ_W‖W‖² = λ_H‖H‖² = λ_Z ×` this).
    """
    lam_z = math.sqrt(lam_w * lam_h)
    _, s, Vt = _svd(Z * np.sqrt(n)[None, :])
    gram, sv_w, sv_h = factor_geometry(s, Vt.T, n, dim, lam_w, lam_h)
    details = dict(details)
    details.update(kkt_certificate(Z, bias, n, lam_z, lam_b))
    details.setdefault("lam_z", lam_z)
    details["nuclear_norm"] = float(np.sum(s))
    return TheorySolution(
        objective=reduced_objective(Z, bias, n, lam_z, lam_b),
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
    - `dim`: `d >= 1`.
    - `lam_w`, `lam_h`: `λ_W, λ_H > 0`.

    **Returns:** `(W, H̄)` with shapes `(K, d)` and `(d, K)`; every feature of class `k` equals `H̄[:, k]`.

    **Raises:** `ValueError` naming the bad argument.
    """
    n = V.class_sizes("class_sizes", class_sizes)
    K = n.size
    Z = np.asarray(mean_logits, dtype=np.float64)
    if Z.shape != (K, K):
        raise V.fail("mean_logits", f"an array of shape {Z.shape}", f"expected shape (K, K) = ({K}, {K})")
    dim = V.integer("dim", dim, 1)
    lw, lh = V.positive("lam_w", lam_w), V.positive("lam_h", lam_h)
    U, s, Vt = _svd(Z * np.sqrt(n)[None, :])
    r = min(K, dim)
    W = np.zeros((K, dim))
    Hbar = np.zeros((dim, K))
    W[:, :r] = (lh / lw) ** 0.25 * U[:, :r] * np.sqrt(s[:r])[None, :]
    Hbar[:r, :] = (lw / lh) ** 0.25 * (np.sqrt(s[:r])[:, None] * Vt[:r]) / np.sqrt(n)[None, :]
    return W, Hbar


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
    n = V.class_sizes("class_sizes", class_sizes)
    return np.maximum(0.0, 1.0 - n.sum() * V.positive("lam_z", lam_z) / np.sqrt(n))
