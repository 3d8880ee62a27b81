"""Tiny random-weight models for the diffusion tests, built once per session into a temp dir.

Test modules opt in with ``pytest_plugins = ["tests.conftest_models"]``. Nothing here is
committed or downloaded: the folders are written by :mod:`dynapose4d.testing.tiny_models`.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from dynapose4d.testing.tiny_models import fake_hf_cache, save_tiny_svd, save_tiny_zero123  # noqa: E402


@pytest.fixture(scope="session")
def tiny_zero123(tmp_path_factory) -> dict[str, Path]:
    """``{"zero123-xl": folder, "stable-zero123": folder}`` in the public diffusers layout."""
    root = tmp_path_factory.mktemp("tiny-zero123")
    return {v: save_tiny_zero123(root / v, v) for v in ("zero123-xl", "stable-zero123")}


@pytest.fixture(scope="session")
def tiny_svd(tmp_path_factory) -> Path:
    return save_tiny_svd(tmp_path_factory.mktemp("tiny-svd") / "svd", num_frames=4)


@pytest.fixture(scope="session")
def tiny_hf_cache(tmp_path_factory, tiny_zero123) -> Path:
    """A Hugging Face cache holding the tiny Zero123 models under their registered hub ids."""
    cache = tmp_path_factory.mktemp("hf-cache")
    fake_hf_cache(cache, "ashawkey/zero123-xl-diffusers", tiny_zero123["zero123-xl"])
    fake_hf_cache(cache, "ashawkey/stable-zero123-diffusers", tiny_zero123["stable-zero123"])
    return cache


@pytest.fixture
def one_thread():
    """Tiny models on a small shared CPU: more threads than free cores makes them ~10x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
