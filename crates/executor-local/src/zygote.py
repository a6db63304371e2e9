"""Contrail's warm worker (zygote) for one Python environment.

Started by the resident supervisor as `<python> zygote.py <socket>`. It imports flytekit and
what its task entrypoint needs, once, then serves one connection from the supervisor, one
JSON line per request. For each task attempt it forks twice: the intermediate child exits
at once, so the attempt's process is re-parented to the supervisor (a child subreaper),
which waits for it and records how it ended exactly as for a process it spawned itself.
The attempt then runs `pyflyte-execute` in that process, with no second interpreter.

Fork safety: before every fork the zygote checks that it has one thread, no event loop and
no socket but its own connection; otherwise it stops serving (the supervisor falls back to
cold starts and replaces it). User modules are never imported here, only in children.
"""

import importlib
import json
import os
import socket
import sys

# Modules whose import pays off in every task; each is kept only if importing it starts no
# thread (checked in a throwaway child first).
STORAGE_MODULES = ("fsspec", "s3fs", "aiobotocore.session", "botocore.session")
PLUGIN_GROUP = "flytekit.plugins"


def thread_count():
    return len(os.listdir("/proc/self/task"))


def imports_thread_free(load):
    """Runs `load` in a forked child; True when it succeeds and leaves one thread."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        verdict = b"0"
        try:
            load()
            if thread_count() == 1:
                verdict = b"1"
        except BaseException:
            pass
        os.write(write_end, verdict)
        os._exit(0)
    os.close(write_end)
    verdict = os.read(read_end, 1)
    os.close(read_end)
    os.waitpid(pid, 0)
    return verdict == b"1"


def preload():
    """Imports flytekit without its implicit plugins, then every plugin and storage module
    that stays thread-free. Returns (loaded, deferred) plugin names."""
    import importlib.metadata as metadata

    real_entry_points = metadata.entry_points

    def without_plugins(*args, **kwargs):
        if kwargs.get("group") == PLUGIN_GROUP:
            return []
        return real_entry_points(*args, **kwargs)

    metadata.entry_points = without_plugins
    try:
        import flytekit
    finally:
        metadata.entry_points = real_entry_points
    # flytekit bound the name at import; children load the deferred plugins through it.
    flytekit.entry_points = real_entry_points
    import flytekit.bin.entrypoint  # noqa: F401

    for name in STORAGE_MODULES:
        if imports_thread_free(lambda: importlib.import_module(name)):
            importlib.import_module(name)
    loaded, deferred = [], []
    for entry in real_entry_points(group=PLUGIN_GROUP):
        if imports_thread_free(entry.load):
            entry.load()
            loaded.append(entry.name)
        else:
            deferred.append(entry.name)
    return loaded, deferred


def park_event_loops():
    """Closes event loops that modules created at import (flytekit's connector module makes
    one) and returns where they were, so each child gets a fresh one of its own: a loop's
    epoll instance would otherwise be shared by every child."""
    import asyncio

    parked = []
    for name, module in list(sys.modules.items()):
        # A lazily loaded module (flytekit defers pandas and pyarrow) would load on access.
        if type(module).__name__ == "_LazyModule":
            continue
        for attribute, value in list(getattr(module, "__dict__", {}).items()):
            # type(), not isinstance(): asking a lazy module for __class__ loads it.
            if issubclass(type(value), asyncio.AbstractEventLoop) and not value.is_closed():
                value.close()
                parked.append((name, attribute))
    return parked


def fork_hazards(connection_fd):
    """What would make a fork unsafe now (empty when it is safe)."""
    hazards = []
    threads = thread_count()
    if threads != 1:
        hazards.append(f"{threads} threads")
    if "asyncio" in sys.modules:
        import asyncio

        if asyncio.events._get_running_loop() is not None:
            hazards.append("a running event loop")
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:") and int(fd) != connection_fd:
            hazards.append(f"open socket on fd {fd}")
    return hazards


def spawn(request):
    """Forks the attempt's process. Returns its pid in the zygote, or the request in the
    attempt's process itself."""
    read_end, write_end = os.pipe()
    middle = os.fork()
    if middle == 0:
        os.close(read_end)
        try:
            pid = os.fork()
        except OSError:
            os._exit(1)
        if pid == 0:
            os.close(write_end)
            return request
        # Its own process group before anyone learns the pid: abort kills the group.
        try:
            os.setpgid(pid, pid)
        except OSError:
            pass
        os.write(write_end, str(pid).encode())
        os._exit(0)
    os.close(write_end)
    chunks = []
    while True:
        chunk = os.read(read_end, 64)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(read_end)
    os.waitpid(middle, 0)
    text = b"".join(chunks).decode()
    if not text:
        raise OSError("fork failed")
    return int(text)


