"""``write_report``: one :class:`StudyResult` -> ``report.md``, ``report.html``, ``results.json``
and ``figures/*.png|svg`` in one folder.

Everything is written into a hidden temporary folder beside ``out_dir`` and renamed into place
at the end, so a failure never leaves a half-written report (DESIGN.md principle 4). An existing
report folder is replaced: new folder written, old one moved aside, new one moved in, old one
deleted. A folder holding anything other than a previous report is never deleted.
"""

from __future__ import annotations

import base64
import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from smesurvival.errors import UsageError
from smesurvival.report import figures as _figures
from smesurvival.report.render import TABLE_CSS, to_html, to_markdown
from smesurvival.report.serialize import SYNTHETIC_BANNER, dumps
from smesurvival.report.tables import (
    Table,
    descriptives_table,
    fmt_int,
    implications_table,
    lower_first,
    regression_table,
    sample_flow_table,
    short_label,
    verdict_table,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from smesurvival.study.result import StudyResult

#: Names a report folder may hold; an existing ``out_dir`` with anything else is left alone.
REPORT_ENTRIES = frozenset({"report.md", "report.html", "results.json", "figures"})


@dataclass(frozen=True)
class ReportFiles:
    """Paths of everything :func:`write_report` wrote (final locations)."""

    out_dir: Path
    markdown: Path
    html: Path
    json: Path
    figures: tuple[Path, ...]


@dataclass(frozen=True)
class _Figure:
    stem: str
    caption: str
    png: Path
    svg: Path


# ---- the pieces every output shares ----------------------------------------------------------
def _outcome_is_survival(result: StudyResult) -> bool:
    """Does y = 1 mean "survived"? Checked against the study's exit count, else by name."""
    if result.steps:
        f = result.steps[-1].fit
        if round(f.n_for_ic - f.n_events) == result.n_events:
            return True
        if round(f.n_events) == result.n_events:
            return False
    return "surviv" in result.outcome.lower()


def build_tables(result: StudyResult) -> dict[str, Table]:
    """The report's tables by key: flow, descriptives, regression, verdicts, implications."""
    w = result.window_years
    tables = {
        "flow": sample_flow_table(result.flow),
        "descriptives": descriptives_table(result.descriptives),
    }
    if result.steps:
        tables["regression"] = regression_table(
            result.steps, centering=result.centering,
            outcome_is_survival=_outcome_is_survival(result),
            dependent=f"survived the {w}-year window (1 = yes)",
        )
    if result.verdicts:
        tables["verdicts"] = verdict_table(result.verdicts)
    if result.implications:
        tables["implications"] = implications_table(
            result.implications,
            title=f"Implications: predicted probability of surviving the {w}-year window",
        )
    return tables


def methods_note(result: StudyResult) -> str:
    """One paragraph: outcome, estimator, centring, the tests as stated and alpha."""
    w = result.window_years
    parts = [
        f"Outcome: {result.outcome} = 1 if the firm was still operating {w} years after the "
        f"survey (survived the {w}-year window), 0 if it exited within the window "
        f"({fmt_int(result.n_events)} exits).",
        "Models: hierarchical logit models fitted by maximum likelihood, each step nested in "
        "the next and compared by likelihood-ratio tests.",
    ]
    if result.centering:
        names = ", ".join(short_label(v) for v in result.centering)
        parts.append(f"Predictors mean-centred before forming the interaction terms: {names}; "
                     "figures and predictions are shown in original units.")
    if result.verdicts:
        sides = {v.hypothesis: v.test for v in result.verdicts}
        one = [h for h, t in sides.items() if t.startswith("one")]
        two = [h for h, t in sides.items() if not t.startswith("one")]
        tests = []
        if one:
            tests.append(f"one-sided for {', '.join(one)} (directional hypotheses)")
        if two:
            tests.append(f"two-sided for {', '.join(two)}")
        alphas = ", ".join(f"{a:g}" for a in sorted({v.alpha for v in result.verdicts}))
        parts.append(f"Hypothesis tests, as the study spec states: {'; '.join(tests)}; "
                     f"alpha = {alphas}. Stars in Table 2 use two-sided p-values.")
    parts.append("Interaction effects are also shown on the probability scale (figure), since a "
                 "logit interaction coefficient is not the interaction effect on survival "
                 "probability (Ai & Norton 2003).")
    return " ".join(parts)


def _make_figures(result: StudyResult, fig_dir: Path) -> list[_Figure]:
    """Draw and save every figure; return them in report order with captions."""
    out: list[_Figure] = []
    w = result.window_years
    made: list[tuple[str, str, Callable[[], Figure]]] = []
    c = result.curves
    if c is not None:
        made.append((
            "interaction",
            f"Predicted probability of surviving the {w}-year window against "
            f"{lower_first(short_label(c.focal))}, at {', '.join(c.moderator_labels)} "
            f"{short_label(c.moderator)} (model {c.step}); shaded bands are 95% confidence "
            "intervals.",
            partial(_figures.interaction_figure, c, result.synthetic, window_years=w),
        ))
    for gs in result.survival_by_group:
        made.append((
            f"survival_by_{gs.group_variable}",
            f"Kaplan–Meier survival by {lower_first(short_label(gs.group_variable))}; shaded "
            "bands are 95% confidence intervals, the dotted line marks the window.",
            partial(_figures.group_survival_figure, gs, result.synthetic, window_years=w),
        ))
    for i, (stem, caption, draw) in enumerate(made, start=1):
        fig = draw()
        png, svg = _figures.save(fig, fig_dir, stem)
        out.append(_Figure(stem, f"Figure {i}. {caption}", png, svg))
    return out


def _context(result: StudyResult, figs: list[_Figure], fmt: str) -> dict[str, Any]:
    from markupsafe import Markup

    tables = build_tables(result)
    render = to_markdown if fmt == "md" else to_html
    rendered = {k: (Markup(render(t)) if fmt == "html" else render(t)) for k, t in tables.items()}
    prov = result.provenance
    gen = prov.generator or {}
    return {
        "r": result,
        "prov": prov,
        "generator": {k: gen[k] for k in ("seed", "n") if k in gen},
        "banner": SYNTHETIC_BANNER,
        "tables": rendered,
        "methods": methods_note(result),
        "figures": [
            {"caption": f.caption, "png": f"figures/{f.png.name}", "svg": f"figures/{f.svg.name}",
             "b64": base64.b64encode(f.png.read_bytes()).decode("ascii") if fmt == "html" else ""}
            for f in figs
        ],
        "css": Markup(TABLE_CSS),
        "n_rows": fmt_int(prov.n_rows),
    }


def _env(autoescape: bool) -> Any:
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).with_name("templates")),
        autoescape=autoescape, undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
        trim_blocks=True, lstrip_blocks=True,
    )


