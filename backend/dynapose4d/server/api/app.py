"""The HTTP API (``/v1``): the application that composes the routers of :mod:`.routes` (one per
resource) with the error answers, the access guard and the slow-client protection; the work
lives in the job manager, uploads, frames and the device probe.

Every route needs the bearer token and a loopback Host header (:mod:`.auth`). Errors are JSON
``{"detail": "..."}`` (:mod:`.errors`): 400 malformed request, 401 token, 403 Host, 404 no such
job / no snapshot yet / no such video candidate, 408 request body too slow, 409 wrong state for the action, 413 too large,
415 wrong file type, 422 invalid settings, inputs or parameters, 507 not enough disk space; an
unexpected failure is 500 with a request id that the server log shows beside the traceback.
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager

from fastapi import FastAPI

from ... import __version__
from ...pipeline import JobError
from ...pipeline import candidates as video_candidates
from ...weights.downloads import ModelDownloads
from ..config import ServerConfig
from ..frames import BadFrameRequest, NoSnapshot, SnapshotFrames, SnapshotGone
from ..limits import TooMuchWork
from ..mesh import SkinnedMeshes
from ..probe import DeviceProbe, SetupProbe
from ..results import NoResults
from ..runner.manager import JobConflict, JobManager
from ..runner.store import JobStore, UnknownJob
from .auth import AccessGuard
from .errors import RequestIds, install_error_handlers
from .routes.candidates import candidates_router
from .routes.common import API, warm_imports
from .routes.events import events_router
from .routes.frames import export_router, frames_router, result_router
from .routes.health import health_router
from .routes.jobs import jobs_router
from .routes.models import models_router
from .slowclients import BodyTimeout

# The status each known exception answers with (errors.py writes the {"detail": ...} body).
ERROR_STATUS: dict[type[BaseException], int] = {
    UnknownJob: 404,
    NoSnapshot: 404,
    JobConflict: 409,
    SnapshotGone: 409,
    NoResults: 409,
    BadFrameRequest: 422,
    TooMuchWork: 413,
    JobError: 422,
    video_candidates.CandidateError: 404,
}


def build_api(config: ServerConfig, *, on_ready=None, on_shutdown=None, say=print, executor=None) -> FastAPI:
    """The FastAPI application (without the access guard; :func:`create_app` adds it).
    ``executor``: where workers run (default: the one ``config.executor`` names)."""
    # 1. The job manager and the snapshot caches the routes share.
    manager = JobManager(JobStore(config.jobs_dir), config, say=say, executor=executor)
    frames = SnapshotFrames(frame_cache_bytes=config.frame_cache_bytes, work_bytes=config.work_memory_bytes)
    probe = DeviceProbe()
    downloads = ModelDownloads(say=say)
    # 2. The application and its error answers.
    app = FastAPI(
        title="DynaPose4D backend",
        version=__version__,
        description="Local job server: image to 4D Gaussians, streamed while it trains. Auth: 'Authorization: Bearer <token>' "
        "with the token from the server's address file. Frame wire format: docs/wire-format.md.",
        openapi_url=f"{API}/openapi.json",
        docs_url=None,  # the interactive pages load scripts from the internet
        redoc_url=None,
        lifespan=_lifespan(manager, probe, downloads, on_ready, on_shutdown),
    )
    app.state.manager = manager
    install_error_handlers(app, ERROR_STATUS, config.jobs_dir)
    # 3. The routes, one router per resource, in the order the spec lists them.
    routers = (
        health_router(config, manager, probe, SetupProbe()),
        jobs_router(config, manager, frames, asyncio.Semaphore(config.limits.max_file_checks)),
        events_router(manager),
        frames_router(manager, frames, SkinnedMeshes(frames)),
        export_router(manager, frames),
        result_router(manager),
        candidates_router(manager),
        models_router(downloads),
    )
    for router in routers:
        app.include_router(router, prefix=API)
    return app


def _lifespan(manager: JobManager, probe: DeviceProbe, downloads: ModelDownloads, on_ready, on_shutdown):
    """Start the job manager and the device probe with the server; stop the workers and the
    model downloads with it."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        manager.start()
        probe.refresh()
        # In the background: the server answers at once, and the first upload or frame request
        # finds torch and OpenCV already loaded.
        warm = asyncio.get_running_loop().run_in_executor(None, warm_imports)
        if on_ready is not None:
            on_ready()
        try:
            yield
        finally:
            await warm
            await manager.shutdown()
            await asyncio.to_thread(downloads.shutdown)
            if on_shutdown is not None:
                on_shutdown()

    return lifespan


def create_app(config: ServerConfig, **kwargs):
    """The ASGI application: the API behind the access guard (Host check + bearer token)."""
    api = BodyTimeout(build_api(config, **kwargs), config.body_timeout_s)
    return RequestIds(AccessGuard(api, config.token, config.port, config.extra_hosts), say=kwargs.get("say", print))
