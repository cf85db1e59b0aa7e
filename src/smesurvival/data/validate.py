"""Row-level validation of firm data: every broken rule with its column, file lines and values.

Checks are vectorised (numpy/pandas) so a register of millions of firms validates in seconds.
Missing values are not errors here; the sample flow accounts for them later.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from smesurvival.data.diagnose import PERCENT_NOTE, describe_non_numeric, in_percent
from smesurvival.data.flow import SampleFlow
from smesurvival.data.schema import (
    EXIT_TYPE_ALIASES,
    EXIT_TYPES,
    NUMERIC_ROLES,
    ColumnMap,
    canonical_exit_types,
    line_numbers,
    role_columns,
)
from smesurvival.errors import DataValidationError

__all__ = [
    "Issue",
    "ValidationReport",
    "coerce_flags",
    "coerce_numeric",
    "exclude_invalid",
    "validate_firms",
]

Severity = Literal["error", "warning"]
_SHOWN = 10  # file lines shown per issue
_YES = {"yes": 1.0, "y": 1.0, "true": 1.0, "no": 0.0, "n": 0.0, "false": 0.0}
SME_BAND = (5, 299)
_YEAR_ROLES = ("survey_year", "founding_year", "exit_year", "last_year_observed")
_CATEGORY_ROLES = ("industry", "region")


@dataclass(frozen=True)
class Issue:
    """One broken rule: the column, severity, first file lines (header = line 1) and a detail.

    ``positions`` holds the 0-based positions of every offending row in the validated frame.
    """

    rule: str
    column: str | None
    severity: Severity
    rows: tuple[int, ...]
    n_rows: int
    message: str = ""
    positions: np.ndarray = field(
        default_factory=lambda: np.empty(0, dtype=np.int64), repr=False, compare=False
    )

    def describe(self, source: str) -> str:
        """One paragraph: ``file: column 'x', file lines 2, 5 (2 rows): rule "..." (error). detail``."""
        where = f"{source}: column {self.column!r}" if self.column else f"{source}"
        if self.n_rows:
            shown = ", ".join(map(str, self.rows))
            more = f" and {self.n_rows - len(self.rows)} more" if self.n_rows > len(self.rows) else ""
            word = "file line" if self.n_rows == 1 else "file lines"
            noun = "row" if self.n_rows == 1 else "rows"
            where += f", {word} {shown}{more} ({self.n_rows} {noun})"
        text = f'{where}: rule "{self.rule}" ({self.severity})'
        return f"{text}. {self.message}" if self.message else text + "."

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "column": self.column,
            "severity": self.severity,
            "rows": list(self.rows),
            "n_rows": self.n_rows,
            "message": self.message,
        }


@dataclass(frozen=True)
class ValidationReport:
    """Every issue found in a data set; ``ok`` when there is no error (warnings allowed)."""

    source: str
    n_rows: int
    issues: tuple[Issue, ...]

    @property
    def errors(self) -> tuple[Issue, ...]:
        return tuple(i for i in self.issues if i.severity == "error")

    @property
    def warnings(self) -> tuple[Issue, ...]:
        return tuple(i for i in self.issues if i.severity == "warning")

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def error_rows(self) -> np.ndarray:
        """Sorted 0-based positions (``df.iloc``) of the rows failing any error rule."""
        parts = [i.positions for i in self.errors]
        return np.unique(np.concatenate(parts)) if parts else np.empty(0, dtype=np.int64)

    def summary(self) -> str:
        """One paragraph per issue, errors first (file lines count the header as line 1)."""
        if not self.issues:
            return f"{self.source}: {self.n_rows} rows checked, no problems found."
        return "\n\n".join(i.describe(self.source) for i in (*self.errors, *self.warnings))

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "n_rows": self.n_rows,
            "ok": self.ok,
            "n_errors": len(self.errors),
            "n_warnings": len(self.warnings),
            "n_error_rows": int(self.error_rows.size),
            "line_numbers": "file lines; line 1 is the header, the first data row is line 2",
            "issues": [i.to_dict() for i in self.issues],
        }

    def raise_if_errors(self) -> None:
        """Raise :class:`DataValidationError` (report attached) when any error rule is broken."""
        if self.ok:
            return
        errs = self.errors
        head = (
            f"{self.source}: the data break {len(errs)} validation rule(s) "
            f"in {self.error_rows.size} row(s); fix them and run again."
        )
        body = "\n\n".join(i.describe(self.source) for i in errs)
        raise DataValidationError(f"{head}\n\n{body}", self)


class _Issues:
    """Collects issues from boolean masks (positions -> file lines)."""

    def __init__(self, lines: np.ndarray) -> None:
        self.lines = lines
        self.items: list[Issue] = []

    def add(self, mask: Any, rule: str, column: str | None, severity: Severity, message: str = "") -> None:
        pos = np.flatnonzero(np.asarray(mask, dtype=bool))
        if pos.size:
            rows = tuple(int(x) for x in self.lines[pos[:_SHOWN]])
            self.items.append(Issue(rule, column, severity, rows, int(pos.size), message, pos))

    def column_issue(self, rule: str, column: str | None, severity: Severity, message: str) -> None:
        self.items.append(Issue(rule, column, severity, (), 0, message))


def _quote_values(values: Iterable[Any], limit: int = 5) -> str:
    vals = list(dict.fromkeys(str(v) for v in values))
    shown = ", ".join(repr(v) for v in vals[:limit])
    return shown + (f" and {len(vals) - limit} more" if len(vals) > limit else "")


def _to_float(s: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Coerce a column to float64: (values, mask of given-but-not-a-plain-number cells)."""
    n = len(s)
    if pd.api.types.is_bool_dtype(s.dtype):
        return s.to_numpy(dtype=float, na_value=np.nan), np.zeros(n, dtype=bool)
    if pd.api.types.is_numeric_dtype(s.dtype) and not isinstance(s.dtype, pd.CategoricalDtype):
        return s.to_numpy(dtype=float, na_value=np.nan), np.zeros(n, dtype=bool)
    if pd.api.types.is_datetime64_any_dtype(s.dtype) or isinstance(s.dtype, pd.PeriodDtype):
        return np.full(n, np.nan), s.notna().to_numpy()
    codes, uniques = pd.factorize(s, use_na_sentinel=True)
    text = pd.Series(uniques, dtype="string").str.strip()
    text = text.mask(text == "")
    num = pd.to_numeric(text, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    bad_u = (text.notna().to_numpy() & np.isnan(num))
    vals = np.where(codes >= 0, num[np.maximum(codes, 0)] if len(num) else np.nan, np.nan)
    bad = (codes >= 0) & (bad_u[np.maximum(codes, 0)] if len(bad_u) else False)
    return vals.astype(float), np.asarray(bad, dtype=bool)


def coerce_numeric(
    df: pd.DataFrame, columns: ColumnMap | Iterable[str], *, roles: dict[str, str] | None = None
) -> tuple[pd.DataFrame, tuple[Issue, ...]]:
    """Coerce columns to float64 (plain numbers only; empty -> missing).

    ``columns`` is a :class:`ColumnMap` (its numeric roles present in ``df``) or column names.
    Returns the numeric frame (same index) and an error issue per column holding text that
    is not a plain number, or infinite values.
    """
    if isinstance(columns, ColumnMap):
        pairs = role_columns(columns.restricted_to(df), NUMERIC_ROLES)
    else:
        pairs = [((roles or {}).get(c, c), c) for c in columns]
    out: dict[str, np.ndarray] = {}
    issues = _Issues(line_numbers(df))
    for role, col in pairs:
        if col in out:
            continue
        s = df[col]
        vals, bad = _to_float(s)
        if bad.any():
            sample = s.to_numpy()[bad][:200]
            issues.add(
                bad, f"{role} must be a number", col, "error",
                f"Non-numeric value(s): {_quote_values(sample)}. "
                + describe_non_numeric(sample, year=role in _YEAR_ROLES),
            )
        inf = np.isinf(vals)
        if inf.any():
            issues.add(inf, f"{role} must be a finite number", col, "error", "Infinite value(s) found.")
            vals = np.where(inf, np.nan, vals)
        out[col] = vals
    return pd.DataFrame(out, index=df.index), tuple(issues.items)


def coerce_flags(s: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Yes/no or count column -> float (yes/y/true -> 1, no/n/false -> 0, numbers kept).

    Returns (values, mask of unrecognised non-missing cells).
    """
    if pd.api.types.is_bool_dtype(s.dtype) or (
        pd.api.types.is_numeric_dtype(s.dtype) and not isinstance(s.dtype, pd.CategoricalDtype)
    ):
        return _to_float(s)
    codes, uniques = pd.factorize(s, use_na_sentinel=True)
    text = pd.Series(uniques, dtype="string").str.strip().str.lower()
    word = text.map(_YES).astype("Float64").to_numpy(dtype=float, na_value=np.nan)
    num = pd.to_numeric(text.mask(text == ""), errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    val_u = np.where(np.isnan(word), num, word)
    given_u = (text.notna() & (text != "")).to_numpy()
    bad_u = given_u & (np.isnan(val_u) | np.isinf(val_u))
    safe = np.maximum(codes, 0)
    vals = np.where(codes >= 0, val_u[safe] if len(val_u) else np.nan, np.nan)
    bad = (codes >= 0) & (bad_u[safe] if len(bad_u) else False)
    return vals.astype(float), np.asarray(bad, dtype=bool)


def validate_firms(
    df: pd.DataFrame,
    columns: ColumnMap | None = None,
    *,
    source: str = "<data>",
    require_roles: bool = False,
) -> ValidationReport:
    """Check firm data against the schema's rules; return every issue (never raises on data).

    Only the mapped columns present in ``df`` are checked. With ``require_roles`` a missing
    required role (or role group, or explicitly mapped column) is an error issue; without it,
    explicitly mapped columns that are missing are warnings and required roles are not checked.
    """
    cmap = columns if columns is not None else ColumnMap.default()
    lines = line_numbers(df)
    col_issues = _Issues(lines)
    _missing_columns(df, cmap, col_issues, require_roles)
    cm = cmap.restricted_to(df)
    num, num_issues = coerce_numeric(df, cm)
    found = _Issues(lines)
    _identity_rules(df, cm, found)
    _value_rules(df, cm, num, found)
    _exit_rules(df, cm, num, found)
    _warning_rules(cm, num, found)
    _sample_warnings(df, cm, num, found)
    issues = (*col_issues.items, *num_issues, *found.items)
    ordered = tuple(i for i in issues if i.severity == "error") + tuple(
        i for i in issues if i.severity == "warning"
    )
    return ValidationReport(source, len(df), ordered)


def _missing_columns(df: pd.DataFrame, cmap: ColumnMap, out: _Issues, require: bool) -> None:
    cols = ", ".join(map(str, df.columns))
    if require:
        for role, what in cmap.missing_requirements(df):
            col = cmap.get(role)
            name = col[0] if isinstance(col, tuple) and col else (col if isinstance(col, str) else role)
            out.column_issue(
                "required column missing", name, "error",
                f"Needed: {what}. The data's columns are: {cols}.",
            )
    else:
        for role, missing in cmap.missing_in(df).items():
            if role in cmap.explicit:
                for name in missing:
                    out.column_issue(
                        "mapped column missing", name, "warning",
                        f"Role {role!r} is mapped to {name!r}, which the data lack. "
                        f"The data's columns are: {cols}.",
                    )


def _identity_rules(df: pd.DataFrame, cm: ColumnMap, out: _Issues) -> None:
    if cm.firm_id is None:
        return
    s = df[cm.firm_id]
    missing = s.isna().to_numpy()
    if not pd.api.types.is_numeric_dtype(s.dtype):
        missing = missing | (s.astype("string").str.strip() == "").fillna(False).to_numpy(dtype=bool)
    out.add(missing, "firm_id must not be missing", cm.firm_id, "error",
            "Every row needs a firm identifier.")
    dup = s.duplicated(keep=False).to_numpy() & ~missing
    if dup.any():
        ids = _quote_values(pd.unique(s.to_numpy()[dup])[:50])
        out.add(dup, "firm_id must be unique", cm.firm_id, "error",
                f"Duplicate id(s): {ids}. Each firm appears once in a firm-level data set.")


def _name(cm: ColumnMap, role: str) -> str | None:
    """The single column of a scalar role (None when unmapped)."""
    col = cm.get(role)
    return col if isinstance(col, str) else None


def _value_rules(df: pd.DataFrame, cm: ColumnMap, num: pd.DataFrame, out: _Issues) -> None:
    def col(role: str) -> np.ndarray | None:
        name = cm.get(role)
        return num[name].to_numpy() if isinstance(name, str) else None

    this_year = dt.date.today().year
    for role in _YEAR_ROLES:
        v = col(role)
        if v is None:
            continue
        name = _name(cm, role)
        out.add(np.isfinite(v) & (v != np.round(v)), f"{role} must be a whole number (a year)",
                name, "error")
        short = np.isfinite(v) & (v < 1000)
        if short.any():
            out.add(short, f"{role} must be a four-digit year", name, "error",
                    f"Value(s) such as {_quote_values(_ints(np.unique(v[short])[:50]))} are not calendar years; "
                    "two-digit years (94) are ambiguous: write the full year (1994).")
        future = v > this_year
        if future.any():
            out.add(future, f"{role} must not be in the future", name, "error",
                    f"Year(s) after {this_year}: {_quote_values(_ints(np.unique(v[future])[:50]))}. Survey, "
                    "founding, exit and observation years cannot lie in the future: check for "
                    "typos.")
    for role in ("employees", "sales", "export_sales", "rd_employees", "rd_expenditure"):
        v = col(role)
        if v is not None:
            out.add(v < 0, f"{role} must be a non-negative number", _name(cm, role), "error")
    for name in cm.innovation_items:
        out.add(num[name].to_numpy() < 0, "innovation_items must be non-negative counts", name, "error")
    for name in cm.rd_alliance:
        vals, bad = coerce_flags(df[name])
        if bad.any():
            out.add(bad, "rd_alliance must be yes/no or a non-negative count", name, "error",
                    f"Unrecognised value(s): {_quote_values(df[name].to_numpy()[bad][:200])}; "
                    "accepted: yes/no, y/n, true/false, 1/0, or counts.")
        out.add(vals < 0, "rd_alliance must be yes/no or a non-negative count", name, "error",
                "Negative count(s).")
    exp, sales = col("export_sales"), col("sales")
    if exp is not None and sales is not None:
        out.add(exp > sales, "export_sales must not exceed sales", cm.export_sales, "error",
                f"Export sales are larger than total sales (column {cm.sales!r}).")
    ratio = col("export_ratio")
    if ratio is not None and in_percent(ratio):
        out.column_issue("export_ratio given in percent", cm.export_ratio, "warning",
                         f"Column {cm.export_ratio!r} {PERCENT_NOTE}")
    elif ratio is not None:
        out.add((ratio < 0) | (ratio > 1), "export_ratio must be between 0 and 1", cm.export_ratio,
                "error", "Give the export share as a fraction (0.25 for 25%). A column in percent "
                "(0-100) is recognised and converted only when most positive values exceed 1 "
                "and none exceeds 100.")
    rde, emp = col("rd_employees"), col("employees")
    if rde is not None and emp is not None:
        out.add(rde > emp, "rd_employees must not exceed employees", cm.rd_employees, "error",
                f"More R&D employees than employees (column {cm.employees!r}).")
    sy, fy = col("survey_year"), col("founding_year")
    if sy is not None and fy is not None:
        out.add(fy > sy, "founding_year must not be after survey_year", cm.founding_year, "error",
                f"The firm was founded after the survey year (column {cm.survey_year!r}).")
    lyo = col("last_year_observed")
    if lyo is not None and sy is not None:
        out.add(lyo < sy, "last_year_observed must not be before survey_year",
                cm.last_year_observed, "error")
    w = col("weight")
    if w is not None:
        out.add(w <= 0, "weight must be positive", cm.weight, "error",
                "Survey weights must be greater than 0; drop rows that should not count.")


def _exit_rules(df: pd.DataFrame, cm: ColumnMap, num: pd.DataFrame, out: _Issues) -> None:
    ey = num[cm.exit_year].to_numpy() if cm.exit_year else None
    sy = num[cm.survey_year].to_numpy() if cm.survey_year else None
    fy = num[cm.founding_year].to_numpy() if cm.founding_year else None
    if ey is not None:
        if fy is not None:
            out.add(ey < fy, "exit_year must not be before founding_year", cm.exit_year, "error",
                    f"The firm exited before it was founded (column {cm.founding_year!r}).")
        if sy is not None:
            out.add(ey < sy, "exit_year must not be before survey_year", cm.exit_year, "error",
                    f"The firm exited before it was surveyed (column {cm.survey_year!r}).")
        if cm.last_year_observed:
            lyo = num[cm.last_year_observed].to_numpy()
            out.add(ey > lyo, "exit_year must not be after last_year_observed", cm.exit_year,
                    "error", f"An exit cannot be seen after the last year observed "
                    f"(column {cm.last_year_observed!r}).")
    if cm.exit_type:
        canon, unknown = canonical_exit_types(df[cm.exit_type])
        accepted = "; ".join(
            f"{t} (or {', '.join(a for a, c in EXIT_TYPE_ALIASES.items() if c == t and a != t)})"
            if any(c == t and a != t for a, c in EXIT_TYPE_ALIASES.items()) else t
            for t in EXIT_TYPES
        )
        if unknown.any():
            out.add(unknown, f"exit_type must be one of {', '.join(EXIT_TYPES)}", cm.exit_type, "error",
                    f"Unknown value(s): {_quote_values(df[cm.exit_type].to_numpy()[unknown][:200])}. "
                    f"Accepted, in any case: {accepted}; leave it empty when the firm did not exit.")
        has_type = canon.notna().to_numpy() | unknown
        if ey is not None:
            has_year = ~np.isnan(ey)
            out.add(has_type & ~has_year, "exit_type requires exit_year", cm.exit_type, "error",
                    f"An exit type is given but the exit year (column {cm.exit_year!r}) is empty.")
            out.add(has_year & ~has_type, "exit_year requires exit_type", cm.exit_year, "error",
                    f"An exit year is given but the exit type (column {cm.exit_type!r}) is empty.")
    if cm.exit_month:
        m = num[cm.exit_month].to_numpy()
        out.add(np.isfinite(m) & ((m < 1) | (m > 12) | (m != np.round(m))),
                "exit_month must be a whole number from 1 to 12", cm.exit_month, "error")
        if ey is not None:
            out.add(np.isfinite(m) & np.isnan(ey), "exit_month requires exit_year", cm.exit_month,
                    "error", f"An exit month is given but the exit year (column {cm.exit_year!r}) is empty.")


def _warning_rules(cm: ColumnMap, num: pd.DataFrame, out: _Issues) -> None:
    def col(role: str) -> np.ndarray | None:
        name = cm.get(role)
        return num[name].to_numpy() if isinstance(name, str) else None

    lo, hi = SME_BAND
    emp = col("employees")
    if emp is not None:
        out.add((emp > hi) | (emp < lo), f"employees should be within the SME band {lo}-{hi}",
                cm.employees, "warning",
                f"Firms with fewer than {lo} or more than {hi} employees are outside the study's "
                "SME definition; check the values or filter the data.")
    sy, fy = col("survey_year"), col("founding_year")
    if sy is not None and fy is not None:
        out.add((sy - fy > 100) & (fy >= 1000), "firm age should not exceed 100 years",
                cm.founding_year, "warning",
                f"Firm age = {cm.survey_year} - {cm.founding_year} is above 100 years.")
    spend = col("rd_expenditure")
    if spend is not None and emp is not None:
        with np.errstate(divide="ignore", invalid="ignore"):
            per = spend / emp
        ok = np.isfinite(per) & (per > 0)
        if ok.any():
            med = float(np.median(per[ok]))
            out.add(ok & (per > 1000 * med), "R&D expenditure per employee far above the rest",
                    cm.rd_expenditure, "warning",
                    f"More than 1000 times the median R&D spend per employee ({med:.4g}); "
                    "check the units.")
    ratio = col("export_ratio")
    exp, sales = col("export_sales"), col("sales")
    if exp is not None and sales is not None:
        out.add((exp == sales) & (sales > 0), "export_ratio of exactly 1 is unusual",
                cm.export_sales, "warning", "Export sales equal total sales (all sales exported).")
    elif ratio is not None:
        full = 100.0 if in_percent(ratio) else 1.0
        out.add(ratio == full, "export_ratio of exactly 1 is unusual", cm.export_ratio, "warning",
                "All sales exported.")
    ey = col("exit_year")
    if ey is not None and sy is not None:
        out.add(ey == sy, "exit in the survey year itself", cm.exit_year, "warning",
                "The firm exited in the year it was surveyed; its time to exit is set to 0.")


def _sample_warnings(df: pd.DataFrame, cm: ColumnMap, num: pd.DataFrame, out: _Issues) -> None:
    """Warnings about the data set as a whole: categories of one firm, no exits, all exits."""
    for role in _CATEGORY_ROLES:
        name = _name(cm, role)
        if name is None:
            continue
        text = df[name].astype("string").str.strip()
        text = text.mask(text == "")
        counts = text.value_counts()
        singles = counts.index[counts.to_numpy() == 1]
        if len(singles) and len(counts) > 1:
            out.add(text.isin(singles).fillna(False).to_numpy(dtype=bool),
                    f"{role} category with a single firm", name, "warning",
                    f"Categories with one firm: {_quote_values(singles[:50])}. As a factor "
                    f"(C({name})) such a category's dummy fits that firm's outcome exactly "
                    "(quasi-complete separation), so the model cannot be estimated: merge it into "
                    "a related category, or drop the firm.")
    if cm.exit_year is None or len(df) < 2:
        return
    ey = num[cm.exit_year].to_numpy()
    if np.isnan(ey).all():
        out.column_issue("no firm has an exit year", cm.exit_year, "warning",
                         f"Column {cm.exit_year!r} is empty in every row: every firm survives, and "
                         "a survival model needs exits. Is it the right column?")
    elif not np.isnan(ey).any():
        out.column_issue("every firm has an exit year", cm.exit_year, "warning",
                         f"Column {cm.exit_year!r} is filled in every row: no firm survives to the "
                         "end of its follow-up, so a binary survival outcome may not vary within "
                         "the window.")


def _ints(v: np.ndarray) -> list[str]:
    """Whole numbers as text without '.0'."""
    return [str(int(x)) if float(x).is_integer() else str(x) for x in v]


def exclude_invalid(
    df: pd.DataFrame, report: ValidationReport, flow: SampleFlow | None = None
) -> tuple[pd.DataFrame, SampleFlow]:
    """Drop rows failing error rules, counting each under the first rule it breaks.

    The index is kept, so later line numbers still refer to the file. Column-level errors
    (a required column missing) cannot be fixed by dropping rows and raise
    :class:`DataValidationError`.
    """
    flow = flow if flow is not None else SampleFlow(len(df))
    if any(i.n_rows == 0 for i in report.errors):
        report.raise_if_errors()
    taken = np.zeros(len(df), dtype=bool)
    for issue in report.errors:
        new = issue.positions[~taken[issue.positions]]
        taken[new] = True
        flow = flow.drop(f"failed validation: {issue.rule}", int(new.size), "validation", issue.column)
    return df.iloc[np.flatnonzero(~taken)], flow
