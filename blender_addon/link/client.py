"""HTTP client of the DynaPose4D backend (``/v1``), standard library only (no bpy, no requests).

Every request carries ``Authorization: Bearer <token>``; the token and URL come from the
server's address file or from the add-on's preferences. A client keeps one keep-alive
connection and is not thread-safe: give each thread its own (:meth:`BackendClient.clone`).
Errors raise :class:`BackendError` with the server's ``detail`` and what to do about it.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator
from urllib.parse import urlencode, urlsplit

from ..format.sequence import Sampling, Sequence, assemble
from ..format.skinned import Skinned, decode_skinned
from ..format.wire import decode_frame

ADDRESS_FORMAT = "dynapose4d.server/1"
API = "/v1"
CHUNK = 1 << 20
TIMEOUT_SETUP_S = 960.0  # the server gives its self-test 900 s


class BackendError(RuntimeError):
    """A request that failed; ``status`` is the HTTP status (None: no answer at all)."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class SnapshotReplaced(BackendError):
    """The snapshot being fetched was replaced by a newer one (HTTP 409 on a versioned fetch)."""


@dataclass(frozen=True)
class Connection:
    """Where the backend listens and its token."""

    url: str
    token: str

    @classmethod
    def from_address_file(cls, path: str | os.PathLike) -> "Connection":
        """Read the address file a running server writes (``dynapose4d serve``)."""
        try:
            info = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise BackendError(f"no backend address file at {path}: the backend is not running (or writes its file elsewhere)") from None
        except (OSError, ValueError) as exc:
            raise BackendError(f"cannot read the backend address file {path}: {exc}") from None
        if not isinstance(info, dict) or info.get("format") != ADDRESS_FORMAT:
            raise BackendError(f"{path} is not a DynaPose4D server address file")
        if address_file_is_stale(info):
            raise BackendError(
                f"the backend at {info.get('url')} is not running (stale address file {path}: its process {info.get('pid')} "
                "is gone); start the backend again, and it replaces the file"
            )
        return cls(url=str(info["url"]), token=str(info["token"]))


def address_file_is_stale(info: dict) -> bool:
    """Does this address file name a server process of this machine that no longer runs? (A file
    copied from another machine, or one without a PID, is never called stale.)"""
    pid = info.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0 or os.name == "nt":
        return False  # on Windows os.kill(pid, 0) would end the process
    if info.get("hostname", socket.gethostname()) != socket.gethostname():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # alive, but someone else's
    return False


