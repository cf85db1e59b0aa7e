"""Tests of the chunked writer of large synthetic cohorts and firm-year panels."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from smesurvival.data import ColumnMap, build_measures, simwrite
from smesurvival.data import panel as panel_mod
from smesurvival.data.simwrite import (
    BLOCK_FIRMS,
    MEASURE_COLUMNS,
    PANEL_COLUMNS,
    cohort_columns,
    iter_cohort_tables,
    write_cohort,
)
from smesurvival.data.synthetic import COLUMNS, CohortParams, firm_years, simulate_cohort
from smesurvival.errors import UsageError

N_BLOCKS3 = 2 * BLOCK_FIRMS + 18_928  # three blocks, the last one partial


def _read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path) if path.suffix == ".csv" else pd.read_parquet(path)


def _truth(path: Path) -> dict:
    return json.loads(path.with_name(path.name + ".truth.json").read_text())


# ----------------------------------------------------------------------------- identical for n <= one block

@pytest.mark.parametrize("panel", [False, True])
@pytest.mark.parametrize("ext", [".parquet", ".csv"])
def test_small_cohort_is_simulate_cohort(tmp_path: Path, panel: bool, ext: str) -> None:
    """Up to one block the file holds exactly simulate_cohort's frame, whatever the chunks."""
    ref = simulate_cohort(4000, seed=3, panel=panel)
    out = write_cohort(tmp_path / f"c{ext}", 4000, seed=3, panel=panel, chunk_firms=777)
    expected = ref.frame
    if ext == ".csv":  # compare what the two CSV files read back as
        expected = pd.read_csv(ref.write(tmp_path / "ref.csv"))
    pd.testing.assert_frame_equal(_read(out.path), expected, check_exact=True)
    truth = _truth(out.path)
    assert truth.pop("chunked") == {"block_firms": BLOCK_FIRMS, "identical_to_simulate_cohort": True}
    assert truth == json.loads(json.dumps(ref.truth))
    assert out.n_rows == len(ref.frame) and out.n_firms == 4000
    assert out.layout == ("firm-years" if panel else "firms") and out.label == ref.label


def test_default_cohort_and_custom_params(tmp_path: Path) -> None:
    params = CohortParams(lost_to_follow_up=0.2, survival_5y=0.8)
    out = write_cohort(tmp_path / "c.parquet", 1612, seed=2012, params=params, panel=True)
    ref = simulate_cohort(1612, seed=2012, params=params, panel=True)
    pd.testing.assert_frame_equal(pd.read_parquet(out.path), ref.frame, check_exact=True)
    assert "custom parameters" in out.label


# ----------------------------------------------------------------------------- determinism

@pytest.fixture(scope="module")
def three_blocks(tmp_path_factory: pytest.TempPathFactory) -> pa.Table:
    path = tmp_path_factory.mktemp("ref") / "panel.parquet"
    write_cohort(path, N_BLOCKS3, seed=11, panel=True, threads=1)
    return pq.read_table(path)


