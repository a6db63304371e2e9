"""flyteadmin's REST API (`/api/v1/...`): every route flyteidl 1.16 declares for the
Admin, DataProxy and Signal services answers as the gRPC call it maps to answers the same
request; errors are grpc-gateway's JSON with the matching HTTP status."""
import json
import re
import urllib.error
import urllib.parse
import urllib.request

import grpc
import pytest
from google.protobuf import json_format, message_factory

from conftest import FIXTURES, PROJECT, DOMAIN, execute, finish, register_module, remote, wait_until

ROUTES_FILE = FIXTURES / "flytekit-wire" / "flyteidl-1.16.8-routes.txt"
SERVICES = {
    "AdminService": "flyteidl.service.admin_pb2",
    "DataProxyService": "flyteidl.service.dataproxy_pb2",
    "SignalService": "flyteidl.service.signal_pb2",
}


def declared_routes():
    """(method, verb, template) of every HTTP binding of the served services."""
    out = []
    for line in ROUTES_FILE.read_text().splitlines():
        cols = line.split("\t")
        service, method = cols[0].split(".")
        if service not in SERVICES or cols[1].startswith("(no"):
            continue
        verb, template = cols[1].split(" ", 1)
        out.append((method, verb, template))
        for extra_verb, extra in re.findall(r"\('(\w+)', '([^']+)'\)", cols[3] if len(cols) > 3 else ""):
            out.append((method, extra_verb.upper(), extra))
    return out


def method_desc(method):
    import importlib

    for service, module in SERVICES.items():
        svc = importlib.import_module(module).DESCRIPTOR.services_by_name[service]
        if method in svc.methods_by_name:
            return svc.methods_by_name[method]
    raise KeyError(method)


def grpc_call(endpoint, method, request):
    desc = method_desc(method)
    out_cls = message_factory.GetMessageClass(desc.output_type)
    with grpc.insecure_channel(endpoint) as ch:
        call = ch.unary_unary(f"/{desc.containing_service.full_name}/{method}",
                              request_serializer=lambda m: m.SerializeToString(),
                              response_deserializer=out_cls.FromString)
        try:
            return grpc.StatusCode.OK, call(request, timeout=30)
        except grpc.RpcError as e:
            return e.code(), e.details()


def field_at(msg, dotted):
    for part in dotted.split("."):
        msg = getattr(msg, part)
    return msg


def rest_call(port, verb, template, method, request, headers=None, raw_body=None):
    """The REST form of `request`: path fields in the path, the rest in the body (POST,
    PUT, DELETE) or the query string (GET)."""
    desc = method_desc(method)
    path_fields = re.findall(r"\{([^}]+)\}", template)

    def path_value(f):
        v = field_at(request, f)
        if f.endswith("resource_type"):
            v = str(int(v))
        return urllib.parse.quote(str(v), safe="")

    path = re.sub(r"\{([^}]+)\}", lambda m: path_value(m.group(1)), template)
    body = None
    as_json = json.loads(json_format.MessageToJson(request, preserving_proto_field_name=True))
    if verb in ("POST", "PUT", "DELETE"):
        body = raw_body if raw_body is not None else json.dumps(as_json).encode()
    else:
        query = []
        flat = flatten(as_json)
        for k, v in flat:
            if k in path_fields:
                continue
            query.append((k, v))
        if query:
            path += "?" + urllib.parse.urlencode(query)
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method=verb,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def flatten(obj, prefix=""):
    out = []
    for k, v in obj.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out += flatten(v, key + ".")
        elif isinstance(v, list):
            out += [(key, str(x)) for x in v]
        else:
            out.append((key, str(v).lower() if isinstance(v, bool) else str(v)))
    return out


HTTP_OF = {
    grpc.StatusCode.INVALID_ARGUMENT: 400, grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.NOT_FOUND: 404, grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403, grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.UNIMPLEMENTED: 501, grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429, grpc.StatusCode.UNAVAILABLE: 503,
}


@pytest.fixture(scope="module")
def world(config, server, tmp_path_factory):
    """A finished branch workflow, a dynamic one, four workflows waiting at a gate (REST and
    gRPC each terminate one and approve one)."""
    version = register_module(config, tmp_path_factory, "nodes")
    r, done = execute(config, version, "nodes.branch_wf", x=4)
    r, dyn = execute(config, version, "nodes.dynamic_wf", n=2)
    finish(r, done)
    finish(r, dyn)
    gates = [execute(config, version, "nodes.approve_wf", x=2)[1] for _ in range(4)]
    for g in gates:
        wait_until(lambda g=g: r.list_signals(g.id.name), 60, "an approval signal")
    return {"version": version, "remote": r, "done": done, "dyn": dyn, "gates": gates}


