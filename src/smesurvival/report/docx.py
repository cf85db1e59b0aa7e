"""Word (.docx) rendering of report tables: real Word tables in the APA / journal layout
(a rule above and below the header and at the bottom, no vertical lines), with python-docx.

Each table is its title (bold), the table (group headers as merged cells) and its notes
("*Note.* ..." in small type); cells keep the report's text exactly, so the numbers equal the
Markdown/HTML/LaTeX renderings and results.json.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from smesurvival.report.tables import Table

_ALIGN = {"l": 0, "c": 1, "r": 2}  # WD_ALIGN_PARAGRAPH LEFT, CENTER, RIGHT


def _border(cell: Any, **edges: str) -> None:
    """Set single-line borders (``top``/``bottom`` = size in eighths of a point) on a cell."""
    from docx.oxml import OxmlElement
    from docx.oxml.ns import qn

    tc_pr = cell._tc.get_or_add_tcPr()
    borders = tc_pr.find(qn("w:tcBorders"))
    if borders is None:
        borders = OxmlElement("w:tcBorders")
        tc_pr.append(borders)
    for edge, size in edges.items():
        el = OxmlElement(f"w:{edge}")
        el.set(qn("w:val"), "single")
        el.set(qn("w:sz"), size)
        el.set(qn("w:space"), "0")
        el.set(qn("w:color"), "000000")
        borders.append(el)


def _write_cell(cell: Any, text: str, align: str, *, bold: bool = False, size: float = 9) -> None:
    from docx.shared import Pt

    par = cell.paragraphs[0]
    par.alignment = _ALIGN[align]
    par.paragraph_format.space_after = Pt(0)
    run = par.add_run(text)
    run.bold = bold
    run.font.size = Pt(size)


def add_table(doc: Any, table: Table) -> Any:
    """Append ``table`` (title, Word table, notes) to a python-docx Document; returns the table."""
    from docx.shared import Pt

    title = doc.add_paragraph()
    title.add_run(table.title).bold = True
    title.paragraph_format.keep_with_next = True
    k = len(table.columns)
    n_head = 2 if table.header_groups else 1
    wt = doc.add_table(rows=n_head + len(table.rows), cols=k)
    al = table.alignments
    r0 = 0
    if table.header_groups:
        j = 0
        for lab, span in table.header_groups:
            cell = wt.cell(0, j).merge(wt.cell(0, j + span - 1)) if span > 1 else wt.cell(0, j)
            _write_cell(cell, lab, "c", bold=False)
            if lab:
                _border(cell, bottom="4")
            j += span
        for j in range(k):
            _border(wt.cell(0, j), top="8")
        r0 = 1
    for j, head in enumerate(table.columns):
        cell = wt.cell(r0, j)
        _write_cell(cell, head, al[j])
        _border(cell, bottom="8", **({} if table.header_groups else {"top": "8"}))
    rules = set(table.rules_after)
    last = len(table.rows) - 1
    for i, row in enumerate(table.rows):
        for j, text in enumerate(row):
            cell = wt.cell(n_head + i, j)
            _write_cell(cell, text, al[j])
            if i == last:
                _border(cell, bottom="8")
            elif i in rules:
                _border(cell, bottom="4")
    for k_note, note in enumerate(table.notes):
        par = doc.add_paragraph()
        par.paragraph_format.space_after = Pt(0)
        if k_note == 0:
            lead = par.add_run("Note. ")
            lead.italic = True
            lead.font.size = Pt(8)
        par.add_run(note).font.size = Pt(8)
    doc.add_paragraph()
    return wt


def write_docx(tables: Iterable[tuple[str, Table]], path: Path, title: str, preface: str = "") -> Path:
    """A .docx holding every table (landscape pages for tables of nine or more columns)."""
    from docx import Document
    from docx.enum.section import WD_ORIENT, WD_SECTION
    from docx.shared import Cm

    doc = Document()
    sec = doc.sections[0]
    sec.left_margin = sec.right_margin = Cm(2)
    doc.add_heading(title, level=1)
    if preface:
        doc.add_paragraph().add_run(preface).bold = True
    landscape = False
    for _key, t in tables:
        wide = len(t.columns) >= 9
        if wide != landscape:  # a new section flips the page
            new = doc.add_section(WD_SECTION.NEW_PAGE)
            new.orientation = WD_ORIENT.LANDSCAPE if wide else WD_ORIENT.PORTRAIT
            w, h = new.page_width, new.page_height
            if (wide and w < h) or (not wide and w > h):
                new.page_width, new.page_height = h, w
            landscape = wide
        add_table(doc, t)
    doc.save(str(path))
    return path
