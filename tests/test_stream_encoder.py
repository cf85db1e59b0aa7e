"""The stream engine's direct batch encoder gives formulaic's design block exactly.

:mod:`smesurvival.scale.encode` replaces formulaic on every batch of every pass when the formula
allows it. For a set of formulas (numeric columns; interactions; treatment-coded factors with
and without an intercept, and their interactions with numbers; a bare text column; a nullable
integer column; center()/standardize()), every batch of a 24k-row panel with missing values
and with categorical levels absent from some batches (one level appears only in the last rows)
encodes to the same terms and the same numbers (max abs difference 0) as the whole-data
formulaic spec; formulas outside its reach (``I(...)``, ``log(...)``) keep formulaic; and
``fit_stream`` gives the same params, SEs and log-likelihood with either encoder.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from smesurvival.errors import FormulaError
from smesurvival.models.design import ALLOWED_FUNCTIONS
from smesurvival.scale import encode as encode_mod
from smesurvival.scale import fit_stream
from smesurvival.scale import stream as stream_mod
from smesurvival.scale.encode import direct_encoder, plan_encoder
from smesurvival.scale.sources import open_source

N = 24_000
BATCH = 3_000

DIRECT = [
    "y ~ a + b + k",
    "y ~ a * b + a:k",
    "y ~ a + C(industry) + C(year)",
    "y ~ 0 + C(industry) + a",
    "y ~ 0 + C(year) + C(industry)",
    "y ~ C(industry) * a + C(year):b",
    "y ~ a:C(industry):b + k",
    "y ~ industry + size",
    "y ~ C(industry):C(k) + a",
    "y ~ center(a) + standardize(b) + standardize(size, ddof=0) * C(industry)",
    "y ~ a * b - 1 + C(k)",
]
FALLBACK = [
    "y ~ a + I(a ** 2)",
    "y ~ log(b + 1) + C(industry)",
    "y ~ C(industry, levels=['tech', 'manuf', 'retail', 'services', 'Agri']) + a",
    "y ~ standardize(log(b + 1)) + a",
]


def make_frame(seed: int = 5) -> pd.DataFrame:
    """Firm-years: numbers, a boolean, a text factor (a level only in the last rows, one absent
    from the first batches), integer years, a nullable integer; missing values in four columns."""
    rng = np.random.default_rng(seed)
    industry = rng.choice(["manuf", "retail", "services", "tech"], size=N).astype(object)
    industry[: 2 * BATCH][industry[: 2 * BATCH] == "tech"] = "retail"  # no 'tech' early on
    industry[-200:] = "Agri"  # seen only in the last batch, sorting first
    a = rng.normal(0.5, 1.0, N)
    b = rng.integers(0, 7, N)
    k = rng.random(N) < 0.4
    year = rng.integers(2001, 2009, N)
    size = rng.integers(1, 250, N)
    eta = (-1.2 + 0.4 * a - 0.1 * b + 0.3 * k + 0.05 * a * b + 0.002 * size
           + 0.3 * (industry == "tech") - 0.2 * (industry == "Agri") + 0.05 * (year - 2004))
    y = (rng.random(N) < 1.0 / (1.0 + np.exp(-eta))).astype(np.int64)
    d = pd.DataFrame({
        "firm": np.repeat(np.arange(N // 6), 6), "y": y, "a": a, "b": b, "k": k,
        "industry": industry, "year": year,
        "size": pd.array(size, dtype="Int64"), "w": rng.integers(1, 4, N).astype(float),
    })
    d.loc[rng.random(N) < 0.02, "a"] = np.nan
    d.loc[rng.random(N) < 0.01, "industry"] = None
    late = np.arange(N) > N // 2  # the integer column has its nulls only in later batches
    d.loc[late & (rng.random(N) < 0.02), "size"] = pd.NA
    d.loc[rng.random(N) < 0.005, "y"] = None
    return d


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return make_frame()


@pytest.fixture(scope="module")
def parquet(tmp_path_factory: pytest.TempPathFactory, frame: pd.DataFrame) -> Path:
    path = tmp_path_factory.mktemp("encoder") / "panel.parquet"
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path,
                   row_group_size=5_000)
    return path


def encodings(formula: str, source: Any) -> tuple[stream_mod._Encoding, list[pd.DataFrame]]:
    """The engine's encoding after its scan pass, and the batches of a later pass."""
    src = open_source(source)
    try:
        plan = stream_mod._plan(list(src.columns), formula, "classical", None, None,
                                "frequency")
        scan = stream_mod._Scan(missing=dict.fromkeys(plan.variables, 0))
        for df in src.frames(plan.needed, BATCH):
            stream_mod._scan_batch(df, scan, plan.variables, plan.parsed.variables,
                                   plan.outcome, None, None, plan.stateful, plan.c_columns,
                                   formula)
        dtypes = src.freeze()
        _, spec, terms = stream_mod._settle(scan, plan, dtypes, "logit", None, formula)
        enc = stream_mod._encoding(plan, spec, terms, scan, dtypes, None, None, formula)
        return enc, list(src.frames(plan.needed, BATCH))
    finally:
        src.close()


