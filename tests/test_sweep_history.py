"""Sweep trajectories (`[run] history = K`) and the figures: every data variable draws or is refused.

The sweeps here have the shapes of `test_sweep.py` (CE, K = 4, d = 3, one weighted column per class,
chunks of 2) and record every 3 iterations: one more compiled program than that file's.
"""

import json

import numpy as np
import pytest
from matplotlib.colors import Normalize, SymLogNorm

from ufm_jax.solve._minimise import TRAJECTORY_FIELDS
from ufm_jax.sweep import SweepConfig, SweepConfigError, load_config, plan, run_sweep, to_csv
from ufm_jax.sweep import _plots
from ufm_jax.sweep._grid import history_bytes
from ufm_jax.solve._solve import MAX_HISTORY_BYTES

from _sweeps import TINY

# The shared tiny sweep (tests/_sweeps.py), unequal at every grid point (the minority metrics are NaN
# for balanced classes), recording every 3 iterations.
HISTORY = (TINY.replace('name = "tiny"', 'name = "tiny history"')
           .replace("ratio = [1, 4]", "ratio = [1.5, 4]")
           .replace("chunk_size = 2\n", "chunk_size = 2\nhistory = 3\n")
           .replace('metrics = ["minority_spread"]', 'metrics = ["minority_logit_spread", "gap", "nc1"]'))
assert HISTORY.count("history = 3") == 1 and "1.5" in HISTORY and "nc1" in HISTORY


def _config(text=HISTORY, **kw):
    return load_config(text=text, **kw)


@pytest.fixture(scope="module")
def history_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("history")
    result = run_sweep(_config(), output=out, progress=False)
    return out, result.dataset


def test_history_key_is_validated_and_in_the_fingerprint():
    with pytest.raises(SweepConfigError, match="run.history"):
        _config(HISTORY.replace("history = 3", "history = 0"))
    with pytest.raises(SweepConfigError, match="run.history"):
        _config(HISTORY.replace("history = 3", "history = 'often'"))
    # Recording changes what a chunk holds: another fingerprint (a folder of one refuses the other).
    without = _config(HISTORY.replace("history = 3\n", ""))
    assert _config().fingerprint() != without.fingerprint()
    assert _config(sets=["run.history=4"]).fingerprint() != _config().fingerprint()
    assert without.run.history is None


def test_dataset_holds_each_points_trajectory(history_run):
    out, ds = history_run
    axes = ("lam_z", "ratio")
    it = ds["history_iteration"]
    assert it.dims == (*axes, "record")
    for name in ("gap", *TRAJECTORY_FIELDS):
        assert ds[f"history_{name}"].dims == (*axes, "record"), name
    length = np.asarray(ds["history_length"])
    iterations = np.asarray(it)
    objective = np.asarray(ds["history_objective"])
    for idx in np.ndindex(*length.shape):
        n = int(length[idx])
        # Records at 0, K, 2K, ... and the last at the returned point; past the length: -1 and NaN.
        its = iterations[idx]
        assert its[0] == 0 and np.all(np.diff(its[:n]) > 0)
        assert np.all(its[: n - 1] % 3 == 0)
        assert np.all(its[n:] == -1) and np.all(np.isnan(objective[idx][n:]))
    # Points stop at different iterations: the record dimension is not one iteration coordinate.
    assert len({int(iterations[idx][int(length[idx]) - 1]) for idx in np.ndindex(*length.shape)}) > 1
    # The gap to theory at each record is (f − f*)/max(1, |f*|), as ufm_jax.check computes it: its
    # last record is the point's own gap up to the round-off of the recorded objective.
    theory = np.asarray(ds["theory_objective"])[..., None]
    np.testing.assert_allclose(ds["history_gap"], (objective - theory) / np.maximum(1, np.abs(theory)))
    last = np.take_along_axis(np.asarray(ds["history_gap"]), length[..., None] - 1, axis=-1)[..., 0]
    np.testing.assert_allclose(last, ds["gap"], atol=1e-12)
    # The CSV keeps one row per point and no trajectory columns.
    header = to_csv(ds).splitlines()[0]
    assert "history_length" in header and "history_objective" not in header
    assert (out / "figures" / "history_minority_logit_spread.png").is_file()
    assert (out / "figures" / "history_grad_norm.png").is_file()
    assert (out / "figures" / "history_gap.png").is_file()


def test_history_memory_caps_the_chunk_or_is_refused():
    cfg = _config(HISTORY.replace("chunk_size = 2", "chunk_size = 0").replace("history = 3", "history = 1"),
                  sets=["solver.max_steps=100000"])
    group = plan(cfg).groups[0]
    per_point, how = history_bytes(cfg, group.example)
    # A search solves up to 2 × 16 starts a point at once, each recording 100000/1 + 2 records of the
    # iteration and the 10 fields: 32 × 100002 × 11 × 8 bytes.
    assert per_point == 32 * 100_002 * 11 * 8 and "100002 records" in how
    assert group.chunk_size * per_point <= MAX_HISTORY_BYTES and group.chunk_size >= 1
    with pytest.raises(SweepConfigError, match=r"run.history=1: a chunk of run.chunk_size = 64"):
        plan(_config(HISTORY.replace("chunk_size = 2", "chunk_size = 64").replace("history = 3", "history = 1"),
                     sets=["solver.max_steps=100000"]))
    with pytest.raises(SweepConfigError, match=r"run.history=1: one point's trajectories need"):
        plan(_config(HISTORY.replace("history = 3", "history = 1"),
                     sets=["solver.max_steps=10000000", "solver.starts=64"]))


