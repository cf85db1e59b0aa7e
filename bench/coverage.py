"""Coverage of the 95% CIs of the average marginal effect (AME) of export ratio on survival.

Acceptance point of the effects issue: over 500 simulated cohorts, the 95% confidence
intervals (delta method and bootstrap) of the AME of export ratio on P(survive the 5-year
window) cover the *true* AME between 0.93 and 0.97.

The truth
---------
The synthetic cohort (``smesurvival.data.synthetic``, ``docs/synthetic.md``) draws exits from
three cause-specific, piecewise-constant hazards sharing the yearly shape s_j, so the
probability of surviving the window is, in closed form,

    S(x) = exp(-Y (lam_f r_f(x) + lam_a r_a(x) + lam_o)),   Y = sum_j s_j (= 5),

with r_f = exp(eta_f), r_a = exp(eta_a) the simulator's risk scores.  Export ratio x enters
only the failure index, through its population z-score z_x = (x - mu_x) / sigma_x in the main
term and in the three interactions, so

    dS/dx = -S Y lam_f r_f (b_x + b_xr z_r + b_xi z_i + b_xa z_a) / sigma_x.

The true AME is the population mean of dS/dx.  It is computed on ``--pop`` firms (default
2,000,000) drawn by the simulator's own ``_draw`` with its population constants; ``r_f``,
``r_a``, ``lam`` come from the simulator's ``_risk_scores`` and ``_calibrate`` (imported,
read-only).  The closed form is checked against a central difference of S through
``_risk_scores`` (z_x moved by +-h / sigma_x, which also moves the interaction columns), and
the Monte-Carlo SE of the truth is sd(dS/dx) / sqrt(pop).

The projection (what the logit estimates)
-----------------------------------------
The study's logit (the full model of the ``lee2012`` spec: controls, four centred measures and
three export interactions) is misspecified relative to the hazard model, so its AME converges
to the AME of the best-fitting logit, not to the truth.  That limit is computed without
outcome noise: the same logit fitted to the whole population with each firm entered twice,
survived = 1 with frequency weight S(x) and survived = 0 with weight 1 - S(x) (the population
Kullback-Leibler projection), then its AME over the population.  Bias of the estimates =
(projection - truth) [misspecification] + (mean estimate - projection) [finite sample].

Per cohort (seeds ``--seed`` .. ``--seed + reps - 1``, ``--n`` firms)
--------------------------------------------------------------------
``simulate_cohort`` -> ``build_measures`` -> centre the spec's ``center`` measures at the
cohort means (as ``study/run.py``) -> ``fit`` -> ``avg_slopes(fit, data, "export_ratio")``
(estimate, delta-method SE and Wald CI) -> ``bootstrap`` (pairs, ``--boot`` replicates, seed
derived from the cohort seed) of the same AME averaged over each replicate's resampled rows
(vectorised statistic: mean_w of p(1 - p) (dX/dx) b, exact for this design), with percentile
and BCa intervals (BCa acceleration from the one-step delete-one jackknife; ``--jackknife
exact`` for exact refits, ``none`` to skip BCa).  The sample truth (mean dS/dx over the
cohort's own firms, rebuilt by re-running ``_draw`` with the cohort seed) is recorded too.

Coverage has Monte-Carlo SE sqrt(p (1 - p) / reps) (0.0097 at 500 reps for p = 0.95).
Deterministic for given arguments (any ``--workers``).

    python bench/coverage.py [--reps 500] [--n 1612] [--boot 1000] [--seed 1] [--workers 2]
                             [--pop 2000000] [--jackknife onestep] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
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
from scipy import special

from smesurvival.data import ColumnMap, MeasureOptions, build_measures
from smesurvival.data.synthetic import (
    TERMS,
    CohortParams,
    _calibrate,
    _draw,
    _risk_scores,
    simulate_cohort,
)
from smesurvival.inference.bootstrap import bootstrap
from smesurvival.inference.effects import avg_slopes
from smesurvival.models.fit import fit
from smesurvival.study import load_spec

FOCAL = "export_ratio"
LEVEL = 0.95
TARGET = (0.93, 0.97)
POP_SEED = 20_240_501  # population used for the truth and the projection
POP_BLOCK = 500_000  # firms per block when drawing the population


# ----------------------------------------------------------------------------- the truth

def _survival(c: dict[str, Any], p: CohortParams) -> np.ndarray:
    """P(no exit of any type in the window | covariates) under the simulator's true model."""
    cal = _calibrate(p)
    rf, ra = _risk_scores(c, p)
    lam_f, lam_a, lam_o = cal.rates
    return np.exp(-float(sum(p.baseline_shape)) * (lam_f * rf + lam_a * ra + lam_o))


