"""The Spark engine: the partial-sum kernel per Spark partition, the Newton step on the driver.

``fit_spark`` gives the numbers :func:`smesurvival.models.fit.fit` and
:func:`smesurvival.scale.stream.fit_stream` give on the same rows (DESIGN.md principle 1: one
kernel, many engines), on data that Spark reads and holds across a cluster. It runs the stream
engine's own pieces partition by partition, on Arrow batches (``mapInArrow``):

1. **scan job** — each partition runs the stream engine's first pass on its batches; the driver
   merges the partitions' row counts, drops (charged to the first missing column), categorical
   levels, ``center()``/``standardize()`` moments and outcome/weights checks into one scan,
   builds the sample flow and fixes the formulaic encoder once, for the whole data;
2. **design job** — each partition encodes its rows with that encoder; Spark caches the design
   (``y``, weights, cluster label, ``x_1..x_p`` as double columns; memory, spilling to disk).
   The same job sums the Gram (rank check), the moments (VIFs) and the kernel at the start;
3. **one job per Newton step** — :func:`~smesurvival.models.kernels.glm_partial_sums` on each
   partition's batches; the driver adds the p x p pieces and takes the step inside
   :func:`~smesurvival.models.glm.newton_glm`;
4. **sandwich job** (HC and cluster SEs) — the HC meat per partition; for cluster-robust SEs
   each partition's per-cluster score sums are added up by Spark (``groupBy`` on the cluster
   label, so a firm whose rows lie in several partitions gets one sum) and the meat S'S is
   summed over the partitions of the grouped sums.

The driver holds p x p matrices, the categorical levels and one small record per partition;
a Python worker holds one Arrow batch and its design block at a time (``batch_rows`` or the
``memory`` budget, as in the stream engine); Spark caches 8 (p + 3) bytes per used row.

:func:`smesurvival.scale.spark_discrete.fit_spark_discrete` is the discrete-time hazard: the
firm -> firm-year expansion runs per partition, then the engine above fits the binary model on
the firm-years. :mod:`smesurvival.scale.spark_io` holds the session, reading and error plumbing.

pyspark is an optional extra (``pip install 'smesurvival[spark]'``) and needs Java 17+; on a
cluster, smesurvival must be installed on the executors' Python too.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from smesurvival.errors import DataValidationError, FormulaError, SmeSurvivalError, UsageError
from smesurvival.inference.vcov import (
    VCOV_TYPES,
    WEIGHTS_KINDS,
    VcovType,
    WeightsKind,
    check_choice,
)
from smesurvival.models.checks import check_rank_gram
from smesurvival.models.families import FAMILIES, Family
from smesurvival.models.fit import BINARY_MODELS, BinaryModel
from smesurvival.models.glm import newton_glm, start_values
from smesurvival.models.kernels import GLMSums, Information, glm_partial_sums
from smesurvival.models.result import FitResult
from smesurvival.scale.spark_io import (
    _PAYLOAD_SCHEMA,
    _collect,
    _guarded,
    _job,
    _map,
    _PartitionSource,
    _payload,
    _quiet,
    _select,
    _Types,
    spark_frame,
    spark_session,
)
from smesurvival.scale.stream import (
    _check_fit,
    _diagnostics,
    _Encoding,
    _encoding,
    _Plan,
    _plan,
    _result,
    _sandwich_block,
    _Scan,
    _scan_batch,
    _settle,
    parse_memory,
    rows_for_memory,
    used_rows,
)

__all__ = ["fit_spark", "spark_session"]

_MAX_LEVELS = 1000  # text levels that make a column an identifier (as models.design)


# --------------------------------------------------------------------------- the design


@dataclass(frozen=True)
class _Layout:
    """Columns of the cached design: _y, [_w], [_g], _x0 .. _x{p-1}."""

    p: int
    weights: bool
    cluster: bool

    @property
    def offset(self) -> int:
        return 1 + int(self.weights) + int(self.cluster)

    def names(self) -> list[str]:
        return (["_y"] + (["_w"] if self.weights else []) + (["_g"] if self.cluster else [])
                + [f"_x{j}" for j in range(self.p)])


def _unpack(rb: pa.RecordBatch, lay: _Layout) -> tuple[np.ndarray, np.ndarray, np.ndarray | None,
                                                       pa.Array | None]:
    cols = rb.columns
    y = cols[0].to_numpy(zero_copy_only=False)
    w = cols[1].to_numpy(zero_copy_only=False) if lay.weights else None
    g = cols[1 + int(lay.weights)] if lay.cluster else None
    X = np.empty((rb.num_rows, lay.p))
    for j in range(lay.p):
        X[:, j] = cols[lay.offset + j].to_numpy(zero_copy_only=False)
    return X, y, w, g


def _scan_partition(
    batches: Iterator[pa.RecordBatch], *, plan: _Plan, weights: str | None, rows: int,
    formula: str,
) -> Iterator[pa.RecordBatch]:
    """The stream engine's first pass on one partition (errors travel as values)."""
    src = _PartitionSource(batches)
    scan = _Scan(missing=dict.fromkeys(plan.variables, 0))
    text: dict[str, list[Any]] = {}
    try:
        for df in src.frames(plan.needed, rows):
            _scan_batch(df, scan, plan.variables, plan.parsed.variables, plan.outcome, weights,
                        None, plan.stateful, plan.c_columns, formula)
            _text_cells(df, plan, text)
        out: dict[str, Any] = {"scan": scan, "types": src.observed(), "text": text,
                               "moments": {k: st.moments for k, st in plan.stateful.items()}}
    except SmeSurvivalError as exc:
        out = {"error": exc}
    yield _payload(out)


