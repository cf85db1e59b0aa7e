"""The synthetic cohort: a firm file with a known true survival model.

The survey behind Lee, Kelley, Lee & Lee (2012) is not public, so the built-in data are a
*synthetic* cohort of Korean R&D-performing SMEs surveyed in 2003 and followed to the end of
2008, calibrated to public statistics (``../shared/calibration.md``; every number is a field of
:class:`CohortParams`, documented in ``docs/synthetic.md``).  Its exits come from a known
cause-specific hazard model written on the *measures* the study builds (export ratio, R&D
intensity, innovativeness, R&D alliance, log firm age, log employees), so that every estimator
can be checked against the truth and the published support pattern holds by construction.

Everything is vectorised numpy driven by one ``np.random.default_rng(seed)``; no Python loop
runs over firms.  Covariates are standardised with *population* constants taken from a fixed
calibration sample (``calibration_seed``), so the true model is the same for every cohort seed
and every ``n``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from scipy import special

from smesurvival.errors import UsageError

FloatArray = np.ndarray
SECTORS: tuple[str, ...] = (
    "machinery", "electronics", "chemicals", "metals", "auto_parts", "textiles", "food",
    "other_manufacturing", "software_it", "engineering_services",
)
MANUFACTURING: frozenset[str] = frozenset(SECTORS[:8])
TERMS: tuple[str, ...] = (
    "log_firm_age", "log_employees", "export_ratio", "rd_intensity", "innovativeness",
    "rd_alliance", "export_ratio:rd_intensity", "export_ratio:innovativeness",
    "export_ratio:rd_alliance",
)
EXIT_TYPES: tuple[str, ...] = ("failure", "acquisition", "other")
COLUMNS: tuple[str, ...] = (
    "firm_id", "survey_year", "founding_year", "industry", "region", "employees", "sales",
    "export_sales", "rd_employees", "rd_expenditure", "patents", "new_products",
    "certified_tech", "rd_alliance", "weight", "exit_year", "exit_month", "exit_type",
    "last_year_observed",
)


@dataclass(frozen=True)
class CohortParams:
    """Every calibration number of the synthetic cohort (see ``docs/synthetic.md``).

    Shares are targets: the matching intercepts and baseline hazards are solved on the
    calibration sample.  Hazard coefficients are log hazard ratios per standard deviation of
    the measure (a negative value lowers the hazard, i.e. raises survival).
    """

    # design and follow-up
    survey_year: int = 2003
    follow_up_years: int = 5
    lost_to_follow_up: float = 0.0
    # industry (82% manufacturing) and region
    industries: tuple[str, ...] = SECTORS
    industry_shares: tuple[float, ...] = (0.17, 0.17, 0.10, 0.09, 0.09, 0.05, 0.05, 0.10, 0.12, 0.06)
    industry_effects: tuple[float, ...] = (
        0.165, 0.105, 0.027, -0.055, 0.253, -0.119, -0.114, 0.281, -0.041, 0.087)
    regions: tuple[str, ...] = ("seoul_capital", "gyeongsang", "chungcheong", "jeolla", "gangwon_jeju")
    region_shares: tuple[float, ...] = (0.48, 0.26, 0.14, 0.08, 0.04)
    # firm age at survey (lognormal, years) and size (two-lognormal mixture, truncated 5-299)
    age_mean: float = 13.0
    age_log_sd: float = 0.6
    age_max: int = 60
    employees_mix_weight: float = 0.42
    employees_medians: tuple[float, float] = (13.7, 33.6)
    employees_log_sds: tuple[float, float] = (0.59, 1.30)
    corr_age_size: float = 0.30
    sales_per_employee: float = 150.0
    sales_log_sd: float = 0.5
    # R&D staff share (logit-normal), R&D spend
    rd_logit_mean: float = -1.85
    rd_logit_sd: float = 0.65
    corr_size_rd: float = -0.20
    rd_spend_share: float = 0.04
    rd_spend_log_sd: float = 0.6
    rd_spend_rd_loading: float = 0.3
    # innovation outputs
    corr_rd_innovation: float = 0.10
    corr_size_innovation: float = 0.20
    patents_mean: float = 1.2
    new_products_mean: float = 2.0
    count_dispersion: float = 0.7
    innovation_loadings: tuple[float, float, float] = (0.8, 0.6, 1.0)
    certified_share: float = 0.45
    # exporting: R&D -> export path
    exporter_share: float = 0.50
    export_rd_logit: float = 0.60
    export_size_logit: float = 0.30
    export_beta: tuple[float, float] = (0.6, 1.6)
    export_ratio_rd_corr: float = 0.25
    # R&D alliances
    alliance_share: float = 0.30
    alliance_rd_logit: float = 0.10
    alliance_innovation_logit: float = 0.20
    # failure hazard, per SD of each measure (TERMS order)
    failure_coefs: tuple[float, ...] = (-0.25, -0.30, -0.30, 0.0, 0.0, -0.28, -0.35, 0.0, 0.0)
    # acquisition hazard: per SD of rd_intensity, innovativeness, log_employees
    acquisition_rd: float = 0.10
    acquisition_innovation: float = 0.15
    acquisition_size: float = 0.0
    # baseline: 5-year all-cause survival, exit-type shares, relative yearly hazard shape
    survival_5y: float = 0.85
    exit_shares: tuple[float, float, float] = (0.75, 0.20, 0.05)
    baseline_shape: tuple[float, ...] = (0.90, 0.95, 1.00, 1.05, 1.10)
    # size-class survey weights for classes 5-9, 10-19, 20-49, 50-99, 100-299
    class_weights: tuple[float, ...] = (3.0, 2.4, 1.6, 1.1, 1.0)
    # population constants come from this fixed sample
    calibration_seed: int = 20120101
    calibration_n: int = 400_000

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> None:
            raise UsageError(f"CohortParams.{name} = {getattr(self, name)!r}: {why}")

        if not 0.0 <= self.lost_to_follow_up < 1.0:
            bad("lost_to_follow_up", "must be in [0, 1)")
        for name in ("exporter_share", "alliance_share", "certified_share", "survival_5y",
                     "rd_spend_share", "employees_mix_weight"):
            if not 0.0 < getattr(self, name) < 1.0:
                bad(name, "must be strictly between 0 and 1")
        for name in ("corr_age_size", "corr_size_rd", "corr_rd_innovation",
                     "corr_size_innovation", "export_ratio_rd_corr"):
            if not -1.0 < getattr(self, name) < 1.0:
                bad(name, "a correlation must be strictly between -1 and 1")
        if self.corr_rd_innovation**2 + self.corr_size_innovation**2 >= 1.0:
            bad("corr_rd_innovation", "squared innovation loadings must sum to less than 1")
        for name in ("age_mean", "age_log_sd", "rd_logit_sd", "sales_per_employee",
                     "sales_log_sd", "rd_spend_log_sd", "patents_mean", "new_products_mean",
                     "count_dispersion"):
            if not getattr(self, name) > 0:
                bad(name, "must be positive")
        if self.age_mean <= 1.5 or self.age_max < 2:
            bad("age_mean", "firm age must allow at least 2 years")
        if self.follow_up_years < 1 or self.survey_year < 1900:
            bad("follow_up_years", "need a survey year and at least one follow-up year")
        for vals, shares in (("industries", "industry_shares"), ("regions", "region_shares")):
            v, s = getattr(self, vals), np.asarray(getattr(self, shares), float)
            if len(v) != len(s) or len(set(v)) != len(v) or len(v) == 0:
                bad(shares, f"need one share per distinct entry of {vals}")
            if np.any(s <= 0) or abs(s.sum() - 1.0) > 1e-6:
                bad(shares, "shares must be positive and sum to 1")
        if len(self.industry_effects) != len(self.industries):
            bad("industry_effects", "need one hazard effect per industry")
        if len(self.failure_coefs) != len(TERMS):
            bad("failure_coefs", f"need {len(TERMS)} coefficients in the order {TERMS}")
        es = np.asarray(self.exit_shares, float)
        if len(es) != 3 or np.any(es <= 0) or abs(es.sum() - 1.0) > 1e-6:
            bad("exit_shares", "need 3 positive shares (failure, acquisition, other) summing to 1")
        if len(self.baseline_shape) != self.follow_up_years or min(self.baseline_shape) <= 0:
            bad("baseline_shape", "need one positive multiplier per follow-up year")
        if len(self.class_weights) != 5 or min(self.class_weights) <= 0:
            bad("class_weights", "need 5 positive survey weights (5-9, 10-19, 20-49, 50-99, 100-299)")
        if len(self.innovation_loadings) != 3 or min(self.innovation_loadings) < 0:
            bad("innovation_loadings", "need 3 non-negative loadings (patents, new products, certified)")
        if min(self.export_beta) <= 0 or len(self.export_beta) != 2:
            bad("export_beta", "need two positive Beta shape parameters")
        if (min(self.employees_medians) < 1 or min(self.employees_log_sds) <= 0
                or len(self.employees_medians) != 2 or len(self.employees_log_sds) != 2):
            bad("employees_medians", "need two medians >= 1 and two positive log SDs")
        if self.calibration_n < 10_000:
            bad("calibration_n", "must be at least 10000 for stable population constants")

    def replace(self, **changes: Any) -> CohortParams:
        """Return a copy with ``changes`` applied (validated again)."""
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise UsageError(f"unknown CohortParams field(s): {', '.join(unknown)}")
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True, eq=False)
class SyntheticCohort:
    """A simulated firm file (or firm-year panel), its ground truth and a label saying so."""

    frame: pd.DataFrame
    truth: dict[str, Any]
    label: str
    panel: bool = False

    def panel_frame(self) -> pd.DataFrame:
        """Firm-years: one row per firm and year at risk, ``year``, ``t`` (1..5) and ``event``."""
        return self.frame if self.panel else firm_years(self.frame)

    def write(self, path: str | Path) -> Path:
        """Write the frame as CSV or Parquet (by extension) and ``<path>.truth.json`` beside it."""
        path = Path(path)
        ext = path.suffix.lower()
        if ext == ".csv":
            self.frame.to_csv(path, index=False)
        elif ext in (".parquet", ".pq"):
            self.frame.to_parquet(path, index=False)
        else:
            raise UsageError(f"cannot write {path}: use a .csv or .parquet extension")
        truth_path = path.with_name(path.name + ".truth.json")
        truth_path.write_text(json.dumps(self.truth, indent=2))
        return path


def firm_years(frame: pd.DataFrame) -> pd.DataFrame:
    """Expand a firm file to firm-years from ``survey_year + 1`` to exit or last observed year."""
    exit_year = frame["exit_year"].to_numpy(dtype="float64", na_value=np.nan)
    last = np.where(np.isnan(exit_year), frame["last_year_observed"].to_numpy(float), exit_year)
    start = frame["survey_year"].to_numpy(np.int64)
    n_years = (last - start).astype(np.int64)
    idx = np.repeat(np.arange(len(frame)), n_years)
    offsets = np.cumsum(n_years) - n_years
    t = np.arange(idx.size, dtype=np.int64) - np.repeat(offsets, n_years) + 1
    out = frame.iloc[idx].reset_index(drop=True)
    out["year"] = start[idx] + t
    out["t"] = t
    out["event"] = (out["year"].to_numpy() == exit_year[idx]).astype(np.int64)
    return out


# ----------------------------------------------------------------------------- covariates

def _z(x: FloatArray, key: str, consts: dict[str, float], fit: bool) -> FloatArray:
    """Standardise with population constants (fitted here when drawing the calibration sample)."""
    if fit:
        consts[key + ".mean"], consts[key + ".sd"] = float(x.mean()), float(x.std())
    return (x - consts[key + ".mean"]) / consts[key + ".sd"]


def _intercept(lin: FloatArray, target: float) -> float:
    """The intercept a with mean(expit(a + lin)) == target (Newton steps on the sample)."""
    a = float(special.logit(target))
    for _ in range(50):
        p = special.expit(a + lin)
        step = (p.mean() - target) / max(float((p * (1 - p)).mean()), 1e-12)
        a -= step
        if abs(step) < 1e-12:
            break
    return a


def _employees_grid(p: CohortParams) -> tuple[FloatArray, FloatArray]:
    """Tabulated CDF of the truncated two-lognormal size mixture on the log scale."""
    lg = np.linspace(np.log(5.0), np.log(300.0), 8001)
    w = p.employees_mix_weight
    cdf = sum(
        wk * special.ndtr((lg - np.log(m)) / s)
        for wk, m, s in zip((1 - w, w), p.employees_medians, p.employees_log_sds, strict=True)
    )
    cdf = (cdf - cdf[0]) / (cdf[-1] - cdf[0])
    return cdf, lg


# Export sales take the Beta quantile of u, rounded to 0.1: exactly
#     clip(round(sales * betaincinv(a, b, u), 1), 0.1, sales).
# betaincinv costs about 1.2 us a value (half of all the drawing), so the quantile is read from
# a cubic Hermite table of logit(Q) against logit(u) instead (built once per shape from
# betaincinv itself, its error checked at every interval midpoint), and betaincinv is called only
# where the table's error bound could change the rounded amount. Rounding to 0.1 is monotone in
# the ratio, so if round(sales * r) is the same at r (1 - tol) and r (1 + tol), it is the same at
# betaincinv's value too: the output is bit for bit that of calling betaincinv everywhere.
_QTABLE_RANGE = (-40.0, 16.0)  # logit(u) covered; outside it betaincinv is called
_QTABLE_STEP = 0.005
_QTABLE_MAX_ERROR = 1e-9  # relative; a shape whose table is worse calls betaincinv throughout
_QTABLE_GUARD = 1e-7  # relative bracket around the table value checked for the rounding


@lru_cache(maxsize=8)
def _beta_quantile_table(a: float, b: float) -> tuple[FloatArray, FloatArray] | None:
    """Nodes (logit Q, step * d logit Q / d logit u) on the grid, or None if not accurate."""
    lo, hi = _QTABLE_RANGE
    k = int(round((hi - lo) / _QTABLE_STEP))
    with np.errstate(all="ignore"):
        w = lo + _QTABLE_STEP * np.arange(k + 1)
        u = special.expit(w)
        q = special.betaincinv(a, b, u)
        log_pdf = (a - 1) * np.log(q) + (b - 1) * np.log1p(-q) - special.betaln(a, b)
        y = special.logit(q)
        slope = _QTABLE_STEP * u * (1 - u) / (q * (1 - q)) * np.exp(-log_pdf)
        if not (np.isfinite(y).all() and np.isfinite(slope).all()):
            return None
        mid = special.expit(w[:-1] + _QTABLE_STEP / 2)
        err = np.abs(_beta_quantile_lookup((y, slope), mid) / special.betaincinv(a, b, mid) - 1)
    if not np.nanmax(err) <= _QTABLE_MAX_ERROR:
        return None
    return y, slope


def _beta_quantile_lookup(table: tuple[FloatArray, FloatArray], u: FloatArray) -> FloatArray:
    """The tabulated quantile at ``u`` (NaN outside the table's range)."""
    y, slope = table
    lo, hi = _QTABLE_RANGE
    with np.errstate(all="ignore"):
        w = special.logit(u)
        pos = (w - lo) / _QTABLE_STEP
        inside = (w >= lo) & (w <= hi)
        i = np.clip(np.where(inside, pos, 0.0).astype(np.int64), 0, y.size - 2)
        t = pos - i
        t2 = t * t
        t3 = t2 * t
        h10 = t3 - 2 * t2 + t
        h01 = 3 * t2 - 2 * t3
        yi = y.take(i)
        out = special.expit(yi + h01 * (y.take(i + 1) - yi) + h10 * slope.take(i)
                            + (t3 - t2) * slope.take(i + 1))
    out[~inside] = np.nan
    return out


def _export_sales(sales: FloatArray, u: FloatArray, shape: tuple[float, float]) -> FloatArray:
    """``clip(round(sales * betaincinv(a, b, u), 1), 0.1, sales)``, bit for bit (see above)."""
    a, b = float(shape[0]), float(shape[1])
    table = _beta_quantile_table(a, b)
    if table is None:
        amount = np.round(sales * special.betaincinv(a, b, u), 1)
    else:
        r = _beta_quantile_lookup(table, u)
        amount = np.round(sales * (r * (1 - _QTABLE_GUARD)), 1)
        unsure = ~(amount == np.round(sales * (r * (1 + _QTABLE_GUARD)), 1))  # NaN: unsure
        amount[unsure] = np.round(sales[unsure] * special.betaincinv(a, b, u[unsure]), 1)
    return np.clip(amount, 0.1, sales)


def _draw(n: int, rng: np.random.Generator, p: CohortParams, consts: dict[str, float],
          fit: bool) -> dict[str, Any]:
    """Draw the firm covariates and the standardised measures that enter the hazards."""
    c: dict[str, Any] = {}
    c["industry"] = rng.choice(len(p.industries), size=n, p=np.asarray(p.industry_shares))
    c["region"] = rng.choice(len(p.regions), size=n, p=np.asarray(p.region_shares))
    # age (lognormal, mean age_mean after flooring) and size, linked by a Gaussian copula
    e_age, e_size, e_rd = rng.standard_normal((3, n))
    mu_age = np.log(p.age_mean - 0.5) - p.age_log_sd**2 / 2
    age = np.clip(np.floor(1 + np.exp(mu_age + p.age_log_sd * e_age)), 1, p.age_max)
    c["founding_year"] = p.survey_year - age.astype(np.int64)
    z_size = p.corr_age_size * e_age + np.sqrt(1 - p.corr_age_size**2) * e_size
    cdf, lg = _employees_grid(p)
    emp = np.clip(np.floor(np.exp(np.interp(special.ndtr(z_size), cdf, lg))), 5, 299)
    c["employees"] = emp.astype(np.int64)
    c["sales"] = np.round(emp * p.sales_per_employee
                          * np.exp(p.sales_log_sd * rng.standard_normal(n)), 1) + 0.1
    # R&D staff: logit-normal share, smaller firms relatively more R&D-intensive
    lat_rd = p.corr_size_rd * z_size + np.sqrt(1 - p.corr_size_rd**2) * e_rd
    share = special.expit(p.rd_logit_mean + p.rd_logit_sd * lat_rd)
    c["rd_employees"] = np.clip(np.round(share * emp), 1, emp).astype(np.int64)
    zs = {
        "log_firm_age": _z(np.log1p(age), "log_firm_age", consts, fit),
        "log_employees": _z(np.log(emp), "log_employees", consts, fit),
        "rd_intensity": _z(c["rd_employees"] / emp, "rd_intensity", consts, fit),
    }
    z_rd, z_le = zs["rd_intensity"], zs["log_employees"]
    g = p.rd_spend_rd_loading
    spend = p.rd_spend_share * np.exp(g * z_rd + p.rd_spend_log_sd * rng.standard_normal(n)
                                      - (g * g + p.rd_spend_log_sd**2) / 2)
    c["rd_expenditure"] = np.maximum(np.round(c["sales"] * spend, 1), 0.1)
    # export participation and export ratio (R&D -> export path)
    lin_x = p.export_rd_logit * z_rd + p.export_size_logit * z_le
    if fit:
        consts["intercept.export"] = _intercept(lin_x, p.exporter_share)
    exporter = rng.random(n) < special.expit(consts["intercept.export"] + lin_x)
    rho = p.export_ratio_rd_corr
    u = special.ndtr(rho * z_rd + np.sqrt(1 - rho**2) * rng.standard_normal(n))
    c["export_sales"] = np.zeros(n)
    c["export_sales"][exporter] = _export_sales(c["sales"][exporter], u[exporter], p.export_beta)
    zs["export_ratio"] = _z(c["export_sales"] / c["sales"], "export_ratio", consts, fit)
    # innovation outputs from a latent innovativeness linked to R&D and size
    a, b = p.corr_rd_innovation, p.corr_size_innovation
    lat_in = a * z_rd + b * z_le + np.sqrt(1 - a * a - b * b) * rng.standard_normal(n)
    k, (l_pat, l_new, l_cert) = p.count_dispersion, p.innovation_loadings
    frailty = rng.gamma(k, 1.0 / k, size=(2, n))  # gamma-Poisson (negative binomial) counts
    c["patents"] = rng.poisson(p.patents_mean * np.exp(l_pat * lat_in - l_pat**2 / 2) * frailty[0])
    c["new_products"] = rng.poisson(
        p.new_products_mean * np.exp(l_new * lat_in - l_new**2 / 2) * frailty[1])
    if fit:
        consts["intercept.certified"] = _intercept(l_cert * lat_in, p.certified_share)
    c["certified_tech"] = (
        rng.random(n) < special.expit(consts["intercept.certified"] + l_cert * lat_in)
    ).astype(np.int64)
    items = [_z(np.log1p(c[name].astype(float)), "item." + name, consts, fit)
             for name in ("patents", "new_products", "certified_tech")]
    zs["innovativeness"] = _z((items[0] + items[1] + items[2]) / 3, "innovativeness", consts, fit)
    # R&D alliances
    lin_a = p.alliance_rd_logit * z_rd + p.alliance_innovation_logit * zs["innovativeness"]
    if fit:
        consts["intercept.alliance"] = _intercept(lin_a, p.alliance_share)
    c["rd_alliance"] = (rng.random(n) < special.expit(consts["intercept.alliance"] + lin_a)
                        ).astype(np.int64)
    zs["rd_alliance"] = _z(c["rd_alliance"].astype(float), "rd_alliance", consts, fit)
    c["z"] = zs
    return c


def _risk_scores(c: dict[str, Any], p: CohortParams) -> tuple[FloatArray, FloatArray]:
    """Relative failure and acquisition hazards exp(eta) of each firm."""
    z = c["z"]
    cols = [z[t] if ":" not in t else z[t.split(":")[0]] * z[t.split(":")[1]] for t in TERMS]
    eta_f = np.asarray(p.industry_effects)[c["industry"]]
    for coef, col in zip(p.failure_coefs, cols, strict=True):
        if coef != 0.0:
            eta_f = eta_f + coef * col
    eta_a = (p.acquisition_rd * z["rd_intensity"] + p.acquisition_innovation * z["innovativeness"]
             + p.acquisition_size * z["log_employees"])
    return np.exp(eta_f), np.exp(eta_a)


@dataclass(frozen=True)
class _Calibration:
    consts: dict[str, float]  # population means/SDs and the solved intercepts
    rates: tuple[float, float, float]  # mean annual cause-specific hazards at eta = 0


@lru_cache(maxsize=8)
def _calibrate(p: CohortParams) -> _Calibration:
    """Population constants, intercepts and baseline hazards from the fixed calibration sample."""
    consts: dict[str, float] = {}
    c = _draw(p.calibration_n, np.random.default_rng(p.calibration_seed), p, consts, fit=True)
    rf, ra = _risk_scores(c, p)
    years, share = float(sum(p.baseline_shape)), np.asarray(p.exit_shares)  # cumulative shape
    rates = share * -np.log(p.survival_5y) / years
    for _ in range(200):
        total = rates[0] * rf + rates[1] * ra + rates[2]
        s = 1.0  # scale all rates so that mean 5-year survival hits the target
        for _ in range(50):
            surv = np.exp(-s * total * years)
            step = (surv.mean() - p.survival_5y) / float((surv * total * years).mean())
            s += step
            if abs(step) < 1e-13:
                break
        rates = rates * s
        total = total * s
        p_exit = 1 - np.exp(-total * years)
        got = np.array([(rates[0] * rf / total * p_exit).mean(),
                        (rates[1] * ra / total * p_exit).mean(),
                        (rates[2] / total * p_exit).mean()]) / p_exit.mean()
        if np.max(np.abs(got - share)) < 1e-10:
            break
        rates = rates * share / got
    return _Calibration(consts=consts, rates=(float(rates[0]), float(rates[1]), float(rates[2])))


# ----------------------------------------------------------------------------- public API

def simulate_cohort(n: int = 1612, seed: int = 2012, params: CohortParams | None = None, *,
                    panel: bool = False) -> SyntheticCohort:
    """Simulate ``n`` SMEs surveyed in ``survey_year`` and followed ``follow_up_years`` years.

    Exits come from cause-specific piecewise-constant hazards (failure, acquisition, other)
    sharing the yearly ``baseline_shape``; exit dates have month precision.  With
    ``panel=True`` the returned ``frame`` is the firm-year expansion (see :func:`firm_years`).

    Examples
    --------
    >>> cohort = simulate_cohort()
    >>> cohort.frame.shape
    (1612, 19)
    """
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise UsageError(f"n = {n!r}: the number of firms must be a positive integer")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise UsageError(f"seed = {seed!r}: the seed must be a non-negative integer")
    p = params if params is not None else CohortParams()
    if not isinstance(p, CohortParams):
        raise UsageError("params must be a CohortParams instance (or None for the defaults)")
    n, seed = int(n), int(seed)
    cal = _calibrate(p)
    firms = _simulate_firms(n, np.random.default_rng(seed), p, cal)
    frame = _frame(firms.c, p, firms.exited, firms.exit_year, firms.exit_month, firms.cause,
                   firms.last)
    label = _label(seed, n, p)
    truth = _truth(p, cal, seed, n, _realised(frame, p), label, panel)
    if panel:
        frame = firm_years(frame)
    return SyntheticCohort(frame=frame, truth=truth, label=label, panel=panel)


class _Firms(NamedTuple):
    """The simulated firms as arrays, before they become a frame (see :func:`_frame`)."""

    c: dict[str, Any]  # covariates drawn by _draw
    exited: np.ndarray  # exit observed in the window
    exit_year: np.ndarray  # meaningful where exited
    exit_month: np.ndarray
    cause: np.ndarray  # index into EXIT_TYPES
    last: np.ndarray  # last_year_observed


def _simulate_firms(n: int, rng: np.random.Generator, p: CohortParams,
                    cal: _Calibration) -> _Firms:
    """Draw ``n`` firms and their exits from ``rng`` (the whole of one ``simulate_cohort`` draw)."""
    c = _draw(n, rng, p, dict(cal.consts), fit=False)
    rf, ra = _risk_scores(c, p)
    # exit times: cumulative hazard = shape integral x total rate; invert the piecewise line
    rates = cal.rates
    total = rates[0] * rf + rates[1] * ra + rates[2]
    knots = np.concatenate([[0.0], np.cumsum(p.baseline_shape)])
    target = rng.exponential(size=n) / total
    exited = target < knots[-1]
    time = np.interp(target, knots, np.arange(knots.size, dtype=float))
    u = rng.random(n) * total
    cause = np.where(u < rates[0] * rf, 0, np.where(u < rates[0] * rf + rates[1] * ra, 1, 2))
    end_year = p.survey_year + p.follow_up_years
    last = np.full(n, end_year, dtype=np.int64)
    lost = rng.random(n) < p.lost_to_follow_up
    if p.follow_up_years > 1:
        last[lost] = rng.integers(p.survey_year + 1, end_year, size=int(lost.sum()))
    whole = np.floor(time)
    exit_year = p.survey_year + 1 + whole.astype(np.int64)
    exit_month = np.minimum(np.floor((time - whole) * 12).astype(np.int64) + 1, 12)
    exited &= exit_year <= last
    return _Firms(c, exited, exit_year, exit_month, cause, last)


def _label(seed: int, n: int, p: CohortParams) -> str:
    """The label every output made from a synthetic cohort carries."""
    return (f"SYNTHETIC cohort calibrated to Lee et al. (2012); not real firms "
            f"(seed {seed}, n {n}{'' if p == CohortParams() else ', custom parameters'})")


def _frame(c: dict[str, Any], p: CohortParams, exited: np.ndarray, exit_year: np.ndarray,
           exit_month: np.ndarray, cause: np.ndarray, last: np.ndarray) -> pd.DataFrame:
    """Assemble the raw firm file in the built-in spec's column names and dtypes."""
    n = exited.size
    emp = c["employees"]
    size_class = np.searchsorted(np.array([10, 20, 50, 100]), emp, side="right")
    exit_type = np.where(exited, np.asarray(EXIT_TYPES, dtype=object)[cause], None)
    frame = pd.DataFrame({
        "firm_id": np.arange(1, n + 1, dtype=np.int64),
        "survey_year": np.full(n, p.survey_year, dtype=np.int64),
        "founding_year": c["founding_year"],
        "industry": pd.Categorical.from_codes(c["industry"], list(p.industries)).astype(str),
        "region": pd.Categorical.from_codes(c["region"], list(p.regions)).astype(str),
        "employees": emp,
        "sales": c["sales"],
        "export_sales": c["export_sales"],
        "rd_employees": c["rd_employees"],
        "rd_expenditure": c["rd_expenditure"],
        "patents": c["patents"].astype(np.int64),
        "new_products": c["new_products"].astype(np.int64),
        "certified_tech": c["certified_tech"],
        "rd_alliance": c["rd_alliance"],
        "weight": np.asarray(p.class_weights)[size_class],
        "exit_year": pd.arrays.IntegerArray(np.where(exited, exit_year, 0), ~exited),
        "exit_month": pd.arrays.IntegerArray(np.where(exited, exit_month, 0), ~exited),
        "exit_type": pd.Series(exit_type, dtype="str"),
        "last_year_observed": last,
    })
    return frame


def _realised(frame: pd.DataFrame, p: CohortParams) -> dict[str, Any]:
    """Realised survival, exits by type and losses of a firm file (the truth's ``realised``)."""
    n = len(frame)
    exit_type = frame["exit_type"]
    counts = {t: int((exit_type == t).sum()) for t in EXIT_TYPES}
    n_exit = int(frame["exit_year"].notna().sum())
    return {"survival_5y": 1.0 - n_exit / n, "n_exits": n_exit, "exits_by_type": counts,
            "lost_to_follow_up": int((frame["last_year_observed"]
                                      < p.survey_year + p.follow_up_years).sum())}


def _truth(p: CohortParams, cal: _Calibration, seed: int, n: int, realised: dict[str, Any],
           label: str, panel: bool) -> dict[str, Any]:
    """JSON-serialisable ground truth: parameters, true coefficients, baseline, realised counts."""
    k = cal.consts
    sd = {m: k[m + ".sd"] for m in TERMS[:6]}

    def per_unit(term: str, coef: float) -> float:
        parts = term.split(":")
        return coef / float(np.prod([sd[q] for q in parts]))

    acq = {"rd_intensity": p.acquisition_rd, "innovativeness": p.acquisition_innovation,
           "log_employees": p.acquisition_size}
    return {
        "label": label, "seed": seed, "n": n, "layout": "firm-years" if panel else "firms",
        "params": json.loads(json.dumps(dataclasses.asdict(p))),
        "population": {m: {"mean": k[m + ".mean"], "sd": k[m + ".sd"]} for m in TERMS[:6]},
        "innovativeness_items": {q: {"mean": k[f"item.{q}.mean"], "sd": k[f"item.{q}.sd"]}
                                 for q in ("patents", "new_products", "certified_tech")},
        "intercepts": {q: k["intercept." + q] for q in ("export", "certified", "alliance")},
        "failure_hazard": {
            "scale": "log hazard ratio; measures centred at the population means",
            "per_sd": dict(zip(TERMS, p.failure_coefs, strict=True)),
            "per_unit": {t: per_unit(t, b) for t, b in zip(TERMS, p.failure_coefs, strict=True)},
            "industry_effects": dict(zip(p.industries, p.industry_effects, strict=True)),
        },
        "acquisition_hazard": {"per_sd": acq,
                               "per_unit": {t: per_unit(t, b) for t, b in acq.items()}},
        "baseline_hazard": {
            "years": list(range(p.survey_year + 1, p.survey_year + p.follow_up_years + 1)),
            **{t: [r * s for s in p.baseline_shape] for t, r in zip(EXIT_TYPES, cal.rates,
                                                                   strict=True)},
            "note": "annual hazards of a firm at the population means, industry effect 0",
        },
        "hypotheses": {"H1": "export_ratio", "H2a": "rd_intensity", "H2b": "innovativeness",
                       "H3a": "export_ratio:rd_intensity", "H3b": "export_ratio:innovativeness",
                       "H4": "rd_alliance", "H5": "export_ratio:rd_alliance",
                       "true_on_survival": {"H1": "+", "H4": "+", "H3a": "+", "H2a": "0",
                                            "H2b": "0", "H3b": "0", "H5": "0"}},
        "realised": realised,
    }
