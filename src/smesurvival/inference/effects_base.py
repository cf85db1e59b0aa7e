"""Shared machinery of the effect functions: scales, rows, grids and the ``Effects`` value.

Every quantity in :mod:`.effects`, :mod:`.johnson_neyman` and :mod:`.ai_norton` is a smooth
function of the coefficients evaluated on design matrices that are re-encoded from (possibly
counterfactual) data with the fit's own formulaic spec (STYLE.md lesson 5), so interaction
columns, ``center()`` and ``C()`` levels follow the data automatically. Inference is the delta
method: ``Var(theta) = J V J'`` with ``J = d theta / d beta``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import sparse, stats

from smesurvival.errors import UsageError
from smesurvival.models.result import LINKS, FitResult

Array = np.ndarray
EffectType = Literal["response", "link", "survival", "hr"]
JacobianMethod = Literal["analytic", "numeric"]

#: models whose predictions are probabilities through a binary link
BINARY_LINK_MODELS = ("logit", "probit", "cloglog", "firth", "discrete")
#: central-difference step on each coefficient for ``jacobian="numeric"`` (times max(1, |b_j|))
BETA_STEP = 1e-6
#: default data step for derivatives: this many standard deviations of the focal variable
DATA_STEP = 1e-5


# ---- scales: value and derivatives of g(eta) -----------------------------------------------
@dataclass(frozen=True)
class Scale:
    """A prediction scale g(eta) with its first three derivatives (for Jacobians)."""

    name: str
    f: Callable[[Array], Array]
    d1: Callable[[Array], Array]
    d2: Callable[[Array], Array]
    d3: Callable[[Array], Array]
    increasing: bool = True
    center: Array | None = None  # eta = (x - center)'b (Cox survival: the fit's covariate means)

    def eta_design(self, X: Array) -> Array:
        """The design the scale's eta is linear in (centred for Cox survival)."""
        return X if self.center is None else X - self.center[None, :]


def _identity_scale() -> Scale:
    return Scale("link", lambda e: e, np.ones_like, np.zeros_like, np.zeros_like)


def link_scale(link: str) -> Scale:
    """P = F(eta) for a binary link, with F', F'' = F'k and F''' = F'(k^2 + k'), k = F''/F'."""
    from smesurvival.models.families import FAMILIES

    fam = FAMILIES[link]

    def kprime(e: Array) -> Array:
        if link == "logit":
            return -2.0 * fam.dmu_deta(e)
        if link == "probit":
            return -np.ones_like(e)
        return -np.exp(np.minimum(e, 700.0))

    return Scale(
        "response", fam.mean, fam.dmu_deta,
        lambda e: fam.dmu_deta(e) * fam.d2_over_d1(e),
        lambda e: fam.dmu_deta(e) * (fam.d2_over_d1(e) ** 2 + kprime(e)),
    )


def survival_scale(h0: float, center: Array | None = None) -> Scale:
    """S = exp(-H0 e^eta): S' = -S u, S'' = S u (u - 1), S''' = S(-u^3 + 3u^2 - u), u = H0 e^eta."""

    def u(e: Array) -> Array:
        return h0 * np.exp(np.minimum(e, 700.0))

    def s(e: Array) -> Array:
        return np.exp(-u(e))

    return Scale(
        "survival", s, lambda e: -s(e) * u(e), lambda e: s(e) * u(e) * (u(e) - 1.0),
        lambda e: s(e) * (-u(e) ** 3 + 3.0 * u(e) ** 2 - u(e)), increasing=False,
        center=center,
    )


def model_link(result: FitResult) -> str | None:
    """The binary link of a result (None for survival models)."""
    return result.link or LINKS.get(result.model) or (
        result.extra.get("link") if result.model == "discrete" else None)


def cox_h0(result: FitResult, horizon: float | None, stratum: int) -> float:
    """Baseline cumulative hazard H0(horizon) of a Cox model (treated as fixed)."""
    from smesurvival.models.cox import baseline_cumhaz

    if horizon is None:
        raise UsageError("type='survival' needs horizon= (the time at which S(t | x) is evaluated)")
    if result.baseline is None or str(stratum) not in result.baseline["strata"]:
        raise UsageError(f"the Cox result has no baseline hazard for stratum {stratum}")
    return float(baseline_cumhaz(result, np.array([float(horizon)]), stratum)[0])


