"""The ``smesurvival`` command line: thin front-end over the Python API.

Exit status: 0 success; 2 bad input or usage (one message on stderr, no traceback); 1 a bug.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from smesurvival.errors import SmeSurvivalError, UsageError

app = typer.Typer(
    name="smesurvival",
    help=(
        "Statistics of small-business survival: run the Lee et al. (2012) study and your own.\n\n"
        "Examples:\n\n"
        "  smesurvival demo --out report/\n\n"
        "  smesurvival simulate --n 1612 --seed 7 --out cohort.csv\n\n"
        "  smesurvival validate firms.csv\n\n"
        "  smesurvival study lee2012 --data firms.csv --out report/\n\n"
        "  smesurvival fit firms.csv --model logit --formula 'y ~ x * z' --json -"
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)


def _fail(message: str) -> None:
    from rich.markup import escape

    err.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    raise typer.Exit(2)


def _clean(obj: Any) -> Any:
    """JSON-safe: NaN/inf -> None, numpy scalars -> Python."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, str):
        try:
            obj = obj.item()
        except (ValueError, AttributeError):
            pass
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _emit_json(payload: dict[str, Any], target: str) -> None:
    text = json.dumps(_clean(payload), indent=2)
    if target == "-":
        sys.stdout.write(text + "\n")
    else:
        Path(target).write_text(text + "\n", encoding="utf-8")
        err.print(f"wrote {target}")


