"""The stream engine gives the in-memory engine's numbers (DESIGN.md principle 1), batch by batch.

A generated 200k-row firm-year panel (a categorical column with a level that appears only in
the last rows and sorts first, an interaction, integer-coded years as a factor, missing values
in two columns, frequency weights, firms as clusters) is written to Parquet and CSV and fitted
by both engines; coefficients, every covariance, log-likelihoods and the sample flow agree to
1e-8 (relative). No timing assertions: memory is bounded by design (see the engine's docstring).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import run_cli
from smesurvival.data.readers import read_data, read_sql
from smesurvival.errors import DataReadError, FormulaError, UsageError
from smesurvival.models.fit import fit
from smesurvival.models.result import FitResult
from smesurvival.scale import fit_stream, parse_memory, rows_for_memory

FORMULA = "exited ~ export_ratio * rd_intensity + C(industry) + alliance + C(year)"
N_FIRMS, N_YEARS = 20_000, 10
RTOL = 1e-8


def make_panel(seed: int = 11) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = N_FIRMS * N_YEARS
    firm = np.repeat(np.arange(N_FIRMS), N_YEARS)
    year = np.tile(np.arange(2001, 2001 + N_YEARS), N_FIRMS)
    ind_firm = rng.choice(["manuf", "retail", "services", "tech", "trade"], size=N_FIRMS)
    ind_firm[-150:] = "Agri"  # a level seen only in the last rows, sorting before the others
    industry = ind_firm[firm].astype(object)
    export = rng.beta(1.2, 4.0, size=n)
    rd = rng.gamma(1.5, 0.04, size=n)
    alliance = (rng.random(n) < 0.3).astype(np.int64)
    eta = (-2.2 + 0.8 * export - 1.5 * rd + 2.0 * export * rd - 0.25 * alliance
           + 0.03 * (year - 2005) + 0.2 * (industry == "tech") - 0.3 * (industry == "Agri"))
    exited = (rng.random(n) < 1.0 / (1.0 + np.exp(-eta))).astype(np.int64)
    d = pd.DataFrame({
        "firm_id": firm, "year": year, "exited": exited, "export_ratio": export,
        "rd_intensity": rd, "industry": industry, "alliance": alliance,
        "w": rng.integers(1, 4, size=n).astype(float),
    })
    d.loc[rng.random(n) < 0.015, "export_ratio"] = np.nan
    d.loc[rng.random(n) < 0.01, "industry"] = None
    return d


@pytest.fixture(scope="module")
def panel() -> pd.DataFrame:
    return make_panel()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, panel: pd.DataFrame) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("stream")
    pqt, csv = root / "panel.parquet", root / "panel.csv"
    pq.write_table(pa.Table.from_pandas(panel, preserve_index=False), pqt, row_group_size=30_000)
    panel.to_csv(csv, index=False)
    return {"parquet": pqt, "csv": csv, "root": root}


@pytest.fixture(scope="module")
def frames(files: dict[str, Path]) -> dict[str, pd.DataFrame]:
    return {k: read_data(files[k]).frame for k in ("parquet", "csv")}


def assert_same(mem: FitResult, st: FitResult) -> None:
    assert st.engine == "stream" and st.terms == mem.terms
    np.testing.assert_allclose(st.params, mem.params, rtol=RTOL, atol=0)
    np.testing.assert_allclose(st.vcov, mem.vcov, rtol=RTOL, atol=1e-14)
    np.testing.assert_allclose(st.se, mem.se, rtol=RTOL, atol=0)
    assert st.loglik == pytest.approx(mem.loglik, rel=RTOL)
    assert st.llnull == pytest.approx(mem.llnull, rel=RTOL)
    assert st.flow == mem.flow
    assert (st.nobs, st.n_clusters, st.vcov_type) == (mem.nobs, mem.n_clusters, mem.vcov_type)
    assert st.n_events == pytest.approx(mem.n_events, rel=1e-12)
    assert st.sum_weights == (pytest.approx(mem.sum_weights, rel=1e-12) if mem.sum_weights else None)
    assert st.converged and mem.converged
    # Newton's floating-point-floor stop (a step of 1e-9 leaving the log-likelihood unchanged
    # to the last bit) depends on summation order, so the count may differ by one.
    assert abs(st.iterations - mem.iterations) <= 1
    assert st.diagnostics.vif.keys() == mem.diagnostics.vif.keys()
    for t, v in mem.diagnostics.vif.items():
        assert st.diagnostics.vif[t] == pytest.approx(v, rel=1e-6)
    assert st.diagnostics.n_fitted_extreme == mem.diagnostics.n_fitted_extreme
    assert st.diagnostics.min_fitted == pytest.approx(mem.diagnostics.min_fitted, rel=1e-8)
    assert st.design_spec is not None and mem.design_spec is not None
    assert st.design_spec["encoder_state"] == mem.design_spec["encoder_state"]


def test_panel_has_missing_values_and_a_late_level(panel: pd.DataFrame) -> None:
    assert panel["export_ratio"].isna().any() and panel["industry"].isna().any()
    first = panel["industry"].eq("Agri").to_numpy().nonzero()[0][0]
    assert first > len(panel) - 2000


@pytest.mark.parametrize(
    ("model", "vcov"),
    [("logit", "classical"), ("logit", "hc0"), ("logit", "hc1"), ("logit", "cluster"),
     ("probit", "cluster"), ("cloglog", "hc1"), ("cloglog", "classical")],
)
def test_parquet_matches_memory(files: dict[str, Path], frames: dict[str, pd.DataFrame],
                                model: str, vcov: str) -> None:
    kw = {"model": model, "vcov": vcov, "cluster": "firm_id", "weights": "w"}
    mem = fit(FORMULA, frames["parquet"], **kw)  # type: ignore[arg-type]
    st = fit_stream(FORMULA, files["parquet"], batch_rows=40_000, **kw)  # type: ignore[arg-type]
    assert_same(mem, st)
    assert mem.flow.dropped_by_reason() == {
        "missing value in column 'export_ratio'": mem.flow.steps[0].n_dropped,
        "missing value in column 'industry'": mem.flow.steps[1].n_dropped,
    }
    assert "C(industry)[T.manuf]" in st.terms and "C(year)[T.2002]" in st.terms


@pytest.mark.parametrize("batch_rows", [7_001, 65_536, 199_999, 10_000_000])
def test_batch_sizes_do_not_matter(files: dict[str, Path], frames: dict[str, pd.DataFrame],
                                   batch_rows: int) -> None:
    kw = {"vcov": "cluster", "cluster": "firm_id", "weights": "w"}
    mem = fit(FORMULA, frames["parquet"], **kw)  # type: ignore[arg-type]
    st = fit_stream(FORMULA, files["parquet"], batch_rows=batch_rows, **kw)  # type: ignore[arg-type]
    assert_same(mem, st)


def test_memory_budget_sets_the_batch_size(files: dict[str, Path],
                                           frames: dict[str, pd.DataFrame]) -> None:
    mem = fit(FORMULA, frames["parquet"], vcov="hc1")
    assert_same(mem, fit_stream(FORMULA, files["parquet"], vcov="hc1", memory="20MB"))
    assert rows_for_memory(parse_memory("20MB"), 21, 8) < 20_000  # several batches


def test_csv_matches_memory(files: dict[str, Path], frames: dict[str, pd.DataFrame]) -> None:
    for vcov in ("cluster", "hc1"):
        kw = {"vcov": vcov, "cluster": "firm_id", "weights": "w", "model": "probit"}
        mem = fit(FORMULA, frames["csv"], **kw)  # type: ignore[arg-type]
        st = fit_stream(FORMULA, files["csv"], batch_rows=33_333, **kw)  # type: ignore[arg-type]
        assert_same(mem, st)


def test_unsorted_clusters(files: dict[str, Path], panel: pd.DataFrame) -> None:
    """Firms' rows scattered over the file: per-cluster sums kept for every firm."""
    shuffled = panel.sample(frac=1.0, random_state=3).reset_index(drop=True)
    path = files["root"] / "shuffled.parquet"
    shuffled.to_parquet(path, index=False)
    mem = fit(FORMULA, read_data(path).frame, vcov="cluster", cluster="firm_id")
    assert_same(mem, fit_stream(FORMULA, path, vcov="cluster", cluster="firm_id",
                                batch_rows=25_000))


