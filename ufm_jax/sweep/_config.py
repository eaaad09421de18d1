"""Sweep configuration: a TOML file and CLI flags for the same keys, validated into a `SweepConfig`.

Schema (every key optional unless said; `ufm_jax/sweep/default.toml` is a full example):

    name = "minority-collapse"         # used in titles and the report
    output = "ufm-results"             # results folder

    [problem]                          # fixed values; any key marked (axis) may instead be a [grid] axis
    family = "ce"                      # a preset of the family registry (ufm_jax.FAMILIES), required:
                                       # mse | plain_mse | deep_linear_mse | biased_mse | ce | relu_ce |
                                       # relu_mse
                                       # the preset sets the loss, H >= 0 and its defaults (biased_mse:
                                       # free_bias = true)
    dim = 10                           # d (axis)
    depth = 1                          # L (axis); or widths = [d_1, ..] (axis: a list of lists)
    per_class = 1                      # weighted mode with m columns per class; omit for explicit mode
    nonneg = false                     # H >= 0: set by the family (relu_ce, relu_mse), may only repeat it
    free_bias = false                  # unpenalised bias (default: the preset's)
    lam_b = 1e-3                       # regularised bias (lam_b/2)|b|^2, any family, not with
                                       # free_bias (axis)
    lam_w = 1e-2                       # (axis) or one value per layer W_1..W_L: lam_w = [1e-2, 2e-2]
    # class sizes: either explicit vectors ...
    class_sizes = [500, 500, 100, 100] # (axis: a list of vectors)
    # ... or two clusters: k_a, k_b (axes) and exactly two of n_a, n_b, ratio (= n_a/n_b >= 1),
    # n_total (= k_a n_a + k_b n_b), each an axis or fixed
    # regularisation: lam_w and lam_h (axes), or lam_z = sqrt(lam_w lam_h) (axis) with the fixed ratio
    # lam_ratio = lam_w/lam_h (default 1, axis): lam_w = lam_z sqrt(ratio), lam_h = lam_z / sqrt(ratio)

    [grid]                             # one entry per axis, in the order of the dataset's dimensions
    lam_z = { start = 1e-4, stop = 1e-2, num = 12, spacing = "log" }   # or spacing = "linear"
    ratio = [1, 2, 5, 10]              # explicit values (or { values = [...] })
    seed = [0, 1, 2]                   # PRNG seeds of the random starts (also an axis)

    [solver]
    method = "auto"                    # auto | lbfgs | lockstep_lbfgs | gradient_descent | adam |
                                       # projected_gradient, or lockstep | gd | pg (stored canonical)
    max_steps = 5000                   # default: the method's own
    gtol = 1e-9                        # default: the method's own
    starts = 32                        # exactly this many random starts per point (the best is kept);
                                       # omitted: the adaptive search (ufm_jax.search), as below
    max_starts = 64                    # adaptive search: at most this many starts per point
    agree = 3                          # adaptive search without a theory: hits of the best needed
    seed = 0                           # PRNG seed when `seed` is not an axis
    init_scale = 1.0

    [run]
    chunk_size = 0                     # points per compiled batch; 0 = sized to memory_gb
    memory_gb = 2.0
    shard = true                       # shard each batch over jax.devices()
    slots = 0                          # problems iterated at a time per device, the rest queued;
                                       # 0 = ufm_jax.DEFAULT_SLOTS (32)
    history = 10                       # record each point's trajectory every K iterations (default:
                                       # none): objective, gradient norm, gap to theory and the NC
                                       # metrics, stored over a `record` dimension with the iteration of
                                       # each record (points stop at different iterations) and drawn as
                                       # figures/history_<metric>; the records of a chunk's solves are
                                       # held at once (starts × (max_steps/K + 2) × 11 numbers a point),
                                       # so this caps the chunk size, and a K that cannot fit is refused

    [plot]
    metrics = ["minority_logit_spread", "gap"]   # default: the family's plot_metrics
    x = "lam_z"                        # default: the first axis
    y = "ratio"                        # default: the second axis (heat map), none → line plot
    formats = ["png", "pdf"]           # png | pdf | svg

    [threshold]                        # defaults for `ufm threshold`
    axis = "lam_z"                     # a real-valued axis
    lo = 1e-4
    hi = 1e-2
    metric = "minority_logit_spread"   # default: the family's threshold_metric
    level = 1e-6
    rtol = 1e-3
    max_steps = 40
    boundary = "minority collapse"     # a name of ufm_jax.phase_boundaries (default: the first one
                                       # that the bracket contains)

CLI: `--set problem.n_b=100` (or `--set n_b=100`, the section found from the key) sets any key, the value
read as TOML (`--set plot.metrics='["nc1"]'`); `--axis lam_z=log:1e-4:1e-2:12`, `--axis ratio=1,2,5`
or `--axis 'class_sizes=[[5,1],[5,2]]'` adds or replaces an axis.

Errors name the file line and the key: `config.toml:12: grid.ratio: ratio=0.5 is not allowed: ...`.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import pydantic
import tomli_w
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StrictStr

from .. import _validation as V
from .._basins import AGREE, MIN_STARTS
from .._families import FAMILIES, PRESETS, Family
from .._search import ROUND_STARTS
from ..solve import DEFAULT_SLOTS, canonical_solver_name


class SweepConfigError(ValueError):
    """A sweep configuration that cannot run; the message names the key (and the file line)."""


class _Invalid(ValueError):
    """A failed check that names its key. Raised inside pydantic validators: pydantic keeps it as the
    error's context, and `_messages` reads the key back to find its line."""

    def __init__(self, section: str, key: str | None, message: str):
        super().__init__(message)
        self.section, self.key = section, key