def grpc_ok(endpoint, method, request_dict):
    cls = message_factory.GetMessageClass(method_desc(method).input_type)
    code, answer = grpc_call(endpoint, method, json_format.ParseDict(request_dict, cls()))
    assert code == grpc.StatusCode.OK, (method, code, answer)
    return answer


def cases(world, endpoint):
    """One request per declared route, as (method, request dict, how to compare)."""
    v = world["version"]
    done = world["done"].id.name
    pd = {"project": PROJECT, "domain": DOMAIN}
    ex = {**pd, "name": done}
    nodes = grpc_ok(endpoint, "ListNodeExecutions", {"workflow_execution_id": ex, "limit": 50}).node_executions
    task_node = next(n.id.node_id for n in nodes if n.id.node_id not in ("start-node", "end-node")
                     and n.metadata.is_parent_node is False)
    ne = {"execution_id": ex, "node_id": task_node}
    tex = grpc_ok(endpoint, "ListTaskExecutions", {"node_execution_id": ne, "limit": 10}).task_executions
    tid = tex[0].id.task_id
    task = {"resource_type": 1, **pd, "name": tid.name, "version": tid.version}
    wf = {"resource_type": 2, **pd, "name": "nodes.branch_wf", "version": v}
    lp = {"resource_type": 3, **pd, "name": "nodes.branch_wf", "version": v}
    te = {"node_execution_id": ne, "task_id": task, "retry_attempt": 0}
    dyn_ex = {**pd, "name": world["dyn"].id.name}
    dyn_node = next(n.id.node_id for n in grpc_ok(endpoint, "ListNodeExecutions", {
        "workflow_execution_id": dyn_ex, "limit": 50}).node_executions
        if n.id.node_id not in ("start-node", "end-node"))
    g0, _, g2, _ = (g.id.name for g in world["gates"])
    upload = {**pd, "filename": "a.txt", "content_md5": "XrY7u+Ae7tCTyyK7j1rNww=="}
    same = "same"      # the two answers must be equal
    shape = "shape"    # both succeed, with the same fields set (names, URLs or times differ)
    spec = json_format.MessageToDict(grpc_ok(endpoint, "GetTask", {"id": task}).closure.compiled_task.template,
                                     preserving_proto_field_name=True)
    lpspec = json_format.MessageToDict(grpc_ok(endpoint, "GetLaunchPlan", {"id": lp}).spec,
                                       preserving_proto_field_name=True)
    return [
        ("CreateTask", {"id": task, "spec": {"template": spec}}, same),
        ("GetTask", {"id": task}, same),
        ("ListTaskIds", {**pd, "limit": 100}, same),
        ("ListTasks", {"id": {**pd, "name": tid.name}, "limit": 10}, same),
        ("ListTasks", {"id": pd, "limit": 10}, same),
        ("CreateWorkflow", {"id": wf}, same),
        ("GetWorkflow", {"id": wf}, same),
        ("ListWorkflowIds", {**pd, "limit": 100}, same),
        ("ListWorkflows", {"id": {**pd, "name": "nodes.branch_wf"}, "limit": 5}, same),
        ("ListWorkflows", {"id": pd, "limit": 5}, same),
        ("CreateLaunchPlan", {"id": lp, "spec": lpspec}, same),
        ("GetLaunchPlan", {"id": lp}, same),
        ("GetActiveLaunchPlan", {"id": {**pd, "name": "nodes.branch_wf"}}, same),
        ("ListActiveLaunchPlans", {**pd, "limit": 10}, same),
        ("ListLaunchPlanIds", {**pd, "limit": 100}, same),
        ("ListLaunchPlans", {"id": {**pd, "name": "nodes.branch_wf"}, "limit": 5}, same),
        ("ListLaunchPlans", {"id": pd, "limit": 5}, same),
        ("UpdateLaunchPlan", {"id": lp, "state": 1}, same),
        ("CreateExecution", {**pd, "spec": {"launch_plan": lp, "inputs": {}}, "inputs": {
            "literals": {"x": {"scalar": {"primitive": {"integer": "5"}}}}}}, shape),
        ("RelaunchExecution", {"id": ex}, shape),
        ("RecoverExecution", {"id": ex}, shape),
        ("GetExecution", {"id": ex}, same),
        ("UpdateExecution", {"id": ex, "state": 0}, same),
        ("GetExecutionData", {"id": ex}, shape),
        ("ListExecutions", {"id": pd, "limit": 5, "filters": "eq(phase,SUCCEEDED)",
                            "sort_by": {"key": "created_at", "direction": 1}}, same),
        ("TerminateExecution", {"id": {**pd, "name": g0}, "cause": "from a test"}, "terminate"),
        ("GetNodeExecution", {"id": ne}, same),
        ("GetDynamicNodeWorkflow", {"id": {"execution_id": {**pd, "name": world["dyn"].id.name},
                                           "node_id": dyn_node}}, same),
        ("ListNodeExecutions", {"workflow_execution_id": ex, "limit": 50}, same),
        ("ListNodeExecutionsForTask", {"task_execution_id": te, "limit": 10}, same),
        ("GetNodeExecutionData", {"id": ne}, shape),
        ("RegisterProject", {"project": {"id": "restproj", "name": "restproj"}}, "register"),
        ("UpdateProject", {"id": PROJECT, "name": PROJECT, "description": "The default project"}, same),
        ("GetProject", {"id": PROJECT}, same),
        ("ListProjects", {"limit": 10}, same),
        ("GetDomains", {}, same),
        ("CreateWorkflowEvent", {"request_id": "x"}, same),
        ("CreateNodeEvent", {"request_id": "x"}, same),
        ("CreateTaskEvent", {"request_id": "x"}, same),
        ("GetTaskExecution", {"id": te}, same),
        ("ListTaskExecutions", {"node_execution_id": ne, "limit": 10}, same),
        ("GetTaskExecutionData", {"id": te}, shape),
        ("UpdateProjectDomainAttributes", {"attributes": {**pd, "matching_attributes": {
            "execution_queue_attributes": {"tags": ["a"]}}}}, same),
        ("GetProjectDomainAttributes", {**pd, "resource_type": 3}, same),
        ("DeleteProjectDomainAttributes", {"project": "nope", "domain": DOMAIN, "resource_type": 3}, same),
        ("UpdateProjectAttributes", {"attributes": {"project": PROJECT, "matching_attributes": {
            "execution_queue_attributes": {"tags": ["a"]}}}}, same),
        ("GetProjectAttributes", {"project": PROJECT, "resource_type": 3}, same),
        ("DeleteProjectAttributes", {"project": "nope", "resource_type": 3}, same),
        ("UpdateWorkflowAttributes", {"attributes": {**pd, "workflow": "nodes.branch_wf", "matching_attributes": {
            "execution_queue_attributes": {"tags": ["a"]}}}}, same),
        ("GetWorkflowAttributes", {**pd, "workflow": "nodes.branch_wf", "resource_type": 3}, same),
        ("DeleteWorkflowAttributes", {"project": "nope", "domain": DOMAIN, "workflow": "w", "resource_type": 3}, same),
        ("ListMatchableAttributes", {"resource_type": 3}, same),
        ("ListNamedEntities", {"resource_type": 2, **pd, "limit": 100}, same),
        ("GetNamedEntity", {"resource_type": 2, "id": {**pd, "name": "nodes.branch_wf"}}, same),
        ("UpdateNamedEntity", {"resource_type": 2, "id": {**pd, "name": "nodes.branch_wf"},
                               "metadata": {"description": "a branch"}}, same),
        ("GetVersion", {}, same),
        ("GetDescriptionEntity", {"id": wf}, same),
        ("ListDescriptionEntities", {"resource_type": 2, "id": {**pd, "name": "nodes.branch_wf"}, "limit": 5}, same),
        ("ListDescriptionEntities", {"resource_type": 2, "id": pd, "limit": 5}, same),
        ("GetExecutionMetrics", {"id": ex}, same),
        ("CreateUploadLocation", upload, shape),
        ("CreateDownloadLocation", {"native_url": "s3://nope/x"}, same),
        ("CreateDownloadLink", {"artifact_type": 1, "node_execution_id": ne}, shape),
        ("GetData", {"flyte_url": f"flyte://v1/{PROJECT}/{DOMAIN}/{done}/{task_node}/i"}, same),
        ("ListSignals", {"workflow_execution_id": {**pd, "name": g2}, "limit": 10}, same),
        ("SetSignal", {"id": {"execution_id": {**pd, "name": g2}, "signal_id": "ok-to-go"},
                       "value": {"scalar": {"primitive": {"boolean": True}}}}, "signal"),
    ]


