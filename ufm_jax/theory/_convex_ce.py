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
or very unequal classes, and all quantities are O(1).

**Algorithm.** Accelerated proximal gradient (FISTA) on `(M, b)`: the prox of `μ‖·‖_*` is singular-value
soft-thresholding (`jnp.linalg.svd`), the bias block is smooth (or absent). The step size is found by
backtracking that may also grow (tested with the numerically stable sufficient condition
`⟨∇f(x) − ∇f(y), x − y⟩ ≤ ‖x − y‖²/(2t)`, valid for convex `f`), and momentum restarts adaptively
(O'Donoghue & Candès' gradient test). One `jax.lax.while_loop`, jit-compiled once per `K`
(bias or bias-free included); all numbers are traced, so new sizes or `λ`s never recompile.

**Certificate.** Iterations stop when the KKT residual (Hong & Ling Lemma 5.2 / Cor. 5.3)

    kkt = dist(0, ∂F(M, b))
        = ‖ ( (I − P̄)Π^{1/2} − μ (U Vᵀ + R*) ,  N^{-1}(I − P̄) n − λ_b b ) ‖_F

is at most `tol`, where `M = U Σ Vᵀ` is the compact SVD and `R*` is the best admissible `R` (`Uᵀ R = 0`,
`R V = 0`, `‖R‖_2 ≤ 1`): the projection of the complement block `(I − UUᵀ) G (I − VVᵀ)` of `G = (I − P̄)Π^{1/2}`
onto the spectral-norm ball of radius `μ`. In the note's (unnormalised) notation the matrix part equals
`√N · ‖N^{-1}(I − P̄)D^{1/2} − λ_Z(UVᵀ + R)‖_F`, i.e. it is measured in units of probabilities and does not
depend on the scale of `N`. The bias part is the bias equation `N^{-1}(I − P̄)n = λ_b b` (absent
bias-free). The convex objective is `1/2`-smooth per column, so at the returned point the objective gap is
at most about `kkt · dist(x, x*)`; `tol = 1e-12` gives objectives to ~1e-13 in the tested cases.

**Dimension.** The reduction needs `d ≥ rank(Z̄*)`. Lemma 5.2 gives `1_Kᵀ Z̄* = 0`, so `rank(Z̄*) ≤ K − 1`
and every `d ≥ K − 1` has the same minimum and invariants (the paper states `d ≥ K`); this is checked at
run time (`details["column_sum_max"]`, `details["rank"]`). `d < K − 1` raises `ValueError` (`dim`): the
convex value is then only a lower bound unless the minimiser happens to have rank ≤ d.

