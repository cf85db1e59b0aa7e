"""Binary GLM estimation (logit, probit, cloglog) by Newton / Fisher scoring on the kernel.

``newton_glm`` is a pure function on arrays. It calls :func:`glm_partial_sums` once per
iteration through a ``sums`` callback, so the streaming and Spark engines reuse the loop by
passing their own callback that adds the kernel's output over batches or partitions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import linalg, special

from smesurvival.models.families import Family
from smesurvival.models.kernels import GLMSums, Information, glm_partial_sums

SumsFn = Callable[[np.ndarray, Information], GLMSums]


@dataclass(frozen=True)
class GLMEstimate:
    """Point estimate, information at the optimum and the iteration record."""

    params: np.ndarray
    info: np.ndarray  # information at params (expected or observed, as requested)
    loglik: float
    converged: bool
    iterations: int
    max_abs_step: float
    sum_weights: float
    n_rows: int
    eta_min: float = np.nan  # range of the linear predictor at params (NaN: not recorded)
    eta_max: float = np.nan


def memory_sums(
    X: np.ndarray, y: np.ndarray, family: Family,
    weights: np.ndarray | None = None, offset: np.ndarray | None = None,
) -> SumsFn:
    """The in-memory engine: one block holding every row."""

    def sums(beta: np.ndarray, information: Information) -> GLMSums:
        return glm_partial_sums(X, y, beta, family, weights, offset, information)

    return sums


def start_values(p: int, intercept_index: int | None, family: Family, ybar: float) -> np.ndarray:
    """Zeros, with the intercept at the link of the mean outcome (a good, safe start)."""
    beta = np.zeros(p)
    if intercept_index is not None and 0.0 < ybar < 1.0:
        beta[intercept_index] = float(family.link_fun(np.array([ybar]))[0])
    return beta


def newton_glm(
    sums: SumsFn,
    beta0: np.ndarray,
    *,
    information: Information = "expected",
    tol: float = 1e-12,
    max_iter: int = 200,
    first: GLMSums | None = None,
) -> GLMEstimate:
    """Maximise the log-likelihood with Newton steps (Fisher scoring for expected information).

    Steps are halved while the log-likelihood falls. Converged when the largest coefficient
    step is below ``tol * (1 + max|beta|)`` (Fisher scoring converges only linearly for
    non-canonical links, hence the tight default), or when a full step of at most 1e-8 leaves
    the log-likelihood unchanged to a few ulps (floating-point floor; independent of the order
    in which an engine adds its partial sums). A step already below the tolerance when it is
    computed is taken without evaluating the sums again (one pass over the data fewer); the
    returned information and log-likelihood are then those at the point it was computed from,
    which differ from those at the estimate by the order of ``tol``. ``first``, when given, is ``sums(beta0,
    information)`` already computed (by a caller that also used it for a pre-fit check).
    """
    beta = np.asarray(beta0, dtype=float).copy()
    cur = first if first is not None else sums(beta, information)
    converged = False
    step_max = np.inf
    it = 0
    for it in range(1, max_iter + 1):  # noqa: B007  (it is the iteration count after the loop)
        step = _solve(cur.info, cur.grad)
        size = float(np.max(np.abs(step))) if step.size else 0.0
        if size <= tol * (1.0 + float(np.max(np.abs(beta), initial=0.0))):
            # already within tolerance: take the step without another pass over the data
            beta, step_max, converged = beta + step, size, True
            break
        t = 1.0
        for _ in range(40):
            cand = beta + t * step
            new = sums(cand, information)
            if np.isfinite(new.loglik) and new.loglik >= cur.loglik - 1e-12 * (1 + abs(cur.loglik)):
                break
            t *= 0.5
        else:
            break
        step_max = float(np.max(np.abs(t * step))) if step.size else 0.0
        dll = abs(new.loglik - cur.loglik)
        beta, cur = cand, new
        if step_max <= tol * (1.0 + float(np.max(np.abs(beta), initial=0.0))) or (
            t == 1.0 and dll <= 4 * np.finfo(float).eps * (abs(cur.loglik) + 1.0) and step_max < 1e-8
        ):
            converged = True
            break
    return GLMEstimate(
        beta, cur.info, cur.loglik, converged, it, step_max, cur.sum_weights, cur.n_rows,
        cur.eta_min, cur.eta_max,
    )


def _solve(info: np.ndarray, grad: np.ndarray) -> np.ndarray:
    if info.size == 0:
        return np.zeros(0)
    try:
        c = linalg.cho_factor(info, check_finite=True)
        return linalg.cho_solve(c, grad)
    except (linalg.LinAlgError, ValueError):
        return np.linalg.lstsq(info, grad, rcond=None)[0]


def null_loglik(
    y: np.ndarray, family: Family, intercept: bool,
    weights: np.ndarray | None = None, offset: np.ndarray | None = None,
) -> float:
    """Log-likelihood of the null model: intercept only, or (no intercept) eta = offset.

    Without an offset it is closed-form for every link, from the (weighted) event share
    ybar: the intercept-only fit has mu = ybar. With an offset, the intercept is fitted.
    """
    sum_w = float(len(y)) if weights is None else float(weights.sum())
    sum_wy = float(y.sum()) if weights is None else float(weights @ y)
    if offset is None:
        return closed_null_loglik(family, intercept, sum_w, sum_wy)
    if not intercept:
        return float(glm_partial_sums(np.zeros((len(y), 0)), y, np.zeros(0), family, weights,
                                      offset).loglik)
    X1 = np.ones((len(y), 1))
    est = newton_glm(
        memory_sums(X1, y, family, weights, offset),
        start_values(1, 0, family, sum_wy / sum_w),
    )
    return est.loglik


def closed_null_loglik(family: Family, intercept: bool, sum_w: float, sum_wy: float) -> float:
    """Null log-likelihood from the summed weights and weighted events (no offset).

    Intercept only: ``sum_wy log(ybar) + (sum_w - sum_wy) log(1 - ybar)`` (0 when every
    outcome is equal); no intercept: every row at eta = 0.
    """
    if not intercept:
        ll, _, _, _ = family.pieces(np.zeros(2), np.array([1.0, 0.0]))
        return float(sum_wy * ll[0] + (sum_w - sum_wy) * ll[1])
    ybar = sum_wy / sum_w
    return float(special.xlogy(sum_wy, ybar) + special.xlogy(sum_w - sum_wy, 1.0 - ybar))