def serve(listener, status, context):
    """Serves the supervisor's one connection: the status line first, then a reply per
    request. Returns (request, base path) in an attempt's process; None when done."""
    listener.settimeout(60)
    try:
        connection, _ = listener.accept()
    except socket.timeout:
        return None
    listener.close()
    connection.settimeout(None)
    connection.sendall((json.dumps(status) + "\n").encode())
    if status["hazards"]:
        return None
    reader = connection.makefile("r", encoding="utf-8")
    for line in reader:
        request = json.loads(line)
        hazards = fork_hazards(connection.fileno())
        if hazards:
            connection.sendall((json.dumps({"error": "unsafe to fork: " + ", ".join(hazards)}) + "\n").encode())
            return None
        try:
            result = spawn(request)
        except OSError as error:
            connection.sendall((json.dumps({"error": str(error)}) + "\n").encode())
            continue
        if isinstance(result, dict):
            return result, context
        connection.sendall((json.dumps({"pid": result}) + "\n").encode())
    return None


def run_attempt(request, context):
    """In the attempt's own process: become the task, as `pyflyte-execute` would start."""
    base_path, parked_loops = context
    os.setpgid(0, 0)
    null = os.open(os.devnull, os.O_RDONLY)
    out = os.open(request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    err = os.open(request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    for source, target in ((null, 0), (out, 1), (err, 2)):
        os.dup2(source, target)
    os.closerange(3, os.sysconf("SC_OPEN_MAX"))
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(dict(request["env"]))
    python_path = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    sys.path[:] = [request["bin_dir"], *python_path, *base_path]
    import asyncio
    import random

    for module, attribute in parked_loops:
        setattr(sys.modules[module], attribute, asyncio.new_event_loop())
    random.seed()
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed()
    import flytekit
    from flytekit.bin.entrypoint import _pass_through

    flytekit.load_implicit_plugins()
    args = request["args"]
    sys.argv = list(args)
    try:
        _pass_through.main(args=args, prog_name="pyflyte")
        code = 0
    except SystemExit as done:
        code = done.code
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    finish(code)


def finish(code):
    """Ends the attempt's process as an interpreter exit would, minus tearing down every
    module the zygote loaded (hundreds of milliseconds of work nobody needs): wait for the
    task's own threads, run its exit handlers, flush."""
    import atexit
    import threading

    if code is None:
        code = 0
    elif not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    try:
        threading._shutdown()
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(code & 0xFF)


def main():
    path = sys.argv[1]
    base_path = list(sys.path[1:])
    loaded, deferred = preload()
    parked_loops = park_event_loops()
    # Objects that exist now are never collected: children keep sharing their pages.
    import gc

    gc.collect()
    gc.freeze()
    hazards = fork_hazards(-1)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    if os.path.exists(path):
        os.unlink(path)
    listener.bind(path)
    listener.listen(1)
    status = {
        "pid": os.getpid(),
        "python": sys.executable,
        # What the supervisor watches for changes (not this script's own directory).
        "paths": [p for p in base_path if os.path.isdir(p)],
        "plugins": loaded,
        "deferred_plugins": deferred,
        "hazards": hazards,
    }
    return serve(listener, status, (base_path, parked_loops))


if __name__ == "__main__":
    started = main()
    if started is not None:
        run_attempt(*started)
