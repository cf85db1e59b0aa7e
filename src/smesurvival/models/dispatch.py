"""One entry point for every estimator, so the CLI, the study and the web app share option
handling: ``fit_model(model, data, formula, ...)`` routes to the right fitter."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, get_args

import pandas as pd

from smesurvival.errors import UsageError
from smesurvival.inference.vcov import check_choice
from smesurvival.models.result import FitResult

MODELS = ("logit", "probit", "cloglog", "firth", "cox", "discrete", "finegray")
ENGINES = ("memory", "stream", "spark")
ENGINE_MODELS = ("logit", "probit", "cloglog")  # models the stream and spark engines fit
DEFAULT_VCOV = {"cox": "classical", "finegray": "robust", "discrete": "cluster"}


@dataclass(frozen=True)
class ModelOptions:
    """Every option any model takes, with the argument names DESIGN.md fixes."""

    time: str | None = None  # duration column
    event: str | None = None
    start: str | None = None  # counting-process entry column (Cox)
    cause: float | None = None  # Fine-Gray cause of interest
    censor_code: float = 0.0
    ties: str = "efron"
    strata: str | None = None
    vcov: str | None = None  # None: the model's default
    cluster: str | None = None
    weights: str | None = None
    weights_kind: str = "frequency"
    information: str = "expected"
    conf_level: float = 0.95
    id: str | None = None  # discrete-time: subject id
    link: str | None = None  # discrete-time (default cloglog) or Firth (default logit) link
    period_terms: str = "dummies"  # discrete-time duration dependence
    cuts: tuple[float, ...] | None = None
    width: float | None = None
    firth: bool = False  # bias-reduced Cox (penalised partial likelihood) / discrete-time hazard
    engine: str = "memory"  # memory | stream | spark (binary models; the same kernel)
    batch_rows: int | None = None  # stream: rows per batch (default from ``memory``)
    memory: str = "1GB"  # stream: memory budget for batch data
    spark_master: str | None = None  # spark: master URL (default local[2])


def _fit_engine(model: str, data: pd.DataFrame, formula: str, vcov: str, opts: ModelOptions) -> FitResult:
    """A binary model through the stream (or Spark) engine: the same kernel, batch by batch."""
    common: dict[str, Any] = {
        "model": model, "vcov": vcov, "cluster": opts.cluster, "weights": opts.weights,
        "weights_kind": opts.weights_kind, "information": opts.information,
        "conf_level": opts.conf_level,
    }
    if opts.engine == "stream":
        from smesurvival.scale.stream import fit_stream

        return fit_stream(formula, data, batch_rows=opts.batch_rows, memory=opts.memory, **common)
    from smesurvival.scale import spark as _spark

    return _spark.fit_spark(formula, data, master=opts.spark_master or "local[2]", **common)


def _need(value: Any, flag: str, model: str) -> Any:
    if value is None:
        raise UsageError(f"--model {model} needs {flag}")
    return value


def fit_model(model: str, data: pd.DataFrame, formula: str, opts: ModelOptions) -> FitResult:
    """Fit ``model`` on ``data`` with ``formula`` (full for binary models, else right-hand side)."""
    check_choice(model, MODELS, "model")
    check_choice(opts.engine, ENGINES, "engine")
    vcov = opts.vcov or DEFAULT_VCOV.get(model, "classical")
    if opts.firth and model not in ("cox", "discrete"):
        raise UsageError(f"--firth is for --model cox and discrete (--model firth is the "
                         f"bias-reduced binary model); got '{model}'")
    if opts.engine != "memory" and model not in ENGINE_MODELS:
        raise UsageError(f"engine '{opts.engine}' fits the models {', '.join(ENGINE_MODELS)}; got "
                         f"'{model}' (use engine 'memory' for it)")
    if model in ENGINE_MODELS:
        from smesurvival.models.fit import fit

        if "~" not in formula:
            formula = f"{_need(opts.event, '--event (the outcome column) or a formula y ~ ...', model)} ~ {formula}"
        if opts.engine != "memory":
            return _fit_engine(model, data, formula, vcov, opts)
        return fit(formula, data, model=model, vcov=vcov, cluster=opts.cluster,  # type: ignore[arg-type]
                   weights=opts.weights, weights_kind=opts.weights_kind,  # type: ignore[arg-type]
                   information=opts.information, conf_level=opts.conf_level)  # type: ignore[arg-type]
    if model == "firth":
        from smesurvival.models.firth import fit_firth

        if "~" not in formula:
            formula = f"{_need(opts.event, '--event or a formula y ~ ...', model)} ~ {formula}"
        link = opts.link or "logit"
        check_choice(link, ("logit", "probit", "cloglog"), "link (firth)")
        return fit_firth(formula, data, link=link, weights=opts.weights,  # type: ignore[arg-type]
                         vcov=vcov, cluster=opts.cluster, conf_level=opts.conf_level)  # type: ignore[arg-type]
    rhs = formula.split("~", 1)[1].strip() if "~" in formula else formula
    if model == "cox":
        from smesurvival.models.cox import COX_VCOV, TIES, fit_cox

        check_choice(opts.ties, TIES, "ties")
        check_choice(vcov, COX_VCOV, "vcov (Cox)")
        if opts.firth:
            from smesurvival.models.firth_cox import fit_cox_firth

            if vcov != "classical" or opts.cluster:
                raise UsageError("--firth with --model cox reports the inverse penalised "
                                 "information (as R's coxphf); drop --vcov/--cluster")
            return fit_cox_firth(rhs, data, duration=_need(opts.time, "--time", model),
                                 event=_need(opts.event, "--event", model), entry=opts.start,
                                 strata=opts.strata, weights=opts.weights, ties=opts.ties,  # type: ignore[arg-type]
                                 conf_level=opts.conf_level)
        return fit_cox(rhs, data, duration=_need(opts.time, "--time", model),
                       event=_need(opts.event, "--event", model), entry=opts.start,
                       strata=opts.strata, weights=opts.weights, ties=opts.ties,  # type: ignore[arg-type]
                       vcov=vcov, cluster=opts.cluster, conf_level=opts.conf_level)  # type: ignore[arg-type]
    if model == "finegray":
        from smesurvival.models.finegray import fit_finegray

        check_choice(vcov, ("robust", "classical"), "vcov (Fine-Gray)")
        return fit_finegray(rhs, data, duration=_need(opts.time, "--time", model),
                            event=_need(opts.event, "--event", model),
                            cause=_need(opts.cause, "--cause", model), censor_code=opts.censor_code,
                            vcov=vcov, conf_level=opts.conf_level)  # type: ignore[arg-type]
    from smesurvival.models import discrete as _d
    from smesurvival.models.discrete import fit_discrete

    link = opts.link or "cloglog"
    check_choice(link, get_args(_d.DiscreteLink), "link")
    return fit_discrete(rhs, data, duration=_need(opts.time, "--time", model),
                        event=_need(opts.event, "--event", model), id=_need(opts.id, "--id", model),
                        link=link, time=opts.period_terms,  # type: ignore[arg-type]
                        cuts=opts.cuts, width=opts.width, vcov=vcov,  # type: ignore[arg-type]
                        cluster=opts.cluster, information=opts.information,  # type: ignore[arg-type]
                        conf_level=opts.conf_level, firth=opts.firth)
