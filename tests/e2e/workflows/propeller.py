"""Workflows the propeller end-to-end tests run (written for these tests)."""
import os
import pathlib
import time
import typing

from flytekit import ContainerTask, Secret, current_context, kwtypes, task, workflow
from flytekit.exceptions.user import FlyteRecoverableException
from flytekit.types.directory import FlyteDirectory
from flytekit.types.file import FlyteFile


@task
def hello(name: str) -> str:
    return f"hello {name}"


@workflow
def hello_wf(name: str = "world") -> str:
    return hello(name=name)


@task
def inc(x: int) -> int:
    return x + 1


@workflow
def chain_wf(x: int = 0) -> int:
    v = x
    for _ in range(10):
        v = inc(x=v)
    return v


@task
def square(x: int) -> int:
    return x * x


@task
def total(xs: typing.List[int]) -> int:
    return sum(xs)


@workflow
def fan_wf() -> int:
    return total(xs=[square(x=i) for i in range(20)])


@task(retries=3)
def flaky(counter: str) -> int:
    p = pathlib.Path(counter)
    n = int(p.read_text()) if p.exists() else 0
    p.write_text(str(n + 1))
    if n < 2:
        raise FlyteRecoverableException(f"transient failure number {n}")
    return n


@workflow
def flaky_wf(counter: str) -> int:
    return flaky(counter=counter)


@task(retries=3)
def boom(x: int) -> int:
    if x > 0:
        raise ValueError(f"the user's own message: x={x}")
    return x


@workflow
def fail_wf(x: int = 7) -> int:
    return boom(x=x)


@task
def read_inputs(f: FlyteFile, d: FlyteDirectory) -> typing.Tuple[str, int]:
    text = open(f).read()
    local = d.download()
    return text, len([n for n in os.listdir(local) if not n.startswith(".")])


@task
def write_outputs(text: str, n: int) -> typing.Tuple[FlyteFile, FlyteDirectory]:
    wd = pathlib.Path(current_context().working_directory)
    f = wd / "out.txt"
    f.write_text(text.upper())
    d = wd / "outdir"
    d.mkdir()
    for i in range(n + 1):
        (d / f"part{i}.txt").write_text(str(i))
    return FlyteFile(str(f)), FlyteDirectory(str(d))


@task
def read_back(f: FlyteFile, d: FlyteDirectory) -> str:
    local = d.download()
    return open(f).read() + ":" + ",".join(sorted(os.listdir(local)))


@workflow
def files_wf(f: FlyteFile, d: FlyteDirectory) -> typing.Tuple[str, int, FlyteFile, FlyteDirectory, str]:
    text, n = read_inputs(f=f, d=d)
    of, od = write_outputs(text=text, n=n)
    return text, n, of, od, read_back(f=of, d=od)


double = ContainerTask(
    name="double",
    image="alpine:3.19",
    command=["sh", "-c", "echo $(( {{.inputs.x}} * 2 )) > /var/outputs/y; cat /var/inputs/x > /var/outputs/seen"],
    inputs=kwtypes(x=int),
    outputs=kwtypes(y=int, seen=str),
    input_data_dir="/var/inputs",
    output_data_dir="/var/outputs",
)


@workflow
def container_wf(x: int = 21) -> typing.Tuple[int, str]:
    y, seen = double(x=x)
    return y, seen


@task
def sleeper(pidfile: str) -> int:
    pathlib.Path(pidfile).write_text(str(os.getpid()))
    time.sleep(600)
    return 1


@workflow
def sleep_wf(pidfile: str) -> int:
    return sleeper(pidfile=pidfile)


step = ContainerTask(
    name="crash_step",
    image="alpine:3.19",
    command=["sh", "-c", "echo {{.inputs.i}} >> {{.inputs.side}}; sleep 0.3; echo $(( {{.inputs.i}} + 1 )) > /var/outputs/o"],
    inputs=kwtypes(i=int, side=str),
    outputs=kwtypes(o=int),
    input_data_dir="/var/inputs",
    output_data_dir="/var/outputs",
)


@workflow
def crash_wf(side: str) -> int:
    v = 0
    for _ in range(24):
        v = step(i=v, side=side)
    return v


@task(secret_requests=[Secret(group="db", key="password")])
def env_probe() -> typing.Tuple[str, str, str, str]:
    print("probe-stdout-marker")
    return (
        os.environ.get("MY_VAR", ""),
        current_context().secrets.get("db", "password"),
        os.environ["FLYTE_INTERNAL_EXECUTION_ID"],
        os.environ["FLYTE_ATTEMPT_NUMBER"],
    )


@workflow
def env_wf() -> typing.Tuple[str, str, str, str]:
    return env_probe()
