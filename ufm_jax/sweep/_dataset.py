"""The sweep's dataset: an `xarray.Dataset` over the grid axes, saved as netCDF (h5netcdf) and CSV, and a
markdown report of every point that is not certified.

Results folder:

    <output>/
      dataset.nc       xarray Dataset: coordinates = axes; variables = objective, grad_norm, status, ...,
                       boundaries (over a `boundary` dimension whose coordinate holds the names); with
                       `[run] history = K`, the trajectories: history_<field> over a `record` dimension,
                       with history_iteration (the iteration of each record) and history_length
      results.csv      the same table, one row per point (vector variables as name[i] columns; the
                       trajectories are in dataset.nc only)
      config.toml      the validated config (axes expanded); also in dataset.attrs["config_toml"]
      config.json      the same as JSON;                       also in dataset.attrs["config_json"]
      report.md        the summary and every point that is not certified, with the reason
      figures/<metric>.png, .pdf
      chunks/*.npz     per-chunk results (what makes a rerun resume); run_log.json: timings
"""

from __future__ import annotations

import io
import itertools
import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from .. import __version__
from ..solve import Status
from ._config import SweepConfig
from ._files import DamagedFileError, Manifest, atomic_path

_SKIP = {"boundary_names", "flat", "fingerprint"}

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
    "evidence": "what the answer rests on: theorem | convex | search | none (ufm_jax.Evidence)",
    "confident": "theorem/convex: certified; search: enough starts agree and the Hessian check passed",
    "starts": "starts drawn for the point",
    "hits": "starts that reached the best value",
    "hit_fraction": "hits / starts: the share of starts whose basin holds the best value found",
    "minima": "distinct local-minimum values the starts found",
    "hessian_min_eig": "smallest Hessian eigenvalue off the symmetries at the returned point (no theory)",
    "unseen_mass": "Good-Turing estimate of the start mass leading to basins not seen",
    "seed_objectives": "every start's final objective (NaN: not drawn)",
    "seed_status": "every start's status code (-1: not drawn)",
    "history_length": "records of the point's trajectory ([run] history)",
    "history_iteration": "the iteration of each record (-1 past history_length): records at 0, K, 2K, ... "
                         "and the last at the returned point, so points stop at different iterations",
    "history_objective": "objective at each record",
    "history_grad_norm": "(projected) gradient norm at each record (balanced coordinates)",
    "history_gap": "(f - f*)/max(1, |f*|) at each record (NaN: no theory)",
}
for _name in ("nc1", "within_class_spread", "etf_distance", "orthogonal_frame_distance", "nc3",
              "nc3_directional", "minority_spread", "minority_logit_spread"):
    DESCRIPTIONS[f"history_{_name}"] = (f"{_name} at each record, in the representation solved (one column "
                                        "per class: NC1 and the within-class spread are 0 there)")

HISTORY_PREFIX = "history_"
"""Trajectory variables are `history_<field>` over the grid axes and a `record` dimension."""


def _extra_dims(name: str, ndim: int) -> tuple[str, ...]:
    if name.startswith(HISTORY_PREFIX) and ndim == 1:
        return ("record",)
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


class _Table:
    """One variable over the grid's flat positions, filled chunk by chunk; it widens when a later chunk
    has longer vectors (another group's K) or another dtype."""

    def __init__(self, size: int, a: np.ndarray):
        self.strings = a.dtype.kind in "US"
        self.data = self._empty(size, a.shape[1:], object if self.strings else a.dtype)

    @staticmethod
    def _empty(size, extra, dtype):
        fill = "" if dtype is object else _fill(np.dtype(dtype))
        out = np.empty((size, *extra), dtype=dtype)
        out[...] = fill
        return out

    def put(self, idx: np.ndarray, a: np.ndarray) -> None:
        extra = tuple(np.maximum(self.data.shape[1:], a.shape[1:])) if a.ndim > 1 else ()
        dtype = object if self.strings else np.result_type(self.data.dtype, a.dtype)
        if extra != self.data.shape[1:] or dtype != self.data.dtype:
            grown = self._empty(len(self.data), extra, dtype)
            grown[(slice(None), *(slice(0, s) for s in self.data.shape[1:]))] = self.data
            self.data = grown
        self.data[(idx, *(slice(0, s) for s in a.shape[1:]))] = a


