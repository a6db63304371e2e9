"""Every node kind end to end: the workflows in workflows/nodes.py are registered with
`pyflyte register` and run through FlyteRemote against the contrail binary; outputs,
node records and child executions are checked the way FlyteRemote reads them."""
import grpc
import pytest
from flytekit.models.core.execution import NodeExecutionPhase as NP
from flytekit.models.core.execution import WorkflowExecutionPhase as WP
from flytekit.models.core.identifier import NodeExecutionIdentifier

from conftest import DOMAIN, PROJECT, execute, finish, register_module, wait_until

pytestmark = pytest.mark.scaleout


def register(config, tmp_path_factory) -> str:
    return register_module(config, tmp_path_factory, "nodes")


@pytest.fixture(scope="module")
def version(server, config, tmp_path_factory):
    return register(config, tmp_path_factory)


def start(config, version, wf, **inputs):
    return execute(config, version, f"nodes.{wf}", **inputs)


def run(config, version, wf, **inputs):
    r, ex = start(config, version, wf, **inputs)
    return r, finish(r, ex)


def children(r, ex, parent):
    """Node executions listed under a parent node (what FlyteRemote's sync asks for)."""
    nodes, _ = r.client.list_node_executions(ex.id, unique_parent_id=parent, limit=100)
    return {n.id.node_id: n for n in nodes}


@pytest.mark.parametrize("x,expected", [(3, -3), (4, 8), (11, 121)])
def test_a_branch_runs_the_first_true_case_and_skips_the_others(config, version, x, expected):
    r, ex = run(config, version, "branch_wf", x=x)
    assert ex.closure.phase == WP.SUCCEEDED, ex.closure.error
    assert ex.outputs["o0"] == expected
    ex = r.sync(ex, sync_nodes=True)
    n1 = ex.node_executions["n1"]
    assert n1.metadata.is_parent_node
    chosen = {3: "n1-n2", 4: "n1-n0", 11: "n1-n1"}[x]
    kids = children(r, ex, "n1")
    assert kids[chosen].closure.phase == NP.SUCCEEDED
    assert {k for k, n in kids.items() if n.closure.phase == NP.SKIPPED} == {"n1-n0", "n1-n1", "n1-n2"} - {chosen}
    out = r.client.get_node_execution_data(n1.id).full_outputs.literals["o0"]
    assert out.scalar.primitive.integer == expected


@pytest.mark.parametrize("x,expected", [(1, 2), (2, 4), (-5, 5)])
def test_nested_branches_with_conjunctions_and_a_subworkflow_inside(config, version, x, expected):
    r, ex = run(config, version, "nested_branch_wf", x=x)
    assert ex.closure.phase == WP.SUCCEEDED, ex.closure.error
    assert ex.outputs["o0"] == expected


@pytest.mark.parametrize("x,expected", [(3, 3), (12, 24)])
def test_an_empty_branch_echoes_its_input_without_a_process(config, version, server, x, expected):
    def attempts():
        return len(list((server.data_dir / "attempts").glob("*/*/*")))

    before = attempts()
    r, ex = run(config, version, "echo_wf", x=x)
    assert ex.closure.phase == WP.SUCCEEDED, ex.closure.error
    assert ex.outputs["o0"] == expected
    # The echo branch starts no process; the other branch runs one task.
    assert attempts() - before == (0 if x < 10 else 1)
    if x < 10:
        kid = children(r, ex, "n0")["n0-n1"]
        assert kid.closure.phase == NP.SUCCEEDED
        tasks = r.client.list_task_executions_paginated(kid.id, limit=10)[0]
        assert [t.closure.phase for t in tasks] == [3]


def test_a_branch_whose_else_fails_fails_with_the_users_message(config, version):
    r, ex = run(config, version, "nested_branch_wf", x=0)
    assert ex.closure.phase == WP.FAILED
    assert "x must not be zero" in ex.closure.error.message


def test_subworkflow_nodes_nest_and_launch_plan_nodes_start_child_executions(config, version):
    r, ex = run(config, version, "parent_wf", x=2)
    assert ex.closure.phase == WP.SUCCEEDED, ex.closure.error
    assert ex.outputs["o0"] == 8 and ex.outputs["o1"] == 128
    ex = r.sync(ex, sync_nodes=True)
    # The inlined subworkflow's nodes are listed under it, with Flyte's unique ids.
    assert ex.node_executions["n0"].metadata.is_parent_node
    kids = children(r, ex, "n0")
    assert set(kids) == {"n0-0-n0", "n0-0-n1"}
    assert {k.metadata.spec_node_id for k in kids.values()} == {"n0", "n1"}
    assert all(k.closure.phase == NP.SUCCEEDED for k in kids.values())
    # The launch-plan node points at its child execution.
    n1 = r.client.get_node_execution(ex.node_executions["n1"].id)
    child_id = n1.closure.workflow_node_metadata.execution_id
    child = r.fetch_execution(name=child_id.name)
    assert child.closure.phase == WP.SUCCEEDED
    assert child.spec.metadata.mode == 4  # CHILD_WORKFLOW
    assert child.spec.metadata.parent_node_execution.node_id == "n1"
    assert child.spec.metadata.parent_node_execution.execution_id.name == ex.id.name
    assert child.outputs["o0"] == 128
    assert ex.node_executions["n1"].outputs["o0"] == 128


