"""Runs the same two workloads on Contrail and its peers, in one run on one machine.

Usage (after `bench/peers/setup.sh` and `cargo build --release -p contrail`):

    bench/peers/.venvs/flytekit/bin/python bench/peers/run.py [--reps 3] [--systems a,b]

Shapes: a chain of 20 trivial Python tasks, and a fan-out of 200 joined by one task.
For each system and shape it runs `--reps` times and keeps the median wall time (the
workflow's own run as the system's client sees it; for command-line-only systems, the whole
command). Server-based systems also report the server process's peak RSS and CPU seconds
over all their runs. Results: bench/peers/results.json, a Markdown table on stdout, and
docs/peers.png.
"""

import argparse
import json
import os
import pathlib
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[1]
VENVS = HERE / ".venvs"
WORKLOADS = HERE / "workloads"
CONTRAIL = REPO / "target" / "release" / "contrail"
SHAPES = {"chain": 20, "fanout": 201}
SYSTEMS = [
    "contrail-warm",
    "contrail-cold",
    "flytekit-local",
    "prefect",
    "dagster-in-process",
    "dagster-multiprocess",
    "airflow-dags-test",
    "airflow-scheduler",
]
PERSISTS = {"contrail-warm", "contrail-cold", "prefect", "dagster-in-process", "dagster-multiprocess", "airflow-scheduler"}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(cond, deadline_s, what):
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            if cond():
                return
        except Exception:  # noqa: BLE001 - keep polling until the deadline
            pass
        time.sleep(0.1)
    raise TimeoutError(what)


def venv_bin(name):
    return VENVS / name / "bin"


