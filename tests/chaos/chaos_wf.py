"""The chaos soak's workload (written for it): every node kind in one workflow. Each task
notes `<execution>/<tag>@<attempt>` in a side file as its last act, so a task that ran to
completion twice shows up twice (and which attempts ran)."""
import functools
import os
import typing
from datetime import timedelta

from flytekit import LaunchPlan, conditional, current_context, dynamic, map_task, sleep, task, wait_for_input, workflow


def _note(side: str, tag: str) -> None:
    name = current_context().execution_id.name
    attempt = os.environ.get("FLYTE_ATTEMPT_NUMBER", "0")
    with open(side, "a") as f:
        f.write(f"{name}/{tag}@{attempt}\n")
        f.flush()
        os.fsync(f.fileno())


@task(retries=2)
def seq(side: str, n: int) -> typing.List[int]:
    _note(side, "seq")
    return list(range(n))


@task(retries=2)
def square(side: str, x: int) -> int:
    _note(side, f"square-{x}")
    return x * x


@task(retries=2)
def double(side: str, x: int) -> int:
    _note(side, f"double-{x}")
    return 2 * x


@task(cache=True, cache_version="1", cache_serialize=True, retries=2)
def cached(side: str, x: int) -> int:
    # The side file is shared, the cache key is the inputs: run once across executions.
    with open(side, "a") as f:
        f.write(f"cached/{x}@{os.environ.get('FLYTE_ATTEMPT_NUMBER', '0')}\n")
        f.flush()
        os.fsync(f.fileno())
    return x + 1000


@dynamic
def fan(side: str, n: int) -> typing.List[int]:
    return [double(side=side, x=i) for i in range(n)]


@task(retries=2)
def combine(side: str, ys: typing.List[int], ds: typing.List[int], b: int, g: int, s: int, l: int, c: int) -> int:
    _note(side, "combine")
    return sum(ys) + sum(ds) + b + g + s + l + c


@workflow
def inner(side: str, x: int) -> int:
    return double(side=side, x=square(side=side, x=x))


inner_lp = LaunchPlan.get_or_create(inner, name="chaos_inner_lp")


@workflow
def chaos_wf(side: str, n: int = 200, k: int = 4) -> int:
    xs = seq(side=side, n=n)
    ys = map_task(functools.partial(square, side=side), concurrency=4)(x=xs)
    ds = fan(side=side, n=k)
    z = sleep(timedelta(seconds=1))
    g = wait_for_input("go", timeout=timedelta(hours=1), expected_type=int)
    b = conditional("big").if_(k > 2).then(double(side=side, x=1000)).else_().then(square(side=side, x=1000))
    s = inner(side=side, x=2000)
    l = inner_lp(side=side, x=3000)
    c = cached(side=side, x=7)
    xs >> z
    return combine(side=side, ys=ys, ds=ds, b=b, g=g, s=s, l=l, c=c)


def expected(n: int, k: int, signal: int) -> typing.Tuple[int, typing.List[str]]:
    """The output and the side-file tags (per execution) of one run of chaos_wf."""
    out = sum(i * i for i in range(n)) + sum(2 * i for i in range(k)) + 2000 + signal
    out += 2 * 2000 * 2000 + 2 * 3000 * 3000 + 1007
    tags = ["seq", "combine", "double-1000", "square-2000", "double-4000000", "square-3000", "double-9000000"]
    tags += [f"square-{i}" for i in range(n)] + [f"double-{i}" for i in range(k)]
    return out, tags
