"""Shared test setup: deterministic torch on a small CPU, and Blender kept out of the user's files."""

import os
import tempfile
from pathlib import Path

import pytest
import torch

# bpy writes caches and user resources; keep them out of the user's home.
_BLENDER_TMP = Path(tempfile.mkdtemp(prefix="dp4d-blender-"))
os.environ.setdefault("BLENDER_USER_RESOURCES", str(_BLENDER_TMP / "resources"))
os.environ.setdefault("XDG_CACHE_HOME", str(_BLENDER_TMP / "cache"))

ROOT = Path(__file__).resolve().parents[1]
BENCHMARK_DEV = ROOT.parent / "shared" / "benchmark-dev"

# bpy deadlocks at exit after add-on registration; the real-window tests' fixtures (window_harness, ...)
pytest_plugins = ["tests.bpy_exit", "tests.window_fixtures"]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture
def benchmark_dev() -> Path:
    if not BENCHMARK_DEV.is_dir():
        pytest.skip("../shared/benchmark-dev is not present (it is not part of a clone)")
    return BENCHMARK_DEV
