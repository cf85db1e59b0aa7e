"""One renderer for every :class:`~smesurvival.report.tables.Table`: Markdown, HTML, plain text.

The tables hold formatted strings already, so the three outputs show identical numbers; this
module only decides layout (pipe tables that paste into a paper draft, booktabs-like HTML, and
fixed-width text for terminals and logs).
"""

from __future__ import annotations

import html
import unicodedata
from typing import Literal

from smesurvival.report.tables import Table

Format = Literal["markdown", "html", "text"]
FORMATS: tuple[str, ...] = ("markdown", "html", "text")

#: Booktabs-like CSS for :func:`to_html` tables (inline it once per HTML page).
TABLE_CSS = """
table.sme-table { border-collapse: collapse; margin: 1.2em 0 0.4em; font-size: 0.92em;
  font-variant-numeric: tabular-nums; border-top: 2px solid #222; border-bottom: 2px solid #222; }
table.sme-table caption { caption-side: top; text-align: left; font-weight: 600;
  padding-bottom: 0.4em; }
table.sme-table th, table.sme-table td { padding: 0.22em 0.7em; vertical-align: top; }
table.sme-table thead tr:last-child th { border-bottom: 1px solid #222; }
table.sme-table thead tr.groups th.group { border-bottom: 1px solid #777; font-weight: 500; }
table.sme-table th { font-weight: 600; }
table.sme-table tr.rule td { border-bottom: 1px solid #999; }
table.sme-table .l { text-align: left; } table.sme-table .r { text-align: right; }
table.sme-table .c { text-align: center; }
table.sme-table tfoot td { font-size: 0.85em; color: #444; border-top: 1px solid #222;
  padding-top: 0.4em; text-align: left; }
table.sme-table tfoot tr + tr td { border-top: none; padding-top: 0.1em; }
""".strip()


def render(table: Table, fmt: Format = "markdown") -> str:
    """Render ``table`` as ``markdown``, ``html`` or ``text``."""
    if fmt == "markdown":
        return to_markdown(table)
    if fmt == "html":
        return to_html(table)
    if fmt == "text":
        return to_text(table)
    raise ValueError(f"format must be one of {', '.join(FORMATS)}; got '{fmt}'")


# ---- Markdown ---------------------------------------------------------------------------------
def _md_cell(s: str) -> str:
    return s.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").strip()


def to_markdown(table: Table) -> str:
    """A GitHub/Pandoc pipe table with a bold title line and notes below.

    Pipe tables cannot span columns, so header groups are named in a line under the table
    (``Column groups: Correlations (1–6)``).
    """
    heads = [_md_cell(h) or " " for h in table.columns]
    seps = {"l": ":---", "r": "---:", "c": ":---:"}
    lines = [f"**{_md_cell(table.title)}**", ""] if table.title else []
    lines.append("| " + " | ".join(heads) + " |")
    lines.append("|" + "|".join(seps[a] for a in table.alignments) + "|")
    for row in table.rows:
        lines.append("| " + " | ".join(_md_cell(c) for c in row) + " |")
    groups = [f"columns {_span_names(table, lab)}: {lab}"
              for lab, span in table.header_groups or () if lab and span > 1]
    if groups:
        text = "; ".join(groups)
        lines += ["", text[:1].upper() + text[1:] + "."]
    if table.notes:
        notes = [n.replace("\n", " ").strip() for n in table.notes]
        notes[0] = f"*Note.* {notes[0]}"
        lines += ["", "  \n".join(notes)]
    return "\n".join(lines) + "\n"


def _span_names(table: Table, group: str) -> str:
    i = 0
    for lab, span in table.header_groups or ():
        if lab == group:
            cols = [c for c in table.columns[i:i + span] if c]
            return f"{cols[0]}–{cols[-1]}" if len(cols) > 1 else (cols[0] if cols else "")
        i += span
    return ""


