"""Real `pyflyte register` and FlyteRemote (flytekit from PyPI) against the contrail binary."""
import os
import pathlib
import subprocess
import sys

import grpc
import pytest
from flyteidl.admin import common_pb2, launch_plan_pb2, task_pb2, workflow_pb2
from flyteidl.core import identifier_pb2, interface_pb2, literals_pb2, tasks_pb2, types_pb2, workflow_pb2 as core_wf
from flyteidl.service import admin_pb2_grpc
from flytekit.configuration import Config
from flytekit.remote import FlyteRemote

pytestmark = pytest.mark.scaleout

PROJECT, DOMAIN = "flytesnacks", "development"
MODULES = ["basic.py", "advanced.py", "cachevariants.py", "contract.py", "dc.py", "files.py"]
PYFLYTE = str(pathlib.Path(sys.executable).with_name("pyflyte"))


def pyflyte(config, cwd, *args):
    return subprocess.run([PYFLYTE, "-c", str(config), *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def register(config, cwd, version, modules=MODULES):
    return pyflyte(config, cwd, "register", "--version", version, *modules)


@pytest.fixture(scope="module")
def registered(server, config, workdir):
    r = register(config, workdir, "v1")
    assert r.returncode == 0, r.stdout + r.stderr
    return r


def remote(config):
    return FlyteRemote(config=Config.auto(str(config)), default_project=PROJECT, default_domain=DOMAIN)


def test_pyflyte_register_of_every_example_module_succeeds(registered):
    out = registered.stdout
    assert "Successfully registered" in out, out
    for entity in ["basic.add", "basic.basic_wf", "advanced.branch_wf", "advanced.parent_wf", "advanced.map_wf"]:
        assert entity in out


def test_fetched_entities_have_usable_compiled_closures(registered, config):
    r = remote(config)
    wf = r.fetch_workflow(name="basic.basic_wf", version="v1")
    assert sorted(n.id for n in wf.nodes) == ["n0", "n1"]
    assert {t.id.name for t in wf.flyte_tasks} >= {"basic.add", "basic.greet"}
    assert set(wf.interface.inputs) == {"a", "b", "name"}
    task = r.fetch_task(name="basic.add", version="v1")
    assert set(task.interface.inputs) == {"a", "b"}
    assert task.template.container.args[0].startswith("pyflyte-")
    lp = r.fetch_launch_plan(name="basic.basic_wf", version="v1")
    assert lp.workflow_id.name == "basic.basic_wf"
    assert lp.default_inputs.parameters["a"].default.scalar.primitive.integer == 1
    # Workflows with branches, subworkflows, launch-plan nodes and map tasks promote too.
    for name in ["advanced.branch_wf", "advanced.parent_wf", "advanced.map_wf", "advanced.dynamic_wf"]:
        w = r.fetch_workflow(name=name, version="v1")
        assert w.nodes, name
    # Latest-version lookup (ListTasks limit 1 sorted by created_at).
    assert r.fetch_task(name="basic.add").id.version == "v1"


def test_identical_reregistration_succeeds(registered, config, workdir):
    r = register(config, workdir, "v1")
    assert r.returncode == 0, r.stdout + r.stderr


def test_same_version_with_changed_code_is_rejected_naming_the_conflict(registered, config, workdir, tmp_path):
    changed = tmp_path / "changed"
    changed.mkdir()
    src = (workdir / "basic.py").read_text()
    (changed / "basic.py").write_text(src + "\n# a change\n")
    r = register(config, changed, "v1", ["basic.py"])
    assert r.returncode != 0
    text = r.stdout + r.stderr
    assert "different structure" in text and "basic." in text, text


def test_everything_survives_a_restart(registered, server, config):
    server.restart()
    r = remote(config)
    assert r.fetch_workflow(name="advanced.branch_wf", version="v1").nodes
    assert r.fetch_task(name="basic.greet", version="v1").id.version == "v1"


def test_uploaded_file_reads_back_through_the_s3_endpoint(server, config, tmp_path):
    f = tmp_path / "hello.txt"
    f.write_bytes(b"hello contrail\n")
    r = remote(config)
    _md5, native_url = r.upload_file(f)
    assert native_url.startswith("s3://"), native_url
    # A fresh client with only the README's config reads it with flytekit's own storage layer.
    out = tmp_path / "back.txt"
    remote(config).file_access.get_data(native_url, str(out))
    assert out.read_bytes() == b"hello contrail\n"


# ---- malformed requests: INVALID_ARGUMENT with a message naming the field, nothing stored ----

def stub(server):
    return admin_pb2_grpc.AdminServiceStub(grpc.insecure_channel(server.endpoint))


def ident(kind, name, version="bad1", project=PROJECT, domain=DOMAIN):
    return identifier_pb2.Identifier(resource_type=kind, project=project, domain=domain, name=name, version=version)


def int_type():
    return types_pb2.LiteralType(simple=types_pb2.INTEGER)


def str_type():
    return types_pb2.LiteralType(simple=types_pb2.STRING)


def task_req(name, version="bad1", project=PROJECT, description=""):
    tid = ident(identifier_pb2.TASK, name, version, project)
    iface = interface_pb2.TypedInterface(
        inputs=interface_pb2.VariableMap(variables={"x": interface_pb2.Variable(type=int_type())}),
        outputs=interface_pb2.VariableMap(variables={"o0": interface_pb2.Variable(type=str_type())}),
    )
    tmpl = tasks_pb2.TaskTemplate(id=tid, type="python-task", interface=iface,
                                  container=tasks_pb2.Container(image="img", args=["true", description]))
    return task_pb2.TaskCreateRequest(id=tid, spec=task_pb2.TaskSpec(template=tmpl))


def promise(node, var):
    return literals_pb2.BindingData(promise=types_pb2.OutputReference(node_id=node, var=var))


def wf_req(name, nodes, task_name):
    wid = ident(identifier_pb2.WORKFLOW, name)
    iface = interface_pb2.TypedInterface(
        inputs=interface_pb2.VariableMap(variables={"x": interface_pb2.Variable(type=int_type())}),
        outputs=interface_pb2.VariableMap(variables={}),
    )
    tmpl = core_wf.WorkflowTemplate(id=wid, interface=iface, nodes=nodes)
    return workflow_pb2.WorkflowCreateRequest(id=wid, spec=workflow_pb2.WorkflowSpec(template=tmpl))


def task_node(nid, task_name, binding, upstream=()):
    return core_wf.Node(
        id=nid, inputs=[literals_pb2.Binding(var="x", binding=binding)], upstream_node_ids=list(upstream),
        task_node=core_wf.TaskNode(reference_id=ident(identifier_pb2.TASK, task_name)),
    )


@pytest.fixture(scope="module")
def valid_task(server, registered):
    s = stub(server)
    s.CreateTask(task_req("malformed.ok"))
    return "malformed.ok"


CASES = [
    ("empty id", lambda: task_pb2.TaskCreateRequest(), "CreateTask", "id is missing"),
    ("empty name", lambda: task_req(""), "CreateTask", "id.name must not be empty"),
    ("illegal name", lambda: task_req("has space"), "CreateTask", "id.name"),
    ("empty version", lambda: task_req("malformed.t", version=""), "CreateTask", "id.version must not be empty"),
    ("unknown project", lambda: task_req("malformed.t", project="nope"), "CreateTask", "project [nope]"),
    ("oversize payload", lambda: task_req("malformed.big", description="x" * (9 * 1024 * 1024)), "CreateTask",
     "over the limit"),
    ("bad types", lambda: wf_req("malformed.types", [task_node("n0", "malformed.ok", promise("", "x")),
                                                      task_node("n1", "malformed.ok", promise("n0", "o0"))],
                                 "malformed.ok"), "CreateWorkflow", "cannot be bound"),
    ("cycle", lambda: wf_req("malformed.cycle", [task_node("n0", "malformed.ok", promise("", "x"), ["n1"]),
                                                  task_node("n1", "malformed.ok", promise("", "x"), ["n0"])],
                             "malformed.ok"), "CreateWorkflow", "cycle detected"),
    ("missing task", lambda: wf_req("malformed.missing", [task_node("n0", "malformed.nope", promise("", "x"))],
                                    "malformed.nope"), "CreateWorkflow", "is not registered"),
    ("launch plan of unknown workflow", lambda: launch_plan_pb2.LaunchPlanCreateRequest(
        id=ident(identifier_pb2.LAUNCH_PLAN, "malformed.lp"),
        spec=launch_plan_pb2.LaunchPlanSpec(workflow_id=ident(identifier_pb2.WORKFLOW, "malformed.none"))),
     "CreateLaunchPlan", "spec.workflow_id"),
]


@pytest.mark.parametrize("case,make,rpc,message", CASES, ids=[c[0] for c in CASES])
def test_malformed_request_is_invalid_argument_and_stores_nothing(server, valid_task, case, make, rpc, message):
    s = stub(server)
    req = make()
    with pytest.raises(grpc.RpcError) as e:
        getattr(s, rpc)(req, timeout=30)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (case, e.value.code(), e.value.details())
    assert message in e.value.details(), (case, e.value.details())
    if req.HasField("id") and req.id.name:
        lister = {"CreateTask": s.ListTasks, "CreateWorkflow": s.ListWorkflows, "CreateLaunchPlan": s.ListLaunchPlans}[rpc]
        got = lister(common_pb2.ResourceListRequest(
            id=common_pb2.NamedEntityIdentifier(project=req.id.project or PROJECT, domain=DOMAIN, name=req.id.name),
            limit=10))
        assert len(getattr(got, {"CreateTask": "tasks", "CreateWorkflow": "workflows",
                                 "CreateLaunchPlan": "launch_plans"}[rpc])) == 0


def test_lists_page_with_tokens_and_end_with_an_empty_token(server, registered):
    s = stub(server)
    seen, token = [], ""
    for _ in range(100):
        page = s.ListTaskIds(common_pb2.NamedEntityIdentifierListRequest(project=PROJECT, domain=DOMAIN, limit=3,
                                                                        token=token))
        seen += [e.name for e in page.entities]
        token = page.token
        if not token:
            break
    assert token == ""
    assert len(seen) == len(set(seen)) and "basic.add" in seen and len(seen) > 3
    f = s.ListTasks(common_pb2.ResourceListRequest(id=common_pb2.NamedEntityIdentifier(project=PROJECT, domain=DOMAIN),
                                                   filters="eq(version,v1)+eq(name,basic.add)", limit=10))
    assert [t.id.name for t in f.tasks] == ["basic.add"]


def test_activating_a_launch_plan_deactivates_other_versions(server, config, workdir):
    s = stub(server)
    r = register(config, workdir, "v2", ["basic.py"])
    assert r.returncode == 0, r.stdout + r.stderr
    for v in ["v1", "v2"]:
        s.UpdateLaunchPlan(launch_plan_pb2.LaunchPlanUpdateRequest(
            id=ident(identifier_pb2.LAUNCH_PLAN, "basic.basic_wf", v), state=launch_plan_pb2.ACTIVE))
    active = s.GetActiveLaunchPlan(launch_plan_pb2.ActiveLaunchPlanRequest(
        id=common_pb2.NamedEntityIdentifier(project=PROJECT, domain=DOMAIN, name="basic.basic_wf")))
    assert active.id.version == "v2"
    v1 = s.GetLaunchPlan(common_pb2.ObjectGetRequest(id=ident(identifier_pb2.LAUNCH_PLAN, "basic.basic_wf", "v1")))
    assert v1.closure.state == launch_plan_pb2.INACTIVE


def test_default_project_and_domains_exist(server):
    from flyteidl.admin import project_pb2
    s = stub(server)
    projects = s.ListProjects(project_pb2.ProjectListRequest())
    fs = [p for p in projects.projects if p.id == "flytesnacks"]
    assert fs and [d.id for d in fs[0].domains] == ["development", "staging", "production"]
    with pytest.raises(grpc.RpcError) as e:
        s.RegisterProject(project_pb2.ProjectRegisterRequest(project=project_pb2.Project(id="Bad Id", name="x")))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "project.id" in e.value.details()
