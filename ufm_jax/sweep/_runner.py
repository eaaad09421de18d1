"""The chunked, resumable sweep runner.

**Files.** A sweep writes into its results folder (`_store`): it holds the folder's lock for the whole
run (a second sweep there stops at once, naming this one), writes the folder's fingerprint on the first
run and refuses a folder that holds another (so numbers computed two ways never mix), and writes every
chunk's results to `chunks/<group>-c<chunk>-<fingerprint>.npz` atomically, its SHA-256 appended to
`manifest.sha256`. A rerun of the same command verifies and skips finished chunks (a chunk that is
missing, damaged or unlisted is solved again, with one warning line), so an interrupted sweep (Ctrl-C,
a killed process, a killed machine) resumes where it stopped and the final dataset is identical to an
uninterrupted run's. The dataset, `results.csv`, `report.md` and the figures are restored when missing
or damaged; every run appends its chunks and timings to `run_log.json`.

**Memory.** A plan holds positions, never points: each chunk's problems are made when it is solved
(`Grid.batch`), its results written and dropped; the dataset is assembled by reading the chunks back one
at a time. Before anything is compiled the output folder is checked (writable, the disk large enough)
and so is the memory of one batch of every group (`ufm_jax._memory`).

**Determinism.** Start `j` of a point is drawn from `(seed, j)`, where `seed` is the point's PRNG seed
(the `seed` axis, or `solver.seed`): it depends on nothing else, not on the chunk or the other points,
so resumed, re-chunked and sharded runs compute the same starts. (Points sharing a seed share their
random draws — common random numbers, which keep phase diagrams smooth.)

**Processes.** Each chunk is one `solve` call whose batch axis is sharded over `jax.devices()`. Under
`jax.distributed` (`ufm sweep --distributed`), every process runs the same command: `jax.devices()`
spans all of them, every process takes part in each solve, and process 0 alone holds the lock, decides
which chunks are done (broadcast to the others) and writes every file. A check that fails on any process
(the folder, the memory) stops every process with the same message.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import io
import json
import math
import os
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr
from jax.experimental import multihost_utils
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from .._check import check
from .._families import analytic_solution, phase_boundaries
from .._json import jsonable
from .._memory import InsufficientMemory, available_memory, check_fits, human
from .._problem import pad_columns, stack_problems
from ..metrics import class_means, nc_metrics
from .._search import search
from ..solve import Solution, Status, Trajectory, solve
from ..solve._minimise import TRAJECTORY_FIELDS, history_records
from ..solve import make_solver as _make_solver
from ._config import SweepConfig, SweepConfigError
from ._dataset import build_dataset, confident_searches, count, load_dataset, report, save_dataset, to_csv
from ._files import DamagedFileError, Manifest, atomic_write, remove_temp_files, sha256
from ._grid import Batch, Grid, Group, Point, groups, history_bytes
from ._plots import figure_metrics, plot_dataset
from ._store import (
    SweepRunError,
    claim,
    describe_folder,
    fingerprint,
    fingerprint_hash,
    free_disk,
    locked,
)


def is_writer() -> bool:
    """Only process 0 writes files under `jax.distributed`."""
    return jax.process_index() == 0


# ---- the plan -------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Plan:
    """What a sweep will solve: the grid, its groups and their chunks (positions, not points).

    **Fields:** `config`; `grid`; `groups`; `num_devices` (the devices a batch is sharded over).
    """

    config: SweepConfig
    grid: Grid
    groups: tuple[Group, ...]
    num_devices: int = 1

    def chunks(self) -> Iterator[tuple[Group, int]]:
        """`(group, chunk index)` of every chunk, in order."""
        for group in self.groups:
            for i in range(group.num_chunks):
                yield group, i

    @property
    def num_chunks(self) -> int:
        return sum(g.num_chunks for g in self.groups)

    def batch(self, group: Group, i: int) -> Batch:
        """The points of chunk `i` of `group`, made now, stacked (NumPy)."""
        return self.grid.batch(group.chunk(i), group)

    def points(self, group: Group, i: int) -> list[Point]:
        """The points of chunk `i` of `group`, made now, one `Problem` each (for inspection)."""
        return self.grid.points(group.chunk(i))

    def fingerprint(self) -> dict:
        """The sweep's fingerprint (`_store.fingerprint`) under the current precision and devices."""
        return fingerprint(self.config, self.num_devices)

    @staticmethod
    def chunk_name(group: Group, i: int, digest: str) -> str:
        """`chunks/<group>-c<i>-<fingerprint>.npz`: a name from the position alone (no point is built);
        the manifest holds its checksum, the file its positions and fingerprint."""
        return f"chunks/{group.tag}-c{i:06d}-{digest[:8]}.npz"


