"""Discrete-time hazard models: a binary model on person-period rows, fitted by ``fit``.

With subjects i at risk in periods t = 1..T_i, the hazard h_it = P(event in t | at risk) is
modelled as g(h_it) = alpha(t) + x_i'beta, g the cloglog link (the grouped-time proportional
hazards model: exp(beta) are hazard ratios of the underlying continuous-time model) or the
logit link (exp(beta) are odds ratios of the per-period hazard). The log-likelihood is that
of a binary model with y_it = 1 only in the last period of a subject with the event, so the
estimates are the ones R's ``glm(event ~ ..., binomial(link), data = survSplit(...))`` gives.

Duration dependence alpha(t), by ``time`` (t is the period number 1..K):

========== =========================================== ==================================
time       terms (names as in ``FitResult.terms``)     meaning
========== =========================================== ==================================
dummies    ``C(period)[1]`` ... ``C(period)[K]``       one free log(-log) hazard per
                                                       period, no intercept
bands      ``C(band)[(0,4]]``, ``C(band)[(4,12]]`` ... piecewise constant on bands of the
                                                       time scale (``cuts``), no intercept
log        ``Intercept``, ``log(period)``              alpha + gamma log t
linear     ``Intercept``, ``period``                   alpha + gamma t
quadratic  ``Intercept``, ``period``, ``I(period ** 2)`` alpha + gamma1 t + gamma2 t^2
========== =========================================== ==================================

(``period`` is the period column's name: ``"period"`` after expansion, or the ``period``
argument for data given as person-periods.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Literal, get_args

import numpy as np
import pandas as pd

from smesurvival.data.flow import SampleFlow
from smesurvival.data.panel import PeriodGrid, expand_person_period
from smesurvival.errors import DataValidationError, FormulaError, UsageError
from smesurvival.inference.vcov import VCOV_TYPES, VcovType, check_choice
from smesurvival.models.design import drop_missing, parse_formula
from smesurvival.models.firth import fit_firth
from smesurvival.models.fit import fit
from smesurvival.models.kernels import Information
from smesurvival.models.result import FitResult

__all__ = ["DISCRETE_LINKS", "TIME_SPECS", "fit_discrete", "hazard_table", "time_terms"]

TimeSpec = Literal["dummies", "bands", "log", "linear", "quadratic"]
DiscreteLink = Literal["cloglog", "logit"]
TIME_SPECS: tuple[str, ...] = get_args(TimeSpec)
DISCRETE_LINKS: tuple[str, ...] = get_args(DiscreteLink)
BAND = "band"


def time_terms(time: TimeSpec, period: str = "period") -> str:
    """The formula terms of duration dependence ``time`` for period column ``period``."""
    check_choice(time, TIME_SPECS, "time")
    return {
        "dummies": f"0 + C({period})",
        "bands": f"0 + C({BAND})",
        "log": f"log({period})",
        "linear": period,
        "quadratic": f"{period} + I({period} ** 2)",
    }[time]


def band_labels(bands: Sequence[float]) -> list[str]:
    """Labels ``(0,4]``, ``(4,12]``, ..., ``(12,inf)`` of the bands cut at ``bands``."""
    edges = [0.0, *bands]
    fmt = [f"{v:g}" for v in edges]
    return [f"({a},{b}]" for a, b in zip(fmt[:-1], fmt[1:], strict=True)] + [f"({fmt[-1]},inf)"]


def band_of_period(period: np.ndarray, grid: PeriodGrid, bands: Sequence[float]) -> pd.Categorical:
    """The band of each period; a period straddling a band boundary is refused."""
    edges = np.asarray(bands, dtype=float)
    start, end = grid.start(period), grid.end(period)
    b = np.searchsorted(edges, start, side="right")
    upper = np.concatenate([edges, [np.inf]])[b]
    bad = end > upper
    if bad.any():
        k = int(np.asarray(period)[bad][0])
        raise UsageError(
            f"band boundaries {list(bands)} must fall on period boundaries, but period {k} "
            f"({start[bad][0]:g}, {end[bad][0]:g}] straddles one; give width= so the periods are "
            "finer than the bands, or move the cuts")
    labels = band_labels(bands)
    return pd.Categorical.from_codes(b, categories=labels)


def _rhs(formula_rhs: str, event: str) -> str:
    """The covariate part; a full formula is accepted when its outcome is the event column."""
    text = (formula_rhs or "").strip()
    if "~" in text:
        lhs, text = (s.strip() for s in text.split("~", 1))
        if lhs and lhs != event:
            raise FormulaError(
                f"formula '{formula_rhs}': the outcome of a discrete-time hazard is the event "
                f"column '{event}'; give the right-hand side only")
    return "" if text in ("", "1") else text


def _grids(
    time: str, cuts: Sequence[float] | None, width: float | None, expanded: bool,
) -> tuple[PeriodGrid, tuple[float, ...] | None]:
    """The expansion grid and the bands (time='bands': ``cuts``, periods from ``width``)."""
    bands = None
    if time == "bands":
        if cuts is None:
            raise UsageError("time='bands' needs the band boundaries in cuts (e.g. cuts=[1, 3])")
        bands = PeriodGrid.make(cuts, None).cuts
        if expanded or width is not None:
            cuts = None
    if expanded:
        if cuts is not None or width is not None:
            raise UsageError("cuts/width describe the expansion, but the data are already "
                             "person-periods (expanded=True); leave them out")
        return PeriodGrid(width=1.0), bands
    return PeriodGrid.make(cuts, width), bands


def _check_periods(frame: pd.DataFrame, period: str) -> np.ndarray:
    """Period numbers of person-period data: whole numbers >= 1."""
    if period not in frame.columns:
        raise UsageError(f"period column '{period}' is not in the data (expanded=True needs it)")
    try:
        p = pd.to_numeric(frame[period], errors="raise").to_numpy(dtype=float, na_value=np.nan)
    except (ValueError, TypeError):
        raise DataValidationError(f"period column '{period}' must be numeric") from None
    bad = ~np.isfinite(p) | (p < 1) | (p != np.round(p))
    if bad.any():
        rows = ", ".join(str(v) for v in frame.index[bad][:5])
        raise DataValidationError(
            f"period column '{period}' must hold whole numbers 1, 2, ...; rows {rows} do not")
    return p.astype(np.int64)


def fit_discrete(
    formula_rhs: str,
    data: pd.DataFrame,
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
    firth: bool = False,
    flow: SampleFlow | None = None,
) -> FitResult:
    """Fit a discrete-time hazard model on subject-level (or person-period) data.

    Parameters
    ----------
    formula_rhs : covariates, e.g. ``"export_ratio * rd_intensity + C(industry)"``.
    data : one row per subject (``duration``, ``event``, ``id`` and covariates), or with
        ``expanded=True`` one row per subject and period (``period``, ``event``, ``id``).
    link : ``cloglog`` (grouped proportional hazards) or ``logit`` (proportional odds).
    time : duration dependence: ``dummies``, ``bands``, ``log``, ``linear``, ``quadratic``.
    cuts, width : the periods, as :func:`~smesurvival.data.panel.expand_person_period`; for
        ``time="bands"`` ``cuts`` are the band boundaries and ``width`` (if given) the periods.
    vcov : ``cluster`` by ``cluster`` (default the subject id), ``classical``, ``hc0``, ``hc1``.
    information : ``expected`` (as R's glm) or ``observed`` (as statsmodels' GLM sandwich).
    firth : fit the person-period binary model by mean bias reduction instead of maximum
        likelihood: the adjusted score of Kosmidis & Firth (2009), R's ``brglm2`` ``type =
        "AS_mean"`` (for the logit link Firth's penalised likelihood); see
        :func:`~smesurvival.models.firth.fit_firth`. It removes the O(1/n) bias of the ML
        estimates when events are few per parameter, and gives finite estimates when a
        covariate separates the events (e.g. a level in which no subject has the event).
        ``vcov`` works as for ML (``classical`` is the inverse expected information at the
        estimate, as brglm2; the sandwiches use the ordinary scores there, as
        ``sandwich::vcovCL`` on a brglm2 fit); ``information`` must be ``expected``.

    Returns
    -------
    A :class:`FitResult` with ``model="discrete"``; ``nobs`` counts person-period rows, the
    sample flow counts subject rows, and ``extra`` holds the link, time spec, grid,
    ``n_subjects``, ``periods``, ``rows_per_period``, ``events_per_period`` and ``firth``
    (with ``firth=True`` also ``bias_reduction`` and, for the logit, ``penalized_loglik``).

    Example
    -------
    >>> d = pd.DataFrame({"week": [3, 9, 4, 8, 12, 6], "arrest": [1, 0, 1, 1, 0, 1],
    ...                   "x": [0.5, -1.0, 1.2, 0.1, -0.3, 0.8], "pid": range(6)})
    >>> r = fit_discrete("x", d, duration="week", event="arrest", id="pid", time="linear",
    ...                  width=4, vcov="classical")
    """
    check_choice(link, DISCRETE_LINKS, "link")
    check_choice(time, TIME_SPECS, "time")
    check_choice(vcov, VCOV_TYPES, "vcov")
    if firth and information != "expected":
        raise UsageError(
            "firth=True solves the adjusted score with the expected information (as brglm2); "
            f"information='{information}' is not available with it: drop the option")
    if not expanded and duration is None:
        raise UsageError("subject-level data need duration= (or pass expanded=True)")
    if id is None or id not in data.columns:
        raise UsageError(f"id column {id!r} is not in the data; a subject identifier is required")
    cluster = id if cluster is None else cluster
    if cluster not in data.columns:
        raise UsageError(f"cluster column '{cluster}' is not in the data")
    for role, col in (("period" if expanded else "duration", period if expanded else duration),
                      ("event", event)):
        if col not in data.columns:
            raise UsageError(f"{role} column '{col}' is not in the data")
    grid, bands = _grids(time, cuts, width, expanded)
    rhs = _rhs(formula_rhs, event)
    variables = parse_formula(rhs, list(data.columns)).variables if rhs else ()
    first = (period if expanded else duration, event)
    miss = data[id].isna().to_numpy()
    if miss.any():
        where = ", ".join(str(v) for v in data.index[miss][:5])
        raise DataValidationError(
            f"id column '{id}' is missing in {int(miss.sum())} row(s) (rows {where}); every "
            "subject needs an identifier (it is the cluster of the robust SEs)")
    flow = flow if flow is not None else SampleFlow(len(data))
    extra_cols = (cluster,) if cluster != id else ()
    needed = tuple(dict.fromkeys((*first, *variables, *extra_cols)))
    rows, flow = drop_missing(data, tuple(c for c in needed if c is not None), flow)
    if rows.size == 0:
        raise FormulaError("no rows are left after dropping rows with missing values")
    sub = data.iloc[rows]
    if expanded:
        pp = _prepare_expanded(sub, period, event, id)
    else:
        keep = [c for c in dict.fromkeys((*variables, *extra_cols)) if c not in (event, id)]
        pp = expand_person_period(sub, duration=str(duration), event=event, id=id,
                                  cuts=grid.cuts, width=grid.width, keep=keep)
        period = "period"
    if bands is not None:
        if BAND in pp.columns:
            raise UsageError(f"time='bands' creates a column '{BAND}'; rename the data's '{BAND}'")
        pp = pp.assign(**{BAND: band_of_period(pp[period].to_numpy(), grid, bands)})
    formula = f"{event} ~ {time_terms(time, period)}" + (f" + {rhs}" if rhs else "")
    cl = cluster if vcov == "cluster" else None
    if firth:
        res = fit_firth(formula, pp, link=link, vcov=vcov, cluster=cl, conf_level=conf_level,
                        profile=False)
    else:
        res = fit(formula, pp, model=link, vcov=vcov, cluster=cl, information=information,
                  conf_level=conf_level)
    per = pp[period].to_numpy()
    ev = pp[event].to_numpy(dtype=float)
    ks, counts = np.unique(per, return_counts=True)
    extra = {
        "link": link, "time": time, "time_terms": time_terms(time, period),
        "period_column": period, "id": id, "event": event, "duration": duration,
        "expanded": expanded, "grid": None if expanded else grid.to_dict(),
        "bands": list(bands) if bands is not None else None,
        "band_labels": band_labels(bands) if bands is not None else None,
        "n_subjects": int(pd.unique(pp[id]).size), "n_periods": int(ks.max()),
        "periods": [int(k) for k in ks], "rows_per_period": [int(c) for c in counts],
        "events_per_period": [int(v) for v in np.bincount(
            np.searchsorted(ks, per), weights=ev, minlength=ks.size)],
        "firth": firth,
    }
    if firth:
        extra["bias_reduction"] = res.extra["bias_reduction"]
        if "penalized_loglik" in res.extra:
            extra["penalized_loglik"] = res.extra["penalized_loglik"]
    return replace(res, model="discrete", link=link, flow=flow, extra=extra)


def _prepare_expanded(frame: pd.DataFrame, period: str, event: str, id: str) -> pd.DataFrame:
    """Check person-period data (whole periods, 0/1 events) and make the period integer."""
    p = _check_periods(frame, period)
    e = pd.to_numeric(frame[event], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    bad = ~np.isin(e, (0.0, 1.0))
    if bad.any():
        rows = ", ".join(str(v) for v in frame.index[bad][:5])
        raise DataValidationError(
            f"event column '{event}' must be coded 0 or 1 in every person-period; rows {rows} "
            "are not")
    if frame[period].dtype != np.int64:
        frame = frame.assign(**{period: p})
    return frame.reset_index(drop=True)


def hazard_table(
    result: FitResult, newdata: pd.DataFrame, periods: int | None = None,
    conf_level: float | None = None,
) -> pd.DataFrame:
    """Hazard and survival per period for each covariate profile (row) of ``newdata``.

    Returns one row per profile and period 1..``periods`` (default: the fitted periods) with
    ``profile`` (row position in ``newdata``), ``period``, ``hazard``, its delta-method
    ``std_error`` and CI, and ``survival`` = prod over s <= t of (1 - hazard_s).
    """
    if result.model != "discrete":
        raise UsageError(f"hazard_table needs a discrete-time hazard result; got {result.model}")
    ex = result.extra
    m = int(ex["n_periods"] if periods is None else periods)
    if m < 1:
        raise UsageError(f"periods must be at least 1; got {periods}")
    n = len(newdata)
    col = ex["period_column"]
    grid_frame = newdata.drop(columns=[c for c in (col, BAND) if c in newdata.columns])
    grid_frame = grid_frame.iloc[np.repeat(np.arange(n), m)].reset_index(drop=True)
    per = np.tile(np.arange(1, m + 1, dtype=np.int64), n)
    grid_frame[col] = per
    if ex.get("bands") is not None:
        g = ex.get("grid")
        grid = PeriodGrid(width=1.0) if g is None else PeriodGrid(
            tuple(g["cuts"]) if g["cuts"] is not None else None, g["width"])
        grid_frame[BAND] = band_of_period(per, grid, ex["bands"])
    pred = result.predict(grid_frame, type="response", se_fit=True, conf_level=conf_level)
    h = pred["estimate"].to_numpy()
    surv = np.cumprod((1.0 - h).reshape(n, m), axis=1).ravel()
    return pd.DataFrame({
        "profile": np.repeat(np.arange(n), m), "period": per, "hazard": h,
        "std_error": pred["std_error"].to_numpy(), "conf_low": pred["conf_low"].to_numpy(),
        "conf_high": pred["conf_high"].to_numpy(), "survival": surv,
    })
