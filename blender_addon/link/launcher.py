"""The local backend as a child process, and the Python environment it runs in. No bpy here.

:class:`LocalBackend` starts ``python -m dynapose4d serve`` with a configured interpreter (its
own program, not ``multiprocessing``: Blender's extension packages cannot be imported by a
child interpreter) and waits for the address file the server writes when it is ready.

:class:`EnvironmentBuilder` creates that interpreter's environment from the backend sources
bundled in the extension (``backend_src/``): ``python -m venv`` then ``pip install``, in a
background thread, with progress that a timer can poll. Neither blocks the caller.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from .client import ADDRESS_FORMAT, BackendError, Connection

ADDON_ROOT = Path(__file__).resolve().parents[1]  # blender_addon/ (the zip root in a built extension)


def bundled_backend_source() -> Path | None:
    """The backend sources: ``backend_src/`` in the built extension, ``backend/`` in a checkout."""
    for candidate in (ADDON_ROOT / "backend_src", ADDON_ROOT.parent / "backend"):
        if (candidate / "pyproject.toml").is_file() and (candidate / "dynapose4d").is_dir():
            return candidate
    return None


def environment_python(env_dir: str | os.PathLike) -> Path:
    env_dir = Path(env_dir)
    return env_dir / "Scripts" / "python.exe" if os.name == "nt" else env_dir / "bin" / "python"


# -- the server process ------------------------------------------------------------------------------


@dataclass
class LaunchConfig:
    """How to start the local server. ``model_dir``: the Hugging Face cache to use (HF_HOME)."""

    python: str
    address_file: str
    jobs_dir: str = ""
    model_dir: str = ""
    log_file: str = ""
    extra_args: tuple = ()
    env: dict = field(default_factory=dict)


class LocalBackend:
    """One ``dynapose4d serve`` process started by the add-on."""

    def __init__(self, config: LaunchConfig):
        self.config = config
        self.proc: subprocess.Popen | None = None
        self._log = None

    def command(self) -> list[str]:
        c = self.config
        cmd = [c.python, "-m", "dynapose4d", "serve", "--address-file", c.address_file]
        if c.jobs_dir:
            cmd += ["--jobs-dir", c.jobs_dir]
        return cmd + list(c.extra_args)

    def start(self) -> None:
        """Start the server (returns at once; :meth:`connection` says when it is ready)."""
        c = self.config
        if not c.python or not Path(c.python).is_file():
            raise BackendError(
                f"the backend's Python interpreter {c.python or '(not set)'} does not exist: create the backend "
                "environment in the add-on's preferences, or set the interpreter of an environment that has dynapose4d"
            )
        Path(c.address_file).parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, PYTHONUNBUFFERED="1", **c.env)
        env.pop("PYTHONPATH", None)  # Blender's paths must not leak into the backend's interpreter
        env.pop("PYTHONHOME", None)
        if c.model_dir:
            env["HF_HOME"] = c.model_dir
        log_path = Path(c.log_file) if c.log_file else Path(c.address_file).with_suffix(".log")
        self._log = open(log_path, "ab")
        kwargs = {"start_new_session": True} if os.name != "nt" else {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}
        self.proc = subprocess.Popen(self.command(), stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env=env, **kwargs)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def connection(self) -> Connection | None:
        """The server's address once it is ready (its address file names our process); None before."""
        if self.proc is None:
            return None
        if self.proc.poll() is not None:
            raise BackendError(f"the backend exited with status {self.proc.returncode}:\n{self.log_tail()}")
        try:
            info = json.loads(Path(self.config.address_file).read_text())
        except (OSError, ValueError):
            return None
        if info.get("format") != ADDRESS_FORMAT or info.get("pid") != self.proc.pid:
            return None  # an earlier server's file (stale, or one this server refused to replace)
        return Connection(url=info["url"], token=info["token"])

    def wait(self, timeout: float = 120.0, should_stop=lambda: False) -> Connection:
        """Block until ready (call from a worker thread, never from Blender's main thread)."""
        deadline = time.monotonic() + timeout
        while not should_stop():
            found = self.connection()
            if found is not None:
                return found
            if time.monotonic() > deadline:
                raise BackendError(f"the backend did not start within {timeout:.0f} s; its log:\n{self.log_tail()}")
            time.sleep(0.1)
        raise BackendError("stopped waiting for the backend")

    def log_tail(self, lines: int = 20) -> str:
        path = Path(self.config.log_file) if self.config.log_file else Path(self.config.address_file).with_suffix(".log")
        try:
            return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server (SIGTERM, then kill); its address file goes with it."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                if os.name == "nt":
                    self.proc.terminate()
                else:
                    self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None


