"""Tables of the issue-4 sections: effects on the probability scale, mediation, missing values.

Same contract as :mod:`.tables`: numbers in, formatted strings out, one frozen :class:`Table`
per builder, rendered by :mod:`.render`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from smesurvival.report.tables import (
    DASH,
    DEFAULT_COLLAPSE,
    Table,
    fmt_ci,
    fmt_int,
    fmt_num,
    fmt_p,
    label,
    short_label,
    stars,
)

if TYPE_CHECKING:
    from smesurvival.study.result import (
        EffectRow,
        EffectsSection,
        MediationSection,
        MissingSection,
        Verdict,
    )

AI_NORTON_REF = ("Ai, C. & Norton, E. C. (2003). Interaction terms in logit and probit models. "
                 "Economics Letters 80(1): 123–129; Hoetker, G. (2007). The use of logit and "
                 "probit models in strategic management research. Strategic Management Journal "
                 "28(4): 331–343.")


def _boot(r: EffectRow, kind: str) -> str:
    lo, hi = ((r.percentile_low, r.percentile_high) if kind == "percentile"
              else (r.bca_low, r.bca_high))
    return DASH if lo is None or hi is None else fmt_ci(lo, hi)


def _pct(level: float) -> str:
    return f"{level:.0%}"


def ame_table(section: EffectsSection) -> Table:
    """The focal variable's average marginal effect with delta-method and bootstrap CIs."""
    r, b = section.ame, section.bootstrap
    lvl = _pct(section.conf_level)
    cols = ["Variable", "AME", "SE", f"{lvl} CI (delta)"]
    row = [r.label, fmt_num(r.estimate), fmt_num(r.std_error), fmt_ci(r.conf_low, r.conf_high)]
    notes = [f"Average marginal effect on the probability of surviving, model {section.step}: the "
             "change in predicted survival probability per unit of the variable (a 0 → 1 change "
             "for a binary one), averaged over the firms; delta-method standard error."]
    if b is not None:
        cols += ["Bootstrap SE", f"{lvl} CI (percentile)", f"{lvl} CI (BCa)"]
        row += [fmt_num(r.boot_se), _boot(r, "percentile"), _boot(r, "bca")]
        notes.append(f"Bootstrap: {b.B:,} {b.kind} resamples of the firms (seed {b.seed}), each a "
                     f"full refit; BCa acceleration from the delete-one jackknife ({b.jackknife})"
                     + (f"; {b.n_failed} replicate(s) failed to converge and were dropped."
                        if b.n_failed else "."))
    return Table(f"Average marginal effect of {short_label(section.focal)} on the probability "
                 "of surviving", tuple(cols), (tuple(row),), tuple(notes))


def simple_slopes_table(section: EffectsSection) -> Table:
    """The focal variable's AME at moderator values, per interaction, with the difference."""
    lvl = _pct(section.conf_level)
    rows: list[tuple[str, ...]] = []
    rules = []
    for ev in section.interactions:
        hyp = ev.hypothesis or DASH
        for r in (*ev.simple_slopes, ev.slope_difference):
            v = r.at.get(ev.moderator)
            at = DASH if v is None else (f"{v:g}" if ev.moderator_binary else fmt_num(v))
            rows.append((hyp, short_label(ev.moderator), r.label.split(" at ")[-1], at,
                         fmt_num(r.estimate), fmt_num(r.std_error), fmt_ci(r.conf_low, r.conf_high),
                         fmt_p(r.p_value)))
            hyp = ""
        rules.append(len(rows) - 1)
    return Table(
        f"Simple slopes: average marginal effect of {short_label(section.focal)} at moderator values",
        ("Hypothesis", "Moderator", "At", "Value", "AME", "SE", f"{lvl} CI", "p"), tuple(rows),
        notes=(
            "AME of the focal variable on the probability of surviving with the moderator set to "
            "the value for every firm (mean − 1 SD, mean, mean + 1 SD; 0 and 1 for a binary "
            "moderator), other covariates as observed; delta-method SEs, two-sided p. The last "
            "row of each block is the difference between the highest and lowest value.",
        ),
        rules_after=tuple(rules[:-1]),
        align=("l", "l", "l", "r", "r", "r", "r", "r"),
    )


