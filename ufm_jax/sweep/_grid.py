"""Expand a `SweepConfig` into grid points, shape groups and chunks (all in NumPy, before any compile).

A *point* is one problem: the fixed problem keys plus one value of every axis, resolved into the
arguments of `ufm_jax.make_problem` (class sizes from the two-cluster keys, `λ_W, λ_H` from `λ_Z`).
Points whose arrays have the same shapes (loss, bias, H >= 0, d, widths, K, and m = per_class in weighted
mode) form one *group*: one compiled program. Explicit problems in a group are padded with `columns=` to
the group's largest `n_k`. A group is cut into *chunks* of equal size (the last one padded by repeating
its last point), so every chunk of a group reuses the group's program.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math

import numpy as np

from .._problem import make_problem
from ._config import FAMILIES, SweepConfig, SweepConfigError


@dataclasses.dataclass(frozen=True)
class Point:
    """One grid point.

    **Fields:**

    - `index`: its position on every axis (the dataset's coordinates).
    - `values`: `{axis: value}`.
    - `spec`: the resolved problem: `loss, class_sizes, dim, widths, lam_w, lam_h, lam_b, free_bias,
      nonneg, per_class, seed` and, for reference, `lam_z, lam_ratio, k_a, k_b, n_a, n_b, ratio, n_total`.
    """

    index: tuple[int, ...]
    values: dict
    spec: dict

    @property
    def key(self) -> str:
        """A deterministic id of the point's problem and PRNG seed."""
        return hashlib.sha256(json.dumps(self.spec, sort_keys=True).encode()).hexdigest()[:16]

    def problem(self, columns: int | None = None):
        s = self.spec
        return make_problem(
            s["loss"], s["class_sizes"], s["dim"], lam_w=s["lam_w"], lam_h=s["lam_h"], lam_b=s["lam_b"],
            free_bias=s["free_bias"], widths=s["widths"], nonneg=s["nonneg"], per_class=s["per_class"],
            columns=columns if s["per_class"] is None else None,
        )

    def shape_key(self) -> tuple:
        s = self.spec
        bias = "regularised" if s["lam_b"] is not None else ("free" if s["free_bias"] else "none")
        return (s["loss"], bias, s["nonneg"], s["dim"], tuple(s["widths"]), len(s["class_sizes"]),
                s["per_class"])


@dataclasses.dataclass(frozen=True)
class Group:
    """Points that share one compiled program; `columns` pads explicit problems (None when weighted)."""

    key: tuple
    points: tuple[Point, ...]
    columns: int | None
    chunk_size: int

    @property
    def tag(self) -> str:
        loss, bias, nonneg, dim, widths, K, m = self.key
        w = "x".join(map(str, widths)) or "-"
        return f"{loss}-{bias}{'-nonneg' if nonneg else ''}-d{dim}-w{w}-K{K}-" + (
            f"m{m}" if m is not None else f"n{self.columns}")

    def chunks(self) -> list[tuple[Point, ...]]:
        c = self.chunk_size
        return [self.points[i:i + c] for i in range(0, len(self.points), c)]


def _fmt(v) -> str:
    return json.dumps(list(v)) if isinstance(v, tuple) else repr(v)


def resolve(config: SweepConfig, values: dict) -> dict:
    """The problem arguments of one point; `SweepConfigError` naming the point when they are invalid."""
    p = {**config.problem, **values}
    where = ", ".join(f"{k}={_fmt(v)}" for k, v in values.items()) or "the fixed problem"
    fam = FAMILIES[p["family"]]
    spec: dict = {"loss": fam["loss"], "free_bias": p["free_bias"], "nonneg": p["nonneg"],
                  "per_class": p.get("per_class"), "dim": p["dim"]}
    if "class_sizes" in p:
        sizes = np.asarray(p["class_sizes"], dtype=np.float64)
    else:
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
            raise SweepConfigError(f"point ({where}): n_a={n_a!r}, n_b={n_b!r}: class sizes must be > 0 "
                                   "(n_total is too small).")
        spec.update(k_a=k_a, k_b=k_b, n_a=float(n_a), n_b=float(n_b), ratio=float(n_a / n_b))
        sizes = np.asarray([n_a] * k_a + [n_b] * k_b, dtype=np.float64)
    if spec["per_class"] is None:
        rounded = np.round(sizes)
        if np.any(np.abs(sizes - rounded) > 1e-9 * np.maximum(1, sizes)):
            raise SweepConfigError(f"point ({where}): class sizes {sizes.tolist()} are not integers; "
                                   "explicit mode needs integer n_k (set problem.per_class for weighted "
                                   "mode).")
        sizes = rounded
    spec["class_sizes"] = [float(x) for x in sizes]
    spec["n_total"] = float(sizes.sum())
    if "widths" in p:
        spec["widths"] = [int(w) for w in p["widths"]]
    else:
        spec["widths"] = [int(p["dim"])] * (p.get("depth", 1) - 1)
    depth = len(spec["widths"]) + 1
    if "lam_z" in p:
        rho = p.get("lam_ratio", 1.0)
        spec["lam_w"] = p["lam_z"] * math.sqrt(rho)
        spec["lam_h"] = p["lam_z"] / math.sqrt(rho)
        spec.update(lam_z=p["lam_z"], lam_ratio=rho)
    else:
        lam_w = p["lam_w"]
        if isinstance(lam_w, tuple) and len(lam_w) not in (1, depth):
            raise SweepConfigError(f"point ({where}): lam_w has {len(lam_w)} values: expected 1 or "
                                   f"L = {depth} (W_1..W_L).")
        spec["lam_w"] = list(lam_w) if isinstance(lam_w, tuple) else lam_w
        spec["lam_h"] = p["lam_h"]
        lw0 = lam_w[0] if isinstance(lam_w, tuple) else lam_w
        spec.update(lam_z=math.sqrt(lw0 * p["lam_h"]), lam_ratio=lw0 / p["lam_h"])
    spec["lam_b"] = p.get("lam_b")
    spec["seed"] = int(p.get("seed", config.solver["seed"]))
    spec["family"] = p["family"]
    return spec


def expand(config: SweepConfig) -> list[Point]:
    """Every grid point, in C order over the axes; each validated by `make_problem` (no compile)."""
    names = config.axis_names
    lists = [values for _, values in config.axes]
    points = []
    for index in itertools.product(*(range(len(v)) for v in lists)):
        values = {name: lists[i][j] for i, (name, j) in enumerate(zip(names, index))}
        point = Point(tuple(index), values, resolve(config, values))
        try:
            point.problem()
        except ValueError as e:
            where = ", ".join(f"{k}={_fmt(v)}" for k, v in values.items()) or "the fixed problem"
            raise SweepConfigError(f"point ({where}): {e}") from None
        points.append(point)
    return points


def _param_count(point: Point, columns: int | None) -> int:
    s = point.spec
    dims = [s["dim"], *s["widths"], len(s["class_sizes"])]
    m = s["per_class"] if s["per_class"] is not None else columns
    return sum(a * b for a, b in zip(dims[:-1], dims[1:])) + len(s["class_sizes"]) * (m * s["dim"] + 1)


def groups(config: SweepConfig, points: list[Point], num_devices: int = 1) -> list[Group]:
    """Split points into shape groups (first-appearance order) and size their chunks.

    `run.chunk_size = 0` sizes chunks to `run.memory_gb`: about `starts × params × 8 B × 40` per point
    (L-BFGS history of 10 pairs, line search, vmap temporaries), at most 256 points, rounded up to a
    multiple of the device count.
    """
    by_key: dict[tuple, list[Point]] = {}
    for p in points:
        by_key.setdefault(p.shape_key(), []).append(p)
    out = []
    starts = config.solver["starts"]
    for key, pts in by_key.items():
        columns = None if key[-1] is not None else int(max(max(p.spec["class_sizes"]) for p in pts))
        size = config.run["chunk_size"]
        if size == 0:
            per_point = starts * _param_count(pts[0], columns) * 8 * 40
            size = int(max(1, min(256, config.run["memory_gb"] * 2**30 // per_point)))
            size = min(size, len(pts))
            size = -(-size // num_devices) * num_devices
        out.append(Group(key, tuple(pts), columns, size))
    return out
