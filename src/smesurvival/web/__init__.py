"""The web dashboard (``smesurvival serve``): upload, validate, run the study, read the results,
and a what-if for one firm. A front-end only: it calls the study API and renders its results.

Needs the ``web`` extra (FastAPI, Uvicorn, python-multipart); ``import smesurvival`` never
imports it. ``create_app(data_dir)`` builds the ASGI app; :func:`smesurvival.web.cli.serve`
runs it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def create_app(*args: Any, **kwargs: Any) -> Any:
    """Build the FastAPI app (see :func:`smesurvival.web.app.create_app`)."""
    from smesurvival.web.app import create_app as _create

    return _create(*args, **kwargs)
