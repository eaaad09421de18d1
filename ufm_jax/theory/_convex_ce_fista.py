"""FISTA/SVT on the normalised reduced cross-entropy problem: the jit-compiled numerics of `_convex_ce`.

The problem (module docstring of `_convex_ce`) in the normalised variable `M = Z̄ Π^{1/2}`, `Π = diag(π)`,
`π_k = n_k/N`:

    F(M, b) = Σ_k π_k CE(m_k/√π_k + b, e_k) + μ ‖M‖_* + (λ_b/2)‖b‖²,   μ = λ_Z √N.

**Algorithm.** Accelerated proximal gradient (FISTA) on `(M, b)`: the prox of `μ‖·‖_*` is singular-value
soft-thresholding (`jnp.linalg.svd`), the bias block is smooth (or absent). The step size is found by
backtracking that may also grow (tested with the numerically stable sufficient condition
`⟨∇f(x) − ∇f(y), x − y⟩ ≤ ‖x − y‖²/(2t)`, valid for convex `f`), and momentum restarts adaptively
(O'Donoghue & Candès' gradient test). One `jax.lax.while_loop`, jit-compiled once per `K`
(bias or bias-free included); all numbers are traced, so new sizes or `λ`s never recompile.

**Certificate.** Iterations stop when the KKT residual `dist(0, ∂F(M, b))` (Hong & Ling Lemma 5.2 /
Cor. 5.3; `_kkt_matrix_part`) is at most `tol`; the best iterate so far is returned.

Both the gradient and the prox keep `1ᵀM = 0` and `1ᵀb = 0` (the columns of `P̄ − I` sum to zero, and a
matrix with `1ᵀY = 0` has its left singular vectors ⟂ 1), so from the zero start every iterate lies in the
subspace that holds the minimiser (Lemma 5.2) up to round-off.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

_GROW = 1.25        # step-size growth tried at every iteration
_SHRINK = 0.5       # backtracking factor


def smooth_grad(M, b, sqrt_pi, pi, lam_b):
    """Gradient of f(M, b) = Σ_k π_k CE(m_k/√π_k + b, e_k) + (λ_b/2)‖b‖²  (λ_b = 0: bias-free)."""
    Z = M / sqrt_pi[None, :] + b[:, None]
    P = jax.nn.softmax(Z, axis=0)
    E = P - jnp.eye(M.shape[0], dtype=M.dtype)
    return E * sqrt_pi[None, :], E @ pi + lam_b * b


def smooth_value(M, b, sqrt_pi, pi, lam_b):
    """f(M, b) = Σ_k π_k CE(m_k/√π_k + b, e_k) + (λ_b/2)‖b‖²."""
    Z = M / sqrt_pi[None, :] + b[:, None]
    ce = jax.nn.logsumexp(Z, axis=0) - jnp.diagonal(Z)
    return jnp.dot(pi, ce) + 0.5 * lam_b * jnp.dot(b, b)


def kkt_matrix_part(G, U, V, mask, mu):
    """‖G − μ(U_r V_rᵀ + R*)‖_F² for `G = −∇_M f`, the rank-r singular vectors selected by `mask`.

    `R*` is the best admissible `R` (`U_rᵀR = 0`, `R V_r = 0`, `‖R‖_2 ≤ 1`): the projection of the
    complement block `(I − U_rU_rᵀ) G (I − V_rV_rᵀ)` onto the spectral-norm ball of radius `μ`.
    """
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


def _backtrack(grad, mu, lam_b, t_min, yM, yb, gyM, gyb, t0):
    """Prox step `x = prox_t(y − t∇f(y))` with the largest tried `t` (from `t0`, halving, never below
    `t_min`) that passes `⟨∇f(x) − ∇f(y), x − y⟩ ≤ ‖x − y‖²/(2t)`; returns `(t, xM, xb, U, s, V, ∇f(x))`."""

    def attempt(t):
        xM, U, s_thr, V = _svt(yM - t * gyM, t * mu)
        xb = (yb - t * gyb) / (1.0 + t * lam_b)
        gxM, gxb = grad(xM, xb)
        dM, db = xM - yM, xb - yb
        lhs = jnp.sum((gxM - gyM) * dM) + jnp.sum((gxb - gyb) * db)
        rhs = (jnp.sum(dM * dM) + jnp.sum(db * db)) / (2.0 * t)
        ok = (lhs <= rhs) | (t <= t_min)
        return ok, (t, xM, xb, U, s_thr, V, gxM, gxb)

    def body(c):
        return attempt(jnp.maximum(c[1][0] * _SHRINK, t_min))

    _, out = jax.lax.while_loop(lambda c: ~c[0], body, attempt(t0))
    return out


@jax.jit
def fista(pi, mu, lam_b, bias_on, M0, b0, tol, max_steps):
    """FISTA on F(M, b); `bias_on` is 1.0 (regularised bias) or 0.0 (bias-free: b stays at `b0` = 0).

    Returns a dict with the best iterate `M, b`, its SVD factors `U, s, V` (`M = U diag(s) Vᵀ`), the KKT
    residual `kkt`, the `objective` F, `iterations`, `restarts` and the final `step`.
    """
    sqrt_pi = jnp.sqrt(pi)
    lam_b = lam_b * bias_on
    # The smooth part is the CE term alone; its gradient is 1-Lipschitz in (M, b) (softmax Hessian ≤ ½,
    # and ‖Σ_k π_k A_kᵀA_k‖ = 2 for the column maps A_k(M, b) = m_k/√π_k + b). The bias penalty is kept
    # in the prox, so a large λ_b does not limit the step.
    t_min = 1.0

    def grad(M, b):
        gM, gb = smooth_grad(M, b, sqrt_pi, pi, 0.0)
        return gM, gb * bias_on

    def residual(gM, gb, U, s_thr, V, b):
        gb = gb + lam_b * b
        sq = kkt_matrix_part(-gM, U, V, s_thr > 0, mu) + jnp.sum(gb * gb)
        return jnp.sqrt(sq)

    def backtrack(yM, yb, gyM, gyb, t0):
        return _backtrack(grad, mu, lam_b, t_min, yM, yb, gyM, gyb, t0)

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
    value = smooth_value(xM, xb, sqrt_pi, pi, lam_b) + mu * jnp.sum(s_thr)
    return dict(M=xM, b=xb, U=U, s=s_thr, V=V, kkt=res, objective=value, iterations=out["k"],
                restarts=out["restarts"], step=out["t"])


@jax.jit
def kkt_of_candidate(pi, mu, lam_b, bias_on, zbar, b):
    """KKT residual of a candidate `(Z̄, b)`, minimised over the rank `r` with the tail `‖σ_{r+1..K}‖_2`
    added (the change of the gradient when the small singular values are dropped; ∇f is 1-Lipschitz)."""
    sqrt_pi = jnp.sqrt(pi)
    M = zbar * sqrt_pi[None, :]
    gM, gb = smooth_grad(M, b, sqrt_pi, pi, lam_b * bias_on)
    gb = gb * bias_on
    U, s, Vh = jnp.linalg.svd(M, full_matrices=False)
    K = M.shape[0]
    ranks = jnp.arange(K + 1)

    def for_rank(r):
        mask = jnp.arange(K) < r
        tail = jnp.sqrt(jnp.sum(jnp.where(mask, 0.0, s * s)))
        return jnp.sqrt(kkt_matrix_part(-gM, U, Vh.T, mask, mu) + jnp.sum(gb * gb)) + tail

    return jnp.min(jax.vmap(for_rank)(ranks))
