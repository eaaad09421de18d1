"""The unconstrained feature model (UFM) problem description.

One `Problem` describes every variant the package solves; the papers' variants are presets over it.

    min_{W_1..W_L, H, b}  data(W_L ⋯ W_1 H + b 1ᵀ, Y)
                          + Σ_l (λ_{W,l}/2) ‖W_l‖_F² + (λ_H/2) ‖H‖_F² + [(λ_b/2) ‖b‖²]

with, for N = Σ_k n_k samples ordered class by class and one-hot labels Y,

- `loss="mse"`: data = 1/(2N) ‖W_L ⋯ W_1 H + b 1ᵀ − Y‖_F²  (Liu 2024 eq. 4.3; Dang et al. 2023 eq. 2),
- `loss="ce"`:  data = (1/N) Σ_i CE(W_L ⋯ W_1 h_i + b, y_i)  (Hong & Ling 2023 eq. 2.1),

`W_l ∈ R^{d_l × d_{l-1}}`, `d_0 = d` (feature dimension), `d_L = K`, `W_1` nearest the features. The bias is
absent (`"none"`), free and unpenalised (`"free"`), or penalised by `(λ_b/2)‖b‖²` (`"regularised"`). With
`nonneg=True` the features are constrained to `H ≥ 0` (the ReLU-constrained model of Dang et al. 2024).

**Two exact sample representations.** Features are stored as `m` columns per class, column `(k, j)`
weighing `w_kj` (`column_weights`, shape `(K, m)`): both the data term and the `H` penalty sum
`w_kj · (per-column term)`.

- explicit: `w_kj = 1` for `j < n_k`, `0` for padding (`m = max_k n_k`, or wider so that problems with
  different class sizes share one shape and one compiled program);
- weighted: `w_kj = n_k / m` for all `j`.

Why weighted is exact: for fixed `W`'s and `b`, the objective is a sum over columns of
`w_kj [ℓ(W h_kj + b, k)/N' + (λ_H/2)‖h_kj‖²]` (N' = N for CE, 2N for MSE), i.e. separable in the columns,
and each summand is strictly convex in `h_kj` (a convex loss of an affine map plus a strictly convex
quadratic), also on the convex set `h ≥ 0`. So within a class every column has the same unique minimiser
`h_k*(W, b)`, and the partially minimised objective is `Σ_k n_k [ℓ(W h_k* + b, k)/N' + (λ_H/2)‖h_k*‖²]` for
either representation. Both forms therefore have the same minimum and the same minimisers (with
`h_kj = h_k*`), and the weighted form costs O(K m) whatever `N` is: `n_k = 10⁹` works.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

LOSSES = ("mse", "ce")
BIASES = ("none", "free", "regularised")


class Problem(eqx.Module):
    """A UFM instance (see the module docstring for the objective).

    Shapes are static fields (they select a compiled program); every number that a sweep varies is an
    array leaf, so a new `λ` or new class sizes never recompile.

    **Fields:**

    - `class_sizes`: `n_k`, shape `(K,)` (floats, so `10⁹` is fine).
    - `column_weights`: `w_kj`, shape `(K, m)`; see the module docstring.
    - `lam_w`: `λ_{W,l}` for `W_1..W_L`, shape `(L,)`.
    - `lam_h`: `λ_H`, shape `()`.
    - `lam_b`: `λ_b`, shape `()` (ignored unless `bias == "regularised"`).
    - `loss`, `bias`, `nonneg`, `dim`, `widths`: static options; `widths = (d_1..d_{L-1})`.
    """

    class_sizes: Float[Array, " K"]
    column_weights: Float[Array, "K m"]
    lam_w: Float[Array, " L"]
    lam_h: Float[Array, ""]
    lam_b: Float[Array, ""]
    loss: str = eqx.field(static=True)
    bias: str = eqx.field(static=True)
    nonneg: bool = eqx.field(static=True)
    dim: int = eqx.field(static=True)
    widths: tuple[int, ...] = eqx.field(static=True)
    weighted: bool = eqx.field(static=True)

    @property
    def num_classes(self) -> int:
        return self.column_weights.shape[-2]

    @property
    def columns_per_class(self) -> int:
        return self.column_weights.shape[-1]

    @property
    def depth(self) -> int:
        return len(self.widths) + 1

    @property
    def layer_dims(self) -> tuple[int, ...]:
        """`(d_0, d_1, ..., d_L) = (d, widths..., K)`."""
        return (self.dim, *self.widths, self.num_classes)

    @property
    def num_samples(self) -> Float[Array, ""]:
        return jnp.sum(self.class_sizes, axis=-1)


def _fail(name: str, value, allowed: str) -> ValueError:
    return ValueError(f"{name}={value!r} is not allowed: {allowed}.")


def _positive_floats(name: str, value, *, allow_zero: bool = False) -> np.ndarray:
    arr = np.atleast_1d(np.asarray(value, dtype=np.float64))
    if arr.ndim != 1 or arr.size == 0:
        raise _fail(name, value, "expected a number or a non-empty list of numbers")
    if not np.all(np.isfinite(arr)):
        raise _fail(name, value, "every value must be finite")
    bad = arr < 0 if allow_zero else arr <= 0
    if np.any(bad):
        raise _fail(name, value, "every value must be >= 0" if allow_zero else "every value must be > 0")
    return arr


def _positive_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise _fail(name, value, f"expected an integer >= {minimum}")
    return int(value)


def make_problem(
    loss: Literal["mse", "ce"],
    class_sizes: Sequence[float],
    dim: int,
    *,
    lam_w: float | Sequence[float],
    lam_h: float,
    lam_b: float | None = None,
    free_bias: bool = False,
    widths: Sequence[int] | None = None,
    depth: int | None = None,
    nonneg: bool = False,
    per_class: int | None = None,
    columns: int | None = None,
    dtype=None,
) -> Problem:
    """Build and validate a `Problem`.

    **Arguments:**

    - `loss`: `"mse"` or `"ce"`.
    - `class_sizes`: `n_1..n_K`, each > 0 (integers in explicit mode); `K >= 2`.
    - `dim`: feature dimension `d >= 1`.
    - `lam_w`: one `λ_W > 0` for every layer, or one per layer `W_1..W_L`.
    - `lam_h`: `λ_H > 0`.
    - `lam_b`: `λ_b > 0` gives the regularised bias `(λ_b/2)‖b‖²`.
    - `free_bias`: an unpenalised bias. With neither, the model has no bias.
    - `widths`: hidden widths `d_1..d_{L-1}` (each >= 1); default `d` for each of `depth - 1` layers.
    - `depth`: `L >= 1`; default `len(widths) + 1`, or the length of `lam_w` if it is a list, else 1.
    - `nonneg`: constrain `H >= 0`.
    - `per_class`: weighted mode with `m = per_class` columns per class; default explicit.
    - `columns`: explicit mode only: pad every class to this many columns (>= max n_k).
    - `dtype`: float dtype of the leaves; default JAX's default float (float64 under `jax_enable_x64`).

    **Raises:** `ValueError` naming the parameter, the value and the allowed range.
    """
    if loss not in LOSSES:
        raise _fail("loss", loss, f"expected one of {LOSSES}")
    sizes = _positive_floats("class_sizes", class_sizes)
    num_classes = sizes.size
    if num_classes < 2:
        raise _fail("class_sizes", list(class_sizes), "expected at least K = 2 classes")
    dim = _positive_int("dim", dim, 1)
    lam_w_arr = _positive_floats("lam_w", lam_w)
    if widths is None:
        if depth is None:
            depth = lam_w_arr.size if lam_w_arr.size > 1 else 1
        depth = _positive_int("depth", depth, 1)
        widths = (dim,) * (depth - 1)
    else:
        widths = tuple(widths)
        for w in widths:
            _positive_int("widths", w, 1)
        if depth is not None and _positive_int("depth", depth, 1) != len(widths) + 1:
            raise _fail("widths", list(widths), f"expected depth - 1 = {depth - 1} hidden widths")
        depth = len(widths) + 1
    if lam_w_arr.size == 1:
        lam_w_arr = np.full(depth, lam_w_arr[0])
    elif lam_w_arr.size != depth:
        raise _fail("lam_w", list(lam_w_arr), f"expected one value or L = {depth} values (W_1..W_L)")
    lam_h_arr = _positive_floats("lam_h", lam_h)
    if lam_h_arr.size != 1:
        raise _fail("lam_h", lam_h, "expected one number > 0")
    if lam_b is not None and free_bias:
        raise _fail("lam_b", lam_b, "a regularised bias (lam_b) and free_bias=True exclude each other")
    if lam_b is not None:
        lam_b_arr = _positive_floats("lam_b", lam_b)
        if lam_b_arr.size != 1:
            raise _fail("lam_b", lam_b, "expected one number > 0")
        bias = "regularised"
    else:
        lam_b_arr = np.ones(1)
        bias = "free" if free_bias else "none"
    if per_class is not None:
        if columns is not None:
            raise _fail("columns", columns, "columns (explicit padding) cannot be combined with per_class")
        m = _positive_int("per_class", per_class, 1)
        weights = np.repeat(sizes[:, None] / m, m, axis=1)
    else:
        if not np.all(sizes == np.round(sizes)):
            raise _fail("class_sizes", list(class_sizes), "explicit mode needs integer class sizes "
                        "(use per_class for weighted mode)")
        largest = int(sizes.max())
        if largest > 10_000_000:
            raise _fail("class_sizes", list(class_sizes), "explicit mode allows n_k <= 10^7 columns "
                        "(use per_class for weighted mode)")
        m = largest if columns is None else _positive_int("columns", columns, largest)
        weights = (np.arange(m)[None, :] < sizes[:, None]).astype(np.float64)
    dtype = jnp.zeros(()).dtype if dtype is None else dtype

    def leaf(x):
        return jnp.asarray(x, dtype=dtype)

    return Problem(
        class_sizes=leaf(sizes),
        column_weights=leaf(weights),
        lam_w=leaf(lam_w_arr),
        lam_h=leaf(lam_h_arr[0]),
        lam_b=leaf(lam_b_arr[0]),
        loss=loss,
        bias=bias,
        nonneg=bool(nonneg),
        dim=dim,
        widths=tuple(int(w) for w in widths),
        weighted=per_class is not None,
    )


def stack_problems(problems: Sequence[Problem]) -> Problem:
    """Stack problems that share their static options and shapes into one batched `Problem`.

    **Raises:** `ValueError` if the problems differ in a static option or a shape (pad explicit problems
    to a common width with `make_problem(..., columns=...)`).
    """
    if len(problems) == 0:
        raise _fail("problems", [], "expected at least one problem")
    first = problems[0]
    ref = jax.tree.structure(first), [x.shape for x in jax.tree.leaves(first)]
    for i, p in enumerate(problems):
        if (jax.tree.structure(p), [x.shape for x in jax.tree.leaves(p)]) != ref:
            raise _fail(f"problems[{i}]", "...", "every problem in a batch must share loss, bias, nonneg, "
                        "dim, widths and array shapes (pad with columns=...)")
    return jax.tree.map(lambda *xs: jnp.stack(xs), *problems)


def batch_size(problem: Problem) -> int:
    """Number of problems in a (possibly) batched `Problem`: 1 if unbatched."""
    return math.prod(problem.lam_h.shape)


# ---- Presets: the papers' variants as thin constructors over `make_problem`. -------------------------


def plain_mse(class_sizes, dim, *, lam_w, lam_h, **kw) -> Problem:
    """Plain MSE UFM without bias (Dang et al. 2023, Thm 4.1 / Liu 2024 model 4.1)."""
    return make_problem("mse", class_sizes, dim, lam_w=lam_w, lam_h=lam_h, **kw)


def biased_mse(class_sizes, dim, *, lam_w, lam_h, **kw) -> Problem:
    """MSE UFM with a free, unregularised bias (Liu 2024 model 4.2; `L >= 2` with `widths`: model 4.3)."""
    return make_problem("mse", class_sizes, dim, lam_w=lam_w, lam_h=lam_h, free_bias=True, **kw)


def deep_linear_mse(class_sizes, dim, *, lam_w, lam_h, depth=None, **kw) -> Problem:
    """Deep-linear (L-extended) MSE UFM without bias (Dang et al. 2023, Thm 4.4)."""
    return make_problem("mse", class_sizes, dim, lam_w=lam_w, lam_h=lam_h, depth=depth, **kw)


def ce(class_sizes, dim, *, lam_w, lam_h, lam_b=None, **kw) -> Problem:
    """Cross-entropy UFM, bias-free or with regularised bias (Hong & Ling 2023, eq. 2.1)."""
    return make_problem("ce", class_sizes, dim, lam_w=lam_w, lam_h=lam_h, lam_b=lam_b, **kw)


def relu_ce(class_sizes, dim, *, lam_w, lam_h, **kw) -> Problem:
    """Cross-entropy UFM with non-negative features `H >= 0`, no bias (Dang et al. 2024, eq. 3)."""
    return make_problem("ce", class_sizes, dim, lam_w=lam_w, lam_h=lam_h, nonneg=True, **kw)
