"""`ufm threshold`: locate a phase boundary along one scalar axis by bisection with warm starts.

The boundary is where a metric crosses a small level, e.g. the `λ_Z` at which the minority classes
collapse (`minority_logit_spread` falls below 1e-6). Both ends of the bracket are solved from the config's
random starts; every midpoint is solved from the parameters of the last solve (`solve(..., start=...)`),
with 1% noise to leave symmetric subspaces, a continuation that converges in few steps because
neighbouring points have neighbouring minimisers.

The theory's value is the root of `b(x) − λ_Z(x)` on the same axis, where `b(x)` is the boundary of
`ufm_jax.phase_boundaries` (in `λ_Z` units) of the point at `x` (`scipy.optimize.brentq`; on a `lam_z`
axis the root is the boundary itself).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
from scipy.optimize import brentq

from .._families import phase_boundaries
from ._config import AXES, REAL_AXES, SweepConfig, SweepConfigError
from ._grid import Point, make_point
from ._runner import METRICS, solve_points


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
                                   f"{len(values)} values.")
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
      a vector metric is compared by its smallest entry (e.g. the first class to vanish).
    - `level`: the crossing level; `rtol`: stop when `hi/lo − 1 <= rtol`.
    - `boundary`: the theory boundary to compare with (default: the first that lies in the bracket).
    - `callback`: called with `(x, value, status)` after each solve.

    **Raises:** `SweepConfigError` for a bad axis or bracket, or when the bracket does not straddle the
    level.
    """
    t = config.threshold
    axis = axis or t.axis
    lo = t.lo if lo is None else lo
    hi = t.hi if hi is None else hi
    metric = metric or t.metric or config.family.threshold_metric
    level = t.level if level is None else level
    rtol = t.rtol if rtol is None else rtol
    _check_bracket(config, axis, lo, hi, rtol)
    ends = [_point(config, axis, lo), _point(config, axis, hi)]  # checks both ends: nothing solved yet
    columns = None if ends[0].problem.weighted else max(p.problem.columns_per_class for p in ends)
    evaluations = []

    def evaluate(x, start):
        point = _point(config, axis, x)
        if start is not None:
            start = _perturb(start, len(evaluations), config.solver.seed)
        sol = solve_points(config, [point], columns, start=start)
        values = METRICS(sol.params, sol.problem)
        if metric not in values:
            raise SweepConfigError(f"threshold.metric={metric!r}: expected one of {sorted(values)}.")
        value = float(np.nanmin(np.asarray(values[metric])[0]))
        status = int(np.asarray(sol.status)[0])
        evaluations.append((x, value, status))
        if callback is not None:
            callback(x, value, status)
        return value > level, sol.params

    side_lo, _ = evaluate(lo, None)
    side_hi, params = evaluate(hi, None)
    if side_lo == side_hi:
        raise SweepConfigError(f"{metric} is {'above' if side_lo else 'below'} {level:g} at both "
                               f"{axis}={lo:g} and {hi:g}: widen the bracket.")
    a, b = lo, hi
    for _ in range(t.max_steps):
        if b / a - 1 <= rtol:
            break
        mid = math.sqrt(a * b)
        side, params = evaluate(mid, params)
        a, b = (mid, b) if side == side_lo else (a, mid)
    name, theory = theory_threshold(config, axis, lo, hi, boundary or t.boundary)
    return ThresholdResult(axis, math.sqrt(a * b), a, b, metric, level, evaluations, theory, name)
