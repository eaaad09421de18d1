"""Second-order check at a point: the smallest Hessian eigenvalue off the symmetry directions.

A solver's "converged" means a small gradient, which a saddle passes. At a point `x` of a problem this
module computes

    λ_min = min { vᵀ ∇²f̃(x̃) v : ‖v‖ = 1, v ⟂ S(x̃), v_i = 0 for i ∉ F(x̃) }

by Lanczos with full reorthogonalisation on Hessian-vector products (`jax.jvp` of `jax.grad`, float64),
where

- `f̃(x̃) = f(x̃/s)` is the objective in the solvers' **balanced coordinates** `x̃ = s·x` (`s = √λ_{W,l}` on
  `W_l`, `√(λ_H w_kj)` on column `h_kj`, `√λ_b` on a regularised bias; `solve/_minimise.py`). Every
  penalty is `½‖x̃‖²` there, so the penalty's curvature is exactly 1 in every direction and eigenvalues
  of the `W`'s, `H` and `b` are on one scale whatever the `λ`'s and class sizes (in the original
  coordinates they would differ by factors `λ`, `λ_H n_k`);
- `S(x̃)` is the span of the tangents of the known continuous symmetries at the point (below), on which
  the Hessian vanishes at a critical point (`f` is constant along the orbit), so they would put zeros at
  the bottom of the spectrum that say nothing about the point;
- `F(x̃)` are the free coordinates: not padding columns (weight 0), not a bias the model does not have,
  and with `H >= 0` not a feature coordinate at its bound `h = 0` (see `free_coordinates`).

**Symmetries.** For each space between two factors — the feature space `R^d` between `H` and `W_1`,
and each hidden space `R^{d_l}` between `W_l` and `W_{l+1}` — and every orthogonal `Q`, the map
`X → Q X`, `W_next → W_next Qᵀ` (`X` the factor into the space: `H` or `W_l`) leaves the objective
unchanged. The tangents at the point are `(A X, −W_next A)` for antisymmetric `A`. With `H >= 0` the
feature-space rotations are not symmetries (they leave the cone). For cross-entropy with a free bias,
`b → b + c1` is one too (softmax is shift invariant). These rotations act on the balanced coordinates
exactly as on the original ones (the scales are constant on each factor, and on each feature column).

**Reduced problems.** At a point whose columns of each class are equal (every critical point: the
problem in one column is strictly convex), the Hessian of the full problem in balanced coordinates is
block diagonal: the class-mean directions carry exactly the Hessian of the one-column-per-class problem
(`reduce_problem`), and the within-class directions (`Σ_j w_kj δ_kj = 0`, `δ` in original
coordinates) have curvature `I + Wᵀ∇²ℓ W/(N'λ_H) ⪰ I` in balanced coordinates (`W` the product of the
layers, `ℓ` convex in the logits; the column weight cancels); the cross terms are linear in
`Σ_j w_kj δ_kj` and vanish. So `λ_min` of the
full problem is `min(λ_min(reduced), ≥ 1)`: the sign, and the value whenever it is below 1, are those
of the reduced problem. `hessian_check` therefore works on the reduced problem when the point allows it
(cost independent of `N`), and says so (`HessianCheck.reduced`).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, Bool, Float
from scipy.linalg import eigh_tridiagonal

from . import _validation as V
from ._params import Params, reduce_params
from ._problem import Problem, reduce_problem
from .losses import objective
from .solve._minimise import evaluate_batch, from_balanced, to_balanced

# Tolerance factors of `curvature_tolerance` (see there for the derivation).
ROUNDOFF_FACTOR = 10.0
GRADIENT_FACTOR = 1e3
# Singular values of the stacked symmetry tangents below this fraction of the largest are dropped: such
# a direction is either zero (a rotation that fixes the point) or known only to relative accuracy
# eps / 1e-8 ≈ 1e-8; leaving it in the complement costs nothing (its curvature is ≈ 0, not negative).
SYMMETRY_RTOL = 1e-8

Verdict = Literal["negative", "nonnegative", "inconclusive"]


@dataclasses.dataclass(frozen=True)
class HessianCheck:
    """The smallest Hessian eigenvalue at a point, off the symmetry directions (`hessian_check`).

    **Fields** (host floats; balanced coordinates):

    - `min_eig`: the smallest Ritz value `θ_min`. It is a Rayleigh quotient, so `λ_min <= θ_min`
      always, and `|λ_min − θ_min| <= residual` once the pair has converged.
    - `max_eig`: the largest Ritz value (a lower bound on `λ_max`): the Hessian's scale.
    - `residual`: `‖∇²f̃ y − θ_min y‖` of the smallest Ritz pair.
    - `steps`: Lanczos steps taken (`== dimension` means the Krylov space is the whole space: exact).
    - `dimension`: free coordinates minus the rank of the symmetry directions.
    - `symmetries`: the rank of the symmetry directions left out.
    - `active`: feature coordinates at their bound `h = 0` with a gradient into it, left out (`H >= 0`
      only; `free_coordinates`).
    - `weakly_active`: those at the bound with a zero gradient, left out too (their escapes into
      `h > 0` are not examined; `free_coordinates`).
    - `grad_norm`: the (projected) gradient norm at the point, in balanced coordinates.
    - `tolerance`: `curvature_tolerance(...)`: what "clearly below 0" means here.
    - `reduced`: whether the check ran on the one-column-per-class problem (see the module docstring).
    """

    min_eig: float
    max_eig: float
    residual: float
    steps: int
    dimension: int
    symmetries: int
    active: int
    weakly_active: int
    grad_norm: float
    tolerance: float
    reduced: bool

    @property
    def verdict(self) -> Verdict:
        """`hessian_verdict(self)`."""
        return hessian_verdict(self)


def curvature_tolerance(grad_norm: float, scale: float, dimension: int, dtype=jnp.float64) -> float:
    """What "clearly below 0" means for a computed smallest eigenvalue:

        τ = max( GRADIENT_FACTOR · ‖g̃‖,  ROUNDOFF_FACTOR · √n · eps · max(1, |θ|_max) )

    - *Round-off.* A Hessian-vector product by forward-over-reverse differentiation repeats the
      gradient's arithmetic: each entry is a sum of `O(n)` rounded products, error `≲ √n · eps · ‖∇²f̃‖`
      (random-walk accumulation), and Lanczos with full reorthogonalisation is backward stable, so the
      Ritz values carry the same error. The scale is the largest Ritz value, at least 1 (the penalty's
      curvature in balanced coordinates).
    - *Distance from a critical point.* The point is `δ ≈ ‖g̃‖/μ` from the critical point it
      approximates (`μ` the curvature along the way), and the Hessian moves by `≈ T δ` (`T` the third
      derivative): near a degenerate minimum this can be slightly negative (e.g. `(y − x²)²` off its
      valley has `λ_min ≈ −2‖g‖`). In balanced coordinates objectives are O(1) (CE `<= log K`, MSE
      `<= ½` at the origin) and the penalty's curvature is 1, so lengths, gradients and curvatures share
      one unit; `GRADIENT_FACTOR = 10³` bounds `T/μ` generously. In float64 at the solvers' `gtol = 1e-9`
      this gives `τ ≈ 1e-6`, far above round-off and far below the curvature of the saddles of these
      models (`1 − √n_k/(Nλ_Z)`, of order 0.1–1 wherever a class is alive).

    **Arguments:** `grad_norm` (balanced coordinates), `scale` (`|θ|_max`), `dimension` (`n`), `dtype`
    (whose `eps` applies).

    **Returns:** `τ > 0` as a float.
    """
    eps = float(jnp.finfo(dtype).eps)
    roundoff = ROUNDOFF_FACTOR * math.sqrt(max(int(dimension), 1)) * eps * max(1.0, float(scale))
    return max(GRADIENT_FACTOR * float(grad_norm), roundoff)


def hessian_verdict(check: HessianCheck) -> Verdict:
    """`"negative"` (a saddle: some feasible direction of strictly negative curvature) if
    `θ_min < −τ`; `"nonnegative"` if `θ_min >= −τ` and the smallest Ritz pair has converged
    (`residual <= τ`, or the Krylov space is the whole space); `"inconclusive"` otherwise.

    "negative" needs no convergence: `θ_min` is a Rayleigh quotient of a vector in the complement of
    the symmetries, so `λ_min <= θ_min < −τ`. With `H >= 0` that vector keeps every coordinate at the
    bound fixed (`free_coordinates`), so both of its signs are feasible: a second-order descent
    direction.
    """
    if check.min_eig < -check.tolerance:
        return "negative"
    if check.residual <= check.tolerance or check.steps >= check.dimension:
        return "nonnegative"
    return "inconclusive"


# ---- coordinates --------------------------------------------------------------------------------------


def free_coordinates(params: Params, problem: Problem) -> Bool[Array, " n"]:
    """The coordinates the Hessian is taken over, flattened like the balanced point.

    Excluded: padding columns (weight 0: the objective does not depend on them), the bias when the model
    has none, and, with `H >= 0`, every feature coordinate at its bound `h <= 0`. Those with a gradient
    into the bound are active constraints. Those with a zero gradient (weakly active) are excluded too:
    only `h >= 0` is feasible there, so a negative curvature that needs both signs of them is no escape,
    and it occurs at certified global minima: at the ReLU-CE minimum of Dang et al. 2024 with `d > K`
    (`n = (6, 6, 1)`, `d = 4`, `λ = 0.01`) the unused coordinate is weakly active for every class, and
    the Hessian on the face that includes it has `λ_min = −0.22`, along a direction with `h` of both
    signs there (`tests/test_second_order.py`). So the check is the exact second-order condition on the
    face `{h_i = 0 where h_i = 0}` — negative there is a saddle — and does not examine escapes into
    `h > 0` from a weakly active coordinate (`HessianCheck.weakly_active` counts them).
    """
    weights = tuple(jnp.ones(w.shape, bool) for w in params.weights)
    features = jnp.broadcast_to((problem.column_weights > 0)[..., None], params.features.shape)
    if problem.nonneg:
        features = features & (params.features > 0)
    bias = jnp.full(params.bias.shape, problem.bias != "none")
    return ravel_pytree(Params(weights, features, bias))[0]


def symmetry_directions(params: Params, problem: Problem) -> Float[np.ndarray, "r n"]:
    """An orthonormal basis (rows) of the tangents of the known symmetries at the point, in balanced
    coordinates (see the module docstring).

    For each space between two factors, `X` (into it: `H̃` as `d × columns`, or `W̃_l`) and `W̃_next`
    (out of it), the tangents `(A X, −W̃_next A)` depend on `A` only through its action on
    `U = range([X, W̃_nextᵀ])` (rank `r`): the generators `u_a u_bᵀ − u_b u_aᵀ` with `a < b < r` and
    `u_a v_cᵀ − v_c u_aᵀ` with `v_c ⟂ U` span them (`r(r−1)/2 + r(d_space − r)` of them; rotations of
    `U^⊥` fix the point). The stacked tangents are orthonormalised by an SVD, keeping singular values
    above `SYMMETRY_RTOL` of the largest. For CE with a free bias, `1/√K` on the bias is added.

    **Returns:** an `(r, n)` NumPy array (float64) with orthonormal rows; `r = 0` at the origin.
    """
    balanced = to_balanced(params, problem)
    leaves = [np.asarray(x, dtype=np.float64) for x in jax.tree.leaves(balanced)]
    sizes = [x.size for x in leaves]
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    n = int(offsets[-1])
    depth = len(params.weights)
    weights = leaves[:depth]
    features = leaves[depth]  # (K, m, d)
    blocks = []
    for space in range(depth):
        if space == 0 and problem.nonneg:
            continue  # rotations of the feature space leave the cone H >= 0
        into = features.reshape(-1, features.shape[-1]).T if space == 0 else weights[space - 1]
        out = weights[space]
        dim = out.shape[1]
        U, s, _ = np.linalg.svd(np.concatenate([into, out.T], axis=1), full_matrices=True)
        if s.size == 0 or s[0] == 0:
            continue
        r = int(np.sum(s > SYMMETRY_RTOL * s[0]))
        pairs = [(a, b) for a in range(r) for b in range(a + 1, dim)]
        if not pairs:
            continue
        a_idx, b_idx = np.asarray(pairs).T
        gens = (U[:, a_idx].T[:, :, None] * U[:, b_idx].T[:, None, :])
        gens = gens - np.swapaxes(gens, 1, 2)  # (G, dim, dim) antisymmetric
        rows = np.zeros((len(pairs), n))
        if space == 0:
            # Features are stored as rows h_kjᵀ: (A h)ᵀ = hᵀ Aᵀ.
            tangent_in = np.einsum("kmd,ged->gkme", features, gens)
            rows[:, offsets[depth]:offsets[depth + 1]] = tangent_in.reshape(len(pairs), -1)
        else:
            tangent_in = np.einsum("gab,bc->gac", gens, into)
            rows[:, offsets[space - 1]:offsets[space]] = tangent_in.reshape(len(pairs), -1)
        tangent_out = -np.einsum("ab,gbc->gac", out, gens)
        rows[:, offsets[space]:offsets[space + 1]] = tangent_out.reshape(len(pairs), -1)
        blocks.append(rows)
    if problem.loss == "ce" and problem.bias == "free":
        shift = np.zeros((1, n))
        shift[0, offsets[depth + 1]:] = 1.0 / math.sqrt(params.bias.shape[-1])
        blocks.append(shift)
    if not blocks:
        return np.zeros((0, n))
    stacked = np.concatenate(blocks, axis=0)
    _, s, Vt = np.linalg.svd(stacked, full_matrices=False)
    if s.size == 0 or s[0] == 0:
        return np.zeros((0, n))
    return Vt[s > SYMMETRY_RTOL * s[0]]


# ---- Hessian-vector products ----------------------------------------------------------------------


@eqx.filter_jit
def _grad(x: Array, problem: Problem, template: Params) -> Array:
    """`∇f̃(x̃)` in balanced coordinates (flattened like `template`)."""
    _, unravel = ravel_pytree(template)
    return jax.grad(lambda z: objective(from_balanced(unravel(z), problem), problem))(x)


@eqx.filter_jit
def _hvp(x: Array, v: Array, problem: Problem, template: Params) -> Array:
    """`∇²f̃(x̃) v` in balanced coordinates (forward over reverse). `template` fixes the flattening; the
    λ's are array leaves, so a new problem of the same shapes does not recompile."""
    _, unravel = ravel_pytree(template)

    def fn(z):
        return objective(from_balanced(unravel(z), problem), problem)

    return jax.jvp(jax.grad(fn), (x,), (v,))[1]


