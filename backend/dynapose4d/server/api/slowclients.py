"""Slow clients are dropped: a connection may not hold the server's resources by stalling.

- Headers: a connection that has not sent a complete request head within ``header_timeout_s``
  of opening (or of its previous response) is closed (:func:`header_timeout_protocol`, a
  uvicorn h11 protocol with a watchdog; uvicorn itself waits for headers forever).
- Body: a request whose body stops arriving for ``body_timeout_s`` is answered 408 and closed
  (:class:`BodyTimeout`, an ASGI middleware around ``receive``). Once the body is complete the
  timeout no longer applies, so event streams that wait for a disconnect are unaffected.
"""

from __future__ import annotations

import asyncio
import json

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol


class ClientTooSlow(Exception):
    """The request body stalled for longer than the body timeout (HTTP 408)."""


def header_timeout_protocol(header_timeout_s: float) -> type[H11Protocol]:
    """An h11 protocol class that closes connections waiting for request headers too long."""

    class HeaderTimeoutProtocol(H11Protocol):
        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._waiting_since = self.loop.time()
            self._watchdog = self.loop.call_later(min(1.0, header_timeout_s), self._check_headers)

        def _check_headers(self) -> None:
            if self.transport.is_closing():
                return
            now = self.loop.time()
            # IDLE: the client has not finished the head of its next request (h11's view).
            if self.conn.their_state is not h11.IDLE:
                self._waiting_since = now
            elif now - self._waiting_since >= header_timeout_s:
                self.transport.close()
                return
            self._watchdog = self.loop.call_later(min(1.0, header_timeout_s), self._check_headers)

        def connection_lost(self, exc) -> None:
            self._watchdog.cancel()
            super().connection_lost(exc)

    return HeaderTimeoutProtocol


class BodyTimeout:
    """ASGI middleware: a request body that stalls for ``timeout_s`` raises :class:`ClientTooSlow`
    inside the route (which then cleans up), and the client gets 408 if nothing was sent yet."""

    def __init__(self, app, timeout_s: float):
        self.app = app
        self.timeout_s = timeout_s

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body_done = False
        started = False

        async def receive_in_time():
            nonlocal body_done
            if body_done:
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), self.timeout_s)
            except asyncio.TimeoutError:
                raise ClientTooSlow(f"the request body stalled for more than {self.timeout_s:g} s; the upload was dropped") from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            return message

        async def send_tracked(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive_in_time, send_tracked)
        except ClientTooSlow as exc:
            if not started:
                body = json.dumps({"detail": str(exc)}).encode()
                await send({"type": "http.response.start", "status": 408, "headers": [
                    (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), (b"connection", b"close")]})
                await send({"type": "http.response.body", "body": body})
