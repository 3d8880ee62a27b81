"""Disk space: how a full disk is recognised and reported (no web framework here: the worker uses it)."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

DISK_FULL_ERRNOS = frozenset(e for e in (errno.ENOSPC, getattr(errno, "EDQUOT", None)) if e is not None)
# An upload must leave this much free: the job's checkpoints and snapshots need room too. A
# failure with less than this free is reported as a full disk (libraries such as torch's zip
# writer do not always say so: "unexpected pos ...").
RESERVE_BYTES = 8 * 2**20


class DiskFull(OSError):
    """Not enough disk space for an upload or a job's files (HTTP 507)."""


def free_bytes(folder: str | Path) -> int:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return 0


def disk_full_message(folder: str | Path) -> str:
    return f"not enough disk space in {folder}: {free_bytes(folder) / 2**20:.0f} MB free"


def is_disk_full(exc: BaseException | None) -> bool:
    """Did ``exc`` (or an exception it was raised from) come from a full disk or quota?"""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, DiskFull) or (isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def disk_low(folder: str | Path) -> bool:
    return free_bytes(folder) < RESERVE_BYTES


def remove_partial_files(job_dir: Path) -> list[Path]:
    """Delete the ``*.tmp`` files that atomic writes leave behind when they fail (they are never
    read: a file becomes real only by its rename). Returns what was removed."""
    removed = []
    for path in job_dir.rglob("*.tmp"):
        if path.parent == job_dir and path.name.startswith("state.json"):
            continue  # the server's own record, written (and cleaned up) by the server alone
        try:
            path.unlink()
            removed.append(path)
        except OSError:
            pass
    return removed
