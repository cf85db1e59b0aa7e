"""Mediation: exact OLS vs statsmodels, KHB on a known latent-variable logit, Sobel by hand,
KHB delta-method SE vs a bootstrap, weights as replicated rows, the study's path."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from smesurvival.errors import UsageError
from smesurvival.inference.mediation import indirect_effect, khb, ols, ols_fit
from smesurvival.models.fit import fit

A, THETA, BX, BC = 0.5, 0.8, 0.5, 0.3  # true latent-scale paths


def latent(n: int, seed: int, err: str = "logistic", clusters: int = 60) -> pd.DataFrame:
    """y* = 1 + BX x + THETA z + BC c + e; z = A x + 0.2 c + u: indirect = THETA * A."""
    rng = np.random.default_rng(seed)
    x, c = rng.normal(size=n), rng.normal(size=n)
    z = A * x + 0.2 * c + rng.normal(size=n)
    z2 = -0.3 * x + 0.5 * rng.normal(size=n) + 0.3 * z
    e = rng.logistic(size=n) if err == "logistic" else rng.normal(size=n)
    ys = 1.0 + BX * x + THETA * z + BC * c + e
    return pd.DataFrame({"y": (ys > 0).astype(float), "x": x, "z": z, "z2": z2, "c": c,
                         "g": rng.integers(0, clusters, n), "cat": rng.choice(list("abc"), n)})


@pytest.fixture(scope="module")
def big() -> pd.DataFrame:
    return latent(60_000, 11)


@pytest.fixture(scope="module")
def small() -> pd.DataFrame:
    return latent(1500, 5)


# ---- OLS -----------------------------------------------------------------------------------
def test_ols_matches_statsmodels(small: pd.DataFrame) -> None:
    X = sm.add_constant(small[["x", "c"]].to_numpy())
    y = small["z"].to_numpy()
    sm_cl = sm.OLS(y, X).fit()
    sm_hc1 = sm.OLS(y, X).fit(cov_type="HC1")
    sm_cr = sm.OLS(y, X).fit(cov_type="cluster", cov_kwds={"groups": small["g"].to_numpy()})
    ours = {k: ols("z ~ x + c", small, vcov=k, cluster="g" if k == "cluster" else None)
            for k in ("classical", "hc1", "cluster")}
    for k, ref in (("classical", sm_cl), ("hc1", sm_hc1), ("cluster", sm_cr)):
        np.testing.assert_allclose(ours[k].params, ref.params, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(ours[k].se, ref.bse, rtol=1e-10)
    assert ours["classical"].terms == ("Intercept", "x", "c")
    np.testing.assert_allclose(ours["classical"].sigma2, sm_cl.scale, rtol=1e-10)
    t = ours["classical"].tidy()
    np.testing.assert_allclose(t["p_value"], sm_cl.pvalues, rtol=1e-8)


def test_ols_frequency_weights_equal_replicated_rows(small: pd.DataFrame) -> None:
    rng = np.random.default_rng(0)
    d = small.assign(w=rng.integers(1, 4, len(small)).astype(float))
    expanded = d.loc[d.index.repeat(d["w"].astype(int))].reset_index(drop=True)
    for k in ("classical", "hc1"):
        a = ols("z ~ x + c", d, vcov=k, weights="w")
        b = ols("z ~ x + c", expanded, vcov=k)
        np.testing.assert_allclose(a.params, b.params, rtol=1e-10)
        np.testing.assert_allclose(a.se, b.se, rtol=1e-10)


def test_ols_rank_deficient_is_named() -> None:
    X = np.column_stack([np.ones(5), np.arange(5.0), 2 * np.arange(5.0)])
    with pytest.raises(UsageError, match="rank deficient"):
        ols_fit(X, np.arange(5.0), ["Intercept", "a", "b"])


# ---- KHB -----------------------------------------------------------------------------------
@pytest.mark.parametrize("model,err", [("logit", "logistic"), ("probit", "normal")])
def test_khb_recovers_latent_decomposition(model: str, err: str) -> None:
    d = latent(60_000, 11, err)
    r = khb(d, "y", "x", "z", ["c"], model=model)  # type: ignore[arg-type]
    f = r.frame.set_index("term")
    # total = direct + indirect by construction (the reduced KHB fit vs the sum of parts)
    assert abs(r.total - r.direct - r.indirect) < 1e-7
    assert r.total == pytest.approx(r.direct + r.indirect, abs=1e-7)
    # the latent-scale paths: direct = BX, indirect = THETA * A (within 4 SE)
    assert abs(r.direct - BX) < 4 * f.at["direct", "std_error"]
    assert abs(r.indirect - THETA * A) < 4 * f.at["indirect", "std_error"]
    assert abs(r.total - (BX + THETA * A)) < 4 * f.at["total", "std_error"]
    # rescaling: the naive reduced coefficient is attenuated (the mediator's variance moved
    # into the error), so the naive difference understates the indirect effect
    assert r.rescaling_factor > 1.05
    assert r.naive_total < r.total - 4 * f.at["total", "std_error"]
    assert (r.naive_total - r.direct) < r.indirect - 4 * f.at["indirect", "std_error"]
    assert r.confounding_ratio == pytest.approx(r.total / r.direct)
    assert r.percent_mediated == pytest.approx(100 * r.indirect / r.total)
    assert r.rescaling_factor == pytest.approx(r.total / r.naive_total)


def test_khb_indirect_se_is_khb_formula(small: pd.DataFrame) -> None:
    """Two mediators, classical: Var = a'V_t a + t'V_a t with SUR covariance of the a's."""
    r = khb(small, "y", "x", ["z", "z2"], ["c"])
    X = sm.add_constant(small[["x", "c"]].to_numpy())
    m1, m2 = (sm.OLS(small[v].to_numpy(), X).fit() for v in ("z", "z2"))
    full = sm.Logit(small["y"].to_numpy(),
                    sm.add_constant(small[["x", "z", "z2", "c"]].to_numpy())).fit(disp=0)
    a = np.array([m1.params[1], m2.params[1]])
    t = full.params[2:4]
    Vt = full.cov_params()[2:4, 2:4]
    xtx_inv = np.linalg.inv(X.T @ X)[1, 1]
    e = np.column_stack([m1.resid, m2.resid])
    S = e.T @ e / (len(small) - 3)
    Va = S * xtx_inv
    se = np.sqrt(a @ Vt @ a + t @ Va @ t)
    f = r.frame.set_index("term")
    assert f.at["indirect", "estimate"] == pytest.approx(float(t @ a), rel=1e-7)
    assert f.at["indirect", "std_error"] == pytest.approx(se, rel=1e-5)
    assert f.at["indirect:z", "estimate"] == pytest.approx(t[0] * a[0], rel=1e-7)
    assert f.at["direct", "std_error"] == pytest.approx(full.bse[1], rel=1e-6)
    # the conditional total SE is the reduced KHB fit's own
    assert r.total_se_conditional == pytest.approx(r.reduced.se[r.reduced.index("x")], rel=1e-12)


