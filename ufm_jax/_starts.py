"""Structured starts: deterministic points, beyond random ones, from which a search also starts.

Random starts can all miss a global minimum (the deep-linear MSE point `n = (10,10,10,1,1)`, `d = 5`,
`L = 3`, `λ = 0.00794`: every random start stops above the theory's minimum). Starts built from what is
known about the minimisers reach it:

- `theory_start`: a point with the rotation-free invariants of a `TheorySolution` of the problem (its
  global minimiser, up to rotations), or of a nearby problem (the same one without a bias, or with a
  free one);
- `lifted_start`: the minimiser of the one-layer problem with the same loss, bias, sizes, `d`, `λ_H`
  and `λ_W = (Π_l λ_{W,l})^{1/L}`, factored into `L` balanced layers;
- `structured_starts`: those that apply to a problem.

Every start is a `Params` of the problem itself (features `(K, m, d)`, every used column of class `k`
equal to `h̄_k`, padding columns zero), in the problem's dtype, ready for `ufm_jax.solve(problem,
start=...)`.

**From invariants to a point** (`point_from_invariants`). At a minimiser every feature equals its class
mean, so `H̄ᵀH̄ = G` (`mean_gram`) fixes `H̄ ∈ R^{d×K}` up to a rotation of `R^d`: `H̄ = [Λ^{1/2} Vᵀ; 0]` from
`G = V Λ Vᵀ` (a coordinate frame, `√G_kk e_k`, when `G` is diagonal: exact, and non-negative for
`H >= 0`). The rows of the product `P = W_L ⋯ W_1` lie in `range(H̄)` (a component outside it adds penalty
and changes no output), so `P H̄ = Z̄` (`mean_logits`) gives `P = Z̄ H̄⁺`. `P = U Σ Vᵀ` is factored into
balanced layers (`balanced_factors`), and the factors are rescaled so that every penalty term is equal
(`balance_penalties`), as at every critical point.
"""

from __future__ import annotations

import dataclasses
import math

import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike, Float

from ._families import analytic_solution
from ._params import Params, expand_params
from ._problem import Problem, reduce_problem
from .theory import TheorySolution

# Relative cut-off for the rank of `H̄ᵀH̄` and of `P`: the theory's exact zeros come out of eigh/svd at
# round-off (~1e-16 of the largest); genuine singular values of the minimisers here are far above 1e-10.
RANK_RTOL = 1e-10


def mean_features(mean_gram: Float[ArrayLike, "K K"], dim: int, *, nonneg: bool = False
                  ) -> Float[np.ndarray, "d K"] | None:
    """A class-mean matrix `H̄ ∈ R^{d×K}` with `H̄ᵀH̄ = mean_gram` (up to rank `d`).

    A diagonal Gram gives the coordinate frame `H̄ = [√G_11 e_1, …]` (the nonzero classes on the first
    coordinates, the largest `d` of them if more); any other gives `H̄ = [Λ_r^{1/2} V_rᵀ; 0]` from the
    eigendecomposition, keeping eigenvalues above `RANK_RTOL` of the largest (at most `d`).

    **Returns:** `H̄` of shape `(dim, K)`, or `None` when `nonneg` and the Gram is not diagonal (a
    non-negative factor is then not constructed here).
    """
    G = np.asarray(mean_gram, dtype=np.float64)
    K = G.shape[0]
    H = np.zeros((dim, K))
    diag = np.clip(np.diag(G), 0.0, None)
    top = float(diag.max(initial=0.0))
    if top == 0.0:
        return H
    if np.max(np.abs(G - np.diag(np.diag(G)))) <= RANK_RTOL * top:
        alive = [k for k in np.argsort(-diag, kind="stable") if diag[k] > RANK_RTOL * top][:dim]
        for slot, k in enumerate(sorted(alive)):
            H[slot, k] = math.sqrt(diag[k])
        return H
    if nonneg:
        return None
    values, vectors = np.linalg.eigh(0.5 * (G + G.T))
    order = np.argsort(values)[::-1][:dim]
    keep = [i for i in order if values[i] > RANK_RTOL * values[order[0]]]
    H[: len(keep)] = np.sqrt(values[keep])[:, None] * vectors[:, keep].T
    return H


