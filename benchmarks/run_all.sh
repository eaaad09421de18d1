#!/usr/bin/env bash
# Reproduce benchmarks/README.md, one benchmark at a time (2-core machine).
# Usage: benchmarks/run_all.sh [--quick]
set -euo pipefail
cd "$(dirname "$0")/.."
quick=("$@")
python benchmarks/bench_side_by_side.py "${quick[@]}"   # ours vs PyTorch L-BFGS vs GD, one process each
python benchmarks/bench_convergence.py --repeats 2 "${quick[@]}"
python benchmarks/bench_roofline.py "${quick[@]}"
# PyTorch with one thread: with two it ran ~10x slower on the shared machine.
if [ "${1:-}" = "--quick" ]; then
  OMP_NUM_THREADS=1 python benchmarks/bench_baseline_torch.py --quick
  python benchmarks/bench_throughput.py --quick
else
  OMP_NUM_THREADS=1 python benchmarks/bench_baseline_torch.py --repeats 1 --max-steps 30000
  python benchmarks/bench_throughput.py --explicit-batch 8 --explicit-starts
  python benchmarks/bench_throughput.py --explicit-grid       # ≈ 5 min: the 32 × 32 grid, explicit
fi
