"""What Contrail adds to a task on Slurm: a benchmark, not a test (results in
docs/benchmarks.md). Needs the Slurm cluster and SeaweedFS of scripts/services.sh.

1. One no-op flytekit task, `--repeats` times: Contrail's CreateExecution → execution
   SUCCEEDED, against bare `sbatch` → COMPLETED of the very same batch script (read back
   from Slurm with `scontrol write batch_script`), side by side in one run.
2. A map task of `--fanout` no-op items on the 3 emulated nodes, against the same number of
   bare `sbatch` submissions of that same no-op task's script.

    scripts/services.sh start /tmp/svc && source /tmp/svc/env
    CONTRAIL_BIN=target/debug/contrail .venv/bin/python bench/slurm.py --repeats 5 --fanout 200
"""
import argparse
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests" / "e2e"))

from conftest import (  # noqa: E402
    E2E_WORKFLOWS, PYFLYTE, S3_BUCKET, S3_ENDPOINT, S3_KEYS, Server, client_config, remote,
)

POLL = 0.05


def sh(*cmd, stdin=None):
    p = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        raise RuntimeError(f"{cmd}: {p.stderr}")
    return p.stdout


def states(ids):
    if not ids:
        return {}
    out = sh("squeue", "--noheader", "--states=all", "--format=%i|%T", "--jobs", ",".join(ids))
    return dict(line.split("|") for line in out.split())


def bare(script, count, logdir):
    """Submits `count` copies of a batch script at once; seconds until all COMPLETED."""
    t0 = time.monotonic()
    ids = [sh("sbatch", "--parsable", "--export=NONE", "--chdir=/tmp", f"--output={logdir}/bare-%j.out",
              stdin=script).strip() for _ in range(count)]
    done = set()
    while True:
        # Slurm forgets finished jobs after MinJobAge: count each one when first seen ended.
        for job, state in states([i for i in ids if i not in done]).items():
            if state in ("COMPLETED", "FAILED", "CANCELLED", "OUT_OF_MEMORY", "TIMEOUT", "NODE_FAIL"):
                assert state == "COMPLETED", (job, state)
                done.add(job)
        if len(done) == len(ids):
            return time.monotonic() - t0
        time.sleep(POLL)


def contrail(r, lp, inputs, label):
    """Seconds from CreateExecution until the execution is SUCCEEDED; the execution."""
    t0 = time.monotonic()
    ex = r.execute(lp, inputs=inputs, execution_cluster_label=label)
    while True:
        ex = r.fetch_execution(name=ex.id.name)
        if ex.closure.phase == 4:
            return time.monotonic() - t0, ex
        assert ex.closure.phase not in (5, 6, 7), ex.closure.error
        time.sleep(POLL)


def job_id(name):
    out = sh("squeue", "--noheader", "--states=all", "--format=%i", "--name", name)
    return out.split()[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--fanout", type=int, default=200)
    ap.add_argument("--poll-ms", type=int, default=250)
    args = ap.parse_args()
    assert os.environ.get("SLURM_CONF") and S3_ENDPOINT, "source the env of scripts/services.sh start"
    root = pathlib.Path(tempfile.mkdtemp(prefix="contrail-slurm-bench-"))
    logs = root / "joblogs"
    logs.mkdir()
    (root / "contrail.toml").write_text(
        f'[executors.hpc]\nkind = "slurm"\nlog_dir = "{logs}"\npoll_interval_ms = {args.poll_ms}\n'
        f'[executors.hpc.images]\n"*" = "{sys.prefix}"\n')
    server = Server(root / "data", root / "server.log", [
        "--config", str(root / "contrail.toml"), "--blob-store", f"s3://{S3_BUCKET}",
        "--blob-endpoint", S3_ENDPOINT, "--blob-access-key", S3_KEYS[0], "--blob-secret-key", S3_KEYS[1]])
    server.start()
    try:
        config = client_config(root / "config.yaml", server.port, S3_ENDPOINT, S3_KEYS)
        shutil.copy(E2E_WORKFLOWS / "slurm.py", root / "slurm.py")
        version = "v" + uuid.uuid4().hex[:8]
        subprocess.run([PYFLYTE, "-c", str(config), "register", "--version", version, "slurm.py"],
                       cwd=root, check=True, capture_output=True, timeout=300)
        r = remote(config)
        one = r.fetch_launch_plan(name="slurm.one", version=version)
        fan = r.fetch_launch_plan(name="slurm.fanout", version=version)
        contrail(r, one, {"x": 0}, "hpc")  # warm: code archive cached on the nodes' page cache
        single, script = [], None
        for i in range(args.repeats):
            seconds, ex = contrail(r, one, {"x": i}, "hpc")
            single.append(seconds)
            script = script or sh("scontrol", "write", "batch_script", job_id(f"{ex.id.name}-n0-0"), "-")
        bare_single = [bare(script, 1, logs) for _ in range(args.repeats)]
        print(f"single: contrail {single}, bare {bare_single}", file=sys.stderr, flush=True)
        fan_s, ex = contrail(r, fan, {"xs": list(range(args.fanout))}, "hpc")
        print(f"fan-out: contrail {fan_s:.1f}s", file=sys.stderr, flush=True)
        # The same no-op job (Slurm forgets finished jobs after MinJobAge, so the single
        # task's script stands in for an item's: they differ only in paths).
        bare_fan = bare(script, args.fanout, logs)
    finally:
        server.stop()
    result = {
        "repeats": args.repeats, "poll_interval_ms": args.poll_ms, "fanout": args.fanout,
        "contrail_single_median_s": round(statistics.median(single), 3),
        "bare_sbatch_single_median_s": round(statistics.median(bare_single), 3),
        "overhead_single_median_s": round(statistics.median(single) - statistics.median(bare_single), 3),
        "contrail_single_s": [round(s, 3) for s in single],
        "bare_single_s": [round(s, 3) for s in bare_single],
        "contrail_fanout_s": round(fan_s, 2), "bare_fanout_s": round(bare_fan, 2),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
