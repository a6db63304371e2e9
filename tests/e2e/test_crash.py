"""The crash test: `kill -9` the server again and again while a 24-task workflow runs. The
execution must finish with the right outputs, and no task attempt that had succeeded may
run again (every task appends its input to a side file; each value must appear once)."""
import datetime
import random
import shutil
import time

import pytest
from flytekit.models.core.execution import WorkflowExecutionPhase as WP

from conftest import wait_until
from test_executions import HERE, remote, run

pytestmark = pytest.mark.scaleout


def test_the_workflow_survives_repeated_kill_9_and_no_task_runs_twice(server, config, tmp_path):
    shutil.copy(HERE / "workflows" / "propeller.py", tmp_path / "propeller.py")
    side = tmp_path / "side.txt"
    name, p = run(config, tmp_path, "crash_wf", "--side", str(side))
    assert p.returncode == 0, p.stdout + p.stderr
    rng = random.Random()
    kills = 0
    r = remote(config)
    while kills < 12:
        # Chaos, not synchronisation: the kill lands at an arbitrary point of a round.
        time.sleep(rng.uniform(0.05, 0.9))
        server.kill9()
        kills += 1
        server.start()
        ex = r.fetch_execution(name=name)
        if ex.closure.phase == WP.SUCCEEDED:
            break
    assert kills >= 10, f"the execution finished after only {kills} kills; make the workflow longer"
    ex = r.wait(r.fetch_execution(name=name), timeout=datetime.timedelta(seconds=300),
                poll_interval=datetime.timedelta(seconds=1))
    assert ex.closure.phase == WP.SUCCEEDED, ex.closure.error
    assert ex.outputs["o0"] == 24
    lines = side.read_text().split()
    assert lines == [str(i) for i in range(24)], f"a task ran twice or was skipped: {lines}"


def test_a_workflow_mixing_map_dynamic_branch_and_gates_survives_repeated_kill_9(server, config, tmp_path,
                                                                                 tmp_path_factory):
    from test_nodes import register

    version = register(config, tmp_path_factory)
    side = tmp_path / "side.txt"
    r = remote(config)
    lp = r.fetch_launch_plan(name="nodes.mixed_wf", version=version)
    name = r.execute(lp, inputs={"side": str(side), "n": 6}).id.name
    rng = random.Random()
    kills, signalled = 0, False
    while kills < 12:
        time.sleep(rng.uniform(0.05, 0.9))
        server.kill9()
        kills += 1
        server.start()
        if not signalled:
            try:
                r.set_signal("go", name, 5)
                signalled = True
            except Exception:  # noqa: BLE001 - the gate may not be waiting yet
                pass
        if r.fetch_execution(name=name).closure.phase == WP.SUCCEEDED:
            break
    assert kills >= 10, f"the execution finished after only {kills} kills"
    if not signalled:
        wait_until(lambda: r.set_signal("go", name, 5) or True, 60, "the gate's signal")
    ex = r.wait(r.fetch_execution(name=name), timeout=datetime.timedelta(seconds=300),
                poll_interval=datetime.timedelta(seconds=1))
    assert ex.closure.phase == WP.SUCCEEDED, ex.closure.error
    # squares 0..5 (55) + doubles 0..5 (30) + the branch's double(6) (12) + the signal (5)
    assert ex.outputs["o0"] == 102
    expected = ["seq", "combine", "double-6"] + [f"square-{i}" for i in range(6)] + [f"double-{i}" for i in range(6)]
    lines = side.read_text().split()
    assert sorted(lines) == sorted(expected), f"a task ran twice or was skipped: {sorted(lines)}"
