"""The sweep's dataset: an `xarray.Dataset` over the grid axes, saved as netCDF (h5netcdf) and CSV, and a
markdown report of every point that is not certified.

Results folder:

    <output>/
      dataset.nc       xarray Dataset: coordinates = axes; variables = objective, grad_norm, status, ...
      results.csv      the same table, one row per point (vector variables as name[i] columns)
      config.toml      the validated config (axes expanded); also in dataset.attrs["config_toml"]
      config.json      the same as JSON;                       also in dataset.attrs["config_json"]
      report.md        the summary and every point that is not certified, with the reason
      figures/<metric>.png, .pdf
      chunks/*.npz     per-chunk results (what makes a rerun resume); run_log.json: timings
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import xarray as xr

from .. import __version__
from ..solve import Status
from ._config import SweepConfig
from ._runner import atomic_write

_SKIP = {"point_key"}


def _extra_dims(name: str, ndim: int) -> tuple[str, ...]:
    if name in ("seed_objectives", "seed_status"):
        return ("start",)
    if name == "mean_norms":
        return ("class",)
    if name == "mean_cosines":
        return ("class", "class_2")
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


def build_dataset(config: SweepConfig, points, records: list[dict], chunks: list) -> xr.Dataset:
    """Assemble the chunks' records into one Dataset over the grid (vectors padded with NaN)."""
    shape = tuple(len(v) for _, v in config.axes)
    dims = config.axis_names
    where = {}
    for rec, chunk in zip(records, chunks):
        for i, p in enumerate(chunk):
            if str(rec["point_key"][i]) != p.key:
                raise RuntimeError(f"chunk results do not match point {p.values}: delete the chunks folder.")
            where[p.index] = (rec, i)
    names = list(dict.fromkeys(k for rec in records for k in rec if k not in _SKIP and k not in dims))
    data_vars = {}
    for name in names:
        arrays = [rec[name] for rec in records if name in rec]
        dtype = np.result_type(*[a.dtype for a in arrays]) if arrays[0].dtype.kind not in "US" else str
        extra = tuple(np.max([a.shape[1:] for a in arrays], axis=0)) if arrays[0].ndim > 1 else ()
        if dtype is str:
            out = np.full(shape + extra, "", dtype=object)
        else:
            out = np.full(shape + extra, _fill(np.dtype(dtype)), dtype=dtype)
        for index, (rec, i) in where.items():
            if name not in rec:
                continue
            value = rec[name][i]
            out[index + tuple(slice(0, s) for s in np.shape(value))] = value
        if dtype is str:
            out = out.astype(str)
        data_vars[name] = (dims + _extra_dims(name, len(extra)), out)
    coords = {name: _coordinate(values) for name, values in config.axes}
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
    descriptions = {
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
    }
    for name, text in descriptions.items():
        if name in ds:
            ds[name].attrs["description"] = text
    return ds


def count(ds: xr.Dataset) -> tuple[int, int, int]:
    """(certified, not certified, failed): failed = the solver did not converge."""
    status = np.asarray(ds["status"]).ravel()
    failed = status != Status.converged
    cert = np.asarray(ds["certified"]).ravel().astype(bool) if "certified" in ds else np.zeros_like(failed)
    certified = int(np.sum(cert & ~failed))
    return certified, int(status.size - certified - failed.sum()), int(failed.sum())


def _engine() -> str:
    """h5netcdf (needs h5py); the netCDF4 library when h5py is missing. Both write netCDF-4/HDF5."""
    try:
        import h5py  # noqa: F401

        return "h5netcdf"
    except ImportError:
        return "netcdf4"


def save_dataset(ds: xr.Dataset, path: Path) -> None:
    """netCDF-4 via h5netcdf, written atomically (bools are stored as int8 and read back as bool)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        ds.to_netcdf(tmp, engine=_engine())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def load_dataset(path: str | Path) -> xr.Dataset:
    """Read a sweep's dataset.nc into memory."""
    with xr.open_dataset(path, engine=_engine()) as ds:
        return ds.load()


def _cell(v) -> str:
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    if isinstance(v, (float, np.floating)):
        return repr(float(v))
    return str(v)


def to_csv(ds: xr.Dataset) -> str:
    """One row per grid point: axis values, then every variable (vectors flattened to `name[i]`)."""
    dims = json.loads(ds.attrs["axes"])
    shape = tuple(ds.sizes[d] for d in dims)
    header = list(dims)
    columns = []
    for name, var in ds.data_vars.items():
        extra = var.dims[len(dims):]
        values = np.asarray(var.transpose(*dims, *extra))
        values = values.reshape(int(np.prod(shape, dtype=int)), -1) if extra else values.reshape(-1, 1)
        if extra:
            labels = [f"{name}[{','.join(map(str, idx))}]"
                      for idx in np.ndindex(*[ds.sizes[e] for e in extra])]
        else:
            labels = [name]
        header += labels
        columns.append(values)
    buf = io.StringIO()
    import csv

    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for row, index in enumerate(np.ndindex(*shape)):
        cells = [_cell(ds[d].values[i]) for d, i in zip(dims, index)]
        for values in columns:
            cells += [_cell(v) for v in values[row]]
        w.writerow(cells)
    return buf.getvalue()


def report(ds: xr.Dataset) -> str:
    """Markdown: the summary, then every point that is not certified and why."""
    dims = json.loads(ds.attrs["axes"])
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
    cols = ["status", "objective", "theory_objective", "gap", "grad_norm", "regime", "reason"]
    cols = [x for x in cols if x in ds]
    lines.append("| " + " | ".join(dims + cols) + " |")
    lines.append("|" + "---|" * (len(dims) + len(cols)))
    for idx in bad:
        cells = [_cell(ds[d].values[i]) for d, i in zip(dims, idx)]
        for x in cols:
            v = np.asarray(ds[x])[idx]
            if x == "status":
                v = Status(int(v)).name
            elif isinstance(v, (float, np.floating)):
                v = f"{float(v):.3g}"
            cells.append(str(v).replace("|", "\\|").replace("\n", " ") or "—")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_outputs(ds: xr.Dataset, config: SweepConfig, out: Path, *, figures: bool = True) -> None:
    """dataset.nc, results.csv, report.md and the figures (the config copies are written at the start)."""
    out = Path(out)
    atomic_write(out / "results.csv", to_csv(ds))
    atomic_write(out / "report.md", report(ds))
    if figures:
        from ._plots import plot_dataset

        plot_dataset(ds, out / "figures")
    # Written last: its presence (with a matching fingerprint) marks the sweep as complete.
    save_dataset(ds, out / "dataset.nc")
