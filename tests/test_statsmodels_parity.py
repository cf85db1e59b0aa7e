"""Binary models against statsmodels on generated data, to 1e-8 (issue 2's acceptance).

statsmodels is run at tight tolerances so the comparison measures our code, not its stopping rule.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from smesurvival.models.fit import fit

F = "y ~ x * z + C(g)"


def _X(d: pd.DataFrame) -> np.ndarray:
    return np.column_stack([np.ones(len(d)), d.x, d.z, d.g == "b", d.g == "c", d.x * d.z]).astype(float)


def _close(ours: np.ndarray, theirs: np.ndarray, rtol: float = 1e-8) -> None:
    np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=1e-12)


def test_term_order_matches_the_hand_built_design(binary_data: pd.DataFrame) -> None:
    r = fit(F, binary_data)
    assert r.terms == ("Intercept", "x", "z", "C(g)[T.b]", "C(g)[T.c]", "x:z")


def test_logit_matches_statsmodels_logit(binary_data: pd.DataFrame) -> None:
    d = binary_data
    ref = sm.Logit(d.y, _X(d)).fit(method="newton", tol=1e-14, maxiter=100, disp=0)
    r = fit(F, d)
    _close(r.params, ref.params)
    _close(r.se, ref.bse)
    assert r.loglik == pytest.approx(ref.model.loglike(r.params), rel=1e-12)
    ybar = d.y.mean()  # closed form of the intercept-only log-likelihood (statsmodels' is looser)
    n = len(d)
    assert r.llnull == pytest.approx(n * (ybar * np.log(ybar) + (1 - ybar) * np.log(1 - ybar)), rel=1e-13)
    assert r.pseudo_r2_mcfadden == pytest.approx(ref.prsquared, rel=1e-9)
    assert r.aic == pytest.approx(ref.aic, rel=1e-9)
    assert r.bic == pytest.approx(ref.bic, rel=1e-9)


def test_logit_heteroskedasticity_robust(binary_data: pd.DataFrame) -> None:
    """HC0 equals statsmodels'; our HC1 is R sandwich's HC0 * n / (n - k) (tested against R in
    test_logit_reference), whereas statsmodels' HC1 for likelihood models omits that factor."""
    d = binary_data
    ref = sm.Logit(d.y, _X(d)).fit(method="newton", tol=1e-14, disp=0, cov_type="HC0")
    r0 = fit(F, d, vcov="hc0")
    _close(r0.se, ref.bse)
    r1 = fit(F, d, vcov="hc1")
    n, k = len(d), 6
    _close(r1.se, ref.bse * np.sqrt(n / (n - k)))


def test_logit_cluster_robust(binary_data: pd.DataFrame) -> None:
    d = binary_data
    ref = sm.Logit(d.y, _X(d)).fit(method="newton", tol=1e-14, maxiter=100, disp=0,
                                    cov_type="cluster", cov_kwds={"groups": d.cl.to_numpy()})
    r = fit(F, d, vcov="cluster", cluster="cl")
    _close(r.params, ref.params)
    _close(r.se, ref.bse)
    assert r.n_clusters == 40


def test_probit_observed_information_matches_statsmodels_probit(binary_data: pd.DataFrame) -> None:
    d = binary_data
    ref = sm.Probit(d.y, _X(d)).fit(method="newton", tol=1e-14, maxiter=100, disp=0)
    r = fit(F, d, model="probit", information="observed")
    _close(r.params, ref.params)
    _close(r.se, ref.bse)
    assert r.loglik == pytest.approx(ref.llf, rel=1e-12)


def test_probit_cluster_matches_statsmodels_probit(binary_data: pd.DataFrame) -> None:
    d = binary_data
    ref = sm.Probit(d.y, _X(d)).fit(method="newton", tol=1e-14, maxiter=100, disp=0,
                                     cov_type="cluster", cov_kwds={"groups": d.cl.to_numpy()})
    r = fit(F, d, model="probit", information="observed", vcov="cluster", cluster="cl")
    _close(r.se, ref.bse)


