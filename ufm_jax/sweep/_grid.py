"""The points of a sweep, their compiled groups and chunks; all in NumPy, before any compile.

A *point* is one problem: the fixed problem values plus one value of every axis, built into a `Problem`
by the family preset (class sizes from the two-cluster keys, `λ_W, λ_H` from `λ_Z`). A plan holds
positions, never points: a chunk's problems are made when the chunk is solved (`Grid.batch`), in NumPy
and vectorised over the chunk, so planning and memory do not grow with the grid.

Points whose problems have the same static structure (`ufm_jax._problem.structure`: loss, bias, H >= 0,
d, widths, K and the array shapes) form one *group*: one compiled program. Explicit problems of a group
differ in their column count only; they are padded to the group's widest. A group is cut into *chunks*
of equal size (the last one padded by repeating its last point), so every chunk of a group reuses the
group's program.

Only the *shape axes* (`dim`, `depth`, `widths`, `class_sizes`, `k_a`, `k_b`) can change a structure;
the *size axes* (`n_a`, `n_b`, `ratio`, `n_total`) can make class sizes invalid or widen an explicit
problem. Grouping iterates over the shape axes' values and checks the size axes vectorised; every other
axis (each `λ`, `seed`) only changes array values, and the `λ`'s are checked at the extremes of their
axes.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import itertools
import json
import math
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from .. import _validation as V
from .._families import PRESETS
from .._memory import point_bytes
from .._problem import MAX_EXPLICIT_COLUMNS, Problem, structure
from .._search import ROUND_STARTS
from ..solve import make_solver
from ..solve._minimise import TRAJECTORY_FIELDS, history_records
from ..solve._solve import MAX_HISTORY_BYTES
from ._config import SweepConfig, SweepConfigError

SHAPE_AXES = ("dim", "depth", "widths", "class_sizes", "k_a", "k_b")
"""Axes whose values can change a point's structure (its compiled program)."""
SIZE_AXES = ("n_a", "n_b", "ratio", "n_total")
"""Axes whose values change the class sizes (and can make them invalid), not the structure."""
LAMBDA_AXES = ("lam_w", "lam_h", "lam_b", "lam_z", "lam_ratio")

LABELS = ("lam_z", "lam_ratio", "n_a", "n_b", "ratio", "n_total")
"""The derived numbers a point carries for the dataset (NaN where they do not apply)."""


@dataclasses.dataclass(frozen=True)
class Point:
    """One grid point.

    **Fields:**

    - `index`: its position on every axis (the dataset's coordinates).
    - `values`: `{axis: value}`.
    - `problem`: its `Problem`, unpadded.
    - `seed`: the PRNG seed of its random starts (the `seed` axis, or `solver.seed`).
    - `labels`: `lam_z = √(λ_{W,1}λ_H)`, `lam_ratio = λ_{W,1}/λ_H`, and the two-cluster sizes `n_a`,
      `n_b`, `ratio = n_a/n_b` (NaN for `class_sizes`), `n_total`.
    """

    index: tuple[int, ...]
    values: Mapping[str, Any]
    problem: Problem
    seed: int
    labels: Mapping[str, float]

    @functools.cached_property
    def key(self) -> str:
        """A digest of the problem (static options and every number) and the seed: what the point's
        results depend on."""
        h = hashlib.sha256(repr(jax.tree.structure(self.problem)).encode())
        for leaf in jax.tree.leaves(self.problem):
            a = np.asarray(leaf)
            h.update(f"{a.dtype}{a.shape}".encode())
            h.update(a.tobytes())
        h.update(f"seed={self.seed}".encode())
        return h.hexdigest()[:16]

    def describe(self) -> str:
        return _describe(self.values)


def _describe(values: Mapping) -> str:
    def show(v):
        if isinstance(v, tuple):
            return json.dumps(list(v))
        return repr(v.item() if isinstance(v, np.generic) else v)

    text = ", ".join(f"{k}={show(v)}" for k, v in values.items())
    return f"point ({text or 'the fixed problem'})"


# ---- the numbers of points, vectorised -------------------------------------------------------------------


def _column(p: Mapping, key: str, n: int) -> np.ndarray | None:
    """`p[key]` as a float64 vector of length `n` (a fixed value repeated), or None if absent."""
    v = p.get(key)
    return None if v is None else np.broadcast_to(np.asarray(v, np.float64), (n,))