def _text_cells(df: pd.DataFrame, plan: _Plan, acc: dict[str, list[Any]]) -> None:
    """Numeric and text cells of the used rows of text columns, with a few text examples."""
    keep = used_rows(df, plan.variables)
    for col in dict.fromkeys(plan.parsed.variables):
        s = df[col]
        if not (s.dtype == object or pd.api.types.is_string_dtype(s.dtype)) or not keep.any():
            continue
        vals = s[keep]
        ok = pd.to_numeric(vals, errors="coerce").notna().to_numpy()
        a = acc.setdefault(col, [0, 0, []])
        a[0] += int(ok.sum())
        a[1] += int((~ok).sum())
        a[2] = list(dict.fromkeys(a[2] + [str(v) for v in pd.unique(vals[~ok])[:3]]))[:3]


def _check_text(parts: list[dict[str, Any]], scan: _Scan, label: str) -> None:
    """The in-memory engine's text-column checks (models.design.check_text_variables) on the
    partitions' counts: numbers with a few text cells, or an identifier used as a category."""
    text: dict[str, list[Any]] = {}
    for part in parts:
        for col, (n_num, n_text, ex) in part["text"].items():
            a = text.setdefault(col, [0, 0, []])
            a[0], a[1] = a[0] + n_num, a[1] + n_text
            a[2] = list(dict.fromkeys(a[2] + ex))[:3]
    for col, (n_num, n_text, ex) in text.items():
        if n_text and n_num >= n_text:
            located = _text_lines_on_driver(label, col)
            if located is not None:
                raise located
            raise DataValidationError(
                f"{label}: column '{col}' holds numbers, but {n_text} row(s) hold text "
                f"({', '.join(map(repr, ex))}): fix those cells or leave them blank (blank cells "
                "are dropped and counted)")
        levels = len(scan.levels.get(col, ()))
        if levels > _MAX_LEVELS and levels > 0.5 * scan.n_used:
            raise DataValidationError(
                f"column '{col}' has {levels:,} distinct text values in {scan.n_used:,} rows: as "
                f"a category it would give {levels - 1:,} dummy columns. It looks like an "
                "identifier or free text: leave it out of the formula (an identifier can be a "
                "cluster= column)")


def _text_lines_on_driver(label: str, column: str) -> DataValidationError | None:
    """The file lines of a numeric column's text cells, when the CSV is on the driver's file
    system: a Spark partition does not know its first line number, the stream engine's
    whole-file type pass (run here, on the error path only) does. None for other sources."""
    from pathlib import Path

    from smesurvival.scale.sources import CsvSource

    path = Path(label)
    if path.suffix.lower() not in (".csv", ".tsv", ".txt") or not path.is_file():
        return None
    try:
        CsvSource(path, 1 << 26).settle_types([column])
    except DataValidationError as exc:
        return exc
    except Exception:  # noqa: BLE001 - any other reading problem: keep Spark's count-only message
        return None
    return None