def test_duckdb_query(files: dict[str, Path]) -> None:
    sql = f"SELECT * FROM read_parquet('{files['parquet']}') WHERE year >= 2003"
    mem = fit(FORMULA, read_sql(sql).frame, vcov="cluster", cluster="firm_id", weights="w")
    st = fit_stream(FORMULA, sql=sql, vcov="cluster", cluster="firm_id", weights="w",
                    batch_rows=50_000)
    assert_same(mem, st)
    assert st.nobs < 200_000


def test_duckdb_database_file(files: dict[str, Path], panel: pd.DataFrame) -> None:
    import duckdb

    db = files["root"] / "panel.duckdb"
    con = duckdb.connect(str(db))
    con.execute(f"CREATE TABLE firms AS SELECT * FROM read_parquet('{files['parquet']}')")
    con.close()
    mem = fit(FORMULA, read_data(db).frame, vcov="hc0")
    assert_same(mem, fit_stream(FORMULA, db, vcov="hc0", batch_rows=60_000))
    assert_same(mem, fit_stream(FORMULA, db, sql="SELECT * FROM firms;", vcov="hc0"))


def test_iterator_sources(panel: pd.DataFrame) -> None:
    chunks = [panel.iloc[s:s + 37_000].reset_index(drop=True) for s in range(0, len(panel), 37_000)]
    mem = fit(FORMULA, pd.concat(chunks, ignore_index=True), vcov="cluster", cluster="firm_id",
              weights="w")
    kw = {"vcov": "cluster", "cluster": "firm_id", "weights": "w", "batch_rows": 50_000}
    assert_same(mem, fit_stream(FORMULA, iter(chunks), **kw))  # type: ignore[arg-type]  # one-shot
    assert_same(mem, fit_stream(FORMULA, chunks, **kw))  # type: ignore[arg-type]  # re-iterable
    batches = [pa.RecordBatch.from_pandas(c, preserve_index=False) for c in chunks]
    assert_same(mem, fit_stream(FORMULA, lambda: iter(batches), **kw))  # type: ignore[arg-type]
    assert_same(mem, fit_stream(FORMULA, panel, **kw))  # type: ignore[arg-type]  # a DataFrame


