"""Mediation in binary-outcome models: KHB decomposition, product of coefficients, exact OLS.

The study's path is R&D intensity (key) -> export ratio (mediator) -> survival (outcome).

**KHB** (Karlson, Holm & Breen 2012). With key x, mediators z_j and controls c:

* mediator equations (OLS, one per mediator): z_j = c0_j + a_j x + d_j'c + r_j;
* full model:    F^-1 P(y=1) = b0 + b_F x + sum_j t_j z_j + g'c           -> direct = b_F;
* KHB reduced:   F^-1 P(y=1) = b0 + b_R x + sum_j t_j r_j + g'c           -> total = b_R.

Replacing z_j by its residual r_j is a linear reparametrisation of the full model (same fit,
same scale), so b_R = b_F + sum_j t_j a_j exactly: indirect = total - direct = sum_j t_j a_j.
The naive reduced model (x and c only) is on a different scale; rescaling factor =
total / naive. Confounding ratio = total / direct; percent mediated = 100 indirect / total.

Standard errors are delta-method on the stacked parameter vector (full, mediator equations,
naive). KHB's formula for the indirect effect is Var(sum t_j a_j) = a'V_t a + t'V_a t, with V_t
the covariance of the full model's mediator coefficients and V_a the covariance of the a_j
(cov(a_j, a_l) = s_jl [(X'X)^-1]_xx, s_jl the residual covariance, as in SUR); full-model and
mediator-equation estimates are independent (their cross-covariance is asymptotically zero
because the outcome score has mean zero given x, z, c). With ``vcov="classical"`` we use exactly
this; with robust kinds (hc0, hc1, cluster) every block, cross blocks included, is the stacked
sandwich B_i M_ij B_j (small-sample factors sqrt(f_i f_j)). Covariances involving the naive
model are always empirical (HC0-type cross products) under ``classical``. The total's SE thus
includes the mediator equations' uncertainty; ``total_se_conditional`` is the SE from the KHB
reduced fit alone, treating residuals as fixed (what Stata's ``khb`` prints for "Reduced").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeAlias

import numpy as np
import pandas as pd
from scipy import stats

from smesurvival.errors import UsageError
from smesurvival.inference.vcov import (
    VCOV_TYPES,
    VcovType,
    check_choice,
    cluster_codes,
    sandwich_vcov,
)
from smesurvival.models.design import build_design, parse_formula
from smesurvival.models.families import FAMILIES
from smesurvival.models.fit import BINARY_MODELS, BinaryModel, fit
from smesurvival.models.kernels import glm_row_scores
from smesurvival.models.result import FitResult

Weights: TypeAlias = str | np.ndarray | pd.Series | None
_W = "_mediation_weight_"
FRAME_COLUMNS = ["term", "estimate", "std_error", "statistic", "p_value", "conf_low", "conf_high"]


@dataclass(frozen=True)
class OLSResult:
    """An ordinary (frequency-weighted) least-squares fit with its covariance."""

    terms: tuple[str, ...]
    params: np.ndarray
    vcov: np.ndarray
    resid: np.ndarray = field(repr=False)
    nobs: int
    df_resid: float
    sigma2: float
    vcov_type: str
    bread: np.ndarray = field(repr=False)  # (X'WX)^-1
    formula: str = ""

    @property
    def se(self) -> np.ndarray:
        return np.sqrt(np.diag(self.vcov))

    def index(self, term: str) -> int:
        """Position of a term, with the model's terms in the error."""
        if term not in self.terms:
            raise UsageError(f"term '{term}' is not in the model; its terms are: {', '.join(self.terms)}")
        return self.terms.index(term)

    def tidy(self, conf_level: float = 0.95) -> pd.DataFrame:
        """One row per term with t statistics on ``df_resid`` degrees of freedom."""
        return _frame(list(self.terms), self.params, self.se, conf_level, df=self.df_resid)


