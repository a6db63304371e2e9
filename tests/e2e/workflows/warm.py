"""Tasks that probe how warm workers isolate attempts (tests/e2e/test_warm_workers.py)."""
import multiprocessing
import os
import random
import time
import typing

from flytekit import task, workflow

# Mutated by `bump`: every attempt must start from this value.
STATE = {"calls": 0}
VERSION = "a"


@task
def bump(after: int) -> int:
    STATE["calls"] += 1
    return STATE["calls"] * 1000 + after


@workflow
def isolation_wf() -> typing.Tuple[int, int]:
    first = bump(after=0)
    return first, bump(after=first)


@task
def read_env(name: str) -> str:
    return os.environ.get(name, "")


@workflow
def env_wf(name: str) -> str:
    return read_env(name=name)


@task
def identity(pidfile: str, seconds: float) -> typing.Tuple[int, int]:
    """Writes its pid (so a test can find the process), sleeps, returns (pid, a random draw)."""
    with open(pidfile + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.rename(pidfile + ".tmp", pidfile)
    time.sleep(seconds)
    return os.getpid(), random.randrange(1 << 30)


@workflow
def identity_wf(pidfile: str, seconds: float) -> typing.Tuple[int, int]:
    return identity(pidfile=pidfile, seconds=seconds)


@task
def nap(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


@workflow
def nap_wf(seconds: float) -> int:
    return nap(seconds=seconds)


@workflow
def naps_wf(seconds: float) -> typing.List[int]:
    return [nap(seconds=seconds) for _ in range(8)]


@task
def version(seconds: float) -> str:
    time.sleep(seconds)
    return VERSION


@workflow
def version_wf(seconds: float) -> str:
    return version(seconds=seconds)


def square(x: int) -> int:
    return x * x


@task
def forks() -> typing.List[int]:
    """A task that forks by itself and through multiprocessing."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(write_end, b"7")
        os._exit(0)
    os.close(write_end)
    from_child = int(os.read(read_end, 8))
    os.waitpid(pid, 0)
    with multiprocessing.get_context("fork").Pool(2) as pool:
        squares = pool.map(square, [1, 2, 3])
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        spawned = pool.map(square, [4])
    return [from_child, *squares, *spawned]


@workflow
def forks_wf() -> typing.List[int]:
    return forks()
