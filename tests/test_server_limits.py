"""Result requests within the documented parameter ranges have a memory bound that is checked
before the work starts (issue 27, finding 1), and a finished long clip stays fetchable with the
defaults and any fps in range (finding 7). In process on toy models, plus one real server."""

import json
from dataclasses import replace

import pytest

pytest.register_assert_rewrite("tests.server_fixtures")
from dynapose4d.io.job_folder import JobFolder  # noqa: E402
from dynapose4d.server import limits  # noqa: E402
from dynapose4d.server.frames import MAX_FRAME_COUNT, MIN_FPS, SnapshotFrames  # noqa: E402
from dynapose4d.server.limits import MIB, TooMuchWork  # noqa: E402
from dynapose4d.server.mesh import SkinnedMeshes  # noqa: E402
from dynapose4d.testing.moving import articulated_model  # noqa: E402
from tests.server_fixtures import UPLOAD_KIND, start_server  # noqa: E402

ISSUE_MESH = {"fps": 0.01, "frame_count": 10_000, "mode": "pingpong"}  # grew the server to 23 GB


def _saved(tmp_path_factory, name, model):
    job_dir = tmp_path_factory.mktemp(name)
    model.save(JobFolder(job_dir).snapshot)
    return job_dir


@pytest.fixture(scope="module")
def demo_sized(tmp_path_factory):
    """A snapshot with the demo job's 512 control points (untrained: only its shape matters)."""
    model, _ = articulated_model(controls=512, frames=6, steps=1)
    return _saved(tmp_path_factory, "demo-sized", model)


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory):
    """A snapshot of a 10-hour clip sampled at 14 frames (video_fps 6.349e-05, as in the issue)."""
    model, _ = articulated_model(controls=32, frames=6, steps=1)
    return _saved(tmp_path_factory, "long-clip", replace(model, video_fps=6.349e-05, num_frames=14))


def _no_work(monkeypatch):
    """Make any sampling or surface work fail the test: a refusal must come before it."""
    from dynapose4d import dynamic4d, mesh

    def forbidden(*args, **kwargs):
        raise AssertionError("the work started before the memory check refused it")

    monkeypatch.setattr(dynamic4d.Dynamic4D, "handle_motion", forbidden)
    monkeypatch.setattr(dynamic4d.Dynamic4D, "sample", forbidden)
    monkeypatch.setattr(mesh, "extract_surface", forbidden)


def test_the_issues_mesh_request_is_refused_before_any_work(demo_sized, monkeypatch):
    frames = SnapshotFrames()
    frames.load("job", demo_sized)  # the model is loaded (cached) before the work is forbidden
    _no_work(monkeypatch)
    with pytest.raises(TooMuchWork) as info:
        SkinnedMeshes(frames).mesh("job", demo_sized, **ISSUE_MESH)
    message = str(info.value)
    assert "1,024 MiB per request" in message and "10,000 frames" in message and "512 handles" in message
    assert "ask for at most" in message and "/" not in message  # the bound and the way out; no server path


def test_the_mesh_is_checked_again_with_its_vertices_before_the_per_frame_work(demo_sized, monkeypatch):
    from dynapose4d import mesh

    before_surface = limits.estimate(300, [limits.Term("handles", 512, limits.HANDLE_FRAME_BYTES), limits.field_chunk(512),
                                          limits.Term("voxels", 64**3, limits.VOXEL_BYTES, per_frame=False)])
    frames = SnapshotFrames(work_bytes=before_surface + 256 * 1024)  # the handles fit; the vertices do not
    monkeypatch.setattr(mesh, "skin_surface", lambda *a, **k: pytest.fail("the per-frame work started"))
    with pytest.raises(TooMuchWork, match="vertices") as info:
        SkinnedMeshes(frames).mesh("job", demo_sized, fps=24.0, frame_count=300, resolution=64, target_faces=20_000)
    assert "target_faces" in str(info.value)


def test_keypoints_and_frames_have_a_bound_too(demo_sized, monkeypatch):
    frames = SnapshotFrames(work_bytes=48 * MIB)
    frames.load("job", demo_sized)
    _no_work(monkeypatch)
    with pytest.raises(TooMuchWork, match="keypoint tracks"):
        frames.keypoints("job", demo_sized, fps=MIN_FPS, frame_count=MAX_FRAME_COUNT, mode="pingpong")
    tiny = SnapshotFrames(work_bytes=1 * MIB)  # 2,000 Gaussians x 1 kB: not even one frame
    with pytest.raises(TooMuchWork, match="one frame of this snapshot"):
        tiny.frame("job", demo_sized, 0, fps=24.0, frame_count=10)


def test_frames_sampled_ahead_stop_at_the_bound(demo_sized):
    frames = SnapshotFrames(work_bytes=6 * MIB, frames_ahead=8)  # 2,000 Gaussians x 1 kB: 3 frames fit
    assert limits.frames_to_sample(2000, 8, 6 * MIB) == 3
    frames.frame("job", demo_sized, 0, fps=24.0, frame_count=10)
    assert sorted(key[-1] for key in frames._frames) == [0, 1, 2]


def test_memory_of_the_work_itself_stays_chunked(demo_sized):
    """The keypoint tracks of 2,000 frames at 512 handles held 800 MB before (the field over all
    times at once); now they are sampled 64 times at a time."""
    import os
    import subprocess
    import sys

    code = (
        "import resource, sys\n"
        "from pathlib import Path\n"
        "from dynapose4d.server.frames import SnapshotFrames\n"
        "f = SnapshotFrames(); f.load('j', Path(sys.argv[1]))\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "f.keypoints('j', Path(sys.argv[1]), fps=24.0, frame_count=2000)\n"
        "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(demo_sized)], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.split()[-1]) < 250, out.stdout  # MB of peak growth


def test_a_long_clip_is_fetchable_with_the_defaults_and_any_fps(long_clip):
    frames = SnapshotFrames()
    data, _ = frames.frame("job", long_clip, 0)
    tracks = frames.keypoints("job", long_clip)
    assert tracks["fps"] == MIN_FPS and 2 <= tracks["frame_count"] <= MAX_FRAME_COUNT
    assert tracks["video_fps"] == pytest.approx(6.349e-05)
    for fps in (MIN_FPS, 24.0, 1000.0):
        tracks = frames.keypoints("job", long_clip, fps=fps)  # the clip is longer than 10,000 frames at 24 fps
        assert tracks["frame_count"] == MAX_FRAME_COUNT if fps > 1 else tracks["frame_count"] >= 2
        frames.frame("job", long_clip, tracks["frame_count"] - 1, fps=fps)


def test_the_server_answers_the_bound_with_413_and_stays_up(tmp_path, demo_sized):
    server = start_server(tmp_path, "--max-jobs", "0", upload_kind=True)
    try:
        from tests.test_server_uploads import _png

        job_id = server.create_job(UPLOAD_KIND, {}, {"image": ("a.png", _png())}).json()["id"]
        target = JobFolder(server.jobs_dir / job_id).snapshot
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(JobFolder(demo_sized).snapshot.read_bytes())
        query = "&".join(f"{k}={v}" for k, v in ISSUE_MESH.items())
        reply = server.get(f"/v1/jobs/{job_id}/mesh?{query}", timeout=30)
        assert reply.status == 413, reply.body
        assert "MiB per request" in json.loads(reply.body)["detail"]
        assert server.get("/v1/health").status == 200
    finally:
        server.stop()
