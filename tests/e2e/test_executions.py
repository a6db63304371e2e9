"""Executions end to end: `pyflyte run --remote` and FlyteRemote (flytekit from PyPI) against
the contrail binary, with tasks run by the local executor."""
import datetime
import os
import pathlib
import shutil
import signal
import subprocess
import uuid

import pytest
from flytekit.models.core.execution import WorkflowExecutionPhase as WP

from conftest import DOMAIN, PROJECT, PYFLYTE, remote, wait_until

HERE = pathlib.Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def wf_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("propeller")
    shutil.copy(HERE / "workflows" / "propeller.py", d / "propeller.py")
    return d


def run(config, cwd, wf, *inputs, wait=False, options=()):
    """`pyflyte run --remote`; returns (execution name, completed process)."""
    name = "e" + uuid.uuid4().hex[:12]
    args = [PYFLYTE, "-c", str(config), "run", "--remote", "--name", name, *options]
    if wait:
        args += ["--wait", "--poll-interval", "1"]
    p = subprocess.run([*args, "propeller.py", wf, *inputs], cwd=cwd, capture_output=True, text=True, timeout=600)
    return name, p


def finished(config, name, timeout_s=300):
    r = remote(config)
    ex = r.fetch_execution(name=name)
    return r, r.wait(ex, timeout=datetime.timedelta(seconds=timeout_s), poll_interval=datetime.timedelta(seconds=1))


def test_hello_world_runs_with_pyflyte_run_wait(server, config, wf_dir):
    name, p = run(config, wf_dir, "hello_wf", "--name", "contrail", wait=True)
    assert p.returncode == 0, p.stdout + p.stderr
    assert f"Execution {name} has succeeded" in p.stdout, p.stdout
    r, ex = finished(config, name)
    assert ex.closure.phase == WP.SUCCEEDED
    assert ex.outputs["o0"] == "hello contrail"
    # Node and task records are what FlyteRemote's sync walks.
    ex = r.sync(ex, sync_nodes=True)
    n0 = ex.node_executions["n0"]
    assert n0.closure.phase == 3  # SUCCEEDED
    assert [t.closure.phase for t in n0.task_executions] == [3]
    assert n0.task_executions[0].closure.logs, "task logs are exposed"
    assert n0.inputs["name"] == "contrail" and n0.outputs["o0"] == "hello contrail"
    assert {"start-node", "end-node", "n0"} <= set(ex.node_executions)
    # Flyte's blob layout: node inputs in the node data dir, outputs per attempt.
    wdir = f"metadata/propeller/{PROJECT}-{DOMAIN}-{name}"
    blobs = server.data_dir / "blobs" / "contrail"
    assert n0.input_uri == f"s3://contrail/{wdir}/n0/data/inputs.pb"
    assert (blobs / wdir / "n0" / "data" / "inputs.pb").is_file()
    assert (blobs / wdir / "n0" / "data" / "0" / "outputs.pb").is_file()
    assert (blobs / wdir / "start-node" / "data" / "0" / "outputs.pb").is_file()
    assert (blobs / wdir / "end-node" / "data" / "0" / "outputs.pb").is_file()


def test_a_chain_of_ten_tasks_passes_values_along(server, config, wf_dir):
    name, p = run(config, wf_dir, "chain_wf", "--x", "5")
    assert p.returncode == 0, p.stdout + p.stderr
    _, ex = finished(config, name)
    assert ex.closure.phase == WP.SUCCEEDED, ex.closure.error
    assert ex.outputs["o0"] == 15


def test_a_fan_out_of_twenty_fans_in(server, config, wf_dir):
    name, p = run(config, wf_dir, "fan_wf")
    assert p.returncode == 0, p.stdout + p.stderr
    r, ex = finished(config, name)
    assert ex.closure.phase == WP.SUCCEEDED, ex.closure.error
    assert ex.outputs["o0"] == sum(i * i for i in range(20))
    ex = r.sync(ex, sync_nodes=True)
    assert len([n for n in ex.node_executions if n.startswith("n")]) == 21


