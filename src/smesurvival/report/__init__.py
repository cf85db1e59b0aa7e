"""Reporting: publication tables, figures and the report folder, all rendered from a result.

Numbers first, presentation second: :mod:`.tables` builds :class:`Table` values from a
:class:`~smesurvival.study.result.StudyResult` (:mod:`.survival_tables` the time-to-exit
ones), :mod:`.render` turns any table into Markdown, HTML or text, :mod:`.figures` draws
(matplotlib is imported only when a figure is made) and :mod:`.build` writes ``report.md``,
``report.html``, ``results.json`` and ``figures/`` (jinja2 is imported only when a report is
written).
"""

from __future__ import annotations

from smesurvival.labels import LABELS, label
from smesurvival.report.build import ReportFiles, write_report
from smesurvival.report.render import render, to_html, to_markdown, to_text
from smesurvival.report.serialize import result_to_dict
from smesurvival.report.survival_tables import (
    at_risk_table,
    cause_specific_table,
    cross_model_verdict_table,
    hazard_ratio_table,
    incidence_table,
    ph_table,
)
from smesurvival.report.tables import (
    Table,
    descriptives_table,
    implications_table,
    regression_table,
    sample_flow_table,
    verdict_table,
)

__all__ = [
    "LABELS", "ReportFiles", "Table", "at_risk_table", "cause_specific_table",
    "cross_model_verdict_table", "descriptives_table", "hazard_ratio_table", "implications_table",
    "incidence_table", "label", "ph_table", "regression_table", "render", "result_to_dict",
    "sample_flow_table", "to_html", "to_markdown", "to_text", "verdict_table", "write_report",
]
