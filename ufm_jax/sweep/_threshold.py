"""`ufm threshold`: locate a phase boundary along one scalar axis by bisection with warm starts.

The boundary is where a metric crosses a small level, e.g. the `λ_Z` at which the minority classes
collapse (`minority_logit_spread` falls below 1e-6). Both ends of the bracket are solved from the config's
random starts; every midpoint is solved from the minimisers of the bracket's two ends (`solve(...,
start=...)`, both in one batch, the lower objective kept), each with 1% noise to leave symmetric
subspaces: a continuation that converges in few steps because neighbouring points have neighbouring
minimisers, and that does not stay on the collapsed side (the origin, past complete collapse, is a
critical point no noise relative to it leaves).

The theory's value is the root of `b(x) − λ_Z(x)` on the same axis, where `b(x)` is the boundary of
`ufm_jax.phase_boundaries` (in `λ_Z` units) of the point at `x` (`scipy.optimize.brentq`; on a `lam_z`
axis the root is the boundary itself).
"""

from __future__ import annotations

import dataclasses
import math
import re
import time

import jax
import jax.numpy as jnp
import numpy as np
from scipy.optimize import brentq

from .._families import phase_boundaries
from .._params import init_params
from ._chunks import METRICS, _metrics, solve_points
from ._config import AXES, REAL_AXES, SweepConfig, SweepConfigError, validate
from ._grid import Point, make_point


@dataclasses.dataclass
class ThresholdResult:
    """The located boundary.

    **Fields:** `axis`; `value` (the bracket's geometric midpoint); `lo, hi` (the final
    bracket); `metric, level`; `evaluations` (`[(x, metric value, status)]` in order); `theory` (the
    theory's value, or None); `boundary` (its name).
    """

    axis: str
    value: float
    lo: float
    hi: float
    metric: str
    level: float
    evaluations: list
    theory: float | None
    boundary: str | None

    def summary(self) -> str:
        text = (f"{self.axis}* = {self.value:.6g}  (bracket [{self.lo:.6g}, {self.hi:.6g}], "
                f"{len(self.evaluations)} solves, {self.metric} crosses {self.level:g})")
        if self.theory is not None:
            rel = abs(self.value - self.theory) / abs(self.theory)
            text += f"\ntheory ({self.boundary}): {self.theory:.6g}  relative difference {rel:.2e}"
        else:
            text += "\ntheory: no boundary of this family applies"
        return text


def _point(config: SweepConfig, axis: str, x: float) -> Point:
    fixed = {}
    for name, values in config.axes:
        if name == axis:
            continue
        if len(values) != 1:
            raise SweepConfigError(f"grid.{name}: threshold needs every other axis fixed; it has "
                                   f"{len(values)} values: pick one with --axis {name}=VALUE.")
        fixed[name] = values[0]
    return make_point(config, {**fixed, axis: x})


def theory_threshold(config: SweepConfig, axis: str, lo: float, hi: float,
                     name: str | None = None) -> tuple[str | None, float | None]:
    """`(boundary name, x)`: the root in `[lo, hi]` of `b(x) − λ_Z(x)` for the first boundary `b` of
    the family (or the one called `name`) that changes sign there; `(None, None)` if none does."""
    def gap(x: float, key: str) -> float:
        point = _point(config, axis, x)
        return phase_boundaries(point.problem).get(key, math.nan) - point.labels["lam_z"]

    names = list(phase_boundaries(_point(config, axis, lo).problem))
    if name is not None:
        names = [n for n in names if name in (n, n.replace(" ", "_"))]
    for key in names:
        ga, gb = gap(lo, key), gap(hi, key)
        if not (math.isfinite(ga) and math.isfinite(gb)) or ga * gb > 0:
            continue
        try:
            return key, float(brentq(gap, lo, hi, args=(key,), xtol=1e-15 * abs(hi)))
        except ValueError:  # the boundary disappears inside the bracket
            continue
    return None, None


def _perturb(params, step: int, seed: int, size: float = 1e-2):
    """Warm start + 1% noise: a collapsed start (equal minority means) spans a subspace that the
    gradient flow never leaves, so an unperturbed warm start would stay collapsed below the threshold."""
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.fold_in(jax.random.key(seed), step), len(leaves))
    out = []
    for k, x in zip(keys, leaves):
        rms = jnp.sqrt(jnp.mean(x * x))
        noisy = x + size * rms * jax.random.normal(k, x.shape, x.dtype)
        out.append(jnp.where(x == 0, x, noisy))  # padding columns and absent biases stay zero
    return jax.tree.unflatten(tree, out)