@app.command()
def fit(
    data: Annotated[str, typer.Argument(help="data file (CSV, Parquet, XLSX, DTA, SAV)")],
    formula: Annotated[str, typer.Option(help="'y ~ x1 * x2 + C(g)' (binary models) or the right-hand side")],
    model: Annotated[str, typer.Option(help="logit, probit, cloglog, firth, cox, discrete or finegray")] = "logit",
    time: Annotated[str | None, typer.Option(help="duration column (cox, discrete, finegray)")] = None,
    event: Annotated[str | None, typer.Option(help="event column; for binary models the outcome when --formula is a right-hand side")] = None,
    start: Annotated[str | None, typer.Option(help="entry (start) time column: counting-process data (cox)")] = None,
    cause: Annotated[float | None, typer.Option(help="event code of the cause of interest (finegray)")] = None,
    censor_code: Annotated[float, typer.Option(help="event code meaning censored (finegray)")] = 0.0,
    ties: Annotated[str, typer.Option(help="efron or breslow (cox)")] = "efron",
    strata: Annotated[str | None, typer.Option(help="strata column (cox)")] = None,
    id: Annotated[str | None, typer.Option(help="subject id column (discrete)")] = None,
    link: Annotated[str | None, typer.Option(help="discrete: cloglog (default) or logit; firth: logit (default), probit or cloglog")] = None,
    firth: Annotated[bool, typer.Option("--firth", help="bias-reduced fit (cox: Firth's penalised partial likelihood, as R's coxphf; discrete: brglm2's AS_mean)")] = False,
    period_terms: Annotated[str, typer.Option(help="dummies, bands, log, linear or quadratic (discrete)")] = "dummies",
    width: Annotated[float | None, typer.Option(help="period width (discrete), e.g. 1 for years")] = None,
    cuts: Annotated[str | None, typer.Option(help="comma-separated cut points (discrete)")] = None,
    vcov: Annotated[str | None, typer.Option(help="classical, hc0, hc1, cluster (cox: classical, hc0, cluster; finegray: robust, classical)")] = None,
    cluster: Annotated[str | None, typer.Option(help="cluster column for --vcov cluster")] = None,
    weights: Annotated[str | None, typer.Option(help="weights column")] = None,
    weights_kind: Annotated[str, typer.Option(help="frequency or survey")] = "frequency",
    information: Annotated[str, typer.Option(help="expected (as R's glm) or observed (as Stata)")] = "expected",
    conf_level: Annotated[float, typer.Option(help="confidence level")] = 0.95,
    engine: Annotated[str, typer.Option(help="memory (read the whole file), stream (Arrow batches in bounded memory; logit, probit, cloglog, cox; Parquet, CSV, DuckDB) or spark (the kernel per Spark partition; logit, probit, cloglog, discrete, cox; Parquet, CSV; pip install 'smesurvival[spark]')")] = "memory",
    batch_rows: Annotated[int | None, typer.Option(help="rows per batch (--engine stream|spark); default from --memory")] = None,
    memory: Annotated[str, typer.Option(help="memory budget for batch data (--engine stream; spark: per Python worker), e.g. 512MB, 1GB")] = "1GB",
    spark_master: Annotated[str, typer.Option(help="Spark master (--engine spark): local[2], spark://host:7077, yarn, ...")] = "local[2]",
    partitions: Annotated[int | None, typer.Option(help="repartition the data into this many Spark partitions (--engine spark)")] = None,
    json_out: Annotated[str | None, typer.Option("--json", help="write the JSON result to PATH, or - for stdout")] = None,
) -> None:
    """Fit one model and print its table (or the JSON contract of DESIGN.md with --json).

    Examples: --model cox --time week --event arrest --formula 'fin + age';
    --model finegray --time etime --event status --cause 1 --formula 'age + sex';
    --model discrete --time years --event exited --id firm_id --width 1 --formula 'export_ratio'.
    """
    from smesurvival.data.readers import read_data
    from smesurvival.models.dispatch import ModelOptions, fit_model

    if engine not in ("memory", "stream", "spark"):
        raise UsageError(f"--engine must be 'memory', 'stream' or 'spark'; got '{engine}'")
    if engine == "stream" and model not in ("logit", "probit", "cloglog", "cox"):
        raise UsageError(
            f"--engine stream fits --model logit, probit, cloglog or cox; got '{model}' (use "
            "--engine memory for it)"
        )
    if engine == "spark" and model not in ("logit", "probit", "cloglog", "discrete", "cox"):
        raise UsageError(
            f"--engine spark fits --model logit, probit, cloglog, discrete or cox; got '{model}' "
            "(use --engine memory for it)"
        )
    if engine != "memory" and model == "cox" and ((vcov or "classical") != "classical" or cluster):
        raise UsageError(f"--engine {engine} fits Cox models with classical SEs; robust or "
                         "clustered ones need --engine memory")
    try:
        cut_values = tuple(float(c) for c in cuts.split(",")) if cuts else None
    except ValueError:
        raise UsageError(f"--cuts must be numbers separated by commas; got '{cuts}'") from None
    opts = ModelOptions(
        time=time, event=event, start=start, cause=cause, censor_code=censor_code, ties=ties,
        strata=strata, vcov=vcov, cluster=cluster, weights=weights, weights_kind=weights_kind,
        information=information, conf_level=conf_level, id=id, link=link,
        period_terms=period_terms, cuts=cut_values, width=width, firth=firth,
    )
    if firth and engine != "memory":
        raise UsageError("--firth runs on --engine memory")
    if engine == "stream" and model == "cox":
        from smesurvival.scale.stream_cox import fit_cox_stream

        if time is None or event is None:
            raise UsageError("--model cox needs --time and --event")
        res = fit_cox_stream(formula, data, duration=time, event=event, entry=start,
                             strata=strata, weights=weights, ties=ties,  # type: ignore[arg-type]
                             conf_level=conf_level, batch_rows=batch_rows, memory=memory)
    elif engine == "stream":
        from smesurvival.scale.stream import fit_stream

        if "~" not in formula:
            if event is None:
                raise UsageError(f"--model {model} needs --event (the outcome column) or a formula y ~ ...")
            formula = f"{event} ~ {formula}"
        res = fit_stream(
            formula, data, model=model, vcov=vcov or "classical",  # type: ignore[arg-type]
            cluster=cluster, weights=weights, weights_kind=weights_kind,  # type: ignore[arg-type]
            information=information, conf_level=conf_level,  # type: ignore[arg-type]
            batch_rows=batch_rows, memory=memory,
        )
    elif engine == "spark":
        res = _fit_spark(data, model, formula, opts, batch_rows=batch_rows, memory=memory,
                         master=spark_master, partitions=partitions)
    else:
        res = fit_model(model, read_data(data).frame, formula, opts)
    d = res.to_dict()
    payload = {k: d[k] for k in ("model", "formula", "n_obs", "n_events", "dropped", "params", "bse",
                                 "pvalues", "conf_int", "loglik", "llnull", "aic", "bic",
                                 "converged", "iterations", "vcov_type", "engine")}
    payload.update({k: d[k] for k in ("lr_chi2", "lr_df", "pseudo_r2_mcfadden",
                                      "pseudo_r2_nagelkerke", "n_clusters", "information", "extra")})
    if res.model in ("logit", "firth", "cox", "finegray"):
        payload["exp_params"] = {t: float(v) for t, v in zip(res.terms, res.tidy()["exp_estimate"], strict=True)}
    if json_out:
        _emit_json(payload, json_out)
        return
    _print_fit(res)


