"""Sweep configuration: a TOML file and CLI flags for the same keys, parsed and validated into `SweepConfig`.

Schema (every key optional unless said; `ufm_jax/sweep/default.toml` is a full example):

    name = "minority-collapse"         # used in titles and the report
    output = "ufm-results"             # results folder

    [problem]                          # fixed values; any key marked (axis) may instead be a [grid] axis
    family = "ce"                      # ce | relu_ce | mse | biased_mse | deep_linear_mse   (required)
    dim = 10                           # d (axis)
    depth = 1                          # L (axis); or widths = [d_1, ..] (axis: a list of lists)
    per_class = 1                      # weighted mode with m columns per class; omit for explicit mode
    nonneg = false                     # H >= 0 (relu_ce sets it)
    free_bias = false                  # unpenalised bias (biased_mse sets it)
    lam_b = 1e-3                       # regularised bias (axis)
    # class sizes: either explicit vectors ...
    class_sizes = [500, 500, 100, 100] # (axis: a list of vectors)
    # ... or two clusters: k_a, k_b (axes) and exactly two of n_a, n_b, ratio (= n_a/n_b >= 1),
    # n_total (= k_a n_a + k_b n_b), each an axis or fixed
    # regularisation: lam_w and lam_h (axes), or lam_z = sqrt(lam_w lam_h) (axis) with the fixed ratio
    # lam_ratio = lam_w/lam_h (default 1, axis): lam_w = lam_z sqrt(ratio), lam_h = lam_z / sqrt(ratio)

    [grid]                             # one entry per axis, in the order of the dataset's dimensions
    lam_z = { start = 1e-4, stop = 1e-2, num = 12, spacing = "log" }   # or spacing = "linear"
    ratio = [1, 2, 5, 10]              # explicit values
    seed = [0, 1, 2]                   # PRNG seeds of the random starts (also an axis)

    [solver]
    method = "auto"                    # auto | lbfgs | lockstep_lbfgs | projected_gradient | gradient_descent | adam
    max_steps = 5000                   # default: the method's own
    gtol = 1e-9                        # default: 1e-9 in float64
    starts = 1                         # random starts per point (the best is kept)
    seed = 0                           # PRNG seed when `seed` is not an axis
    init_scale = 1.0

    [run]
    chunk_size = 0                     # points per compiled batch; 0 = sized to memory_gb
    memory_gb = 2.0
    shard = true                       # shard each batch over jax.devices()
    slots = 0                          # problems iterated at a time per device, the rest queued;
                                       # 0 = ufm_jax.DEFAULT_SLOTS (32)

    [plot]
    metrics = ["minority_logit_spread", "gap"]
    x = "lam_z"                        # default: the first axis
    y = "ratio"                        # default: the second axis (heat map), none → line plot
    formats = ["png", "pdf"]

    [threshold]                        # defaults for `ufm threshold`
    axis = "lam_z"
    lo = 1e-4
    hi = 1e-2
    metric = "minority_logit_spread"
    level = 1e-6
    rtol = 1e-3
    boundary = "minority_collapse"

CLI: `--set problem.n_b=100` (or `--set n_b=100`, the section found from the key) sets any key, the value
read as TOML (`--set plot.metrics='["nc1"]'`); `--axis lam_z=log:1e-4:1e-2:12`, `--axis ratio=1,2,5`
or `--axis 'class_sizes=[[5,1],[5,2]]'` adds or replaces an axis.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import tomllib
from pathlib import Path
from typing import Any

import numpy as np


class SweepConfigError(ValueError):
    """A sweep configuration that cannot run; the message names the key (and the file line)."""


FAMILIES: dict[str, dict[str, Any]] = {
    "ce": {"loss": "ce"},
    "relu_ce": {"loss": "ce", "nonneg": True},
    "mse": {"loss": "mse"},
    "biased_mse": {"loss": "mse", "free_bias": True},
    "deep_linear_mse": {"loss": "mse"},
}

# key → kind. Kinds: pos (float > 0), ratio (float >= 1), count (int >= 1), seed (int >= 0),
# sizes (vector of floats > 0, len >= 2), widths (vector of ints >= 1, may be empty).
AXES: dict[str, str] = {
    "lam_w": "pos", "lam_h": "pos", "lam_b": "pos", "lam_z": "pos", "lam_ratio": "pos",
    "ratio": "ratio", "n_a": "pos", "n_b": "pos", "n_total": "pos", "k_a": "count", "k_b": "count",
    "class_sizes": "sizes", "depth": "count", "widths": "widths", "dim": "count", "seed": "seed",
}
PROBLEM_KEYS = {"family", "per_class", "nonneg", "free_bias", *AXES} - {"seed"}
SECTIONS: dict[str, dict[str, type | tuple]] = {
    "": {"name": str, "output": str},
    "solver": {"method": str, "max_steps": int, "gtol": (int, float), "starts": int, "seed": int,
               "init_scale": (int, float)},
    "run": {"chunk_size": int, "memory_gb": (int, float), "shard": bool, "slots": int},
    "plot": {"metrics": list, "x": str, "y": str, "formats": list},
    "threshold": {"axis": str, "lo": (int, float), "hi": (int, float), "metric": str,
                  "level": (int, float), "rtol": (int, float), "boundary": str, "max_steps": int},
}
METHODS = ("auto", "lbfgs", "lockstep_lbfgs", "projected_gradient", "gradient_descent", "adam")
DEFAULTS = {
    "solver": {"method": "auto", "starts": 1, "seed": 0, "init_scale": 1.0},
    "run": {"chunk_size": 0, "memory_gb": 2.0, "shard": True, "slots": 0},
    "plot": {"formats": ["png", "pdf"]},
    "threshold": {"metric": "minority_logit_spread", "level": 1e-6, "rtol": 1e-3, "max_steps": 40},
}
SIZE_KEYS = ("n_a", "n_b", "ratio", "n_total")


@dataclasses.dataclass(frozen=True)
class SweepConfig:
    """A validated sweep: fixed problem values, the axes (expanded to explicit values) and settings.

    **Fields:**

    - `name`, `output`: the sweep's name and results folder.
    - `problem`: fixed problem keys (see the module docstring).
    - `axes`: `((name, (value, ...)), ...)` in dimension order; vectors are tuples.
    - `solver`, `run`, `plot`, `threshold`: their sections, with defaults filled in.
    - `source`: the TOML file it came from, or `None`.
    """

    name: str
    output: str
    problem: dict
    axes: tuple
    solver: dict
    run: dict
    plot: dict
    threshold: dict
    source: str | None = None

    @property
    def axis_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.axes)

    def to_dict(self) -> dict:
        """The canonical, JSON- and TOML-serialisable form (axes as explicit value lists)."""
        return {
            "name": self.name,
            "output": self.output,
            "problem": _plain(self.problem),
            "grid": {name: _plain(list(values)) for name, values in self.axes},
            "solver": _plain(self.solver),
            "run": _plain(self.run),
            "plot": _plain(self.plot),
            "threshold": _plain(self.threshold),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def to_toml(self) -> str:
        return dumps_toml(self.to_dict())

    def fingerprint(self) -> str:
        """A hash of everything that changes the numbers (not the output folder or the plots)."""
        d = self.to_dict()
        keep = {k: d[k] for k in ("problem", "grid", "solver")}
        keep["chunk_size"] = d["run"]["chunk_size"]
        if d["run"]["slots"]:
            keep["slots"] = d["run"]["slots"]
        return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:16]


def _plain(x):
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    return x


# ---- TOML writing (tomllib reads only) -----------------------------------------------------------------


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + " }"
    if v is None:
        raise TypeError("TOML has no null")
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def dumps_toml(d: dict) -> str:
    """Write a dict of scalars and one level of tables as TOML (floats round-trip exactly)."""
    lines = [f"{k} = {_toml_value(v)}" for k, v in d.items() if not isinstance(v, dict) and v is not None]
    for k, v in d.items():
        if isinstance(v, dict):
            lines += ["", f"[{k}]"]
            lines += [f"{kk} = {_toml_value(vv)}" for kk, vv in v.items() if vv is not None]
    return "\n".join(lines) + "\n"


# ---- errors with file lines ----------------------------------------------------------------------------


class _Where:
    """Names a key as `file:line: section.key` when the key is in the file's text."""

    def __init__(self, path: str | None, text: str | None):
        self.path, self.text = path, text

    def line(self, section: str, key: str | None) -> int | None:
        if self.text is None:
            return None
        current = ""
        for i, raw in enumerate(self.text.splitlines(), 1):
            s = raw.strip()
            m = re.match(r"^\[\s*([A-Za-z0-9_.\-]+)\s*\]", s)
            if m:
                current = m.group(1)
                if key is None and current == section:
                    return i
                continue
            if key is not None and current == section and re.match(rf"^{re.escape(key)}\s*=", s):
                return i
        return None

    def fail(self, section: str, key: str | None, message: str) -> SweepConfigError:
        name = ".".join(x for x in (section, key) if x)
        line = self.line(section, key)
        where = ""
        if self.path is not None:
            where = f"{self.path}:{line}: " if line else f"{self.path}: "
        return SweepConfigError(f"{where}{name}: {message}")


