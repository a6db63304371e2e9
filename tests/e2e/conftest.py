"""Fixtures that run the real `contrail` binary on free ports with a temporary data dir."""
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
FIXTURES = pathlib.Path(os.environ.get("CONTRAIL_FIXTURES", REPO.parent / "shared" / "fixtures"))
WORKFLOWS = FIXTURES / "flytekit-wire" / "workflows"
BIN = pathlib.Path(os.environ.get("CONTRAIL_BIN", REPO / "target" / "debug" / "contrail"))


PROJECT, DOMAIN = "flytesnacks", "development"
E2E_WORKFLOWS = pathlib.Path(__file__).resolve().parent / "workflows"
PYFLYTE = str(pathlib.Path(sys.executable).with_name("pyflyte"))


def remote(config):
    from flytekit.configuration import Config
    from flytekit.remote import FlyteRemote

    return FlyteRemote(config=Config.auto(str(config)), default_project=PROJECT, default_domain=DOMAIN)


def register_module(config, tmp_path_factory, module: str, env=None) -> str:
    """`pyflyte register` of workflows/<module>.py under a fresh version; returns the version."""
    d = tmp_path_factory.mktemp(module)
    shutil.copy(E2E_WORKFLOWS / f"{module}.py", d / f"{module}.py")
    version = "v" + uuid.uuid4().hex[:8]
    p = subprocess.run(
        [PYFLYTE, "-c", str(config), "register", "--project", PROJECT, "--domain", DOMAIN,
         "--version", version, f"{module}.py"],
        cwd=d, capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})},
    )
    assert p.returncode == 0, p.stdout + p.stderr
    return version


def execute(config, version, lp_name, overwrite_cache=None, **inputs):
    """Starts a registered launch plan through FlyteRemote; returns (remote, execution)."""
    r = remote(config)
    lp = r.fetch_launch_plan(name=lp_name, version=version)
    return r, r.execute(lp, inputs=inputs, overwrite_cache=overwrite_cache)


def finish(r, ex, timeout_s=180):
    """Waits (polling the API) until the execution is done."""
    import datetime

    return r.wait(ex, timeout=datetime.timedelta(seconds=timeout_s), poll_interval=datetime.timedelta(seconds=1))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(cond, deadline_s=30.0, what="condition"):
    """Polls `cond` until it returns a truthy value or the deadline passes."""
    end = time.monotonic() + deadline_s
    last = None
    while time.monotonic() < end:
        try:
            v = cond()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - keep polling until the deadline
            last = e
        time.sleep(0.05)
    raise TimeoutError(f"{what} not reached within {deadline_s}s (last error: {last})")


def task_env():
    """The environment of an activated venv: task commands (pyflyte-execute) resolve on PATH."""
    return {**os.environ, "PATH": f"{pathlib.Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}


class Server:
    """One contrail process; `restart()` keeps its data directory."""

    def __init__(self, data_dir: pathlib.Path, log: pathlib.Path, args=()):
        self.data_dir = data_dir
        self.log = log
        self.args = list(args)
        self.port = free_port()
        self.s3_port = free_port()
        self.proc = None

    @property
    def endpoint(self):
        return f"localhost:{self.port}"

    def start(self):
        assert BIN.exists(), f"build the binary first: {BIN}"
        self.proc = subprocess.Popen(
            [str(BIN), "start", "--addr", f"127.0.0.1:{self.port}", "--s3-addr", f"127.0.0.1:{self.s3_port}",
             "--data-dir", str(self.data_dir), *self.args],
            stdout=open(self.log, "ab"), stderr=subprocess.STDOUT,
            env=task_env(),
        )
        url = f"http://127.0.0.1:{self.port}/healthcheck"
        wait_until(lambda: urllib.request.urlopen(url, timeout=1).status == 200, what="contrail healthcheck")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self):
        self.stop()
        self.start()

    def kill9(self):
        """SIGKILL the server alone; its task supervisors keep running."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def kill_tasks(self):
        """Kills task process groups still running in this server's data dir, and its
        resident supervisor (test cleanup)."""
        pidfile = self.data_dir / "supervisor.pid"
        if pidfile.exists():
            try:
                os.kill(int(pidfile.read_text()), signal.SIGKILL)
            except (ProcessLookupError, ValueError, PermissionError):
                pass
        for started in (self.data_dir / "attempts").glob("*/*/*/started"):
            if (started.parent / "exit.json").exists():
                continue
            try:
                os.killpg(int(started.read_text()), signal.SIGKILL)
            except (ProcessLookupError, ValueError, PermissionError):
                pass

    def write_config(self, path: pathlib.Path) -> pathlib.Path:
        # The README's config snippet, with this server's ports.
        path.write_text(
            "admin:\n"
            f"  endpoint: localhost:{self.port}\n"
            "  insecure: true\n"
            "storage:\n"
            "  connection:\n"
            f"    endpoint: http://localhost:{self.s3_port}\n"
            "    access-key: contrail\n"
            "    secret-key: contrail-secret\n"
        )
        return path


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    d = tmp_path_factory.mktemp("contrail")
    s = Server(d / "data", d / "server.log")
    s.start()
    yield s
    s.stop()
    s.kill_tasks()


@pytest.fixture(scope="module")
def config(server, tmp_path_factory):
    return server.write_config(tmp_path_factory.mktemp("cfg") / "config.yaml")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A private copy of the example workflow modules (tests may edit it)."""
    d = tmp_path_factory.mktemp("wf") / "workflows"
    shutil.copytree(WORKFLOWS, d)
    return d
