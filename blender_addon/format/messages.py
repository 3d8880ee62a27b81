"""A backend's error as one readable line, with the whole text kept for a "Details" toggle. No bpy.

Errors reach the panel as they were raised: a request's ``POST /jobs: 422 ...`` prefix, or the end
of a worker's traceback. :func:`headline` picks the sentence a user acts on.
"""

from __future__ import annotations

import re

_REQUEST = re.compile(r"^(GET|POST|DELETE|PUT|PATCH) \S+: \d{3} ")
_EXCEPTION = re.compile(r"^(?:[\w.]+\.)?(\w+(?:Error|Exception|Refused|Conflict|Gone|Full)): (.+)$")
MAX = 160


def headline(text: str | None) -> str:
    """The line of ``text`` a user acts on: a traceback's last line (its message, without the
    exception's module path), else the first line, without a request's method/path/status."""
    lines = [line.strip() for line in str(text or "").strip().splitlines() if line.strip()]
    if not lines:
        return ""
    traceback = any(line.startswith("Traceback (most recent call last)") for line in lines)
    line = lines[-1] if traceback else lines[0]
    line = _REQUEST.sub("", line)
    found = _EXCEPTION.match(line)
    if found and traceback:
        line = found.group(2)
    return line if len(line) <= MAX else line[: MAX - 1].rstrip() + "…"


def has_details(text: str | None) -> bool:
    """Whether ``text`` says more than its headline."""
    return bool(text) and str(text).strip() != headline(text)
