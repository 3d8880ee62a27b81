"""A job's event file, read incrementally, and the progress it adds up to.

The worker appends one JSON object a line to ``events.jsonl`` (see :mod:`.worker` for the
types). The line number is the event's id: the SSE stream sends it, and a client that
reconnects passes the last id it saw. Only complete lines are read (the worker may be in the
middle of writing one). The worker appends whole lines or nothing, but a worker killed mid-write
leaves a fragment: such a line keeps its id and is read as a ``log`` warning that says the event
is broken (``"broken": true``), so a client sees the gap instead of an id silently missing.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class Progress:
    """What the events say so far (the latest value of each)."""

    stage: str | None = None
    stage_status: str | None = None
    iteration: int | None = None
    total: int | None = None
    losses: dict = field(default_factory=dict)
    elapsed_s: float | None = None
    eta_s: float | None = None
    snapshot: dict | None = None
    message: str | None = None
    worker: dict | None = None  # the last "worker" event: started / finished / stopped / failed

    def apply(self, event: dict) -> None:
        kind = event.get("type")
        if kind == "progress":
            self.stage = event.get("stage", self.stage)
            self.iteration = event.get("iteration")
            self.total = event.get("total")
            self.losses = event.get("losses") or {}
            self.elapsed_s = event.get("elapsed_s")
            self.eta_s = event.get("eta_s")
        elif kind == "stage":
            self.stage = event.get("stage", self.stage)
            self.stage_status = event.get("status")
        elif kind == "snapshot":
            self.snapshot = {k: v for k, v in event.items() if k not in ("type", "time")}
        elif kind == "log":
            self.message = event.get("message")
        elif kind == "worker":
            self.worker = event
            if event.get("status") == "started":
                self.eta_s = None

    def to_dict(self) -> dict:
        return asdict(self)


class EventLog:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.lines: list[tuple[str, str]] = []  # (type, raw JSON text) by id
        self.progress = Progress()
        self._offset = 0
        self._partial = b""

    def __len__(self) -> int:
        return len(self.lines)

    def poll(self) -> int:
        """Read what was appended since the last call; returns the number of new events."""
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return 0
        if size < self._offset:  # the file was replaced (job deleted and re-created): start over
            self.__init__(self.path)
        if size == self._offset:
            return 0
        with open(self.path, "rb") as fh:
            fh.seek(self._offset)
            data = fh.read(size - self._offset)
        self._offset += len(data)
        data = self._partial + data
        *complete, self._partial = data.split(b"\n")
        for raw in complete:
            text = raw.decode("utf-8", "replace").strip()
            try:
                event = json.loads(text)
                if not isinstance(event, dict):
                    raise ValueError("not an object")
            except ValueError:
                self.lines.append(("log", _broken_line(len(self.lines), len(raw))))
                continue
            self.progress.apply(event)
            self.lines.append((str(event.get("type", "event")), text))
        return len(complete)

    def since(self, after: int) -> list[tuple[int, str, str]]:
        """``(id, type, json text)`` of the events with id > ``after``."""
        start = max(0, after + 1)
        return [(i, *line) for i, line in enumerate(self.lines[start:], start)]


def _broken_line(event_id: int, size: int) -> str:
    """What a reader says in place of a line that is not a JSON object."""
    message = (f"event {event_id} of this job is broken: its line in the event file ({size:,} bytes) is not a complete "
               "JSON object (a worker stopped in the middle of writing it); it is skipped")
    return json.dumps({"type": "log", "level": "warning", "message": message, "broken": True})
