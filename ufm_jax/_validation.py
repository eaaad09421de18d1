"""Argument checks shared by problems, theory, solvers, sweeps and the command line.

Every check raises `ValueError` with one sentence that names the parameter, shows the value received and
states what is allowed (`"lam_h=0.0 is not allowed: expected a finite number > 0."`). The checks run in
NumPy on host values, before anything is traced, so a bad grid point is named before a compile starts.
"""

from __future__ import annotations

import math
import numbers

import jax.numpy as jnp
import numpy as np

MAX_EXTENT = 2**31 - 1
"""The largest array extent accepted (a dimension, a width, columns per class): XLA indexes with 32-bit
integers on some backends, and anything near it exceeds memory anyway (see `ufm_jax._memory`)."""
MAX_DEPTH = 1024
"""The largest depth L accepted: every layer is unrolled into the compiled program."""
MAX_SEED = 2**63 - 1
"""The largest PRNG seed: seeds are stored as int64 (in datasets and on the way to `init_params`)."""


def fail(name: str, value, allowed: str) -> ValueError:
    """The package's one error message: `name=value is not allowed: allowed.`"""
    shown = value
    if isinstance(value, np.ndarray):
        shown = value.tolist()
    elif isinstance(value, np.generic):
        shown = value.item()
    return ValueError(f"{name}={shown!r} is not allowed: {allowed}.")


def _float_array(name: str, value) -> np.ndarray:
    try:
        return np.atleast_1d(np.asarray(value, dtype=np.float64))
    except (TypeError, ValueError):
        raise fail(name, value, "expected a number or a list of numbers") from None


def floats(name: str, value, *, minimum: float = 0.0, strict: bool = True,
           length: int | None = None) -> np.ndarray:
    """A non-empty 1-d float64 vector of finite values `> minimum` (`>= minimum` if not `strict`).

    With `length`, one value is repeated to that length and any other count is refused.
    """
    arr = _float_array(name, value)
    if arr.ndim != 1 or arr.size == 0:
        raise fail(name, value, "expected a number or a non-empty list of numbers")
    if not np.all(np.isfinite(arr)):
        raise fail(name, value, "every value must be finite")
    bad = arr <= minimum if strict else arr < minimum
    if np.any(bad):
        raise fail(name, value, f"every value must be {'>' if strict else '>='} {minimum:g}")
    if length is not None:
        if arr.size == 1:
            arr = np.full(length, arr[0])
        elif arr.size != length:
            raise fail(name, value, f"expected one value or L = {length} values (W_1..W_L)")
    return arr


def positive(name: str, value) -> float:
    """One finite number `> 0` (a scalar or a one-element list)."""
    arr = floats(name, value)
    if arr.size != 1:
        raise fail(name, value, "expected one number > 0")
    return float(arr[0])


def integer(name: str, value, minimum: int, maximum: int | None = None) -> int:
    """An integer (not a bool, not a float) in `[minimum, maximum]`."""
    ok = isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))
    if not ok or value < minimum or (maximum is not None and value > maximum):
        allowed = f"expected an integer >= {minimum}"
        if maximum is not None:
            allowed = f"expected an integer >= {minimum} and <= {maximum}"
        raise fail(name, value, allowed)
    return int(value)


def integers(name: str, value, minimum: int, maximum: int | None = None) -> tuple[int, ...]:
    """A (possibly empty) sequence of integers in `[minimum, maximum]`."""
    allowed = f"expected a list of integers >= {minimum}" if maximum is None else \
        f"expected a list of integers >= {minimum} and <= {maximum}"
    try:
        items = tuple(value)
    except TypeError:
        raise fail(name, value, allowed) from None
    for item in items:
        if not (isinstance(item, numbers.Integral) and not isinstance(item, (bool, np.bool_))
                and item >= minimum and (maximum is None or item <= maximum)):
            raise fail(name, list(items), allowed)
    return tuple(int(i) for i in items)