def test_every_declared_route_answers_as_its_grpc_call(world, server):
    routes = declared_routes()
    assert len(routes) > 55, len(routes)
    by_method = {}
    for method, verb, template in routes:
        by_method.setdefault(method, []).append((verb, template))
    table = cases(world, server.endpoint)
    covered = set()
    seen = {}
    for method, request_dict, how in table:
        desc = method_desc(method)
        cls = message_factory.GetMessageClass(desc.input_type)
        request = json_format.ParseDict(request_dict, cls())
        # The nth case of a method takes its nth binding (the additional list bindings).
        n = seen.get(method, 0)
        seen[method] = n + 1
        verb, template = by_method[method][n]
        covered.add((method, verb, template))
        status, headers, body = rest_call(server.port, verb, template, method, request)
        if how in ("shape", "terminate", "register", "signal") and method != "GetExecutionData":
            # Writes that may not repeat: the gRPC twin acts on a sibling target.
            twin = cls()
            twin.CopyFrom(request)
            if method == "CreateExecution":
                twin.name = ""
            if how == "terminate":
                twin.id.name = world["gates"][1].id.name
            if how == "register":
                twin.project.id = twin.project.name = "grpcproj"
            if how == "signal":
                twin.id.execution_id.name = world["gates"][3].id.name
            code, answer = grpc_call(server.endpoint, method, twin)
        else:
            code, answer = grpc_call(server.endpoint, method, request)
        where = f"{method} {verb} {template}"
        if code != grpc.StatusCode.OK and how not in ("terminate", "signal"):
            assert status == HTTP_OF[code], f"{where}: REST {status} {body!r}; gRPC {code} {answer}"
            err = json.loads(body)
            assert err["code"] == code.value[0] and err["message"] == answer, (where, err, answer)
            continue
        if how in ("terminate", "signal"):
            # The gate the gRPC twin acted on may have ended already; the REST one must act.
            assert status == 200, f"{where}: {status} {body!r}"
            continue
        assert status == 200, f"{where}: REST {status} {body!r}; gRPC said OK"
        out_cls = message_factory.GetMessageClass(desc.output_type)
        got = json_format.Parse(body, out_cls(), ignore_unknown_fields=False)
        if how == "same":
            assert got == answer, f"{where}: REST and gRPC answers differ"
        else:
            assert {f.name for f, _ in got.ListFields()} == {f.name for f, _ in answer.ListFields()}, where
    missing = set(routes) - covered
    assert not missing, f"routes without a case: {sorted(missing)}"
    # The writes took effect, as the gRPC side sees them.
    r = world["remote"]
    assert any(p.id == "restproj" for p in r.client.list_projects().projects)
    for terminated in world["gates"][:2]:
        wait_until(lambda t=terminated: r.client.get_execution(t.id).closure.phase == 7, 60, "ABORTED")
    for approved in world["gates"][2:]:
        wait_until(lambda a=approved: r.client.get_execution(a.id).closure.phase == 4, 60, "SUCCEEDED")