def _fit_spark(data: str, model: str, formula: str, opts: Any, *, batch_rows: int | None,
               memory: str, master: str, partitions: int | None) -> Any:
    """``fit --engine spark``: the binary models, the discrete-time hazard and Cox on Spark."""
    from smesurvival.models.dispatch import DEFAULT_VCOV
    from smesurvival.scale.spark import fit_spark
    from smesurvival.scale.spark_discrete import fit_spark_discrete

    vcov = opts.vcov or DEFAULT_VCOV.get(model, "classical")
    common: dict[str, Any] = {
        "batch_rows": batch_rows, "memory": memory, "master": master, "partitions": partitions,
        "information": opts.information, "conf_level": opts.conf_level,
    }
    if model == "cox":
        from smesurvival.scale.spark_cox import fit_spark_cox

        if opts.time is None or opts.event is None:
            raise UsageError("--model cox needs --time and --event")
        return fit_spark_cox(formula, data, duration=opts.time, event=opts.event, entry=opts.start,
                             strata=opts.strata, weights=opts.weights, ties=opts.ties,
                             conf_level=opts.conf_level, batch_rows=batch_rows, memory=memory,
                             master=master, partitions=partitions)
    if model == "discrete":
        for flag, value in (("--time", opts.time), ("--event", opts.event), ("--id", opts.id)):
            if value is None:
                raise UsageError(f"--model discrete needs {flag}")
        rhs = formula.split("~", 1)[1].strip() if "~" in formula else formula
        return fit_spark_discrete(
            rhs, data, duration=opts.time, event=opts.event, id=opts.id, link=opts.link or "cloglog",
            time=opts.period_terms, cuts=opts.cuts, width=opts.width,
            vcov=vcov, cluster=opts.cluster, **common)  # type: ignore[arg-type]
    if "~" not in formula:
        if opts.event is None:
            raise UsageError(f"--model {model} needs --event (the outcome column) or a formula y ~ ...")
        formula = f"{opts.event} ~ {formula}"
    return fit_spark(formula, data, model=model, vcov=vcov,  # type: ignore[arg-type]
                     cluster=opts.cluster, weights=opts.weights,
                     weights_kind=opts.weights_kind, **common)


def _print_fit(res: Any) -> None:
    from rich.table import Table

    t = Table(title=f"{res.model} — {res.formula}", title_justify="left")
    for c in ("term", "estimate", "std. error", "z", "p", f"{res.conf_level:.0%} CI"):
        t.add_column(c, justify="left" if c == "term" else "right")
    for _, r in res.tidy().iterrows():
        t.add_row(r.term, f"{r.estimate:.4f}", f"{r.std_error:.4f}", f"{r.statistic:.2f}",
                  "<.001" if r.p_value < 0.001 else f"{r.p_value:.3f}",
                  f"[{r.conf_low:.3f}, {r.conf_high:.3f}]")
    out.print(t)
    out.print(
        f"N = {res.nobs}, events = {res.n_events:g}, log-likelihood = {res.loglik:.3f}, "
        f"LR chi2({res.lr_df}) = {res.lr_chi2:.2f}, vcov = {res.vcov_type}"
        + (f", McFadden R2 = {res.pseudo_r2_mcfadden:.3f}" if res.has_intercept else "")
        + (f", concordance = {res.extra['concordance']['c_index']:.3f}"
           if (res.extra.get("concordance") or {}).get("c_index") is not None else "")
    )
    for reason, n in res.flow.dropped_by_reason().items():
        out.print(f"dropped {n} row(s): {reason}")


@app.command()
def km(
    data: Annotated[str, typer.Argument(help="data file")],
    time: Annotated[str, typer.Option(help="duration column")],
    event: Annotated[str, typer.Option(help="event column (1 = exit, 0 = censored)")],
    by: Annotated[str | None, typer.Option(help="group column: one curve per level, and the log-rank test")] = None,
    conf_level: Annotated[float, typer.Option(help="confidence level")] = 0.95,
    figure: Annotated[str | None, typer.Option(help="write the curves to PATH (.png or .svg)")] = None,
    json_out: Annotated[str | None, typer.Option("--json", help="write the JSON result to PATH, or - for stdout")] = None,
) -> None:
    """Kaplan–Meier curves (Greenwood CIs), medians, numbers at risk and the log-rank test."""
    from smesurvival.data.readers import read_data
    from smesurvival.inference.km_analysis import km_analysis

    res = km_analysis(read_data(data).frame, time=time, event=event, by=by, conf_level=conf_level)
    if figure:
        _km_figure(res, figure)
        err.print(f"wrote {figure}")
    if json_out:
        _emit_json(res.to_dict(), json_out)
        return
    from rich.table import Table

    t = Table(title=f"Kaplan–Meier: {time} / {event}" + (f" by {by}" if by else ""), title_justify="left")
    for c in ("group", "N", "events", "median", f"{conf_level:.0%} CI of median"):
        t.add_column(c)
    for row in res.summary_rows():
        t.add_row(*row)
    out.print(t)
    if res.logrank is not None:
        lr = res.logrank
        out.print(f"log-rank chi2({lr.df}) = {lr.chi2:.3f}, p = {lr.p_value:.4g}")


