"""The points of a sweep, their compiled groups and chunks; all in NumPy, before any compile.

A *point* is one problem: the fixed problem values plus one value of every axis, built into a `Problem`
by the family preset (class sizes from the two-cluster keys, `λ_W, λ_H` from `λ_Z`). Points are made on
demand from their position (`Grid.point`), chunk by chunk: a plan holds positions, never the points.

Points whose problems have the same static structure (`ufm_jax._problem.structure`: loss, bias, H >= 0,
d, widths, K and the array shapes) form one *group*: one compiled program. Explicit problems of a group
differ in their column count only; they are padded (`pad_columns`) to the group's widest. A group is cut
into *chunks* of equal size (the last one padded by repeating its last point), so every chunk of a group
reuses the group's program.

Only some axes can change a structure or make a point invalid: `dim`, `depth`, `widths` and the class
sizes (`class_sizes`, `k_a`, `k_b`, `n_a`, `n_b`, `ratio`, `n_total`). Grouping and checking iterate
over those axes alone; the others (every `λ`, `seed`) only change array values.
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

from .._families import PRESETS
from .._problem import Problem, pad_columns, structure
from ._config import SweepConfig, SweepConfigError

STRUCTURAL_AXES = ("dim", "depth", "widths", "class_sizes", "k_a", "k_b", "n_a", "n_b", "ratio",
                   "n_total")
"""Axes whose values can change a point's structure (or make its class sizes invalid)."""

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
    text = ", ".join(f"{k}={json.dumps(list(v)) if isinstance(v, tuple) else repr(v)}"
                     for k, v in values.items())
    return f"point ({text or 'the fixed problem'})"


def _class_sizes(p: dict, where: str) -> tuple[list[float], dict[str, float]]:
    """The class sizes of a point, and its two-cluster labels."""
    if "class_sizes" in p:
        sizes = [float(x) for x in p["class_sizes"]]
        return sizes, {"n_a": math.nan, "n_b": math.nan, "ratio": math.nan}
    k_a, k_b = p["k_a"], p["k_b"]
    n_a, n_b, r, total = (p.get(k) for k in ("n_a", "n_b", "ratio", "n_total"))
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
    if not (n_a > 0 and n_b > 0):
        raise SweepConfigError(f"{where}: n_a={n_a!r}, n_b={n_b!r}: class sizes must be > 0 (n_total is "
                               "too small).")
    return [float(n_a)] * k_a + [float(n_b)] * k_b, {"n_a": n_a, "n_b": n_b, "ratio": n_a / n_b}


def make_point(config: SweepConfig, values: Mapping[str, Any], index: tuple[int, ...] = ()) -> Point:
    """The point of `config` with axis values `values` (any values, on the grid or not).

    **Raises:** `SweepConfigError` naming the point when its problem cannot be built.
    """
    p = {**config.problem.given(), **values}
    where = _describe(values)
    sizes, labels = _class_sizes(p, where)
    per_class = p.get("per_class")
    if per_class is None:
        rounded = np.round(sizes)
        if np.any(np.abs(np.asarray(sizes) - rounded) > 1e-9 * np.maximum(1, rounded)):
            raise SweepConfigError(f"{where}: class sizes {sizes} are not integers; explicit mode needs "
                                   "integer n_k (set problem.per_class for weighted mode).")
        sizes = [float(x) for x in rounded]
    if "lam_z" in p:
        rho = p.get("lam_ratio", 1.0)
        lam_w, lam_h = p["lam_z"] * math.sqrt(rho), p["lam_z"] / math.sqrt(rho)
    else:
        lam_w, lam_h = p["lam_w"], p["lam_h"]
    lam_w1 = lam_w[0] if isinstance(lam_w, tuple) else lam_w
    labels.update(lam_z=math.sqrt(lam_w1 * lam_h), lam_ratio=lam_w1 / lam_h, n_total=float(sum(sizes)))
    build = PRESETS[p["family"]].preset(p["family"])
    try:
        problem = build(sizes, p["dim"], lam_w=lam_w, lam_h=lam_h, lam_b=p.get("lam_b"),
                        free_bias=p["free_bias"], widths=p.get("widths"), depth=p.get("depth"),
                        per_class=per_class)
    except ValueError as e:
        raise SweepConfigError(f"{where}: {e}") from None
    seed = int(p.get("seed", config.solver.seed))
    return Point(tuple(index), dict(values), problem, seed, {k: float(labels[k]) for k in LABELS})


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


