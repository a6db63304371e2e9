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
    that stays thread-free. Returns the names of the plugins loaded and the entry points of
    those deferred to each attempt (scanning entry points again costs an attempt 10-20 ms;
    a change in the environment replaces the worker anyway)."""
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
    # flytekit bound the name at import: give it the real one back for later callers.
    flytekit.entry_points = real_entry_points
    import flytekit.bin.entrypoint  # noqa: F401

    for name in STORAGE_MODULES:
        if imports_thread_free(lambda: importlib.import_module(name)):
            importlib.import_module(name)
    warm_caches()
    loaded, deferred = [], []
    for entry in real_entry_points(group=PLUGIN_GROUP):
        if imports_thread_free(entry.load):
            entry.load()
            loaded.append(entry.name)
        else:
            deferred.append(entry)
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


def warm_caches():
    """Fills pure caches every task would fill again: the regular expressions flytekit's
    docstring parsing compiles when a module declares its tasks (a profile of a trivial
    task showed 15 of its 60 ms there). Nothing is registered anywhere."""
    try:
        import docstring_parser

        docstring_parser.parse(
            "Summary.\n\n:param x: a value\n:return: a value\n\nArgs:\n    x: a value\n"
            "Returns:\n    a value\n\nParameters\n----------\nx : int\n    a value\n"
        )
    except Exception:
        pass


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


def read_all(fd):
    chunks = []
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def fork_spare():
    """Forks the next attempt's process ahead of its request: a spare, already re-parented
    to the supervisor, in its own process group, waiting on a pipe. Returns (pid, the
    pipe's write end) in the zygote; in the spare, the request it was given (or it exits
    when the zygote closes the pipe without one)."""
    request_read, request_write = os.pipe()
    pid_read, pid_write = os.pipe()
    middle = os.fork()
    if middle == 0:
        os.close(request_write)
        os.close(pid_read)
        try:
            pid = os.fork()
        except OSError:
            os._exit(1)
        if pid == 0:
            # Hold nothing of the zygote's: its connection must close when the zygote dies.
            os.closerange(3, request_read)
            os.closerange(request_read + 1, os.sysconf("SC_OPEN_MAX"))
            line = read_all(request_read)
            if not line:
                os._exit(0)
            os.close(request_read)
            return json.loads(line)
        # Its own process group before anyone learns the pid: abort kills the group.
        try:
            os.setpgid(pid, pid)
        except OSError:
            pass
        os.write(pid_write, str(pid).encode())
        os._exit(0)
    os.close(request_read)
    os.close(pid_write)
    text = read_all(pid_read).decode()
    os.close(pid_read)
    os.waitpid(middle, 0)
    if not text:
        os.close(request_write)
        raise OSError("fork failed")
    return int(text), request_write


def serve(listener, status, context):
    """Serves the supervisor's one connection: the status line first, then a reply per
    request. Returns (request, context) in an attempt's process; None when done.

    Each request is handed to the spare forked before it (its pid is the reply), and the
    next spare is forked after the reply, so no fork is on the way of an attempt."""
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
    spare = None
    reader = connection.makefile("rb")
    while True:
        if spare is None:
            hazards = fork_hazards(connection.fileno())
            if hazards:
                # Refuse the next request (the supervisor then replaces this worker).
                reader.readline()
                connection.sendall((json.dumps({"error": "unsafe to fork: " + ", ".join(hazards)}) + "\n").encode())
                return None
            try:
                spare = fork_spare()
            except OSError as error:
                reader.readline()
                connection.sendall((json.dumps({"error": str(error)}) + "\n").encode())
                continue
            if isinstance(spare, dict):
                # In the spare: its copy of the connection's descriptor is closed already;
                # forget it, so nothing closes a reused descriptor number later.
                connection.detach()
                return spare, context
        line = reader.readline()
        if not line:
            return None
        pid, pipe = spare
        spare = None
        try:
            while line:
                line = line[os.write(pipe, line):]
            os.close(pipe)
        except OSError as error:
            # The spare is gone (killed while it waited): this request gets an error.
            connection.sendall((json.dumps({"error": f"spare {pid}: {error}"}) + "\n").encode())
            continue
        connection.sendall((json.dumps({"pid": pid}) + "\n").encode())


def run_attempt(request, context):
    """In the attempt's own process: become the task, as `pyflyte-execute` would start."""
    base_path, parked_loops, deferred_plugins = context
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
    from flytekit.bin.entrypoint import _pass_through

    # flytekit.load_implicit_plugins(), from the worker's scan: the plugins it could not hold.
    for entry in deferred_plugins:
        entry.load()
    args = request["args"]
    sys.argv = list(args)
    profile = None
    if os.environ.get("CONTRAIL_PROFILE_TASK"):
        # Diagnostics: a cProfile of the attempt, written to its sandbox.
        import cProfile

        profile = cProfile.Profile()
        profile.enable()
    try:
        _pass_through.main(args=args, prog_name="pyflyte")
        code = 0
    except SystemExit as done:
        code = done.code
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    if profile is not None:
        profile.disable()
        profile.dump_stats("task.prof")
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
        "deferred_plugins": [entry.name for entry in deferred],
        "hazards": hazards,
    }
    return serve(listener, status, (base_path, parked_loops, deferred))


if __name__ == "__main__":
    started = main()
    if started is not None:
        run_attempt(*started)
