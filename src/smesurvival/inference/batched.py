"""Many weighted fits at once: batched Newton for binary GLMs and Cox (Efron or Breslow).

DESIGN.md principle 1: bootstrap and Monte Carlo run the kernel for many weight vectors at
once, so B fits become matrix products. Given a design ``X`` (N, p), a 0/1 outcome ``y`` and a
weight matrix ``W`` (B, N) -- one row of (frequency, resampling or jackknife) weights per fit --
:func:`fit_glm_batched` returns the B weighted maximum-likelihood estimates.

How the batch is made fast (the design is the work):

* **Warm start** from the full-sample estimate ``beta0``; a replicate is a small perturbation,
  and its first step uses the full-sample information (the identity, below) instead of its own:
  as good a step as Newton's from that distance, without forming a Hessian.
* **Whitening.** The problem is rewritten in coordinates where the full-sample information is
  the identity (X~ = X L^-T with L L' the information at ``beta0``). Newton is invariant under
  this change of coordinates, so the iterates are the same; but every Hessian is now well
  conditioned, which makes the single-precision phase safe for badly scaled designs.
* **One GEMM gives all B Hessians.** The information matrices X' diag(w_b v) X are formed as
  (W * v) @ Z, with Z (N, p(p+1)/2) the products x_ij x_ik of the upper triangle.
* **Mixed precision.** Early Newton steps run in float32 (linear predictor, score and Hessian).
  Once a replicate's step is below ``switch`` (in whitened, i.e. standard-error, units) it
  moves to float64: the linear predictor and the score are then computed in float64 and the
  last float32 Hessian is reused through its Cholesky factor (a chord step; its error only
  slows convergence, never moves the fixed point, which is where the float64 score vanishes).
  A chord step stops the replicate when the error it leaves, from the contraction rate (the
  last two chord steps, or for the first one the rate predicted from the last two Newton
  steps, with a factor 10 to spare), is below a tenth of ``tol``. A float64 Hessian is formed
  only for a replicate whose chord steps do not shrink fast enough.
* **Converged replicates drop out** of the active set; work proceeds in chunks of
  ``chunk`` (about 512) replicates on ``n_threads`` threads, each running single-threaded BLAS
  (threadpoolctl, when installed), which avoids BLAS thread contention on these small shapes.
  Given :class:`~smesurvival.inference.resample.WeightDraws`, each thread draws the weights of
  its chunk itself, just before refitting it.

Nothing is averaged silently: every replicate carries a status (converged, iteration limit,
separated, singular, non-finite); callers exclude and report the failures.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

import numpy as np

from smesurvival.errors import RankDeficientError, UsageError
from smesurvival.inference.resample import BLOCK, WeightDraws
from smesurvival.inference.vcov import check_choice
from smesurvival.models.cox_kernel import Ties
from smesurvival.models.families import Family
from smesurvival.models.kernels import Information

#: replicate status codes of :class:`BatchedFit`.
CONVERGED, MAX_ITER, SEPARATED, SINGULAR, NONFINITE = 0, 1, 2, 3, 4
STATUS_NAMES: dict[int, str] = {
    CONVERGED: "converged", MAX_ITER: "iteration limit", SEPARATED: "separated",
    SINGULAR: "singular information", NONFINITE: "non-finite",
}
Precision = Literal["mixed", "float64"]
_HUGE_STEP = 1e3  # whitened (standard-error) units
_SWITCH = 1e-2  # float32 Newton -> float64 chord below this step (whitened units)
_IDENTITY_FIRST = True  # first step with the full-sample information (no Hessian): ~10% less work


@dataclass(frozen=True)
class BatchedFit:
    """B estimates from one weight matrix, with a status and iteration count per replicate."""

    params: np.ndarray  # (B, p); NaN rows for replicates that failed
    status: np.ndarray  # (B,) int8 codes, see STATUS_NAMES
    iterations: np.ndarray  # (B,) Newton iterations used

    @property
    def converged(self) -> np.ndarray:
        """Boolean mask of the replicates that converged."""
        return self.status == CONVERGED

    @property
    def n_failed(self) -> int:
        """How many replicates did not converge (for any reason)."""
        return int((self.status != CONVERGED).sum())

    def status_counts(self) -> dict[str, int]:
        """Replicate count per status name (only the statuses that occur)."""
        codes, counts = np.unique(self.status, return_counts=True)
        return {STATUS_NAMES[int(c)]: int(k) for c, k in zip(codes, counts, strict=True)}


@contextlib.contextmanager
def _single_threaded_blas(active: bool) -> Iterator[None]:
    """Limit BLAS to one thread while our own threads run (no-op without threadpoolctl)."""
    if not active:
        yield
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - optional dependency
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


# ----------------------------------------------------------------------------------------
# per-row pieces: score factor u and information weight v, in the working precision


def _logit_uv(eta: np.ndarray, y: np.ndarray, need_v: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """Logit u = y - mu and (when ``need_v``) v = mu (1 - mu), in place on eta's buffer."""
    with np.errstate(over="ignore"):
        mu = np.negative(eta, out=eta)
        np.exp(mu, out=mu)
        mu += 1.0
        np.reciprocal(mu, out=mu)
    v = None
    if need_v:
        v = np.subtract(1.0, mu, dtype=mu.dtype)
        v *= mu
    u = np.subtract(y, mu, out=mu)
    return u, v


