"""Column roles for an uploaded file: suggestions by name, the user's choices, and validation.

A mapping is ``role -> column`` (``role -> [columns]`` for list roles); only columns of the file
and roles of the schema are accepted. :func:`validation_view` runs the schema's validation with
the mapping and returns what the validation page shows, offending rows included.
"""

from __future__ import annotations

import difflib
import re
from typing import Any

import numpy as np
import pandas as pd

from smesurvival.data.schema import LIST_ROLES, REQUIRED_ROLES, ROLES, ColumnMap
from smesurvival.data.validate import ValidationReport, validate_firms
from smesurvival.errors import SmeSurvivalError, UsageError

#: Other names a role's column often has (compared after normalising case and punctuation).
ALIASES: dict[str, tuple[str, ...]] = {
    "firm_id": ("id", "firm", "firmid", "company_id", "company", "enterprise_id", "bizno"),
    "survey_year": ("year", "surveyyear", "wave_year", "obs_year"),
    "founding_year": ("founded", "year_founded", "foundation_year", "establishment_year",
                      "year_established", "birth_year", "start_year"),
    "industry": ("sector", "industry_code", "nace", "isic", "ksic", "sic"),
    "region": ("province", "state", "area", "location"),
    "employees": ("employment", "n_employees", "num_employees", "headcount", "emp", "workers"),
    "sales": ("revenue", "turnover", "total_sales", "revenues"),
    "export_sales": ("exports", "export", "export_revenue", "foreign_sales"),
    "export_ratio": ("export_share", "export_intensity", "exports_share"),
    "rd_employees": ("rd_staff", "rnd_employees", "r_d_employees", "research_staff"),
    "rd_expenditure": ("rd_spend", "rd_spending", "rnd_expenditure", "r_d_expenditure", "rd_expenses"),
    "weight": ("wgt", "survey_weight", "sampling_weight", "pweight"),
    "exit_year": ("year_exit", "exityear", "closure_year", "death_year"),
    "exit_month": ("month_exit", "exitmonth", "closure_month"),
    "exit_type": ("exit_kind", "exit_reason", "exit_mode"),
    "last_year_observed": ("last_year", "last_observed", "lastyear", "censor_year"),
}
LIST_ALIASES: dict[str, tuple[str, ...]] = {
    "innovation_items": ("patents", "new_products", "certified_tech", "patent", "innovations",
                         "new_product", "certifications"),
    "rd_alliance": ("rd_alliance", "alliance", "rd_cooperation", "rd_partner", "cooperation"),
}
ROLE_LABELS: dict[str, str] = {
    "firm_id": "Firm identifier", "survey_year": "Survey year", "founding_year": "Founding year",
    "industry": "Industry", "region": "Region", "employees": "Employees", "sales": "Sales",
    "export_sales": "Export sales", "export_ratio": "Export ratio (0–1), if no export sales",
    "rd_employees": "R&D employees", "rd_expenditure": "R&D expenditure",
    "innovation_items": "Innovation items (several columns)",
    "rd_alliance": "R&D alliance (yes/no; several columns allowed)", "weight": "Survey weight",
    "exit_year": "Exit year", "exit_month": "Exit month", "exit_type": "Exit type",
    "last_year_observed": "Last year observed",
}
_MAX_ROWS_SHOWN = 20


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", str(name).lower()).strip("_")


