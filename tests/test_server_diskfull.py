"""A full disk on the real server (issue 13, root only: a small tmpfs): the job fails with a
message about the disk, keeps the on-disk state right and the last checkpoint whole, uploads get
507, and the job resumes from its checkpoint once there is room."""

import json
import os
import stat
import subprocess
import uuid
from pathlib import Path

import pytest
import torch

pytest.register_assert_rewrite("tests.server_fixtures")
from dynapose4d.pipeline import JobFolder  # noqa: E402
from tests.server_fixtures import TINY, start_server  # noqa: E402

pytest_plugins = ["tests.server_fixtures"]


def _state_on_disk(jobs: Path, job_id: str) -> str:
    return json.loads(JobFolder(jobs / job_id).state.read_text())["state"]


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
        job_id = server.create_job("demo", dict(TINY, iterations=25, checkpoint_every=5)).json()["id"]
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
        # An upload that runs out of space while it streams in (no Content-Length to refuse it
        # by) is a DiskFull naming the folder, and leaves no staging folder behind.
        _stream_upload_onto_a_full_disk(jobs)
        # 3. Space is freed: resume continues from the last checkpoint.
        filler.unlink()
        server.post(f"/v1/jobs/{job_id}/resume")
        done = server.wait_state(job_id, "done", "failed", timeout=120)
        assert done["state"] == "done", done
        messages = [d.get("message", "") for k, _, d in server.events(job_id) if k == "log"]
        assert any("resuming" in m for m in messages), messages
    finally:
        server.stop()


def _stream_upload_onto_a_full_disk(jobs: Path) -> None:
    import asyncio

    from dynapose4d.server.config import ServerConfig, UploadLimits
    from dynapose4d.server.runner.diskspace import DiskFull
    from dynapose4d.server.runner.manager import JobManager
    from dynapose4d.server.runner.store import INCOMING, JobStore
    from dynapose4d.server.api.uploads import receive_form
    from tests.server_fixtures import multipart

    body, content_type = multipart({"kind": "demo"}, {"image": ("big.png", os.urandom(2 << 20))})

    async def chunks():
        for i in range(0, len(body), 64 * 1024):
            yield body[i:i + 64 * 1024]

    async def upload():
        manager = JobManager(JobStore(jobs), ServerConfig(jobs_dir=jobs, token="-"))
        limits = UploadLimits()
        with pytest.raises(DiskFull, match=f"not enough disk space in {jobs}: "):
            await manager.create(lambda staging: receive_form(content_type, None, chunks(), staging, {"image"}, limits))

    asyncio.run(upload())
    assert not list((jobs / INCOMING).glob("*"))