def test_recoverable_failures_are_retried_until_success(server, config, wf_dir, tmp_path):
    counter = tmp_path / "counter"
    name, p = run(config, wf_dir, "flaky_wf", "--counter", str(counter))
    assert p.returncode == 0, p.stdout + p.stderr
    r, ex = finished(config, name)
    assert ex.closure.phase == WP.SUCCEEDED, ex.closure.error
    assert ex.outputs["o0"] == 2
    assert counter.read_text() == "3"
    ex = r.sync(ex, sync_nodes=True)
    attempts = ex.node_executions["n0"].task_executions
    assert [t.id.retry_attempt for t in attempts] == [0, 1, 2]
    assert [t.closure.phase for t in attempts] == [5, 5, 3]  # FAILED, FAILED, SUCCEEDED
    assert "transient failure number 0" in attempts[0].closure.error.message


def test_a_non_recoverable_failure_fails_the_execution_with_the_users_message(server, config, wf_dir):
    name, p = run(config, wf_dir, "fail_wf", "--x", "9")
    assert p.returncode == 0, p.stdout + p.stderr
    r, ex = finished(config, name)
    assert ex.closure.phase == WP.FAILED
    assert "the user's own message: x=9" in ex.closure.error.message
    assert ex.closure.error.kind == 1  # USER
    ex = r.sync(ex, sync_nodes=True)
    # retries=3, but a non-recoverable user error is not retried
    assert len(ex.node_executions["n0"].task_executions) == 1


def test_flytefile_and_flytedirectory_flow_in_and_out(server, config, wf_dir, tmp_path):
    f = tmp_path / "in.txt"
    f.write_text("payload")
    d = tmp_path / "indir"
    d.mkdir()
    for i in range(3):
        (d / f"f{i}").write_text(str(i))
    name, p = run(config, wf_dir, "files_wf", "--f", str(f), "--d", str(d))
    assert p.returncode == 0, p.stdout + p.stderr
    r, ex = finished(config, name)
    assert ex.closure.phase == WP.SUCCEEDED, ex.closure.error
    o = ex.outputs
    assert o["o0"] == "payload" and o["o1"] == 3
    assert o["o4"] == "PAYLOAD:part0.txt,part1.txt,part2.txt,part3.txt"
    # Output blobs are s3:// URIs the client reads with its own storage config.
    file_uri = o.literals["o2"].scalar.blob.uri
    dir_uri = o.literals["o3"].scalar.blob.uri
    assert file_uri.startswith("s3://contrail/data/") and dir_uri.startswith("s3://contrail/data/")
    r.file_access.get_data(file_uri, str(tmp_path / "dl.txt"))
    assert (tmp_path / "dl.txt").read_text() == "PAYLOAD"
    r.file_access.get_data(dir_uri, str(tmp_path / "dl"), is_multipart=True)
    assert sorted(os.listdir(tmp_path / "dl")) == ["part0.txt", "part1.txt", "part2.txt", "part3.txt"]


def test_a_raw_container_task_runs_a_plain_command(server, config, wf_dir):
    name, p = run(config, wf_dir, "container_wf", "--x", "21")
    assert p.returncode == 0, p.stdout + p.stderr
    _, ex = finished(config, name)
    assert ex.closure.phase == WP.SUCCEEDED, ex.closure.error
    assert ex.outputs["o0"] == 42
    assert ex.outputs["o1"] == "21"


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie awaiting its reaper is gone for our purposes.
    try:
        return pathlib.Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_terminating_a_running_execution_aborts_it_and_kills_the_task(server, config, wf_dir, tmp_path):
    pidfile = tmp_path / "pid"
    name, p = run(config, wf_dir, "sleep_wf", "--pidfile", str(pidfile))
    assert p.returncode == 0, p.stdout + p.stderr
    pid = int(wait_until(lambda: pidfile.exists() and pidfile.read_text(), deadline_s=120, what="task start"))
    assert pid_alive(pid)
    r = remote(config)
    ex = r.fetch_execution(name=name)
    r.terminate(ex, "no longer needed")
    ex = r.wait(ex, timeout=datetime.timedelta(seconds=60), poll_interval=datetime.timedelta(seconds=1))
    assert ex.closure.phase == WP.ABORTED
    wait_until(lambda: not pid_alive(pid), deadline_s=30, what="task process gone")
    ex = r.sync(ex, sync_nodes=True)
    assert ex.node_executions["n0"].closure.phase == 6  # ABORTED
    assert ex.node_executions["n0"].task_executions[0].closure.phase == 4  # ABORTED


