"""What a convex certificate guarantees: bounds on a `convex_solution`'s distance from the exact minimiser.

`convex_solution` stops at `kkt = dist(0, ∂F(x)) ≤ tol` in the normalised variables `x = (M, b)`,
`M = Z̄Π^{1/2}`. For `g ∈ ∂F(x)` with `‖g‖ = kkt` and `0 ∈ ∂F(x*)`: `kkt·d ≥ ⟨g, x − x*⟩ ≥ α d²`, `d = ‖x − x*‖`
(α-strong convexity of the smooth part on the subspace S that holds every iterate and the minimiser,
monotonicity of the nuclear norm's subdifferential), so `d ≤ kkt/α` and `0 ≤ F(x) − F* ≤ kkt·d ≤ kkt²/α`.
Every invariant of the solution is a function of `(M, b)` with a known Lipschitz bound (below), so each
bound here is `kkt/α` times that constant, plus round-off.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy.linalg import block_diag
from scipy.special import softmax

ROUND_OFF = 1e-12   # relative: the round-off of either side's evaluation (sums of K² terms, an SVD)


def _perp(v: np.ndarray) -> np.ndarray:
    """An orthonormal basis of `v⊥` (columns)."""
    return np.linalg.svd(v.reshape(-1, 1))[0][:, 1:]


def curvature(loss, bias_mode, lam_b, sizes, zbar, bias) -> float:
    """`α`: the smallest curvature of the smooth part of `F(M, b)` at `(Z̄, b)` on the subspace S.

    The smooth part `Σ_k π_k ℓ(m_k/√π_k + b, e_k) + (λ_b/2)‖b‖²` has the quadratic form
    `Σ_k (δm_k + √π_k δb)ᵀ H_k (δm_k + √π_k δb) + λ_b‖δb‖²`, `H_k = diag(p_k) − p_k p_kᵀ` (CE) or `I` (MSE).
    S (`_convex_fista`'s docstring): CE keeps `1ᵀM = 0` and `1ᵀb = 0` (which also excludes the CE-invariant
    shifts `δm_k ∝ 1`); a free bias keeps `M√π = 0` (which excludes MSE's `δZ̄ = −u1ᵀ, δb = u`).
    """
    n = np.asarray(sizes, float)
    K = n.size
    sqrt_pi = np.sqrt(n / n.sum())
    nb = 0 if bias_mode == "none" else K
    hess = np.zeros((K * K + nb, K * K + nb))
    P = softmax(zbar + bias[:, None], axis=0)
    for k in range(K):
        A = np.zeros((K, K * K + nb))
        A[np.arange(K), np.arange(K) * K + k] = 1.0        # δm_k; M[i, k] sits at i·K + k
        if nb:
            A[:, K * K:] = sqrt_pi[k] * np.eye(K)            # √π_k δb
        H_k = np.diag(P[:, k]) - np.outer(P[:, k], P[:, k]) if loss == "ce" else np.eye(K)
        hess += A.T @ H_k @ A
    if bias_mode == "regularised":
        hess[K * K:, K * K:] += lam_b * np.eye(K)
    left = _perp(np.ones(K)) if loss == "ce" else np.eye(K)
    right = _perp(sqrt_pi) if bias_mode == "free" else np.eye(K)
    blocks = [np.kron(left, right)] + ([_perp(np.ones(K)) if loss == "ce" else np.eye(K)] if nb else [])
    S = block_diag(*blocks)
    return float(np.linalg.eigvalsh(S.T @ hess @ S)[0])


@dataclasses.dataclass(frozen=True)
class Bounds:
    """Certified errors of one `convex_solution` (max-abs entry errors unless said otherwise).

    - `distance`: `‖(M, b) − (M*, b*)‖_F`; `objective`: `F − F*` (≥ 0).
    - `mean_logits`: `|δZ̄_jk| ≤ ‖δM‖_F/√π_min` (`Z̄ = MΠ^{-1/2}`); `bias`: `‖δb‖ ≤ distance`.
    - `mean_gram`: `H̄ᵀH̄ = √(λ_W/λ_H) D^{-1/2}|√N M|D^{-1/2}` and `‖|A| − |B|‖_F ≤ √2‖A − B‖_F`
      (Araki–Yamagami): `√(λ_W/λ_H)·√N·√2·distance/n_min`.
    - `singular`: `|δσ(Z̄D^{1/2})| ≤ √N‖δM‖_2` (Weyl).
    """

    distance: float
    objective: float
    mean_logits: float
    bias: float
    mean_gram: float
    singular: float
    lam_w: float
    lam_h: float
    num_classes: int

    def weight_singular_values(self, reference) -> np.ndarray:
        """Per entry: `σ(W) = (λ_H/λ_W)^{1/4}√σ(Z̄D^{1/2})`, and `|√a − √b| ≤ min(√δ, δ/√a)`."""
        a = (np.asarray(reference) / (self.lam_h / self.lam_w) ** 0.25) ** 2
        return (self.lam_h / self.lam_w) ** 0.25 * _sqrt_error(a, self.singular) + ROUND_OFF * np.maximum(
            1.0, np.asarray(reference))

    def mean_singular_values(self, reference) -> np.ndarray:
        """Per entry: `σ(H̄)² = eig(H̄ᵀH̄)` moves by `≤ K·mean_gram` (Weyl, `‖·‖_2 ≤ K max|·|`)."""
        a = np.asarray(reference) ** 2
        return _sqrt_error(a, self.num_classes * self.mean_gram) + ROUND_OFF * np.maximum(
            1.0, np.asarray(reference))


def _sqrt_error(a: np.ndarray, delta: float) -> np.ndarray:
    """A bound on `|√a − √b|` given `|a − b| ≤ delta`, `a ≥ 0`: `min(√δ, δ/√a)`."""
    with np.errstate(divide="ignore"):
        return np.minimum(math.sqrt(delta), np.where(a > 0, delta / np.sqrt(np.maximum(a, 1e-300)), np.inf))


def bounds(sol, sizes, lam_w, lam_h) -> Bounds:
    """The certified errors of `sol = convex_solution(...)` for the problem it solved.

    `α` is evaluated at the returned point and halved: along the segment to `x*` (length ≲ 1e-11 here) the
    curvature moves by far less. The returned `M` also has its singular values `≤ 1e-13 max(1, σ_1)` set
    to zero after the certificate: up to `√K·1e-13·max(1, σ_1)` more distance. Round-off (`ROUND_OFF`
    relative) is added to each bound.
    """
    d = sol.details
    n = np.asarray(sizes, float)
    K, N = n.size, n.sum()
    pi = n / N
    alpha = 0.5 * curvature(d["loss"], d["bias"], d["lam_b"], sizes, sol.mean_logits, sol.bias)
    assert alpha > 0, alpha
    M = sol.mean_logits * np.sqrt(pi)[None, :]
    sigma_1 = float(np.linalg.svd(M, compute_uv=False)[0])
    dist = d["kkt_residual"] / alpha + math.sqrt(K) * 1e-13 * max(1.0, sigma_1)

    def scale(q):
        return ROUND_OFF * max(1.0, float(np.max(np.abs(q))))

    return Bounds(
        distance=dist,
        objective=d["kkt_residual"] ** 2 / alpha + scale(sol.objective),
        mean_logits=dist / math.sqrt(pi.min()) + scale(sol.mean_logits),
        bias=dist + scale(sol.bias),
        mean_gram=math.sqrt(lam_w / lam_h) * math.sqrt(N) * math.sqrt(2) * dist / n.min() + scale(sol.mean_gram),
        singular=math.sqrt(N) * dist + scale(math.sqrt(N) * sigma_1),
        lam_w=lam_w, lam_h=lam_h, num_classes=K,
    )
