"""The ``[effects]`` section: interactions reported on the scale people read (DESIGN.md §6).

A logit interaction coefficient is not the interaction effect on survival probability (Ai &
Norton 2003; Hoetker 2007). For the focal variable this module computes its average marginal
effect (AME) with delta-method and, if asked, pairs-bootstrap (percentile, BCa) intervals; and
for each moderator: simple slopes of the focal variable at moderator mean -/+ 1 SD (0/1 for a
binary moderator), the average Ai–Norton interaction effect and Johnson–Neyman regions on the
link and probability scales. Verdicts stay on the coefficients (as the 2012 study); this is
the evidence set beside them.

Everything is computed on the centred data the steps were fitted on and reported in the
measures' own units (the centring means are added back).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd

from smesurvival.inference.ai_norton import ai_norton
from smesurvival.inference.effects import avg_predictions, avg_slopes, conditional_predictions
from smesurvival.inference.effects_base import (
    data_step,
    encode,
    link_scale,
    model_link,
    sample_rows,
)
from smesurvival.inference.effects_result import Effects
from smesurvival.inference.johnson_neyman import JohnsonNeyman, johnson_neyman
from smesurvival.labels import short_label
from smesurvival.models.result import FitResult
from smesurvival.study.result import (
    AiNortonFirms,
    BootstrapInfo,
    ConditionalCurves,
    EffectRow,
    EffectsSection,
    InteractionEvidence,
    JNRegion,
    ModelStep,
)
from smesurvival.study.spec import StudySpec

Say = Callable[[str], None]


def text_name(var: str) -> str:
    """A variable's short label for running text ("export ratio", "R&D intensity")."""
    s = short_label(var)
    return s if s[:2].isupper() else s[:1].lower() + s[1:]


def is_binary_measure(col: pd.Series) -> bool:
    """0/1 in the measures' own units (before centring)."""
    vals = pd.unique(col.dropna())
    return len(vals) > 0 and set(np.asarray(vals, dtype=float).tolist()) <= {0.0, 1.0}


def effect_row(eff: Effects, i: int, label: str, at: dict[str, float] | None = None) -> EffectRow:
    """Row ``i`` of an Effects value as an :class:`EffectRow`."""
    return EffectRow(
        term=str(eff.labels["term"].iloc[i]), label=label, estimate=float(eff.estimate[i]),
        std_error=float(eff.std_error[i]), conf_low=float(eff.conf_low[i]),
        conf_high=float(eff.conf_high[i]), p_value=float(eff.p_value[i]), at=dict(at or {}),
    )


def _fit(steps: tuple[ModelStep, ...], name: str) -> FitResult:
    return next(s for s in steps if s.name == name).fit


def _interaction_step(spec: StudySpec, focal: str, mod: str) -> tuple[str, str, str | None]:
    """(step, term, hypothesis id) of the focal x moderator interaction."""
    es = spec.effects
    assert es is not None
    terms = (f"{focal}:{mod}", f"{mod}:{focal}")
    hyp = next((h for h in spec.hypotheses if h.term in terms), None)
    if es.step is not None:
        step = spec.step(es.step)
    elif hyp is not None:
        step = spec.step(hyp.step)
    else:
        step = next(s for s in spec.steps if any(t in s.terms for t in terms))
    term = next(t for t in terms if t in step.terms)
    return step.name, term, None if hyp is None else hyp.id


# ---- the focal variable's AME ------------------------------------------------------------------
def _ame_statistic(fit: FitResult, rows: pd.DataFrame, focal: str, binary: bool,
                   centre: float) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """Vectorised AME of ``focal`` as a function of (B, p) coefficients and (B, n) weights,
    computed exactly as :func:`avg_slopes` does (same step, same rows)."""
    sc = link_scale(model_link(fit) or "logit")
    if binary:
        Xa = encode(fit, rows.assign(**{focal: 1.0 - centre}))
        Xb = encode(fit, rows.assign(**{focal: 0.0 - centre}))
        div = 1.0
    else:
        h = data_step(rows[focal], None)
        x = rows[focal].to_numpy(dtype=float)
        Xa = encode(fit, rows.assign(**{focal: x + h}))
        Xb = encode(fit, rows.assign(**{focal: x - h}))
        div = 2.0 * h

    def stat(P: np.ndarray, W: np.ndarray) -> np.ndarray:
        d = (sc.f(P @ Xa.T) - sc.f(P @ Xb.T)) / div
        return ((d * W).sum(axis=1) / W.sum(axis=1))[:, None]

    return stat


