"""Who may talk to the server: a bearer token and a Host-header check, as one ASGI middleware.

- The token is random per server start and reaches clients only through the address file
  (mode 0600, :mod:`.address`). It is accepted in the ``Authorization: Bearer`` header only:
  query strings end up in logs and browser histories. It is compared in constant time.
- DNS rebinding: a web page can make its own host name resolve to 127.0.0.1 and then talk to a
  loopback server as "same origin". The browser still sends the page's host name in the Host
  header, so requests whose Host is not a loopback name with the bound port are refused.
  (The token alone would stop such a page too; the Host check is the second lock.)
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import secrets

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


def new_token() -> str:
    return secrets.token_urlsafe(32)


def is_loopback_address(host: str) -> bool:
    """Is ``host`` (a bind address or name) on this machine only?"""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def host_allowed(host_header: str | None, port: int, extra_hosts: tuple[str, ...] = ()) -> bool:
    """Is ``host_header`` one of the loopback names (or ``extra_hosts``) with the bound ``port``?

    A missing port means port 80, as in HTTP.
    """
    if not host_header:
        return False
    host_header = host_header.strip().lower()
    if host_header.startswith("["):  # [v6]:port
        name, sep, rest = host_header.partition("]")
        name += "]"
        if rest and not rest.startswith(":"):
            return False
        port_text = rest[1:] if rest else ""
    else:
        name, sep, port_text = host_header.partition(":")
    if sep and not port_text:
        return False
    if port_text:
        if not port_text.isdigit() or int(port_text) != port:
            return False
    elif port != 80:
        return False
    return name in LOOPBACK_NAMES or name in {h.lower() for h in extra_hosts}


def bearer_matches(authorization: str | None, token: str) -> bool:
    """Does the Authorization header carry ``token`` as a Bearer token (constant-time compare)?"""
    if not authorization:
        return False
    scheme, _, given = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    # compare_digest takes the same time whatever the contents; only the length can leak,
    # and every token has the same length.
    return hmac.compare_digest(given.strip().encode("utf-8", "replace"), token.encode("utf-8"))


class AccessGuard:
    """ASGI middleware: Host check, then token check, on every HTTP request."""

    def __init__(self, app, token: str, port: int, extra_hosts: tuple[str, ...] = ()):
        self.app = app
        self.token = token
        self.port = port
        self.extra_hosts = tuple(extra_hosts)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {}
        for key, value in scope.get("headers", ()):
            headers.setdefault(key.decode("latin-1").lower(), value.decode("latin-1"))
        host = headers.get("host")
        if not host_allowed(host, self.port, self.extra_hosts):
            names = " or ".join(f"{n}:{self.port}" for n in LOOPBACK_NAMES + self.extra_hosts)
            await _reply(send, 403, f"Host header {host!r} is refused: this server answers only to {names} (DNS-rebinding guard)")
            return
        if not bearer_matches(headers.get("authorization"), self.token):
            await _reply(
                send,
                401,
                "missing or wrong token: send 'Authorization: Bearer <token>' with the token from the server's address file",
                [(b"www-authenticate", b'Bearer realm="dynapose4d"')],
            )
            return
        await self.app(scope, receive, send)


async def _reply(send, status: int, detail: str, extra_headers=()) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers + list(extra_headers)})
    await send({"type": "http.response.body", "body": body})
