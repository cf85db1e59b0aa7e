"""Human labels for the standard measures and model terms (tables, figures, the web app)."""

from __future__ import annotations

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
    "Intercept": "Constant",
}


def label_for(term: str) -> str:
    """Label of a term; interactions joined with ' × ' from their parts' short labels."""
    if term in LABELS:
        return LABELS[term]
    if ":" in term:
        return " × ".join(short_label(p) for p in term.split(":"))
    return term


def short_label(name: str) -> str:
    """The label without its parenthesised definition ('Export ratio')."""
    full = LABELS.get(name, name)
    return full.split(" (")[0]