UV = Callable[[np.ndarray, np.ndarray, bool], tuple[np.ndarray, "np.ndarray | None"]]


def _generic_uv(family: Family, information: Information) -> UV:
    """u and v from :meth:`Family.pieces` (computed in float64, returned in eta's precision)."""

    def uv(eta: np.ndarray, y: np.ndarray, need_v: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        with np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore"):
            _, u, w_exp, w_obs = family.pieces(eta.astype(np.float64), y.astype(np.float64))
        v = w_obs if information == "observed" else w_exp
        return u.astype(eta.dtype, copy=False), v.astype(eta.dtype, copy=False)

    return uv


@dataclass(frozen=True)
class _Problem:
    """Whitened design in both precisions and the per-row function; shared by all chunks."""

    xt64: np.ndarray  # (N, p) whitened design
    xt32: np.ndarray
    xtT64: np.ndarray  # (p, N) contiguous transpose for the linear predictor
    xtT32: np.ndarray
    z32: np.ndarray  # (N, q) upper-triangle products of the whitened design
    z64: np.ndarray
    y64: np.ndarray
    y32: np.ndarray
    iu: np.ndarray
    ju: np.ndarray
    A: np.ndarray  # beta = A @ beta_whitened
    uv: UV
    tol: float
    switch: float
    max_iter: int
    mixed: bool
    identity_first: bool
    u0x32: np.ndarray  # (N, p) u_i x~_i at beta0: the score of any weights there is W @ u0x32


def fit_glm_batched(
    X: np.ndarray,
    y: np.ndarray,
    W: np.ndarray | WeightDraws,
    family: Family,
    beta0: np.ndarray,
    *,
    tol: float = 1e-8,
    max_iter: int = 25,
    information: Information = "observed",
    precision: Precision = "mixed",
    chunk: int = 512,
    n_threads: int = 2,
    progress: Callable[[int], None] | None = None,
) -> BatchedFit:
    """Fit B weighted binary GLMs at once; row b of ``W`` holds the weights of fit b.

    Newton's method from ``beta0`` (normally the full-sample estimate). A replicate has
    converged when its largest coefficient step is at most ``tol * (1 + max|beta|)``; the
    step is applied, so the estimate agrees with a tightly converged float64 refit to well
    below ``tol``. A replicate still moving after ``max_iter`` iterations (25, as R's
    ``glm.control``; Newton from a warm start needs 5-8) is reported, not waited for: it is
    diagnosed as separated, singular or at the iteration limit. ``information="observed"``
    (the default) gives quadratic convergence for
    every link; the choice changes the path, not the estimate. ``precision="float64"`` turns
    off the float32 phase. ``progress`` is called with the number of replicates finished.
    ``W`` may be a :class:`~smesurvival.inference.resample.WeightDraws`: each worker thread
    then draws the weights of its chunk (one draw block) just before refitting it, so the
    (B, N) matrix is never formed.
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    draws = W if isinstance(W, WeightDraws) else None
    Wm = np.zeros((0, 0))
    if not isinstance(W, WeightDraws):
        Wm = np.atleast_2d(np.asarray(W))
        if Wm.dtype not in (np.float32, np.float64):
            Wm = Wm.astype(np.float64)
    n, p = X.shape
    shape = (draws.B, draws.n) if draws is not None else Wm.shape
    if shape[1] != n or y.shape != (n,):
        raise UsageError(f"W must be (B, {n}) and y ({n},); got W {shape} and y {y.shape}")
    if information not in ("observed", "expected"):
        raise UsageError(f"information must be 'observed' or 'expected'; got {information!r}")
    if precision not in ("mixed", "float64"):
        raise UsageError(f"precision must be 'mixed' or 'float64'; got {precision!r}")
    if chunk < 1 or n_threads < 1 or max_iter < 1:
        raise UsageError("chunk, n_threads and max_iter must be positive")
    beta0 = np.asarray(beta0, dtype=np.float64)
    wbar = draws.mean_row() if draws is not None else np.asarray(Wm.mean(axis=0), dtype=np.float64)
    prob = _setup(X, y, wbar, family, beta0, information, tol, max_iter, precision == "mixed")
    B = shape[0]
    params = np.full((B, p), np.nan)
    status = np.zeros(B, dtype=np.int8)
    iters = np.zeros(B, dtype=np.int32)
    bt0 = np.linalg.solve(prob.A, beta0)
    # resampling counts are exact in float32: half the memory traffic, no float64 copy
    counts32 = draws is not None and draws.integral and precision == "mixed"
    if draws is not None:  # each worker draws its block just before refitting it
        starts = [draws.bounds(i)[0] for i in range(draws.n_blocks)]
        chunk = BLOCK
    else:
        starts = list(range(0, B, chunk))

    def run(s: int) -> int:
        e = min(s + chunk, B)
        Wc = draws.block(s // BLOCK, counts32) if draws is not None else Wm[s:e]
        bt, st, it = _fit_chunk(prob, Wc, bt0)
        params[s:e] = bt @ prob.A.T
        params[s:e][st != CONVERGED] = np.nan
        status[s:e], iters[s:e] = st, it
        return e - s

    threads = min(n_threads, len(starts))
    with _single_threaded_blas(True):
        if threads > 1:
            with ThreadPoolExecutor(max_workers=threads) as pool:
                for done in pool.map(run, starts):
                    if progress is not None:
                        progress(done)
        else:
            for s in starts:
                done = run(s)
                if progress is not None:
                    progress(done)
    return BatchedFit(params, status, iters)


def _setup(
    X: np.ndarray, y: np.ndarray, wbar: np.ndarray, family: Family, beta0: np.ndarray,
    information: Information, tol: float, max_iter: int, mixed: bool,
) -> _Problem:
    """Whiten the design with the information at ``beta0`` under the mean weights ``wbar``
    (any positive weights would do: whitening changes the path's conditioning, not the
    estimates); precompute products."""
    uv = _logit_uv if family.name == "logit" else _generic_uv(family, information)
    if not wbar.any():
        wbar = np.ones(X.shape[0])
    u0, v0 = uv(X @ beta0, y, True)
    assert v0 is not None
    H0 = (X * (wbar * v0)[:, None]).T @ X
    try:
        L = np.linalg.cholesky(H0)
    except np.linalg.LinAlgError:
        raise RankDeficientError(
            "the information matrix at the starting values is singular: the design has "
            "linearly dependent columns (or beta0 puts every fitted probability at 0 or 1)"
        ) from None
    A = np.linalg.inv(L).T  # X~ = X A has information A' H0 A = I
    xt = X @ A
    iu, ju = np.triu_indices(X.shape[1])
    z = xt[:, iu] * xt[:, ju]
    return _Problem(
        xt, xt.astype(np.float32), np.ascontiguousarray(xt.T),
        np.ascontiguousarray(xt.T, dtype=np.float32), z.astype(np.float32), z,
        y, y.astype(np.float32), iu, ju, A, uv, tol, _SWITCH, max_iter, mixed, _IDENTITY_FIRST,
        (xt * u0[:, None]).astype(np.float32),
    )


def _unpack(prob: _Problem, flat: np.ndarray) -> np.ndarray:
    """(b, q) upper triangles -> (b, p, p) symmetric float64 matrices."""
    p = prob.xt64.shape[1]
    H = np.empty((flat.shape[0], p, p))
    H[:, prob.iu, prob.ju] = flat
    H[:, prob.ju, prob.iu] = flat
    return H


def _near_singular(H: np.ndarray, idx: np.ndarray, size: np.ndarray, low: bool) -> np.ndarray:
    """Mask of float64 informations behind an implausibly long step that are numerically singular.

    In whitened coordinates the full-sample information is the identity and a replicate's
    step is in standard-error units, so a step over ``_HUGE_STEP`` is suspect; its
    information is declared singular (a rank-deficient weighted design, e.g. a category
    with zero weight) when its condition number exceeds 1e10.
    """
    out = np.zeros(size.shape, dtype=bool)
    sus = np.flatnonzero(size > _HUGE_STEP) if not low else np.zeros(0, dtype=np.int64)
    if sus.size:
        with np.errstate(all="ignore"):
            out[sus] = ~(np.linalg.cond(H[idx[sus]]) <= 1e10)
    return out


def _solve(H: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Solve each H_b x = g_b; a mask of the systems that are singular or not finite."""
    bad = ~(np.isfinite(H).all(axis=(1, 2)) & np.isfinite(g).all(axis=1))
    Hs = np.where(bad[:, None, None], np.eye(H.shape[1]), H)
    gs = np.where(bad[:, None], 0.0, g)
    try:
        return np.linalg.solve(Hs, gs[..., None])[..., 0], bad
    except np.linalg.LinAlgError:
        out = np.zeros_like(gs)
        for i in range(Hs.shape[0]):  # rare: find which replicate is singular
            try:
                out[i] = np.linalg.solve(Hs[i], gs[i])
            except np.linalg.LinAlgError:
                bad[i] = True
        return out, bad


def _factor(H: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lower Cholesky factors of each H_b; a mask of those that are not finite or not
    positive definite (their factor is the identity: they are solved by LU instead)."""
    p = H.shape[1]
    bad = ~np.isfinite(H).all(axis=(1, 2))
    Hs = np.where(bad[:, None, None], np.eye(p), H) if bad.any() else H
    try:
        return np.linalg.cholesky(Hs), bad
    except np.linalg.LinAlgError:
        L = np.tile(np.eye(p), (H.shape[0], 1, 1))
        for i in np.flatnonzero(~bad).tolist():  # rare: find which replicate is not definite
            try:
                L[i] = np.linalg.cholesky(Hs[i])
            except np.linalg.LinAlgError:
                bad[i] = True
        return L, bad


def _chol_solve(L: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Solve each L_b L_b' x = g_b by forward and back substitution, vectorised over the
    replicates (p small steps: cheaper than a batched LU solve, and a chord step reuses L)."""
    p = g.shape[1]
    z = np.empty_like(g)
    for j in range(p):
        z[:, j] = (g[:, j] - np.einsum("bk,bk->b", L[:, j, :j], z[:, :j])) / L[:, j, j]
    x = np.empty_like(g)
    for j in range(p - 1, -1, -1):
        x[:, j] = (z[:, j] - np.einsum("bk,bk->b", L[:, j + 1:, j], x[:, j + 1:])) / L[:, j, j]
    return x


def _step(hess: np.ndarray, chol: np.ndarray, has_chol: np.ndarray, sel: slice | np.ndarray,
          g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Newton (or chord) steps H_b^-1 g_b for the replicates ``sel`` from their Cholesky
    factors, LU where a factor is missing; a mask of the systems singular or not finite."""
    bad = ~np.isfinite(g).all(axis=1)
    use = has_chol[sel] & ~bad
    if use.all():
        return _chol_solve(chol[sel], g), bad
    rows = np.arange(hess.shape[0])[sel]
    step = np.zeros_like(g)
    if use.any():
        step[use] = _chol_solve(chol[rows[use]], g[use])
    lu = ~use & ~bad
    if lu.any():
        step[lu], bad_lu = _solve(hess[rows[lu]], g[lu])
        bad[np.flatnonzero(lu)[bad_lu]] = True
    return step, bad


def _fit_chunk(
    prob: _Problem, Wc: np.ndarray, bt0: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Newton on one chunk of replicates (whitened coordinates); returns beta~, status, iters."""
    b, p = Wc.shape[0], bt0.size
    # float32 weights come only as exact counts: the float64 steps multiply by them directly
    W32 = np.asarray(Wc, dtype=np.float32)
    W64 = W32 if Wc.dtype == np.float32 else np.asarray(Wc, dtype=np.float64)
    beta = np.tile(bt0, (b, 1))
    status = np.full(b, MAX_ITER, dtype=np.int8)
    iters = np.zeros(b, dtype=np.int32)
    hess = np.tile(np.eye(p), (b, 1, 1))  # last information formed (whitened: I at beta0)
    chol = hess.copy()  # its Cholesky factor (reused by the chord steps)
    has_chol = np.ones(b, dtype=bool)  # False: not positive definite, solved by LU
    last = np.full(b, np.inf)  # last step size (whitened), for the chord safeguard
    prev32 = np.full(b, np.inf)  # last float32 Newton step
    rate = np.full(b, np.inf)  # predicted contraction rate of the chord steps
    # phase per replicate: 0 float32 Newton, 1 float64 chord (reuses hess), 2 float64 Newton
    phase = np.zeros(b, dtype=np.int8) if prob.mixed else np.full(b, 2, dtype=np.int8)
    if prob.identity_first:
        phase[:] = 3 if prob.mixed else 1  # first step: full-sample information (identity)
    active = np.arange(b)
    A = prob.A
    for it in range(1, prob.max_iter + 1):
        if active.size == 0:
            break
        iters[active] = it
        groups = [(ph, active[phase[active] == ph]) for ph in (3, 0, 1, 2)]
        for ph, idx in groups:
            if idx.size == 0:
                continue
            low = ph in (0, 3)
            xT = prob.xtT32 if low else prob.xtT64
            xt = prob.xt32 if low else prob.xt64
            Wall = W32 if low else W64
            whole = idx.size == b  # every replicate of the chunk: slices, no gathers
            sel: slice | np.ndarray = slice(None) if whole else idx
            Wi = Wall[sel]
            newton = ph in (0, 2)
            v = None
            if ph == 3:  # every replicate is at beta0, where u is common: g = W (u0 * X~)
                g = (Wi @ prob.u0x32).astype(np.float64)
            else:
                eta = beta[sel].astype(xT.dtype) @ xT
                u, v = prob.uv(eta, prob.y32 if low else prob.y64, newton)
                u *= Wi
                g = (u @ xt).astype(np.float64)
            if newton:
                assert v is not None
                v *= Wi
                flat = (v @ (prob.z32 if low else prob.z64)).astype(np.float64)
                hess[sel] = _unpack(prob, flat)
                L, nonpd = _factor(hess[sel])
                chol[sel], has_chol[sel] = L, ~nonpd
            if ph == 3:  # the full-sample information is the identity: the step is the score
                step, bad = g, ~np.isfinite(g).all(axis=1)
                step[bad] = 0.0
            else:
                step, bad = _step(hess, chol, has_chol, sel, g)
            size = np.abs(step).max(axis=1)
            bad |= _near_singular(hess, idx, size, low)
            status[idx[bad]] = SINGULAR
            finite = np.isfinite(size) & ~bad
            status[idx[~np.isfinite(size) & ~bad]] = NONFINITE
            if low:  # an implausibly long float32 step: redo it with a float64 information
                redo = finite & (size > _HUGE_STEP)
                phase[idx[redo]] = 2
                finite &= ~redo
            beta[sel] += np.where(finite[:, None], step, 0.0)
            if low:
                phase[idx[finite]] = 0
                switch = finite & (size < prob.switch)
                phase[idx[switch]] = 1
                # Newton's quadratic rate e' = C e^2 gives C ~ s_k / s_(k-1)^2; the chord steps
                # reuse the information formed a distance ~ s_k from the solution, so they
                # contract by about 2 C s_k = 2 (s_k / s_(k-1))^2: predicted with a factor 10 to spare
                if ph == 0:  # (the identity step is no Newton step)
                    prev = prev32[idx]
                    with np.errstate(divide="ignore", invalid="ignore"):
                        q = size / prev
                    quad = switch & np.isfinite(prev) & (q < 0.5)
                    rate[idx[quad]] = 20.0 * q[quad] ** 2
                    prev32[idx] = size
            else:
                orig = np.abs(step @ A.T).max(axis=1)
                scale = 1.0 + np.abs(beta[sel] @ A.T).max(axis=1)
                # also done when the step just applied leaves a predicted remainder below tol:
                # with contraction ratio r = size / last, the error left is about orig r / (1 - r)
                prev = last[idx]
                ok = np.isfinite(prev) & (prev > 0) & np.isfinite(size)
                ratio = np.ones_like(size)
                ratio[ok] = size[ok] / prev[ok]
                if ph == 1:  # first chord step: the rate predicted from the Newton steps
                    first = ~ok & np.isfinite(rate[idx]) & np.isfinite(size)
                    ratio[first] = rate[idx][first]
                    ok |= first
                with np.errstate(over="ignore", invalid="ignore"):  # diverging replicates
                    left = orig * ratio / np.maximum(1.0 - ratio, 1e-12)
                by_ratio = (ratio < 0.5) & (left <= 0.1 * prob.tol * scale)
                if ph == 2:  # Newton: quadratic, the step bounds what is left
                    done = finite & ((orig <= prob.tol * scale) | by_ratio)
                else:  # chord: linear, only the contraction rate bounds what is left
                    done = finite & (by_ratio | (~ok & (orig <= 1e-3 * prob.tol * scale)))
                status[idx[done]] = CONVERGED
                if ph == 1:  # chord steps must shrink fast; otherwise form a float64 Hessian
                    phase[idx[~done & (size > 0.25 * last[idx])]] = 2
            # a float32 Newton step says nothing about the chord steps' contraction rate
            last[idx] = np.inf if low else size
        active = active[status[active] == MAX_ITER]
    for i in np.flatnonzero((status == MAX_ITER) | (status == SINGULAR)).tolist():
        status[i] = _diagnose(prob, W64[i].astype(np.float64), beta[i], int(status[i]))
    return beta, status, iters


def _diagnose(prob: _Problem, w: np.ndarray, bt: np.ndarray, code: int) -> int:
    """Why a replicate failed: a rank-deficient weighted design, separation, or ``code``.

    Separation shows as a positively weighted row with a linear predictor beyond +-18 (a
    fitted probability within about 1e-8 of 0 or 1) while Newton runs off to infinity.
    """
    pos = w > 0
    if np.linalg.matrix_rank(prob.xt64[pos]) < prob.xt64.shape[1]:
        return SINGULAR
    eta = prob.xt64[pos] @ bt
    return SEPARATED if not (np.abs(eta) <= 18.0).all() else code


# ----------------------------------------------------------------------------------------
# Cox, Efron or Breslow ties


def fit_cox_batched(
    time: np.ndarray,
    event: np.ndarray,
    X: np.ndarray,
    W: np.ndarray,
    beta0: np.ndarray,
    *,
    ties: Ties = "efron",
    tol: float = 1e-8,
    max_iter: int = 50,
    chunk: int = 128,
    n_threads: int = 2,
    progress: Callable[[int], None] | None = None,
) -> BatchedFit:
    """B case-weighted Cox fits at once: Efron or Breslow ties, one stratum, no entry times.

    Row b of ``W`` holds the case weights of fit b; as in :func:`~smesurvival.models.cox.fit_cox`
    a death with weight 0 is no event, so the number of tied deaths -- and Efron's terms --
    varies by replicate (the l-th term of a time exists where l < m_k(b)). With the per-time
    scalars a_k = sum_l wt/den and B_k = sum_l wt f/den, the B scores are one product
    (W delta - r (c - delta B)) X with c_i = sum_{k <= k_i} a_k, and the risk-set part of the B
    informations one GEMM with Z, the upper-triangle products x_ij x_ik (the binary-GLM
    trick); the Efron means enter through alpha S1 S1' - beta (S1 E1' + E1 S1') + gamma E1 E1'
    per time, as in the memory kernel (:mod:`~smesurvival.models.cox_kernel`).
    """
    check_choice(ties, ("efron", "breslow"), "ties")
    time = np.asarray(time, dtype=np.float64)
    event = np.asarray(event, dtype=np.float64)
    X = np.asarray(X, dtype=np.float64)
    W = np.atleast_2d(np.asarray(W, dtype=np.float64))
    n, p = X.shape
    if W.shape[1] != n or time.shape != (n,) or event.shape != (n,):
        raise UsageError(f"time and event must be ({n},) and W (B, {n})")
    order = np.argsort(time, kind="stable")
    Xs, ev = X[order], event[order]
    ut = np.unique(time[event > 0])
    k_exit = np.searchsorted(ut, time[order], side="right")  # 0..K, non-decreasing
    K = ut.size
    starts = np.flatnonzero(np.r_[True, np.diff(k_exit) > 0])  # first row of each id group
    group_k = k_exit[starts]
    iu, ju = np.triu_indices(p)
    deaths = np.flatnonzero(ev > 0)
    kd = k_exit[deaths]
    # Efron term l of time k for the l-th death row of that time (rows in time order)
    first = np.searchsorted(kd, kd, side="left")
    ell = np.arange(deaths.size) - first
    cx = _CoxArrays(Xs, Xs[:, iu] * Xs[:, ju], ev, k_exit, starts, group_k, K, iu, ju,
                    deaths, kd, ell.astype(float), ties == "efron")
    B = W.shape[0]
    params = np.full((B, p), np.nan)
    status = np.zeros(B, dtype=np.int8)
    iters = np.zeros(B, dtype=np.int32)
    beta0 = np.asarray(beta0, dtype=np.float64)

    def run(s: int) -> None:
        e = min(s + chunk, B)
        bt, st, it = _cox_chunk(cx, W[s:e][:, order], beta0, tol, max_iter)
        params[s:e] = np.where((st == CONVERGED)[:, None], bt, np.nan)
        status[s:e], iters[s:e] = st, it
        if progress is not None:
            progress(e - s)

    chunk_starts = list(range(0, B, chunk))
    threads = min(n_threads, len(chunk_starts))
    with _single_threaded_blas(True):
        if threads > 1:
            with ThreadPoolExecutor(max_workers=threads) as pool:
                list(pool.map(run, chunk_starts))
        else:
            for s in chunk_starts:
                run(s)
    return BatchedFit(params, status, iters)


@dataclass(frozen=True)
class _CoxArrays:
    """Rows sorted by time and their event-time ids, shared by all chunks."""

    X: np.ndarray
    Z: np.ndarray
    event: np.ndarray
    k_exit: np.ndarray
    starts: np.ndarray
    group_k: np.ndarray
    K: int
    iu: np.ndarray
    ju: np.ndarray
    deaths: np.ndarray  # (D,) death rows (in time order)
    k_death: np.ndarray  # (D,) their event-time ids
    ell: np.ndarray  # (D,) index of each death among the deaths of its time: Efron's l
    efron: bool


def _per_time_sums(cx: _CoxArrays, a: np.ndarray) -> np.ndarray:
    """Risk-set sums over rows with exit id >= k, k = 0..K, along axis 1 of ``a`` (b, N, ...)."""
    grouped = np.add.reduceat(a, cx.starts, axis=1)
    out = np.zeros((a.shape[0], cx.K + 2) + a.shape[2:])
    out[:, cx.group_k] = grouped
    return np.cumsum(out[:, ::-1], axis=1)[:, ::-1][:, : cx.K + 1]


def _by_time(cx: _CoxArrays, a: np.ndarray) -> np.ndarray:
    """Sums of ``a`` (b, D) over the Efron terms (or deaths) of each event time: (b, K+1)."""
    out = np.zeros((a.shape[0], cx.K + 1))
    np.add.at(out.T, cx.k_death, a.T)
    return out


def _cox_chunk(
    cx: _CoxArrays, Wc: np.ndarray, beta0: np.ndarray, tol: float, max_iter: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Efron (or Breslow) Newton on one chunk of replicates (rows in time order)."""
    b, p = Wc.shape[0], cx.X.shape[1]
    beta = np.tile(beta0, (b, 1))
    status = np.full(b, MAX_ITER, dtype=np.int8)
    iters = np.zeros(b, dtype=np.int32)
    wd = Wc * cx.event
    kd, Xd = cx.k_death, cx.X[cx.deaths]
    w_death = Wc[:, cx.deaths]  # (b, D)
    d = _by_time(cx, w_death)  # weighted deaths per time
    m = _by_time(cx, (w_death > 0).astype(float))  # deaths with weight > 0: Efron's m_k(b)
    d[:, 0] = 0.0
    if cx.efron:
        # the l-th term of a time exists where l < m_k(b); its weight is d_k / m_k
        on = cx.ell[None, :] < m[:, kd]
        with np.errstate(divide="ignore", invalid="ignore"):
            frac = np.where(on, cx.ell[None, :] / m[:, kd], 0.0)
            wt = np.where(on, d[:, kd] / m[:, kd], 0.0)
    active = np.arange(b)
    for it in range(1, max_iter + 1):
        if active.size == 0:
            break
        iters[active] = it
        eta = beta[active] @ cx.X.T
        eta -= eta.max(axis=1, keepdims=True)
        r = Wc[active] * np.exp(eta)
        s0 = _per_time_sums(cx, r)  # (a, K+1)
        s1 = _per_time_sums(cx, r[:, :, None] * cx.X[None])  # (a, K+1, p)
        da = d[active]
        rc: np.ndarray
        with np.errstate(divide="ignore", invalid="ignore"):
            if cx.efron:
                rd = r[:, cx.deaths]  # (a, D)
                e0 = _by_time(cx, rd)
                e1 = np.einsum("bd,dj,dk->bkj", rd, Xd, _indicator(cx), optimize=True)
                fa, wa = frac[active], wt[active]
                den = s0[:, kd] - fa * e0[:, kd]
                q = np.where(wa > 0, wa / den, 0.0)
                a_k, b_k = _by_time(cx, q), _by_time(cx, q * fa)
                q2 = np.where(wa > 0, q / den, 0.0)
                alpha, beta_k, gamma = _by_time(cx, q2), _by_time(cx, q2 * fa), _by_time(cx, q2 * fa**2)
            else:
                a_k = np.where(da > 0, da / s0, 0.0)
                alpha = np.where(da > 0, da / s0**2, 0.0)
        c = np.cumsum(a_k, axis=1)[:, cx.k_exit]  # (a, N)
        rc = r * c
        if cx.efron:
            rc[:, cx.deaths] -= rd * b_k[:, kd]
        grad = (wd[active] - rc) @ cx.X  # = sum w x - sum_k (a_k S1_k - B_k E1_k)
        flat = rc @ cx.Z
        a_ = active.size
        H = np.empty((a_, p, p))
        H[:, cx.iu, cx.ju] = flat
        H[:, cx.ju, cx.iu] = flat
        H -= np.einsum("bk,bki,bkj->bij", alpha, s1, s1, optimize=True)
        if cx.efron:
            se = np.einsum("bk,bki,bkj->bij", beta_k, s1, e1, optimize=True)
            H += se + se.transpose(0, 2, 1)
            H -= np.einsum("bk,bki,bkj->bij", gamma, e1, e1, optimize=True)
        step, bad = _solve(H, grad)
        size = np.abs(step).max(axis=1)
        ok = np.isfinite(size) & ~bad
        status[active[bad]] = SINGULAR
        status[active[~np.isfinite(size) & ~bad]] = NONFINITE
        beta[active] += np.where(ok[:, None], step, 0.0)
        done = ok & (size <= tol * (1.0 + np.abs(beta[active]).max(axis=1)))
        status[active[done]] = CONVERGED
        active = active[status[active] == MAX_ITER]
    return beta, status, iters


def _indicator(cx: _CoxArrays) -> np.ndarray:
    """(D, K+1) 0/1 matrix: death row -> its event time."""
    out = np.zeros((cx.deaths.size, cx.K + 1))
    out[np.arange(cx.deaths.size), cx.k_death] = 1.0
    return out
