"""Log-rank family of k-sample tests (G-rho, as R's ``survdiff``), stratified, and a trend test.

At each distinct event time t in a stratum, with n_k at risk and d_k events in group k
(n, d pooled), and weight w = S(t-)^rho (S the pooled left-continuous Kaplan–Meier of the
stratum): O_k += w d_k, E_k += w d n_k / n,
V_kl += w^2 d (n - d) / (n - 1) * n_k / n * (1[k = l] - n_l / n). O, E, V are summed over strata;
chi2 = (O - E)' V^- (O - E) on (groups with E > 0) - 1 df.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from smesurvival.errors import DataValidationError, UsageError
from smesurvival.models.km import as_float_array, check_lengths, check_survival_data, group_codes


@dataclass(frozen=True)
class LogRankResult:
    """A k-sample G-rho test: statistic, and the per-group observed/expected and variance."""

    chi2: float
    df: int
    p_value: float
    observed: np.ndarray  # weighted observed events per group (summed over strata)
    expected: np.ndarray
    variance: np.ndarray  # (k, k) covariance matrix of O - E
    groups: tuple[Any, ...]
    n: np.ndarray  # subjects (sum of weights) per group
    rho: float = 0.0


@dataclass(frozen=True)
class TrendTestResult:
    """Test for trend across ordered groups: chi2 = (s'(O - E))^2 / s'Vs on 1 df."""

    chi2: float
    df: int
    p_value: float
    z: float  # signed statistic s'(O - E) / sqrt(s'Vs); > 0 means more events at high scores
    scores: np.ndarray
    groups: tuple[Any, ...]
    observed: np.ndarray
    expected: np.ndarray
    variance: np.ndarray


def _oev(
    t: np.ndarray, d: np.ndarray, w: np.ndarray, g: np.ndarray, k: int, rho: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """O, E, V for one stratum, vectorised over its distinct times."""
    ut, inv = np.unique(t, return_inverse=True)
    m = len(ut)
    cell = inv * k + g
    dk = np.bincount(cell, weights=w * d, minlength=m * k).reshape(m, k)
    leave = np.bincount(cell, weights=w, minlength=m * k).reshape(m, k)
    nk = leave[::-1].cumsum(axis=0)[::-1]  # at risk per group: time >= t
    n = nk.sum(axis=1)
    dt = dk.sum(axis=1)
    ev = dt > 0
    dk, nk, n, dt = dk[ev], nk[ev], n[ev], dt[ev]
    if rho != 0.0:
        s = np.cumprod(1.0 - dt / n)
        wt = np.concatenate(([1.0], s[:-1])) ** rho
    else:
        wt = np.ones_like(n)
    p = nk / n[:, None]
    obs = (wt[:, None] * dk).sum(axis=0)
    exp = (wt[:, None] * dt[:, None] * p).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        c = np.where(n > 1, wt**2 * dt * (n - dt) / (n - 1), 0.0)
    var = np.diag((c[:, None] * p).sum(axis=0)) - (c[:, None] * p).T @ p
    return obs, exp, var


def _prepare(
    time: Any, event: Any, group: Any, strata: Any, weights: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[Any]]:
    t, d, w = check_survival_data(time, event, weights)
    levels, g = group_codes(group)
    check_lengths(time=t, group=g)
    if len(levels) < 2:
        raise DataValidationError(f"group has a single value ({levels[0]!r}); need at least two")
    if strata is None:
        s = np.zeros(len(t), dtype=np.intp)
    else:
        _, s = group_codes(strata, "strata")
        check_lengths(time=t, strata=s)
    return t, d, w, g, s, levels


def _sum_strata(
    t: np.ndarray, d: np.ndarray, w: np.ndarray, g: np.ndarray, s: np.ndarray, k: int, rho: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    obs, exp, var = np.zeros(k), np.zeros(k), np.zeros((k, k))
    for h in np.unique(s):
        m = s == h
        o, e, v = _oev(t[m], d[m], w[m], g[m], k, rho)
        obs, exp, var = obs + o, exp + e, var + v
    return obs, exp, var


def logrank_test(
    time: Any,
    event: Any,
    group: Any,
    strata: Any = None,
    rho: float = 0.0,
    weights: Any = None,
) -> LogRankResult:
    """G-rho test of equal survival across groups (rho = 0 log-rank, 1 Peto–Peto), as ``survdiff``.

    Examples
    --------
    >>> r = logrank_test([1, 2, 3, 4, 5, 6], [1, 1, 1, 1, 0, 1], ["a", "b", "a", "b", "a", "b"])
    >>> r.groups, r.df
    (('a', 'b'), 1)
    """
    if not np.isfinite(rho):
        raise UsageError(f"rho must be a finite number, got {rho!r}")
    t, d, w, g, s, levels = _prepare(time, event, group, strata, weights)
    k = len(levels)
    obs, exp, var = _sum_strata(t, d, w, g, s, k, float(rho))
    used = np.flatnonzero(exp > 0)
    df = int(used.size - 1)
    if df < 1:
        chi2 = 0.0
    else:
        keep = used[1:]  # drop one group: V is singular since sum(O - E) = 0
        diff = (obs - exp)[keep]
        chi2 = float(diff @ np.linalg.solve(var[np.ix_(keep, keep)], diff))
    p = float(stats.chi2.sf(chi2, df)) if df >= 1 else float("nan")
    n = np.bincount(g, weights=w, minlength=k)
    return LogRankResult(chi2, df, p, obs, exp, var, tuple(levels), n, float(rho))


def logrank_trend(
    time: Any,
    event: Any,
    group: Any,
    scores: Any = None,
    strata: Any = None,
    rho: float = 0.0,
    weights: Any = None,
) -> TrendTestResult:
    """Test for a monotone trend in hazard across ordered groups (1 df).

    ``scores`` pairs with the sorted group values (default 1..k); chi2 = (s'(O-E))^2 / s'Vs.
    """
    t, d, w, g, s, levels = _prepare(time, event, group, strata, weights)
    k = len(levels)
    if scores is None:
        sc = np.arange(1.0, k + 1.0)
    else:
        sc = as_float_array(scores, "scores")
        if sc.size != k:
            raise UsageError(
                f"scores must have one value per group ({k}: {list(levels)}), got {sc.size}"
            )
        if np.ptp(sc) == 0:
            raise UsageError("scores must not all be equal")
    obs, exp, var = _sum_strata(t, d, w, g, s, k, float(rho))
    u = float(sc @ (obs - exp))
    v = float(sc @ var @ sc)
    if v <= 0:
        raise DataValidationError("the trend statistic has zero variance (no informative events)")
    z = u / np.sqrt(v)
    chi2 = z * z
    return TrendTestResult(chi2, 1, float(stats.chi2.sf(chi2, 1)), float(z), sc, tuple(levels),
                           obs, exp, var)
