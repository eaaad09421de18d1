"""The family and solver registries, tabled as optimistix tables its solvers × problems.

Every family of `ufm_jax.FAMILIES` has a case here (a test fails when a family is added without one), and
every case runs with every solver of `ufm_jax.SOLVERS` that can handle it.
"""

import dataclasses

import pytest

import ufm_jax as u
from ufm_jax import _families
from ufm_jax.solve import ALIASES, canonical_solver_name, make_solver, solver_names

# One small case per family (weighted, one column per class: cheap, exact), with its theory's regime.
CASES = {
    "mse": (u.mse([3, 2, 1], 3, lam_w=0.05, lam_h=0.05, per_class=1), "all-classes"),
    "ce": (u.ce([4, 4, 2, 2], 4, lam_w=0.02, lam_h=0.02, per_class=1), "full-rank"),
    "relu_ce": (u.relu_ce([4, 4, 2], 3, lam_w=0.02, lam_h=0.02, per_class=1), "all-alive"),
    "relu_mse": (u.relu_mse([3, 2, 1], 3, lam_w=0.05, lam_h=0.05, per_class=1), None),
}

# Options that let the first-order methods reach a certifiable point in a few hundred steps. In the
# balanced coordinates the solvers work in, λ = 0.05 scales the data term's curvature by 1/λ = 20 (so a
# step of 0.02 with heavy-ball momentum 0.9 is stable), and gtol = 1e-8 bounds the objective gap by
# about gtol² / (2 μ) ≈ 1e-15 here (μ >= λ-scale curvature of the penalties, 1 in these coordinates),
# well inside the certificate's 1e-8.
OPTIONS = {
    "gradient_descent": dict(learning_rate=0.02, momentum=0.9, gtol=1e-8, max_steps=20_000),
    "adam": dict(learning_rate=1e-2, gtol=1e-8, max_steps=20_000),
}


def test_every_family_has_a_case():
    assert set(CASES) == set(u.FAMILIES)


def _table():
    for family, (problem, regime) in CASES.items():
        for name, cls in u.SOLVERS.items():
            if problem.nonneg and not cls.supports_projection:
                continue
            yield pytest.param(family, name, id=f"{family}-{name}")


@pytest.mark.parametrize("family,solver_name", list(_table()))
def test_every_family_with_every_applicable_solver(family, solver_name):
    problem, regime = CASES[family]
    solver = make_solver(solver_name, problem, **OPTIONS.get(solver_name, {}))
    solution = u.solve(problem, solver, key=0, seeds=2)
    assert u.Status(int(solution.status)) == u.Status.converged
    verdict = u.check(solution)
    if regime is None:
        assert isinstance(u.analytic_solution(problem), u.NoTheory)
        assert not verdict.certified and verdict.reason.startswith("no theory")
    else:
        assert verdict.regime == regime
        assert verdict.certified, verdict


@pytest.mark.floors
@pytest.mark.parametrize("preset", sorted(_families.PRESETS))
def test_presets_build_their_family(preset):
    family = _families.PRESETS[preset]
    problem = family.preset(preset)([3, 2], 2, lam_w=0.1, lam_h=0.1, per_class=1)
    assert (problem.loss, problem.nonneg) == (family.loss, family.nonneg)
    assert u.family_of(problem) is family
    assert problem.bias == ("free" if family.presets[preset].get("free_bias") else "none")
    assert set(family.plot_metrics) <= set(u.metrics.nc_metrics(
        u.init_params(problem, 0), problem)) | {"gap", "objective", "mean_norms", "dead_classes"}


def test_solver_names_resolve_once():
    names = solver_names()
    assert len(names) == len(set(names))
    for name, cls in u.SOLVERS.items():
        assert cls.name == name and canonical_solver_name(name) == name
    for alias, name in ALIASES.items():
        assert canonical_solver_name(alias) == name
    assert ALIASES == {"lockstep": "lockstep_lbfgs", "gd": "gradient_descent", "pg": "projected_gradient"}
    with pytest.raises(ValueError, match="solver='newton' is not allowed: expected one of auto, lbfgs"):
        canonical_solver_name("newton")


