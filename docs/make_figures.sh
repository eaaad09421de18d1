#!/usr/bin/env bash
# Regenerate every figure shown in README.md: run the default sweep and each example, then copy the
# figures into docs/figures/ and print each run's one-line summary (points, certified, time).
# Usage: docs/make_figures.sh [RESULTS_DIR]   (default: ./ufm-results)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-ufm-results}
figs=docs/figures
mkdir -p "$figs"
run() {  # run NAME CONFIG-or-empty METRIC...
  local name=$1 config=$2; shift 2
  local dir="$out/$name"
  local start=$SECONDS
  if [ -z "$config" ]; then ufm sweep --out "$dir" --quiet; else ufm sweep "$config" --out "$dir" --quiet; fi
  echo "  ($name: $((SECONDS - start)) s wall, compile included)"
  for metric in "$@"; do cp "$dir/figures/$metric.png" "$figs/${name}_$metric.png"; done
}
run default "" minority_logit_spread
run seed001_lam_z examples/seed001_hong_ling_lam_z.toml minority_logit_spread
run seed001_lam_z_bias examples/seed001_hong_ling_lam_z_bias.toml minority_logit_spread
run seed001_n_a examples/seed001_hong_ling_n_a.toml minority_logit_spread
run seed004_deep_linear examples/seed004_dang_deep_linear.toml mean_norms
run seed000_mse_bias examples/seed000_liu_mse_bias.toml product_singular_values
run seed003_relu_ce examples/seed003_relu_ce.toml mean_norms
run deep_ce_basins examples/deep_ce_basins.toml hit_fraction
