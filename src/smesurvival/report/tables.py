"""Publication tables as values: numbers in, already-formatted strings out, no rendering.

Each builder takes parts of a :class:`~smesurvival.study.result.StudyResult` (or a sequence of
model steps) and returns a frozen :class:`Table`. Renderers in :mod:`smesurvival.report.render`
turn one ``Table`` into Markdown, HTML or plain text, so every output shows the same numbers
(STYLE.md lesson 3: numbers first, presentation second).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from smesurvival.labels import label, short_label

if TYPE_CHECKING:
    from smesurvival.data.flow import SampleFlow
    from smesurvival.models.result import FitResult
    from smesurvival.study.result import Descriptives, Implication, ModelStep, Verdict

Align = Literal["l", "r", "c"]

#: Prefix of a term -> the single "Yes/No" row that stands for all its dummies.
DEFAULT_COLLAPSE: dict[str, str] = {"C(industry)": "Industry dummies"}

DASH = "—"

#: Display names of the estimators a study can use.
MODEL_NAMES: dict[str, str] = {
    "logit": "Logit", "firth": "Firth logit", "probit": "Probit",
    "cloglog": "Complementary log-log", "cox": "Cox", "discrete": "Discrete-time",
    "finegray": "Fine–Gray",
}
#: Hazard models: better survival is a negative coefficient (hazard ratio below 1).
HAZARD_MODELS = ("cox", "discrete", "finegray")
_SCALES = {
    "logit": "logit coefficients (log-odds scale)",
    "firth": "Firth-penalised logit coefficients (log-odds scale)",
    "probit": "probit coefficients (probit index)",
    "cloglog": "complementary log-log coefficients",
    "cox": "Cox coefficients (log hazard of exit; negative = better survival)",
    "discrete": "discrete-time cloglog hazard coefficients (log hazard of exit per year; "
                "negative = better survival)",
    "finegray": "Fine–Gray coefficients (log subdistribution hazard of exit; negative = better "
                "survival)",
}


def model_name(model: str) -> str:
    """``Logit``, ``Cox``, ``Discrete-time``… (the raw name when unknown)."""
    return MODEL_NAMES.get(model, model)


def models_heading(model: str) -> str:
    """Section heading of the main hierarchical models, e.g. ``Hierarchical logit models``."""
    noun = {"discrete": "discrete-time hazard", "cox": "Cox", "finegray": "Fine–Gray"}.get(
        model, lower_first(model_name(model)))
    return f"Hierarchical {noun} models"


@dataclass(frozen=True)
class Table:
    """A rendered-agnostic table: a title, column headers, rows of strings and notes.

    ``header_groups`` is an optional row above the headers as ``(label, span)`` pairs whose
    spans sum to the number of columns; ``rules_after`` lists row indices after which a
    horizontal rule is drawn (e.g. between coefficients and fit statistics); ``align`` gives one
    of ``l``/``r``/``c`` per column (default: first column left, the rest right).
    """

    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    notes: tuple[str, ...] = ()
    header_groups: tuple[tuple[str, int], ...] | None = None
    rules_after: tuple[int, ...] = ()
    align: tuple[Align, ...] | None = None

    def __post_init__(self) -> None:
        k = len(self.columns)
        for i, row in enumerate(self.rows):
            if len(row) != k:
                raise ValueError(f"table '{self.title}': row {i} has {len(row)} cells, not {k}")
        if self.header_groups is not None and sum(s for _, s in self.header_groups) != k:
            raise ValueError(f"table '{self.title}': header group spans do not sum to {k}")
        if self.align is not None and len(self.align) != k:
            raise ValueError(f"table '{self.title}': align needs {k} entries")

    @property
    def alignments(self) -> tuple[Align, ...]:
        if self.align is not None:
            return self.align
        right: Align = "r"
        return ("l", *[right] * (len(self.columns) - 1))

    def to_markdown(self) -> str:
        from smesurvival.report.render import to_markdown

        return to_markdown(self)

    def to_html(self) -> str:
        from smesurvival.report.render import to_html

        return to_html(self)

    def to_text(self) -> str:
        from smesurvival.report.render import to_text

        return to_text(self)

    def _repr_html_(self) -> str:  # notebooks
        return self.to_html()

    def __str__(self) -> str:
        return self.to_text()


# ---- formatting -------------------------------------------------------------------------------
def _finite(x: float | None) -> bool:
    return x is not None and isinstance(x, int | float | np.floating | np.integer) and math.isfinite(x)


def fmt_num(x: float | None, digits: int = 3, signed: bool = False) -> str:
    """A number to ``digits`` decimals (en dash for missing / non-finite values)."""
    if not _finite(x):
        return DASH
    v = float(x)  # type: ignore[arg-type]
    if round(v, digits) == 0:
        v = 0.0  # no "-0.000"
    return f"{v:+.{digits}f}" if signed else f"{v:.{digits}f}"


def fmt_int(x: float | None) -> str:
    """A count with thousands separators (non-integral weighted counts keep one decimal)."""
    if not _finite(x):
        return DASH
    v = float(x)  # type: ignore[arg-type]
    return f"{int(round(v)):,}" if abs(v - round(v)) < 1e-9 else f"{v:,.1f}"


def fmt_p(p: float | None) -> str:
    """A p-value in journal style: ``<.001`` or three decimals without the leading zero."""
    if not _finite(p):
        return DASH
    v = float(p)  # type: ignore[arg-type]
    if v < 0.001:
        return "<.001"
    s = f"{v:.3f}"
    return s[1:] if s.startswith("0") else s


def stars(p: float | None, dagger: bool = True) -> str:
    """``***`` p<.001, ``**`` p<.01, ``*`` p<.05, ``†`` p<.10 (the dagger only if asked)."""
    if not _finite(p):
        return ""
    v = float(p)  # type: ignore[arg-type]
    if v < 0.001:
        return "***"
    if v < 0.01:
        return "**"
    if v < 0.05:
        return "*"
    if dagger and v < 0.10:
        return "†"
    return ""


def fmt_ci(lo: float | None, hi: float | None, digits: int = 3) -> str:
    return f"[{fmt_num(lo, digits)}, {fmt_num(hi, digits)}]"


def lower_first(text: str) -> str:
    """Lower-case the first letter for use mid-sentence, unless it starts an acronym ("R&D")."""
    if len(text) > 1 and text[0].isupper() and text[1].islower():
        return text[0].lower() + text[1:]
    return text


# ---- tables -------------------------------------------------------------------------------------
def sample_flow_table(flow: SampleFlow, title: str = "Sample flow") -> Table:
    """Rows read, each drop with its reason, rows used (nothing is lost silently)."""
    rows = []
    for lab, dropped, left in flow.rows():
        is_end = lab in ("Rows read", "Rows used")
        rows.append((lab, "" if is_end else fmt_int(dropped), fmt_int(left)))
    return Table(
        title=title,
        columns=("Step", "Rows dropped", "Rows remaining"),
        rows=tuple(rows),
        rules_after=(len(rows) - 2,) if len(rows) > 2 else (),
        notes=("Every row read is either used or dropped with the reason shown.",),
    )


def descriptives_table(
    desc: Descriptives, title: str = "Table 1. Descriptive statistics and correlations"
) -> Table:
    """Table-1 layout: N, mean, SD, min, max, then lower-triangle correlations with stars."""
    k = len(desc.variables)
    corr_cols = tuple(str(j + 1) for j in range(max(k - 1, 0)))
    rows = []
    for i in range(k):
        cells = [
            f"{i + 1}. {desc.labels[i]}",
            fmt_int(desc.n[i]),
            fmt_num(desc.mean[i]),
            fmt_num(desc.sd[i]),
            fmt_num(desc.min[i]),
            fmt_num(desc.max[i]),
        ]
        for j in range(k - 1):
            if j < i:
                r = desc.corr[i, j]
                # Table-1 convention: two levels only (* .05, ** .01)
                cells.append(fmt_num(r) + stars(desc.corr_p[i, j], dagger=False)[:2])
            else:
                cells.append("")
        rows.append(tuple(cells))
    groups = (("", 6), ("Correlations", k - 1)) if k > 1 else None
    return Table(
        title=title,
        columns=("Variable", "N", "Mean", "SD", "Min", "Max", *corr_cols),
        rows=tuple(rows),
        header_groups=groups,
        notes=(
            "Statistics on the analysis sample, uncentred. Correlations are Pearson's r; "
            "* p < .05, ** p < .01 (two-sided).",
        ),
    )


def concordance(fit: FitResult) -> float | None:
    """Harrell's C of a Cox fit (``None`` for other models)."""
    c = fit.extra.get("concordance") if isinstance(fit.extra, Mapping) else None
    v = c.get("c_index") if isinstance(c, Mapping) else None
    return float(v) if v is not None and _finite(v) else None


