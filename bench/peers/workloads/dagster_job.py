"""The two shapes as Dagster jobs on SQLite storage (DAGSTER_HOME), in-process or multiprocess."""
import json
import sys
import time
from typing import List

from dagster import DagsterInstance, execute_job, job, op, reconstructable


@op
def start() -> int:
    return 0


@op
def inc(x: int) -> int:
    return x + 1


@op
def join(xs: List[int]) -> int:
    return sum(xs)


@op
def seed() -> int:
    return 0


@job
def chain():
    x = start()
    for i in range(20):
        x = inc.alias(f"inc_{i}")(x)


@job
def fanout():
    s = seed()
    join([inc.alias(f"inc_{i}")(s) for i in range(200)])


if __name__ == "__main__":
    shape, executor = sys.argv[1], sys.argv[2]
    target = {"chain": chain, "fanout": fanout}[shape]
    instance = DagsterInstance.get()
    run_config = {"execution": {"config": {"in_process": {}} if executor == "in_process" else {"multiprocess": {}}}}
    start_t = time.perf_counter()
    result = execute_job(reconstructable(target), instance=instance, run_config=run_config)
    print(json.dumps({"wall_s": time.perf_counter() - start_t, "success": result.success}))
    sys.exit(0 if result.success else 1)
