"""``fit()``: formula + data -> FitResult for the binary models (logit, probit, cloglog).

Walks design -> checks -> Newton on the partial-sum kernel -> covariance -> diagnostics.
Failures are named: which column is collinear, which term separates the outcome, how many
iterations were run, and what to do next.
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np
import pandas as pd

from smesurvival.data.flow import SampleFlow
from smesurvival.errors import ConvergenceError, FormulaError, SeparationError, UsageError
from smesurvival.inference.vcov import (
    VCOV_TYPES,
    WEIGHTS_KINDS,
    VcovType,
    WeightsKind,
    check_choice,
    cluster_codes,
    sandwich_vcov,
)
from smesurvival.models.checks import SeparationCheck, check_rank, check_separation
from smesurvival.models.design import build_design, spec_to_dict
from smesurvival.models.families import FAMILIES
from smesurvival.models.glm import memory_sums, newton_glm, null_loglik, start_values
from smesurvival.models.kernels import Information, glm_row_scores
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
    check_choice(model, BINARY_MODELS, "model")
    check_choice(vcov, VCOV_TYPES, "vcov")
    check_choice(weights_kind, WEIGHTS_KINDS, "weights_kind")
    check_choice(information, ("expected", "observed"), "information")
    if not 0.0 < conf_level < 1.0:
        raise UsageError(f"conf_level must be between 0 and 1; got {conf_level}")
    for role, col in (("cluster", cluster), ("weights", weights)):
        if col is not None and col not in data.columns:
            raise UsageError(f"{role} column '{col}' is not in the data")
    if vcov == "cluster" and cluster is None:
        raise UsageError("vcov 'cluster' needs a cluster column (cluster=... / --cluster COLUMN)")
    extra = tuple(c for c in (weights, cluster) if c is not None)
    design = build_design(formula, data, flow, extra_variables=extra)
    if design.y is None:
        raise FormulaError(f"formula '{formula}' has no outcome: write 'outcome ~ terms'")
    X, y = design.X, design.y
    outcome = design.formula.outcome
    check_binary_outcome(y, outcome, model)
    w = weights_column(data, weights, design.rows)
    fam = FAMILIES[model]
    check_rank(X, design.terms, w)
    icpt = design.terms.index("Intercept") if design.has_intercept else None
    ybar = float(np.average(y, weights=w))
    est = newton_glm(
        memory_sums(X, y, fam, w), start_values(X.shape[1], icpt, fam, ybar),
        information=information, tol=tol, max_iter=max_iter,
    )
    mu = fam.mean(X @ est.params)
    extreme = int(((mu < 1e-8) | (mu > 1 - 1e-8)).sum())
    if not est.converged or extreme:
        sep = check_separation(X, y, design.terms, w)
        if sep.separated:
            raise SeparationError(separation_message(outcome, sep, model))
        if not est.converged:
            raise ConvergenceError(convergence_message(model, est.iterations, est.max_abs_step))
    bread = np.linalg.inv(est.info)
    bread = (bread + bread.T) / 2.0
    scores = glm_row_scores(X, y, est.params, fam) if vcov != "classical" else np.empty((0, 0))
    cl = data[cluster].to_numpy()[design.rows] if cluster is not None else None
    V = sandwich_vcov(
        bread, scores, vcov, weights=w, weights_kind=weights_kind, cluster=cl,
    ) if vcov != "classical" else sandwich_vcov(bread, np.empty((0, 0)), vcov, weights=w,
                                                weights_kind=weights_kind)
    n_events = float((y * (w if w is not None else 1.0)).sum())
    return FitResult(
        model=model, formula=formula, terms=design.terms, params=est.params, vcov=V,
        vcov_type=vcov, nobs=len(y), n_events=n_events, loglik=est.loglik,
        llnull=null_loglik(y, fam, design.has_intercept, w), converged=est.converged,
        iterations=est.iterations, has_intercept=design.has_intercept, flow=design.flow,
        conf_level=conf_level, information=information,
        weights_kind=weights_kind if w is not None else None,
        sum_weights=float(w.sum()) if w is not None else None,
        n_clusters=cluster_codes(cl)[1] if cl is not None else None, cluster_var=cluster,
        diagnostics=fit_diagnostics(X, design.terms, mu, extreme, est.info),
        design_spec=spec_to_dict(design.spec), _spec=design.spec,
    )


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
    cov = np.cov(X, rowvar=False).reshape(X.shape[1], X.shape[1])
    return diagnostics_from_cov(cov, terms, float(mu.min()), float(mu.max()), extreme, info)


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