def test_auto_is_the_default_solver():
    mse, _ = CASES["mse"]
    relu, _ = CASES["relu_ce"]
    assert isinstance(make_solver("auto", mse), u.LockstepLBFGS)
    assert isinstance(make_solver(None, relu), u.ProjectedGradient)
    with pytest.raises(ValueError, match="H >= 0"):
        make_solver("lbfgs", relu)


@pytest.mark.parametrize("cls,kwargs,name", [
    (u.LBFGS, dict(max_steps=0), "max_steps"),
    (u.LBFGS, dict(memory_size=0), "memory_size"),
    (u.LBFGS, dict(gtol=-1.0), "gtol"),
    (u.ProjectedGradient, dict(memory=0, max_steps=-3), "(memory|max_steps)"),
    (u.ProjectedGradient, dict(memory=0), "memory"),
    (u.GradientDescent, dict(learning_rate=0.0), "learning_rate"),
    (u.GradientDescent, dict(momentum=1.5), "momentum"),
    (u.Adam, dict(learning_rate=float("nan")), "learning_rate"),
    (u.LockstepLBFGS, dict(shrink=1.0), "shrink"),
    (u.LockstepLBFGS, dict(max_steps=2.5), "max_steps"),
    (u.LockstepLBFGS, dict(f_rtol=float("nan")), "f_rtol"),
    (u.LockstepLBFGS, dict(f_rtol=-1e-3), "f_rtol"),
])
def test_solvers_validate_themselves(cls, kwargs, name):
    with pytest.raises(ValueError, match=f"{name}=.* is not allowed"):
        cls(**kwargs)


def test_only_theorem_not_applicable_becomes_no_theory(monkeypatch):
    problem, _ = CASES["ce"]
    family = u.FAMILIES["ce"]

    def not_applicable(p):
        raise u.TheoremNotApplicable("conditions fail")

    def broken(p):
        raise ValueError("a shape bug")

    monkeypatch.setitem(u.FAMILIES, "ce", dataclasses.replace(family, theory=not_applicable))
    assert u.analytic_solution(problem) == u.NoTheory("conditions fail")
    monkeypatch.setitem(u.FAMILIES, "ce", dataclasses.replace(family, theory=broken))
    with pytest.raises(ValueError, match="a shape bug"):
        u.analytic_solution(problem)


def test_boundaries_come_from_the_family():
    ce, _ = CASES["ce"]
    # Two clusters (k_A = k_B = 2, n_A = 4, n_B = 2, N = 12): √n_B/N and √n_A/N (Hong & Ling Thm 3.2).
    bounds = u.phase_boundaries(ce)
    assert bounds["minority collapse"] == pytest.approx(2**0.5 / 12)
    assert bounds["complete collapse"] == pytest.approx(2 / 12)
    assert bounds["minority collapse"] < bounds["minority zero"] < bounds["complete collapse"]
    assert u.phase_boundaries(CASES["relu_mse"][0]) == {}


@pytest.mark.parametrize("problem", [
    u.ce([3, 3, 1, 1], 2, lam_w=1e-3, lam_h=1e-3),  # two clusters, but d < K - 1
    u.relu_ce([3, 2, 1], 2, lam_w=1e-3, lam_h=1e-3),  # d < K
    u.ce([4, 4, 2, 2], 5, lam_w=1e-3, lam_h=1e-3, depth=2),  # deep
], ids=["ce-small-d", "relu-ce-small-d", "ce-deep"])
def test_no_boundaries_where_the_theory_does_not_apply(problem):
    # A boundary is drawn over measured data only where the theorem behind it holds.
    assert isinstance(u.analytic_solution(problem), u.NoTheory)
    assert u.phase_boundaries(problem) == {}
