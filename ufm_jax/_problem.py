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

import dataclasses
import math
from collections.abc import Sequence
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from . import _validation as V

LOSSES = ("mse", "ce")
BIASES = ("none", "free", "regularised")
MAX_EXPLICIT_COLUMNS = 10_000_000


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
    - `dtype`: a floating dtype for the leaves; default JAX's default float (float64 under
      `jax_enable_x64`, else float32).

    **Raises:** `ValueError` naming the parameter, the value and the allowed range: also for a value
    that the cast to the working precision would turn into 0 or inf (`lam_h=1e-50` in float32), for a
    non-float `dtype`, and for sizes beyond `ufm_jax._validation`'s limits.
    """
    V.choice("loss", loss, LOSSES)
    # The working precision first: every number is checked after its cast to it.
    dtype = jax.dtypes.canonicalize_dtype(jnp.float64 if dtype is None else V.float_dtype("dtype", dtype))
    sizes = V.class_sizes("class_sizes", class_sizes)
    dim = V.integer("dim", dim, 1, V.MAX_EXTENT)
    widths = _widths(dim, V.floats("lam_w", lam_w).size, widths, depth)
    lam_w_arr = V.floats("lam_w", lam_w, length=len(widths) + 1)
    lam_h_value = V.positive("lam_h", lam_h)
    if lam_b is not None and free_bias:
        raise V.fail("lam_b", lam_b, "a regularised bias (lam_b) and free_bias=True exclude each other")
    if lam_b is not None:
        lam_b_value = V.positive("lam_b", lam_b)
        bias = "regularised"
    else:
        lam_b_value = 1.0
        bias = "free" if free_bias else "none"
    weights = _column_weights(sizes, per_class, columns)
    _check_precision(sizes, weights, lam_w_arr, lam_h_value, lam_b_value if bias == "regularised" else None,
                     dtype, per_class)

    def leaf(x):
        return jnp.asarray(x, dtype=dtype)

    return Problem(
        class_sizes=leaf(sizes),
        column_weights=leaf(weights),
        lam_w=leaf(lam_w_arr),
        lam_h=leaf(lam_h_value),
        lam_b=leaf(lam_b_value),
        loss=loss,
        bias=bias,
        nonneg=bool(nonneg),
        dim=dim,
        widths=widths,
        weighted=per_class is not None,
    )


def _widths(dim: int, num_lam_w: int, widths, depth) -> tuple[int, ...]:
    """The hidden widths `(d_1..d_{L-1})`: given, or `depth - 1` times `d` (depth default: one per
    `lam_w` value, else 1)."""
    if widths is None:
        if depth is None:
            depth = num_lam_w if num_lam_w > 1 else 1
        depth = V.integer("depth", depth, 1, V.MAX_DEPTH)
        return (dim,) * (depth - 1)
    widths = V.integers("widths", widths, 1, V.MAX_EXTENT)
    if depth is not None and V.integer("depth", depth, 1, V.MAX_DEPTH) != len(widths) + 1:
        raise V.fail("widths", list(widths), f"expected depth - 1 = {depth - 1} hidden widths")
    if len(widths) + 1 > V.MAX_DEPTH:
        raise V.fail("widths", f"[{len(widths)} widths]", f"expected at most L - 1 = "
                     f"{V.MAX_DEPTH - 1} hidden widths")
    return widths


def _column_weights(sizes: np.ndarray, per_class: int | None, columns: int | None) -> np.ndarray:
    """`w_kj` (module docstring): weighted `n_k / m` for `m = per_class`; explicit 1 for the `n_k`
    sample columns of class `k` and 0 for its padding up to `columns` (default the largest `n_k`)."""
    if per_class is not None:
        if columns is not None:
            raise V.fail("columns", columns, "columns (explicit padding) cannot be combined with per_class")
        m = V.integer("per_class", per_class, 1, V.MAX_EXTENT)
        return np.repeat(sizes[:, None] / m, m, axis=1)
    if not np.all(sizes == np.round(sizes)):
        raise V.fail("class_sizes", sizes, "explicit mode needs integer class sizes "
                     "(use per_class for weighted mode)")
    largest = int(sizes.max())
    if largest > MAX_EXPLICIT_COLUMNS:
        raise V.fail("class_sizes", sizes, f"explicit mode allows n_k <= {MAX_EXPLICIT_COLUMNS:.0e} "
                     "columns (use per_class for weighted mode)")
    m = largest if columns is None else V.integer("columns", columns, largest, MAX_EXPLICIT_COLUMNS)
    return (np.arange(m)[None, :] < sizes[:, None]).astype(np.float64)


def _check_precision(sizes, weights, lam_w, lam_h, lam_b, dtype, per_class) -> None:
    """Every number of a problem survives the cast to `dtype` (no underflow to 0, no overflow to inf),
    and so does the sample count `N = Σ n_k` that the data term divides by."""
    V.representable("class_sizes", sizes, dtype)
    V.representable("class_sizes", sizes.sum(), dtype, shown=f"[...] (their sum N = {sizes.sum():.3g})")
    if per_class is not None:
        V.representable("class_sizes", weights, dtype,
                        shown=f"{sizes.tolist()} / per_class={per_class} (the column weights n_k/m)")
    V.representable("lam_w", lam_w, dtype, shown=lam_w.tolist() if lam_w.size > 1 else float(lam_w[0]))
    V.representable("lam_h", lam_h, dtype)
    if lam_b is not None:
        V.representable("lam_b", lam_b, dtype)


def stack_problems(problems: Sequence[Problem]) -> Problem:
    """Stack problems that share their static options and shapes into one batched `Problem`.

    **Raises:** `ValueError` if the problems differ in a static option or a shape (pad explicit problems
    to a common width with `make_problem(..., columns=...)`).
    """
    if len(problems) == 0:
        raise V.fail("problems", [], "expected at least one problem")
    first = problems[0]
    ref = jax.tree.structure(first), [x.shape for x in jax.tree.leaves(first)]
    for i, p in enumerate(problems):
        if (jax.tree.structure(p), [x.shape for x in jax.tree.leaves(p)]) != ref:
            raise V.fail(f"problems[{i}]", "...", "every problem in a batch must share loss, bias, nonneg, "
                         "dim, widths and array shapes (pad with columns=...)")
    # Stacked on the host, one transfer per leaf (a device-side stack of thousands of small arrays is slow).
    return jax.tree.map(lambda *xs: jnp.asarray(np.stack([np.asarray(x) for x in xs])), *problems)


def batch_size(problem: Problem) -> int:
    """Number of problems in a (possibly) batched `Problem`: 1 if unbatched."""
    return math.prod(problem.lam_h.shape)


def pad_columns(problem: Problem, columns: int) -> Problem:
    """An explicit (unbatched) problem widened to `columns` columns per class; the new columns weigh 0,
    so the objective and the minimisers do not change. Problems of different class sizes padded to one
    width share one compiled program (`stack_problems`)."""
    if problem.weighted:
        raise V.fail("columns", columns, "weighted problems (per_class) have a fixed width; pad explicit ones")
    current = problem.columns_per_class
    V.integer("columns", columns, current)
    weights = jnp.pad(problem.column_weights, ((0, 0), (0, columns - current)))
    return dataclasses.replace(problem, column_weights=weights)


def structure(problem: Problem) -> tuple:
    """What selects a compiled program: the static options and every leaf's shape and dtype (hashable).
    Problems with equal structures stack into one batch."""
    leaves, treedef = jax.tree.flatten(problem)
    return treedef, tuple((x.shape, str(x.dtype)) for x in leaves)


def reduce_problem(problem: Problem) -> Problem:
    """The exact weighted reduction of a (possibly batched) problem: one column per class weighing
    `n_k` (see the module docstring: both forms have the same minimum, and every minimiser of the full
    problem has the columns of class `k` equal to the reduced problem's column `k`)."""
    weights = problem.class_sizes[..., None]
    return dataclasses.replace(problem, column_weights=weights, weighted=True)
