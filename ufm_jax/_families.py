"""The family registry: each UFM family once, with everything the package knows about it.

A *family* is a data term and a feature constraint (`loss`, `nonneg`); its *presets* are named sets of
default options (e.g. `biased_mse` is the MSE family with a free bias). One `Family` entry holds

- `presets`: preset name → default options; a preset name is also a sweep config's `problem.family`
  and a Python constructor (`ufm_jax.plain_mse(...)`);
- `theory`: `Problem → TheorySolution`, raising `TheoremNotApplicable` where no theorem applies;
- `boundaries`: `Problem → {name: λ_Z}`, the theory's phase boundaries along the ray through the
  problem's `(λ_W, λ_H)` (`λ_b` fixed), for figures and thresholds;
- `plot_metrics`, `threshold_metric`: what a sweep draws, and what `ufm threshold` bisects, by default.

`analytic_solution`, the sweep's figures, `ufm threshold`, the config schema and the CLI all query this
registry; adding a family is one entry here plus its theory module (docs/adding_a_family.md).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping

import numpy as np

from . import _validation as V
from ._problem import Problem, make_problem
from .theory._convex import convex_solution
from .theory._deep_linear import class_vanishing_lambdas, deep_linear_mse_solution
from .theory._hong_ling import ce_balanced_solution, ce_two_cluster_solution, ce_two_cluster_thresholds
from .theory._mse_bias import mse_free_bias_solution, surviving_direction_thresholds
from .theory._relu_ce import relu_ce_solution, relu_dead_class_thresholds
from .theory._solution import NoTheory, TheoremNotApplicable, TheorySolution


@dataclasses.dataclass(frozen=True)
class Family:
    """One UFM family (see the module docstring).

    **Fields:**

    - `name`: the family's name (also its first preset).
    - `summary`: one line for listings.
    - `loss`, `nonneg`: the static options that define the family.
    - `variants`: the family's other presets, name → default `make_problem` options (`free_bias`,
      `lam_b`, ...); `presets` adds the family's own name (no options).
    - `theory`: the family's analytic minimum of a problem; raises `TheoremNotApplicable`.
    - `boundaries`: the family's phase boundaries of a problem, in `λ_Z` units; `{}` where none applies.
    - `plot_metrics`: the sweep figures drawn by default.
    - `threshold_metric`: the metric `ufm threshold` bisects by default.
    """

    name: str
    summary: str
    loss: str
    nonneg: bool
    variants: Mapping[str, Mapping]
    theory: Callable[[Problem], TheorySolution]
    boundaries: Callable[[Problem], dict[str, float]]
    plot_metrics: tuple[str, ...]
    threshold_metric: str

    @property
    def presets(self) -> dict[str, Mapping]:
        """Preset name → default options: the family's own name first, then its `variants`."""
        return {self.name: {}, **self.variants}

    def preset(self, name: str) -> Callable[..., Problem]:
        """The constructor of preset `name`: `make_problem` with this family's loss, constraint and the
        preset's defaults (keyword arguments override the defaults)."""
        defaults = dict(self.presets[name])
        loss, nonneg = self.loss, self.nonneg

        def build(class_sizes, dim, *, lam_w, lam_h, **options) -> Problem:
            return make_problem(loss, class_sizes, dim, lam_w=lam_w, lam_h=lam_h,
                                **{"nonneg": nonneg, **defaults, **options})

        build.__name__ = build.__qualname__ = name
        build.__doc__ = (f"{self.summary}\n\n`make_problem({loss!r}, class_sizes, dim, lam_w=..., "
                         f"lam_h=..., {', '.join(f'{k}={v!r}' for k, v in {'nonneg': nonneg, **defaults}.items())},"
                         " **options)`; see `ufm_jax.make_problem` for the arguments.")
        return build


