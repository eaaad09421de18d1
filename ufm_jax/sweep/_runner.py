"""The chunked, resumable sweep runner.

Every chunk's results go to `chunks/<group>-<chunk>-<hash>.npz`, written atomically (a temporary file,
then `os.replace`), where the hash covers everything that determines the chunk's numbers (its points'
problems and PRNG seeds, the solver settings, the chunk size and padding). A rerun of the same command
loads finished chunks instead of solving them, so an interrupted sweep (Ctrl-C, a killed process)
resumes where it stopped, and the final dataset is identical to an uninterrupted run's.

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

import contextlib
import dataclasses
import hashlib
import io
import json
import os
import tempfile
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .. import __version__
from .._check import check
from .._families import analytic_solution
from .._problem import stack_problems
from ..solve import Solution, Status, make_solver as _make_solver, solve
from ._config import SweepConfig
from ._grid import Group, expand, groups


# ---- atomic files -----------------------------------------------------------------------------------------


def atomic_write(path: Path, data: bytes | str) -> None:
    """Write `data` to `path` atomically: a temporary file in the same folder, fsync, `os.replace`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def is_writer() -> bool:
    """Only process 0 writes files under `jax.distributed`."""
    return jax.process_index() == 0


# ---- solving one chunk ----------------------------------------------------------------------------------


def make_solver(config: SweepConfig, problem):
    s = config.solver
    return _make_solver(s["method"], problem, "solver.method", max_steps=s.get("max_steps"),
                        gtol=s.get("gtol"))


def _metrics(params, problem) -> dict:
    from ..metrics import class_means, nc_metrics

    out = dict(nc_metrics(params, problem))
    means = class_means(params, problem)[0]
    norms = jnp.sqrt(jnp.sum(means * means, axis=0))
    out["mean_norms"] = norms
    # A class is dead (its mean vanishes) below 1e-6 of the largest mean norm.
    out["dead_classes"] = jnp.sum(norms <= 1e-6 * jnp.max(norms))
    return out


_METRICS = eqx.filter_jit(eqx.filter_vmap(_metrics))


def solve_points(config: SweepConfig, points, columns, *, pad_to: int | None = None, shard=None,
                 start=None) -> Solution:
    """Solve `points` as one batch (padded to `pad_to` by repeating the last), best of the configured
    random starts each; or from `start` (a batched `Params`, one per point) with one start each.

    Each point's starts are drawn from its own key, `key(seed)` (`solve` with one key per problem), so a
    point's numbers do not depend on the chunk it lands in: a resumed sweep reproduces them exactly.
    """
    n = len(points)
    pad_to = n if pad_to is None else pad_to
    padded = list(points) + [points[-1]] * (pad_to - n)
    problem = stack_problems([p.problem(columns) for p in padded])
    solver = make_solver(config, jax.tree.map(lambda x: x[0], problem))
    shard = config.run["shard"] if shard is None else shard
    if start is None:
        keys = np.asarray([p.spec["seed"] for p in padded], dtype=np.int64)
        sol = solve(problem, solver, key=keys, seeds=config.solver["starts"], shard=shard,
                    init_scale=float(config.solver["init_scale"]), slots=config.run["slots"] or None)
    else:
        start = jax.tree.map(lambda x: jnp.concatenate([x, jnp.repeat(x[-1:], pad_to - n, 0)]), start)
        sol = solve(problem, solver, start=start, shard=shard, slots=config.run["slots"] or None)
    return sol[:n]


def _scalar(v):
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, str):
        return v
    a = np.asarray(v)
    if a.ndim == 0 and a.dtype.kind in "biuf":
        return bool(a) if a.dtype.kind == "b" else float(a)
    return None