@pytest.mark.slow
def test_khb_delta_se_matches_bootstrap(small: pd.DataFrame) -> None:
    r = khb(small, "y", "x", "z", ["c"])
    rng = np.random.default_rng(2024)
    reps = []
    for _ in range(200):
        idx = rng.integers(0, len(small), len(small))
        b = khb(small.iloc[idx].reset_index(drop=True), "y", "x", "z", ["c"])
        reps.append([b.total, b.direct, b.indirect])
    sd = np.std(np.array(reps), axis=0, ddof=1)
    f = r.frame.set_index("term")
    for j, term in enumerate(("total", "direct", "indirect")):
        assert f.at[term, "std_error"] == pytest.approx(sd[j], rel=0.15), term


def test_khb_robust_and_cluster_variants(small: pd.DataFrame) -> None:
    base = khb(small, "y", "x", "z", ["c"])
    for kind in ("hc1", "cluster"):
        r = khb(small, "y", "x", "z", ["c"], vcov=kind, cluster="g")  # type: ignore[arg-type]
        np.testing.assert_allclose(r.frame["estimate"], base.frame["estimate"], rtol=1e-12)
        f = r.frame.set_index("term")
        ref = fit("y ~ x + z + c", small, vcov=kind, cluster="g")  # type: ignore[arg-type]
        assert f.at["direct", "std_error"] == pytest.approx(ref.se[1], rel=1e-9)
        naive = fit("y ~ x + c", small, vcov=kind, cluster="g")  # type: ignore[arg-type]
        assert f.at["naive_total", "std_error"] == pytest.approx(naive.se[1], rel=1e-9)
        assert not np.allclose(r.frame["std_error"], base.frame["std_error"])
    with pytest.raises(UsageError, match="cluster"):
        khb(small, "y", "x", "z", vcov="cluster")


