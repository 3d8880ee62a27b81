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
    obj.matrix_world = Matrix(backend_to_blender_matrix(np.asarray(camera["c2w"], dtype=np.float64).reshape(4, 4)).tolist())
    obj["dynapose4d_resolution"] = [int(camera.get("width", 0)), int(camera.get("height", 0))]
    return obj
