"""Time-to-exit tables: numbers at risk, hazard ratios across models, verdicts across models,
proportional-hazards tests, cumulative incidence and cause-specific hazards.

Like :mod:`smesurvival.report.tables`, every builder returns a :class:`Table` of formatted
strings; the renderers show the same numbers in Markdown, HTML and text.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from smesurvival.labels import label, short_label
from smesurvival.report.tables import (
    DASH,
    DEFAULT_COLLAPSE,
    HAZARD_MODELS,
    Align,
    Table,
    _collapsed,
    _finite,
    _published,
    concordance,
    fmt_int,
    fmt_num,
    fmt_p,
    lower_first,
    model_name,
    n_obs_cell,
)

if TYPE_CHECKING:
    from smesurvival.models.result import FitResult
    from smesurvival.study.result import (
        CauseSpecificFit,
        GroupSurvival,
        IncidenceCurves,
        ModelRun,
        ModelStep,
        PHCheck,
        StudyResult,
    )

#: Terms that are part of a model's baseline, not substantive (never shown as rows).
HIDDEN_PREFIXES = ("Intercept", "C(period)")

#: Display names of the canonical exit routes.
EXIT_LABELS: dict[str, str] = {
    "failure": "Failure (closure, bankruptcy)",
    "acquisition": "Acquisition (incl. merger)",
    "other": "Other exit",
}

#: Name of the exponentiated coefficient per model.
RATIO_NAMES: dict[str, str] = {
    "logit": "OR", "firth": "OR", "cox": "HR", "discrete": "HR", "finegray": "SHR",
}


def term_name(term: str, labels: Mapping[str, str] | None = None) -> str:
    """A short name of a term: ``Export ratio``, ``Export ratio × R&D intensity``."""
    return " × ".join(short_label(p.strip(), labels) for p in term.split(":"))


def _cluster_text(fit: FitResult) -> str:
    if fit.cluster_var in ("firm_id", "id"):
        return "SEs clustered by firm"
    if fit.cluster_var:
        return f"SEs clustered by {fit.cluster_var}"
    return f"{fit.vcov_type} SEs"


def exit_label(exit_type: str) -> str:
    return EXIT_LABELS.get(exit_type, exit_type.replace("_", " ").capitalize())


def exit_name(exit_type: str) -> str:
    """The short name of an exit route: ``Failure``, ``Acquisition``."""
    return short_label(exit_label(exit_type))


# ---- formatting -------------------------------------------------------------------------------
def fmt_ratio(x: float | None) -> str:
    """An odds or hazard ratio: three decimals in 0.001–999, scientific notation outside."""
    if not _finite(x):
        return DASH
    v = float(x)  # type: ignore[arg-type]
    if v == 0.0 or 0.001 <= abs(v) < 1000:
        return f"{v:.3f}"
    return f"{v:.2e}"


def fmt_pct(x: float | None, digits: int = 1) -> str:
    if not _finite(x):
        return DASH
    return f"{100.0 * float(x):.{digits}f}%"  # type: ignore[arg-type]


def _exp(x: float) -> float:
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf


def ratio_parts(fit: FitResult, term: str) -> tuple[str, str] | None:
    """``("0.656 [0.519, 0.829]", ".001")`` for ratio models; the coefficient for others.

    The ratio is exp(coefficient) with the Wald interval exponentiated (odds ratio for logit,
    hazard ratio for Cox and the discrete-time cloglog hazard, subdistribution HR for
    Fine–Gray); ``None`` when the term is not in the model.
    """
    if term not in fit.terms:
        return None
    j = fit.terms.index(term)
    b = float(fit.params[j])
    ci = fit.conf_int().iloc[j]
    lo, hi = float(ci["conf_low"]), float(ci["conf_high"])
    if fit.model in RATIO_NAMES:
        cell = f"{fmt_ratio(_exp(b))} [{fmt_ratio(_exp(lo))}, {fmt_ratio(_exp(hi))}]"
    else:
        cell = f"{fmt_num(b)} [{fmt_num(lo)}, {fmt_num(hi)}]"
    return cell, fmt_p(float(fit.pvalues[j]))


def _ratio_name(model: str) -> str:
    return RATIO_NAMES.get(model, "Coef.")


# ---- survival curves --------------------------------------------------------------------------
def at_risk_table(gs: GroupSurvival) -> Table | None:
    """Numbers at risk per group at each year 0..window (``None`` if not tabulated)."""
    if gs.risk_times is None or not len(gs.at_risk):
        return None
    years = np.asarray(gs.risk_times, dtype=float)
    cols = tuple(f"{y:g}" for y in years)
    rows = tuple((g, *(fmt_int(v) for v in np.asarray(r, dtype=float)))
                 for g, r in zip(gs.groups, gs.at_risk, strict=True))
    return Table(
        title=f"Numbers at risk by {lower_first(short_label(gs.group_variable))}",
        columns=("Group", *cols),
        rows=rows,
        header_groups=(("", 1), ("Years since survey", len(cols))),
    )


def logrank_line(gs: GroupSurvival) -> str | None:
    """``Log-rank test of equal survival: χ² = 10.742, df = 1, p = .001.`` (or ``None``)."""
    if gs.logrank_chi2 is None or not _finite(gs.logrank_chi2):
        return None
    p = fmt_p(gs.logrank_p)
    p_text = f"p < {p[1:]}" if p.startswith("<") else f"p = {p}"
    df = DASH if gs.logrank_df is None else str(gs.logrank_df)
    return (f"Log-rank test of equal survival across {len(gs.groups)} groups: "
            f"χ² = {fmt_num(gs.logrank_chi2)}, df = {df}, {p_text}.")


# ---- the hypotheses under every model --------------------------------------------------------
def all_runs(result: StudyResult) -> tuple[ModelRun, ...]:
    """The main analysis as a :class:`ModelRun`, followed by the robustness runs."""
    from smesurvival.study.result import ModelRun

    runs: list[ModelRun] = []
    if result.steps:
        model = result.steps[0].fit.model
        runs.append(ModelRun(model, f"{model_name(model)} (main analysis)", "",
                             result.steps, result.verdicts))
    runs += [r for r in result.robustness if not runs or r.model != runs[0].model]
    return tuple(runs)


def comparison_step(result: StudyResult) -> str | None:
    """The step compared across models: the spec's PH step, else the last step."""
    name = getattr(result.spec, "ph_step", None)
    if not name and result.ph_check is not None:
        name = result.ph_check.step
    if name and any(s.name == name for s in result.steps):
        return str(name)
    return result.steps[-1].name if result.steps else None


