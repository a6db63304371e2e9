"""Fixtures that run the real `contrail` binary on free ports with a temporary data dir."""
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import threading
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
        return client_config(path, self.port, f"http://localhost:{self.s3_port}", ("contrail", "contrail-secret"))


def client_config(path: pathlib.Path, api_port: int, s3_endpoint: str, keys) -> pathlib.Path:
    """The README's flytekit config snippet, with these addresses."""
    path.write_text(
        "admin:\n"
        f"  endpoint: localhost:{api_port}\n"
        "  insecure: true\n"
        "storage:\n"
        "  connection:\n"
        f"    endpoint: {s3_endpoint}\n"
        f"    access-key: {keys[0]}\n"
        f"    secret-key: {keys[1]}\n"
    )
    return path


# Scale-out mode (`CONTRAIL_E2E_SCALEOUT=1`, with `CONTRAIL_TEST_POSTGRES` naming a database
# to create test databases from): the `server` fixture is a cluster of API and controller
# replicas on PostgreSQL, and only tests marked `scaleout` run (see pytest.ini).
SCALEOUT = os.environ.get("CONTRAIL_E2E_SCALEOUT") == "1"
PG_BASE = os.environ.get("CONTRAIL_TEST_POSTGRES", "")
# With an S3 server given (scripts/services.sh starts SeaweedFS), clusters keep their blobs
# in its bucket instead of the shared data directory (keys never collide: executions have
# fresh names, uploads and cached outputs are named by content or unique ids).
S3_ENDPOINT = os.environ.get("CONTRAIL_TEST_S3_ENDPOINT", "")
S3_KEYS = (os.environ.get("CONTRAIL_TEST_S3_ACCESS_KEY", ""), os.environ.get("CONTRAIL_TEST_S3_SECRET_KEY", ""))
S3_BUCKET = os.environ.get("CONTRAIL_TEST_S3_BUCKET", "")


