"""Multiple imputation by chained equations (MICE) and Rubin's rules.

Methods (van Buuren & Groothuis-Oudshoorn 2011, written from the published algorithms):

* ``pmm`` (continuous): predictive mean matching, type-1 matching as ``mice.impute.pmm``. Fit
  ridge-stabilised OLS on the observed rows (ridge 1e-5 * diag(X'X), as mice), draw
  sigma*^2 = SSR / chi2(n_obs - p) and beta* = beta_hat + sigma* L z (L L' = (X'X + ridge)^-1);
  predict the observed rows with beta_hat and the missing rows with beta*; each missing row
  takes the observed value of one of its k = 5 nearest donors, chosen uniformly.
* ``norm`` (continuous, on request): Bayesian linear regression, X_mis beta* + sigma* e, as
  ``mice.impute.norm``; unlike pmm it extrapolates beyond the observed values.
* ``logreg`` (0/1 or boolean columns) and ``polyreg`` (categorical / string columns): a
  (multinomial) logit fitted by Newton with a small ridge penalty (0.01 on standardised
  predictors, against separation; mice instead augments the data), a parameter draw
  beta* ~ N(beta_hat, H^-1) from the penalised information, then a category drawn from the
  predicted probabilities. ``logreg`` is ``polyreg`` with two classes.
* ``sample``: a random draw from the column's observed values (no model).

Missing cells start as random draws from the observed values; the visit sequence is the listed
columns left to right; each imputation model uses every other listed column (numeric as is,
categorical as treatment dummies), predictors standardised on the rows used. Each of the m
chains has its own generator spawned from ``seed``, so results are reproducible by seed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from smesurvival.errors import UsageError

METHODS = ("pmm", "norm", "logreg", "polyreg", "sample")
MAX_LEVELS = 50
_RIDGE_LOGIT = 0.01


@dataclass(frozen=True)
class ImputedData:
    """m completed data sets, the missingness table and the imputation settings."""

    completed: tuple[pd.DataFrame, ...] = field(repr=False)
    missing: pd.DataFrame
    methods: dict[str, str]
    visit: tuple[str, ...]
    m: int
    iterations: int
    seed: int | None
    chain_mean: pd.DataFrame = field(repr=False)  # imputation, iteration, column, mean imputed

    def complete(self, i: int) -> pd.DataFrame:
        """The i-th completed data set (0-based)."""
        return self.completed[i]

    def __len__(self) -> int:
        return self.m


def _is_binary(s: pd.Series) -> bool:
    if pd.api.types.is_bool_dtype(s):
        return True
    if not pd.api.types.is_numeric_dtype(s):
        return False
    return bool(np.isin(s.dropna().unique(), (0, 1)).all())


def _default_method(s: pd.Series) -> str:
    if _is_binary(s):
        return "logreg"
    if pd.api.types.is_numeric_dtype(s):
        return "pmm"
    return "polyreg"


def _levels(s: pd.Series) -> list[Any]:
    if isinstance(s.dtype, pd.CategoricalDtype):
        return [c for c in s.cat.categories if (s == c).any()]
    return sorted(s.dropna().unique().tolist(), key=str)


@dataclass
class _Col:
    """Working state of one column: float values, or integer codes of ``levels``."""

    name: str
    miss: np.ndarray
    values: np.ndarray
    levels: list[Any] | None  # None: numeric

    def encode(self) -> np.ndarray:
        if self.levels is None:
            return self.values[:, None]
        codes = self.values.astype(int)
        return (codes[:, None] == np.arange(1, len(self.levels))[None, :]).astype(float)


def _standardise(X: np.ndarray, rows: np.ndarray) -> np.ndarray:
    mu, sd = X[rows].mean(axis=0), X[rows].std(axis=0)
    keep = sd > 1e-12
    Z = (X[:, keep] - mu[keep]) / sd[keep]
    return np.column_stack([np.ones(len(X)), Z])


def _norm_draw(Xo: np.ndarray, yo: np.ndarray,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, float]:
    """Bayesian linear regression draw (as mice's .norm.draw): beta_hat, beta*, sigma*."""
    xtx = Xo.T @ Xo
    V = np.linalg.inv(xtx + np.diag(1e-5 * np.diag(xtx)))
    V = (V + V.T) / 2.0
    coef = V @ Xo.T @ yo
    resid = yo - Xo @ coef
    df = max(len(yo) - Xo.shape[1], 1)
    sigma = math.sqrt(float(resid @ resid) / rng.chisquare(df))
    beta = coef + np.linalg.cholesky(V) @ rng.standard_normal(Xo.shape[1]) * sigma
    return coef, beta, sigma


def _pmm(X: np.ndarray, y: np.ndarray, obs: np.ndarray, rng: np.random.Generator,
         k: int = 5) -> np.ndarray:
    """Predictive mean matching (type 1) for the rows not in ``obs``."""
    coef, beta, _ = _norm_draw(X[obs], y[obs], rng)
    return _match(X[obs] @ coef, X[~obs] @ beta, y[obs], rng, k)


def _norm(X: np.ndarray, y: np.ndarray, obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Bayesian linear regression imputation: X beta* + sigma* N(0, 1) (``mice.impute.norm``)."""
    _, beta, sigma = _norm_draw(X[obs], y[obs], rng)
    return X[~obs] @ beta + sigma * rng.standard_normal(int((~obs).sum()))


def _match(yhat_obs: np.ndarray, yhat_mis: np.ndarray, yo: np.ndarray,
           rng: np.random.Generator, k: int) -> np.ndarray:
    """For each missing row, the observed value of a random one of its k nearest donors."""
    order = np.argsort(yhat_obs, kind="stable")
    sy = yhat_obs[order]
    n = sy.size
    k = min(k, n)
    w = min(2 * k, n)
    pos = np.searchsorted(sy, yhat_mis)
    start = np.clip(pos - k, 0, n - w)
    cand = start[:, None] + np.arange(w)[None, :]
    dist = np.abs(sy[cand] - yhat_mis[:, None])
    nearest = np.take_along_axis(cand, np.argsort(dist, axis=1, kind="stable")[:, :k], axis=1)
    pick = nearest[np.arange(len(yhat_mis)), rng.integers(0, k, size=len(yhat_mis))]
    return yo[order[pick]]


def _mlogit(X: np.ndarray, y: np.ndarray, K: int, lam: float = _RIDGE_LOGIT,
            max_iter: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """Ridge-penalised multinomial logit (class 0 reference): coefficients (p, K-1), and the
    inverse penalised information of their column-stacked vector."""
    n, p = X.shape
    Y = (y[:, None] == np.arange(1, K)[None, :]).astype(float)
    B = np.zeros((p, K - 1))
    pen = np.full(p, lam)
    pen[0] = 0.0
    P = np.kron(np.eye(K - 1), np.diag(pen))
    H = P
    for _ in range(max_iter):
        eta = np.column_stack([np.zeros(n), X @ B])
        eta -= eta.max(axis=1, keepdims=True)
        pr = np.exp(eta)
        pr /= pr.sum(axis=1, keepdims=True)
        pr = pr[:, 1:]
        g = (X.T @ (Y - pr)).ravel(order="F") - P @ B.ravel(order="F")
        H = np.zeros((p * (K - 1), p * (K - 1)))
        for j in range(K - 1):
            for m in range(K - 1):
                wt = pr[:, j] * ((j == m) - pr[:, m])
                H[j * p:(j + 1) * p, m * p:(m + 1) * p] = (X * wt[:, None]).T @ X
        H = H + P + 1e-10 * np.eye(len(H))
        step = np.linalg.solve(H, g)
        B = B + step.reshape((p, K - 1), order="F")
        if np.max(np.abs(step)) < 1e-8:
            break
    Vinv = np.linalg.inv(H)
    return B, (Vinv + Vinv.T) / 2.0


def _polyreg(X: np.ndarray, codes: np.ndarray, obs: np.ndarray, K: int,
             rng: np.random.Generator) -> np.ndarray:
    """Codes drawn from a multinomial logit with a Bayesian parameter draw."""
    B, V = _mlogit(X[obs], codes[obs], K)
    draw = B.ravel(order="F") + np.linalg.cholesky(V) @ rng.standard_normal(V.shape[0])
    Bs = draw.reshape(B.shape, order="F")
    eta = np.column_stack([np.zeros((~obs).sum()), X[~obs] @ Bs])
    eta -= eta.max(axis=1, keepdims=True)
    pr = np.exp(eta)
    cum = np.cumsum(pr / pr.sum(axis=1, keepdims=True), axis=1)
    u = rng.random(len(cum))[:, None]
    return np.minimum((u > cum).sum(axis=1), K - 1).astype(float)


def mice(
    data: pd.DataFrame, columns: Sequence[str] | None = None, m: int = 5, iterations: int = 10,
    seed: int | None = None, methods: dict[str, str] | None = None, donors: int = 5,
) -> ImputedData:
    """Impute the missing cells of ``columns`` (default: all) m times by chained equations.

    ``methods`` overrides the automatic choice per column (pmm for numeric, logreg for 0/1 or
    boolean, polyreg for categorical/string); columns not listed are carried unchanged and are
    not used as predictors. Observed cells are never changed.
    """
    cols = list(data.columns) if columns is None else list(columns)
    unknown = [c for c in cols if c not in data.columns]
    if unknown:
        raise UsageError(f"column(s) {', '.join(unknown)} are not in the data")
    if m < 1 or iterations < 1:
        raise UsageError(f"m and iterations must be at least 1; got m={m}, iterations={iterations}")
    meth: dict[str, str] = {}
    for c in cols:
        s = data[c]
        if not s.isna().any():
            meth[c] = ""
            continue
        if s.notna().sum() == 0:
            raise UsageError(f"column '{c}' has no observed values to impute from")
        mc = (methods or {}).get(c, _default_method(s))
        if mc not in METHODS:
            raise UsageError(f"method for '{c}' must be one of {', '.join(METHODS)}; got '{mc}'")
        if mc in ("pmm", "norm") and not pd.api.types.is_numeric_dtype(s):
            raise UsageError(f"{mc} needs a numeric column; '{c}' is {s.dtype}: use polyreg")
        if mc == "logreg" and not _is_binary(s):
            raise UsageError(f"logreg needs a 0/1 or boolean column; '{c}' is not: use polyreg")
        meth[c] = mc
    visit = tuple(c for c in cols if meth[c])
    table = pd.DataFrame({
        "column": cols, "n_missing": [int(data[c].isna().sum()) for c in cols],
        "share": [float(data[c].isna().mean()) for c in cols], "method": [meth[c] for c in cols],
    })
    children = np.random.SeedSequence(seed).spawn(m)
    completed, trace = [], []
    for i, ss in enumerate(children):
        rng = np.random.default_rng(ss)
        state = _init_state(data, cols, meth, rng)
        for it in range(iterations):
            for c in visit:
                _impute_column(state, c, meth[c], rng, donors)
                st = state[c]
                if st.levels is None:
                    trace.append((i, it + 1, c, float(st.values[st.miss].mean())))
        completed.append(_to_frame(data, state, visit))
    chain = pd.DataFrame(trace, columns=["imputation", "iteration", "column", "mean"])
    return ImputedData(tuple(completed), table, {c: meth[c] for c in cols}, visit, m, iterations,
                       seed, chain)


def _init_state(data: pd.DataFrame, cols: list[str], meth: dict[str, str],
                rng: np.random.Generator) -> dict[str, _Col]:
    state: dict[str, _Col] = {}
    for c in cols:
        s = data[c]
        miss = s.isna().to_numpy()
        if meth[c] == "polyreg" or (not pd.api.types.is_numeric_dtype(s)
                                    and not pd.api.types.is_bool_dtype(s)):
            levels = _levels(s)
            if len(levels) > MAX_LEVELS:
                raise UsageError(f"column '{c}' has {len(levels)} categories (> {MAX_LEVELS}); "
                                 "leave identifiers out of columns=")
            lookup = {v: j for j, v in enumerate(levels)}
            vals = np.array([lookup[v] if not mi else 0 for v, mi in
                             zip(s.astype(object), miss, strict=True)], dtype=float)
            col = _Col(c, miss, vals, levels)
        else:
            col = _Col(c, miss, np.array(s.astype(float).to_numpy(dtype=float, na_value=np.nan)), None)
        if miss.any():
            col.values[miss] = rng.choice(col.values[~miss], size=int(miss.sum()))
        state[c] = col
    return state


def _impute_column(state: dict[str, _Col], c: str, method: str, rng: np.random.Generator,
                   donors: int) -> None:
    st = state[c]
    obs = ~st.miss
    if method == "sample":
        st.values[st.miss] = rng.choice(st.values[obs], size=int(st.miss.sum()))
        return
    others = [state[o].encode() for o in state if o != c]
    raw = np.hstack(others) if others else np.empty((len(st.values), 0))
    X = _standardise(raw, obs)
    if method == "pmm":
        st.values[st.miss] = _pmm(X, st.values, obs, rng, donors)
    elif method == "norm":
        st.values[st.miss] = _norm(X, st.values, obs, rng)
    else:
        K = len(st.levels) if st.levels is not None else 2
        if K < 2:  # one observed category: every missing cell takes it (set at initialisation)
            return
        st.values[st.miss] = _polyreg(X, st.values.astype(int), obs, K, rng)


def _to_frame(data: pd.DataFrame, state: dict[str, _Col], visit: tuple[str, ...]) -> pd.DataFrame:
    out = data.copy()
    for c in visit:
        st, s = state[c], data[c]
        if st.levels is not None:
            vals = [st.levels[int(v)] for v in st.values]
            if isinstance(s.dtype, pd.CategoricalDtype):
                out[c] = pd.Categorical(vals, categories=s.cat.categories, ordered=s.cat.ordered)
            else:
                out[c] = pd.Series(vals, index=data.index).astype(s.dtype)
            continue
        new = pd.Series(st.values, index=data.index)
        try:
            cast = new.astype(s.dtype) if pd.api.types.is_bool_dtype(s) or s.dtype.kind != "f" else new
            out[c] = cast if np.allclose(cast.astype(float), st.values) else new
        except (TypeError, ValueError):
            out[c] = new
    return out


# ---- Rubin's rules -------------------------------------------------------------------------
@dataclass(frozen=True)
class PooledResult:
    """Rubin's-rules pooling of m analyses; per-term arrays aligned with ``terms``."""

    terms: tuple[str, ...]
    params: np.ndarray
    within: np.ndarray  # U-bar: mean within-imputation variance
    between: np.ndarray  # B: between-imputation variance of the estimates
    total: np.ndarray  # T = U-bar + (1 + 1/m) B
    vcov: np.ndarray  # the matrix version of T
    df: np.ndarray
    riv: np.ndarray  # relative increase in variance (1 + 1/m) B / U-bar
    lambda_: np.ndarray  # (1 + 1/m) B / T
    fmi: np.ndarray
    m: int
    df_complete: float
    conf_level: float
    frame: pd.DataFrame
    fits: tuple[Any, ...] = field(default=(), repr=False)

    @property
    def se(self) -> np.ndarray:
        return np.sqrt(self.total)


def pool(
    fits: Sequence[Any] | None = None, *, estimates: Any = None, variances: Any = None,
    std_errors: Any = None, terms: Sequence[str] | None = None, df_complete: float | None = None,
    conf_level: float = 0.95,
) -> PooledResult:
    """Rubin's rules with Barnard-Rubin degrees of freedom (as ``mice::pool``).

    Give ``fits`` (objects with ``params``, ``vcov``, ``terms`` and ``nobs``: FitResult,
    OLSResult) or m-by-k ``estimates`` with ``variances`` (m-by-k, or m k-by-k covariance
    matrices) or ``std_errors``. With q_l, u_l the estimate and variance in data set l:
    Q = mean q_l; U = mean u_l; B = var(q_l) (denominator m - 1); T = U + (1 + 1/m) B;
    riv = (1 + 1/m) B / U; lambda = (1 + 1/m) B / T (floored at 1e-4 in the df, as mice);
    df_old = (m - 1) / lambda^2; df_obs = (v + 1)/(v + 3) v (1 - lambda) with v the
    complete-data df (default: ``df_resid`` or nobs - k of the fits, infinite for raw
    vectors); df = df_old df_obs / (df_old + df_obs) (df_old when v is infinite);
    fmi = (riv + 2/(df + 3)) / (1 + riv); intervals and p-values use t(df).
    """
    if not 0.0 < conf_level < 1.0:
        raise UsageError(f"conf_level must be between 0 and 1; got {conf_level}")
    if fits is not None:
        fits = list(fits)
        if not fits:
            raise UsageError("pool() needs at least one fit")
        names = tuple(fits[0].terms)
        if any(tuple(f.terms) != names for f in fits):
            raise UsageError("the fits do not all have the same terms")
        Q = np.array([f.params for f in fits], dtype=float)
        U = np.array([f.vcov for f in fits], dtype=float)
        if df_complete is None:
            f0 = fits[0]
            df_complete = float(getattr(f0, "df_resid", f0.nobs - len(f0.params)))
    else:
        if estimates is None or (variances is None and std_errors is None):
            raise UsageError("give fits, or estimates with variances or std_errors")
        Q = np.atleast_2d(np.asarray(estimates, dtype=float))
        if variances is not None:
            var = np.asarray(variances, dtype=float)
            U = var if var.ndim == 3 else np.array([np.diag(np.atleast_1d(v)) for v in np.atleast_2d(var)])
        else:
            U = np.array([np.diag(np.atleast_1d(s) ** 2) for s in np.atleast_2d(np.asarray(std_errors, dtype=float))])
        names = tuple(terms) if terms is not None else tuple(f"p{j}" for j in range(Q.shape[1]))
        df_complete = math.inf if df_complete is None else float(df_complete)
    m = Q.shape[0]
    if U.shape != (m, Q.shape[1], Q.shape[1]) or len(names) != Q.shape[1]:
        raise UsageError("estimates, variances and terms do not have matching shapes")
    qbar, Ubar = Q.mean(axis=0), U.mean(axis=0)
    Bmat = np.cov(Q, rowvar=False, ddof=1).reshape(Ubar.shape) if m > 1 else np.zeros_like(Ubar)
    Tmat = Ubar + (1.0 + 1.0 / m) * Bmat
    ub, b, t = np.diag(Ubar).copy(), np.diag(Bmat).copy(), np.diag(Tmat).copy()
    with np.errstate(divide="ignore", invalid="ignore"):
        riv = (1.0 + 1.0 / m) * b / ub
        lam = (1.0 + 1.0 / m) * b / t
        lam_df = np.maximum(lam, 1e-4)
        df_old = (m - 1) / lam_df**2 if m > 1 else np.full_like(lam, np.inf)
        v = df_complete
        if math.isinf(v):
            df = df_old
        else:
            df_obs = (v + 1.0) / (v + 3.0) * v * (1.0 - lam_df)
            df = df_old * df_obs / (df_old + df_obs)
        fmi = (riv + 2.0 / (df + 3.0)) / (1.0 + riv)
        se = np.sqrt(t)
        stat = qbar / se
    q = stats.t.ppf(0.5 + conf_level / 2.0, df)
    frame = pd.DataFrame({
        "term": list(names), "estimate": qbar, "std_error": se, "statistic": stat, "df": df,
        "p_value": 2.0 * stats.t.sf(np.abs(stat), df), "conf_low": qbar - q * se,
        "conf_high": qbar + q * se, "fmi": fmi,
    })
    return PooledResult(names, qbar, ub, b, t, Tmat, df, riv, lam, fmi, m, float(df_complete),
                        conf_level, frame, tuple(fits or ()))


def fit_mice(formula: str, imputed: ImputedData, fitter: Callable[..., Any] | None = None,
             *, df_complete: float | None = None, conf_level: float = 0.95,
             **kw: Any) -> PooledResult:
    """Fit ``fitter(formula, data, **kw)`` (default ``models.fit.fit``) on each completed data
    set and pool the fits by Rubin's rules."""
    from smesurvival.models.fit import fit

    f = fit if fitter is None else fitter
    fits = [f(formula, d, **kw) for d in imputed.completed]
    return pool(fits, df_complete=df_complete, conf_level=conf_level)
