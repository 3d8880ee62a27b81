"""A new result where the user sees it: beside what the scene holds, framed in the 3D views,
selected; and a word on how to see its colours (``format.placement`` does the geometry).

Every object of a job hangs under one empty, the job's root (role ``root``): moving the root
moves the result, and a result placed beside the default Cube keeps the backend's coordinates
under it. The export writes the result at the origin wherever the root stands (``scene.export``).
"""

from __future__ import annotations

import bpy
import numpy as np
from mathutils import Vector

from ..format.coords import backend_to_blender
from ..format.placement import bounds, framing, place_beside
from ..format.sequence import Sequence
from .rig import ROLE, find_role

SOLID_TYPES = {"MESH", "CURVE", "SURFACE", "META", "FONT", "CURVES", "POINTCLOUD", "VOLUME"}
COLOUR_HINT = ("Solid shading draws the splats grey: switch the viewport to Material Preview (Z, or the shading "
               "buttons at its top right) to see their colours")


def ensure_root(collection):
    """The job's root empty (created, and linked into ``collection``, when missing)."""
    root = find_role(collection, "root")
    if root is None:
        root = bpy.data.objects.new(collection.name, None)
        root.empty_display_type, root.empty_display_size = "PLAIN_AXES", 0.1
        root[ROLE] = "root"
        collection.objects.link(root)
    return root


def adopt(collection, root) -> None:
    """Hang every object of the job without a parent under its root (local = backend coordinates)."""
    for obj in collection.objects:
        if obj is not root and obj.parent is None:
            obj.parent = root  # matrix_parent_inverse stays identity: the object's own transform is local


def result_box(sequence: Sequence):
    """The result's box in Blender's frame (frame 0's Gaussians and keypoints), before any offset."""
    points = [backend_to_blender(sequence.positions[0])]
    if sequence.names:
        points.append(backend_to_blender(sequence.keypoints[0])[np.asarray(sequence.valid, dtype=bool)])
    return bounds(np.concatenate(points))


def world_box(obj):
    corners = np.array([tuple(obj.matrix_world @ Vector(c)) for c in obj.bound_box])
    return corners.min(axis=0), corners.max(axis=0)


def occupied(context, collection) -> list:
    """The boxes of what the user sees in the scene: visible solid objects outside ``collection``."""
    ours = set(collection.all_objects)
    return [world_box(o) for o in context.view_layer.objects
            if o.type in SOLID_TYPES and o not in ours and o.visible_get()]


def place(context, collection, sequence: Sequence) -> np.ndarray:
    """Put a new result beside what is there (its root moves); the offset [3] used."""
    root = ensure_root(collection)
    offset = place_beside(result_box(sequence), occupied(context, collection))
    root.location = offset.tolist()
    return offset


def frame_views(context, box) -> int:
    """Centre every 3D view of the open windows on ``box`` at a distance that shows it whole;
    the number of views framed (none in the bpy module, which has no windows)."""
    centre, distance = framing(box)
    framed = 0
    for window in context.window_manager.windows:
        for area in window.screen.areas:
            if area.type != "VIEW_3D":
                continue
            view = area.spaces.active.region_3d
            view.view_location = centre.tolist()
            view.view_distance = distance
            framed += 1
    return framed


def select_only(context, obj) -> None:
    """``obj`` selected and active, nothing else selected."""
    for other in context.view_layer.objects:
        if other.select_get():
            other.select_set(False)
    obj.select_set(True)
    context.view_layer.objects.active = obj


def colour_hint(context) -> str | None:
    """How to see the splats' colours when a 3D view draws them grey (Solid or Wireframe), else None."""
    for window in context.window_manager.windows:
        for area in window.screen.areas:
            if area.type == "VIEW_3D" and area.spaces.active.shading.type in ("SOLID", "WIREFRAME"):
                return COLOUR_HINT
    return None


def show_colours(context) -> int:
    """Switch the 3D views of the open windows that draw grey to Material Preview; how many."""
    switched = 0
    for window in context.window_manager.windows:
        for area in window.screen.areas:
            shading = area.spaces.active.shading if area.type == "VIEW_3D" else None
            if shading is not None and shading.type in ("SOLID", "WIREFRAME"):
                shading.type = "MATERIAL"
                switched += 1
    return switched
