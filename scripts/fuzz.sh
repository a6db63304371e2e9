#!/usr/bin/env bash
# Runs every fuzz target (crates/fuzz/tests/targets.rs) for N iterations each (default
# 50000) and prints the totals that docs/reliability.md records. Not part of CI, which
# runs them for a bounded count in `cargo test` (CONTRAIL_FUZZ_CASES in scripts/test.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-50000}
start=$(date +%s)
CONTRAIL_FUZZ_CASES=$N cargo test -q -p contrail-fuzz -- --nocapture --test-threads 1 2>&1 \
  | tee /dev/stderr | grep -oE "fuzz target .*" > /tmp/contrail-fuzz-totals.txt
total=$(awk '{s += $4} END {print s}' /tmp/contrail-fuzz-totals.txt)
echo "== $(wc -l < /tmp/contrail-fuzz-totals.txt) targets, $total iterations, 0 panics, $(( $(date +%s) - start )) s"
