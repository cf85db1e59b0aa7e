"""The command line: JSON contract, exit statuses, and bad input named by column and line."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import load_ref, r_name, run_cli
from smesurvival.data.synthetic import simulate_cohort

run = run_cli


@pytest.fixture()
def mroz_csv(tmp_path: Path, mroz: pd.DataFrame) -> Path:
    p = tmp_path / "mroz.csv"
    mroz[["lfp", "k5", "k618", "age", "wcyes", "hcyes", "lwg", "inc"]].to_csv(p, index=False)
    return p


def test_fit_json_contract(mroz_csv: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["fit", str(mroz_csv), "--model", "logit", "--formula",
                        "lfp ~ k5 + k618 + age + wcyes + hcyes + lwg + inc + wcyes:inc",
                        "--json", "-"], capsys)
    assert code == 0
    d = json.loads(out)
    for key in ("model", "formula", "n_obs", "n_events", "dropped", "params", "bse", "pvalues",
                "conf_int", "loglik", "llnull", "aic", "bic", "converged", "iterations",
                "vcov_type", "engine"):
        assert key in d, key
    ref = load_ref("logit_interaction")
    for t, b in d["params"].items():
        assert b == pytest.approx(ref["coefficients"]["estimate"][r_name(t)], rel=1e-6)
        assert d["bse"][t] == pytest.approx(ref["coefficients"]["se"][r_name(t)], rel=1e-6)
    assert d["loglik"] == pytest.approx(ref["loglik"], rel=1e-8)
    assert d["llnull"] == pytest.approx(ref["loglik_null"], rel=1e-8)
    assert d["engine"] == "memory" and d["n_obs"] == 753 and d["dropped"] == {}


def test_fit_robust_json_matches_r(mroz_csv: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ref = load_ref("logit_interaction")["coefficients"]["se_HC1"]
    code, out, _ = run(["fit", str(mroz_csv), "--formula",
                        "lfp ~ k5 + k618 + age + wcyes + hcyes + lwg + inc + wcyes:inc",
                        "--vcov", "hc1", "--json", "-"], capsys)
    assert code == 0
    for t, s in json.loads(out)["bse"].items():
        assert s == pytest.approx(ref[r_name(t)], rel=1e-6)


def test_fit_right_hand_side_with_event_and_cluster(mroz_csv: Path, capsys) -> None:
    code, out, _ = run(["fit", str(mroz_csv), "--formula", "k5 + age", "--event", "lfp",
                        "--vcov", "cluster", "--cluster", "k618", "--json", "-"], capsys)
    assert code == 0
    d = json.loads(out)
    assert d["vcov_type"] == "cluster" and d["n_clusters"] > 1
    assert set(d["params"]) == {"Intercept", "k5", "age"}


def test_fit_counts_dropped_rows(tmp_path: Path, mroz: pd.DataFrame, capsys) -> None:
    d = mroz[["lfp", "k5", "age"]].copy().astype(float)
    d.loc[[3, 7, 9], "age"] = None
    p = tmp_path / "m.csv"
    d.to_csv(p, index=False)
    code, out, _ = run(["fit", str(p), "--formula", "lfp ~ k5 + age", "--json", "-"], capsys)
    assert code == 0
    res = json.loads(out)
    assert res["dropped"] == {"missing value in column 'age'": 3} and res["n_obs"] == 750


def test_fit_table_output(mroz_csv: Path, capsys) -> None:
    code, out, _ = run(["fit", str(mroz_csv), "--formula", "lfp ~ k5 + age"], capsys)
    assert code == 0 and "k5" in out and "McFadden" in out


@pytest.mark.parametrize("argv,fragment", [
    (["--model", "tobit"], "model must be one of logit, probit, cloglog, firth, cox, discrete, finegray"),
    (["--model", "cox"], "--model cox needs --time"),
    (["--model", "firth", "--vcov", "hc9"], "vcov must be one of"),
    (["--vcov", "hc9"], "vcov must be one of"),
    (["--formula", "lfp ~ nosuch"], "'nosuch'"),
    (["--formula", "lfp ~ __import__('os')"], "not allowed"),
    (["--formula", "k5"], "needs --event (the outcome column)"),
])
def test_fit_usage_errors_exit_2(mroz_csv: Path, capsys, argv: list[str], fragment: str) -> None:
    base = ["fit", str(mroz_csv), "--formula", "lfp ~ k5"]
    code, _, err = run(base + argv, capsys)
    assert code == 2
    assert fragment in " ".join(err.split())
    assert "Traceback" not in err


def test_fit_missing_file(capsys, tmp_path: Path) -> None:
    code, _, err = run(["fit", str(tmp_path / "nope.csv"), "--formula", "y ~ x"], capsys)
    assert code == 2 and "nope.csv" in err


def test_separation_is_exit_2(capsys) -> None:
    from conftest import REF

    code, _, err = run(["fit", str(REF / "data" / "brglm2_endometrial.csv"), "--formula",
                        "HG ~ NV + PI + EH"], capsys)
    assert code == 2 and "separation" in err and "'NV'" in err


@pytest.fixture(scope="module")
def firms() -> pd.DataFrame:
    return simulate_cohort(n=40, seed=3).frame


def _corrupt(firms: pd.DataFrame, tmp_path: Path, row: int, **values: object) -> Path:
    d = firms.copy().astype(object)
    for k, v in values.items():
        d.loc[row, k] = v
    p = tmp_path / "firms.csv"
    d.to_csv(p, index=False)
    return p


@pytest.mark.parametrize("row,values,column", [
    (4, {"export_sales": 1e9}, "export_sales"),
    (6, {"employees": -3}, "employees"),
    (2, {"rd_employees": 10_000}, "rd_employees"),
    (9, {"exit_year": 1950, "exit_type": "failure", "exit_month": 3}, "exit_year"),
    (5, {"firm_id": 1}, "firm_id"),  # duplicates firm 1 (row 0)
    (7, {"sales": "lots"}, "sales"),
    (3, {"exit_type": "vanished", "exit_year": 2006, "exit_month": 2}, "exit_type"),
])
def test_validate_bad_input(firms, tmp_path, capsys, row: int, values: dict, column: str) -> None:
    p = _corrupt(firms, tmp_path, row, **values)
    code, _, err = run(["validate", str(p)], capsys)
    text = " ".join(err.split())
    assert code == 2, text
    assert f"column '{column}'" in text
    assert re.search(rf"lines? (\d+, )*{row + 2}\b", text), text
    assert "Traceback" not in err


def test_validate_good_file(firms, tmp_path, capsys) -> None:
    p = tmp_path / "ok.csv"
    firms.to_csv(p, index=False)
    code, out, _ = run(["validate", str(p)], capsys)
    assert code == 0 and "no errors" in out


def test_study_bad_input_leaves_no_output(firms, tmp_path, capsys) -> None:
    p = _corrupt(firms, tmp_path, 6, employees=-3)
    out_dir = tmp_path / "report"
    code, _, err = run(["study", "lee2012", "--data", str(p), "--out", str(out_dir)], capsys)
    assert code == 2 and "employees" in err
    assert not out_dir.exists()


def test_simulate_writes_csv_and_truth(tmp_path, capsys) -> None:
    p = tmp_path / "c.csv"
    code, _, err = run(["simulate", "--n", "300", "--seed", "5", "--out", str(p)], capsys)
    assert code == 0 and "SYNTHETIC" in err
    d = pd.read_csv(p)
    assert len(d) == 300
    assert json.loads((tmp_path / "c.csv.truth.json").read_text())["seed"] == 5


def test_simulate_panel_parquet(tmp_path, capsys) -> None:
    p = tmp_path / "c.parquet"
    code, _, _ = run(["simulate", "--n", "200", "--panel", "--out", str(p)], capsys)
    assert code == 0
    d = pd.read_parquet(p)
    assert {"year", "t", "event"} <= set(d.columns) and len(d) > 200


def test_unknown_command_is_usage_error(capsys) -> None:
    code, _, _ = run(["frobnicate"], capsys)
    assert code == 2


@pytest.fixture()
def rossi_csv(tmp_path: Path, rossi: pd.DataFrame) -> Path:
    p = tmp_path / "rossi.csv"
    rossi.assign(id=range(len(rossi))).to_csv(p, index=False)
    return p


def test_km_json_contract_and_figure(rossi_csv: Path, tmp_path: Path, capsys) -> None:
    ref = load_ref("km_rossi")
    fig = tmp_path / "km.png"
    code, out, _ = run(["km", str(rossi_csv), "--time", "week", "--event", "arrest", "--by", "finyes",
                        "--figure", str(fig), "--json", "-"], capsys)
    assert code == 0 and fig.stat().st_size > 1000
    d = json.loads(out)
    assert set(d["groups"]) == {"0", "1"}
    g = d["groups"]["1"]
    for key in ("time", "survival", "std_err", "conf_low", "conf_high", "at_risk"):
        assert len(g[key]) == len(g["time"])
    assert d["logrank"]["chi2"] == pytest.approx(ref["logrank"]["chisq"], rel=1e-8)
    assert d["logrank"]["df"] == 1


def test_km_table(rossi_csv: Path, capsys) -> None:
    code, out, _ = run(["km", str(rossi_csv), "--time", "week", "--event", "arrest"], capsys)
    assert code == 0 and "not reached" in out


def test_fit_cox_json(rossi_csv: Path, capsys) -> None:
    ref = load_ref("cox_rossi")["efron"]
    code, out, _ = run(["fit", str(rossi_csv), "--model", "cox", "--time", "week", "--event", "arrest",
                        "--formula", "finyes + age + prio", "--json", "-"], capsys)
    assert code == 0
    d = json.loads(out)
    assert d["model"] == "cox" and "Intercept" not in d["params"]
    assert d["extra"]["concordance"]["c_index"] > 0.5
    assert d["exp_params"]["prio"] == pytest.approx(np.exp(d["params"]["prio"]))
    assert d["n_events"] == ref["n_events"]


def test_fit_discrete_from_subject_rows(rossi_csv: Path, capsys) -> None:
    code, out, _ = run(["fit", str(rossi_csv), "--model", "discrete", "--time", "week", "--event", "arrest",
                        "--id", "id", "--width", "4", "--formula", "finyes + age", "--vcov", "classical",
                        "--json", "-"], capsys)
    assert code == 0
    d = json.loads(out)
    assert d["n_obs"] == 4991 and d["extra"]["n_subjects"] == 432


def test_fit_bad_survival_input_exit_2(tmp_path: Path, rossi: pd.DataFrame, capsys) -> None:
    p = tmp_path / "bad.csv"
    rossi.assign(week=rossi.week.where(rossi.index != 2, -1)).to_csv(p, index=False)
    code, _, err = run(["fit", str(p), "--model", "cox", "--time", "week", "--event", "arrest",
                        "--formula", "age"], capsys)
    assert code == 2 and "week" in err and "line(s) 4" in err


@pytest.fixture(scope="module")
def measures_csv(tmp_path_factory) -> Path:
    from smesurvival.data import ColumnMap, MeasureOptions, build_measures

    p = tmp_path_factory.mktemp("m") / "m.csv"
    build_measures(simulate_cohort(n=1612, seed=3).frame, ColumnMap.default(), MeasureOptions()).frame.to_csv(p, index=False)
    return p


F_INT = "survived ~ export_ratio * rd_intensity + rd_alliance"


def test_slopes_json_rows(measures_csv: Path, capsys) -> None:
    from smesurvival.inference.effects import avg_slopes
    from smesurvival.models.fit import fit as fit_model

    code, out, _ = run(["slopes", str(measures_csv), "--formula", F_INT, "--variable", "export_ratio",
                        "--json", "-"], capsys)
    assert code == 0
    d = json.loads(out)
    data = pd.read_csv(measures_csv)
    want = avg_slopes(fit_model(F_INT, data), data, "export_ratio").frame
    row = d["rows"][0]
    for k in ("term", "estimate", "std_error", "conf_low", "conf_high"):
        assert k in row
    assert row["estimate"] == pytest.approx(float(want["estimate"].iloc[0]), rel=1e-12)


def test_slopes_by_moderator_and_at(measures_csv: Path, capsys) -> None:
    code, out, _ = run(["slopes", str(measures_csv), "--formula", F_INT, "--variable", "export_ratio",
                        "--by", "rd_intensity", "--json", "-"], capsys)
    assert code == 0 and len(json.loads(out)["rows"]) == 3
    code, out, _ = run(["slopes", str(measures_csv), "--formula", F_INT, "--variable", "export_ratio",
                        "--at", "rd_alliance=0,1", "--json", "-"], capsys)
    assert code == 0 and len(json.loads(out)["rows"]) == 2


def test_jn_predictions_mediate(measures_csv: Path, tmp_path: Path, capsys) -> None:
    code, out, _ = run(["jn", str(measures_csv), "--formula", F_INT, "--variable", "export_ratio",
                        "--by", "rd_intensity", "--figure", str(tmp_path / "jn.png"), "--json", "-"], capsys)
    assert code == 0 and "bounds" in json.loads(out) and (tmp_path / "jn.png").exists()
    code, out, _ = run(["predictions", str(measures_csv), "--formula", F_INT, "--at",
                        "export_ratio=0,0.3", "--json", "-"], capsys)
    rows = json.loads(out)["rows"]
    assert code == 0 and len(rows) == 2 and rows[1]["estimate"] > rows[0]["estimate"]
    code, out, _ = run(["mediate", str(measures_csv), "--outcome", "survived", "--variable", "rd_intensity",
                        "--mediator", "export_ratio", "--controls", "log_firm_age,log_employees",
                        "--json", "-"], capsys)
    terms = [r["term"] for r in json.loads(out)["rows"]]
    assert code == 0 and {"total", "direct", "indirect"} <= set(terms)


def test_power_command(tmp_path: Path, capsys) -> None:
    code, out, _ = run(["power", "lee2012", "--n", "600", "--reps", "20", "--json", "-"], capsys)
    d = json.loads(out)
    assert code == 0 and d["synthetic"] and len(d["power"][0]) == 7
    code, _, err = run(["power", "lee2012", "--n", "x"], capsys)
    assert code == 2 and "--n takes integers" in err


def test_study_with_mice_and_bad_missing_option(tmp_path: Path, capsys) -> None:
    frame = simulate_cohort(n=1612, seed=21).frame.copy()
    frame.loc[frame.index[::40], "rd_employees"] = np.nan
    p = tmp_path / "firms.csv"
    frame.to_csv(p, index=False)
    code, _, err = run(["study", "lee2012", "--data", str(p), "--out", str(tmp_path / "r"), "--missing", "nope"], capsys)
    assert code == 2 and "listwise" in err and not (tmp_path / "r").exists()
    code, _, _ = run(["study", "lee2012", "--data", str(p), "--out", str(tmp_path / "r2"), "--missing", "mice"], capsys)
    assert code == 0
    d = json.loads((tmp_path / "r2" / "results.json").read_text())
    assert "missing" in d


def test_study_formats_bundle_and_replicate(tmp_path, capsys) -> None:
    """study --format/--bundle/--include-data, then replicate: exit 0; a tampered copy: exit 3."""
    from smesurvival.data.synthetic import simulate_cohort

    data = tmp_path / "firms.csv"
    simulate_cohort(600, 11).frame.to_csv(data, index=False)
    out_dir, bundle = tmp_path / "rep", tmp_path / "study.zip"
    code, out, err = run_cli(["study", "lee2012", "--data", str(data), "--out", str(out_dir),
                              "--format", "md,latex", "--bundle", str(bundle), "--include-data"], capsys)
    assert code == 0, err
    assert (out_dir / "tables.tex").is_file() and not (out_dir / "tables.docx").exists()
    assert "replication bundle" in out
    code, out, err = run_cli(["replicate", str(bundle)], capsys)
    assert code == 0 and "replicated: all" in out, err
    tampered = tmp_path / "tampered.csv"
    tampered.write_text(data.read_text().replace("\n", "\n ", 1))
    code, out, err = run_cli(["replicate", str(bundle), "--data", str(tampered)], capsys)
    assert code == 3 and "data hash mismatch" in err
    code, _, err = run_cli(["study", "lee2012", "--format", "pdf", "--out", str(tmp_path / "x")], capsys)
    assert code == 2 and "--format takes" in err


def test_serve_and_firth_options_exist(capsys) -> None:
    code, out, _ = run_cli(["serve", "--help"], capsys)
    assert code == 0 and "--data-dir" in out
    code, _, err = run_cli(["fit", "x.csv", "--formula", "y ~ x", "--firth", "--engine", "stream"], capsys)
    assert code == 2 and "--firth runs on --engine memory" in err
