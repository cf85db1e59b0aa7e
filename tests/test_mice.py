"""MICE and Rubin's rules: hand computations, statsmodels' MICE pooling, PMM donors and
determinism, coverage under MCAR and the gain over listwise deletion under MAR."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from smesurvival.errors import UsageError
from smesurvival.inference.mediation import ols
from smesurvival.inference.mice import fit_mice, mice, pool
from smesurvival.models.fit import fit

EST = np.array([[1.0, 0.50], [1.2, 0.40], [0.9, 0.65]])
SE = np.array([[0.20, 0.10], [0.22, 0.11], [0.19, 0.09]])


def hand_pool(q: np.ndarray, se: np.ndarray, dfcom: float) -> dict[str, np.ndarray]:
    """Rubin's rules written out term by term (van Buuren 2018, section 2.3)."""
    m = q.shape[0]
    qbar = q.sum(axis=0) / m
    ubar = (se**2).sum(axis=0) / m
    b = ((q - qbar) ** 2).sum(axis=0) / (m - 1)
    t = ubar + b + b / m
    lam = (b + b / m) / t
    riv = (b + b / m) / ubar
    dfold = (m - 1) / lam**2
    if math.isinf(dfcom):
        df = dfold
    else:
        dfobs = (dfcom + 1) / (dfcom + 3) * dfcom * (1 - lam)
        df = dfold * dfobs / (dfold + dfobs)
    fmi = (riv + 2 / (df + 3)) / (1 + riv)
    half = stats.t.ppf(0.975, df) * np.sqrt(t)
    return {"qbar": qbar, "ubar": ubar, "b": b, "t": t, "df": df, "fmi": fmi, "lam": lam,
            "lo": qbar - half, "hi": qbar + half}


@pytest.mark.parametrize("dfcom", [math.inf, 120.0])
def test_rubin_rules_by_hand(dfcom: float) -> None:
    r = pool(estimates=EST, std_errors=SE, terms=["a", "b"],
             df_complete=None if math.isinf(dfcom) else dfcom)
    h = hand_pool(EST, SE, dfcom)
    np.testing.assert_allclose(r.params, h["qbar"], rtol=1e-12)
    np.testing.assert_allclose(r.within, h["ubar"], rtol=1e-12)
    np.testing.assert_allclose(r.between, h["b"], rtol=1e-12)
    np.testing.assert_allclose(r.total, h["t"], rtol=1e-12)
    np.testing.assert_allclose(r.lambda_, h["lam"], rtol=1e-12)
    np.testing.assert_allclose(r.df, h["df"], rtol=1e-10)
    np.testing.assert_allclose(r.fmi, h["fmi"], rtol=1e-10)
    np.testing.assert_allclose(r.frame["conf_low"], h["lo"], rtol=1e-10)
    np.testing.assert_allclose(r.frame["conf_high"], h["hi"], rtol=1e-10)
    assert list(r.frame.columns) == ["term", "estimate", "std_error", "statistic", "df",
                                     "p_value", "conf_low", "conf_high", "fmi"]
    # variances given instead of SEs give the same answer
    v = pool(estimates=EST, variances=SE**2, df_complete=None if math.isinf(dfcom) else dfcom)
    np.testing.assert_allclose(v.frame["std_error"], r.frame["std_error"], rtol=1e-12)


def test_pool_matches_statsmodels_mice_combine() -> None:
    from statsmodels.imputation.mice import MICE, MICEData

    rng = np.random.default_rng(1)
    covs = []
    for s in SE:
        c = np.diag(s**2)
        c[0, 1] = c[1, 0] = 0.3 * s[0] * s[1] * rng.uniform()
        covs.append(c)

    class Fake:
        def __init__(self, p: np.ndarray, c: np.ndarray) -> None:
            self.params, self._c, self.scale, self._results = p, c, 1.0, self

        def cov_params(self) -> np.ndarray:
            return self._c

    df = pd.DataFrame({"y": rng.normal(size=20), "x": rng.normal(size=20)})
    mi = MICE("y ~ x", None, MICEData(df))
    mi.results_list = [Fake(p, c) for p, c in zip(EST, covs, strict=True)]
    mi.exog_names, mi.endog_names = ["a", "b"], "y"
    ref = mi.combine()
    r = pool(estimates=EST, variances=np.array(covs), terms=["a", "b"])
    np.testing.assert_allclose(r.params, ref.params, rtol=1e-12)
    np.testing.assert_allclose(r.vcov, ref.cov_params(), rtol=1e-12)
    np.testing.assert_allclose(r.lambda_, ref.frac_miss_info, rtol=1e-12)  # statsmodels' fmi = lambda


def test_pool_fits_uses_complete_data_df(binary: pd.DataFrame) -> None:
    fits = [fit("y ~ x1 + x2", binary.sample(frac=1.0, replace=True, random_state=i))
            for i in range(3)]
    r = pool(fits)
    assert r.df_complete == fits[0].nobs - 3
    assert r.terms == ("Intercept", "x1", "x2")
    h = hand_pool(np.array([f.params for f in fits]), np.array([f.se for f in fits]), r.df_complete)
    np.testing.assert_allclose(r.df, h["df"], rtol=1e-10)
    with pytest.raises(UsageError):
        pool([fits[0], fit("y ~ x1", binary)])