def _ame(spec: StudySpec, fit: FitResult, data: pd.DataFrame, focal: str, binary: bool,
         centre: float) -> tuple[EffectRow, BootstrapInfo | None]:
    es = spec.effects
    assert es is not None
    if binary:
        eff = avg_predictions(fit, data, at={focal: [0.0 - centre, 1.0 - centre]}).contrast(1, 0)
        lab = f"{short_label(focal)}: 1 vs 0"
    else:
        eff = avg_slopes(fit, data, focal)
        lab = f"{short_label(focal)} (per unit)"
    row = effect_row(eff, 0, lab)
    if es.bootstrap <= 0:
        return row, None
    from dataclasses import replace

    from smesurvival.inference.bootstrap import bootstrap

    rows, _ = sample_rows(fit, data)
    stat = _ame_statistic(fit, rows, focal, binary, centre)
    cluster = spec.cluster if spec.vcov == "cluster" else None
    res = bootstrap(stat, fit, rows, B=es.bootstrap, seed=es.seed, vectorized=True,
                    names=("ame",), weights=spec.weights, cluster=cluster, jackknife="auto")
    perc = res.ci(spec.conf_level, "percentile")[0]
    bca = res.ci(spec.conf_level, "bca")[0]
    row = replace(row, boot_se=float(res.se[0]), percentile_low=float(perc[0]),
                  percentile_high=float(perc[1]), bca_low=float(bca[0]), bca_high=float(bca[1]))
    return row, BootstrapInfo(res.B, es.seed, res.n_failed, res.jackknife_method,
                              "cluster" if cluster else "pairs")


# ---- one interaction ---------------------------------------------------------------------------
def _moderator_values(a: pd.DataFrame, mod: str, binary: bool) -> tuple[list[float], list[str]]:
    """Uncentred moderator values and labels: 0/1, or mean -/+ 1 SD (and the mean)."""
    if binary:
        return [0.0, 1.0], ["0 (no)", "1 (yes)"]
    m, s = float(a[mod].mean()), float(a[mod].std(ddof=1))
    return [m - s, m, m + s], ["mean − 1 SD", "mean", "mean + 1 SD"]


def _focal_slopes(fit: FitResult, data: pd.DataFrame, focal: str, focal_binary: bool,
                  f_centre: float, mod: str, centred_vals: list[float]) -> Effects:
    """The focal variable's AME with the moderator set to each value for every firm."""
    if not focal_binary:
        return avg_slopes(fit, data, focal, at={mod: centred_vals})
    from smesurvival.inference.effects_result import concat_effects

    return concat_effects([
        avg_predictions(fit, data, at={mod: [v], focal: [0.0 - f_centre, 1.0 - f_centre]})
        .contrast(1, 0) for v in centred_vals])


def _ai_norton(fit: FitResult, data: pd.DataFrame, focal: str, mod: str, fb: bool, mb: bool,
               fc: float, mc: float) -> tuple[Effects, str, AiNortonFirms | None]:
    """The average Ai–Norton interaction effect (and the per-firm values when both are
    continuous). With a binary variable the data are centred, so its off/on values are
    ``-centre``/``1 - centre``: the derivative of the discrete change is then the difference of
    the other variable's AMEs at those values (the same quantity Ai & Norton define)."""
    if not fb and not mb:
        an = ai_norton(fit, data, focal, mod, binary=(False, False))
        firms = AiNortonFirms(
            np.asarray(an.predicted, dtype=float), np.asarray(an.per_firm.estimate, dtype=float),
            np.asarray(an.per_firm.statistic, dtype=float), an.coefficient, an.link, an.kind)
        return an.average, an.kind, firms
    if fb and mb:
        eff = avg_predictions(fit, data, at={focal: [0.0 - fc, 1.0 - fc], mod: [0.0 - mc, 1.0 - mc]})
        # rows in combination order: (f0, m0), (f0, m1), (f1, m0), (f1, m1)
        c = np.array([1.0, -1.0, -1.0, 1.0])
        labels = pd.DataFrame({"term": [f"{focal}:{mod}"], "contrast": ["average cross-difference"]})
        one = Effects("contrast", eff.model, eff.type, np.array([c @ eff.estimate]),
                      (c @ eff.jacobian)[None, :], eff.vcov, labels, eff.conf_level)
        return one, "cross-difference", None
    cont, b, bc = (mod, focal, fc) if fb else (focal, mod, mc)
    eff = avg_slopes(fit, data, cont, at={b: [0.0 - bc, 1.0 - bc]}).contrast(1, 0)
    return eff, "derivative of discrete change", None


