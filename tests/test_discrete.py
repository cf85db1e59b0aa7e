"""Discrete-time hazard: person-period expansion and fits vs R (tests/reference/discrete_time_rossi)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from conftest import load_ref
from smesurvival.data import ColumnMap, build_measures
from smesurvival.data.panel import expand_person_period, firm_years, iter_person_period
from smesurvival.data.synthetic import firm_years as raw_firm_years
from smesurvival.data.synthetic import simulate_cohort
from smesurvival.errors import DataValidationError, FormulaError, UsageError
from smesurvival.models.discrete import fit_discrete, hazard_table
from smesurvival.models.result import FitResult

REF = load_ref("discrete_time_rossi")
COVS = ["finyes", "age", "raceother", "wexpyes", "marnotmarried", "paroyes", "prio"]
RHS = " + ".join(COVS)
CUTS4 = list(range(4, 49, 4))  # survSplit(cut = seq(4, 48, by = 4))


@pytest.fixture(scope="module")
def subjects(rossi: pd.DataFrame) -> pd.DataFrame:
    return rossi.assign(pid=np.arange(1, len(rossi) + 1))


def _our_name(r_term: str) -> str:
    """R's term name -> ours."""
    if r_term.startswith("period_f"):
        return f"C(period)[{r_term.removeprefix('period_f')}]"
    return {"(Intercept)": "Intercept", "t": "period", "I(t^2)": "I(period ** 2)",
            "marnot married": "marnotmarried"}.get(r_term, r_term)


