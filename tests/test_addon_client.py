"""The add-on's backend side against the real server (a subprocess on 127.0.0.1): the stdlib
client, the threaded job session, the local launcher and the environment builder. No bpy."""

import json
import os
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

pytest.register_assert_rewrite("tests.server_fixtures")
from blender_addon.client import BackendClient, BackendError, Connection, SnapshotReplaced  # noqa: E402
from blender_addon.follow import FetchProgress, Finished, JobSession, JobView, Problem, SequenceReady, Status  # noqa: E402
from blender_addon.format.sequence import Sampling  # noqa: E402
from blender_addon.format.wire import decode_frame  # noqa: E402
from blender_addon.jobs import JobOptions, JobRequest, build_request  # noqa: E402
from blender_addon.launcher import Backends, BackendSettings, EnvironmentBuilder, LaunchConfig, LocalBackend  # noqa: E402
from tests.server_fixtures import TINY  # noqa: E402

pytest_plugins = ["tests.server_fixtures"]

SAMPLING = Sampling(fps=24.0, frame_count=7, mode="pingpong")


@pytest.fixture(scope="module")
def client(job_server):
    c = BackendClient(job_server.url, job_server.token)
    yield c
    c.close()


def run_session(session: JobSession, timeout: float = 120.0) -> list:
    """Drain a session like the watch timer does, until it finishes."""
    messages = []
    deadline = time.monotonic() + timeout
    while not any(isinstance(m, Finished) for m in messages):
        assert time.monotonic() < deadline, f"session did not finish; got {messages[-5:]}"
        messages += session.drain()
        time.sleep(0.05)
    session.join(10)
    assert not session.alive
    return messages


@pytest.fixture(scope="module")
def followed(job_server):
    """A tiny demo job created and followed by a JobSession, as the Generate button does."""
    request = JobRequest("demo", dict(TINY))
    session = JobSession(lambda: BackendClient(job_server.url, job_server.token), SAMPLING, request=request).start()
    return session, run_session(session)


def test_health_and_kinds(client):
    health = client.health()
    assert health["status"] == "ok" and health["api"] == "v1"
    kinds = client.kinds()
    assert {"demo", "generate", "animate"} <= set(kinds)
    assert kinds["generate"]["inputs"]["image"]["required"] is True


def test_session_follows_a_job_from_upload_to_done(followed):
    session, messages = followed
    states = [m.view.state for m in messages if isinstance(m, Status)]
    assert states[0] == "uploading" and states[-1] == "done"
    assert not [m for m in messages if isinstance(m, Problem)]
    progress = [m.view for m in messages if isinstance(m, Status) and m.view.iteration is not None]
    assert progress[-1].iteration == progress[-1].total == 3
    final = messages[-1]
    assert isinstance(final, Finished) and final.view.state == "done" and final.view.snapshot_version == 1
    fetched = [m for m in messages if isinstance(m, FetchProgress)]
    assert fetched[-1].done == fetched[-1].total == SAMPLING.frame_count


def test_session_delivers_the_snapshot_as_the_server_samples_it(followed, client):
    session, messages = followed
    sequences = [m.sequence for m in messages if isinstance(m, SequenceReady)]
    assert sequences and sequences[-1].version == 1
    seq = sequences[-1]
    assert seq.positions.shape == (SAMPLING.frame_count, 600, 3) and seq.keypoints.shape[0] == SAMPLING.frame_count
    for index in (0, 4, 6):
        frame = decode_frame(client.frame(session.job_id, index, SAMPLING))
        np.testing.assert_array_equal(seq.positions[index], frame.positions)
        np.testing.assert_allclose(seq.keypoints[index], frame.keypoints, atol=1e-5)  # JSON rounds to 1e-6
    np.testing.assert_array_equal(seq.colors, decode_frame(client.frame(session.job_id, 0, SAMPLING)).colors)
    tracks = client.keypoints(session.job_id, SAMPLING)
    assert seq.names == tracks["names"] and seq.edges == [tuple(e) for e in tracks["edges"]]
    assert np.array(tracks["camera"]["c2w"]).shape == (4, 4)
    # pingpong over 7 frames at 24 fps of a clip that is 5 frames at the video's fps: time goes back
    assert np.all(np.diff(seq.times) != 0) and seq.times[0] == 0.0


def test_attaching_to_a_finished_job_fetches_its_latest_snapshot(followed, job_server):
    job_id = followed[0].job_id
    session = JobSession(lambda: BackendClient(job_server.url, job_server.token), Sampling(12.0, 3), job_id=job_id).start()
    messages = run_session(session)
    sequences = [m.sequence for m in messages if isinstance(m, SequenceReady)]
    assert len(sequences) == 1 and sequences[0].frame_count == 3 and sequences[0].sampling.fps == 12.0
    assert messages[-1].view.state == "done"


def test_event_stream_and_a_versioned_fetch_of_a_replaced_snapshot(followed, client):
    job_id = followed[0].job_id
    events = list(client.events(job_id))
    assert events[0][0] == "status" and events[-1][0] == "end"
    assert any(kind == "snapshot" for kind, _, _ in events)
    with pytest.raises(SnapshotReplaced):
        client.frame(job_id, 0, SAMPLING, version=99)


