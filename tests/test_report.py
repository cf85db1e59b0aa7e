"""Tests of the report layer: tables hold the right numbers, renderers agree, the report folder
is self-contained, honest about synthetic data and written all-or-nothing."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from smesurvival.data.flow import SampleFlow
from smesurvival.models.fit import fit
from smesurvival.report import figures as figmod
from smesurvival.report.build import write_report
from smesurvival.report.render import to_html, to_markdown, to_text
from smesurvival.report.serialize import SYNTHETIC_BANNER, result_to_dict
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
                    "Figures", "Implications in plain words", "Validation warnings",
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