def assert_blocks_equal(enc: stream_mod._Encoding, batches: list[pd.DataFrame]) -> None:
    assert enc.direct is not None and enc.direct.terms == enc.terms
    formulaic = replace(enc, direct=None)
    levels_seen = set()
    for df in batches:
        got, want = enc.encode(df), formulaic.encode(df)
        assert (got is None) == (want is None)
        if got is None or want is None:
            continue
        assert got[0].shape == want[0].shape and got[0].flags.c_contiguous
        assert got[0].dtype == np.float64
        assert float(np.max(np.abs(got[0] - want[0]), initial=0.0)) == 0.0
        np.testing.assert_array_equal(got[1], want[1])
        if "industry" in df:
            levels_seen.add(frozenset(df["industry"].dropna()))
    if levels_seen:  # some batch lacked a level that others had
        assert len(levels_seen) > 1


@pytest.mark.parametrize("formula", DIRECT)
def test_direct_block_equals_formulaic_parquet(formula: str, parquet: Path) -> None:
    enc, batches = encodings(formula, parquet)
    assert_blocks_equal(enc, batches)


@pytest.mark.parametrize("formula", DIRECT)
def test_direct_block_equals_formulaic_frame(formula: str, frame: pd.DataFrame) -> None:
    enc, batches = encodings(formula, frame)
    assert_blocks_equal(enc, batches)


def test_other_dtypes(frame: pd.DataFrame) -> None:
    """Pandas categorical, nullable boolean/float/integer (as a factor too), object and str
    text columns."""
    d = frame.copy()
    d["industry"] = d["industry"].astype(pd.CategoricalDtype(
        ["tech", "manuf", "retail", "services", "Agri"]))
    d["k"] = pd.array(d["k"].to_numpy(), dtype="boolean")
    d.loc[d.index[::97], "k"] = pd.NA
    d["a"] = pd.array(d["a"].to_numpy(), dtype="Float64")
    d["region"] = pd.Series(np.where(d["b"] > 3, "north", "south"), dtype=object)
    d["zone"] = pd.Series(np.where(d["b"] > 1, "east", "west"),
                          dtype="str")
    d["grade"] = pd.array(d["b"].to_numpy() % 4, dtype="Int64")
    d.loc[d.index[5::89], "grade"] = pd.NA
    for f in ["y ~ C(industry) * a + k", "y ~ region + zone:a + C(industry)",
              "y ~ 0 + industry + C(year):k", "y ~ C(grade) * a + grade"]:
        enc, batches = encodings(f, d)
        assert_blocks_equal(enc, batches)


@pytest.mark.parametrize("formula", FALLBACK)
def test_fallback_keeps_formulaic(formula: str, parquet: Path) -> None:
    enc, _ = encodings(formula, parquet)
    assert enc.direct is None