def _numbers(p: Mapping, n: int, explicit: bool) -> dict[str, np.ndarray]:
    """The numbers of `n` points that share one K: `p` maps each problem key to a fixed value or to an
    array (list) of `n` values. Returns `sizes (n, K)`, `lam_w (n, L)` (L = 1 when one value serves every
    layer), `lam_h (n,)`, `lam_b (n,)` or absent, and the labels.

    Invalid class sizes are marked, not raised: `bad` holds a message per point (empty when valid), so
    that the caller can name the first bad point.
    """
    out: dict[str, np.ndarray] = {}
    bad = np.zeros(n, dtype=object)
    bad[:] = ""
    nan = np.full(n, np.nan)
    if "class_sizes" in p:
        sizes = np.asarray(p["class_sizes"], np.float64)
        sizes = np.broadcast_to(sizes, (n, sizes.shape[-1])).copy()
        n_a, n_b, ratio = nan, nan, nan
    else:
        k_a, k_b = (np.broadcast_to(np.asarray(p[k], np.int64), (n,)) for k in ("k_a", "k_b"))
        n_a, n_b, r, total = (_column(p, k, n) for k in ("n_a", "n_b", "ratio", "n_total"))
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            if n_a is None and n_b is not None and r is not None:
                n_a = r * n_b
            elif n_b is None and n_a is not None and r is not None:
                n_b = n_a / r
            elif r is not None and total is not None:
                n_b = total / (k_a * r + k_b)
                n_a = r * n_b
            elif total is not None:
                if n_a is not None:
                    n_b = (total - k_a * n_a) / k_b
                else:
                    n_a = (total - k_b * n_b) / k_a
            ratio = n_a / n_b
        wrong = ~((n_a > 0) & (n_b > 0) & np.isfinite(n_a) & np.isfinite(n_b))
        for i in np.flatnonzero(wrong)[:1]:
            bad[i] = (f"n_a={n_a[i]!r}, n_b={n_b[i]!r}: class sizes must be finite and > 0 (n_total is "
                      "too small)")
        num_classes = int(k_a[0] + k_b[0])
        sizes = np.where(np.arange(num_classes) < k_a[:, None], n_a[:, None], n_b[:, None])
    if explicit:
        rounded = np.round(sizes)
        with np.errstate(invalid="ignore"):
            fractional = np.any(np.abs(sizes - rounded) > 1e-9 * np.maximum(1, rounded), axis=1)
        for i in np.flatnonzero(fractional & (bad == ""))[:1]:
            bad[i] = (f"class sizes {sizes[i].tolist()} are not integers; explicit mode needs integer n_k "
                      "(set problem.per_class for weighted mode)")
        wide = np.max(rounded, axis=1) > MAX_EXPLICIT_COLUMNS
        for i in np.flatnonzero(wide & (bad == ""))[:1]:
            bad[i] = (f"class sizes {sizes[i].tolist()}: explicit mode allows n_k <= "
                      f"{MAX_EXPLICIT_COLUMNS:.0e} columns (set problem.per_class for weighted mode)")
        sizes = rounded
    if "lam_z" in p:
        lam_z = _column(p, "lam_z", n)
        rho = _column(p, "lam_ratio", n) if "lam_ratio" in p else np.ones(n)
        lam_w, lam_h = (lam_z * np.sqrt(rho))[:, None], lam_z / np.sqrt(rho)
    else:
        w = p["lam_w"]
        lam_w = (np.asarray([list(x) if isinstance(x, tuple) else [x] for x in w], np.float64)
                 if isinstance(w, (list, np.ndarray)) else np.asarray([w], np.float64).reshape(1, -1))
        lam_w = np.broadcast_to(lam_w, (n, lam_w.shape[1]))
        lam_h = _column(p, "lam_h", n)
    out.update(sizes=sizes, lam_w=lam_w, lam_h=lam_h, bad=bad)
    if "lam_b" in p:
        out["lam_b"] = _column(p, "lam_b", n)
    with np.errstate(over="ignore"):
        out.update(lam_z=np.sqrt(lam_w[:, 0] * lam_h), lam_ratio=lam_w[:, 0] / lam_h, n_a=n_a, n_b=n_b,
                   ratio=ratio, n_total=np.sum(sizes, axis=1))
    return out


def _fixed(config: SweepConfig) -> dict[str, Any]:
    return config.problem.given()


def make_point(config: SweepConfig, values: Mapping[str, Any], index: tuple[int, ...] = ()) -> Point:
    """The point of `config` with axis values `values` (any values, on the grid or not), its problem
    built and checked by `make_problem` (in the working precision).

    **Raises:** `SweepConfigError` naming the point when its problem cannot be built.
    """
    return _make_point(config, values, index)