def scale_for(result: FitResult, type: str, horizon: float | None = None, stratum: int = 0) -> Scale:
    """The scale of ``type`` for this model, with a clear error for unsupported pairs."""
    if result.model in BINARY_LINK_MODELS:
        link = model_link(result)
        if type == "response" and link is not None:
            return link_scale(link)
        if type == "link":
            return _identity_scale()
        raise UsageError(f"type must be 'response' or 'link' for a {result.model} model; got '{type}'")
    if result.model == "cox":
        if type == "link":
            return _identity_scale()
        if type == "survival":
            # S(t|x) = exp(-H0c(t) exp((x - xbar)'b)), H0c = H0 exp(xbar'b) held fixed: the
            # baseline is fixed at the covariate means (as survfit centres), not at x = 0
            means = result.extra.get("means")
            center = (np.array([means[t] for t in result.terms], dtype=float)
                      if means else np.zeros(len(result.terms)))
            h0 = cox_h0(result, horizon, stratum) * float(np.exp(center @ result.params))
            return survival_scale(h0, center)
        raise UsageError(f"type must be 'link', 'survival' (or 'hr' in predictions) for a Cox model; got '{type}'")
    raise UsageError(
        f"effects are available for {', '.join(BINARY_LINK_MODELS)} and cox models, not '{result.model}'")


# ---- rows, variables and grids ----------------------------------------------------------------
def model_variables(result: FitResult, columns: Sequence[str]) -> tuple[str, ...]:
    """Data columns the right-hand side of the model reads."""
    from smesurvival.models.design import parse_formula

    rhs = result.formula.split("~", 1)[-1]
    return parse_formula(rhs, list(columns)).variables


def categorical_variables(result: FitResult) -> set[str]:
    """Columns that enter the model through a categorical encoding (``C(x)``, strings)."""
    import ast

    spec = result.design_spec or {}
    out: set[str] = set()
    for expr, st in (spec.get("encoder_state") or {}).items():
        if st.get("kind") == "categorical":
            try:
                tree = ast.parse(expr, mode="eval")
            except SyntaxError:
                continue
            calls = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
            out |= {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and id(n) not in calls}
    return out


def sample_rows(result: FitResult, data: pd.DataFrame, outcome: bool = True) -> tuple[pd.DataFrame, int]:
    """Rows complete in the model's variables (and outcome/duration/event when present), as the fit."""
    if not isinstance(data, pd.DataFrame):
        raise UsageError("data must be a pandas DataFrame")
    scale_for_model_check(result)
    cols = list(model_variables(result, list(data.columns)))
    if outcome:
        lhs = result.formula.split("~", 1)[0].strip() if "~" in result.formula else None
        extra = [lhs, result.extra.get("duration"), result.extra.get("event")]
        cols += [c for c in extra if c and c in data.columns and c not in cols]
    keep = data[cols].notna().all(axis=1).to_numpy() if cols else np.ones(len(data), dtype=bool)
    if not keep.any():
        raise UsageError("no rows are complete in the model's variables")
    return data.loc[keep].reset_index(drop=True), int((~keep).sum())


def scale_for_model_check(result: FitResult) -> None:
    """Refuse models the effect functions do not support."""
    if result.model not in (*BINARY_LINK_MODELS, "cox"):
        raise UsageError(
            f"effects are available for {', '.join(BINARY_LINK_MODELS)} and cox models, "
            f"not '{result.model}'")


def check_variable(result: FitResult, data: pd.DataFrame, name: str, role: str,
                   numeric: bool = True) -> None:
    """The variable is a data column the model reads, numeric and not categorically encoded."""
    if name not in data.columns:
        raise UsageError(f"{role} variable '{name}' is not in the data; columns are: "
                         f"{', '.join(map(str, data.columns))}")
    used = model_variables(result, list(data.columns))
    if name not in used:
        raise UsageError(f"{role} variable '{name}' does not enter the model "
                         f"({result.formula}); it reads: {', '.join(used)}")
    if numeric:
        col = data[name]
        if not (pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col)):
            raise UsageError(f"{role} variable '{name}' is not numeric (dtype {col.dtype}); "
                             "slopes need a numeric column (use at= for categorical moderators)")
        if name in categorical_variables(result):
            raise UsageError(f"{role} variable '{name}' enters the model as a category (C(...)); "
                             "its effect is a contrast between levels, not a slope")


def is_binary(col: pd.Series) -> bool:
    """A 0/1 (or boolean) column: its effect is a discrete change, not a derivative."""
    if pd.api.types.is_bool_dtype(col):
        return True
    vals = pd.unique(col.dropna())
    return len(vals) > 0 and set(np.asarray(vals, dtype=float).tolist()) <= {0.0, 1.0}


def binary_values(col: pd.Series) -> tuple[Any, Any]:
    """The (off, on) values of a binary column."""
    return (False, True) if pd.api.types.is_bool_dtype(col) else (0, 1)


def data_step(col: pd.Series, eps: float | None, base: float = DATA_STEP) -> float:
    """Finite-difference step: ``eps`` if given, else ``base`` x the column's SD (1 if constant)."""
    if eps is not None:
        if not (eps > 0 and math.isfinite(eps)):
            raise UsageError(f"eps must be a positive number; got {eps}")
        return float(eps)
    sd = float(np.nanstd(np.asarray(col, dtype=float)))
    return base * (sd if sd > 0 and math.isfinite(sd) else 1.0)


