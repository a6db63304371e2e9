#!/usr/bin/env bash
# Runs the basic end-to-end workflows (a task, a map task, a dynamic workflow) with their
# tasks as pods on a real Kubernetes cluster (kind, k3s, a cloud cluster). Not part of CI:
# no cluster can be had where Contrail is developed, so this is how the Kubernetes executor
# is checked for real.
#
# Needs: a built contrail (cargo build -p contrail), the test venv (.venv, scripts/test.sh
# makes it), kubectl, and an S3 bucket both this machine and the cluster's pods reach.
#
#   KUBECONFIG=~/.kube/config \
#   SMOKE_IMAGE=<a flytekit 1.16 image the cluster can pull> \
#   SMOKE_S3_ENDPOINT=http://<host>:<port>  SMOKE_S3_BUCKET=<bucket> \
#   SMOKE_S3_ACCESS_KEY=...  SMOKE_S3_SECRET_KEY=... \
#   [SMOKE_POD_S3_ENDPOINT=<the same store as pods reach it>] \
#   scripts/k8s-smoke.sh
set -euo pipefail
cd "$(dirname "$0")/.."
: "${KUBECONFIG:?set KUBECONFIG to the kubeconfig of the cluster}"
: "${SMOKE_IMAGE:?set SMOKE_IMAGE to a flytekit image the cluster can pull}"
: "${SMOKE_S3_ENDPOINT:?}" "${SMOKE_S3_BUCKET:?}" "${SMOKE_S3_ACCESS_KEY:?}" "${SMOKE_S3_SECRET_KEY:?}"
POD_S3=${SMOKE_POD_S3_ENDPOINT:-$SMOKE_S3_ENDPOINT}
BIN=${CONTRAIL_BIN:-$PWD/target/debug/contrail}
PY=$PWD/.venv/bin/python
PYFLYTE=$PWD/.venv/bin/pyflyte

kubectl get namespace flytesnacks-development >/dev/null 2>&1 || kubectl create namespace flytesnacks-development
work=$(mktemp -d /tmp/contrail-k8s-smoke.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$work/contrail.toml" <<TOML
[executors.k8s]
kind = "kubernetes"
kubeconfig = "$KUBECONFIG"
delete_finished_after_secs = 60
[executors.k8s.env]
FLYTE_AWS_ENDPOINT = "$POD_S3"
[routing]
default = "k8s"
TOML
cat > "$work/config.yaml" <<YAML
admin:
  endpoint: localhost:$port
  insecure: true
storage:
  connection:
    endpoint: $SMOKE_S3_ENDPOINT
    access-key: $SMOKE_S3_ACCESS_KEY
    secret-key: $SMOKE_S3_SECRET_KEY
YAML
"$BIN" start --addr "127.0.0.1:$port" --data-dir "$work/data" --config "$work/contrail.toml" \
  --blob-store "s3://$SMOKE_S3_BUCKET" --blob-endpoint "$SMOKE_S3_ENDPOINT" \
  --blob-access-key "$SMOKE_S3_ACCESS_KEY" --blob-secret-key "$SMOKE_S3_SECRET_KEY" >"$work/contrail.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; echo "logs: $work"' EXIT
until curl -sf "http://127.0.0.1:$port/healthcheck" >/dev/null; do
  kill -0 $pid || { cat "$work/contrail.log"; exit 1; }
  sleep 0.2
done
cp tests/e2e/workflows/slurm.py "$work/smoke.py"
version=smoke-$(date +%s)
(cd "$work" && "$PYFLYTE" -c config.yaml register --project flytesnacks --domain development \
  --image "$SMOKE_IMAGE" --version "$version" smoke.py)
"$PY" - "$work/config.yaml" "$version" <<'PY'
import datetime, sys
from flytekit.configuration import Config
from flytekit.remote import FlyteRemote
r = FlyteRemote(config=Config.auto(sys.argv[1]), default_project="flytesnacks", default_domain="development")
cases = [("smoke.basic", {"x": 21}, lambda o: o.endswith("|42")),
         ("smoke.mapped", {"xs": [1, 2, 3]}, lambda o: o == [2, 4, 6]),
         ("smoke.dyn", {"n": 3}, lambda o: o == [0, 2, 4])]
failed = 0
for name, inputs, ok in cases:
    ex = r.execute(r.fetch_launch_plan(name=name, version=sys.argv[2]), inputs=inputs)
    ex = r.wait(ex, timeout=datetime.timedelta(minutes=10))
    out = ex.outputs["o0"] if ex.closure.phase == 4 else None
    good = out is not None and ok(out)
    failed += not good
    print(f"{'ok ' if good else 'FAIL'} {name}: phase={ex.closure.phase} outputs={out} error={ex.closure.error}")
sys.exit(1 if failed else 0)
PY