def hessian_vector_product(params: Params, problem: Problem
                           ) -> Callable[[Float[np.ndarray, " n"]], Float[np.ndarray, " n"]]:
    """`v ↦ ∇²f̃(x̃) v` at `params` (balanced coordinates, flattened like the solvers; NumPy in and
    out), for one unbatched problem."""
    balanced = to_balanced(params, problem)
    x = ravel_pytree(balanced)[0]

    def matvec(v):
        return np.asarray(_hvp(x, jnp.asarray(v, x.dtype), problem, balanced))

    return matvec


# ---- Lanczos ----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class LanczosResult:
    """Extreme Ritz values of a symmetric operator on a subspace (`lanczos_extremes`)."""

    min_value: float
    max_value: float
    residual: float
    steps: int
    vector: Float[np.ndarray, " n"]  # the smallest Ritz vector, unit norm


def lanczos_extremes(matvec: Callable[[np.ndarray], np.ndarray], project: Callable[[np.ndarray], np.ndarray],
                     start: Float[np.ndarray, " n"], dimension: int, *, max_steps: int = 400,
                     min_steps: int = 30, tolerance: Callable[[float], float] = lambda scale: 0.0
                     ) -> LanczosResult:
    """The smallest (and largest) Ritz value of `P A P` on `range(P)` by Lanczos with full
    reorthogonalisation.

    Each step: `w = P A v_k`, `α_k = v_k·w`, then `w` is orthogonalised against every basis vector
    `v_0..v_k` twice ("twice is enough"; this includes the three-term recurrence) and projected again,
    `β_k = ‖w‖`, `v_{k+1} = w/β_k`. The
    tridiagonal `T_k` (diagonal `α`, off-diagonal `β`) gives the Ritz values; the residual of the
    smallest Ritz pair `(θ, y = V s)` is `β_k |s_k|`. It stops once `k >= min_steps` and that residual is
    `<= tolerance(max |θ|)`, when the Krylov space fills `range(P)` (`dimension` steps: exact), at a
    breakdown (`β_k <= 1e-10 max |θ|`: the Krylov space is invariant to round-off; from a random start,
    which has a component in every eigenspace, that means every distinct eigenvalue has been found), or
    at `max_steps`.

    **Arguments:**

    - `matvec`: `v ↦ A v` (NumPy, `(n,)`), `A` symmetric.
    - `project`: `v ↦ P v`, the orthogonal projector onto the subspace.
    - `start`: a start vector (projected and normalised here).
    - `dimension`: `rank P`.
    - `max_steps`, `min_steps`: step limits.
    - `tolerance`: the residual to reach, as a function of the current spectral scale.

    Memory: the basis, `min(max_steps, dimension) × n` floats (320 MB for `n = 10⁵` at 400 steps; the
    reduced problems of `hessian_check` have `n` of a few hundred to a few thousand).

    **Returns:** a `LanczosResult`.
    """
    n = start.size
    limit = max(1, min(int(max_steps), int(dimension)))
    basis = np.zeros((limit, n))
    alphas, betas = [], []

    def orthogonalise(w, k):
        for _ in range(2):
            w = project(w - basis[:k].T @ (basis[:k] @ w))
        return w

    v = orthogonalise(np.asarray(start, dtype=np.float64), 0)
    norm = float(np.linalg.norm(v))
    if norm == 0 or dimension == 0:
        return LanczosResult(math.nan, math.nan, math.nan, 0, np.zeros(n))
    basis[0] = v / norm
    k = 0
    while True:
        w = project(matvec(basis[k]))
        alphas.append(float(basis[k] @ w))
        w = orthogonalise(w, k + 1)
        beta = float(np.linalg.norm(w))
        if k == 0:
            values, vectors = np.asarray(alphas), np.ones((1, 1))
        else:
            values, vectors = eigh_tridiagonal(np.asarray(alphas), np.asarray(betas))
        theta_min, theta_max = float(values[0]), float(values[-1])
        scale = max(abs(theta_min), abs(theta_max))
        residual = beta * abs(float(vectors[-1, 0]))
        k += 1
        if (k >= limit or beta <= 1e-10 * scale
                or (k >= min_steps and residual <= tolerance(scale))):
            break
        betas.append(beta)
        basis[k] = w / beta
    vec = basis[:k].T @ vectors[:, 0]
    return LanczosResult(theta_min, theta_max, residual, k, vec)


