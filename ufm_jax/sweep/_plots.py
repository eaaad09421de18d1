"""Figures of a sweep: heat maps or line plots of chosen metrics, with the theory's phase boundaries.

The boundaries are the dataset's `boundaries` variable (what `ufm_jax.phase_boundaries` gave each point
when it was solved, in `λ_Z` units along the point's `(λ_W, λ_H)` ray): e.g. minority and complete
collapse (`√n_B/N`, `√n_A/N`) and the (b)/(c) switch for two-cluster CE; the `λ` at which each class
vanishes for deep-linear MSE; the dying directions for MSE with a free bias; the dead-class `√(λ_Wλ_H)`
for ReLU CE. On a `lam_z` axis they are drawn as lines (line plots) or curves (heat maps); along another
axis (e.g. `n_a` at fixed `λ_Z`) a line is drawn where a boundary crosses the point's `λ_Z`. Their legend
entries read "theory: <name>".

Every data variable of a sweep dataset draws (`plot_kind`):

- a number per point: a heat map over the plot's `x` and `y` axes (one panel per value of the other
  axes, all on one colour scale), or lines over `x`;
- a vector per point (`mean_norms`, singular values, `boundaries`, ...): a line per component, labelled
  with the data's own index (`mean_norms[0]`, as the dataset and the CSV name it) or label;
- a matrix per point (`mean_cosines`): a line per entry above the diagonal (`mean_cosines[0,1]`);
- a category per point (`status`, `status_name`, `regime`, `evidence`, `reason`, `certified`,
  `confident`): a categorical map with a legend;
- a trajectory per point (`history_<field>`, `[run] history`): the metric against the iteration, a line
  per point on a one-axis grid, else a heat map over the `x` axis × iteration per value of the others.

The gap to theory is drawn on a symmetric log scale, linear within the certification tolerance (the
points' `objective_rtol`, 1e-8 in float64); `hit_fraction` and `unseen_mass` on a fixed [0, 1] scale.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import BoundaryNorm, ListedColormap, LogNorm, Normalize, SymLogNorm
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from ._config import REAL_AXES, SweepConfig
from ._dataset import HISTORY_PREFIX, axes
from ._files import atomic_write

SYMBOLS = {"lam_z": r"$\lambda_Z$", "lam_w": r"$\lambda_W$", "lam_h": r"$\lambda_H$", "lam_b": r"$\lambda_b$",
           "lam_ratio": r"$\lambda_W/\lambda_H$", "ratio": r"$n_A/n_B$", "n_a": r"$n_A$", "n_b": r"$n_B$",
           "n_total": r"$N$", "k_a": r"$k_A$", "k_b": r"$k_B$", "depth": r"$L$", "dim": r"$d$",
           "widths": r"widths $d_1..d_{L-1}$", "class_sizes": r"class sizes $n_k$", "seed": "seed"}
"""Axis name → its symbol (panel titles, legends)."""

AXIS_LABELS = {"lam_z": r"$\lambda_Z = \sqrt{\lambda_W\lambda_H}$", "ratio": r"$n_A/n_B$",
               "n_total": r"$N = \sum_k n_k$"}
"""Axis name → its axis label, where it says more than the symbol."""

METRIC_LABELS = {
    "objective": "objective $f$",
    "theory_objective": r"theory's minimum $f^*$",
    "gap": r"gap $(f - f^*)/\max(1, |f^*|)$",
    "geometry_gap": "geometry gap to theory",
    "grad_norm": r"gradient norm $\|\nabla f\|$",
    "nc1": r"NC1 $= \mathrm{tr}(\Sigma_W \Sigma_B^+)/K$",
    "within_class_spread": r"within-class spread $\max\|h - \bar h_k\| / \max\|\bar h_k\|$",
    "etf_distance": "NC2: distance to the simplex ETF",
    "orthogonal_frame_distance": "distance to an orthogonal frame",
    "general_orthogonal_frame_distance": "distance to a general orthogonal frame",
    "nc3": "NC3: classifier–mean alignment",
    "nc3_directional": "NC3 (directional)",
    "minority_spread": "spread of the minority class means",
    "minority_logit_spread": "spread of the minority mean logits",
    "minority_classifier_spread": "spread of the minority classifier rows",
    "mean_norms": r"class-mean norms $\|\bar h_k\|$",
    "mean_cosines": r"class-mean cosines $\cos(\bar h_k, \bar h_l)$",
    "mean_singular_values": "singular values of the class means",
    "product_singular_values": r"singular values of $W_L \cdots W_1$",
    "dead_classes": "dead classes",
    "hit_fraction": "hit fraction (starts that reached the best)",
    "unseen_mass": "unseen basin mass (Good–Turing)",
    "starts": "starts drawn",
    "hits": "starts that reached the best",
    "minima": "distinct minima found",
    "hessian_min_eig": "smallest Hessian eigenvalue",
    "status": "solver status",
    "status_name": "solver status",
    "evidence": "evidence",
    "regime": "theory's regime",
    "certified": "certified",
    "confident": "confident",
    "boundaries": r"theory's boundaries ($\lambda_Z$)",
    "seed_objectives": "every start's final objective",
    "seed_status": "every start's status code",
    "objective_spread": "spread of the starts' objectives",
    "iterations": "iterations",
    "history_length": "records of the trajectory",
}
"""Variable name → its label (titles, colour bars, axis labels)."""

FRACTIONS = ("hit_fraction", "unseen_mass")
"""Variables in [0, 1], drawn on that fixed scale in every panel."""

GAPS = ("gap", f"{HISTORY_PREFIX}gap")
"""Signed gaps to theory, drawn on a symmetric log scale."""

NC1_METRICS = ("nc1", "within_class_spread")

KINDS = ("number", "vector", "matrix", "category", "history")

LINE_STYLES = ("--", ":", "-.", (0, (5, 1, 1, 1, 1, 1)), (0, (1, 2)))
"""Dashes that tell boundaries apart where colour cannot."""


def plot_kind(ds, name: str) -> str:
    """How the data variable `name` is drawn: one of `KINDS` (see the module docstring).

    **Raises:** `ValueError`, one line naming the variable and the ones that draw.
    """
    kind = _kind(ds, name)
    if kind is None:
        allowed = ", ".join(n for n in plottable(ds))
        why = ("is not a data variable" if name not in ds.data_vars else
               "is the x axis of the history figures (draw a history_<metric>)"
               if name == f"{HISTORY_PREFIX}iteration" else "cannot be drawn")
        raise ValueError(f"--metric {name!r} {why}; variables that draw: {allowed}.")
    return kind


def plottable(ds) -> list[str]:
    """The data variables that draw, sorted."""
    return sorted(str(n) for n in ds.data_vars if _kind(ds, str(n)) is not None)


def _kind(ds, name: str) -> str | None:
    if name not in ds.data_vars:
        return None
    var = ds[name]
    dims = axes(ds)
    if tuple(var.dims[:len(dims)]) != tuple(dims):
        return None
    extra = var.dims[len(dims):]
    if "record" in extra:
        return "history" if extra == ("record",) and name != f"{HISTORY_PREFIX}iteration" else None
    if name == "status" or var.dtype.kind in "USOb":
        return "category" if not extra else None
    if var.dtype.kind not in "iuf":
        return None
    return {0: "number", 1: "vector", 2: "matrix"}.get(len(extra))


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


def _symbol(name: str) -> str:
    return SYMBOLS.get(name, name)


def _axis_label(name: str) -> str:
    return AXIS_LABELS.get(name, _symbol(name))


def metric_label(name: str) -> str:
    """A readable label of a variable (with symbols); trajectories read "<label> (trajectory)"."""
    if name.startswith(HISTORY_PREFIX) and name != f"{HISTORY_PREFIX}length":
        return METRIC_LABELS.get(name[len(HISTORY_PREFIX):], name[len(HISTORY_PREFIX):])
    return METRIC_LABELS.get(name, name)


def _fmt(v) -> str:
    return f"{v:.3g}" if isinstance(v, (float, np.floating)) else str(v)


def _where(ds, sel: dict) -> str:
    return ", ".join(f"{_symbol(d)} = {_fmt(ds[d].values[i])}" for d, i in sel.items())


def _choose_axes(ds, x: str | None, y: str | None) -> tuple[str | None, str | None]:
    dims = axes(ds)
    multi = [d for d in dims if ds.sizes[d] > 1]
    x = x or (multi[0] if multi else (dims[0] if dims else None))
    rest = [d for d in multi if d != x and d != "seed"]
    y = y or (rest[0] if rest and ds[rest[0]].values.dtype.kind in "iuf" else None)
    return x, y


def figure_metrics(config: SweepConfig, ds) -> list[str]:
    """The metrics a sweep draws: the config's `[plot] metrics` (default: the family's `plot_metrics`;
    names that are not variables that draw, `plot_kind`, are left out), and `hit_fraction` (the share of starts that reached each point's best value: where the landscape is
    benign and where traps dominate) when some point drew several starts; with `[run] history`, the
    trajectories of the plot metrics that are recorded, of the gradient norm, and of the gap where some
    point has a theory (`history_<metric>`)."""
    metrics = [m for m in config.plot.metrics or () if _kind(ds, m) is not None]
    if "hit_fraction" in ds and "hit_fraction" not in metrics and np.nanmax(np.asarray(ds["starts"])) > 1:
        metrics.append("hit_fraction")
    if f"{HISTORY_PREFIX}iteration" in ds:
        recorded = [m for m in config.plot.metrics or () if f"{HISTORY_PREFIX}{m}" in ds]
        gap = np.asarray(ds[f"{HISTORY_PREFIX}gap"], np.float64)
        extra = ["grad_norm"] + (["gap"] if np.any(np.isfinite(gap)) else [])
        metrics += [f"{HISTORY_PREFIX}{m}" for m in dict.fromkeys(recorded + extra)]
    return metrics


def plot_dataset(ds, folder: str | Path, metrics: list[str] | None = None) -> list[Path]:
    """Draw one figure per metric into `folder` (settings from the config's `[plot]`: metrics, default
    `figure_metrics`; axes; formats).

    **Returns:** the files written.

    **Raises:** `ValueError` naming a metric that does not draw (`plot_kind`), before anything is drawn.
    """
    folder = Path(folder)
    config = SweepConfig.from_json(ds.attrs["config_json"])
    plot = config.plot
    metrics = figure_metrics(config, ds) if metrics is None else list(metrics)
    kinds = {m: plot_kind(ds, m) for m in metrics}
    x, y = _choose_axes(ds, plot.x, plot.y)
    written = []
    for metric in metrics:
        fig = _figure(ds, metric, kinds[metric], x, y, config)
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


MAX_PANELS = 12


def _grid_of_panels(count: int, width: float = 5.2, height: float = 3.9):
    ncols = min(3, count)
    nrows = -(-count // ncols)
    # A bare Figure (no pyplot): no global backend or figure registry is touched.
    fig = Figure(figsize=(width * ncols, height * nrows))
    axs = fig.subplots(nrows, ncols, squeeze=False)
    for k in range(count, nrows * ncols):
        axs[k // ncols][k % ncols].axis("off")
    return fig, [axs[k // ncols][k % ncols] for k in range(count)]


def _notes(ds, metric: str, config: SweepConfig, shown: int, panels: int) -> list[str]:
    notes = []
    base = metric[len(HISTORY_PREFIX):] if metric.startswith(HISTORY_PREFIX) else metric
    if base in NC1_METRICS and (metric.startswith(HISTORY_PREFIX) or config.problem.per_class == 1):
        where = ("trajectories are recorded in the reduced problem, one column per class" if
                 metric.startswith(HISTORY_PREFIX) else "one column per class (problem.per_class = 1)")
        notes.append(f"{where}: NC1 and the within-class spread are 0 by construction, not a finding.")
    if metric in GAPS:
        notes.append(f"symmetric log scale, linear within ±{_tolerance(ds):.0e} (the certification "
                     "tolerance of the gap).")
    if metric.startswith(HISTORY_PREFIX) and metric != f"{HISTORY_PREFIX}length":
        every = json.loads(ds.attrs["config_json"]).get("run", {}).get("history")
        notes.append(f"records every {every} iterations and at each point's returned point; points stop at "
                     "different iterations (blank: stopped).")
    if shown < panels:
        notes.append(f"the first {shown} of {panels} panels.")
    return notes


def _figure(ds, metric, kind, x, y, config):
    if kind == "history":
        return _history_figure(ds, metric, x, y, config)
    dims = axes(ds)
    var = ds[metric]
    heat = y is not None and kind in ("number", "category")
    used = [a for a in (x, y if heat else None) if a is not None]
    rest, combos = _others(ds, dims, used)
    lines_of_combos = kind in ("number", "category") and not heat and bool(rest)
    panels = [()] if lines_of_combos else combos[:MAX_PANELS]
    fig, axs = _grid_of_panels(len(panels))
    scale = _scale(ds, metric, kind)
    for ax, combo in zip(axs, panels):
        sel = dict(zip(rest, combo))
        if heat:
            _heat(ds, var, metric, kind, x, y, sel, ax, fig, scale)
            ax.set_title(_where(ds, sel), fontsize=9)
        elif x is None:
            value = np.asarray(var).ravel()[0]
            ax.text(0.5, 0.5, f"{metric_label(metric)} = {_fmt(value)}", ha="center")
            ax.axis("off")
        else:
            _lines(ds, var, metric, kind, x, rest, combos[:MAX_PANELS] if lines_of_combos else [combo], ax,
                   scale)
            ax.set_title("" if lines_of_combos else _where(ds, sel), fontsize=9)
    shown = len(panels) if not lines_of_combos else min(len(combos), MAX_PANELS)
    _finish(fig, ds, metric, config, shown, len(combos))
    return fig


def _finish(fig, ds, metric, config, shown, panels):
    fig.suptitle(f"{config.name}: {metric_label(metric)}", fontsize=11)
    notes = _notes(ds, metric, config, shown, panels)
    line = 0.22 / fig.get_figheight()  # a line of notes, 0.22 inch, in figure units
    fig.tight_layout(rect=(0, line * (len(notes) + 0.3 * bool(notes)), 1, 1 - 0.12 / fig.get_figheight()))
    for i, note in enumerate(notes):
        fig.text(0.01, 0.15 * line + line * i, "Note: " + note, fontsize=8, color="0.25", ha="left",
                 va="bottom")


# ---- colour and value scales ------------------------------------------------------------------------


def _tolerance(ds) -> float:
    """The linear range of the gap's symmetric log scale: the certification tolerance of the gap (the
    points' `objective_rtol`, 1e-8 in float64)."""
    if "objective_rtol" in ds:
        tol = np.asarray(ds["objective_rtol"], np.float64)
        tol = tol[np.isfinite(tol) & (tol > 0)]
        if tol.size:
            return float(tol.min())
    return 1e-8