def class_sizes(name: str, value) -> np.ndarray:
    """`n_1..n_K`: `K >= 2` finite sizes `> 0`, as float64."""
    arr = _float_array(name, value)
    if arr.ndim != 1 or arr.size < 2:
        raise fail(name, value, "expected at least K = 2 classes")
    if not np.all(np.isfinite(arr)):
        raise fail(name, value, "every value must be finite")
    if np.any(arr <= 0):
        raise fail(name, value, "every value must be > 0 (an empty class has no samples)")
    return arr


def choice(name: str, value, allowed) -> str:
    """One of `allowed` (strings)."""
    if value not in allowed:
        raise fail(name, value, f"expected one of {', '.join(map(str, allowed))}")
    return value


def finite_positive_or_none(name: str, value) -> float | None:
    """`None`, or one finite number `> 0`."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) \
            or value <= 0:
        raise fail(name, value, "expected a finite number > 0")
    return float(value)


def layered(sizes, dim, widths, lam_w, lam_h, *, lam_w_name: str = "lam_w", lam_h_name: str = "lam_h"):
    """The numbers of a layered model, checked: `(n, dim, widths, λ_W per layer, λ_H)`.

    `n` as `class_sizes` (named `class_sizes` in messages); `dim >= 1` and every width `>= 1` integers;
    `λ_W` one value or one per layer `W_1..W_L` (`L = len(widths) + 1`), each `> 0`, returned with length
    `L`; `λ_H` one number `> 0`. Used by the deep-linear theory functions, which all take these five.
    """
    n = class_sizes("class_sizes", sizes)
    dim = integer("dim", dim, 1)
    widths = integers("widths", widths, 1)
    lam_w = floats(lam_w_name, lam_w, length=len(widths) + 1)
    return n, dim, widths, lam_w, positive(lam_h_name, lam_h)


def float_dtype(name: str, dtype):
    """A floating dtype (`float32`, `float64`, ...), as NumPy's `dtype`; anything else is refused."""
    try:
        dtype = jnp.dtype(dtype)
    except TypeError:
        raise fail(name, dtype, "expected a floating dtype such as float32 or float64") from None
    if not jnp.issubdtype(dtype, jnp.floating):
        raise fail(name, str(dtype), "expected a floating dtype such as float32 or float64 (the "
                   "objective, its gradient and the theory are real-valued)")
    return dtype


def representable(name: str, value, dtype, shown=None) -> None:
    """Check that `value` (finite, float64) survives the cast to the working precision `dtype`: no
    overflow to inf, and no nonzero value below the smallest normal number (subnormals are flushed to 0
    by CPUs and GPUs, so `lam_h = 1e-50` in float32 would silently become 0).

    **Raises:** `ValueError` naming `name`, the value (`shown` if given), the precision and its range.
    """
    arr = np.abs(np.asarray(value, dtype=np.float64))
    info = jnp.finfo(dtype)
    tiny, huge = float(info.tiny), float(info.max)
    shown = value if shown is None else shown
    precision = jnp.dtype(dtype).name
    hint = ("use float64 (jax.config.update('jax_enable_x64', True); --x64 on the command line) or rescale"
            if info.bits < 64 else "rescale the problem")
    if np.any(arr > huge):
        raise fail(name, shown, f"it overflows to inf in {precision}, the working precision "
                   f"(largest {huge:.3g}); {hint}")
    if np.any((arr > 0) & (arr < tiny)):
        raise fail(name, shown, f"it underflows to 0 in {precision}, the working precision "
                   f"(smallest normal {tiny:.3g}); {hint}")


def unrepresentable(values, dtype) -> np.ndarray:
    """Elementwise: which of `values` the cast to `dtype` turns into inf or (nonzero) 0; see
    `representable`."""
    a = np.abs(np.asarray(values, dtype=np.float64))
    info = jnp.finfo(dtype)
    return (a > float(info.max)) | ((a > 0) & (a < float(info.tiny)))
