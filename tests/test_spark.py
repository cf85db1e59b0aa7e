"""The Spark engine gives the in-memory and stream engines' numbers (DESIGN.md principle 1).

The 200k-row firm-year panel of tests/test_stream.py (a late categorical level that sorts
first, an interaction, years as a factor, missing values in two columns, frequency weights,
firms as clusters) is fitted by the memory, stream and spark engines: coefficients, classical,
HC and cluster-robust-by-firm covariances, log-likelihoods and the sample flow agree to 1e-8
(relative). The data are repartitioned round-robin so that a firm's rows lie in several
partitions. Spark's own MLlib GLM (IRLS) gives the same logit to 1e-6, and the discrete-time
hazard with the firm -> firm-year expansion run in Spark equals ``fit_discrete``.

One local[2] SparkSession serves the whole test session; the module skips without pyspark or
Java (``make test`` installs both).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

pytest.importorskip("pyspark")
if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
    pytest.skip("the Spark engine needs Java (make test installs a JRE)", allow_module_level=True)

from conftest import run_cli  # noqa: E402
from smesurvival.data.readers import read_data  # noqa: E402
from smesurvival.errors import (  # noqa: E402
    ConvergenceError,
    DataReadError,
    DataValidationError,
    FormulaError,
    UsageError,
)
from smesurvival.models.design import build_design  # noqa: E402
from smesurvival.models.discrete import fit_discrete  # noqa: E402
from smesurvival.models.fit import fit  # noqa: E402
from smesurvival.models.result import FitResult  # noqa: E402
from smesurvival.scale import fit_spark, fit_spark_discrete, fit_stream  # noqa: E402
from test_stream import FORMULA, _numbers_equal, make_panel  # noqa: E402

RTOL = 1e-8


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    """One quiet local[2] session for every Spark test."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        session = (
            SparkSession.builder.master("local[2]").appName("smesurvival-tests")
            .config("spark.sql.shuffle.partitions", "2")
            .config("spark.default.parallelism", "2")
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .getOrCreate()
        )
    session.sparkContext.setLogLevel("FATAL")
    yield session
    session.stop()


@pytest.fixture(scope="module")
def panel() -> pd.DataFrame:
    return make_panel()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, panel: pd.DataFrame) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("spark")
    pqt, csv = root / "panel.parquet", root / "panel.csv"
    pq.write_table(pa.Table.from_pandas(panel, preserve_index=False), pqt, row_group_size=30_000)
    panel.to_csv(csv, index=False)
    return {"parquet": pqt, "csv": csv, "root": root}


@pytest.fixture(scope="module")
def frame(files: dict[str, Path]) -> pd.DataFrame:
    return read_data(files["parquet"]).frame


def assert_same(ref: FitResult, res: FitResult, *, iterations: bool = True) -> None:
    assert res.engine == "spark" and res.terms == ref.terms
    np.testing.assert_allclose(res.params, ref.params, rtol=RTOL, atol=0)
    np.testing.assert_allclose(res.vcov, ref.vcov, rtol=RTOL, atol=1e-14)
    np.testing.assert_allclose(res.se, ref.se, rtol=RTOL, atol=0)
    assert res.loglik == pytest.approx(ref.loglik, rel=RTOL)
    assert res.llnull == pytest.approx(ref.llnull, rel=RTOL)
    assert res.flow == ref.flow
    assert (res.nobs, res.n_clusters, res.vcov_type) == (ref.nobs, ref.n_clusters, ref.vcov_type)
    assert res.n_events == pytest.approx(ref.n_events, rel=1e-12)
    assert res.sum_weights == (pytest.approx(ref.sum_weights, rel=1e-12) if ref.sum_weights
                               else None)
    assert res.converged and ref.converged
    if iterations:  # Newton's floating-point-floor stop depends on the order of the sums
        assert abs(res.iterations - ref.iterations) <= 1
    assert res.diagnostics.vif.keys() == ref.diagnostics.vif.keys()
    for t, v in ref.diagnostics.vif.items():
        if 0 < v < 1e6:  # period dummies without an intercept: VIFs of a singular correlation
            assert res.diagnostics.vif[t] == pytest.approx(v, rel=1e-6)
    assert res.diagnostics.n_fitted_extreme == ref.diagnostics.n_fitted_extreme
    assert res.diagnostics.min_fitted == pytest.approx(ref.diagnostics.min_fitted, rel=1e-8)
    assert res.design_spec is not None and ref.design_spec is not None
    assert res.design_spec["encoder_state"] == ref.design_spec["encoder_state"]


