"""``Effects``: estimates with delta-method inference, the value every effect function returns.

One row per estimate with ``term, estimate, std_error, statistic, p_value, conf_low, conf_high``
plus the columns of the values it was evaluated at; the Jacobian and the model covariance travel
with it so contrasts between rows get exact standard errors (principle 2: results are values).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from smesurvival.errors import UsageError
from smesurvival.inference.effects_base import Array, critical_value

# ---- the result value ---------------------------------------------------------------------------
EFFECT_COLUMNS = ("term", "estimate", "std_error", "statistic", "p_value", "conf_low", "conf_high")


@dataclass(frozen=True, eq=False)
class Effects:
    """Estimates with delta-method inference: one row per estimate, plus where it was evaluated.

    ``jacobian`` (rows x coefficients) and ``vcov`` travel with the estimates so contrasts
    between rows (``contrast``) get exact standard errors. ``conf_low``/``conf_high`` hold
    transformed intervals when the estimate is a monotone transform of the linear predictor.
    """

    kind: str
    model: str
    type: str
    estimate: Array
    jacobian: Array
    vcov: Array
    labels: pd.DataFrame  # "term" (and "contrast") plus the evaluated-at columns
    conf_level: float
    conf_low_override: Array | None = None
    conf_high_override: Array | None = None
    notes: tuple[str, ...] = ()
    n_dropped: int = 0
    std_error: Array = field(init=False)

    def __post_init__(self) -> None:
        se = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", self.jacobian, self.vcov, self.jacobian), 0.0))
        object.__setattr__(self, "std_error", se)

    @property
    def statistic(self) -> Array:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.std_error > 0, self.estimate / self.std_error, np.nan)

    @property
    def p_value(self) -> Array:
        return 2.0 * stats.norm.sf(np.abs(self.statistic))

    @property
    def cov(self) -> Array:
        """Delta-method covariance of the estimates, J V J'."""
        return self.jacobian @ self.vcov @ self.jacobian.T

    @property
    def conf_low(self) -> Array:
        if self.conf_low_override is not None:
            return self.conf_low_override
        return self.estimate - critical_value(self.conf_level) * self.std_error

    @property
    def conf_high(self) -> Array:
        if self.conf_high_override is not None:
            return self.conf_high_override
        return self.estimate + critical_value(self.conf_level) * self.std_error

    @property
    def frame(self) -> pd.DataFrame:
        """One row per estimate: term, estimate, std_error, statistic, p_value, CI, evaluated-at columns."""
        return self.to_frame()

    def to_frame(self) -> pd.DataFrame:
        """The estimates as a DataFrame (see :attr:`frame`)."""
        base = pd.DataFrame({
            "term": self.labels["term"].to_numpy(), "estimate": self.estimate,
            "std_error": self.std_error, "statistic": self.statistic, "p_value": self.p_value,
            "conf_low": self.conf_low, "conf_high": self.conf_high,
        })
        rest = self.labels.drop(columns=["term"]).reset_index(drop=True)
        return pd.concat([base, rest], axis=1)

    def to_records(self) -> list[dict[str, Any]]:
        """JSON-safe rows (numpy scalars to Python, NaN to None) for the CLI."""
        recs = self.to_frame().to_dict(orient="records")
        return [{str(k): _json_safe(v) for k, v in r.items()} for r in recs]

    def __len__(self) -> int:
        return int(self.estimate.size)

    def contrast(self, i: int, j: int) -> Effects:
        """Row ``i`` minus row ``j`` (e.g. the slope at wc = 1 minus at wc = 0) with its exact SE."""
        n = len(self)
        for r in (i, j):
            if not -n <= r < n:
                raise UsageError(f"contrast: row {r} does not exist (there are {n} rows)")
        li, lj = self.labels.iloc[i], self.labels.iloc[j]
        same = {c: li[c] for c in self.labels.columns
                if c not in ("term", "contrast") and _same(li[c], lj[c])}
        diff = [c for c in self.labels.columns if c not in ("term", "contrast") and c not in same]
        desc = " - ".join(", ".join(f"{c}={_fmt(r[c])}" for c in diff) or f"row {k}"
                          for r, k in ((li, i), (lj, j)))
        term = li["term"] if li["term"] == lj["term"] else f"{li['term']} - {lj['term']}"
        labels = pd.DataFrame([{"term": term, "contrast": desc, **same}])
        return Effects(
            "contrast", self.model, self.type, np.array([self.estimate[i] - self.estimate[j]]),
            (self.jacobian[i] - self.jacobian[j])[None, :], self.vcov, labels, self.conf_level,
            notes=self.notes, n_dropped=self.n_dropped,
        )


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b) or (pd.isna(a) and pd.isna(b))
    except (TypeError, ValueError):
        return False


def _fmt(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float | np.floating) else str(v)


def _json_safe(v: Any) -> Any:
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def concat_effects(parts: list[Effects]) -> Effects:
    """Stack the rows of several Effects of the same kind (e.g. a grid computed in chunks)."""
    if not parts:
        raise UsageError("concat_effects: nothing to stack")
    first = parts[0]
    lows = [p.conf_low_override for p in parts]
    highs = [p.conf_high_override for p in parts]
    return Effects(
        first.kind, first.model, first.type, np.concatenate([p.estimate for p in parts]),
        np.vstack([p.jacobian for p in parts]), first.vcov,
        pd.concat([p.labels for p in parts], ignore_index=True), first.conf_level,
        np.concatenate(lows) if all(x is not None for x in lows) else None,  # type: ignore[arg-type]
        np.concatenate(highs) if all(x is not None for x in highs) else None,  # type: ignore[arg-type]
        first.notes, first.n_dropped,
    )


def json_bound(v: float) -> float | None:
    """A finite float, or None for an unbounded (infinite) end of an interval."""
    return float(v) if math.isfinite(v) else None
