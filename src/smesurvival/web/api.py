"""The JSON API under ``/api/``: everything the pages do (schema at ``/api/openapi.json``).

Ids in paths are workspace-scoped capabilities: a data set or run id is found only inside its
own workspace, and an unknown or foreign id is a 404 with no hint of whether it exists.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, File, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from smesurvival.web import studyform as sf
from smesurvival.web.bundle import file_stem
from smesurvival.web.security import REPORT_CSP
from smesurvival.web.service import NotFound, Service
from smesurvival.web.store import Dataset, Run

router = APIRouter(prefix="/api", tags=["api"])
_FIGURE = re.compile(r"^[A-Za-z0-9_.-]+\.(png|svg)$")
_TABLE = re.compile(r"^[A-Za-z0-9_:-]+$")


def _svc(request: Request) -> Service:
    return request.app.state.service  # type: ignore[no-any-return]


class BuiltinIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n: int = Field(1612, description="number of firms (50 to 50,000)")
    seed: int = Field(2012, description="random seed")


class MappingIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mapping: dict[str, str | list[str] | None] = Field(
        description="role -> column (a list of columns for innovation_items and rd_alliance; "
                    "null or empty to leave a role unmapped)")


class OptionsIn(BaseModel):
    """Study options: every value is chosen from GET /api/study/options, never written."""

    model_config = ConfigDict(extra="forbid")
    hypotheses: list[str] | None = None
    controls: list[str] | None = None
    window_years: int | None = None
    family: str | None = None
    robustness: bool | None = None
    bootstrap: int | None = None
    missing: str | None = None


class RunIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dataset_id: str
    options: OptionsIn = Field(default_factory=OptionsIn)


class WhatIfIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    profile: dict[str, float | str] = Field(
        default_factory=dict, description="input name -> value (see GET .../whatif); omitted "
                                          "inputs take their typical values")


def dataset_json(ds: Dataset) -> dict[str, Any]:
    return {"id": ds.id, "name": ds.name, "format": ds.format, "sha256": ds.sha256,
            "n_rows": ds.n_rows, "columns": list(ds.columns),
            "synthetic": ds.synthetic is not None, "created": ds.created.isoformat()}


def run_json(run: Run) -> dict[str, Any]:
    return {"id": run.id, "dataset_id": run.dataset_id, "status": run.status,
            "created": run.created.isoformat(), "options": run.options}


@router.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/study/options")
def study_options() -> dict[str, Any]:
    """The allowed values of every study option, and the defaults (the reference study)."""
    return sf.choices()


@router.get("/demo")
def demo(request: Request) -> dict[str, Any]:
    """The public workspace of the built-in (SYNTHETIC) study and its latest run."""
    ws, run = _svc(request).demo()
    return {"workspace": ws, "run": None if run is None else _svc(request).status(ws, run.id)}


@router.post("/workspaces", status_code=201)
def create_workspace(request: Request) -> dict[str, Any]:
    """A new private workspace; its id is the only key to it (keep the link)."""
    ws = _svc(request).new_workspace()
    return {"id": ws, "url": f"/w/{ws}"}


@router.get("/workspaces/{ws}")
def get_workspace(request: Request, ws: str) -> dict[str, Any]:
    w = _svc(request).workspace(ws)
    return {"id": ws, "public": w["public"], "datasets": [dataset_json(d) for d in w["datasets"]],
            "runs": [run_json(r) for r in w["runs"]]}


@router.post("/workspaces/{ws}/datasets", status_code=201)
def upload_dataset(request: Request, ws: str, file: UploadFile = File(...)) -> dict[str, Any]:  # noqa: B008
    """Upload CSV, XLSX, DTA, SAV or Parquet (type sniffed from the content; size-limited)."""
    svc = _svc(request)
    ds = svc.upload(ws, file.filename, file.file)
    return {"dataset": dataset_json(ds), **svc.check(ds)}


@router.post("/workspaces/{ws}/datasets/builtin", status_code=201)
def add_builtin(request: Request, ws: str, body: BuiltinIn) -> dict[str, Any]:
    """Add the built-in SYNTHETIC cohort (calibrated to the 2012 study) as a data set."""
    svc = _svc(request)
    ds = svc.add_builtin(ws, body.n, body.seed)
    return {"dataset": dataset_json(ds), **svc.check(ds)}


@router.get("/workspaces/{ws}/datasets/{ds}")
def get_dataset(request: Request, ws: str, ds: str) -> dict[str, Any]:
    """The data set, its column mapping (saved or suggested) and its validation report."""
    svc = _svc(request)
    d = svc.dataset(ws, ds)
    return {"dataset": dataset_json(d), **svc.check(d)}


@router.put("/workspaces/{ws}/datasets/{ds}/mapping")
def put_mapping(request: Request, ws: str, ds: str, body: MappingIn) -> dict[str, Any]:
    """Save the column mapping (roles -> columns of the file) and validate again."""
    return _svc(request).save_mapping(ws, ds, body.mapping)


@router.get("/workspaces/{ws}/datasets/{ds}/offending.csv")
def offending_csv(request: Request, ws: str, ds: str) -> Response:
    """The first rows that break a validation rule, as CSV (spreadsheet formulas escaped)."""
    return _csv(_svc(request).offending_csv(ws, ds), "offending-rows.csv")


@router.get("/workspaces/{ws}/datasets/{ds}/data.csv")
def data_csv(request: Request, ws: str, ds: str) -> Response:
    """The data set as CSV (spreadsheet formulas escaped)."""
    return _csv(_svc(request).data_csv(ws, ds), "data.csv")


@router.post("/workspaces/{ws}/runs", status_code=202)
def start_run(request: Request, ws: str, body: RunIn) -> dict[str, Any]:
    """Run the study on a data set in the background; poll GET .../runs/{run} for progress."""
    svc = _svc(request)
    run = svc.start_run(ws, body.dataset_id, body.options.model_dump(exclude_none=True))
    return svc.status(ws, run.id)


@router.get("/workspaces/{ws}/runs/{run}")
def get_run(request: Request, ws: str, run: str) -> dict[str, Any]:
    """Status and progress; when done, a summary (verdicts, sample size, caveats)."""
    return _svc(request).status(ws, run)


@router.get("/workspaces/{ws}/runs/{run}/results.json")
def results_json(request: Request, ws: str, run: str) -> Response:
    """Every number of the study (the report bundle's results.json)."""
    return Response(_svc(request).output(ws, run, "results_json"), media_type="application/json")


@router.get("/workspaces/{ws}/runs/{run}/bundle.zip")
def bundle(request: Request, ws: str, run: str) -> Response:
    """The report bundle: HTML, Markdown, LaTeX and Word tables, CSV, results.json, figures."""
    data = _svc(request).output(ws, run, "bundle")
    return Response(data, media_type="application/zip", headers={
        "content-disposition": f'attachment; filename="smesurvival-report-{run[:8]}.zip"'})


@router.get("/workspaces/{ws}/runs/{run}/report.html")
def report_html(request: Request, ws: str, run: str) -> Response:
    """The self-contained HTML report (no script; inline styles and images only)."""
    data = _svc(request).bundle_member(ws, run, "report.html")
    return Response(data, media_type="text/html; charset=utf-8",
                    headers={"content-security-policy": REPORT_CSP})


@router.get("/workspaces/{ws}/runs/{run}/figures/{name}")
def figure(request: Request, ws: str, run: str, name: str) -> Response:
    """A figure of the report (PNG or SVG), by its file name in the bundle."""
    if not _FIGURE.match(name):
        raise NotFound("No such figure.")
    data = _svc(request).bundle_member(ws, run, f"figures/{name}")
    media = "image/png" if name.endswith(".png") else "image/svg+xml"
    return Response(data, media_type=media, headers={"cache-control": "private, max-age=3600"})


@router.get("/workspaces/{ws}/runs/{run}/tables/{key}.csv")
def table_csv(request: Request, ws: str, run: str, key: str) -> Response:
    """One table of the report as CSV (spreadsheet formulas escaped)."""
    if not _TABLE.match(key):
        raise NotFound("No such table.")
    data = _svc(request).bundle_member(ws, run, f"tables/{file_stem(key)}.csv")
    return _csv(data.decode("utf-8"), f"{file_stem(key)}.csv")


@router.get("/workspaces/{ws}/runs/{run}/whatif")
def whatif_schema(request: Request, ws: str, run: str) -> dict[str, Any]:
    """The what-if's inputs (names, ranges, typical values), model and caveat."""
    return _svc(request).whatif(ws, run).schema()


@router.post("/workspaces/{ws}/runs/{run}/whatif")
async def whatif(request: Request, ws: str, run: str, body: WhatIfIn) -> JSONResponse:
    """Predicted survival for a firm profile, with CIs, along export ratio and by alliance,
    and the Cox survival curve; associations, not effects (see ``caveat``)."""
    svc = _svc(request)
    # about a millisecond of numpy once the model is loaded: answered on the event loop, without
    # a thread hop; the first request of a run loads the model in a worker thread
    model = svc.cached_whatif(ws, run)
    if model is None:
        model = await run_in_threadpool(svc.whatif, ws, run)
    return JSONResponse(model.predict(body.profile), headers={"cache-control": "no-store"})


def _csv(text: str, filename: str) -> Response:
    return Response(text.encode("utf-8"), media_type="text/csv; charset=utf-8",
                    headers={"content-disposition": f'attachment; filename="{filename}"'})