def ols_fit(
    X: np.ndarray, y: np.ndarray, terms: Sequence[str], *, vcov: VcovType = "classical",
    weights: np.ndarray | None = None, cluster: np.ndarray | None = None, formula: str = "",
) -> OLSResult:
    """Exact OLS by QR: classical s^2 (X'WX)^-1, or the HC0/HC1/cluster sandwich of ``vcov.py``.

    Weights are frequency weights (n = sum of weights), so integer weights equal replicated rows.
    """
    check_choice(vcov, VCOV_TYPES, "vcov")
    X, y = np.asarray(X, dtype=float), np.asarray(y, dtype=float)
    sw = np.ones(len(y)) if weights is None else np.asarray(weights, dtype=float)
    rw = np.sqrt(sw)
    q, r = np.linalg.qr(X * rw[:, None])
    if np.min(np.abs(np.diag(r))) < 1e-10 * max(1.0, np.max(np.abs(np.diag(r)))):
        raise UsageError(f"the OLS design ({', '.join(terms)}) is rank deficient (collinear terms)")
    beta = np.linalg.solve(r, q.T @ (y * rw))
    rinv = np.linalg.inv(r)
    bread = rinv @ rinv.T
    e = y - X @ beta
    df = float(sw.sum()) - X.shape[1]
    s2 = float(np.sum(sw * e * e) / df)
    V = s2 * bread if vcov == "classical" else sandwich_vcov(
        bread, X * e[:, None], vcov, weights=weights, cluster=cluster)
    return OLSResult(tuple(terms), beta, V, e, len(y), df, s2, vcov, bread, formula)


def ols(
    formula: str, data: pd.DataFrame, *, vcov: VcovType = "classical", cluster: str | None = None,
    weights: str | None = None,
) -> OLSResult:
    """OLS from a formula (rows with missing values in any used column are dropped)."""
    extra = tuple(c for c in (weights, cluster) if c is not None)
    d = build_design(formula, data, extra_variables=extra)
    if d.y is None:
        raise UsageError(f"formula '{formula}' has no outcome")
    w = data[weights].to_numpy(dtype=float)[d.rows] if weights else None
    cl = data[cluster].to_numpy()[d.rows] if cluster else None
    return ols_fit(d.X, d.y, d.terms, vcov=vcov, weights=w, cluster=cl, formula=formula)


# ---- shared machinery ----------------------------------------------------------------------
def _frame(terms: list[str], est: np.ndarray, se: np.ndarray, level: float,
           df: float | None = None) -> pd.DataFrame:
    with np.errstate(divide="ignore", invalid="ignore"):
        z = est / se
    dist = stats.norm if df is None else stats.t(df)
    q = dist.ppf(0.5 + level / 2.0)
    return pd.DataFrame({"term": terms, "estimate": est, "std_error": se, "statistic": z,
                         "p_value": 2.0 * dist.sf(np.abs(z)), "conf_low": est - q * se,
                         "conf_high": est + q * se})


def _jacobian(f: Callable[[np.ndarray], np.ndarray], theta: np.ndarray) -> np.ndarray:
    """Central-difference Jacobian of a smooth vector function."""
    cols = []
    for j in range(theta.size):
        h = 1e-6 * max(1.0, abs(theta[j]))
        tp, tm = theta.copy(), theta.copy()
        tp[j] += h
        tm[j] -= h
        cols.append((f(tp) - f(tm)) / (2.0 * h))
    return np.column_stack(cols)


def _delta_se(f: Callable[[np.ndarray], np.ndarray], theta: np.ndarray, V: np.ndarray) -> np.ndarray:
    J = _jacobian(f, theta)
    return np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", J, V, J), 0.0))


@dataclass(frozen=True)
class _Block:
    bread: np.ndarray
    scores: np.ndarray  # unweighted per-row scores (n, k)
    vcov: np.ndarray  # the block's own covariance of the requested kind