def test_bad_execution_requests_are_rejected_with_the_field_named(server, config, wf_dir):
    import grpc
    r = remote(config)
    name, p = run(config, wf_dir, "hello_wf", "--name", "x")
    assert p.returncode == 0, p.stdout + p.stderr
    ex = r.fetch_execution(name=name)
    lp = ex.spec.launch_plan
    from flytekit.models import literals
    from flytekit.models.execution import ExecutionMetadata, ExecutionSpec
    spec = ExecutionSpec(launch_plan=lp, metadata=ExecutionMetadata(mode=0, principal="t", nesting=0))
    bad_input = literals.LiteralMap({"nope": literals.Literal(scalar=literals.Scalar(primitive=literals.Primitive(integer=1)))})
    with pytest.raises(Exception) as e:
        r.client.create_execution(PROJECT, DOMAIN, "Bad_Name", spec, literals.LiteralMap({}))
    assert "name" in str(e.value) and "INVALID_ARGUMENT" in str(e.value)
    with pytest.raises(Exception) as e:
        r.client.create_execution(PROJECT, DOMAIN, "ok-name-1", spec, bad_input)
    assert "inputs.nope" in str(e.value) and "INVALID_ARGUMENT" in str(e.value)
    # The duplicate name is ALREADY_EXISTS, which flytekit treats as "same execution".
    with pytest.raises(Exception) as e:
        r.client.create_execution(PROJECT, DOMAIN, name, spec, literals.LiteralMap({}))
    assert "ALREADY_EXISTS" in str(e.value) or "already exists" in str(e.value).lower()
    # Nothing was created by the rejected requests.
    names = {x.id.name for x in r.client.list_executions_paginated(PROJECT, DOMAIN, limit=1000)[0]}
    assert "ok-name-1" not in names and name in names


def test_a_single_task_runs_as_its_own_execution(server, config, wf_dir):
    name, p = run(config, wf_dir, "hello", "--name", "task")
    assert p.returncode == 0, p.stdout + p.stderr
    r, ex = finished(config, name)
    assert ex.closure.phase == WP.SUCCEEDED, ex.closure.error
    assert ex.spec.launch_plan.resource_type == 1  # TASK, as flytekit sent it
    assert ex.outputs["o0"] == "hello task"
    ex = r.sync(ex, sync_nodes=True)
    assert set(ex.node_executions) == {"start-node", "end-node", "propellerhello"}


