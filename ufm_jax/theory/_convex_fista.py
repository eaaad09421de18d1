"""FISTA/SVT on the normalised reduced UFM problem: the jit-compiled numerics of `_convex`.

The problem (module docstring of `_convex`) in the normalised variable `M = Z̄ Π^{1/2}`, `Π = diag(π)`,
`π_k = n_k/N`, for a data term `ℓ` (`"ce"`: `CE(z, e_k)`; `"mse"`: `½‖z − e_k‖²`):

    F(M, b) = Σ_k π_k ℓ(m_k/√π_k + b, e_k) + μ ‖M‖_* + (λ_b/2)‖b‖²,   μ = λ_Z √N.

The two losses differ only in the per-column output residual `E = ∂ℓ/∂z` (`softmax(z) − e_k` or
`z − e_k`) and the column losses; everything else (gradient `(E Π^{1/2}, E π)`, prox, certificate) is
shared. The bias mode is two numbers: `bias_on` (0: bias-free, `b` stays at `b0 = 0`) and `lam_b`
(0 with `bias_on = 1`: a free bias), plus `free` (1.0 for a free bias, see below).

**Algorithm.** Accelerated proximal gradient (FISTA) on `(M, b)`: the prox of `μ‖·‖_*` is singular-value
soft-thresholding (`jnp.linalg.svd`), the bias penalty is in the prox (a large `λ_b` does not limit the
step). The step size is found by backtracking that may also grow (tested with the numerically stable
sufficient condition `⟨∇f(x) − ∇f(y), x − y⟩ ≤ ‖x − y‖²/(2t)`, valid for convex `f`), and momentum
restarts adaptively (O'Donoghue & Candès' gradient test). One `jax.lax.while_loop`, jit-compiled once
per `(loss, K)`; all numbers are traced, so new sizes, `λ`s or bias modes never recompile.

**Certificate.** Iterations stop when the KKT residual `dist(0, ∂F(M, b))` of the *unconstrained*
problem (Hong & Ling Lemma 5.2 / Cor. 5.3 for CE; the same subdifferential for MSE; `kkt_matrix_part`)
is at most `tol`; the best iterate so far is returned.

**Invariant subspaces.** For CE the gradient and the prox keep `1ᵀM = 0` and `1ᵀb = 0` (the columns of
`P̄ − I` sum to zero, and a matrix with `1ᵀY = 0` has its left singular vectors ⟂ 1), so from the zero
start every iterate lies in the subspace that holds the minimiser (Lemma 5.2). With a free bias every
minimiser has `M√π = 0` (`_convex`'s docstring); the M-gradient is then projected onto that subspace
(`free = 1`), which the prox keeps (right singular vectors ⟂ √π): this is FISTA on the problem restricted
to a subspace that holds its minimiser, where the smooth part is strongly convex (for MSE with a free
bias it is not on the whole space: `Z̄ → Z̄ − u1ᵀ, b → b + u` leaves the data term unchanged).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

LOSSES = ("ce", "mse")

_GROW = 1.25        # step-size growth tried at every iteration
_SHRINK = 0.5       # backtracking factor
# Lipschitz constant of ∇f in (M, b): the column maps (M, b) ↦ m_k + √π_k b have ‖·‖² = 2 together, times
# the largest curvature of ℓ (softmax Hessian ≤ ½; the MSE Hessian is I). Steps down to 1/L are accepted.
_LIPSCHITZ = {"ce": 1.0, "mse": 2.0}


def output_residual(Z, loss: str):
    """`E = ∂ℓ(z_k, e_k)/∂z_k` for every column `k` of the outputs `Z` (`softmax(z) − e_k` or `z − e_k`)."""
    eye = jnp.eye(Z.shape[0], dtype=Z.dtype)
    if loss == "ce":
        return jax.nn.softmax(Z, axis=0) - eye
    return Z - eye


def column_losses(Z, loss: str):
    """`ℓ(z_k, e_k)` for every column `k` of `Z`."""
    if loss == "ce":
        return jax.nn.logsumexp(Z, axis=0) - jnp.diagonal(Z)
    return 0.5 * jnp.sum((Z - jnp.eye(Z.shape[0], dtype=Z.dtype)) ** 2, axis=0)


def smooth_grad(M, b, sqrt_pi, pi, lam_b, loss: str):
    """Gradient of f(M, b) = Σ_k π_k ℓ(m_k/√π_k + b, e_k) + (λ_b/2)‖b‖²  (λ_b = 0: free or no bias)."""
    E = output_residual(M / sqrt_pi[None, :] + b[:, None], loss)
    return E * sqrt_pi[None, :], E @ pi + lam_b * b


def smooth_value(M, b, sqrt_pi, pi, lam_b, loss: str):
    """f(M, b) = Σ_k π_k ℓ(m_k/√π_k + b, e_k) + (λ_b/2)‖b‖²."""
    return jnp.dot(pi, column_losses(M / sqrt_pi[None, :] + b[:, None], loss)) + 0.5 * lam_b * jnp.dot(b, b)


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


def _fista_step(s, backtrack, residual):
    """One accelerated step from the state `s` (dict), with gradient-based adaptive restart."""
    theta = s["theta"]
    theta_new = 0.5 * (1.0 + jnp.sqrt(1.0 + 4.0 * theta * theta))
    beta = (theta - 1.0) / theta_new
    yM = s["xM"] + beta * (s["xM"] - s["xpM"])
    yb = s["xb"] + beta * (s["xb"] - s["xpb"])
    t, xM, xb, U, s_thr, V, _, _ = backtrack(yM, yb, s["t"] * _GROW)
    restart = (jnp.sum((yM - xM) * (xM - s["xM"])) + jnp.sum((yb - xb) * (xb - s["xb"]))) > 0
    theta_new = jnp.where(restart, 1.0, theta_new)
    res = residual(xM, xb, U, s_thr, V)
    better = res < s["best"][0]
    best = jax.tree.map(lambda new, old: jnp.where(better, new, old), (res, xM, xb, U, s_thr, V), s["best"])
    return dict(k=s["k"] + 1, restarts=s["restarts"] + restart.astype(jnp.int32), xM=xM, xb=xb,
                xpM=s["xM"], xpb=s["xb"], theta=theta_new, t=t, res=res, best=best)


@functools.partial(jax.jit, static_argnames="loss")
def fista(loss, pi, mu, lam_b, bias_on, free, M0, b0, tol, max_steps):
    """FISTA on F(M, b) for the data term `loss`.

    `bias_on` is 1.0 (a bias) or 0.0 (bias-free: b stays at `b0` = 0); `lam_b` is 0.0 for a free bias;
    `free` is 1.0 for a free bias (the M-gradient is projected onto `M√π = 0`), else 0.0.

    Returns a dict with the best iterate `M, b`, its SVD factors `U, s, V` (`M = U diag(s) Vᵀ`), the KKT
    residual `kkt` of the unconstrained problem, the `objective` F, `iterations`, `restarts` and the
    final `step`.
    """
    sqrt_pi = jnp.sqrt(pi)
    lam_b = lam_b * bias_on
    t_min = 1.0 / _LIPSCHITZ[loss]
    right = jnp.eye(pi.shape[0], dtype=pi.dtype) - free * jnp.outer(sqrt_pi, sqrt_pi)

    def data_grad(M, b):  # the smooth part is the data term alone; the bias penalty is in the prox
        gM, gb = smooth_grad(M, b, sqrt_pi, pi, 0.0, loss)
        return gM, gb * bias_on

    def grad(M, b):
        gM, gb = data_grad(M, b)
        return gM @ right, gb

    def residual(xM, xb, U, s_thr, V):
        gM, gb = data_grad(xM, xb)
        gb = gb + lam_b * xb
        return jnp.sqrt(kkt_matrix_part(-gM, U, V, s_thr > 0, mu) + jnp.sum(gb * gb))

    def backtrack(yM, yb, t0):
        gyM, gyb = grad(yM, yb)
        return _backtrack(grad, mu, lam_b, t_min, yM, yb, gyM, gyb, t0)

    # Initial point: a prox step from the warm start, so that the iterate carries its own SVD.
    t0, xM, xb, U, s_thr, V, _, _ = backtrack(M0 @ right, b0, jnp.asarray(t_min, M0.dtype))
    res0 = residual(xM, xb, U, s_thr, V)
    init = dict(k=jnp.asarray(0), restarts=jnp.asarray(0), xM=xM, xb=xb, xpM=xM, xpb=xb,
                theta=jnp.asarray(1.0, M0.dtype), t=t0, res=res0, best=(res0, xM, xb, U, s_thr, V))
    out = jax.lax.while_loop(lambda s: (s["best"][0] > tol) & (s["k"] < max_steps),
                             lambda s: _fista_step(s, backtrack, residual), init)
    res, xM, xb, U, s_thr, V = out["best"]
    value = smooth_value(xM, xb, sqrt_pi, pi, lam_b, loss) + mu * jnp.sum(s_thr)
    return dict(M=xM, b=xb, U=U, s=s_thr, V=V, kkt=res, objective=value, iterations=out["k"],
                restarts=out["restarts"], step=out["t"])


@functools.partial(jax.jit, static_argnames="loss")
def kkt_of_candidate(loss, pi, mu, lam_b, bias_on, zbar, b):
    """KKT residual of a candidate `(Z̄, b)`, minimised over the rank `r` with the tail `‖σ_{r+1..K}‖_2`
    added (the change of the gradient when the small singular values are dropped, times the Lipschitz
    constant of ∇_M f: 1 for CE, at most 2 for MSE)."""
    sqrt_pi = jnp.sqrt(pi)
    M = zbar * sqrt_pi[None, :]
    gM, gb = smooth_grad(M, b, sqrt_pi, pi, lam_b * bias_on, loss)
    gb = gb * bias_on
    U, s, Vh = jnp.linalg.svd(M, full_matrices=False)
    K = M.shape[0]
    ranks = jnp.arange(K + 1)

    def for_rank(r):
        mask = jnp.arange(K) < r
        tail = jnp.sqrt(jnp.sum(jnp.where(mask, 0.0, s * s)))
        return jnp.sqrt(kkt_matrix_part(-gM, U, Vh.T, mask, mu) + jnp.sum(gb * gb)) + _LIPSCHITZ[loss] * tail

    return jnp.min(jax.vmap(for_rank)(ranks))
