"""Human labels for the standard measures and model terms (tables, figures, text, the web app)."""

from __future__ import annotations

import re
from collections.abc import Mapping

#: Long labels of the standard measures (units in parentheses); unknown names fall back to raw.
LABELS: dict[str, str] = {
    "survived": "Survived the window (1 = yes)",
    "export_ratio": "Export ratio (export sales / sales)",
    "rd_intensity": "R&D intensity (R&D employees / employees)",
    "innovativeness": "Technological innovativeness (index)",
    "rd_alliance": "R&D alliance (1 = yes)",
    "log_firm_age": "Firm age (log years)",
    "firm_age": "Firm age (years)",
    "log_employees": "Firm size (log employees)",
    "exporter": "Exporter (1 = yes)",
    "industry": "Industry",
    "Intercept": "Constant",
}

_WRAPPERS = ("center", "standardize", "scale")  # transforms that leave the meaning unchanged
_FACTOR = re.compile(r"^C\((?P<var>[^,)]+)[^)]*\)\[(?:T\.)?(?P<level>.*)\]$")
_WRAPPED = re.compile(r"^(?P<fn>\w+)\((?P<var>[\w.]+)\)$")


def label(name: str, labels: Mapping[str, str] | None = None) -> str:
    """Long label of a variable or term (``Constant`` for the intercept; raw name if unknown)."""
    lab = {**LABELS, **(labels or {})}
    if ":" in name:
        return " × ".join(short_label(p, labels) for p in name.split(":"))
    if name in lab:
        return lab[name]
    m = _FACTOR.match(name)
    if m:
        return f"{short_label(m['var'].strip(), labels)}: {m['level']}"
    m = _WRAPPED.match(name)
    if m and m["fn"] in _WRAPPERS:
        return label(m["var"], labels)
    return name


def short_label(name: str, labels: Mapping[str, str] | None = None) -> str:
    """The label without its parenthesised unit: ``Export ratio``, ``R&D intensity``."""
    full = label(name, labels) if ":" not in name else name
    return re.sub(r"\s*\([^()]*\)\s*$", "", full) or full