# ---- axes -------------------------------------------------------------------------------------------------


def parse_axis_flag(flag: str) -> tuple[str, Any]:
    """`NAME=SPEC` from the command line: `log:LO:HI:NUM`, `lin:LO:HI:NUM`, `1,2,3`, or a TOML value."""
    if "=" not in flag:
        raise SweepConfigError(f"--axis {flag!r}: expected NAME=SPEC, e.g. lam_z=log:1e-4:1e-2:12.")
    name, spec = (s.strip() for s in flag.split("=", 1))
    m = re.fullmatch(r"(log|lin|linear):([^:]+):([^:]+):([^:]+)", spec)
    if m:
        try:
            return name, {"start": float(m.group(2)), "stop": float(m.group(3)), "num": int(m.group(4)),
                          "spacing": "log" if m.group(1) == "log" else "linear"}
        except ValueError as e:
            raise SweepConfigError(f"--axis {name}: {spec!r} is not KIND:START:STOP:NUM ({e}).") from None
    value = _toml_scalar(spec)
    if isinstance(value, str):
        parts = [p for p in spec.split(",")]
        value = [_toml_scalar(p.strip()) for p in parts]
        if any(isinstance(p, str) for p in value):
            raise SweepConfigError(f"--axis {name}: {spec!r} is not a list of values, log:.., lin:.. "
                                   "or a TOML value.")
    return name, value