def _parse_at(at: str | None) -> dict[str, Any] | None:
    """'z=0,1;w=2.5' -> {'z': [0.0, 1.0], 'w': 2.5} (numbers where they parse, else text)."""
    if not at:
        return None
    out: dict[str, Any] = {}
    for part in at.split(";"):
        if "=" not in part:
            raise UsageError(f"--at must look like 'column=v1,v2;other=v'; got '{part}'")
        name, values = part.split("=", 1)
        vals: list[Any] = []
        for v in values.split(","):
            try:
                vals.append(float(v))
            except ValueError:
                vals.append(v.strip())
        out[name.strip()] = vals if len(vals) > 1 else vals[0]
    return out


def _effects_model(data: str, model: str, formula: str, opts: dict[str, Any]) -> tuple[Any, Any]:
    """Read the data and fit the model the effect is computed from."""
    from smesurvival.data.readers import read_data
    from smesurvival.models.dispatch import ModelOptions, fit_model

    frame = read_data(data).frame
    res = fit_model(model, frame, formula, ModelOptions(**opts))
    return res, frame  # effects use the rows complete in the model's variables, as the fit


def _effects_payload(kind: str, res: Any, rows: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"effect": kind, "model": res.model, "formula": res.formula, "n_obs": res.nobs,
            "vcov_type": res.vcov_type, "rows": rows, **extra}


def _print_rows(title: str, rows: list[dict[str, Any]]) -> None:
    from rich.table import Table

    t = Table(title=title, title_justify="left")
    keys = [k for k in rows[0] if k not in ("statistic",)] if rows else []
    for k in keys:
        t.add_column(k, overflow="fold")
    for r in rows:
        t.add_row(*[f"{v:.4g}" if isinstance(v, float) else str(v) for v in (r[k] for k in keys)])
    out.print(t)


_MODEL_HELP = "logit, probit, cloglog, firth, cox or discrete"


@app.command()
def slopes(
    data: Annotated[str, typer.Argument(help="data file")],
    formula: Annotated[str, typer.Option(help="the model's formula")],
    variable: Annotated[str, typer.Option(help="focal variable")],
    model: Annotated[str, typer.Option(help=_MODEL_HELP)] = "logit",
    by: Annotated[str | None, typer.Option(help="moderator: slopes at its mean and ±1 SD (or --at values)")] = None,
    at: Annotated[str | None, typer.Option(help="set columns for every row: 'z=0,1;w=2.5'")] = None,
    type: Annotated[str, typer.Option(help="response (probability) or link")] = "response",
    unit: Annotated[bool, typer.Option(help="one slope per row instead of the average")] = False,
    time: Annotated[str | None, typer.Option(help="duration column (cox, discrete)")] = None,
    event: Annotated[str | None, typer.Option(help="event column")] = None,
    id: Annotated[str | None, typer.Option(help="subject id (discrete)")] = None,
    vcov: Annotated[str | None, typer.Option(help="covariance (as in fit)")] = None,
    cluster: Annotated[str | None, typer.Option(help="cluster column")] = None,
    json_out: Annotated[str | None, typer.Option("--json", help="write JSON rows to PATH, or - for stdout")] = None,
) -> None:
    """Marginal effects of --variable: average (AME), by moderator values, or per row."""
    from smesurvival.inference.effects import avg_slopes, simple_slopes
    from smesurvival.inference.effects import slopes as unit_slopes

    res, frame = _effects_model(data, model, formula, dict(time=time, event=event, id=id, vcov=vcov, cluster=cluster))
    at_values = _parse_at(at)
    if by and at_values is None:
        eff = simple_slopes(res, frame, variable, by, values="meansd", scale=type)  # type: ignore[arg-type]
    elif unit:
        eff = unit_slopes(res, frame, variable, at=at_values, type=type)  # type: ignore[arg-type]
    else:
        eff = avg_slopes(res, frame, variable, at=at_values, type=type)  # type: ignore[arg-type]
    rows = eff.to_records()
    if json_out:
        _emit_json(_effects_payload("slopes", res, rows, variable=variable, by=by, type=type), json_out)
        return
    _print_rows(f"Slopes of {variable} ({type} scale)", rows)