@pytest.mark.parametrize(("chunk_firms", "threads"), [(10_000, 2), (70_001, 3), (10**7, 0)])
def test_values_do_not_depend_on_chunks_or_threads(
    tmp_path: Path, three_blocks: pa.Table, chunk_firms: int, threads: int,
) -> None:
    out = write_cohort(tmp_path / "p.parquet", N_BLOCKS3, seed=11, panel=True,
                       chunk_firms=chunk_firms, threads=threads)
    got = pq.read_table(out.path)
    assert got.equals(three_blocks)
    meta = pq.ParquetFile(out.path).metadata
    expected_groups = -(-N_BLOCKS3 // chunk_firms)
    assert meta.num_row_groups == expected_groups
    ids = got.column("firm_id").to_numpy()
    bounds = np.cumsum([meta.row_group(i).num_rows for i in range(meta.num_row_groups)])[:-1]
    assert (ids[bounds] != ids[bounds - 1]).all()  # a firm's years never straddle row groups


def test_csv_holds_the_same_values(tmp_path: Path) -> None:
    n = BLOCK_FIRMS + 3000
    csv = pd.read_csv(write_cohort(tmp_path / "c.csv", n, seed=8, chunk_firms=9_999).path)
    parquet = pd.read_parquet(write_cohort(tmp_path / "c.parquet", n, seed=8).path)
    parquet = parquet.astype({"exit_year": float, "exit_month": float})
    pd.testing.assert_frame_equal(csv, parquet, check_exact=True)


def test_blocks_are_independent_draws(three_blocks: pa.Table) -> None:
    firms = three_blocks.to_pandas().drop_duplicates("firm_id")[list(COLUMNS)]
    assert firms["firm_id"].tolist() == list(range(1, N_BLOCKS3 + 1))
    a = firms["sales"].to_numpy()[:1000]
    b = firms["sales"].to_numpy()[BLOCK_FIRMS:BLOCK_FIRMS + 1000]
    assert not np.isin(a, b).all()
    # the first block is simulate_cohort(BLOCK_FIRMS, seed): growing n keeps the drawn firms
    first = simulate_cohort(BLOCK_FIRMS, seed=11).frame
    pd.testing.assert_frame_equal(firms.iloc[:BLOCK_FIRMS].reset_index(drop=True), first,
                                  check_exact=True)


def test_panel_is_the_firm_years_of_the_firm_file(tmp_path: Path, three_blocks: pa.Table) -> None:
    """Across blocks, the panel is synthetic.firm_years of the firm file of the same seed."""
    out = write_cohort(tmp_path / "f.parquet", N_BLOCKS3, seed=11, chunk_firms=30_000)
    firms = pd.read_parquet(out.path)
    assert tuple(firms.columns) == COLUMNS and len(firms) == N_BLOCKS3
    expected = firm_years(firms)
    got = three_blocks.to_pandas()
    assert tuple(got.columns) == PANEL_COLUMNS
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
    truth = _truth(out.path)
    assert truth["realised"]["n_exits"] == int(firms["exit_year"].notna().sum())
    assert truth["realised"]["n_exits"] == int(got["event"].sum())
    counts = firms["exit_type"].value_counts().to_dict()
    assert truth["realised"]["exits_by_type"] == {k: counts.get(k, 0)
                                                   for k in ("failure", "acquisition", "other")}
    assert truth["chunked"]["identical_to_simulate_cohort"] is False


def test_periods_and_events_match_panel_firm_years(tmp_path: Path) -> None:
    """The firm-years agree with data.panel.firm_years on the measures of the same firms."""
    params = CohortParams(lost_to_follow_up=0.15)
    path = write_cohort(tmp_path / "f.parquet", 20_000, seed=5, params=params).path
    fy = pd.read_parquet(write_cohort(tmp_path / "p.parquet", 20_000, seed=5, params=params,
                                      panel=True).path)
    m = build_measures(pd.read_parquet(path), ColumnMap.default())
    kept = set(m.frame["firm_id"])  # build_measures drops firms censored before the window end
    assert len(kept) < 20_000
    ref = panel_mod.firm_years(m, 5)
    got = fy[fy["firm_id"].isin(kept)].reset_index(drop=True)
    assert len(got) == len(ref)
    for mine, theirs in (("firm_id", "firm_id"), ("t", "period"), ("event", "event"),
                         ("year", "year")):
        np.testing.assert_array_equal(got[mine].to_numpy(), ref[theirs].to_numpy())
    exit_rows = got["event"] == 1
    np.testing.assert_array_equal(got.loc[exit_rows, "exit_type"].to_numpy(),
                                  ref.loc[ref["event"] == 1, "exit_type"].to_numpy())


# ----------------------------------------------------------------------------- distribution

def test_chunked_cohort_has_the_calibrated_distribution(tmp_path: Path) -> None:
    """Beyond one block the firms differ from simulate_cohort's but the moments agree."""
    n = 200_000
    got = pd.read_parquet(write_cohort(tmp_path / "c.parquet", n, seed=7).path)
    ref = simulate_cohort(n, seed=7).frame

    def moments(f: pd.DataFrame) -> dict[str, pd.Series]:
        ratio = f["export_sales"] / f["sales"]
        return {
            "exporter": (ratio > 0).astype(float),
            "export_ratio_exporters": ratio[ratio > 0],
            "log_employees": np.log(f["employees"]),
            "age": (f["survey_year"] - f["founding_year"]).astype(float),
            "rd_intensity": f["rd_employees"] / f["employees"],
            "alliance": f["rd_alliance"].astype(float),
            "certified": f["certified_tech"].astype(float),
            "patents": f["patents"].astype(float),
            "manufacturing": f["industry"].isin(list(CohortParams().industries[:8])).astype(float),
            "exited": f["exit_year"].notna().astype(float),
            "failure": (f["exit_type"] == "failure").astype(float),
            "weight": f["weight"],
        }

    a, b = moments(got), moments(ref)
    for key in a:
        se = np.sqrt(a[key].var() / len(a[key]) + b[key].var() / len(b[key]))
        assert abs(a[key].mean() - b[key].mean()) < 4.5 * se, key
    assert not got["sales"].equals(ref["sales"])
    # the export ratio among exporters: same distribution (two-sample KS)
    from scipy import stats

    ks = stats.ks_2samp(a["export_ratio_exporters"], b["export_ratio_exporters"])
    assert ks.pvalue > 1e-3


# ----------------------------------------------------------------------------- export-sales fast path

@pytest.mark.parametrize("shape", [(0.6, 1.6), (2.0, 5.0), (0.3, 0.3)])
def test_export_sales_fast_path_is_bit_for_bit(shape: tuple[float, float]) -> None:
    """The tabulated Beta quantile gives exactly the amounts betaincinv gives, also on the
    rounding boundaries (where it must fall back to betaincinv)."""
    from scipy import special

    from smesurvival.data.synthetic import _beta_quantile_table, _export_sales

    a, b = shape
    assert (_beta_quantile_table(a, b) is None) == (shape == (0.3, 0.3))  # no accurate table
    rng = np.random.default_rng(5)
    n = 300_000
    sales = np.round(np.exp(rng.normal(np.log(4500), 1.2, n)), 1) + 0.1
    u = special.ndtr(rng.standard_normal(n) * rng.choice([1.0, 3.0], n))
    # a third of the ratios sit within 1e-12 (relative) of a rounding boundary of the amount
    k = np.floor(rng.random(n) * sales * 10)
    edge = (k + 0.5) / (10 * sales) * (1 + rng.normal(0, 1e-12, n))
    u = np.where(np.arange(n) % 3 == 0, special.betainc(a, b, np.clip(edge, 1e-300, 1)), u)
    expected = np.clip(np.round(sales * special.betaincinv(a, b, u), 1), 0.1, sales)
    np.testing.assert_array_equal(_export_sales(sales, u, shape), expected)


# ----------------------------------------------------------------------------- measures

@pytest.mark.parametrize("panel", [False, True])
def test_measures_columns(tmp_path: Path, panel: bool) -> None:
    out = write_cohort(tmp_path / "m.parquet", 3000, seed=4, panel=panel, measures=True)
    got = pd.read_parquet(out.path)
    assert tuple(got.columns) == cohort_columns(panel, measures=True)
    firms = simulate_cohort(3000, seed=4).frame
    ref = build_measures(firms, ColumnMap.default()).frame
    truth = _truth(out.path)
    if panel:
        ref = ref.iloc[got["firm_id"].to_numpy() - 1].reset_index(drop=True)
    else:
        np.testing.assert_array_equal(got["survived"].to_numpy(), ref["survived"].to_numpy())
    for col in MEASURE_COLUMNS:
        if col == "innovativeness":
            continue
        np.testing.assert_array_equal(got[col].to_numpy(), ref[col].to_numpy(float), err_msg=col)
    items = truth["innovativeness_items"]
    pop = sum((np.log1p(got[q].astype(float)) - v["mean"]) / v["sd"] for q, v in items.items()) / 3
    np.testing.assert_allclose(got["innovativeness"].to_numpy(), pop.to_numpy(), rtol=1e-12)
    assert np.corrcoef(got["innovativeness"], ref["innovativeness"])[0, 1] > 0.9999


# ----------------------------------------------------------------------------- atomic output

def _stop_after_first(firms: int, rows: int) -> None:
    raise KeyboardInterrupt


def test_interrupt_leaves_nothing_behind(tmp_path: Path) -> None:
    path = tmp_path / "c.parquet"
    with pytest.raises(KeyboardInterrupt):
        write_cohort(path, 200_000, seed=1, panel=True, progress=_stop_after_first)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_sigint_in_a_real_process_leaves_nothing_behind(tmp_path: Path) -> None:
    """Ctrl-C while writing: the process stops and neither the file nor a temporary remains."""
    script = ("import sys; from smesurvival.data.simwrite import write_cohort; "
              "write_cohort(sys.argv[1], 5_000_000, seed=1, panel=True)")
    proc = subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "c.parquet")],
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not any(tmp_path.glob(".c.parquet.*.tmp")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
    time.sleep(0.5)  # some row groups written
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode != 0 and "KeyboardInterrupt" in stderr
    assert list(tmp_path.iterdir()) == []


def test_error_keeps_the_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "c.csv"
    path.write_text("old\n")
    real = simwrite._block

    def failing(block: int, *args: object) -> object:
        if block == 1:
            raise RuntimeError("disk on fire")
        return real(block, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(simwrite, "_block", failing)
    with pytest.raises(RuntimeError, match="disk on fire"):
        write_cohort(path, 3 * BLOCK_FIRMS, seed=1, chunk_firms=1000)
    assert path.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.csv"]


def test_progress_and_summary(tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    out = write_cohort(tmp_path / "c.parquet", 100_000, seed=2, panel=True, chunk_firms=30_000,
                       progress=lambda f, r: calls.append((f, r)), truth=False)
    assert [c[0] for c in calls] == [30_000, 60_000, 90_000, 100_000]
    assert calls[-1][1] == out.n_rows == pq.ParquetFile(out.path).metadata.num_rows
    assert all(b[1] > a[1] for a, b in zip(calls, calls[1:], strict=False))
    assert out.truth_path is None and not (tmp_path / "c.parquet.truth.json").exists()
    assert out.rows_per_second > 0 and 4 < out.n_rows / 100_000 < 5.5


def test_iter_cohort_tables_is_what_is_written(tmp_path: Path) -> None:
    tables = list(iter_cohort_tables(BLOCK_FIRMS + 10, seed=9, panel=True))
    assert [t.column("firm_id")[0].as_py() for t in tables] == [1, BLOCK_FIRMS + 1]
    out = write_cohort(tmp_path / "c.parquet", BLOCK_FIRMS + 10, seed=9, panel=True,
                       compression="zstd")
    assert pq.read_table(out.path).equals(pa.concat_tables(tables))


# ----------------------------------------------------------------------------- arguments

@pytest.mark.parametrize(("name", "kwargs", "match"), [
    ("c.xlsx", {}, "parquet or .csv"),
    ("missing/c.csv", {}, "does not exist"),
    ("c.csv", {"n": 0}, "positive integer"),
    ("c.csv", {"seed": -1}, "non-negative"),
    ("c.csv", {"chunk_firms": 0}, "chunk_firms"),
    ("c.csv", {"threads": -1}, "threads"),
    ("c.csv", {"params": "x"}, "CohortParams"),
    ("c.parquet", {"compression": "lzma"}, "compression"),
])
def test_bad_arguments(tmp_path: Path, name: str, kwargs: dict, match: str) -> None:
    args = {"n": 10, **kwargs}
    with pytest.raises(UsageError, match=match):
        write_cohort(tmp_path / name, **args)
    assert list(tmp_path.iterdir()) == []


def test_refuses_to_replace_a_folder(tmp_path: Path) -> None:
    (tmp_path / "d.parquet").mkdir()
    with pytest.raises(UsageError, match="folder"):
        write_cohort(tmp_path / "d.parquet", 10)
    assert [p.name for p in tmp_path.iterdir()] == ["d.parquet"]


# ----------------------------------------------------------------------------- bounded memory

_RSS_SCRIPT = textwrap.dedent("""
    import resource, sys
    from smesurvival.data.simwrite import write_cohort
    from smesurvival.data.synthetic import CohortParams, _calibrate
    _calibrate(CohortParams())
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    write_cohort(sys.argv[1], int(sys.argv[2]), seed=1, panel=True)
    print(base, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
""")


@pytest.mark.slow
def test_peak_memory_does_not_grow_with_n(tmp_path: Path) -> None:
    """Peak RSS for 12 blocks (about 3.7 M firm-years) stays within that of 3 blocks + 80 MB."""
    peaks = {}
    for n in (3 * BLOCK_FIRMS, 12 * BLOCK_FIRMS):
        run = subprocess.run([sys.executable, "-c", _RSS_SCRIPT, str(tmp_path / "p.parquet"),
                              str(n)], capture_output=True, text=True, check=True)
        base, peak = (int(v) / 1024 for v in run.stdout.split())
        peaks[n] = peak - base
    small, large = peaks[3 * BLOCK_FIRMS], peaks[12 * BLOCK_FIRMS]
    assert large < small + 80, peaks
