"""Checks of a fitted Cox model: Harrell's concordance and the proportional-hazards test.

The PH test is the score test of survival >= 3.0's ``cox.zph``: for each covariate, add
x * g(t) (g the centred time transform, by default 1 - KM(t-)) and test its coefficient at 0
given the fitted model; the global test adds all of them at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats

from smesurvival.errors import UsageError
from smesurvival.models.cox_kernel import RiskSets, cox_event_information
from smesurvival.models.km import kaplan_meier

Transform = Literal["km", "identity", "rank", "log"]


@dataclass(frozen=True)
class Concordance:
    """Harrell's C from pair counts (as R's ``concordance``, timewt = 'n')."""

    c_index: float
    concordant: float
    discordant: float
    tied_x: float
    tied_y: float


def concordance(time: np.ndarray, event: np.ndarray, eta: np.ndarray,
                strata: np.ndarray | None = None, weights: np.ndarray | None = None, *,
                time_ids: np.ndarray | None = None) -> Concordance:
    """A pair is comparable when the shorter time is an event (a censoring at the same time
    counts as longer); concordant when that subject has the larger linear predictor.

    ``time_ids`` may give each row's id of the last event time at or before its time
    (``RiskSets.k_exit``, ids increasing with time within a stratum) to skip re-indexing."""
    n = time.size
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=float)
    ev = np.asarray(event, dtype=float) > 0
    eta = np.asarray(eta, dtype=float)
    if time_ids is None:
        time = np.asarray(time, dtype=float)
    tot = np.zeros(4)
    groups: list[np.ndarray | None]
    if strata is None:
        groups = [None]
    else:
        codes = np.unique(strata, return_inverse=True)[1].ravel()
        groups = [np.flatnonzero(codes == s) for s in range(int(codes.max()) + 1 if n else 0)]
    for rows in groups:
        e_s = ev if rows is None else ev[rows]
        if not e_s.any():
            continue
        if time_ids is None:
            t_s = time if rows is None else time[rows]
            k = np.searchsorted(np.unique(t_s[e_s]), t_s, side="right")
        else:
            k = time_ids if rows is None else time_ids[rows]
            k = k - (int(k[e_s].min()) - 1)
        tot += _concordance_counts(k, e_s, eta if rows is None else eta[rows],
                                   w if rows is None else w[rows], weights is None)
    conc, disc, tx, ty = tot
    denom = conc + disc + tx
    return Concordance(float((conc + tx / 2) / denom) if denom else float("nan"), conc, disc, tx, ty)


def _concordance_counts(k: np.ndarray, ev: np.ndarray, eta: np.ndarray, w: np.ndarray,
                        unit: bool) -> np.ndarray:
    """(concordant, discordant, tied_x, tied_y), without a loop over times or rows.

    ``k``: the id (1..K) of the last event time at or before each row's time (0 before the
    first). Each row gets a key: 2k for a death, 2k+1 for a censoring, so death i and row j
    are comparable exactly when key_j > key_i. Rows above every death key (censored at or
    after the last event time: all of administrative censoring) are comparable with every
    death: one sort and a search of the (sorted) deaths. For the other rows, ordered by
    (eta, key), the concordant weight of death i is the weight of earlier rows with a larger
    key -- a dominance count done for all deaths at once on a wavelet matrix over the key
    bits (one vectorised pass per bit). Discordant = comparable - concordant - tied."""
    K = int(k[ev].max())
    key = 2 * k + (~ev)
    wd = w[ev]
    kd = k[ev]
    sw = np.bincount(kd, weights=wd, minlength=K + 1)
    ty = float(((sw * sw - np.bincount(kd, weights=wd * wd, minlength=K + 1)) / 2).sum())
    above = w.sum() - np.cumsum(np.bincount(key, weights=w, minlength=2 * K + 2))
    comparable = above[key[ev]]
    eta_d = eta[ev]
    less = np.zeros(eta_d.size)
    tied = np.zeros(eta_d.size)
    top = key > 2 * K
    if top.any():
        et = eta[top]
        if unit:
            srt = np.sort(et)
            cum = np.arange(srt.size + 1, dtype=float)
        else:
            o = np.argsort(et)
            srt = et[o]
            cum = np.r_[0.0, np.cumsum(w[top][o])]
        od = np.argsort(eta_d)  # sorted queries: the search walks srt once
        qs = eta_d[od]
        lo = cum[np.searchsorted(srt, qs, side="left")]
        less[od] = lo
        tied[od] = cum[np.searchsorted(srt, qs, side="right")] - lo
    rest = np.flatnonzero(~top)  # holds every death
    kr, er, wr = key[rest], eta[rest], w[rest]
    o = np.lexsort((kr, er))
    kr, er, wr = kr[o], er[o], wr[o]
    back = np.empty(rest.size, dtype=np.int64)  # position in (eta, key) order of each rest row
    back[o] = np.arange(rest.size)
    pos_of_death = back[np.flatnonzero(ev[rest])]  # deaths in row order, as eta_d
    less += _smaller_before(int(kr.max()) - kr, wr, pos_of_death)
    if er.size > 1 and (er[1:] == er[:-1]).any():  # tied linear predictors
        cw = np.cumsum(wr)
        run_end = _block_end(er[1:] != er[:-1])
        blk_end = _block_end((er[1:] != er[:-1]) | (kr[1:] != kr[:-1]))
        tied += (cw[run_end] - cw[blk_end])[pos_of_death]
    conc = float(wd @ less)
    tx = float(wd @ tied)
    disc = float(wd @ (comparable - less - tied))
    return np.array([conc, disc, tx, ty])


def _block_end(change: np.ndarray) -> np.ndarray:
    """For a sequence whose neighbours differ where ``change`` (length m-1) is true: the
    index of the last element of each element's block."""
    m = change.size + 1
    ends = np.r_[np.flatnonzero(change), m - 1]
    return np.repeat(ends, np.diff(np.r_[-1, ends]))


