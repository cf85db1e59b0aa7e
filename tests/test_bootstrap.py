"""Batched refits and bootstrap intervals, checked against one-at-a-time fits and scipy."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from scipy import special, stats

from smesurvival.errors import UsageError
from smesurvival.inference.batched import (
    CONVERGED,
    SEPARATED,
    SINGULAR,
    fit_cox_batched,
    fit_glm_batched,
)
from smesurvival.inference.bootstrap import BootstrapResult, bootstrap
from smesurvival.inference.resample import draw_weights, resample_weights
from smesurvival.models.cox import cox_newton, fit_cox
from smesurvival.models.design import build_design
from smesurvival.models.families import FAMILIES
from smesurvival.models.fit import fit

FORMULA = "y ~ x1 * x2 + C(g)"


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    rng = np.random.default_rng(20120101)
    n = 400
    g = rng.choice(["a", "b", "c", "d"], size=n)
    x1 = rng.normal(size=n)
    x2 = rng.binomial(1, 0.4, size=n).astype(float)
    eta = 0.4 + 0.8 * x1 - 0.5 * x2 + 0.3 * x1 * x2 + np.where(g == "b", 0.5, 0.0)
    y = rng.binomial(1, special.expit(eta))
    firm = rng.integers(0, 60, size=n)  # 60 clusters of about 7 rows
    return pd.DataFrame({"y": y, "x1": x1, "x2": x2, "g": g, "firm": firm})


def _design(data: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    d = build_design(FORMULA, data)
    assert d.y is not None
    return d.X, d.y


def _refit(data: pd.DataFrame, w: np.ndarray, model: str) -> np.ndarray:
    return fit(FORMULA, data.assign(w=w), model=model, weights="w", tol=1e-13).params  # type: ignore[arg-type]


@pytest.mark.parametrize("model", ["logit", "probit", "cloglog"])
def test_batched_equals_individual_fits(data: pd.DataFrame, model: str) -> None:
    X, y = _design(data)
    full = fit(FORMULA, data, model=model)  # type: ignore[arg-type]
    W = resample_weights(len(data), 6, seed=7)
    res = fit_glm_batched(X, y, W, FAMILIES[model], full.params, chunk=4)
    assert res.converged.all()
    for b in range(W.shape[0]):
        np.testing.assert_allclose(res.params[b], _refit(data, W[b], model), rtol=0, atol=1e-8)


def test_batched_float64_and_expected_information(data: pd.DataFrame) -> None:
    X, y = _design(data)
    full = fit(FORMULA, data, model="probit")
    W = resample_weights(len(data), 5, seed=8, kind="bayesian")
    a = fit_glm_batched(X, y, W, FAMILIES["probit"], full.params, precision="float64",
                        information="expected", n_threads=1)
    b = fit_glm_batched(X, y, W, FAMILIES["probit"], full.params)
    np.testing.assert_allclose(a.params, b.params, rtol=0, atol=1e-8)
    np.testing.assert_allclose(b.params[0], _refit(data, W[0], "probit"), rtol=0, atol=1e-8)


def test_cluster_resampled_batched_fits(data: pd.DataFrame) -> None:
    X, y = _design(data)
    full = fit(FORMULA, data)
    firm = data["firm"].to_numpy()
    W = resample_weights(len(data), 5, seed=11, cluster=firm)
    for f in np.unique(firm):  # rows of a cluster move together
        assert (W[:, firm == f] == W[:, firm == f][:, :1]).all()
    res = fit_glm_batched(X, y, W, FAMILIES["logit"], full.params)
    for b in range(W.shape[0]):
        np.testing.assert_allclose(res.params[b], _refit(data, W[b], "logit"), rtol=0, atol=1e-8)


def test_separated_and_singular_replicates_are_flagged() -> None:
    rng = np.random.default_rng(3)
    n = 200
    x = rng.normal(size=n)
    y = (x > 0).astype(float)
    flip = np.argsort(np.abs(x))[:10]  # the ten rows nearest the boundary break separation
    y[flip] = 1.0 - y[flip]
    X = np.column_stack([np.ones(n), x, rng.binomial(1, 0.5, n)])
    full = fit("y ~ x + z", pd.DataFrame({"y": y, "x": x, "z": X[:, 2]}))
    W = np.ones((4, n))
    W[1, flip] = 0.0  # separated: x > 0 predicts y exactly
    W[2, X[:, 2] == 1] = 0.0  # z is constant 0 among the weighted rows: rank deficient
    res = fit_glm_batched(X, y, W, FAMILIES["logit"], full.params)
    assert res.status[0] == CONVERGED and res.status[3] == CONVERGED
    assert res.status[1] == SEPARATED
    assert res.status[2] == SINGULAR
    assert res.n_failed == 2 and np.isnan(res.params[1:3]).all()
    assert res.status_counts() == {"converged": 2, "separated": 1, "singular information": 1}


def test_batched_steps_cholesky_with_lu_fallback() -> None:
    """The batched Newton/chord steps: Cholesky substitution equals LAPACK's solve; an
    indefinite information (observed, far from the optimum) falls back to LU; a singular or
    non-finite one is flagged."""
    from smesurvival.inference.batched import _chol_solve, _factor, _step

    rng = np.random.default_rng(5)
    b, p = 6, 5
    A = rng.normal(size=(b, p, p))
    H = A @ A.transpose(0, 2, 1) + 0.5 * np.eye(p)
    H[1] = np.diag([2.0, 1.0, -0.5, 1.0, 3.0])  # indefinite: no Cholesky factor, LU works
    H[2] = 0.0  # singular
    H[3, 0, 0] = np.nan  # not finite
    g = rng.normal(size=(b, p))
    g[4, 2] = np.inf
    L, nonpd = _factor(H)
    assert nonpd.tolist() == [False, True, True, True, False, False]
    ok = [0, 5]
    np.testing.assert_allclose(_chol_solve(L[ok], g[ok]), np.linalg.solve(H[ok], g[ok][..., None])[..., 0],
                               rtol=1e-12)
    idx = np.array([0, 1, 2, 3, 4, 5])
    for sel in (slice(None), idx):
        step, bad = _step(H, L, ~nonpd, sel, g)
        assert bad.tolist() == [False, False, True, True, True, False]
        np.testing.assert_allclose(step[[0, 1, 5]], np.linalg.solve(H[[0, 1, 5]], g[[0, 1, 5]][..., None])[..., 0],
                                   rtol=1e-12)


def test_bootstrap_reports_failed_replicates() -> None:
    rng = np.random.default_rng(5)
    n = 40
    x = rng.normal(size=n)
    y = (x + rng.normal(scale=0.3, size=n) > 0).astype(int)
    res = bootstrap(None, "y ~ x", pd.DataFrame({"y": y, "x": x}), B=300, seed=2,
                    jackknife="none")
    assert res.n_failed > 0  # small, nearly separated data: some replicates separate
    assert sum(res.failures().values()) == res.n_failed
    assert np.isnan(res.replicates[~res.valid]).all()
    assert np.isfinite(res.ci()).all()


def test_weights_deterministic_and_bayesian_sums() -> None:
    a = resample_weights(50, 30, seed=1)
    assert np.array_equal(a, resample_weights(50, 30, seed=1))
    assert not np.array_equal(a, resample_weights(50, 30, seed=2))
    assert (a.sum(axis=1) == 50).all() and (a == np.round(a)).all()
    bb = resample_weights(50, 30, seed=1, kind="bayesian")
    np.testing.assert_allclose(bb.sum(axis=1), 50.0, rtol=1e-12)
    assert (bb > 0).all()
    cl = np.repeat(np.arange(10), 5)
    bc = resample_weights(50, 30, seed=1, kind="bayesian", cluster=cl)
    np.testing.assert_allclose(bc.reshape(30, 10, 5).std(axis=2), 0.0, atol=1e-12)
    assert resample_weights(50, 3, seed=1, dtype=np.float32).dtype == np.float32
    with pytest.raises(UsageError, match="kind"):
        resample_weights(5, 2, kind="wild")  # type: ignore[arg-type]


def test_lazy_draws_equal_the_matrix_and_its_refits(data: pd.DataFrame) -> None:
    """Blocks drawn on their own, in any order, by any thread, are the rows of the matrix;
    refits from the lazy draws (each worker drawing its own block) equal refits from it."""
    from smesurvival.inference.resample import BLOCK

    n, B = len(data), 2 * BLOCK + 37  # three blocks, the last one partial
    draws = draw_weights(n, B, seed=5)
    W = resample_weights(n, B, seed=5)
    assert draws.n_blocks == 3 and np.array_equal(draws.all(), W)
    for i in (2, 0, 1):
        a, z = draws.bounds(i)
        assert np.array_equal(draws.block(i), W[a:z])
    base = np.linspace(0.5, 2.0, n)
    np.testing.assert_allclose(draws.scaled(base).all(), W * base, rtol=0, atol=0)
    X, y = _design(data)
    full = fit(FORMULA, data)
    lazy = fit_glm_batched(X, y, draws, FAMILIES["logit"], full.params, n_threads=2)
    dense = fit_glm_batched(X, y, W, FAMILIES["logit"], full.params, chunk=BLOCK)
    assert lazy.converged.all() and dense.converged.all()
    np.testing.assert_allclose(lazy.params, dense.params, rtol=0, atol=1e-9)
    for b in (0, BLOCK + 3, B - 1):  # against plain weighted fits
        np.testing.assert_allclose(lazy.params[b], _refit(data, W[b], "logit"), atol=1e-8)
    with pytest.raises(UsageError, match="one value per row"):
        draws.scaled(np.ones(n + 1))


def _mean_result(x: np.ndarray, B: int, seed: int) -> BootstrapResult:
    n = x.size
    W = resample_weights(n, B, seed=seed)
    reps = (W @ x / n)[:, None]
    jk = ((x.sum() - x) / (n - 1))[:, None]
    return BootstrapResult(np.array([x.mean()]), reps, ("mean",), "pairs", seed,
                           np.zeros(B, dtype=np.int8), jk, "exact")


@pytest.mark.parametrize("level", [0.9, 0.95])
def test_percentile_and_bca_match_scipy(level: float) -> None:
    x = np.random.default_rng(9).exponential(size=60)  # skewed: BCa differs from percentile
    res = _mean_result(x, 1999, seed=4)
    prior = SimpleNamespace(bootstrap_distribution=res.replicates[:, 0])
    for ours, theirs in (("percentile", "percentile"), ("bca", "BCa")):
        ref = stats.bootstrap((x,), np.mean, n_resamples=0, bootstrap_result=prior,
                              confidence_level=level, method=theirs)
        ci = res.ci(level, ours)[0]  # type: ignore[arg-type]
        np.testing.assert_allclose(ci, [ref.confidence_interval.low,
                                        ref.confidence_interval.high], rtol=1e-12)
    assert not np.allclose(res.ci(level, "bca"), res.ci(level, "percentile"))


def test_bca_and_normal_hand_formulas() -> None:
    x = np.random.default_rng(10).gamma(2.0, size=40)
    res = _mean_result(x, 999, seed=5)
    t, t0 = res.replicates[:, 0], x.mean()
    z0 = special.ndtri((np.sum(t < t0) + np.sum(t <= t0)) / (2 * t.size))
    d = x.mean() - (x.sum() - x) / (x.size - 1)  # jackknife mean minus each value, signs kept
    d = ((x.sum() - x) / (x.size - 1)).mean() - (x.sum() - x) / (x.size - 1)
    a = (d**3).sum() / (6 * (d**2).sum() ** 1.5)
    lev = [special.ndtr(z0 + (z0 + z) / (1 - a * (z0 + z))) for z in (-1.959963984540054,
                                                                      1.959963984540054)]
    np.testing.assert_allclose(res.ci(0.95, "bca")[0], np.quantile(t, lev), rtol=1e-12)
    se = t.std(ddof=1)
    centre = 2 * t0 - t.mean()
    np.testing.assert_allclose(res.ci(0.95, "normal")[0],
                               [centre - 1.959963984540054 * se, centre + 1.959963984540054 * se])
    no_jk = BootstrapResult(res.estimate, res.replicates, res.names, "pairs", 5, res.status)
    with pytest.raises(UsageError, match="jackknife"):
        no_jk.ci(method="bca")


def test_bootstrap_end_to_end_matches_scipy_bca() -> None:
    """Intercept-only logit: expit(b0) is the weighted mean of y, so BCa must equal scipy's."""
    rng = np.random.default_rng(12)
    y = rng.binomial(1, 0.3, size=80)
    res = bootstrap(lambda b: special.expit(b[0]), "y ~ 1", pd.DataFrame({"y": y}), B=999,
                    seed=6, names=("p",))
    assert res.n_failed == 0 and res.jackknife_method == "exact"
    W = resample_weights(80, 999, seed=6)
    np.testing.assert_allclose(res.replicates[:, 0], W @ y / 80, rtol=0, atol=1e-9)
    prior = SimpleNamespace(bootstrap_distribution=res.replicates[:, 0])
    ref = stats.bootstrap((y.astype(float),), np.mean, n_resamples=0, bootstrap_result=prior,
                          method="BCa")
    np.testing.assert_allclose(res.ci(method="bca")[0], [ref.confidence_interval.low,
                                                         ref.confidence_interval.high],
                               rtol=0, atol=1e-8)


