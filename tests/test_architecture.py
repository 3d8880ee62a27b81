"""The layout is a test: import contracts (.importlinter), module counts, function lengths.

The contracts say which package may import which (the backend's layers, the server's API over
its runner, the add-on's bpy-free parts); `lint-imports` checks them on the real import graph,
imports inside functions included. A second test proves the check can fail: it plants an import
that climbs back up a layer in a copy of the package.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BACKEND = ROOT / "backend" / "dynapose4d"
ADDON = ROOT / "blender_addon"
CONFIG = ROOT / ".importlinter"
MAX_TOP_LEVEL_MODULES = 10  # besides __init__ and __main__: the shared vocabulary only
MAX_ADDON_TOP_LEVEL_FILES = 7  # the bpy shell; the rest lives in format/, link/ and scene/
MAX_README_LINES = 250  # a user's guide; design notes and benchmark tables live in docs/
MAX_FUNCTION_LINES = 80
# numba kernels are written as one loop nest each on purpose (a call per pixel costs too much).
NUMBA_DECORATORS = ("njit", "jit", "numba")


def _lint_imports(pythonpath: list[Path], cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """Run lint-imports on the packages found on ``pythonpath`` (``python -c`` also searches
    ``cwd`` first: a test on a copy runs from the copy's folder)."""
    pytest.importorskip("importlinter", reason="import-linter is a dev dependency (scripts/dev.py test installs it)")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(str(p) for p in pythonpath))
    code = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    return subprocess.run([sys.executable, "-c", code, "--config", str(CONFIG), "--no-cache"],
                          capture_output=True, text=True, timeout=300, env=env, cwd=cwd)


def test_import_contracts_hold():
    proc = _lint_imports([ROOT / "backend", ROOT])
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout


@pytest.mark.parametrize("module, planted", [
    ("imaging/pixels.py", "from ..video import clip"),  # a lower layer importing a higher one
    ("server/runner/launch.py", "from . import executors"),  # the executors' old circle
    ("video/framing.py", "from ..keypoints import tracker"),  # video below keypoints
    ("io/ply.py", "import bpy"),  # the backend never imports Blender
    ("server/api/routes/frames.py", "from .. import app"),  # a router importing the app that composes it
])
def test_a_climbing_import_breaks_a_contract(tmp_path, module, planted):
    copy = tmp_path / "backend"
    shutil.copytree(BACKEND, copy / "dynapose4d", ignore=shutil.ignore_patterns("__pycache__"))
    target = copy / "dynapose4d" / module
    target.write_text(target.read_text() + f"\n\ndef _planted():\n    {planted}\n")
    proc = _lint_imports([copy, ROOT], cwd=copy)
    assert proc.returncode != 0, proc.stdout[-3000:]
    assert "BROKEN" in proc.stdout


def test_backend_top_level_holds_only_the_vocabulary():
    modules = sorted(p.stem for p in BACKEND.glob("*.py") if p.stem not in ("__init__", "__main__"))
    assert len(modules) <= MAX_TOP_LEVEL_MODULES, modules


def test_addon_top_level_is_the_bpy_shell():
    files = sorted(p.name for p in ADDON.glob("*.py"))
    assert len(files) <= MAX_ADDON_TOP_LEVEL_FILES, files


@pytest.mark.parametrize("module, planted", [
    ("link/client.py", "import bpy"),  # link/ is tested with plain pytest
    ("format/wire.py", "from ..scene import display"),  # format/ is the bottom layer
])
def test_an_addon_import_that_breaks_a_contract_fails(tmp_path, module, planted):
    shutil.copytree(ADDON, tmp_path / "blender_addon", ignore=shutil.ignore_patterns("__pycache__"))
    target = tmp_path / "blender_addon" / module
    target.write_text(target.read_text() + f"\n\ndef _planted():\n    {planted}\n")
    proc = _lint_imports([ROOT / "backend", tmp_path], cwd=tmp_path)
    assert proc.returncode != 0, proc.stdout[-3000:]
    assert "BROKEN" in proc.stdout


def test_readme_is_a_short_users_guide():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= MAX_README_LINES, len(lines)


def _long_functions(root: Path) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                kernel = any(any(d in ast.unparse(dec) for d in NUMBA_DECORATORS) for dec in node.decorator_list)
                if lines > MAX_FUNCTION_LINES and not kernel:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines} lines)")
    return found


@pytest.mark.parametrize("root", [BACKEND, ADDON], ids=["backend", "blender_addon"])
def test_no_function_is_longer_than_80_lines(root):
    assert _long_functions(root) == []
