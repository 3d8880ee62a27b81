"""The latest snapshot as a skinned mesh (``dynapose4d.mesh``), for ``GET /v1/jobs/{id}/mesh``.

The body is the :class:`~dynapose4d.mesh.SkinnedMesh` ``.npz`` (numpy reads it; no pickles):
the canonical surface, bones, skin weights and per-bone motion sampled at the client's ``fps``
and ``frame_count``, like the frames. Building it takes seconds at 100k Gaussians, so results
are cached per snapshot and sampling (a few, bounded), and one build runs at a time.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from .frames import BadFrameRequest, SnapshotFrames
from .limits import MIB, check_mesh

MESH_MEDIA_TYPE = "application/x-dynapose4d-skinned+npz"


class SkinnedMeshes:
    def __init__(self, frames: SnapshotFrames, max_items: int = 4, max_bytes: int = 256 * MIB):
        self.frames = frames
        self.max_items = max_items
        self.max_bytes = max_bytes  # the cache's bytes (a large mesh is sent, not kept)
        self._cache: OrderedDict[tuple, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def mesh(self, job_id, job_dir, *, fps=None, frame_count=None, mode="clamp", version=None, max_bones=48, target_faces=20_000, resolution=128) -> tuple[bytes, dict]:
        loaded, fps, frame_count = self.frames.request(job_id, job_dir, version, fps, frame_count, mode)
        key = (job_id, loaded.stamp, float(fps), frame_count, mode, max_bones, target_faces, resolution)
        with self._lock:  # also one build at a time
            data = self._cache.get(key)
            if data is None:
                data = self._build(loaded, fps, frame_count, mode, max_bones, target_faces, resolution)
                self._cache[key] = data
                while len(self._cache) > self.max_items or sum(map(len, self._cache.values())) > self.max_bytes:
                    self._cache.popitem(last=False)
            if key in self._cache:
                self._cache.move_to_end(key)
        return data, loaded.snapshot

    def _build(self, loaded, fps, frame_count, mode, max_bones, target_faces, resolution) -> bytes:
        """The mesh's bytes; its memory is checked before the surface is extracted (the handles'
        share) and again before the per-frame work (the vertices' share)."""
        import torch

        from ..mesh import MeshError, SkeletonConfig, SurfaceConfig, extract_surface, skin_surface

        model, limit = loaded.model, self.frames.work_bytes
        handles = len(model.deformation().handles_rest)
        check_mesh(frame_count, handles, 0, resolution, limit)
        try:
            surface = extract_surface(model.static.detach().to("cpu", torch.float32), SurfaceConfig(resolution=resolution, target_faces=target_faces))
            check_mesh(frame_count, handles, surface.num_vertices, resolution, limit)
            result = skin_surface(model, surface, model.times(frame_count, fps, mode), fps, SkeletonConfig(max_bones=max_bones))
        except (MeshError, ValueError) as exc:
            raise BadFrameRequest(f"no mesh for this snapshot: {exc}") from None
        result.report["snapshot"] = loaded.snapshot
        return result.to_bytes()
