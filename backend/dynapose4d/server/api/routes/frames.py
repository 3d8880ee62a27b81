"""A job's results: from the latest snapshot while it trains (``/jobs/{job_id}/frames/{index}``,
``/mesh``, ``/keypoints``), and the finished PLY sequence (``/jobs/{job_id}/result``)."""

from __future__ import annotations

import asyncio
from typing import Literal

from fastapi import APIRouter, Query
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, Response

from ...frames import MAX_FPS, MIN_FPS, SnapshotFrames
from ...mesh import MESH_MEDIA_TYPE, SkinnedMeshes
from ...results import result_zip
from ...runner.manager import JobConflict, JobManager
from ..schemas import KeypointTracks
from .common import errors

FRAME_MEDIA_TYPE = "application/octet-stream"


def frames_router(manager: JobManager, frames: SnapshotFrames, meshes: SkinnedMeshes) -> APIRouter:
    router = APIRouter()

    @router.get(
        "/jobs/{job_id}/frames/{index}",
        response_class=Response,
        responses={
            200: {"content": {FRAME_MEDIA_TYPE: {}}, "description": "one frame in the wire format (docs/wire-format.md)"},
            **errors(404, 409, 413, 422, json_route=False),
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
            **errors(404, 409, 413, 422, json_route=False),
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

    @router.get("/jobs/{job_id}/keypoints", response_model=KeypointTracks, responses=errors(404, 409, 413, 422))
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

    return router


def result_router(manager: JobManager) -> APIRouter:
    router = APIRouter()

    @router.get(
        "/jobs/{job_id}/result",
        response_class=FileResponse,
        responses={
            200: {"content": {"application/zip": {}}, "description": "PLY sequence + sequence.json"},
            **errors(404, 409, json_route=False),
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

    return router
