"""Sweeps answer every point with the adaptive search and store its evidence (issue 9)."""

import numpy as np
import pytest

from ufm_jax.sweep import load_config, run_sweep

GRID = """
name = "evidence"
[problem]
family = "ce"
dim = 4
k_a = 2
k_b = 2
n_b = 5
per_class = 1
[grid]
depth = [1, 2]
lam_z = [0.003, 0.01]
ratio = [4]
"""


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    folder = tmp_path_factory.mktemp("evidence")
    config = folder / "cfg.toml"
    config.write_text(GRID)
    # A small search budget keeps the test fast: 16 starts, 3 must agree.
    cfg = load_config(config, sets=["solver.max_starts=16"])
    return run_sweep(cfg, output=folder / "out", progress=False, figures=True)


def test_each_point_stores_its_evidence(swept):
    ds = swept.dataset
    for name in ("evidence", "confident", "starts", "hits", "hit_fraction", "minima", "hessian_min_eig"):
        assert name in ds, name
    one, deep = ds.sel(depth=1), ds.sel(depth=2)
    # Depth 1: Hong & Ling's closed form certifies the first start; nothing more is drawn.
    assert set(np.asarray(one["evidence"]).ravel()) == {"theorem"}
    assert np.all(np.asarray(one["starts"]) == 1) and np.all(np.asarray(one["certified"]))
    # Depth 2: no theory; the search drew its budget, and its statistics are stored per point.
    assert set(np.asarray(deep["evidence"]).ravel()) == {"search"}
    assert not np.any(np.asarray(deep["certified"]))
    assert np.all(np.asarray(deep["starts"]) == 16)
    hits, starts = np.asarray(deep["hits"]), np.asarray(deep["starts"])
    np.testing.assert_allclose(np.asarray(deep["hit_fraction"]), hits / starts)
    assert np.all(np.isfinite(np.asarray(deep["hessian_min_eig"])))
    # Each point's starts: drawn ones have a status; the seed arrays are as wide as the most drawn.
    assert np.asarray(ds["seed_status"]).shape[-1] == 16


def test_the_report_lists_weak_evidence_and_the_basin_figure_is_drawn(swept):
    text = (swept.output / "report.md").read_text()
    # 16 starts are fewer than the 59 a confident search needs: every depth-2 point is weak evidence.
    weak = text.split("## Weak evidence")[1].split("\n## ")[0]
    rows = [line for line in weak.splitlines() if line.startswith("| 2 |")]
    assert len(rows) == 2 and all("| search |" in row for row in rows), weak
    assert (swept.output / "figures" / "hit_fraction.png").is_file()
    assert swept.summary().startswith("4 points: 2 certified, 2 not certified, 0 failed")
