"""Cox proportional hazards by streaming: the in-memory kernel's sums, batch by batch.

``fit_cox_stream`` gives the numbers :func:`smesurvival.models.cox.fit_cox` gives on the same
rows without holding the data (DESIGN.md principle 1: one kernel, many engines). Every sum the
Cox kernel needs is a sum over rows of per-event-time pieces, so batches add up:

1. **scan pass** -- the stream engine's scan (sample flow, categorical levels, transform state,
   the 0/1 event check) plus the durations, entry times and strata checks, and the sorted
   event times of each stratum with their death counts and weights: the global event-time
   ids and Efron's (or Breslow's) terms;
2. **per Newton step, two passes** -- first each batch's per-event-time sums of r and r x over
   exits, entries and deaths (:func:`~smesurvival.models.cox_kernel.time_sums`), added up; the
   driver forms S0, S1 (suffix sums), the Efron denominators, the score and the log partial
   likelihood. Then each batch's risk-set Gram X' diag(v) X
   (:func:`~smesurvival.models.cox_kernel.risk_gram`, v from the driver's cumulative weights),
   added up, minus the event-time term: the information. The final step's sums give the
   baseline hazard.

Memory: one batch plus K x p per-time sums, K the number of distinct event times (a daily
grid over five years: 1,826; continuous times: one per event). Classical standard errors; the
Lin-Wei sandwich and concordance need the rows in memory (``fit_cox``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from smesurvival.errors import ConvergenceError, DataValidationError, UsageError
from smesurvival.inference.vcov import check_choice
from smesurvival.models.checks import check_rank_gram
from smesurvival.models.cox import TIES, baseline_hazard, check_monotone, cox_extra
from smesurvival.models.cox_kernel import (
    _SHIFT_SLACK,
    RiskSets,
    RiskTotals,
    Ties,
    efron_second_moments,
    risk_gram,
    risk_totals,
    tie_terms,
    time_sums,
)
from smesurvival.models.design import spec_to_dict
from smesurvival.models.glm import _solve
from smesurvival.models.result import Diagnostics, FitResult
from smesurvival.models.survdata import check_durations, file_lines
from smesurvival.scale.sources import BatchSource, CsvSource, open_source
from smesurvival.scale.stream import (
    _Encoding,
    _encoding,
    _Plan,
    _plan,
    _Scan,
    _scan_batch,
    _settle,
    parse_memory,
    rows_for_memory,
    used_rows,
)

__all__ = ["fit_cox_stream"]


@dataclass(frozen=True)
class EventTimes:
    """The whole data's event times: per stratum (codes 0..S-1, sorted labels) the sorted
    distinct event times, their global ids 1..K, deaths per time (weighted and counted) and
    the tie terms; shared by every batch."""

    labels: np.ndarray  # stratum labels, sorted (without strata: the single label 0)
    times: list[np.ndarray]  # per stratum, sorted distinct event times
    offsets: np.ndarray  # global id offset of each stratum
    d: np.ndarray  # (K+1,) weighted deaths per time
    m: np.ndarray  # (K+1,) counted deaths per time
    pair_k: np.ndarray
    pair_frac: np.ndarray
    pair_wt: np.ndarray
    has_lower: bool
    ties: str

    @property
    def K(self) -> int:
        return self.d.size - 1

    @cached_property
    def all_times(self) -> tuple[np.ndarray, np.ndarray]:
        """(event time of each global id, its stratum code); index 0: before the first."""
        return (np.concatenate([[-np.inf], *self.times]),
                np.concatenate([[-1], *[np.full(t.size, s) for s, t in enumerate(self.times)]]))

    def no_rows(self) -> RiskSets:
        """The event-time part alone (no rows): for the driver's per-time algebra."""
        t, s = self.all_times
        empty = np.zeros(0, dtype=np.int64)
        return RiskSets(0, self.K, empty, empty, np.zeros(0), np.zeros(0), empty, self.d, self.m,
                        self.pair_k, self.pair_frac, self.pair_wt, t, s, self.has_lower, self.ties)

    def risk_sets(self, time: np.ndarray, event: np.ndarray, entry: np.ndarray | None,
                  codes: np.ndarray, w: np.ndarray) -> RiskSets:
        """One batch's rows indexed by the global event times (the kernel's RiskSets)."""
        n = time.size
        k_exit = np.zeros(n, dtype=np.int64)
        k_entry = np.zeros(n, dtype=np.int64)
        for s, ut in enumerate(self.times):
            rows = np.flatnonzero(codes == s) if len(self.times) > 1 else slice(None)
            off = int(self.offsets[s])
            k_exit[rows] = off + np.searchsorted(ut, time[rows], side="right")
            k_entry[rows] = off + (np.searchsorted(ut, entry[rows], side="right") if entry is not None else 0)
        ev = (event > 0) & (w > 0)
        t, s_of = self.all_times
        return RiskSets(n, self.K, k_exit, k_entry, ev.astype(float), w, np.flatnonzero(ev), self.d,
                        self.m, self.pair_k, self.pair_frac, self.pair_wt, t, s_of,
                        self.has_lower, self.ties)