def test_an_array_node_over_a_launch_plan_runs_a_child_execution_per_item(config, version):
    r, ex = run(config, version, "array_lp_wf", xs=[1, 2, 3])
    assert ex.closure.phase == WP.SUCCEEDED, ex.closure.error
    # sub_wf(x) = 2 * x * x
    assert ex.outputs["o0"] == [2, 8, 18]
    children_of = [
        e for e in r.client.list_executions_paginated(PROJECT, DOMAIN, limit=200)[0]
        if e.spec.metadata.parent_node_execution
        and e.spec.metadata.parent_node_execution.execution_id.name == ex.id.name
    ]
    assert len(children_of) == 3
    assert all(c.spec.metadata.mode == 4 for c in children_of)


def test_terminating_a_parent_aborts_its_child_execution(config, version):
    r, ex = start(config, version, "parent_of_slow_wf", x=1)

    def child():
        nodes, _ = r.client.list_node_executions(ex.id, limit=100)
        n0 = [n for n in nodes if n.id.node_id == "n0"]
        return n0 and n0[0].closure.workflow_node_metadata and n0[0].closure.workflow_node_metadata.execution_id

    child_id = wait_until(child, 60, "child execution")
    wait_until(lambda: r.client.get_execution(child_id).closure.phase == WP.RUNNING, 60, "child running")
    r.terminate(ex, "stop the family")
    ex = finish(r, ex)
    assert ex.closure.phase == WP.ABORTED
    c = finish(r, r.fetch_execution(name=child_id.name))
    assert c.closure.phase == WP.ABORTED
    assert "cascading abort" in c.closure.abort_metadata.cause


def test_a_dynamic_node_runs_its_generated_workflow_with_nested_dynamic_and_subworkflow(config, version, server):
    from flyteidl.admin import node_execution_pb2
    from flyteidl.service import admin_pb2_grpc

    r, ex = run(config, version, "dynamic_wf", n=3)
    assert ex.closure.phase == WP.SUCCEEDED, ex.closure.error
    # dyn(3) = [0, 1, 4]; sub_wf(3) = 18
    assert ex.outputs["o0"] == 23
    n0 = r.client.get_node_execution(NodeExecutionIdentifier("n0", ex.id))
    assert n0.metadata.is_dynamic and n0.metadata.is_parent_node
    stub = admin_pb2_grpc.AdminServiceStub(grpc.insecure_channel(server.endpoint))
    wf = stub.GetDynamicNodeWorkflow(node_execution_pb2.GetDynamicNodeWorkflowRequest(id=n0.id.to_flyte_idl()))
    ids = {n.id for n in wf.compiled_workflow.primary.template.nodes}
    assert {"dn0", "dn1", "dn2"} <= ids
    data = r.client.get_node_execution_data(n0.id)
    assert data.dynamic_workflow is not None
    assert {n.id for n in data.dynamic_workflow.compiled_workflow.primary.template.nodes} == ids
    kids = children(r, ex, "n0")
    assert {"n0-0-dn0", "n0-0-dn1", "n0-0-dn2"} <= set(kids)
    # The nested dynamic's own children nest one level further.
    nested = [k for k, n in kids.items() if n.metadata.is_dynamic]
    assert nested and children(r, ex, nested[0])
    synced = r.sync(ex, sync_nodes=True)
    assert synced.node_executions["n0"].outputs["o0"] == 23


@pytest.mark.parametrize(
    "wf,inputs,expected",
    [
        ("map_wf", {"xs": [1, 2, 3]}, [1, 4, 9]),
        ("map_ratio_wf", {"xs": [1, 2, 3, 4]}, [10, 20, None, 40]),
        ("map_attr_wf", {"n": 4}, [0, 1, 4, 9]),
        ("dyn_map_wf", {"n": 3}, [0, 2, 4]),
    ],
)
def test_map_tasks_gather_item_outputs(config, version, wf, inputs, expected):
    r, ex = run(config, version, wf, **inputs)
    assert ex.closure.phase == WP.SUCCEEDED, ex.closure.error
    assert ex.outputs["o0"] == expected


