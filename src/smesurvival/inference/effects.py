"""Predictions, marginal effects and simple slopes on the scale people read (DESIGN.md §6).

Unit-level and averaged pairs (STYLE.md lesson 11): :func:`predictions` / :func:`avg_predictions`
and :func:`slopes` / :func:`avg_slopes`; :func:`simple_slopes` is the slope of a focal variable
at chosen moderator values. Every effect is computed by re-encoding (counterfactual) data with
the fit's own formula spec, so ``x:z`` columns, ``center()`` and ``C()`` follow the data.

Definitions (p_i(data) = g(x_i' b) with x_i encoded from the data, g the scale):

* continuous focal x: dP/dx_i = [p_i(x + h) - p_i(x - h)] / (2h), h = ``eps`` or 1e-5 x SD(x);
* binary (0/1) focal x: the discrete change p_i(x = 1) - p_i(x = 0) for every row;
* AME = mean over rows; MEM = ``at="means"`` (one typical row); ``at={"z": [0, 1]}`` sets z for
  every row and averages (the effect at representative values); :func:`datagrid` rows with the
  other covariates at their means give the classic MER;
* standard errors by the delta method, sqrt(J V J') with the exact Jacobian of the computed
  estimate, J = sum_k c_k g'(X_k b) X_k (or central differences on b, ``jacobian="numeric"``).

Example
-------
>>> from smesurvival.models.fit import fit
>>> r = fit("lfp ~ k5 + age + wcyes * inc", mroz)                      # doctest: +SKIP
>>> ame = avg_slopes(r, mroz, "inc", at={"wcyes": [0, 1]})              # doctest: +SKIP
>>> ame.contrast(1, 0).frame                       # the average cross-difference  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, Literal

import numpy as np
import pandas as pd

from smesurvival.errors import UsageError
from smesurvival.inference.effects_base import (
    Array,
    EffectType,
    JacobianMethod,
    binary_values,
    check_variable,
    counterfactual,
    critical_value,
    data_step,
    datagrid,
    encode,
    evaluate,
    group_matrix,
    is_binary,
    model_variables,
    numeric_jacobian,
    sample_rows,
    scale_for,
)
from smesurvival.inference.effects_result import Effects
from smesurvival.models.result import FitResult

At = Literal["means"] | Mapping[str, Any] | None
SimpleValues = Literal["meansd", "quantiles"] | Sequence[Any]

_COX_NOTE = ("Cox survival: baseline cumulative hazard at the covariate means treated as "
             "fixed (SE reflects the coefficients only)")

__all__ = [
    "Effects", "avg_predictions", "avg_slopes", "conditional_predictions", "datagrid",
    "predictions", "simple_slopes",
    "slopes",
]


def _by_list(by: str | Sequence[str] | None, data: pd.DataFrame) -> list[str]:
    cols = [by] if isinstance(by, str) else list(by or [])
    for c in cols:
        if c not in data.columns:
            raise UsageError(f"by: '{c}' is not a column of the data")
    return cols


def _conf(result: FitResult, conf_level: float | None) -> float:
    lvl = result.conf_level if conf_level is None else conf_level
    critical_value(lvl)  # validates
    return lvl


def _grid(result: FitResult, rows: pd.DataFrame, at: At) -> tuple[pd.DataFrame, Array, list[dict[str, Any]], bool]:
    """Rows to evaluate on: as given, one typical row (``"means"``), or counterfactual copies."""
    if at is None:
        return rows, np.zeros(len(rows), dtype=int), [{}], False
    if isinstance(at, str):
        if at != "means":
            raise UsageError(f"at must be 'means', a mapping of column -> values, or None; got '{at}'")
        typical = datagrid(rows, columns=model_variables(result, list(rows.columns)))
        return typical, np.zeros(1, dtype=int), [{}], True
    if not isinstance(at, Mapping):
        raise UsageError("at must be 'means', a mapping of column -> values, or None")
    stacked, codes, cs = counterfactual(rows, at)
    return stacked, codes, cs, False


def _aggregate(stacked: pd.DataFrame, codes: Array, cs: list[dict[str, Any]], by: list[str],
               base: dict[str, Any]) -> tuple[Any, pd.DataFrame]:
    """Averaging matrix over (at combination x by group) cells and their labels."""
    if by:
        by_codes = stacked.groupby(by, sort=True, dropna=False).ngroup().to_numpy()
        n_by = int(by_codes.max()) + 1
    else:
        by_codes, n_by = np.zeros(len(stacked), dtype=int), 1
    key = codes * n_by + by_codes
    uniq, first, inv = np.unique(key, return_index=True, return_inverse=True)
    labels = []
    for u, f in zip(uniq, first, strict=True):
        lab = {**base, **cs[int(u) // n_by]}
        lab.update({c: stacked[c].iloc[int(f)] for c in by})
        labels.append(lab)
    return group_matrix(inv.ravel(), uniq.size), pd.DataFrame(labels)


def _unit_labels(stacked: pd.DataFrame, codes: Array, cs: list[dict[str, Any]], cols: list[str],
                 base: dict[str, Any], n_rows: int, typical: bool) -> pd.DataFrame:
    lab = pd.DataFrame({k: [v] * len(stacked) for k, v in base.items()})
    if not typical:
        lab["rowid"] = np.tile(np.arange(n_rows), len(cs))
    for c in dict.fromkeys([*(k for c_ in cs for k in c_), *cols]):
        lab[c] = stacked[c].to_numpy()
    return lab


def _finish(kind: str, result: FitResult, type: str, pieces: list[tuple[float, Array]], scale: Any,
            agg: Any, labels: pd.DataFrame, conf_level: float, jacobian: JacobianMethod,
            n_dropped: int, notes: tuple[str, ...] = ()) -> Effects:
    if jacobian not in ("analytic", "numeric"):
        raise UsageError(f"jacobian must be 'analytic' or 'numeric'; got '{jacobian}'")
    est, J = evaluate(result.params, pieces, scale, agg)
    if jacobian == "numeric":
        rms = np.sqrt(np.mean(pieces[0][1] ** 2, axis=0))
        J = numeric_jacobian(lambda b: evaluate(b, pieces, scale, agg)[0], result.params,
                             column_rms=rms)
    return Effects(kind, result.model, type, est, J, result.vcov, labels.reset_index(drop=True),
                   conf_level, notes=notes, n_dropped=n_dropped)


# ---- predictions ----------------------------------------------------------------------------------
def _prediction_rows(result: FitResult, data: pd.DataFrame | None, newdata: pd.DataFrame | None
                     ) -> tuple[pd.DataFrame, int]:
    if newdata is not None:
        return sample_rows(result, newdata, outcome=False)
    if data is None:
        raise UsageError("predictions need data= (rows to predict for) or newdata= (profiles)")
    return sample_rows(result, data)


def _hr_reference(result: FitResult, rows: pd.DataFrame, reference: Mapping[str, Any] | pd.DataFrame | None
                  ) -> Array:
    cols = model_variables(result, list(rows.columns))
    if isinstance(reference, pd.DataFrame):
        ref = reference
    else:
        ref = datagrid(rows, values=dict(reference or {}), columns=cols)
    if len(ref) != 1:
        raise UsageError("the hazard-ratio reference must be a single profile (one value per column)")
    return encode(result, ref)[0]


def predictions(
    result: FitResult, data: pd.DataFrame | None = None, newdata: pd.DataFrame | None = None,
    at: At = None, type: EffectType = "response", conf_level: float | None = None, *,
    horizon: float | None = None, reference: Mapping[str, Any] | pd.DataFrame | None = None,
    stratum: int = 0, jacobian: JacobianMethod = "analytic",
) -> Effects:
    """Predictions for each row of ``newdata`` (profiles) or ``data``, with delta-method SEs.

    ``type``: ``response`` (probability) or ``link`` for binary models; for Cox ``link``
    (x'b), ``survival`` (S(horizon | x) = exp(-H0(horizon) e^{x'b})) or ``hr`` (exp((x - x_ref)'b),
    relative to ``reference``: a mapping of column values on the typical firm, a one-row frame,
    or by default the typical firm of the rows). Intervals are built on the link scale and
    transformed, so they stay inside [0, 1]. For Cox survival the baseline cumulative hazard at
    the fit's covariate means, H0(t) exp(xbar'b), is treated as fixed: the SE reflects the
    uncertainty of b through (x - xbar) only and omits the baseline's own sampling variance, so
    it understates the full variance (most for profiles near the means).
    """
    lvl = _conf(result, conf_level)
    rows, dropped = _prediction_rows(result, data, newdata)
    stacked, codes, cs, typical = _grid(result, rows, at)
    X = encode(result, stacked)
    cols = list(model_variables(result, list(stacked.columns)))
    labels = _unit_labels(stacked, codes, cs, cols, {"term": type}, len(rows), typical)
    z = critical_value(lvl)
    if type == "hr":
        if result.model != "cox":
            raise UsageError(f"type='hr' is for Cox models; this is a {result.model} model")
        Xc = X - _hr_reference(result, rows, reference)[None, :]
        eta = Xc @ result.params
        J = np.exp(eta)[:, None] * Xc
        if jacobian == "numeric":
            J = numeric_jacobian(lambda b: np.exp(Xc @ b), result.params)
        eff = Effects("predictions", result.model, type, np.exp(eta), J, result.vcov, labels, lvl,
                      n_dropped=dropped, notes=("hazard ratio relative to the reference profile",))
        se_eta = np.sqrt(np.einsum("ij,jk,ik->i", Xc, result.vcov, Xc))
        return replace(eff, conf_low_override=np.exp(eta - z * se_eta),
                       conf_high_override=np.exp(eta + z * se_eta))
    scale = scale_for(result, type, horizon, stratum)
    notes = (_COX_NOTE,) if type == "survival" else ()
    eff = _finish("predictions", result, type, [(1.0, X)], scale, None, labels, lvl, jacobian, dropped, notes)
    if type == "link":
        return eff
    Xe = scale.eta_design(X)
    eta = Xe @ result.params
    se_eta = np.sqrt(np.einsum("ij,jk,ik->i", Xe, result.vcov, Xe))
    a, b = scale.f(eta - z * se_eta), scale.f(eta + z * se_eta)
    lo, hi = (a, b) if scale.increasing else (b, a)
    return replace(eff, conf_low_override=lo, conf_high_override=hi)


def avg_predictions(
    result: FitResult, data: pd.DataFrame, by: str | Sequence[str] | None = None, at: At = None,
    type: EffectType = "response", conf_level: float | None = None, *,
    horizon: float | None = None, stratum: int = 0, jacobian: JacobianMethod = "analytic",
) -> Effects:
    """Average predictions over the rows of ``data`` (within ``by`` groups, per ``at`` setting).

    ``at={"exporter": [0, 1]}`` gives the average predicted probability if every firm were a
    non-exporter / an exporter. Intervals are Wald intervals on the averaged scale.
    """
    lvl = _conf(result, conf_level)
    if type == "hr":
        raise UsageError("avg_predictions: type='hr' is per profile; use predictions(..., type='hr')")
    rows, dropped = sample_rows(result, data)
    bys = _by_list(by, rows)
    if bys and isinstance(at, str):
        raise UsageError("by cannot be combined with at='means'")
    stacked, codes, cs, _ = _grid(result, rows, at)
    scale = scale_for(result, type, horizon, stratum)
    agg, labels = _aggregate(stacked, codes, cs, bys, {"term": type})
    notes = (_COX_NOTE,) if type == "survival" else ()
    return _finish("avg_predictions", result, type, [(1.0, encode(result, stacked))], scale, agg,
                   labels, lvl, jacobian, dropped, notes)


# ---- slopes -----------------------------------------------------------------------------------------
def focal_pieces(result: FitResult, stacked: pd.DataFrame, variable: str, binary: bool, h: float,
                 values: tuple[Any, Any]) -> list[tuple[float, Array]]:
    """Design matrices and weights whose combination is the slope (or discrete change) of ``variable``."""
    if binary:
        lo, hi = values
        return [(1.0, encode(result, stacked.assign(**{variable: hi}))),
                (-1.0, encode(result, stacked.assign(**{variable: lo})))]
    x = stacked[variable].to_numpy(dtype=float)
    return [(1.0 / (2.0 * h), encode(result, stacked.assign(**{variable: x + h}))),
            (-1.0 / (2.0 * h), encode(result, stacked.assign(**{variable: x - h})))]


def _slope_setup(result: FitResult, data: pd.DataFrame, variable: str, at: At, eps: float | None,
                 binary: bool | None) -> tuple[pd.DataFrame, pd.DataFrame, Array, list[dict[str, Any]], bool,
                                               list[tuple[float, Array]], dict[str, Any], int]:
    rows, dropped = sample_rows(result, data)
    check_variable(result, rows, variable, "focal")
    if at is not None and not isinstance(at, str) and variable in at:
        raise UsageError(f"at: the focal variable '{variable}' cannot also be set by at=")
    is_bin = is_binary(rows[variable]) if binary is None else bool(binary)
    h = data_step(rows[variable], eps)
    stacked, codes, cs, typical = _grid(result, rows, at)
    pieces = focal_pieces(result, stacked, variable, is_bin, h, binary_values(rows[variable]))
    base = {"term": variable, "contrast": "1 - 0" if is_bin else "dY/dX"}
    return rows, stacked, codes, cs, typical, pieces, base, dropped


def slopes(
    result: FitResult, data: pd.DataFrame, variable: str, by: str | Sequence[str] | None = None,
    at: At = None, type: EffectType = "response", eps: float | None = None, *,
    binary: bool | None = None, conf_level: float | None = None, horizon: float | None = None,
    stratum: int = 0, jacobian: JacobianMethod = "analytic",
) -> Effects:
    """Unit-level marginal effect of ``variable`` on ``type``, one row per (counterfactual) row.

    Continuous focal variables: central difference in the data, step ``eps`` (default 1e-5 x
    SD); binary 0/1 variables: discrete change 0 -> 1 (``binary=`` overrides the detection).
    ``at="means"`` evaluates at one typical row (MEM); ``at={"z": [..]}`` sets z in every row.
    """
    lvl = _conf(result, conf_level)
    scale = scale_for(result, type, horizon, stratum)
    rows, stacked, codes, cs, typical, pieces, base, dropped = _slope_setup(
        result, data, variable, at, eps, binary)
    cols = [*_by_list(by, rows), variable]
    if typical:
        cols = list(model_variables(result, list(rows.columns)))
    labels = _unit_labels(stacked, codes, cs, cols, base, len(rows), typical)
    return _finish("slopes", result, type, pieces, scale, None, labels, lvl, jacobian, dropped)


def avg_slopes(
    result: FitResult, data: pd.DataFrame, variable: str, by: str | Sequence[str] | None = None,
    at: At = None, type: EffectType = "response", eps: float | None = None, *,
    binary: bool | None = None, conf_level: float | None = None, horizon: float | None = None,
    stratum: int = 0, jacobian: JacobianMethod = "analytic",
) -> Effects:
    """Average marginal effect of ``variable`` (AME; MEM with ``at="means"``; per ``by`` group and
    ``at`` setting). The difference of two rows, ``.contrast(i, j)``, is e.g. the average
    cross-difference of the slope between moderator values (the AME of the interaction)."""
    lvl = _conf(result, conf_level)
    scale = scale_for(result, type, horizon, stratum)
    rows, stacked, codes, cs, typical, pieces, base, dropped = _slope_setup(
        result, data, variable, at, eps, binary)
    bys = _by_list(by, rows)
    if bys and typical:
        raise UsageError("by cannot be combined with at='means'")
    agg, labels = _aggregate(stacked, codes, cs, bys, base)
    return _finish("avg_slopes", result, type, pieces, scale, agg, labels, lvl, jacobian, dropped)


# ---- simple slopes ------------------------------------------------------------------------------
def moderator_values(col: pd.Series, values: SimpleValues) -> tuple[list[Any], list[str]]:
    """Moderator values and their labels: mean +- 1 SD, quartiles, or the values given."""
    if isinstance(values, str):
        if values not in ("meansd", "quantiles"):
            raise UsageError(f"values must be 'meansd', 'quantiles' or a list; got '{values}'")
        if is_binary(col):
            return list(binary_values(col)), ["0", "1"]
        x = col.to_numpy(dtype=float)
        if values == "meansd":
            m, s = float(np.mean(x)), float(np.std(x, ddof=1))
            return [m - s, m, m + s], ["mean - 1 SD", "mean", "mean + 1 SD"]
        q = np.quantile(x, [0.25, 0.5, 0.75])
        return [float(v) for v in q], ["25th percentile", "median", "75th percentile"]
    vals = list(values)
    if not vals:
        raise UsageError("values: give at least one moderator value")
    return vals, [str(v) for v in vals]


def simple_slopes(
    result: FitResult, data: pd.DataFrame, focal: str, moderator: str,
    values: SimpleValues = "meansd", scale: Literal["response", "link"] = "response", *,
    conf_level: float | None = None, eps: float | None = None, binary: bool | None = None,
    jacobian: JacobianMethod = "analytic",
) -> Effects:
    """Slope of ``focal`` at moderator values (mean +- 1 SD, quartiles, or a list).

    ``scale="link"``: the linear-predictor slope, which for ``y ~ f * m`` is the closed form
    b_f + b_fm m with SE sqrt(a' V a), a = d(b_f + b_fm m)/db (obtained from the re-encoded data,
    so centring and other transforms are honoured). ``scale="response"``: the AME of ``focal``
    with the moderator set to each value for every row (the probability-scale simple slope).
    """
    if scale not in ("response", "link"):
        raise UsageError(f"scale must be 'response' or 'link'; got '{scale}'")
    rows, _ = sample_rows(result, data)
    check_variable(result, rows, focal, "focal")
    check_variable(result, rows, moderator, "moderator", numeric=isinstance(values, str))
    if focal == moderator:
        raise UsageError("focal and moderator must be different variables")
    vals, labs = moderator_values(rows[moderator], values)
    eff = avg_slopes(result, data, focal, at={moderator: vals}, type=scale, eps=eps,
                     binary=binary, conf_level=conf_level, jacobian=jacobian)
    labels = eff.labels.assign(value_label=labs)
    return replace(eff, kind="simple_slopes", labels=labels)


def conditional_predictions(
    result: FitResult, data: pd.DataFrame, focal: str, moderator: str,
    values: SimpleValues = "meansd", n_points: int = 50, type: EffectType = "response", *,
    average: bool = True, conf_level: float | None = None, horizon: float | None = None,
    stratum: int = 0,
) -> Effects:
    """Predictions over a grid of ``focal`` at moderator values: the interaction plot's curves.

    ``average=True``: the average prediction with focal and moderator set for every row
    (counterfactual average); ``False``: the prediction for the typical firm (others at means).
    Rows carry ``focal``, ``moderator`` and ``value_label`` columns.
    """
    rows, _ = sample_rows(result, data)
    check_variable(result, rows, focal, "focal")
    check_variable(result, rows, moderator, "moderator", numeric=isinstance(values, str))
    if n_points < 2:
        raise UsageError("n_points must be at least 2")
    vals, labs = moderator_values(rows[moderator], values)
    x = rows[focal].to_numpy(dtype=float)
    fgrid = list(np.linspace(float(x.min()), float(x.max()), n_points))
    at = {moderator: vals, focal: fgrid}
    if average:
        eff = avg_predictions(result, rows, at=at, type=type, conf_level=conf_level,
                              horizon=horizon, stratum=stratum)
    else:
        grid = datagrid(rows, at, columns=model_variables(result, list(rows.columns)))
        eff = predictions(result, newdata=grid, type=type, conf_level=conf_level, horizon=horizon,
                          stratum=stratum)
    lab_of = dict(zip(map(str, vals), labs, strict=True))
    labels = eff.labels.assign(value_label=[lab_of[str(v)] for v in eff.labels[moderator]])
    return replace(eff, labels=labels)
