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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

import numpy as np
from scipy import sparse

Ties = Literal["efron", "breslow"]
_BLOCK = 16384  # rows per Gram block: 16384 x p doubles stay in cache


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
    codes = np.zeros(n, dtype=np.int64) if strata is None else np.unique(strata, return_inverse=True)[1].ravel()
    n_strata = int(codes.max()) + 1 if n else 0
    ev = (event > 0) & (w > 0)  # a zero-weight row (e.g. not drawn in a bootstrap) is no event
    k_exit = np.zeros(n, dtype=np.int64)
    k_entry = np.zeros(n, dtype=np.int64)
    times_all = [np.array([-np.inf])]
    strata_all = [np.array([-1])]
    offset = 0
    for s in range(n_strata):  # a handful of strata: bookkeeping only, no per-row work
        rows = np.flatnonzero(codes == s)
        ut = np.unique(time[rows][ev[rows]])
        k_exit[rows] = offset + np.searchsorted(ut, time[rows], side="right")
        if entry is not None:
            k_entry[rows] = offset + np.searchsorted(ut, entry[rows], side="right")
        else:
            k_entry[rows] = offset
        times_all.append(ut)
        strata_all.append(np.full(ut.size, s))
        offset += ut.size
    K = offset
    death_rows = np.flatnonzero(ev)
    d = np.bincount(k_exit[death_rows], weights=w[death_rows], minlength=K + 1)
    m = np.bincount(k_exit[death_rows], minlength=K + 1).astype(float)
    ks = np.arange(1, K + 1)
    if ties == "efron":
        reps = m[1:].astype(np.int64)
        pair_k = np.repeat(ks, reps)
        starts = np.cumsum(reps) - reps
        ell = np.arange(pair_k.size) - np.repeat(starts, reps)
        pair_frac = ell / m[pair_k]
        pair_wt = d[pair_k] / m[pair_k]
    else:
        pair_k, pair_frac, pair_wt = ks, np.zeros(K), d[1:].copy()
    # entry ids bound the risk interval from below; with several strata they also cut off the
    # later strata that a global reverse cumulative sum would otherwise include
    has_lower = entry is not None or n_strata > 1
    return RiskSets(
        n, K, k_exit, k_entry, ev.astype(float), w, death_rows, d, m, pair_k, pair_frac,
        pair_wt, np.concatenate(times_all), np.concatenate(strata_all), has_lower, ties,
    )


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


@dataclass(frozen=True)
class CoxState:
    """Per-event-time quantities at one beta, shared by the sums, residuals and tests."""

    eta: np.ndarray
    shift: float
    expeta: np.ndarray  # exp(eta - shift), unweighted
    c: np.ndarray  # (n,) sum of A_k over each row's risk interval
    s0: np.ndarray  # (K+1,)
    s1: np.ndarray  # (K+1, p)
    e1: np.ndarray  # (K+1, p)
    den: np.ndarray  # (P,) Efron denominators
    B: np.ndarray  # (K+1,) sum_l wt * frac / den
    a: np.ndarray  # (K+1,) sum_l wt / den
    loglik: float
    pair_k: np.ndarray
    pair_frac: np.ndarray

    @property
    def means(self) -> np.ndarray:
        """(P, p) Efron means (S1 - frac E1) / den, one row per Efron term."""
        k, f = self.pair_k, self.pair_frac
        return (self.s1[k] - f[:, None] * self.e1[k]) / self.den[:, None]


def cox_state(rs: RiskSets, X: np.ndarray, beta: np.ndarray, offset: np.ndarray | None = None,
              Xd: np.ndarray | None = None) -> CoxState:
    """Risk-set sums S0, S1, the Efron means and per-row cumulative weights at ``beta``.

    ``Xd`` may hold ``X[rs.death_rows]`` precomputed (saves one gather per iteration)."""
    eta = X @ beta if X.shape[1] else np.zeros(rs.n)
    if offset is not None:
        eta = eta + offset
    shift = float(eta.max()) if eta.size else 0.0
    expeta = np.subtract(eta, shift)
    np.exp(expeta, out=expeta)
    r = rs.weights * expeta
    K1 = rs.n_times + 1
    s0 = _revcumsum(np.bincount(rs.k_exit, weights=r, minlength=K1))
    s1 = _revcumsum(_per_time(rs.k_exit, r, X, K1, rs.csc_exit))
    if rs.has_lower:
        s0 = s0 - _revcumsum(np.bincount(rs.k_entry, weights=r, minlength=K1))
        s1 = s1 - _revcumsum(_per_time(rs.k_entry, r, X, K1, rs.csc_entry))
    dr = rs.death_rows
    kd = rs.k_death
    rd = r[dr]
    e0 = np.bincount(kd, weights=rd, minlength=K1)
    e1 = _per_time(kd, rd, X[dr] if Xd is None else Xd, K1, rs.csc_death)
    k, frac, wt = rs.pair_k, rs.pair_frac, rs.pair_wt
    den = s0[k] - frac * e0[k]
    a = np.bincount(k, weights=wt / den, minlength=rs.n_times + 1)
    B = np.bincount(k, weights=wt * frac / den, minlength=rs.n_times + 1)
    C = np.cumsum(a)
    c = C[rs.k_exit] - C[rs.k_entry] if rs.has_lower else C[rs.k_exit]
    ll = float(rs.w_death @ eta[dr] - (wt * (np.log(den) + shift)).sum())
    return CoxState(eta, shift, expeta, c, s0, s1, e1, den, B, a, ll, k, frac)


