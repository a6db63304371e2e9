"""Hostile and malformed requests, each refused with the right code, a message naming the
field, and nothing stored (every list the request could have touched is the same after).
The server's log must show no panic. Runs against the embedded server (no auth)."""
import base64
import hashlib
import json
import pathlib
import urllib.error
import urllib.request

import grpc
import pytest
from flyteidl.admin import common_pb2, execution_pb2, launch_plan_pb2, matchable_resource_pb2, project_pb2
from flyteidl.admin import node_execution_pb2, schedule_pb2, signal_pb2
from flyteidl.admin import project_attributes_pb2, project_domain_attributes_pb2, workflow_attributes_pb2
from flyteidl.admin import description_entity_pb2
from flyteidl.admin import task_pb2, workflow_pb2
from flyteidl.core import identifier_pb2, interface_pb2, literals_pb2, types_pb2
from flyteidl.datacatalog import datacatalog_pb2 as dc
from flyteidl.datacatalog import datacatalog_pb2_grpc
from flyteidl.service import admin_pb2_grpc, dataproxy_pb2, dataproxy_pb2_grpc, signal_pb2_grpc
from google.protobuf import json_format

from conftest import FIXTURES, PROJECT, DOMAIN, register_module, remote, wait_until

C = grpc.StatusCode
DUMPS = FIXTURES / "flytekit-wire" / "dumps"


class Wire:
    """Stubs on one channel, and the state every case compares before and after."""

    def __init__(self, server):
        self.server = server
        self.channel = grpc.insecure_channel(f"127.0.0.1:{server.port}",
                                             options=[("grpc.max_receive_message_length", 64 << 20),
                                                      ("grpc.max_send_message_length", 128 << 20)])
        self.admin = admin_pb2_grpc.AdminServiceStub(self.channel)
        self.proxy = dataproxy_pb2_grpc.DataProxyServiceStub(self.channel)
        self.signals = signal_pb2_grpc.SignalServiceStub(self.channel)
        self.catalog = datacatalog_pb2_grpc.DataCatalogStub(self.channel)

    def raw(self, path, body: bytes):
        call = self.channel.unary_unary(path, request_serializer=lambda b: b, response_deserializer=lambda b: b)
        return call(body, timeout=30)

    def snapshot(self):
        ids = common_pb2.NamedEntityIdentifierListRequest(project=PROJECT, domain=DOMAIN, limit=10000)
        lst = common_pb2.ResourceListRequest(id=common_pb2.NamedEntityIdentifier(project=PROJECT, domain=DOMAIN),
                                             limit=10000)
        return (
            sorted(e.name for e in self.admin.ListTaskIds(ids).entities),
            len(self.admin.ListTasks(common_pb2.ResourceListRequest(
                id=common_pb2.NamedEntityIdentifier(project=PROJECT, domain=DOMAIN, name="hostile.t"),
                limit=10000)).tasks),
            sorted(e.name for e in self.admin.ListWorkflowIds(ids).entities),
            sorted(e.name for e in self.admin.ListLaunchPlanIds(ids).entities),
            sorted(e.id.name for e in self.admin.ListExecutions(lst).executions),
            sorted(p.id for p in self.admin.ListProjects(project_pb2.ProjectListRequest(limit=1000)).projects),
            [(s.id.signal_id, s.value.SerializeToString()) for s in self.signals.ListSignals(
                signal_pb2.SignalListRequest(workflow_execution_id=self.gate_exec, limit=100)).signals],
            len(self.catalog.ListDatasets(dc.ListDatasetsRequest(pagination=dc.PaginationOptions(limit=1000))).datasets),
            [c.SerializeToString() for r in range(8) for c in self.admin.ListMatchableAttributes(
                matchable_resource_pb2.ListMatchableAttributesRequest(resource_type=r)).configurations],
        )


