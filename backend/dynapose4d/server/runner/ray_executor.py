"""The Ray executor (``dynapose4d serve --executor ray``): each job attempt is a Ray actor that
runs the worker program on a node of the cluster.

Why an actor that starts the worker program, and not the pipeline inside a Ray task: the worker
program is the one that the local executor runs (its job lock, event writer, stop protocol,
failure reports and exit statuses), so a job behaves the same whichever executor runs it, and a
crash or a CUDA out-of-memory error ends that worker only, not a Ray process that others share.

- Resources: every actor takes one CPU; a job whose ``device`` is ``cuda``, or ``auto`` on a
  cluster with GPUs, also takes one GPU (Ray sets ``CUDA_VISIBLE_DEVICES`` for it, and the worker
  inherits it). Ray queues the actor until a node has what it asks for.
- Job folders: the actor runs ``python -m dynapose4d.server.runner.worker JOB_DIR`` with the server's
  path of the folder, so the jobs folder must be on a filesystem every node mounts at the same
  path (NFS, a cluster filesystem; on one machine, any folder). The worker writes events,
  snapshots and checkpoints there, and the server reads them as it does for a local worker:
  events, frames, cancel and resume do not know which executor ran the job.
- Stop: ``stop`` is written to the worker's stdin by its actor; a kill ends the worker's process
  group, and the actor itself if it does not answer within a second.
- Failure: when the actor dies (its Ray worker process killed, its node lost) the worker dies with
  it (Linux: the parent-death signal), the job is marked failed with Ray's reason, and its
  snapshots and checkpoints stay in the job folder; a resume starts a new actor on any node.
- The actors belong to the server (the Ray driver): if the server dies, Ray ends them.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import threading
import time

from ...io.job_folder import JobFolder
from ..config import ServerConfig
from .launch import PACKAGE_ROOT, describe_exit_status, kill_group, send_stop, start_worker

KILL_ESCALATION_S = 1.0  # an actor that has not ended its worker by then is killed by Ray
ACTOR_CONCURRENCY = 8  # run + where + stop + kill may all wait at once in one actor
LOCAL_OBJECT_STORE_BYTES = 256 * 1024 * 1024  # --ray-address local
INSTALL_HINT = "pip install 'dynapose4d[cluster]' into the backend's environment"


def require_ray():
    """The ``ray`` module, or a RuntimeError that says how to install it."""
    try:
        import ray
    except ImportError:
        raise RuntimeError(f"--executor ray needs Ray, which is not installed here: {INSTALL_HINT}") from None
    return ray


def _die_with_parent() -> None:
    """In the worker, before it runs: SIGKILL it when the actor that started it dies, so a lost
    actor never leaves a worker behind that still writes into the job folder."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class WorkerHost:
    """The actor (``ray.remote`` is applied by :class:`RayExecutor`): runs the worker program on
    its node, and relays stop and kill to it. Its methods run in threads, so ``stop`` and
    ``kill`` reach it while ``run`` waits for the worker."""

    def __init__(self, orphan_timeout_s: float):
        self.orphan_timeout_s = orphan_timeout_s
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._stop_early = False
        self._killed_early = False
        self._spawned = threading.Event()

    def run(self, job_dir: str) -> int | None:
        """Start the worker on ``job_dir`` and wait for it; its exit status (None: killed
        before it started)."""
        folder = JobFolder(job_dir)
        if not folder.job_file.is_file():
            raise FileNotFoundError(
                f"node {socket.gethostname()} does not see the job folder {job_dir}: put the server's jobs folder on a "
                "filesystem that every Ray node mounts at the same path (docs/cluster.md)"
            )
        with self._lock:
            if self._killed_early:
                self._spawned.set()
                return None
            self._proc = start_worker(folder, self.orphan_timeout_s, preexec_fn=_die_with_parent if os.name == "posix" else None)
            if self._stop_early:
                send_stop(self._proc)
        self._spawned.set()
        return self._proc.wait()

    def where(self) -> dict:
        """Where the worker runs (once it was started): its PID, the node, this actor's PID."""
        self._spawned.wait(600)
        pid = self._proc.pid if self._proc is not None else None
        return {"pid": pid, "node": socket.gethostname(), "actor_pid": os.getpid()}

    def stop(self) -> None:
        with self._lock:
            if self._proc is None:
                self._stop_early = True
            else:
                send_stop(self._proc)

    def kill(self) -> None:
        with self._lock:
            if self._proc is None:
                self._killed_early = True
            else:
                kill_group(self._proc)


