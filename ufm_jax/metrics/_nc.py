"""Neural-collapse (NC) metrics of one UFM point, and its rotation-free gaps to a known global minimum.

Every function is a pure JAX function of an unbatched `(params, problem)` (jit- and vmap-able; batches go
through `jax.vmap`). Every sample statistic weighs column `(k, j)` by `w_kj = problem.column_weights[k, j]`,
so the explicit (`w ∈ {0, 1}`) and weighted (`w = n_k/m`) representations of the same point give the same
numbers, and padding columns (`w = 0`) are ignored whatever they hold.

Notation (that of `ufm_jax.Problem` and of the papers' metric sections):

- `h_kj = params.features[k, j] ∈ R^d`, `n_k = Σ_j w_kj`, `N = Σ_k n_k`;
- class means `h̄_k = Σ_j w_kj h_kj / n_k`, `H̄ = [h̄_1 ⋯ h̄_K] ∈ R^{d×K}`;
- global mean `h_G = (1/N) Σ_kj w_kj h_kj` (sample-weighted, as on Hong & Ling 2023 eq. 4.1, Liu 2024 §5,
  Dang et al. 2023 L83, Dang et al. 2024 L88);
- end-to-end classifier `P = W_L ⋯ W_1 ∈ R^{K×d}` (rows `p_k`);
- `‖·‖_F` the Frobenius norm; every "x/‖x‖" below reads 0 when `x = 0` (defined 0/0 := 0).
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float

from .._params import Params, end_to_end
from .._problem import Problem
from ..theory._solution import TheorySolution

# ---- helpers ------------------------------------------------------------------------------------------


def _fro(x: Array) -> Array:
    return jnp.sqrt(jnp.sum(x * x))


def _safe_div(num: Array, den: Array) -> Array:
    """`num / den`, with 0 where `den == 0` (the 0/0 := 0 convention; `num` is 0 there in every use)."""
    positive = den > 0
    return jnp.where(positive, num / jnp.where(positive, den, 1), 0)


def _unit(x: Array) -> Array:
    """`x / ‖x‖_F`, 0 for `x = 0`."""
    return _safe_div(x, _fro(x))


def _unit_columns(x: Array) -> Array:
    """Each column divided by its norm; a zero column stays zero."""
    norms = jnp.sqrt(jnp.sum(x * x, axis=0))
    return _safe_div(x, norms[None, :])


def _masked_features(params: Params, problem: Problem) -> Array:
    """Features with padding columns set to 0, so that `0 · (anything, even NaN)` cannot leak in."""
    keep = problem.column_weights[:, :, None] > 0
    return jnp.where(keep, params.features, 0)


def _ratio_or_inf(num: Array, den: Array) -> Array:
    """`num/den` with `0/0 := 0` and `x/0 := inf` for `x > 0` (for spreads relative to a mean size)."""
    positive = den > 0
    inf = jnp.asarray(jnp.inf, num.dtype)
    return jnp.where(positive, num / jnp.where(positive, den, 1), jnp.where(num > 0, inf, 0))


def _max_pairwise_distance(vectors: Float[Array, "n K"], select: Bool[Array, " K"]) -> Array:
    """`max ‖v_k − v_l‖` over the pairs of selected columns (0 if fewer than two are selected)."""
    diff = vectors[:, :, None] - vectors[:, None, :]
    dist = jnp.sqrt(jnp.sum(diff * diff, axis=0))
    pair = select[:, None] & select[None, :]
    return jnp.max(jnp.where(pair, dist, 0))


# ---- class means ----------------------------------------------------------------------------------------


@eqx.filter_jit
def class_means(params: Params, problem: Problem) -> tuple[Float[Array, "d K"], Float[Array, " d"]]:
    """Class-mean matrix and global mean of the features.

    `h̄_k = Σ_j w_kj h_kj / Σ_j w_kj` (column k of `H̄`) and `h_G = Σ_kj w_kj h_kj / Σ_kj w_kj`, the
    sample-weighted global mean `(1/N) Σ_k n_k h̄_k` of the papers (not the mean of the class means).

    **Arguments:**

    - `params`: an unbatched `Params` (features `(K, m, d)`).
    - `problem`: the matching unbatched `Problem` (its `column_weights` give `w_kj`).

    **Returns:** `(H̄, h_G)` of shapes `(d, K)` and `(d,)`.
    """
    return _class_means(_masked_features(params, problem), problem.column_weights)


def _class_means(feats: Array, w: Array) -> tuple[Array, Array]:
    sums = jnp.sum(w[:, :, None] * feats, axis=1)  # (K, d)
    sizes = jnp.sum(w, axis=1)  # (K,) = n_k
    means = sums / sizes[:, None]
    global_mean = jnp.sum(sums, axis=0) / jnp.sum(sizes)
    return means.T, global_mean


def _means(params: Params, problem: Problem) -> Array:
    return _class_means(_masked_features(params, problem), problem.column_weights)[0]


# ---- NC1 ------------------------------------------------------------------------------------------------


def _default_rcond(dtype) -> float:
    return 1e-6 if jnp.finfo(dtype).bits >= 64 else 1e-3


@eqx.filter_jit
def nc1(params: Params, problem: Problem, rcond: float | None = None) -> Float[Array, ""]:
    """NC1, within-class variability relative to between-class variability.

        NC1 = (1/K) tr(Σ_W Σ_B^†),
        Σ_W = (1/N) Σ_kj w_kj (h_kj − h̄_k)(h_kj − h̄_k)ᵀ,
        Σ_B = (1/K) Σ_k (h̄_k − h_G)(h̄_k − h_G)ᵀ.

    Implements eq. (4.1) of Hong & Ling (2023), identical to Liu (2024) §5, Dang et al. (2023) App. C.1.1
    and Dang et al. (2024) eq. 19: `Σ_B` is **class-unweighted** (`1/K`) but centred at the
    **sample-weighted** global mean `h_G`. (Hong & Ling's code instead weighs `Σ_B` by `n_k/N`; not used.)

    `Σ_B^†` is a pseudo-inverse with a relative cutoff: eigenvalues of `Σ_B` at most `rcond · λ_max(Σ_B)`
    are treated as 0. Default `rcond = 1e-6` in float64 (`1e-3` in float32), as Liu's notes advise: a
    cutoff near machine precision inverts round-off eigenvalues. It is computed from the thin SVD of
    `H̄ − h_G 1ᵀ` (no `d × d` matrix is formed).

    **Ill-conditioned under minority collapse** (and whenever fewer than `K − 1` mean directions survive):
    `Σ_B` is then rank-deficient and the result depends on `rcond` and on how well the point is
    converged. `within_class_spread` is the robust alternative. If `Σ_B = 0` (all class means equal) the
    pseudo-inverse is 0 and so is NC1, whatever `Σ_W` is.

    **Arguments:**

    - `params`, `problem`: an unbatched point and its problem.
    - `rcond`: relative eigenvalue cutoff for `Σ_B^†` (default above).

    **Returns:** NC1, a scalar (0 at exact within-class collapse).
    """
    feats = _masked_features(params, problem)
    means, global_mean = _class_means(feats, problem.column_weights)
    return _nc1(feats, problem.column_weights, means, global_mean, rcond)


def _nc1(feats: Array, w: Array, means: Array, global_mean: Array, rcond) -> Array:
    num_classes = means.shape[-1]
    rcond = _default_rcond(means.dtype) if rcond is None else rcond
    centred = means - global_mean[:, None]
    # Σ_B = U diag(s²/K) Uᵀ from the thin SVD of the centred means.
    u, s, _ = jnp.linalg.svd(centred, full_matrices=False)
    eig = s * s / num_classes
    keep = (eig > rcond * jnp.max(eig)) & (eig > 0)
    inv = jnp.where(keep, 1 / jnp.where(keep, eig, 1), 0)
    dev = feats - means.T[:, None, :]  # (K, m, d)
    proj = dev @ u  # (K, m, r): coordinates along the eigenvectors of Σ_B
    # uᵢᵀ Σ_W uᵢ for every eigenvector uᵢ.
    quad = jnp.sum(w[:, :, None] * proj * proj, axis=(0, 1)) / jnp.sum(w)
    return jnp.sum(inv * quad) / num_classes


@eqx.filter_jit
def within_class_spread(params: Params, problem: Problem) -> Float[Array, ""]:
    """Robust NC1: the largest distance of a sample from its class mean, relative to the largest mean.

        spread = max_{k, j: w_kj > 0} ‖h_kj − h̄_k‖ / max_k ‖h̄_k‖.

    Suggested in place of NC1 in the notes on Hong & Ling (2023), §3: it does not invert `Σ_B`. It is 0 at
    exact collapse; `0/0 := 0` (all features 0) and `x/0 := inf` for `x > 0` (features that scatter around
    means that are all 0).

    **Arguments:**

    - `params`, `problem`: an unbatched point and its problem.

    **Returns:** the spread, a scalar.
    """
    feats = _masked_features(params, problem)
    means = _class_means(feats, problem.column_weights)[0]
    return _spread(feats, problem.column_weights, means)


def _spread(feats: Array, w: Array, means: Array) -> Array:
    dev = feats - means.T[:, None, :]
    dist = jnp.sqrt(jnp.sum(dev * dev, axis=-1))
    num = jnp.max(jnp.where(w > 0, dist, 0))
    den = jnp.max(jnp.sqrt(jnp.sum(means * means, axis=0)))
    return _ratio_or_inf(num, den)


# ---- NC2 ------------------------------------------------------------------------------------------------


@eqx.filter_jit
def etf_distance(means: Float[Array, "d K"]) -> Float[Array, ""]:
    """Distance of the (centred) columns of `means` from a simplex equiangular tight frame.

        etf = ‖ M̃ᵀM̃/‖M̃ᵀM̃‖_F − (K I − J)/‖K I − J‖_F ‖_F,   M̃ = M − m̄ 1ᵀ,  m̄ = (1/K) Σ_k M_{:k},

    `J = 1 1ᵀ` (`‖K I − J‖_F = K √(K−1)`). The NC2 metric of Papyan et al. (2020) and Zhu et al. (2021),
    Dang et al. (2023) `NC2^ETF` (for features instead of classifier rows). The centre is the
    **class-unweighted** mean of the columns: then the distance is 0 exactly when the columns form a
    simplex ETF around some point, whatever the class sizes (with the sample-weighted `h_G` an exact ETF of
    imbalanced classes would not score 0). For balanced classes the two centres coincide. A zero `M̃`
    scores 1.

    **Arguments:**

    - `means`: a `(d, K)` matrix, e.g. `class_means(params, problem)[0]`, or `Pᵀ` for the classifier.

    **Returns:** the distance, a scalar in `[0, 2]`.
    """
    return _etf_distance(means)


def _etf_distance(means: Array) -> Array:
    num_classes = means.shape[-1]
    centred = means - jnp.mean(means, axis=1)[:, None]
    target = num_classes * jnp.eye(num_classes, dtype=means.dtype) - jnp.ones_like(
        jnp.eye(num_classes, dtype=means.dtype)
    )
    return _fro(_unit(centred.T @ centred) - _unit(target))


@eqx.filter_jit
def orthogonal_frame_distance(means: Float[Array, "d K"]) -> Float[Array, ""]:
    """Distance of the (uncentred) columns of `means` from an orthogonal frame (equal norms).

        of = ‖ MᵀM/‖MᵀM‖_F − I/√K ‖_F.

    Dang et al. (2023) `NC2^OF` (App. C.1.1), the geometry of bias-free deep-linear MSE with balanced data
    and of ReLU features (Dang et al. 2024 Fig. 3). Uncentred: an orthogonal frame is not centred. A zero
    `M` scores 1.

    **Arguments:**

    - `means`: a `(d, K)` matrix (class means, or `Pᵀ`).

    **Returns:** the distance, a scalar.
    """
    return _orthogonal_frame_distance(means)


def _orthogonal_frame_distance(means: Array) -> Array:
    num_classes = means.shape[-1]
    eye = jnp.eye(num_classes, dtype=means.dtype)
    return _fro(_unit(means.T @ means) - eye / jnp.sqrt(jnp.asarray(num_classes, means.dtype)))


def _offdiagonal_fraction(gram: Array) -> Array:
    """`‖G − diag(G)‖_F / ‖G‖_F` (0 for `G = 0`)."""
    off = gram * (1 - jnp.eye(gram.shape[-1], dtype=gram.dtype))
    return _safe_div(_fro(off), _fro(gram))


@eqx.filter_jit
def general_orthogonal_frame_distance(params: Params, problem: Problem) -> Float[Array, ""]:
    """Distance of the class means from a general orthogonal frame (mutually orthogonal, any lengths).

        gof = ‖ G/‖G‖_F − Diag(G)/‖G‖_F ‖_F = ‖offdiag(G)‖_F / ‖G‖_F,   G = H̄ᵀH̄.

    A general orthogonal frame (GOF, Dang et al. 2023 Def. 2.1) is `H̄ = Q diag(a)` with `QᵀQ = I`, i.e.
    `G` diagonal; the geometry of bias-free imbalanced MSE (Thm 4.1, 4.4). Since the nearest diagonal
    matrix to `G/‖G‖_F` is its own diagonal, this is the distance to the set of GOF Grams, and needs no
    theory. The paper's `NC2^GOF` (App. C.2.1 L1309) instead compares `PPᵀ` with the theorem's specific
    `diag{c s_k^{2M}}`, which needs the analytic solution: that comparison is `compare_with_theory`.
    `gof = 0` also for collapsed (zero) classes. A zero `H̄` scores 0.

    **Arguments:**

    - `params`, `problem`: an unbatched point and its problem.

    **Returns:** the distance, a scalar in `[0, 1]`.
    """
    means = _means(params, problem)
    return _offdiagonal_fraction(means.T @ means)


# ---- NC3 ------------------------------------------------------------------------------------------------


@eqx.filter_jit
def nc3(params: Params, problem: Problem, centred: bool = False) -> Float[Array, ""]:
    """NC3, self-duality: alignment of the classifier rows with the class means.

        nc3 = ‖ Pᵀ/‖P‖_F − M/‖M‖_F ‖_F,   P = W_L ⋯ W_1,
        M = H̄ (default, uncentred)   or   M = H̄ − h_G 1ᵀ (`centred=True`).

    The centred form is Zhu et al. (2021) NC3 as Dang et al. (2023)'s code computes it (centred at the
    sample-weighted `h_G`); the uncentred form is Dang et al. (2023) as written (the natural one for
    bias-free models, whose means are an (general) orthogonal frame). With imbalance the optimal `P` is
    not a common multiple of `H̄ᵀ` (its rows scale per class), so neither form is 0 at the global minimum;
    see `nc3_directional` for that.

    **Arguments:**

    - `params`, `problem`: an unbatched point and its problem.
    - `centred`: a Python bool (static), see above.

    **Returns:** the distance, a scalar in `[0, 2]`.
    """
    means, global_mean = class_means(params, problem)
    if centred:
        means = means - global_mean[:, None]
    return _nc3(end_to_end(params), means)


def _nc3(product: Array, means: Array) -> Array:
    return _fro(_unit(product.T) - _unit(means))


@eqx.filter_jit
def nc3_directional(params: Params, problem: Problem) -> Float[Array, ""]:
    """NC3 per class direction: `‖ [p_k/‖p_k‖]_k − [h̄_k/‖h̄_k‖]_k ‖_F` (columns; 0/0 := 0).

    Liu (2024) App. C's bias-free NC3 (rows of `P` against normalised class means). It is 0 when each
    classifier row is a positive multiple of its class mean, which holds at the bias-free imbalanced MSE
    minimum (Dang et al. 2023 Thm 4.1/4.4), where the Frobenius-normalised `nc3` is not 0. A collapsed
    class (`h̄_k = 0`, `p_k = 0`) contributes 0; a nearly collapsed one is numerically unstable.

    **Arguments:**

    - `params`, `problem`: an unbatched point and its problem.

    **Returns:** the distance, a scalar in `[0, 2√K]`.
    """
    return _nc3_directional(end_to_end(params), _means(params, problem))


def _nc3_directional(product: Array, means: Array) -> Array:
    return _fro(_unit_columns(product.T) - _unit_columns(means))


# ---- spectra, cosines, minority collapse ------------------------------------------------------------------


@eqx.filter_jit
def singular_values(params: Params, problem: Problem) -> dict[str, Float[Array, " _"]]:
    """Singular values (descending) of every layer, of the class means and of the end-to-end product.

    **Arguments:**

    - `params`, `problem`: an unbatched point and its problem.

    **Returns:** `{"weight_singular_values_1": σ(W_1), ..., "weight_singular_values_L": σ(W_L),
    "mean_singular_values": σ(H̄), "product_singular_values": σ(P)}` (the names of the `TheorySolution`
    fields they are compared with); `W_l` has `min(d_l, d_{l-1})` values, `H̄` and `P` have `min(d, K)`.
    """
    return _singular_values(params.weights, _means(params, problem), end_to_end(params))


def _singular_values(weights, means: Array, product: Array) -> dict[str, Array]:
    out = {f"weight_singular_values_{i + 1}": jnp.linalg.svd(w, compute_uv=False)
           for i, w in enumerate(weights)}
    out["mean_singular_values"] = jnp.linalg.svd(means, compute_uv=False)
    out["product_singular_values"] = jnp.linalg.svd(product, compute_uv=False)
    return out


@eqx.filter_jit
def mean_cosines(params: Params, problem: Problem) -> Float[Array, "K K"]:
    """Cosines between class means, `h̄_kᵀh̄_l / (‖h̄_k‖ ‖h̄_l‖)`; row and column `k` are 0 if `h̄_k = 0`.

    (Exactly 0 only: a numerically collapsed mean of norm 1e-12 still gets cosines.)

    **Arguments:**

    - `params`, `problem`: an unbatched point and its problem.

    **Returns:** a `(K, K)` matrix (diagonal 1 for non-zero means).
    """
    return _cosines(_means(params, problem))


def _cosines(means: Array) -> Array:
    unit = _unit_columns(means)
    return unit.T @ unit


def _minority(sizes: Float[Array, " K"]) -> tuple[Array, Array]:
    """The minority classes (those of the smallest size) and whether the metric is defined: at least two
    of them, and not every class (balanced classes have no minority)."""
    select = sizes == jnp.min(sizes)
    count = jnp.sum(select)
    return select, (count >= 2) & (count < sizes.shape[-1])


def _minority_spread(vectors: Float[Array, "n K"], sizes: Float[Array, " K"]) -> Array:
    """Max distance between the columns of the smallest classes over the largest column norm."""
    select, defined = _minority(sizes)
    num = _max_pairwise_distance(vectors, select)
    den = jnp.max(jnp.sqrt(jnp.sum(vectors * vectors, axis=0)))
    return jnp.where(defined, _safe_div(num, den), jnp.nan)


@eqx.filter_jit
def minority_spread(params: Params, problem: Problem) -> Float[Array, ""]:
    """Spread of the minority classes' means: 0 under minority collapse (Fang et al. 2021).

        spread = max_{k, l ∈ A} ‖h̄_k − h̄_l‖ / max_k ‖h̄_k‖,   A = {k : n_k = min_l n_l}.

    Hong & Ling (2023) Thm 3.1: in the minority-collapse regime the minority means coincide (and so do
    their logits `P h̄_k` and classifier rows; see `minority_classifier_spread`). Normalised by the largest
    mean of any class, so a collapse of the minority means *to* 0 also scores 0. `0/0 := 0`.

    **Returns NaN when only one class has the smallest size** (no pair: the metric is undefined, and NaN
    keeps a sweep from reading it as collapse), **and for balanced classes** (no class is a minority).

    **Arguments:**

    - `params`, `problem`: an unbatched point and its problem.

    **Returns:** the spread, a scalar (or NaN).
    """
    return _minority_spread(_means(params, problem), problem.class_sizes)


@eqx.filter_jit
def minority_classifier_spread(params: Params, problem: Problem) -> Float[Array, ""]:
    """Spread of the minority classes' classifier rows (Fang et al. 2021's minority collapse).

        spread = max_{k, l ∈ A} ‖p_k − p_l‖ / max_k ‖p_k‖,   P = W_L ⋯ W_1,  A as in `minority_spread`.

    NaN when only one class has the smallest size or all sizes are equal; `0/0 := 0`.

    **Arguments:**

    - `params`, `problem`: an unbatched point and its problem.

    **Returns:** the spread, a scalar (or NaN).
    """
    return _minority_spread(end_to_end(params).T, problem.class_sizes)


def _minority_logit_spread(logits: Float[Array, "K K"], sizes: Float[Array, " K"]) -> Array:
    select, defined = _minority(sizes)
    return jnp.where(defined, _max_pairwise_distance(logits, select), jnp.nan)


@eqx.filter_jit
def minority_logit_spread(params: Params, problem: Problem) -> Float[Array, ""]:
    """Absolute spread of the minority classes' mean logits, `max_{k, l ∈ A} ‖P h̄_k − P h̄_l‖`.

    Logits are dimensionless, so this needs no normalisation: it is 0 under minority collapse, in the
    minority-zero regime and under complete collapse, and O(1) where the minority classes are separated
    (Hong & Ling 2023 measure minority collapse on the columns of `Z̄ = W H̄`, note §5 item 5). Prefer it to
    `minority_spread` for phase diagrams: that ratio is 0/0 once every mean vanishes. `A` as in
    `minority_spread`; NaN when only one class has the smallest size or all sizes are equal.

    **Arguments:**

    - `params`, `problem`: an unbatched point and its problem.

    **Returns:** the spread, a scalar (or NaN).
    """
    return _minority_logit_spread(end_to_end(params) @ _means(params, problem), problem.class_sizes)


# ---- all at once ----------------------------------------------------------------------------------------


@eqx.filter_jit
def nc_metrics(params: Params, problem: Problem, rcond: float | None = None) -> dict[str, Array]:
    """Every NC metric of one point, in one dict with stable keys (a sweep stores them by name).

    Scalars:

    - `nc1` (`rcond` as in `nc1`), `within_class_spread`;
    - `etf_distance`, `orthogonal_frame_distance`, `general_orthogonal_frame_distance` of the class
      means, and `etf_distance_classifier`, `orthogonal_frame_distance_classifier`,
      `general_orthogonal_frame_distance_classifier` of the classifier rows (the same functions on `Pᵀ`:
      Dang et al. 2023's `NC2` is on `PPᵀ`);
    - `nc3` (uncentred), `nc3_centred`, `nc3_directional`;
    - `minority_spread`, `minority_classifier_spread`, `minority_logit_spread` (NaN when one class alone
      is the smallest, or all sizes are equal).

    Arrays: `mean_cosines` `(K, K)`; `weight_singular_values_1`..`weight_singular_values_L`,
    `mean_singular_values`, `product_singular_values` (descending; the names of the `TheorySolution`
    fields).

    **Arguments:**

    - `params`, `problem`: an unbatched point and its problem (`jax.vmap` for batches).
    - `rcond`: passed to `nc1`.

    **Returns:** the dict above.
    """
    # Shared quantities once (the public functions each recompute them).
    w = problem.column_weights
    feats = _masked_features(params, problem)
    means, global_mean = _class_means(feats, w)
    product = end_to_end(params)
    classifier = product.T
    out = {
        "nc1": _nc1(feats, w, means, global_mean, rcond),
        "within_class_spread": _spread(feats, w, means),
        "etf_distance": _etf_distance(means),
        "orthogonal_frame_distance": _orthogonal_frame_distance(means),
        "general_orthogonal_frame_distance": _offdiagonal_fraction(means.T @ means),
        "etf_distance_classifier": _etf_distance(classifier),
        "orthogonal_frame_distance_classifier": _orthogonal_frame_distance(classifier),
        "general_orthogonal_frame_distance_classifier": _offdiagonal_fraction(
            classifier.T @ classifier
        ),
        "nc3": _nc3(product, means),
        "nc3_centred": _nc3(product, means - global_mean[:, None]),
        "nc3_directional": _nc3_directional(product, means),
        "minority_spread": _minority_spread(means, problem.class_sizes),
        "minority_classifier_spread": _minority_spread(classifier, problem.class_sizes),
        "minority_logit_spread": _minority_logit_spread(product @ means, problem.class_sizes),
        "mean_cosines": _cosines(means),
    }
    out.update(_singular_values(params.weights, means, product))
    return out


# ---- comparison with the analytic minimum ------------------------------------------------------------------


def _relative_gap(value: Array, reference: Array) -> Array:
    """`max |value − ref| / max(1, max |ref|)`; vectors of different lengths are zero-padded."""
    ref = reference
    if ref.ndim == 1 and ref.shape != value.shape:
        length = max(ref.shape[0], value.shape[0])
        ref = jnp.pad(ref, (0, length - ref.shape[0]))
        value = jnp.pad(value, (0, length - value.shape[0]))
    scale = jnp.maximum(1, jnp.max(jnp.abs(ref), initial=0))
    return jnp.max(jnp.abs(value - ref), initial=0) / scale


def compare_with_theory(params: Params, problem: Problem, theory: TheorySolution) -> dict[str, Array]:
    """Rotation-free gaps between a numerical point and the analytic global minimum.

    Each gap is `max |x − x*| / max(1, max |x*|)` (max-abs entry error, relative to the theory quantity's
    largest entry when that exceeds 1):

    - `mean_gram`: `x = H̄ᵀH̄` vs `theory.mean_gram`;
    - `mean_logits`: `x = P H̄` (bias-free) vs `theory.mean_logits`;
    - `bias`: `x = b` vs `theory.bias` (for a bias-free problem `b ≡ 0`, so this is 0 against a zero
      theory bias: the key is kept so that every problem gives the same keys). CE with a free bias is
      unchanged by `b → b + c1`, so there both biases are compared after removing their means;
    - `weight_singular_values_l` for each layer, and `weight_singular_values`, their maximum;
    - `product_singular_values` (of `P`), `mean_singular_values` (of `H̄`);
    - `max`: the largest of the above.

    These are invariant under the model's symmetries: the rotations of the hidden spaces (Grams, products
    and singular values do not see them) and, for CE with a free bias, the shift of the bias. Objective
    gaps are not computed here (see `ufm_jax.objective`). The theory arrays are passed to one
    compiled function as array arguments (a new theory of the same shapes does not recompile); inside
    `jit`/`vmap` close over `theory` (it is not a pytree); a batch with one theory per point is a loop.

    **Arguments:**

    - `params`, `problem`: an unbatched point and its problem.
    - `theory`: a `TheorySolution` for this problem.

    **Returns:** a dict of scalar arrays (`float(...)` each for plain floats).

    **Raises:** `ValueError` if `theory` has a different number of layers than `params`.
    """
    if len(theory.weight_singular_values) != len(params.weights):
        raise ValueError(f"theory={type(theory).__name__}(...) is not allowed: it has "
                         f"{len(theory.weight_singular_values)} layers, the point has "
                         f"{len(params.weights)}.")
    dtype = params.features.dtype
    reference = {
        "mean_gram": jnp.asarray(theory.mean_gram, dtype),
        "mean_logits": jnp.asarray(theory.mean_logits, dtype),
        "bias": jnp.asarray(theory.bias, dtype),
        "weight_singular_values": tuple(jnp.asarray(s, dtype) for s in theory.weight_singular_values),
        "product_singular_values": jnp.asarray(theory.product_singular_values, dtype),
        "mean_singular_values": jnp.asarray(theory.mean_singular_values, dtype),
    }
    return _compare(params, problem, reference)


def _bias_modulo_shift(bias: Array, problem: Problem) -> Array:
    """The bias modulo the model's symmetries: centred for CE with a free bias (CE does not change when
    the same constant is added to every logit, and a free bias is not penalised), else itself."""
    if problem.loss == "ce" and problem.bias == "free":
        return bias - jnp.mean(bias)
    return bias


@eqx.filter_jit
def _compare(params: Params, problem: Problem, theory: dict) -> dict[str, Array]:
    means = _means(params, problem)
    product = end_to_end(params)
    svals = _singular_values(params.weights, means, product)
    out = {
        "mean_gram": _relative_gap(means.T @ means, theory["mean_gram"]),
        "mean_logits": _relative_gap(product @ means, theory["mean_logits"]),
        "bias": _relative_gap(_bias_modulo_shift(params.bias, problem),
                              _bias_modulo_shift(theory["bias"], problem)),
    }
    layer_gaps = []
    for i, ref in enumerate(theory["weight_singular_values"]):
        gap = _relative_gap(svals[f"weight_singular_values_{i + 1}"], ref)
        out[f"weight_singular_values_{i + 1}"] = gap
        layer_gaps.append(gap)
    out["weight_singular_values"] = jnp.max(jnp.stack(layer_gaps))
    out["product_singular_values"] = _relative_gap(svals["product_singular_values"],
                                                   theory["product_singular_values"])
    out["mean_singular_values"] = _relative_gap(svals["mean_singular_values"], theory["mean_singular_values"])
    out["max"] = jnp.max(jnp.stack(list(out.values())))
    return out
