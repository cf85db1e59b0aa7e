"""The application factory: ``create_app(data_dir)`` -> a FastAPI app (pages + JSON API).

The app opens its DuckDB file and its job runner at start-up (lifespan), queues the built-in
study on the first start so the home page shows a complete study, and closes both at shutdown.
Pages live under ``/`` (server-rendered Jinja2, one small script), the JSON API under
``/api/`` with its OpenAPI schema at ``/api/openapi.json``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import jinja2
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from smesurvival.errors import SmeSurvivalError
from smesurvival.web.jobs import ExecutorKind, Runner
from smesurvival.web.security import SecurityMiddleware
from smesurvival.web.service import Service, WebError
from smesurvival.web.store import Store

HERE = Path(__file__).parent
DEFAULT_UPLOAD_MB = 200.0
_BODY_LIMIT = 1 << 20  # JSON and form bodies other than uploads
_MULTIPART_SLACK = 16 << 10  # multipart framing around the file (the file itself is checked too)


def templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
    )
    env.filters["pct"] = lambda x, d=1: "–" if x is None else f"{100 * float(x):.{d}f}%"
    env.filters["num"] = lambda x, d=3: "–" if x is None else f"{float(x):.{d}f}"
    env.filters["pval"] = lambda p: "–" if p is None else ("<.001" if p < 0.001 else f"{p:.3f}".lstrip("0"))
    return env


def is_upload(path: str) -> bool:
    parts = path.strip("/").split("/")
    return (len(parts) == 4 and parts[0] == "api" and parts[1] == "workspaces" and parts[3] == "datasets") \
        or (len(parts) == 3 and parts[0] == "w" and parts[2] == "upload")


def create_app(
    data_dir: str | Path,
    *,
    max_upload_mb: float = DEFAULT_UPLOAD_MB,
    executor: ExecutorKind = "process",
    workers: int = 1,
    demo: bool = True,
    demo_bootstrap: int | None = None,
) -> FastAPI:
    """The web app on ``data_dir`` (created if needed; holds ``smesurvival.duckdb``).

    ``max_upload_mb`` limits uploads (413 above it); ``executor`` runs studies in worker
    processes (default) or threads; ``workers`` studies run at once; ``demo`` queues the
    built-in study on first start (``demo_bootstrap`` overrides its bootstrap replicates).
    """
    root = Path(data_dir).expanduser().absolute()
    upload_limit = int(max_upload_mb * (1 << 20))
    env = templates()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = Store(root)
        runner = Runner(store, root, executor, workers)
        service = Service(store, runner, root, demo_bootstrap, upload_limit)
        app.state.service = service
        if demo:
            service.start()
        else:
            for run in store.unfinished():
                runner.submit(run)
        try:
            yield
        finally:
            runner.shutdown()
            store.close()

    app = FastAPI(
        title="smesurvival", version=_version(), lifespan=lifespan,
        description="Upload firm data, validate it, run the SME survival study, read the "
                    "results and ask what-if questions. Every page of the dashboard uses "
                    "this API.",
        openapi_url="/api/openapi.json", docs_url=None, redoc_url=None,
    )
    app.state.templates = env
    app.state.upload_limit = upload_limit

    def limit_for(path: str) -> int:
        return upload_limit + _MULTIPART_SLACK if is_upload(path) else _BODY_LIMIT

    def error_page(path: str, status: int, title: str, message: str) -> tuple[str, bytes]:
        if path.startswith("/api/"):
            return "application/json", json.dumps(
                {"error": {"status": status, "kind": title, "message": message}}).encode()
        html = env.get_template("error.html.j2").render(status=status, title=title,
                                                       message=message, back=None)
        return "text/html; charset=utf-8", html.encode()

    def respond(request: Request, status: int, kind: str, title: str, message: str) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": {"status": status, "kind": kind, "message": message}},
                                status_code=status)
        back = "/" if status == 404 else _back(request.url.path)  # echo no unknown id
        html = env.get_template("error.html.j2").render(status=status, title=title,
                                                       message=message, back=back)
        return HTMLResponse(html, status_code=status)

    @app.exception_handler(WebError)
    async def _web_error(request: Request, exc: WebError) -> Response:
        title = {404: "Not found", 403: "Read-only", 413: "Too large"}.get(exc.status, "Refused")
        return respond(request, exc.status, type(exc).__name__, title, exc.message)

    @app.exception_handler(SmeSurvivalError)
    async def _user_error(request: Request, exc: SmeSurvivalError) -> Response:
        title = "The file could not be read" if type(exc).__name__ == "DataReadError" else "Please check your input"
        return respond(request, 400, type(exc).__name__, title, str(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()) if p != 'body')}: {e.get('msg', '')}"
            for e in exc.errors()[:5])
        return respond(request, 422, "RequestValidationError", "Please check your input",
                       f"The request is not valid: {problems}.")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        title = {404: "Not found", 405: "Not allowed"}.get(exc.status_code, "Refused")
        message = "There is no page at this address." if exc.status_code == 404 else str(exc.detail)
        return respond(request, exc.status_code, "HTTPException", title, message)

    from smesurvival.web import api, pages

    app.include_router(api.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.add_middleware(SecurityMiddleware, limit_for=limit_for, error_page=error_page)
    return app


def _back(path: str) -> str | None:
    parts = path.strip("/").split("/")
    if len(parts) >= 2 and parts[0] == "w":
        return "/w/" + parts[1] + ("/d/" + parts[3] if len(parts) >= 4 and parts[2] == "d" else "")
    return "/"


def _version() -> str:
    from smesurvival import __version__

    return __version__


def render(request: Request, template: str, **context: Any) -> HTMLResponse:
    """A page from ``templates/`` (autoescaped) with the common context."""
    env: jinja2.Environment = request.app.state.templates
    html = env.get_template(template).render(upload_mb=request.app.state.upload_limit / (1 << 20),
                                             **context)
    return HTMLResponse(html, headers={"cache-control": "no-store"})