def _step_of(run: ModelRun, name: str) -> ModelStep | None:
    return next((s for s in run.steps if s.name == name), None)


def _substantive_terms(fits: Sequence[FitResult], collapse: Mapping[str, str]
                       ) -> tuple[list[str], list[str]]:
    order: list[str] = []
    groups: list[str] = []
    for f in fits:
        for t in f.terms:
            if t.startswith(HIDDEN_PREFIXES):
                continue
            g = _collapsed(t, collapse)
            if g is not None:
                if g not in groups:
                    groups.append(g)
            elif t not in order:
                order.append(t)
    return order, groups


def _ratio_rows(
    fits: Sequence[FitResult | None], collapse: Mapping[str, str],
    labels: Mapping[str, str] | None,
) -> tuple[list[tuple[str, ...]], list[str]]:
    order, groups = _substantive_terms([f for f in fits if f is not None], collapse)
    rows: list[tuple[str, ...]] = []
    for t in order:
        cells = [label(t, labels)]
        for f in fits:
            parts = ratio_parts(f, t) if f is not None else None
            cells += list(parts) if parts else [DASH if f is None else "", ""]
        rows.append(tuple(cells))
    for g in groups:
        cells = [g]
        for f in fits:
            has = f is not None and any(_collapsed(t, collapse) == g for t in f.terms)
            cells += [DASH if f is None else ("Yes" if has else "No"), ""]
        rows.append(tuple(cells))
    return rows, groups


