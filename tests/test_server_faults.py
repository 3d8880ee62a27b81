"""Faults on the real server (issue 13): a second server on the same jobs folder is refused and a
killed one's lock and address file are taken over; interrupted jobs resume by themselves; an event
stream of a deleted job says so. (A full disk: ``test_server_diskfull``.)"""

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.register_assert_rewrite("tests.server_fixtures")
from blender_addon.link.client import BackendError, Connection  # noqa: E402
from tests.server_fixtures import TINY, start_server, wait_gone  # noqa: E402

pytest_plugins = ["tests.server_fixtures"]


def test_second_server_stale_lock_auto_resume_and_delete_while_streaming(tmp_path):
    jobs, address = tmp_path / "jobs", tmp_path / "server.json"
    first = start_server(tmp_path, jobs_dir=jobs, address_file=address)
    # 1. A job trains on the first server.
    job_id = first.create_job("demo", dict(TINY, iterations=400)).json()["id"]
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
    assert wait_gone(worker), f"process {worker} is still running"
    with pytest.raises(BackendError, match=r"is not running \(stale address file"):
        Connection.from_address_file(address)
    # 4. A new server takes over the lock and the address file and resumes the job by itself.
    third = start_server(tmp_path, jobs_dir=jobs, address_file=address)
    try:
        log = third.log_text()
        assert "taking over the jobs folder" in log and "stale address file" in log, log
        events = jobs / job_id / "events.jsonl"
        # "resuming ... at iteration N" is the pipeline's word that it continues from the checkpoint.
        resumed = third.wait(job_id, lambda s: s["state"] == "running" and s["attempts"] == 2 and "resuming" in events.read_text(),
                             timeout=120, what="the automatic resume")
        assert resumed["error"] is None
        # 5. A stream of a job that is deleted while it runs ends with "deleted", not "cancelled".
        states = []

        def follow():
            for kind, _, data in third.events(job_id):
                if kind == "status":
                    states.append(data["state"])

        reader = threading.Thread(target=follow)
        reader.start()
        time.sleep(0.5)
        assert third.request("DELETE", f"/v1/jobs/{job_id}").status == 200
        reader.join(20)
        assert states[-1] == "deleted" and "cancelled" not in states, states
    finally:
        third.stop()
