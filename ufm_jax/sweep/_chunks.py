"""One chunk of a sweep: its solve, every variable it stores, and its file.

**Determinism.** Start `j` of a point is drawn from `(seed, j)`, where `seed` is the point's PRNG seed
(the `seed` axis, or `solver.seed`): it depends on nothing else, not on the chunk or the other points,
so resumed, re-chunked and sharded runs compute the same starts. (Points sharing a seed share their
random draws — common random numbers, which keep phase diagrams smooth.)

**Records.** A solved chunk becomes arrays with a leading point axis (`chunk_records`): the solver's
outcome, every metric (`METRICS`), the check against the theory with its evidence, the phase
boundaries, and the trajectories when recorded; written as one `.npz` (`chunk_bytes`), read back only
if it matches its manifest line and holds this sweep's positions (`read_chunk`).
"""

from __future__ import annotations

import io
import math
import zipfile

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._check import check
from .._families import analytic_solution, phase_boundaries
from .._problem import pad_columns, stack_problems
from .._search import search
from ..metrics import class_means, nc_metrics
from ..solve import Solution, Status, Trajectory, solve
from ..solve import make_solver as _make_solver
from ..solve._minimise import TRAJECTORY_FIELDS
from ._config import SweepConfig
from ._files import Manifest
from ._grid import Batch, Point


def make_solver(config: SweepConfig, problem):
    s = config.solver
    return _make_solver(s.method, problem, "solver.method", max_steps=s.max_steps, gtol=s.gtol)


def _metrics(params, problem) -> dict:
    out = dict(nc_metrics(params, problem))
    means = class_means(params, problem)[0]
    norms = jnp.sqrt(jnp.sum(means * means, axis=0))
    out["mean_norms"] = norms
    # A class is dead (its mean vanishes) below 1e-6 of the largest mean norm.
    out["dead_classes"] = jnp.sum(norms <= 1e-6 * jnp.max(norms))
    return out


METRICS = eqx.filter_jit(eqx.filter_vmap(_metrics))
"""Every metric a sweep stores, of a batch of solutions: `METRICS(solution.params, solution.problem)`."""


def _solve_stacked(config: SweepConfig, problem, seeds: np.ndarray, n: int, pad_to: int, *,
                   shard: bool | None = None, start=None, history: int | None = None) -> Solution:
    def pad(x):
        x = np.asarray(x) if not isinstance(x, jax.Array) else x
        if pad_to == n:
            return x
        lib = jnp if isinstance(x, jax.Array) else np
        return lib.concatenate([x, lib.repeat(x[-1:], pad_to - n, axis=0)])

    solver = make_solver(config, jax.tree.map(lambda x: x[0], problem))
    shard = config.run.shard if shard is None else shard
    slots = config.run.slots or None
    s = config.solver
    if start is None and s.starts is None:
        # The adaptive search (the default): a point whose theory certifies its first start stops
        # there; the others draw structured and random starts until the evidence is enough. It pads
        # its own rounds, so the chunk is not padded.
        return search(problem, solver, key=np.asarray(seeds, dtype=np.int64)[:n], max_starts=s.max_starts,
                      init_scale=s.init_scale, shard=shard, slots=slots, history=history, **s.rule)
    problem = jax.tree.map(pad, problem)
    if start is None:
        sol = solve(problem, solver, key=pad(np.asarray(seeds, dtype=np.int64)), seeds=s.starts,
                    shard=shard, init_scale=s.init_scale, slots=slots, history=history)
    else:
        sol = solve(problem, solver, start=jax.tree.map(pad, start), shard=shard, slots=slots,
                    history=history)
    return sol[:n]


