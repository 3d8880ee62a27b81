"""A job's settings are checked once per entry point: the CLI (and batch) before writing the job,
the server's upload before writing it, the worker when it reads job.json. The server keeps them
in job.json alone (state.json has no copy).

The job kinds' runners are replaced by a stub, so nothing here trains anything.
"""

import asyncio
import json
from pathlib import Path

import pytest

import dynapose4d.pipeline as pipeline
import dynapose4d.pipeline.job as pipeline_job
from dynapose4d.pipeline.settings import validate_settings

SETTINGS = {"iterations": 3, "frames": 4}


@pytest.fixture
def checks(monkeypatch):
    """Every call of validate_settings, under each name the entry points use, as ``(kind, raw)``."""
    calls = []

    def counted(kind, raw):
        calls.append((kind, dict(raw or {})))
        return validate_settings(kind, raw)

    import dynapose4d.server.api.uploads as uploads

    for module in (pipeline, pipeline_job, uploads):
        monkeypatch.setattr(module, "validate_settings", counted)
    return calls


@pytest.fixture
def ran(monkeypatch):
    """The settings each job run got; the runners finish at once."""
    got = []

    def stub(folder, settings, inputs, emit, should_stop):
        got.append(settings)
        return {"status": "finished"}

    monkeypatch.setattr(pipeline_job, "RUNNERS", {kind: stub for kind in pipeline_job.RUNNERS})
    return got


def _animate_inputs(folder: Path) -> dict:
    (folder / "lamp.ply").write_bytes(b"ply\n")
    (folder / "clip.mp4").write_bytes(b"\0" * 16)
    return {"ply": folder / "lamp.ply", "video": folder / "clip.mp4"}


# -- the CLI ------------------------------------------------------------------------------------
def test_the_cli_checks_its_settings_once_and_a_resume_checks_job_json_once(tmp_path, checks, ran):
    from dynapose4d.cli.main import main

    inputs = _animate_inputs(tmp_path)
    argv = ["animate", str(inputs["ply"]), "--video", str(inputs["video"]), "-o", str(tmp_path / "job"), "--iterations", "3", "--frames", "4"]
    assert main(argv) == 0
    assert checks == [("animate", SETTINGS)]
    full = validate_settings("animate", SETTINGS)
    assert ran == [full] and json.loads((tmp_path / "job" / "job.json").read_text())["settings"] == full
    checks.clear()
    assert main(argv) == 0  # a resume: the job.json on disk is what is checked, once
    assert checks == [("animate", full)] and ran[-1] == full


def test_a_bad_cli_setting_is_refused_before_anything_is_copied(tmp_path, checks, ran, capsys):
    from dynapose4d.cli.main import main

    inputs = _animate_inputs(tmp_path)
    assert main(["animate", str(inputs["ply"]), "--video", str(inputs["video"]), "-o", str(tmp_path / "job"), "--frames", "1"]) == 1
    assert "frames" in capsys.readouterr().err
    assert not (tmp_path / "job").exists() and ran == []


def test_a_batch_checks_each_line_once(tmp_path, checks, ran):
    from dynapose4d.cli.batch import JobState, read_manifest, run_here

    inputs = _animate_inputs(tmp_path)
    line = {"name": "lamp", "kind": "animate", "inputs": {r: str(p) for r, p in inputs.items()}, "settings": SETTINGS}
    (tmp_path / "jobs.jsonl").write_text(json.dumps(line) + "\n")
    jobs, bad = read_manifest(tmp_path / "jobs.jsonl")
    assert bad == [] and jobs[0].settings == SETTINGS  # as written: the line's identity
    states = [JobState(job.name, job.line, job.kind) for job in jobs]
    run_here(jobs, states, tmp_path / "out", save=lambda: None, display=lambda: None)
    assert states[0].status == "done", states[0].error
    assert checks == [("animate", SETTINGS)] and ran == [validate_settings("animate", SETTINGS)]


# -- the worker's side: run_job ------------------------------------------------------------------
def test_run_job_checks_the_job_json_it_reads_unless_this_process_wrote_it(tmp_path, checks, ran):
    (tmp_path / "inputs").mkdir()
    pipeline.write_job(tmp_path, "demo", {"iterations": 3})
    assert len(checks) == 1  # write_job's public form still checks (scripts call it so)
    assert json.loads((tmp_path / "job.json").read_text())["settings"] == validate_settings("demo", {"iterations": 3})
    checks.clear()
    pipeline.run_job(tmp_path)  # the worker: a job.json from elsewhere
    assert len(checks) == 1
    checks.clear()
    pipeline.run_job(tmp_path, validated=True)
    assert checks == [] and len(ran) == 2 and ran[0] == ran[1]


def test_write_job_with_validated_settings_writes_them_as_given(tmp_path, checks):
    (tmp_path / "inputs").mkdir()
    full = validate_settings("demo", {"iterations": 3})
    checks.clear()
    pipeline.write_job(tmp_path, "demo", full, {}, validated=True)
    assert checks == [] and json.loads((tmp_path / "job.json").read_text())["settings"] == full
    with pytest.raises(pipeline.JobError, match="unknown setting"):
        pipeline.write_job(tmp_path, "demo", {"iteratons": 3})


# -- the server's upload ---------------------------------------------------------------------------
class _Upload:
    """Just what receive_job reads of a request: its headers and its body, in one chunk."""

    def __init__(self, fields: dict):
        from tests.server_fixtures import multipart

        self.body, content_type = multipart(fields, {})
        self.headers = {"content-type": content_type, "content-length": str(len(self.body))}

    async def stream(self):
        yield self.body


def test_an_upload_checks_its_settings_once_and_state_json_keeps_no_copy(tmp_path, checks):
    from dynapose4d.server.api.uploads import receive_job
    from dynapose4d.server.config import ServerConfig, UploadLimits
    from dynapose4d.server.runner.manager import JobManager
    from dynapose4d.server.runner.store import JobStore

    config = ServerConfig(jobs_dir=tmp_path, token="-", max_jobs=0)
    upload = _Upload({"kind": "demo", "settings": json.dumps({"iterations": 3})})

    async def create():
        manager = JobManager(JobStore(tmp_path), config)
        job = await manager.create(lambda staging: receive_job(upload, staging, UploadLimits(), asyncio.Semaphore(1)))
        return manager.status(job)

    status = asyncio.run(create())
    full = validate_settings("demo", {"iterations": 3})
    assert checks == [("demo", {"iterations": 3})]
    assert status["settings"] == full
    folder = tmp_path / status["id"]
    assert json.loads((folder / "job.json").read_text())["settings"] == full
    assert "settings" not in json.loads((folder / "state.json").read_text())

    # A restarted server reads the settings from job.json, and an old state.json with its own
    # copy of them still loads.
    state = json.loads((folder / "state.json").read_text())
    (folder / "state.json").write_text(json.dumps(dict(state, settings={"stale": True})))

    async def restart():
        manager = JobManager(JobStore(tmp_path), config)
        manager.start()
        try:
            return manager.status(manager.get(status["id"]))
        finally:
            await manager.shutdown()

    again = asyncio.run(restart())
    assert again["settings"] == full and again["state"] == "queued"