def theory_columns(solution: Solution, i: int) -> dict:
    """`ufm_jax.check` of point `i` against `analytic_solution`, as scalars."""
    sol_i = solution[i]
    theory = analytic_solution(sol_i.problem)
    result = check(sol_i, theory)
    out: dict = {"theory_objective": result.theory_objective, "gap": result.gap,
                 "geometry_gap": result.geometry_gap, "certified": bool(result.certified),
                 "regime": result.regime or "", "reason": result.reason,
                 "objective_rtol": result.objective_rtol, "geometry_rtol": result.geometry_rtol}
    out.update({f"geometry_{k}": float(v) for k, v in result.geometry.items()})
    return out


def chunk_records(config: SweepConfig, points, solution: Solution) -> dict[str, np.ndarray]:
    """Every stored variable of a solved chunk, as arrays with a leading point axis."""
    n = len(points)
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
    for key in ("n_total", "lam_z", "lam_ratio", "lam_h", "n_a", "n_b"):
        rec[key] = np.asarray([p.spec.get(key, np.nan) for p in points], np.float64)
    rec["lam_w"] = np.asarray([np.atleast_1d(p.spec["lam_w"])[0] for p in points], np.float64)
    rec["lam_b"] = np.asarray([np.nan if p.spec["lam_b"] is None else p.spec["lam_b"] for p in points])
    rec["num_classes"] = np.asarray([len(p.spec["class_sizes"]) for p in points], np.int64)
    rec["depth"] = np.asarray([len(p.spec["widths"]) + 1 for p in points], np.int64)
    try:
        metrics = _METRICS(solution.params, solution.problem)
    except ImportError:
        metrics = {}
    for key, value in metrics.items():
        rec[key] = np.asarray(value)
    theory = [theory_columns(solution, i) for i in range(n)]
    for key in dict.fromkeys(k for t in theory for k in t):
        values = [t.get(key) for t in theory]
        kinds = {type(v) for v in values if v is not None}
        if kinds <= {bool}:
            rec[key] = np.asarray([bool(v) for v in values])
        elif kinds <= {float, int, bool}:
            rec[key] = np.asarray([np.nan if v is None else float(v) for v in values], np.float64)
        else:
            rec[key] = np.asarray(["" if v is None else str(v) for v in values])
    return rec


def save_chunk(path: Path, rec: dict[str, np.ndarray]) -> None:
    buf = io.BytesIO()
    np.savez(buf, **rec)
    atomic_write(path, buf.getvalue())


def load_chunk(path: Path) -> dict[str, np.ndarray] | None:
    """A finished chunk's arrays, or None if the file is missing or unreadable (then it is recomputed)."""
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except (OSError, ValueError, KeyError, EOFError):
        return None


# ---- the sweep --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class SweepResult:
    """What `run_sweep` did: the output folder, the dataset (or None on non-writer processes) and counts."""

    output: Path
    dataset: object
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


def _chunk_name(config: SweepConfig, group: Group, index: int, chunk) -> str:
    content = {"points": [p.spec for p in chunk], "solver": config.solver, "chunk_size": group.chunk_size,
               "columns": group.columns, "shape": list(map(str, group.key)), "shard": config.run["shard"],
               "version": __version__, "dtype": str(jnp.zeros(()).dtype)}
    digest = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:12]
    return f"{group.tag}-c{index:04d}-{digest}.npz"


def plan(config: SweepConfig):
    """Points, groups and `[(group, chunk index, points, file name)]`, all validated; nothing written."""
    points = expand(config)
    devices = len(jax.devices()) if config.run["shard"] else 1
    grps = groups(config, points, devices)
    chunks = [(g, i, c, _chunk_name(config, g, i, c)) for g in grps for i, c in enumerate(g.chunks())]
    return points, grps, chunks


def _broadcast_done(done: list[bool]) -> list[bool]:
    if jax.process_count() == 1:
        return done
    from jax.experimental import multihost_utils

    flags = multihost_utils.broadcast_one_to_all(np.asarray(done, dtype=np.int32))
    return [bool(x) for x in np.asarray(flags)]


