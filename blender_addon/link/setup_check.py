"""Check Setup: run the backend's self-test and say what it found in words. No bpy here.

:class:`SetupCheck` runs ``python -m dynapose4d selftest --quick --json`` with the local backend's
interpreter on a thread (the models are loaded, not sampled); :func:`describe` turns its report
(``dynapose4d.cli.selftest.setup_report``) into lines for the preferences: the device and GPU,
the renderer in use and why, which models load, and what to do about each problem.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from dataclasses import dataclass, field
from typing import Callable

TIMEOUT_S = 900.0
MODEL_CHECKS = ("Zero-1-to-3", "Stable Video Diffusion")


@dataclass(frozen=True)
class Line:
    level: str  # OK, WARNING, ERROR, INFO (the preferences pick an icon by it)
    text: str


def describe(report: dict) -> list[Line]:
    """The self-test's report (its JSON) as lines a user reads top to bottom."""
    lines = [_device_line(report)]
    for check in report.get("checks", []):
        name, status = check.get("name", "?"), check.get("status")
        if name.startswith("renderer: gsplat") and status == "SKIP" and report.get("device") != "cuda":
            if check.get("fix"):  # no GPU: why, and what to do (a CPU build of torch beside an NVIDIA driver)
                lines.append(Line("INFO", f"What to do: {check['fix']}"))
    lines.append(_renderer_line(report))
    for check in report.get("checks", []):
        name, status = check.get("name", "?"), check.get("status")
        if name.startswith("renderer:") and (status == "PASS" or (status == "SKIP" and report.get("device") != "cuda")):
            continue  # the device and renderer lines say it; only problems are worth a line
        level = {"PASS": "OK", "FAIL": "ERROR"}.get(status, "WARNING")
        lines.append(Line(level, f"{name}: {_status_words(check)}"))
        if check.get("fix"):
            lines.append(Line("INFO", f"What to do: {check['fix']}"))
    lines.append(_summary(report))
    return lines


def _device_line(report: dict) -> Line:
    versions = f"torch {report.get('torch')}" + (f", CUDA {report['cuda']}" if report.get("cuda") else "")
    if report.get("device") == "cuda":
        return Line("OK", f"GPU: {report.get('gpu')} ({versions})")
    return Line("WARNING", f"No GPU in use: jobs run on the CPU ({versions})")


def _renderer_line(report: dict) -> Line:
    renderer = report.get("renderer") or {}
    name, why = renderer.get("name"), renderer.get("why", "")
    slow = name == "torch" or (report.get("device") == "cuda" and name != "gsplat")
    words = {"gsplat": "gsplat", "numba": "the CPU rasteriser", "torch": "the PyTorch fallback"}.get(name, name)
    return Line("WARNING" if slow else "OK", f"Renderer: {words} ({why})")


def _status_words(check: dict) -> str:
    status, detail = check.get("status"), check.get("detail", "")
    if status == "SKIP" and check.get("name", "").startswith(MODEL_CHECKS):
        # The self-test says which model and hub id; the line's name already does.
        return "not on the backend's machine yet" if "is not available" in detail else f"not available ({detail})"
    if status == "NOT-REAL":
        return f"test weights only ({detail})"
    return detail or status


def _summary(report: dict) -> Line:
    models = [c for c in report.get("checks", []) if c.get("name", "").startswith(MODEL_CHECKS)]
    broken = [c for c in report.get("checks", []) if c.get("status") == "FAIL"]
    if broken:
        return Line("ERROR", f"{len(broken)} check(s) failed: see What to do above")
    if models and all(c.get("status") == "PASS" for c in models):
        return Line("OK", "Ready: the Demo, Animate and Generate can run")
    return Line("INFO", "The Demo and Animate can run; Generate needs the models above")


@dataclass
class CheckState:
    state: str = "idle"  # idle, running, done, failed
    lines: list[Line] = field(default_factory=list)
    error: str = ""


class SetupCheckError(RuntimeError):
    """The self-test could not run, or ended without a report."""


def local_report(python: str, env: dict | None = None, timeout_s: float = TIMEOUT_S) -> dict:
    """The self-test of the backend installed at ``python``, run here (blocking)."""
    run_env = dict(os.environ)
    run_env.pop("PYTHONPATH", None)  # Blender's paths must not leak into the backend's interpreter
    run_env.pop("PYTHONHOME", None)
    run_env.update(env or {})
    command = [python, "-m", "dynapose4d", "selftest", "--quick", "--json"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, errors="replace", env=run_env, timeout=timeout_s,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError) as exc:
        raise SetupCheckError(f"could not run the backend's self-test with {python}: {exc}") from None
    line = next((line for line in reversed(done.stdout.splitlines()) if line.startswith("{")), None)
    if line is None:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-8:])
        raise SetupCheckError(f"the self-test ended without a report (exit status {done.returncode}):\n{tail}")
    try:
        return json.loads(line)
    except ValueError as exc:
        raise SetupCheckError(f"the self-test's report is not JSON: {exc}") from None


class SetupCheck:
    """A self-test report from ``source`` (:func:`local_report`, or a remote backend's
    ``GET /setup``), fetched on a thread; :meth:`snapshot` for the panel."""

    def __init__(self, source: Callable[[], dict]):
        self.source = source
        self._state = CheckState()
        self._lock = threading.Lock()

    def start(self) -> "SetupCheck":
        self._state = CheckState("running")
        threading.Thread(target=self._run, name="dynapose4d-setup-check", daemon=True).start()
        return self

    def snapshot(self) -> CheckState:
        with self._lock:
            return CheckState(self._state.state, list(self._state.lines), self._state.error)

    def _run(self) -> None:
        try:
            result = CheckState("done", describe(self.source()))
        except Exception as exc:  # any failure is shown in the preferences, never raised on a thread
            result = CheckState("failed", error=str(exc) or type(exc).__name__)
        with self._lock:
            self._state = result