def env_with(name, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONTRAIL_", "PREFECT_", "DAGSTER_", "AIRFLOW_"))}
    env["PATH"] = f"{venv_bin(name)}:{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(VENVS / name)
    env.update(extra)
    return env


def run_cmd(cmd, env, cwd, timeout=1800):
    start = time.perf_counter()
    p = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - start
    if p.returncode != 0:
        raise RuntimeError(f"{cmd} failed ({p.returncode}): {p.stdout[-2000:]}{p.stderr[-2000:]}")
    return wall, p.stdout


def last_json(stdout):
    for line in reversed(stdout.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"no JSON result in {stdout[-500:]}")


class ProcStats:
    """Peak RSS and CPU seconds of one server process."""

    def __init__(self, pid):
        self.pid = pid
        self.cpu0 = self.cpu()

    def cpu(self):
        fields = pathlib.Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def done(self):
        status = pathlib.Path(f"/proc/{self.pid}/status").read_text()
        hwm = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:"))
        return {"server_peak_rss_mib": round(hwm / 1024, 1), "server_cpu_s": round(self.cpu() - self.cpu0, 2)}


def stop(proc):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ---- systems: each yields (shape -> one run's figures) and returns server stats -------------


def contrail(warm, reps, record):
    from flytekit.configuration import Config
    from flytekit.models.core.execution import WorkflowExecutionPhase
    from flytekit.remote import FlyteRemote

    work = pathlib.Path(tempfile.mkdtemp(prefix="peers-contrail-"))
    port, s3 = free_port(), free_port()
    env = env_with("flytekit")
    proc = subprocess.Popen(
        [str(CONTRAIL), "start", "--addr", f"127.0.0.1:{port}", "--s3-addr", f"127.0.0.1:{s3}",
         "--data-dir", str(work / "data"), f"--warm-workers={'true' if warm else 'false'}"],
        env=env, stdout=open(work / "server.log", "wb"), stderr=subprocess.STDOUT,
    )
    try:
        wait_until(lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/healthcheck", timeout=1).status == 200,
                   30, "contrail healthcheck")
        config = work / "config.yaml"
        config.write_text(
            f"admin:\n  endpoint: localhost:{port}\n  insecure: true\nstorage:\n  connection:\n"
            f"    endpoint: http://localhost:{s3}\n    access-key: contrail\n    secret-key: contrail-secret\n"
        )
        code = work / "code"
        code.mkdir()
        shutil.copy(WORKLOADS / "flyte_wf.py", code / "flyte_wf.py")
        run_cmd([str(venv_bin("flytekit") / "pyflyte"), "-c", str(config), "register", "--project", "flytesnacks",
                 "--domain", "development", "--version", "v1", "flyte_wf.py"], env, code)
        remote = FlyteRemote(config=Config.auto(str(config)), default_project="flytesnacks",
                             default_domain="development")
        if warm:  # the worker boots with the server; the runs measure it ready, as in use
            wait_until(lambda: list((work / "data" / "workers").glob("*.sock")), 120, "warm worker")
        stats = ProcStats(proc.pid)
        for shape in SHAPES:
            lp = remote.fetch_launch_plan(name=f"flyte_wf.{shape}", version="v1")
            for _ in range(reps):
                start = time.perf_counter()
                ex = remote.execute(lp, inputs={})
                while True:
                    got = remote.client.get_execution(ex.id)
                    if got.closure.phase in (WorkflowExecutionPhase.SUCCEEDED, WorkflowExecutionPhase.FAILED,
                                             WorkflowExecutionPhase.ABORTED, WorkflowExecutionPhase.TIMED_OUT):
                        break
                    time.sleep(0.01)
                wall = time.perf_counter() - start
                if got.closure.phase != WorkflowExecutionPhase.SUCCEEDED:
                    raise RuntimeError(f"contrail {shape} ended {got.closure.phase}: {got.closure.error}")
                record(shape, {"wall_s": wall, "cmd_wall_s": wall})
        return stats.done()
    finally:
        stop(proc)
        pid = work / "data" / "supervisor.pid"
        if pid.exists():
            try:
                os.kill(int(pid.read_text()), 9)
            except (ProcessLookupError, ValueError):
                pass


def flytekit_local(reps, record):
    env = env_with("flytekit")
    for shape in SHAPES:
        for _ in range(reps):
            wall, _ = run_cmd([str(venv_bin("flytekit") / "pyflyte"), "run", "flyte_wf.py", shape], env, WORKLOADS)
            record(shape, {"wall_s": wall, "cmd_wall_s": wall})
    return {}


def prefect(reps, record):
    work = pathlib.Path(tempfile.mkdtemp(prefix="peers-prefect-"))
    port = free_port()
    env = env_with("prefect", PREFECT_HOME=str(work), PREFECT_SERVER_ANALYTICS_ENABLED="false",
                   PREFECT_UI_ENABLED="false", PREFECT_LOGGING_LEVEL="WARNING")
    proc = subprocess.Popen([str(venv_bin("prefect") / "prefect"), "server", "start", "--host", "127.0.0.1",
                             "--port", str(port)], env=env, stdout=open(work / "server.log", "wb"),
                            stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=1).status == 200,
                   120, "prefect server health")
        env["PREFECT_API_URL"] = f"http://127.0.0.1:{port}/api"
        stats = ProcStats(proc.pid)
        for shape in SHAPES:
            for _ in range(reps):
                wall, out = run_cmd([str(venv_bin("prefect") / "python"), "prefect_flow.py", shape], env, WORKLOADS)
                record(shape, {"wall_s": last_json(out)["wall_s"], "cmd_wall_s": wall})
        return stats.done()
    finally:
        stop(proc)


def dagster(executor, reps, record):
    work = pathlib.Path(tempfile.mkdtemp(prefix="peers-dagster-"))
    (work / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = env_with("dagster", DAGSTER_HOME=str(work))
    for shape in SHAPES:
        for _ in range(reps):
            wall, out = run_cmd([str(venv_bin("dagster") / "python"), "dagster_job.py", shape, executor], env,
                                WORKLOADS)
            record(shape, {"wall_s": last_json(out)["wall_s"], "cmd_wall_s": wall})
    return {}


def airflow_env():
    work = pathlib.Path(tempfile.mkdtemp(prefix="peers-airflow-"))
    dags = work / "dags"
    dags.mkdir()
    shutil.copy(WORKLOADS / "airflow_dag.py", dags / "airflow_dag.py")
    env = env_with("airflow", AIRFLOW_HOME=str(work), AIRFLOW__CORE__DAGS_FOLDER=str(dags),
                   AIRFLOW__CORE__LOAD_EXAMPLES="False", AIRFLOW__CORE__EXECUTOR="LocalExecutor",
                   AIRFLOW__LOGGING__LOGGING_LEVEL="WARNING")
    run_cmd([str(venv_bin("airflow") / "airflow"), "db", "migrate"], env, work)
    return work, env


def airflow_dags_test(reps, record):
    work, env = airflow_env()
    for shape in SHAPES:
        for _ in range(reps):
            wall, _ = run_cmd([str(venv_bin("airflow") / "airflow"), "dags", "test", f"peers_{shape}"], env, work)
            record(shape, {"wall_s": wall, "cmd_wall_s": wall})
    return {}


def airflow_scheduler(reps, record):
    """api-server + dag-processor + scheduler (LocalExecutor), runs triggered over the REST API."""
    import base64

    work, env = airflow_env()
    port = free_port()
    env.update(AIRFLOW__API__PORT=str(port), AIRFLOW__API__BASE_URL=f"http://127.0.0.1:{port}",
               AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"http://127.0.0.1:{port}/execution/",
               AIRFLOW__CORE__AUTH_MANAGER="airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
               AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS="True",
               AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL="5")
    airflow = str(venv_bin("airflow") / "airflow")
    procs = [subprocess.Popen([airflow, *args], env=env, cwd=work, stdout=open(work / f"{args[0]}.log", "wb"),
                              stderr=subprocess.STDOUT)
             for args in (["api-server", "--port", str(port)], ["dag-processor"], ["scheduler"])]
    try:
        api = f"http://127.0.0.1:{port}"
        wait_until(lambda: urllib.request.urlopen(f"{api}/api/v2/monitor/health", timeout=2).status == 200, 180,
                   "airflow api-server")

        def call(method, path, body=None):
            req = urllib.request.Request(f"{api}{path}", method=method,
                                         data=json.dumps(body).encode() if body is not None else None,
                                         headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=30) as r:
                return json.loads(r.read() or b"{}")

        for shape in SHAPES:
            dag_id = f"peers_{shape}"
            wait_until(lambda: call("GET", f"/api/v2/dags/{dag_id}").get("dag_id") == dag_id, 180, f"{dag_id} parsed")
            call("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})
        stats = ProcStats(procs[2].pid)
        for shape in SHAPES:
            dag_id = f"peers_{shape}"
            for _ in range(reps):
                start = time.perf_counter()
                run = call("POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None})
                run_id = run["dag_run_id"]
                while True:
                    state = call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")["state"]
                    if state in ("success", "failed"):
                        break
                    time.sleep(0.05)
                wall = time.perf_counter() - start
                if state != "success":
                    raise RuntimeError(f"airflow {dag_id} {state}")
                record(shape, {"wall_s": wall, "cmd_wall_s": wall})
        return stats.done()
    finally:
        for p in procs:
            stop(p)


RUNNERS = {
    "contrail-warm": lambda reps, record: contrail(True, reps, record),
    "contrail-cold": lambda reps, record: contrail(False, reps, record),
    "flytekit-local": flytekit_local,
    "prefect": prefect,
    "dagster-in-process": lambda reps, record: dagster("in_process", reps, record),
    "dagster-multiprocess": lambda reps, record: dagster("multiprocess", reps, record),
    "airflow-dags-test": airflow_dags_test,
    "airflow-scheduler": airflow_scheduler,
}


def chart(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(SHAPES), figsize=(13, 5))
    for ax, shape in zip(axes, SHAPES):
        names = [s for s in results if shape in results[s].get("shapes", {})]
        values = [results[s]["shapes"][shape]["wall_s"] for s in names]
        colors = ["#1f77b4" if s.startswith("contrail") else "#999999" for s in names]
        ax.bar(names, values, color=colors)
        ax.set_yscale("log")
        ax.set_title(f"{shape}: {SHAPES[shape]} tasks (median wall, s, log scale)")
        ax.tick_params(axis="x", rotation=45)
        for i, v in enumerate(values):
            ax.text(i, v, f"{v:.2f}", ha="center", va="bottom", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def table(results):
    lines = ["| system | persists state | shape | median wall (s) | per task (ms) | runs | server peak RSS (MiB) | server CPU (s) |",
             "|---|---|---|---|---|---|---|---|"]
    for system, r in results.items():
        if "error" in r:
            lines.append(f"| {system} | | | failed: {r['error'][:80]} | | | | |")
            continue
        for shape, fig in r["shapes"].items():
            lines.append(
                f"| {system} | {'yes' if system in PERSISTS else 'no'} | {shape} | {fig['wall_s']:.2f} | "
                f"{fig['wall_s'] * 1000 / SHAPES[shape]:.1f} | {fig['runs']} | "
                f"{r.get('server_peak_rss_mib', '–')} | {r.get('server_cpu_s', '–')} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument("--out", default=str(HERE / "results.json"))
    args = parser.parse_args()
    results = {}
    if pathlib.Path(args.out).exists():
        results = json.loads(pathlib.Path(args.out).read_text()).get("results", {})
    for system in args.systems.split(","):
        runs = {}

        def record(shape, fig):
            runs.setdefault(shape, []).append(fig)
            print(f"{system} {shape}: {fig['wall_s']:.3f} s", file=sys.stderr, flush=True)

        try:
            extra = RUNNERS[system](args.reps, record)
            results[system] = {
                "shapes": {shape: {"wall_s": statistics.median(f["wall_s"] for f in figs),
                                   "cmd_wall_s": statistics.median(f["cmd_wall_s"] for f in figs),
                                   "runs": len(figs), "all_s": [round(f["wall_s"], 3) for f in figs]}
                           for shape, figs in runs.items()},
                **extra,
            }
        except Exception as e:  # noqa: BLE001 - one peer failing must not lose the others
            results[system] = {"error": str(e)}
            print(f"{system} failed: {e}", file=sys.stderr, flush=True)
        pathlib.Path(args.out).write_text(json.dumps({
            "machine": f"{platform.node()} {os.cpu_count()} cores, {platform.platform()}",
            "date": time.strftime("%Y-%m-%d"),
            "reps": args.reps,
            "results": results,
        }, indent=1))
    chart({k: v for k, v in results.items() if "shapes" in v}, REPO / "docs" / "peers.png")
    print(table(results))


if __name__ == "__main__":
    main()