def _scale(ds, metric: str, kind: str):
    """One norm for every panel of a figure (so their colours compare): `None` for categories."""
    if kind == "category":
        return None
    z = np.asarray(ds[metric], dtype=np.float64)
    finite = z[np.isfinite(z)]
    if metric in FRACTIONS:
        return Normalize(0.0, 1.0)
    if not finite.size:
        return Normalize(0.0, 1.0)
    if metric in GAPS:
        tol = _tolerance(ds)
        top = max(float(np.abs(finite).max()), 10 * tol)
        return SymLogNorm(linthresh=tol, vmin=-top, vmax=top, base=10)
    pos = finite[finite > 0]
    if pos.size and finite.min() >= 0 and pos.max() / pos.min() > 1e3:
        return LogNorm(vmin=max(pos.min(), pos.max() * 1e-12), vmax=pos.max())
    lo, hi = float(finite.min()), float(finite.max())
    if lo == hi:  # a constant: a range around it that does not invent a spread
        lo, hi = (lo - 1, hi + 1) if lo == 0 else sorted((lo * 0.5, lo * 1.5))
    return Normalize(lo, hi)


def _colorbar(fig, mappable, ax, label: str) -> None:
    """A colour bar; on a symmetric log scale, ticks at 0 and ±10^k for at most four decades a side (the
    default locator labels every decade)."""
    bar = fig.colorbar(mappable, ax=ax, label=label)
    norm = mappable.norm
    if isinstance(norm, SymLogNorm):
        low, high = math.floor(np.log10(norm.linthresh)), math.ceil(np.log10(norm.vmax))
        step = max(1, math.ceil((high - low + 1) / 4))
        decades = [10.0 ** k for k in range(high, low - 1, -step)]
        bar.set_ticks([-d for d in decades] + [0.0] + decades[::-1])


