"""What outlives one operator call: the backend, the job being followed, the environment build,
the models and their downloads, the setup check and the server's job list.

One :data:`STATE` per Blender session. Worker threads never touch it directly; they queue
messages (``link.follow``) or keep their own progress (``link.launcher``), and :meth:`Runtime.tick`,
called on Blender's main thread by the watch operator's timer (or by tests, since the bpy
module has no event loop), reads them and updates the scene and what the panel shows.
"""

from __future__ import annotations

import atexit
import tempfile
import threading
import time
from dataclasses import dataclass

from .format.messages import headline
from .link.follow import FetchProgress, Finished, JobSession, JobView, Problem, SequenceReady, Status
from .link.job_list import JobEntry, entries
from .link.launcher import Backends, BackendSettings, BuildProgress, EnvironmentBuilder
from .link.models import ModelWatch
from .link.setup_check import SetupCheck, local_report


@dataclass
class Health:
    """The backend's last health answer, or why there is none."""

    info: dict | None = None
    error: str | None = None
    checking: bool = False
    at: float = 0.0

    def summary(self) -> str:
        if self.checking and self.info is None:
            return "connecting..."
        if self.info is None:
            return self.error or "not connected"
        device = self.info.get("device") or "device: probing"
        gpu = self.info.get("gpu") or {}
        text = f"connected · v{self.info.get('version')} · {device}"
        if gpu:
            text += f" · {gpu.get('name')} ({gpu.get('memory_total_mb', 0) / 1024:.0f} GB)"
        return text

    def models(self) -> list[tuple[str, bool]]:
        return [(m.get("name", "?"), bool(m.get("available"))) for m in (self.info or {}).get("models", [])]


