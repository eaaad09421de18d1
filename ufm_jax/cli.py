"""The `ufm` command: `ufm solve`, `ufm sweep`, `ufm plot`, `ufm threshold`."""

from __future__ import annotations

import json
import math
import re
import sys
from typing import Annotated, Optional

import typer

from ._json import jsonable

from .sweep import _cli as _sweep_cli

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Solve unconstrained feature models of neural collapse and check them against theory.")



@app.callback()
def _group() -> None:
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


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


@app.command()
def solve(
    loss: Annotated[str, typer.Option(help="Data term: mse or ce.")] = "ce",
    classes: Annotated[str, typer.Option(help="Class sizes, e.g. 500x5,100x5.")] = "100x4",
    dim: Annotated[int, typer.Option(help="Feature dimension d.")] = 8,
    layers: Annotated[int, typer.Option(help="Number of weight layers L.")] = 1,
    widths: Annotated[Optional[str], typer.Option(help="Hidden widths d_1,..,d_{L-1} (default d).")] = None,
    lam_w: Annotated[str, typer.Option("--lam-w", help="λ_W: one value, or one per layer W_1..W_L.")] = "5e-3",
    lam_h: Annotated[float, typer.Option("--lam-h", help="λ_H.")] = 5e-3,
    lam_b: Annotated[Optional[float], typer.Option("--lam-b", help="λ_b of a regularised bias.")] = None,
    free_bias: Annotated[bool, typer.Option("--free-bias", help="An unregularised bias.")] = False,
    nonneg: Annotated[bool, typer.Option("--nonneg", help="Constrain features H >= 0.")] = False,
    per_class: Annotated[Optional[int], typer.Option("--per-class", help="Weighted mode: M columns per class.")] = None,
    seeds: Annotated[int, typer.Option(help="Random starts; the best is reported.")] = 1,
    x64: Annotated[bool, typer.Option("--x64", help="Float64 (needed to certify against theory).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    solver: Annotated[str, typer.Option(help="auto (L-BFGS; projected gradient for --nonneg), lbfgs, "
                                        "lockstep_lbfgs, gradient_descent, adam, projected_gradient; "
                                        "short forms lockstep, gd, pg.")] = "auto",
    max_steps: Annotated[Optional[int], typer.Option("--max-steps", help="Iteration limit.")] = None,
    gtol: Annotated[Optional[float], typer.Option(help="Gradient-norm tolerance.")] = None,
    init_scale: Annotated[float, typer.Option("--init-scale", help="Scale of the random starts.")] = 1.0,
    key: Annotated[int, typer.Option(help="PRNG seed of the random starts.")] = 0,
) -> None:
    """Solve one UFM and check it against the analytic minimum where one is known."""
    import jax

    jax.config.update("jax_enable_x64", bool(x64))

    import ufm_jax as u
    from ufm_jax._memory import check_solve  # ranges and memory, before anything is built

    try:
        sizes = parse_classes(classes)
        width_list = None if widths is None else parse_ints("--widths", widths)
        lam_w_list = parse_floats("--lam-w", lam_w)
        if layers < 1:
            raise ValueError(f"--layers={layers} is not allowed: expected an integer >= 1.")
        if width_list is not None and len(width_list) != layers - 1:
            raise ValueError(f"--widths={widths!r} is not allowed: expected L - 1 = {layers - 1} values.")
        check_solve(sizes, dim, layers=layers, widths=width_list, per_class=per_class, seeds=seeds, key=key,
                    max_steps=max_steps)
        problem = u.make_problem(
            loss, sizes, dim, lam_w=lam_w_list if len(lam_w_list) > 1 else lam_w_list[0], lam_h=lam_h,
            lam_b=lam_b, free_bias=free_bias, widths=width_list, depth=layers, nonneg=nonneg,
            per_class=per_class,
        )
        chosen = _make_solver(solver, problem, max_steps, gtol)
        solution = u.solve(problem, chosen, key=key, seeds=seeds, init_scale=init_scale)
    except ValueError as err:
        _fail(str(err))
    report = u.report(solution)
    if as_json:
        typer.echo(json.dumps(jsonable(report)))
        return
    _print_report(report)


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


def main() -> None:
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