def _joint_vcov(blocks: list[_Block], kind: str, w: np.ndarray | None, cl: np.ndarray | None,
                independent: set[tuple[int, int]]) -> np.ndarray:
    """Stacked-sandwich covariance; ``independent`` block pairs are zero under ``classical``."""
    S = np.hstack([b.scores for b in blocks])
    wt = np.ones(len(S)) if w is None else w
    n = float(wt.sum())
    if kind == "cluster":
        if cl is None:
            raise UsageError("vcov 'cluster' needs a cluster column")
        codes, g = cluster_codes(cl)
        sums = np.zeros((g, S.shape[1]))
        np.add.at(sums, codes, S * wt[:, None])
        M = sums.T @ sums
    else:
        M = (S * wt[:, None]).T @ S
    ks = [b.bread.shape[0] for b in blocks]
    off = np.concatenate([[0], np.cumsum(ks)])
    f = [1.0 if kind in ("classical", "hc0") else n / (n - k) if kind == "hc1"
         else g / (g - 1) * (n - 1) / (n - k) for k in ks]
    V = np.zeros((off[-1], off[-1]))
    for i, bi in enumerate(blocks):
        for j, bj in enumerate(blocks):
            si, sj = slice(off[i], off[i + 1]), slice(off[j], off[j + 1])
            if i == j:
                V[si, sj] = bi.vcov
            elif not (kind == "classical" and ((i, j) in independent or (j, i) in independent)):
                V[si, sj] = np.sqrt(f[i] * f[j]) * bi.bread @ M[si, sj] @ bj.bread.T
    return V


def _terms(x: str | Sequence[str]) -> list[str]:
    return [x] if isinstance(x, str) else list(x)


def _prepare(data: pd.DataFrame, outcome: str, variables: list[str], weights: Weights,
             cluster: str | None) -> tuple[pd.DataFrame, str | None, np.ndarray | None]:
    """Listwise deletion over every variable of every equation; weights become a column."""
    d = data.copy()
    wcol: str | None = None
    if isinstance(weights, str):
        wcol = weights
    elif weights is not None:
        arr = np.asarray(weights, dtype=float)
        if arr.shape != (len(data),):
            raise UsageError(f"weights array has shape {arr.shape}; the data have {len(data)} rows")
        d[_W] = arr
        wcol = _W
    rhs = " + ".join(variables)
    used = list(parse_formula(f"{outcome} ~ {rhs}", list(d.columns)).variables)
    used += [c for c in (wcol, cluster) if c is not None]
    if set(used) - set(d.columns):
        raise UsageError(f"column(s) {', '.join(sorted(set(used) - set(d.columns)))} not in the data")
    sub = d.loc[d[used].notna().all(axis=1).to_numpy()].reset_index(drop=True)
    if len(sub) == 0:
        raise UsageError("no complete rows are left for the mediation models")
    w = sub[wcol].to_numpy(dtype=float) if wcol else None
    return sub, wcol, w


def _single_term(expr: str, sub: pd.DataFrame) -> str:
    terms = build_design(f"0 + {expr}", sub).terms
    if len(terms) != 1:
        raise UsageError(f"'{expr}' encodes to {len(terms)} columns; key and mediators must be one "
                         "numeric column each")
    return terms[0]


def _binary_block(res: FitResult, sub: pd.DataFrame, outcome: str, model: str) -> _Block:
    y = sub[outcome].to_numpy(dtype=float)
    return _Block(res.vcov, glm_row_scores(res.design_matrix(sub), y, res.params, FAMILIES[model]),
                  res.vcov)


def _own(b: _Block, kind: str, w: np.ndarray | None, cl: np.ndarray | None,
         s2: float | None = None) -> _Block:
    """The block with its covariance of the requested kind."""
    if kind == "classical":
        return _Block(b.bread, b.scores, b.vcov if s2 is None else s2 * b.bread)
    V = sandwich_vcov(b.bread, b.scores, kind, weights=w, cluster=cl)  # type: ignore[arg-type]
    return _Block(b.bread, b.scores, V)


