"""Johnson–Neyman regions: where along a moderator is the focal slope significantly non-zero?

Link scale (closed form). For ``eta = ... + b_f f + b_m m + b_fm f m`` the slope of f is
s(m) = a'b + m c'b (a, c from the re-encoded data: a = e_f, c = e_fm for the plain product)
with Var s(m) = a'Va + 2m a'Vc + m^2 c'Vc. The bounds solve s(m)^2 = z^2 Var s(m), a quadratic
A m^2 + B m + C = 0 with A = (c'b)^2 - z^2 c'Vc, B = 2(a'b c'b - z^2 a'Vc), C = (a'b)^2 - z^2 a'Va;
the slope is significant where A m^2 + B m + C > 0: outside the roots (A > 0), between them
(A < 0), everywhere or nowhere (no real roots).

Response scale (numerical). The slope is the conditional AME of f with the moderator set to m
for every row, with delta-method CIs over a grid; the bounds are where a CI limit crosses 0,
located by Brent's method inside the grid brackets.

Simultaneous band (``band="simultaneous"``, the idea of Esarey & Sumner 2018): instead of the
pointwise z, use the critical value c with P(max_g |t_g| <= c) = conf_level over the grid,
t_g = (J_g (b* - b)) / se_g with b* ~ N(b, V) simulated (``n_sim`` draws, ``seed``), so the
family-wise error over the moderator range is controlled.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import optimize

from smesurvival.errors import UsageError
from smesurvival.inference.effects import avg_slopes
from smesurvival.inference.effects_base import (
    Array,
    check_variable,
    critical_value,
    sample_rows,
)
from smesurvival.inference.effects_result import Effects, concat_effects, json_bound
from smesurvival.models.result import FitResult

Band = Literal["pointwise", "simultaneous"]
_INF = math.inf


@dataclass(frozen=True, eq=False)
class JohnsonNeyman:
    """Johnson–Neyman bounds, significance regions and the conditional slope over a grid."""

    focal: str
    moderator: str
    scale: str
    conf_level: float
    band: str
    critical_value: float
    bounds: tuple[float, ...]  # moderator values where a CI limit crosses 0, ascending
    region: str  # outside | inside | everywhere | nowhere | above | below | numeric
    significant: tuple[tuple[float, float], ...]  # intervals where the slope differs from 0
    observed_range: tuple[float, float]
    bounds_in_range: tuple[bool, ...]
    grid: Effects  # the conditional slope at each grid value (band-adjusted CIs)
    moderator_observed: Array  # observed moderator values (for the rug)
    notes: tuple[str, ...] = ()

    @property
    def frame(self) -> pd.DataFrame:
        """Grid rows: term, estimate, std_error, statistic, p_value, CI, moderator value, significant."""
        return self.to_frame()

    def to_frame(self) -> pd.DataFrame:
        """Same as :attr:`frame`."""
        f = self.grid.to_frame()
        f["significant"] = (f["conf_low"] > 0) | (f["conf_high"] < 0)
        return f

    def significant_in_range(self) -> tuple[tuple[float, float], ...]:
        """The significance intervals clipped to the observed moderator range."""
        lo, hi = self.observed_range
        out = [(max(a, lo), min(b, hi)) for a, b in self.significant]
        return tuple((a, b) for a, b in out if a < b)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe summary and grid rows (unbounded interval ends are None)."""
        rows = self.grid.to_records()
        for r, sig in zip(rows, self.to_frame()["significant"], strict=True):
            r["significant"] = bool(sig)
        return {
            "focal": self.focal, "moderator": self.moderator, "scale": self.scale,
            "conf_level": self.conf_level, "band": self.band,
            "critical_value": self.critical_value, "bounds": [float(b) for b in self.bounds],
            "region": self.region,
            "significant": [[json_bound(a), json_bound(b)] for a, b in self.significant],
            "observed_range": list(self.observed_range),
            "bounds_in_range": list(self.bounds_in_range), "notes": list(self.notes),
            "rows": rows,
        }

    def describe(self) -> str:
        """One sentence stating where the slope is significant (for reports)."""
        lvl = f"{self.conf_level:.0%} {self.band}"
        where = " or ".join(_interval_text(self.moderator, a, b) for a, b in self.significant)
        if not self.significant:
            where = "for no value of " + self.moderator
        lo, hi = self.observed_range
        return (f"On the {self.scale} scale the slope of {self.focal} differs from zero ({lvl}) "
                f"{where}; observed {self.moderator} runs from {lo:.4g} to {hi:.4g}.")


