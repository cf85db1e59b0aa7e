"""Spark plumbing of the Spark engine: the session, reading, partitions as batch sources, and
errors that cross from the executors to the driver.

The Spark engine's executors run the stream engine's code on Arrow batches
(:class:`_PartitionSource` is a :class:`~smesurvival.scale.sources.BatchSource` over one
partition); each partition returns one small record (``pid``, a pickled value written by this
package's own executor code) that the driver adds up in partition order. An error of ours
raised on an executor comes back to the driver as itself (class and message), and Spark's own
failures to read the data become a :class:`~smesurvival.errors.DataReadError` naming the
source, never a JVM stack trace.
"""

from __future__ import annotations

import base64
import os
import pickle
import re
import shutil
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from smesurvival import errors as _errors
from smesurvival.data.readers import _clip, _short, sniff_delimiter
from smesurvival.errors import DataReadError, SmeSurvivalError, UsageError
from smesurvival.scale.sources import BatchSource, _strip_names

__all__ = ["INSTALL_HINT", "spark_session"]

INSTALL_HINT = "install it with pip install 'smesurvival[spark]'"
_PANDAS_NOTICE = "PySpark does not yet fully support pandas"
_MARK = "<<smesurvival-error>>"


# --------------------------------------------------------------------------- session and errors


def _require_pyspark() -> None:
    try:
        with _quiet():
            import pyspark  # noqa: F401
    except ImportError:
        raise UsageError(f"the Spark engine needs pyspark, which is not installed: {INSTALL_HINT}"
                         ) from None


@contextmanager
def _quiet() -> Iterator[None]:
    """pyspark warns that it does not know pandas 3; the engine uses Arrow, not pandas UDFs."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_PANDAS_NOTICE, category=FutureWarning)
        yield


def spark_session(master: str = "local[2]", *, app_name: str = "smesurvival") -> Any:
    """The active Spark session, else a new one on ``master`` (``local[2]``, ``spark://host:7077``,
    ``yarn``, ...) with quiet logs and this Python on the executors of a local master."""
    _require_pyspark()
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        raise UsageError(
            "the Spark engine needs Java 17 or later, and no 'java' is on the PATH (nor JAVA_HOME "
            "set): install a JRE (e.g. apt-get install default-jre-headless) or point JAVA_HOME "
            f"at one; pyspark itself: {INSTALL_HINT}"
        )
    if master.startswith("local"):
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    try:
        with _quiet():
            spark = (SparkSession.builder.master(master).appName(app_name)
                     .config("spark.ui.showConsoleProgress", "false").getOrCreate())
    except Exception as exc:
        raise UsageError(
            f"could not start Spark with master '{master}': {_short(exc)}. The Spark engine needs "
            f"Java 17 or later (java on the PATH or JAVA_HOME) and a reachable master; pyspark: "
            f"{INSTALL_HINT}"
        ) from None
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def _raise_inside(exc: SmeSurvivalError) -> None:
    """On an executor: carry our error's class and message through Spark's exception text."""
    code = base64.b64encode(f"{type(exc).__name__}\n{exc}".encode()).decode()
    raise RuntimeError(f"{_MARK}{code}{_MARK}")


def _guarded(fn: Callable[..., Iterator[pa.RecordBatch]]) -> Callable[..., Iterator[pa.RecordBatch]]:
    def run(batches: Iterator[pa.RecordBatch], **kw: Any) -> Iterator[pa.RecordBatch]:
        try:
            yield from fn(batches, **kw)
        except SmeSurvivalError as exc:
            _raise_inside(exc)
    return run


@contextmanager
def _job(label: str) -> Iterator[None]:
    """Run Spark actions: our errors raised on an executor come back as themselves; Spark's
    own failures to read or process the data become a DataReadError naming the source."""
    with _quiet():
        try:
            yield
        except SmeSurvivalError:
            raise
        except Exception as exc:
            text = str(exc)
            m = re.search(re.escape(_MARK) + r"([A-Za-z0-9+/=]+)" + re.escape(_MARK), text)
            if m:
                name, _, message = base64.b64decode(m.group(1)).decode().partition("\n")
                cls = getattr(_errors, name, SmeSurvivalError)
                if not (isinstance(cls, type) and issubclass(cls, SmeSurvivalError)):
                    cls = SmeSurvivalError
                raise cls(message) from None
            from pyspark.errors import PythonException

            if isinstance(exc, PythonException):  # a bug in our code on an executor
                raise
            raise DataReadError(f"Spark could not read or process {label}: {_spark_gist(text)}"
                                ) from None


def _spark_gist(text: str) -> str:
    """The informative part of a Spark/JVM error: no stack trace, no Py4J or Java class names."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("at ")]
    head = " ".join(lines[:3]) if lines else "unknown error"
    head = re.sub(r"An error occurred while calling [\w.]+\.?\s*:?\s*", "", head)
    head = re.sub(r"(?:\b[a-z]\w*\.)+\w*(?:Exception|Error):\s*", "", head)
    head = re.sub(r"^\s*(?:JVM stacktrace:|Caused by:)\s*", "", head).strip()
    return head if len(head) <= 400 else head[:397] + "..."


