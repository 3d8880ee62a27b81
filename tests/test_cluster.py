"""The Ray executor end to end (issue 19): a real server (``serve --executor ray``) joins a local Ray
cluster that this module starts (2 CPUs); demo jobs run as Ray actors. Two jobs at once with events
and frames served while they run; cancel within 2 s; a job whose Ray actor is killed fails with
Ray's reason, keeps its snapshot and checkpoint, and resumes to the end; a batch of three lines
(one bad) submitted to the server, and the same batch again (it does nothing)."""

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="the Ray executor needs the cluster extra: pip install 'dynapose4d[cluster]'")

pytest.register_assert_rewrite("tests.server_fixtures")
from blender_addon.format.wire import decode_frame  # noqa: E402
from tests.server_fixtures import ROOT, TINY, start_server, wait_gone  # noqa: E402

pytest_plugins = ["tests.server_fixtures"]

# Long enough to be seen running (~0.1-0.3 s a step with two jobs on two cores), with a snapshot
# and a checkpoint every few steps so frames and resumes have something to show.
RUNNING = dict(TINY, iterations=40, snapshot_every=4, checkpoint_every=4)


@pytest.fixture(scope="module")
def cluster():
    """A one-machine Ray cluster for this module; the servers join it by its address."""
    backend = str(ROOT / "backend")
    saved = os.environ.get("PYTHONPATH")
    # The cluster's worker processes start from this environment: make them import this checkout.
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (backend, str(ROOT), saved) if p)
    t0 = time.monotonic()
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=150 * 1024 * 1024, _node_ip_address="127.0.0.1",
             log_to_driver=False, namespace="dynapose4d-tests")
    print(f"ray.init: {time.monotonic() - t0:.1f} s")
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved


@pytest.fixture(scope="module")
def ray_server(cluster, tmp_path_factory):
    server = start_server(tmp_path_factory.mktemp("ray-server"), "--executor", "ray", "--ray-address", cluster, "--max-jobs", "4")
    yield server
    server.stop()