def _apply_scale(ax, scale) -> None:
    """A line plot's value axis on the scale of `_scale`."""
    if isinstance(scale, SymLogNorm):
        ax.set_yscale("symlog", linthresh=scale.linthresh)
    elif isinstance(scale, LogNorm):
        ax.set_yscale("log")  # zeros (exact collapse) drop off the bottom
        ax.set_ylim(bottom=scale.vmin / 2)
    elif isinstance(scale, Normalize) and (scale.vmin, scale.vmax) == (0.0, 1.0):
        ax.set_ylim(-0.03, 1.03)


def _categories(ds, var) -> tuple[np.ndarray, list[str]]:
    """Codes (−1: missing) and the category names of a categorical variable."""
    a = np.asarray(var)
    if var.name == "status":
        names = json.loads(ds.attrs.get("status_names", "[]"))
        present = sorted(int(v) for v in np.unique(a[a >= 0]))
        labels = [names[v] if 0 <= v < len(names) else str(v) for v in present]
        codes = np.full(a.shape, -1)
        for j, v in enumerate(present):
            codes[a == v] = j
        return codes, labels
    text = a.astype(str)
    values = sorted(np.unique(text).tolist())
    codes = np.searchsorted(np.asarray(values), text)
    return codes, [v if v else "(none)" for v in values]


