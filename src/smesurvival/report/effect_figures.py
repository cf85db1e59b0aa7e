"""Figures of effects on the probability scale: conditional predictions, Johnson–Neyman, Ai–Norton.

Drawn from effect values (:mod:`smesurvival.inference.effects`, ``.johnson_neyman``,
``.ai_norton``) with the styling helpers of :mod:`.figures` (Agg canvas, no pyplot, lazily
imported matplotlib); ``synthetic=True`` stamps the same "SYNTHETIC DATA" mark.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from smesurvival.errors import UsageError
from smesurvival.report.figures import (
    _COLORS,
    _LINESTYLES,
    _new_figure,
    _style_axes,
    mark_synthetic,
)
from smesurvival.report.tables import label, lower_first, short_label

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

    from smesurvival.inference.ai_norton import AiNorton
    from smesurvival.inference.effects_result import Effects
    from smesurvival.inference.johnson_neyman import JohnsonNeyman
    from smesurvival.study.result import AiNortonFirms, ConditionalCurves, JNRegion

_YLABEL = {"response": "Predicted probability", "link": "Linear predictor",
           "survival": "Predicted survival", "hr": "Hazard ratio"}


def conditional_effect_figure(
    preds: Effects, focal: str, moderator: str, synthetic: bool, *,
    labels: Mapping[str, str] | None = None, ylabel: str | None = None,
) -> Figure:
    """Prediction against the focal variable, one line and CI band per moderator value.

    ``preds`` comes from :func:`~smesurvival.inference.effects.conditional_predictions` (or any
    predictions whose rows carry ``focal`` and ``moderator`` columns).
    """
    return _conditional(preds.to_frame(), focal, moderator, preds.type, preds.conf_level,
                        synthetic, labels=labels, ylabel=ylabel)


def conditional_curves_figure(curves: ConditionalCurves, synthetic: bool, *,
                              labels: Mapping[str, str] | None = None) -> Figure:
    """The same figure from a study's :class:`~smesurvival.study.result.ConditionalCurves`."""
    rows = []
    for k, (v, lab) in enumerate(zip(curves.moderator_values, curves.moderator_labels, strict=True)):
        for j, x in enumerate(curves.focal_grid):
            rows.append({curves.focal: float(x), curves.moderator: float(v), "value_label": lab,
                         "estimate": float(curves.estimate[k, j]),
                         "conf_low": float(curves.conf_low[k, j]),
                         "conf_high": float(curves.conf_high[k, j])})
    import pandas as pd

    return _conditional(pd.DataFrame(rows), curves.focal, curves.moderator, "response",
                        curves.conf_level, synthetic, labels=labels,
                        ylabel="Average predicted probability of surviving")


def _conditional(f: pd.DataFrame, focal: str, moderator: str, type_: str, conf_level: float,
                 synthetic: bool, *, labels: Mapping[str, str] | None = None,
                 ylabel: str | None = None) -> Figure:
    for c in (focal, moderator):
        if c not in f.columns:
            raise UsageError(f"the predictions have no column '{c}'")
    fig = _new_figure()
    ax = fig.add_subplot()
    mod = short_label(moderator, labels)
    for i, (val, g) in enumerate(f.groupby(moderator, sort=True)):
        g = g.sort_values(focal)
        color = _COLORS[i % len(_COLORS)]
        x = g[focal].to_numpy(dtype=float)
        ax.fill_between(x, g["conf_low"], g["conf_high"], color=color, alpha=0.15, linewidth=0)
        lab = str(g["value_label"].iloc[0]) if "value_label" in g.columns else ""
        vtxt = f"{val:.3g}" if isinstance(val, float | np.floating) else str(val)
        ax.plot(x, g["estimate"], color=color, linestyle=_LINESTYLES[i % len(_LINESTYLES)],
                linewidth=2, label=f"{lab}: {vtxt}" if lab and lab != vtxt else vtxt)
    ax.set_xlabel(label(focal, labels))
    ax.set_ylabel(ylabel or _YLABEL.get(type_, "Prediction"))
    if type_ in ("response", "survival"):
        lo, hi = float(np.nanmin(f["conf_low"])), float(np.nanmax(f["conf_high"]))
        pad = 0.05 * max(hi - lo, 0.05)
        ax.set_ylim(max(0.0, lo - pad), min(1.0, hi + pad))
    ax.set_title(f"{short_label(focal, labels)} at levels of {lower_first(mod)}", loc="left",
                 fontsize=11)
    _style_axes(ax)
    ax.legend(title=f"{mod} (shaded: {conf_level:.0%} CI)", frameon=False, fontsize=9,
              title_fontsize=9, loc="best")
    if synthetic:
        mark_synthetic(fig)
    return fig


def johnson_neyman_figure(
    jn: JohnsonNeyman, synthetic: bool, *, labels: Mapping[str, str] | None = None,
) -> Figure:
    """Conditional slope of the focal variable against the moderator: CI band, zero line,
    significance region shaded, bounds marked, rug of observed moderator values."""
    f = jn.to_frame()
    return _jn(f[jn.moderator].to_numpy(dtype=float), f["estimate"], f["conf_low"], f["conf_high"],
               jn.significant, jn.bounds, np.asarray(jn.moderator_observed, dtype=float),
               jn.focal, jn.moderator, jn.scale, jn.conf_level, jn.band, synthetic, labels=labels)


