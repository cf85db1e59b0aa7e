"""The streaming engine: binary GLMs over Arrow record batches in bounded memory.

``fit_stream`` gives the numbers :func:`smesurvival.models.fit.fit` gives on the same rows
(DESIGN.md principle 1: one kernel, many engines) without ever holding the data. It runs the
in-memory engine's own pieces batch by batch:

1. **scan pass** — rows read, rows dropped for a missing value charged to the first missing
   column (exactly as :func:`smesurvival.models.design.drop_missing`), the levels of every
   categorical factor, the whole-data means/SDs of ``center()``/``standardize()`` terms, the
   0/1 outcome check, the weights check, the cluster labels. The formulaic encoder is then
   fixed once (levels and transform state of the whole data), so every batch encodes to the
   same columns in the same order as the in-memory design. Batches are encoded by
   :mod:`smesurvival.scale.encode` straight from their columns when the formula allows it
   (numbers, products, treatment-coded factors, center/standardize: the same block, checked
   against formulaic on probe rows), by that formulaic spec otherwise;
2. **design pass** — the weighted Gram for the rank check
   (:func:`~smesurvival.models.checks.check_rank_gram`), the correlation sums for the VIFs and
   the kernel's sums at the start values;
3. **one pass per Newton step** — :func:`~smesurvival.models.kernels.glm_partial_sums` on
   each batch, added up, inside :func:`~smesurvival.models.glm.newton_glm`;
4. **sandwich pass** — HC meat sums and per-cluster score sums (kept across batches), the
   fitted-value range. The null log-likelihood is closed-form: the intercept-only MLE has
   mu = weighted mean of y for every link.

What is held in memory: one batch (its Arrow columns, a pandas copy, the design block, the
encoder's intermediate frames and the kernel's temporaries: about ``batch_rows * (160 p + 64 r)``
bytes for p design and r raw columns with formulaic, less with the direct encoder) plus, for Parquet, the row group being decoded; p x p
sums, the categorical levels, and for a cluster-robust covariance the sorted distinct cluster
labels (G values) — plus, only when the clusters are *not* stored contiguously (a firm's rows
spread over the file), a G x p array of score sums. Nothing else grows with the number of
rows. Batch size: ``batch_rows``, else half the ``memory`` budget divided by the bytes per row.
"""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from formulaic import Formula, ModelSpec
from scipy import special

from smesurvival.data.flow import SampleFlow
from smesurvival.errors import (
    ConvergenceError,
    FormulaError,
    SeparationError,
    SmeSurvivalError,
    UsageError,
)
from smesurvival.inference.vcov import (
    VcovType,
    WeightsKind,
    sandwich_from_meat,
    sandwich_vcov,
)
from smesurvival.models.checks import check_rank_gram, check_separation
from smesurvival.models.design import ALLOWED_FUNCTIONS, parse_formula, spec_to_dict
from smesurvival.models.families import FAMILIES, Family
from smesurvival.models.fit import (
    BinaryModel,
    check_options,
    convergence_message,
    diagnostics_from_cov,
    separation_message,
)
from smesurvival.models.glm import GLMEstimate, newton_glm, start_values
from smesurvival.models.kernels import GLMSums, Information, glm_partial_sums
from smesurvival.models.result import Diagnostics, FitResult
from smesurvival.scale.encode import DirectEncoder, direct_encoder
from smesurvival.scale.sources import BatchSource, CsvSource, open_source

__all__ = ["fit_stream", "parse_memory", "rows_for_memory"]

_STATEFUL = {"center", "standardize", "scale"}
#: encode batches with :mod:`smesurvival.scale.encode` where the formula allows it (False:
#: always formulaic; a private switch for tests and benchmarks)
_DIRECT_ENCODER = True
_SAMPLE_ROWS = 64  # used rows kept by the scan to check the direct encoder against formulaic
_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9,
          "gb": 10**9, "t": 10**12, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30,
          "tib": 2**40}


def parse_memory(memory: str | int) -> int:
    """A memory budget in bytes: an int, or text such as ``1GB``, ``512MB``, ``2GiB``."""
    if isinstance(memory, int | np.integer) and not isinstance(memory, bool):
        value = int(memory)
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(memory))
        unit = m.group(2).lower() if m else None
        if m is None or unit not in _UNITS:
            raise UsageError(
                f"memory must be a size such as 512MB, 1GB or 2GiB (or a number of bytes); got "
                f"'{memory}'"
            )
        value = int(float(m.group(1)) * _UNITS[unit])
    if value <= 0:
        raise UsageError(f"memory must be positive; got '{memory}'")
    return value


