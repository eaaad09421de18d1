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
                "certified", "evidence", "precision", "tolerances"):
        assert key in out
    assert set(out["timing"]) >= {"compile_s", "solve_s"}
    # A result says the tolerances it was held to (float32 ones are looser).
    assert out["precision"] == "float64" and out["tolerances"] == {"objective_rtol": 1e-8, "geometry_rtol": 1e-4}
    assert out["status"] == "converged" and out["certified"] is True


# ---- the working precision, dtypes and integer ranges (checked when the problem is built) ----------------


@pytest.mark.parametrize("name,change", [
    ("lam_h", dict(lam_h=1e-50)),  # underflows to 0 in float32 (the W = 0 saddle would "converge")
    ("lam_h", dict(lam_h=1e-40)),  # a float32 subnormal: flushed to 0 by the CPU
    ("lam_w", dict(lam_w=1e39)),  # overflows to inf
    ("lam_w", dict(lam_w=[1e-3, 1e-45], depth=2)),
    ("lam_b", dict(lam_b=1e-50)),
    ("class_sizes", dict(class_sizes=[1e39, 10, 10], per_class=1)),
    ("class_sizes", dict(class_sizes=[3e38, 3e38, 10], per_class=1)),  # their sum N overflows
])
def test_values_are_checked_after_the_cast_to_float32(name, change):
    import jax

    kwargs = {**dict(class_sizes=[10, 10, 10], dim=4, lam_w=1e-3, lam_h=1e-3), **change}
    with jax.enable_x64(False):  # JAX's default precision
        with pytest.raises(ValueError, match=rf"^{name}=.*float32") as err:
            u.ce(**kwargs)
    assert "float64" in str(err.value)
    u.ce(**kwargs)  # float64 (this test session's precision) holds them


@pytest.mark.parametrize("dtype", ["int32", "int8", "bool", "complex64"])
def test_non_float_dtypes_are_refused(dtype):
    import jax.numpy as jnp

    with pytest.raises(ValueError, match="^dtype="):
        u.ce([10, 10, 10], 4, lam_w=1e-3, lam_h=1e-3, dtype=jnp.dtype(dtype))


@pytest.mark.parametrize("name,change", [
    ("dim", dict(dim=2**31)),
    ("depth", dict(depth=2000)),
    ("widths", dict(widths=[2**31])),
    ("per_class", dict(per_class=2**31)),
    ("columns", dict(columns=10**8)),
])
def test_integer_inputs_are_range_checked(name, change):
    with pytest.raises(ValueError, match=f"^{name}=.* and <= "):
        u.make_problem(**{**GOOD, **change})


@pytest.mark.parametrize("args,name", [
    (["--classes", "5x0,5x2"], "--classes"),  # ran as K = 2
    (["--key", str(10**23)], "--key"),  # OverflowError
    (["--lam-h", "1e-50", "--x32"], "--lam-h"),  # float32: "converged" at the W = 0 saddle
    (["--lam-w", "1e39", "--x32"], "--lam-w"),  # float32: an overflow warning, exit 0
    (["--layers", "5000"], "--layers"),
    (["--max-steps", "3000000000"], "--max-steps"),  # overflowed the compiled loop's counter
])
def test_cli_refuses_what_the_precision_or_range_cannot_hold(args, name):
    result = CliRunner().invoke(app, ["solve", *args])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and name in lines[0], result.output


@pytest.mark.parametrize("flags,name", [
    (["--axis", f"seed=0,{2**64 - 1}"], "grid.seed"),
    (["--set", f"solver.seed={10**23}"], "solver.seed"),
    (["--set", "depth=5000"], "problem.depth"),
])
def test_sweep_integers_are_range_checked_before_writing(tmp_path, flags, name):
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["sweep", "--out", str(out), *flags])
    assert result.exit_code == 2 and name in result.output, result.output
    assert not out.exists()


def test_a_sweep_lambda_that_float32_cannot_hold_is_named_before_compiling(count_traces):
    import jax

    from ufm_jax.sweep import SweepConfigError, load_config, plan

    cfg = load_config(axes=["lam_z=1e-50,1e-2"])
    with jax.enable_x64(False):
        with pytest.raises(SweepConfigError, match="lam_z=1e-50.*underflows to 0 in float32"):
            plan(cfg)
        with pytest.raises(SweepConfigError, match="n_b=1e.39.*beyond the range of float32"):
            plan(load_config(axes=["n_b=10,1e39"]))
    assert count_traces() == 0