def test_bodies_follow_the_accept_and_content_type_headers(world, server):
    name = world["done"].id.name
    url = f"http://127.0.0.1:{server.port}/api/v1/executions/{PROJECT}/{DOMAIN}/{name}"

    def get(headers):
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as resp:
            return resp.headers.get("Content-Type"), resp.read()

    ctype, body = get({})
    camel = json.loads(body)
    assert ctype == "application/json" and "workflowId" in camel["closure"] and camel["id"]["name"] == name
    assert camel["closure"]["phase"] == "SUCCEEDED"
    ctype, body = get({"Accept": "application/json"})
    snake = json.loads(body)
    assert "workflow_id" in snake["closure"]
    ctype, body = get({"Accept": "application/octet-stream"})
    from flyteidl.admin import execution_pb2

    assert ctype == "application/octet-stream"
    assert execution_pb2.Execution.FromString(body).id.name == name


def test_rest_errors_are_json_with_the_grpc_code_and_http_status(server):
    base = f"http://127.0.0.1:{server.port}"

    def call(path, method="GET", data=None):
        req = urllib.request.Request(base + path, method=method, data=data,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    status, err = call(f"/api/v1/executions/{PROJECT}/{DOMAIN}/no-such-execution")
    assert status == 404 and err["code"] == 5 and "no-such-execution" in err["message"], err
    status, err = call(f"/api/v1/executions/{PROJECT}/{DOMAIN}?limit=ten")
    assert status == 400 and err["code"] == 3 and "limit" in err["message"], err
    status, err = call(f"/api/v1/executions/{PROJECT}/{DOMAIN}?no_such_field=1")
    assert status == 400 and "no_such_field" in err["message"], err
    status, err = call("/api/v1/projects", "POST", b"{not json")
    assert status == 400 and err["code"] == 3, err
    status, err = call("/api/v1/no/such/route")
    assert status == 404 and err["code"] == 5, err
    status, err = call("/api/v1/version", "DELETE")
    assert status == 501 and err["code"] == 12, err
    status, version = call("/api/v1/version")
    # `Content-Type: application/json` selects the proto field names.
    assert status == 200 and "Version" in version["control_plane_version"], version
