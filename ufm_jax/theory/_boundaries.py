"""Phase boundaries of each solved family, in the units a sweep's axis uses."""

from __future__ import annotations

import numpy as np

from ._deep_linear import class_vanishing_lambdas
from ._hong_ling import ce_two_cluster_thresholds
from ._mse_bias import surviving_direction_thresholds
from ._relu_ce import relu_dead_class_thresholds

FAMILIES = ("ce_two_cluster", "deep_linear_mse", "mse_free_bias", "relu_ce")


def phase_boundaries(family: str, **params) -> dict[str, float | np.ndarray]:
    """The theory's phase boundaries for one problem family, for drawing over measured phase diagrams.

    - `"ce_two_cluster"` (`k_a, n_a, k_b, n_b, lam_b=None`): in `λ_Z = √(λ_Wλ_H)`: `minority_collapse`
      `√n_B/N`, `complete_collapse` `√n_A/N`, `minority_zero` (the (b)/(c) switch λ*); Hong & Ling 2023.
    - `"deep_linear_mse"` (`class_sizes, dim, widths, lam_w_ratio=1, lam_h_ratio=1`): `class_vanishing`,
      the common λ at which each class vanishes; Dang et al. 2023 Thm 4.4.
    - `"mse_free_bias"` (`class_sizes, dim, widths=(), lam_w=1, lam_h=1`): `direction_vanishing`, the
      common scale at which each direction of Ŷ dies; Liu 2024 Thm 4.3.
    - `"relu_ce"` (`class_sizes, lam_w, lam_h`): `dead_lam_product` (`λ_Wλ_H` at which each class dies),
      `dead_size` (`n_k` at or below which a class is dead); Dang et al. 2024.

    **Raises:** `ValueError` for an unknown family (naming the allowed ones) or bad parameters.
    """
    if family == "ce_two_cluster":
        return ce_two_cluster_thresholds(**params)
    if family == "deep_linear_mse":
        return {"class_vanishing": class_vanishing_lambdas(**params)}
    if family == "mse_free_bias":
        return {"direction_vanishing": surviving_direction_thresholds(**params)}
    if family == "relu_ce":
        out = relu_dead_class_thresholds(**params)
        return {"dead_lam_product": out.lam_product_thresholds, "dead_size": out.size_threshold}
    raise ValueError(f"family={family!r} is not allowed: expected one of {FAMILIES}.")
