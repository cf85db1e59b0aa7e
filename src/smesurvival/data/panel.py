"""Subject rows -> person-period rows, the data layout of discrete-time hazard models.

One row per subject and period at risk, exactly as R's ``survSplit(Surv(duration, event) ~ .,
cut = cuts)``: period k covers (c_{k-1}, c_k] with c_0 = 0 (a duration on a cut point belongs
to the period ending there), ``tstart = c_{k-1}``, ``tstop = min(c_k, duration)``, and the
event indicator is 1 only in the last period of a subject who had the event.  Everything is
vectorised (``np.repeat``, ``np.searchsorted``); :func:`person_period_index` works on plain
arrays so that streaming and Spark engines can expand Arrow batches with the same code, and
:func:`iter_person_period` expands an iterable of chunks in bounded memory.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, get_args

import numpy as np
import pandas as pd

from smesurvival.errors import DataValidationError, UsageError

__all__ = [
    "PeriodGrid", "PersonPeriodIndex", "expand_person_period", "firm_years",
    "iter_person_period", "person_period_index",
]

ZeroDuration = Literal["error", "first"]
#: columns the expansion creates (plus ``id`` when no id column is given)
GENERATED: tuple[str, ...] = ("period", "tstart", "tstop")
#: subject-level outcome columns of the measures frame, left out of firm-years by default
_SUBJECT_OUTCOMES = ("exited", "survived", "time_to_exit")


@dataclass(frozen=True)
class PeriodGrid:
    """Period boundaries: interior ``cuts`` (the last period is open) or a regular ``width``."""

    cuts: tuple[float, ...] | None = None
    width: float | None = None

    @classmethod
    def make(cls, cuts: Sequence[float] | np.ndarray | None, width: float | None) -> PeriodGrid:
        """Check and build a grid from exactly one of ``cuts`` and ``width``."""
        if (cuts is None) == (width is None):
            raise UsageError(
                "give the periods by exactly one of cuts (interior cut points, e.g. "
                "cuts=[4, 8, 12]) or width (a regular grid, e.g. width=1 for yearly periods)"
            )
        if width is not None:
            w = float(width)
            if not np.isfinite(w) or w <= 0:
                raise UsageError(f"width must be a positive number; got {width!r}")
            return cls(width=w)
        try:
            c = np.asarray(cuts, dtype=float).ravel()
        except (TypeError, ValueError):
            raise UsageError(f"cuts must be numbers; got {cuts!r}") from None
        if not np.isfinite(c).all() or (c <= 0).any():
            raise UsageError(f"cuts must be finite and positive; got {c.tolist()}")
        if (np.diff(c) <= 0).any():
            raise UsageError(f"cuts must be strictly increasing; got {c.tolist()}")
        return cls(cuts=tuple(float(v) for v in c))

    def count(self, duration: np.ndarray) -> np.ndarray:
        """Number of periods each duration is at risk: k with c_{k-1} < duration <= c_k."""
        d = np.asarray(duration, dtype=float)
        if self.cuts is not None:
            return np.searchsorted(np.asarray(self.cuts), d, side="left").astype(np.int64) + 1
        w = float(self.width)  # type: ignore[arg-type]
        k = np.ceil(d / w)
        k = np.where((k - 1) * w >= d, k - 1, k)  # guard the float division both ways
        k = np.where(k * w < d, k + 1, k)
        return np.maximum(k, 1).astype(np.int64)

    def start(self, period: np.ndarray) -> np.ndarray:
        """Start c_{k-1} of periods k (1-based)."""
        if self.cuts is not None:
            return np.concatenate([[0.0], self.cuts])[period - 1]
        return (period - 1) * float(self.width)  # type: ignore[arg-type]

    def end(self, period: np.ndarray) -> np.ndarray:
        """End c_k of periods k (infinite for the open last period of ``cuts``)."""
        if self.cuts is not None:
            return np.concatenate([self.cuts, [np.inf]])[period - 1]
        return period * float(self.width)  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe description of the grid."""
        return {"cuts": list(self.cuts) if self.cuts is not None else None, "width": self.width}


class PersonPeriodIndex(NamedTuple):
    """The expansion as arrays: subject row position, period, interval and event per row."""

    row: np.ndarray
    period: np.ndarray
    tstart: np.ndarray
    tstop: np.ndarray
    event: np.ndarray


def person_period_index(
    duration: np.ndarray, event: np.ndarray, grid: PeriodGrid
) -> PersonPeriodIndex:
    """Expand checked arrays (durations > 0, events 0/1) to person-period arrays, no loop."""
    d = np.asarray(duration, dtype=float)
    n_per = grid.count(d)
    ends = np.cumsum(n_per)
    row = np.repeat(np.arange(d.size, dtype=np.int64), n_per)
    period = np.arange(row.size, dtype=np.int64) - np.repeat(ends - n_per, n_per) + 1
    tstop = np.minimum(grid.end(period), d[row])
    last = np.zeros(row.size, dtype=bool)
    last[ends[n_per > 0] - 1] = True
    ev = (last & (np.asarray(event)[row] == 1)).astype(np.int64)
    return PersonPeriodIndex(row, period, grid.start(period).astype(float), tstop, ev)