def true_slopes(c: dict[str, Any], p: CohortParams) -> tuple[np.ndarray, np.ndarray, float]:
    """Per-firm S(x) and dS/dx (closed form), and the max gap to a central difference."""
    cal = _calibrate(p)
    sd_x = cal.consts[FOCAL + ".sd"]
    z = c["z"]
    coef = dict(zip(TERMS, p.failure_coefs, strict=True))
    # d eta_f / d x: the main term and every export interaction, per unit of x
    deta = np.full(z[FOCAL].shape, coef[FOCAL])
    for t, b in coef.items():
        parts = t.split(":")
        if len(parts) == 2 and FOCAL in parts and b != 0.0:
            other = parts[1] if parts[0] == FOCAL else parts[0]
            deta = deta + b * z[other]
    deta = deta / sd_x
    s = _survival(c, p)
    rf, _ = _risk_scores(c, p)
    lam_f = cal.rates[0]
    slope = -s * float(sum(p.baseline_shape)) * lam_f * rf * deta
    # check through the simulator's own risk scores (moves the interaction columns too)
    h = 1e-5
    z0 = z[FOCAL]
    try:
        z[FOCAL] = z0 + h / sd_x
        up = _survival(c, p)
        z[FOCAL] = z0 - h / sd_x
        down = _survival(c, p)
    finally:
        z[FOCAL] = z0
    gap = float(np.max(np.abs((up - down) / (2 * h) - slope)))
    return s, slope, gap


def cohort_covariates(n: int, seed: int, p: CohortParams) -> dict[str, Any]:
    """The covariates ``simulate_cohort(n, seed)`` draws: ``_draw`` is its first use of the rng."""
    return _draw(n, np.random.default_rng(seed), p, dict(_calibrate(p).consts), fit=False)


@dataclass(frozen=True)
class Truth:
    ame: float  # population mean of dS/dx
    ame_mcse: float
    slope_sd: float  # SD of dS/dx over firms
    survival: float  # population mean of S(x)
    difference_gap: float  # max |closed form - central difference|
    projection: float  # AME of the population logit projection
    projection_mcse: float  # delta-method SE of the projection's AME (population sampling only)
    pop: int
    seconds: float


def compute_truth(pop: int, p: CohortParams, formula: str, center: tuple[str, ...]) -> Truth:
    """The true AME and the logit's projection AME on ``pop`` simulated firms."""
    t0 = time.perf_counter()
    cohort = simulate_cohort(pop, POP_SEED, p)
    c = cohort_covariates(pop, POP_SEED, p)
    if not np.array_equal(c["employees"], cohort.frame["employees"].to_numpy()):
        raise RuntimeError("re-drawn covariates differ from simulate_cohort's")
    s, slope, gap = true_slopes(c, p)
    del c
    frame = build_measures(cohort.frame, ColumnMap.default(), MeasureOptions()).frame
    if len(frame) != pop:
        raise RuntimeError("build_measures dropped rows of the population")
    data = _centre(frame, center)
    # population KL projection: each firm twice, survived 1 w.p. weight S, 0 w.p. 1 - S
    two = pd.concat([data.assign(survived=1, _w=s), data.assign(survived=0, _w=1.0 - s)],
                    ignore_index=True)
    proj = fit(formula, two, weights="_w")
    eff = avg_slopes(proj, data, FOCAL).frame.iloc[0]
    return Truth(float(slope.mean()), float(slope.std(ddof=1) / math.sqrt(pop)),
                 float(slope.std(ddof=1)), float(s.mean()), gap, float(eff["estimate"]),
                 float(eff["std_error"]), pop, time.perf_counter() - t0)


