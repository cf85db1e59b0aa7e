"""Cox partial-likelihood kernel as matrix products (Efron and Breslow ties, strata, entry).

Rows are never reordered. Each row gets integer ids of the event times bounding its risk
interval, (entry, exit]; per-event-time sums of r_i x_i are one product of a fixed 0/1
"row -> event time" matrix (CSC, one entry per row, values set to r each iteration) with a
row-major X, which reads X once, in order, like ``bincount`` does per column (same sums, same
order, same bits). The risk-set part of the information matrix is a single weighted Gram matrix
X' diag(v) X built in row blocks (v needs only the scalar per-time sums, so it is known before
X is read), plus a small event-time term. The gradient comes from the per-time sums: no extra
pass over X. Per Newton step X is read three times: X beta, the per-time sums and the Gram.
Strata are handled by offsetting each stratum's event-time ids, so cumulative sums never
cross a stratum boundary and no Python loop runs over strata, times or rows.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal, TypeVar

import numpy as np
from scipy import sparse

Ties = Literal["efron", "breslow"]
_T = TypeVar("_T")
_BLOCK = 16384  # rows per block of the passes over X: 16384 x p doubles stay in cache
_ONES = np.ones(_BLOCK)
try:  # scipy's compiled CSC products, accumulating in place (see _add_per_time)
    from scipy.sparse._sparsetools import csc_matvec as _CSC_MATVEC
    from scipy.sparse._sparsetools import csc_matvecs as _CSC_MATVECS
except ImportError:  # pragma: no cover - a scipy that moved them: the public product is used
    _CSC_MATVEC = _CSC_MATVECS = None


@dataclass(frozen=True)
class RiskSets:
    """Everything about the risk sets that does not depend on the coefficients."""

    n: int
    n_times: int  # event times over all strata (global ids 1..n_times)
    k_exit: np.ndarray  # (n,) global id of the last event time <= exit time
    k_entry: np.ndarray  # (n,) global id of the last event time <= entry time
    event: np.ndarray  # (n,) 0/1
    weights: np.ndarray  # (n,) case weights
    death_rows: np.ndarray  # rows with an event
    d: np.ndarray  # (K+1,) weighted deaths per event time (index 0 unused)
    m: np.ndarray  # (K+1,) number of deaths per event time
    pair_k: np.ndarray  # (P,) event-time id of each Efron term (P = deaths; Breslow: K)
    pair_frac: np.ndarray  # (P,) l / m for the Efron term (0 for Breslow)
    pair_wt: np.ndarray  # (P,) d / m for the Efron term (d for Breslow)
    times: np.ndarray  # (K+1,) event time of each id (index 0: -inf)
    stratum_of_time: np.ndarray  # (K+1,) stratum code of each id (index 0: -1)
    has_lower: bool  # entry times, or several strata: risk intervals have a lower bound
    ties: str

    @cached_property
    def unit_weights(self) -> bool:
        """Every case weight is 1 (then r = exp(eta - shift): one array less per pass)."""
        return bool(np.all(self.weights == 1.0))

    @cached_property
    def k_death(self) -> np.ndarray:
        """(D,) event-time id of each death row."""
        return self.k_exit[self.death_rows]

    @cached_property
    def w_death(self) -> np.ndarray:
        """(D,) case weight of each death row."""
        return self.weights[self.death_rows]

    @cached_property
    def _index_type(self) -> type[np.signedinteger]:
        return np.int32 if self.n < 2**31 - 1 and self.n_times < 2**31 - 1 else np.int64

    @cached_property
    def _indptr(self) -> np.ndarray:
        """0..n: the column pointers of a one-entry-per-row CSC matrix (shared)."""
        return np.arange(self.n + 1, dtype=self._index_type)

    @cached_property
    def csc_exit(self) -> tuple[np.ndarray, np.ndarray]:
        """Index arrays of the 0/1 "row -> exit event time" matrix (CSC, one entry per row)."""
        return self.k_exit.astype(self._index_type), self._indptr

    @cached_property
    def csc_entry(self) -> tuple[np.ndarray, np.ndarray]:
        """The same for the entry ids (only built when risk intervals have a lower bound)."""
        return self.k_entry.astype(self._index_type), self._indptr

    @cached_property
    def csc_death(self) -> tuple[np.ndarray, np.ndarray]:
        """The same for the deaths' ids."""
        return (self.k_death.astype(self._index_type),
                np.arange(self.k_death.size + 1, dtype=self._index_type))


