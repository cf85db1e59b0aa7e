"""Ai & Norton (2003) interaction effects on the probability scale, firm by firm.

In P = F(eta) the interaction effect of x1 and x2 is not the coefficient of x1:x2 but

* both continuous: the cross-partial d2P/dx1dx2 = F''(eta) eta_1 eta_2 + F'(eta) eta_12;
* x1 continuous, x2 binary: the derivative of the discrete change,
  F'(eta^1) eta_1^1 - F'(eta^0) eta_1^0 (superscript: x2 set to 1 / 0);
* both binary: the cross-difference F(eta^11) - F(eta^10) - F(eta^01) + F(eta^00);

where eta_1 = d eta / d x1 etc. come from the re-encoded data (central differences of the
design in x1 and x2, exact for linear and product terms, so ``center()`` and transforms are
honoured). Standard errors use the delta method with the analytic Jacobian (F', F'', F'''
in closed form for logit, probit and cloglog): one SE and z per firm, and for the average.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from smesurvival.errors import UsageError
from smesurvival.inference.effects_base import (
    BINARY_LINK_MODELS,
    Array,
    Scale,
    binary_values,
    check_variable,
    critical_value,
    data_step,
    encode,
    is_binary,
    link_scale,
    model_link,
    sample_rows,
)
from smesurvival.inference.effects_result import Effects
from smesurvival.models.result import FitResult

#: data step of the design differences: this many SDs (larger than for first derivatives,
#: since the cross-difference divides by the product of two steps)
AN_STEP = 1e-4


@dataclass(frozen=True, eq=False)
class AiNorton:
    """Per-firm interaction effects on the probability scale and their average."""

    x1: str
    x2: str
    kind: str  # "cross-partial", "derivative of discrete change", "cross-difference"
    per_firm: Effects  # one row per firm: effect, SE, z; columns predicted, x1, x2
    average: Effects  # one row: the mean interaction effect
    predicted: Array  # predicted probability of each firm
    coefficient: float | None  # the x1:x2 coefficient, if the model has that term
    conf_level: float
    link: str = "logit"

    @property
    def frame(self) -> pd.DataFrame:
        """One row per firm: term, estimate, std_error, statistic (z), p_value, CI, predicted, x1, x2."""
        return self.per_firm.to_frame()

    def to_frame(self) -> pd.DataFrame:
        """Same as :attr:`frame`."""
        return self.frame

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: the average (one record), the x1:x2 coefficient and the per-firm rows."""
        return {"x1": self.x1, "x2": self.x2, "kind": self.kind, "link": self.link,
                "coefficient": self.coefficient, "conf_level": self.conf_level,
                "average": self.average.to_records()[0], "rows": self.per_firm.to_records()}

    @property
    def average_frame(self) -> pd.DataFrame:
        """The average interaction effect with its delta-method SE (one row)."""
        return self.average.to_frame()


def _pieces_binary(result: FitResult, rows: pd.DataFrame, v: str, lo: object, hi: object
                   ) -> tuple[Array, Array]:
    return encode(result, rows.assign(**{v: hi})), encode(result, rows.assign(**{v: lo}))


def _design_diff(result: FitResult, rows: pd.DataFrame, v: str, h: float) -> Array:
    x = rows[v].to_numpy(dtype=float)
    return (encode(result, rows.assign(**{v: x + h})) - encode(result, rows.assign(**{v: x - h}))) / (2 * h)


def _cross_diff(result: FitResult, rows: pd.DataFrame, v1: str, h1: float, v2: str, h2: float) -> Array:
    a = rows[v1].to_numpy(dtype=float)
    b = rows[v2].to_numpy(dtype=float)
    out = np.zeros((len(rows), len(result.params)))
    for s1 in (1.0, -1.0):
        for s2 in (1.0, -1.0):
            out += s1 * s2 * encode(result, rows.assign(**{v1: a + s1 * h1, v2: b + s2 * h2}))
    return out / (4.0 * h1 * h2)


def _both_continuous(result: FitResult, rows: pd.DataFrame, x1: str, x2: str, sc: Scale,
                     h1: float, h2: float) -> tuple[Array, Array]:
    b = result.params
    X = encode(result, rows)
    D1, D2 = _design_diff(result, rows, x1, h1), _design_diff(result, rows, x2, h2)
    D12 = _cross_diff(result, rows, x1, h1, x2, h2)
    eta, e1, e2, e12 = X @ b, D1 @ b, D2 @ b, D12 @ b
    f1, f2, f3 = sc.d1(eta), sc.d2(eta), sc.d3(eta)
    est = f2 * e1 * e2 + f1 * e12
    J = ((f3 * e1 * e2 + f2 * e12)[:, None] * X + (f2 * e2)[:, None] * D1
         + (f2 * e1)[:, None] * D2 + f1[:, None] * D12)
    return est, J