def _interval_text(m: str, a: float, b: float) -> str:
    if a == -_INF and b == _INF:
        return "for every value of " + m
    if a == -_INF:
        return f"for {m} < {b:.4g}"
    if b == _INF:
        return f"for {m} > {a:.4g}"
    return f"for {a:.4g} < {m} < {b:.4g}"


def quadratic_regions(a0: float, a1: float, v00: float, v01: float, v11: float, z: float
                      ) -> tuple[tuple[float, ...], str, tuple[tuple[float, float], ...]]:
    """Roots and significance regions of (a0 + a1 m)^2 > z^2 (v00 + 2 v01 m + v11 m^2)."""
    A = a1 * a1 - z * z * v11
    B = 2.0 * (a0 * a1 - z * z * v01)
    C = a0 * a0 - z * z * v00
    scale_ab = max(abs(a1 * a1), abs(z * z * v11), 1e-300)
    if abs(A) <= 1e-14 * scale_ab:  # degenerate: linear in m
        if B == 0.0:
            return (), ("everywhere" if C > 0 else "nowhere"), (((-_INF, _INF),) if C > 0 else ())
        r = -C / B
        return (r,), ("above" if B > 0 else "below"), (((r, _INF),) if B > 0 else ((-_INF, r),))
    disc = B * B - 4.0 * A * C
    if disc <= 0.0:
        return (), ("everywhere" if A > 0 else "nowhere"), (((-_INF, _INF),) if A > 0 else ())
    q = -0.5 * (B + math.copysign(math.sqrt(disc), B))
    r1, r2 = sorted((q / A, C / q))
    if A > 0:
        return (r1, r2), "outside", ((-_INF, r1), (r2, _INF))
    return (r1, r2), "inside", ((r1, r2),)


def sup_t_critical(J: Array, V: Array, conf_level: float, n_sim: int, seed: int | None) -> float:
    """Critical value of max_g |t_g| over the rows of J, simulated from b* ~ N(b, V)."""
    if n_sim < 100:
        raise UsageError(f"n_sim must be at least 100; got {n_sim}")
    w, U = np.linalg.eigh((V + V.T) / 2.0)
    L = U * np.sqrt(np.clip(w, 0.0, None))
    se = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", J, V, J), 1e-300))
    rng = np.random.default_rng(seed)
    maxima = []
    for start in range(0, n_sim, 5000):
        draws = rng.standard_normal((min(5000, n_sim - start), V.shape[0])) @ L.T
        maxima.append(np.max(np.abs(draws @ J.T) / se, axis=1))
    return float(np.quantile(np.concatenate(maxima), conf_level))


def _grid_values(col: pd.Series, grid: int | Sequence[float] | None) -> Array:
    lo, hi = float(col.min()), float(col.max())
    if grid is None or isinstance(grid, int):
        n = 101 if grid is None else grid
        if n < 3:
            raise UsageError("grid: use at least 3 points")
        return np.linspace(lo, hi, n)
    g = np.unique(np.asarray(list(grid), dtype=float))
    if g.size < 2:
        raise UsageError("grid: give at least 2 distinct moderator values")
    return g


def _with_band(eff: Effects, crit: float) -> Effects:
    return replace(eff, conf_low_override=eff.estimate - crit * eff.std_error,
                   conf_high_override=eff.estimate + crit * eff.std_error)


def _numeric_bounds(cond: object, grid: Array, est: Array, se: Array, crit: float
                    ) -> tuple[tuple[float, ...], tuple[tuple[float, float], ...]]:
    """Crossings of est -+ crit se through 0 between grid points (Brent), and the regions."""
    f_cond = cond  # m -> (estimate, se) at one moderator value

    def limit(sign: float) -> object:
        def g(m: float) -> float:
            e, s = f_cond(m)  # type: ignore[operator]
            return float(e + sign * crit * s)
        return g

    roots: list[float] = []
    for sign in (-1.0, 1.0):
        vals = est + sign * crit * se
        g = limit(sign)
        for i in range(grid.size - 1):
            a, b = vals[i], vals[i + 1]
            if a == 0.0:
                roots.append(float(grid[i]))
            elif a * b < 0.0:
                roots.append(float(optimize.brentq(g, grid[i], grid[i + 1], xtol=1e-12, rtol=4 * np.finfo(float).eps)))  # type: ignore[arg-type]
        if vals[-1] == 0.0:
            roots.append(float(grid[-1]))
    bounds = tuple(sorted(set(roots)))
    edges = [float(grid[0]), *bounds, float(grid[-1])]
    regions: list[tuple[float, float]] = []
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        if b <= a:
            continue
        e, s = f_cond(0.5 * (a + b))  # type: ignore[operator]
        if abs(e) > crit * s:
            if regions and regions[-1][1] == a:
                regions[-1] = (regions[-1][0], b)
            else:
                regions.append((a, b))
    return bounds, tuple(regions)