def _check(model: str, vcov: str, cluster: str | None, conf_level: float) -> None:
    check_choice(model, BINARY_MODELS, "model")
    check_choice(vcov, VCOV_TYPES, "vcov")
    if vcov == "cluster" and cluster is None:
        raise UsageError("vcov 'cluster' needs a cluster column (cluster=...)")
    if not 0.0 < conf_level < 1.0:
        raise UsageError(f"conf_level must be between 0 and 1; got {conf_level}")


# ---- KHB -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class KHBResult:
    """KHB decomposition of a key variable's effect into direct and indirect parts."""

    key: str
    mediators: tuple[str, ...]
    model: str
    vcov_type: str
    nobs: int
    conf_level: float
    frame: pd.DataFrame
    total_se_conditional: float
    full: FitResult = field(repr=False)
    reduced: FitResult = field(repr=False)
    naive: FitResult = field(repr=False)
    mediator_fits: tuple[OLSResult, ...] = field(repr=False)

    def _get(self, term: str) -> float:
        return float(self.frame.set_index("term").at[term, "estimate"])

    total = property(lambda self: self._get("total"), doc="KHB total effect (b_R).")
    direct = property(lambda self: self._get("direct"), doc="Direct effect (b_F).")
    indirect = property(lambda self: self._get("indirect"), doc="total - direct.")
    naive_total = property(lambda self: self._get("naive_total"), doc="Naive reduced b.")
    percent_mediated = property(lambda self: self._get("percent_mediated"))
    confounding_ratio = property(lambda self: self._get("confounding_ratio"))
    rescaling_factor = property(lambda self: self._get("rescaling_factor"))


def khb(
    data: pd.DataFrame, outcome: str, key: str, mediators: str | Sequence[str],
    controls: str | Sequence[str] = (), model: BinaryModel = "logit",
    vcov: VcovType = "classical", cluster: str | None = None, weights: Weights = None,
    conf_level: float = 0.95,
) -> KHBResult:
    """KHB decomposition (see the module docstring for the models and the SEs).

    Frame rows: total, direct, indirect, indirect:<mediator term> (one per mediator),
    naive_total, percent_mediated, confounding_ratio, rescaling_factor.
    """
    _check(model, vcov, cluster, conf_level)
    meds, ctr = _terms(mediators), _terms(controls)
    if not meds:
        raise UsageError("khb needs at least one mediator")
    sub, wcol, w = _prepare(data, outcome, [key, *meds, *ctr], weights, cluster)
    cl = sub[cluster].to_numpy() if cluster else None
    key_t = _single_term(key, sub)
    med_t = [_single_term(m, sub) for m in meds]
    md = build_design(" + ".join(["1", key, *ctr]), sub)
    Xm, ia = md.X, md.terms.index(key_t)
    mfits = [ols_fit(Xm, build_design(f"0 + {m}", sub).X[:, 0], md.terms, vcov=vcov, weights=w,
                     cluster=cl, formula=f"{mt} ~ ...") for m, mt in zip(meds, med_t, strict=True)]
    resid_cols = [f"_khb_resid_{j}_" for j in range(len(meds))]
    for name, r in zip(resid_cols, mfits, strict=True):
        sub[name] = r.resid
    kw = dict(model=model, vcov="classical", weights=wcol)
    full = fit(f"{outcome} ~ " + " + ".join([key, *meds, *ctr]), sub, **kw)  # type: ignore[arg-type]
    red = fit(f"{outcome} ~ " + " + ".join([key, *resid_cols, *ctr]), sub, **kw)  # type: ignore[arg-type]
    nai = fit(f"{outcome} ~ " + " + ".join([key, *ctr]), sub, **kw)  # type: ignore[arg-type]
    fb, rb, nb = (_own(_binary_block(r, sub, outcome, model), vcov, w, cl) for r in (full, red, nai))
    mb = [_own(_Block(r.bread, Xm * r.resid[:, None], r.vcov), vcov, w, cl, r.sigma2) for r in mfits]
    J = len(meds)
    V = _joint_vcov([fb, *mb, nb], vcov, w, cl, {(0, j + 1) for j in range(J)})
    if vcov == "classical":  # SUR: cov(a-equations i, j) = s_ij (X'WX)^-1
        E = np.column_stack([r.resid for r in mfits]) * np.sqrt(1.0 if w is None else w)[..., None]
        ms = slice(full.k, full.k + J * Xm.shape[1])
        V[ms, ms] = np.kron(E.T @ E / mfits[0].df_resid, mfits[0].bread)
    pk, pm = full.index(key_t), [full.index(t) for t in med_t]
    pn = full.k + J * Xm.shape[1] + nai.index(key_t)

    def quantities(th: np.ndarray) -> np.ndarray:
        a = np.array([th[full.k + j * Xm.shape[1] + ia] for j in range(J)])
        parts = th[pm] * a
        direct, ind = th[pk], parts.sum()
        tot = direct + ind
        return np.concatenate([[tot, direct, ind], parts, [th[pn], 100.0 * ind / tot,
                                                           tot / direct, tot / th[pn]]])

    theta = np.concatenate([full.params, *[r.params for r in mfits], nai.params])
    est = quantities(theta)
    est[0] = red.params[red.index(key_t)]  # the KHB reduced fit itself (= direct + indirect)
    names = ["total", "direct", "indirect", *[f"indirect:{t}" for t in med_t], "naive_total",
             "percent_mediated", "confounding_ratio", "rescaling_factor"]
    frame = _frame(names, est, _delta_se(quantities, theta, V), conf_level)
    se_cond = float(np.sqrt(rb.vcov[red.index(key_t), red.index(key_t)]))
    return KHBResult(key_t, tuple(med_t), model, vcov, len(sub), conf_level, frame, se_cond, full,
                     red, nai, tuple(mfits))