def _ref_vectors(model: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    m = REF["models"][model]
    names = [_our_name(c) for c in m["columns"]]
    est = np.array([m["coefficients"]["estimate"][c] for c in m["columns"]])
    se = np.array([m["coefficients"]["se"][c] for c in m["columns"]])
    return names, est, se


def _slow_expand(frame: pd.DataFrame, cuts: list[float], covs: list[str]) -> pd.DataFrame:
    """Reference expansion: a plain loop over subjects and periods, as survSplit documents it."""
    rows = []
    edges = [0.0, *cuts, np.inf]
    for i, rec in enumerate(frame.itertuples(index=False)):
        d = float(rec.time)
        for k in range(1, len(edges)):
            lo, hi = edges[k - 1], edges[k]
            if lo >= d:
                break
            last = d <= hi
            rows.append({"id": i + 1, "period": k, "tstart": lo, "tstop": min(hi, d),
                         "ev": int(last and rec.ev == 1),
                         **{c: getattr(rec, c) for c in covs}})
    return pd.DataFrame(rows)


def _random_subjects(seed: int, n: int = 300) -> tuple[pd.DataFrame, list[float]]:
    rng = np.random.default_rng(seed)
    cuts = sorted(rng.choice(np.arange(1, 30), size=6, replace=False).astype(float).tolist())
    time = rng.choice(np.arange(1, 40), size=n).astype(float)
    time[: n // 3] = rng.uniform(0.01, 45, size=n // 3)  # off the grid too
    time[n // 3: n // 3 + 20] = rng.choice(cuts, size=20)  # exactly on cut points
    return pd.DataFrame({"time": time, "ev": rng.integers(0, 2, size=n),
                         "x": rng.normal(size=n), "g": rng.choice(["a", "b"], size=n)}), cuts


# ---------------------------------------------------------------------------- expansion

def test_four_week_expansion_matches_survsplit(subjects: pd.DataFrame) -> None:
    ref = REF["expansion"]["four_week"]
    pp = expand_person_period(subjects, duration="week", event="arrest", id="pid", cuts=CUTS4)
    assert len(pp) == ref["n_rows"] == 4991
    by = pp.groupby("period")["arrest"].agg(["size", "sum"])
    assert by.index.tolist() == list(range(1, 14))
    assert by["size"].tolist() == ref["rows_per_period"]
    assert by["sum"].tolist() == ref["events_per_period"]
    assert list(pp.columns[:5]) == ["pid", "period", "tstart", "tstop", "arrest"]
    assert (pp["period"] == np.ceil(pp["tstop"] / 4)).all()  # R's stopifnot
    # width=4 is the same regular grid
    pd.testing.assert_frame_equal(
        pp, expand_person_period(subjects, duration="week", event="arrest", id="pid", width=4))


def test_person_week_expansion_row_count(subjects: pd.DataFrame) -> None:
    pw = expand_person_period(subjects, duration="week", event="arrest", id="pid", width=1)
    assert len(pw) == REF["expansion"]["person_week"]["n_rows"] == 19809
    assert (pw["tstop"] - pw["tstart"] == 1).all() and (pw["period"] == pw["tstop"]).all()
    assert pw["arrest"].sum() == subjects["arrest"].sum()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_expansion_equals_slow_loop(seed: int) -> None:
    d, cuts = _random_subjects(seed)
    fast = expand_person_period(d, duration="time", event="ev", cuts=cuts, keep=["x", "g"])
    slow = _slow_expand(d, cuts, ["x", "g"])
    pd.testing.assert_frame_equal(fast, slow, check_dtype=False)


def test_regular_width_equals_slow_loop() -> None:
    d, _ = _random_subjects(4)
    fast = expand_person_period(d, duration="time", event="ev", width=2.5, keep=["x"])
    slow = _slow_expand(d, [2.5 * k for k in range(1, 19)], ["x"])
    pd.testing.assert_frame_equal(fast, slow, check_dtype=False)


def test_streaming_chunks_concatenate_to_the_same_frame() -> None:
    d, cuts = _random_subjects(5, n=1000)
    whole = expand_person_period(d, duration="time", event="ev", cuts=cuts)
    chunks = [d.iloc[i:i + 137] for i in range(0, len(d), 137)]
    parts = list(iter_person_period(chunks, duration="time", event="ev", cuts=cuts))
    assert len(parts) == len(chunks)
    pd.testing.assert_frame_equal(pd.concat(parts, ignore_index=True), whole)


def test_streaming_arrow_batches() -> None:
    pa = pytest.importorskip("pyarrow")
    d, cuts = _random_subjects(6, n=500)
    whole = expand_person_period(d, duration="time", event="ev", cuts=cuts)
    batches = pa.Table.from_pandas(d, preserve_index=False).to_batches(max_chunksize=64)
    got = pd.concat(iter_person_period(batches, duration="time", event="ev", cuts=cuts),
                    ignore_index=True)
    pd.testing.assert_frame_equal(got, whole, check_dtype=False)


def test_expansion_errors(subjects: pd.DataFrame) -> None:
    kw = {"duration": "week", "event": "arrest", "id": "pid", "width": 4}
    with pytest.raises(DataValidationError, match="positive"):
        expand_person_period(subjects.assign(week=subjects.week.where(subjects.pid != 3, 0)), **kw)
    with pytest.raises(DataValidationError, match="row 5"):
        expand_person_period(subjects.assign(week=subjects.week.where(subjects.index != 5, -2)),
                             **kw)
    with pytest.raises(DataValidationError, match="coded 0"):
        expand_person_period(subjects.assign(arrest=subjects.arrest.replace(1, 2)), **kw)
    with pytest.raises(DataValidationError, match="id column 'pid' is missing"):
        expand_person_period(subjects.assign(pid=subjects.pid.where(subjects.pid != 7)), **kw)
    with pytest.raises(UsageError, match="strictly increasing"):
        expand_person_period(subjects, duration="week", event="arrest", cuts=[4, 12, 8])
    with pytest.raises(UsageError, match="exactly one"):
        expand_person_period(subjects, duration="week", event="arrest", cuts=[4], width=4)
    with pytest.raises(UsageError, match="overwritten"):
        expand_person_period(subjects.assign(period=1), duration="week", event="arrest", width=4)
    zero = pd.DataFrame({"t": [0.0, 1.5], "e": [1, 0]})
    out = expand_person_period(zero, duration="t", event="e", width=1, zero="first")
    assert out["period"].tolist() == [1, 1, 2] and out["e"].tolist() == [1, 0, 0]


# ---------------------------------------------------------------------------- fits vs R

@pytest.mark.parametrize(("model", "link", "time", "grid"), [
    ("period4_cloglog", "cloglog", "dummies", {"cuts": CUTS4}),
    ("period4_logit", "logit", "dummies", {"cuts": CUTS4}),
    ("week_quadratic_cloglog", "cloglog", "quadratic", {"width": 1}),
    ("week_quadratic_logit", "logit", "quadratic", {"width": 1}),
])
def test_fit_matches_r_glm(subjects: pd.DataFrame, model: str, link: str, time: str,
                           grid: dict) -> None:
    names, est, se = _ref_vectors(model)
    r = fit_discrete(RHS, subjects, duration="week", event="arrest", id="pid", link=link,
                     time=time, vcov="classical", **grid)
    assert r.model == "discrete" and r.link == link
    assert list(r.terms) == names
    np.testing.assert_allclose(r.params, est, rtol=0, atol=1e-6)
    np.testing.assert_allclose(r.se, se, rtol=0, atol=1e-5)
    assert r.loglik == pytest.approx(REF["models"][model]["loglik"], abs=1e-8)
    assert r.nobs == REF["models"][model]["n_rows"]
    assert r.n_events == REF["models"][model]["n_events"] == 114
    assert r.extra["n_subjects"] == 432 and r.flow.n_read == r.flow.n_used == 432


def test_extra_counts_per_period(subjects: pd.DataFrame) -> None:
    ref = REF["expansion"]["four_week"]
    r = fit_discrete(RHS, subjects, duration="week", event="arrest", id="pid", cuts=CUTS4)
    assert r.extra["periods"] == list(range(1, 14)) and r.extra["n_periods"] == 13
    assert r.extra["rows_per_period"] == ref["rows_per_period"]
    assert r.extra["events_per_period"] == ref["events_per_period"]
    assert r.extra["link"] == "cloglog" and r.extra["time"] == "dummies"
    assert r.vcov_type == "cluster" and r.n_clusters == 432 and r.cluster_var == "pid"


@pytest.mark.parametrize("link", ["cloglog", "logit"])
def test_cluster_by_id_matches_statsmodels(subjects: pd.DataFrame, link: str) -> None:
    pp = expand_person_period(subjects, duration="week", event="arrest", id="pid", cuts=CUTS4)
    X = pd.concat([pd.get_dummies(pp["period"], prefix="p", dtype=float), pp[COVS]], axis=1)
    lk = sm.families.links.CLogLog() if link == "cloglog" else sm.families.links.Logit()
    ref = sm.GLM(pp["arrest"], X, family=sm.families.Binomial(link=lk)).fit(
        tol=1e-15, maxiter=500, cov_type="cluster", cov_kwds={"groups": pp["pid"].to_numpy()})
    r = fit_discrete(RHS, subjects, duration="week", event="arrest", id="pid", link=link,
                     cuts=CUTS4, information="observed")
    np.testing.assert_allclose(r.params, ref.params.to_numpy(), rtol=0, atol=1e-8)
    np.testing.assert_allclose(r.se, ref.bse.to_numpy(), rtol=1e-7)
    # predictions of the per-period hazard agree too
    np.testing.assert_allclose(r.predict(pp)["estimate"].to_numpy(), ref.predict(X).to_numpy(),
                               rtol=1e-7, atol=1e-12)


def test_hazard_predictions_per_period(subjects: pd.DataFrame) -> None:
    names, est, _ = _ref_vectors("period4_cloglog")
    r = fit_discrete(RHS, subjects, duration="week", event="arrest", id="pid", cuts=CUTS4)
    profiles = subjects.iloc[[0, 10]]
    tab = hazard_table(r, profiles)
    assert len(tab) == 26 and tab["period"].tolist()[:13] == list(range(1, 14))
    # the hazard from R's coefficients: 1 - exp(-exp(alpha_k + x'b))
    xb = profiles[COVS].to_numpy(float) @ est[13:]
    want = 1.0 - np.exp(-np.exp(est[:13][None, :] + xb[:, None]))
    np.testing.assert_allclose(tab["hazard"].to_numpy(), want.ravel(), rtol=1e-6)
    np.testing.assert_allclose(tab["survival"].to_numpy(),
                               np.cumprod(1.0 - want, axis=1).ravel(), rtol=1e-6)
    assert (tab["conf_low"] < tab["hazard"]).all() and (tab["hazard"] < tab["conf_high"]).all()
    # predict() on person-period rows, and after a JSON round trip
    pp = expand_person_period(profiles, duration="week", event="arrest", id="pid", cuts=CUTS4)
    h = r.predict(pp)["estimate"].to_numpy()
    at = (np.searchsorted(profiles["pid"].to_numpy(), pp["pid"].to_numpy()) * 13
          + pp["period"].to_numpy() - 1)  # row of (profile, period) in the table
    np.testing.assert_allclose(h, tab["hazard"].to_numpy()[at], rtol=1e-12)


def test_period_dummies_predict_after_json_round_trip(subjects: pd.DataFrame) -> None:
    r = fit_discrete(RHS, subjects, duration="week", event="arrest", id="pid", cuts=CUTS4)
    pp = expand_person_period(subjects.iloc[:5], duration="week", event="arrest", id="pid",
                              cuts=CUTS4)
    back = FitResult.from_dict(r.to_dict())
    np.testing.assert_allclose(back.predict(pp)["estimate"].to_numpy(),
                               r.predict(pp)["estimate"].to_numpy(), rtol=1e-12)


def test_quadratic_predict_after_json_round_trip(subjects: pd.DataFrame) -> None:
    r = fit_discrete(RHS, subjects, duration="week", event="arrest", id="pid", width=1,
                     time="quadratic", link="logit")
    back = FitResult.from_dict(r.to_dict())
    assert back.model == "discrete" and back.link == "logit" and back.extra == r.extra
    tab, tab2 = hazard_table(r, subjects.iloc[:3]), hazard_table(back, subjects.iloc[:3])
    pd.testing.assert_frame_equal(tab, tab2, rtol=1e-12)


def test_expanded_input_gives_the_same_fit(subjects: pd.DataFrame) -> None:
    a = fit_discrete(RHS, subjects, duration="week", event="arrest", id="pid", width=1,
                     time="log")
    pw = expand_person_period(subjects, duration="week", event="arrest", id="pid", width=1)
    b = fit_discrete(RHS, pw.rename(columns={"period": "wk"}), event="arrest", id="pid",
                     expanded=True, period="wk", time="log")
    assert b.terms[:2] == ("Intercept", "log(wk)") and a.terms[:2] == ("Intercept", "log(period)")
    np.testing.assert_allclose(b.params, a.params, rtol=1e-10)
    np.testing.assert_allclose(b.se, a.se, rtol=1e-10)
    assert b.extra["n_subjects"] == 432 and b.nobs == a.nobs == 19809
    assert b.flow.n_read == 19809  # person-period data: the flow counts its rows


def test_bands_are_piecewise_constant_dummies(subjects: pd.DataFrame) -> None:
    r = fit_discrete(RHS, subjects, duration="week", event="arrest", id="pid", time="bands",
                     cuts=[12, 24, 36], width=4, vcov="classical")
    assert r.terms[:4] == ("C(band)[(0,12]]", "C(band)[(12,24]]", "C(band)[(24,36]]",
                           "C(band)[(36,inf)]")
    # same as a 4-band dummy fit on the band grid itself (the likelihood factorises by row)
    pw = expand_person_period(subjects, duration="week", event="arrest", id="pid", width=4)
    pw["b"] = np.searchsorted([12, 24, 36], pw["tstart"], side="right") + 1
    ref = sm.GLM(pw["arrest"], pd.concat(
        [pd.get_dummies(pw["b"], dtype=float), pw[COVS]], axis=1),
        family=sm.families.Binomial(link=sm.families.links.CLogLog())).fit(tol=1e-15)
    np.testing.assert_allclose(r.params, ref.params.to_numpy(), atol=1e-8)
    tab = hazard_table(r, subjects.iloc[:1])
    assert np.ptp(tab["hazard"].to_numpy()[:3]) == 0 and tab["hazard"][2] != tab["hazard"][3]
    with pytest.raises(UsageError, match="straddles"):
        fit_discrete(RHS, subjects, duration="week", event="arrest", id="pid", time="bands",
                     cuts=[10], width=4)


def test_sample_flow_counts_subjects(subjects: pd.DataFrame) -> None:
    d = subjects.copy()
    d.loc[[0, 1, 2], "age"] = np.nan
    d.loc[[3], "week"] = np.nan
    r = fit_discrete(RHS, d, duration="week", event="arrest", id="pid", cuts=CUTS4)
    assert r.flow.n_read == 432 and r.flow.n_used == 428
    assert r.flow.dropped_by_reason() == {"missing value in column 'week'": 1,
                                          "missing value in column 'age'": 3}
    kept = d.dropna(subset=["age", "week"])
    assert r.nobs == int(np.ceil(kept["week"] / 4).sum()) and r.extra["n_subjects"] == 428


def test_fit_errors(subjects: pd.DataFrame) -> None:
    kw = {"duration": "week", "event": "arrest", "id": "pid", "cuts": CUTS4}
    with pytest.raises(DataValidationError, match="id column 'pid' is missing"):
        fit_discrete(RHS, subjects.assign(pid=subjects.pid.where(subjects.pid > 2)), **kw)
    with pytest.raises(UsageError, match="id column"):
        fit_discrete(RHS, subjects, duration="week", event="arrest", id="nope", cuts=CUTS4)
    with pytest.raises(DataValidationError, match="coded 0"):
        fit_discrete(RHS, subjects.assign(arrest=subjects.arrest * 2), **kw)
    with pytest.raises(DataValidationError, match="positive"):
        fit_discrete(RHS, subjects.assign(week=-subjects.week), **kw)
    with pytest.raises(UsageError, match="time must be one of"):
        fit_discrete(RHS, subjects, time="spline", **kw)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="link must be one of"):
        fit_discrete(RHS, subjects, link="probit", **kw)  # type: ignore[arg-type]
    with pytest.raises(FormulaError, match="right-hand side"):
        fit_discrete("week ~ age", subjects, **kw)
    with pytest.raises(UsageError, match="already"):
        fit_discrete(RHS, subjects.assign(period=1), event="arrest", id="pid", expanded=True,
                     cuts=CUTS4)
    with pytest.raises(DataValidationError, match="whole numbers"):
        fit_discrete(RHS, subjects.assign(period=1.5), event="arrest", id="pid", expanded=True)


# ---------------------------------------------------------------------------- synthetic cohort

@pytest.fixture(scope="module")
def cohort_measures() -> pd.DataFrame:
    cohort = simulate_cohort(n=20000, seed=1)
    return build_measures(cohort.frame, ColumnMap.default()).frame


def test_firm_years_match_the_raw_expansion(cohort_measures: pd.DataFrame) -> None:
    fy = firm_years(cohort_measures, 5)
    raw = raw_firm_years(simulate_cohort(n=20000, seed=1).frame)
    assert len(fy) == len(raw) and fy["period"].max() == 5
    np.testing.assert_array_equal(fy["firm_id"], raw["firm_id"])
    np.testing.assert_array_equal(fy["period"], raw["t"])
    np.testing.assert_array_equal(fy["year"], raw["year"])
    np.testing.assert_array_equal(fy["event"], raw["event"])
    assert (fy["exit_type"] != "none").sum() == fy["event"].sum()
    assert "exited" not in fy.columns and "time_to_exit" not in fy.columns
    short = firm_years(cohort_measures, 2)  # a shorter window censors at year 2
    assert short["period"].max() == 2
    assert short["event"].sum() == int(((cohort_measures["event"] == 1)
                                        & (cohort_measures["time_to_exit"] <= 2)).sum())


def test_synthetic_cohort_hazard_signs(cohort_measures: pd.DataFrame) -> None:
    """True model: export ratio, alliances, age and size lower the failure hazard."""
    rhs = "export_ratio + rd_intensity + innovativeness + rd_alliance + log_firm_age + log_employees"
    fy = firm_years(cohort_measures, 5)
    r = fit_discrete(rhs + " + C(industry)", fy, event="event", id="firm_id", expanded=True)
    z = dict(zip(r.terms, r.zvalues, strict=True))
    for term in ("export_ratio", "rd_alliance", "log_firm_age", "log_employees"):
        assert z[term] < -3, term
    assert r.extra["n_periods"] == 5 and r.extra["n_subjects"] == 20000
    # the subject-level route (time_to_exit in yearly periods) gives the same estimates
    s = fit_discrete(rhs + " + C(industry)", cohort_measures, duration="time_to_exit",
                     event="event", id="firm_id", width=1)
    np.testing.assert_allclose(s.params, r.params, atol=1e-8)


def test_missing_columns_are_named(subjects: pd.DataFrame) -> None:
    with pytest.raises(UsageError, match="duration column 'weeks'"):
        fit_discrete(RHS, subjects, duration="weeks", event="arrest", id="pid", width=1)
    with pytest.raises(UsageError, match="period column 'period'"):
        fit_discrete(RHS, subjects, event="arrest", id="pid", expanded=True)
