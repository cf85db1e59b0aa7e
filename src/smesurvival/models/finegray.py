"""Fine–Gray proportional subdistribution hazards, estimated as ``cmprsk::crr`` does.

Model: the subdistribution hazard of cause ``k`` is ``λ₁(t | x) = λ₁₀(t) exp(x'b)``, so the
cumulative incidence is ``F₁(t | x) = 1 − exp(−Λ₁₀(t) exp(x'b))`` (Fine & Gray 1999).

Estimation (inverse-probability-of-censoring weights): ``G`` is the Kaplan–Meier estimate of the
censoring distribution (failures at a censoring time count as at risk), always read as a left
limit ``G(t−)``. At a cause-``k`` event time ``t``, subjects with ``T_j ≥ t`` are at risk
with weight 1 and subjects who failed from a competing cause before ``t`` stay at risk with
weight ``G(t−)/G(T_j−)``. Ties are handled as Breslow's. Newton–Raphson maximises the log
pseudo-likelihood ``Σ_k [Σ_{i∈D_k} x_i'b − d_k log S0_k]``. The robust variance is the
sandwich ``I⁻¹ (Σ_i (η_i + ψ_i)^{⊗2}) I⁻¹``: ``η_i`` the weighted score residuals and ``ψ_i``
the term from estimating ``G`` (Fine & Gray 1999, section 4), discretised as ``crr`` does
(a censoring at ``u`` moves the weight of a competing failure at ``T_j`` when
``T_j < u ≤ t``).

Everything is array arithmetic over rows binned by the distinct event (or censoring) times:
one ``bincount`` and one cumulative sum per quantity, memory O(n·p).

Example
-------
>>> from smesurvival.models.finegray import fit_finegray, predict_cif
>>> fg = fit_finegray("age + mspike", d, duration="etime", event="status", cause=1)
>>> predict_cif(fg, d.head(2), times=[60, 120])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import pandas as pd

from smesurvival.data.flow import SampleFlow
from smesurvival.errors import (
    ConvergenceError,
    DataValidationError,
    EstimationError,
    FormulaError,
    UsageError,
)
from smesurvival.inference.vcov import check_choice
from smesurvival.models.checks import check_rank
from smesurvival.models.design import build_design, spec_to_dict
from smesurvival.models.result import Diagnostics, FitResult

FineGrayVcov = Literal["robust", "classical"]
FINEGRAY_VCOV: tuple[str, ...] = get_args(FineGrayVcov)
_BASELINE_TERM = "(baseline hazard)"


@dataclass(frozen=True)
class RiskSets:
    """Precomputed structure of the weighted risk sets (depends on the data, not on ``b``)."""

    time: np.ndarray  # durations per row (n,)
    times: np.ndarray  # distinct event times of the cause, t_k (K,)
    d: np.ndarray  # events of the cause at t_k (K,)
    g_event: np.ndarray  # G(t_k−) (K,)
    g_row: np.ndarray  # G(T_i−) per row (n,)
    bin_row: np.ndarray  # per row: number of t_k <= T_i (n,)
    event: np.ndarray  # row fails from the cause (n,) bool
    competing: np.ndarray  # row fails from another cause (n,) bool
    censored: np.ndarray  # row is censored (n,) bool
    cens_times: np.ndarray  # distinct censoring times u_m (M,)
    cens_n: np.ndarray  # censorings at u_m (M,)
    cens_risk: np.ndarray  # rows with T >= u_m (M,)


def censoring_km(time: np.ndarray, censored: np.ndarray) -> tuple[np.ndarray, ...]:
    """Censoring Kaplan–Meier: (u_m, c_m, at-risk R_m, G with G[0] = 1 and G[m+1] = G(u_m))."""
    u, c = np.unique(time[censored], return_counts=True)
    at_risk = time.size - np.searchsorted(np.sort(time), u, side="left")
    g = np.concatenate([[1.0], np.cumprod(1.0 - c / at_risk)])
    return u, c, at_risk, g


def risk_sets(time: np.ndarray, event: np.ndarray, competing: np.ndarray) -> RiskSets:
    """Build the risk-set structure from durations and the cause/competing indicators."""
    censored = ~event & ~competing
    u, c, at_risk, g = censoring_km(time, censored)
    tk, dk = np.unique(time[event], return_counts=True)
    return RiskSets(
        time=time, times=tk, d=dk.astype(float), g_event=g[np.searchsorted(u, tk, side="left")],
        g_row=g[np.searchsorted(u, time, side="left")],
        bin_row=np.searchsorted(tk, time, side="right"), event=event, competing=competing,
        censored=censored, cens_times=u, cens_n=c.astype(float), cens_risk=at_risk.astype(float),
    )


def _bin(idx: np.ndarray, v: np.ndarray, size: int) -> np.ndarray:
    """Sum rows of ``v`` (n,) or (n, p) into ``size`` bins given by ``idx``."""
    if v.ndim == 1:
        return np.bincount(idx, weights=v, minlength=size)
    cols = [np.bincount(idx, weights=v[:, j], minlength=size) for j in range(v.shape[1])]
    return np.column_stack(cols)


def risk_total(rs: RiskSets, v: np.ndarray) -> np.ndarray:
    """Weighted risk-set sum of a per-row quantity at each event time: Σ_j w_j(t_k) v_j."""
    k = rs.times.size
    binned = _bin(rs.bin_row, v, k + 1)
    ahead = np.cumsum(binned[::-1], axis=0)[::-1][1:]  # rows with T_j >= t_k
    v2 = v[rs.competing] / (rs.g_row[rs.competing] if v.ndim == 1 else rs.g_row[rs.competing, None])
    before = np.cumsum(_bin(rs.bin_row[rs.competing], v2, k + 1), axis=0)[:k]  # T_j < t_k
    g = rs.g_event if v.ndim == 1 else rs.g_event[:, None]
    return ahead + g * before


def row_exposure(rs: RiskSets, a: np.ndarray) -> np.ndarray:
    """Per row, Σ_k w_j(t_k) a_k for increments ``a`` (K,) or (K, p) at the event times."""
    zero = np.zeros((1, *a.shape[1:]))
    cum = np.concatenate([zero, np.cumsum(a, axis=0)])
    g = rs.g_event if a.ndim == 1 else rs.g_event[:, None]
    cum_g = np.concatenate([zero, np.cumsum(g * a, axis=0)])
    out = cum[rs.bin_row]
    c = rs.competing
    tail = (cum_g[-1] - cum_g[rs.bin_row[c]])
    out[c] += tail / (rs.g_row[c] if a.ndim == 1 else rs.g_row[c, None])
    return out


@dataclass(frozen=True)
class _State:
    """Log pseudo-likelihood, score, information and the risk-set pieces at ``b``."""

    loglik: float
    score: np.ndarray
    info: np.ndarray
    risk: np.ndarray  # exp(x'b)
    s0: np.ndarray
    zbar: np.ndarray


def _evaluate(rs: RiskSets, X: np.ndarray, sx: np.ndarray, b: np.ndarray) -> _State:
    """One kernel pass: loglik, score and information of the pseudo-likelihood at ``b``."""
    eta = X @ b
    e = np.exp(eta)
    s0 = risk_total(rs, e)
    zbar = risk_total(rs, X * e[:, None]) / s0[:, None]
    dlam = rs.d / s0
    loglik = float(eta[rs.event].sum() - (rs.d * np.log(s0)).sum())
    score = sx.sum(axis=0) - (rs.d[:, None] * zbar).sum(axis=0)
    info = (X * (e * row_exposure(rs, dlam))[:, None]).T @ X - (zbar * rs.d[:, None]).T @ zbar
    return _State(loglik, score, (info + info.T) / 2.0, e, s0, zbar)


def _newton(
    rs: RiskSets, X: np.ndarray, tol: float, max_iter: int
) -> tuple[np.ndarray, _State, float, int, bool]:
    """Newton–Raphson with step halving; converged when the Newton decrement is below ``tol``."""
    sx = _bin(rs.bin_row[rs.event] - 1, X[rs.event], rs.times.size)
    b = np.zeros(X.shape[1])
    st = _evaluate(rs, X, sx, b)
    ll0 = st.loglik
    for it in range(1, max_iter + 1):
        try:
            step = np.linalg.solve(st.info, st.score)
        except np.linalg.LinAlgError:
            raise EstimationError(
                "the Fine–Gray information matrix is singular; check for constant or collinear "
                "terms, or a term with no variation among the event times"
            ) from None
        decrement = float(st.score @ step)
        new = _evaluate(rs, X, sx, b + step)
        halvings = 0
        floor = st.loglik - 1e-12 * abs(st.loglik)
        while not (np.isfinite(new.loglik) and new.loglik >= floor) and halvings < 30:
            step, halvings = step / 2.0, halvings + 1
            new = _evaluate(rs, X, sx, b + step)
        b, st = b + step, new
        if decrement < tol:
            return b, st, ll0, it, True
    return b, st, ll0, max_iter, False


def score_residuals(rs: RiskSets, X: np.ndarray, st: _State) -> np.ndarray:
    """Per-row influence on the score, η_i + ψ_i (crr's robust-variance contributions)."""
    dlam = rs.d / st.s0
    e = st.risk
    eta = np.zeros_like(X)
    eta[rs.event] = X[rs.event] - st.zbar[rs.bin_row[rs.event] - 1]
    expo = X * row_exposure(rs, dlam)[:, None] - row_exposure(rs, st.zbar * dlam[:, None])
    eta -= e[:, None] * expo
    u = rs.cens_times
    if u.size == 0:
        return eta
    # Q(u) = Σ_{j competing, T_j < u} Σ_{k: t_k >= u} (x_j − zbar_k) G(t_k−)/G(T_j−) e_j dΛ_k
    gd = rs.g_event * dlam
    tail0 = np.concatenate([np.cumsum(gd[::-1])[::-1], [0.0]])
    zero = np.zeros((1, X.shape[1]))
    tail1 = np.concatenate([np.cumsum((st.zbar * gd[:, None])[::-1], axis=0)[::-1], zero])
    kk = np.searchsorted(rs.times, u, side="left")
    c = rs.competing
    w = e[c] / rs.g_row[c]
    m = np.searchsorted(u, rs.time[c], side="right")
    p0 = np.cumsum(np.bincount(m, weights=w, minlength=u.size + 1))[: u.size]
    p1 = np.cumsum(_bin(m, X[c] * w[:, None], u.size + 1), axis=0)[: u.size]
    q = p1 * tail0[kk][:, None] - p0[:, None] * tail1[kk]
    # ψ_i = Σ_m Q_m / R_m (dN^c_i(u_m) − 1[T_i >= u_m] c_m / R_m)
    comp = np.cumsum(q * (rs.cens_n / rs.cens_risk**2)[:, None], axis=0)
    psi = -np.concatenate([zero, comp])[np.searchsorted(u, rs.time, side="right")]
    mi = np.searchsorted(u, rs.time[rs.censored])
    psi[rs.censored] += q[mi] / rs.cens_risk[mi][:, None]
    return eta + psi


def fit_finegray(
    formula: str,
    data: pd.DataFrame,
    *,
    duration: str,
    event: str,
    cause: float,
    censor_code: float = 0,
    vcov: FineGrayVcov = "robust",
    conf_level: float = 0.95,
    tol: float = 1e-10,
    max_iter: int = 100,
    flow: SampleFlow | None = None,
) -> FitResult:
    """Fit a Fine–Gray subdistribution hazards model for ``cause`` (as ``cmprsk::crr``).

    Parameters
    ----------
    formula : right-hand side only, e.g. ``"age + C(sex) + mspike"`` (no intercept is fitted).
    duration : column of follow-up times (> 0).
    event : column of numeric event codes: ``censor_code`` for censored, any other code a cause.
    cause : the event code of interest; other non-censoring codes are competing events.
    vcov : ``robust`` (crr's ``$var``, with the term for estimating the censoring distribution)
        or ``classical`` (inverse information, crr's ``solve($inf)``).
    tol : Newton stops when the decrement ``score' I⁻¹ score`` falls below ``tol``.
    """
    check_choice(vcov, FINEGRAY_VCOV, "vcov")
    for name, val in (("cause", cause), ("censor_code", censor_code)):
        if isinstance(val, bool) or not isinstance(val, int | float | np.number):
            raise UsageError(f"{name} must be a numeric event code; got {val!r}")
    if not 0.0 < conf_level < 1.0:
        raise UsageError(f"conf_level must be between 0 and 1; got {conf_level}")
    for role, col in (("duration", duration), ("event", event)):
        if col not in data.columns:
            raise UsageError(f"{role} column '{col}' is not in the data")
    if cause == censor_code:
        raise UsageError(f"cause ({cause}) must differ from censor_code ({censor_code})")
    design = build_design(formula, data, flow, extra_variables=(duration, event))
    if design.formula.outcome is not None:
        raise FormulaError(
            f"formula '{formula}': a Fine–Gray formula is right-hand side only (e.g. 'age + "
            "C(sex)'); the outcome is given by duration= and event="
        )
    time, code = _outcome(data, duration, event, design.rows)
    codes = np.unique(code)
    if not np.isin(cause, codes):
        n_all = int((pd.to_numeric(data[event], errors="coerce") == cause).sum())
        if n_all:
            raise EstimationError(
                f"no events of cause {cause} are left: all {n_all} row(s) with {event} == {cause} "
                "were dropped for missing values"
            )
        raise UsageError(
            f"cause {cause} is not among the codes of event column '{event}'; codes found: "
            f"{', '.join(_fmt(c) for c in codes)} (censor_code {_fmt(censor_code)})"
        )
    keep = [j for j, t in enumerate(design.terms) if t != "Intercept"]
    terms = tuple(design.terms[j] for j in keep)
    X = design.X[:, keep]
    if not terms:
        raise FormulaError(f"formula '{formula}' has no covariates; Fine–Gray needs at least one")
    check_rank(np.column_stack([np.ones(len(time)), X]), (_BASELINE_TERM, *terms))
    is_event = code == cause
    competing = ~is_event & (code != censor_code)
    rs = risk_sets(time, is_event, competing)
    b, st, ll0, iterations, converged = _newton(rs, X, tol, max_iter)
    if not converged or not np.all(np.isfinite(b)):
        raise ConvergenceError(
            f"the Fine–Gray fit did not converge in {iterations} iterations; a covariate may "
            "predict the events perfectly (monotone likelihood), or raise max_iter"
        )
    bread = np.linalg.inv(st.info)
    bread = (bread + bread.T) / 2.0
    resid = score_residuals(rs, X, st)
    robust = bread @ (resid.T @ resid) @ bread
    V = robust if vcov == "robust" else bread
    dlam = rs.d / st.s0
    n_cens = int(rs.censored.sum())
    extra = {
        "cause": _py(cause), "censor_code": _py(censor_code),
        "event_codes": [_py(c) for c in codes],
        "n_events_cause": int(is_event.sum()), "n_competing": int(competing.sum()),
        "n_censored": n_cens, "loglik": st.loglik, "loglik_null": ll0,
        "loglik_kind": "log pseudo-likelihood (as cmprsk::crr)", "ties": "breslow",
        "se_robust": dict(zip(terms, map(float, np.sqrt(np.diag(robust))), strict=True)),
        "se_classical": dict(zip(terms, map(float, np.sqrt(np.diag(bread))), strict=True)),
        "vcov_note": (
            "robust: sandwich of Fine & Gray (1999) including the term for estimating the "
            "censoring distribution (cmprsk::crr $var); classical: inverse information "
            "(solve(crr $inf)), which ignores that the weights are estimated"
        ),
        "intercept_dropped": "Intercept" in design.terms,
    }
    baseline = {
        "kind": "cumulative subdistribution hazard at x = 0 (Breslow); CIF = 1 - exp(-H0 exp(x'b))",
        "times": rs.times.tolist(), "values": np.cumsum(dlam).tolist(),
    }
    return FitResult(
        model="finegray", formula=formula, terms=terms, params=b, vcov=V, vcov_type=vcov,
        nobs=len(time), n_events=float(is_event.sum()), loglik=st.loglik, llnull=ll0,
        converged=converged, iterations=iterations, has_intercept=False, flow=design.flow,
        conf_level=conf_level, information="observed",
        diagnostics=Diagnostics(condition_number=float(np.linalg.cond(st.info))),
        design_spec=spec_to_dict(design.spec), extra=extra, baseline=baseline,
        _spec=design.spec,
    )


def predict_cif(
    result: FitResult, newdata: pd.DataFrame, times: Sequence[float]
) -> pd.DataFrame:
    """Cumulative incidence 1 − exp(−Λ₀(t) e^{x'b}) of the cause: rows of newdata × ``times``."""
    if result.model != "finegray" or not result.baseline:
        raise UsageError("predict_cif needs a Fine–Gray result (from fit_finegray)")
    t = np.asarray(times, dtype=float).ravel()
    if t.size == 0 or not np.all(np.isfinite(t)):
        raise UsageError("times must be a non-empty list of finite numbers")
    base_t = np.asarray(result.baseline["times"], dtype=float)
    base_h = np.concatenate([[0.0], np.asarray(result.baseline["values"], dtype=float)])
    h0 = base_h[np.searchsorted(base_t, t, side="right")]  # right-continuous step function
    risk = np.exp(result.design_matrix(newdata) @ result.params)
    cif = -np.expm1(-np.outer(risk, h0))
    return pd.DataFrame(cif, index=newdata.index, columns=pd.Index(t, name="time"))


def _outcome(
    data: pd.DataFrame, duration: str, event: str, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Durations (> 0, finite) and numeric event codes of the used rows, with named errors."""
    sub = data.iloc[rows]
    if not pd.api.types.is_numeric_dtype(sub[duration]):
        raise DataValidationError(f"duration column '{duration}' must be numeric")
    if not pd.api.types.is_numeric_dtype(sub[event]):
        found = sorted({str(v) for v in sub[event]})
        shown = ", ".join(repr(v) for v in found[:6]) + (" ..." if len(found) > 6 else "")
        raise DataValidationError(
            f"event column '{event}' must hold numeric codes (e.g. 0 censored, 1 and 2 the "
            f"causes); found {shown}. Recode it, e.g. with a mapping of labels to numbers"
        )
    time = sub[duration].to_numpy(dtype=float)
    code = sub[event].to_numpy(dtype=float)
    checks = (
        (duration, ~np.isfinite(time) | (time <= 0), "positive and finite (durations > 0)"),
        (event, ~np.isfinite(code), "finite"),
    )
    for name, bad_rows, rule in checks:
        if bad_rows.any():
            labels = ", ".join(str(v) for v in sub.index[bad_rows][:5])
            more = " ..." if bad_rows.sum() > 5 else ""
            raise DataValidationError(
                f"column '{name}' must be {rule}; {int(bad_rows.sum())} row(s) break this "
                f"(row labels {labels}{more})"
            )
    return time, code


def _fmt(v: float) -> str:
    """An event code as text: integral values without a decimal point."""
    return str(int(v)) if float(v).is_integer() else str(v)


def _py(v: float) -> float | int:
    """A JSON-safe event code."""
    f = float(v)
    return int(f) if f.is_integer() else f