def rows_for_memory(memory_bytes: int, n_design: int, n_raw: int) -> int:
    """Rows per batch so that one batch and its temporaries take about half the budget.

    Measured: formulaic's per-factor frames, the design copy and the kernel's temporaries
    take about 160 bytes per design column and row; raw columns about 64 bytes each.
    """
    per_row = 160 * n_design + 64 * max(n_raw, 1) + 64
    return int(min(max((memory_bytes // 2) // per_row, 1024), 1 << 23))


# --------------------------------------------------------------------------- running sums


@dataclass
class _Moments:
    """Count, mean and sum of squared deviations, merged batch by batch (Chan et al.)."""

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0

    def add(self, v: np.ndarray) -> None:
        nb = len(v)
        if nb == 0:
            return
        mb = float(np.mean(v))
        m2b = float(np.sum((v - mb) ** 2))
        n = self.n + nb
        d = mb - self.mean
        self.mean += d * nb / n
        self.m2 += m2b + d * d * self.n * nb / n
        self.n = n

    def merge(self, other: _Moments) -> None:
        """Add another part's moments (the same update, with the part's own mean and m2)."""
        if other.n == 0:
            return
        n = self.n + other.n
        d = other.mean - self.mean
        self.mean += d * other.n / n
        self.m2 += other.m2 + d * d * self.n * other.n / n
        self.n = n


class _Distinct:
    """Sorted distinct values of a stream of arrays (merged lazily; memory ~ distinct count)."""

    def __init__(self) -> None:
        self.values: np.ndarray | None = None
        self._pending: list[np.ndarray] = []
        self._n_pending = 0

    def add(self, a: np.ndarray) -> None:
        u = np.unique(a)
        self._pending.append(u)
        self._n_pending += len(u)
        if self._n_pending > max(0 if self.values is None else len(self.values), 1 << 16):
            self.merge()

    def merge(self) -> np.ndarray:
        parts = ([] if self.values is None else [self.values]) + self._pending
        if parts:
            self.values = np.unique(np.concatenate(parts))
        self._pending, self._n_pending = [], 0
        return self.values if self.values is not None else np.zeros(0)


@dataclass
class _StatefulTerm:
    key: str  # the factor expression, formulaic's transform-state key
    kind: str  # center | standardize | scale
    ddof: float
    helper: ModelSpec  # evaluates the inner expression
    moments: _Moments = field(default_factory=_Moments)


@dataclass
class _Scan:
    n_read: int = 0
    n_used: int = 0
    missing: dict[str, int] = field(default_factory=dict)
    levels: dict[str, set[Any]] = field(default_factory=dict)
    first_row: pd.DataFrame | None = None
    sample: pd.DataFrame | None = None  # the first used rows (model columns), at most 64
    y_numeric: bool = True
    bad_y_rows: int = 0
    bad_y_values: list[float] = field(default_factory=list)
    sum_w: float = 0.0
    sum_wy: float = 0.0
    w_numeric: bool = True
    w_bad: bool = False
    clusters: _Distinct = field(default_factory=_Distinct)
    cluster_runs: int = 0
    last_cluster: Any = None

    def merge(self, other: _Scan) -> None:
        """Add the scan of a later part of the data (e.g. a Spark partition; its cluster labels
        and runs are not merged: engines that merge parts count clusters themselves)."""
        self.n_read += other.n_read
        self.n_used += other.n_used
        for col, n in other.missing.items():
            self.missing[col] = self.missing.get(col, 0) + n
        for col, levels in other.levels.items():
            self.levels.setdefault(col, set()).update(levels)
        if self.first_row is None:
            self.first_row = other.first_row
        if self.sample is None:
            self.sample = other.sample
        self.y_numeric = self.y_numeric and other.y_numeric
        self.bad_y_rows += other.bad_y_rows
        self.bad_y_values = sorted(set(self.bad_y_values) | set(other.bad_y_values))[:5]
        self.sum_w += other.sum_w
        self.sum_wy += other.sum_wy
        self.w_numeric = self.w_numeric and other.w_numeric
        self.w_bad = self.w_bad or other.w_bad


@dataclass(frozen=True)
class _Plan:
    """What the formula and options ask of the data, settled before any row is read."""

    parsed: Any  # smesurvival.models.design.ParsedFormula
    outcome: str
    variables: tuple[str, ...]  # model variables, then weights and cluster (drop order)
    needed: list[str]  # the distinct columns to read
    rhs_formula: Formula
    stateful: dict[str, _StatefulTerm]
    c_columns: set[str]


# --------------------------------------------------------------------------- the engine


def fit_stream(
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
    tol: float = 1e-12,
    max_iter: int = 200,
    separation_rows: int = 5_000_000,
) -> FitResult:
    """Fit a logit/probit/cloglog model by streaming the data in batches (engine ``stream``).

    Parameters are those of :func:`smesurvival.models.fit.fit`, plus:

    source : a Parquet file or a directory of Parquet files, a CSV file, a DuckDB database
        file (with ``sql=``, or holding one table), a DataFrame or Arrow table, a callable
        returning an iterable of chunks (called once per pass), a list of chunks, or a
        one-shot iterator of chunks (DataFrames or Arrow record batches; e.g. the firm-year
        rows of :func:`smesurvival.data.panel.iter_person_period`), which is spooled to
        temporary Parquet files on the first pass.
    sql : a DuckDB query (``SELECT * FROM 'firms/*.parquet' WHERE ...``), re-run each pass.
    batch_rows : rows per batch; default from ``memory`` and the number of design columns.
    memory : the budget for batch data (``"1GB"``, ``"512MB"``); the interpreter and
        libraries come on top.
    separation_rows : the linear-programming separation check needs every row in memory; it
        runs (on a failed or extreme fit) only up to this many rows.

    Example
    -------
    >>> res = fit_stream("survived ~ export_ratio * rd_intensity + C(industry)",
    ...                  "firms.parquet", vcov="cluster", cluster="firm_id")  # doctest: +SKIP
    """
    check_options(model, vcov, weights_kind, information, conf_level)
    if batch_rows is not None and (isinstance(batch_rows, bool) or int(batch_rows) < 1):
        raise UsageError(f"batch_rows must be a whole number >= 1; got {batch_rows!r}")
    budget = parse_memory(memory)
    src = open_source(source, sql=sql, block_bytes=budget // 16)
    try:
        return _fit(
            src, formula, model=model, vcov=vcov, cluster=cluster, weights=weights,
            weights_kind=weights_kind, information=information, conf_level=conf_level,
            batch_rows=batch_rows, budget=budget, tol=tol, max_iter=max_iter,
            separation_rows=separation_rows,
        )
    finally:
        src.close()


def _fit(
    src: BatchSource, formula: str, *, model: str, vcov: str, cluster: str | None,
    weights: str | None, weights_kind: str, information: Information, conf_level: float,
    batch_rows: int | None, budget: int, tol: float, max_iter: int, separation_rows: int,
) -> FitResult:
    plan = _plan(list(src.columns), formula, vcov, cluster, weights, weights_kind)
    outcome, variables, needed = plan.outcome, plan.variables, plan.needed
    if isinstance(src, CsvSource):
        src.settle_types(needed)

    # ---- pass 1: flow, levels, transform state, checks ------------------------------------
    rows1 = batch_rows or rows_for_memory(budget, len(needed) + 1, len(needed))
    scan = _Scan(missing=dict.fromkeys(variables, 0))
    for df in src.frames(needed, rows1):
        _scan_batch(df, scan, variables, plan.parsed.variables, outcome, weights, cluster,
                    plan.stateful, plan.c_columns, formula)
    dtypes = src.freeze()
    if cluster is not None:
        scan.clusters.merge()
    flow, spec, terms = _settle(scan, plan, dtypes, model, weights, formula)

    p = len(terms)
    fam = FAMILIES[model]
    has_intercept = "Intercept" in terms
    rows = batch_rows or rows_for_memory(budget, p, len(needed))
    enc = _Encoder(src, needed, rows,
                   _encoding(plan, spec, terms, scan, dtypes, weights, cluster, formula))

    # ---- pass 2: Gram (rank check), correlation sums (VIF), kernel sums at the start --------
    icpt = terms.index("Intercept") if has_intercept else None
    ybar = scan.sum_wy / scan.sum_w
    beta0 = start_values(p, icpt, fam, ybar)
    gram = np.zeros((p, p))
    shift: np.ndarray | None = None
    s1, s2 = np.zeros(p), np.zeros((p, p))
    first: GLMSums | None = None
    for X, y, w, _ in enc.batches():
        gram += (X if w is None else X * w[:, None]).T @ X
        if shift is None:
            shift = X.mean(axis=0)
        Xc = X - shift
        s1 += Xc.sum(axis=0)
        s2 += Xc.T @ Xc
        part = glm_partial_sums(X, y, beta0, fam, w, None, information)
        first = part if first is None else first + part
    assert first is not None
    check_rank_gram(gram, terms)

    # ---- Newton: one pass per evaluation of the kernel sums -------------------------------
    cache: dict[str, Any] = {"beta": beta0.copy(), "sums": first}

    def sums(beta: np.ndarray, info_kind: Information) -> GLMSums:
        if cache and np.array_equal(beta, cache["beta"]) and info_kind == information:
            out: GLMSums = cache.pop("sums")
            cache.clear()
            return out
        total: GLMSums | None = None
        for X, y, w, _ in enc.batches():
            part = glm_partial_sums(X, y, beta, fam, w, None, info_kind)
            total = part if total is None else total + part
        assert total is not None
        return total

    est = newton_glm(sums, beta0, information=information, tol=tol, max_iter=max_iter)

    # ---- sandwich pass: meat, cluster score sums, fitted range ---------------------------
    G = len(scan.clusters.values) if scan.clusters.values is not None else 0
    contiguous = cluster is not None and scan.cluster_runs == G
    fin = _final_pass(enc, est.params, fam, vcov, weights_kind, scan, contiguous)
    if fin is None:  # the source changed its row order between passes: unsorted mode
        fin = _final_pass(enc, est.params, fam, vcov, weights_kind, scan, False)
        assert fin is not None
    meat, mu_min, mu_max, extreme = fin

    _check_fit(est, extreme, scan.n_used, separation_rows, lambda: _collect(enc), outcome,
               model, terms)
    diag = _diagnostics(terms, s1, s2, scan.n_used, mu_min, mu_max, extreme, est.info)
    return _result(est, meat, diag, scan, flow, spec, terms, model=model, formula=formula,
                   vcov=vcov, cluster=cluster, weights=weights, weights_kind=weights_kind,
                   information=information, conf_level=conf_level, n_clusters=G,
                   engine="stream")


def _plan(
    columns: list[str], formula: str, vcov: str, cluster: str | None, weights: str | None,
    weights_kind: str,
) -> _Plan:
    """Check the options against the columns and parse the formula (no row is read)."""
    for role, col in (("cluster", cluster), ("weights", weights)):
        if col is not None and col not in columns:
            raise UsageError(f"{role} column '{col}' is not in the data")
    if vcov == "cluster" and cluster is None:
        raise UsageError("vcov 'cluster' needs a cluster column (cluster=... / --cluster COLUMN)")
    parsed = parse_formula(formula, columns)
    if parsed.outcome is None:
        raise FormulaError(f"formula '{formula}' has no outcome: write 'outcome ~ terms'")
    if vcov == "classical" and weights is not None:  # the in-memory engine's survey-weights rule
        sandwich_vcov(np.eye(1), np.empty((0, 0)), "classical", weights=np.ones(1),
                      weights_kind=weights_kind)  # type: ignore[arg-type]
    extra = tuple(c for c in (weights, cluster) if c is not None)
    variables = parsed.variables + extra
    rhs_formula = Formula(parsed.rhs)
    stateful, c_columns = _stateful_terms(rhs_formula)
    return _Plan(parsed, parsed.outcome, variables, list(dict.fromkeys(variables)), rhs_formula,
                 stateful, c_columns)


def _settle(
    scan: _Scan, plan: _Plan, dtypes: dict[str, Any], model: str, weights: str | None,
    formula: str,
) -> tuple[SampleFlow, ModelSpec, tuple[str, ...]]:
    """After the scan: the sample flow, the whole-data encoder and its terms, the data checks."""
    outcome = plan.outcome
    if scan.n_used == 0:
        raise FormulaError("no rows are left after dropping rows with missing values")
    flow = SampleFlow(scan.n_read)
    for col in plan.variables:
        if scan.missing.get(col):
            flow = flow.drop(f"missing value in column '{col}'", scan.missing[col], "missing", col)
            scan.missing[col] = 0  # a column listed twice is charged once
    spec, terms = _build_spec(plan.parsed.rhs, plan.rhs_formula, scan, dtypes, plan.stateful,
                              formula)
    if not scan.y_numeric:
        raise FormulaError(f"outcome column '{outcome}' must be numeric (0/1 for binary models)")
    if scan.bad_y_rows:
        vals = ", ".join(map(repr, scan.bad_y_values[:5]))
        raise FormulaError(
            f"outcome column '{outcome}' must be 0/1 for a {model} model; found {vals} "
            f"in {scan.bad_y_rows} row(s)"
        )
    if not scan.w_numeric:
        raise UsageError(f"weights column '{weights}' must be numeric")
    if scan.w_bad:
        raise UsageError(f"weights column '{weights}' has negative or infinite values")
    return flow, spec, terms


def _check_fit(
    est: GLMEstimate, extreme: int, n_used: int, separation_rows: int,
    collect: Callable[[], tuple[np.ndarray, np.ndarray, np.ndarray | None]], outcome: str,
    model: str, terms: tuple[str, ...],
) -> None:
    """Refuse a separated or unconverged fit; the LP separation check runs on ``collect()``'s
    rows when there are at most ``separation_rows`` of them."""
    if not est.converged or extreme:
        if n_used <= separation_rows:
            Xa, ya, wa = collect()
            sep = check_separation(Xa, ya, terms, wa)
            del Xa, ya, wa
            if sep.separated:
                raise SeparationError(separation_message(outcome, sep, model))
        else:  # too many rows to hold for the LP check: refuse rather than report infinities
            cls = SeparationError if extreme else ConvergenceError
            raise cls(
                (f"{extreme} fitted probabilities are numerically 0 or 1; possible separation"
                 if extreme else f"the {model} fit did not converge")
                + f" (after {est.iterations} iterations, last step {est.max_abs_step:.3g}). The "
                "linear-programming separation check needs every row in memory and was skipped "
                f"for {n_used} rows (separation_rows={separation_rows}; raise it to run the "
                "check if the rows fit in memory). Drop or merge rare categories or the term(s) "
                "that predict the outcome perfectly, rescale large covariates, or raise max_iter"
                + (", or use Firth's penalised logit (--model firth) on a sample" if model == "logit"
                   else "")
                + "."
            )
        if not est.converged:
            raise ConvergenceError(convergence_message(model, est.iterations, est.max_abs_step))


def _result(
    est: GLMEstimate, meat: np.ndarray, diag: Diagnostics, scan: _Scan, flow: SampleFlow,
    spec: ModelSpec, terms: tuple[str, ...], *, model: str, formula: str, vcov: str,
    cluster: str | None, weights: str | None, weights_kind: str, information: str,
    conf_level: float, n_clusters: int, engine: str,
) -> FitResult:
    """The FitResult of a streamed (or partitioned) fit: covariance from the summed meat."""
    p = len(terms)
    has_intercept = "Intercept" in terms
    bread = np.linalg.inv(est.info)
    bread = (bread + bread.T) / 2.0
    V = _vcov(bread, meat, vcov, weights is not None, weights_kind, scan, n_clusters, p)
    return FitResult(
        model=model, formula=formula, terms=terms, params=est.params, vcov=V,
        vcov_type=vcov, nobs=scan.n_used, n_events=scan.sum_wy, loglik=est.loglik,
        llnull=_null_loglik(FAMILIES[model], has_intercept, scan.sum_w, scan.sum_wy),
        converged=est.converged, iterations=est.iterations, has_intercept=has_intercept,
        flow=flow, conf_level=conf_level, information=information,
        weights_kind=weights_kind if weights is not None else None,
        sum_weights=scan.sum_w if weights is not None else None,
        n_clusters=n_clusters if cluster is not None else None, cluster_var=cluster,
        engine=engine, diagnostics=diag, design_spec=spec_to_dict(spec), _spec=spec,
    )


# --------------------------------------------------------------------------- pass 1


def _stateful_terms(rhs: Formula) -> tuple[dict[str, _StatefulTerm], set[str]]:
    """center()/standardize() factors (their state comes from the whole data) and C() columns."""
    out: dict[str, _StatefulTerm] = {}
    c_cols: set[str] = set()
    for term in rhs:
        for factor in term.factors:
            expr = factor.expr
            try:
                tree = ast.parse(expr, mode="eval").body
            except SyntaxError:
                continue
            for node in ast.walk(tree):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                        and node.func.id == "C":
                    c_cols |= {n.id for a in node.args for n in ast.walk(a) if isinstance(n, ast.Name)}
            calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)
                     and isinstance(n.func, ast.Name) and n.func.id in _STATEFUL]
            if not calls or expr in out:
                continue
            top = tree if isinstance(tree, ast.Call) else None
            kws = {k.arg: k.value for k in top.keywords} if top is not None else {}
            if (top is None or len(calls) != 1 or calls[0] is not top or len(top.args) != 1
                    or set(kws) - {"ddof"}
                    or not all(isinstance(v, ast.Constant) for v in kws.values())):
                raise FormulaError(
                    f"the stream engine cannot compute the term '{expr}' batch by batch: use "
                    "center(...) or standardize(...) as a whole factor (e.g. center(x), "
                    "standardize(log(x))), or add the transformed column to the data"
                )
            assert top is not None and isinstance(top.func, ast.Name)
            name = top.func.id
            ddof = kws["ddof"].value if "ddof" in kws else 1  # type: ignore[attr-defined]
            inner = ast.unparse(top.args[0])
            helper = ModelSpec.from_spec(Formula(f"0 + I({inner})"), na_action="raise",
                                         output="pandas")
            out[expr] = _StatefulTerm(expr, name, ddof, helper)
    return out, c_cols


def _maybe_categorical(s: pd.Series) -> bool:
    return not pd.api.types.is_numeric_dtype(s.dtype) or pd.api.types.is_bool_dtype(s.dtype)


def _scan_batch(
    df: pd.DataFrame, scan: _Scan, variables: tuple[str, ...], model_vars: tuple[str, ...],
    outcome: str, weights: str | None, cluster: str | None,
    stateful: dict[str, _StatefulTerm], c_columns: set[str], formula: str,
) -> None:
    scan.n_read += len(df)
    keep = np.ones(len(df), dtype=bool)
    for col in variables:
        miss = df[col].isna().to_numpy() & keep
        n = int(miss.sum())
        if n:
            scan.missing[col] += n
            keep &= ~miss
    w_all: np.ndarray | None = None
    if weights is not None:
        try:
            w_all = pd.to_numeric(df[weights], errors="raise").to_numpy(dtype=float)
        except (ValueError, TypeError):
            scan.w_numeric = False
    if not keep.any():
        return
    sub = df[keep].reset_index(drop=True)
    scan.n_used += len(sub)
    if scan.first_row is None:
        scan.first_row = sub.iloc[[0]][list(dict.fromkeys(model_vars))].reset_index(drop=True)
        scan.sample = sub.iloc[:_SAMPLE_ROWS][list(dict.fromkeys(model_vars))] \
            .reset_index(drop=True)
    for col in dict.fromkeys(model_vars):
        if col != outcome and (col in c_columns or _maybe_categorical(sub[col])):
            scan.levels.setdefault(col, set()).update(pd.unique(sub[col]).tolist())
    for st in stateful.values():
        try:
            mm = st.helper.get_model_matrix(sub, context=dict(ALLOWED_FUNCTIONS))
        except Exception as e:
            raise FormulaError(
                f"formula '{formula}' could not be evaluated on the data: {e}"
            ) from None
        st.moments.add(np.asarray(mm.to_numpy(dtype=float))[:, 0])
    w = None
    if w_all is not None:
        w = w_all[keep]
        if (w < 0).any() or not np.isfinite(w).all():
            scan.w_bad = True
    if scan.y_numeric:
        try:
            y = pd.to_numeric(sub[outcome], errors="raise").to_numpy(dtype=float)
        except (ValueError, TypeError):
            scan.y_numeric = False
        else:
            bad = ~np.isin(y, (0.0, 1.0))
            if bad.any():
                scan.bad_y_rows += int(bad.sum())
                scan.bad_y_values = sorted(set(scan.bad_y_values) | set(np.unique(y[bad]).tolist()))[:5]
            scan.sum_w += float(w.sum()) if w is not None else float(len(y))
            scan.sum_wy += float((y * w).sum()) if w is not None else float(y.sum())
    if cluster is not None:
        cl = sub[cluster].to_numpy()
        scan.clusters.add(cl)
        runs = 1 + int(np.count_nonzero(cl[1:] != cl[:-1]))
        if scan.last_cluster is not None and cl[0] == scan.last_cluster:
            runs -= 1
        scan.cluster_runs += runs
        scan.last_cluster = cl[-1]


def _build_spec(
    rhs: str, rhs_formula: Formula, scan: _Scan, dtypes: dict[str, Any],
    stateful: dict[str, _StatefulTerm], formula: str,
) -> tuple[ModelSpec, tuple[str, ...]]:
    """The formulaic spec of the whole data: encoder fitted on a small frame holding every
    level of every categorical column, transform state replaced by whole-data moments."""
    frame = _level_frame(scan, dtypes)
    state: dict[str, Any] = {}
    for key, st in stateful.items():
        mom = st.moments
        scale: Any = None
        if st.kind != "center":
            scale = np.float64(math.sqrt(mom.m2 / (mom.n - st.ddof))) if mom.n > st.ddof \
                else np.float64("nan")
        state[key] = {"ddof": st.ddof if st.kind != "center" else 1,
                      "center": np.float64(mom.mean), "scale": scale}
    try:
        spec0 = ModelSpec.from_spec(rhs_formula, na_action="raise", output="pandas")
        spec0 = spec0.update(transform_state=state)
        mm = spec0.get_model_matrix(frame, context=dict(ALLOWED_FUNCTIONS))
    except SmeSurvivalError:
        raise
    except Exception as e:
        raise FormulaError(f"formula '{formula}' could not be evaluated on the data: {e}") from None
    spec = mm.model_spec
    unknown = set(spec.transform_state) - set(state)
    if unknown:
        raise FormulaError(
            f"the stream engine cannot compute the term(s) {', '.join(sorted(unknown))} batch by "
            "batch: add the transformed column to the data"
        )
    return spec, tuple(str(c) for c in mm.columns)


def _level_frame(scan: _Scan, dtypes: dict[str, Any]) -> pd.DataFrame:
    """The scan's first used row repeated, every level of every categorical column cycled
    through its rows, in the batches' dtypes."""
    assert scan.first_row is not None
    n_lev = max([len(v) for v in scan.levels.values()] + [1])
    frame = scan.first_row.iloc[[0] * n_lev].reset_index(drop=True)
    for col in frame.columns:
        target = dtypes.get(col)
        if col in scan.levels:
            levels = list(scan.levels[col])
            s = pd.Series([levels[i % len(levels)] for i in range(n_lev)], dtype=object)
            frame[col] = s.astype(target) if target is not None else s.infer_objects()
        elif target is not None and frame[col].dtype != target:
            frame[col] = frame[col].astype(target)
    return frame


def _probe(scan: _Scan, dtypes: dict[str, Any]) -> pd.DataFrame:
    """Rows to check the direct encoder on: every level (:func:`_level_frame`) and the scan's
    first used rows, in the batches' dtypes."""
    frame = _level_frame(scan, dtypes)
    if scan.sample is None or not len(scan.sample):
        return frame
    sample = scan.sample[list(frame.columns)].copy()
    for col in sample.columns:
        target = dtypes.get(col)
        if target is not None and sample[col].dtype != target:
            try:
                sample[col] = sample[col].astype(target)
            except (TypeError, ValueError):
                return frame
    return pd.concat([frame, sample], ignore_index=True)


# --------------------------------------------------------------------------- later passes


Block = tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]


def _encoding(
    plan: _Plan, spec: ModelSpec, terms: tuple[str, ...], scan: _Scan, dtypes: dict[str, Any],
    weights: str | None, cluster: str | None, formula: str,
) -> _Encoding:
    """The fixed encoder of the later passes: direct (:mod:`smesurvival.scale.encode`) when the
    formula allows it and it reproduces formulaic's block on the scan's probe rows, else
    formulaic."""
    direct = None
    if _DIRECT_ENCODER:
        direct = direct_encoder(spec, terms, _probe(scan, dtypes), ALLOWED_FUNCTIONS, dtypes)
    return _Encoding(plan.variables, spec, terms, plan.outcome, weights, cluster, formula,
                     direct)


def used_rows(df: pd.DataFrame, variables: Sequence[str]) -> np.ndarray:
    """Rows of ``df`` with a value in every one of ``variables`` (the rows a fit uses)."""
    keep = np.ones(len(df), dtype=bool)
    for col in dict.fromkeys(variables):
        keep &= ~df[col].isna().to_numpy()
    return keep


@dataclass(frozen=True)
class _Encoding:
    """The fixed encoder: a frame of raw rows -> (X, y, w, cluster labels) of its used rows.

    ``direct``, when set, fills X without formulaic (same columns, same values); otherwise
    the whole-data formulaic ``spec`` encodes each batch."""

    variables: tuple[str, ...]
    spec: ModelSpec
    terms: tuple[str, ...]
    outcome: str
    weights: str | None
    cluster: str | None
    formula: str
    direct: DirectEncoder | None = None

    def encode(self, df: pd.DataFrame, keep: np.ndarray | None = None) -> Block | None:
        """The used rows of ``df`` encoded (None when every row has a missing value);
        ``keep``: :func:`used_rows` of ``df`` when the caller has it already."""
        keep = used_rows(df, self.variables) if keep is None else keep
        if not keep.any():
            return None
        if self.direct is not None:
            return self._encode_direct(df, None if keep.all() else keep)
        sub = df[keep].reset_index(drop=True)
        try:
            mm = self.spec.get_model_matrix(sub, context=dict(ALLOWED_FUNCTIONS))
        except Exception as e:
            raise FormulaError(
                f"formula '{self.formula}' could not be evaluated on the data: {e}"
            ) from None
        if tuple(str(c) for c in mm.columns) != self.terms:  # pragma: no cover - a bug guard
            raise RuntimeError("a batch encoded to different design columns")
        X = np.asarray(mm.to_numpy(dtype=float), dtype=float, order="C")
        y = pd.to_numeric(sub[self.outcome]).to_numpy(dtype=float)
        w = None if self.weights is None else \
            pd.to_numeric(sub[self.weights]).to_numpy(dtype=float)
        cl = None if self.cluster is None else sub[self.cluster].to_numpy()
        return X, y, w, cl

    def _encode_direct(self, df: pd.DataFrame, keep: np.ndarray | None) -> Block:
        """:meth:`encode` by the direct encoder (``keep`` None: every row is used)."""
        assert self.direct is not None
        try:
            X = self.direct.encode(df, keep)
        except ValueError as e:
            raise FormulaError(
                f"formula '{self.formula}' could not be evaluated on the data: {e}"
            ) from None

        def column(name: str) -> pd.Series:
            return df[name] if keep is None else df[name][keep]

        y = pd.to_numeric(column(self.outcome)).to_numpy(dtype=float)
        w = None if self.weights is None else \
            pd.to_numeric(column(self.weights)).to_numpy(dtype=float)
        cl = None if self.cluster is None else column(self.cluster).to_numpy()
        return X, y, w, cl


class _Encoder:
    """Re-reads the source and yields (X, y, w, cluster labels) of the used rows per batch."""

    def __init__(self, src: BatchSource, needed: list[str], rows: int, encoding: _Encoding) -> None:
        self.src, self.needed, self.rows, self.encoding = src, needed, rows, encoding

    def batches(self) -> Iterator[Block]:
        for df in self.src.frames(self.needed, self.rows):
            block = self.encoding.encode(df)
            if block is not None:
                yield block


def _final_pass(
    enc: _Encoder, beta: np.ndarray, fam: Family, vcov: str, weights_kind: str, scan: _Scan,
    contiguous: bool,
) -> tuple[np.ndarray, float, float, int] | None:
    """Meat of the sandwich (HC or cluster) and the fitted-value range at ``beta``.

    Cluster score sums: with contiguous clusters each finished cluster is flushed into the meat
    (O(p) memory); otherwise a G x p array keyed by the sorted labels. Returns None when the
    contiguous order seen in the first pass is not the order of this pass.
    """
    p = len(beta)
    meat = np.zeros((p, p))
    mu_min, mu_max, extreme = math.inf, -math.inf, 0
    labels = scan.clusters.values
    by_cluster = vcov == "cluster"
    S = np.zeros((len(labels), p)) if by_cluster and not contiguous and labels is not None else None
    carry: np.ndarray | None = None
    carry_label: Any = None
    flushed = 0
    for X, y, w, cl in enc.batches():
        lo, hi, ext, part = _sandwich_block(X, y, w, beta, fam, vcov, weights_kind)
        mu_min, mu_max, extreme = min(mu_min, lo), max(mu_max, hi), extreme + ext
        if vcov in ("hc0", "hc1"):
            meat += part
        if not by_cluster:
            continue
        assert cl is not None
        sw = part
        if contiguous:
            starts = np.flatnonzero(np.r_[True, cl[1:] != cl[:-1]])
            sums = np.add.reduceat(sw, starts, axis=0)
            run_labels = cl[starts]
            if carry is not None:
                if run_labels[0] == carry_label:
                    sums[0] += carry
                else:
                    meat += np.outer(carry, carry)
                    flushed += 1
            meat += sums[:-1].T @ sums[:-1]
            flushed += len(sums) - 1
            carry, carry_label = sums[-1].copy(), run_labels[-1]
        else:
            assert S is not None and labels is not None
            codes = np.searchsorted(labels, cl)
            order = np.argsort(codes, kind="stable")
            sc = codes[order]
            starts = np.flatnonzero(np.r_[True, sc[1:] != sc[:-1]])
            S[sc[starts]] += np.add.reduceat(sw[order], starts, axis=0)
    if by_cluster:
        if contiguous:
            if carry is not None:
                meat += np.outer(carry, carry)
                flushed += 1
            if labels is None or flushed != len(labels):
                return None
        else:
            assert S is not None
            meat = S.T @ S
    return meat, mu_min, mu_max, extreme


def _sandwich_block(
    X: np.ndarray, y: np.ndarray, w: np.ndarray | None, beta: np.ndarray, fam: Family,
    vcov: str, weights_kind: str,
) -> tuple[float, float, int, np.ndarray]:
    """One block's fitted range and its piece of the meat at ``beta``: for hc0/hc1 the p x p
    sum of c u^2 x x', for cluster the rows' weighted scores w u x (to be summed per cluster),
    for classical an empty array."""
    eta = X @ beta
    mu = fam.mean(eta)
    extreme = int(((mu < 1e-8) | (mu > 1 - 1e-8)).sum())
    if vcov == "classical":
        return float(mu.min()), float(mu.max()), extreme, np.empty((0, 0))
    _, u, _, _ = fam.pieces(eta, y)
    if vcov in ("hc0", "hc1"):
        c = np.ones(len(y)) if w is None else (w if weights_kind == "frequency" else w * w)
        part = (X * (c * u * u)[:, None]).T @ X
    else:
        part = X * (u if w is None else u * w)[:, None]
    return float(mu.min()), float(mu.max()), extreme, part


def _vcov(
    bread: np.ndarray, meat: np.ndarray, vcov: str, weighted: bool, weights_kind: str,
    scan: _Scan, G: int, k: int,
) -> np.ndarray:
    """The covariance from the streamed meat, with the small-sample factors of
    :func:`smesurvival.inference.vcov.sandwich_vcov` (R's sandwich: HC1 n/(n-k); cluster
    G/(G-1) (n-1)/(n-k), n the summed frequency weights or the rows)."""
    if vcov == "classical":
        return sandwich_vcov(bread, np.empty((0, 0)), "classical",
                             weights=np.ones(1) if weighted else None,
                             weights_kind=weights_kind)  # type: ignore[arg-type]
    n = scan.sum_w if (weighted and weights_kind == "frequency") else float(scan.n_used)
    return sandwich_from_meat(bread, meat, vcov, n=n,  # type: ignore[arg-type]
                              n_clusters=G if vcov == "cluster" else None)


def _collect(enc: _Encoder) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Every used row (only for the separation check on data below ``separation_rows``)."""
    xs, ys, ws = [], [], []
    for X, y, w, _ in enc.batches():
        xs.append(X)
        ys.append(y)
        if w is not None:
            ws.append(w)
    return np.vstack(xs), np.concatenate(ys), (np.concatenate(ws) if ws else None)


def _null_loglik(fam: Family, intercept: bool, sum_w: float, sum_wy: float) -> float:
    """Intercept-only log-likelihood: mu = weighted mean of y for every link (closed form);
    without an intercept, eta = 0."""
    w1, w0 = sum_wy, sum_w - sum_wy
    if intercept:
        ybar = w1 / sum_w
        return float(special.xlogy(w1, ybar) + special.xlogy(w0, 1.0 - ybar))
    ll, _, _, _ = fam.pieces(np.zeros(2), np.array([1.0, 0.0]))
    return float(w1 * ll[0] + w0 * ll[1])


def _diagnostics(
    terms: tuple[str, ...], s1: np.ndarray, s2: np.ndarray, n: int, mu_min: float,
    mu_max: float, extreme: int, info: np.ndarray,
) -> Diagnostics:
    """As :func:`smesurvival.models.fit.fit_diagnostics`, from streamed (shifted) moments."""
    cov = (s2 - np.outer(s1, s1) / n) / max(n - 1, 1)
    return diagnostics_from_cov(cov, terms, mu_min, mu_max, extreme, info)
