"""Fixtures for tests that run Blender in a real window, or bpy 5.3, through
scripts/blender_window.py (a Debian trixie root; see its docstring and docs/blender.md).

- ``window_harness``: the harness module; the test SKIPS with a reason naming what is missing
  (not root, no debootstrap, no Debian mirror, the root not made yet: `scripts/dev.py test`
  makes it, or `python3 scripts/blender_window.py setup`). ``bpy53_harness``: the same, and the
  bpy 5.3 venv too.
- ``host_backend``: the real backend (`python -m dynapose4d serve`) on the host's 127.0.0.1,
  with its address file; the root shares the host's network, so Blender in the root reaches it.
- ``extension_zip``: the extension built by build.py.
- ``finished_demo_job``: a demo job done on ``host_backend`` (the window test's, else a tiny one).

Another test plugs in with ``harness.run(driver, "bpy" | "window", files=..., env=...)``; a driver
is a Python file beside ``tests/window/windowkit.py`` and ``cycles_still.py`` (its helpers, copied along with it).
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DRIVERS = ROOT / "tests" / "window"
TINY_DEMO = {"gaussians": 600, "frames": 5, "iterations": 3, "previews": False}
JOBS: dict[str, str] = {}  # finished demo jobs on the module's backend, by who made them


def load_harness():
    spec = importlib.util.spec_from_file_location("blender_window", ROOT / "scripts" / "blender_window.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("blender_window", module)
    spec.loader.exec_module(module)
    return module


def skip_reason(need_bpy: bool = False) -> str | None:
    """Why the window tests cannot run here (None: they can)."""
    if os.environ.get("DP4D_SKIP_WINDOW"):
        return "DP4D_SKIP_WINDOW is set"
    ready, reason = load_harness().status(need_bpy=need_bpy)
    return None if ready else f"no Blender window root: {reason}"


@pytest.fixture(scope="module")
def window_harness():
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    return load_harness()


@pytest.fixture(scope="module")
def bpy53_harness():
    reason = skip_reason(need_bpy=True)
    if reason:
        pytest.skip(reason)
    return load_harness()


class Backend:
    def __init__(self, info: dict, jobs_dir: Path):
        self.info, self.jobs_dir = info, jobs_dir
        self.url, self.token = info["url"], info["token"]

    def call(self, path: str, body: bytes | None = None, content_type: str | None = None) -> dict:
        headers = {"Authorization": f"Bearer {self.token}"}
        if content_type:
            headers["Content-Type"] = content_type
        method = "POST" if body is not None else "GET"
        req = urllib.request.Request(self.url + "/v1" + path, data=body, headers=headers, method=method)
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())

    def wait(self, job_id: str, timeout: float = 300) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            status = self.call(f"/jobs/{job_id}")
            if status["state"] in ("done", "failed", "cancelled"):
                return status
            assert time.monotonic() < deadline, f"job {job_id} not finished after {timeout} s: {status}"
            time.sleep(0.5)

    def driver_env(self) -> dict:
        return {"DP4D_BACKEND_URL": self.url, "DP4D_BACKEND_TOKEN": self.token}


@pytest.fixture(scope="module")
def backend_env() -> dict:
    """Environment for ``host_backend`` (a module overrides this fixture: e.g. a local hub)."""
    return {}


@pytest.fixture(scope="module")
def host_backend(tmp_path_factory, backend_env):
    """``python -m dynapose4d serve`` on 127.0.0.1 (a free port), from this test's environment
    with ``backend_env`` (a value None removes the variable)."""
    tmp = tmp_path_factory.mktemp("window-backend")
    address = tmp / "server.json"
    env = {k: v for k, v in {**os.environ, **backend_env}.items() if v is not None}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "backend"), *filter(None, [env.get("PYTHONPATH")])])
    log = open(tmp / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "dynapose4d", "serve", "--port", "0", "--address-file", str(address),
                             "--jobs-dir", str(tmp / "jobs")], stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp)
    deadline = time.monotonic() + 120
    while not address.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the backend did not start: {(tmp / 'server.log').read_text()[-2000:]}")
        time.sleep(0.2)
    yield Backend(json.loads(address.read_text()), tmp / "jobs")
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.fixture(scope="module")
def extension_zip(tmp_path_factory) -> Path:
    sys.path.insert(0, str(ROOT))
    import build

    return build.build(tmp_path_factory.mktemp("dist"))


@pytest.fixture(scope="module")
def finished_demo_job(host_backend) -> str:
    """A finished demo job's id: the window test's if it ran, else a tiny one made here."""
    if JOBS.get("window"):
        return JOBS["window"]
    sys.path.insert(0, str(ROOT))
    from tests.server_fixtures import multipart

    body, content_type = multipart({"kind": "demo", "settings": json.dumps(TINY_DEMO)}, {})
    job = host_backend.call("/jobs", body, content_type)
    status = host_backend.wait(job["id"])
    assert status["state"] == "done", status
    JOBS["tiny"] = job["id"]
    return job["id"]
