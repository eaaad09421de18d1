"""Figures of a sweep: heat maps or line plots of chosen metrics, with the theory's phase boundaries.

The boundaries are the dataset's `boundaries` variable (what `ufm_jax.phase_boundaries` gave each point
when it was solved, in `λ_Z` units along the point's `(λ_W, λ_H)` ray): e.g. minority and complete
collapse (`√n_B/N`, `√n_A/N`) and the (b)/(c) switch for two-cluster CE; the `λ` at which each class
vanishes for deep-linear MSE; the dying directions for MSE with a free bias; the dead-class `√(λ_Wλ_H)`
for ReLU CE. On a `lam_z` axis they are drawn as lines (line plots) or curves (heat maps); along another
axis (e.g. `n_a` at fixed `λ_Z`) a line is drawn where a boundary crosses the point's `λ_Z`.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from ._config import REAL_AXES, SweepConfig
from ._dataset import axes
from ._files import atomic_write



def _numeric(ds, axis: str) -> np.ndarray:
    values = ds[axis].values
    if values.dtype.kind in "iuf":
        return values.astype(np.float64)
    return np.arange(values.size, dtype=np.float64)


def _is_log(ds, axis: str) -> bool:
    v = _numeric(ds, axis)
    return axis in REAL_AXES and v.size > 1 and np.all(v > 0) and v.max() / v.min() > 10


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


def _fmt(v) -> str:
    return f"{v:.3g}" if isinstance(v, (float, np.floating)) else str(v)


def _choose_axes(ds, x: str | None, y: str | None) -> tuple[str | None, str | None]:
    dims = axes(ds)
    multi = [d for d in dims if ds.sizes[d] > 1]
    x = x or (multi[0] if multi else (dims[0] if dims else None))
    rest = [d for d in multi if d != x and d != "seed"]
    y = y or (rest[0] if rest and ds[rest[0]].values.dtype.kind in "iuf" else None)
    return x, y


def figure_metrics(config: SweepConfig, ds) -> list[str]:
    """The metrics a sweep draws: the config's `[plot] metrics` (default: the family's `plot_metrics`),
    and `hit_fraction` (the share of starts that reached each point's best value: where the landscape is
    benign and where traps dominate) when some point drew several starts."""
    metrics = [m for m in config.plot.metrics or () if m in ds]
    if "hit_fraction" in ds and "hit_fraction" not in metrics and np.nanmax(np.asarray(ds["starts"])) > 1:
        metrics.append("hit_fraction")
    return metrics


def plot_dataset(ds, folder: str | Path, metrics: list[str] | None = None) -> list[Path]:
    """Draw one figure per metric into `folder` (settings from the config's `[plot]`: metrics, default
    `figure_metrics`; axes; formats).

    **Returns:** the files written.
    """
    folder = Path(folder)
    config = SweepConfig.from_json(ds.attrs["config_json"])
    plot = config.plot
    metrics = [m for m in (figure_metrics(config, ds) if metrics is None else metrics) if m in ds]
    x, y = _choose_axes(ds, plot.x, plot.y)
    written = []
    for metric in metrics:
        fig = _figure(ds, metric, x, y, config.name)
        for fmt in plot.formats:
            buf = io.BytesIO()
            fig.savefig(buf, format=fmt, dpi=120, bbox_inches="tight", metadata=_metadata(fmt))
            path = folder / f"{metric}.{fmt}"
            atomic_write(path, buf.getvalue())
            written.append(path)
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


def _figure(ds, metric, x, y, title):
    dims = axes(ds)
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
    # A bare Figure (no pyplot): no global backend or figure registry is touched.
    fig = Figure(figsize=(5.2 * ncols, 3.9 * nrows))
    axs = fig.subplots(nrows, ncols, squeeze=False)
    for k, combo in enumerate(panels):
        ax = axs[k // ncols][k % ncols]
        sel = dict(zip(rest, combo))
        panel_title = ", ".join(f"{_label(d)}={_fmt(ds[d].values[i])}" for d, i in sel.items())
        if heat:
            _heat(ds, var, metric, x, y, sel, ax, fig)
        elif x is None:
            ax.text(0.5, 0.5, f"{metric} = {np.asarray(var).ravel()[0]:.4g}", ha="center")
        else:
            lines = combos[:12] if not vector else [combo]
            _lines(ds, var, metric, x, rest, lines, vector, ax)
            if not vector:
                panel_title = ""
        ax.set_title(panel_title, fontsize=9)
    for k in range(len(panels), nrows * ncols):
        axs[k // ncols][k % ncols].axis("off")
    fig.suptitle(f"{title}: {metric}", fontsize=11)
    fig.tight_layout()
    return fig


def _boundaries(ds, sel: dict, *keep: str) -> dict[str, np.ndarray]:
    """The stored boundaries at `sel`, `{name: values over the dimensions keep}`, finite somewhere."""
    if "boundaries" not in ds:
        return {}
    b = ds["boundaries"].isel(sel).transpose(*keep, "boundary")
    out = {}
    for j, name in enumerate(ds["boundary"].values):
        values = np.asarray(b[..., j], dtype=np.float64)
        if np.any(np.isfinite(values)):
            out[str(name)] = values
    return out


def _heat(ds, var, metric, x, y, sel, ax, fig):
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
    along = y if x == "lam_z" else x
    alongv = _numeric(ds, along)
    for c, (name, values) in enumerate(_boundaries(ds, sel, along, "lam_z").items()):
        # A boundary is a λ_Z along the point's ray: the same at every λ_Z of the axis.
        with np.errstate(invalid="ignore"):
            lam = np.where(np.isfinite(values), values, -np.inf).max(axis=1)
        ok = np.isfinite(lam)
        xs, ys = (lam[ok], alongv[ok]) if x == "lam_z" else (alongv[ok], lam[ok])
        ax.plot(xs, ys, color=f"C{c + 1}", lw=1.6, ls="--", marker=".", label=name)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="best")
    ax.set_xlim(_edges(xv, lx)[[0, -1]])
    ax.set_ylim(_edges(yv, ly)[[0, -1]])


def _lines(ds, var, metric, x, rest, combos, vector, ax):
    xv = _numeric(ds, x)
    drawn = set()
    for c, combo in enumerate(combos):
        sel = dict(zip(rest, combo))
        sub = var.isel(sel)
        if vector:
            z = np.asarray(sub.transpose(x, ...), dtype=np.float64)
            for k in range(z.shape[1]):
                if np.all(np.isnan(z[:, k])):
                    continue
                ax.plot(xv, z[:, k], marker="o", ms=3, label=f"{metric}[{k}]" if z.shape[1] <= 10 else None)
        else:
            z = np.asarray(sub, dtype=np.float64)
            label = ", ".join(f"{_label(d)}={_fmt(ds[d].values[i])}" for d, i in sel.items()) or None
            ax.plot(xv, z, marker="o", ms=3, color=f"C{c % 10}", label=label)
        lam_z = np.asarray(ds["lam_z"].broadcast_like(ds["status"]).isel(sel).transpose(x), np.float64)
        for name, value in _boundary_positions(x, xv, lam_z, _boundaries(ds, sel, x)):
            key = (name, round(float(value), 12))
            if key in drawn:
                continue
            drawn.add(key)
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


def _boundary_positions(x, xv, lam_z, boundaries):
    """Where each boundary lies on the x axis: its value on a `lam_z` axis (if near the plotted range);
    elsewhere, where it crosses the points' `λ_Z` (linear interpolation between neighbours)."""
    out = []
    if x == "lam_z":
        for name, values in boundaries.items():
            value = values[np.isfinite(values)][0]
            if xv.min() / 3 <= value <= xv.max() * 3:
                out.append((name, value))
        return out
    if x not in REAL_AXES:
        return out
    for name, values in boundaries.items():
        f = values - lam_z
        for i in range(len(f) - 1):
            if np.isfinite(f[i]) and np.isfinite(f[i + 1]) and f[i] * f[i + 1] < 0:
                t = f[i] / (f[i] - f[i + 1])
                out.append((name, xv[i] + t * (xv[i + 1] - xv[i])))
    return out
