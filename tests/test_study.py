"""The reference study end to end on the built-in cohort: verdicts come out of the analysis."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from smesurvival.data.synthetic import simulate_cohort
from smesurvival.errors import DataValidationError, SpecError
from smesurvival.models.fit import fit
from smesurvival.study import load_spec, run_study
from smesurvival.study.spec import spec_from_dict


@pytest.fixture(scope="module")
def result():
    return run_study("lee2012")


def test_default_seed_reproduces_the_published_pattern(result) -> None:
    got = {v.hypothesis: v.supported for v in result.verdicts}
    assert got == {"H1": True, "H2a": False, "H2b": False, "H3a": True, "H3b": False,
                   "H4": True, "H5": False}
    assert all(v.agrees_with_published for v in result.verdicts)


def test_result_is_labelled_synthetic(result) -> None:
    assert result.synthetic and "SYNTHETIC" in result.provenance.source
    assert any("synthetic cohort" in c for c in result.caveats)
    assert result.provenance.generator is not None and result.provenance.sha256


def test_verdicts_follow_the_fitted_models(result) -> None:
    """Recompute one verdict by hand from an independent refit of its step."""
    spec = load_spec("lee2012")
    v = next(v for v in result.verdicts if v.hypothesis == "H3a")
    step = next(s for s in result.steps if s.name == v.step)
    refit = fit(step.formula, _centred(result, spec), model="logit")
    j = refit.terms.index("export_ratio:rd_intensity")
    assert v.estimate == pytest.approx(refit.params[j], rel=1e-10)
    from scipy import stats
    assert v.p_value == pytest.approx(stats.norm.sf(refit.params[j] / refit.se[j]), rel=1e-8)
    assert v.supported == (v.p_value < 0.05 and v.estimate > 0)


def _centred(result, spec) -> pd.DataFrame:
    from smesurvival.data import ColumnMap, MeasureOptions, build_measures

    frame = simulate_cohort(n=spec.synthetic_n, seed=spec.synthetic_seed).frame
    mf = build_measures(frame, ColumnMap.from_dict(spec.columns), MeasureOptions(**spec.measures))
    d = mf.frame.copy()
    for v, m in result.centering.items():
        d[v] = d[v] - m
    return d


def test_steps_share_one_sample_and_lr_tests_are_nested(result) -> None:
    n = {s.fit.nobs for s in result.steps}
    assert len(n) == 1
    by = {s.name: s for s in result.steps}
    m3 = by["M3"]
    assert m3.lr_vs_previous is not None and m3.lr_vs_previous.df == 1
    assert m3.lr_vs_previous.chi2 == pytest.approx(2 * (m3.fit.loglik - by["M2"].fit.loglik))
    assert by["M6"].lr_vs_previous.df == 3


def test_centring_makes_main_effects_conditional_at_the_mean(result) -> None:
    assert set(result.centering) == {"export_ratio", "rd_intensity", "innovativeness", "rd_alliance"}
    assert result.centering["export_ratio"] > 0


def test_descriptives_and_correlations(result) -> None:
    d = result.descriptives
    assert d.variables[0] == "survived"
    assert np.allclose(np.diag(d.corr), 1.0)
    assert d.corr.shape == (len(d.variables),) * 2
    assert 0.75 < d.mean[0] < 0.95


def test_implications_have_cis_around_predictions(result) -> None:
    assert len(result.implications) == 4
    for imp in result.implications:
        for p in (imp.low, imp.high):
            assert 0 < p.conf_low < p.probability < p.conf_high < 1
        assert "%" in imp.text
    export = result.implications[0]
    assert export.high.probability > export.low.probability  # H1 holds in the cohort


def test_curves_and_group_survival(result) -> None:
    c = result.curves
    assert c.probability.shape == (3, c.focal_grid.size)
    assert (c.conf_low <= c.probability).all() and (c.probability <= c.conf_high).all()
    exporters = result.survival_by_group[0]
    assert exporters.groups == ("Non-exporters", "Exporters")
    assert sum(exporters.n) == result.steps[0].fit.nobs


def test_missing_values_are_counted_in_the_sample_flow() -> None:
    frame = simulate_cohort(n=1500, seed=11).frame.copy()
    frame.loc[[1, 5, 8], "export_sales"] = np.nan
    frame.loc[[2, 5], "rd_employees"] = np.nan
    r = run_study("lee2012", frame)
    dropped = r.flow.dropped_by_reason()
    assert dropped["missing value in column 'export_ratio'"] == 3
    assert dropped["missing value in column 'rd_intensity'"] == 1  # row 5 already dropped
    assert r.flow.n_used == 1500 - 4 - sum(
        n for k, n in dropped.items() if not k.startswith("missing value in column")
    )
    assert all(s.fit.nobs == r.flow.n_used for s in r.steps)


def test_bad_data_stops_the_study() -> None:
    frame = simulate_cohort(n=100, seed=2).frame.copy()
    frame.loc[3, "employees"] = -1
    with pytest.raises(DataValidationError, match="employees"):
        run_study("lee2012", frame)


def test_spec_errors_name_the_key() -> None:
    raw = {"steps": [{"name": "M1", "add": ["x"]}], "hypotheses": [{"id": "H", "term": "y"}]}
    with pytest.raises(SpecError, match="term 'y' is not in any step"):
        spec_from_dict(raw, "my.toml")
    with pytest.raises(SpecError, match="unknown key"):
        spec_from_dict({"stepz": []}, "my.toml")
    with pytest.raises(SpecError, match="neither a built-in study"):
        load_spec("no_such_study")


def test_spec_data_source_path_and_sql(tmp_path) -> None:
    """A spec's [data] path (relative to the spec file) or DuckDB query is used when no data
    are passed; the result is then not synthetic and carries the file's SHA-256."""
    import hashlib
    from importlib import resources

    simulate_cohort(n=1612, seed=9).write(tmp_path / "firms.csv")
    toml = resources.files("smesurvival.study").joinpath("lee2012.toml").read_text("utf-8")
    (tmp_path / "mine.toml").write_text(toml + '\n[data]\npath = "firms.csv"\n')
    r = run_study(tmp_path / "mine.toml")
    assert not r.synthetic
    assert r.provenance.sha256 == hashlib.sha256((tmp_path / "firms.csv").read_bytes()).hexdigest()
    sql = f"SELECT * FROM read_csv_auto('{tmp_path / 'firms.csv'}') WHERE firm_id <= 1500"
    (tmp_path / "sql.toml").write_text(toml + f'\n[data]\nsql = "{sql}"\n')
    r2 = run_study(tmp_path / "sql.toml")
    assert r2.flow.n_read == 1500


