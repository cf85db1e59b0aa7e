"""The in-memory discrete-time logit at register scale: smesurvival against glum, same run.

Issue 5's goal: 10 M firm-years x 20 design columns, a discrete-time logit (a logit on the
firm-year rows) fitted in memory,

* at least 2x faster than glum at the same tolerance (coefficients agree to 1e-8),
* peak resident memory at most 1.3x the design matrix,
* each IRLS iteration within 2x the time of one X'X product on the same matrix (the compute
  floor of a Gram-matrix Newton step), measured in the same run.

Data: a synthetic firm-year panel written straight into one float64 design matrix (no data
frame), firm by firm, by :func:`generate` (documented there): 20 columns = intercept, 9 year
dummies (2013-2021; 2012 the reference), log firm age, log employees, export ratio, R&D
intensity, R&D alliance, the two export interactions, profitability, leverage and a
manufacturing dummy; the outcome is the exit indicator of the firm-year, drawn from a known
logit hazard. Each firm contributes its years until exit or 2021, so rows come grouped by
firm, as a register extract does. Deterministic in ``--seed``, chunk by chunk.

Each measurement runs in its own subprocess (so peak RSS, from ``getrusage`` in the child,
does not mix between tools), which first generates the data (the design matrix is part of
every peak):

* ``data``: generation only -- the floor every tool's peak starts from;
* ``smesurvival``: :func:`smesurvival.models.fit.fit_arrays` (rank check, Newton to
  ``tol=1e-8`` on the coefficient steps, classical covariance, null model, diagnostics; its
  passes over X are counted); then, in the same process on the same matrix, one kernel pass
  at the estimate (the cost of one IRLS iteration: the p x p solve is negligible) with the
  default threads and with one thread, and one X'X (numpy's ``X.T @ X`` and
  ``np.dot(X.T, X)``, BLAS threads as configured; the faster), each best of 3, in wall-clock
  and CPU time;
* ``glum``: ``GeneralizedLinearRegressor(family="binomial", alpha=0, fit_intercept=False,
  gradient_tol=...)`` on the same matrix (its intercept is the matrix's column of ones),
  solver ``auto`` (IRLS with a line search). ``gradient_tol`` (glum's criterion is the largest
  gradient component of its mean deviance) is tightened until its coefficients agree with
  smesurvival's to 1e-8; the run prints the max abs difference.

Every subprocess is run ``--repeat`` times, interleaved; times are best-of, peaks the largest.
The machine may be shared: take the ratios from a quiet moment, or raise ``--repeat``.

statsmodels' GLM is not run: at 10 M x 20 it ran out of memory (17.8 GB peak, no result) and
would take a shared machine with it.

Install: ``pip install -e ".[bench]"`` (glum comes with the bench extra); without glum the
glum rows are skipped with a message.

    python bench/scale.py [--rows 10000000] [--cols 20] [--seed 1] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from typing import Any

import numpy as np

#: the goals of issue 5 for the in-memory fit.
GOAL_SPEEDUP = 2.0  # glum time / smesurvival time, at least
GOAL_RSS = 1.3  # peak RSS / design matrix bytes, at most
GOAL_ITER = 2.0  # IRLS iteration time / X'X time, at most
COEF_TOL = 1e-8

YEARS = tuple(range(2012, 2022))  # 2012 is the reference year
BASE_TERMS = (
    "log_firm_age", "log_employees", "export_ratio", "rd_intensity", "rd_alliance",
    "export_ratio:rd_intensity", "export_ratio:rd_alliance", "profitability", "leverage",
    "manufacturing",
)
#: true log-odds of exit per firm-year (per unit of each column).
TRUE_BETA = {
    "Intercept": -2.2, "log_firm_age": -0.35, "log_employees": -0.25, "export_ratio": -0.6,
    "rd_intensity": 0.8, "rd_alliance": -0.3, "export_ratio:rd_intensity": -2.5,
    "export_ratio:rd_alliance": 0.05, "profitability": -1.2, "leverage": 0.6,
    "manufacturing": 0.1,
}
YEAR_EFFECT = 0.04  # year dummy y: +0.04 * (y - 2012) - 0.2 * (y in 2020, 2021) (a cycle)
FIRMS_PER_CHUNK = 20_000
KINDS = ("data", "smesurvival", "glum", "glum-intercept")


def terms_for(cols: int) -> tuple[str, ...]:
    """Intercept, the year dummies, then as many covariates as ``cols`` leaves room for."""
    years = tuple(f"year[{y}]" for y in YEARS[1:])
    base = ("Intercept", *years, *BASE_TERMS)
    if cols <= len(base):
        return base[:cols]
    return base + tuple(f"noise{j}" for j in range(cols - len(base)))


def generate(
    rows: int, cols: int, seed: int, intercept: bool = True,
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """A firm-year panel of ``rows`` rows as a (rows, cols) float64 design and a 0/1 exit.

    Firms are drawn in chunks of 20,000 with ``np.random.default_rng([seed, chunk])``. A firm
    enters in 2012 (half of them: incumbents) or a later year, at age a0 ~ 1 + lognormal
    (log 8, 0.7) years, and is followed until it exits or 2021. Firm traits: log employees
    ~ N(2.8, 1.0) drifting by N(0.02, 0.15) a year; export ratio 0 for 55% of firms, else
    Beta(2, 3); R&D intensity lognormal (median 0.02, capped at 1); an R&D alliance with
    probability 0.2; manufacturing with probability 0.8; profitability ~ N(0.05, 0.1) and
    leverage ~ N(0.5, 0.2) each year. The exit hazard of a firm-year is the logit of
    ``TRUE_BETA`` and the year effects; rows after an exit are not generated. Columns beyond
    the 20 named ones are N(0, 1) noise. The last firm is cut at ``rows``. With
    ``intercept=False`` the column of ones is left out (cols - 1 columns, same data).
    """
    terms = tuple(t for t in terms_for(cols) if intercept or t != "Intercept")
    X = np.empty((rows, len(terms)))
    y = np.empty(rows)
    pos, chunk = 0, 0
    n_years = len(YEARS)
    t_idx = np.arange(n_years)
    while pos < rows:
        rng = np.random.default_rng([seed, chunk])
        F = FIRMS_PER_CHUNK
        entry = np.where(rng.random(F) < 0.5, 0, rng.integers(1, n_years, F))
        age0 = 1.0 + rng.lognormal(np.log(8.0), 0.7, F)
        emp0 = rng.normal(2.8, 1.0, F)
        export = np.where(rng.random(F) < 0.55, 0.0, rng.beta(2.0, 3.0, F))
        rd = np.minimum(rng.lognormal(np.log(0.02), 1.0, F), 1.0)
        alliance = (rng.random(F) < 0.2).astype(float)
        manuf = (rng.random(F) < 0.8).astype(float)
        # (F, years) grids: year index of each firm-year, and whether it is observed
        year_i = entry[:, None] + t_idx[None, :]
        observed = year_i < n_years
        year_i = np.minimum(year_i, n_years - 1)
        log_age = np.log(age0[:, None] + t_idx[None, :])
        log_emp = emp0[:, None] + np.cumsum(rng.normal(0.02, 0.15, (F, n_years)), axis=1)
        profit = rng.normal(0.05, 0.1, (F, n_years))
        lever = rng.normal(0.5, 0.2, (F, n_years))
        b = TRUE_BETA
        year = np.asarray(YEARS)[year_i]
        eta = (b["Intercept"] + YEAR_EFFECT * (year - 2012) - 0.2 * (year >= 2020)
               + b["log_firm_age"] * log_age + b["log_employees"] * log_emp
               + (b["export_ratio"] * export + b["rd_intensity"] * rd
                  + b["rd_alliance"] * alliance + b["export_ratio:rd_intensity"] * export * rd
                  + b["export_ratio:rd_alliance"] * export * alliance
                  + b["manufacturing"] * manuf)[:, None]
               + b["profitability"] * profit + b["leverage"] * lever)
        exit_ = (rng.random((F, n_years)) < 1.0 / (1.0 + np.exp(-eta))) & observed
        # a firm's rows: observed years up to and including its first exit
        exited_before = np.cumsum(exit_, axis=1) - exit_ > 0
        keep = observed & ~exited_before
        k = int(keep.sum())
        take = min(k, rows - pos)
        sl = slice(pos, pos + take)
        frow = np.broadcast_to(np.arange(F)[:, None], keep.shape)[keep][:take]
        per_firm = {
            "export_ratio": export, "rd_intensity": rd, "rd_alliance": alliance,
            "export_ratio:rd_intensity": export * rd,
            "export_ratio:rd_alliance": export * alliance, "manufacturing": manuf,
        }
        per_year = {"log_firm_age": log_age, "log_employees": log_emp,
                    "profitability": profit, "leverage": lever}
        yi = year_i[keep][:take]
        noise_rng = np.random.default_rng([seed, chunk, 1])
        for j, t in enumerate(terms):
            col = X[sl, j]
            if t == "Intercept":
                col[:] = 1.0
            elif t.startswith("year["):
                col[:] = yi == YEARS.index(int(t[5:-1]))
            elif t in per_firm:
                col[:] = per_firm[t][frow]
            elif t in per_year:
                col[:] = per_year[t][keep][:take]
            else:
                col[:] = noise_rng.standard_normal(take)
        y[sl] = exit_[keep][:take]
        pos += take
        chunk += 1
    return X, y, terms


def peak_rss_bytes() -> int:
    """Peak resident set size of this process (Linux reports ru_maxrss in KiB)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def best_of(fn: Any, k: int = 3) -> tuple[float, float]:
    """Best wall-clock and best CPU time (all threads of the process) of ``k`` calls."""
    wall, cpu = np.inf, np.inf
    for _ in range(k):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall, cpu = min(wall, time.perf_counter() - t0), min(cpu, time.process_time() - c0)
    return float(wall), float(cpu)


