"""The Cox kernel's fast paths equal a textbook computation of the partial likelihood.

The reference below is the Efron (or Breslow) log partial likelihood, score and observed
information written as a loop over event times with masks over all rows (the formulas of
Therneau & Grambsch 2000, sec. 3.3), with strata, entry times and case weights. The kernel --
rows in two halves on two threads, cache-sized blocks, scipy's in-place CSC products, one
pass when it is given a shift hint -- must give the same sums to 1e-11 whatever path it
takes, and a Newton fit must not depend on them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import smesurvival.models.cox_kernel as ck
from smesurvival.models.cox import cox_newton

N = 5 * ck._BLOCK + 5_000  # two halves of several blocks each, the last block partial


def textbook(X: np.ndarray, time: np.ndarray, event: np.ndarray, beta: np.ndarray, *,
             entry: np.ndarray | None = None, strata: np.ndarray | None = None,
             weights: np.ndarray | None = None, ties: str = "efron") -> tuple[float, np.ndarray, np.ndarray]:
    """(log partial likelihood, score, information) by a loop over (stratum, event time)."""
    n, p = X.shape
    w = np.ones(n) if weights is None else weights
    start = np.full(n, -np.inf) if entry is None else entry
    st = np.zeros(n) if strata is None else strata
    r = w * np.exp(X @ beta)
    ll, U, info = 0.0, np.zeros(p), np.zeros((p, p))
    for s in np.unique(st):
        for t in np.unique(time[(st == s) & (event > 0) & (w > 0)]):
            risk = (st == s) & (start < t) & (time >= t)
            dead = risk & (time == t) & (event > 0) & (w > 0)
            m = int(dead.sum())
            d = w[dead].sum()
            S0, S1 = r[risk].sum(), r[risk] @ X[risk]
            S2 = (X[risk] * r[risk, None]).T @ X[risk]
            E0, E1 = r[dead].sum(), r[dead] @ X[dead]
            E2 = (X[dead] * r[dead, None]).T @ X[dead]
            ll += (w[dead] * (X[dead] @ beta)).sum()
            U += w[dead] @ X[dead]
            for ell in range(m):
                f = ell / m if ties == "efron" else 0.0
                den = S0 - f * E0
                mean = (S1 - f * E1) / den
                ll -= d / m * np.log(den)
                U -= d / m * mean
                info += d / m * ((S2 - f * E2) / den - np.outer(mean, mean))
    return ll, U, info


def cohort(n: int, seed: int, *, weights: bool = False, entry: bool = False,
           strata: bool = False) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    X = np.column_stack([rng.standard_normal(n), rng.random(n) < 0.3, rng.gamma(2.0, 1.0, n)])
    time = rng.integers(1, 40, n).astype(float)  # heavy ties: 39 distinct times
    event = (rng.random(n) < 0.6).astype(float)
    out: dict[str, Any] = {"X": X, "time": time, "event": event}
    if weights:
        out["weights"] = rng.integers(0, 4, n).astype(float)  # zeros too: rows not drawn
    if entry:
        out["entry"] = np.floor(rng.random(n) * (time - 0.5))
    if strata:
        out["strata"] = rng.integers(0, 3, n)
    return out


BETA = np.array([0.3, -0.5, 0.1])
CASES = {
    "plain": {},
    "weights": {"weights": True},
    "entry and strata": {"entry": True, "strata": True},
    "all": {"weights": True, "entry": True, "strata": True},
}


def assert_sums(got: ck.CoxSums, want: tuple[float, np.ndarray, np.ndarray]) -> None:
    ll, U, info = want
    assert got.loglik == pytest.approx(ll, rel=1e-11)
    np.testing.assert_allclose(got.grad, U, rtol=1e-9, atol=1e-9 * np.abs(info).max())
    np.testing.assert_allclose(got.info, info, rtol=1e-11, atol=1e-11 * np.abs(info).max())


@pytest.mark.parametrize("ties", ["efron", "breslow"])
@pytest.mark.parametrize("name", list(CASES))
def test_kernel_equals_textbook_on_two_halves_of_blocks(name: str, ties: str) -> None:
    d = cohort(N, 3, **CASES[name])
    parts = ck._parts(N)
    assert len(parts) == 2 and min(z - a for a, z in parts) >= 2 * ck._BLOCK
    kw = {k: d.get(k) for k in ("entry", "strata", "weights")}
    rs = ck.build_risk_sets(d["time"], d["event"], ties=ties, **kw)  # type: ignore[arg-type]
    want = textbook(d["X"], d["time"], d["event"], BETA, ties=ties, **kw)
    X = np.ascontiguousarray(d["X"])
    assert_sums(ck.cox_partial_sums(rs, X, BETA), want)  # two passes: eta first
    hint = float((X @ BETA).max())
    assert_sums(ck.cox_partial_sums(rs, X, BETA, shift_hint=hint - 7.0), want)  # one pass


def test_paths_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    """A shift hint near or far, the public sparse product, one part, column-major X."""
    d = cohort(N, 5, weights=True, entry=True)
    rs = ck.build_risk_sets(d["time"], d["event"], entry=d["entry"], weights=d["weights"])
    X = np.ascontiguousarray(d["X"])
    base = ck.cox_partial_sums(rs, X, BETA)
    top = base.state.eta_max
    variants = {
        "hint close": ck.cox_partial_sums(rs, X, BETA, shift_hint=top + 250.0),
        "hint far (recomputed)": ck.cox_partial_sums(rs, X, BETA, shift_hint=top + 5000.0),
        "hint NaN": ck.cox_partial_sums(rs, X, BETA, shift_hint=float("nan")),
        "column-major X": ck.cox_partial_sums(rs, np.asfortranarray(X), BETA),
    }
    monkeypatch.setattr(ck, "_CSC_MATVECS", None)
    variants["public sparse product"] = ck.cox_partial_sums(rs, X, BETA, shift_hint=top)
    monkeypatch.setattr(ck, "_PARALLEL_ROWS", 10 * N)
    variants["one part"] = ck.cox_partial_sums(rs, X, BETA)
    for name, got in variants.items():
        assert got.loglik == pytest.approx(base.loglik, rel=1e-12), name
        np.testing.assert_allclose(got.grad, base.grad, rtol=1e-9, atol=1e-9, err_msg=name)
        np.testing.assert_allclose(got.info, base.info, rtol=1e-12, err_msg=name)
    assert variants["hint far (recomputed)"].state.shift == top
    assert variants["hint close"].state.shift == top + 250.0


def test_halves_give_the_same_bits_on_one_core(monkeypatch: pytest.MonkeyPatch) -> None:
    """The halves are fixed by n, not by the machine: one core sums them in the same order."""
    d = cohort(N, 7)
    rs = ck.build_risk_sets(d["time"], d["event"])
    X = np.ascontiguousarray(d["X"])
    two = ck.cox_partial_sums(rs, X, BETA, shift_hint=1.0)
    monkeypatch.setattr(ck.os, "cpu_count", lambda: 1)
    one = ck.cox_partial_sums(rs, X, BETA, shift_hint=1.0)
    assert one.loglik == two.loglik
    assert np.array_equal(one.grad, two.grad) and np.array_equal(one.info, two.info)


def test_nan_coefficients_give_a_nan_likelihood() -> None:
    d = cohort(N, 9)
    rs = ck.build_risk_sets(d["time"], d["event"])
    got = ck.cox_partial_sums(rs, np.ascontiguousarray(d["X"]), np.array([np.nan, 0.0, 0.0]), shift_hint=0.0)
    assert np.isnan(got.loglik)


def test_newton_on_two_halves_reaches_the_textbook_optimum() -> None:
    d = cohort(N, 11, weights=True, entry=True, strata=True)
    fit = cox_newton(d["X"], d["time"], d["event"], entry=d["entry"], strata=d["strata"],
                     weights=d["weights"])
    assert fit.converged
    ll, U, info = textbook(d["X"], d["time"], d["event"], fit.params, entry=d["entry"],
                        strata=d["strata"], weights=d["weights"])
    assert fit.loglik == pytest.approx(ll, rel=1e-12)
    assert np.abs(np.linalg.solve(info, U)).max() < 1e-10  # the score vanishes: no Newton step left
    np.testing.assert_allclose(fit.info, info, rtol=1e-8)
