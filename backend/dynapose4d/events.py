"""Events a running job emits: the pipeline produces them, the CLI, job store and server consume.

A sink is any callable taking one event. Events carry plain data (floats, tensors on the CPU),
never references into the optimiser.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Union

if TYPE_CHECKING:
    from .dynamic4d import Dynamic4D


@dataclass
class StageEvent:
    stage: str
    status: str  # "started", "finished", "stopped"
    message: str = ""


@dataclass
class ProgressEvent:
    stage: str
    iteration: int
    total: int
    losses: dict[str, float] = field(default_factory=dict)
    elapsed_s: float = 0.0
    eta_s: float | None = None


@dataclass
class SnapshotEvent:
    """The current result for display: ``model`` is a light copy of the 4D model (static
    Gaussians + deformation state), which consumers sample at any times they need."""

    stage: str
    iteration: int
    version: int
    model: "Dynamic4D"


@dataclass
class LogEvent:
    message: str
    level: str = "info"


Event = Union[StageEvent, ProgressEvent, SnapshotEvent, LogEvent]
EventSink = Callable[[Event], None]


def ignore(_event: Event) -> None:
    """The sink that drops everything."""