def _toml_scalar(text: str):
    try:
        return tomllib.loads(f"x = {text}")["x"]
    except tomllib.TOMLDecodeError:
        return text


def _expand(name: str, spec, where: _Where) -> tuple:
    kind = AXES.get(name)
    if kind is None:
        raise where.fail("grid", name, f"unknown axis; allowed axes: {sorted(AXES)}.")
    if isinstance(spec, dict):
        allowed = {"start", "stop", "num", "spacing", "values"}
        extra = set(spec) - allowed
        if extra:
            raise where.fail("grid", name, f"unknown key(s) {sorted(extra)} in the axis table; allowed: "
                             f"{sorted(allowed)}.")
        if "values" in spec:
            spec = spec["values"]
        else:
            missing = {"start", "stop", "num"} - set(spec)
            if missing:
                raise where.fail("grid", name, f"missing {sorted(missing)}; expected start, stop, num "
                                 "and spacing = 'log' or 'linear'.")
            spacing = spec.get("spacing", "linear")
            num = spec["num"]
            if isinstance(num, bool) or not isinstance(num, int) or num < 1:
                raise where.fail("grid", name, f"num={num!r}: expected an integer >= 1 (an empty grid "
                                 "cannot run).")
            if kind not in ("pos", "ratio"):
                raise where.fail("grid", name, "start/stop/num spacing is for real-valued axes; give a "
                                 "list of values.")
            lo, hi = spec["start"], spec["stop"]
            for key, v in (("start", lo), ("stop", hi)):
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                    raise where.fail("grid", name, f"{key}={v!r}: expected a finite number.")
            if spacing == "log":
                if lo <= 0 or hi <= 0:
                    raise where.fail("grid", name, f"log spacing needs start, stop > 0, got {lo!r}, "
                                     f"{hi!r}.")
                spec = [float(v) for v in np.logspace(np.log10(lo), np.log10(hi), num)]
                # logspace rounds the end points; keep them exact.
                spec[0], spec[-1] = float(lo), float(hi)
            elif spacing in ("linear", "lin"):
                spec = [float(v) for v in np.linspace(lo, hi, num)]
            else:
                raise where.fail("grid", name, f"spacing={spacing!r}: expected 'log' or 'linear'.")
    if not isinstance(spec, list):
        spec = [spec]
    if len(spec) == 0:
        raise where.fail("grid", name, "empty grid: give at least one value.")
    values = tuple(_check_value(name, v, where, "grid") for v in spec)
    if len(set(values)) != len(values):
        raise where.fail("grid", name, f"duplicate values in {list(spec)!r}.")
    return values