def build_risk_sets(
    time: np.ndarray,
    event: np.ndarray,
    *,
    entry: np.ndarray | None = None,
    strata: np.ndarray | None = None,
    weights: np.ndarray | None = None,
    ties: Ties = "efron",
) -> RiskSets:
    """Index the risk sets once: global event-time ids per stratum, tie counts, aggregations."""
    n = time.size
    time = np.asarray(time, dtype=float)
    event = np.asarray(event, dtype=float)
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=float)
    codes = None if strata is None else np.unique(strata, return_inverse=True)[1].ravel()
    n_strata = (int(codes.max()) + 1 if codes is not None else 1) if n else 0
    ev = (event > 0) & (w > 0)  # a zero-weight row (e.g. not drawn in a bootstrap) is no event
    times_all = [np.array([-np.inf])]
    strata_all = [np.array([-1])]
    offset = 0
    if n_strata == 1:  # no per-stratum bookkeeping: ids straight from the times
        ut = np.unique(time[ev])
        k_exit = _time_ids(ut, time)
        k_entry = _time_ids(ut, np.asarray(entry, dtype=float)) if entry is not None else np.zeros(n, dtype=np.int64)
        times_all.append(ut)
        strata_all.append(np.zeros(ut.size, dtype=np.int64))
        offset = ut.size
    else:
        k_exit = np.zeros(n, dtype=np.int64)
        k_entry = np.zeros(n, dtype=np.int64)
    for s in range(n_strata if n_strata > 1 else 0):  # a handful of strata: bookkeeping only
        rows = np.flatnonzero(codes == s)
        ut = np.unique(time[rows][ev[rows]])
        k_exit[rows] = offset + _time_ids(ut, time[rows])
        if entry is not None:
            k_entry[rows] = offset + _time_ids(ut, entry[rows])
        else:
            k_entry[rows] = offset
        times_all.append(ut)
        strata_all.append(np.full(ut.size, s))
        offset += ut.size
    K = offset
    death_rows = np.flatnonzero(ev)
    d = np.bincount(k_exit[death_rows], weights=w[death_rows], minlength=K + 1)
    m = np.bincount(k_exit[death_rows], minlength=K + 1).astype(float)
    pair_k, pair_frac, pair_wt = tie_terms(d, m, ties)
    # entry ids bound the risk interval from below; with several strata they also cut off the
    # later strata that a global reverse cumulative sum would otherwise include
    has_lower = entry is not None or n_strata > 1
    return RiskSets(
        n, K, k_exit, k_entry, ev.astype(float), w, death_rows, d, m, pair_k, pair_frac,
        pair_wt, np.concatenate(times_all), np.concatenate(strata_all), has_lower, ties,
    )


