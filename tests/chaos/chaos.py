"""The chaos soak (scripts/chaos.sh): a rolling mixed workload (tests/chaos/chaos_wf.py)
on one `contrail` server, which is killed with SIGKILL at random moments `--kills` times,
with the resident supervisor and a warm worker killed now and then as well.

Checks at the end: every execution succeeded with the right output; no task ran to
completion twice (the side file); nothing is stuck (all done within a deadline after the
last kill); and how long each restart took to answer its health check.

Prints a JSON summary line; exits non-zero when a check fails."""
import argparse
import collections
import json
import os
import pathlib
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "e2e"))
sys.path.insert(0, str(HERE))

from conftest import DOMAIN, PROJECT, PYFLYTE, Server, remote  # noqa: E402
from chaos_wf import expected  # noqa: E402

CHILD_TAGS = {"square-3000", "double-9000000"}


def pids_of(pattern: str):
    """Pids of processes whose command line contains `pattern`."""
    out = []
    for p in pathlib.Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if pattern in cmd:
            out.append(int(p.name))
    return out


def timed_start(server: Server) -> float:
    """Starts the server; returns seconds until its health check answers (polled every ms)."""
    began = time.monotonic()
    server.proc = subprocess.Popen(
        [str(server_bin()), "start", "--addr", f"127.0.0.1:{server.port}", "--s3-addr",
         f"127.0.0.1:{server.s3_port}", "--data-dir", str(server.data_dir)],
        stdout=open(server.log, "ab"), stderr=subprocess.STDOUT,
        env={**os.environ, "PATH": f"{pathlib.Path(sys.executable).parent}:{os.environ.get('PATH', '')}"},
    )
    url = f"http://127.0.0.1:{server.port}/healthcheck"
    deadline = began + 60
    while time.monotonic() < deadline:
        try:
            if urllib.request.urlopen(url, timeout=1).status == 200:
                return time.monotonic() - began
        except OSError:
            time.sleep(0.001)
    raise TimeoutError("the server did not answer its health check within 60 s")


def exit_record(data_dir: pathlib.Path, attempt_id: str):
    """An attempt's exit record, from its directory or its ledger (None when neither has one)."""
    for base in (data_dir / "attempts", data_dir / "attempts" / ".ledger"):
        for f in base.glob(f"*/*/{attempt_id}/exit.json"):
            try:
                return json.loads(f.read_text())
            except (OSError, ValueError):
                pass
    return None


