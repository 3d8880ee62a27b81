"""``GET /health``, ``GET /kinds`` and ``GET /setup``: the service, its device, what jobs it takes,
and its self-test."""

from __future__ import annotations

import asyncio
import os

from fastapi import APIRouter, HTTPException

from .... import __version__
from ....pipeline import INPUTS, SETTINGS
from ...config import ServerConfig
from ...probe import DeviceProbe, SetupProbe
from ...runner.manager import JobManager
from ..schemas import Health, KindInfo
from ..uploads import file_limit
from .common import API, errors, warm_imports


def health_router(config: ServerConfig, manager: JobManager, probe: DeviceProbe, setup: SetupProbe) -> APIRouter:
    router = APIRouter()

    @router.get("/health", response_model=Health, responses=errors())
    async def health() -> dict:
        """Version, device, GPU name and memory, which models are available, job counts."""
        info, error = await probe.get()
        states = [job.record.state for job in manager.jobs.values()]
        out = {
            "status": "ok",
            "version": __version__,
            "api": API.strip("/"),
            "pid": os.getpid(),
            "max_jobs": config.max_jobs,
            "jobs": {"queued": states.count("queued"), "running": states.count("running"), "total": len(states)},
            "probe_error": error,
        }
        if info:
            out.update({k: info.get(k) for k in ("device", "gpu", "torch")})
            out["models"] = info.get("models", [])
        return out

    @router.get("/kinds", response_model=dict[str, KindInfo], responses=errors())
    async def kinds() -> dict:
        """Job kinds with their settings (types, ranges, defaults) and input files."""
        await asyncio.to_thread(warm_imports)
        out = {}
        for kind, settings in SETTINGS.items():
            inputs = {}
            for role, (required, suffixes) in INPUTS.get(kind, {}).items():
                limit = max((file_limit(s, config.limits) for s in suffixes), default=config.limits.max_request_bytes)
                inputs[role] = {"required": required, "suffixes": list(suffixes), "max_bytes": limit}
            out[kind] = {"settings": {s.name: s.describe() for s in settings}, "inputs": inputs}
        return out

    @router.get("/setup", responses=errors(503))
    async def setup_check() -> dict:
        """The backend's self-test on its own machine (``dynapose4d selftest --quick --json``):
        device and GPU, the renderer in use and why, which models load, and what to do about each
        problem. Takes seconds to minutes (the models are loaded); one run at a time, its answer
        kept for 30 s."""
        try:
            return await setup.get()
        except RuntimeError as exc:
            raise HTTPException(503, f"the self-test could not run: {exc}") from None

    return router