def _design_partition(
    batches: Iterator[pa.RecordBatch], *, types: _Types, needed: list[str], rows: int,
    encoding: _Encoding, schema: pa.Schema,
) -> Iterator[pa.RecordBatch]:
    """Encode one partition with the whole-data encoder into design columns."""
    src = _PartitionSource(batches, types)
    for df in src.frames(needed, rows):
        block = encoding.encode(df)
        if block is None:
            continue
        X, y, w, cl = block
        arrays = [pa.array(y, pa.float64())]
        if w is not None:
            arrays.append(pa.array(w, pa.float64()))
        if cl is not None:
            arrays.append(pa.array(cl, from_pandas=True).cast(schema.field("_g").type))
        arrays += [pa.array(X[:, j], pa.float64()) for j in range(X.shape[1])]
        yield pa.RecordBatch.from_arrays(arrays, schema=schema)


def _fitted(X: np.ndarray, beta: np.ndarray, fam: Family) -> tuple[float, float, int]:
    mu = fam.mean(X @ beta)
    return float(mu.min()), float(mu.max()), int(((mu < 1e-8) | (mu > 1 - 1e-8)).sum())


def _kernel_partition(
    batches: Iterator[pa.RecordBatch], *, lay: _Layout, beta: np.ndarray, fam: Family,
    info_kind: Information, start: bool = False,
) -> Iterator[pa.RecordBatch]:
    """The kernel's sums on one partition and the fitted-value range at ``beta``; with
    ``start`` also the weighted Gram and the design's moments (count, means, centred SSCP)."""
    total: GLMSums | None = None
    lo, hi, extreme = math.inf, -math.inf, 0
    gram = np.zeros((lay.p, lay.p))
    n, mean, m2 = 0, np.zeros(lay.p), np.zeros((lay.p, lay.p))
    for rb in batches:
        if rb.num_rows == 0:
            continue
        X, y, w, _ = _unpack(rb, lay)
        part = glm_partial_sums(X, y, beta, fam, w, None, info_kind)
        total = part if total is None else total + part
        a, b, c = _fitted(X, beta, fam)
        lo, hi, extreme = min(lo, a), max(hi, b), extreme + c
        if start:
            gram += (X if w is None else X * w[:, None]).T @ X
            n, mean, m2 = _merge_moments((n, mean, m2), _block_moments(X))
    if total is not None:
        yield _payload((total, (lo, hi, extreme), (gram, (n, mean, m2)) if start else None))


