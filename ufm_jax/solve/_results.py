"""Why a solve stopped: one enumeration, used by solvers, results, checks, sweeps and the CLI."""

from __future__ import annotations

import enum

import numpy as np


class Status(enum.IntEnum):
    """Why a solve stopped, one code per problem (and per random start).

    An `IntEnum`, not an `eqx.Enumeration`: batched results and sweep datasets store the code as a plain
    integer array (`Status(code)` reads one back, `Status.names(codes)` a whole array), and the compiled
    loop compares integers. `RUNNING` is internal to the loop and never returned.
    """

    converged = 0
    max_steps = 1
    nonfinite = 2
    diverged = 3
    stalled = 4

    @property
    def message(self) -> str:
        """One sentence saying what the code means."""
        return _MESSAGES[self]

    @classmethod
    def names(cls, codes) -> np.ndarray:
        """The member names of an array of codes (same shape, dtype `str`)."""
        codes = np.asarray(codes)
        table = np.asarray([member.name for member in cls])
        return table[codes]


# A problem whose objective has not decreased (beyond round-off) and whose gradient norm has not reached
# a new low for this many iterations is `stalled`: it sits at the floor of the working precision (or a
# line search keeps failing) before reaching gtol. Gradient descent with a small step keeps setting new
# lows of the gradient norm, so it is not cut short. 200, not fewer: at a degenerate minimum (a point on
# a phase boundary, e.g. two-cluster CE at λ_Z = √n_A/N) L-BFGS converges slowly and its gradient norm
# can go 100 iterations without a new low before reaching 1e-9 (measured: stalled at 3e-8 with 50 and
# 100, converged after 1007 iterations with 200).
STALL_PATIENCE = 200

_MESSAGES = {
    Status.converged: "the (projected) gradient norm reached gtol",
    Status.max_steps: "max_steps was reached before the gradient norm reached gtol",
    Status.nonfinite: "the objective or its gradient became non-finite (the last finite iterate is kept)",
    Status.diverged: "the objective grew beyond 1e6 times its starting size",
    Status.stalled: (f"neither the objective nor the gradient norm improved for {STALL_PATIENCE} iterations: "
                     "the floor of the working precision (or a failing line search) before gtol"),
}

# Internal to the solve loop: still iterating.
RUNNING = -1
