"""Measures and outcome: hand-computed values on five firms, every variant, window and flow."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pandas as pd
import pytest

from smesurvival.data import ColumnMap, MeasureOptions, SampleFlow, build_measures
from smesurvival.errors import DataValidationError, SpecError

NAN = float("nan")


def five() -> pd.DataFrame:
    """Five firms (file lines 2-6). f3 is censored before its window ends (observed to 2008)."""
    return pd.DataFrame(
        {
            "firm_id": ["f1", "f2", "f3", "f4", "f5"],
            "survey_year": [2005, 2005, 2005, 2005, 2006],
            "founding_year": [2000, 1995, 2005, 1980, 2003],
            "industry": ["food", "food", "metal", "metal", "chem"],
            "employees": [10, 20, 50, 100, 8],
            "sales": [100.0, 200.0, 0.0, 400.0, 50.0],
            "export_sales": [0.0, 50.0, 0.0, 400.0, 10.0],
            "rd_employees": [1, 0, 5, 10, 2],
            "rd_expenditure": [5.0, 0.0, 10.0, 40.0, 4.0],
            "patents": [0, 1, 3, NAN, 0],
            "new_products": [1, 0, 2, 4, 0],
            "certified_tech": [0, 0, 1, 1, NAN],
            "rd_alliance": ["yes", "no", "N", "Y", None],
            "exit_year": [NAN, 2007, NAN, 2012, 2009],
            "exit_month": [NAN, 6, NAN, NAN, NAN],
            "exit_type": [None, "Closed", None, "merger", "other"],
            "last_year_observed": [2010, 2010, 2008, 2012, 2011],
        }
    )


def build(df: pd.DataFrame | None = None, **opts: object):  # noqa: ANN201 - test helper
    return build_measures(five() if df is None else df, ColumnMap.default(), MeasureOptions(**opts))


def col(mf, name: str) -> list[float]:  # noqa: ANN001 - test helper
    return mf.frame[name].to_numpy(dtype=float).tolist()


def close(got: list[float], want: list[float]) -> None:
    np.testing.assert_allclose(np.array(got, float), np.array(want, float), rtol=1e-12, equal_nan=True)


def test_rows_kept_and_flow() -> None:
    mf = build()
    assert mf.frame["firm_id"].tolist() == ["f1", "f2", "f4", "f5"]
    assert mf.frame["row"].tolist() == [2, 3, 5, 6]
    assert isinstance(mf.frame.index, pd.RangeIndex)
    assert mf.flow.n_read == 5 and mf.flow.n_used == 4 == len(mf.frame)
    (step,) = mf.flow.steps
    assert step.reason == "censored before the end of the 5-year window"
    assert (step.stage, step.n_dropped) == ("window", 1)


def test_export_measures() -> None:
    mf = build()
    close(col(mf, "export_ratio"), [0.0, 0.25, 1.0, 0.2])
    close(col(mf, "exporter"), [0.0, 1.0, 1.0, 1.0])


def test_export_ratio_zero_sales_is_missing() -> None:
    df = five()
    df.loc[2, "last_year_observed"] = 2010  # keep f3
    mf = build(df)
    assert math.isnan(col(mf, "export_ratio")[2]) and math.isnan(col(mf, "exporter")[2])


def test_export_ratio_given_directly() -> None:
    df = five().drop(columns=["export_sales", "sales"])
    df["export_ratio"] = [0.0, 0.3, 0.1, 0.9, 0.5]
    close(col(build(df), "export_ratio"), [0.0, 0.3, 0.9, 0.5])


@pytest.mark.parametrize(
    ("variant", "want"),
    [
        ("rd_employee_ratio", [1 / 10, 0 / 20, 10 / 100, 2 / 8]),
        ("rd_spend_per_employee", [5 / 10, 0 / 20, 40 / 100, 4 / 8]),
        ("rd_to_sales", [5 / 100, 0 / 200, 40 / 400, 4 / 50]),
    ],
)
def test_rd_intensity_variants(variant: str, want: list[float]) -> None:
    mf = build(rd_intensity=variant)
    close(col(mf, "rd_intensity"), want)
    assert "R&D" in mf.definitions["rd_intensity"]


def test_innovativeness_count() -> None:
    # f1: new_products; f2: patents; f4: patents missing, new_products and certified_tech;
    # f5: certified_tech missing, the other two are 0
    close(col(build(innovativeness="count"), "innovativeness"), [1, 1, 2, 0])


def test_innovativeness_zmean_by_hand() -> None:
    items = {
        "patents": [0, 1, 3, None, 0],
        "new_products": [1, 0, 2, 4, 0],
        "certified_tech": [0, 0, 1, 1, None],
    }
    z: dict[str, list[float | None]] = {}
    for name, vals in items.items():  # z-scores over all five rows given (sample SD)
        logs = [math.log(1 + v) for v in vals if v is not None]
        m, sd = statistics.mean(logs), statistics.stdev(logs)
        z[name] = [None if v is None else (math.log(1 + v) - m) / sd for v in vals]
    want = []
    for i in (0, 1, 3, 4):  # f3 (index 2) is dropped by the window rule
        avail = [z[n][i] for n in items if z[n][i] is not None]
        want.append(sum(avail) / len(avail))
    mf = build()
    close(col(mf, "innovativeness"), want)
    assert "z-score" in mf.definitions["innovativeness"]


def test_rd_alliance_yes_no_and_counts() -> None:
    close(col(build(), "rd_alliance"), [1, 0, 1, NAN])
    df = five().drop(columns=["rd_alliance"])
    df["univ"] = [0, 2, 0, 0, NAN]
    df["firms"] = [0, 0, 0, 1, 0]
    cmap = ColumnMap.from_dict({"rd_alliance": ["univ", "firms"]})
    mf = build_measures(df, cmap, MeasureOptions())
    close(col(mf, "rd_alliance"), [0, 1, 1, NAN])


def test_age_and_size() -> None:
    df = five()
    df.loc[2, "last_year_observed"] = 2010  # keep f3, founded in its survey year (age 0)
    mf = build(df)
    close(col(mf, "firm_age"), [5, 10, 0, 25, 3])
    close(col(mf, "log_firm_age"), [math.log(6), math.log(11), 0.0, math.log(26), math.log(4)])
    close(col(mf, "log_employees"), [math.log(10), math.log(20), math.log(50), math.log(100), math.log(8)])


def test_outcome_and_time_to_exit() -> None:
    mf = build()
    close(col(mf, "exited"), [0, 1, 0, 1])  # f4 exits in 2012, after its window (2010)
    close(col(mf, "survived"), [1, 0, 1, 0])
    close(col(mf, "event"), [0, 1, 0, 1])
    assert mf.frame["exit_type"].tolist() == ["none", "failure", "none", "other"]
    # f1 censored at 2010 - 2005; f2 month 6: 2007 - 2005 - 1 + 6/12; f4 censored at the
    # window's end; f5 no month: 2009 - 2006 - 0.5
    close(col(mf, "time_to_exit"), [5.0, 1.5, 5.0, 2.5])


def test_shorter_window() -> None:
    mf = build(window_years=2)
    # ends: 2007 (f1-f4), 2008 (f5); nobody is censored early now
    assert mf.frame["firm_id"].tolist() == ["f1", "f2", "f3", "f4", "f5"]
    close(col(mf, "exited"), [0, 1, 0, 0, 0])
    close(col(mf, "time_to_exit"), [2, 1.5, 2, 2, 2])
    assert mf.flow.steps == ()
    assert "2 years" in mf.definitions["exited"]


def test_last_year_observed_defaults_to_window_end() -> None:
    mf = build(five().drop(columns=["last_year_observed"]))
    assert len(mf.frame) == 5
    close(col(mf, "time_to_exit"), [5, 1.5, 5, 5, 2.5])


def test_missing_survey_year_is_dropped_and_counted() -> None:
    df = five()
    df["survey_year"] = [2005, 2005, 2005, 2005, NAN]
    mf = build(df)
    assert mf.frame["firm_id"].tolist() == ["f1", "f2", "f4"]
    assert mf.flow.dropped_by_reason() == {
        "missing survey year (needed for the outcome)": 1,
        "censored before the end of the 5-year window": 1,
    }
    assert [s.stage for s in mf.flow.steps] == ["missing", "window"]


def test_missing_covariates_are_kept() -> None:
    df = five()
    df["employees"] = [10, NAN, 50, 100, 8]
    mf = build(df)
    assert len(mf.frame) == 4
    assert math.isnan(col(mf, "log_employees")[1]) and math.isnan(col(mf, "rd_intensity")[1])


def test_no_exit_type_column_means_other() -> None:
    mf = build(five().drop(columns=["exit_type"]))
    assert mf.frame["exit_type"].tolist() == ["none", "other", "none", "other"]


def test_industry_codes_become_text_categories() -> None:
    df = five()
    df["industry"] = [15.0, 15.0, 24.0, 29.0, NAN]
    mf = build(df)
    assert isinstance(mf.frame["industry"].dtype, pd.CategoricalDtype)
    assert mf.frame["industry"].astype(object).tolist()[:3] == ["15", "15", "29"]
    assert pd.isna(mf.frame["industry"].iloc[3])


def test_existing_flow_is_extended() -> None:
    df = five()
    flow = SampleFlow(7).drop("failed validation: weight must be positive", 2, "validation")
    mf = build_measures(df, ColumnMap.default(), MeasureOptions(), flow)
    assert mf.flow.n_read == 7 and mf.flow.n_used == 4
    with pytest.raises(ValueError, match="6 rows are in use"):
        build_measures(df, ColumnMap.default(), MeasureOptions(), SampleFlow(6))


def test_invalid_data_raise() -> None:
    df = five()
    df["employees"] = [10, -20, 50, 100, 8]
    with pytest.raises(DataValidationError, match="column 'employees', file line 3"):
        build(df)


def test_missing_role_for_variant() -> None:
    df = five().drop(columns=["rd_expenditure"])
    with pytest.raises(DataValidationError, match="rd_expenditure"):
        build(df, rd_intensity="rd_spend_per_employee")


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"rd_intensity": "rd_per_head"}, "rd_intensity = 'rd_per_head'.*rd_employee_ratio, rd_spend"),
        ({"innovativeness": "pca"}, "choose one of: zmean, count"),
        ({"alliance": "all"}, "alliance"),
        ({"window_years": 0}, "window_years"),
        ({"window_years": 2.5}, "window_years"),
    ],
)
def test_options_are_checked(kwargs: dict, pattern: str) -> None:
    with pytest.raises(SpecError, match=pattern):
        MeasureOptions(**kwargs)


def test_definitions_cover_every_column() -> None:
    mf = build()
    assert set(mf.frame.columns) <= set(mf.definitions)
    assert all(isinstance(v, str) and v for v in mf.definitions.values())


def test_export_ratio_in_percent_is_divided_by_100() -> None:
    df = five().drop(columns=["export_sales", "sales"])
    df["export_ratio"] = [0.0, 30.0, 10.0, 90.0, 50.0]
    mf = build(df)
    close(col(mf, "export_ratio"), [0.0, 0.3, 0.9, 0.5])
    assert "divided by 100" in mf.definitions["export_ratio"]


def test_no_exit_in_the_window_stops_with_a_clear_message() -> None:
    df = five()
    df[["exit_year", "exit_month", "exit_type"]] = None
    with pytest.raises(DataValidationError, match="no firm exited within the 5-year window"):
        build(df)
    df = five()
    df["exit_year"] = [NAN, 2014, NAN, 2012, 2015]  # every exit after its window
    df["last_year_observed"] = 2016
    with pytest.raises(DataValidationError, match=r"3 firm\(s\) exit later, after the window"):
        build(df)


def test_unmapped_export_ratio_is_computed_from_sales() -> None:
    """[columns] export_ratio = "" (unmapped) means: compute export sales / sales."""
    from smesurvival.data import ColumnMap, MeasureOptions, build_measures
    from smesurvival.data.synthetic import simulate_cohort

    firms = simulate_cohort(200, 3).frame
    cm = ColumnMap.from_dict({"export_ratio": ""})
    got = build_measures(firms, cm, MeasureOptions()).frame["export_ratio"].to_numpy()
    want = build_measures(firms, ColumnMap.default(), MeasureOptions()).frame["export_ratio"].to_numpy()
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, want)
