"""Choose the analytic solution that applies to a problem, or say why none does."""

from __future__ import annotations

import numpy as np

from .._problem import Problem
from ._convex_ce import ce_convex_solution
from ._deep_linear import deep_linear_ce_balanced_solution, deep_linear_mse_solution
from ._hong_ling import ce_balanced_solution, ce_two_cluster_solution
from ._mse_bias import mse_free_bias_solution
from ._relu_ce import relu_ce_solution
from ._solution import NoTheory, TheorySolution


def _numbers(problem: Problem) -> dict:
    if problem.lam_h.ndim != 0:
        raise ValueError("problem is batched: analytic_solution takes one problem (index the batch first).")
    return dict(
        class_sizes=np.asarray(problem.class_sizes, dtype=np.float64),
        dim=problem.dim,
        lam_w=np.asarray(problem.lam_w, dtype=np.float64),
        lam_h=float(problem.lam_h),
        lam_b=float(problem.lam_b) if problem.bias == "regularised" else None,
    )


def _two_clusters(sizes: np.ndarray) -> bool:
    values, counts = np.unique(sizes, return_counts=True)
    return values.size == 2 and bool(np.all(counts >= 2))


def analytic_solution(problem: Problem) -> TheorySolution | NoTheory:
    """The known global minimum of `problem`, or `NoTheory(reason)`; it never guesses.

    Cases (see each function for the paper equation and the errata it corrects):

    - MSE, no bias, any depth and class sizes → `deep_linear_mse_solution` (Dang et al. 2023 Thm 4.4);
    - MSE, free bias, any depth and class sizes → `mse_free_bias_solution` (Liu 2024 Thm 4.3);
    - CE, one layer, equal class sizes → `ce_balanced_solution` (Hong & Ling 2023 Thm 3.1(c), corrected);
    - CE, one layer, two cluster sizes of >= 2 classes each → `ce_two_cluster_solution` (Thm 3.2);
    - CE, one layer, any other class sizes, bias-free or regularised → `ce_convex_solution` (the convex
      reduced K×K problem solved to its KKT certificate);
    - CE, deeper, equal class sizes → `deep_linear_ce_balanced_solution` (Dang et al. 2023 App. A);
    - CE with `H >= 0`, one layer, no bias → `relu_ce_solution` (Dang et al. 2024, corrected).

    A case whose theorem's conditions fail (e.g. `d < K`) returns `NoTheory` with the theorem's message.
    """
    x = _numbers(problem)
    n = x["class_sizes"]
    balanced = bool(np.all(n == n[0]))
    widths = problem.widths
    try:
        if problem.loss == "mse":
            if problem.nonneg:
                return NoTheory("MSE with H >= 0: none of the papers gives the global minimum.")
            if problem.bias == "none":
                return deep_linear_mse_solution(n, x["dim"], widths, x["lam_w"], x["lam_h"])
            if problem.bias == "free":
                return mse_free_bias_solution(n, x["dim"], widths, x["lam_w"], x["lam_h"])
            return NoTheory("MSE with a regularised bias: none of the papers gives the global minimum.")
        if problem.nonneg:
            if problem.depth == 1 and problem.bias == "none":
                return relu_ce_solution(n, x["dim"], x["lam_w"][0], x["lam_h"])
            return NoTheory("CE with H >= 0 is solved only for one layer without bias (Dang et al. 2024).")
        if problem.depth > 1:
            if balanced:
                return deep_linear_ce_balanced_solution(n, x["dim"], widths, x["lam_w"], x["lam_h"],
                                                        bias=problem.bias)
            return NoTheory("deep CE with unequal class sizes: no known global minimum.")
        lam_w = x["lam_w"][0]
        if problem.bias == "free":
            if balanced:
                # CE is invariant under b → b + c1, and by class symmetry the convex reduced problem has a
                # minimiser with b ∝ 1: a free bias attains the bias-free minimum.
                return ce_balanced_solution(n, x["dim"], lam_w, x["lam_h"], None)
            return NoTheory("CE with a free bias and unequal class sizes: no known global minimum "
                            "(use a regularised bias, lam_b > 0).")
        if balanced:
            return ce_balanced_solution(n, x["dim"], lam_w, x["lam_h"], x["lam_b"])
        if _two_clusters(n):
            return ce_two_cluster_solution(n, x["dim"], lam_w, x["lam_h"], x["lam_b"])
        return ce_convex_solution(n, x["dim"], lam_w, x["lam_h"], x["lam_b"])
    except ValueError as err:
        return NoTheory(f"the theorem's conditions do not hold: {err}")
