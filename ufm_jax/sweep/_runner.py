"""The chunked, resumable sweep runner.

Every chunk's results go to `chunks/<group>-<chunk>-<hash>.npz`, written atomically (`_files`), where the
hash covers everything that determines the chunk's numbers (its points' problems and PRNG seeds, the
solver settings, the chunk size and padding). A rerun of the same command loads finished chunks instead
of solving them, so an interrupted sweep (Ctrl-C, a killed process) resumes where it stopped, and the
final dataset is identical to an uninterrupted run's.

**Determinism.** Start `j` of a point is drawn from `fold_in(key(seed), j)`, where `seed` is the point's
PRNG seed (the `seed` axis, or `solver.seed`): it depends on nothing else, not on the chunk or the other
points, so resumed, re-chunked and sharded runs compute the same starts. (Points sharing a seed share
their random draws — common random numbers, which keep phase diagrams smooth.)

**Devices and hosts.** Each chunk is one `solve` call whose batch axis is sharded over `jax.devices()`.
On several hosts, call `jax.distributed.initialize()` first (`ufm sweep --distributed`) and run the same
command on every host: `jax.devices()` then spans all hosts, every process takes part in each solve,
process 0 alone decides which chunks are done (broadcast to the others) and writes every file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr
from jax.experimental import multihost_utils
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)
from rich.text import Text

from .. import __version__
from .._check import check
from .._families import analytic_solution, phase_boundaries
from .._json import jsonable
from .._problem import pad_columns, stack_problems
from ..metrics import class_means, nc_metrics
from ..solve import Solution, Status, make_solver as _make_solver, solve
from ._config import SweepConfig, SweepConfigError
from ._dataset import build_dataset, count, load_dataset, report, save_dataset, to_csv
from ._files import atomic_write
from ._grid import Grid, Group, Point, groups
from ._plots import plot_dataset


def is_writer() -> bool:
    """Only process 0 writes files under `jax.distributed`."""
    return jax.process_index() == 0


# ---- the plan -------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Plan:
    """What a sweep will solve: the grid, its groups and their chunks (positions, not points)."""

    config: SweepConfig
    grid: Grid
    groups: tuple[Group, ...]

    def chunks(self) -> Iterator[tuple[Group, int]]:
        """`(group, chunk index)` of every chunk, in order."""
        for group in self.groups:
            for i in range(group.num_chunks):
                yield group, i

    def points(self, group: Group, i: int) -> list[Point]:
        """The points of chunk `i` of `group`, made now."""
        return self.grid.points(group.chunk(i))

    def chunk_name(self, group: Group, i: int, points: list[Point]) -> str:
        content = {"points": [p.key for p in points], "solver": self.config.solver.model_dump(mode="json"),
                   "chunk_size": group.chunk_size, "columns": group.columns, "group": group.tag,
                   "shard": self.config.run.shard, "slots": self.config.run.slots, "version": __version__,
                   "dtype": str(jnp.zeros(()).dtype)}
        digest = hashlib.sha256(json.dumps(jsonable(content), sort_keys=True).encode()).hexdigest()[:12]
        return f"{group.tag}-c{i:04d}-{digest}.npz"


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
    return Plan(config, grid, grps)


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


def solve_points(config: SweepConfig, points: list[Point], columns: int | None = None, *,
                 pad_to: int | None = None, shard: bool | None = None, start=None) -> Solution:
    """Solve `points` as one batch (padded to `pad_to` by repeating the last; explicit problems padded
    to `columns`), best of the configured random starts each; or from `start` (a batched `Params`, one
    per point) with one start each.

    Each point's starts are drawn from its own key, `key(seed)` (`solve` with one key per problem), so a
    point's numbers do not depend on the chunk it lands in: a resumed sweep reproduces them exactly.
    """
    n = len(points)
    pad_to = n if pad_to is None else pad_to
    padded = list(points) + [points[-1]] * (pad_to - n)
    problems = [p.problem if columns is None or p.problem.weighted else
                pad_columns(p.problem, columns) for p in padded]
    problem = stack_problems(problems)
    solver = make_solver(config, problems[0])
    shard = config.run.shard if shard is None else shard
    slots = config.run.slots or None
    if start is None:
        keys = np.asarray([p.seed for p in padded], dtype=np.int64)
        sol = solve(problem, solver, key=keys, seeds=config.solver.starts, shard=shard,
                    init_scale=config.solver.init_scale, slots=slots)
    else:
        start = jax.tree.map(lambda x: jnp.concatenate([x, jnp.repeat(x[-1:], pad_to - n, 0)]), start)
        sol = solve(problem, solver, start=start, shard=shard, slots=slots)
    return sol[:n]


def theory_columns(solution: Solution, i: int) -> dict:
    """`ufm_jax.check` of point `i` against `analytic_solution`, as scalars."""
    sol_i = solution[i]
    result = check(sol_i, analytic_solution(sol_i.problem))
    out: dict = {"theory_objective": result.theory_objective, "gap": result.gap,
                 "geometry_gap": result.geometry_gap, "certified": bool(result.certified),
                 "regime": result.regime or "", "reason": result.reason,
                 "objective_rtol": result.objective_rtol, "geometry_rtol": result.geometry_rtol}
    out.update({f"geometry_{k}": float(v) for k, v in result.geometry.items()})
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


def boundary_columns(points: list[Point]) -> dict[str, np.ndarray]:
    """`phase_boundaries` of every point's problem: `boundary_names` (their union, in order of first
    appearance) and `boundaries`, shape `(points, names)`, NaN where a point has no such boundary."""
    found = [phase_boundaries(p.problem) for p in points]
    names = list(dict.fromkeys(name for b in found for name in b))
    table = np.asarray([[b.get(name, np.nan) for name in names] for b in found], np.float64)
    return {"boundary_names": np.asarray(names, dtype=str),
            "boundaries": table.reshape(len(points), len(names))}


def chunk_records(points: list[Point], solution: Solution) -> dict[str, np.ndarray]:
    """Every stored variable of a solved chunk, as arrays with a leading point axis."""
    rec: dict[str, np.ndarray] = {
        "point_key": np.asarray([p.key for p in points]),
        "objective": np.asarray(solution.objective, np.float64),
        "grad_norm": np.asarray(solution.grad_norm, np.float64),
        "iterations": np.asarray(solution.iterations, np.int64),
        "status": np.asarray(solution.status, np.int64),
        "status_name": Status.names(np.asarray(solution.status)),
        "objective_spread": np.asarray(solution.objective_spread, np.float64),
        "seed_objectives": np.asarray(solution.seed_objectives, np.float64),
        "seed_status": np.asarray(solution.seed_status, np.int64),
    }
    for key in points[0].labels:
        rec[key] = np.asarray([p.labels[key] for p in points], np.float64)
    rec["seed"] = np.asarray([p.seed for p in points], np.int64)
    rec["lam_w"] = np.asarray([float(p.problem.lam_w[0]) for p in points], np.float64)
    rec["lam_h"] = np.asarray([float(p.problem.lam_h) for p in points], np.float64)
    rec["lam_b"] = np.asarray([float(p.problem.lam_b) if p.problem.bias == "regularised" else np.nan
                               for p in points], np.float64)
    rec["num_classes"] = np.asarray([p.problem.num_classes for p in points], np.int64)
    rec["depth"] = np.asarray([p.problem.depth for p in points], np.int64)
    for key, value in METRICS(solution.params, solution.problem).items():
        rec[key] = np.asarray(value)
    rec.update(_columns([theory_columns(solution, i) for i in range(len(points))]))
    rec.update(boundary_columns(points))
    return rec


def save_chunk(path: Path, rec: dict[str, np.ndarray]) -> None:
    buf = io.BytesIO()
    np.savez(buf, **rec)
    atomic_write(path, buf.getvalue())


def load_chunk(path: Path, points: list[Point]) -> dict[str, np.ndarray] | None:
    """A finished chunk's arrays, or None if the file is missing, unreadable or not of these points (then
    it is recomputed)."""
    try:
        with np.load(path, allow_pickle=False) as f:
            rec = {k: f[k] for k in f.files}
    except (OSError, ValueError, KeyError, EOFError):
        return None
    if rec.get("point_key", np.asarray([])).tolist() != [p.key for p in points]:
        return None
    return rec


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
        return (f"{self.total} points: {self.certified} certified, {self.not_certified} not certified, "
                f"{self.failed} failed  ({self.computed_points} computed, {self.seconds:.1f} s) "
                f"→ {self.output}")


def _broadcast_done(done: list[bool]) -> list[bool]:
    if jax.process_count() == 1:
        return done
    flags = multihost_utils.broadcast_one_to_all(np.asarray(done, dtype=np.int32))
    return [bool(x) for x in np.asarray(flags)]


class _Speed(ProgressColumn):
    def render(self, task):
        speed = task.finished_speed or task.speed
        return Text("-- points/s" if speed is None else f"{speed:.2f} points/s")


def _progress(enabled: bool, console=None) -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("points"), _Speed(), TimeElapsedColumn(), TextColumn("ETA"),
                    TimeRemainingColumn(), disable=not enabled, console=console)


def _existing_dataset(out: Path, fingerprint: str) -> xr.Dataset | None:
    path = out / "dataset.nc"
    if not path.is_file():
        return None
    try:
        ds = load_dataset(path)
    except (OSError, ValueError):
        return None
    return ds if ds.attrs.get("fingerprint") == fingerprint else None


def write_outputs(ds: xr.Dataset, out: Path, *, figures: bool = True) -> None:
    """results.csv, report.md, the figures and dataset.nc (the config copies are written at the start)."""
    atomic_write(out / "results.csv", to_csv(ds))
    atomic_write(out / "report.md", report(ds))
    if figures:
        plot_dataset(ds, out / "figures")
    # Written last: its presence (with a matching fingerprint) marks the sweep as complete.
    save_dataset(ds, out / "dataset.nc")


def run_sweep(config: SweepConfig, *, output: str | Path | None = None, progress: bool = True,
              figures: bool = True, console=None) -> SweepResult:
    """Run (or resume) a sweep and write its results folder.

    **Arguments:**

    - `config`: from `load_config`.
    - `output`: the results folder (default `config.output`).
    - `progress`: show a rich progress bar.
    - `figures`: draw the figures.
    - `console`: a `rich.console.Console` for the progress bar and messages.

    **Returns:** a `SweepResult`.

    **Raises:** `SweepConfigError` for a grid point that cannot be built, before anything is written.
    """
    t0 = time.perf_counter()
    out = Path(config.output if output is None else output)
    sweep = plan(config)  # checks every structure; nothing written yet
    chunk_dir = out / "chunks"
    writer = is_writer()

    # Which chunks are done: made point by point, chunk by chunk (a plan holds no points).
    chunks, names, records, done = list(sweep.chunks()), [], {}, []
    for group, i in chunks:
        points = sweep.points(group, i)
        names.append(sweep.chunk_name(group, i, points))
        rec = load_chunk(chunk_dir / names[-1], points) if writer else None
        if rec is not None:
            records[names[-1]] = rec
        done.append(rec is not None)
    done = _broadcast_done(done)

    total = sweep.grid.size
    if all(done) and writer:
        existing = _existing_dataset(out, config.fingerprint())
        if existing is not None and (not figures or (out / "figures").is_dir()):
            return SweepResult(out, existing, total, *count(existing), 0, time.perf_counter() - t0)

    if writer:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write(out / "config.toml", config.to_toml())
        atomic_write(out / "config.json", json.dumps(config.to_dict(), indent=2, sort_keys=True))
    computed_points = 0
    log = []
    todo = sum(len(group.chunk(i)) for (group, i), d in zip(chunks, done) if not d)
    with _progress(progress and writer, console) as bar:
        task = bar.add_task(config.name, total=total, completed=total - todo)
        for (group, i), name, is_done in zip(chunks, names, done):
            if is_done:
                continue
            points = sweep.points(group, i)
            solution = solve_points(config, points, group.columns, pad_to=group.chunk_size)
            if writer:
                records[name] = chunk_records(points, solution)
                save_chunk(chunk_dir / name, records[name])
            log.append({"chunk": name, "points": len(points), **solution.timing})
            computed_points += len(points)
            bar.advance(task, len(points))
    if not writer:
        return SweepResult(out, None, total, 0, 0, 0, computed_points, time.perf_counter() - t0)
    atomic_write(out / "run_log.json", json.dumps(jsonable(log), indent=2))
    ds = build_dataset(config, [(group.chunk(i), records[name]) for (group, i), name in zip(chunks, names)])
    write_outputs(ds, out, figures=figures)
    return SweepResult(out, ds, total, *count(ds), computed_points, time.perf_counter() - t0)
