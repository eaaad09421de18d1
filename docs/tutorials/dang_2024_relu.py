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
# # Dang et al. 2024: ReLU features are orthogonal, and small classes die (Fig. 3)
#
# Dang, Tran, Nguyen, Ho, *Neural Collapse for Cross-entropy Class-Imbalanced Learning with
# Unconstrained ReLU Feature Model* (2024), solve the cross-entropy UFM with non-negative features
# `H >= 0` and no bias (Thm 1; corrected as in errata E-RL1–E-RL8: the paper writes `λ_W λ_H` where
# `√(λ_W λ_H)` belongs). At every global minimiser the class means are **orthogonal** (disjoint supports
# in the non-negative orthant), with norms set by the class sizes, and a class with
# `n_k <= N² K/(K−1) λ_W λ_H` has a **zero** mean: it is dead (Cor. 4).
#
# The paper's Fig. 3 shows the normalised `H̄ᵀH̄` of an MLP trained on an imbalanced CIFAR10 subset,
# `n = (100, 100, 200, 200, 300, 300, 400, 400, 500, 500)` with `λ_W = 1e-4`, `λ_H = 1e-5`: a diagonal
# matrix. We reproduce it with the UFM itself, then follow Cor. 4 as the minority shrinks.

# %%
import jax

jax.config.update("jax_enable_x64", True)  # float64: a certificate needs it

import matplotlib.pyplot as plt
import numpy as np
import scipy.optimize

import ufm_jax as u

# %% [markdown]
# ## Fig. 3: the feature Gram matrix
#
# The `relu_ce` preset: `min (1/N) Σ_i CE(W h_i, y_i) + (λ_W/2)‖W‖² + (λ_H/2)‖H‖²` subject to `H >= 0`,
# solved by spectral projected gradient. Dead-class traps are local minima of this model; they are
# rare with `d` several times `K` (here `d = 4K = 40`) and a few random starts.

# %%
sizes = [100, 100, 200, 200, 300, 300, 400, 400, 500, 500]
fig3 = u.relu_ce(sizes, 40, lam_w=1e-4, lam_h=1e-5, per_class=1)
solution = u.solve(fig3, seeds=4)
check = u.check(solution)
print(
    f"compile {solution.timing['compile_s']:.1f} s, solve {solution.timing['solve_s']:.2f} s; "
    f"regime {check.regime}, gap {check.gap:+.1e}, geometry gap {check.geometry_gap:.1e}, "
    f"certified {check.certified}"
)
assert check.certified, check.reason

# %% [markdown]
# The measured `H̄ᵀH̄` (normalised by its largest entry, as in the paper) beside the theory's:

# %%
means, _ = u.metrics.class_means(solution.params, fig3)
gram = np.asarray(means.T @ means)
theory = u.analytic_solution(fig3)

fig, axes = plt.subplots(1, 2, figsize=(9, 4), layout="constrained")
for ax, matrix, title in zip(
    axes, (gram, theory.mean_gram), ("solver (certified)", "theory (Thm 1)")
):
    image = ax.imshow(matrix / np.abs(matrix).max(), cmap="viridis", vmin=0, vmax=1)
    ax.set_title(f"H̄ᵀH̄ / max, {title}")
    ax.set_xticks(range(len(sizes)), sizes, rotation=90, fontsize=7)
    ax.set_yticks(range(len(sizes)), sizes, fontsize=7)
fig.colorbar(image, ax=axes, shrink=0.8)
plt.show()

off_diagonal = gram - np.diag(np.diag(gram))
print(
    f"largest off-diagonal |h̄_kᵀh̄_l| / max ‖h̄_k‖²: {np.abs(off_diagonal).max() / gram.max():.1e}"
)
print("‖h̄_k‖² measured:", np.round(np.diag(gram), 4))
print("‖h̄_k‖² theory:  ", np.round(np.diag(theory.mean_gram), 4))

