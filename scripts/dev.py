#!/usr/bin/env python3
"""One entry point for a fresh clone: set up `.venv/` and run the demo or the tests.

    python3 scripts/dev.py demo [args...]   # runtime environment, then `dynapose4d demo`
    python3 scripts/dev.py test [args...]   # development environment, then pytest

Setup is idempotent: it records a hash of the dependency files in `.venv/` and reinstalls
only when they change, so the second run starts at once. Only the standard library is used
here because this runs before the environment exists.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
BACKEND = ROOT / "backend"
CONSTRAINTS = BACKEND / "constraints-dev.txt"
# torch is installed on its own first and pinned: left to the resolver, a bare `torch`
# requirement pulls a multi-GB CUDA build onto machines that cannot use it.
PROFILES = {
    "runtime": ["-e", f"{BACKEND}"],
    "dev": ["-e", f"{BACKEND}[dev]"],
}


def venv_python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _fingerprint(profile: str) -> str:
    digest = hashlib.sha256(profile.encode())
    for path in (BACKEND / "pyproject.toml", CONSTRAINTS, Path(__file__)):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def ensure_env(profile: str) -> Path:
    """Create or update `.venv/` for `profile`; a no-op when nothing changed."""
    stamp = VENV / f".setup-{profile}"
    fingerprint = _fingerprint(profile)
    if stamp.exists() and stamp.read_text() == fingerprint and venv_python().exists():
        return venv_python()
    if sys.version_info < (3, 10):
        sys.exit(f"Python >= 3.10 is needed, this is {sys.version.split()[0]}")
    if not venv_python().exists():
        print(f"[setup] creating {VENV.name}/", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    py = str(venv_python())
    pip = [py, "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    torch_pin = next(line for line in CONSTRAINTS.read_text().splitlines() if line.startswith("torch=="))
    print(f"[setup] installing {profile} dependencies (first run takes a few minutes)", flush=True)
    subprocess.run(pip + [torch_pin], check=True)
    subprocess.run(pip + ["-c", str(CONSTRAINTS)] + PROFILES[profile], check=True)
    stamp.write_text(fingerprint)
    if profile == "dev":  # the dev environment contains the runtime one
        (VENV / ".setup-runtime").write_text(_fingerprint("runtime"))
    return venv_python()


def main(argv: list[str]) -> int:
    commands = {"demo": "runtime", "test": "dev", "setup": "dev"}
    if not argv or argv[0] not in commands:
        print(__doc__.strip())
        return 2
    command, rest = argv[0], argv[1:]
    py = str(ensure_env(commands[command]))
    if command == "demo":
        return subprocess.call([py, "-m", "dynapose4d", "demo", *rest], cwd=ROOT)
    if command == "test":
        return subprocess.call([py, "-m", "pytest", *rest], cwd=ROOT)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
