"""Tests of the synthetic cohort: API, invariants, calibration moments, truth recovery."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from smesurvival.data.synthetic import (
    COLUMNS,
    MANUFACTURING,
    TERMS,
    CohortParams,
    SyntheticCohort,
    firm_years,
    simulate_cohort,
)
from smesurvival.errors import UsageError

INT_COLUMNS = ("firm_id", "survey_year", "founding_year", "employees", "rd_employees", "patents",
               "new_products", "certified_tech", "rd_alliance", "last_year_observed")
FLOAT_COLUMNS = ("sales", "export_sales", "rd_expenditure", "weight")


@pytest.fixture(scope="module")
def default() -> SyntheticCohort:
    return simulate_cohort()


@pytest.fixture(scope="module")
def large() -> SyntheticCohort:
    """A 200k-firm smoke run (also the sample for the calibration moments)."""
    return simulate_cohort(n=200_000, seed=7)


def _measures(frame: pd.DataFrame, truth: dict) -> pd.DataFrame:
    """Measures standardised with the cohort's population constants (as the truth is stated)."""
    items = truth["innovativeness_items"]
    raw = {
        "log_firm_age": np.log1p(frame["survey_year"] - frame["founding_year"]),
        "log_employees": np.log(frame["employees"]),
        "export_ratio": frame["export_sales"] / frame["sales"],
        "rd_intensity": frame["rd_employees"] / frame["employees"],
        "innovativeness": sum((np.log1p(frame[q].astype(float)) - v["mean"]) / v["sd"]
                              for q, v in items.items()) / 3,
        "rd_alliance": frame["rd_alliance"].astype(float),
    }
    pop = truth["population"]
    z = {t: (x - pop[t]["mean"]) / pop[t]["sd"] for t, x in raw.items()}
    return pd.DataFrame({t: z[t] if ":" not in t else z[t.split(":")[0]] * z[t.split(":")[1]]
                         for t in TERMS})


# ----------------------------------------------------------------------------- API

def test_default_shape_label_and_truth(default: SyntheticCohort) -> None:
    assert default.frame.shape == (1612, len(COLUMNS))
    assert default.label == ("SYNTHETIC cohort calibrated to Lee et al. (2012); "
                             "not real firms (seed 2012, n 1612)")
    truth = json.loads(json.dumps(default.truth))  # JSON-serialisable
    assert truth["seed"] == 2012 and truth["n"] == 1612
    assert set(truth["failure_hazard"]["per_sd"]) == set(TERMS)
    real = truth["realised"]
    assert real["n_exits"] == int(default.frame["exit_year"].notna().sum())
    assert sum(real["exits_by_type"].values()) == real["n_exits"]
    assert len(truth["baseline_hazard"]["failure"]) == 5


def test_determinism_by_seed() -> None:
    a, b = simulate_cohort(n=3000, seed=11), simulate_cohort(n=3000, seed=11)
    pd.testing.assert_frame_equal(a.frame, b.frame)
    assert a.truth == b.truth
    c = simulate_cohort(n=3000, seed=12)
    assert not a.frame["employees"].equals(c.frame["employees"])


def test_truth_is_the_same_across_seeds_and_sizes() -> None:
    a, b = simulate_cohort(n=500, seed=1).truth, simulate_cohort(n=900, seed=2).truth
    for key in ("failure_hazard", "acquisition_hazard", "baseline_hazard", "population", "params"):
        assert a[key] == b[key]


def test_columns_and_dtypes(default: SyntheticCohort) -> None:
    f = default.frame
    assert tuple(f.columns) == COLUMNS
    for col in INT_COLUMNS:
        assert f[col].dtype == np.int64, col
    for col in FLOAT_COLUMNS:
        assert f[col].dtype == np.float64, col
    assert str(f["exit_year"].dtype) == "Int64" and str(f["exit_month"].dtype) == "Int64"
    for col in ("industry", "region", "exit_type"):
        assert pd.api.types.is_string_dtype(f[col]), col
    assert f["firm_id"].is_unique


# ----------------------------------------------------------------------------- invariants

def _check_invariants(f: pd.DataFrame) -> None:
    assert (f["export_sales"] <= f["sales"]).all() and (f["export_sales"] >= 0).all()
    assert (f["sales"] > 0).all() and (f["rd_expenditure"] > 0).all()
    assert (f["rd_employees"] <= f["employees"]).all() and (f["rd_employees"] >= 1).all()
    assert f["employees"].between(5, 299).all()
    assert (f["founding_year"] < f["survey_year"]).all()
    assert f["certified_tech"].isin([0, 1]).all() and f["rd_alliance"].isin([0, 1]).all()
    assert (f["patents"] >= 0).all() and (f["new_products"] >= 0).all() and (f["weight"] > 0).all()
    has_exit = f["exit_year"].notna()
    assert (f["exit_month"].notna() == has_exit).all()
    assert (f["exit_type"].notna() == has_exit).all()
    assert f.loc[has_exit, "exit_year"].between(2004, 2008).all()
    assert f.loc[has_exit, "exit_month"].between(1, 12).all()
    assert set(f.loc[has_exit, "exit_type"]) <= {"failure", "acquisition", "other"}
    assert (f.loc[has_exit, "exit_year"] <= f.loc[has_exit, "last_year_observed"]).all()
    assert f["last_year_observed"].between(2004, 2008).all()


