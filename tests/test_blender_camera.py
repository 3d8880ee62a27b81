"""Our camera model against an independent implementation: Blender's own camera projection
(``bpy_extras.object_utils.world_to_camera_view``), through the add-on's coordinate conversion."""

import math

import numpy as np
import pytest
import torch

bpy = pytest.importorskip("bpy")
from bpy_extras.object_utils import world_to_camera_view  # noqa: E402
from mathutils import Matrix, Vector  # noqa: E402

from blender_addon.format.coords import backend_to_blender, backend_to_blender_matrix, blender_to_backend  # noqa: E402
from dynapose4d.cameras import Cameras  # noqa: E402


@pytest.fixture
def scene():
    bpy.ops.wm.read_factory_settings(use_empty=True)
    return bpy.context.scene


def blender_camera(scene, cameras: Cameras, index):
    data = bpy.data.cameras.new("cam")
    data.sensor_fit = "VERTICAL"
    data.angle_y = float(cameras.fovy[index])
    obj = bpy.data.objects.new("cam", data)
    scene.collection.objects.link(obj)
    obj.matrix_world = Matrix(backend_to_blender_matrix(cameras.c2w[index].numpy()).tolist())
    scene.render.resolution_x = cameras.width
    scene.render.resolution_y = cameras.height
    scene.render.resolution_percentage = 100
    scene.render.pixel_aspect_x = scene.render.pixel_aspect_y = 1.0
    return obj


@pytest.mark.parametrize("size", [(256, 256), (320, 200)])
def test_projection_matches_blender(scene, size):
    w, h = size
    cams = Cameras.orbit(
        torch.tensor([0.0, 30.0, -20.0, 10.0], dtype=torch.float64),
        torch.tensor([0.0, 60.0, -75.0, 195.0], dtype=torch.float64),
        torch.tensor([2.0, 2.0, 2.5, 1.8], dtype=torch.float64),
        width=w,
        height=h,
        dtype=torch.float64,
    )
    pts = torch.tensor([[0.3, -0.2, 0.1], [-0.4, 0.25, 0.35], [0.0, 0.45, -0.3], [0.1, 0.0, 0.0]], dtype=torch.float64)
    for i in range(4):
        cam = blender_camera(scene, cams, i)
        bpy.context.view_layer.update()
        ours, depth = cams[i].project(pts)
        for p, (x, y), z in zip(backend_to_blender(pts.numpy()), ours.numpy(), depth.numpy()):
            ndc = world_to_camera_view(scene, cam, Vector(p.tolist()))
            # Blender: (0, 0) is the bottom-left corner, z is the depth along the view axis.
            assert ndc.x * w == pytest.approx(x, abs=1e-3)
            assert (1.0 - ndc.y) * h == pytest.approx(y, abs=1e-3)
            assert ndc.z == pytest.approx(z, abs=1e-5)


def test_input_view_is_blenders_front_view(scene):
    cam = blender_camera(scene, Cameras.orbit(0.0, 0.0, 2.0, dtype=torch.float64), ...)
    bpy.context.view_layer.update()
    np.testing.assert_allclose(np.array(cam.location), [0.0, -2.0, 0.0], atol=1e-6)
    view_dir = cam.matrix_world.to_3x3() @ Vector((0.0, 0.0, -1.0))
    np.testing.assert_allclose(np.array(view_dir), [0.0, 1.0, 0.0], atol=1e-6)  # looks along +Y
    up = cam.matrix_world.to_3x3() @ Vector((0.0, 1.0, 0.0))
    np.testing.assert_allclose(np.array(up), [0.0, 0.0, 1.0], atol=1e-6)  # Blender +Z up


def test_coordinate_conversion_round_trip_and_handedness():
    p = np.array([[0.1, 0.2, 0.3]])
    np.testing.assert_allclose(backend_to_blender(p), [[0.1, -0.3, 0.2]])
    np.testing.assert_allclose(blender_to_backend(backend_to_blender(p)), p)
    from blender_addon.format.coords import BACKEND_TO_BLENDER

    assert np.linalg.det(BACKEND_TO_BLENDER) == pytest.approx(1.0)  # a rotation, not a mirror
