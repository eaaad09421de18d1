"""Side-by-side with research-style PyTorch: full-batch GD, momentum 0.9, lr 0.1, fp32, one config per process.

Problem: MSE UFM, K = 10, n = 100 per class, d = 64, free bias, λ_W = λ_H = 5e-4; f* = 0.043875 (Liu 2024
Thm 4.3). Both sides run until f − f* <= 1e-6. Run: `python benchmarks/bench_baseline_torch.py [--quick]`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

import numpy as np  # noqa: E402


def torch_run(max_steps: int, tol: float = 1e-6, seed: int = 0) -> dict:
    import torch

    torch.manual_seed(seed)
    K, n, d, lam = 10, 100, C.MSE_DIM, C.MSE_LAM
    N = K * n
    Y = torch.eye(K).repeat_interleave(n, dim=1)  # K × N
    W = torch.nn.Parameter(torch.randn(K, d) / d**0.5)
    H = torch.nn.Parameter(torch.randn(d, N) / d**0.5)
    b = torch.nn.Parameter(torch.randn(K, 1) / K**0.5)
    opt = torch.optim.SGD([W, H, b], lr=0.1, momentum=0.9)
    t = time.perf_counter()
    for step in range(1, max_steps + 1):
        opt.zero_grad()
        loss = ((W @ H + b - Y) ** 2).sum() / (2 * N) + lam / 2 * (W**2).sum() + lam / 2 * (H**2).sum()
        loss.backward()
        opt.step()
        if loss.item() - C.MSE_MIN <= tol:
            break
        if step % 2000 == 0:
            print(f"torch step {step}: f - f* = {loss.item() - C.MSE_MIN:.3e}", flush=True)
    return {"steps": step, "time_s": time.perf_counter() - t, "final": float(loss.item()),
            "reached": bool(loss.item() - C.MSE_MIN <= tol), "threads": torch.get_num_threads()}


def jax_run(repeats: int, weighted: bool = False) -> dict:
    """Our solve of the same problem: explicit (all N = 1000 columns, as the PyTorch code has them) or
    weighted (one column per class weighing n_k: the same minimum and minimisers, see `ufm_jax.Problem`)."""
    import ufm_jax as u

    p = C.mse_problem(weighted=weighted)
    solver = u.LockstepLBFGS()
    first = u.solve(p, solver, key=0, shard=False, reduce=False)  # every column, as the PyTorch code
    times = [u.solve(p, solver, key=r + 1, shard=False, reduce=False).timing["solve_s"] for r in range(repeats)]
    return {"steps": int(first.iterations), "compile_s": first.timing["compile_s"],
            "time_s": statistics.median(times), "final": float(first.objective),
            "gap": float(first.objective) - C.MSE_MIN}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--max-steps", type=int, default=100_000)
    args = ap.parse_args(argv)
    q = args.quick
    out: dict = {"quick": q}
    try:
        import torch  # noqa: F401
    except ImportError:
        out["torch"] = "not installed"
    else:
        runs = [torch_run(200 if q else args.max_steps, seed=s) for s in range(1 if q else args.repeats)]
        out["torch"] = {"runs": runs, "time_s": statistics.median(r["time_s"] for r in runs),
                        "steps": statistics.median(r["steps"] for r in runs)}
    out["jax"] = jax_run(1 if q else args.repeats)
    out["jax_weighted"] = jax_run(1 if q else args.repeats, weighted=True)
    if isinstance(out["torch"], dict):
        out["ratio_torch_over_jax"] = out["torch"]["time_s"] / out["jax"]["time_s"]
        out["ratio_torch_over_jax_weighted"] = out["torch"]["time_s"] / out["jax_weighted"]["time_s"]
    print({k: v for k, v in out.items() if k != "torch"}, np.round(out["torch"]["time_s"], 3)
          if isinstance(out["torch"], dict) else out["torch"])
    C.write("baseline_torch" + ("_quick" if q else ""), out)
    return out


if __name__ == "__main__":
    main()