# ---- values: one check per kind, shared by [problem] keys and [grid] axes ------------------------------


def _real(name: str, v) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise V.fail(name, v, "expected a number")
    return float(v)


def _positive(name: str, v) -> float:
    return V.positive(name, _real(name, v))


def _finite(name: str, v) -> float:
    v = _real(name, v)
    if not math.isfinite(v):
        raise V.fail(name, v, "expected a finite number")
    return v


def _ratio(name: str, v) -> float:
    v = _real(name, v)
    if not (math.isfinite(v) and v >= 1):
        raise V.fail(name, v, "expected n_a/n_b >= 1 (the majority cluster is A)")
    return v


def _count(name: str, v) -> int:
    return V.integer(name, v, 1, V.MAX_EXTENT)


def _natural(name: str, v) -> int:
    return V.integer(name, v, 0, V.MAX_EXTENT)


def _depth(name: str, v) -> int:
    return V.integer(name, v, 1, V.MAX_DEPTH)


def _seed(name: str, v) -> int:
    return V.integer(name, v, 0, V.MAX_SEED)


def _sizes(name: str, v) -> tuple[float, ...]:
    if not isinstance(v, (list, tuple)):
        raise V.fail(name, v, "expected a vector of K >= 2 class sizes")
    return tuple(float(x) for x in V.class_sizes(name, [_real(name, x) for x in v]))


def _widths(name: str, v) -> tuple[int, ...]:
    if not isinstance(v, (list, tuple)):
        raise V.fail(name, v, "expected a list of hidden widths")
    return V.integers(name, v, 1, V.MAX_EXTENT)


def _lam_w(name: str, v) -> float | tuple[float, ...]:
    if isinstance(v, (list, tuple)):
        if not v:
            raise V.fail(name, v, "expected one lam_w or one per layer")
        return tuple(_positive(name, x) for x in v)
    return _positive(name, v)


AXES = {
    "lam_w": _positive, "lam_h": _positive, "lam_b": _positive, "lam_z": _positive,
    "lam_ratio": _positive, "ratio": _ratio, "n_a": _positive, "n_b": _positive, "n_total": _positive,
    "k_a": _count, "k_b": _count, "class_sizes": _sizes, "depth": _depth, "widths": _widths,
    "dim": _count, "seed": _seed,
}
"""Axis name → the check of one of its values."""

