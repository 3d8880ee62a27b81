"""Jobs end to end on the real server: a tiny CPU demo job streamed over SSE, its frames, keypoints
and results; cancel (also during start-up), resume from the checkpoint, a worker killed with
SIGKILL, delete."""

import io
import json
import os
import signal
import time
import zipfile

import numpy as np
import pytest
import torch

pytest.register_assert_rewrite("tests.server_fixtures")
from blender_addon.format.wire import decode_frame  # noqa: E402
from dynapose4d.io.ply import read_ply  # noqa: E402
from dynapose4d.dynamic4d import Dynamic4D  # noqa: E402
from tests.server_fixtures import TINY  # noqa: E402

pytest_plugins = ["tests.server_fixtures"]

# Long enough to be caught mid-training (~0.1-0.2 s a step here), short enough to finish soon.
SHORT = dict(TINY, iterations=20)


@pytest.fixture(scope="module")
def tiny_job(job_server):
    """A tiny demo job followed over SSE from creation to the end."""
    reply = job_server.create_job("demo", TINY)
    assert reply.status == 201, reply.body
    job = reply.json()
    events = list(job_server.events(job["id"]))
    return job, events


def test_sse_streams_the_job_from_queued_to_done(job_server, tiny_job):
    job, events = tiny_job
    kinds = [e[0] for e in events]
    assert kinds[0] == "status" and kinds[-1] == "end"
    states = [data["state"] for kind, _, data in events if kind == "status"]
    assert states[-1] == "done" and set(states) <= {"queued", "running", "done"}
    worker = [data["status"] for kind, _, data in events if kind == "worker"]
    assert worker == ["started", "finished"]
    progress = [data for kind, _, data in events if kind == "progress"]
    assert [p["iteration"] for p in progress] == [1, 2, 3] and all(p["total"] == 3 for p in progress)
    assert {"loss", "loss_rgb", "loss_kml"} <= set(progress[-1]["losses"])
    assert progress[-1]["eta_s"] == 0.0
    snapshots = [data for kind, _, data in events if kind == "snapshot"]
    assert snapshots and snapshots[-1]["version"] == 1 and snapshots[-1]["iteration"] == 3
    assert snapshots[-1]["num_frames"] == 5 and snapshots[-1]["gaussians"] == 600
    ids = [i for _, i, _ in events if i is not None]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    # A reconnect with the last id seen gets only what came after it.
    tail = list(job_server.events(job["id"], after=ids[-3]))
    assert [i for _, i, _ in tail if i is not None] == ids[-2:]


def test_status_of_a_finished_job(job_server, tiny_job):
    status = job_server.status(tiny_job[0]["id"])
    assert status["state"] == "done" and status["exit_code"] == 0 and status["error"] is None
    assert status["iteration"] == status["total"] == 3 and status["progress"] == 1.0
    assert status["snapshot"]["version"] == 1 and status["frames_available"] == 5
    assert status["results_available"] and not status["resumable"] and status["eta_s"] is None
    assert status["worker_pid"] is None and status["attempts"] == 1
    assert status["events"] == len([e for e in tiny_job[1] if e[1] is not None])


@pytest.mark.parametrize("dtype, tol", [("float32", 1e-5), ("float16", 2e-3)])
def test_frames_match_the_snapshot_model(job_server, tiny_job, dtype, tol):
    job_id = tiny_job[0]["id"]
    model = Dynamic4D.load(job_server.jobs_dir / job_id / "snapshots" / "latest.pt")
    fps, count = 24.0, 20
    times = model.times(count, fps, "pingpong")
    expected, kps = model.sample(times)
    for index in (0, 7, 19):
        reply = job_server.get(f"/v1/jobs/{job_id}/frames/{index}?fps={fps}&frame_count={count}&mode=pingpong&dtype={dtype}")
        assert reply.status == 200, reply.body
        assert reply.headers["content-type"] == "application/octet-stream" and reply.headers["x-snapshot-version"] == "1"
        frame = decode_frame(reply.body)
        g = expected.map(lambda t: t[index])
        assert frame.count == 600 and frame.header["dtype"] == dtype
        assert frame.header["coordinates"] == "backend"  # a demo job: no input PLY to go back to
        assert frame.header["frame"] == {
            "index": index, "frame_count": count, "fps": fps, "time_mode": "pingpong", "seconds": index / fps, "time": pytest.approx(float(times[index]))
        }
        for got, want in (
            (frame.positions, g.means),
            (frame.rotations, g.rotations),
            (frame.scales, g.scales),
            (frame.opacities, g.opacities),
            (frame.colors, g.rgb.clamp(0, 1)),
        ):
            np.testing.assert_allclose(got, want.numpy(), rtol=tol, atol=tol)
        np.testing.assert_allclose(frame.keypoints, kps[index].numpy(), rtol=1e-5, atol=1e-6)
    # The defaults: the driving video's frame rate, once over the clip.
    frame = decode_frame(job_server.get(f"/v1/jobs/{job_id}/frames/0").body)
    assert frame.header["frame"]["fps"] == model.video_fps and frame.header["frame"]["frame_count"] == model.num_frames


