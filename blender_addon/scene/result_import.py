"""File > Import > DynaPose4D Result: a result folder written by the command line, into the same
objects a live import makes (``scene.importer.import_sequence``), without a server.

An ``animate`` result (coordinates ``input-ply``) lands where its data say, on the splat it was
made from; a demo or generate result goes beside what the scene holds, as a live import does.
A folder has the PLY frames and nothing to resample them with, so its frames are imported as
they are, one per scene frame; the scene takes the result's frame rate (``use_result_fps``) so
that they play at their real times. The collection remembers the folder's ``sequence.json``
(``dynapose4d_source``): importing it again updates the same objects, and Export Splats hands it
to the backend's export command.
"""

from __future__ import annotations

from ..format.result_folder import ResultFolderError, read_result
from .importer import ImportOptions, import_sequence

SOURCE = "dynapose4d_source"


def import_result_folder(context, path: str, options: ImportOptions | None = None, use_result_fps: bool = True):
    """Import the result at ``path`` (a job folder, a sequence folder or its ``sequence.json``);
    returns the job's collection. Raises :class:`ResultFolderError` for anything unreadable."""
    import bpy

    result = read_result(bpy.path.abspath(path))
    options = ImportOptions(**vars(options or ImportOptions()))
    options.output = "POINTS"  # a folder holds the Gaussians, not the server's skinned mesh
    options.place = options.place and not result.in_place  # an animated PLY lands on its input
    if use_result_fps:
        set_scene_fps(context.scene, result.sequence.sampling.fps)
    try:
        coll = import_sequence(context, result.sequence, result.job_id, options, title=result.title)
    except ValueError as exc:
        raise ResultFolderError(f"{result.sidecar}: {exc}") from None
    coll[SOURCE] = str(result.sidecar)
    return coll


def set_scene_fps(scene, fps: float) -> None:
    """``fps`` as Blender's integer rate and base (7 -> 7 / 1; 29.97 -> 30 / 1.001)."""
    rate = max(1, round(fps))
    scene.render.fps = rate
    scene.render.fps_base = rate / fps