@app.command()
def predictions(
    data: Annotated[str, typer.Argument(help="data file")],
    formula: Annotated[str, typer.Option(help="the model's formula")],
    model: Annotated[str, typer.Option(help=_MODEL_HELP)] = "logit",
    at: Annotated[str | None, typer.Option(help="profiles: 'export_ratio=0,0.3;rd_alliance=1' (others typical)")] = None,
    type: Annotated[str, typer.Option(help="response, link (cox: survival with --horizon, hr)")] = "response",
    horizon: Annotated[float | None, typer.Option(help="time horizon for cox survival")] = None,
    time: Annotated[str | None, typer.Option(help="duration column (cox, discrete)")] = None,
    event: Annotated[str | None, typer.Option(help="event column")] = None,
    id: Annotated[str | None, typer.Option(help="subject id (discrete)")] = None,
    vcov: Annotated[str | None, typer.Option(help="covariance (as in fit)")] = None,
    json_out: Annotated[str | None, typer.Option("--json", help="write JSON rows to PATH, or - for stdout")] = None,
) -> None:
    """Predictions with delta-method CIs for a typical firm, varied as --at says."""
    from smesurvival.inference.effects import datagrid
    from smesurvival.inference.effects import predictions as predict_at

    res, frame = _effects_model(data, model, formula, dict(time=time, event=event, id=id, vcov=vcov))
    grid = datagrid(frame, _parse_at(at))
    eff = predict_at(res, frame, newdata=grid, type=type, horizon=horizon)  # type: ignore[arg-type]
    rows = eff.to_records()
    if json_out:
        _emit_json(_effects_payload("predictions", res, rows, type=type), json_out)
        return
    _print_rows(f"Predictions ({type})", rows)


@app.command()
def jn(
    data: Annotated[str, typer.Argument(help="data file")],
    formula: Annotated[str, typer.Option(help="the model's formula (with the focal × moderator term)")],
    variable: Annotated[str, typer.Option(help="focal variable")],
    by: Annotated[str, typer.Option(help="moderator")],
    model: Annotated[str, typer.Option(help=_MODEL_HELP)] = "logit",
    scale: Annotated[str, typer.Option(help="link (closed form) or response (probability)")] = "link",
    band: Annotated[str, typer.Option(help="pointwise or simultaneous")] = "pointwise",
    time: Annotated[str | None, typer.Option(help="duration column (cox, discrete)")] = None,
    event: Annotated[str | None, typer.Option(help="event column")] = None,
    id: Annotated[str | None, typer.Option(help="subject id (discrete)")] = None,
    vcov: Annotated[str | None, typer.Option(help="covariance (as in fit)")] = None,
    figure: Annotated[str | None, typer.Option(help="write the Johnson–Neyman figure to PATH (.png/.svg)")] = None,
    json_out: Annotated[str | None, typer.Option("--json", help="write JSON to PATH, or - for stdout")] = None,
) -> None:
    """Johnson–Neyman: the moderator values where the focal variable's slope is significant."""
    from smesurvival.inference.johnson_neyman import johnson_neyman

    res, frame = _effects_model(data, model, formula, dict(time=time, event=event, id=id, vcov=vcov))
    r = johnson_neyman(res, frame, variable, by, scale=scale, band=band)  # type: ignore[arg-type]
    if figure:
        from smesurvival.report.effect_figures import johnson_neyman_figure

        johnson_neyman_figure(r, False).savefig(figure, dpi=150, bbox_inches="tight")
        err.print(f"wrote {figure}")
    if json_out:
        d = r.to_dict()
        d.update({"effect": "johnson_neyman", "model": res.model, "formula": res.formula})
        _emit_json(d, json_out)
        return
    out.print(r.describe())