def solve_chunk(config: SweepConfig, batch: Batch, pad_to: int | None = None, *,
                shard: bool | None = None) -> Solution:
    """Solve a chunk's points (`Grid.batch`) as one batch, padded to `pad_to` points by repeating the
    last, best of the configured random starts each.

    Each point's starts are drawn from its own seed (`solve` with one key per problem), so a point's
    numbers do not depend on the chunk it lands in: a resumed sweep reproduces them exactly. With
    `run.history = K` each point's returned start records its trajectory (`Solution.history`).
    """
    n = len(batch)
    return _solve_stacked(config, batch.problem, batch.seeds, n, n if pad_to is None else pad_to,
                          shard=shard, history=config.run.history)


def solve_points(config: SweepConfig, points: list[Point], columns: int | None = None, *,
                 pad_to: int | None = None, shard: bool | None = None, start=None,
                 history: int | None = None) -> Solution:
    """Solve `points` (one `Problem` each) as one batch, explicit problems padded to `columns`, like
    `solve_chunk`; or from `start` (a batched `Params`, one per point) with one start each; recording
    every `history` iterations (default: nothing, whatever `run.history` says)."""
    n = len(points)
    problems = [p.problem if columns is None or p.problem.weighted else
                pad_columns(p.problem, columns) for p in points]
    return _solve_stacked(config, stack_problems(problems), np.asarray([p.seed for p in points]), n,
                          n if pad_to is None else pad_to, shard=shard, start=start, history=history)


def theory_columns(solution: Solution, i: int, rule: dict | None = None) -> dict:
    """`ufm_jax.check` of point `i` against `analytic_solution`, and its evidence, as scalars."""
    sol_i = solution[i]
    result = check(sol_i, analytic_solution(sol_i.problem), **(rule or {}))
    out: dict = {"theory_objective": result.theory_objective, "gap": result.gap,
                 "geometry_gap": result.geometry_gap, "certified": bool(result.certified),
                 "regime": result.regime or "", "reason": result.reason,
                 "objective_rtol": result.objective_rtol, "geometry_rtol": result.geometry_rtol}
    out.update({f"geometry_{k}": float(v) for k, v in result.geometry.items()})
    ev = result.evidence
    out.update({"evidence": ev.kind, "confident": bool(ev.confident), "starts": ev.starts, "hits": ev.hits,
                "hit_fraction": ev.hits / ev.starts, "minima": len(ev.minima),
                "hessian_min_eig": math.nan if ev.hessian_min_eig is None else ev.hessian_min_eig,
                "unseen_mass": ev.unseen_mass})
    return out


def _columns(rows: list[dict]) -> dict[str, np.ndarray]:
    """Per-point dicts of scalars → one array per key (bools, floats with NaN for missing, or strings)."""
    out = {}
    for key in dict.fromkeys(k for row in rows for k in row):
        values = [row.get(key) for row in rows]
        kinds = {type(v) for v in values if v is not None}
        if kinds <= {bool}:
            out[key] = np.asarray([bool(v) for v in values])
        elif kinds <= {float, int, bool}:
            out[key] = np.asarray([np.nan if v is None else float(v) for v in values], np.float64)
        else:
            out[key] = np.asarray(["" if v is None else str(v) for v in values])
    return out


def boundary_columns(problems: list) -> dict[str, np.ndarray]:
    """`phase_boundaries` of every problem: `boundary_names` (their union, in order of first
    appearance) and `boundaries`, shape `(points, names)`, NaN where a point has no such boundary."""
    found = [phase_boundaries(p) for p in problems]
    names = list(dict.fromkeys(name for b in found for name in b))
    table = np.asarray([[b.get(name, np.nan) for name in names] for b in found], np.float64)
    return {"boundary_names": np.asarray(names, dtype=str),
            "boundaries": table.reshape(len(problems), len(names))}