# -- the environment -----------------------------------------------------------------------------------


@dataclass
class BuildProgress:
    state: str = "idle"  # idle, running, done, failed, cancelled
    step: int = 0
    steps: int = 2
    title: str = ""
    line: str = ""
    packages: int = 0  # packages pip has collected so far (a sign of life while it works)
    error: str = ""

    @property
    def fraction(self) -> float:
        if self.state == "done":
            return 1.0
        within = min(0.9, self.packages / 60.0) if self.step == self.steps else 0.0
        return max(0.0, (self.step - 1 + within) / self.steps)

    def text(self) -> str:
        if self.state == "running":
            return f"{self.step}/{self.steps} {self.title}: {self.line}"[:200]
        return self.error if self.state == "failed" else self.state


class EnvironmentBuilder:
    """``python -m venv <env_dir>``, torch from the index that fits the machine, then
    ``pip install <source>[extras]``, in a background thread.

    ``base_python``: the interpreter that creates the environment (Blender's own by default).
    ``torch``: the torch build (:func:`.torch_build.choose`; None: whatever pip picks).
    ``pip_args``: extra pip arguments (an index URL, ``--no-deps`` in tests, ...).
    """

    def __init__(self, env_dir: str | os.PathLike, source: str | os.PathLike, *, base_python: str = "",
                 extras: tuple[str, ...] = ("diffusion",), pip_args: tuple[str, ...] = (), torch=None):
        self.env_dir = Path(env_dir)
        self.source = Path(source)
        self.base_python = base_python or _blender_python()
        self.extras = tuple(extras)
        self.pip_args = tuple(pip_args)
        self.torch = torch
        self.progress = BuildProgress()
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._cancelled = False
        self._thread: threading.Thread | None = None

    @property
    def python(self) -> Path:
        return environment_python(self.env_dir)

    def steps(self) -> list[tuple[str, list[str]]]:
        spec = str(self.source) + (f"[{','.join(self.extras)}]" if self.extras else "")
        pip = [str(self.python), "-m", "pip", "install", "--disable-pip-version-check", "--progress-bar", "off"]
        steps = [("Creating the environment", [self.base_python, "-m", "venv", str(self.env_dir)])]
        if self.torch is not None and self.torch.pip_args():
            # First, so that the backend's "torch>=..." finds it installed and pip keeps it.
            steps.append((f"Installing the {self.torch.text()}", pip + self.torch.pip_args()))
        steps.append(("Installing the backend", pip + [spec, *self.pip_args]))
        return steps

    def start(self) -> "EnvironmentBuilder":
        if not (self.source / "pyproject.toml").is_file():
            raise BackendError(f"no backend sources at {self.source} (expected a pyproject.toml there)")
        self.progress = BuildProgress(state="running", step=0, steps=len(self.steps()))
        self._thread = threading.Thread(target=self._run, name="dynapose4d-env", daemon=True)
        self._thread.start()
        return self

    def snapshot(self) -> BuildProgress:
        with self._lock:
            return BuildProgress(**vars(self.progress))

    def cancel(self) -> None:
        self._cancelled = True
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _set(self, **kw) -> None:
        with self._lock:
            for k, v in kw.items():
                setattr(self.progress, k, v)

    def _run(self) -> None:
        try:
            for number, (title, cmd) in enumerate(self.steps(), 1):
                self._set(step=number, title=title, line=" ".join(cmd[:3]))
                tail: list[str] = []
                env = dict(os.environ, PYTHONUNBUFFERED="1", PIP_NO_INPUT="1")
                env.pop("PYTHONPATH", None)
                env.pop("PYTHONHOME", None)
                self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                              env=env, text=True, errors="replace")
                for line in self._proc.stdout:
                    line = line.rstrip()
                    if not line:
                        continue
                    tail = (tail + [line])[-15:]
                    with self._lock:
                        self.progress.line = line
                        if line.startswith("Collecting ") or line.startswith("Processing "):
                            self.progress.packages += 1
                code = self._proc.wait()
                if self._cancelled:
                    self._set(state="cancelled")
                    return
                if code != 0:
                    self._set(state="failed", error=f"{title} failed (exit status {code}):\n" + "\n".join(tail))
                    return
            self._set(state="done", line=f"backend installed in {self.env_dir}")
        except OSError as exc:
            self._set(state="failed", error=f"could not run {self.base_python}: {exc}")