@pytest.fixture(scope="module")
def wire(server, config, tmp_path_factory):
    w = Wire(server)
    w.version = register_module(config, tmp_path_factory, "nodes")
    r = remote(config)
    lp = r.fetch_launch_plan(name="nodes.approve_wf", version=w.version)
    ex = r.execute(lp, inputs={"x": 3})
    w.gate_exec = identifier_pb2.WorkflowExecutionIdentifier(project=PROJECT, domain=DOMAIN, name=ex.id.name)
    # The approval gate is waiting: its signal exists.
    req = signal_pb2.SignalListRequest(workflow_execution_id=w.gate_exec, limit=10)
    wait_until(lambda: len(w.signals.ListSignals(req).signals) == 1, 120, "the gate's signal")
    # A dataset the catalog cases can refer to.
    w.catalog.CreateDataset(dc.CreateDatasetRequest(dataset=dc.Dataset(id=dc.DatasetID(
        project=PROJECT, domain=DOMAIN, name="hostile-ds", version="1"))))
    yield w
    w.channel.close()


# ---------------------------------------------------------------- helpers building requests

def listing(**fields):
    """A list request over flytesnacks/development."""
    return common_pb2.ResourceListRequest(id=common_pb2.NamedEntityIdentifier(project=PROJECT, domain=DOMAIN),
                                          **fields)


def ident(rt=identifier_pb2.TASK, project=PROJECT, domain=DOMAIN, name="hostile.t", version="v1"):
    return identifier_pb2.Identifier(resource_type=rt, project=project, domain=domain, name=name, version=version)


def int_lit(v):
    return literals_pb2.Literal(scalar=literals_pb2.Scalar(primitive=literals_pb2.Primitive(integer=v)))


def str_lit(v):
    return literals_pb2.Literal(scalar=literals_pb2.Scalar(primitive=literals_pb2.Primitive(string_value=v)))


def int_type():
    return types_pb2.LiteralType(simple=types_pb2.INTEGER)


def recorded(kind, name):
    """A registration flytekit made (proto-JSON from the fixtures)."""
    for path in sorted(DUMPS.glob(f"*/{kind}/{name}__*.json")):
        return json.loads(path.read_text())
    raise FileNotFoundError(name)


def recorded_task():
    req = task_pb2.TaskCreateRequest()
    json_format.ParseDict(recorded("tasks", "basic.add"), req, ignore_unknown_fields=True)
    return req


def task_request(**id_fields):
    req = recorded_task()
    req.id.CopyFrom(ident(**id_fields))
    req.spec.template.id.CopyFrom(req.id)
    return req


def lp_request(wire, mutate):
    lp = launch_plan_pb2.LaunchPlanCreateRequest(
        id=ident(identifier_pb2.LAUNCH_PLAN, name="hostile.lp"),
        spec=launch_plan_pb2.LaunchPlanSpec(
            workflow_id=ident(identifier_pb2.WORKFLOW, name="nodes.approve_wf", version=wire.version)))
    mutate(lp)
    return lp


def exec_request(wire, inputs=None, **spec):
    return execution_pb2.ExecutionCreateRequest(
        project=PROJECT, domain=DOMAIN, name="hostile-exec",
        spec=execution_pb2.ExecutionSpec(
            launch_plan=ident(identifier_pb2.LAUNCH_PLAN, name="nodes.approve_wf", version=wire.version), **spec),
        inputs=literals_pb2.LiteralMap(literals=inputs or {}))


def nested_literal_bytes(depth):
    """A Literal nested `depth` collections deep, encoded by hand (no client would send it)."""
    def field(number, payload):
        tag = (number << 3) | 2
        return varint(tag) + varint(len(payload)) + payload

    inner = b""
    for _ in range(depth):
        inner = field(2, field(1, inner))  # Literal.collection -> LiteralCollection.literals
    return inner


def varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def exec_with_nested_input(depth):
    entry = b"\x0a\x01x" + b"\x12" + varint(len(nested_literal_bytes(depth))) + nested_literal_bytes(depth)
    literal_map = b"\x0a" + varint(len(entry)) + entry
    head = execution_pb2.ExecutionCreateRequest(project=PROJECT, domain=DOMAIN, name="deep").SerializeToString()
    return head + b"\x2a" + varint(len(literal_map)) + literal_map


