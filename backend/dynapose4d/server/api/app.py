"""The HTTP API (``/v1``): routes only; the work lives in the job manager, uploads, frames and
the device probe.

Every route needs the bearer token and a loopback Host header (:mod:`.auth`). Errors are JSON
``{"detail": "..."}`` (:mod:`.errors`): 400 malformed request, 401 token, 403 Host, 404 no such
job / no snapshot yet / no such video candidate, 408 request body too slow, 409 wrong state for the action, 413 too large,
415 wrong file type, 422 invalid settings, inputs or parameters, 507 not enough disk space; an
unexpected failure is 500 with a request id that the server log shows beside the traceback.
"""

from __future__ import annotations

import asyncio
import json
import os
from contextlib import asynccontextmanager
from typing import Literal

from fastapi import APIRouter, FastAPI, Header, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, PlainTextResponse, Response, StreamingResponse

from ... import __version__
from ...pipeline import INPUTS, SETTINGS, JobError
from ...pipeline import candidates as video_candidates
from ..config import ServerConfig
from ..frames import MAX_FPS, MIN_FPS, BadFrameRequest, NoSnapshot, SnapshotFrames, SnapshotGone
from ..limits import TooMuchWork
from ..mesh import MESH_MEDIA_TYPE, SkinnedMeshes
from ..probe import DeviceProbe
from ..results import NoResults, result_zip
from ..runner.manager import Job, JobConflict, JobManager, read_log_tail
from ..runner.store import FINAL_STATES, JobStore, UnknownJob
from .auth import AccessGuard
from .errors import RequestIds, install_error_handlers
from .schemas import CandidateList, Deleted, ErrorBody, Health, JobList, JobStatus, KeypointTracks, KindInfo
from .slowclients import BodyTimeout
from .uploads import file_limit, receive_job

API = "/v1"
FRAME_MEDIA_TYPE = "application/octet-stream"
KEEPALIVE_S = 15.0

_ERRORS = {
    status: {"model": ErrorBody, "description": text}
    for status, text in {
        400: "malformed request",
        401: "missing or wrong token",
        403: "Host header refused",
        404: "no such job, or nothing to show yet",
        408: "the request body stalled (slow client)",
        409: "the job is in the wrong state for this",
        413: "upload too large, or a result request over the server's memory limit per request",
        415: "wrong content or file type",
        422: "invalid settings, inputs or parameters",
        507: "not enough disk space",
    }.items()
}


def _errors(*codes: int, json_route: bool = True) -> dict:
    """Documented error responses. Routes whose success is not JSON (frames, zip, text, SSE)
    still answer errors in JSON, so say so explicitly (FastAPI would use the route's type)."""
    out = {code: _ERRORS[code] for code in (401, 403, *codes)}
    if not json_route:
        ref = {"schema": {"$ref": "#/components/schemas/ErrorBody"}}
        out = {code: {"description": r["description"], "content": {"application/json": ref}} for code, r in out.items()}
    return out


def _warm_imports() -> None:
    """Import the heavy modules (and load the compiled skinning kernel) once at start-up, not
    inside the first upload or frame request."""
    from ... import dynamic4d  # noqa: F401
    from ...imaging import images  # noqa: F401
    from ...video import clip  # noqa: F401
    from ...deform import skinning_numba

    skinning_numba.warm_up()


def _create_job_openapi() -> dict:
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


