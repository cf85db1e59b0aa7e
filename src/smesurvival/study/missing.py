"""Missing values: the missingness table of every study, and multiple imputation on request.

``[missing] method = "listwise"`` (the default): incomplete rows are dropped once for every step
and counted in the sample flow, as before; the section only tabulates the missing values.

``method = "mice"``: the main analysis stays the complete-case one (so the report can set both
side by side), and in addition the model variables are imputed ``m`` times by chained equations
(:func:`smesurvival.inference.mice.mice`: PMM for numeric, logistic for 0/1, polytomous for
categorical columns; the outcome is a predictor, never imputed), every step is fitted on each
completed data set and pooled by Rubin's rules with Barnard–Rubin degrees of freedom
(:func:`~smesurvival.inference.mice.pool`), and the hypotheses are judged on the pooled
estimates with the t distribution (one-sided p = P(T > t) on the pooled df). Rows missing the
outcome, survival times, weights or cluster labels are not imputed and stay dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from smesurvival.inference.mice import PooledResult, mice, pool
from smesurvival.labels import short_label
from smesurvival.models.design import parse_formula
from smesurvival.models.dispatch import fit_model
from smesurvival.models.result import FitResult
from smesurvival.study import robustness as rb
from smesurvival.study.result import MissingRow, MissingSection, PooledStep, PooledVerdict
from smesurvival.study.spec import Hypothesis, Step, StudySpec
from smesurvival.study.verdicts import HAZARD_MODELS

Say = Callable[[str], None]


def model_variables(spec: StudySpec, columns: Sequence[str]) -> list[str]:
    """Data columns the steps' formulas read (outcome first), in first-appearance order."""
    out: list[str] = []
    for s in spec.steps:
        out += parse_formula(spec.formula(s), list(columns)).variables
    return list(dict.fromkeys(out))


def missing_table(frame: pd.DataFrame, variables: Sequence[str],
                  methods: dict[str, str] | None = None) -> tuple[MissingRow, ...]:
    """One row per analysis variable: rows, missing cells and their share."""
    n = len(frame)
    rows = []
    for v in dict.fromkeys(variables):
        k = int(frame[v].isna().sum())
        rows.append(MissingRow(v, short_label(v), n, k, k / n if n else 0.0,
                               (methods or {}).get(v, "")))
    return tuple(rows)


def _required(spec: StudySpec) -> list[str]:
    """Columns that are never imputed: rows missing them stay dropped."""
    req = [spec.outcome]
    if spec.outcome_kind != "binary" or "cox" in spec.robustness_models:
        req += ["time_to_exit", "event", "exit_type"]
    req += [c for c in (spec.weights, spec.cluster) if c]
    return req


def _fit_steps(spec: StudySpec, d: pd.DataFrame) -> list[FitResult]:
    model = spec.main_model
    binary = model in ("logit", "probit", "cloglog")
    data = d if binary else rb.hazard_frame(spec, d)
    if spec.outcome_kind == "competing":
        from smesurvival.study.run import _competing_status

        data = data.assign(_event=_competing_status(data))
    opts = rb.options_for(spec, model)
    fits = []
    for s in spec.steps:
        formula = spec.formula(s) if binary else spec.formula(s).split("~", 1)[1].strip()
        fits.append(fit_model(model, data, formula, opts))
    return fits


def _pooled_step(s: Step, formula: str, p: PooledResult, nobs: int) -> PooledStep:
    f = p.frame
    return PooledStep(
        s.name, s.label, formula, tuple(p.terms), f["estimate"].to_numpy(), f["std_error"].to_numpy(),
        f["df"].to_numpy(), f["p_value"].to_numpy(), f["conf_low"].to_numpy(),
        f["conf_high"].to_numpy(), f["fmi"].to_numpy(), np.asarray(p.riv, dtype=float), nobs,
    )


def pooled_verdict(h: Hypothesis, step: PooledStep, model: str) -> PooledVerdict:
    """Judge a hypothesis on pooled estimates: t = estimate / SE on Barnard–Rubin df."""
    hazard = model in HAZARD_MODELS
    sign = ("-" if h.sign == "+" else "+") if hazard else h.sign
    j = step.terms.index(h.term)
    est, se, df = float(step.estimate[j]), float(step.std_error[j]), float(step.df[j])
    t = est / se
    if h.test == "one-sided":
        p = float(stats.t.sf(t, df) if sign == "+" else stats.t.cdf(t, df))
    else:
        p = float(2.0 * stats.t.sf(abs(t), df))
    right = est > 0 if sign == "+" else est < 0
    return PooledVerdict(
        hypothesis=h.id, statement=h.statement, term=h.term, expected_sign=sign, test=h.test,
        alpha=h.alpha, step=h.step, estimate=est, std_error=se, statistic=t, p_value=p,
        conf_low=float(step.conf_low[j]), conf_high=float(step.conf_high[j]),
        supported=bool(right and p < h.alpha), published=h.published,
        scale="hazard" if hazard else "survival", df=df, fmi=float(step.fmi[j]),
    )


def missing_section(spec: StudySpec, frame: pd.DataFrame, variables: Sequence[str],
                    method: str | None = None, say: Say | None = None) -> MissingSection:
    """The missingness table of ``variables`` on ``frame`` (the rows entering the analysis
    sample), and with ``method == "mice"`` (default: the spec's) the pooled steps and verdicts."""
    method = method or spec.missing.method
    variables = list(dict.fromkeys(variables))
    complete = int(frame[variables].notna().all(axis=1).sum())
    if method != "mice":
        return MissingSection("listwise", len(frame), complete, missing_table(frame, variables))
    (say or (lambda _m: None))("multiple imputation")
    ms = spec.missing
    req = [c for c in _required(spec) if c in frame.columns]
    sub = frame.loc[frame[req].notna().all(axis=1).to_numpy()].reset_index(drop=True)
    cols = [c for c in model_variables(spec, frame.columns) if c in frame.columns]
    imp = mice(sub, columns=cols, m=ms.m, iterations=ms.iterations, seed=ms.seed)
    centre = {v: float(np.mean([d[v].mean() for d in imp.completed])) for v in spec.center}
    per_step: list[list[FitResult]] = [[] for _ in spec.steps]
    for d in imp.completed:
        c = d.copy()
        for v, mu in centre.items():
            c[v] = c[v] - mu
        for i, f in enumerate(_fit_steps(spec, c)):
            per_step[i].append(f)
    pooled = tuple(_pooled_step(s, spec.formula(s), pool(fits, conf_level=spec.conf_level), len(sub))
                   for s, fits in zip(spec.steps, per_step, strict=True))
    by_name = {p.name: p for p in pooled}
    verdicts = tuple(pooled_verdict(h, by_name[h.step], spec.main_model) for h in spec.hypotheses)
    methods = {c: imp.methods.get(c, "") for c in variables}
    note = (f"Multiple imputation by chained equations: m = {ms.m} completed data sets "
            f"({ms.iterations} iterations, seed {ms.seed}) of {len(sub):,} firms, against "
            f"{complete:,} complete cases; predictors centred at their mean over the imputations.")
    return MissingSection("mice", len(frame), complete, missing_table(frame, variables, methods),
                          ms.m, ms.iterations, ms.seed, len(sub), pooled, verdicts, note)
