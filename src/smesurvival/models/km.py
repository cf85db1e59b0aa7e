"""Kaplan–Meier product-limit estimator with Greenwood variance and log-type CIs (as R's survfit)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class KaplanMeier:
    """Survival steps at each distinct event or censoring time."""

    time: np.ndarray
    survival: np.ndarray
    std_err: np.ndarray  # Greenwood SE of S(t)
    conf_low: np.ndarray
    conf_high: np.ndarray
    at_risk: np.ndarray
    n_events: np.ndarray
    n: float
    total_events: float

    def at(self, t: float) -> float:
        """S(t): the last step at or before t (1 before the first step)."""
        i = np.searchsorted(self.time, t, side="right") - 1
        return 1.0 if i < 0 else float(self.survival[i])


def kaplan_meier(
    time: np.ndarray, event: np.ndarray, weights: np.ndarray | None = None, conf_level: float = 0.95
) -> KaplanMeier:
    """Product-limit estimate; ``event`` is 1 for an exit, 0 for censoring at ``time``."""
    t = np.asarray(time, dtype=float)
    d = np.asarray(event, dtype=float)
    w = np.ones_like(t) if weights is None else np.asarray(weights, dtype=float)
    if t.shape != d.shape or t.shape != w.shape:
        raise ValueError("time, event and weights must have the same length")
    ut, inv = np.unique(t, return_inverse=True)
    deaths = np.bincount(inv, weights=w * d, minlength=len(ut))
    leaving = np.bincount(inv, weights=w, minlength=len(ut))
    at_risk = w.sum() - np.concatenate(([0.0], np.cumsum(leaving)[:-1]))
    with np.errstate(divide="ignore", invalid="ignore"):
        surv = np.cumprod(1.0 - deaths / at_risk)
        gw = np.cumsum(np.where(at_risk > deaths, deaths / (at_risk * (at_risk - deaths)), 0.0))
    sigma = np.sqrt(gw)
    z = stats.norm.ppf(0.5 + conf_level / 2.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        lo = np.where(surv > 0, surv * np.exp(-z * sigma), np.nan)
        hi = np.where(surv > 0, np.minimum(1.0, surv * np.exp(z * sigma)), np.nan)
    return KaplanMeier(ut, surv, surv * sigma, lo, hi, at_risk, deaths, float(w.sum()),
                       float((w * d).sum()))
