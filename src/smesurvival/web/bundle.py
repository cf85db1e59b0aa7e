"""The downloadable report bundle and the CSV exports.

The bundle is the folder ``write_report`` writes (``report.html``, ``report.md``,
``results.json``, ``figures/`` as PNG, SVG and PDF, ``tables.tex`` and ``tables.docx``), zipped,
plus ``tables/<name>.csv`` for each table, ``spec.json`` (the study as run) and ``README.txt``.

Every CSV the web app hands out goes through :func:`to_csv`, which escapes spreadsheet
formulas (:func:`~smesurvival.web.security.csv_cell`).
"""

from __future__ import annotations

import csv
import io
import json
import re
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from smesurvival.report.tables import Table
from smesurvival.web.security import csv_cell

README = """{title}

{label}

Data: {source} (SHA-256 {sha256})
Rows read: {n_read}; used: {n_used}

report.html      the full report (open it in a browser)
report.md        the same report in Markdown
results.json     every number of the study (models, verdicts, sample flow)
figures/         the figures as PNG (300 dpi), SVG and PDF
tables.tex       every table in LaTeX (booktabs), with the figures: compiles with pdflatex
tables.docx      every table as a Word table
tables/*.csv     each table as CSV (cells that a spreadsheet would run as a formula start with ')
spec.json        the study spec as run (the reference study with the options chosen)

{caveats}
"""


def to_csv(columns: Iterable[Any], rows: Iterable[Iterable[Any]]) -> str:
    """CSV text with every cell passed through :func:`csv_cell` (formula injection)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow([csv_cell(c) for c in columns])
    for row in rows:
        w.writerow([csv_cell(c) for c in row])
    return buf.getvalue()


def table_csv(t: Table) -> str:
    return to_csv(t.columns, t.rows)


def file_stem(key: str) -> str:
    """A table key (``at_risk:exporter``) as a file name stem (``at_risk_exporter``)."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", key).strip("_") or "table"


def report_bundle(report_dir: Path, tables: dict[str, Table], spec: dict[str, Any],
                  readme: str) -> bytes:
    """The ZIP of the report folder plus each table as CSV, the spec and a README."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(report_dir.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(report_dir).as_posix())
        for key, t in tables.items():
            zf.writestr(f"tables/{file_stem(key)}.csv", table_csv(t))
        zf.writestr("spec.json", json.dumps(spec, indent=2, ensure_ascii=False))
        zf.writestr("README.txt", readme)
    return buf.getvalue()
