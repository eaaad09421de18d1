"""The `ufm` command: `ufm solve`, `ufm sweep`, `ufm plot`, `ufm threshold`."""

from __future__ import annotations

import json
import math
import re
import sys
from typing import Annotated, Optional

import typer

from . import _validation as V
from ._json import jsonable
from ._search import ROUND_STARTS
from .solve import ALIASES, SOLVERS

from .sweep import _cli as _sweep_cli

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
    agree: Annotated[int, typer.Option(help="Adaptive search without a theory: starts that must reach the "
                                       "best value.")] = 3,
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
            from ._basins import MIN_STARTS

            V.integer("max_starts", max_starts, 1)
            rule = dict(agree=V.integer("agree", agree, 1, max_starts), min_starts=MIN_STARTS)
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
    for name in ("objective", "grad_norm", "iterations", "status", "objective_spread", "certified", "gap"):
        table.add_row(name, str(report.get(name)))
    theory = report.get("theory")
    if theory is not None:
        table.add_row("theory objective", str(theory["objective"]))
        table.add_row("regime", str(theory["regime"]))
    else:
        table.add_row("theory", str(report.get("theory_reason")))
    for name, value in report["metrics"].items():
        if not isinstance(value, list):
            table.add_row(name, f"{value:.3e}" if isinstance(value, float) else str(value))
    table.add_row("compile_s / solve_s", f"{report['timing']['compile_s']:.2f} / {report['timing']['solve_s']:.3f}")
    Console().print(table)


for _name in ("sweep", "plot", "threshold"):
    app.command(name=_name)(getattr(_sweep_cli, _name))


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