# ---- figures ------------------------------------------------------------------------------------------


def _draw(ds, metric, **kw):
    config = SweepConfig.from_json(ds.attrs["config_json"])
    x, y = _plots._choose_axes(ds, kw.get("x", config.plot.x), kw.get("y", config.plot.y))
    return _plots._figure(ds, metric, _plots.plot_kind(ds, metric), x, y, config)


def _texts(fig) -> str:
    out = [t.get_text() for t in fig.texts]
    for ax in fig.axes:
        out += [ax.get_title(), ax.get_xlabel(), ax.get_ylabel()]
        legend = ax.get_legend()
        if legend is not None:
            out += [t.get_text() for t in legend.get_texts()]
    return "\n".join(out)


def test_every_variable_draws_or_is_refused(history_run):
    _, ds = history_run
    kinds = {name: _plots._kind(ds, name) for name in ds.data_vars}
    # The only variable that does not draw is the trajectories' own x axis.
    assert [n for n, k in kinds.items() if k is None] == ["history_iteration"]
    assert kinds["mean_norms"] == "vector" and kinds["mean_cosines"] == "matrix"
    assert kinds["boundaries"] == "vector" and kinds["history_nc1"] == "history"
    for name in ("status", "status_name", "regime", "evidence", "reason", "certified", "confident"):
        assert kinds[name] == "category", name
    # One of each kind draws without an error (all of them: `ufm plot` in the README test's sweep).
    for name in ("gap", "mean_norms", "mean_cosines", "status", "regime", "history_gap"):
        _draw(ds, name)
    for bad in ("history_iteration", "lam_z", "nonsense"):
        with pytest.raises(ValueError, match=f"--metric '{bad}' .*variables that draw: .*mean_norms"):
            _plots.plot_kind(ds, bad)


def test_figures_name_theory_and_use_symbols(history_run):
    _, ds = history_run
    fig = _draw(ds, "minority_logit_spread")
    text = _texts(fig)
    assert "theory: minority collapse" in text
    assert r"$\lambda_Z" in text and "$n_A/n_B$" in text
    assert "lam_z" not in text and "ratio" not in text  # no config keys in titles and labels
    # A line plot (one axis left): the boundaries are legend entries that say "theory".
    fig = _draw(ds.isel(ratio=[1]), "mean_norms", y=None)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "mean_norms[0]" in labels and "theory: minority collapse" in labels
    # Categories: a legend of the names, no colour bar.
    fig = _draw(ds, "status_name")
    assert "converged" in _texts(fig)


def test_gap_is_symmetric_log_within_the_tolerance(history_run):
    _, ds = history_run
    scale = _plots._scale(ds, "gap", "number")
    assert isinstance(scale, SymLogNorm) and scale.linthresh == 1e-8 and scale.vmin == -scale.vmax
    assert "linear within ±1e-08" in _texts(_draw(ds, "gap"))
    assert isinstance(_plots._scale(ds, "history_gap", "number"), SymLogNorm)


def test_fractions_share_one_fixed_scale(history_run):
    _, ds = history_run
    scale = _plots._scale(ds, "hit_fraction", "number")
    assert isinstance(scale, Normalize) and (scale.vmin, scale.vmax) == (0.0, 1.0)
    # Every panel of a heat-map figure uses the same norm (deep_ce_basins: one panel per depth).
    ds3 = ds.expand_dims(copy=[0, 1]).transpose("copy", ...)
    ds3.attrs["axes"] = json.dumps(["copy", "lam_z", "ratio"])
    fig = _draw(ds3, "hit_fraction", x="lam_z", y="ratio")
    meshes = [ax.collections[0] for ax in fig.axes if ax.collections and ax.get_label() != "<colorbar>"]
    assert len(meshes) == 2 and all((m.norm.vmin, m.norm.vmax) == (0.0, 1.0) for m in meshes)


def test_nc1_figure_says_one_column_per_class_makes_it_zero(history_run):
    _, ds = history_run
    assert "0 by construction" in _texts(_draw(ds, "nc1"))
    assert "0 by construction" in _texts(_draw(ds, "history_nc1"))
    assert "0 by construction" not in _texts(_draw(ds, "objective"))


def test_history_figures(history_run):
    _, ds = history_run
    # Two axes: a heat map over λ_Z × iteration per value of the other axis.
    fig = _draw(ds, "history_minority_logit_spread")
    heat = [ax for ax in fig.axes if ax.get_xlabel() == "iteration"]
    assert len(heat) == 2 and "theory: minority collapse" in _texts(fig)
    # One axis: a line per point.
    fig = _draw(ds.isel(ratio=[1]), "history_objective", y=None)
    assert len(fig.axes[0].get_lines()) == ds.sizes["lam_z"]
    assert fig.axes[0].get_xlabel() == "iteration"