@app.command()
def mediate(
    data: Annotated[str, typer.Argument(help="data file")],
    outcome: Annotated[str, typer.Option(help="binary outcome column, e.g. survived")],
    variable: Annotated[str, typer.Option(help="key variable, e.g. rd_intensity")],
    mediator: Annotated[str, typer.Option(help="mediator, e.g. export_ratio")],
    controls: Annotated[str, typer.Option(help="comma-separated control terms, e.g. 'log_firm_age,C(industry)'")] = "",
    model: Annotated[str, typer.Option(help="logit, probit or cloglog")] = "logit",
    method: Annotated[str, typer.Option(help="khb or product (a×b with Sobel and probability-scale rows)")] = "khb",
    vcov: Annotated[str, typer.Option(help="classical, hc0, hc1 or cluster")] = "classical",
    cluster: Annotated[str | None, typer.Option(help="cluster column")] = None,
    json_out: Annotated[str | None, typer.Option("--json", help="write JSON rows to PATH, or - for stdout")] = None,
) -> None:
    """Mediation: KHB decomposition (total, direct, indirect) or the product of coefficients."""
    from smesurvival.data.readers import read_data
    from smesurvival.inference.mediation import indirect_effect, khb

    frame = read_data(data).frame
    ctr = [c.strip() for c in controls.split(",") if c.strip()]
    if method == "khb":
        r: Any = khb(frame, outcome, variable, [mediator], ctr, model=model, vcov=vcov, cluster=cluster)  # type: ignore[arg-type]
    elif method == "product":
        r = indirect_effect(frame, outcome, variable, mediator, ctr, model=model, vcov=vcov, cluster=cluster)  # type: ignore[arg-type]
    else:
        raise UsageError(f"--method must be khb or product; got '{method}'")
    rows = [{str(k): _clean(v) for k, v in rec.items()} for rec in r.frame.to_dict(orient="records")]
    if json_out:
        _emit_json({"effect": f"mediation_{method}", "outcome": outcome, "variable": variable,
                    "mediator": mediator, "model": model, "rows": rows}, json_out)
        return
    _print_rows(f"Mediation ({method}): {variable} -> {mediator} -> {outcome}", rows)


@app.command()
def power(
    spec: Annotated[str, typer.Argument(help="a study spec (.toml) or a built-in name: lee2012")],
    n: Annotated[str, typer.Option(help="comma-separated cohort sizes")] = "500,1000,1612,3000",
    reps: Annotated[int, typer.Option(help="simulated cohorts per size")] = 500,
    seed: Annotated[int, typer.Option(help="random seed")] = 1,
    effect: Annotated[list[str] | None, typer.Option(help="true failure-hazard effect per SD, e.g. export_ratio=-0.2 (repeatable)")] = None,
    figure: Annotated[str | None, typer.Option(help="write the power curve to PATH (.png/.svg)")] = None,
    json_out: Annotated[str | None, typer.Option("--json", help="write JSON to PATH, or - for stdout")] = None,
) -> None:
    """Power by simulation: how often the study supports each hypothesis, by sample size."""
    from rich.table import Table

    from smesurvival.study.power import simulate_power
    from smesurvival.study.spec import load_spec

    try:
        ns = [int(x) for x in n.split(",") if x.strip()]
        effects = {k.strip(): float(v) for k, v in (e.split("=", 1) for e in (effect or []))}
    except ValueError:
        raise UsageError("--n takes integers like 500,1612; --effect takes term=number") from None
    with err.status("simulating …") as status:
        res = simulate_power(load_spec(spec), ns, reps, seed=seed, effects=effects,
                             progress=lambda m: status.update(f"{m} …"))
    if figure:
        from smesurvival.report.power_figure import power_figure

        power_figure(res).savefig(figure, dpi=150, bbox_inches="tight")
        err.print(f"wrote {figure}")
    if json_out:
        _emit_json(res.to_dict(), json_out)
        return
    t = Table(title=f"Share of {reps} SYNTHETIC cohorts supporting each hypothesis", title_justify="left")
    t.add_column("hypothesis")
    t.add_column("2012 study")
    for size in res.ns:
        t.add_column(f"N = {size}", justify="right")
    for j, h in enumerate(res.hypotheses):
        t.add_row(h, res.published[j] or "", *[f"{res.power[i, j]:.3f}" for i in range(len(res.ns))])
    out.print(t)
    if res.failed.sum():
        out.print(f"fits that failed (counted as not supported): {int(res.failed.sum())}")