def as_stream(res: FitResult) -> FitResult:
    """A stream result relabelled so that assert_same can compare it with spark's."""
    from dataclasses import replace

    return replace(res, engine="spark")


# --------------------------------------------------------------------------- binary models


def test_cluster_by_firm_with_firms_spread_over_partitions(
    spark: Any, files: dict[str, Path], frame: pd.DataFrame,
) -> None:
    from pyspark.sql import functions as F

    spread = (spark.read.parquet(str(files["parquet"])).repartition(4)
              .withColumn("part", F.spark_partition_id())
              .groupBy("firm_id").agg(F.countDistinct("part").alias("k")))
    assert spread.agg(F.max("k")).first()[0] > 1  # a firm's rows lie in several partitions
    kw: dict[str, Any] = {"vcov": "cluster", "cluster": "firm_id", "weights": "w"}
    mem = fit(FORMULA, frame, **kw)
    st = fit_stream(FORMULA, files["parquet"], batch_rows=40_000, **kw)
    sp = fit_spark(FORMULA, files["parquet"], spark=spark, partitions=4, batch_rows=25_000, **kw)
    assert_same(mem, sp)
    assert_same(as_stream(st), sp)
    assert sp.n_clusters == 20_000
    assert mem.flow.dropped_by_reason() == sp.flow.dropped_by_reason()
    assert "C(industry)[T.manuf]" in sp.terms and sp.terms[1] != "C(industry)[T.Agri]"