def balanced_factors(product: Float[ArrayLike, "K d"], layer_dims: tuple[int, ...]
                     ) -> tuple[Float[np.ndarray, "_ _"], ...]:
    """`P = U Σ Vᵀ` (`K × d`) as `L` layers with equal singular values `Σ^{1/L}`:

        W_1 = Σ^{1/L} Vᵀ,   W_l = Σ^{1/L} (1 < l < L),   W_L = U Σ^{1/L},

    each padded with zeros to `d_l × d_{l−1}`, keeping the `r = min(rank P, d_1, …, d_{L−1})` largest
    singular values (a narrow layer limits the rank). At a minimum of a deep-linear model the layers
    are aligned and balanced this way (up to the per-layer factors `√(λ̄/λ_l)` of `balance_penalties`).

    **Arguments:** `product` `P` of shape `(K, d)`; `layer_dims` `(d_0 = d, d_1, …, d_L = K)`.

    **Returns:** `(W_1, …, W_L)` as float64 NumPy arrays; `W_L ⋯ W_1 = P` when `r = rank P`.
    """
    P = np.asarray(product, dtype=np.float64)
    dims = tuple(int(x) for x in layer_dims)
    depth = len(dims) - 1
    if depth == 1:
        return (P.copy(),)
    U, sigma, Vt = np.linalg.svd(P, full_matrices=False)
    rank = int(np.sum(sigma > RANK_RTOL * sigma[0])) if sigma.size and sigma[0] > 0 else 0
    r = min(rank, *dims[1:-1])
    s = sigma[:r] ** (1.0 / depth)
    layers = []
    for l in range(depth):
        W = np.zeros((dims[l + 1], dims[l]))
        if l == 0:
            W[:r] = s[:, None] * Vt[:r]
        elif l == depth - 1:
            W[:, :r] = U[:, :r] * s[None, :]
        else:
            W[np.arange(r), np.arange(r)] = s
        layers.append(W)
    return tuple(layers)


def balance_penalties(weights, mean_features_, problem: Problem):
    """Rescale `(W_1..W_L, H̄)` by scalars `c_l` with `Π c_l = 1` so that every penalty term
    `(λ_{W,l}/2)‖W_l‖²` and `(λ_H/2) Σ_k n_k ‖h̄_k‖²` is equal.

    The outputs `W_L ⋯ W_1 H̄` do not change; with them fixed, the sum of the `L+1` terms `c_l² p_l` under
    `Π c_l = 1` is smallest when they are equal (AM–GM), as at every critical point (`f` is stationary
    under `W_l → e^t W_l, W_{l+1} → e^{−t} W_{l+1}`). All-zero factors are left as they are.

    **Returns:** `(weights, mean_features)` rescaled (NumPy).
    """
    lam_w = np.asarray(problem.lam_w, dtype=np.float64)
    n = np.asarray(problem.class_sizes, dtype=np.float64)
    H = np.asarray(mean_features_, dtype=np.float64)
    terms = [lam * float(np.sum(np.square(W))) for lam, W in zip(lam_w, weights)]
    terms.append(float(problem.lam_h) * float(np.sum(n * np.sum(H * H, axis=0))))
    if min(terms) <= 0:
        return tuple(weights), H
    target = math.exp(np.mean(np.log(terms)))
    c = [math.sqrt(target / t) for t in terms]
    return tuple(ci * W for ci, W in zip(c, weights)), c[-1] * H


def _params_for(problem: Problem, weights, H, bias) -> Params:
    """The start as `Params` of `problem`: one column `h̄_k` per class, written out to every used
    column (`expand_params`), in the problem's dtype."""
    dtype = problem.lam_h.dtype
    none = problem.bias == "none" or bias is None
    b = np.zeros(problem.num_classes) if none else np.asarray(bias, dtype=np.float64)
    one = Params(tuple(jnp.asarray(W, dtype) for W in weights), jnp.asarray(H.T[:, None, :], dtype),
                 jnp.asarray(b, dtype))
    return expand_params(one, problem) if problem.columns_per_class > 1 else one


def point_from_invariants(problem: Problem, mean_gram: Float[ArrayLike, "K K"],
                          mean_logits: Float[ArrayLike, "K K"], bias: Float[ArrayLike, " K"] | None
                          ) -> Params | None:
    """A point of `problem` with the given class-mean Gram `H̄ᵀH̄`, mean logits `W_L⋯W_1 H̄` and bias
    (module docstring): `H̄` from `mean_features`, `P = Z̄ H̄⁺`, `balanced_factors`, `balance_penalties`.

    **Returns:** `Params` of `problem`, or `None` if no non-negative `H̄` is constructed (`H >= 0` with a
    non-diagonal Gram).
    """
    H = mean_features(mean_gram, problem.dim, nonneg=problem.nonneg)
    if H is None:
        return None
    Z = np.asarray(mean_logits, dtype=np.float64)
    P = Z @ np.linalg.pinv(H, rcond=RANK_RTOL) if np.any(H) else np.zeros((problem.num_classes, problem.dim))
    weights, H = balance_penalties(balanced_factors(P, problem.layer_dims), H, problem)
    return _params_for(problem, weights, H, bias)


def theory_start(problem: Problem, theory: TheorySolution | None = None) -> Params | None:
    """The global minimiser of `theory` (default `analytic_solution(problem)`) as a point of
    `problem`, one representative of its rotation orbit; `None` when no theory applies.

    Its objective equals `theory.objective` to round-off (tested across the theory catalogue).
    """
    theory = analytic_solution(problem) if theory is None else theory
    if not isinstance(theory, TheorySolution):
        return None
    return point_from_invariants(problem, theory.mean_gram, theory.mean_logits, theory.bias)


