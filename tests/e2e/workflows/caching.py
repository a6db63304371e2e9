"""Workflows for the caching end-to-end tests (written for these tests). Every task appends
to a side file when it really runs, so a test can tell a cache hit from a run."""
import functools
import os
import time
import typing

from flytekit import Cache, map_task, task, workflow

# Registering with another value gives the same task a new cache version.
CACHE_VERSION = os.environ.get("CONTRAIL_TEST_CACHE_VERSION", "1")


def _note(side: str, tag: str) -> None:
    with open(side, "a") as f:
        f.write(f"{tag}\n")


@task(cache=Cache(version=CACHE_VERSION, ignored_inputs=("side", "seed")))
def cached_square(side: str, x: int, seed: int = 0) -> int:
    _note(side, f"square-{x}")
    return x * x


@workflow
def cached_wf(side: str, x: int = 3, seed: int = 0) -> int:
    return cached_square(side=side, x=x, seed=seed)


@task(cache=Cache(version="1", serialize=True, ignored_inputs=("side",)))
def serialized_slow(side: str, x: int) -> int:
    _note(side, f"slow-{x}")
    time.sleep(4)
    return x + 1


@workflow
def serialized_wf(side: str, x: int = 1) -> int:
    return serialized_slow(side=side, x=x)


@task(cache=Cache(version="1", ignored_inputs=("side",)))
def cached_cube(side: str, x: int) -> int:
    _note(side, f"cube-{x}")
    return x * x * x


@workflow
def cached_map_wf(side: str, xs: typing.List[int]) -> typing.List[int]:
    return map_task(functools.partial(cached_cube, side=side))(x=xs)