REAL_AXES = tuple(name for name, check in AXES.items() if check in (_positive, _ratio))
"""Axes with real values > 0, all scales: they may be spaced (start/stop/num), bisected (`ufm threshold`,
geometrically) and drawn on a log scale."""

SIZE_KEYS = ("n_a", "n_b", "ratio", "n_total")


def _checked(check, type_):
    """`type_`, its values first passed through `check(field name, value)` (`None` passes)."""
    return Annotated[type_, BeforeValidator(lambda v, info: v if v is None else check(info.field_name, v))]


Positive = _checked(_positive, float)
Finite = _checked(_finite, float)
Count = _checked(_count, int)
Natural = _checked(_natural, int)


# ---- the sections ----------------------------------------------------------------------------------------


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProblemSection(_Section):
    """`[problem]`: the fixed problem values (see the module docstring); `None` = not given."""

    family: StrictStr
    per_class: _checked(_count, int | None) = None
    nonneg: StrictBool | None = None
    free_bias: StrictBool | None = None
    dim: _checked(_count, int | None) = None
    depth: _checked(_depth, int | None) = None
    widths: _checked(_widths, tuple[int, ...] | None) = None
    lam_w: _checked(_lam_w, float | tuple[float, ...] | None) = None
    lam_h: _checked(_positive, float | None) = None
    lam_b: _checked(_positive, float | None) = None
    lam_z: _checked(_positive, float | None) = None
    lam_ratio: _checked(_positive, float | None) = None
    class_sizes: _checked(_sizes, tuple[float, ...] | None) = None
    k_a: _checked(_count, int | None) = None
    k_b: _checked(_count, int | None) = None
    n_a: _checked(_positive, float | None) = None
    n_b: _checked(_positive, float | None) = None
    ratio: _checked(_ratio, float | None) = None
    n_total: _checked(_positive, float | None) = None

    @pydantic.field_validator("family")
    @classmethod
    def _preset(cls, family: str) -> str:
        return V.choice("family", family, tuple(PRESETS))

    def given(self) -> dict[str, Any]:
        """The keys that are set, with their values."""
        return {k: v for k, v in self if v is not None}


class SolverSection(_Section):
    """`[solver]`; `method` is stored canonical (`lockstep` → `lockstep_lbfgs`)."""

    method: StrictStr = "auto"
    max_steps: _checked(_count, int | None) = None
    gtol: _checked(_positive, float | None) = None
    starts: _checked(_count, int | None) = None
    max_starts: Count = 64
    agree: Count = AGREE
    seed: _checked(_seed, int) = 0
    init_scale: Positive = 1.0

    @property
    def most_starts(self) -> int:
        """The most starts a point may draw (`starts`, or the search's `max_starts`): for estimates."""
        return self.starts if self.starts is not None else self.max_starts

    @property
    def batch_starts(self) -> int:
        """The most starts of a point solved at once (`starts`, or a search round's): for memory."""
        return self.starts if self.starts is not None else ROUND_STARTS

    @property
    def rule(self) -> dict:
        """The evidence rule of the adaptive search (`ufm_jax.check`'s `agree`, `min_starts`)."""
        return {"agree": self.agree, "min_starts": MIN_STARTS}

    @pydantic.model_validator(mode="after")
    def _agree_fits(self):
        # An agree above the default that the budget cannot meet is refused; the default is not (a
        # small budget then runs to its end, and a point without a theory is not confident).
        if self.agree > max(self.max_starts, AGREE):
            raise _Invalid("solver", "agree", f"{self.agree}: expected at most max_starts = {self.max_starts}.")
        return self

    @pydantic.field_validator("method")
    @classmethod
    def _canonical(cls, method: str) -> str:
        return canonical_solver_name(method, "method")


class RunSection(_Section):
    """`[run]`."""

    chunk_size: Natural = 0
    memory_gb: Positive = 2.0
    shard: StrictBool = True
    slots: Natural = 0
    history: _checked(_count, int | None) = None


