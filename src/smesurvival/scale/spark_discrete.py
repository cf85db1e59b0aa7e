"""The discrete-time hazard on Spark: the firm -> firm-year expansion per partition.

``fit_spark_discrete`` is :func:`~smesurvival.models.discrete.fit_discrete` with Spark: one job
checks the subject rows and counts the sample flow (bad rows named by their position in the
data), each partition expands its subjects with
:func:`smesurvival.data.panel.expand_person_period` (the function the in-memory engine calls),
and the binary model is fitted on the firm-years by the engine of
:func:`smesurvival.scale.spark.fit_spark`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from smesurvival.data.flow import SampleFlow
from smesurvival.data.panel import PeriodGrid, expand_person_period
from smesurvival.errors import DataValidationError, FormulaError, UsageError
from smesurvival.inference.vcov import VcovType, check_choice
from smesurvival.models.design import parse_formula
from smesurvival.models.discrete import (
    BAND,
    DISCRETE_LINKS,
    TIME_SPECS,
    DiscreteLink,
    TimeSpec,
    _grids,
    _prepare_expanded,
    _rhs,
    band_labels,
    band_of_period,
    time_terms,
)
from smesurvival.models.kernels import Information
from smesurvival.models.result import FitResult
from smesurvival.scale.spark import _check_common, _fit_frame
from smesurvival.scale.spark_io import (
    _PAYLOAD_SCHEMA,
    _collect,
    _guarded,
    _job,
    _map,
    _PartitionSource,
    _payload,
    _quiet,
    _quote,
    _select,
    _Types,
    spark_frame,
)
from smesurvival.scale.stream import parse_memory, rows_for_memory

__all__ = ["fit_spark_discrete"]


def fit_spark_discrete(
    formula_rhs: str,
    source: Any = None,
    *,
    duration: str | None = None,
    event: str,
    id: str,
    link: DiscreteLink = "cloglog",
    time: TimeSpec = "dummies",
    cuts: Sequence[float] | None = None,
    width: float | None = None,
    expanded: bool = False,
    period: str = "period",
    vcov: VcovType = "cluster",
    cluster: str | None = None,
    information: Information = "expected",
    conf_level: float = 0.95,
    batch_rows: int | None = None,
    memory: str | int = "1GB",
    sql: str | None = None,
    spark: Any = None,
    master: str = "local[2]",
    partitions: int | None = None,
    tol: float = 1e-12,
    max_iter: int = 200,
    separation_rows: int = 5_000_000,
) -> FitResult:
    """A discrete-time hazard model with Spark: :func:`~smesurvival.models.discrete.fit_discrete`
    (same arguments and result) with the firm -> firm-year expansion run per partition.

    The subject rows are checked (missing values dropped and counted, durations positive,
    events 0/1; bad rows named by their position in the data as Spark reads it, which for one
    file is the file's row order), expanded on the executors by
    :func:`~smesurvival.data.panel.expand_person_period`, and the binary model is fitted on the
    firm-years by the engine of :func:`fit_spark`. ``expanded=True`` reads data already in
    person-period form (``period``, ``event``, ``id``).

    Example
    -------
    >>> res = fit_spark_discrete("export_ratio * rd_intensity", "firms.parquet",
    ...                          duration="years", event="exited", id="firm_id",
    ...                          width=1)  # doctest: +SKIP
    """
    check_choice(link, DISCRETE_LINKS, "link")
    check_choice(time, TIME_SPECS, "time")
    _check_common(vcov, "frequency", information, conf_level, batch_rows, partitions)
    if not expanded and duration is None:
        raise UsageError("subject-level data need duration= (or pass expanded=True)")
    budget = parse_memory(memory)
    session, sdf, label = spark_frame(spark, master, source, sql, partitions)
    columns = list(sdf.columns)
    if id is None or id not in columns:
        raise UsageError(f"id column {id!r} is not in the data; a subject identifier is required")
    cluster = id if cluster is None else cluster
    if cluster not in columns:
        raise UsageError(f"cluster column '{cluster}' is not in the data")
    first_col = period if expanded else str(duration)
    for role, col in (("period" if expanded else "duration", first_col), ("event", event)):
        if col not in columns:
            raise UsageError(f"{role} column '{col}' is not in the data")
    grid, bands = _grids(time, cuts, width, expanded)
    rhs = _rhs(formula_rhs, event)
    variables = parse_formula(rhs, columns).variables if rhs else ()
    extra_cols = (cluster,) if cluster != id else ()
    needed = list(dict.fromkeys((first_col, event, *variables, *extra_cols)))
    read_cols = list(dict.fromkeys((*needed, id)))
    keep = [c for c in dict.fromkeys((*variables, *extra_cols)) if c not in (event, id)]
    if not expanded:  # the expansion's own column checks, before any job
        expand_person_period(pd.DataFrame(columns=read_cols), duration=str(duration),
                             event=event, id=id, width=1.0, keep=keep)
    if bands is not None and (BAND in read_cols):
        raise UsageError(f"time='bands' creates a column '{BAND}'; rename the data's '{BAND}'")
    data = _select(sdf, read_cols)
    rows = batch_rows or rows_for_memory(budget, len(read_cols) + 4, len(read_cols))

    # ---- subject job: flow and checks, with rows named by their position -------------------
    parts = _collect(_map(
        data, partial(_subject_partition, read_cols=read_cols, needed=needed, id=id,
                      first=first_col, event=event, expanded=expanded, grid=grid, rows=rows),
        _PAYLOAD_SCHEMA), label)
    for part in parts:
        if "error" in part:
            raise part["error"]
    flow = _subject_checks(parts, needed, id, first_col, event, expanded)
    types = _Types.merge([part["types"] for part in parts])

    # ---- the expansion, per partition, into firm-years ---------------------------------------
    sample = next(part["first"] for part in parts if part["first"] is not None)
    expand = partial(_expand_frame, id=id, first=first_col, event=event, period=period,
                     expanded=expanded, grid=grid, keep=keep, bands=bands)
    converted = next(_PartitionSource(
        iter([pa.RecordBatch.from_pandas(sample, preserve_index=False)]), types
    ).frames(read_cols, 1))
    from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_schema

    with _quiet():
        pp_schema = from_arrow_schema(pa.Schema.from_pandas(expand(converted), preserve_index=False))
        arrow_schema = to_arrow_schema(pp_schema)
        firm_years = _map(
            data, partial(_guarded(_expand_partition), types=types, read_cols=read_cols, needed=needed,
                    rows=rows, expand=expand, schema=arrow_schema), pp_schema)
    per_col = period if expanded else "period"
    formula = f"{event} ~ {time_terms(time, per_col)}" + (f" + {rhs}" if rhs else "")
    overrides = {BAND: pd.CategoricalDtype(band_labels(bands))} if bands is not None else None
    res = _fit_frame(
        session, firm_years, label, formula, model=link, vcov=vcov,
        cluster=cluster if vcov == "cluster" else None, weights=None, weights_kind="frequency",
        information=information, conf_level=conf_level, batch_rows=batch_rows, budget=budget,
        tol=tol, max_iter=max_iter, separation_rows=separation_rows, overrides=overrides,
    )

    # ---- what fit_discrete reports besides the fit ---------------------------------------
    if res.n_clusters is not None and cluster == id:
        n_subjects = res.n_clusters  # the distinct ids of the used rows, counted by the fit
    else:
        with _job(label):
            n_subjects = int(firm_years.select(_quote(id)).distinct().count())
    counts = _period_counts(parts, expanded)
    extra = {
        "link": link, "time": time, "time_terms": time_terms(time, per_col),
        "period_column": per_col, "id": id, "event": event, "duration": duration,
        "expanded": expanded, "grid": None if expanded else grid.to_dict(),
        "bands": list(bands) if bands is not None else None,
        "band_labels": band_labels(bands) if bands is not None else None,
        "n_subjects": n_subjects, "n_periods": counts[-1][0],
        "periods": [k for k, _, _ in counts], "rows_per_period": [n for _, n, _ in counts],
        "events_per_period": [e for _, _, e in counts], "firth": False,
    }
    return replace(res, model="discrete", link=link, flow=flow, extra=extra)


def _subject_partition(
    batches: Iterator[pa.RecordBatch], *, read_cols: list[str], needed: list[str], id: str,
    first: str, event: str, expanded: bool, grid: PeriodGrid, rows: int,
) -> Iterator[pa.RecordBatch]:
    """Counts and checks of one partition's subject rows (bad rows by position in it), and
    its firm-years and events per period (the expansion's row counts, without expanding)."""
    src = _PartitionSource(batches)
    out: dict[str, Any] = {"n_read": 0, "missing": dict.fromkeys(needed, 0), "first": None,
                           "id_missing": [0, []], "numeric": {first: True, event: True},
                           "bad_first": [0, [], set()], "bad_event": [0, [], set()],
                           "per_period": (np.zeros(0), np.zeros(0))}
    for df in src.frames(read_cols, rows):
        offset = out["n_read"]
        out["n_read"] += len(df)
        _count(out["id_missing"], offset, df[id].isna().to_numpy())
        keep = np.ones(len(df), dtype=bool)
        for col in needed:
            miss = df[col].isna().to_numpy() & keep
            out["missing"][col] += int(miss.sum())
            keep &= ~miss
        if not keep.any():
            continue
        sub = df[keep]
        pos = offset + np.flatnonzero(keep)
        if out["first"] is None:
            out["first"] = sub.iloc[[0]].reset_index(drop=True)
        try:
            t = pd.to_numeric(sub[first], errors="raise").to_numpy(dtype=float, na_value=np.nan)
        except (ValueError, TypeError):
            out["numeric"][first] = False
            t = None
        if expanded:
            e = pd.to_numeric(sub[event], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        else:
            try:
                e = pd.to_numeric(sub[event], errors="raise").to_numpy(dtype=float,
                                                                       na_value=np.nan)
            except (ValueError, TypeError):
                out["numeric"][event] = False
                continue
        bad_e = ~np.isin(e, (0.0, 1.0))
        _count(out["bad_event"], 0, bad_e, pos, [repr(v) for v in e[bad_e].tolist()])
        if t is None:
            continue
        bad = (~np.isfinite(t) | (t < 1) | (t != np.round(t))) if expanded else \
            (~np.isfinite(t) | (t <= 0))
        _count(out["bad_first"], 0, bad, pos, t[bad].tolist())
        ok = ~bad & ~bad_e
        k = t[ok].astype(np.int64) if expanded else grid.count(t[ok])
        n_k = np.bincount(k)
        e_k = np.bincount(k, weights=e[ok])
        if not expanded:  # a subject at risk for k periods is in periods 1..k
            n_k = np.cumsum(n_k[::-1])[::-1]
        out["per_period"] = tuple(_add(a, b) for a, b in zip(out["per_period"], (n_k, e_k),
                                                                strict=True))
    out["types"] = src.observed()
    yield _payload(out)


def _add(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Add two count vectors of different lengths."""
    out = np.zeros(max(len(a), len(b)))
    out[:len(a)] += a
    out[:len(b)] += b
    return out


def _period_counts(parts: list[dict[str, Any]], expanded: bool) -> list[tuple[int, int, int]]:
    """(period, firm-years, events) of the periods that occur, as fit_discrete reports them."""
    n_k, e_k = np.zeros(0), np.zeros(0)
    for part in parts:
        n_k, e_k = _add(n_k, part["per_period"][0]), _add(e_k, part["per_period"][1])
    return [(k, int(round(n_k[k])), int(round(e_k[k]))) for k in range(1, len(n_k)) if n_k[k] > 0]


def _count(acc: list[Any], offset: int, bad: np.ndarray, pos: np.ndarray | None = None,
           values: list[Any] | None = None) -> None:
    """Add a check's failures: count, first positions, distinct values (first few)."""
    n = int(bad.sum())
    if not n:
        return
    where = (pos[bad] if pos is not None else offset + np.flatnonzero(bad))[:5]
    acc[0] += n
    acc[1] = (acc[1] + [int(v) for v in where])[:5]
    if values is not None and len(acc) > 2:
        acc[2] = set(sorted(acc[2] | set(values))[:5])


def _subject_checks(parts: list[dict[str, Any]], needed: list[str], id: str, first: str,
                    event: str, expanded: bool) -> SampleFlow:
    """fit_discrete's checks and sample flow from the partitions' counts, rows numbered over
    the whole data (the partitions in order)."""
    offsets = np.cumsum([0] + [part["n_read"] for part in parts])[:-1]

    def merged(key: str) -> tuple[int, list[int], list[Any]]:
        n, rows, values = 0, [], set()
        for off, part in zip(offsets, parts, strict=True):
            acc = part[key]
            n += acc[0]
            rows += [int(off) + r for r in acc[1]]
            if len(acc) > 2:
                values |= acc[2]
        return n, rows, sorted(values)[:5]

    n, rows, _ = merged("id_missing")
    if n:
        raise DataValidationError(
            f"id column '{id}' is missing in {n} row(s) (rows {', '.join(map(str, rows[:5]))}); "
            "every subject needs an identifier (it is the cluster of the robust SEs)")
    flow = SampleFlow(int(sum(part["n_read"] for part in parts)))
    for col in needed:
        k = sum(part["missing"][col] for part in parts)
        flow = flow.drop(f"missing value in column '{col}'", k, "missing", col)
    if flow.n_used == 0:
        raise FormulaError("no rows are left after dropping rows with missing values")
    role = "period" if expanded else "duration"
    for col in (first, event):
        if not all(part["numeric"][col] for part in parts):
            raise DataValidationError(
                f"{role if col == first else 'event'} column '{col}' must be numeric")
    n, rows, values = merged("bad_first")
    if n:
        if expanded:
            raise DataValidationError(
                f"period column '{first}' must hold whole numbers 1, 2, ...; rows "
                f"{', '.join(map(str, rows[:5]))} do not")
        raise DataValidationError(
            f"duration column '{first}' must be positive and finite (a subject must be at risk "
            f"for some time); {_rows_text(rows, n)} have {values}")
    n, rows, values = merged("bad_event")
    if n:
        if expanded:
            raise DataValidationError(
                f"event column '{event}' must be coded 0 or 1 in every person-period; rows "
                f"{', '.join(map(str, rows[:5]))} are not")
        raise DataValidationError(
            f"event column '{event}' must be coded 0 (censored) or 1 (event); "
            f"{_rows_text(rows, n)} have {', '.join(values)}. For several exit types, make one "
            "0/1 column per type.")
    return flow


def _rows_text(rows: list[int], n: int) -> str:
    """'rows 3, 8, 11 (and 4 more)', as the panel checks name rows."""
    more = f" (and {n - 5} more)" if n > 5 else ""
    return f"row{'s' if n > 1 else ''} {', '.join(map(str, rows[:5]))}{more}"


def _expand_frame(
    sub: pd.DataFrame, *, id: str, first: str, event: str, period: str, expanded: bool,
    grid: Any, keep: list[str], bands: tuple[float, ...] | None,
) -> pd.DataFrame:
    """The in-memory engine's expansion of checked subject rows (or person-period rows)."""
    if expanded:
        pp = _prepare_expanded(sub.reset_index(drop=True), period, event, id)
    else:
        pp = expand_person_period(sub.reset_index(drop=True), duration=first, event=event, id=id,
                                  cuts=grid.cuts, width=grid.width, keep=keep)
    if bands is not None:
        per = pp[period if expanded else "period"].to_numpy()
        pp = pp.assign(**{BAND: np.asarray(band_of_period(per, grid, bands).astype(str))})
    return pp


def _expand_partition(
    batches: Iterator[pa.RecordBatch], *, types: _Types, read_cols: list[str],
    needed: list[str], rows: int, expand: Callable[[pd.DataFrame], pd.DataFrame],
    schema: pa.Schema,
) -> Iterator[pa.RecordBatch]:
    src = _PartitionSource(batches, types)
    for df in src.frames(read_cols, rows):
        keep = np.ones(len(df), dtype=bool)
        for col in needed:
            keep &= ~df[col].isna().to_numpy()
        if keep.any():
            yield pa.RecordBatch.from_pandas(expand(df[keep]), schema=schema, preserve_index=False)
