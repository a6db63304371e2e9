#!/usr/bin/env bash
# Fails when the crate layering described in ARCHITECTURE.md is broken.
set -euo pipefail
cd "$(dirname "$0")/.."

fail=0
deps() { cargo tree -p "$1" -e normal --prefix none --format '{p}' 2>/dev/null | awk '{print $1}' | sort -u; }
forbid() { # crate, regex of forbidden dependencies, reason
  local bad
  bad=$(deps "$1" | grep -E "^($2)$" || true)
  if [ -n "$bad" ]; then
    echo "layering: $1 must not depend on: $(echo "$bad" | tr '\n' ' ')($3)"
    fail=1
  fi
}

io='tokio|tonic|axum|hyper|rusqlite|sqlx|object_store|kube|s3s'
forbid contrail-compiler "$io" "the compiler is pure: no IO, no async"
forbid contrail-engine "$io|contrail-store|contrail-blob|contrail-executor" "the engine is pure: no IO, no async, no ports"
forbid contrail-executor "$io" "the executor port is runtime-free"
forbid contrail-catalog "$io|contrail-store|contrail-blob" "cache keys are pure: no IO, no async, no ports"
forbid contrail-controller "contrail-api|contrail-store-sqlite|contrail-executor-local|tonic|axum" "the controller meets the API only through the store and names no adapter"
forbid contrail-store "$io|contrail-store-sqlite" "the store port names no adapter"
forbid contrail-blob "$io" "the blob port is synchronous and runtime-free"
forbid contrail-api "contrail-controller|contrail-engine|contrail-executor.*|contrail-store-sqlite|contrail-store-postgres|s3s|s3s-fs" "the API meets the controller only through the store and names no adapter"
forbid contrail-s3 "contrail-store.*|contrail-engine|contrail-controller|contrail-api|s3s-fs" "the S3 endpoint serves the blob store only, with its own S3 semantics"
forbid contrail-auth "tokio|tonic|axum|hyper|rusqlite|sqlx|object_store|kube|s3s|reqwest|contrail-(api|store.*|blob.*|engine|controller|executor.*)" "who may call is decided without a transport or a store"
forbid contrail-notify "contrail-api|contrail-controller|contrail-engine|contrail-compiler|contrail-executor.*|contrail-blob.*" "notification delivery sees the store port and its channels only"
executors='contrail-executor-local contrail-executor-slurm contrail-executor-k8s'
for c in $executors; do
  others=$(echo $executors | tr ' ' '\n' | grep -vx "$c" | paste -sd'|')
  forbid "$c" "contrail-store.*|contrail-api|contrail-controller|$others" "an executor sees only the executor port, the engine's task status and the blob store"
done
for c in contrail-idl contrail-compiler contrail-catalog contrail-engine contrail-store contrail-blob contrail-api contrail-auth contrail-executor contrail-controller contrail-s3 contrail-bench contrail-notify; do
  forbid "$c" "contrail-store-sqlite|contrail-store-postgres|contrail-blob-object-store|contrail-executor-.*" "only the contrail binary wires adapters"
done
forbid contrail-idl "tonic" "grpc codegen is behind the idl crate's grpc feature"
forbid contrail-testkit "$io|contrail-controller|contrail-api|contrail-store-.*|contrail-blob-object-store|contrail-executor-.*" "the test doubles stand for ports only"
for c in contrail contrail-api contrail-controller contrail-engine contrail-store contrail-blob contrail-executor contrail-executor-local; do
  forbid "$c" "contrail-testkit" "test doubles are dev-dependencies only"
done

if [ "$fail" = 0 ]; then echo "layering: ok"; fi
exit "$fail"