class PlotSection(_Section):
    """`[plot]`; `metrics` defaults to the family's `plot_metrics`."""

    metrics: tuple[StrictStr, ...] | None = None
    x: StrictStr | None = None
    y: StrictStr | None = None
    formats: tuple[Literal["png", "pdf", "svg"], ...] = ("png", "pdf")


class ThresholdSection(_Section):
    """`[threshold]`: defaults of `ufm threshold`; `metric` defaults to the family's
    `threshold_metric`."""

    axis: StrictStr | None = None
    lo: _checked(_finite, float | None) = None
    hi: _checked(_finite, float | None) = None
    metric: StrictStr | None = None
    level: Finite = 1e-6
    rtol: Positive = 1e-3
    boundary: StrictStr | None = None
    max_steps: Count = 40

    @pydantic.field_validator("axis")
    @classmethod
    def _real_axis(cls, axis: str | None) -> str | None:
        return axis if axis is None else V.choice("axis", axis, REAL_AXES)


SECTIONS: dict[str, type[_Section]] = {
    "problem": ProblemSection, "solver": SolverSection, "run": RunSection, "plot": PlotSection,
    "threshold": ThresholdSection,
}
TOP_KEYS = ("name", "output")


# ---- axes -------------------------------------------------------------------------------------------------


def _spaced(name: str, spec: dict) -> list:
    """The values of a `{start, stop, num, spacing}` table."""
    missing = {"start", "stop", "num"} - set(spec)
    if missing:
        raise _Invalid("grid", name, f"missing {sorted(missing)}; expected start, stop, num and spacing = "
                       "'log' or 'linear'.")
    if name not in REAL_AXES:
        raise _Invalid("grid", name, "start/stop/num spacing is for real-valued axes; give a list of "
                       "values.")
    num = spec["num"]
    if isinstance(num, bool) or not isinstance(num, int) or num < 1:
        raise _Invalid("grid", name, f"num={num!r}: expected an integer >= 1 (an empty grid cannot run).")
    lo, hi = (_finite(f"{name}.{key}", spec[key]) for key in ("start", "stop"))
    spacing = spec.get("spacing", "linear")
    if spacing == "log":
        if lo <= 0 or hi <= 0:
            raise _Invalid("grid", name, f"log spacing needs start, stop > 0, got {lo!r}, {hi!r}.")
        values = [float(v) for v in np.logspace(np.log10(lo), np.log10(hi), num)]
        values[0], values[-1] = lo, hi  # logspace rounds the end points; keep them exact
        return values
    if spacing in ("linear", "lin"):
        return [float(v) for v in np.linspace(lo, hi, num)]
    raise _Invalid("grid", name, f"spacing={spacing!r}: expected 'log' or 'linear'.")


def _axis(name: str, spec) -> tuple:
    """One `[grid]` entry expanded to its checked values."""
    if name not in AXES:
        raise _Invalid("grid", name, f"unknown axis; allowed axes: {sorted(AXES)}.")
    if isinstance(spec, dict):
        extra = set(spec) - {"start", "stop", "num", "spacing", "values"}
        if extra:
            raise _Invalid("grid", name, f"unknown key(s) {sorted(extra)} in the axis table; allowed: "
                           "start, stop, num, spacing, or values.")
        spec = spec["values"] if "values" in spec else _spaced(name, spec)
    if not isinstance(spec, (list, tuple)):
        spec = [spec]
    if len(spec) == 0:
        raise _Invalid("grid", name, "empty grid: give at least one value.")
    try:
        values = tuple(AXES[name](name, v) for v in spec)
    except ValueError as e:
        raise _Invalid("grid", name, str(e)) from None
    if len(set(values)) != len(values):
        raise _Invalid("grid", name, f"duplicate values in {list(spec)!r}.")
    return values


# ---- the whole config --------------------------------------------------------------------------------


