"""Many independent binary GLMs at once: R data sets stacked as (R, n, p) arrays.

The power simulation fits the same model on R simulated cohorts. Each Newton step is one
batched matrix product for all R information matrices and one batched solve, instead of R
separate fits. Rows can be masked (padded cohorts) with zero weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from smesurvival.models.families import Family

CONVERGED, NOT_CONVERGED, SINGULAR, NONFINITE = 0, 1, 2, 3


@dataclass(frozen=True)
class StackedFit:
    """Coefficients and classical SEs of R fits; ``status`` 0 = converged (else the reason)."""

    params: np.ndarray  # (R, p)
    se: np.ndarray  # (R, p)
    status: np.ndarray  # (R,) int8
    iterations: int

    @property
    def ok(self) -> np.ndarray:
        return self.status == CONVERGED


def fit_stacked(
    X: np.ndarray, y: np.ndarray, family: Family, weights: np.ndarray | None = None,
    tol: float = 1e-8, max_iter: int = 50,
) -> StackedFit:
    """Fisher scoring for every stacked data set; replicates that diverge or whose information
    is singular (e.g. a category with no events in that cohort) are flagged, not averaged."""
    R, n, p = X.shape
    w = np.ones((R, n)) if weights is None else weights
    beta = np.zeros((R, p))
    status = np.full(R, NOT_CONVERGED, dtype=np.int8)
    active = np.ones(R, dtype=bool)
    it = 0
    for it in range(1, max_iter + 1):  # noqa: B007  (it is reported after the loop)
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        whole = idx.size == R  # no copy of X while every fit is still running
        Xa = X if whole else X[idx]
        ya, wa, ba = (y, w, beta) if whole else (y[idx], w[idx], beta[idx])
        eta = np.matmul(Xa, ba[:, :, None])[:, :, 0]
        _, u, v, _ = family.pieces(eta, ya)
        grad = np.matmul(Xa.transpose(0, 2, 1), (u * wa)[:, :, None])[:, :, 0]
        H = np.matmul(Xa.transpose(0, 2, 1), Xa * (v * wa)[:, :, None])
        step, bad = _solve(H, grad)
        new = ba + step
        nonfinite = ~np.isfinite(new).all(axis=1) | (np.abs(new).max(axis=1) > 1e3)
        beta[idx] = np.where((bad | nonfinite)[:, None], ba, new)
        done = np.abs(step).max(axis=1) <= tol * (1.0 + np.abs(new).max(axis=1))
        status[idx[bad]] = SINGULAR
        status[idx[nonfinite & ~bad]] = NONFINITE
        status[idx[done & ~bad & ~nonfinite]] = CONVERGED
        active[idx[bad | nonfinite | done]] = False
    se = np.full((R, p), np.nan)
    ok = status == CONVERGED
    if ok.any():
        # information at the final estimate (one more evaluation for the converged ones)
        idx = np.flatnonzero(ok)
        eta = np.einsum("rnp,rp->rn", X[idx], beta[idx])
        _, _, v, _ = family.pieces(eta, y[idx])
        H = np.matmul(X[idx].transpose(0, 2, 1), X[idx] * (v * w[idx])[:, :, None])
        se[idx] = np.sqrt(np.diagonal(np.linalg.inv(H), axis1=1, axis2=2))
    return StackedFit(beta, se, status, it)


def _solve(H: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Batched Cholesky solve; matrices that are not positive definite are flagged singular."""
    try:
        L = np.linalg.cholesky(H)
        bad = np.zeros(H.shape[0], dtype=bool)
    except np.linalg.LinAlgError:  # rare: find the culprits one by one
        bad = np.zeros(H.shape[0], dtype=bool)
        for r in range(H.shape[0]):
            try:
                np.linalg.cholesky(H[r])
            except np.linalg.LinAlgError:
                bad[r] = True
        H = np.where(bad[:, None, None], np.eye(H.shape[1]), H)
        L = np.linalg.cholesky(H)
    diag = np.diagonal(L, axis1=1, axis2=2)
    bad |= (diag.min(axis=1) / diag.max(axis=1)) ** 2 < 1e-13  # numerically singular
    z = np.linalg.solve(L, g[:, :, None])
    step = np.linalg.solve(L.transpose(0, 2, 1), z)[:, :, 0]
    return np.where(bad[:, None], 0.0, step), bad
