"""Typed data end to end: DataFrames (pandas, pyarrow, polars), StructuredDatasets (column
subsets, CSV), dataclasses and pydantic models holding data, directories and large files."""
import os
import typing
from dataclasses import dataclass

import pandas as pd
import polars as pl
import pyarrow as pa
from pydantic import BaseModel
from typing_extensions import Annotated

import flytekitplugins.polars  # noqa: F401 - registers the polars encoders
from flytekit import kwtypes, task, workflow
from flytekit.types.directory import FlyteDirectory
from flytekit.types.file import FlyteFile
from flytekit.types.structured import StructuredDataset

# ---- pandas between tasks, and as the workflow's output ----


@task
def make(n: int) -> pd.DataFrame:
    return pd.DataFrame({"x": list(range(n)), "y": [i * i for i in range(n)]})


@task
def total(df: pd.DataFrame) -> int:
    return int(df["x"].sum() + df["y"].sum())


@workflow
def frames(n: int) -> typing.Tuple[int, pd.DataFrame]:
    df = make(n=n)
    return total(df=df), df


# ---- a StructuredDataset column subset, and CSV ----

Full = Annotated[StructuredDataset, kwtypes(a=int, b=str, c=float)]
Subset = Annotated[StructuredDataset, kwtypes(a=int, c=float)]


@task
def wide(n: int) -> Full:
    df = pd.DataFrame({"a": list(range(n)), "b": [f"s{i}" for i in range(n)], "c": [i / 2 for i in range(n)]})
    return StructuredDataset(dataframe=df)


@task
def narrow(sd: Subset) -> typing.List[str]:
    df = sd.open(pd.DataFrame).all()
    return [str(c) for c in df.columns] + [str(float(df["c"].sum()))]


@task
def to_csv(n: int) -> Annotated[StructuredDataset, "csv"]:
    return StructuredDataset(dataframe=pd.DataFrame({"k": list(range(n))}), file_format="csv")


@task
def from_csv(sd: Annotated[StructuredDataset, "csv"]) -> int:
    return int(sd.open(pd.DataFrame).all()["k"].sum())


@workflow
def datasets(n: int) -> typing.Tuple[typing.List[str], int]:
    return narrow(sd=wide(n=n)), from_csv(sd=to_csv(n=n))


# ---- pyarrow and polars ----


@task
def arrow_table(n: int) -> pa.Table:
    return pa.table({"v": list(range(n))})


@task
def arrow_sum(t: pd.DataFrame) -> int:
    # Read back as pandas: flytekit 1.16.31's parquet -> pa.Table decoder strips the
    # protocol and reads the path from the local disk, on any object store.
    return int(t["v"].sum())


@task
def polars_frame(n: int) -> pl.DataFrame:
    return pl.DataFrame({"v": list(range(n))})


@task
def polars_sum(df: pl.DataFrame) -> int:
    return int(df["v"].sum())


@workflow
def columnar(n: int) -> typing.Tuple[int, int, pa.Table]:
    t = arrow_table(n=n)
    return arrow_sum(t=t), polars_sum(df=polars_frame(n=n)), t


# ---- dataclasses and pydantic models holding data ----


@dataclass
class Bundle:
    # flytekit serializes DataFrames inside dataclasses as StructuredDatasets.
    frame: StructuredDataset
    file: FlyteFile
    folder: FlyteDirectory


class Model(BaseModel):
    model_config = {"arbitrary_types_allowed": True}
    frame: StructuredDataset
    file: FlyteFile
    folder: FlyteDirectory


def _file_and_folder(tag: str):
    f = os.path.join(os.getcwd(), f"{tag}.txt")
    with open(f, "w") as fh:
        fh.write(f"file {tag}")
    d = os.path.join(os.getcwd(), f"{tag}-dir")
    os.makedirs(d, exist_ok=True)
    for i in range(3):
        with open(os.path.join(d, f"{i}.txt"), "w") as fh:
            fh.write(str(i))
    return FlyteFile(f), FlyteDirectory(d)


def _describe(frame: pd.DataFrame, file: FlyteFile, folder: FlyteDirectory) -> str:
    with open(file.download()) as fh:
        text = fh.read()
    local = folder.download()
    names = sorted(os.listdir(local))
    return f"{int(frame['x'].sum())}|{text}|{','.join(names)}"


@task
def make_bundle(n: int) -> Bundle:
    f, d = _file_and_folder("bundle")
    return Bundle(frame=StructuredDataset(dataframe=pd.DataFrame({"x": list(range(n))})), file=f, folder=d)


@task
def read_bundle(b: Bundle) -> str:
    return _describe(b.frame.open(pd.DataFrame).all(), b.file, b.folder)


@task
def make_model(n: int) -> Model:
    f, d = _file_and_folder("model")
    return Model(frame=StructuredDataset(dataframe=pd.DataFrame({"x": list(range(n))})), file=f, folder=d)


@task
def read_model(m: Model) -> str:
    return _describe(m.frame.open(pd.DataFrame).all(), m.file, m.folder)


@workflow
def containers(n: int) -> typing.Tuple[str, str]:
    return read_bundle(b=make_bundle(n=n)), read_model(m=make_model(n=n))


# ---- many small files, one large file ----


@task
def many_files(n: int) -> FlyteDirectory:
    d = os.path.join(os.getcwd(), "many")
    os.makedirs(d, exist_ok=True)
    for i in range(n):
        with open(os.path.join(d, f"f{i:05d}.txt"), "w") as fh:
            fh.write(str(i))
    return FlyteDirectory(d)


@task
def count_files(d: FlyteDirectory) -> int:
    local = d.download()
    return sum(int(open(os.path.join(local, name)).read()) for name in os.listdir(local))


@task
def big_file(mib: int) -> FlyteFile:
    path = os.path.join(os.getcwd(), "big.bin")
    block = bytes(range(256)) * 4096  # 1 MiB
    with open(path, "wb") as fh:
        for _ in range(mib):
            fh.write(block)
    return FlyteFile(path)


@task
def file_size(f: FlyteFile) -> int:
    return os.path.getsize(f.download())


@workflow
def files(n: int, mib: int) -> typing.Tuple[int, int]:
    return count_files(d=many_files(n=n)), file_size(f=big_file(mib=mib))


# ---- a cached DataFrame ----


@task(cache=True, cache_version="1")
def cached_frame(n: int) -> pd.DataFrame:
    return pd.DataFrame({"x": list(range(n))})


@task
def total_x(df: pd.DataFrame) -> int:
    return int(df["x"].sum())


@workflow
def cached(n: int) -> int:
    return total_x(df=cached_frame(n=n))


# ---- a deck, served through a download link ----


@task(enable_deck=True)
def with_deck(n: int) -> int:
    from flytekit import Deck

    Deck("summary", f"<b>contrail deck {n}</b>")
    return n


@task
def no_deck(n: int) -> int:
    return n


@workflow
def decks(n: int) -> typing.Tuple[int, int]:
    return with_deck(n=n), no_deck(n=n)
