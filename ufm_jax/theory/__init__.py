"""Analytic global minimisers of UFMs, where the papers give them (corrected as in docs/errata.md).

Each function takes plain numbers (class sizes, dimensions, λ's) and returns a `TheorySolution`, or raises
`TheoremNotApplicable` when its theorem's conditions fail. Which one applies to a `Problem` is the family
registry's business: `ufm_jax.analytic_solution(problem)`.
"""

from ._convex import ce_convex_solution as ce_convex_solution
from ._convex import convex_solution as convex_solution
from ._convex import kkt_residual as kkt_residual
from ._deep_linear import class_vanishing_lambdas as class_vanishing_lambdas
from ._deep_linear import deep_linear_ce_balanced_solution as deep_linear_ce_balanced_solution
from ._deep_linear import deep_linear_mse_solution as deep_linear_mse_solution
from ._hong_ling import ce_balanced_solution as ce_balanced_solution
from ._hong_ling import ce_two_cluster_solution as ce_two_cluster_solution
from ._hong_ling import ce_two_cluster_thresholds as ce_two_cluster_thresholds
from ._mse_bias import mse_free_bias_solution as mse_free_bias_solution
from ._mse_bias import surviving_direction_thresholds as surviving_direction_thresholds
from ._reduced_ce import within_cluster_margin as within_cluster_margin
from ._relu_ce import relu_ce_solution as relu_ce_solution
from ._relu_ce import relu_dead_class_thresholds as relu_dead_class_thresholds
from ._solution import NoTheory as NoTheory
from ._solution import TheoremNotApplicable as TheoremNotApplicable
from ._solution import TheorySolution as TheorySolution
from ._two_cluster import minority_collapse_ratio as minority_collapse_ratio
