"""Exact global minimum of the one-layer cross-entropy UFM for any class sizes (Hong & Ling 2023, §3.1).

The problem (the convention of `ufm_jax.Problem`, `loss="ce"`, depth 1):

    min_{W ∈ R^{K×d}, H, b}  (1/N) Σ_i CE(W h_i + b, y_i) + (λ_W/2)‖W‖_F² + (λ_H/2)‖H‖_F² + (λ_b/2)‖b‖²

(`lam_b=None`: bias-free, `b ≡ 0`). With `λ_Z = √(λ_W λ_H)` and `min_{W H = Z} (λ_W‖W‖² + λ_H‖H‖²)/2 =
λ_Z‖Z‖_*` it has the same minimum as a convex problem, which (NC1, Hong & Ling Thm 3.1(a)) reduces to the
K×K problem

    min_{Z̄ ∈ R^{K×K}, b}  Σ_k π_k CE(z̄_k + b, e_k) + λ_Z ‖Z̄ D^{1/2}‖_* + (λ_b/2)‖b‖²,   π_k = n_k/N,

`D = diag(n)`, `Z̄ = W H̄` (column k: the bias-free logits of class k). It is solved here in the
normalised variable `M = Z̄ Π^{1/2}` (`Π = diag(π)`), in which the objective reads

    F(M, b) = Σ_k π_k CE(m_k/√π_k + b, e_k) + μ ‖M‖_* + (λ_b/2)‖b‖²,   μ = λ_Z √N,

(`λ_Z ‖Z̄ D^{1/2}‖_* = μ ‖M‖_*`). Every column block of the Hessian of the smooth part is a softmax
Hessian (norm ≤ ½) whatever the class sizes, so this scaling is well conditioned also for `n_k = 10⁹`
or very unequal classes, and all quantities are O(1). The solver (FISTA with singular-value
thresholding) is `_convex_ce_fista.fista`.

**Certificate.** Iterations stop when the KKT residual (Hong & Ling Lemma 5.2 / Cor. 5.3)

    kkt = dist(0, ∂F(M, b))
        = ‖ ( (I − P̄)Π^{1/2} − μ (U Vᵀ + R*) ,  N^{-1}(I − P̄) n − λ_b b ) ‖_F

is at most `tol`, where `M = U Σ Vᵀ` is the compact SVD and `R*` is the best admissible `R` (`Uᵀ R = 0`,
`R V = 0`, `‖R‖_2 ≤ 1`): the projection of the complement block `(I − UUᵀ) G (I − VVᵀ)` of `G = (I − P̄)Π^{1/2}`
onto the spectral-norm ball of radius `μ`. In the note's (unnormalised) notation the matrix part equals
`√N · ‖N^{-1}(I − P̄)D^{1/2} − λ_Z(UVᵀ + R)‖_F`, i.e. it is measured in units of probabilities and does not
depend on the scale of `N`. The bias part is the bias equation `N^{-1}(I − P̄)n = λ_b b` (absent
bias-free). The convex objective is `1/2`-smooth per column, so at the returned point the objective gap is
at most `kkt · dist(x, x*)`, and `dist(x, x*) ≤ kkt/α` where `α > 0` is the curvature of the smooth part
on the subspace `1ᵀM = 0, 1ᵀb = 0` that holds every iterate (at least the smallest probability, bias-free);
`tol = 1e-12` gives objectives to ~1e-13 in the tested cases.

**Dimension.** The reduction needs `d ≥ rank(Z̄*)`. Lemma 5.2 gives `1_Kᵀ Z̄* = 0`, so `rank(Z̄*) ≤ K − 1`
and every `d ≥ K − 1` has the same minimum and invariants (the paper states `d ≥ K`); this is checked at
run time (`details["column_sum_max"]`, `details["rank"]`). `d < K − 1` raises `TheoremNotApplicable`
(`dim`): the convex value is then only a lower bound unless the minimiser happens to have rank ≤ d.

**Precision.** Everything runs in float64 inside `jax.enable_x64(True)`, whatever the global setting.
"""

from __future__ import annotations

import dataclasses
import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from .. import _validation as V
from ._convex_ce_fista import fista, kkt_of_candidate
from ._reduced_ce import reduction_dim
from ._solution import TheorySolution, padded_singular_values

__all__ = ["ce_convex_solution", "kkt_residual"]

SOURCE = ("Hong & Ling (2023), arXiv 2309.09725: convex reformulation (eq. 2.3), reduced K×K problem "
          "(Thm 3.1(a)), optimality conditions (Lemma 5.2 / Cor. 5.3), factors (Thm 3.1(d) with the "
          "(λ_H/λ_W)^{±1/4} balancing of the seed-001 note §1.6); solved by FISTA/SVT with a KKT certificate")

