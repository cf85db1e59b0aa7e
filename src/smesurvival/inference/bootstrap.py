"""Bootstrap by weights: resampling weight matrices, batched refits, and confidence intervals.

Every bootstrap replicate is a weighted refit of the same rows: pairs resampling gives each
row its multinomial count, the cluster bootstrap gives each row its cluster's count, and the
Bayesian bootstrap gives Dirichlet(1) weights (times n). The (B, n) weight matrix goes through
the batched Newton engine (:mod:`smesurvival.inference.batched`), so B fits are matrix
products (DESIGN.md principle 1). Intervals: percentile, bias-corrected normal, and BCa
(bias correction from the replicates, acceleration from a delete-one-row or delete-one-cluster
jackknife).

Example
-------
>>> from smesurvival.inference.bootstrap import bootstrap
>>> res = bootstrap(None, "survived ~ export_ratio + rd_alliance", df, B=2000, seed=1)
>>> res.tidy(method="bca")
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np
import pandas as pd
from scipy import special

from smesurvival.errors import UsageError
from smesurvival.inference.batched import (
    CONVERGED,
    STATUS_NAMES,
    BatchedFit,
    fit_cox_batched,
    fit_glm_batched,
)
from smesurvival.inference.resample import (
    RESAMPLE_KINDS,
    ResampleKind,
    WeightDraws,
    draw_weights,
)
from smesurvival.inference.vcov import check_choice, cluster_codes
from smesurvival.models.design import build_design
from smesurvival.models.families import FAMILIES, Family
from smesurvival.models.kernels import Information
from smesurvival.models.result import FitResult

CIMethod = Literal["percentile", "bca", "normal"]
JackknifeMethod = Literal["auto", "exact", "onestep", "none"]
CI_METHODS: tuple[str, ...] = get_args(CIMethod)
JACKKNIFE_METHODS: tuple[str, ...] = get_args(JackknifeMethod)
Statistic = Callable[..., Any]
_EXACT_JACKKNIFE_MAX = 5000  # "auto": exact delete-one refits up to this many units


@dataclass(frozen=True)
class BootstrapResult:
    """Point estimate, replicate statistics and (optionally) jackknife values of a bootstrap."""

    estimate: np.ndarray  # (k,)
    replicates: np.ndarray  # (B, k); NaN rows for replicates whose refit failed
    names: tuple[str, ...]
    kind: str  # pairs | bayesian
    seed: int | None
    status: np.ndarray  # (B,) batched-fit status codes (0 = converged)
    jackknife: np.ndarray | None = None  # (m, k) delete-one-unit statistics
    jackknife_method: str = "none"  # exact | onestep | none
    cluster: str | None = None
    n_clusters: int | None = None
    model: str = ""

    @property
    def B(self) -> int:
        """Number of replicates drawn (including failed ones)."""
        return int(self.replicates.shape[0])

    @property
    def valid(self) -> np.ndarray:
        """Mask of the replicates used: the refit converged and the statistic is finite."""
        return (self.status == CONVERGED) & np.isfinite(self.replicates).all(axis=1)

    @property
    def n_failed(self) -> int:
        """Replicates excluded from every summary (non-converged, separated, singular...)."""
        return int(self.B - self.valid.sum())

    def failures(self) -> dict[str, int]:
        """Excluded replicates counted by reason."""
        codes, counts = np.unique(self.status[self.status != CONVERGED], return_counts=True)
        out = {STATUS_NAMES[int(c)]: int(k) for c, k in zip(codes, counts, strict=True)}
        bad_stat = int(((self.status == CONVERGED) & ~self.valid).sum())
        if bad_stat:
            out["non-finite statistic"] = bad_stat
        return out

    @property
    def se(self) -> np.ndarray:
        """Bootstrap standard errors (sd of the valid replicates, ddof 1)."""
        return np.asarray(self.replicates[self.valid].std(axis=0, ddof=1))

    @property
    def bias(self) -> np.ndarray:
        """Mean of the valid replicates minus the estimate."""
        return np.asarray(self.replicates[self.valid].mean(axis=0) - self.estimate)

    @property
    def acceleration(self) -> np.ndarray:
        """BCa acceleration from the jackknife values (Efron & Tibshirani 1993, eq. 14.15)."""
        if self.jackknife is None:
            raise UsageError(
                "BCa needs jackknife values; rerun bootstrap() with jackknife='exact' or "
                "'onestep'"
            )
        jk = self.jackknife[np.isfinite(self.jackknife).all(axis=1)]
        d = jk.mean(axis=0) - jk
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.asarray((d**3).sum(axis=0) / (6.0 * ((d**2).sum(axis=0)) ** 1.5))

    def ci(self, level: float = 0.95, method: CIMethod = "percentile") -> np.ndarray:
        """Confidence intervals, shape (k, 2), from the valid replicates.

        ``percentile``: quantiles alpha/2 and 1 - alpha/2 (linear interpolation, as
        numpy and scipy). ``normal``: (estimate - bias) -/+ z se, as R's ``boot::norm.ci``.
        ``bca``: percentile levels Phi(z0 + (z0 + z)/(1 - a (z0 + z))) with
        z0 = Phi^-1(share of replicates below the estimate, ties counted half) and the
        jackknife acceleration a, as ``scipy.stats.bootstrap(method="BCa")``.
        """
        check_choice(method, CI_METHODS, "method")
        if not 0.0 < level < 1.0:
            raise UsageError(f"level must be between 0 and 1; got {level}")
        reps = self.replicates[self.valid]
        if reps.shape[0] < 2:
            raise UsageError(f"only {reps.shape[0]} valid bootstrap replicate(s); cannot form CIs")
        alpha = (1.0 - level) / 2.0
        if method == "normal":
            z = special.ndtri(1.0 - alpha)
            centre = 2.0 * self.estimate - reps.mean(axis=0)
            se = reps.std(axis=0, ddof=1)
            return np.column_stack([centre - z * se, centre + z * se])
        if method == "percentile":
            return np.quantile(reps, [alpha, 1.0 - alpha], axis=0).T
        below = (reps < self.estimate).sum(axis=0) + (reps <= self.estimate).sum(axis=0)
        z0 = special.ndtri(below / (2.0 * reps.shape[0]))
        a = self.acceleration
        out = np.empty((reps.shape[1], 2))
        for c, za in enumerate((special.ndtri(alpha), special.ndtri(1.0 - alpha))):
            num = z0 + za
            lev = special.ndtr(z0 + num / (1.0 - a * num))
            for j in range(reps.shape[1]):
                out[j, c] = (np.quantile(reps[:, j], lev[j]) if np.isfinite(lev[j])
                             else np.nan)
        return out

    def tidy(self, level: float = 0.95, method: CIMethod = "percentile") -> pd.DataFrame:
        """One row per statistic: term, estimate, std_error, conf_low, conf_high."""
        lo_hi = self.ci(level, method)
        return pd.DataFrame({
            "term": list(self.names), "estimate": self.estimate, "std_error": self.se,
            "conf_low": lo_hi[:, 0], "conf_high": lo_hi[:, 1],
        })

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (NaN as None)."""
        return {
            "estimate": self.estimate.tolist(), "replicates": _nan_to_none(self.replicates),
            "names": list(self.names), "kind": self.kind, "seed": self.seed,
            "status": self.status.tolist(),
            "jackknife": None if self.jackknife is None else _nan_to_none(self.jackknife),
            "jackknife_method": self.jackknife_method, "cluster": self.cluster,
            "n_clusters": self.n_clusters, "model": self.model,
            "n_failed": self.n_failed, "failures": self.failures(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BootstrapResult:
        """Inverse of :meth:`to_dict`."""
        jk = d.get("jackknife")
        return cls(
            np.asarray(d["estimate"], dtype=float),
            np.asarray(d["replicates"], dtype=float).reshape(len(d["status"]), -1),
            tuple(d["names"]), d["kind"], d.get("seed"),
            np.asarray(d["status"], dtype=np.int8),
            None if jk is None else np.asarray(jk, dtype=float).reshape(len(jk), -1),
            d.get("jackknife_method", "none"), d.get("cluster"), d.get("n_clusters"),
            d.get("model", ""),
        )


def _nan_to_none(a: np.ndarray) -> list[Any]:
    return [[None if not np.isfinite(v) else float(v) for v in row] for row in a]


# ----------------------------------------------------------------------------------------
# the generic API


def bootstrap(
    statistic: Statistic | None,
    fit_or_formula: FitResult | str,
    data: pd.DataFrame,
    B: int = 2000,
    seed: int | None = None,
    *,
    model: str = "logit",
    kind: ResampleKind = "pairs",
    cluster: str | None = None,
    weights: str | None = None,
    information: Information = "expected",
    jackknife: JackknifeMethod = "auto",
    names: tuple[str, ...] | None = None,
    vectorized: bool = False,
    tol: float = 1e-8,
    max_iter: int = 25,
    chunk: int = 512,
    n_threads: int = 2,
    progress: bool | None = None,
) -> BootstrapResult:
    """Bootstrap any function of a binary GLM's or Cox model's coefficients by batched refits.

    ``statistic(params)`` or ``statistic(params, weights)`` returns a number or a vector
    (an average marginal effect, an indirect effect, a coefficient ratio...); ``weights`` are
    the replicate's row weights over the design rows (use them to average over the resampled
    sample). ``None`` bootstraps the coefficients. With ``vectorized=True`` it is called once
    per chunk with (b, p) parameters and (b, n) weights and returns (b, k).

    ``fit_or_formula``: a formula (with ``model``) or a :class:`FitResult` from ``fit()``
    (its formula, model and estimate are reused), or a Cox :class:`FitResult` from
    ``fit_cox()`` (no strata or entry times; its ties method is kept). Failed replicates (non-converged,
    separated, singular) are excluded and counted in the result, never averaged in.
    ``jackknife`` (for BCa): ``exact`` delete-one refits (rows, or clusters with
    ``cluster``), ``onestep`` one Newton step from the full-sample estimate per deleted unit,
    ``auto`` exact up to 5,000 units, ``none`` skips it. Deterministic given ``seed``.
    """
    from smesurvival.models.fit import fit

    check_choice(kind, RESAMPLE_KINDS, "kind")
    check_choice(jackknife, JACKKNIFE_METHODS, "jackknife")
    if B < 2:
        raise UsageError(f"B must be at least 2; got {B}")
    if isinstance(fit_or_formula, FitResult):
        full = fit_or_formula
        formula, model = full.formula, full.model
    else:
        if model == "cox":
            raise UsageError("to bootstrap a Cox model pass its FitResult from fit_cox()")
        formula = fit_or_formula
        full = fit(formula, data, model=model, weights=weights, cluster=cluster,  # type: ignore[arg-type]
                   information=information)
    prob = (_cox_problem(full, data, cluster) if model == "cox"
            else _glm_problem(full, formula, model, data, weights, cluster))
    n, base, cl = prob.n, prob.base, prob.cluster
    beta = np.asarray(full.params, dtype=float)
    stat = _Stat(statistic, vectorized)
    estimate = stat.one(beta, base)
    k = estimate.size
    out_names = names if names is not None else (
        tuple(full.terms) if statistic is None else tuple(f"stat{j}" for j in range(k)))
    if len(out_names) != k:
        raise UsageError(f"names has {len(out_names)} entries but the statistic has {k}")
    draws = draw_weights(n, B, seed, kind, cl).scaled(base)
    opts = {"tol": tol, "max_iter": max_iter, "chunk": chunk, "n_threads": n_threads}
    with _Progress(progress, B, n) as bar:
        bf = prob.refit(draws, beta, bar.advance, opts)
    reps = stat.many(bf, draws.all() if stat.with_weights else None, k)
    jk, jk_method = None, "none"
    if jackknife != "none":
        codes, m = cluster_codes(cl) if cl is not None else (np.arange(n), n)
        jk_method = ("exact" if m <= _EXACT_JACKKNIFE_MAX else "onestep") if jackknife == "auto" \
            else jackknife
        if jk_method == "onestep" and prob.X is None:
            raise UsageError("the one-step jackknife is for binary GLMs; use jackknife='exact' "
                             "(or 'none') with a Cox model")
        jk = jackknife_values(stat, prob, base, codes, m, beta, jk_method, opts)
    return BootstrapResult(
        estimate, reps, out_names, kind, seed, bf.status, jk, jk_method, cluster,
        cluster_codes(cl)[1] if cl is not None else None, model,
    )


class _Stat:
    """Calls the user's statistic per replicate or per chunk, with or without weights."""

    def __init__(self, fn: Statistic | None, vectorized: bool) -> None:
        self.fn = fn
        self.vectorized = vectorized
        self.with_weights = fn is not None and _n_positional(fn) >= 2

    def _call(self, params: np.ndarray, w: np.ndarray) -> np.ndarray:
        if self.fn is None:
            return params
        return np.asarray(self.fn(params, w) if self.with_weights else self.fn(params),
                          dtype=float)

    def one(self, params: np.ndarray, w: np.ndarray) -> np.ndarray:
        """Statistic at one parameter vector, as a 1-d array."""
        if self.vectorized:
            return np.atleast_2d(self._call(params[None, :], w[None, :]))[0]
        return np.atleast_1d(self._call(params, w)).ravel()

    def many(self, bf: BatchedFit, W: np.ndarray | None, k: int) -> np.ndarray:
        """(B, k) statistics of the converged replicates; NaN rows for the others
        (``W``: the weight rows, needed only by a statistic that takes weights)."""
        out = np.full((bf.params.shape[0], k), np.nan)
        ok = np.flatnonzero(bf.converged)
        if self.fn is None:
            out[ok] = bf.params[ok]
        elif self.vectorized:
            for s in range(0, ok.size, 512):
                i = ok[s:s + 512]
                w = W[i] if W is not None else np.empty((i.size, 0))
                out[i] = np.asarray(self._call(bf.params[i], w), dtype=float).reshape(i.size, k)
        else:
            for r in ok.tolist():
                w = W[r] if W is not None else np.empty(0)
                out[r] = np.atleast_1d(self._call(bf.params[r], w)).ravel()
        return out


def _n_positional(fn: Callable[..., Any]) -> int:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return 1
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if any(p.kind == inspect.Parameter.VAR_POSITIONAL for p in sig.parameters.values()):
        return 2
    return sum(p.kind in kinds and p.default is inspect.Parameter.empty
               for p in sig.parameters.values())


def jackknife_values(
    stat: _Stat, prob: _Problem, base: np.ndarray, codes: np.ndarray, m: int, beta: np.ndarray,
    method: str, opts: dict[str, Any],
) -> np.ndarray:
    """Delete-one-unit statistics (m, k): exact batched refits or one-step approximations."""
    k = stat.one(beta, base).size
    out = np.full((m, k), np.nan)
    block = 4 * int(opts["chunk"])
    for s in range(0, m, block):
        units = np.arange(s, min(s + block, m))
        Wj = np.where(codes[None, :] == units[:, None], 0.0, base[None, :])
        if method == "exact":
            bf = prob.refit(Wj, beta, None, opts)
        else:
            assert prob.X is not None and prob.y is not None and prob.family is not None
            bf = _one_step(prob.X, prob.y, base, codes, units, prob.family, beta)
        out[units] = stat.many(bf, Wj, k)
    return out


@dataclass(frozen=True)
class _Problem:
    """What the bootstrap needs from a model: rows, base weights, clusters and a batched refit
    ``refit(W, beta0, progress, opts)``; X, y and family for the GLM one-step jackknife."""

    n: int
    base: np.ndarray
    cluster: np.ndarray | None
    # (weights: a (B, n) matrix or lazily drawn rows, start values, progress, options)
    refit: Callable[[np.ndarray | WeightDraws, np.ndarray, Callable[[int], None] | None, dict[str, Any]],
                    BatchedFit]
    X: np.ndarray | None = None
    y: np.ndarray | None = None
    family: Family | None = None


def _glm_problem(full: FitResult, formula: str, model: str, data: pd.DataFrame,
                 weights: str | None, cluster: str | None) -> _Problem:
    if model not in FAMILIES:
        raise UsageError(f"bootstrap supports the models {', '.join((*FAMILIES, 'cox'))}; got '{model}'")
    family = FAMILIES[model]
    extra = tuple(c for c in (weights, cluster) if c is not None)
    design = build_design(formula, data, extra_variables=extra)
    if design.y is None or tuple(design.terms) != tuple(full.terms):
        raise UsageError("the fit's terms do not match the formula's design on these data; "
                         "pass the same data the model was fitted on")
    X, y, rows = design.X, design.y, design.rows
    base = (np.ones(X.shape[0]) if weights is None
            else pd.to_numeric(data[weights]).to_numpy(dtype=float)[rows])

    def refit(W: np.ndarray | WeightDraws, beta0: np.ndarray, progress: Callable[[int], None] | None,
              opts: dict[str, Any]) -> BatchedFit:
        return fit_glm_batched(X, y, W, family, beta0, progress=progress, **opts)

    cl = data[cluster].to_numpy()[rows] if cluster is not None else None
    return _Problem(X.shape[0], base, cl, refit, X, y, family)


def _cox_problem(full: FitResult, data: pd.DataFrame, cluster: str | None) -> _Problem:
    """Case-weighted Cox refits (Efron or Breslow, as the fit) on the fit's rows."""
    from smesurvival.models.cox import cox_inputs

    ex = full.extra
    if ex.get("strata") or ex.get("entry"):
        raise UsageError("the Cox bootstrap supports models without strata or entry times; "
                         "refit without them, or bootstrap by calling fit_cox per replicate")
    inp = cox_inputs(full.formula, data, duration=ex["duration"], event=ex["event"],
                     weights=ex.get("weights"), cluster=cluster)
    if tuple(inp.terms) != tuple(full.terms):
        raise UsageError("the fit's terms do not match the formula's design on these data; "
                         "pass the same data the model was fitted on")
    X, rows, time, event = inp.X, inp.rows, inp.time, inp.event
    base = np.ones(rows.size) if inp.weights is None else inp.weights
    ties = ex.get("ties", "efron")

    def refit(W: np.ndarray | WeightDraws, beta0: np.ndarray, progress: Callable[[int], None] | None,
              opts: dict[str, Any]) -> BatchedFit:
        Wm = W.all() if isinstance(W, WeightDraws) else W
        return fit_cox_batched(time, event, X, Wm, beta0, ties=ties, progress=progress, **opts)

    cl = data[cluster].to_numpy()[rows] if cluster is not None else None
    return _Problem(rows.size, base, cl, refit)


def _one_step(
    X: np.ndarray, y: np.ndarray, base: np.ndarray, codes: np.ndarray, units: np.ndarray,
    family: Family, beta: np.ndarray,
) -> BatchedFit:
    """One Newton step from the full-sample estimate with each unit's rows removed.

    beta_(-j) = beta + (H - H_j)^-1 (0 - g_j), with g_j and H_j the unit's score and observed
    information (the full-sample score is zero); an approximation to the exact refit, good to
    O(1/n^2) per unit.
    """
    _, u, _, v = family.pieces(X @ beta, y)
    p = X.shape[1]
    H = (X * (base * v)[:, None]).T @ X
    sel = np.isin(codes, units)
    rows = np.flatnonzero(sel)
    pos = np.searchsorted(units, codes[rows])
    g = np.zeros((units.size, p))
    np.add.at(g, pos, X[rows] * (base[rows] * u[rows])[:, None])
    iu, ju = np.triu_indices(p)
    flat = np.zeros((units.size, iu.size))
    np.add.at(flat, pos, X[rows][:, iu] * X[rows][:, ju] * (base[rows] * v[rows])[:, None])
    Hj = np.empty((units.size, p, p))
    Hj[:, iu, ju] = flat
    Hj[:, ju, iu] = flat
    try:
        step = np.linalg.solve(H[None] - Hj, -g[..., None])[..., 0]
        status = np.zeros(units.size, dtype=np.int8)
    except np.linalg.LinAlgError:
        step = np.full((units.size, p), np.nan)
        status = np.full(units.size, 3, dtype=np.int8)
        for i in range(units.size):
            try:
                step[i] = np.linalg.solve(H - Hj[i], -g[i])
                status[i] = CONVERGED
            except np.linalg.LinAlgError:
                pass
    return BatchedFit(beta[None, :] + step, status, np.ones(units.size, dtype=np.int32))


class _Progress:
    """A rich progress bar over replicates, shown for long runs on a terminal."""

    def __init__(self, show: bool | None, B: int, n: int) -> None:
        if show is None:
            show = B * n >= 5_000_000 and sys.stderr.isatty()
        self.show = show
        self.B = B
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> _Progress:
        if self.show:
            from rich.progress import Progress

            self._bar = Progress(transient=True)
            self._bar.__enter__()
            self._task = self._bar.add_task("bootstrap refits", total=self.B)
        return self

    def advance(self, done: int) -> None:
        """Count ``done`` more replicates as finished."""
        if self._bar is not None:
            self._bar.advance(self._task, done)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