# ---------------------------------------------------------------- the cases

CASES = []


def case(name, code, names):
    def add(fn):
        CASES.append(pytest.param(fn, code, names, id=name))
        return fn
    return add


# 1. Undecodable bodies, for many methods: garbage, truncated, wrong wire types.
METHODS = [
    "/flyteidl.service.AdminService/CreateTask", "/flyteidl.service.AdminService/CreateWorkflow",
    "/flyteidl.service.AdminService/CreateLaunchPlan", "/flyteidl.service.AdminService/CreateExecution",
    "/flyteidl.service.AdminService/ListTasks", "/flyteidl.service.AdminService/GetExecution",
    "/flyteidl.service.AdminService/ListExecutions", "/flyteidl.service.AdminService/TerminateExecution",
    "/flyteidl.service.AdminService/RegisterProject", "/flyteidl.service.AdminService/UpdateLaunchPlan",
    "/flyteidl.service.AdminService/ListNodeExecutions", "/flyteidl.service.DataProxyService/CreateUploadLocation",
    "/flyteidl.service.SignalService/SetSignal", "/flyteidl.service.SignalService/GetOrCreateSignal",
    "/datacatalog.DataCatalog/CreateArtifact", "/flyteidl.service.AdminService/UpdateProjectDomainAttributes",
]
GARBAGE = {
    "garbage": b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff",
    "truncated": task_request().SerializeToString()[:37],
    "wire-type": b"\x0b\x0c\x0d",
}
for method in METHODS:
    for kind, body in GARBAGE.items():
        def call(w, method=method, body=body):
            w.raw(method, body)
        case(f"decode-{kind}-{method.rsplit('/', 1)[1]}", C.INVALID_ARGUMENT, ["decode"])(call)

for depth in (101, 150, 400):
    case(f"decode-nested-{depth}", C.INVALID_ARGUMENT, ["decode"])(
        lambda w, depth=depth: w.raw("/flyteidl.service.AdminService/CreateExecution", exec_with_nested_input(depth)))

# 2. Filters: malformed, unknown, badly typed, too many values.
BAD_FILTERS = [
    "eq(name", "eq(name,a", "eq(name,a))", "eq(name)", "gt(created_at,not-a-time)", "eq(phase,NOT_A_PHASE)",
    "eq(color,red)", "like(name,a)", "eq(name,a)+", "contains(updated_at,1)", "eq(state,active)",
    "value_in(name," + ";".join(str(i) for i in range(40000)) + ")",
]
for i, f in enumerate(BAD_FILTERS):
    def tasks(w, f=f):
        w.admin.ListTasks(listing(filters=f))

    def executions(w, f=f):
        w.admin.ListExecutions(listing(filters=f))

    def nodes(w, f=f):
        w.admin.ListNodeExecutions(node_execution_pb2.NodeExecutionListRequest(workflow_execution_id=w.gate_exec,
                                                                          filters=f, limit=10))
    case(f"filter-{i}-tasks", C.INVALID_ARGUMENT, ["filters"])(tasks)
    case(f"filter-{i}-executions", C.INVALID_ARGUMENT, ["filters"])(executions)
    case(f"filter-{i}-nodes", C.INVALID_ARGUMENT, ["filters"])(nodes)

# 3. Page tokens the server never issued.
for token in ["18446744073709551615", str(2 ** 63), "abc", "5", "-1", "1-deadbeef0000", "0" * 300]:
    def lp_list(w, token=token):
        w.admin.ListLaunchPlans(listing(token=token))

    def ex_list(w, token=token):
        w.admin.ListExecutions(listing(token=token))

    def proj_list(w, token=token):
        w.admin.ListProjects(project_pb2.ProjectListRequest(token=token))
    case(f"token-{token[:20]}-launch-plans", C.INVALID_ARGUMENT, ["token"])(lp_list)
    case(f"token-{token[:20]}-executions", C.INVALID_ARGUMENT, ["token"])(ex_list)
    case(f"token-{token[:20]}-projects", C.INVALID_ARGUMENT, ["token"])(proj_list)

