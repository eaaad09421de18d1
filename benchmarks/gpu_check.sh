#!/usr/bin/env bash
# The accelerator rows of benchmarks/README.md in one run, under 8 minutes on one GPU:
#   1. bench_gpu.py: the 32 x 32 two-cluster CE grid (weighted; explicit through the default path;
#      explicit with every column optimised), certified against Hong & Ling's closed form, and weighted
#      throughput against the batch size;
#   2. bench_side_by_side.py: `ufm solve` against PyTorch's L-BFGS on the same GPU (--device cuda).
# No install needed (the repository is put on PYTHONPATH); the packages the core needs (jax with its GPU
# plugin, equinox, optax, jaxtyping, scipy, numpy, typer, rich) must be there, and torch for the peer.
# Results: benchmarks/results/gpu.json and side_by_side_cuda.json, or the folder UFM_BENCH_RESULTS
# (e.g. $OUT on the device machine). Nothing requires a GPU: UFM_BENCH_PLATFORM=cpu runs it on the CPU,
# and --quick runs small sizes (what tests/test_benchmarks_smoke.py checks).
# Usage: benchmarks/gpu_check.sh [--quick]
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export UFM_BENCH_PLATFORM="${UFM_BENCH_PLATFORM:-cuda}"
quick=()
if [ "${1:-}" = "--quick" ]; then quick=(--quick); fi
device=cpu
if [ "$UFM_BENCH_PLATFORM" != cpu ]; then device=cuda; fi
start=$SECONDS
python3 -c "import jax; print('devices:', jax.devices())"
timeout 300 python3 benchmarks/bench_gpu.py "${quick[@]}"
echo "== bench_gpu.py done after $((SECONDS - start)) s"
timeout 150 python3 benchmarks/bench_side_by_side.py --device "$device" --repeats 3 --no-baseline "${quick[@]}"
echo "== gpu_check.sh done after $((SECONDS - start)) s"