def _make_point(config: SweepConfig, values: Mapping[str, Any], index: tuple[int, ...] = (),
                per_class: int | None = None) -> Point:
    """`make_point`, optionally with `per_class` in place of the config's (a cheap probe of a point
    whose explicit problem would be large: every number is checked, no sample column is made)."""
    p = {**_fixed(config), **values}
    if per_class is not None:
        p["per_class"] = per_class
    where = _describe(values)
    num = _numbers(p, 1, explicit=p.get("per_class") is None)
    if num["bad"][0]:
        raise SweepConfigError(f"{where}: {num['bad'][0]}.")
    lam_w = num["lam_w"][0]
    build = PRESETS[p["family"]].preset(p["family"])
    try:
        problem = build([float(x) for x in num["sizes"][0]], p["dim"],
                        lam_w=float(lam_w[0]) if lam_w.size == 1 else [float(x) for x in lam_w],
                        lam_h=float(num["lam_h"][0]), lam_b=p.get("lam_b"), free_bias=p["free_bias"],
                        widths=p.get("widths"), depth=p.get("depth"), per_class=p.get("per_class"))
    except ValueError as e:
        raise SweepConfigError(f"{where}: {e}") from None
    seed = int(p.get("seed", config.solver.seed))
    return Point(tuple(index), dict(values), problem, seed, {k: float(num[k][0]) for k in LABELS})


@dataclasses.dataclass(frozen=True, eq=False)
class Batch:
    """The points of one chunk, made together in NumPy (no JAX array per point).

    **Fields:**

    - `flat`: their flat positions in the grid.
    - `problem`: their stacked `Problem` (leading axis = point; NumPy leaves in the working precision;
      explicit problems padded to the group's width).
    - `seeds`: each point's PRNG seed (int64).
    - `labels`: `LABELS` → one float64 value per point.
    """

    flat: np.ndarray
    problem: Problem
    seeds: np.ndarray
    labels: Mapping[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.flat)


class Grid:
    """The points of a config, in C order over its axes, made on demand by flat position."""

    def __init__(self, config: SweepConfig):
        self.config = config
        self.names = config.axis_names
        self.values = tuple(values for _, values in config.axes)
        self.shape = tuple(len(v) for v in self.values)
        self.size = math.prod(self.shape)

    def index(self, flat: int) -> tuple[int, ...]:
        return tuple(int(i) for i in np.unravel_index(flat, self.shape)) if self.shape else ()

    def point_at(self, index: tuple[int, ...]) -> Point:
        values = {name: self.values[a][i] for a, (name, i) in enumerate(zip(self.names, index))}
        return make_point(self.config, values, index)

    def point(self, flat: int) -> Point:
        return self.point_at(self.index(flat))

    def points(self, flats) -> list[Point]:
        return [self.point(int(i)) for i in flats]

    def describe(self, flat: int) -> str:
        index = self.index(int(flat))
        return _describe({name: self.values[a][i] for a, (name, i) in enumerate(zip(self.names, index))})

    def _axis_values(self, a: int, idx: np.ndarray):
        values = self.values[a]
        if isinstance(values[0], tuple):
            return [values[i] for i in idx]
        return np.asarray(values)[idx]

    def batch(self, flats, group: Group) -> Batch:
        """The points at `flats` (all of `group`) as one stacked problem, made in NumPy.

        **Raises:** `SweepConfigError` naming the first point whose problem is invalid in the working
        precision (e.g. a `λ` that underflows to 0 in float32).
        """
        flats = np.asarray(flats, dtype=np.int64)
        n = len(flats)
        index = np.unravel_index(flats, self.shape) if self.shape else ()
        p: dict[str, Any] = dict(_fixed(self.config))
        for a, name in enumerate(self.names):
            p[name] = self._axis_values(a, index[a])
        example = group.example
        num = _numbers(p, n, explicit=not example.weighted)
        first_bad = np.flatnonzero(num["bad"] != "")
        if first_bad.size:
            i = int(first_bad[0])
            raise SweepConfigError(f"{self.describe(flats[i])}: {num['bad'][i]}.")
        dtype = example.lam_h.dtype
        sizes = num["sizes"]
        depth = example.depth
        lam_w = np.broadcast_to(num["lam_w"], (n, depth)) if num["lam_w"].shape[1] == 1 else num["lam_w"]
        if lam_w.shape[1] != depth:
            raise SweepConfigError(f"{self.describe(flats[0])}: lam_w has {lam_w.shape[1]} values, "
                                   f"expected one or L = {depth}.")
        if example.weighted:
            m = example.columns_per_class
            weights = np.repeat((sizes / m)[:, :, None], m, axis=2)
        else:
            weights = (np.arange(example.columns_per_class) < sizes[:, :, None]).astype(np.float64)
        lam_b = num.get("lam_b", np.ones(n))
        checks = [("class_sizes", sizes), ("class_sizes", sizes.sum(axis=1)), ("lam_w", lam_w),
                  ("lam_h", num["lam_h"]), ("lam_b", lam_b)]
        if example.weighted:
            checks.append(("class_sizes", weights[:, :, 0]))
        for name, values in checks:
            per_point = values.reshape(n, -1)
            for i in np.flatnonzero(np.any(V.unrepresentable(per_point, dtype), axis=1))[:1]:
                try:
                    V.representable(name, per_point[i], dtype, shown=_shown(per_point[i]))
                except ValueError as e:
                    raise SweepConfigError(f"{self.describe(flats[i])}: {e}") from None

        def leaf(x):
            return np.asarray(x, dtype=dtype)

        problem = dataclasses.replace(example, class_sizes=leaf(sizes), column_weights=leaf(weights),
                                      lam_w=leaf(lam_w), lam_h=leaf(num["lam_h"]), lam_b=leaf(lam_b))
        seed = p.get("seed", self.config.solver.seed)
        seeds = np.broadcast_to(np.asarray(seed, dtype=np.int64), (n,)).copy()
        labels = {k: np.asarray(num[k], np.float64) for k in LABELS}
        return Batch(flats, problem, seeds, labels)


