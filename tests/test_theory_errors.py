"""Every theory function tells a theorem's condition from a bad argument.

A failed condition (`d < K`, unequal classes, not two clusters, deep CE, ...) is `TheoremNotApplicable`,
which `ufm_jax.analytic_solution` turns into `NoTheory`; a bad argument (wrong type, `λ <= 0`, wrong
shape) is a plain `ValueError`, which propagates like any bug. Both name the parameter.
"""

import numpy as np
import pytest

from ufm_jax.theory import (
    TheoremNotApplicable,
    ce_balanced_solution,
    ce_convex_solution,
    ce_two_cluster_solution,
    ce_two_cluster_thresholds,
    class_vanishing_lambdas,
    convex_solution,
    deep_linear_ce_balanced_solution,
    deep_linear_mse_solution,
    kkt_residual,
    minority_collapse_ratio,
    mse_free_bias_solution,
    relu_ce_solution,
    relu_dead_class_thresholds,
    surviving_direction_thresholds,
    within_cluster_margin,
)
from ufm_jax.theory._deep_linear import collapse_threshold, largest_root
from ufm_jax.theory._reduced_ce import ce_factors
from ufm_jax.theory._relu_ce import relu_ce_point
from ufm_jax.theory._two_cluster import complete_collapse_ratio

NOT_APPLICABLE = [
    ("class_sizes", lambda: ce_balanced_solution([5, 3], 2, 0.1, 0.1)),
    ("dim", lambda: ce_balanced_solution([5] * 4, 2, 0.1, 0.1)),
    ("class_sizes", lambda: ce_two_cluster_solution([5, 3, 1, 1], 4, 0.1, 0.1)),
    ("class_sizes", lambda: ce_two_cluster_solution([5, 3, 3], 4, 0.1, 0.1)),
    ("dim", lambda: ce_two_cluster_solution([5, 5, 3, 3], 2, 0.1, 0.1)),
    ("k_a", lambda: ce_two_cluster_thresholds(1, 5, 2, 3)),
    ("k_b", lambda: minority_collapse_ratio(0.1, 2, 1, 3)),
    ("k_a", lambda: complete_collapse_ratio(0.1, 1, 2, 3)),
    ("dim", lambda: ce_convex_solution([5, 3, 1], 1, 0.1, 0.1)),
    ("dim", lambda: convex_solution("mse", [5, 3, 1], 2, 0.01, 0.01, 1.0)),   # the minimiser has rank 3
    ("class_sizes", lambda: deep_linear_ce_balanced_solution([5, 3], 2, (), 0.1, 0.1)),
    ("dim", lambda: deep_linear_ce_balanced_solution([5] * 4, 2, (), 0.1, 0.1)),
    ("widths", lambda: deep_linear_ce_balanced_solution([5] * 4, 3, (2,), 0.1, 0.1, allow_uncertified=True)),
    ("widths", lambda: deep_linear_ce_balanced_solution([5, 5], 2, (2,), 0.1, 0.1)),
    ("dim", lambda: relu_ce_solution([5, 3, 2], 2, 0.1, 0.1)),
    ("dim", lambda: relu_ce_point([5, 3, 2], 2, 0.1, 0.1)),
]

BAD_ARGUMENT = [
    ("dim", lambda: ce_balanced_solution([5] * 4, 3.0, 0.1, 0.1)),
    ("lam_b", lambda: ce_balanced_solution([5] * 4, 3, 0.1, 0.1, -1.0)),
    ("lam_w", lambda: ce_two_cluster_solution([5, 5, 3, 3], 4, [0.1, 0.2], 0.1)),
    ("lam_h", lambda: ce_two_cluster_solution([5, 5, 3, 3], 4, 0.1, float("nan"))),
    ("class_sizes", lambda: ce_two_cluster_solution([5], 4, 0.1, 0.1)),
    ("n_a", lambda: ce_two_cluster_thresholds(2, 3, 2, 5)),
    ("k_a", lambda: ce_two_cluster_thresholds(2.0, 5, 2, 3)),
    ("lam_z", lambda: complete_collapse_ratio(0.0, 2, 2, 3)),
    ("dim", lambda: ce_convex_solution([5, 3, 1], True, 0.1, 0.1)),
    ("tol", lambda: ce_convex_solution([5, 3, 1], 2, 0.1, 0.1, tol=0)),
    ("init", lambda: ce_convex_solution([5, 3, 1], 2, 0.1, 0.1, init=(np.zeros((2, 2)), None))),
    ("loss", lambda: convex_solution("hinge", [5, 3, 1], 2, 0.1, 0.1)),
    ("lam_b", lambda: convex_solution("mse", [5, 3, 1], 2, 0.1, 0.1, 0.1, free_bias=True)),
    ("free_bias", lambda: convex_solution("ce", [5, 3, 1], 2, 0.1, 0.1, free_bias="yes")),
    ("zbar", lambda: kkt_residual([5, 3, 1], 0.1, None, np.zeros((2, 2)))),
    ("loss", lambda: kkt_residual([5, 3, 1], 0.1, None, np.zeros((3, 3)), loss="hinge")),
    ("bias", lambda: kkt_residual([5, 3, 1], 0.1, None, np.zeros((3, 3)), np.ones(3))),
    ("class_sizes", lambda: deep_linear_mse_solution([5], 2, (), 0.1, 0.1)),
    ("lam_w", lambda: deep_linear_mse_solution([5, 3], 2, (2,), [0.1, 0.1, 0.1], 0.1)),
    ("depth", lambda: collapse_threshold(0)),
    ("beta", lambda: largest_root(-1.0, 2)),
    ("lam_w_ratio", lambda: class_vanishing_lambdas([3, 3], 2, (), -1.0)),
    ("bias", lambda: deep_linear_ce_balanced_solution([5, 5], 2, (), 0.1, 0.1, "learned")),
    ("widths", lambda: mse_free_bias_solution([5, 3], 2, (0,), 0.1, 0.1)),
    ("lam_h", lambda: surviving_direction_thresholds([5, 3], 2, (), 0.1, 0.0)),
    ("dim", lambda: relu_ce_solution([5, 3, 2], "4", 0.1, 0.1)),
    ("lam_h", lambda: relu_ce_solution([5, 3, 2], 4, 0.1, [0.1, 0.2])),
    ("lam_w", lambda: relu_dead_class_thresholds([5, 3], 0.0, 0.1)),
    ("lam_z", lambda: within_cluster_margin([5, 3], 0)),
    ("mean_logits", lambda: ce_factors(np.zeros((2, 2)), [3, 3, 3], 3, 1.0, 1.0)),
]


@pytest.mark.parametrize("name, call", NOT_APPLICABLE)
def test_failed_condition_is_not_applicable(name, call):
    with pytest.raises(TheoremNotApplicable, match=f"^{name}="):
        call()


@pytest.mark.parametrize("name, call", BAD_ARGUMENT)
def test_bad_argument_is_a_plain_value_error(name, call):
    with pytest.raises(ValueError, match=f"^{name}=") as err:
        call()
    assert type(err.value) is ValueError  # not TheoremNotApplicable: it must not become NoTheory
