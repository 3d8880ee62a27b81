"""Device, GPU and model information for ``/health``, and the setup check for ``/setup``.

:func:`probe` runs as ``python -m dynapose4d.server.probe`` (one JSON line), in its own
short-lived process so the server never creates a CUDA context of its own (that would hold GPU
memory the worker needs for the whole life of the server); :class:`DeviceProbe` runs it from the
server and caches the answer. :class:`SetupProbe` runs ``dynapose4d selftest --quick --json`` the
same way, one at a time, for the add-on's Check Setup when the backend is on another machine.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

PROBE_MAX_AGE_S = 60.0


class DeviceProbe:
    """Device, GPU and model availability, probed in a subprocess and cached."""

    def __init__(self):
        self.info: dict | None = None
        self.error: str | None = None
        self.at = 0.0
        self._task: asyncio.Task | None = None

    def refresh(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        try:
            self.info, self.error = await asyncio.to_thread(run_json, ["-m", "dynapose4d.server.probe"], 120), None
        except Exception as exc:  # a broken probe must not break health
            self.error = f"device probe failed: {type(exc).__name__}: {exc}"
        self.at = time.monotonic()

    async def get(self, wait_s: float = 30.0) -> tuple[dict | None, str | None]:
        first = self.info is None and self.error is None
        if first and self._task is not None and not self._task.done():
            # Only the first answer waits; later ones use the cached numbers while a refresh
            # runs (it imports torch: seconds on a busy machine).
            try:
                await asyncio.wait_for(asyncio.shield(self._task), wait_s)
            except asyncio.TimeoutError:
                pass
        if time.monotonic() - self.at > PROBE_MAX_AGE_S:
            self.refresh()  # answer with what we have; the next call sees the fresh numbers
        return self.info, self.error


class SetupProbe:
    """The backend's self-test (models loaded, not sampled) on this machine; one run at a time,
    its report kept for ``max_age_s`` so that repeated clicks do not load the models again."""

    def __init__(self, timeout_s: float = 900.0, max_age_s: float = 30.0):
        self.timeout_s, self.max_age_s = timeout_s, max_age_s
        self.report: dict | None = None
        self.at = 0.0
        self._task: asyncio.Task | None = None

    async def get(self) -> dict:
        """The self-test's report (``cli.selftest.setup_report``); raises RuntimeError when the
        self-test could not run or ended without one."""
        if self.report is not None and time.monotonic() - self.at < self.max_age_s:
            return self.report
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())
        return await asyncio.shield(self._task)  # a client that hangs up does not stop the others' run

    async def _run(self) -> dict:
        command = ["-m", "dynapose4d", "selftest", "--quick", "--json"]
        self.report = await asyncio.to_thread(run_json, command, self.timeout_s, (0, 1))  # 1: a check failed
        self.at = time.monotonic()
        return self.report


def run_json(args: list[str], timeout_s: float, exit_codes=(0,)) -> dict:
    """Run ``python args...`` with this package importable; its last stdout line, as JSON."""
    package_root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p))
    try:
        done = subprocess.run([sys.executable, *args], capture_output=True, text=True, errors="replace", timeout=timeout_s,
                              env=env, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"no answer after {timeout_s:.0f} s") from None
    lines = done.stdout.strip().splitlines()
    if done.returncode not in exit_codes or not lines or not lines[-1].startswith("{"):
        tail = (done.stderr or done.stdout or "").strip().splitlines()[-1:]
        raise RuntimeError(f"exit status {done.returncode}: {tail[0] if tail else 'no output'}")
    return json.loads(lines[-1])


def probe() -> dict:
    import torch

    from .. import __version__
    from ..weights import list_models

    info: dict = {"version": __version__, "torch": torch.__version__, "device": "cpu", "gpu": None}
    if torch.cuda.is_available():
        free, total = torch.cuda.mem_get_info(0)
        info["device"] = "cuda"
        info["gpu"] = {
            "name": torch.cuda.get_device_name(0),
            "memory_total_mb": round(total / 2**20),
            "memory_free_mb": round(free / 2**20),
            "count": torch.cuda.device_count(),
        }
    models = []
    for status in list_models():
        spec = status.spec
        models.append(
            {
                "name": spec.name,
                "title": spec.title,
                "kind": spec.kind,
                "available": status.available,
                "license": spec.license_name,
                "gated": spec.gated,
            }
        )
    info["models"] = models
    return info


if __name__ == "__main__":
    print(json.dumps(probe()))
    sys.exit(0)
