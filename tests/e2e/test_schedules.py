"""Schedules through flytekit: `pyflyte register`, `pyflyte launchplan --activate`, fires every
2 s with the kickoff time as input, deactivation, and a kill -9 caught up without duplicates."""
import datetime
import subprocess
import time

import pytest
from conftest import DOMAIN, PROJECT, PYFLYTE, register_module, remote, wait_until

# On a cluster, every controller replica runs the scheduler: a fire is still made once.
pytestmark = pytest.mark.scaleout


def scheduled(r, lp_name):
    """The executions of a launch plan: {scheduled time (unix seconds): execution}."""
    from flytekit.models import filters

    found, token = [], ""
    while True:
        page, token = r.client.list_executions_paginated(
            PROJECT, DOMAIN, limit=100, token=token,
            filters=[filters.Equal("launch_plan.name", lp_name)],
        )
        found += page
        if not token:
            break
    by_time = {}
    for ex in found:
        meta = ex.spec.metadata
        assert meta.mode == 1, f"{ex.id.name} is not SCHEDULED"
        at = int(meta.scheduled_at.timestamp())
        assert at not in by_time, f"two executions for the fire at {at}"
        by_time[at] = ex
    return by_time


def set_active(config, version, lp_name, active: bool):
    p = subprocess.run(
        [PYFLYTE, "-c", str(config), "launchplan", "-p", PROJECT, "-d", DOMAIN,
         "--activate" if active else "--deactivate", lp_name, version],
        capture_output=True, text=True, timeout=120,
    )
    assert p.returncode == 0, p.stdout + p.stderr


def test_a_schedule_fires_every_two_seconds_with_its_kickoff_time_until_deactivated(
        server, config, tmp_path_factory):
    version = register_module(config, tmp_path_factory, "schedules")
    r = remote(config)
    set_active(config, version, "every_two", True)
    fires = wait_until(lambda: (f := scheduled(r, "every_two")) and len(f) >= 3 and f,
                       deadline_s=60, what="three fires")
    times = sorted(fires)[:3]
    assert [b - a for a, b in zip(times, times[1:])] == [2, 2]
    for at in times:
        name = fires[at].id.name
        assert len(name) == 20 and name.startswith("f") and name.endswith("000"), name
    # The first fire's workflow ran with the scheduled time as its kickoff input.
    first = r.wait(r.fetch_execution(name=fires[times[0]].id.name),
                   timeout=datetime.timedelta(seconds=120), poll_interval=datetime.timedelta(seconds=1))
    expected = datetime.datetime.fromtimestamp(times[0], tz=datetime.timezone.utc)
    assert first.outputs["o0"] == expected.isoformat()

    set_active(config, version, "every_two", False)
    after = len(scheduled(r, "every_two"))
    # An observation window, not a synchronisation: three periods in which nothing may fire.
    time.sleep(6)
    assert len(scheduled(r, "every_two")) <= after + 1  # one fire may have been in flight
    settled = len(scheduled(r, "every_two"))
    time.sleep(4)
    assert len(scheduled(r, "every_two")) == settled


def test_fires_missed_while_the_server_was_killed_are_caught_up_once(server, config, tmp_path_factory):
    version = register_module(config, tmp_path_factory, "schedules")
    r = remote(config)
    set_active(config, version, "catch_up", True)
    wait_until(lambda: scheduled(r, "catch_up"), deadline_s=30, what="a first fire")
    server.kill9()
    down_at = time.time()
    time.sleep(7)  # the downtime under test: about three fires are missed
    server.start()
    wait_until(lambda: max(scheduled(remote(config), "catch_up")) > down_at + 7,
               deadline_s=60, what="fires after the restart")
    set_active(config, version, "catch_up", False)
    fires = scheduled(remote(config), "catch_up")
    times = sorted(fires)
    # Every 2 s from the first fire to the last, none missing, none twice.
    assert times == list(range(times[0], times[-1] + 1, 2)), times
    assert any(down_at < t < down_at + 7 for t in times), "the downtime's fires were created"
