"""How often does the reference study support each hypothesis? 200 synthetic cohorts.

Runs ``run_study("lee2012", cohort)`` on cohorts with seeds 1..200 (N = 1,612) and prints the
share of cohorts in which each hypothesis is supported (one-sided tests at the spec's alpha).
Targets (issue 2): H1, H4 >= 0.80; H3a >= 0.60; H2a, H2b, H3b, H5 <= 0.10.

In the same run, the hierarchical logits behind the verdicts are refitted with statsmodels
(the library a user would otherwise pick) to show the verdicts agree and to print the time ratio.

    python bench/verdict_power.py [--reps 200] [--n 1612] [--no-statsmodels]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from rich.console import Console
from rich.progress import track
from rich.table import Table
from scipy import stats

from smesurvival.data import ColumnMap, MeasureOptions, build_measures
from smesurvival.data.synthetic import simulate_cohort
from smesurvival.models.fit import fit
from smesurvival.study import load_spec, run_study

TARGETS = {"H1": (">=", 0.80), "H4": (">=", 0.80), "H3a": (">=", 0.60), "H2a": ("<=", 0.10),
           "H2b": ("<=", 0.10), "H3b": ("<=", 0.10), "H5": ("<=", 0.10)}


def statsmodels_verdicts(spec, frame) -> tuple[dict[str, bool], float, float]:
    """The same steps with statsmodels' Logit; returns verdicts, its fit time and ours."""
    import statsmodels.formula.api as smf

    mf = build_measures(frame, ColumnMap.from_dict(spec.columns),
                        MeasureOptions(window_years=spec.window_years, **spec.measures))
    d = mf.frame.dropna(subset=list(spec.main_variables()) + ["log_firm_age", "log_employees"]).copy()
    for v in spec.center:
        d[v] = d[v] - d[v].mean()
    out: dict[str, bool] = {}
    t_sm = t_ours = 0.0
    for h in spec.hypotheses:
        formula = spec.formula(spec.step(h.step))
        t0 = time.perf_counter()
        m = smf.logit(formula, d).fit(disp=0, method="newton", tol=1e-10)
        t_sm += time.perf_counter() - t0
        t0 = time.perf_counter()
        fit(formula, d)
        t_ours += time.perf_counter() - t0
        z = m.params[h.term] / m.bse[h.term]
        p = stats.norm.sf(z) if h.sign == "+" else stats.norm.cdf(z)
        out[h.id] = bool(p < h.alpha)
    return out, t_sm, t_ours


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--n", type=int, default=1612)
    ap.add_argument("--no-statsmodels", action="store_true")
    a = ap.parse_args()
    spec = load_spec("lee2012")
    ids = [h.id for h in spec.hypotheses]
    ours = np.zeros((a.reps, len(ids)), dtype=bool)
    theirs = np.zeros_like(ours)
    t_study = t_sm = t_fit = 0.0
    for i in track(range(a.reps), description="studies"):
        frame = simulate_cohort(n=a.n, seed=i + 1).frame
        t0 = time.perf_counter()
        res = run_study(spec, frame, robustness=False)
        t_study += time.perf_counter() - t0
        v = {x.hypothesis: x.supported for x in res.verdicts}
        ours[i] = [v[h] for h in ids]
        if not a.no_statsmodels:
            sv, ts, to = statsmodels_verdicts(spec, frame)
            theirs[i] = [sv[h] for h in ids]
            t_sm += ts
            t_fit += to
    rate = ours.mean(axis=0)
    tab = Table(title=f"Support rates over {a.reps} synthetic cohorts (N = {a.n}, seeds 1..{a.reps})")
    for c in ("hypothesis", "support rate", "target", "met", "statsmodels rate"):
        tab.add_column(c)
    all_met = True
    for h, r in zip(ids, rate, strict=True):
        op, target = TARGETS[h]
        met = r >= target if op == ">=" else r <= target
        all_met &= bool(met)
        sm_rate = "" if a.no_statsmodels else f"{theirs[:, ids.index(h)].mean():.3f}"
        tab.add_row(h, f"{r:.3f}", f"{op} {target:.2f}", "yes" if met else "NO", sm_rate)
    con = Console()
    con.print(tab)
    con.print(f"whole study (validation, measures, 6 models, verdicts, figures data): "
              f"{t_study / a.reps * 1000:.0f} ms per cohort")
    if not a.no_statsmodels:
        agree = (ours == theirs).mean()
        con.print(f"verdict agreement with statsmodels: {agree:.4f}")
        con.print(f"model fitting, verdict steps only: smesurvival {t_fit:.2f} s, statsmodels "
                  f"{t_sm:.2f} s — ratio statsmodels/smesurvival = {t_sm / t_fit:.2f}x")
    con.print("all targets met" if all_met else "[bold red]some targets not met[/]")


if __name__ == "__main__":
    main()