def _check_value(name: str, v, where: _Where, section: str):
    kind = AXES[name]
    bad = lambda msg: where.fail(section, name, f"{v!r} is not allowed: {msg}.")  # noqa: E731
    if kind in ("pos", "ratio"):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise bad("expected a finite number")
        if kind == "pos" and v <= 0:
            raise bad("expected a value > 0")
        if kind == "ratio" and v < 1:
            raise bad("expected a ratio n_a/n_b >= 1 (the majority cluster is A)")
        return float(v)
    if kind in ("count", "seed"):
        if isinstance(v, bool) or not isinstance(v, int):
            raise bad("expected an integer")
        if v < (1 if kind == "count" else 0):
            raise bad(f"expected an integer >= {1 if kind == 'count' else 0}")
        return int(v)
    if kind == "sizes":
        if not isinstance(v, list) or len(v) < 2:
            raise bad("expected a vector of at least K = 2 class sizes")
        for x in v:
            if isinstance(x, bool) or not isinstance(x, (int, float)) or not (math.isfinite(x) and x > 0):
                raise bad("every class size must be a finite number > 0")
        return tuple(float(x) for x in v)
    if kind == "widths":
        if not isinstance(v, list):
            raise bad("expected a list of hidden widths")
        for x in v:
            if isinstance(x, bool) or not isinstance(x, int) or x < 1:
                raise bad("every width must be an integer >= 1")
        return tuple(int(x) for x in v)
    raise AssertionError(kind)


# ---- the whole file --------------------------------------------------------------------------------------


def _find_section(key: str) -> str:
    if key in PROBLEM_KEYS:
        return "problem"
    for section, keys in SECTIONS.items():
        if key in keys:
            return section
    raise SweepConfigError(f"--set {key}: unknown key; give section.key (problem, grid, solver, run, "
                           "plot, threshold).")


def apply_flags(data: dict, sets: list[str] | None = None, axes: list[str] | None = None) -> dict:
    """Apply `--set KEY=VALUE` and `--axis NAME=SPEC` flags to a parsed TOML dict (a copy)."""
    data = json.loads(json.dumps(data))
    for flag in sets or []:
        if "=" not in flag:
            raise SweepConfigError(f"--set {flag!r}: expected KEY=VALUE, e.g. problem.n_b=100.")
        key, text = (s.strip() for s in flag.split("=", 1))
        if "." in key:
            section, key = key.split(".", 1)
        else:
            section = _find_section(key)
        value = _toml_scalar(text)
        if section == "":
            data[key] = value
        elif section == "grid":
            data.setdefault("grid", {})[key] = parse_axis_flag(f"{key}={text}")[1]
        else:
            table = data.setdefault(section, {})
            if not isinstance(table, dict):
                raise SweepConfigError(f"--set {section}.{key}: {section} is not a table.")
            table[key] = value
            if section == "problem" and key in data.get("grid", {}):
                del data["grid"][key]  # a fixed value on the command line replaces the axis
    for flag in axes or []:
        name, spec = parse_axis_flag(flag)
        data.setdefault("grid", {})[name] = spec
        data.get("problem", {}).pop(name, None)
    return data