def test_person_period_expansion_feeds_the_stream() -> None:
    from smesurvival.data.panel import expand_person_period, iter_person_period

    rng = np.random.default_rng(5)
    n = 6000
    firms = pd.DataFrame({
        "firm_id": np.arange(n), "years": rng.integers(1, 9, size=n).astype(float),
        "exited": (rng.random(n) < 0.4).astype(int), "export_ratio": rng.random(n),
    })
    kw = {"duration": "years", "event": "exited", "id": "firm_id", "width": 1.0,
          "keep": ["export_ratio"]}
    whole = expand_person_period(firms, **kw)  # type: ignore[arg-type]
    f = "exited ~ export_ratio + C(period)"
    mem = fit(f, whole, vcov="cluster", cluster="firm_id")
    chunks = (firms.iloc[s:s + 1000] for s in range(0, n, 1000))
    st = fit_stream(f, iter_person_period(chunks, **kw), vcov="cluster", cluster="firm_id")  # type: ignore[arg-type]
    assert_same(mem, st)


def test_center_and_standardize_use_whole_data_state(panel: pd.DataFrame) -> None:
    f = "exited ~ center(export_ratio) * standardize(rd_intensity) + standardize(log(rd_intensity + 0.01), ddof=0)"
    mem = fit(f, panel, vcov="hc1")
    st = fit_stream(f, panel, vcov="hc1", batch_rows=20_000)
    assert_same(mem, st)
    assert st.design_spec is not None and mem.design_spec is not None
    for key, state in mem.design_spec["transform_state"].items():
        for k, v in state.items():
            got = st.design_spec["transform_state"][key][k]
            assert got == (pytest.approx(v, rel=1e-12) if isinstance(v, float) else v)


def test_predict_after_from_dict(files: dict[str, Path], frames: dict[str, pd.DataFrame]) -> None:
    mem = fit(FORMULA, frames["parquet"], vcov="hc1")
    st = fit_stream(FORMULA, files["parquet"], vcov="hc1", batch_rows=64_000)
    loaded = FitResult.from_dict(json.loads(json.dumps(st.to_dict())))
    assert loaded.engine == "stream"
    new = frames["parquet"].dropna().iloc[[0, 5, 9]].copy()
    new["industry"] = ["Agri", "tech", "manuf"]
    a = mem.predict(new, se_fit=True)
    b = loaded.predict(new, se_fit=True)
    np.testing.assert_allclose(b.to_numpy(), a.to_numpy(), rtol=1e-8)


def test_bad_outcome_in_a_late_batch(tmp_path: Path, panel: pd.DataFrame) -> None:
    bad = panel.copy()
    bad.loc[len(bad) - 7, "exited"] = 2
    bad.loc[len(bad) - 3, "exited"] = -1
    path = tmp_path / "bad.parquet"
    bad.to_parquet(path, index=False)
    with pytest.raises(FormulaError) as e_mem:
        fit(FORMULA, read_data(path).frame)
    with pytest.raises(FormulaError) as e_st:
        fit_stream(FORMULA, path, batch_rows=10_000)
    assert str(e_st.value) == str(e_mem.value)
    assert "outcome column 'exited'" in str(e_st.value) and "-1.0, 2.0" in str(e_st.value)


