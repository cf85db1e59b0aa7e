"""Measures and outcome of the study, built once from validated firm data.

Export ratio, R&D intensity, innovativeness, R&D alliance, firm age and size, and the survival
outcome (binary within a window, and time to exit) under standard column names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import pandas as pd

from smesurvival.data.diagnose import in_percent
from smesurvival.data.flow import SampleFlow
from smesurvival.data.schema import ColumnMap, canonical_exit_types, line_numbers
from smesurvival.data.validate import coerce_flags, coerce_numeric, validate_firms
from smesurvival.errors import DataValidationError, SpecError

__all__ = ["MeasureFrame", "MeasureOptions", "build_measures"]

RdIntensity = Literal["rd_employee_ratio", "rd_spend_per_employee", "rd_to_sales"]
Innovativeness = Literal["zmean", "count"]
Alliance = Literal["any"]


def _check_choice(name: str, value: object, kind: object) -> None:
    valid = get_args(kind)
    if value not in valid:
        raise SpecError(f"{name} = {value!r} is not valid; choose one of: {', '.join(valid)}")


@dataclass(frozen=True)
class MeasureOptions:
    """How the measures are defined (checked at construction; bad choices raise SpecError)."""

    rd_intensity: RdIntensity = "rd_employee_ratio"
    innovativeness: Innovativeness = "zmean"
    window_years: int = 5
    alliance: Alliance = "any"

    def __post_init__(self) -> None:
        _check_choice("rd_intensity", self.rd_intensity, RdIntensity)
        _check_choice("innovativeness", self.innovativeness, Innovativeness)
        _check_choice("alliance", self.alliance, Alliance)
        w = self.window_years
        if isinstance(w, bool) or not isinstance(w, int | np.integer) or w < 1:
            raise SpecError(f"window_years = {w!r} is not valid; give a whole number of years >= 1")


@dataclass(frozen=True)
class MeasureFrame:
    """Measures (one row per kept input row, ``row`` = file line), the sample flow so far,
    and a one-line definition of each measure for reports."""

    frame: pd.DataFrame
    flow: SampleFlow
    definitions: dict[str, str]


_RD_NEEDS = {
    "rd_employee_ratio": ("rd_employees", "employees"),
    "rd_spend_per_employee": ("rd_expenditure", "employees"),
    "rd_to_sales": ("rd_expenditure", "sales"),
}
_RD_DEFINITION = {
    "rd_employee_ratio": "R&D intensity: R&D employees / employees",
    "rd_spend_per_employee": "R&D intensity: R&D expenditure per employee",
    "rd_to_sales": "R&D intensity: R&D expenditure / sales",
}


def build_measures(
    df: pd.DataFrame,
    columns: ColumnMap,
    options: MeasureOptions | None = None,
    flow: SampleFlow | None = None,
) -> MeasureFrame:
    """Compute the study's measures and outcome from firm data.

    The data must pass validation (rows failing it can be removed first with
    :func:`~smesurvival.data.validate.exclude_invalid`); otherwise DataValidationError is
    raised. Rows without a survey year, and non-exits censored before the end of the window,
    are dropped and counted in the flow; missing covariates are kept (the study drops them
    per model variable).
    """
    opts = options if options is not None else MeasureOptions()
    flow = flow if flow is not None else SampleFlow(len(df))
    if flow.n_used != len(df):
        raise ValueError(
            f"the flow says {flow.n_used} rows are in use but the frame has {len(df)} rows"
        )
    cm = columns.columns_in(df)
    validate_firms(df, columns, source="the data").raise_if_errors()
    rd_needs = _RD_NEEDS[opts.rd_intensity]
    lacking = [r for r in rd_needs if cm.get(r) is None]
    if lacking:
        raise DataValidationError(
            f"rd_intensity = {opts.rd_intensity!r} needs the role(s) {', '.join(lacking)}, which the "
            f"data do not provide; map the column(s) or choose another rd_intensity "
            f"({', '.join(k for k in _RD_NEEDS if k != opts.rd_intensity)})."
        )
    num, _ = coerce_numeric(df, cm)

    def v(role: str) -> np.ndarray:
        name = cm.get(role)
        if not isinstance(name, str):
            return np.full(len(df), np.nan)
        return num[name].to_numpy(dtype=float)

    out: dict[str, object] = {"row": line_numbers(df), "firm_id": df[cm.firm_id].to_numpy()}
    defs: dict[str, str] = {
        "row": "line of the row in the data file (line 1 is the header)",
        "firm_id": f"firm identifier (column {cm.firm_id!r})",
    }
    out["industry"] = _labels(df[cm.industry])
    defs["industry"] = f"industry (column {cm.industry!r}), categorical"
    if cm.region:
        out["region"] = _labels(df[cm.region])
        defs["region"] = f"region (column {cm.region!r}), categorical"
    if cm.weight:
        out["weight"] = v("weight")
        defs["weight"] = f"survey weight (column {cm.weight!r})"
    out["survey_year"] = v("survey_year")
    defs["survey_year"] = "year of the survey (start of the follow-up)"

    emp, sales = v("employees"), v("sales")
    with np.errstate(divide="ignore", invalid="ignore"):
        # export sales / sales unless the user mapped an export-ratio column (unmapping it,
        # export_ratio = "", leaves it None: then the ratio is computed)
        if cm.export_sales and cm.sales and (cm.export_ratio is None
                                             or "export_ratio" not in columns.explicit):
            ratio = np.where(sales > 0, v("export_sales") / sales, np.nan)
            defs["export_ratio"] = "export sales / total sales (missing when sales are 0)"
        else:
            ratio = v("export_ratio")
            defs["export_ratio"] = f"export share of sales (column {cm.export_ratio!r})"
            if in_percent(ratio):  # validation warned about it: "export_ratio given in percent"
                ratio = ratio / 100.0
                defs["export_ratio"] += ", given in percent (0-100) and divided by 100"
        out["export_ratio"] = ratio
        out["exporter"] = np.where(np.isnan(ratio), np.nan, (ratio > 0).astype(float))
        defs["exporter"] = "1 if the firm exports (export ratio > 0), else 0"

        num_role, den_role = rd_needs
        den = v(den_role)
        out["rd_intensity"] = np.where(den > 0, v(num_role) / den, np.nan)
        defs["rd_intensity"] = _RD_DEFINITION[opts.rd_intensity] + f" (missing when {den_role} is 0)"

    if cm.innovation_items:
        out["innovativeness"], defs["innovativeness"] = _innovativeness(
            num[list(cm.innovation_items)].to_numpy(dtype=float), cm.innovation_items,
            opts.innovativeness,
        )
    if cm.rd_alliance:
        out["rd_alliance"] = _alliance(df, cm.rd_alliance)
        defs["rd_alliance"] = (
            f"1 if any R&D alliance ({', '.join(cm.rd_alliance)}) is yes or above 0, 0 if all are "
            "no/0, missing otherwise"
        )

    sy = v("survey_year")
    age = sy - v("founding_year")
    out["firm_age"] = age
    out["log_firm_age"] = np.log1p(np.where(age >= 0, age, np.nan))
    with np.errstate(divide="ignore", invalid="ignore"):
        out["log_employees"] = np.log(np.where(emp > 0, emp, np.nan))
    defs["firm_age"] = "firm age in years: survey year - founding year"
    defs["log_firm_age"] = "log(1 + firm age)"
    defs["log_employees"] = "log(employees); missing when employees is 0"

    keep = np.ones(len(df), dtype=bool)
    if cm.exit_year:
        keep, flow = _outcome(df, cm, v, sy, opts.window_years, out, defs, flow)
        _require_exits(np.asarray(out["exited"])[keep], v("exit_year")[keep], sy[keep],
                       opts.window_years, cm.exit_year)
    frame = pd.DataFrame(out)
    frame = frame.loc[keep].reset_index(drop=True)
    return MeasureFrame(frame, flow, defs)


def _require_exits(exited: np.ndarray, ey: np.ndarray, sy: np.ndarray, window: int,
                   column: str) -> None:
    """Stop when no kept firm exits within the window: no survival model can be estimated."""
    if exited.size == 0 or exited.any():
        return
    later = int(np.sum(ey > sy + window))
    after = (f" {later} firm(s) exit later, after the window;" if later else "")
    raise DataValidationError(
        f"no firm exited within the {window}-year window after the survey year: all "
        f"{exited.size} firms in the sample survived, so survival does not vary and no survival "
        f"model can be estimated.{after} Check the exit-year column {column!r} (is it empty, or "
        "the wrong column?), or lengthen the window (window_years in the spec's [outcome])."
    )


def _labels(s: pd.Series) -> pd.Categorical:
    """Text categories; whole-number codes read as floats (``15.0``) become ``"15"``."""
    if pd.api.types.is_float_dtype(s.dtype):
        vals = s.to_numpy(dtype=float)
        whole = np.isfinite(vals) & (vals == np.round(vals))
        if whole[~np.isnan(vals)].all():
            text = pd.Series(vals, index=s.index).astype("Int64").astype("string")
            return pd.Categorical(text.astype("str"))
    text = s.astype("string").str.strip()
    return pd.Categorical(text.mask(text == "").astype("str"))


def _innovativeness(items: np.ndarray, names: tuple[str, ...], how: str) -> tuple[np.ndarray, str]:
    """Combine innovation items: mean z-score of log(1 + item), or count of items above 0."""
    present = ~np.isnan(items)
    any_present = present.any(axis=1)
    if how == "count":
        val = np.where(any_present, np.sum(items > 0, axis=1).astype(float), np.nan)
        return val, (
            f"number of innovation items above 0 ({', '.join(names)}), among those reported"
        )
    with np.errstate(invalid="ignore", divide="ignore"):
        logs = np.log1p(np.where(items > -1, items, np.nan))
    z = np.full_like(logs, np.nan)
    for j in range(logs.shape[1]):
        col = logs[:, j]
        ok = ~np.isnan(col)
        if ok.sum() == 0:
            continue
        sd = float(np.std(col[ok], ddof=1)) if ok.sum() > 1 else 0.0
        z[ok, j] = (col[ok] - col[ok].mean()) / sd if sd > 0 else 0.0
    cnt = (~np.isnan(z)).sum(axis=1)
    total = np.nansum(z, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        val = np.where(cnt > 0, total / np.maximum(cnt, 1), np.nan)
    return val, (
        f"mean over the reported items ({', '.join(names)}) of the z-score of log(1 + item); "
        "z-scores use the mean and sample SD of the rows given"
    )


def _alliance(df: pd.DataFrame, names: tuple[str, ...]) -> np.ndarray:
    """1 if any alliance column is yes/positive, 0 if all are no/0, NaN if undetermined."""
    vals = np.column_stack([coerce_flags(df[c])[0] for c in names])
    anypos = (vals > 0).any(axis=1)
    allzero = (vals == 0).all(axis=1)
    return np.where(anypos, 1.0, np.where(allzero, 0.0, np.nan))


def _outcome(
    df: pd.DataFrame,
    cm: ColumnMap,
    v: Callable[[str], np.ndarray],
    sy: np.ndarray,
    window: int,
    out: dict[str, object],
    defs: dict[str, str],
    flow: SampleFlow,
) -> tuple[np.ndarray, SampleFlow]:
    """Binary survival within ``window`` years, time to exit (years after the survey year)."""
    ey = v("exit_year")
    end = sy + window
    lyo = v("last_year_observed")
    lyo = np.where(np.isnan(lyo), end, lyo)
    exited = ~np.isnan(ey) & (ey <= end)
    if cm.exit_type:
        canon, _ = canonical_exit_types(df[cm.exit_type])
        etype = canon.fillna("other").to_numpy(dtype=object)
        type_def = f"canonical exit type (column {cm.exit_type!r}) for exits in the window, else none"
    else:
        etype = np.full(len(df), "other", dtype=object)
        type_def = "exit type: 'other' for every exit (no exit-type column), else none"
    month = v("exit_month")
    t_exit = np.where(np.isnan(month), ey - sy - 0.5, ey - sy - 1 + month / 12.0)
    t_exit = np.maximum(t_exit, 0.0)
    t_cens = np.minimum(lyo, end) - sy
    no_year = np.isnan(sy)
    early = ~no_year & ~exited & (lyo < end)
    out["exited"] = exited.astype(float)
    out["survived"] = 1.0 - exited
    out["event"] = exited.astype(float)
    out["exit_type"] = np.where(exited, etype, "none").astype(str)
    out["time_to_exit"] = np.where(exited, t_exit, t_cens)
    defs["exited"] = f"1 if the firm exited within {window} years after the survey year, else 0"
    defs["survived"] = f"1 if the firm survived {window} years after the survey year (1 - exited)"
    defs["event"] = f"exit within the {window}-year window (1) or censored (0)"
    defs["exit_type"] = type_def
    defs["time_to_exit"] = (
        "years from the end of the survey year to exit (exit year - survey year - 1 + month/12, "
        "mid-year when the month is unknown, at least 0), or to censoring at "
        f"min(last year observed, survey year + {window}) for non-exits"
    )
    flow = flow.drop("missing survey year (needed for the outcome)", int(no_year.sum()), "missing",
                     cm.survey_year)
    flow = flow.drop(f"censored before the end of the {window}-year window", int(early.sum()),
                     "window", cm.last_year_observed)
    return ~(no_year | early), flow
