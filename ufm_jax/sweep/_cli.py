"""Typer command functions `sweep`, `plot` and `threshold` (registered on the `ufm` app in `ufm_jax.cli`)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Optional

import jax
import typer

from ..solve import Status
from ._config import SweepConfigError, load_config
from ._dataset import load_dataset
from ._files import DamagedFileError
from ._plots import plot_dataset
from ._runner import dry_run as _dry_run
from ._runner import run_sweep
from ._store import SweepRunError
from ._threshold import find_threshold

_CONFIG_HELP = "Sweep TOML file (default: the built-in minority-collapse phase diagram)."
_SET_HELP = "Set any config key: --set problem.n_b=100 (or n_b=100); the value is read as TOML."
_AXIS_HELP = "Add or replace an axis: --axis lam_z=log:1e-4:1e-2:12, --axis ratio=1,2,5, lin:LO:HI:NUM."


def _setup(x64: bool, distributed: bool, coordinator: str | None = None, num_processes: int | None = None,
           process_id: int | None = None) -> None:
    if distributed:
        # Several processes (hosts): every one runs the same command; jax.devices() then spans all of
        # them and process 0 writes the files. Unset flags come from JAX's environment variables
        # (JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID) or its cluster detection (SLURM,
        # Open MPI, Kubernetes, Cloud TPU). CPU processes talk through gloo collectives.
        if not os.environ.get("JAX_CPU_COLLECTIVES_IMPLEMENTATION"):
            jax.config.update("jax_cpu_collectives_implementation", "gloo")
        try:
            jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                                       process_id=process_id)
        except (RuntimeError, ValueError) as e:
            _error(f"--distributed: jax.distributed.initialize failed: {str(e).splitlines()[0]}")
    jax.config.update("jax_enable_x64", bool(x64))


def _error(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _load(config, set_, axis, extra):
    sets = list(set_ or []) + [f"{k}={v}" for k, v in extra.items() if v is not None]
    return load_config(config, sets=sets, axes=list(axis or []))


def _distributed_flags(distributed, coordinator, num_processes, process_id) -> bool:
    """Check the multi-process flags; any of them implies --distributed."""
    if coordinator is not None and not re.fullmatch(r"\[?[\w.:-]+\]?:\d{1,5}", coordinator):
        _error(f"--coordinator={coordinator!r} is not allowed: expected HOST:PORT, e.g. node01:12345.")
    if num_processes is not None and num_processes < 1:
        _error(f"--num-processes={num_processes} is not allowed: expected an integer >= 1.")
    if process_id is not None and not (0 <= process_id < (num_processes or 2**31)):
        _error(f"--process-id={process_id} is not allowed: expected an integer in [0, --num-processes).")
    return distributed or any(x is not None for x in (coordinator, num_processes, process_id))


def sweep(
    config: Annotated[Optional[Path], typer.Argument(help=_CONFIG_HELP)] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help=_SET_HELP)] = None,
    axis: Annotated[Optional[list[str]], typer.Option("--axis", help=_AXIS_HELP)] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Results folder (output).")] = None,
    chunk_size: Annotated[Optional[int], typer.Option(help="Points per batch (run.chunk_size).")] = None,
    starts: Annotated[Optional[int], typer.Option(help="Random starts per point (solver.starts).")] = None,
    shard: Annotated[Optional[bool], typer.Option("--shard/--no-shard", help="Shard over devices.")] = None,
    figures: Annotated[bool, typer.Option("--figures/--no-figures", help="Draw figures.")] = True,
    x64: Annotated[bool, typer.Option("--x64/--x32", help="Float64 (needed to certify).")] = True,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the number of points (stdout), the "
                                          "groups, memory, disk and time (stderr); write nothing.")] = False,
    distributed: Annotated[bool, typer.Option(help="Several processes: call jax.distributed.initialize() "
                                              "(flags below, else JAX's environment or cluster).")] = False,
    coordinator: Annotated[Optional[str], typer.Option(help="HOST:PORT of process 0 (implies "
                                                       "--distributed).")] = None,
    num_processes: Annotated[Optional[int], typer.Option(help="Number of processes.")] = None,
    process_id: Annotated[Optional[int], typer.Option(help="This process's id, 0..N-1.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No plan line, no progress bar.")] = False,
) -> None:
    """Run a sweep over a grid of UFM problems (resumable: rerun the same command to continue)."""
    try:
        cfg = _load(config, set_, axis, {"run.chunk_size": chunk_size, "solver.starts": starts,
                                          "run.shard": None if shard is None else str(shard).lower(),
                                          "output": None if out is None else f'"{out}"'})
    except SweepConfigError as e:
        _error(str(e))
    if dry_run:
        jax.config.update("jax_enable_x64", bool(x64))
        try:
            points, lines, problem = _dry_run(cfg)
        except SweepConfigError as e:
            _error(str(e))
        typer.echo(str(points))
        for line in lines:
            typer.echo(line, err=True)
        if problem:
            _error(problem)
        return
    _setup(x64, _distributed_flags(distributed, coordinator, num_processes, process_id), coordinator,
           num_processes, process_id)
    try:
        result = run_sweep(cfg, progress=not quiet, figures=figures)
    except (SweepConfigError, SweepRunError) as e:
        _error(str(e))
    except KeyboardInterrupt:
        typer.echo(f"\ninterrupted: finished chunks are saved in {Path(cfg.output) / 'chunks'}; rerun the "
                   "same command to resume.", err=True)
        raise typer.Exit(130)
    if result.dataset is not None:  # process 0 (the others hold no dataset)
        typer.echo(result.summary())


def plot(
    dataset: Annotated[Path, typer.Argument(help="A sweep's dataset.nc (or its results folder).")],
    metric: Annotated[Optional[list[str]], typer.Option("--metric", "-m", help="Variables to draw.")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Figure folder.")] = None,
) -> None:
    """Redraw the figures of a saved sweep dataset."""
    path = dataset / "dataset.nc" if dataset.is_dir() else dataset
    if not path.is_file():
        _error(f"{path}: no such dataset.")
    try:
        ds = load_dataset(path)
    except DamagedFileError as e:
        _error(f"{e} Rerun `ufm sweep` with its config to rebuild it.")
    except OSError as e:
        _error(f"{path}: cannot read it ({e.strerror or e}).")
    unknown = [m for m in metric or [] if m not in ds]
    if unknown:
        _error(f"--metric {unknown[0]!r} is not a variable of {path}; variables: {sorted(ds.data_vars)}.")
    folder = out or path.parent / "figures"
    try:
        files = plot_dataset(ds, folder, metrics=metric or None)
    except SweepConfigError as e:
        _error(f"{path}: its config_json is not a valid sweep config ({e}).")
    except OSError as e:
        _error(f"cannot write the figures into {folder}: {e.strerror or e}.")
    for f in files:
        typer.echo(str(f))


def threshold(
    config: Annotated[Optional[Path], typer.Argument(help=_CONFIG_HELP)] = None,
    axis_name: Annotated[Optional[str], typer.Option("--along", help="Axis to bisect (threshold.axis).")] = None,
    lo: Annotated[Optional[float], typer.Option(help="Bracket start (threshold.lo).")] = None,
    hi: Annotated[Optional[float], typer.Option(help="Bracket end (threshold.hi).")] = None,
    metric: Annotated[Optional[str], typer.Option(help="Metric that crosses the level.")] = None,
    level: Annotated[Optional[float], typer.Option(help="Crossing level (threshold.level).")] = None,
    rtol: Annotated[Optional[float], typer.Option(help="Relative bracket width to stop at.")] = None,
    boundary: Annotated[Optional[str], typer.Option(help="Theory boundary to compare with.")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help=_SET_HELP)] = None,
    axis: Annotated[Optional[list[str]], typer.Option("--axis", help=_AXIS_HELP)] = None,
    x64: Annotated[bool, typer.Option("--x64/--x32", help="Float64.")] = True,
) -> None:
    """Locate a phase boundary along one axis by bisection with warm starts; print it beside theory.

    Every [grid] axis other than the bisected one must have a single value: fix them with --set or
    --axis NAME=VALUE (e.g. `ufm threshold --axis ratio=8`).
    """
    try:
        cfg = _load(config, set_, axis, {})
    except SweepConfigError as e:
        _error(str(e))
    _setup(x64, False)
    along = axis_name or cfg.threshold.axis
    if along is not None:
        cfg = cfg.without_axis(along)  # the bisected axis comes from the bracket, not the grid

    def show(x, value, status):
        typer.echo(f"  {along} = {x:.6g}: {value:.3e} ({Status(status).name})", err=True)

    try:
        result = find_threshold(cfg, axis=along, lo=lo, hi=hi, metric=metric, level=level, rtol=rtol,
                                boundary=boundary, callback=show)
    except SweepConfigError as e:
        _error(str(e))
    typer.echo(result.summary())