def test_unknown_columns_are_named(files: dict[str, Path], frames: dict[str, pd.DataFrame]) -> None:
    f = "exited ~ export_ration + alliance"
    with pytest.raises(FormulaError) as e_mem:
        fit(f, frames["parquet"])
    with pytest.raises(FormulaError) as e_st:
        fit_stream(f, files["parquet"])
    assert str(e_st.value) == str(e_mem.value) and "'export_ration'" in str(e_st.value)
    for kw in ({"weights": "weight"}, {"vcov": "cluster", "cluster": "firm"}):
        with pytest.raises(UsageError) as e_mem2:
            fit(FORMULA, frames["parquet"], **kw)  # type: ignore[arg-type]
        with pytest.raises(UsageError) as e_st2:
            fit_stream(FORMULA, files["parquet"], **kw)  # type: ignore[arg-type]
        assert str(e_st2.value) == str(e_mem2.value)


def test_bad_weights_and_options(files: dict[str, Path], frames: dict[str, pd.DataFrame]) -> None:
    with pytest.raises(UsageError, match="memory must be a size"):
        fit_stream(FORMULA, files["parquet"], memory="lots")
    with pytest.raises(UsageError, match="survey weights need a robust covariance"):
        fit_stream(FORMULA, files["parquet"], weights="w", weights_kind="survey")
    with pytest.raises(UsageError, match="model must be one of"):
        fit_stream(FORMULA, files["parquet"], model="cox")  # type: ignore[arg-type]
    xlsx = files["root"] / "x.xlsx"
    xlsx.write_bytes(b"not empty")
    with pytest.raises(DataReadError, match="cannot stream"):
        fit_stream(FORMULA, xlsx)
    with pytest.raises(DataReadError, match="no such file"):
        fit_stream(FORMULA, files["root"] / "missing.parquet")


def test_parse_memory() -> None:
    assert parse_memory("1GB") == 10**9 and parse_memory("512MiB") == 512 * 2**20
    assert parse_memory(4096) == 4096 and parse_memory("1.5g") == 1_500_000_000
    assert rows_for_memory(10**9, 20, 8) > rows_for_memory(10**8, 20, 8) >= 1024


# --------------------------------------------------------------------------- the CLI


run = run_cli


def _numbers_equal(a: object, b: object, path: str = "") -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            _numbers_equal(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _numbers_equal(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert b == pytest.approx(a, rel=RTOL, abs=1e-300), path
    else:
        assert a == b, path


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_cli_stream_json_equals_memory(files: dict[str, Path], fmt: str,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    args = ["fit", str(files[fmt]), "--model", "logit", "--formula", FORMULA, "--vcov",
            "cluster", "--cluster", "firm_id", "--weights", "w", "--json", "-"]
    code, out_mem, _ = run(args, capsys)
    assert code == 0
    code, out_st, err = run([*args, "--engine", "stream", "--batch-rows", "45000"], capsys)
    assert code == 0, err
    mem, st = json.loads(out_mem), json.loads(out_st)
    assert (mem.pop("engine"), st.pop("engine")) == ("memory", "stream")
    assert abs(mem.pop("iterations") - st.pop("iterations")) <= 1
    _numbers_equal(mem, st)


def test_cli_stream_memory_option_and_rhs_formula(files: dict[str, Path],
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["fit", str(files["parquet"]), "--formula", "export_ratio + alliance",
                          "--event", "exited", "--engine", "stream", "--memory", "64MB",
                          "--json", "-"], capsys)
    assert code == 0, err
    assert json.loads(out)["engine"] == "stream"


def test_cli_stream_refuses_other_models(files: dict[str, Path],
                                         capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["fit", str(files["parquet"]), "--model", "finegray", "--formula", "alliance",
                        "--time", "year", "--event", "exited", "--engine", "stream"], capsys)
    assert code == 2
    assert "logit, probit, cloglog or cox" in err and "Traceback" not in err
    code, _, err = run(["fit", str(files["parquet"]), "--formula", FORMULA, "--engine", "gpu"],
                       capsys)
    assert code == 2 and "--engine" in err


def test_separation_and_convergence_errors(panel: pd.DataFrame) -> None:
    from smesurvival.errors import ConvergenceError, SeparationError

    d = panel.iloc[:20_000].copy()
    d["perfect"] = d["exited"].astype(float)  # predicts the outcome exactly
    f = "exited ~ export_ratio + perfect"
    with pytest.raises(SeparationError) as e_mem:
        fit(f, d)
    with pytest.raises(SeparationError) as e_st:
        fit_stream(f, d, batch_rows=3_000)
    assert str(e_st.value) == str(e_mem.value)
    # above separation_rows the LP check is skipped and the message says so
    with pytest.raises(SeparationError, match="possible separation.*separation_rows=0"):
        fit_stream(f, d, batch_rows=3_000, separation_rows=0)
    with pytest.raises(ConvergenceError) as e_mem2:
        fit("exited ~ export_ratio", d, max_iter=1)
    with pytest.raises(ConvergenceError) as e_st2:
        fit_stream("exited ~ export_ratio", d, max_iter=1, batch_rows=3_000)
    assert str(e_st2.value) == str(e_mem2.value)
