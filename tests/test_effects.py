"""Predictions, marginal effects and simple slopes vs R (tests/reference/logit_interaction.json,
key ``average_marginal_effects``, script ``logit_interaction.R``) and vs closed forms."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from conftest import load_ref
from smesurvival.errors import UsageError
from smesurvival.inference.effects import (
    avg_predictions,
    avg_slopes,
    conditional_predictions,
    datagrid,
    predictions,
    simple_slopes,
    slopes,
)
from smesurvival.models.cox import fit_cox, predict_survival
from smesurvival.models.fit import fit

FORMULA = "lfp ~ k5 + k618 + age + wcyes + hcyes + lwg + inc + wcyes:inc"
AME = load_ref("logit_interaction")["average_marginal_effects"]
# R's SEs use a Jacobian from central differences (step 1e-6 on b) of an AME that is itself a
# finite difference (h = 1e-5): its entries carry rounding noise up to ~1e-4 relative, so the
# R SEs are accurate to ~1e-5 only. Ours use the exact Jacobian (checked to 1e-9 against the
# closed form below), hence this tolerance for the R comparison.
R_SE_RTOL = 1.5e-5


@pytest.fixture(scope="module")
def fits(mroz: pd.DataFrame) -> dict[str, object]:
    return {"classical": fit(FORMULA, mroz), "hc1": fit(FORMULA, mroz, vcov="hc1")}


def _ames(r, d) -> dict[str, object]:
    by_wc = avg_slopes(r, d, "inc", at={"wcyes": [0, 1]})
    return {
        "ame_inc": avg_slopes(r, d, "inc"),
        "ame_inc_at_wc_no": _row(by_wc, 0),
        "ame_inc_at_wc_yes": _row(by_wc, 1),
        "ame_interaction": by_wc.contrast(1, 0),
        "ame_wc": avg_slopes(r, d, "wcyes"),
    }


def _row(eff, i):
    return replace(eff, estimate=eff.estimate[i:i + 1], jacobian=eff.jacobian[i:i + 1],
                   labels=eff.labels.iloc[i:i + 1])


KEYS = ["ame_inc", "ame_inc_at_wc_no", "ame_inc_at_wc_yes", "ame_interaction", "ame_wc"]


@pytest.mark.parametrize("key", KEYS)
def test_ame_matches_r_finite_difference(fits, mroz, key):
    est = _ames(fits["classical"], mroz)[key].estimate[0]
    np.testing.assert_allclose(est, AME["finite_difference"][key], rtol=1e-6)


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("vcov,ref_key", [("classical", "se_delta_method_model_vcov"),
                                          ("hc1", "se_delta_method_HC1_vcov")])
def test_ame_se_matches_r_delta_method(fits, mroz, key, vcov, ref_key):
    se = _ames(fits[vcov], mroz)[key].std_error[0]
    np.testing.assert_allclose(se, AME[ref_key][key], rtol=R_SE_RTOL)


def _closed_form(beta: np.ndarray, X1: np.ndarray, X0: np.ndarray, Xobs: np.ndarray,
                 wc: np.ndarray, i_inc: int, i_int: int) -> np.ndarray:
    """R's 'analytic' AMEs: dP/dinc = p(1-p)(b_inc + b_int 1[wc]) and the wc discrete change."""
    def p(X):
        return 1.0 / (1.0 + np.exp(-X @ beta))
    p1, p0, po = p(X1), p(X0), p(Xobs)
    s0, s1 = beta[i_inc], beta[i_inc] + beta[i_int]
    return np.array([
        np.mean(po * (1 - po) * (s0 + beta[i_int] * wc)), np.mean(p0 * (1 - p0) * s0),
        np.mean(p1 * (1 - p1) * s1), np.mean(p1 * (1 - p1) * s1 - p0 * (1 - p0) * s0),
        np.mean(p1 - p0)])


def test_analytic_closed_form_and_independent_jacobian(fits, mroz):
    """Estimates vs the closed form (R's ``analytic``); SEs vs a finite-difference Jacobian of it."""
    r = fits["classical"]
    X1, X0 = r.design_matrix(mroz.assign(wcyes=1)), r.design_matrix(mroz.assign(wcyes=0))
    Xo = r.design_matrix(mroz)
    args = (X1, X0, Xo, mroz["wcyes"].to_numpy(float), r.index("inc"), r.index("wcyes:inc"))
    exact = _closed_form(r.params, *args)
    np.testing.assert_allclose(exact, [AME["analytic"][k] for k in KEYS], rtol=1e-9)
    ours = _ames(r, mroz)
    np.testing.assert_allclose([ours[k].estimate[0] for k in KEYS], exact, rtol=1e-8)
    J = np.zeros((5, r.k))
    for j in range(r.k):
        e = np.zeros(r.k)
        e[j] = 1e-6
        J[:, j] = (_closed_form(r.params + e, *args) - _closed_form(r.params - e, *args)) / 2e-6
    se_fd = np.sqrt(np.einsum("ij,jk,ik->i", J, r.vcov, J))
    np.testing.assert_allclose([ours[k].std_error[0] for k in KEYS], se_fd, rtol=1e-7)