def _blender_python() -> str:
    """Blender's bundled interpreter (``sys.executable`` is Blender itself in some builds)."""
    exe = Path(sys.executable)
    if "python" in exe.name.lower():
        return str(exe)
    base = Path(sys.prefix)
    for candidate in (base / "bin" / "python3", base / "bin" / "python3.11", base / "bin" / "python.exe", base / "python.exe"):
        if candidate.is_file():
            return str(candidate)
    return str(exe)


# -- where the add-on's backend is ------------------------------------------------------------------


@dataclass
class BackendSettings:
    """The preferences that say how to reach the backend, as plain values.

    ``mode``: ``LOCAL`` starts ``python -m dynapose4d serve`` with ``python`` (and reuses a
    server whose ``address_file`` answers); ``REMOTE`` connects to ``url`` with ``token`` (or to
    the server named in a copied ``address_file``), e.g. through an SSH tunnel.
    """

    mode: str = "LOCAL"
    python: str = ""
    address_file: str = ""
    url: str = "http://127.0.0.1:8765"
    token: str = ""
    jobs_dir: str = ""
    model_dir: str = ""
    start_timeout_s: float = 180.0
    env: dict = field(default_factory=dict)


class Backends:
    """Resolves :class:`BackendSettings` to a client, starting the local server once if needed.
    Thread-safe: worker threads call :meth:`client`; Blender's thread calls :meth:`stop`."""

    def __init__(self):
        self.local: LocalBackend | None = None
        self._lock = threading.Lock()

    def client(self, settings: BackendSettings, should_stop=lambda: False):
        from .client import BackendClient

        return BackendClient.connect(self.connection(settings, should_stop))

    def connection(self, settings: BackendSettings, should_stop=lambda: False) -> Connection:
        """Where the backend is (blocking: call from a worker thread)."""
        if settings.mode == "REMOTE":
            if settings.address_file and not settings.token:
                return Connection.from_address_file(settings.address_file)
            if not settings.token:
                raise BackendError("set the backend's token in the add-on's preferences (it is in the server's address file)")
            return Connection(settings.url, settings.token)
        with self._lock:
            local = self.local
            if local is None or not local.running or local.config.address_file != settings.address_file:
                found = self._running_server(settings.address_file)  # a stale file counts as none
                if found is not None:
                    return found
                local = self.local = LocalBackend(LaunchConfig(
                    python=settings.python, address_file=settings.address_file, jobs_dir=settings.jobs_dir,
                    model_dir=settings.model_dir, env=dict(settings.env)))
                local.start()
        return local.wait(settings.start_timeout_s, should_stop)

    @staticmethod
    def _running_server(address_file: str) -> Connection | None:
        """A server started earlier (by another Blender session, or by hand) that still answers."""
        from .client import BackendClient

        try:
            found = Connection.from_address_file(address_file)
            BackendClient.connect(found, timeout=5.0).json("GET", "/jobs", timeout=5.0)  # cheap, unlike /health
            return found
        except BackendError:
            return None

    def stop(self) -> bool:
        """Stop the server this add-on started (not one it merely found); True if one ran."""
        with self._lock:
            local, self.local = self.local, None
        if local is None:
            return False
        running = local.running
        local.stop()
        return running
