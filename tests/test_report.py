"""Tests of the report layer: tables hold the right numbers, renderers agree, the report folder
is self-contained, honest about synthetic data and written all-or-nothing."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from html import escape as html_escape
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from smesurvival.data.flow import SampleFlow
from smesurvival.models.fit import fit
from smesurvival.report import figures as figmod
from smesurvival.report.build import render_html, render_markdown, write_report
from smesurvival.report.render import to_html, to_markdown, to_text
from smesurvival.report.serialize import SYNTHETIC_BANNER, dumps, result_to_dict
from smesurvival.report.survival_tables import (
    all_runs,
    at_risk_table,
    cause_specific_table,
    comparison_step,
    cross_model_verdict_table,
    fmt_ratio,
    hazard_ratio_table,
    incidence_table,
    logrank_line,
    ph_table,
)
from smesurvival.report.tables import (
    Table,
    descriptives_table,
    fmt_num,
    fmt_p,
    implications_table,
    label,
    regression_table,
    sample_flow_table,
    stars,
    verdict_table,
)
from smesurvival.study.result import (
    CauseSpecificFit,
    Descriptives,
    GroupSurvival,
    Implication,
    InteractionCurves,
    LRTest,
    ModelStep,
    Prediction,
    Provenance,
    StudyResult,
    Verdict,
)

VARS = ("export_ratio", "rd_intensity", "innovativeness", "rd_alliance", "log_firm_age",
        "log_employees")
STEPS = (
    ("M1", "Controls", "survived ~ log_firm_age + log_employees + C(industry)"),
    ("M2", "Main effects", "survived ~ log_firm_age + log_employees + C(industry) + export_ratio"
     " + rd_intensity + innovativeness + rd_alliance"),
    ("M3", "Export × R&D intensity", "survived ~ log_firm_age + log_employees + C(industry) + "
     "export_ratio * rd_intensity + innovativeness + rd_alliance"),
    ("M4", "Export × R&D alliance", "survived ~ log_firm_age + log_employees + C(industry) + "
     "export_ratio * rd_intensity + innovativeness + export_ratio * rd_alliance"),
)
HYPOTHESES = (  # hypothesis, term, sign, step, published
    ("H1", "export_ratio", "+", "M2", "supported"),
    ("H2", "rd_intensity", "+", "M2", "not supported"),
    ("H3", "export_ratio:rd_intensity", "+", "M3", "supported"),
    ("H4", "rd_alliance", "+", "M2", "supported"),
    ("H5", "export_ratio:rd_alliance", "+", "M4", "not supported"),
)


# ---- a realistic StudyResult, built by hand from real fits ----------------------------------
def _simulate(n: int = 1600, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({
        "export_ratio": np.clip(rng.beta(0.8, 2.0, n), 0, 1) * rng.binomial(1, 0.6, n),
        "rd_intensity": np.clip(rng.gamma(1.5, 0.05, n), 0, 1),
        "innovativeness": rng.normal(3.2, 0.8, n),
        "rd_alliance": rng.binomial(1, 0.3, n).astype(float),
        "log_firm_age": np.log(rng.uniform(2, 40, n)),
        "log_employees": np.log(rng.uniform(5, 300, n)),
        "industry": rng.choice(["machinery", "electronics", "chemicals", "textiles"], n),
    })
    eta = (1.2 + 1.1 * (df.export_ratio - 0.23) + 0.3 * df.rd_alliance
           + 6.0 * (df.export_ratio - 0.23) * (df.rd_intensity - 0.075)
           + 0.25 * df.log_firm_age - 0.8)
    df["survived"] = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(int)
    return df


def _km(t: np.ndarray, e: np.ndarray) -> tuple[np.ndarray, ...]:
    times = np.unique(t[e == 1])
    s, var, surv, lo, hi = 1.0, 0.0, [], [], []
    for u in times:
        at_risk = (t >= u).sum()
        d = ((t == u) & (e == 1)).sum()
        s *= 1 - d / at_risk
        var += d / (at_risk * (at_risk - d)) if at_risk > d else 0.0
        surv.append(s)
        half = 1.96 * s * np.sqrt(var)
        lo.append(max(0.0, s - half))
        hi.append(min(1.0, s + half))
    return times, np.array(surv), np.array(lo), np.array(hi)


def _group_survival(df: pd.DataFrame, var: str, names: dict[int, str]) -> GroupSurvival:
    rng = np.random.default_rng(3)
    time = np.where(df.survived == 1, 10.0, rng.uniform(0.5, 5.0, len(df)).round(1))
    event = (df.survived == 0).astype(int).to_numpy()
    out: dict[str, list] = {k: [] for k in ("g", "t", "s", "lo", "hi", "n", "e", "w")}
    for code, name in names.items():
        m = (df[var] > 0).astype(int).to_numpy() == code
        t, s, lo, hi = _km(time[m], event[m])
        for k, v in zip(("g", "t", "s", "lo", "hi"), (name, t, s, lo, hi), strict=True):
            out[k].append(v)
        out["n"].append(int(m.sum()))
        out["e"].append(int(event[m].sum()))
        out["w"].append(float(s[t <= 5][-1]))
    return GroupSurvival(var, tuple(out["g"]), tuple(out["t"]), tuple(out["s"]),
                         tuple(out["lo"]), tuple(out["hi"]), tuple(out["n"]), tuple(out["e"]),
                         tuple(out["w"]))


def _descriptives(df: pd.DataFrame) -> Descriptives:
    k = len(VARS)
    corr, corr_p = np.eye(k), np.zeros((k, k))
    for i in range(k):
        for j in range(k):
            if i != j:
                r = stats.pearsonr(df[VARS[i]], df[VARS[j]])
                corr[i, j], corr_p[i, j] = r.statistic, r.pvalue
    x = df[list(VARS)]
    return Descriptives(VARS, tuple(label(v) for v in VARS), x.count().to_numpy(),
                        x.mean().to_numpy(), x.std().to_numpy(), x.min().to_numpy(),
                        x.max().to_numpy(), corr, corr_p)


def _build_result(synthetic: bool = True) -> StudyResult:
    raw = _simulate()
    means = {v: float(raw[v].mean()) for v in ("export_ratio", "rd_intensity")}
    df = raw.assign(**{v: raw[v] - m for v, m in means.items()})
    steps: list[ModelStep] = []
    for name, lab, formula in STEPS:
        f = fit(formula, df, model="logit")
        lr = None
        if steps:
            prev = steps[-1].fit
            chi2 = 2 * (f.loglik - prev.loglik)
            dfree = f.k - prev.k
            lr = LRTest(chi2, dfree, float(stats.chi2.sf(chi2, dfree)))
        steps.append(ModelStep(name, lab, formula, f, lr))
    verdicts = []
    for h, term, sign, step, pub in HYPOTHESES:
        f = next(s.fit for s in steps if s.name == step)
        j = f.index(term)
        est, se = float(f.params[j]), float(f.se[j])
        p = float(stats.norm.sf(est / se))
        verdicts.append(Verdict(h, f"{label(term)} is positively related to survival", term,
                                sign, "one-sided", 0.05, step, est, se, est / se, p,
                                est - 1.96 * se, est + 1.96 * se, p < 0.05 and est > 0, pub))
    last = steps[-1].fit
    base = {v: 0.0 for v in VARS} | {"industry": "machinery"}

    def pred(lab: str, **kw: float) -> Prediction:
        row = pd.DataFrame([base | {k: v - means.get(k, 0.0) for k, v in kw.items()}])
        r = last.predict(row, se_fit=True).iloc[0]
        return Prediction(lab, kw, float(r.estimate), float(r.conf_low), float(r.conf_high))

    imps = (
        Implication("Export share", "owner-managers", pred("Non-exporter", export_ratio=0.0),
                    pred("Exports half of sales", export_ratio=0.5),
                    "Internationalisation is associated with higher survival.",
                    "Firms exporting half of sales have a higher predicted survival."),
        Implication("R&D alliances", "policy makers", pred("No alliance", rd_alliance=0.0),
                    pred("R&D alliance", rd_alliance=1.0),
                    "R&D alliances improve survival chances.",
                    "Firms with an R&D alliance have a higher predicted survival."),
    )
    grid = np.linspace(0, 1, 41)
    rd_sd = float(raw.rd_intensity.std())
    levels = np.array([means["rd_intensity"] - rd_sd, means["rd_intensity"],
                       means["rd_intensity"] + rd_sd])
    prob, lo, hi = [], [], []
    for lev in levels:
        nd = pd.DataFrame([base] * len(grid)).assign(
            export_ratio=grid - means["export_ratio"], rd_intensity=lev - means["rd_intensity"])
        p = steps[2].fit.predict(nd, se_fit=True)
        prob.append(p.estimate.to_numpy())
        lo.append(p.conf_low.to_numpy())
        hi.append(p.conf_high.to_numpy())
    curves = InteractionCurves("export_ratio", "rd_intensity", grid,
                               ("low (−1 SD)", "mean", "high (+1 SD)"), levels,
                               np.array(prob), np.array(lo), np.array(hi), "M3")
    flow = SampleFlow(1650).drop("missing value in export_ratio", 38, "missing").drop(
        "failed rule: employees > 0", 12, "validation")
    return StudyResult(
        study="lee2012", title="SME survival: internationalization, technology and alliances",
        reference="Lee, Kelley, Lee & Lee (2012), Journal of Small Business Management 50(1)",
        spec=None,
        provenance=Provenance("built-in synthetic cohort" if synthetic else "firms.csv",
                              "ab" * 32, 1650, synthetic, {"seed": 7, "n": 1650} if synthetic
                              else None, "0.1.0"),
        flow=flow, validation_warnings=("12 firms report zero employees",),
        outcome="survived", window_years=5, n_events=int((df.survived == 0).sum()),
        centering=means, descriptives=_descriptives(raw), steps=tuple(steps),
        verdicts=tuple(verdicts), implications=imps, curves=curves,
        survival_by_group=(_group_survival(raw, "export_ratio", {0: "Non-exporters",
                                                                 1: "Exporters"}),
                           _group_survival(raw, "rd_alliance", {0: "No alliance",
                                                                1: "R&D alliance"})),
        caveats=("The cohort is simulated from parameters calibrated to the published tables.",),
    )


@pytest.fixture(scope="module")
def result() -> StudyResult:
    return _build_result()


@pytest.fixture(scope="module")
def report(result: StudyResult, tmp_path_factory: pytest.TempPathFactory):
    return write_report(result, tmp_path_factory.mktemp("rep") / "out")


def _md_table_blocks(md: str) -> list[list[str]]:
    blocks, cur = [], []
    for line in md.splitlines():
        if line.startswith("|"):
            cur.append(line)
        elif cur:
            blocks.append(cur)
            cur = []
    return blocks + ([cur] if cur else [])


def _md_cells(line: str) -> int:
    return len(re.split(r"(?<!\\)\|", line.strip())) - 2


# ---- formatting -------------------------------------------------------------------------------
def test_formatting_helpers() -> None:
    assert fmt_num(0.12345) == "0.123" and fmt_num(-0.0001) == "0.000"
    assert fmt_num(float("nan")) == "—"
    assert fmt_p(0.0004) == "<.001" and fmt_p(0.0234) == ".023"
    assert [stars(p) for p in (0.0005, 0.005, 0.03, 0.07, 0.2)] == ["***", "**", "*", "†", ""]


def test_labels() -> None:
    assert label("export_ratio") == "Export ratio (export sales / sales)"
    assert label("export_ratio:rd_intensity") == "Export ratio × R&D intensity"
    assert label("Intercept") == "Constant"
    assert label("C(industry)[T.textiles]") == "Industry: textiles"
    assert label("mystery_var") == "mystery_var"


# ---- tables -----------------------------------------------------------------------------------
def test_regression_table_numbers_and_stars(result: StudyResult) -> None:
    t = regression_table(result.steps)
    m3 = result.steps[2].fit
    j = m3.index("export_ratio:rd_intensity")
    rows = {r[0]: i for i, r in enumerate(t.rows)}
    i = rows["Export ratio × R&D intensity"]
    assert t.rows[i][3] == fmt_num(m3.params[j]) + stars(m3.pvalues[j])
    assert t.rows[i + 1][3] == f"({m3.se[j]:.3f})"  # SE below
    assert t.rows[i][1] == t.rows[i][2] == ""  # not in models 1-2
    # every coefficient's stars follow its two-sided p-value
    for s_i, step in enumerate(result.steps, start=1):
        for term, b, p in zip(step.fit.terms, step.fit.params, step.fit.pvalues, strict=True):
            if term.startswith("C(industry)"):
                continue
            assert t.rows[rows[label(term)]][s_i] == f"{fmt_num(b)}{stars(p)}"


def test_regression_table_collapses_industry_and_bottom_rows(result: StudyResult) -> None:
    t = regression_table(result.steps, centering=result.centering)
    first = [r[0] for r in t.rows]
    assert not any("industry)" in c for c in first)
    assert t.rows[first.index("Industry dummies")][1:] == ("Yes",) * 4
    f2 = result.steps[1].fit
    assert t.rows[first.index("N (firms)")][2] == f"{f2.nobs:,}"
    assert t.rows[first.index("Exits (y = 0)")][2] == f"{int(f2.nobs - f2.n_events):,}"
    assert t.rows[first.index("Log-likelihood")][2] == f"{f2.loglik:.3f}"
    lr = result.steps[1].lr_vs_previous
    assert t.rows[first.index("Δχ² (df) vs previous model")][1] == "—"
    assert t.rows[first.index("Δχ² (df) vs previous model")][2].startswith(f"{lr.chi2:.3f}")
    assert t.rows[first.index("AIC")][4] == f"{result.steps[3].fit.aic:.3f}"
    assert first.index("Constant") < first.index("N (firms)")
    assert any("centred" in n for n in t.notes) and any("two-sided" in n for n in t.notes)


def test_descriptives_table(result: StudyResult) -> None:
    t = descriptives_table(result.descriptives)
    d = result.descriptives
    assert t.columns[:6] == ("Variable", "N", "Mean", "SD", "Min", "Max")
    assert len(t.columns) == 6 + len(d.variables) - 1
    assert t.rows[0][2] == f"{d.mean[0]:.3f}"
    assert t.rows[1][6].startswith(f"{d.corr[1, 0]:.3f}")
    assert t.rows[0][6] == ""  # upper triangle empty
    p = d.corr_p[1, 0]
    assert t.rows[1][6].endswith("**" if p < .01 else "*" if p < .05 else "3")
    assert "p < .05" in t.notes[0]
    assert not any("***" in c for row in t.rows for c in row)  # two levels only in Table 1


def test_regression_table_se_beside(result: StudyResult) -> None:
    t = regression_table(result.steps, se_position="beside")
    f = result.steps[0].fit
    j = f.index("log_firm_age")
    row = next(r for r in t.rows if r[0] == label("log_firm_age"))
    assert row[1] == f"{fmt_num(f.params[j])}{stars(f.pvalues[j])} ({f.se[j]:.3f})"
    assert "" not in [r[0] for r in t.rows]  # no separate SE rows


def test_flow_verdict_and_implication_tables(result: StudyResult) -> None:
    ft = sample_flow_table(result.flow)
    assert ft.rows[0] == ("Rows read", "", "1,650") and ft.rows[-1][2] == "1,600"
    vt = verdict_table(result.verdicts)
    v = result.verdicts[0]
    assert vt.rows[0][4] == f"{v.estimate:.3f} ({v.std_error:.3f})"
    assert "one-sided" in vt.rows[0][5]
    assert vt.rows[0][10] == ("✓" if v.agrees_with_published else "✗")
    assert vt.rows[1][9] == "Not supported"
    it = implications_table(result.implications)
    imp = result.implications[0]
    assert it.rows[0][4] == f"{imp.high.probability - imp.low.probability:+.3f}"
    assert it.rows[0][1] == "Export ratio 0.000 → 0.500"
    assert it.rows[0][2] == (f"{imp.low.probability:.3f} "
                             f"[{imp.low.conf_low:.3f}, {imp.low.conf_high:.3f}]")


def test_table_rejects_ragged_rows() -> None:
    with pytest.raises(ValueError, match="row 0"):
        Table("t", ("a", "b"), (("1",),))


# ---- renderers --------------------------------------------------------------------------------
def test_markdown_tables_have_consistent_columns(result: StudyResult) -> None:
    for t in (regression_table(result.steps), descriptives_table(result.descriptives),
              verdict_table(result.verdicts), sample_flow_table(result.flow),
              implications_table(result.implications)):
        (block,) = _md_table_blocks(to_markdown(t))
        assert {_md_cells(line) for line in block} == {len(t.columns)}


def test_markdown_escapes_pipes_and_text_aligns() -> None:
    t = Table("T", ("a", "b"), (("x|y", "1.000"), ("z", "22.000")), notes=("n",))
    (block,) = _md_table_blocks(to_markdown(t))
    assert all(_md_cells(line) == 2 for line in block)
    lines = to_text(t).splitlines()
    assert lines[-2].startswith("=") and lines[-1] == "Note. n"
    assert len({len(x) for x in lines[1:-1] if x.startswith(("=", "-"))}) == 1


def test_html_table_escapes_and_spans(result: StudyResult) -> None:
    h = to_html(descriptives_table(result.descriptives))
    assert 'colspan="5"' in h and "R&amp;D intensity" in h and "<caption>" in h
    assert to_html(Table("x", ("<b>",), (("<i>",),))).count("<i>") == 0


# ---- figures ----------------------------------------------------------------------------------
def _texts(fig) -> list[str]:
    out = [t.get_text() for t in fig.texts]
    for ax in fig.axes:
        out += [t.get_text() for t in ax.texts]
    return out


@pytest.mark.parametrize("synthetic", [True, False])
def test_figures_mark_synthetic(result: StudyResult, synthetic: bool) -> None:
    f1 = figmod.interaction_figure(result.curves, synthetic, window_years=5)
    f2 = figmod.group_survival_figure(result.survival_by_group[0], synthetic, window_years=5)
    for f in (f1, f2):
        assert ("SYNTHETIC DATA" in _texts(f)) is synthetic
    ax = f2.axes[0]
    assert ax.get_ylabel() == "Share of firms still operating"
    assert ax.get_xlabel() == "Years since survey"
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    gs = result.survival_by_group[0]
    assert legend[0] == f"{gs.groups[0]} (N = {gs.n[0]:,}, exits = {gs.n_events[0]:,})"
    assert f1.axes[0].get_xlabel() == "Export ratio (export sales / sales)"
    assert len(f1.axes[0].get_legend().get_texts()) == 3


def test_save_writes_png_and_svg(result: StudyResult, tmp_path: Path) -> None:
    png, svg = figmod.save(figmod.interaction_figure(result.curves, True), tmp_path, "x")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "SYNTHETIC DATA" in svg.read_text()


# ---- the report folder ------------------------------------------------------------------------
def test_report_files(report) -> None:
    assert report.markdown.is_file() and report.html.is_file() and report.json.is_file()
    names = sorted(p.name for p in report.figures)
    assert "interaction.png" in names and "interaction.svg" in names
    assert "survival_by_rd_alliance.png" in names
    assert all(p.is_file() for p in report.figures)
    assert not [p for p in report.out_dir.parent.iterdir() if p.name.startswith(".out.")]


def test_html_is_self_contained(report, result: StudyResult) -> None:
    h = report.html.read_text()
    assert "data:image/png;base64," in h
    assert h.count("data:image/png;base64,") == 1 + len(result.survival_by_group)
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", h, re.I)
    assert "<link" not in h and "@import" not in h
    assert SYNTHETIC_BANNER in h and "synthetic-banner" in h
    assert result.caveats[0] in h


def test_markdown_report(report, result: StudyResult) -> None:
    md = report.markdown.read_text()
    assert SYNTHETIC_BANNER in md
    for heading in ("Sample flow", "Hierarchical logit", "verdicts beside the 2012 study",
                    "Predicted survival by export ratio and R&D intensity", "Implications in plain words",
                    "Validation warnings",
                    "Methods note"):
        assert heading in md
    assert "](figures/interaction.png)" in md
    assert result.implications[0].text in md and result.implications[0].published in md
    assert "not causal effects" in md
    for block in _md_table_blocks(md):
        assert len({_md_cells(line) for line in block}) == 1


def test_results_json(report, result: StudyResult) -> None:
    d = json.loads(report.json.read_text())
    assert d["synthetic"] is True and d["label"] == SYNTHETIC_BANNER
    assert d["provenance"]["sha256"] == "ab" * 32
    assert [v["hypothesis"] for v in d["verdicts"]] == [v.hypothesis for v in result.verdicts]
    assert d["verdicts"][0]["estimate"] == pytest.approx(result.verdicts[0].estimate)
    step = d["steps"][2]
    assert "design_spec" not in step["fit"]
    assert step["fit"]["params"]["export_ratio:rd_intensity"] == pytest.approx(
        result.steps[2].fit.params[result.steps[2].fit.index("export_ratio:rd_intensity")])
    assert len(d["lr_tests"]) == 3 and d["curves"]["step"] == "M3"
    assert len(d["curves"]["probability"]) == 3
    assert d["sample_flow"]["n_used"] == 1600


def test_result_to_dict_nan_becomes_null(result: StudyResult) -> None:
    v = dataclasses.replace(result.verdicts[0], conf_low=float("nan"))
    d = result_to_dict(dataclasses.replace(result, verdicts=(v,)))
    assert d["verdicts"][0]["conf_low"] is None
    json.dumps(d, allow_nan=False)


def test_observed_data_has_no_synthetic_marks(tmp_path: Path) -> None:
    res = _build_result(synthetic=False)
    files = write_report(res, tmp_path / "real")
    assert "SYNTHETIC" not in files.markdown.read_text()
    assert "SYNTHETIC" not in files.html.read_text()
    d = json.loads(files.json.read_text())
    assert d["synthetic"] is False and d["label"].startswith("Observed data")
    assert "SYNTHETIC DATA" not in (files.out_dir / "figures" / "interaction.svg").read_text()


def test_failure_leaves_no_folder(result: StudyResult, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args, **kwargs):
        raise RuntimeError("figure failed")

    monkeypatch.setattr(figmod, "group_survival_figure", boom)
    with pytest.raises(RuntimeError, match="figure failed"):
        write_report(result, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_failure_keeps_previous_report(result: StudyResult, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    write_report(result, out)
    before = (out / "results.json").read_text()
    monkeypatch.setattr(figmod, "interaction_figure",
                        lambda *a, **k: (_ for _ in ()).throw(RuntimeError("x")))
    with pytest.raises(RuntimeError):
        write_report(result, out)
    assert (out / "results.json").read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_existing_report_is_replaced(result: StudyResult, tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "figures").mkdir(parents=True)
    (out / "report.md").write_text("old")
    (out / "figures" / "stale.png").write_bytes(b"old")
    write_report(result, out)
    assert (out / "report.md").read_text() != "old"
    assert not (out / "figures" / "stale.png").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_foreign_folder_is_not_deleted(result: StudyResult, tmp_path: Path) -> None:
    from smesurvival.errors import UsageError

    (tmp_path / "thesis.docx").write_text("precious")
    with pytest.raises(UsageError, match="thesis.docx"):
        write_report(result, tmp_path)
    assert (tmp_path / "thesis.docx").read_text() == "precious"


def test_real_run_renders(tmp_path: Path) -> None:
    study = pytest.importorskip("smesurvival.study")
    if not (hasattr(study, "run_study") and hasattr(study, "load_spec")):
        pytest.skip("run_study / load_spec not available yet")
    res = study.run_study(study.load_spec("lee2012"))
    files = write_report(res, tmp_path / "lee2012")
    d = json.loads(files.json.read_text())
    assert d["study"] == "lee2012" and len(d["verdicts"]) == len(res.verdicts)
    assert ("SYNTHETIC DATA" in files.html.read_text()) is res.synthetic


# ---- time to exit: survival curves, robustness, PH, exit routes ------------------------------

Z95 = stats.norm.ppf(0.975)


@pytest.fixture(scope="module")
def real() -> StudyResult:
    from smesurvival.study import run_study

    return run_study("lee2012")


@pytest.fixture(scope="module")
def real_report(real: StudyResult, tmp_path_factory: pytest.TempPathFactory):
    return write_report(real, tmp_path_factory.mktemp("real") / "out")


def _ratio_cell(b: float, se: float) -> str:
    """exp(b) [exp(b ± z·se)], formatted independently of the report code."""
    return f"{math.exp(b):.3f} [{math.exp(b - Z95 * se):.3f}, {math.exp(b + Z95 * se):.3f}]"


def _row(t: Table, first: str) -> tuple[str, ...]:
    return next(r for r in t.rows if r[0] == first)


def test_real_result_has_time_to_exit_parts(real: StudyResult) -> None:
    assert [r.model for r in real.robustness] == ["cox", "discrete"]
    assert real.ph_check is not None and real.incidence is not None and real.cause_specific
    assert [r.model for r in all_runs(real)] == ["logit", "cox", "discrete"]
    assert comparison_step(real) == "M6"


def test_at_risk_table_and_logrank_line(real: StudyResult, real_report) -> None:
    md = real_report.markdown.read_text()
    html = real_report.html.read_text()
    for gs in real.survival_by_group:
        t = at_risk_table(gs)
        assert t.columns == ("Group", *(f"{y:g}" for y in gs.risk_times))
        for row, name, counts in zip(t.rows, gs.groups, gs.at_risk, strict=True):
            assert row[0] == name
            assert row[1:] == tuple(f"{int(c):,}" for c in counts)
        line = logrank_line(gs)
        assert f"χ² = {gs.logrank_chi2:.3f}, df = {gs.logrank_df}" in line
        p = gs.logrank_p
        assert ("p < .001" if p < .001 else f"p = {p:.3f}".replace("= 0.", "= .")) in line
        assert line in md and html_escape(line) in html
        assert to_markdown(t) in md
    assert "Survival curves" in md
    # the at-risk table comes right after its figure
    i_fig = md.index("figures/survival_by_exporter.png")
    assert i_fig < md.index("Numbers at risk by exporter") < md.index("survival_by_rd_alliance.png")


def test_at_risk_absent_without_numbers(result: StudyResult) -> None:
    assert at_risk_table(result.survival_by_group[0]) is None
    assert logrank_line(result.survival_by_group[0]) is None


def test_hazard_ratio_table_numbers(real: StudyResult) -> None:
    runs = all_runs(real)
    t = hazard_ratio_table(runs, "M6")
    assert t.columns == ("", "Logit OR [95% CI]", "p", "Cox HR [95% CI]", "p",
                         "Discrete-time HR [95% CI]", "p")
    logit, cox, disc = (next(s.fit for s in r.steps if s.name == "M6") for r in runs)
    row = _row(t, label("export_ratio"))
    for col, f in ((1, logit), (3, cox), (5, disc)):
        j = f.index("export_ratio")
        assert row[col] == _ratio_cell(f.params[j], f.se[j])
        assert row[col + 1] == fmt_p(f.pvalues[j])
    # the logit column is the odds ratio the fit itself reports
    tidy = logit.tidy().set_index("term")
    assert row[1].startswith(f"{tidy.loc['export_ratio', 'exp_estimate']:.3f} [")
    # extreme interaction ratios are written in scientific notation, not as 500000.000
    inter = _row(t, label("export_ratio:rd_intensity"))
    j = cox.index("export_ratio:rd_intensity")
    assert inter[3].startswith(fmt_ratio(math.exp(cox.params[j])) + " [")
    assert fmt_ratio(514883.78) == "5.15e+05" and fmt_ratio(0.656) == "0.656"
    firsts = [r[0] for r in t.rows]
    assert _row(t, "Industry dummies")[1::2] == ("Yes",) * 3
    assert not any("C(" in c or c == "Constant" for c in firsts)
    assert _row(t, "N (firms / firm-years)")[1::2] == (
        f"{logit.nobs:,}", f"{cox.nobs:,}", f"{disc.extra['n_subjects']:,} / {disc.nobs:,}")
    assert _row(t, "Exits (events)")[1::2] == (
        f"{int(logit.nobs - logit.n_events):,}", f"{int(cox.n_events):,}",
        f"{int(disc.n_events):,}")
    assert _row(t, "Concordance (C)")[3] == f"{cox.extra['concordance']['c_index']:.3f}"
    assert _row(t, "Concordance (C)")[1] == _row(t, "Concordance (C)")[5] == "—"
    assert _row(t, "Log-likelihood")[1::2] == tuple(f"{f.loglik:.3f}" for f in (logit, cox, disc))
    notes = " ".join(t.notes)
    assert "OR > 1 = better survival" in notes and "HR < 1 = lower exit hazard" in notes


def _flip(run, hypothesis: str):
    vs = tuple(dataclasses.replace(v, supported=not v.supported) if v.hypothesis == hypothesis
               else v for v in run.verdicts)
    return dataclasses.replace(run, verdicts=vs)


def test_cross_model_table_marks_disagreement(real: StudyResult) -> None:
    cox, disc = real.robustness
    res = dataclasses.replace(real, robustness=(_flip(_flip(cox, "H2a"), "H4"), _flip(disc, "H4")))
    t = cross_model_verdict_table(all_runs(res))
    assert t.columns == ("Hypothesis", "2012 study", "Logit (main)", "Cox", "Discrete-time",
                         "Holds across models")
    rows = {r[0].split()[0]: r for r in t.rows}
    assert list(rows) == [v.hypothesis for v in real.verdicts]
    main = {v.hypothesis: v.supported for v in real.verdicts}
    assert rows["H2a"][3] == ("Supported" if not main["H2a"] else "Not supported")
    assert rows["H2a"][4] == ("Supported" if main["H2a"] else "Not supported")
    assert rows["H2a"][-1] == "✗ differs under Cox"
    assert rows["H4"][-1] == "✗ differs under Cox, Discrete-time"
    for h in ("H1", "H2b", "H3a", "H3b", "H5"):
        assert rows[h][-1] == "✓"
    assert rows["H3a"][0] == "H3a (Export ratio × R&D intensity)"
    assert any("negative coefficient" in n for n in t.notes)
    # the unmodified result agrees everywhere
    t0 = cross_model_verdict_table(all_runs(real))
    assert all(r[-1] == "✓" for r in t0.rows)


def test_ph_table(real: StudyResult) -> None:
    ph = real.ph_check
    t = ph_table(ph)
    assert len(t.rows) == len(ph.terms) + 1
    for row, term, c, p in zip(t.rows, ph.terms, ph.chisq, ph.p_value, strict=False):
        assert row[0] == label(term) and row[1] == f"{c:.3f}" and row[3] == fmt_p(p)
        assert bool(row[4]) is bool(p < ph.alpha)
    assert t.rows[-1] == ("Global test", f"{ph.global_chisq:.3f}", str(ph.global_df),
                          fmt_p(ph.global_p), "⚑ yes" if ph.global_p < ph.alpha else "")


def test_incidence_and_cause_specific_tables(real: StudyResult) -> None:
    inc = real.incidence
    t = incidence_table(inc, real.window_years)
    for row, et, n, at_w in zip(t.rows, inc.exit_types, inc.n_events, inc.at_window,
                                strict=True):
        assert row[0].lower().startswith(et) and row[1] == f"{n:,}"
        assert row[2].startswith(f"{100 * at_w:.1f}% [")
    cs = cause_specific_table(real.cause_specific)
    assert cs.columns == ("", "Failure HR [95% CI]", "p", "Acquisition HR [95% CI]", "p")
    fail = real.cause_specific[0].fit
    j = fail.index("export_ratio")
    row = _row(cs, label("export_ratio"))
    assert row[1] == _ratio_cell(fail.params[j], fail.se[j]) and row[2] == fmt_p(fail.pvalues[j])
    assert _row(cs, "Exits of this route (events)")[1::2] == tuple(
        f"{c.n_events:,}" for c in real.cause_specific)
    # a route that could not be estimated: dashes, and the note instead
    broken = CauseSpecificFit("acquisition", "M2", None, 2, "not estimable with 2 exits")
    cs2 = cause_specific_table((real.cause_specific[0], broken))
    assert _row(cs2, label("export_ratio"))[3] == "—"
    assert "Acquisition: not estimable with 2 exits." in cs2.notes
    assert cause_specific_table(()) is None


def test_real_report_sections(real: StudyResult, real_report) -> None:
    md = real_report.markdown.read_text()
    html = real_report.html.read_text()
    for heading in ("Survival curves", "Time to exit: robustness", "Proportional hazards",
                    "Exit routes", "Hierarchical logit models"):
        assert f"## {heading}" in md and f"<h2>{heading}</h2>" in html
    assert real.ph_check.note in md and html_escape(real.ph_check.note) in html
    assert "An acquired firm has not failed" in md and "An acquired firm has not failed" in html
    assert "](figures/exit_routes.png)" in md
    n_effect_figs = 3 if real.effects is not None and real.effects.interactions else 0
    assert html.count("data:image/png;base64,") == 2 + len(real.survival_by_group) + n_effect_figs
    for block in _md_table_blocks(md):
        assert len({_md_cells(line) for line in block}) == 1
    methods = md[md.index("## Methods note"):]
    for phrase in ("Efron", "complementary log-log", "clustered by firm", "month precision",
                   "half a month", "negative hazard coefficients"):
        assert phrase in methods
    svg = (real_report.out_dir / "figures" / "exit_routes.svg").read_text()
    assert ("SYNTHETIC DATA" in svg) is real.synthetic


def test_absent_sections_are_omitted(report, real: StudyResult) -> None:
    md, html = report.markdown.read_text(), report.html.read_text()
    for text in ("Numbers at risk", "Log-rank", "Time to exit: robustness",
                 "Proportional hazards", "Exit routes", "Time-to-exit models"):
        assert text not in md and text not in html
    assert not (report.out_dir / "figures" / "exit_routes.png").exists()
    bare = dataclasses.replace(real, robustness=(), ph_check=None, incidence=None,
                               cause_specific=())
    md2 = render_markdown(bare)
    for text in ("Time to exit: robustness", "Proportional hazards", "Exit routes"):
        assert text not in md2
    assert "Numbers at risk" in md2  # the KM numbers are still there
    # cause-specific fits without incidence: the section stays, without figure or CIF table
    part = dataclasses.replace(real, incidence=None)
    md3 = render_markdown(part)
    assert "## Exit routes" in md3 and "Cumulative incidence at" not in md3
    assert "Failure HR [95% CI]" in md3


def test_hazard_main_model_is_not_called_logit(real: StudyResult) -> None:
    cox, disc = real.robustness
    res = dataclasses.replace(real, steps=cox.steps, verdicts=cox.verdicts, robustness=(disc,),
                              curves=None, implications=(), effects=None, mediation=None)
    md, html = render_markdown(res), render_html(res)
    assert "Hierarchical logit" not in md and "log-odds" not in md
    assert "## Hierarchical Cox models" in md and "<h2>Hierarchical Cox models</h2>" in html
    assert "Table 2. Hierarchical Cox models of time to exit" in md
    assert "Partial log-likelihood" in md
    t = cross_model_verdict_table(all_runs(res))
    assert t.columns[2:4] == ("Cox (main)", "Discrete-time")
    assert "expected sign of the coefficient is flipped" in md


def test_incidence_figure(real: StudyResult) -> None:
    for synthetic in (True, False):
        fig = figmod.incidence_figure(real.incidence, synthetic, window_years=5)
        assert ("SYNTHETIC DATA" in _texts(fig)) is synthetic
        ax = fig.axes[0]
        assert ax.get_xlabel() == "Years since survey"
        assert ax.get_ylabel().startswith("Share of firms that exited by")
        legend = [t.get_text() for t in ax.get_legend().get_texts()]
        assert legend == [f"{n} (exits = {k:,})" for n, k in
                          zip(("Failure", "Acquisition", "Other exit"),
                              real.incidence.n_events, strict=True)]


def test_results_json_new_keys_round_trip(real: StudyResult, real_report) -> None:
    d = json.loads(real_report.json.read_text())
    assert d["model"] == "logit"
    assert [r["model"] for r in d["robustness"]] == ["cox", "discrete"]
    cox = d["robustness"][0]
    assert [s["name"] for s in cox["steps"]] == [s.name for s in real.robustness[0].steps]
    assert "design_spec" not in cox["steps"][0]["fit"]
    f = real.robustness[0].steps[-1].fit
    assert cox["steps"][-1]["fit"]["params"]["export_ratio"] == pytest.approx(
        f.params[f.index("export_ratio")])
    assert cox["verdicts"][0]["scale"] == "hazard" and cox["verdicts"][0]["verdict"] in (
        "supported", "not supported")
    cs = d["cause_specific"]
    assert [c["exit_type"] for c in cs] == ["failure", "acquisition"]
    assert cs[0]["n_events"] == real.cause_specific[0].n_events
    assert "design_spec" not in cs[0]["fit"]
    assert d["ph_check"]["terms"] == list(real.ph_check.terms)
    assert d["ph_check"]["p_value"] == pytest.approx(list(real.ph_check.p_value))
    assert d["incidence"]["exit_types"] == list(real.incidence.exit_types)
    assert d["incidence"]["estimate"][0] == pytest.approx(list(real.incidence.estimate[0]))
    g = d["survival_by_group"][0]
    gs = real.survival_by_group[0]
    assert g["risk_times"] == list(gs.risk_times) and g["at_risk"][1] == list(gs.at_risk[1])
    assert g["logrank_p"] == pytest.approx(gs.logrank_p) and g["logrank_df"] == gs.logrank_df
    # one serialiser: the file is result_to_dict, and it round-trips through JSON unchanged
    assert d == json.loads(dumps(real))
    assert json.loads(dumps(real)) == result_to_dict(real)
    # NaN -> null in the new parts too
    ph = dataclasses.replace(real.ph_check, global_p=float("nan"))
    d2 = result_to_dict(dataclasses.replace(real, ph_check=ph))
    assert d2["ph_check"]["global_p"] is None
    json.dumps(d2, allow_nan=False)
    # absent parts: empty lists and nulls
    d3 = result_to_dict(dataclasses.replace(real, robustness=(), cause_specific=(),
                                            ph_check=None, incidence=None))
    assert d3["robustness"] == [] and d3["cause_specific"] == []
    assert d3["ph_check"] is None and d3["incidence"] is None
