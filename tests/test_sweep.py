"""Sweeps: config validation, resumable runner, dataset, CLI, threshold.

Every sweep here has the same shapes (CE, K = 4, d = 3, one weighted column per class) and chunk size 2,
so the whole file compiles the solver once per sharding mode.
"""

import json

import numpy as np
import pytest
import typer
import xarray as xr
from typer.testing import CliRunner

from ufm_jax.sweep import (SweepConfigError, find_threshold, load_config, load_dataset, plan,
                           run_sweep)
from ufm_jax.sweep import _cli

TINY = """
name = "tiny"
[problem]
family = "ce"
dim = 3
k_a = 2
k_b = 2
n_b = 10
per_class = 1
[grid]
lam_z = { start = 5e-3, stop = 0.05, num = 3, spacing = "log" }
ratio = [1, 4]
[run]
chunk_size = 2
[plot]
metrics = ["minority_spread"]
formats = ["png"]
"""


def _config(text=TINY, **kw):
    return load_config(text=text, **kw)


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("full")
    result = run_sweep(_config(), output=out, progress=False)
    return out, result


def test_full_run_writes_everything(full_run):
    out, result = full_run
    for name in ("dataset.nc", "results.csv", "report.md", "config.toml", "config.json",
                 "figures/minority_spread.png"):
        assert (out / name).is_file(), name
    ds = load_dataset(out / "dataset.nc")
    assert dict(ds.sizes)["lam_z"] == 3 and dict(ds.sizes)["ratio"] == 2
    for var in ("objective", "grad_norm", "status", "iterations", "minority_spread", "mean_norms",
                "singular_values_means"):
        assert var in ds, var
    assert ds.attrs["ufm_jax_version"]
    assert json.loads(ds.attrs["config_json"])["grid"]["ratio"] == [1.0, 4.0]
    # 3 λ × 2 ratios; the CSV has one header row and one row per point.
    assert result.total == 6
    assert len((out / "results.csv").read_text().splitlines()) == 7
    assert result.certified + result.not_certified + result.failed == 6
    # Two classes of n_B = 10 and two of n_A = r n_B: N = 20 (r + 1).
    np.testing.assert_allclose(ds["n_total"].sel(ratio=4.0), 100.0)
    # Rerunning finds everything done and computes nothing.
    again = run_sweep(_config(), output=out, progress=False)
    assert again.computed_points == 0


def test_resume_after_kill_is_identical(full_run, tmp_path):
    out_full, _ = full_run
    out = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        run_sweep(_config(), output=out, progress=False, stop_after=1)
    assert len(list((out / "chunks").glob("*.npz"))) == 1
    assert not (out / "dataset.nc").exists()
    result = run_sweep(_config(), output=out, progress=False)
    assert result.computed_points == 4  # 6 points, 2 were done
    xr.testing.assert_identical(load_dataset(out / "dataset.nc"), load_dataset(out_full / "dataset.nc"))
    assert (out / "results.csv").read_text() == (out_full / "results.csv").read_text()


def test_deleted_chunk_is_recomputed_identically(full_run, tmp_path):
    import shutil

    out_full, _ = full_run
    out = tmp_path / "copy"
    shutil.copytree(out_full, out)
    chunk = sorted((out / "chunks").glob("*.npz"))[1]
    chunk.unlink()
    result = run_sweep(_config(), output=out, progress=False)
    assert result.computed_points == 2
    xr.testing.assert_identical(load_dataset(out / "dataset.nc"), load_dataset(out_full / "dataset.nc"))


def test_sharded_equals_unsharded(full_run, tmp_path):
    out_full, _ = full_run
    result = run_sweep(_config(sets=["run.shard=false"]), output=tmp_path, progress=False, figures=False)
    sharded = load_dataset(out_full / "dataset.nc")
    # Different XLA programs (one device vs two) round differently, so the iterates agree to the
    # solver's tolerance, not bitwise: both stop at a gradient norm <= gtol = 1e-9.
    np.testing.assert_allclose(result.dataset["objective"], sharded["objective"], rtol=1e-12)
    np.testing.assert_allclose(result.dataset["minority_spread"], sharded["minority_spread"], atol=1e-6)
    assert float(result.dataset["grad_norm"].max()) <= 1e-9 and float(sharded["grad_norm"].max()) <= 1e-9
    np.testing.assert_array_equal(result.dataset["status"], sharded["status"])
    np.testing.assert_array_equal(result.dataset["certified"], sharded["certified"])


