"""Jobs on disk: one folder per job under the jobs folder, with the server's record beside the
pipeline's files. Everything a job needs to be listed, resumed or downloaded after a restart
lives in its folder::

    <jobs>/<id>/job.json            kind, settings, inputs (pipeline.write_job)
                inputs/<role><.ext>  uploaded files
                state.json          the server's record (:class:`JobRecord`; the settings are
                                    job.json's alone, and a "settings" key written by earlier
                                    releases is ignored)
                events.jsonl        events appended by the worker, one JSON object a line
                worker.log          the worker's stdout and stderr
                worker.lock         held by the worker while it runs
                snapshots/latest.pt the latest snapshot model (Dynamic4D.save, atomic)
                checkpoints/ ...    the pipeline's checkpoints and results (sequence/, model.pt)
                result.zip          download cache, built on first request
    <jobs>/.incoming/<id>/          uploads in progress (moved into place once valid)
    <jobs>/.server.lock             held by the server using this folder (:mod:`.instance`)

The jobs folder is private to the user (0700; the server runs with umask 077, so job folders
are 0700 and their files 0600).

Job ids are 32 lowercase hex digits; anything else is refused before it touches a path.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ...io.job_folder import JobFolder

INCOMING = ".incoming"

# waiting: a generate job with choose_video=ask made its video candidates and waits for a choice
# (POST .../candidates/{k}/choose queues it again); its worker has exited.
STATES = ("queued", "running", "waiting", "done", "failed", "cancelled", "interrupted")
FINAL_STATES = frozenset({"waiting", "done", "failed", "cancelled", "interrupted"})
RESUMABLE_STATES = frozenset({"failed", "cancelled", "interrupted"})

_JOB_ID = re.compile(r"[0-9a-f]{32}")


class UnknownJob(LookupError):
    """No job with this id; the message says what a job id looks like."""


def check_job_id(job_id: str) -> str:
    if not isinstance(job_id, str) or not _JOB_ID.fullmatch(job_id):
        shown = job_id if len(str(job_id)) <= 80 else str(job_id)[:80] + "..."
        raise UnknownJob(f"no job {shown!r}: job ids are 32 lowercase hex digits")
    return job_id


@dataclass
class JobRecord:
    id: str
    kind: str
    state: str
    created_at: float
    inputs: dict = field(default_factory=dict)  # role -> {"file", "bytes", "filename"}
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None
    exit_code: int | None = None
    attempts: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "JobRecord":
        known = {f for f in cls.__dataclass_fields__}
        record = cls(**{k: v for k, v in data.items() if k in known})
        if record.state not in STATES:
            raise ValueError(f"unknown job state {record.state!r}")
        check_job_id(record.id)
        return record


def _overwrite_in_place(path: Path, data: bytes) -> bool:
    """On a full disk, rewrite ``path`` inside the blocks it already has (no new space needed),
    so the record on disk still agrees with the server's. False when it would need more."""
    try:
        allocated = os.stat(path).st_blocks * 512
    except (OSError, AttributeError):
        return False
    if len(data) > allocated:
        return False
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, data)
        os.ftruncate(fd, len(data))
        os.fsync(fd)
    finally:
        os.close(fd)
    return True


class JobStore:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            self.root.chmod(0o700)  # job files are the user's: uploads, results, logs
        except OSError:
            pass

    def new_id(self) -> str:
        return uuid.uuid4().hex

    def job_dir(self, job_id: str) -> Path:
        return self.root / check_job_id(job_id)

    def staging_dir(self, job_id: str) -> Path:
        return self.root / INCOMING / check_job_id(job_id)

    def commit(self, job_id: str) -> Path:
        """Move a fully uploaded and validated job into place."""
        target = self.job_dir(job_id)
        os.replace(self.staging_dir(job_id), target)
        return target

    def save(self, record: JobRecord, folder: Path | None = None) -> None:
        """Write the record into its job folder (or ``folder``, e.g. the staging one)."""
        path = JobFolder(folder or self.job_dir(record.id)).state
        tmp = path.with_name(path.name + ".tmp")
        data = json.dumps(record.to_dict(), indent=1).encode()
        try:
            tmp.write_bytes(data)
            os.replace(tmp, path)  # a crash mid-write leaves the previous record
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            if exc.errno not in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)) or not _overwrite_in_place(path, data):
                raise


    def load_all(self) -> tuple[list[JobRecord], list[str]]:
        """Every readable job record (oldest first), and warnings for folders that are not jobs.

        Uploads that never finished (``.incoming``) are removed.
        """
        shutil.rmtree(self.root / INCOMING, ignore_errors=True)
        records, warnings = [], []
        for folder in sorted(self.root.iterdir()):
            if not folder.is_dir() or folder.name.startswith("."):
                continue
            try:
                record = JobRecord.from_dict(json.loads(JobFolder(folder).state.read_text()))
                if record.id != folder.name:
                    raise ValueError(f"its record names job {record.id}")
            except (OSError, ValueError, TypeError, UnknownJob) as exc:
                warnings.append(f"skipping {folder}: not a readable job ({exc})")
                continue
            records.append(record)
        records.sort(key=lambda r: r.created_at)
        return records, warnings

    def delete(self, job_id: str) -> None:
        folder = self.job_dir(job_id)
        # Rename first so a half-deleted folder is never listed as a job after a crash.
        trash = self.root / INCOMING / f"deleted-{job_id}-{time.time_ns()}"
        trash.parent.mkdir(exist_ok=True)
        os.replace(folder, trash)
        shutil.rmtree(trash, ignore_errors=True)
