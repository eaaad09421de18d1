"""Basin statistics of a multi-start search, and when its evidence is enough.

Where no theorem applies, the evidence for a minimum is what the starts found: how many reached the
best value, which other local minima they stopped at and how often, and how much of the start
distribution may lead to basins not seen yet. This module turns the final objectives and statuses of
the `S` starts of one problem (`Solution.seed_objectives`, `Solution.seed_status`) into those numbers,
and decides whether they are enough.

**Distinct minima.** Only converged starts count as minima (a start stopped by `max_steps`, a stall or
a non-finite value may be anywhere). Two converged values are the same minimum when they differ by at
most `rtol · max(1, |f|)`, with `rtol = basin_tolerance(dtype, gtol)` (see there). Values are sorted and
a cluster is the run of values within the tolerance of its lowest member.

**Unseen basins (Good–Turing).** The probability that the next start ends in a basin not seen so far is
estimated by the share of starts whose outcome was seen once: `(N₁ + U) / S`, `N₁` the minima hit by one
start, `U` the unconverged starts (their basins are unknown: counted as unseen, conservatively).

**Enough** (`enough_evidence`): `hits >= agree` and `starts >= min_starts` and
`unseen_mass <= max_unseen`. The defaults (`AGREE = 3`, `MAX_UNSEEN = 0.05`, `MIN_STARTS = 59`) and why
are at `MIN_STARTS`. No rule on the values seen can tell a problem whose best basin is the global one
from a problem with one more basin that no start has reached: `S` starts miss a basin of mass `p`
with probability `(1 − p)^S`. `min_starts` bounds that risk for basins of mass `>= max_unseen`, and
`missed_mass(starts)` states, for any search, the basin mass it may have missed.
"""

from __future__ import annotations

import dataclasses
import math

import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike, Float, Int

from . import _validation as V
from .solve import Status
from .solve._minimise import default_gtol

AGREE = 3
"""Default hits of the best value (the issue's `--agree K`)."""

MAX_UNSEEN = 0.05
"""Default largest estimated mass of unseen basins."""

RISK = 0.05
"""The probability of missing a basin of mass `MAX_UNSEEN` that `MIN_STARTS` allows."""

MIN_STARTS = math.ceil(math.log(RISK) / math.log(1 - MAX_UNSEEN))
"""Default smallest number of starts: `⌈log RISK / log(1 − MAX_UNSEEN)⌉ = 59`.

`S` independent starts all miss a basin reached with probability `p` with probability `(1 − p)^S`.
With `S >= 59`, a basin of mass `>= 5 %` is seen at least once with probability `>= 95 %` before the
evidence can be called enough; combined with `unseen_mass <= 5 %` (Good–Turing: catches landscapes
with many rare basins, where singletons abound) this is what makes "enough" survive rare basins. The
issue's case — a local minimum hit 3 times in 32 starts while the global minimum has mass 2–5 % — is
never enough at 32 starts, and the chance of a wrong "enough" at 59–64 starts is that of missing the
global basin: simulated with checks every 16 starts up to 64 (`tests/test_basins.py`), 3.5 % at mass
5 % (`0.95^64 = 3.7 %`; "hits >= 3" alone: 21 %), 26 % at mass 2 % when the other starts fall into a
few large basins (no singletons: no statistic can see the difference; `0.98^64 = 27 %`), 0 when they
scatter over many small ones (Good–Turing). A 2 % basin needs 149 starts for a 5 % risk, or a
structured start; `missed_mass` reports what a search may have missed.
"""


def basin_tolerance(dtype, gtol: float | None = None) -> float:
    """The relative objective tolerance within which two converged starts are one minimum:

        rtol = gtol + 64 · eps      (1e-9 in float64, 1e-4 in float32 with the default gtol)

    A converged start has `‖∇f̃‖ <= gtol` in balanced coordinates. Near a minimum with curvature `>= μ`
    (off the symmetries), `f − f* <= ‖∇f̃‖²/(2μ)` (Polyak–Łojasiewicz); in balanced coordinates the
    penalty alone gives curvature 1 and objectives are O(1) (CE `<= log K`, MSE `<= ½` at the origin),
    so `gtol` relative allows curvatures down to `μ = gtol/2`, and degenerate minima too (a quartic
    `f − f* = ¼ x⁴` with `|x³| <= gtol` is `<= gtol^{4/3}/4` above). `64 eps` covers the round-off of
    evaluating the objective (a sum of O(100) rounded terms). Distinct minima of these models differ by
    far more (the deep-linear trap: 0.8 %); the theory check itself allows 1e-8 (float64).

    **Arguments:** `dtype` of the solve; `gtol` the solver's gradient tolerance (default
    `default_gtol(dtype)`).
    """
    gtol = default_gtol(dtype) if gtol is None else float(gtol)
    return gtol + 64 * float(jnp.finfo(dtype).eps)


def missed_mass(starts: int, risk: float = RISK) -> float:
    """The largest basin mass `p` that `starts` random starts all miss with probability `>= risk`:
    `1 − risk^{1/starts}` (4.6 % for 64 starts, 2.5 % for 120, at `risk = 0.05`). Basins heavier than
    this were seen with probability `> 1 − risk`."""
    V.integer("starts", starts, 1)
    return 1.0 - risk ** (1.0 / starts)


