"""Memoization end to end: cached tasks registered with `pyflyte register` and run through
FlyteRemote; a side file tells a real run from a cache hit; lineage through the CLI."""
import subprocess

import pytest
from flytekit.models.core.execution import WorkflowExecutionPhase as WP
from flytekit.models.core.identifier import NodeExecutionIdentifier

from conftest import BIN, DOMAIN, PROJECT, execute, finish, register_module

pytestmark = pytest.mark.scaleout

HIT, POPULATED = 2, 3  # flyteidl CatalogCacheStatus


def register(config, tmp_path_factory, cache_version="1") -> str:
    env = {"CONTRAIL_TEST_CACHE_VERSION": cache_version}
    return register_module(config, tmp_path_factory, "caching", env)


@pytest.fixture(scope="module")
def version(server, config, tmp_path_factory):
    return register(config, tmp_path_factory)


def start(config, version, wf, overwrite_cache=None, **inputs):
    return execute(config, version, f"caching.{wf}", overwrite_cache, **inputs)


def run(config, version, wf, **inputs):
    r, ex = start(config, version, wf, **inputs)
    return r, finish(r, ex)


def cache_of(r, ex, node="n0"):
    n = r.client.get_node_execution(NodeExecutionIdentifier(node, ex.id))
    return n.closure.task_node_metadata


