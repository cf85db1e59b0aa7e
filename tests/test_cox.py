"""Cox PH against R's survival 3.5 (tests/reference/cox_rossi.json, from cox_rossi.R) and
statsmodels' PHReg (strata, entry times, weights), plus invariances that must hold exactly."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from conftest import load_ref
from smesurvival.errors import DataValidationError, RankDeficientError, UsageError
from smesurvival.inference.cox_tests import cox_ph_test
from smesurvival.models.cox import baseline_cumhaz, fit_cox, predict_survival

X = "finyes + age + raceother + wexpyes + marnotmarried + paroyes + prio"


def key(t: str) -> str:
    return "marnot married" if t == "marnotmarried" else t


@pytest.fixture(scope="module", params=["efron", "breslow"])
def case(request, rossi: pd.DataFrame):
    ties = request.param
    return ties, load_ref("cox_rossi")[ties], fit_cox(X, rossi, duration="week", event="arrest", ties=ties)


def test_coefficients_and_se(case) -> None:
    _, ref, m = case
    c = ref["coefficients"]
    for t, b, s in zip(m.terms, m.params, m.se, strict=True):
        assert b == pytest.approx(c["estimate"][key(t)], rel=1e-6)
        assert s == pytest.approx(c["se"][key(t)], rel=1e-6)


def test_log_partial_likelihood_and_tests(case) -> None:
    _, ref, m = case
    assert m.loglik == pytest.approx(ref["loglik"], rel=1e-8)
    assert m.llnull == pytest.approx(ref["loglik_null"], rel=1e-8)
    assert m.lr_chi2 == pytest.approx(ref["lr_test"]["chisq"], rel=1e-6)
    assert m.extra["score_test"]["chisq"] == pytest.approx(ref["score_test"]["chisq"], rel=1e-6)
    assert m.extra["wald_test"]["chisq"] == pytest.approx(ref["wald_test"]["chisq"], abs=0.01)  # R rounds
    assert m.aic == pytest.approx(ref["aic"], rel=1e-8)
    assert m.nobs == ref["n"] and m.n_events == ref["n_events"]


def test_robust_se(case, rossi) -> None:
    ties, ref, _ = case
    m = fit_cox(X, rossi, duration="week", event="arrest", ties=ties, vcov="hc0")
    for t, s in zip(m.terms, m.se, strict=True):
        assert s == pytest.approx(ref["coefficients"]["robust_se"][key(t)], rel=1e-6)


def test_concordance(case) -> None:
    _, ref, m = case
    c = m.extra["concordance"]
    counts = ref["concordance"]["counts"]
    assert c["c_index"] == pytest.approx(ref["concordance"]["c_index"], rel=1e-10)
    assert (c["concordant"], c["discordant"], c["tied_x"], c["tied_y"]) == (
        counts["concordant"], counts["discordant"], counts["tied.x"], counts["tied.y"])


@pytest.mark.parametrize("transform", ["km", "identity"])
def test_proportional_hazards_test(case, rossi, transform) -> None:
    _, ref, m = case
    z = cox_ph_test(m, rossi, transform)
    r = ref[f"cox_zph_{transform}"]
    assert z.global_chisq == pytest.approx(r["global"]["chisq"], rel=1e-6)
    names = [t.replace("yes", "").replace("other", "").replace("notmarried", "") for t in m.terms]
    for name, chi in zip(names, z.chisq, strict=True):
        assert chi == pytest.approx(r["per_term_chisq"][name], rel=1e-6)


def test_baseline_cumulative_hazard(case, rossi) -> None:
    _, ref, m = case
    b = ref["baseline_cumhaz"]
    np.testing.assert_allclose(baseline_cumhaz(m, np.array(b["times"])), b["at_zero_covariates"], rtol=1e-8)
    means = pd.DataFrame({t: [ref["means"][key(t)]] for t in m.terms})  # R: factors at reference
    s = predict_survival(m, means, np.array(b["times"])).to_numpy()[0]
    np.testing.assert_allclose(-np.log(s), b["at_means"], rtol=1e-8)


# ---- independent checks against statsmodels PHReg -----------------------------------------
@pytest.fixture(scope="module")
def firms() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    n = 1500
    x1, x2 = rng.normal(size=n), rng.binomial(1, 0.4, size=n)
    s = rng.integers(0, 3, size=n)
    t = np.ceil(rng.exponential(1 / np.exp(0.5 * x1 - 0.4 * x2 + 0.3 * s)) * 20)  # heavy ties
    c = np.ceil(rng.uniform(0, 60, size=n))
    entry = np.floor(rng.uniform(0, 0.5, size=n) * np.minimum(t, c)) + 0.5 * (rng.random(n) < 0.5)
    return pd.DataFrame({"time": np.minimum(t, c), "event": (t <= c).astype(int), "x1": x1,
                         "x2": x2, "s": s, "entry": entry, "w": rng.integers(1, 4, size=n).astype(float),
                         "firm": rng.integers(0, 300, size=n)})


@pytest.mark.parametrize("ties", ["efron", "breslow"])
def test_matches_statsmodels_with_strata_and_entry(firms, ties) -> None:
    """Entry times here never equal an event time: statsmodels counts a firm entering at t as
    at risk at t, R's (start, stop] convention (ours) does not."""
    firms = firms.assign(entry=np.where(np.isin(firms.entry, firms.time), firms.entry - 0.25, firms.entry).clip(0))
    ref = sm.PHReg(firms.time, firms[["x1", "x2"]].to_numpy(), status=firms.event,
                   strata=firms.s, entry=firms.entry, ties=ties).fit(tol=1e-12)
    m = fit_cox("x1 + x2", firms, duration="time", event="event", strata="s", entry="entry", ties=ties)
    np.testing.assert_allclose(m.params, ref.params, rtol=1e-8)
    np.testing.assert_allclose(m.se, ref.bse, rtol=1e-6)
    assert m.loglik == pytest.approx(ref.llf, rel=1e-10)


