"""Workflows for the node-kind end-to-end tests (written for these tests): branches,
subworkflows, launch plans, dynamic, map tasks, gates, failure nodes, recovery, eager, and a
workflow mixing them for the crash test."""
import functools
import pathlib
import typing
from dataclasses import dataclass
from datetime import timedelta

from flytekit import (
    LaunchPlan,
    WorkflowFailurePolicy,
    approve,
    conditional,
    eager,
    dynamic,
    map_task,
    sleep,
    task,
    wait_for_input,
    workflow,
)


@task
def square(x: int) -> int:
    return x * x


@task
def double(x: int) -> int:
    return 2 * x


@task
def negate(x: int) -> int:
    return -x


@task
def is_even(x: int) -> bool:
    return x % 2 == 0


@task
def add(a: int, b: int) -> int:
    return a + b


@task
def total(xs: typing.List[int], extra: int) -> int:
    return sum(xs) + extra


# ---- branches
@workflow
def branch_wf(x: int = 3) -> int:
    e = is_even(x=x)
    return (
        conditional("parity")
        .if_(e.is_true())
        .then(double(x=x))
        .elif_(x > 10)
        .then(square(x=x))
        .else_()
        .then(negate(x=x))
    )


@workflow
def inner_branch(x: int) -> int:
    return conditional("inner").if_(x == 1).then(double(x=x)).else_().then(square(x=x))


@workflow
def nested_branch_wf(x: int, y: float = 1.0) -> int:
    return (
        conditional("outer")
        .if_((x > 0) & (y < 1.5))
        .then(inner_branch(x=x))
        .elif_((x < 0) | (y > 100.0))
        .then(negate(x=x))
        .else_()
        .fail("x must not be zero")
    )


# An empty branch: flytekit's Echo task passes its input through (Flyte runs it in-process).
from flytekit.core.task import Echo  # noqa: E402

keep = Echo(name="keep", inputs={"x": int})


@workflow
def echo_wf(x: int = 3) -> int:
    return conditional("maybe_double").if_(x > 10).then(double(x=x)).else_().then(keep(x=x))


# ---- subworkflows and launch plans
@workflow
def sub_wf(x: int) -> int:
    return double(x=square(x=x))


sub_lp = LaunchPlan.get_or_create(sub_wf, name="nodes_sub_lp", default_inputs={"x": 2})


@workflow
def parent_wf(x: int = 2) -> typing.Tuple[int, int]:
    a = sub_wf(x=x)
    b = sub_lp(x=a)
    return a, b


@workflow
def array_lp_wf(xs: typing.List[int] = [1, 2, 3]) -> typing.List[int]:
    from flytekit.core.array_node import array_node

    return array_node(sub_lp, concurrency=2)(x=xs)


@task
def slow(x: int) -> int:
    import time

    time.sleep(600)
    return x


@workflow
def slow_wf(x: int = 1) -> int:
    return slow(x=x)


slow_lp = LaunchPlan.get_or_create(slow_wf, name="nodes_slow_lp")


@workflow
def parent_of_slow_wf(x: int = 1) -> int:
    return slow_lp(x=x)


# ---- dynamic
@dynamic
def dyn(n: int) -> typing.List[int]:
    return [square(x=i) for i in range(n)]


@dynamic
def dyn_outer(n: int) -> int:
    xs = dyn(n=n)
    s = sub_wf(x=n)
    return total(xs=xs, extra=s)


@workflow
def dynamic_wf(n: int = 3) -> int:
    return dyn_outer(n=n)


# ---- map tasks
@workflow
def map_wf(xs: typing.List[int] = [1, 2, 3]) -> typing.List[int]:
    return map_task(square, concurrency=2)(x=xs)


@task(retries=1)
def picky(x: int) -> int:
    if x == 3:
        raise ValueError("three is not allowed")
    return x * 10


@workflow
def map_ratio_wf(xs: typing.List[int] = [1, 2, 3, 4]) -> typing.List[typing.Optional[int]]:
    return map_task(picky, min_success_ratio=0.5)(x=xs)


@workflow
def map_strict_wf(xs: typing.List[int] = [1, 2, 3, 4]) -> typing.List[int]:
    return map_task(picky)(x=xs)


@task(retries=2)
def flaky_item(marks: str, x: int) -> int:
    from flytekit.exceptions.user import FlyteRecoverableException

    p = pathlib.Path(marks) / str(x)
    n = int(p.read_text()) if p.exists() else 0
    p.write_text(str(n + 1))
    if x == 1 and n == 0:
        raise FlyteRecoverableException("first try of item 1")
    return x + 100