def _category_colours(n: int) -> ListedColormap:
    base = colormaps["tab10" if n <= 10 else "tab20"]
    return ListedColormap([base(i % base.N) for i in range(n)])


def _short(text: str, width: int = 48) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


# ---- heat maps and lines ----------------------------------------------------------------------------


def _heat(ds, var, metric, kind, x, y, sel, ax, fig, scale):
    xv, yv = _numeric(ds, x), _numeric(ds, y)
    lx, ly = _is_log(ds, x), _is_log(ds, y)
    xe, ye = _edges(xv, lx), _edges(yv, ly)
    if kind == "category":
        codes, names = _categories(ds, var)
        sub = var.copy(data=codes).isel(sel).transpose(y, x)
        z = np.ma.masked_less(np.asarray(sub), 0)
        cmap = _category_colours(len(names))
        ax.pcolormesh(xe, ye, z, cmap=cmap, norm=BoundaryNorm(np.arange(len(names) + 1) - 0.5, len(names)),
                      shading="flat")
    else:
        z = np.asarray(var.isel(sel).transpose(y, x), dtype=np.float64)
        if not np.any(np.isfinite(z)):
            ax.text(0.5, 0.5, "no values here (NaN: e.g. no theory)", ha="center", va="center",
                    transform=ax.transAxes, fontsize=8)
        if isinstance(scale, LogNorm):
            z = np.where(z > 0, z, scale.vmin)  # zeros (exact collapse) at the bottom of the scale
        mesh = ax.pcolormesh(xe, ye, np.ma.masked_invalid(z), norm=scale, shading="flat",
                             cmap="RdBu_r" if metric in GAPS else "viridis")
        _colorbar(fig, mesh, ax, metric_label(metric))
    if lx:
        ax.set_xscale("log")
    if ly:
        ax.set_yscale("log")
    ax.set_xlabel(_axis_label(x))
    ax.set_ylabel(_axis_label(y))
    if "lam_z" in (x, y):
        along = y if x == "lam_z" else x
        alongv = _numeric(ds, along)
        for c, (name, values) in enumerate(_boundaries(ds, sel, along, "lam_z").items()):
            # A boundary is a λ_Z along the point's ray: the same at every λ_Z of the axis.
            with np.errstate(invalid="ignore"):
                lam = np.where(np.isfinite(values), values, -np.inf).max(axis=1)
            ok = np.isfinite(lam)
            xs, ys = (lam[ok], alongv[ok]) if x == "lam_z" else (alongv[ok], lam[ok])
            # Over categories (colours of their own), boundaries are black and told apart by their dashes.
            ax.plot(xs, ys, color="k" if kind == "category" else _boundary_colour(name, c), lw=1.6,
                    ls=LINE_STYLES[c % len(LINE_STYLES)] if kind == "category" else "--", marker=".",
                    label=f"theory: {name}")
        if kind != "category" and ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="best")
    if kind == "category":
        patches = [Patch(color=cmap(j), label=_short(n)) for j, n in enumerate(names)]
        ax.legend(handles=patches + ax.get_legend_handles_labels()[0], fontsize=7, loc="upper left",
                  bbox_to_anchor=(1.01, 1), borderaxespad=0, title=metric_label(metric), title_fontsize=7)
    ax.set_xlim(xe[[0, -1]])
    ax.set_ylim(ye[[0, -1]])


