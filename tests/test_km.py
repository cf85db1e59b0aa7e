"""Kaplan–Meier against R's survfit on carData::Rossi (tests/reference/km_rossi.json), plus hand checks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from conftest import load_ref
from smesurvival.errors import DataValidationError, UsageError
from smesurvival.models.km import kaplan_meier, kaplan_meier_by


@pytest.mark.parametrize("group,level", [("fin_no", 0), ("fin_yes", 1), ("overall", None)])
def test_km_matches_survfit(rossi: pd.DataFrame, group: str, level: int | None) -> None:
    ref = load_ref("km_rossi")["km"]
    if group not in ref:
        pytest.skip(f"reference has no {group}")
    want = ref[group]["at_times"]
    sub = rossi if level is None else rossi[rossi.finyes == level]
    km = kaplan_meier(sub.week.to_numpy(), sub.arrest.to_numpy())
    idx = [np.searchsorted(km.time, t, side="right") - 1 for t in want["time"]]
    np.testing.assert_allclose(km.survival[idx], want["surv"], rtol=1e-10)
    np.testing.assert_allclose(km.std_err[idx], want["std_err"], rtol=1e-8)
    np.testing.assert_allclose(km.conf_low[idx], want["lower_95"], rtol=1e-8)
    np.testing.assert_allclose(km.conf_high[idx], want["upper_95"], rtol=1e-8)
    for t, s in zip(want["time"], want["surv"], strict=True):
        assert km.at(t) == pytest.approx(s, rel=1e-12)
    assert km.at(0.5) == 1.0


def test_weights_equal_replication() -> None:
    t = np.array([1.0, 2, 2, 3, 4, 5])
    e = np.array([1, 0, 1, 1, 0, 1])
    w = np.array([2.0, 1, 3, 1, 2, 1])
    a = kaplan_meier(t, e, w)
    b = kaplan_meier(np.repeat(t, w.astype(int)), np.repeat(e, w.astype(int)))
    np.testing.assert_allclose(a.survival, b.survival)
    np.testing.assert_allclose(a.std_err, b.std_err)


# --------------------------------------------------------------------------- extended API

GROUPS = [("fin_no", 0), ("fin_yes", 1), ("overall", None)]


def _fit(rossi: pd.DataFrame, level: int | None, **kw: object):
    sub = rossi if level is None else rossi[rossi.finyes == level]
    return kaplan_meier(sub.week.to_numpy(), sub.arrest.to_numpy(), **kw)


@pytest.mark.parametrize("group,level", GROUPS)
def test_summary_at_times_matches_r(rossi: pd.DataFrame, group: str, level: int | None) -> None:
    """km_rossi.json km/<group>/at_times: summary(fit, times = c(10, 20, 30, 40, 52))."""
    ref = load_ref("km_rossi")
    want = ref["km"][group]["at_times"]
    s = _fit(rossi, level).summary(ref["times"])
    np.testing.assert_array_equal(s.time, want["time"])
    np.testing.assert_array_equal(s.at_risk, want["n_risk"])
    np.testing.assert_array_equal(s.n_events, want["n_event_since_previous"])
    for ours, key in [(s.survival, "surv"), (s.std_err, "std_err"), (s.conf_low, "lower_95"),
                      (s.conf_high, "upper_95"), (s.cumhaz, "cumhaz_nelson_aalen"),
                      (s.std_err_cumhaz, "std_err_cumhaz")]:
        np.testing.assert_allclose(ours, want[key], rtol=1e-8, err_msg=key)


@pytest.mark.parametrize("group,level", GROUPS)
def test_step_table_matches_r(rossi: pd.DataFrame, group: str, level: int | None) -> None:
    """km_rossi.json km/<group>/step_table: summary(fit, censored = TRUE)."""
    want = load_ref("km_rossi")["km"][group]["step_table"]
    km = _fit(rossi, level)
    np.testing.assert_array_equal(km.time, want["time"])
    np.testing.assert_array_equal(km.at_risk, want["n_risk"])
    np.testing.assert_array_equal(km.n_events, want["n_event"])
    np.testing.assert_array_equal(km.n_censored, want["n_censor"])
    np.testing.assert_allclose(km.survival, want["surv"], rtol=1e-10)
    np.testing.assert_allclose(km.std_err, want["std_err"], rtol=1e-8)


@pytest.mark.parametrize("group,level", GROUPS)
def test_rmst_matches_r(rossi: pd.DataFrame, group: str, level: int | None) -> None:
    """km_rossi.json km/<group>/rmean_52 and rmean_52_se (print(fit, rmean = 52))."""
    ref = load_ref("km_rossi")["km"][group]
    r = _fit(rossi, level).rmst(52)
    assert r.estimate == pytest.approx(ref["rmean_52"], rel=1e-8)
    assert r.std_err == pytest.approx(ref["rmean_52_se"], rel=1e-8)
    z = stats.norm.ppf(0.975)
    assert r.conf_low == pytest.approx(r.estimate - z * r.std_err)


def test_rmst_by_hand_and_beyond_last_time() -> None:
    # S = 1 on [0,1), 0.75 on [1,3), 0.375 on [3, ...)
    km = kaplan_meier([1, 2, 3, 4], [1, 0, 1, 0])
    assert km.rmst(2.0).estimate == pytest.approx(1 + 0.75)
    assert km.rmst(10.0).estimate == pytest.approx(1 + 2 * 0.75 + 7 * 0.375)  # last step extended
    # SE: A_j = area from event time to tau, Var = sum A_j^2 d/(n(n-d))
    a1, a3 = 2 * 0.75 + 7 * 0.375, 7 * 0.375
    want = np.sqrt(a1**2 * 1 / (4 * 3) + a3**2 * 1 / (2 * 1))
    assert km.rmst(10.0).std_err == pytest.approx(want)


def test_nelson_aalen_at_steps() -> None:
    t = np.array([1.0, 1, 2, 3, 3, 3, 4])
    e = np.array([1, 1, 0, 1, 1, 0, 1])
    km = kaplan_meier(t, e)
    # n at risk 7, 5, 4, 1 ; d 2, 0, 2, 1
    np.testing.assert_allclose(km.cumhaz, np.cumsum([2 / 7, 0, 2 / 4, 1 / 1]), rtol=1e-12)
    np.testing.assert_allclose(km.std_err_cumhaz, np.sqrt(np.cumsum([2 / 49, 0, 2 / 16, 1.0])))


def test_median_midpoint_rule_and_ci() -> None:
    km = kaplan_meier(np.arange(1.0, 7.0), np.ones(6))  # S = 0.5 exactly on [3, 4)
    assert km.median().median == 3.5
    assert kaplan_meier(np.arange(1.0, 6.0), np.ones(5)).median().median == 3.0
    # CI limits: first time the lower / upper log-CI curves reach 0.5, computed independently
    n = np.arange(6.0, 1.0, -1.0)  # steps 1..5 (S > 0)
    s = np.cumprod(1 - 1 / n)
    sig = np.sqrt(np.cumsum(1 / (n * (n - 1))))
    z = stats.norm.ppf(0.975)
    lower, upper = s * np.exp(-z * sig), np.minimum(1, s * np.exp(z * sig))
    t = np.arange(1.0, 6.0)
    med = km.median()
    assert med.conf_low == t[np.flatnonzero(lower <= 0.5)[0]] == 2.0
    assert np.all(upper > 0.5) and np.isnan(med.conf_high)  # upper curve never reaches 0.5
    lo_only = kaplan_meier(np.arange(1.0, 41.0), np.ones(40)).median()  # a finite upper limit
    assert lo_only.median == 20.5 and lo_only.conf_low < 20.5 < lo_only.conf_high < 40


def test_median_flat_at_end_and_not_reached(rossi: pd.DataFrame) -> None:
    km = kaplan_meier([1, 2, 3, 4], [1, 1, 0, 0])  # ends at exactly 0.5: midpoint to last time
    assert km.median().median == 3.0
    assert np.isnan(_fit(rossi, None).median().median)  # Rossi: S(52) = 0.74


@pytest.mark.parametrize("conf_type", ["log-log", "plain"])
def test_other_conf_types(rossi: pd.DataFrame, conf_type: str) -> None:
    """Log-log and plain CIs from R's SE in km_rossi.json (survfit conf.type definitions)."""
    ref = load_ref("km_rossi")
    want = ref["km"]["overall"]["at_times"]
    s = _fit(rossi, None, conf_type=conf_type).summary(ref["times"])
    surv, se = np.array(want["surv"]), np.array(want["std_err"])
    z = stats.norm.ppf(0.975)
    if conf_type == "plain":
        lo, hi = surv - z * se, np.minimum(surv + z * se, 1)
    else:  # exp(-exp(log(-log S) -/+ z * se(log S) / log S)), as survfit
        c = z * (se / surv) / np.log(surv)
        lo, hi = np.exp(-np.exp(np.log(-np.log(surv)) - c)), np.exp(-np.exp(np.log(-np.log(surv)) + c))
    np.testing.assert_allclose(s.conf_low, lo, rtol=1e-8)
    np.testing.assert_allclose(s.conf_high, hi, rtol=1e-8)
    assert np.all(s.conf_low < s.survival) and np.all(s.survival < s.conf_high)


