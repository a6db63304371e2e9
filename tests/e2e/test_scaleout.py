"""Replicated controllers on PostgreSQL: failover after SIGKILL within one lease TTL, and
fencing of a replica that was paused (SIGSTOP) past its lease. Runs only in the scale-out
tier (`CONTRAIL_E2E_SCALEOUT=1`, see scripts/test-scaleout.sh)."""
import collections
import datetime
import random
import signal
import time
import uuid

import pytest
from flytekit.models.core.execution import WorkflowExecutionPhase as WP

from conftest import DOMAIN, PROJECT, S3_ENDPOINT, Cluster, register_module, remote, wait_until

pytestmark = pytest.mark.scaleout_only

TTL_MS = 3000
# Controllers claim on every resync pass; half a second keeps death-to-next-round inside
# TTL + 1 s with room for this test's own polling.
RESYNC = ["--resync-ms", "500"]


def leases_of(cluster, owner):
    return int(cluster.sql(f"SELECT count(*) FROM leases WHERE owner = '{owner}'").strip())


def owner_of(cluster, name):
    return cluster.sql(f"SELECT owner FROM leases WHERE name = '{name}'").strip()


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(tmp_path, apis=2, controllers=3, lease_ttl_ms=TTL_MS, args=RESYNC)
    c.start()
    yield c
    c.close()


def test_executions_survive_controller_replicas_killed_again_and_again(cluster, tmp_path, tmp_path_factory):
    config = cluster.write_config(tmp_path / "config.yaml")
    version = register_module(config, tmp_path_factory, "scaleout")
    r = remote(config)
    lp = r.fetch_launch_plan(name="scaleout.chain_wf", version=version)
    side = tmp_path / "side.txt"
    names = [r.execute(lp, inputs={"tag": f"t{i}", "side": str(side)}).id.name for i in range(100)]

    rng = random.Random(7)
    takeovers, kills, generation = [], 0, collections.Counter()
    deadline = time.monotonic() + 600

    def unfinished():
        return int(cluster.sql("SELECT count(*) FROM executions WHERE phase NOT IN (4, 6, 7, 8)").strip())

    while unfinished() and time.monotonic() < deadline:
        # Chaos, not synchronisation: the kill lands wherever the victim happens to be.
        time.sleep(rng.uniform(1.0, 3.0))
        victim = rng.choice([n for n, p in cluster.controllers.items() if p is not None])
        held = leases_of(cluster, victim)
        t0 = time.monotonic()
        cluster.kill_controller(victim)
        kills += 1
        if held:
            # Nobody renews the dead replica's leases; others take each one over.
            wait_until(lambda: leases_of(cluster, victim) == 0, TTL_MS / 1000 + 5, f"takeover from {victim}")
            takeovers.append(time.monotonic() - t0)
        # The replica comes back under a new name, as a restarted process does.
        base = victim.split("-")[0]
        generation[base] += 1
        del cluster.controllers[victim]
        cluster.start_controller(f"{base}-{generation[base]}")

    assert kills >= 5, f"only {kills} kills; the executions finished too fast to test failover"
    for name in names:
        ex = r.wait(r.fetch_execution(name=name), timeout=datetime.timedelta(seconds=120),
                    poll_interval=datetime.timedelta(seconds=1))
        assert ex.closure.phase == WP.SUCCEEDED, (name, ex.closure.error)
        assert ex.outputs["o0"] == 3
    lines = side.read_text().split()
    counts = collections.Counter(lines)
    assert sorted(counts) == sorted(f"t{i}:{s}" for i in range(100) for s in range(3)), "a task was skipped"
    twice = [line for line, n in counts.items() if n > 1]
    assert not twice, f"tasks ran twice: {twice}"
    assert takeovers, "no kill ever hit a replica that owned executions"
    worst = max(takeovers)
    print(f"kills={kills} takeovers={len(takeovers)} worst={worst:.2f}s "
          f"all={[round(t, 2) for t in sorted(takeovers)]}")
    assert worst <= TTL_MS / 1000 + 1.0, f"a dead replica's executions waited {worst:.2f}s for a new owner"


def test_a_replica_paused_past_its_lease_is_fenced_and_drops_the_execution(cluster, tmp_path, tmp_path_factory):
    config = cluster.write_config(tmp_path / "config.yaml")
    version = register_module(config, tmp_path_factory, "scaleout")
    r = remote(config)
    lp = r.fetch_launch_plan(name="scaleout.slow_wf", version=version)
    side = tmp_path / "side.txt"
    name = r.execute(lp, inputs={"tag": "s", "side": str(side)}).id.name
    first = wait_until(lambda: owner_of(cluster, name), 30, "a controller to own the execution")
    # Let it run a few tasks under its first owner.
    wait_until(lambda: side.exists() and len(side.read_text().split()) >= 2, 60, "two tasks done")
    cluster.kill_controller(first, signal.SIGSTOP)
    t0 = time.monotonic()
    second = wait_until(lambda: (o := owner_of(cluster, name)) not in ("", first) and o, TTL_MS / 1000 + 5,
                        "another replica to take over")
    took = time.monotonic() - t0
    # The new owner makes progress while the old one is frozen.
    done = len(side.read_text().split())
    wait_until(lambda: len(side.read_text().split()) > done, 30, "progress under the new owner")
    cluster.kill_controller(first, signal.SIGCONT)
    ex = r.wait(r.fetch_execution(name=name), timeout=datetime.timedelta(seconds=120),
                poll_interval=datetime.timedelta(seconds=1))
    assert ex.closure.phase == WP.SUCCEEDED, ex.closure.error
    assert ex.outputs["o0"] == 10
    assert side.read_text().split() == [f"s:{i}" for i in range(10)], "a task ran twice or was skipped"
    # The resumed replica learned it lost the lease (a renewal or a fenced commit said so)
    # and wrote nothing after its successor's first event.
    log = (cluster.root / f"{first}.log").read_text()
    assert "lease lost" in log, log[-3000:]
    owners = cluster.sql(f"SELECT owner FROM events WHERE exec_name = '{name}' ORDER BY seq").split()
    assert second in owners
    after = owners[owners.index(second):]
    assert first not in after, f"the fenced replica committed after the takeover: {owners}"
    # No transition is recorded twice.
    assert_no_duplicate_transitions(cluster, name)
    print(f"takeover after {took:.2f}s; owners {first} -> {second}")


