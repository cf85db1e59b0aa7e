"""Firth logistic regression against brglm2 (tests/reference/firth_logistic.json, firth_logistic.R).

Tolerances: estimates 1e-6 relative, SEs 1e-6 relative, Wald z/p 1e-6, penalised and ordinary
log-likelihoods 1e-8 relative. Profile CIs have no R reference here, so they are checked
against an independent brute-force profile (scipy's general optimiser on a separately coded
penalised log-likelihood): 2 * drop at each bound equals the chi-square quantile to 1e-6.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import optimize, stats

from conftest import REF, load_ref, r_name
from smesurvival.errors import ConvergenceError, FormulaError, RankDeficientError, SeparationError
from smesurvival.models.firth import fit_firth
from smesurvival.models.fit import fit
from smesurvival.models.result import FitResult

ENDO = "HG ~ NV + PI + EH"
SHUTTLE = "fail ~ Temperature"


@pytest.fixture(scope="module")
def endometrial() -> pd.DataFrame:
    return pd.read_csv(REF / "data" / "brglm2_endometrial.csv")


@pytest.fixture(scope="module")
def shuttle() -> pd.DataFrame:
    """As firth_logistic.R: drop flight 4 (Fail = NA); fail = 1 if Fail == 'yes'."""
    d = pd.read_csv(REF / "data" / "vcd_SpaceShuttle.csv")
    d = d[d["Fail"].notna()].reset_index(drop=True)
    d["fail"] = (d["Fail"] == "yes").astype(int)
    return d


def penalized_loglik(X: np.ndarray, y: np.ndarray, b: np.ndarray) -> float:
    """Independent l(b) + 1/2 log det(X'WX), coded directly from the definition."""
    eta = X @ b
    ll = -np.sum(y * np.logaddexp(0.0, -eta) + (1 - y) * np.logaddexp(0.0, eta))
    v = np.exp(-np.logaddexp(0.0, -eta) - np.logaddexp(0.0, eta))  # p (1 - p)
    sign, logdet = np.linalg.slogdet(X.T @ (X * v[:, None]))
    return float(ll + 0.5 * logdet) if sign > 0 else -np.inf


def brute_profile(X: np.ndarray, y: np.ndarray, j: int, c: float, start: np.ndarray) -> float:
    """max of the penalised log-likelihood with b_j fixed at c, by a general-purpose optimiser."""
    others = [k for k in range(X.shape[1]) if k != j]

    def negf(z: np.ndarray) -> float:
        b = np.empty(X.shape[1])
        b[j], b[others] = c, z
        return -penalized_loglik(X, y, b)

    best = optimize.minimize(negf, start[others], method="BFGS", options={"gtol": 1e-10})
    best = optimize.minimize(negf, best.x, method="Nelder-Mead",
                             options={"xatol": 1e-11, "fatol": 1e-14, "maxiter": 20000})
    return -float(best.fun)


class CheckFirthAgainstBrglm2:
    """Shared assertions; each data set is a short subclass (statsmodels' mixin idea)."""

    case: dict
    result: FitResult
    X: np.ndarray
    y: np.ndarray

    def test_coefficients(self) -> None:
        want = self.case["firth_AS_mean"]["coefficients"]["estimate"]
        for t, b in zip(self.result.terms, self.result.params, strict=True):
            assert b == pytest.approx(want[r_name(t)], rel=1e-6)

    def test_standard_errors(self) -> None:
        want = self.case["firth_AS_mean"]["coefficients"]["se"]
        for t, s in zip(self.result.terms, self.result.se, strict=True):
            assert s == pytest.approx(want[r_name(t)], rel=1e-6)

    def test_wald_z_and_p(self) -> None:
        coefs = self.case["firth_AS_mean"]["coefficients"]
        for t, z, p in zip(self.result.terms, self.result.zvalues, self.result.pvalues,
                           strict=True):
            assert z == pytest.approx(coefs["z"][r_name(t)], rel=1e-6)
            assert p == pytest.approx(coefs["p_value"][r_name(t)], rel=1e-6)

    def test_logliks(self) -> None:
        ref = self.case["firth_AS_mean"]
        assert self.result.extra["penalized_loglik"] == pytest.approx(
            ref["firth_penalized_loglik"], rel=1e-8)
        assert self.result.loglik == pytest.approx(ref["loglik_at_estimate"], rel=1e-8)

    def test_jeffreys_crosscheck(self) -> None:
        """brglm2's MPL_Jeffreys equals AS_mean for the logit; we maximise that same objective."""
        jef = self.case["crosscheck_MPL_Jeffreys"]
        assert jef["max_abs_diff_vs_AS_mean"] < 1e-12
        for t, b in zip(self.result.terms, self.result.params, strict=True):
            assert b == pytest.approx(jef["estimate"][r_name(t)], rel=1e-6)
        assert penalized_loglik(self.X, self.y, self.result.params) == pytest.approx(
            self.result.extra["penalized_loglik"], rel=1e-12)

    def test_counts_and_convergence(self) -> None:
        assert self.result.nobs == self.case["n"]
        assert self.result.n_events == self.case["n_events"]
        assert self.result.converged and self.result.model == "firth"

    def test_profile_ci_property(self) -> None:
        """2[l*(b^) - max l* | b_j = bound] = chi2_1(0.95) at both bounds, by a brute-force profile."""
        r = self.result
        q = stats.chi2.ppf(0.95, 1)
        top = r.extra["penalized_loglik"]
        for j, t in enumerate(r.terms):
            lo, hi = r.extra["profile_ci"][t]
            assert lo < r.params[j] < hi
            for c in (lo, hi):
                drop = 2.0 * (top - brute_profile(self.X, self.y, j, c, r.params))
                assert drop == pytest.approx(q, rel=1e-6)

    def test_profile_p_values(self) -> None:
        r = self.result
        top = r.extra["penalized_loglik"]
        for j, t in enumerate(r.terms):
            drop = 2.0 * (top - brute_profile(self.X, self.y, j, 0.0, r.params))
            assert r.extra["profile_p"][t] == pytest.approx(stats.chi2.sf(drop, 1), rel=1e-5)


class TestEndometrial(CheckFirthAgainstBrglm2):
    @pytest.fixture(autouse=True)
    def _fit(self, endometrial: pd.DataFrame) -> None:
        self.case = load_ref("firth_logistic")["endometrial"]
        self.result = fit_firth(ENDO, endometrial)
        self.X = np.column_stack([np.ones(len(endometrial)),
                                  endometrial[["NV", "PI", "EH"]].to_numpy(float)])
        self.y = endometrial["HG"].to_numpy(float)
        self.data = endometrial

    def test_plain_ml_fails_but_firth_is_finite(self) -> None:
        with pytest.raises(SeparationError):
            fit(ENDO, self.data, model="logit")
        nv = self.result.index("NV")
        assert np.isfinite(self.result.params).all()
        assert self.result.params[nv] < self.case["plain_glm"]["estimate"]["NV"]
        lo, hi = self.result.extra["profile_ci"]["NV"]
        assert 0.0 < lo and np.isfinite(hi)  # finite upper bound despite quasi-separation


class TestSpaceShuttle(CheckFirthAgainstBrglm2):
    @pytest.fixture(autouse=True)
    def _fit(self, shuttle: pd.DataFrame) -> None:
        self.case = load_ref("firth_logistic")["space_shuttle"]
        self.result = fit_firth(SHUTTLE, shuttle)
        self.X = np.column_stack([np.ones(len(shuttle)), shuttle["Temperature"].to_numpy(float)])
        self.y = shuttle["fail"].to_numpy(float)

    def test_shrinks_towards_zero(self) -> None:
        ml = self.case["plain_glm"]["estimate"]["Temperature"]
        assert abs(ml) > abs(self.result.params[1])


def test_complete_separation_converges() -> None:
    d = pd.DataFrame({"y": [0, 0, 0, 0, 1, 1, 1, 1], "x": [1., 2., 3., 4., 5., 6., 7., 8.]})
    with pytest.raises(SeparationError):
        fit("y ~ x", d)
    r = fit_firth("y ~ x", d)
    assert r.converged and np.isfinite(r.params).all() and r.params[1] > 0
    lo, hi = r.extra["profile_ci"]["x"]
    assert 0.0 < lo < r.params[1] < hi < np.inf


def test_large_sample_agrees_with_ml() -> None:
    """The penalty is O(1) against an O(n) likelihood: Firth -> ML as n grows."""
    rng = np.random.default_rng(7)
    n = 200_000
    d = pd.DataFrame({"x": rng.normal(size=n), "z": rng.binomial(1, 0.3, size=n),
                      "g": rng.choice(["a", "b", "c"], size=n)})
    eta = -0.5 + 0.7 * d["x"] - 0.4 * d["z"] + 0.3 * (d["g"] == "b")
    d["y"] = rng.binomial(1, 1.0 / (1.0 + np.exp(-eta)))
    f = "y ~ x + z + C(g)"
    ml, fr = fit(f, d), fit_firth(f, d, profile=False)
    assert ml.terms == fr.terms
    np.testing.assert_allclose(fr.params, ml.params, rtol=0, atol=1e-4)
    assert np.max(np.abs(fr.params - ml.params) / ml.se) < 0.01
    np.testing.assert_allclose(fr.se, ml.se, rtol=1e-4)
    assert fr.loglik == pytest.approx(ml.loglik, rel=1e-7)
    assert fr.loglik <= ml.loglik  # ML maximises the ordinary log-likelihood


def test_frequency_weights_equal_replicated_rows(shuttle: pd.DataFrame) -> None:
    w = np.arange(len(shuttle)) % 3 + 1
    weighted = fit_firth(SHUTTLE, shuttle.assign(w=w), weights="w")
    expanded = fit_firth(SHUTTLE, shuttle.loc[shuttle.index.repeat(w)].reset_index(drop=True))
    np.testing.assert_allclose(weighted.params, expanded.params, rtol=1e-9)
    np.testing.assert_allclose(weighted.se, expanded.se, rtol=1e-9)
    assert weighted.loglik == pytest.approx(expanded.loglik, rel=1e-10)
    assert weighted.llnull == pytest.approx(expanded.llnull, rel=1e-10)
    for t in weighted.terms:
        np.testing.assert_allclose(weighted.extra["profile_ci"][t],
                                   expanded.extra["profile_ci"][t], rtol=1e-8)


def test_llnull_is_intercept_only_firth(shuttle: pd.DataFrame) -> None:
    r = fit_firth(SHUTTLE, shuttle)
    null = fit_firth("fail ~ 1", shuttle)
    p = (shuttle["fail"].sum() + 0.5) / (len(shuttle) + 1)
    assert null.params[0] == pytest.approx(np.log(p / (1 - p)), rel=1e-10)
    assert r.llnull == pytest.approx(null.loglik, rel=1e-12)
    assert r.extra["penalized_lr"]["df"] == 1
    assert r.extra["penalized_lr"]["chi2"] > 0


def test_json_round_trip_predicts(endometrial: pd.DataFrame) -> None:
    r = fit_firth(ENDO, endometrial)
    back = FitResult.from_dict(json.loads(json.dumps(r.to_dict())))
    assert back.model == "firth" and back.terms == r.terms
    np.testing.assert_array_equal(back.params, r.params)
    assert back.extra["profile_ci"] == r.extra["profile_ci"]
    new = endometrial.head(6)
    a, b = r.predict(new, se_fit=True), back.predict(new, se_fit=True)
    pd.testing.assert_frame_equal(a, b)
    eta = r.design_matrix(new) @ r.params
    np.testing.assert_allclose(a["estimate"], 1.0 / (1.0 + np.exp(-eta)), rtol=1e-12)


def test_errors(endometrial: pd.DataFrame) -> None:
    with pytest.raises(FormulaError, match="must be 0/1"):
        fit_firth("PI ~ EH", endometrial)
    with pytest.raises(RankDeficientError):
        fit_firth("HG ~ NV + PI + I(2 * PI)", endometrial)
    with pytest.raises(ConvergenceError, match="did not converge"):
        fit_firth(ENDO, endometrial, max_iter=2)


def test_no_intercept_and_profile_off(shuttle: pd.DataFrame) -> None:
    d = shuttle.assign(t=(shuttle["Temperature"] - 70.0) / 10.0)
    r = fit_firth("fail ~ 0 + t", d, profile=False)
    assert r.terms == ("t",) and not r.has_intercept
    assert r.llnull == pytest.approx(len(d) * np.log(0.5), rel=1e-12)
    assert "profile_ci" not in r.extra and "penalized_loglik" in r.extra