@dataclasses.dataclass(frozen=True)
class BasinStatistics:
    """What `S` starts of one problem found (`basin_statistics`).

    **Fields:**

    - `starts`: `S`, all starts.
    - `converged`: starts that converged (the only ones counted as minima).
    - `best`: the lowest converged value (NaN if none converged).
    - `hits`: converged starts at the best value (within `rtol`).
    - `minima`: `[[value, count], ...]` ascending; `value` is the lowest member of each cluster.
    - `singletons`: minima hit by exactly one start (`N₁`).
    - `unseen_mass`: `(N₁ + U) / S`, the Good–Turing estimate of the mass of basins not seen, with the
      `U = S − converged` unconverged starts counted as unseen.
    - `unconverged`: `{status name: count}` of the starts that did not converge.
    - `beaten_by`: the lowest finite value of an unconverged start if it is below `best` by more than
      the tolerance (the best converged value is then not the lowest point seen), else `None`.
    - `rtol`: the clustering tolerance used.
    """

    starts: int
    converged: int
    best: float
    hits: int
    minima: list
    singletons: int
    unseen_mass: float
    unconverged: dict
    beaten_by: float | None
    rtol: float

    def same_value(self, a: float, b: float) -> bool:
        """Whether two objective values are one minimum under this tolerance."""
        return abs(a - b) <= self.rtol * max(1.0, abs(a), abs(b))


def basin_statistics(objectives: Float[ArrayLike, " S"], status: Int[ArrayLike, " S"], *,
                     rtol: float | None = None, dtype=None) -> BasinStatistics:
    """Cluster the final objectives of `S` starts of one problem into distinct minima (module docstring).

    **Arguments:**

    - `objectives`: shape `(S,)`, each start's final objective (`Solution.seed_objectives`).
    - `status`: shape `(S,)`, each start's `Status` code (`Solution.seed_status`).
    - `rtol`: the clustering tolerance; default `basin_tolerance(dtype)`.
    - `dtype`: the solve's dtype (default: that of `objectives`).

    **Returns:** a `BasinStatistics`.

    **Raises:** `ValueError` if the two arrays are not 1-d of one length `S >= 1`.
    """
    values = np.asarray(objectives)
    codes = np.asarray(status)
    if values.ndim != 1 or codes.shape != values.shape or values.size == 0:
        raise V.fail("objectives", f"an array of shape {values.shape}",
                     f"expected shape (S,) with S >= 1, like status (shape {codes.shape})")
    if rtol is None:
        rtol = basin_tolerance(values.dtype if dtype is None else dtype)
    values = values.astype(np.float64)
    ok = (codes == Status.converged) & np.isfinite(values)
    minima: list[list] = []
    for v in np.sort(values[ok]):
        if minima and v - minima[-1][0] <= rtol * max(1.0, abs(minima[-1][0])):
            minima[-1][1] += 1
        else:
            minima.append([float(v), 1])
    starts, converged = int(values.size), int(np.sum(ok))
    best = minima[0][0] if minima else math.nan
    hits = minima[0][1] if minima else 0
    singletons = sum(1 for _, count in minima if count == 1)
    names = Status.names(codes[~ok]) if np.any(~ok) else np.asarray([], str)
    unconverged = {str(name): int(np.sum(names == name)) for name in np.unique(names)}
    others = values[~ok & np.isfinite(values)]
    beaten_by = None
    if others.size:
        low = float(others.min())
        if not minima or low < best - rtol * max(1.0, abs(best)):
            beaten_by = low
    return BasinStatistics(starts=starts, converged=converged, best=best, hits=hits, minima=minima,
                           singletons=singletons, unseen_mass=(singletons + starts - converged) / starts,
                           unconverged=unconverged, beaten_by=beaten_by, rtol=float(rtol))


def enough_evidence(stats: BasinStatistics, *, agree: int = AGREE, min_starts: int = MIN_STARTS,
                    max_unseen: float = MAX_UNSEEN) -> bool:
    """Whether a search may stop: `hits >= agree` and `starts >= min_starts` and
    `unseen_mass <= max_unseen` (defaults and their derivation: `MIN_STARTS`)."""
    return (stats.hits >= agree and stats.starts >= min_starts and stats.unseen_mass <= max_unseen)


def is_confident(stats: BasinStatistics, hessian_verdict: str | None, returned_objective: float, *,
                 converged: bool = True, agree: int = AGREE, min_starts: int = MIN_STARTS,
                 max_unseen: float = MAX_UNSEEN) -> bool:
    """The search's `confident`: the returned point converged (`converged`: its status; the Hessian
    check's tolerance grows with the gradient norm, so it cannot tell an unconverged point), the
    evidence is enough (`enough_evidence`), the second-order check at the returned point passed
    (`hessian_verdict == "nonnegative"`: not a saddle), and the returned value is the best: one minimum
    with `best` and beaten by no start (`beaten_by is None`). Never true for a value another start
    beat."""
    if not converged or not math.isfinite(returned_objective) or not math.isfinite(stats.best):
        return False
    return (enough_evidence(stats, agree=agree, min_starts=min_starts, max_unseen=max_unseen)
            and hessian_verdict == "nonnegative"
            and stats.same_value(returned_objective, stats.best)
            and stats.beaten_by is None)
