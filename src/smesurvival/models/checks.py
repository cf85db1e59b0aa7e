"""Pre- and post-fit checks that name the culprit: rank deficiency and separation."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import optimize

from smesurvival.errors import RankDeficientError


def gram_of(X: np.ndarray, weights: np.ndarray | None = None, block: int = 65536) -> np.ndarray:
    """X' diag(w) X in row blocks (no full-size temporary)."""
    p = X.shape[1]
    G = np.zeros((p, p))
    for s in range(0, X.shape[0], block):
        xb = X[s:s + block]
        G += (xb if weights is None else xb * weights[s:s + block, None]).T @ xb
    return G


def check_rank(X: np.ndarray, terms: tuple[str, ...], weights: np.ndarray | None = None) -> None:
    """Raise RankDeficientError naming each column that is a linear combination of others."""
    check_rank_gram(gram_of(X, weights), terms)


def check_rank_gram(gram: np.ndarray, terms: tuple[str, ...]) -> None:
    """The same check from a (weighted, possibly centred) Gram matrix."""
    d = np.sqrt(np.maximum(np.diag(gram), 0.0))
    zero = np.flatnonzero(d <= 1e-12 * max(1.0, float(d.max(initial=0.0))))
    if zero.size:
        names = ", ".join(f"'{terms[j]}'" for j in zero)
        raise RankDeficientError(
            f"column(s) {names} of the design are zero in every used row; drop the term(s) "
            "or check the coding of the data"
        )
    g = gram / np.outer(d, d)
    kept: list[int] = []
    parts = []
    for j in range(g.shape[0]):  # keep a column unless the earlier kept ones span it
        if kept:
            gk = g[np.ix_(kept, kept)]
            coef = np.linalg.solve(gk, g[kept, j])
            resid = g[j, j] - g[j, kept] @ coef
        else:
            coef, resid = np.zeros(0), g[j, j]
        if resid > 1e-9:
            kept.append(j)
            continue
        orig = coef * d[j] / d[kept]  # back to the original column scale
        combo = [f"{c:+.4g}*'{terms[i]}'" for c, i in zip(orig, kept, strict=True) if abs(c) > 1e-8]
        parts.append(f"'{terms[j]}' = {' '.join(combo) if combo else '0'}")
    if not parts:
        return
    raise RankDeficientError(
        "the design matrix is rank deficient (linearly dependent columns): "
        + "; ".join(parts)
        + ". Remove one of the terms involved (e.g. a dummy that duplicates another, or a "
        "category level with the same rows as another)."
    )


@dataclass(frozen=True)
class SeparationCheck:
    """Result of the linear-programming separation check (Konis 2007)."""

    separated: bool
    complete: bool
    terms: tuple[str, ...]  # terms whose coefficients diverge
    n_rows_perfectly_predicted: int


def check_separation(
    X: np.ndarray, y: np.ndarray, terms: tuple[str, ...], weights: np.ndarray | None = None
) -> SeparationCheck:
    """Is there a direction b with s_i x_i'b >= 0 for all rows (s = 2y - 1), not all zero?

    Solved as a linear programme; a positive optimum means the MLE does not exist (some
    coefficients run to infinity), and the non-zero entries of b name the terms involved.
    """
    keep = np.ones(len(y), dtype=bool) if weights is None else weights > 0
    s = np.where(y[keep] > 0.5, 1.0, -1.0)
    scale = np.maximum(np.abs(X[keep]).max(axis=0), 1e-12)
    A = (X[keep] / scale) * s[:, None]
    c = -A.sum(axis=0)
    res = optimize.linprog(
        c, A_ub=-A, b_ub=np.zeros(A.shape[0]), bounds=[(-1.0, 1.0)] * A.shape[1], method="highs"
    )
    if res.status != 0 or res.fun > -1e-7:
        return SeparationCheck(False, False, (), 0)
    b = res.x
    margin = A @ b
    involved = tuple(terms[j] for j in np.flatnonzero(np.abs(b) > 1e-7))
    tiny = 1e-9 * np.abs(margin).max()
    n_perfect = int((margin > tiny).sum())
    return SeparationCheck(True, bool((margin > tiny).all()), involved, n_perfect)