def _boundary_colour(name: str, c: int | None) -> str:
    """A boundary about class `k` ("class k vanishing", `k` the data's 0-based index) takes class k's
    line colour (`C{k}`, as the component `mean_norms[k]`); the others take colour `c + 1` of the cycle,
    or dark grey (`c = None`: beside lines of other colours)."""
    words = name.split()
    if len(words) >= 2 and words[0] == "class" and words[1].isdigit():
        return f"C{int(words[1]) % 10}"
    return "0.25" if c is None else f"C{(c + 1) % 10}"


def _components(ds, var, metric, kind) -> tuple[np.ndarray, list[str], list[str]]:
    """`(values over the grid × components, labels, colours)` of a vector or matrix variable; a matrix's
    entries above the diagonal (`name[k,l]`); indices are the data's own (0-based)."""
    dims = axes(ds)
    extra = var.dims[len(dims):]
    a = np.asarray(var, dtype=np.float64)
    if kind == "matrix":
        n, m = a.shape[-2:]
        pairs = [(k, l) for k in range(n) for l in range(k + 1, m)]
        values = np.stack([a[..., k, l] for k, l in pairs], axis=-1) if pairs else a.reshape(*a.shape[:-2], 0)
        return values, [f"{metric}[{k},{l}]" for k, l in pairs], [f"C{j % 10}" for j in range(len(pairs))]
    dim = extra[0]
    if dim in ds.coords:
        labels = [str(v) for v in ds[dim].values]
        colours = [_boundary_colour(n, j) if metric == "boundaries" else f"C{j % 10}"
                   for j, n in enumerate(labels)]
    else:
        labels = [f"{metric}[{k}]" for k in range(a.shape[-1])]
        colours = [f"C{k % 10}" for k in range(a.shape[-1])]
    return a, labels, colours


