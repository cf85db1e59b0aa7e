"""Kaplan–Meier product-limit estimator with Greenwood variance and CIs as R's ``survfit``.

Also: Nelson–Aalen cumulative hazard, median (with R's midpoint rule and CI), restricted mean
survival time (as R's ``print(fit, rmean = tau)``) and ``summary(times)`` as R's
``summary(fit, times = )``. Input checks shared with ``logrank`` and ``cuminc`` live here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np
from scipy import stats

from smesurvival.errors import DataValidationError, UsageError

ConfType = Literal["log", "log-log", "plain"]
CONF_TYPES: tuple[str, ...] = get_args(ConfType)
_TOL = float(np.sqrt(np.finfo(float).eps))  # R's quantile.survfit tolerance


# ----------------------------------------------------------------------------- input checks
def _rows(mask: np.ndarray, limit: int = 5) -> str:
    """'rows 3, 8, 9 (0-based)' naming the first few offending rows."""
    idx = np.flatnonzero(mask)
    shown = ", ".join(str(i) for i in idx[:limit])
    more = f" and {idx.size - limit} more" if idx.size > limit else ""
    return f"{idx.size} row{'s' if idx.size != 1 else ''} (0-based row{'s' if idx.size != 1 else ''} {shown}{more})"


def as_float_array(x: Any, name: str) -> np.ndarray:
    """A 1-d float array, or UsageError/DataValidationError naming ``name``."""
    try:
        a = np.asarray(x, dtype=float)
    except (TypeError, ValueError) as exc:
        raise DataValidationError(f"{name} must be numeric: {exc}") from exc
    if a.ndim != 1:
        raise UsageError(f"{name} must be one-dimensional, got shape {a.shape}")
    bad = ~np.isfinite(a)
    if bad.any():
        raise DataValidationError(
            f"{name} has missing or infinite values in {_rows(bad)}; drop or impute them first"
        )
    return a


def check_lengths(**arrays: np.ndarray) -> int:
    """The common length of the arrays, or UsageError listing each length."""
    lens = {k: len(v) for k, v in arrays.items()}
    if len(set(lens.values())) > 1:
        detail = ", ".join(f"{k} has {n}" for k, n in lens.items())
        raise UsageError(f"inputs must have the same length: {detail}")
    n = next(iter(lens.values()))
    if n == 0:
        raise DataValidationError("no rows: the inputs are empty")
    return n


def check_time(time: Any, name: str = "time") -> np.ndarray:
    """Finite, non-negative times."""
    t = as_float_array(time, name)
    neg = t < 0
    if neg.any():
        raise DataValidationError(f"{name} must be >= 0 but is negative in {_rows(neg)}")
    return t


def check_weights(weights: Any, n: int) -> np.ndarray:
    """Finite non-negative case weights (ones if None)."""
    if weights is None:
        return np.ones(n)
    w = as_float_array(weights, "weights")
    check_lengths(rows=np.empty(n), weights=w)
    neg = w < 0
    if neg.any():
        raise DataValidationError(f"weights must be >= 0 but are negative in {_rows(neg)}")
    return w


def check_survival_data(
    time: Any, event: Any, weights: Any = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validated (time, event, weights): equal lengths, no NaN, time >= 0, event in {0, 1}."""
    t = check_time(time)
    d = as_float_array(event, "event")
    n = check_lengths(time=t, event=d)
    bad = (d != 0) & (d != 1)
    if bad.any():
        vals = ", ".join(f"{v:g}" for v in np.unique(d[bad])[:5])
        raise DataValidationError(
            f"event must be 0 (censored) or 1 (event) but has value(s) {vals} in {_rows(bad)}"
        )
    return t, d, check_weights(weights, n)


def z_value(conf_level: float) -> float:
    """Two-sided normal quantile for ``conf_level`` (UsageError outside (0, 1))."""
    if not 0.0 < conf_level < 1.0:
        raise UsageError(f"conf_level must be strictly between 0 and 1, got {conf_level!r}")
    return float(stats.norm.ppf(0.5 + conf_level / 2.0))


def _check_conf_type(conf_type: str) -> None:
    if conf_type not in CONF_TYPES:
        raise UsageError(f"conf_type must be one of {', '.join(CONF_TYPES)}; got {conf_type!r}")


def confint_survival(
    surv: np.ndarray, sigma: np.ndarray, z: float, conf_type: str
) -> tuple[np.ndarray, np.ndarray]:
    """Pointwise CI of S from sigma = SE(log S), transformed as R's survfit ``conf.type``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        if conf_type == "plain":
            half = z * sigma * surv
            return np.maximum(surv - half, 0.0), np.minimum(surv + half, 1.0)
        if conf_type == "log":
            ok = surv > 0
            lo = np.where(ok, surv * np.exp(-z * sigma), np.nan)
            hi = np.where(ok, np.minimum(1.0, surv * np.exp(z * sigma)), np.nan)
            return lo, hi
        ok = (surv > 0) & (surv < 1)  # log-log: undefined at 0 and 1, as R
        ls = np.log(np.where(ok, surv, 0.5))
        shift = z * sigma / ls
        lo = np.where(ok, np.exp(-np.exp(np.log(-ls) - shift)), np.nan)
        hi = np.where(ok, np.exp(-np.exp(np.log(-ls) + shift)), np.nan)
        return lo, hi


# ----------------------------------------------------------------------------- results
@dataclass(frozen=True)
class MedianSurvival:
    """Median survival time and its CI (times where the CI curves cross 0.5; NaN = not reached)."""

    median: float
    conf_low: float
    conf_high: float


@dataclass(frozen=True)
class RestrictedMean:
    """Restricted mean survival time on [0, tau] with its SE as R's print(fit, rmean = tau)."""

    tau: float
    estimate: float
    std_err: float
    conf_low: float
    conf_high: float