def _progress(enabled: bool, console=None):
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)
    from rich.text import Text

    class Speed(ProgressColumn):
        def render(self, task):
            speed = task.finished_speed or task.speed
            return Text("-- points/s" if speed is None else f"{speed:.2f} points/s")

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("points"), Speed(), TimeElapsedColumn(), TextColumn("ETA"),
                    TimeRemainingColumn(), disable=not enabled, console=console)


def run_sweep(config: SweepConfig, *, output: str | Path | None = None, progress: bool = True,
              figures: bool = True, console=None, stop_after: int | None = None) -> SweepResult:
    """Run (or resume) a sweep and write its results folder.

    **Arguments:**

    - `config`: from `load_config`.
    - `output`: the results folder (default `config.output`).
    - `progress`: show a rich progress bar.
    - `figures`: draw the figures.
    - `console`: a `rich.console.Console` for the progress bar and messages.
    - `stop_after`: stop after computing this many chunks, as if killed (for tests of resuming).

    **Returns:** a `SweepResult`.

    **Raises:** `SweepConfigError` for a grid point that cannot be built, before anything is written.
    """
    from ._dataset import build_dataset, count, write_outputs

    t0 = time.perf_counter()
    out = Path(config.output if output is None else output)
    points, grps, chunks = plan(config)  # validates every point; nothing written yet
    chunk_dir = out / "chunks"
    writer = is_writer()
    fingerprint = config.fingerprint()

    records: dict[str, dict] = {}
    done = []
    for _, _, _, name in chunks:
        rec = load_chunk(chunk_dir / name) if writer else None
        if rec is not None:
            records[name] = rec
        done.append(rec is not None)
    done = _broadcast_done(done)

    if all(done) and writer:
        existing = _existing_dataset(out, fingerprint)
        if existing is not None and (not figures or (out / "figures").is_dir()):
            c, nc, f = count(existing)
            return SweepResult(out, existing, len(points), c, nc, f, 0, time.perf_counter() - t0)

    if writer:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write(out / "config.toml", config.to_toml())
        atomic_write(out / "config.json", json.dumps(config.to_dict(), indent=2, sort_keys=True))
    computed = 0
    computed_points = 0
    log = []
    todo = sum(len(c) for (_, _, c, _), d in zip(chunks, done) if not d)
    with _progress(progress and writer, console) as bar:
        task = bar.add_task(config.name, total=len(points), completed=len(points) - todo)
        for (group, index, chunk, name), is_done in zip(chunks, done):
            if is_done:
                continue
            if stop_after is not None and computed >= stop_after:
                raise KeyboardInterrupt(f"stop_after={stop_after} chunks (simulated interruption)")
            solution = solve_points(config, chunk, group.columns, pad_to=group.chunk_size)
            if writer:
                rec = chunk_records(config, chunk, solution)
                save_chunk(chunk_dir / name, rec)
                records[name] = rec
            log.append({"chunk": name, "points": len(chunk), **solution.timing})
            computed += 1
            computed_points += len(chunk)
            bar.advance(task, len(chunk))
    if not writer:
        return SweepResult(out, None, len(points), 0, 0, 0, computed_points, time.perf_counter() - t0)
    atomic_write(out / "run_log.json", json.dumps(log, indent=2))
    ds = build_dataset(config, points, [records[name] for *_, name in chunks],
                       [c for _, _, c, _ in chunks])
    write_outputs(ds, config, out, figures=figures)
    c, nc, f = count(ds)
    return SweepResult(out, ds, len(points), c, nc, f, computed_points, time.perf_counter() - t0)


def _existing_dataset(out: Path, fingerprint: str):
    path = out / "dataset.nc"
    if not path.is_file():
        return None
    from ._dataset import load_dataset

    try:
        ds = load_dataset(path)
    except (OSError, ValueError):
        return None
    return ds if ds.attrs.get("fingerprint") == fingerprint else None
