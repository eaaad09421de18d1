"""The solver: closed-form minimum, explicit == weighted, loop == vmap == sharded, no recompiles, statuses."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ufm_jax as u


@pytest.mark.floors
def test_balanced_plain_mse_reaches_closed_form():
    # Balanced, bias-free, L = 1, d >= K: with Z = W H̄, λ_W/2‖W‖² + nλ_H/2‖H̄‖² >= √(nλ_Wλ_H)‖Z‖_*, so the
    # problem is min_Z (1/2K)‖Z − I‖² + √(nλ_Wλ_H)‖Z‖_*, solved by Z = (1 − c)I with c = K√(nλ_Wλ_H) < 1,
    # giving f* = c − c²/2.
    K, n, lam = 4, 5, 0.02
    c = K * np.sqrt(n * lam * lam)
    problem = u.plain_mse([n] * K, 6, lam_w=lam, lam_h=lam)
    solution = u.solve(problem, key=1)
    assert u.Status(int(solution.status)).name == "converged"
    assert abs(float(solution.objective) - (c - c**2 / 2)) <= 1e-10 * (c - c**2 / 2)


def test_explicit_and_weighted_agree():
    sizes = [6, 6, 2, 2]
    kw = dict(lam_w=0.01, lam_h=0.01, lam_b=0.05)
    explicit = u.solve(u.ce(sizes, 5, **kw), key=2)
    weighted = u.solve(u.ce(sizes, 5, per_class=1, **kw), key=2)
    assert np.isclose(explicit.objective, weighted.objective, rtol=1e-10)
    # Same minimiser up to rotation: compare rotation-free invariants.
    gram = lambda s: np.asarray(u.metrics.class_means(s.params, s.problem)[0].T  # noqa: E731
                                @ u.metrics.class_means(s.params, s.problem)[0])
    np.testing.assert_allclose(gram(explicit), gram(weighted), atol=1e-6)
    np.testing.assert_allclose(explicit.params.bias, weighted.params.bias, atol=1e-6)


def _batch(lams):
    return u.stack_problems([u.ce([5, 5, 2], 4, lam_w=lam, lam_h=lam, lam_b=0.1) for lam in lams])


@pytest.mark.floors
def test_loop_vmap_and_sharded_agree(getkey):
    lams = [0.003, 0.01, 0.03]
    batch = _batch(lams)
    starts = [u.init_params(u.ce([5, 5, 2], 4, lam_w=1.0, lam_h=1.0, lam_b=0.1), getkey()) for _ in lams]
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *starts)
    sharded = u.solve(batch, start=stacked)
    unsharded = u.solve(batch, start=stacked, shard=False)
    loop = [u.solve(batch_i, start=s, shard=False) for batch_i, s in
            zip([u.ce([5, 5, 2], 4, lam_w=lam, lam_h=lam, lam_b=0.1) for lam in lams], starts)]
    assert len(jax.devices()) == 2  # conftest: the sharded path really splits the batch
    np.testing.assert_allclose(sharded.objective, unsharded.objective, rtol=1e-12)
    np.testing.assert_allclose(unsharded.objective, [s.objective for s in loop], rtol=1e-12)
    assert np.all(np.asarray(sharded.status) == 0)


def test_new_lambdas_and_class_sizes_do_not_recompile(count_traces):
    u.solve(_batch([0.01, 0.02, 0.03]))
    traces = count_traces()
    assert traces == 1
    u.solve(_batch([0.05, 0.002, 0.2]))
    other_sizes = u.stack_problems([u.ce(n, 4, lam_w=0.01, lam_h=0.01, lam_b=0.1, columns=5)
                                    for n in ([5, 4, 1], [3, 3, 3], [5, 1, 1])])
    u.solve(other_sizes)
    assert count_traces() == traces


def test_multistart_returns_best_and_spread():
    # Deep linear MSE: tiny starts stay at the origin (a local minimum for L >= 2), O(1) starts leave it.
    problem = u.deep_linear_mse([4, 4, 4], 3, depth=3, lam_w=0.005, lam_h=0.005)
    trapped = u.solve(problem, key=0, init_scale=1e-4, seeds=2)
    escaped = u.solve(problem, key=0, seeds=4)
    assert np.isclose(trapped.objective, 0.5, rtol=1e-6)  # f(0) = 1/(2N)‖Y‖² = 1/2
    assert escaped.objective < trapped.objective - 0.1
    assert escaped.seed_objectives.shape == (4,)
    assert escaped.objective == np.min(escaped.seed_objectives)
    assert escaped.objective_spread == np.ptp(escaped.seed_objectives)


def test_nonfinite_is_a_status_not_a_number():
    problem = u.plain_mse([3, 3], 3, lam_w=0.1, lam_h=0.1)
    blown = u.solve(problem, u.GradientDescent(learning_rate=1e3, max_steps=200))
    assert u.Status(int(blown.status)).name in ("nonfinite", "diverged")
    assert not u.Status(int(blown.status)).name == "converged"


def test_max_steps_status():
    problem = u.plain_mse([3, 3], 3, lam_w=0.1, lam_h=0.1)
    short = u.solve(problem, u.GradientDescent(learning_rate=0.01, max_steps=3))
    assert u.Status(int(short.status)).name == "max_steps" and int(short.iterations) == 3


def test_nonneg_features_stay_nonnegative():
    problem = u.relu_ce([4, 4, 2], 6, lam_w=0.01, lam_h=0.01)
    solution = u.solve(problem, key=3)
    assert float(jnp.min(solution.params.features)) >= 0.0
    assert u.Status(int(solution.status)).name == "converged"
    with pytest.raises(ValueError, match="solver=.lbfgs. is not allowed: H >= 0"):
        u.solve(problem, u.LBFGS())


@pytest.mark.floors
def test_queued_slots_agree_with_whole_batch():
    # λ's on both sides of the minority-collapse threshold: the problems converge at different speeds,
    # so with 2 slots every slot takes several problems from the queue.
    lams = np.geomspace(0.01, 0.2, 7)
    batch = u.stack_problems([u.ce([8, 8, 2, 2], 5, lam_w=lam, lam_h=lam, lam_b=0.1, per_class=1)
                              for lam in lams])
    for solver in (u.LBFGS(), u.LockstepLBFGS()):
        whole = u.solve(batch, solver, key=3, slots=7, shard=False)
        queued = u.solve(batch, solver, key=3, slots=2, shard=False)
        assert np.all(np.asarray(queued.status) == 0)
        assert len(set(np.asarray(whole.iterations).tolist())) > 1
        np.testing.assert_allclose(queued.objective, whole.objective, rtol=1e-10)
        # Each problem's iteration count is its own (not the batch's), whatever slot it ran in.
        np.testing.assert_allclose(queued.iterations, whole.iterations, atol=2)
        np.testing.assert_allclose(queued.params.features, whole.params.features, atol=1e-6)
    with pytest.raises(ValueError, match="slots"):
        u.solve(batch, slots=0)


def test_an_unreachable_gtol_stalls_instead_of_running_to_max_steps():
    # float32 cannot take the gradient norm to 1e-12 (its floor is ~1e-6 here): the solve stops with
    # its own status once neither f nor the gradient norm improves, long before max_steps.
    problem = u.biased_mse([100] * 4, 8, lam_w=5e-3, lam_h=5e-3, per_class=1, dtype=jnp.float32)
    solution = u.solve(problem, u.LockstepLBFGS(gtol=1e-12, max_steps=5000))
    assert u.Status(int(solution.status)) == u.Status.stalled
    assert int(solution.iterations) < 2000
    # The default gtol of the precision is reachable: float32 converges.
    assert u.Status(int(u.solve(problem).status)) == u.Status.converged


_CACHE_SCRIPT = """
import os, sys
import jax
jax.config.update("jax_enable_x64", True)
import ufm_jax as u
first, second = sys.argv[1], sys.argv[2]
u.solve(u.ce([5, 5, 5], 4, lam_w=1e-3, lam_h=1e-3))
kept = len(os.listdir(first))
u.disable_compilation_cache()  # after a compile: later compiles must not write
u.solve(u.ce([5, 5, 5, 5], 4, lam_w=1e-3, lam_h=1e-3))
after_off = len(os.listdir(first))
u.enable_compilation_cache(second)  # and another folder takes over
u.solve(u.ce([5, 5, 5, 5, 5], 5, lam_w=1e-3, lam_h=1e-3))
print(kept, after_off, len(os.listdir(second)))
"""


def test_the_compilation_cache_follows_its_switches(tmp_path):
    # A fresh process: the cache's on/off decision is per process (and JAX's is taken at the first compile).
    import os
    import subprocess
    import sys

    first, second = tmp_path / "first", tmp_path / "second"
    env = {**os.environ, "UFM_CACHE_DIR": str(first), "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-c", _CACHE_SCRIPT, str(first), str(second)], env=env,
                         capture_output=True, text=True, check=True).stdout.split()
    kept, after_off, in_second = map(int, out)
    assert kept >= 1 and after_off == kept and in_second >= 1