def test_invariants_default(default: SyntheticCohort) -> None:
    _check_invariants(default.frame)
    assert (default.frame["last_year_observed"] == 2008).all()


def test_invariants_large(large: SyntheticCohort) -> None:
    _check_invariants(large.frame)


def test_lost_to_follow_up() -> None:
    cohort = simulate_cohort(n=20_000, seed=3, params=CohortParams(lost_to_follow_up=0.1))
    f = cohort.frame
    _check_invariants(f)
    lost = (f["last_year_observed"] < 2008).mean()
    assert 0.07 < lost < 0.13
    assert cohort.truth["realised"]["lost_to_follow_up"] == int((f["last_year_observed"] < 2008).sum())
    assert "custom parameters" in cohort.label


# ----------------------------------------------------------------------------- calibration

def test_calibration_moments(large: SyntheticCohort) -> None:
    f = large.frame
    emp = f["employees"]
    assert f["industry"].isin(MANUFACTURING).mean() == pytest.approx(0.82, abs=0.01)
    assert f["industry"].nunique() == 10 and f["region"].nunique() == 5
    assert 31 <= emp.mean() <= 34
    classes = pd.cut(emp, [4, 9, 19, 49, 99, 299]).value_counts(normalize=True).sort_index()
    assert classes.iloc[1] == pytest.approx(0.36, abs=0.02) and classes.idxmax() == classes.index[1]
    assert 12 <= (f["survey_year"] - f["founding_year"]).mean() <= 14
    ratio = f["export_sales"] / f["sales"]
    assert (ratio > 0).mean() == pytest.approx(0.50, abs=0.015)
    assert ratio[ratio > 0].median() == pytest.approx(0.20, abs=0.03)
    assert 0.13 <= (f["rd_employees"] / emp).mean() <= 0.18
    assert (f["rd_expenditure"] / f["sales"]).mean() == pytest.approx(0.04, abs=0.005)
    assert f["rd_alliance"].mean() == pytest.approx(0.30, abs=0.015)
    assert f["weight"].mean() == pytest.approx(2.0, abs=0.2)
    assert f["exit_year"].isna().mean() == pytest.approx(0.85, abs=0.01)
    shares = f["exit_type"].value_counts(normalize=True)
    assert shares["failure"] == pytest.approx(0.75, abs=0.02)
    assert shares["acquisition"] == pytest.approx(0.20, abs=0.02)
    assert shares["other"] == pytest.approx(0.05, abs=0.01)


def test_rd_to_export_path(large: SyntheticCohort) -> None:
    f = large.frame
    rd = f["rd_employees"] / f["employees"]
    exporter = f["export_sales"] > 0
    assert rd[exporter].mean() > rd[~exporter].mean()


@pytest.mark.slow
def test_study_direction_recovered_on_large_cohort(large: SyntheticCohort) -> None:
    """H1, H4 and H3a come out positive and significant in the study's logit on n = 200k."""
    sm = pytest.importorskip("statsmodels.api")
    f = large.frame
    x = pd.DataFrame({
        "export_ratio": f["export_sales"] / f["sales"],
        "rd_intensity": f["rd_employees"] / f["employees"],
        "innovativeness": _measures(f, large.truth)["innovativeness"],
        "rd_alliance": f["rd_alliance"].astype(float),
    })
    x = x - x.mean()
    controls = pd.DataFrame({"const": 1.0, "log_firm_age": np.log1p(2003 - f["founding_year"]),
                             "log_employees": np.log(f["employees"])})
    design = pd.concat([controls, pd.get_dummies(f["industry"], drop_first=True, dtype=float), x],
                       axis=1)
    survived = f["exit_year"].isna().astype(float)
    m2 = sm.Logit(survived, design).fit(disp=0)
    assert m2.params["export_ratio"] > 0 and m2.tvalues["export_ratio"] > 3
    assert m2.params["rd_alliance"] > 0 and m2.tvalues["rd_alliance"] > 3
    design["export_ratio:rd_intensity"] = x["export_ratio"] * x["rd_intensity"]
    m3 = sm.Logit(survived, design).fit(disp=0)
    assert m3.params["export_ratio:rd_intensity"] > 0
    assert m3.tvalues["export_ratio:rd_intensity"] > 3