def plan(config: SweepConfig) -> Plan:
    """Group the grid and size its chunks; every structure is checked, and so is the solver against
    each group's problem. Nothing is written or compiled.

    **Raises:** `SweepConfigError` naming a point that cannot be built, or `solver.method`.
    """
    grid = Grid(config)
    devices = len(jax.devices()) if config.run.shard else 1
    grps = tuple(groups(grid, devices))
    for group in grps:
        try:
            make_solver(config, group.example)
        except ValueError as e:
            raise SweepConfigError(f"solver.method: {e}") from None
    return Plan(config, grid, grps, devices)


# ---- pre-flight ------------------------------------------------------------------------------------------


def _describe_group(config: SweepConfig, group: Group) -> str:
    p = group.example
    m = p.columns_per_class
    width = (f"{m} column{'s' if m > 1 else ''} per class" if p.weighted else
             f"per-class {m} (explicit: the largest class)")
    widths = f", widths {list(p.widths)}" if p.widths else ""
    starts = config.solver.batch_starts
    return (f"classes K = {p.num_classes}, dim d = {p.dim}{widths}, {width}, {starts} "
            f"start{'s' if starts > 1 else ''} at once, {p.lam_h.dtype.name}")


def check_memory(sweep: Plan) -> None:
    """One batch of every group fits in the memory this process has (`ufm_jax._memory`).

    **Raises:** `SweepConfigError` naming the group's sizes and the bytes.
    """
    for group in sweep.groups:
        one_point = group.point_bytes > (available_memory()[0] or math.inf)
        what = (f"one point of group {group.tag} ({_describe_group(sweep.config, group)})" if one_point else
                f"one batch of group {group.tag} ({group.chunk_size} points; "
                f"{_describe_group(sweep.config, group)})")
        advice = ("set problem.per_class (the exact weighted representation: its cost does not grow "
                  "with the class sizes) or use smaller sizes" if one_point and not group.example.weighted
                  else "use smaller sizes" if one_point
                  else "set a smaller run.chunk_size (or run.memory_gb, which sizes it)")
        try:
            check_fits(group.batch_bytes if not one_point else group.point_bytes, what, advice)
        except InsufficientMemory as e:
            raise SweepConfigError(str(e)) from None


def output_bytes(sweep: Plan) -> int:
    """Estimated bytes of the results: per stored number 8 B in a chunk, 8 B in the dataset and ~24 B
    in the CSV; per chunk file ~20 kB of headers (60 arrays); ~1 MB for the figures and the rest."""
    total = 2**20
    for group in sweep.groups:
        p = group.example
        # Seed arrays grow with the starts drawn: `starts`, or for the search its first start (the
        # pre-flight refuses only what cannot fit: a point without a theory may draw up to max_starts).
        starts = sweep.config.solver.starts or 1
        numbers = (60 + 4 * starts + p.num_classes * (p.num_classes + 4)
                   + sum(p.layer_dims) * 3)
        if sweep.config.run.history is not None:  # the records of one start (outside the CSV)
            steps = make_solver(sweep.config, p).max_steps
            numbers += history_records(steps, sweep.config.run.history) * (len(TRAJECTORY_FIELDS) + 2) // 2
        total += len(group.indices) * numbers * 40 + group.num_chunks * 20_000
    return total


