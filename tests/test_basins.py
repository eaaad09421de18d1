"""Basin statistics of a multi-start search and the rule that says its evidence is enough."""

import math

import numpy as np
import pytest

import ufm_jax as u
from ufm_jax._basins import (
    AGREE,
    MAX_UNSEEN,
    MIN_STARTS,
    basin_statistics,
    basin_tolerance,
    enough_evidence,
    is_confident,
    missed_mass,
)
from ufm_jax.solve import Status

C, M, S = Status.converged, Status.max_steps, Status.stalled


def test_defaults_and_their_derivation():
    assert (AGREE, MAX_UNSEEN) == (3, 0.05)
    # ⌈log 0.05 / log 0.95⌉: S starts miss a 5 % basin with probability 0.95^S <= 5 % from S = 59 on.
    assert MIN_STARTS == 59 and 0.95**59 <= 0.05 < 0.95**58
    assert basin_tolerance(np.float64) == pytest.approx(1e-9 + 64 * 2.220446049250313e-16)
    assert basin_tolerance(np.float32) == pytest.approx(1e-4 + 64 * 1.1920929e-07)
    assert basin_tolerance(np.float64, gtol=1e-6) == pytest.approx(1e-6, rel=1e-6)
    assert missed_mass(64) == pytest.approx(1 - 0.05 ** (1 / 64))  # 4.6 %
    assert 0.045 < missed_mass(64) < 0.047 and missed_mass(149) < 0.02


def test_values_cluster_into_minima():
    f = 0.1130807254
    values = [f, f * (1 + 1e-12), f + 5e-10, 1.008 * f, 1.008 * f * (1 + 1e-11), 0.2433, 0.5,
              0.1, np.nan, 0.3]
    status = [C, C, C, C, C, C, C, M, Status.nonfinite, S]
    stats = basin_statistics(np.array(values), np.array(status))
    assert stats.starts == 10 and stats.converged == 7
    assert stats.minima == [[f, 3], [1.008 * f, 2], [0.2433, 1], [0.5, 1]]
    assert (stats.best, stats.hits, stats.singletons) == (f, 3, 2)
    # Good–Turing with the unconverged counted as unseen: (2 singletons + 3 unconverged) / 10.
    assert stats.unseen_mass == pytest.approx(0.5)
    assert stats.unconverged == {"max_steps": 1, "nonfinite": 1, "stalled": 1}
    assert stats.beaten_by == pytest.approx(0.1)  # a max_steps start sits below the best minimum
    # Values 1e-8 apart (relative) are two minima: above the tolerance 1e-9 + 64 eps.
    two = basin_statistics(np.array([1.0, 1.0 + 1e-8]), np.array([C, C]))
    assert len(two.minima) == 2 and two.beaten_by is None


def test_bad_shapes_are_named():
    with pytest.raises(ValueError, match="objectives="):
        basin_statistics(np.zeros((2, 3)), np.zeros((2, 3), int))
    with pytest.raises(ValueError, match="objectives="):
        basin_statistics(np.zeros(3), np.zeros(2, int))


def _stats(counts, unconverged=0):
    """Statistics of starts that hit minima `1, 2, ...` `counts` times (plus `unconverged` at max_steps)."""
    values = np.concatenate([np.full(c, 1.0 + i) for i, c in enumerate(counts)] + [np.full(unconverged, 9.0)])
    status = np.array([C] * int(sum(counts)) + [M] * unconverged)
    return basin_statistics(values, status)


def test_enough_needs_agreement_starts_and_a_small_unseen_mass():
    # The case: the best of 32 starts hit 3 times. Never enough at 32 starts.
    assert not enough_evidence(_stats([3, 29]))
    assert not enough_evidence(_stats([3, 10, 10, 9]))
    assert enough_evidence(_stats([3, 61]))  # 64 starts, the best hit 3 times, no singletons
    assert not enough_evidence(_stats([2, 62]))  # agree = 3
    assert not enough_evidence(_stats([3, 51] + [1] * 10))  # 10 singletons of 64: unseen 16 %
    assert enough_evidence(_stats([3, 58, 1, 1, 1]))  # 3/64 = 4.7 % <= 5 %
    assert not enough_evidence(_stats([3, 57], unconverged=4))  # unconverged count as unseen: 6.3 %
    assert enough_evidence(_stats([3, 29]), min_starts=32)  # with a smaller min_starts it would be


