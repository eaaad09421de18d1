"""The sweep's dataset: an `xarray.Dataset` over the grid axes, saved as netCDF (h5netcdf) and CSV, and a
markdown report of every point that is not certified.

Results folder:

    <output>/
      dataset.nc       xarray Dataset: coordinates = axes; variables = objective, grad_norm, status, ...,
                       boundaries (over a `boundary` dimension whose coordinate holds the names)
      results.csv      the same table, one row per point (vector variables as name[i] columns)
      config.toml      the validated config (axes expanded); also in dataset.attrs["config_toml"]
      config.json      the same as JSON;                       also in dataset.attrs["config_json"]
      report.md        the summary and every point that is not certified, with the reason
      figures/<metric>.png, .pdf
      chunks/*.npz     per-chunk results (what makes a rerun resume); run_log.json: timings
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from .. import __version__
from ..solve import Status
from ._config import SweepConfig
from ._files import atomic_path

_SKIP = {"point_key", "boundary_names"}

DESCRIPTIONS = {
    "objective": "best objective over the random starts",
    "grad_norm": "(projected) gradient norm in balanced coordinates",
    "status": "solver status code; names in attrs status_names",
    "theory_objective": "analytic global minimum (NaN: no theory)",
    "gap": "relative objective gap to the theory",
    "certified": "the point is certified a global minimum by ufm_jax.check",
    "minority_spread": "spread of the minority class means over the largest mean (0: minority collapse)",
    "minority_logit_spread": "absolute spread of the minority classes' mean logits (0: minority collapse)",
    "mean_norms": "class-mean norms |h_k|",
    "dead_classes": "classes whose mean norm is <= 1e-6 of the largest",
    "boundaries": "the theory's phase boundaries of the point's problem (ufm_jax.phase_boundaries), in "
                  "lam_z units along its (lam_w, lam_h) ray; NaN: the point has no such boundary",
}


def _extra_dims(name: str, ndim: int) -> tuple[str, ...]:
    if name in ("seed_objectives", "seed_status"):
        return ("start",)
    if name == "mean_norms":
        return ("class",)
    if name == "mean_cosines":
        return ("class", "class_2")
    if name == "boundaries":
        return ("boundary",)
    if ndim == 1:
        return (f"{name}_index",)
    return tuple(f"{name}_dim{k}" for k in range(ndim))


def _fill(dtype: np.dtype):
    if dtype.kind == "f":
        return np.nan
    if dtype.kind in "iu":
        return -1
    if dtype.kind == "b":
        return False
    return ""


def _coordinate(values: tuple) -> np.ndarray:
    if isinstance(values[0], tuple):
        return np.asarray([json.dumps(list(v)) for v in values])
    return np.asarray(values)


def _boundary_table(chunks: list[tuple[np.ndarray, dict]]) -> tuple[list[str], list[np.ndarray]]:
    """Every chunk's `boundaries` re-indexed by the union of the names (first appearance first)."""
    names = list(dict.fromkeys(str(n) for _, rec in chunks for n in rec["boundary_names"]))
    column = {name: j for j, name in enumerate(names)}
    tables = []
    for _, rec in chunks:
        table = np.full((len(rec["boundaries"]), len(names)), np.nan)
        for j, name in enumerate(rec["boundary_names"]):
            table[:, column[str(name)]] = rec["boundaries"][:, j]
        tables.append(table)
    return names, tables


def build_dataset(config: SweepConfig, chunks: list[tuple[np.ndarray, dict]]) -> xr.Dataset:
    """Assemble the chunks' records into one Dataset over the grid (vectors padded with NaN).

    **Arguments:**

    - `config`: the sweep.
    - `chunks`: `(flat positions of the chunk's points, their records)` for every chunk.
    """
    shape = tuple(len(v) for _, v in config.axes)
    size = int(np.prod(shape, dtype=int))
    dims = config.axis_names
    names, boundaries = _boundary_table(chunks)
    chunks = [(idx, {**rec, "boundaries": table}) for (idx, rec), table in zip(chunks, boundaries)]
    data_vars = {}
    for name in dict.fromkeys(k for _, rec in chunks for k in rec):
        if name in _SKIP or name in dims or (name == "boundaries" and not names):
            continue
        parts = [(idx, rec[name]) for idx, rec in chunks if name in rec]
        strings = parts[0][1].dtype.kind in "US"
        extra = tuple(np.max([a.shape[1:] for _, a in parts], axis=0)) if parts[0][1].ndim > 1 else ()
        if strings:
            out = np.full((size, *extra), "", dtype=object)
        else:
            dtype = np.result_type(*[a.dtype for _, a in parts])
            out = np.full((size, *extra), _fill(dtype), dtype=dtype)
        for idx, a in parts:
            out[(idx, *(slice(0, s) for s in a.shape[1:]))] = a
        out = out.reshape(shape + extra)
        data_vars[name] = (dims + _extra_dims(name, len(extra)), out.astype(str) if strings else out)
    coords = {name: _coordinate(values) for name, values in config.axes}
    if names:
        coords["boundary"] = np.asarray(names)
    attrs = {
        "title": config.name,
        "ufm_jax_version": __version__,
        "fingerprint": config.fingerprint(),
        "config_toml": config.to_toml(),
        "config_json": config.to_json(),
        "status_names": json.dumps([s.name for s in Status]),
        "axes": json.dumps(list(dims)),
    }
    ds = xr.Dataset(data_vars, coords=coords, attrs=attrs)
    for name, text in DESCRIPTIONS.items():
        if name in ds:
            ds[name].attrs["description"] = text
    return ds