# ------------------------------------------------------------------------- the subprocesses


def child(kind: str, rows: int, cols: int, seed: int, glum_tol: float) -> dict[str, Any]:
    t0 = time.perf_counter()
    X, y, terms = generate(rows, cols, seed, intercept=kind != "glum-intercept")
    out: dict[str, Any] = {"kind": kind, "gen_s": time.perf_counter() - t0,
                           "design_bytes": X.nbytes, "events": float(y.sum())}
    if kind == "smesurvival":
        from smesurvival.models import glm
        from smesurvival.models.families import FAMILIES
        from smesurvival.models.fit import fit_arrays
        from smesurvival.models.kernels import glm_partial_sums

        passes = []

        def counted(*a: Any, **k: Any) -> Any:  # counts the fit's passes over X
            passes.append(1)
            return glm_partial_sums(*a, **k)

        glm.glm_partial_sums = counted  # type: ignore[assignment]
        (out["fit_s"], out["fit_cpu"]), res = timed(
            lambda: fit_arrays(X, y, model="logit", terms=terms, tol=1e-8))
        glm.glm_partial_sums = glm_partial_sums  # type: ignore[assignment]
        out["passes"] = len(passes)
        out["rss_fit"] = peak_rss_bytes()
        out["params"] = res.params.tolist()
        out["iterations"] = res.iterations
        out["converged"] = res.converged
        fam = FAMILIES["logit"]
        out["pass_s"], out["pass_cpu"] = best_of(
            lambda: glm_partial_sums(X, y, res.params, fam))
        out["pass1_s"], out["pass1_cpu"] = best_of(
            lambda: glm_partial_sums(X, y, res.params, fam, threads=1))
        # the floor: numpy's X'X (syrk) both ways of writing it, the faster of the two
        xtx = [best_of(lambda: X.T @ X), best_of(lambda: np.dot(X.T, X))]
        out["xtx_s"], out["xtx_cpu"] = min(xtx)
    elif kind.startswith("glum"):
        from glum import GeneralizedLinearRegressor

        icpt = kind == "glum-intercept"
        model = GeneralizedLinearRegressor(
            family="binomial", alpha=0, fit_intercept=icpt, gradient_tol=glum_tol,
            max_iter=200, copy_X=False,
        )
        (out["fit_s"], out["fit_cpu"]), _ = timed(lambda: model.fit(X, y))
        out["rss_fit"] = peak_rss_bytes()
        coef = np.asarray(model.coef_)
        out["params"] = (np.r_[model.intercept_, coef] if icpt else coef).tolist()
        out["iterations"] = int(getattr(model, "n_iter_", -1))
        out["converged"] = True
    out["rss"] = peak_rss_bytes()
    return out


