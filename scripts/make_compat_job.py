#!/usr/bin/env python3
"""Write a job folder with the release before the job layer moved into ``dynapose4d.pipeline``
(commit 8bc3df0), for ``tests/test_compat_job_folder.py``: a tiny demo job (200 Gaussians, 3
frames, 40 iterations, a snapshot and a checkpoint every 2 steps) whose server is killed once the
job has reached iteration 6. The worker then stops on its own ("the server went away") and keeps
its checkpoint, as a real crash leaves it.

The old code comes out of this repository's history (``git archive``), so a shallow clone
without that commit cannot make it (``CompatUnavailable``). Nothing is stored in git: the folder
is about 8 MB, most of it the checkpoint.

    python scripts/make_compat_job.py OUT_DIR     # OUT_DIR/jobs/<id>/
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OLD_RELEASE = "8bc3df038d321679aa14df133771134f6ac93be8"
SETTINGS = {
    "motion": "lamp", "iterations": 40, "gaussians": 200, "frames": 3, "previews": False, "seed": 3,
    "lambda_kml": 20000.0, "lambda_scl": 100.0, "kml_robust_scale": 0.02, "snapshot_every": 2, "checkpoint_every": 2,
}
STOP_AT = 6
ATTEMPTS = 5

# Runs inside the old release's code (its tests.server_fixtures and dynapose4d on PYTHONPATH).
DRIVER = r"""
import json, os, signal, sys, time
from pathlib import Path
from tests.server_fixtures import start_server

out, settings, stop_at = Path(sys.argv[1]), json.loads(sys.argv[2]), int(sys.argv[3])
server = start_server(out / "server", jobs_dir=out / "jobs")
job = server.create_job("demo", settings).json()["id"]
events = out / "jobs" / job / "events.jsonl"
deadline = time.monotonic() + 300
while time.monotonic() < deadline:
    text = events.read_text() if events.exists() else ""
    if f'"type":"snapshot"' in text and any(
        json.loads(line).get("type") == "snapshot" and json.loads(line).get("iteration", 0) >= stop_at
        for line in text.splitlines() if line.strip()
    ):
        break
    time.sleep(0.002)
server.proc.send_signal(signal.SIGKILL)  # the worker sees its stdin close and stops at its next check
server.proc.wait()
worker_lock = out / "jobs" / job / "worker.lock"
for _ in range(3000):  # wait for the worker to stop and release its lock
    if not worker_lock.exists():
        break
    time.sleep(0.01)
print(job)
"""


class CompatUnavailable(RuntimeError):
    pass


def _old_code(into: Path) -> Path:
    try:
        tar = subprocess.run(["git", "-C", str(ROOT), "archive", OLD_RELEASE, "backend", "tests", "blender_addon"],
                             check=True, capture_output=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = exc.stderr.decode(errors="replace").strip() if isinstance(exc, subprocess.CalledProcessError) else str(exc)
        raise CompatUnavailable(f"commit {OLD_RELEASE[:7]} is not in this repository's history ({detail})") from None
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        archive.extractall(into, filter="data")
    return into


def make_compat_job(out: Path) -> Path:
    """The job folder ``out/jobs/<id>``, stopped at iteration ``STOP_AT`` by the old release."""
    with tempfile.TemporaryDirectory(prefix="dp4d-old-release-") as tmp:
        code = _old_code(Path(tmp) / "code")
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(code / "backend"), str(code)]))
        for attempt in range(ATTEMPTS):
            target = out / f"attempt-{attempt}"
            run = subprocess.run([sys.executable, "-c", DRIVER, str(target), json.dumps(SETTINGS), str(STOP_AT)],
                                 cwd=code, env=env, capture_output=True, text=True, timeout=600)
            if run.returncode != 0:
                raise RuntimeError(f"the old release's server failed:\n{run.stdout}\n{run.stderr}")
            job = target / "jobs" / run.stdout.split()[-1]
            lines = [json.loads(line) for line in (job / "events.jsonl").read_text().splitlines() if line.strip()]
            stopped = [e for e in lines if e.get("type") == "stage" and e.get("status") == "stopped"]
            # The stop lands at the worker's next check: one step late now and then. Try again.
            if stopped and stopped[-1].get("message") == f"at iteration {STOP_AT}" and (job / "checkpoints" / "dynamic.pt").exists():
                final = out / "jobs"
                final.mkdir(parents=True, exist_ok=True)
                job.rename(final / job.name)
                shutil.rmtree(target)  # the old server's own files
                return final / job.name
    raise RuntimeError(f"the old release's job did not stop at iteration {STOP_AT} in {ATTEMPTS} attempts")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    print(make_compat_job(Path(sys.argv[1])))
