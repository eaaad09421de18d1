"""The sweep commands (`ufm sweep`, `ufm plot`, `ufm threshold`): what goes to stdout and stderr, what is
refused before any work, and the start-up time of `ufm solve`.

The sweeps have the shapes of `test_sweep.py` (CE, K = 4, d = 3, one weighted column per class).
"""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from _sweeps import TINY as BASE_TINY
from ufm_jax.cli import app
from ufm_jax.sweep import _plots, _threshold, find_threshold, load_config

ROOT = Path(__file__).resolve().parents[1]

TINY = BASE_TINY + """[threshold]
lo = 0.01
hi = 0.04
rtol = 0.05
metric = "minority_spread"
"""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    config = folder / "tiny.toml"
    config.write_text(TINY)
    return config


def _invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_sweep_output_quiet_and_plain_progress(tiny, tmp_path):
    # stderr is not a terminal here: one plain line per chunk (no bar, no escape codes); stdout holds the
    # summary line only.
    res = _invoke("sweep", tiny, "--out", tmp_path / "a")
    assert res.exit_code == 0, res.output
    assert res.stdout.splitlines() == [line for line in res.stdout.splitlines() if "6 points:" in line]
    assert len(res.stdout.splitlines()) == 1
    progress = [line for line in res.stderr.splitlines() if "/6 points," in line]
    assert [line.split(": ")[1].split(" points")[0] for line in progress] == ["2/6", "4/6", "6/6"]
    assert all("elapsed, about" in line and "left" in line for line in progress)
    assert "\x1b" not in res.stderr and "━" not in res.stderr
    # -q hides the plan line and the progress, never the summary line.
    res = _invoke("sweep", tiny, "--out", tmp_path / "b", "-q")
    assert res.exit_code == 0, res.output
    assert res.stderr == "" and "6 points:" in res.stdout


def test_plot_draws_every_kind_and_refuses_before_drawing(tiny, tmp_path, monkeypatch):
    out = tmp_path / "res"
    assert _invoke("sweep", tiny, "--out", out, "-q", "--no-figures").exit_code == 0
    res = _invoke("plot", out, "-m", "mean_cosines", "-m", "regime", "-m", "status_name", "-m", "evidence",
                  "-m", "mean_norms", "-m", "certified")
    assert res.exit_code == 0, res.output
    for name in ("mean_cosines", "regime", "status_name", "evidence", "mean_norms", "certified"):
        assert (out / "figures" / f"{name}.png").is_file(), name
    drawn = []
    monkeypatch.setattr(_plots, "plot_dataset", lambda *a, **k: drawn.append(1))
    for bad in ("lam_z", "nonsense"):
        res = _invoke("plot", out, "-m", "objective", "-m", bad)
        assert res.exit_code == 2 and not drawn
        [line] = res.stderr.splitlines()
        assert f"--metric {bad!r}" in line and "variables that draw:" in line and "mean_norms" in line


def test_threshold_refuses_before_solving(tiny, monkeypatch):
    def no_solve(*args, **kwargs):
        raise AssertionError("solved before the arguments were checked")

    monkeypatch.setattr(_threshold, "solve_points", no_solve)
    for args, message in [
        (["--boundary", "foo"], "threshold.boundary='foo': expected one of ['minority collapse', "),
        (["--metric", "mean_cosines"], "threshold.metric='mean_cosines': a 4 x 4 matrix per point"),
        (["--metric", "mean_norms[4]"], "mean_norms has 4 components (0..3)"),
        (["--metric", "nc1[0]"], "nc1 is a number per point, without components"),
        (["--metric", "bogus"], "'bogus': not a metric; expected one of a number per point (dead_classes"),
    ]:
        res = _invoke("threshold", tiny, "--along", "lam_z", "--axis", "ratio=4", *args)
        assert res.exit_code == 2, res.output
        [line] = res.stderr.splitlines()
        assert message in line, line
    res = _invoke("threshold", tiny, "--along", "lam_z")
    assert res.exit_code == 2 and "grid.ratio: " in res.stderr and "--axis ratio=VALUE" in res.stderr
    # An axis the config's rules refuse beside the others: lam_w next to lam_z; n_a as a third size key.
    for args, message in [
        (["--along", "lam_w", "--lo", "1e-3", "--hi", "1e-1", "--axis", "ratio=4"], "threshold along lam_w: "),
        (["--along", "n_a", "--lo", "20", "--hi", "200", "--axis", "ratio=4"], "threshold along n_a: grid.ratio"),
    ]:
        res = _invoke("threshold", tiny, *args)
        assert res.exit_code == 2 and message in res.stderr, res.output


def test_threshold_prints_progress_with_eta(tiny):
    res = _invoke("threshold", tiny, "--along", "lam_z", "--axis", "ratio=4")
    assert res.exit_code == 0, res.output
    lines = res.stderr.splitlines()
    # 2 ends and ceil(log2(log(4)/log(1.05))) = 5 midpoints.
    assert lines[0].startswith("  [1/7] lam_z = 0.01: ") and lines[-1].startswith("  [7/7] lam_z = ")
    assert all(" s left" in line for line in lines)
    assert res.stdout.startswith("lam_z* = ")
    assert "left" not in _invoke("threshold", tiny, "--along", "lam_z", "--axis", "ratio=4", "-q").stderr


def test_threshold_bisects_a_vector_component():
    # r = 4, n_B = 10, N = 100 (Hong & Ling Thm 3.2): the minority means (classes 2, 3) reach zero at
    # the "minority zero" boundary, between minority collapse √n_B/N and complete collapse √n_A/N.
    cfg = load_config(text=TINY.replace("ratio = [1, 4]", "ratio = [4]")).without_axis("lam_z")
    result = find_threshold(cfg, axis="lam_z", lo=0.02, hi=0.1, metric="mean_norms[3]", level=1e-6,
                            rtol=1e-2, boundary="minority zero")
    assert result.boundary == "minority zero"
    assert np.sqrt(10) / 100 < result.theory < np.sqrt(40) / 100
    assert result.value == pytest.approx(result.theory, rel=2e-2)
    assert [v > 1e-6 for _, v, _ in result.evaluations[:2]] == [True, False]


def test_import_of_the_cli_leaves_out_the_sweep_stack():
    # `ufm solve` starts faster: the sweep commands import xarray, pandas, matplotlib and pydantic in
    # their bodies.
    code = ("import sys, ufm_jax.cli; print(sorted(m for m in ('xarray', 'pandas', 'matplotlib', 'pydantic', "
            "'ufm_jax.sweep') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

