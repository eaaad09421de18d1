"""Memory: what one solve needs and what the machine has, compared before anything is compiled.

`solve` (default path) minimises the exact one-column-per-class reduction, then writes the solution out
to every sample column and verifies it on the full problem (`ufm_jax.solve`). Its peak memory is the
larger of

- the reduced solve: `starts × P × 40` numbers, `P = Σ_l d_l d_{l-1} + K d + K` the reduced parameter
  count (L-BFGS keeps 10 pairs of vectors, plus line-search and `vmap` temporaries); and
- the verification, when a class has more than one column: the features `K × m × d` of the full problem
  written out, its gradient and XLA's temporaries, `6 × K m d` numbers (measured on CPU, float64,
  `K = 2`, `m = 10⁶` and `4·10⁶`, `d = 16`: the peak resident memory grew by 5.2–5.7 × `K m d × 8 B`);

plus the problem's own arrays (`K × m` column weights, on the host and on the device). The estimate
leaves out the rare polishing pass (a full-problem solve where round-off misses `gtol`).

What the machine has: on an accelerator, the device's free memory (`memory_stats`); on the CPU, the
smaller of the kernel's `MemAvailable` and the free part of the cgroup's limit (a container's or a SLURM
job's memory).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import jax
import jax.numpy as jnp

from . import _validation as V
from ._problem import Problem

LBFGS_FACTOR = 40
"""Numbers held per parameter by a solve (see the module docstring)."""
VERIFY_FACTOR = 6
"""Numbers held per feature entry by the full-problem verification (measured; see the docstring)."""


class InsufficientMemory(ValueError):
    """A problem (or one batch of a sweep) needs more memory than the machine has; the message names
    the sizes and the bytes."""


def solve_bytes(num_classes: int, columns: int, dim: int, widths: tuple[int, ...] = (), *,
                starts: int = 1, itemsize: int = 8) -> int:
    """Estimated peak bytes of `solve` on one problem with `num_classes` classes of `columns` columns
    (`m`; explicit mode: the largest class), feature dimension `dim`, hidden `widths`, and `starts`
    random starts (see the module docstring)."""
    dims = (dim, *widths, num_classes)
    reduced = sum(a * b for a, b in zip(dims[:-1], dims[1:])) + num_classes * (dim + 1)
    numbers = starts * reduced * LBFGS_FACTOR + 4 * num_classes * columns
    if columns > 1:
        numbers += VERIFY_FACTOR * num_classes * columns * dim
    return int(numbers * itemsize)


def point_bytes(problem: Problem, starts: int = 1) -> int:
    """`solve_bytes` of one (unbatched) problem."""
    return solve_bytes(problem.num_classes, problem.columns_per_class, problem.dim, problem.widths,
                       starts=starts, itemsize=problem.lam_h.dtype.itemsize)


def _read_int(path: str) -> int | None:
    try:
        text = Path(path).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _host_available() -> tuple[int | None, str]:
    found: list[tuple[int, str]] = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append((int(line.split()[1]) * 1024, "MemAvailable"))
    except (OSError, ValueError, IndexError):
        pass
    if not found and hasattr(os, "sysconf"):
        try:
            found.append((os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), "free memory"))
        except (ValueError, OSError):
            pass
    # cgroup v2, then v1: the limit of this container or batch job.
    for limit, usage in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                         ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                          "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        cap, used = _read_int(limit), _read_int(usage)
        if cap is not None and cap < 2**60:
            found.append((cap - (used or 0), "the cgroup's memory limit"))
            break
    if not found:
        return None, "unknown"
    return min(found)


def available_memory() -> tuple[int | None, str]:
    """`(bytes, where)`: the memory a solve can still use on this process's first device (the host's
    for a CPU), and where that number comes from; `(None, "unknown")` when nothing tells."""
    device = jax.local_devices()[0]
    if device.platform != "cpu":
        try:
            stats = device.memory_stats() or {}
        except (RuntimeError, NotImplementedError):
            stats = {}
        if "bytes_limit" in stats:
            return stats["bytes_limit"] - stats.get("bytes_in_use", 0), f"{device.device_kind} memory"
    return _host_available()


def human(n: float) -> str:
    """`n` bytes for people: `80 TB`, `2.6 GB`, `12 kB` (powers of 1000)."""
    for unit, size in (("EB", 1e18), ("PB", 1e15), ("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{int(n)} B"


def check_fits(needed: int, what: str, advice: str) -> None:
    """Raise `InsufficientMemory` if `needed` bytes exceed what the machine has.

    The message: `{what} needs about N bytes (H) but A are available (where); {advice}.`
    """
    available, where = available_memory()
    if available is not None and needed > available:
        raise InsufficientMemory(f"{what} needs about {needed:.3g} bytes ({human(needed)}) of memory, but "
                                 f"{human(max(available, 0))} are available ({where}); {advice}.")


def check_solve(class_sizes, dim, *, layers: int = 1, widths=None, per_class: int | None = None,
                seeds: int = 1, key: int = 0, max_steps: int | None = None) -> None:
    """The checks `ufm solve` runs before building its problem: the integer inputs' ranges and the
    memory of the solve (explicit mode: `K × max n_k × d` features are written out for verification).

    **Raises:** `ValueError` naming the input (`InsufficientMemory` for the memory) in one line.
    """
    V.integer("--key", key, 0, V.MAX_SEED)
    V.integer("--seeds", seeds, 1, V.MAX_EXTENT)
    V.integer("--layers", layers, 1, V.MAX_DEPTH)
    V.integer("--dim", dim, 1, V.MAX_EXTENT)
    if max_steps is not None:  # the iteration counter is a 32-bit integer in the compiled loop
        V.integer("--max-steps", max_steps, 1, V.MAX_EXTENT)
    if per_class is not None:
        V.integer("--per-class", per_class, 1, V.MAX_EXTENT)
    if widths is not None:
        V.integers("--widths", widths, 1, V.MAX_EXTENT)
    sizes = V.class_sizes("class_sizes", class_sizes)
    num_classes = sizes.size
    columns = per_class if per_class is not None else max(1, math.ceil(float(sizes.max())))
    hidden = tuple(widths) if widths is not None else (dim,) * (layers - 1)
    dtype = jax.dtypes.canonicalize_dtype(jnp.float64)
    needed = solve_bytes(num_classes, columns, dim, hidden, starts=seeds, itemsize=dtype.itemsize)
    mode = (f"{columns} columns per class (--per-class)" if per_class is not None else
            f"per-class {columns} (explicit: one column per sample of the largest class)")
    check_fits(needed, f"this problem (classes K = {num_classes}, dim d = {dim}, {mode}, {seeds} "
               f"start{'s' if seeds > 1 else ''}, {dtype.name})",
               "use --per-class M (the exact weighted representation: its cost does not grow with the "
               "class sizes) or smaller sizes" if per_class is None else "use smaller sizes")
