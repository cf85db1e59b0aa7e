"""Firth-type bias-reduced binary regression: finite estimates where plain ML has none.

Mean bias reduction by the adjusted score of Kosmidis & Firth (2009), which is what brglm2's
``glm(..., method = "brglmFit", type = "AS_mean")`` solves:

    U*(b) = sum_i x_i [w_i (y_i - mu_i) mu'_i / (mu_i (1 - mu_i)) + 1/2 h_i mu''_i / mu'_i] = 0,

h_i the hat values of the weighted least-squares fit with W = diag(w mu'^2 / (mu (1 - mu))).
For the canonical **logit** link U* is the gradient of the penalised log-likelihood
l*(b) = l(b) + 1/2 log|X'WX| (Firth 1993; the Jeffreys-prior penalty), which is maximised
directly; confidence intervals and p-values then come from the profile penalised likelihood,
as R's ``logistf``. For the **probit** and **cloglog** links the adjusted score has no objective
function: it is solved by quasi-Fisher scoring (as brglm2), and inference is Wald.

The penalised-likelihood maximiser and the profile-interval search are written once, for any
``evaluate(beta) -> state`` (:func:`maximise_penalized`, :func:`profile_interval`); the Firth
Cox model (:mod:`smesurvival.models.firth_cox`) reuses them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Generic, Literal, Protocol, TypeVar, get_args

import numpy as np
import pandas as pd
from scipy import linalg, optimize, special, stats

from smesurvival.data.flow import SampleFlow
from smesurvival.errors import ConvergenceError, FormulaError, UsageError
from smesurvival.inference.vcov import (
    VCOV_TYPES,
    VcovType,
    check_choice,
    cluster_codes,
    sandwich_vcov,
)
from smesurvival.models.checks import check_rank
from smesurvival.models.design import build_design, spec_to_dict
from smesurvival.models.families import FAMILIES, LOGIT, Family
from smesurvival.models.fit import check_binary_outcome, fit_diagnostics, weights_column
from smesurvival.models.kernels import glm_row_scores
from smesurvival.models.result import FitResult

FirthLink = Literal["logit", "probit", "cloglog"]
FIRTH_LINKS: tuple[str, ...] = get_args(FirthLink)

_MAX_HALVINGS = 40
_MAX_BRACKET_DOUBLINGS = 40


class PenalizedState(Protocol):
    """What the generic maximiser needs from one evaluation at ``beta``."""

    @property
    def beta(self) -> np.ndarray: ...
    @property
    def penalized(self) -> float: ...  # -inf where the information is numerically singular
    @property
    def score(self) -> np.ndarray: ...  # gradient of ``penalized``
    @property
    def info(self) -> np.ndarray: ...  # information used as the (negative) Hessian


S = TypeVar("S", bound=PenalizedState)


@dataclass(frozen=True)
class _State:
    """Everything one Firth-logit step needs at coefficients ``beta``, computed on all rows at once."""

    beta: np.ndarray
    loglik: float  # ordinary (weighted) log-likelihood
    penalized: float  # loglik + 1/2 log|X'WX|; -inf where X'WX is numerically singular
    score: np.ndarray  # modified score X'(w(y - p) + h(1/2 - p)) = gradient of ``penalized``
    info: np.ndarray  # X'WX, W = diag(w p (1 - p))
    mu: np.ndarray


def _evaluate(X: np.ndarray, y: np.ndarray, w: np.ndarray, beta: np.ndarray) -> _State:
    """Log-likelihoods, modified score and information at ``beta`` (no loop over rows)."""
    eta = X @ beta
    lp1, lp0 = LOGIT.log_probs(eta)
    loglik = float((w * (y * lp1 + (1.0 - y) * lp0)).sum())
    mu = special.expit(eta)
    wv = w * np.exp(LOGIT.log_dmu(eta))  # w p (1 - p), accurate in the tails
    info = (X * wv[:, None]).T @ X
    try:
        chol = linalg.cholesky(info, lower=True, check_finite=True)
    except (linalg.LinAlgError, ValueError):
        return _State(beta, loglik, -np.inf, np.zeros_like(beta), info, mu)
    diag = np.diag(chol)
    if not np.all(diag > 0):
        return _State(beta, loglik, -np.inf, np.zeros_like(beta), info, mu)
    half_logdet = float(np.log(diag).sum())
    with np.errstate(over="ignore", invalid="ignore"):
        a = linalg.solve_triangular(chol, X.T, lower=True, check_finite=False)
        h = wv * np.einsum("ij,ij->j", a, a)  # hat diagonal of W^1/2 X (X'WX)^-1 X' W^1/2
        score = X.T @ (w * (y - mu) + h * (0.5 - mu))
    if not (np.isfinite(half_logdet) and np.all(np.isfinite(score))):  # X'WX underflowed
        return _State(beta, loglik, -np.inf, np.zeros_like(beta), info, mu)
    return _State(beta, loglik, loglik + half_logdet, score, info, mu)


@dataclass(frozen=True)
class Maximum(Generic[S]):
    """A (possibly constrained) maximum of a penalised log-likelihood and its iteration record."""

    state: S
    converged: bool
    iterations: int
    max_abs_step: float


def maximise_penalized(
    evaluate: Callable[[np.ndarray], S], beta0: np.ndarray, free: np.ndarray,
    tol: float, max_iter: int,
) -> Maximum[S]:
    """Modified-score Newton steps (information as Hessian) on the ``free`` coefficients only.

    The other coefficients stay at their values in ``beta0`` (profile refits). Steps are halved
    while the penalised log-likelihood falls; converged when the largest step is below
    ``tol * (1 + max|beta|)``.
    """
    cur = evaluate(np.asarray(beta0, dtype=float).copy())
    if not np.isfinite(cur.penalized):
        return Maximum(cur, False, 0, np.inf)
    idx = np.flatnonzero(free)
    if idx.size == 0:
        return Maximum(cur, True, 0, 0.0)
    step_max = np.inf
    for it in range(1, max_iter + 1):
        sub = cur.info[np.ix_(idx, idx)]
        try:
            d = linalg.cho_solve(linalg.cho_factor(sub), cur.score[idx])
        except (linalg.LinAlgError, ValueError):
            d = np.linalg.lstsq(sub, cur.score[idx], rcond=None)[0]
        full_step = float(np.max(np.abs(d)))
        bound = tol * (1.0 + float(np.max(np.abs(cur.beta))))
        t = 1.0
        for _ in range(_MAX_HALVINGS):
            beta = cur.beta.copy()
            beta[idx] += t * d
            new = evaluate(beta)
            if new.penalized >= cur.penalized - 1e-12 * (1.0 + abs(cur.penalized)):
                break
            t *= 0.5
        else:  # no step raises l*: at the floating-point floor, or stuck
            return Maximum(cur, full_step <= max(bound, 1e-8), it, full_step)
        step_max = t * full_step
        cur = new
        if step_max <= bound:
            return Maximum(cur, True, it, step_max)
    return Maximum(cur, False, max_iter, step_max)


def profile_interval(
    evaluate: Callable[[np.ndarray], S], best: S, j: int, se_j: float,
    q: float, tol: float, max_iter: int,
) -> tuple[list[float] | None, float | None]:
    """Profile-penalised-likelihood CI and LR p-value of coefficient ``j`` (logistf's method).

    The bounds are the roots of 2[l*(b^) - max l*(b | b_j = c)] = q, found by Brent's method
    on constrained refits warm-started from the nearest refit already done.
    """
    free = np.ones(best.beta.size, dtype=bool)
    free[j] = False
    done: dict[float, np.ndarray] = {float(best.beta[j]): best.beta}

    def drop(c: float) -> float:
        near = min(done, key=lambda k: abs(k - c))
        start = done[near].copy()
        start[j] = c
        m = maximise_penalized(evaluate, start, free, tol, max_iter)
        if not m.converged:
            raise ConvergenceError(f"profile refit at {c:.6g} did not converge")
        done[c] = m.state.beta
        return 2.0 * (best.penalized - m.state.penalized)

    def f(c: float) -> float:
        return drop(c) - q

    bhat = float(best.beta[j])
    width = max(se_j, 1e-8) * max(np.sqrt(q), 1.0)
    bounds: list[float] = []
    try:
        for sign in (-1.0, 1.0):
            step = width
            inner = bhat
            for _ in range(_MAX_BRACKET_DOUBLINGS):
                outer = bhat + sign * step
                if f(outer) > 0:
                    break
                inner, step = outer, 2.0 * step
            else:
                return None, None
            a, b = sorted((inner, outer))
            root = optimize.brentq(f, a, b, xtol=1e-12 * (1.0 + abs(bhat)), rtol=1e-14, maxiter=200)
            bounds.append(float(root))
        p = float(stats.chi2.sf(max(drop(0.0), 0.0), 1))
    except ConvergenceError:
        return None, None
    return bounds, p


# ------------------------------------------------------------------ adjusted score (any link)


@dataclass(frozen=True)
class _ASState:
    """The mean-bias-reducing adjusted score and the expected information at ``beta``."""

    beta: np.ndarray
    loglik: float
    score: np.ndarray  # U*(beta); zeros where the information is singular
    info: np.ndarray  # X'WX, W = w mu'^2 / (mu (1 - mu))
    decrement: float  # U*' (X'WX)^-1 U*; inf where the information is singular


def _adjusted(X: np.ndarray, y: np.ndarray, w: np.ndarray, beta: np.ndarray, fam: Family) -> _ASState:
    """U* = X'(w u + h k / 2): u = dl/deta, h the hat values, k = mu''/mu' (no loop over rows)."""
    eta = X @ beta
    lp1, lp0 = fam.log_probs(eta)
    loglik = float((w * (y * lp1 + (1.0 - y) * lp0)).sum())
    r1, r0 = fam.ratios(eta)
    u = y * r1 - (1.0 - y) * r0
    W = w * fam.dmu_deta(eta) * (r1 + r0)
    info = (X * W[:, None]).T @ X
    bad = _ASState(beta, loglik, np.zeros_like(beta), info, np.inf)
    try:
        chol = linalg.cholesky(info, lower=True, check_finite=True)
    except (linalg.LinAlgError, ValueError):
        return bad
    if not np.all(np.diag(chol) > 0):
        return bad
    A = linalg.cho_solve((chol, True), np.eye(beta.size), check_finite=False)
    with np.errstate(over="ignore", invalid="ignore"):
        h = W * np.einsum("ij,ij->i", X @ A, X)  # hat values W x'(X'WX)^-1 x
        adj = np.where(h > 0.0, 0.5 * h * fam.d2_over_d1(eta), 0.0)
        score = X.T @ (w * u + adj)
    dec = float(score @ A @ score)
    if not (np.isfinite(dec) and np.isfinite(loglik)):
        return bad
    return _ASState(beta, loglik, score, info, dec)


def _glm_start(X: np.ndarray, y: np.ndarray, w: np.ndarray, fam: Family) -> np.ndarray:
    """R glm's start: mu = (w y + 1/2) / (w + 1), then one weighted least-squares step."""
    mu = (w * y + 0.5) / (w + 1.0)
    eta = fam.link_fun(mu)
    W = w * fam.dmu_deta(eta) ** 2 / (mu * (1.0 - mu))
    XtW = (X * W[:, None]).T
    try:
        return np.asarray(linalg.solve(XtW @ X, XtW @ eta, assume_a="pos"))
    except (linalg.LinAlgError, ValueError):
        return np.asarray(np.linalg.lstsq(X * np.sqrt(W)[:, None], np.sqrt(W) * eta, rcond=None)[0])


def _solve_adjusted(
    X: np.ndarray, y: np.ndarray, w: np.ndarray, fam: Family, beta0: np.ndarray,
    tol: float, max_iter: int,
) -> tuple[_ASState, bool, int, float]:
    """Quasi-Fisher scoring b += (X'WX)^-1 U*(b), halving steps while U*'(X'WX)^-1 U* grows.

    Converged when the next full step, computed at an evaluated b, is at most
    ``tol * (1 + max|b|)`` (that last step is applied)."""
    cur = _adjusted(X, y, w, np.asarray(beta0, dtype=float).copy(), fam)
    if not np.isfinite(cur.decrement):
        return cur, False, 0, np.inf
    step_max = np.inf
    for it in range(1, max_iter + 1):
        d = linalg.cho_solve(linalg.cho_factor(cur.info), cur.score)
        full = float(np.max(np.abs(d))) if d.size else 0.0
        bound = tol * (1.0 + float(np.max(np.abs(cur.beta), initial=0.0)))
        if full <= bound:
            new = _adjusted(X, y, w, cur.beta + d, fam)
            return (new if np.isfinite(new.decrement) else cur), True, it, full
        t = 1.0
        for _ in range(_MAX_HALVINGS):
            new = _adjusted(X, y, w, cur.beta + t * d, fam)
            if new.decrement <= cur.decrement * (1.0 + 1e-10):
                break
            t *= 0.5
        else:
            return cur, full <= max(bound, 1e-8), it, full
        step_max = t * full
        cur = new
    return cur, False, max_iter, step_max


# ------------------------------------------------------------------ kernel on arrays


@dataclass(frozen=True)
class FirthGLM:
    """A bias-reduced binary GLM on arrays: estimate, information at it, iteration record."""

    params: np.ndarray
    info: np.ndarray  # expected information X'WX at ``params``
    loglik: float  # ordinary log-likelihood at ``params``
    penalized_loglik: float | None  # l + 1/2 log|X'WX| (logit only; no objective otherwise)
    link: str
    converged: bool
    iterations: int
    max_abs_step: float


def firth_glm(
    X: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None, link: FirthLink = "logit",
    *, beta0: np.ndarray | None = None, tol: float = 1e-10, max_iter: int = 200,
) -> FirthGLM:
    """Solve the mean-bias-reducing adjusted score of a binary GLM (brglm2 ``AS_mean``).

    Logit: maximum of the Jeffreys-penalised likelihood, from b = 0 (intercept column, if any,
    at the logit of the Firth null probability). Probit/cloglog: quasi-Fisher scoring from
    R glm's start. ``weights`` are frequency weights."""
    check_choice(link, FIRTH_LINKS, "link (Firth)")
    X = np.asarray(X, dtype=float)
    y = np.asarray(y, dtype=float)
    w = np.ones(len(y)) if weights is None else np.asarray(weights, dtype=float)
    if link == "logit":
        if beta0 is None:
            beta0 = np.zeros(X.shape[1])
            icpt = [j for j in range(X.shape[1]) if np.all(X[:, j] == 1.0)]
            if icpt:
                beta0[icpt[0]] = float(special.logit(_null_prob(y, w)))
        m = maximise_penalized(lambda b: _evaluate(X, y, w, b), beta0,
                               np.ones(X.shape[1], dtype=bool), tol, max_iter)
        s = m.state
        return FirthGLM(s.beta, s.info, s.loglik, s.penalized, link, m.converged, m.iterations,
                        m.max_abs_step)
    fam = FAMILIES[link]
    start = _glm_start(X, y, w, fam) if beta0 is None else beta0
    st, conv, it, step = _solve_adjusted(X, y, w, fam, start, tol, max_iter)
    return FirthGLM(st.beta, st.info, st.loglik, None, link, conv, it, step)


# ------------------------------------------------------------------ formula interface


def fit_firth(
    formula: str,
    data: pd.DataFrame,
    *,
    link: FirthLink = "logit",
    weights: str | None = None,
    vcov: VcovType = "classical",
    cluster: str | None = None,
    conf_level: float = 0.95,
    profile: bool | None = None,
    tol: float = 1e-10,
    max_iter: int = 200,
    flow: SampleFlow | None = None,
) -> FitResult:
    """Fit a Firth-type (mean bias-reduced) binary regression: logit, probit or cloglog.

    Model: P(y = 1) = F(x'b), F the inverse link, b solving the adjusted score U*(b) = 0 (module
    docstring). Logit: b maximises l(b) + 1/2 log|X'WX|, W = diag(w p (1 - p)), by modified-score
    steps b += (X'WX)^-1 X'(w(y - p) + h(1/2 - p)), halving while the penalised log-likelihood
    falls. Probit and cloglog: quasi-Fisher scoring on U*, as brglm2.

    Parameters
    ----------
    formula : ``"survived ~ export_ratio + rd_alliance"`` (Wilkinson syntax, 0/1 outcome).
    link : ``logit`` (Firth 1993 = Jeffreys penalty), ``probit`` or ``cloglog``.
    weights : column of frequency weights (a row counts ``w`` times); survey weights are not
        supported here.
    vcov : ``classical`` (the inverse expected information at the estimate, as brglm2 and
        logistf report) or a sandwich ``hc0`` / ``hc1`` / ``cluster`` (needs ``cluster``) built
        from the ordinary score contributions at the estimate, as ``sandwich::vcovCL`` on a
        brglm2 fit.
    profile : profile penalised-likelihood CIs and p-values (``extra["profile_ci"]``,
        ``extra["profile_p"]``); one constrained refit per root-finder step and term. Default:
        on for the logit link; the other links have no penalised likelihood to profile.

    Returns
    -------
    FitResult with ``model="firth"`` (``link`` set for probit and cloglog, so ``predict`` uses
    it): ``params`` the bias-reduced estimates; ``se``, ``pvalues`` and ``conf_int()`` are Wald
    from ``vcov``; ``loglik`` the *ordinary* log-likelihood at the estimate; ``llnull`` the
    ordinary log-likelihood at the intercept-only bias-reduced fit (logit: p = (sum w y + 1/2) /
    (sum w + 1)); without an intercept, at b = 0, so ``lr_chi2`` and pseudo-R2 compare like
    with like. ``extra`` holds ``bias_reduction`` ("AS_mean") and, for the logit,
    ``penalized_loglik``, ``penalized_lr`` (logistf's global test: chi2, df, p_value, all
    non-intercept coefficients 0 under the full-model penalty) and, with ``profile``,
    ``profile_ci`` (term -> [low, high]), ``profile_p`` and ``profile_conf_level``.

    Example
    -------
    >>> import pandas as pd
    >>> from smesurvival.models.firth import fit_firth
    >>> d = pd.DataFrame({"y": [0, 0, 0, 1, 1, 1], "x": [1., 2., 3., 4., 5., 6.]})
    >>> m = fit_firth("y ~ x", d)  # plain ML fails here: x separates y completely
    >>> c = fit_firth("y ~ x", d, link="cloglog")
    """
    check_choice(link, FIRTH_LINKS, "link (Firth)")
    check_choice(vcov, VCOV_TYPES, "vcov")
    if not 0.0 < conf_level < 1.0:
        raise UsageError(f"conf_level must be between 0 and 1; got {conf_level}")
    for role, col in (("weights", weights), ("cluster", cluster)):
        if col is not None and col not in data.columns:
            raise UsageError(f"{role} column '{col}' is not in the data")
    if vcov == "cluster" and cluster is None:
        raise UsageError("vcov 'cluster' needs a cluster column (cluster=... / --cluster COLUMN)")
    if profile is None:
        profile = link == "logit"
    elif profile and link != "logit":
        raise UsageError(
            f"profile-likelihood intervals need a penalised likelihood, which only the logit link "
            f"has; the {link} adjusted score has none: use profile=False (Wald intervals)")
    if tol <= 0 or max_iter < 1:
        raise UsageError(f"tol must be positive and max_iter at least 1; got {tol}, {max_iter}")
    extra_cols = tuple(c for c in dict.fromkeys((weights, cluster)) if c is not None)
    design = build_design(formula, data, flow, extra_variables=extra_cols)
    if design.y is None:
        raise FormulaError(f"formula '{formula}' has no outcome: write 'outcome ~ terms'")
    X, y, terms = design.X, design.y, design.terms
    check_binary_outcome(y, design.formula.outcome, "Firth logit" if link == "logit" else f"Firth {link}")
    wopt = weights_column(data, weights, design.rows)
    w = np.ones(len(y)) if wopt is None else wopt
    check_rank(X, terms, wopt)
    icpt = terms.index("Intercept") if design.has_intercept else None
    beta0 = None
    p0 = _null_prob(y, w)
    if link == "logit":
        beta0 = np.zeros(X.shape[1])
        if icpt is not None:
            beta0[icpt] = float(special.logit(p0))
    est = firth_glm(X, y, w, link, beta0=beta0, tol=tol, max_iter=max_iter)
    if not est.converged:
        raise ConvergenceError(
            f"the Firth {link} fit did not converge in {est.iterations} iterations (last step "
            f"{est.max_abs_step:.3g}); rescale large covariates, check for near-collinear terms, "
            "or raise max_iter"
        )
    bread = linalg.cho_solve(linalg.cho_factor(est.info), np.eye(len(terms)))
    bread = (bread + bread.T) / 2.0
    cl = data[cluster].to_numpy()[design.rows] if cluster is not None else None
    if vcov == "classical":
        V = bread
    else:
        fam = FAMILIES[link]
        V = sandwich_vcov(bread, glm_row_scores(X, y, est.params, fam), vcov, weights=wopt,
                          weights_kind="frequency", cluster=cl)
    extra: dict[str, Any] = {"bias_reduction": "AS_mean"}
    if link == "logit":
        best = _evaluate(X, y, w, est.params)
        extra["penalized_loglik"] = best.penalized
        extra["penalized_lr"] = _global_test(X, y, w, best, icpt, tol, max_iter)
    mu = FAMILIES[link].mean(X @ est.params)
    extreme = int(((mu < 1e-8) | (mu > 1 - 1e-8)).sum())
    diag = fit_diagnostics(X, terms, mu, extreme, est.info)
    if profile:
        q = float(stats.chi2.ppf(conf_level, 1))
        se = np.sqrt(np.diag(bread))
        ci: dict[str, list[float] | None] = {}
        pv: dict[str, float | None] = {}

        def evaluate(b: np.ndarray) -> _State:
            return _evaluate(X, y, w, b)

        for j, t in enumerate(terms):
            ci[t], pv[t] = profile_interval(evaluate, best, j, float(se[j]), q, tol, max_iter)
        failed = [t for t in terms if ci[t] is None]
        if failed:
            note = f"profile likelihood CI not found for {', '.join(failed)} (refits did not converge)"
            diag = replace(diag, notes=diag.notes + (note,))
        extra.update(profile_ci=ci, profile_p=pv, profile_conf_level=conf_level)
    if icpt is None:
        llnull = _ordinary_null(y, w, float(FAMILIES[link].mean(np.zeros(1))[0]))
    elif link == "logit":
        llnull = _ordinary_null(y, w, p0)
    else:
        null = firth_glm(np.ones((len(y), 1)), y, w, link, tol=tol, max_iter=max_iter)
        llnull = null.loglik
    return FitResult(
        model="firth", formula=formula, terms=terms, params=est.params, vcov=V,
        vcov_type=vcov, nobs=len(y), n_events=float((w * y).sum()), loglik=est.loglik,
        llnull=llnull, converged=True, iterations=est.iterations,
        has_intercept=design.has_intercept, flow=design.flow, conf_level=conf_level,
        weights_kind="frequency" if wopt is not None else None,
        sum_weights=float(w.sum()) if wopt is not None else None,
        n_clusters=cluster_codes(cl)[1] if cl is not None else None, cluster_var=cluster,
        diagnostics=diag, design_spec=spec_to_dict(design.spec), extra=extra,
        link=None if link == "logit" else link, _spec=design.spec,
    )


def _null_prob(y: np.ndarray, w: np.ndarray) -> float:
    """Intercept-only Firth logit in closed form: h_i = w_i / sum(w), so p = (sum wy + 1/2)/(sum w + 1)."""
    return float(((w * y).sum() + 0.5) / (w.sum() + 1.0))


def _ordinary_null(y: np.ndarray, w: np.ndarray, p: float) -> float:
    """Ordinary log-likelihood with every fitted probability equal to ``p``."""
    return float((w * (y * np.log(p) + (1.0 - y) * np.log1p(-p))).sum())


def _global_test(
    X: np.ndarray, y: np.ndarray, w: np.ndarray, best: _State, icpt: int | None,
    tol: float, max_iter: int,
) -> dict[str, float | int | None]:
    """logistf's penalised LR test that all non-intercept coefficients are 0 (full-model penalty)."""
    df = X.shape[1] - (1 if icpt is not None else 0)
    if df == 0:
        return {"chi2": 0.0, "df": 0, "p_value": None}
    free = np.zeros(X.shape[1], dtype=bool)
    start = np.zeros(X.shape[1])
    if icpt is not None:
        free[icpt] = True
        start[icpt] = best.beta[icpt]
    m = maximise_penalized(lambda b: _evaluate(X, y, w, b), start, free, tol, max_iter)
    if not m.converged:
        return {"chi2": None, "df": df, "p_value": None}
    chi2 = max(2.0 * (best.penalized - m.state.penalized), 0.0)
    return {"chi2": chi2, "df": df, "p_value": float(stats.chi2.sf(chi2, df))}