@workflow
def map_retry_wf(marks: str, xs: typing.List[int] = [0, 1, 2]) -> typing.List[int]:
    return map_task(functools.partial(flaky_item, marks=marks))(x=xs)


@dataclass
class Bag:
    xs: typing.List[int]


@task
def make_bag(n: int) -> Bag:
    return Bag(xs=list(range(n)))


@workflow
def map_attr_wf(n: int = 4) -> typing.List[int]:
    b = make_bag(n=n)
    return map_task(square)(x=b.xs)


@dynamic
def dyn_map(n: int) -> typing.List[int]:
    return map_task(double)(x=list(range(n)))


@workflow
def dyn_map_wf(n: int = 3) -> typing.List[int]:
    return dyn_map(n=n)


# ---- gates
@workflow
def gate_wf(x: int = 3) -> int:
    s = square(x=x)
    z = sleep(timedelta(seconds=2))
    y = wait_for_input("extra", timeout=timedelta(hours=1), expected_type=int)
    a = approve(s, "approve-square", timeout=timedelta(hours=2))
    s >> z
    z >> y
    return add(a=a, b=y)


@workflow
def approve_wf(x: int = 3) -> int:
    return approve(square(x=x), "ok-to-go", timeout=timedelta(hours=1))


@workflow
def short_gate_wf() -> int:
    return wait_for_input("never", timeout=timedelta(seconds=2), expected_type=int)


# ---- failure node
@task
def fail_task(x: int) -> int:
    if x >= 0:
        raise ValueError(f"boom {x}")
    return x


@task
def cleanup(x: int, marker: str, err: typing.Optional[str] = None) -> None:
    pathlib.Path(marker).write_text(f"cleaned {x}")


@workflow(on_failure=cleanup, failure_policy=WorkflowFailurePolicy.FAIL_AFTER_EXECUTABLE_NODES_COMPLETE)
def failing_wf(x: int = 1, marker: str = "/tmp/none") -> int:
    return fail_task(x=x)


@workflow(on_failure=cleanup)
def failing_sub(x: int, marker: str) -> int:
    return fail_task(x=x)


@workflow
def parent_of_failing_sub(x: int = 1, marker: str = "/tmp/none") -> int:
    return failing_sub(x=x, marker=marker)


# ---- recovery
@task
def count(path: str, x: int) -> int:
    p = pathlib.Path(path)
    p.write_text(str(int(p.read_text()) + 1 if p.exists() else 1))
    return x + 1


@task
def needs_flag(flag: str, x: int) -> int:
    if not pathlib.Path(flag).exists():
        raise ValueError("flag file is missing")
    return x * 100


@workflow
def recover_wf(path: str, flag: str, x: int = 1) -> int:
    a = count(path=path, x=x)
    return needs_flag(flag=flag, x=a)


# ---- eager
@task
def add_one(x: int) -> int:
    return x + 1


@eager
async def eager_wf(x: int = 1) -> int:
    a = add_one(x=x)
    b = add_one(x=a)
    return b * 10


# ---- everything at once (crash test)
def _note(side: str, tag: str) -> None:
    with open(side, "a") as f:
        f.write(f"{tag}\n")


@task
def seq(side: str, n: int) -> typing.List[int]:
    _note(side, "seq")
    return list(range(n))


@task
def logged_square(side: str, x: int) -> int:
    _note(side, f"square-{x}")
    return x * x


@task
def logged_double(side: str, x: int) -> int:
    _note(side, f"double-{x}")
    return 2 * x


@dynamic
def logged_dyn(side: str, n: int) -> typing.List[int]:
    return [logged_double(side=side, x=i) for i in range(n)]


@task
def combine(side: str, ys: typing.List[int], ds: typing.List[int], b: int, g: int) -> int:
    _note(side, "combine")
    return sum(ys) + sum(ds) + b + g


@workflow
def mixed_wf(side: str, n: int = 6) -> int:
    xs = seq(side=side, n=n)
    ys = map_task(functools.partial(logged_square, side=side), concurrency=2)(x=xs)
    ds = logged_dyn(side=side, n=n)
    z = sleep(timedelta(seconds=3))
    g = wait_for_input("go", timeout=timedelta(hours=1), expected_type=int)
    b = (
        conditional("big")
        .if_(n > 2)
        .then(logged_double(side=side, x=n))
        .else_()
        .then(logged_square(side=side, x=n))
    )
    xs >> z
    return combine(side=side, ys=ys, ds=ds, b=b, g=g)
