"""Helpers for the server tests: start the real server in a subprocess and talk to it over HTTP
with the standard library only, the way the Blender add-on does.

Run as a program (``python tests/server_fixtures.py serve ...``) it is the real ``dynapose4d``
command line with one extra job kind, ``upload-check``, whose inputs are an image, an optional
video and optional keypoints: the upload checks need a kind with files, and today only ``demo``
(no files) exists. Its jobs are never run (those servers use ``--max-jobs 0``).
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
UPLOAD_KIND = "upload-check"
TINY = {"iterations": 3, "gaussians": 600, "frames": 5, "previews": False}


def register_upload_kind() -> None:
    from dynapose4d import pipeline
    from dynapose4d.formats import IMAGE_SUFFIXES, VIDEO_SUFFIXES

    pipeline.SETTINGS.setdefault(UPLOAD_KIND, pipeline.SETTINGS["demo"])
    pipeline.INPUTS.setdefault(
        UPLOAD_KIND, {"image": (True, IMAGE_SUFFIXES), "video": (False, VIDEO_SUFFIXES), "keypoints": (False, (".json",))}
    )


@dataclass
class Reply:
    status: int
    headers: dict
    body: bytes

    def json(self):
        return json.loads(self.body)

    @property
    def detail(self) -> str:
        try:
            return str(self.json().get("detail"))
        except ValueError:
            return self.body.decode(errors="replace")


@dataclass
class Server:
    proc: subprocess.Popen
    address_file: Path
    jobs_dir: Path
    output: Path
    info: dict = field(default_factory=dict)

    @property
    def port(self) -> int:
        return self.info["port"]

    @property
    def token(self) -> str:
        return self.info["token"]

    @property
    def url(self) -> str:
        return self.info["url"]

    @property
    def auth(self) -> dict:
        return {"Authorization": f"Bearer {self.token}"}

    # -- requests ------------------------------------------------------------------------------
    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None, auth: bool = True, timeout: float = 60) -> Reply:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            all_headers = dict(self.auth if auth else {})
            all_headers.update(headers or {})
            conn.request(method, path, body=body, headers=all_headers)
            resp = conn.getresponse()
            return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
        finally:
            conn.close()

    def get(self, path: str, **kw) -> Reply:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw) -> Reply:
        return self.request("POST", path, **kw)

    def create_job(self, kind: str = "demo", settings: dict | str | None = None, files: dict | None = None, fields: dict | None = None) -> Reply:
        parts = {"kind": kind} if kind is not None else {}
        if settings is not None:
            parts["settings"] = settings if isinstance(settings, str) else json.dumps(settings)
        parts.update(fields or {})
        body, content_type = multipart(parts, files or {})
        return self.post("/v1/jobs", body=body, headers={"Content-Type": content_type})

    def status(self, job_id: str) -> dict:
        reply = self.get(f"/v1/jobs/{job_id}")
        assert reply.status == 200, reply.body
        return reply.json()

    def wait(self, job_id: str, predicate, timeout: float = 90, what: str = "condition") -> dict:
        deadline = time.monotonic() + timeout
        while True:
            status = self.status(job_id)
            if predicate(status):
                return status
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id}: timed out waiting for {what}; last status {status}\nlog:\n{self.get(f'/v1/jobs/{job_id}/log').body.decode()}")
            time.sleep(0.05)

    def wait_state(self, job_id: str, *states: str, timeout: float = 90) -> dict:
        return self.wait(job_id, lambda s: s["state"] in states, timeout, f"state in {states}")

    def events(self, job_id: str, after: int = -1, timeout: float = 90):
        """Yield ``(event, id, data)`` from the SSE stream until it ends."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request("GET", f"/v1/jobs/{job_id}/events?after={after}", headers=self.auth)
            resp = conn.getresponse()
            assert resp.status == 200, resp.read()
            assert resp.getheader("content-type", "").startswith("text/event-stream")
            from blender_addon.link.client import parse_sse  # the add-on's parser: one home for SSE

            yield from parse_sse(resp.readline)
        finally:
            conn.close()

    # -- process -------------------------------------------------------------------------------
    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 20) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def log_text(self) -> str:
        return self.output.read_text(errors="replace") if self.output.exists() else ""


def start_server(
    tmp: Path,
    *args: str,
    jobs_dir: Path | None = None,
    address_file: Path | None = None,
    upload_kind: bool = False,
    threads: int | None = 1,
    timeout: float = 60,
) -> Server:
    """Start ``dynapose4d serve`` on 127.0.0.1 (a free port) and wait for its address file.

    ``threads``: CPU threads for the server and its workers (None: the libraries' defaults)."""
    tmp.mkdir(parents=True, exist_ok=True)
    jobs_dir = jobs_dir or tmp / "jobs"
    address_file = address_file or tmp / "server.json"
    previous = address_file.read_text() if address_file.exists() else None
    output = tmp / f"server-{uuid.uuid4().hex[:8]}.log"
    program = [str(Path(__file__).resolve())] if upload_kind else ["-m", "dynapose4d"]
    cmd = [sys.executable, *program, "serve", "--jobs-dir", str(jobs_dir), "--address-file", str(address_file), *args]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if threads is not None:
        env.update({name: str(threads) for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")})
    with open(output, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=tmp)
    server = Server(proc, address_file, jobs_dir, output)
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{server.log_text()}")
        if address_file.exists():
            text = address_file.read_text()
            if text != previous:
                info = json.loads(text)
                if info.get("pid") == proc.pid:
                    server.info = info
                    return server
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"server did not start within {timeout} s:\n{server.log_text()}")
        time.sleep(0.05)


def finished_demo(server: Server, **settings) -> str:
    """The id of a demo job (``TINY`` plus ``settings``) that ran to its end on ``server``."""
    reply = server.create_job("demo", dict(TINY, **settings))
    assert reply.status == 201, reply.body
    job_id = reply.json()["id"]
    server.wait(job_id, lambda s: s["state"] in ("done", "failed"), timeout=300, what="the demo job to end")
    assert server.status(job_id)["state"] == "done", server.get(f"/v1/jobs/{job_id}/log").body.decode()
    return job_id


def wait_gone(pid: int, timeout: float = 15) -> bool:
    """Whether process ``pid`` has exited within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes]]) -> tuple[bytes, str]:
    """A multipart/form-data body (what the add-on's stdlib client sends)."""
    boundary = "----dp4d" + uuid.uuid4().hex
    out = bytearray()
    for name, value in fields.items():
        out += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
        out += value.encode() + b"\r\n"
    for name, (filename, data) in files.items():
        out += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'.encode()
        out += b"Content-Type: application/octet-stream\r\n\r\n" + data + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out), f"multipart/form-data; boundary={boundary}"


# -- fixtures (test modules opt in with ``pytest_plugins = ["tests.server_fixtures"]``) ---------------


@pytest.fixture(scope="session")
def upload_server(tmp_path_factory):
    """A server that accepts jobs but never runs them, with a small upload limit (4 MiB)."""
    server = start_server(tmp_path_factory.mktemp("upload-server"), "--max-jobs", "0", "--max-upload-mb", "4", upload_kind=True)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def job_server(tmp_path_factory):
    """A server that runs one job at a time (the default)."""
    server = start_server(tmp_path_factory.mktemp("job-server"))
    yield server
    server.stop()


if __name__ == "__main__":
    register_upload_kind()
    from dynapose4d.cli.main import main

    sys.exit(main(sys.argv[1:]))