_RANK_RTOL = 1e-13  # singular values of M = Z̄Π^{1/2} at most this (× max(1, σ_1)) count as zero


def kkt_residual(class_sizes, lam_z, lam_b, zbar, bias=None) -> float:
    """KKT residual `dist(0, ∂F)` of a candidate `(Z̄, b)` of the reduced cross-entropy problem.

    `F` is the reduced objective in the normalised variables `(M = Z̄ Π^{1/2}, b)` (module docstring), so the
    value is `‖((I − P̄)Π^{1/2} − μ(U_r V_rᵀ + R*), N^{-1}(I − P̄)n − λ_b b)‖_F` with `μ = λ_Z √N` — a residual in
    units of probabilities, 0 exactly at the unique minimiser. `lam_b=None` is the bias-free model (the
    bias equation is dropped; `bias` must then be `None` or zero).

    For a candidate that is not exactly low-rank (e.g. `W H̄` from a numerical solver), the rank `r` of
    `M` is chosen to minimise `residual_r + ‖σ_{r+1..K}(M)‖_2` (the second term, times the Lipschitz
    constant 1 of `∇f`, bounds the change of the gradient when the small singular values are dropped).

    **Raises:** `ValueError` naming the bad argument.
    """
    n = V.class_sizes("class_sizes", class_sizes)
    K = n.size
    lam_z = V.positive("lam_z", lam_z)
    lb = V.finite_positive_or_none("lam_b", lam_b)
    zbar = np.asarray(zbar, dtype=np.float64)
    if zbar.shape != (K, K):
        raise V.fail("zbar", f"an array of shape {zbar.shape}", f"expected shape (K, K) = ({K}, {K})")
    if lb is None:
        if bias is not None and np.any(np.asarray(bias) != 0):
            raise V.fail("bias", bias, "expected None or zeros for the bias-free model (lam_b=None)")
        b = np.zeros(K)
    else:
        b = np.zeros(K) if bias is None else np.asarray(bias, dtype=np.float64).reshape(K)
    N = n.sum()
    with jax.enable_x64(True):
        return float(kkt_of_candidate(jnp.asarray(n / N), jnp.asarray(lam_z * math.sqrt(N)),
                                      jnp.asarray(0.0 if lb is None else lb),
                                      jnp.asarray(0.0 if lb is None else 1.0), jnp.asarray(zbar),
                                      jnp.asarray(b)))


def ce_convex_solution(class_sizes, dim, lam_w, lam_h, lam_b=None, *, tol=1e-12, max_steps=200_000,
                       init=None) -> TheorySolution:
    """Global minimum of the one-layer cross-entropy UFM for any class sizes, with a KKT certificate.

    Solves the reduced problem of the module docstring (Hong & Ling 2023, eq. (2.3), Thm 3.1(a), Lemma 5.2
    / Cor. 5.3) and assembles the factors of Thm 3.1(d), corrected as in erratum E-HL11.

    **Arguments:**

    - `class_sizes`: `n_1..n_K` (`K ≥ 2`, any positive numbers; `10⁹` is fine).
    - `dim`: feature dimension `d`; needs `d ≥ K − 1` (module docstring).
    - `lam_w`, `lam_h`: `λ_W, λ_H > 0`; only `λ_Z = √(λ_W λ_H)` enters the objective, the ratio sets the
      balance of the factors.
    - `lam_b`: `λ_b > 0` for the regularised bias, `None` for the bias-free model.
    - `tol`: stop when the KKT residual (`kkt_residual`) is `≤ tol`.
    - `max_steps`: iteration cap; the best iterate is returned and `details["converged"]` is False.
    - `init`: optional warm start, a `TheorySolution` (its `mean_logits`, `bias`) or a pair `(Z̄, b)`.

    **Returns:** a `TheorySolution`. `details` holds `kkt_residual`, `converged`, `iterations`,
    `restarts`, `lam_z`, `N_lam_z` (= `Nλ_Z`), `rank`, `column_sum_max` (`max_k |Σ_j Z̄_jk|`, 0 at the
    minimiser), `collapsed_classes` (tuple of indices), and per equal-size cluster `j` the within-cluster
    gap `p_own − p_other` (`details["clusters"]`, with the theory value `max(0, 1 − Nλ_Z/√n_j)`).

    **Raises:** `TheoremNotApplicable` naming `dim` if `d < K − 1`; `ValueError` naming any bad argument.
    A `RuntimeWarning` (not an error) if `max_steps` ends the iterations before the KKT residual is `≤ tol`.
    """
    n = V.class_sizes("class_sizes", class_sizes)
    dim = reduction_dim(dim, n.size)
    lam_w, lam_h = V.positive("lam_w", lam_w), V.positive("lam_h", lam_h)
    lam_b = V.finite_positive_or_none("lam_b", lam_b)
    tol = V.positive("tol", tol)
    max_steps = V.integer("max_steps", max_steps, 1)
    M0, b0 = _warm_start(init, n, lam_b is not None)
    reduced = _solve(n, math.sqrt(lam_w * lam_h), lam_b, M0, b0, tol, max_steps)
    if not reduced.kkt <= tol:
        warnings.warn(f"ce_convex_solution: KKT residual {reduced.kkt:.3g} > tol={tol:g} after "
                      f"{reduced.iterations} iterations (max_steps); returning the best iterate.",
                      RuntimeWarning, stacklevel=2)
    return _solution(reduced, n, dim, lam_w, lam_h, lam_b, tol)