def threshold_metrics(point: Point) -> dict[str, tuple[int, ...]]:
    """The metrics a threshold can bisect on `point`'s problem, with their shapes per point (traced with
    `jax.eval_shape`: nothing is compiled or solved)."""
    params = init_params(point.problem, 0)
    shapes = jax.eval_shape(_metrics, params, point.problem)
    return {name: tuple(s.shape) for name, s in sorted(shapes.items())}


def parse_metric(metric: str, shapes: dict[str, tuple[int, ...]]) -> tuple[str, int | None]:
    """`name` or `name[k]` (component `k` of a vector metric, 0-based as in the dataset) → `(name, k)`;
    a vector metric without a component is compared by its smallest entry (the first class to vanish).

    **Raises:** `SweepConfigError` naming the metric and the ones allowed: a matrix metric, an unknown
    name or a component out of range.
    """
    match = re.fullmatch(r"\s*(\w+)\s*(?:\[\s*(\d+)\s*\])?\s*", metric)
    scalars = [n for n, s in shapes.items() if len(s) == 0]
    vectors = [n for n, s in shapes.items() if len(s) == 1]
    allowed = (f"a number per point ({', '.join(scalars)}) or a vector's component "
               f"({', '.join(f'{n}[k], k < {shapes[n][0]}' for n in vectors)}; a vector's name alone: its "
               "smallest entry)")
    name = match.group(1) if match else metric
    if not match or name not in scalars + vectors:
        why = (f"a {shapes[name][0]} x {shapes[name][1]} matrix per point, which has no one value to "
               "bisect" if name in shapes and len(shapes[name]) == 2 else "not a metric")
        raise SweepConfigError(f"threshold.metric={metric!r}: {why}; expected one of {allowed}.")
    if match.group(2) is None:
        return name, None
    k = int(match.group(2))
    if name not in vectors or k >= shapes[name][0]:
        raise SweepConfigError(f"threshold.metric={metric!r}: "
                               + (f"{name} is a number per point, without components"
                                  if name not in vectors else f"{name} has {shapes[name][0]} components "
                                  f"(0..{shapes[name][0] - 1})") + f"; expected one of {allowed}.")
    return name, k


def _check_boundary(ends: list[Point], name: str | None) -> None:
    """`name` is one of the boundaries `ufm_jax.phase_boundaries` gives the bracket's ends."""
    if name is None:
        return
    names = list(dict.fromkeys(n for p in ends for n in phase_boundaries(p.problem)))
    if not any(name in (n, n.replace(" ", "_")) for n in names):
        raise SweepConfigError(f"threshold.boundary={name!r}: expected one of {names} (the theory's "
                               "boundaries of this problem)." if names else
                               f"threshold.boundary={name!r}: this problem has no theory boundaries "
                               "(ufm_jax.phase_boundaries gives none); leave --boundary out.")


def bisection_steps(lo: float, hi: float, rtol: float, max_steps: int) -> int:
    """Midpoints a geometric bisection of `[lo, hi]` takes to `hi/lo − 1 <= rtol` (at most
    `max_steps`): each halves `log(hi/lo)`."""
    ratio = math.log(hi / lo) / math.log1p(rtol)
    return min(max_steps, max(0, math.ceil(math.log2(ratio)))) if ratio > 1 else 0


def _check_bracket(config: SweepConfig, axis: str | None, lo, hi, rtol) -> None:
    if axis not in REAL_AXES:
        raise SweepConfigError(f"threshold.axis={axis!r}: expected a real-valued axis, one of "
                               f"{list(REAL_AXES)}.")
    if getattr(config.problem, axis) is not None:
        raise SweepConfigError(f"problem.{axis} is fixed: remove it to bisect along it.")
    if lo is None or hi is None or not lo < hi:
        raise SweepConfigError(f"threshold.lo, threshold.hi = {lo!r}, {hi!r}: expected lo < hi.")
    for x in (lo, hi):
        try:
            AXES[axis](axis, x)
        except ValueError as e:
            raise SweepConfigError(f"threshold at {axis}={x!r}: {e}") from None
    if not rtol > 0:
        raise SweepConfigError(f"threshold.rtol={rtol!r}: expected a number > 0.")
    # The axis must combine with the rest of the config as a sweep's would (e.g. not lam_w beside lam_z,
    # not a third class-size key): the config's own rules, with the bracket as the axis's values.
    data = config.to_dict()
    data["grid"] = {**data.get("grid", {}), axis: [lo, hi]}
    try:
        validate(data)
    except SweepConfigError as e:
        raise SweepConfigError(f"threshold along {axis}: {e}") from None


