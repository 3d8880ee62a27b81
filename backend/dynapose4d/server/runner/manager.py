"""The job manager: a queue, worker processes, and each job's state, inside the server's event loop.

One supervisor task polls every few milliseconds: it reads new lines of the event files that are
being written or watched, notices workers that exited, kills workers that did not stop in time,
and starts queued jobs while fewer than ``max_jobs`` run (one GPU job at a time by default).
Everything that changes a job happens on the event loop. A client's action on a job (choose,
resume, cancel, delete) is one step under the job's lock (:attr:`Job.lock`): its check of the
state and its change happen together, even where the action awaits in between (writing the
choice, waiting for the worker to stop); a second action waits for it and then sees the new
state. The worker's own transitions (started, ended) happen in the supervisor's synchronous
tick, so they fall between the actions' steps, never inside a check-then-change.

States: queued -> running -> done | failed | cancelled | interrupted, or waiting (a generate job
with ``choose_video=ask`` after its video candidates) -> queued once a candidate is chosen. A failed, cancelled or
interrupted job can be resumed (queued again); its pipeline continues from its last checkpoint.
On start-up, jobs recorded as running were interrupted by a server crash and are marked so;
interrupted jobs are queued again (``ServerConfig.auto_resume``, on by default), in the order
they were created, and queued jobs stay queued.

Where workers run is the executor's business (:mod:`.executors`: child processes by default,
a Ray cluster with ``--executor ray``); the manager only launches, stops, kills and polls them.

Job creation is one transaction (:meth:`JobManager.create`): the upload lands in a staging
folder and becomes a job folder by one rename once it is complete and valid, or is removed.
A record that cannot be saved (a full disk) is retried until it is, so the on-disk state
catches up with what the API says.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
from pathlib import Path
from typing import Awaitable, Callable

from ...io.job_folder import JobFolder
from ...pipeline import JobError, read_job, write_job
from ..config import ServerConfig
from .diskspace import DiskFull, disk_full_message, disk_low, is_disk_full, remove_partial_files
from .eventlog import EventLog
from .executors import Executor, WorkerHandle, make_executor
from .store import RESUMABLE_STATES, JobRecord, JobStore, UnknownJob, check_job_id
from .worker import EXIT_BUSY

LOG_TAIL_LINES = 12
RESUME_HINT = "resume it to continue from its last checkpoint"


class JobConflict(Exception):
    """The job is in a state where this action makes no sense; the message says which states do."""


class Job:
    """A job's record plus what only exists while the server runs (worker process, watchers),
    and its settings as its job.json holds them (read once: they never change)."""

    def __init__(self, record: JobRecord, folder: Path, settings: dict | None = None):
        self.record = record
        self.dir = folder
        self.folder = JobFolder(folder)
        self.settings = _read_settings(self.folder) if settings is None else settings
        self.log = EventLog(self.folder.events)
        self.proc: WorkerHandle | None = None  # the running attempt's worker
        self.attempt_first_event = 0
        self.cancel_requested = False
        self.interrupt_on_exit = False
        self.kill_deadline: float | None = None
        self.watchers = 0
        self.deleted = False
        self.result_lock = asyncio.Lock()
        self.lock = asyncio.Lock()  # held by choose, resume, cancel and delete: one state change at a time
        self._changed = asyncio.Event()

    @property
    def changed(self) -> asyncio.Event:
        """Set at the next change; take it *before* reading the state to miss nothing."""
        return self._changed

    def notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()


class JobManager:
    def __init__(self, store: JobStore, config: ServerConfig, say=print, executor: Executor | None = None):
        self.store = store
        self.config = config
        self.say = say
        self.executor = executor or make_executor(config, say=say)
        self.jobs: dict[str, Job] = {}
        self._task: asyncio.Task | None = None
        self._closing = False
        self._unsaved: dict[str, JobRecord] = {}  # records a full disk kept from being written
        self._next_save_retry = 0.0

    # -- life cycle ---------------------------------------------------------------------------
    def start(self) -> None:
        records, warnings = self.store.load_all()
        for warning in warnings:
            self.say(f"warning: {warning}")
        for record in records:  # oldest first: the queue order
            if record.state == "running":
                record.state = "interrupted"
                record.error = f"the server stopped while this job was running; {RESUME_HINT}"
                record.finished_at = time.time()
                self._save(record)
            if record.state == "interrupted" and self.config.auto_resume:
                self.say(f"resuming job {record.id} (interrupted: {record.error})")
                record.state, record.error, record.finished_at = "queued", None, None
                self._save(record)
            self.jobs[record.id] = Job(record, self.store.job_dir(record.id))
        self.executor.start()
        self._task = asyncio.get_running_loop().create_task(self._supervise())

    async def shutdown(self) -> None:
        """Stop running workers (they keep their checkpoints); their jobs become interrupted."""
        self._closing = True
        if self._task is not None:
            self._task.cancel()  # from here on, this method alone looks after the workers
        running = [job for job in self.jobs.values() if job.proc is not None]
        for job in running:
            job.interrupt_on_exit = True
            self._send_stop(job)
        deadline = time.monotonic() + self.config.cancel_grace_s
        while time.monotonic() < deadline and not all(job.proc.poll() for job in running):
            await asyncio.sleep(0.02)
        for job in running:
            if not job.proc.poll():
                self._kill(job)
            await asyncio.to_thread(job.proc.wait, 10)
            self._finish(job)
        await asyncio.to_thread(self.executor.shutdown)

    async def _supervise(self) -> None:
        while True:
            try:
                self.tick()
            except Exception as exc:  # the supervisor must outlive any one job's surprise
                self.say(f"warning: job supervisor: {type(exc).__name__}: {exc}")
            await asyncio.sleep(self.config.poll_interval_s)

    def tick(self) -> None:
        now = time.monotonic()
        for job in list(self.jobs.values()):
            if (job.proc is not None or job.watchers) and job.log.poll():
                job.notify()
            if job.proc is not None:
                if job.proc.poll():
                    self._finish(job)
                elif job.kill_deadline is not None and now >= job.kill_deadline:
                    self._kill(job)
        if self._unsaved and now >= self._next_save_retry:
            self._retry_saves(now)
        if not self._closing:
            self._start_queued()

    def _save(self, record: JobRecord) -> None:
        """Write a record; if the disk is full, keep it and retry from the supervisor."""
        try:
            self.store.save(record)
            self._unsaved.pop(record.id, None)
        except OSError as exc:
            if record.id not in self._unsaved:
                self.say(f"warning: cannot save the state of job {record.id} ({exc}); retrying")
            self._unsaved[record.id] = record

    def _retry_saves(self, now: float) -> None:
        self._next_save_retry = now + 1.0
        for record in list(self._unsaved.values()):
            if record.id in self.jobs:
                self._save(record)
            else:
                self._unsaved.pop(record.id, None)

    # -- lookups --------------------------------------------------------------------------------
    def get(self, job_id: str) -> Job:
        check_job_id(job_id)
        job = self.jobs.get(job_id)
        if job is None:
            raise UnknownJob(f"no job {job_id!r} (it never existed or was deleted)")
        return job

    async def create(self, receive: Callable[[Path], Awaitable]) -> Job:
        """Create a job in one transaction: ``receive(staging)`` stores and checks the upload in
        a staging folder and returns its spec (``kind``, ``settings``, ``files``: role ->
        ``StoredFile``); the folder then becomes the job's by one rename, or goes away on any
        failure. A full disk raises :class:`DiskFull` naming the jobs folder's free space."""
        job_id = self.store.new_id()
        staging = self.store.staging_dir(job_id)
        try:
            staging.mkdir(parents=True, mode=0o700)
            spec = await receive(staging)
            # The upload checked the settings (the server's one check; the worker checks job.json).
            write_job(staging, spec.kind, spec.settings, {role: f.path.name for role, f in spec.files.items()}, validated=True)
            record = JobRecord(
                id=job_id,
                kind=spec.kind,
                state="queued",
                created_at=time.time(),
                inputs={r: {"file": f.path.name, "bytes": f.size, "filename": f.filename} for r, f in spec.files.items()},
            )
            self.store.save(record, folder=staging)
            self.store.commit(job_id)
        except BaseException as exc:
            shutil.rmtree(staging, ignore_errors=True)
            if is_disk_full(exc) and not isinstance(exc, DiskFull):
                raise DiskFull(disk_full_message(self.store.root)) from None
            raise
        return self.add(record, spec.settings)

    def add(self, record: JobRecord, settings: dict | None = None) -> Job:
        job = Job(record, self.store.job_dir(record.id), settings)
        self.jobs[record.id] = job
        self._start_queued()
        return job

    def status(self, job: Job) -> dict:
        if job.proc is None and not job.watchers:
            job.log.poll()
        r, p = job.record, job.log.progress
        progress = None
        if p.iteration is not None and p.total:
            progress = round(min(1.0, p.iteration / p.total), 6)
        return {
            "id": r.id,
            "kind": r.kind,
            "state": r.state,
            "created_at": r.created_at,
            "started_at": r.started_at,
            "finished_at": r.finished_at,
            "settings": job.settings,
            "inputs": r.inputs,
            "attempts": r.attempts,
            "error": r.error,
            "exit_code": r.exit_code,
            "stage": p.stage,
            "iteration": p.iteration,
            "total": p.total,
            "progress": progress,
            "losses": p.losses,
            "elapsed_s": p.elapsed_s,
            "eta_s": p.eta_s if r.state == "running" else None,
            "snapshot": p.snapshot,
            "frames_available": int(p.snapshot.get("num_frames", 0)) if p.snapshot else 0,
            "results_available": r.state == "done" and job.folder.sequence_file.exists(),
            "resumable": r.state in RESUMABLE_STATES,
            "events": len(job.log),
            "message": p.message,
            "worker_pid": job.proc.pid if job.proc is not None else None,
        }

    # -- actions --------------------------------------------------------------------------------
    def _check_action(self, job: Job, allowed, why: str) -> None:
        """Under ``job.lock``: the job still exists and is in one of ``allowed`` states (a job
        with a worker counts as running whatever its record says)."""
        if job.deleted or self.jobs.get(job.record.id) is not job:
            raise UnknownJob(f"no job {job.record.id!r} (it was deleted)")
        state = "running" if job.proc is not None else job.record.state
        if state not in allowed:
            raise JobConflict(f"job {job.record.id} is {state}; {why}")

    async def cancel(self, job: Job) -> None:
        """Stop a job within ``cancel_grace_s`` (+ a kill); its last checkpoint stays."""
        async with job.lock:
            self._check_action(job, ("queued", "running"), "only queued or running jobs can be cancelled")
            if job.proc is None:
                self._set_final(job, "cancelled", None)
                return
            job.cancel_requested = True
            self._send_stop(job)
            if job.kill_deadline is None:
                job.kill_deadline = time.monotonic() + self.config.cancel_grace_s
            deadline = time.monotonic() + self.config.cancel_grace_s + 3.0
            while job.proc is not None and time.monotonic() < deadline:
                changed = job.changed
                try:
                    await asyncio.wait_for(changed.wait(), 0.05)
                except asyncio.TimeoutError:
                    pass

    async def resume(self, job: Job) -> None:
        async with job.lock:
            self._check_action(job, RESUMABLE_STATES, f"only {', '.join(sorted(RESUMABLE_STATES))} jobs can be resumed")
            self._requeue(job)

    def _requeue(self, job: Job) -> None:
        job.record.state, job.record.error, job.record.finished_at = "queued", None, None
        self._save(job.record)
        job.notify()
        self._start_queued()

    async def choose_candidate(self, job: Job, index: int) -> None:
        """Drive a generate job with its video candidate ``index`` and queue it: a waiting job goes
        on; a stopped or finished one re-runs its dynamic stage from that video."""
        from ...pipeline.candidates import choose

        async with job.lock:
            self._check_action(job, ("waiting", "done", *RESUMABLE_STATES), "choose a video once it waits for a choice or has stopped")
            await asyncio.to_thread(choose, job.folder, index)
            self._requeue(job)

    async def delete(self, job: Job) -> None:
        async with job.lock:
            if job.deleted:
                raise UnknownJob(f"no job {job.record.id!r} (it was deleted)")
            # Marked first: event streams of this job say "deleted", not the "cancelled" of the stop.
            job.deleted = True
            job.notify()
            if job.proc is not None:
                job.cancel_requested = True
                self._kill(job)  # the files are going away: no point in a graceful stop
                await asyncio.to_thread(job.proc.wait, 10)
                self._finish(job)
            self.jobs.pop(job.record.id, None)
            job.notify()
            await asyncio.to_thread(self.store.delete, job.record.id)

    # -- workers --------------------------------------------------------------------------------
    def _start_queued(self) -> None:
        running = sum(1 for job in self.jobs.values() if job.proc is not None)
        queued = sorted((j for j in self.jobs.values() if j.record.state == "queued"), key=lambda j: j.record.created_at)
        for job in queued[: max(0, self.config.max_jobs - running)]:
            self._launch(job)

    def _launch(self, job: Job) -> None:
        r = job.record
        r.state, r.started_at, r.finished_at, r.error, r.exit_code = "running", time.time(), None, None, None
        r.attempts += 1
        job.cancel_requested = job.interrupt_on_exit = False
        job.kill_deadline = None
        job.log.poll()
        job.attempt_first_event = len(job.log)
        job.folder.result_zip.unlink(missing_ok=True)
        try:
            with open(job.folder.worker_log, "ab") as log_fh:
                log_fh.write(f"--- attempt {r.attempts}, {time.strftime('%Y-%m-%d %H:%M:%S')} ---\n".encode())
        except OSError as exc:
            why = disk_full_message(self.store.root) if is_disk_full(exc) else f"cannot write {job.folder.worker_log.name}: {exc}"
            r.state, r.error, r.finished_at = "failed", f"{why}; {RESUME_HINT}", time.time()
            self._save(r)
            job.notify()
            return
        try:
            job.proc = self.executor.launch(job.folder, job.settings)
        except OSError as exc:
            r.state, r.error, r.finished_at = "failed", f"could not start the worker process: {exc}", time.time()
        self._save(r)
        job.notify()

    def _send_stop(self, job: Job) -> None:
        job.proc.stop()

    def _kill(self, job: Job) -> None:
        job.kill_deadline = None
        job.proc.kill()

    def _finish(self, job: Job) -> None:
        """The worker exited: decide the job's state from its last event and exit status."""
        proc, job.proc = job.proc, None
        if proc is None:
            return
        proc.close()
        rc = proc.returncode
        job.log.poll()
        job.record.exit_code = rc
        last = None
        for i in range(len(job.log.lines) - 1, job.attempt_first_event - 1, -1):
            line = job.log.lines[i]
            if line is not None and line[0] == "worker":
                parsed = json.loads(line[1])
                if parsed.get("type") == "worker" and parsed.get("status") != "started":
                    last = parsed
                    break
        status = last.get("status") if last else None
        if status == "finished" and rc == 0:
            self._set_final(job, "done", None)
        elif status == "waiting" and rc == 0:
            self._set_final(job, "waiting", None)
        elif job.cancel_requested:
            self._set_final(job, "cancelled", None)
        elif job.interrupt_on_exit:
            self._set_final(job, "interrupted", f"the server was shut down while this job was running; {RESUME_HINT}")
        elif status == "stopped":
            self._set_final(job, "interrupted", f"the worker stopped ({last.get('reason') or 'no reason given'}); {RESUME_HINT}")
        elif rc == EXIT_BUSY:
            self._set_final(job, "failed", "a previous worker of this job is still running; try resuming again in a moment")
        elif status == "failed":
            self._set_final(job, "failed", last.get("error") or "the job failed (see its log)")
        elif disk_low(job.dir):  # the worker could not even write why it failed
            self._set_final(job, "failed", f"{disk_full_message(self.store.root)}; {RESUME_HINT} once there is space")
        else:
            self._set_final(job, "failed", f"{proc.exit_description()}; last lines of its log:\n{self._log_tail(job)}")
        if job.record.state != "done":
            remove_partial_files(job.dir)  # half-written checkpoints of the attempt that just ended
        job.cancel_requested = job.interrupt_on_exit = False
        job.kill_deadline = None

    def _set_final(self, job: Job, state: str, error: str | None) -> None:
        job.record.state = state
        job.record.error = error
        job.record.finished_at = time.time()
        self._save(job.record)
        job.notify()

    def _log_tail(self, job: Job) -> str:
        return read_log_tail(job.folder.worker_log, LOG_TAIL_LINES)


def _read_settings(folder: JobFolder) -> dict:
    """The settings in a job's job.json, unchecked (the worker checks them); ``{}`` when it
    cannot be read (the worker then fails the job, saying why)."""
    try:
        settings = read_job(folder.root).get("settings")
    except JobError:
        return {}
    return settings if isinstance(settings, dict) else {}


def read_log_tail(path: Path, lines: int, max_bytes: int = 256 * 1024) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            data = fh.read()
    except FileNotFoundError:
        return ""
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])