def test_event_stream_can_be_closed_from_another_thread(job_server, client):
    job_id = client.create_job("demo", dict(TINY, iterations=400))["id"]
    try:
        stream = client.events(job_id)
        got = []
        reader = threading.Thread(target=lambda: got.extend(stream))
        reader.start()
        time.sleep(1.0)
        stream.close()
        reader.join(5)
        assert not reader.is_alive() and got and got[-1][0] != "end"
    finally:
        client.cancel(job_id)


def test_cancel_through_the_session(job_server):
    request = JobRequest("demo", dict(TINY, iterations=2000))
    session = JobSession(lambda: BackendClient(job_server.url, job_server.token), SAMPLING, request=request, fetch=False).start()
    deadline = time.monotonic() + 60
    while session.job_id is None or session.view.state != "running":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    session.cancel()
    messages = run_session(session, timeout=60)
    assert messages[-1].view.state == "cancelled"


def test_errors_say_what_to_do(job_server):
    with pytest.raises(BackendError, match="401.*token") as err:
        BackendClient(job_server.url, "wrong-token").status("x")
    assert err.value.status == 401
    with pytest.raises(BackendError, match="404"):
        BackendClient(job_server.url, job_server.token).status("no-such-job")
    with pytest.raises(BackendError, match="422") as err:
        BackendClient(job_server.url, job_server.token).create_job("demo", {"iterations": 0})
    assert "iterations" in str(err.value)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(BackendError, match="cannot reach the DynaPose4D backend"):
        BackendClient(f"http://127.0.0.1:{port}", "t", timeout=5).health()
    with pytest.raises(BackendError, match="must look like"):
        BackendClient("127.0.0.1:8765", "t")


def test_a_session_reports_an_unreachable_backend():
    def connect():
        raise BackendError("cannot reach the DynaPose4D backend at http://127.0.0.1:1")

    session = JobSession(connect, SAMPLING, request=JobRequest("demo", {})).start()
    messages = run_session(session, timeout=10)
    problems = [m for m in messages if isinstance(m, Problem)]
    assert problems and problems[0].fatal and "cannot reach" in problems[0].message


def test_uploads_an_image_for_a_generate_job(upload_server, tmp_path):
    from PIL import Image

    path = tmp_path / "input.png"
    Image.fromarray(np.full((32, 32, 3), 200, np.uint8)).save(path)
    client = BackendClient(upload_server.url, upload_server.token)
    request = build_request(JobOptions(kind="generate", image_path=str(path)))
    status = client.create_job("upload-check", {"iterations": 1}, request.files)
    assert status["inputs"]["image"]["filename"] == "input.png" and status["inputs"]["image"]["bytes"] == path.stat().st_size


def test_job_view_text():
    view = JobView(state="running", stage="dynamic", iteration=120, total=500, eta_s=83.0)
    assert view.text() == "dynamic · 120/500 · ETA 1:23"
    view.apply_event("progress", {"stage": "static", "iteration": 5, "total": 10, "eta_s": 3725})
    assert view.progress == 0.5 and view.text() == "static · 5/10 · ETA 1:02:05"
    view.apply_status({"state": "done", "eta_s": 4.0})
    assert view.final and view.eta_s is None and view.text() == "done"


# -- the launcher ----------------------------------------------------------------------------------------


def test_address_file_connection(job_server, tmp_path):
    found = Connection.from_address_file(job_server.address_file)
    assert found.url == job_server.url and found.token == job_server.token
    with pytest.raises(BackendError, match="not running"):
        Connection.from_address_file(tmp_path / "missing.json")
    (tmp_path / "other.json").write_text(json.dumps({"url": "x"}))
    with pytest.raises(BackendError, match="not a DynaPose4D server address file"):
        Connection.from_address_file(tmp_path / "other.json")


def test_backends_reuse_a_running_server_and_connect_remotely(job_server, tmp_path):
    backends = Backends()
    # A server that already answers at the address file is used, not started again.
    local = BackendSettings(mode="LOCAL", python="/nonexistent/python", address_file=str(job_server.address_file))
    assert backends.connection(local) == Connection(job_server.url, job_server.token) and backends.local is None
    remote = BackendSettings(mode="REMOTE", url=job_server.url, token=job_server.token)
    assert backends.client(remote).health()["status"] == "ok"
    with pytest.raises(BackendError, match="token"):
        backends.connection(BackendSettings(mode="REMOTE", url=job_server.url))
    # No server and no interpreter: an error that says what to do.
    with pytest.raises(BackendError, match="create the backend environment"):
        backends.connection(BackendSettings(mode="LOCAL", python=str(tmp_path / "none"), address_file=str(tmp_path / "s.json")))


