"""Fine–Gray (models/finegray.py) against cmprsk::crr and survival::coxph on survival::mgus2.

Reference values: tests/reference/competing_risks.json (script competing_risks.R), keys
``fine_gray_crr/{pcm,death}``, ``cause_specific_cox/{pcm,death}_breslow`` and
``cumulative_incidence``.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from conftest import REF, load_ref
from smesurvival.errors import (
    DataValidationError,
    EstimationError,
    FormulaError,
    RankDeficientError,
    UsageError,
)
from smesurvival.models.finegray import fit_finegray, predict_cif, risk_sets, risk_total
from smesurvival.models.result import FitResult

REF_CR = load_ref("competing_risks")
TERMS = ("age", "sexM", "mspike")
CAUSES = [(1, "pcm"), (2, "death")]


@pytest.fixture(scope="module")
def mgus2() -> pd.DataFrame:
    """mgus2 coded as the survival 'compete' vignette (all 1384 rows; mspike has 11 NAs)."""
    d = pd.read_csv(REF / "data" / "survival_mgus2.csv")
    d["etime"] = np.where(d["pstat"] == 0, d["futime"], d["ptime"])
    d["status"] = np.where(d["pstat"] == 0, 2 * d["death"], 1)
    d["sexM"] = (d["sex"] == "M").astype(float)
    return d


def fg(data: pd.DataFrame, cause: int, **kw: object) -> FitResult:
    return fit_finegray(
        "age + sexM + mspike", data, duration="etime", event="status", cause=cause, **kw  # type: ignore[arg-type]
    )


def ref_vec(block: dict, what: str, names: tuple[str, ...] = TERMS) -> np.ndarray:
    return np.array([block[what][t] for t in names])


def rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(np.asarray(a) / np.asarray(b) - 1.0)))


@pytest.mark.parametrize(("cause", "key"), CAUSES)
class TestAgainstCrr:
    """crr(ftime, fstatus, cov1 = cbind(age, sexM, mspike), failcode, cencode = 0)."""

    def test_coefficients(self, mgus2: pd.DataFrame, cause: int, key: str) -> None:
        r, ref = fg(mgus2, cause), REF_CR["fine_gray_crr"][key]
        assert r.terms == TERMS
        assert rel(r.params, ref_vec(ref["coefficients"], "estimate")) < 1e-8

    def test_robust_se(self, mgus2: pd.DataFrame, cause: int, key: str) -> None:
        r, ref = fg(mgus2, cause), REF_CR["fine_gray_crr"][key]
        assert r.vcov_type == "robust"
        assert rel(r.se, ref_vec(ref["coefficients"], "se")) < 1e-8

    def test_pseudo_loglik(self, mgus2: pd.DataFrame, cause: int, key: str) -> None:
        r, ref = fg(mgus2, cause), REF_CR["fine_gray_crr"][key]
        assert r.loglik == pytest.approx(ref["loglik"], rel=1e-10)
        assert r.llnull == pytest.approx(ref["loglik_null"], rel=1e-10)
        assert r.extra["loglik_null"] == r.llnull

    def test_counts_and_flow(self, mgus2: pd.DataFrame, cause: int, key: str) -> None:
        r, ref = fg(mgus2, cause), REF_CR["fine_gray_crr"][key]
        counts = REF_CR["coding"]["event_counts"]
        assert r.nobs == ref["n"] == 1373 and r.n_events == ref["n_events"]
        assert r.extra["n_censored"] == counts["censored"]
        assert r.extra["n_competing"] == counts["death" if cause == 1 else "pcm"]
        assert r.flow.dropped_by_reason() == {"missing value in column 'mspike'": 11}

    def test_categorical_term(self, mgus2: pd.DataFrame, cause: int, key: str) -> None:
        r = fit_finegray("age + C(sex) + mspike", mgus2, duration="etime", event="status",
                         cause=cause)
        ref = REF_CR["fine_gray_crr"][key]["coefficients"]
        assert r.terms == ("age", "C(sex)[T.M]", "mspike") and not r.has_intercept
        assert rel(r.params, ref_vec(ref, "estimate")) < 1e-8
        assert rel(r.se, ref_vec(ref, "se")) < 1e-8


@pytest.mark.parametrize(("cause", "key"), CAUSES)
def test_no_competing_events_is_breslow_cox(mgus2: pd.DataFrame, cause: int, key: str) -> None:
    """Competing events recoded as censored: Fine–Gray reduces to Cox (Breslow ties), and the
    classical vcov to coxph's inverse information (cause_specific_cox/<key>_breslow)."""
    d = mgus2.assign(status=np.where(mgus2["status"] == cause, cause, 0))
    r = fg(d, cause, vcov="classical")
    ref = REF_CR["cause_specific_cox"][f"{key}_breslow"]
    assert r.vcov_type == "classical" and r.extra["n_competing"] == 0
    assert rel(r.params, ref_vec(ref["coefficients"], "estimate")) < 1e-7
    assert rel(r.se, ref_vec(ref["coefficients"], "se")) < 1e-7
    assert r.loglik == pytest.approx(ref["loglik"], rel=1e-10)
    assert r.llnull == pytest.approx(ref["loglik_null"], rel=1e-10)


