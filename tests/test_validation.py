"""Bad input: a ValueError naming the parameter and the allowed range, before anything is compiled."""

import json

import pytest
from typer.testing import CliRunner

import ufm_jax as u
from ufm_jax.cli import app

GOOD = dict(loss="ce", class_sizes=[3, 3], dim=2, lam_w=0.1, lam_h=0.1)

BAD = [
    ("lam_w", dict(lam_w=0.0), "> 0"),
    ("lam_w", dict(lam_w=-1.0), "> 0"),
    ("lam_h", dict(lam_h=0.0), "> 0"),
    ("lam_b", dict(lam_b=-0.1), "> 0"),
    ("lam_w", dict(lam_w=float("nan")), "finite"),
    ("lam_h", dict(lam_h=float("inf")), "finite"),
    ("class_sizes", dict(class_sizes=[3, 0]), "> 0"),
    ("class_sizes", dict(class_sizes=[3]), "K = 2"),
    ("class_sizes", dict(class_sizes=[3, float("nan")]), "finite"),
    ("class_sizes", dict(class_sizes=[2.5, 3]), "integer"),
    ("dim", dict(dim=0), ">= 1"),
    ("lam_w", dict(lam_w=[0.1, 0.2], depth=3), "L = 3"),
    ("widths", dict(widths=[2, 0]), ">= 1"),
    ("widths", dict(widths=[2], depth=3), "depth - 1"),
    ("loss", dict(loss="hinge"), "mse"),
    ("per_class", dict(per_class=0), ">= 1"),
]


@pytest.mark.parametrize("name,change,allowed", BAD)
def test_make_problem_rejects(name, change, allowed, count_traces):
    with pytest.raises(ValueError, match=name) as err:
        u.make_problem(**{**GOOD, **change})
    assert allowed in str(err.value)
    assert count_traces() == 0


@pytest.mark.parametrize("seeds", [0, -1, 1.5])
def test_solve_rejects_bad_seeds(seeds):
    with pytest.raises(ValueError, match="seeds"):
        u.solve(u.make_problem(**GOOD), seeds=seeds)


@pytest.mark.parametrize("args,flag", [
    (["--lam-w", "0"], "--lam-w"),
    (["--classes", "5x1"], "--classes"),
    (["--classes", "abc"], "--classes"),
    (["--dim", "0"], "--dim"),
    (["--loss", "hinge"], "--loss"),
    (["--layers", "2", "--lam-w", "0.1,0.1,0.1"], "--lam-w"),
    (["--lam-b", "0.1", "--free-bias"], "--lam-b"),
    (["--key", "-1"], "--key"),
    (["--key", str(10**23)], "--key"),
    (["--gtol", "inf"], "--gtol"),
    (["--seeds", "0"], "--seeds"),
    (["--history", "0"], "--history"),
    (["--solver", "newton"], "--solver"),
])
def test_cli_prints_one_line_naming_the_flag_and_exits_2(args, flag):
    result = CliRunner().invoke(app, ["solve", *args])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: {flag}="), lines


def test_cli_suggests_the_layers_for_several_lam_w():
    result = CliRunner().invoke(app, ["solve", "--lam-w", "1e-3,1e-3", "--layers", "1"])
    assert result.exit_code == 2 and "give --layers 2" in result.output and "np.float64" not in result.output


def test_cli_version_and_plain_help():
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.startswith("ufm_jax ")
    for command in ([], ["solve"], ["sweep"], ["plot"], ["threshold"]):
        result = CliRunner().invoke(app, [*command, "--help"])
        assert result.exit_code == 0 and "<bool>" not in result.output, command


def test_class_sizes_that_are_not_numbers_name_the_parameter():
    with pytest.raises(ValueError, match="class_sizes=\\['a', 'b'\\] is not allowed"):
        u.ce(["a", "b"], 2, lam_w=0.1, lam_h=0.1)


@pytest.mark.floors
def test_cli_json_has_the_documented_fields():
    result = CliRunner().invoke(app, ["solve", "--loss", "mse", "--classes", "4x3", "--dim", "4",
                                      "--lam-w", "0.01", "--lam-h", "0.01", "--x64", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    for key in ("objective", "grad_norm", "iterations", "status", "metrics", "timing", "theory", "gap",
                "certified"):
        assert key in out
    assert set(out["timing"]) >= {"compile_s", "solve_s"}
    assert out["status"] == "converged" and out["certified"] is True