def test_local_backend_starts_serves_and_stops(tmp_path):
    config = LaunchConfig(python=sys.executable, address_file=str(tmp_path / "server.json"), jobs_dir=str(tmp_path / "jobs"),
                          env={"OMP_NUM_THREADS": "1"})
    backend = LocalBackend(config)
    (tmp_path / "server.json").write_text(json.dumps({"format": "dynapose4d.server/1", "url": "http://127.0.0.1:1", "token": "old", "pid": 1}))
    backend.start()
    try:
        connection = backend.wait(60)  # not the stale file's address
        assert connection.url.startswith("http://127.0.0.1:") and connection.token != "old"
        assert BackendClient.connect(connection).jobs() == []
    finally:
        backend.stop()
    assert not backend.running and not (tmp_path / "server.json").exists()


def test_local_backend_that_fails_reports_its_log(tmp_path):
    backend = LocalBackend(LaunchConfig(python=sys.executable, address_file=str(tmp_path / "s.json"), extra_args=("--port", "-5")))
    backend.start()
    with pytest.raises(BackendError, match="exited with status"):
        backend.wait(60)


# -- the environment builder -----------------------------------------------------------------------------


_BUILD_BACKEND = """
import base64, hashlib, zipfile

FILES = {
    "dynapose4d/__init__.py": "__version__ = '0.0.1'\\n",
    "dynapose4d-0.0.1.dist-info/METADATA": (
        "Metadata-Version: 2.1\\nName: dynapose4d\\nVersion: 0.0.1\\n"
        "Provides-Extra: missing\\nRequires-Dist: not-a-real-package-xyz; extra == 'missing'\\n"
    ),
    "dynapose4d-0.0.1.dist-info/WHEEL": "Wheel-Version: 1.0\\nGenerator: test\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n",
}


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    name = "dynapose4d-0.0.1-py3-none-any.whl"
    record = []
    with zipfile.ZipFile(f"{wheel_directory}/{name}", "w") as zf:
        for path, text in FILES.items():
            data = text.encode()
            zf.writestr(path, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{path},sha256={digest},{len(data)}")
        record.append("dynapose4d-0.0.1.dist-info/RECORD,,")
        zf.writestr("dynapose4d-0.0.1.dist-info/RECORD", "\\n".join(record) + "\\n")
    return name
"""


def fake_backend_source(folder):
    """A tiny package in the backend's layout, with an in-tree PEP 517 build backend that needs
    nothing installed: pip builds and installs it offline (``--no-index``)."""
    folder.mkdir(parents=True)
    (folder / "dynapose4d").mkdir()
    (folder / "fake_build.py").write_text(_BUILD_BACKEND)
    (folder / "pyproject.toml").write_text(
        '[build-system]\nrequires = []\nbuild-backend = "fake_build"\nbackend-path = ["."]\n'
        '[project]\nname = "dynapose4d"\nversion = "0.0.1"\n'
    )
    return folder


def test_environment_builder_creates_a_venv_with_the_backend(tmp_path):
    source = fake_backend_source(tmp_path / "src")
    builder = EnvironmentBuilder(tmp_path / "env", source, base_python=sys.executable, extras=(), pip_args=("--no-index",))
    seen = []
    builder.start()
    while builder.snapshot().state == "running":  # what the preferences' progress bar shows
        seen.append(builder.snapshot())
        time.sleep(0.05)
    builder.join(5)
    done = builder.snapshot()
    assert done.state == "done", done.error
    assert done.fraction == 1.0 and any(s.step == 2 and s.title == "Installing the backend" for s in seen)
    assert [s.fraction for s in seen] == sorted(s.fraction for s in seen)
    out = subprocess.run([str(builder.python), "-c", "import dynapose4d; print(dynapose4d.__version__)"],
                         capture_output=True, text=True)
    assert out.stdout.strip() == "0.0.1", out.stderr


def test_environment_builder_reports_pip_failures(tmp_path):
    source = fake_backend_source(tmp_path / "src")
    builder = EnvironmentBuilder(tmp_path / "env", source, base_python=sys.executable, extras=("missing",), pip_args=("--no-index",))
    builder.start().join(180)
    failed = builder.snapshot()
    assert failed.state == "failed" and "Installing the backend failed" in failed.error
    assert "not-a-real-package-xyz" in failed.error
    with pytest.raises(BackendError, match="no backend sources"):
        EnvironmentBuilder(tmp_path / "env2", tmp_path / "nowhere").start()


def test_bundled_backend_source_is_found_in_a_checkout():
    from blender_addon.launcher import bundled_backend_source

    source = bundled_backend_source()
    assert source is not None and (source / "dynapose4d" / "server" / "api" / "app.py").is_file()



def test_panel_defaults_are_the_backends_defaults():
    """The add-on always sends its loss weights: its defaults must be the backend's, or a user who
    never touches them would silently run other settings than the command line."""
    from dynapose4d import pipeline

    options = JobOptions()
    for kind in ("generate", "animate", "demo"):
        declared = {s.name: s.default for s in pipeline.SETTINGS[kind]}
        for name in ("lambda_kml", "lambda_scl", "num_keypoints", "seed"):
            if name in declared:
                assert getattr(options, name) == declared[name], (kind, name)