def n_obs_cell(fit: FitResult) -> str:
    """``1,612`` firms, or ``1,612 / 7,569`` firms / firm-years for a discrete-time fit."""
    subjects = fit.extra.get("n_subjects") if isinstance(fit.extra, Mapping) else None
    if fit.model == "discrete" and _finite(subjects):
        return f"{fmt_int(subjects)} / {fmt_int(fit.nobs)}"
    return fmt_int(fit.nobs)


def _collapsed(term: str, collapse: Mapping[str, str]) -> str | None:
    for prefix, lab in collapse.items():
        if term.startswith(prefix):
            return lab
    return None


def regression_table(
    steps: Sequence[ModelStep],
    *,
    title: str | None = None,
    labels: Mapping[str, str] | None = None,
    collapse: Mapping[str, str] | None = None,
    centering: Mapping[str, float] | None = None,
    outcome_is_survival: bool = True,
    dependent: str | None = None,
    se_position: Literal["below", "beside"] = "below",
) -> Table:
    """Side-by-side hierarchical models in journal layout (one column per step).

    Coefficients carry stars from two-sided Wald p-values (``†`` .10, ``*`` .05, ``**`` .01,
    ``***`` .001) with the standard error in parentheses below (or beside) them. Terms starting
    with a ``collapse`` prefix (default ``C(industry)``) become one "Yes/No" row. Bottom rows:
    N, exits (``N − Σy`` when the outcome codes survival, else ``Σy`` as events), log-likelihood,
    LR χ² (df) against the null, Δχ² (df) against the previous step, pseudo-R², AIC.
    Hazard models (Cox, discrete-time, Fine–Gray) count events as exits, show the Cox
    concordance instead of pseudo-R², and the title and note name the model actually fitted.
    """
    if not steps:
        raise ValueError("regression_table needs at least one model step")
    model = steps[0].fit.model
    hazard = model in HAZARD_MODELS
    if title is None:
        what = "time to exit" if hazard else "survival"
        title = f"Table 2. {models_heading(model)} of {what}"
    coll = DEFAULT_COLLAPSE if collapse is None else collapse
    order: list[str] = []
    groups: list[str] = []
    for s in steps:
        for t in s.fit.terms:
            g = _collapsed(t, coll)
            if g is not None:
                if g not in groups:
                    groups.append(g)
            elif t not in order:
                order.append(t)
    if "Intercept" in order:  # the constant goes last, as journals print it
        order.remove("Intercept")
        order.append("Intercept")

    rows: list[tuple[str, ...]] = []
    for t in order:
        coef, ses = [label(t, labels)], [""]
        for s in steps:
            f = s.fit
            if t in f.terms:
                j = f.terms.index(t)
                c = fmt_num(f.params[j]) + stars(f.pvalues[j])
                se = f"({fmt_num(f.se[j])})"
                if se_position == "beside":
                    coef.append(f"{c} {se}")
                else:
                    coef.append(c)
                    ses.append(se)
            else:
                coef.append("")
                ses.append("")
        rows.append(tuple(coef))
        if se_position == "below":
            rows.append(tuple(ses))
    for g in groups:
        rows.append(
            (g, *("Yes" if any(_collapsed(t, coll) == g for t in s.fit.terms) else "No"
                  for s in steps))
        )
    n_coef_rows = len(rows)

    def stat_row(name: str, values: Sequence[str]) -> None:
        rows.append((name, *values))

    fits = [s.fit for s in steps]
    if model == "discrete":
        stat_row("N (firms / firm-years)", [n_obs_cell(f) for f in fits])
    else:
        stat_row("N (firms)", [fmt_int(f.nobs) for f in fits])
    if hazard:
        stat_row("Exits (events)", [fmt_int(f.n_events) for f in fits])
    elif outcome_is_survival:
        stat_row("Exits (y = 0)", [fmt_int(f.n_for_ic - f.n_events) for f in fits])
    else:
        stat_row("Events (y = 1)", [fmt_int(f.n_events) for f in fits])
    stat_row("Partial log-likelihood" if model == "cox" else "Log-likelihood",
             [fmt_num(f.loglik) for f in fits])
    stat_row(
        "LR χ² (df) vs null",
        [f"{fmt_num(f.lr_chi2)}{stars(f.lr_pvalue)} ({f.lr_df})" for f in fits],
    )
    delta = []
    for s in steps:
        lr = s.lr_vs_previous
        delta.append(DASH if lr is None else f"{fmt_num(lr.chi2)}{stars(lr.p_value)} ({lr.df})")
    stat_row("Δχ² (df) vs previous model", delta)
    if model == "cox":
        stat_row("Concordance (C)", [fmt_num(concordance(f)) for f in fits])
    elif not hazard:
        stat_row("McFadden pseudo-R²", [fmt_num(f.pseudo_r2_mcfadden) for f in fits])
        stat_row("Nagelkerke pseudo-R²", [fmt_num(f.pseudo_r2_nagelkerke) for f in fits])
    stat_row("AIC", [fmt_num(f.aic) for f in fits])

    notes = []
    if dependent:
        notes.append(f"Dependent variable: {dependent}.")
    scale = _SCALES.get(model, f"{model} coefficients")
    notes.append(
        f"{scale[:1].upper()}{scale[1:]}; standard errors ({fits[0].vcov_type}) in "
        "parentheses. † p < .10, * p < .05, ** p < .01, *** p < .001, two-sided Wald tests; "
        "hypothesis tests that the study states as one-sided are reported with the verdicts."
    )
    if centering:
        names = ", ".join(short_label(v, labels) for v in centering)
        notes.append(
            f"Predictors mean-centred before forming interactions: {names}; a main effect is "
            "then the effect at the mean of the variables it interacts with."
        )
    else:
        notes.append("Predictors are entered uncentred.")
    if groups:
        notes.append(f"{', '.join(groups)}: coefficients estimated but not shown.")
    notes.append("Δχ²: likelihood-ratio test of each model against the previous (nested) one.")
    notes.append("; ".join(f"Model {i + 1}: {s.label}" for i, s in enumerate(steps)) + ".")
    center: Align = "c"
    return Table(
        title=title,
        columns=("", *(f"Model {i + 1}" for i in range(len(steps)))),
        rows=tuple(rows),
        notes=tuple(notes),
        rules_after=(n_coef_rows - 1,),
        align=("l", *(center,) * len(steps)),
    )


