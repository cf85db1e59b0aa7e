"""The power curve: share of simulated cohorts supporting each hypothesis against sample size."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def power_figure(result: Any, *, target: float = 0.80, alpha: float = 0.05) -> Figure:
    """One line per hypothesis; dashed lines at the target power and at alpha (false support)."""
    from smesurvival.report.figures import _new_figure, _style_axes, mark_synthetic

    fig = _new_figure()
    ax = fig.add_subplot()
    ns = list(result.ns)
    for j, h in enumerate(result.hypotheses):
        style = "-" if result.published[j] == "supported" else ":"
        ax.plot(ns, result.power[:, j], style, marker="o", label=f"{h} ({result.published[j] or 'n/a'} in 2012)")
    ax.axhline(target, color="#555555", linestyle="--", linewidth=0.8)
    ax.axhline(alpha, color="#999999", linestyle="--", linewidth=0.8)
    ax.set_xlabel("Firms in the cohort (N)")
    ax.set_ylabel(f"Share of {result.reps} simulated cohorts supporting the hypothesis")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("Power of the study design by sample size", loc="left")
    ax.legend(fontsize=8, frameon=False, loc="center right")
    _style_axes(ax)
    mark_synthetic(fig)
    return fig
