"""Starting and stopping the worker program: what every executor shares.

The worker (``python -m dynapose4d.server.runner.worker JOB_DIR``) runs as its own program in
its own process group, its output appended to the job's ``worker.log``; it is asked to stop
through its stdin, and killed with its whole group when it does not.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from ...io.job_folder import JobFolder
from .worker import ORPHAN_TIMEOUT_ENV

# The folder that holds the dynapose4d package: on the worker's PYTHONPATH so that it imports
# this same code, whatever is installed.
PACKAGE_ROOT = str(Path(__file__).resolve().parents[3])


def worker_command(folder: JobFolder) -> list[str]:
    return [sys.executable, "-m", "dynapose4d.server.runner.worker", str(folder.root)]


def worker_env(orphan_timeout_s: float) -> dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env[ORPHAN_TIMEOUT_ENV] = str(orphan_timeout_s)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
    return env


def start_worker(folder: JobFolder, orphan_timeout_s: float, preexec_fn=None) -> subprocess.Popen:
    """The worker program as a child of this process, its output appended to ``worker.log``;
    ``preexec_fn`` runs in the child before the program (POSIX)."""
    # Its own process group: Ctrl-C in the server's terminal reaches the server only (which
    # then stops the worker properly), and a kill reaches the worker's children too.
    group = {"start_new_session": True} if os.name != "nt" else {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}
    with open(folder.worker_log, "ab") as log_fh:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            worker_command(folder),
            stdin=subprocess.PIPE,
            stdout=log_fh,
            stderr=subprocess.STDOUT,
            cwd=folder.root,
            env=worker_env(orphan_timeout_s),
            preexec_fn=preexec_fn,
            **group,
        )


def send_stop(proc: subprocess.Popen) -> None:
    try:
        proc.stdin.write(b"stop\n")
        proc.stdin.flush()
    except (OSError, ValueError):
        pass  # already gone; the exit is picked up by polling


def kill_group(proc: subprocess.Popen) -> None:
    try:
        if os.name != "nt":
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()
    except (ProcessLookupError, PermissionError, OSError):
        pass


def describe_exit_status(rc: int | None) -> str:
    if rc is not None and rc < 0:
        try:
            name = signal.Signals(-rc).name
        except ValueError:
            name = f"signal {-rc}"
        hint = " (by the user, or by the system when memory ran out)" if name == "SIGKILL" else ""
        return f"the worker was killed by {name}{hint}"
    return f"the worker exited with status {rc} without reporting why"