def test_bootstrap_api_deterministic_statistics_and_json(data: pd.DataFrame) -> None:
    def ame_x1(b: np.ndarray, w: np.ndarray) -> float:  # average marginal effect of x1 at x2=0
        mu = special.expit(X @ b)
        return float(np.average(mu * (1 - mu) * b[j], weights=w))

    design = build_design(FORMULA, data)
    X, j = design.X, design.terms.index("x1")
    r1 = bootstrap(ame_x1, FORMULA, data, B=120, seed=3, names=("ame",))
    r2 = bootstrap(ame_x1, fit(FORMULA, data), data, B=120, seed=3, names=("ame",))
    np.testing.assert_array_equal(r1.replicates, r2.replicates)
    assert r1.jackknife is not None and r1.jackknife.shape == (len(data), 1)
    coef = bootstrap(None, FORMULA, data, B=120, seed=3, jackknife="onestep")
    assert coef.names == fit(FORMULA, data).terms and coef.replicates.shape == (120, 7)
    exact = bootstrap(None, FORMULA, data, B=20, seed=3)
    assert coef.jackknife is not None and exact.jackknife is not None
    np.testing.assert_allclose(coef.jackknife, exact.jackknife, atol=5e-3)
    back = BootstrapResult.from_dict(json.loads(json.dumps(r1.to_dict())))
    np.testing.assert_array_equal(back.replicates, r1.replicates)
    np.testing.assert_allclose(back.ci(method="bca"), r1.ci(method="bca"))
    cl = bootstrap(None, FORMULA, data, B=50, seed=3, cluster="firm", kind="bayesian")
    assert cl.n_clusters == 60 and cl.jackknife is not None and cl.jackknife.shape == (60, 7)
    tidy = cl.tidy(0.9, "normal")
    assert list(tidy.columns) == ["term", "estimate", "std_error", "conf_low", "conf_high"]


