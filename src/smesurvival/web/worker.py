"""One study run, as a background job: ``run_study`` -> report bundle, page view, what-if model.

:func:`execute` runs in a worker process (or thread) and returns plain JSON-able values and the
bundle's bytes; it never touches the database (the server stores what it returns). Errors a
user can fix (:class:`~smesurvival.errors.SmeSurvivalError`) come back as a message to show;
anything else as a reference, with the traceback in the server log only.
"""

from __future__ import annotations

import logging
import re
import shutil
import traceback
import warnings
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from smesurvival.errors import SmeSurvivalError

log = logging.getLogger("smesurvival.web")

_sink: Any = None  # the progress queue of a worker process (set by init)

#: Tables shown on the results page, in order (keys of report.build.build_tables).
PAGE_TABLES = ("flow", "verdicts", "regression", "implications", "cross_model", "hazard_ratios",
               "ph", "incidence", "cause_specific", "ame", "simple_slopes", "ai_norton", "khb",
               "product", "missing", "pooled_verdicts", "descriptives")
_FIGURE = re.compile(r"!\[(?P<caption>[^\]]*)\]\(figures/(?P<file>[\w.-]+\.png)\)")


def init(queue: Any) -> None:
    """Worker-process initialiser: where progress messages go."""
    global _sink
    _sink = queue
    logging.basicConfig(level=logging.WARNING)


class Meter:
    """Progress of one run from ``run_study``'s messages: each message starts a stage, and each
    stage has a rough weight (a model step 1; the bootstrapped effects and mediation sections in
    proportion to their replicates; drawing the report's figures 6)."""

    def __init__(self, spec: Any) -> None:
        eff = spec.effects.bootstrap if spec.effects is not None else 0
        med = spec.mediation.bootstrap if spec.mediation is not None else 0
        models = 1 + len([m for m in spec.robustness_models if m != spec.main_model])
        self.weights = {"interaction effects": 1 + eff / 100, "mediation": 1 + med / 100,
                        "writing the report": 6.0, "packing the bundle": 0.5}
        self.total = 2.0 + len(spec.steps) * models + 1 + sum(self.weights.values())
        self.done = 0.0

    def step(self, message: str) -> float:
        """The fraction done when the stage named by ``message`` starts."""
        at = self.done / self.total
        weight = next((w for k, w in self.weights.items() if message.startswith(k)), None)
        if weight is None:
            weight = 1.0 if ": " in message or message.startswith("exit routes") else 0.5
        self.done += weight
        return min(0.99, at)


def execute(job: dict[str, Any], sink: Any = None) -> dict[str, Any]:
    """Run one study job; see the module docstring for what comes back."""
    queue = sink if sink is not None else _sink
    run_id = job["run_id"]
    work = Path(job["work_dir"])
    meter: Meter | None = None

    def say(message: str) -> None:
        fraction = meter.step(message) if meter is not None else 0.0
        if queue is not None:
            queue.put((run_id, message, fraction))

    try:
        from smesurvival.study.spec import spec_from_dict

        spec = spec_from_dict(job["spec"], source="the study options")
        meter = Meter(spec)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            return _run(job, spec, work, say, caught)
    except SmeSurvivalError as e:
        return {"error": {"kind": "user", "message": str(e), "type": type(e).__name__}}
    except Exception:
        log.error("study run %s failed:\n%s", run_id, traceback.format_exc())
        return {"error": {"kind": "bug", "message": "The study stopped on an internal error; "
                                                     "the details are in the server log.",
                          "type": "InternalError"}}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _run(job: dict[str, Any], spec: Any, work: Path, say: Callable[..., None],
         caught: list[warnings.WarningMessage]) -> dict[str, Any]:
    import pandas as pd

    from smesurvival.report.build import build_tables, write_report
    from smesurvival.study.run import run_study
    from smesurvival.web.bundle import report_bundle
    from smesurvival.web.whatif import whatif_model

    data = pd.read_parquet(job["data_path"]) if job.get("data_path") else None
    result = run_study(spec, data, progress=say)
    if data is not None:  # the upload's own name and bytes, not the server's temporary copy
        result = replace(result, provenance=replace(
            result.provenance, source=job["source"], sha256=job["sha256"]))
    say("writing the report")
    files = write_report(result, work / "report")
    tables = build_tables(result)
    say("packing the bundle")
    bundle = report_bundle(files.out_dir, tables, job["spec"], _readme(result))
    view = _view(result, tables, files.markdown.read_text("utf-8"), caught)
    from smesurvival.report.serialize import dumps

    return {"results_json": dumps(result), "view": view, "whatif": whatif_model(result),
            "bundle": bundle}


def _view(result: Any, tables: dict[str, Any], markdown: str,
          caught: list[warnings.WarningMessage]) -> dict[str, Any]:
    """What the results page shows, rendered once (tables as escaped HTML)."""
    from smesurvival.labels import label
    from smesurvival.report.build import methods_note
    from smesurvival.report.render import to_html
    from smesurvival.report.serialize import SYNTHETIC_BANNER, data_label

    prov = result.provenance
    verdicts = [{
        "hypothesis": v.hypothesis, "statement": v.statement, "term": label(v.term),
        "sign": v.expected_sign, "estimate": v.estimate, "p_value": v.p_value, "test": v.test,
        "step": v.step, "supported": bool(v.supported), "published": v.published,
        "agrees": v.agrees_with_published,
    } for v in result.verdicts]
    figures = [{"file": m["file"], "caption": m["caption"]} for m in _FIGURE.finditer(markdown)]
    notes = list(dict.fromkeys(str(w.message) for w in caught))[:10]
    return {
        "title": result.title, "reference": result.reference, "synthetic": bool(result.synthetic),
        "banner": SYNTHETIC_BANNER if result.synthetic else "", "data_label": data_label(result),
        "caveats": list(result.caveats), "source": prov.source, "sha256": prov.sha256,
        "n_read": result.flow.n_read, "n_used": result.flow.n_used, "n_events": result.n_events,
        "window_years": result.window_years, "verdicts": verdicts,
        "tables": {k: to_html(tables[k]) for k in PAGE_TABLES if k in tables},
        "table_titles": {k: t.title for k, t in tables.items()},
        "figures": figures, "methods": methods_note(result).split("\n\n"),
        "validation_warnings": list(result.validation_warnings), "notes": notes,
    }


def _readme(result: Any) -> str:
    from smesurvival.report.serialize import data_label
    from smesurvival.web.bundle import README

    prov = result.provenance
    return README.format(title=result.title, label=data_label(result), source=prov.source,
                         sha256=prov.sha256 or "n/a", n_read=result.flow.n_read,
                         n_used=result.flow.n_used, caveats="\n\n".join(result.caveats))
