"""Firm data: readers, the schema and its validation, measures, and the sample flow.

``simulate_cohort`` (the synthetic cohort) is imported lazily, on first use.
"""

from __future__ import annotations

from typing import Any

from smesurvival.data.flow import FlowStep, SampleFlow
from smesurvival.data.measures import MeasureFrame, MeasureOptions, build_measures
from smesurvival.data.readers import LoadedData, SourceInfo, file_sha256, read_data, read_sql
from smesurvival.data.schema import (
    EXIT_TYPE_ALIASES,
    EXIT_TYPES,
    REQUIRED_ROLES,
    ROLES,
    ColumnMap,
    canonical_exit_types,
)
from smesurvival.data.validate import (
    Issue,
    ValidationReport,
    coerce_numeric,
    exclude_invalid,
    validate_firms,
)

__all__ = [
    "EXIT_TYPES",
    "EXIT_TYPE_ALIASES",
    "REQUIRED_ROLES",
    "ROLES",
    "ColumnMap",
    "FlowStep",
    "Issue",
    "LoadedData",
    "MeasureFrame",
    "MeasureOptions",
    "SampleFlow",
    "SourceInfo",
    "ValidationReport",
    "build_measures",
    "canonical_exit_types",
    "coerce_numeric",
    "exclude_invalid",
    "file_sha256",
    "read_data",
    "read_sql",
    "validate_firms",
]

# not in __all__: ``from smesurvival.data import *`` must not pull in the generator
_LAZY = {"simulate_cohort": "smesurvival.data.synthetic"}


def __getattr__(name: str) -> Any:
    """Import the synthetic-cohort generator only when it is first asked for."""
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
