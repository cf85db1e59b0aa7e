"""Johnson–Neyman regions, Ai–Norton interaction effects and the effect figures."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from conftest import load_ref
from smesurvival.errors import UsageError
from smesurvival.inference.ai_norton import ai_norton
from smesurvival.inference.effects import avg_slopes, conditional_predictions
from smesurvival.inference.effects_base import numeric_jacobian
from smesurvival.inference.johnson_neyman import johnson_neyman, quadratic_regions
from smesurvival.models.cox import fit_cox
from smesurvival.models.fit import fit
from smesurvival.report.effect_figures import (
    ai_norton_figure,
    conditional_effect_figure,
    johnson_neyman_figure,
)
from smesurvival.report.figures import SYNTHETIC_GID, SYNTHETIC_MARK

AME = load_ref("logit_interaction")["average_marginal_effects"]
Z95 = stats.norm.ppf(0.975)


@pytest.fixture(scope="module")
def jn_fit(mroz: pd.DataFrame):
    return fit("lfp ~ k5 + age * lwg + inc + wcyes", mroz)


# ---- Johnson–Neyman ------------------------------------------------------------------------------
@pytest.mark.parametrize("focal,moderator", [("lwg", "age"), ("age", "lwg")])
def test_jn_link_bounds_are_the_quadratic_roots(jn_fit, mroz, focal, moderator):
    r = jn_fit
    jn = johnson_neyman(r, mroz, focal, moderator, scale="link")
    i, k = r.index(focal), r.index("age:lwg")
    b, V = r.params, r.vcov
    # (b_f + b_fm m)^2 - z^2 (V_ff + 2 m V_fk + m^2 V_kk) = 0, solved independently
    coefs = [b[k] ** 2 - Z95 ** 2 * V[k, k], 2 * (b[i] * b[k] - Z95 ** 2 * V[i, k]),
             b[i] ** 2 - Z95 ** 2 * V[i, i]]
    roots = np.sort(np.roots(coefs).real)
    np.testing.assert_allclose(jn.bounds, roots, rtol=1e-9)
    for m in jn.bounds:
        t = (b[i] + b[k] * m) / np.sqrt(V[i, i] + 2 * m * V[i, k] + m * m * V[k, k])
        assert abs(abs(t) - Z95) < 1e-8
    assert jn.region == ("outside" if coefs[0] > 0 else "inside")
    lo, hi = jn.observed_range
    assert jn.bounds_in_range == tuple(lo <= x <= hi for x in jn.bounds)
    f = jn.frame
    inside = np.array([any(a < m < c for a, c in jn.significant) for m in f[moderator]])
    np.testing.assert_array_equal(f["significant"].to_numpy(), inside)
    assert "differs from zero" in jn.describe()


def test_quadratic_region_kinds():
    # slope 1 + m with SE 0.1 everywhere: significant outside -1 -+ 0.196
    roots, kind, sig = quadratic_regions(1.0, 1.0, 0.01, 0.0, 0.0, 1.96)
    assert kind == "outside" and len(sig) == 2
    np.testing.assert_allclose(roots, [-1.196, -0.804], rtol=1e-12)
    _, kind, sig = quadratic_regions(5.0, 0.0, 1.0, 0.0, 0.0, 1.96)
    assert kind == "everywhere" and sig == ((-np.inf, np.inf),)
    _, kind, sig = quadratic_regions(0.1, 0.0, 1.0, 0.0, 1.0, 1.96)
    assert kind == "nowhere" and sig == ()
    roots, kind, sig = quadratic_regions(3.0, 0.0, 0.01, 0.0, 1.0, 1.96)
    assert kind == "inside" and sig == ((roots[0], roots[1]),)
    roots, kind, sig = quadratic_regions(1.0, 1.96, 1.0, 0.0, 1.0, 1.96)  # A = 0: linear
    assert kind == "above" and sig == ((roots[0], np.inf),)
    np.testing.assert_allclose(roots[0], (1.96 ** 2 - 1.0) / (2 * 1.96), rtol=1e-12)


def test_jn_response_crossing_has_zero_bound(jn_fit, mroz):
    jn = johnson_neyman(jn_fit, mroz, "lwg", "age", scale="response", grid=41)
    assert jn.bounds, "expected a crossing inside the observed age range"
    for m in jn.bounds:
        e = avg_slopes(jn_fit, mroz, "lwg", at={"age": [m]}).frame.iloc[0]
        assert min(abs(e["conf_low"]), abs(e["conf_high"])) < 1e-9
    assert jn.region == "numeric"


def test_jn_simultaneous_band(jn_fit, mroz):
    a = johnson_neyman(jn_fit, mroz, "lwg", "age", band="simultaneous", seed=1)
    b = johnson_neyman(jn_fit, mroz, "lwg", "age", band="simultaneous", seed=1)
    assert a.critical_value == b.critical_value
    # wider than pointwise, narrower than Scheffe over the 2-dim slope family
    assert Z95 < a.critical_value < np.sqrt(stats.chi2.ppf(0.95, 2)) + 0.02
    f = a.frame
    np.testing.assert_allclose(f["conf_high"] - f["estimate"], a.critical_value * f["std_error"])


# ---- Ai–Norton --------------------------------------------------------------------------------------
def _p(r, d):
    return r.predict(d)["estimate"].to_numpy()


@pytest.mark.parametrize("model", ["logit", "probit"])
def test_ai_norton_cross_partial_vs_numerical(mroz, model):
    r = fit("lfp ~ k5 + age * inc + lwg", mroz, model=model)
    an = ai_norton(r, mroz, "age", "inc")
    h1, h2 = 1e-3 * mroz["age"].std(), 1e-3 * mroz["inc"].std()
    a, b = mroz["age"], mroz["inc"]
    num = (_p(r, mroz.assign(age=a + h1, inc=b + h2)) - _p(r, mroz.assign(age=a + h1, inc=b - h2))
           - _p(r, mroz.assign(age=a - h1, inc=b + h2)) + _p(r, mroz.assign(age=a - h1, inc=b - h2))
           ) / (4 * h1 * h2)
    est = an.per_firm.estimate
    assert np.abs(est - num).max() < 1e-6 * np.abs(num).max()
    np.testing.assert_allclose(an.average.estimate[0], num.mean(), rtol=1e-6)
    assert an.kind == "cross-partial"
    # analytic Jacobian vs central differences of the estimator in b
    rms = np.sqrt(np.mean(r.design_matrix(mroz) ** 2, axis=0))
    Jn = numeric_jacobian(lambda bb: ai_norton(replace(r, params=bb), mroz, "age", "inc").per_firm.estimate,
                          r.params, 1e-6, column_rms=rms)
    assert np.abs(Jn - an.per_firm.jacobian).max() < 1e-6 * np.abs(Jn).max()
    np.testing.assert_allclose(an.frame["statistic"], est / an.frame["std_error"])
    np.testing.assert_allclose(an.frame["predicted"], _p(r, mroz))


@pytest.mark.parametrize("model", ["logit", "probit"])
def test_ai_norton_binary_by_continuous(mroz, model):
    r = fit("lfp ~ k5 + k618 + age + wcyes + hcyes + lwg + inc + wcyes:inc", mroz, model=model)
    an = ai_norton(r, mroz, "inc", "wcyes")
    h = 1e-5 * mroz["inc"].std()

    def dpdinc(d):
        return (_p(r, d.assign(inc=d["inc"] + h)) - _p(r, d.assign(inc=d["inc"] - h))) / (2 * h)
    num = dpdinc(mroz.assign(wcyes=1)) - dpdinc(mroz.assign(wcyes=0))
    assert np.abs(an.per_firm.estimate - num).max() < 1e-6 * np.abs(num).max()
    np.testing.assert_allclose(an.average.estimate[0], num.mean(), rtol=1e-6)
    assert an.kind == "derivative of discrete change"
    if model == "logit":  # the average is R's ame_interaction (average cross-difference)
        np.testing.assert_allclose(an.average.estimate[0], AME["finite_difference"]["ame_interaction"], rtol=1e-6)
        np.testing.assert_allclose(an.average.std_error[0], AME["se_delta_method_model_vcov"]["ame_interaction"],
                                   rtol=1.5e-5)
        assert an.coefficient == pytest.approx(r.params[r.index("wcyes:inc")])


def test_ai_norton_binary_by_binary(mroz):
    r = fit("lfp ~ k5 + age + wcyes * hcyes + inc", mroz, model="probit")
    an = ai_norton(r, mroz, "wcyes", "hcyes")
    num = (_p(r, mroz.assign(wcyes=1, hcyes=1)) - _p(r, mroz.assign(wcyes=1, hcyes=0))
           - _p(r, mroz.assign(wcyes=0, hcyes=1)) + _p(r, mroz.assign(wcyes=0, hcyes=0)))
    np.testing.assert_allclose(an.per_firm.estimate, num, rtol=1e-12, atol=1e-15)
    assert an.kind == "cross-difference"


def test_ai_norton_errors(mroz, rossi):
    r = fit("lfp ~ k5 + age * inc", mroz)
    with pytest.raises(UsageError, match="not in the data"):
        ai_norton(r, mroz, "age", "income")
    with pytest.raises(UsageError, match="different"):
        ai_norton(r, mroz, "age", "age")
    rc = fit_cox("age * prio", rossi, duration="week", event="arrest")
    with pytest.raises(UsageError, match="binary-outcome model"):
        ai_norton(rc, rossi, "age", "prio")
    with pytest.raises(UsageError, match="not numeric"):
        johnson_neyman(fit("lfp ~ k5 + C(wc) * inc", mroz), mroz, "inc", "wc")


# ---- figures ----------------------------------------------------------------------------------------
def _has_mark(fig) -> bool:
    return any(t.get_gid() == SYNTHETIC_GID and t.get_text() == SYNTHETIC_MARK for t in fig.texts)


@pytest.mark.parametrize("synthetic", [True, False])
def test_effect_figures(jn_fit, mroz, tmp_path, synthetic):
    from matplotlib.figure import Figure

    cp = conditional_predictions(jn_fit, mroz, "lwg", "age", n_points=10)
    jn = johnson_neyman(jn_fit, mroz, "lwg", "age", grid=21)
    an = ai_norton(jn_fit, mroz, "lwg", "age")
    figs = [conditional_effect_figure(cp, "lwg", "age", synthetic),
            johnson_neyman_figure(jn, synthetic), ai_norton_figure(an, synthetic)]
    for k, fig in enumerate(figs):
        assert isinstance(fig, Figure) and fig.axes
        assert _has_mark(fig) is synthetic
        out = tmp_path / f"f{k}.png"
        fig.savefig(out)
        assert out.stat().st_size > 1000
    assert len(figs[2].axes) == 2


def test_json_dicts(jn_fit, mroz):
    import json

    jn = johnson_neyman(jn_fit, mroz, "lwg", "age", grid=[30.0, 40.0, 50.0, 60.0])
    d = jn.to_dict()
    json.dumps(d, allow_nan=False)
    assert len(d["rows"]) == 4 and "significant" in d["rows"][0] and "age" in d["rows"][0]
    an = ai_norton(jn_fit, mroz, "lwg", "age")
    json.dumps(an.to_dict(), allow_nan=False)