def render_markdown(result: StudyResult, figs: list[_Figure] | None = None) -> str:
    """The Markdown report (figures linked relative to the report folder)."""
    return _env(False).get_template("report.md.j2").render(**_context(result, figs or [], "md"))


def render_html(result: StudyResult, figs: list[_Figure] | None = None) -> str:
    """The self-contained HTML report: inline CSS, figures as base64 PNG, no external URLs."""
    return _env(True).get_template("report.html.j2").render(
        **_context(result, figs or [], "html"))


# ---- atomic folder writing --------------------------------------------------------------------
def _check_target(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise UsageError(f"output path '{out}' exists and is not a folder; choose another --out")
    if out.is_dir():
        foreign = sorted(p.name for p in out.iterdir() if p.name not in REPORT_ENTRIES)
        if foreign:
            shown = ", ".join(foreign[:5]) + (", …" if len(foreign) > 5 else "")
            raise UsageError(
                f"output folder '{out}' holds files that are not part of a report ({shown}); "
                "it is replaced as a whole, so choose a new or empty folder"
            )


def _swap_into_place(tmp: Path, out: Path) -> None:
    """Move ``tmp`` to ``out``; an existing ``out`` is moved aside first and deleted after."""
    if not out.exists():
        os.replace(tmp, out)
        return
    old = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:8]}")
    os.replace(out, old)
    try:
        os.replace(tmp, out)
    except BaseException:
        os.replace(old, out)  # put the previous report back
        raise
    shutil.rmtree(old, ignore_errors=True)


def write_report(result: StudyResult, out_dir: Path | str) -> ReportFiles:
    """Write ``report.md``, ``report.html``, ``results.json`` and ``figures/`` to ``out_dir``.

    All or nothing: on any error the temporary folder is removed and ``out_dir`` is left as it
    was (absent, or the previous report).
    """
    out = Path(out_dir).expanduser().absolute()
    _check_target(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()  # not mkdtemp: its 0700 mode would outlive the rename; this honours the umask
    try:
        figs = _make_figures(result, tmp / "figures")
        (tmp / "results.json").write_text(dumps(result) + "\n", encoding="utf-8")
        (tmp / "report.md").write_text(render_markdown(result, figs), encoding="utf-8")
        (tmp / "report.html").write_text(render_html(result, figs), encoding="utf-8")
        if not figs:
            (tmp / "figures").mkdir(exist_ok=True)
        _swap_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fig_paths = tuple(out / "figures" / p.name for f in figs for p in (f.png, f.svg))
    return ReportFiles(
        out_dir=out, markdown=out / "report.md", html=out / "report.html",
        json=out / "results.json", figures=fig_paths,
    )