def _actor_pid(worker_pid: int) -> int:
    """The Ray actor that started a worker is its parent process."""
    stat = Path(f"/proc/{worker_pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def test_two_jobs_at_once_with_events_and_frames_while_they_run(ray_server):
    assert "jobs run on the Ray cluster" in ray_server.log_text()
    ids = [ray_server.create_job("demo", dict(RUNNING, seed=seed)).json()["id"] for seed in (1, 2)]
    streams = {job_id: [] for job_id in ids}

    def follow(job_id):
        for event in ray_server.events(job_id):
            streams[job_id].append((time.monotonic(), event))

    readers = [threading.Thread(target=follow, args=(job_id,)) for job_id in ids]
    for reader in readers:
        reader.start()
    # 1. Both train at the same time, each in its own worker process started by a Ray actor.
    running = [ray_server.wait(j, lambda s: s["state"] == "running" and (s["iteration"] or 0) >= 1, what="training") for j in ids]
    both = [ray_server.status(j) for j in ids]
    assert all(s["state"] == "running" for s in both), both
    pids = {s["worker_pid"] for s in running}
    assert len(pids) == 2 and None not in pids
    actors = {_actor_pid(pid) for pid in pids}
    assert len(actors) == 2 and os.getpid() not in actors and ray_server.proc.pid not in actors
    # 2. Frames of a snapshot are served while the job still trains.
    status = ray_server.wait(ids[0], lambda s: s["snapshot"] is not None, what="a snapshot")
    reply = ray_server.get(f"/v1/jobs/{ids[0]}/frames/2")
    assert reply.status == 200, reply.body
    frame = decode_frame(reply.body)
    assert frame.count == 600 and frame.header["frame"]["index"] == 2
    still = ray_server.status(ids[0])
    assert still["state"] == "running" and still["iteration"] < RUNNING["iterations"], (status, still)
    # 3. Both finish; their streams had progress while running and ended.
    for reader in readers:
        reader.join(120)
    for job_id in ids:
        events = [e for _, e in streams[job_id]]
        assert events[-1][0] == "end"
        assert [d["status"] for k, _, d in events if k == "worker"] == ["started", "finished"]
        assert [d["iteration"] for k, _, d in events if k == "progress"] == list(range(1, 41))
        assert ray_server.status(job_id)["state"] == "done"
        assert ray_server.get(f"/v1/jobs/{job_id}/result").status == 200
    # The two jobs' progress interleaved in time: they ran at once, not one after the other.
    first_end = min(max(t for t, e in streams[j] if e[0] == "progress") for j in ids)
    last_start = max(min(t for t, e in streams[j] if e[0] == "progress") for j in ids)
    assert last_start < first_end


def test_cancel_within_two_seconds(ray_server):
    job_id = ray_server.create_job("demo", dict(RUNNING, iterations=400)).json()["id"]
    ray_server.wait(job_id, lambda s: (s["iteration"] or 0) >= 5, what="training and a checkpoint")
    t0 = time.monotonic()
    reply = ray_server.post(f"/v1/jobs/{job_id}/cancel")
    elapsed = time.monotonic() - t0
    assert reply.status == 200 and reply.json()["state"] == "cancelled", reply.body
    assert elapsed < 2.0, elapsed
    status = reply.json()
    assert status["exit_code"] == 3 and status["resumable"] and status["worker_pid"] is None
    assert (ray_server.jobs_dir / job_id / "checkpoints" / "dynamic.pt").exists()
    # A job stopped before its worker starts (cancelled at once) ends too.
    quick = ray_server.create_job("demo", RUNNING).json()["id"]
    t0 = time.monotonic()
    reply = ray_server.post(f"/v1/jobs/{quick}/cancel")
    assert reply.json()["state"] == "cancelled" and time.monotonic() - t0 < 3.0, reply.body
    for jid in (job_id, quick):
        assert ray_server.request("DELETE", f"/v1/jobs/{jid}").status == 200


def test_a_killed_actor_fails_the_job_which_then_resumes(ray_server):
    job_id = ray_server.create_job("demo", dict(RUNNING, iterations=30)).json()["id"]
    status = ray_server.wait(job_id, lambda s: (s["iteration"] or 0) >= 9 and s["snapshot"] is not None, what="a checkpoint")
    worker = status["worker_pid"]
    actor = _actor_pid(worker)
    os.kill(actor, signal.SIGKILL)  # the Ray worker process dies, as on a lost node
    failed = ray_server.wait_state(job_id, "failed", timeout=30)
    assert "Ray actor" in failed["error"] and "died" in failed["error"], failed["error"]
    assert failed["resumable"] and failed["exit_code"] is None
    assert wait_gone(worker, 10), "the worker outlived its actor"
    folder = ray_server.jobs_dir / job_id
    assert (folder / "checkpoints" / "dynamic.pt").exists() and (folder / "snapshots" / "latest.pt").exists()
    assert ray_server.get(f"/v1/jobs/{job_id}/frames/0").status == 200  # the last snapshot is still served
    # Resume: a new actor continues from the last checkpoint and finishes.
    assert ray_server.post(f"/v1/jobs/{job_id}/resume").status == 200
    events = list(ray_server.events(job_id, after=failed["events"] - 1))
    logs = [d["message"] for k, _, d in events if k == "log"]
    resumed_at = [m for m in logs if "resuming" in m]
    assert resumed_at, logs
    first = next(d for k, _, d in events if k == "progress")["iteration"]
    assert first > 1 and f"at iteration {first - 1}" in resumed_at[0]
    done = ray_server.status(job_id)
    assert done["state"] == "done" and done["attempts"] == 2 and done["iteration"] == 30
    assert ray_server.request("DELETE", f"/v1/jobs/{job_id}").status == 200


def test_a_batch_on_the_ray_server_then_the_same_batch_again(ray_server, tmp_path):
    from dynapose4d.cli.batch import run_batch

    manifest = tmp_path / "jobs.jsonl"
    manifest.write_text("\n".join([
        json.dumps({"name": "lamp", "kind": "demo", "settings": TINY}),
        json.dumps({"name": "swing", "kind": "demo", "settings": dict(TINY, motion="swing")}),
        json.dumps({"name": "typo", "kind": "demo", "settings": dict(TINY, iteratons=5)}),
    ]) + "\n")
    before = len(ray_server.get("/v1/jobs").json()["jobs"])
    out = tmp_path / "batch"
    summary = run_batch(manifest, out, server=ray_server.address_file)
    assert summary["counts"] == {"done": 2, "failed": 0, "active": 0, "skipped": 0, "bad_lines": 1}
    assert summary["bad_lines"][0]["line"] == 3 and "iteratons" in summary["bad_lines"][0]["error"]
    jobs = {j["name"]: j for j in summary["jobs"]}
    for name in ("lamp", "swing"):
        status = ray_server.status(jobs[name]["server_job"])
        assert status["state"] == "done" and jobs[name]["status"] == "done" and jobs[name]["seconds"] > 0
        assert Path(jobs[name]["folder"], "sequence", "sequence.json").exists()
    assert json.loads((out / "summary.json").read_text()) == summary
    assert len(ray_server.get("/v1/jobs").json()["jobs"]) == before + 2
    # The same batch again: nothing is submitted, both are reported as finished earlier.
    again = run_batch(manifest, out, server=ray_server.address_file)
    assert again["counts"] == {"done": 2, "failed": 0, "active": 0, "skipped": 2, "bad_lines": 1}
    assert len(ray_server.get("/v1/jobs").json()["jobs"]) == before + 2
    assert [j["server_job"] for j in again["jobs"]] == [j["server_job"] for j in summary["jobs"]]