def test_a_map_inside_a_dynamic_workflow_reports_one_task_execution(config, version):
    from flyteidl.admin import task_execution_pb2

    r, ex = run(config, version, "dyn_map_wf", n=3)
    assert ex.closure.phase == WP.SUCCEEDED, ex.closure.error
    kids = children(r, ex, "n0")
    arrays = [n for n in kids.values() if n.metadata.is_array]
    assert len(arrays) == 1, list(kids)
    raw = r.client._stub.ListTaskExecutions(task_execution_pb2.TaskExecutionListRequest(
        node_execution_id=arrays[0].id.to_flyte_idl(), limit=10), metadata=r.client._metadata).task_executions
    assert len(raw) == 1 and raw[0].closure.task_type == "container_array"
    assert sorted(e.index for e in raw[0].closure.metadata.external_resources) == [0, 1, 2]


def test_a_map_item_that_fails_recoverably_is_retried_alone(config, version, tmp_path):
    r, ex = run(config, version, "map_retry_wf", marks=str(tmp_path), xs=[0, 1, 2])
    assert ex.closure.phase == WP.SUCCEEDED, ex.closure.error
    assert ex.outputs["o0"] == [100, 101, 102]
    runs = {p.name: p.read_text() for p in tmp_path.iterdir()}
    assert runs == {"0": "1", "1": "2", "2": "1"}
    # Flyte 1's reporting: one TaskExecution on the array node, one external resource per
    # item attempt (item 1 failed once, then succeeded), as FlyteRemote and the console read.
    synced = r.sync(ex, sync_nodes=True)
    tasks = synced.node_executions["n0"].task_executions
    assert len(tasks) == 1
    assert tasks[0].id.retry_attempt == 0 and tasks[0].outputs["o0"] == [100, 101, 102]
    # flytekit's model drops the closure's metadata: read the raw record.
    from flyteidl.admin import task_execution_pb2

    raw = r.client._stub.ListTaskExecutions(task_execution_pb2.TaskExecutionListRequest(
        node_execution_id=NodeExecutionIdentifier("n0", ex.id).to_flyte_idl(), limit=10),
        metadata=r.client._metadata).task_executions
    assert len(raw) == 1
    t = raw[0]
    assert t.closure.task_type == "container_array" and t.closure.phase == 3  # SUCCEEDED
    resources = t.closure.metadata.external_resources
    assert sorted((e.index, e.retry_attempt, e.phase) for e in resources) == [
        (0, 0, 3), (1, 0, 5), (1, 1, 3), (2, 0, 3)]
    assert len({e.external_id for e in resources}) == 4


def test_a_map_task_below_its_success_ratio_fails_and_names_the_item(config, version):
    r, ex = run(config, version, "map_strict_wf", xs=[1, 2, 3, 4])
    assert ex.closure.phase == WP.FAILED
    assert ex.closure.error.code == "ArrayNodeFailed"
    assert "1 of 4 items failed" in ex.closure.error.message
    assert "three is not allowed" in ex.closure.error.message
    nodes, _ = r.client.list_node_executions(ex.id, limit=100)
    arr = [n for n in nodes if n.id.node_id == "n0"][0]
    assert arr.metadata.is_array


def test_gates_sleep_wait_for_a_typed_signal_and_an_approval(config, version):
    r, ex = start(config, version, "gate_wf", x=3)
    wait_until(lambda: {s.id.signal_id for s in r.list_signals(ex.id.name)} == {"approve-square", "extra"},
               60, "both signals")
    # A value of the wrong type is refused and changes nothing.
    with pytest.raises(Exception) as e:
        r.set_signal("extra", ex.id.name, "four")
    assert "INVALID_ARGUMENT" in str(e.value) or "BadInput" in str(e.value), e.value
    assert r.fetch_execution(name=ex.id.name).closure.phase == WP.RUNNING
    r.set_signal("extra", ex.id.name, 4)
    r.approve("approve-square", ex.id.name)
    ex = finish(r, ex)
    assert ex.closure.phase == WP.SUCCEEDED, ex.closure.error
    assert ex.outputs["o0"] == 13
    got = {s.id.signal_id: s.value for s in r.list_signals(ex.id.name)}
    assert got["extra"].scalar.primitive.integer == 4


