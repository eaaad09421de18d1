"""Direct float64 minimisation with multi-start matches the analytic minimum, across regimes (cases a–f).

Each case is one batch (one compiled program) whose λ's cross the theory's phase boundaries; the
boundaries themselves come from `ufm_jax.theory` and are quoted beside each grid.
"""

import pytest

import ufm_jax as u
from ufm_jax.theory import NoTheory

def _certify_batch(problems, seeds, expected_regimes, solver=None):
    # What the solver certifies is its gradient norm (<= 1e-9 in balanced coordinates): the objective
    # gap is second order in the distance to the minimiser (~1e-18 here) and the invariants first order
    # (distance <= gradient norm / smallest curvature, which a flat direction near a phase boundary can
    # make ~1e-5). `check` holds them to exactly the package's stated tolerances (1e-8 relative, 1e-4):
    # asserting tighter bounds than those would test one machine's round-off, not the certificate.
    solution = u.solve(u.stack_problems(problems), solver, key=0, seeds=seeds)
    regimes = []
    for i in range(len(problems)):
        verdict = u.check(solution[i])
        regimes.append(verdict.regime)
        assert verdict.certified, (i, verdict)
        assert (verdict.objective_rtol, verdict.geometry_rtol) == (1e-8, 1e-4)
    assert regimes == expected_regimes


def test_a_deep_linear_mse_class_vanishing():
    # class_vanishing_lambdas([8,4,2], 4, [4,4]) = [0.0925, 0.0550, 0.0327] for λ_W = λ_H = λ, L = 3.
    lams = [0.02, 0.04, 0.07, 0.12]
    problems = [u.deep_linear_mse([8, 4, 2], 4, depth=3, lam_w=lam, lam_h=lam, per_class=1) for lam in lams]
    theory = [u.analytic_solution(p) for p in problems]
    _certify_batch(problems, 6, [t.regime for t in theory])
    assert theory[-1].objective == pytest.approx(0.5)  # everything vanished: f = f(0) = 1/2
    assert len({t.regime for t in theory}) == len(lams), [t.regime for t in theory]


def test_a_width_limited_rank():
    # Hidden width 2 < K = 3: only two classes can survive, whatever λ.
    problem = u.deep_linear_mse([6, 4, 2], 4, widths=[2], lam_w=0.005, lam_h=0.005, per_class=1)
    _certify_batch([problem], 6, [u.analytic_solution(problem).regime])


def test_b_mse_free_bias_surviving_directions():
    # surviving_direction_thresholds([8,4,2,2], 4, [4]) = [0.0790, 0.0494, 0.0394] (common λ, L = 2).
    lams = [0.02, 0.045, 0.06, 0.1]
    problems = [u.biased_mse([8, 4, 2, 2], 4, widths=[4], lam_w=lam, lam_h=lam, per_class=1) for lam in lams]
    _certify_batch(problems, 6, ["3/3 directions", "2/3 directions", "1/3 directions", "collapsed"])


@pytest.mark.parametrize("lam_b", [None, 0.1])
def test_c_ce_balanced(lam_b):
    # Corrected Thm 3.1(c): alive iff Nλ_Z < √n; N = 15, √n = √5 → λ_Z < 0.149.
    lams = [0.02, 0.1, 0.2]
    problems = [u.ce([5, 5, 5], 3, lam_w=lam, lam_h=lam, lam_b=lam_b, per_class=1) for lam in lams]
    regimes = [u.analytic_solution(p).regime for p in problems]
    assert regimes[-1] == "complete-collapse" and regimes[0] == "full-rank"
    _certify_batch(problems, 2, regimes)


@pytest.mark.parametrize("lam_b,lams,regimes", [
    # ce_two_cluster_thresholds(2, 8, 2, 2): minority collapse 0.0707, (b)/(c) switch 0.1063, complete 0.1414
    (None, [0.03, 0.08, 0.12, 0.2], ["full-rank", "minority-collapse", "minority-zero", "complete-collapse"]),
    # with λ_b = 0.1 the switch moves to 0.0885; the two √n/N thresholds do not move
    (0.1, [0.03, 0.078, 0.11, 0.2], ["full-rank", "minority-collapse", "minority-zero", "complete-collapse"]),
])
def test_d_ce_two_clusters(lam_b, lams, regimes):
    problems = [u.ce([8, 8, 2, 2], 5, lam_w=lam, lam_h=lam, lam_b=lam_b, per_class=1) for lam in lams]
    _certify_batch(problems, 2, regimes)


def test_e_ce_three_clusters_convex_certificate():
    lams = [0.01, 0.06]
    problems = [u.ce([6, 6, 4, 4, 1, 1], 7, lam_w=lam, lam_h=lam, lam_b=0.1, per_class=1) for lam in lams]
    for p in problems:
        assert u.analytic_solution(p).details["kkt_residual"] < 1e-9
    _certify_batch(problems, 2, [u.analytic_solution(p).regime for p in problems])


def test_f_relu_ce_dead_classes():
    # relu_dead_class_thresholds([8,8,4,2], λ, λ): class dies once λ² >= [0.0124, 0.0124, 0.0062, 0.0031].
    lams = [0.03, 0.06, 0.09, 0.12]
    problems = [u.relu_ce([8, 8, 4, 2], 16, lam_w=lam, lam_h=lam, per_class=1) for lam in lams]
    _certify_batch(problems, 6, ["all-alive", "1-dead", "2-dead", "all-dead"])


def test_trap_is_not_certified():
    # Near the origin, L = 3: the origin is a local minimum (Dang et al. 2023), f(0) = 1/2.
    problem = u.deep_linear_mse([8, 4, 2], 4, depth=3, lam_w=0.02, lam_h=0.02, per_class=1)
    trapped = u.solve(problem, key=0, init_scale=1e-3)
    verdict = u.check(trapped)
    assert u.Status(int(trapped.status)).name == "converged"
    assert not verdict.certified and "local minimum" in verdict.reason
    assert verdict.gap > 0.1


def test_no_theory_is_said_not_guessed():
    # One layer has the convex certificate (tests/test_theory_convex.py); two layers have no theory.
    problem = u.make_problem("mse", [3, 2], 3, widths=[3], lam_w=0.1, lam_h=0.1, lam_b=0.1)
    theory = u.analytic_solution(problem)
    assert isinstance(theory, NoTheory) and "regularised bias" in theory.reason
    verdict = u.check(u.solve(problem))
    assert not verdict.certified and verdict.reason.startswith("no theory")
