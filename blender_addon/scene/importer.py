"""Import a job's :class:`~..format.sequence.Sequence` into the scene, and update it in place.

One collection per job (``DynaPose4D <input> <date>``, or the job's id when no title is given)
holds the Gaussians (``scene.points``), their display (``scene.display``), the keypoint empties
and armature (``scene.rig``) and the reference camera (``scene.camera``), all under the job's
root empty (``scene.placement``). Importing the same job again (a newer snapshot while it
trains) rewrites those objects: no objects are added per snapshot. The first import places the
result beside what the scene holds, frames it in the 3D views and selects it. Callable without
the UI: this is what the live-import timer and the tests call.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import bpy

from ..format.sequence import Sequence
from . import camera as camera_mod
from . import display as display_mod
from . import placement, points, rig
from . import skinned as skinned_mod

JOB = "dynapose4d_job"
OUTPUTS = ("POINTS", "MESH", "BOTH")  # the exact point cloud, the skinned mesh, or both


@dataclass
class ImportOptions:
    frame_start: int = 1
    set_frame_range: bool = True  # make the scene's range cover the animation
    display: bool = True  # the Geometry Nodes splat display
    radius_scale: float = display_mod.RADIUS_SCALE
    rig: bool = True
    camera: bool = True
    output: str = "POINTS"
    place: bool = True  # the first import: beside what is there, framed, selected

    def __post_init__(self):
        if self.output not in OUTPUTS:
            raise ValueError(f"output must be one of {', '.join(OUTPUTS)}, got {self.output!r}")


def job_collection(scene, job_id: str, create: bool = True, title: str | None = None):
    """The collection of ``job_id`` (linked into ``scene``), created when missing and named
    ``DynaPose4D <title>`` (the input's name and date; the job id without one)."""
    for coll in bpy.data.collections:
        if coll.get(JOB) == job_id:
            if create and coll.name not in scene.collection.children:
                scene.collection.children.link(coll)
            return coll
    if not create:
        return None
    coll = bpy.data.collections.new(f"DynaPose4D {title or job_id}"[:63])
    coll[JOB] = job_id
    scene.collection.children.link(coll)
    return coll


def import_sequence(context, sequence: Sequence, job_id: str, options: ImportOptions | None = None, title: str | None = None):
    """Show ``sequence`` in ``context.scene`` (new objects the first time, in place after).
    ``title``: the collection's name after "DynaPose4D " when it is new (default: the job id)."""
    options = options or ImportOptions()
    t0 = time.perf_counter()
    scene = context.scene
    first = job_collection(scene, job_id, create=False) is None
    coll = job_collection(scene, job_id, title=title)
    # 1. The Gaussians (the exact point cloud) and/or the skinned mesh.
    if options.output in ("POINTS", "BOTH"):
        obj = rig.find_role(coll, "gaussians")
        if obj is None:
            obj = bpy.data.objects.new("gaussians", points.new_points_mesh("gaussians", 0))
            obj[rig.ROLE] = "gaussians"
            coll.objects.link(obj)
        points.write_points(obj, sequence, options.frame_start)
        if options.display:
            display_mod.ensure_display(obj, options.radius_scale, options.frame_start, sequence.frame_count)
            if first:
                display_mod.prepare_scene(scene)  # unlit splats, shown as a 3DGS viewer shows them
    else:
        rig.remove_role(coll, "gaussians")
    if options.output in ("MESH", "BOTH"):
        if sequence.skinned is None:
            raise ValueError("the mesh output needs the snapshot's skinned mesh (fetch it with the sequence: mesh=True)")
        skinned_mod.write_skinned(context, coll, sequence.skinned, options.frame_start)
    else:
        rig.remove_role(coll, "mesh")
        rig.remove_role(coll, "skeleton")
    # 2. The keypoint rig.
    if options.rig and sequence.names:
        empties = rig.write_keypoints(coll, sequence, options.frame_start)
        rig.write_armature(context, coll, sequence, empties, options.frame_start)
    # 3. The reference camera.
    if options.camera:
        cam = camera_mod.write_camera(coll, sequence.camera)
        if cam is not None and scene.camera is None:
            scene.camera = cam
            camera_mod.use_resolution(scene, cam)
    # 4. One root for the job; the first time, a place beside what is there, in view, selected.
    root = placement.ensure_root(coll)
    placement.adopt(coll, root)
    if first and options.place:
        offset = placement.place(context, coll, sequence)
        lo, hi = placement.result_box(sequence)
        placement.frame_views(context, (lo + offset, hi + offset))
        shown = rig.find_role(coll, "gaussians") or rig.find_role(coll, "mesh") or root
        placement.select_only(context, shown)
    # 5. Where it came from, and the scene's range.
    coll["dynapose4d_snapshot"] = int(sequence.version or 0)
    coll["dynapose4d_frame_start"] = options.frame_start
    coll["dynapose4d_frame_count"] = sequence.frame_count
    coll["dynapose4d_fps"] = float(sequence.sampling.fps)
    coll["dynapose4d_gaussians"] = sequence.count
    if options.set_frame_range:
        scene.frame_start = options.frame_start
        scene.frame_end = options.frame_start + sequence.frame_count - 1
    coll["dynapose4d_import_s"] = time.perf_counter() - t0
    return coll


def collection_of(obj):
    """The job collection an object belongs to (None if it is not part of an import)."""
    if obj is None:
        return None
    for coll in obj.users_collection:
        if JOB in coll:
            return coll
    return None
