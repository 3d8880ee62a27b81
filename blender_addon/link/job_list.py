"""The server's jobs as a user names them: by kind, input and date, not by a 32-hex id. No bpy here.

A job's title (``cat 2025-06-03 14:05``) names its collection in the scene; its label
(``Generate · cat · done · 3 Jun 14:05``) is a line of the panel's job list.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import PurePath

INPUT_ROLES = ("image", "ply", "video")  # the input that names a job, first found first
KIND_WORDS = {"generate": "Generate", "demo": "Demo", "animate": "Animate"}


def input_name(status: dict) -> str:
    """The name of the job's main input without its suffix (``cat`` for ``cat.png``), or its kind."""
    inputs = status.get("inputs") or {}
    for role in INPUT_ROLES:
        info = inputs.get(role)
        filename = info.get("filename") if isinstance(info, dict) else None
        if filename:
            stem = PurePath(str(filename).replace("\\", "/")).stem
            return stem[:40] or role
    return status.get("kind") or "job"


def _date(created_at: float | None, fmt: str) -> str:
    return time.strftime(fmt, time.localtime(created_at)) if created_at else ""


def job_title(status: dict) -> str:
    """``cat 2025-06-03 14:05``: what the job's collection is called after "DynaPose4D "."""
    return f"{input_name(status)} {_date(status.get('created_at'), '%Y-%m-%d %H:%M')}".strip()


@dataclass(frozen=True)
class JobEntry:
    """One job of ``GET /v1/jobs`` as the panel's list shows it."""

    id: str
    kind: str
    state: str
    created_at: float | None
    input: str

    @classmethod
    def from_status(cls, status: dict) -> "JobEntry":
        return cls(status["id"], status.get("kind", "?"), status.get("state", "?"), status.get("created_at"), input_name(status))

    @property
    def label(self) -> str:
        """``Generate · cat · done · 3 Jun 14:05``."""
        parts = [KIND_WORDS.get(self.kind, self.kind.title())]
        if self.input != self.kind:
            parts.append(self.input)
        parts += [self.state, _date(self.created_at, "%d %b %H:%M").lstrip("0")]
        return " · ".join(p for p in parts if p)


def entries(statuses: list[dict]) -> list[JobEntry]:
    """The server's job list, newest first (what a user looks for)."""
    return sorted((JobEntry.from_status(s) for s in statuses if s.get("id")), key=lambda e: -(e.created_at or 0))
