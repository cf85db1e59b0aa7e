"""Do the Cox and discrete-time cloglog models recover the synthetic cohort's true hazards?

The synthetic cohort (``smesurvival.data.synthetic``, ``docs/synthetic.md``) draws exits from
three cause-specific, piecewise-constant hazards with a known truth.  This benchmark simulates
``--reps`` cohorts (seeds ``--first-seed`` ...), builds the study's measures with
``build_measures``, and fits two correctly specified cause-specific models per cohort:

* **failure hazard** (event = failure; acquisitions and other exits censored at their exit):
  the nine per-SD terms of ``truth["failure_hazard"]["per_sd"]`` plus the nine industry
  contrasts against machinery (``gamma_k - gamma_machinery``; only contrasts are identified
  next to a free baseline);
* **acquisition hazard** (event = acquisition; failures and other exits censored): the three
  per-SD terms of ``truth["acquisition_hazard"]["per_sd"]``;

each with four estimators: ``fit_cox`` (Efron ties, month-precision exit times) and
``fit_discrete`` (cloglog link, one dummy per follow-up year, firm-years from ``width=1``,
classical model-based SEs) by maximum (partial) likelihood, and the same two models
bias-reduced: ``fit_cox_firth`` (Firth / Heinze-Schemper penalised partial likelihood, Efron
ties, Wald CIs from the inverse information, as ``coxphf(pl = FALSE)``) and
``fit_discrete(..., firth=True)`` (the mean-bias-reducing adjusted score, brglm2 ``AS_mean``,
Wald CIs).  ``--no-firth`` skips the bias-reduced fits.

Covariates are the simulator's own z-scores: each measure standardised with the population
constants in ``truth["population"]`` (innovativeness rebuilt from its three items with
``truth["innovativeness_items"]``), so a fitted coefficient is directly comparable with the
simulator's per-SD coefficient, interactions included.

Why the cloglog model has the same true coefficients: the simulator's baseline is constant
within each follow-up year (and the years are the model's periods), so without competing exits
P(failure in year j | at risk) = 1 - exp(-lambda s_j exp(eta)) and cloglog(P) = log(lambda s_j)
+ eta exactly - a year dummy absorbs log(lambda s_j).  Counting a firm acquired in year j as at
risk in year j with no failure (the usual cause-specific firm-year coding) gives
cloglog(P) = log(lambda s_j) + eta - h_comp / 2 + O(h^2), h_comp the annual hazard of the
competing exits; that term moves a coefficient only through the competing hazard's own
dependence on the covariate: <= 0.0005 for the failure model (acquisitions depend weakly on
R&D and innovativeness only) and about +0.003 for log_employees in the acquisition model
(failure hazard ~0.02 a year with slope -0.30).  ``--large`` measures it.

Criteria (survival-models issue): the mean estimate within 5% of the truth or 0.02 absolute
(whichever is larger; 5% is meaningless for a true 0) and 95% CI coverage in 0.93-0.97.  With
R cohorts, coverage has Monte-Carlo SE sqrt(p(1 - p) / R) (0.015 at R = 200) and the mean
estimate SD / sqrt(R); both are printed so that a miss can be judged against chance.  The
verdict is given per estimator family (ML: Cox and cloglog; Firth: Cox and cloglog); each
family passes when all 12 coefficients meet both criteria with both of its models.

Usage::

    .venv/bin/python bench/recovery.py                    # 200 cohorts of 1,612 firms
    .venv/bin/python bench/recovery.py --reps 1000 --workers 2
    .venv/bin/python bench/recovery.py --n 6448 --no-firth       # ML only
    .venv/bin/python bench/recovery.py --large 1000000 --large-reps 4   # + the estimands (ML)
    .venv/bin/python bench/recovery.py --json recovery.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from smesurvival.data.measures import MeasureOptions, build_measures
from smesurvival.data.schema import ColumnMap
from smesurvival.data.synthetic import TERMS, simulate_cohort
from smesurvival.models.cox import fit_cox
from smesurvival.models.discrete import fit_discrete
from smesurvival.models.firth_cox import fit_cox_firth

MEASURES = (
    "log_firm_age",
    "log_employees",
    "export_ratio",
    "rd_intensity",
    "innovativeness",
    "rd_alliance",
)
ITEMS = ("patents", "new_products", "certified_tech")
REFERENCE_INDUSTRY = "machinery"
ACQ_TERMS = ("rd_intensity", "innovativeness", "log_employees")
ML_MODELS = ("cox", "cloglog")
FIRTH_MODELS = ("cox_firth", "cloglog_firth")
MODELS = (*ML_MODELS, *FIRTH_MODELS)
FAMILIES = {"ML": ML_MODELS, "Firth": FIRTH_MODELS}
LABELS = {
    "cox": "Cox (Efron), maximum partial likelihood",
    "cloglog": "discrete-time cloglog, yearly dummies, maximum likelihood",
    "cox_firth": "Cox (Efron), Firth penalised partial likelihood",
    "cloglog_firth": "discrete-time cloglog, yearly dummies, bias-reduced (AS_mean)",
}
SHORT = {
    "cox": "Cox ML",
    "cloglog": "cloglog ML",
    "cox_firth": "Cox Firth",
    "cloglog_firth": "cloglog Firth",
}
HAZARDS = ("failure", "acquisition")
REL_TOL, ABS_TOL = 0.05, 0.02
COVERAGE_BAND = (0.93, 0.97)


# ----------------------------------------------------------------------------- one cohort


def _zname(term: str) -> str:
    """Formula text of a truth term: ``export_ratio:rd_intensity`` -> ``z_export_ratio:z_rd_intensity``."""
    return ":".join("z_" + part for part in term.split(":"))


def _industry_col(sector: str) -> str:
    return "ind_" + sector


def analysis_frame(frame: pd.DataFrame, truth: dict[str, Any]) -> pd.DataFrame:
    """Measures (``build_measures``) as the simulator's population z-scores, plus outcomes."""
    m = build_measures(frame, ColumnMap.default(), MeasureOptions()).frame
    if len(m) != len(frame) or not np.array_equal(
        m["firm_id"].to_numpy(), frame["firm_id"].to_numpy()
    ):
        raise RuntimeError(
            "build_measures dropped or reordered firms; the z-scores would not align"
        )
    pop = truth["population"]
    out = pd.DataFrame(
        {"firm_id": m["firm_id"].to_numpy(), "time": m["time_to_exit"].to_numpy(dtype=float)}
    )
    etype = m["exit_type"].to_numpy(dtype=object)
    for h in ("failure", "acquisition"):
        out[h] = (etype == h).astype(float)
    for name in MEASURES:
        if name == "innovativeness":
            # the simulator's innovativeness: mean of the items' z-scores of log(1 + item),
            # standardised with the population item constants (build_measures uses the sample's)
            it = truth["innovativeness_items"]
            raw = sum(
                (np.log1p(frame[q].to_numpy(dtype=float)) - it[q]["mean"]) / it[q]["sd"]
                for q in ITEMS
            ) / len(ITEMS)
        else:
            raw = m[name].to_numpy(dtype=float)
        out["z_" + name] = (raw - pop[name]["mean"]) / pop[name]["sd"]
    industry = m["industry"].astype(str).to_numpy()
    for sector in truth["failure_hazard"]["industry_effects"]:
        if sector != REFERENCE_INDUSTRY:
            out[_industry_col(sector)] = (industry == sector).astype(float)
    return out