# ---- the solve ----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Reduced:
    """The certified minimiser of the reduced problem, in the caller's variables `(Z̄, b)`.

    `s`, `V`: singular values and right singular vectors of `M = Z̄ Π^{1/2}` (round-off ones zeroed).
    """

    zbar: np.ndarray
    bias: np.ndarray
    s: np.ndarray
    V: np.ndarray
    kkt: float
    objective: float
    iterations: int
    restarts: int
    step: float


def _warm_start(init, n: np.ndarray, has_bias: bool) -> tuple[np.ndarray, np.ndarray]:
    """`(M0, b0)` from `init` (`None`, a `TheorySolution` or `(Z̄, b)`), in the normalised variables."""
    K = n.size
    if init is None:
        return np.zeros((K, K)), np.zeros(K)
    z0, b0 = (init.mean_logits, init.bias) if isinstance(init, TheorySolution) else init
    z0 = np.asarray(z0, dtype=np.float64)
    if z0.shape != (K, K):
        raise V.fail("init", f"a Z̄ of shape {z0.shape}", f"expected shape (K, K) = ({K}, {K})")
    M0 = z0 * np.sqrt(n / n.sum())[None, :]
    b0 = np.zeros(K) if (b0 is None or not has_bias) else np.asarray(b0, dtype=np.float64).reshape(K)
    return M0, b0


def _solve(n, lam_z, lam_b, M0, b0, tol, max_steps) -> _Reduced:
    """Run FISTA (float64) and return its best iterate as `(Z̄, b)` with the certificate."""
    K = n.size
    N = float(n.sum())
    pi = n / N
    with jax.enable_x64(True):
        out = fista(jnp.asarray(pi), jnp.asarray(lam_z * math.sqrt(N)),
                    jnp.asarray(0.0 if lam_b is None else lam_b), jnp.asarray(0.0 if lam_b is None else 1.0),
                    jnp.asarray(M0), jnp.asarray(b0), jnp.asarray(tol), jnp.asarray(max_steps))
        out = jax.device_get(out)
    M, b, U, V, s = (np.asarray(out[k], dtype=np.float64) for k in ("M", "b", "U", "V", "s"))
    # Singular values of M below rounding level (e.g. exactly at a collapse threshold) are zero.
    tiny = (s > 0) & (s <= _RANK_RTOL * max(1.0, float(s.max())))
    if np.any(tiny):
        s = np.where(tiny, 0.0, s)
        M = (U * s[None, :]) @ V.T
    return _Reduced(zbar=M / np.sqrt(pi)[None, :], bias=b if lam_b is not None else np.zeros(K), s=s, V=V,
                    kkt=float(out["kkt"]), objective=float(out["objective"]),
                    iterations=int(out["iterations"]), restarts=int(out["restarts"]), step=float(out["step"]))


# ---- the TheorySolution -------------------------------------------------------------------------------


def _clusters(n: np.ndarray) -> list[np.ndarray]:
    """Classes grouped by equal size (relative tolerance 1e-12), largest size first."""
    order = np.argsort(-n, kind="stable")
    groups, current = [], [order[0]]
    for k in order[1:]:
        if abs(n[k] - n[current[0]]) <= 1e-12 * n[current[0]]:
            current.append(k)
        else:
            groups.append(np.sort(np.array(current)))
            current = [k]
    groups.append(np.sort(np.array(current)))
    return groups