# ---- HTML -------------------------------------------------------------------------------------
def to_html(table: Table, css_class: str = "sme-table") -> str:
    """A ``<table>`` with caption, optional spanning group headers, midrules and a notes footer.

    Style it with :data:`TABLE_CSS`; every cell is HTML-escaped.
    """
    e = html.escape
    al = table.alignments
    out = [f'<table class="{e(css_class)}">']
    if table.title:
        out.append(f"<caption>{e(table.title)}</caption>")
    out.append("<thead>")
    if table.header_groups:
        out.append('<tr class="groups">')
        for lab, span in table.header_groups:
            cls = ' class="group c"' if lab else ""
            out.append(f'<th colspan="{span}"{cls}>{e(lab)}</th>')
        out.append("</tr>")
    out.append("<tr>" + "".join(f'<th class="{a}">{e(c)}</th>' for c, a in
                                zip(table.columns, al, strict=True)) + "</tr>")
    out.append("</thead>\n<tbody>")
    rules = set(table.rules_after)
    for i, row in enumerate(table.rows):
        cls = ' class="rule"' if i in rules else ""
        cells = "".join(f'<td class="{a}">{e(c)}</td>' for c, a in zip(row, al, strict=True))
        out.append(f"<tr{cls}>{cells}</tr>")
    out.append("</tbody>")
    if table.notes:
        out.append("<tfoot>")
        for k, n in enumerate(table.notes):
            lead = "<em>Note.</em> " if k == 0 else ""
            out.append(f'<tr><td colspan="{len(table.columns)}">{lead}{e(n)}</td></tr>')
        out.append("</tfoot>")
    out.append("</table>")
    return "\n".join(out) + "\n"


def html_page(table: Table) -> str:
    """A minimal standalone HTML page holding one table (for notebooks and quick looks)."""
    return (f'<!doctype html><meta charset="utf-8"><style>{TABLE_CSS}</style>\n'
            f"{to_html(table)}")


# ---- plain text -------------------------------------------------------------------------------
def _width(s: str) -> int:
    """Display width: East-Asian wide characters count twice, combining marks zero."""
    w = 0
    for ch in s:
        if unicodedata.combining(ch):
            continue
        w += 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
    return w


def _pad(s: str, w: int, a: str) -> str:
    gap = w - _width(s)
    if a == "r":
        return " " * gap + s
    if a == "c":
        left = gap // 2
        return " " * left + s + " " * (gap - left)
    return s + " " * gap


def to_text(table: Table, wrap_notes: int = 100) -> str:
    """Fixed-width text with ``=`` top/bottom rules, ``-`` midrules and wrapped notes."""
    import textwrap

    k = len(table.columns)
    widths = [_width(c) for c in table.columns]
    for row in table.rows:
        widths = [max(w, _width(c)) for w, c in zip(widths, row, strict=True)]
    if table.header_groups:  # widen the last column of a group that is narrower than its label
        i = 0
        for lab, span in table.header_groups:
            have = sum(widths[i:i + span]) + 2 * (span - 1)
            if _width(lab) > have:
                widths[i + span - 1] += _width(lab) - have
            i += span
    total = sum(widths) + 2 * (k - 1)
    al = table.alignments
    lines = [table.title] if table.title else []
    lines.append("=" * total)
    if table.header_groups:
        parts, i = [], 0
        for lab, span in table.header_groups:
            parts.append(_pad(lab, sum(widths[i:i + span]) + 2 * (span - 1), "c"))
            i += span
        lines.append("  ".join(parts).rstrip())
    lines.append("  ".join(_pad(c, w, a) for c, w, a in
                           zip(table.columns, widths, al, strict=True)).rstrip())
    lines.append("-" * total)
    rules = set(table.rules_after)
    for i, row in enumerate(table.rows):
        lines.append("  ".join(_pad(c, w, a) for c, w, a in
                               zip(row, widths, al, strict=True)).rstrip())
        if i in rules:
            lines.append("-" * total)
    lines.append("=" * total)
    for k_, n in enumerate(table.notes):
        lines += textwrap.wrap(("Note. " if k_ == 0 else "") + n, max(wrap_notes, 40))
    return "\n".join(lines) + "\n"
