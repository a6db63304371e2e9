"""The two shapes as flytekit workflows: Contrail (cold and warm) and flytekit local run it."""
from typing import List

from flytekit import task, workflow


@task
def inc(x: int) -> int:
    return x + 1


@task
def join(xs: List[int]) -> int:
    return sum(xs)


@workflow
def chain(x: int = 0) -> int:
    for _ in range(20):
        x = inc(x=x)
    return x


@workflow
def fanout() -> int:
    return join(xs=[inc(x=i) for i in range(200)])