@dataclass(frozen=True)
class Spec:
    """One cause-specific model: event column, formula terms and the truth of each."""

    hazard: str
    labels: tuple[str, ...]  # row labels of the report
    formula_terms: tuple[str, ...]  # FitResult term names
    truth: tuple[float, ...]
    kind: tuple[str, ...]  # "coef" (acceptance criterion) or "industry" (supplementary)

    @property
    def rhs(self) -> str:
        return " + ".join(self.formula_terms)


def specs(truth: dict[str, Any]) -> dict[str, Spec]:
    """The failure and acquisition models and their true coefficients, read from ``truth``."""
    fh = truth["failure_hazard"]
    gamma = fh["industry_effects"]
    sectors = [s for s in gamma if s != REFERENCE_INDUSTRY]
    fail = Spec(
        hazard="failure",
        labels=(*TERMS, *(f"industry {s} vs {REFERENCE_INDUSTRY}" for s in sectors)),
        formula_terms=(*(_zname(t) for t in TERMS), *(_industry_col(s) for s in sectors)),
        truth=(
            *(float(fh["per_sd"][t]) for t in TERMS),
            *(float(gamma[s] - gamma[REFERENCE_INDUSTRY]) for s in sectors),
        ),
        kind=(*("coef",) * len(TERMS), *("industry",) * len(sectors)),
    )
    ah = truth["acquisition_hazard"]["per_sd"]
    acq = Spec(
        hazard="acquisition",
        labels=ACQ_TERMS,
        formula_terms=tuple(_zname(t) for t in ACQ_TERMS),
        truth=tuple(float(ah[t]) for t in ACQ_TERMS),
        kind=("coef",) * len(ACQ_TERMS),
    )
    return {"failure": fail, "acquisition": acq}


