"""Executors: where a job's worker program runs. The job manager only talks to this interface.

An :class:`Executor` starts the worker program (``python -m dynapose4d.server.runner.worker JOB_DIR``,
:mod:`.worker`) for a job folder and returns a :class:`WorkerHandle`; through the handle the
manager asks the worker to stop, kills it, polls whether it ended, and gets its exit status and
a description of an exit that the worker itself did not explain. Whatever the executor, the
worker writes into the job folder (``events.jsonl``, ``snapshots/latest.pt``, ``checkpoints/``,
``worker.log``), which is where the server reads progress from: the API behaves the same.

- :class:`SubprocessExecutor` (the default, ``--executor local``): a child process of the server
  on this machine, in its own process group, stopped through its stdin.
- ``RayExecutor`` (``--executor ray``, :mod:`.ray_executor`): a Ray actor on any node of a
  cluster that runs the same worker program there; the job folders must be on a filesystem that
  every node mounts at the same path (docs/cluster.md). Ray is imported only when it is chosen.
"""

from __future__ import annotations

import subprocess
from typing import Protocol

from ...io.job_folder import JobFolder
from ..config import ServerConfig
from .launch import describe_exit_status, kill_group, send_stop, start_worker

EXECUTORS = ("local", "ray")


class WorkerHandle(Protocol):
    """One running attempt of a job."""

    @property
    def pid(self) -> int | None:
        """The worker's process id (on the machine that runs it), once known."""

    def poll(self) -> bool:
        """Whether the worker has ended (cheap: called every few milliseconds)."""

    @property
    def returncode(self) -> int | None:
        """The worker's exit status once it ended (negative: killed by that signal); None while
        it runs, or when the executor lost it without a status (a Ray node that died)."""

    def stop(self) -> None:
        """Ask the worker to stop at its next check (it keeps its checkpoint)."""

    def kill(self) -> None:
        """End the worker now (checkpoints are written atomically, so the last one stays)."""

    def wait(self, timeout: float) -> None:
        """Block until the worker ended or ``timeout`` seconds passed (call it from a thread)."""

    def close(self) -> None:
        """Release what the handle holds, after the worker ended."""

    def exit_description(self) -> str:
        """Why the worker ended, for an exit its events do not explain."""


class Executor(Protocol):
    name: str

    def start(self) -> None:
        """Get ready (connect to a cluster); called once when the server starts."""

    def launch(self, folder: JobFolder, settings: dict) -> WorkerHandle:
        """Start a worker on the job folder; ``settings`` say what it needs (its device).
        Raises OSError when it cannot be started."""

    def shutdown(self) -> None:
        """Called once when the server stops, after every worker ended."""


def make_executor(config: ServerConfig, say=print) -> Executor:
    if config.executor == "local":
        return SubprocessExecutor(config)
    if config.executor == "ray":
        from .ray_executor import RayExecutor  # Ray only where it is asked for

        return RayExecutor(config, say=say)
    raise ValueError(f"unknown executor {config.executor!r}; choose one of: {', '.join(EXECUTORS)}")


# -- the local executor -------------------------------------------------------------------------
class LocalWorker:
    """A worker process started by this server."""

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc

    @property
    def pid(self) -> int | None:
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    def poll(self) -> bool:
        return self.proc.poll() is not None

    def stop(self) -> None:
        send_stop(self.proc)

    def kill(self) -> None:
        kill_group(self.proc)

    def wait(self, timeout: float) -> None:
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass

    def close(self) -> None:
        try:
            self.proc.stdin.close()
        except OSError:
            pass

    def exit_description(self) -> str:
        return describe_exit_status(self.proc.returncode)


class SubprocessExecutor:
    """Workers as child processes of the server (one machine; ``max_jobs`` at a time)."""

    name = "local"

    def __init__(self, config: ServerConfig):
        self.config = config

    def start(self) -> None:
        pass

    def launch(self, folder: JobFolder, settings: dict) -> LocalWorker:
        return LocalWorker(start_worker(folder, self.config.orphan_timeout_s))

    def shutdown(self) -> None:
        pass