def load_config(
    path: str | Path | None = None,
    *,
    sets: list[str] | None = None,
    axes: list[str] | None = None,
    text: str | None = None,
) -> SweepConfig:
    """Read a sweep TOML file (default: the built-in `default.toml`), apply CLI flags, and validate.

    **Arguments:**

    - `path`: the TOML file; `None` for the built-in default sweep.
    - `sets`: `--set KEY=VALUE` flags; `axes`: `--axis NAME=SPEC` flags.
    - `text`: TOML text instead of a file (for tests).

    **Returns:** a `SweepConfig`.

    **Raises:** `SweepConfigError` naming the key and the file line, before anything is computed.
    """
    source = None
    if text is None:
        if path is None:
            text = (Path(__file__).parent / "default.toml").read_text()
            source = "default.toml"
        else:
            p = Path(path)
            if not p.is_file():
                raise SweepConfigError(f"{p}: no such file.")
            try:
                text = p.read_text()
            except UnicodeDecodeError:
                raise SweepConfigError(f"{p}: not a TOML file (not UTF-8 text).") from None
            source = str(p)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SweepConfigError(f"{source or '<text>'}: not a valid TOML file: {e}.") from None
    data = apply_flags(data, sets, axes)
    return validate(data, source=source, text=text)


def validate(data: dict, *, source: str | None = None, text: str | None = None) -> SweepConfig:
    """Validate a parsed config dict (see the module docstring) into a `SweepConfig`."""
    where = _Where(source, text)
    known = {"", "problem", "grid", *SECTIONS}
    for key, value in data.items():
        if isinstance(value, dict):
            if key not in known:
                raise where.fail(key, None, f"unknown table; allowed: {sorted(known - {''})}.")
        elif key not in SECTIONS[""]:
            raise where.fail("", key, f"unknown key; allowed top-level keys: {sorted(SECTIONS[''])} "
                             f"and tables {sorted(known - {''})}.")
    top = {k: v for k, v in data.items() if not isinstance(v, dict)}
    for key, value in top.items():
        if not isinstance(value, str):
            raise where.fail("", key, f"{value!r}: expected a string.")
    sections = {}
    for section in ("solver", "run", "plot", "threshold"):
        table = data.get(section, {})
        spec = SECTIONS[section]
        for key, value in table.items():
            if key not in spec:
                raise where.fail(section, key, f"unknown key; allowed: {sorted(spec)}.")
            if isinstance(value, bool) and spec[key] is not bool or not isinstance(value, spec[key]):
                raise where.fail(section, key, f"{value!r}: expected {_typename(spec[key])}.")
        sections[section] = {**DEFAULTS.get(section, {}), **table}

    solver = sections["solver"]
    if solver["method"] not in METHODS:
        raise where.fail("solver", "method", f"{solver['method']!r}: expected one of {METHODS}.")
    for key, low in (("max_steps", 1), ("starts", 1), ("seed", 0)):
        if key in solver and solver[key] < low:
            raise where.fail("solver", key, f"{solver[key]!r}: expected an integer >= {low}.")
    for key in ("gtol", "init_scale"):
        if key in solver and not (math.isfinite(solver[key]) and solver[key] > 0):
            raise where.fail("solver", key, f"{solver[key]!r}: expected a finite number > 0.")
    run = sections["run"]
    if run["chunk_size"] < 0:
        raise where.fail("run", "chunk_size", f"{run['chunk_size']!r}: expected 0 (auto) or >= 1.")
    if run["slots"] < 0:
        raise where.fail("run", "slots", f"{run['slots']!r}: expected 0 (default) or >= 1.")
    if not run["memory_gb"] > 0:
        raise where.fail("run", "memory_gb", f"{run['memory_gb']!r}: expected a number > 0.")

    problem_in = data.get("problem", {})
    grid_in = data.get("grid", {})
    for key in problem_in:
        if key not in PROBLEM_KEYS:
            raise where.fail("problem", key, f"unknown key; allowed: {sorted(PROBLEM_KEYS)}.")
    axes = tuple((name, _expand(name, spec, where)) for name, spec in grid_in.items())
    axis_names = {name for name, _ in axes}
    for name in axis_names & set(problem_in):
        raise where.fail("problem", name, "is also a [grid] axis; give it in one place only.")

    problem = {}
    family = problem_in.get("family")
    if family is None:
        raise where.fail("problem", "family", f"missing; expected one of {sorted(FAMILIES)}.")
    if family not in FAMILIES:
        raise where.fail("problem", "family", f"{family!r}: expected one of {sorted(FAMILIES)}.")
    problem["family"] = family
    for key in ("nonneg", "free_bias"):
        value = problem_in.get(key, FAMILIES[family].get(key, False))
        if not isinstance(value, bool):
            raise where.fail("problem", key, f"{value!r}: expected true or false.")
        problem[key] = value
    if "per_class" in problem_in:
        m = problem_in["per_class"]
        if isinstance(m, bool) or not isinstance(m, int) or m < 1:
            raise where.fail("problem", "per_class", f"{m!r}: expected an integer >= 1 (weighted mode).")
        problem["per_class"] = m
    for key, value in problem_in.items():
        if key in AXES:
            if key == "lam_w" and isinstance(value, list):
                problem[key] = tuple(_check_value(key, v, where, "problem") for v in value)
                if not problem[key]:
                    raise where.fail("problem", key, "empty list: give one lam_w or one per layer.")
            else:
                problem[key] = _check_value(key, value, where, "problem")
    given = set(problem) | axis_names

    if "seed" in problem:
        raise where.fail("problem", "seed", "the PRNG seed is solver.seed (or a [grid] seed axis).")
    if "dim" not in given:
        raise where.fail("problem", "dim", "missing: the feature dimension d.")
    if "depth" in given and "widths" in given:
        raise where.fail("grid" if "widths" in axis_names else "problem", "widths",
                         "give depth or widths, not both.")
    # class sizes
    if "class_sizes" in given:
        clash = [k for k in ("k_a", "k_b", *SIZE_KEYS) if k in given]
        if clash:
            raise where.fail("problem", clash[0], "class_sizes and the two-cluster keys (k_a, k_b, n_a, "
                             "n_b, ratio, n_total) exclude each other.")
    else:
        for key in ("k_a", "k_b"):
            if key not in given:
                raise where.fail("problem", key, "missing: give class_sizes, or k_a, k_b and two of "
                                 "n_a, n_b, ratio, n_total.")
        sizes = [k for k in SIZE_KEYS if k in given]
        if len(sizes) != 2:
            raise where.fail("problem", (sizes or ["n_b"])[-1], f"got {sizes or 'none'} of n_a, n_b, "
                             "ratio, n_total: give exactly two (e.g. ratio with n_b held, or ratio with "
                             "n_total held).")
    # regularisation
    if "lam_z" in given:
        for key in ("lam_w", "lam_h"):
            if key in given:
                raise where.fail("problem", key, "lam_z = sqrt(lam_w lam_h) is given: set the ratio "
                                 "lam_ratio = lam_w/lam_h instead of lam_w or lam_h.")
    else:
        if "lam_ratio" in given:
            raise where.fail("problem", "lam_ratio", "lam_ratio needs lam_z.")
        for key in ("lam_w", "lam_h"):
            if key not in given:
                raise where.fail("problem", key, "missing: give lam_w and lam_h, or lam_z (and "
                                 "lam_ratio).")
    if "lam_b" in given and problem["free_bias"]:
        raise where.fail("problem", "lam_b", "a regularised bias (lam_b) and free_bias exclude each other.")
    loss = FAMILIES[family]["loss"]
    if "lam_b" in given and loss != "ce":
        raise where.fail("problem", "lam_b", "the regularised bias is for the CE families; use "
                         "biased_mse for a free bias.")

    plot = sections["plot"]
    for key in ("x", "y"):
        if key in plot and plot[key] not in axis_names:
            raise where.fail("plot", key, f"{plot[key]!r} is not an axis; axes: {sorted(axis_names)}.")
    for fmt in plot["formats"]:
        if fmt not in ("png", "pdf", "svg"):
            raise where.fail("plot", "formats", f"{fmt!r}: expected png, pdf or svg.")
    if "metrics" in plot and not all(isinstance(m, str) for m in plot["metrics"]):
        raise where.fail("plot", "metrics", "expected a list of variable names.")
    threshold = sections["threshold"]
    if "axis" in threshold and threshold["axis"] not in AXES:
        raise where.fail("threshold", "axis", f"{threshold['axis']!r} is not an axis name.")

    return SweepConfig(
        name=top.get("name", "sweep"),
        output=top.get("output", "ufm-results"),
        problem=problem,
        axes=axes,
        solver=solver,
        run=run,
        plot=plot,
        threshold=threshold,
        source=source,
    )


def _typename(t) -> str:
    if isinstance(t, tuple):
        return "a number"
    return {str: "a string", int: "an integer", bool: "true or false", list: "a list"}[t]
