"""`/metrics`: the Prometheus text moves by the right amounts when workflows run."""
import re
import urllib.request

import pytest

from conftest import execute, finish, register_module

SERIES = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+([0-9.eE+-]+|NaN)$")


def scrape(server):
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=10) as resp:
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = resp.read().decode()
    values = {}
    for line in text.splitlines():
        m = SERIES.match(line)
        if m:
            labels = tuple(sorted(re.findall(r'(\w+)="([^"]*)"', m.group(2) or "")))
            values[(m.group(1), labels)] = float(m.group(3))
    return values


def value(values, name, **labels):
    return values.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture(scope="module")
def version(config, tmp_path_factory):
    return register_module(config, tmp_path_factory, "console")


def test_counters_move_by_what_a_workflow_did(config, server, version):
    before = scrape(server)
    r, ex = execute(config, version, "console.cached_wf", x=11)
    finish(r, ex)
    first = scrape(server)
    r, again = execute(config, version, "console.cached_wf", x=11)
    finish(r, again)
    second = scrape(server)

    def moved(a, b, name, **labels):
        return value(b, name, **labels) - value(a, name, **labels)

    # The first run: both tasks launched locally, a cache miss, its outputs filed.
    assert moved(before, first, "contrail_executions_total", phase="SUCCEEDED") == 1
    assert moved(before, first, "contrail_executions_total", phase="RUNNING") == 1
    assert moved(before, first, "contrail_task_launches_total", executor="local", outcome="launched") == 2
    assert moved(before, first, "contrail_cache_lookups_total", result="miss") == 1
    assert moved(before, first, "contrail_cache_puts_total", result="ok") == 1
    # The second: a cache hit, so only the uncached task launches.
    assert moved(first, second, "contrail_cache_lookups_total", result="hit") == 1
    assert moved(first, second, "contrail_task_launches_total", executor="local", outcome="launched") == 1
    assert moved(first, second, "contrail_executions_total", phase="SUCCEEDED") == 1
    # Histograms: rounds, commits, and one edge per launched task (start -> cached_square and
    # cached_square -> square in the first run; only the second edge in the cached run).
    assert moved(before, second, "contrail_round_duration_seconds_count") >= 4
    assert moved(before, second, "contrail_store_commit_duration_seconds_count") >= 4
    assert moved(before, second, "contrail_edge_latency_seconds_count") == 3
    assert value(second, "contrail_round_duration_seconds_bucket", le="+Inf") == \
        value(second, "contrail_round_duration_seconds_count")
    # Blobs were written and read; the gauges are there.
    assert moved(before, second, "contrail_blob_bytes_total", direction="in") > 0
    assert moved(before, second, "contrail_blob_bytes_total", direction="out") > 0
    assert value(second, "process_resident_memory_bytes") > 1 << 20
    assert value(second, "process_open_fds") > 3
    assert ("contrail_queue_depth", ()) in second and ("contrail_queue_timers", ()) in second