def test_frame_requests_out_of_range(job_server, tiny_job):
    job_id = tiny_job[0]["id"]
    for query, status in [
        ("frames/5", 422),  # 5 frames by default: 0..4
        ("frames/3?frame_count=3", 422),
        ("frames/0?version=2", 409),  # only the latest snapshot is kept
        ("frames/0?fps=0", 422),
        ("frames/0?dtype=float64", 422),
        ("frames/-1", 422),
        ("frames/0?mode=bounce", 422),
    ]:
        reply = job_server.get(f"/v1/jobs/{job_id}/{query}")
        assert reply.status == status, (query, reply.body)
    assert job_server.get(f"/v1/jobs/{job_id}/frames/0?version=1").status == 200


def test_keypoint_trajectories_and_skeleton(job_server, tiny_job):
    job_id = tiny_job[0]["id"]
    model = Dynamic4D.load(job_server.jobs_dir / job_id / "snapshots" / "latest.pt")
    reply = job_server.get(f"/v1/jobs/{job_id}/keypoints?fps=12&frame_count=9&mode=loop")
    assert reply.status == 200, reply.body
    data = reply.json()
    _, kps = model.sample(model.times(9, 12.0, "loop"))
    assert data["frame_count"] == 9 and len(data["times"]) == 9 and data["snapshot"]["version"] == 1
    np.testing.assert_allclose(np.array(data["positions"]), kps.numpy(), atol=2e-6)
    assert data["names"] == list(model.keypoints.names) and data["edges"] == model.keypoints.edges.tolist()
    assert len(data["valid"]) == len(data["names"]) and data["up"] == "+y"
    assert np.array(data["camera"]["c2w"]).shape == (4, 4)


def test_result_zip_holds_the_ply_sequence(job_server, tiny_job):
    job_id = tiny_job[0]["id"]
    reply = job_server.get(f"/v1/jobs/{job_id}/result")
    assert reply.status == 200 and reply.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(reply.body)) as zf:
        names = zf.namelist()
        sidecar = json.loads(zf.read("sequence/sequence.json"))
        assert sidecar["frame_count"] == 5 and all(f"sequence/{f}" in names for f in sidecar["frames"])
        ply = zf.read(f"sequence/{sidecar['frames'][2]}")
    assert "job.json" in names and "metrics.json" in names
    path = job_server.jobs_dir / job_id / "check.ply"
    path.write_bytes(ply)
    try:
        assert read_ply(path).num == 600
    finally:
        path.unlink()
    assert job_server.get(f"/v1/jobs/{job_id}/result").body == reply.body  # cached


