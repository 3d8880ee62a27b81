"""A Hugging Face Hub on 127.0.0.1 for the download tests: the subset of the Hub's HTTP API that
``huggingface_hub.snapshot_download`` (2.4, read from its source) uses, nothing more.

    GET  /api/models/{repo}[/revision/{rev}]         repo_info: {"id", "sha", "siblings", "gated"}
    GET  /api/models/{repo}/tree/{rev}?recursive=..   list_repo_tree: files with size, oid, lfs
    HEAD /{repo}/resolve/{rev}/{path}                 get_hf_file_metadata: X-Repo-Commit, ETag, Content-Length
    GET  /{repo}/resolve/{rev}/{path}                 http_get, with "Range: bytes=N-" on a retry (206)

Errors carry the Hub's ``X-Error-Code`` header, which huggingface_hub turns into its exception
classes: ``GatedRepo`` (401 without a token, 403 with a token that has no access),
``RepoNotFound``, ``RevisionNotFound``, ``EntryNotFound``. Metadata stays public for a gated
repository, as on the Hub; only its files need the token.

Faults for the tests: :meth:`FakeHub.drop_once` closes the connection part-way through a file
(huggingface_hub then resumes with a Range request), :meth:`FakeHub.slow` throttles a file (so a
test can cancel mid-download). Every request is logged (method, path, range, whether a token came).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

LFS_MIN_BYTES = 1024  # files this big are listed as LFS files (weights), as on the Hub


@dataclass
class Repo:
    repo_id: str
    files: dict[str, bytes]
    gated: bool = False
    tokens: tuple[str, ...] = ()  # tokens whose accounts accepted the licence
    sha: str = ""

    def __post_init__(self):
        digest = hashlib.sha1()
        for name in sorted(self.files):
            digest.update(name.encode() + hashlib.sha256(self.files[name]).digest())
        self.sha = digest.hexdigest()

    def etag(self, name: str) -> str:
        return hashlib.sha256(self.files[name]).hexdigest()

    def tree(self) -> list[dict]:
        entries, folders = [], set()
        for name, data in sorted(self.files.items()):
            parts = name.split("/")
            folders.update("/".join(parts[:i]) for i in range(1, len(parts)))
            entry = {"type": "file", "oid": hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest(), "size": len(data), "path": name}
            if len(data) >= LFS_MIN_BYTES:
                entry["lfs"] = {"oid": self.etag(name), "size": len(data), "pointerSize": 134}
            entries.append(entry)
        return [{"type": "directory", "oid": "0" * 40, "size": 0, "path": f} for f in sorted(folders)] + entries


@dataclass
class Logged:
    method: str
    path: str
    range: str | None
    token: str | None  # the bearer token sent, if any


@dataclass
class FakeHub:
    repos: dict[str, Repo] = field(default_factory=dict)
    log: list[Logged] = field(default_factory=list)
    drops: dict[str, int] = field(default_factory=dict)  # "repo/path" -> bytes sent before the connection drops (once)
    throttles: dict[str, float] = field(default_factory=dict)  # "repo/path" -> bytes per second
    server: ThreadingHTTPServer | None = None

    # -- set-up ----------------------------------------------------------------------------------
    def add_folder(self, repo_id: str, folder: str | Path, *, gated: bool = False, tokens: tuple[str, ...] = (),
                   extra: dict[str, bytes] | None = None) -> Repo:
        """Serve ``folder``'s files as ``repo_id`` (plus ``extra`` files, e.g. a root checkpoint)."""
        folder = Path(folder)
        files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
        files.update(extra or {})
        self.repos[repo_id] = Repo(repo_id, files, gated, tuple(tokens))
        return self.repos[repo_id]

    def drop_once(self, repo_id: str, path: str, after_bytes: int) -> None:
        self.drops[f"{repo_id}/{path}"] = after_bytes

    def slow(self, repo_id: str, path: str, bytes_per_s: float) -> None:
        self.throttles[f"{repo_id}/{path}"] = bytes_per_s

    def fetched(self, repo_id: str, method: str = "GET") -> list[Logged]:
        """The file requests (``/resolve/``) of ``repo_id`` so far."""
        return [r for r in self.log if r.method == method and r.path.startswith(f"/{repo_id}/resolve/")]

    # -- the server --------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> "FakeHub":
        hub = self

        class Handler(_Handler):
            pass

        Handler.hub = hub
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, name="fake-hub", daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    hub: FakeHub

    def log_message(self, *args) -> None:  # quiet: the hub keeps its own log
        pass

    def do_GET(self) -> None:
        self._serve(body=True)

    def do_HEAD(self) -> None:
        self._serve(body=False)

    # -- routing -----------------------------------------------------------------------------------
    def _serve(self, body: bool) -> None:
        path = unquote(urlsplit(self.path).path)
        auth = self.headers.get("Authorization") or ""
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else None
        self.hub.log.append(Logged(self.command, path, self.headers.get("Range"), token))
        if path.startswith("/api/models/"):
            return self._api(path[len("/api/models/"):])
        parts = path.lstrip("/").split("/")
        if len(parts) >= 5 and parts[2] == "resolve":
            return self._resolve("/".join(parts[:2]), parts[3], "/".join(parts[4:]), token, body)
        self._error(404, "RepoNotFound", "no such route")

    def _api(self, rest: str) -> None:
        parts = rest.split("/")
        repo = self.hub.repos.get("/".join(parts[:2]))
        if repo is None:
            return self._error(401, "RepoNotFound", "Repository not found")
        tail = parts[2:]
        if not tail or tail[0] == "revision":
            if tail and tail[1] not in ("main", repo.sha):
                return self._error(404, "RevisionNotFound", "Invalid rev id")
            info = {"id": repo.repo_id, "sha": repo.sha, "private": False, "gated": "manual" if repo.gated else False,
                    "siblings": [{"rfilename": n} for n in sorted(repo.files)]}
            return self._json(info, repo)
        if tail[0] == "tree" and len(tail) >= 2:
            if tail[1] not in ("main", repo.sha):
                return self._error(404, "RevisionNotFound", "Invalid rev id")
            prefix = "/".join(tail[2:])
            entries = [e for e in repo.tree() if not prefix or e["path"].startswith(prefix + "/")]
            return self._json(entries, repo)
        self._error(404, "EntryNotFound", "no such API route")

    def _resolve(self, repo_id: str, revision: str, name: str, token: str | None, body: bool) -> None:
        repo = self.hub.repos.get(repo_id)
        if repo is None:
            return self._error(401, "RepoNotFound", "Repository not found", body=body)
        if repo.gated and token is None:
            return self._error(401, "GatedRepo", f"Access to model {repo_id} is restricted. You must be authenticated.", repo, body)
        if repo.gated and token not in repo.tokens:
            return self._error(403, "GatedRepo", f"Access to model {repo_id} is restricted and you are not in the authorized list.",
                               repo, body)
        if revision not in ("main", repo.sha):
            return self._error(404, "RevisionNotFound", "Invalid rev id", repo, body)
        if name not in repo.files:
            return self._error(404, "EntryNotFound", f"{name} does not exist", repo, body)
        self._file(repo, name, body)

    # -- answers -----------------------------------------------------------------------------------
    def _file(self, repo: Repo, name: str, body: bool) -> None:
        data = repo.files[name]
        start = 0
        wanted = self.headers.get("Range")
        if wanted and wanted.startswith("bytes=") and wanted[6:].split("-")[0].isdigit():
            start = int(wanted[6:].split("-")[0])
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(data) - start))
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", f'"{repo.etag(name)}"')
        self.send_header("X-Repo-Commit", repo.sha)
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        if not body:
            return
        key = f"{repo.repo_id}/{name}"
        drop = self.hub.drops.pop(key, None)
        rate = self.hub.throttles.get(key)
        self._send(data[start:], drop, rate)

    def _send(self, data: bytes, drop: int | None, rate: float | None) -> None:
        if drop is not None:
            self.wfile.write(data[:drop])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)  # the peer sees a short body: a dropped connection
            return
        chunk = 4096 if rate else len(data) or 1
        for i in range(0, len(data), chunk):
            self.wfile.write(data[i:i + chunk])
            if rate:
                self.wfile.flush()
                time.sleep(chunk / rate)

    def _json(self, value, repo: Repo) -> None:
        data = json.dumps(value).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Repo-Commit", repo.sha)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _error(self, status: int, code: str, message: str, repo: Repo | None = None, body: bool = True) -> None:
        data = json.dumps({"error": message}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Error-Code", code)
        self.send_header("X-Error-Message", message)
        if repo is not None:
            self.send_header("X-Repo-Commit", repo.sha)
        self.end_headers()
        if body:
            self.wfile.write(data)


# -- fixtures (test modules opt in with pytest_plugins = [..., "tests.fake_hub"]) ----------------------

ZERO123 = "ashawkey/zero123-xl-diffusers"
STABLE = "ashawkey/stable-zero123-diffusers"
SVD = "stabilityai/stable-video-diffusion-img2vid"
TOKEN = "hf_TestTokenThatMustNeverLandOnDisk0123456789"  # the account that accepted SVD's licence
OTHER_TOKEN = "hf_AnAccountThatHasNotAcceptedTheLicence000"
ROOT_CKPT = "sd-zero123-xl.ckpt"  # a root-level original checkpoint: never fetched
BIG = 24 * 1024 * 1024  # over huggingface_hub's 10 MiB read chunk, so a drop after it resumes mid-file


@pytest.fixture(scope="session")
def hub(tiny_zero123, tiny_svd, tmp_path_factory):
    """The hub with three repositories: the tiny Zero123-XL (and a root checkpoint beside it), a
    Stable Zero123 whose UNet file is 24 MiB of random bytes (for drops and cancels: never
    loaded), and the tiny SVD, gated (only :data:`TOKEN`'s account accepted its licence)."""
    big = tmp_path_factory.mktemp("big") / "stable"
    shutil.copytree(tiny_zero123["stable-zero123"], big)
    (big / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(os.urandom(BIG))
    with FakeHub() as server:
        server.add_folder(ZERO123, tiny_zero123["zero123-xl"], extra={ROOT_CKPT: b"\0" * 4096})
        server.add_folder(STABLE, big)
        server.add_folder(SVD, tiny_svd, gated=True, tokens=(TOKEN,))
        yield server


@pytest.fixture
def hf_home(hub, tmp_path, monkeypatch):
    """A fresh HF_HOME (no token file or cache of the user's is read), no token in the
    environment, and the hub's log cleared."""
    for var in ("HF_TOKEN", "HF_HUB_OFFLINE", "DYNAPOSE4D_ZERO123", "DYNAPOSE4D_STABLE_ZERO123", "DYNAPOSE4D_SVD", "HF_HUB_CACHE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    hub.log.clear()
    hub.drops.clear()
    hub.throttles.clear()
    return tmp_path / "hf-home"


@pytest.fixture
def hub_server(hub, tmp_path, monkeypatch, hf_home):
    """``dynapose4d serve`` (runs no jobs) whose downloads go to the fake hub (HF_ENDPOINT)."""
    from tests.server_fixtures import start_server

    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    server = start_server(tmp_path / "server", "--max-jobs", "0")
    yield server
    server.stop()


def wait_download(server, name: str, timeout: float = 120) -> dict:
    """The model's entry once its download has ended (done, failed or cancelled)."""
    deadline = time.monotonic() + timeout
    while True:
        entry = server.get(f"/v1/models/{name}").json()
        if entry["download"] and entry["download"]["state"] not in ("starting", "checking", "downloading"):
            return entry
        assert time.monotonic() < deadline, entry
        time.sleep(0.1)


def post_json(server, path: str, body: dict):
    return server.post(path, body=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