# 4. Identifiers of registrations.
for field, value in [("project", ""), ("domain", ""), ("name", ""), ("version", ""), ("name", "a b"),
                     ("version", "v\n1"), ("name", "x" * 600), ("project", "nope-project"),
                     ("domain", "nope-domain"), ("name", "tab\tname")]:
    case(f"task-id-{field}-{value[:6]!r}", None, [field])(
        lambda w, field=field, value=value: w.admin.CreateTask(task_request(**{field: value})))

# 5. Launch plans: inputs of the wrong type, unknown inputs, bad parallelism and schedules.
LP_CASES = {
    "default-wrong-type": (lambda lp: lp.spec.default_inputs.parameters["x"].default.CopyFrom(str_lit("three")),
                           "default_inputs.x"),
    "fixed-wrong-type": (lambda lp: lp.spec.fixed_inputs.literals["x"].CopyFrom(str_lit("three")),
                         "fixed_inputs.x"),
    "fixed-unknown": (lambda lp: lp.spec.fixed_inputs.literals["nope"].CopyFrom(int_lit(1)), "nope"),
    "default-unknown": (lambda lp: lp.spec.default_inputs.parameters["nope"].default.CopyFrom(int_lit(1)), "nope"),
    "fixed-empty": (lambda lp: lp.spec.fixed_inputs.literals["x"].CopyFrom(literals_pb2.Literal()),
                    "fixed_inputs.x"),
    "fixed-file": (lambda lp: lp.spec.fixed_inputs.literals["x"].CopyFrom(literals_pb2.Literal(
        offloaded_metadata=literals_pb2.LiteralOffloadedMetadata(uri="file:///etc/passwd"))), "fixed_inputs.x"),
    "negative-parallelism": (lambda lp: setattr(lp.spec, "max_parallelism", -5), "max_parallelism"),
    "cron-injection": (lambda lp: lp.spec.entity_metadata.schedule.CopyFrom(
        schedule_pb2.Schedule(cron_expression="not a cron $(rm -rf /)")), "cron_expression"),
    "cron-fields": (lambda lp: lp.spec.entity_metadata.schedule.CopyFrom(
        schedule_pb2.Schedule(cron_schedule=schedule_pb2.CronSchedule(schedule="61 * * * *"))), "schedule"),
    "cron-offset": (lambda lp: lp.spec.entity_metadata.schedule.CopyFrom(
        schedule_pb2.Schedule(cron_schedule=schedule_pb2.CronSchedule(schedule="@hourly", offset="soon"))),
                    "offset"),
    "rate-zero": (lambda lp: lp.spec.entity_metadata.schedule.CopyFrom(
        schedule_pb2.Schedule(rate=schedule_pb2.FixedRate(value=0, unit=schedule_pb2.MINUTE))), "rate"),
    "rate-unit": (lambda lp: lp.spec.entity_metadata.schedule.CopyFrom(
        schedule_pb2.Schedule(rate=schedule_pb2.FixedRate(value=5, unit=42))), "unit"),
    "workflow-missing": (lambda lp: lp.spec.workflow_id.CopyFrom(
        ident(identifier_pb2.WORKFLOW, name="nodes.nope", version="v1")), "workflow_id"),
}
for name, (mutate, field) in LP_CASES.items():
    case(f"launch-plan-{name}", C.INVALID_ARGUMENT, [field])(
        lambda w, mutate=mutate: w.admin.CreateLaunchPlan(lp_request(w, mutate)))