def _published(p: str | None) -> str:
    if p is None:
        return DASH
    return {"supported": "Supported", "not supported": "Not supported"}.get(p.lower(), p)


def verdict_table(
    verdicts: Sequence[Verdict],
    *,
    title: str = "Hypothesis verdicts beside the 2012 study",
    labels: Mapping[str, str] | None = None,
    conf_level: float = 0.95,
) -> Table:
    """One row per hypothesis: the test, the estimate, our verdict and the published finding."""
    rows = []
    for v in verdicts:
        agree = v.agrees_with_published
        sided = "one-sided" if v.test.startswith("one") else "two-sided"
        rows.append((
            v.hypothesis,
            v.statement,
            label(v.term, labels),
            v.expected_sign,
            f"{fmt_num(v.estimate)} ({fmt_num(v.std_error)})",
            f"{fmt_p(v.p_value)} ({sided})",
            fmt_ci(v.conf_low, v.conf_high),
            v.step,
            "Supported" if v.supported else "Not supported",
            _published(v.published),
            DASH if agree is None else ("✓" if agree else "✗"),
        ))
    alphas = sorted({v.alpha for v in verdicts})
    a = ", ".join(f"{x:g}" for x in alphas) or "0.05"
    flipped: tuple[str, ...] = ()
    if any(getattr(v, "scale", "survival") == "hazard" for v in verdicts):
        flipped = ("The hypotheses speak of survival; in a hazard model better survival is a "
                   "lower exit hazard, so the expected sign of the coefficient is flipped.",)
    return Table(
        title=title,
        columns=(
            "Hypothesis", "Statement", "Term", "Expected sign", "Estimate (SE)", "p",
            f"{conf_level:.0%} CI", "Model", "Our verdict", "2012 study", "Agree",
        ),
        rows=tuple(rows),
        align=("l", "l", "l", "c", "r", "r", "r", "c", "l", "l", "c"),
        notes=(
            f"A hypothesis is supported when the estimate has the expected sign and p < {a} in "
            "the test the study states (one-sided p halves the two-sided p in the expected "
            "direction). CI: two-sided Wald interval of the coefficient, so a one-sided "
            "test can be significant while the interval includes zero.",
            *flipped,
            "2012 study: Lee, Kelley, Lee & Lee (2012), Journal of Small Business Management "
            "50(1): 1–19.",
        ),
    )


