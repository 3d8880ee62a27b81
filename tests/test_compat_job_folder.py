"""A job folder written by an earlier release still works: it lists, serves the frames of its
snapshot, resumes from its checkpoint and finishes with results.

The folder is written by the release before the job layer moved into ``dynapose4d.pipeline``
(commit 8bc3df0, taken from this repository's history by ``scripts/make_compat_job.py``): a tiny
demo job (200 Gaussians, 3 frames, 40 iterations, a snapshot and a checkpoint every 2 steps)
whose server was killed at iteration 6. A clone without that commit skips the test.
"""

import shutil
import sys
from pathlib import Path

import pytest

pytest.register_assert_rewrite("tests.server_fixtures")
from tests.server_fixtures import start_server  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from make_compat_job import CompatUnavailable, make_compat_job  # noqa: E402


@pytest.fixture(scope="module")
def old_job(tmp_path_factory) -> Path:
    try:
        return make_compat_job(tmp_path_factory.mktemp("compat_v1"))
    except CompatUnavailable as exc:
        pytest.skip(f"cannot write a job folder with the earlier release: {exc}")


def test_an_old_job_folder_lists_serves_frames_and_resumes(tmp_path, old_job):
    jobs = tmp_path / "jobs"
    shutil.copytree(old_job.parent, jobs)
    job_id = old_job.name
    server = start_server(tmp_path, jobs_dir=jobs)
    try:
        # 1. Listed: killed while running, so interrupted (and resumed by the new server at once).
        listed = {j["id"]: j for j in server.get("/v1/jobs").json()["jobs"]}
        job = listed[job_id]
        assert job["kind"] == "demo" and job["settings"]["gaussians"] == 200
        assert job["state"] in ("queued", "running", "done") or job["resumable"]
        assert job["snapshot"]["version"] >= 1
        # 2. The snapshot's frames are served (3 frames, 200 Gaussians each).
        reply = server.get(f"/v1/jobs/{job_id}/frames/2")
        assert reply.status == 200, reply.body
        from blender_addon.format.wire import decode_frame

        frame = decode_frame(reply.body)
        assert frame.header["frame"]["frame_count"] == 3 and frame.positions.shape == (200, 3)
        # 3. Resumed from the checkpoint (not from scratch), then finished with results.
        if server.status(job_id)["state"] not in ("queued", "running", "done"):
            assert server.post(f"/v1/jobs/{job_id}/resume").status == 200
        done = server.wait_state(job_id, "done", "failed", timeout=180)
        assert done["state"] == "done", server.get(f"/v1/jobs/{job_id}/log").body.decode()
        log = [line for line in (jobs / job_id / "events.jsonl").read_text().splitlines() if "resuming" in line]
        assert any("at iteration 6" in line for line in log), log
        assert done["iteration"] == 40 and done["results_available"]
        assert server.get(f"/v1/jobs/{job_id}/result").status == 200
    finally:
        server.stop()