# ---- the numbers a theory function needs -----------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Numbers:
    """One unbatched problem's numbers, as float64 NumPy (theory runs on the host)."""

    n: np.ndarray
    dim: int
    widths: tuple[int, ...]
    lam_w: np.ndarray
    lam_h: float
    lam_b: float | None

    @property
    def balanced(self) -> bool:
        return bool(np.all(self.n == self.n[0]))

    @property
    def lam_z(self) -> float:
        """`√(λ_{W,1} λ_H)`: the coordinate along which boundaries are stated."""
        return math.sqrt(self.lam_w[0] * self.lam_h)


def _numbers(problem: Problem) -> _Numbers:
    if problem.lam_h.ndim != 0:
        raise V.fail("problem", "a batch", "expected one problem (index the batch first)")
    return _Numbers(
        n=np.asarray(problem.class_sizes, dtype=np.float64),
        dim=problem.dim,
        widths=problem.widths,
        lam_w=np.asarray(problem.lam_w, dtype=np.float64),
        lam_h=float(problem.lam_h),
        lam_b=float(problem.lam_b) if problem.bias == "regularised" else None,
    )


def _two_clusters(n: np.ndarray) -> tuple[int, float, int, float] | None:
    """`(k_a, n_a, k_b, n_b)` if the sizes form two clusters of >= 2 classes each (`n_a > n_b`)."""
    values, counts = np.unique(n, return_counts=True)
    if values.size != 2 or np.any(counts < 2):
        return None
    return int(counts[1]), float(values[1]), int(counts[0]), float(values[0])


def _per_size(n: np.ndarray, values, label: str) -> dict[str, float]:
    """`{"class k <label>": value}` for the first class (0-based index, as in the data) of each distinct
    size, so a boundary keeps its name when a sweep varies the sizes."""
    out: dict[str, float] = {}
    seen: set[float] = set()
    for k, (size, value) in enumerate(zip(n, np.asarray(values, dtype=np.float64))):
        if size in seen or not (value > 0 and np.isfinite(value)):
            continue
        seen.add(float(size))
        out[f"class {k} {label}"] = float(value)
    return out


# ---- MSE --------------------------------------------------------------------------------------------


def mse_theory(problem: Problem) -> TheorySolution:
    """No bias: Dang et al. 2023 Thm 4.4 (any depth and sizes); free bias: Liu 2024 Thm 4.3; regularised
    bias, one layer: the convex certificate (`convex_solution`)."""
    x = _numbers(problem)
    if problem.bias == "none":
        return deep_linear_mse_solution(x.n, x.dim, x.widths, x.lam_w, x.lam_h)
    if problem.bias == "free":
        return mse_free_bias_solution(x.n, x.dim, x.widths, x.lam_w, x.lam_h)
    if problem.depth == 1:
        return convex_solution("mse", x.n, x.dim, float(x.lam_w[0]), x.lam_h, x.lam_b)
    raise TheoremNotApplicable("deep MSE with a regularised bias: no known global minimum (one layer has "
                               "the convex certificate).")


def mse_boundaries(problem: Problem) -> dict[str, float]:
    """No bias: the `λ_Z` at which each class vanishes; free bias: at which each direction of the centred
    labels dies."""
    x = _numbers(problem)
    ray_w, ray_h = x.lam_w / x.lam_z, x.lam_h / x.lam_z
    if problem.bias == "none":
        return _per_size(x.n, class_vanishing_lambdas(x.n, x.dim, x.widths, ray_w, ray_h), "vanishing")
    if problem.bias == "free":
        values = surviving_direction_thresholds(x.n, x.dim, x.widths, ray_w, ray_h)
        return {f"direction {j} vanishing": float(v) for j, v in enumerate(values) if v > 0}
    return {}


def _no_theory_nonneg_mse(problem: Problem) -> TheorySolution:
    raise TheoremNotApplicable("MSE with H >= 0: none of the papers gives the global minimum.")


# ---- CE ---------------------------------------------------------------------------------------------


