"""Mean bias-reduced probit and cloglog regression, and fit_discrete(firth=True), against brglm2.

Reference: tests/reference/firth_binomial_links.json, written by firth_binomial_links.R with
brglm2 0.9 ``glm(..., method = "brglmFit", type = "AS_mean", epsilon = 1e-12)`` (the adjusted
score of Kosmidis & Firth 2009) on brglm2::endometrial and vcd::SpaceShuttle (probit, cloglog),
and on carData::Rossi as 4-week person-periods (cloglog, logit; the cluster-by-person sandwich
as sandwich::vcovCL, type HC1). Tolerances: estimates and SEs 1e-6 relative, the ordinary
log-likelihood at the estimate 1e-8 relative.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from conftest import REF, load_ref, r_name
from smesurvival.errors import FormulaError, SeparationError, UsageError
from smesurvival.models.discrete import fit_discrete, hazard_table
from smesurvival.models.firth import firth_glm, fit_firth
from smesurvival.models.fit import fit
from smesurvival.models.result import FitResult

REFS = load_ref("firth_binomial_links")
ENDO = "HG ~ NV + PI + EH"
SHUTTLE = "fail ~ Temperature"
COVS = ["finyes", "age", "raceother", "wexpyes", "marnotmarried", "paroyes", "prio"]
CUTS4 = list(range(4, 49, 4))


@pytest.fixture(scope="module")
def endometrial() -> pd.DataFrame:
    return pd.read_csv(REF / "data" / "brglm2_endometrial.csv")


@pytest.fixture(scope="module")
def shuttle() -> pd.DataFrame:
    d = pd.read_csv(REF / "data" / "vcd_SpaceShuttle.csv")
    d = d[d["Fail"].notna()].reset_index(drop=True)
    return d.assign(fail=(d["Fail"] == "yes").astype(int))


@pytest.fixture(scope="module")
def subjects(rossi: pd.DataFrame) -> pd.DataFrame:
    return rossi.assign(pid=np.arange(1, len(rossi) + 1))


def adjusted_score(X: np.ndarray, y: np.ndarray, b: np.ndarray, link: str) -> np.ndarray:
    """U* from its definition, with mu, mu' and mu'' of the inverse link written out."""
    eta = X @ b
    if link == "cloglog":
        e = np.exp(eta)
        mu, d1 = -np.expm1(-e), e * np.exp(-e)
        d2 = d1 * (1 - e)
    else:
        mu, d1 = stats.norm.cdf(eta), stats.norm.pdf(eta)
        d2 = -eta * d1
    W = d1**2 / (mu * (1 - mu))
    hat = W * np.einsum("ij,jk,ik->i", X, np.linalg.inv(X.T @ (X * W[:, None])), X)
    return X.T @ ((y - mu) * d1 / (mu * (1 - mu)) + 0.5 * hat * d2 / d1)


class CheckLinkAgainstBrglm2:
    case: dict
    result: FitResult
    X: np.ndarray
    y: np.ndarray
    link: str

    def test_coefficients(self) -> None:
        want = self.case["coefficients"]["estimate"]
        for t, b in zip(self.result.terms, self.result.params, strict=True):
            assert b == pytest.approx(want[r_name(t)], rel=1e-6)

    def test_standard_errors_and_z(self) -> None:
        c = self.case["coefficients"]
        for t, s, z in zip(self.result.terms, self.result.se, self.result.zvalues, strict=True):
            assert s == pytest.approx(c["se"][r_name(t)], rel=1e-6)
            assert z == pytest.approx(c["z"][r_name(t)], rel=1e-6)

    def test_loglik_and_counts(self) -> None:
        r = self.result
        assert r.loglik == pytest.approx(self.case["loglik_at_estimate"], rel=1e-8)
        assert r.nobs == self.case["n"] and r.n_events == self.case["n_events"]
        assert r.model == "firth" and r.link == self.link and r.converged
        assert r.extra["bias_reduction"] == "AS_mean" and "penalized_loglik" not in r.extra

    def test_adjusted_score_is_zero(self) -> None:
        assert self.case["max_abs_adjusted_score"] < 1e-9  # brglm2 solved the same equation
        u = adjusted_score(self.X, self.y, self.result.params, self.link)
        assert np.max(np.abs(u)) < 1e-8


