"""Typed data end to end with the README's config: every value goes through the embedded S3
endpoint (flytekit's fsspec/s3fs layer, pandas and pyarrow parquet readers) and comes back
with the right contents, not only the right phase."""
import pandas as pd
import pytest
from flytekit.models.core.execution import WorkflowExecutionPhase as WP
from flytekit.models.core.identifier import NodeExecutionIdentifier

from conftest import execute, finish, register_module

HIT, POPULATED = 2, 3  # flyteidl CatalogCacheStatus


@pytest.fixture(scope="module")
def version(server, config, tmp_path_factory):
    return register_module(config, tmp_path_factory, "data_types")


def run(config, version, wf, **inputs):
    r, ex = execute(config, version, f"data_types.{wf}", **inputs)
    done = finish(r, ex, timeout_s=300)
    assert done.closure.phase == WP.SUCCEEDED, done.closure.error
    return r, done


def test_a_pandas_dataframe_between_tasks_and_back_to_the_client(config, version):
    r, ex = run(config, version, "frames", n=5)
    assert ex.outputs["o0"] == sum(range(5)) + sum(i * i for i in range(5))
    df = ex.outputs.get("o1", as_type=pd.DataFrame)
    assert list(df["x"]) == [0, 1, 2, 3, 4] and list(df["y"]) == [0, 1, 4, 9, 16]


def test_structured_dataset_column_subset_and_csv(config, version):
    _, ex = run(config, version, "datasets", n=10)
    assert ex.outputs["o0"] == ["a", "c", str(sum(i / 2 for i in range(10)))]
    assert ex.outputs["o1"] == sum(range(10))


def test_pyarrow_table_and_polars_frame(config, version):
    _, ex = run(config, version, "columnar", n=100)
    assert ex.outputs["o0"] == sum(range(100))
    assert ex.outputs["o1"] == sum(range(100))
    # The table a task wrote, read by the client.
    assert list(ex.outputs.get("o2", as_type=pd.DataFrame)["v"]) == list(range(100))


def test_dataclass_and_pydantic_model_holding_frame_file_and_directory(config, version):
    _, ex = run(config, version, "containers", n=4)
    assert ex.outputs["o0"] == "6|file bundle|0.txt,1.txt,2.txt"
    assert ex.outputs["o1"] == "6|file model|0.txt,1.txt,2.txt"


def test_a_directory_of_1000_files_and_a_200_mib_file(config, version):
    _, ex = run(config, version, "files", n=1000, mib=200)
    assert ex.outputs["o0"] == sum(range(1000))
    assert ex.outputs["o1"] == 200 * 1024 * 1024


def test_a_cached_dataframe_is_hit_on_the_second_run(config, version):
    r, first = run(config, version, "cached", n=7)
    assert first.outputs["o0"] == 21
    meta = r.client.get_node_execution(NodeExecutionIdentifier("n0", first.id)).closure.task_node_metadata
    assert meta.cache_status == POPULATED
    r, second = run(config, version, "cached", n=7)
    assert second.outputs["o0"] == 21
    meta = r.client.get_node_execution(NodeExecutionIdentifier("n0", second.id)).closure.task_node_metadata
    assert meta.cache_status == HIT


def test_a_deck_is_served_by_a_download_link(config, version):
    import urllib.request

    from flyteidl.service import dataproxy_pb2

    r, ex = run(config, version, "decks", n=3)
    node = r.client.get_node_execution(NodeExecutionIdentifier("n0", ex.id))
    assert node.closure.deck_uri.endswith(f"-{ex.id.name}/n0/data/0/deck.html"), node.closure.deck_uri
    link = r.client.get_download_artifact_signed_url("n0", ex.id.project, ex.id.domain, ex.id.name)
    assert link.pre_signed_urls.signed_url == link.signed_url
    with urllib.request.urlopen(link.signed_url[0], timeout=10) as resp:
        assert "contrail deck 3" in resp.read().decode()
    # A node without a deck, an unknown node, and a type Flyte does not serve.
    assert not r.client.get_node_execution(NodeExecutionIdentifier("n1", ex.id)).closure.deck_uri
    with pytest.raises(Exception) as e:
        r.client.get_download_artifact_signed_url("n1", ex.id.project, ex.id.domain, ex.id.name)
    assert "no deckUrl" in str(e.value) or "NOT_FOUND" in str(e.value).upper()
    with pytest.raises(Exception) as e:
        r.client.get_download_artifact_signed_url("n9", ex.id.project, ex.id.domain, ex.id.name)
    assert "failed to find node execution" in str(e.value)
    with pytest.raises(Exception) as e:
        r.client.get_download_artifact_signed_url("n0", ex.id.project, ex.id.domain, ex.id.name,
                                                  artifact_type=dataproxy_pb2.ARTIFACT_TYPE_UNDEFINED)
    assert "ARTIFACT_TYPE_DECK" in str(e.value)


def test_control_plane_version_starts_with_v(config):
    from conftest import remote

    assert remote(config).client.get_control_plane_version().startswith("v")