# 6. Executions: unsafe or wrongly typed inputs, bad specs.
EXEC_CASES = {
    "empty-literal": ({"x": literals_pb2.Literal()}, {}, "inputs.x", C.INVALID_ARGUMENT),
    "offloaded-file": ({"x": literals_pb2.Literal(offloaded_metadata=literals_pb2.LiteralOffloadedMetadata(
        uri="file:///etc/passwd"))}, {}, "inputs.x", C.INVALID_ARGUMENT),
    "offloaded-other-bucket": ({"x": literals_pb2.Literal(offloaded_metadata=literals_pb2.LiteralOffloadedMetadata(
        uri="s3://someone-else/secret.pb"))}, {}, "inputs.x", C.INVALID_ARGUMENT),
    "blob-server-file": ({"x": literals_pb2.Literal(scalar=literals_pb2.Scalar(blob=literals_pb2.Blob(
        uri="file:///etc/passwd")))}, {}, "inputs.x", C.INVALID_ARGUMENT),
    "blob-bare-path": ({"x": literals_pb2.Literal(scalar=literals_pb2.Scalar(blob=literals_pb2.Blob(
        uri="/etc/shadow")))}, {}, "inputs.x", C.INVALID_ARGUMENT),
    "empty-scalar": ({"x": literals_pb2.Literal(scalar=literals_pb2.Scalar())}, {}, "inputs.x", C.INVALID_ARGUMENT),
    "nested-empty": ({"x": literals_pb2.Literal(collection=literals_pb2.LiteralCollection(
        literals=[int_lit(1), literals_pb2.Literal()]))}, {}, "inputs.x[1]", C.INVALID_ARGUMENT),
    "wrong-type": ({"x": str_lit("three")}, {}, "inputs.x", C.INVALID_ARGUMENT),
    "unknown-input": ({"y": int_lit(1)}, {}, "inputs.y", C.INVALID_ARGUMENT),
    "negative-parallelism": ({}, {"max_parallelism": -1}, "max_parallelism", C.INVALID_ARGUMENT),
    "unknown-cluster": ({}, {"execution_cluster_label": matchable_resource_pb2.ExecutionClusterLabel(value="mars")},
                        "execution_cluster_label", C.INVALID_ARGUMENT),
}
for name, (inputs, spec, field, code) in EXEC_CASES.items():
    case(f"execution-{name}", code, [field])(
        lambda w, inputs=inputs, spec=spec: w.admin.CreateExecution(exec_request(w, inputs, **spec)))

case("execution-missing-launch-plan", C.NOT_FOUND, ["launch plan"])(
    lambda w: w.admin.CreateExecution(execution_pb2.ExecutionCreateRequest(
        project=PROJECT, domain=DOMAIN, name="x1",
        spec=execution_pb2.ExecutionSpec(launch_plan=ident(identifier_pb2.LAUNCH_PLAN, name="nodes.nope")))))
case("execution-no-spec", C.INVALID_ARGUMENT, ["spec"])(
    lambda w: w.admin.CreateExecution(execution_pb2.ExecutionCreateRequest(project=PROJECT, domain=DOMAIN,
                                                                           name="x2")))

# 7. Signals: typed by their gate, set once.
SIGNAL = "ok-to-go"


def signal_id(w, sid=SIGNAL):
    return identifier_pb2.SignalIdentifier(signal_id=sid, execution_id=w.gate_exec)


case("signal-create-other-type", C.INVALID_ARGUMENT, ["type"])(
    lambda w: w.signals.GetOrCreateSignal(signal_pb2.SignalGetOrCreateRequest(id=signal_id(w), type=int_type())))
case("signal-set-wrong-type", C.INVALID_ARGUMENT, ["value"])(
    lambda w: w.signals.SetSignal(signal_pb2.SignalSetRequest(id=signal_id(w), value=int_lit(42))))
case("signal-set-empty", C.INVALID_ARGUMENT, ["value"])(
    lambda w: w.signals.SetSignal(signal_pb2.SignalSetRequest(id=signal_id(w))))
case("signal-set-missing", C.NOT_FOUND, ["nope"])(
    lambda w: w.signals.SetSignal(signal_pb2.SignalSetRequest(id=signal_id(w, "nope"), value=int_lit(1))))
case("signal-missing-execution", C.NOT_FOUND, ["execution"])(
    lambda w: w.signals.GetOrCreateSignal(signal_pb2.SignalGetOrCreateRequest(
        id=identifier_pb2.SignalIdentifier(signal_id="s", execution_id=identifier_pb2.WorkflowExecutionIdentifier(
            project=PROJECT, domain=DOMAIN, name="nope")), type=int_type())))
