"""Follow a job off Blender's main thread: worker threads do the HTTP, a queue hands results over.

A :class:`JobSession` runs two daemon threads:

- the *events* thread connects (waiting for a backend that is starting), uploads the job if it
  is a new one, then reads the job's server-sent events and turns them into :class:`Status`
  messages; every ``snapshot`` event tells the fetch thread a newer version exists;
- the *fetch* thread fetches the newest snapshot as a whole :class:`~.format.sequence.Sequence`
  (keypoint tracks + every frame, pinned to that version) and queues :class:`SequenceReady`.
  A snapshot replaced mid-fetch is dropped for the newer one, so a slow scene never falls
  behind by more than one snapshot.

Blender's main thread calls :meth:`JobSession.drain` from a timer and applies what it gets;
nothing here touches bpy, so tests drive a session without Blender's event loop.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from ..format.sequence import Sampling, Sequence
from .client import BackendClient, BackendError, SnapshotReplaced
from .job_list import job_title
from .jobs import JobRequest

# waiting: the job made its driving-video candidates and waits for the user's pick (its worker
# has exited; choosing one queues it again).
FINAL_STATES = ("waiting", "done", "failed", "cancelled", "interrupted", "deleted")
RECONNECTS = 5


@dataclass
class JobView:
    """What the panel shows about a job: plain values, copied into every :class:`Status`."""

    id: str | None = None
    kind: str | None = None
    state: str = "connecting"  # + uploading, then the server's: queued, running, done, failed, ...
    stage: str | None = None
    iteration: int | None = None
    total: int | None = None
    progress: float | None = None
    eta_s: float | None = None
    elapsed_s: float | None = None
    message: str | None = None
    error: str | None = None
    snapshot_version: int | None = None
    clip_duration_s: float | None = None  # the driving video's length (first to last frame), from the snapshot
    losses: dict = field(default_factory=dict)
    title: str | None = None  # the input's name and the date (link.job_list.job_title), once the server has said

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES

    def apply_status(self, status: dict) -> None:
        """A ``JobStatus`` body (``GET /v1/jobs/{id}`` or the ``status`` event)."""
        self.id = status.get("id", self.id)
        self.kind = status.get("kind", self.kind)
        self.state = status.get("state", self.state)
        if status.get("created_at") is not None:
            self.title = job_title(status)
        for name in ("stage", "iteration", "total", "progress", "eta_s", "elapsed_s", "message", "error"):
            if status.get(name) is not None:
                setattr(self, name, status[name])
        if status.get("losses"):
            self.losses = dict(status["losses"])
        if self.state in FINAL_STATES or self.state == "queued":
            self.eta_s = None
        snapshot = status.get("snapshot") or {}
        if snapshot.get("version") is not None:
            self.snapshot_version = snapshot["version"]
        if snapshot.get("duration_s") is not None:
            self.clip_duration_s = float(snapshot["duration_s"])

    def apply_event(self, kind: str, data: dict) -> None:
        """One worker event (``docs``: the server's ``/events`` stream)."""
        if kind == "status":
            self.apply_status(data)
        elif kind == "progress":
            self.stage = data.get("stage", self.stage)
            self.iteration, self.total = data.get("iteration"), data.get("total")
            if self.iteration is not None and self.total:
                self.progress = min(1.0, self.iteration / self.total)
            self.eta_s, self.elapsed_s = data.get("eta_s"), data.get("elapsed_s")
            self.losses = dict(data.get("losses") or {})
        elif kind == "stage":
            self.stage = data.get("stage", self.stage)
            if data.get("message"):
                self.message = data["message"]
        elif kind == "snapshot":
            self.snapshot_version = data.get("version", self.snapshot_version)
            if data.get("duration_s") is not None:
                self.clip_duration_s = float(data["duration_s"])
        elif kind == "log":
            self.message = data.get("message", self.message)
        elif kind == "worker" and data.get("status") == "failed":
            self.error = data.get("error") or data.get("message") or self.error

    def text(self) -> str:
        """One line for the progress bar: ``dynamic 120/500 · ETA 1:23``."""
        # Between the worker's start and its first stage (its libraries load): say so, not just "running".
        parts = [self.state if self.state != "running" else (self.stage or "starting the worker")]
        if self.state == "running" and self.iteration is not None and self.total:
            parts.append(f"{self.iteration}/{self.total}")
        if self.eta_s is not None and self.state == "running":
            parts.append(f"ETA {format_duration(self.eta_s)}")
        return " · ".join(parts)


def format_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


# -- messages from the threads to Blender's main thread ---------------------------------------------


@dataclass
class Status:
    view: JobView


@dataclass
class FetchProgress:
    version: int | None
    done: int
    total: int


@dataclass
class SequenceReady:
    sequence: Sequence


@dataclass
class Problem:
    """An error. ``fatal``: the session stopped; otherwise it goes on (e.g. one failed fetch)."""

    message: str
    fatal: bool = True


@dataclass
class Finished:
    view: JobView


class JobSession:
    """Create (``request``) or attach to (``job_id``) a job and follow it until it stops.

    ``connect`` returns a :class:`BackendClient` (it may wait for a backend that is starting);
    it runs on the events thread, never on Blender's.
    """

    def __init__(
        self,
        connect: Callable[[], BackendClient],
        sampling: Sampling,
        *,
        request: JobRequest | None = None,
        job_id: str | None = None,
        fetch: bool = True,
        poll_s: float = 0.5,
        mesh: dict | None = None,
        clip_length: bool = False,
    ):
        if (request is None) == (job_id is None):
            raise ValueError("give either a job request or the id of an existing job")
        self.connect = connect
        self.sampling = sampling
        self.request = request
        self.job_id = job_id
        self.fetch = fetch
        self.mesh = mesh  # the mesh endpoint's options, or None for the point cloud only
        self.clip_length = clip_length  # sample the clip's own length instead of sampling.frame_count frames
        self.poll_s = poll_s
        self.queue: queue.Queue = queue.Queue()
        self.view = JobView(id=job_id, kind=request.kind if request else None)
        self._stop = threading.Event()
        self._cond = threading.Condition()
        self._latest: int | None = None
        self._fetched: int | None = None
        self._ended = False
        self._stream = None
        self._client: BackendClient | None = None
        self._threads: list[threading.Thread] = []

    # -- main-thread API ------------------------------------------------------------------------
    def start(self) -> "JobSession":
        events = threading.Thread(target=self._run_events, name="dynapose4d-events", daemon=True)
        self._threads = [events]
        events.start()
        return self

    def drain(self) -> list:
        """Every message queued so far (never blocks)."""
        out = []
        while True:
            try:
                out.append(self.queue.get_nowait())
            except queue.Empty:
                return out

    @property
    def alive(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def cancel(self) -> None:
        """Ask the backend to cancel the job (on a thread: the server answers within ~2 s)."""

        def run():
            try:
                if self.job_id is None:
                    self.close()  # still uploading: stop before the job exists
                    return
                self.connect().cancel(self.job_id)
            except BackendError as exc:
                self.queue.put(Problem(f"cancel failed: {exc}", fatal=False))

        threading.Thread(target=run, name="dynapose4d-cancel", daemon=True).start()

    def close(self) -> None:
        """Stop following (the job itself goes on running on the backend)."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        stream = self._stream
        if stream is not None:
            stream.close()

    def join(self, timeout: float | None = None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        for t in list(self._threads):
            t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))

    # -- events thread ----------------------------------------------------------------------------
    def _status(self) -> None:
        self.queue.put(Status(dataclasses.replace(self.view, losses=dict(self.view.losses))))

    def _run_events(self) -> None:
        fetcher = None
        try:
            self._client = client = self.connect()
            if self._stop.is_set():
                return
            # 1. A new job: upload it. An existing one: where it stands now.
            if self.request is not None:
                self.view.state = "uploading"
                self._status()
                status = client.create_job(self.request.kind, self.request.settings, self.request.files)
                self.job_id = status["id"]
                after = -1
            else:
                status = client.status(self.job_id)
                after = int(status.get("events", 0)) - 1
            self.view.apply_status(status)
            self._status()
            if self.fetch:
                fetcher = threading.Thread(target=self._run_fetch, name="dynapose4d-fetch", daemon=True)
                self._threads.append(fetcher)
                fetcher.start()
            self._notify(self.view.snapshot_version)
            # 2. The event stream until the job ends (reconnecting where it broke off).
            failures = 0
            while not self._stop.is_set() and not self.view.final:
                try:
                    self._stream = client.events(self.job_id, after)
                    for kind, event_id, data in self._stream:
                        failures = 0
                        if event_id is not None:
                            after = event_id
                        if kind == "end":
                            break
                        self.view.apply_event(kind, data)
                        self._status()
                        if kind == "snapshot":
                            self._notify(data.get("version"))
                    if self._stop.is_set():
                        return
                    # The stream ended ("end", or the server went away): ask where the job stands.
                    self.view.apply_status(client.status(self.job_id))
                except BackendError as exc:
                    if self._stop.is_set():
                        return
                    failures += 1
                    if failures > RECONNECTS or exc.status in (401, 403, 404):
                        raise
                    time.sleep(min(5.0, self.poll_s * 2**failures))
            # 3. The end: the final status and snapshot.
            self.view.apply_status(client.status(self.job_id))
            self._notify(self.view.snapshot_version)
            self._status()
        except BackendError as exc:
            self.view.error = str(exc)
            self.queue.put(Problem(str(exc)))
        except Exception as exc:  # a bug must reach the user, not die silently in a thread
            self.view.error = f"{type(exc).__name__}: {exc}"
            self.queue.put(Problem(self.view.error))
        finally:
            with self._cond:
                self._ended = True
                self._cond.notify_all()
            if fetcher is not None:
                fetcher.join()
            self.queue.put(Finished(dataclasses.replace(self.view)))

    def sampling_now(self) -> Sampling:
        """``sampling``, or with ``clip_length`` the driving video's own length at its fps (known
        from the snapshot once one exists)."""
        if self.clip_length and self.view.clip_duration_s is not None:
            return self.sampling.for_clip(self.view.clip_duration_s)
        return self.sampling

    def _notify(self, version: int | None) -> None:
        if version is None:
            return
        with self._cond:
            self._latest = version
            self._cond.notify_all()

    # -- fetch thread -----------------------------------------------------------------------------
    def _run_fetch(self) -> None:
        client = self._client.clone()
        try:
            while True:
                with self._cond:
                    while not self._stop.is_set() and self._latest == self._fetched and not self._ended:
                        self._cond.wait()
                    if self._stop.is_set() or self._latest == self._fetched:
                        return
                    version = self._latest
                try:
                    sequence = client.sequence(
                        self.job_id,
                        self.sampling_now(),
                        version,
                        should_stop=lambda: self._stop.is_set() or self._latest != version,
                        on_frame=lambda done, total: self.queue.put(FetchProgress(version, done, total)),
                        mesh=self.mesh,
                    )
                except SnapshotReplaced:
                    # A newer snapshot exists; its event may not have reached us yet.
                    status = client.status(self.job_id)
                    self._notify((status.get("snapshot") or {}).get("version"))
                    continue
                except BackendError as exc:
                    self.queue.put(Problem(f"could not fetch snapshot {version}: {exc}", fatal=False))
                    with self._cond:
                        self._fetched = version  # do not retry the same version in a loop
                    continue
                if sequence is None:
                    continue  # superseded or stopping
                with self._cond:
                    self._fetched = version
                self.queue.put(SequenceReady(sequence))
        except Exception as exc:
            self.queue.put(Problem(f"fetching frames failed: {type(exc).__name__}: {exc}", fatal=False))
        finally:
            client.close()
