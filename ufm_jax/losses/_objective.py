"""The UFM objective, as pure functions of `(params, problem)`.

All data terms follow optax's loss style: per-column values combined with column weights `w_kj`
(the `where=`-mask of optax generalised to weights; padding columns weigh 0).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .._params import Params, end_to_end
from .._problem import Problem


def logits(params: Params, problem: Problem) -> Float[Array, "K m K"]:
    """Outputs `W_L ⋯ W_1 h_kj + b` for every column, shape `(K, m, K)`."""
    out = params.features @ end_to_end(params).T
    if problem.bias != "none":
        out = out + params.bias[None, None, :]
    return out


def mse_loss(params: Params, problem: Problem) -> Float[Array, ""]:
    """`1/(2N) Σ_kj w_kj ‖W_L ⋯ W_1 h_kj + b − e_k‖²` (Liu 2024 eq. 4.3; Dang et al. 2023 eq. 2)."""
    z = logits(params, problem)
    targets = jnp.eye(problem.num_classes, dtype=z.dtype)[:, None, :]
    per_column = jnp.sum((z - targets) ** 2, axis=-1)
    return jnp.sum(problem.column_weights * per_column) / (2 * problem.num_samples)


def ce_loss(params: Params, problem: Problem) -> Float[Array, ""]:
    """`(1/N) Σ_kj w_kj CE(W_L ⋯ W_1 h_kj + b, k)`, `CE(z, k) = log Σ_l e^{z_l} − z_k`
    (Hong & Ling 2023 eq. 2.1)."""
    z = logits(params, problem)
    own = jnp.diagonal(z, axis1=0, axis2=2).T  # z[k, j, k], shape (K, m)
    per_column = jax.nn.logsumexp(z, axis=-1) - own
    return jnp.sum(problem.column_weights * per_column) / problem.num_samples


def data_loss(params: Params, problem: Problem) -> Float[Array, ""]:
    """The data term selected by `problem.loss`."""
    return {"mse": mse_loss, "ce": ce_loss}[problem.loss](params, problem)


def penalty(params: Params, problem: Problem) -> Float[Array, ""]:
    """`Σ_l (λ_{W,l}/2)‖W_l‖_F² + (λ_H/2) Σ_kj w_kj ‖h_kj‖² [+ (λ_b/2)‖b‖²]`."""
    total = sum(lam / 2 * jnp.sum(w**2) for lam, w in zip(problem.lam_w, params.weights))
    col_norms = jnp.sum(params.features**2, axis=-1)
    total = total + problem.lam_h / 2 * jnp.sum(problem.column_weights * col_norms)
    if problem.bias == "regularised":
        total = total + problem.lam_b / 2 * jnp.sum(params.bias**2)
    return total


def objective(params: Params, problem: Problem) -> Float[Array, ""]:
    """The full UFM objective (see `ufm_jax.Problem`): data term plus all penalties."""
    return data_loss(params, problem) + penalty(params, problem)
