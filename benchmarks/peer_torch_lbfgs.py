"""The strongest peer: PyTorch's full-batch L-BFGS with a strong-Wolfe line search, one configuration per
process, as a user who knows optimisation would write it.

Problem (the side-by-side problem): MSE UFM, K = 10 classes of n = 100 samples, d = 64, free bias,
λ_W = λ_H = 5e-4, all N = 1000 sample columns; f* = 0.043875 (Liu 2024 Thm 4.3). Runs `opt.step` (at most
20 inner iterations each) until f − f* <= tol. Prints one JSON line: the precision, threads, outer steps,
inner iterations, the solve time (tensor set-up to stop, torch import excluded), the final gap.

Run: `python benchmarks/peer_torch_lbfgs.py --dtype float64 --threads 1` (`--threads 0`: torch's
default). `bench_side_by_side.py` runs it for each configuration, each in its own process.
"""

from __future__ import annotations

import argparse
import json
import time

F_STAR = 0.043875


def run(dtype: str, threads: int, tol: float, seed: int, device: str = "cpu", max_outer: int = 200) -> dict:
    import torch

    if threads > 0:
        torch.set_num_threads(threads)
    dt = {"float32": torch.float32, "float64": torch.float64}[dtype]
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    K, n, d, lam = 10, 100, 64, 5e-4
    N = K * n
    kw = dict(dtype=dt, device=device)
    Y = torch.eye(K, **kw).repeat_interleave(n, dim=1)  # K × N
    W = torch.nn.Parameter(torch.randn(K, d, **kw) / d**0.5)
    H = torch.nn.Parameter(torch.randn(d, N, **kw) / d**0.5)
    b = torch.nn.Parameter(torch.randn(K, 1, **kw) / K**0.5)
    opt = torch.optim.LBFGS([W, H, b], lr=1, max_iter=20, history_size=10, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-12, tolerance_change=1e-15)

    def objective():
        return ((W @ H + b - Y) ** 2).sum() / (2 * N) + lam / 2 * (W**2).sum() + lam / 2 * (H**2).sum()

    def closure():
        opt.zero_grad()
        loss = objective()
        loss.backward()
        return loss

    outer = 0
    f = float("inf")
    for outer in range(1, max_outer + 1):
        opt.step(closure)
        with torch.no_grad():
            f = float(objective())
        if f - F_STAR <= tol:
            break
    seconds = time.perf_counter() - t0
    state = opt.state[opt._params[0]]
    return {"dtype": dtype, "device": device, "threads": torch.get_num_threads(), "outer_steps": outer,
            "iterations": int(state.get("n_iter", 0)), "evaluations": int(state.get("func_evals", 0)),
            "solve_s": seconds, "final": f, "gap": f - F_STAR, "reached": f - F_STAR <= tol}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float64")
    ap.add_argument("--threads", type=int, default=1, help="torch threads; 0: torch's default")
    ap.add_argument("--tol", type=float, default=1e-6, help="stop when f - f* <= tol")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu", help="torch device: cpu or cuda")
    args = ap.parse_args(argv)
    out = run(args.dtype, args.threads, args.tol, args.seed, args.device)
    print(json.dumps(out), flush=True)
    return out


if __name__ == "__main__":
    main()
