"""Properties every estimator must have, checked on data hypothesis draws (a seed, a size,
true coefficients, a rescaling factor, weights, a batch size):

- the order of the rows does not matter (logit; Cox with tied times, Efron and Breslow);
- multiplying a covariate by c divides its coefficient and its SE by c, and leaves every other
  coefficient and the log-likelihood alone (logit, Cox);
- integer frequency weights give the fit on the rows repeated that many times (logit; Cox
  with Breslow ties -- see the note at the Cox test for Efron);
- a column that duplicates another (or a multiple of it) stops the fit with RankDeficientError
  naming it (logit, Cox);
- the stream engine gives the in-memory numbers to 1e-8, whatever the batch size.

Examples are few and derandomised (a fixed set per test, no example database written), so the
suite stays fast and repeatable; each is a full fit. Set SMESURVIVAL_PROPERTY_EXAMPLES to explore
more, random examples.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from smesurvival.errors import ConvergenceError, RankDeficientError, SeparationError
from smesurvival.models.cox import fit_cox
from smesurvival.models.fit import fit
from smesurvival.models.result import FitResult
from smesurvival.scale.stream import fit_stream

#: A fixed, fast set of examples per test; SMESURVIVAL_PROPERTY_EXAMPLES=200 draws that many at
#: random instead, to explore.
_EXPLORE = os.environ.get("SMESURVIVAL_PROPERTY_EXAMPLES")
FEW = settings(max_examples=int(_EXPLORE or 12), derandomize=_EXPLORE is None, deadline=None,
               database=None, suppress_health_check=[HealthCheck.too_slow])
LOGIT = "y ~ x1 + x2 + z"
COX = "x1 + x2 + z"

seeds = st.integers(0, 2**32 - 1)
sizes = st.integers(80, 400)
coefs = st.floats(-1.2, 1.2, allow_nan=False)
factors = st.tuples(st.floats(0.01, 100.0, allow_nan=False), st.booleans()).map(
    lambda t: t[0] if t[1] else -t[0])


def binary_data(seed: int, n: int, b: tuple[float, float, float]) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x1 = rng.normal(size=n)
    x2 = rng.uniform(0, 3, size=n)
    z = rng.binomial(1, 0.4, size=n)
    eta = -0.4 + b[0] * x1 + b[1] * (x2 - 1.5) + b[2] * z
    y = rng.binomial(1, 1 / (1 + np.exp(-eta)))
    return pd.DataFrame({"y": y, "x1": x1, "x2": x2, "z": z})


def survival_data(seed: int, n: int, b: tuple[float, float, float]) -> pd.DataFrame:
    """Exponential times, uniform censoring, times coarsened to quarters (many ties)."""
    rng = np.random.default_rng(seed)
    x1 = rng.normal(size=n)
    x2 = rng.uniform(0, 3, size=n)
    z = rng.binomial(1, 0.5, size=n)
    rate = 0.3 * np.exp(b[0] * x1 + b[1] * (x2 - 1.5) + b[2] * z)
    t_event = rng.exponential(1 / rate)
    t_cens = rng.uniform(0.5, 6.0, size=n)
    t = np.ceil(np.minimum(t_event, t_cens) * 4) / 4
    d = (t_event <= t_cens).astype(int)
    return pd.DataFrame({"t": t, "d": d, "x1": x1, "x2": x2, "z": z})


def logit(data: pd.DataFrame, formula: str = LOGIT, **kw: object) -> FitResult:
    try:
        return fit(formula, data, **kw)  # type: ignore[arg-type]
    except (SeparationError, ConvergenceError):
        assume(False)  # no MLE for this draw: not a counterexample
        raise


def cox(data: pd.DataFrame, formula: str = COX, **kw: object) -> FitResult:
    try:
        return fit_cox(formula, data, duration="t", event="d", concordance=False, **kw)  # type: ignore[arg-type]
    except (SeparationError, ConvergenceError):
        assume(False)
        raise


def same_fit(a: FitResult, b: FitResult, rtol: float = 1e-8) -> None:
    assert a.terms == b.terms
    np.testing.assert_allclose(a.params, b.params, rtol=rtol, atol=1e-10)
    np.testing.assert_allclose(a.se, b.se, rtol=rtol, atol=1e-12)
    assert a.loglik == pytest.approx(b.loglik, rel=rtol, abs=1e-9)


def shuffled(data: pd.DataFrame, seed: int) -> pd.DataFrame:
    order = np.random.default_rng(seed).permutation(len(data))
    return data.iloc[order].reset_index(drop=True)


# ------------------------------------------------------------------ row order


@FEW
@given(seed=seeds, n=sizes, b=st.tuples(coefs, coefs, coefs), order=seeds)
def test_logit_ignores_row_order(seed: int, n: int, b: tuple[float, float, float], order: int) -> None:
    d = binary_data(seed, n, b)
    same_fit(logit(d), logit(shuffled(d, order)))


@FEW
@given(seed=seeds, n=sizes, b=st.tuples(coefs, coefs, coefs), order=seeds,
       ties=st.sampled_from(["efron", "breslow"]))
def test_cox_ignores_row_order(seed: int, n: int, b: tuple[float, float, float], order: int,
                               ties: str) -> None:
    d = survival_data(seed, n, b)
    assert d["t"].duplicated().any()  # tied times: where the order could matter
    same_fit(cox(d, ties=ties), cox(shuffled(d, order), ties=ties))


# ------------------------------------------------------------------ rescaling


def check_rescaled(a: FitResult, b: FitResult, term: str, c: float) -> None:
    j = a.terms.index(term)
    np.testing.assert_allclose(b.params[j] * c, a.params[j], rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(b.se[j] * abs(c), a.se[j], rtol=1e-7)
    others = [k for k in range(len(a.terms)) if k != j and a.terms[k] != "Intercept"]
    np.testing.assert_allclose(b.params[others], a.params[others], rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(b.se[others], a.se[others], rtol=1e-7)
    assert b.loglik == pytest.approx(a.loglik, rel=1e-10)


@FEW
@given(seed=seeds, n=sizes, b=st.tuples(coefs, coefs, coefs), c=factors,
       term=st.sampled_from(["x1", "x2"]))
def test_logit_rescaling_a_covariate_rescales_its_coefficient(
        seed: int, n: int, b: tuple[float, float, float], c: float, term: str) -> None:
    d = binary_data(seed, n, b)
    check_rescaled(logit(d), logit(d.assign(**{term: d[term] * c})), term, c)


@FEW
@given(seed=seeds, n=sizes, b=st.tuples(coefs, coefs, coefs), c=factors,
       term=st.sampled_from(["x1", "x2"]))
def test_cox_rescaling_a_covariate_rescales_its_coefficient(
        seed: int, n: int, b: tuple[float, float, float], c: float, term: str) -> None:
    d = survival_data(seed, n, b)
    check_rescaled(cox(d), cox(d.assign(**{term: d[term] * c})), term, c)


# ------------------------------------------------------------------ frequency weights


def repeated(d: pd.DataFrame) -> pd.DataFrame:
    return d.loc[d.index.repeat(d["w"].astype(int))].reset_index(drop=True)


@FEW
@given(seed=seeds, n=sizes, b=st.tuples(coefs, coefs, coefs), wseed=seeds,
       vcov=st.sampled_from(["classical", "hc0"]))
def test_logit_frequency_weights_equal_repeated_rows(
        seed: int, n: int, b: tuple[float, float, float], wseed: int, vcov: str) -> None:
    d = binary_data(seed, n, b)
    d["w"] = np.random.default_rng(wseed).integers(1, 5, size=n).astype(float)
    weighted = logit(d, weights="w", weights_kind="frequency", vcov=vcov)
    same_fit(weighted, logit(repeated(d), vcov=vcov))
    assert weighted.sum_weights == pytest.approx(float(d["w"].sum()))


@FEW
@given(seed=seeds, n=sizes, b=st.tuples(coefs, coefs, coefs), wseed=seeds)
def test_cox_frequency_weights_equal_repeated_rows(
        seed: int, n: int, b: tuple[float, float, float], wseed: int) -> None:
    """Breslow ties. With Efron's, a weight of 2 on one event is not two tied events: like R's
    coxph, the Efron correction counts event rows, so weights and repeats differ by design."""
    d = survival_data(seed, n, b)
    d["w"] = np.random.default_rng(wseed).integers(1, 5, size=n).astype(float)
    same_fit(cox(d, weights="w", ties="breslow"), cox(repeated(d), ties="breslow"))


# ------------------------------------------------------------------ collinearity


@FEW
@given(seed=seeds, n=sizes, b=st.tuples(coefs, coefs, coefs), source=st.sampled_from(["x1", "x2", "z"]),
       c=factors, model=st.sampled_from(["logit", "cox"]))
def test_a_duplicate_column_is_reported_as_collinear(
        seed: int, n: int, b: tuple[float, float, float], source: str, c: float, model: str) -> None:
    if model == "logit":
        d = binary_data(seed, n, b).assign(dup=lambda f: f[source] * c)
        run = lambda: fit(LOGIT + " + dup", d)  # noqa: E731
    else:
        d = survival_data(seed, n, b).assign(dup=lambda f: f[source] * c)
        run = lambda: fit_cox(COX + " + dup", d, duration="t", event="d", concordance=False)  # noqa: E731
    with pytest.raises(RankDeficientError, match=r"rank deficient.*'dup'") as info:
        run()
    assert f"'{source}'" in str(info.value)


# ------------------------------------------------------------------ engines


@FEW
@given(seed=seeds, n=sizes, b=st.tuples(coefs, coefs, coefs), batch=st.integers(7, 150),
       vcov=st.sampled_from(["classical", "hc1", "cluster"]),
       model=st.sampled_from(["logit", "probit", "cloglog"]))
def test_stream_engine_equals_memory_engine(
        seed: int, n: int, b: tuple[float, float, float], batch: int, vcov: str, model: str) -> None:
    d = binary_data(seed, n, b)
    d["firm"] = np.arange(n) // 3
    kw = {"vcov": vcov, "cluster": "firm" if vcov == "cluster" else None, "model": model}
    memory = logit(d, **kw)
    streamed = fit_stream(LOGIT, d, batch_rows=batch, **kw)  # type: ignore[arg-type]
    same_fit(memory, streamed, rtol=1e-8)
    assert (streamed.nobs, streamed.n_events) == (memory.nobs, memory.n_events)
