#!/usr/bin/env python3
"""One entry point for a fresh clone: set up `.venv/` and run the demo or the tests.

    python3 scripts/dev.py demo [args...]   # runtime environment, then `dynapose4d demo`
    python3 scripts/dev.py test [args...]   # development environment, then pytest

Setup is idempotent: it records a hash of the dependency files in `.venv/` and reinstalls
only when they change, so the second run starts at once. Only the standard library is used
here because this runs before the environment exists.

`test` also sets up, the same idempotent way, three things the Blender add-on's tests use:
`.venv-bpy5/` (bpy 5.0.x, whose animation API differs from 4.5 LTS) where a second pytest
step runs the bpy-5 test file after the main suite, the Khronos glTF validator (npm
`gltf-validator`) under `.node/` and three.js (npm `three`, the engine test) under
`.node-three/`, where Node.js and npm exist. `DP4D_SKIP_BPY5=1` skips the
second step; it is also skipped when test paths are given on the command line.

It also makes (once; cached in /var/cache/dynapose4d, outside the repository) the Debian trixie
root where the window tests run Blender 4.3 with a real window and bpy 5.3
(`scripts/blender_window.py`; as root, with a Debian mirror and PyPI). Where it cannot be made,
it says what is missing and those tests skip with that reason; `DP4D_SKIP_WINDOW=1` skips them.
"""

from __future__ import annotations

import hashlib
import os
import shutil
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
# The add-on's second Blender: bpy 5.x removed Action.fcurves (slotted actions only). Its test
# file runs in its own environment, without the backend (and without torch): hence
# --noconftest, since tests/conftest.py imports torch.
VENV_BPY5 = ROOT / ".venv-bpy5"
BPY5_PIN = "bpy==5.0.1"
BPY5_TESTS = ["tests/test_addon_bpy5.py", "tests/test_addon_retarget.py"]  # the retarget bake keys through the channelbag API too
# The Khronos glTF validator for the export tests: installed into a git-ignored folder.
NODE_DIR = ROOT / ".node"
GLTF_VALIDATOR_PIN = "gltf-validator@2.0.0-dev.3.10"
# three.js for the engine test of the skinned GLB (GLTFLoader + AnimationMixer under Node).
THREE_DIR = ROOT / ".node-three"
THREE_PIN = "three@0.187.0"
# The real-window tests' Debian root (Blender 4.3 + Xvfb, bpy 5.3): made by this script.
WINDOW_HARNESS = ROOT / "scripts" / "blender_window.py"
# PlayCanvas, a second viewer of our KHR_gaussian_splatting files (the browser test).
PLAYCANVAS_DIR = ROOT / ".node-playcanvas"
PLAYCANVAS_PIN = "playcanvas@2.23.3"
PROFILES = {
    "runtime": ["-e", f"{BACKEND}"],
    "dev": ["-e", f"{BACKEND}[dev,cluster]"],  # cluster: the Ray executor's tests run too
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


def _pin(name: str) -> str:
    return next(line.strip() for line in CONSTRAINTS.read_text().splitlines() if line.startswith(f"{name}=="))


def ensure_bpy5_env() -> Path:
    """Create or update `.venv-bpy5/` (bpy 5.0.x + pytest); a no-op when nothing changed."""
    requirements = [BPY5_PIN, _pin("numpy"), _pin("pytest")]
    fingerprint = hashlib.sha256(" ".join(requirements).encode()).hexdigest()
    py = VENV_BPY5 / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    stamp = VENV_BPY5 / ".setup-bpy5"
    if stamp.exists() and stamp.read_text() == fingerprint and py.exists():
        return py
    if not py.exists():
        print(f"[setup] creating {VENV_BPY5.name}/ ({BPY5_PIN}, a ~370 MB download the first time)", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV_BPY5)
    subprocess.run([str(py), "-m", "pip", "install", "--disable-pip-version-check", "-q", *requirements], check=True)
    stamp.write_text(fingerprint)
    return py


def ensure_gltf_validator() -> bool:
    """Install the glTF validator into `.node/` with npm; False (and a note) without Node.js."""
    return _npm_install(NODE_DIR, GLTF_VALIDATOR_PIN, "gltf-validator", "the glTF validator", stamp_name="validator")


def ensure_three() -> bool:
    """Install three.js into `.node-three/` (the engine test plays the skinned GLB with it)."""
    return _npm_install(THREE_DIR, THREE_PIN, "three", "three.js")


def ensure_playcanvas() -> bool:
    """Install PlayCanvas into `.node-playcanvas/` (the browser test shows our splat file with it too)."""
    return _npm_install(PLAYCANVAS_DIR, PLAYCANVAS_PIN, "playcanvas", "PlayCanvas")


def _npm_install(folder: Path, pin: str, package: str, what: str, stamp_name: str | None = None) -> bool:
    """``npm install pin`` into ``folder`` once (a stamp file remembers the pin); False, with a
    note, where Node.js or npm is missing or the install fails (the tests that need it skip)."""
    stamp = folder / f".setup-{stamp_name or package}"
    if stamp.exists() and stamp.read_text() == pin and (folder / "node_modules" / package).is_dir():
        return True
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        print(f"[setup] Node.js/npm not found: the tests that need {what} will be skipped", flush=True)
        return False
    print(f"[setup] installing {pin} into {folder.name}/", flush=True)
    folder.mkdir(exist_ok=True)
    cmd = [npm, "install", "--prefix", str(folder), "--no-audit", "--no-fund", "--loglevel=error", pin]
    if subprocess.run(cmd).returncode != 0:
        print(f"[setup] npm could not install {what}: its tests will be skipped", flush=True)
        return False
    stamp.write_text(pin)
    return True


def ensure_window_root() -> bool:
    """Make or update the window tests' trixie root (a no-op once made); False, after saying
    what is missing, where it cannot be made: those tests then skip with that reason."""
    if os.environ.get("DP4D_SKIP_WINDOW"):
        print("[setup] DP4D_SKIP_WINDOW is set: the real-window Blender tests will be skipped", flush=True)
        return False
    if subprocess.call([sys.executable, str(WINDOW_HARNESS), "setup"], cwd=ROOT) != 0:
        print("[setup] the real-window Blender tests will be skipped (the reason is above)", flush=True)
        return False
    return True


def _selects_tests(args: list[str]) -> bool:
    """Whether pytest arguments name tests (paths or node ids) rather than only options."""
    return any(not a.startswith("-") and (ROOT / a.split("::")[0]).exists() for a in args)


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
        ensure_gltf_validator()
        ensure_three()
        if not _selects_tests(rest) or any("window" in a for a in rest):
            ensure_window_root()
        ensure_playcanvas()
        rc = subprocess.call([py, "-m", "pytest", *rest], cwd=ROOT)
        if os.environ.get("DP4D_SKIP_BPY5") or _selects_tests(rest):
            return rc
        print(f"[test] add-on tests under {BPY5_PIN} ({VENV_BPY5.name}/)", flush=True)
        quiet = [a for a in rest if a in ("-q", "-qq", "-v", "-x")]
        py5 = str(ensure_bpy5_env())
        rc5 = subprocess.call([py5, "-m", "pytest", "--noconftest", "-p", "tests.bpy_exit", *quiet, *BPY5_TESTS], cwd=ROOT)
        return rc or rc5
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
