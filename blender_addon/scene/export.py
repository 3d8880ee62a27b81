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

from pathlib import Path

import bpy

from . import rig

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
    objects = [o for o in collection.all_objects if camera or o.type != "CAMERA"]
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