@dataclass(frozen=True)
class CoxSums:
    """Gradient, information and log partial likelihood at one beta."""

    grad: np.ndarray
    info: np.ndarray
    loglik: float
    state: CoxState


def cox_partial_sums(rs: RiskSets, X: np.ndarray, beta: np.ndarray,
                     Xd: np.ndarray | None = None, xw_death: np.ndarray | None = None) -> CoxSums:
    """One Newton step's pieces, as matrix products (no loop over events).

    X is read three times (``X @ beta``, the per-time sums, the Gram matrix); keep it
    row-major (C order) for speed. ``Xd`` may hold ``X[rs.death_rows]`` and ``xw_death``
    the constant ``Xd' w_death`` (both save work per iteration)."""
    st = cox_state(rs, X, beta, Xd=Xd)
    dr = rs.death_rows
    if Xd is None:
        Xd = X[dr]
    r = rs.weights * st.expeta
    rd = r[dr]
    # v_i = r_i (c_i - [death] B_k): the weight of row i in the risk-set second moments
    v = np.multiply(r, st.c, out=r)
    v[dr] -= rd * st.B[rs.k_death]
    grad = cox_gradient(rs, st, Xd, xw_death)
    # sum over Efron terms of wt * mean mean', expanded per event time so no (P, p) array forms:
    # mean = (S1 - f E1) / den  ->  alpha S1 S1' - beta (S1 E1' + E1 S1') + gamma E1 E1'
    K1 = rs.n_times + 1
    q = rs.pair_wt / st.den**2
    alpha = np.bincount(rs.pair_k, weights=q, minlength=K1)
    beta_ = np.bincount(rs.pair_k, weights=q * rs.pair_frac, minlength=K1)
    gamma = np.bincount(rs.pair_k, weights=q * rs.pair_frac**2, minlength=K1)
    se = (st.s1 * beta_[:, None]).T @ st.e1
    mm = (st.s1 * alpha[:, None]).T @ st.s1 - se - se.T + (st.e1 * gamma[:, None]).T @ st.e1
    info = _gram(X, v) - mm
    return CoxSums(grad, (info + info.T) / 2.0, st.loglik, st)


def cox_gradient(rs: RiskSets, st: CoxState, Xd: np.ndarray,
                 xw_death: np.ndarray | None = None) -> np.ndarray:
    """Score from the per-time sums (no pass over X; ``Xd = X[rs.death_rows]``):
    sum_deaths w x - sum_terms wt * mean = sum_deaths w x - sum_k (a_k S1_k - B_k E1_k)."""
    xw = Xd.T @ rs.w_death if xw_death is None else xw_death
    return xw - (st.a @ st.s1 - st.B @ st.e1)


_PARTS = 2  # the Gram's rows are summed in this many fixed halves (same bits on any machine)
_PARALLEL_ROWS = 8 * _BLOCK  # below this, one thread
_POOL: ThreadPoolExecutor | None = None
_CONTROLLER: Any = None  # threadpoolctl's controller, built once


def _gram_part(X: np.ndarray, sq: np.ndarray, start: int, stop: int) -> np.ndarray:
    """sum over rows start..stop of (sqrt(v) x)(sqrt(v) x)' in row blocks (one BLAS thread)."""
    p = X.shape[1]
    G = np.zeros((p, p))
    buf = np.empty((min(_BLOCK, max(stop - start, 1)), p), order="C" if X.flags.c_contiguous else "F")
    for a in range(start, stop, _BLOCK):
        b = min(a + _BLOCK, stop)
        xb = buf[: b - a]
        np.multiply(X[a:b], sq[a:b, None], out=xb)
        G += np.dot(xb.T, xb)  # np.dot releases the GIL for this shape (``@`` does not)
    return G


def _gram(X: np.ndarray, v: np.ndarray) -> np.ndarray:
    """X' diag(v) X for v >= 0, as (sqrt(v) X)'(sqrt(v) X) in row blocks (bounded memory).

    Large inputs are summed in two fixed halves on two threads (each with one BLAS thread:
    many small products parallelise better by rows than inside BLAS); the halves are added in
    a fixed order, so the result does not depend on the machine. ``v`` is overwritten."""
    global _POOL, _CONTROLLER
    n = X.shape[0]
    sq = np.sqrt(np.maximum(v, 0.0, out=v), out=v)
    if n < _PARALLEL_ROWS:
        return _gram_part(X, sq, 0, n)
    mid = (n // _PARTS // _BLOCK) * _BLOCK
    if (os.cpu_count() or 1) < 2:
        return _gram_part(X, sq, 0, mid) + _gram_part(X, sq, mid, n)
    if _POOL is None:
        from threadpoolctl import ThreadpoolController

        _POOL = ThreadPoolExecutor(max_workers=_PARTS, thread_name_prefix="smesurvival-gram")
        _CONTROLLER = ThreadpoolController()
    assert _CONTROLLER is not None
    with _CONTROLLER.limit(limits=1):
        lo = _POOL.submit(_gram_part, X, sq, 0, mid)
        hi = _POOL.submit(_gram_part, X, sq, mid, n)
        return lo.result() + hi.result()


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