def axes(ds: xr.Dataset) -> list[str]:
    """The grid axes of a sweep dataset, in order."""
    return json.loads(ds.attrs["axes"])


def count(ds: xr.Dataset) -> tuple[int, int, int]:
    """(certified, not certified, failed): failed = the solver did not converge."""
    status = np.asarray(ds["status"]).ravel()
    failed = status != Status.converged
    cert = np.asarray(ds["certified"]).ravel().astype(bool) if "certified" in ds else np.zeros_like(failed)
    certified = int(np.sum(cert & ~failed))
    return certified, int(status.size - certified - failed.sum()), int(failed.sum())


def save_dataset(ds: xr.Dataset, path: str | Path) -> None:
    """netCDF-4 via h5netcdf, written atomically (bools are stored as int8 and read back as bool)."""
    with atomic_path(path) as tmp:
        ds.to_netcdf(tmp, engine="h5netcdf")


def load_dataset(path: str | Path) -> xr.Dataset:
    """Read a sweep's dataset.nc into memory."""
    with xr.open_dataset(path, engine="h5netcdf") as ds:
        return ds.load()


def to_dataframe(ds: xr.Dataset) -> pd.DataFrame:
    """One row per grid point, indexed by the axis values; a vector variable becomes one column per
    entry, `name[i]` (`name[label]` along a labelled dimension such as `boundary`)."""
    dims = axes(ds)
    rows = int(np.prod([ds.sizes[d] for d in dims], dtype=int))
    columns = {}
    for name, var in ds.data_vars.items():
        extra = var.dims[len(dims):]
        values = np.asarray(var.transpose(*dims, *extra)).reshape(rows, -1)
        if not extra:
            columns[name] = values[:, 0]
            continue
        labels = [ds[e].values if e in ds.coords else range(ds.sizes[e]) for e in extra]
        for j, entry in enumerate(itertools.product(*labels)):
            columns[f"{name}[{','.join(map(str, entry))}]"] = values[:, j]
    index = pd.MultiIndex.from_product([ds[d].values for d in dims], names=dims) if dims else None
    return pd.DataFrame(columns, index=index)


def to_csv(ds: xr.Dataset) -> str:
    """`to_dataframe(ds)` as CSV: axis values first, then every variable."""
    return to_dataframe(ds).to_csv(index=bool(axes(ds)))


def _show(v) -> str:
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.6g}"
    return str(v)


def report(ds: xr.Dataset) -> str:
    """Markdown: the summary, then every point that is not certified and why."""
    dims = axes(ds)
    c, nc, f = count(ds)
    total = c + nc + f
    lines = [f"# {ds.attrs.get('title', 'sweep')}", "",
             f"ufm_jax {ds.attrs.get('ufm_jax_version')}, axes: {', '.join(dims) or '(none)'}.", "",
             f"**{total} points: {c} certified, {nc} not certified, {f} failed** "
             "(failed: the solver did not converge).", ""]
    status = np.asarray(ds["status"])
    cert = np.asarray(ds["certified"]).astype(bool) if "certified" in ds else np.zeros(status.shape, bool)
    bad = [idx for idx in np.ndindex(*status.shape) if not (cert[idx] and status[idx] == Status.converged)]
    if not bad:
        lines.append("Every point is certified.")
        return "\n".join(lines) + "\n"
    cols = [x for x in ("status", "objective", "theory_objective", "gap", "grad_norm", "regime", "reason")
            if x in ds]
    lines.append("| " + " | ".join(dims + cols) + " |")
    lines.append("|" + "---|" * (len(dims) + len(cols)))
    for idx in bad:
        cells = [_show(ds[d].values[i]) for d, i in zip(dims, idx)]
        for x in cols:
            v = np.asarray(ds[x])[idx]
            if x == "status":
                v = Status(int(v)).name
            elif isinstance(v, (float, np.floating)):
                v = f"{float(v):.3g}"
            cells.append(str(v).replace("|", "\\|").replace("\n", " ") or "—")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