def _lines(ds, var, metric, kind, x, rest, combos, ax, scale):
    xv = _numeric(ds, x)
    dims = axes(ds)
    var = var.transpose(*dims, ...)
    names: list[str] = []
    if kind == "category":
        codes, names = _categories(ds, var)
        values = codes.astype(np.float64)
        values[codes < 0] = np.nan
    elif kind in ("vector", "matrix"):
        values, labels, colours = _components(ds, var, metric, kind)
    else:
        values = np.asarray(var, dtype=np.float64)
    styles: dict[str, object] = {}
    drawn = set()
    for c, combo in enumerate(combos):
        sel = dict(zip(rest, combo))
        index = tuple(sel.get(d, slice(None)) for d in dims)
        sub = values[index]  # the x axis is the only grid axis left
        if kind in ("vector", "matrix"):
            shown = sub.shape[-1] <= 10
            for k in range(sub.shape[-1]):
                if np.all(np.isnan(sub[:, k])):
                    continue
                ax.plot(xv, sub[:, k], marker="o", ms=3, color=colours[k], label=labels[k] if shown else None)
        else:
            label = _where(ds, sel) or None
            ax.plot(xv, sub, marker="o", ms=3, color=f"C{c % 10}", label=label,
                    ls="none" if kind == "category" else "-")
        lam_z = np.asarray(ds["lam_z"].broadcast_like(ds["status"]).isel(sel).transpose(x), np.float64) \
            if "lam_z" in ds else np.full(xv.shape, np.nan)
        for name, value in _boundary_positions(x, xv, lam_z, _boundaries(ds, sel, x)):
            key = (name, round(float(value), 12))
            if key in drawn:
                continue
            drawn.add(key)
            style = styles.setdefault(name, LINE_STYLES[len(styles) % len(LINE_STYLES)])
            # Beside components, a class's boundary takes its colour; beside a line per combination of
            # the other axes, that line's colour.
            colour = _boundary_colour(name, None) if kind in ("vector", "matrix") or len(combos) == 1 \
                else f"C{c % 10}"
            first = not any(n == name for n, _ in drawn - {key})
            ax.axvline(value, color=colour, ls=style, lw=1.2, label=f"theory: {name}" if first else None)
    if _is_log(ds, x):
        ax.set_xscale("log")
    if kind == "category":
        ax.set_yticks(range(len(names)), [_short(n, 24) for n in names], fontsize=7)
        ax.set_ylim(-0.5, len(names) - 0.5)
    elif not np.any(np.isfinite(values)):
        ax.text(0.5, 0.5, "no values (NaN: e.g. no theory)", ha="center", va="center", transform=ax.transAxes,
                fontsize=8)
    else:
        _apply_scale(ax, scale)
    ax.set_xlabel(_axis_label(x))
    ax.set_ylabel(metric_label(metric))
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="best")


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