@pytest.fixture(scope="module")
def binary() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    n = 6000
    x1 = rng.normal(size=n)
    x2 = 0.5 * x1 + rng.normal(size=n)
    eta = -0.5 + 0.8 * x1 - 0.6 * x2
    return pd.DataFrame({"y": rng.binomial(1, 1 / (1 + np.exp(-eta))).astype(float),
                         "x1": x1, "x2": x2})


def mixed(seed: int = 3, n: int = 2000) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    g = rng.choice(np.array(["a", "b", "c"]), size=n)
    b = rng.binomial(1, 0.4, size=n).astype(float)
    y = x + 0.5 * (g == "b") + b + rng.normal(size=n)
    d = pd.DataFrame({"y": y, "x": np.round(x, 2), "g": pd.Categorical(g), "b": b,
                      "s": pd.Series(g, dtype="str")})
    for c in ("x", "g", "b", "s"):
        d.loc[rng.random(n) < 0.25, c] = None
    return d


def test_imputations_use_donors_keep_observed_and_are_seeded() -> None:
    d = mixed()
    imp = mice(d, m=3, iterations=3, seed=42)
    tab = imp.missing.set_index("column")
    assert tab.at["x", "method"] == "pmm" and tab.at["b", "method"] == "logreg"
    assert tab.at["g", "method"] == "polyreg" and tab.at["y", "method"] == ""
    assert tab.at["x", "n_missing"] == d["x"].isna().sum()
    assert tab.at["x", "share"] == pytest.approx(d["x"].isna().mean())
    observed_x = set(d["x"].dropna())
    for c in imp.completed:
        assert not c[["x", "g", "b", "s"]].isna().any().any()
        for col in d.columns:  # observed cells unchanged
            o = d[col].notna()
            assert (c.loc[o, col].astype(str) == d.loc[o, col].astype(str)).all()
        assert set(c.loc[d["x"].isna(), "x"]) <= observed_x  # PMM: only donors' values
        assert set(c["b"]) <= {0.0, 1.0}
        assert set(c["s"]) <= {"a", "b", "c"}
        assert isinstance(c["g"].dtype, pd.CategoricalDtype)
    again = mice(d, m=3, iterations=3, seed=42)
    other = mice(d, m=3, iterations=3, seed=43)
    for a, b in zip(imp.completed, again.completed, strict=True):
        pd.testing.assert_frame_equal(a, b)
    assert not imp.completed[0].equals(other.completed[0])
    assert not imp.completed[0].equals(imp.completed[1])  # chains differ
    assert set(imp.chain_mean["column"]) == {"x", "b"}


def test_mice_input_errors() -> None:
    d = mixed()
    with pytest.raises(UsageError, match="not in the data"):
        mice(d, columns=["nope"])
    with pytest.raises(UsageError, match="pmm needs a numeric"):
        mice(d, methods={"s": "pmm"})
    with pytest.raises(UsageError, match="logreg needs"):
        mice(d, methods={"x": "logreg"})
    with pytest.raises(UsageError, match="one of"):
        mice(d, methods={"x": "midastouch"})


def test_mcar_pooled_ci_covers_truth(binary: pd.DataFrame) -> None:
    rng = np.random.default_rng(11)
    d = binary.copy()
    d.loc[rng.random(len(d)) < 0.3, "x2"] = np.nan
    imp = mice(d, m=10, iterations=5, seed=1)
    r = fit_mice("y ~ x1 + x2", imp)
    truth = np.array([-0.5, 0.8, -0.6])
    f = r.frame
    assert ((f["conf_low"] < truth) & (truth < f["conf_high"])).all()
    assert ((f["fmi"] > 0) & (f["fmi"] < 1)).all()
    assert (f["df"] > 0).all()
    assert len(r.fits) == 10


@pytest.mark.parametrize("method,slope", [("pmm", 1.0), ("norm", 2.0)])
def test_mar_mi_beats_listwise(method: str, slope: float) -> None:
    """x2 missing more often when y is high (MAR given y): listwise OLS is biased, MI is not.

    PMM is run at the milder selection: with slope 2 nearly every high-y row lacks x2, donors
    run out in that tail and PMM (which cannot extrapolate) is itself biased by about 0.1.
    """
    rng = np.random.default_rng(5)
    n = 4000
    x1 = rng.normal(size=n)
    x2 = 0.5 * x1 + rng.normal(size=n)
    y = 1.0 + x1 + x2 + rng.normal(size=n)
    d = pd.DataFrame({"y": y, "x1": x1, "x2": x2})
    d.loc[rng.random(n) < 1 / (1 + np.exp(-slope * (y - 1.5))), "x2"] = np.nan
    truth = np.array([1.0, 1.0, 1.0])
    listwise = ols("y ~ x1 + x2", d).params
    imp = mice(d, m=10, iterations=10, seed=2, methods={"x2": method})
    mi = fit_mice("y ~ x1 + x2", imp, fitter=ols)
    err_lw, err_mi = np.abs(listwise - truth), np.abs(mi.params - truth)
    assert err_lw.max() > 0.1
    assert (err_mi < err_lw).all()
    assert err_mi.max() < 0.06
    f = mi.frame
    assert ((f["conf_low"] < truth) & (truth < f["conf_high"])).all()