@dataclass
class _Deaths:
    """Deaths per (stratum label, time), gathered over the scan's batches."""

    parts: list[pd.DataFrame]
    labels: set[Any]

    def add(self, strata: np.ndarray | None, time: np.ndarray, event: np.ndarray, w: np.ndarray) -> None:
        lab = strata if strata is not None else np.zeros(time.size, dtype=np.int64)
        self.labels.update(pd.unique(lab).tolist())
        ev = (event > 0) & (w > 0)
        if ev.any():
            df = pd.DataFrame({"s": lab[ev], "t": time[ev], "w": w[ev], "m": 1.0})
            self.parts.append(df.groupby(["s", "t"], sort=False).sum().reset_index())

    def settle(self, has_entry: bool, ties: str) -> EventTimes:
        labels = np.array(sorted(self.labels), dtype=object)
        if not self.parts:
            raise DataValidationError("every row is censored (no events), so a Cox model cannot be fitted")
        agg = pd.concat(self.parts).groupby(["s", "t"]).sum()
        times, ds, ms, offsets = [], [np.zeros(1)], [np.zeros(1)], []
        off = 0
        for lab in labels:
            sub = agg.loc[lab] if lab in agg.index.get_level_values(0) else agg.iloc[:0]
            t = np.asarray(sub.index, dtype=float)
            times.append(t)
            ds.append(sub["w"].to_numpy(dtype=float))
            ms.append(sub["m"].to_numpy(dtype=float))
            offsets.append(off)
            off += t.size
        d, m = np.concatenate(ds), np.concatenate(ms)
        pk, pf, pw = tie_terms(d, m, ties)
        return EventTimes(labels, times, np.array(offsets), d, m, pk, pf, pw,
                          has_entry or len(labels) > 1, ties)


@dataclass(frozen=True)
class _Batch:
    X: np.ndarray
    rs: RiskSets