def _jn_region(jn: JohnsonNeyman, centre: float, observed: np.ndarray, step: str) -> JNRegion:
    """A Johnson–Neyman result shifted to the moderator's own units, with a plain sentence."""
    f = jn.to_frame()

    def sh(v: float) -> float | None:
        return float(v + centre) if math.isfinite(v) else None

    sig = tuple((sh(a), sh(b)) for a, b in jn.significant)
    lo, hi = float(observed.min()), float(observed.max())
    inside = np.zeros(observed.size, dtype=bool)
    clipped = []
    for a, b in sig:
        ca, cb = max(lo, a if a is not None else -math.inf), min(hi, b if b is not None else math.inf)
        if ca < cb:
            clipped.append((ca, cb))
            inside |= (observed >= ca) & (observed <= cb)
    scale = "probability" if jn.scale == "response" else "log-odds (link)"
    mod, foc = text_name(jn.moderator), text_name(jn.focal)
    lvl = f"{jn.conf_level:.0%} {jn.band}"
    if not clipped:
        where = f"for no observed value of {mod}"
    else:
        parts = []
        for a, b in clipped:
            if a <= lo and b >= hi:
                parts.append(f"for every observed value of {mod}")
            elif a <= lo:
                parts.append(f"for {mod} below {b:.3g}")
            elif b >= hi:
                parts.append(f"for {mod} above {a:.3g}")
            else:
                parts.append(f"for {mod} between {a:.3g} and {b:.3g}")
        where = " and ".join(parts) + f" ({inside.mean():.0%} of the firms)"
    text = (f"Johnson–Neyman, {scale} scale (model {step}): the slope of {foc} differs from zero "
            f"({lvl}) {where}; observed {mod} runs from {lo:.3g} to {hi:.3g}.")
    return JNRegion(
        jn.focal, jn.moderator, jn.scale, jn.conf_level, jn.band,
        tuple(float(b + centre) for b in jn.bounds), sig, (lo, hi),
        f[jn.moderator].to_numpy(dtype=float) + centre, f["estimate"].to_numpy(dtype=float),
        f["conf_low"].to_numpy(dtype=float), f["conf_high"].to_numpy(dtype=float),
        np.percentile(observed, np.arange(101)), text,
    )


def _curves(fit: FitResult, data: pd.DataFrame, focal: str, mod: str, step: str,
            centred_vals: list[float], labels: list[str], fc: float, mc: float,
            n_points: int = 21) -> ConditionalCurves:
    eff = conditional_predictions(fit, data, focal, mod, values=centred_vals, n_points=n_points)
    f = eff.to_frame()
    grid = np.sort(pd.unique(f[focal].to_numpy(dtype=float)))
    est, lo, hi = [], [], []
    for v in centred_vals:
        g = f[np.isclose(f[mod].to_numpy(dtype=float), v)].sort_values(focal)
        est.append(g["estimate"].to_numpy())
        lo.append(g["conf_low"].to_numpy())
        hi.append(g["conf_high"].to_numpy())
    return ConditionalCurves(focal, mod, step, grid + fc, np.asarray(centred_vals) + mc,
                             tuple(labels), np.array(est), np.array(lo), np.array(hi),
                             eff.conf_level)


def _sentence(focal: str, mod: str, mb: bool, ss: tuple[EffectRow, ...], diff: EffectRow,
              an: EffectRow, lvl: float) -> str:
    lo, hi = ss[0], ss[-1]
    foc, m = text_name(focal), text_name(mod)
    if mb:
        hi_t, lo_t = f"firms with {m} = 1", f"firms with {m} = 0"
    else:
        hi_t = f"high-{m} firms (mean + 1 SD, {hi.at[mod]:.3g})"
        lo_t = f"low-{m} firms (mean − 1 SD, {lo.at[mod]:.3g})"
    if abs(hi.estimate - lo.estimate) < 1e-12:
        cmp = "the same"
    else:
        cmp = "larger" if hi.estimate > lo.estimate else "smaller"
    return (
        f"On the probability scale, the marginal effect of {foc} on the probability of survival "
        f"is {cmp} for {hi_t} than for "
        f"{lo_t}: AME {hi.estimate:.3f} vs {lo.estimate:.3f} (difference {diff.estimate:.3f}, "
        f"{lvl:.0%} CI {diff.conf_low:.3f} to {diff.conf_high:.3f}); the average interaction "
        f"effect is {an.estimate:.3f} (SE {an.std_error:.3f}) — Ai & Norton (2003)."
    )