def fit_one(
    model: str, spec: Spec, data: pd.DataFrame
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Estimates, SEs and 95% Wald CI bounds (k x 2) of ``spec``'s terms."""
    if model == "cox":
        res = fit_cox(
            spec.rhs, data, duration="time", event=spec.hazard, ties="efron", concordance=False
        )
    elif model == "cox_firth":
        res = fit_cox_firth(
            spec.rhs,
            data,
            duration="time",
            event=spec.hazard,
            ties="efron",
            profile=False,
            concordance=False,
        )
    else:
        res = fit_discrete(
            spec.rhs,
            data,
            duration="time",
            event=spec.hazard,
            id="firm_id",
            link="cloglog",
            time="dummies",
            width=1.0,
            vcov="classical",
            firth=model == "cloglog_firth",
        )
    idx = [res.terms.index(t) for t in spec.formula_terms]
    ci = res.conf_int(0.95).to_numpy()[idx]
    return res.params[idx], res.se[idx], ci


def run_cohort(args: tuple[int, int, tuple[str, ...]]) -> dict[str, Any]:
    """Simulate one cohort and fit every model; errors are recorded, not raised."""
    seed, n, models = args
    cohort = simulate_cohort(n=n, seed=seed)
    data = analysis_frame(cohort.frame, cohort.truth)
    out: dict[str, Any] = {
        "seed": seed,
        "events": {h: int(data[h].sum()) for h in HAZARDS},
        "fits": {},
    }
    for hazard, spec in specs(cohort.truth).items():
        for model in models:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    est, se, ci = fit_one(model, spec, data)
                out["fits"][(model, hazard)] = (est, se, ci)
            except Exception as exc:  # noqa: BLE001 - a failed fit is a result to count
                out["fits"][(model, hazard)] = f"{type(exc).__name__}: {exc}"
    return out


# ----------------------------------------------------------------------------- summaries


def summarise(
    results: list[dict[str, Any]], spec: Spec, model: str
) -> tuple[pd.DataFrame, list[str]]:
    """Per-term Monte-Carlo summary of one model over the cohorts whose fit succeeded."""
    ok = [r["fits"][(model, spec.hazard)] for r in results]
    errors = [
        f"seed {r['seed']}: {f}" for r, f in zip(results, ok, strict=True) if isinstance(f, str)
    ]
    fits = [f for f in ok if not isinstance(f, str)]
    est = np.array([f[0] for f in fits])
    se = np.array([f[1] for f in fits])
    ci = np.array([f[2] for f in fits])  # R x k x 2
    truth = np.asarray(spec.truth)
    R = est.shape[0]
    mean = est.mean(axis=0)
    sd = est.std(axis=0, ddof=1)
    bias = mean - truth
    cover = ((ci[:, :, 0] <= truth) & (truth <= ci[:, :, 1])).mean(axis=0)
    tol = np.maximum(REL_TOL * np.abs(truth), ABS_TOL)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(truth != 0, bias / np.abs(truth), np.nan)
    df = pd.DataFrame(
        {
            "term": spec.labels,
            "kind": spec.kind,
            "truth": truth,
            "mean": mean,
            "bias": bias,
            "bias_mcse": sd / math.sqrt(R),
            "median": np.median(est, axis=0),
            "rel_bias": rel,
            "mean_se": se.mean(axis=0),
            "sd": sd,
            "coverage": cover,
            "coverage_mcse": np.sqrt(cover * (1 - cover) / R),
            "within_5pct": np.where(truth != 0, np.abs(bias) <= REL_TOL * np.abs(truth), np.nan),
            "within_002": np.abs(bias) <= ABS_TOL,
            "bias_ok": np.abs(bias) <= tol,
            "coverage_ok": (cover >= COVERAGE_BAND[0] - 1e-12)
            & (cover <= COVERAGE_BAND[1] + 1e-12),
            "R": R,
        }
    )
    df["met"] = df["bias_ok"] & df["coverage_ok"]
    return df, errors


def _yn(v: object) -> str:
    if isinstance(v, float) and math.isnan(v):
        return "—"
    return "[green]yes[/]" if bool(v) else "[red]no[/]"


def render(console: Console, title: str, df: pd.DataFrame) -> None:
    t = Table(title=title, title_justify="left", show_lines=False, pad_edge=False)
    for col, just in (
        ("term", "left"),
        ("truth", "right"),
        ("mean est", "right"),
        ("bias ± MC SE", "right"),
        ("rel bias", "right"),
        ("mean SE", "right"),
        ("SD est", "right"),
        ("coverage ± MC SE", "right"),
        ("≤5%", "center"),
        ("≤0.02", "center"),
        ("met", "center"),
    ):
        t.add_column(col, justify=just, no_wrap=True)
    last_kind = None
    for r in df.itertuples():
        if last_kind is not None and r.kind != last_kind:
            t.add_section()
        last_kind = r.kind
        rel = "—" if math.isnan(r.rel_bias) else f"{100 * r.rel_bias:+.1f}%"
        cov = f"{r.coverage:.3f} ± {r.coverage_mcse:.3f}"
        if not r.coverage_ok:
            cov = f"[red]{cov}[/]"
        t.add_row(
            r.term,
            f"{r.truth:+.3f}",
            f"{r.mean:+.3f}",
            f"{r.bias:+.4f} ± {r.bias_mcse:.4f}",
            rel,
            f"{r.mean_se:.3f}",
            f"{r.sd:.3f}",
            cov,
            _yn(r.within_5pct),
            _yn(r.within_002),
            _yn(r.met),
        )
    console.print(t)


def markdown(df: pd.DataFrame) -> str:
    """The same table as GitHub markdown (for docs/recovery.md)."""
    lines = [
        "| term | truth | mean est | bias ± MC SE | rel bias | mean SE | SD est | "
        "coverage ± MC SE | criterion met |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in df.itertuples():
        rel = "—" if math.isnan(r.rel_bias) else f"{100 * r.rel_bias:+.1f}%"
        met = (
            "yes"
            if r.met
            else (
                "no (bias)"
                if not r.bias_ok and r.coverage_ok
                else "no (coverage)"
                if r.bias_ok
                else "no (both)"
            )
        )
        lines.append(
            f"| {r.term} | {r.truth:+.3f} | {r.mean:+.3f} | {r.bias:+.4f} ± "
            f"{r.bias_mcse:.4f} | {rel} | {r.mean_se:.3f} | {r.sd:.3f} | "
            f"{r.coverage:.3f} ± {r.coverage_mcse:.3f} | {met} |"
        )
    return "\n".join(lines)


# ----------------------------------------------------------------------------- large cohort


def large_check(console: Console, n: int, seeds: list[int]) -> pd.DataFrame:
    """The estimands themselves: the ML models on ``len(seeds)`` cohorts of ``n`` firms (the
    bias-reduced estimates differ from ML by O(1/n), nothing at this size).

    Estimates are averaged over the cohorts, with SE sqrt(mean(SE^2) / K); with n large the
    finite-sample bias is negligible, so ``z`` = (mean - truth) / SE tests the estimand.
    """
    t0 = time.perf_counter()
    rows = []
    for seed in seeds:
        cohort = simulate_cohort(n=n, seed=seed)
        data = analysis_frame(cohort.frame, cohort.truth)
        for hazard, spec in specs(cohort.truth).items():
            for model in ML_MODELS:  # at this N Firth = ML (tests/test_firth_cox.py)
                est, se, _ = fit_one(model, spec, data)
                for lab, kind, tr, e, s in zip(
                    spec.labels, spec.kind, spec.truth, est, se, strict=True
                ):
                    rows.append(
                        {
                            "seed": seed,
                            "hazard": hazard,
                            "model": model,
                            "term": lab,
                            "kind": kind,
                            "truth": tr,
                            "estimate": e,
                            "se": s,
                        }
                    )
        del data, cohort
    k = len(seeds)
    df = (
        pd.DataFrame(rows)
        .groupby(["hazard", "model", "term"], sort=False)
        .agg(
            kind=("kind", "first"),
            truth=("truth", "first"),
            estimate=("estimate", "mean"),
            se=("se", lambda v: float(np.sqrt(np.mean(np.square(v)) / k))),
        )
        .reset_index()
    )
    df["z"] = (df.estimate - df.truth) / df.se
    t = Table(
        title=f"Estimands: {k} cohort(s) of {n:,} firms (seeds {seeds[0]}–{seeds[-1]}), "
        f"{time.perf_counter() - t0:.0f} s",
        title_justify="left",
        pad_edge=False,
    )
    for col in (
        "hazard",
        "term",
        "truth",
        "Cox est ± SE",
        "z",
        "cloglog est ± SE",
        "z",
        "cloglog − Cox",
    ):
        t.add_column(col, justify="left" if col in ("hazard", "term") else "right", no_wrap=True)
    for (hazard, _term), g in df.groupby(["hazard", "term"], sort=False):
        c = g[g.model == "cox"].iloc[0]
        d = g[g.model == "cloglog"].iloc[0]
        t.add_row(
            hazard,
            c.term,
            f"{c.truth:+.3f}",
            f"{c.estimate:+.4f} ± {c.se:.4f}",
            f"{c.z:+.2f}",
            f"{d.estimate:+.4f} ± {d.se:.4f}",
            f"{d.z:+.2f}",
            f"{d.estimate - c.estimate:+.4f}",
        )
    console.print(t)
    worst = df.loc[df.z.abs().idxmax()]
    gap = df[df.model == "cloglog"].estimate.to_numpy() - df[df.model == "cox"].estimate.to_numpy()
    console.print(
        f"largest |mean − truth| / SE: {abs(worst.z):.2f} ({worst.model}, {worst.hazard}, "
        f"{worst.term}) over {len(df)} estimates; largest |cloglog − Cox| "
        f"{np.abs(gap).max():.4f}"
    )
    return df


def diagnose(r: Any, reps: int) -> str:
    """Is a miss chance or systematic?  Bias in MC SEs; coverage against 0.95's MC SE."""
    out = []
    if not r.bias_ok:
        k = abs(r.bias) / r.bias_mcse
        out.append(
            f"bias {r.bias:+.3f} = {k:.1f} MC SE "
            + ("(systematic)" if k > 3 else "(could be chance)" if k < 2 else "(borderline)")
        )
    if not r.coverage_ok:
        k = abs(r.coverage - 0.95) / math.sqrt(0.95 * 0.05 / reps)
        out.append(
            f"coverage {r.coverage:.3f} = {k:.1f} MC SE from 0.95 "
            + ("(systematic)" if k > 3 else "(could be chance)" if k < 2 else "(borderline)")
        )
    return "; ".join(out)


# ----------------------------------------------------------------------------- main


def compare(
    console: Console, hazard: str, tables: dict[str, pd.DataFrame], markdown_out: bool
) -> None:
    """ML and Firth side by side: bias (± MC SE) and coverage of every coefficient row."""
    models = [m for m in MODELS if m in tables]
    first = tables[models[0]]
    t = Table(
        title=f"{hazard.capitalize()} hazard — bias and coverage, ML vs Firth",
        title_justify="left",
        pad_edge=False,
    )
    t.add_column("term", justify="left", no_wrap=True)
    t.add_column("truth", justify="right")
    for m in models:
        t.add_column(f"{SHORT[m]} bias", justify="right", no_wrap=True)
        t.add_column("cov", justify="right")
    md = [
        "| term | truth | " + " | ".join(f"{SHORT[m]}: bias ± MC SE | cov." for m in models) + " |",
        "|---|---|" + "---|---|" * len(models),
    ]
    for i, r in enumerate(first.itertuples()):
        if r.kind != "coef":
            continue
        cells, mcells = [], []
        for m in models:
            x = tables[m].iloc[i]
            b = f"{x.bias:+.4f} ± {x.bias_mcse:.4f}"
            c = f"{x.coverage:.3f}"
            cells += [b if x.bias_ok else f"[red]{b}[/]", c if x.coverage_ok else f"[red]{c}[/]"]
            mcells += [b if x.bias_ok else f"**{b}**", c if x.coverage_ok else f"**{c}**"]
        t.add_row(r.term, f"{r.truth:+.3f}", *cells)
        md.append(f"| {r.term} | {r.truth:+.3f} | " + " | ".join(mcells) + " |")
    console.print(t)
    if markdown_out:
        console.print("\n".join(md), soft_wrap=True, markup=False, highlight=False)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=200, help="number of cohorts (default 200)")
    ap.add_argument("--n", type=int, default=1612, help="firms per cohort (default 1612)")
    ap.add_argument(
        "--first-seed", type=int, default=1, help="seeds first-seed .. first-seed+reps-1"
    )
    ap.add_argument(
        "--workers",
        type=int,
        default=min(os.cpu_count() or 1, 8),
        help="worker processes (default: CPU count, at most 8)",
    )
    ap.add_argument(
        "--no-firth", action="store_true", help="fit the ML models only (no bias-reduced fits)"
    )
    ap.add_argument(
        "--large",
        type=int,
        default=0,
        metavar="N",
        help="also fit the ML models on big cohorts of N firms (e.g. 200000)",
    )
    ap.add_argument(
        "--large-reps",
        type=int,
        default=1,
        metavar="K",
        help="number of big cohorts (seeds 100001 ...; default 1)",
    )
    ap.add_argument("--json", metavar="PATH", help="write the summary tables as JSON")
    ap.add_argument("--markdown", action="store_true", help="also print the tables as markdown")
    a = ap.parse_args(argv)
    if a.reps < 2 or a.n < 100:
        ap.error("need --reps >= 2 and --n >= 100")
    models = ML_MODELS if a.no_firth else MODELS

    console = Console()
    if not console.is_terminal:
        console = Console(width=160)
    seeds = range(a.first_seed, a.first_seed + a.reps)
    simulate_cohort(n=10, seed=0)  # one-off calibration (cached) before forking the workers
    t0 = time.perf_counter()
    results: list[dict[str, Any]] = []
    cols = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("cohorts"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    )
    with Progress(*cols, console=console, transient=False) as bar:
        task = bar.add_task(f"simulate n={a.n:,} + {2 * len(models)} fits", total=a.reps)
        jobs = [(s, a.n, models) for s in seeds]
        if a.workers > 1:
            with ProcessPoolExecutor(a.workers) as pool:
                for r in pool.map(run_cohort, jobs, chunksize=4):
                    results.append(r)
                    bar.advance(task)
        else:
            for job in jobs:
                results.append(run_cohort(job))
                bar.advance(task)
    elapsed = time.perf_counter() - t0

    truth = simulate_cohort(n=10, seed=0).truth
    sp = specs(truth)
    ev = {h: np.array([r["events"][h] for r in results]) for h in HAZARDS}
    console.print(
        f"{a.reps} cohorts of {a.n:,} firms (seeds {seeds[0]}–{seeds[-1]}), {elapsed:.0f} s on "
        f"{a.workers} worker(s), {2 * len(models)} fits per cohort. Events per cohort: failures "
        f"mean {ev['failure'].mean():.1f} (range {ev['failure'].min()}–{ev['failure'].max()}), "
        f"acquisitions mean {ev['acquisition'].mean():.1f} "
        f"(range {ev['acquisition'].min()}–{ev['acquisition'].max()})."
    )
    console.print(
        f"Criteria: |mean − truth| ≤ max(5% × |truth|, 0.02); 95% CI coverage in "
        f"{COVERAGE_BAND[0]:.2f}–{COVERAGE_BAND[1]:.2f} (MC SE at 0.95: "
        f"{math.sqrt(0.95 * 0.05 / a.reps):.3f}). Covariates are per population SD."
    )

    summary: dict[str, Any] = {
        "reps": a.reps,
        "n": a.n,
        "first_seed": a.first_seed,
        "seconds": elapsed,
        "models": list(models),
        "events_mean": {h: float(v.mean()) for h, v in ev.items()},
        "tables": {},
    }
    verdicts = []
    for hazard in HAZARDS:
        tables: dict[str, pd.DataFrame] = {}
        for model in models:
            df, errors = summarise(results, sp[hazard], model)
            tables[model] = df
            render(
                console,
                f"{hazard.capitalize()} hazard — {LABELS[model]} — {int(df.R.iloc[0])} fits",
                df,
            )
            if errors:
                console.print(f"[yellow]{len(errors)} failed fit(s)[/]: " + "; ".join(errors[:3]))
            if a.markdown:
                console.print(markdown(df), soft_wrap=True, markup=False, highlight=False)
            summary["tables"][f"{model}/{hazard}"] = {
                "rows": json.loads(df.to_json(orient="records")),
                "failed_fits": errors,
            }
            for r in df.itertuples():
                verdicts.append(
                    (model, hazard, r.term, r.kind, bool(r.bias_ok), bool(r.coverage_ok))
                )
                if r.kind == "coef" and not r.met:
                    console.print(f"  miss: {r.term}: {diagnose(r, int(r.R))}")
        if len(models) > len(ML_MODELS):
            compare(console, hazard, tables, a.markdown)

    if a.large:
        seeds_large = list(range(100_001, 100_001 + max(a.large_reps, 1)))
        summary["large"] = json.loads(
            large_check(console, a.large, seeds_large).to_json(orient="records")
        )

    summary["verdict"] = {}
    for family, members in FAMILIES.items():
        if not set(members) <= set(models):
            continue
        v = verdict(family, members, verdicts)
        summary["verdict"][family] = v
        console.print(
            f"[bold]{'PASS' if v['passed'] else 'CHECK'}[/] ({family}: "
            f"{' and '.join(SHORT[m] for m in members)}), failure (9 terms) and acquisition "
            f"(3 terms) hazards: mean within tolerance {v['bias_ok']}/{v['coefficients']}, "
            f"coverage in {COVERAGE_BAND[0]:.2f}–{COVERAGE_BAND[1]:.2f} "
            f"{v['coverage_ok']}/{v['coefficients']}"
            + (f" (misses: {'; '.join(v['misses'])})" if v["misses"] else "")
            + f"; industry contrasts (supplementary) both criteria "
            f"{v['industry_met']}/{v['industry']}."
        )
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(summary, fh, indent=1)
    return 0


def verdict(
    family: str, members: tuple[str, ...], verdicts: list[tuple[str, str, str, str, bool, bool]]
) -> dict[str, Any]:
    """The acceptance criterion for one estimator family (all its models, both hazards)."""
    main_v = [v for v in verdicts if v[0] in members and v[3] == "coef"]
    ind_v = [v for v in verdicts if v[0] in members and v[3] == "industry"]
    bias_ok = sum(v[4] for v in main_v)
    cov_ok = sum(v[5] for v in main_v)
    grouped: dict[str, list[str]] = {}
    for m, h, t, _, b, c in main_v:
        if not (b and c):
            why = "bias" if not b and c else "coverage" if b else "bias+coverage"
            grouped.setdefault(f"{h} {t} ({why})", []).append(SHORT[m])
    misses = [f"{k}: {' and '.join(v)}" for k, v in grouped.items()]
    return {
        "family": family,
        "models": list(members),
        "coefficients": len(main_v),
        "bias_ok": bias_ok,
        "coverage_ok": cov_ok,
        "misses": misses,
        "industry_met": sum(v[4] and v[5] for v in ind_v),
        "industry": len(ind_v),
        "passed": bias_ok == len(main_v) and cov_ok == len(main_v),
    }


if __name__ == "__main__":
    raise SystemExit(main())