def _km_figure(res: Any, path: str) -> None:
    """Draw the KM curves with the report's figure code (no synthetic mark: user data)."""
    from smesurvival.report.figures import group_survival_figure
    from smesurvival.study.result import GroupSurvival

    if Path(path).suffix.lower() not in (".png", ".svg"):
        raise UsageError("--figure must end in .png or .svg")
    c = res.curves
    gs = GroupSurvival(
        res.by or "all", tuple(c), tuple(k.time for k in c.values()),
        tuple(k.survival for k in c.values()), tuple(k.conf_low for k in c.values()),
        tuple(k.conf_high for k in c.values()), tuple(int(k.n) for k in c.values()),
        tuple(int(k.total_events) for k in c.values()),
        tuple(float(k.survival[-1]) if k.survival.size else 1.0 for k in c.values()),
    )
    fig = group_survival_figure(gs, False)
    fig.savefig(path, dpi=150, bbox_inches="tight")


@app.command()
def validate(
    data: Annotated[str, typer.Argument(help="firm data file")],
    spec: Annotated[str | None, typer.Option(help="study spec whose [columns] map to use")] = None,
) -> None:
    """Check firm data against the schema and rules; exit status 2 if any rule is broken."""
    from smesurvival.data import ColumnMap, read_data, validate_firms
    from smesurvival.study.spec import load_spec

    loaded = read_data(data)
    columns = ColumnMap.from_dict(load_spec(spec).columns) if spec else ColumnMap.default()
    report = validate_firms(loaded.frame, columns, source=data, require_roles=True)
    if report.ok:
        out.print(f"{data}: {report.n_rows} rows, no errors" + (f", {len(report.warnings)} warning(s)" if report.warnings else ""))
        if report.warnings:
            from rich.markup import escape

            out.print(escape(report.summary()), soft_wrap=True)
        return
    _fail(report.summary())


