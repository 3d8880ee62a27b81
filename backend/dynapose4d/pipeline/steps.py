"""Resumable steps: each step of a job leaves a product in the job folder and is skipped when
that product exists, so running a job again continues where it stopped."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, TypeVar

from ..events import EventSink, StageEvent, ignore

T = TypeVar("T")


def resumable(
    done: Path,
    make: Callable[[], T | None],
    save: Callable[[T], object],
    load: Callable[[], T],
    *,
    stage: str | None = None,
    emit: EventSink = ignore,
    describe: Callable[[T], str] | None = None,
) -> T | None:
    """``done`` exists? ``load()`` : ``make()``, ``save`` it, ``load()`` it back.

    The product is read back right after it is written, so a first run and a resumed one see
    the same (saved, e.g. 8-bit) data and the stages' checkpoints match their inputs. ``make``
    returns None when the job was stopped; nothing is saved then. With ``stage``, the step is
    announced (started, and finished with ``describe(product)``) in the job's events.
    """
    if done.exists():
        return load()
    if stage:
        emit(StageEvent(stage, "started"))
    made = make()
    if made is None:
        return None
    save(made)
    product = load()
    if stage:
        emit(StageEvent(stage, "finished", describe(product) if describe else ""))
    return product
