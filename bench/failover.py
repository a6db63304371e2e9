"""Failover time of controller replicas: a benchmark, not a test (results in
docs/benchmarks.md). Starts a cluster (PostgreSQL, 1 API and 3 controller replicas, blobs on
SeaweedFS when CONTRAIL_TEST_S3_* is set) as the scale-out tier does, keeps executions
running, and SIGKILLs a controller replica that owns executions, `--kills` times. For each
kill it reports the time until no lease of the dead replica is left (every one of its
executions has a new owner, whose next round follows at once).

    source DIR/env   # from scripts/services.sh start DIR
    CONTRAIL_BIN=target/debug/contrail .venv/bin/python bench/failover.py --kills 20
"""
import argparse
import pathlib
import statistics
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests" / "e2e"))

from conftest import Cluster, remote  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--ttl-ms", type=int, default=10_000)
    ap.add_argument("--resync-ms", type=int, default=1000)
    args = ap.parse_args()
    root = pathlib.Path(tempfile.mkdtemp(prefix="contrail-failover-"))
    cluster = Cluster(root, apis=1, controllers=3, lease_ttl_ms=args.ttl_ms,
                      args=["--resync-ms", str(args.resync_ms)])
    cluster.start()
    try:
        run(cluster, root, args)
    finally:
        cluster.close()


def register(cluster, root):
    import shutil
    import subprocess
    import uuid

    from conftest import E2E_WORKFLOWS, PYFLYTE

    shutil.copy(E2E_WORKFLOWS / "scaleout.py", root / "scaleout.py")
    config = cluster.write_config(root / "config.yaml")
    version = "v" + uuid.uuid4().hex[:8]
    p = subprocess.run([PYFLYTE, "-c", str(config), "register", "--version", version, "scaleout.py"],
                       cwd=root, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    return config, version


def run(cluster, root, args):
    config, version = register(cluster, root)
    r = remote(config)
    lp = r.fetch_launch_plan(name="scaleout.slow_wf", version=version)
    side = root / "side.txt"
    times, generation = [], {}
    n = 0

    def owned(name):
        return int(cluster.sql(f"SELECT count(*) FROM leases WHERE owner = '{name}'").strip())

    while len(times) < args.kills:
        # Keep every replica busy: a few long executions per replica at all times.
        live = int(cluster.sql("SELECT count(*) FROM executions WHERE phase NOT IN (4, 6, 7, 8)").strip())
        for _ in range(max(0, 9 - live)):
            n += 1
            r.execute(lp, inputs={"tag": f"f{n}", "side": str(side)})
        time.sleep(1.0)
        holders = [c for c, p in cluster.controllers.items() if p is not None and owned(c) > 0]
        if not holders:
            continue
        victim = holders[len(times) % len(holders)]
        t0 = time.monotonic()
        cluster.kill_controller(victim)
        while owned(victim) > 0:
            time.sleep(0.02)
        took = time.monotonic() - t0
        times.append(took)
        print(f"kill {len(times):2d}: {victim} -> its executions re-owned after {took:.2f}s", flush=True)
        base = victim.split("-")[0]
        generation[base] = generation.get(base, 0) + 1
        del cluster.controllers[victim]
        cluster.start_controller(f"{base}-{generation[base]}")
    q = statistics.quantiles(times, n=10)
    print(f"TTL {args.ttl_ms} ms, resync {args.resync_ms} ms, {len(times)} kills: "
          f"min {min(times):.2f} s, p50 {statistics.median(times):.2f} s, p90 {q[8]:.2f} s, "
          f"max {max(times):.2f} s, mean {statistics.mean(times):.2f} s")


if __name__ == "__main__":
    main()
