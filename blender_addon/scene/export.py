"""Export a job's collection to glTF (GLB): morph-target animation of the points, the keypoint
empties and the baked armature, the reference camera.

The options are those that make loose points export (``use_mesh_vertices``) with one morph
target per frame and STEP weights (``export_force_sampling=False`` keeps the CONSTANT keys as
keys; ``ACTIVE_ACTIONS`` merges the points', empties' and armature's actions into one glTF
animation). Bones carry constraints, so the exporter samples them; their baked keys make that
sampling reproduce the motion. glTF animates node transforms and morph weights only: per-frame
rotations and scales of the splats are not in the file (the backend's PLY sequence has them).
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import bpy
from mathutils import Matrix

from . import animation, rig
from . import camera as camera_mod

GLTF_OPTIONS = {
    "export_format": "GLB",
    "use_selection": True,
    "use_mesh_vertices": True,
    "use_mesh_edges": False,
    "export_apply": False,  # the display modifier is not geometry to export
    "export_normals": False,
    "export_vertex_color": "ACTIVE",
    "export_materials": "NONE",
    "export_morph": True,
    "export_morph_normal": False,
    "export_morph_animation": True,
    "export_animations": True,
    "export_animation_mode": "ACTIVE_ACTIONS",
    "export_force_sampling": False,
    "export_optimize_animation_size": False,
    "export_cameras": True,
    "export_yup": True,
}


class ExportError(RuntimeError):
    pass


def gltf_options(**overrides) -> dict:
    """The exporter's keyword arguments, without any this Blender's exporter does not have."""
    known = set(bpy.ops.export_scene.gltf.get_rna_type().properties.keys())
    return {k: v for k, v in {**GLTF_OPTIONS, **overrides}.items() if k in known}


def export_gltf(context, collection, filepath: str, *, camera: bool = True, rebake: bool = True, **overrides) -> Path:
    """Write ``collection`` to ``filepath`` (.glb); returns the path."""
    path = Path(bpy.path.abspath(filepath))
    if path.suffix.lower() != ".glb":
        path = path.with_suffix(".glb")
    path.parent.mkdir(parents=True, exist_ok=True)
    # The job's root empty stays out: its children are written as they stand under it (at_origin).
    objects = [o for o in collection.all_objects if (camera or o.type != "CAMERA") and o.get(rig.ROLE) != "root"]
    if not objects:
        raise ExportError(f"collection {collection.name} has nothing to export")
    if rebake and "dynapose4d_frame_count" in collection:
        rig.rebake_from_empties(collection, int(collection["dynapose4d_frame_start"]), int(collection["dynapose4d_frame_count"]))
    view_layer = context.view_layer
    selected = [o for o in view_layer.objects if o.select_get()]
    active = view_layer.objects.active
    chosen = []
    try:
        for o in selected:
            o.select_set(False)
        for o in objects:
            try:
                o.select_set(True, view_layer=view_layer)
                chosen.append(o)
            except RuntimeError:  # not in this view layer (an excluded collection)
                pass
        if not chosen:
            raise ExportError(f"collection {collection.name} is not in the view layer {view_layer.name} (is it excluded?)")
        with camera_resolution(context.scene, collection if camera else None), starting_at_zero(context.scene, objects, collection), \
                at_origin(context, collection):
            result = bpy.ops.export_scene.gltf(filepath=str(path), **gltf_options(**overrides))
    finally:
        for o in chosen:
            o.select_set(False, view_layer=view_layer)
        for o in selected:
            try:
                o.select_set(True, view_layer=view_layer)
            except (RuntimeError, ReferenceError):
                pass
        view_layer.objects.active = active
    if result != {"FINISHED"} or not path.is_file():
        raise ExportError(f"Blender's glTF exporter did not write {path} ({result})")
    return path


@contextmanager
def at_origin(context, collection):
    """The job's root at the origin while the exporter runs: the file holds the result where the
    backend put it, wherever the user (or the first import, beside the Cube) moved it."""
    root = rig.find_role(collection, "root")
    if root is None:
        yield
        return
    saved = root.matrix_basis.copy()
    root.matrix_basis = Matrix.Identity(4)
    context.view_layer.update()
    try:
        yield
    finally:
        root.matrix_basis = saved
        context.view_layer.update()


@contextmanager
def camera_resolution(scene, collection):
    """The render resolution of the collection's reference camera while the exporter runs.

    glTF's ``aspectRatio`` comes from the scene's render resolution; the reference view has its
    own (square for the image pipeline), so a 16:9 scene would export a stretched camera."""
    cam = rig.find_role(collection, "camera") if collection is not None else None
    size = camera_mod.resolution(cam) if cam is not None else None
    if size is None:
        yield
        return
    render = scene.render
    saved = (render.resolution_x, render.resolution_y, render.pixel_aspect_x, render.pixel_aspect_y)
    render.resolution_x, render.resolution_y = size
    render.pixel_aspect_x = render.pixel_aspect_y = 1.0
    try:
        yield
    finally:
        render.resolution_x, render.resolution_y, render.pixel_aspect_x, render.pixel_aspect_y = saved


@contextmanager
def starting_at_zero(scene, objects, collection):
    """The collection's keys moved so that its first frame is scene frame 0 while the exporter runs.

    The exporter writes scene frame f at f / fps seconds, so sample 0 at frame 1 would play at
    1 / fps: the clip one frame late, the first pose held for two frames. Its own
    ``export_anim_slide_to_zero`` slides only sampled (armature) tracks in ACTIVE_ACTIONS mode
    (seen in 4.5), not the shape-key weights and empties, so the keys are shifted here and put
    back afterwards."""
    offset = -float(collection.get("dynapose4d_frame_start", 0))
    if offset == 0:
        yield
        return
    ids = {id(x): x for o in objects for x in (o, o.data, getattr(o.data, "shape_keys", None)) if x is not None}
    curves = [c for x in ids.values() for c in (animation.fcurves(x, create=False) or ())]
    render_range = (scene.frame_start, scene.frame_end)
    animation.shift_keys(curves, offset)
    scene.frame_start, scene.frame_end = int(render_range[0] + offset), int(render_range[1] + offset)
    try:
        yield
    finally:
        animation.shift_keys(curves, -offset)
        scene.frame_start, scene.frame_end = render_range