def contrail(*args):
    p = subprocess.run([str(BIN), *args], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    return p.stdout


def test_a_second_run_hits_the_cache_and_does_not_run_the_task(server, config, version, tmp_path):
    side = tmp_path / "side"
    r, first = run(config, version, "cached_wf", side=str(side), x=5)
    assert first.closure.phase == WP.SUCCEEDED, first.closure.error
    assert first.outputs["o0"] == 25
    meta = cache_of(r, first)
    assert meta.cache_status == POPULATED
    key = meta.catalog_key
    assert key.dataset_id.name == "flyte_task-caching.cached_square"
    assert key.dataset_id.version.startswith("1-")
    assert key.artifact_tag.name.startswith("flyte_cached-")
    # The same inputs again (and a different ignored seed): a hit, no run.
    r, second = run(config, version, "cached_wf", side=str(side), x=5, seed=42)
    assert second.closure.phase == WP.SUCCEEDED, second.closure.error
    assert second.outputs["o0"] == 25
    meta = cache_of(r, second)
    assert meta.cache_status == HIT
    assert meta.catalog_key.artifact_tag.artifact_id == key.artifact_tag.artifact_id
    assert meta.catalog_key.source_task_execution.node_execution_id.execution_id.name == first.id.name
    assert side.read_text().split() == ["square-5"]
    # Other inputs: a miss.
    r, third = run(config, version, "cached_wf", side=str(side), x=6)
    assert third.outputs["o0"] == 36 and cache_of(r, third).cache_status == POPULATED
    assert side.read_text().split() == ["square-5", "square-6"]
    # Lineage: who produced the artifact, who reused it.
    out = contrail("lineage", "--data-dir", str(server.data_dir), f"{first.id.name}/n0")
    assert key.artifact_tag.artifact_id in out
    assert f"reused-by {PROJECT}/{DOMAIN}/{second.id.name}/n0" in out
    out = contrail("lineage", "--data-dir", str(server.data_dir), f"{PROJECT}/{DOMAIN}/{second.id.name}")
    assert f"produced-by={PROJECT}/{DOMAIN}/{first.id.name}/n0" in out


def test_a_new_cache_version_misses(server, config, version, tmp_path, tmp_path_factory):
    side = tmp_path / "side"
    r, ex = run(config, version, "cached_wf", side=str(side), x=7)
    assert cache_of(r, ex).cache_status == POPULATED
    v2 = register(config, tmp_path_factory, cache_version="2")
    r, ex = run(config, v2, "cached_wf", side=str(side), x=7)
    meta = cache_of(r, ex)
    assert meta.cache_status == POPULATED
    assert meta.catalog_key.dataset_id.version.startswith("2-")
    assert side.read_text().split() == ["square-7", "square-7"]


def test_overwrite_cache_reruns_and_replaces_the_artifact(server, config, version, tmp_path):
    side = tmp_path / "side"
    r, first = run(config, version, "cached_wf", side=str(side), x=8)
    r, ex = start(config, version, "cached_wf", overwrite_cache=True, side=str(side), x=8)
    ex = finish(r, ex)
    assert ex.closure.phase == WP.SUCCEEDED, ex.closure.error
    assert side.read_text().split() == ["square-8", "square-8"]
    assert cache_of(r, ex).cache_status == POPULATED
    # The next run reuses the replacement.
    r, again = run(config, version, "cached_wf", side=str(side), x=8)
    meta = cache_of(r, again)
    assert meta.cache_status == HIT
    assert meta.catalog_key.source_task_execution.node_execution_id.execution_id.name == ex.id.name


def test_concurrent_identical_serialized_tasks_run_once(server, config, version, tmp_path):
    side = tmp_path / "side"
    r, a = start(config, version, "serialized_wf", side=str(side), x=1)
    r, b = start(config, version, "serialized_wf", side=str(side), x=1)
    a, b = finish(r, a), finish(r, b)
    assert a.closure.phase == WP.SUCCEEDED and b.closure.phase == WP.SUCCEEDED
    assert a.outputs["o0"] == 2 and b.outputs["o0"] == 2
    assert side.read_text().split() == ["slow-1"]
    assert sorted([cache_of(r, a).cache_status, cache_of(r, b).cache_status]) == [HIT, POPULATED]


def test_the_cache_cli_lists_and_removes_artifacts(server, config, version, tmp_path):
    side = tmp_path / "side"
    run(config, version, "cached_wf", side=str(side), x=9)
    out = contrail("cache", "ls", "--data-dir", str(server.data_dir), "--task", "caching.cached_square")
    assert "flyte_task-caching.cached_square" in out
    out = contrail("cache", "rm", "--data-dir", str(server.data_dir), PROJECT, DOMAIN, "caching.cached_square")
    assert out.startswith("deleted ") and not out.startswith("deleted 0")
    assert contrail("cache", "ls", "--data-dir", str(server.data_dir), "--task", "caching.cached_square") == ""
    r, ex = run(config, version, "cached_wf", side=str(side), x=9)
    assert cache_of(r, ex).cache_status == POPULATED
    assert side.read_text().split() == ["square-9", "square-9"]


def test_map_items_are_cached_one_by_one(server, config, version, tmp_path):
    side = tmp_path / "side"
    r, ex = run(config, version, "cached_map_wf", side=str(side), xs=[11, 12, 13])
    assert ex.closure.phase == WP.SUCCEEDED, ex.closure.error
    assert ex.outputs["o0"] == [11**3, 12**3, 13**3]
    r, ex = run(config, version, "cached_map_wf", side=str(side), xs=[12, 13, 14])
    assert ex.closure.phase == WP.SUCCEEDED, ex.closure.error
    assert ex.outputs["o0"] == [12**3, 13**3, 14**3]
    # Items 12 and 13 were reused; only 14 ran.
    assert sorted(side.read_text().split()) == ["cube-11", "cube-12", "cube-13", "cube-14"]
    out = contrail("lineage", "--data-dir", str(server.data_dir), f"{ex.id.name}/n0[0]")
    assert "reused flytesnacks/development/flyte_task-caching.map_cached_cube" in out
    assert "/n0[1]" in out  # item 0 (12) of this run reused item 1 of the first


def test_the_datacatalog_service_serves_the_same_catalog(server, config, version, tmp_path):
    import grpc
    from flyteidl.datacatalog import datacatalog_pb2 as dc
    from flyteidl.datacatalog import datacatalog_pb2_grpc as dcg
    from flyteidl.core import literals_pb2

    side = tmp_path / "side"
    r, ex = run(config, version, "cached_wf", side=str(side), x=21)
    key = cache_of(r, ex).catalog_key
    stub = dcg.DataCatalogStub(grpc.insecure_channel(server.endpoint))
    ds = dc.DatasetID(project=key.dataset_id.project, domain=key.dataset_id.domain,
                      name=key.dataset_id.name, version=key.dataset_id.version)
    assert stub.GetDataset(dc.GetDatasetRequest(dataset=ds)).dataset.id.name == key.dataset_id.name
    art = stub.GetArtifact(dc.GetArtifactRequest(dataset=ds, tag_name=key.artifact_tag.name)).artifact
    assert art.id == key.artifact_tag.artifact_id
    assert {d.name: d.value.scalar.primitive.integer for d in art.data} == {"o0": 441}
    assert art.metadata.key_map["execution-name"] == ex.id.name
    assert art.metadata.key_map["exec-node"] == "n0"
    # A tool files its own artifact and tags it; the engine would find it by that tag.
    mine = dc.DatasetID(project=PROJECT, domain=DOMAIN, name="flyte_task-tool", version="1-a-b")
    stub.CreateDataset(dc.CreateDatasetRequest(dataset=dc.Dataset(id=mine)))
    with pytest.raises(grpc.RpcError) as e:
        stub.CreateDataset(dc.CreateDatasetRequest(dataset=dc.Dataset(id=mine)))
    assert e.value.code() == grpc.StatusCode.ALREADY_EXISTS
    value = literals_pb2.Literal(scalar=literals_pb2.Scalar(primitive=literals_pb2.Primitive(integer=7)))
    stub.CreateArtifact(dc.CreateArtifactRequest(artifact=dc.Artifact(
        id="art-1", dataset=mine, data=[dc.ArtifactData(name="o0", value=value)])))
    stub.AddTag(dc.AddTagRequest(tag=dc.Tag(name="flyte_cached-x", artifact_id="art-1", dataset=mine)))
    got = stub.GetArtifact(dc.GetArtifactRequest(dataset=mine, tag_name="flyte_cached-x")).artifact
    assert got.id == "art-1" and got.data[0].value.scalar.primitive.integer == 7
    assert [a.id for a in stub.ListArtifacts(dc.ListArtifactsRequest(dataset=mine)).artifacts] == ["art-1"]
    # Reservations are leases: the first owner holds it until released.
    rid = dc.ReservationID(dataset_id=mine, tag_name="flyte_cached-y")
    hold = lambda owner: stub.GetOrExtendReservation(  # noqa: E731
        dc.GetOrExtendReservationRequest(reservation_id=rid, owner_id=owner)).reservation.owner_id
    assert hold("a") == "a" and hold("b") == "a"
    stub.ReleaseReservation(dc.ReleaseReservationRequest(reservation_id=rid, owner_id="a"))
    assert hold("b") == "b"
    # Bad input names the field.
    with pytest.raises(grpc.RpcError) as e:
        stub.GetArtifact(dc.GetArtifactRequest(dataset=dc.DatasetID(project=PROJECT), tag_name="t"))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "dataset." in e.value.details()
    with pytest.raises(grpc.RpcError) as e:
        stub.GetArtifact(dc.GetArtifactRequest(dataset=mine, tag_name="flyte_cached-none"))
    assert e.value.code() == grpc.StatusCode.NOT_FOUND


def test_an_artifact_filed_through_the_datacatalog_service_is_a_hit_for_the_engine(server, config, version, tmp_path):
    import grpc
    from flyteidl.core import literals_pb2
    from flyteidl.datacatalog import datacatalog_pb2 as dc
    from flyteidl.datacatalog import datacatalog_pb2_grpc as dcg

    side = tmp_path / "side"
    r, ex = run(config, version, "cached_wf", side=str(side), x=22)
    key = cache_of(r, ex).catalog_key
    contrail("cache", "rm", "--data-dir", str(server.data_dir), PROJECT, DOMAIN, "caching.cached_square")
    # A tool files the same key through the service, with its own value.
    stub = dcg.DataCatalogStub(grpc.insecure_channel(server.endpoint))
    ds = dc.DatasetID(project=key.dataset_id.project, domain=key.dataset_id.domain,
                      name=key.dataset_id.name, version=key.dataset_id.version)
    value = literals_pb2.Literal(scalar=literals_pb2.Scalar(primitive=literals_pb2.Primitive(integer=999)))
    try:
        stub.CreateDataset(dc.CreateDatasetRequest(dataset=dc.Dataset(id=ds)))
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.ALREADY_EXISTS
    stub.CreateArtifact(dc.CreateArtifactRequest(artifact=dc.Artifact(
        id="from-tool", dataset=ds, data=[dc.ArtifactData(name="o0", value=value)])))
    stub.AddTag(dc.AddTagRequest(tag=dc.Tag(name=key.artifact_tag.name, artifact_id="from-tool", dataset=ds)))
    r, again = run(config, version, "cached_wf", side=str(side), x=22)
    assert again.closure.phase == WP.SUCCEEDED, again.closure.error
    assert cache_of(r, again).cache_status == HIT
    assert again.outputs["o0"] == 999
    assert side.read_text().split() == ["square-22"]


def test_filed_outputs_that_are_gone_are_not_an_empty_hit(server, config, version, tmp_path):
    side = tmp_path / "side"
    r, ex = run(config, version, "cached_wf", side=str(side), x=23)
    artifact = cache_of(r, ex).catalog_key.artifact_tag.artifact_id
    bucket = getattr(server, "bucket", None)
    if bucket:
        # Blobs in the object store: delete the filed object there.
        import boto3

        from conftest import S3_ENDPOINT, S3_KEYS

        s3 = boto3.client("s3", endpoint_url=S3_ENDPOINT, aws_access_key_id=S3_KEYS[0],
                          aws_secret_access_key=S3_KEYS[1], region_name="us-east-1")
        listed = s3.list_objects_v2(Bucket=bucket, Prefix="catalog/").get("Contents", [])
        filed = [o["Key"] for o in listed if o["Key"].endswith(f"{artifact}/outputs.pb")]
        assert len(filed) == 1, filed
        s3.delete_object(Bucket=bucket, Key=filed[0])
    else:
        filed = list((server.data_dir / "blobs" / "contrail" / "catalog").rglob(f"{artifact}/outputs.pb"))
        assert len(filed) == 1, filed
        filed[0].unlink()
    # The lookup fails (naming the object), the task runs again and its real outputs flow on.
    r, again = run(config, version, "cached_wf", side=str(side), x=23)
    assert again.closure.phase == WP.SUCCEEDED, again.closure.error
    assert again.outputs["o0"] == 529
    assert side.read_text().split() == ["square-23", "square-23"]