def chunk_records(batch: Batch, solution: Solution, digest: str = "",
                  rule: dict | None = None) -> dict[str, np.ndarray]:
    """Every stored variable of a solved chunk, as arrays with a leading point axis (plus `flat`, the
    points' positions, and `fingerprint`, the sweep's, which a rerun checks)."""
    n = len(batch)
    problem = batch.problem
    rec: dict[str, np.ndarray] = {
        "flat": np.asarray(batch.flat, np.int64),
        "fingerprint": np.asarray(digest),
        "objective": np.asarray(solution.objective, np.float64),
        "grad_norm": np.asarray(solution.grad_norm, np.float64),
        "iterations": np.asarray(solution.iterations, np.int64),
        "status": np.asarray(solution.status, np.int64),
        "status_name": Status.names(np.asarray(solution.status)),
        "objective_spread": np.asarray(solution.objective_spread, np.float64),
        "seed_objectives": np.asarray(solution.seed_objectives, np.float64),
        "seed_status": np.asarray(solution.seed_status, np.int64),
    }
    for key, values in batch.labels.items():
        rec[key] = np.asarray(values, np.float64)
    rec["seed"] = np.asarray(batch.seeds, np.int64)
    rec["lam_w"] = np.asarray(problem.lam_w[:, 0], np.float64)
    rec["lam_h"] = np.asarray(problem.lam_h, np.float64)
    rec["lam_b"] = (np.asarray(problem.lam_b, np.float64) if problem.bias == "regularised"
                    else np.full(n, np.nan))
    rec["num_classes"] = np.full(n, problem.num_classes, np.int64)
    rec["depth"] = np.full(n, problem.depth, np.int64)
    for key, value in METRICS(solution.params, solution.problem).items():
        rec[key] = np.asarray(value)
    rec.update(_columns([theory_columns(solution, i, rule) for i in range(n)]))
    rec.update(boundary_columns([jax.tree.map(lambda x: x[i], problem) for i in range(n)]))
    if solution.history is not None:
        rec.update(history_columns(solution.history, rec["theory_objective"]))
    return rec


def history_columns(history: Trajectory, theory_objective: np.ndarray) -> dict[str, np.ndarray]:
    """The trajectories of a chunk's points over a record axis cut to the longest (`(points, R)`):
    `history_length`, `history_iteration` (-1 past a point's length: points stop at different
    iterations, and the last record of each is its returned point, wherever it stopped), one
    `history_<field>` per `TRAJECTORY_FIELDS` (NaN past the length) and `history_gap`, the gap to the
    theory's minimum `(f − f*)/max(1, |f*|)` as `ufm_jax.check` computes it (NaN without a theory)."""
    length = np.asarray(history.length, np.int64)
    size = max(int(length.max(initial=0)), 1)
    past = np.arange(size)[None, :] >= length[:, None]
    out = {"history_length": length,
           "history_iteration": np.where(past, -1, np.asarray(history.iteration, np.int64)[:, :size])}
    for name in TRAJECTORY_FIELDS:
        out[f"history_{name}"] = np.where(past, np.nan, np.asarray(history.values[name], np.float64)[:, :size])
    theory = np.asarray(theory_objective, np.float64)[:, None]
    out["history_gap"] = (out["history_objective"] - theory) / np.maximum(1.0, np.abs(theory))
    return out


def chunk_bytes(rec: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **rec)
    return buf.getvalue()


# A chunk file that is not a valid .npz (cut short, bytes flipped) fails in the zip reader or in NumPy.
_CHUNK_ERRORS = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile)


def read_chunk(manifest: Manifest, name: str, flat: np.ndarray, digest: str,
               ) -> tuple[dict[str, np.ndarray] | None, str]:
    """A finished chunk's arrays if its file matches its manifest line and holds these positions of
    this sweep: `(arrays, "")`; else `(None, why)` (then it is recomputed)."""
    data, why = manifest.read(name)
    if data is None:
        return None, why
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as f:
            rec = {k: f[k] for k in f.files}
    except _CHUNK_ERRORS:
        return None, "unreadable"
    if not np.array_equal(rec.get("flat", ()), flat) or str(rec.get("fingerprint", "")) != digest:
        return None, "of another sweep"
    return rec, ""
