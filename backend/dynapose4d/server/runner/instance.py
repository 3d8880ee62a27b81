"""One server per jobs folder: an exclusive lock on ``<jobs>/.server.lock``, held for the server's life.

Two servers on one folder would each list different jobs, mark each other's running jobs
interrupted and start a second worker for one job. The lock is an OS file lock (``flock`` /
``msvcrt.locking``), so the system releases it when its holder dies, however it dies: a lock
left by a killed server is simply free, and the next server takes it over (and says so). The
file's text names the holder (PID, URL), for the message the second server prints.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

SERVER_LOCK_FILE = ".server.lock"


def try_lock(fh) -> bool:
    """Take an exclusive, non-blocking lock on the open file ``fh``; False if someone holds it."""
    try:
        if os.name == "nt":
            import msvcrt

            fh.seek(0)
            msvcrt.locking(fh.fileno(), msvcrt.LK_NBLCK, 1)
        else:
            import fcntl

            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False


class JobsFolderBusy(RuntimeError):
    """Another server is using this jobs folder; the message names it."""


class ServerLock:
    def __init__(self, jobs_dir: Path):
        self.path = Path(jobs_dir) / SERVER_LOCK_FILE
        self._fh = None
        self.previous: dict = {}  # what the file said before we took it (a dead server's record)

    def acquire(self) -> "ServerLock":
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fh = open(self.path, "a+", encoding="utf-8")
        if not try_lock(fh):
            holder = _read_holder(self.path)
            fh.close()
            who = f"PID {holder.get('pid', '?')}" + (f", {holder['url']}" if holder.get("url") else "")
            raise JobsFolderBusy(
                f"another DynaPose4D server ({who}) is already running on the jobs folder {self.path.parent}; "
                "use that one, stop it first, or give this one its own --jobs-dir"
            )
        self._fh = fh
        self.previous = _read_holder(self.path)
        self.describe({"pid": os.getpid(), "started_at": time.time()})
        return self

    def describe(self, info: dict) -> None:
        """Record who holds the lock (read by a second server for its message)."""
        self._fh.seek(0)
        self._fh.truncate()
        self._fh.write(json.dumps(info))
        self._fh.flush()

    def release(self) -> None:
        if self._fh is not None:
            self._fh.close()  # closing drops the lock; the file stays (removing it would race a new holder)
            self._fh = None


def _read_holder(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8") or "{}")
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}