@dataclass(frozen=True)
class KMSummary:
    """The curve at requested times, as R's ``summary(fit, times = )`` (extend = TRUE)."""

    time: np.ndarray
    survival: np.ndarray
    std_err: np.ndarray
    conf_low: np.ndarray
    conf_high: np.ndarray
    at_risk: np.ndarray  # number with time >= t (R's n.risk at t)
    n_events: np.ndarray  # events in (previous requested time, t]
    n_censored: np.ndarray  # censorings in (previous requested time, t]
    cumhaz: np.ndarray
    std_err_cumhaz: np.ndarray


@dataclass(frozen=True)
class KaplanMeier:
    """Survival steps at each distinct event or censoring time."""

    time: np.ndarray
    survival: np.ndarray
    std_err: np.ndarray  # Greenwood SE of S(t); NaN once S(t) = 0
    conf_low: np.ndarray
    conf_high: np.ndarray
    at_risk: np.ndarray
    n_events: np.ndarray
    n: float
    total_events: float
    n_censored: np.ndarray
    cumhaz: np.ndarray  # Nelson–Aalen sum d/n
    std_err_cumhaz: np.ndarray  # sqrt(sum d/n^2)
    conf_level: float = 0.95
    conf_type: str = "log"

    @property
    def _sigma(self) -> np.ndarray:
        """SE of log S (Greenwood), +inf once S = 0."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.survival > 0, self.std_err / self.survival, np.inf)

    def at(self, t: float | np.ndarray) -> Any:
        """S(t): the last step at or before t (1 before the first step); vectorised over t."""
        i = np.searchsorted(self.time, np.asarray(t, dtype=float), side="right") - 1
        out = np.where(i < 0, 1.0, self.survival[np.maximum(i, 0)])
        return float(out) if out.ndim == 0 else out

    def quantile(self, p: float) -> MedianSurvival:
        """Time where S first reaches 1 - p (R's quantile.survfit: midpoint rule on flats)."""
        if not 0.0 < p < 1.0:
            raise UsageError(f"p must be strictly between 0 and 1, got {p!r}")
        xmax = float(self.time[-1])
        args = (self.time, 1.0 - p, xmax)
        return MedianSurvival(_cross(*args, self.survival), _cross(*args, self.conf_low),
                              _cross(*args, self.conf_high))

    def median(self) -> MedianSurvival:
        """Median survival with CI: where S, the lower and the upper CI curves cross 0.5."""
        return self.quantile(0.5)

    def rmst(self, tau: float) -> RestrictedMean:
        """Area under S on [0, tau] (the last step extended if tau is beyond it), with its SE."""
        if not np.isfinite(tau) or tau <= 0:
            raise UsageError(f"tau must be a positive number, got {tau!r}")
        keep = (self.time < tau) & (self.n_events > 0)
        te, se, ne, re = self.time[keep], self.survival[keep], self.n_events[keep], self.at_risk[keep]
        edges = np.concatenate(([0.0], te, [tau]))
        heights = np.concatenate(([1.0], se))
        rect = np.diff(edges) * heights
        est = float(rect.sum())
        area_after = np.cumsum(rect[::-1])[::-1][1:]  # integral of S from each event time to tau
        with np.errstate(divide="ignore", invalid="ignore"):
            term = np.where(re > ne, ne / (re * (re - ne)), 0.0)
        sd = float(np.sqrt(np.sum(area_after**2 * term)))
        z = z_value(self.conf_level)
        return RestrictedMean(float(tau), est, sd, est - z * sd, est + z * sd)

    def summary(self, times: Any) -> KMSummary:
        """S(t), SE, CI, n at risk, events and censorings since the previous time, at ``times``."""
        tq = as_float_array(np.atleast_1d(times), "times")
        if np.any(np.diff(tq) < 0):
            raise UsageError("times must be sorted in increasing order")
        i = np.searchsorted(self.time, tq, side="right") - 1
        before = i < 0
        j = np.maximum(i, 0)

        def pick(a: np.ndarray, first: float) -> np.ndarray:
            return np.where(before, first, a[j])

        surv = pick(self.survival, 1.0)
        sigma = pick(self._sigma, 0.0)
        lo, hi = confint_survival(surv, sigma, z_value(self.conf_level), self.conf_type)
        k =  np.searchsorted(self.time, tq, side="left")  # first step >= t
        after = np.concatenate((self.at_risk, [0.0]))[k]
        cum_ev = np.concatenate(([0.0], np.cumsum(self.n_events)))[i + 1]
        cum_ce = np.concatenate(([0.0], np.cumsum(self.n_censored)))[i + 1]
        return KMSummary(
            tq, surv, pick(self.std_err, 0.0), lo, hi, after,
            np.diff(np.concatenate(([0.0], cum_ev))), np.diff(np.concatenate(([0.0], cum_ce))),
            pick(self.cumhaz, 0.0), pick(self.std_err_cumhaz, 0.0),
        )


def _cross(x: np.ndarray, p: float, xmax: float, y: np.ndarray) -> float:
    """First x where the step curve y (non-increasing) reaches p; midpoint of a flat at p."""
    ok = ~np.isnan(y)
    x, y = x[ok], y[ok]
    if y.size == 0:
        return float("nan")
    first = np.concatenate(([True], np.diff(y) != 0))  # drop repeats (censorings)
    x, y = x[first], y[first]
    hit = np.flatnonzero(y <= p + _TOL)
    if hit.size == 0:
        return float("nan")
    i = int(hit[0])
    if abs(y[i] - p) >= _TOL:
        return float(x[i])
    nxt = float(x[i + 1]) if i + 1 < x.size else xmax
    return (float(x[i]) + nxt) / 2.0


# ----------------------------------------------------------------------------- estimators
def kaplan_meier(
    time: Any,
    event: Any,
    weights: Any = None,
    conf_level: float = 0.95,
    conf_type: ConfType = "log",
) -> KaplanMeier:
    """Product-limit estimate; ``event`` is 1 for an exit, 0 for censoring at ``time``.

    S(t) = prod_{t_j <= t} (1 - d_j / n_j); Greenwood Var(log S) = sum d_j / (n_j (n_j - d_j));
    CIs as R's ``survfit(conf.type = ...)`` (``"log"`` default, ``"log-log"``, ``"plain"``).

    Examples
    --------
    >>> km = kaplan_meier([1, 2, 2, 3, 5], [1, 1, 0, 1, 0])
    >>> km.survival.round(3).tolist()
    [0.8, 0.6, 0.3, 0.3]
    """
    _check_conf_type(conf_type)
    z = z_value(conf_level)
    t, d, w = check_survival_data(time, event, weights)
    ut, inv = np.unique(t, return_inverse=True)
    deaths = np.bincount(inv, weights=w * d, minlength=len(ut))
    leaving = np.bincount(inv, weights=w, minlength=len(ut))
    at_risk = w.sum() - np.concatenate(([0.0], np.cumsum(leaving)[:-1]))
    with np.errstate(divide="ignore", invalid="ignore"):
        haz = np.where(at_risk > 0, deaths / at_risk, 0.0)
        surv = np.cumprod(1.0 - haz)
        gw = np.cumsum(np.where(deaths > 0, deaths / (at_risk * (at_risk - deaths)), 0.0))
        gw = np.where(surv > 0, gw, np.inf)
        na_var = np.cumsum(np.where(at_risk > 0, deaths / at_risk**2, 0.0))
    sigma = np.sqrt(gw)
    lo, hi = confint_survival(surv, sigma, z, conf_type)
    with np.errstate(invalid="ignore"):
        se = np.where(surv > 0, surv * sigma, np.nan)
    return KaplanMeier(
        ut, surv, se, lo, hi, at_risk, deaths, float(w.sum()), float((w * d).sum()),
        leaving - deaths, np.cumsum(haz), np.sqrt(na_var), float(conf_level), conf_type,
    )


def kaplan_meier_by(
    time: Any,
    event: Any,
    group: Any,
    weights: Any = None,
    conf_level: float = 0.95,
    conf_type: ConfType = "log",
) -> dict[Any, KaplanMeier]:
    """One Kaplan–Meier per group value (sorted), keyed by the original group values."""
    t, d, w = check_survival_data(time, event, weights)
    g = np.asarray(group)
    check_lengths(time=t, group=g)
    levels, codes = group_codes(g)
    return {lev: kaplan_meier(t[codes == k], d[codes == k], w[codes == k], conf_level, conf_type)
            for k, lev in enumerate(levels)}


def group_codes(group: Any, name: str = "group") -> tuple[list[Any], np.ndarray]:
    """Sorted distinct group values (as Python scalars) and each row's 0-based code."""
    g = np.asarray(group)
    if g.ndim != 1:
        raise UsageError(f"{name} must be one-dimensional, got shape {g.shape}")
    if g.dtype.kind in "fc":
        bad = np.isnan(g)
    elif g.dtype.kind == "O":
        bad = np.asarray((g != g) | (g == np.full(g.shape, None, dtype=object)), dtype=bool)
    else:
        bad = np.zeros(g.shape, dtype=bool)
    if bad.any():
        raise DataValidationError(f"{name} has missing values in {_rows(bad)}; drop them first")
    try:
        levels, codes = np.unique(g, return_inverse=True)
    except TypeError as exc:
        raise DataValidationError(f"{name} values cannot be sorted (mixed types?): {exc}") from exc
    return [v.item() if hasattr(v, "item") else v for v in levels], codes.reshape(-1)
