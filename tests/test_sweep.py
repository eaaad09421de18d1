"""Sweeps: config validation, resumable runner, dataset, CLI, threshold.

Every sweep here has the same shapes (CE, K = 4, d = 3, one weighted column per class) and chunk size 2,
so the whole file compiles the solver once per sharding mode.
"""

import ast
import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from typer.testing import CliRunner

import ufm_jax.sweep
from _sweeps import TINY, tiny_config
from ufm_jax import FAMILIES, phase_boundaries
from ufm_jax._json import jsonable
from ufm_jax._problem import structure
from ufm_jax.sweep import (Grid, SweepConfig, SweepConfigError, atomic_path, atomic_write, find_threshold,
                           load_config, load_dataset, plan, run_sweep, theory_threshold)
from ufm_jax.cli import app
from ufm_jax.sweep import _runner
from ufm_jax.sweep._grid import group_key



_config = tiny_config


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
                "mean_singular_values"):
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


def _killed_after(monkeypatch, chunks):
    """Make the runner's chunk solver raise KeyboardInterrupt (a Ctrl-C) after `chunks` chunks."""
    solved = []
    original = _runner.solve_chunk

    def solve_chunk(*args, **kwargs):
        if len(solved) == chunks:
            raise KeyboardInterrupt("simulated kill")
        solved.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(_runner, "solve_chunk", solve_chunk)


def test_resume_after_kill_is_identical(full_run, tmp_path, monkeypatch):
    out_full, _ = full_run
    out = tmp_path / "resumed"
    with monkeypatch.context() as m:
        _killed_after(m, 1)
        with pytest.raises(KeyboardInterrupt):
            run_sweep(_config(), output=out, progress=False)
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
    assert cfg.axes[0] == ("lam_z", (0.01, 0.02)) and cfg.problem.n_b == 20.0
    assert cfg.axis_names == ("lam_z", "ratio", "seed")


def test_default_config_is_one_shape_group():
    cfg = load_config()
    sweep = plan(cfg)
    assert len(sweep.groups) == 1 and sweep.grid.size == 70


@pytest.mark.floors
def test_cli_sweep_and_plot(tmp_path):
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
    cfg = cfg.without_axis("lam_z")
    result = find_threshold(cfg, axis="lam_z", lo=0.01, hi=0.04, metric="minority_spread", level=1e-6,
                            rtol=1e-2)
    assert result.hi / result.lo - 1 <= 1e-2
    assert result.theory == pytest.approx(np.sqrt(10) / 100, rel=1e-9)
    assert result.value == pytest.approx(result.theory, rel=2e-2)


def test_boundaries_are_stored_per_point(full_run):
    # Each point's `boundaries` are `phase_boundaries` of its problem: for r = 4, n_B = 10 (N = 100)
    # minority collapse at √n_B/N = 0.0316 and complete collapse at √n_A/N = √40/100; r = 1 is
    # balanced, with no two-cluster boundary (NaN).
    out, _ = full_run
    ds = load_dataset(out / "dataset.nc")
    grid = Grid(_config())
    for flat in range(grid.size):
        point = grid.point(flat)
        stored = ds["boundaries"][point.index]
        expected = phase_boundaries(point.problem)
        for name in ds["boundary"].values:
            value = float(stored.sel(boundary=name))
            if name in expected:
                assert value == expected[name]
            else:
                assert np.isnan(value)
    at = ds["boundaries"].sel(ratio=4.0).isel(lam_z=0)
    assert float(at.sel(boundary="minority collapse")) == pytest.approx(np.sqrt(10) / 100, rel=1e-12)
    assert float(at.sel(boundary="complete collapse")) == pytest.approx(np.sqrt(40) / 100, rel=1e-12)
    assert np.all(np.isnan(ds["boundaries"].sel(ratio=1.0)))
    header = (out / "results.csv").read_text().splitlines()[0].split(",")
    assert header[:2] == ["lam_z", "ratio"] and "boundaries[minority collapse]" in header


def test_points_hold_their_problem():
    cfg = _config()
    grid = Grid(cfg)
    point = grid.point(5)  # C order: lam_z index 2, ratio index 1 (r = 4)
    assert point.index == (2, 1) and point.values == {"lam_z": 0.05, "ratio": 4.0}
    # lam_ratio = 1: λ_W = λ_H = λ_Z; two classes of n_A = 40, two of n_B = 10.
    np.testing.assert_allclose(point.problem.class_sizes, [40, 40, 10, 10])
    assert float(point.problem.lam_h) == 0.05 and float(point.problem.lam_w[0]) == 0.05
    assert point.labels == {"lam_z": 0.05, "lam_ratio": 1.0, "n_a": 40.0, "n_b": 10.0, "ratio": 4.0,
                            "n_total": 100.0}
    assert point.seed == 0 and point.key == grid.point(5).key != grid.point(4).key


def test_explicit_points_are_padded_per_group():
    # Explicit mode over n_b: one structure, so one group; every problem keeps its own width and the
    # group pads to the widest (n_a = 8).
    text = TINY.replace("per_class = 1\n", "").replace("ratio = [1, 4]", "n_b = [2, 4]").replace(
        "n_b = 10", "n_a = 8")
    sweep = plan(_config(text))
    (group,) = sweep.groups
    assert group.columns == 8 and group.example.columns_per_class == 8
    assert [p.problem.columns_per_class for p in sweep.grid.points(range(sweep.grid.size))] == [8] * 6
    assert group_key(sweep.grid.point(0).problem) == group.key


