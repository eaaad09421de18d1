"""The analytic global minimum of a UFM, as rotation-free invariants."""

from __future__ import annotations

import dataclasses

import numpy as np

from .. import _validation as V


@dataclasses.dataclass(frozen=True)
class TheorySolution:
    """The known global minimum of one problem, in quantities that do not depend on the free rotations.

    Conventions (those of `ufm_jax.Problem`): `W_l ∈ R^{d_l × d_{l-1}}`, `W_1` nearest the features,
    the end-to-end product `P = W_L ⋯ W_1 ∈ R^{K × d}`, the class-mean matrix `H̄ = [h̄_1..h̄_K] ∈ R^{d × K}`
    (at a global minimum every feature equals its class mean), and the bias `b ∈ R^K`.

    **Fields:**

    - `objective`: the global minimum value of the problem's objective (penalties with the ½).
    - `regime`: a short label of which classes or directions survive (e.g. `"minority-collapse"`).
    - `mean_gram`: `H̄ᵀH̄`, shape `(K, K)`; class-mean norms and cosines follow from it.
    - `mean_logits`: `P H̄`, shape `(K, K)` (column k: the bias-free output of class k).
    - `bias`: `b`, shape `(K,)` (zeros for a bias-free model).
    - `weight_singular_values`: one array per layer `W_1..W_L`, descending, length `min(d_l, d_{l-1})`.
    - `product_singular_values`: of `P`, descending, length `min(K, d)`.
    - `mean_singular_values`: of `H̄`, descending, length `min(d, K)`.
    - `source`: the paper, theorem and erratum this solution implements.
    - `details`: scalars specific to the case (block entries, thresholds, certificates), for reports.
    - `kind`: what the solution rests on. `"theorem"`: a closed form from a paper (corrected as in
      docs/errata.md). `"convex"`: the numerical minimiser of the convex reduced problem
      (`ufm_jax.theory.convex_solution`), certified by its KKT residual `details["kkt_residual"]`
      `<= details["tol"]`; its `source` starts with "convex certificate".
    """

    objective: float
    regime: str
    mean_gram: np.ndarray
    mean_logits: np.ndarray
    bias: np.ndarray
    weight_singular_values: tuple[np.ndarray, ...]
    product_singular_values: np.ndarray
    mean_singular_values: np.ndarray
    source: str
    details: dict = dataclasses.field(default_factory=dict)
    kind: str = "theorem"


@dataclasses.dataclass(frozen=True)
class NoTheory:
    """No known global minimum applies to this problem; `reason` says why."""

    reason: str


def padded_singular_values(values, length: int) -> np.ndarray:
    """Sort singular values descending and pad with zeros (or truncate) to `length`."""
    values = np.sort(np.abs(np.asarray(values, dtype=np.float64)))[::-1]
    out = np.zeros(length)
    out[: min(length, values.size)] = values[:length]
    return out


def factor_geometry(s, V, class_sizes, dim: int, lam_w: float, lam_h: float):
    """`(H̄ᵀH̄, σ(W), σ(H̄))` of a one-layer minimiser from its mean logits (note §1.6, erratum E-HL11).

    With `Z̄ D^{1/2} = Ū Σ̄ V̄ᵀ` (`s` the diagonal of `Σ̄`, `V` = `V̄` with one column per entry of `s`,
    `D = diag(n)`), the balanced factors are `W = (λ_H/λ_W)^{1/4} Ū Σ̄^{1/2}` and
    `H̄ = (λ_W/λ_H)^{1/4} Σ̄^{1/2} V̄ᵀ D^{-1/2}` (up to rotation), so
    `H̄ᵀH̄ = √(λ_W/λ_H) D^{-1/2} V̄ Σ̄ V̄ᵀ D^{-1/2}` and `σ(W) = (λ_H/λ_W)^{1/4} Σ̄^{1/2}`. The singular
    values are padded to `min(K, d)`; `σ(H̄)` comes from the SVD of `H̄` (accurate for small values,
    unlike square roots of the Gram's eigenvalues).
    """
    n = np.asarray(class_sizes, dtype=np.float64)
    s = np.asarray(s, dtype=np.float64)
    hbar = (lam_w / lam_h) ** 0.25 * (np.sqrt(s)[:, None] * np.asarray(V).T) / np.sqrt(n)[None, :]
    gram = hbar.T @ hbar
    width = min(n.size, dim)
    return (0.5 * (gram + gram.T), padded_singular_values((lam_h / lam_w) ** 0.25 * np.sqrt(s), width),
            padded_singular_values(np.linalg.svd(hbar, compute_uv=False), width))


class TheoremNotApplicable(ValueError):
    """A theorem's conditions do not hold for this problem (e.g. `d < K`, unequal class sizes).

    The only error that `ufm_jax.analytic_solution` turns into `NoTheory`; any other error in a theory
    function is a bug and propagates. A `ValueError`, so a direct call of a theory function with
    arguments outside its theorem reads like any other bad argument.
    """


def not_applicable(name: str, value, condition: str) -> TheoremNotApplicable:
    """`TheoremNotApplicable` in the package's one message form: `name=value is not allowed: condition.`

    For a theorem's condition (`d >= K - 1`, equal class sizes, two clusters, ...); a bad argument (wrong
    type, `λ <= 0`) is a plain `ValueError` from `ufm_jax._validation` instead.
    """
    return TheoremNotApplicable(str(V.fail(name, value, condition)))