def test_cox_batched_breslow_matches_individual_fits() -> None:
    rng = np.random.default_rng(21)
    n = 300
    X = np.column_stack([rng.normal(size=n), rng.binomial(1, 0.5, n)])
    t = np.ceil(rng.exponential(np.exp(-(0.5 * X[:, 0] - 0.4 * X[:, 1]))) * 20)  # ties
    e = (rng.uniform(size=n) < 0.8).astype(float)
    full = cox_newton(X, t, e, ties="breslow")
    W = np.vstack([resample_weights(n, 3, seed=2),
                   resample_weights(n, 2, seed=2, kind="bayesian")])
    res = fit_cox_batched(t, e, X, W, full.params, ties="breslow", chunk=2)
    assert res.converged.all()
    for b in range(5):
        keep = W[b] > 0  # the reference fits the rows drawn, with their counts as weights
        ref = cox_newton(X[keep], t[keep], e[keep], weights=W[b][keep], ties="breslow")
        np.testing.assert_allclose(res.params[b], ref.params, rtol=0, atol=1e-8)


@pytest.mark.parametrize("ties", ["efron", "breslow"])
def test_cox_batched_efron_matches_individual_fits(ties: str) -> None:
    """Efron terms per replicate: a tied death not drawn (weight 0) is no event, so m_k varies."""
    rng = np.random.default_rng(5)
    n = 250
    X = np.column_stack([rng.normal(size=n), rng.binomial(1, 0.4, n), rng.normal(size=n)])
    t = np.ceil(rng.exponential(np.exp(-(0.6 * X[:, 0] - 0.5 * X[:, 1]))) * 8)  # heavy ties
    e = (rng.uniform(size=n) < 0.75).astype(float)
    full = cox_newton(X, t, e, ties=ties)  # type: ignore[arg-type]
    W = np.vstack([resample_weights(n, 4, seed=9),
                   resample_weights(n, 2, seed=9, kind="bayesian")])
    res = fit_cox_batched(t, e, X, W, full.params, ties=ties, chunk=4)  # type: ignore[arg-type]
    assert res.converged.all()
    for b in range(W.shape[0]):
        keep = W[b] > 0
        ref = cox_newton(X[keep], t[keep], e[keep], weights=W[b][keep], ties=ties)  # type: ignore[arg-type]
        np.testing.assert_allclose(res.params[b], ref.params, rtol=0, atol=1e-8)