def jn_region_figure(jn: JNRegion, synthetic: bool, *,
                     labels: Mapping[str, str] | None = None) -> Figure:
    """The Johnson–Neyman figure from a study's :class:`~smesurvival.study.result.JNRegion`
    (moderator in its own units; the rug marks the percentiles of the observed values)."""
    sig = tuple((-math.inf if a is None else a, math.inf if b is None else b)
                for a, b in jn.significant)
    return _jn(np.asarray(jn.moderator_grid, dtype=float), jn.estimate, jn.conf_low, jn.conf_high,
               sig, jn.bounds, np.asarray(jn.moderator_quantiles, dtype=float), jn.focal,
               jn.moderator, jn.scale, jn.conf_level, jn.band, synthetic, labels=labels)


def _jn(m: np.ndarray, est: Any, lo: Any, hi: Any, significant: Sequence[tuple[float, float]],
        bounds: Sequence[float], obs: np.ndarray, focal: str, moderator: str, scale_: str,
        conf_level: float, band: str, synthetic: bool, *,
        labels: Mapping[str, str] | None = None) -> Figure:
    fig = _new_figure()
    ax = fig.add_subplot()
    lo_x, hi_x = float(m.min()), float(m.max())
    first = True
    for a, b in significant:
        a_c, b_c = max(a, lo_x), min(b, hi_x)
        if a_c < b_c:
            ax.axvspan(a_c, b_c, color=_COLORS[2], alpha=0.10, linewidth=0,
                       label="Slope differs from 0" if first else None)
            first = False
    ax.fill_between(m, lo, hi, color=_COLORS[0], alpha=0.18, linewidth=0,
                    label=f"{conf_level:.0%} CI ({band})")
    ax.plot(m, est, color=_COLORS[0], linewidth=2, label="Conditional slope")
    ax.axhline(0.0, color="#555555", linewidth=0.9)
    for r in bounds:
        if lo_x <= r <= hi_x and math.isfinite(r):
            ax.axvline(r, color=_COLORS[1], linestyle="--", linewidth=1)
            ax.annotate(f"{r:.3g}", xy=(r, 1.0), xycoords=("data", "axes fraction"),
                        xytext=(3, -3), textcoords="offset points", fontsize=8,
                        color=_COLORS[1], va="top")
    ax.plot(obs, np.zeros_like(obs), "|", color="#333333", alpha=0.35, markersize=8,
            transform=ax.get_xaxis_transform())
    ax.set_xlim(lo_x, hi_x)
    ax.set_xlabel(label(moderator, labels))
    scale = "probability" if scale_ == "response" else "linear predictor"
    ax.set_ylabel(f"Slope of {lower_first(short_label(focal, labels))}\n({scale} scale)")
    ax.set_title(f"Johnson–Neyman: {short_label(focal, labels)} by "
                 f"{lower_first(short_label(moderator, labels))}", loc="left", fontsize=11)
    _style_axes(ax)
    ax.legend(frameon=False, fontsize=9, loc="best")
    if synthetic:
        mark_synthetic(fig)
    return fig


def ai_norton_figure(
    an: AiNorton, synthetic: bool, *, labels: Mapping[str, str] | None = None,
) -> Figure:
    """The Ai–Norton scatter: interaction effect and its z against the predicted probability."""
    f = an.frame
    return _an(f["predicted"].to_numpy(dtype=float), f["estimate"].to_numpy(dtype=float),
               f["statistic"].to_numpy(dtype=float), an.coefficient, an.link, an.kind, an.x1,
               an.x2, an.conf_level, synthetic, labels=labels)


def ai_norton_firms_figure(firms: AiNortonFirms, x1: str, x2: str, conf_level: float,
                           synthetic: bool, *, labels: Mapping[str, str] | None = None) -> Figure:
    """The Ai–Norton scatter from a study's :class:`~smesurvival.study.result.AiNortonFirms`."""
    return _an(np.asarray(firms.predicted, dtype=float), np.asarray(firms.effect, dtype=float),
               np.asarray(firms.z, dtype=float), firms.coefficient, firms.link, firms.kind, x1, x2,
               conf_level, synthetic, labels=labels)


def _an(p: np.ndarray, est: np.ndarray, z: np.ndarray, coefficient: float | None, link: str,
        kind: str, x1: str, x2: str, conf_level: float, synthetic: bool, *,
        labels: Mapping[str, str] | None = None) -> Figure:
    fig = _new_figure((9.0, 4.2))
    ax1, ax2 = fig.subplots(1, 2)
    ax1.scatter(p, est, s=8, color=_COLORS[0], alpha=0.6, linewidths=0)
    ax1.axhline(0.0, color="#555555", linewidth=0.9)
    if coefficient is not None:
        from smesurvival.models.families import FAMILIES

        fam = FAMILIES[link]
        order = np.argsort(p)
        naive = coefficient * fam.dmu_deta(fam.link_fun(p[order]))
        ax1.plot(p[order], naive, color=_COLORS[1], linestyle="--", linewidth=1.2,
                 label="coefficient x F'(eta) (not the effect)")
        ax1.legend(frameon=False, fontsize=8, loc="best")
    ax1.set_xlabel("Predicted probability")
    ax1.set_ylabel("Interaction effect")
    ax1.set_title(f"{kind.capitalize()}: {label(f'{x1}:{x2}', labels)}", loc="left",
                  fontsize=10)
    ax2.scatter(p, z, s=8, color=_COLORS[2], alpha=0.6, linewidths=0)
    from scipy import stats

    zc = float(stats.norm.ppf(0.5 + conf_level / 2.0))
    for v in (-zc, zc):
        ax2.axhline(v, color=_COLORS[1], linestyle="--", linewidth=1)
    ax2.axhline(0.0, color="#555555", linewidth=0.9)
    ax2.set_xlabel("Predicted probability")
    ax2.set_ylabel("z statistic")
    ax2.set_title("z of the interaction effect", loc="left", fontsize=10)
    for ax in (ax1, ax2):
        _style_axes(ax)
    if synthetic:
        mark_synthetic(fig)
    return fig
