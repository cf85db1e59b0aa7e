"""Kaplan–Meier by group with the log-rank test: the numbers behind ``smesurvival km``."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from smesurvival.errors import UsageError
from smesurvival.inference.logrank import LogRankResult, logrank_test
from smesurvival.models.km import KaplanMeier, kaplan_meier
from smesurvival.models.survdata import check_durations, event_indicator, numeric_column


def group_key(value: Any) -> str:
    """JSON key of a group level: 1.0 -> '1', 'yes' -> 'yes'."""
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, np.integer):
        return str(int(value))
    return str(value)


@dataclass(frozen=True)
class KMAnalysis:
    """One curve per group (or one overall) and, with groups, the log-rank test."""

    time_col: str
    event_col: str
    by: str | None
    curves: dict[str, KaplanMeier]
    logrank: LogRankResult | None
    n_dropped: int

    def to_dict(self) -> dict[str, Any]:
        """DESIGN.md's km contract: groups -> step lists, logrank -> chi2, df, p_value."""
        groups = {}
        for key, km in self.curves.items():
            med = km.median()
            groups[key] = {
                "time": km.time.tolist(), "survival": km.survival.tolist(),
                "std_err": km.std_err.tolist(), "conf_low": km.conf_low.tolist(),
                "conf_high": km.conf_high.tolist(), "at_risk": km.at_risk.tolist(),
                "n_events": km.n_events.tolist(), "n": km.n, "total_events": km.total_events,
                "median": med.median, "median_conf_low": med.conf_low,
                "median_conf_high": med.conf_high,
            }
        lr = None
        if self.logrank is not None:
            lr = {"chi2": self.logrank.chi2, "df": self.logrank.df, "p_value": self.logrank.p_value,
                  "observed": np.asarray(self.logrank.observed).tolist(),
                  "expected": np.asarray(self.logrank.expected).tolist()}
        return {"time": self.time_col, "event": self.event_col, "by": self.by, "groups": groups,
                "logrank": lr, "dropped": {"missing time, event or group": self.n_dropped}
                if self.n_dropped else {}}

    def summary_rows(self) -> list[tuple[str, str, str, str, str]]:
        """(group, N, events, median, CI) as text for a terminal table."""
        def f(v: float) -> str:
            return "not reached" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3g}"

        rows = []
        for key, km in self.curves.items():
            m = km.median()
            rows.append((key, f"{km.n:g}", f"{km.total_events:g}", f(m.median),
                         f"[{f(m.conf_low)}, {f(m.conf_high)}]"))
        return rows


def km_analysis(data: pd.DataFrame, *, time: str, event: str, by: str | None = None,
                conf_level: float = 0.95) -> KMAnalysis:
    """Kaplan–Meier per level of ``by`` (rows with a missing value are counted and dropped)."""
    cols = [time, event] + ([by] if by else [])
    for c in cols:
        if c not in data.columns:
            raise UsageError(f"column '{c}' is not in the data; columns are: {', '.join(map(str, data.columns))}")
    keep = data[cols].notna().all(axis=1).to_numpy()
    rows = np.flatnonzero(keep)
    t = numeric_column(data, time, "time", rows)
    e = event_indicator(numeric_column(data, event, "event", rows), event, rows)
    check_durations(np.where(t == 0, np.inf, t), time, rows)  # zero is allowed for KM
    curves: dict[str, KaplanMeier] = {}
    lr = None
    if by:
        g = data[by].to_numpy()[rows]
        for level in sorted(pd.unique(g), key=lambda v: (str(type(v)), v)):
            sel = g == level
            curves[group_key(level)] = kaplan_meier(t[sel], e[sel], conf_level=conf_level)
        if len(curves) >= 2:
            lr = logrank_test(t, e, g)
    else:
        curves["all"] = kaplan_meier(t, e, conf_level=conf_level)
    return KMAnalysis(time, event, by, curves, lr, int((~keep).sum()))