# ---- product of coefficients ---------------------------------------------------------------
@dataclass(frozen=True)
class IndirectResult:
    """Product-of-coefficients mediation: ``statistic(theta)`` recomputes every row's estimate
    from a stacked parameter vector ``theta`` = (outcome-model params, mediator-equation params)."""

    key: str
    mediator: str
    model: str
    vcov_type: str
    nobs: int
    conf_level: float
    frame: pd.DataFrame
    sobel_se: float
    params: np.ndarray = field(repr=False)
    vcov: np.ndarray = field(repr=False)
    statistic: Callable[[np.ndarray], np.ndarray] = field(repr=False, compare=False)
    outcome_fit: FitResult = field(repr=False)
    mediator_fit: OLSResult = field(repr=False)

    @property
    def estimates(self) -> pd.Series:
        """Estimates indexed by term (what a bootstrap replicate keeps)."""
        return pd.Series(self.frame["estimate"].to_numpy(), index=self.frame["term"], name="estimate")

    @property
    def indirect(self) -> float:
        return float(self.estimates["indirect"])


def indirect_effect(
    data: pd.DataFrame, outcome: str, key: str, mediator: str,
    controls: str | Sequence[str] = (), model: BinaryModel = "logit",
    vcov: VcovType = "classical", cluster: str | None = None, weights: Weights = None,
    outcome_extra: str | Sequence[str] = (), conf_level: float = 0.95,
) -> IndirectResult:
    """a*b mediation with Sobel SE, plus the probability-scale decomposition.

    a = OLS coefficient of ``key`` in ``mediator ~ key + controls``; b = coefficient of
    ``mediator`` in the outcome model ``outcome ~ key + mediator + controls + outcome_extra``
    (``outcome_extra``: e.g. a key:mediator interaction; then a*b is no longer the whole
    log-odds indirect effect but the ame_* rows stay valid). Sobel SE = sqrt(a^2 se_b^2 +
    b^2 se_a^2) (``sobel_se``); the frame's SEs are delta-method on the joint covariance,
    identical to Sobel for ``vcov="classical"`` (equations independent) and including the
    stacked-sandwich cross term otherwise.

    Probability scale (derivative form, per unit of the key, weighted sample averages):
    ame_indirect = mean_i a * dP_i/dm, the average change in P(outcome=1) when the key moves
    the mediator by its OLS slope and the key's own path is held fixed; ame_direct = mean_i
    dP_i/dx holding the mediator fixed; ame_total = their sum; percent_mediated_ame = 100 *
    ame_indirect / ame_total. dP_i/dv = f(eta_i) * d eta_i/dv, with d eta/dv taken through the
    formula (interactions included) by central differences of the design. Weights (column or
    array, frequency-type) enter every equation and average, so bootstrap engines can pass
    resampling counts or Bayesian-bootstrap weights.
    """
    _check(model, vcov, cluster, conf_level)
    ctr, extra = _terms(controls), _terms(outcome_extra)
    sub, wcol, w = _prepare(data, outcome, [key, mediator, *ctr, *extra], weights, cluster)
    cl = sub[cluster].to_numpy() if cluster else None
    key_t, med_t = _single_term(key, sub), _single_term(mediator, sub)
    md = build_design(" + ".join(["1", key, *ctr]), sub)
    zm = build_design(f"0 + {mediator}", sub).X[:, 0]
    mfit = ols_fit(md.X, zm, md.terms, vcov=vcov, weights=w, cluster=cl, formula=f"{med_t} ~ ...")
    out = fit(f"{outcome} ~ " + " + ".join([key, mediator, *ctr, *extra]), sub, model=model,
              vcov="classical", weights=wcol)
    ob = _own(_binary_block(out, sub, outcome, model), vcov, w, cl)
    mb = _own(_Block(mfit.bread, md.X * mfit.resid[:, None], mfit.vcov), vcov, w, cl, mfit.sigma2)
    V = _joint_vcov([ob, mb], vcov, w, cl, {(0, 1)})
    X = out.design_matrix(sub)
    dXm = _design_slope(out, sub, mediator, med_t)
    dXk = _design_slope(out, sub, key, key_t)
    fam, wt = FAMILIES[model], (np.ones(len(sub)) if w is None else w)
    ia, ib, ic, p = md.terms.index(key_t), out.index(med_t), out.index(key_t), out.k

    def statistic(th: np.ndarray) -> np.ndarray:
        beta, a = th[:p], th[p + ia]
        dens = fam.dmu_deta(X @ beta)
        ame_i = a * np.average(dens * (dXm @ beta), weights=wt)
        ame_d = np.average(dens * (dXk @ beta), weights=wt)
        tot = ame_d + ame_i
        return np.array([a, beta[ib], a * beta[ib], beta[ic], beta[ic] + a * beta[ib],
                         ame_i, ame_d, tot, 100.0 * ame_i / tot])

    theta = np.concatenate([out.params, mfit.params])
    names = ["a_path", "b_path", "indirect", "direct", "total", "ame_indirect", "ame_direct",
             "ame_total", "percent_mediated_ame"]
    frame = _frame(names, statistic(theta), _delta_se(statistic, theta, V), conf_level)
    a, b = mfit.params[ia], out.params[ib]
    sobel = float(np.sqrt(a**2 * ob.vcov[ib, ib] + b**2 * mb.vcov[ia, ia]))
    return IndirectResult(key_t, med_t, model, vcov, len(sub), conf_level, frame, sobel, theta,
                          V, statistic, out, mfit)


def _design_slope(res: FitResult, sub: pd.DataFrame, column: str, term: str) -> np.ndarray:
    """d X / d column by central differences through the fitted formula (exact for polynomials
    up to degree 2); ``column`` must be a plain data column for this to apply."""
    if column not in sub.columns:
        X = np.zeros((len(sub), res.k))
        X[:, res.index(term)] = 1.0
        return X
    x = sub[column].to_numpy(dtype=float)
    h = 1e-4 * max(1.0, float(np.nanstd(x)))
    up, dn = sub.copy(), sub.copy()
    up[column], dn[column] = x + h, x - h
    return (res.design_matrix(up) - res.design_matrix(dn)) / (2.0 * h)
