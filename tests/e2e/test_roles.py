"""The API and the controller as separate processes meeting only through the store, and a
registration without fast registration whose code is found through --task-pythonpath."""
import datetime
import shutil
import subprocess

from flytekit.models.core.execution import WorkflowExecutionPhase as WP

from conftest import BIN, Server, task_env, wait_until
from test_executions import HERE, PYFLYTE, remote


def test_api_and_controller_run_as_separate_processes(tmp_path):
    wf = tmp_path / "wf"
    wf.mkdir()
    shutil.copy(HERE / "workflows" / "propeller.py", wf / "propeller.py")
    api = Server(tmp_path / "data", tmp_path / "api.log", ["--role", "api"])
    api.start()
    controller = None
    try:
        config = api.write_config(tmp_path / "config.yaml")
        # Registered without fast registration: tasks import `propeller` from PYTHONPATH.
        p = subprocess.run([PYFLYTE, "-c", str(config), "register", "--copy", "none", "--version", "nf1",
                            "propeller.py"], cwd=wf, capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stdout + p.stderr
        r = remote(config)
        lp = r.fetch_launch_plan(name="propeller.hello_wf", version="nf1")
        ex = r.execute(lp, inputs={"name": "split"}, execution_name="split-roles")
        # Nothing runs the execution until a controller exists.
        assert r.fetch_execution(name=ex.id.name).closure.phase == WP.QUEUED
        controller = subprocess.Popen(
            [str(BIN), "start", "--role", "controller", "--data-dir", str(api.data_dir),
             "--s3-addr", f"127.0.0.1:{api.s3_port}", "--task-pythonpath", str(wf)],
            stdout=open(tmp_path / "controller.log", "ab"), stderr=subprocess.STDOUT, env=task_env())
        ex = r.wait(ex, timeout=datetime.timedelta(seconds=120), poll_interval=datetime.timedelta(seconds=1))
        assert ex.closure.phase == WP.SUCCEEDED, ex.closure.error
        assert ex.outputs["o0"] == "hello split"
    finally:
        if controller:
            controller.terminate()
            controller.wait(timeout=15)
        api.stop()
        api.kill_tasks()


def test_a_signal_set_while_the_controller_is_down_takes_effect_when_it_returns(tmp_path):
    from conftest import DOMAIN, PROJECT

    wf = tmp_path / "wf"
    wf.mkdir()
    shutil.copy(HERE / "workflows" / "nodes.py", wf / "nodes.py")
    api = Server(tmp_path / "data", tmp_path / "api.log", ["--role", "api"])
    api.start()

    def start_controller():
        return subprocess.Popen(
            [str(BIN), "start", "--role", "controller", "--data-dir", str(api.data_dir),
             "--addr", api.endpoint, "--s3-addr", f"127.0.0.1:{api.s3_port}"],
            stdout=open(tmp_path / "controller.log", "ab"), stderr=subprocess.STDOUT, env=task_env())

    controller = start_controller()
    try:
        config = api.write_config(tmp_path / "config.yaml")
        p = subprocess.run([PYFLYTE, "-c", str(config), "register", "--project", PROJECT, "--domain", DOMAIN,
                            "--version", "sig1", "nodes.py"], cwd=wf, capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stdout + p.stderr
        r = remote(config)
        lp = r.fetch_launch_plan(name="nodes.approve_wf", version="sig1")
        ex = r.execute(lp, inputs={"x": 5})
        wait_until(lambda: r.list_signals(ex.id.name), 60, "the approval signal")
        controller.kill()
        controller.wait()
        r.approve("ok-to-go", ex.id.name)
        assert r.fetch_execution(name=ex.id.name).closure.phase == WP.RUNNING
        controller = start_controller()
        ex = r.wait(ex, timeout=datetime.timedelta(seconds=120), poll_interval=datetime.timedelta(seconds=1))
        assert ex.closure.phase == WP.SUCCEEDED, ex.closure.error
        assert ex.outputs["o0"] == 25
    finally:
        controller.kill()
        controller.wait()
        api.stop()
        api.kill_tasks()