BAD = [
    ("[problem]\nfamily = 'ce'\ndim = 3\nk_a = 2\nk_b = 2\nn_b = 1\nratio = 2\nlam_z = 0.1\nbogus = 1\n",
     "problem.bogus", ":9:"),
    (TINY.replace("ratio = [1, 4]", "imbalance = [1, 4]"), "grid.imbalance", "unknown axis"),
    (TINY.replace("ratio = [1, 4]", "ratio = []"), "grid.ratio", "empty grid"),
    (TINY.replace("ratio = [1, 4]", "ratio = [0.5, 4]"), "grid.ratio", ">= 1"),
    (TINY.replace("start = 5e-3", "start = -1"), "grid.lam_z", "> 0"),
    (TINY.replace("num = 3", "num = 0"), "grid.lam_z", "empty grid"),
    (TINY.replace("n_b = 10", "n_b = 10\nn_a = 5"), "n_a", "exactly two"),
    (TINY.replace("[run]", "[runn]"), "runn", "unknown table"),
    (TINY.replace("chunk_size = 2", "chunk_size = 'big'"), "run.chunk_size", "integer"),
    ("this is = not [toml", "not a valid TOML file", "line"),
]


@pytest.mark.parametrize("text,key,detail", BAD)
def test_bad_input_raises_before_writing(tmp_path, text, key, detail):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    out = tmp_path / "out"
    with pytest.raises(SweepConfigError) as info:
        run_sweep(load_config(path), output=out, progress=False)
    assert key in str(info.value) and detail in str(info.value), str(info.value)
    assert not out.exists()


def test_bad_point_and_flags():
    # Explicit mode needs integer class sizes: r = 1.5 with n_b = 5 gives n_a = 7.5.
    text = TINY.replace("per_class = 1\n", "").replace("[1, 4]", "[1, 1.5]").replace("10", "5")
    with pytest.raises(SweepConfigError, match="ratio=1.5"):
        plan(_config(text))
    with pytest.raises(SweepConfigError, match="lam_z"):
        _config(axes=["lam_z=log:1e-3:0:4"])
    with pytest.raises(SweepConfigError, match="problem.lam_w"):
        _config(sets=["problem.lam_w=0.1"])
    cfg = _config(axes=["lam_z=0.01,0.02", "seed=0,1"], sets=["n_b=20"])
    assert cfg.axes[0] == ("lam_z", (0.01, 0.02)) and cfg.problem["n_b"] == 20.0
    assert cfg.axis_names == ("lam_z", "ratio", "seed")


def test_default_config_is_one_shape_group():
    cfg = load_config()
    points, groups, chunks = plan(cfg)
    assert len(groups) == 1 and len(points) >= 50


def test_cli_sweep_and_plot(tmp_path):
    app = typer.Typer()
    for name in ("sweep", "plot", "threshold"):
        app.command(name=name)(getattr(_cli, name))
    runner = CliRunner()
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY)
    out = tmp_path / "res"
    bad = runner.invoke(app, ["sweep", str(cfg), "--out", str(out), "--axis", "lam_z=0,1"])
    assert bad.exit_code == 2 and "grid.lam_z" in bad.output and not out.exists()
    res = runner.invoke(app, ["sweep", str(cfg), "--out", str(out), "--quiet", "--axis", "lam_z=0.01",
                              "--axis", "ratio=4"])
    assert res.exit_code == 0, res.output
    assert "1 points:" in res.output
    (out / "figures" / "minority_spread.png").unlink()
    res = runner.invoke(app, ["plot", str(out / "dataset.nc"), "--metric", "objective"])
    assert res.exit_code == 0, res.output
    assert (out / "figures" / "objective.png").is_file()


def test_threshold_matches_theory():
    # r = 4, n_B = 10: N = 100, minority collapse at λ_Z = √n_B / N = 0.0316 (Hong & Ling Thm 3.2).
    cfg = _config(TINY.replace("ratio = [1, 4]", "ratio = [4]"))
    cfg = type(cfg)(**{**cfg.__dict__, "axes": (("ratio", (4.0,)),)})
    result = find_threshold(cfg, axis="lam_z", lo=0.01, hi=0.04, metric="minority_spread", level=1e-6,
                            rtol=1e-2)
    assert result.hi / result.lo - 1 <= 1e-2
    assert result.theory == pytest.approx(np.sqrt(10) / 100, rel=1e-9)
    assert result.value == pytest.approx(result.theory, rel=2e-2)