def test_executions_list_with_filters_sort_and_paging_and_relaunch_reuses_inputs(server, config, wf_dir):
    from flytekit.models import filters
    from flytekit.models.admin.common import Sort

    name, p = run(config, wf_dir, "hello_wf", "--name", "again", wait=True)
    assert p.returncode == 0, p.stdout + p.stderr
    r = remote(config)
    c = r.client
    ok, token = c.list_executions_paginated(PROJECT, DOMAIN, limit=1000, filters=[filters.Equal("phase", "SUCCEEDED")])
    assert name in {e.id.name for e in ok} and token == ""
    assert all(e.closure.phase == WP.SUCCEEDED for e in ok)
    failed, _ = c.list_executions_paginated(PROJECT, DOMAIN, limit=1000, filters=[filters.Equal("phase", "FAILED")])
    assert name not in {e.id.name for e in failed}
    seen, token = [], ""
    while True:
        page, token = c.list_executions_paginated(PROJECT, DOMAIN, limit=1, token=token,
                                                  sort_by=Sort("created_at", Sort.Direction.ASCENDING))
        seen += page
        if not token:
            break
    created = [e.closure.created_at for e in seen]
    assert created == sorted(created) and len({e.id.name for e in seen}) == len(seen) >= 2
    new_id = c.relaunch_execution(r.fetch_execution(name=name).id, name=f"{name}-re")
    ex = r.wait(r.fetch_execution(name=new_id.name), timeout=datetime.timedelta(seconds=120),
                poll_interval=datetime.timedelta(seconds=1))
    assert ex.closure.phase == WP.SUCCEEDED and ex.outputs["o0"] == "hello again"
    assert ex.spec.metadata.mode == 3  # RELAUNCH


def test_tasks_see_envvars_secrets_flyte_ids_and_their_output_is_logged(server, config, wf_dir):
    secret = server.data_dir / "secrets" / "db" / "password"
    secret.parent.mkdir(parents=True, exist_ok=True)
    secret.write_text("s3cret")
    name, p = run(config, wf_dir, "env_wf", options=["--envvars", "MY_VAR=hi"])
    assert p.returncode == 0, p.stdout + p.stderr
    r, ex = finished(config, name)
    assert ex.closure.phase == WP.SUCCEEDED, ex.closure.error
    assert [ex.outputs[f"o{i}"] for i in range(4)] == ["hi", "s3cret", name, "0"]
    ex = r.sync(ex, sync_nodes=True)
    logs = ex.node_executions["n0"].task_executions[0].closure.logs
    stdout = next(l.uri for l in logs if l.name.startswith("stdout"))
    # Served over HTTP by the server (the attempt has ended: the answer ends too).
    assert stdout.startswith("http://") and "/logs/" in stdout, stdout
    import urllib.request

    with urllib.request.urlopen(stdout, timeout=30) as resp:
        assert "probe-stdout-marker" in resp.read().decode()


def test_concurrent_creates_of_one_name_give_one_execution_with_its_own_inputs(server, config, tmp_path_factory):
    import concurrent.futures

    import grpc
    from flyteidl.admin import execution_pb2
    from flyteidl.core import identifier_pb2, literals_pb2
    from flyteidl.service import admin_pb2_grpc

    from conftest import register_module

    version = register_module(config, tmp_path_factory, "propeller")
    stub = admin_pb2_grpc.AdminServiceStub(grpc.insecure_channel(server.endpoint))
    lp = identifier_pb2.Identifier(resource_type=identifier_pb2.LAUNCH_PLAN, project=PROJECT, domain=DOMAIN,
                                   name="propeller.hello_wf", version=version)
    name = "race" + uuid.uuid4().hex[:8]

    def create(i):
        inputs = literals_pb2.LiteralMap(literals={"name": literals_pb2.Literal(scalar=literals_pb2.Scalar(
            primitive=literals_pb2.Primitive(string_value=f"caller-{i}")))})
        try:
            stub.CreateExecution(execution_pb2.ExecutionCreateRequest(
                project=PROJECT, domain=DOMAIN, name=name, inputs=inputs,
                spec=execution_pb2.ExecutionSpec(launch_plan=lp)))
            return i
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.ALREADY_EXISTS, e
            return None

    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        winners = [i for i in pool.map(create, range(20)) if i is not None]
    assert len(winners) == 1, winners
    r = remote(config)
    ex = r.wait(r.fetch_execution(name=name), timeout=datetime.timedelta(seconds=120),
                poll_interval=datetime.timedelta(seconds=1))
    assert ex.closure.phase == WP.SUCCEEDED, ex.closure.error
    assert ex.inputs["name"] == f"caller-{winners[0]}"
    assert ex.outputs["o0"] == f"hello caller-{winners[0]}"
