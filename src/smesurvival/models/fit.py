"""``fit()``: formula + data -> FitResult for the binary models (logit, probit, cloglog).

Walks design -> checks -> Newton on the partial-sum kernel -> covariance -> diagnostics.
Failures are named: which column is collinear, which term separates the outcome, how many
iterations were run, and what to do next. ``fit_arrays()`` enters after the design, for a
design matrix built elsewhere (register scale: the matrix is used in place, never copied).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, get_args

import numpy as np
import pandas as pd

from smesurvival.data.flow import SampleFlow
from smesurvival.errors import (
    ConvergenceError,
    DataValidationError,
    FormulaError,
    SeparationError,
    UsageError,
)
from smesurvival.inference.vcov import (
    VCOV_TYPES,
    WEIGHTS_KINDS,
    VcovType,
    WeightsKind,
    check_choice,
    cluster_codes,
    sandwich_from_meat,
    sandwich_vcov,
)
from smesurvival.models.checks import SeparationCheck, check_rank, check_rank_gram, check_separation
from smesurvival.models.design import build_design, spec_to_dict
from smesurvival.models.families import FAMILIES, Family
from smesurvival.models.glm import memory_sums, newton_glm, null_loglik, start_values
from smesurvival.models.kernels import GLMSums, Information, block_rows_for, glm_final_sums
from smesurvival.models.result import Diagnostics, FitResult

BinaryModel = Literal["logit", "probit", "cloglog"]
BINARY_MODELS: tuple[str, ...] = get_args(BinaryModel)


def fit(
    formula: str,
    data: pd.DataFrame,
    *,
    model: BinaryModel = "logit",
    vcov: VcovType = "classical",
    cluster: str | None = None,
    weights: str | None = None,
    weights_kind: WeightsKind = "frequency",
    conf_level: float = 0.95,
    information: Information = "expected",
    tol: float = 1e-12,
    max_iter: int = 200,
    flow: SampleFlow | None = None,
) -> FitResult:
    """Fit a binary-outcome model by maximum likelihood.

    Parameters
    ----------
    formula : ``"survived ~ export_ratio * rd_intensity + C(industry)"`` (Wilkinson syntax).
    model : ``logit``, ``probit`` or ``cloglog``: P(y=1) = F(x'b) with F the inverse link.
    vcov : ``classical`` (inverse information), ``hc0``, ``hc1`` or ``cluster`` (needs ``cluster``).
    weights : column of frequency weights, or survey weights with ``weights_kind="survey"``.
    information : ``expected`` (Fisher scoring, as R's glm) or ``observed`` (Newton, as Stata and
        statsmodels' Probit); identical for the logit link.

    Example
    -------
    >>> from smesurvival import simulate_cohort, fit
    >>> m = fit("y ~ x", pd.DataFrame({"y": [0, 1, 0, 1, 1], "x": [1., 2., 2., 3., 1.]}))
    """
    check_options(model, vcov, weights_kind, information, conf_level)
    for role, col in (("cluster", cluster), ("weights", weights)):
        if col is not None and col not in data.columns:
            raise UsageError(f"{role} column '{col}' is not in the data")
    if vcov == "cluster" and cluster is None:
        raise UsageError("vcov 'cluster' needs a cluster column (cluster=... / --cluster COLUMN)")
    extra = tuple(c for c in (weights, cluster) if c is not None)
    design = build_design(formula, data, flow, extra_variables=extra)
    if design.y is None:
        raise FormulaError(f"formula '{formula}' has no outcome: write 'outcome ~ terms'")
    outcome = design.formula.outcome
    check_binary_outcome(design.y, outcome, model)
    w = weights_column(data, weights, design.rows)
    cl = data[cluster].to_numpy()[design.rows] if cluster is not None else None
    return _fit_binary(
        design.X, design.y, design.terms, model=model, vcov=vcov, weights=w, cluster=cl,
        cluster_var=cluster, weights_kind=weights_kind, conf_level=conf_level,
        information=information, tol=tol, max_iter=max_iter, outcome=outcome,
        formula=formula, flow=design.flow, spec=design.spec,
    )


def fit_arrays(
    X: np.ndarray,
    y: np.ndarray,
    *,
    model: BinaryModel = "logit",
    terms: Sequence[str] | None = None,
    vcov: VcovType = "classical",
    cluster: np.ndarray | None = None,
    weights: np.ndarray | None = None,
    weights_kind: WeightsKind = "frequency",
    conf_level: float = 0.95,
    information: Information = "expected",
    tol: float = 1e-12,
    max_iter: int = 200,
) -> FitResult:
    """Fit a binary-outcome model on a design matrix you built: the register-scale entry point.

    The same estimator as :func:`fit` (same Newton iterations, checks, covariances and
    diagnostics), minus the formula: ``X`` (n, p) is used as given, **without a copy** when
    it is a float64 array (C order is fastest; anything else is converted once). Peak memory
    is X plus O(n) for ``y`` (and weights, clusters) plus buffers of about a megabyte per
    thread: no temporary of X's size is made.

    Parameters
    ----------
    X : (n, p) design; include a column of ones named ``"Intercept"`` in ``terms`` for a model
        with an intercept (it sets the start values and the null model).
    y : (n,) 0/1 outcome.
    terms : column names (default ``x0, x1, ...``).
    cluster : (n,) cluster labels for ``vcov="cluster"``.
    weights : (n,) non-negative frequency or (``weights_kind="survey"``) survey weights.

    The result predicts on new arrays through ``params`` (``X_new @ params`` is the linear
    predictor); it has no formula state, so ``predict(newdata)`` on a data frame is refused.

    Example
    -------
    >>> import numpy as np
    >>> from smesurvival.models.fit import fit_arrays
    >>> rng = np.random.default_rng(1)
    >>> X = np.column_stack([np.ones(1000), rng.standard_normal(1000)])
    >>> y = (rng.random(1000) < 1 / (1 + np.exp(1 - X[:, 1]))).astype(float)
    >>> res = fit_arrays(X, y, terms=["Intercept", "x"])
    """
    check_options(model, vcov, weights_kind, information, conf_level)
    X = np.asarray(X)
    if X.ndim != 2:
        raise UsageError(f"X must be a 2-d array (rows x columns); got {X.ndim} dimension(s)")
    if X.dtype != np.float64:
        X = X.astype(np.float64)
    n, p = X.shape
    names = tuple(str(t) for t in terms) if terms is not None else tuple(f"x{j}" for j in range(p))
    if len(names) != p or len(set(names)) != p:
        raise UsageError(f"terms must name each of X's {p} columns once; got {len(names)} name(s)")
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    for role, arr in (("y", y), ("weights", weights), ("cluster", cluster)):
        if arr is not None and len(arr) != n:
            raise UsageError(f"{role} has {len(arr)} rows but X has {n}")
    if n == 0:
        raise UsageError("X has no rows")
    check_binary_outcome(y, "y", model)
    w = None
    if weights is not None:
        w = np.asarray(weights, dtype=np.float64).reshape(-1)
        if (w < 0).any() or not np.isfinite(w).all():
            raise UsageError("weights have negative or infinite values")
    if vcov == "cluster" and cluster is None:
        raise UsageError("vcov 'cluster' needs cluster labels (cluster=...)")
    return _fit_binary(
        X, y, names, model=model, vcov=vcov, weights=w,
        cluster=None if cluster is None else np.asarray(cluster), cluster_var=None,
        weights_kind=weights_kind, conf_level=conf_level, information=information, tol=tol,
        max_iter=max_iter, outcome="y", formula="y ~ 0 + " + " + ".join(names),
        flow=SampleFlow(n), spec=None,
    )


def check_options(model: str, vcov: str, weights_kind: str, information: str,
                  conf_level: float) -> None:
    """The binary models' options, checked the same way by every engine."""
    check_choice(model, BINARY_MODELS, "model")
    check_choice(vcov, VCOV_TYPES, "vcov")
    check_choice(weights_kind, WEIGHTS_KINDS, "weights_kind")
    check_choice(information, ("expected", "observed"), "information")
    if not 0.0 < conf_level < 1.0:
        raise UsageError(f"conf_level must be between 0 and 1; got {conf_level}")


def _fit_binary(
    X: np.ndarray, y: np.ndarray, terms: tuple[str, ...], *, model: str, vcov: VcovType,
    weights: np.ndarray | None, cluster: np.ndarray | None, cluster_var: str | None,
    weights_kind: WeightsKind, conf_level: float, information: Information, tol: float,
    max_iter: int, outcome: str | None, formula: str, flow: SampleFlow, spec: Any,
) -> FitResult:
    """Checks -> Newton on the kernel -> covariance -> diagnostics, with no copy of X.

    Passes over X: one per kernel evaluation (the first, at the start values, doubles as the
    rank check: the linear predictor is constant there, so its information is the weighted
    Gram matrix times a constant), plus one at the end only for a sandwich covariance or
    when some fitted probability is within 1e-8 of 0 or 1.
    """
    fam = FAMILIES[model]
    w = weights
    n, p = X.shape
    has_intercept = "Intercept" in terms
    icpt = terms.index("Intercept") if has_intercept else None
    sum_w = float(w.sum()) if w is not None else float(n)
    sum_wy = float((y * w).sum()) if w is not None else float(y.sum())
    beta0 = start_values(p, icpt, fam, sum_wy / sum_w if sum_w > 0 else 0.5)
    sums = memory_sums(X, y, fam, w)
    first = sums(beta0, information)
    if not (np.isfinite(first.loglik) and np.isfinite(first.info).all()
            and np.isfinite(first.grad).all()):
        _raise_non_finite(X, terms)
    gram = _gram_from_start(first, fam, information)
    if gram is None:
        check_rank(X, terms, w)
    else:
        check_rank_gram(gram, terms)
    est = newton_glm(sums, beta0, information=information, tol=tol, max_iter=max_iter,
                     first=first)
    mu_min, mu_max = (float(m) for m in fam.mean(np.array([est.eta_min, est.eta_max])))
    maybe_extreme = not (mu_min >= 1e-8 and mu_max <= 1 - 1e-8)
    meat: np.ndarray | None = None
    codes, n_clusters = cluster_codes(cluster) if cluster is not None else (None, None)
    extreme = 0
    if vcov != "classical" or maybe_extreme:
        factor = w if (w is None or vcov == "cluster" or weights_kind == "frequency") else w * w
        fin = glm_final_sums(X, y, est.params, fam, row_factor=factor,
                             cluster_codes=codes if vcov == "cluster" else None,
                             n_clusters=n_clusters or 0, meat=vcov != "classical")
        meat, extreme = fin.meat, fin.n_extreme
    if not est.converged or extreme:
        sep = check_separation(X, y, terms, w)
        if sep.separated:
            raise SeparationError(separation_message(outcome, sep, model))
        if not est.converged:
            raise ConvergenceError(convergence_message(model, est.iterations, est.max_abs_step))
    bread = np.linalg.inv(est.info)
    bread = (bread + bread.T) / 2.0
    if vcov == "classical":
        V = sandwich_vcov(bread, np.empty((0, 0)), vcov, weights=w, weights_kind=weights_kind)
    else:
        assert meat is not None
        n_obs = sum_w if (w is not None and weights_kind == "frequency") else float(n)
        V = sandwich_from_meat(bread, meat, vcov, n=n_obs, n_clusters=n_clusters)
    cov = _design_cov(X, gram if w is None else None, icpt)
    return FitResult(
        model=model, formula=formula, terms=terms, params=est.params, vcov=V,
        vcov_type=vcov, nobs=n, n_events=sum_wy, loglik=est.loglik,
        llnull=null_loglik(y, fam, has_intercept, w), converged=est.converged,
        iterations=est.iterations, has_intercept=has_intercept, flow=flow,
        conf_level=conf_level, information=information,
        weights_kind=weights_kind if w is not None else None,
        sum_weights=sum_w if w is not None else None,
        n_clusters=n_clusters, cluster_var=cluster_var,
        diagnostics=diagnostics_from_cov(cov, terms, mu_min, mu_max, extreme, est.info),
        design_spec=spec_to_dict(spec) if spec is not None else None, _spec=spec,
    )


def _gram_from_start(first: GLMSums, fam: Family, information: Information) -> np.ndarray | None:
    """X' diag(w) X from the information at the start values, when eta is constant there."""
    if information == "observed" and not fam.canonical:
        return None
    if not (np.isfinite(first.eta_min) and first.eta_min == first.eta_max):
        return None
    _, _, v0, _ = fam.pieces(np.array([first.eta_min]), np.array([1.0]))
    if not (np.isfinite(v0[0]) and v0[0] > 0):
        return None
    gram: np.ndarray = first.info / v0[0]
    return gram


def _raise_non_finite(X: np.ndarray, terms: tuple[str, ...]) -> None:
    """Name the first non-finite value of X (column, row), found block by block."""
    rows = block_rows_for(X.shape[1])
    for a in range(0, X.shape[0], rows):
        bad = ~np.isfinite(X[a:a + rows])
        if bad.any():
            i, j = np.argwhere(bad)[0]
            raise DataValidationError(
                f"column '{terms[j]}' of the design has a non-finite value ({X[a + i, j]}) in "
                f"row {a + i} (0-based, of the rows used); drop or fix the row(s), e.g. a log "
                "of zero"
            )


def _design_cov(X: np.ndarray, gram: np.ndarray | None, icpt: int | None) -> np.ndarray:
    """Covariance of X's columns (as ``np.cov``), from the unweighted Gram when that is exact
    enough (an intercept column gives the column sums), else by a pass of shifted moments."""
    n, p = X.shape
    if gram is not None and icpt is not None and n > 1 and abs(gram[icpt, icpt] - n) < 1e-9 * n:
        s = gram[icpt]  # the intercept column is ones: its row of X'X holds the column sums
        mean = s / n
        cov = (gram - np.outer(s, mean)) / (n - 1)
        cov[icpt, :] = cov[:, icpt] = 0.0
        others = np.arange(p) != icpt
        var, m2 = np.diag(cov)[others], (mean * mean)[others]
        # cancellation: the relative error of a variance is about eps * mean^2 / variance
        if np.all(var > 0) and np.all(m2 < 1e6 * var):
            return np.asarray((cov + cov.T) / 2.0)
    return design_cov(X)


def design_cov(X: np.ndarray) -> np.ndarray:
    """Covariance of X's columns (as ``np.cov(X, rowvar=False)``) in row blocks, no copy of X.

    Moments are taken about the first block's column means (shifted sums), which keeps the
    accuracy of a centred computation for columns with a large mean.
    """
    n, p = X.shape
    rows = block_rows_for(p)
    shift = X[:rows].mean(axis=0)
    s1 = np.zeros(p)
    s2 = np.zeros((p, p))
    buf = np.empty((min(rows, n), p))
    for a in range(0, n, rows):
        xb = X[a:a + rows]
        c = buf[:xb.shape[0]]
        np.subtract(xb, shift, out=c)
        s1 += c.sum(axis=0)
        s2 += np.dot(c.T, c)
    if n < 2:
        return np.full((p, p), np.nan)
    return np.asarray((s2 - np.outer(s1, s1) / n) / (n - 1))


def check_binary_outcome(y: np.ndarray, outcome: str | None, model: str) -> None:
    """Refuse an outcome that is not coded 0/1, naming the column and the values found."""
    bad = ~np.isin(y, (0.0, 1.0))
    if bad.any():
        vals = ", ".join(map(repr, sorted(set(np.unique(y[bad]).tolist()))[:5]))
        raise FormulaError(
            f"outcome column '{outcome}' must be 0/1 for a {model} model; found {vals} "
            f"in {int(bad.sum())} row(s)"
        )


def weights_column(data: pd.DataFrame, col: str | None, rows: np.ndarray) -> np.ndarray | None:
    if col is None:
        return None
    try:
        w = pd.to_numeric(data[col], errors="raise").to_numpy(dtype=float)[rows]
    except (ValueError, TypeError):
        raise UsageError(f"weights column '{col}' must be numeric") from None
    if (w < 0).any() or not np.isfinite(w).all():
        raise UsageError(f"weights column '{col}' has negative or infinite values")
    return w


def convergence_message(model: str, iterations: int, last_step: float) -> str:
    """What to say when Newton stops at its iteration limit."""
    return (
        f"the {model} fit did not converge in {iterations} iterations (last step "
        f"{last_step:.3g}); rescale large covariates, check for near-collinear terms, or raise "
        "max_iter"
    )


def separation_message(outcome: str | None, sep: SeparationCheck, model: str) -> str:
    kind = "complete" if sep.complete else "quasi-complete"
    terms = ", ".join(f"'{t}'" for t in sep.terms)
    return (
        f"{kind} separation: the outcome '{outcome}' is perfectly predicted in "
        f"{sep.n_rows_perfectly_predicted} row(s) by a combination of {terms}, so "
        f"the {model} maximum-likelihood estimates do not exist (they run to infinity). Drop or "
        "merge the term(s) (e.g. a rare category)"
        + (", or use Firth's penalised logit (--model firth / fit_firth)." if model == "logit"
           else "; for a logit, Firth's penalised likelihood (--model firth) would also work.")
    )


def fit_diagnostics(
    X: np.ndarray, terms: tuple[str, ...], mu: np.ndarray, extreme: int, info: np.ndarray
) -> Diagnostics:
    """VIFs of the non-intercept columns, fitted-value range and the information's condition."""
    return diagnostics_from_cov(design_cov(X), terms, float(mu.min()), float(mu.max()), extreme,
                                info)


def diagnostics_from_cov(
    cov: np.ndarray, terms: tuple[str, ...], mu_min: float, mu_max: float, extreme: int,
    info: np.ndarray,
) -> Diagnostics:
    """VIFs from the design's covariance (in memory, or from streamed moments), fitted range, notes."""
    cols = [j for j, t in enumerate(terms) if t != "Intercept"]
    vif: dict[str, float] = {}
    ok = [j for j in cols if cov[j, j] > 0]
    if len(ok) >= 2:
        c = cov[np.ix_(ok, ok)]
        d = np.sqrt(np.diag(c))
        try:
            inv = np.linalg.inv(c / np.outer(d, d))
            vif = {terms[j]: float(v) for j, v in zip(ok, np.diag(inv), strict=True)}
        except np.linalg.LinAlgError:
            vif = {}
    elif len(cols) == 1:
        vif = {terms[cols[0]]: 1.0}
    notes = []
    high = [t for t, v in vif.items() if v > 10]
    if high:
        notes.append(f"VIF above 10 for {', '.join(high)}: estimates of these terms are imprecise")
    if extreme:
        notes.append(f"{extreme} fitted probabilities are numerically 0 or 1")
    return Diagnostics(
        vif=vif, min_fitted=mu_min, max_fitted=mu_max, n_fitted_extreme=extreme,
        condition_number=float(np.linalg.cond(info)), notes=tuple(notes),
    )
