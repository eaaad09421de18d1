"""The tiny sweep the sweep tests share: two-cluster CE, 3 λ_Z × 2 ratios, one column per class, chunks of
two points (so kills, resumes and damaged chunks have several chunks to work on)."""

from ufm_jax.sweep import load_config

TINY = """
name = "tiny"
[problem]
family = "ce"
dim = 3
k_a = 2
k_b = 2
n_b = 10
per_class = 1
[grid]
lam_z = { start = 5e-3, stop = 0.05, num = 3, spacing = "log" }
ratio = [1, 4]
[run]
chunk_size = 2
[plot]
metrics = ["minority_spread"]
formats = ["png"]
"""


def tiny_config(text: str = TINY, **kw):
    """`load_config` of `text` (default `TINY`), with `sets=`/`axes=` as `load_config` takes them."""
    return load_config(text=text, **kw)
