"""Argument checks shared by problems, theory, solvers, sweeps and the command line.

Every check raises `ValueError` with one sentence that names the parameter, shows the value received and
states what is allowed (`"lam_h=0.0 is not allowed: expected a finite number > 0."`). The checks run in
NumPy on host values, before anything is traced, so a bad grid point is named before a compile starts.
"""

from __future__ import annotations

import math
import numbers

import numpy as np


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
            allowed = f"expected an integer in [{minimum}, {maximum}]"
        raise fail(name, value, allowed)
    return int(value)


def integers(name: str, value, minimum: int) -> tuple[int, ...]:
    """A (possibly empty) sequence of integers `>= minimum`."""
    try:
        items = tuple(value)
    except TypeError:
        raise fail(name, value, f"expected a list of integers >= {minimum}") from None
    for item in items:
        if not (isinstance(item, numbers.Integral) and not isinstance(item, (bool, np.bool_))
                and item >= minimum):
            raise fail(name, list(items), f"expected a list of integers >= {minimum}")
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
