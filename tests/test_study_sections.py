"""The issue-4 sections of the reference study: interaction effects on the probability scale,
mediation, missing values (listwise and MICE), and how the report shows them."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from smesurvival.data.synthetic import simulate_cohort
from smesurvival.errors import SpecError
from smesurvival.inference.ai_norton import ai_norton
from smesurvival.inference.effects import avg_slopes, simple_slopes
from smesurvival.inference.johnson_neyman import johnson_neyman
from smesurvival.inference.mediation import indirect_effect, khb
from smesurvival.models.fit import fit
from smesurvival.report.build import render_html, render_markdown, write_report
from smesurvival.report.serialize import dumps
from smesurvival.study import load_spec, run_study
from smesurvival.study.mediation import BOOT_NAMES, mediation_statistic
from smesurvival.study.spec import MissingSpec, spec_from_dict


@pytest.fixture(scope="module")
def result():
    return run_study("lee2012")


@pytest.fixture(scope="module")
def data(result) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(uncentred analysis sample, centred data) rebuilt independently of the runner."""
    from smesurvival.data import ColumnMap, MeasureOptions, SampleFlow, build_measures
    from smesurvival.study.run import _analysis_sample

    spec = result.spec
    frame = simulate_cohort(n=spec.synthetic_n, seed=spec.synthetic_seed).frame
    mf = build_measures(frame, ColumnMap.from_dict(spec.columns),
                        MeasureOptions(window_years=spec.window_years, **spec.measures),
                        SampleFlow(len(frame)))
    a, _ = _analysis_sample(spec, mf.frame, mf.flow)
    c = a.copy()
    for v, m in result.centering.items():
        c[v] = c[v] - m
    return a, c


def _interaction(result, hyp: str):
    return next(ev for ev in result.effects.interactions if ev.hypothesis == hyp)


# ---- effects -----------------------------------------------------------------------------------
def test_ame_equals_avg_slopes_on_the_centred_data(result, data) -> None:
    _, c = data
    e = result.effects
    assert e.focal == "export_ratio" and e.step == "M6"
    direct = avg_slopes(result.step("M6").fit, c, "export_ratio")
    assert e.ame.estimate == pytest.approx(float(direct.estimate[0]), rel=1e-10)
    assert e.ame.std_error == pytest.approx(float(direct.std_error[0]), rel=1e-10)
    assert e.ame.conf_low == pytest.approx(float(direct.conf_low[0]), rel=1e-10)
    # bootstrap intervals were computed and are plausible
    assert e.bootstrap is not None and e.bootstrap.B == 1000 and e.bootstrap.n_failed == 0
    assert e.bootstrap.jackknife == "exact"
    for lo, hi in ((e.ame.percentile_low, e.ame.percentile_high), (e.ame.bca_low, e.ame.bca_high)):
        assert lo < e.ame.estimate < hi
    assert 0.5 < e.ame.boot_se / e.ame.std_error < 2.0


def test_simple_slopes_and_ai_norton_match_direct_calls(result, data) -> None:
    a, c = data
    ev = _interaction(result, "H3a")
    f = result.step(ev.step).fit
    ss = simple_slopes(f, c, "export_ratio", "rd_intensity")  # mean -+ 1 SD on centred data
    assert [r.estimate for r in ev.simple_slopes] == pytest.approx(list(ss.estimate), rel=1e-9)
    m, s = a["rd_intensity"].mean(), a["rd_intensity"].std(ddof=1)
    assert [r.at["rd_intensity"] for r in ev.simple_slopes] == pytest.approx([m - s, m, m + s])
    assert ev.slope_difference.estimate == pytest.approx(ss.estimate[2] - ss.estimate[0], rel=1e-9)
    an = ai_norton(f, c, "export_ratio", "rd_intensity")
    assert ev.ai_norton.estimate == pytest.approx(float(an.average.estimate[0]), rel=1e-10)
    assert ev.ai_norton.std_error == pytest.approx(float(an.average.std_error[0]), rel=1e-10)
    assert ev.ai_norton_kind == "cross-partial" and ev.firms is not None
    assert ev.firms.effect.shape == (len(c),)
    assert ev.coefficient == pytest.approx(f.params[f.index("export_ratio:rd_intensity")])
    assert "Ai & Norton (2003)" in ev.text and "larger for high-R&D" in ev.text


