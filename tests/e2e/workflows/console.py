"""Workflows for the console, metrics and `contrail watch` tests (written for these
tests): a branch, a map task and a failure in one workflow; a task that logs while it
waits for a file; an approval gate; a cached task."""
import pathlib
import time
import typing
from datetime import timedelta

from flytekit import approve, conditional, map_task, task, workflow


@task
def square(x: int) -> int:
    return x * x


@task
def total(xs: typing.List[int]) -> int:
    return sum(xs)


@task
def explode(x: int) -> int:
    if x > 0:
        raise ValueError(f"refusing {x}: the total is too large")
    return x


@workflow
def showcase_wf(x: int = 3) -> int:
    """A map task over three items, a branch on the input, and a failing task."""
    squares = map_task(square)(x=[1, 2, x])
    s = total(xs=squares)
    return conditional("size").if_(x > 2).then(explode(x=s)).else_().then(square(x=s))


@task
def chatty(release: str) -> int:
    """Logs a line every 0.2 s until the file `release` exists."""
    n = 0
    while not pathlib.Path(release).exists():
        print(f"tick {n}", flush=True)
        n += 1
        time.sleep(0.2)
    print("released", flush=True)
    return n


@workflow
def chatty_wf(release: str) -> int:
    return square(x=chatty(release=release))


@workflow
def approve_wf(x: int = 3) -> int:
    return approve(square(x=x), "ok-to-go", timeout=timedelta(hours=1))


@task(cache=True, cache_version="1")
def cached_square(x: int) -> int:
    return x * x


@workflow
def cached_wf(x: int = 7) -> int:
    return square(x=cached_square(x=x))


@workflow
def square_wf(x: int = 2) -> int:
    return square(x=x)


@workflow
def nested_wf(x: int = 2) -> int:
    """A subworkflow node, for expanding in place."""
    return square_wf(x=x)
