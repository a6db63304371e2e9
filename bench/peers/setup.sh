#!/usr/bin/env bash
# Installs every peer of the side-by-side benchmark into its own venv under bench/peers/.venvs.
# Idempotent: a venv whose marker exists is kept. Usage: bench/peers/setup.sh [peer ...]
set -euo pipefail
cd "$(dirname "$0")"
ROOT=.venvs
mkdir -p "$ROOT"
PY=${PYTHON:-python3.11}
FLYTEKIT_VERSION=1.16.31

install() { # name, pip arguments...
  local name=$1; shift
  local venv="$ROOT/$name"
  if [ -f "$venv/.ready" ]; then echo "== $name: ready"; return; fi
  echo "== $name: installing $*"
  rm -rf "$venv"
  "$PY" -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip >/dev/null
  "$venv/bin/pip" install -q "$@"
  touch "$venv/.ready"
}

peers=("$@")
[ ${#peers[@]} -eq 0 ] && peers=(flytekit prefect dagster airflow)
for peer in "${peers[@]}"; do
  case $peer in
    flytekit) install flytekit "flytekit==$FLYTEKIT_VERSION" matplotlib ;;
    # Prefect 3.8 does not start with the newest fastapi on this machine.
    prefect) install prefect "prefect==3.8.*" "fastapi==0.150.*" ;;
    dagster) install dagster "dagster==1.13.*" ;;
    airflow) install airflow "apache-airflow==3.3.*" ;;
    *) echo "unknown peer $peer" >&2; exit 2 ;;
  esac
done
