"""Cox PH on the stream engine equals the in-memory fit_cox (itself checked against R's survival
in test_cox.py): coefficients, SEs, log partial likelihoods, score test, baseline hazard and
sample flow, batch by batch from Parquet and CSV, with strata, entry times, weights and both
tie methods; bad durations and events stop with the file line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from conftest import run_cli
from smesurvival.errors import DataValidationError, FormulaError, UsageError
from smesurvival.models.cox import fit_cox
from smesurvival.scale.stream_cox import fit_cox_stream

RHS = "x1 + x2 + C(g) + x1:x2"


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, Path]:
    rng = np.random.default_rng(3)
    n = 30_000
    df = pd.DataFrame({
        "x1": rng.normal(size=n), "x2": (rng.random(n) < 0.3).astype(float),
        "g": rng.choice(list("abcd"), n), "t": rng.integers(1, 200, n).astype(float),
        "s": rng.choice(["u", "v", "w"], n), "wt": rng.integers(1, 4, n).astype(float),
    })
    lin = 0.4 * df.x1 - 0.3 * df.x2 + np.where(df.g == "b", 0.5, 0.0)
    df["e"] = (rng.random(n) < 0.3 + 0.4 / (1 + np.exp(-lin))).astype(float)
    df["t0"] = np.floor(rng.random(n) * (df.t - 0.5))
    df.loc[[5, 17_000], "x1"] = np.nan  # dropped rows, counted
    df.loc[9, "t"] = np.nan
    path = tmp_path_factory.mktemp("cox") / "firms.parquet"
    df.to_parquet(path, index=False)
    return df, path


CASES: dict[str, dict[str, Any]] = {
    "efron": {},
    "breslow": {"ties": "breslow"},
    "strata, entry, weights": {"strata": "s", "entry": "t0", "weights": "wt"},
}


@pytest.mark.parametrize("name", list(CASES))
def test_stream_equals_memory(data: tuple[pd.DataFrame, Path], name: str) -> None:
    df, path = data
    kw = CASES[name]
    mem = fit_cox(RHS, df, duration="t", event="e", concordance=False, **kw)
    st = fit_cox_stream(RHS, path, duration="t", event="e", batch_rows=4_000, **kw)
    assert st.terms == mem.terms and st.nobs == mem.nobs == len(df) - 3
    assert st.flow == mem.flow and st.engine == "stream"
    np.testing.assert_allclose(st.params, mem.params, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(st.se, mem.se, rtol=1e-8)
    assert st.loglik == pytest.approx(mem.loglik, rel=1e-12)
    assert st.llnull == pytest.approx(mem.llnull, rel=1e-12)
    for test in ("score_test", "wald_test"):
        assert st.extra[test]["chisq"] == pytest.approx(mem.extra[test]["chisq"], rel=1e-8)
    for s, (times, haz) in mem.baseline["strata"].items():  # type: ignore[index]
        got_t, got_h = st.baseline["strata"][s]  # type: ignore[index]
        np.testing.assert_allclose(got_t, times, rtol=0)
        np.testing.assert_allclose(got_h, haz, rtol=1e-9)


def test_csv_source_and_cli(data: tuple[pd.DataFrame, Path], tmp_path: Path,
                            capsys: pytest.CaptureFixture[str]) -> None:
    df, _ = data
    csv = tmp_path / "firms.csv"
    df.iloc[:8_000].to_csv(csv, index=False)
    mem = fit_cox("x1 + C(g)", df.iloc[:8_000], duration="t", event="e", concordance=False)
    st = fit_cox_stream("x1 + C(g)", csv, duration="t", event="e", memory="64MB")
    np.testing.assert_allclose(st.params, mem.params, rtol=1e-10)
    out = tmp_path / "fit.json"
    code, _, err = run_cli(["fit", str(csv), "--model", "cox", "--engine", "stream", "--time", "t",
                            "--event", "e", "--formula", "x1 + C(g)", "--json", str(out)], capsys)
    assert code == 0, err
    got = json.loads(out.read_text())
    assert got["engine"] == "stream"
    assert got["params"]["x1"] == pytest.approx(float(mem.params[0]), rel=1e-10)
    code, _, err = run_cli(["fit", str(csv), "--model", "cox", "--engine", "stream", "--time", "t",
                            "--event", "e", "--formula", "x1", "--vcov", "hc0"], capsys)
    assert code == 2 and "classical SEs" in err


def test_bad_input_names_the_file_line(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    n = 5_000
    df = pd.DataFrame({"x": rng.normal(size=n), "t": rng.integers(1, 50, n).astype(float),
                       "e": (rng.random(n) < 0.5).astype(float)})
    bad = df.copy()
    bad.loc[3_210, "t"] = -1.0
    p1 = tmp_path / "neg.parquet"
    bad.to_parquet(p1, index=False)
    with pytest.raises(DataValidationError, match=r"column 't': durations must be positive.*3212"):
        fit_cox_stream("x", p1, duration="t", event="e", batch_rows=1_000)
    bad = df.copy()
    bad.loc[4_000, "e"] = 2.0
    p2 = tmp_path / "code.parquet"
    bad.to_parquet(p2, index=False)
    with pytest.raises(FormulaError, match=r"'e' must be 0/1"):
        fit_cox_stream("x", p2, duration="t", event="e")
    p3 = tmp_path / "censored.parquet"
    df.assign(e=0.0).to_parquet(p3, index=False)
    with pytest.raises(DataValidationError, match="every row is censored"):
        fit_cox_stream("x", p3, duration="t", event="e")
    with pytest.raises(UsageError, match="duration column 'time' is not in the data"):
        fit_cox_stream("x", p3, duration="time", event="e")
