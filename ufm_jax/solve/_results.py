"""Status codes of a solve, one per problem (and per random start)."""

from __future__ import annotations

import equinox as eqx
import numpy as np


class RESULTS(eqx.Enumeration):
    """Why a solve stopped. Batched results store the integer code (`STATUS_NAMES` order)."""

    converged = "the gradient norm reached gtol"
    max_steps = "max_steps was reached before the gradient norm reached gtol"
    nonfinite = "the objective or its gradient became non-finite"
    diverged = "the objective grew beyond 1e6 times its starting size"


STATUS_NAMES: tuple[str, ...] = ("converged", "max_steps", "nonfinite", "diverged")
CONVERGED, MAX_STEPS, NONFINITE, DIVERGED = range(4)
# Internal: still iterating.
_RUNNING = -1


def status_name(code) -> str | np.ndarray:
    """The name of an integer status code, or an array of names for an array of codes."""
    names = np.asarray(STATUS_NAMES, dtype=object)
    out = names[np.asarray(code)]
    return str(out) if np.ndim(out) == 0 else out