@pytest.mark.slow
def test_failure_hazard_truth_recovered(large: SyntheticCohort) -> None:
    """A cause-specific Cox model of failure recovers the true per-SD coefficients."""
    sm = pytest.importorskip("statsmodels.api")
    f = large.frame
    z = _measures(f, large.truth)
    design = pd.concat([z, pd.get_dummies(f["industry"], drop_first=True, dtype=float)], axis=1)
    time = ((f["exit_year"].astype(float) - 2004) + f["exit_month"].astype(float) / 12).fillna(5.0)
    status = (f["exit_type"] == "failure").to_numpy(int)
    fit = sm.PHReg(time.to_numpy(), design.to_numpy(float), status=status, ties="breslow").fit()
    truth = large.truth["failure_hazard"]["per_sd"]
    for i, term in enumerate(TERMS):
        assert abs(fit.params[i] - truth[term]) < max(4 * fit.bse[i], 0.03), term


# ----------------------------------------------------------------------------- panel, write

def test_panel_frame(default: SyntheticCohort) -> None:
    f = default.frame
    panel = default.panel_frame()
    end = f["exit_year"].astype("float").fillna(f["last_year_observed"].astype(float))
    assert len(panel) == int((end - f["survey_year"]).sum())
    assert int(panel["event"].sum()) == int(f["exit_year"].notna().sum())
    assert panel["t"].between(1, 5).all() and (panel["year"] == 2003 + panel["t"]).all()
    assert (panel.groupby("firm_id")["event"].sum() <= 1).all()
    last_rows = panel.groupby("firm_id").tail(1)
    assert (last_rows["event"] == last_rows["exit_year"].notna().astype(int)).all()
    with_panel = simulate_cohort(panel=True)
    assert with_panel.panel and with_panel.truth["layout"] == "firm-years"
    pd.testing.assert_frame_equal(with_panel.frame, panel)
    pd.testing.assert_frame_equal(with_panel.panel_frame(), panel)


def test_panel_with_losses_stops_at_last_year() -> None:
    f = simulate_cohort(n=5000, seed=4, params=CohortParams(lost_to_follow_up=0.2)).frame
    panel = firm_years(f)
    assert (panel.groupby("firm_id")["year"].max().to_numpy()
            <= f["last_year_observed"].to_numpy()).all()


@pytest.mark.parametrize("ext", [".csv", ".parquet"])
def test_write_round_trip(tmp_path, default: SyntheticCohort, ext: str) -> None:
    path = default.write(tmp_path / f"cohort{ext}")
    back = pd.read_csv(path) if ext == ".csv" else pd.read_parquet(path)
    assert list(back.columns) == list(COLUMNS) and len(back) == 1612
    assert back["exit_year"].notna().sum() == default.frame["exit_year"].notna().sum()
    truth = json.loads((tmp_path / f"cohort{ext}.truth.json").read_text())
    assert truth["failure_hazard"] == json.loads(json.dumps(default.truth["failure_hazard"]))


def test_write_rejects_unknown_extension(tmp_path, default: SyntheticCohort) -> None:
    with pytest.raises(UsageError, match="csv or .parquet"):
        default.write(tmp_path / "cohort.xlsx")


# ----------------------------------------------------------------------------- validation

@pytest.mark.parametrize("changes", [
    {"exporter_share": 1.2}, {"survival_5y": 0.0}, {"corr_age_size": 1.0},
    {"industry_shares": (0.5, 0.5)}, {"exit_shares": (0.5, 0.4, 0.2)},
    {"baseline_shape": (1.0, 1.0)}, {"failure_coefs": (0.1,)}, {"age_log_sd": -1.0},
    {"lost_to_follow_up": 1.0}, {"class_weights": (1.0, 1.0)}, {"calibration_n": 10},
])
def test_params_validation(changes: dict) -> None:
    with pytest.raises(UsageError, match="CohortParams"):
        CohortParams(**changes)


def test_params_replace() -> None:
    p = CohortParams().replace(alliance_share=0.35)
    assert p.alliance_share == 0.35 and dataclasses.replace(p, alliance_share=0.3) == CohortParams()
    with pytest.raises(UsageError, match="unknown"):
        CohortParams().replace(no_such_field=1)
    with pytest.raises(UsageError):
        CohortParams().replace(exporter_share=-0.1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.alliance_share = 0.2  # type: ignore[misc]


@pytest.mark.parametrize("kwargs", [{"n": 0}, {"n": 2.5}, {"seed": -1}, {"params": "x"}])
def test_simulate_rejects_bad_arguments(kwargs: dict) -> None:
    with pytest.raises(UsageError):
        simulate_cohort(**kwargs)


def test_custom_params_change_the_cohort() -> None:
    p = CohortParams(survival_5y=0.70, alliance_share=0.40)
    f = simulate_cohort(n=50_000, seed=5, params=p).frame
    assert f["exit_year"].isna().mean() == pytest.approx(0.70, abs=0.01)
    assert f["rd_alliance"].mean() == pytest.approx(0.40, abs=0.01)