def test_binary_moderator_is_set_to_its_own_0_and_1(result, data) -> None:
    a, c = data
    ev = _interaction(result, "H5")
    assert ev.moderator_binary and ev.jn_link is None and ev.jn_response is None
    assert [r.at["rd_alliance"] for r in ev.simple_slopes] == [0.0, 1.0]
    mean = result.centering["rd_alliance"]
    f = result.step(ev.step).fit
    direct = avg_slopes(f, c, "export_ratio", at={"rd_alliance": [-mean, 1.0 - mean]})
    assert [r.estimate for r in ev.simple_slopes] == pytest.approx(list(direct.estimate), rel=1e-9)
    # the average Ai–Norton effect for a binary moderator: derivative of the discrete change
    assert ev.ai_norton_kind == "derivative of discrete change"
    assert ev.ai_norton.estimate == pytest.approx(direct.estimate[1] - direct.estimate[0], rel=1e-9)


def test_johnson_neyman_in_the_moderators_own_units(result, data) -> None:
    a, c = data
    ev = _interaction(result, "H3a")
    f = result.step(ev.step).fit
    mean = result.centering["rd_intensity"]
    jn = johnson_neyman(f, c, "export_ratio", "rd_intensity", "link", grid=21)
    assert ev.jn_link.bounds == pytest.approx([b + mean for b in jn.bounds])
    assert ev.jn_link.observed_range == pytest.approx((a["rd_intensity"].min(), a["rd_intensity"].max()))
    assert ev.jn_response is not None and ev.jn_response.scale == "response"
    assert ev.jn_response.moderator_grid[0] == pytest.approx(a["rd_intensity"].min())
    assert "probability scale" in ev.jn_response.text and "above" in ev.jn_response.text
    assert ev.curves is not None and ev.curves.estimate.shape == (3, ev.curves.focal_grid.size)
    assert (ev.curves.conf_low <= ev.curves.estimate).all()


# ---- mediation -----------------------------------------------------------------------------------
def test_mediation_khb_equals_a_direct_khb_call(result, data) -> None:
    _, c = data
    med = result.mediation
    spec = result.spec
    direct = khb(c, "survived", "rd_intensity", "export_ratio", list(spec.controls))
    f = direct.frame.set_index("term")
    for r in med.khb:
        assert r.estimate == pytest.approx(float(f.at[r.term, "estimate"]), rel=1e-10), r.term
        assert r.std_error == pytest.approx(float(f.at[r.term, "std_error"]), rel=1e-10), r.term
    rows = {r.term: r for r in med.khb}
    assert rows["total"].estimate == pytest.approx(rows["direct"].estimate + rows["indirect"].estimate)
    assert rows["indirect"].bca_low is not None and rows["indirect"].percentile_low is not None
    assert rows["percent_mediated"].bca_low is None  # ratios get no bootstrap interval
    assert med.bootstrap is not None and med.bootstrap.B == 1000
    assert "through export ratio" in med.text and med.published


def test_mediation_bootstrap_statistic_refits_both_equations(result, data) -> None:
    """At any weight vector, the batched statistic equals indirect_effect(..., weights=w)."""
    _, c = data
    ctr = list(result.spec.controls)
    rhs = " + ".join(["rd_intensity", "export_ratio", *ctr])
    out = fit(f"survived ~ {rhs}", c)
    stat = mediation_statistic(out, c, "rd_intensity", "export_ratio", tuple(ctr), "logit")
    full = stat(out.params[None, :], np.ones((1, len(c))))[0]
    ie = indirect_effect(c, "survived", "rd_intensity", "export_ratio", ctr).estimates
    ie["percent_mediated"] = 100.0 * ie["indirect"] / ie["total"]
    for j, name in enumerate(BOOT_NAMES):
        assert full[j] == pytest.approx(float(ie[name]), rel=1e-6), name
    w = np.random.default_rng(3).multinomial(len(c), np.full(len(c), 1 / len(c))).astype(float)
    cw = c.assign(_w=w)
    refit = fit(f"survived ~ {rhs}", cw, weights="_w")
    got = stat(refit.params[None, :], w[None, :])[0]
    iew = indirect_effect(c, "survived", "rd_intensity", "export_ratio", ctr, weights=w).estimates
    iew["percent_mediated"] = 100.0 * iew["indirect"] / iew["total"]
    for j, name in enumerate(BOOT_NAMES):
        assert got[j] == pytest.approx(float(iew[name]), rel=1e-6), name


def test_mediation_product_rows_match_indirect_effect(result, data) -> None:
    _, c = data
    ie = indirect_effect(c, "survived", "rd_intensity", "export_ratio",
                         list(result.spec.controls)).frame.set_index("term")
    for r in result.mediation.product:
        assert r.estimate == pytest.approx(float(ie.at[r.term, "estimate"]), rel=1e-10)


