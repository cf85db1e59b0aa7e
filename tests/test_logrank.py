"""Log-rank family against R's survdiff on carData::Rossi (tests/reference/km_rossi.json), plus hand checks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from conftest import load_ref
from smesurvival.errors import DataValidationError, UsageError
from smesurvival.inference.logrank import logrank_test, logrank_trend


def _naive_oev(t, d, g, levels, rho=0.0):
    """O, E, V by an explicit loop over event times (independent of the vectorised code)."""
    k = len(levels)
    o, e, v = np.zeros(k), np.zeros(k), np.zeros((k, k))
    s_left = 1.0
    for u in np.unique(t[d == 1]):
        risk = t >= u
        n = risk.sum()
        nk = np.array([(risk & (g == lv)).sum() for lv in levels], float)
        dk = np.array([((t == u) & (d == 1) & (g == lv)).sum() for lv in levels], float)
        dt = dk.sum()
        w = s_left**rho
        o += w * dk
        e += w * dt * nk / n
        if n > 1:
            for a in range(k):
                for b in range(k):
                    v[a, b] += w**2 * dt * (n - dt) / (n - 1) * nk[a] / n * ((a == b) - nk[b] / n)
        s_left *= 1 - dt / n
    return o, e, v


@pytest.mark.parametrize("key,rho,tol", [("logrank", 0.0, 1e-8), ("peto_peto_rho1", 1.0, 1e-6)])
def test_matches_survdiff(rossi: pd.DataFrame, key: str, rho: float, tol: float) -> None:
    """km_rossi.json logrank (rho = 0) and peto_peto_rho1 (rho = 1)."""
    ref = load_ref("km_rossi")[key]
    fin = np.where(rossi.finyes == 1, "yes", "no")
    r = logrank_test(rossi.week, rossi.arrest, fin, rho=rho)
    assert r.groups == ("no", "yes")
    assert r.chi2 == pytest.approx(ref["chisq"], rel=tol)
    assert r.df == ref["df"]
    assert r.p_value == pytest.approx(ref["p_value"], rel=tol)
    np.testing.assert_allclose(r.observed, ref["observed"], rtol=tol)
    np.testing.assert_allclose(r.expected, ref["expected"], rtol=tol)
    np.testing.assert_allclose(r.variance, ref["variance_matrix"], rtol=tol)
    np.testing.assert_array_equal(r.n, ref["n"])


@pytest.mark.parametrize("rho", [0.0, 1.0, 0.5])
def test_three_groups_against_naive_loop(rossi: pd.DataFrame, rho: float) -> None:
    t, d = rossi.week.to_numpy(float), rossi.arrest.to_numpy()
    g = np.minimum(rossi.prio.to_numpy(), 2)  # 0, 1, 2+
    r = logrank_test(t, d, g, rho=rho)
    o, e, v = _naive_oev(t, d, g, [0, 1, 2], rho)
    np.testing.assert_allclose(r.observed, o, rtol=1e-12)
    np.testing.assert_allclose(r.expected, e, rtol=1e-12)
    np.testing.assert_allclose(r.variance, v, rtol=1e-10, atol=1e-12)
    diff = (o - e)[1:]
    assert r.chi2 == pytest.approx(diff @ np.linalg.solve(v[1:, 1:], diff), rel=1e-10)
    assert r.chi2 == pytest.approx((o - e) @ np.linalg.pinv(v) @ (o - e), rel=1e-8)
    assert r.df == 2


def test_stratified_is_sum_over_strata(rossi: pd.DataFrame) -> None:
    t, d, g, s = rossi.week, rossi.arrest, rossi.finyes, rossi.wexpyes
    r = logrank_test(t, d, g, strata=s)
    o = e = 0.0
    v = 0.0
    for h in (0, 1):
        m = (s == h).to_numpy()
        oh, eh, vh = _naive_oev(t.to_numpy(float)[m], d.to_numpy()[m], g.to_numpy()[m], [0, 1])
        o, e, v = o + oh, e + eh, v + vh
    np.testing.assert_allclose(r.observed, o, rtol=1e-12)
    np.testing.assert_allclose(r.expected, e, rtol=1e-12)
    assert r.chi2 == pytest.approx((o[0] - e[0]) ** 2 / v[0, 0], rel=1e-10)
    assert r.chi2 != pytest.approx(logrank_test(t, d, g).chi2, rel=1e-3)


def test_weights_equal_replication() -> None:
    t = np.array([1.0, 2, 2, 3, 4, 5, 6, 7])
    e = np.array([1, 0, 1, 1, 0, 1, 1, 1])
    g = np.array([0, 1, 0, 1, 0, 1, 0, 1])
    w = np.array([2, 1, 3, 1, 2, 1, 1, 2])
    a = logrank_test(t, e, g, weights=w.astype(float))
    b = logrank_test(np.repeat(t, w), np.repeat(e, w), np.repeat(g, w))
    assert a.chi2 == pytest.approx(b.chi2, rel=1e-12)
    np.testing.assert_allclose(a.variance, b.variance, rtol=1e-12)


def test_trend_equals_logrank_for_two_groups(rossi: pd.DataFrame) -> None:
    lr = logrank_test(rossi.week, rossi.arrest, rossi.finyes)
    tr = logrank_trend(rossi.week, rossi.arrest, rossi.finyes)
    assert tr.chi2 == pytest.approx(lr.chi2, rel=1e-12)
    assert tr.z < 0  # fewer arrests than expected with financial aid
    assert logrank_trend(rossi.week, rossi.arrest, rossi.finyes, scores=[0, 5]).chi2 == \
        pytest.approx(lr.chi2, rel=1e-12)


def test_trend_small_example_against_formula() -> None:
    t = np.array([2.0, 3, 3, 5, 6, 7, 8, 9, 11, 12, 13, 15, 16, 18])
    d = np.array([1, 1, 0, 1, 1, 0, 1, 1, 1, 0, 1, 1, 0, 1])
    g = np.array(["lo", "mid", "hi", "hi", "lo", "mid", "hi", "hi", "mid", "lo", "lo", "mid", "lo", "hi"])
    levels = ["hi", "lo", "mid"]  # sorted order; scores pair with it
    scores = np.array([3.0, 1.0, 2.0])
    o, e, v = _naive_oev(t, d, g, levels)
    want = (scores @ (o - e)) ** 2 / (scores @ v @ scores)
    r = logrank_trend(t, d, g, scores=scores)
    assert r.groups == tuple(levels)
    assert r.chi2 == pytest.approx(want, rel=1e-12)
    assert r.p_value == pytest.approx(stats.chi2.sf(want, 1), rel=1e-12)
    default = logrank_trend(t, d, g)  # scores 1, 2, 3 in sorted order
    np.testing.assert_array_equal(default.scores, [1.0, 2.0, 3.0])


def test_bad_inputs() -> None:
    with pytest.raises(DataValidationError, match="single value"):
        logrank_test([1.0, 2, 3], [1, 1, 0], [1, 1, 1])
    with pytest.raises(UsageError, match="one value per group"):
        logrank_trend([1.0, 2, 3], [1, 1, 0], [1, 2, 3], scores=[1, 2])
    with pytest.raises(UsageError, match="time has 3, group has 2"):
        logrank_test([1.0, 2, 3], [1, 1, 0], [1, 2])
    with pytest.raises(DataValidationError, match="event must be 0"):
        logrank_test([1.0, 2, 3], [1, 3, 0], [1, 2, 1])
    with pytest.raises(DataValidationError, match="strata has missing values in 1 row"):
        logrank_test([1.0, 2, 3], [1, 1, 0], [1, 2, 1], strata=[1.0, np.nan, 2.0])
