# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Hong & Ling 2023: minority collapse over λ_Z (Fig. 5)
#
# Hong & Ling, *Neural Collapse for Unconstrained Feature Model under Cross-entropy Loss with
# Imbalanced Data* (2023), solve the cross-entropy UFM with two clusters of classes: `k_A` majority
# classes of `n_A` samples and `k_B` minority classes of `n_B`. Their Fig. 5 shows the mean prediction
# matrix `Z̄ = W H̄` (column `k`: the mean logits of class `k`, without the bias) for
# `k_A = k_B = 5`, `n_A = 500`, `n_B = 100`, `λ_b = 0.01`, over ten values of `λ_Z = √(λ_W λ_H)`.
# Thm 3.2 predicts four regimes (with the thresholds corrected as in erratum E-HL3):
#
# - (a) `λ_Z < √n_B/N`: every class separated;
# - (b) the minority columns of `Z̄` coincide (**minority collapse**, from `√n_B/N`);
# - (c) the minority columns are zero, from a switch `λ*` that depends on `λ_b`;
# - (d) `Z̄ = 0` (**complete collapse**), from `√n_A/N`.
#
# The paper's figure comes from a ResNet18 trained on CIFAR10; here we solve the UFM itself on the
# paper's λ_Z grid, certify every point against the closed form, and draw the theory over the
# measurement.

# %%
import jax

jax.config.update("jax_enable_x64", True)  # float64: a certificate needs it

import matplotlib.pyplot as plt
import numpy as np

import ufm_jax as u

# %% [markdown]
# ## The model
#
# `min (1/N) Σ_i CE(W h_i + b, y_i) + (λ_W/2)‖W‖² + (λ_H/2)‖H‖² + (λ_b/2)‖b‖²` with `λ_W = λ_H = λ_Z`,
# `d = 10`. `per_class=1` is the weighted representation: one column per class weighing `n_k`, exact
# for this model (see [the model](../model.md)) and as cheap as it gets.

# %%
k_a, n_a, k_b, n_b = 5, 500, 5, 100
sizes = [n_a] * k_a + [n_b] * k_b
N = k_a * n_a + k_b * n_b


def problem(lam_z):
    return u.ce(sizes, 10, lam_w=lam_z, lam_h=lam_z, lam_b=0.01, per_class=1)


# %% [markdown]
# ## The theory's prediction
#
# `u.phase_boundaries` gives the thresholds of this problem's family in `λ_Z` units:

# %%
boundaries = u.phase_boundaries(problem(1e-3))
for name, value in boundaries.items():
    print(f"{name:>18}: λ_Z = {value:.7f}")
print(f"√n_B/N = {np.sqrt(n_b) / N:.7f}, √n_A/N = {np.sqrt(n_a) / N:.7f}")

# %% [markdown]
# ## One batch, one compiled program
#
# The paper's ten values of λ_Z (for the heat maps) and a fine grid (for the curves) are stacked into
# one batch: λ's are array leaves, so the whole batch is one compiled program. The cross-entropy UFM
# with `d > K` has no spurious local minima (Thm 3.5), so one start per problem is enough.

# %%
paper_grid = [
    0.0027,
    0.0030,
    0.0033,
    0.0039,
    0.0045,
    0.0051,
    0.0057,
    0.0063,
    0.0069,
    0.0075,
]
fine_grid = list(np.geomspace(2e-3, 1.1e-2, 40))
lams = paper_grid + fine_grid
problems = [problem(lam) for lam in lams]
solution = u.solve(u.stack_problems(problems), seeds=1)
print(
    f"{len(lams)} problems: compile {solution.timing['compile_s']:.1f} s, "
    f"solve {solution.timing['solve_s']:.2f} s"
)

# %% [markdown]
# ## Every point certified
#
# `u.check` compares each solution with the closed form of Thm 3.2: converged, objective within 1e-8
# (relative), rotation-free geometry within 1e-4.

# %%
checks = [u.check(solution[i]) for i in range(len(lams))]
print(f"certified: {sum(c.certified for c in checks)} of {len(checks)}")
print(
    f"largest |objective gap| {max(abs(c.gap) for c in checks):.1e}, "
    f"largest geometry gap {max(c.geometry_gap for c in checks):.1e}"
)
assert all(c.certified for c in checks), [
    c.reason for c in checks if not c.certified
]
for lam, c in zip(paper_grid, checks):
    print(
        f"λ_Z = {lam:.4f}  {c.regime:>18}  gap {c.gap:+.1e}  certified {c.certified}"
    )