class Runtime:
    def __init__(self):
        self.backends = Backends()
        self.health = Health()
        self.session: JobSession | None = None
        self.view: JobView | None = None  # the followed job as last reported
        self.fetch: FetchProgress | None = None
        self.error: str | None = None
        self.last_update_s: float | None = None
        self.imported_version: int | None = None
        self.import_options = None
        self.scene_name: str | None = None
        self.builder: EnvironmentBuilder | None = None
        self.env_progress: BuildProgress | None = None
        self.watching = False
        self.candidates = None  # the followed job's driving-video candidates (candidates.CandidateShelf)
        self.temp = tempfile.TemporaryDirectory(prefix="dynapose4d-")
        self.models = ModelWatch(lambda: None)  # connected on first use (models_of)
        self.setup: SetupCheck | None = None
        self.setup_after_build: dict | None = None  # the environment to check once the build is done
        self.torch_choice = None  # the last build's link.torch_build.TorchChoice
        self.torch_facts = None  # this machine's link.torch_build.Facts, once detected
        self._torch_thread: threading.Thread | None = None
        self.jobs: list[JobEntry] = []  # the server's jobs, newest first
        self.jobs_error: str | None = None
        self._jobs_thread: threading.Thread | None = None
        self.colour_hint: str | None = None  # how to see the splats' colours, after the first import
        self.settings: BackendSettings | None = None  # the backend last talked to (for the job list)

    # -- backend --------------------------------------------------------------------------------
    def check_health(self, settings: BackendSettings) -> None:
        """Connect (starting the local backend if needed) and ask for its health, on a thread."""
        if self.health.checking:
            return
        self.health.checking = True
        self.settings = settings
        self.models_of(settings).refresh()

        def run():
            try:
                client = self.backends.client(settings)
                info = client.health()
                self.jobs = entries(client.jobs())
                self.health = Health(info=info, at=time.time())
            except Exception as exc:  # shown in the panel
                self.health = Health(error=str(exc), at=time.time())

        threading.Thread(target=run, name="dynapose4d-health", daemon=True).start()

    def models_of(self, settings: BackendSettings) -> ModelWatch:
        """The models' watch, talking to the backend ``settings`` name."""
        self.models.connect = lambda: self.backends.client(settings)
        return self.models

    def refresh_jobs(self, settings: BackendSettings) -> None:
        """Ask the server for its jobs (on a thread) for the panel's list."""
        if self._jobs_thread is not None and self._jobs_thread.is_alive():
            return

        def run():
            try:
                self.jobs, self.jobs_error = entries(self.backends.client(settings).jobs()), None
            except Exception as exc:  # shown under the list
                self.jobs_error = str(exc)

        self._jobs_thread = threading.Thread(target=run, name="dynapose4d-jobs", daemon=True)
        self._jobs_thread.start()

    def torch_for(self, override: str = "AUTO"):
        """The torch build the environment would get (a :class:`~.link.torch_build.TorchChoice`);
        None while this machine's GPU is being detected (``nvidia-smi``, on a thread, once)."""
        from .link import torch_build

        if override != "AUTO":
            return torch_build.choose(torch_build.Facts("?"), override)
        if self.torch_facts is None and (self._torch_thread is None or not self._torch_thread.is_alive()):
            def run():
                self.torch_facts = torch_build.detect()

            self._torch_thread = threading.Thread(target=run, name="dynapose4d-detect-gpu", daemon=True)
            self._torch_thread.start()
        return torch_build.choose(self.torch_facts) if self.torch_facts is not None else None

    def check_setup(self, settings: BackendSettings, env: dict | None = None) -> None:
        """Run the backend's self-test where its jobs run (a thread; the preferences show the
        result): a local backend with its own interpreter, a remote one on its machine."""
        if self.setup is not None and self.setup.snapshot().state == "running":
            return
        if settings.mode == "REMOTE":
            source = lambda: self.backends.client(settings).setup_report()  # noqa: E731
        else:
            source = lambda: local_report(settings.python, env)  # noqa: E731
        self.setup = SetupCheck(source).start()

    def stop_backend(self) -> bool:
        stopped = self.backends.stop()
        self.health = Health(error="stopped" if stopped else self.health.error)
        return stopped

    # -- jobs -----------------------------------------------------------------------------------
    def start_session(self, settings: BackendSettings, sampling, import_options, scene_name: str, *, request=None, job_id=None,
                      mesh: dict | None = None, clip_length: bool = False) -> JobSession:
        """Follow a new job (``request``) or an existing one (``job_id``) into ``scene_name``;
        ``mesh``: also fetch each snapshot's skinned mesh with these options; ``clip_length``:
        import the driving video's own length (at the sampling's fps) instead of its frame count."""
        if self.session is not None and self.session.alive:
            self.session.close()
        self.settings = settings
        self.session = JobSession(lambda: self.backends.client(settings), sampling, request=request, job_id=job_id, mesh=mesh,
                                  clip_length=clip_length).start()
        self.view = self.session.view
        self.fetch = None
        self.error = None
        self.imported_version = None
        self.import_options = import_options
        self.scene_name = scene_name
        return self.session

    @property
    def job_running(self) -> bool:
        return self.session is not None and self.session.alive and self.view is not None and not self.view.final

    # -- environment ----------------------------------------------------------------------------
    def build_environment(self, builder: EnvironmentBuilder, check_env: dict | None = None) -> None:
        """Build it on a thread; once it is done, check the setup with ``check_env`` (None: don't)."""
        if self.builder is not None and self.env_progress is not None and self.env_progress.state == "running":
            raise RuntimeError("the backend environment is already being built")
        self.builder = builder.start()
        self.env_progress = builder.snapshot()
        self.torch_choice = builder.torch
        self.setup_after_build = check_env

    # -- the main-thread side ---------------------------------------------------------------------
    def busy(self) -> bool:
        """Whether the watch timer is still needed."""
        return (
            (self.session is not None and (self.session.alive or not self.session.queue.empty()))
            or self.health.checking
            or (self.builder is not None and self.env_progress is not None and self.env_progress.state == "running")
            or self.models.busy
            or (self.setup is not None and self.setup.snapshot().state == "running")
            or (self._jobs_thread is not None and self._jobs_thread.is_alive())
        )

    def tick(self, context) -> list[tuple[str, str]]:
        """Apply what the threads reported; returns ``(level, text)`` reports for the user."""
        reports: list[tuple[str, str]] = []
        # 1. The environment build.
        if self.builder is not None:
            before = self.env_progress.state if self.env_progress else None
            self.env_progress = self.builder.snapshot()
            if before == "running" and self.env_progress.state == "done":
                reports.append(("INFO", f"DynaPose4D backend installed in {self.builder.env_dir}; checking the setup"))
                if self.setup_after_build is not None:
                    self.check_setup(BackendSettings(python=str(self.builder.python)), self.setup_after_build)
            elif before == "running" and self.env_progress.state == "failed":
                reports.append(("ERROR", self.env_progress.error.splitlines()[0]))
        # 2. Model downloads that ended.
        for ended in self.models.drain():
            if ended.state == "done":
                reports.append(("INFO", f"{ended.title} downloaded"))
            elif ended.state == "failed":
                reports.append(("ERROR", f"{ended.title}: {(ended.error or 'the download failed').splitlines()[0]}"))
        # 3. The followed job.
        session = self.session
        if session is None:
            return reports
        latest = None
        finished = False
        for message in session.drain():
            if isinstance(message, Status):
                self.view = message.view
            elif isinstance(message, FetchProgress):
                self.fetch = message
            elif isinstance(message, SequenceReady):
                latest = message.sequence  # only the newest snapshot is worth building
            elif isinstance(message, Problem):
                if message.fatal:
                    self.error = message.message
                reports.append(("ERROR" if message.fatal else "WARNING", message.message))
            elif isinstance(message, Finished):
                self.view = message.view
                finished = True
        if latest is not None:
            reports += self.apply(context, latest)
        if finished:
            view = self.view
            name = (view.title or view.id) if view is not None else None
            if view is not None and view.state == "failed":
                self.error = view.error or "the job failed (see the backend's job log)"
                reports.append(("ERROR", f"DynaPose4D job {name} failed: {headline(self.error)}"))
            elif view is not None and view.state == "done":
                reports.append(("INFO", f"DynaPose4D job {name} is done"))
            elif view is not None and view.state == "waiting":
                reports.append(("INFO", f"DynaPose4D job {name}: its driving videos are ready; pick one in the panel"))
            self.fetch = None
            if self.settings is not None:
                self.refresh_jobs(self.settings)
        return reports

    def apply(self, context, sequence) -> list[tuple[str, str]]:
        """Build or update the job's objects from ``sequence`` (main thread)."""
        import bpy

        from .scene.importer import import_sequence

        scene = bpy.data.scenes.get(self.scene_name) if self.scene_name else None
        if scene is None:
            scene = context.scene
        from .scene.placement import colour_hint

        job_id = self.session.job_id
        title = self.view.title if self.view is not None else None
        t0 = time.perf_counter()
        if scene == context.scene:
            import_sequence(context, sequence, job_id, self.import_options, title=title)
        else:  # the user switched scenes while the job ran: import where Generate was pressed
            with context.temp_override(scene=scene, view_layer=scene.view_layers[0]):
                import_sequence(bpy.context, sequence, job_id, self.import_options, title=title)
        self.last_update_s = time.perf_counter() - t0
        first = self.imported_version is None
        self.imported_version = sequence.version
        scene.dynapose4d.job_id = job_id
        if first:
            self.colour_hint = colour_hint(context)
            return [("INFO", self.colour_hint)] if self.colour_hint else []
        return []

    def shutdown(self) -> None:
        """Stop following and stop the backend this add-on started (on unregister and quit)."""
        if self.session is not None:
            self.session.close()
        if self.builder is not None:
            self.builder.cancel()
        if self.candidates is not None:
            self.candidates.release()
            self.candidates = None
        self.models.close()
        self.backends.stop()


STATE = Runtime()


def reset() -> None:
    """A fresh state (the previous one shut down first)."""
    global STATE
    STATE.shutdown()
    STATE = Runtime()


def _load_pre(*_args) -> None:
    """A file is being loaded: stop following (the job goes on; "Import Job" re-attaches)."""
    state = STATE
    if state.session is not None:
        state.session.close()
        state.session = None
    state.view = state.fetch = state.error = None
    state.watching = False  # the modal timer dies with the old window manager


try:
    from bpy.app.handlers import persistent

    on_load_pre = persistent(_load_pre)
except ImportError:  # outside Blender (plain pytest of the threads)
    on_load_pre = _load_pre


def _stop_at_exit() -> None:
    STATE.backends.stop()


atexit.register(_stop_at_exit)  # the local backend goes when Blender goes
