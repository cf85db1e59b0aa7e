"""Firth-penalised Cox regression (models/firth_cox.py).

References and tolerances:

* the modified score is the gradient of l(b) + 1/2 log|I(b)|: central differences at random b,
  Efron and Breslow, with strata, case weights and entry times, relative error <= 1e-6;
* carData::Rossi against the independent implementation ``firthmodels`` (``FirthCoxPH``,
  Breslow ties; tests/reference/firth_cox_rossi.py and .json): estimates and SEs 1e-6 relative,
  penalised log-likelihood 1e-8 relative, profile CIs 1e-6 absolute; also with a covariate that
  makes the partial likelihood monotone (``fit_cox`` cannot converge, Firth is finite);
* at large n the penalised estimate equals the MLE to a small fraction of its SE.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import optimize, stats

from conftest import REF, load_ref
from smesurvival.errors import (
    ConvergenceError,
    DataValidationError,
    RankDeficientError,
    UsageError,
)
from smesurvival.models.cox import fit_cox, predict_survival
from smesurvival.models.cox_kernel import build_risk_sets
from smesurvival.models.firth_cox import FirthCoxProblem, cox_firth, fit_cox_firth
from smesurvival.models.result import FitResult

COVS = ["finyes", "age", "raceother", "wexpyes", "marnotmarried", "paroyes", "prio"]
RHS = " + ".join(COVS)


@pytest.fixture(scope="module")
def rossi_nc() -> pd.DataFrame:
    """Rossi coded as in firth_cox_rossi.py, with ``nocrime`` = 1 for 20 never-arrested rows."""
    d = pd.read_csv(REF / "data" / "carData_Rossi.csv")
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
    return out.assign(nocrime=nocrime, grp=np.arange(len(out)) % 3)


def _toy(seed: int, n: int = 150, p: int = 4) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    time = rng.integers(1, 15, size=n).astype(float)  # many ties
    return {
        "X": rng.normal(size=(n, p)) + np.array([3.0, -1.0, 0.0, 10.0])[:p],
        "time": time, "event": rng.binomial(1, 0.7, size=n).astype(float),
        "entry": np.where(rng.random(n) < 0.3, np.maximum(time - rng.integers(1, 5, size=n), 0.0), 0.0),
        "strata": rng.integers(0, 3, size=n), "weights": rng.uniform(0.5, 2.0, size=n),
    }


# ------------------------------------------------------------------ the modified score


@pytest.mark.parametrize("ties", ["efron", "breslow"])
@pytest.mark.parametrize("extras", [(), ("strata", "weights"), ("entry", "strata", "weights")])
@pytest.mark.parametrize("center", [False, True])
def test_modified_score_is_gradient_of_penalized_loglik(ties: str, extras: tuple[str, ...],
                                                       center: bool) -> None:
    d = _toy(11)
    rs = build_risk_sets(d["time"], d["event"], ties=ties,  # type: ignore[arg-type]
                         **{k: d[k] for k in extras})
    prob = FirthCoxProblem.build(d["X"], rs, center=center)
    rng = np.random.default_rng(5)
    for _ in range(2):
        b = rng.normal(scale=0.3, size=d["X"].shape[1])
        s = prob.evaluate(b)
        h = 1e-5
        fd = np.array([(prob.evaluate(b + h * e).penalized - prob.evaluate(b - h * e).penalized)
                       / (2 * h) for e in np.eye(b.size)])
        assert np.max(np.abs(fd - s.score)) <= 1e-6 * np.max(np.abs(s.score))
        assert np.max(np.abs(s.score - s.grad)) > 1e-3  # the penalty really contributes


def test_centering_changes_nothing() -> None:
    d = _toy(3)
    rs = build_risk_sets(d["time"], d["event"], strata=d["strata"], weights=d["weights"])
    b = np.array([0.2, -0.1, 0.3, 0.05])
    raw = FirthCoxProblem.build(d["X"], rs, center=False).evaluate(b)
    cen = FirthCoxProblem.build(d["X"], rs, center=True).evaluate(b)
    assert raw.penalized == pytest.approx(cen.penalized, rel=1e-12)
    np.testing.assert_allclose(raw.score, cen.score, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(raw.info, cen.info, rtol=1e-10)


# ------------------------------------------------------------------ against firthmodels


class CheckAgainstFirthmodels:
    case: dict
    result: FitResult
    covs: list[str]

    def test_coefficients_and_se(self) -> None:
        for t, b, s in zip(self.result.terms, self.result.params, self.result.se, strict=True):
            assert b == pytest.approx(self.case["estimate"][t], rel=1e-6)
            assert s == pytest.approx(self.case["se"][t], rel=1e-6)

    def test_penalized_loglik(self) -> None:
        assert self.result.extra["penalized_loglik"] == pytest.approx(
            self.case["penalized_loglik"], rel=1e-8)

    def test_profile_ci(self) -> None:
        for t in self.result.terms:
            np.testing.assert_allclose(self.result.extra["profile_ci"][t],
                                       self.case["profile_ci_95"][t], rtol=0, atol=1e-6)

    def test_counts(self) -> None:
        r = self.result
        assert r.nobs == self.case["n"] == 432 and r.n_events == self.case["n_events"] == 114
        assert r.model == "cox" and r.extra["firth"] is True and r.extra["ties"] == "breslow"
        assert list(r.terms) == self.covs


@pytest.fixture(scope="module")
def rossi_firth(rossi_nc: pd.DataFrame) -> FitResult:
    return fit_cox_firth(RHS, rossi_nc, duration="week", event="arrest", ties="breslow")


@pytest.fixture(scope="module")
def monotone_firth(rossi_nc: pd.DataFrame) -> FitResult:
    return fit_cox_firth(RHS + " + nocrime", rossi_nc, duration="week", event="arrest",
                         ties="breslow")


class TestRossi(CheckAgainstFirthmodels):
    @pytest.fixture(autouse=True)
    def _fit(self, rossi_firth: FitResult) -> None:
        self.case = load_ref("firth_cox_rossi")["rossi"]
        self.covs = COVS
        self.result = rossi_firth

    def test_close_to_ml_and_shrunk(self, rossi_nc: pd.DataFrame) -> None:
        ml = fit_cox(RHS, rossi_nc, duration="week", event="arrest", ties="breslow")
        assert np.max(np.abs(self.result.params - ml.params) / ml.se) < 0.15
        assert self.result.loglik < ml.loglik  # ML maximises the ordinary partial likelihood
        assert self.result.llnull == pytest.approx(ml.llnull, rel=1e-12)
        lr = self.result.extra["penalized_lr"]
        assert lr["df"] == 7 and lr["chi2"] > 0 and 0 < lr["p_value"] < 1e-3


class TestRossiMonotone(CheckAgainstFirthmodels):
    @pytest.fixture(autouse=True)
    def _fit(self, rossi_nc: pd.DataFrame, monotone_firth: FitResult) -> None:
        self.case = load_ref("firth_cox_rossi")["rossi_monotone"]
        self.covs = [*COVS, "nocrime"]
        self.data = rossi_nc
        self.result = monotone_firth

    def test_ml_fails_firth_is_finite(self) -> None:
        with pytest.raises(ConvergenceError, match="monotone likelihood"):
            fit_cox(RHS + " + nocrime", self.data, duration="week", event="arrest",
                    ties="breslow")
        j = self.result.index("nocrime")
        assert np.isfinite(self.result.params).all() and -5 < self.result.params[j] < -1
        lo, hi = self.result.extra["profile_ci"]["nocrime"]
        assert np.isfinite(lo) and lo < self.result.params[j] < hi < 0

    def test_efron_also_finite(self) -> None:
        r = fit_cox_firth(RHS + " + nocrime", self.data, duration="week", event="arrest",
                          profile=False)
        assert r.extra["ties"] == "efron" and np.isfinite(r.params).all()
        assert r.params[r.index("nocrime")] == pytest.approx(
            self.result.params[self.result.index("nocrime")], abs=0.05)


# ------------------------------------------------------------------ properties


def _sim(n: int, seed: int, continuous: bool = False) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    z = rng.binomial(1, 0.4, size=n).astype(float)
    t = rng.exponential(1.0 / np.exp(0.5 * x - 0.7 * z))
    c = rng.exponential(1.5, size=n)
    time = np.minimum(t, c) if continuous else np.ceil(np.minimum(t, c) * 20) / 20
    return pd.DataFrame({"x": x, "z": z, "t": time, "e": (t <= c).astype(int),
                         "s": rng.integers(0, 2, size=n)})


def test_large_sample_equals_ml() -> None:
    """The penalty is O(1) against an O(n) log partial likelihood: Firth -> ML."""
    d = _sim(20_000, 1)
    ml = fit_cox("x + z", d, duration="t", event="e", strata="s", concordance=False)
    fr = fit_cox_firth("x + z", d, duration="t", event="e", strata="s", profile=False,
                       concordance=False)
    assert np.max(np.abs(fr.params - ml.params) / ml.se) < 0.01
    np.testing.assert_allclose(fr.se, ml.se, rtol=1e-3)
    assert fr.loglik == pytest.approx(ml.loglik, rel=1e-7)


def test_efron_equals_breslow_without_ties() -> None:
    d = _sim(300, 2, continuous=True)
    a = fit_cox_firth("x + z", d, duration="t", event="e", ties="efron", profile=False)
    b = fit_cox_firth("x + z", d, duration="t", event="e", ties="breslow", profile=False)
    np.testing.assert_allclose(a.params, b.params, rtol=1e-10)
    assert a.extra["penalized_loglik"] == pytest.approx(b.extra["penalized_loglik"], rel=1e-12)


def test_frequency_weights_equal_replicated_rows() -> None:
    d = _sim(200, 4).assign(w=lambda f: np.arange(len(f)) % 3 + 1)
    rep = d.loc[d.index.repeat(d["w"])].reset_index(drop=True)
    a = fit_cox_firth("x + z", d, duration="t", event="e", weights="w", ties="breslow",
                      profile=False)
    b = fit_cox_firth("x + z", rep, duration="t", event="e", ties="breslow", profile=False)
    np.testing.assert_allclose(a.params, b.params, rtol=1e-9)
    np.testing.assert_allclose(a.se, b.se, rtol=1e-9)
    assert a.sum_weights == len(rep) and a.weights_kind == "frequency"


def test_entry_times_and_kernel_equal_formula_fit() -> None:
    d = _sim(250, 5)
    d["start"] = np.where(np.arange(len(d)) % 4 == 0, d["t"] / 2, 0.0)
    r = fit_cox_firth("x + z", d, duration="t", event="e", entry="start", strata="s",
                      profile=False)
    k = cox_firth(d[["x", "z"]].to_numpy(), d["t"].to_numpy(), d["e"].to_numpy(),
                  entry=d["start"].to_numpy(), strata=d["s"].to_numpy())
    assert k.converged
    np.testing.assert_allclose(r.params, k.params, rtol=1e-12)
    assert r.extra["entry"] == "start" and r.extra["n_strata"] == 2


def test_penalized_lr_and_profile_p(rossi_nc: pd.DataFrame) -> None:
    r = fit_cox_firth("prio + age", rossi_nc, duration="week", event="arrest")
    prob = cox_firth(rossi_nc[["prio", "age"]].to_numpy(), rossi_nc["week"].to_numpy(),
                     rossi_nc["arrest"].to_numpy())
    at0 = prob.problem.evaluate(np.zeros(2)).penalized
    assert r.extra["penalized_lr"]["chi2"] == pytest.approx(
        2 * (r.extra["penalized_loglik"] - at0), rel=1e-10)
    assert r.extra["profile_conf_level"] == 0.95
    for j, t in enumerate(r.terms):  # p-value: b_j = 0, the other coefficient by brute force
        k = 1 - j

        def negf(z: np.ndarray, j: int = j, k: int = k) -> float:
            b = np.zeros(2)
            b[k] = z[0]
            return -prob.problem.evaluate(b).penalized

        best = optimize.minimize_scalar(lambda v, f=negf: f(np.array([v])), bracket=(-0.2, 0.2),
                                        tol=1e-12)
        drop = 2 * (r.extra["penalized_loglik"] + best.fun)
        assert r.extra["profile_p"][t] == pytest.approx(stats.chi2.sf(drop, 1), rel=1e-6)


def test_result_round_trip_and_survival_prediction(rossi_nc: pd.DataFrame) -> None:
    r = fit_cox_firth("prio + age + finyes", rossi_nc, duration="week", event="arrest",
                      profile=False)
    back = FitResult.from_dict(json.loads(json.dumps(r.to_dict())))
    assert back.extra["firth"] is True and back.terms == r.terms
    np.testing.assert_array_equal(back.params, r.params)
    new = rossi_nc.head(3)
    s1 = predict_survival(r, new, np.array([10.0, 52.0]))
    s2 = predict_survival(back, new, np.array([10.0, 52.0]))
    pd.testing.assert_frame_equal(s1, s2)
    assert ((s1.to_numpy() > 0) & (s1.to_numpy() < 1)).all()
    assert "exp_estimate" in r.tidy().columns
    assert 0.5 < r.extra["concordance"]["c_index"] < 1


def test_errors(rossi_nc: pd.DataFrame) -> None:
    kw = {"duration": "week", "event": "arrest"}
    with pytest.raises(UsageError, match="vcov"):
        fit_cox_firth("prio", rossi_nc, vcov="hc0", **kw)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="ties"):
        fit_cox_firth("prio", rossi_nc, ties="exact", **kw)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="'nope' is not in the data"):
        fit_cox_firth("prio", rossi_nc, duration="nope", event="arrest")
    with pytest.raises(UsageError, match="conf_level"):
        fit_cox_firth("prio", rossi_nc, conf_level=1.5, **kw)
    with pytest.raises(DataValidationError, match="no events"):
        fit_cox_firth("prio", rossi_nc.assign(arrest=0), **kw)
    with pytest.raises(DataValidationError, match="constant"):
        fit_cox_firth("prio + one", rossi_nc.assign(one=1.0), **kw)
    with pytest.raises(RankDeficientError, match="prio2"):
        fit_cox_firth("prio + prio2", rossi_nc.assign(prio2=2 * rossi_nc["prio"]), **kw)
    with pytest.raises(DataValidationError, match="weights"):
        fit_cox_firth("prio", rossi_nc.assign(w=-1.0), weights="w", **kw)
    with pytest.raises(ConvergenceError, match="Firth Cox fit did not converge"):
        fit_cox_firth(RHS, rossi_nc, max_iter=1, **kw)


def test_fit_model_routes_the_firth_option(rossi_nc: pd.DataFrame, rossi_firth: FitResult) -> None:
    """fit_model(..., ModelOptions(firth=True)) (the CLI's --firth) gives the Firth fits."""
    from smesurvival.models.discrete import fit_discrete
    from smesurvival.models.dispatch import ModelOptions, fit_model
    from smesurvival.models.firth import fit_firth

    opts = ModelOptions(time="week", event="arrest", ties="breslow", firth=True)
    via = fit_model("cox", rossi_nc, RHS, opts)
    np.testing.assert_array_equal(via.params, rossi_firth.params)
    with pytest.raises(UsageError, match="Firth"):
        via.with_vcov("hc0", rossi_nc)
    with pytest.raises(UsageError, match="drop --vcov"):
        fit_model("cox", rossi_nc, RHS, ModelOptions(time="week", event="arrest", firth=True, vcov="hc0"))
    short = rossi_nc.assign(weeks=np.ceil(rossi_nc.week / 13.0), id=np.arange(len(rossi_nc)))
    disc = fit_model("discrete", short, "finyes + age + prio",
                     ModelOptions(time="weeks", event="arrest", id="id", width=1.0, firth=True))
    ref = fit_discrete("finyes + age + prio", short, duration="weeks", event="arrest", id="id",
                       width=1.0, firth=True)
    np.testing.assert_array_equal(disc.params, ref.params)
    prob = fit_model("firth", rossi_nc, "arrest ~ finyes + age", ModelOptions(link="probit"))
    np.testing.assert_array_equal(prob.params, fit_firth("arrest ~ finyes + age", rossi_nc,
                                                         link="probit").params)
    with pytest.raises(UsageError, match="--firth is for --model cox and discrete"):
        fit_model("logit", rossi_nc, "arrest ~ age", ModelOptions(firth=True))
