"""Workflows for the scale-out tier: every task appends `<tag>:<i>` to a side file, so a
test can tell whether any task ran twice."""
import time

from flytekit import task, workflow


@task
def step(tag: str, i: int, side: str) -> int:
    with open(side, "a") as f:
        f.write(f"{tag}:{i}\n")
    return i + 1


@workflow
def chain_wf(tag: str, side: str) -> int:
    v = step(tag=tag, i=0, side=side)
    v = step(tag=tag, i=v, side=side)
    return step(tag=tag, i=v, side=side)


@task
def slow_step(tag: str, i: int, side: str) -> int:
    time.sleep(0.7)
    with open(side, "a") as f:
        f.write(f"{tag}:{i}\n")
    return i + 1


@workflow
def slow_wf(tag: str, side: str) -> int:
    v = 0
    for _ in range(10):
        v = slow_step(tag=tag, i=v, side=side)
    return v