def johnson_neyman(
    result: FitResult, data: pd.DataFrame, focal: str, moderator: str,
    scale: Literal["link", "response"] = "link", conf_level: float = 0.95,
    grid: int | Sequence[float] | None = None, *, band: Band = "pointwise", n_sim: int = 10000,
    seed: int | None = 0, eps: float | None = None,
) -> JohnsonNeyman:
    """Johnson–Neyman bounds of the slope of ``focal`` along ``moderator`` (see module docs).

    ``grid``: number of equally spaced moderator values over the observed range (default 101)
    or the values themselves; it carries the conditional-slope curve (and, on the response
    scale, brackets the bounds). ``band="simultaneous"`` uses the sup-t critical value.
    """
    if scale not in ("link", "response"):
        raise UsageError(f"scale must be 'link' or 'response'; got '{scale}'")
    if band not in ("pointwise", "simultaneous"):
        raise UsageError(f"band must be 'pointwise' or 'simultaneous'; got '{band}'")
    z = critical_value(conf_level)
    rows, _ = sample_rows(result, data)
    check_variable(result, rows, focal, "focal")
    check_variable(result, rows, moderator, "moderator")
    if focal == moderator:
        raise UsageError("focal and moderator must be different variables")
    mod = rows[moderator].to_numpy(dtype=float)
    observed = (float(mod.min()), float(mod.max()))
    gvals = _grid_values(rows[moderator], grid)

    chunk = max(1, 200_000 // len(rows))  # bound the stacked counterfactual rows per call

    def slopes_at(ms: Sequence[float]) -> Effects:
        vals = [float(m) for m in ms]
        return concat_effects([
            avg_slopes(result, rows, focal, at={moderator: vals[i:i + chunk]}, type=scale,
                       eps=eps, conf_level=conf_level)
            for i in range(0, len(vals), chunk)])

    eff = slopes_at(gvals.tolist())
    crit = z
    notes: list[str] = []
    if band == "simultaneous":
        crit = sup_t_critical(eff.jacobian, result.vcov, conf_level, n_sim, seed)
        notes.append(f"simultaneous band: sup-t critical value {crit:.4f} over the grid "
                     f"({n_sim} draws, seed {seed}) instead of {z:.4f}")
    eff = _with_band(eff, crit)

    affine = False
    if scale == "link":
        lo, hi = float(gvals[0]), float(gvals[-1])
        J3 = slopes_at([lo, 0.5 * (lo + hi), hi]).jacobian
        c = (J3[2] - J3[0]) / (hi - lo)
        a = J3[0] - lo * c
        tol = 1e-7 * (np.abs(J3).max() + 1.0)
        affine = bool(np.abs(J3[1] - 0.5 * (J3[0] + J3[2])).max() <= tol)
    if affine:
        b, V = result.params, result.vcov
        bounds, region, sig = quadratic_regions(
            float(a @ b), float(c @ b), float(a @ V @ a), float(a @ V @ c), float(c @ V @ c), crit)
    else:
        if scale == "link":
            notes.append("the link-scale slope is not linear in the moderator: bounds located numerically")

        def cond(m: float) -> tuple[float, float]:
            e = slopes_at([m])
            return float(e.estimate[0]), float(e.std_error[0])

        bounds, sig = _numeric_bounds(cond, gvals, eff.estimate, eff.std_error, crit)
        region = "numeric"
        notes.append("bounds and regions cover the grid range only")
    in_range = tuple(observed[0] <= r <= observed[1] for r in bounds)
    return JohnsonNeyman(focal, moderator, scale, conf_level, band, crit, bounds, region, sig,
                         observed, in_range, eff, mod, tuple(notes))
