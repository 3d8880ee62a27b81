"""The server's parts without a server: job store, event log, worker event file, failures."""

import json
import subprocess
import sys
import time

import pytest

from dynapose4d.server.runner.eventlog import EventLog
from dynapose4d.server.runner.store import JobRecord, JobStore, UnknownJob, check_job_id
from dynapose4d.server.runner.worker import EventWriter, StopRequest, _describe_failure, _last_snapshot_version


def test_job_ids_are_strict():
    assert check_job_id("0123456789abcdef0123456789abcdef")
    for bad in ("..", "../x", "0123456789ABCDEF0123456789ABCDEF", "0" * 31, "0" * 33, "0" * 31 + "/", "", None):
        with pytest.raises(UnknownJob, match="32 lowercase hex digits"):
            check_job_id(bad)


def test_store_round_trip_and_recovery_skips_what_is_not_a_job(tmp_path):
    store = JobStore(tmp_path)
    record = JobRecord(id=store.new_id(), kind="demo", state="queued", created_at=time.time())
    staging = store.staging_dir(record.id)
    staging.mkdir(parents=True)
    store.save(record, folder=staging)
    store.commit(record.id)
    (tmp_path / "notes").mkdir()  # a folder without a record
    (tmp_path / ("f" * 32)).mkdir()
    (tmp_path / ("f" * 32) / "state.json").write_text("{broken")
    store.staging_dir("e" * 32).mkdir(parents=True)  # an upload that never finished
    records, warnings = store.load_all()
    assert [r.to_dict() for r in records] == [record.to_dict()]
    assert len(warnings) == 2 and all("not a readable job" in w for w in warnings)
    assert not (tmp_path / ".incoming" / ("e" * 32)).exists()
    store.delete(record.id)
    assert store.load_all()[0] == []


def test_state_json_holds_no_settings_and_an_old_one_with_settings_still_loads(tmp_path):
    """The settings live in job.json alone; a state.json written by an earlier release still has
    a copy, which is read past (and gone at the next save)."""
    store = JobStore(tmp_path)
    record = JobRecord(id="b" * 32, kind="demo", state="interrupted", created_at=1.0)
    store.job_dir(record.id).mkdir()
    store.save(record)
    assert "settings" not in json.loads(store.job_dir(record.id).joinpath("state.json").read_text())
    old = dict(record.to_dict(), settings={"iterations": 3, "gaussians": 200})
    store.job_dir(record.id).joinpath("state.json").write_text(json.dumps(old))
    records, warnings = store.load_all()
    assert [r.to_dict() for r in records] == [record.to_dict()] and warnings == []
    store.save(records[0])
    assert "settings" not in json.loads(store.job_dir(record.id).joinpath("state.json").read_text())


def test_event_log_reads_complete_lines_only(tmp_path):
    path = tmp_path / "events.jsonl"
    log = EventLog(path)
    assert log.poll() == 0  # no file yet
    with open(path, "ab") as fh:
        fh.write(b'{"type": "progress", "iteration": 1, "total": 4, "losses": {"loss": 2.0}}\n{"type": "progr')
    assert log.poll() == 1 and log.progress.iteration == 1 and log.progress.losses == {"loss": 2.0}
    with open(path, "ab") as fh:
        fh.write(b'ess", "iteration": 2, "total": 4}\nnot json\n{"type": "snapshot", "version": 3, "time": 1.0}\n')
    assert log.poll() == 3
    assert log.progress.iteration == 2 and log.progress.snapshot == {"version": 3}
    assert [(i, kind) for i, kind, _ in log.since(-1)] == [(0, "progress"), (1, "progress"), (2, "log"), (3, "snapshot")]
    assert [i for i, _, _ in log.since(2)] == [3]
    assert len(log) == 4  # the bad line keeps its id, and says it is broken (issue 27: it was skipped silently)
    broken = json.loads(log.since(1)[0][2])
    assert broken["broken"] and broken["level"] == "warning" and "event 2 of this job is broken" in broken["message"]
    assert log.progress.message is None  # a broken line is no progress