def _mixed(result: FitResult, rows: pd.DataFrame, xc: str, xb: str, sc: Scale, h: float,
           vals: tuple[object, object]) -> tuple[Array, Array]:
    b = result.params
    est = np.zeros(len(rows))
    J = np.zeros((len(rows), b.size))
    for sign, v in ((1.0, vals[1]), (-1.0, vals[0])):
        at = rows.assign(**{xb: v})
        X, D = encode(result, at), _design_diff(result, at, xc, h)
        eta, e1 = X @ b, D @ b
        est += sign * sc.d1(eta) * e1
        J += sign * ((sc.d2(eta) * e1)[:, None] * X + sc.d1(eta)[:, None] * D)
    return est, J


def _both_binary(result: FitResult, rows: pd.DataFrame, x1: str, x2: str, sc: Scale,
                 v1: tuple[object, object], v2: tuple[object, object]) -> tuple[Array, Array]:
    b = result.params
    est = np.zeros(len(rows))
    J = np.zeros((len(rows), b.size))
    for s1, a in ((1.0, v1[1]), (-1.0, v1[0])):
        for s2, c in ((1.0, v2[1]), (-1.0, v2[0])):
            X = encode(result, rows.assign(**{x1: a, x2: c}))
            eta = X @ b
            est += s1 * s2 * sc.f(eta)
            J += (s1 * s2 * sc.d1(eta))[:, None] * X
    return est, J


def ai_norton(
    result: FitResult, data: pd.DataFrame, x1: str, x2: str, *,
    binary: tuple[bool | None, bool | None] = (None, None), eps: tuple[float | None, float | None] = (None, None),
    conf_level: float | None = None,
) -> AiNorton:
    """Interaction effect of ``x1`` and ``x2`` on P(y = 1) for every firm (Ai & Norton 2003).

    Binary 0/1 variables are detected (``binary`` overrides, per variable); ``eps`` are the data
    steps of the design differences (default 1e-4 x SD). Available for logit, probit, cloglog,
    Firth and discrete-time hazard models; the z per firm is estimate / SE.
    """
    if result.model not in BINARY_LINK_MODELS:
        raise UsageError(f"ai_norton needs a binary-outcome model ({', '.join(BINARY_LINK_MODELS)}); "
                         f"this is a {result.model} model")
    link = model_link(result)
    if link is None:
        raise UsageError("this result has no binary link")
    lvl = result.conf_level if conf_level is None else conf_level
    critical_value(lvl)
    if x1 == x2:
        raise UsageError("x1 and x2 must be different variables")
    rows, dropped = sample_rows(result, data)
    for v in (x1, x2):
        check_variable(result, rows, v, "interacting")
    sc = link_scale(link)
    b1 = is_binary(rows[x1]) if binary[0] is None else bool(binary[0])
    b2 = is_binary(rows[x2]) if binary[1] is None else bool(binary[1])
    h1 = data_step(rows[x1], eps[0], AN_STEP)
    h2 = data_step(rows[x2], eps[1], AN_STEP)
    if b1 and b2:
        kind = "cross-difference"
        est, J = _both_binary(result, rows, x1, x2, sc, binary_values(rows[x1]), binary_values(rows[x2]))
    elif b1 or b2:
        kind = "derivative of discrete change"
        xc, xb, h = (x2, x1, h2) if b1 else (x1, x2, h1)
        est, J = _mixed(result, rows, xc, xb, sc, h, binary_values(rows[xb]))
    else:
        kind = "cross-partial"
        est, J = _both_continuous(result, rows, x1, x2, sc, h1, h2)
    pred = sc.f(encode(result, rows) @ result.params)
    term = f"{x1}:{x2}"
    labels = pd.DataFrame({"term": term, "contrast": kind, "rowid": np.arange(len(rows)),
                           "predicted": pred, x1: rows[x1].to_numpy(), x2: rows[x2].to_numpy()})
    per = Effects("ai_norton", result.model, "response", est, J, result.vcov, labels, lvl,
                  n_dropped=dropped)
    avg = Effects("ai_norton_average", result.model, "response", np.array([est.mean()]),
                  J.mean(axis=0)[None, :], result.vcov,
                  pd.DataFrame({"term": [term], "contrast": [f"average {kind}"]}), lvl,
                  n_dropped=dropped)
    coef = None
    for t in (f"{x1}:{x2}", f"{x2}:{x1}"):
        if t in result.terms:
            coef = float(result.params[result.terms.index(t)])
    return AiNorton(x1, x2, kind, per, avg, pred, coef, lvl, link)