# %% [markdown]
# Orthogonal, as in the paper's figure; the smaller classes have the *larger* features (at these λ's
# no class is near its death).
#
# ## Classes die as the minority shrinks
#
# Two majority classes of `n_A = 200` and two minority classes of `n_B`, `λ_W = λ_H = 5e-3`, `d = 32`.
# Cor. 4 (corrected) says the minority dies once `n_B <= N² K/(K−1) λ_W λ_H` with `N = 400 + 2 n_B`.
# `u.phase_boundaries` gives, for each class size, the `λ_Z = √(λ_W λ_H)` at which that class dies; the
# minority is dead where its `λ_Z` falls below ours, so the critical `n_B` is a root:

# %%
lam_z, n_a = 5e-3, 200


def problem(n_b):
    return u.relu_ce(
        [n_a, n_a, n_b, n_b], 32, lam_w=lam_z, lam_h=lam_z, per_class=1
    )


critical = scipy.optimize.brentq(
    lambda n_b: u.phase_boundaries(problem(n_b))["class 2 dead"] - lam_z, 1.0, 100.0
)
N = 2 * n_a + 2 * critical
print(
    f"theory: the minority dies for n_B <= {critical:.4f} "
    f"(check: N² K/(K−1) λ_Wλ_H = {N**2 * 4 / 3 * lam_z**2:.4f})"
)

# %% [markdown]
# Near the threshold the alive minority class is small and a start easily ends with it dead (a local
# minimum), so each point gets 16 random starts at scales spread over `[1, 9]`:

# %%
n_bs = [2, 3, 4, 5, 6, 7, 8, 10, 12, 16, 24, 40, 80, 160]
problems = [problem(n_b) for n_b in n_bs]
solutions = u.solve(u.stack_problems(problems), seeds=16, init_scale=3.0)
checks = [u.check(solutions[i]) for i in range(len(n_bs))]
print(
    f"{len(n_bs)} problems × 16 starts: compile {solutions.timing['compile_s']:.1f} s, "
    f"solve {solutions.timing['solve_s']:.2f} s; certified {sum(c.certified for c in checks)} "
    f"of {len(checks)}"
)
for n_b, c in zip(n_bs, checks):
    print(
        f"n_B = {n_b:3d}: {c.regime:>9}  gap {c.gap:+.1e}  certified {c.certified}"
    )
assert all(c.certified for c in checks), [
    c.reason for c in checks if not c.certified
]

# %% [markdown]
# ## Theory over measurement
#
# Lines: `‖h̄_k‖` of the analytic minimiser on a fine grid of `n_B` (the weighted representation takes
# any real class size); markers: the certified minimisers; dashed: the critical `n_B`.

# %%
fine = np.geomspace(2, 160, 400)
theory_norms = np.array(
    [np.sqrt(np.diag(u.analytic_solution(problem(n_b)).mean_gram)) for n_b in fine]
)
measured = np.array(
    [
        np.linalg.norm(np.asarray(u.metrics.class_means(s.params, p)[0]), axis=0)
        for s, p in ((solutions[i], problems[i]) for i in range(len(n_bs)))
    ]
)

fig, ax = plt.subplots(figsize=(7.5, 4), layout="constrained")
for k, colour, label in (
    (0, "C0", "majority class (n_A = 200)"),
    (2, "C3", "minority class (n_B)"),
):
    ax.plot(fine, theory_norms[:, k], "-", color=colour, lw=3, alpha=0.4)
    ax.plot(n_bs, measured[:, k], "o", ms=5, color=colour, label=label)
ax.axvline(
    critical, ls="--", color="0.5", lw=1, label=f"Cor. 4: n_B = {critical:.2f}"
)
ax.set_xscale("log")
ax.set_xlabel("n_B")
ax.set_ylabel("‖h̄_k‖")
ax.set_title(
    "ReLU CE UFM, λ_W = λ_H = 5e-3: the minority dies below the critical size"
)
ax.legend(fontsize=8)
plt.show()

# %%
alive = measured[:, 2] > 1e-6
print(
    f"largest dead n_B on the grid: {max(n for n, a in zip(n_bs, alive) if not a)}, "
    f"smallest alive: {min(n for n, a in zip(n_bs, alive) if a)}; theory: {critical:.4f}"
)
assert all(alive == (np.asarray(n_bs) > critical))

# %% [markdown]
# The minority's feature norm is not monotone in its size (the paper's remark after Cor. 2): it grows
# from zero above the threshold, peaks, and then shrinks towards the majority's as the data balance.