def _ratio_align(k: int) -> tuple[Align, ...]:
    right: Align = "r"
    return ("l", *(right,) * (2 * k))


def hazard_ratio_table(
    runs: Sequence[ModelRun],
    step: str,
    *,
    outcome_is_survival: bool = True,
    title: str | None = None,
    labels: Mapping[str, str] | None = None,
    collapse: Mapping[str, str] | None = None,
    conf_level: float = 0.95,
) -> Table | None:
    """One step under every model side by side: ratio [CI] and p per model, fit rows below.

    Rows are the substantive terms (industry dummies collapsed to one row; the intercept and
    the discrete-time model's yearly dummies are left out), then N (firms / firm-years),
    exits, Cox concordance and the log-likelihood. ``None`` when no run has ``step``.
    """
    coll = DEFAULT_COLLAPSE if collapse is None else collapse
    pairs = [(r, s) for r in runs if (s := _step_of(r, step)) is not None]
    if not pairs:
        return None
    fits = [s.fit for _, s in pairs]
    rows, groups = _ratio_rows(fits, coll, labels)
    n_coef = len(rows)

    def stat(name: str, values: Sequence[str]) -> None:
        _stat_row(rows, name, values)

    stat("N (firms / firm-years)", [n_obs_cell(f) for f in fits])
    exits = []
    for f in fits:
        binary = f.model not in HAZARD_MODELS
        exits.append(fmt_int(f.n_for_ic - f.n_events if binary and outcome_is_survival
                             else f.n_events))
    stat("Exits (events)", exits)
    stat("Concordance (C)", [fmt_num(concordance(f)) if f.model == "cox" else DASH
                             for f in fits])
    stat("Log-likelihood", [fmt_num(f.loglik) for f in fits])

    lvl = f"{conf_level:.0%}"
    columns: list[str] = [""]
    for r, _ in pairs:
        columns += [f"{model_name(r.model)} {_ratio_name(r.model)} [{lvl} CI]", "p"]
    models = {r.model for r, _ in pairs}
    notes = []
    if models & {"logit", "firth"}:
        notes.append("OR: odds ratio of surviving the window; OR > 1 = better survival."
                     if outcome_is_survival else
                     "OR: odds ratio of exiting within the window; OR < 1 = better survival.")
    if models & set(HAZARD_MODELS):
        notes.append("HR: hazard ratio of exit; HR < 1 = lower exit hazard = better survival"
                     + (" (SHR: subdistribution hazard ratio, read the same way)."
                        if "finegray" in models else "."))
    if models - set(RATIO_NAMES):
        notes.append("Coef.: coefficient of a model without a ratio reading.")
    notes.append(f"Ratios are exp(coefficient) with exponentiated two-sided Wald {lvl} "
                 "intervals; p: two-sided Wald test. Ratios of interaction terms are per unit of "
                 "both variables (very large or small ratios in scientific notation).")
    details = []
    for r, s in pairs:
        f = s.fit
        if r.model == "cox":
            ties = f.extra.get("ties", "efron") if isinstance(f.extra, Mapping) else "efron"
            details.append(f"Cox: {ties.capitalize()} ties, partial log-likelihood")
        elif r.model == "discrete":
            se = _cluster_text(f)
            details.append("Discrete-time: complementary log-log hazard on firm-years with "
                           f"yearly baseline dummies (not shown), {se}")
    if "finegray" in models:
        details.append("Fine–Gray: exits by the route of interest are events, exits by other "
                       "routes are competing events (so its exit count can be smaller)")
    if details:
        notes.append("; ".join(details) + ". Log-likelihoods are not comparable across models.")
    if groups:
        notes.append(f"{', '.join(groups)}: estimated but not shown.")
    step_label = pairs[0][1].label
    return Table(
        title=title or f"Model {step} ({step_label}) under each estimator",
        columns=tuple(columns),
        rows=tuple(rows),
        notes=tuple(notes),
        rules_after=(n_coef - 1,) if n_coef else (),
        align=_ratio_align(len(pairs)),
    )


