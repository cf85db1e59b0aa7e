"""Server-rendered pages: home (the built-in study), workspace, data set, run, what-if.

Forms post to these routes and are redirected (303) to the page that shows the outcome; every
page works without JavaScript, and ``/static/app.js`` adds the live progress bar, the live
what-if and its charts.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, File, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.datastructures import FormData

from smesurvival.data.schema import LIST_ROLES, REQUIRED_ROLES, ROLES
from smesurvival.errors import UsageError
from smesurvival.report.render import TABLE_CSS
from smesurvival.web import studyform as sf
from smesurvival.web.app import render
from smesurvival.web.mapping import ROLE_LABELS
from smesurvival.web.service import Service

router = APIRouter(include_in_schema=False)


def _svc(request: Request) -> Service:
    return request.app.state.service  # type: ignore[no-any-return]


def _see(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


@router.get("/assets/tables.css")
def tables_css() -> Response:
    """The report's table style (one definition, shared with the HTML report)."""
    return Response(TABLE_CSS, media_type="text/css", headers={"cache-control": "max-age=3600"})


@router.get("/", response_class=HTMLResponse)
def home(request: Request) -> HTMLResponse:
    svc = _svc(request)
    ws, run = svc.demo()
    status = svc.status(ws, run.id) if run else None
    view = svc.store.result(ws, run.id, "view_json") if run and run.status == "done" else None
    return render(request, "home.html.j2", ws=ws, run=run, status=status, view=view)


@router.post("/workspaces")
def new_workspace(request: Request) -> RedirectResponse:
    return _see(f"/w/{_svc(request).new_workspace()}")


@router.get("/w/{ws}", response_class=HTMLResponse)
def workspace(request: Request, ws: str) -> HTMLResponse:
    svc = _svc(request)
    w = svc.workspace(ws)
    names = {d.id: d.name for d in w["datasets"]}
    runs = [(r, svc.runner.progress(r), names.get(r.dataset_id or "", "built-in cohort"))
            for r in w["runs"]]
    return render(request, "workspace.html.j2", ws=ws, w=w, runs=runs)


@router.post("/w/{ws}/upload")
async def upload(request: Request, ws: str, file: UploadFile = File(...)) -> RedirectResponse:  # noqa: B008
    svc = _svc(request)
    ds = await run_in_threadpool(svc.upload, ws, file.filename, file.file)
    return _see(f"/w/{ws}/d/{ds.id}")


@router.post("/w/{ws}/builtin")
async def builtin(request: Request, ws: str) -> RedirectResponse:
    form = await request.form()
    n, seed = _whole(form, "n", 1612), _whole(form, "seed", 2012)
    ds = await run_in_threadpool(_svc(request).add_builtin, ws, n, seed)
    return _see(f"/w/{ws}/d/{ds.id}")


@router.get("/w/{ws}/d/{ds}", response_class=HTMLResponse)
def dataset(request: Request, ws: str, ds: str) -> HTMLResponse:
    svc = _svc(request)
    d = svc.dataset(ws, ds)
    state = svc.check(d)
    roles = [{"role": r, "label": ROLE_LABELS.get(r, r), "required": r in REQUIRED_ROLES,
              "multiple": r in LIST_ROLES, "value": state["mapping"].get(r)} for r in ROLES]
    return render(request, "dataset.html.j2", ws=ws, d=d, state=state, roles=roles,
                  choices=sf.choices(), public=svc.store.is_public(ws))


@router.post("/w/{ws}/d/{ds}/mapping")
async def mapping(request: Request, ws: str, ds: str) -> RedirectResponse:
    form = await request.form()
    raw: dict[str, Any] = {}
    for role in ROLES:
        values = [str(v) for v in form.getlist(f"role.{role}")]
        raw[role] = values if role in LIST_ROLES else (values[0] if values else None)
    await run_in_threadpool(_svc(request).save_mapping, ws, ds, raw)
    return _see(f"/w/{ws}/d/{ds}#validation")


@router.post("/w/{ws}/d/{ds}/runs")
async def start_run(request: Request, ws: str, ds: str) -> RedirectResponse:
    form = await request.form()
    options = {
        "hypotheses": [str(v) for v in form.getlist("hypotheses")],
        "controls": [str(v) for v in form.getlist("controls")],
        "window_years": _whole(form, "window_years", 5),
        "family": str(form.get("family", "logit")),
        "robustness": form.get("robustness") == "on",
        "bootstrap": _whole(form, "bootstrap", 1000),
        "missing": str(form.get("missing", "listwise")),
    }
    run = await run_in_threadpool(_svc(request).start_run, ws, ds, options)
    return _see(f"/w/{ws}/r/{run.id}")


@router.get("/w/{ws}/r/{run}", response_class=HTMLResponse)
def run_page(request: Request, ws: str, run: str) -> HTMLResponse:
    svc = _svc(request)
    r = svc.run(ws, run)
    status = svc.status(ws, run)
    view = svc.store.result(ws, run, "view_json") if status["status"] == "done" else None
    ds = svc.store.dataset(ws, r.dataset_id) if r.dataset_id else None
    has_whatif = bool(view) and svc.store.result(ws, run, "whatif_json") is not None
    return render(request, "run.html.j2", ws=ws, r=r, status=status, view=view, ds=ds,
                  public=svc.store.is_public(ws), has_whatif=has_whatif)


@router.get("/w/{ws}/r/{run}/whatif", response_class=HTMLResponse)
def whatif_page(request: Request, ws: str, run: str) -> HTMLResponse:
    svc = _svc(request)
    model = svc.whatif(ws, run)
    schema = model.schema()
    names = {i["name"] for i in schema["inputs"]}
    given = {k: v for k, v in request.query_params.items() if k in names}
    answer = model.predict(given)
    return render(request, "whatif.html.j2", ws=ws, run=run, schema=schema, answer=answer)


def _whole(form: FormData, name: str, default: int) -> int:
    value = form.get(name)
    if value is None or value == "":
        return default
    try:
        return int(str(value))
    except ValueError:
        raise UsageError(f"{name} must be a whole number; got {str(value)[:40]!r}") from None
