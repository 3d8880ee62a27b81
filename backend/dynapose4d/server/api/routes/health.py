"""``GET /health`` and ``GET /kinds``: the service, its device, and what jobs it takes."""

from __future__ import annotations

import asyncio
import os

from fastapi import APIRouter

from .... import __version__
from ....pipeline import INPUTS, SETTINGS
from ...config import ServerConfig
from ...probe import DeviceProbe
from ...runner.manager import JobManager
from ..schemas import Health, KindInfo
from ..uploads import file_limit
from .common import API, errors, warm_imports


def health_router(config: ServerConfig, manager: JobManager, probe: DeviceProbe) -> APIRouter:
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

    return router
