"""Cox proportional hazards on Spark: the stream engine's Cox passes, one job per pass.

The same sums as :mod:`smesurvival.scale.stream_cox`, computed per partition and added on the
driver in partition order (DESIGN.md principle 1): a scan job (sample flow, levels, transform
state, checks, deaths per event time), then per Newton step two jobs -- the per-event-time sums
of r and r x (the driver forms the risk-set suffix sums, the score and the likelihood and sends
back the cumulative weights), then the risk-set Gram matrices. Only K x p sums (K distinct
event times) and p x p matrices travel; the rows stay on the executors, cached by Spark.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from smesurvival.errors import DataValidationError, SmeSurvivalError
from smesurvival.inference.vcov import check_choice
from smesurvival.models.cox import TIES
from smesurvival.models.cox_kernel import Ties
from smesurvival.models.result import FitResult
from smesurvival.scale.sources import CsvSource, open_source
from smesurvival.scale.spark import _check_common, _check_text, _text_cells
from smesurvival.scale.spark_io import (
    _PAYLOAD_SCHEMA,
    _collect,
    _guarded,
    _map,
    _PartitionSource,
    _payload,
    _select,
    _Types,
    spark_frame,
)
from smesurvival.scale.stream import _Scan, parse_memory, rows_for_memory
from smesurvival.scale.stream_cox import (
    CoxDesign,
    CoxPlan,
    Evaluator,
    PassSums,
    _Deaths,
    batch_gram,
    batch_sums,
    cox_plan,
    fit_cox_sums,
    scan_frame,
    settle_cox,
)

__all__ = ["fit_spark_cox"]


def fit_spark_cox(
    formula: str,
    source: Any = None,
    *,
    duration: str,
    event: str,
    entry: str | None = None,
    strata: str | None = None,
    weights: str | None = None,
    ties: Ties = "efron",
    conf_level: float = 0.95,
    batch_rows: int | None = None,
    memory: str | int = "1GB",
    sql: str | None = None,
    spark: Any = None,
    master: str = "local[2]",
    partitions: int | None = None,
    tol: float = 1e-12,
    max_iter: int = 100,
) -> FitResult:
    """Fit a Cox model with Spark (engine ``spark``); options as
    :func:`~smesurvival.scale.stream_cox.fit_cox_stream` and, for the data and the session,
    :func:`~smesurvival.scale.spark.fit_spark`. Classical SEs, two jobs per Newton step.

    >>> res = fit_spark_cox("export_ratio + C(industry)", "hdfs:///firms/",
    ...                     duration="years", event="failed")  # doctest: +SKIP
    """
    check_choice(ties, TIES, "ties")
    _check_common("classical", "frequency", "expected", conf_level, batch_rows, partitions)
    budget = parse_memory(memory)
    _, sdf, label = spark_frame(spark, master, source, sql, partitions)
    cp = cox_plan(list(sdf.columns), formula, duration=duration, event=event, entry=entry,
                  strata=strata, weights=weights, ties=ties)
    from pyspark import StorageLevel

    data = _select(sdf, cp.plan.needed).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        return _fit(data, cp, label, budget, batch_rows, conf_level, tol, max_iter)
    finally:
        data.unpersist()


def _fit(data: Any, cp: CoxPlan, label: str, budget: int, batch_rows: int | None,
         conf_level: float, tol: float, max_iter: int) -> FitResult:
    needed = cp.plan.needed
    rows1 = batch_rows or rows_for_memory(budget, len(needed) + 1, len(needed))
    parts = _collect(_map(data, partial(_scan_partition, cp=cp, rows=rows1), _PAYLOAD_SCHEMA),
                     label)
    for part in parts:
        if "error" in part:
            raise _located(part["error"], label, cp, rows1)
    scan = _Scan(missing=dict.fromkeys(cp.plan.variables, 0))
    deaths = _Deaths([], set())
    for part in parts:
        scan.merge(part["scan"])
        for key, mom in part["moments"].items():
            cp.plan.stateful[key].moments.merge(mom)
        deaths.parts.extend(part["deaths"].parts)
        deaths.labels.update(part["deaths"].labels)
    types = _Types.merge([part["types"] for part in parts])
    if scan.n_used:
        _check_text(parts, scan, label)
    design = settle_cox(cp, scan, deaths, types.dtypes())
    p = len(design.terms)
    rows = batch_rows or rows_for_memory(budget, p + 1, len(needed))
    job = {"types": types, "needed": needed, "rows": rows, "design": design}

    def sums(beta: np.ndarray, shift: float) -> PassSums:
        got = _collect(_map(data, partial(_guarded(_sums_partition), beta=beta, shift=shift, **job),
                            _PAYLOAD_SCHEMA), label)
        return sum(got, PassSums.zero(p))

    def gram(beta: np.ndarray, shift: float, C: np.ndarray, B: np.ndarray) -> np.ndarray:
        got = _collect(_map(data, partial(_guarded(_gram_partition), beta=beta, shift=shift, C=C,
                                          B=B, **job), _PAYLOAD_SCHEMA), label)
        return sum(got, np.zeros((p, p)))

    return fit_cox_sums(design, Evaluator(design.times, sums, gram), conf_level=conf_level,
                        tol=tol, max_iter=max_iter, engine="spark")


def _scan_partition(batches: Iterator[pa.RecordBatch], *, cp: CoxPlan,
                    rows: int) -> Iterator[pa.RecordBatch]:
    """The scan of one partition (errors travel as values)."""
    src = _PartitionSource(batches)
    scan = _Scan(missing=dict.fromkeys(cp.plan.variables, 0))
    deaths = _Deaths([], set())
    text: dict[str, list[Any]] = {}
    try:
        for df in src.frames(cp.plan.needed, rows):
            scan_frame(cp, df, scan, deaths)
            _text_cells(df, cp.plan, text)
        out: dict[str, Any] = {"scan": scan, "types": src.observed(), "text": text,
                               "deaths": deaths,
                               "moments": {k: st.moments for k, st in cp.plan.stateful.items()}}
    except SmeSurvivalError as exc:
        out = {"error": exc}
    yield _payload(out)


def _frames(batches: Iterator[pa.RecordBatch], types: _Types, needed: list[str],
            rows: int) -> Iterator[pd.DataFrame]:
    return _PartitionSource(batches, types).frames(needed, rows)


def _sums_partition(batches: Iterator[pa.RecordBatch], *, types: _Types, needed: list[str],
                    rows: int, design: CoxDesign, beta: np.ndarray,
                    shift: float) -> Iterator[pa.RecordBatch]:
    """Pass 1 of a Newton step on one partition."""
    total = PassSums.zero(beta.size)
    for df in _frames(batches, types, needed, rows):
        for b in design.batches(df):
            total = total + batch_sums(b, beta, shift)
    yield _payload(total)


def _gram_partition(batches: Iterator[pa.RecordBatch], *, types: _Types, needed: list[str],
                    rows: int, design: CoxDesign, beta: np.ndarray, shift: float, C: np.ndarray,
                    B: np.ndarray) -> Iterator[pa.RecordBatch]:
    """Pass 2 of a Newton step on one partition."""
    G = np.zeros((beta.size, beta.size))
    for df in _frames(batches, types, needed, rows):
        for b in design.batches(df):
            G += batch_gram(b, beta, shift, C, B)
    yield _payload(G)


def _located(exc: SmeSurvivalError, label: str, cp: CoxPlan, rows: int) -> SmeSurvivalError:
    """A partition's error names rows within the partition; for a file on the driver's file
    system the stream engine's scan finds the same problem with the file lines."""
    path = Path(label)
    if isinstance(exc, DataValidationError) and path.exists():
        try:
            src = open_source(path, block_bytes=1 << 26)
            try:
                if isinstance(src, CsvSource):
                    src.settle_types(cp.plan.needed)
                scan = _Scan(missing=dict.fromkeys(cp.plan.variables, 0))
                deaths = _Deaths([], set())
                for df in src.frames(cp.plan.needed, rows):
                    scan_frame(cp, df, scan, deaths)
            finally:
                src.close()
        except SmeSurvivalError as located:
            return located
    if isinstance(exc, DataValidationError) and "line" in str(exc):
        return DataValidationError(f"{exc} (lines counted within one Spark partition: fit the "
                                   "file with --engine stream for the file lines)")
    return exc
