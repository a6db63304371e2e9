"""The crash test: `kill -9` the server again and again while a 24-task workflow runs. The
execution must finish with the right outputs, and no task attempt that had succeeded may
run again (every task appends its input to a side file; each value must appear once)."""
import datetime
import random
import shutil
import time

from flytekit.models.core.execution import WorkflowExecutionPhase as WP

from test_executions import HERE, remote, run


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
