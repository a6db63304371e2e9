"""`contrail watch` follows an execution to its end (exit 0 when it succeeded, non-zero with
the error and the failed node's log tail otherwise); `contrail executions ls` lists them."""
import subprocess

import pytest

from conftest import BIN, execute, finish, register_module


@pytest.fixture(scope="module")
def version(config, tmp_path_factory):
    return register_module(config, tmp_path_factory, "console")


def contrail(server, *args, timeout=300):
    return subprocess.run([str(BIN), *args, "--endpoint", f"127.0.0.1:{server.port}"],
                          capture_output=True, text=True, timeout=timeout)


def test_watch_follows_a_running_execution_until_it_succeeds(config, server, version, tmp_path):
    release = tmp_path / "release"
    r, ex = execute(config, version, "console.chatty_wf", release=str(release))
    watcher = subprocess.Popen([str(BIN), "watch", ex.id.name, "--endpoint", f"127.0.0.1:{server.port}"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # The watcher reports the running task before it is released.
        line = watcher.stdout.readline()
        while "n0" not in line:
            assert line, "watch ended early"
            line = watcher.stdout.readline()
        assert watcher.poll() is None, "watch must keep following a running execution"
        release.write_text("go")
        out, err = watcher.communicate(timeout=120)
    finally:
        if watcher.poll() is None:
            watcher.kill()
    assert watcher.returncode == 0, out + err
    assert "✓ n0" in out and "✓ n1" in out and f"{ex.id.name}: SUCCEEDED" in out, out
    finish(r, ex)


def test_watch_exits_non_zero_with_the_error_and_the_log_tail(config, server, version):
    r, ex = execute(config, version, "console.showcase_wf", x=3)
    p = contrail(server, "watch", ex.id.name)
    assert p.returncode != 0
    assert "✗ n2" in p.stdout and "✗ n2-n0" in p.stdout, p.stdout
    assert "refusing 14" in p.stdout
    assert "last 20 lines" in p.stdout, p.stdout
    assert f"execution {ex.id.name} ended FAILED" in p.stderr


def test_executions_ls_lists_the_newest_first(config, server, version):
    r, ex = execute(config, version, "console.square_wf", x=4)
    finish(r, ex)
    p = contrail(server, "executions", "ls", "--limit", "5")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].split()[:2] == ["NAME", "PHASE"]
    assert lines[1].split()[:3] == [ex.id.name, "SUCCEEDED", "console.square_wf"], lines
    p = contrail(server, "executions", "ls", "--phase", "failed")
    assert p.returncode == 0 and all(" FAILED " in l for l in p.stdout.splitlines()[1:]), p.stdout
