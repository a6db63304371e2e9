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
echo "== cargo test"; cargo test --workspace
echo "== build";    cargo build -p contrail

if [ ! -x "$VENV/bin/pyflyte" ] || ! "$VENV/bin/python" -c "import flytekit, pytest, boto3, pyarrow, polars, flytekitplugins.polars, sys; sys.exit(flytekit.__version__ != '$FLYTEKIT_VERSION')" 2>/dev/null; then
  echo "== python venv ($VENV) with flytekit==$FLYTEKIT_VERSION and the data libraries tasks use"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "flytekit==$FLYTEKIT_VERSION" pytest pyarrow pandas polars pydantic \
    "flytekitplugins-polars==$FLYTEKIT_VERSION"
  # boto3 at the botocore that s3fs's aiobotocore pinned (an unpinned boto3 backtracks for long).
  botocore=$("$VENV/bin/python" -c "import botocore; print(botocore.__version__)")
  "$VENV/bin/pip" install -q boto3 "botocore==$botocore"
fi

echo "== end-to-end"
CONTRAIL_BIN="$PWD/target/debug/contrail" "$VENV/bin/python" -m pytest -p no:cacheprovider -q tests/e2e