case("signal-empty-id", C.INVALID_ARGUMENT, ["signal_id"])(
    lambda w: w.signals.SetSignal(signal_pb2.SignalSetRequest(id=signal_id(w, ""), value=int_lit(1))))

# 8. Uploads: bound to their MD5.
MD5 = hashlib.md5(b"hostile").digest()
UPLOAD_CASES = {
    "no-md5": (dict(filename="a.txt"), "content_md5"),
    "short-md5": (dict(filename="a.txt", content_md5=b"123"), "content_md5"),
    "slash-filename": (dict(filename="../../etc/passwd", content_md5=MD5), "filename"),
    "empty-filename": (dict(filename="", content_md5=MD5), "filename"),
    "dotdot-root": (dict(filename="a.txt", content_md5=MD5, filename_root=".."), "filename_root"),
    "no-project": (dict(filename="a.txt", content_md5=MD5, project=""), "project"),
}
for name, (fields, field) in UPLOAD_CASES.items():
    def upload(w, fields=fields):
        kw = {"project": PROJECT, "domain": DOMAIN, **fields}
        w.proxy.CreateUploadLocation(dataproxy_pb2.CreateUploadLocationRequest(**kw))
    case(f"upload-{name}", C.INVALID_ARGUMENT, [field])(upload)

# 9. The catalog: artifacts need their dataset.
case("artifact-without-dataset", C.NOT_FOUND, ["artifact.dataset"])(
    lambda w: w.catalog.CreateArtifact(dc.CreateArtifactRequest(artifact=dc.Artifact(
        id="a1", dataset=dc.DatasetID(project=PROJECT, domain=DOMAIN, name="no-such-ds", version="1")))))
case("artifact-without-id", C.INVALID_ARGUMENT, ["artifact.id"])(
    lambda w: w.catalog.CreateArtifact(dc.CreateArtifactRequest(artifact=dc.Artifact(
        dataset=dc.DatasetID(project=PROJECT, domain=DOMAIN, name="hostile-ds", version="1")))))
case("artifact-missing", C.INVALID_ARGUMENT, ["artifact"])(
    lambda w: w.catalog.CreateArtifact(dc.CreateArtifactRequest()))

# 10. Recursive workflows, named at registration.


def recursive_workflow(w):
    req = workflow_pb2.WorkflowCreateRequest()
    json_format.ParseDict(recorded("workflows", "advanced.parent_wf"), req, ignore_unknown_fields=True)
    req.id.version = req.spec.template.id.version = "recursive"
    sub = req.spec.sub_workflows[0]
    sub.nodes[0].workflow_node.sub_workflow_ref.CopyFrom(req.spec.template.id)
    w.admin.CreateWorkflow(req)


case("workflow-recursive", C.INVALID_ARGUMENT, ["recursive"])(recursive_workflow)


def self_recursive_workflow(w):
    req = workflow_pb2.WorkflowCreateRequest()
    json_format.ParseDict(recorded("workflows", "advanced.parent_wf"), req, ignore_unknown_fields=True)
    req.id.version = req.spec.template.id.version = "self"
    sub = req.spec.sub_workflows[0]
    sub.nodes[0].workflow_node.sub_workflow_ref.CopyFrom(sub.id)
    w.admin.CreateWorkflow(req)


case("workflow-self-recursive", C.INVALID_ARGUMENT, ["recursive"])(self_recursive_workflow)

# 11. Sizes: a small call with a big body.
case("list-with-2MiB-body", C.RESOURCE_EXHAUSTED, ["limit"])(
    lambda w: w.admin.ListTasks(listing(filters="x" * (2 << 20))))
case("projects-register-huge-name", C.INVALID_ARGUMENT, ["project"])(
    lambda w: w.admin.RegisterProject(project_pb2.ProjectRegisterRequest(project=project_pb2.Project(
        id="p" * 2000, name="big"))))