def ai_norton_table(section: EffectsSection, verdicts: Sequence[Verdict] = ()) -> Table:
    """The coefficient beside the average Ai–Norton interaction effect, per interaction."""
    lvl = _pct(section.conf_level)
    by = {v.hypothesis: v for v in verdicts}
    rows = []
    for ev in section.interactions:
        v = by.get(ev.hypothesis or "")
        an = ev.ai_norton
        rows.append((
            ev.hypothesis or DASH, label(ev.term), ev.step,
            f"{fmt_num(ev.coefficient)} ({fmt_num(ev.coefficient_se)})",
            DASH if v is None else (f"{'Supported' if v.supported else 'Not supported'} ({v.step})"),
            f"{fmt_num(an.estimate)} ({fmt_num(an.std_error)})", fmt_ci(an.conf_low, an.conf_high),
            fmt_p(an.p_value), ev.ai_norton_kind,
        ))
    return Table(
        "Interaction coefficients beside the average interaction effect on the probability scale",
        ("Hypothesis", "Interaction", "Model", "Coefficient (SE), log-odds", "Verdict (coefficient)",
         "Average interaction effect (SE)", f"{lvl} CI", "p", "Kind"),
        tuple(rows),
        notes=(
            "The coefficient of a product term in a logit model is not the interaction effect on "
            "the probability (Ai & Norton 2003): the average interaction effect is the mean over "
            "firms of the cross-partial derivative of the survival probability (the derivative of "
            "the discrete change for a binary moderator), with a delta-method SE. Verdicts are "
            "judged on the coefficients, as in the 2012 study, in the step the spec names.",
            AI_NORTON_REF,
        ),
        align=("l", "l", "c", "r", "l", "r", "r", "r", "l"),
    )


def _mediation_rows(rows: Sequence[EffectRow], boot: bool) -> tuple[tuple[str, ...], ...]:
    out = []
    for r in rows:
        pct = r.term.startswith("percent")
        d = 1 if pct else 3
        cells = [r.label, fmt_num(r.estimate, d), fmt_num(r.std_error, d),
                 fmt_ci(r.conf_low, r.conf_high, d), fmt_p(r.p_value)]
        if boot:
            cells += [_boot(r, "percentile"), _boot(r, "bca")]
        out.append(tuple(cells))
    return tuple(out)


def _mediation_notes(med: MediationSection) -> list[str]:
    ctr = ", ".join(label(c) if not c.startswith("C(") else DEFAULT_COLLAPSE.get(c, c)
                    for c in med.controls) or "none"
    notes = [f"Key: {label(med.key)}; mediator: {label(med.mediator)}; outcome: {med.outcome}; "
             f"controls: {ctr}; {med.model}, N = {fmt_int(med.nobs)}. Wald intervals use "
             "delta-method SEs."]
    b = med.bootstrap
    if b is not None:
        notes.append(f"Bootstrap: {b.B:,} {b.kind} resamples (seed {b.seed}); every replicate "
                     "refits both the mediator equation (OLS) and the outcome model; BCa "
                     f"acceleration from the delete-one jackknife ({b.jackknife})"
                     + (f"; {b.n_failed} replicate(s) failed and were dropped." if b.n_failed
                        else ".") + " Percentages get no bootstrap interval (their denominator "
                     "can be near zero).")
    return notes


def khb_table(med: MediationSection) -> Table:
    """KHB decomposition: total, direct and indirect effects on one (log-odds) scale."""
    boot = med.bootstrap is not None
    lvl = _pct(med.conf_level)
    cols = ["Quantity", "Estimate", "SE", f"{lvl} CI", "p"]
    if boot:
        cols += [f"{lvl} CI (percentile)", f"{lvl} CI (BCa)"]
    return Table(
        f"Mediation (KHB): {short_label(med.key)} → {short_label(med.mediator)} → survival",
        tuple(cols), _mediation_rows(med.khb, boot),
        notes=("Karlson, Holm & Breen (2012): the total effect comes from the reduced model with "
               "the mediator's residual in place of the mediator, so total, direct and indirect "
               "effects are on the same scale (total = direct + indirect).",
               *_mediation_notes(med)),
    )


def product_table(med: MediationSection) -> Table:
    """Product of coefficients with probability-scale (AME) decomposition."""
    boot = med.bootstrap is not None
    lvl = _pct(med.conf_level)
    cols = ["Quantity", "Estimate", "SE", f"{lvl} CI", "p"]
    if boot:
        cols += [f"{lvl} CI (percentile)", f"{lvl} CI (BCa)"]
    return Table(
        f"Mediation (product of coefficients): {short_label(med.key)} → "
        f"{short_label(med.mediator)} → survival",
        tuple(cols), _mediation_rows(med.product, boot),
        notes=("a from the OLS mediator equation, b and the direct effect from the outcome model "
               "with key and mediator; the probability-scale rows average each firm's change in "
               "survival probability per unit of the key (indirect: through the mediator's "
               "a-shift). SE of a × b: Sobel / delta method.", *_mediation_notes(med)),
    )


