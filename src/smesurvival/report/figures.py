"""Figures for the report: the interaction plot, Kaplan–Meier survival by group and the
cumulative incidence of each exit route.

matplotlib is imported lazily inside the functions (``import smesurvival`` stays light) and
figures are built on the object-oriented API with the Agg canvas, never through pyplot, so
they are thread-safe for the web app and leave no global state behind. Every figure drawn
from synthetic data carries a visible "SYNTHETIC DATA" mark (honesty rule).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from smesurvival.report.tables import label, lower_first, short_label

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from smesurvival.study.result import GroupSurvival, IncidenceCurves, InteractionCurves

SYNTHETIC_MARK = "SYNTHETIC DATA"
SYNTHETIC_GID = "smesurvival-synthetic-mark"
#: Okabe & Ito's colour-blind-safe palette (blue, vermillion, bluish green, orange, reddish
#: purple, sky blue); lines also differ in style, so no reading depends on colour alone.
_COLORS = ("#0072B2", "#D55E00", "#009E73", "#E69F00", "#CC79A7", "#56B4E9")
_LINESTYLES = ("-", "--", "-.", ":")


def _new_figure(size: tuple[float, float] = (7.0, 4.6)) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def mark_synthetic(fig: Figure) -> None:
    """Stamp the figure's top-right corner with a red "SYNTHETIC DATA" label."""
    fig.text(
        0.995, 0.995, SYNTHETIC_MARK, ha="right", va="top", fontsize=10, fontweight="bold",
        color="#b00020", gid=SYNTHETIC_GID,
        bbox={"boxstyle": "round,pad=0.3", "facecolor": "white", "edgecolor": "#b00020",
              "alpha": 0.9},
    )


def _style_axes(ax: object) -> None:
    ax.spines[["top", "right"]].set_visible(False)  # type: ignore[attr-defined]
    ax.grid(True, color="#dddddd", linewidth=0.6)  # type: ignore[attr-defined]
    ax.set_axisbelow(True)  # type: ignore[attr-defined]


def interaction_figure(
    curves: InteractionCurves,
    synthetic: bool,
    *,
    window_years: int | None = None,
    labels: Mapping[str, str] | None = None,
    conf_level: float = 0.95,
) -> Figure:
    """Predicted probability of surviving the window against the focal variable.

    One line per moderator level (e.g. R&D intensity at −1 SD, mean, +1 SD) with a shaded
    confidence band; the probability scale is where the interaction is read (DESIGN.md §6).
    """
    fig = _new_figure()
    ax = fig.add_subplot()
    x = np.asarray(curves.focal_grid, dtype=float)
    prob = np.atleast_2d(np.asarray(curves.probability, dtype=float))
    lo = np.atleast_2d(np.asarray(curves.conf_low, dtype=float))
    hi = np.atleast_2d(np.asarray(curves.conf_high, dtype=float))
    mod = short_label(curves.moderator, labels)
    for i, lev in enumerate(curves.moderator_labels):
        color = _COLORS[i % len(_COLORS)]
        val = float(np.asarray(curves.moderator_values, dtype=float)[i])
        ax.fill_between(x, lo[i], hi[i], color=color, alpha=0.15, linewidth=0)
        ax.plot(x, prob[i], color=color, linestyle=_LINESTYLES[i % len(_LINESTYLES)],
                linewidth=2, label=f"{lev}: {val:.3f}")
    window = f" {window_years}-year" if window_years else ""
    ax.set_xlabel(label(curves.focal, labels))
    ax.set_ylabel(f"Predicted probability of surviving\nthe{window} window")
    ax.set_xlim(float(x.min()), float(x.max()))
    ymin = float(np.nanmin(lo)) if lo.size else 0.0
    ymax = float(np.nanmax(hi)) if hi.size else 1.0
    pad = 0.05 * max(ymax - ymin, 0.05)
    ax.set_ylim(max(0.0, ymin - pad), min(1.0, ymax + pad))
    ax.set_title(
        f"Survival by {lower_first(short_label(curves.focal, labels))} "
        f"at levels of {lower_first(mod)}",
        loc="left", fontsize=11,
    )
    _style_axes(ax)
    ax.legend(title=f"{mod} (model {curves.step}; shaded: {conf_level:.0%} CI)",
              frameon=False, fontsize=9, title_fontsize=9, loc="best")
    if synthetic:
        mark_synthetic(fig)
    return fig


def _step_arrays(t: np.ndarray, s: np.ndarray, lo: np.ndarray, hi: np.ndarray
                 ) -> tuple[np.ndarray, ...]:
    """Start the step curve at time 0 with survival 1 when the estimate does not."""
    if t.size == 0 or t[0] > 0:
        return (np.r_[0.0, t], np.r_[1.0, s], np.r_[1.0, lo], np.r_[1.0, hi])
    return t, s, lo, hi