def test_numeric_jacobian_option_agrees(fits, mroz):
    r = fits["hc1"]
    a = avg_slopes(r, mroz, "inc", at={"wcyes": [0, 1]})
    n = avg_slopes(r, mroz, "inc", at={"wcyes": [0, 1]}, jacobian="numeric")
    np.testing.assert_allclose(n.std_error, a.std_error, rtol=1e-5)


def test_unit_level_pairs_with_averages(fits, mroz):
    r = fits["classical"]
    u = slopes(r, mroz, "inc", by="hcyes")
    a = avg_slopes(r, mroz, "inc", by="hcyes")
    grp = u.frame.groupby("hcyes")["estimate"].mean()
    np.testing.assert_allclose(a.estimate, grp.to_numpy(), rtol=1e-12)
    np.testing.assert_allclose(a.jacobian, [u.jacobian[mroz["hcyes"].to_numpy() == g].mean(0)
                                            for g in (0, 1)], rtol=1e-10)
    assert list(a.frame.columns[:7]) == ["term", "estimate", "std_error", "statistic", "p_value",
                                         "conf_low", "conf_high"]
    # unit-level slope = p(1-p)(b_inc + b_int wc) per row
    p = r.predict(mroz)["estimate"].to_numpy()
    want = p * (1 - p) * (r.params[r.index("inc")] + r.params[r.index("wcyes:inc")] * mroz["wcyes"])
    np.testing.assert_allclose(u.estimate, want, rtol=1e-7)


def test_mem_and_binary_override(fits, mroz):
    r = fits["classical"]
    mem = avg_slopes(r, mroz, "inc", at="means")
    cols = ["k5", "k618", "age", "wcyes", "hcyes", "lwg", "inc"]
    x = r.design_matrix(datagrid(mroz, columns=cols))[0]
    p = 1 / (1 + np.exp(-x @ r.params))
    wc_bar = mroz["wcyes"].mean()
    want = p * (1 - p) * (r.params[r.index("inc")] + r.params[r.index("wcyes:inc")] * wc_bar)
    np.testing.assert_allclose(mem.estimate[0], want, rtol=1e-8)
    # wcyes as a derivative rather than a discrete change
    d = avg_slopes(r, mroz, "wcyes", binary=False)
    po = r.predict(mroz)["estimate"].to_numpy()
    want_d = np.mean(po * (1 - po) * (r.params[r.index("wcyes")] + r.params[r.index("wcyes:inc")] * mroz["inc"]))
    np.testing.assert_allclose(d.estimate[0], want_d, rtol=1e-8)
    assert d.frame["contrast"][0] == "dY/dX"
    assert avg_slopes(r, mroz, "wcyes").frame["contrast"][0] == "1 - 0"


def test_contrast_se_from_covariance(fits, mroz):
    r = fits["classical"]
    eff = avg_slopes(r, mroz, "inc", at={"wcyes": [0, 1]})
    c = eff.contrast(1, 0)
    cov = eff.cov
    np.testing.assert_allclose(c.std_error[0], np.sqrt(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]), rtol=1e-12)
    assert c.frame["contrast"][0] == "wcyes=1 - wcyes=0"
    json.dumps(c.to_records())


@pytest.mark.parametrize("formula,center", [("lfp ~ k5 + age * lwg + inc", False),
                                            ("lfp ~ k5 + center(age) * lwg + inc", True)])
def test_simple_slopes_link_closed_form(mroz, formula, center):
    r = fit(formula, mroz)
    ss = simple_slopes(r, mroz, "lwg", "age", values="meansd", scale="link")
    age = mroz["age"].to_numpy(float)
    m = np.array([age.mean() - age.std(ddof=1), age.mean(), age.mean() + age.std(ddof=1)])
    inter = "center(age):lwg" if center else "age:lwg"
    mm = m - age.mean() if center else m
    i, k = r.index("lwg"), r.index(inter)
    np.testing.assert_allclose(ss.estimate, r.params[i] + r.params[k] * mm, rtol=1e-9)
    se = np.sqrt(r.vcov[i, i] + 2 * mm * r.vcov[i, k] + mm ** 2 * r.vcov[k, k])
    np.testing.assert_allclose(ss.std_error, se, rtol=1e-9)
    assert list(ss.frame["value_label"]) == ["mean - 1 SD", "mean", "mean + 1 SD"]
    q = simple_slopes(r, mroz, "lwg", "age", values="quantiles", scale="response")
    ref = avg_slopes(r, mroz, "lwg", at={"age": list(np.quantile(age, [0.25, 0.5, 0.75]))})
    np.testing.assert_allclose(q.estimate, ref.estimate, rtol=1e-12)


