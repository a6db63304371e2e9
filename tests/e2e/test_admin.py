"""Project administration and matchable attributes as flytekit's FlyteRemote client calls
them: projects registered, filtered, sorted and archived; attributes set, read and listed at
each scope and applied to a new execution; execution metrics; active launch plans."""
import uuid

import pytest
from conftest import DOMAIN, PROJECT, execute, finish, register_module, remote, wait_until

pytestmark = pytest.mark.scaleout


def test_projects_are_registered_listed_filtered_sorted_and_archived(config):
    from flytekit.models.admin.common import Sort
    from flytekit.models.filters import Equal
    from flytekit.models.project import Project

    r = remote(config)
    ids = [f"admin-{uuid.uuid4().hex[:6]}-{n}" for n in ("a", "b")]
    for pid in ids:
        r.client.register_project(Project(pid, pid.upper(), "for the admin test"))
    # flytekit turns the gRPC status into its own exceptions.
    from flytekit.exceptions.user import FlyteEntityAlreadyExistsException

    with pytest.raises(FlyteEntityAlreadyExistsException):
        r.client.register_project(Project(ids[0], "again", ""))

    projects, _ = r.client.list_projects_paginated(limit=100, sort_by=Sort("name", Sort.Direction.DESCENDING))
    mine = [p.id for p in projects if p.id in ids]
    assert mine == sorted(ids, reverse=True)

    # Archived, it leaves the active list and refuses new work.
    archived = Project(ids[1], ids[1].upper(), "archived now", state=Project.ProjectState.ARCHIVED)
    r.client.update_project(archived)
    active, _ = r.client.list_projects_paginated(limit=100, filters=[Equal("state", "0")])
    assert ids[0] in [p.id for p in active] and ids[1] not in [p.id for p in active]
    with pytest.raises(Exception) as e:
        remote(config).client.get_upload_signed_url(ids[1], DOMAIN, content_md5=b"0" * 16, filename="x")
    assert "archived" in str(e.value.__cause__ or e.value)


def test_attributes_set_read_listed_and_applied_to_an_execution(config, tmp_path_factory):
    from flyteidl.admin import matchable_resource_pb2 as mr
    from flytekit.models.matchable_resource import ExecutionClusterLabel, MatchableResource, MatchingAttributes

    version = register_module(config, tmp_path_factory, "nodes")
    r = remote(config)
    # What FlyteRemote's models express: an execution cluster label for the project and
    # domain, then one for a workflow.
    r.client.update_project_domain_attributes(
        PROJECT, DOMAIN, MatchingAttributes(execution_cluster_label=ExecutionClusterLabel("local")))
    got = r.client.get_project_domain_attributes(PROJECT, DOMAIN, MatchableResource.EXECUTION_CLUSTER_LABEL)
    assert got.attributes.matching_attributes.execution_cluster_label.value == "local"
    listed = r.client.list_matchable_attributes(MatchableResource.EXECUTION_CLUSTER_LABEL)
    assert [(c.project, c.domain) for c in listed.configurations] == [(PROJECT, DOMAIN)]

    # A workflow execution config (raw protobuf: flytekit's model has no such target).
    r.client.update_workflow_attributes(
        PROJECT, DOMAIN, "nodes.branch_wf",
        _Raw(mr.MatchingAttributes(workflow_execution_config=mr.WorkflowExecutionConfig(max_parallelism=3))))
    got = r.client.get_workflow_attributes(
        PROJECT, DOMAIN, "nodes.branch_wf", mr.WORKFLOW_EXECUTION_CONFIG)
    assert got.attributes.matching_attributes.workflow_execution_config.max_parallelism == 3

    r2, ex = execute(config, version, "nodes.branch_wf", x=4)
    ex = finish(r2, ex)
    assert ex.spec.max_parallelism == 3
    assert ex.spec.execution_cluster_label.value == "local"

    # The execution's timeline: the workflow span holds its nodes' spans.
    span = r.client.get_execution_metrics(ex.id, depth=4)
    assert span.workflow_id.name == ex.id.name
    assert len(span.spans) >= 1


class _Raw:
    """A protobuf message where flytekit's client expects a model."""

    def __init__(self, pb):
        self.pb = pb

    def to_flyte_idl(self):
        return self.pb


def test_active_launch_plans_follow_activation(config, tmp_path_factory):
    from flyteidl.admin import launch_plan_pb2
    from flytekit.models import filters

    version = register_module(config, tmp_path_factory, "schedules")
    r = remote(config)
    lp = r.fetch_launch_plan(name="catch_up", version=version)
    r.client.update_launch_plan(lp.id, launch_plan_pb2.ACTIVE)
    active, _ = r.client.list_active_launch_plans_paginated(PROJECT, DOMAIN, limit=100)
    assert "catch_up" in [p.id.name for p in active]
    # It fires, and its executions take the project's cluster label set above (the
    # scheduler creates them through an API that knows the executors).
    fired = wait_until(lambda: r.client.list_executions_paginated(
        PROJECT, DOMAIN, limit=10, filters=[filters.Equal("launch_plan.name", "catch_up")])[0],
        deadline_s=30, what="a fire")
    assert fired[0].spec.execution_cluster_label.value == "local"
    r.client.update_launch_plan(lp.id, launch_plan_pb2.INACTIVE)
    active, _ = r.client.list_active_launch_plans_paginated(PROJECT, DOMAIN, limit=100)
    assert "catch_up" not in [p.id.name for p in active]