def psql(url, sql):
    """Runs one statement with the psql client; returns its unaligned, tuples-only output."""
    p = subprocess.run(["psql", url, "-qAtX", "-F", "\t", "-c", sql], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    return p.stdout


def fresh_database():
    """A new, empty database beside the one `CONTRAIL_TEST_POSTGRES` names; its URL."""
    assert PG_BASE, "set CONTRAIL_TEST_POSTGRES=postgres://... (scripts/services.sh starts one)"
    name = "c_" + uuid.uuid4().hex[:12]
    psql(PG_BASE, f"CREATE DATABASE {name}")
    return PG_BASE.rsplit("/", 1)[0] + "/" + name


class Proxy:
    """A TCP front for several API replicas: each new connection goes to the next replica
    in turn (as a load balancer in front of `--role api` replicas would)."""

    def __init__(self, backends):
        self.backends = backends
        self.turn = 0
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            port = self.backends[self.turn % len(self.backends)]()
            self.turn += 1
            try:
                upstream = socket.create_connection(("127.0.0.1", port), timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src, dst):
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self.sock.close()


class Cluster:
    """API and controller replicas on one fresh PostgreSQL database, sharing one data
    directory (blobs and task attempts) on this machine, behind a round-robin proxy.
    Quacks like `Server` for the tests that take the `server` fixture."""

    def __init__(self, root: pathlib.Path, apis=2, controllers=3, lease_ttl_ms=3000, args=()):
        self.root = root
        self.data_dir = root / "data"
        self.database = fresh_database()
        self.lease_ttl_ms = lease_ttl_ms
        self.args = list(args)
        self.bucket = S3_BUCKET if S3_ENDPOINT else None
        if self.bucket:
            self.args += ["--blob-store", f"s3://{self.bucket}", "--blob-endpoint", S3_ENDPOINT,
                          "--blob-access-key", S3_KEYS[0], "--blob-secret-key", S3_KEYS[1]]
        common = ["--database", self.database, "--lease-ttl-ms", str(lease_ttl_ms)]
        self.apis = [Server(self.data_dir, root / f"api{i}.log",
                            ["--role", "api", "--replica-id", f"api{i}", *common, *self.args])
                     for i in range(apis)]
        self.controllers = {f"c{i}": None for i in range(controllers)}
        self.proxy = Proxy([lambda a=a: a.port for a in self.apis])
        self.port = self.proxy.port
        self.s3_port = self.apis[0].s3_port

    @property
    def endpoint(self):
        return f"localhost:{self.port}"

    def start_controller(self, name):
        api = self.apis[0]
        self.controllers[name] = subprocess.Popen(
            [str(BIN), "start", "--role", "controller", "--replica-id", name, "--database", self.database,
             "--lease-ttl-ms", str(self.lease_ttl_ms), "--data-dir", str(self.data_dir),
             "--addr", f"127.0.0.1:{api.port}", "--s3-addr", f"127.0.0.1:{api.s3_port}", *self.args],
            stdout=open(self.root / f"{name}.log", "ab"), stderr=subprocess.STDOUT, env=task_env())

    def kill_controller(self, name, sig=signal.SIGKILL):
        p = self.controllers.get(name)
        if p and p.poll() is None:
            p.send_signal(sig)
            if sig in (signal.SIGKILL, signal.SIGTERM):
                p.wait(timeout=30)
                self.controllers[name] = None

    def start(self):
        for a in self.apis:
            a.start()
        for name, p in self.controllers.items():
            if p is None or p.poll() is not None:
                self.start_controller(name)

    def stop(self):
        for name, p in self.controllers.items():
            if p and p.poll() is None:
                p.send_signal(signal.SIGCONT)
                self.kill_controller(name, signal.SIGTERM)
        for a in self.apis:
            a.stop()

    def restart(self):
        self.stop()
        self.start()

    def kill9(self):
        for name in self.controllers:
            self.kill_controller(name)
        for a in self.apis:
            a.kill9()

    def close(self):
        self.stop()
        self.proxy.close()
        self.kill_tasks()

    def sql(self, statement):
        return psql(self.database, statement)

    kill_tasks = Server.kill_tasks

    def write_config(self, path: pathlib.Path) -> pathlib.Path:
        if not self.bucket:
            return Server.write_config(self, path)
        # Clients reach the blobs in the object store itself, as Flyte's do.
        return client_config(path, self.port, S3_ENDPOINT, S3_KEYS)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    d = tmp_path_factory.mktemp("contrail")
    if SCALEOUT:
        cluster = Cluster(d)
        cluster.start()
        before = os.environ.get("CONTRAIL_DATABASE")
        # `contrail lineage`, `contrail cache` and friends read the cluster's database.
        os.environ["CONTRAIL_DATABASE"] = cluster.database
        yield cluster
        cluster.close()
        if before is None:
            os.environ.pop("CONTRAIL_DATABASE", None)
        else:
            os.environ["CONTRAIL_DATABASE"] = before
        return
    s = Server(d / "data", d / "server.log")
    s.start()
    yield s
    s.stop()
    s.kill_tasks()


def pytest_collection_modifyitems(config, items):
    """Selects the tier: in scale-out mode the tests marked `scaleout` (the subset that also
    runs on one SQLite process) and `scaleout_only` (failover, split brain); otherwise every
    test but the `scaleout_only` ones, which need a cluster."""
    def wanted(item):
        if SCALEOUT:
            return "scaleout" in item.keywords or "scaleout_only" in item.keywords
        return "scaleout_only" not in item.keywords

    keep = [i for i in items if wanted(i)]
    dropped = [i for i in items if not wanted(i)]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


@pytest.fixture(scope="module")
def config(server, tmp_path_factory):
    return server.write_config(tmp_path_factory.mktemp("cfg") / "config.yaml")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A private copy of the example workflow modules (tests may edit it)."""
    d = tmp_path_factory.mktemp("wf") / "workflows"
    shutil.copytree(WORKFLOWS, d)
    return d
