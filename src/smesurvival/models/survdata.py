"""Checks shared by the time-to-event estimators: durations, event codes, entry times."""

from __future__ import annotations

import numpy as np
import pandas as pd

from smesurvival.errors import DataValidationError, UsageError


def file_lines(mask: np.ndarray, rows: np.ndarray | None = None) -> str:
    """'file line(s) 3, 9 (2 row(s))' for the rows where ``mask`` holds (``rows``: their data
    positions; line = position + 2, the header being line 1)."""
    idx = np.flatnonzero(mask)
    shown = idx if rows is None else rows[idx]
    first = ", ".join(str(int(i) + 2) for i in shown[:10])
    more = f" and {idx.size - 10} more" if idx.size > 10 else ""
    return f"file line(s) {first}{more} ({idx.size} row(s))"


def numeric_column(data: pd.DataFrame, col: str, role: str, rows: np.ndarray) -> np.ndarray:
    """A column as float, with an error naming the role, the column and the bad lines."""
    if col not in data.columns:
        raise UsageError(f"{role} column '{col}' is not in the data; columns are: {', '.join(map(str, data.columns))}")
    raw = data[col].iloc[rows]
    vals = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float)
    bad = np.isnan(vals) & raw.notna().to_numpy()
    if bad.any():
        raise DataValidationError(f"{role} column '{col}': non-numeric values at {file_lines(bad, rows)}")
    return vals


def check_durations(time: np.ndarray, col: str, rows: np.ndarray, entry: np.ndarray | None = None,
                    entry_col: str | None = None) -> None:
    """Durations must be positive and finite; entry (start) must be below exit (stop)."""
    bad = ~np.isfinite(time) | (time <= 0)
    if bad.any():
        raise DataValidationError(
            f"column '{col}': durations must be positive numbers; rule broken at {file_lines(bad, rows)}"
        )
    if entry is not None:
        bad = ~np.isfinite(entry) | (entry < 0) | (entry >= time)
        if bad.any():
            raise DataValidationError(
                f"column '{entry_col}': the start (entry) time must be >= 0 and below the stop "
                f"time in '{col}'; rule broken at {file_lines(bad, rows)}"
            )


def event_indicator(event: np.ndarray, col: str, rows: np.ndarray,
                    codes: tuple[float, ...] = (0.0, 1.0)) -> np.ndarray:
    """Event codes must be in the declared set; returns the values unchanged as float."""
    bad = ~np.isin(event, codes)
    if bad.any():
        found = ", ".join(repr(v) for v in sorted(set(np.unique(event[bad]).tolist()))[:5])
        raise DataValidationError(
            f"column '{col}': event codes must be one of {', '.join(f'{c:g}' for c in codes)}; "
            f"found {found} at {file_lines(bad, rows)}"
        )
    return event