def group_survival_figure(
    gs: GroupSurvival,
    synthetic: bool,
    *,
    window_years: int | None = None,
    labels: Mapping[str, str] | None = None,
    conf_level: float = 0.95,
) -> Figure:
    """Kaplan–Meier step curves by group with CI bands; N and exits per group in the legend."""
    fig = _new_figure()
    ax = fig.add_subplot()
    ymin = 1.0
    tmax = 0.0
    for i, g in enumerate(gs.groups):
        color = _COLORS[i % len(_COLORS)]
        t, s, lo, hi = _step_arrays(*(np.asarray(a, dtype=float) for a in (
            gs.times[i], gs.survival[i], gs.conf_low[i], gs.conf_high[i])))
        lo_f, hi_f = np.nan_to_num(lo, nan=s.min()), np.nan_to_num(hi, nan=1.0)
        ax.fill_between(t, lo_f, hi_f, step="post", color=color, alpha=0.15, linewidth=0)
        ax.step(t, s, where="post", color=color, linewidth=2,
                linestyle=_LINESTYLES[i % len(_LINESTYLES)],
                label=f"{g} (N = {gs.n[i]:,}, exits = {gs.n_events[i]:,})")
        ymin = min(ymin, float(np.nanmin(lo_f)))
        tmax = max(tmax, float(t.max()))
    if window_years:
        ax.axvline(window_years, color="#888888", linestyle=":", linewidth=1)
        ax.annotate(f"{window_years}-year window", xy=(window_years, 1.0),
                    xytext=(-4, -4), textcoords="offset points", ha="right", va="top",
                    fontsize=8, color="#555555")
        tmax = max(tmax, float(window_years))
    ax.set_xlim(0.0, 1.02 * tmax if tmax > 0 else 1.0)
    ax.set_ylim(max(0.0, ymin - 0.05), 1.01)
    ax.set_xlabel("Years since survey")
    ax.set_ylabel("Share of firms still operating")
    ax.set_title(f"Survival by {lower_first(short_label(gs.group_variable, labels))}",
                 loc="left", fontsize=11)
    _style_axes(ax)
    ax.legend(title=f"Kaplan–Meier (shaded: {conf_level:.0%} CI)", frameon=False,
              fontsize=9, title_fontsize=9, loc="lower left")
    if synthetic:
        mark_synthetic(fig)
    return fig


def incidence_figure(
    inc: IncidenceCurves,
    synthetic: bool,
    *,
    window_years: int | None = None,
    route_labels: Mapping[str, str] | None = None,
    conf_level: float = 0.95,
) -> Figure:
    """Aalen–Johansen cumulative incidence step curves, one per exit route, with CI bands."""
    from smesurvival.report.survival_tables import exit_name

    fig = _new_figure()
    ax = fig.add_subplot()
    ymax = 0.0
    tmax = 0.0
    for i, et in enumerate(inc.exit_types):
        color = _COLORS[i % len(_COLORS)]
        t, est, lo, hi = (np.asarray(a, dtype=float) for a in (
            inc.times[i], inc.estimate[i], inc.conf_low[i], inc.conf_high[i]))
        if t.size == 0 or t[0] > 0:  # every curve starts at 0 exits at time 0
            t, est, lo, hi = np.r_[0.0, t], np.r_[0.0, est], np.r_[0.0, lo], np.r_[0.0, hi]
        lo_f = np.nan_to_num(lo, nan=0.0)
        hi_f = np.where(np.isnan(hi), est, hi)
        name = (route_labels or {}).get(et) or exit_name(et)
        ax.fill_between(t, lo_f, hi_f, step="post", color=color, alpha=0.15, linewidth=0)
        ax.step(t, est, where="post", color=color, linewidth=2,
                linestyle=_LINESTYLES[i % len(_LINESTYLES)],
                label=f"{name} (exits = {inc.n_events[i]:,})")
        ymax = max(ymax, float(np.nanmax(hi_f)) if hi_f.size else 0.0)
        tmax = max(tmax, float(t.max()) if t.size else 0.0)
    if window_years:
        ax.axvline(window_years, color="#888888", linestyle=":", linewidth=1)
        ax.annotate(f"{window_years}-year window", xy=(window_years, 1.0),
                    xycoords=("data", "axes fraction"), xytext=(-4, -4),
                    textcoords="offset points", ha="right", va="top", fontsize=8,
                    color="#555555")
        tmax = max(tmax, float(window_years))
    ax.set_xlim(0.0, 1.02 * tmax if tmax > 0 else 1.0)
    ax.set_ylim(0.0, min(1.0, max(0.05, 1.1 * ymax)))
    ax.set_xlabel("Years since survey")
    ax.set_ylabel("Share of firms that exited by each route")
    ax.set_title("Exit routes: cumulative incidence", loc="left", fontsize=11)
    _style_axes(ax)
    ax.legend(title=f"Aalen–Johansen (shaded: {conf_level:.0%} CI)", frameon=False,
              fontsize=9, title_fontsize=9, loc="upper left")
    if synthetic:
        mark_synthetic(fig)
    return fig


def save(fig: Figure, directory: Path | str, stem: str) -> tuple[Path, Path]:
    """Write ``stem.png`` (300 dpi, print quality; LaTeX includes it) and ``stem.svg`` (vector)
    into ``directory``; return both paths."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    png, svg = d / f"{stem}.png", d / f"{stem}.svg"
    fig.savefig(png, dpi=300, format="png", metadata={"Software": "smesurvival"})
    fig.savefig(svg, format="svg", metadata={"Date": None})
    return png, svg
