"""The plan of a sweep and its pre-flight checks: what will be solved, and whether it can be.

A `Plan` holds the grid, its compiled groups and their chunks as positions, never points: a chunk's
problems are made when it is solved (`Grid.batch`), so planning a grid of 10^6 points costs seconds.
Before anything is compiled or written, the output folder is checked (a folder or makeable, writable,
its disk large enough for the results) and so is the memory of one batch of every group
(`ufm_jax._memory`); `dry_run` states all of it, with a rough time, and writes nothing.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterator
from pathlib import Path

import jax

from .._memory import InsufficientMemory, available_memory, check_fits, human
from ..solve._minimise import TRAJECTORY_FIELDS, history_records
from ._chunks import make_solver
from ._config import SweepConfig, SweepConfigError
from ._grid import Batch, Grid, Group, Point, groups, history_bytes
from ._store import (
    SweepRunError,
    describe_folder,
    fingerprint,
    fingerprint_hash,
    free_disk,
)

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


def duration(seconds: float) -> str:
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
    lines.append(f"time: about {duration(estimate_seconds(sweep))} (rough: ~8 s of compiling per group, "
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