@pytest.mark.parametrize("link,sm_link", [("probit", sm.families.links.Probit()),
                                          ("cloglog", sm.families.links.CLogLog())])
def test_expected_information_matches_statsmodels_glm(binary_data, link, sm_link) -> None:
    d = binary_data
    ref = sm.GLM(d.y, _X(d), family=sm.families.Binomial(link=sm_link)).fit(tol=1e-15, maxiter=500)
    r = fit(F, d, model=link)
    _close(r.params, ref.params, 1e-8)
    _close(r.se, ref.bse, 1e-8)
    assert r.loglik == pytest.approx(ref.llf, rel=1e-12)


def test_cloglog_cluster_matches_statsmodels_glm(binary_data: pd.DataFrame) -> None:
    """statsmodels' GLM sandwiches use the observed Hessian as bread: information='observed'."""
    d = binary_data
    ref = sm.GLM(d.y, _X(d), family=sm.families.Binomial(link=sm.families.links.CLogLog())).fit(
        tol=1e-15, maxiter=500, cov_type="cluster", cov_kwds={"groups": d.cl.to_numpy()})
    r = fit(F, d, model="cloglog", vcov="cluster", cluster="cl", information="observed")
    _close(r.params, ref.params, 1e-8)
    _close(r.se, ref.bse, 1e-8)


def test_frequency_weights_match_statsmodels_and_row_replication(binary_data: pd.DataFrame) -> None:
    d = binary_data
    ref = sm.GLM(d.y, _X(d), family=sm.families.Binomial(), freq_weights=d.w).fit(tol=1e-14)
    r = fit(F, d, weights="w")
    _close(r.params, ref.params)
    _close(r.se, ref.bse)
    assert r.loglik == pytest.approx(ref.llf, rel=1e-12)
    rep = d.loc[d.index.repeat(d.w.astype(int))].reset_index(drop=True)
    r2 = fit(F, rep)
    _close(r.params, r2.params, 1e-9)
    _close(r.se, r2.se, 1e-9)
    assert r.bic == pytest.approx(r2.bic, rel=1e-10)


def test_survey_weights_use_a_weighted_sandwich(binary_data: pd.DataFrame) -> None:
    """pweights: point estimates as frequency weights; V = B (sum w_i^2 s_i s_i') B (HC0)."""
    d = binary_data
    r = fit(F, d, weights="w", weights_kind="survey", vcov="hc0")
    X = _X(d)
    p = 1 / (1 + np.exp(-X @ r.params))
    w = d.w.to_numpy()
    B = np.linalg.inv((X * (w * p * (1 - p))[:, None]).T @ X)
    s = X * (w * (d.y.to_numpy() - p))[:, None]
    _close(r.vcov, B @ (s.T @ s) @ B, 1e-8)


def test_predict_matches_statsmodels(binary_data: pd.DataFrame) -> None:
    d = binary_data
    ref = sm.Logit(d.y, _X(d)).fit(method="newton", tol=1e-14, disp=0)
    r = fit(F, d)
    new = d.iloc[:25]
    _close(r.predict(new)["estimate"].to_numpy(), ref.predict(_X(new)))
    link = r.predict(new, type="link", se_fit=True)
    se = np.sqrt(np.einsum("ij,jk,ik->i", _X(new), ref.cov_params(), _X(new)))
    _close(link["std_error"].to_numpy(), se, 1e-7)


def test_results_round_trip_through_json_and_still_predict(binary_data: pd.DataFrame) -> None:
    import json

    from smesurvival.models.result import FitResult

    r = fit("y ~ center(x) * z + C(g)", binary_data, vcov="hc1")
    back = FitResult.from_dict(json.loads(json.dumps(r.to_dict())))
    _close(back.params, r.params, 1e-15)
    _close(back.vcov, r.vcov, 1e-15)
    assert back.terms == r.terms and back.flow == r.flow
    new = binary_data.iloc[:7]
    _close(back.predict(new, se_fit=True).to_numpy(), r.predict(new, se_fit=True).to_numpy(), 1e-12)
