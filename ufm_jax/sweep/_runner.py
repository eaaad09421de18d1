"""The chunked, resumable sweep runner: `run_sweep`.

**Files.** A sweep writes into its results folder (`_store`): it holds the folder's lock for the whole
run (a second sweep there stops at once, naming this one), writes the folder's fingerprint on the first
run and refuses a folder that holds another (so numbers computed two ways never mix), and writes every
chunk's results to `chunks/<group>-c<chunk>-<fingerprint>.npz` atomically (`_chunks`), its SHA-256
appended to `manifest.sha256`. A rerun of the same command verifies and skips finished chunks (a chunk
that is missing, damaged or unlisted is solved again, with one warning line), so an interrupted sweep
(Ctrl-C, a killed process, a killed machine) resumes where it stopped and the final dataset is identical
to an uninterrupted run's. The dataset, `results.csv` and `report.md` are restored when missing or
damaged (checked against the manifest), the figures when missing; every run appends its chunks and timings to `run_log.json`.

**Memory.** A plan holds positions, never points (`_plan`): each chunk's problems are made when it is
solved, its results written and dropped; the dataset is assembled by reading the chunks back one at a
time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import math
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import jax
import numpy as np
import xarray as xr
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

from .._json import jsonable
from .._memory import available_memory, human
from ._chunks import chunk_bytes, chunk_records, read_chunk, solve_chunk
from ._config import SweepConfig
from ._dataset import (
    build_dataset,
    confident_searches,
    count,
    load_dataset,
    report,
    save_dataset,
    to_csv,
)
from ._files import DamagedFileError, Manifest, atomic_write, remove_temp_files, sha256
from ._plan import Plan, check_memory, check_output, duration, plan
from ._plots import figure_metrics, plot_dataset
from ._processes import broadcast_done, is_writer, together
from ._store import (
    FINGERPRINT,
    SweepRunError,
    claim,
    fingerprint_hash,
    locked,
)


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
            print(f"{self.name}: {self.done}/{self.total} points, {duration(seconds)} elapsed, "
                  f"about {duration(eta)} left", file=sys.stderr, flush=True)


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
    """results.csv, report.md and dataset.nc, each recorded in the manifest, and the figures; with
    `rebuilt=False` (the dataset is the one on disk) only what is missing or damaged is written (a
    figure: only when missing; figures carry no checksum)."""
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
        ds = load_dataset(path, data=data)  # verified above: read and hashed once
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

    together(preflight)
    with contextlib.ExitStack() as stack:
        manifest = together(lambda: _open_folder(out, config, content, stack) if writer else None)
        chunks = list(sweep.chunks())
        names = [sweep.chunk_name(group, i, digest) for group, i in chunks]
        done = broadcast_done(_finished_chunks(manifest, chunks, names, digest) if writer
                              else [False] * len(chunks))
        total = sweep.grid.size
        if writer and progress:
            finished = sum(len(group.chunk(i)) for (group, i), d in zip(chunks, done) if d)
            _state_plan(sweep, finished, out)
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
            ds = _finish(sweep, manifest, chunks, names, content, out, figures, rebuild=computed_points > 0)
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


def _open_folder(out: Path, config: SweepConfig, content: dict, stack: contextlib.ExitStack) -> Manifest:
    """Make the results folder, take its lock (held until `stack` closes), claim it for this
    fingerprint (refusing one that holds another), check `chunks/` can be written, remove temp files
    of killed runs and write the config; returns the folder's manifest."""
    with _writing(out):
        out.mkdir(parents=True, exist_ok=True)
    stack.enter_context(locked(out))
    with _writing(out / FINGERPRINT):
        claim(out, content, config)
    with _writing(out / "chunks"):
        (out / "chunks").mkdir(exist_ok=True)
        atomic_write(out / "chunks" / ".write-test.tmp", b"")
        (out / "chunks" / ".write-test.tmp").unlink()
    remove_temp_files(out)
    manifest = Manifest(out)
    with _writing(out / "manifest.sha256"):
        manifest.compact()
    for name, text in (("config.toml", config.to_toml()),
                       ("config.json", json.dumps(config.to_dict(), indent=2, sort_keys=True))):
        with _writing(out / name):
            atomic_write(out / name, text)
    return manifest


def _finished_chunks(manifest: Manifest, chunks: list, names: list[str], digest: str) -> list[bool]:
    """Which chunks are done: their files verified against the manifest; a damaged one is reported in
    one warning line (and computed again)."""
    done, damaged = [], []
    for (group, i), name in zip(chunks, names):
        rec, why = read_chunk(manifest, name, group.chunk(i), digest)
        done.append(rec is not None)
        if why not in ("", "missing"):
            damaged.append((name, why))
    if damaged:
        many = len(damaged) > 1
        _warn(f"{len(damaged)} chunk file{'s' if many else ''} in {manifest.out / 'chunks'} failed "
              f"verification ({_summarise(damaged)}); computing {'them' if many else 'it'} again.")
    return done


def _state_plan(sweep: Plan, finished: int, out: Path) -> None:
    """One line on stderr: points (done), compiled groups, chunks, the memory of the largest batch."""
    available = available_memory()[0]
    many = len(sweep.groups) > 1
    print(f"{sweep.config.name}: {sweep.grid.size} points ({finished} done) in {len(sweep.groups)} "
          f"compiled group{'s' if many else ''}, {sweep.num_chunks} chunks; one batch needs at most "
          f"{human(max(g.batch_bytes for g in sweep.groups))} of memory"
          + (f" ({human(available)} available)" if available is not None else "") + f" → {out}",
          file=sys.stderr, flush=True)


def _finish(sweep: Plan, manifest: Manifest, chunks: list, names: list[str], content: dict, out: Path,
            figures: bool, rebuild: bool) -> xr.Dataset:
    """The dataset: the folder's own when nothing was computed and it is intact, else built from the
    chunks; then the outputs that are missing (all of them after a rebuild) are written."""
    digest = fingerprint_hash(content)
    ds, why = (None, "") if rebuild else _existing_dataset(out, manifest, digest, sweep.config)
    if why:
        _warn(f"{why}; rebuilding it from the chunks.")
    rebuilt = ds is None
    if rebuilt:
        ds = build_dataset(sweep.config, _read_chunks(sweep, manifest, chunks, names, digest),
                           fingerprint=digest, fingerprint_json=json.dumps(content, sort_keys=True))
    write_outputs(ds, out, manifest, figures=figures, rebuilt=rebuilt)
    with _writing(out / "manifest.sha256"):
        manifest.compact()
    return ds


def _read_chunks(sweep: Plan, manifest: Manifest, chunks, names, digest) -> Iterator[tuple[np.ndarray, dict]]:
    """Every chunk's records, read back (and verified) one at a time."""
    for (group, i), name in zip(chunks, names):
        rec, why = read_chunk(manifest, name, group.chunk(i), digest)
        if rec is None:
            raise SweepRunError(f"{manifest.out / name} changed during the run ({why}): rerun the same "
                                "command to compute it again.")
        yield group.chunk(i), rec