def _where(frame: pd.DataFrame, mask: np.ndarray) -> str:
    """'rows 3, 8, 11 (and 4 more)' naming the frame's index labels where ``mask`` holds."""
    labels = frame.index[mask].tolist()
    shown = ", ".join(str(v) for v in labels[:5])
    more = f" (and {len(labels) - 5} more)" if len(labels) > 5 else ""
    return f"row{'s' if len(labels) > 1 else ''} {shown}{more}"


def _numeric(frame: pd.DataFrame, col: str, role: str) -> np.ndarray:
    """A column as floats (NaN for missing), or an error naming it."""
    try:
        return pd.to_numeric(frame[col], errors="raise").to_numpy(dtype=float, na_value=np.nan)
    except (ValueError, TypeError):
        raise DataValidationError(f"{role} column '{col}' must be numeric") from None


def check_subjects(
    frame: pd.DataFrame, duration: str, event: str, id: str | None,
    zero: ZeroDuration = "error",
) -> tuple[np.ndarray, np.ndarray]:
    """Validate the duration, event and id columns; return durations and 0/1 events."""
    if zero not in get_args(ZeroDuration):
        raise UsageError(f"zero must be one of {', '.join(get_args(ZeroDuration))}; got '{zero}'")
    for role, col in (("duration", duration), ("event", event), ("id", id)):
        if col is not None and col not in frame.columns:
            raise UsageError(f"{role} column '{col}' is not in the data")
    d = _numeric(frame, duration, "duration")
    e = _numeric(frame, event, "event")
    if np.isnan(d).any():
        raise DataValidationError(
            f"duration column '{duration}' is missing in {_where(frame, np.isnan(d))}; drop or "
            "fill those rows first")
    bad = ~np.isfinite(d) | (d < 0) | ((d == 0) & (zero == "error"))
    if bad.any():
        raise DataValidationError(
            f"duration column '{duration}' must be positive and finite (a subject must be at risk "
            f"for some time); {_where(frame, bad)} have {sorted(set(d[bad].tolist()))[:5]}")
    bad = ~np.isin(e, (0.0, 1.0))
    if bad.any():
        vals = sorted({repr(v) for v in e[bad].tolist()})[:5]
        raise DataValidationError(
            f"event column '{event}' must be coded 0 (censored) or 1 (event); {_where(frame, bad)} "
            f"have {', '.join(vals)}. For several exit types, make one 0/1 column per type.")
    if id is not None and frame[id].isna().any():
        raise DataValidationError(
            f"id column '{id}' is missing in {_where(frame, frame[id].isna().to_numpy())}; "
            "every subject needs an identifier (it is the cluster of the robust SEs)")
    return d, e


def _keep_columns(
    frame: pd.DataFrame, duration: str, event: str, id: str | None, keep: Sequence[str] | None,
) -> list[str]:
    """The covariates to carry, checked against the columns the expansion creates."""
    used = {duration, event} | ({id} if id is not None else set())
    if keep is None:
        cols = [c for c in frame.columns if c not in used]
    else:
        missing = [c for c in keep if c not in frame.columns]
        if missing:
            raise UsageError(f"keep names column(s) not in the data: {', '.join(missing)}")
        cols = [c for c in dict.fromkeys(keep) if c != event and c != id]
    created = set(GENERATED) | ({"id"} if id is None else set())
    clash = [str(c) for c in cols if c in created] + [c for c in (event, id) if c in GENERATED]
    if clash:
        raise UsageError(
            f"column(s) {', '.join(repr(c) for c in clash)} would be overwritten by the "
            f"expansion (it creates {', '.join(sorted(created))}); rename them or leave them "
            "out of keep" + (" (or pass id=...)" if id is None and "id" in clash else ""))
    return cols


def _expand(
    frame: pd.DataFrame, duration: str, event: str, id: str | None, grid: PeriodGrid,
    keep: Sequence[str] | None, zero: ZeroDuration, id_offset: int,
) -> pd.DataFrame:
    """Check and expand one frame; generated ids start after ``id_offset``."""
    cols = _keep_columns(frame, duration, event, id, keep)
    d, e = check_subjects(frame, duration, event, id, zero)
    ix = person_period_index(d, e, grid)
    id_name = id if id is not None else "id"
    ids = (frame[id].to_numpy()[ix.row] if id is not None
           else ix.row + id_offset + 1)
    head = pd.DataFrame({
        id_name: ids, "period": ix.period, "tstart": ix.tstart, "tstop": ix.tstop, event: ix.event,
    })
    if id is not None and isinstance(frame[id].dtype, pd.CategoricalDtype):
        head[id_name] = frame[id].take(ix.row).reset_index(drop=True)
    body = frame[cols].take(ix.row).reset_index(drop=True)
    return pd.concat([head, body], axis=1)