def test_classical_logit_matches_memory_stream_and_mllib(
    spark: Any, files: dict[str, Path], frame: pd.DataFrame,
) -> None:
    mem = fit(FORMULA, frame)
    st = fit_stream(FORMULA, files["parquet"], batch_rows=64_000)
    sp = fit_spark(FORMULA, files["parquet"], spark=spark)
    assert_same(mem, sp)
    assert_same(as_stream(st), sp)

    # Spark MLlib's own IRLS on the same design: coefficients and SEs to 1e-6
    from pyspark.ml.feature import VectorAssembler
    from pyspark.ml.regression import GeneralizedLinearRegression

    design = build_design(FORMULA, frame)
    assert design.terms == sp.terms and design.y is not None
    j0 = design.terms.index("Intercept")
    cols = [j for j in range(len(design.terms)) if j != j0]
    table = pa.table({**{f"x{j}": design.X[:, j] for j in cols}, "y": design.y})
    path = files["root"] / "design.parquet"
    pq.write_table(table, path)
    data = VectorAssembler(inputCols=[f"x{j}" for j in cols], outputCol="features").transform(
        spark.read.parquet(str(path)))
    glr = GeneralizedLinearRegression(family="binomial", link="logit", labelCol="y",
                                      maxIter=100, tol=1e-12, regParam=0.0)
    model = glr.fit(data)
    ml_params = np.empty(len(design.terms))
    ml_params[cols] = model.coefficients.toArray()
    ml_params[j0] = model.intercept
    ses = list(model.summary.coefficientStandardErrors)  # the intercept's SE comes last
    ml_se = np.empty(len(design.terms))
    ml_se[cols] = ses[:-1]
    ml_se[j0] = ses[-1]
    np.testing.assert_allclose(sp.params, ml_params, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(sp.se, ml_se, rtol=1e-6, atol=0)


def test_probit_hc1_from_csv(spark: Any, files: dict[str, Path], panel: pd.DataFrame) -> None:
    csv = files["root"] / "last_rows.csv"
    panel.iloc[-60_000:].to_csv(csv, index=False)  # holds the late level
    f = ("exited ~ center(export_ratio) * standardize(rd_intensity) + C(industry) + alliance"
         " + C(year)")  # whole-data transform state, merged over partitions
    kw: dict[str, Any] = {"model": "probit", "vcov": "hc1", "weights": "w"}
    mem = fit(f, read_data(csv).frame, **kw)
    sp = fit_spark(f, csv, spark=spark, partitions=3, **kw)
    assert_same(mem, sp)
    assert "C(industry)[T.manuf]" in sp.terms
    assert mem.design_spec is not None and sp.design_spec is not None
    for key, state in mem.design_spec["transform_state"].items():
        for k, v in state.items():
            got = sp.design_spec["transform_state"][key][k]
            assert got == (pytest.approx(v, rel=1e-12) if isinstance(v, float) else v)


def test_cloglog_hc0_from_a_spark_sql_query(spark: Any, files: dict[str, Path],
                                            frame: pd.DataFrame) -> None:
    spark.read.parquet(str(files["parquet"])).createOrReplaceTempView("panel")
    sub = frame[frame["year"] >= 2008].reset_index(drop=True)
    mem = fit(FORMULA, sub, model="cloglog", vcov="hc0", cluster="firm_id")
    sp = fit_spark(FORMULA, sql="SELECT * FROM panel WHERE year >= 2008", spark=spark,
                   model="cloglog", vcov="hc0", cluster="firm_id")
    assert_same(mem, sp)
    assert sp.nobs < 60_000 and sp.n_clusters == mem.n_clusters == 20_000


def test_predict_after_from_dict(spark: Any, files: dict[str, Path], frame: pd.DataFrame) -> None:
    sub = files["root"] / "small.parquet"
    frame.iloc[:30_000].to_parquet(sub, index=False)
    mem = fit(FORMULA, frame.iloc[:30_000], vcov="hc1")
    sp = fit_spark(FORMULA, sub, spark=spark, vcov="hc1", information="observed")
    loaded = FitResult.from_dict(json.loads(json.dumps(sp.to_dict())))
    assert loaded.engine == "spark"
    new = frame.dropna().iloc[[0, 5, 9]].copy()
    np.testing.assert_allclose(loaded.predict(new, se_fit=True).to_numpy(),
                               mem.predict(new, se_fit=True).to_numpy(), rtol=1e-8)


# --------------------------------------------------------------------------- discrete-time hazard


def make_firms(n: int, seed: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    d = pd.DataFrame({
        "firm_id": np.arange(n), "years": rng.integers(1, 11, size=n) - rng.random(n) * 0.5,
        "exited": (rng.random(n) < 0.35).astype(np.int64), "export_ratio": rng.beta(1.2, 4, n),
        "rd_intensity": rng.gamma(1.5, 0.04, n),
        "industry": rng.choice(["manuf", "retail", "tech"], size=n).astype(object),
    })
    d.loc[rng.random(n) < 0.02, "export_ratio"] = np.nan
    d.loc[rng.random(n) < 0.01, "industry"] = None
    return d


def assert_same_hazard(mem: FitResult, sp: FitResult) -> None:
    assert (sp.model, sp.link) == ("discrete", mem.link)
    assert_same(mem, sp)
    for key, value in mem.extra.items():
        assert sp.extra[key] == value, key


def test_discrete_hazard_expanded_in_spark(spark: Any, tmp_path: Path) -> None:
    firms = make_firms(10_000)
    path = tmp_path / "firms.parquet"
    firms.to_parquet(path, index=False)
    rhs = "export_ratio * rd_intensity + C(industry)"
    kw: dict[str, Any] = {"duration": "years", "event": "exited", "id": "firm_id", "width": 1.0}
    mem = fit_discrete(rhs, read_data(path).frame, **kw)
    sp = fit_spark_discrete(rhs, path, spark=spark, partitions=3, **kw)
    assert_same_hazard(mem, sp)
    assert sp.nobs > 50_000 and sp.flow.n_read == 10_000 and sp.flow.n_dropped > 0
    assert sp.terms[:2] == ("C(period)[1]", "C(period)[2]")


def test_discrete_hazard_bands_and_person_period_input(spark: Any, tmp_path: Path) -> None:
    firms = make_firms(4_000, seed=9)
    path = tmp_path / "firms.parquet"
    firms.to_parquet(path, index=False)
    kw: dict[str, Any] = {"duration": "years", "event": "exited", "id": "firm_id",
                          "time": "bands", "cuts": [2, 5], "width": 1.0, "link": "logit",
                          "vcov": "hc1"}
    mem = fit_discrete("export_ratio + C(industry)", read_data(path).frame, **kw)
    sp = fit_spark_discrete("export_ratio + C(industry)", path, spark=spark, **kw)
    assert_same_hazard(mem, sp)
    assert sp.terms[:3] == ("C(band)[(0,2]]", "C(band)[(2,5]]", "C(band)[(5,inf)]")

    from smesurvival.data.panel import expand_person_period

    pp = expand_person_period(firms.dropna(), duration="years", event="exited", id="firm_id",
                              width=1.0, keep=["export_ratio"])
    pp_path = tmp_path / "firm_years.parquet"
    pp.to_parquet(pp_path, index=False)
    kw2: dict[str, Any] = {"event": "exited", "id": "firm_id", "expanded": True,
                           "time": "linear", "vcov": "cluster"}
    mem2 = fit_discrete("export_ratio", read_data(pp_path).frame, **kw2)
    sp2 = fit_spark_discrete("export_ratio", pp_path, spark=spark, **kw2)
    assert_same_hazard(mem2, sp2)


# --------------------------------------------------------------------------- bad input


def test_unknown_columns_and_non_binary_outcome(spark: Any, files: dict[str, Path],
                                                frame: pd.DataFrame, tmp_path: Path) -> None:
    f = "exited ~ export_ration + alliance"
    with pytest.raises(FormulaError) as e_mem:
        fit(f, frame)
    with pytest.raises(FormulaError) as e_sp:
        fit_spark(f, files["parquet"], spark=spark)
    assert str(e_sp.value) == str(e_mem.value) and "'export_ration'" in str(e_sp.value)
    with pytest.raises(UsageError, match="cluster column 'firm' is not in the data"):
        fit_spark(FORMULA, files["parquet"], spark=spark, vcov="cluster", cluster="firm")
    bad = frame.copy()
    bad.loc[len(bad) - 7, "exited"] = 2
    bad.loc[len(bad) - 3, "exited"] = -1
    path = tmp_path / "bad.parquet"
    bad.to_parquet(path, index=False)
    with pytest.raises(FormulaError) as e_mem2:
        fit(FORMULA, bad)
    with pytest.raises(FormulaError) as e_sp2:
        fit_spark(FORMULA, path, spark=spark, partitions=3)
    assert str(e_sp2.value) == str(e_mem2.value)
    assert "outcome column 'exited'" in str(e_sp2.value) and "-1.0, 2.0" in str(e_sp2.value)
    # a fit that stops early: the rows come to the driver for the separation check, then the
    # convergence message is the in-memory engine's
    small = tmp_path / "small.parquet"
    frame.iloc[:20_000].to_parquet(small, index=False)
    with pytest.raises(ConvergenceError) as e_mem3:
        fit("exited ~ export_ratio", frame.iloc[:20_000], max_iter=1)
    with pytest.raises(ConvergenceError) as e_sp3:
        fit_spark("exited ~ export_ratio", small, spark=spark, max_iter=1, partitions=2)
    assert str(e_sp3.value) == str(e_mem3.value)


def test_unreadable_files(spark: Any, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(b"this is not a parquet file" * 100)
    with pytest.raises(DataReadError, match="garbage.parquet"):
        fit_spark(FORMULA, garbage, spark=spark)
    with pytest.raises(DataReadError, match="no such file"):
        fit_spark(FORMULA, tmp_path / "missing.parquet", spark=spark)
    xlsx = tmp_path / "x.xlsx"
    xlsx.write_bytes(b"not empty")
    with pytest.raises(DataReadError, match="reads Parquet"):
        fit_spark(FORMULA, xlsx, spark=spark)
    with pytest.raises(UsageError, match="model must be one of"):
        fit_spark(FORMULA, xlsx, spark=spark, model="cox")  # type: ignore[arg-type]
    lines = ["y,x"] + [f"{i % 2},{i * 0.1}" for i in range(3000)]
    lines[2001] = "1,abc"  # a malformed cell in a numeric column, deep in the file
    csv = tmp_path / "text.csv"
    csv.write_text("\n".join(lines) + "\n")
    # the partitions count the text cells; the driver finds their file lines (a local CSV)
    with pytest.raises(DataValidationError, match=r"text.csv: column 'x' holds numbers, but file "
                                                  r"line\(s\) 2002 \(1 row\(s\)\) hold text \('abc'\)"):
        fit_spark("y ~ x", csv, spark=spark)
    from smesurvival.scale.spark import _text_lines_on_driver

    assert _text_lines_on_driver("<Spark DataFrame>", "x") is None  # no file: the count alone
    assert _text_lines_on_driver(str(tmp_path / "gone.csv"), "x") is None


def test_bad_subject_rows_are_named(spark: Any, tmp_path: Path) -> None:
    firms = make_firms(3_000, seed=2)
    firms.loc[[17, 2400], "years"] = [0.0, -2.0]
    path = tmp_path / "firms.parquet"
    firms.to_parquet(path, index=False)
    kw: dict[str, Any] = {"duration": "years", "event": "exited", "id": "firm_id", "width": 1.0}
    with pytest.raises(DataValidationError) as e_mem:
        fit_discrete("export_ratio", read_data(path).frame, **kw)
    with pytest.raises(DataValidationError) as e_sp:
        fit_spark_discrete("export_ratio", path, spark=spark, **kw)
    assert str(e_sp.value) == str(e_mem.value)
    assert "rows 17, 2400" in str(e_sp.value)


def test_missing_pyspark_or_java_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, files: dict[str, Path], capsys: pytest.CaptureFixture[str],
) -> None:
    from pyspark.sql import SparkSession

    from smesurvival.scale.spark_io import spark_session

    with monkeypatch.context() as m:
        m.setattr(SparkSession, "getActiveSession", staticmethod(lambda: None))
        m.setattr(shutil, "which", lambda name: None)
        m.delenv("JAVA_HOME", raising=False)
        with pytest.raises(UsageError, match="needs Java 17"):
            spark_session()
    with monkeypatch.context() as m:
        m.setitem(sys.modules, "pyspark", None)
        with pytest.raises(UsageError, match=r"pip install 'smesurvival\[spark\]'"):
            fit_spark(FORMULA, files["parquet"])
        code, _, err = run_cli(["fit", str(files["parquet"]), "--formula", FORMULA,
                                "--engine", "spark"], capsys)
    assert code == 2 and "smesurvival[spark]" in err and "Traceback" not in err


# --------------------------------------------------------------------------- the CLI


def test_cli_spark_json_equals_memory(spark: Any, files: dict[str, Path], frame: pd.DataFrame,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    path = files["root"] / "cli.parquet"
    frame.iloc[:40_000].to_parquet(path, index=False)
    args = ["fit", str(path), "--model", "logit", "--formula", FORMULA, "--vcov", "cluster",
            "--cluster", "firm_id", "--weights", "w", "--json", "-"]
    code, out_mem, err = run_cli(args, capsys)
    assert code == 0, err
    code, out_sp, err = run_cli([*args, "--engine", "spark", "--spark-master", "local[2]",
                                 "--partitions", "3"], capsys)
    assert code == 0, err
    mem, sp = json.loads(out_mem), json.loads(out_sp)
    assert (mem.pop("engine"), sp.pop("engine")) == ("memory", "spark")
    assert abs(mem.pop("iterations") - sp.pop("iterations")) <= 1
    _numbers_equal(mem, sp)


def test_cli_spark_discrete_and_refusals(spark: Any, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "firms.parquet"
    make_firms(2_000, seed=4).to_parquet(path, index=False)
    args = ["fit", str(path), "--model", "discrete", "--time", "years", "--event", "exited",
            "--id", "firm_id", "--width", "1", "--formula", "export_ratio + C(industry)",
            "--json", "-"]
    code, out_mem, err = run_cli(args, capsys)
    assert code == 0, err
    code, out_sp, err = run_cli([*args, "--engine", "spark"], capsys)
    assert code == 0, err
    mem, sp = json.loads(out_mem), json.loads(out_sp)
    assert (mem.pop("engine"), sp.pop("engine")) == ("memory", "spark")
    assert abs(mem.pop("iterations") - sp.pop("iterations")) <= 1
    _numbers_equal(mem, sp)
    code, _, err = run_cli(["fit", str(path), "--model", "finegray", "--formula", "export_ratio",
                            "--time", "years", "--event", "exited", "--engine", "spark"], capsys)
    assert code == 2 and "logit, probit, cloglog, discrete or cox" in err
    code, _, err = run_cli(["fit", str(path), "--model", "cox", "--formula", "export_ratio",
                            "--time", "years", "--event", "exited", "--engine", "spark",
                            "--vcov", "cluster", "--cluster", "firm_id"], capsys)
    assert code == 2 and "classical SEs" in err


def test_cox_on_spark_equals_memory(spark: Any, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    """Cox (issue 5's stretch): per-partition per-event-time sums and risk-set Grams added on
    the driver give fit_cox's numbers, with strata, entry times and weights; a bad duration
    is named by file line."""
    from smesurvival.models.cox import fit_cox
    from smesurvival.scale.spark_cox import fit_spark_cox

    rng = np.random.default_rng(8)
    n = 12_000
    df = pd.DataFrame({"x": rng.normal(size=n), "g": rng.choice(list("abc"), n),
                       "t": rng.integers(1, 60, n).astype(float), "s": rng.choice(["u", "v"], n),
                       "w": rng.integers(1, 3, n).astype(float)})
    df["e"] = (rng.random(n) < 1 / (1 + np.exp(-0.5 * df.x))).astype(float)
    df["t0"] = np.floor(rng.random(n) * (df.t - 0.5))
    path = tmp_path / "surv.parquet"
    df.to_parquet(path, index=False)
    kw: dict[str, Any] = {"strata": "s", "entry": "t0", "weights": "w"}
    mem = fit_cox("x + C(g)", df, duration="t", event="e", concordance=False, **kw)
    sp = fit_spark_cox("x + C(g)", path, duration="t", event="e", spark=spark, partitions=3, **kw)
    assert sp.engine == "spark" and sp.terms == mem.terms and sp.nobs == mem.nobs
    np.testing.assert_allclose(sp.params, mem.params, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(sp.se, mem.se, rtol=1e-8)
    assert sp.loglik == pytest.approx(mem.loglik, rel=1e-12)
    code, out, err = run_cli(["fit", str(path), "--model", "cox", "--formula", "x + C(g)",
                              "--time", "t", "--event", "e", "--engine", "spark", "--json", "-"],
                             capsys)
    assert code == 0, err
    got = json.loads(out)
    plain = fit_cox("x + C(g)", df, duration="t", event="e", concordance=False)
    assert got["params"]["x"] == pytest.approx(float(plain.params[0]), rel=1e-10)
    bad = df.copy()
    bad.loc[9_000, "t"] = -1.0
    bad_path = tmp_path / "bad.parquet"
    bad.to_parquet(bad_path, index=False)
    with pytest.raises(DataValidationError, match=r"durations must be positive.*file line\(s\) 9002"):
        fit_spark_cox("x", bad_path, duration="t", event="e", spark=spark, partitions=3)


def test_study_spec_engine_spark(spark: Any) -> None:
    """[model] engine = "spark": the reference study's main steps through Spark equal the
    in-memory study (the measures frame is shipped to Spark with Arrow)."""
    import tomllib
    from importlib import resources

    from smesurvival.study.run import run_study
    from smesurvival.study.spec import spec_from_dict

    raw = tomllib.loads(resources.files("smesurvival.study").joinpath("lee2012.toml").read_text("utf-8"))
    raw["model"]["engine"] = "spark"
    raw["steps"] = raw["steps"][:2]
    for section in ("figures", "implications", "effects", "mediation", "robustness", "missing"):
        raw.pop(section, None)
    raw["hypotheses"] = [h for h in raw["hypotheses"] if h.get("step") in {s["name"] for s in raw["steps"]}]
    spec = spec_from_dict(raw, "t.toml")
    on_spark = run_study(spec, robustness=False)
    raw["model"]["engine"] = "memory"
    memory = run_study(spec_from_dict(raw, "t.toml"), robustness=False)
    for a, b in zip(on_spark.steps, memory.steps, strict=True):
        assert a.fit.engine == "spark"
        np.testing.assert_allclose(a.fit.params, b.fit.params, rtol=0, atol=1e-8)
        np.testing.assert_allclose(a.fit.se, b.fit.se, rtol=0, atol=1e-8)