def build_dataset(config: SweepConfig, chunks: Iterable[tuple[np.ndarray, dict]], *,
                  fingerprint: str | None = None, fingerprint_json: str | None = None) -> xr.Dataset:
    """Assemble the chunks' records into one Dataset over the grid (vectors padded with NaN).

    Chunks are consumed one at a time (an iterator of chunks read from disk holds one chunk in memory,
    beside the dataset's own arrays).

    **Arguments:**

    - `config`: the sweep.
    - `chunks`: `(flat positions of the chunk's points, their records)` for every chunk.
    - `fingerprint`, `fingerprint_json`: the sweep's fingerprint (`_store.fingerprint`), stored in the
      attributes (default: the config's own `fingerprint()`).
    """
    shape = tuple(len(v) for _, v in config.axes)
    size = int(np.prod(shape, dtype=int))
    dims = config.axis_names
    tables: dict[str, _Table] = {}
    boundary_names: dict[str, int] = {}
    for idx, rec in chunks:
        names = [str(n) for n in rec.get("boundary_names", ())]
        for name in names:
            boundary_names.setdefault(name, len(boundary_names))
        for name, a in rec.items():
            if name in _SKIP or name in dims:
                continue
            if name == "boundaries":
                # Re-index by the union of the names (first appearance first).
                table = np.full((len(a), len(boundary_names)), np.nan)
                for j, n in enumerate(names):
                    table[:, boundary_names[n]] = a[:, j]
                a = table
                if not boundary_names:
                    continue
            if name not in tables:
                tables[name] = _Table(size, a)
            tables[name].put(idx, a)
    data_vars = {}
    for name, t in tables.items():
        extra = t.data.shape[1:]
        out = t.data.reshape(shape + extra)
        data_vars[name] = (dims + _extra_dims(name, len(extra)), out.astype(str) if t.strings else out)
    coords = {name: _coordinate(values) for name, values in config.axes}
    if boundary_names:
        coords["boundary"] = np.asarray(list(boundary_names))
    attrs = {
        "title": config.name,
        "ufm_jax_version": __version__,
        "fingerprint": fingerprint or config.fingerprint(),
        "fingerprint_json": fingerprint_json or "{}",
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


def confident_searches(ds: xr.Dataset) -> int:
    """Points without a theory whose search is confident (`evidence == "search"` and `confident`)."""
    if "evidence" not in ds or "confident" not in ds:
        return 0
    return int(np.sum((np.asarray(ds["evidence"]) == "search") & np.asarray(ds["confident"]).astype(bool)))


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


# What the netCDF/HDF5 stack raises on a damaged file varies with the damage (an unreadable header, a
# bad B-tree node, a missing attribute): every one of these means "not a readable dataset".
_PARSE_ERRORS = (OSError, ValueError, KeyError, IndexError, TypeError, RuntimeError, EOFError)


def load_dataset(path: str | Path, *, verify: bool = True, data: bytes | None = None) -> xr.Dataset:
    """Read a sweep's dataset.nc into memory.

    With `verify`, a dataset listed in the `manifest.sha256` beside it must match its hash; `data`: the
    file's bytes, already read and verified by the caller (then nothing is read or hashed again).

    **Raises:** `DamagedFileError` (one line naming the file) when the bytes do not match, or the file
    is not a readable netCDF dataset; `FileNotFoundError` when it does not exist.
    """
    path = Path(path)
    source: str | Path | io.BytesIO = path if data is None else io.BytesIO(data)
    if verify and data is None:
        manifest = Manifest(path.parent)
        if path.name in manifest.entries:
            data, why = manifest.read(path.name)
            if why == "missing":
                raise FileNotFoundError(f"{path}: no such dataset.")
            if data is None:
                raise DamagedFileError(f"{path} is {why}: it does not match its checksum in "
                                       f"{manifest.path}.")
            source = io.BytesIO(data)
    if isinstance(source, Path) and not path.is_file():
        raise FileNotFoundError(f"{path}: no such dataset.")
    try:
        with xr.open_dataset(source, engine="h5netcdf") as ds:
            ds = ds.load()
    except _PARSE_ERRORS as e:
        raise DamagedFileError(f"{path} is not a readable dataset ({type(e).__name__}: {e}).") from None
    if "config_json" not in ds.attrs or "axes" not in ds.attrs:
        raise DamagedFileError(f"{path} is not a sweep dataset (no config_json or axes attribute).")
    return ds


def to_dataframe(ds: xr.Dataset) -> pd.DataFrame:
    """One row per grid point, indexed by the axis values; a vector variable becomes one column per
    entry, `name[i]` (`name[label]` along a labelled dimension such as `boundary`). Trajectories (over
    `record`) are left out: a row holds a point's result, not its path."""
    dims = axes(ds)
    rows = int(np.prod([ds.sizes[d] for d in dims], dtype=int))
    columns = {}
    for name, var in ds.data_vars.items():
        extra = var.dims[len(dims):]
        if "record" in extra:
            continue
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


def _weak_evidence(ds: xr.Dataset, dims: list[str]) -> list[str]:
    """The points whose evidence is weak: neither certified nor a confident search."""
    if "evidence" not in ds:
        return []
    confident = np.asarray(ds["confident"]).astype(bool)
    weak = [idx for idx in np.ndindex(*confident.shape) if not confident[idx]]
    if not weak:
        return ["Every point's evidence is strong (certified, or a confident search).", ""]
    cols = [x for x in ("evidence", "objective", "starts", "hits", "minima", "unseen_mass", "hessian_min_eig")
            if x in ds]
    lines = ["## Weak evidence", "",
             f"{len(weak)} points are neither certified nor backed by a confident search "
             "(`ufm_jax.Evidence`): a theory's minimum not reached, or too few starts agree, or unseen "
             "basins may remain, or the Hessian check did not pass.", "",
             "| " + " | ".join(dims + cols) + " |", "|" + "---|" * (len(dims) + len(cols))]
    for idx in weak:
        cells = [_show(ds[d].values[i]) for d, i in zip(dims, idx)]
        cells += [_show(np.asarray(ds[x])[idx]) for x in cols]
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def report(ds: xr.Dataset) -> str:
    """Markdown: the summary, then every point that is not certified and why."""
    dims = axes(ds)
    c, nc, f = count(ds)
    total = c + nc + f
    lines = [f"# {ds.attrs.get('title', 'sweep')}", "",
             f"ufm_jax {ds.attrs.get('ufm_jax_version')}, axes: {', '.join(dims) or '(none)'}.", "",
             f"**{total} points: {c} certified, {nc} not certified, {f} failed** "
             "(failed: the solver did not converge).", ""]
    confident = confident_searches(ds)
    if confident:
        lines[-2] += (f" {confident} of the not certified have no theory and a confident search (enough "
                      "starts agree, the Hessian check passed).")
    lines += _weak_evidence(ds, dims)
    status = np.asarray(ds["status"])
    cert = np.asarray(ds["certified"]).astype(bool) if "certified" in ds else np.zeros(status.shape, bool)
    bad = [idx for idx in np.ndindex(*status.shape) if not (cert[idx] and status[idx] == Status.converged)]
    if not bad:
        lines.append("Every point is certified.")
        return "\n".join(lines) + "\n"
    lines += ["## Not certified", ""]
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