def find_threshold(
    config: SweepConfig,
    *,
    axis: str | None = None,
    lo: float | None = None,
    hi: float | None = None,
    metric: str | None = None,
    level: float | None = None,
    rtol: float | None = None,
    boundary: str | None = None,
    callback=None,
) -> ThresholdResult:
    """Bisect for the value of `axis` where `metric` crosses `level` (defaults: the config's [threshold],
    whose metric defaults to the family's `threshold_metric`).

    Every real axis is a positive scale (`λ`'s, sizes, ratios), so the bisection is geometric.

    **Arguments:**

    - `config`: a sweep config whose other axes have one value each.
    - `axis`: a real-valued axis (e.g. `lam_z`); `lo`, `hi`: the bracket (the metric must be on
      opposite sides of `level` at the two ends).
    - `metric`: a stored metric name (`ufm_jax.metrics.nc_metrics` keys, `mean_norms`, `dead_classes`);
      a vector metric is compared by its smallest entry (e.g. the first class to vanish), or by one
      component, `mean_norms[3]` (0-based, as the dataset's index); a matrix metric is refused.
    - `level`: the crossing level; `rtol`: stop when `hi/lo − 1 <= rtol`.
    - `boundary`: the theory boundary to compare with (default: the first that lies in the bracket);
      a name of `ufm_jax.phase_boundaries` of the bracket's problem.
    - `callback`: called after each solve with `{"step", "steps", "x", "value", "status", "seconds",
      "eta_s"}`: solves so far and in all (the two ends and the midpoints; the bisection may stop
      earlier at `max_steps`), the point, its metric and status code, seconds so far and the seconds
      the remaining solves take at the mean time of the midpoints so far (the ends, which compile, at
      theirs).

    **Raises:** `SweepConfigError` before anything is solved for a bad axis, bracket, metric (one the
    tool cannot bisect: a matrix, a component out of range) or boundary (not one of the problem's); and
    when the bracket does not straddle the level (after solving its ends).
    """
    t = config.threshold
    axis = axis or t.axis
    lo = t.lo if lo is None else lo
    hi = t.hi if hi is None else hi
    metric = metric or t.metric or config.family.threshold_metric
    level = t.level if level is None else level
    rtol = t.rtol if rtol is None else rtol
    boundary = boundary or t.boundary
    _check_bracket(config, axis, lo, hi, rtol)
    ends = [_point(config, axis, lo), _point(config, axis, hi)]  # checks both ends: nothing solved yet
    name, component = parse_metric(metric, threshold_metrics(ends[0]))
    _check_boundary(ends, boundary)
    columns = None if ends[0].problem.weighted else max(p.problem.columns_per_class for p in ends)
    evaluations = []
    steps = 2 + bisection_steps(lo, hi, rtol, t.max_steps)
    t0 = time.perf_counter()
    times: list[float] = []

    def evaluate(x, starts):
        point = _point(config, axis, x)
        t1 = time.perf_counter()
        if starts is None:
            sol = solve_points(config, [point], columns)
        else:
            # From both neighbours' minimisers (each with noise), the lower objective kept: a start on
            # the collapsed side (the origin past complete collapse is a critical point) cannot leave
            # its collapse, one on the other side can reach it.
            noisy = [_perturb(s, 2 * len(evaluations) + j, config.solver.seed) for j, s in enumerate(starts)]
            both = solve_points(config, [point] * len(starts), columns,
                                start=jax.tree.map(lambda *xs: jnp.concatenate(xs), *noisy))
            objective = np.asarray(both.objective, np.float64)
            best = int(np.argmin(np.where(np.isfinite(objective), objective, np.inf)))
            sol = both[np.asarray([best])]
        values = np.asarray(METRICS(sol.params, sol.problem)[name])[0]
        value = float(np.nanmin(values) if component is None else values[component])
        status = int(np.asarray(sol.status)[0])
        evaluations.append((x, value, status))
        times.append(time.perf_counter() - t1)
        if callback is not None:
            left = steps - len(evaluations)
            mean = np.mean(times[2:]) if len(times) > 2 else np.mean(times)
            callback({"step": len(evaluations), "steps": steps, "x": x, "value": value, "status": status,
                      "seconds": time.perf_counter() - t0, "eta_s": left * float(mean)})
        return value > level, sol.params

    side_lo, params_a = evaluate(lo, None)
    side_hi, params_b = evaluate(hi, None)
    if side_lo == side_hi:
        raise SweepConfigError(f"{metric} is {'above' if side_lo else 'below'} {level:g} at both "
                               f"{axis}={lo:g} and {hi:g}: widen the bracket.")
    a, b = lo, hi
    for _ in range(t.max_steps):
        if b / a - 1 <= rtol:
            break
        mid = math.sqrt(a * b)
        side, params = evaluate(mid, [params_a, params_b])
        if side == side_lo:
            a, params_a = mid, params
        else:
            b, params_b = mid, params
    found, theory = theory_threshold(config, axis, lo, hi, boundary)
    return ThresholdResult(axis, math.sqrt(a * b), a, b, metric, level, evaluations, theory, found)
