"""The firm schema: the roles a firm data set fills, and the map from roles to file columns.

A *role* is what a column means to the study (``employees``, ``exit_year``, ...); a
:class:`ColumnMap` says which column of the user's file plays it, so any file layout works.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np
import pandas as pd

from smesurvival.errors import DataValidationError, SpecError

__all__ = [
    "ColumnMap",
    "EXIT_TYPES",
    "EXIT_TYPE_ALIASES",
    "LIST_ROLES",
    "NUMERIC_ROLES",
    "REQUIRED_ROLES",
    "ROLES",
    "canonical_exit_types",
    "line_numbers",
]

#: Every role, in schema order.
ROLES: tuple[str, ...] = (
    "firm_id",
    "survey_year",
    "founding_year",
    "industry",
    "region",
    "employees",
    "sales",
    "export_sales",
    "export_ratio",
    "rd_employees",
    "rd_expenditure",
    "innovation_items",
    "rd_alliance",
    "weight",
    "exit_year",
    "exit_month",
    "exit_type",
    "last_year_observed",
)
#: Roles without which no study can run.
REQUIRED_ROLES: tuple[str, ...] = ("firm_id", "survey_year", "founding_year", "industry", "employees")
#: Roles filled by a list of columns.
LIST_ROLES: tuple[str, ...] = ("innovation_items", "rd_alliance")
#: Roles whose values must be numbers (``rd_alliance`` may also be yes/no text).
NUMERIC_ROLES: tuple[str, ...] = (
    "survey_year",
    "founding_year",
    "employees",
    "sales",
    "export_sales",
    "export_ratio",
    "rd_employees",
    "rd_expenditure",
    "innovation_items",
    "weight",
    "exit_year",
    "exit_month",
    "last_year_observed",
)

#: Canonical exit types.
EXIT_TYPES: tuple[str, ...] = ("failure", "acquisition", "other")
#: Accepted spellings (compared case-insensitively, surrounding spaces ignored) -> canonical type.
EXIT_TYPE_ALIASES: dict[str, str] = {
    "failure": "failure",
    "closure": "failure",
    "closed": "failure",
    "bankruptcy": "failure",
    "failed": "failure",
    "acquisition": "acquisition",
    "merger": "acquisition",
    "acquired": "acquisition",
    "merged": "acquisition",
    "m&a": "acquisition",
    "other": "other",
}


@dataclass(frozen=True)
class ColumnMap:
    """Role -> column name (``None`` = unmapped; list roles hold a tuple of column names).

    ``explicit`` names the roles the user set (e.g. in a spec's ``[columns]`` table); roles left
    at their default and missing from a file are quietly unmapped by :meth:`columns_in`.
    """

    firm_id: str | None = "firm_id"
    survey_year: str | None = "survey_year"
    founding_year: str | None = "founding_year"
    industry: str | None = "industry"
    region: str | None = "region"
    employees: str | None = "employees"
    sales: str | None = "sales"
    export_sales: str | None = "export_sales"
    export_ratio: str | None = "export_ratio"
    rd_employees: str | None = "rd_employees"
    rd_expenditure: str | None = "rd_expenditure"
    innovation_items: tuple[str, ...] = ("patents", "new_products", "certified_tech")
    rd_alliance: tuple[str, ...] = ("rd_alliance",)
    weight: str | None = "weight"
    exit_year: str | None = "exit_year"
    exit_month: str | None = "exit_month"
    exit_type: str | None = "exit_type"
    last_year_observed: str | None = "last_year_observed"
    explicit: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def default(cls) -> ColumnMap:
        """The column names of the built-in cohort (``smesurvival simulate``)."""
        return cls()

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ColumnMap:
        """Build a map from a TOML ``[columns]`` table; unnamed roles keep their defaults.

        A value of ``""`` (or ``[]`` for list roles) unmaps an optional role.
        """
        unknown = sorted(set(d) - set(ROLES))
        if unknown:
            raise SpecError(
                f"unknown column role(s) {', '.join(map(repr, unknown))} in the column map; "
                f"valid roles are: {', '.join(ROLES)}"
            )
        values: dict[str, Any] = {}
        for role, value in d.items():
            if role in LIST_ROLES:
                if isinstance(value, str):
                    value = (value,) if value else ()
                if not isinstance(value, list | tuple) or not all(isinstance(v, str) and v for v in value):
                    raise SpecError(
                        f"column role {role!r} takes a column name or a list of column names, "
                        f"got {value!r}"
                    )
                values[role] = tuple(value)
            else:
                if not isinstance(value, str):
                    raise SpecError(f"column role {role!r} takes one column name (text), got {value!r}")
                if not value and role in REQUIRED_ROLES:
                    raise SpecError(f"column role {role!r} is required and cannot be unmapped")
                values[role] = value or None
        return cls(**values, explicit=frozenset(d))

    def get(self, role: str) -> str | tuple[str, ...] | None:
        """The column(s) mapped to ``role``."""
        if role not in ROLES:
            raise SpecError(f"unknown column role {role!r}; valid roles are: {', '.join(ROLES)}")
        return getattr(self, role)

    def items(self) -> list[tuple[str, str | tuple[str, ...] | None]]:
        """(role, column(s)) pairs in schema order."""
        return [(r, getattr(self, r)) for r in ROLES]

    def to_dict(self) -> dict[str, Any]:
        """Role -> column (lists for list roles); unmapped roles are left out."""
        out: dict[str, Any] = {}
        for role, col in self.items():
            if isinstance(col, tuple):
                if col:
                    out[role] = list(col)
            elif col is not None:
                out[role] = col
        return out

    def mapped(self) -> dict[str, tuple[str, ...]]:
        """Role -> tuple of its columns, for every role with at least one column."""
        out: dict[str, tuple[str, ...]] = {}
        for role, col in self.items():
            cols = col if isinstance(col, tuple) else ((col,) if col else ())
            if cols:
                out[role] = cols
        return out

    def missing_in(self, df: pd.DataFrame) -> dict[str, tuple[str, ...]]:
        """Role -> mapped column names that ``df`` lacks."""
        present = set(map(str, df.columns))
        out: dict[str, tuple[str, ...]] = {}
        for role, cols in self.mapped().items():
            gone = tuple(c for c in cols if c not in present)
            if gone:
                out[role] = gone
        return out

    def restricted_to(self, df: pd.DataFrame) -> ColumnMap:
        """The map with every column absent from ``df`` unmapped (never raises)."""
        present = set(map(str, df.columns))
        changes: dict[str, Any] = {}
        for role, col in self.items():
            if isinstance(col, tuple):
                kept = tuple(c for c in col if c in present)
                if kept != col:
                    changes[role] = kept
            elif col is not None and col not in present:
                changes[role] = None
        return replace(self, **changes) if changes else self

    def missing_requirements(self, df: pd.DataFrame) -> list[tuple[str, str]]:
        """(role, explanation) for each required role or role group ``df`` cannot fill."""
        have = self.restricted_to(df)
        problems: list[tuple[str, str]] = []
        missing = self.missing_in(df)
        for role in REQUIRED_ROLES:
            if getattr(have, role) is None:
                problems.append((role, f"required role {role!r} (column {getattr(self, role)!r})"))
        for role, cols in missing.items():
            if role in self.explicit and role not in REQUIRED_ROLES:
                problems.append((role, f"role {role!r} mapped to column(s) {', '.join(map(repr, cols))}"))
        if have.export_ratio is None and (have.export_sales is None or have.sales is None):
            problems.append(
                ("export_ratio", "export data: either export_sales and sales, or export_ratio")
            )
        if have.rd_employees is None and have.rd_expenditure is None:
            problems.append(("rd_employees", "R&D data: rd_employees or rd_expenditure (or both)"))
        return problems

    def columns_in(self, df: pd.DataFrame) -> ColumnMap:
        """Check the mapped columns exist in ``df`` and return the map restricted to them.

        Raises :class:`DataValidationError` naming the missing column(s), their role and the
        file's columns when a required role, a required group, or an explicitly mapped role
        cannot be filled. Optional roles left at their default are simply unmapped.
        """
        problems = self.missing_requirements(df)
        if problems:
            raise DataValidationError(_missing_message(problems, self, df))
        return self.restricted_to(df)


def _missing_message(problems: list[tuple[str, str]], cmap: ColumnMap, df: pd.DataFrame) -> str:
    """One paragraph naming each missing column/role, with close matches among ``df``'s columns."""
    columns = [str(c) for c in df.columns]
    parts = []
    for role, what in problems:
        col = cmap.get(role)
        wanted = col if isinstance(col, tuple) else ((col,) if col else (role,))
        hints = sorted({m for w in wanted for m in difflib.get_close_matches(w, columns, n=3, cutoff=0.6)})
        hint = f" (did you mean {', '.join(map(repr, hints))}?)" if hints else ""
        parts.append(f"{what} not found{hint}")
    shown = ", ".join(columns[:40]) + (f", ... ({len(columns)} in all)" if len(columns) > 40 else "")
    return (
        "the data lack column(s) the study needs: "
        + "; ".join(parts)
        + f". The data's columns are: {shown}. Rename the columns or map them in the spec's "
        "[columns] table (role = \"column name\")."
    )


def canonical_exit_types(values: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """Map exit-type spellings to canonical types (vectorised).

    Returns the canonical series (missing where no exit type is given or it is unknown) and a
    boolean array marking values that are given but not recognised.
    """
    text = values.astype("string").str.strip().str.lower()
    given = text.notna() & (text != "")
    canon = text.map(EXIT_TYPE_ALIASES)
    unknown = (given & canon.isna()).to_numpy(dtype=bool)
    return canon.astype("string"), unknown


def line_numbers(df: pd.DataFrame) -> np.ndarray:
    """File line numbers of ``df``'s rows (header = line 1, first data row = line 2).

    Uses the integer index when it is a reader's index or a subset of one (so rows dropped
    earlier keep their original line numbers); otherwise the row position.
    """
    idx = df.index
    if isinstance(idx, pd.RangeIndex) and idx.step == 1 and idx.start >= 0:
        return np.arange(idx.start, idx.stop, dtype=np.int64) + 2
    if pd.api.types.is_integer_dtype(idx.dtype) and idx.is_unique and (len(idx) == 0 or idx.min() >= 0):
        return idx.to_numpy(dtype=np.int64) + 2
    return np.arange(len(df), dtype=np.int64) + 2


def role_columns(cmap: ColumnMap, roles: Iterable[str]) -> list[tuple[str, str]]:
    """(role, column) pairs for the mapped columns of ``roles`` (list roles expanded)."""
    out: list[tuple[str, str]] = []
    mapped = cmap.mapped()
    for role in roles:
        for col in mapped.get(role, ()):
            out.append((role, col))
    return out


def _check_fields() -> None:
    """Guard that the dataclass fields and :data:`ROLES` agree (run at import)."""
    names = tuple(f.name for f in fields(ColumnMap) if f.name != "explicit")
    if names != ROLES:  # pragma: no cover - developer error
        raise RuntimeError("ColumnMap fields and ROLES disagree")


_check_fields()