def test_cancel_keeps_the_checkpoint_and_resume_continues_from_it(job_server):
    job_id = job_server.create_job("demo", SHORT).json()["id"]
    queued = job_server.create_job("demo", TINY).json()["id"]  # one job at a time: this one waits
    assert job_server.status(queued)["state"] == "queued"
    job_server.wait(job_id, lambda s: (s["iteration"] or 0) >= 2, what="training to start")
    # 1. Cancel while it trains: the pipeline stops itself and checkpoints.
    t0 = time.monotonic()
    reply = job_server.post(f"/v1/jobs/{job_id}/cancel")
    elapsed = time.monotonic() - t0
    assert reply.status == 200 and reply.json()["state"] == "cancelled", reply.body
    assert elapsed < 2.0
    status = reply.json()
    stopped_at = status["iteration"]
    assert status["resumable"] and status["worker_pid"] is None and status["exit_code"] == 3
    assert (job_server.jobs_dir / job_id / "checkpoints" / "dynamic.pt").exists()
    assert job_server.post(f"/v1/jobs/{job_id}/cancel").status == 409  # already stopped
    # 2. The queued job starts; cancel it while its worker is still starting up (it does not look
    #    at the stop flag then): it is killed after the grace period.
    job_server.wait_state(queued, "running", timeout=10)
    t0 = time.monotonic()
    reply = job_server.post(f"/v1/jobs/{queued}/cancel")
    assert reply.json()["state"] == "cancelled" and time.monotonic() - t0 < 2.0
    assert reply.json()["exit_code"] == -signal.SIGKILL
    # 3. Resume the first job: it continues from its checkpoint and finishes.
    reply = job_server.post(f"/v1/jobs/{job_id}/resume")
    assert reply.status == 200 and reply.json()["state"] in ("queued", "running")
    events = list(job_server.events(job_id, after=status["events"] - 1))
    logs = [d["message"] for k, _, d in events if k == "log"]
    assert any(f"at iteration {stopped_at}" in m and "resuming" in m for m in logs), logs
    first = next(d for k, _, d in events if k == "progress")
    assert first["iteration"] == stopped_at + 1
    final = job_server.status(job_id)
    assert final["state"] == "done" and final["attempts"] == 2 and final["iteration"] == 20
    assert final["snapshot"]["version"] == 1  # snapshots every 50 steps, and at the end
    # 4. Delete both.
    for jid in (job_id, queued):
        assert job_server.request("DELETE", f"/v1/jobs/{jid}").json() == {"id": jid, "deleted": True}
        assert job_server.get(f"/v1/jobs/{jid}").status == 404
        assert not (job_server.jobs_dir / jid).exists()


def test_a_worker_killed_with_sigkill_fails_its_job_only(job_server, tiny_job):
    job_id = job_server.create_job("demo", SHORT).json()["id"]
    status = job_server.wait(job_id, lambda s: (s["iteration"] or 0) >= 1, what="training to start")
    os.kill(status["worker_pid"], signal.SIGKILL)
    status = job_server.wait_state(job_id, "failed", timeout=10)
    assert "SIGKILL" in status["error"] and status["exit_code"] == -signal.SIGKILL
    assert status["resumable"] and "worker" in job_server.get(f"/v1/jobs/{job_id}/log").body.decode()
    # The server and the other jobs carry on.
    assert job_server.alive() and job_server.get("/v1/health").status == 200
    done = job_server.status(tiny_job[0]["id"])
    assert done["state"] == "done" and job_server.get(f"/v1/jobs/{done['id']}/frames/0").status == 200
    # A job the pipeline refuses when it runs (its settings edited behind the server's back)
    # fails with the pipeline's own message, and the traceback is in its log.
    spec_path = job_server.jobs_dir / job_id / "job.json"
    spec = json.loads(spec_path.read_text())
    spec["settings"]["iterations"] = -5
    spec_path.write_text(json.dumps(spec))
    assert job_server.post(f"/v1/jobs/{job_id}/resume").status == 200
    status = job_server.wait(job_id, lambda s: s["state"] == "failed" and s["attempts"] == 2, timeout=60, what="the resumed job to fail")
    assert "'iterations' must be >= 1" in status["error"] and status["exit_code"] == 1
    assert "Traceback" in job_server.get(f"/v1/jobs/{job_id}/log").body.decode()
    assert job_server.request("DELETE", f"/v1/jobs/{job_id}").status == 200


def test_health_reports_device_and_models(job_server):
    health = job_server.get("/v1/health").json()
    assert health["status"] == "ok" and health["api"] == "v1" and health["max_jobs"] == 1
    assert health["device"] in ("cpu", "cuda") and health["torch"] == torch.__version__
    assert (health["gpu"] is None) == (health["device"] == "cpu")
    assert {m["name"] for m in health["models"]} >= {"zero123-xl", "svd"}
    assert all(isinstance(m["available"], bool) for m in health["models"])


def test_kinds_publish_settings_and_inputs(job_server):
    kinds = job_server.get("/v1/kinds").json()
    from dynapose4d.pipeline import INPUTS, SETTINGS

    assert set(kinds) == set(SETTINGS)
    demo = kinds["demo"]["settings"]["iterations"]
    assert demo["type"] == "integer" and demo["minimum"] == 1
    for kind, roles in INPUTS.items():
        assert set(kinds[kind]["inputs"]) == set(roles)
    spec = job_server.get("/v1/openapi.json").json()
    form = spec["paths"]["/v1/jobs"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert set(form["properties"]) >= {"kind", "settings"} | {r for roles in INPUTS.values() for r in roles}