def _endo_arrays(d: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    return np.column_stack([np.ones(len(d)), d[["NV", "PI", "EH"]].to_numpy(float)]), \
        d["HG"].to_numpy(float)


class TestEndometrialCloglog(CheckLinkAgainstBrglm2):
    link = "cloglog"

    @pytest.fixture(autouse=True)
    def _fit(self, endometrial: pd.DataFrame) -> None:
        self.case = REFS["endometrial"][self.link]
        self.result = fit_firth(ENDO, endometrial, link=self.link)  # type: ignore[arg-type]
        self.X, self.y = _endo_arrays(endometrial)
        self.data = endometrial

    def test_ml_is_separated_firth_finite(self) -> None:
        with pytest.raises(SeparationError):
            fit(ENDO, self.data, model=self.link)  # type: ignore[arg-type]
        assert np.isfinite(self.result.params).all() and 0 < self.result.params[1] < 3


class TestEndometrialProbit(TestEndometrialCloglog):
    link = "probit"


class TestShuttleCloglog(CheckLinkAgainstBrglm2):
    link = "cloglog"

    @pytest.fixture(autouse=True)
    def _fit(self, shuttle: pd.DataFrame) -> None:
        self.case = REFS["space_shuttle"][self.link]
        self.result = fit_firth(SHUTTLE, shuttle, link=self.link)  # type: ignore[arg-type]
        self.X = np.column_stack([np.ones(len(shuttle)), shuttle["Temperature"].to_numpy(float)])
        self.y = shuttle["fail"].to_numpy(float)

    def test_shrinks_towards_zero(self) -> None:
        ml = self.case["plain_ml"]["estimate"]["Temperature"]
        assert abs(self.result.params[1]) < abs(ml)


class TestShuttleProbit(TestShuttleCloglog):
    link = "probit"


# ------------------------------------------------------------------ properties of fit_firth


def test_large_sample_agrees_with_ml() -> None:
    rng = np.random.default_rng(9)
    n = 30_000
    d = pd.DataFrame({"x": rng.normal(size=n), "z": rng.binomial(1, 0.3, size=n)})
    d["y"] = rng.binomial(1, 1 - np.exp(-np.exp(-1.5 + 0.5 * d["x"] - 0.4 * d["z"])))
    for link in ("cloglog", "probit"):
        ml = fit("y ~ x + z", d, model=link)  # type: ignore[arg-type]
        fr = fit_firth("y ~ x + z", d, link=link)  # type: ignore[arg-type]
        assert np.max(np.abs(fr.params - ml.params) / ml.se) < 0.01
        np.testing.assert_allclose(fr.se, ml.se, rtol=1e-3)
        assert fr.loglik <= ml.loglik and fr.llnull == pytest.approx(ml.llnull, rel=1e-4)


def test_frequency_weights_equal_replicated_rows(shuttle: pd.DataFrame) -> None:
    w = np.arange(len(shuttle)) % 3 + 1
    a = fit_firth(SHUTTLE, shuttle.assign(w=w), weights="w", link="cloglog")
    b = fit_firth(SHUTTLE, shuttle.loc[shuttle.index.repeat(w)].reset_index(drop=True),
                  link="cloglog")
    np.testing.assert_allclose(a.params, b.params, rtol=1e-9)
    np.testing.assert_allclose(a.se, b.se, rtol=1e-9)
    assert a.loglik == pytest.approx(b.loglik, rel=1e-10)


def test_kernel_on_arrays(endometrial: pd.DataFrame) -> None:
    X, y = _endo_arrays(endometrial)
    k = firth_glm(X, y, link="probit")
    r = fit_firth(ENDO, endometrial, link="probit")
    assert k.converged and k.penalized_loglik is None
    np.testing.assert_allclose(k.params, r.params, rtol=1e-12)
    lg = firth_glm(X, y, link="logit")  # the logit kernel reports its penalised likelihood
    ref = load_ref("firth_logistic")["endometrial"]["firth_AS_mean"]
    assert lg.penalized_loglik == pytest.approx(ref["firth_penalized_loglik"], rel=1e-8)


def test_json_round_trip_predicts_with_the_link(shuttle: pd.DataFrame) -> None:
    r = fit_firth(SHUTTLE, shuttle, link="cloglog", vcov="hc0")
    back = FitResult.from_dict(json.loads(json.dumps(r.to_dict())))
    assert back.link == "cloglog" and back.vcov_type == "hc0"
    a, b = r.predict(shuttle.head(4), se_fit=True), back.predict(shuttle.head(4), se_fit=True)
    pd.testing.assert_frame_equal(a, b)
    eta = r.design_matrix(shuttle.head(4)) @ r.params
    np.testing.assert_allclose(a["estimate"], 1 - np.exp(-np.exp(eta)), rtol=1e-12)


def test_errors(endometrial: pd.DataFrame) -> None:
    with pytest.raises(UsageError, match="link"):
        fit_firth(ENDO, endometrial, link="cauchit")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="profile"):
        fit_firth(ENDO, endometrial, link="cloglog", profile=True)
    with pytest.raises(UsageError, match="cluster column"):
        fit_firth(ENDO, endometrial, vcov="cluster")
    with pytest.raises(UsageError, match="'nope' is not in the data"):
        fit_firth(ENDO, endometrial, link="probit", vcov="cluster", cluster="nope")
    with pytest.raises(FormulaError, match="must be 0/1"):
        fit_firth("PI ~ EH", endometrial, link="cloglog")