# ----------------------------------------------------------------------------- one cohort

def _centre(frame: pd.DataFrame, center: tuple[str, ...]) -> pd.DataFrame:
    data = frame.copy()
    for v in center:
        data[v] = data[v] - data[v].mean()
    return data


@dataclass(frozen=True)
class Rep:
    seed: int
    estimate: float = math.nan
    se_delta: float = math.nan
    delta_low: float = math.nan
    delta_high: float = math.nan
    se_boot: float = math.nan
    pct_low: float = math.nan
    pct_high: float = math.nan
    bca_low: float = math.nan
    bca_high: float = math.nan
    boot_failed: int = 0
    stat_gap: float = math.nan  # |bootstrap statistic at the estimate - avg_slopes estimate|
    sample_truth: float = math.nan  # mean dS/dx over the cohort's own firms
    survival: float = math.nan
    error: str = ""


def boot_seed(base: int, cohort_seed: int) -> int:
    """The bootstrap seed of a cohort: independent of the cohort's own stream."""
    return int(np.random.SeedSequence([base, cohort_seed, 7]).generate_state(1)[0])


def one_cohort(args: tuple[int, int, int, str, tuple[str, ...], str, int]) -> Rep:
    """Simulate, fit, AME with delta-method CI, pairs bootstrap CIs, sample truth."""
    seed, n, B, formula, center, jackknife, base = args
    p = CohortParams()
    cohort = simulate_cohort(n, seed, p)
    _, slope, _ = true_slopes(cohort_covariates(n, seed, p), p)
    frame = build_measures(cohort.frame, ColumnMap.default(), MeasureOptions()).frame
    survival = float(frame["survived"].mean())
    try:
        data = _centre(frame, center)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = fit(formula, data)
            eff = avg_slopes(res, data, FOCAL).frame.iloc[0]
        X = res.design_matrix(data)
        x = data[FOCAL].to_numpy(dtype=float)
        h = 1e-3 * float(np.std(x))
        # dX/dx: exact for columns linear in x (x and x:z), as this formula's are
        D = (res.design_matrix(data.assign(**{FOCAL: x + h}))
             - res.design_matrix(data.assign(**{FOCAL: x - h}))) / (2 * h)

        def ame(params: np.ndarray, weights: np.ndarray) -> np.ndarray:
            prob = special.expit(params @ X.T)
            slopes = prob * (1.0 - prob) * (params @ D.T)
            return ((weights * slopes).sum(axis=1) / weights.sum(axis=1))[:, None]

        bs = bootstrap(ame, res, data, B=B, seed=boot_seed(base, seed), vectorized=True,
                       jackknife=jackknife, n_threads=1, progress=False)  # type: ignore[arg-type]
        pct = bs.ci(LEVEL, "percentile")[0]
        bca = bs.ci(LEVEL, "bca")[0] if jackknife != "none" else (math.nan, math.nan)
        return Rep(seed, float(eff["estimate"]), float(eff["std_error"]), float(eff["conf_low"]),
                   float(eff["conf_high"]), float(bs.se[0]), float(pct[0]), float(pct[1]),
                   float(bca[0]), float(bca[1]), bs.n_failed,
                   abs(float(bs.estimate[0]) - float(eff["estimate"])), float(slope.mean()),
                   survival)
    except Exception as exc:  # a failed cohort is counted and reported, not hidden
        return Rep(seed, sample_truth=float(slope.mean()), survival=survival,
                   error=f"{type(exc).__name__}: {exc}")


# ----------------------------------------------------------------------------- summary

def _coverage(low: np.ndarray, high: np.ndarray, value: float | np.ndarray) -> tuple[float, float, int]:
    ok = np.isfinite(low) & np.isfinite(high)
    hit = (low[ok] <= (value[ok] if isinstance(value, np.ndarray) else value)) & (
        (value[ok] if isinstance(value, np.ndarray) else value) <= high[ok])
    m = int(ok.sum())
    cov = float(hit.mean()) if m else math.nan
    return cov, math.sqrt(cov * (1 - cov) / m) if m else math.nan, m