class RayWorker:
    """The server's handle on one actor (see :class:`.executors.WorkerHandle`)."""

    def __init__(self, ray, actor, run_ref, where_ref):
        self._ray = ray
        self._actor = actor
        self._run = run_ref
        self._where_ref = where_ref
        self._where: dict | None = None
        self._ended = False
        self._returncode: int | None = None
        self._lost: str | None = None  # why Ray lost the actor, when it did
        self._kill_by: float | None = None

    @property
    def pid(self) -> int | None:
        if self._where is None and self._ready(self._where_ref):
            try:
                self._where = self._ray.get(self._where_ref)
            except Exception:  # noqa: BLE001 - a dead actor has no worker to name
                self._where = {}
        return (self._where or {}).get("pid")

    @property
    def returncode(self) -> int | None:
        return self._returncode

    def poll(self) -> bool:
        if self._ended:
            return True
        if self._ready(self._run):
            self._collect()
            return True
        if self._kill_by is not None and time.monotonic() >= self._kill_by:
            self._kill_by = None
            self._ray.kill(self._actor, no_restart=True)
        return False

    def stop(self) -> None:
        self._actor.stop.remote()

    def kill(self) -> None:
        self._actor.kill.remote()
        if self._kill_by is None:
            self._kill_by = time.monotonic() + KILL_ESCALATION_S

    def wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.poll() and time.monotonic() < deadline:
            self._ray.wait([self._run], timeout=0.05)

    def close(self) -> None:
        try:
            self._ray.kill(self._actor, no_restart=True)  # its resources go back to the cluster
        except Exception:  # noqa: BLE001 - already gone
            pass

    def exit_description(self) -> str:
        return self._lost or describe_exit_status(self._returncode)

    def _ready(self, ref) -> bool:
        ready, _ = self._ray.wait([ref], timeout=0)
        return bool(ready)

    def _collect(self) -> None:
        self._ended = True
        exceptions = self._ray.exceptions
        try:
            self._returncode = self._ray.get(self._run)
            if self._returncode is None:
                self._lost = "the job was stopped before its worker started"
        except exceptions.RayTaskError as exc:
            cause = getattr(exc, "cause", None) or exc
            self._lost = f"the Ray actor could not run the worker: {type(cause).__name__}: {cause}"
        except (exceptions.RayActorError, exceptions.ActorUnavailableError) as exc:
            node = (self._where or {}).get("node")
            where = f" on node {node}" if node else ""
            self._lost = f"the Ray actor running this job{where} died ({_first_line(exc)})"


def _first_line(exc: BaseException) -> str:
    """Ray's messages are paragraphs; the reason is in the first sentences."""
    text = " ".join(str(exc).split())
    return text if len(text) <= 400 else text[:400] + "..."


def _check_reachable(address: str) -> None:
    """Fail fast on a HOST:PORT (or ray://HOST:PORT) where nothing listens: Ray itself retries
    such an address for minutes before it gives up."""
    if address in ("auto", "local"):
        return  # Ray finds (or starts) the cluster of this machine itself, and says so quickly
    host, _, port = address.split("://", 1)[-1].rpartition(":")
    if not host or not port.isdigit():
        raise RuntimeError(f"--ray-address {address!r} should be auto, local, HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except OSError as exc:
        raise RuntimeError(
            f"cannot connect to the Ray cluster at {address!r}: nothing answers at {host}:{port} ({exc.strerror or exc}); "
            "is its head running (`ray start --head`, docs/cluster.md)?"
        ) from None


class RayExecutor:
    """Workers as Ray actors on a cluster (or a one-machine Ray instance)."""

    name = "ray"

    def __init__(self, config: ServerConfig, say=print):
        self.config = config
        self.address = config.ray_address or "auto"
        self.say = say
        self._ray = None
        self._host = None
        self.owns_ray = False  # this server connected to (or started) Ray, so it disconnects

    def start(self) -> None:
        if self._ray is not None:
            return
        ray = require_ray()
        if not ray.is_initialized():
            options = dict(namespace="dynapose4d", log_to_driver=False)
            _check_reachable(self.address)
            try:
                if self.address == "local":
                    # The cluster's processes start from this environment: let them import this code.
                    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (PACKAGE_ROOT, os.environ.get("PYTHONPATH")) if p)
                    # Only small values go through Ray (paths, exit statuses): a small object store.
                    ray.init(include_dashboard=False, object_store_memory=LOCAL_OBJECT_STORE_BYTES, **options)
                else:
                    ray.init(address=self.address, **options)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise RuntimeError(
                    f"cannot connect to the Ray cluster at {self.address!r}: {_first_line(exc)} "
                    "(start one with `ray start --head`, or pass --ray-address; docs/cluster.md)"
                ) from None
            self.owns_ray = True
        self._ray = ray
        self._host = ray.remote(max_concurrency=ACTOR_CONCURRENCY, max_restarts=0)(WorkerHost)
        resources = ray.cluster_resources()
        nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
        self.say(
            f"jobs run on the Ray cluster at {self.address} ({nodes} node(s), {resources.get('CPU', 0):g} CPUs, "
            f"{resources.get('GPU', 0):g} GPUs); job folders must be visible to every node at {self.config.jobs_dir.resolve()}"
        )

    def gpus_for(self, settings: dict) -> int:
        device = settings.get("device", "auto")
        if device == "cpu":
            return 0
        has_gpus = self._ray.cluster_resources().get("GPU", 0) > 0
        if device == "cuda" and not has_gpus:
            raise OSError("the job asks for device 'cuda', but no node of the Ray cluster has a GPU")
        return 1 if has_gpus else 0

    def launch(self, folder: JobFolder, settings: dict) -> RayWorker:
        self.start()
        gpus = self.gpus_for(settings)
        try:
            actor = self._host.options(num_cpus=1, num_gpus=gpus).remote(self.config.orphan_timeout_s)
            run_ref = actor.run.remote(str(folder.root.resolve()))
            where_ref = actor.where.remote()
        except Exception as exc:  # noqa: BLE001 - the manager fails the job with this, and goes on
            raise OSError(f"Ray could not start an actor for the job ({type(exc).__name__}: {_first_line(exc)})") from exc
        return RayWorker(self._ray, actor, run_ref, where_ref)

    def shutdown(self) -> None:
        if self._ray is not None and self.owns_ray:
            self._ray.shutdown()
