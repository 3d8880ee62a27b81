"""``GET /v1/jobs/{id}/mesh``: the latest snapshot as a skinned mesh (``dynapose4d.mesh``).

The body is the :class:`~dynapose4d.mesh.SkinnedMesh` ``.npz`` (numpy reads it; no pickles):
the canonical surface, bones, skin weights and per-bone motion sampled at the client's ``fps``
and ``frame_count``, like the frames. Building it takes seconds at 100k Gaussians, so results
are cached per snapshot and sampling (a few, bounded), and one build runs at a time.
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from typing import Literal

from fastapi import Query
from fastapi.responses import Response

from .frames import BadFrameRequest, SnapshotFrames

MESH_MEDIA_TYPE = "application/x-dynapose4d-skinned+npz"


class SkinnedMeshes:
    def __init__(self, frames: SnapshotFrames, max_items: int = 4):
        self.frames = frames
        self.max_items = max_items
        self._cache: OrderedDict[tuple, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def mesh(self, job_id, job_dir, *, fps=None, frame_count=None, mode="clamp", version=None, max_bones=48, target_faces=20_000, resolution=128) -> tuple[bytes, dict]:
        from ..mesh import MeshError, SkeletonConfig, SurfaceConfig, build_skinned_mesh

        loaded = self.frames.load(job_id, job_dir)
        self.frames._check_version(loaded, version)
        fps, frame_count = self.frames._timing(loaded.model, fps, frame_count, mode)
        key = (job_id, loaded.stamp, float(fps), frame_count, mode, max_bones, target_faces, resolution)
        with self._lock:  # also one build at a time
            data = self._cache.get(key)
            if data is None:
                model = loaded.model
                try:
                    result = build_skinned_mesh(
                        model, model.times(frame_count, fps, mode), fps,
                        SurfaceConfig(resolution=resolution, target_faces=target_faces), SkeletonConfig(max_bones=max_bones),
                        surface_error=False,  # a report for benchmarks; the add-on does not need it
                    )
                except (MeshError, ValueError) as exc:
                    raise BadFrameRequest(f"no mesh for this snapshot: {exc}") from None
                result.report["snapshot"] = loaded.snapshot
                data = result.to_bytes()
                self._cache[key] = data
                while len(self._cache) > self.max_items:
                    self._cache.popitem(last=False)
            self._cache.move_to_end(key)
        return data, loaded.snapshot


def add_mesh_route(router, manager, frames: SnapshotFrames) -> None:
    """Register ``GET /jobs/{job_id}/mesh`` on ``router`` (the API's /v1 router)."""
    meshes = SkinnedMeshes(frames)

    @router.get(
        "/jobs/{job_id}/mesh",
        response_class=Response,
        responses={200: {"content": {MESH_MEDIA_TYPE: {}}, "description": "the skinned mesh (.npz, docs/wire-format.md)"}},
    )
    async def get_mesh(
        job_id: str,
        fps: float | None = Query(None, gt=0, le=1000),
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
