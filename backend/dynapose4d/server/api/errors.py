"""How failures become answers: every error is JSON ``{"detail": ...}``, never a bare 500.

- Our own exceptions map to their 4xx status (:func:`install_error_handlers`); an
  :class:`~.uploads.UploadError` carries its own.
- A full disk (``ENOSPC``/``EDQUOT`` anywhere in an exception's chain) is 507 with the free space
  of the jobs folder, so the user knows what to clear.
- Anything else that escapes a route is a bug: 500 with a message and a request id; the traceback
  goes to the server log under the same id (:class:`RequestIds`).
"""

from __future__ import annotations

import json
import traceback
import uuid
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from ..runner.diskspace import DiskFull, disk_full_message, is_disk_full
from .slowclients import ClientTooSlow
from .uploads import UploadError

REQUEST_ID_KEY = "dynapose4d.request_id"


class ErrorJSON(JSONResponse):
    """An error body in ASCII JSON: a message may quote client text that is not valid UTF-8
    (a lone surrogate from a ``\\ud800`` escape), which must not turn the answer into a 500."""

    def render(self, content) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False).encode("ascii")


def install_error_handlers(app: FastAPI, mapping: dict[type[BaseException], int], jobs_dir: Path) -> None:
    """``mapping``: exception type -> 4xx status (the message is the exception's text)."""

    def handler(status: int):
        async def handle(request: Request, exc: Exception):
            return ErrorJSON({"detail": str(exc)}, status_code=status)

        return handle

    for exc_type, status in mapping.items():
        app.add_exception_handler(exc_type, handler(status))

    @app.exception_handler(ClientTooSlow)
    async def too_slow(request: Request, exc: ClientTooSlow):
        return ErrorJSON({"detail": str(exc)}, status_code=408, headers={"Connection": "close"})  # the rest of the body never came

    @app.exception_handler(UploadError)
    async def upload_error(request: Request, exc: UploadError):
        # The body may be half read: tell the client not to reuse the connection.
        return ErrorJSON({"detail": str(exc)}, status_code=exc.status, headers={"Connection": "close"})

    @app.exception_handler(DiskFull)
    async def disk_full(request: Request, exc: DiskFull):
        return ErrorJSON({"detail": str(exc)}, status_code=507, headers={"Connection": "close"})

    # Starlette answers with this handler, then re-raises to the server, where RequestIds logs it.
    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        request_id = request.scope.get(REQUEST_ID_KEY) or uuid.uuid4().hex[:12]
        if is_disk_full(exc):
            return ErrorJSON({"detail": disk_full_message(jobs_dir), "request_id": request_id}, status_code=507)
        detail = f"internal error ({type(exc).__name__}) in {request.method} {request.url.path}; the server log has the details under request id {request_id}"
        return ErrorJSON({"detail": detail, "request_id": request_id}, status_code=500, headers={"X-Request-Id": request_id})


class RequestIds:
    """ASGI middleware (outermost): gives each request an id, and logs any exception that reached
    the server (with its traceback) under that id instead of letting it escape."""

    def __init__(self, app, say=print):
        self.app = app
        self.say = say

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex[:12]
        scope[REQUEST_ID_KEY] = request_id
        started = False

        async def send_tracked(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, send_tracked)
        except Exception as exc:  # noqa: BLE001 - logged here, answered below if nothing was sent yet
            if is_disk_full(exc):
                self.say(f"request {request_id} ({scope.get('method')} {scope.get('path')}): disk full: {exc}")
            else:
                trace = "".join(traceback.format_exception(exc)).rstrip()
                self.say(f"error: request {request_id} ({scope.get('method')} {scope.get('path')}) failed:\n{trace}")
            if not started:
                body = (b'{"detail": "internal error; the server log has the details under request id %s", "request_id": "%s"}'
                        % (request_id.encode(), request_id.encode()))
                await send({"type": "http.response.start", "status": 500,
                            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
