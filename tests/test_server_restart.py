"""Servers stopped mid-job and started again: a crash (SIGKILL) and a graceful shutdown both
leave the job interrupted; it resumes from its last checkpoint on request (these servers run
with ``--no-auto-resume``; ``test_server_faults`` covers the automatic resume); finished jobs
stay listed, with their frames and results, across restarts."""

import time

import pytest

pytest.register_assert_rewrite("tests.server_fixtures")
from tests.server_fixtures import TINY, start_server, wait_gone  # noqa: E402

pytest_plugins = ["tests.server_fixtures"]


def _resumed_from(server, job_id: str, previous: dict, stop_when=None) -> list:
    """Resume ``job_id`` and follow its events; checks it restarted from its checkpoint."""
    assert server.post(f"/v1/jobs/{job_id}/resume").json()["state"] in ("queued", "running")
    events = []
    for event in server.events(job_id, after=previous["events"] - 1):
        events.append(event)
        if stop_when and stop_when(event):
            break
    logs = [d["message"] for k, _, d in events if k == "log"]
    assert any("resuming" in m and f"at iteration {previous['iteration']}" in m for m in logs), logs
    assert next(d for k, _, d in events if k == "progress")["iteration"] == previous["iteration"] + 1
    return events


def test_crash_and_shutdown_mid_job_then_resume(tmp_path):
    jobs, address = tmp_path / "jobs", tmp_path / "server.json"
    # 1. A job trains; the server is killed (SIGKILL: no chance to clean up).
    first = start_server(tmp_path, "--no-auto-resume", jobs_dir=jobs, address_file=address)
    job_id = first.create_job("demo", dict(TINY, iterations=24)).json()["id"]
    worker = first.wait(job_id, lambda s: (s["iteration"] or 0) >= 2, what="training to start")["worker_pid"]
    first.kill()
    # The orphaned worker notices that its server is gone, checkpoints and exits by itself.
    assert wait_gone(worker), "the worker outlived its server"
    # 2. A new server on the same folders: the job is listed as interrupted and resumable.
    second = start_server(tmp_path, "--no-auto-resume", jobs_dir=jobs, address_file=address)
    try:
        assert second.token != first.token
        crashed = {j["id"]: j for j in second.get("/v1/jobs").json()["jobs"]}[job_id]
        assert crashed["state"] == "interrupted" and crashed["resumable"] and "resume" in crashed["error"]
        assert crashed["iteration"] >= 2 and (jobs / job_id / "checkpoints" / "dynamic.pt").exists()
        assert second.get(f"/v1/jobs/{job_id}/frames/0").status == 404  # no snapshot before step 50
        # 3. Resume from the checkpoint; while it trains again, stop the server gracefully.
        _resumed_from(second, job_id, crashed, stop_when=lambda e: e[0] == "progress" and e[2]["iteration"] >= crashed["iteration"] + 2)
        worker = second.status(job_id)["worker_pid"]
        t0 = time.monotonic()
    finally:
        second.stop()
    assert time.monotonic() - t0 < 10 and wait_gone(worker, 5)
    assert not address.exists()  # a graceful stop removes the address file
    # 4. A third server: interrupted by the shutdown; resume it to the end.
    third = start_server(tmp_path, "--no-auto-resume", jobs_dir=jobs, address_file=address)
    try:
        shut = third.status(job_id)
        assert shut["state"] == "interrupted" and "shut down" in shut["error"] and shut["attempts"] == 2
        assert shut["iteration"] > crashed["iteration"]
        _resumed_from(third, job_id, shut)
        done = third.status(job_id)
        assert done["state"] == "done" and done["attempts"] == 3 and done["iteration"] == 24
    finally:
        third.stop()
    # 5. A fourth start: the finished job is still listed, with its frames and results.
    fourth = start_server(tmp_path, "--no-auto-resume", jobs_dir=jobs, address_file=address)
    try:
        job = fourth.status(job_id)
        assert job["state"] == "done" and job["snapshot"]["version"] == 1 and job["results_available"]
        assert fourth.get(f"/v1/jobs/{job_id}/frames/3").status == 200
        assert fourth.get(f"/v1/jobs/{job_id}/result").status == 200
    finally:
        fourth.stop()
