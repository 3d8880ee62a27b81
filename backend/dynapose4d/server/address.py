"""The address file: how a client (the Blender add-on) finds a running server and its token.

Written when the server is ready, removed when it stops. JSON::

    {"format": "dynapose4d.server/1", "url": "http://127.0.0.1:8765", "host": "127.0.0.1",
     "port": 8765, "token": "...", "pid": 1234, "hostname": "...", "version": "0.1.0", "api": "/v1",
     "jobs_dir": "...", "started_at": 1700000000.0}

A server that was killed leaves its file behind, naming a PID that no longer runs (on the machine
``hostname`` names): clients report such a file as stale, and the next server replaces it.

Default locations (``--address-file`` overrides):

- Linux and others: ``$XDG_STATE_HOME/dynapose4d/server.json`` (``~/.local/state/...``)
- macOS: ``~/Library/Application Support/dynapose4d/server.json``
- Windows: ``%LOCALAPPDATA%\\dynapose4d\\server.json``

The file holds the token, so it is created with mode 0600 in a folder created with mode 0700
(on Windows the per-user profile folder's permissions apply).
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import sys
from pathlib import Path

FORMAT = "dynapose4d.server/1"
APP = "dynapose4d"


def _home_dir(env_var: str, fallback: str) -> Path:
    value = os.environ.get(env_var)
    return Path(value) if value else Path.home() / fallback


def default_state_dir() -> Path:
    if sys.platform == "win32":
        return _home_dir("LOCALAPPDATA", "AppData/Local") / APP
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / APP
    return _home_dir("XDG_STATE_HOME", ".local/state") / APP


def default_data_dir() -> Path:
    if sys.platform in ("win32", "darwin"):
        return default_state_dir()
    return _home_dir("XDG_DATA_HOME", ".local/share") / APP


def default_address_file() -> Path:
    return default_state_dir() / "server.json"


def default_jobs_dir() -> Path:
    return default_data_dir() / "jobs"


def write_address_file(path: str | os.PathLike, info: dict) -> Path:
    """Write ``info`` (with the token) readable by this user only; atomic, so a client never
    reads half a file."""
    path = Path(path)
    if not path.parent.exists():
        path.parent.mkdir(parents=True, mode=0o700)
    data = json.dumps({"format": FORMAT, **info}, indent=1).encode()
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    # O_EXCL: never write through a file (or symlink) someone else put there.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, 0o600)  # the umask cannot widen it, but be explicit
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return path


def read_address_file(path: str | os.PathLike) -> dict:
    data = json.loads(Path(path).read_text())
    if data.get("format") != FORMAT:
        raise ValueError(f"{path}: not a DynaPose4D server address file")
    return data


def remove_address_file(path: str | os.PathLike, token: str) -> None:
    """Remove the file if it is still ours (a newer server may have replaced it)."""
    try:
        if read_address_file(path).get("token") == token:
            Path(path).unlink()
    except (OSError, ValueError):
        pass


def pid_running(pid: int) -> bool:
    """Is process ``pid`` alive on this machine? (True when it cannot be told.)"""
    if os.name == "nt":
        return True  # os.kill(pid, 0) would terminate it on Windows
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def describe_stale_address_file(path: str | os.PathLike) -> str | None:
    """A message if ``path`` is the address file of a server on this machine that is no longer
    running, else None (no file, another machine's, or a live server)."""
    try:
        info = read_address_file(path)
        pid = int(info["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if info.get("hostname", socket.gethostname()) != socket.gethostname() or pid_running(pid):
        return None
    return f"the backend at {info.get('url')} is not running (stale address file {path}, PID {pid} is gone)"