def tie_terms(d: np.ndarray, m: np.ndarray, ties: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The log-likelihood's terms from the weighted (``d``) and counted (``m``) deaths per
    event time (index 0 unused): Efron's m_k terms l/m_k of time k with weight d_k/m_k, or
    Breslow's one term per time. Returns (time id, fraction, weight) per term."""
    K = d.size - 1
    ks = np.arange(1, K + 1)
    if ties == "efron":
        reps = m[1:].astype(np.int64)
        pair_k = np.repeat(ks, reps)
        starts = np.cumsum(reps) - reps
        ell = np.arange(pair_k.size) - np.repeat(starts, reps)
        return pair_k, ell / m[pair_k], d[pair_k] / m[pair_k]
    return ks, np.zeros(K), d[1:].copy()


def _time_ids(times: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Id of the last event time <= t for each row (0: before the first), in two row halves."""
    parts = _parts(t.size)
    out = np.empty(t.size, dtype=np.int64)

    def ids(_: int, a: int, z: int) -> None:
        out[a:z] = np.searchsorted(times, t[a:z], side="right")

    _each_part(parts, ids)
    return out


def fill_rows(cols: list[np.ndarray], rows: np.ndarray, n_all: int) -> np.ndarray:
    """The row-major design (the kernel's layout) from float columns, on the rows used:
    filled in row blocks (contiguous column reads, writes that stay in cache), the two row
    halves on two threads."""
    X = np.empty((rows.size, len(cols)))
    every = rows.size == n_all

    def fill(_: int, a0: int, z0: int) -> None:
        for a in range(a0, z0, _BLOCK):
            z = min(a + _BLOCK, z0)
            xb, rb = X[a:z], (slice(a, z) if every else rows[a:z])
            for j, col in enumerate(cols):
                xb[:, j] = col[rb]

    _each_part(_parts(rows.size), fill)
    return X


def _revcumsum(a: np.ndarray) -> np.ndarray:
    return np.cumsum(a[::-1], axis=0)[::-1]


def _per_time(ids: np.ndarray, values: np.ndarray, X: np.ndarray, size: int,
              csc: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Per-event-time sums of ``values * X[:, j]`` for every column j: shape (size, p).

    Row-major X: one sparse product (a CSC matrix with one entry per row, ``csc`` holding
    its index arrays when cached) reads X once, in row order. Otherwise one ``bincount`` per
    column. Both add the rows of a time in row order: the results are identical to the bit."""
    n, p = X.shape
    if X.flags.c_contiguous and n:
        if csc is None:
            csc = ids.astype(np.int64), np.arange(n + 1, dtype=np.int64)
        m = sparse.csc_matrix((values, csc[0], csc[1]), shape=(size, n))
        return np.asarray(m @ X)
    out = np.empty((size, p))
    buf = np.empty(n)
    for j in range(p):  # p contiguous passes when X is column-major
        np.multiply(X[:, j], values, out=buf)
        out[:, j] = np.bincount(ids, weights=buf, minlength=size)
    return out


_PARTS = 2  # rows are processed in this many fixed halves (same bits on any machine)
_PARALLEL_ROWS = 2 * _BLOCK  # below this, one part
_POOL: ThreadPoolExecutor | None = None
_CONTROLLER: Any = None  # threadpoolctl's controller, built once


def _parts(n: int) -> tuple[tuple[int, int], ...]:
    """The fixed row ranges of the kernel's passes: two halves split at a block boundary."""
    if n < _PARALLEL_ROWS:
        return ((0, n),)
    mid = (n // _PARTS // _BLOCK) * _BLOCK
    return ((0, mid), (mid, n))


def _each_part(parts: tuple[tuple[int, int], ...], fn: Callable[[int, int, int], _T]) -> list[_T]:
    """``fn(part, start, stop)`` for each row range, the two halves on two threads (numpy's
    loops, ``np.dot`` and scipy's sparse products release the GIL); results in part order."""
    global _POOL
    if len(parts) == 1 or (os.cpu_count() or 1) < 2:
        return [fn(i, a, z) for i, (a, z) in enumerate(parts)]
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=1, thread_name_prefix="smesurvival-cox")
    first = _POOL.submit(fn, 0, *parts[0])
    second = fn(1, *parts[1])
    return [first.result(), second]


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """BLAS on one thread while the kernel splits rows over two (no oversubscription, and
    no idle BLAS workers spinning against the row halves)."""
    global _CONTROLLER
    if _CONTROLLER is None:
        from threadpoolctl import ThreadpoolController

        _CONTROLLER = ThreadpoolController()
    with _CONTROLLER.limit(limits=1):
        yield


@dataclass(frozen=True)
class CoxState:
    """Per-event-time quantities at one beta, shared by the sums, residuals and tests."""

    eta: np.ndarray
    shift: float  # within a few hundred of max(eta) (exp(eta - shift) stays finite)
    eta_max: float
    expeta: np.ndarray  # exp(eta - shift), unweighted
    r: np.ndarray  # weights * expeta (expeta itself with unit weights)
    rx_total: np.ndarray  # (p,) sum over all rows of r x (at beta = 0 with shift 0: w'X)
    C: np.ndarray  # (K+1,) cumulative sum of A_k = sum over Efron terms of wt / den
    s0: np.ndarray  # (K+1,)
    s1: np.ndarray  # (K+1, p)
    e1: np.ndarray  # (K+1, p)
    den: np.ndarray  # (P,) Efron denominators
    B: np.ndarray  # (K+1,) sum_l wt * frac / den
    a: np.ndarray  # (K+1,) sum_l wt / den
    loglik: float
    pair_k: np.ndarray
    pair_frac: np.ndarray
    risk_sets: RiskSets

    @cached_property
    def c(self) -> np.ndarray:
        """(n,) sum of A_k over each row's risk interval."""
        rs = self.risk_sets
        return self.C[rs.k_exit] - self.C[rs.k_entry] if rs.has_lower else self.C[rs.k_exit]

    @property
    def means(self) -> np.ndarray:
        """(P, p) Efron means (S1 - frac E1) / den, one row per Efron term."""
        k, f = self.pair_k, self.pair_frac
        return (self.s1[k] - f[:, None] * self.e1[k]) / self.den[:, None]


_SHIFT_SLACK = 300.0  # a shift within this of max(eta) keeps exp(eta - shift) finite and exact


def cox_state(rs: RiskSets, X: np.ndarray, beta: np.ndarray, offset: np.ndarray | None = None,
              Xd: np.ndarray | None = None, shift_hint: float | None = None) -> CoxState:
    """Risk-set sums S0, S1, the Efron means and per-row cumulative weights at ``beta``.

    The rows are read in two fixed halves on two threads, in blocks that stay in cache: per
    block X beta, exp(eta - shift), the weights r and the per-time sums of r and r x (exits,
    entries and deaths), added block by block and half by half in a fixed order. The shift
    keeps exp finite: any value within a few hundred of max(eta) gives the same sums to the
    last bits, so a Newton fit passes the previous evaluation's maximum (``shift_hint``) and X
    is read once; without a hint, or when the hint is too far from the maximum found, eta is
    computed first and the maximum itself is used. ``Xd`` may hold ``X[rs.death_rows]``."""
    n = X.shape[0]
    parts = _parts(n)
    b = np.ascontiguousarray(beta, dtype=float)
    eta, expeta = np.empty(n), np.empty(n)
    r = expeta if rs.unit_weights else np.empty(n)
    Xd = X[rs.death_rows] if Xd is None else Xd
    if not np.any(b) and offset is None:
        shift_hint = 0.0  # eta is 0: the exact maximum is known
    def run(shift: float, linear: bool) -> tuple[float, list[np.ndarray]]:
        return _passes(rs, X, Xd, b, offset, shift, eta, expeta, r, linear)

    with one_blas_thread():
        if shift_hint is not None and np.isfinite(shift_hint):
            top, tot = run(shift_hint, True)
            top = top if n else shift_hint
            shift = shift_hint
            if not abs(top - shift_hint) <= _SHIFT_SLACK:  # also NaN: recompute with the maximum
                shift = _finite_shift(top)
                tot = run(shift, False)[1]
        else:
            maxima = _each_part(parts, lambda i, a, z: _linear(X, b, offset, eta, a, z))
            top = float(np.max(maxima)) if n else 0.0
            shift = _finite_shift(top)
            tot = run(shift, False)[1]
        return _finish(rs, tot, eta, shift, top, expeta, r)


def _passes(rs: RiskSets, X: np.ndarray, Xd: np.ndarray, b: np.ndarray, offset: np.ndarray | None,
            shift: float, eta: np.ndarray, expeta: np.ndarray, r: np.ndarray,
            linear: bool) -> tuple[float, list[np.ndarray]]:
    """:func:`_pass` over the two row halves on two threads: (max of X beta when ``linear``,
    the per-time sums with the halves added in a fixed order)."""
    got = _each_part(_parts(X.shape[0]), lambda i, a, z: _pass(rs, X, Xd, b, offset, shift, eta,
                                                               expeta, r, a, z, linear))
    top = float(np.max([g[0] for g in got])) if got else -np.inf
    return top, [sum(g[1:], g[0]) for g in zip(*[g[1:] for g in got], strict=True)]


def _finite_shift(top: float) -> float:
    """The maximum of eta as a shift (NaN stays NaN: the fit then sees a NaN likelihood)."""
    return top if np.isfinite(top) or np.isnan(top) else 0.0


def _linear(X: np.ndarray, b: np.ndarray, offset: np.ndarray | None, eta: np.ndarray,
            a: int, z: int) -> float:
    """eta = X beta (+ offset) on rows a..z; returns its maximum."""
    e = eta[a:z]
    if X.shape[1]:
        np.dot(X[a:z], b, out=e)
    else:
        e.fill(0.0)
    if offset is not None:
        e += offset[a:z]
    return float(e.max()) if z > a else -np.inf


def _pass(rs: RiskSets, X: np.ndarray, Xd: np.ndarray, b: np.ndarray, offset: np.ndarray | None,
          shift: float, eta: np.ndarray, expeta: np.ndarray, r: np.ndarray, a0: int, z0: int,
          linear: bool) -> tuple[Any, ...]:
    """Rows a0..z0 in cache-sized blocks: (eta if ``linear``,) exp, r and the per-time sums.

    Returns (max eta, exit S0, exit S1[, entry S0, entry S1], death E0, death E1) for the rows."""
    K1 = rs.n_times + 1
    p = X.shape[1]
    dr = rs.death_rows
    cuts = np.searchsorted(dr, list(range(a0, z0, _BLOCK)) + [z0])
    sums = [np.zeros(K1) if j % 2 == 0 else np.zeros((K1, p)) for j in range(6 if rs.has_lower else 4)]
    top = -np.inf
    ids = [(rs.k_exit, rs.csc_exit[0])] + ([(rs.k_entry, rs.csc_entry[0])] if rs.has_lower else [])
    for j, a in enumerate(range(a0, z0, _BLOCK)):
        z = min(a + _BLOCK, z0)
        if linear:
            top = float(np.maximum(top, _linear(X, b, offset, eta, a, z)))  # NaN propagates
        ex = expeta[a:z]
        np.exp(np.subtract(eta[a:z], shift, out=ex), out=ex)
        rr = r[a:z]
        if r is not expeta:
            np.multiply(rs.weights[a:z], ex, out=rr)
        ip = rs._indptr
        for t, (k, kc) in enumerate(ids):
            _add_per_time(sums[2 * t], sums[2 * t + 1], k[a:z], kc[a:z], ip, rr, X[a:z])
        da, dz = int(cuts[j]), int(cuts[j + 1])
        if dz > da:
            _add_per_time(sums[-2], sums[-1], rs.k_death[da:dz], rs.csc_death[0][da:dz], ip,
                          r[dr[da:dz]], Xd[da:dz])
    return (top, *sums)


def _add_per_time(s0: np.ndarray, s1: np.ndarray, ids: np.ndarray, ids_csc: np.ndarray,
                  indptr: np.ndarray, values: np.ndarray, X: np.ndarray) -> None:
    """s0[k] += sum of ``values`` and s1[k] += sum of ``values * x`` over the rows with id k.

    scipy's compiled CSC products (the kernels behind ``csc_matrix @ X``) add into s0 and s1
    in place without the GIL, so the two row halves run in parallel; the public sparse
    product (a new matrix per block, the GIL held while it is built) is the fallback."""
    m = values.size
    if _CSC_MATVECS is not None and X.flags.c_contiguous and s1.flags.c_contiguous:
        ones = _ONES if _ONES.size >= m else np.ones(m)
        _CSC_MATVECS(s1.shape[0], m, X.shape[1], indptr, ids_csc, values, X.ravel(), s1.ravel())
        _CSC_MATVEC(s0.size, m, indptr, ids_csc, values, ones, s0)
        return
    s0 += np.bincount(ids, weights=values, minlength=s0.size)
    s1 += _per_time(ids, values, X, s0.size, (ids_csc, indptr[: m + 1]))


@dataclass(frozen=True)
class RiskTotals:
    """S0, S1 over the risk sets, the Efron denominators and the per-time weights a, B and
    their cumulative sum C, from per-time sums of any set of rows (all at once, two halves,
    or batches added up)."""

    s0: np.ndarray
    s1: np.ndarray
    e1: np.ndarray
    den: np.ndarray
    a: np.ndarray
    B: np.ndarray
    C: np.ndarray


def risk_totals(rs: RiskSets, tot: list[np.ndarray]) -> RiskTotals:
    """From the added per-time sums [exit S0, exit S1, (entry S0, entry S1,) death E0, E1]."""
    K1 = rs.n_times + 1
    s0, s1 = _revcumsum(tot[0]), _revcumsum(tot[1])
    if rs.has_lower:
        s0, s1 = s0 - _revcumsum(tot[2]), s1 - _revcumsum(tot[3])
    e0, e1 = tot[-2], tot[-1]
    k, frac, wt = rs.pair_k, rs.pair_frac, rs.pair_wt
    den = s0[k] - frac * e0[k]
    a = np.bincount(k, weights=wt / den, minlength=K1)
    B = np.bincount(k, weights=wt * frac / den, minlength=K1)
    return RiskTotals(s0, s1, e1, den, a, B, np.cumsum(a))


def efron_second_moments(rs: RiskSets, rt: RiskTotals) -> np.ndarray:
    """sum over Efron terms of wt * mean mean', expanded per event time so no (P, p) array
    forms: mean = (S1 - f E1) / den -> alpha S1 S1' - beta (S1 E1' + E1 S1') + gamma E1 E1'."""
    K1 = rs.n_times + 1
    q = rs.pair_wt / rt.den**2
    alpha = np.bincount(rs.pair_k, weights=q, minlength=K1)
    beta_ = np.bincount(rs.pair_k, weights=q * rs.pair_frac, minlength=K1)
    gamma = np.bincount(rs.pair_k, weights=q * rs.pair_frac**2, minlength=K1)
    se = (rt.s1 * beta_[:, None]).T @ rt.e1
    out: np.ndarray = (rt.s1 * alpha[:, None]).T @ rt.s1 - se - se.T + (rt.e1 * gamma[:, None]).T @ rt.e1
    return out


def _finish(rs: RiskSets, tot: list[np.ndarray], eta: np.ndarray, shift: float, top: float,
            expeta: np.ndarray, r: np.ndarray) -> CoxState:
    """From the rows' per-time sums: S0, S1, the Efron denominators, the cumulative weights
    and the log partial likelihood."""
    rt = risk_totals(rs, tot)
    ll = float(rs.w_death @ eta[rs.death_rows] - (rs.pair_wt * (np.log(rt.den) + shift)).sum())
    return CoxState(eta, shift, top, expeta, r, tot[1].sum(axis=0), rt.C, rt.s0, rt.s1, rt.e1,
                    rt.den, rt.B, rt.a, ll, rs.pair_k, rs.pair_frac, rs)


def time_sums(rs: RiskSets, X: np.ndarray, beta: np.ndarray, shift: float,
              Xd: np.ndarray | None = None) -> tuple[float, list[np.ndarray]]:
    """One pass over a set of rows (e.g. a batch of a streamed file, with global event-time
    ids): the max of X beta and its per-time sums [exit S0, S1, (entry S0, S1,) death E0, E1]
    at ``shift``. Sums of several row sets add up. ``Xd`` may hold ``X[rs.death_rows]``."""
    n = X.shape[0]
    expeta = np.empty(n)
    r = expeta if rs.unit_weights else np.empty(n)
    with one_blas_thread():
        return _passes(rs, X, X[rs.death_rows] if Xd is None else Xd,
                       np.ascontiguousarray(beta, dtype=float), None, shift, np.empty(n), expeta, r,
                       True)


def risk_gram(rs: RiskSets, X: np.ndarray, C: np.ndarray, B: np.ndarray, r: np.ndarray) -> np.ndarray:
    """X' diag(v) X, v_i = r_i (C[exit] - C[entry] - [death] B_k): the risk-set part of the
    information for a set of rows, given the whole data's cumulative weights C and B."""
    with one_blas_thread():
        return _risk_gram(rs, X, C, B, r)


@dataclass(frozen=True)
class CoxSums:
    """Gradient, information and log partial likelihood at one beta."""

    grad: np.ndarray
    info: np.ndarray
    loglik: float
    state: CoxState


def cox_partial_sums(rs: RiskSets, X: np.ndarray, beta: np.ndarray,
                     Xd: np.ndarray | None = None, xw_death: np.ndarray | None = None,
                     shift_hint: float | None = None) -> CoxSums:
    """One Newton step's pieces, as matrix products (no loop over events).

    X is read twice (X beta with the per-time sums, then the Gram matrix; three times without
    ``shift_hint``, see :func:`cox_state`), each pass in two row halves on two threads; keep X
    row-major (C order) for speed. ``Xd`` may hold ``X[rs.death_rows]`` and ``xw_death`` the
    constant ``Xd' w_death`` (both save work per iteration)."""
    with one_blas_thread():
        return _partial_sums(rs, X, beta, X[rs.death_rows] if Xd is None else Xd, xw_death,
                             shift_hint)


def _partial_sums(rs: RiskSets, X: np.ndarray, beta: np.ndarray, Xd: np.ndarray,
                  xw_death: np.ndarray | None, shift_hint: float | None) -> CoxSums:
    st = cox_state(rs, X, beta, Xd=Xd, shift_hint=shift_hint)
    grad = cox_gradient(rs, st, Xd, xw_death)
    mm = efron_second_moments(rs, RiskTotals(st.s0, st.s1, st.e1, st.den, st.a, st.B, st.C))
    info = _risk_gram(rs, X, st.C, st.B, st.r) - mm
    return CoxSums(grad, (info + info.T) / 2.0, st.loglik, st)


def cox_gradient(rs: RiskSets, st: CoxState, Xd: np.ndarray,
                 xw_death: np.ndarray | None = None) -> np.ndarray:
    """Score from the per-time sums (no pass over X; ``Xd = X[rs.death_rows]``):
    sum_deaths w x - sum_terms wt * mean = sum_deaths w x - sum_k (a_k S1_k - B_k E1_k)."""
    xw = Xd.T @ rs.w_death if xw_death is None else xw_death
    return xw - (st.a @ st.s1 - st.B @ st.e1)


def _risk_gram(rs: RiskSets, X: np.ndarray, C: np.ndarray, B: np.ndarray, r: np.ndarray) -> np.ndarray:
    """X' diag(v) X with v_i = r_i (c_i - [death] B_k), the risk-set second moments, in two
    fixed row halves on two threads; v is formed per half, no n-length temporary survives."""
    dr = rs.death_rows
    parts = _parts(X.shape[0])
    cuts = np.searchsorted(dr, [a for a, _ in parts] + [X.shape[0]])

    def half(i: int, a: int, z: int) -> np.ndarray:
        v = C[rs.k_exit[a:z]]
        if rs.has_lower:
            v -= C[rs.k_entry[a:z]]
        v *= r[a:z]
        d = dr[int(cuts[i]):int(cuts[i + 1])]
        v[d - a] -= r[d] * B[rs.k_exit[d]]
        return _gram_part(X, np.sqrt(np.maximum(v, 0.0, out=v), out=v), a, z)

    grams = _each_part(parts, half)
    return grams[0] + grams[1] if len(grams) > 1 else grams[0]


def _gram_part(X: np.ndarray, sq: np.ndarray, start: int, stop: int) -> np.ndarray:
    """sum over rows start..stop of (sq x)(sq x)' in row blocks (``sq`` holds the rows
    start..stop only; one BLAS thread): X' diag(sq^2) X without an n x p temporary."""
    p = X.shape[1]
    G = np.zeros((p, p))
    buf = np.empty((min(_BLOCK, max(stop - start, 1)), p), order="C" if X.flags.c_contiguous else "F")
    for a in range(start, stop, _BLOCK):
        b = min(a + _BLOCK, stop)
        xb = buf[: b - a]
        np.multiply(X[a:b], sq[a - start:b - start, None], out=xb)
        G += np.dot(xb.T, xb)  # np.dot releases the GIL for this shape (``@`` does not)
    return G


def cox_score_residuals(rs: RiskSets, X: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """Per-row score residuals L_i (unweighted), sum_i w_i L_i = score; for Lin–Wei sandwiches."""
    st = cox_state(rs, X, beta)
    k, frac, wt = rs.pair_k, rs.pair_frac, rs.pair_wt
    K1 = rs.n_times + 1
    p = X.shape[1]
    d1 = np.zeros((K1, p))
    b1 = np.zeros((K1, p))
    abar = np.zeros((K1, p))
    for j in range(p):  # p columns: small loop
        d1[:, j] = np.bincount(k, weights=wt * st.means[:, j] / st.den, minlength=K1)
        b1[:, j] = np.bincount(k, weights=wt * frac * st.means[:, j] / st.den, minlength=K1)
        abar[:, j] = np.bincount(k, weights=st.means[:, j], minlength=K1)
    cnt = np.bincount(k, minlength=K1).astype(float)
    abar = abar / np.maximum(cnt, 1.0)[:, None]
    D1 = np.cumsum(d1, axis=0)
    ee = st.expeta[:, None]
    resid = -ee * (X * st.c[:, None] - (D1[rs.k_exit] - D1[rs.k_entry]))
    dr = rs.death_rows
    kd = rs.k_exit[dr]
    resid[dr] += (X[dr] - abar[kd]) + ee[dr] * (X[dr] * st.B[kd][:, None] - b1[kd])
    return resid


def cox_event_information(rs: RiskSets, X: np.ndarray, beta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-event-time information blocks V_k (K, p, p) and Schoenfeld sums (K, p).

    Used by the proportional-hazards test; V_k sums the Efron terms of event time k and the
    second array is sum over deaths at k of w_i (x_i - mean), the weighted Schoenfeld residuals.
    """
    st = cox_state(rs, X, beta)
    k, frac, wt = rs.pair_k, rs.pair_frac, rs.pair_wt
    K1 = rs.n_times + 1
    p = X.shape[1]
    r = rs.weights * st.expeta
    # S2_k - frac E2_k over the Efron terms: risk-set second moments per event time
    s2 = np.zeros((K1, p, p))
    e2 = np.zeros((K1, p, p))
    dr = rs.death_rows
    for a in range(p):
        xa = X[:, a] * r
        s2[:, a, :] = _revcumsum(_per_time(rs.k_exit, xa, X, K1))
        if rs.has_lower:
            s2[:, a, :] -= _revcumsum(_per_time(rs.k_entry, xa, X, K1))
        e2[:, a, :] = _per_time(rs.k_exit[dr], xa[dr], X[dr], K1)
    terms = (s2[k] - frac[:, None, None] * e2[k]) / st.den[:, None, None]
    terms -= st.means[:, :, None] * st.means[:, None, :]
    V = np.zeros((K1, p, p))
    np.add.at(V, k, wt[:, None, None] * terms)
    meanbar = np.zeros((K1, p))
    np.add.at(meanbar, k, wt[:, None] * st.means)
    sch = _per_time(rs.k_exit[dr], rs.weights[dr], X[dr], K1) - meanbar
    return V[1:], sch[1:]