# ---- missing values --------------------------------------------------------------------------------
def test_missingness_table_when_nothing_is_missing(result) -> None:
    ms = result.missing
    assert ms.method == "listwise" and not ms.any_missing and ms.n_complete == ms.n_rows == 1612
    assert {r.variable for r in ms.table} >= {"survived", "export_ratio", "rd_intensity", "industry"}


@pytest.fixture(scope="module")
def holes() -> pd.DataFrame:
    frame = simulate_cohort(n=1612, seed=2012).frame.copy()
    rng = np.random.default_rng(7)
    frame.loc[rng.choice(len(frame), 120, replace=False), "export_sales"] = np.nan
    frame.loc[rng.choice(len(frame), 80, replace=False), "rd_employees"] = np.nan
    return frame


def _lean(spec, **kw):
    return dataclasses.replace(spec, effects=None, mediation=None, **kw)


def test_listwise_default_counts_dropped_rows(holes) -> None:
    r = run_study(_lean(load_spec("lee2012")), holes, robustness=False)
    assert r.missing.method == "listwise"
    dropped = r.flow.dropped_by_reason()
    assert dropped["missing value in column 'export_ratio'"] == 120
    rows = {m.variable: m for m in r.missing.table}
    assert rows["export_ratio"].n_missing == 120 and rows["rd_intensity"].n_missing == 80
    assert rows["export_ratio"].share == pytest.approx(120 / 1612)
    assert r.missing.n_complete == r.flow.n_used == r.steps[0].fit.nobs
    assert r.missing.pooled_steps == ()


def test_mice_pools_every_step_and_judges_on_pooled_estimates(holes) -> None:
    spec = _lean(load_spec("lee2012"), missing=MissingSpec("mice", m=5, seed=3, iterations=5))
    r = run_study(spec, holes, robustness=False)
    ms = r.missing
    assert ms.method == "mice" and ms.m == 5 and ms.n_imputed_rows == 1612
    assert r.flow.n_used < 1612  # the complete-case analysis still drops, and counts
    assert [p.name for p in ms.pooled_steps] == [s.name for s in spec.steps]
    m6 = next(p for p in ms.pooled_steps if p.name == "M6")
    j = m6.terms.index("export_ratio")
    assert m6.fmi[j] > 0 and np.isfinite(m6.df[j]) and m6.df[j] > 0
    assert {r_.method for r_ in ms.table if r_.variable == "export_ratio"} == {"pmm"}
    v = next(v for v in ms.pooled_verdicts if v.hypothesis == "H1")
    from scipy import stats

    h1 = next(p for p in ms.pooled_steps if p.name == v.step)
    k = h1.terms.index("export_ratio")
    assert v.estimate == pytest.approx(h1.estimate[k])
    assert v.p_value == pytest.approx(stats.t.sf(h1.estimate[k] / h1.std_error[k], h1.df[k]))
    assert v.supported
    md, html = render_markdown(r), render_html(r)
    assert "pooled over the imputed data sets" in md and "Verdict (MI)" in md
    assert "Missing values by analysis variable" in html and "Imputation" in html
    d = json.loads(dumps(r))
    assert d["missing"]["method"] == "mice" and len(d["missing"]["pooled_verdicts"]) == 7


def test_power_runs_skip_the_extra_sections() -> None:
    r = run_study("lee2012", robustness=False)
    assert r.effects is None and r.mediation is None and r.missing is not None


def test_cli_style_override_of_the_missing_method(holes) -> None:
    spec = _lean(load_spec("lee2012"))
    with pytest.raises(SpecError, match="listwise"):
        run_study(spec, holes, robustness=False, missing="impute")


# ---- spec ----------------------------------------------------------------------------------------
def _raw() -> dict:
    import tomllib
    from importlib import resources

    return tomllib.loads(resources.files("smesurvival.study").joinpath("lee2012.toml").read_text("utf-8"))


@pytest.mark.parametrize("table,key,value,match", [
    ("effects", "moderators", ["log_employees"], "no export_ratio:log_employees"),
    ("effects", "step", "M9", "effects.step"),
    ("effects", "bootstrap", 1, "bootstrap"),
    ("effects", "colour", "red", "unknown key"),
    ("mediation", "method", ["sobel"], "mediation.method"),
    ("mediation", "mediator", "rd_intensity", "must differ"),
    ("missing", "method", "hotdeck", "missing.method"),
    ("missing", "m", 1, "missing.m"),
])
def test_spec_tables_are_validated(table, key, value, match) -> None:
    raw = _raw()
    raw[table][key] = value
    with pytest.raises(SpecError, match=match):
        spec_from_dict(raw, "t.toml")