case("project-bad-id", C.INVALID_ARGUMENT, ["project"])(
    lambda w: w.admin.RegisterProject(project_pb2.ProjectRegisterRequest(project=project_pb2.Project(
        id="has space", name="x"))))


# 9. Matchable attributes, projects, descriptions and metrics.
MR = matchable_resource_pb2


def pd_update(target=None, project=PROJECT, domain=DOMAIN):
    attrs = project_domain_attributes_pb2.ProjectDomainAttributes(project=project, domain=domain)
    if target is not None:
        attrs.matching_attributes.CopyFrom(target)
    return project_domain_attributes_pb2.ProjectDomainAttributesUpdateRequest(attributes=attrs)


ATTRIBUTE_CASES = {
    "attrs-no-target": (lambda w: w.admin.UpdateProjectDomainAttributes(pd_update()), "matching_attributes"),
    "attrs-bad-quantity": (lambda w: w.admin.UpdateProjectDomainAttributes(pd_update(MR.MatchingAttributes(
        task_resource_attributes=MR.TaskResourceAttributes(limits=MR.TaskResourceSpec(cpu="many"))))),
        "limits.cpu"),
    "attrs-unknown-project": (lambda w: w.admin.UpdateProjectDomainAttributes(pd_update(MR.MatchingAttributes(
        execution_cluster_label=MR.ExecutionClusterLabel(value="x")), project="nope-project")), "nope-project"),
    "attrs-unknown-domain": (lambda w: w.admin.UpdateWorkflowAttributes(
        workflow_attributes_pb2.WorkflowAttributesUpdateRequest(attributes=workflow_attributes_pb2.WorkflowAttributes(
            project=PROJECT, domain="nope-domain", workflow="wf", matching_attributes=MR.MatchingAttributes(
                execution_cluster_label=MR.ExecutionClusterLabel(value="x"))))), "nope-domain"),
    "attrs-project-empty": (lambda w: w.admin.UpdateProjectAttributes(
        project_attributes_pb2.ProjectAttributesUpdateRequest(attributes=project_attributes_pb2.ProjectAttributes(
            project="", matching_attributes=MR.MatchingAttributes(
                execution_cluster_label=MR.ExecutionClusterLabel(value="x"))))), "project"),
    "attrs-get-bad-type": (lambda w: w.admin.GetProjectDomainAttributes(
        project_domain_attributes_pb2.ProjectDomainAttributesGetRequest(project=PROJECT, domain=DOMAIN,
                                                                        resource_type=99)), "resource_type"),
    "attrs-delete-bad-type": (lambda w: w.admin.DeleteProjectAttributes(
        project_attributes_pb2.ProjectAttributesDeleteRequest(project=PROJECT, resource_type=-3)), "resource_type"),
    "attrs-list-bad-type": (lambda w: w.admin.ListMatchableAttributes(
        MR.ListMatchableAttributesRequest(resource_type=12)), "resource_type"),
    "projects-bad-filter-field": (lambda w: w.admin.ListProjects(project_pb2.ProjectListRequest(
        filters="eq(version,1)")), "filters"),
    "projects-bad-sort": (lambda w: w.admin.ListProjects(project_pb2.ProjectListRequest(
        sort_by=common_pb2.Sort(key="colour"))), "sort_by.key"),
    "project-bad-state": (lambda w: w.admin.UpdateProject(project_pb2.Project(id=PROJECT, name="x", state=9)),
                          "project.state"),
    "description-of-launch-plan": (lambda w: w.admin.GetDescriptionEntity(common_pb2.ObjectGetRequest(
        id=ident(identifier_pb2.LAUNCH_PLAN))), "resource_type"),
    "description-list-no-id": (lambda w: w.admin.ListDescriptionEntities(
        description_entity_pb2.DescriptionEntityListRequest(resource_type=identifier_pb2.TASK, limit=5)), "id"),
    "metrics-no-id": (lambda w: w.admin.GetExecutionMetrics(execution_pb2.WorkflowExecutionGetMetricsRequest()),
                      "id"),
}
for name, (call, field) in ATTRIBUTE_CASES.items():
    case(name, C.INVALID_ARGUMENT, [field])(call)