def fit_cox_stream(
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
    tol: float = 1e-12,
    max_iter: int = 100,
) -> FitResult:
    """Fit h(t | x) = h0_s(t) exp(x'b) by streaming the data in batches (engine ``stream``).

    Options as :func:`smesurvival.models.cox.fit_cox` (classical standard errors, no
    concordance) and ``source``/``sql``/``batch_rows``/``memory`` as
    :func:`smesurvival.scale.fit_stream`. Two passes over the data per Newton step.

    >>> res = fit_cox_stream("export_ratio + C(industry)", "firms.parquet",
    ...                      duration="years", event="failed")  # doctest: +SKIP
    """
    check_choice(ties, TIES, "ties")
    if not 0.0 < conf_level < 1.0:
        raise UsageError(f"conf_level must be between 0 and 1; got {conf_level}")
    if batch_rows is not None and (isinstance(batch_rows, bool) or int(batch_rows) < 1):
        raise UsageError(f"batch_rows must be a whole number >= 1; got {batch_rows!r}")
    budget = parse_memory(memory)
    src = open_source(source, sql=sql, block_bytes=budget // 16)
    try:
        return _fit(src, formula, duration, event, entry, strata, weights, ties, conf_level,
                    batch_rows, budget, tol, max_iter)
    finally:
        src.close()


@dataclass(frozen=True)
class CoxPlan:
    """What a Cox formula and its options ask of the data (no row read): the stream engine's
    plan with the event as its 0/1 outcome, and the survival columns in the drop order."""

    plan: _Plan
    rhs: str
    formula: str  # "event ~ rhs", the form the stream engine's scan checks
    duration: str
    event: str
    entry: str | None
    strata: str | None
    weights: str | None
    ties: str


def cox_plan(columns: list[str], formula: str, *, duration: str, event: str, entry: str | None,
             strata: str | None, weights: str | None, ties: str) -> CoxPlan:
    """Check the options against the columns and parse the formula."""
    rhs = (formula.split("~", 1)[1] if "~" in formula else formula).strip()
    for role, col in (("duration", duration), ("event", event), ("entry", entry), ("strata", strata)):
        if col is not None and col not in columns:
            raise UsageError(f"{role} column '{col}' is not in the data; columns are: {', '.join(columns)}")
    full = f"{event} ~ {rhs}"
    plan0 = _plan(columns, full, "classical", None, weights, "frequency")
    extra = tuple(c for c in (duration, entry, strata) if c)
    plan = replace(plan0, variables=plan0.variables + extra,
                   needed=list(dict.fromkeys([*plan0.needed, *extra])))
    return CoxPlan(plan, rhs, full, duration, event, entry, strata, weights, ties)


def scan_frame(cp: CoxPlan, df: pd.DataFrame, scan: _Scan, deaths: _Deaths) -> None:
    """The scan of one batch: the stream engine's (flow, levels, transform state, the 0/1
    event) plus the durations' checks and the deaths per event time."""
    plan = cp.plan
    offset = scan.n_read
    _scan_batch(df, scan, plan.variables, plan.parsed.variables, cp.event, cp.weights, None,
                plan.stateful, plan.c_columns, cp.formula)
    keep = used_rows(df, plan.variables)
    if keep.any():
        t, e, _, s, w = _survival_columns(df, keep, cp, offset + np.flatnonzero(keep))
        deaths.add(s, t, e, w)


@dataclass(frozen=True)
class CoxDesign:
    """After the scan: the fixed encoder, the design columns kept (no intercept) and the whole
    data's event times; turns a batch of raw rows into a :class:`_Batch`."""

    cp: CoxPlan
    encoding: _Encoding
    keep_cols: tuple[int, ...]
    terms: tuple[str, ...]
    times: EventTimes
    flow: Any  # SampleFlow
    spec: Any  # formulaic ModelSpec

    def batches(self, df: pd.DataFrame) -> Iterator[_Batch]:
        """The batch's used rows: design without its intercept, global risk-set ids."""
        keep = used_rows(df, self.cp.plan.variables)
        block = self.encoding.encode(df, keep)
        if block is None:
            return
        X = np.ascontiguousarray(block[0][:, list(self.keep_cols)])
        t, e, t0, s, w = _survival_columns(df, keep, self.cp, None)  # checked by the scan
        codes = (np.searchsorted(self.times.labels, s) if s is not None  # labels are sorted
                 else np.zeros(t.size, dtype=np.int64))
        yield _Batch(X, self.times.risk_sets(t, e, t0, codes, w))


def settle_cox(cp: CoxPlan, scan: _Scan, deaths: _Deaths, dtypes: dict[str, Any]) -> CoxDesign:
    """The sample flow, the whole-data encoder and the event times, after the scan."""
    flow, spec, terms_all = _settle(scan, cp.plan, dtypes, "Cox", cp.weights, cp.formula)
    times = deaths.settle(cp.entry is not None, cp.ties)
    keep_cols = tuple(j for j, t in enumerate(terms_all) if t != "Intercept")
    terms = tuple(terms_all[j] for j in keep_cols)
    if not terms:
        raise UsageError("the Cox model needs at least one covariate")
    enc = _encoding(cp.plan, spec, terms_all, scan, dtypes, cp.weights, None, cp.formula)
    return CoxDesign(cp, enc, keep_cols, terms, times, flow, spec)


def _fit(src: BatchSource, formula: str, duration: str, event: str, entry: str | None,
         strata: str | None, weights: str | None, ties: str, conf_level: float,
         batch_rows: int | None, budget: int, tol: float, max_iter: int) -> FitResult:
    cp = cox_plan(list(src.columns), formula, duration=duration, event=event, entry=entry,
                  strata=strata, weights=weights, ties=ties)
    needed = cp.plan.needed
    if isinstance(src, CsvSource):
        src.settle_types(needed)
    rows1 = batch_rows or rows_for_memory(budget, len(needed) + 1, len(needed))
    scan = _Scan(missing=dict.fromkeys(cp.plan.variables, 0))
    deaths = _Deaths([], set())
    for df in src.frames(needed, rows1):
        scan_frame(cp, df, scan, deaths)
    design = settle_cox(cp, scan, deaths, src.freeze())
    rows = batch_rows or rows_for_memory(budget, len(design.terms) + 1, len(needed))

    def batches() -> Iterator[_Batch]:
        for df in src.frames(needed, rows):
            yield from design.batches(df)

    def sums(beta: np.ndarray, shift: float) -> PassSums:
        return sum((batch_sums(b, beta, shift) for b in batches()), PassSums.zero(len(beta)))

    def gram(beta: np.ndarray, shift: float, C: np.ndarray, B: np.ndarray) -> np.ndarray:
        p = len(beta)
        return sum((batch_gram(b, beta, shift, C, B) for b in batches()), np.zeros((p, p)))

    return fit_cox_sums(design, Evaluator(design.times, sums, gram), conf_level=conf_level,
                        tol=tol, max_iter=max_iter, engine="stream")


def fit_cox_sums(design: CoxDesign, ev: Evaluator, *, conf_level: float, tol: float,
                 max_iter: int, engine: str) -> FitResult:
    """Newton on an engine's additive sums (line search as ``fit_cox``), then the result."""
    terms, times = design.terms, design.times
    p = len(terms)
    beta = np.zeros(p)
    cur = ev.evaluate(beta, 0.0)
    null = cur
    check_rank_gram(null.info, terms)
    steps, converged = 0, False
    while steps < max_iter:
        step = _solve(cur.info, cur.grad)
        size = float(np.max(np.abs(step)))
        limit = tol * (1.0 + float(np.max(np.abs(beta), initial=0.0)))
        if size <= limit:
            converged = True
            break
        h = 1.0
        for _ in range(40):
            cand = beta + h * step
            new = ev.evaluate(cand, cur.eta_max)
            if np.isfinite(new.loglik) and new.loglik >= cur.loglik - 1e-12 * (1 + abs(cur.loglik)):
                break
            h *= 0.5
        else:
            break
        steps += 1
        beta, cur = cand, new
    if not converged or not np.all(np.isfinite(beta)):
        raise ConvergenceError(
            f"the Cox fit ({engine} engine) did not converge in {steps} iterations; a covariate "
            "may perfectly predict the event order (monotone likelihood): fit a sample in memory "
            "(fit_cox, --firth) to find it")
    bread = np.linalg.inv(cur.info)
    bread = (bread + bread.T) / 2.0
    check_monotone(beta, bread, null.info, float(times.d.sum()), terms)
    score = float(null.grad @ np.linalg.solve(null.info, null.grad))
    wald = float(beta @ np.linalg.solve(bread, beta))
    cp = design.cp
    n_used, sum_w = null.n, null.sum_w
    extra_info = cox_extra(ties=cp.ties, weights=cp.weights, strata=cp.strata, entry=cp.entry,
                           duration=cp.duration, event=cp.event, n_strata=len(times.labels),
                           score=score, wald=wald, p=p, concordance=None,
                           means=dict(zip(terms, map(float, null.rx_total / sum_w), strict=True)))
    return FitResult(
        model="cox", formula=cp.rhs, terms=terms, params=beta, vcov=bread, vcov_type="classical",
        nobs=n_used, n_events=float(times.d.sum()), loglik=cur.loglik, llnull=null.loglik,
        converged=True, iterations=steps, has_intercept=False, flow=design.flow,
        conf_level=conf_level, weights_kind="frequency" if cp.weights is not None else None,
        sum_weights=sum_w if cp.weights is not None else None, n_clusters=None, cluster_var=None,
        diagnostics=Diagnostics(condition_number=float(np.linalg.cond(cur.info))),
        design_spec=spec_to_dict(design.spec), extra=extra_info,
        baseline=baseline_hazard(times.no_rows(), cur.rt.den, cur.shift), _spec=design.spec,
        engine=engine,
    )


def _survival_columns(
    df: pd.DataFrame, keep: np.ndarray, cp: CoxPlan, rows: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None, np.ndarray]:
    """Durations, events, entry times, strata labels and weights of the kept rows; checked
    when ``rows`` (their positions in the whole data, for the messages) is given -- the scan
    checks them once, the later passes only read them."""
    def num(col: str, role: str) -> np.ndarray:
        if rows is None:
            return df[col][keep].to_numpy(dtype=float)
        vals = pd.to_numeric(df[col][keep], errors="coerce").to_numpy(dtype=float)
        if np.isnan(vals).any():
            raise DataValidationError(
                f"{role} column '{col}': non-numeric values at {file_lines(np.isnan(vals), rows)}")
        return vals

    t = num(cp.duration, "duration")
    e = num(cp.event, "event")
    t0 = num(cp.entry, "entry") if cp.entry else None
    if rows is not None:
        check_durations(t, cp.duration, rows, t0, cp.entry)
    w = num(cp.weights, "weights") if cp.weights else np.ones(t.size)
    s = df[cp.strata][keep].to_numpy() if cp.strata else None
    return t, e, t0, s, w


@dataclass(frozen=True)
class PassSums:
    """One pass's additive sums over rows: max of X beta, the per-event-time sums [exit S0,
    S1, (entry S0, S1,) death E0, E1], sum of w x beta and of w x over deaths, rows, weights."""

    top: float
    tot: tuple[np.ndarray, ...]
    lin: float
    xw: np.ndarray
    n: int
    sum_w: float

    @staticmethod
    def zero(p: int) -> PassSums:
        return PassSums(-math.inf, (), 0.0, np.zeros(p), 0, 0.0)

    def __add__(self, o: PassSums) -> PassSums:
        tot = o.tot if not self.tot else self.tot if not o.tot else \
            tuple(a + b for a, b in zip(self.tot, o.tot, strict=True))
        return PassSums(float(np.maximum(self.top, o.top)), tot, self.lin + o.lin, self.xw + o.xw,
                        self.n + o.n, self.sum_w + o.sum_w)


def batch_sums(b: _Batch, beta: np.ndarray, shift: float) -> PassSums:
    """Pass 1 on one batch (the memory kernel's :func:`time_sums`)."""
    Xd = b.X[b.rs.death_rows]
    top, sums = time_sums(b.rs, b.X, beta, shift, Xd)
    return PassSums(top, tuple(sums), float(b.rs.w_death @ (Xd @ beta)), Xd.T @ b.rs.w_death,
                    b.X.shape[0], float(b.rs.weights.sum()))


def batch_gram(b: _Batch, beta: np.ndarray, shift: float, C: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Pass 2 on one batch: its risk-set Gram with the whole data's cumulative weights."""
    r = b.rs.weights * np.exp(b.X @ beta - shift)
    return risk_gram(b.rs, b.X, C, B, r)


@dataclass(frozen=True)
class _Eval:
    loglik: float
    grad: np.ndarray
    info: np.ndarray
    rt: RiskTotals
    shift: float
    eta_max: float
    rx_total: np.ndarray  # sum of w x exp(x beta) over all rows (w'X at beta = 0)
    n: int
    sum_w: float


class Evaluator:
    """Log partial likelihood, score and information at beta from an engine's two passes:
    ``sums(beta, shift)`` (pass 1, added over rows) and ``gram(beta, shift, C, B)`` (pass 2)."""

    def __init__(self, times: EventTimes, sums: Callable[[np.ndarray, float], PassSums],
                 gram: Callable[[np.ndarray, float, np.ndarray, np.ndarray], np.ndarray]) -> None:
        self.times, self.sums, self.gram = times, sums, gram

    def evaluate(self, beta: np.ndarray, shift: float) -> _Eval:
        ps = self.sums(beta, shift)
        if not abs(ps.top - shift) <= _SHIFT_SLACK and np.isfinite(ps.top):  # the hint was far: again
            shift = ps.top
            ps = self.sums(beta, shift)
        rs0 = self.times.no_rows()
        rt = risk_totals(rs0, list(ps.tot))
        ll = ps.lin - float((self.times.pair_wt * (np.log(rt.den) + shift)).sum())
        grad = ps.xw - (rt.a @ rt.s1 - rt.B @ rt.e1)
        p = beta.size
        info = np.full((p, p), np.nan)
        if np.isfinite(ll):
            info = self.gram(beta, shift, rt.C, rt.B) - efron_second_moments(rs0, rt)
            info = (info + info.T) / 2.0
        rx_total = ps.tot[1].sum(axis=0) * math.exp(shift)
        return _Eval(ll, grad, info, rt, shift, ps.top, rx_total, ps.n, ps.sum_w)
