"""Case firth_cox_rossi: Firth-penalised Cox regression (Heinze & Schemper 2001) on carData::Rossi.

R's ``coxphf`` is not packaged for Debian and CRAN is out of reach here, so the reference is
the independent Python implementation ``firthmodels`` (MIT licence; its ``FirthCoxPH`` is
documented as validated against coxphf: Breslow ties, l(b) + 1/2 log|I(b)|, Wald SEs from
I(b^)^-1, profile penalised-likelihood CIs). It is not a dependency of smesurvival: run this
script in a scratch environment and commit the JSON it writes::

    python -m venv /tmp/fm && /tmp/fm/bin/pip install firthmodels==0.8.2 pandas
    /tmp/fm/bin/python tests/reference/firth_cox_rossi.py

Data (tests/reference/data/carData_Rossi.csv, coded as cox_rossi.R): time ``week``, event
``arrest``; covariates finyes, age, raceother, wexpyes, marnotmarried ('mar' == 'not
married'), paroyes, prio. Cases:

* ``rossi``: the seven covariates (as cox_rossi.R, Breslow ties);
* ``rossi_monotone``: plus ``nocrime`` = 1 for the first 20 rows (file order) with arrest = 0 and
  0 elsewhere; no one with nocrime = 1 is arrested, so the partial likelihood increases
  monotonically as its coefficient goes to -infinity (monotone likelihood: no finite ML
  estimate), while the penalised estimate is finite.
"""

from __future__ import annotations

import json
import platform
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pandas as pd
from firthmodels import FirthCoxPH

HERE = Path(__file__).parent
COVS = ["finyes", "age", "raceother", "wexpyes", "marnotmarried", "paroyes", "prio"]


def rossi() -> pd.DataFrame:
    d = pd.read_csv(HERE / "data" / "carData_Rossi.csv")
    out = pd.DataFrame({
        "week": d["week"].astype(float), "arrest": d["arrest"].astype(int),
        "finyes": (d["fin"] == "yes").astype(float), "age": d["age"].astype(float),
        "raceother": (d["race"] == "other").astype(float),
        "wexpyes": (d["wexp"] == "yes").astype(float),
        "marnotmarried": (d["mar"] == "not married").astype(float),
        "paroyes": (d["paro"] == "yes").astype(float), "prio": d["prio"].astype(float),
    })
    nocrime = np.zeros(len(out))
    nocrime[np.flatnonzero(out["arrest"].to_numpy() == 0)[:20]] = 1.0
    out["nocrime"] = nocrime
    return out


def case(d: pd.DataFrame, covs: list[str]) -> dict:
    X = d[covs].to_numpy(float)
    y = (d["arrest"].to_numpy() == 1, d["week"].to_numpy(float))
    m = FirthCoxPH(backend="numpy", max_iter=500, max_halfstep=50, gtol=1e-11, xtol=1e-12).fit(X, y)
    assert m.converged_
    ci = np.asarray(m.conf_int(alpha=0.05, method="pl"))
    return {
        "call": "FirthCoxPH(backend='numpy', max_iter=500, max_halfstep=50, gtol=1e-11, "
                "xtol=1e-12).fit(X, (arrest == 1, week)); conf_int(alpha=0.05, method='pl')",
        "ties": "breslow", "covariates": covs, "n": len(d), "n_events": int(d["arrest"].sum()),
        "iterations": int(m.n_iter_),
        "estimate": dict(zip(covs, map(float, m.coef_), strict=True)),
        "se": dict(zip(covs, map(float, m.bse_), strict=True)),
        "se_definition": "sqrt(diag(I(b^)^-1)), I the Breslow partial-likelihood information",
        "penalized_loglik": float(m.loglik_),
        "profile_ci_95": {c: [float(a), float(b)] for c, (a, b) in zip(covs, ci, strict=True)},
    }


def main() -> None:
    d = rossi()
    assert d.loc[d["nocrime"] == 1, "arrest"].sum() == 0 and d["nocrime"].sum() == 20
    res = {
        "case": "firth_cox_rossi",
        "dataset": {"package": "carData", "item": "Rossi", "csv": "data/carData_Rossi.csv"},
        "reference_implementation": "firthmodels (Python, MIT), FirthCoxPH; coxphf is not "
                                    "available here (see the script's docstring)",
        "rossi": case(d, COVS),
        "rossi_monotone": case(d, [*COVS, "nocrime"]),
        "versions": {"python": platform.python_version(), "firthmodels": version("firthmodels"),
                     "numpy": np.__version__, "scipy": version("scipy")},
    }
    (HERE / "firth_cox_rossi.json").write_text(json.dumps(res, indent=2) + "\n")
    for k in ("rossi", "rossi_monotone"):
        print(k, res[k]["iterations"], res[k]["estimate"], res[k]["penalized_loglik"])


if __name__ == "__main__":
    main()