def _verdict_word(supported: bool) -> str:
    return "Supported" if supported else "Not supported"


def cross_model_verdict_table(
    runs: Sequence[ModelRun],
    *,
    title: str = "Hypotheses under each model",
    labels: Mapping[str, str] | None = None,
) -> Table | None:
    """One row per hypothesis: the 2012 finding, the verdict under each model, and whether all
    models agree with the main (first) run. ``None`` without a main run or hypotheses."""
    if not runs or not runs[0].verdicts:
        return None
    main = runs[0]
    rows = []
    for v in main.verdicts:
        cells = [f"{v.hypothesis} ({term_name(v.term, labels)})", _published(v.published)]
        differ = []
        for r in runs:
            w = next((x for x in r.verdicts if x.hypothesis == v.hypothesis), None)
            if w is None:
                cells.append(DASH)
                continue
            cells.append(_verdict_word(w.supported))
            if w.supported != v.supported:
                differ.append(model_name(r.model))
        cells.append("✓" if not differ else f"✗ differs under {', '.join(differ)}")
        rows.append(tuple(cells))
    heads = [f"{model_name(main.model)} (main)", *(model_name(r.model) for r in runs[1:])]
    left: Align = "l"
    center: Align = "c"
    return Table(
        title=title,
        columns=("Hypothesis", "2012 study", *heads, "Holds across models"),
        rows=tuple(rows),
        align=(left, left, *(left,) * len(runs), center),
        notes=(
            "Each hypothesis is judged in the same step, with the same test and alpha, under "
            "every model. The hypotheses speak of survival: in the hazard models better "
            "survival is a lower exit hazard, so a hypothesis of better survival is tested as "
            "a negative coefficient (hazard ratio below 1).",
            "✓: every model reaches the main analysis's verdict; ✗: the models named differ.",
        ),
    )


# ---- proportional hazards ---------------------------------------------------------------------
def ph_table(ph: PHCheck, *, labels: Mapping[str, str] | None = None,
             title: str | None = None) -> Table:
    """Per-term Schoenfeld-residual tests with a flag at p < alpha, then the global test."""
    flag_col = f"Doubtful (p < {ph.alpha:g})"
    rows = []
    chisq = np.asarray(ph.chisq, dtype=float)
    pv = np.asarray(ph.p_value, dtype=float)
    for t, c, p in zip(ph.terms, chisq, pv, strict=True):
        flag = "⚑ yes" if _finite(p) and p < ph.alpha else ""
        rows.append((label(t, labels), fmt_num(c), "1", fmt_p(p), flag))
    gflag = "⚑ yes" if _finite(ph.global_p) and ph.global_p < ph.alpha else ""
    rows.append(("Global test", fmt_num(ph.global_chisq), str(ph.global_df),
                 fmt_p(ph.global_p), gflag))
    center: Align = "c"
    return Table(
        title=title or f"Proportional-hazards tests of the Cox model {ph.step}",
        columns=("Term", "χ²", "df", "p", flag_col),
        rows=tuple(rows),
        rules_after=(len(rows) - 2,) if len(rows) > 1 else (),
        align=("l", "r", "r", "r", center),
        notes=(
            "Tests of the scaled Schoenfeld residuals against the Kaplan–Meier transform of "
            "time (as R's cox.zph): a small p means the term's hazard ratio seems to change "
            "over the follow-up.",
        ),
    )


# ---- exit routes ------------------------------------------------------------------------------
def _ci_at(times: np.ndarray, values: np.ndarray, t: float) -> float:
    """Value of a right-continuous step function at ``t`` (``nan`` before the first step)."""
    i = int(np.searchsorted(times, t, side="right")) - 1
    return float(values[i]) if 0 <= i < len(values) else math.nan


