"""Cycles stills read back as arrays, and one flat Gaussian whose footprint is known: one home for
how the tests render, shared by the drivers in this folder (any bpy, in the trixie root or not)
and the bpy tests (``tests/test_addon_scene.py``). bpy and numpy only."""

import os

import bpy
import numpy as np

# The flat Gaussian: backend scales x 0.3, y (up) 0.05, z 0.1, which Blender sees from above as
# sigmas 0.3 along x and 0.1 along y.
FLAT_SCALES, FLAT_SIGMAS, FLAT_OPACITY = (0.3, 0.05, 0.1), (0.3, 0.1), 0.9


def point_sampled_cycles(scene, samples: int) -> None:
    """Cycles with pixels point-sampled as the backend's rasteriser takes them (a box filter
    0.01 px wide), no denoising."""
    scene.render.engine = "CYCLES"
    scene.cycles.samples, scene.cycles.use_denoising = samples, False
    scene.cycles.pixel_filter_type, scene.cycles.filter_width = "BOX", 0.01


def render_to_array(scene, path: str) -> np.ndarray:
    """Render ``scene`` to a 32-bit EXR at ``path`` and read it back: linear RGBA ``[H, W, 4]``,
    top row first (the file and the image are removed)."""
    scene.render.image_settings.file_format = "OPEN_EXR"
    scene.render.image_settings.color_depth = "32"
    scene.render.filepath = path
    bpy.ops.render.render(write_still=True)
    image = bpy.data.images.load(path)
    width, height = image.size
    pixels = np.empty(width * height * 4, np.float32)
    image.pixels.foreach_get(pixels)
    bpy.data.images.remove(image)
    os.remove(path)
    return pixels.reshape(height, width, 4)[::-1]  # Blender's rows go bottom-up


def flat_footprint(size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What the flat Gaussian should cover seen from above, ``opacity * exp(-d^2 / 2)`` in its
    sigmas at the pixel centres of a ``size`` x ``size`` view 2 units wide, and those centres'
    x and y."""
    c = (np.arange(size) + 0.5) / size * 2 - 1
    x, y = np.meshgrid(c, c)
    return FLAT_OPACITY * np.exp(-0.5 * (x**2 / FLAT_SIGMAS[0] ** 2 + y**2 / FLAT_SIGMAS[1] ** 2)), x, y


def render_flat_gaussian(importer, seq, path: str, *, size: int, samples: int, frame_start: int) -> np.ndarray:
    """``seq`` (one Gaussian) made the flat white Gaussian at the origin, imported by the add-on's
    ``importer`` into an empty file and rendered from above with Cycles by an orthographic camera
    2 units wide on a black world: its red channel ``[size, size]``."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    seq.positions[:], seq.scales[:], seq.opacities[:], seq.colors[:] = 0.0, FLAT_SCALES, FLAT_OPACITY, 1.0
    seq.rotations[:] = (1.0, 0.0, 0.0, 0.0)
    if seq.frame_rotations is not None:
        seq.frame_rotations[:] = (1.0, 0.0, 0.0, 0.0)
    seq.sh_rest = None
    importer.import_sequence(bpy.context, seq, "one", importer.ImportOptions(frame_start=frame_start, place=False, rig=False, camera=False))
    scene = bpy.context.scene
    cam = bpy.data.objects.new("top", bpy.data.cameras.new("top"))
    scene.collection.objects.link(cam)
    cam.data.type, cam.data.ortho_scale, cam.location = "ORTHO", 2.0, (0.0, 0.0, 3.0)
    scene.camera = cam
    scene.world = None  # black
    point_sampled_cycles(scene, samples)
    scene.render.resolution_x = scene.render.resolution_y = size
    return render_to_array(scene, path)[..., 0]
