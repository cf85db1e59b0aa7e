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
                strata: np.ndarray | None = None, weights: np.ndarray | None = None) -> Concordance:
    """A pair is comparable when the shorter time is an event (a censoring at the same time
    counts as longer); concordant when that subject has the larger linear predictor."""
    n = time.size
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=float)
    codes = np.zeros(n, dtype=np.int64) if strata is None else np.unique(strata, return_inverse=True)[1].ravel()
    tot = np.zeros(5)
    for s in range(int(codes.max()) + 1 if n else 0):
        rows = np.flatnonzero(codes == s)
        tot += _concordance_counts(time[rows], event[rows], eta[rows], w[rows])
    conc, disc, tx, ty, _ = tot
    denom = conc + disc + tx
    return Concordance(float((conc + tx / 2) / denom) if denom else float("nan"), conc, disc, tx, ty)


def _concordance_counts(time: np.ndarray, event: np.ndarray, eta: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Pair counts with a Fenwick tree over the ranks of eta, visiting times from last to first."""
    ranks_u, rank = np.unique(eta, return_inverse=True)
    size = ranks_u.size
    tree = np.zeros(size + 1)

    def add(idx: np.ndarray, val: np.ndarray) -> None:
        i = idx + 1
        while i.size:
            np.add.at(tree, i, val)
            i = i + (i & -i)
            keep = i <= size
            i, val = i[keep], val[keep]

    def prefix(idx: np.ndarray) -> np.ndarray:  # sum of weights with rank < idx
        out = np.zeros(idx.size)
        i = idx.copy()
        while True:
            live = i > 0
            if not live.any():
                return out
            out[live] += tree[i[live]]
            i[live] -= i[live] & -i[live]

    order = np.lexsort((event, -time))  # time descending; censored before events at a time
    t_sorted = time[order]
    bounds = np.flatnonzero(np.r_[True, t_sorted[1:] != t_sorted[:-1], True])
    conc = disc = tx = ty = 0.0
    total = 0.0
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        grp = order[a:b]
        cens = grp[event[grp] == 0]
        dead = grp[event[grp] > 0]
        if cens.size:
            add(rank[cens], w[cens])
            total += w[cens].sum()
        if dead.size:
            below = prefix(rank[dead])
            upto = prefix(rank[dead] + 1)
            wd = w[dead]
            conc += float((wd * below).sum())
            tx += float((wd * (upto - below)).sum())
            disc += float((wd * (total - upto)).sum())
            sw = wd.sum()
            ty += float((sw * sw - (wd * wd).sum()) / 2)
            add(rank[dead], wd)
            total += sw
    return np.array([conc, disc, tx, ty, 0.0])


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
