"""Validation: one test per rule, naming the column and the file lines; the column map."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from smesurvival.data import ColumnMap, SampleFlow, coerce_numeric, exclude_invalid, validate_firms
from smesurvival.data.schema import canonical_exit_types
from smesurvival.errors import DataValidationError, SpecError


def good() -> pd.DataFrame:
    """Four valid firms (file lines 2-5); the tests break one rule at a time."""
    return pd.DataFrame(
        {
            "firm_id": ["a", "b", "c", "d"],
            "survey_year": [2005, 2005, 2005, 2005],
            "founding_year": [1990, 2000, 1985, 2003],
            "industry": ["food", "food", "machinery", "chemicals"],
            "employees": [50, 120, 30, 10],
            "sales": [100.0, 500.0, 80.0, 20.0],
            "export_sales": [10.0, 0.0, 40.0, 5.0],
            "rd_employees": [5, 10, 0, 1],
            "rd_expenditure": [1.0, 2.0, 0.0, 0.5],
            "patents": [1, 0, 3, 0],
            "rd_alliance": ["yes", "no", "no", "yes"],
            "weight": [1.0, 2.0, 1.5, 1.0],
            "exit_year": [np.nan, 2008, np.nan, 2007],
            "exit_month": [np.nan, 3, np.nan, np.nan],
            "exit_type": [None, "Closed", None, "merger"],
            "last_year_observed": [2010, 2010, 2010, 2010],
        }
    )


def only(report, rule: str):  # noqa: ANN001, ANN201 - test helper
    found = [i for i in report.issues if i.rule == rule]
    assert len(found) == 1, report.summary()
    return found[0]


def test_good_data_has_no_errors() -> None:
    report = validate_firms(good(), source="firms.csv", require_roles=True)
    assert report.ok, report.summary()
    assert report.errors == ()
    report.raise_if_errors()


def test_acceptance_case_non_numeric_employees() -> None:
    df = pd.DataFrame({"firm_id": ["1"], "employees": ["abc"]})
    report = validate_firms(df, ColumnMap.default(), source="bad.csv")
    assert not report.ok
    issue = only(report, "employees must be a number")
    assert issue.column == "employees" and issue.rows == (2,) and issue.severity == "error"
    text = report.summary()
    assert "bad.csv: column 'employees', file line 2 (1 row)" in text
    assert "'abc'" in text
    with pytest.raises(DataValidationError, match="'abc'") as info:
        report.raise_if_errors()
    assert info.value.report is report


def test_required_roles_reported_only_on_request() -> None:
    df = pd.DataFrame({"firm_id": ["1"], "employees": [3]})
    assert not any(i.rule == "required column missing" for i in validate_firms(df).issues)
    report = validate_firms(df, require_roles=True, source="x.csv")
    missing = {i.column for i in report.errors if i.rule == "required column missing"}
    assert {"survey_year", "founding_year", "industry"} <= missing
    assert "firm_id, employees" in report.summary()


@pytest.mark.parametrize(
    ("column", "values", "rule", "lines"),
    [
        ("employees", [50, -1, 30, -2], "employees must be a non-negative number", (3, 5)),
        ("sales", [-5.0, 500.0, 80.0, 20.0], "sales must be a non-negative number", (2,)),
        ("export_sales", [10.0, -1.0, 40.0, 5.0], "export_sales must be a non-negative number", (3,)),
        ("rd_employees", [5, 10, -3, 1], "rd_employees must be a non-negative number", (4,)),
        ("rd_expenditure", [1.0, -2.0, 0.0, 0.5], "rd_expenditure must be a non-negative number", (3,)),
        ("export_sales", [10.0, 0.0, 90.0, 5.0], "export_sales must not exceed sales", (4,)),
        ("rd_employees", [5, 10, 31, 1], "rd_employees must not exceed employees", (4,)),
        ("founding_year", [1990, 2006, 1985, 2003], "founding_year must not be after survey_year", (3,)),
        ("weight", [1.0, 0.0, -1.0, 1.0], "weight must be positive", (3, 4)),
        ("exit_month", [np.nan, 13, np.nan, 0], "exit_month must be a whole number from 1 to 12", (3, 5)),
        ("last_year_observed", [2010, 2004, 2010, 2010],
         "last_year_observed must not be before survey_year", (3,)),
        ("survey_year", [2005.5, 2005, 2005, 2005], "survey_year must be a whole number (a year)", (2,)),
        ("patents", [1, 0, -3, 0], "innovation_items must be non-negative counts", (4,)),
    ],
)
def test_error_rules(column: str, values: list, rule: str, lines: tuple[int, ...]) -> None:
    df = good()
    df[column] = values
    report = validate_firms(df, source="f.csv")
    issue = only(report, rule)
    assert issue.column == column
    assert issue.rows == lines
    assert issue.severity == "error"
    head = "file line" if len(lines) == 1 else "file lines"
    assert f"f.csv: column '{column}', {head} {', '.join(map(str, lines))} ({len(lines)} row" in (
        issue.describe("f.csv")
    )
    assert not report.ok
    assert sorted(report.error_rows + 2) == sorted(lines)


def test_export_ratio_outside_unit_interval() -> None:
    df = good().drop(columns=["export_sales"])
    df["export_ratio"] = [0.5, 1.5, -0.1, 0.0]
    issue = only(validate_firms(df), "export_ratio must be between 0 and 1")
    assert (issue.column, issue.rows) == ("export_ratio", (3, 4))


def test_non_numeric_values_are_named() -> None:
    df = good()
    df["sales"] = ["100", "1,234", "x", ""]
    issue = only(validate_firms(df), "sales must be a number")
    assert issue.rows == (3, 4)
    assert "'1,234'" in issue.message and "'x'" in issue.message


def test_exit_year_before_founding_and_survey() -> None:
    df = good()
    df["exit_year"] = [np.nan, 1995, np.nan, 2004]
    df["exit_month"] = np.nan
    report = validate_firms(df)
    assert only(report, "exit_year must not be before founding_year").rows == (3,)
    assert only(report, "exit_year must not be before survey_year").rows == (3, 5)


def test_exit_year_after_last_observed() -> None:
    df = good()
    df["exit_year"] = [np.nan, 2012, np.nan, 2007]
    issue = only(validate_firms(df), "exit_year must not be after last_year_observed")
    assert (issue.column, issue.rows) == ("exit_year", (3,))


def test_unknown_exit_type_lists_accepted() -> None:
    df = good()
    df["exit_type"] = [None, "Closed", None, "vanished"]
    issue = only(validate_firms(df), "exit_type must be one of failure, acquisition, other")
    assert issue.rows == (5,)
    assert "'vanished'" in issue.message and "merger" in issue.message


def test_exit_type_and_year_need_each_other() -> None:
    df = good()
    df["exit_type"] = ["failure", "Closed", None, None]
    report = validate_firms(df)
    assert only(report, "exit_type requires exit_year").rows == (2,)
    assert only(report, "exit_year requires exit_type").rows == (5,)


def test_exit_month_requires_exit_year() -> None:
    df = good()
    df["exit_month"] = [4, 3, np.nan, np.nan]
    assert only(validate_firms(df), "exit_month requires exit_year").rows == (2,)


def test_duplicate_and_missing_firm_id() -> None:
    df = good()
    df["firm_id"] = ["a", "b", "a", " "]
    report = validate_firms(df)
    dup = only(report, "firm_id must be unique")
    assert dup.rows == (2, 4) and "'a'" in dup.message
    assert only(report, "firm_id must not be missing").rows == (5,)


def test_rd_alliance_values() -> None:
    df = good()
    df["rd_alliance"] = ["yes", "maybe", "N", "-1"]
    report = validate_firms(df)
    issues = [i for i in report.errors if i.column == "rd_alliance"]
    assert [i.rows for i in issues] == [(3,), (5,)]
    assert "'maybe'" in issues[0].message


def test_warnings_do_not_fail() -> None:
    df = good()
    df["employees"] = [50, 400, 3, 10]
    df["rd_employees"] = [5, 10, 0, 1]
    df["founding_year"] = [1890, 2000, 1985, 2003]
    df["rd_expenditure"] = [1.0, 2.0, 0.0, 5000.0]
    df["export_sales"] = [10.0, 0.0, 80.0, 5.0]
    df["exit_year"] = [np.nan, 2005, np.nan, 2007]
    report = validate_firms(df)
    assert report.ok, report.summary()
    assert only(report, "employees should be within the SME band 5-299").rows == (3, 4)
    assert only(report, "firm age should not exceed 100 years").rows == (2,)
    assert only(report, "R&D expenditure per employee far above the rest").rows == (5,)
    assert only(report, "export_ratio of exactly 1 is unusual").rows == (4,)
    assert only(report, "exit in the survey year itself").rows == (3,)
    assert all(i.severity == "warning" for i in report.issues)


def test_summary_shows_ten_lines_and_a_count() -> None:
    df = pd.DataFrame({"firm_id": range(25), "employees": [-1] * 25})
    issue = only(validate_firms(df, source="f.csv"), "employees must be a non-negative number")
    assert issue.rows == tuple(range(2, 12)) and issue.n_rows == 25
    assert "file lines 2, 3, 4, 5, 6, 7, 8, 9, 10, 11 and 15 more (25 rows)" in issue.describe("f.csv")


def test_report_to_dict() -> None:
    df = good()
    df["weight"] = [1.0, 0.0, 1.0, 1.0]
    d = validate_firms(df, source="f.csv").to_dict()
    assert d["ok"] is False and d["n_errors"] == 1 and d["n_error_rows"] == 1
    assert d["issues"][0] == {
        "rule": "weight must be positive", "column": "weight", "severity": "error",
        "rows": [3], "n_rows": 1, "message": d["issues"][0]["message"],
    }


def test_custom_column_map() -> None:
    df = good().rename(columns={"employees": "emp"})
    cmap = ColumnMap.from_dict({"employees": "emp"})
    df["emp"] = [50, -1, 30, 10]
    issue = only(validate_firms(df, cmap), "employees must be a non-negative number")
    assert issue.column == "emp"
    assert cmap.columns_in(df).employees == "emp"


def test_column_map_errors() -> None:
    with pytest.raises(SpecError, match="unknown column role.*'staff'.*valid roles are: firm_id"):
        ColumnMap.from_dict({"staff": "x"})
    with pytest.raises(SpecError, match="list of column names"):
        ColumnMap.from_dict({"innovation_items": 3})
    assert ColumnMap.from_dict({"rd_alliance": "alliance"}).rd_alliance == ("alliance",)
    df = good().rename(columns={"employees": "employes"})
    with pytest.raises(DataValidationError, match="'employees'.*did you mean 'employes'"):
        ColumnMap.default().columns_in(df)
    with pytest.raises(DataValidationError, match="role 'region' mapped to column"):
        ColumnMap.from_dict({"region": "province"}).columns_in(good())


def test_default_map_unmaps_absent_optional_roles() -> None:
    cm = ColumnMap.default().columns_in(good())
    assert cm.region is None and cm.export_ratio is None
    assert cm.innovation_items == ("patents",)
    assert cm.employees == "employees"


def test_canonical_exit_types() -> None:
    canon, unknown = canonical_exit_types(pd.Series([" M&A", "Bankruptcy", None, "", "x", "OTHER"]))
    assert canon.tolist()[:2] == ["acquisition", "failure"]
    assert canon.tolist()[5] == "other"
    assert unknown.tolist() == [False, False, False, False, True, False]


def test_coerce_numeric_and_exclude_invalid() -> None:
    df = good()
    df["employees"] = ["50", "abc", " 30 ", None]
    num, issues = coerce_numeric(df, ["employees", "sales"])
    assert np.isnan(num["employees"].to_numpy()[[1, 3]]).all()
    assert num["employees"].to_numpy()[[0, 2]].tolist() == [50.0, 30.0]
    assert [i.rows for i in issues] == [(3,)]
    df["weight"] = [1.0, 0.0, 0.0, 1.0]
    report = validate_firms(df)
    kept, flow = exclude_invalid(df, report, SampleFlow(4))
    assert kept["firm_id"].tolist() == ["a", "d"]
    assert flow.n_used == 2
    assert sum(flow.dropped_by_reason().values()) == 2  # line 3 counted once
    # line numbers survive the subset
    assert validate_firms(kept.assign(weight=[1.0, -1.0])).errors[0].rows == (5,)


def test_large_frame_is_vectorised() -> None:
    n = 200_000
    rng = np.random.default_rng(1)
    df = pd.DataFrame(
        {
            "firm_id": np.arange(n),
            "survey_year": 2005,
            "founding_year": rng.integers(1950, 2005, n),
            "industry": rng.choice(["a", "b"], n),
            "employees": rng.integers(5, 300, n).astype(str),
            "sales": rng.gamma(2.0, 100.0, n),
            "export_sales": 0.0,
            "rd_employees": 0,
            "exit_year": np.where(rng.random(n) < 0.1, 2007.0, np.nan),
        }
    )
    df.loc[n - 1, "employees"] = "many"
    df["exit_type"] = np.where(df["exit_year"].notna(), "failure", None)
    report = validate_firms(df)
    issue = only(report, "employees must be a number")
    assert issue.rows == (n + 1,)
    assert report.error_rows.tolist() == [n - 1]


@pytest.mark.parametrize(("values", "fragment"), [
    (["1.234,5", "958,4"], "decimal comma"),
    (["1,234.5", "12,345,678"], "thousands separators"),
    (["25%", "3.5 %"], "% sign"),
    (["12 persons", "KRW 400"], "units, currency or words"),
    ([".", "n/a"], "missing-value codes"),
    (["1994-03-15", "15/03/1994"], "dates; this column takes a number"),
    (["abc", "?!x"], "Use plain numbers such as 1234.5"),
])
def test_non_numeric_values_are_diagnosed(values: list[str], fragment: str) -> None:
    df = good()
    df["sales"] = [values[0], values[1], "100", ""]
    issue = only(validate_firms(df), "sales must be a number")
    assert issue.rows == (2, 3) and fragment in issue.message


def test_dates_in_a_year_column() -> None:
    df = good()
    df["founding_year"] = pd.to_datetime(["1990-01-01", "2000-05-01", "1985-03-03", "2003-01-01"])
    issue = only(validate_firms(df), "founding_year must be a number")
    assert issue.n_rows == 4 and "give the year alone" in issue.message


def test_two_digit_and_future_years() -> None:
    import datetime

    df = good()
    df["founding_year"] = [1990, 94, 1985, 2003]
    df["exit_year"] = [np.nan, 2008, np.nan, datetime.date.today().year + 3]
    df["last_year_observed"] = [2010, 2010, 2010, datetime.date.today().year + 5]
    report = validate_firms(df)
    assert only(report, "founding_year must be a four-digit year").rows == (3,)
    assert only(report, "exit_year must not be in the future").rows == (5,)
    assert only(report, "last_year_observed must not be in the future").rows == (5,)
    assert not [i for i in report.issues if i.rule.startswith("firm age")]


def test_export_ratio_in_percent_is_a_warning() -> None:
    df = good().drop(columns=["export_sales"])
    df["export_ratio"] = [12.5, 0.0, 40.0, 100.0]
    report = validate_firms(df)
    assert report.ok, report.summary()
    issue = only(report, "export_ratio given in percent")
    assert issue.severity == "warning" and "divided by 100" in issue.message
    assert only(report, "export_ratio of exactly 1 is unusual").rows == (5,)
    df["export_ratio"] = [0.5, 0.2, 35.0, 0.0]  # one typo among shares: not a percent column
    assert only(validate_firms(df), "export_ratio must be between 0 and 1").rows == (4,)


def test_sample_warnings() -> None:
    report = validate_firms(good())
    issue = only(report, "industry category with a single firm")
    assert issue.rows == (4, 5) and "'machinery'" in issue.message and issue.severity == "warning"
    df = good()
    df[["exit_year", "exit_month", "exit_type"]] = None
    assert only(validate_firms(df), "no firm has an exit year").severity == "warning"
    df["exit_year"] = [2006, 2007, 2008, 2009]
    df["exit_type"] = "failure"
    assert only(validate_firms(df), "every firm has an exit year").severity == "warning"
