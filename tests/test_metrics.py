"""Tests of the NC metrics on hand-built points with known answers (no solving)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ufm_jax
from ufm_jax import Params, make_problem
from ufm_jax.metrics import (
    class_means,
    compare_with_theory,
    etf_distance,
    general_orthogonal_frame_distance,
    mean_cosines,
    minority_classifier_spread,
    minority_spread,
    nc1,
    nc3,
    nc3_directional,
    nc_metrics,
    orthogonal_frame_distance,
    singular_values,
    within_class_spread,
)
from ufm_jax.theory._solution import TheorySolution

SCALAR_KEYS = (
    "nc1",
    "within_class_spread",
    "etf_distance",
    "orthogonal_frame_distance",
    "general_orthogonal_frame_distance",
    "etf_distance_classifier",
    "orthogonal_frame_distance_classifier",
    "general_orthogonal_frame_distance_classifier",
    "nc3",
    "nc3_centred",
    "nc3_directional",
    "minority_spread",
    "minority_classifier_spread",
)


def rotation(rng, d):
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))[None, :]


def simplex_etf(K, d, rng):
    """`(d, K)` simplex ETF: columns of `√(K/(K−1)) (I − J/K)`, embedded in R^d and rotated."""
    m = math.sqrt(K / (K - 1)) * (np.eye(K) - np.ones((K, K)) / K)
    return rotation(rng, d) @ np.vstack([m, np.zeros((d - K, K))])


def collapsed_params(problem, means, weights, bias=None):
    """Every real column of class k equals `means[:, k]`; padding columns hold garbage."""
    K, m = problem.column_weights.shape
    feats = np.broadcast_to(means.T[:, None, :], (K, m, means.shape[0])).copy()
    feats[np.asarray(problem.column_weights) == 0] = 1e3  # padding must be ignored
    bias = np.zeros(K) if bias is None else bias
    return Params(tuple(jnp.asarray(w) for w in weights), jnp.asarray(feats), jnp.asarray(bias))


def numpy_nc1(feats_list, rcond=1e-10):
    """Reference NC1 from an explicit list of per-class sample matrices `(n_k, d)` (Hong & Ling eq. 4.1)."""
    K = len(feats_list)
    N = sum(f.shape[0] for f in feats_list)
    means = np.stack([f.mean(axis=0) for f in feats_list])
    h_g = np.concatenate(feats_list).mean(axis=0)
    sw = sum((f - mu).T @ (f - mu) for f, mu in zip(feats_list, means)) / N
    sb = (means - h_g).T @ (means - h_g) / K
    return np.trace(sw @ np.linalg.pinv(sb, rcond=rcond, hermitian=True)) / K


def assert_metrics_close(a, b, atol=1e-10):
    assert set(a) == set(b)
    for key in a:
        np.testing.assert_allclose(np.asarray(a[key]), np.asarray(b[key]), atol=atol, rtol=1e-9,
                                   err_msg=key)


# ---- exact collapse to known geometries ------------------------------------------------------------------


@pytest.mark.parametrize("sizes", [[3, 3, 3, 3], [5, 3, 2, 1]])
def test_simplex_etf_collapse(sizes):
    rng = np.random.default_rng(0)
    K, d = 4, 6
    means = 2.0 * simplex_etf(K, d, rng)
    problem = make_problem("ce", sizes, d, lam_w=1e-2, lam_h=1e-2, columns=7)
    params = collapsed_params(problem, means, [0.7 * means.T])
    out = nc_metrics(params, problem)
    # Exact within-class collapse: Σ_W = 0, hence NC1 = 0 and no spread.
    assert abs(out["nc1"]) < 1e-14
    assert out["within_class_spread"] < 1e-15  # round-off of the mean only
    # The means are a simplex ETF around 0 (the unweighted centre), whatever the class sizes.
    assert out["etf_distance"] < 1e-14
    assert out["etf_distance_classifier"] < 1e-14
    # P = 0.7 H̄ᵀ, so the uncentred NC3 and the per-class NC3 vanish.
    assert out["nc3"] < 1e-14
    assert out["nc3_directional"] < 1e-14
    # Gram ∝ K I − J: off-diagonal fraction √(K(K−1)) / (K√(K−1)) = 1/√K.
    assert out["general_orthogonal_frame_distance"] == pytest.approx(1 / math.sqrt(K), rel=1e-12)
    # ‖(K I − J)/(K√(K−1)) − I/√K‖² = 2 − 2 tr(K I − J)/(K√(K−1)√K) = 2 − 2√((K−1)/K).
    of = math.sqrt(2 - 2 * math.sqrt((K - 1) / K))
    assert out["orthogonal_frame_distance"] == pytest.approx(of, rel=1e-12)
    # Cosines: 1 on the diagonal, −1/(K−1) off it.
    expect = (K * np.eye(K) - np.ones((K, K))) / (K - 1)
    np.testing.assert_allclose(out["mean_cosines"], expect, atol=1e-14)
    # Singular values: H̄ has K−1 equal ones √(K/(K−1))·2 and a zero.
    s = np.asarray(out["mean_singular_values"])
    np.testing.assert_allclose(s, [2 * math.sqrt(K / (K - 1))] * (K - 1) + [0], atol=1e-13)
    if sizes[0] == sizes[-1]:
        # Balanced: h_G = 0, so centring changes nothing.
        assert out["nc3_centred"] < 1e-14
        # Balanced classes have no minority: the minority metrics are undefined (NaN), not the spread of
        # all classes.
        assert np.isnan(out["minority_spread"]) and np.isnan(out["minority_logit_spread"])
    else:
        # One smallest class only: undefined, NaN by convention.
        assert np.isnan(out["minority_spread"])
        assert np.isnan(out["minority_classifier_spread"])
        # The sample-weighted h_G ≠ 0 here, so the centred NC3 is not 0.
        assert out["nc3_centred"] > 1e-3


def test_orthogonal_frames_deep():
    rng = np.random.default_rng(1)
    K, d = 3, 5
    lengths = np.array([3.0, 2.0, 0.5])
    problem = make_problem("mse", [8, 4, 1], d, lam_w=1e-2, lam_h=1e-2, widths=[4])
    w1 = rng.standard_normal((4, d))
    # Orthonormal means inside the row space of W_1, so that pinv(W_1) W_1 H̄ = H̄.
    q = np.linalg.qr(w1.T)[0][:, :K]
    # Equal lengths: orthogonal frame.
    means = 1.5 * q
    w2 = (np.diag([1.0, 2.0, 3.0]) @ means.T) @ np.linalg.pinv(w1)  # W_2 W_1 = diag(1,2,3) H̄ᵀ
    params = collapsed_params(problem, means, [w1, w2])
    out = nc_metrics(params, problem)
    assert out["orthogonal_frame_distance"] < 1e-14
    assert out["general_orthogonal_frame_distance"] < 1e-14
    # Rows of P are positive multiples of the means: per-class NC3 is 0, the Frobenius one is not.
    assert out["nc3_directional"] < 1e-12
    assert out["nc3"] > 1e-2
    np.testing.assert_allclose(out["mean_cosines"], np.eye(K), atol=1e-14)
    assert {k for k in out if k.endswith("singular_values") or "singular_values_" in k} == {
        "weight_singular_values_1", "weight_singular_values_2", "mean_singular_values", "product_singular_values"}
    # General orthogonal frame (unequal lengths): GOF distance 0, OF distance known.
    means = q * lengths[None, :]
    out = nc_metrics(collapsed_params(problem, means, [w1, w2]), problem)
    assert out["general_orthogonal_frame_distance"] < 1e-14
    g = lengths**2 / np.linalg.norm(lengths**2)
    of = np.linalg.norm(g - 1 / math.sqrt(K))
    assert out["orthogonal_frame_distance"] == pytest.approx(of, rel=1e-12)
    np.testing.assert_allclose(out["mean_singular_values"], np.sort(lengths)[::-1], atol=1e-13)


def test_singular_values_and_zero_cases():
    problem = make_problem("mse", [2, 2], 3, lam_w=1.0, lam_h=1.0, depth=2)
    w1 = np.diag([1.0, 3.0, 2.0])
    w2 = np.array([[1.0, 0, 0], [0, 0, 2.0]])
    means = np.array([[1.0, 0.0], [0.0, 0.0], [0.0, 0.0]])  # class 2 collapsed to 0
    out = nc_metrics(collapsed_params(problem, means, [w1, w2]), problem)
    np.testing.assert_allclose(out["weight_singular_values_1"], [3, 2, 1], atol=1e-14)
    np.testing.assert_allclose(out["weight_singular_values_2"], [2, 1], atol=1e-14)
    np.testing.assert_allclose(out["product_singular_values"], [4, 1], atol=1e-14)  # P = [[1,0,0],[0,0,4]]
    np.testing.assert_allclose(out["mean_cosines"], [[1, 0], [0, 0]])
    # All features zero: spread 0/0 := 0; distances of a zero Gram.
    zero = nc_metrics(collapsed_params(problem, np.zeros((3, 2)), [w1, w2]), problem)
    assert zero["within_class_spread"] == 0
    assert zero["general_orthogonal_frame_distance"] == 0
    assert zero["orthogonal_frame_distance"] == pytest.approx(1.0)
    assert zero["etf_distance"] == pytest.approx(1.0)
    assert zero["nc1"] == 0
    assert np.all(np.isfinite(np.asarray(zero["nc3"])))
    assert zero["nc3_directional"] == pytest.approx(math.sqrt(2))  # unit rows vs zero means
    np.testing.assert_array_equal(zero["mean_cosines"], np.zeros((2, 2)))


# ---- within-class scatter: NumPy reference ------------------------------------------------------------


@pytest.mark.parametrize("K,d", [(5, 3), (3, 6)])
def test_nc1_matches_numpy(K, d):
    rng = np.random.default_rng(2 + K)
    sizes = [4, 7, 2, 5, 3][:K]
    problem = make_problem("ce", sizes, d, lam_w=1.0, lam_h=1.0, columns=9)
    feats = rng.standard_normal((K, 9, d)) + 3 * rng.standard_normal((K, 1, d))
    params = Params((jnp.asarray(rng.standard_normal((K, d))),), jnp.asarray(feats), jnp.zeros(K))
    real = [feats[k, : sizes[k]] for k in range(K)]
    out = nc_metrics(params, problem)
    assert out["nc1"] == pytest.approx(numpy_nc1(real), rel=1e-10)
    means = np.stack([f.mean(axis=0) for f in real]).T
    np.testing.assert_allclose(out["mean_singular_values"], np.linalg.svd(means, compute_uv=False),
                               atol=1e-13)
    spread = max(np.linalg.norm(f - f.mean(axis=0), axis=1).max() for f in real)
    spread /= np.linalg.norm(means, axis=0).max()
    assert out["within_class_spread"] == pytest.approx(spread, rel=1e-12)


def test_public_functions_match_nc_metrics():
    rng = np.random.default_rng(9)
    K, d, sizes = 4, 3, [4, 2, 2, 3]
    problem = make_problem("ce", sizes, d, lam_w=1.0, lam_h=1.0, widths=[5])
    feats = rng.standard_normal((K, 4, d)) + 2 * rng.standard_normal((K, 1, d))
    params = Params((jnp.asarray(rng.standard_normal((5, d))), jnp.asarray(rng.standard_normal((K, 5)))),
                    jnp.asarray(feats), jnp.zeros(K))
    out = nc_metrics(params, problem)
    means, h_g = class_means(params, problem)
    real = [feats[k, : sizes[k]] for k in range(K)]
    np.testing.assert_allclose(means, np.stack([f.mean(axis=0) for f in real]).T, atol=1e-14)
    np.testing.assert_allclose(h_g, np.concatenate(real).mean(axis=0), atol=1e-14)
    p = ufm_jax.end_to_end(params)
    single = {
        "nc1": nc1(params, problem),
        "within_class_spread": within_class_spread(params, problem),
        "etf_distance": etf_distance(means),
        "orthogonal_frame_distance": orthogonal_frame_distance(means),
        "general_orthogonal_frame_distance": general_orthogonal_frame_distance(params, problem),
        "etf_distance_classifier": etf_distance(p.T),
        "orthogonal_frame_distance_classifier": orthogonal_frame_distance(p.T),
        "nc3": nc3(params, problem),
        "nc3_centred": nc3(params, problem, centred=True),
        "nc3_directional": nc3_directional(params, problem),
        "minority_spread": minority_spread(params, problem),
        "minority_classifier_spread": minority_classifier_spread(params, problem),
        "minority_logit_spread": ufm_jax.metrics.minority_logit_spread(params, problem),
        "mean_cosines": mean_cosines(params, problem),
    }
    single.update(singular_values(params, problem))
    for key, value in single.items():
        np.testing.assert_allclose(value, out[key], rtol=1e-12, atol=1e-14, err_msg=key)
    assert set(out) == set(single) | {"general_orthogonal_frame_distance_classifier"}
    assert set(SCALAR_KEYS) | {"mean_cosines"} <= set(out)
    # nc1 with a different cutoff: Σ_B has full rank d = 3 here, so any small rcond gives the same value.
    assert nc1(params, problem, rcond=1e-12) == pytest.approx(float(out["nc1"]), rel=1e-12)


def test_within_class_spread_known():
    # Class 0: samples (1 ± 0.1, 0), mean (1, 0); class 1: both (0, 2). Spread 0.1 / 2.
    problem = make_problem("mse", [2, 2], 2, lam_w=1.0, lam_h=1.0)
    feats = jnp.asarray([[[1.1, 0.0], [0.9, 0.0]], [[0.0, 2.0], [0.0, 2.0]]])
    params = Params((jnp.eye(2),), feats, jnp.zeros(2))
    assert within_class_spread(params, problem) == pytest.approx(0.05, rel=1e-12)
    # Σ_W = diag(0.01/2, 0); Σ_B = (1/2) Σ_k (h̄_k − h_G)(·)ᵀ with h_G = (0.5, 1); NumPy reference.
    ref = numpy_nc1([np.asarray(feats[0]), np.asarray(feats[1])])
    assert nc1(params, problem) == pytest.approx(ref, rel=1e-12)


# ---- representations: weighted = explicit, padding ignored ----------------------------------------------


def test_explicit_equals_weighted():
    rng = np.random.default_rng(3)
    K, d, m = 3, 4, 2
    sizes = [4, 6, 2]
    weighted = make_problem("ce", sizes, d, lam_w=1.0, lam_h=1.0, per_class=m, lam_b=0.1)
    explicit = make_problem("ce", sizes, d, lam_w=1.0, lam_h=1.0, lam_b=0.1, columns=8)
    distinct = rng.standard_normal((K, m, d)) + 2 * rng.standard_normal((K, 1, d))
    weights = (jnp.asarray(rng.standard_normal((K, d))),)
    bias = jnp.asarray(rng.standard_normal(K))
    # Explicit: each weighted column repeated n_k/m times, then NaN padding (must not leak).
    feats = np.full((K, 8, d), np.nan)
    for k, n in enumerate(sizes):
        feats[k, :n] = np.repeat(distinct[k], n // m, axis=0)
    a = nc_metrics(Params(weights, jnp.asarray(distinct), bias), weighted)
    b = nc_metrics(Params(weights, jnp.asarray(feats), bias), explicit)
    assert_metrics_close(a, b)
    for key in SCALAR_KEYS:
        assert a[key].shape == ()
    assert np.isfinite(a["nc1"]) and a["nc1"] > 0


def test_padding_ignored():
    rng = np.random.default_rng(4)
    K, d, sizes = 3, 4, [3, 1, 2]
    tight = make_problem("mse", sizes, d, lam_w=1.0, lam_h=1.0)
    wide = make_problem("mse", sizes, d, lam_w=1.0, lam_h=1.0, columns=6)
    feats = rng.standard_normal((K, 3, d))
    wide_feats = 1e6 * np.ones((K, 6, d))
    wide_feats[:, :3] = feats
    wide_feats[np.asarray(wide.column_weights) == 0] = 1e6
    tight_feats = np.where(np.asarray(tight.column_weights)[:, :, None] > 0, feats, -7.0)
    weights = (jnp.asarray(rng.standard_normal((K, d))),)
    a = nc_metrics(Params(weights, jnp.asarray(tight_feats), jnp.zeros(K)), tight)
    b = nc_metrics(Params(weights, jnp.asarray(wide_feats), jnp.zeros(K)), wide)
    assert_metrics_close(a, b)


# ---- minority collapse ---------------------------------------------------------------------------------


def test_minority_collapse():
    rng = np.random.default_rng(5)
    d = 4
    sizes = [10, 10, 2, 2]
    problem = make_problem("ce", sizes, d, lam_w=1.0, lam_h=1.0)
    # Two majority means and one shared minority mean: Σ_B has rank 2 < K − 1.
    base = rng.standard_normal((d, 3))
    means = np.stack([base[:, 0], base[:, 1], base[:, 2], base[:, 2]], axis=1)
    w = np.stack([base[:, 0], base[:, 1], -base[:, 2], -base[:, 2]])  # minority rows coincide too
    params = collapsed_params(problem, means, [w])
    # Small within-class scatter on the real columns.
    real = np.asarray(problem.column_weights)[:, :, None] > 0
    noise = np.where(real, 1e-3 * rng.standard_normal(params.features.shape), 0)
    # Keep every class mean exact: subtract the mean noise of the real columns.
    noise -= np.where(real, noise.sum(axis=1, keepdims=True) / real.sum(axis=1, keepdims=True), 0)
    params = Params(params.weights, params.features + noise, params.bias)
    out = nc_metrics(params, problem)
    assert out["minority_spread"] < 1e-14
    assert out["minority_classifier_spread"] < 1e-14
    assert np.isfinite(out["nc1"]) and 0 < out["nc1"] < 1e-3
    np.testing.assert_allclose(out["mean_cosines"][2, 3], 1.0, atol=1e-12)
    assert minority_spread(params, problem) == out["minority_spread"]
    # Separated minority means: spread = ‖h̄_3 − h̄_4‖ / max ‖h̄_k‖.
    means2 = means.copy()
    means2[:, 3] = -means[:, 2]
    p2 = collapsed_params(problem, means2, [w])
    expect = 2 * np.linalg.norm(means[:, 2]) / np.linalg.norm(means2, axis=0).max()
    assert minority_spread(p2, problem) == pytest.approx(expect, rel=1e-12)
    assert minority_classifier_spread(p2, problem) < 1e-14


# ---- batching -------------------------------------------------------------------------------------------


def test_vmap_equals_loop():
    rng = np.random.default_rng(6)
    K, d = 3, 4
    problems = [make_problem("ce", s, d, lam_w=1.0, lam_h=l, columns=6, lam_b=0.5)
                for s, l in [([6, 3, 1], 0.1), ([2, 2, 5], 0.2), ([4, 4, 4], 0.3)]]
    params_list = [
        Params((jnp.asarray(rng.standard_normal((K, d))),),
               jnp.asarray(rng.standard_normal((K, 6, d))), jnp.asarray(rng.standard_normal(K)))
        for _ in problems
    ]
    batch_problem = ufm_jax.stack_problems(problems)
    batch_params = jax.tree.map(lambda *xs: jnp.stack(xs), *params_list)
    batched = jax.jit(jax.vmap(nc_metrics))(batch_params, batch_problem)
    for i, (p, prob) in enumerate(zip(params_list, problems)):
        single = nc_metrics(p, prob)
        assert_metrics_close(single, {k: v[i] for k, v in batched.items()}, atol=1e-12)


def test_etf_distance_direct():
    rng = np.random.default_rng(7)
    m = simplex_etf(5, 5, rng) + 3.0 * rng.standard_normal((5, 1))  # any centre
    assert etf_distance(jnp.asarray(m)) < 1e-14
    # The standard basis, centred, is I − J/K: a simplex ETF too.
    assert etf_distance(jnp.asarray(np.eye(5))) < 1e-14
    # Orthogonal with unequal lengths is not.
    assert etf_distance(jnp.asarray(np.diag([1.0, 2, 3, 4, 5]))) > 1e-2


# ---- theory comparison ----------------------------------------------------------------------------------


def test_compare_with_theory_rotation_free():
    rng = np.random.default_rng(8)
    K, d = 3, 5
    problem = make_problem("ce", [5, 3, 2], d, lam_w=1.0, lam_h=1.0, lam_b=1.0, widths=[4])
    means = rng.standard_normal((d, K))
    w1, w2 = rng.standard_normal((4, d)), rng.standard_normal((K, 4))
    bias = rng.standard_normal(K)
    params = collapsed_params(problem, means, [w1, w2], bias)
    p = w2 @ w1
    sv = np.linalg.svd
    theory = TheorySolution(
        objective=0.0, regime="test", mean_gram=means.T @ means, mean_logits=p @ means, bias=bias,
        weight_singular_values=(sv(w1, compute_uv=False), sv(w2, compute_uv=False)),
        product_singular_values=sv(p, compute_uv=False),
        mean_singular_values=sv(means, compute_uv=False), source="test",
    )
    gaps = compare_with_theory(params, problem, theory)
    assert max(float(v) for v in gaps.values()) < 1e-12
    # Rotate features and hidden space: H → Q H, W_1 → R W_1 Qᵀ, W_2 → W_2 Rᵀ. Invariants unchanged.
    q, r = rotation(rng, d), rotation(rng, 4)
    rotated = collapsed_params(problem, q @ means, [r @ w1 @ q.T, w2 @ r.T], bias)
    gaps = jax.jit(lambda pp: compare_with_theory(pp, problem, theory))(rotated)
    assert float(gaps["max"]) < 1e-12
    # A bias shift of 0.5 in one entry: gap 0.5 / max(1, max|b*|).
    shifted = Params(params.weights, params.features, params.bias.at[0].add(0.5))
    gaps = compare_with_theory(shifted, problem, theory)
    assert float(gaps["bias"]) == pytest.approx(0.5 / max(1.0, np.abs(bias).max()), rel=1e-12)
    assert float(gaps["mean_gram"]) < 1e-12
    expected_keys = {"mean_gram", "mean_logits", "bias", "weight_singular_values_1", "weight_singular_values_2",
                     "weight_singular_values", "product_singular_values", "mean_singular_values", "max"}
    assert set(gaps) == expected_keys
    with pytest.raises(ValueError, match="theory"):
        bad = TheorySolution(**{**theory.__dict__, "weight_singular_values": (np.ones(3),)})
        compare_with_theory(params, problem, bad)