class SweepConfig(BaseModel):
    """A validated sweep (see the module docstring for every key).

    **Fields:**

    - `name`, `output`: the sweep's name and results folder.
    - `problem`: the fixed problem values; the family preset's defaults are filled in.
    - `grid`: `{axis: (value, ...)}` in dimension order, every axis expanded to its values (vectors as
      tuples).
    - `solver`, `run`, `plot`, `threshold`: their sections, with defaults filled in (the plot and
      threshold metrics from the family).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: StrictStr = "sweep"
    output: StrictStr = "ufm-results"
    problem: ProblemSection
    grid: dict[str, tuple] = Field(default_factory=dict)
    solver: SolverSection = SolverSection()
    run: RunSection = RunSection()
    plot: PlotSection = PlotSection()
    threshold: ThresholdSection = ThresholdSection()

    @pydantic.model_validator(mode="before")
    @classmethod
    def _family_defaults(cls, data):
        """Fill in what the family preset decides where the config leaves it open (the keys are then
        checked like any other)."""
        if not isinstance(data, dict):
            return data
        if isinstance(data.get("problem"), ProblemSection):
            data = {**data, "problem": data["problem"].given()}
        if not isinstance(data.get("problem"), dict):
            return data
        preset = data["problem"].get("family")
        if not isinstance(preset, str) or preset not in PRESETS:
            return data
        family = PRESETS[preset]
        grid = data.get("grid") if isinstance(data.get("grid"), dict) else {}
        problem = {"nonneg": family.nonneg, **{k: v for k, v in family.presets[preset].items()
                                               if k not in grid}, **data["problem"]}
        problem.setdefault("free_bias", False)
        sections = {"problem": problem}
        for section, key, default in (("plot", "metrics", list(family.plot_metrics)),
                                      ("threshold", "metric", family.threshold_metric)):
            table = data.get(section, {})
            if isinstance(table, dict) and key not in table:
                sections[section] = {**table, key: default}
        return {**data, **sections}

    @pydantic.field_validator("grid", mode="before")
    @classmethod
    def _axes(cls, grid):
        if not isinstance(grid, dict):
            raise _Invalid("grid", None, "expected a table of axes.")
        return {name: _axis(name, spec) for name, spec in grid.items()}

    @pydantic.model_validator(mode="after")
    def _relations(self):
        _check_problem(self.problem, self.grid)
        for key in ("x", "y"):
            value = getattr(self.plot, key)
            if value is not None and value not in self.grid:
                raise _Invalid("plot", key, f"{value!r} is not an axis; axes: {list(self.grid)}.")
        return self

    # -- views ------------------------------------------------------------------------------------------

    @property
    def axes(self) -> tuple[tuple[str, tuple], ...]:
        """`((name, values), ...)` in dimension order."""
        return tuple(self.grid.items())

    @property
    def axis_names(self) -> tuple[str, ...]:
        return tuple(self.grid)

    @property
    def family(self) -> Family:
        """The registry entry of `problem.family`."""
        return PRESETS[self.problem.family]

    def without_axis(self, name: str) -> SweepConfig:
        """This config with axis `name` removed (`ufm threshold` supplies its values)."""
        return self.model_copy(update={"grid": {k: v for k, v in self.grid.items() if k != name}})

    def to_dict(self) -> dict:
        """The canonical, JSON- and TOML-serialisable form (axes as explicit value lists)."""
        return self.model_dump(mode="json", exclude_none=True)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def to_toml(self) -> str:
        return tomli_w.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> SweepConfig:
        """Read back `to_json` (e.g. a dataset's `config_json`)."""
        return validate(json.loads(text))

    def fingerprint(self) -> str:
        """A hash of every setting of the config that changes the numbers: `[problem]`, `[grid]`,
        `[solver]` and `[run]` (chunking, sharding, slots: `slots = 0` counted as `DEFAULT_SLOTS`); not
        the name, the output folder, the plots or the threshold defaults. The sweep's full fingerprint
        adds the precision, devices and versions (`ufm_jax.sweep._store.fingerprint`)."""
        d = self.to_dict()
        keep = {k: d[k] for k in ("problem", "grid", "solver", "run")}
        keep["run"] = {**keep["run"], "slots": self.run.slots or DEFAULT_SLOTS}
        return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:16]


