"""Tasks routed to a real Slurm cluster (slurmctld and 3 slurmd, started by
scripts/services.sh), with the blobs in SeaweedFS: tasks on the nodes reach their data
through S3 only. Runs in the scale-out tier, where those services exist."""
import os
import pathlib
import subprocess
import sys

import pytest
from flytekit.models.core.execution import WorkflowExecutionPhase as WP

from conftest import (
    S3_BUCKET, S3_ENDPOINT, S3_KEYS, Server, client_config, finish, register_module, remote, wait_until,
)

pytestmark = pytest.mark.scaleout_only

LABEL = "hpc"


def squeue(*args):
    p = subprocess.run(["squeue", "--noheader", "--states=all", *args], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    return [line.split("|") for line in p.stdout.splitlines() if line.strip()]


def jobs_named(name):
    """(id, state) of every job Slurm knows by this name."""
    return [(j[0], j[1]) for j in squeue("--name", name, "--format=%i|%T")]


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    if not os.environ.get("SLURM_CONF") or not S3_ENDPOINT:
        pytest.fail("the Slurm tier needs SLURM_CONF and CONTRAIL_TEST_S3_* (scripts/services.sh)")
    root = tmp_path_factory.mktemp("slurm")
    logs = root / "joblogs"
    venv = pathlib.Path(sys.prefix)
    (root / "contrail.toml").write_text(
        f"""
[executors.{LABEL}]
kind = "slurm"
log_dir = "{logs}"
poll_interval_ms = 200
[executors.{LABEL}.images]
"*" = "{venv}"
"""
    )
    s = Server(root / "data", root / "server.log", [
        "--config", str(root / "contrail.toml"),
        "--blob-store", f"s3://{S3_BUCKET}", "--blob-endpoint", S3_ENDPOINT,
        "--blob-access-key", S3_KEYS[0], "--blob-secret-key", S3_KEYS[1],
    ])
    s.start()
    s.logs = logs
    yield s
    s.stop()


@pytest.fixture(scope="module")
def cfg(slurm, tmp_path_factory):
    return client_config(tmp_path_factory.mktemp("cfg") / "config.yaml", slurm.port, S3_ENDPOINT, S3_KEYS)


@pytest.fixture(scope="module")
def version(cfg, tmp_path_factory):
    return register_module(cfg, tmp_path_factory, "slurm")


def start(cfg, version, lp, label=LABEL, **inputs):
    r = remote(cfg)
    return r, r.execute(r.fetch_launch_plan(name=f"slurm.{lp}", version=version), inputs=inputs,
                        execution_cluster_label=label)


def attempt_names(r, ex, node="n0"):
    """The Slurm job names (attempt ids) of a node's attempts: `<exec>-<node>-<attempt>`."""
    ex = r.sync(ex, sync_nodes=True)
    return [f"{ex.id.name}-{node}-{t.id.retry_attempt}" for t in ex.node_executions[node].task_executions]


def test_a_labelled_execution_runs_its_task_as_a_slurm_job_reading_data_through_s3(slurm, cfg, version):
    r, ex = start(cfg, version, "basic", x=21)
    ex = finish(r, ex, 120)
    assert ex.closure.phase == WP.SUCCEEDED, ex.closure.error
    job, node, doubled = ex.outputs["o0"].split("|")
    assert job and node in {"n1", "n2", "n3"} and doubled == "42"
    assert jobs_named(f"{ex.id.name}-n0-0") == [(job, "COMPLETED")]
    ex = r.sync(ex, sync_nodes=True)
    logs = ex.node_executions["n0"].task_executions[0].closure.logs
    assert [log.name for log in logs] == ["stdout (Slurm)", "stderr (Slurm)"]
    assert (slurm.logs / f"{ex.id.name}-n0-0.out").exists()
    # Slurm's log directory is one the server serves from: the link is HTTP.
    assert all("/logs/" in log.uri for log in logs), [log.uri for log in logs]
    import urllib.request

    for log in logs:
        with urllib.request.urlopen(log.uri, timeout=30) as resp:
            assert resp.status == 200
    # Nothing ran as a local process, and the blobs are in S3, not the data directory.
    assert not list((slurm.data_dir / "attempts").glob(f"*/*/{ex.id.name}*"))
    assert not list((slurm.data_dir / "blobs").rglob("outputs.pb"))


def test_without_a_label_tasks_stay_local(slurm, cfg, version):
    r, ex = start(cfg, version, "basic", label=None, x=1)
    ex = finish(r, ex, 120)
    assert ex.closure.phase == WP.SUCCEEDED, ex.closure.error
    assert ex.outputs["o0"] == "||2"
    assert jobs_named(f"{ex.id.name}-n0-0") == []


def test_an_unknown_cluster_label_is_refused_naming_the_configured_ones(slurm, cfg, version):
    r = remote(cfg)
    lp = r.fetch_launch_plan(name="slurm.basic", version=version)
    with pytest.raises(Exception) as err:
        r.execute(lp, inputs={"x": 1}, execution_cluster_label="gpu-cluster")
    text = str(err.value)
    assert "'gpu-cluster'" in text and f"{LABEL}, local" in text, text


def test_map_task_items_run_as_slurm_jobs(slurm, cfg, version):
    r, ex = start(cfg, version, "mapped", xs=[1, 2, 3, 4])
    ex = finish(r, ex, 180)
    assert ex.closure.phase == WP.SUCCEEDED, ex.closure.error
    assert ex.outputs["o0"] == [2, 4, 6, 8]
    listed = squeue("--format=%j|%T")
    items = [j for j in listed if j[0].startswith(f"{ex.id.name}-n0-")]
    assert len(items) == 4 and {s for _, s in items} == {"COMPLETED"}, items


def test_a_dynamic_workflow_and_its_children_run_on_slurm(slurm, cfg, version):
    r, ex = start(cfg, version, "dyn", n=3)
    ex = finish(r, ex, 180)
    assert ex.closure.phase == WP.SUCCEEDED, ex.closure.error
    assert ex.outputs["o0"] == [0, 2, 4]
    mine = [j for j in squeue("--format=%j|%T") if j[0].startswith(ex.id.name)]
    # The dynamic parent and its three children, each a completed job.
    assert len(mine) == 4 and {s for _, s in mine} == {"COMPLETED"}, mine


def test_a_task_over_its_memory_ends_out_of_memory_and_is_retried(slurm, cfg, version):
    r, ex = start(cfg, version, "oom")
    ex = finish(r, ex, 180)
    assert ex.closure.phase == WP.SUCCEEDED, ex.closure.error
    assert ex.outputs["o0"] == 1
    ex = r.sync(ex, sync_nodes=True)
    attempts = ex.node_executions["n0"].task_executions
    assert [t.closure.phase for t in attempts] == [5, 3]  # FAILED, SUCCEEDED
    error = attempts[0].closure.error
    assert error.code == "OOMKilled" and error.kind == 1, error  # USER, as Flyte treats OOMKilled
    assert "OUT_OF_MEMORY" in error.message
    assert [s for _, s in jobs_named(f"{ex.id.name}-n0-0")] == ["OUT_OF_MEMORY"]
    assert [s for _, s in jobs_named(f"{ex.id.name}-n0-1")] == ["COMPLETED"]


def test_abort_cancels_the_slurm_job(slurm, cfg, version):
    r, ex = start(cfg, version, "slow", s=600)
    name = f"{ex.id.name}-n0-0"
    wait_until(lambda: [s for _, s in jobs_named(name)] == ["RUNNING"], 60, "the job running")
    r.terminate(ex, "no longer needed")
    wait_until(lambda: [s for _, s in jobs_named(name)] == ["CANCELLED"], 30, "the job cancelled")
    assert squeue("--name", name, "--states=RUNNING,PENDING", "--format=%i") == []
    ex = wait_until(lambda: (e := r.fetch_execution(name=ex.id.name)).closure.phase == WP.ABORTED and e, 30,
                    "the execution aborted")


def test_jobs_survive_kill_9_of_contrail_and_their_outcome_is_recorded_once(slurm, cfg, version):
    r, ex = start(cfg, version, "slow", s=6)
    name = f"{ex.id.name}-n0-0"
    wait_until(lambda: [s for _, s in jobs_named(name)] == ["RUNNING"], 60, "the job running")
    slurm.kill9()
    # The job goes on without Contrail, and ends.
    wait_until(lambda: [s for _, s in jobs_named(name)] == ["COMPLETED"], 60, "the job completed")
    slurm.start()
    ex = finish(r, ex, 120)
    assert ex.closure.phase == WP.SUCCEEDED, ex.closure.error
    assert ex.outputs["o0"] == 6
    ex = r.sync(ex, sync_nodes=True)
    attempts = ex.node_executions["n0"].task_executions
    assert [t.closure.phase for t in attempts] == [3], "one attempt, succeeded"
    assert len(jobs_named(name)) == 1, "submitted once"
    assert jobs_named(f"{ex.id.name}-n0-1") == []


def test_a_scheduled_fire_takes_the_workflows_cluster_label_and_runs_on_slurm(slurm, cfg, tmp_path_factory):
    # The scheduler creates executions through an API that knows the configured executors,
    # so the workflow's `execution_cluster_label` attribute routes its fires to Slurm.
    from flyteidl.admin import launch_plan_pb2
    from flytekit.models import filters
    from flytekit.models.matchable_resource import ExecutionClusterLabel, MatchingAttributes

    from conftest import DOMAIN, PROJECT

    version = register_module(cfg, tmp_path_factory, "schedules")
    r = remote(cfg)
    r.client.update_workflow_attributes(
        PROJECT, DOMAIN, "schedules.stamped", MatchingAttributes(execution_cluster_label=ExecutionClusterLabel(LABEL)))
    lp = r.fetch_launch_plan(name="every_two", version=version)
    r.client.update_launch_plan(lp.id, launch_plan_pb2.ACTIVE)
    try:
        fired = wait_until(lambda: r.client.list_executions_paginated(
            PROJECT, DOMAIN, limit=5, filters=[filters.Equal("launch_plan.name", "every_two")])[0],
            30, "a scheduled fire")
    finally:
        r.client.update_launch_plan(lp.id, launch_plan_pb2.INACTIVE)
    ex = finish(r, r.fetch_execution(name=fired[-1].id.name), 180)
    assert ex.spec.execution_cluster_label.value == LABEL
    assert ex.closure.phase == WP.SUCCEEDED, ex.closure.error
    assert [s for _, s in jobs_named(f"{ex.id.name}-n0-0")] == ["COMPLETED"]