def summarise(reps: list[Rep], truth: Truth) -> dict[str, Any]:
    df = pd.DataFrame([asdict(r) for r in reps])
    good = df[df["error"] == ""]
    est = good["estimate"].to_numpy()
    R = len(good)
    out: dict[str, Any] = {
        "reps": len(df), "failed_cohorts": int((df["error"] != "").sum()),
        "errors": sorted(set(df.loc[df["error"] != "", "error"])),
        "truth": asdict(truth),
        "mean_estimate": float(est.mean()), "mean_estimate_mcse": float(est.std(ddof=1) / math.sqrt(R)),
        "bias": float(est.mean() - truth.ame),
        "bias_misspecification": truth.projection - truth.ame,
        "bias_finite_sample": float(est.mean() - truth.projection),
        "sd_estimates": float(est.std(ddof=1)),
        "mean_se_delta": float(good["se_delta"].mean()),
        "mean_se_boot": float(good["se_boot"].mean()),
        "rmse": float(np.sqrt(np.mean((est - truth.ame) ** 2))),
        "mean_survival": float(df["survival"].mean()),
        "sd_sample_truth": float(df["sample_truth"].std(ddof=1)),
        "boot_failed_mean": float(good["boot_failed"].mean()),
        "boot_failed_max": int(good["boot_failed"].max()),
        "stat_gap_max": float(good["stat_gap"].max()),
        "coverage": {},
    }
    st = good["sample_truth"].to_numpy()
    for name, lo, hi in (("delta", "delta_low", "delta_high"), ("percentile", "pct_low", "pct_high"),
                         ("bca", "bca_low", "bca_high")):
        low, high = good[lo].to_numpy(), good[hi].to_numpy()
        if not np.isfinite(low).any():
            continue
        cov, se, m = _coverage(low, high, truth.ame)
        below = float(np.mean(high[np.isfinite(high)] < truth.ame))
        above = float(np.mean(low[np.isfinite(low)] > truth.ame))
        out["coverage"][name] = {
            "coverage": cov, "mcse": se, "n": m, "within": TARGET[0] <= cov <= TARGET[1],
            "miss_below": below, "miss_above": above,
            "mean_width": float(np.nanmean(high - low)),
            "coverage_projection": _coverage(low, high, truth.projection)[0],
            "coverage_sample_truth": _coverage(low, high, st)[0],
        }
    return out


