"""Cumulative incidence against cmprsk::cuminc on survival::mgus2 (tests/reference/competing_risks.json)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from conftest import REF, load_ref
from smesurvival.errors import DataValidationError, UsageError
from smesurvival.models.cuminc import cumulative_incidence
from smesurvival.models.km import kaplan_meier


@pytest.fixture(scope="module")
def mgus2() -> pd.DataFrame:
    """The compete-vignette coding of competing_risks.R: 0 censored, 1 PCM, 2 death w/o PCM."""
    raw = pd.read_csv(REF / "data" / "survival_mgus2.csv")
    raw["etime"] = np.where(raw.pstat == 0, raw.futime, raw.ptime)
    raw["status"] = np.where(raw.pstat == 0, 2 * raw.death, 1)
    d = raw[raw.mspike.notna()].reset_index(drop=True)
    assert len(d) == 1373
    return d


CAUSES = [("pcm", 1), ("death", 2)]


@pytest.mark.parametrize("name,cause", CAUSES)
def test_overall_matches_cuminc(mgus2: pd.DataFrame, name: str, cause: int) -> None:
    """competing_risks.json cumulative_incidence/overall/<name>: estimate 1e-8, variance 1e-6."""
    ref = load_ref("competing_risks")["cumulative_incidence"]
    res = cumulative_incidence(mgus2.etime, mgus2.status)
    assert res.causes == (1, 2) and res.groups == (None,)
    p = res.curve(cause).at(ref["times"])
    np.testing.assert_allclose(p.estimate, ref["overall"][name]["estimate"], rtol=1e-8)
    np.testing.assert_allclose(p.variance, ref["overall"][name]["variance"], rtol=1e-6)
    np.testing.assert_allclose(p.std_err, ref["overall"][name]["se"], rtol=1e-6)


@pytest.mark.parametrize("sex", ["F", "M"])
@pytest.mark.parametrize("name,cause", CAUSES)
def test_by_sex_matches_cuminc(mgus2: pd.DataFrame, sex: str, name: str, cause: int) -> None:
    """competing_risks.json cumulative_incidence/by_sex/<sex>_<name>."""
    ref = load_ref("competing_risks")["cumulative_incidence"]
    res = cumulative_incidence(mgus2.etime, mgus2.status, group=mgus2.sex)
    assert res.groups == ("F", "M")
    want = ref["by_sex"][f"{sex}_{name}"]
    p = res.at(ref["times"])[(sex, cause)]
    np.testing.assert_allclose(p.estimate, want["estimate"], rtol=1e-8)
    np.testing.assert_allclose(p.variance, want["variance"], rtol=1e-6)


def test_loglog_ci(mgus2: pd.DataFrame) -> None:
    c = cumulative_incidence(mgus2.etime, mgus2.status).curve(1)
    p = c.at([60.0, 120.0])
    z = stats.norm.ppf(0.975)
    g, se_g = np.log(-np.log(p.estimate)), p.std_err / (p.estimate * -np.log(p.estimate))
    np.testing.assert_allclose(p.conf_low, np.exp(-np.exp(g + z * se_g)), rtol=1e-12)
    np.testing.assert_allclose(p.conf_high, np.exp(-np.exp(g - z * se_g)), rtol=1e-12)
    assert np.all((p.conf_low < p.estimate) & (p.estimate < p.conf_high))


def test_curves_add_up_to_one_minus_km(mgus2: pd.DataFrame) -> None:
    res = cumulative_incidence(mgus2.etime, mgus2.status)
    km = kaplan_meier(mgus2.etime, mgus2.status > 0)
    times = np.array([1.0, 30, 100, 200, 400])
    total = res.curve(1).at(times).estimate + res.curve(2).at(times).estimate
    np.testing.assert_allclose(total, 1 - km.at(times), rtol=1e-12)


def test_single_cause_is_one_minus_km() -> None:
    t = np.array([1.0, 2, 2, 3, 4, 5, 6])
    s = np.array([1, 1, 0, 1, 0, 1, 0])
    c = cumulative_incidence(t, s).curve(1)
    km = kaplan_meier(t, s)
    np.testing.assert_allclose(c.at(km.time).estimate, 1 - km.survival, rtol=1e-12)


def test_at_edges_and_cause_selection() -> None:
    t = np.array([1.0, 2, 3, 4, 5])
    s = np.array(["cens", "a", "b", "a", "cens"])
    res = cumulative_incidence(t, s, cause_codes=["b"], censor_code="cens")
    assert res.causes == ("b",)
    p = res.curve("b").at([0.5, 3.0, 5.0, 6.0])
    np.testing.assert_allclose(p.estimate[:3], [0.0, 1 / 3 * 0.75 * 1, 1 / 3 * 0.75])
    assert np.isnan(p.estimate[3])  # beyond the last follow-up time
    assert p.conf_low[0] == 0.0 and p.variance[0] == 0.0


def test_bad_inputs() -> None:
    with pytest.raises(DataValidationError, match=r"cause code\(s\) \[3\] never occur"):
        cumulative_incidence([1.0, 2], [1, 0], cause_codes=[3])
    with pytest.raises(DataValidationError, match="no events"):
        cumulative_incidence([1.0, 2], [0, 0])
    with pytest.raises(DataValidationError, match="status has missing values in 1 row"):
        cumulative_incidence([1.0, 2, 3], [1, np.nan, 2])
    with pytest.raises(DataValidationError, match="negative"):
        cumulative_incidence([1.0, -2, 3], [1, 1, 2])
    with pytest.raises(UsageError, match="same length"):
        cumulative_incidence([1.0, 2, 3], [1, 1])
    with pytest.raises(UsageError, match="no curve for cause 5"):
        cumulative_incidence([1.0, 2, 3], [1, 0, 2]).curve(5)