def test_robustness_runs_rejudge_hypotheses_on_the_hazard_scale(result) -> None:
    """Cox and discrete-time verdicts: survival hypotheses become negative hazard coefficients."""
    assert [r.model for r in result.robustness] == ["cox", "discrete"]
    for run in result.robustness:
        v = {x.hypothesis: x for x in run.verdicts}
        assert v["H1"].scale == "hazard" and v["H1"].expected_sign == "-"
        assert v["H1"].estimate < 0 and v["H1"].supported
        main = {x.hypothesis: x for x in result.verdicts}
        # same sample, same centring: the sign of every judged term is opposite to the logit's
        for h in v:
            if abs(main[h].statistic) > 2:
                assert np.sign(v[h].estimate) == -np.sign(main[h].estimate)
        assert all(s.fit.nobs >= result.steps[0].fit.nobs for s in run.steps)


def test_cox_robustness_equals_a_direct_cox_fit(result) -> None:
    from smesurvival.models.cox import fit_cox
    from smesurvival.study import robustness as rb

    spec = load_spec("lee2012")
    d = rb.hazard_frame(spec, _centred(result, spec))
    cox = next(r for r in result.robustness if r.model == "cox")
    m6 = next(s for s in cox.steps if s.name == "M6")
    direct = fit_cox(m6.formula.split("~")[1], d, duration="time_to_exit", event="_event")
    np.testing.assert_allclose(m6.fit.params, direct.params, rtol=1e-10)


def test_cause_specific_ph_and_incidence(result) -> None:
    types = [c.exit_type for c in result.cause_specific]
    assert types == ["failure", "acquisition"]
    failure = result.cause_specific[0]
    assert failure.fit is not None and failure.n_events == failure.fit.n_events
    assert result.ph_check is not None and result.ph_check.global_df == len(result.ph_check.terms)
    inc = result.incidence
    assert inc is not None and inc.exit_types[0] == "failure"
    # cumulative incidences of all routes add up to 1 - KM overall at the window
    from smesurvival.models.km import kaplan_meier

    g = result.survival_by_group[0]
    assert sum(inc.n_events) == sum(g.n_events)
    a = _centred(result, load_spec("lee2012"))
    km = kaplan_meier(a.time_to_exit.to_numpy(float), a.event.to_numpy(float))
    assert sum(inc.at_window) == pytest.approx(1 - km.at(5.0), abs=1e-10)


def test_numbers_at_risk_and_logrank(result) -> None:
    g = result.survival_by_group[0]
    assert list(g.risk_times) == [0, 1, 2, 3, 4, 5]
    assert [int(x[0]) for x in g.at_risk] == list(g.n)
    assert g.logrank_df == 1 and 0 <= g.logrank_p <= 1


@pytest.mark.parametrize("kind,family", [("time_to_exit", "cox"), ("time_to_exit", "discrete"),
                                         ("competing", "finegray")])
def test_other_outcome_kinds_as_main_analysis(tmp_path, kind, family) -> None:
    from importlib import resources

    toml = resources.files("smesurvival.study").joinpath("lee2012.toml").read_text("utf-8")
    toml = toml.replace('kind = "binary"', f'kind = "{kind}"' + ('\ncause = "failure"' if kind == "competing" else ""))
    toml = toml.replace('family = "logit"', f'family = "{family}"')
    toml = toml.replace('models = ["cox", "discrete"]', "models = []")
    (tmp_path / "s.toml").write_text(toml)
    r = run_study(tmp_path / "s.toml", robustness=False)
    assert r.steps[0].fit.model == family
    h1 = next(v for v in r.verdicts if v.hypothesis == "H1")
    assert h1.scale == "hazard" and h1.estimate < 0
