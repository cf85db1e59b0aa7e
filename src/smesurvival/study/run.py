"""``run_study``: walk read -> validate -> measures -> design -> fit -> verdicts once.

Returns one immutable :class:`StudyResult`; every report, CLI output and web page is
rendered from it. All model steps use the same rows (so likelihood-ratio tests are valid):
rows missing any variable of any step are dropped once, with the column named.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from smesurvival.data.flow import SampleFlow
from smesurvival.errors import SpecError
from smesurvival.labels import label, short_label
from smesurvival.models.design import drop_missing, parse_formula
from smesurvival.models.km import kaplan_meier
from smesurvival.study import robustness as rb
from smesurvival.study.result import (
    Descriptives,
    GroupSurvival,
    Implication,
    InteractionCurves,
    ModelStep,
    Prediction,
    Provenance,
    StudyResult,
)
from smesurvival.study.spec import StudySpec, load_spec

SYNTHETIC_CAVEAT = (
    "These results come from a synthetic cohort, not from real firms. Synthetic data reproduce "
    "the published pattern by construction: they show that the toolkit works, not that the 2012 "
    "findings are true. Real surveys sample firms that have already survived to the survey (left "
    "truncation), good firms select into exporting (reverse causality), and exit is not always "
    "failure (some exits are acquisitions)."
)
ASSOCIATION_CAVEAT = (
    "Estimates are associations from an observational design, not causal effects of exporting, "
    "R&D or alliances."
)

Progress = Callable[[str], None]


def run_study(
    spec: StudySpec | str | Path = "lee2012",
    data: pd.DataFrame | str | Path | None = None,
    *,
    progress: Progress | None = None,
    robustness: bool = True,
    missing: str | None = None,
) -> StudyResult:
    """Run a study on firm data (a DataFrame or a file path); with ``data=None``, on the spec's
    ``[data]`` source if it names one, else on the built-in synthetic cohort.

    ``robustness=False`` skips the spec's robustness models and cause-specific fits, and the
    ``[effects]`` and ``[mediation]`` sections (the power simulation needs only the main
    analysis and its verdicts). ``missing`` ("listwise" or "mice")
    overrides the spec's ``[missing] method`` (the CLI's ``--missing``)."""
    say = progress or (lambda _msg: None)
    spec = spec if isinstance(spec, StudySpec) else load_spec(spec)
    say("reading data")
    frame, prov = _load(spec, data)
    from smesurvival.data import ColumnMap, MeasureOptions, build_measures, validate_firms

    columns = ColumnMap.from_dict(spec.columns) if spec.columns else ColumnMap.default()
    say("validating")
    report = validate_firms(frame, columns, source=prov.source)
    report.raise_if_errors()
    say("building measures")
    options = MeasureOptions(window_years=spec.window_years, **spec.measures)  # type: ignore[arg-type]
    mf = build_measures(frame, columns, options, SampleFlow(len(frame)))
    if missing is not None and missing not in ("listwise", "mice"):
        raise SpecError(f"missing must be 'listwise' or 'mice'; got '{missing}'")
    analysis, flow = _analysis_sample(spec, mf.frame, mf.flow)
    from smesurvival.study.effects import effects_section
    from smesurvival.study.mediation import mediation_section
    from smesurvival.study.missing import missing_section

    miss = missing_section(spec, mf.frame, _needed(spec, mf.frame), missing, say)
    centering = {v: float(analysis[v].mean()) for v in spec.center}
    centred = analysis.copy()
    for v, m in centering.items():
        centred[v] = centred[v] - m
    hazard = rb.hazard_frame(spec, centred)
    main_data = centred if spec.outcome_kind == "binary" else hazard
    if spec.outcome_kind == "competing":
        main_data = main_data.assign(_event=_competing_status(main_data))
    main = rb.fit_steps(spec, spec.main_model, main_data, flow, say)
    steps, verdicts = main.steps, main.verdicts
    models = spec.robustness_models if robustness else ()
    robust = tuple(rb.fit_steps(spec, m, hazard, flow, say) for m in models if m != spec.main_model)
    say("exit routes and proportional hazards")
    cause_fits = rb.cause_specific(spec, hazard) if spec.cause_specific and robustness else ()
    cox_run = next((r for r in (main, *robust) if r.model == "cox"), None)
    ph = rb.ph_check(spec, cox_run, hazard) if cox_run is not None else None
    incidence = rb.incidence(analysis, spec.window_years)
    profile = _typical_profile(spec, analysis)
    binary_main = spec.outcome_kind == "binary"
    curves = _curves(spec, steps, analysis, centering, profile) if binary_main else None
    imps = tuple(_implication(spec, i, steps, analysis, centering, profile)
                 for i in spec.implications) if binary_main else ()
    groups = tuple(_group_survival(analysis, g, spec.window_years) for g in spec.survival_by)
    extras = binary_main and robustness
    effects = effects_section(spec, steps, centred, analysis, centering, say) if extras else None
    mediation = mediation_section(spec, centred, analysis, say) if extras else None
    caveats = ((SYNTHETIC_CAVEAT,) if prov.synthetic else ()) + (ASSOCIATION_CAVEAT,)
    return StudyResult(
        study=spec.name, title=spec.title, reference=spec.reference, spec=spec, provenance=prov,
        flow=flow, validation_warnings=tuple(i.message for i in report.warnings),
        outcome=spec.outcome, window_years=spec.window_years,
        n_events=int((analysis[spec.outcome] == 0).sum()), centering=centering,
        descriptives=_descriptives(spec, analysis), steps=steps, verdicts=verdicts,
        implications=imps, curves=curves, survival_by_group=groups, caveats=caveats,
        robustness=robust, cause_specific=cause_fits, ph_check=ph, incidence=incidence,
        effects=effects, mediation=mediation, missing=miss,
    )


def _competing_status(d: pd.DataFrame) -> np.ndarray:
    """Event codes for Fine–Gray: 0 censored, 1 failure, 2 acquisition, 3 other."""
    codes = {"failure": 1.0, "acquisition": 2.0, "other": 3.0}
    exited = d["event"].to_numpy(dtype=float) > 0
    return np.where(exited, d["exit_type"].map(codes).fillna(0.0).to_numpy(dtype=float), 0.0)


def _load(spec: StudySpec, data: pd.DataFrame | str | Path | None) -> tuple[pd.DataFrame, Provenance]:
    from smesurvival import __version__
    from smesurvival.data import LoadedData, read_data, read_sql

    def observed(loaded: LoadedData) -> tuple[pd.DataFrame, Provenance]:
        src = loaded.source
        return loaded.frame, Provenance(src.path, src.sha256, src.n_rows, False,
                                        smesurvival_version=__version__)

    if data is None and spec.data_sql:
        return observed(read_sql(spec.data_sql, spec.data_path))
    if data is None and spec.data_path:
        return observed(read_data(spec.data_path))
    if data is None:
        from smesurvival.data.synthetic import simulate_cohort

        cohort = simulate_cohort(n=spec.synthetic_n, seed=spec.synthetic_seed)
        return cohort.frame, Provenance(
            source=cohort.label, sha256=_frame_hash(cohort.frame), n_rows=len(cohort.frame),
            synthetic=True, generator=cohort.truth, smesurvival_version=__version__,
        )
    if isinstance(data, pd.DataFrame):
        return data, Provenance("<DataFrame>", _frame_hash(data), len(data), False,
                                smesurvival_version=__version__)
    return observed(read_data(data))


def _frame_hash(df: pd.DataFrame) -> str:
    return hashlib.sha256(df.to_csv(index=False).encode("utf-8")).hexdigest()


def _analysis_sample(
    spec: StudySpec, frame: pd.DataFrame, flow: SampleFlow
) -> tuple[pd.DataFrame, SampleFlow]:
    """One common sample for every step: drop rows missing any model variable (counted)."""
    rows, flow = drop_missing(frame, tuple(_needed(spec, frame)), flow)
    return frame.iloc[rows].reset_index(drop=True), flow


def _needed(spec: StudySpec, frame: pd.DataFrame) -> list[str]:
    """Every column the analysis sample must have: model variables, groups, weights, cluster."""
    needed: list[str] = []
    for s in spec.steps:
        needed += parse_formula(spec.formula(s), list(frame.columns)).variables
    for g in spec.survival_by:
        if g not in frame.columns:
            raise SpecError(f"{spec.source}: figures.survival_by names '{g}', which is not a measure")
    needed += list(spec.survival_by)
    for extra in (spec.weights, spec.cluster):
        if extra:
            needed.append(extra)
    return list(dict.fromkeys(needed))


def _numeric_controls(spec: StudySpec) -> list[str]:
    return [c for c in spec.controls if not c.startswith("C(")]


def _descriptives(spec: StudySpec, a: pd.DataFrame) -> Descriptives:

    variables = [spec.outcome, *spec.main_variables(), *_numeric_controls(spec)]
    variables = [v for v in dict.fromkeys(variables) if v in a.columns]
    m = a[variables].to_numpy(dtype=float)
    n = np.full(len(variables), m.shape[0], dtype=float)
    corr = np.corrcoef(m, rowvar=False)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = corr * np.sqrt((m.shape[0] - 2) / np.maximum(1e-300, 1 - corr**2))
    p = 2 * stats.t.sf(np.abs(t), m.shape[0] - 2)
    np.fill_diagonal(p, 0.0)
    return Descriptives(
        tuple(variables), tuple(label(v) for v in variables), n, m.mean(axis=0),
        m.std(axis=0, ddof=1), m.min(axis=0), m.max(axis=0), corr, p,
    )


def _typical_profile(spec: StudySpec, a: pd.DataFrame) -> dict[str, Any]:
    """A typical firm: numeric measures at their sample means, categories at their modal level."""
    prof: dict[str, Any] = {}
    for c in spec.controls:
        if c.startswith("C(") and c.endswith(")"):
            col = c[2:-1].split(",")[0].strip()
            prof[col] = a[col].mode().iloc[0]
    for v in [*spec.main_variables(), *_numeric_controls(spec)]:
        if v in a.columns:
            prof[v] = float(a[v].mean())
    return prof


def _newdata(profile: dict[str, Any], centering: dict[str, float], n: int, **vary: Any) -> pd.DataFrame:
    df = pd.DataFrame({k: [v] * n for k, v in profile.items()})
    for k, v in vary.items():
        df[k] = v
    for k, m in centering.items():
        if k in df.columns:
            df[k] = df[k] - m
    return df


def _curves(
    spec: StudySpec, steps: tuple[ModelStep, ...], a: pd.DataFrame,
    centering: dict[str, float], profile: dict[str, Any],
) -> InteractionCurves | None:
    fig = spec.interaction_figure
    if not fig:
        return None
    focal, mod, step = fig["focal"], fig["moderator"], fig["step"]
    f = next(s for s in steps if s.name == step).fit
    hi = float(np.quantile(a[focal], 0.95))
    grid = np.linspace(float(a[focal].min()), hi if hi > a[focal].min() else float(a[focal].max()), 41)
    mean, sd = float(a[mod].mean()), float(a[mod].std(ddof=1))
    values = np.array([max(mean - sd, float(a[mod].min())), mean, mean + sd])
    labels = ("low (mean - 1 SD)", "mean", "high (mean + 1 SD)")
    prob, lo, up = [], [], []
    for v in values:
        p = f.predict(_newdata(profile, centering, len(grid), **{focal: grid, mod: v}), se_fit=True)
        prob.append(p["estimate"].to_numpy())
        lo.append(p["conf_low"].to_numpy())
        up.append(p["conf_high"].to_numpy())
    return InteractionCurves(focal, mod, grid, labels, values, np.array(prob), np.array(lo),
                             np.array(up), step)


def _resolve(value: float | str, a: pd.DataFrame, var: str) -> tuple[float, str]:
    name = short_label(var)
    name = name if name[:2].isupper() else name[:1].lower() + name[1:]  # keep "R&D"
    if not isinstance(value, str):
        return float(value), f"{name} = {float(value):g}"
    mean, sd = float(a[var].mean()), float(a[var].std(ddof=1))
    table = {"mean": mean, "mean-1sd": mean - sd, "mean+1sd": mean + sd,
             "p25": float(a[var].quantile(0.25)), "p75": float(a[var].quantile(0.75)),
             "median": float(a[var].median())}
    if value not in table:
        raise SpecError(f"implication value '{value}' for {var}: use a number or one of {', '.join(table)}")
    shown = value.replace("-1sd", " − 1 SD").replace("+1sd", " + 1 SD")
    return table[value], f"{name} at the {shown} ({table[value]:.3g})"


def _implication(
    spec: StudySpec, imp: Any, steps: tuple[ModelStep, ...], a: pd.DataFrame,
    centering: dict[str, float], profile: dict[str, Any],
) -> Implication:
    f = next(s for s in steps if s.name == imp.step).fit
    preds = []
    for which in (imp.low, imp.high):
        val, desc = _resolve(which, a, imp.variable)
        vary = {**imp.at, imp.variable: val}
        p = f.predict(_newdata(profile, centering, 1, **vary), se_fit=True).iloc[0]
        shown = {k: (float(v) if isinstance(v, int | float | np.floating) else v) for k, v in {**profile, **vary}.items()}
        preds.append(Prediction(desc, shown, float(p["estimate"]), float(p["conf_low"]), float(p["conf_high"])))
    lo, hi = preds
    at = "".join(f" with {_resolve(v, a, k)[1]}" for k, v in imp.at.items())
    text = (
        f"For a typical firm{at}, the predicted probability of surviving {spec.window_years} years is "
        f"{lo.probability:.1%} (95% CI {lo.conf_low:.1%} to {lo.conf_high:.1%}) with {lo.label}, and "
        f"{hi.probability:.1%} ({hi.conf_low:.1%} to {hi.conf_high:.1%}) with {hi.label}: "
        f"{(hi.probability - lo.probability) * 100:+.1f} percentage points."
    )
    return Implication(imp.topic, imp.audience, lo, hi, imp.published, text)


_GROUP_LABELS = {
    "exporter": {0: "Non-exporters", 1: "Exporters"},
    "rd_alliance": {0: "No R&D alliance", 1: "R&D alliance"},
}


def _group_survival(a: pd.DataFrame, var: str, window: int) -> GroupSurvival:
    """KM per level of ``var`` with numbers at risk at each year and the log-rank test."""
    from smesurvival.inference.logrank import logrank_test

    names, times, surv, lo, hi, ns, evs, share, risk = [], [], [], [], [], [], [], [], []
    risk_times = np.arange(0, window + 1, dtype=float)
    t_all = a["time_to_exit"].to_numpy(float)
    e_all = a["event"].to_numpy(float)
    g_all = a[var].to_numpy()
    for level in sorted(pd.unique(g_all)):
        sel = g_all == level
        km = kaplan_meier(t_all[sel], e_all[sel])
        key = int(level) if float(level).is_integer() else level
        names.append(_GROUP_LABELS.get(var, {}).get(key, f"{var} = {level}"))
        times.append(km.time)
        surv.append(km.survival)
        lo.append(km.conf_low)
        hi.append(km.conf_high)
        ns.append(int(sel.sum()))
        evs.append(int(e_all[sel].sum()))
        share.append(float(km.at(float(window))))
        # at risk at t: firms still followed and not exited before t
        risk.append(np.array([(t_all[sel] >= t).sum() for t in risk_times], dtype=float))
    lr = logrank_test(t_all, e_all, g_all) if len(names) >= 2 else None
    return GroupSurvival(
        var, tuple(names), tuple(times), tuple(surv), tuple(lo), tuple(hi), tuple(ns), tuple(evs),
        tuple(share), risk_times, tuple(risk),
        lr.chi2 if lr else None, int(lr.df) if lr else None, lr.p_value if lr else None,
    )