def ce_theory(problem: Problem) -> TheorySolution:
    """Hong & Ling 2023 (one layer: balanced, two clusters; any sizes and a free bias by the convex
    certificate). Deep CE has none: Dang et al. 2023 App. A's ETF point is not the global minimum for
    L >= 2 in general (erratum E-DL16)."""
    x = _numbers(problem)
    if problem.depth > 1:
        if x.balanced:
            # Thm A.1's ETF point (`deep_linear_ce_balanced_solution(..., allow_uncertified=True)`) is a
            # critical point, not the global minimum in general (erratum E-DL16): nothing to certify with.
            raise TheoremNotApplicable("deep CE (L >= 2): no known global minimum (Dang et al. 2023 "
                                       "Thm A.1's ETF point is not one in general: erratum E-DL16).")
        raise TheoremNotApplicable("deep CE with unequal class sizes: no known global minimum.")
    lam_w = float(x.lam_w[0])
    if problem.bias == "free":
        if x.balanced:
            # CE is invariant under b → b + c1, and by class symmetry the reduced convex problem has a
            # minimiser with b ∝ 1: a free bias attains the bias-free minimum (b = 0 in the gauge
            # Σ_k b_k = 0; `compare_with_theory` compares a free CE bias modulo that shift).
            return ce_balanced_solution(x.n, x.dim, lam_w, x.lam_h, None)
        return convex_solution("ce", x.n, x.dim, lam_w, x.lam_h, free_bias=True)
    if x.balanced:
        return ce_balanced_solution(x.n, x.dim, lam_w, x.lam_h, x.lam_b)
    if _two_clusters(x.n) is not None:
        return ce_two_cluster_solution(x.n, x.dim, lam_w, x.lam_h, x.lam_b)
    return convex_solution("ce", x.n, x.dim, lam_w, x.lam_h, x.lam_b)


def ce_boundaries(problem: Problem) -> dict[str, float]:
    """Two clusters, one layer, no free bias, `d >= K − 1` (the theorem's conditions): minority collapse
    `√n_B/N`, the (b)/(c) switch `λ*` and complete collapse `√n_A/N` (Hong & Ling 2023 Thm 3.2)."""
    x = _numbers(problem)
    clusters = _two_clusters(x.n)
    if problem.depth > 1 or problem.bias == "free" or clusters is None or x.dim < x.n.size - 1:
        return {}
    k_a, n_a, k_b, n_b = clusters
    values = ce_two_cluster_thresholds(k_a, n_a, k_b, n_b, x.lam_b)
    names = {"minority_collapse": "minority collapse", "minority_zero": "minority zero",
             "complete_collapse": "complete collapse"}
    return {label: float(values[key]) for key, label in names.items() if np.isfinite(values[key])}


def relu_ce_theory(problem: Problem) -> TheorySolution:
    """Dang et al. 2024 Thm 1: one layer, no bias, `H >= 0`."""
    x = _numbers(problem)
    if problem.depth != 1 or problem.bias != "none":
        raise TheoremNotApplicable("CE with H >= 0 is solved only for one layer without bias "
                                   "(Dang et al. 2024).")
    return relu_ce_solution(x.n, x.dim, float(x.lam_w[0]), x.lam_h)


def relu_ce_boundaries(problem: Problem) -> dict[str, float]:
    """The `λ_Z = √(λ_Wλ_H)` at which each class dies (one per distinct size); one layer, no bias,
    `d >= K` (the theorem's conditions)."""
    x = _numbers(problem)
    if problem.depth != 1 or problem.bias != "none" or x.dim < x.n.size:
        return {}
    thresholds = relu_dead_class_thresholds(x.n, 1.0, 1.0)
    return _per_size(x.n, np.sqrt(thresholds.lam_product_thresholds), "dead")


def _none(problem: Problem) -> dict[str, float]:
    return {}


# ---- the registry -----------------------------------------------------------------------------------