@dataclasses.dataclass(frozen=True, eq=False)
class Group:
    """Points that share one compiled program.

    **Fields:**

    - `key`: the static structure of their problems (the column count of explicit problems left out).
    - `tag`: a short readable name of it (chunk file names).
    - `indices`: the points' flat positions in the grid, ascending.
    - `columns`: the width explicit problems are padded to (`None` when weighted).
    - `chunk_size`: points per chunk.
    - `example`: the problem of one point, padded (to size chunks and check the solver).
    """

    key: tuple
    tag: str
    indices: np.ndarray
    columns: int | None
    chunk_size: int
    example: Problem

    @property
    def num_chunks(self) -> int:
        return -(-len(self.indices) // self.chunk_size)

    def chunk(self, i: int) -> np.ndarray:
        """The flat positions of chunk `i`."""
        return self.indices[i * self.chunk_size:(i + 1) * self.chunk_size]


def group_key(problem: Problem) -> tuple:
    """`structure(problem)` without the column count of an explicit problem (padding equalises it)."""
    if not problem.weighted:
        problem = dataclasses.replace(problem, column_weights=problem.column_weights[:, :1])
    return structure(problem)


def _tag(problem: Problem, columns: int | None) -> str:
    widths = "x".join(map(str, problem.widths)) or "-"
    width = f"n{columns}" if columns is not None else f"m{problem.columns_per_class}"
    return (f"{problem.loss}-{problem.bias}{'-nonneg' if problem.nonneg else ''}-d{problem.dim}-w{widths}"
            f"-K{problem.num_classes}-{width}")


def _chunk_size(config: SweepConfig, problem: Problem, count: int, num_devices: int) -> int:
    """`run.chunk_size`, or sized to `run.memory_gb`: about `starts × params × 8 B × 40` per point
    (L-BFGS history of 10 pairs, line search, vmap temporaries), at most 256 points, rounded up to a
    multiple of the device count."""
    if config.run.chunk_size:
        return config.run.chunk_size
    dims = problem.layer_dims
    params = sum(a * b for a, b in zip(dims[:-1], dims[1:])) + problem.num_classes * (
        problem.columns_per_class * problem.dim + 1)
    per_point = config.solver.starts * params * 8 * 40
    size = int(max(1, min(256, config.run.memory_gb * 2**30 // per_point, count)))
    return -(-size // num_devices) * num_devices


def groups(grid: Grid, num_devices: int = 1) -> list[Group]:
    """Split the grid into groups (in order of first appearance) and size their chunks.

    Builds one point per combination of the structural axes' values (checking it), not every point.
    """
    axes = [a for a, name in enumerate(grid.names) if name in STRUCTURAL_AXES]
    combos: dict[tuple, list[tuple[int, ...]]] = {}
    examples: dict[tuple, Problem] = {}
    columns: dict[tuple, int] = {}
    for combo in itertools.product(*(range(grid.shape[a]) for a in axes)):
        index = [0] * len(grid.shape)
        for a, i in zip(axes, combo):
            index[a] = i
        problem = grid.point_at(tuple(index)).problem
        key = group_key(problem)
        combos.setdefault(key, []).append(combo)
        examples.setdefault(key, problem)
        columns[key] = max(columns.get(key, 0), problem.columns_per_class)
    out = []
    for key, members in combos.items():
        mask = np.zeros([grid.shape[a] for a in axes], dtype=bool)
        mask[tuple(np.asarray(members).T)] = True
        full = np.expand_dims(mask, [a for a in range(len(grid.shape)) if a not in axes])
        indices = np.flatnonzero(np.broadcast_to(full, grid.shape))
        width = None if examples[key].weighted else columns[key]
        example = examples[key] if width is None else pad_columns(examples[key], width)
        size = _chunk_size(grid.config, example, len(indices), num_devices)
        out.append(Group(key, _tag(example, width), indices, width, size, example))
    return out
