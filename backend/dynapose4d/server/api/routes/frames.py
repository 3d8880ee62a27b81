"""A job's results: from the latest snapshot while it trains (``/jobs/{job_id}/frames/{index}``,
``/mesh``, ``/keypoints``, ``/export``), and the finished PLY sequence (``/jobs/{job_id}/result``)."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Literal

from fastapi import APIRouter, Query
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, Response

from ...frames import MAX_FPS, MIN_FPS, BadFrameRequest, SnapshotFrames
from ...limits import Term, check, field_chunk, frame_terms
from ...mesh import MESH_MEDIA_TYPE, SkinnedMeshes
from ...results import result_zip
from ...runner.manager import JobConflict, JobManager
from ..schemas import KeypointTracks
from .common import errors

FRAME_MEDIA_TYPE = "application/octet-stream"
GLB_MEDIA_TYPE = "model/gltf-binary"
EXPORT_KINDS = ("splats", "points")
MAX_EXPORT_MB = 200.0  # the largest flipbook an export may write (rigid parts stay near the static splat's size)
SPLAT_BYTES = 240  # one Gaussian of one frame in a flipbook GLB: attributes and degree-3 SH (pipeline/export.py)


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


def export_router(manager: JobManager, frames: SnapshotFrames) -> APIRouter:
    router = APIRouter()

    @router.get(
        "/jobs/{job_id}/export",
        response_class=Response,
        responses={
            200: {"content": {GLB_MEDIA_TYPE: {}}, "description": "the latest snapshot as a GLB (docs/export.md)"},
            **errors(404, 409, 413, 422, json_route=False),
        },
    )
    async def get_export(
        job_id: str,
        kind: Literal["splats", "points"] = Query("splats", alias="as", description="splats: KHR_gaussian_splatting; points: morph targets"),
        fps: float | None = Query(None, ge=MIN_FPS, le=MAX_FPS),
        frame_count: int | None = Query(None, ge=1, le=10_000),
        mode: Literal["clamp", "loop", "pingpong"] = Query("clamp"),
        version: int | None = Query(None, ge=0),
        max_mb: float = Query(50.0, gt=0, le=MAX_EXPORT_MB, description="the largest flipbook the splats' auto motion may write"),
    ) -> Response:
        """The latest snapshot as glTF, sampled like its frames: what ``dynapose4d export --as splats``
        writes for a job folder, for a client that cannot run the backend's command."""
        job = manager.get(job_id)
        data, snapshot = await asyncio.to_thread(
            export_glb, frames, job_id, job.dir, kind=kind, fps=fps, frame_count=frame_count, mode=mode, version=version, max_mb=max_mb
        )
        return Response(content=data, media_type=GLB_MEDIA_TYPE, headers={"X-Snapshot-Version": str(snapshot.get("version", ""))})

    return router


def export_glb(frames: SnapshotFrames, job_id: str, job_dir: Path, *, kind: str, fps: float | None, frame_count: int | None,
               mode: str, version: int | None, max_mb: float) -> tuple[bytes, dict]:
    """The GLB bytes of the job's latest snapshot; its memory is checked before any sampling (every
    frame's Gaussians are held at once, and the deformation field runs on its handles)."""
    from ....pipeline.export import ExportError, ExportOptions, export_model

    loaded, fps, frame_count = frames.request(job_id, job_dir, version, fps, frame_count, mode)
    gaussians, handles = loaded.model.static.num, len(loaded.model.deformation().handles_rest)
    terms = [*frame_terms(gaussians), field_chunk(handles)]
    if kind == "splats":
        terms.append(Term("flipbook Gaussians", gaussians, SPLAT_BYTES))
    check(f"this {kind} export", frame_count, terms, frames.work_bytes, "")
    with tempfile.TemporaryDirectory(prefix="dynapose4d-export-") as tmp:
        out = Path(tmp) / "export.glb"
        try:
            # The snapshot already loaded (and checked against ``version``), not the file again:
            # a newer snapshot written meanwhile must not slip into this answer.
            options = ExportOptions(kind=kind, fps=fps, frames=frame_count, time_mode=mode, max_mb=max_mb)
            export_model(loaded.model, out, options)
        except ExportError as exc:
            raise BadFrameRequest(f"no {kind} export of this snapshot: {exc}") from None
        return out.read_bytes(), loaded.snapshot


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
