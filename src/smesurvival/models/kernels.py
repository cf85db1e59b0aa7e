"""Partial-sum kernels: the one piece of estimation maths every engine runs.

Given a block of rows and the current coefficients, a kernel returns additive sums
(gradient, information matrix, log-likelihood). In memory one block holds all rows;
the streaming and Spark engines run the same function per batch or partition and add the
results; the batched bootstrap runs it with many weight vectors (DESIGN.md principle 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from smesurvival.models.families import Family

Information = Literal["expected", "observed"]


@dataclass(frozen=True)
class GLMSums:
    """Additive sufficient pieces of one Newton step over a block of rows."""

    grad: np.ndarray  # (p,) score  X' (w * u)
    info: np.ndarray  # (p, p) information  X' diag(w * v) X
    loglik: float
    sum_weights: float
    n_rows: int

    def __add__(self, other: GLMSums) -> GLMSums:
        return GLMSums(
            self.grad + other.grad, self.info + other.info, self.loglik + other.loglik,
            self.sum_weights + other.sum_weights, self.n_rows + other.n_rows,
        )


def glm_partial_sums(
    X: np.ndarray,
    y: np.ndarray,
    beta: np.ndarray,
    family: Family,
    weights: np.ndarray | None = None,
    offset: np.ndarray | None = None,
    information: Information = "expected",
) -> GLMSums:
    """Gradient, information and log-likelihood of a binary GLM on one block of rows."""
    eta = X @ beta
    if offset is not None:
        eta = eta + offset
    ll, u, w_exp, w_obs = family.pieces(eta, y)
    v = w_obs if information == "observed" else w_exp
    if weights is not None:
        ll = ll * weights
        u = u * weights
        v = v * weights
    grad = X.T @ u
    info = (X * v[:, None]).T @ X
    return GLMSums(
        grad, info, float(ll.sum()),
        float(weights.sum()) if weights is not None else float(len(y)), len(y),
    )


def glm_row_scores(
    X: np.ndarray,
    y: np.ndarray,
    beta: np.ndarray,
    family: Family,
    offset: np.ndarray | None = None,
) -> np.ndarray:
    """Per-row score contributions d l_i / d beta (unweighted), shape (n, p), for sandwiches."""
    eta = X @ beta
    if offset is not None:
        eta = eta + offset
    _, u, _, _ = family.pieces(eta, y)
    return X * u[:, None]
