"""Power of the 2012 study's design on the synthetic cohort, measured with statsmodels.

This script documents how the hazard sizes in ``CohortParams`` were chosen: it simulates many
cohorts, runs the study's hierarchical logit of ``survived`` (M2 main effects, M3/M4/M5 one
interaction each, centred measures, controls log firm age, log employees and industry) and
reports how often each hypothesis is supported (one-sided z test at alpha 0.05 in the expected,
positive direction).  It also reports two-sided "significant in the wrong direction" rates for
the null hypotheses, and the realised survival and exit counts.

Usage::

    .venv/bin/python bench/tune_synthetic.py                   # 200 cohorts, seeds 1-200
    .venv/bin/python bench/tune_synthetic.py --set failure_coefs=... --cohorts 100
    .venv/bin/python bench/tune_synthetic.py --seed-report 2012  # one cohort, full tables
"""

from __future__ import annotations

import argparse
import ast
import json
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pandas as pd
import statsmodels.api as sm

from smesurvival.data.synthetic import CohortParams, simulate_cohort

MAIN = ("export_ratio", "rd_intensity", "innovativeness", "rd_alliance")
HYPOTHESES = {  # hypothesis -> (model step, term)
    "H1": ("M2", "export_ratio"), "H2a": ("M2", "rd_intensity"),
    "H2b": ("M2", "innovativeness"), "H4": ("M2", "rd_alliance"),
    "H3a": ("M3", "export_ratio:rd_intensity"), "H3b": ("M4", "export_ratio:innovativeness"),
    "H5": ("M5", "export_ratio:rd_alliance"),
}
TRUE = ("H1", "H4", "H3a")


def measures(frame: pd.DataFrame) -> pd.DataFrame:
    """The study's measures, as data/measures.py defines them (independent re-implementation)."""
    m = pd.DataFrame(index=frame.index)
    m["export_ratio"] = frame["export_sales"] / frame["sales"]
    m["rd_intensity"] = frame["rd_employees"] / frame["employees"]
    items = [np.log1p(frame[c].astype(float)) for c in ("patents", "new_products", "certified_tech")]
    m["innovativeness"] = sum((v - v.mean()) / v.std() for v in items) / 3
    m["rd_alliance"] = frame["rd_alliance"].astype(float)
    m["log_firm_age"] = np.log1p(frame["survey_year"] - frame["founding_year"])
    m["log_employees"] = np.log(frame["employees"])
    m["survived"] = ~(frame["exit_year"].fillna(9999) <= 2008).to_numpy(bool)
    m["industry"] = frame["industry"]
    return m


def fit_steps(frame: pd.DataFrame) -> dict[str, tuple[float, float]]:
    """z statistic and coefficient of each hypothesis' term in its model step."""
    m = measures(frame)
    x = {c: m[c] - m[c].mean() for c in MAIN}
    base = pd.concat([pd.Series(1.0, index=m.index, name="Intercept"),
                      m[["log_firm_age", "log_employees"]],
                      pd.get_dummies(m["industry"], prefix="ind", drop_first=True, dtype=float),
                      pd.DataFrame(x)], axis=1)
    y = m["survived"].astype(float)
    inter = {"M3": "rd_intensity", "M4": "innovativeness", "M5": "rd_alliance"}
    out: dict[str, tuple[float, float]] = {}
    for step in ("M2", "M3", "M4", "M5"):
        design = base.copy()
        if step in inter:
            design[f"export_ratio:{inter[step]}"] = x["export_ratio"] * x[inter[step]]
        res = sm.Logit(y, design).fit(disp=0, method="newton", maxiter=100)
        for h, (s, term) in HYPOTHESES.items():
            if s == step:
                out[h] = (float(res.tvalues[term]), float(res.params[term]))
    return out


def _one(args: tuple[int, int, CohortParams]) -> dict[str, object]:
    seed, n, params = args
    cohort = simulate_cohort(n=n, seed=seed, params=params)
    res = fit_steps(cohort.frame)
    real = cohort.truth["realised"]
    return {"seed": seed, "z": {h: v[0] for h, v in res.items()},
            "b": {h: v[1] for h, v in res.items()},
            "survival": real["survival_5y"], "exits": real["n_exits"]}


def power(params: CohortParams, seeds: range, n: int, workers: int = 2) -> dict[str, object]:
    """Support rates over cohorts ``seeds`` (one-sided z > 1.645 in the survival direction)."""
    with ProcessPoolExecutor(workers) as ex:
        rows = list(ex.map(_one, [(s, n, params) for s in seeds], chunksize=4))
    z = pd.DataFrame([r["z"] for r in rows])
    return {
        "cohorts": len(rows), "n": n,
        "support": {h: float((z[h] > 1.6448536).mean()) for h in HYPOTHESES},
        "wrong_sign_two_sided": {h: float((z[h] < -1.959964).mean()) for h in HYPOTHESES},
        "mean_z": {h: float(z[h].mean()) for h in HYPOTHESES},
        "mean_survival": float(np.mean([r["survival"] for r in rows])),
        "mean_exits": float(np.mean([r["exits"] for r in rows])),
    }


def _parse_set(items: list[str]) -> dict[str, object]:
    out: dict[str, object] = {}
    for item in items:
        key, _, value = item.partition("=")
        out[key] = ast.literal_eval(value)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cohorts", type=int, default=200)
    ap.add_argument("--first-seed", type=int, default=1)
    ap.add_argument("--n", type=int, default=1612)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--set", nargs="*", default=[], help="CohortParams overrides, key=python-literal")
    ap.add_argument("--seed-report", type=int, default=None)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    params = CohortParams().replace(**_parse_set(a.set))
    if a.seed_report is not None:
        r = _one((a.seed_report, a.n, params))
        print(json.dumps(r, indent=2))
        return
    t0 = time.perf_counter()
    out = power(params, range(a.first_seed, a.first_seed + a.cohorts), a.n, a.workers)
    out["overrides"] = _parse_set(a.set)
    out["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(out, indent=2))
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(out, fh, indent=2)


if __name__ == "__main__":
    main()
