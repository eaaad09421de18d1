"""How accurate is a numerical minimiser? The tolerances of the tests against an independent optimiser.

scipy's L-BFGS-B does not stop at its `gtol` here: it stops when the decrease of `f` stalls at round-off
(`|Δf| ≲ eps·|f|`), typically at `‖∇f‖ ≈ 1e-9`. The objective is then right to round-off (`f − f* ≈
½ gᵀH⁺g`, second order), but the point is only within `d = ‖H⁺∇f‖` of the minimiser, `H` the Hessian
(`d ≈ √(2 eps |f| / α)` for curvature `α`): first-order quantities — `W H̄`, `H̄ᵀH̄`, singular values,
biases — carry that error, times their own Lipschitz constant. A fixed tolerance on them is a bet on the
machine's round-off; this module measures it instead.

`certify(grad, x)` takes one Newton step `s = H⁺∇f(x)` with a central-difference Hessian of the analytic
gradient. `x − s` is the minimiser to first order, so `|q(x) − q(x − s)|` is the first-order error of any
smooth invariant `q(x)`, with its Lipschitz constant included. Symmetries of the factorisation (rotations
of hidden spaces, `W → WQ`, `H → QᵀH`) make `H` singular; `f` is constant along them, so `∇f` has no
component there and those directions are left out of `H⁺` (eigenvalues below `null_rtol·λ_max`). A clean
gap between those and the true curvatures is required, and no negative curvature (a saddle fails here).
"""

from __future__ import annotations

import dataclasses

import numpy as np

# First-order error × this: covers the neglected O(d²) terms and the finite-difference Hessian's relative
# error (~1e-6 with the steps below), with a wide margin.
SAFETY = 10.0


@dataclasses.dataclass(frozen=True)
class Certificate:
    """A numerical minimiser `x` with its Newton step `s` (`x − s`: the minimiser to first order).

    `gradient` is `‖∇f(x)‖₂` (of the free coordinates), `curvature` the smallest eigenvalue of the Hessian
    kept off the symmetry null space (`> 0`), `null_dim` the number of null directions left out.
    """

    x: np.ndarray
    step: np.ndarray
    gradient: float
    curvature: float
    null_dim: int

    @property
    def distance(self) -> float:
        """`‖H⁺∇f(x)‖₂`: the first-order distance of `x` from the minimiser (modulo symmetries)."""
        return float(np.linalg.norm(self.step))

    def error(self, quantity) -> float:
        """`max |q(x) − q(x − s)|`: the first-order error of `q(x)` (any array-valued function of `x`)."""
        return float(np.max(np.abs(np.asarray(quantity(self.x)) - np.asarray(quantity(self.x - self.step)))))

    def tolerance(self, quantity, floor: float = 1e-12) -> float:
        """`SAFETY × error(q)` plus a round-off floor `floor · max(1, max|q(x)|)` (the theory's own
        round-off and that of evaluating `q`)."""
        scale = max(1.0, float(np.max(np.abs(np.asarray(quantity(self.x))))))
        return SAFETY * self.error(quantity) + floor * scale


def hessian(grad, x: np.ndarray, free: np.ndarray | None = None) -> np.ndarray:
    """Central-difference Hessian of `grad` at `x` in the coordinates `free` (a mask; all by default).

    Steps `h_i = 1e-5 max(1, |x_i|)`: truncation `O(h²)` and round-off `O(eps/h)` both ~1e-11, far below
    the curvatures (≳ 1e-4) of the problems tested.
    """
    idx = np.flatnonzero(np.ones(x.size, bool) if free is None else free)
    H = np.empty((idx.size, idx.size))
    for j, i in enumerate(idx):
        h = 1e-5 * max(1.0, abs(x[i]))
        e = np.zeros_like(x)
        e[i] = h
        H[:, j] = (np.asarray(grad(x + e))[idx] - np.asarray(grad(x - e))[idx]) / (2 * h)
    return 0.5 * (H + H.T)


def certify(grad, x, *, free=None, bound=0.0, null_rtol: float = 1e-7, max_distance: float = 1e-5
            ) -> Certificate:
    """The Newton step at the numerical minimiser `x` of a smooth `f` with gradient `grad`.

    **Arguments:**

    - `grad`: `x ↦ ∇f(x)` (an array of `x`'s size).
    - `x`: the numerical minimiser.
    - `free`: mask of the coordinates that move (for bound constraints: those off the active bound). The
      others belong at `bound` (e.g. `H = 0`): the Newton step moves them there, so a coordinate a run left
      at 1e-9 above its bound counts with its 1e-9 of error.
    - `bound`: the value of the coordinates that are not free.
    - `null_rtol`: Hessian eigenvalues `|λ| ≤ null_rtol · λ_max` are symmetry directions.
    - `max_distance`: the run must have converged this far (a stalled run fails here, rather than
      widening the tolerances derived from it).

    **Returns:** a `Certificate`. Asserts a gap of at least 100× between the symmetry null space and the
    kept curvatures, no negative curvature, and `distance <= max_distance`.
    """
    x = np.asarray(x, dtype=np.float64)
    free = np.ones(x.size, bool) if free is None else np.asarray(free, bool)
    g = np.asarray(grad(x), dtype=np.float64)[free]
    w, V = np.linalg.eigh(hessian(grad, x, free))
    cut = null_rtol * w[-1]
    keep = w > cut
    assert w[0] >= -cut, f"negative curvature {w[0]:.3g} (λ_max {w[-1]:.3g}): not a local minimum"
    gray = (np.abs(w) > cut) & (np.abs(w) < 100 * cut)
    assert not np.any(gray), f"no clean gap between symmetry directions and curvatures: {w[gray]}"
    step = np.where(free, 0.0, x - bound)
    step[free] = V[:, keep] @ ((V[:, keep].T @ g) / w[keep])
    cert = Certificate(x=x, step=step, gradient=float(np.linalg.norm(g)), curvature=float(w[keep][0]),
                       null_dim=int(np.sum(~keep)))
    assert cert.distance <= max_distance, f"the numerical run has not converged: distance {cert.distance:.3g}"
    return cert
