"""``smesurvival serve``: start the web dashboard on this machine.

:func:`serve` is the Python entry point; :func:`serve_command` is its typer command (registered
in the main CLI as ``serve``); ``python -m smesurvival.web.cli`` runs it on its own. This module
imports only typer at import time: FastAPI and Uvicorn are loaded when the server starts.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Annotated

import typer

from smesurvival.errors import UsageError

DEFAULT_DATA_DIR = "smesurvival-data"


def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    data_dir: str | Path = DEFAULT_DATA_DIR,
    *,
    max_upload_mb: float = 200.0,
    workers: int = 1,
    demo: bool = True,
    log_level: str = "info",
) -> None:
    """Run the dashboard at ``http://host:port/`` until interrupted (Ctrl-C).

    ``data_dir`` holds the DuckDB file with every workspace, data set and result (created if
    needed; data survive a restart). On the first start the built-in study is computed once.
    """
    try:
        import uvicorn

        from smesurvival.web.app import create_app
    except ImportError as e:
        raise UsageError(f"the web dashboard needs the 'web' extra ({e.name} is missing): "
                         "pip install 'smesurvival[web]'") from None
    if not 1 <= port <= 65535:
        raise UsageError(f"--port must be between 1 and 65535; got {port}")
    if max_upload_mb <= 0:
        raise UsageError("--max-upload-mb must be positive")
    if workers < 1:
        raise UsageError("--workers must be at least 1")
    _check_port(host, port)
    from smesurvival.web.store import Store

    Store(Path(data_dir).expanduser().absolute()).close()  # a clear error if another server has it
    app = create_app(data_dir, max_upload_mb=max_upload_mb, workers=workers, demo=demo)
    typer.echo(f"smesurvival dashboard: http://{host}:{port}/  (data in {Path(data_dir).absolute()};"
               " Ctrl-C to stop)", err=True)
    uvicorn.run(app, host=host, port=port, log_level=log_level, server_header=False,
                proxy_headers=False, access_log=False)


def _check_port(host: str, port: int) -> None:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        raise UsageError(f"--host '{host}' is not a known address of this machine") from None
    family, _, _, _, addr = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(addr)
        except OSError as e:
            raise UsageError(f"cannot listen on {host}:{port} ({e.strerror}); is another server "
                             "using it? Choose another --port") from None


def serve_command(
    host: Annotated[str, typer.Option(help="address to listen on (127.0.0.1: this machine only)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
    data_dir: Annotated[str, typer.Option("--data-dir", help="folder for the database of workspaces, data and results")] = DEFAULT_DATA_DIR,
    max_upload_mb: Annotated[float, typer.Option("--max-upload-mb", help="largest upload accepted, in MB")] = 200.0,
    workers: Annotated[int, typer.Option(help="studies that may run at the same time (one process each)")] = 1,
    demo: Annotated[bool, typer.Option("--demo/--no-demo", help="compute the built-in study on the first start")] = True,
) -> None:
    """Start the web dashboard: upload data, run the study, read results, what-if for one firm."""
    serve(host, port, data_dir, max_upload_mb=max_upload_mb, workers=workers, demo=demo)


def main() -> None:
    """``python -m smesurvival.web.cli``: the serve command on its own (exit 2 on bad input)."""
    import sys

    from smesurvival.errors import SmeSurvivalError

    try:
        typer.run(serve_command)
    except SmeSurvivalError as e:
        typer.echo(f"error: {e}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
