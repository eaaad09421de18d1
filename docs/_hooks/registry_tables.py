"""mkdocs build hook: tables rendered from the package's registries, so that the site holds no second copy.

A page asks for a table with a marker alone on its line:

- `<!-- ufm:families -->`: one row per entry of `ufm_jax.FAMILIES` (loss, constraint, presets with their
  defaults, theory, phase boundaries), from the entries and the docstrings of their functions;
- `<!-- ufm:presets -->`: one section per preset constructor (`ufm_jax.ce`, ...), with the anchor
  `ufm_jax.<preset>` that mkdocstrings would give it. The constructors are built at import time by
  `Family.preset`, so static analysis (griffe) sees only `ce = _PRESETS["ce"]`: their signature and
  docstring exist only at run time, and this hook reads them there;
- `<!-- ufm:solvers -->`: one row per entry of `ufm_jax.SOLVERS` (the names the CLI and sweep configs
  accept, and the aliases).

The package imported is the one in this checkout (the folder of mkdocs.yml), as for mkdocstrings'
`paths: [.]`, whatever else the environment has installed.
"""

from __future__ import annotations

import inspect
import re
import sys
from pathlib import Path

_MARKER = re.compile(r"^<!-- ufm:(\w+) -->$", re.MULTILINE)


def _package(config):
    root = str(Path(config.config_file_path).resolve().parent)
    if sys.path[:1] != [root]:
        sys.path.insert(0, root)
    import ufm_jax

    if not Path(ufm_jax.__file__).resolve().is_relative_to(root):
        raise RuntimeError(f"ufm_jax was imported from {ufm_jax.__file__}, not from this checkout {root}")
    return ufm_jax


def _one_line(text: str | None) -> str:
    return " ".join((text or "").split()).replace("|", "\\|")


def _defaults(options) -> str:
    return f" ({', '.join(f'`{k}={v!r}`' for k, v in options.items())})" if options else ""


def _families(u) -> str:
    rows = [
        "| family | data term | `H >= 0` | presets (their defaults) | analytic minimum | phase boundaries |",
        "|---|---|---|---|---|---|",
    ]
    for family in u.FAMILIES.values():
        presets = "<br>".join(f"[`{name}`][ufm_jax.{name}]{_defaults(options)}"
                              for name, options in family.presets.items())
        theory = _one_line(family.theory.__doc__) or "none: every point gets `NoTheory`"
        boundaries = _one_line(family.boundaries.__doc__) or "none"
        rows.append(f"| `{family.name}` | `{family.loss}` | {'yes' if family.nonneg else 'no'} | "
                    f"{presets} | {theory} | {boundaries} |")
    return "\n".join(rows)


def _presets(u) -> str:
    blocks = []
    for family, name in ((f, name) for f in u.FAMILIES.values() for name in f.presets):
        constructor = getattr(u, name)
        signature = str(inspect.signature(constructor)).replace("'Problem'", "Problem")
        doc = inspect.getdoc(constructor) or ""
        blocks.append(f"### ufm_jax.{name} {{#ufm_jax.{name} }}\n\n"
                      f"```python\nufm_jax.{name}{signature}\n```\n\n"
                      f"{doc}\n\nFamily: `{family.name}` (`ufm_jax.FAMILIES[{family.name!r}]`).\n")
    return "\n".join(blocks)


def _solvers(u) -> str:
    rows = ["| name (CLI `--solver`, config `solver.method`) | aliases | class |", "|---|---|---|"]
    for name, cls in u.SOLVERS.items():
        aliases = ", ".join(f"`{a}`" for a in getattr(cls, "aliases", ())) or "—"
        rows.append(f"| `{name}` | {aliases} | [`ufm_jax.{cls.__name__}`][ufm_jax.{cls.__name__}] |")
    return "\n".join(rows)


_TABLES = {"families": _families, "presets": _presets, "solvers": _solvers}


def on_page_markdown(markdown, page, config, files):
    if not _MARKER.search(markdown):
        return markdown
    u = _package(config)

    def render(match):
        kind = match.group(1)
        if kind not in _TABLES:
            raise ValueError(f"{page.file.src_path}: unknown marker <!-- ufm:{kind} --> "
                             f"(known: {', '.join(_TABLES)})")
        return _TABLES[kind](u)

    return _MARKER.sub(render, markdown)
