"""The blocked, threaded partial-sum kernel equals the plain whole-array computation.

The reference below is the textbook formula written directly on all rows with
:meth:`Family.pieces` (an n x p temporary and all): gradient X'(w u), information
X' diag(w v) X, log-likelihood sum(w l). The kernel must give the same sums to 1e-12 whatever
the block size, the number of threads, and with weights and an offset.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from smesurvival.errors import DataValidationError, FormulaError, RankDeficientError, UsageError
from smesurvival.inference.vcov import sandwich_vcov
from smesurvival.models.families import FAMILIES, Family
from smesurvival.models.fit import fit, fit_arrays
from smesurvival.models.glm import null_loglik
from smesurvival.models.kernels import GLMSums, glm_final_sums, glm_partial_sums, glm_row_scores


def plain_sums(
    X: np.ndarray, y: np.ndarray, beta: np.ndarray, fam: Family, w: np.ndarray | None,
    offset: np.ndarray | None, information: str,
) -> tuple[np.ndarray, np.ndarray, float, np.ndarray]:
    eta = X @ beta + (0.0 if offset is None else offset)
    ll, u, w_exp, w_obs = fam.pieces(eta, y)
    v = w_obs if information == "observed" else w_exp
    c = np.ones(len(y)) if w is None else w
    return X.T @ (c * u), (X * (c * v)[:, None]).T @ X, float((c * ll).sum()), eta


def data(n: int, p: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p))
    X[:, 0] = 1.0
    X[:, 1] = rng.random(n) < 0.2  # a dummy column, as year dummies in a firm-year panel
    beta = rng.normal(0.0, 0.4, p)
    beta[0] = -1.5
    eta = X @ beta
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-eta))).astype(float)
    return X, y, beta


def close(got: GLMSums, want: tuple[np.ndarray, np.ndarray, float, np.ndarray],
          X: np.ndarray, scale: float) -> None:
    grad, info, ll, eta = want
    # absolute tolerance relative to the size of the summed terms (a sum can be near zero)
    gscale = scale * np.abs(X).sum(axis=0)
    np.testing.assert_allclose(got.grad, grad, rtol=1e-12, atol=1e-12 * gscale.max())
    np.testing.assert_allclose(got.info, info, rtol=1e-12, atol=1e-12 * np.abs(info).max())
    assert got.loglik == pytest.approx(ll, rel=1e-12)
    assert got.eta_min == pytest.approx(eta.min(), rel=1e-12, abs=1e-12)
    assert got.eta_max == pytest.approx(eta.max(), rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("link", ["logit", "probit", "cloglog"])
@pytest.mark.parametrize("information", ["expected", "observed"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize(("block_rows", "threads"), [(None, 1), (7, 1), (64, 2), (1000, 3)])
def test_blocked_kernel_equals_plain(
    link: str, information: str, weighted: bool, block_rows: int | None, threads: int
) -> None:
    X, y, beta = data(3001, 6, 1)
    rng = np.random.default_rng(2)
    w = rng.gamma(2.0, 0.5, len(y)) if weighted else None
    offset = rng.normal(0.0, 0.3, len(y))
    fam = FAMILIES[link]
    got = glm_partial_sums(X, y, beta, fam, w, offset, information,  # type: ignore[arg-type]
                           block_rows=block_rows, threads=threads)
    assert got.n_rows == len(y)
    assert got.sum_weights == pytest.approx(len(y) if w is None else w.sum(), rel=1e-14)
    close(got, plain_sums(X, y, beta, fam, w, offset, information), X, 1.0)


def test_sums_do_not_depend_on_thread_count() -> None:
    X, y, beta = data(50_000, 5, 3)
    runs = [glm_partial_sums(X, y, beta, FAMILIES["logit"], block_rows=500, threads=t)
            for t in (1, 2, 4)]
    for r in runs[1:]:
        assert np.array_equal(r.grad, runs[0].grad)
        assert np.array_equal(r.info, runs[0].info)
        assert r.loglik == runs[0].loglik


def test_logit_tails_stay_finite_and_accurate() -> None:
    """|eta| up to 800: the in-place logit pieces agree with the log-space family formulas."""
    eta = np.linspace(-800.0, 800.0, 4001)
    X = np.column_stack([np.ones_like(eta), eta])
    y = (np.arange(eta.size) % 2).astype(float)
    beta = np.array([0.0, 1.0])
    got = glm_partial_sums(X, y, beta, FAMILIES["logit"], block_rows=97, threads=1)
    want = plain_sums(X, y, beta, FAMILIES["logit"], None, None, "expected")
    assert np.isfinite(got.loglik)
    close(got, want, X, 1.0)


def test_negative_weights_use_the_general_gram() -> None:
    X, y, beta = data(500, 4, 5)
    w = np.random.default_rng(6).normal(1.0, 1.0, len(y))  # some negative (e.g. a correction)
    got = glm_partial_sums(X, y, beta, FAMILIES["probit"], w, block_rows=64, threads=1)
    close(got, plain_sums(X, y, beta, FAMILIES["probit"], w, None, "expected"), X, 1.0)


def test_fortran_ordered_design() -> None:
    X, y, beta = data(999, 5, 7)
    got = glm_partial_sums(np.asfortranarray(X), y, beta, FAMILIES["cloglog"], block_rows=100)
    close(got, plain_sums(X, y, beta, FAMILIES["cloglog"], None, None, "expected"), X, 1.0)


@pytest.mark.parametrize("link", ["logit", "probit", "cloglog"])
def test_final_sums_meat_equals_row_scores(link: str) -> None:
    X, y, beta = data(2000, 4, 8)
    fam = FAMILIES[link]
    w = np.random.default_rng(9).gamma(2.0, 0.5, len(y))
    S = glm_row_scores(X, y, beta, fam)
    hc = glm_final_sums(X, y, beta, fam, row_factor=w, block_rows=77)
    assert hc.meat is not None
    np.testing.assert_allclose(hc.meat, (S * w[:, None]).T @ S, rtol=1e-12)
    codes = np.repeat(np.arange(400), 5)
    codes[::7] = 3  # not every cluster contiguous
    sums = np.zeros((400, 4))
    np.add.at(sums, codes, S * w[:, None])
    cl = glm_final_sums(X, y, beta, fam, row_factor=w, cluster_codes=codes, n_clusters=400,
                        block_rows=77)
    assert cl.meat is not None
    np.testing.assert_allclose(cl.meat, sums.T @ sums, rtol=1e-12)
    mu = fam.mean(X @ beta)
    assert cl.n_extreme == int(((mu < 1e-8) | (mu > 1 - 1e-8)).sum())


@pytest.mark.parametrize("link", ["logit", "probit", "cloglog"])
@pytest.mark.parametrize("intercept", [True, False])
def test_closed_form_null_loglik_equals_fitted(link: str, intercept: bool) -> None:
    _, y, _ = data(700, 3, 10)
    w = np.random.default_rng(11).gamma(2.0, 0.5, len(y))
    fam = FAMILIES[link]
    tiny = np.zeros(len(y))  # an all-zero offset takes the fitted route
    for weights in (None, w):
        assert null_loglik(y, fam, intercept, weights) == pytest.approx(
            null_loglik(y, fam, intercept, weights, tiny), rel=1e-12)


# ---- the in-memory fit on arrays: same numbers as the formula path, the old sandwich, np.cov


def frame(n: int = 4000, seed: int = 12) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({
        "x": rng.standard_normal(n), "z": rng.gamma(2.0, 1.0, n),
        "year": rng.integers(2001, 2006, n), "firm": rng.integers(0, 300, n),
        "big": 2000.0 + rng.standard_normal(n),  # a large mean: the VIFs need centred moments
        "w": rng.gamma(3.0, 1.0 / 3.0, n),
    })
    eta = -1.0 + 0.5 * df["x"] - 0.3 * df["z"] + 0.1 * (df["year"] - 2003)
    df["y"] = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(float)
    return df


def old_vif(X: np.ndarray, terms: tuple[str, ...]) -> dict[str, float]:
    cov = np.cov(X, rowvar=False)
    cols = [j for j, t in enumerate(terms) if t != "Intercept"]
    c = cov[np.ix_(cols, cols)]
    d = np.sqrt(np.diag(c))
    inv = np.linalg.inv(c / np.outer(d, d))
    return {terms[j]: float(v) for j, v in zip(cols, np.diag(inv), strict=True)}


@pytest.mark.parametrize("link", ["logit", "probit", "cloglog"])
@pytest.mark.parametrize("formula", ["y ~ x + z + C(year)", "y ~ x + z + big"])
def test_fit_arrays_equals_fit(link: str, formula: str) -> None:
    df = frame()
    res = fit(formula, df, model=link)  # type: ignore[arg-type]
    X = np.ascontiguousarray(res.design_matrix(df))  # as the formula path builds it
    arr = fit_arrays(X, df["y"].to_numpy(), model=link, terms=res.terms)  # type: ignore[arg-type]
    np.testing.assert_allclose(arr.params, res.params, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(arr.vcov, res.vcov, rtol=1e-13, atol=1e-18)
    assert arr.loglik == pytest.approx(res.loglik, rel=1e-14)
    assert arr.llnull == pytest.approx(res.llnull, rel=1e-14)
    assert arr.diagnostics.vif.keys() == res.diagnostics.vif.keys()
    for t, v in old_vif(X, res.terms).items():
        assert res.diagnostics.vif[t] == pytest.approx(v, rel=1e-9)
    mu = FAMILIES[link].mean(X @ res.params)
    assert res.diagnostics.min_fitted == pytest.approx(mu.min(), rel=1e-12)
    assert res.diagnostics.max_fitted == pytest.approx(mu.max(), rel=1e-12)


@pytest.mark.parametrize("vcov", ["hc0", "hc1", "cluster"])
@pytest.mark.parametrize("kind", [None, "frequency", "survey"])
def test_blocked_sandwich_equals_row_scores(vcov: str, kind: str | None) -> None:
    df = frame()
    kw: dict[str, Any] = {"vcov": vcov, "cluster": "firm"}
    if kind is not None:
        kw |= {"weights": "w", "weights_kind": kind}
    res = fit("y ~ x + z + C(year)", df, model="probit", **kw)
    X = res.design_matrix(df)
    w = df["w"].to_numpy() if kind is not None else None
    scores = glm_row_scores(X, df["y"].to_numpy(), res.params, FAMILIES["probit"])
    bread = np.linalg.inv(glm_partial_sums(X, df["y"].to_numpy(), res.params,
                                           FAMILIES["probit"], w).info)
    bread = (bread + bread.T) / 2
    want = sandwich_vcov(bread, scores, vcov, weights=w,  # type: ignore[arg-type]
                         weights_kind=kind or "frequency",  # type: ignore[arg-type]
                         cluster=df["firm"].to_numpy())
    np.testing.assert_allclose(res.vcov, want, rtol=1e-9, atol=1e-16)


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
def test_fit_arrays_names_the_bad_value() -> None:
    df = frame(500)
    X = np.column_stack([np.ones(500), df["x"], df["z"]])
    X[123, 2] = np.inf
    with pytest.raises(DataValidationError, match=r"column 'z'.*row 123"):
        fit_arrays(X, df["y"].to_numpy(), terms=["Intercept", "x", "z"])
    with pytest.raises(UsageError, match="terms must name"):
        fit_arrays(X[:, :2], df["y"].to_numpy(), terms=["Intercept"])
    with pytest.raises(UsageError, match="cluster"):
        fit_arrays(X[:, :2], df["y"].to_numpy(), vcov="cluster")
    with pytest.raises(FormulaError, match="0/1"):
        fit_arrays(X[:, :2], df["z"].to_numpy())


def test_fit_arrays_does_not_copy_and_rank_check_names_columns() -> None:
    df = frame(800)
    X = np.column_stack([np.ones(800), df["x"], df["z"], df["x"] + df["z"]])
    with pytest.raises(RankDeficientError, match="'xz'"):
        fit_arrays(X, df["y"].to_numpy(), terms=["Intercept", "x", "z", "xz"])
    X = np.ascontiguousarray(X[:, :3])
    before = X.copy()
    res = fit_arrays(X, df["y"].to_numpy(), terms=["Intercept", "x", "z"])
    assert np.array_equal(X, before) and res.converged and res.design_spec is None
