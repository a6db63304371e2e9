"""Warm Python workers: each flytekit attempt is a fresh process forked from a worker that
imported flytekit once. Isolation, environments, crashes of the worker and of the server,
abort, code versions, tasks that fork, the cold fallback, and admission across restarts."""
import datetime
import json
import os
import pathlib
import shutil
import signal
import subprocess
import threading
import time
import uuid

import pytest
from flytekit.models.core.execution import WorkflowExecutionPhase as WP

from conftest import DOMAIN, PROJECT, PYFLYTE, Server, remote, wait_until

HERE = pathlib.Path(__file__).resolve().parent


def copy_module(tmp_path_factory, text_edit=None):
    d = tmp_path_factory.mktemp("warm")
    text = (HERE / "workflows" / "warm.py").read_text()
    if text_edit:
        text = text_edit(text)
    (d / "warm.py").write_text(text)
    return d


def register(config, cwd):
    version = "v" + uuid.uuid4().hex[:8]
    p = subprocess.run([PYFLYTE, "-c", str(config), "register", "--project", PROJECT, "--domain", DOMAIN,
                        "--version", version, "warm.py"], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    return version


def start(config, version, wf, envs=None, **inputs):
    r = remote(config)
    lp = r.fetch_launch_plan(name=f"warm.{wf}", version=version)
    return r, r.execute(lp, inputs=inputs, envs=envs)


def done(r, ex, timeout_s=180):
    return r.wait(ex, timeout=datetime.timedelta(seconds=timeout_s), poll_interval=datetime.timedelta(seconds=0.2))


def exit_records(data_dir: pathlib.Path, execution: str):
    """exit.json of every attempt of one execution."""
    return [json.loads(p.read_text())
            for p in (data_dir / "attempts" / PROJECT / DOMAIN).glob(f"{execution}-*/exit.json")]


def worker_pids(data_dir: pathlib.Path):
    pids = []
    for f in (data_dir / "workers").glob("*.pid"):
        try:
            pid = int(f.read_text())
            os.kill(pid, 0)
            pids.append(pid)
        except (ValueError, ProcessLookupError):
            pass
    return pids


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = pathlib.Path(f"/proc/{pid}/stat")
    return stat.exists() and ") Z " not in stat.read_text()


@pytest.fixture(scope="module")
def version(config, tmp_path_factory):
    return register(config, copy_module(tmp_path_factory))


def wait_for_worker(server):
    return wait_until(lambda: worker_pids(server.data_dir), deadline_s=120, what="a warm worker")


def test_attempts_are_fresh_processes_that_do_not_see_each_others_module_state(server, config, version):
    wait_for_worker(server)
    r, ex = start(config, version, "isolation_wf")
    ex = done(r, ex)
    assert ex.closure.phase == WP.SUCCEEDED, ex.closure.error
    # Each attempt counted its own first call: the first task's mutation did not leak.
    assert (ex.outputs["o0"], ex.outputs["o1"]) == (1000, 2000)
    records = exit_records(server.data_dir, ex.id.name)
    assert len(records) == 2 and all(rec.get("warm") for rec in records), records


def test_per_execution_envvars_reach_that_execution_only(server, config, version):
    wait_for_worker(server)
    r, with_var = start(config, version, "env_wf", envs={"WARM_PROBE": "one"}, name="WARM_PROBE")
    r, without = start(config, version, "env_wf", name="WARM_PROBE")
    assert done(r, with_var).outputs["o0"] == "one"
    assert done(r, without).outputs["o0"] == ""
    for pid in worker_pids(server.data_dir):
        environ = pathlib.Path(f"/proc/{pid}/environ").read_bytes()
        assert b"WARM_PROBE" not in environ, "the worker never holds a task's environment"


def test_a_task_forking_by_itself_and_with_multiprocessing_works(server, config, version):
    wait_for_worker(server)
    r, ex = start(config, version, "forks_wf")
    ex = done(r, ex)
    assert ex.closure.phase == WP.SUCCEEDED, ex.closure.error
    assert ex.outputs["o0"] == [7, 1, 4, 9, 16]


def test_children_draw_different_random_numbers(server, config, version, tmp_path):
    wait_for_worker(server)
    r = remote(config)
    runs = [start(config, version, "identity_wf", pidfile=str(tmp_path / f"p{i}"), seconds=0.0)[1] for i in range(3)]
    outputs = [done(r, ex).outputs["o1"] for ex in runs]
    assert len(set(outputs)) == 3, outputs


def test_two_code_versions_of_one_module_run_at_the_same_time(server, config, version, tmp_path_factory):
    wait_for_worker(server)
    other = register(config, copy_module(tmp_path_factory, lambda t: t.replace('VERSION = "a"', 'VERSION = "b"')))
    r, a = start(config, version, "version_wf", seconds=2.0)
    r, b = start(config, other, "version_wf", seconds=2.0)
    assert (done(r, a).outputs["o0"], done(r, b).outputs["o0"]) == ("a", "b")
    records = exit_records(server.data_dir, a.id.name) + exit_records(server.data_dir, b.id.name)
    assert all(rec.get("warm") for rec in records), records
    # Overlapping in time: the second started before the first ended.
    (ra,), (rb,) = exit_records(server.data_dir, a.id.name), exit_records(server.data_dir, b.id.name)
    assert rb["started_at"] < ra["finished_at"] and ra["started_at"] < rb["finished_at"]
    # Each version's code was extracted once, read-only, beside the other.
    code = [p for p in (server.data_dir / "code").iterdir() if not p.name.startswith(".")]
    assert len(code) >= 2
    assert all((p / "warm.py").stat().st_mode & 0o222 == 0 for p in code)


def test_aborting_kills_the_task_and_leaves_the_worker(server, config, version, tmp_path):
    workers = wait_for_worker(server)
    pidfile = tmp_path / "pid"
    r, ex = start(config, version, "identity_wf", pidfile=str(pidfile), seconds=600.0)
    pid = int(wait_until(lambda: pidfile.exists() and pidfile.read_text(), deadline_s=60, what="task start"))
    r.terminate(ex, "stop")
    ex = done(r, ex, 60)
    assert ex.closure.phase == WP.ABORTED
    wait_until(lambda: not alive(pid), deadline_s=30, what="task process gone")
    assert all(alive(w) for w in workers), "abort kills the attempt, nothing else"


def test_a_worker_killed_during_a_task_loses_nothing(server, config, version, tmp_path):
    (worker,) = wait_for_worker(server)
    pidfile = tmp_path / "pid"
    r, ex = start(config, version, "identity_wf", pidfile=str(pidfile), seconds=3.0)
    pid = int(wait_until(lambda: pidfile.exists() and pidfile.read_text(), deadline_s=60, what="task start"))
    os.kill(worker, signal.SIGKILL)
    ex = done(r, ex)
    assert ex.closure.phase == WP.SUCCEEDED, ex.closure.error
    assert ex.outputs["o0"] == pid
    (rec,) = exit_records(server.data_dir, ex.id.name)
    assert rec["code"] == 0 and rec.get("warm") and not rec["lost"]
    # Tasks go on (cold while no worker is ready), then a new worker serves them warm.
    r, again = start(config, version, "nap_wf", seconds=0.0)
    assert done(r, again).closure.phase == WP.SUCCEEDED
    wait_until(lambda: [w for w in worker_pids(server.data_dir) if w != worker], deadline_s=120,
               what="a replacement worker")


def test_the_worker_is_replaced_after_its_last_fork(tmp_path, tmp_path_factory):
    server = Server(tmp_path / "data", tmp_path / "server.log", args=["--warm-max-forks", "2"])
    server.start()
    try:
        config = server.write_config(tmp_path / "config.yaml")
        version = register(config, copy_module(tmp_path_factory))
        (first,) = wait_for_worker(server)
        r = remote(config)
        for _ in range(2):
            assert done(r, start(config, version, "nap_wf", seconds=0.0)[1]).closure.phase == WP.SUCCEEDED
        (second,) = wait_until(lambda: first not in worker_pids(server.data_dir) and worker_pids(server.data_dir),
                               deadline_s=120, what="a fresh worker after two forks")
        # A change in the environment on disk (as `pip install` makes) replaces the worker too.
        import sysconfig

        log = server.data_dir / "supervisor.log"
        wait_until(lambda: any("warm worker ready" in line and f"worker={second}" in line
                               for line in log.read_text().splitlines()), deadline_s=120, what="worker ready")
        site = pathlib.Path(sysconfig.get_paths()["purelib"])
        os.utime(site)
        assert done(r, start(config, version, "nap_wf", seconds=0.0)[1]).closure.phase == WP.SUCCEEDED
        wait_until(lambda: second not in worker_pids(server.data_dir) and worker_pids(server.data_dir),
                   deadline_s=120, what="a fresh worker after the environment changed")
    finally:
        server.stop()
        server.kill_tasks()


def test_kill_9_of_the_server_during_warm_tasks_runs_each_once(tmp_path, tmp_path_factory):
    server = Server(tmp_path / "data", tmp_path / "server.log")
    server.start()
    try:
        config = server.write_config(tmp_path / "config.yaml")
        version = register(config, copy_module(tmp_path_factory))
        wait_for_worker(server)
        r, ex = start(config, version, "naps_wf", seconds=3.0)
        attempts = server.data_dir / "attempts" / PROJECT / DOMAIN
        wait_until(lambda: len(list(attempts.glob(f"{ex.id.name}-*/started"))) >= 2, deadline_s=60,
                   what="tasks running")
        server.kill9()
        server.start()
        ex = done(remote(config), ex)
        assert ex.closure.phase == WP.SUCCEEDED, ex.closure.error
        records = exit_records(server.data_dir, ex.id.name)
        assert len(records) == 8, "every node ran exactly one attempt"
        assert all(rec["code"] == 0 and not rec["lost"] for rec in records), records
        assert len(set(ex.outputs["o0"])) == 8
    finally:
        server.stop()
        server.kill_tasks()


def running_attempts(data_dir: pathlib.Path):
    n = 0
    for started in (data_dir / "attempts").glob("*/*/*/started"):
        if (started.parent / "exit.json").exists():
            continue
        try:
            if alive(int(started.read_text())):
                n += 1
        except (ValueError, OSError):
            pass
    return n


def task_reasons(r, ex):
    """The `reason` of n0's task records (read raw: flytekit's model drops it)."""
    from flyteidl.admin import task_execution_pb2
    from flyteidl.core import identifier_pb2

    request = task_execution_pb2.TaskExecutionListRequest(
        node_execution_id=identifier_pb2.NodeExecutionIdentifier(node_id="n0", execution_id=ex.id.to_flyte_idl()),
        limit=10)
    response = r.client._stub.ListTaskExecutions(request, metadata=r.client._metadata)
    return [t.closure.reason for t in response.task_executions]


class PeakSampler:
    """Samples how many attempts run at once (observation only, not synchronisation)."""

    def __init__(self, data_dir):
        self.data_dir, self.peak, self.stop = data_dir, 0, threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop.is_set():
            self.peak = max(self.peak, running_attempts(self.data_dir))
            time.sleep(0.02)

    def finish(self):
        self.stop.set()
        self.thread.join()
        return self.peak


def test_capacity_holds_for_tasks_without_requests_and_across_a_restart(tmp_path, tmp_path_factory):
    # 1000m of CPU; a task without requests counts 250m: four at a time.
    server = Server(tmp_path / "data", tmp_path / "server.log",
                    args=["--task-cpu", "1000", "--default-task-cpu", "250"])
    server.start()
    try:
        config = server.write_config(tmp_path / "config.yaml")
        version = register(config, copy_module(tmp_path_factory))
        wait_for_worker(server)
        r = remote(config)
        sampler = PeakSampler(server.data_dir)
        runs = [start(config, version, "nap_wf", seconds=0.5)[1] for _ in range(30)]
        # Waiting tasks say why.
        wait_until(lambda: any(reason.startswith("waiting for local capacity")
                               for ex in runs[-5:] for reason in task_reasons(r, ex)),
                   deadline_s=60, what="a task waiting for capacity")
        assert all(done(r, ex).closure.phase == WP.SUCCEEDED for ex in runs)
        assert sampler.finish() <= 4

        sampler = PeakSampler(server.data_dir)
        r, ex = start(config, version, "naps_wf", seconds=3.0)
        wait_until(lambda: running_attempts(server.data_dir) >= 4, deadline_s=60, what="four tasks running")
        server.kill9()
        server.start()
        ex = done(remote(config), ex)
        assert ex.closure.phase == WP.SUCCEEDED, ex.closure.error
        assert sampler.finish() <= 4, "a restarted server admits against the tasks still running"
    finally:
        server.stop()
        server.kill_tasks()


def test_cold_mode_runs_the_same_tasks_without_workers(tmp_path, tmp_path_factory):
    server = Server(tmp_path / "data", tmp_path / "server.log", args=["--warm-workers=false"])
    server.start()
    try:
        config = server.write_config(tmp_path / "config.yaml")
        version = register(config, copy_module(tmp_path_factory))
        r, ex = start(config, version, "isolation_wf")
        ex = done(r, ex)
        assert ex.closure.phase == WP.SUCCEEDED, ex.closure.error
        assert (ex.outputs["o0"], ex.outputs["o1"]) == (1000, 2000)
        records = exit_records(server.data_dir, ex.id.name)
        assert len(records) == 2 and not any(rec.get("warm") for rec in records)
        assert not (server.data_dir / "workers").exists() or not worker_pids(server.data_dir)
    finally:
        server.stop()
        server.kill_tasks()
