"""The what-if: predicted survival for one firm profile, from a finished study's fitted models.

At the end of a run, :func:`whatif_model` stores what the what-if needs as JSON (the fits'
``to_dict()``, the centring, the inputs with their observed ranges): results are values, and
they load back after a restart. :class:`WhatIf` loads it and answers a profile with

* the probability of surviving the window under the main (binary) model, with its CI,
  along a grid of export ratios, and with and without an R&D alliance;
* the survival curve S(t | profile) under the Cox model of the robustness checks, with a
  pointwise CI (the baseline hazard at the covariate means held fixed, as
  :func:`smesurvival.inference.effects.predictions` does).

Answers must be fast (many users drag sliders at once), so rows are encoded by
:class:`ProfileEncoder`, a numpy encoder for the plain terms the study uses (numbers, ``C(x)``
dummies and their products). It is checked against the fit's own formulaic encoding on probe
rows when the model loads and is used only when the two agree to 1e-12; any other term shape
falls back to the fit's ``design_matrix``. The prediction maths is the library's: the link's
inverse from :func:`~smesurvival.inference.effects_base.link_scale` and the Cox survival scale
from :func:`~smesurvival.inference.effects_base.scale_for`, so the numbers equal
``predictions(...)`` (the tests check it).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from smesurvival.errors import UsageError
from smesurvival.inference.effects_base import link_scale, model_link, scale_for
from smesurvival.models.cox import baseline_cumhaz
from smesurvival.models.design import spec_from_dict
from smesurvival.models.result import FitResult

CAVEAT = (
    "These predictions describe associations in the data the model was fitted on: firms that "
    "export more or have R&D alliances differ from others in ways the model does not see, so "
    "moving a slider shows how survival differs between such firms, not what would happen if "
    "this firm changed. The interval shows the statistical uncertainty of the fitted model only."
)
#: Inputs shown in natural units and the model variable each feeds (with the transform).
NATURAL: dict[str, tuple[str, str, str]] = {
    "log_firm_age": ("firm_age", "Firm age (years)", "log1p"),
    "log_employees": ("employees", "Employees", "log"),
}
BINARY = {"rd_alliance": "R&D alliance", "exporter": "Exporter"}
LABELS = {"export_ratio": "Export ratio (share of sales exported)",
          "rd_intensity": "R&D intensity (R&D employees / employees)",
          "innovativeness": "Technological innovativeness (index)",
          "firm_age": "Firm age (years)", "industry": "Industry", "region": "Region"}
_GRID = 21
_CURVE = 61
_TERM_FACTOR = re.compile(r"C\((?P<var>[A-Za-z_]\w*)\)\[T\.(?P<level>[^\]:]*)\]|(?P<num>[A-Za-z_]\w*)")


# ---- building the stored model (in the worker, from a StudyResult) ---------------------------------
def whatif_model(result: Any) -> dict[str, Any] | None:
    """The JSON the what-if needs from a finished :class:`~smesurvival.study.result.StudyResult`."""
    if not result.steps or result.steps[0].fit.model not in ("logit", "probit", "cloglog"):
        return None
    spec = result.spec
    step = spec.implications[0].step if spec.implications else result.steps[-1].name
    main = result.step(step).fit
    cox = None
    for run in result.robustness:
        if run.model == "cox":
            cox = next((s.fit for s in run.steps if s.name == step), run.steps[-1].fit)
    desc = result.descriptives
    stats_by = {v: (float(desc.min[i]), float(desc.max[i]), float(desc.mean[i]))
                for i, v in enumerate(desc.variables)}
    modal = result.implications[0].low.profile if result.implications else {}
    inputs = _inputs(main, stats_by, modal)
    from smesurvival.report.serialize import data_label

    return {
        "version": 1, "window_years": result.window_years, "synthetic": bool(result.synthetic),
        "data_label": data_label(result), "centering": dict(result.centering),
        "conf_level": float(main.conf_level), "step": step,
        "step_label": result.step(step).label, "model": main.model,
        "main": main.to_dict(), "cox": None if cox is None else cox.to_dict(), "inputs": inputs,
    }


def _categorical(fit: FitResult) -> dict[str, list[Any]]:
    enc = (fit.design_spec or {}).get("encoder_state", {})
    out = {}
    for key, v in enc.items():
        m = re.fullmatch(r"C\((\w+)\)", key)
        if m and v.get("kind") == "categorical":
            out[m.group(1)] = list(v["categories"])
    return out


def _variables(fit: FitResult) -> list[str]:
    enc = (fit.design_spec or {}).get("encoder_state", {})
    out = []
    for key in enc:
        m = re.fullmatch(r"C\((\w+)\)", key)
        out.append(m.group(1) if m else key)
    return out


def _inputs(fit: FitResult, stats_by: dict[str, tuple[float, float, float]],
            modal: dict[str, Any]) -> list[dict[str, Any]]:
    cats = _categorical(fit)
    out: list[dict[str, Any]] = []
    for var in _variables(fit):
        if var in cats:
            levels = [str(c) for c in cats[var]]
            default = str(modal.get(var, levels[0]))
            out.append({"name": var, "variable": var, "kind": "category",
                        "label": LABELS.get(var, var.replace("_", " ").capitalize()),
                        "levels": levels, "default": default if default in levels else levels[0]})
            continue
        lo, hi, mean = stats_by.get(var, (math.nan, math.nan, math.nan))
        if var in BINARY:
            out.append({"name": var, "variable": var, "kind": "binary", "label": BINARY[var],
                        "default": int(round(mean)) if math.isfinite(mean) else 0})
        elif var in NATURAL:
            name, label, how = NATURAL[var]
            back = np.expm1 if how == "log1p" else np.exp
            lo_n, hi_n, mid = (float(back(x)) for x in (lo, hi, mean))
            out.append({"name": name, "variable": var, "kind": "number", "label": label,
                        "transform": how, "min": math.floor(lo_n), "max": math.ceil(hi_n),
                        "step": 1, "default": round(mid)})
        else:
            step = _nice_step(hi - lo)
            out.append({"name": var, "variable": var, "kind": "number",
                        "label": LABELS.get(var, var.replace("_", " ").capitalize()),
                        "transform": "", "min": _floor(lo, step), "max": _ceil(hi, step),
                        "step": step, "default": round(round(mean / step) * step, 10)})
    return out


def _nice_step(span: float) -> float:
    if not math.isfinite(span) or span <= 0:
        return 0.01
    return float(10 ** math.floor(math.log10(span / 100)))


def _floor(x: float, step: float) -> float:
    return round(math.floor(x / step) * step, 10)


def _ceil(x: float, step: float) -> float:
    return round(math.ceil(x / step) * step, 10)


# ---- fast, verified encoding ------------------------------------------------------------------------
class ProfileEncoder:
    """Design rows for plain terms (``x``, ``C(g)[T.a]``, products with ``:``) by numpy.

    ``ok`` is False when a term has another shape or the probe check fails; then
    :meth:`encode` uses the fit's formulaic encoding.
    """

    def __init__(self, fit: FitResult) -> None:
        self.fit = fit
        self.plan: list[list[tuple[str, Any]]] | None = self._plan(fit)
        self.ok = self.plan is not None and self._verify()

    @staticmethod
    def _plan(fit: FitResult) -> list[list[tuple[str, Any]]] | None:
        if (fit.design_spec or {}).get("transform_state"):
            return None
        cats = _categorical(fit)
        plan: list[list[tuple[str, Any]]] = []
        for term in fit.terms:
            if term == "Intercept":
                plan.append([])
                continue
            parts: list[tuple[str, Any]] = []
            pos = 0
            while pos < len(term):
                m = _TERM_FACTOR.match(term, pos)
                if m is None:
                    return None
                if m.group("num"):
                    parts.append(("num", m.group("num")))
                else:
                    var, text = m.group("var"), m.group("level")
                    level = next((c for c in cats.get(var, []) if str(c) == text), None)
                    if level is None:
                        return None
                    parts.append(("level", (var, level)))
                pos = m.end()
                if pos < len(term):
                    if term[pos] != ":":
                        return None
                    pos += 1
            plan.append(parts)
        return plan

    def _columns(self, cols: dict[str, np.ndarray]) -> np.ndarray:
        assert self.plan is not None
        n = len(next(iter(cols.values())))
        num: dict[str, np.ndarray] = {}
        dummy: dict[tuple[str, Any], np.ndarray] = {}
        X = np.empty((n, len(self.plan)))
        for j, parts in enumerate(self.plan):
            col = np.ones(n)
            for kind, what in parts:
                if kind == "num":
                    if what not in num:
                        num[what] = np.asarray(cols[what], dtype=float)
                    col = col * num[what]
                else:
                    if what not in dummy:
                        dummy[what] = np.asarray(cols[what[0]]) == what[1]
                    col = col * dummy[what]
            X[:, j] = col
        return X

    def _verify(self) -> bool:
        rng = np.random.default_rng(0)
        cats = _categorical(self.fit)
        n = max([5, *(len(v) for v in cats.values())])
        probe: dict[str, Any] = {}
        for var in _variables(self.fit):
            probe[var] = [cats[var][i % len(cats[var])] for i in range(n)] if var in cats \
                else rng.normal(size=n)
        try:
            fast = self._columns({k: np.asarray(v, dtype=object if k in cats else float)
                                  for k, v in probe.items()})
            slow = self.fit.design_matrix(pd.DataFrame(probe))
        except Exception:  # any mismatch of shape or levels: use formulaic
            return False
        return fast.shape == slow.shape and bool(np.allclose(fast, slow, rtol=1e-12, atol=1e-12))

    def encode(self, cols: dict[str, np.ndarray]) -> np.ndarray:
        """Design rows for columns given as arrays (model variables, already centred)."""
        return self._columns(cols) if self.ok else self.fit.design_matrix(pd.DataFrame(cols))


def _live(fit_dict: dict[str, Any]) -> FitResult:
    fit = FitResult.from_dict(fit_dict)
    if fit.design_spec is not None:  # build formulaic's spec once, not on every fallback call
        fit = replace(fit, _spec=spec_from_dict(fit.design_spec))
    return fit


# ---- answering a profile ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Band:
    estimate: np.ndarray
    conf_low: np.ndarray
    conf_high: np.ndarray


class WhatIf:
    """A loaded what-if model: :meth:`predict` answers one profile (natural units)."""

    def __init__(self, stored: dict[str, Any]) -> None:
        self.stored = stored
        self.inputs: list[dict[str, Any]] = stored["inputs"]
        self.by_name = {i["name"]: i for i in self.inputs}
        self.centering: dict[str, float] = stored["centering"]
        self.window = float(stored["window_years"])
        self.main = _live(stored["main"])
        self.main_enc = ProfileEncoder(self.main)
        self.scale = link_scale(model_link(self.main) or "logit")
        self.z = float(stats.norm.ppf(0.5 + stored["conf_level"] / 2.0))
        self.cox = _live(stored["cox"]) if stored.get("cox") else None
        self.cox_enc = ProfileEncoder(self.cox) if self.cox is not None else None
        if self.cox is not None:
            survival = scale_for(self.cox, "survival", horizon=self.window)
            assert survival.center is not None
            self.cox_center = survival.center
            self.times = np.linspace(0.0, self.window, _CURVE)
            self.h0c = baseline_cumhaz(self.cox, self.times) * math.exp(
                float(self.cox_center @ self.cox.params))

    def schema(self) -> dict[str, Any]:
        s = self.stored
        return {"inputs": self.inputs, "window_years": s["window_years"], "synthetic": s["synthetic"],
                "data_label": s["data_label"], "model": s["model"], "step": s["step"],
                "step_label": s["step_label"], "cox": self.cox is not None,
                "conf_level": s["conf_level"], "caveat": CAVEAT}

    def profile(self, given: dict[str, Any]) -> dict[str, Any]:
        """Inputs with defaults filled in; unknown names and out-of-range values are refused."""
        unknown = sorted(set(given) - set(self.by_name))
        if unknown:
            raise UsageError(f"unknown profile field(s) {', '.join(map(repr, unknown))}; the "
                             f"fields are {', '.join(self.by_name)}")
        out: dict[str, Any] = {}
        for inp in self.inputs:
            name = inp["name"]
            v = given.get(name, inp["default"])
            if inp["kind"] == "category":
                if str(v) not in inp["levels"]:
                    raise UsageError(f"{name} must be one of {', '.join(inp['levels'])}; got {v!r}")
                out[name] = str(v)
                continue
            try:
                x = float(v)
            except (TypeError, ValueError):
                raise UsageError(f"{name} must be a number; got {v!r}") from None
            if inp["kind"] == "binary":
                if x not in (0.0, 1.0):
                    raise UsageError(f"{name} must be 0 or 1; got {v!r}")
            elif not (math.isfinite(x) and inp["min"] <= x <= inp["max"]):
                raise UsageError(f"{name} must be between {inp['min']:g} and {inp['max']:g}, the "
                                 f"range observed in the data; got {v!r}")
            out[name] = x
        return out

    def _rows(self, profile: dict[str, Any], n: int, **vary: Any) -> dict[str, Any]:
        """Model-variable columns (centred) for ``n`` copies of the profile, some varied."""
        cols: dict[str, Any] = {}
        for inp in self.inputs:
            v = vary.get(inp["name"], profile[inp["name"]])
            if inp["kind"] == "category":
                cols[inp["variable"]] = np.full(n, v, dtype=object)
                continue
            x = np.broadcast_to(np.asarray(v, dtype=float), (n,)).astype(float)
            how = inp.get("transform", "")
            x = np.log1p(x) if how == "log1p" else (np.log(np.maximum(x, 1e-12)) if how == "log" else x)
            cols[inp["variable"]] = x - self.centering.get(inp["variable"], 0.0)
        return cols

    def _frame(self, profile: dict[str, Any], grid: np.ndarray | None
               ) -> tuple[dict[str, np.ndarray], int]:
        """The profile, then the export-ratio grid, then without / with an alliance."""
        parts = [self._rows(profile, 1)]
        if grid is not None:
            parts.append(self._rows(profile, grid.size, export_ratio=grid))
        if "rd_alliance" in self.by_name:
            parts.append(self._rows(profile, 2, rd_alliance=np.array([0.0, 1.0])))
        cols = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        return cols, (0 if grid is None else grid.size)

    def _binary(self, X: np.ndarray) -> Band:
        eta = X @ self.main.params
        se = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", X, self.main.vcov, X), 0.0))
        f = self.scale.f
        return Band(f(eta), f(eta - self.z * se), f(eta + self.z * se))

    def _survival(self, x: np.ndarray) -> Band:
        """S(t | x) over the curve's times with a pointwise CI (decreasing in eta)."""
        assert self.cox is not None
        xc = x - self.cox_center
        eta = float(xc @ self.cox.params)
        se = float(np.sqrt(max(xc @ self.cox.vcov @ xc, 0.0)))

        def s(e: float) -> np.ndarray:
            return np.exp(-self.h0c * math.exp(min(e, 700.0)))

        return Band(s(eta), s(eta + self.z * se), s(eta - self.z * se))

    def predict(self, given: dict[str, Any]) -> dict[str, Any]:
        prof = self.profile(given)
        spec = self.by_name.get("export_ratio")
        grid = np.linspace(spec["min"], spec["max"], _GRID) if spec else None
        frame, n_grid = self._frame(prof, grid)
        band = self._binary(self.main_enc.encode(frame))
        out: dict[str, Any] = {
            "profile": prof, "window_years": self.stored["window_years"],
            "synthetic": self.stored["synthetic"], "data_label": self.stored["data_label"],
            "model": f"{self.stored['model']} model {self.stored['step']} "
                     f"({self.stored['step_label']})",
            "survival": _point(band, 0), "caveat": CAVEAT,
        }
        if grid is not None:
            sl = slice(1, 1 + n_grid)
            out["export_curve"] = {"export_ratio": grid.tolist(), **_series(band, sl)}
        if "rd_alliance" in self.by_name:
            i = 1 + n_grid
            without, with_ = _point(band, i), _point(band, i + 1)
            out["alliance"] = {"without": without, "with": with_,
                               "difference": with_["estimate"] - without["estimate"]}
        if self.cox is not None and self.cox_enc is not None:
            x = self.cox_enc.encode({k: v[:1] for k, v in frame.items()})[0]
            curve = self._survival(x)
            out["cox"] = {"time": self.times.tolist(), **_series(curve, slice(None)),
                          "at_window": _point(curve, -1)}
        return out


def _point(b: Band, i: int) -> dict[str, float]:
    return {"estimate": float(b.estimate[i]), "conf_low": float(b.conf_low[i]),
            "conf_high": float(b.conf_high[i])}


def _series(b: Band, sl: slice) -> dict[str, list[float]]:
    return {"estimate": b.estimate[sl].tolist(), "conf_low": b.conf_low[sl].tolist(),
            "conf_high": b.conf_high[sl].tolist()}