def test_summary_outside_range() -> None:
    km = kaplan_meier([2.0, 3, 5], [1, 0, 1])
    s = km.summary([1.0, 2.5, 9.0])
    np.testing.assert_allclose(s.survival, [1.0, 2 / 3, 0.0], rtol=1e-15)
    np.testing.assert_array_equal(s.at_risk, [3, 2, 0])
    np.testing.assert_array_equal(s.n_events, [0, 1, 1])
    np.testing.assert_array_equal(s.n_censored, [0, 0, 1])
    assert s.std_err[0] == 0.0 and s.conf_low[0] == 1.0


def test_survival_zero_gives_nan_se() -> None:
    km = kaplan_meier([1.0, 2.0], [1, 1])
    assert km.survival[-1] == 0.0
    assert np.isnan(km.std_err[-1]) and np.isnan(km.conf_low[-1])


def test_by_group_sorted_keys(rossi: pd.DataFrame) -> None:
    labels = np.where(rossi.finyes == 1, "yes", "no")
    fits = kaplan_meier_by(rossi.week, rossi.arrest, labels)
    assert list(fits) == ["no", "yes"]
    np.testing.assert_allclose(fits["yes"].survival, _fit(rossi, 1).survival)
    by_int = kaplan_meier_by(rossi.week, rossi.arrest, rossi.finyes.to_numpy()[::-1][::-1])
    assert list(by_int) == [0, 1] and all(type(k) is int for k in by_int)