def _interaction(spec: StudySpec, steps: tuple[ModelStep, ...], data: pd.DataFrame,
                 analysis: pd.DataFrame, centering: dict[str, float], mod: str,
                 focal_binary: bool, figure: bool) -> InteractionEvidence:
    es = spec.effects
    assert es is not None
    focal = es.focal
    step, term, hyp = _interaction_step(spec, focal, mod)
    fit = _fit(steps, step)
    fc, mc = centering.get(focal, 0.0), centering.get(mod, 0.0)
    mb = is_binary_measure(analysis[mod])
    vals, labs = _moderator_values(analysis, mod, mb)
    cvals = [v - mc for v in vals]
    sl = _focal_slopes(fit, data, focal, focal_binary, fc, mod, cvals)
    ss = tuple(effect_row(sl, i, f"{short_label(mod)} at {lab}", {mod: v})
               for i, (v, lab) in enumerate(zip(vals, labs, strict=True)))
    diff = effect_row(sl.contrast(len(vals) - 1, 0), 0, f"{labs[-1]} minus {labs[0]}")
    an_eff, kind, firms = _ai_norton(fit, data, focal, mod, focal_binary, mb, fc, mc)
    an = effect_row(an_eff, 0, f"Average interaction effect ({kind})")
    j = fit.index(term)
    jn_link = jn_resp = None
    if not mb and not focal_binary:
        observed = analysis[mod].to_numpy(dtype=float)
        jn_link = _jn_region(johnson_neyman(fit, data, focal, mod, "link", spec.conf_level,
                                            grid=es.jn_grid), mc, observed, step)
        jn_resp = _jn_region(johnson_neyman(fit, data, focal, mod, "response", spec.conf_level,
                                            grid=es.jn_grid), mc, observed, step)
    curves = _curves(fit, data, focal, mod, step, cvals, labs, fc, mc) if figure else None
    return InteractionEvidence(
        hypothesis=hyp, term=term, focal=focal, moderator=mod, step=step, moderator_binary=mb,
        coefficient=float(fit.params[j]), coefficient_se=float(fit.se[j]), simple_slopes=ss,
        slope_difference=diff, ai_norton=an, ai_norton_kind=kind, jn_link=jn_link,
        jn_response=jn_resp, text=_sentence(focal, mod, mb, ss, diff, an, spec.conf_level),
        curves=curves, firms=firms if figure else None,
    )


def figure_moderator(spec: StudySpec) -> str | None:
    """The moderator whose interaction gets the figures: ``[figures] interaction``'s if it is
    one of the effects' moderators, else the first."""
    es = spec.effects
    if es is None or not es.moderators:
        return None
    fig = spec.interaction_figure or {}
    if fig.get("focal") == es.focal and fig.get("moderator") in es.moderators:
        return str(fig["moderator"])
    return es.moderators[0]


def effects_section(spec: StudySpec, steps: tuple[ModelStep, ...], data: pd.DataFrame,
                    analysis: pd.DataFrame, centering: dict[str, float],
                    say: Say | None = None) -> EffectsSection | None:
    """The ``[effects]`` section of a binary-outcome study (None without ``[effects]``).

    ``data``: the centred rows the steps were fitted on; ``analysis``: the same rows uncentred.
    """
    es = spec.effects
    if es is None or spec.outcome_kind != "binary":
        return None
    (say or (lambda _m: None))("interaction effects on the probability scale")
    focal = es.focal
    step = es.step or spec.steps[-1].name
    fb = is_binary_measure(analysis[focal])
    ame, boot = _ame(spec, _fit(steps, step), data, focal, fb, centering.get(focal, 0.0))
    fig_mod = figure_moderator(spec)
    inter = tuple(_interaction(spec, steps, data, analysis, centering, m, fb, m == fig_mod)
                  for m in es.moderators)
    return EffectsSection(focal, step, ame, boot, inter, spec.conf_level)