def timed(fn: Any) -> tuple[tuple[float, float], Any]:
    t0, c0 = time.perf_counter(), time.process_time()
    res = fn()
    return (time.perf_counter() - t0, time.process_time() - c0), res


def run_child(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", kind, "--rows", str(args.rows), "--cols",
           str(args.cols), "--seed", str(args.seed), "--glum-tol", str(args.glum_tol)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-3:]
        return {"kind": kind, "error": " | ".join(tail) or f"exit status {proc.returncode}"}
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


# ------------------------------------------------------------------------------- the report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--cols", type=int, default=20)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--glum-tol", type=float, default=1e-8,
                    help="glum's gradient_tol (largest gradient component of its mean deviance)")
    ap.add_argument("--no-glum", action="store_true")
    ap.add_argument("--child", choices=KINDS, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.cols < 2:
        ap.error("--cols must be at least 2")
    if args.child:
        print(json.dumps(child(args.child, args.rows, args.cols, args.seed, args.glum_tol)))
        return 0

    from rich.console import Console
    from rich.table import Table

    console = Console()
    kinds = ["data", "smesurvival"]
    if not args.no_glum:
        try:
            import glum  # noqa: F401
        except ImportError:
            console.print("[yellow]glum is not installed (pip install glum, or the bench "
                          "extra): its rows are skipped[/yellow]")
        else:
            kinds += ["glum", "glum-intercept"]
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
    for r in range(args.repeat):
        for k in kinds:
            out = run_child(k, args)
            if "error" in out:
                console.print(f"[red]{k} failed:[/red] {out['error']}")
                return 1
            runs[k].append(out)
            console.print(f"round {r + 1}/{args.repeat} {k}: "
                          + (f"fit {out['fit_s']:.2f} s (cpu {out['fit_cpu']:.2f} s), "
                             if "fit_s" in out else "")
                          + f"peak {out['rss'] / 2**30:.2f} GiB")
    report(console, Table, runs, args)
    return 0


def report(console: Any, Table: Any, runs: dict[str, list[dict[str, Any]]],
           args: argparse.Namespace) -> None:
    """The results table and the goal ratios (times best-of, peaks the largest)."""

    def best(k: str, key: str) -> float:
        return min(float(o[key]) for o in runs[k])

    def peak(k: str) -> float:
        return max(float(o["rss"]) for o in runs[k])

    sme = runs["smesurvival"][0]
    beta = np.asarray(sme["params"])
    design = float(sme["design_bytes"])
    diffs = {k: float(np.max(np.abs(np.asarray(runs[k][0]["params"]) - beta)))
             for k in runs if k.startswith("glum")}
    table = Table(title=f"{args.rows:,} firm-years x {args.cols} columns, design "
                        f"{design / 2**30:.2f} GiB; times best of {args.repeat}, largest peak")
    for c in ("", "fit s", "CPU s", "iter", "peak GiB", "peak/X", "max|dcoef|"):
        table.add_column(c, justify="right" if c else "left")
    table.add_row("data only", "", "", "", f"{peak('data') / 2**30:.2f}",
                  f"{peak('data') / design:.2f}", "")
    labels = {"smesurvival": "smesurvival", "glum": "glum (1s column)",
              "glum-intercept": "glum (fit_intercept)"}
    for k in runs:
        if k == "data":
            continue
        table.add_row(labels[k], f"{best(k, 'fit_s'):.2f}", f"{best(k, 'fit_cpu'):.2f}",
                      str(runs[k][0]["iterations"]), f"{peak(k) / 2**30:.2f}",
                      f"{peak(k) / design:.2f}", f"{diffs[k]:.1e}" if k in diffs else "")
    console.print(table)
    console.print(f"smesurvival: fit_arrays(tol=1e-8); glum: GeneralizedLinearRegressor(family="
                  f"'binomial', alpha=0, gradient_tol={args.glum_tol:g}), on the same matrix "
                  "(with its column of ones) or, fit_intercept=True, on the matrix without it. "
                  "max|dcoef|: against smesurvival's coefficients.")

    goals = Table(title="Goals of issue 5, ratios measured in this run")
    for c in ("measure", "value", "goal", "met"):
        goals.add_column(c, justify="left" if c == "measure" else "right")

    def verdict(ok: bool) -> str:
        return "[green]yes[/green]" if ok else "[red]no[/red]"

    ok_glum = [k for k in diffs if diffs[k] <= COEF_TOL]
    if diffs and ok_glum:
        g = min(ok_glum, key=lambda k: best(k, "fit_s"))
        speed = best(g, "fit_s") / best("smesurvival", "fit_s")
        goals.add_row(f"speed: {g} / smesurvival (faster glum within 1e-8)",
                      f"{speed:.3f}x", f">= {GOAL_SPEEDUP:g}x", verdict(speed >= GOAL_SPEEDUP))
        goals.add_row("  same, in CPU time", f"{best(g, 'fit_cpu') / best('smesurvival', 'fit_cpu'):.2f}x",
                      "", "")
    for k, d in diffs.items():
        goals.add_row(f"coefficients: max|dcoef| vs {k}", f"{d:.1e}", f"<= {COEF_TOL:g}",
                      verdict(d <= COEF_TOL))
    rss = peak("smesurvival") / design
    goals.add_row("memory: peak RSS / design matrix", f"{rss:.3f}x",
                  f"<= {GOAL_RSS:g}x", verdict(rss <= GOAL_RSS))
    xtx, xtx_cpu = best("smesurvival", "xtx_s"), best("smesurvival", "xtx_cpu")
    it = best("smesurvival", "pass_s") / xtx
    goals.add_row(f"iteration: pass {best('smesurvival', 'pass_s'):.3f} s / X'X {xtx:.3f} s",
                  f"{it:.3f}x", f"<= {GOAL_ITER:g}x", verdict(it <= GOAL_ITER))
    goals.add_row(f"  1 thread: {best('smesurvival', 'pass1_s'):.3f} s / X'X",
                  f"{best('smesurvival', 'pass1_s') / xtx:.2f}x", "", "")
    goals.add_row(f"  1 thread, CPU: {best('smesurvival', 'pass1_cpu'):.3f} s / X'X "
                  f"{xtx_cpu:.3f} s", f"{best('smesurvival', 'pass1_cpu') / xtx_cpu:.2f}x", "", "")
    per_pass = best("smesurvival", "fit_s") / int(sme["passes"])
    goals.add_row(f"  whole fit / its {sme['passes']} passes / X'X", f"{per_pass / xtx:.2f}x",
                  "", "")
    console.print(goals)


if __name__ == "__main__":
    sys.exit(main())
