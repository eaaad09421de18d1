"""UFM parameters `(W_1..W_L, H, b)` and their random initialisation."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from ._problem import Problem


class Params(eqx.Module):
    """Parameters of a UFM.

    **Fields:**

    - `weights`: `(W_1, ..., W_L)`, `W_l` of shape `(d_l, d_{l-1})`, `W_1` nearest the features.
    - `features`: `H` stored per class, shape `(K, m, d)`: column `j` of class `k` is `features[k, j]`.
    - `bias`: `b`, shape `(K,)` (identically zero when the problem has no bias).
    """

    weights: tuple[Float[Array, "_ _"], ...]
    features: Float[Array, "K m d"]
    bias: Float[Array, " K"]


def init_params(problem: Problem, key: PRNGKeyArray, scale: float | Float[Array, ""] = 1.0) -> Params:
    """Random start at O(1) scale: `W_l = scale · Q_l` with `Q_l` a random (semi-)orthogonal matrix,
    `h ~ N(0, scale²/d)`, `b ~ N(0, scale²/K)`.

    O(1), not small: for depth `L >= 2` the origin is a local minimum (Dang et al. 2023), so a start
    near it can stall there. Orthogonal layers (Saxe et al. 2014), not Gaussian ones: a product of `L`
    Gaussian matrices has nearly-zero singular directions, and a class whose direction starts there is
    often left at zero (a local minimum of the deep linear model); every singular value of
    `scale · Q_L ⋯ Q_1` is `scale^L`. Padding columns (weight 0) start, and stay, at zero. Works on an
    unbatched `problem`; `vmap` it for batches.
    """
    dims = problem.layer_dims
    keys = jax.random.split(key, len(dims) + 1)
    dtype = problem.lam_h.dtype
    orthogonal = jax.nn.initializers.orthogonal()
    weights = tuple(
        scale * orthogonal(k, (dout, din), dtype) for k, din, dout in zip(keys[:-2], dims[:-1], dims[1:])
    )
    num_classes, m = problem.column_weights.shape
    features = scale * jax.random.normal(keys[-2], (num_classes, m, problem.dim), dtype)
    features = features / jnp.sqrt(jnp.asarray(problem.dim, dtype))
    features = jnp.where(problem.column_weights[..., None] > 0, features, 0)
    if problem.nonneg:
        features = jnp.abs(features)
    if problem.bias == "none":
        bias = jnp.zeros(num_classes, dtype)
    else:
        bias = scale * jax.random.normal(keys[-1], (num_classes,), dtype) / jnp.sqrt(
            jnp.asarray(num_classes, dtype)
        )
    return Params(weights, features, bias)


def end_to_end(params: Params) -> Float[Array, "K d"]:
    """The product `W_L ⋯ W_1`."""
    product = params.weights[0]
    for w in params.weights[1:]:
        product = w @ product
    return product