**Precision.** Everything runs in float64 inside `jax.enable_x64(True)`, whatever the global setting.
"""

from __future__ import annotations

import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from ._solution import TheoremNotApplicable, TheorySolution, padded_singular_values

__all__ = ["ce_convex_solution", "kkt_residual"]

SOURCE = ("Hong & Ling (2023), arXiv 2309.09725: convex reformulation (eq. 2.3), reduced K×K problem "
          "(Thm 3.1(a)), optimality conditions (Lemma 5.2 / Cor. 5.3), factors (Thm 3.1(d) with the "
          "(λ_H/λ_W)^{±1/4} balancing of the seed-001 note §1.6); solved by FISTA/SVT with a KKT certificate")

_GROW = 1.25        # step-size growth tried at every iteration
_SHRINK = 0.5       # backtracking factor
_RANK_RTOL = 1e-13  # singular values of M = Z̄Π^{1/2} at most this (× max(1, σ_1)) count as zero


# ---------------------------------------------------------------------------------------------------
# Smooth part and KKT residual (normalised variables).


def _smooth_grad(M, b, sqrt_pi, pi, lam_b):
    """Gradient of f(M, b) = Σ_k π_k CE(m_k/√π_k + b, e_k) + (λ_b/2)‖b‖²  (λ_b = 0: bias-free)."""
    Z = M / sqrt_pi[None, :] + b[:, None]
    P = jax.nn.softmax(Z, axis=0)
    E = P - jnp.eye(M.shape[0], dtype=M.dtype)
    return E * sqrt_pi[None, :], E @ pi + lam_b * b


def _smooth_value(M, b, sqrt_pi, pi, lam_b):
    Z = M / sqrt_pi[None, :] + b[:, None]
    ce = jax.nn.logsumexp(Z, axis=0) - jnp.diagonal(Z)
    return jnp.dot(pi, ce) + 0.5 * lam_b * jnp.dot(b, b)


def _kkt_matrix_part(G, U, V, mask, mu):
    """‖G − μ(U_r V_rᵀ + R*)‖_F² for `G = −∇_M f`, the rank-r singular vectors selected by `mask`."""
    eye = jnp.eye(G.shape[0], dtype=G.dtype)
    Ur = U * mask[None, :]
    Vr = V * mask[None, :]
    left = eye - Ur @ Ur.T
    right = eye - Vr @ Vr.T
    Gperp = left @ G @ right
    A = G - mu * (Ur @ Vr.T) - Gperp
    s_perp = jnp.linalg.svd(Gperp, compute_uv=False)
    excess = jnp.maximum(s_perp - mu, 0.0)
    return jnp.sum(A * A) + jnp.sum(excess * excess)


def _svt(A, thresh):
    U, s, Vh = jnp.linalg.svd(A, full_matrices=False)
    s_thr = jnp.maximum(s - thresh, 0.0)
    return (U * s_thr[None, :]) @ Vh, U, s_thr, Vh.T


# ---------------------------------------------------------------------------------------------------
# The solver.


@jax.jit
def _fista(pi, mu, lam_b, bias_on, M0, b0, tol, max_steps):
    """FISTA on F(M, b); `bias_on` is 1.0 (regularised bias) or 0.0 (bias-free: b stays at `b0` = 0)."""
    sqrt_pi = jnp.sqrt(pi)
    lam_b = lam_b * bias_on
    # The smooth part is the CE term alone; its gradient is 1-Lipschitz in (M, b) (softmax Hessian ≤ ½,
    # and ‖Σ_k π_k A_kᵀA_k‖ = 2 for the column maps A_k(M, b) = m_k/√π_k + b). The bias penalty is kept
    # in the prox, so a large λ_b does not limit the step.
    t_min = 1.0

    def grad(M, b):
        gM, gb = _smooth_grad(M, b, sqrt_pi, pi, 0.0)
        return gM, gb * bias_on

    def residual(gM, gb, U, s_thr, V, b):
        gb = gb + lam_b * b
        sq = _kkt_matrix_part(-gM, U, V, s_thr > 0, mu) + jnp.sum(gb * gb)
        return jnp.sqrt(sq)

    def prox_step(yM, yb, gyM, gyb, t):
        xM, U, s_thr, V = _svt(yM - t * gyM, t * mu)
        xb = (yb - t * gyb) / (1.0 + t * lam_b)
        return xM, xb, U, s_thr, V

    def backtrack(yM, yb, gyM, gyb, t0):
        def attempt(t):
            xM, xb, U, s_thr, V = prox_step(yM, yb, gyM, gyb, t)
            gxM, gxb = grad(xM, xb)
            dM, db = xM - yM, xb - yb
            lhs = jnp.sum((gxM - gyM) * dM) + jnp.sum((gxb - gyb) * db)
            rhs = (jnp.sum(dM * dM) + jnp.sum(db * db)) / (2.0 * t)
            ok = (lhs <= rhs) | (t <= t_min)
            return ok, (t, xM, xb, U, s_thr, V, gxM, gxb)

        ok0, out0 = attempt(t0)

        def cond(c):
            return ~c[0]

        def body(c):
            t = jnp.maximum(c[1][0] * _SHRINK, t_min)
            return attempt(t)

        _, out = jax.lax.while_loop(cond, body, (ok0, out0))
        return out

    # Initial point: a prox step from the warm start, so that the iterate carries its own SVD.
    g0M, g0b = grad(M0, b0)
    t0, xM, xb, U, s_thr, V, gxM, gxb = backtrack(M0, b0, g0M, g0b, jnp.asarray(t_min, M0.dtype))
    res0 = residual(gxM, gxb, U, s_thr, V, xb)
    init = dict(k=jnp.asarray(0), restarts=jnp.asarray(0), xM=xM, xb=xb, xpM=xM,
                xpb=xb, theta=jnp.asarray(1.0, M0.dtype), t=t0, res=res0,
                best=(res0, xM, xb, U, s_thr, V))

    def cond(s):
        return (s["best"][0] > tol) & (s["k"] < max_steps)

    def body(s):
        theta = s["theta"]
        theta_new = 0.5 * (1.0 + jnp.sqrt(1.0 + 4.0 * theta * theta))
        beta = (theta - 1.0) / theta_new
        yM = s["xM"] + beta * (s["xM"] - s["xpM"])
        yb = s["xb"] + beta * (s["xb"] - s["xpb"])
        gyM, gyb = grad(yM, yb)
        t, xM, xb, U, s_thr, V, gxM, gxb = backtrack(yM, yb, gyM, gyb, s["t"] * _GROW)
        # Gradient-based adaptive restart.
        restart = (jnp.sum((yM - xM) * (xM - s["xM"])) + jnp.sum((yb - xb) * (xb - s["xb"]))) > 0
        theta_new = jnp.where(restart, 1.0, theta_new)
        res = residual(gxM, gxb, U, s_thr, V, xb)
        better = res < s["best"][0]
        best = jax.tree.map(lambda new, old: jnp.where(better, new, old), (res, xM, xb, U, s_thr, V),
                            s["best"])
        return dict(k=s["k"] + 1, restarts=s["restarts"] + restart.astype(jnp.int32),
                    xM=xM, xb=xb, xpM=s["xM"], xpb=s["xb"], theta=theta_new, t=t, res=res, best=best)

    out = jax.lax.while_loop(cond, body, init)
    res, xM, xb, U, s_thr, V = out["best"]
    value = _smooth_value(xM, xb, sqrt_pi, pi, lam_b) + mu * jnp.sum(s_thr)
    return dict(M=xM, b=xb, U=U, s=s_thr, V=V, kkt=res, objective=value, iterations=out["k"],
                restarts=out["restarts"], step=out["t"])


# ---------------------------------------------------------------------------------------------------
# Public API.


def _sizes(class_sizes) -> np.ndarray:
    n = np.atleast_1d(np.asarray(class_sizes, dtype=np.float64))
    if n.ndim != 1 or n.size < 2 or not np.all(np.isfinite(n)) or np.any(n <= 0):
        raise ValueError(f"class_sizes={class_sizes!r} is not allowed: expected K >= 2 finite sizes > 0.")
    return n


def _positive(name, value) -> float:
    v = float(value)
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{name}={value!r} is not allowed: expected a finite number > 0.")
    return v


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


def kkt_residual(class_sizes, lam_z, lam_b, zbar, bias=None) -> float:
    """KKT residual `dist(0, ∂F)` of a candidate `(Z̄, b)` of the reduced cross-entropy problem.

    `F` is the reduced objective in the normalised variables `(M = Z̄ Π^{1/2}, b)` (module docstring), so the
    value is `‖((I − P̄)Π^{1/2} − μ(U_r V_rᵀ + R*), N^{-1}(I − P̄)n − λ_b b)‖_F` with `μ = λ_Z √N` — a residual in
    units of probabilities, 0 exactly at the unique minimiser. `lam_b=None` is the bias-free model (the
    bias equation is dropped; `bias` must then be `None` or zero).

    For a candidate that is not exactly low-rank (e.g. `W H̄` from a numerical solver), the rank `r` of
    `M` is chosen to minimise `residual_r + ‖σ_{r+1..K}(M)‖_2` (the second term, times the Lipschitz
    constant 1 of `∇f`, bounds the change of the gradient when the small singular values are dropped).
    """
    with jax.enable_x64(True):
        n = _sizes(class_sizes)
        K = n.size
        lam_z = _positive("lam_z", lam_z)
        zbar = np.asarray(zbar, dtype=np.float64)
        if zbar.shape != (K, K):
            raise ValueError(f"zbar has shape {zbar.shape}; expected (K, K) = ({K}, {K}).")
        if lam_b is None:
            if bias is not None and np.any(np.asarray(bias) != 0):
                raise ValueError("bias must be None or zero for the bias-free model (lam_b=None).")
            b = np.zeros(K)
            lb = 0.0
        else:
            lb = _positive("lam_b", lam_b)
            b = np.zeros(K) if bias is None else np.asarray(bias, dtype=np.float64).reshape(K)
        N = n.sum()
        pi = n / N
        return float(_kkt_public(jnp.asarray(pi), jnp.asarray(lam_z * math.sqrt(N)), jnp.asarray(lb),
                                 jnp.asarray(0.0 if lam_b is None else 1.0), jnp.asarray(zbar), jnp.asarray(b)))


@jax.jit
def _kkt_public(pi, mu, lam_b, bias_on, zbar, b):
    sqrt_pi = jnp.sqrt(pi)
    M = zbar * sqrt_pi[None, :]
    gM, gb = _smooth_grad(M, b, sqrt_pi, pi, lam_b * bias_on)
    gb = gb * bias_on
    U, s, Vh = jnp.linalg.svd(M, full_matrices=False)
    K = M.shape[0]
    ranks = jnp.arange(K + 1)

    def for_rank(r):
        mask = jnp.arange(K) < r
        tail = jnp.sqrt(jnp.sum(jnp.where(mask, 0.0, s * s)))
        return jnp.sqrt(_kkt_matrix_part(-gM, U, Vh.T, mask, mu) + jnp.sum(gb * gb)) + tail

    return jnp.min(jax.vmap(for_rank)(ranks))


def ce_convex_solution(class_sizes, dim, lam_w, lam_h, lam_b=None, *, tol=1e-12, max_steps=200_000,
                       init=None) -> TheorySolution:
    """Global minimum of the one-layer cross-entropy UFM for any class sizes, with a KKT certificate.

    **Arguments:**

    - `class_sizes`: `n_1..n_K` (`K ≥ 2`, any positive numbers; `10⁹` is fine).
    - `dim`: feature dimension `d`; needs `d ≥ K − 1` (module docstring), else `ValueError`.
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
    """
    with jax.enable_x64(True):
        n = _sizes(class_sizes)
        K = n.size
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < K - 1:
            raise TheoremNotApplicable(f"dim={dim!r} is not allowed: the convex reduction needs an integer d >= K - 1 "
                             f"= {K - 1} (the paper states d >= K; rank(Z̄*) <= K - 1 makes d = K - 1 exact).")
        dim = int(dim)
        lam_w = _positive("lam_w", lam_w)
        lam_h = _positive("lam_h", lam_h)
        has_bias = lam_b is not None
        lb = _positive("lam_b", lam_b) if has_bias else 0.0
        lam_z = math.sqrt(lam_w * lam_h)
        N = float(n.sum())
        pi = n / N
        mu = lam_z * math.sqrt(N)

        if init is None:
            M0, b0 = np.zeros((K, K)), np.zeros(K)
        else:
            if isinstance(init, TheorySolution):
                z0, b0 = init.mean_logits, init.bias
            else:
                z0, b0 = init
            z0 = np.asarray(z0, dtype=np.float64)
            if z0.shape != (K, K):
                raise ValueError(f"init has Z̄ of shape {z0.shape}; expected ({K}, {K}).")
            M0 = z0 * np.sqrt(pi)[None, :]
            b0 = np.zeros(K) if (b0 is None or not has_bias) else np.asarray(b0, dtype=np.float64).reshape(K)

        out = _fista(jnp.asarray(pi), jnp.asarray(mu), jnp.asarray(lb), jnp.asarray(1.0 if has_bias else 0.0),
                     jnp.asarray(M0), jnp.asarray(b0), jnp.asarray(float(tol)), jnp.asarray(int(max_steps)))
        out = jax.device_get(out)

    M, b, U, V, s = (np.asarray(out[k], dtype=np.float64) for k in ("M", "b", "U", "V", "s"))
    kkt = float(out["kkt"])
    if not kkt <= tol:
        warnings.warn(f"ce_convex_solution: KKT residual {kkt:.3g} > tol={tol:g} after {int(out['iterations'])} "
                      "iterations (max_steps); returning the best iterate.", RuntimeWarning, stacklevel=2)
    # Singular values of M below rounding level (e.g. exactly at a collapse threshold) are zero.
    tiny = (s > 0) & (s <= _RANK_RTOL * max(1.0, float(s.max())))
    if np.any(tiny):
        s = np.where(tiny, 0.0, s)
        M = (U * s[None, :]) @ V.T
    sqrt_pi = np.sqrt(pi)
    zbar = M / sqrt_pi[None, :]
    if not has_bias:
        b = np.zeros(K)

    # Factor geometry (note §1.6): with Z̄D^{1/2} = ŪΣ̄V̄ᵀ, Σ̄ = √N·s (s: singular values of M = Z̄Π^{1/2}),
    #   W = (λ_H/λ_W)^{1/4} Σ̄^{1/2} Ūᵀ (up to rotation),   H̄ = (λ_W/λ_H)^{1/4} Σ̄^{1/2} V̄ᵀ D^{-1/2},
    #   H̄ᵀH̄ = √(λ_W/λ_H) D^{-1/2} V̄ Σ̄ V̄ᵀ D^{-1/2}.
    sigma = math.sqrt(N) * s
    inv_sqrt_n = 1.0 / np.sqrt(n)
    VS = V * sigma[None, :]
    mean_gram = math.sqrt(lam_w / lam_h) * (inv_sqrt_n[:, None] * (VS @ V.T) * inv_sqrt_n[None, :])
    mean_gram = 0.5 * (mean_gram + mean_gram.T)
    Hbar_core = (lam_w / lam_h) ** 0.25 * (np.sqrt(sigma)[:, None] * V.T) * inv_sqrt_n[None, :]
    mean_sv = np.linalg.svd(Hbar_core, compute_uv=False)
    weight_sv = (lam_h / lam_w) ** 0.25 * np.sqrt(sigma)
    width = min(K, dim)

    # Regime.
    rank = int(np.count_nonzero(s > 0))
    N_lam_z = N * lam_z
    Z = zbar + b[:, None]
    Zs = Z - Z.max(axis=0, keepdims=True)
    P = np.exp(Zs) / np.exp(Zs).sum(axis=0, keepdims=True)
    clusters = []
    collapsed: list[int] = []
    for g in _clusters(n):
        size = float(n[g[0]])
        info = {"classes": tuple(int(k) for k in g), "size": size,
                "gap_theory": max(0.0, 1.0 - N_lam_z / math.sqrt(size))}
        if g.size >= 2:
            sub = P[np.ix_(g, g)]
            own = np.mean(np.diag(sub))
            other = np.mean(sub[~np.eye(g.size, dtype=bool)])
            info["gap"] = float(own - other)
            if N_lam_z >= math.sqrt(size):
                collapsed.extend(int(k) for k in g)
        clusters.append(info)
    collapsed.sort()
    scale = max(1.0, float(np.abs(zbar).max()))
    zero_cols = [int(k) for k in range(K) if np.abs(zbar[:, k]).max() <= 1e-9 * scale]
    if rank == 0:
        regime = "complete-collapse"
    elif not collapsed and rank == K - 1:
        regime = "full-rank"
    else:
        parts = []
        if collapsed:
            parts.append("collapsed classes: " + ",".join(map(str, collapsed)))
        if zero_cols:
            parts.append("zero logits: " + ",".join(map(str, zero_cols)))
        parts.append(f"rank {rank}")
        regime = "; ".join(parts)

    details = {
        "kkt_residual": kkt,
        "converged": bool(kkt <= tol),
        "iterations": int(out["iterations"]),
        "restarts": int(out["restarts"]),
        "final_step": float(out["step"]),
        "lam_z": lam_z,
        "lam_b": lb if has_bias else None,
        "N_lam_z": N_lam_z,
        "rank": rank,
        "column_sum_max": float(np.abs(zbar.sum(axis=0)).max()),
        "collapsed_classes": tuple(collapsed),
        "zero_logit_classes": tuple(zero_cols),
        "clusters": tuple(clusters),
        "dim": dim,
    }
    return TheorySolution(
        objective=float(out["objective"]),
        regime=regime,
        mean_gram=mean_gram,
        mean_logits=zbar,
        bias=b,
        weight_singular_values=(padded_singular_values(weight_sv, width),),
        product_singular_values=padded_singular_values(weight_sv, width),
        mean_singular_values=padded_singular_values(mean_sv, width),
        source=SOURCE,
        details=details,
    )