FAMILIES: dict[str, Family] = {
    family.name: family
    for family in (
        Family(
            name="mse",
            summary="MSE UFM, any depth; bias-free (Dang et al. 2023) or with a free bias (Liu 2024); one "
                    "layer with a regularised bias: convex certificate.",
            loss="mse", nonneg=False,
            variants={"plain_mse": {}, "deep_linear_mse": {}, "biased_mse": {"free_bias": True}},
            theory=mse_theory, boundaries=mse_boundaries,
            plot_metrics=("mean_norms", "product_singular_values", "gap"),
            threshold_metric="mean_norms",
        ),
        Family(
            name="ce",
            summary="Cross-entropy UFM, no / free / regularised bias (Hong & Ling 2023).",
            loss="ce", nonneg=False,
            variants={},
            theory=ce_theory, boundaries=ce_boundaries,
            plot_metrics=("minority_logit_spread", "gap", "objective"),
            threshold_metric="minority_logit_spread",
        ),
        Family(
            name="relu_ce",
            summary="Cross-entropy UFM with ReLU-constrained features H >= 0, no bias (Dang et al. 2024).",
            loss="ce", nonneg=True,
            variants={},
            theory=relu_ce_theory, boundaries=relu_ce_boundaries,
            plot_metrics=("mean_norms", "dead_classes", "gap"),
            threshold_metric="dead_classes",
        ),
        Family(
            name="relu_mse",
            summary="MSE UFM with non-negative features H >= 0 (no known minimum).",
            loss="mse", nonneg=True,
            variants={},
            theory=_no_theory_nonneg_mse, boundaries=_none,
            plot_metrics=("mean_norms", "objective"),
            threshold_metric="mean_norms",
        ),
    )
}
"""Family name → `Family`."""

PRESETS: dict[str, Family] = {preset: family for family in FAMILIES.values() for preset in family.presets}
"""Preset name → its `Family` (every preset name is also a config `problem.family`)."""


def family_of(problem: Problem) -> Family:
    """The family of a problem (by its `loss` and `nonneg`)."""
    for family in FAMILIES.values():
        if family.loss == problem.loss and family.nonneg == problem.nonneg:
            return family
    raise AssertionError(f"no family for loss={problem.loss!r}, nonneg={problem.nonneg}")  # pragma: no cover


def analytic_solution(problem: Problem) -> TheorySolution | NoTheory:
    """The known global minimum of one problem, or `NoTheory(reason)`; it never guesses.

    Asks the problem's family (`family_of(problem).theory`). Only `TheoremNotApplicable` (a theorem's
    conditions fail, e.g. `d < K`, unequal classes in deep CE) becomes `NoTheory`; any other error is a
    bug and propagates. Cases (each function names its paper equation and the errata it corrects):

    - MSE, no bias, any depth and sizes → `deep_linear_mse_solution` (Dang et al. 2023 Thm 4.4);
    - MSE, free bias, any depth and sizes → `mse_free_bias_solution` (Liu 2024 Thm 4.3);
    - MSE, one layer, regularised bias, any sizes → `convex_solution("mse", ...)` (convex certificate);
    - CE, one layer, equal sizes → `ce_balanced_solution` (Hong & Ling 2023 Thm 3.1(c), corrected);
    - CE, one layer, two clusters of >= 2 classes → `ce_two_cluster_solution` (Thm 3.2);
    - CE, one layer, other sizes (any bias), and unequal sizes with a free bias → `convex_solution("ce",
      ...)` (convex certificate: `kind="convex"`, KKT residual in `details["kkt_residual"]`);
    - CE, deeper: none. Dang et al. 2023 App. A's ETF point is a critical point but not the global
      minimum in general (E-DL16); `deep_linear_ce_balanced_solution(..., allow_uncertified=True)`
      returns it;
    - CE with `H >= 0`, one layer, no bias → `relu_ce_solution` (Dang et al. 2024, corrected).
    """
    try:
        return family_of(problem).theory(problem)
    except TheoremNotApplicable as err:
        return NoTheory(str(err))


def phase_boundaries(problem: Problem) -> dict[str, float]:
    """The theory's phase boundaries of one problem's family, in `λ_Z = √(λ_{W,1}λ_H)` units along the
    ray through its `(λ_W, λ_H)`; `{}` where none applies."""
    return family_of(problem).boundaries(problem)


def presets() -> dict[str, Callable[..., Problem]]:
    """Every preset constructor, by name."""
    return {name: family.preset(name) for name, family in PRESETS.items()}
