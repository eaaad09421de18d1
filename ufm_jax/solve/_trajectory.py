"""Trajectories: what a solve recorded along the way (`solve(..., history=k)`)."""

from __future__ import annotations

import equinox as eqx
import numpy as np
from jaxtyping import Array, Float, Int

from ._minimise import TRAJECTORY_FIELDS, Recorded


class Trajectory(eqx.Module):
    """The records of one problem's returned start, or of each problem of a batch (leading axis `B`).

    Records are taken at iteration 0, every `every` iterations and at the returned point (the last
    record), in the representation that was solved (the one-column-per-class reduction on the default
    path, where NC1 and the within-class spread are 0 by construction). Entries past `length` are NaN.

    **Fields:**

    - `iteration`: shape `(*B, R)`.
    - `values`: `{name: (*B, R)}` for `objective`, `grad_norm` (the solver's coordinates, as its
      stopping test) and the scalar NC metrics `nc1`, `within_class_spread`, `etf_distance`,
      `orthogonal_frame_distance`, `nc3`, `nc3_directional`, `minority_spread`,
      `minority_logit_spread` (`ufm_jax.metrics.nc_metrics`).
    - `length`: records taken, shape `(*B,)`.
    - `every`: the recording interval `k`.
    """

    iteration: Int[Array, "*B R"]
    values: dict[str, Float[Array, "*B R"]]
    length: Int[Array, "*B"]
    every: int = eqx.field(static=True)

    def as_lists(self) -> dict[str, list]:
        """One problem's trajectory as flat lists trimmed to its length: `{"iteration": [...],
        "objective": [...], ...}` (what `ufm solve --json` prints under `history`)."""
        if np.ndim(self.length) != 0:
            raise ValueError("trajectory is batched: index it first (solution[i].history).")
        n = int(self.length)
        out = {"iteration": np.asarray(self.iteration)[:n].tolist()}
        out.update({name: np.asarray(self.values[name])[:n].tolist() for name in TRAJECTORY_FIELDS})
        return out


def pick_trajectories(recorded: Recorded, best: np.ndarray, every: int) -> Trajectory:
    """The trajectories of the best start of each problem (`recorded` has leading axes `(B, seeds)`,
    `best` the best start of each problem)."""
    rows = np.arange(best.shape[0])
    pick = lambda a: np.asarray(a)[rows, best]  # noqa: E731
    values = pick(recorded.values)
    return Trajectory(iteration=pick(recorded.iteration),
                      values={name: values[..., i] for i, name in enumerate(TRAJECTORY_FIELDS)},
                      length=pick(recorded.length), every=every)
