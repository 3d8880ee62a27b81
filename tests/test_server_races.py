"""A job's state changes are one atomic step each (issue 27, finding 2): every pair of choose,
resume, cancel, delete and the worker's own end, fired together many times on the real job
manager (its supervisor running), with a fake executor whose workers end when told to. After
each round the job's record, its worker and state.json must agree, a successful cancel must
leave the job cancelled, and the worker that runs must drive the candidate of the choice that
was answered last."""

import asyncio
import inspect
import itertools
import json
import random
import time

import pytest

from dynapose4d.io.job_folder import JobFolder
from dynapose4d.server.config import ServerConfig
from dynapose4d.server.runner.manager import JobConflict, JobManager
from dynapose4d.server.runner.store import FINAL_STATES, JobRecord, JobStore, UnknownJob

ACTIONS = ("choose0", "choose1", "resume", "cancel", "delete", "worker_ends")
START_STATES = ("waiting", "running", "failed", "done")
ROUNDS = 4  # per pair and start state: 6 x 6 x 4 x 4 = 576 races


class FakeWorker:
    """A worker that runs until stopped, killed, or told to end (``end``), writing its last
    event as the real worker does."""

    def __init__(self, folder: JobFolder, choice):
        self.folder = folder
        self.choice = choice  # the candidate it drives
        self.returncode = None
        self.pid = 4242

    def _exit(self, status: str, rc: int) -> None:
        if self.returncode is None:
            with open(self.folder.events, "a") as fh:
                fh.write(json.dumps({"type": "worker", "status": status}) + "\n")
            self.returncode = rc

    def end(self) -> None:
        self._exit("finished", 0)

    def poll(self) -> bool:
        return self.returncode is not None

    def stop(self) -> None:
        self._exit("stopped", 3)

    def kill(self) -> None:
        if self.returncode is None:
            self.returncode = -9

    def wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.returncode is None and time.monotonic() < deadline:
            time.sleep(0.005)

    def close(self) -> None:
        pass

    def exit_description(self) -> str:
        return f"exit {self.returncode}"


class FakeExecutor:
    name = "fake"

    def __init__(self):
        self.launched: list[FakeWorker] = []

    def start(self):
        pass

    def shutdown(self):
        pass

    def launch(self, folder: JobFolder, settings: dict) -> FakeWorker:
        choice = folder.root / "choice.txt"
        worker = FakeWorker(folder, choice.read_text() if choice.exists() else None)
        self.launched.append(worker)
        return worker


@pytest.fixture
def fake_choose(monkeypatch):
    """The candidate choice as pipeline.candidates.choose makes it, minus the videos: written
    from a worker thread, slowly enough for a race to happen."""
    from dynapose4d.pipeline import candidates

    def choose(folder: JobFolder, index: int) -> dict:
        time.sleep(random.uniform(0, 0.01))
        (folder.root / "choice.txt").write_text(str(index))
        return {"chosen": index, "by": "user"}

    monkeypatch.setattr(candidates, "choose", choose)


async def _new_job(manager: JobManager, executor: FakeExecutor, state: str):
    store = manager.store
    record = JobRecord(id=store.new_id(), kind="demo", state="queued" if state == "running" else state,
                       created_at=time.time())
    store.job_dir(record.id).mkdir()
    store.save(record)
    job = manager.add(record)  # a queued job starts at once (max_jobs 1)
    if state == "running":
        assert job.proc is not None and job.record.state == "running"
    return job


async def _act(manager: JobManager, job, action: str):
    await asyncio.sleep(random.uniform(0, 0.004))
    try:
        if action.startswith("choose"):
            await manager.choose_candidate(job, int(action[-1]))
        elif action == "resume":
            done = manager.resume(job)
            if inspect.isawaitable(done):  # (it was synchronous before issue 27)
                await done
        elif action == "cancel":
            await manager.cancel(job)
        elif action == "delete":
            await manager.delete(job)
        elif action == "worker_ends":
            if job.proc is not None:
                job.proc.end()
        return "ok", time.monotonic(), job.record.state  # what the route answers
    except (JobConflict, UnknownJob) as exc:  # 409 / 404
        return type(exc).__name__, time.monotonic(), None
    except Exception as exc:  # noqa: BLE001 - a 500 in the server
        return f"error {type(exc).__name__}", time.monotonic(), None


def _check(manager: JobManager, job, results: dict, executor: FakeExecutor, launched_before: int) -> list[str]:
    problems = [f"{action} raised {r[0][6:]} (a 500)" for action, r in results.items() if r[0].startswith("error")]
    state, proc = job.record.state, job.proc
    if (state == "running") != (proc is not None):
        problems.append(f"state {state} with {'a' if proc else 'no'} worker")
    if job.record.id in manager.jobs:
        on_disk = json.loads(JobFolder(job.dir).state.read_text())["state"]
        if on_disk != state:
            problems.append(f"state.json says {on_disk}, the record {state}")
    cancel = results.get("cancel")
    if cancel and cancel[0] == "ok" and results.get("delete", ("",))[0] != "ok":
        later = [a for a in ("choose0", "choose1", "resume") if a in results and results[a][0] == "ok" and results[a][1] > cancel[1]]
        if cancel[2] not in FINAL_STATES:
            problems.append(f"cancel answered ok with the job {cancel[2]}")
        elif not later and state != cancel[2]:
            problems.append(f"cancel answered {cancel[2]}, then the job became {state}")
    chosen = [(t, a) for a, (r, t, _) in results.items() if a.startswith("choose") and r == "ok"]
    new_workers = executor.launched[launched_before:]
    if chosen and new_workers:
        last = max(chosen)[1][-1]
        if new_workers[-1].choice != last:
            problems.append(f"the client that chose {last} got a worker on candidate {new_workers[-1].choice}")
    return problems


def test_every_pair_of_state_changes_is_atomic(tmp_path, fake_choose):
    async def run() -> list[str]:
        executor = FakeExecutor()
        manager = JobManager(JobStore(tmp_path / "jobs"), ServerConfig(jobs_dir=tmp_path / "jobs", token="-", cancel_grace_s=0.2),
                             say=lambda line: None, executor=executor)
        manager.start()
        problems = []
        try:
            for a, b in itertools.product(ACTIONS, repeat=2):
                for state in START_STATES:
                    for _ in range(ROUNDS):
                        job = await _new_job(manager, executor, state)
                        launched_before = len(executor.launched)
                        (ra, rb) = await asyncio.wait_for(asyncio.gather(_act(manager, job, a), _act(manager, job, b)), 10)
                        results = {a: ra} if a == b else {a: ra, b: rb}
                        await asyncio.sleep(0.03)  # the supervisor notices ended workers
                        for p in _check(manager, job, results, executor, launched_before):
                            problems.append(f"{a} + {b} from {state}: {p} ({ra[0]}, {rb[0]})")
                        if job.record.id in manager.jobs:  # leave no worker running for the next round
                            if job.proc is not None:
                                job.proc.end()
                            await asyncio.sleep(0.02)
                            await manager.delete(job)
        finally:
            await manager.shutdown()
        return problems

    problems = asyncio.run(run())
    assert not problems, f"{len(problems)} inconsistent races, e.g.:\n" + "\n".join(sorted(set(problems))[:15])