@pytest.mark.parametrize("model", ["logit", "probit", "cloglog"])
def test_predictions_match_predict_se_fit(mroz, model):
    r = fit("lfp ~ k5 + age * lwg + C(wc)", mroz, model=model)
    p = predictions(r, mroz)
    q = r.predict(mroz, se_fit=True)
    for col in ("estimate", "std_error", "conf_low", "conf_high"):
        np.testing.assert_allclose(p.frame[col], q[col], rtol=1e-10, atol=1e-14)
    link = predictions(r, newdata=mroz.head(5), type="link")
    np.testing.assert_allclose(link.estimate, r.predict(mroz.head(5), type="link")["estimate"])
    # independent FD Jacobian of the average prediction
    a = avg_predictions(r, mroz, at={"wc": ["no", "yes"]})

    def avg(b):
        return np.array([replace(r, params=b).predict(mroz.assign(wc=v))["estimate"].mean()
                         for v in ("no", "yes")])
    J = np.column_stack([(avg(r.params + e) - avg(r.params - e)) / 2e-6
                         for e in np.eye(r.k) * 1e-6])
    np.testing.assert_allclose(a.std_error, np.sqrt(np.diag(J @ r.vcov @ J.T)), rtol=1e-6)


def test_cox_survival_and_hr(rossi):
    r = fit_cox("finyes + age * prio", rossi, duration="week", event="arrest")
    p = predictions(r, rossi, type="survival", horizon=26)
    s = predict_survival(r, rossi, np.array([26.0])).iloc[:, 0].to_numpy()
    np.testing.assert_allclose(p.estimate, s, rtol=1e-12)
    assert (p.frame["conf_low"] <= p.estimate).all() and (p.frame["conf_high"] >= p.estimate).all()
    # SE: baseline at the covariate means held fixed -> d S / d b = -S u (x - xbar)
    X = r.design_matrix(rossi)
    xbar = np.array([r.extra["means"][t] for t in r.terms])
    Xc = X - xbar
    u = -np.log(s)
    J = (-s * u)[:, None] * Xc
    np.testing.assert_allclose(p.std_error, np.sqrt(np.einsum("ij,jk,ik->i", J, r.vcov, J)), rtol=1e-10)
    hr = predictions(r, newdata=datagrid(rossi, {"finyes": [0, 1]}, columns=["finyes", "age", "prio"]),
                     type="hr", reference={"finyes": 0})
    np.testing.assert_allclose(hr.estimate, [1.0, np.exp(r.params[r.index("finyes")])], rtol=1e-12)
    i = r.index("finyes")
    np.testing.assert_allclose(hr.frame["conf_high"][1],
                               np.exp(r.params[i] + 1.959963984540054 * r.se[i]), rtol=1e-9)
    sl = avg_slopes(r, rossi, "finyes", type="link")
    np.testing.assert_allclose(sl.estimate[0], r.params[r.index("finyes")], rtol=1e-12)
    ms = avg_slopes(r, rossi, "prio", type="survival", horizon=26)
    assert ms.estimate[0] < 0


def test_conditional_predictions_frame(mroz):
    r = fit("lfp ~ k5 + age * lwg", mroz)
    cp = conditional_predictions(r, mroz, "lwg", "age", n_points=5)
    f = cp.frame
    assert len(f) == 15 and set(f["value_label"]) == {"mean - 1 SD", "mean", "mean + 1 SD"}
    typ = conditional_predictions(r, mroz, "lwg", "age", n_points=5, average=False)
    assert len(typ.frame) == 15


def test_errors(fits, mroz, rossi):
    r = fits["classical"]
    with pytest.raises(UsageError, match="not in the data"):
        avg_slopes(r, mroz, "nope")
    with pytest.raises(UsageError, match="does not enter the model"):
        avg_slopes(r, mroz, "hc")
    rc = fit("lfp ~ k5 + C(wc) * inc", mroz)
    with pytest.raises(UsageError, match="not numeric"):
        avg_slopes(rc, mroz, "wc")
    with pytest.raises(UsageError, match="effects are available"):
        avg_slopes(replace(r, model="finegray"), mroz, "inc")
    with pytest.raises(UsageError, match="type must be"):
        avg_slopes(r, mroz, "inc", type="survival")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="at must be"):
        avg_slopes(r, mroz, "inc", at="median")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="horizon"):
        predictions(fit_cox("prio", rossi, duration="week", event="arrest"), rossi, type="survival")
    with pytest.raises(UsageError, match="data="):
        predictions(r)