@pytest.mark.parametrize("call,code,names", CASES)
def test_a_hostile_request_is_refused_and_changes_nothing(wire, call, code, names):
    before = wire.snapshot()
    with pytest.raises(grpc.RpcError) as e:
        call(wire)
    got = e.value.code()
    if code is None:
        assert got in (C.INVALID_ARGUMENT, C.NOT_FOUND), (got, e.value.details())
    else:
        assert got == code, (got, e.value.details())
    assert got not in (C.UNKNOWN, C.INTERNAL)
    details = e.value.details() or ""
    for n in names:
        assert n in details, f"{n!r} not named in {details!r}"
    assert len(details) < 2000, "the refusal echoes too much back"
    assert wire.snapshot() == before, "a refused request changed what the server holds"


def test_there_are_at_least_150_cases():
    assert len(CASES) >= 150, len(CASES)


def test_a_signal_takes_one_value(wire):
    ok = signal_pb2.SignalSetRequest(id=signal_id(wire), value=literals_pb2.Literal(scalar=literals_pb2.Scalar(
        primitive=literals_pb2.Primitive(boolean=True))))
    wire.signals.SetSignal(ok)
    before = wire.snapshot()
    with pytest.raises(grpc.RpcError) as e:
        wire.signals.SetSignal(signal_pb2.SignalSetRequest(id=signal_id(wire), value=literals_pb2.Literal(
            scalar=literals_pb2.Scalar(primitive=literals_pb2.Primitive(boolean=False)))))
    assert e.value.code() == C.FAILED_PRECONDITION and "set already" in e.value.details()
    assert wire.snapshot() == before


def test_an_upload_never_replaces_other_content(wire):
    def location(content, root="shared-root"):
        return wire.proxy.CreateUploadLocation(dataproxy_pb2.CreateUploadLocationRequest(
            project=PROJECT, domain=DOMAIN, filename="f.txt", filename_root=root,
            content_md5=hashlib.md5(content).digest()))

    first = location(b"first")
    req = urllib.request.Request(first.signed_url, data=b"first", method="PUT",
                                 headers={"Content-MD5": base64.b64encode(hashlib.md5(b"first").digest()).decode()})
    assert urllib.request.urlopen(req).status == 200
    # The same content again is fine; other content under the same root is not.
    location(b"first")
    with pytest.raises(grpc.RpcError) as e:
        location(b"second")
    assert e.value.code() == C.ALREADY_EXISTS and "filename_root" in e.value.details()
    # A body other than the signed MD5 is refused by the URL itself.
    bad = urllib.request.Request(first.signed_url, data=b"evil", method="PUT")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(bad)
    assert e.value.code == 400


def test_unknown_http_paths_are_404(server):
    for path in ["/contrail.db", "/signing.key", "/etc/passwd", "/api/v1/projects/../../x"]:
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"http://127.0.0.1:{server.port}{path}")
        assert e.value.code == 404, path


def test_large_lists_are_cut_into_pages_under_the_message_limit(wire):
    """Four 6 MiB task versions: ListTasks pages them instead of failing for everyone."""
    for i in range(4):
        req = task_request(name="hostile.big", version=f"big{i}")
        req.spec.template.container.args.extend(["x" * (6 << 20)])
        wire.admin.CreateTask(req)
    seen, token = [], ""
    for _ in range(10):
        page = wire.admin.ListTasks(common_pb2.ResourceListRequest(
            id=common_pb2.NamedEntityIdentifier(project=PROJECT, domain=DOMAIN, name="hostile.big"),
            limit=100, token=token))
        assert page.ByteSize() < 20 << 20
        seen += [t.id.version for t in page.tasks]
        token = page.token
        if not token:
            break
    assert sorted(seen) == [f"big{i}" for i in range(4)]


def test_the_server_log_shows_no_panic(server, wire):
    log = pathlib.Path(server.log).read_text(errors="replace")
    assert "panicked" not in log
