"""Figures of a sweep: heat maps or line plots of chosen metrics, with the theory's phase boundaries.

Boundaries come from `ufm_jax.theory.phase_boundaries`, converted to `λ_Z = √(λ_Wλ_H)` along the sweep's
ray `λ_W/λ_H = lam_ratio`: minority and complete collapse (`√n_B/N`, `√n_A/N`) and the (b)/(c) switch for
two-cluster CE; the class-vanishing `λ` for deep-linear MSE; the dying directions for MSE with a free bias;
the dead-class `√(λ_Wλ_H)` for ReLU CE. On a `lam_z` axis they are drawn as lines (line plots) or curves
(heat maps); along another axis (e.g. `n_a` at fixed `λ_Z`) a line is drawn where a boundary crosses the
point's `λ_Z`.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np

from .._families import phase_boundaries
from .._problem import make_problem
from ._config import AXES, validate
from ._grid import expand

_LOG_AXES = {"lam_w", "lam_h", "lam_b", "lam_z", "lam_ratio", "ratio", "n_a", "n_b", "n_total"}
_FALLBACK_METRICS = ("minority_logit_spread", "nc1", "gap", "mean_norms")


def boundaries(spec: dict) -> dict[str, float]:
    """The theory's phase boundaries of one point's family, in `λ_Z` units (empty if none applies)."""
    problem = make_problem(spec["loss"], spec["class_sizes"], spec["dim"], lam_w=spec["lam_w"],
                           lam_h=spec["lam_h"], lam_b=spec["lam_b"], free_bias=spec["free_bias"],
                           widths=spec["widths"], nonneg=spec["nonneg"], per_class=1)
    return phase_boundaries(problem)


def _specs(ds) -> tuple[dict, list]:
    config = validate(json.loads(ds.attrs["config_json"]))
    return {p.index: p.spec for p in expand(config)}, config


def _numeric(ds, axis: str) -> np.ndarray:
    values = ds[axis].values
    if values.dtype.kind in "iuf":
        return values.astype(np.float64)
    return np.arange(values.size, dtype=np.float64)


def _is_log(ds, axis: str) -> bool:
    v = _numeric(ds, axis)
    return axis in _LOG_AXES and v.size > 1 and np.all(v > 0) and v.max() / v.min() > 10


def _edges(v: np.ndarray, log: bool) -> np.ndarray:
    if v.size == 1:
        return np.array([v[0] * 0.9, v[0] * 1.1]) if log else np.array([v[0] - 0.5, v[0] + 0.5])
    w = np.log(v) if log else v
    mid = (w[1:] + w[:-1]) / 2
    e = np.concatenate([[w[0] - (mid[0] - w[0])], mid, [w[-1] + (w[-1] - mid[-1])]])
    return np.exp(e) if log else e


def _label(name: str) -> str:
    return {"lam_z": "λ_Z = √(λ_W λ_H)", "lam_w": "λ_W", "lam_h": "λ_H", "lam_b": "λ_b",
            "ratio": "r = n_A/n_B", "n_a": "n_A", "n_b": "n_B", "n_total": "N"}.get(name, name)


def _choose_axes(ds, plot: dict) -> tuple[str | None, str | None]:
    dims = json.loads(ds.attrs["axes"])
    multi = [d for d in dims if ds.sizes[d] > 1]
    x = plot.get("x") or (multi[0] if multi else (dims[0] if dims else None))
    rest = [d for d in multi if d != x and d != "seed"]
    y = plot.get("y") or (rest[0] if rest and ds[rest[0]].values.dtype.kind in "iuf" else None)
    return x, y


def plot_dataset(ds, folder: str | Path, metrics: list[str] | None = None) -> list[Path]:
    """Draw one figure per metric into `folder` (formats from the config's `plot.formats`).

    **Returns:** the files written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ._runner import atomic_write

    folder = Path(folder)
    specs, config = _specs(ds)
    plot = config.plot
    if metrics is None:
        metrics = plot.get("metrics") or [m for m in _FALLBACK_METRICS if m in ds]
    metrics = [m for m in metrics if m in ds]
    x, y = _choose_axes(ds, plot)
    written = []
    for metric in metrics:
        fig = _figure(ds, metric, x, y, specs, config, plt)
        for fmt in plot["formats"]:
            import io

            buf = io.BytesIO()
            fig.savefig(buf, format=fmt, dpi=120, bbox_inches="tight", metadata=_metadata(fmt))
            path = folder / f"{metric}.{fmt}"
            atomic_write(path, buf.getvalue())
            written.append(path)
        plt.close(fig)
    return written


def _metadata(fmt: str) -> dict:
    # Fixed metadata, so that redrawing gives the same file bytes.
    if fmt == "pdf":
        return {"CreationDate": None, "ModDate": None, "Creator": "ufm_jax"}
    if fmt == "svg":
        return {"Date": None}
    return {"Software": "ufm_jax"}


def _others(ds, dims, used):
    rest = [d for d in dims if d not in used]
    return rest, list(np.ndindex(*[ds.sizes[d] for d in rest])) if rest else [()]


def _figure(ds, metric, x, y, specs, config, plt):
    dims = json.loads(ds.attrs["axes"])
    var = ds[metric]
    extra = var.dims[len(dims):]
    vector = len(extra) == 1
    heat = y is not None and not vector and not extra
    used = [a for a in (x, y if heat else None) if a is not None]
    rest, combos = _others(ds, dims, used)
    if not heat and not vector and rest:
        panels = [()]  # line plot: one line per combination of the other axes
    else:
        panels = combos[:12]
    ncols = min(3, len(panels))
    nrows = -(-len(panels) // ncols)
    fig, axs = plt.subplots(nrows, ncols, figsize=(5.2 * ncols, 3.9 * nrows), squeeze=False)
    for k, combo in enumerate(panels):
        ax = axs[k // ncols][k % ncols]
        sel = dict(zip(rest, combo))
        title = ", ".join(f"{_label(d)}={_fmt(ds[d].values[i])}" for d, i in sel.items())
        if heat:
            _heat(ds, var, metric, x, y, sel, dims, specs, ax, fig)
        elif x is None:
            ax.text(0.5, 0.5, f"{metric} = {np.asarray(var).ravel()[0]:.4g}", ha="center")
        else:
            lines = combos[:12] if not vector else [combo]
            _lines(ds, var, metric, x, rest, lines, vector, dims, specs, ax)
            if not vector:
                title = ""
        ax.set_title(title, fontsize=9)
    for k in range(len(panels), nrows * ncols):
        axs[k // ncols][k % ncols].axis("off")
    fig.suptitle(f"{config.name}: {metric}", fontsize=11)
    fig.tight_layout()
    return fig


def _fmt(v) -> str:
    return f"{v:.3g}" if isinstance(v, (float, np.floating)) else str(v)


def _index(dims, sel_idx: dict) -> tuple:
    return tuple(sel_idx[d] for d in dims)


def _heat(ds, var, metric, x, y, sel, dims, specs, ax, fig):
    from matplotlib.colors import LogNorm

    sub = var.isel(sel).transpose(y, x)
    z = np.asarray(sub, dtype=np.float64)
    xv, yv = _numeric(ds, x), _numeric(ds, y)
    lx, ly = _is_log(ds, x), _is_log(ds, y)
    pos = z[np.isfinite(z) & (z > 0)]
    norm = None
    if pos.size and np.nanmin(z) >= 0 and pos.max() / pos.min() > 1e3:
        z = np.where(z > 0, z, pos.min())
        norm = LogNorm(vmin=max(pos.min(), pos.max() * 1e-12), vmax=pos.max())
    mesh = ax.pcolormesh(_edges(xv, lx), _edges(yv, ly), np.ma.masked_invalid(z), norm=norm,
                         shading="flat", cmap="viridis")
    fig.colorbar(mesh, ax=ax, label=metric)
    if lx:
        ax.set_xscale("log")
    if ly:
        ax.set_yscale("log")
    ax.set_xlabel(_label(x))
    ax.set_ylabel(_label(y))
    if "lam_z" not in (x, y):
        return
    along, across = (y, x) if x == "lam_z" else (x, y)
    acrossv = _numeric(ds, along)
    curves: dict[str, list] = {}
    for j in range(ds.sizes[along]):
        idx = {**sel, along: j, "lam_z": 0}
        for name, value in boundaries(specs[_index(dims, idx)]).items():
            curves.setdefault(name, []).append((acrossv[j], value))
    for c, (name, pts) in enumerate(curves.items()):
        a, b = np.asarray(pts).T
        xs, ys = (b, a) if x == "lam_z" else (a, b)
        ax.plot(xs, ys, color=f"C{c + 1}", lw=1.6, ls="--", marker=".", label=name)
    if curves:
        ax.legend(fontsize=7, loc="best")
    xl, yl = _edges(xv, lx), _edges(yv, ly)
    ax.set_xlim(xl[0], xl[-1])
    ax.set_ylim(yl[0], yl[-1])


def _lines(ds, var, metric, x, rest, combos, vector, dims, specs, ax):
    xv = _numeric(ds, x)
    drawn = {}
    for c, combo in enumerate(combos):
        sel = dict(zip(rest, combo))
        sub = var.isel(sel)
        if vector:
            sub = sub.transpose(x, ...)
            z = np.asarray(sub, dtype=np.float64)
            for k in range(z.shape[1]):
                if np.all(np.isnan(z[:, k])):
                    continue
                ax.plot(xv, z[:, k], marker="o", ms=3, label=f"{metric}[{k}]" if z.shape[1] <= 10 else None)
        else:
            z = np.asarray(sub, dtype=np.float64)
            label = ", ".join(f"{_label(d)}={_fmt(ds[d].values[i])}" for d, i in sel.items()) or None
            ax.plot(xv, z, marker="o", ms=3, color=f"C{c % 10}", label=label)
        # Boundaries of this line's points.
        found = []
        for i in range(xv.size):
            b = boundaries(specs[_index(dims, {**sel, x: i})])
            lam = specs[_index(dims, {**sel, x: i})].get("lam_z")
            found.append((b, lam))
        for name, value in _boundary_positions(x, xv, found):
            key = (name, round(float(value), 12))
            if key in drawn:
                continue
            drawn[key] = True
            ax.axvline(value, color="0.3", ls="--", lw=1)
            ax.annotate(name, (value, 0.98), xycoords=("data", "axes fraction"), rotation=90, va="top",
                        ha="right", fontsize=6, color="0.3")
    if _is_log(ds, x):
        ax.set_xscale("log")
    zall = np.asarray(var, dtype=np.float64)
    pos = zall[np.isfinite(zall) & (zall > 0)]
    if pos.size and np.nanmin(zall) >= 0 and pos.max() / pos.min() > 1e3:
        ax.set_yscale("log")  # zeros (exact collapse) drop off the bottom
        ax.set_ylim(bottom=max(pos.min(), pos.max() * 1e-12) / 2)
    ax.set_xlabel(_label(x))
    ax.set_ylabel(metric)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="best")


def _boundary_positions(x, xv, found):
    """Where each boundary lies on the x axis: its value on a `lam_z` axis; else where it crosses λ_Z."""
    out = []
    if x == "lam_z":
        if found:
            for name, value in found[0][0].items():
                if xv.min() / 3 <= value <= xv.max() * 3:
                    out.append((name, value))
        return out
    if x not in AXES or len(found) < 2:
        return out
    names = dict.fromkeys(n for b, _ in found for n in b)
    for name in names:
        f = [b.get(name, np.nan) - lam if lam is not None else np.nan for b, lam in found]
        for i in range(len(f) - 1):
            if np.isfinite(f[i]) and np.isfinite(f[i + 1]) and f[i] * f[i + 1] < 0:
                t = f[i] / (f[i] - f[i + 1])
                out.append((name, xv[i] + t * (xv[i + 1] - xv[i])))
    return out