def test_classical_is_inverse_information(mgus2: pd.DataFrame) -> None:
    """vcov='classical' is the inverse of the numerical Hessian of the pseudo-likelihood."""
    r = fg(mgus2, 1, vcov="classical")
    small = mgus2.dropna(subset=["mspike"])
    X = small[list(TERMS)].to_numpy(float)
    T, s = small["etime"].to_numpy(float), small["status"].to_numpy()

    W, dead = brute_weights(T, s, cause=1)

    def loglik(b: np.ndarray) -> float:
        return float(((dead @ X) @ b).sum() - dead.sum(axis=1) @ np.log(W @ np.exp(X @ b)))

    h, k = 1e-4, len(TERMS)
    H = np.zeros((k, k))
    for i in range(k):
        for j in range(k):
            ei, ej = np.eye(k)[i] * h, np.eye(k)[j] * h
            H[i, j] = (loglik(r.params + ei + ej) - loglik(r.params + ei - ej)
                       - loglik(r.params - ei + ej) + loglik(r.params - ei - ej)) / (4 * h * h)
    assert loglik(r.params) == pytest.approx(r.loglik, rel=1e-12)
    np.testing.assert_allclose(np.linalg.inv(-H), r.vcov, rtol=1e-4)
    assert r.extra["se_robust"]["age"] == pytest.approx(
        REF_CR["fine_gray_crr"]["pcm"]["coefficients"]["se"]["age"], rel=1e-8)


def brute_weights(T: np.ndarray, s: np.ndarray, cause: int) -> tuple[np.ndarray, np.ndarray]:
    """Risk-set weights w_j(t_k) and event indicators, written from the definition (slow, clear)."""
    cens_times = np.unique(T[s == 0])

    def g_left(t: float) -> float:  # censoring KM just before t (failures at u count at risk)
        g = 1.0
        for u in cens_times[cens_times < t]:
            g *= 1.0 - np.sum((T == u) & (s == 0)) / np.sum(T >= u)
        return g

    g_row = np.array([g_left(t) for t in T])
    competing = (s != cause) & (s != 0)
    W, dead = [], []
    for t in np.unique(T[s == cause]):
        W.append(np.where(T >= t, 1.0, np.where(competing & (T < t), g_left(t) / g_row, 0.0)))
        dead.append(((T == t) & (s == cause)).astype(float))
    return np.array(W), np.array(dead)