# ---- trajectories -------------------------------------------------------------------------------------


def _history_figure(ds, metric, x, y, config):
    """A trajectory against the iteration: a line per point (coloured by its `x` value) when the grid
    has one axis that varies, else one heat map over `x` × iteration per value of the other axes."""
    dims = axes(ds)
    var, it = ds[metric], ds[f"{HISTORY_PREFIX}iteration"]
    multi = [d for d in dims if ds.sizes[d] > 1]
    scale = _scale(ds, metric, "number")
    lines = x is None or len(multi) <= 1
    rest, combos = _others(ds, dims, [x] if x is not None else [])
    panels = [()] if lines else combos[:MAX_PANELS]
    fig, axs = _grid_of_panels(len(panels), width=5.6)
    for ax, combo in zip(axs, panels):
        sel = dict(zip(rest, combo))
        if lines:
            _history_lines(ds, var, it, metric, x, ax, fig, scale)
        else:
            _history_heat(ds, var, it, metric, x, sel, ax, fig, scale)
            ax.set_title(_where(ds, sel), fontsize=9)
    _finish(fig, ds, metric, config, len(panels), 1 if lines else len(combos))
    return fig


def _trajectories(var, it, order: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """`(iterations, values)` of the selected points, shape `(points, records)`, in `order`."""
    its = np.asarray(it.transpose(*order, "record"), np.int64).reshape(-1, it.sizes["record"])
    vals = np.asarray(var.transpose(*order, "record"), np.float64).reshape(-1, var.sizes["record"])
    return its, vals


def _history_lines(ds, var, it, metric, x, ax, fig, scale):
    dims = axes(ds)
    its, vals = _trajectories(var, it, dims)
    if x is not None:
        xv = np.broadcast_to(_numeric(ds, x).reshape([-1 if d == x else 1 for d in dims]),
                             tuple(ds.sizes[d] for d in dims)).ravel()
        norm = LogNorm(xv.min(), xv.max()) if _is_log(ds, x) else Normalize(xv.min(), max(xv.max(), xv.min() + 1e-300))
    cmap = colormaps["viridis"]
    for p in range(its.shape[0]):
        keep = its[p] >= 0
        colour = cmap(norm(xv[p])) if x is not None else "C0"
        ax.plot(its[p, keep], vals[p, keep], color=colour, lw=1.1, marker=".", ms=3)
    if x is not None:
        fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, label=_axis_label(x))
    ax.set_xlabel("iteration")
    ax.set_ylabel(metric_label(metric))
    if np.any(np.isfinite(vals)):
        _apply_scale(ax, scale)
    else:
        ax.text(0.5, 0.5, "no values (NaN: e.g. no theory)", ha="center", va="center", transform=ax.transAxes,
                fontsize=8)


