"""Losses against hand-written NumPy references, and their gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ufm_jax as u


def _reference(params, sizes, loss, bias, lam_w, lam_h, lam_b):
    """The objective written out sample by sample, straight from the papers' formulas."""
    weights = [np.asarray(w) for w in params.weights]
    product = weights[0]
    for w in weights[1:]:
        product = w @ product
    K = len(sizes)
    N = sum(sizes)
    H = np.concatenate([np.asarray(params.features[k, : sizes[k]]) for k in range(K)]).T  # d × N
    labels = np.repeat(np.arange(K), sizes)
    b = np.asarray(params.bias) if bias != "none" else np.zeros(K)
    Z = product @ H + b[:, None]
    if loss == "mse":
        Y = np.eye(K)[:, labels]
        data = np.sum((Z - Y) ** 2) / (2 * N)  # 1/(2N)‖W H + b1ᵀ − Y‖²
    else:
        zmax = Z.max(axis=0)
        lse = zmax + np.log(np.exp(Z - zmax).sum(axis=0))
        data = np.mean(lse - Z[labels, np.arange(N)])  # (1/N) Σ CE
    pen = sum(lw / 2 * np.sum(w**2) for lw, w in zip(lam_w, weights)) + lam_h / 2 * np.sum(H**2)
    if bias == "regularised":
        pen += lam_b / 2 * np.sum(b**2)
    return data + pen


@pytest.mark.parametrize("loss", ["mse", "ce"])
@pytest.mark.parametrize("bias", ["none", "free", "regularised"])
@pytest.mark.parametrize("depth", [1, 3])
def test_objective_matches_numpy(loss, bias, depth, getkey):
    sizes = [4, 2, 3]
    lam_w = [0.03, 0.02, 0.01][:depth]
    problem = u.make_problem(loss, sizes, 5, lam_w=lam_w, lam_h=0.07, widths=[6, 4][: depth - 1],
                             lam_b=0.2 if bias == "regularised" else None, free_bias=bias == "free")
    params = u.init_params(problem, getkey())
    expected = _reference(params, sizes, loss, bias, lam_w, 0.07, 0.2)
    assert np.isclose(float(jax.jit(u.objective)(params, problem)), expected, rtol=1e-13)


def test_weighted_objective_is_explicit_at_class_constant_features(getkey):
    # Weighted mode: column j of class k weighs n_k/m; with class-constant features it equals explicit.
    sizes = [5, 3, 2]
    explicit = u.make_problem("ce", sizes, 4, lam_w=0.1, lam_h=0.05, lam_b=0.3)
    weighted = u.make_problem("ce", sizes, 4, lam_w=0.1, lam_h=0.05, lam_b=0.3, per_class=2)
    params = u.init_params(weighted, getkey())
    means = params.features[:, :1]
    params_w = u.Params(params.weights, jnp.repeat(means, 2, axis=1), params.bias)
    params_e = u.Params(params.weights, jnp.repeat(means, 5, axis=1), params.bias)
    assert np.isclose(u.objective(params_w, weighted), u.objective(params_e, explicit), rtol=1e-13)


@pytest.mark.parametrize("loss", ["mse", "ce"])
def test_gradient_matches_finite_differences(loss, getkey):
    problem = u.make_problem(loss, [3, 2], 3, lam_w=[0.1, 0.2], lam_h=0.05, widths=[4], lam_b=0.1)
    params = u.init_params(problem, getkey())
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    f = lambda v: u.objective(unravel(v), problem)  # noqa: E731
    grad = jax.grad(f)(flat)
    direction = jax.random.normal(getkey(), flat.shape, flat.dtype)
    eps = 1e-6
    fd = (f(flat + eps * direction) - f(flat - eps * direction)) / (2 * eps)
    assert np.isclose(float(grad @ direction), float(fd), rtol=1e-7)


def test_padding_columns_do_not_count(getkey):
    tight = u.make_problem("mse", [3, 2], 4, lam_w=0.1, lam_h=0.1, free_bias=True)
    padded = u.make_problem("mse", [3, 2], 4, lam_w=0.1, lam_h=0.1, free_bias=True, columns=6)
    params = u.init_params(padded, getkey())
    junk = params.features.at[:, 3:].set(7.0)  # padding entries are ignored by the weights
    trimmed = u.Params(params.weights, params.features[:, :3], params.bias)
    assert np.isclose(u.objective(u.Params(params.weights, junk, params.bias), padded),
                      u.objective(trimmed, tight), rtol=1e-13)
