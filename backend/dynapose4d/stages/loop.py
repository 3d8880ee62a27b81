"""The optimisation loop both stages share: progress events with an ETA, snapshots and
checkpoints on a schedule, and a stop request honoured between or within steps."""

from __future__ import annotations

import os
import time
from typing import Callable, Protocol

from ..events import EventSink, ProgressEvent, SnapshotEvent, StageEvent


class StopRequested(Exception):
    """Raised inside a step when a stop was requested; the step's work is dropped."""


class Stage(Protocol):
    step: int

    def train_step(self, should_stop: Callable[[], bool]) -> dict[str, float]: ...

    def snapshot(self) -> SnapshotEvent: ...

    def save_checkpoint(self, path: str | os.PathLike): ...


def run_stage(
    stage: Stage,
    name: str,
    iterations: int,
    snapshot_every: int,
    checkpoint_every: int,
    emit: EventSink,
    should_stop: Callable[[], bool],
    checkpoint_path: str | os.PathLike | None,
    summary: Callable[[], str] = lambda: "",
) -> str:
    """Optimise ``stage`` until ``iterations``; returns ``"finished"`` or ``"stopped"``.

    ``should_stop`` is polled before and during each step; on a stop the last completed step is
    checkpointed (when ``checkpoint_path`` is given) and ``"stopped"`` returned.
    """
    emit(StageEvent(name, "started", f"from iteration {stage.step}"))
    t0, start_step = time.perf_counter(), stage.step
    try:
        while stage.step < iterations:
            if should_stop():
                raise StopRequested
            values = stage.train_step(should_stop)
            elapsed = time.perf_counter() - t0
            eta = elapsed / (stage.step - start_step) * (iterations - stage.step)
            emit(ProgressEvent(name, stage.step, iterations, values, elapsed, eta))
            last = stage.step == iterations
            if stage.step % snapshot_every == 0 or last:
                emit(stage.snapshot())
            if checkpoint_path and (stage.step % checkpoint_every == 0 or last):
                stage.save_checkpoint(checkpoint_path)
    except StopRequested:
        if checkpoint_path:
            stage.save_checkpoint(checkpoint_path)
        emit(StageEvent(name, "stopped", f"at iteration {stage.step}"))
        return "stopped"
    emit(StageEvent(name, "finished", summary()))
    return "finished"
