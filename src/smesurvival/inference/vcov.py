"""Variance estimators for M-estimators: classical, HC0, HC1 and cluster-robust sandwiches.

Pure functions of the bread (inverse information) and per-row scores, so every model
(logit family now, Cox and hazards later) shares them. Definitions follow R's ``sandwich``:
HC1 = HC0 * n / (n - k); cluster = G/(G-1) * (n-1)/(n-k) * B M B (``vcovCL`` type HC1,
statsmodels' ``cov_type='cluster'``).
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np

from smesurvival.errors import UsageError

VcovType = Literal["classical", "hc0", "hc1", "cluster"]
WeightsKind = Literal["frequency", "survey"]
VCOV_TYPES: tuple[str, ...] = get_args(VcovType)
WEIGHTS_KINDS: tuple[str, ...] = get_args(WeightsKind)


def check_choice(value: str, choices: tuple[str, ...], what: str) -> str:
    """Validate an option against its Literal choices with a message listing them."""
    if value not in choices:
        raise UsageError(f"{what} must be one of {', '.join(choices)}; got '{value}'")
    return value


def cluster_codes(cluster: np.ndarray) -> tuple[np.ndarray, int]:
    """Integer codes 0..G-1 for cluster labels, and G."""
    _, codes = np.unique(np.asarray(cluster), return_inverse=True)
    return codes.ravel(), int(codes.max()) + 1 if codes.size else 0


def sandwich_vcov(
    bread: np.ndarray,
    scores: np.ndarray,
    kind: VcovType,
    *,
    weights: np.ndarray | None = None,
    weights_kind: WeightsKind = "frequency",
    cluster: np.ndarray | None = None,
) -> np.ndarray:
    """Covariance of the estimates: ``bread`` alone (classical) or B M B with the chosen meat.

    ``scores`` are unweighted per-row score contributions (n, p). Frequency weights count a row
    ``w`` times; survey weights scale each row's score by ``w``.
    """
    check_choice(kind, VCOV_TYPES, "vcov")
    if kind == "classical":
        if weights is not None and weights_kind == "survey":
            raise UsageError(
                "survey weights need a robust covariance: use vcov 'hc0', 'hc1' or 'cluster'"
            )
        return bread
    n_rows, k = scores.shape
    w = np.ones(n_rows) if weights is None else np.asarray(weights, dtype=float)
    n = float(w.sum()) if (weights is not None and weights_kind == "frequency") else float(n_rows)
    if kind in ("hc0", "hc1"):
        c = w if weights_kind == "frequency" else w * w
        return sandwich_from_meat(bread, (scores * c[:, None]).T @ scores, kind, n=n)
    if cluster is None:
        raise UsageError("vcov 'cluster' needs a cluster variable (--cluster COLUMN)")
    codes, g = cluster_codes(cluster)
    sw = scores * w[:, None]
    sums = np.column_stack([np.bincount(codes, weights=sw[:, j], minlength=g) for j in range(k)])
    return sandwich_from_meat(bread, sums.T @ sums, kind, n=n, n_clusters=g)


def sandwich_from_meat(
    bread: np.ndarray, meat: np.ndarray, kind: VcovType, *, n: float, n_clusters: int | None = None,
) -> np.ndarray:
    """B M B with R sandwich's small-sample factors: HC1 n/(n-k); cluster G/(G-1) (n-1)/(n-k).

    ``n`` is the number of observations (summed frequency weights, else rows). Every engine
    (in memory, streamed, per partition) accumulates its own meat and finishes here.
    """
    k = bread.shape[0]
    v = bread @ meat @ bread
    if kind == "hc0":
        return v
    if kind == "hc1":
        return v * n / (n - k)
    if kind == "cluster":
        if n_clusters is None or n_clusters < 2:
            raise UsageError("vcov 'cluster' needs at least two clusters")
        return n_clusters / (n_clusters - 1) * (n - 1) / (n - k) * v
    raise UsageError(f"sandwich_from_meat: kind must be hc0, hc1 or cluster; got '{kind}'")