def test_worker_event_file_survives_a_torn_line(tmp_path):
    (tmp_path / "events.jsonl").write_bytes(b'{"type": "snapshot", "version": 4}\n{"type": "progress", "itera')
    assert _last_snapshot_version(tmp_path / "events.jsonl") == 4
    writer = EventWriter(tmp_path, StopRequest(10))
    writer.write({"type": "log", "message": "next attempt", "value": float("nan")})
    writer.close()
    log = EventLog(tmp_path / "events.jsonl")
    log.poll()
    kinds = [kind for _, kind, _ in log.since(-1)]
    assert kinds == ["snapshot", "log", "log"] and len(log) == 3  # the torn line stays on its own line
    assert json.loads(log.since(-1)[1][2])["broken"]
    last = json.loads(log.since(-1)[-1][2])
    assert last["message"] == "next attempt" and last["value"] is None and last["time"] > 0
    assert writer.snapshot_version == 4  # the next snapshot of this job is version 5


def test_failure_messages(tmp_path):
    class OutOfMemoryError(RuntimeError):
        pass

    job_dir = tmp_path  # on a disk with room: no failure is blamed on disk space
    message = _describe_failure(OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore"), job_dir)
    assert message.startswith("out of GPU memory: CUDA out of memory. Tried to allocate 2.00 GiB") and "fewer Gaussians" in message
    from dynapose4d.pipeline import JobError

    assert _describe_failure(JobError("setting 'x' must be int"), job_dir) == "setting 'x' must be int"
    assert _describe_failure(KeyError("boom"), job_dir) == "KeyError: 'boom'"


def test_a_record_is_saved_in_place_when_the_disk_is_full(tmp_path, monkeypatch):
    """With no space for a temporary file, the record is rewritten inside its own blocks, so the
    state on disk still agrees with the server's (issue 13)."""
    import errno
    import pathlib

    from dynapose4d.pipeline import JobFolder
    from dynapose4d.server.runner.store import JobRecord, JobStore

    store = JobStore(tmp_path / "jobs")
    record = JobRecord(id="a" * 32, kind="demo", state="running", created_at=1.0)
    store.job_dir(record.id).mkdir()
    store.save(record)
    real_write = pathlib.Path.write_bytes

    def full_disk(self, data):
        if self.name.endswith(".tmp"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(self, data)

    monkeypatch.setattr(pathlib.Path, "write_bytes", full_disk)
    record.state, record.error = "failed", "not enough disk space"
    store.save(record)
    saved = json.loads(JobFolder(store.job_dir(record.id)).state.read_text())
    assert saved["state"] == "failed" and saved["error"] == "not enough disk space"
    assert not list(store.job_dir(record.id).glob("*.tmp"))


def test_a_full_disk_never_leaves_a_torn_event_line(tmp_path):
    """Issue 27, finding 10: the worker's buffered write left a truncated line on a full disk. In
    a child process whose file-size limit is the disk running out (the kernel writes short, then
    refuses), events are written until one fails: the file ends with whole lines only, and the
    next write after space comes back lands on its own line."""
    code = (
        "import resource, signal, sys\n"
        "from pathlib import Path\n"
        "from dynapose4d.server.runner.worker import EventWriter, StopRequest\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "writer = EventWriter(Path(sys.argv[1]), StopRequest(10))\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (5000, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))\n"
        "for i in range(1000):\n"
        "    try:\n"
        "        writer.write({'type': 'log', 'message': 'x' * 97, 'i': i})\n"
        "    except OSError as exc:\n"
        "        print('failed at', i, exc.errno)\n"
        "        break\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.startswith("failed at"), out.stdout + out.stderr
    data = (tmp_path / "events.jsonl").read_bytes()
    assert data.endswith(b"\n") and len(data) <= 5000
    lines = data.splitlines()
    assert [json.loads(line)["i"] for line in lines] == list(range(len(lines)))  # whole lines, none torn
    writer = EventWriter(tmp_path, StopRequest(10))
    writer.write({"type": "log", "message": "space again"})
    writer.close()
    log = EventLog(tmp_path / "events.jsonl")
    log.poll()
    assert not any(json.loads(text).get("broken") for _, _, text in log.since(-1))
    assert json.loads(log.since(-1)[-1][2])["message"] == "space again"
