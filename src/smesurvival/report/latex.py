"""LaTeX (booktabs) rendering of report tables, and a standalone document that compiles with
pdflatex from Debian's texlive-latex-base and texlive-latex-recommended.

Cells are escaped for LaTeX's special characters; the symbols the tables use (×, −, χ², Δ, †,
✓, →, dashes) become their LaTeX commands, so the output is plain ASCII and needs no Unicode
set-up. A minus sign before a number is typeset as a math minus.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from smesurvival.report.tables import Table

_SPECIAL = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    "<": r"\textless{}", ">": r"\textgreater{}", "|": r"\textbar{}",
}
_SYMBOLS = {
    "×": r"$\times$", "−": r"$-$", "–": "--", "—": "---", "χ": r"$\chi$", "²": r"\textsuperscript{2}",
    "³": r"\textsuperscript{3}", "Δ": r"$\Delta$", "†": r"\dag{}", "‡": r"\ddag{}", "✓": r"$\checkmark$",
    "✗": r"$\times$", "→": r"$\rightarrow$", "≥": r"$\geq$", "≤": r"$\leq$", "±": r"$\pm$",
    "…": r"\ldots{}", "‘": "`", "’": "'", "“": "``", "”": "''", "·": r"$\cdot$", "α": r"$\alpha$",
    "β": r"$\beta$", "γ": r"$\gamma$", "η": r"$\eta$", "λ": r"$\lambda$", "μ": r"$\mu$",
    "σ": r"$\sigma$", "⚑": r"$\triangleright$", "≈": r"$\approx$", "≠": r"$\neq$", "∞": r"$\infty$",
    "\u00a0": "~", "\u2009": r"\,",
}
_NEG_NUMBER = re.compile(r"(?<![\w.])-(?=\d|\.\d)")


def escape(text: str) -> str:
    """``text`` as LaTeX source: specials escaped, symbols as commands, ASCII only (accented
    Latin letters keep their accent; other characters, e.g. Hangul, become '?')."""
    text = _NEG_NUMBER.sub("\u2212", text)
    out: list[str] = []
    for ch in text:
        if ch in _SPECIAL:
            out.append(_SPECIAL[ch])
        elif ch in _SYMBOLS:
            out.append(_SYMBOLS[ch])
        elif ord(ch) < 128:
            out.append(ch)
        else:
            out.append(_accented(ch))
    return "".join(out)


_ACCENTS = {"\u0301": "'", "\u0300": "`", "\u0302": "^", "\u0308": '"', "\u0303": "~",
            "\u0327": "c", "\u030c": "v", "\u0304": "="}


def _accented(ch: str) -> str:
    parts = unicodedata.normalize("NFD", ch)
    base, marks = parts[0], parts[1:]
    if base.isascii() and len(marks) == 1 and marks in _ACCENTS:
        cmd = _ACCENTS[marks[0]]
        return f"\\{cmd}{{{base}}}"
    return "?"


def to_latex(table: Table, label: str | None = None, *, float_env: bool = True) -> str:
    """A booktabs ``tabular`` (in a ``table`` float with caption and label unless
    ``float_env=False``): group headers as ``\\multicolumn`` with ``\\cmidrule``, midrules where
    the table has them, the notes in a footnote-size paragraph under the table."""
    k = len(table.columns)
    cols = "".join(table.alignments)
    body: list[str] = [f"\\begin{{tabular}}{{@{{}}{cols}@{{}}}}", r"\toprule"]
    if table.header_groups:
        cells, rules, start = [], [], 1
        for lab, span in table.header_groups:
            cells.append(f"\\multicolumn{{{span}}}{{c}}{{{escape(lab)}}}" if span > 1 else escape(lab))
            if lab:
                rules.append(f"\\cmidrule(lr){{{start}-{start + span - 1}}}")
            start += span
        body.append(" & ".join(cells) + r" \\")
        if rules:
            body.append(" ".join(rules))
    body.append(" & ".join(escape(c) for c in table.columns) + r" \\")
    body.append(r"\midrule")
    rules_after = set(table.rules_after)
    for i, row in enumerate(table.rows):
        body.append(" & ".join(escape(c) for c in row) + r" \\")
        if i in rules_after and i != len(table.rows) - 1:
            body.append(r"\midrule")
    body += [r"\bottomrule", r"\end{tabular}"]
    tabular = "\n".join(body)
    if k > 1:  # a table wider than the text shrinks to its width (never grows)
        tabular = ("\\resizebox{\\ifdim\\width>\\linewidth\\linewidth\\else\\width\\fi}{!}{%\n"
                   f"{tabular}}}")
    notes = ""
    if table.notes:
        parts = [escape(n) for n in table.notes]
        parts[0] = r"\emph{Note.} " + parts[0]
        notes = ("\n\\par\\smallskip\n{\\footnotesize\\raggedright\n" + "\\par\n".join(parts) + "\\par}")
    if not float_env:
        return f"{tabular}{notes}\n"
    m = _NUMBERED.match(table.title)
    if m:  # the report's own number: "Table 2. Hierarchical ..." is LaTeX's Table 2 as well
        head = (f"\\setcounter{{table}}{{{int(m.group(1)) - 1}}}\n"
                f"\\caption{{{escape(table.title[m.end():])}}}\n")
    else:
        head = f"\\caption*{{{escape(table.title)}}}\n" if table.title else ""
    lab = f"\\label{{{label}}}\n" if label and m else ""
    env = "sidewaystable" if k >= _SIDEWAYS_COLUMNS else "table"
    return (f"\\begin{{{env}}}[htbp]\n\\centering\n\\small\n{head}"
            f"{lab}{tabular}{notes}\n\\end{{{env}}}\n")


_NUMBERED = re.compile(r"^Table (\d+)\.\s*")
_FIGURE = re.compile(r"^Figure (\d+)\.\s*")
_SIDEWAYS_COLUMNS = 9  # tables this wide are set in landscape


PREAMBLE = r"""\documentclass[11pt]{article}
\usepackage[margin=2cm]{geometry}
\usepackage{booktabs}
\usepackage{graphicx}
\usepackage{amssymb}
\usepackage{rotating}
\usepackage[labelsep=period,font=small]{caption}
\setlength{\parindent}{0pt}
"""


def latex_document(tables: Iterable[tuple[str, Table]], title: str, preface: str = "",
                   figures: Iterable[tuple[str, str]] = ()) -> str:
    """A standalone article holding every table (one float each, labelled ``tab:<key>``) and
    the ``figures`` given as (image path relative to the .tex file, caption); ``preface`` (plain
    text, escaped) goes under the title, e.g. the synthetic-data banner."""
    parts = [PREAMBLE, r"\begin{document}", f"\\section*{{{escape(title)}}}"]
    if preface:
        parts.append(f"\\fbox{{\\parbox{{0.95\\linewidth}}{{{escape(preface)}}}}}\n\\bigskip")
    for key, t in tables:
        parts.append(to_latex(t, label=f"tab:{_label(key)}"))
    for path, caption in figures:
        m = _FIGURE.match(caption)
        head = (f"\\setcounter{{figure}}{{{int(m.group(1)) - 1}}}\n" if m else "")
        parts.append(f"\\begin{{figure}}[htbp]\n\\centering\n"
                     f"\\includegraphics[width=0.85\\linewidth]{{{path}}}\n"
                     f"{head}\\caption{{{escape(caption[m.end():] if m else caption)}}}\n"
                     "\\end{figure}")
    parts.append(r"\end{document}")
    return "\n".join(parts) + "\n"


def _label(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", key).strip("-") or "table"