def _smaller_before(v: np.ndarray, w: np.ndarray, q: np.ndarray) -> np.ndarray:
    """For each position i in ``q``: the sum of w_j over j < i with v_j < v_i (v >= 0 ints).

    A wavelet matrix, most significant bit first: the elements before i with the same
    higher bits as v_i lie in one range [lo, hi); where v_i has a 1 bit, the zeros in that
    range are smaller; then the range follows v_i's bit into the next, stably partitioned,
    level. One vectorised pass per bit; no sort beyond a stable partition by one bit."""
    out = np.zeros(q.size)
    if v.size == 0 or q.size == 0:
        return out
    qv = v[q]
    lo = np.zeros(q.size, dtype=np.int64)
    hi = q.astype(np.int64)
    for b in range(int(v.max()).bit_length() - 1, -1, -1):
        bit = ((v >> b) & 1).astype(bool)
        zc = np.empty(v.size + 1, dtype=np.int64)
        zc[0] = 0
        np.cumsum(~bit, out=zc[1:])
        zw = np.empty(v.size + 1)
        zw[0] = 0.0
        np.cumsum(np.where(bit, 0.0, w), out=zw[1:])
        one = ((qv >> b) & 1).astype(bool)
        out += np.where(one, zw[hi] - zw[lo], 0.0)
        nz = zc[-1]
        zlo, zhi = zc[lo], zc[hi]
        lo = np.where(one, nz + lo - zlo, zlo)
        hi = np.where(one, nz + hi - zhi, zhi)
        order = np.argsort(bit, kind="stable")
        v, w = v[order], w[order]
    return out


@dataclass(frozen=True)
class PHTest:
    """Per-covariate and global proportional-hazards score tests."""

    terms: tuple[str, ...]
    chisq: np.ndarray
    df: np.ndarray
    p_value: np.ndarray
    global_chisq: float
    global_df: int
    global_p: float
    transform: str

    def failing(self, alpha: float = 0.05) -> tuple[str, ...]:
        return tuple(t for t, p in zip(self.terms, self.p_value, strict=True) if p < alpha)


def ph_test(rs: RiskSets, X: np.ndarray, beta: np.ndarray, terms: tuple[str, ...],
            time: np.ndarray, event: np.ndarray, transform: Transform = "km") -> PHTest:
    """cox.zph's score tests (survival >= 3.0) for a model fitted on the risk sets ``rs``."""
    V, sch = cox_event_information(rs, X, beta)
    tk = rs.times[1:]
    if transform == "km":
        km = kaplan_meier(time, event)
        idx = np.searchsorted(km.time, tk, side="left")  # left-continuous KM at each event time
        g = 1.0 - np.r_[1.0, km.survival][idx]
    elif transform == "identity":
        g = tk.astype(float)
    elif transform == "log":
        g = np.log(tk)
    elif transform == "rank":
        from scipy.stats import rankdata

        ev_times = time[event > 0]
        g = np.interp(tk, np.sort(ev_times), rankdata(np.sort(ev_times)))
    else:
        raise UsageError(f"transform must be km, identity, rank or log; got '{transform}'")
    m = rs.m[1:]
    g = g - (g * m).sum() / m.sum()  # centred over the events (one value per death)
    p = X.shape[1]
    i_bb = V.sum(axis=0)
    i_bg = np.einsum("k,kij->ij", g, V)
    i_gg = np.einsum("k,kij->ij", g * g, V)
    u = g @ sch
    full = np.block([[i_bb, i_bg], [i_bg.T, i_gg]])
    chisq = np.empty(p)
    for j in range(p):
        sel = list(range(p)) + [p + j]
        inv = np.linalg.inv(full[np.ix_(sel, sel)])
        chisq[j] = u[j] ** 2 * inv[-1, -1]
    uu = np.r_[np.zeros(p), u]
    glob = float(uu @ np.linalg.solve(full, uu))
    df = np.ones(p)
    return PHTest(terms, chisq, df, stats.chi2.sf(chisq, 1), glob, p, float(stats.chi2.sf(glob, p)), transform)


def cox_ph_test(result: object, data: object, transform: Transform = "km") -> PHTest:
    """The proportional-hazards test for a Cox FitResult, re-encoding the data it was fitted on."""
    import pandas as pd

    from smesurvival.models.cox import risk_sets_for
    from smesurvival.models.result import FitResult

    if not isinstance(result, FitResult) or result.model != "cox" or not isinstance(data, pd.DataFrame):
        raise UsageError("cox_ph_test needs a Cox FitResult and the DataFrame it was fitted on")
    rs, X, time, event = risk_sets_for(result, data)
    return ph_test(rs, X, result.params, result.terms, time, event, transform)