def datagrid(data: pd.DataFrame, values: Mapping[str, Any] | None = None,
             columns: Sequence[str] | None = None) -> pd.DataFrame:
    """A typical-firm grid: each column at its mean (numeric) or mode, crossed with ``values``.

    ``datagrid(data, {"inc": [10, 20], "wcyes": [0, 1]})`` gives four profiles; pass it as
    ``newdata`` to :func:`predictions` or as ``data`` to :func:`slopes` for effects at
    representative values with the other covariates at their means (MER).
    """
    cols = list(columns) if columns is not None else list(data.columns)
    row: dict[str, Any] = {}
    for c in cols:
        s = data[c]
        if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
            row[c] = float(s.mean())
        else:
            vc = s.dropna().value_counts()
            row[c] = vc.index[0] if len(vc) else np.nan
    base = pd.DataFrame([row])
    for c in cols:
        if isinstance(data[c].dtype, pd.CategoricalDtype):
            base[c] = pd.Categorical(base[c], categories=data[c].cat.categories)
    if not values:
        return base
    return counterfactual(base, values)[0]


def combos(at: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Cartesian product of ``at`` values (scalars count as one value), in the given order."""
    keys = list(at)
    lists = [list(v) if isinstance(v, list | tuple | np.ndarray | pd.Series | range) else [v]
             for v in at.values()]
    for k, v in zip(keys, lists, strict=True):
        if not v:
            raise UsageError(f"at: no values given for '{k}'")
    return [dict(zip(keys, vals, strict=True)) for vals in itertools.product(*lists)]


def counterfactual(rows: pd.DataFrame, at: Mapping[str, Any]) -> tuple[pd.DataFrame, Array, list[dict[str, Any]]]:
    """Stack one copy of ``rows`` per ``at`` combination with those columns set for every row."""
    for k in at:
        if k not in rows.columns:
            raise UsageError(f"at: '{k}' is not a column of the data")
    cs = combos(at)
    parts = [set_columns(rows, c) for c in cs]
    stacked = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    return stacked, np.repeat(np.arange(len(cs)), len(rows)), cs


def set_columns(rows: pd.DataFrame, values: Mapping[str, Any]) -> pd.DataFrame:
    """A copy of ``rows`` with each named column set to one value (categories kept)."""
    out = rows.copy()
    for k, v in values.items():
        col = rows[k]
        if isinstance(col.dtype, pd.CategoricalDtype):
            out[k] = pd.Categorical([v] * len(rows), categories=col.cat.categories)
        else:
            out[k] = v
    return out


def encode(result: FitResult, rows: pd.DataFrame) -> Array:
    """The fit's design matrix for ``rows`` (cox: without intercept, as the fit)."""
    return result.design_matrix(rows)


# ---- the linear functional: theta = A sum_k c_k g(X_k beta) --------------------------------
def group_matrix(codes: Array, n_groups: int) -> sparse.csr_matrix:
    """Sparse (groups x rows) averaging matrix."""
    n = codes.size
    counts = np.bincount(codes, minlength=n_groups).astype(float)
    return sparse.csr_matrix((1.0 / counts[codes], (codes, np.arange(n))), shape=(n_groups, n))


def evaluate(beta: Array, pieces: Sequence[tuple[float, Array]], scale: Scale,
             agg: sparse.csr_matrix | None) -> tuple[Array, Array]:
    """Value and exact Jacobian of ``agg @ sum_k c_k g(X_k beta)``."""
    est = np.zeros(pieces[0][1].shape[0])
    jac = np.zeros_like(pieces[0][1])
    for c, X0 in pieces:
        X = scale.eta_design(X0)
        eta = X @ beta
        est += c * scale.f(eta)
        jac += (c * scale.d1(eta))[:, None] * X
    if agg is not None:
        est, jac = agg @ est, np.asarray(agg @ jac)
    return est, jac


def numeric_jacobian(fun: Callable[[Array], Array], beta: Array, step: float = BETA_STEP,
                     column_rms: Array | None = None) -> Array:
    """Central differences of ``fun`` on each coefficient.

    The step of b_j is ``step * max(1, |b_j|) / max(1, rms(X_j))``: scaling by the root mean
    square of the design column keeps the change of the linear predictor near ``step`` for
    large-valued columns such as products (``age:inc``).
    """
    rms = np.ones(beta.size) if column_rms is None else np.maximum(1.0, column_rms)
    cols = []
    for j in range(beta.size):
        h = step * max(1.0, abs(float(beta[j]))) / float(rms[j])
        e = np.zeros_like(beta)
        e[j] = h
        cols.append((fun(beta + e) - fun(beta - e)) / (2.0 * h))
    return np.column_stack(cols)


def critical_value(conf_level: float) -> float:
    """Two-sided normal critical value of a confidence level."""
    if not 0.0 < conf_level < 1.0:
        raise UsageError(f"conf_level must be between 0 and 1; got {conf_level}")
    return float(stats.norm.ppf(0.5 + conf_level / 2.0))
