"""Cumulative incidence under competing risks (Aalen–Johansen), with ``cmprsk::cuminc`` variances.

For cause c at the distinct event times t_j of a group (n_j at risk, d_cj events of cause c,
d_j events of any cause, S the all-cause Kaplan–Meier):
F_c(t) = sum_{t_j <= t} S(t_j-) d_cj / n_j. The variance is the delta-method estimator that
``cmprsk::cuminc`` reports (Gray's), with a ties factor (n - d)/(n - 1):
Var F_c(t) = sum_j c_j(d) [a_j - F_c(t) b_j]^2 over each kind of event at t_j <= t, where
c_j(d) = S(t_j-)^2 d (1 - (d-1)/(n_j-1)) / n_j^2, b_j = 1/S(t_j); a_j = F_c(t_j) b_j for
competing events and 1 + F_c(t_j) b_j for events of cause c. Pointwise CIs use the
log(-log) transform: F^exp(-/+ z se / (F log F)).
Gray's k-sample test is not implemented (not yet matched to ``cmprsk``'s ``Tests``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from smesurvival.errors import DataValidationError, UsageError
from smesurvival.models.km import check_lengths, check_time, group_codes, z_value


@dataclass(frozen=True)
class CIFPoints:
    """A curve evaluated at requested times (NaN beyond the group's last follow-up time)."""

    time: np.ndarray
    estimate: np.ndarray
    variance: np.ndarray
    std_err: np.ndarray
    conf_low: np.ndarray
    conf_high: np.ndarray


@dataclass(frozen=True)
class CIFCurve:
    """Cumulative incidence of one cause in one group, a step at each distinct event time."""

    cause: Any
    group: Any
    time: np.ndarray
    estimate: np.ndarray
    variance: np.ndarray
    conf_low: np.ndarray
    conf_high: np.ndarray
    n: int
    n_events: int  # events of this cause
    max_time: float  # last follow-up time in the group
    conf_level: float = 0.95

    @property
    def std_err(self) -> np.ndarray:
        """Pointwise standard error sqrt(variance)."""
        return np.sqrt(self.variance)

    def at(self, times: Any) -> CIFPoints:
        """The step function at ``times`` (right-continuous; 0 before the first event)."""
        tq = np.atleast_1d(np.asarray(times, dtype=float))
        i = np.searchsorted(self.time, tq, side="right") - 1
        j = np.maximum(i, 0)
        beyond = tq > self.max_time
        est = np.where(beyond, np.nan, np.where(i < 0, 0.0, self.estimate[j]))
        var = np.where(beyond, np.nan, np.where(i < 0, 0.0, self.variance[j]))
        lo, hi = _loglog_ci(est, var, z_value(self.conf_level))
        return CIFPoints(tq, est, var, np.sqrt(var), lo, hi)


@dataclass(frozen=True)
class CumulativeIncidence:
    """All curves, keyed by (group, cause); group is None without ``group``."""

    curves: dict[tuple[Any, Any], CIFCurve]
    causes: tuple[Any, ...]
    groups: tuple[Any, ...]
    conf_level: float

    def curve(self, cause: Any, group: Any = None) -> CIFCurve:
        """The curve of ``cause`` in ``group`` (UsageError listing valid keys otherwise)."""
        key = (group, cause)
        if key not in self.curves:
            raise UsageError(
                f"no curve for cause {cause!r} in group {group!r}; "
                f"causes: {list(self.causes)}, groups: {list(self.groups)}"
            )
        return self.curves[key]

    def at(self, times: Any) -> dict[tuple[Any, Any], CIFPoints]:
        """Every curve evaluated at ``times``."""
        return {k: c.at(times) for k, c in self.curves.items()}


def _loglog_ci(est: np.ndarray, var: np.ndarray, z: float) -> tuple[np.ndarray, np.ndarray]:
    """log(-log) CI for F in (0, 1); (0, 0) where F = 0, NaN where undefined."""
    with np.errstate(divide="ignore", invalid="ignore"):
        inside = (est > 0) & (est < 1)
        f = np.where(inside, est, 0.5)
        k = z * np.sqrt(var) / (f * np.log(f))  # negative
        lo = np.where(inside, f ** np.exp(-k), np.nan)
        hi = np.where(inside, f ** np.exp(k), np.nan)
    zero = est == 0
    return np.where(zero, 0.0, lo), np.where(zero, 0.0, hi)


def _term(s_prev: np.ndarray, dk: np.ndarray, n: np.ndarray) -> np.ndarray:
    """cuminc's variance weight S(t-)^2 d (1 - (d-1)/(n-1)) / n^2 (0 where d = 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        tie = np.where(dk > 1, 1.0 - (dk - 1.0) / (n - 1.0), 1.0)
    return np.where(dk > 0, s_prev**2 * tie * dk / n**2, 0.0)


def _curves_one_group(
    t: np.ndarray, code: np.ndarray, cause_idx: list[int], censor_idx: int | None
) -> dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per cause index: (event times, F, Var F) for one group, vectorised over distinct times."""
    ut, inv = np.unique(t, return_inverse=True)
    m = len(ut)
    k = int(code.max()) + 1
    counts = np.bincount(inv * k + code, minlength=m * k).reshape(m, k).astype(float)
    n = counts.sum(axis=1)[::-1].cumsum()[::-1]
    dall = counts.sum(axis=1) - (counts[:, censor_idx] if censor_idx is not None else 0.0)
    ev = dall > 0
    ut, counts, n, dall = ut[ev], counts[ev], n[ev], dall[ev]
    s = np.cumprod(1.0 - dall / n)
    s_prev = np.concatenate(([1.0], s[:-1]))
    with np.errstate(divide="ignore", invalid="ignore"):
        b = np.where(s > 0, 1.0 / s, 0.0)
    out = {}
    for c in cause_idx:
        d1 = counts[:, c] if c < k else np.zeros_like(n)
        d2 = dall - d1
        f = np.cumsum(s_prev * d1 / n)
        w2 = np.where(s > 0, _term(s_prev, d2, n), 0.0)  # competing events (skipped once S = 0)
        w1 = _term(s_prev, d1, n)  # events of this cause
        a2, a1 = f * b, 1.0 + f * b
        v1 = np.cumsum(w2 * a2**2 + w1 * a1**2)
        v2 = np.cumsum(w2 * a2 * b + w1 * a1 * b)
        v3 = np.cumsum((w2 + w1) * b**2)
        var = np.maximum(v1 + f**2 * v3 - 2.0 * f * v2, 0.0)
        out[c] = (ut, f, var)
    return out


def cumulative_incidence(
    time: Any,
    status: Any,
    cause_codes: Any = None,
    censor_code: Any = 0,
    group: Any = None,
    conf_level: float = 0.95,
) -> CumulativeIncidence:
    """Aalen–Johansen cumulative incidence per cause (and group), with cuminc's variance.

    ``status`` holds ``censor_code`` for censored rows and a cause code otherwise; every
    non-censored code is a competing event for the others. ``cause_codes`` picks the causes
    reported (default: all non-censored codes, sorted).
    """
    z = z_value(conf_level)
    t = check_time(time)
    codes, sc = group_codes(status, "status")
    check_lengths(time=t, status=sc)
    censor_idx = codes.index(censor_code) if censor_code in codes else None
    present = [c for c in codes if c != censor_code]
    wanted = present if cause_codes is None else list(np.atleast_1d(cause_codes).tolist())
    unknown = [c for c in wanted if c not in present]
    if unknown:
        raise DataValidationError(
            f"cause code(s) {unknown} never occur in status (codes present: {codes}, "
            f"censor_code {censor_code!r})"
        )
    if not wanted:
        raise DataValidationError(f"status has no events: every row equals censor_code {censor_code!r}")
    cause_idx = [codes.index(c) for c in wanted]
    if group is None:
        levels: list[Any] = [None]
        gc = np.zeros(len(t), dtype=np.intp)
    else:
        levels, gc = group_codes(group)
        check_lengths(time=t, group=gc)
    curves: dict[tuple[Any, Any], CIFCurve] = {}
    for gi, lev in enumerate(levels):
        m = gc == gi
        res = _curves_one_group(t[m], sc[m], cause_idx, censor_idx)
        for c, ci in zip(wanted, cause_idx, strict=True):
            ut, f, var = res[ci]
            lo, hi = _loglog_ci(f, var, z)
            curves[(lev, c)] = CIFCurve(c, lev, ut, f, var, lo, hi, int(m.sum()),
                                        int((sc[m] == ci).sum()), float(t[m].max()), conf_level)
    return CumulativeIncidence(curves, tuple(wanted), tuple(levels), float(conf_level))
