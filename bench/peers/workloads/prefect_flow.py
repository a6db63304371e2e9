"""The two shapes as Prefect 3 flows against a local Prefect server (PREFECT_API_URL)."""
import json
import sys
import time

from prefect import flow, task


@task
def inc(x: int) -> int:
    return x + 1


@task
def join(xs: list) -> int:
    return sum(xs)


@flow
def chain() -> int:
    x = 0
    for _ in range(20):
        x = inc(x)
    return x


@flow
def fanout() -> int:
    return join(inc.map(range(200)).result())


if __name__ == "__main__":
    shape = {"chain": chain, "fanout": fanout}[sys.argv[1]]
    start = time.perf_counter()
    result = shape()
    print(json.dumps({"wall_s": time.perf_counter() - start, "result": result}))
