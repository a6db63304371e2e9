"""Workflows the Slurm tier routes to Slurm (see test_slurm.py)."""
import os
import time
import typing

from flytekit import Resources, dynamic, map_task, task, workflow


@task
def where(x: int) -> str:
    """Says where it ran: the Slurm job id and node, or empty outside Slurm."""
    return f"{os.environ.get('SLURM_JOB_ID', '')}|{os.environ.get('SLURMD_NODENAME', '')}|{x * 2}"


@workflow
def basic(x: int = 3) -> str:
    return where(x=x)


@task
def double(x: int) -> int:
    return x * 2


@workflow
def mapped(xs: typing.List[int]) -> typing.List[int]:
    return map_task(double)(x=xs)


@dynamic
def fan(n: int) -> typing.List[int]:
    return [double(x=i) for i in range(n)]


@workflow
def dyn(n: int = 3) -> typing.List[int]:
    return fan(n=n)


@task(retries=1, limits=Resources(mem="500Mi"))
def hungry() -> int:
    """Its first attempt allocates far past its memory limit."""
    if int(os.environ.get("FLYTE_ATTEMPT_NUMBER", "0")) == 0:
        block = bytearray(1536 * 1024 * 1024)
        return len(block)
    return int(os.environ["FLYTE_ATTEMPT_NUMBER"])


@workflow
def oom() -> int:
    return hungry()


@task
def sleepy(s: int) -> int:
    time.sleep(s)
    return s


@workflow
def slow(s: int = 600) -> int:
    return sleepy(s=s)


@task
def noop(x: int) -> int:
    return x


@workflow
def one(x: int = 1) -> int:
    return noop(x=x)


@workflow
def fanout(xs: typing.List[int]) -> typing.List[int]:
    return map_task(noop)(x=xs)
