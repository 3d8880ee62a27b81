"""Events a running job emits: the pipeline produces them, the CLI, job store and server consume.

A sink is any callable taking one event. Events carry plain data (floats, tensors on the CPU),
never references into the optimiser.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Union

from torch import Tensor

from .gaussians import Gaussians


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
    """Per-frame Gaussians for display: ``gaussians`` has batch shape [F] at normalised
    ``times [F]``; ``keypoints [F, P, 3]`` are the anchors' 3D positions (world units)."""

    stage: str
    iteration: int
    version: int
    times: Tensor
    gaussians: Gaussians
    keypoints: Tensor | None = None


@dataclass
class LogEvent:
    message: str
    level: str = "info"


Event = Union[StageEvent, ProgressEvent, SnapshotEvent, LogEvent]
EventSink = Callable[[Event], None]


def ignore(_event: Event) -> None:
    """The sink that drops everything."""
