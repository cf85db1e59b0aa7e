"""Time-to-exit views of a study: the hypotheses under hazard models, exits by type, PH checks.

Everything here runs on the same analysis sample and centring as the main analysis, so the
verdicts can be set side by side. Hypotheses speak of survival; hazard-model verdicts flip the
expected sign (see :func:`smesurvival.study.verdicts.judge`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pandas as pd
from scipy import stats

from smesurvival.data.flow import SampleFlow
from smesurvival.errors import ConvergenceError, DataValidationError, EstimationError
from smesurvival.models.dispatch import ModelOptions, fit_model
from smesurvival.models.result import FitResult
from smesurvival.study.result import (
    CauseSpecificFit,
    IncidenceCurves,
    LRTest,
    ModelRun,
    ModelStep,
    PHCheck,
)
from smesurvival.study.spec import StudySpec
from smesurvival.study.verdicts import judge

#: Exits dated in the survey year have time 0; hazard models need positive times, so they are
#: placed half a month into the follow-up (stated in the report's methods note).
MIN_TIME = 1.0 / 24.0
EVENT = "_event"  # event column of the time-to-exit models (exits of the failure types)
LABELS = {
    "logit": ("Logit (survived the window)", "log-odds of surviving the window"),
    "probit": ("Probit (survived the window)", "probit index of surviving the window"),
    "cloglog": ("Complementary log-log (survived the window)", "cloglog of surviving the window"),
    "cox": ("Cox proportional hazards (time to exit)", "log hazard of exit"),
    "discrete": ("Discrete-time cloglog hazard (firm-years)", "log hazard of exit (per year)"),
    "finegray": ("Fine–Gray subdistribution hazard", "log subdistribution hazard"),
}


def hazard_frame(spec: StudySpec, data: pd.DataFrame) -> pd.DataFrame:
    """Add the event column for time-to-exit models and keep times positive."""
    d = data.copy()
    exited = d["event"].to_numpy(dtype=float) > 0
    d[EVENT] = (exited & d["exit_type"].isin(spec.failure_types).to_numpy()).astype(float)
    d["time_to_exit"] = np.maximum(d["time_to_exit"].to_numpy(dtype=float), MIN_TIME)
    return d


def options_for(spec: StudySpec, model: str, event: str = EVENT, cause: float | None = None) -> ModelOptions:
    """Model options of the study for one estimator (Fine–Gray: the spec's cause as a code)."""
    if model == "finegray" and cause is None:
        cause = {"failure": 1.0, "acquisition": 2.0, "other": 3.0}[spec.cause or "failure"]
    vcov = spec.vcov if model not in ("cox", "discrete", "finegray") else None
    if model == "cox" and spec.vcov == "cluster":
        vcov = "cluster"
    opts = ModelOptions(
        time="time_to_exit", event=event, ties=spec.ties, vcov=vcov, cluster=spec.cluster,
        weights=spec.weights, weights_kind="survey" if spec.weights else "frequency",
        conf_level=spec.conf_level, id="firm_id", link="cloglog", period_terms="dummies",
        width=1.0, cause=cause,
    )
    if model not in ("logit", "probit", "cloglog"):  # the engines fit the binary models
        return opts
    return replace(opts, engine=spec.engine, batch_rows=spec.batch_rows, memory=spec.memory,
                   spark_master=spec.spark_master)


def fit_steps(
    spec: StudySpec, model: str, data: pd.DataFrame, flow: SampleFlow, say: Callable[[str], None],
) -> ModelRun:
    """Fit every step with one estimator, LR tests against each step's base, and judge."""
    steps: list[ModelStep] = []
    fits: dict[str, FitResult] = {}
    binary = model in ("logit", "probit", "cloglog")
    opts = options_for(spec, model)
    for s in spec.steps:
        say(f"{model}: {s.name} {s.label}")
        formula = spec.formula(s) if binary else spec.formula(s).split("~", 1)[1].strip()
        f = fit_model(model, data, formula, opts)
        if binary or model == "cox":
            f = replace(f, flow=flow)
        lr = None
        if s.base is not None:
            b = fits[s.base]
            chi2 = 2.0 * (f.loglik - b.loglik)
            df = f.k - b.k
            lr = LRTest(chi2, df, float(stats.chi2.sf(chi2, df)) if df > 0 else float("nan"))
        fits[s.name] = f
        steps.append(ModelStep(s.name, s.label, spec.formula(s), f, lr))
    verdicts = tuple(judge(h, fits[h.step]) for h in spec.hypotheses)
    label, scale = LABELS[model]
    return ModelRun(model, label, scale, tuple(steps), verdicts)


def cause_specific(spec: StudySpec, data: pd.DataFrame) -> tuple[CauseSpecificFit, ...]:
    """One Cox model per exit type: that type is the event, other exits are censored."""
    step = spec.step(spec.cause_specific_step or spec.steps[-1].name)
    rhs = spec.formula(step).split("~", 1)[1].strip()
    out = []
    for exit_type in spec.cause_specific:
        d = data.assign(_cause=((data["event"] > 0) & (data["exit_type"] == exit_type)).astype(float))
        n = int(d["_cause"].sum())
        opts = options_for(spec, "cox", event="_cause")
        try:
            f = fit_model("cox", d, rhs, opts)
            out.append(CauseSpecificFit(exit_type, step.name, f, n))
        except ConvergenceError as e:
            if "monotone likelihood" not in str(e):
                out.append(CauseSpecificFit(exit_type, step.name, None, n,
                                            f"not estimable with {n} exits of this type: {e}"))
                continue
            # no finite ML estimate (e.g. no such exits in an industry): Firth's is finite
            try:
                f = fit_model("cox", d, rhs, replace(opts, firth=True, vcov="classical"))
            except (EstimationError, DataValidationError) as e2:
                out.append(CauseSpecificFit(exit_type, step.name, None, n,
                                            f"not estimable with {n} exits of this type: {e2}"))
                continue
            out.append(CauseSpecificFit(
                exit_type, step.name, f, n,
                f"maximum likelihood has no finite estimate ({e}); Firth's bias-reduced "
                "(penalised partial likelihood) estimates are shown"))
        except (EstimationError, DataValidationError) as e:  # e.g. a covariate without variation
            out.append(CauseSpecificFit(exit_type, step.name, None, n,
                                        f"not estimable with {n} exits of this type: {e}"))
    return tuple(out)


def ph_check(spec: StudySpec, run: ModelRun, data: pd.DataFrame, alpha: float = 0.05) -> PHCheck:
    """Schoenfeld-residual tests (cox.zph, KM transform) of one Cox step, with a plain reading."""
    from smesurvival.inference.cox_tests import cox_ph_test

    name = spec.ph_step or spec.steps[-1].name
    step = next(s for s in run.steps if s.name == name)
    z = cox_ph_test(step.fit, data, "km")
    failing = z.failing(alpha)
    if failing:
        from smesurvival.labels import short_label

        names = ", ".join(short_label(t) for t in failing if not t.startswith("C("))
        names = names or "some industry dummies"
        note = (f"The proportional-hazards assumption is doubtful for {names} (p < {alpha}): its "
                "association with the exit hazard seems to change over the follow-up, so its Cox "
                "hazard ratio is an average over time. With many covariates tested, one small p "
                f"can be chance (global test p = {z.global_p:.3f}).")
        if spec.outcome_kind == "binary":
            note += (" The binary logit of the main analysis does not rely on proportional hazards "
                     "(the discrete-time model does): compare their verdicts.")
    else:
        note = (f"No covariate departs from proportional hazards at p < {alpha} (global test "
                f"p = {z.global_p:.3f}): the Cox hazard ratios can be read as constant over the follow-up.")
    return PHCheck(name, z.terms, z.chisq, z.p_value, z.global_chisq, z.global_df, z.global_p, alpha, note)


def incidence(data: pd.DataFrame, window: int) -> IncidenceCurves | None:
    """Aalen–Johansen cumulative incidence of each exit type over the follow-up."""
    from smesurvival.models.cuminc import cumulative_incidence

    types = [t for t in ("failure", "acquisition", "other") if ((data["exit_type"] == t) & (data["event"] > 0)).any()]
    if not types:
        return None
    code = {t: i + 1 for i, t in enumerate(types)}
    status = np.where(data["event"] > 0, data["exit_type"].map(code).fillna(0).to_numpy(dtype=float), 0.0)
    ci = cumulative_incidence(data["time_to_exit"].to_numpy(dtype=float), status)
    times, est, lo, hi, n_ev, at_w = [], [], [], [], [], []
    for t in types:
        c = ci.curve(code[t])
        times.append(np.asarray(c.time))
        est.append(np.asarray(c.estimate))
        lo.append(np.asarray(c.conf_low))
        hi.append(np.asarray(c.conf_high))
        n_ev.append(int((status == code[t]).sum()))
        at_w.append(float(np.asarray(c.at(np.array([float(window)])).estimate)[0]))
    return IncidenceCurves(tuple(types), tuple(times), tuple(est), tuple(lo), tuple(hi), tuple(n_ev), tuple(at_w))
