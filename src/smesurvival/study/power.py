"""Power by simulation: how often would the study support each hypothesis at sample size n?

Draws ``reps`` cohorts of each size from the calibrated simulator (optionally with other true
effects), builds the study's measures and centring per cohort, fits every step that judges a
hypothesis on all cohorts at once (:func:`smesurvival.inference.stacked.fit_stacked`) and
applies the spec's tests. A cohort whose fit fails (e.g. separation in a small cohort) counts
as not supporting the hypothesis, and the failures are reported.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from smesurvival.errors import SpecError, UsageError
from smesurvival.study.spec import StudySpec

_CHUNK_FIRMS = 400_000  # cohorts are simulated in chunks of about this many firms


@dataclass(frozen=True)
class PowerResult:
    """Support rates per hypothesis and sample size."""

    hypotheses: tuple[str, ...]
    ns: tuple[int, ...]
    reps: int
    power: np.ndarray  # (len(ns), len(hypotheses)) share of cohorts supporting
    failed: np.ndarray  # (len(ns), len(steps)) fits that failed
    steps: tuple[str, ...]
    effects: dict[str, float]  # true failure-hazard coefficients per SD used
    seed: int
    published: tuple[str | None, ...]
    supported: tuple[np.ndarray, ...] = ()  # per n: (reps, hypotheses) booleans, cohort by cohort

    def mc_se(self) -> np.ndarray:
        """Monte-Carlo standard error of each support rate."""
        return np.sqrt(self.power * (1 - self.power) / self.reps)

    def to_frame(self) -> pd.DataFrame:
        rows = []
        for i, n in enumerate(self.ns):
            for j, h in enumerate(self.hypotheses):
                rows.append({"n": n, "hypothesis": h, "power": float(self.power[i, j]),
                             "mc_se": float(self.mc_se()[i, j]), "published": self.published[j]})
        return pd.DataFrame(rows)

    def to_dict(self) -> dict[str, Any]:
        return {"hypotheses": list(self.hypotheses), "ns": list(self.ns), "reps": self.reps,
                "power": self.power.tolist(), "failed_fits": self.failed.tolist(),
                "steps": list(self.steps), "effects": self.effects, "seed": self.seed,
                "published": list(self.published), "synthetic": True}


def simulate_power(
    spec: StudySpec, ns: Sequence[int], reps: int, *, seed: int = 1,
    effects: dict[str, float] | None = None, params: dict[str, Any] | None = None,
    progress: Callable[[str], None] | None = None,
) -> PowerResult:
    """Support rate of each hypothesis over ``reps`` simulated cohorts per sample size."""
    from smesurvival.data import ColumnMap, MeasureOptions, build_measures
    from smesurvival.data.synthetic import TERMS, CohortParams, simulate_cohort
    from smesurvival.inference.stacked import fit_stacked
    from smesurvival.models.design import build_design
    from smesurvival.models.families import FAMILIES

    if spec.outcome_kind != "binary" or spec.family not in FAMILIES:
        raise UsageError("power simulation supports binary-outcome studies (logit, probit, cloglog)")
    if reps < 2 or not ns or min(ns) < 50:
        raise UsageError("power needs --reps >= 2 and every --n >= 50")
    say = progress or (lambda _m: None)
    base = CohortParams()
    coefs = dict(zip(TERMS, base.failure_coefs, strict=True))
    for k, v in (effects or {}).items():
        if k not in coefs:
            raise UsageError(f"unknown effect '{k}'; the simulator's terms are {', '.join(TERMS)}")
        coefs[k] = float(v)
    try:
        cp = dataclasses.replace(base, failure_coefs=tuple(coefs[t] for t in TERMS), **(params or {}))
    except TypeError as e:
        raise UsageError(f"unknown simulator parameter: {e}") from None
    fam = FAMILIES[spec.family]
    judged = sorted({h.step for h in spec.hypotheses}, key=[s.name for s in spec.steps].index)
    power = np.zeros((len(ns), len(spec.hypotheses)))
    failed = np.zeros((len(ns), len(judged)), dtype=int)
    columns = ColumnMap.from_dict(spec.columns) if spec.columns else ColumnMap.default()
    options = MeasureOptions(window_years=spec.window_years, **spec.measures)  # type: ignore[arg-type]
    details: list[np.ndarray] = []
    for i, n in enumerate(ns):
        per_chunk = max(1, _CHUNK_FIRMS // n)
        support = np.zeros(len(spec.hypotheses))
        detail = np.zeros((reps, len(spec.hypotheses)), dtype=bool)
        done = 0
        while done < reps:
            r = min(per_chunk, reps - done)
            say(f"n = {n}: cohorts {done + 1}-{done + r} of {reps}")
            cohort = simulate_cohort(n * r, seed=seed + 7919 * i + done, params=cp)
            frame = cohort.frame.assign(_cohort=np.arange(n * r) // n)
            mf = build_measures(frame, columns, options)
            d = mf.frame.assign(_cohort=frame["_cohort"].to_numpy()[_rows_kept(mf, len(frame))])
            for col in spec.center:
                d[col] = d[col] - d.groupby("_cohort")[col].transform("mean")
            for si, step_name in enumerate(judged):
                design = build_design(spec.formula(spec.step(step_name)), d)
                X, y, w = _stack(design.X, design.y, d["_cohort"].to_numpy()[design.rows], r)
                fit = fit_stacked(X, y, fam, w)
                failed[i, si] += int((~fit.ok).sum())
                for j, h in enumerate(spec.hypotheses):
                    if h.step != step_name:
                        continue
                    tc = design.terms.index(h.term) if h.term in design.terms else None
                    if tc is None:
                        raise SpecError(f"{spec.source}: term '{h.term}' is not in step {step_name}")
                    z = fit.params[:, tc] / fit.se[:, tc]
                    pval = stats.norm.sf(z) if h.sign == "+" else stats.norm.cdf(z)
                    if h.test == "two-sided":
                        pval = 2 * stats.norm.sf(np.abs(z))
                    right = fit.params[:, tc] > 0 if h.sign == "+" else fit.params[:, tc] < 0
                    hit = fit.ok & right & (pval < h.alpha)
                    detail[done:done + r, j] = hit
                    support[j] += int(hit.sum())
            done += r
        power[i] = support / reps
        details.append(detail)
    return PowerResult(tuple(h.id for h in spec.hypotheses), tuple(int(n) for n in ns), reps,
                       power, failed, tuple(judged), coefs, seed,
                       tuple(h.published for h in spec.hypotheses), tuple(details))


def _rows_kept(mf: Any, n: int) -> np.ndarray:
    """Positions of the measure rows in the input (measures may drop censored rows)."""
    if "row" in mf.frame.columns:
        return mf.frame["row"].to_numpy(dtype=np.int64) - 2  # file line numbers -> positions
    return np.arange(n)


def _stack(X: np.ndarray, y: np.ndarray | None, cohort: np.ndarray, R: int) -> tuple[np.ndarray, ...]:
    """Scatter rows into (R, n_max, p) arrays, padding short cohorts with zero weights."""
    if y is None:
        raise UsageError("the study's formulas need an outcome")
    counts = np.bincount(cohort, minlength=R)
    n_max = int(counts.max())
    pos = np.arange(cohort.size) - np.repeat(np.cumsum(counts) - counts, counts)
    Xs = np.zeros((R, n_max, X.shape[1]))
    ys = np.zeros((R, n_max))
    ws = np.zeros((R, n_max))
    Xs[cohort, pos] = X
    ys[cohort, pos] = y
    ws[cohort, pos] = 1.0
    return Xs, ys, ws