def test_a_rejected_approval_fails_and_an_unset_signal_times_out(config, version):
    r, ex = start(config, version, "approve_wf", x=3)
    wait_until(lambda: r.list_signals(ex.id.name), 60, "approval signal")
    r.reject("ok-to-go", ex.id.name)
    ex = finish(r, ex)
    assert ex.closure.phase == WP.FAILED
    assert ex.closure.error.code == "ReceivedRejectSignal"
    r, ex = run(config, version, "short_gate_wf")
    assert ex.closure.phase == WP.FAILED
    assert "not satisfied within 2s" in ex.closure.error.message


def test_setting_an_unknown_signal_is_not_found(config, version):
    r, ex = start(config, version, "approve_wf", x=2)
    with pytest.raises(Exception) as e:
        r.set_signal("no-such-signal", ex.id.name, True)
    assert "NOT_FOUND" in str(e.value) or "NotFound" in type(e.value).__name__ or "not exist" in str(e.value)
    wait_until(lambda: r.list_signals(ex.id.name), 60, "approval signal")
    r.approve("ok-to-go", ex.id.name)
    assert finish(r, ex).outputs["o0"] == 4


def test_the_failure_node_runs_and_the_workflow_still_fails_with_the_original_error(config, version, tmp_path):
    marker = tmp_path / "marker"
    r, ex = run(config, version, "failing_wf", x=1, marker=str(marker))
    assert ex.closure.phase == WP.FAILED
    assert "boom 1" in ex.closure.error.message
    assert marker.read_text() == "cleaned 1"
    nodes, _ = r.client.list_node_executions(ex.id, limit=100)
    assert {n.id.node_id: n.closure.phase for n in nodes}["fn0"] == NP.SUCCEEDED


def test_a_subworkflows_failure_node_runs_inside_it(config, version, tmp_path):
    marker = tmp_path / "marker"
    r, ex = run(config, version, "parent_of_failing_sub", x=2, marker=str(marker))
    assert ex.closure.phase == WP.FAILED
    assert "boom 2" in ex.closure.error.message
    assert marker.read_text() == "cleaned 2"
    kids = children(r, ex, "n0")
    assert kids["n0-0-fn0"].closure.phase == NP.SUCCEEDED
    assert kids["n0-0-n0"].closure.phase == NP.FAILED


def test_an_eager_workflow_reaches_the_admin_api_from_its_task(config, version):
    r, ex = run(config, version, "eager_wf", x=1)
    assert ex.closure.phase == WP.SUCCEEDED, ex.closure.error
    assert ex.outputs["o0"] == 30


def test_recover_reuses_what_succeeded_and_reruns_the_rest(config, version, tmp_path):
    count, flag = tmp_path / "count", tmp_path / "flag"
    r, ex = run(config, version, "recover_wf", path=str(count), flag=str(flag), x=1)
    assert ex.closure.phase == WP.FAILED
    assert count.read_text() == "1"
    flag.write_text("now it exists")
    new = r.client.recover_execution(ex.id)
    ex2 = finish(r, r.fetch_execution(name=new.name))
    assert ex2.closure.phase == WP.SUCCEEDED, ex2.closure.error
    assert ex2.outputs["o0"] == 200
    assert count.read_text() == "1", "the recovered node ran again"
    assert ex2.spec.metadata.mode == 5  # RECOVERED
    assert ex2.spec.metadata.reference_execution.name == ex.id.name
    nodes, _ = r.client.list_node_executions(ex2.id, limit=100)
    phases = {n.id.node_id: n.closure.phase for n in nodes}
    assert phases["n0"] == NP.RECOVERED and phases["n1"] == NP.SUCCEEDED
    # Relaunch runs everything again with the same inputs.
    again = r.client.relaunch_execution(ex2.id)
    ex3 = finish(r, r.fetch_execution(name=again.name))
    assert ex3.outputs["o0"] == 200 and count.read_text() == "2"


def test_signal_and_recover_requests_with_bad_input_are_rejected(config, version, server):
    from flyteidl.admin import execution_pb2, signal_pb2
    from flyteidl.core import identifier_pb2
    from flyteidl.service import admin_pb2_grpc, signal_pb2_grpc

    ch = grpc.insecure_channel(server.endpoint)
    sig = signal_pb2_grpc.SignalServiceStub(ch)
    with pytest.raises(grpc.RpcError) as e:
        sig.SetSignal(signal_pb2.SignalSetRequest())
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "id" in e.value.details()
    with pytest.raises(grpc.RpcError) as e:
        sig.ListSignals(signal_pb2.SignalListRequest())
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    admin = admin_pb2_grpc.AdminServiceStub(ch)
    with pytest.raises(grpc.RpcError) as e:
        admin.RecoverExecution(execution_pb2.ExecutionRecoverRequest(
            id=identifier_pb2.WorkflowExecutionIdentifier(project=PROJECT, domain=DOMAIN, name="nope")))
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