def expand_person_period(
    frame: pd.DataFrame,
    *,
    duration: str,
    event: str,
    id: str | None = None,
    cuts: Sequence[float] | np.ndarray | None = None,
    width: float | None = None,
    keep: Sequence[str] | None = None,
    zero: ZeroDuration = "error",
) -> pd.DataFrame:
    """One row per subject and period at risk, as R's ``survSplit(Surv(duration, event) ~ .)``.

    Parameters
    ----------
    frame : one row per subject.
    duration, event : time at risk (> 0) and its 0/1 event indicator.
    id : subject identifier; without it a column ``id`` numbering the rows 1..n is added.
    cuts : interior cut points c_1 < c_2 < ...: period k is (c_{k-1}, c_k], the last is open.
    width : a regular grid instead: period k is ((k-1) width, k width].
    keep : covariates to carry (default: every column but duration, event and id).
    zero : ``"error"`` refuses zero durations; ``"first"`` puts them in period 1.

    Returns
    -------
    Columns ``<id>, period (1..K), tstart, tstop, <event>`` then the kept covariates; the
    event column is 1 only in the last period of a subject with the event.

    Example
    -------
    >>> d = pd.DataFrame({"week": [3, 9], "arrest": [1, 0], "age": [20, 30]})
    >>> expand_person_period(d, duration="week", event="arrest", width=4).shape
    (4, 6)
    """
    grid = PeriodGrid.make(cuts, width)
    return _expand(frame, duration, event, id, grid, keep, zero, 0)


def iter_person_period(
    batches: Iterable[Any],
    *,
    duration: str,
    event: str,
    id: str | None = None,
    cuts: Sequence[float] | np.ndarray | None = None,
    width: float | None = None,
    keep: Sequence[str] | None = None,
    zero: ZeroDuration = "error",
) -> Iterator[pd.DataFrame]:
    """Expand subject-level chunks (DataFrames or Arrow batches) one at a time, in bounded memory.

    Concatenating the chunks gives :func:`expand_person_period` of the concatenated input;
    without ``id`` the generated ids keep counting across chunks.
    """
    grid = PeriodGrid.make(cuts, width)
    offset = 0
    for batch in batches:
        chunk = batch if isinstance(batch, pd.DataFrame) else batch.to_pandas()
        yield _expand(chunk, duration, event, id, grid, keep, zero, offset)
        offset += len(chunk)


def firm_years(
    measures: Any, window_years: int, *, keep: Sequence[str] | None = None, id: str = "firm_id",
) -> pd.DataFrame:
    """Firm-years t = 1..window from a measures frame's ``time_to_exit`` and ``event``.

    Year t covers (t-1, t] years after the end of the survey year (column ``period``; ``year``
    is the calendar year when ``survey_year`` is present). Follow-up beyond ``window_years``
    is censored; an exit in the survey year itself (time 0) counts in year 1, as the binary
    outcome counts it. ``exit_type`` is kept on the exit row only (``"none"`` elsewhere) and
    the subject-level outcomes (``exited``, ``survived``) are left out unless kept.
    """
    frame: pd.DataFrame = getattr(measures, "frame", measures)
    if isinstance(window_years, bool) or not isinstance(window_years, int | np.integer) \
            or window_years < 1:
        raise UsageError(f"window_years = {window_years!r}: give a whole number of years >= 1")
    for col in ("time_to_exit", "event"):
        if col not in frame.columns:
            raise UsageError(f"the measures frame has no '{col}' column (see build_measures)")
    t = _numeric(frame, "time_to_exit", "time_to_exit")
    ev = _numeric(frame, "event", "event")
    inside = t <= window_years
    work = frame.assign(
        time_to_exit=np.minimum(t, float(window_years)),
        event=np.where(np.isnan(ev), ev, np.where(inside, ev, 0.0)),
    )
    if keep is None:
        keep = [c for c in frame.columns if c not in (*_SUBJECT_OUTCOMES, "event", id)]
    out = expand_person_period(work, duration="time_to_exit", event="event", id=id,
                               width=1.0, keep=keep, zero="first")
    if "exit_type" in out.columns:
        out["exit_type"] = np.where(out["event"].to_numpy() == 1,
                                    out["exit_type"].astype(str), "none")
    if "survey_year" in out.columns and "year" not in out.columns:
        year = pd.to_numeric(out["survey_year"]).to_numpy(dtype=float) + out["period"].to_numpy()
        out["year"] = year.astype(np.int64) if np.isfinite(year).all() else year
    return out
