"""The job worker: ``python -m dynapose4d.server.runner.worker JOB_DIR`` runs one job folder.

The server starts it as its own program (not multiprocessing: a child whose code lives inside
Blender's ``bl_ext`` cannot import it, DESIGN.md §5), so a crash, a CUDA out-of-memory error
or a kill ends this process and that job only.

Protocol with the server:
- stdin: the line ``stop`` asks for a stop (the pipeline stops at its next check and keeps its
  checkpoint). End of input means the server is gone: stop too, and if the pipeline does not
  get there within the orphan timeout, exit anyway (checkpoints are written atomically, so
  exiting at any moment keeps the last one).
- ``events.jsonl``: one JSON object a line, appended and flushed per event, each with
  ``type`` and ``time`` (Unix seconds when written):

  - ``{"type": "worker", "status": "started"|"finished"|"waiting"|"stopped"|"failed", "pid", ...}``
    (``error`` on failure, ``summary`` on success)
  - ``{"type": "stage", "stage", "status", "message"}``
  - ``{"type": "progress", "stage", "iteration", "total", "losses", "elapsed_s", "eta_s"}``
  - ``{"type": "snapshot", "stage", "iteration", "version", "stage_version", "num_frames",
    "video_fps", "duration_s", "gaussians", "keypoints"}``: written after the model is saved
    to ``snapshots/latest.pt``; ``version`` counts up over the job's whole life (resumes too)
  - ``{"type": "log", "level", "message"}``
- exit status: 0 finished, 3 stopped, 1 failed, 4 orphaned, 5 another worker holds the job.
- stdout/stderr go to ``worker.log`` (tracebacks land there).
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import threading
import time
import traceback
from dataclasses import replace
from pathlib import Path

from ...io.job_folder import JobFolder
from .diskspace import disk_full_message, disk_low, is_disk_full, remove_partial_files
from .instance import try_lock

EXIT_FINISHED = 0
EXIT_FAILED = 1
EXIT_STOPPED = 3
EXIT_ORPHANED = 4
EXIT_BUSY = 5
ORPHAN_TIMEOUT_ENV = "DYNAPOSE4D_ORPHAN_TIMEOUT_S"


class _StopNow(BaseException):
    """Raised from the event sink once a stage reports it stopped: the checkpoint is written,
    so the rest of the job (evaluation, exports) is skipped. BaseException so that no
    ``except Exception`` in the pipeline swallows it."""


class StopRequest:
    """The stop flag, set by a ``stop`` line on stdin, end of stdin, or SIGTERM."""

    def __init__(self, orphan_timeout_s: float):
        self._event = threading.Event()
        self.reason = ""
        self.orphan_timeout_s = orphan_timeout_s

    def __call__(self) -> bool:
        return self._event.is_set()

    def request(self, reason: str) -> None:
        if not self._event.is_set():
            self.reason = reason
            self._event.set()

    def watch_stdin(self) -> None:
        def read():
            for line in sys.stdin:
                if line.strip() == "stop":
                    self.request("stop requested")
            self.request("the server went away")
            # A stage busy loading a model does not look at the flag; do not outlive the server
            # for long.
            time.sleep(self.orphan_timeout_s)
            print(f"worker: the server is gone and the job did not stop within {self.orphan_timeout_s} s; exiting", flush=True)
            os._exit(EXIT_ORPHANED)

        threading.Thread(target=read, name="stdin-watch", daemon=True).start()


class EventWriter:
    """The event sink: pipeline events -> ``events.jsonl`` lines; snapshots -> ``latest.pt``."""

    def __init__(self, job_dir: Path, stop: StopRequest):
        self.job_dir = job_dir
        self.stop = stop
        path = JobFolder(job_dir).events
        self.snapshot_version = _last_snapshot_version(path)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        if os.lseek(self._fd, 0, os.SEEK_END) and not _ends_with_newline(path):
            self._append(b"\n")  # a previous worker died mid-line: keep its fragment on its own line

    def write(self, event: dict) -> None:
        event = {"type": event.pop("type"), "time": time.time(), **event}
        self._append((json.dumps(_jsonable(event), separators=(",", ":"), allow_nan=False) + "\n").encode())

    def _append(self, data: bytes) -> None:
        """Append one whole line or nothing: a write the disk cannot take (full, or over a file
        size limit) may be short, so what it wrote is cut back to where the line began before the
        error is raised; a reader never meets a torn line of a live worker (issue 27)."""
        start = os.lseek(self._fd, 0, os.SEEK_END)
        done = 0
        try:
            while done < len(data):
                done += os.write(self._fd, data[done:])
        except OSError:
            if done:
                os.ftruncate(self._fd, start)  # shrinking needs no space
            raise

    def __call__(self, event) -> None:
        from ...events import LogEvent, ProgressEvent, SnapshotEvent, StageEvent

        if isinstance(event, ProgressEvent):
            losses = {k: _finite(v) for k, v in event.losses.items()}
            self.write(
                dict(type="progress", stage=event.stage, iteration=event.iteration, total=event.total, losses=losses,
                     elapsed_s=_finite(event.elapsed_s), eta_s=_finite(event.eta_s))
            )
        elif isinstance(event, SnapshotEvent):
            self._save_snapshot(event)
        elif isinstance(event, StageEvent):
            self.write(dict(type="stage", stage=event.stage, status=event.status, message=event.message))
            if event.status == "stopped" and self.stop():
                raise _StopNow
        elif isinstance(event, LogEvent):
            self.write(dict(type="log", level=event.level, message=event.message))

    def _save_snapshot(self, event) -> None:
        self.snapshot_version += 1
        model = event.model
        info = {
            "version": self.snapshot_version,
            "iteration": event.iteration,
            "stage": event.stage,
            "stage_version": event.version,
            "num_frames": model.num_frames,
            "video_fps": model.video_fps,
            "duration_s": model.duration_s,
            "gaussians": model.static.num,
            "keypoints": len(model.keypoints.names),
        }
        # The version travels inside the file, so a reader never pairs a model with the wrong number.
        replace(model, info={**model.info, "snapshot": info}).save(JobFolder(self.job_dir).snapshot)  # atomic
        self.write({"type": "snapshot", **info})

    def close(self) -> None:
        os.close(self._fd)


def _finite(x):
    return x if x is None or (isinstance(x, (int, float)) and math.isfinite(x)) else None


def _jsonable(x):
    """JSON-ready copy: numpy/torch scalars and arrays as numbers and lists, NaN/Inf as null."""
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, (str, int, bool)) or x is None:
        return x
    if hasattr(x, "tolist"):
        return _jsonable(x.tolist())
    return str(x)


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as fh:
        fh.seek(-1, os.SEEK_END)
        return fh.read(1) == b"\n"


def _last_snapshot_version(path: Path) -> int:
    version = 0
    if path.exists():
        with open(path, "rb") as fh:
            for line in fh:
                if b'"snapshot"' not in line:
                    continue
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if isinstance(event, dict) and event.get("type") == "snapshot":
                    version = max(version, int(event.get("version") or 0))
    return version


class JobLock:
    """An exclusive lock on ``worker.lock``: two workers never run one job (a worker left over
    from a server that crashed may still be saving its checkpoint when a resume starts)."""

    def __init__(self, path: Path):
        self.path = path
        self._fh = None

    def acquire(self, timeout_s: float) -> bool:
        self._fh = open(self.path, "a+b")
        deadline = time.monotonic() + timeout_s
        while True:
            if self._try_lock():
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)

    def _try_lock(self) -> bool:
        return try_lock(self._fh)


def _describe_failure(exc: BaseException, job_dir: Path) -> str:
    from ...pipeline import JobError

    name = type(exc).__name__
    text = str(exc).strip() or "(no message)"
    # torch's zip writer reports a full disk as "unexpected pos ...": judge by the free space too.
    if is_disk_full(exc) or disk_low(job_dir):
        first = text.splitlines()[0]
        return f"{disk_full_message(job_dir.parent)}; free some space and resume the job to continue from its last checkpoint ({name}: {first})"
    if name == "OutOfMemoryError" or "out of memory" in text.lower():
        return f"out of GPU memory: {text.splitlines()[0]} (try fewer Gaussians, a lower resolution or fewer frames per step)"
    if isinstance(exc, MemoryError):
        return "out of memory (RAM); try a smaller job"
    if isinstance(exc, JobError):
        return text  # the pipeline's own messages name the problem
    return f"{name}: {text}"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m dynapose4d.server.runner.worker JOB_DIR", file=sys.stderr)
        return 2
    job_dir = Path(argv[0]).resolve()
    # 1. Own the job, listen for stop requests.
    lock = JobLock(JobFolder(job_dir).worker_lock)
    if not lock.acquire(timeout_s=30.0):
        print(f"worker: another worker still holds {lock.path}; not starting", flush=True)
        return EXIT_BUSY
    remove_partial_files(job_dir)  # left by an attempt that was killed mid-write
    stop = StopRequest(float(os.environ.get(ORPHAN_TIMEOUT_ENV, "10")))
    stop.watch_stdin()
    if hasattr(signal, "SIGTERM"):
        signal.signal(signal.SIGTERM, lambda *_: stop.request("SIGTERM"))
    if hasattr(signal, "SIGINT"):
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in the server's terminal is the server's business
    writer = EventWriter(job_dir, stop)
    writer.write({"type": "worker", "status": "started", "pid": os.getpid()})
    print(f"worker {os.getpid()}: running {job_dir} at {time.strftime('%Y-%m-%d %H:%M:%S')}", flush=True)
    # 2. Run (or resume) the job.
    from ...pipeline import run_job

    try:
        summary = run_job(job_dir, emit=writer, should_stop=stop)
        if summary.get("status") == "stopped":
            writer.write({"type": "worker", "status": "stopped", "reason": stop.reason})
            return EXIT_STOPPED
        if summary.get("status") == "waiting":  # video candidates made; the job goes on once one is chosen
            writer.write({"type": "worker", "status": "waiting", "summary": summary})
            return EXIT_FINISHED
        writer.write({"type": "worker", "status": "finished", "summary": summary})
        return EXIT_FINISHED
    except _StopNow:
        writer.write({"type": "worker", "status": "stopped", "reason": stop.reason})
        return EXIT_STOPPED
    except BaseException as exc:  # noqa: BLE001 - every failure is reported, then the process ends
        error = _describe_failure(exc, job_dir)  # before the clean-up below changes the free space
        remove_partial_files(job_dir)  # on a full disk this frees the room to report the failure
        try:
            traceback.print_exc()
        except OSError:
            pass
        writer.write({"type": "worker", "status": "failed", "error": error})
        return EXIT_FAILED
    finally:
        writer.close()
        sys.stdout.flush()
        sys.stderr.flush()


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Everything is written and closed; skip the interpreter's teardown (torch and numba take
    # seconds to unload), so the server sees the job end at once.
    os._exit(code)