def _cluster_gaps(n, zbar, bias, N_lam_z) -> tuple[list[dict], list[int]]:
    """Per equal-size cluster the gap `p_own − p_other` (and its theory value), and the collapsed classes."""
    Z = zbar + bias[:, None]
    Zs = Z - Z.max(axis=0, keepdims=True)
    P = np.exp(Zs) / np.exp(Zs).sum(axis=0, keepdims=True)
    clusters, collapsed = [], []
    for g in _clusters(n):
        size = float(n[g[0]])
        info = {"classes": tuple(int(k) for k in g), "size": size,
                "gap_theory": max(0.0, 1.0 - N_lam_z / math.sqrt(size))}
        if g.size >= 2:
            sub = P[np.ix_(g, g)]
            info["gap"] = float(np.mean(np.diag(sub)) - np.mean(sub[~np.eye(g.size, dtype=bool)]))
            if N_lam_z >= math.sqrt(size):
                collapsed.extend(int(k) for k in g)
        clusters.append(info)
    return clusters, sorted(collapsed)


def _regime(K, rank, collapsed, zero_cols) -> str:
    if rank == 0:
        return "complete-collapse"
    if not collapsed and rank == K - 1:
        return "full-rank"
    parts = []
    if collapsed:
        parts.append("collapsed classes: " + ",".join(map(str, collapsed)))
    if zero_cols:
        parts.append("zero logits: " + ",".join(map(str, zero_cols)))
    parts.append(f"rank {rank}")
    return "; ".join(parts)


def _solution(reduced: _Reduced, n, dim, lam_w, lam_h, lam_b, tol) -> TheorySolution:
    """Factor geometry (note §1.6, erratum E-HL11), regime and details of the reduced minimiser.

    With `Z̄D^{1/2} = ŪΣ̄V̄ᵀ`, `Σ̄ = √N·s` (`s`: singular values of `M = Z̄Π^{1/2}`):
    `W = (λ_H/λ_W)^{1/4} Ū Σ̄^{1/2}` (up to rotation), `H̄ = (λ_W/λ_H)^{1/4} Σ̄^{1/2} V̄ᵀ D^{-1/2}`,
    `H̄ᵀH̄ = √(λ_W/λ_H) D^{-1/2} V̄ Σ̄ V̄ᵀ D^{-1/2}`.
    """
    K = n.size
    N = float(n.sum())
    lam_z = math.sqrt(lam_w * lam_h)
    zbar, V = reduced.zbar, reduced.V
    sigma = math.sqrt(N) * reduced.s
    inv_sqrt_n = 1.0 / np.sqrt(n)
    mean_gram = math.sqrt(lam_w / lam_h) * (inv_sqrt_n[:, None] * ((V * sigma[None, :]) @ V.T)
                                            * inv_sqrt_n[None, :])
    mean_gram = 0.5 * (mean_gram + mean_gram.T)
    Hbar_core = (lam_w / lam_h) ** 0.25 * (np.sqrt(sigma)[:, None] * V.T) * inv_sqrt_n[None, :]
    weight_sv = (lam_h / lam_w) ** 0.25 * np.sqrt(sigma)
    width = min(K, dim)

    rank = int(np.count_nonzero(reduced.s > 0))
    N_lam_z = N * lam_z
    clusters, collapsed = _cluster_gaps(n, zbar, reduced.bias, N_lam_z)
    scale = max(1.0, float(np.abs(zbar).max()))
    zero_cols = [int(k) for k in range(K) if np.abs(zbar[:, k]).max() <= 1e-9 * scale]
    details = {
        "kkt_residual": reduced.kkt,
        "converged": bool(reduced.kkt <= tol),
        "iterations": reduced.iterations,
        "restarts": reduced.restarts,
        "final_step": reduced.step,
        "lam_z": lam_z,
        "lam_b": lam_b,
        "N_lam_z": N_lam_z,
        "rank": rank,
        "column_sum_max": float(np.abs(zbar.sum(axis=0)).max()),
        "collapsed_classes": tuple(collapsed),
        "zero_logit_classes": tuple(zero_cols),
        "clusters": tuple(clusters),
        "dim": dim,
    }
    return TheorySolution(
        objective=reduced.objective,
        regime=_regime(K, rank, collapsed, zero_cols),
        mean_gram=mean_gram,
        mean_logits=zbar,
        bias=reduced.bias,
        weight_singular_values=(padded_singular_values(weight_sv, width),),
        product_singular_values=padded_singular_values(weight_sv, width),
        mean_singular_values=padded_singular_values(np.linalg.svd(Hbar_core, compute_uv=False), width),
        source=SOURCE,
        details=details,
    )