def test_confident_needs_enough_a_passing_hessian_and_the_best_value():
    stats = _stats([5, 59])
    assert is_confident(stats, "nonnegative", 1.0)
    assert is_confident(stats, "nonnegative", 1.0 + 1e-12)  # one minimum within the tolerance
    assert not is_confident(stats, "negative", 1.0)  # a saddle
    assert not is_confident(stats, "inconclusive", 1.0)
    assert not is_confident(stats, None, 1.0)  # no check run
    assert not is_confident(stats, "nonnegative", 2.0)  # another start beat the returned value
    assert not is_confident(_stats([2, 62]), "nonnegative", 1.0)  # not enough
    beaten = basin_statistics(np.array([1.0] * 60 + [0.5]), np.array([C] * 60 + [M]))
    assert beaten.beaten_by == 0.5 and not is_confident(beaten, "nonnegative", 1.0)
    assert not is_confident(stats, "nonnegative", 1.0, converged=False)  # the returned point did not converge


# ---- the scenario, simulated ------------------------------------------------------------------


def _landscape(global_mass, others):
    """Basin masses, best value first: the global minimum, the local minimum of the issue (hit 3 times
    in 32: mass 3/32), then `others` worse basins sharing the rest equally."""
    local = 3 / 32
    rest = 1 - global_mass - local
    return np.array([global_mass, local] + [rest / others] * others)


def _wrong_stop_rate(masses, trials, *, budget=64, every=16, seed=0, **rule):
    """The share of searches that call wrong evidence enough: starts drawn `every` at a time up to
    `budget`, the rule checked after each round with `basin_statistics` / `enough_evidence`, stopping at
    the first "enough"; wrong when the best value seen is not the global minimum's."""
    rng = np.random.default_rng(seed)
    values = 1.0 + 0.01 * np.arange(masses.size)  # basin i has value 1 + i/100: basin 0 is the global
    wrong = 0
    for _ in range(trials):
        draws = values[rng.choice(masses.size, size=budget, p=masses)]
        for stop in range(every, budget + 1, every):
            stats = basin_statistics(draws[:stop], np.full(stop, C))
            if enough_evidence(stats, **rule):
                wrong += stats.best != values[0]
                break
    return wrong / trials


def test_rare_global_minima_rarely_end_a_search_on_the_wrong_value():
    trials = 1500
    # The scenario with a 5 % global basin and the rest in ten worse basins (few singletons,
    # so Good–Turing sees nothing): a wrong stop needs all 59+ starts to miss the global basin,
    # 0.95^64 = 3.7 % (times the chance the local minimum has 3 hits). Measured 3.5 % here (3.4 % in
    # 20 000 trials).
    few = _landscape(0.05, others=10)
    rate = _wrong_stop_rate(few, trials)
    assert rate <= 0.05, rate
    # What the minimum number of starts buys: "hits >= 3" alone stops early on the local minimum in
    # 21 % of the searches (50 % with a 2 % global basin).
    naive = _wrong_stop_rate(few, trials, min_starts=1, max_unseen=1.0)
    assert naive > 0.15, naive
    # A 2 % global basin, the rest scattered over 40 small basins (many singletons): Good–Turing keeps
    # the unseen mass above 5 %, so no search of 64 starts calls the local minimum enough.
    assert _wrong_stop_rate(_landscape(0.02, others=40), trials) <= 0.01
    # A 2 % global basin next to a few large ones cannot be told apart from none: the wrong rate is the
    # chance that 64 starts miss it, 0.98^64 = 27 % (measured 26 %), whatever the rule (documented at MIN_STARTS; the
    # remedies are structured starts and a larger --max-starts: 149 starts for 5 %).
    limit = _wrong_stop_rate(_landscape(0.02, others=10), trials)
    assert limit <= 0.98**64 + 3 * math.sqrt(0.27 * 0.73 / trials), limit


# ---- real starts ------------------------------------------------------------------------------------


def test_converged_starts_at_one_minimum_form_one_cluster():
    # Starts that reach the certified minimum agree to far better than the tolerance (the objective is
    # second order in the distance: ~gtol²), so they form one cluster with every hit counted.
    problem = u.deep_linear_mse([8, 4, 2], 4, depth=3, lam_w=0.02, lam_h=0.02, per_class=1)
    solution = u.solve(problem, key=0, seeds=4)
    theory = u.analytic_solution(problem)
    stats = basin_statistics(solution.seed_objectives, solution.seed_status)
    at_theory = np.sum((np.asarray(solution.seed_status) == C)
                       & (np.abs(np.asarray(solution.seed_objectives) - theory.objective) <= 1e-8))
    assert at_theory >= 1
    assert stats.best == pytest.approx(theory.objective, rel=1e-12) and stats.hits == at_theory
