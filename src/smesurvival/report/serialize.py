"""``result_to_dict``: a whole :class:`StudyResult` as a JSON-safe dict (``results.json``).

Shared by the report, the CLI and the web app so they all publish the same document. NaN and
infinities become ``null``; numpy arrays become lists; no pickle anywhere (DESIGN.md, "results
are values").
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from smesurvival.models.result import FitResult
    from smesurvival.study.result import (
        CauseSpecificFit,
        ModelRun,
        ModelStep,
        StudyResult,
        Verdict,
    )

#: 2: adds ``model``, ``robustness``, ``cause_specific``, ``ph_check``, ``incidence`` and the
#: numbers at risk / log-rank test of ``survival_by_group``.
#: 3: adds ``effects`` (AME, simple slopes, Ai–Norton, Johnson–Neyman), ``mediation`` (KHB and
#: product of coefficients with bootstrap CIs) and ``missing`` (missingness table; with MICE the
#: pooled steps and verdicts).
SCHEMA_VERSION = 3

SYNTHETIC_BANNER = (
    "SYNTHETIC DATA — calibrated to the published study; shows that the toolkit works, "
    "not that the 2012 findings are true"
)


def json_safe(obj: Any) -> Any:
    """Recursively convert numpy values, tuples, dataclasses and paths to JSON types.

    Non-finite floats become ``None`` so that ``json.dumps(..., allow_nan=False)`` succeeds and
    the file is valid JSON for every parser (JavaScript included).
    """
    if obj is None or isinstance(obj, bool | str):
        return obj
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, int | np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, np.ndarray):
        return [json_safe(v) for v in obj.tolist()]
    if isinstance(obj, Mapping):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        return [json_safe(v) for v in obj]
    if isinstance(obj, PurePath):
        return str(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: json_safe(getattr(obj, f.name)) for f in dataclasses.fields(obj)
                if not f.name.startswith("_")}
    to_dict = getattr(obj, "to_dict", None)
    if callable(to_dict):
        return json_safe(to_dict())
    return str(obj)


def data_label(result: StudyResult) -> str:
    """The one-line statement of what data the numbers come from (the synthetic banner)."""
    if result.synthetic:
        return SYNTHETIC_BANNER
    return f"Observed data: {result.provenance.source}"


def fit_to_dict(fit: FitResult) -> dict[str, Any]:
    """A fit as published in ``results.json``: :meth:`FitResult.to_dict` without the design."""
    return {k: v for k, v in fit.to_dict().items() if k != "design_spec"}


def step_to_dict(step: ModelStep) -> dict[str, Any]:
    lr = step.lr_vs_previous
    return {
        "name": step.name,
        "label": step.label,
        "formula": step.formula,
        "fit": fit_to_dict(step.fit),
        "lr_vs_previous": None if lr is None else {
            "chi2": lr.chi2, "df": lr.df, "p_value": lr.p_value},
    }


def verdict_to_dict(v: Verdict) -> dict[str, Any]:
    d = {f.name: getattr(v, f.name) for f in dataclasses.fields(v)}
    d["verdict"] = "supported" if v.supported else "not supported"
    d["agrees_with_published"] = v.agrees_with_published
    return d


def _verdicts(verdicts: Any) -> list[dict[str, Any]]:
    from smesurvival.report.tables import label as term_label

    return [verdict_to_dict(v) | {"term_label": term_label(v.term)} for v in verdicts]


def run_to_dict(run: ModelRun) -> dict[str, Any]:
    """A robustness run: its estimator, steps (with fits) and verdicts."""
    return {
        "model": run.model, "label": run.label, "scale": run.scale,
        "steps": [step_to_dict(s) for s in run.steps],
        "verdicts": _verdicts(run.verdicts),
    }


def cause_specific_to_dict(c: CauseSpecificFit) -> dict[str, Any]:
    return {
        "exit_type": c.exit_type, "step": c.step, "n_events": c.n_events, "note": c.note,
        "fit": None if c.fit is None else fit_to_dict(c.fit),
    }


def _spec_dict(spec: Any) -> Any:
    if spec is None:
        return None
    for attr in ("to_dict", "as_dict"):
        f = getattr(spec, attr, None)
        if callable(f):
            try:
                return f()
            except Exception:  # a spec that cannot describe itself must not sink the report
                return None
    if dataclasses.is_dataclass(spec) and not isinstance(spec, type):
        return spec
    return None


def result_to_dict(result: StudyResult) -> dict[str, Any]:
    """The whole study as a JSON-safe dict; ``json.dumps(d, allow_nan=False)`` always works."""
    prov = result.provenance
    d = result.descriptives
    flow_rows = [{"label": lab, "dropped": dr, "remaining": left}
                 for lab, dr, left in result.flow.rows()]
    out: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "synthetic": bool(result.synthetic),
        "label": data_label(result),
        "study": result.study,
        "title": result.title,
        "reference": result.reference,
        "provenance": {
            "source": prov.source, "sha256": prov.sha256, "n_rows": prov.n_rows,
            "synthetic": prov.synthetic, "generator": prov.generator,
            "smesurvival_version": prov.smesurvival_version,
        },
        "outcome": result.outcome,
        "model": result.steps[0].fit.model if result.steps else None,
        "window_years": result.window_years,
        "n_events": result.n_events,
        "centering": dict(result.centering),
        "sample_flow": {**result.flow.to_dict(), "rows": flow_rows},
        "validation_warnings": list(result.validation_warnings),
        "descriptives": {
            "variables": list(d.variables), "labels": list(d.labels), "n": d.n, "mean": d.mean,
            "sd": d.sd, "min": d.min, "max": d.max, "corr": d.corr, "corr_p": d.corr_p,
        },
        "steps": [step_to_dict(s) for s in result.steps],
        "lr_tests": [
            {"step": s.name, "chi2": s.lr_vs_previous.chi2, "df": s.lr_vs_previous.df,
             "p_value": s.lr_vs_previous.p_value}
            for s in result.steps if s.lr_vs_previous is not None
        ],
        "verdicts": _verdicts(result.verdicts),
        "implications": [
            dataclasses.asdict(i) | {"difference": i.high.probability - i.low.probability}
            for i in result.implications
        ],
        "curves": None if result.curves is None else json_safe(result.curves),
        "survival_by_group": [json_safe(g) for g in result.survival_by_group],
        "robustness": [run_to_dict(r) for r in result.robustness],
        "cause_specific": [cause_specific_to_dict(c) for c in result.cause_specific],
        "ph_check": None if result.ph_check is None else json_safe(result.ph_check),
        "incidence": None if result.incidence is None else json_safe(result.incidence),
        "effects": None if result.effects is None else json_safe(result.effects),
        "mediation": None if result.mediation is None else json_safe(result.mediation),
        "missing": None if result.missing is None else _missing(result),
        "caveats": list(result.caveats),
        "spec": _spec_dict(result.spec),
    }
    return json_safe(out)


def _missing(result: StudyResult) -> dict[str, Any]:
    ms = result.missing
    assert ms is not None
    d = json_safe(ms)
    d["any_missing"] = ms.any_missing
    d["pooled_verdicts"] = [verdict_to_dict(v) for v in ms.pooled_verdicts]
    return json_safe(d)


def dumps(result: StudyResult, indent: int | None = 2) -> str:
    """``results.json`` text: strict JSON (no NaN), UTF-8 characters kept readable."""
    return json.dumps(result_to_dict(result), indent=indent, ensure_ascii=False, allow_nan=False)
