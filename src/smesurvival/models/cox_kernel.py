"""Cox partial-likelihood kernel as matrix products (Efron and Breslow ties, strata, entry).

Rows are never reordered. Each row gets integer ids of the event times bounding its risk
interval, (entry, exit]; per-event-time sums come from one sparse aggregation per iteration,
and the risk-set part of the information matrix is a single weighted Gram matrix
X' diag(v) X built in row blocks, plus a small event-time term M' diag(d/m) M.
Strata are handled by offsetting each stratum's event-time ids, so cumulative sums never
cross a stratum boundary and no Python loop runs over strata, times or rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import sparse

Ties = Literal["efron", "breslow"]
_BLOCK = 65536


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
    agg_exit: sparse.csr_matrix  # (K+1, n) indicator row k_exit[i] -> i (data replaced per call)
    agg_entry: sparse.csr_matrix | None
    agg_death: sparse.csr_matrix  # (K+1, n) deaths only
    ties: str

    @property
    def has_entry(self) -> bool:
        return self.agg_entry is not None


def _indicator(rows_to: np.ndarray, cols: np.ndarray, shape: tuple[int, int]) -> sparse.csr_matrix:
    m = sparse.csr_matrix((np.ones(cols.size), (rows_to, cols)), shape=shape)
    m.sort_indices()
    return m


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
    ev = event > 0
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
    cols = np.arange(n)
    agg_exit = _indicator(k_exit, cols, (K + 1, n))
    # entry ids bound the risk interval from below; with several strata they also cut off the
    # later strata that a global reverse cumulative sum would otherwise include
    need_lower = entry is not None or n_strata > 1
    agg_entry = _indicator(k_entry, cols, (K + 1, n)) if need_lower else None
    agg_death = _indicator(k_exit[death_rows], death_rows, (K + 1, n))
    return RiskSets(
        n, K, k_exit, k_entry, ev.astype(float), w, death_rows, d, m, pair_k, pair_frac,
        pair_wt, np.concatenate(times_all), np.concatenate(strata_all), agg_exit, agg_entry,
        agg_death, ties,
    )


def _revcumsum(a: np.ndarray) -> np.ndarray:
    return np.cumsum(a[::-1], axis=0)[::-1]


def _aggregate(agg: sparse.csr_matrix, values: np.ndarray, X: np.ndarray | None) -> np.ndarray:
    """Per-event-time sums of ``values`` (or of ``values * X`` when X is given)."""
    a = agg.copy()
    a.data = values[a.indices]
    return a @ X if X is not None else np.asarray(a.sum(axis=1)).ravel()


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
    means: np.ndarray  # (P, p) Efron means
    B: np.ndarray  # (K+1,) sum_l wt * frac / den
    loglik: float


def cox_state(rs: RiskSets, X: np.ndarray, beta: np.ndarray, offset: np.ndarray | None = None) -> CoxState:
    """Risk-set sums S0, S1, the Efron means and per-row cumulative weights at ``beta``."""
    eta = X @ beta if X.shape[1] else np.zeros(rs.n)
    if offset is not None:
        eta = eta + offset
    shift = float(eta.max()) if eta.size else 0.0
    expeta = np.exp(eta - shift)
    r = rs.weights * expeta
    s0 = _revcumsum(np.bincount(rs.k_exit, weights=r, minlength=rs.n_times + 1))
    s1 = _revcumsum(_aggregate(rs.agg_exit, r, X))
    if rs.agg_entry is not None:
        s0 = s0 - _revcumsum(np.bincount(rs.k_entry, weights=r, minlength=rs.n_times + 1))
        s1 = s1 - _revcumsum(_aggregate(rs.agg_entry, r, X))
    e0 = np.bincount(rs.k_exit[rs.death_rows], weights=r[rs.death_rows], minlength=rs.n_times + 1)
    e1 = _aggregate(rs.agg_death, r, X)
    k, frac, wt = rs.pair_k, rs.pair_frac, rs.pair_wt
    den = s0[k] - frac * e0[k]
    means = (s1[k] - frac[:, None] * e1[k]) / den[:, None]
    a = np.bincount(k, weights=wt / den, minlength=rs.n_times + 1)
    B = np.bincount(k, weights=wt * frac / den, minlength=rs.n_times + 1)
    C = np.cumsum(a)
    c = C[rs.k_exit] - C[rs.k_entry]
    ll = float((rs.weights * rs.event * eta).sum() - (wt * (np.log(den) + shift)).sum())
    return CoxState(eta, shift, expeta, c, s0, s1, e1, den, means, B, ll)


@dataclass(frozen=True)
class CoxSums:
    """Gradient, information and log partial likelihood at one beta."""

    grad: np.ndarray
    info: np.ndarray
    loglik: float


def cox_partial_sums(rs: RiskSets, X: np.ndarray, beta: np.ndarray) -> CoxSums:
    """One Newton step's pieces, as matrix products (no loop over events)."""
    st = cox_state(rs, X, beta)
    r = rs.weights * st.expeta
    v = r * st.c - rs.event * r * st.B[rs.k_exit]
    grad = X.T @ (rs.weights * rs.event - v)
    info = _gram(X, v) - (st.means * rs.pair_wt[:, None]).T @ st.means
    return CoxSums(grad, (info + info.T) / 2.0, st.loglik)


def _gram(X: np.ndarray, v: np.ndarray) -> np.ndarray:
    """X' diag(v) X in row blocks (bounded extra memory)."""
    p = X.shape[1]
    G = np.zeros((p, p))
    for start in range(0, X.shape[0], _BLOCK):
        xb = X[start:start + _BLOCK]
        G += (xb * v[start:start + _BLOCK, None]).T @ xb
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
    for a in range(p):
        xa = X[:, a] * r
        s2[:, a, :] = _revcumsum(_aggregate(rs.agg_exit, xa, X))
        if rs.agg_entry is not None:
            s2[:, a, :] -= _revcumsum(_aggregate(rs.agg_entry, xa, X))
        e2[:, a, :] = _aggregate(rs.agg_death, xa, X)
    terms = (s2[k] - frac[:, None, None] * e2[k]) / st.den[:, None, None]
    terms -= st.means[:, :, None] * st.means[:, None, :]
    V = np.zeros((K1, p, p))
    np.add.at(V, k, wt[:, None, None] * terms)
    meanbar = np.zeros((K1, p))
    np.add.at(meanbar, k, wt[:, None] * st.means)
    sch = _aggregate(rs.agg_death, rs.weights, X) - meanbar
    return V[1:], sch[1:]