def test_spec_defaults() -> None:
    spec = load_spec("lee2012")
    assert spec.effects.moderators == ("rd_intensity", "innovativeness", "rd_alliance")
    assert spec.mediation.controls == spec.controls and spec.mediation.method == ("khb", "product")
    assert spec.missing.method == "listwise" and spec.missing.m == 20
    raw = _raw()
    for t in ("effects", "mediation", "missing"):
        del raw[t]
    bare = spec_from_dict(raw)
    assert bare.effects is None and bare.mediation is None and bare.missing == MissingSpec()


# ---- report ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def report(result, tmp_path_factory):
    return write_report(result, tmp_path_factory.mktemp("issue4") / "out")


def test_report_has_the_new_sections_and_figures(result, report) -> None:
    md, html = report.markdown.read_text(), report.html.read_text()
    for heading in ("Interaction effects on the probability scale", "Mediation", "Missing values"):
        assert f"## {heading}" in md and f"<h2>{heading}</h2>" in html
    for text in ("Average marginal effect of Export ratio", "Simple slopes",
                 "average interaction effect", "Johnson–Neyman", "Mediation (KHB)",
                 "Mediation (product of coefficients)", "Partial and mediated support",
                 "No analysis variable has missing values"):
        assert text in md, text
    names = {p.name for p in report.figures}
    for stem in ("conditional_rd_intensity", "johnson_neyman_rd_intensity", "ai_norton_rd_intensity"):
        assert f"{stem}.png" in names and f"{stem}.svg" in names
        assert f"](figures/{stem}.png)" in md
        svg = (report.out_dir / "figures" / f"{stem}.svg").read_text()
        assert "SYNTHETIC" in svg
    ev = _interaction(result, "H3a")
    assert ev.text.split(":")[0] in md  # the plain sentence beside the hypothesis


def test_results_json_round_trips_the_new_sections(result, report) -> None:
    d = json.loads(report.json.read_text())
    assert d["schema_version"] == 3
    assert d["effects"]["ame"]["estimate"] == pytest.approx(result.effects.ame.estimate)
    h3a = next(i for i in d["effects"]["interactions"] if i["hypothesis"] == "H3a")
    assert h3a["jn_link"]["significant"][-1][1] is None  # unbounded end -> null
    assert len(h3a["simple_slopes"]) == 3
    assert {r["term"] for r in d["mediation"]["khb"]} >= {"total", "direct", "indirect"}
    assert d["missing"]["any_missing"] is False and d["missing"]["method"] == "listwise"
    assert json.loads(dumps(result)) == d


def test_absent_sections_are_omitted(result) -> None:
    bare = dataclasses.replace(result, effects=None, mediation=None)
    md, html = render_markdown(bare), render_html(bare)
    for heading in ("Interaction effects on the probability scale", "Mediation"):
        assert f"## {heading}" not in md and f"<h2>{heading}</h2>" not in html
    assert "## Missing values" in md  # always there
    d = json.loads(dumps(bare))
    assert d["effects"] is None and d["mediation"] is None


def test_spec_without_the_tables_runs_without_the_sections() -> None:
    raw = _raw()
    for t in ("effects", "mediation"):
        del raw[t]
    r = run_study(spec_from_dict(raw))
    assert r.effects is None and r.mediation is None and r.missing is not None
    assert "## Mediation" not in render_markdown(r)


# ---- engines -------------------------------------------------------------------------------------
def test_study_through_the_stream_engine_gives_the_same_numbers() -> None:
    """[model] engine = "stream": every main step by the stream engine (small batches), equal
    to the in-memory study to 1e-8, same verdicts."""
    raw = _raw()
    raw["model"].update(engine="stream", batch_rows=500)
    streamed = run_study(spec_from_dict(raw, "t.toml"), robustness=False)
    memory = run_study("lee2012", robustness=False)
    assert [v.supported for v in streamed.verdicts] == [v.supported for v in memory.verdicts]
    for a, b in zip(streamed.steps, memory.steps, strict=True):
        assert a.fit.terms == b.fit.terms
        np.testing.assert_allclose(a.fit.params, b.fit.params, rtol=0, atol=1e-8)
        np.testing.assert_allclose(a.fit.se, b.fit.se, rtol=0, atol=1e-8)
        assert a.fit.loglik == pytest.approx(b.fit.loglik, abs=1e-8)
    raw["model"]["engine"] = "gpu"
    with pytest.raises(SpecError, match="model.engine must be memory, stream or spark"):
        spec_from_dict(raw, "t.toml")