@pytest.mark.parametrize("kwargs,exc,msg", [
    ({"time": [1.0, -2, 3, -1], "event": [1, 0, 1, 1]}, DataValidationError, "negative in 2 rows"),
    ({"time": [1.0, 2, 3, 4], "event": [1, 2, 1, 1]}, DataValidationError, "0 (censored) or 1"),
    ({"time": [1.0, 2, 3], "event": [1, 0]}, UsageError, "time has 3, event has 2"),
    ({"time": [1.0, np.nan, np.nan, 4], "event": [1, 0, 1, 1]}, DataValidationError,
     "missing or infinite values in 2 rows (0-based rows 1, 2)"),
    ({"time": [1.0, 2], "event": [1, np.nan]}, DataValidationError, "event has missing"),
    ({"time": [1.0, 2], "event": [1, 0], "conf_type": "logit"}, UsageError, "log, log-log, plain"),
    ({"time": [1.0, 2], "event": [1, 0], "conf_level": 95}, UsageError, "conf_level"),
    ({"time": [1.0, 2], "event": [1, 0], "weights": [1, -1]}, DataValidationError, "weights"),
])
def test_bad_inputs(kwargs: dict, exc: type, msg: str) -> None:
    with pytest.raises(exc, match=msg.replace("(", r"\(").replace(")", r"\)")):
        kaplan_meier(**kwargs)


def test_bad_group() -> None:
    with pytest.raises(DataValidationError, match="group has missing values in 1 row"):
        kaplan_meier_by([1.0, 2, 3], [1, 0, 1], np.array(["a", None, "b"], dtype=object))
    with pytest.raises(UsageError, match="same length"):
        kaplan_meier_by([1.0, 2, 3], [1, 0, 1], [0, 1])