def _check_problem(problem: ProblemSection, grid: dict) -> None:
    """The rules between keys: which combinations describe one problem per grid point."""
    fixed = problem.given()
    given = set(fixed) | set(grid)

    def where(key: str) -> str:
        return "grid" if key in grid else "problem"

    for name in set(grid) & set(fixed):
        raise _Invalid("problem", name, "is also a [grid] axis; give it in one place only.")
    family = PRESETS[problem.family]
    if problem.nonneg != family.nonneg:
        other = [f.name for f in FAMILIES.values() if f.loss == family.loss and f.nonneg == problem.nonneg]
        raise _Invalid("problem", "nonneg", f"nonneg={problem.nonneg} is not the {problem.family!r} "
                       f"family's (H >= 0 is {family.nonneg}); set family = {other[0]!r} instead."
                       if other else f"family {problem.family!r} has nonneg={family.nonneg}.")
    if "dim" not in given:
        raise _Invalid("problem", "dim", "missing: the feature dimension d.")
    if "depth" in given and "widths" in given:
        raise _Invalid(where("widths"), "widths", "give depth or widths, not both.")
    if "class_sizes" in given:
        clash = [k for k in ("k_a", "k_b", *SIZE_KEYS) if k in given]
        if clash:
            raise _Invalid(where(clash[0]), clash[0], "class_sizes and the two-cluster keys (k_a, k_b, "
                           "n_a, n_b, ratio, n_total) exclude each other.")
    else:
        for key in ("k_a", "k_b"):
            if key not in given:
                raise _Invalid("problem", key, "missing: give class_sizes, or k_a, k_b and two of n_a, "
                               "n_b, ratio, n_total.")
        sizes = [k for k in SIZE_KEYS if k in given]
        if len(sizes) != 2:
            key = (sizes or ["n_b"])[-1]
            raise _Invalid(where(key), key, f"got {sizes or 'none'} of n_a, n_b, ratio, n_total: give "
                           "exactly two (e.g. ratio with n_b held, or ratio with n_total held).")
    if "lam_z" in given:
        for key in ("lam_w", "lam_h"):
            if key in given:
                raise _Invalid(where(key), key, "lam_z = sqrt(lam_w lam_h) is given: set the ratio "
                               "lam_ratio = lam_w/lam_h instead of lam_w or lam_h.")
    else:
        if "lam_ratio" in given:
            raise _Invalid(where("lam_ratio"), "lam_ratio", "lam_ratio needs lam_z.")
        for key in ("lam_w", "lam_h"):
            if key not in given:
                raise _Invalid("problem", key, "missing: give lam_w and lam_h, or lam_z (and lam_ratio).")
    if "lam_b" in given and problem.free_bias:
        raise _Invalid(where("lam_b"), "lam_b", "a regularised bias (lam_b) and a free bias (free_bias, "
                       f"set by the {problem.family!r} preset or the config) exclude each other.")


# ---- errors with file lines ----------------------------------------------------------------------------


class _Lines:
    """Finds the line of `section.key` (or of the `[section]` header) in a TOML file's text; a key set
    on the command line (`flagged`) is named as such instead (the file's line is not where it came from)."""

    def __init__(self, path: str | None, text: str | None, flagged: frozenset = frozenset()):
        self.path, self.text, self.flagged = path, text, flagged

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

    def message(self, section: str, key: str | None, text: str) -> str:
        name = ".".join(x for x in (section, key) if x)
        if (section, key) in self.flagged:
            return f"command line: {name}: {text}"
        line = self.line(section, key)
        where = ""
        if self.path is not None:
            where = f"{self.path}:{line}: " if line else f"{self.path}: "
        return f"{where}{name}: {text}"


