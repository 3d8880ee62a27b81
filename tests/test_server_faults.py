"""Faults on the real server (issue 13): a second server on the same jobs folder is refused and a
killed one's lock and address file are taken over; interrupted jobs resume by themselves; an event
stream of a deleted job says so; a full disk fails the job with a message about the disk, keeps the
on-disk state right and the last checkpoint whole, and the job resumes once there is room."""

import os
import stat
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import torch

pytest.register_assert_rewrite("tests.server_fixtures")
from blender_addon.client import BackendError, Connection  # noqa: E402
from dynapose4d.server.store import STATE_FILE  # noqa: E402
from tests.server_fixtures import TINY, start_server  # noqa: E402

pytest_plugins = ["tests.server_fixtures"]


def _wait_gone(pid: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    raise AssertionError(f"process {pid} is still running")


def _state_on_disk(jobs: Path, job_id: str) -> str:
    import json

    return json.loads((jobs / job_id / STATE_FILE).read_text())["state"]


def test_second_server_stale_lock_auto_resume_and_delete_while_streaming(tmp_path):
    jobs, address = tmp_path / "jobs", tmp_path / "server.json"
    first = start_server(tmp_path, jobs_dir=jobs, address_file=address)
    # 1. A job trains on the first server.
    job_id = first.create_job("demo", dict(TINY, iterations=30)).json()["id"]
    worker = first.wait(job_id, lambda s: (s["iteration"] or 0) >= 2, what="training to start")["worker_pid"]
    # 2. A second server on the same folder (and address file) refuses to start, naming the first.
    text_before = address.read_text()
    second = subprocess.run(
        [sys.executable, "-m", "dynapose4d", "serve", "--jobs-dir", str(jobs), "--address-file", str(address)],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    assert second.returncode == 3, second.stdout + second.stderr
    assert f"PID {first.proc.pid}" in second.stderr and first.url in second.stderr, second.stderr
    assert address.read_text() == text_before  # the first server's address file is untouched
    status = first.status(job_id)
    assert status["state"] == "running" and status["worker_pid"] == worker  # and its job too
    # 3. The first server is killed: its address file is stale, clients say so.
    first.kill()
    _wait_gone(worker)
    with pytest.raises(BackendError, match=r"is not running \(stale address file"):
        Connection.from_address_file(address)
    # 4. A new server takes over the lock and the address file and resumes the job by itself.
    third = start_server(tmp_path, jobs_dir=jobs, address_file=address)
    try:
        log = third.log_text()
        assert "taking over the jobs folder" in log and "stale address file" in log, log
        done = third.wait_state(job_id, "done", "failed", timeout=120)
        assert done["state"] == "done" and done["attempts"] == 2, done
        messages = [d.get("message", "") for k, _, d in third.events(job_id) if k == "log"]
        assert any("resuming" in m for m in messages), messages
        assert _state_on_disk(jobs, job_id) == "done"
        # 5. A stream of a job that is deleted while it runs ends with "deleted", not "cancelled".
        long_id = third.create_job("demo", dict(TINY, iterations=400)).json()["id"]
        third.wait(long_id, lambda s: (s["iteration"] or 0) >= 1, what="training to start")
        states = []

        def follow():
            for kind, _, data in third.events(long_id):
                if kind == "status":
                    states.append(data["state"])

        reader = threading.Thread(target=follow)
        reader.start()
        time.sleep(0.5)
        assert third.request("DELETE", f"/v1/jobs/{long_id}").status == 200
        reader.join(20)
        assert states[-1] == "deleted" and "cancelled" not in states, states
    finally:
        third.stop()


@pytest.fixture
def small_disk(tmp_path):
    """A 96 MiB tmpfs (root only): a disk that can really fill up."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mount = Path(f"/tmp/dp4d-small-disk-{uuid.uuid4().hex[:8]}")
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96m", "tmpfs", str(mount)], capture_output=True).returncode:
        mount.rmdir()
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
        mount.rmdir()


def _fill(disk: Path, leave_bytes: int) -> Path:
    filler = disk / "filler.bin"
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    with open(filler, "wb") as fh:
        os.posix_fallocate(fh.fileno(), 0, max(0, free - leave_bytes))
    return filler


def test_a_full_disk_fails_the_job_cleanly_and_resume_continues(tmp_path, small_disk):
    jobs = small_disk / "jobs"
    server = start_server(tmp_path, jobs_dir=jobs)
    try:
        job_id = server.create_job("demo", dict(TINY, iterations=60, checkpoint_every=5)).json()["id"]
        checkpoint = jobs / job_id / "checkpoints" / "dynamic.pt"
        server.wait(job_id, lambda s: checkpoint.exists() and (s["iteration"] or 0) >= 5, what="the first checkpoint")
        # 1. The disk fills up: the next checkpoint cannot be written.
        filler = _fill(small_disk, 256 * 1024)
        failed = server.wait_state(job_id, "failed", "done", timeout=60)
        assert failed["state"] == "failed", failed
        assert f"not enough disk space in {jobs}" in failed["error"] and "MB free" in failed["error"], failed["error"]
        assert _state_on_disk(jobs, job_id) == "failed"  # the disk agrees with the API
        assert not list((jobs / job_id).rglob("*.tmp"))  # no half-written files left behind
        torch.load(checkpoint, map_location="cpu", weights_only=False)  # the last checkpoint is whole
        assert stat.S_IMODE(checkpoint.stat().st_mode) == 0o600  # and private, like every job file
        # 2. Uploads are refused while the disk is full.
        reply = server.create_job("demo", TINY)
        assert reply.status == 507 and f"not enough disk space in {jobs}" in reply.detail, reply.body
        # 3. Space is freed: resume continues from the last checkpoint.
        filler.unlink()
        server.post(f"/v1/jobs/{job_id}/resume")
        done = server.wait_state(job_id, "done", "failed", timeout=120)
        assert done["state"] == "done", done
        messages = [d.get("message", "") for k, _, d in server.events(job_id) if k == "log"]
        assert any("resuming" in m for m in messages), messages
    finally:
        server.stop()