def _payload(obj: Any) -> pa.RecordBatch:
    """One record per partition: its id (for a fixed order of the sums) and a pickled value."""
    from pyspark import TaskContext

    ctx = TaskContext.get()
    pid = ctx.partitionId() if ctx is not None else 0
    return pa.RecordBatch.from_arrays(
        [pa.array([pid], pa.int32()), pa.array([pickle.dumps(obj)], pa.binary())],
        names=["pid", "payload"])


_PAYLOAD_SCHEMA = "pid int, payload binary"


def _map(df: Any, fn: Callable[..., Iterator[pa.RecordBatch]], schema: Any) -> Any:
    """``df.mapInArrow(fn, schema)`` (pyspark's pandas notice silenced)."""
    with _quiet():
        return df.mapInArrow(fn, schema)


def _collect(df: Any, label: str) -> list[Any]:
    """The partitions' values (internal: written by this module's own executor code), by id."""
    with _job(label):
        rows = df.collect()
    return [pickle.loads(bytes(r["payload"])) for r in sorted(rows, key=lambda r: r["pid"])]


# --------------------------------------------------------------------------- reading


def _is_uri(text: str) -> bool:
    return re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", text) is not None and not text.startswith("file://")


def _read(spark: Any, source: Any, sql: str | None) -> tuple[Any, str]:
    """A Spark DataFrame and a label for messages, from a path (Parquet file or folder, CSV), a
    list of paths, a Spark DataFrame, or a Spark SQL query."""
    from pyspark.sql import DataFrame

    if sql is not None:
        if source is not None:
            raise UsageError("give the data as source or as sql=..., not both")
        label = f"SQL: {_clip(sql)}"
        try:
            with _quiet():
                return spark.sql(sql), label
        except Exception as exc:
            raise DataReadError(f"the Spark SQL query failed: {_spark_gist(str(exc))}. Query: "
                                f"{_clip(sql)}") from None
    if isinstance(source, DataFrame):
        return source, "<Spark DataFrame>"
    if isinstance(source, pd.DataFrame):  # e.g. a study's measures: shipped to Spark by Arrow
        with _quiet():
            return spark.createDataFrame(source), "<DataFrame>"
    items = [source] if isinstance(source, str | Path) else source
    if not isinstance(items, list | tuple) or not items or \
            not all(isinstance(s, str | Path) for s in items):
        raise UsageError(
            "the Spark engine reads a Parquet file or folder, a CSV file, a list of such paths, a "
            f"Spark DataFrame or sql=...; got {type(source).__name__}")
    paths: list[str] = []
    kinds = set()
    for item in items:
        text = str(item)
        if _is_uri(text):
            paths.append(text)
            low = text.lower().rstrip("/")
            kinds.add("csv" if low.endswith((".csv", ".txt", ".tsv")) else "parquet")
            continue
        path = Path(text.removeprefix("file://")).expanduser()
        if not path.exists():
            raise DataReadError(f"cannot read {path}: no such file. Check the path and spelling.")
        ext = path.suffix.lower()
        if path.is_dir() or ext in (".parquet", ".pq"):
            kinds.add("parquet")
        elif ext in (".csv", ".txt", ".tsv"):
            kinds.add("csv")
        else:
            raise DataReadError(
                f"cannot read {path} with the Spark engine: it reads Parquet (.parquet, .pq, or a "
                f"folder of them) and CSV (.csv, .txt, .tsv); got {ext or '(no extension)'!r}. "
                "Convert the file, or use engine='memory'.")
        if path.is_file() and path.stat().st_size == 0:
            raise DataReadError(f"cannot read {path}: the file is empty (0 bytes).")
        paths.append(str(path.resolve()))
    if len(kinds) > 1:
        raise UsageError("give paths of one format (all Parquet or all CSV)")
    kind = kinds.pop()
    label = paths[0] if len(paths) == 1 else f"{paths[0]} (and {len(paths) - 1} more)"
    try:
        with _quiet():
            if kind == "parquet":
                return spark.read.parquet(*paths), label
            first = paths[0]
            sep = sniff_delimiter(Path(first)) if not _is_uri(first) else \
                ("\t" if first.lower().endswith(".tsv") else ",")
            return spark.read.csv(paths, header=True, inferSchema=True, sep=sep,
                                  mode="FAILFAST"), label
    except Exception as exc:
        raise DataReadError(f"cannot read {label} as {kind.upper() if kind == 'csv' else 'Parquet'}: "
                            f"{_spark_gist(str(exc))}") from None