def _located(error: dict) -> tuple[str, str | None, str]:
    """`(section, key, message)` of one pydantic error."""
    cause = error.get("ctx", {}).get("error")
    if isinstance(cause, _Invalid):
        return cause.section, cause.key, str(cause)
    loc = [x for x in error["loc"] if isinstance(x, str)]
    if loc and loc[0] in (*SECTIONS, "grid"):
        section, key = loc[0], (loc[1] if len(loc) > 1 else None)
    else:
        section, key = "", (loc[0] if loc else None)
    kind = error["type"]
    if isinstance(cause, ValueError):
        return section, key, str(cause)
    if kind == "extra_forbidden":
        if section:
            allowed = list(SECTIONS[section].model_fields)
            return section, key, f"unknown key; allowed: {allowed}."
        if isinstance(error["input"], dict):
            return key, None, f"unknown table; allowed: {[*SECTIONS, 'grid']}."
        return "", key, f"unknown key; allowed top-level keys: {list(TOP_KEYS)} and tables " \
                        f"{[*SECTIONS, 'grid']}."
    if kind == "missing":
        return section, key, "missing."
    if kind in ("model_type", "dict_type"):
        return section, key, "expected a table."
    msg = error["msg"]
    return section, key, f"{error['input']!r}: {msg[0].lower()}{msg[1:]}."


def validate(data: dict, *, source: str | None = None, text: str | None = None,
             flagged: frozenset = frozenset()) -> SweepConfig:
    """Validate a parsed config dict (see the module docstring) into a `SweepConfig`.

    **Raises:** `SweepConfigError`, one line per error: `file:line: section.key: message`
    (`command line: section.key: message` for a `(section, key)` in `flagged`).
    """
    try:
        return SweepConfig.model_validate(data)
    except pydantic.ValidationError as e:
        lines = _Lines(source, text, flagged)
        messages = dict.fromkeys(lines.message(*_located(err)) for err in e.errors(include_url=False))
        raise SweepConfigError("\n".join(messages)) from None


# ---- flags and files ----------------------------------------------------------------------------------


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
        value = [_toml_scalar(p.strip()) for p in spec.split(",")]
        if any(isinstance(p, str) for p in value):
            raise SweepConfigError(f"--axis {name}: {spec!r} is not a list of values, log:.., lin:.. "
                                   "or a TOML value.")
    return name, value


def _toml_scalar(text: str):
    try:
        return tomllib.loads(f"x = {text}")["x"]
    except tomllib.TOMLDecodeError:
        return text


def _find_section(key: str) -> str:
    if key in TOP_KEYS:
        return ""
    for section, model in SECTIONS.items():
        if key in model.model_fields:
            return section
    raise SweepConfigError(f"--set {key}: unknown key; give section.key (problem, grid, solver, run, "
                           "plot, threshold).")


def _flagged(sets: list[str] | None, axes: list[str] | None) -> frozenset:
    """The `(section, key)` pairs that `--set` and `--axis` flags give (their errors name the command
    line, not a file line)."""
    keys = set()
    for flag in sets or []:
        key = flag.split("=", 1)[0].strip()
        keys.add(tuple(key.split(".", 1)) if "." in key else (_find_section(key), key))
    keys.update(("grid", flag.split("=", 1)[0].strip()) for flag in axes or [])
    return frozenset(keys)


def apply_flags(data: dict, sets: list[str] | None = None, axes: list[str] | None = None) -> dict:
    """Apply `--set KEY=VALUE` and `--axis NAME=SPEC` flags to a parsed TOML dict (a copy)."""
    data = json.loads(json.dumps(data))
    for flag in sets or []:
        if "=" not in flag:
            raise SweepConfigError(f"--set {flag!r}: expected KEY=VALUE, e.g. problem.n_b=100.")
        key, text = (s.strip() for s in flag.split("=", 1))
        section, key = key.split(".", 1) if "." in key else (_find_section(key), key)
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
            except OSError as e:
                raise SweepConfigError(f"{p}: cannot read it ({e.strerror or e}).") from None
            source = str(p)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SweepConfigError(f"{source or '<text>'}: not a valid TOML file: {e}.") from None
    return validate(apply_flags(data, sets, axes), source=source, text=text, flagged=_flagged(sets, axes))
