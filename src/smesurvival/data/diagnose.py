"""Say what is wrong with values that should be numbers, and spot shares given in percent.

Used by validation and measures: a cell such as ``'1.234,5'`` or ``'1994-03-15'`` in a numeric
column is an error, and the message says what it looks like and how to write it instead.
Nothing here converts a value: numbers written with separators, units or dates are never
guessed (``'1,234'`` is 1234 in one country and 1.234 in another).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import numpy as np

__all__ = ["PERCENT_NOTE", "describe_non_numeric", "in_percent"]

_NUM = r"[+-]?\d"
_DATE = re.compile(
    r"^\d{4}[-/.]\d{1,2}[-/.]\d{1,2}([ T].*)?$"  # 1994-03-15, 1994/3/15, 1994-03-15T00:00:00
    r"|^\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}( .*)?$"  # 15/03/1994, 3.15.94
    r"|^\d{4}[-/.]\d{1,2}$"  # 1994-03
    r"|^\d{4}\d{2}\d{2}$"  # 19940315
)
_EURO = re.compile(rf"^{_NUM}{{1,3}}(\.\d{{3}})+,\d+$")  # 1.234,5
_DEC_COMMA = re.compile(rf"^{_NUM}*,\d+$")  # 958,4 (1,234 is ambiguous: see below)
_THOUSANDS = re.compile(rf"^{_NUM}{{1,3}}(,\d{{3}})+(\.\d+)?$")  # 1,234.5 or 1,234,567
_SPACE_THOUSANDS = re.compile(rf"^{_NUM}{{1,3}}([ \u00a0\u202f']\d{{3}})+([.,]\d+)?$")  # 1 234,5
_PERCENT = re.compile(rf"^{_NUM}*([.,]\d+)?\s*%$")
_MISSING = re.compile(r"^([.\-?*]+|n/?a\??|none|null|missing|unknown|-9+|\.[a-z])$", re.IGNORECASE)

#: Text a report shows when an export ratio was read as a percentage.
PERCENT_NOTE = (
    "holds values from 0 to 100 (most positive ones above 1), so it is read as a percentage and "
    "divided by 100 (25 -> 0.25). If the values are shares, those above 1 are errors: fix them."
)


def describe_non_numeric(values: Iterable[object], *, year: bool = False) -> str:
    """A sentence on what the non-numeric ``values`` look like and how to write them.

    ``year`` marks a year column (dates there are named as such). Returns the generic advice
    when nothing specific is recognised.
    """
    found = {_kind(str(v).strip()) for v in values}
    advice = {
        "date": "dates; give the year alone as a whole number (1994 for 1994-03-15)"
        if year else "dates; this column takes a number, not a date",
        "decimal comma": "numbers with a decimal comma (958,4 or 1.234,5); write them with a "
        "decimal point and no thousands separators (958.4, 1234.5): re-export the file with '.' "
        "as the decimal symbol, or save it as .xlsx, which stores numbers as numbers",
        "thousands": "numbers with thousands separators (1,234.5); write them without separators "
        "(1234.5): re-export the file with plain number formatting, or save it as .xlsx",
        "percent": "percentages with a % sign; write the number alone (0.25, or 25 for a "
        "percentage)",
        "units": "numbers with units, currency or words (12 persons, 958 KRW); write the number "
        "alone, in one unit for the whole column",
        "missing": "missing-value codes (such as '.', 'n/a' or '-9'); leave a missing value empty",
    }
    kinds = [advice[k] for k in advice if k in found]
    if not kinds:
        return (
            "Use plain numbers such as 1234.5 (no thousands separators, units or text); leave a "
            "missing value empty."
        )
    return "They look like " + "; and ".join(kinds) + "."


def _kind(t: str) -> str | None:
    """What a non-numeric cell looks like (``None`` when nothing is recognised)."""
    if _DATE.match(t):
        return "date"
    if _EURO.match(t) or (_DEC_COMMA.match(t) and not _THOUSANDS.match(t)):
        return "decimal comma"
    if _THOUSANDS.match(t) or _SPACE_THOUSANDS.match(t):
        return "thousands"
    if _PERCENT.match(t):
        return "percent"
    if _MISSING.match(t):
        return "missing"
    if re.search(r"\d", t) and re.search(r"[^\d\s.,+\-]", t):
        return "units"
    return None


def in_percent(values: np.ndarray) -> bool:
    """Whether a share column was given in percent: every value within 0-100, and more than
    half of the positive values above 1 (a few values above 1 among shares are typos, not a
    percent column, and stay errors)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0 or v.min() < 0 or v.max() > 100:
        return False
    pos = v[v > 0]
    above = pos > 1
    return bool(above.any() and above.mean() > 0.5)