def test_groups_are_keyed_by_structure():
    # depth is static: L = 1 and L = 2 are two groups; the λ axis only changes array values.
    cfg = _config(axes=["depth=1,2"], sets=["ratio=4"])
    sweep = plan(cfg)
    assert [len(g.indices) for g in sweep.groups] == [3, 3]
    assert [g.key for g in sweep.groups] == [structure(sweep.grid.point(i).problem) for i in (0, 1)]
    np.testing.assert_array_equal(sweep.groups[1].indices, [1, 3, 5])


def test_a_large_grid_is_planned_without_its_points():
    # 10^6 points over λ_Z × ratio: grouping builds one point per ratio (the only structural axis),
    # and no chunk is materialised.
    cfg = _config(TINY, axes=["lam_z=log:1e-3:1:1000", "ratio=lin:1:20:1000"])
    sweep = plan(cfg)
    assert sweep.grid.size == 10**6 and len(sweep.groups) == 1
    assert sum(g.num_chunks for g in sweep.groups) == 500_000


def test_family_preset_defaults_apply():
    text = """
    [problem]
    family = "biased_mse"
    dim = 4
    class_sizes = [3, 2, 1]
    per_class = 1
    [grid]
    lam_z = [0.01, 0.1]
    [solver]
    method = "lockstep"
    """
    cfg = _config(text)
    family = FAMILIES["mse"]
    assert cfg.family is family and cfg.problem.free_bias and not cfg.problem.nonneg
    assert cfg.plot.metrics == family.plot_metrics
    assert cfg.threshold.metric == family.threshold_metric
    assert cfg.solver.method == "lockstep_lbfgs"
    assert Grid(cfg).point(0).problem.bias == "free"
    # The preset's default yields to the config, and lam_b (a regularised bias) is allowed for MSE.
    cfg = _config(text.replace('family = "biased_mse"', 'family = "mse"\nlam_b = 0.1'))
    assert Grid(cfg).point(0).problem.bias == "regularised"
    with pytest.raises(SweepConfigError, match="problem.lam_b"):
        _config(text.replace("dim = 4", "dim = 4\nlam_b = 0.1"))
    with pytest.raises(SweepConfigError, match="relu_mse"):
        _config(text.replace("dim = 4", "dim = 4\nnonneg = true"))


@pytest.mark.floors
def test_config_round_trips_through_toml_and_json():
    cfg = _config()
    assert load_config(text=cfg.to_toml()) == cfg
    assert SweepConfig.from_json(cfg.to_json()) == cfg
    assert cfg.fingerprint() == load_config(text=cfg.to_toml()).fingerprint()


@pytest.mark.parametrize("replace,where", [
    (("ratio = [1, 4]", "ratio = [1, 0.5]"), ":12: grid.ratio: ratio=0.5 is not allowed"),
    (("chunk_size = 2", "chunk_size = 2\nshard = 1"), ":15: run.shard:"),
    (("[plot]", "[solver]\nmethod = 'newton'\n[plot]"), ":16: solver.method: method='newton'"),
    (("[plot]", "[solver]\nmax_steps = 0\n[plot]"), ":16: solver.max_steps"),
    (("metrics = ", "x = 'n_a'\nmetrics = "), ":16: plot.x: 'n_a' is not an axis"),
    (("dim = 3", "dim = 3\nlam_w = 0.1"), ":6: problem.lam_w: lam_z = sqrt"),
])
@pytest.mark.floors
def test_config_errors_name_the_file_line(tmp_path, replace, where):
    path = tmp_path / "c.toml"
    path.write_text(TINY.replace(*replace))
    with pytest.raises(SweepConfigError) as info:
        load_config(path)
    assert f"{path}{where}" in str(info.value), str(info.value)


def test_theory_threshold_along_another_axis():
    # k_A = k_B = 5, n_B = 100 at λ_Z = 4e-3: minority collapse where √n_B/N = λ_Z with
    # N = 5 n_A + 500, i.e. n_A = (10/4e-3 − 500)/5 = 400 (Hong & Ling Thm 3.2).
    # d = K - 1 = 9: the theorem's condition (below it no boundary is given).
    text = TINY.replace("k_a = 2\nk_b = 2", "k_a = 5\nk_b = 5").replace("n_b = 10", "n_b = 100\nlam_z = 4e-3")
    text = text.replace("dim = 3", "dim = 9")
    text = text.replace('lam_z = { start = 5e-3, stop = 0.05, num = 3, spacing = "log" }\nratio = [1, 4]',
                        "n_a = [200, 800]")
    cfg = _config(text).without_axis("n_a")
    name, value = theory_threshold(cfg, "n_a", 110.0, 2000.0, "minority collapse")
    assert name == "minority collapse" and value == pytest.approx(400.0, rel=1e-12)


def test_jsonable():
    out = jsonable({"a": np.float32(0.5), "b": np.array([1.0, np.nan, np.inf]), "c": (np.int64(3), True),
                    1: np.bool_(False)})
    assert out == {"a": 0.5, "b": [1.0, None, None], "c": [3, True], "1": False}
    assert json.loads(json.dumps(out)) == out


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    path = tmp_path / "f.txt"
    atomic_write(path, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_sweep_modules_import_without_cycles():
    # Each module imports only the ones before it (no function-local import hides a cycle).
    order = ["_files", "_config", "_grid", "_dataset", "_plots", "_store", "_processes", "_chunks", "_plan",
             "_runner", "_threshold"]
    folder = Path(ufm_jax.sweep.__file__).parent
    for i, name in enumerate(order):
        tree = ast.parse((folder / f"{name}.py").read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                assert not [n for n in ast.walk(node) if isinstance(n, ast.ImportFrom) and n.level == 1], name
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                assert node.module in order[:i], (name, node.module)