def suggest(columns: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """A mapping guessed from column names: exact names, known aliases, then close spellings."""
    norm = {_norm(c): c for c in columns}
    taken: set[str] = set()
    out: dict[str, Any] = {}

    def pick(candidates: list[str]) -> str | None:
        for cand in candidates:
            col = norm.get(cand)
            if col is not None and col not in taken:
                taken.add(col)
                return col
        return None

    for role in ROLES:  # exact names first, so aliases cannot steal a column named for a role
        if role not in LIST_ROLES and (col := pick([role])) is not None:
            out[role] = col
    for role in ROLES:
        if role in LIST_ROLES or role in out:
            continue
        col = pick(list(ALIASES.get(role, ())))
        if col is None:
            free = [n for n, c in norm.items() if c not in taken]
            close = difflib.get_close_matches(role, free, n=1, cutoff=0.85)
            col = pick(close)
        out[role] = col
    for role in LIST_ROLES:
        cols = [norm[a] for a in LIST_ALIASES[role] if a in norm and norm[a] not in taken]
        taken.update(cols)
        out[role] = cols
    return out


def parse_mapping(raw: dict[str, Any], columns: tuple[str, ...]) -> dict[str, Any]:
    """Check a submitted mapping: known roles, existing columns, no column used twice."""
    unknown = sorted(set(raw) - set(ROLES))
    if unknown:
        raise UsageError(f"unknown role(s) {', '.join(map(repr, unknown))}; roles are {', '.join(ROLES)}")
    present = set(columns)
    out: dict[str, Any] = {}
    used: dict[str, str] = {}
    for role in ROLES:
        value = raw.get(role)
        cols = ([value] if isinstance(value, str) else list(value or [])) if value is not None else []
        cols = [c for c in cols if c != ""]
        for c in cols:
            if not isinstance(c, str) or c not in present:
                raise UsageError(f"role {role!r}: {c!r} is not a column of this data set")
            if c in used:
                raise UsageError(f"column {c!r} is mapped to both {used[c]!r} and {role!r}")
            used[c] = role
        if role in LIST_ROLES:
            out[role] = cols
        elif len(cols) > 1:
            raise UsageError(f"role {role!r} takes one column; got {len(cols)}")
        else:
            out[role] = cols[0] if cols else None
    return out


def column_map(mapping: dict[str, Any], columns: tuple[str, ...]) -> dict[str, Any]:
    """The spec's ``[columns]`` table for a mapping: every mapped role, and unmapped roles whose
    default column name exists in the file set to ``""`` (so they stay unmapped)."""
    present = set(columns)
    default = ColumnMap.default()
    out: dict[str, Any] = {}
    for role in ROLES:
        value = mapping.get(role)
        if value:
            out[role] = list(value) if role in LIST_ROLES else value
            continue
        if role in REQUIRED_ROLES:
            continue  # left out: validation reports the missing required role
        d = default.get(role)
        defaults = d if isinstance(d, tuple) else ((d,) if d else ())
        if any(c in present for c in defaults) and role != "export_ratio":
            out[role] = [] if role in LIST_ROLES else ""
    return out


def measure_needs(mapping: dict[str, Any], rd_intensity: str) -> list[str]:
    """Roles the study's measures need that the mapping leaves empty (beyond validation)."""
    needs = {"rd_employee_ratio": ("rd_employees", "employees"),
             "rd_spend_per_employee": ("rd_expenditure", "employees"),
             "rd_to_sales": ("rd_expenditure", "sales")}[rd_intensity]
    out = [f"R&D intensity is measured as {rd_intensity.replace('_', ' ')}, which needs the role "
           f"{r!r}" for r in needs if not mapping.get(r)]
    if not mapping.get("exit_year"):
        out.append("survival is measured from the exit year: map the role 'exit_year'")
    return out


def validation_view(frame: pd.DataFrame, mapping: dict[str, Any], source: str,
                    columns: tuple[str, ...]) -> dict[str, Any]:
    """The validation report with the mapping applied, plus the offending rows to show."""
    try:
        cmap = ColumnMap.from_dict(column_map(mapping, columns))
        report = validate_firms(frame, cmap, source=source, require_roles=True)
    except SmeSurvivalError as e:
        return {"ok": False, "n_rows": len(frame), "issues": [
            {"rule": "column map", "column": None, "severity": "error", "rows": [], "n_rows": 0,
             "message": str(e)}], "n_errors": 1, "n_warnings": 0, "n_error_rows": 0,
            "offending": None}
    d = report.to_dict()
    d["offending"] = offending_rows(frame, report, cmap)
    return d


def offending_rows(frame: pd.DataFrame, report: ValidationReport, cmap: ColumnMap,
                   limit: int = _MAX_ROWS_SHOWN) -> dict[str, Any] | None:
    """The first rows failing an error rule: file line, the rules broken and the mapped columns."""
    pos = report.error_rows
    if pos.size == 0:
        return None
    shown = pos[:limit]
    rules: dict[int, list[str]] = {int(p): [] for p in shown}
    for issue in report.errors:
        for p in np.intersect1d(issue.positions, shown):
            rules[int(p)].append(issue.rule)
    cols = [c for role, cs in cmap.restricted_to(frame).mapped().items() for c in cs]
    cols = list(dict.fromkeys(cols))
    sub = frame.iloc[shown][cols]
    rows = []
    for p, (_, r) in zip(shown, sub.iterrows(), strict=True):
        rows.append({"line": int(p) + 2, "rules": rules[int(p)],
                     "values": ["" if _missing(v) else str(v) for v in r.tolist()]})
    return {"columns": cols, "rows": rows, "n_total": int(pos.size)}


def _missing(v: Any) -> bool:
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False
