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
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from smesurvival.errors import UsageError
from smesurvival.report import effect_figures as _effect_figures
from smesurvival.report import effect_tables as _et
from smesurvival.report import figures as _figures
from smesurvival.report.render import TABLE_CSS, to_html, to_markdown
from smesurvival.report.serialize import SYNTHETIC_BANNER, dumps
from smesurvival.report.survival_tables import (
    all_runs,
    at_risk_table,
    cause_specific_table,
    comparison_step,
    cross_model_verdict_table,
    hazard_ratio_table,
    incidence_table,
    logrank_line,
    ph_table,
)
from smesurvival.report.tables import (
    HAZARD_MODELS,
    Table,
    descriptives_table,
    fmt_int,
    implications_table,
    label,
    lower_first,
    model_name,
    models_heading,
    regression_table,
    sample_flow_table,
    short_label,
    verdict_table,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from smesurvival.study.result import StudyResult

#: Names a report folder may hold; an existing ``out_dir`` with anything else is left alone.
REPORT_ENTRIES = frozenset({"report.md", "report.html", "results.json", "figures", "tables.tex",
                            "tables.docx"})

#: Why failure and acquisition are kept apart (shown in the exit-routes section).
EXIT_ROUTES_TEXT = (
    "An acquired firm has not failed: its business usually goes on inside the buyer, and being "
    "bought can reward the owners, so a firm characteristic that lowers the hazard of failure "
    "need not lower the hazard of acquisition, and the two routes can differ."
)


@dataclass(frozen=True)
class ReportFiles:
    """Paths of everything :func:`write_report` wrote (final locations)."""

    out_dir: Path
    markdown: Path
    html: Path
    json: Path
    figures: tuple[Path, ...]
    latex: Path | None = None
    docx: Path | None = None


@dataclass(frozen=True)
class _Figure:
    stem: str
    caption: str
    png: Path
    svg: Path
    kind: str = "interaction"  # "interaction", "survival" (key: group variable), "incidence"
    key: str = ""


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


def _main_model(result: StudyResult) -> str:
    return result.steps[0].fit.model if result.steps else "logit"


def build_tables(result: StudyResult) -> dict[str, Table]:
    """The report's tables by key: flow, descriptives, regression, verdicts, implications, and
    when the result holds them ``at_risk:<group variable>``, ``hazard_ratios``,
    ``cross_model``, ``ph``, ``incidence`` and ``cause_specific``."""
    w = result.window_years
    tables = {
        "flow": sample_flow_table(result.flow),
        "descriptives": descriptives_table(result.descriptives),
    }
    survival = _outcome_is_survival(result)
    if result.steps:
        hazard = _main_model(result) in HAZARD_MODELS
        if hazard:
            dependent = "time to exit in years since the survey (event = exit)"
        elif survival:
            dependent = f"survived the {w}-year window (1 = yes)"
        else:
            dependent = f"exited within the {w}-year window (1 = yes)"
        tables["regression"] = regression_table(
            result.steps, centering=result.centering, outcome_is_survival=survival,
            dependent=dependent,
        )
    if result.verdicts:
        tables["verdicts"] = verdict_table(result.verdicts)
    if result.implications:
        tables["implications"] = implications_table(
            result.implications,
            title=f"Implications: predicted probability of surviving the {w}-year window",
        )
    for gs in result.survival_by_group:
        t = at_risk_table(gs)
        if t is not None:
            tables[f"at_risk:{gs.group_variable}"] = t
    if result.robustness:
        runs = all_runs(result)
        step = comparison_step(result)
        hr = hazard_ratio_table(runs, step, outcome_is_survival=survival) if step else None
        if hr is not None:
            tables["hazard_ratios"] = hr
        cm = cross_model_verdict_table(runs)
        if cm is not None:
            tables["cross_model"] = cm
    if result.ph_check is not None:
        tables["ph"] = ph_table(result.ph_check)
    if result.incidence is not None:
        tables["incidence"] = incidence_table(result.incidence, w)
    cs = cause_specific_table(result.cause_specific)
    if cs is not None:
        tables["cause_specific"] = cs
    eff = result.effects
    if eff is not None:
        tables["ame"] = _et.ame_table(eff)
        if eff.interactions:
            tables["simple_slopes"] = _et.simple_slopes_table(eff)
            tables["ai_norton"] = _et.ai_norton_table(eff, result.verdicts)
    med = result.mediation
    if med is not None:
        if med.khb:
            tables["khb"] = _et.khb_table(med)
        if med.product:
            tables["product"] = _et.product_table(med)
    ms = result.missing
    if ms is not None:
        if ms.any_missing or ms.method == "mice":
            tables["missing"] = _et.missingness_table(ms)
        if ms.pooled_steps:
            tables["pooled"] = _et.pooled_table(ms)
        if ms.pooled_verdicts:
            tables["pooled_verdicts"] = _et.pooled_verdict_table(ms, result.verdicts)
    return tables


def methods_note(result: StudyResult) -> str:
    """One paragraph: outcome, estimator, centring, the tests as stated and alpha."""
    w = result.window_years
    model = _main_model(result)
    if model in HAZARD_MODELS:
        exits = result.steps[0].fit.n_events if result.steps else result.n_events
        cause = getattr(result.spec, "cause", None) if model == "finegray" else None
        events = (f"exits by {cause} counted as events, exits by other routes as competing "
                  "events" if cause else "exits counted as events")
        parts = [
            f"Outcome: time to exit, in years since the survey ({fmt_int(exits)} {events}; "
            "firms still operating are censored at the end of their follow-up).",
            f"Models: {lower_first(models_heading(model))}, each step nested in the next and "
            "compared by likelihood-ratio tests.",
        ]
    else:
        parts = [
            f"Outcome: {result.outcome} = 1 if the firm was still operating {w} years after "
            f"the survey (survived the {w}-year window), 0 if it exited within the window "
            f"({fmt_int(result.n_events)} exits).",
            f"Models: {lower_first(models_heading(model))} fitted by maximum likelihood, each "
            "step nested in the next and compared by likelihood-ratio tests.",
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
    if result.curves is not None:
        parts.append("Interaction effects are also shown on the probability scale (figure), "
                     f"since a {lower_first(model_name(model))} interaction coefficient is not "
                     "the interaction effect on survival probability (Ai & Norton 2003).")
    parts += _issue4_notes(result)
    hazard_text = _time_to_exit_note(result)
    return " ".join(parts) + (f"\n\n{hazard_text}" if hazard_text else "")


def _issue4_notes(result: StudyResult) -> list[str]:
    """Methods of the effects, mediation and missing-data sections, from the result."""
    out = []
    eff = result.effects
    if eff is not None:
        b = eff.bootstrap
        out.append(f"Effects on the probability scale (model {eff.step} for the average marginal "
                   "effect): average marginal effects by central differences with delta-method "
                   "standard errors" + (f" and {b.B:,} pairs-bootstrap refits (percentile and "
                                        "BCa intervals)" if b else "") +
                   "; simple slopes at the moderator's mean − 1 SD, mean and mean + 1 SD (0 and "
                   "1 for a binary moderator); the average Ai–Norton interaction effect; "
                   "Johnson–Neyman regions on the log-odds and probability scales.")
    med = result.mediation
    if med is not None:
        out.append(f"Mediation of {lower_first(short_label(med.key))} through "
                   f"{lower_first(short_label(med.mediator))}: KHB decomposition (Karlson, Holm & "
                   "Breen 2012) and product of coefficients"
                   + (f", with {med.bootstrap.B:,} bootstrap refits of both equations"
                      if med.bootstrap else "") + ".")
    ms = result.missing
    if ms is not None and ms.method == "mice":
        out.append(f"Missing predictors: multiple imputation by chained equations (m = {ms.m}), "
                   "each step pooled by Rubin's rules with Barnard–Rubin degrees of freedom; the "
                   "main tables are complete-case.")
    return out


def _time_to_exit_note(result: StudyResult) -> str:
    """The methods of the time-to-exit models, stated from the fits themselves."""
    runs = all_runs(result)
    fits = {r.model: r.steps[-1].fit for r in runs if r.steps}
    if not (set(fits) & set(HAZARD_MODELS) or result.cause_specific or result.incidence):
        return ""
    parts = ["Time-to-exit models: time is measured in years since the survey year, with month "
             "precision; firms still operating are censored at the end of their follow-up, and "
             "exits dated in the survey year itself are placed half a month into the follow-up "
             "(hazard models need positive times)."]
    if "cox" in fits or result.cause_specific:
        cox = fits.get("cox") or next((c.fit for c in result.cause_specific if c.fit), None)
        ties = str(cox.extra.get("ties", "efron")) if cox is not None else "efron"
        parts.append(f"Cox proportional-hazards models are fitted by partial likelihood with "
                     f"{ties.capitalize()}'s approximation for tied exit times.")
    if "discrete" in fits:
        f = fits["discrete"]
        if f.cluster_var in ("firm_id", "id") or (f.n_clusters is not None and
                                                 f.n_clusters == f.extra.get("n_subjects")):
            se = "standard errors clustered by firm"
        elif f.cluster_var:
            se = f"standard errors clustered by {f.cluster_var}"
        else:
            se = f"{f.vcov_type} standard errors"
        parts.append("The discrete-time model is a complementary log-log hazard on firm-years "
                     "(one row per firm and year at risk) with a dummy for each year of "
                     f"follow-up as the baseline hazard and {se}; its exponentiated "
                     "coefficients are hazard ratios, comparable with the Cox model's.")
    if set(fits) & set(HAZARD_MODELS) and result.verdicts:
        parts.append("The hypotheses speak of survival, so in the hazard models they are "
                     "tested as negative hazard coefficients (a hazard ratio below 1 means "
                     "better survival), with the same test and alpha.")
    if result.cause_specific:
        parts.append("Cause-specific Cox models treat exits by one route as events and censor "
                     "firms that left by another route.")
    if result.incidence is not None:
        parts.append("The cumulative incidence of each exit route is the Aalen–Johansen "
                     "estimate, which accounts for the competing routes.")
    return " ".join(parts)


def _make_figures(result: StudyResult, fig_dir: Path) -> list[_Figure]:
    """Draw and save every figure; return them in report order with captions."""
    out: list[_Figure] = []
    w = result.window_years
    made: list[tuple[str, str, Callable[[], Figure], str, str]] = []
    c = result.curves
    if c is not None:
        made.append((
            "interaction",
            f"Predicted probability of surviving the {w}-year window against "
            f"{lower_first(short_label(c.focal))}, at {', '.join(c.moderator_labels)} "
            f"{short_label(c.moderator)} (model {c.step}); shaded bands are 95% confidence "
            "intervals.",
            partial(_figures.interaction_figure, c, result.synthetic, window_years=w),
            "interaction", "",
        ))
    made += _effect_figure_specs(result)
    for gs in result.survival_by_group:
        made.append((
            f"survival_by_{gs.group_variable}",
            f"Kaplan–Meier survival by {lower_first(short_label(gs.group_variable))}; shaded "
            "bands are 95% confidence intervals, the dotted line marks the window.",
            partial(_figures.group_survival_figure, gs, result.synthetic, window_years=w),
            "survival", gs.group_variable,
        ))
    if result.incidence is not None:
        made.append((
            "exit_routes",
            "Cumulative incidence of exit by route (Aalen–Johansen, with the other routes as "
            "competing events): the share of firms that left by each route, years after the "
            "survey; shaded bands are 95% confidence intervals, the dotted line marks the "
            "window.",
            partial(_figures.incidence_figure, result.incidence, result.synthetic,
                    window_years=w),
            "incidence", "",
        ))
    for i, (stem, caption, draw, kind, key) in enumerate(made, start=1):
        fig = draw()
        png, svg = _figures.save(fig, fig_dir, stem)
        out.append(_Figure(stem, f"Figure {i}. {caption}", png, svg, kind, key))
    return out


def figure_interaction(result: StudyResult) -> Any:
    """The interaction of the effects section that carries the figures (curves stored)."""
    if result.effects is None:
        return None
    return next((ev for ev in result.effects.interactions if ev.curves is not None), None)


def _effect_figure_specs(result: StudyResult) -> list[tuple[str, str, Callable[[], Figure], str, str]]:
    """Conditional-effect, Johnson–Neyman and Ai–Norton figures of the figure interaction."""
    ev = figure_interaction(result)
    if ev is None:
        return []
    w, syn = result.window_years, result.synthetic
    foc, mod = lower_first(short_label(ev.focal)), lower_first(short_label(ev.moderator))
    tag = f" ({ev.hypothesis})" if ev.hypothesis else ""
    lvl = f"{result.effects.conf_level:.0%}" if result.effects else "95%"
    out: list[tuple[str, str, Callable[[], Figure], str, str]] = []
    c = ev.curves
    out.append((
        f"conditional_{ev.moderator}",
        f"Average predicted probability of surviving the {w}-year window against {foc}, with "
        f"{mod} set to {', '.join(c.moderator_labels)} for every firm{tag}, model {ev.step}; "
        f"shaded bands are {lvl} confidence intervals.",
        partial(_effect_figures.conditional_curves_figure, c, syn), "effects", "conditional",
    ))
    jn = ev.jn_response or ev.jn_link
    if jn is not None:
        scale = "probability" if jn.scale == "response" else "log-odds"
        out.append((
            f"johnson_neyman_{ev.moderator}",
            f"Johnson–Neyman plot{tag}: the slope of {foc} on the {scale} scale along {mod} "
            f"(model {ev.step}); band: {jn.conf_level:.0%} {jn.band} confidence interval; shaded "
            f"region: the slope differs from zero; ticks: percentiles of the observed {mod}.",
            partial(_effect_figures.jn_region_figure, jn, syn), "effects", "jn",
        ))
    if ev.firms is not None:
        conf = result.effects.conf_level if result.effects else 0.95
        out.append((
            f"ai_norton_{ev.moderator}",
            f"Ai–Norton interaction effect of {foc} × {mod}{tag} for each firm against its "
            "predicted probability of surviving (left) and its z statistic (right); the dashed "
            "line is the coefficient × F′(η), which is not the interaction effect.",
            partial(_effect_figures.ai_norton_firms_figure, ev.firms, ev.focal, ev.moderator,
                    conf, syn), "effects", "ai_norton",
        ))
    return out


def _effects_context(result: StudyResult) -> dict[str, Any] | None:
    eff = result.effects
    if eff is None:
        return None
    by = {v.hypothesis: v for v in result.verdicts}
    items = []
    for ev in eff.interactions:
        v = by.get(ev.hypothesis or "")
        head = ev.hypothesis or label(ev.term)
        verdict = ("" if v is None else
                   f"coefficient {'supported' if v.supported else 'not supported'} in {v.step}")
        jn = [j.text for j in (ev.jn_link, ev.jn_response) if j is not None]
        items.append({"head": head, "term": label(ev.term), "verdict": verdict, "text": ev.text,
                      "jn": jn})
    return {"items": items}


def _missing_context(result: StudyResult) -> dict[str, Any] | None:
    ms = result.missing
    if ms is None:
        return None
    none = "" if ms.any_missing else (
        f"No analysis variable has missing values: all {fmt_int(ms.n_rows)} rows entering the "
        "analysis are complete, so no row was dropped for missing data.")
    return {"none": none, "mice": ms.method == "mice", "note": ms.note}


def _context(result: StudyResult, figs: list[_Figure], fmt: str) -> dict[str, Any]:
    from markupsafe import Markup

    tables = build_tables(result)
    render = to_markdown if fmt == "md" else to_html
    rendered = {k: (Markup(render(t)) if fmt == "html" else render(t)) for k, t in tables.items()}
    prov = result.provenance
    gen = prov.generator or {}

    def fig_dict(f: _Figure) -> dict[str, str]:
        return {"caption": f.caption, "png": f"figures/{f.png.name}",
                "svg": f"figures/{f.svg.name}",
                "b64": base64.b64encode(f.png.read_bytes()).decode("ascii")
                if fmt == "html" else ""}

    by_group = {f.key: fig_dict(f) for f in figs if f.kind == "survival"}
    survival = []
    for gs in result.survival_by_group:
        entry = {"figure": by_group.get(gs.group_variable),
                 "at_risk": rendered.get(f"at_risk:{gs.group_variable}", ""),
                 "logrank": logrank_line(gs) or ""}
        if entry["figure"] or entry["at_risk"] or entry["logrank"]:
            survival.append(entry)
    cif = next((fig_dict(f) for f in figs if f.kind == "incidence"), None)
    effects = _effects_context(result)
    if effects is not None:
        effects["figures"] = [fig_dict(f) for f in figs if f.kind == "effects"]
    ph = result.ph_check
    return {
        "r": result,
        "prov": prov,
        "generator": {k: gen[k] for k in ("seed", "n") if k in gen},
        "banner": SYNTHETIC_BANNER,
        "tables": rendered,
        "methods": methods_note(result).split("\n\n"),
        "models_heading": models_heading(_main_model(result)),
        "figures": [fig_dict(f) for f in figs if f.kind == "interaction"],
        "survival": survival,
        "robustness": "hazard_ratios" in rendered or "cross_model" in rendered,
        "ph_note": ph.note if ph is not None else "",
        "exit_routes": {"figure": cif, "text": EXIT_ROUTES_TEXT}
        if cif or "incidence" in rendered or "cause_specific" in rendered else None,
        "effects": effects,
        "mediation": result.mediation,
        "missing": _missing_context(result),
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


#: Report formats: the report itself is always Markdown and HTML; LaTeX and Word add the
#: journal tables (``tables.tex``, a compilable document with the figures; ``tables.docx``).
REPORT_FORMATS = ("md", "html", "latex", "docx")


def check_formats(formats: Iterable[str]) -> tuple[str, ...]:
    """The formats asked for, checked (``--format latex,docx``)."""
    fm = tuple(dict.fromkeys(f.strip().lower() for f in formats if f.strip()))
    bad = [f for f in fm if f not in REPORT_FORMATS]
    if bad or not fm:
        raise UsageError(f"--format takes a comma-separated list of {', '.join(REPORT_FORMATS)}; "
                         f"got '{','.join(formats)}'")
    return fm


def write_report(result: StudyResult, out_dir: Path | str,
                 formats: Iterable[str] = REPORT_FORMATS) -> ReportFiles:
    """Write ``report.md``, ``report.html``, ``results.json``, ``figures/`` (PNG 300 dpi and
    SVG) and, with ``formats`` holding "latex" / "docx", ``tables.tex`` / ``tables.docx`` (every
    table in the journal layout; the .tex also places the figures) to ``out_dir``.

    All or nothing: on any error the temporary folder is removed and ``out_dir`` is left as it
    was (absent, or the previous report).
    """
    fm = check_formats(formats)
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
        _publication_tables(result, figs, tmp, fm)
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
        latex=out / "tables.tex" if "latex" in fm else None,
        docx=out / "tables.docx" if "docx" in fm else None,
    )


def _publication_tables(result: StudyResult, figs: list[_Figure], folder: Path,
                        formats: tuple[str, ...]) -> None:
    """``tables.tex`` and ``tables.docx``: the report's tables (and, in LaTeX, its figures)."""
    if "latex" not in formats and "docx" not in formats:
        return
    tables = list(build_tables(result).items())
    title = result.title or result.study
    banner = SYNTHETIC_BANNER if result.synthetic else ""
    if "latex" in formats:
        from smesurvival.report.latex import latex_document

        pngs = [(f"figures/{f.stem}.png", f.caption) for f in figs]
        (folder / "tables.tex").write_text(latex_document(tables, title, banner, pngs),
                                           encoding="utf-8")
    if "docx" in formats:
        from smesurvival.report.docx import write_docx

        write_docx(tables, folder / "tables.docx", title, banner)