def _shown(values: np.ndarray):
    return float(values[0]) if values.size == 1 else values.tolist()



# ---- groups --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class Group:
    """Points that share one compiled program.

    **Fields:**

    - `key`: the static structure of their problems (the column count of explicit problems left out).
    - `tag`: a short readable name of it (chunk file names).
    - `indices`: the points' flat positions in the grid, ascending.
    - `columns`: the width explicit problems are padded to (`None` when weighted).
    - `chunk_size`: points per chunk.
    - `example`: the group's problem without numbers (`jax.ShapeDtypeStruct` leaves, explicit ones
      as wide as the group's widest point): its statics, shapes and dtype size chunks, check the
      solver and shape each chunk's `Grid.batch`.
    - `point_bytes`: the estimated peak memory of one point's solve (`ufm_jax._memory.point_bytes`).
    """

    key: tuple
    tag: str
    indices: np.ndarray
    columns: int | None
    chunk_size: int
    example: Problem
    point_bytes: int = 0

    @property
    def num_chunks(self) -> int:
        return -(-len(self.indices) // self.chunk_size)

    def chunk(self, i: int) -> np.ndarray:
        """The flat positions of chunk `i`."""
        return self.indices[i * self.chunk_size:(i + 1) * self.chunk_size]

    @property
    def batch_bytes(self) -> int:
        """The estimated peak memory of one chunk's solve."""
        return self.chunk_size * self.point_bytes


def group_key(problem: Problem) -> tuple:
    """`structure(problem)` without the column count of an explicit problem (padding equalises it)."""
    if not problem.weighted:
        w = problem.column_weights
        problem = dataclasses.replace(problem, column_weights=jax.ShapeDtypeStruct((*w.shape[:-1], 1),
                                                                                   w.dtype))
    return structure(problem)


def _abstract(problem: Problem, columns: int) -> Problem:
    """`problem` with shapes and dtypes for leaves (`jax.ShapeDtypeStruct`), `columns` columns per
    class: what a group needs of its example (statics, shapes, dtype), without its numbers."""
    example = jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype), problem)
    w = example.column_weights
    return dataclasses.replace(example, column_weights=jax.ShapeDtypeStruct((w.shape[0], columns),
                                                                            w.dtype))


def _tag(problem: Problem, columns: int | None) -> str:
    widths = "x".join(map(str, problem.widths)) or "-"
    width = f"n{columns}" if columns is not None else f"m{problem.columns_per_class}"
    return (f"{problem.loss}-{problem.bias}{'-nonneg' if problem.nonneg else ''}-d{problem.dim}-w{widths}"
            f"-K{problem.num_classes}-{width}")


