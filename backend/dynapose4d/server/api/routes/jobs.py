"""A job's life cycle: ``/jobs`` (list, create), ``/jobs/{job_id}`` (status, delete), and its
``cancel`` and ``resume``."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request

from ....pipeline import INPUTS, SETTINGS
from ...config import ServerConfig
from ...frames import SnapshotFrames
from ...runner.manager import JobManager
from ..schemas import Deleted, JobList, JobStatus
from ..uploads import receive_job
from .common import errors, warm_imports


def jobs_router(config: ServerConfig, manager: JobManager, frames: SnapshotFrames, file_checks: asyncio.Semaphore) -> APIRouter:
    """``file_checks`` bounds the uploads checked at once; ``frames`` forgets a deleted job."""
    router = APIRouter()

    @router.get("/jobs", response_model=JobList, responses=errors())
    async def list_jobs() -> dict:
        """Every job, oldest first (finished ones stay listed until deleted)."""
        jobs = sorted(manager.jobs.values(), key=lambda j: j.record.created_at)
        return {"jobs": [manager.status(job) for job in jobs]}

    @router.post(
        "/jobs",
        status_code=201,
        response_model=JobStatus,
        responses=errors(400, 408, 413, 415, 422, 507),
        openapi_extra=_create_job_openapi(),
    )
    async def create_job(request: Request) -> dict:
        """Create a job from a multipart form: ``kind``, ``settings`` (JSON object) and one file per
        input role of the kind. The job is queued and runs when a slot is free."""
        # The upload checks need torch and OpenCV: wait for them off the event loop (an import
        # on the loop would stall every other request, event streams included).
        await asyncio.to_thread(warm_imports)
        job = await manager.create(lambda staging: receive_job(request, staging, config.limits, file_checks))
        return manager.status(job)

    @router.get("/jobs/{job_id}", response_model=JobStatus, responses=errors(404))
    async def job_status(job_id: str) -> dict:
        """State, stage, progress, loss terms, ETA, snapshot version and frames available."""
        return manager.status(manager.get(job_id))

    @router.delete("/jobs/{job_id}", response_model=Deleted, responses=errors(404))
    async def delete_job(job_id: str) -> dict:
        """Delete a job and its files (a running job is stopped first)."""
        job = manager.get(job_id)
        await manager.delete(job)
        frames.forget(job_id)
        return {"id": job_id, "deleted": True}

    @router.post("/jobs/{job_id}/cancel", response_model=JobStatus, responses=errors(404, 409))
    async def cancel_job(job_id: str) -> dict:
        """Stop a queued or running job. Answers once the worker has stopped (within about 2 s;
        a worker that does not stop by itself is killed). The last checkpoint is kept."""
        job = manager.get(job_id)
        await manager.cancel(job)
        return manager.status(job)

    @router.post("/jobs/{job_id}/resume", response_model=JobStatus, responses=errors(404, 409))
    async def resume_job(job_id: str) -> dict:
        """Queue a failed, cancelled or interrupted job again; it continues from its last checkpoint."""
        job = manager.get(job_id)
        await manager.resume(job)
        return manager.status(job)

    return router


def _create_job_openapi() -> dict:
    """The multipart form of ``POST /jobs`` for the OpenAPI spec (the route reads the request
    itself, so FastAPI cannot describe it): ``kind``, ``settings`` and one file per input role."""
    roles: dict[str, list[str]] = {}
    for kind, spec in INPUTS.items():
        for role, (required, suffixes) in spec.items():
            need = "required" if required else "optional"
            roles.setdefault(role, []).append(f"{kind} ({need}; {', '.join(suffixes)})")
    properties = {
        "kind": {"type": "string", "enum": list(SETTINGS), "description": "the job kind (see GET /v1/kinds)"},
        "settings": {
            "type": "string",
            "description": 'a JSON object of settings, e.g. {"iterations": 200}; unknown names, wrong types and out-of-range values are refused',
        },
    }
    for role, uses in sorted(roles.items()):
        properties[role] = {"type": "string", "format": "binary", "description": "input file for " + "; ".join(uses)}
    schema = {"type": "object", "required": ["kind"], "properties": properties}
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}}
