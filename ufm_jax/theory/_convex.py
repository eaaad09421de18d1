"""Certified global minimum of every one-layer UFM without `H ≥ 0`, through a convex reduced `K×K` problem.

**Problem** (the convention of `ufm_jax.Problem`, depth 1, `nonneg=False`; `W ∈ R^{K×d}`):

    min_{W, H, b}  (1/N) Σ_i ℓ(W h_i + b, y_i) + (λ_W/2)‖W‖_F² + (λ_H/2)‖H‖_F² [+ (λ_b/2)‖b‖²]

with `ℓ(z, e_k) = CE(z, e_k) = log Σ_j e^{z_j} − z_k` (`loss="ce"`) or `ℓ(z, e_k) = ½‖z − e_k‖²`
(`loss="mse"`: then `(1/N) Σ_i ℓ = 1/(2N)‖W H + b1ᵀ − Y‖_F²`, the package's MSE), and the bias absent
(`b ≡ 0`), free (unpenalised) or regularised (`λ_b > 0`).

**Reduction** (Hong & Ling 2023, arXiv 2309.09725, for CE; the same steps hold for MSE because they use
only that `ℓ` is convex). With `λ_Z = √(λ_W λ_H)`, `π_k = n_k/N`, `D = diag(n)`:

1. *Factorisation*, eq. (2.3) (line L106 of the paper's text): `min_{W H = Z} (λ_W‖W‖² + λ_H‖H‖²)/2 =
   λ_Z‖Z‖_*` for every `Z` of rank `≤ d`. It concerns the penalties only, so for either data term the
   UFM has the minimum of `(UFM)` (L110–L114) — `(1/N)Σ_i ℓ(z_i + b, y_i) + λ_Z‖Z‖_*` (+ bias penalty)
   over `Z ∈ R^{K×N}` — under the extra constraint `rank Z ≤ d`. Without it `(UFM)` is convex, and a
   lower bound.
2. *Class means* (proof of Thm 3.1(a), L657–L700, eq. (5.7)): Jensen's inequality for the convex `ℓ`,
   and for the nuclear norm averaged over within-class permutations, shows that replacing every `z_i` of
   class `k` by the class mean `z̄_k` does not increase `(UFM)`. `‖Z̄Y‖_* = ‖Z̄D^{1/2}‖_*` (same
   `Z̄DZ̄ᵀ`) and `(1/N)Σ_i ℓ = Σ_k π_k ℓ(z̄_k + b, e_k)` leave the reduced problem

       min_{Z̄ ∈ R^{K×K}, b}  Σ_k π_k ℓ(z̄_k + b, e_k) + λ_Z ‖Z̄ D^{1/2}‖_* [+ (λ_b/2)‖b‖²].

   For MSE, `1/(2N)Σ_{k,i}‖z̄_k + b − e_k‖² = ½Σ_k π_k‖z̄_k + b − e_k‖²`: the `½` of `ℓ` is the package's.
3. *Exactness* (Thm 3.1(d), L802; factors corrected as in erratum E-HL11): when the reduced minimiser
   `Z̄*` has rank `≤ d`, `W = (λ_H/λ_W)^{1/4} Ū Σ̄^{1/2} Qᵀ`, `H̄ = (λ_W/λ_H)^{1/4} Q Σ̄^{1/2} V̄ᵀ D^{-1/2}`,
   `H = H̄Y` (`Z̄*D^{1/2} = ŪΣ̄V̄ᵀ`, `Q ∈ R^{d×K}` with orthonormal columns) attain the lower bound, so it
   is the minimum. This is checked on the computed minimiser (`d < rank Z̄*` raises
   `TheoremNotApplicable` naming `dim`: the minimiser is unique, so the UFM's minimum is then strictly
   above the convex value). A priori `rank Z̄* ≤ K − 1` for CE (`1ᵀZ̄* = 0`, Lemma 5.2, L482) and for a
   free bias (`Z̄*n = 0`, below); MSE without or with a regularised bias can need `d = K`.
4. *Uniqueness* (so the returned invariants are those of every global minimiser). Write `E` for the
   matrix of output residuals `∂ℓ/∂z` (`softmax − I` or `Z̄ + b1ᵀ − I`). MSE without or with a
   regularised bias: the reduced objective is strictly convex. A free bias: the bias equation `Eπ = 0`
   and `∇_M f·√π = Eπ` make the subgradient `UVᵀ + R` annihilate `√π`, so `Vᵀ√π = 0`, i.e. `Z̄*n = 0`
   at every minimiser (the logits of the global feature mean vanish); two minimisers have the same
   outputs `z̄_k + b` (MSE: strict convexity) or outputs differing by `c_k 1` (CE, which with
   `1ᵀZ̄ = 0` and `Z̄n = 0` leaves only `b → b + c1`). So `Z̄*` is unique, and so is `b*` — for CE
   with a free bias up to `b + c1`: **gauge** `1ᵀb = 0`, which is also the minimum-norm representative.
   CE without or with a regularised bias: Hong & Ling Thm 3.1. At a global minimiser of the UFM,
   `(W H, b)` minimises `(UFM)` (so `W H = Z̄*Y`), each `h_i` minimises a strictly convex problem that is
   the same within a class (NC1: `h_i = h̄_k`), and `(W, H̄D^{1/2})` is a balanced factorisation of
   `Z̄*D^{1/2}`: `H̄ᵀH̄`, `W H̄`, `b` and the singular values are those returned here.

**Solver.** In the normalised variable `M = Z̄ Π^{1/2}` (`Π = diag(π)`) the objective reads
`F(M, b) = Σ_k π_k ℓ(m_k/√π_k + b, e_k) + μ‖M‖_* [+ (λ_b/2)‖b‖²]`, `μ = λ_Z √N`; every column block of
the Hessian of the smooth part is `π_k·(1/π_k)·∇²ℓ` whatever the class sizes, so this is well conditioned
for `n_k = 10⁹` or very unequal classes. FISTA with singular-value thresholding, `_convex_fista.fista`
(one solver for both losses and every bias mode).

**Certificate.** Iterations stop when the KKT residual (Hong & Ling Lemma 5.2 / Cor. 5.3; the same
subdifferential for MSE)

    kkt = dist(0, ∂F(M, b)) = ‖ ( −E Π^{1/2} − μ (U Vᵀ + R*) ,  E π + λ_b b ) ‖_F

is at most `tol` (`M = UΣVᵀ` compact; `R*` the best admissible `R`: `UᵀR = 0`, `RV = 0`, `‖R‖_2 ≤ 1`;
no bias equation bias-free; `λ_b = 0` for a free bias). It is in units of the output residuals and does
not depend on the scale of `N`. At the returned point the objective gap is at most `kkt · dist(x, x*)`
and `dist(x, x*) ≤ kkt/α`, `α > 0` the curvature of the smooth part on the subspace that holds every
iterate and the minimiser (CE: `1ᵀM = 0, 1ᵀb = 0`; free bias: also `M√π = 0`); `tol = 1e-12` gives
objectives to ~1e-13 in the tested cases.

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
from ._convex_fista import LOSSES, fista, kkt_of_candidate
from ._reduced_ce import within_cluster_margin
from ._solution import TheorySolution, factor_geometry, not_applicable

__all__ = ["ce_convex_solution", "convex_solution", "kkt_residual"]

SOURCE = ("convex certificate: the reduced K×K problem of Hong & Ling (2023), arXiv 2309.09725 "
          "(factorisation eq. 2.3, class means Thm 3.1(a), optimality Lemma 5.2 / Cor. 5.3, factors "
          "Thm 3.1(d) corrected as in E-HL11), for {loss} with {bias}; solved by FISTA/SVT in float64, "
          "certified by its KKT residual")

_RANK_RTOL = 1e-13  # singular values of M = Z̄Π^{1/2} at most this (× max(1, σ_1)) count as zero


@dataclasses.dataclass(frozen=True)
class _Bias:
    """The bias mode: `"none"`, `"free"` or `"regularised"` (with `lam_b > 0`)."""

    mode: str
    lam_b: float | None

    @property
    def numbers(self) -> tuple[float, float, float]:
        """`(lam_b, bias_on, free)` as `fista` takes them."""
        return (self.lam_b or 0.0, 0.0 if self.mode == "none" else 1.0, 1.0 if self.mode == "free" else 0.0)


def _bias(lam_b, free_bias) -> _Bias:
    lam_b = V.finite_positive_or_none("lam_b", lam_b)
    if not isinstance(free_bias, bool | np.bool_):
        raise V.fail("free_bias", free_bias, "expected True or False")
    if lam_b is not None and free_bias:
        raise V.fail("lam_b", lam_b, "a regularised bias (lam_b) and free_bias=True exclude each other")
    if lam_b is not None:
        return _Bias("regularised", lam_b)
    return _Bias("free" if free_bias else "none", None)


def convex_solution(loss, class_sizes, dim, lam_w, lam_h, lam_b=None, *, free_bias=False, tol=1e-12,
                    max_steps=200_000, init=None) -> TheorySolution:
    """Global minimum of a one-layer MSE or CE UFM (any bias mode, any class sizes), with a KKT certificate.

    Solves the reduced problem `min Σ_k π_k ℓ(z̄_k + b, e_k) + λ_Z‖Z̄D^{1/2}‖_* [+ (λ_b/2)‖b‖²]` of the
    module docstring (Hong & Ling 2023, eq. (2.3), Thm 3.1(a), Lemma 5.2 / Cor. 5.3; the same reduction
    for MSE) and assembles the factors of Thm 3.1(d), corrected as in erratum E-HL11.

    **Arguments:**

    - `loss`: `"ce"` or `"mse"`.
    - `class_sizes`: `n_1..n_K` (`K ≥ 2`, any positive numbers; `10⁹` is fine).
    - `dim`: feature dimension `d ≥ 1`; the minimiser's rank must fit (module docstring, step 3).
    - `lam_w`, `lam_h`: `λ_W, λ_H > 0`; only `λ_Z = √(λ_W λ_H)` enters the objective, the ratio sets the
      balance of the factors.
    - `lam_b`: `λ_b > 0` for the regularised bias; `None` for a free bias or none.
    - `free_bias`: an unpenalised bias (with `lam_b=None`). CE's free bias is returned in the gauge
      `Σ_k b_k = 0` (CE is unchanged by `b → b + c1`; this is the minimum-norm one).
    - `tol`: stop when the KKT residual (`kkt_residual`) is `≤ tol`.
    - `max_steps`: iteration cap; the best iterate is returned and `details["converged"]` is False.
    - `init`: optional warm start, a `TheorySolution` (its `mean_logits`, `bias`) or a pair `(Z̄, b)`.

    **Returns:** a `TheorySolution` with `kind="convex"`, `source` starting "convex certificate".
    `details` holds `kkt_residual`, `tol`, `converged`, `iterations`, `restarts`, `final_step`, `loss`,
    `bias` (the mode), `lam_z`, `lam_b`, `N_lam_z` (= `Nλ_Z`), `rank`, `dim`, `zero_logit_classes`
    (classes whose mean feature is 0); for CE also `column_sum_max` (`max_k |Σ_j Z̄_jk|`, 0 at the
    minimiser), `collapsed_classes` and per equal-size cluster `j` the within-cluster gap
    `p_own − p_other` (`details["clusters"]`, with the theory value `max(0, 1 − Nλ_Z/√n_j)`).

    **Raises:** `TheoremNotApplicable` naming `dim` if `d < rank Z̄*`; `ValueError` naming any bad
    argument. A `RuntimeWarning` (not an error) if `max_steps` ends the iterations before the KKT residual
    is `≤ tol`.
    """
    loss = V.choice("loss", loss, LOSSES)
    n = V.class_sizes("class_sizes", class_sizes)
    dim = V.integer("dim", dim, 1)
    lam_w, lam_h = V.positive("lam_w", lam_w), V.positive("lam_h", lam_h)
    bias = _bias(lam_b, free_bias)
    tol = V.positive("tol", tol)
    max_steps = V.integer("max_steps", max_steps, 1)
    M0, b0 = _warm_start(init, n, loss, bias)
    reduced = _solve(loss, n, math.sqrt(lam_w * lam_h), bias, M0, b0, tol, max_steps)
    if not reduced.kkt <= tol:
        warnings.warn(f"convex_solution: KKT residual {reduced.kkt:.3g} > tol={tol:g} after "
                      f"{reduced.iterations} iterations (max_steps); returning the best iterate.",
                      RuntimeWarning, stacklevel=2)
    rank = int(np.count_nonzero(reduced.s > 0))
    if rank > dim:
        raise not_applicable("dim", dim, f"the convex minimiser has rank {rank}, and the reduction is exact "
                             "only for d >= its rank (below it the one-layer UFM's minimum is strictly "
                             "above the convex value)")
    return _solution(loss, reduced, n, dim, lam_w, lam_h, bias, tol)


def ce_convex_solution(class_sizes, dim, lam_w, lam_h, lam_b=None, *, free_bias=False, tol=1e-12,
                       max_steps=200_000, init=None) -> TheorySolution:
    """`convex_solution("ce", ...)`: the one-layer cross-entropy UFM for any class sizes (Hong & Ling 2023,
    §3.1). See `convex_solution` for the arguments, returns and errors."""
    return convex_solution("ce", class_sizes, dim, lam_w, lam_h, lam_b, free_bias=free_bias, tol=tol,
                           max_steps=max_steps, init=init)


def kkt_residual(class_sizes, lam_z, lam_b, zbar, bias=None, *, loss="ce", free_bias=False) -> float:
    """KKT residual `dist(0, ∂F)` of a candidate `(Z̄, b)` of the reduced problem (module docstring).

    `F` is the reduced objective in the normalised variables `(M = Z̄ Π^{1/2}, b)`, so the value is
    `‖(−EΠ^{1/2} − μ(U_r V_rᵀ + R*), Eπ + λ_b b)‖_F` with `μ = λ_Z √N` and `E` the output residuals
    (`softmax(z̄_k + b) − e_k` for CE, `z̄_k + b − e_k` for MSE) — 0 exactly at a minimiser.
    `lam_b=None` with `free_bias=False` is the bias-free model (the bias equation is dropped; `bias`
    must then be `None` or zero); `free_bias=True` a free bias (`λ_b = 0` in the bias equation).

    For a candidate that is not exactly low-rank (e.g. `W H̄` from a numerical solver), the rank `r` of
    `M` is chosen to minimise `residual_r + L‖σ_{r+1..K}(M)‖_2` (the second term bounds the change of the
    gradient when the small singular values are dropped; `L` = 1 for CE, 2 for MSE).

    **Raises:** `ValueError` naming the bad argument.
    """
    loss = V.choice("loss", loss, LOSSES)
    n = V.class_sizes("class_sizes", class_sizes)
    K = n.size
    lam_z = V.positive("lam_z", lam_z)
    mode = _bias(lam_b, free_bias)
    zbar = np.asarray(zbar, dtype=np.float64)
    if zbar.shape != (K, K):
        raise V.fail("zbar", f"an array of shape {zbar.shape}", f"expected shape (K, K) = ({K}, {K})")
    if mode.mode == "none":
        if bias is not None and np.any(np.asarray(bias) != 0):
            raise V.fail("bias", bias, "expected None or zeros for the bias-free model (lam_b=None)")
        b = np.zeros(K)
    else:
        b = np.zeros(K) if bias is None else np.asarray(bias, dtype=np.float64).reshape(K)
    N = n.sum()
    lb, on, _ = mode.numbers
    with jax.enable_x64(True):
        return float(kkt_of_candidate(loss, jnp.asarray(n / N), jnp.asarray(lam_z * math.sqrt(N)),
                                      jnp.asarray(lb), jnp.asarray(on), jnp.asarray(zbar), jnp.asarray(b)))


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


def _warm_start(init, n: np.ndarray, loss: str, bias: _Bias) -> tuple[np.ndarray, np.ndarray]:
    """`(M0, b0)` from `init` (`None`, a `TheorySolution` or `(Z̄, b)`), in the normalised variables; a
    CE free bias is put in the gauge `Σ_k b_k = 0`."""
    K = n.size
    if init is None:
        return np.zeros((K, K)), np.zeros(K)
    z0, b0 = (init.mean_logits, init.bias) if isinstance(init, TheorySolution) else init
    z0 = np.asarray(z0, dtype=np.float64)
    if z0.shape != (K, K):
        raise V.fail("init", f"a Z̄ of shape {z0.shape}", f"expected shape (K, K) = ({K}, {K})")
    M0 = z0 * np.sqrt(n / n.sum())[None, :]
    b0 = np.zeros(K) if (b0 is None or bias.mode == "none") else np.asarray(b0, dtype=np.float64).reshape(K)
    if loss == "ce" and bias.mode == "free":
        b0 = b0 - b0.mean()
    return M0, b0


def _solve(loss, n, lam_z, bias: _Bias, M0, b0, tol, max_steps) -> _Reduced:
    """Run FISTA (float64) and return its best iterate as `(Z̄, b)` with the certificate."""
    K = n.size
    N = float(n.sum())
    pi = n / N
    lam_b, bias_on, free = bias.numbers
    with jax.enable_x64(True):
        out = fista(loss, jnp.asarray(pi), jnp.asarray(lam_z * math.sqrt(N)), jnp.asarray(lam_b),
                    jnp.asarray(bias_on), jnp.asarray(free), jnp.asarray(M0), jnp.asarray(b0),
                    jnp.asarray(tol), jnp.asarray(max_steps))
        out = jax.device_get(out)
    M, b, U, V, s = (np.asarray(out[k], dtype=np.float64) for k in ("M", "b", "U", "V", "s"))
    # Singular values of M below rounding level (e.g. exactly at a collapse threshold) are zero.
    tiny = (s > 0) & (s <= _RANK_RTOL * max(1.0, float(s.max())))
    if np.any(tiny):
        s = np.where(tiny, 0.0, s)
        M = (U * s[None, :]) @ V.T
    if bias.mode == "none":
        b = np.zeros(K)
    elif loss == "ce" and bias.mode == "free":
        b = b - b.mean()  # the gauge; the iterates keep it up to round-off, CE does not see the shift
    return _Reduced(zbar=M / np.sqrt(pi)[None, :], bias=b, s=s, V=V, kkt=float(out["kkt"]),
                    objective=float(out["objective"]), iterations=int(out["iterations"]),
                    restarts=int(out["restarts"]), step=float(out["step"]))


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
    """CE: per equal-size cluster the gap `p_own − p_other` (and its theory value), and the collapsed
    classes."""
    Z = zbar + bias[:, None]
    Zs = Z - Z.max(axis=0, keepdims=True)
    P = np.exp(Zs) / np.exp(Zs).sum(axis=0, keepdims=True)
    clusters, collapsed = [], []
    margins = within_cluster_margin(n, N_lam_z / float(n.sum()))
    for g in _clusters(n):
        size = float(n[g[0]])
        info = {"classes": tuple(int(k) for k in g), "size": size, "gap_theory": float(margins[g[0]])}
        if g.size >= 2:
            sub = P[np.ix_(g, g)]
            info["gap"] = float(np.mean(np.diag(sub)) - np.mean(sub[~np.eye(g.size, dtype=bool)]))
            if N_lam_z >= math.sqrt(size):
                collapsed.extend(int(k) for k in g)
        clusters.append(info)
    return clusters, sorted(collapsed)


def _regime(full_rank, rank, collapsed, zero_cols) -> str:
    """`"complete-collapse"` (Z̄ = 0), `"full-rank"` (the largest possible rank, no cluster collapsed), or
    the collapsed classes, the classes with zero logits (and zero mean features) and the rank."""
    if rank == 0:
        return "complete-collapse"
    if not collapsed and rank == full_rank:
        return "full-rank"
    parts = []
    if collapsed:
        parts.append("collapsed classes: " + ",".join(map(str, collapsed)))
    if zero_cols:
        parts.append("zero logits: " + ",".join(map(str, zero_cols)))
    parts.append(f"rank {rank}")
    return "; ".join(parts)


def _details(loss, reduced: _Reduced, n, dim, lam_z, bias: _Bias, tol) -> tuple[str, dict]:
    """The regime and the `details` of the reduced minimiser (see `convex_solution`)."""
    K = n.size
    zbar = reduced.zbar
    rank = int(np.count_nonzero(reduced.s > 0))
    N_lam_z = float(n.sum()) * lam_z
    scale = max(1.0, float(np.abs(zbar).max()))
    zero_cols = [int(k) for k in range(K) if np.abs(zbar[:, k]).max() <= 1e-9 * scale]
    details = {"kkt_residual": reduced.kkt, "tol": tol, "converged": bool(reduced.kkt <= tol),
               "iterations": reduced.iterations, "restarts": reduced.restarts, "final_step": reduced.step,
               "loss": loss, "bias": bias.mode, "lam_z": lam_z, "lam_b": bias.lam_b, "N_lam_z": N_lam_z,
               "rank": rank, "zero_logit_classes": tuple(zero_cols), "dim": dim}
    collapsed: list[int] = []
    if loss == "ce":
        clusters, collapsed = _cluster_gaps(n, zbar, reduced.bias, N_lam_z)
        details.update(column_sum_max=float(np.abs(zbar.sum(axis=0)).max()),
                       collapsed_classes=tuple(collapsed), clusters=tuple(clusters))
    full_rank = K - 1 if (loss == "ce" or bias.mode == "free") else K
    return _regime(full_rank, rank, collapsed, zero_cols), details


def _solution(loss, reduced: _Reduced, n, dim, lam_w, lam_h, bias: _Bias, tol) -> TheorySolution:
    """Factor geometry (note §1.6, erratum E-HL11), regime and details of the reduced minimiser.

    With `Z̄D^{1/2} = ŪΣ̄V̄ᵀ`, `Σ̄ = √N·s` (`s`: singular values of `M = Z̄Π^{1/2}`): `factor_geometry`.
    """
    lam_z = math.sqrt(lam_w * lam_h)
    mean_gram, weight_sv, mean_sv = factor_geometry(math.sqrt(float(n.sum())) * reduced.s, reduced.V, n, dim,
                                                    lam_w, lam_h)
    regime, details = _details(loss, reduced, n, dim, lam_z, bias, tol)
    bias_words = {"none": "no bias", "free": "a free bias (gauge sum(b) = 0)" if loss == "ce" else "a free bias",
                  "regularised": "a regularised bias"}[bias.mode]
    return TheorySolution(
        objective=reduced.objective,
        regime=regime,
        mean_gram=mean_gram,
        mean_logits=reduced.zbar,
        bias=reduced.bias,
        weight_singular_values=(weight_sv,),
        product_singular_values=weight_sv.copy(),
        mean_singular_values=mean_sv,
        source=SOURCE.format(loss={"ce": "CE", "mse": "MSE"}[loss], bias=bias_words),
        details=details,
        kind="convex",
    )
