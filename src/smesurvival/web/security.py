"""Security plumbing of the web app: ids, headers, body limits, safe names and CSV cells.

* Workspace, data-set and run ids are 128-bit random hex strings: unguessable, and checked
  against ``^[0-9a-f]{32}$`` before any look-up, so a URL cannot smuggle anything else in.
* :class:`SecurityMiddleware` (pure ASGI, outermost) adds the security headers to every
  response, refuses bodies over the limit with 413 (from ``Content-Length`` before reading, and
  while streaming for chunked bodies), and turns any unhandled exception into a plain 500 page
  with a reference number: the traceback goes to the server log, never to the client.
* :func:`csv_cell` escapes spreadsheet formulas (cells starting with ``=``, ``+``, ``-``, ``@``,
  tab or carriage return get a leading apostrophe); plain numbers are left alone.
* :func:`display_name` turns an uploaded file's name into a label; it never becomes a path.
"""

from __future__ import annotations

import logging
import re
import secrets
import unicodedata
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

log = logging.getLogger("smesurvival.web")

ID_PATTERN = re.compile(r"^[0-9a-f]{32}$")

#: Content-Security-Policy of every page: scripts and styles only from our own static files
#: (no inline script, no eval), images from us or data: URIs, no framing, no plugins.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
#: The downloadable HTML report is self-contained (inline CSS, base64 figures) and has no
#: script at all: it may use inline styles, nothing else.
REPORT_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'"

SECURITY_HEADERS: dict[str, str] = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",  # workspace URLs are capabilities: never leak them
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=()",
}

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def new_id() -> str:
    """A fresh 128-bit random id (32 lowercase hex digits)."""
    return secrets.token_hex(16)


def valid_id(value: str) -> bool:
    return bool(ID_PATTERN.match(value or ""))


def csv_cell(value: Any) -> Any:
    """A value safe to write into a CSV opened by a spreadsheet.

    Text starting with ``=``, ``+``, ``-``, ``@``, tab or carriage return is prefixed with an
    apostrophe so that Excel, LibreOffice and Google Sheets show it as text instead of running
    it as a formula (OWASP "CSV injection"); numbers, and text that is a plain number such as
    ``-0.25``, are kept as they are.
    """
    if value is None or isinstance(value, bool | int | float):
        return value
    text = str(value)
    if text.startswith(_FORMULA_START) and not _PLAIN_NUMBER.match(text):
        return "'" + text
    return text


def display_name(filename: str | None, default: str = "upload") -> str:
    """A label for an uploaded file: its last path component, printable, at most 120 chars.

    Only ever shown (escaped) or stored as text; files are saved under names the server makes.
    """
    name = (filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in unicodedata.normalize("NFC", name)
                   if unicodedata.category(ch)[0] not in ("C", "Z") or ch == " ")
    name = name.strip(" .")
    return (name or default)[:120]


class BodyTooLarge(Exception):
    """The request body is larger than the limit of its route."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the request body is larger than {limit:,} bytes")
        self.limit = limit


Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
ErrorPage = Callable[[str, int, str, str], tuple[str, bytes]]


class SecurityMiddleware:
    """Outermost ASGI layer: security headers, body size limits, and no tracebacks out.

    ``limit_for(path)`` gives the byte limit of a request's body; ``error_page(path, status,
    title, message)`` renders the error body as ``(media type, bytes)`` (JSON under ``/api/``).
    """

    def __init__(self, app: ASGIApp, limit_for: Callable[[str], int], error_page: ErrorPage) -> None:
        self.app = app
        self.limit_for = limit_for
        self.error_page = error_page

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        limit = self.limit_for(path)
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers", []))
                have = {k.decode("latin-1").lower() for k, _ in headers}  # a route's own CSP wins
                for k, v in SECURITY_HEADERS.items():
                    if k not in have:
                        headers.append((k.encode("latin-1"), v.encode("latin-1")))
                if "cache-control" not in have and not path.startswith("/static/"):
                    headers.append((b"cache-control", b"no-store"))  # capability URLs: no caches
                message["headers"] = headers
            await send(message)

        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await self._error(send_with_headers, path, 413, "Too large",
                              f"The upload is {declared:,} bytes; the limit is {limit:,} bytes.")
            return
        seen = 0

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        try:
            await self.app(scope, counting_receive, send_with_headers)
        except BodyTooLarge as e:
            if not started:
                await self._error(send_with_headers, path, 413, "Too large",
                                  f"The upload is larger than the limit of {e.limit:,} bytes.")
        except Exception:
            ref = secrets.token_hex(4)
            log.exception("unhandled error (reference %s) on %s %s", ref, scope.get("method"), path)
            if not started:
                await self._error(send_with_headers, path, 500, "Internal error",
                                  f"Something went wrong on our side (reference {ref}). The "
                                  "details are in the server log; nothing you sent was lost.")

    async def _error(self, send: Send, path: str, status: int, title: str, message: str) -> None:
        media, body = self.error_page(path, status, title, message)
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", media.encode("latin-1")),
            (b"content-length", str(len(body)).encode("latin-1")),
            (b"cache-control", b"no-store"),
            (b"connection", b"close"),
        ]})
        await send({"type": "http.response.body", "body": body})


def _content_length(scope: Scope) -> int | None:
    for k, v in scope.get("headers", []):
        if k.lower() == b"content-length":
            try:
                return int(v)
            except ValueError:
                return None
    return None
