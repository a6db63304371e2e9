#!/usr/bin/env bash
# The project's test command: lint, layering, unit/integration tests, then end-to-end tests
# that drive the real `contrail` binary with real flytekit from PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."

FLYTEKIT_VERSION=1.16.31
VENV=${CONTRAIL_VENV:-.venv}

echo "== fmt";      cargo fmt --all -- --check
echo "== clippy";   cargo clippy --all-targets -- -D warnings
echo "== layering"; scripts/check-layering.sh

# PostgreSQL and SeaweedFS (S3) for the adapters' checks and the scale-out tier: started
# here on loopback, on free ports, and stopped by PID on exit, unless given from outside
# (CONTRAIL_TEST_POSTGRES and CONTRAIL_TEST_S3_*, as scripts/services.sh writes them).
if [ -z "${CONTRAIL_TEST_POSTGRES:-}" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "== services (PostgreSQL, SeaweedFS, Slurm)"
    scripts/services.sh install
    SERVICES=$(mktemp -d /tmp/contrail-services.XXXXXX)
    trap 'scripts/services.sh stop "$SERVICES"; rm -rf "$SERVICES"' EXIT
    scripts/services.sh start "$SERVICES"
    # shellcheck disable=SC1091
    source "$SERVICES/env"
  else
    echo "== services: NOT STARTED (needs root and apt); the PostgreSQL, S3 and Slurm checks and the"
    echo "   scale-out tier will NOT run. Start them with scripts/services.sh and export its env."
  fi
fi
exclude=()
[ -n "${CONTRAIL_TEST_POSTGRES:-}" ] || exclude+=(--exclude contrail-store-postgres)
[ -n "${CONTRAIL_TEST_S3_ENDPOINT:-}" ] || exclude+=(--exclude contrail-blob-object-store)
# The fuzz targets (crates/fuzz) run a bounded number of iterations each here; long
# campaigns are scripts/fuzz.sh, recorded in docs/reliability.md.
echo "== cargo test"; CONTRAIL_FUZZ_CASES=${CONTRAIL_FUZZ_CASES:-2000} cargo test --workspace "${exclude[@]}"
echo "== build";    cargo build -p contrail

# The deterministic simulator's CI run (crates/controller/tests/simulate.rs): its optimised
# build (a target dir of its own) compiles in the background beside the end-to-end tiers,
# which mostly wait on Python; the 100,000 schedules run after them, on idle cores.
SIM_LOG=target/simulate-build.log
( CARGO_TARGET_DIR=target/sim cargo test -q --release -p contrail-controller --test simulate --no-run ) \
  > "$SIM_LOG" 2>&1 &
SIM_PID=$!

if [ ! -x "$VENV/bin/pyflyte" ] || ! "$VENV/bin/python" -c "import flytekit, pytest, boto3, pyarrow, polars, flytekitplugins.polars, cryptography, jwt, selenium, sys; sys.exit(flytekit.__version__ != '$FLYTEKIT_VERSION')" 2>/dev/null; then
  echo "== python venv ($VENV) with flytekit==$FLYTEKIT_VERSION and the data libraries tasks use"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "flytekit==$FLYTEKIT_VERSION" pytest pyarrow pandas polars pydantic \
    "flytekitplugins-polars==$FLYTEKIT_VERSION" cryptography pyjwt selenium
  # boto3 at the botocore that s3fs's aiobotocore pinned (an unpinned boto3 backtracks for long).
  botocore=$("$VENV/bin/python" -c "import botocore; print(botocore.__version__)")
  "$VENV/bin/pip" install -q boto3 "botocore==$botocore"
fi

# The console's browser tests need headless Chromium; as root on Debian it is installed here.
if ! command -v chromedriver >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "== chromium and chromium-driver (the console's browser tests)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver
fi

echo "== end-to-end (embedded: SQLite, local blobs, one process; console screenshots in target/console-screenshots/)"
CONTRAIL_BIN="$PWD/target/debug/contrail" "$VENV/bin/python" -m pytest -p no:cacheprovider -q tests/e2e

if [ -n "${CONTRAIL_TEST_POSTGRES:-}" ] && [ -n "${CONTRAIL_TEST_S3_ENDPOINT:-}" ]; then
  echo "== end-to-end (scale-out: PostgreSQL, SeaweedFS, 2 API and 3 controller replicas; Slurm)"
  CONTRAIL_E2E_SCALEOUT=1 CONTRAIL_BIN="$PWD/target/debug/contrail" \
    "$VENV/bin/python" -m pytest -p no:cacheprovider -q tests/e2e
fi

echo "== chaos soak, CI version (scripts/chaos.sh: 50 SIGKILLs of the server; the 500-kill run is in docs/reliability.md)"
CONTRAIL_BIN="$PWD/target/debug/contrail" CONTRAIL_VENV="$VENV" scripts/chaos.sh --kills 50

echo "== simulator (100,000 schedules)"
if ! wait "$SIM_PID"; then
  cat "$SIM_LOG"
  exit 1
fi
CARGO_TARGET_DIR=target/sim cargo test -q --release -p contrail-controller --test simulate \
  -- --schedules "${CONTRAIL_SIM_SCHEDULES_CI:-100000}"