def spark_frame(spark: Any, master: str, source: Any, sql: str | None,
                partitions: int | None) -> tuple[Any, Any, str]:
    """(session, Spark DataFrame with stripped column names, label for messages): the
    given session or a new one on ``master``, the data read and repartitioned if asked."""
    session = spark if spark is not None else spark_session(master)
    _require_pyspark()
    sdf, label = _read(session, source, sql)
    sdf = _stripped(sdf, label)
    if partitions is not None:
        sdf = sdf.repartition(int(partitions))
    return session, sdf, label


def _stripped(df: Any, label: str) -> Any:
    """Column names without surrounding spaces (as the readers give them); duplicates refused."""
    from pyspark.sql import functions as F

    names = _strip_names(list(df.columns), label)
    if all(k == v for k, v in names.items()):
        return df
    return df.select([F.col(_quote(raw)).alias(name) for name, raw in names.items()])


def _quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _select(df: Any, columns: Sequence[str]) -> Any:
    from pyspark.sql import functions as F

    return df.select([F.col(_quote(c)) for c in columns])


# --------------------------------------------------------------------------- partitions as sources


@dataclass(frozen=True)
class _Types:
    """Arrow type and null presence of each column over the whole data (from the scan job),
    plus pandas dtypes imposed on some columns (the hazard's band labels keep their order)."""

    types: dict[str, pa.DataType]
    nulls: dict[str, bool]
    overrides: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def merge(cls, parts: Sequence[tuple[dict[str, pa.DataType], dict[str, bool]]],
              overrides: dict[str, Any] | None = None) -> _Types:
        types: dict[str, pa.DataType] = {}
        nulls: dict[str, bool] = {}
        for t, n in parts:
            for name, typ in t.items():
                types.setdefault(name, typ)
            for name, has in n.items():
                nulls[name] = nulls.get(name, False) or has
        return cls(types, nulls, dict(overrides or {}))

    def dtypes(self) -> dict[str, Any]:
        return _PartitionSource(iter(()), self).dtypes()


class _PartitionSource(BatchSource):
    """One Spark partition's Arrow batches as a one-pass :class:`BatchSource`: without ``types``
    it observes them (the scan), with ``types`` it converts every batch to the dtypes the
    driver fixed for the whole data (later jobs) — the stream engine's own conversion."""

    def __init__(self, batches: Iterator[pa.RecordBatch], types: _Types | None = None) -> None:
        super().__init__()
        self._batches = batches
        if types is not None:
            self._types, self._nulls = dict(types.types), dict(types.nulls)
            self.freeze()
            assert self._plan is not None
            for name, dtype in types.overrides.items():
                if name in self._plan:
                    self._plan[name] = (self._plan[name][0], dtype)

    def _arrow_batches(self, columns: list[str], batch_rows: int) -> Iterator[pa.RecordBatch]:
        for rb in self._batches:
            yield rb.select(columns)

    def observed(self) -> tuple[dict[str, pa.DataType], dict[str, bool]]:
        return dict(self._types), dict(self._nulls)

    def dtypes(self) -> dict[str, Any]:
        assert self._plan is not None
        return {k: v[1] for k, v in self._plan.items()}