def test_frequency_weights_equal_replicated_rows(firms) -> None:
    """Exact for Breslow; Efron's tie correction counts rows, as R's coxph does with weights."""
    rep = firms.loc[firms.index.repeat(firms.w.astype(int))].reset_index(drop=True)
    a = fit_cox("x1 + x2", firms, duration="time", event="event", weights="w", ties="breslow")
    b = fit_cox("x1 + x2", rep, duration="time", event="event", ties="breslow")
    np.testing.assert_allclose(a.params, b.params, rtol=1e-10)
    np.testing.assert_allclose(a.se, b.se, rtol=1e-10)
    assert a.loglik == pytest.approx(b.loglik, rel=1e-12)


def test_counting_process_split_is_invariant(firms) -> None:
    """Splitting each (entry, time] interval in two with the same covariates changes nothing."""
    a = firms.copy()
    mid = np.floor((a.entry + a.time) / 2)
    ok = (mid > a.entry) & (mid < a.time)
    first = a[ok].assign(time=mid[ok], event=0)
    second = a[ok].assign(entry=mid[ok])
    split = pd.concat([a[~ok], first, second], ignore_index=True)
    m1 = fit_cox("x1 + x2", a, duration="time", event="event", entry="entry", strata="s")
    m2 = fit_cox("x1 + x2", split, duration="time", event="event", entry="entry", strata="s")
    np.testing.assert_allclose(m1.params, m2.params, rtol=1e-10)
    np.testing.assert_allclose(m1.se, m2.se, rtol=1e-10)


def test_cluster_robust_sums_score_residuals_by_cluster(firms) -> None:
    a = fit_cox("x1 + x2", firms, duration="time", event="event", vcov="hc0")
    b = fit_cox("x1 + x2", firms.assign(one=np.arange(len(firms))), duration="time", event="event",
                vcov="cluster", cluster="one")
    np.testing.assert_allclose(a.vcov, b.vcov, rtol=1e-12)
    c = fit_cox("x1 + x2", firms, duration="time", event="event", vcov="cluster", cluster="firm")
    assert c.n_clusters == firms.firm.nunique() and not np.allclose(c.se, a.se)


def test_formula_with_categories_and_round_trip(firms) -> None:
    from smesurvival.models.result import FitResult

    m = fit_cox("x1 + C(s)", firms, duration="time", event="event")
    assert m.terms == ("x1", "C(s)[T.1]", "C(s)[T.2]") and not m.has_intercept
    back = FitResult.from_dict(m.to_dict())
    pd.testing.assert_frame_equal(predict_survival(back, firms.head(3), np.array([5.0, 20.0])),
                                  predict_survival(m, firms.head(3), np.array([5.0, 20.0])))
    assert "exp_estimate" in m.tidy().columns


@pytest.mark.parametrize("mutate,fragment", [
    (lambda d: d.assign(time=d.time.where(d.index != 3, 0.0)), "durations must be positive"),
    (lambda d: d.assign(time=d.time.where(d.index != 5, -2.0)), "file line(s) 7"),
    (lambda d: d.assign(event=d.event.where(d.index != 4, 2)), "event codes must be one of 0, 1"),
    (lambda d: d.assign(entry=d.entry.where(d.index != 6, d.time + 1)), "start (entry) time"),
    (lambda d: d.assign(event=0), "every row is censored"),
    (lambda d: d.assign(k=d.s), "constant within every stratum"),
])
def test_bad_input(firms, mutate, fragment) -> None:
    d = mutate(firms.copy())
    f = "x1 + k" if "k" in d.columns else "x1"
    with pytest.raises(DataValidationError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        fit_cox(f, d, duration="time", event="event", entry="entry", strata="s")


def test_options_are_checked(firms) -> None:
    with pytest.raises(UsageError, match="ties must be one of efron, breslow"):
        fit_cox("x1", firms, duration="time", event="event", ties="exact")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="classical, hc0, cluster"):
        fit_cox("x1", firms, duration="time", event="event", vcov="hc1")  # type: ignore[arg-type]


def test_identifiability_is_checked_on_the_null_information(firms) -> None:
    """Flat and collinear covariates are named (from the information at beta = 0)."""
    with pytest.raises(DataValidationError, match="constant in every row"):
        fit_cox("x1 + k", firms.assign(k=4.0), duration="time", event="event")
    with pytest.raises(RankDeficientError, match="'k' = \\+2\\*'x1'"):
        fit_cox("x1 + k", firms.assign(k=2 * firms.x1 + 3), duration="time", event="event")


def test_monotone_likelihood_is_named(firms) -> None:
    """A level with no events: Newton 'converges' at a huge coefficient; that is an error
    naming the term (R's coxph only warns), and the Firth fit is finite."""
    from smesurvival.errors import ConvergenceError
    from smesurvival.models.firth_cox import fit_cox_firth

    d = firms.assign(rare=(np.arange(len(firms)) % 9 == 0).astype(float))
    d.loc[d.rare == 1, "event"] = 0  # no event among the 'rare' rows
    with pytest.raises(ConvergenceError, match="monotone likelihood: the Cox estimate of 'rare'"):
        fit_cox("x1 + rare", d, duration="time", event="event")
    assert np.isfinite(fit_cox_firth("x1 + rare", d, duration="time", event="event").params).all()