def test_khb_term_names_and_factor_controls(small: pd.DataFrame) -> None:
    r = khb(small, "y", "x", "z", ["c", "C(cat)"], model="cloglog")
    assert list(r.frame["term"]) == ["total", "direct", "indirect", "indirect:z", "naive_total",
                                     "percent_mediated", "confounding_ratio", "rescaling_factor"]
    assert "C(cat)[T.b]" in r.full.terms
    assert abs(r.total - r.direct - r.indirect) < 1e-7
    with pytest.raises(UsageError, match="one numeric column"):
        khb(small, "y", "x", "cat")


# ---- product of coefficients ---------------------------------------------------------------
def test_sobel_by_hand(small: pd.DataFrame) -> None:
    r = indirect_effect(small, "y", "x", "z", ["c"])
    med = sm.OLS(small["z"].to_numpy(), sm.add_constant(small[["x", "c"]].to_numpy())).fit()
    out = sm.Logit(small["y"].to_numpy(),
                   sm.add_constant(small[["x", "z", "c"]].to_numpy())).fit(disp=0)
    a, sa, b, sb = med.params[1], med.bse[1], out.params[2], out.bse[2]
    sobel = np.sqrt(a**2 * sb**2 + b**2 * sa**2)
    f = r.frame.set_index("term")
    assert f.at["indirect", "estimate"] == pytest.approx(a * b, rel=1e-7)
    assert r.sobel_se == pytest.approx(sobel, rel=1e-6)
    assert f.at["indirect", "std_error"] == pytest.approx(sobel, rel=1e-5)
    # probability scale: ame_indirect = a b mean p(1-p) for the logit
    p = out.predict()
    assert f.at["ame_indirect", "estimate"] == pytest.approx(a * b * np.mean(p * (1 - p)), rel=1e-7)
    assert f.at["ame_direct", "estimate"] == pytest.approx(out.params[1] * np.mean(p * (1 - p)),
                                                            rel=1e-7)
    np.testing.assert_allclose(r.statistic(r.params), r.frame["estimate"], rtol=1e-12)
    assert r.indirect == pytest.approx(a * b, rel=1e-7)


def test_indirect_weights_array_equals_replicated_rows(small: pd.DataFrame) -> None:
    rng = np.random.default_rng(9)
    w = rng.integers(0, 3, len(small)).astype(float)
    a = indirect_effect(small, "y", "x", "z", ["c"], weights=w)
    keep = small.loc[small.index.repeat(w.astype(int))].reset_index(drop=True)
    b = indirect_effect(keep, "y", "x", "z", ["c"])
    np.testing.assert_allclose(a.frame["estimate"], b.frame["estimate"], rtol=1e-7)
    np.testing.assert_allclose(a.frame["std_error"], b.frame["std_error"], rtol=1e-5)
    with pytest.raises(UsageError, match="shape"):
        indirect_effect(small, "y", "x", "z", weights=w[:10])


def test_interaction_ame_through_formula(small: pd.DataFrame) -> None:
    r = indirect_effect(small, "y", "x", "z", ["c"], outcome_extra="x:z")
    out = r.outcome_fit
    beta = out.params
    X = out.design_matrix(small)
    p = 1 / (1 + np.exp(-X @ beta))
    dens = p * (1 - p)
    a = r.mediator_fit.params[1]
    deta_dz = beta[out.index("z")] + beta[out.index("x:z")] * small["x"].to_numpy()
    deta_dx = beta[out.index("x")] + beta[out.index("x:z")] * small["z"].to_numpy()
    f = r.frame.set_index("term")
    assert f.at["ame_indirect", "estimate"] == pytest.approx(a * np.mean(dens * deta_dz), rel=1e-6)
    assert f.at["ame_direct", "estimate"] == pytest.approx(np.mean(dens * deta_dx), rel=1e-6)


def test_study_path_runs_on_synthetic_cohort() -> None:
    from smesurvival.data import build_measures
    from smesurvival.data.measures import MeasureOptions
    from smesurvival.data.schema import ColumnMap
    from smesurvival.data.synthetic import simulate_cohort

    mf = build_measures(simulate_cohort(n=20_000, seed=3).frame, ColumnMap.default(),
                        MeasureOptions())
    ctr = ["log_firm_age", "log_employees", "C(industry)"]
    k = khb(mf.frame, "survived", "rd_intensity", "export_ratio", ctr)
    ie = indirect_effect(mf.frame, "survived", "rd_intensity", "export_ratio", ctr)
    # R&D raises the export ratio (the simulator's R&D -> export path), exports raise survival
    assert ie.frame.set_index("term").at["a_path", "statistic"] > 4
    assert k.indirect > 0 and ie.frame.set_index("term").at["ame_indirect", "estimate"] > 0
    assert k.indirect == pytest.approx(ie.indirect, rel=1e-6)