class BackendClient:
    def __init__(self, url: str, token: str, timeout: float = 60.0):
        parts = urlsplit(url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise BackendError(f"backend URL {url!r} must look like http://127.0.0.1:8765")
        self.url = url.strip().rstrip("/")
        self.token = token.strip()
        self.timeout = timeout
        self._scheme = parts.scheme
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._base = parts.path.rstrip("/") + API
        self._conn: http.client.HTTPConnection | None = None

    @classmethod
    def connect(cls, connection: Connection, timeout: float = 60.0) -> "BackendClient":
        return cls(connection.url, connection.token, timeout)

    def clone(self) -> "BackendClient":
        return BackendClient(self.url, self.token, self.timeout)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- transport ---------------------------------------------------------------------------------
    def _new_connection(self, timeout: float | None) -> http.client.HTTPConnection:
        kind = http.client.HTTPSConnection if self._scheme == "https" else http.client.HTTPConnection
        return kind(self._host, self._port, timeout=self.timeout if timeout is None else timeout)

    def _headers(self, extra: dict | None = None) -> dict:
        return {"Authorization": f"Bearer {self.token}", **(extra or {})}

    def request(self, method: str, path: str, *, query: dict | None = None, body=None, headers: dict | None = None,
                timeout: float | None = None) -> tuple[int, dict, bytes]:
        """``(status, headers, body)`` of a request to ``/v1{path}``; 4xx/5xx raise BackendError."""
        target = self._base + path + (f"?{urlencode(query)}" if query else "")
        retry = body is None or isinstance(body, (bytes, bytearray))  # a streamed body cannot be re-sent
        for attempt in (0, 1):
            if self._conn is None or timeout is not None:
                self.close()
                self._conn = self._new_connection(timeout)
            try:
                self._conn.request(method, target, body=body, headers=self._headers(headers))
                resp = self._conn.getresponse()
                data = resp.read()
                status, resp_headers = resp.status, {k.lower(): v for k, v in resp.getheaders()}
                if resp_headers.get("connection", "").lower() == "close" or timeout is not None:
                    self.close()
                break
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                # A keep-alive connection the server closed meanwhile: open a fresh one once.
                self.close()
                if attempt or not retry:
                    raise BackendError(f"the backend at {self.url} closed the connection ({exc})") from None
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                raise BackendError(_unreachable(self.url, exc)) from None
        if status >= 400:
            raise _error(status, data, method, path)
        return status, resp_headers, data

    def json(self, method: str, path: str, **kwargs):
        _, _, data = self.request(method, path, **kwargs)
        return json.loads(data)

    # -- service -----------------------------------------------------------------------------------
    def health(self) -> dict:
        """Version, device, GPU, models available, job counts."""
        return self.json("GET", "/health")

    def setup_report(self) -> dict:
        """The backend's self-test on its own machine (seconds to minutes: it loads the models)."""
        return self.json("GET", "/setup", timeout=TIMEOUT_SETUP_S)

    def kinds(self) -> dict:
        """Job kinds with their settings (types, ranges, defaults) and input files."""
        return self.json("GET", "/kinds")

    # -- models on the backend's machine -------------------------------------------------------------
    def models(self) -> dict:
        """``{"models": [...], "no_model_kinds", "cache"}``: each model's licence, state, sizes, download."""
        return self.json("GET", "/models")

    def start_download(self, name: str, *, accept_license: bool, token: str | None = None, full_precision: bool = False) -> dict:
        """Start downloading ``name`` on the backend's machine. ``token`` (a Hugging Face token for
        a gated model) travels in the body of this one request and is used by that download only."""
        body = json.dumps({"accept_license": bool(accept_license), "token": token or None, "full_precision": full_precision})
        return self.json("POST", f"/models/{name}/download", body=body.encode(), headers={"Content-Type": "application/json"})

    def cancel_download(self, name: str) -> dict:
        return self.json("POST", f"/models/{name}/download/cancel")

    def convert_poseanything(self, file: str) -> dict:
        """Convert the PoseAnything checkpoint at ``file`` (a path on the backend's machine)."""
        body = json.dumps({"file": file}).encode()
        return self.json("POST", "/models/poseanything/convert", body=body, headers={"Content-Type": "application/json"},
                         timeout=max(self.timeout, 600.0))

    # -- jobs --------------------------------------------------------------------------------------
    def create_job(self, kind: str, settings: dict, files: dict[str, str | os.PathLike] | None = None) -> dict:
        """Upload the inputs and queue a job; returns its status (``id``, ``state``, ...)."""
        parts, length, content_type = _multipart({"kind": kind, "settings": json.dumps(settings)}, files or {})
        headers = {"Content-Type": content_type, "Content-Length": str(length)}
        return json.loads(self.request("POST", "/jobs", body=_stream(parts), headers=headers)[2])

    def jobs(self) -> list[dict]:
        return self.json("GET", "/jobs")["jobs"]

    def status(self, job_id: str) -> dict:
        return self.json("GET", f"/jobs/{job_id}")

    def cancel(self, job_id: str) -> dict:
        return self.json("POST", f"/jobs/{job_id}/cancel")

    def log(self, job_id: str, lines: int = 50) -> str:
        return self.request("GET", f"/jobs/{job_id}/log", query={"lines": lines})[2].decode("utf-8", "replace")

    def events(self, job_id: str, after: int = -1, timeout: float = 60.0) -> "EventStream":
        """The job's server-sent events from id ``after`` on (keepalives arrive every 15 s)."""
        return EventStream(self, job_id, after, timeout)

    # -- driving-video candidates (generate) ---------------------------------------------------------
    def candidates(self, job_id: str) -> dict:
        """``{"candidates": [{index, seed, motion_bucket, score, chosen, ...}], "waiting", "chosen", "chosen_by"}``."""
        return self.json("GET", f"/jobs/{job_id}/candidates")

    def candidate_preview(self, job_id: str, index: int) -> bytes:
        """A PNG strip of a few frames of candidate ``index``."""
        return self.request("GET", f"/jobs/{job_id}/candidates/{int(index)}/preview")[2]

    def choose_candidate(self, job_id: str, index: int) -> dict:
        """Drive the job with candidate ``index``; it is queued again (its status)."""
        return self.json("POST", f"/jobs/{job_id}/candidates/{int(index)}/choose")

    # -- results -----------------------------------------------------------------------------------
    def frame(self, job_id: str, index: int, sampling: Sampling, version: int | None = None) -> bytes:
        """Frame ``index`` in the wire format (``format.wire.decode_frame`` reads it)."""
        query = {**sampling.query(), "dtype": sampling.dtype}
        if version is not None:
            query["version"] = version
        try:
            return self.request("GET", f"/jobs/{job_id}/frames/{index}", query=query)[2]
        except BackendError as exc:
            if exc.status == 409 and version is not None:
                raise SnapshotReplaced(str(exc), 409) from None
            raise

    def keypoints(self, job_id: str, sampling: Sampling, version: int | None = None) -> dict:
        """Every keypoint's trajectory, the skeleton and the reference camera (JSON)."""
        query = sampling.query()
        if version is not None:
            query["version"] = version
        try:
            return self.json("GET", f"/jobs/{job_id}/keypoints", query=query)
        except BackendError as exc:
            if exc.status == 409 and version is not None:
                raise SnapshotReplaced(str(exc), 409) from None
            raise

    def mesh(self, job_id: str, sampling: Sampling, version: int | None = None, **options) -> Skinned:
        """The snapshot's skinned mesh (``options``: ``max_bones``, ``target_faces``, ``resolution``)."""
        query = {**sampling.query(), **options}
        if version is not None:
            query["version"] = version
        try:
            data = self.request("GET", f"/jobs/{job_id}/mesh", query=query, timeout=max(self.timeout, 300.0))[2]
        except BackendError as exc:
            if exc.status == 409 and version is not None:
                raise SnapshotReplaced(str(exc), 409) from None
            raise
        return decode_skinned(data)

    def sequence(self, job_id: str, sampling: Sampling, version: int | None = None, should_stop=lambda: False,
                 on_frame=None, mesh: dict | None = None) -> Sequence | None:
        """Fetch one snapshot as a :class:`Sequence` (keypoints first, which pins the version),
        with its skinned mesh when ``mesh`` (the mesh endpoint's options) is given.

        Returns None when ``should_stop()`` turns true between frames; raises
        :class:`SnapshotReplaced` when a newer snapshot replaces it meanwhile."""
        tracks = self.keypoints(job_id, sampling, version)
        version = tracks.get("snapshot", {}).get("version", version)
        frames = []
        for index in range(sampling.frame_count):
            if should_stop():
                return None
            frames.append(decode_frame(self.frame(job_id, index, sampling, version)))
            if on_frame is not None:
                on_frame(index + 1, sampling.frame_count)
        sequence = assemble(frames, tracks, sampling)
        if mesh is not None:
            sequence.skinned = self.mesh(job_id, sampling, version, **mesh)
        return sequence


class EventStream:
    """Iterate ``(event, id, data)`` over a job's server-sent events; ``close()`` from any thread
    ends the iteration (the socket is shut down)."""

    def __init__(self, client: BackendClient, job_id: str, after: int, timeout: float):
        self.client, self.job_id, self.after, self.timeout = client, job_id, after, timeout
        self._conn: http.client.HTTPConnection | None = None
        self._closed = False

    def close(self) -> None:
        self._closed = True
        conn = self._conn
        if conn is not None and conn.sock is not None:
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def __iter__(self) -> Iterator[tuple[str, int | None, dict]]:
        c = self.client
        self._conn = conn = c._new_connection(self.timeout)
        try:
            try:
                conn.request("GET", f"{c._base}/jobs/{self.job_id}/events?after={self.after}", headers=c._headers())
                resp = conn.getresponse()
            except (OSError, http.client.HTTPException) as exc:
                raise BackendError(_unreachable(c.url, exc)) from None
            if resp.status >= 400:
                raise _error(resp.status, resp.read(), "GET", f"/jobs/{self.job_id}/events")

            def readline() -> bytes:
                if self._closed:
                    return b""
                try:
                    return resp.readline()
                except (OSError, http.client.HTTPException) as exc:
                    if self._closed:
                        return b""
                    raise BackendError(f"lost the event stream of job {self.job_id}: {exc}") from None

            yield from parse_sse(readline)
        finally:
            conn.close()


# -- helpers ----------------------------------------------------------------------------------------


def parse_sse(readline: Callable[[], bytes]) -> Iterator[tuple[str, int | None, dict]]:
    """Server-sent events read line by line: ``(event, id, data)`` until ``end`` or the end of
    the stream (``readline`` returns b""). ``data`` is the JSON payload (or ``{"text": ...}``)."""
    event, event_id, data = None, None, []
    while True:
        line = readline()
        if not line:
            return
        line = line.decode("utf-8", "replace").rstrip("\r\n")
        if line == "":
            if event is not None:
                try:
                    payload = json.loads("\n".join(data)) if data else {}
                except ValueError:
                    payload = {"text": "\n".join(data)}
                yield event, event_id, payload
                if event == "end":
                    return
            event, event_id, data = None, None, []
        elif line.startswith(":"):
            continue
        else:
            key, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if key == "event":
                event = value
            elif key == "id" and value.strip().isdigit():
                event_id = int(value)
            elif key == "data":
                data.append(value)


def _unreachable(url: str, exc: Exception) -> str:
    reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return (f"cannot reach the DynaPose4D backend at {url} ({reason}). Start it from the DynaPose4D panel, "
            "or check the URL, the port and the SSH tunnel in the add-on's preferences")


def _error(status: int, data: bytes, method: str, path: str) -> BackendError:
    try:
        detail = json.loads(data).get("detail")
    except (ValueError, AttributeError):
        detail = data.decode("utf-8", "replace").strip()[:500]
    if isinstance(detail, list):  # FastAPI's parameter errors
        detail = "; ".join(f"{'.'.join(map(str, d.get('loc', [])))}: {d.get('msg')}" for d in detail if isinstance(d, dict))
    hint = ""
    if status == 401:
        hint = " Copy the token from the server's address file into the add-on's preferences."
    elif status == 403:
        hint = " Reach the server through 127.0.0.1 with the same port on both ends of the SSH tunnel."
    return BackendError(f"{method} {path}: {status} {detail}{hint}", status)


def _multipart(fields: dict[str, str], files: dict[str, str | os.PathLike]) -> tuple[list, int, str]:
    """A multipart/form-data body as a list of byte strings and file paths, its length and type."""
    boundary = "----dynapose4d" + uuid.uuid4().hex
    parts: list = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for role, path in files.items():
        path = Path(path)
        if not path.is_file():
            raise BackendError(f"input {role!r}: {path} is not a file")
        filename = path.name.replace('"', "_").replace("\r", "_").replace("\n", "_")
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{role}"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n".encode()
        )
        parts.append(path)
        parts.append(b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    length = sum(p.stat().st_size if isinstance(p, Path) else len(p) for p in parts)
    return parts, length, f"multipart/form-data; boundary={boundary}"


def _stream(parts: list):
    for part in parts:
        if isinstance(part, Path):
            with open(part, "rb") as fh:
                while chunk := fh.read(CHUNK):
                    yield chunk
        else:
            yield part
