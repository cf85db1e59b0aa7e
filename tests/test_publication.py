"""Journal tables: LaTeX (booktabs, compiled with pdflatex) and Word (python-docx) from the same
Table objects as the Markdown/HTML report; the numbers equal results.json."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from smesurvival.errors import UsageError
from smesurvival.report.build import check_formats, write_report
from smesurvival.report.latex import escape, to_latex
from smesurvival.report.tables import Table
from smesurvival.study.run import run_study


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    result = run_study("lee2012")
    return write_report(result, tmp_path_factory.mktemp("pub") / "out")


def test_escape() -> None:
    assert escape("R&D 50% of $x_1 #2 {a}") == r"R\&D 50\% of \$x\_1 \#2 \{a\}"
    assert escape("-0.133 (0.447)") == r"$-$0.133 (0.447)"
    assert escape("a-b, LR χ² × −2") == r"a-b, LR $\chi$\textsuperscript{2} $\times$ $-$2"
    assert escape("Fine–Gray — ✓ †") == r"Fine--Gray --- $\checkmark$ \dag{}"
    assert escape("Société 서울") == r"Soci\'{e}t\'{e} ??"


def test_table_layout() -> None:
    t = Table("Table 3. Toy", ("", "A", "B"), (("x", "1", "2"), ("y", "3", "4")),
              notes=("first", "second"), header_groups=(("", 1), ("Group", 2)), rules_after=(0,))
    tex = to_latex(t, label="tab:toy")
    assert r"\setcounter{table}{2}" in tex and r"\caption{Toy}" in tex
    assert r"\multicolumn{2}{c}{Group}" in tex and r"\cmidrule(lr){2-3}" in tex
    assert tex.count(r"\midrule") == 2 and r"\emph{Note.} first" in tex
    assert r"\begin{tabular}{@{}lrr@{}}" in tex


def test_formats_are_checked() -> None:
    assert check_formats(["latex", "DOCX", "latex"]) == ("latex", "docx")
    with pytest.raises(UsageError, match="--format takes"):
        check_formats(["pdf"])


def test_latex_document_compiles_with_pdflatex(report) -> None:
    if shutil.which("pdflatex") is None:
        pytest.fail("pdflatex is missing: `make test` installs texlive-latex-base and "
                    "texlive-latex-recommended")
    assert report.latex is not None
    tex = report.latex.read_text()
    assert "SYNTHETIC DATA" in tex and r"\includegraphics" in tex and tex.isascii()
    proc = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", report.latex.name],
        cwd=report.out_dir, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert (report.out_dir / "tables.pdf").stat().st_size > 10_000
    assert "Overfull" not in proc.stdout


def _plain(cell: str) -> str:
    return re.sub(r"[*†]+$", "", cell.strip())


def test_docx_holds_the_numbers_of_results_json(report) -> None:
    import docx

    assert report.docx is not None
    doc = docx.Document(str(report.docx))
    results = json.loads(report.json.read_text())
    titles = [p.text for p in doc.paragraphs if p.text.startswith("Table 2.")]
    assert titles, "the regression table's title is in the document"
    reg = next(t for t in doc.tables if t.rows[0].cells[1].text == "Model 1")
    rows = {r.cells[0].text: [c.text for c in r.cells[1:]] for r in reg.rows}
    steps = results["steps"]
    checked = 0
    for label, term in (("Firm age (log years)", "log_firm_age"),
                        ("Export ratio (export sales / sales)", "export_ratio")):
        for j, step in enumerate(steps):
            est = step["fit"]["params"].get(term)
            cell = _plain(rows[label][j])
            if est is None:
                assert cell == ""
                continue
            assert float(cell) == pytest.approx(est, abs=5e-4)
            checked += 1
    ll = [float(c) for c in rows["Log-likelihood"]]
    assert ll == pytest.approx([s["fit"]["loglik"] for s in steps], abs=5e-4)
    assert checked >= 10
    assert "SYNTHETIC DATA" in doc.paragraphs[1].text


def test_figures_in_print_formats(report) -> None:
    from PIL import Image

    pngs = [p for p in report.figures if p.suffix == ".png"]
    assert pngs and all(p.with_suffix(".svg").is_file() for p in pngs)
    with Image.open(pngs[0]) as im:
        assert round(im.info["dpi"][0]) == 300


def test_only_the_asked_formats(tmp_path: Path) -> None:
    result = run_study("lee2012", robustness=False)
    files = write_report(result, tmp_path / "md-only", formats=["md"])
    assert files.latex is None and files.docx is None
    assert not (tmp_path / "md-only" / "tables.tex").exists()