def incidence_table(inc: IncidenceCurves, window: int, *, title: str | None = None) -> Table:
    """Cumulative incidence of each exit route at the end of the window, with its CI."""
    rows = []
    for i, et in enumerate(inc.exit_types):
        t = np.asarray(inc.times[i], dtype=float)
        est = inc.at_window[i]
        lo = _ci_at(t, np.asarray(inc.conf_low[i], dtype=float), float(window))
        hi = _ci_at(t, np.asarray(inc.conf_high[i], dtype=float), float(window))
        same = abs(_ci_at(t, np.asarray(inc.estimate[i], dtype=float), float(window))
                   - est) < 1e-9
        ci = f"[{fmt_pct(lo)}, {fmt_pct(hi)}]" if same and _finite(lo) and _finite(hi) else ""
        rows.append((exit_label(et), fmt_int(inc.n_events[i]), f"{fmt_pct(est)} {ci}".strip()))
    return Table(
        title=title or f"Share of firms that exited by each route within {window} years",
        columns=("Exit route", "Exits (whole follow-up)",
                 f"Cumulative incidence at {window} years [95% CI]"),
        rows=tuple(rows),
        notes=("Aalen–Johansen estimates: each route's share accounts for firms that left "
               "earlier by another route (competing risks), so the shares add up to the share "
               "of firms that exited.",),
    )


def cause_specific_table(
    fits: Sequence[CauseSpecificFit],
    *,
    title: str | None = None,
    labels: Mapping[str, str] | None = None,
    collapse: Mapping[str, str] | None = None,
    conf_level: float = 0.95,
) -> Table | None:
    """Cause-specific Cox hazard ratios per exit route side by side (``None`` if no fits).

    A route whose model could not be estimated shows dashes, and its note is listed below.
    """
    if not fits:
        return None
    coll = DEFAULT_COLLAPSE if collapse is None else collapse
    models = [c.fit for c in fits]
    rows, groups = _ratio_rows(models, coll, labels)
    n_coef = len(rows)

    def stat(name: str, values: Sequence[str]) -> None:
        _stat_row(rows, name, values)

    stat("N (firms)", [fmt_int(f.nobs) if f is not None else DASH for f in models])
    stat("Exits of this route (events)", [fmt_int(c.n_events) for c in fits])
    stat("Concordance (C)", [fmt_num(concordance(f)) if f is not None else DASH for f in models])
    stat("Partial log-likelihood", [fmt_num(f.loglik) if f is not None else DASH
                                    for f in models])
    lvl = f"{conf_level:.0%}"
    columns: list[str] = [""]
    for c in fits:
        columns += [f"{exit_name(c.exit_type)} HR [{lvl} CI]", "p"]
    steps = sorted({c.step for c in fits})
    notes = [
        "Cause-specific Cox models: exits by the route named are events; firms that left by "
        "another route are censored at their exit. HR < 1 = lower hazard of exit by that route.",
    ]
    if groups:
        notes.append(f"{', '.join(groups)}: estimated but not shown.")
    for c in fits:
        if c.fit is None or c.note:  # not estimable, or estimated another way (e.g. Firth)
            notes.append(f"{exit_name(c.exit_type)}: "
                         f"{c.note or 'the model could not be estimated'}.".replace("..", "."))
    return Table(
        title=title or f"Exit routes: cause-specific hazard ratios (model {', '.join(steps)})",
        columns=tuple(columns),
        rows=tuple(rows),
        notes=tuple(notes),
        rules_after=(n_coef - 1,) if n_coef else (),
        align=_ratio_align(len(fits)),
    )


def _stat_row(rows: list, name: str, values: Sequence[str]) -> None:
    """A bottom row of a ratio table: one value per model, the p-value cell left empty."""
    cells = [name]
    for v in values:
        cells += [v, ""]
    rows.append(tuple(cells))