def report(s: dict[str, Any], console: Console, args: argparse.Namespace, seconds: float) -> None:
    t = s["truth"]
    console.print(f"\n[bold]AME of export ratio on P(survive 5 years)[/bold]: {s['reps']} cohorts of "
                  f"{args.n} firms (seeds {args.seed}..{args.seed + args.reps - 1}), B = {args.boot} "
                  f"pairs bootstrap replicates, BCa jackknife {args.jackknife}")
    tab = Table(show_header=True, header_style="bold")
    tab.add_column("quantity")
    tab.add_column("value", justify="right")
    tab.add_column("note")
    tab.add_row("true AME", f"{t['ame']:.5f}", f"MC SE {t['ame_mcse']:.5f} ({t['pop']:,} firms; "
                f"closed form vs difference {t['difference_gap']:.1e})")
    tab.add_row("logit projection AME", f"{t['projection']:.5f}",
                f"population logit fit; SE {t['projection_mcse']:.5f}")
    tab.add_row("mean estimate", f"{s['mean_estimate']:.5f}", f"MC SE {s['mean_estimate_mcse']:.5f}")
    tab.add_row("bias (mean - truth)", f"{s['bias']:+.5f}",
                f"{100 * s['bias'] / t['ame']:+.1f}% = misspecification "
                f"{s['bias_misspecification']:+.5f} + finite sample {s['bias_finite_sample']:+.5f}")
    tab.add_row("SD of estimates", f"{s['sd_estimates']:.5f}", f"RMSE {s['rmse']:.5f}")
    tab.add_row("mean SE delta", f"{s['mean_se_delta']:.5f}",
                f"ratio to SD {s['mean_se_delta'] / s['sd_estimates']:.3f}")
    tab.add_row("mean SE bootstrap", f"{s['mean_se_boot']:.5f}",
                f"ratio to SD {s['mean_se_boot'] / s['sd_estimates']:.3f}")
    tab.add_row("bias / SD", f"{s['bias'] / s['sd_estimates']:+.3f}", "")
    tab.add_row("SD of sample truth", f"{s['sd_sample_truth']:.5f}",
                "cohort-to-cohort spread of the true AME over each cohort's firms")
    tab.add_row("bootstrap failures", f"{s['boot_failed_mean']:.1f}",
                f"mean per cohort (max {s['boot_failed_max']}); separated refits excluded")
    tab.add_row("failed cohorts", str(s["failed_cohorts"]), "; ".join(s["errors"])[:60])
    console.print(tab)
    cov = Table(show_header=True, header_style="bold",
                title=f"95% CI coverage of the true AME (target {TARGET[0]}-{TARGET[1]})")
    for col in ("CI", "coverage", "MC SE", "within", "miss low/high", "mean width",
                "cov. of projection", "cov. of sample truth"):
        cov.add_column(col, justify="right" if col != "CI" else "left")
    names = {"delta": "delta method", "percentile": "bootstrap percentile", "bca": "bootstrap BCa"}
    for k, c in s["coverage"].items():
        cov.add_row(names[k], f"{c['coverage']:.3f}", f"{c['mcse']:.4f}",
                    "[green]yes[/green]" if c["within"] else "[red]no[/red]",
                    f"{c['miss_below']:.3f}/{c['miss_above']:.3f}", f"{c['mean_width']:.4f}",
                    f"{c['coverage_projection']:.3f}", f"{c['coverage_sample_truth']:.3f}")
    console.print(cov)
    console.print("[dim]miss low: CI entirely below the truth; miss high: entirely above. "
                  f"Truth + projection {t['seconds']:.0f} s; cohorts {seconds:.0f} s.[/dim]")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=500)
    ap.add_argument("--n", type=int, default=1612)
    ap.add_argument("--boot", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1, help="first cohort seed")
    ap.add_argument("--boot-seed", type=int, default=2012, help="base of the bootstrap seeds")
    ap.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--pop", type=int, default=2_000_000)
    ap.add_argument("--jackknife", choices=("onestep", "exact", "none"), default="onestep")
    ap.add_argument("--json", default=None, help="write the per-cohort results and summary here")
    args = ap.parse_args()
    console = Console()
    if console.width < 120:  # keep the tables readable when piped or in a narrow terminal
        console = Console(width=120)
    spec = load_spec("lee2012")
    formula = spec.formula(spec.steps[-1])
    center = tuple(spec.center)
    p = CohortParams()
    with console.status(f"truth and logit projection on {args.pop:,} firms"):
        truth = compute_truth(args.pop, p, formula, center)
    console.print(f"true AME {truth.ame:.5f} (MC SE {truth.ame_mcse:.5f}); logit projection "
                  f"{truth.projection:.5f}; {truth.seconds:.0f} s")
    jobs = [(args.seed + i, args.n, args.boot, formula, center, args.jackknife, args.boot_seed)
            for i in range(args.reps)]
    t0 = time.perf_counter()
    reps: list[Rep] = []
    cols = (TextColumn("[progress.description]{task.description}"), BarColumn(),
            MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*cols, console=console) as bar:
        task = bar.add_task("cohorts", total=args.reps)
        if args.workers > 1:
            with ProcessPoolExecutor(args.workers) as pool:
                for r in pool.map(one_cohort, jobs, chunksize=4):
                    reps.append(r)
                    bar.advance(task)
        else:
            for job in jobs:
                reps.append(one_cohort(job))
                bar.advance(task)
    seconds = time.perf_counter() - t0
    summary = summarise(reps, truth)
    report(summary, console, args, seconds)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"args": vars(args), "summary": summary,
                       "cohorts": [asdict(r) for r in reps]}, fh, indent=1)


if __name__ == "__main__":
    main()
