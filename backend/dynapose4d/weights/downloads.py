"""Model downloads run by a long-lived process (the server): one child process per download.

:class:`ModelDownloads` starts ``python -m dynapose4d.weights.fetch NAME`` (:mod:`.fetch`), reads
the JSON lines it writes on a thread, and keeps each model's :class:`DownloadState` in memory for
the API to show. A cancel ends the child's process group. A Hugging Face token is put in that
child's environment (``HF_TOKEN``) and nowhere else: it is not kept here, not logged, not part of
any state, and the child never writes it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .registry import get_spec

ACTIVE = ("starting", "checking", "downloading")
STOP_GRACE_S = 3.0


class DownloadConflict(RuntimeError):
    """A download already runs (start) or none runs (cancel). The message says which."""


class UnknownModel(LookupError):
    """No registered model has this name."""


@dataclass
class DownloadState:
    """One model's download as the API shows it (plain values; never the token)."""

    name: str
    state: str = "starting"  # starting, checking, downloading, done, failed, cancelled
    done_bytes: int = 0
    total_bytes: int | None = None
    cached_bytes: int = 0  # of total_bytes, already here when it started (a resumed download)
    speed: float | None = None  # bytes/s
    eta_s: float | None = None
    error: str | None = None
    error_kind: str | None = None  # gated, disk, network, missing, other
    message: str = ""  # the child's last line that was not an event (huggingface_hub's warnings)
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    def to_dict(self) -> dict:
        return asdict(self)

    def apply(self, event: dict) -> None:
        """One JSON line of the child (:mod:`.fetch`)."""
        kind = event.get("event")
        if kind == "checking":
            self.state = "checking"
        elif kind == "plan":
            self.state, self.total_bytes = "downloading", int(event["total"])
            self.cached_bytes = self.done_bytes = int(event.get("cached", 0))
        elif kind == "progress":
            self.done_bytes, self.total_bytes = int(event["done"]), int(event["total"])
            self.speed, self.eta_s = event.get("speed"), event.get("eta_s")
        elif kind == "done":
            self.state, self.eta_s, self.speed = "done", None, None
            self.done_bytes = self.total_bytes = int(event.get("total", self.total_bytes or 0))
        elif kind == "error":
            self.state, self.error, self.error_kind = "failed", str(event.get("message")), event.get("kind", "other")
            self.eta_s = self.speed = None


class ModelDownloads:
    """The downloads of one server. ``python``: the interpreter of the children (this one);
    ``cache_dir``: the Hugging Face cache they fill (None: the children's default, HF_HOME's)."""

    def __init__(self, python: str = sys.executable, cache_dir: str | None = None, say=print):
        self.python = python
        self.cache_dir = cache_dir
        self.say = say
        self.states: dict[str, DownloadState] = {}
        self._procs: dict[str, subprocess.Popen] = {}
        self._lock = threading.Lock()

    def state(self, name: str) -> DownloadState | None:
        return self.states.get(name)

    def start(self, name: str, *, token: str | None = None, full_precision: bool = False) -> DownloadState:
        """Start downloading ``name``; ``token`` goes into the child's environment only."""
        _check_name(name)
        with self._lock:
            current = self.states.get(name)
            if current is not None and current.active:
                raise DownloadConflict(f"{name} is already downloading ({current.state}); cancel it first")
            state = self.states[name] = DownloadState(name)
            proc = self._procs[name] = subprocess.Popen(
                self._command(name, full_precision), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=_child_env(token), text=True, errors="replace", **_new_group())
        del token  # not kept: the child has it
        threading.Thread(target=self._follow, args=(name, state, proc), name=f"dynapose4d-download-{name}", daemon=True).start()
        self.say(f"model download started: {name} (process {proc.pid})")
        return state

    def _command(self, name: str, full_precision: bool) -> list[str]:
        cmd = [self.python, "-m", "dynapose4d.weights.fetch", name]
        if self.cache_dir:
            cmd += ["--cache-dir", self.cache_dir]
        return cmd + (["--full-precision"] if full_precision else [])

    def _follow(self, name: str, state: DownloadState, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            line = line.strip()
            if not line or state.state == "cancelled":  # what a cancelled child still says is stale
                continue
            try:
                event = json.loads(line)
            except ValueError:
                event = None
            if isinstance(event, dict) and "event" in event:
                state.apply(event)
            else:
                state.message = line[:300]
        code = proc.wait()
        with self._lock:
            if state.active:  # the child ended without its last word (killed, or a crash)
                state.state, state.error, state.error_kind = "failed", f"the download process exited with status {code}: {state.message}", "other"
            state.finished_at = time.time()
            if self._procs.get(name) is proc:
                del self._procs[name]
        self.say(f"model download {name}: {state.state}" + (f" ({state.error_kind})" if state.error_kind else ""))

    def cancel(self, name: str, wait_s: float = 10.0) -> DownloadState:
        """Stop ``name``'s download (what is complete stays in the cache for the next one)."""
        _check_name(name)
        with self._lock:
            state, proc = self.states.get(name), self._procs.get(name)
            if state is None or not state.active or proc is None:
                raise DownloadConflict(f"no download of {name} is running")
            state.state, state.eta_s, state.speed = "cancelled", None, None
        _stop(proc, wait_s)
        return state

    def shutdown(self) -> None:
        """Stop every download (the server is stopping)."""
        for name, proc in list(self._procs.items()):
            state = self.states.get(name)
            if state is not None and state.active:
                state.state = "cancelled"
            _stop(proc, STOP_GRACE_S)


def _check_name(name: str) -> None:
    try:
        get_spec(name)
    except ValueError as exc:
        raise UnknownModel(str(exc)) from None


def _child_env(token: str | None) -> dict:
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parents[2])  # the child imports this dynapose4d
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    env["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"  # the child reports progress itself
    env["PYTHONUNBUFFERED"] = "1"
    if token:
        env["HF_TOKEN"] = token
    return env


def _new_group() -> dict:
    return {"start_new_session": True} if os.name != "nt" else {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}


def _stop(proc: subprocess.Popen, wait_s: float) -> None:
    """SIGTERM to the child's group, then a kill."""
    if proc.poll() is not None:
        return
    try:
        if os.name == "nt":
            proc.terminate()
        else:
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(wait_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    except ProcessLookupError:
        pass