def test_bootstrap_of_a_cox_fit_equals_weighted_refits() -> None:
    """bootstrap(FitResult from fit_cox): each replicate = fit_cox on the drawn rows with their
    counts as case weights (Efron ties kept); the exact jackknife = delete-one fit_cox."""
    rng = np.random.default_rng(8)
    n = 160
    d = pd.DataFrame({"x1": rng.normal(size=n), "g": rng.choice(["a", "b", "c"], n)})
    d["time"] = np.ceil(rng.exponential(np.exp(-0.7 * d.x1)) * 10)
    d["event"] = (rng.uniform(size=n) < 0.8).astype(int)
    full = fit_cox("x1 + C(g)", d, duration="time", event="event")
    res = bootstrap(None, full, d, B=6, seed=4, jackknife="exact")
    W = resample_weights(n, 6, 4)
    for b in range(3):
        keep = W[b] > 0
        ref = fit_cox("x1 + C(g)", d[keep].assign(w=W[b][keep]), duration="time", event="event",
                      weights="w")
        np.testing.assert_allclose(res.replicates[b], ref.params, rtol=0, atol=1e-7)
    assert res.jackknife is not None
    drop3 = fit_cox("x1 + C(g)", d.drop(index=3), duration="time", event="event")
    np.testing.assert_allclose(res.jackknife[3], drop3.params, rtol=0, atol=1e-7)
    assert res.ci(method="bca").shape == (3, 2)
    with pytest.raises(UsageError, match="without strata"):
        bootstrap(None, fit_cox("x1", d, duration="time", event="event", strata="g"), d, B=5)
    with pytest.raises(UsageError, match="pass its FitResult"):
        bootstrap(None, "x1", d, B=5, model="cox")