def _value(v: object) -> str:
    return fmt_num(v) if _finite(v) else str(v)  # type: ignore[arg-type]


def profile_contrast(low: Mapping[str, object], high: Mapping[str, object],
                     labels: Mapping[str, str] | None = None) -> str:
    """The variables on which two profiles differ: ``Export ratio 0.000 → 0.500``."""
    parts = []
    for k in dict.fromkeys([*low, *high]):
        a, b = low.get(k), high.get(k)
        if a is None or b is None or _value(a) != _value(b):
            parts.append(f"{short_label(k, labels)} {_value(a) if a is not None else DASH} → "
                         f"{_value(b) if b is not None else DASH}")
    return "; ".join(parts)


def implications_table(
    implications: Sequence[Implication],
    *,
    title: str = "Implications: predicted probability of surviving the window",
    labels: Mapping[str, str] | None = None,
) -> Table:
    """Two contrasted firm profiles per topic, their predicted survival (CI) and the difference."""
    rows = []
    for imp in implications:
        lo, hi = imp.low, imp.high
        contrast = profile_contrast(lo.profile, hi.profile, labels)
        rows.append((
            imp.topic,
            contrast or f"{lo.label} → {hi.label}",
            f"{fmt_num(lo.probability)} {fmt_ci(lo.conf_low, lo.conf_high)}",
            f"{fmt_num(hi.probability)} {fmt_ci(hi.conf_low, hi.conf_high)}",
            fmt_num(hi.probability - lo.probability, signed=True),
        ))
    return Table(
        title=title,
        columns=("Topic", "Profile A → profile B", "P(survive) A [95% CI]",
                 "P(survive) B [95% CI]", "Difference (B − A)"),
        rows=tuple(rows),
        align=("l", "l", "r", "r", "r"),
        notes=(
            "Predicted probabilities from the logit model; the two profiles differ only in the "
            "variables shown and share all other values (listed in results.json). CIs are "
            "built on the log-odds scale. Associations, not causal effects.",
        ),
    )
