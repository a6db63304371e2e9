#!/usr/bin/env bash
# The chaos soak: a rolling mixed workload (every node kind, caching, a gate, a map of 200)
# on one contrail server that is killed with SIGKILL at random moments, with the resident
# supervisor and warm workers killed now and then. See tests/chaos/chaos.py for the checks.
#
#   scripts/chaos.sh                     # 500 kills (the recorded soak; docs/reliability.md)
#   scripts/chaos.sh --kills 50          # the CI version
#   scripts/chaos.sh --seed N            # replays the kill timing of a recorded run
#
# Uses CONTRAIL_BIN (default target/debug/contrail) and the test venv (CONTRAIL_VENV, .venv).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${CONTRAIL_VENV:-.venv}
export CONTRAIL_BIN=${CONTRAIL_BIN:-$PWD/target/debug/contrail}
[ -x "$CONTRAIL_BIN" ] || cargo build -q -p contrail
exec "$VENV/bin/python" tests/chaos/chaos.py "$@"
