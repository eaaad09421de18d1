"""UFM parameters `(W_1..W_L, H, b)` and their random initialisation."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
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


def _orthogonal(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    """A random (semi-)orthogonal `rows × cols` matrix, Haar distributed (QR of a Gaussian, sign-fixed)."""
    tall = rng.standard_normal((max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(tall)
    q = q * np.sign(np.diagonal(r))[None, :]
    return q if rows >= cols else q.T


def _key_words(key) -> list[int]:
    if isinstance(key, (int, np.integer)):
        return [int(key)]
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    return [int(w) for w in np.asarray(key).ravel()]


def init_params(problem: Problem, key: PRNGKeyArray | int, scale: float = 1.0, index: int = 0) -> Params:
    """Random start at O(1) scale: `W_l = scale · Q_l` with `Q_l` a random (semi-)orthogonal matrix,
    `h ~ N(0, scale²/d)`, `b ~ N(0, scale²/K)` (zero without a bias).

    O(1), not small: for depth `L >= 2` the origin is a local minimum (Dang et al. 2023), so a start
    near it can stall there. Orthogonal layers (Saxe et al. 2014), not Gaussian ones: a product of `L`
    Gaussian matrices has nearly-zero singular directions, and a class whose direction starts there is
    often left at zero (a local minimum of the deep linear model); every singular value of
    `scale · Q_L ⋯ Q_1` is `scale^L`. Padding columns (weight 0) start, and stay, at zero.

    Drawn on the host with NumPy, seeded by `(key, index)`: random-number programs are slow to compile
    on CPU (seconds), and a start is drawn once per solve. Not traceable; `problem` is unbatched.

    **Arguments:**

    - `problem`: the (unbatched) problem; its shapes and dtype are used.
    - `key`: a JAX PRNG key or an int.
    - `scale`: the scale above (> 0).
    - `index`: which start (0, 1, ...) of this key.
    """
    rng = np.random.default_rng([*_key_words(key), int(index)])
    dims = problem.layer_dims
    dtype = problem.lam_h.dtype
    weights = tuple(jnp.asarray(scale * _orthogonal(rng, dout, din), dtype)
                    for din, dout in zip(dims[:-1], dims[1:]))
    column_weights = np.asarray(problem.column_weights)
    features = scale * rng.standard_normal((*column_weights.shape, problem.dim)) / np.sqrt(problem.dim)
    features = np.where(column_weights[..., None] > 0, features, 0.0)
    if problem.nonneg:
        features = np.abs(features)
    bias = scale * rng.standard_normal(problem.num_classes) / np.sqrt(problem.num_classes)
    if problem.bias == "none":
        bias = np.zeros_like(bias)
    return Params(weights, jnp.asarray(features, dtype), jnp.asarray(bias, dtype))


def end_to_end(params: Params) -> Float[Array, "K d"]:
    """The product `W_L ⋯ W_1`."""
    product = params.weights[0]
    for w in params.weights[1:]:
        product = w @ product
    return product


def expand_params(params: Params, problem: Problem) -> Params:
    """Reduced parameters (one column per class, `reduce_problem`) written out for `problem`: every
    sample column of class `k` takes the reduced column `k`; padding columns (weight 0) stay zero.
    Works on batches (leading axes of `params` and `problem` alike)."""
    keep = (problem.column_weights > 0)[..., None]
    shape = problem.column_weights.shape + (params.features.shape[-1],)
    features = jnp.where(keep, jnp.broadcast_to(params.features[..., :1, :], shape), 0)
    return Params(params.weights, features.astype(params.features.dtype), params.bias)


def reduce_params(params: Params, problem: Problem) -> Params:
    """Parameters of `problem` written for its reduction: each class's column is the weighted mean of
    its columns (`h̄_k = Σ_j w_kj h_kj / n_k`), the start that a warm start in the full representation
    maps to. Works on batches."""
    w = problem.column_weights[..., None]
    means = jnp.sum(w * params.features, axis=-2, keepdims=True) / jnp.sum(w, axis=-2, keepdims=True)
    return Params(params.weights, means.astype(params.features.dtype), params.bias)
