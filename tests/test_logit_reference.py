"""Binary models against R (tests/reference/*.json, produced by the R scripts beside them).

Tolerances: 1e-6 relative for estimates, 1e-5 for SEs (the issue's), and log-likelihoods to 1e-8.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import load_ref, r_name
from smesurvival.models.fit import fit

MROZ = "lfp ~ k5 + k618 + age + wcyes + hcyes + lwg + inc + wcyes:inc"


class CheckAgainstR:
    """Shared assertions: each model/data pair is a short subclass (statsmodels' mixin idea)."""

    ref: dict
    result: object

    def test_coefficients(self) -> None:
        for t, b in zip(self.result.terms, self.result.params, strict=True):
            assert b == pytest.approx(self.ref["estimate"][self.key(t)], rel=1e-6, abs=1e-10)

    def test_standard_errors(self) -> None:
        for t, s in zip(self.result.terms, self.result.se, strict=True):
            assert s == pytest.approx(self.ref["se"][self.key(t)], rel=1e-5)

    def key(self, t: str) -> str:
        return r_name(t)


class TestMrozLogit(CheckAgainstR):
    @pytest.fixture(autouse=True)
    def _fit(self, mroz: pd.DataFrame) -> None:
        self.case = load_ref("logit_interaction")
        self.ref = self.case["coefficients"]
        self.result = fit(MROZ, mroz)
        self.mroz = mroz

    def test_loglik_and_fit_statistics(self) -> None:
        r, c = self.result, self.case
        assert r.loglik == pytest.approx(c["loglik"], rel=1e-8)
        assert r.llnull == pytest.approx(c["loglik_null"], rel=1e-8)
        assert r.aic == pytest.approx(c["aic"], rel=1e-8)
        assert r.bic == pytest.approx(c["bic"], rel=1e-8)
        assert r.deviance == pytest.approx(c["deviance"], rel=1e-8)
        assert r.lr_chi2 == pytest.approx(c["lr_chisq"], rel=1e-7)
        assert r.lr_df == c["lr_df"]
        assert r.pseudo_r2_mcfadden == pytest.approx(c["mcfadden_r2"], rel=1e-7)
        assert r.nobs == c["n"] and r.n_events == c["n_events"]

    @pytest.mark.parametrize("kind", ["hc0", "hc1"])
    def test_robust_se(self, kind: str) -> None:
        res = fit(MROZ, self.mroz, vcov=kind)
        want = self.ref[f"se_{kind.upper()}"]
        for t, s in zip(res.terms, res.se, strict=True):
            assert s == pytest.approx(want[r_name(t)], rel=1e-6)
        np.testing.assert_allclose(res.params, self.result.params)

    def test_classical_vcov_matrix(self) -> None:
        v = self.case["vcov_classical"]
        order = [v["rownames"].index(r_name(t)) for t in self.result.terms]
        want = np.array(v["values"])[np.ix_(order, order)]
        np.testing.assert_allclose(self.result.vcov, want, rtol=1e-5, atol=1e-12)

    def test_p_values(self) -> None:
        for t, p in zip(self.result.terms, self.result.pvalues, strict=True):
            assert p == pytest.approx(self.ref["p_value"][r_name(t)], rel=1e-5)


def _rossi_periods(rossi: pd.DataFrame) -> pd.DataFrame:
    """survSplit(cut = seq(4, 48, 4)) by hand: one row per 4-week period at risk."""
    k = np.ceil(rossi["week"].to_numpy() / 4).astype(int)
    rep = rossi.loc[rossi.index.repeat(k)].reset_index(drop=True)
    period = np.concatenate([np.arange(1, m + 1) for m in k])
    last = np.concatenate([np.arange(1, m + 1) == m for m in k])
    rep["arrest"] = (rep["arrest"].to_numpy() == 1) & last
    rep["arrest"] = rep["arrest"].astype(int)
    for j in range(1, 14):
        rep[f"period_f{j}"] = (period == j).astype(int)
    return rep


@pytest.mark.parametrize("link", ["cloglog", "logit"])
class TestRossiDiscreteTime(CheckAgainstR):
    @pytest.fixture(autouse=True)
    def _fit(self, rossi: pd.DataFrame, link: str) -> None:
        case = load_ref("discrete_time_rossi")["models"][f"period4_{link}"]
        self.case = case
        self.ref = case["coefficients"]
        pp = _rossi_periods(rossi)
        assert len(pp) == case["n_rows"] == 4991
        periods = " + ".join(f"period_f{j}" for j in range(1, 14))
        cov = "finyes + age + raceother + wexpyes + marnotmarried + paroyes + prio"
        self.result = fit(f"arrest ~ 0 + {periods} + {cov}", pp, model=link)

    def key(self, t: str) -> str:
        return "marnot married" if t == "marnotmarried" else t

    def test_loglik(self) -> None:
        assert self.result.loglik == pytest.approx(self.case["loglik"], rel=1e-8)
        assert self.result.aic == pytest.approx(self.case["aic"], rel=1e-8)
        assert not self.result.has_intercept