def assert_no_duplicate_transitions(cluster, name):
    from flyteidl.event import event_pb2

    rows = cluster.sql(
        f"SELECT kind, encode(payload, 'hex') FROM events WHERE exec_name = '{name}' ORDER BY seq").splitlines()
    seen = collections.Counter()
    for row in rows:
        kind, payload = row.split("\t")
        raw = bytes.fromhex(payload)
        if kind == "workflow":
            e = event_pb2.WorkflowExecutionEvent.FromString(raw)
            seen[(kind, e.phase)] += 1
        elif kind == "node":
            e = event_pb2.NodeExecutionEvent.FromString(raw)
            seen[(kind, e.id.node_id, e.phase)] += 1
        else:
            e = event_pb2.TaskExecutionEvent.FromString(raw)
            seen[(kind, e.parent_node_execution_id.node_id, e.retry_attempt, e.phase, e.phase_version)] += 1
    dupes = {k: n for k, n in seen.items() if n > 1}
    assert not dupes, f"transitions recorded more than once: {dupes}"


def test_replicas_lists_the_live_replicas_and_their_leases(cluster, tmp_path, tmp_path_factory):
    import subprocess

    from conftest import BIN

    def listing():
        p = subprocess.run([str(BIN), "replicas", "--database", cluster.database], capture_output=True,
                           text=True, timeout=30)
        assert p.returncode == 0, p.stderr
        return p.stdout

    out = wait_until(lambda: (o := listing()).count("controller") == 3 and o.count(" api ") == 2 and o,
                     15, "every replica listed")
    assert all(n in out for n in ["c0", "c1", "c2", "api0", "api1"]), out
    cluster.kill_controller("c2", signal.SIGTERM)
    wait_until(lambda: "c2" not in listing(), 10, "a stopped replica leaves the list")


@pytest.mark.skipif(not S3_ENDPOINT, reason="needs CONTRAIL_TEST_S3_ENDPOINT")
def test_upload_and_download_locations_are_the_object_stores_own_presigned_urls(cluster, tmp_path):
    import hashlib
    import urllib.request

    r = remote(cluster.write_config(tmp_path / "config.yaml"))
    body = b"scale-out bytes " + uuid.uuid4().hex.encode()
    md5 = hashlib.md5(body).digest()
    up = r.client.get_upload_signed_url(project=PROJECT, domain=DOMAIN, content_md5=md5, filename="blob.bin")
    assert up.signed_url.startswith(S3_ENDPOINT + "/"), up.signed_url
    assert "X-Amz-Signature=" in up.signed_url
    req = urllib.request.Request(up.signed_url, data=body, method="PUT", headers=dict(up.headers))
    assert urllib.request.urlopen(req, timeout=30).status == 200
    down = r.client.get_download_signed_url(up.native_url)
    assert down.signed_url.startswith(S3_ENDPOINT + "/"), down.signed_url
    assert urllib.request.urlopen(down.signed_url, timeout=30).read() == body


def test_an_execution_created_on_an_api_replica_is_picked_up_at_once_not_at_the_next_resync(
        tmp_path, tmp_path_factory):
    # Resync once a minute: only a NOTIFY can bring the execution to a controller quickly.
    c = Cluster(tmp_path, apis=2, controllers=2, lease_ttl_ms=TTL_MS, args=["--resync-ms", "60000"])
    c.start()
    try:
        config = c.write_config(tmp_path / "config.yaml")
        version = register_module(config, tmp_path_factory, "scaleout")
        r = remote(config)
        lp = r.fetch_launch_plan(name="scaleout.chain_wf", version=version)
        # Let the controllers' first (immediate) resync pass go by.
        time.sleep(1.0)
        t0 = time.monotonic()
        name = r.execute(lp, inputs={"tag": "w", "side": str(tmp_path / "side.txt")}).id.name
        owner = wait_until(lambda: owner_of(c, name), 10, "a controller to claim the execution")
        took = time.monotonic() - t0
        assert took < 5, f"claimed after {took:.2f}s: not by a wake-up"
        ex = r.wait(r.fetch_execution(name=name), timeout=datetime.timedelta(seconds=50),
                    poll_interval=datetime.timedelta(seconds=1))
        assert ex.closure.phase == WP.SUCCEEDED, ex.closure.error
        print(f"claimed by {owner} {took:.2f}s after CreateExecution returned")
    finally:
        c.close()