def server_bin():
    from conftest import BIN

    return BIN


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kills", type=int, default=500)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--items", type=int, default=200, help="size of the map")
    ap.add_argument("--in-flight", type=int, default=2, help="executions running at once")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("--supervisor-kills", type=float, default=0.02,
                    help="chance that a server kill also kills the resident supervisor")
    ap.add_argument("--worker-kills", type=float, default=0.03,
                    help="chance that a server kill also kills one warm worker")
    args = ap.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    root = pathlib.Path(tempfile.mkdtemp(prefix="contrail-chaos-"))
    side = root / "side.txt"
    server = Server(root / "data", root / "server.log")
    restarts = [timed_start(server)]
    started, done, failures = [], {}, []
    signal_value = 5
    supervisor_kills = zygote_kills = 0
    api_errors = collections.Counter()
    try:
        cfg = server.write_config(root / "config.yaml")
        work = root / "wf"
        work.mkdir()
        shutil.copy(HERE / "chaos_wf.py", work / "chaos_wf.py")
        version = "v" + uuid.uuid4().hex[:8]
        p = subprocess.run([PYFLYTE, "-c", str(cfg), "register", "--project", PROJECT, "--domain", DOMAIN,
                            "--version", version, "chaos_wf.py"], cwd=work, capture_output=True, text=True,
                           timeout=600)
        if p.returncode != 0:
            raise SystemExit(p.stdout + p.stderr)
        r = remote(cfg)
        lp = r.fetch_launch_plan(name="chaos_wf.chaos_wf", version=version)
        pending_signal = set()

        def top_up():
            from flytekit.models.core.execution import WorkflowExecutionPhase as WP

            for name in list(set(started) - set(done)):
                phase = r.fetch_execution(name=name).closure.phase
                if phase in (WP.SUCCEEDED, WP.FAILED, WP.ABORTED, WP.TIMED_OUT):
                    done[name] = phase
            for name in list(pending_signal):
                try:
                    r.set_signal("go", name, signal_value)
                    pending_signal.discard(name)
                except Exception:  # noqa: BLE001 - the gate may not be waiting yet
                    pass
            while len(set(started) - set(done)) < args.in_flight:
                name = "chaos-" + uuid.uuid4().hex[:10]
                r.execute(lp, inputs={"side": str(side), "n": args.items, "k": 4}, execution_name=name)
                started.append(name)
                pending_signal.add(name)

        kills = 0
        began = time.monotonic()
        while kills < args.kills:
            try:
                top_up()
            except Exception as e:  # noqa: BLE001 - the API call raced a kill; next time
                api_errors[type(e).__name__] += 1
            # Chaos, not synchronisation: the kill lands at an arbitrary point of a round.
            time.sleep(rng.uniform(0.02, 0.6))
            roll = rng.random()
            if roll < args.supervisor_kills:
                pidfile = server.data_dir / "supervisor.pid"
                try:
                    os.kill(int(pidfile.read_text()), signal.SIGKILL)
                    supervisor_kills += 1
                except (OSError, ValueError):
                    pass
            elif roll < args.supervisor_kills + args.worker_kills:
                # Only this server's workers (their command names its data directory).
                workers = pids_of(str(server.data_dir / "workers" / "zygote.py"))
                if workers:
                    try:
                        os.kill(rng.choice(workers), signal.SIGKILL)
                        zygote_kills += 1
                    except ProcessLookupError:
                        pass
            server.kill9()
            kills += 1
            restarts.append(timed_start(server))
        chaos_s = time.monotonic() - began
        # Nothing stuck: everything started finishes within the deadline.
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            try:
                args.in_flight = 0
                top_up()
            except Exception as e:  # noqa: BLE001
                api_errors[type(e).__name__] += 1
            if len(done) == len(started) and not pending_signal:
                break
            time.sleep(1)
        stuck = sorted(set(started) - set(done))
        from flytekit.models.core.execution import WorkflowExecutionPhase as WP

        want, tags = expected(args.items, 4, signal_value)
        for name in sorted(done):
            ex = r.fetch_execution(name=name)
            if done[name] != WP.SUCCEEDED:
                failures.append(f"{name} ended {WP.enum_to_string(done[name])}: {ex.closure.error}")
                continue
            got = r.sync_execution(ex).outputs["o0"]
            if got != want:
                failures.append(f"{name} output {got}, expected {want}")
        notes = side.read_text().split() if side.exists() else []
        # "<execution>/<tag>@<attempt>": the same attempt twice is an attempt started twice;
        # two attempts of one task are a retry, allowed only if the earlier one left no
        # outputs (it died before finishing: its supervisor or worker was killed).
        twice = sorted(n for n, c in collections.Counter(notes).items() if c > 1)
        if twice:
            failures.append(f"attempts that ran to completion twice: {twice[:20]}")
        attempts = collections.defaultdict(set)
        for n in notes:
            task, _, attempt = n.rpartition("@")
            attempts[task].add(int(attempt))
        retried = {t: sorted(a) for t, a in attempts.items() if len(a) > 1}
        blobs = server.data_dir / "blobs"
        for task, tried in retried.items():
            name, tag = task.split("/", 1)
            if not tag.startswith("square-"):
                continue  # only the map's items (node n1) have their earlier outputs looked up
            item = int(tag.split("-")[1])
            for a in tried[:-1]:
                # The map task is node n1; an item's outputs are <n1>/data/0/<item>/<attempt>.
                found = list(blobs.glob(f"*/metadata/propeller/*-{name}/n1/data/0/{item}/{a}/outputs.pb"))
                # As in Flyte, an attempt whose process was killed failed, even if it had
                # written its outputs: only an attempt that exited 0 (or was lost with its
                # outputs written, which counts as a success) must never run again.
                rec = exit_record(server.data_dir, f"{name}-n1-{item}-{a}")
                succeeded = rec is None or rec.get("code") == 0 or rec.get("lost")
                if found and succeeded:
                    failures.append(f"{task}: attempt {a} succeeded ({rec}) and attempt {tried[-1]} ran again")
        # Every attempt past the first, of any node: the attempt before it must have failed
        # (killed, non-zero exit), never exited 0.
        later = set()
        for base in (server.data_dir / "attempts", server.data_dir / "attempts" / ".ledger"):
            for d in base.glob("*/*/*"):
                stem, _, attempt = d.name.rpartition("-")
                if attempt.isdigit() and int(attempt) > 0:
                    later.add((stem, int(attempt)))
        ran_again = len(later)
        for stem, attempt in sorted(later):
            rec = exit_record(server.data_dir, f"{stem}-{attempt - 1}")
            if rec is not None and rec.get("code") == 0:
                failures.append(f"{stem}-{attempt} ran although attempt {attempt - 1} exited 0")
        lines = [n.rpartition("@")[0] for n in notes]
        counts = collections.Counter(lines)
        for name in done:
            own = sorted(set(line.split("/", 1)[1] for line in lines if line.startswith(name + "/")))
            if done[name] == WP.SUCCEEDED and own != sorted(t for t in tags if t not in CHILD_TAGS):
                failures.append(f"{name}: side file tags differ from the expected set")
        child_runs = sum(1 for line in set(lines) if line.split("/", 1)[-1] in CHILD_TAGS)
        succeeded = sum(1 for ph in done.values() if ph == WP.SUCCEEDED)
        if child_runs != len(CHILD_TAGS) * succeeded:
            failures.append(f"launch-plan children ran {child_runs} tasks for {succeeded} parents")
        if counts.get("cached/7", 0) != 1:
            failures.append(f"the cached task ran {counts.get('cached/7', 0)} times, expected once")
        if stuck:
            failures.append(f"stuck: {stuck}")
        after = sorted(restarts[1:])
        summary = {
            "seed": seed, "kills": kills, "supervisor_kills": supervisor_kills, "zygote_kills": zygote_kills,
            "executions": len(started), "succeeded": succeeded, "tasks_completed": len(notes),
            "retried_after_a_lost_attempt": len(retried), "retry_attempts": ran_again,
            "chaos_seconds": round(chaos_s, 1),
            "restart_ms": {"p50": round(1000 * statistics.median(after), 1),
                           "p99": round(1000 * after[int(0.99 * (len(after) - 1))], 1),
                           "max": round(1000 * after[-1], 1)},
            "api_errors_during_kills": dict(api_errors),
            "failures": failures,
        }
        print(json.dumps(summary))
        return 1 if failures else 0
    finally:
        server.stop()
        server.kill_tasks()
        for pid in pids_of(str(root)):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if args.keep:
            print(f"kept {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
