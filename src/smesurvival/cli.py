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
    err.print(f"[bold red]error:[/] {message}", soft_wrap=True)
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
    data: Annotated[str, typer.Argument(help="firm data file (CSV, Parquet, XLSX, DTA, SAV)")],
    formula: Annotated[str, typer.Option(help="'y ~ x1 * x2 + C(g)', or the right-hand side with --event")],
    model: Annotated[str, typer.Option(help="logit, probit or cloglog")] = "logit",
    event: Annotated[str | None, typer.Option(help="outcome column when --formula is a right-hand side")] = None,
    vcov: Annotated[str, typer.Option(help="classical, hc0, hc1 or cluster")] = "classical",
    cluster: Annotated[str | None, typer.Option(help="cluster column for --vcov cluster")] = None,
    weights: Annotated[str | None, typer.Option(help="weights column")] = None,
    weights_kind: Annotated[str, typer.Option(help="frequency or survey")] = "frequency",
    information: Annotated[str, typer.Option(help="expected (as R's glm) or observed (as Stata)")] = "expected",
    conf_level: Annotated[float, typer.Option(help="confidence level")] = 0.95,
    engine: Annotated[str, typer.Option(help="memory")] = "memory",
    json_out: Annotated[str | None, typer.Option("--json", help="write the JSON result to PATH, or - for stdout")] = None,
) -> None:
    """Fit one model and print its table (or the JSON contract of DESIGN.md with --json)."""
    from smesurvival.data.readers import read_data
    from smesurvival.models.fit import BINARY_MODELS
    from smesurvival.models.fit import fit as fit_model

    if model not in BINARY_MODELS:
        raise UsageError(
            f"--model must be one of {', '.join(BINARY_MODELS)} (cox, discrete, finegray and firth "
            "are planned, not available in this version); got '{model}'".replace("{model}", model)
        )
    if engine != "memory":
        raise UsageError(f"--engine must be 'memory' in this version; got '{engine}'")
    if "~" not in formula:
        if not event:
            raise UsageError("--formula has no outcome: write 'y ~ terms' or pass --event COLUMN")
        formula = f"{event} ~ {formula}"
    frame = read_data(data).frame
    res = fit_model(
        formula, frame, model=model, vcov=vcov, cluster=cluster, weights=weights,  # type: ignore[arg-type]
        weights_kind=weights_kind, information=information, conf_level=conf_level,  # type: ignore[arg-type]
    )
    d = res.to_dict()
    payload = {k: d[k] for k in ("model", "formula", "n_obs", "n_events", "dropped", "params", "bse",
                                 "pvalues", "conf_int", "loglik", "llnull", "aic", "bic",
                                 "converged", "iterations", "vcov_type", "engine")}
    payload.update({k: d[k] for k in ("lr_chi2", "lr_df", "pseudo_r2_mcfadden",
                                      "pseudo_r2_nagelkerke", "n_clusters", "information")})
    if json_out:
        _emit_json(payload, json_out)
        return
    _print_fit(res)


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
        f"LR chi2({res.lr_df}) = {res.lr_chi2:.2f}, McFadden R2 = {res.pseudo_r2_mcfadden:.3f}, "
        f"vcov = {res.vcov_type}"
    )
    for reason, n in res.flow.dropped_by_reason().items():
        out.print(f"dropped {n} row(s): {reason}")


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
            out.print(report.summary(), soft_wrap=True)
        return
    _fail(report.summary())


@app.command()
def simulate(
    out_path: Annotated[str, typer.Option("--out", help="output file: .csv or .parquet")],
    n: Annotated[int, typer.Option(help="number of firms")] = 1612,
    seed: Annotated[int, typer.Option(help="random seed")] = 2012,
    panel: Annotated[bool, typer.Option(help="write firm-years instead of firms")] = False,
) -> None:
    """Write a SYNTHETIC cohort calibrated to Lee et al. (2012) (truth in FILE.truth.json)."""
    from smesurvival.data.synthetic import simulate_cohort

    if n < 1:
        raise UsageError("--n must be at least 1")
    if Path(out_path).suffix.lower() not in (".csv", ".parquet"):
        raise UsageError("--out must end in .csv or .parquet")
    cohort = simulate_cohort(n=n, seed=seed, panel=panel)
    cohort.write(out_path)
    err.print(f"wrote {out_path} — {cohort.label}")


def _run_and_write(spec: str, data: str | None, out_dir: str) -> None:
    from smesurvival.report.build import write_report
    from smesurvival.study.run import run_study

    with err.status("running the study …") as status:
        result = run_study(spec, data, progress=lambda m: status.update(f"{m} …"))
        status.update("writing the report …")
        files = write_report(result, out_dir)
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
    out.print(f"report: {Path(out_dir) / 'report.html'} (also report.md, results.json, figures/)")
    del files


@app.command()
def study(
    spec: Annotated[str, typer.Argument(help="a study spec (.toml) or a built-in name: lee2012")],
    data: Annotated[str | None, typer.Option(help="firm data file; omit for the built-in synthetic cohort")] = None,
    out_dir: Annotated[str, typer.Option("--out", help="output folder")] = "smesurvival-report",
) -> None:
    """Run a study and write report.html, report.md, results.json and figures/."""
    _run_and_write(spec, data, out_dir)


@app.command()
def demo(
    out_dir: Annotated[str, typer.Option("--out", help="output folder")] = "smesurvival-report",
) -> None:
    """Run the reference study (lee2012) on the built-in SYNTHETIC cohort."""
    _run_and_write("lee2012", None, out_dir)


def main() -> None:
    """Entry point: our errors become one message and exit status 2; bugs propagate (status 1)."""
    try:
        app()  # standalone: usage errors exit 2, typer.Exit(n) exits n
    except SmeSurvivalError as e:
        err.print(f"[bold red]error:[/] {e}", soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
