"""A console sink for job events: one status line per stage, refreshed at most every interval."""

from __future__ import annotations

import sys
import time

from ..events import Event, LogEvent, ProgressEvent, SnapshotEvent, StageEvent


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


class ConsoleProgress:
    """Prints progress (stage, iteration, main losses, elapsed, ETA); plain lines, no escape codes,
    so logs and CI output stay readable."""

    def __init__(self, stream=None, interval_s: float = 5.0, losses: tuple[str, ...] = ("loss", "loss_rgb", "loss_kml")):
        self.stream = stream or sys.stdout
        self.interval_s = interval_s
        self.losses = losses
        self._last = 0.0

    def __call__(self, event: Event) -> None:
        if isinstance(event, ProgressEvent):
            now = time.monotonic()
            if now - self._last < self.interval_s and event.iteration < event.total:
                return
            self._last = now
            shown = "  ".join(f"{k}={event.losses[k]:.4g}" for k in self.losses if k in event.losses)
            self._print(
                f"[{event.stage}] {event.iteration}/{event.total}  {shown}  "
                f"elapsed {_duration(event.elapsed_s)}  eta {_duration(event.eta_s)}"
            )
        elif isinstance(event, StageEvent):
            self._print(f"[{event.stage}] {event.status}" + (f": {event.message}" if event.message else ""))
        elif isinstance(event, LogEvent):
            self._print(("warning: " if event.level == "warning" else "") + event.message)
        elif isinstance(event, SnapshotEvent):
            pass

    def _print(self, line: str) -> None:
        print(line, file=self.stream, flush=True)
