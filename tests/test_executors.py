"""The local path without Ray (issue 19): a server started without ``--executor ray`` never imports
Ray, nor do its workers, and ``--executor ray`` where Ray is missing says how to install it. Ray
is made unimportable by a ``ray`` module that records the attempt and fails, first on the path."""

import os
import subprocess
import sys

import pytest

pytest.register_assert_rewrite("tests.server_fixtures")
from tests.server_fixtures import ROOT, TINY, start_server  # noqa: E402

pytest_plugins = ["tests.server_fixtures"]

BLOCKER = '''
import os, traceback
with open(os.environ["RAY_IMPORT_MARKER"], "a") as fh:
    fh.write("".join(traceback.format_stack()) + "\\n")
raise ImportError("No module named 'ray' (blocked by the test)")
'''


@pytest.fixture
def no_ray(tmp_path, monkeypatch):
    blocker = tmp_path / "blocked"
    blocker.mkdir()
    (blocker / "ray.py").write_text(BLOCKER)
    marker = tmp_path / "ray-imports.txt"
    path = [str(blocker), str(ROOT / "backend"), str(ROOT)]
    monkeypatch.setenv("PYTHONPATH", ":".join(path))
    monkeypatch.setenv("RAY_IMPORT_MARKER", str(marker))
    return marker


def test_the_local_executor_runs_a_job_without_importing_ray(tmp_path, no_ray):
    server = start_server(tmp_path / "server")
    try:
        job_id = server.create_job("demo", TINY).json()["id"]
        status = server.wait_state(job_id, "done", "failed", timeout=120)
        assert status["state"] == "done", status
        assert server.get(f"/v1/jobs/{job_id}/frames/0").status == 200
    finally:
        server.stop()
    assert not no_ray.exists(), f"something imported ray:\n{no_ray.read_text()}"


def test_executor_ray_without_ray_installed_says_how_to_install_it(tmp_path, no_ray):
    done = subprocess.run(
        [sys.executable, "-m", "dynapose4d", "serve", "--executor", "ray", "--jobs-dir", str(tmp_path / "jobs"),
         "--address-file", str(tmp_path / "server.json")],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "--executor ray needs Ray" in done.stderr and "dynapose4d[cluster]" in done.stderr, done.stderr
    assert not (tmp_path / "server.json").exists()
    assert no_ray.exists()  # the refusal came from the import, not from a guess


def test_a_cluster_address_where_nothing_listens_is_an_error_before_the_server_starts(tmp_path):
    pytest.importorskip("ray")
    done = subprocess.run(
        [sys.executable, "-m", "dynapose4d", "serve", "--executor", "ray", "--ray-address", "127.0.0.1:1",
         "--jobs-dir", str(tmp_path / "jobs"), "--address-file", str(tmp_path / "server.json")],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "backend"), str(ROOT)])},
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "cannot connect to the Ray cluster at '127.0.0.1:1': nothing answers at 127.0.0.1:1" in done.stderr, done.stderr
    assert not (tmp_path / "server.json").exists()


@pytest.mark.parametrize("device, cluster_gpus, want", [
    ("cpu", 4, 0), ("auto", 0, 0), ("auto", 2, 1), ("cuda", 1, 1), ("cuda", 0, "no node of the Ray cluster has a GPU"),
])
def test_what_a_job_asks_of_the_cluster(device, cluster_gpus, want):
    """The GPU request by the job's device (a job kind without a device setting counts as auto)."""
    from dynapose4d.server.config import ServerConfig
    from dynapose4d.server.runner.ray_executor import RayExecutor

    class Cluster:  # the one Ray call this decision makes
        @staticmethod
        def cluster_resources():
            return {"CPU": 8.0, **({"GPU": float(cluster_gpus)} if cluster_gpus else {})}

    executor = RayExecutor(ServerConfig(jobs_dir=ROOT, token="-", executor="ray"))
    executor._ray = Cluster
    settings = {} if device == "auto" else {"device": device}
    if isinstance(want, str):
        with pytest.raises(OSError, match=want):
            executor.gpus_for(settings)
    else:
        assert executor.gpus_for(settings) == want