@app.command()
def simulate(
    out_path: Annotated[str, typer.Option("--out", help="output file: .csv or .parquet")],
    n: Annotated[int, typer.Option(help="number of firms")] = 1612,
    seed: Annotated[int, typer.Option(help="random seed")] = 2012,
    panel: Annotated[bool, typer.Option(help="write firm-years (one row per firm and year at risk: year, t, event) instead of firms")] = False,
    measures: Annotated[bool, typer.Option(help="also write the study's measures (export_ratio, rd_intensity, innovativeness, log_firm_age, log_employees, ...)")] = False,
    chunk: Annotated[int, typer.Option(help="firms per write (one Parquet row group); changes memory use, never the values")] = 65536,
    threads: Annotated[int | None, typer.Option(help="worker threads drawing firms while the file is written (0: none; default: one per extra core, at most 2)")] = None,
    compression: Annotated[str, typer.Option(help="Parquet compression: snappy, zstd, lz4, gzip, brotli or none")] = "snappy",
) -> None:
    """Write a SYNTHETIC cohort calibrated to Lee et al. (2012) in chunks (truth in FILE.truth.json).

    Bounded memory at any size (e.g. --n 5000000 --panel); the file appears only when complete.
    Up to 65,536 firms the file equals simulate_cohort(n, seed) exactly."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from smesurvival.data.simwrite import write_cohort

    with Progress(TextColumn("simulating"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("firms, {task.fields[rows]:,} rows"), TimeElapsedColumn(),
                  TimeRemainingColumn(), console=err, transient=True,
                  disable=n < 200_000) as bar:
        task = bar.add_task("simulate", total=n, rows=0)
        summary = write_cohort(
            out_path, n, seed, panel=panel, measures=measures, chunk_firms=chunk,
            threads=threads, compression=compression,
            progress=lambda f, r: bar.update(task, completed=f, rows=r))
    err.print(f"wrote {out_path} — {summary.n_rows:,} {summary.layout} in {summary.seconds:.1f} s "
              f"— {summary.label}")


def _run_and_write(spec: str, data: str | None, out_dir: str, missing: str | None = None,
                   formats: str = "md,html,latex,docx", bundle: str | None = None,
                   include_data: bool = False) -> None:
    from smesurvival.report.build import check_formats, write_report
    from smesurvival.study.run import run_study

    fm = check_formats(formats.split(","))
    if bundle is not None and Path(bundle).suffix.lower() != ".zip":
        raise UsageError(f"--bundle must name a .zip file; got '{bundle}'")
    if include_data and bundle is None:
        raise UsageError("--include-data goes with --bundle FILE.zip")
    with err.status("running the study …") as status:
        result = run_study(spec, data, missing=missing, progress=lambda m: status.update(f"{m} …"))
        status.update("writing the report …")
        files = write_report(result, out_dir, formats=fm)
        if bundle is not None:
            from smesurvival.study.bundle import make_bundle

            status.update("writing the replication bundle …")
            make_bundle(result, bundle, data_file=data, include_data=include_data,
                        report_dir=files.out_dir, missing=missing)
    if result.synthetic:
        err.print("[bold yellow]SYNTHETIC DATA[/]: " + result.provenance.source)
    from rich.table import Table

    from smesurvival.labels import label

    t = Table(title="Hypotheses (p as the spec states: one- or two-sided)", title_justify="left")
    for c in ("", "term", "estimate", "p", "verdict", "2012 study"):
        t.add_column(c, overflow="fold")
    for v in result.verdicts:
        p = "<.001" if v.p_value < 0.001 else f"{v.p_value:.3f}"
        t.add_row(v.hypothesis, label(v.term).split(" (")[0], f"{v.estimate:.3f}", p,
                  "supported" if v.supported else "not supported", v.published or "")
    out.print(t)
    extra = [n for n, f in (("tables.tex", files.latex), ("tables.docx", files.docx)) if f]
    out.print(f"report: {Path(out_dir) / 'report.html'} (also report.md, results.json, figures/"
              + "".join(f", {n}" for n in extra) + ")")
    if bundle is not None:
        out.print(f"replication bundle: {bundle} (check it with: smesurvival replicate {bundle})")


FORMAT_HELP = "report formats, comma-separated: md, html, latex (tables.tex), docx (tables.docx)"


@app.command()
def study(
    spec: Annotated[str, typer.Argument(help="a study spec (.toml) or a built-in name: lee2012")],
    data: Annotated[str | None, typer.Option(help="firm data file; omit for the built-in synthetic cohort")] = None,
    out_dir: Annotated[str, typer.Option("--out", help="output folder")] = "smesurvival-report",
    missing: Annotated[str | None, typer.Option("--missing", help="listwise (default) or mice; overrides the spec's [missing]")] = None,
    format: Annotated[str, typer.Option("--format", help=FORMAT_HELP)] = "md,html,latex,docx",
    bundle: Annotated[str | None, typer.Option("--bundle", help="also write a replication bundle (.zip): spec, data hash, versions, seeds, results, report")] = None,
    include_data: Annotated[bool, typer.Option("--include-data", help="put the data file itself in the bundle")] = False,
) -> None:
    """Run a study and write report.html, report.md, results.json, figures/ and the journal tables."""
    _run_and_write(spec, data, out_dir, missing, format, bundle, include_data)


@app.command()
def demo(
    out_dir: Annotated[str, typer.Option("--out", help="output folder")] = "smesurvival-report",
    missing: Annotated[str | None, typer.Option("--missing", help="listwise (default) or mice")] = None,
    format: Annotated[str, typer.Option("--format", help=FORMAT_HELP)] = "md,html,latex,docx",
) -> None:
    """Run the reference study (lee2012) on the built-in SYNTHETIC cohort."""
    _run_and_write("lee2012", None, out_dir, missing, format)


@app.command()
def replicate(
    bundle: Annotated[str, typer.Argument(help="a replication bundle (.zip) from study --bundle")],
    data: Annotated[str | None, typer.Option(help="the data file, when the bundle does not include it")] = None,
    rtol: Annotated[float, typer.Option(help="relative tolerance per number")] = 1e-9,
) -> None:
    """Rerun a bundled study and compare every number; exit 0 when all match, 3 when not."""
    from smesurvival.study.bundle import replicate as _replicate

    with err.status("replicating the study …"):
        rep = _replicate(bundle, data, rtol=rtol)
    if not rep.data_ok:
        err.print(f"[bold red]not replicated:[/] {rep.data_message}", soft_wrap=True)
        raise typer.Exit(3)
    if rep.differences:
        err.print(f"[bold red]not replicated:[/] {len(rep.differences)} of {rep.compared} "
                  f"numbers differ beyond rtol {rep.rtol:g}:", soft_wrap=True)
        for d in rep.differences[:50]:
            err.print(f"  {d}", soft_wrap=True, markup=False)
        if len(rep.differences) > 50:
            err.print(f"  … and {len(rep.differences) - 50} more")
        raise typer.Exit(3)
    out.print(f"replicated: all {rep.compared} numbers match (rtol {rep.rtol:g}); {rep.data_message}")


from smesurvival.web.cli import serve_command  # noqa: E402  (typer only; FastAPI loads on serve)

app.command("serve")(serve_command)


def main() -> None:
    """Entry point: our errors become one message and exit status 2; bugs propagate (status 1)."""
    try:
        app()  # standalone: usage errors exit 2, typer.Exit(n) exits n
    except SmeSurvivalError as e:
        from rich.markup import escape

        err.print(f"[bold red]error:[/] {escape(str(e))}", soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
