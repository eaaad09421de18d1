"""The `ufm` command: `ufm solve`, `ufm sweep`, `ufm plot`, `ufm threshold`."""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from . import _validation as V
from ._json import jsonable
from ._search import ROUND_STARTS
from .solve import ALIASES, SOLVERS


app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="Solve unconstrained feature models of neural collapse and check them against theory.")



def _version(value: bool) -> None:
    if value:
        from . import __version__

        typer.echo(f"ufm_jax {__version__}")
        raise typer.Exit()


@app.callback()
def _group(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Solve unconstrained feature models of neural collapse and check them against theory."""


def parse_classes(spec: str) -> list[float]:
    """`"500x5,100x5"` → five classes of 500 then five of 100; plain `"500,100"` lists sizes."""
    sizes: list[float] = []
    for part in spec.split(","):
        part = part.strip()
        match = re.fullmatch(r"([0-9.eE+]+)(?:x([0-9]+))?", part)
        if not match:
            raise ValueError(f"--classes={spec!r} is not allowed: expected comma-separated SIZExCOUNT "
                             "items such as 500x5,100x5 (or plain sizes such as 500,100).")
        try:
            size = float(match.group(1))
        except ValueError:
            raise ValueError(f"--classes={spec!r} is not allowed: {match.group(1)!r} is not a number.")
        count = int(match.group(2) or 1)
        if count < 1:
            raise ValueError(f"--classes={spec!r} is not allowed: {part!r} has no classes; expected "
                             "SIZExCOUNT with COUNT >= 1 (an empty class list is not a class).")
        sizes.extend([size] * count)
    return sizes


def parse_floats(name: str, spec: str) -> list[float]:
    try:
        return [float(x) for x in spec.split(",")]
    except ValueError:
        raise ValueError(f"{name}={spec!r} is not allowed: expected a number or comma-separated numbers.")


def parse_ints(name: str, spec: str) -> list[int]:
    try:
        return [int(x) for x in spec.split(",")]
    except ValueError:
        raise ValueError(f"{name}={spec!r} is not allowed: expected comma-separated integers.")


_SOLVER_HELP = ("auto (lock-step L-BFGS; projected gradient for --nonneg), " + ", ".join(SOLVERS)
                + "; short forms " + ", ".join(f"{a} ({n})" for a, n in ALIASES.items()) + ".")

# The library's parameter names and the command line's flags for them: an error names what the user typed.
_FLAGS = {"class_sizes": "--classes", "dim": "--dim", "lam_w": "--lam-w", "lam_h": "--lam-h",
          "lam_b": "--lam-b", "widths": "--widths", "depth": "--layers", "per_class": "--per-class",
          "seeds": "--seeds", "init_scale": "--init-scale", "key": "--key", "solver": "--solver",
          "max_steps": "--max-steps", "gtol": "--gtol", "history": "--history", "loss": "--loss",
          "max_starts": "--max-starts", "agree": "--agree",
          "columns": "--per-class"}


def _fail(message: str) -> None:
    """Print one line naming the flag (the library names its parameter) and exit 2."""
    name = re.match(r"(\w+)=", message)
    if name and name.group(1) in _FLAGS:
        message = _FLAGS[name.group(1)] + message[len(name.group(1)):]
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


@app.command()
def solve(
    loss: Annotated[str, typer.Option(help="Data term: mse or ce.")] = "ce",
    classes: Annotated[str, typer.Option(help="Class sizes, e.g. 500x5,100x5.")] = "100x4",
    dim: Annotated[int, typer.Option(help="Feature dimension d.")] = 8,
    layers: Annotated[Optional[int], typer.Option(help="Number of weight layers L (default: one per "
                                                  "--lam-w value, else 1).")] = None,
    widths: Annotated[Optional[str], typer.Option(help="Hidden widths d_1,..,d_{L-1} (default d).")] = None,
    lam_w: Annotated[str, typer.Option("--lam-w", help="λ_W: one value, or one per layer W_1..W_L.")] = "5e-3",
    lam_h: Annotated[float, typer.Option("--lam-h", help="λ_H.")] = 5e-3,
    lam_b: Annotated[Optional[float], typer.Option("--lam-b", help="λ_b of a regularised bias.")] = None,
    free_bias: Annotated[bool, typer.Option("--free-bias", help="An unregularised bias.")] = False,
    nonneg: Annotated[bool, typer.Option("--nonneg", help="Constrain features H >= 0.")] = False,
    per_class: Annotated[Optional[int], typer.Option("--per-class", help="Weighted mode: M columns per class.")] = None,
    seeds: Annotated[Optional[int], typer.Option(help="Exactly S random starts (no adaptive search); the "
                                                 "best is reported.")] = None,
    max_starts: Annotated[int, typer.Option("--max-starts", help="Adaptive search (the default): at most N "
                                            "starts per problem.")] = 64,
    agree: Annotated[Optional[int], typer.Option(help="Adaptive search without a theory: starts that must "
                                                 "reach the best value (default 3).")] = None,
    x64: Annotated[bool, typer.Option("--x64/--x32", help="Float64 (the default: certifying needs it) or "
                                      "float32 (faster; held to float32 tolerances).")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    solver: Annotated[str, typer.Option(help=_SOLVER_HELP)] = "auto",
    max_steps: Annotated[Optional[int], typer.Option("--max-steps", help="Iteration limit.")] = None,
    gtol: Annotated[Optional[float], typer.Option(help="Gradient-norm tolerance.")] = None,
    init_scale: Annotated[float, typer.Option("--init-scale", help="Scale of the random starts.")] = 1.0,
    key: Annotated[int, typer.Option(help="PRNG seed of the random starts.")] = 0,
    reduce: Annotated[bool, typer.Option("--reduce/--no-reduce", help="Solve the exact one-column-per-class "
                                         "reduction and verify on the full problem (default), or "
                                         "optimise every sample column.")] = True,
    history: Annotated[Optional[int], typer.Option("--history", help="Record every K iterations: objective, "
                                                   "gradient norm, gap, NC metrics (JSON: 'history').")] = None,
    cache: Annotated[bool, typer.Option("--cache/--no-cache", help="Keep compiled programs on disk "
                                        "(UFM_CACHE_DIR, default ~/.cache/ufm_jax) so a repeated call "
                                        "starts warm.")] = True,
) -> None:
    """Solve one UFM and check it against the analytic minimum where one is known."""
    import jax

    jax.config.update("jax_enable_x64", bool(x64))
    if not cache:
        from ._cache import disable_compilation_cache

        disable_compilation_cache()

    import ufm_jax as u
    from ufm_jax._memory import check_solve  # ranges and memory, before anything is built

    try:
        sizes = parse_classes(classes)
        width_list = None if widths is None else parse_ints("--widths", widths)
        lam_w_list = parse_floats("--lam-w", lam_w)
        if layers is None:
            layers = len(width_list) + 1 if width_list is not None else len(lam_w_list)
        if layers < 1:
            raise ValueError(f"--layers={layers} is not allowed: expected an integer >= 1.")
        if len(lam_w_list) not in (1, layers):
            raise ValueError(f"--lam-w={lam_w!r} is not allowed: expected one value or one per layer "
                             f"(--layers {layers}); for {len(lam_w_list)} layers give --layers "
                             f"{len(lam_w_list)}.")
        if width_list is not None and len(width_list) != layers - 1:
            raise ValueError(f"--widths={widths!r} is not allowed: expected L - 1 = {layers - 1} values.")
        # The memory of the most starts solved at once: `--seeds`, or a search round.
        check_solve(sizes, dim, layers=layers, widths=width_list, per_class=per_class,
                    seeds=ROUND_STARTS if seeds is None else seeds, key=key, max_steps=max_steps)
        problem = u.make_problem(
            loss, sizes, dim, lam_w=lam_w_list if len(lam_w_list) > 1 else lam_w_list[0], lam_h=lam_h,
            lam_b=lam_b, free_bias=free_bias, widths=width_list, depth=layers, nonneg=nonneg,
            per_class=per_class,
        )
        chosen = _make_solver(solver, problem, max_steps, gtol)
        rule = {}
        if seeds is not None:
            solution = u.solve(problem, chosen, key=key, seeds=seeds, init_scale=init_scale, reduce=reduce,
                               history=history)
        else:
            from ._basins import AGREE, MIN_STARTS

            V.integer("max_starts", max_starts, 1)
            # An --agree above the default that the budget cannot meet is refused; the default is not (a
            # small budget then runs to its end, and a point without a theory is not confident).
            agree = AGREE if agree is None else V.integer("agree", agree, 1, max(max_starts, AGREE))
            rule = dict(agree=agree, min_starts=MIN_STARTS)
            solution = u.search(problem, chosen, key=key, max_starts=max_starts, init_scale=init_scale,
                                reduce=reduce, history=history, callback=_progress_line, **rule)
    except ValueError as err:
        _fail(str(err))
    report = u.report(solution, **rule)
    if as_json:
        typer.echo(json.dumps(jsonable(report)))
        return
    _print_report(report)


def _progress_line(info: dict) -> None:
    """One line per search round on stderr (stdout stays one JSON object)."""
    if info["remaining"] == 0:
        return
    typer.echo(f"search: round {info['round']}, {info['starts']} starts, best {min(info['best']):.10g}, "
               f"{info['seconds']:.1f} s; at most {info['eta_s']:.0f} s left", err=True)


def _make_solver(name: str, problem, max_steps, gtol):
    from ufm_jax.solve import make_solver

    if max_steps is not None and max_steps < 1:
        raise ValueError(f"--max-steps={max_steps} is not allowed: expected an integer >= 1.")
    if gtol is not None and not (math.isfinite(gtol) and gtol > 0):
        raise ValueError(f"--gtol={gtol} is not allowed: expected a finite number > 0.")
    return make_solver(name, problem, "--solver", max_steps=max_steps, gtol=gtol)


def _print_report(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="ufm solve", show_header=False)
    for name in ("objective", "grad_norm", "iterations", "status", "objective_spread", "gap"):
        table.add_row(name, str(report.get(name)))
    tol = report["tolerances"]
    table.add_row("certified", f"{report['certified']} ({report['precision']}: objective to "
                  f"{tol['objective_rtol']:g}, geometry to {tol['geometry_rtol']:g})")
    theory = report.get("theory")
    if theory is not None:
        table.add_row("theory objective", str(theory["objective"]))
        table.add_row("regime", str(theory["regime"]))
    else:
        table.add_row("theory", str(report.get("theory_reason")))
    ev = report["evidence"]
    minima = ", ".join(f"{v:.10g} ×{c}" for v, c in ev["minima"][:4]) + (" ..." if len(ev["minima"]) > 4 else "")
    table.add_row("evidence", f"{ev['kind']}: {ev['starts']} starts, {ev['hits']} at the best; "
                  f"confident: {ev['confident']}")
    table.add_row("minima found", minima or "-")
    if ev["hessian_min_eig"] is not None:
        table.add_row("Hessian min eig", f"{ev['hessian_min_eig']:.3g} ({ev['hessian_verdict']})")
    for name, value in report["metrics"].items():
        if not isinstance(value, list):
            table.add_row(name, f"{value:.3e}" if isinstance(value, float) else str(value))
    table.add_row("compile_s / solve_s", f"{report['timing']['compile_s']:.2f} / {report['timing']['solve_s']:.3f}")
    Console().print(table)


# ---- sweeps ---------------------------------------------------------------------------------------------
# The sweep commands import the sweep stack (`ufm_jax.sweep`: pydantic, xarray, pandas, matplotlib, about
# 0.6 s) in their bodies, not at the top of this module: `ufm solve` needs none of it, and its start-up
# time is every call's.

_CONFIG_HELP = "Sweep TOML file (default: the built-in minority-collapse phase diagram)."
_SET_HELP = "Set any config key: --set problem.n_b=100 (or n_b=100); the value is read as TOML."
_AXIS_HELP = "Add or replace an axis: --axis lam_z=log:1e-4:1e-2:12, --axis ratio=1,2,5, lin:LO:HI:NUM."


def _setup(x64: bool, distributed: bool, coordinator: str | None = None, num_processes: int | None = None,
           process_id: int | None = None) -> None:
    import os

    import jax

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
    from .sweep._config import SweepConfigError, load_config

    sets = list(set_ or []) + [f"{k}={v}" for k, v in extra.items() if v is not None]
    try:
        return load_config(config, sets=sets, axes=list(axis or []))
    except SweepConfigError as e:
        _error(str(e))


def _distributed_flags(distributed, coordinator, num_processes, process_id) -> bool:
    """Check the multi-process flags; any of them implies --distributed."""
    if coordinator is not None and not re.fullmatch(r"\[?[\w.:-]+\]?:\d{1,5}", coordinator):
        _error(f"--coordinator={coordinator!r} is not allowed: expected HOST:PORT, e.g. node01:12345.")
    if num_processes is not None and num_processes < 1:
        _error(f"--num-processes={num_processes} is not allowed: expected an integer >= 1.")
    if process_id is not None and not (0 <= process_id < (num_processes or 2**31)):
        _error(f"--process-id={process_id} is not allowed: expected an integer in [0, --num-processes).")
    return distributed or any(x is not None for x in (coordinator, num_processes, process_id))


@app.command()
def sweep(
    config: Annotated[Optional[Path], typer.Argument(help=_CONFIG_HELP)] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help=_SET_HELP)] = None,
    axis: Annotated[Optional[list[str]], typer.Option("--axis", help=_AXIS_HELP)] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Results folder (output).")] = None,
    chunk_size: Annotated[Optional[int], typer.Option(help="Points per batch (run.chunk_size).")] = None,
    starts: Annotated[Optional[int], typer.Option(help="Random starts per point (solver.starts).")] = None,
    history: Annotated[Optional[int], typer.Option("--history", help="Record each point's trajectory every K "
                                                   "iterations (run.history): dataset and figures "
                                                   "history_<metric>.")] = None,
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
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No plan line and no progress (stderr); "
                                        "the summary line (stdout) stays.")] = False,
) -> None:
    """Run a sweep over a grid of UFM problems (resumable: rerun the same command to continue).

    Progress goes to stderr: a progress bar on a terminal, one plain line per chunk otherwise (a log
    file); stdout holds the summary line only (with --dry-run, the number of points only).
    """
    from .sweep._config import SweepConfigError
    from .sweep._plan import dry_run as _dry_run
    from .sweep._runner import run_sweep
    from .sweep._store import SweepRunError

    cfg = _load(config, set_, axis, {"run.chunk_size": chunk_size, "solver.starts": starts,
                                     "run.history": history,
                                     "run.shard": None if shard is None else str(shard).lower(),
                                     "output": None if out is None else json.dumps(str(out))})
    if dry_run:
        import jax

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


@app.command()
def plot(
    dataset: Annotated[Path, typer.Argument(help="A sweep's dataset.nc (or its results folder).")],
    metric: Annotated[Optional[list[str]], typer.Option("--metric", "-m", help="Variables to draw (default: "
                                                        "the sweep's figures); see the list an unknown "
                                                        "one prints.")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Figure folder.")] = None,
) -> None:
    """Redraw the figures of a saved sweep dataset (one file per metric and format; their paths on stdout).

    Numbers draw as heat maps or lines, vectors by component (mean_norms[k]), matrices by entry,
    categories (status_name, regime, evidence, ...) as categorical maps, trajectories (history_<metric>,
    from [run] history) against the iteration.
    """
    from .sweep._config import SweepConfigError
    from .sweep._dataset import load_dataset
    from .sweep._files import DamagedFileError
    from .sweep._plots import plot_dataset, plot_kind

    path = dataset / "dataset.nc" if dataset.is_dir() else dataset
    if not path.is_file():
        _error(f"{path}: no such dataset.")
    try:
        ds = load_dataset(path)
    except DamagedFileError as e:
        _error(f"{e} Rerun `ufm sweep` with its config to rebuild it.")
    except OSError as e:
        _error(f"{path}: cannot read it ({e.strerror or e}).")
    for m in metric or []:  # every metric is checked before anything is drawn
        try:
            plot_kind(ds, m)
        except ValueError as e:
            _error(f"{path}: {e}")
    folder = out or path.parent / "figures"
    try:
        files = plot_dataset(ds, folder, metrics=metric or None)
    except SweepConfigError as e:
        _error(f"{path}: its config_json is not a valid sweep config ({e}).")
    except OSError as e:
        _error(f"cannot write the figures into {folder}: {e.strerror or e}.")
    for f in files:
        typer.echo(str(f))


@app.command()
def threshold(
    config: Annotated[Optional[Path], typer.Argument(help=_CONFIG_HELP)] = None,
    axis_name: Annotated[Optional[str], typer.Option("--along", help="Axis to bisect (threshold.axis).")] = None,
    lo: Annotated[Optional[float], typer.Option(help="Bracket start (threshold.lo).")] = None,
    hi: Annotated[Optional[float], typer.Option(help="Bracket end (threshold.hi).")] = None,
    metric: Annotated[Optional[str], typer.Option(help="Metric that crosses the level: a number per point, "
                                                  "or a vector's component, mean_norms[3] (a vector alone: "
                                                  "its smallest entry).")] = None,
    level: Annotated[Optional[float], typer.Option(help="Crossing level (threshold.level).")] = None,
    rtol: Annotated[Optional[float], typer.Option(help="Relative bracket width to stop at.")] = None,
    boundary: Annotated[Optional[str], typer.Option(help="Theory boundary to compare with (a name of "
                                                    "ufm_jax.phase_boundaries).")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help=_SET_HELP)] = None,
    axis: Annotated[Optional[list[str]], typer.Option("--axis", help=_AXIS_HELP)] = None,
    x64: Annotated[bool, typer.Option("--x64/--x32", help="Float64.")] = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress lines (stderr); the result "
                                        "(stdout) stays.")] = False,
) -> None:
    """Locate a phase boundary along one axis by bisection with warm starts; print it beside theory.

    Every [grid] axis other than the bisected one must have a single value: fix them with --set or
    --axis NAME=VALUE (e.g. `ufm threshold --along lam_z --axis ratio=8`). The metric and the boundary
    are checked before anything is solved; each solve prints a progress line with an estimate of the
    time left on stderr.
    """
    from .solve import Status
    from .sweep._config import SweepConfigError
    from .sweep._threshold import find_threshold

    cfg = _load(config, set_, axis, {})
    _setup(x64, False)
    along = axis_name or cfg.threshold.axis
    if along is not None:
        cfg = cfg.without_axis(along)  # the bisected axis comes from the bracket, not the grid

    def show(info: dict) -> None:
        typer.echo(f"  [{info['step']}/{info['steps']}] {along} = {info['x']:.6g}: {info['value']:.3e} "
                   f"({Status(info['status']).name}); {info['seconds']:.1f} s, about {info['eta_s']:.1f} s "
                   "left", err=True)

    try:
        result = find_threshold(cfg, axis=along, lo=lo, hi=hi, metric=metric, level=level, rtol=rtol,
                                boundary=boundary, callback=None if quiet else show)
    except SweepConfigError as e:
        _error(str(e))
    typer.echo(result.summary())


def use_every_core() -> None:
    """One XLA CPU device per core, so that a batch (starts, grid points) is sharded over all cores; a
    single XLA CPU device runs small programs on one core. Only for the `ufm` process (a library must
    not change its user's devices), only before JAX starts its backends, and not over a device count
    the user set (`XLA_FLAGS=--xla_force_host_platform_device_count=N` or `jax_num_cpu_devices`)."""
    import os

    import jax

    if "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
        return
    if jax.config.jax_num_cpu_devices == -1:
        jax.config.update("jax_num_cpu_devices", max(1, len(os.sched_getaffinity(0))))


def main() -> None:
    use_every_core()
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
