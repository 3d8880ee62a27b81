"""Which build of torch the backend environment gets: the machine's facts in, a choice with its
reason out. No bpy here.

PyPI's torch is a multi-GB CUDA build on Linux whatever the machine has, and a CUDA build must
not be newer than what the NVIDIA driver supports. So :func:`detect` gathers the facts (the
platform, and ``nvidia-smi``'s GPU, driver and the highest CUDA version that driver runs) and
:func:`choose` picks from :data:`BUILDS` by the table in its docstring. The user may override the
choice (the preferences' Torch Build); the progress text says which build and why.
"""

from __future__ import annotations

import platform
import re
import shutil
import subprocess
from dataclasses import dataclass

INDEX = "https://download.pytorch.org/whl/"

# id -> (label, index URL or None for PyPI's default, the CUDA version it needs or None)
BUILDS = {
    "CPU": ("CPU", INDEX + "cpu", None),
    "CU118": ("CUDA 11.8", INDEX + "cu118", (11, 8)),
    "CU126": ("CUDA 12.6", INDEX + "cu126", (12, 6)),
    "CU128": ("CUDA 12.8", INDEX + "cu128", (12, 8)),
    "CU130": ("CUDA 13.0", INDEX + "cu130", (13, 0)),
    "PYPI": ("PyPI's default", None, None),
}
CUDA_NEWEST_FIRST = ("CU130", "CU128", "CU126", "CU118")
OVERRIDES = ("AUTO",) + tuple(BUILDS)


@dataclass(frozen=True)
class Facts:
    """What decides the build. ``cuda``: the highest CUDA version the NVIDIA driver supports
    (``nvidia-smi``'s "CUDA Version"), None without a working NVIDIA driver."""

    system: str  # platform.system(): Linux, Windows, Darwin
    machine: str = "x86_64"
    gpu: str | None = None
    driver: str | None = None
    cuda: tuple[int, int] | None = None
    nvidia_problem: str | None = None  # nvidia-smi exists but failed


@dataclass(frozen=True)
class TorchChoice:
    build: str  # a key of BUILDS
    why: str

    @property
    def label(self) -> str:
        return BUILDS[self.build][0]

    @property
    def index_url(self) -> str | None:
        return BUILDS[self.build][1]

    def pip_args(self) -> list[str]:
        """``pip install`` arguments for torch alone (empty: leave it to the backend's install)."""
        return ["torch", "--index-url", self.index_url] if self.index_url else []

    def text(self) -> str:
        return f"torch {self.label} build: {self.why}"


def detect(run=subprocess.run, which=shutil.which, system: str | None = None, machine: str | None = None) -> Facts:
    """The facts of this machine (``run``/``which``: for tests)."""
    system = system or platform.system()
    machine = machine or platform.machine()
    if system == "Darwin" or which("nvidia-smi") is None:
        return Facts(system, machine)
    try:
        query = run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                    capture_output=True, text=True, timeout=20)
        table = run(["nvidia-smi"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError) as exc:
        return Facts(system, machine, nvidia_problem=f"nvidia-smi could not run ({exc})")
    if query.returncode != 0 or table.returncode != 0:
        said = (query.stdout + query.stderr).strip().splitlines()
        return Facts(system, machine, nvidia_problem=f"nvidia-smi failed: {said[0] if said else 'no output'}")
    first = query.stdout.strip().splitlines()[0] if query.stdout.strip() else ","
    gpu, _, driver = (part.strip() for part in first.rpartition(","))
    found = re.search(r"CUDA Version:\s*(\d+)\.(\d+)", table.stdout)
    cuda = (int(found.group(1)), int(found.group(2))) if found else None
    return Facts(system, machine, gpu or None, driver or None, cuda)


def choose(facts: Facts, override: str = "AUTO") -> TorchChoice:
    """The build for ``facts``:

    ==========================================  ==============================================
    macOS                                        PyPI's default (it has Apple's Metal, MPS)
    an NVIDIA driver that supports CUDA X.Y      the newest CUDA build not newer than X.Y
    a driver older than the oldest CUDA build    CPU (update the driver for the GPU)
    nvidia-smi present but failing               CPU (a driver problem: fix it, then rebuild)
    no NVIDIA GPU (Linux, Windows)               CPU (not PyPI's multi-GB CUDA build on Linux)
    ==========================================  ==============================================

    ``override``: one of :data:`OVERRIDES` (AUTO: the table)."""
    if override != "AUTO":
        if override not in BUILDS:
            raise ValueError(f"unknown torch build {override!r}; choose one of {', '.join(OVERRIDES)}")
        return TorchChoice(override, "chosen in the add-on's preferences")
    if facts.system == "Darwin":
        return TorchChoice("PYPI", "macOS: PyPI's torch has Apple's Metal (MPS) support built in")
    if facts.nvidia_problem:
        return TorchChoice("CPU", f"{facts.nvidia_problem}; fix the NVIDIA driver, then create the environment again for the GPU")
    if facts.cuda is None:
        where = "no NVIDIA GPU found (no nvidia-smi)" if facts.gpu is None else f"{facts.gpu}: nvidia-smi shows no CUDA version"
        return TorchChoice("CPU", f"{where}; the CPU build is ~200 MB where a CUDA build is several GB")
    gpu = f"{facts.gpu} with driver {facts.driver}" if facts.gpu else "an NVIDIA GPU"
    for build in CUDA_NEWEST_FIRST:
        if BUILDS[build][2] <= facts.cuda:
            return TorchChoice(build, f"{gpu} supports CUDA up to {facts.cuda[0]}.{facts.cuda[1]}")
    return TorchChoice("CPU", f"{gpu} supports only CUDA {facts.cuda[0]}.{facts.cuda[1]}, older than any CUDA build of "
                              "current torch: update the NVIDIA driver, then create the environment again")