def geometric_mean_lambda(problem: Problem) -> float:
    """`λ̄ = (Π_l λ_{W,l})^{1/L}`.

    Why: rescaling the layers `W_l → c_l W_l` with `Π c_l = 1` leaves the product unchanged and turns
    `λ_{W,l}` into `λ_{W,l}/c_l²`; with `c_l = √(λ_{W,l}/λ̄)` every layer gets `λ̄`. So a depth-`L` problem
    depends on its `λ_{W,l}` only through `λ̄` (up to that rescaling), and `λ̄` is the one-layer weight
    decay that treats the layers alike.
    """
    lam = np.asarray(problem.lam_w, dtype=np.float64)
    return float(np.exp(np.mean(np.log(lam))))


def one_layer_problem(problem: Problem) -> Problem:
    """The one-layer, one-column-per-class problem with the same loss, bias, constraint, sizes, `d`,
    `λ_H`, `λ_b` and `λ_W = geometric_mean_lambda(problem)`."""
    lam = jnp.full((1,), geometric_mean_lambda(problem), problem.lam_w.dtype)
    return dataclasses.replace(reduce_problem(problem), lam_w=lam, widths=())


def one_layer_minimiser(problem: Problem, *, seeds: int = 8
                        ) -> tuple[Float[np.ndarray, "K d"], Float[np.ndarray, "d K"], Float[np.ndarray, " K"]]:
    """`(W, H̄, b)` of a minimiser of a one-layer problem: from `analytic_solution` when a theory
    applies (`theory_start`), else the best of a quick `ufm_jax.solve` with `seeds` random starts (key
    0: deterministic). `W` is `K × d`, `H̄` is `d × K`."""
    point = theory_start(problem)
    if point is None:
        from .solve import solve  # solve imports the package's solvers; keep this module light

        point = solve(problem, key=0, seeds=seeds).params
    return (np.asarray(point.weights[0], np.float64), np.asarray(point.features[:, 0, :], np.float64).T,
            np.asarray(point.bias, np.float64))


def lifted_start(problem: Problem, *, seeds: int = 8) -> Params:
    """The one-layer minimiser lifted to the depth of `problem`.

    `(W, H̄, b) = one_layer_minimiser(one_layer_problem(problem))`; `W = U Σ Vᵀ` is factored into `L`
    balanced layers (`balanced_factors`: `W_1 = Σ^{1/L}Vᵀ`, `W_l = Σ^{1/L}`, `W_L = UΣ^{1/L}`, padded to
    the widths) and every factor, `H̄` included, is rescaled so that the penalty terms are equal
    (`balance_penalties`: with `λ_{W,l}`, `λ_l‖W_l‖²` equal as at any minimum). The outputs `W H̄ + b`
    are those of the one-layer minimiser.
    """
    W, H, b = one_layer_minimiser(one_layer_problem(problem), seeds=seeds)
    weights, H = balance_penalties(balanced_factors(W, problem.layer_dims), H, problem)
    return _params_for(problem, weights, H, b)


def _bias_variants(problem: Problem) -> dict[str, Problem]:
    """Nearby problems whose theory gives a start for `problem`: without the bias (a point with `b = 0`
    is a point of every model) and, for a regularised bias, with a free one."""
    out = {}
    if problem.bias != "none":
        out["bias-free theory"] = dataclasses.replace(problem, bias="none")
    if problem.bias == "regularised":
        out["free-bias theory"] = dataclasses.replace(problem, bias="free")
    return out


def named_structured_starts(problem: Problem, *, seeds: int = 8) -> dict[str, Params]:
    """Every structured start that applies to one (unbatched) problem, by name:

    - `"theory"`: `theory_start(problem)`, when a theory applies;
    - `"bias-free theory"`, `"free-bias theory"`: when the problem has no theory but the same problem
      without its bias (or with a free one instead of a regularised one) has;
    - `"lifted"`: `lifted_start(problem)`, for depth `L >= 2` (at `L = 1` it is the problem itself).
    """
    if problem.lam_h.ndim != 0:
        raise ValueError("problem is batched: structured starts are built for one problem (index it).")
    out = {}
    point = theory_start(problem)
    if point is not None:
        out["theory"] = point
    else:
        for name, variant in _bias_variants(problem).items():
            theory = analytic_solution(variant)
            if isinstance(theory, TheorySolution):
                point = point_from_invariants(problem, theory.mean_gram, theory.mean_logits, theory.bias)
                if point is not None:
                    out[name] = point
    if problem.depth >= 2:
        out["lifted"] = lifted_start(problem, seeds=seeds)
    return out


def structured_starts(problem: Problem, *, seeds: int = 8) -> list[Params]:
    """`list(named_structured_starts(problem).values())`: the structured starts that apply."""
    return list(named_structured_starts(problem, seeds=seeds).values())
