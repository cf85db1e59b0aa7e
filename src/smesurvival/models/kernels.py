"""Partial-sum kernels: the one piece of estimation maths every engine runs.

Given a block of rows and the current coefficients, a kernel returns additive sums
(gradient, information matrix, log-likelihood). The streaming and Spark engines run the same
function per batch or partition and add the results; the in-memory engine runs it once on all
rows; the batched bootstrap runs the same per-row maths with many weight vectors
(DESIGN.md principle 1).

How one call goes over its rows (the in-memory engine at register scale is one call on, say,
10 M x 20 float64 = 1.6 GB): **one pass over X, in row blocks** of about a megabyte. For each
block the linear predictor, the per-row log-likelihood, score factor ``u`` and information
weight ``v`` are computed in preallocated block-sized buffers, then the block's score
``X_b' u`` and weighted Gram ``X_b' diag(v) X_b`` (as ``S' S`` with ``S = X_b * sqrt(v)``, a
symmetric rank-k update, when every ``v >= 0``) are added to the totals while the block is
still in cache. No temporary of the size of X, or of length N, is made.

Blocks are grouped in fixed *chunks* of rows whose sums are added in chunk order, so the
result does not depend on how many threads ran: with more than one chunk, the chunks run on
up to ``threads`` worker threads, each with single-threaded BLAS (threadpoolctl), which on
this tall-and-thin shape beats one multi-threaded BLAS call (OpenBLAS does not split a
20-column X'X over threads). The BLAS calls go through ``np.dot``, which releases the GIL;
numpy's ``@`` (matmul) holds it, which would run the threads one at a time.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

import numpy as np

from smesurvival.models.families import Family, Scratch

Information = Literal["expected", "observed"]

#: target size in bytes of one row block of X (a block and its scaled copy stay in L2/L3).
BLOCK_BYTES = 1 << 20
#: blocks per chunk: the unit of work of one thread, and of the fixed summation order.
BLOCKS_PER_CHUNK = 16


@dataclass(frozen=True)
class GLMSums:
    """Additive sufficient pieces of one Newton step over a block of rows.

    ``eta_min`` / ``eta_max`` are the range of the linear predictor over the rows (with
    offset), from which the fitted-probability range follows without another pass.
    """

    grad: np.ndarray  # (p,) score  X' (w * u)
    info: np.ndarray  # (p, p) information  X' diag(w * v) X
    loglik: float
    sum_weights: float
    n_rows: int
    eta_min: float = np.inf
    eta_max: float = -np.inf

    def __add__(self, other: GLMSums) -> GLMSums:
        return GLMSums(
            self.grad + other.grad, self.info + other.info, self.loglik + other.loglik,
            self.sum_weights + other.sum_weights, self.n_rows + other.n_rows,
            min(self.eta_min, other.eta_min), max(self.eta_max, other.eta_max),
        )


def block_rows_for(p: int) -> int:
    """Rows per block: about :data:`BLOCK_BYTES` of float64 X, between 1,024 and 65,536."""
    return int(min(65536, max(1024, BLOCK_BYTES // (8 * max(p, 1)))))


def glm_partial_sums(
    X: np.ndarray,
    y: np.ndarray,
    beta: np.ndarray,
    family: Family,
    weights: np.ndarray | None = None,
    offset: np.ndarray | None = None,
    information: Information = "expected",
    *,
    block_rows: int | None = None,
    threads: int | None = None,
) -> GLMSums:
    """Gradient, information and log-likelihood of a binary GLM on a set of rows.

    For rows i with linear predictor ``eta_i = x_i' beta + offset_i``, weight ``w_i`` (1 when
    ``weights`` is None), log-likelihood ``l_i``, score factor ``u_i = dl_i/deta`` and
    information weight ``v_i`` (expected ``mu'^2 / (mu (1 - mu))``, or observed ``-du/deta``):
    ``grad = sum w u x``, ``info = sum w v x x'``, ``loglik = sum w l``.

    One pass over ``X`` in row blocks of ``block_rows`` rows (default :func:`block_rows_for`),
    on up to ``threads`` threads (default: the BLAS thread count, at most the CPUs available;
    1 runs everything in the calling thread). The sums are the same whatever ``threads`` is.
    Threads limit BLAS to one thread each while they run (process-wide, via threadpoolctl):
    do not run two threaded calls at once from different threads of your own.
    """
    X = np.asarray(X)
    if X.dtype != np.float64:
        X = X.astype(np.float64)
    n, p = X.shape
    beta = np.asarray(beta, dtype=np.float64)
    rows = int(block_rows) if block_rows else block_rows_for(p)
    if rows < 1:
        raise ValueError(f"block_rows must be positive; got {block_rows}")
    chunk = rows * BLOCKS_PER_CHUNK
    starts = range(0, n, chunk)

    def run(a: int) -> GLMSums:
        return _range_sums(X, y, beta, family, weights, offset, information, a,
                           min(a + chunk, n), rows)

    if n == 0:
        return GLMSums(np.zeros(p), np.zeros((p, p)), 0.0, 0.0, 0)
    parts = _map_chunks(run, list(starts), threads)
    total = parts[0]
    for part in parts[1:]:
        total = total + part
    return total


def _range_sums(
    X: np.ndarray, y: np.ndarray, beta: np.ndarray, family: Family,
    weights: np.ndarray | None, offset: np.ndarray | None, information: Information,
    start: int, stop: int, rows: int,
) -> GLMSums:
    """The kernel sums of rows ``start:stop``, block by block, in block-sized buffers."""
    p = X.shape[1]
    m_max = min(rows, stop - start)
    eta_buf = np.empty(m_max)
    s_buf = np.empty((m_max, p))
    scratch = Scratch(m_max)
    grad = np.zeros(p)
    info = np.zeros((p, p))
    ll = 0.0
    lo, hi = np.inf, -np.inf
    nonneg = information == "expected" or family.canonical
    for a in range(start, stop, rows):
        b = min(a + rows, stop)
        m = b - a
        xb, yb = X[a:b], y[a:b]
        eta = eta_buf[:m]
        np.dot(xb, beta, out=eta)
        if offset is not None:
            eta += offset[a:b]
        lo, hi = min(lo, float(eta.min())), max(hi, float(eta.max()))
        lli, u, v = family.kernel_pieces(eta, yb, information, scratch)
        if weights is not None:
            wb = weights[a:b]
            ll += float(np.dot(lli, wb))
            u = np.multiply(u, wb, out=u)
            v = np.multiply(v, wb, out=v)
        else:
            ll += float(lli.sum())
        # np.dot, not @: numpy's matmul keeps the GIL during BLAS calls, np.dot releases it
        grad += np.dot(u, xb)
        s = s_buf[:m]
        if nonneg and (weights is None or float(v.min()) >= 0.0):
            np.sqrt(v, out=v)
            np.multiply(xb, v[:, None], out=s)
            info += np.dot(s.T, s)  # symmetric rank-k update (numpy calls syrk for A' A)
        else:  # observed information of a non-canonical link, or negative weights
            np.multiply(xb, v[:, None], out=s)
            info += np.dot(xb.T, s)
    if weights is not None:
        sw = float(weights[start:stop].sum())
    else:
        sw = float(stop - start)
    return GLMSums(grad, info, ll, sw, stop - start, lo, hi)


def _map_chunks(fn: Callable[[int], Any], starts: list[int], threads: int | None) -> list[Any]:
    """``[fn(s) for s in starts]``, on worker threads with one BLAS thread each when useful."""
    k = len(starts)
    n_workers = 1 if k <= 1 else min(k, _default_threads() if threads is None else int(threads))
    if n_workers <= 1:
        return [fn(s) for s in starts]
    with _blas_single_thread(), ThreadPoolExecutor(n_workers, "smesurvival-kernel") as ex:
        return list(ex.map(fn, starts))


def _available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


@lru_cache(maxsize=1)
def _blas_controller() -> Any:
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover - a declared dependency
        return None
    return ThreadpoolController().select(user_api="blas")


def _default_threads() -> int:
    """The BLAS thread count in force (so ``threadpool_limits(1)`` means 1), at most the CPUs."""
    ctl = _blas_controller()
    blas = max([int(lib.num_threads) for lib in ctl.lib_controllers], default=1) if ctl else 1
    return max(1, min(_available_cpus(), blas))


@contextlib.contextmanager
def _blas_single_thread() -> Iterator[None]:
    ctl = _blas_controller()
    if ctl is None or not ctl.lib_controllers:  # pragma: no cover - no BLAS found
        yield
        return
    with ctl.limit(limits=1):
        yield


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


@dataclass(frozen=True)
class FinalSums:
    """What the sandwich and the diagnostics need at the estimate, from one blocked pass."""

    meat: np.ndarray | None  # (p, p) HC meat, or the cluster score sums' cross-product
    n_extreme: int  # fitted probabilities within 1e-8 of 0 or 1


def glm_final_sums(
    X: np.ndarray,
    y: np.ndarray,
    beta: np.ndarray,
    family: Family,
    *,
    row_factor: np.ndarray | None = None,
    cluster_codes: np.ndarray | None = None,
    n_clusters: int = 0,
    meat: bool = True,
    block_rows: int | None = None,
) -> FinalSums:
    """Meat of a sandwich and the count of extreme fitted values, in one pass of row blocks.

    Per-row score ``s_i = u_i x_i`` (unweighted). Without ``cluster_codes`` the meat is
    ``sum c_i s_i s_i'`` with ``c = row_factor`` (1 when None: frequency weights pass ``w``,
    survey weights ``w**2``); with them it is ``S' S`` where row g of S is
    ``sum_{i in g} c_i s_i`` (here ``c = w`` for either kind of weights). ``meat=False`` only
    counts the extreme fitted values.
    """
    n, p = X.shape
    rows = int(block_rows) if block_rows else block_rows_for(p)
    M = np.zeros((p, p)) if meat and cluster_codes is None else None
    G = np.zeros((n_clusters, p)) if meat and cluster_codes is not None else None
    extreme = 0
    for a in range(0, n, rows):
        b = min(a + rows, n)
        xb = X[a:b]
        eta = xb @ beta
        mu = family.mean(eta)
        extreme += int(np.count_nonzero((mu < 1e-8) | (mu > 1.0 - 1e-8)))
        if not meat:
            continue
        _, u, _, _ = family.pieces(eta, y[a:b])
        if row_factor is not None:
            u = u * row_factor[a:b] if G is not None else u * np.sqrt(row_factor[a:b])
        if M is not None:
            s = xb * u[:, None]
            M += np.dot(s.T, s)
        elif G is not None and cluster_codes is not None:
            _add_by_group(G, cluster_codes[a:b], xb * u[:, None])
    if G is not None:
        M = np.dot(G.T, G)
    return FinalSums(M, extreme)


def _add_by_group(G: np.ndarray, codes: np.ndarray, rows: np.ndarray) -> None:
    """``G[codes[i]] += rows[i]``, summing runs of equal codes first (panels come sorted)."""
    if codes.size == 0:
        return
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
    np.add.at(G, codes[starts], np.add.reduceat(rows, starts, axis=0))