def history_bytes(config: SweepConfig, example: Problem) -> tuple[int, str]:
    """The bytes of the trajectories one point's solve holds at once with `run.history = K` (0 without),
    and how they add up: every start solved at once (`solver.starts`, or a search round's, padded to a
    power of two: at most `2 × ROUND_STARTS`) records `max_steps/K + 2` records of the iteration and
    `TRAJECTORY_FIELDS` (8 bytes each)."""
    every = config.run.history
    if every is None:
        return 0, ""
    s = config.solver
    try:
        max_steps = make_solver(s.method, example, "solver.method", max_steps=s.max_steps,
                                gtol=s.gtol).max_steps
    except ValueError:
        return 0, ""  # `plan` names the solver error
    rows = s.starts if s.starts is not None else 2 * ROUND_STARTS
    records = history_records(max_steps, every)
    numbers = len(TRAJECTORY_FIELDS) + 1
    total = rows * records * numbers * 8
    return total, (f"{rows} starts solved at once × {records} records (max_steps = {max_steps}) × "
                   f"{numbers} numbers × 8 bytes")


def _chunk_size(config: SweepConfig, per_point: int, count: int, num_devices: int,
                recorded: int = 0, how: str = "") -> int:
    """`run.chunk_size` (at most the group's `count` points, rounded up to a multiple of the device
    count: a chunk is padded to its size), or as many points as `run.memory_gb` holds (at the estimated
    `per_point` bytes), at most 256, rounded up to a multiple of the device count; with `run.history`, no more points than
    the trajectories a solve may record (`MAX_HISTORY_BYTES`, at `recorded` bytes a point) allow.

    **Raises:** `SweepConfigError` naming `run.history` when one point's records (or, with a fixed
    `run.chunk_size`, one chunk's) would not fit.
    """
    every, limit = config.run.history, MAX_HISTORY_BYTES
    if recorded > limit:
        raise SweepConfigError(f"run.history={every}: one point's trajectories need {recorded / 2**30:.3g} "
                               f"GiB ({how}), more than the {limit / 2**30:.0f} GiB a solve may record: "
                               "record less often (a larger run.history) or set a smaller "
                               "solver.max_steps.")
    if config.run.chunk_size:
        if recorded * config.run.chunk_size > limit:
            raise SweepConfigError(f"run.history={every}: a chunk of run.chunk_size = "
                                   f"{config.run.chunk_size} points records "
                                   f"{recorded * config.run.chunk_size / 2**30:.3g} GiB ({how} a point), "
                                   f"more than the {limit / 2**30:.0f} GiB a solve may record: set a "
                                   "smaller run.chunk_size (0 sizes it), or a larger run.history.")
        return min(config.run.chunk_size, -(-count // num_devices) * num_devices)
    size = int(max(1, min(256, config.run.memory_gb * 2**30 // max(per_point, 1), count)))
    size = -(-size // num_devices) * num_devices
    if recorded:
        most = limit // recorded
        size = min(size, most // num_devices * num_devices or most)
    return size


def _check_sizes(grid: Grid, shape_values: dict, size_axes: list[int], explicit: bool) -> int:
    """Check the class sizes of every point that has these shape-axis values (vectorised over the size
    axes' product) and return their largest class size (the explicit width)."""
    config = grid.config
    names = [grid.names[a] for a in size_axes]
    grids = np.meshgrid(*[np.asarray(grid.values[a], np.float64) for a in size_axes], indexing="ij")
    n = int(grids[0].size) if grids else 1
    p = {**_fixed(config), **shape_values, **{name: g.ravel() for name, g in zip(names, grids)}}
    p.pop("lam_w", None), p.pop("lam_h", None), p.pop("lam_z", None)
    p["lam_w"], p["lam_h"] = 1.0, 1.0  # sizes only
    num = _numbers(p, n, explicit)
    first_bad = np.flatnonzero(num["bad"] != "")
    sizes = num["sizes"]
    dtype = jax.dtypes.canonicalize_dtype(np.float64)  # the working precision
    beyond = np.any(V.unrepresentable(sizes, dtype), axis=1) | V.unrepresentable(sizes.sum(axis=1), dtype)
    for i in np.flatnonzero(beyond)[:1] if not first_bad.size else ():
        num["bad"][i] = (f"class sizes {sizes[i].tolist()} (N = {sizes[i].sum():.3g}) are beyond the range "
                         f"of {dtype.name}, the working precision")
        first_bad = np.asarray([i])
    if first_bad.size:
        i = int(first_bad[0])
        at = {**shape_values, **{name: float(g.ravel()[i]) for name, g in zip(names, grids)}}
        raise SweepConfigError(f"{_describe(at)}: {num['bad'][i]}.")
    return int(np.max(sizes))


def _lambda_corners(grid: Grid) -> list[dict]:
    """The extreme values of the `λ` axes, combined: every derived `λ` (`λ_W = λ_Z √ρ`, ...) is monotone
    in each of them, so its smallest and largest values over the grid lie among these points."""
    axes = [a for a, name in enumerate(grid.names) if name in LAMBDA_AXES
            and not isinstance(grid.values[a][0], tuple)]
    choices = [list(dict.fromkeys((min(grid.values[a]), max(grid.values[a])))) for a in axes]
    return [dict(zip((grid.names[a] for a in axes), combo)) for combo in itertools.product(*choices)]


def groups(grid: Grid, num_devices: int = 1) -> list[Group]:
    """Split the grid into groups (in order of first appearance) and size their chunks.

    Iterates over the shape axes' values only (checking every point's class sizes vectorised), builds
    one problem per group (and per extreme `λ`, to check the working precision), never every point.

    **Raises:** `SweepConfigError` naming the first point that cannot be built.
    """
    config = grid.config
    # Per-layer lam_w lists set the depth when neither depth nor widths is given: then a shape axis.
    shape_axes = [a for a, name in enumerate(grid.names) if name in SHAPE_AXES
                  or (name == "lam_w" and isinstance(grid.values[a][0], tuple))]
    size_axes = [a for a, name in enumerate(grid.names) if name in SIZE_AXES]
    explicit = config.problem.per_class is None
    # Group by the numbers that make the structure (K, d, widths); one problem per group is built.
    combos: dict[tuple, list[tuple[int, ...]]] = {}
    first: dict[tuple, dict] = {}
    columns: dict[tuple, int] = {}
    for combo in itertools.product(*(range(grid.shape[a]) for a in shape_axes)):
        values = {grid.names[a]: grid.values[a][i] for a, i in zip(shape_axes, combo)}
        p = {**_fixed(config), **values}
        if "lam_w" in values and "depth" not in p and "widths" not in p:
            p["depth"] = len(values["lam_w"])
        num_classes = len(p["class_sizes"]) if "class_sizes" in p else p["k_a"] + p["k_b"]
        widths = p.get("widths")
        if widths is None:
            widths = (p["dim"],) * (p.get("depth", _default_depth(p)) - 1)
        static = (num_classes, p["dim"], tuple(widths))
        largest = _check_sizes(grid, values, size_axes, explicit)
        combos.setdefault(static, []).append(combo)
        first.setdefault(static, combo)
        columns[static] = max(columns.get(static, 0), largest)
    corners = _lambda_corners(grid)
    out = []
    for static, members in combos.items():
        index = [0] * len(grid.shape)
        for a, i in zip(shape_axes, first[static]):
            index[a] = i
        base = {name: grid.values[a][i] for a, (name, i) in enumerate(zip(grid.names, index))}
        # Checked by make_problem as a one-column-per-class problem (a large explicit class is not
        # written out here); the λ extremes too, which raise naming a λ the precision cannot hold.
        probe = _make_point(config, base, tuple(index), per_class=1).problem
        # The λ's do not depend on the group: their extremes are checked with the first one.
        for corner in corners if not out else ():
            if corner:
                _make_point(config, {**base, **corner}, per_class=1)
        width = columns[static] if explicit else None
        example = _abstract(probe, config.problem.per_class if width is None else width)
        if width is not None:
            example = dataclasses.replace(example, weighted=False)
        mask = np.zeros([grid.shape[a] for a in shape_axes], dtype=bool)
        mask[tuple(np.asarray(members).T)] = True
        full = np.expand_dims(mask, [a for a in range(len(grid.shape)) if a not in shape_axes])
        indices = np.flatnonzero(np.broadcast_to(full, grid.shape))
        recorded, how = history_bytes(config, example)
        per_point = point_bytes(example, config.solver.batch_starts) + recorded
        size = _chunk_size(config, per_point, len(indices), num_devices, recorded, how)
        out.append(Group(group_key(example), _tag(example, width), indices, width, size, example,
                         per_point))
    return out


def _default_depth(p: Mapping) -> int:
    lam_w = p.get("lam_w")
    return len(lam_w) if isinstance(lam_w, tuple) and len(lam_w) > 1 else 1
