"""The command line as a user runs it: real subprocesses, exit codes, messages without tracebacks."""

import json
import os
import subprocess
import sys

import pytest

pytest_plugins = ["tests.conftest_models"]


def run(*args, env=None, timeout=300):
    full_env = dict(os.environ, OMP_NUM_THREADS="1", **(env or {}))
    return subprocess.run([sys.executable, "-m", "dynapose4d", *args], capture_output=True, text=True, timeout=timeout, env=full_env)


def result_line(stdout: str) -> dict:
    return json.loads(next(line for line in stdout.splitlines()[::-1] if line.startswith("RESULT "))[7:])


def test_selftest_reports_test_fixtures_as_not_real(tiny_zero123, tiny_svd):
    out = run("selftest", "--zero123", str(tiny_zero123["zero123-xl"]), "--svd", str(tiny_svd), "--steps", "1")
    assert out.returncode == 0, out.stderr
    assert "renderer: numba vs PyTorch" in out.stdout and "PASS" in out.stdout
    assert out.stdout.count("NOT-REAL") == 2 and "not the real weights" in out.stdout


def test_selftest_skips_the_diffusion_models_without_their_libraries(monkeypatch):
    """The runtime environment (`dev.py demo`) has no diffusers: a SKIP that says what to install,
    not a ModuleNotFoundError traceback."""
    import importlib.util

    import torch

    from dynapose4d.cli import selftest

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "diffusers" else real_find_spec(name, *a))
    checks = [selftest.check_zero123("zero123-xl", torch.device("cpu"), 1), selftest.check_svd("svd", torch.device("cpu"), 1)]
    assert [c.status for c in checks] == ["SKIP", "SKIP"]
    assert all("diffusers not installed" in c.detail and "dynapose4d[diffusion]" in c.detail for c in checks)


def test_missing_models_give_an_actionable_message(tmp_path, tiny_zero123):
    from PIL import Image

    image = Image.new("RGB", (64, 64), (255, 255, 255))
    image.paste((200, 30, 30), (16, 16, 48, 48))  # a red square on white
    image.save(tmp_path / "red.png")
    env = {"HF_HUB_CACHE": str(tmp_path / "cache"), "DYNAPOSE4D_ZERO123": ""}
    out = run("generate", str(tmp_path / "red.png"), "-o", str(tmp_path / "job"), env=env)
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    assert "dynapose4d models download zero123-xl" in out.stderr
    listing = run("models", "list", env=env)
    assert listing.returncode == 0 and "svd-xt" in listing.stdout


def test_animate_runs_and_resumes(tmp_path):
    import torch

    from dynapose4d.evaluation.articulated import make_articulated
    from dynapose4d.io import write_ply
    from tests.test_image_to_4d import lamp_mp4

    lamp = make_articulated("lamp", 800)
    write_ply(tmp_path / "lamp.ply", lamp.static)
    lamp_mp4(tmp_path / "clip.mp4", lamp, frames=6, size=96)
    args = ["animate", str(tmp_path / "lamp.ply"), "--video", str(tmp_path / "clip.mp4"), "-o", str(tmp_path / "job"), "--iterations", "3", "--frames", "4", "--no-previews"]
    first = run(*args)
    assert first.returncode == 0, first.stderr
    assert result_line(first.stdout)["status"] == "finished"
    assert (tmp_path / "job" / "sequence" / "sequence.json").exists()
    again = run(*args)
    assert again.returncode == 0 and "resuming the animate job" in again.stdout
    bad = run("animate", str(tmp_path / "lamp.ply"), "--video", str(tmp_path / "missing.mp4"), "-o", str(tmp_path / "job2"))
    assert bad.returncode == 1 and "missing.mp4 is not a video file, a folder of frames or a .zip of frames" in bad.stderr
    del torch


def test_render_and_demo(tmp_path):
    out = run("render", "-o", str(tmp_path / "r"), "--views", "3", "--size", "64", "--gaussians", "500")
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "r" / "turntable.gif").exists()
    demo = run("demo", "-o", str(tmp_path / "d"), "--iterations", "3")
    assert demo.returncode == 0, demo.stderr
    result = result_line(demo.stdout)
    assert {"ref_psnr", "novel_psnr", "novel_psnr_static_baseline", "moving_psnr", "kp_err", "jitter", "seconds"} <= set(result)
    assert (tmp_path / "d" / "model.pt").exists() and (tmp_path / "d" / "metrics.json").exists()


def test_candidates_of_a_missing_or_non_job_folder_say_so(tmp_path):
    """Issue 27, finding 9: a missing folder was reported as having no video candidates."""
    out = run("candidates", str(tmp_path / "missing"))
    assert out.returncode == 1 and "missing does not exist" in out.stderr and "Traceback" not in out.stderr, out.stderr
    (tmp_path / "empty").mkdir()
    out = run("candidates", str(tmp_path / "empty"), "--choose", "0")
    assert out.returncode == 1 and "is not a job folder" in out.stderr, out.stderr
