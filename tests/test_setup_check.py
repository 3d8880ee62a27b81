"""Check Setup: the backend's ``selftest --quick --json`` (cli/selftest.py) run by the add-on's
SetupCheck (link/setup_check.py) and said in words: device, renderer and why, which models load,
what to do about each problem."""

import shutil
import sys
import time
from pathlib import Path

from blender_addon.link.setup_check import SetupCheck, describe, local_report

pytest_plugins = ["tests.conftest_models"]

ROOT = Path(__file__).resolve().parents[1]

GPU_REPORT = {
    "version": "0.1.0", "device": "cuda", "gpu": "NVIDIA H100 80GB HBM3", "torch": "2.13.0+cu128", "cuda": "12.8",
    "renderer": {"name": "gsplat", "why": "gsplat's CUDA kernels run on NVIDIA H100 80GB HBM3"},
    "checks": [
        {"name": "renderer: numba vs PyTorch", "status": "PASS", "detail": "PSNR 52.0 dB (needs > 40)", "fix": ""},
        {"name": "renderer: gsplat vs PyTorch", "status": "PASS", "detail": "PSNR 48.0 dB (needs > 40)", "fix": ""},
        {"name": "Zero-1-to-3 (zero123-xl)", "status": "PASS", "detail": "loads (0.86 billion UNet parameters)", "fix": ""},
        {"name": "Stable Video Diffusion (svd)", "status": "PASS", "detail": "loads (1.52 billion UNet parameters)", "fix": ""},
    ],
    "failed": 0,
}


def texts(lines):
    return [(line.level, line.text) for line in lines]


def test_a_working_gpu_machine_reads_ready():
    lines = texts(describe(GPU_REPORT))
    assert lines[0] == ("OK", "GPU: NVIDIA H100 80GB HBM3 (torch 2.13.0+cu128, CUDA 12.8)")
    assert lines[1] == ("OK", "Renderer: gsplat (gsplat's CUDA kernels run on NVIDIA H100 80GB HBM3)")
    assert ("OK", "Zero-1-to-3 (zero123-xl): loads (0.86 billion UNet parameters)") in lines
    assert lines[-1] == ("OK", "Ready: the Demo, Animate and Generate can run")
    assert not [t for level, t in lines if t.startswith("renderer:")]  # passing renderer checks add nothing


def test_problems_come_with_what_to_do():
    report = dict(GPU_REPORT, renderer={"name": "torch", "why": "the PyTorch rasteriser (slower) because gsplat failed"})
    report["checks"] = [
        {"name": "renderer: gsplat", "status": "FAIL", "detail": "RuntimeError: no kernel image", "fix": "Install the gsplat wheel"},
        {"name": "Stable Video Diffusion (svd)", "status": "SKIP", "detail": "model 'svd' is not available",
         "fix": "Download svd in the add-on's preferences (Models)"},
    ]
    lines = texts(describe(report))
    assert lines[1][0] == "WARNING" and "PyTorch fallback" in lines[1][1]
    assert ("ERROR", "renderer: gsplat: RuntimeError: no kernel image") in lines
    assert ("INFO", "What to do: Install the gsplat wheel") in lines
    assert ("WARNING", "Stable Video Diffusion (svd): not on the backend's machine yet") in lines
    assert lines[-1] == ("ERROR", "1 check(s) failed: see What to do above")


def test_check_setup_runs_the_backend_s_selftest(tiny_zero123, tmp_path):
    """The real self-test on this CPU machine, through the add-on's runner: tiny Zero-1-to-3 weights
    (not real), no video model."""
    env = {"PYTHONPATH": str(ROOT / "backend"), "DYNAPOSE4D_ZERO123": str(tiny_zero123["zero123-xl"]), "DYNAPOSE4D_SVD": "",
           "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}
    check = SetupCheck(lambda: local_report(sys.executable, env)).start()
    assert check.snapshot().state == "running"
    result = finished(check, 600)
    assert result.state == "done", result.error
    assert_cpu_machine_with_tiny_zero123(texts(result.lines))


def finished(check: SetupCheck, timeout_s: float):
    deadline = time.monotonic() + timeout_s
    while check.snapshot().state == "running":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    return check.snapshot()


def assert_cpu_machine_with_tiny_zero123(lines):
    assert lines[0][0] == "WARNING" and lines[0][1].startswith("No GPU in use: jobs run on the CPU (torch ")
    assert ("OK", "Renderer: the CPU rasteriser (no CUDA device: the compiled CPU rasteriser)") in lines
    assert any(t.startswith("Zero-1-to-3 (zero123-xl): test weights only") for _, t in lines)
    assert any("download the real zero123-xl" in t for _, t in lines)
    assert ("WARNING", "Stable Video Diffusion (svd): not on the backend's machine yet") in lines
    assert any("Download svd in the add-on's preferences" in t for _, t in lines)
    if not shutil.which("nvidia-smi"):
        assert lines[1] == ("INFO", "What to do: No NVIDIA GPU here: jobs run on the CPU (the Demo in about a minute; "
                                    "Generate needs a GPU to be practical)")
    assert lines[-1] == ("INFO", "The Demo and Animate can run; Generate needs the models above")


def test_a_backend_that_cannot_run_is_a_readable_failure(tmp_path):
    result = finished(SetupCheck(lambda: local_report(str(tmp_path / "no-python"))).start(), 30)
    assert result.state == "failed" and "could not run the backend's self-test" in result.error


def test_a_remote_backend_runs_its_selftest_on_its_own_machine(tiny_zero123, tmp_path, monkeypatch):
    """Check Setup with a backend on another machine: ``GET /v1/setup`` runs the self-test where the
    server is (here a real server on 127.0.0.1), and the preferences say the same words."""
    from blender_addon.link.launcher import Backends, BackendSettings
    from tests.server_fixtures import start_server

    monkeypatch.setenv("DYNAPOSE4D_ZERO123", str(tiny_zero123["zero123-xl"]))
    monkeypatch.setenv("DYNAPOSE4D_SVD", "")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    server = start_server(tmp_path / "server")
    try:
        settings = BackendSettings(mode="REMOTE", url=server.info["url"], token=server.info["token"])
        client = Backends().client(settings)
        result = finished(SetupCheck(client.setup_report).start(), 600)
        assert result.state == "done", result.error
        assert_cpu_machine_with_tiny_zero123(texts(result.lines))
        started = time.monotonic()
        assert client.setup_report()["version"]  # a second click within 30 s: the kept report
        assert time.monotonic() - started < 5
        bad = BackendSettings(mode="REMOTE", url=server.info["url"], token="wrong")
        failed = finished(SetupCheck(Backends().client(bad).setup_report).start(), 30)
        assert failed.state == "failed" and "401" in failed.error, failed.error
    finally:
        server.stop()


def test_a_cpu_torch_beside_an_nvidia_driver_says_to_rebuild(monkeypatch):
    import torch
    from dynapose4d.cli import selftest

    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/nvidia-smi")
    monkeypatch.setattr(torch.version, "cuda", None)
    assert "is a CPU build" in selftest._no_cuda_fix() and "CUDA Torch Build" in selftest._no_cuda_fix()
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    assert "torch sees no GPU" in selftest._no_cuda_fix()
