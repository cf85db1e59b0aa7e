"""Cox proportional hazards: ``fit_cox`` -> FitResult (model "cox").

Newton–Raphson on the partial likelihood (Efron or Breslow ties) with the matrix-product
kernel of :mod:`cox_kernel`; strata, case weights, counting-process (start, stop] data;
classical, robust (Lin–Wei, R's ``robust = TRUE``) and clustered variances; concordance,
likelihood-ratio / Wald / score tests and the baseline cumulative hazard for prediction.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np
import pandas as pd
from formulaic import Formula
from scipy import stats

from smesurvival.data.flow import SampleFlow
from smesurvival.errors import ConvergenceError, DataValidationError, UsageError
from smesurvival.inference.vcov import check_choice, cluster_codes
from smesurvival.models.checks import check_rank_gram, gram_of
from smesurvival.models.cox_kernel import (
    CoxState,
    CoxSums,
    RiskSets,
    Ties,
    build_risk_sets,
    cox_gradient,
    cox_partial_sums,
    cox_score_residuals,
    cox_state,
    fill_rows,
    one_blas_thread,
)
from smesurvival.models.design import (
    build_design,
    drop_missing,
    parse_formula,
    spec_from_dict,
    spec_to_dict,
)
from smesurvival.models.glm import _solve
from smesurvival.models.result import Diagnostics, FitResult
from smesurvival.models.survdata import check_durations, event_indicator, numeric_column

CoxVcov = Literal["classical", "hc0", "cluster"]
COX_VCOV: tuple[str, ...] = get_args(CoxVcov)
TIES: tuple[str, ...] = get_args(Ties)


def fit_cox(
    formula: str,
    data: pd.DataFrame,
    *,
    duration: str,
    event: str,
    entry: str | None = None,
    strata: str | None = None,
    weights: str | None = None,
    ties: Ties = "efron",
    vcov: CoxVcov = "classical",
    cluster: str | None = None,
    conf_level: float = 0.95,
    concordance: bool = True,
    tol: float = 1e-12,
    max_iter: int = 100,
    flow: SampleFlow | None = None,
) -> FitResult:
    """Fit h(t | x) = h0_s(t) exp(x'b) by maximum partial likelihood.

    ``formula`` is the right-hand side (``"export_ratio * rd_intensity + C(industry)"``; an
    outcome on the left is ignored in favour of ``duration``/``event``). ``entry`` gives
    counting-process start times (left truncation, time-varying covariates); ``strata`` a
    column with a separate baseline hazard per level; ``weights`` case weights.
    ``vcov="hc0"`` is the per-row Lin–Wei sandwich (R's ``coxph(..., robust = TRUE)``) and
    ``"cluster"`` its clustered form (R's ``cluster()``), both without small-sample factors.
    """
    check_choice(ties, TIES, "ties")
    check_choice(vcov, COX_VCOV, "vcov (Cox)")
    if vcov == "cluster" and cluster is None:
        raise UsageError("vcov 'cluster' needs a cluster column (cluster=... / --cluster COLUMN)")
    if not 0.0 < conf_level < 1.0:
        raise UsageError(f"conf_level must be between 0 and 1; got {conf_level}")
    rhs = (formula.split("~", 1)[1] if "~" in formula else formula).strip()
    inp = cox_inputs(rhs, data, duration=duration, event=event, entry=entry, strata=strata,
                     weights=weights, cluster=cluster, flow=flow)
    X, terms, rows, used_flow, model_spec = inp.X, inp.terms, inp.rows, inp.flow, inp.spec
    time, ev, start, w, st = inp.time, inp.event, inp.entry, inp.weights, inp.strata
    p = X.shape[1]
    est = cox_newton(X, time, ev, entry=start, strata=st, weights=w, ties=ties, tol=tol,
                     max_iter=max_iter,
                     check=lambda null, Xd, wd: check_null_information(null.info, Xd, wd, terms, st))
    rs, s0, final = est.risk_sets, est.null, est.final
    col_sums = s0.state.rx_total * math.exp(s0.state.shift)  # w'X, from the pass at beta = 0
    if not est.converged or not np.all(np.isfinite(est.params)):
        check_monotone(est.params, None, s0.info, rs.w_death.sum(), terms)
        raise ConvergenceError(
            f"the Cox fit did not converge in {est.iterations} iterations (last step "
            f"{est.max_abs_step:.3g}); a covariate may perfectly predict the event order "
            "(monotone likelihood): check for a level in which every firm, or none, exits"
        )
    bread = np.linalg.inv(est.info)
    bread = (bread + bread.T) / 2.0
    check_monotone(est.params, bread, s0.info, rs.w_death.sum(), terms)
    V = bread
    cl = data[cluster].to_numpy()[rows] if cluster else None
    n_clusters = None
    if vcov != "classical":
        L = cox_score_residuals(rs, X, est.params) * rs.weights[:, None]
        if vcov == "cluster":
            codes, n_clusters = cluster_codes(cl)  # type: ignore[arg-type]
            L = np.column_stack([np.bincount(codes, weights=L[:, j], minlength=n_clusters) for j in range(p)])
        V = bread @ (L.T @ L) @ bread
    ll0 = s0.loglik
    score = float(s0.grad @ np.linalg.solve(s0.info, s0.grad))
    wald = float(est.params @ np.linalg.solve(V, est.params))
    baseline = _baseline(rs, final.state)
    if concordance:
        from smesurvival.inference.cox_tests import concordance as harrell_c

        cc = harrell_c(time, ev, X @ est.params, st, w, time_ids=rs.k_exit)
        conc: dict[str, float] | None = {
            "c_index": cc.c_index, "concordant": cc.concordant, "discordant": cc.discordant,
            "tied_x": cc.tied_x, "tied_y": cc.tied_y,
        }
    else:
        conc = None
    extra = cox_extra(ties=ties, weights=weights, strata=strata, entry=entry, duration=duration,
                      event=event, n_strata=int(np.unique(st).size) if st is not None else 1,
                      score=score, wald=wald, p=p, concordance=conc,
                      means=dict(zip(terms, map(float, col_sums / rs.weights.sum()), strict=True)))
    return FitResult(
        model="cox", formula=rhs.strip(), terms=terms, params=est.params, vcov=V,
        vcov_type=vcov, nobs=int(rs.n), n_events=float((rs.weights * rs.event).sum()),
        loglik=est.loglik, llnull=ll0, converged=est.converged, iterations=est.iterations,
        has_intercept=False, flow=used_flow, conf_level=conf_level,
        weights_kind="frequency" if w is not None else None,
        sum_weights=float(w.sum()) if w is not None else None, n_clusters=n_clusters,
        cluster_var=cluster, diagnostics=Diagnostics(condition_number=float(np.linalg.cond(est.info))),
        design_spec=spec_to_dict(model_spec), extra=extra, baseline=baseline, _spec=model_spec,
    )


def cox_extra(*, ties: str, weights: str | None, strata: str | None, entry: str | None,
              duration: str, event: str, n_strata: int, score: float, wald: float, p: int,
              concordance: dict[str, float] | None, means: dict[str, float]) -> dict[str, Any]:
    """The Cox fit's ``extra``: options, score and Wald tests (chi-square, p df), concordance
    and the covariate means (one place for every Cox engine)."""
    return {
        "ties": ties, "weights": weights, "n_strata": n_strata, "strata": strata, "entry": entry,
        "duration": duration, "event": event,
        "score_test": {"chisq": score, "df": p, "p_value": float(stats.chi2.sf(score, p))},
        "wald_test": {"chisq": wald, "df": p, "p_value": float(stats.chi2.sf(wald, p))},
        "concordance": concordance, "means": means,
    }


@dataclass(frozen=True)
class CoxInputs:
    """A Cox model's checked inputs on the rows used: design, times, events, entry, weights."""

    X: np.ndarray  # row-major, no intercept
    terms: tuple[str, ...]
    rows: np.ndarray
    flow: SampleFlow
    spec: Any  # formulaic ModelSpec (prediction on new data)
    time: np.ndarray
    event: np.ndarray  # 0/1
    entry: np.ndarray | None
    weights: np.ndarray | None
    strata: np.ndarray | None


def cox_inputs(rhs: str, data: pd.DataFrame, *, duration: str, event: str,
               entry: str | None = None, strata: str | None = None, weights: str | None = None,
               cluster: str | None = None, flow: SampleFlow | None = None) -> CoxInputs:
    """Check the columns, build the design on the complete rows, and read and check the
    durations, event codes, entry times and weights (one place for every Cox fitter)."""
    extra_cols = tuple(c for c in (duration, event, entry, strata, weights, cluster) if c)
    for c in extra_cols:
        if c not in data.columns:
            raise UsageError(f"column '{c}' is not in the data; columns are: {', '.join(map(str, data.columns))}")
    X, terms, rows, used_flow, model_spec = _cox_design(rhs, data, flow, extra_cols)
    if not terms:
        raise UsageError("the Cox model needs at least one covariate")
    time = numeric_column(data, duration, "duration", rows)
    ev = event_indicator(numeric_column(data, event, "event", rows), event, rows)
    start = numeric_column(data, entry, "entry", rows) if entry else None
    check_durations(time, duration, rows, start, entry)
    w = numeric_column(data, weights, "weights", rows) if weights else None
    if w is not None and ((w < 0).any() or not np.isfinite(w).all()):
        raise DataValidationError(f"weights column '{weights}' has negative or infinite values")
    st = data[strata].to_numpy()[rows] if strata else None
    if ev.sum() == 0:
        raise DataValidationError(f"column '{event}': every row is censored (no events), so a Cox model cannot be fitted")
    return CoxInputs(X, terms, rows, used_flow, model_spec, time, ev, start, w, st)


@dataclass(frozen=True)
class CoxNewton:
    """The kernel-level Cox fit: what R's ``coxph.fit`` computes, on arrays."""

    params: np.ndarray
    info: np.ndarray  # observed information at the last evaluated beta
    loglik: float
    null: CoxSums  # at beta = 0: null log-likelihood and the score test
    final: CoxSums  # at the last evaluated beta (within the last, tiny, step of ``params``)
    risk_sets: RiskSets
    converged: bool
    iterations: int  # Newton steps taken
    evaluations: int  # kernel evaluations (each reads X three times)
    max_abs_step: float


def cox_newton(
    X: np.ndarray,
    time: np.ndarray,
    event: np.ndarray,
    *,
    entry: np.ndarray | None = None,
    strata: np.ndarray | None = None,
    weights: np.ndarray | None = None,
    ties: Ties = "efron",
    tol: float = 1e-12,
    max_iter: int = 100,
    check: Callable[[CoxSums, np.ndarray, np.ndarray], None] | None = None,
) -> CoxNewton:
    """Maximise the partial likelihood by Newton's method from beta = 0 (risk sets + Newton).

    Steps are halved while the log-likelihood falls. Converged when the next Newton step,
    computed at an evaluated beta, is at most ``tol * (1 + max|beta|)``; or when it is
    already so small that, at the contraction rate just observed (a conservative, linear
    bound on Newton's quadratic convergence), the step after it would be: then the step is
    applied and only the risk-set sums are recomputed there (log-likelihood, score, baseline
    exact), not the Gram matrix: the information is that of the previous point, a relative
    1e-10 or less away. X is converted to row-major order once (the
    kernel's fast layout; no copy when it already is). ``check(null, Xd, w_death)`` runs on the
    evaluation at beta = 0 (before any step), e.g. :func:`check_null_information`.
    """
    with one_blas_thread():  # the kernel splits rows over two threads itself
        return _newton(np.ascontiguousarray(X, dtype=float), time, event, entry, strata, weights,
                       ties, tol, max_iter, check)


def _newton(X: np.ndarray, time: np.ndarray, event: np.ndarray, entry: np.ndarray | None,
            strata: np.ndarray | None, weights: np.ndarray | None, ties: Ties, tol: float,
            max_iter: int, check: Callable[[CoxSums, np.ndarray, np.ndarray], None] | None) -> CoxNewton:
    rs = build_risk_sets(time, event, entry=entry, strata=strata, weights=weights, ties=ties)
    Xd = X[rs.death_rows]
    xw = Xd.T @ rs.w_death
    p = X.shape[1]
    beta = np.zeros(p)
    cur = cox_partial_sums(rs, X, beta, Xd, xw)
    null = cur
    if check is not None:
        check(null, Xd, rs.w_death)
    evaluations, steps, converged = 1, 0, False
    loglik, step_max, prev_full = cur.loglik, np.inf, np.inf
    while steps < max_iter:
        step = _solve(cur.info, cur.grad)
        size = float(np.max(np.abs(step))) if p else 0.0
        limit = tol * (1.0 + float(np.max(np.abs(beta), initial=0.0)))
        if size <= limit:
            converged, step_max = True, size
            break
        if np.isfinite(prev_full) and size <= 0.5 * prev_full and size * (size / prev_full) <= limit:
            beta = beta + step
            st = cox_state(rs, X, beta, Xd=Xd, shift_hint=cur.state.eta_max)  # no Gram: exact loglik, baseline, score
            cur = CoxSums(cox_gradient(rs, st, Xd, xw), cur.info, st.loglik, st)
            converged, step_max, steps, loglik = True, size, steps + 1, st.loglik
            break
        t = 1.0
        for _ in range(40):
            cand = beta + t * step
            new = cox_partial_sums(rs, X, cand, Xd, xw, shift_hint=cur.state.eta_max)
            evaluations += 1
            if np.isfinite(new.loglik) and new.loglik >= cur.loglik - 1e-12 * (1 + abs(cur.loglik)):
                break
            t *= 0.5
        else:
            break
        steps += 1
        step_max, dll = t * size, abs(new.loglik - cur.loglik)
        beta, cur, loglik = cand, new, new.loglik
        prev_full = size if t == 1.0 else np.inf
        if t == 1.0 and dll == 0.0 and step_max < 1e-8:  # floating-point floor
            converged = True
            break
    return CoxNewton(beta, cur.info, loglik, null, cur, rs, converged, steps, evaluations, step_max)


def _plain_terms(rhs: str, data: pd.DataFrame, variables: tuple[str, ...]) -> tuple[str, ...] | None:
    """The terms when the right-hand side is a plain sum of numeric columns (the
    register-scale case: no transform, factor or interaction), else None."""
    try:
        terms = [t for t in Formula(f"1 + {rhs}") if str(t) != "1"]
    except Exception:  # parse_formula has already reported a bad formula
        return None
    names = tuple(str(t) for t in terms)
    if not names or any(len(t.factors) != 1 for t in terms) or set(names) != set(variables):
        return None
    if any(not (isinstance(data[c].dtype, np.dtype) and data[c].dtype.kind in "fiu") for c in names):
        return None
    return names


def _cox_design(rhs: str, data: pd.DataFrame, flow: SampleFlow | None,
                extra_cols: tuple[str, ...]) -> tuple[np.ndarray, tuple[str, ...], np.ndarray, SampleFlow, object]:
    """(X without intercept, row-major; terms; rows used; sample flow; formulaic spec).

    When the formula is a plain sum of numeric columns -- the register-scale case -- X is
    filled column by column straight from the frame (one n x p array, against formulaic's
    several full-size copies: frame subset, model-matrix frame, array) and the formulaic spec
    (for prediction on new data) is the one formulaic would build: numerical factors, no
    state. Any other formula goes through formulaic.
    """
    formula = f"1 + {rhs}"
    parsed = parse_formula(formula, list(data.columns))
    terms = _plain_terms(rhs, data, parsed.variables)
    if terms is None:
        design = build_design(formula, data, flow, extra_variables=extra_cols)
        keep = [j for j, t in enumerate(design.terms) if t != "Intercept"]
        X = np.ascontiguousarray(design.X[:, keep])
        return X, tuple(design.terms[j] for j in keep), design.rows, design.flow, design.spec
    rows, used_flow = drop_missing(data, parsed.variables + extra_cols,
                                   flow if flow is not None else SampleFlow(len(data)))
    X = fill_rows([data[t].to_numpy(dtype=float) for t in terms], rows, len(data))
    spec = spec_from_dict({"formula": " + ".join(terms), "intercept": True, "transform_state": {},
                           "encoder_state": {t: {"kind": "numerical"} for t in terms}})
    return X, terms, rows, used_flow, spec


def _check_within_strata(X: np.ndarray, terms: tuple[str, ...], strata: np.ndarray | None,
                         w: np.ndarray | None) -> np.ndarray:
    """A covariate constant within every stratum carries no information: name it; then check
    the rank of the within-stratum (centred) Gram matrix, computed without copying X.

    Returns the weighted column sums of X (for the covariate means)."""
    n, p = X.shape
    if strata is None:
        sw = np.array([float(n) if w is None else float(w.sum())])
        sums = ((np.ones(n) if w is None else w) @ X)[None, :]
    else:
        w1 = np.ones(n) if w is None else w
        codes = np.unique(strata, return_inverse=True)[1].ravel()
        g = int(codes.max()) + 1
        sw = np.bincount(codes, weights=w1, minlength=g)
        sums = np.column_stack([np.bincount(codes, weights=X[:, j] * w1, minlength=g) for j in range(p)])
    raw = gram_of(X, w)
    gram = raw - (sums / np.maximum(sw, 1e-300)[:, None]).T @ sums
    scale = np.maximum(np.diag(raw), 1e-300)
    flat = [t for t, v, s in zip(terms, np.diag(gram), scale, strict=True) if v <= 1e-10 * s]
    if flat:
        where = "within every stratum" if strata is not None else "in every row"
        raise DataValidationError(
            f"covariate(s) {', '.join(repr(t) for t in flat)} are constant {where}, so the Cox "
            "model cannot estimate them; drop them (or the strata)"
        )
    check_rank_gram(gram, terms)
    return sums.sum(axis=0)


_INFINITE_SD_EFFECT = 15.0  # a hazard ratio of e^15 per SD of a covariate: no finite estimate


def check_monotone(params: np.ndarray, bread: np.ndarray | None, info0: np.ndarray,
                   deaths: float, terms: tuple[str, ...]) -> None:
    """Monotone likelihood: Newton can stop at a huge coefficient (the likelihood keeps rising
    ever more slowly towards infinity, e.g. no exits in one industry) with a near-singular or
    indefinite information. A term whose variance is not positive, or whose effect per standard
    deviation among the firms at risk (from the information at beta = 0) exceeds e^15, has no
    finite estimate: say which, and point to the bias-reduced fit."""
    var = np.diag(bread) if bread is not None else np.ones(len(terms))
    sd = np.sqrt(np.maximum(np.diag(info0), 0.0) / max(deaths, 1.0))
    bad = [t for t, b, v, s in zip(terms, params, var, sd, strict=True)
           if not (np.isfinite(v) and v > 0) or not abs(b) * s <= _INFINITE_SD_EFFECT]
    if bad:
        raise ConvergenceError(
            f"monotone likelihood: the Cox estimate of {', '.join(repr(t) for t in bad)} is "
            "infinite (a level or range of the covariate in which no firm, or every firm at risk, "
            "exits); use the bias-reduced fit (fit_cox_firth, --firth), merge sparse levels or "
            "drop the term"
        )


def check_null_information(info: np.ndarray, Xd: np.ndarray, w_death: np.ndarray,
                           terms: tuple[str, ...], strata: np.ndarray | None) -> None:
    """Identifiability from the information at beta = 0, the sum over event times of the
    covariates' covariance among the firms at risk: a covariate with none (constant within
    every stratum, at least among the firms at risk) is named; then a rank check, which also
    finds within-stratum collinearity. Costs nothing extra: that matrix is the score test's.

    The scale of a covariate's variance is its mean square over the events (``Xd`` holds the
    event rows, ``w_death`` their weights)."""
    scale = np.einsum("ij,ij,i->j", Xd, Xd, w_death) if Xd.size else np.zeros(len(terms))
    var = np.diag(info)
    flat = [t for t, v, s in zip(terms, var, scale, strict=True) if v <= 1e-10 * s or v <= 0.0]
    if flat:
        where = "within every stratum" if strata is not None else "in every row"
        raise DataValidationError(
            f"covariate(s) {', '.join(repr(t) for t in flat)} are constant {where} (at least "
            "among the firms at risk at the event times), so the Cox model cannot estimate "
            "them; drop them (or the strata)"
        )
    check_rank_gram(info, terms)


def _baseline(rs: RiskSets, st: CoxState) -> dict[str, object]:
    """Baseline cumulative hazard at x = 0 per stratum (Breslow, or Efron-adjusted increments)."""
    return baseline_hazard(rs, st.den, st.shift)


def baseline_hazard(rs: RiskSets, den: np.ndarray, shift: float) -> dict[str, object]:
    """The baseline cumulative hazard from the Efron denominators ``den`` (at ``shift``)."""
    inc = np.bincount(rs.pair_k, weights=rs.pair_wt / den, minlength=rs.n_times + 1) * math.exp(-shift)
    out: dict[str, list[float]] = {}
    for s in np.unique(rs.stratum_of_time[1:]):
        sel = np.flatnonzero(rs.stratum_of_time == s)
        out[str(int(s))] = [rs.times[sel].tolist(), np.cumsum(inc[sel]).tolist()]  # type: ignore[assignment]
    return {"at": "zero covariates", "strata": out}


def baseline_cumhaz(result: FitResult, times: np.ndarray, stratum: int = 0) -> np.ndarray:
    """H0(t) at x = 0 as a right-continuous step function (R's ``basehaz(fit, centered=FALSE)``)."""
    if result.baseline is None:
        raise UsageError("this result has no baseline hazard (not a Cox model)")
    t_k, h_k = (np.asarray(a, dtype=float) for a in result.baseline["strata"][str(stratum)])
    i = np.searchsorted(t_k, np.asarray(times, dtype=float), side="right") - 1
    return np.where(i >= 0, h_k[np.maximum(i, 0)], 0.0)


def predict_survival(result: FitResult, newdata: pd.DataFrame, times: np.ndarray, stratum: int = 0) -> pd.DataFrame:
    """S(t | x) = exp(-H0(t) exp(x'b)) for each row of ``newdata`` (rows) at ``times`` (columns)."""
    X = result.design_matrix(newdata)
    risk = np.exp(X @ result.params)
    H = baseline_cumhaz(result, times, stratum)
    return pd.DataFrame(np.exp(-np.outer(risk, H)), columns=[f"{t:g}" for t in np.asarray(times)])


def risk_sets_for(result: FitResult, data: pd.DataFrame) -> tuple[RiskSets, np.ndarray, np.ndarray, np.ndarray]:
    """Rebuild (risk sets, X, time, event) of a fitted Cox model from its data (same rows)."""
    e = result.extra
    cols = tuple(c for c in (e["duration"], e["event"], e.get("entry"), e.get("strata"), e.get("weights")) if c)
    design = build_design(f"1 + {result.formula}", data, None, extra_variables=cols)
    X = design.X[:, [design.terms.index(t) for t in result.terms]]
    rows = design.rows
    time = numeric_column(data, e["duration"], "duration", rows)
    ev = numeric_column(data, e["event"], "event", rows)
    start = numeric_column(data, e["entry"], "entry", rows) if e.get("entry") else None
    w = numeric_column(data, e["weights"], "weights", rows) if e.get("weights") else None
    st = data[e["strata"]].to_numpy()[rows] if e.get("strata") else None
    rs = build_risk_sets(time, ev, entry=start, strata=st, weights=w, ties=e["ties"])
    return rs, X, time, ev