def _block_moments(X: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    mean = X.mean(axis=0)
    Xc = X - mean
    return len(X), mean, Xc.T @ Xc


def _merge_moments(a: tuple[int, np.ndarray, np.ndarray],
                   b: tuple[int, np.ndarray, np.ndarray]) -> tuple[int, np.ndarray, np.ndarray]:
    """Chan et al.'s pairwise update of count, mean vector and centred cross-products."""
    na, ma, sa = a
    nb, mb, sb = b
    if na == 0:
        return b
    if nb == 0:
        return a
    n = na + nb
    d = mb - ma
    return n, ma + d * nb / n, sa + sb + np.outer(d, d) * na * nb / n


def _hc_partition(
    batches: Iterator[pa.RecordBatch], *, lay: _Layout, beta: np.ndarray, fam: Family,
    vcov: str, weights_kind: str,
) -> Iterator[pa.RecordBatch]:
    meat = np.zeros((lay.p, lay.p))
    for rb in batches:
        if rb.num_rows:
            X, y, w, _ = _unpack(rb, lay)
            meat += _sandwich_block(X, y, w, beta, fam, vcov, weights_kind)[3]
    yield _payload(meat)


def _cluster_partition(
    batches: Iterator[pa.RecordBatch], *, lay: _Layout, beta: np.ndarray, fam: Family,
    weights_kind: str, schema: pa.Schema,
) -> Iterator[pa.RecordBatch]:
    """Per-cluster score sums of one partition (a cluster may also appear in others)."""
    labels: list[np.ndarray] = []
    sums: list[np.ndarray] = []
    for rb in batches:
        if rb.num_rows == 0:
            continue
        X, y, w, g = _unpack(rb, lay)
        assert g is not None
        sw = _sandwich_block(X, y, w, beta, fam, "cluster", weights_kind)[3]
        uniq, S = _group_sum(g.to_numpy(zero_copy_only=False), sw)
        labels.append(uniq)
        sums.append(S)
    if not labels:
        return
    uniq, S = _group_sum(np.concatenate(labels), np.vstack(sums))
    g_type = schema.field("_g").type
    for s in range(0, len(uniq), 65_536):
        arrays = [pa.array(uniq[s:s + 65_536], from_pandas=True).cast(g_type)]
        arrays += [pa.array(S[s:s + 65_536, j], pa.float64()) for j in range(lay.p)]
        yield pa.RecordBatch.from_arrays(arrays, schema=schema)


def _group_sum(labels: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    codes, uniq = pd.factorize(labels)
    order = np.argsort(codes, kind="stable")
    sc = codes[order]
    starts = np.flatnonzero(np.r_[True, sc[1:] != sc[:-1]])
    out = np.zeros((len(uniq), values.shape[1]))
    out[sc[starts]] = np.add.reduceat(values[order], starts, axis=0)
    return np.asarray(uniq), out


def _meat_partition(batches: Iterator[pa.RecordBatch], *, p: int) -> Iterator[pa.RecordBatch]:
    """S'S over one partition of the grouped cluster sums, and its number of clusters."""
    meat = np.zeros((p, p))
    G = 0
    for rb in batches:
        if rb.num_rows == 0:
            continue
        S = np.column_stack([rb.column(1 + j).to_numpy(zero_copy_only=False) for j in range(p)])
        meat += S.T @ S
        G += rb.num_rows
    yield _payload((G, meat))


# --------------------------------------------------------------------------- the engine


def fit_spark(
    formula: str,
    source: Any = None,
    *,
    model: BinaryModel = "logit",
    vcov: VcovType = "classical",
    cluster: str | None = None,
    weights: str | None = None,
    weights_kind: WeightsKind = "frequency",
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
    """Fit a logit/probit/cloglog model with Spark (engine ``spark``): the kernel runs per
    partition, the driver sums the p x p pieces and takes the Newton step.

    Parameters are those of :func:`smesurvival.scale.stream.fit_stream`, plus:

    source : a Parquet file or folder, a CSV file, a list of such paths (local, ``hdfs://``,
        ``s3a://``, ...), or a Spark DataFrame; or ``sql=`` a Spark SQL query.
    spark : a SparkSession; default the active one, else a new one on ``master``.
    master : ``local[2]`` (two cores of this machine), ``spark://host:7077``, ``yarn``, ...
    partitions : repartition the data into this many partitions first (default: as read).
    batch_rows, memory : rows per encoded batch in a Python worker (default from ``memory``,
        the budget of one worker's batch data).

    Example
    -------
    >>> res = fit_spark("survived ~ export_ratio * rd_intensity + C(industry)",
    ...                 "firms.parquet", vcov="cluster", cluster="firm_id")  # doctest: +SKIP
    """
    check_choice(model, BINARY_MODELS, "model")
    _check_common(vcov, weights_kind, information, conf_level, batch_rows, partitions)
    budget = parse_memory(memory)
    session, sdf, label = spark_frame(spark, master, source, sql, partitions)
    return _fit_frame(
        session, sdf, label, formula, model=model, vcov=vcov, cluster=cluster, weights=weights,
        weights_kind=weights_kind, information=information, conf_level=conf_level,
        batch_rows=batch_rows, budget=budget, tol=tol, max_iter=max_iter,
        separation_rows=separation_rows,
    )


def _check_common(vcov: str, weights_kind: str, information: str, conf_level: float,
                  batch_rows: int | None, partitions: int | None) -> None:
    check_choice(vcov, VCOV_TYPES, "vcov")
    check_choice(weights_kind, WEIGHTS_KINDS, "weights_kind")
    check_choice(information, ("expected", "observed"), "information")
    if not 0.0 < conf_level < 1.0:
        raise UsageError(f"conf_level must be between 0 and 1; got {conf_level}")
    for name, v in (("batch_rows", batch_rows), ("partitions", partitions)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1):
            raise UsageError(f"{name} must be a whole number >= 1; got {v!r}")


def _fit_frame(
    spark: Any, sdf: Any, label: str, formula: str, *, model: str, vcov: str,
    cluster: str | None, weights: str | None, weights_kind: str, information: Information,
    conf_level: float, batch_rows: int | None, budget: int, tol: float, max_iter: int,
    separation_rows: int, overrides: dict[str, Any] | None = None,
) -> FitResult:
    from pyspark import StorageLevel
    from pyspark.sql.pandas.types import to_arrow_schema
    from pyspark.sql.types import DoubleType, StructField, StructType

    plan = _plan(list(sdf.columns), formula, vcov, cluster, weights, weights_kind)
    data = _select(sdf, plan.needed)

    # ---- scan job: flow, levels, transform state, checks ----------------------------------
    rows1 = batch_rows or rows_for_memory(budget, len(plan.needed) + 1, len(plan.needed))
    parts = _collect(_map(
        data, partial(_scan_partition, plan=plan, weights=weights, rows=rows1, formula=formula),
        _PAYLOAD_SCHEMA), label)
    for part in parts:
        if "error" in part:
            raise part["error"]
    scan = _Scan(missing=dict.fromkeys(plan.variables, 0))
    for part in parts:
        scan.merge(part["scan"])
        for key, mom in part["moments"].items():
            plan.stateful[key].moments.merge(mom)
    types = _Types.merge([part["types"] for part in parts], overrides)
    dtypes = types.dtypes()
    if scan.n_used:
        _check_text(parts, scan, label)
    flow, spec, terms = _settle(scan, plan, dtypes, model, weights, formula)

    # ---- design job (cached), with the Gram, the moments and the kernel at the start -------
    p = len(terms)
    fam = FAMILIES[model]
    lay = _Layout(p, weights is not None, cluster is not None)
    fields = [StructField("_y", DoubleType())]
    if weights is not None:
        fields.append(StructField("_w", DoubleType()))
    if cluster is not None:
        fields.append(StructField("_g", data.schema[cluster].dataType))
    fields += [StructField(f"_x{j}", DoubleType()) for j in range(p)]
    design_schema = StructType(fields)
    with _quiet():
        arrow_schema = to_arrow_schema(design_schema)
    encoding = _encoding(plan, spec, terms, scan, dtypes, weights, cluster, formula)
    rows = batch_rows or rows_for_memory(budget, p, len(plan.needed))
    design = _map(data, partial(_guarded(_design_partition), types=types, needed=plan.needed,
                                rows=rows, encoding=encoding, schema=arrow_schema),
                  design_schema).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        icpt = terms.index("Intercept") if "Intercept" in terms else None
        beta0 = start_values(p, icpt, fam, scan.sum_wy / scan.sum_w)
        first, fit0, extra0 = _sum_kernel(design, lay, beta0, fam, information, label, start=True)
        gram, moments = extra0
        check_rank_gram(gram, terms)

        # ---- Newton: one job per evaluation of the kernel sums ----------------------------
        fitted: dict[bytes, tuple[float, float, int]] = {beta0.tobytes(): fit0}
        cache: dict[str, Any] = {"beta": beta0.copy(), "sums": first}

        def sums(beta: np.ndarray, info_kind: Information) -> GLMSums:
            if cache and np.array_equal(beta, cache["beta"]) and info_kind == information:
                out: GLMSums = cache.pop("sums")
                cache.clear()
                return out
            total, rng, _ = _sum_kernel(design, lay, beta, fam, info_kind, label)
            fitted[beta.tobytes()] = rng
            return total

        est = newton_glm(sums, beta0, information=information, tol=tol, max_iter=max_iter)
        rng = fitted.get(est.params.tobytes())
        if rng is None:  # pragma: no cover - newton_glm's last evaluation is at its result
            rng = _sum_kernel(design, lay, est.params, fam, information, label)[1]
        mu_min, mu_max, extreme = rng
        _check_fit(est, extreme, scan.n_used, separation_rows,
                   lambda: _collect_design(design, lay, label), plan.outcome, model, terms)

        # ---- sandwich job ------------------------------------------------------------------
        meat = np.zeros((p, p))
        G = 0
        if vcov in ("hc0", "hc1"):
            meat = sum(_collect(_map(
                design, partial(_hc_partition, lay=lay, beta=est.params, fam=fam, vcov=vcov,
                        weights_kind=weights_kind), _PAYLOAD_SCHEMA), label), meat)
        if vcov == "cluster":
            G, meat = _cluster_meat(spark, design, lay, est.params, fam, weights_kind,
                                    design_schema, label)
        elif cluster is not None:
            with _job(label):
                G = int(design.select("_g").distinct().count())
    finally:
        design.unpersist()
    n_m, _, m2 = moments
    diag = _diagnostics(terms, np.zeros(p), m2, n_m, mu_min, mu_max, extreme, est.info)
    return _result(est, meat, diag, scan, flow, spec, terms, model=model, formula=formula,
                   vcov=vcov, cluster=cluster, weights=weights, weights_kind=weights_kind,
                   information=information, conf_level=conf_level, n_clusters=G,
                   engine="spark")


def _sum_kernel(
    design: Any, lay: _Layout, beta: np.ndarray, fam: Family, info_kind: Information, label: str,
    start: bool = False,
) -> tuple[GLMSums, tuple[float, float, int], Any]:
    """One Spark job: the kernel on every partition, added up in partition order."""
    parts = _collect(_map(
        design, partial(_kernel_partition, lay=lay, beta=beta, fam=fam, info_kind=info_kind, start=start),
        _PAYLOAD_SCHEMA), label)
    if not parts:  # pragma: no cover - the scan found used rows
        raise FormulaError("no rows are left after dropping rows with missing values")
    total: GLMSums | None = None
    lo, hi, extreme = math.inf, -math.inf, 0
    gram = np.zeros((lay.p, lay.p))
    moments: tuple[int, np.ndarray, np.ndarray] = (0, np.zeros(lay.p), np.zeros((lay.p, lay.p)))
    for part, (a, b, c), extra in parts:
        total = part if total is None else total + part
        lo, hi, extreme = min(lo, a), max(hi, b), extreme + c
        if extra is not None:
            gram = gram + extra[0]
            moments = _merge_moments(moments, extra[1])
    assert total is not None
    return total, (lo, hi, extreme), ((gram, moments) if start else None)


def _cluster_meat(
    spark: Any, design: Any, lay: _Layout, beta: np.ndarray, fam: Family, weights_kind: str,
    design_schema: Any, label: str,
) -> tuple[int, np.ndarray]:
    """Per-cluster score sums per partition, added up per cluster by Spark (a cluster may span
    partitions), then S'S summed over the grouped partitions."""
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import to_arrow_schema
    from pyspark.sql.types import DoubleType, StructField, StructType

    p = lay.p
    schema = StructType([StructField("_g", design_schema["_g"].dataType)]
                        + [StructField(f"_s{j}", DoubleType()) for j in range(p)])
    with _quiet():
        arrow_schema = to_arrow_schema(schema)
    scores = _map(design, partial(_cluster_partition, lay=lay, beta=beta, fam=fam,
                                  weights_kind=weights_kind, schema=arrow_schema), schema)
    grouped = scores.groupBy("_g").agg(*[F.sum(f"_s{j}").alias(f"_s{j}") for j in range(p)])
    grouped = grouped.coalesce(max(1, int(spark.sparkContext.defaultParallelism)))
    parts = _collect(_map(grouped, partial(_meat_partition, p=p), _PAYLOAD_SCHEMA), label)
    G = sum(g for g, _ in parts)
    meat = sum((m for _, m in parts), np.zeros((p, p)))
    return int(G), meat


def _collect_design(design: Any, lay: _Layout, label: str
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Every used row on the driver (only for the separation check below separation_rows)."""
    parts = _collect(_map(design, partial(_rows_partition, lay=lay), _PAYLOAD_SCHEMA), label)
    parts = [part for part in parts if part is not None]
    X = np.vstack([part[0] for part in parts])
    y = np.concatenate([part[1] for part in parts])
    w = np.concatenate([part[2] for part in parts]) if lay.weights else None
    return X, y, w


def _rows_partition(batches: Iterator[pa.RecordBatch], *, lay: _Layout) -> Iterator[pa.RecordBatch]:
    blocks = [_unpack(rb, lay)[:3] for rb in batches if rb.num_rows]
    if blocks:
        yield _payload((np.vstack([b[0] for b in blocks]), np.concatenate([b[1] for b in blocks]),
                        np.concatenate([b[2] for b in blocks]) if lay.weights else None))