def build_api(config: ServerConfig, *, on_ready=None, on_shutdown=None, say=print, executor=None) -> FastAPI:
    """The FastAPI application (without the access guard; :func:`create_app` adds it).
    ``executor``: where workers run (default: the one ``config.executor`` names)."""
    store = JobStore(config.jobs_dir)
    manager = JobManager(store, config, say=say, executor=executor)
    frames = SnapshotFrames(frame_cache_bytes=config.frame_cache_bytes, work_bytes=config.work_memory_bytes)
    meshes = SkinnedMeshes(frames)
    probe = DeviceProbe()
    file_checks = asyncio.Semaphore(config.limits.max_file_checks)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        manager.start()
        probe.refresh()
        # In the background: the server answers at once, and the first upload or frame request
        # finds torch and OpenCV already loaded.
        warm = asyncio.get_running_loop().run_in_executor(None, _warm_imports)
        if on_ready is not None:
            on_ready()
        try:
            yield
        finally:
            await warm
            await manager.shutdown()
            if on_shutdown is not None:
                on_shutdown()

    app = FastAPI(
        title="DynaPose4D backend",
        version=__version__,
        description="Local job server: image to 4D Gaussians, streamed while it trains. Auth: 'Authorization: Bearer <token>' "
        "with the token from the server's address file. Frame wire format: docs/wire-format.md.",
        openapi_url=f"{API}/openapi.json",
        docs_url=None,  # the interactive pages load scripts from the internet
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.manager = manager
    router = APIRouter(prefix=API)

    # -- errors -----------------------------------------------------------------------------------
    install_error_handlers(
        app,
        {
            UnknownJob: 404,
            NoSnapshot: 404,
            JobConflict: 409,
            SnapshotGone: 409,
            NoResults: 409,
            BadFrameRequest: 422,
            TooMuchWork: 413,
            JobError: 422,
            video_candidates.CandidateError: 404,
        },
        config.jobs_dir,
    )

    # -- service ----------------------------------------------------------------------------------
    @router.get("/health", response_model=Health, responses=_errors())
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

    @router.get("/kinds", response_model=dict[str, KindInfo], responses=_errors())
    async def kinds() -> dict:
        """Job kinds with their settings (types, ranges, defaults) and input files."""
        await asyncio.to_thread(_warm_imports)
        out = {}
        for kind, settings in SETTINGS.items():
            inputs = {}
            for role, (required, suffixes) in INPUTS.get(kind, {}).items():
                limit = max((file_limit(s, config.limits) for s in suffixes), default=config.limits.max_request_bytes)
                inputs[role] = {"required": required, "suffixes": list(suffixes), "max_bytes": limit}
            out[kind] = {"settings": {s.name: s.describe() for s in settings}, "inputs": inputs}
        return out

    # -- jobs -------------------------------------------------------------------------------------
    @router.get("/jobs", response_model=JobList, responses=_errors())
    async def list_jobs() -> dict:
        """Every job, oldest first (finished ones stay listed until deleted)."""
        jobs = sorted(manager.jobs.values(), key=lambda j: j.record.created_at)
        return {"jobs": [manager.status(job) for job in jobs]}

    @router.post(
        "/jobs",
        status_code=201,
        response_model=JobStatus,
        responses=_errors(400, 408, 413, 415, 422, 507),
        openapi_extra=_create_job_openapi(),
    )
    async def create_job(request: Request) -> dict:
        """Create a job from a multipart form: ``kind``, ``settings`` (JSON object) and one file per
        input role of the kind. The job is queued and runs when a slot is free."""
        # The upload checks need torch and OpenCV: wait for them off the event loop (an import
        # on the loop would stall every other request, event streams included).
        await asyncio.to_thread(_warm_imports)
        job = await manager.create(lambda staging: receive_job(request, staging, config.limits, file_checks))
        return manager.status(job)

    @router.get("/jobs/{job_id}", response_model=JobStatus, responses=_errors(404))
    async def job_status(job_id: str) -> dict:
        """State, stage, progress, loss terms, ETA, snapshot version and frames available."""
        return manager.status(manager.get(job_id))

    @router.delete("/jobs/{job_id}", response_model=Deleted, responses=_errors(404))
    async def delete_job(job_id: str) -> dict:
        """Delete a job and its files (a running job is stopped first)."""
        job = manager.get(job_id)
        await manager.delete(job)
        frames.forget(job_id)
        return {"id": job_id, "deleted": True}

    @router.post("/jobs/{job_id}/cancel", response_model=JobStatus, responses=_errors(404, 409))
    async def cancel_job(job_id: str) -> dict:
        """Stop a queued or running job. Answers once the worker has stopped (within about 2 s;
        a worker that does not stop by itself is killed). The last checkpoint is kept."""
        job = manager.get(job_id)
        await manager.cancel(job)
        return manager.status(job)

    @router.post("/jobs/{job_id}/resume", response_model=JobStatus, responses=_errors(404, 409))
    async def resume_job(job_id: str) -> dict:
        """Queue a failed, cancelled or interrupted job again; it continues from its last checkpoint."""
        job = manager.get(job_id)
        await manager.resume(job)
        return manager.status(job)

    @router.get("/jobs/{job_id}/log", response_class=PlainTextResponse, responses=_errors(404, 422, json_route=False))
    async def job_log(job_id: str, lines: int = Query(200, ge=1, le=10_000)) -> str:
        """The last lines of the worker's output (tracebacks of failed jobs land here)."""
        job = manager.get(job_id)
        return await asyncio.to_thread(read_log_tail, job.folder.worker_log, lines)

    @router.get(
        "/jobs/{job_id}/events",
        response_class=StreamingResponse,
        responses={
            200: {"content": {"text/event-stream": {}}, "description": "server-sent events"},
            **_errors(404, 422, json_route=False),
        },
    )
    async def job_events(
        job_id: str,
        after: int = Query(-1, ge=-1, description="send only events with a larger id (Last-Event-ID works too)"),
        last_event_id: str | None = Header(None),
    ):
        """Server-sent events: ``status`` (the job status, first and whenever the state changes),
        then every worker event (``worker``, ``stage``, ``progress``, ``snapshot``, ``log``) with
        its id; ``end`` when the job has stopped and everything was sent."""
        job = manager.get(job_id)
        if last_event_id and last_event_id.strip().isdigit() and len(last_event_id.strip()) <= 18:  # event ids fit int64
            after = max(after, int(last_event_id))
        return StreamingResponse(
            _event_stream(manager, job, after),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    # -- results ----------------------------------------------------------------------------------
    @router.get(
        "/jobs/{job_id}/frames/{index}",
        response_class=Response,
        responses={
            200: {"content": {FRAME_MEDIA_TYPE: {}}, "description": "one frame in the wire format (docs/wire-format.md)"},
            **_errors(404, 409, 422, json_route=False),
        },
    )
    async def get_frame(
        job_id: str,
        index: int = PathParam(..., ge=0, le=100_000),
        fps: float | None = Query(None, ge=MIN_FPS, le=MAX_FPS, description="frame rate to sample at (default: the driving video's)"),
        frame_count: int | None = Query(None, ge=1, le=10_000, description="frames in the sequence (default: the clip once at fps)"),
        mode: Literal["clamp", "loop", "pingpong"] = Query("clamp", description="time past the clip's end"),
        dtype: Literal["float32", "float16"] = Query("float32"),
        version: int | None = Query(None, ge=0, description="refuse (409) unless this is the latest snapshot"),
    ) -> Response:
        """Frame ``index`` of the latest snapshot, sampled at ``fps`` over ``frame_count`` frames."""
        job = manager.get(job_id)
        data, snapshot = await asyncio.to_thread(
            frames.frame, job_id, job.dir, index, fps=fps, frame_count=frame_count, mode=mode, dtype=dtype, version=version
        )
        headers = {"X-Snapshot-Version": str(snapshot.get("version", "")), "X-Frame-Format": "dynapose4d.frame/1"}
        return Response(content=data, media_type=FRAME_MEDIA_TYPE, headers=headers)

    @router.get(
        "/jobs/{job_id}/mesh",
        response_class=Response,
        responses={
            200: {"content": {MESH_MEDIA_TYPE: {}}, "description": "the skinned mesh (.npz, docs/wire-format.md)"},
            **_errors(404, 409, 422, json_route=False),
        },
    )
    async def get_mesh(
        job_id: str,
        fps: float | None = Query(None, ge=MIN_FPS, le=MAX_FPS),
        frame_count: int | None = Query(None, ge=1, le=10_000),
        mode: Literal["clamp", "loop", "pingpong"] = Query("clamp"),
        version: int | None = Query(None, ge=0),
        max_bones: int = Query(48, ge=1, le=256, description="at most this many bones"),
        target_faces: int = Query(20_000, ge=100, le=1_000_000, description="faces after decimation"),
        resolution: int = Query(128, ge=16, le=384, description="density grid voxels along the object's longest side"),
    ) -> Response:
        """The latest snapshot as one mesh skinned to bones made from the control points."""
        job = manager.get(job_id)
        data, snapshot = await asyncio.to_thread(
            meshes.mesh, job_id, job.dir, fps=fps, frame_count=frame_count, mode=mode, version=version,
            max_bones=max_bones, target_faces=target_faces, resolution=resolution,
        )
        return Response(content=data, media_type=MESH_MEDIA_TYPE, headers={"X-Snapshot-Version": str(snapshot.get("version", ""))})

    @router.get("/jobs/{job_id}/keypoints", response_model=KeypointTracks, responses=_errors(404, 409, 422))
    async def get_keypoints(
        job_id: str,
        fps: float | None = Query(None, ge=MIN_FPS, le=MAX_FPS),
        frame_count: int | None = Query(None, ge=1, le=10_000),
        mode: Literal["clamp", "loop", "pingpong"] = Query("clamp"),
        version: int | None = Query(None, ge=0),
    ) -> dict:
        """All keypoint trajectories of the latest snapshot (world units, +Y up) and the skeleton."""
        job = manager.get(job_id)
        return await asyncio.to_thread(
            frames.keypoints, job_id, job.dir, fps=fps, frame_count=frame_count, mode=mode, version=version
        )

    @router.get(
        "/jobs/{job_id}/result",
        response_class=FileResponse,
        responses={
            200: {"content": {"application/zip": {}}, "description": "PLY sequence + sequence.json"},
            **_errors(404, 409, json_route=False),
        },
    )
    async def get_result(job_id: str):
        """The finished job's PLY sequence and its sidecar (plus job.json, metrics.json) as a zip."""
        job = manager.get(job_id)
        if job.record.state != "done":
            raise JobConflict(f"job {job_id} is {job.record.state}; results exist once it is done")
        async with job.result_lock:
            path = await asyncio.to_thread(result_zip, job.dir)
        return FileResponse(path, media_type="application/zip", filename=f"dynapose4d-{job_id}.zip")

    # -- driving-video candidates (generate; pipeline/candidates.py) -----------------------------
    @router.get("/jobs/{job_id}/candidates", response_model=CandidateList, responses=_errors(404))
    async def list_candidates(job_id: str) -> dict:
        """The job's driving-video candidates with their scores, which one drives the motion, and
        whether the job waits for a choice (state ``waiting``, setting ``choose_video=ask``)."""
        job = manager.get(job_id)
        listed = await asyncio.to_thread(video_candidates.list_candidates, job.folder)
        choice = await asyncio.to_thread(video_candidates.read_choice, job.folder)
        return {
            "candidates": [{k: c.get(k) for k in ("index", "seed", "motion_bucket", "chosen", "num_frames", "fps", "source", "score")}
                           for c in listed],
            "waiting": job.record.state == "waiting",
            "chosen": choice["chosen"] if choice else None,
            "chosen_by": choice["by"] if choice else None,
        }

    @router.get(
        "/jobs/{job_id}/candidates/{index}/preview",
        response_class=FileResponse,
        responses={200: {"content": {"image/png": {}}, "description": "a strip of frames of the candidate"},
                   **_errors(404, 422, json_route=False)},
    )
    async def candidate_preview(job_id: str, index: int = PathParam(..., ge=0, le=len(video_candidates.BUCKET_FACTORS) - 1)):
        """A PNG strip of a few frames of candidate ``index``."""
        job = manager.get(job_id)
        path = job.folder.candidate_preview(index)
        if not job.folder.candidate_score(index).exists():
            raise video_candidates.CandidateError(f"job {job_id} has no video candidate {index} (yet)")
        return FileResponse(path, media_type="image/png")

    @router.post("/jobs/{job_id}/candidates/{index}/choose", response_model=JobStatus, responses=_errors(404, 409, 422))
    async def choose_candidate(job_id: str, index: int = PathParam(..., ge=0, le=len(video_candidates.BUCKET_FACTORS) - 1)) -> dict:
        """Drive the motion with candidate ``index`` and queue the job: a waiting job goes on, a
        stopped or finished one re-runs its dynamic stage from that video (409 while it runs)."""
        job = manager.get(job_id)
        await manager.choose_candidate(job, index)
        return manager.status(job)

    app.include_router(router)
    return app


async def _event_stream(manager: JobManager, job: Job, after: int):
    job.watchers += 1
    try:
        job.log.poll()
        cursor, sent_state = after, None
        while True:
            changed = job.changed  # taken before reading, so no change slips between
            if job.deleted:
                yield _sse("status", json.dumps({"id": job.record.id, "state": "deleted"}, allow_nan=False))
                yield _sse("end", "{}")
                return
            status = manager.status(job)
            if (status["state"], status["attempts"]) != sent_state:
                sent_state = (status["state"], status["attempts"])
                yield _sse("status", json.dumps(status, allow_nan=False))
            for event_id, kind, text in job.log.since(cursor):
                yield _sse(kind, text, event_id)
            cursor = max(cursor, len(job.log) - 1)
            if status["state"] in FINAL_STATES and job.proc is None:
                yield _sse("end", "{}")
                return
            try:
                await asyncio.wait_for(changed.wait(), KEEPALIVE_S)
            except asyncio.TimeoutError:
                yield ": keepalive\n\n"
    finally:
        job.watchers -= 1


def _sse(event: str, data: str, event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {data}\n\n"


def create_app(config: ServerConfig, **kwargs):
    """The ASGI application: the API behind the access guard (Host check + bearer token)."""
    api = BodyTimeout(build_api(config, **kwargs), config.body_timeout_s)
    return RequestIds(AccessGuard(api, config.token, config.port, config.extra_hosts), say=kwargs.get("say", print))
