"""Property tests (hypothesis): validation accepts exactly the allowed inputs; weighted == explicit."""

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import pytest

import ufm_jax as u
from ufm_jax.cli import parse_classes

sizes = st.lists(st.integers(1, 6), min_size=3, max_size=3)
lams = st.floats(1e-4, 10.0)


@pytest.mark.floors
@settings(max_examples=25, deadline=None)
@given(sizes=sizes, lam_w=lams, lam_h=lams, lam_b=lams, seed=st.integers(0, 2**16))
def test_weighted_equals_explicit_at_class_constant_features(sizes, lam_w, lam_h, lam_b, seed):
    # The separability argument of `ufm_jax.Problem`: with one feature per class, the weighted objective
    # (weight n_k) equals the explicit one (n_k copies). Fixed shapes (columns=6): one compile in all.
    explicit = u.make_problem("ce", sizes, 3, lam_w=lam_w, lam_h=lam_h, lam_b=lam_b, columns=6)
    weighted = u.make_problem("ce", sizes, 3, lam_w=lam_w, lam_h=lam_h, lam_b=lam_b, per_class=1)
    params = u.init_params(weighted, jax.random.key(seed))
    copies = u.Params(params.weights, jnp.repeat(params.features, 6, axis=1), params.bias)
    f = jax.jit(u.objective)
    assert np.isclose(f(copies, explicit), f(params, weighted), rtol=1e-12)


@settings(max_examples=50, deadline=None)
@given(value=st.floats(allow_nan=True, allow_infinity=True), name=st.sampled_from(["lam_w", "lam_h", "lam_b"]))
def test_lambdas_are_accepted_iff_positive_and_finite(value, name):
    kwargs = dict(lam_w=0.1, lam_h=0.1, lam_b=0.1)
    kwargs[name] = value
    # Positive, finite, and a normal number of the working precision (float64 here): a subnormal is
    # flushed to 0 by the CPU, so it is refused like 0.
    ok = np.isfinite(value) and value >= np.finfo(np.float64).tiny
    try:
        u.make_problem("mse", [2, 3], 2, **kwargs)
    except ValueError as err:
        assert not ok and name in str(err)
    else:
        assert ok


@given(st.lists(st.tuples(st.integers(1, 10**9), st.integers(1, 5)), min_size=1, max_size=4))
def test_class_spec_round_trip(items):
    spec = ",".join(f"{size}x{count}" for size, count in items)
    assert parse_classes(spec) == [float(s) for s, c in items for _ in range(c)]