def missingness_table(ms: MissingSection) -> Table:
    """Missing values of every analysis variable among the rows entering the analysis."""
    mice = ms.method == "mice"
    rows = []
    for r in ms.table:
        cells = [r.label, fmt_int(r.n), fmt_int(r.n_missing), f"{100 * r.share:.1f}%"]
        if mice:
            cells.append(r.method or DASH)
        rows.append(tuple(cells))
    cols = ["Variable", "Rows", "Missing", "Share missing"] + (["Imputation"] if mice else [])
    how = ("Rows missing a predictor were imputed (see below); the complete-case analysis "
           "above drops them." if mice else
           "Rows missing any of these variables are dropped once, for every model step, and "
           "counted in the sample flow (listwise deletion).")
    return Table(
        "Missing values by analysis variable", tuple(cols), tuple(rows),
        notes=(f"Rows entering the analysis sample: {fmt_int(ms.n_rows)}; complete in every "
               f"variable: {fmt_int(ms.n_complete)}. {how}",),
    )


def pooled_table(ms: MissingSection, collapse: dict[str, str] | None = None) -> Table:
    """The main steps pooled over the imputations (Rubin's rules), journal layout."""
    coll = DEFAULT_COLLAPSE if collapse is None else collapse
    steps = ms.pooled_steps

    def group_of(t: str) -> str | None:
        return next((v for k, v in coll.items() if t.startswith(k)), None)

    order: list[str] = []
    groups: list[str] = []
    for s in steps:
        for t in s.terms:
            g = group_of(t)
            if g is not None:
                if g not in groups:
                    groups.append(g)
            elif t not in order:
                order.append(t)
    if "Intercept" in order:
        order.remove("Intercept")
        order.append("Intercept")
    rows: list[tuple[str, ...]] = []
    for t in order:
        coef, se = [label(t)], [""]
        for s in steps:
            if t in s.terms:
                j = s.terms.index(t)
                coef.append(fmt_num(s.estimate[j]) + stars(s.p_value[j]))
                se.append(f"({fmt_num(s.std_error[j])}) FMI {fmt_num(s.fmi[j], 2)}")
            else:
                coef.append("")
                se.append("")
        rows += [tuple(coef), tuple(se)]
    for g in groups:
        rows.append((g, *("Yes" if any(group_of(t) == g for t in s.terms) else "No"
                          for s in steps)))
    n_coef = len(rows)
    rows.append(("N (firms)", *(fmt_int(s.nobs) for s in steps)))
    rows.append(("Imputations (m)", *(str(ms.m) for _ in steps)))
    return Table(
        "Hierarchical models pooled over the imputed data sets (Rubin's rules)",
        ("", *(f"{s.name}: {s.label}" for s in steps)), tuple(rows),
        notes=("Pooled coefficient with stars from two-sided t tests on Barnard–Rubin degrees of "
               "freedom († .10, * .05, ** .01, *** .001); below it the pooled SE and the fraction "
               "of missing information (FMI).", ms.note),
        rules_after=(n_coef - 1,),
    )


def pooled_verdict_table(ms: MissingSection, complete_case: Sequence[Verdict] = ()) -> Table:
    """Hypotheses judged on pooled estimates, beside the complete-case verdicts."""
    cc = {v.hypothesis: v for v in complete_case}
    rows = []
    for v in ms.pooled_verdicts:
        c = cc.get(v.hypothesis)
        sided = "one-sided" if v.test.startswith("one") else "two-sided"
        rows.append((
            v.hypothesis, label(v.term), v.step, f"{fmt_num(v.estimate)} ({fmt_num(v.std_error)})",
            f"{v.df:,.0f}", fmt_num(v.fmi, 2), f"{fmt_p(v.p_value)} ({sided})",
            "Supported" if v.supported else "Not supported",
            DASH if c is None else ("Supported" if c.supported else "Not supported"),
            DASH if v.published is None else v.published.capitalize(),
        ))
    return Table(
        "Hypothesis verdicts from the pooled estimates (multiple imputation)",
        ("Hypothesis", "Term", "Model", "Pooled estimate (SE)", "df", "FMI", "p",
         "Verdict (MI)", "Verdict (complete cases)", "2012 study"),
        tuple(rows),
        notes=("t = pooled estimate / pooled SE on Barnard–Rubin degrees of freedom; the "
               "one-sided p is P(T > t) in the expected direction.",),
        align=("l", "l", "c", "r", "r", "r", "r", "l", "l", "l"),
    )
