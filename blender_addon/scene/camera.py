"""The reference camera: the backend's input view, as a Blender camera."""

from __future__ import annotations

import math

import bpy
import numpy as np
from mathutils import Matrix

from ..format.coords import backend_to_blender_matrix
from .rig import ROLE, find_role


def write_camera(collection, camera: dict):
    """Create or move the collection's reference camera. ``camera``: ``c2w`` (4x4 OpenGL
    camera-to-world, backend frame), ``fovy_deg`` (vertical field of view)."""
    if not camera or "c2w" not in camera:
        return None
    obj = find_role(collection, "camera")
    if obj is None:
        data = bpy.data.cameras.new("DynaPose4D reference view")
        obj = bpy.data.objects.new("reference view", data)
        obj[ROLE] = "camera"
        collection.objects.link(obj)
    data = obj.data
    data.sensor_fit = "VERTICAL"
    data.angle_y = math.radians(float(camera.get("fovy_deg", 49.1)))
    data.clip_start, data.clip_end = 0.01, 100.0
    # Its own transform: under the job's root (scene.placement) that is the backend's frame.
    obj.matrix_basis = Matrix(backend_to_blender_matrix(np.asarray(camera["c2w"], dtype=np.float64).reshape(4, 4)).tolist())
    obj["dynapose4d_resolution"] = [int(camera.get("width", 0)), int(camera.get("height", 0))]
    return obj


def resolution(obj) -> tuple[int, int] | None:
    """The reference view's image size in pixels (None when the job did not say)."""
    width, height = (int(v) for v in obj.get("dynapose4d_resolution", (0, 0)))
    return (width, height) if width > 0 and height > 0 else None


def use_resolution(scene, obj) -> None:
    """Render at the reference view's size (its aspect), as when the camera becomes the scene's."""
    size = resolution(obj)
    if size is not None:
        scene.render.resolution_x, scene.render.resolution_y = size
        scene.render.resolution_percentage = 100