# %% [markdown]
# ## Fig. 5: the mean prediction matrix over λ_Z
#
# `Z̄ = W H̄` from each solution (rows: logits, columns: classes); the dashed lines separate the
# majority cluster A from the minority cluster B, as in the paper.


# %%
def mean_logits(i):
    means, _ = u.metrics.class_means(solution[i].params, problems[i])
    return np.asarray(u.end_to_end(solution[i].params) @ means)


fig, axes = plt.subplots(2, 5, figsize=(13, 5.6), layout="constrained")
for i, ax in enumerate(axes.flat):
    z = mean_logits(i)
    scale = max(np.abs(z).max(), 1e-12)
    ax.imshow(z, cmap="RdBu_r", vmin=-scale, vmax=scale)
    ax.axhline(k_a - 0.5, color="k", ls="--", lw=0.8)
    ax.axvline(k_a - 0.5, color="k", ls="--", lw=0.8)
    ax.set_title(f"λ_Z = {paper_grid[i]}\n{checks[i].regime}", fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
fig.suptitle("Z̄ = W H̄ of the certified UFM minimisers (colour scale per panel)")
plt.show()

# %% [markdown]
# In the paper's network the 8th panel (λ_Z = 0.0063, case (c)) still shows a lower-left block of
# order 1e-3; the UFM minimiser has it exactly zero:

# %%
z = mean_logits(paper_grid.index(0.0063))
print(
    f"largest |entry| of the majority block {np.abs(z[:k_a, :k_a]).max():.3f}, "
    f"of the minority columns {np.abs(z[:, k_a:]).max():.1e}"
)

# %% [markdown]
# ## Theory over measurement
#
# Two numbers per point: the spread of the minority columns of `Z̄` (zero from minority collapse on)
# and the largest entry of `Z̄` (zero under complete collapse). Lines: the same numbers from the
# analytic minimiser on a finer grid; markers: the solver's certified minimisers; dashed: the
# boundaries from `u.phase_boundaries`.


# %%
def spread_and_size(z):
    minority = z[:, k_a:]
    spread = np.max(
        np.linalg.norm(minority[:, :, None] - minority[:, None, :], axis=0)
    )
    return spread, np.abs(z).max()


theory_grid = np.geomspace(2e-3, 1.1e-2, 300)
theory = np.array(
    [
        spread_and_size(u.analytic_solution(problem(lam)).mean_logits)
        for lam in theory_grid
    ]
)
order = np.argsort(lams)
measured = np.array([spread_and_size(mean_logits(i)) for i in order])
lam_sorted = np.asarray(lams)[order]

fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), layout="constrained")
for ax, j, label in zip(
    axes, (0, 1), ("spread of the minority columns of Z̄", "max |Z̄|")
):
    ax.plot(
        theory_grid, theory[:, j], "-", color="0.6", lw=3, label="theory (Thm 3.2)"
    )
    ax.plot(
        lam_sorted, measured[:, j], "o", ms=4, color="C0", label="solver, certified"
    )
    for (name, value), colour in zip(boundaries.items(), ("C1", "C2", "C3")):
        ax.axvline(value, ls="--", color=colour, lw=1, label=name)
    ax.set_xscale("log")
    ax.set_xlabel("λ_Z")
    ax.set_title(label)
axes[0].legend(fontsize=8)
plt.show()

# %% [markdown]
# ## Measured thresholds
#
# Where the certified minimisers change regime on the grid, beside the theory:

# %%
spread, size = measured[:, 0], measured[:, 1]
collapsed = lam_sorted[spread < 1e-6]
zero = lam_sorted[size < 1e-6]
print(
    f"minority collapse: first collapsed grid point {collapsed.min():.5f}, "
    f"last separated {lam_sorted[spread >= 1e-6].max():.5f}; "
    f"theory √n_B/N = {boundaries['minority collapse']:.5f}"
)
print(
    f"complete collapse: first zero grid point {zero.min():.5f}, "
    f"last non-zero {lam_sorted[size >= 1e-6].max():.5f}; "
    f"theory √n_A/N = {boundaries['complete collapse']:.5f}"
)
assert lam_sorted[spread >= 1e-6].max() < boundaries["minority collapse"] <= collapsed.min()
assert lam_sorted[size >= 1e-6].max() < boundaries["complete collapse"] <= zero.min()

# %% [markdown]
# Both thresholds fall between the neighbouring grid points on either side, where Thm 3.2 puts them.
# The paper's network matched the minority-collapse threshold but collapsed completely *before*
# `√n_A/N` (at some λ_Z ≤ 0.0069); the UFM does not: its complete collapse sits exactly at `√n_A/N`
# (the paper prints 0.075 for 0.0075, erratum E-HL3).