def _history_heat(ds, var, it, metric, x, sel, ax, fig, scale):
    """Rows: the points along `x`; columns: every iteration at which some point of the panel recorded.
    A cell from iteration `t` to the next holds the point's last record at or before `t`; past a point's
    last record (it stopped) the cell is blank."""
    its, vals = _trajectories(var.isel(sel), it.isel(sel), [x])
    columns = np.unique(its[its >= 0])
    if not columns.size:
        columns = np.asarray([0])
    z = np.full((its.shape[0], columns.size), np.nan)
    for p in range(its.shape[0]):
        keep = its[p] >= 0
        t, v = its[p, keep], vals[p, keep]
        if not t.size:
            continue
        at = np.searchsorted(t, columns, side="right") - 1
        ok = (at >= 0) & (columns <= t[-1])
        z[p, ok] = v[at[ok]]
    step = np.diff(columns).min() if columns.size > 1 else 1
    xe = np.append(columns, columns[-1] + step).astype(np.float64)
    yv = _numeric(ds, x)
    ly = _is_log(ds, x)
    if isinstance(scale, LogNorm):
        z = np.where(z > 0, z, np.where(np.isfinite(z), scale.vmin, np.nan))
    mesh = ax.pcolormesh(xe, _edges(yv, ly), np.ma.masked_invalid(z), norm=scale, shading="flat",
                         cmap="RdBu_r" if metric in GAPS else "viridis")
    _colorbar(fig, mesh, ax, metric_label(metric))
    if ly:
        ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel(_axis_label(x))
    if x == "lam_z":
        for c, (name, values) in enumerate(_boundaries(ds, sel, "lam_z").items()):
            value = values[np.isfinite(values)][0]  # the same λ_Z at every point of the ray
            if yv.min() / 3 <= value <= yv.max() * 3:
                ax.axhline(value, color=_boundary_colour(name, c), ls="--", lw=1.4, label=f"theory: {name}")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="best")