# ------------------------------------------------------------------ fit_discrete(firth=True)


def _r_term(t: str) -> str:
    if t.startswith("C(period)["):
        return "period_f" + t.removeprefix("C(period)[").removesuffix("]")
    return {"marnotmarried": "marnot married"}.get(t, t)


@pytest.mark.parametrize("link", ["cloglog", "logit"])
@pytest.mark.parametrize("vcov", ["classical", "cluster"])
def test_discrete_firth_matches_brglm2(subjects: pd.DataFrame, link: str, vcov: str) -> None:
    ref = REFS["rossi_discrete"][link]
    r = fit_discrete(" + ".join(COVS), subjects, duration="week", event="arrest", id="pid",
                     link=link, cuts=CUTS4, vcov=vcov, firth=True)  # type: ignore[arg-type]
    assert r.model == "discrete" and r.link == link and r.extra["firth"] is True
    assert [_r_term(t) for t in r.terms] == ref["columns"]
    want = ref["coefficients"]["se"] if vcov == "classical" else ref["cluster_se"]["se"]
    for t, b, s in zip(r.terms, r.params, r.se, strict=True):
        assert b == pytest.approx(ref["coefficients"]["estimate"][_r_term(t)], rel=1e-6)
        assert s == pytest.approx(want[_r_term(t)], rel=1e-6)
    assert r.loglik == pytest.approx(ref["loglik_at_estimate"], rel=1e-8)
    assert r.nobs == ref["n"] == 4991 and r.n_events == 114
    if vcov == "cluster":
        assert r.n_clusters == ref["cluster_se"]["n_clusters"] == 432
    assert ("penalized_loglik" in r.extra) == (link == "logit")


def test_discrete_default_is_ml_and_hazards_work(subjects: pd.DataFrame) -> None:
    kw = {"duration": "week", "event": "arrest", "id": "pid", "cuts": CUTS4}
    ml = fit_discrete(" + ".join(COVS), subjects, **kw)  # type: ignore[arg-type]
    br = fit_discrete(" + ".join(COVS), subjects, firth=True, **kw)  # type: ignore[arg-type]
    assert ml.extra["firth"] is False and "bias_reduction" not in ml.extra
    # bias reduction pulls the per-period log hazards of a rare event up (ML is biased down)
    assert np.all(br.params[:13] > ml.params[:13])
    tab = hazard_table(br, subjects.head(2))
    assert len(tab) == 26 and (tab["hazard"] > 0).all() and (np.diff(tab["survival"][:13]) < 0).all()


def test_discrete_firth_errors(subjects: pd.DataFrame) -> None:
    with pytest.raises(UsageError, match="information"):
        fit_discrete("age", subjects, duration="week", event="arrest", id="pid", cuts=CUTS4,
                     firth=True, information="observed")