def test_weighted_product_limit_equals_aalen_johansen_without_ties() -> None:
    """With no tied times, 1 − Π(1 − d_k / S0_k) at b = 0 is the Aalen–Johansen CIF (Geskus 2011)."""
    rng = np.random.default_rng(7)
    n = 500
    T = rng.permutation(np.linspace(0.01, 5.0, n)) * rng.uniform(0.5, 1.5, n)
    s = rng.choice([0, 1, 2], size=n, p=[0.3, 0.3, 0.4])
    assert np.unique(T).size == n
    rs = risk_sets(T, s == 1, s == 2)
    pl = 1.0 - np.cumprod(1.0 - rs.d / risk_total(rs, np.ones(n)))
    o = np.argsort(T)
    at_risk = n - np.arange(n)
    surv_left = np.concatenate([[1.0], np.cumprod(1.0 - (s[o] > 0) / at_risk)[:-1]])
    aj = np.cumsum(surv_left * (s[o] == 1) / at_risk)[s[o] == 1]
    np.testing.assert_allclose(pl, aj, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(("cause", "key"), CAUSES)
def test_weighted_product_limit_near_cuminc(mgus2: pd.DataFrame, cause: int, key: str) -> None:
    """On mgus2 (monthly ties; crr's censoring KM counts failures at a tie as at risk) the
    identity is approximate: within 2e-3 of cuminc (cumulative_incidence/overall)."""
    d = mgus2.dropna(subset=["mspike"])
    T, s = d["etime"].to_numpy(float), d["status"].to_numpy()
    rs = risk_sets(T, s == cause, (s != cause) & (s != 0))
    pl = 1.0 - np.cumprod(1.0 - rs.d / risk_total(rs, np.ones(T.size)))
    times = REF_CR["cumulative_incidence"]["times"]
    est = pl[np.searchsorted(rs.times, times, side="right") - 1]
    ref = REF_CR["cumulative_incidence"]["overall"][key]["estimate"]
    np.testing.assert_allclose(est, ref, atol=2e-3)


@pytest.mark.parametrize(("cause", "key"), CAUSES)
def test_predict_cif_by_sex_near_cuminc(mgus2: pd.DataFrame, cause: int, key: str) -> None:
    """A sex-only model's CIF for F and M is close to the nonparametric cuminc by sex
    (cumulative_incidence/by_sex; proportionality makes it approximate: 0.03)."""
    r = fit_finegray("sexM", mgus2.dropna(subset=["mspike"]), duration="etime",
                     event="status", cause=cause)
    times = REF_CR["cumulative_incidence"]["times"]
    cif = predict_cif(r, pd.DataFrame({"sexM": [0.0, 1.0]}), times)
    by_sex = REF_CR["cumulative_incidence"]["by_sex"]
    ref = np.array([by_sex[f"F_{key}"]["estimate"], by_sex[f"M_{key}"]["estimate"]])
    np.testing.assert_allclose(cif.to_numpy(), ref, atol=0.03)
    assert list(cif.columns) == [float(t) for t in times]


def test_predict_cif_formula_and_round_trip(mgus2: pd.DataFrame) -> None:
    r = fit_finegray("age + C(sex) + mspike", mgus2, duration="etime", event="status", cause=1)
    new = pd.DataFrame({"age": [60.0, 80.0], "sex": ["F", "M"], "mspike": [1.0, 2.0]})
    cif = predict_cif(r, new, [0.5, 12, 120, 10_000])
    x = np.array([[60.0, 0.0, 1.0], [80.0, 1.0, 2.0]])
    assert r.baseline is not None
    base_t, base_h = np.array(r.baseline["times"]), np.array(r.baseline["values"])
    h12 = base_h[base_t <= 12][-1]  # step function, right-continuous
    expect = 1.0 - np.exp(-h12 * np.exp(x @ r.params))
    assert cif.iloc[:, 0].tolist() == [0.0, 0.0]  # before the first event
    assert cif.iloc[:, 1].to_numpy() == pytest.approx(expect, rel=1e-12)
    assert cif.iloc[:, 3].to_numpy() == pytest.approx(1.0 - np.exp(-base_h[-1] * np.exp(x @ r.params)))
    assert np.all(np.diff(cif.to_numpy(), axis=1) >= 0) and np.all(cif.to_numpy() < 1)
    loaded = FitResult.from_dict(json.loads(json.dumps(r.to_dict())))
    pd.testing.assert_frame_equal(predict_cif(loaded, new, [0.5, 12, 120, 10_000]), cif)


def test_invariances(mgus2: pd.DataFrame) -> None:
    """Row order and the time unit do not change the estimates or the robust SEs."""
    r = fg(mgus2, 1)
    shuffled = mgus2.sample(frac=1.0, random_state=3).assign(etime=lambda d: d["etime"] / 12.0)
    r2 = fg(shuffled, 1)
    np.testing.assert_allclose(r2.params, r.params, rtol=1e-10)
    np.testing.assert_allclose(r2.se, r.se, rtol=1e-10)


def test_no_censoring_runs(mgus2: pd.DataFrame) -> None:
    d = mgus2[mgus2["status"] > 0]
    r = fg(d, 1)
    assert r.extra["n_censored"] == 0 and np.all(np.isfinite(r.se)) and r.converged


class TestBadInput:
    def test_cause_not_among_codes(self, mgus2: pd.DataFrame) -> None:
        with pytest.raises(UsageError, match=r"cause 3 .*codes found: 0, 1, 2"):
            fg(mgus2, 3)

    def test_cause_all_dropped(self, mgus2: pd.DataFrame) -> None:
        d = mgus2.assign(mspike=np.where(mgus2["status"] == 1, np.nan, mgus2["mspike"]))
        with pytest.raises(EstimationError, match="no events of cause 1"):
            fg(d, 1)

    @pytest.mark.parametrize("bad", [0.0, -3.0, np.inf])
    def test_bad_durations(self, mgus2: pd.DataFrame, bad: float) -> None:
        d = mgus2.assign(etime=mgus2["etime"].astype(float))
        d.loc[5, "etime"] = bad
        with pytest.raises(DataValidationError, match=r"'etime' must be positive.*row labels 5"):
            fg(d, 1)

    def test_event_codes_not_numeric(self, mgus2: pd.DataFrame) -> None:
        d = mgus2.assign(status=mgus2["status"].map({0: "censored", 1: "pcm", 2: "death"}))
        with pytest.raises(DataValidationError, match="numeric codes.*'censored'"):
            fg(d, 1)

    def test_options(self, mgus2: pd.DataFrame) -> None:
        with pytest.raises(UsageError, match="robust, classical"):
            fg(mgus2, 1, vcov="hc0")
        with pytest.raises(UsageError, match="differ from censor_code"):
            fg(mgus2, 0)
        with pytest.raises(UsageError, match="numeric event code"):
            fg(mgus2, "pcm")  # type: ignore[arg-type]
        with pytest.raises(UsageError, match="event column 'nope'"):
            fit_finegray("age", mgus2, duration="etime", event="nope", cause=1)

    def test_formula_with_outcome(self, mgus2: pd.DataFrame) -> None:
        with pytest.raises(FormulaError, match="right-hand side only"):
            fit_finegray("etime ~ age", mgus2, duration="etime", event="status", cause=1)

    def test_constant_covariate(self, mgus2: pd.DataFrame) -> None:
        with pytest.raises(RankDeficientError, match="'one'"):
            fit_finegray("age + one", mgus2.assign(one=1.0), duration="etime", event="status",
                         cause=1)

    def test_predict_needs_finegray(self, mgus2: pd.DataFrame) -> None:
        r = fg(mgus2, 1)
        with pytest.raises(UsageError, match="times"):
            predict_cif(r, mgus2.head(1), [])
        with pytest.raises(UsageError, match="Fine–Gray result"):
            predict_cif(FitResult.from_dict({**r.to_dict(), "model": "cox"}), mgus2.head(1), [1])