# ---- the check ----------------------------------------------------------------------------------------


def _as_float64(tree):
    return jax.tree.map(lambda a: jnp.asarray(a, jnp.float64) if eqx.is_inexact_array(a) else a, tree)


def _classes_equal(params: Params, problem: Problem) -> bool:
    """Whether every used column of each class equals its class mean, to `√eps` of the largest column."""
    w = np.asarray(problem.column_weights)[..., None] > 0
    h = np.asarray(params.features)
    mean = np.asarray(reduce_params(params, problem).features)
    spread = np.max(np.abs(np.where(w, h - mean, 0.0)), initial=0.0)
    scale = max(1.0, float(np.max(np.abs(h), initial=0.0)))
    return spread <= math.sqrt(float(jnp.finfo(h.dtype).eps)) * scale


def hessian_check(params: Params, problem: Problem, *, reduce: bool = True, max_steps: int = 400,
                  min_steps: int = 30, seed: int = 0) -> HessianCheck:
    """The smallest eigenvalue of the Hessian at `params`, off the symmetry directions and on the face
    of free coordinates, in balanced coordinates (module docstring).

    Computed in float64 (the problem and point are cast; float32 if `jax_enable_x64` is off, with the
    tolerance of that precision). With `reduce` (default) and a point whose columns of each class are
    equal, the check runs on the one-column-per-class problem: exact for the sign (module docstring).

    **Arguments:**

    - `params`: the point (of `problem`, or its one-column reduction), unbatched.
    - `problem`: the problem, unbatched.
    - `reduce`: check on `reduce_problem(problem)` when the point allows it.
    - `max_steps`, `min_steps`: Lanczos step limits (`lanczos_extremes`).
    - `seed`: the Lanczos start vector's seed.

    **Returns:** a `HessianCheck`; its `verdict` is `"negative"`, `"nonnegative"` or `"inconclusive"`.

    **Raises:** `ValueError` for a batched problem or a point of other shapes.
    """
    if problem.lam_h.ndim != 0:
        raise V.fail("problem", "a batch", "expected one problem (index the batch first)")
    V.integer("max_steps", max_steps, 1)
    V.integer("min_steps", min_steps, 1)
    params, problem = _as_float64(params), _as_float64(problem)
    reduced = False
    m = problem.columns_per_class
    if params.features.shape[-2] == 1 and m > 1:
        problem, reduced = reduce_problem(problem), True
    elif reduce and m > 1 and _classes_equal(params, problem):
        params, problem, reduced = reduce_params(params, problem), reduce_problem(problem), True
    dims = problem.layer_dims
    expected = ([(dout, din) for din, dout in itertools.pairwise(dims)],
                (problem.num_classes, problem.columns_per_class, problem.dim), (problem.num_classes,))
    got = ([tuple(w.shape) for w in params.weights], tuple(params.features.shape),
           tuple(params.bias.shape))
    if got != expected:
        raise V.fail("params", f"a point of shapes {got}", f"expected the shapes {expected} of the problem")

    _, gnorm = evaluate_batch(*jax.tree.map(lambda a: a[None], (problem, params)))
    grad_norm = float(gnorm[0])
    balanced = to_balanced(params, problem)
    x, unravel = ravel_pytree(balanced)
    grad = unravel(_grad(x, problem, balanced))
    # Strictly active: a gradient into the bound well above the stationarity residual and round-off.
    threshold = 10 * grad_norm + 100 * float(jnp.finfo(x.dtype).eps) * max(
        1.0, float(jnp.max(jnp.abs(grad.features), initial=0.0)))
    at_bound = np.asarray((problem.column_weights[..., None] > 0) & (params.features <= 0)) & problem.nonneg
    strict = at_bound & np.asarray(grad.features > threshold)
    free = np.asarray(free_coordinates(params, problem))
    sym = symmetry_directions(params, problem) * free[None, :]  # supported there; exact zeros elsewhere
    dimension = int(np.sum(free)) - sym.shape[0]
    dtype = params.features.dtype

    def project(v):
        v = v * free
        return v - sym.T @ (sym @ v) if sym.shape[0] else v

    def tol(scale):
        return curvature_tolerance(grad_norm, scale, dimension, dtype) / 10

    start = np.random.default_rng(seed).standard_normal(free.size)
    result = lanczos_extremes(hessian_vector_product(params, problem), project, start, dimension,
                              max_steps=max_steps, min_steps=min_steps, tolerance=tol)
    scale = max(abs(result.min_value), abs(result.max_value)) if result.steps else 1.0
    return HessianCheck(
        min_eig=result.min_value,
        max_eig=result.max_value,
        residual=result.residual,
        steps=result.steps,
        dimension=dimension,
        symmetries=int(sym.shape[0]),
        active=int(np.sum(strict)),
        weakly_active=int(np.sum(at_bound & ~strict)),
        grad_norm=grad_norm,
        tolerance=curvature_tolerance(grad_norm, scale, dimension, dtype),
        reduced=reduced,
    )
