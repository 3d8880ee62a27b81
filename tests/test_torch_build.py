"""The torch build for the backend environment, table-driven over platform facts (no bpy, no GPU):
link/torch_build.py, and the environment builder's steps that install it first."""

import subprocess
from pathlib import Path

import pytest

from blender_addon.link.launcher import EnvironmentBuilder
from blender_addon.link.torch_build import BUILDS, OVERRIDES, Facts, choose, detect

H100 = dict(gpu="NVIDIA H100 80GB HBM3", driver="570.124.06")

# facts -> (build, words the reason must hold)
TABLE = [
    (Facts("Darwin", "arm64"), "PYPI", "Metal (MPS)"),
    (Facts("Darwin", "x86_64"), "PYPI", "macOS"),
    (Facts("Linux"), "CPU", "no NVIDIA GPU found"),
    (Facts("Windows", "AMD64"), "CPU", "no NVIDIA GPU found"),
    (Facts("Linux", "aarch64"), "CPU", "several GB"),
    (Facts("Linux", cuda=(13, 1), **H100), "CU130", "CUDA up to 13.1"),
    (Facts("Linux", cuda=(13, 0), **H100), "CU130", "NVIDIA H100 80GB HBM3 with driver 570.124.06"),
    (Facts("Linux", cuda=(12, 9), **H100), "CU128", "CUDA up to 12.9"),
    (Facts("Windows", cuda=(12, 8), gpu="NVIDIA GeForce RTX 4090", driver="572.16"), "CU128", "RTX 4090"),
    (Facts("Linux", cuda=(12, 7), **H100), "CU126", "12.7"),
    (Facts("Linux", cuda=(12, 6), **H100), "CU126", "12.6"),
    (Facts("Linux", cuda=(12, 2), **H100), "CU118", "12.2"),
    (Facts("Linux", cuda=(11, 8), **H100), "CU118", "11.8"),
    (Facts("Linux", cuda=(11, 4), **H100), "CPU", "update the NVIDIA driver"),
    (Facts("Linux", gpu="Tesla T4", driver="535"), "CPU", "shows no CUDA version"),
    (Facts("Linux", nvidia_problem="nvidia-smi failed: NVIDIA-SMI has failed because it couldn't communicate"), "CPU",
     "fix the NVIDIA driver"),
]


@pytest.mark.parametrize("facts, build, words", TABLE)
def test_the_build_fits_the_machine(facts, build, words):
    choice = choose(facts)
    assert choice.build == build, choice
    assert words in choice.why and choice.label in choice.text() and words in choice.text()
    # A CUDA build never needs a newer CUDA than the driver runs.
    needed = BUILDS[choice.build][2]
    assert needed is None or (facts.cuda is not None and needed <= facts.cuda)


@pytest.mark.parametrize("override", [o for o in OVERRIDES if o != "AUTO"])
def test_the_user_s_override_wins(override):
    choice = choose(Facts("Linux", cuda=(12, 8), **H100), override)
    assert choice.build == override and "preferences" in choice.why
    expected = BUILDS[override][1]
    assert choice.pip_args() == (["torch", "--index-url", expected] if expected else [])
    with pytest.raises(ValueError, match="unknown torch build"):
        choose(Facts("Linux"), "CU999")


SMI_TABLE = """+-----------------------------------------------------------------------------------------+
| NVIDIA-SMI 570.124.06             Driver Version: 570.124.06     CUDA Version: 12.8     |
|-----------------------------------------+------------------------+----------------------+
"""


def fake_run(outputs):
    def run(cmd, **kw):
        out, code = outputs[tuple(cmd[:2]) if len(cmd) > 1 else (cmd[0],)]
        return subprocess.CompletedProcess(cmd, code, out, "")

    return run


def test_detect_reads_nvidia_smi():
    run = fake_run({("nvidia-smi", "--query-gpu=name,driver_version"): ("NVIDIA H100 80GB HBM3, 570.124.06\n", 0),
                    ("nvidia-smi",): (SMI_TABLE, 0)})
    facts = detect(run=run, which=lambda name: "/usr/bin/nvidia-smi", system="Linux", machine="x86_64")
    assert facts == Facts("Linux", "x86_64", "NVIDIA H100 80GB HBM3", "570.124.06", (12, 8))
    assert choose(facts).build == "CU128"
    # No nvidia-smi, macOS, a failing driver.
    assert detect(run=run, which=lambda name: None, system="Linux", machine="x86_64") == Facts("Linux", "x86_64")
    assert detect(run=run, which=lambda name: "/x", system="Darwin", machine="arm64").gpu is None
    broken = fake_run({("nvidia-smi", "--query-gpu=name,driver_version"): ("NVIDIA-SMI has failed\n", 9), ("nvidia-smi",): ("", 9)})
    facts = detect(run=broken, which=lambda name: "/x", system="Linux", machine="x86_64")
    assert "NVIDIA-SMI has failed" in facts.nvidia_problem and choose(facts).build == "CPU"


def test_the_environment_installs_the_chosen_torch_first(tmp_path):
    choice = choose(Facts("Linux", cuda=(12, 8), **H100))
    builder = EnvironmentBuilder(tmp_path / "env", Path("backend"), base_python="/usr/bin/python3", torch=choice)
    titles = [title for title, _ in builder.steps()]
    assert titles[0] == "Creating the environment" and titles[-1] == "Installing the backend"
    assert titles[1] == f"Installing the torch CUDA 12.8 build: {choice.why}"
    assert builder.steps()[1][1][-3:] == ["torch", "--index-url", "https://download.pytorch.org/whl/cu128"]
    # PyPI's default (macOS) needs no step of its own; no choice at all is the old behaviour.
    mac = EnvironmentBuilder(tmp_path / "env", Path("backend"), base_python="/usr/bin/python3", torch=choose(Facts("Darwin")))
    assert len(mac.steps()) == 2
    assert len(EnvironmentBuilder(tmp_path / "env", Path("backend"), base_python="/usr/bin/python3").steps()) == 2