def test_switch_forces_formulaic(parquet: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stream_mod, "_DIRECT_ENCODER", False)
    enc, _ = encodings(DIRECT[2], parquet)
    assert enc.direct is None


def test_names_and_order_follow_formulaic() -> None:
    """Kronecker order (first factor fastest), reduced and full rank, numeric names."""
    from formulaic import Formula, ModelSpec

    d = pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], "g": list("xyzxyz"),
                      "h": [1, 2, 1, 2, 1, 2]})
    for f, want in [
        ("C(g):C(h) + a", ["Intercept", "a", "C(h)[T.2]", "C(g)[T.y]:C(h)[1]",
                           "C(g)[T.z]:C(h)[1]", "C(g)[T.y]:C(h)[2]", "C(g)[T.z]:C(h)[2]"]),
        ("0 + C(g) + a:C(h)", ["C(g)[x]", "C(g)[y]", "C(g)[z]", "a:C(h)[1]", "a:C(h)[2]"]),
    ]:
        mm = ModelSpec.from_spec(Formula(f), na_action="raise", output="pandas") \
            .get_model_matrix(d, context=dict(ALLOWED_FUNCTIONS))
        enc = plan_encoder(mm.model_spec)
        assert enc is not None and list(enc.terms) == want == list(mm.columns)
        np.testing.assert_array_equal(enc.encode(d), mm.to_numpy(dtype=float))


def test_probe_mismatch_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """An encoder whose numbers differ from formulaic's on the probe is refused."""
    from formulaic import Formula, ModelSpec

    d = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [2.0, 0.5, 1.0]})
    mm = ModelSpec.from_spec(Formula("a:b"), na_action="raise", output="pandas") \
        .get_model_matrix(d, context=dict(ALLOWED_FUNCTIONS))
    terms = tuple(mm.columns)
    assert direct_encoder(mm.model_spec, terms, d, ALLOWED_FUNCTIONS) is not None
    real = encode_mod._column_values
    monkeypatch.setattr(encode_mod, "_column_values",
                        lambda *a: real(*a) * (1 + 1e-15) if a[0].parts else 1.0)
    assert direct_encoder(mm.model_spec, terms, d, ALLOWED_FUNCTIONS) is None


def test_unknown_level_is_a_formula_error(parquet: Path) -> None:
    enc, batches = encodings(DIRECT[2], parquet)
    df = batches[0].copy()
    df.loc[df.index[3], "industry"] = "mining"
    with pytest.raises(FormulaError, match="could not be evaluated.*industry"):
        enc.encode(df)


# --------------------------------------------------------------------------- whole fits


def fit_both(monkeypatch: pytest.MonkeyPatch, formula: str, source: Any,
             **kw: Any) -> tuple[Any, Any]:
    direct = fit_stream(formula, source, batch_rows=BATCH, **kw)
    with monkeypatch.context() as m:
        m.setattr(stream_mod, "_DIRECT_ENCODER", False)
        formulaic = fit_stream(formula, source, batch_rows=BATCH, **kw)
    return direct, formulaic


@pytest.mark.parametrize(("formula", "kw"), [
    (DIRECT[2], {"vcov": "cluster", "cluster": "firm"}),
    (DIRECT[3], {"vcov": "hc1", "weights": "w"}),
    (DIRECT[5], {"model": "probit"}),
    (DIRECT[9], {"vcov": "hc0"}),
    (FALLBACK[0], {}),
])
def test_fit_stream_same_with_either_encoder(
    formula: str, kw: dict[str, Any], parquet: Path, frame: pd.DataFrame,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for source in (parquet, frame):
        a, b = fit_both(monkeypatch, formula, source, **kw)
        assert a.terms == b.terms and a.nobs == b.nobs
        assert a.flow == b.flow and a.flow.n_dropped > 0
        np.testing.assert_allclose(a.params, b.params, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(a.se, b.se, rtol=1e-12, atol=1e-12)
        assert a.loglik == pytest.approx(b.loglik, rel=1e-12, abs=1e-12)
        assert a.iterations == b.iterations