def check_output(out: Path, sweep: Plan) -> None:
    """`out` can be a results folder (it is one, or can be made) and its disk can hold the results;
    creates nothing.

    **Raises:** `SweepRunError` naming the path and the reason.
    """
    if out.exists() and not out.is_dir():
        raise SweepRunError(f"the output {out} is a file, not a folder: choose another --out.")
    parent = next((p for p in (out, *out.parents) if p.exists()), None)
    if parent is None or not parent.is_dir():
        raise SweepRunError(f"the output {out} cannot be made: {parent} is not a folder.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise SweepRunError(f"the output {out} is not writable ({parent} cannot be written: no permission, "
                            "or a read-only file system): choose another --out.")
    chunks = out / "chunks"
    if chunks.exists() and not chunks.is_dir():
        raise SweepRunError(f"{chunks} is a file, not a folder: remove it or choose another --out.")
    needed, free = output_bytes(sweep), free_disk(out)
    if free is not None and needed > free:
        raise SweepRunError(f"the results need about {human(needed)} on disk, but {parent} has "
                            f"{human(free)} free: free some space or choose another --out.")


def estimate_seconds(sweep: Plan) -> float:
    """A rough wall time: ~8 s of compiling per group (the solver, the verification and the metrics,
    CPU); per problem-start and device `2 ms × size`, `size` the reduced parameter count over that of
    `K = 10, d = 16` (about 1000 problems/s on 2 CPU cores, benchmarks/README.md), plus the
    full-problem verification of explicit points; and ~5 ms per point on the host (the theory check,
    the records)."""
    seconds = 0.0
    for group in sweep.groups:
        p = group.example
        dims = p.layer_dims
        params = sum(a * b for a, b in zip(dims[:-1], dims[1:])) + p.num_classes * (p.dim + 1)
        per = 2e-3 * max(1.0, params / 330) * sweep.config.solver.most_starts
        per += 1e-8 * p.num_classes * p.columns_per_class * p.dim * (p.columns_per_class > 1)
        seconds += 8 + len(group.indices) * (per / sweep.num_devices + 5e-3)
    return seconds


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "an unknown time"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def dry_run(config: SweepConfig, *, output: str | Path | None = None) -> tuple[int, list[str], str]:
    """What `run_sweep` would do, without writing anything (not even the output folder).

    **Returns:** `(points, lines, error)`: the grid size; lines describing the compiled groups, the
    memory, the disk, a time estimate and the output folder; and the one-line error a run would stop
    with (empty if none).

    **Raises:** `SweepConfigError` for a point that cannot be built.
    """
    out = Path(config.output if output is None else output)
    sweep = plan(config)
    content = sweep.fingerprint()
    shape = " × ".join(f"{name} ({len(values)})" for name, values in config.axes) or "no axes"
    lines = [f"sweep {config.name!r}: {sweep.grid.size} points over {shape}; fingerprint "
             f"{fingerprint_hash(content)} ({content['precision']}, {content['devices']} device"
             f"{'s' if content['devices'] > 1 else ''}, {content['platform']})",
             f"{len(sweep.groups)} compiled group{'s' if len(sweep.groups) > 1 else ''}:"]
    for group in sweep.groups:
        lines.append(f"  {group.tag}: {len(group.indices)} points in {group.num_chunks} chunk"
                     f"{'s' if group.num_chunks > 1 else ''} of {group.chunk_size}; one batch needs about "
                     f"{human(group.batch_bytes)} ({_describe_group(config, group)})")
    if config.run.history is not None:
        recorded, how = history_bytes(config, sweep.groups[0].example)
        lines.append(f"history: every {config.run.history} iterations; a point's solve holds {human(recorded)} "
                     f"of records ({how}), counted in the batch memory above")
    available, where = available_memory()
    largest = max(g.batch_bytes for g in sweep.groups)
    lines.append(f"memory: the largest batch needs about {human(largest)}; "
                 + (f"{human(available)} available ({where})" if available is not None else
                    "what the machine has is unknown"))
    free = free_disk(out)
    lines.append(f"disk: the results need about {human(output_bytes(sweep))}"
                 + (f"; {human(free)} free" if free is not None else ""))
    lines.append(f"time: about {_duration(estimate_seconds(sweep))} (rough: ~8 s of compiling per group, "
                 "~500 problem-starts/s per device at K = 10, d = 16 scaled by size, ~5 ms per point on "
                 "the host)")
    folder, error = describe_folder(out, content, config)
    lines.append(f"output: {folder}")
    try:
        check_memory(sweep)
        check_output(out, sweep)
    except (SweepConfigError, SweepRunError) as e:
        error = str(e)
    return sweep.grid.size, lines, error


# ---- solving one chunk ----------------------------------------------------------------------------------


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


# ---- the sweep --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class SweepResult:
    """What `run_sweep` did: the output folder, the dataset (or None on non-writer processes) and counts."""

    output: Path
    dataset: xr.Dataset | None
    total: int
    certified: int
    not_certified: int
    failed: int
    computed_points: int
    seconds: float

    def summary(self) -> str:
        searched = confident_searches(self.dataset) if self.dataset is not None else 0
        confident = f" ({searched} of them confident searches: no theory)" if searched else ""
        return (f"{self.total} points: {self.certified} certified, {self.not_certified} not certified"
                f"{confident}, {self.failed} failed  ({self.computed_points} computed, {self.seconds:.1f} s) "
                f"→ {self.output}")


def _broadcast_done(done: list[bool]) -> list[bool]:
    if jax.process_count() == 1:
        return done
    flags = multihost_utils.broadcast_one_to_all(np.asarray(done, dtype=np.int32))
    return [bool(x) for x in np.asarray(flags)]


def _agree(message: str) -> str:
    """Under `jax.distributed`: the first non-empty message of any process, on every process (so that a
    check failing on one process stops all of them, none left waiting in a collective)."""
    if jax.process_count() == 1:
        return message
    buf = np.zeros(2048, dtype=np.uint8)
    data = message.encode()[:2048]
    buf[:len(data)] = np.frombuffer(data, dtype=np.uint8)
    rows = np.asarray(multihost_utils.process_allgather(buf))
    for row in rows.reshape(-1, buf.size):
        text = bytes(row).rstrip(b"\0").decode(errors="replace")
        if text:
            return text
    return ""


def _together(step):
    """Run `step()` on every process; if it raises a `SweepConfigError` or `SweepRunError` on any of
    them, raise that message on all of them."""
    if jax.process_count() == 1:
        return step()
    result, message, kind = None, "", SweepRunError
    try:
        result = step()
    except (SweepConfigError, SweepRunError) as e:
        message, kind = str(e), type(e)
    agreed = _agree(message)
    if agreed:
        raise (kind if message else SweepRunError)(agreed)
    return result


class _Speed(ProgressColumn):
    def render(self, task):
        speed = task.finished_speed or task.speed
        return Text("-- points/s" if speed is None else f"{speed:.2f} points/s")


class _Progress:
    """A sweep's progress on stderr: a rich progress bar on a terminal (or the `console` given); one
    plain line per chunk otherwise (a log file or a pipe, where a bar's redraws come out garbled):
    `name: done/total points, elapsed, about ETA left`, the ETA from this run's points per second."""

    def __init__(self, name: str, total: int, done: int, enabled: bool, console=None):
        self.name, self.total, self.done, self.start_done = name, total, done, done
        self.enabled = enabled
        self.t0 = time.perf_counter()
        self.bar = None
        if enabled and (console is not None or sys.stderr.isatty()):
            from rich.console import Console

            self.bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("points"), _Speed(), TimeElapsedColumn(), TextColumn("ETA"),
                                TimeRemainingColumn(), console=console or Console(stderr=True))
            self.task = self.bar.add_task(name, total=total, completed=done)

    def __enter__(self):
        if self.bar is not None:
            self.bar.__enter__()
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def advance(self, points: int) -> None:
        self.done += points
        if self.bar is not None:
            self.bar.advance(self.task, points)
        elif self.enabled:
            seconds = time.perf_counter() - self.t0
            rate = (self.done - self.start_done) / seconds if seconds > 0 else math.inf
            eta = (self.total - self.done) / rate if rate > 0 else math.inf
            print(f"{self.name}: {self.done}/{self.total} points, {_duration(seconds)} elapsed, "
                  f"about {_duration(eta)} left", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _writing(path: Path):
    """Turn a failed write (a full disk, a read-only folder) into one line that names the file."""
    try:
        yield
    except OSError as e:
        raise SweepRunError(f"cannot write {path}: {e.strerror or e}. Finished chunks are kept: fix it and "
                            "rerun the same command to resume.") from None


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def _summarise(problems: list[tuple[str, str]]) -> str:
    shown = ", ".join(f"{Path(name).name} ({why})" for name, why in problems[:2])
    return shown + (f" and {len(problems) - 2} more" if len(problems) > 2 else "")


def expected_figures(config: SweepConfig, ds: xr.Dataset) -> list[str]:
    return [f"figures/{m}.{fmt}" for m in figure_metrics(config, ds) for fmt in config.plot.formats]


def write_outputs(ds: xr.Dataset, out: Path, manifest: Manifest | None = None, *, figures: bool = True,
                  rebuilt: bool = True) -> None:
    """results.csv, report.md, the figures and dataset.nc, each recorded in the manifest; with
    `rebuilt=False` (the dataset is the one on disk) only what is missing or damaged is written."""
    manifest = Manifest(out) if manifest is None else manifest
    config = SweepConfig.from_json(ds.attrs["config_json"])
    for name, make in (("results.csv", to_csv), ("report.md", report)):
        if rebuilt or manifest.read(name)[0] is None:
            with _writing(out / name):
                manifest.write(name, make(ds).encode())
    if figures and (rebuilt or not all((out / f).is_file() for f in expected_figures(config, ds))):
        with _writing(out / "figures"):
            plot_dataset(ds, out / "figures")
    if rebuilt:
        path = out / "dataset.nc"
        with _writing(path):
            save_dataset(ds, path)
            manifest.record("dataset.nc", sha256(path.read_bytes()))


def _append_log(out: Path, entry: dict) -> None:
    """`run_log.json`: a list with one entry per run, this one appended."""
    path = out / "run_log.json"
    runs = []
    if path.exists():
        try:
            runs = json.loads(path.read_text())
        except (OSError, ValueError):
            runs = None
        if not isinstance(runs, list):
            _warn(f"{path} is unreadable; it is started again with this run.")
            runs = []
    runs.append(entry)
    with _writing(path):
        atomic_write(path, json.dumps(jsonable(runs), indent=2) + "\n")


def _existing_dataset(out: Path, manifest: Manifest, digest: str,
                      config: SweepConfig) -> tuple[xr.Dataset | None, str]:
    """The folder's dataset if it matches its manifest line and is this sweep's (same fingerprint and
    config); else `(None, why)`, `why` empty when there is simply none (or it is another config's: a
    changed name or plot setting rebuilds it quietly)."""
    data, why = manifest.read("dataset.nc")
    if why in ("missing", "unlisted"):
        return None, ""
    path = out / "dataset.nc"
    if data is None:
        return None, f"{path} is {why}: it does not match its checksum in {manifest.path}"
    try:
        ds = load_dataset(path)
    except (DamagedFileError, FileNotFoundError) as e:
        return None, str(e).rstrip(".")
    if ds.attrs.get("fingerprint") != digest or ds.attrs.get("config_json") != config.to_json():
        return None, ""
    return ds, ""


def run_sweep(config: SweepConfig, *, output: str | Path | None = None, progress: bool = True,
              figures: bool = True, console=None) -> SweepResult:
    """Run (or resume) a sweep and write its results folder.

    **Arguments:**

    - `config`: from `load_config`.
    - `output`: the results folder (default `config.output`).
    - `progress`: state the plan (points, groups, chunks, memory of one batch) on stderr, and the
      progress: a rich progress bar on a terminal, one plain line per chunk otherwise (points done,
      elapsed, time left).
    - `figures`: draw the figures.
    - `console`: a `rich.console.Console` for the progress bar (a bar even where stderr is no
      terminal).

    **Returns:** a `SweepResult`.

    **Raises:** before anything is compiled or written: `SweepConfigError` for a grid point that cannot
    be built or a batch that does not fit in memory; `SweepRunError` for a folder that cannot be written,
    is locked by another sweep, or holds a sweep with another fingerprint. While running:
    `SweepRunError` for a file that cannot be written (finished chunks are kept).
    """
    t0 = time.perf_counter()
    started = datetime.datetime.now().isoformat(timespec="seconds")
    out = Path(config.output if output is None else output)
    writer = is_writer()
    sweep = plan(config)  # checks every structure; nothing written yet
    content = sweep.fingerprint()
    digest = fingerprint_hash(content)

    def preflight():
        check_memory(sweep)
        if writer:
            check_output(out, sweep)

    _together(preflight)
    with contextlib.ExitStack() as stack:
        manifest = None
        if writer:
            def enter():
                with _writing(out):
                    out.mkdir(parents=True, exist_ok=True)
                stack.enter_context(locked(out))
                claim(out, content, config)
                with _writing(out / "chunks"):
                    (out / "chunks").mkdir(exist_ok=True)
                    atomic_write(out / "chunks" / ".write-test.tmp", b"")
                    (out / "chunks" / ".write-test.tmp").unlink()
                remove_temp_files(out)
                m = Manifest(out)
                with _writing(out / "manifest.sha256"):
                    m.compact()
                    atomic_write(out / "config.toml", config.to_toml())
                    atomic_write(out / "config.json", json.dumps(config.to_dict(), indent=2,
                                                                 sort_keys=True))
                return m
            manifest = _together(enter)
        else:
            _together(lambda: None)

        # Which chunks are done: verified against the manifest (process 0), then broadcast.
        chunks = list(sweep.chunks())
        names = [sweep.chunk_name(group, i, digest) for group, i in chunks]
        done, damaged = [], []
        for (group, i), name in zip(chunks, names):
            ok = False
            if writer:
                rec, why = read_chunk(manifest, name, group.chunk(i), digest)
                ok = rec is not None
                if why not in ("", "missing"):
                    damaged.append((name, why))
            done.append(ok)
        if damaged:
            _warn(f"{len(damaged)} chunk file{'s' if len(damaged) > 1 else ''} in {out / 'chunks'} failed "
                  f"verification ({_summarise(damaged)}); computing {'them' if len(damaged) > 1 else 'it'} "
                  "again.")
        done = _broadcast_done(done)

        total = sweep.grid.size
        if writer and progress:
            available = available_memory()[0]
            finished = sum(len(group.chunk(i)) for (group, i), d in zip(chunks, done) if d)
            print(f"{config.name}: {total} points ({finished} done) in {len(sweep.groups)} compiled "
                  f"group{'s' if len(sweep.groups) > 1 else ''}, {len(chunks)} chunks; one batch needs at "
                  f"most {human(max(g.batch_bytes for g in sweep.groups))} of memory"
                  + (f" ({human(available)} available)" if available is not None else "") + f" → {out}",
                  file=sys.stderr, flush=True)
        computed_points, log = 0, []
        status = "stopped"
        try:
            todo = sum(len(group.chunk(i)) for (group, i), d in zip(chunks, done) if not d)
            with _Progress(config.name, total, total - todo, progress and writer, console) as bar:
                for (group, i), name, is_done in zip(chunks, names, done):
                    if is_done:
                        continue
                    batch = sweep.batch(group, i)
                    solution = solve_chunk(config, batch, pad_to=group.chunk_size)
                    if writer:
                        data = chunk_bytes(chunk_records(batch, solution, digest, config.solver.rule))
                        with _writing(out / name):
                            manifest.write(name, data)
                    log.append({"chunk": name, "points": len(batch), **solution.timing})
                    computed_points += len(batch)
                    bar.advance(len(batch))
            if not writer:
                status = "completed"
                return SweepResult(out, None, total, 0, 0, 0, computed_points, time.perf_counter() - t0)

            ds, why = (None, "") if computed_points else _existing_dataset(out, manifest, digest, config)
            if why:
                _warn(f"{why}; rebuilding it from the chunks.")
            rebuilt = ds is None
            if rebuilt:
                ds = build_dataset(config, _read_chunks(sweep, manifest, chunks, names, digest),
                                   fingerprint=digest, fingerprint_json=json.dumps(content, sort_keys=True))
            write_outputs(ds, out, manifest, figures=figures, rebuilt=rebuilt)
            with _writing(out / "manifest.sha256"):
                manifest.compact()
            status = "completed"
        finally:
            if writer and manifest is not None:
                entry = {"started": started, "seconds": round(time.perf_counter() - t0, 3),
                         "status": status, "fingerprint": digest, "processes": jax.process_count(),
                         "computed_points": computed_points, "chunks": log}
                # A run that stopped on an error reports that error, not a failure to log it.
                with contextlib.suppress(*(() if status == "completed" else (SweepRunError,))):
                    _append_log(out, entry)
    return SweepResult(out, ds, total, *count(ds), computed_points, time.perf_counter() - t0)


def _read_chunks(sweep: Plan, manifest: Manifest, chunks, names, digest) -> Iterator[tuple[np.ndarray, dict]]:
    """Every chunk's records, read back (and verified) one at a time."""
    for (group, i), name in zip(chunks, names):
        rec, why = read_chunk(manifest, name, group.chunk(i), digest)
        if rec is None:
            raise SweepRunError(f"{manifest.out / name} changed during the run ({why}): rerun the same "
                                "command to compute it again.")
        yield group.chunk(i), rec
