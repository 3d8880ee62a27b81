"""The animated Gaussians: a mesh of loose vertices with one shape key per frame, keyed one-hot.

Frame k of the sequence (scene frame ``frame_start + k``) is shape key ``frame_0000 + k`` at
value 1 and every other key at 0, with CONSTANT interpolation: Blender shows exactly the
sampled positions at each frame, and the glTF exporter writes morph targets with STEP weights.
Every key's curve has a key on every frame (the exporter bakes, and interpolates, curves whose
keys differ in number or place). The Basis is frame 0.

Point attributes (frame 0; Blender frame, linear colour):
``color`` (FLOAT_COLOR, RGB + opacity as alpha), ``opacity`` (FLOAT), ``scale`` (FLOAT_VECTOR,
per-axis standard deviations), ``rotation`` (QUATERNION, Blender frame); and per frame k,
``rot_f{k}`` and ``scale_f{k}``, which the display (``scene.display``) picks by the scene frame.
Where Blender has native splats, also its own attributes: ``radiance:base`` (FLOAT4: the raw
SH DC coefficients and the opacity) and ``radiance:sh_k`` (FLOAT_VECTOR per coefficient k,
up to the result's SH degree).
"""

from __future__ import annotations

import bpy
import numpy as np

from ..format.coords import backend_to_blender
from ..format.sequence import Sequence, rotations_to_blender, sh_rest_to_blender, srgb_to_linear
from . import animation
from .attributes import foreach_set, set_attribute
from .display import DILATION, ROTATION_OF_FRAME, SCALE_OF_FRAME, supports_native_splats

KEY_PREFIX = "frame_"
SH_C0 = 0.28209479177387814  # the degree-0 SH basis value: colour = 0.5 + SH_C0 * dc
BACKEND_DILATION_PX2 = 0.3  # what the backend's rasteriser adds to every projected covariance


def key_name(index: int) -> str:
    return f"{KEY_PREFIX}{index:04d}"


def new_points_mesh(name: str, count: int):
    mesh = bpy.data.meshes.new(name)
    mesh.vertices.add(count)
    return mesh


def write_points(obj, sequence: Sequence, frame_start: int) -> None:
    """Make ``obj`` show ``sequence``: positions per frame as shape keys, attributes of frame 0.

    Rewrites the existing mesh in place when the Gaussian and frame counts are unchanged (a live
    update); otherwise swaps in a new mesh (the object stays)."""
    positions = backend_to_blender(sequence.positions).astype(np.float32)  # [F, N, 3]
    count, frames = sequence.count, sequence.frame_count
    mesh = obj.data
    keys = mesh.shape_keys
    fits = len(mesh.vertices) == count and keys is not None and len(keys.key_blocks) == frames + 1
    if not fits:
        old, name = mesh, mesh.name
        mesh = new_points_mesh(name, count)
        obj.data = mesh
        if old.users == 0:
            key = old.shape_keys
            if key is not None:
                animation.remove_animation(key)
            bpy.data.meshes.remove(old)
            mesh.name = name
    # 1. Positions: the mesh and Basis are frame 0, then one key per frame.
    foreach_set(mesh.attributes["position"].data, "vector", positions[0])
    if not fits:
        obj.shape_key_add(name="Basis", from_mix=False)
        for k in range(frames):
            obj.shape_key_add(name=key_name(k), from_mix=False)
    blocks = mesh.shape_keys.key_blocks
    write_key(blocks[0], positions[0])
    for k in range(frames):
        write_key(blocks[k + 1], positions[k])
    # 2. Attributes of frame 0, then every frame's rotation and scale.
    rgb = srgb_to_linear(sequence.colors)
    set_attribute(mesh, "color", np.column_stack([rgb, sequence.opacities]), "FLOAT_COLOR")
    mesh.color_attributes.active_color = mesh.color_attributes["color"]
    set_attribute(mesh, "opacity", sequence.opacities, "FLOAT")
    rotations = rotations_to_blender(sequence.rotations_of())
    set_attribute(mesh, "scale", sequence.scales[0], "FLOAT_VECTOR")
    set_attribute(mesh, "rotation", rotations[0], "QUATERNION")
    for k in range(frames):
        set_attribute(mesh, frame_attribute(ROTATION_OF_FRAME, k), rotations[k], "QUATERNION")
        set_attribute(mesh, frame_attribute(SCALE_OF_FRAME, k), sequence.scales[k], "FLOAT_VECTOR")
    set_attribute(mesh, DILATION, dilation_variance(sequence), "FLOAT")
    if supports_native_splats():
        write_radiance(mesh, sequence)
    mesh.update()
    # 3. One-hot weights, CONSTANT, a key on every frame of every curve.
    write_weights(mesh.shape_keys, frames, frame_start, rebuild=not fits)


def write_key(block, positions: np.ndarray) -> None:
    # ShapeKey.points (4.x+) takes the raw-array path of foreach_set: ~100x faster than .data.
    points = getattr(block, "points", None)
    foreach_set(points if points is not None else block.data, "co", positions)


def write_weights(key, frames: int, frame_start: int, rebuild: bool = False) -> None:
    if rebuild:
        animation.remove_animation(key)
    curves = animation.fcurves(key, action_name=f"{key.user.name}Frames")
    times = frame_start + np.arange(frames, dtype=np.float32)
    eye = np.eye(frames, dtype=np.float32)
    for k in range(frames):
        animation.set_keys(curves, f'key_blocks["{key_name(k)}"].value', 0, times, eye[k], "CONSTANT")


def dilation_variance(sequence: Sequence) -> np.ndarray:
    """Per Gaussian, the world variance that covers the backend's 0.3 px^2 on-screen widening
    at its frame-0 depth from the reference camera (zero without a camera)."""
    cam = sequence.camera or {}
    if "c2w" not in cam or not cam.get("height"):
        return np.zeros(sequence.count, np.float32)
    c2w = np.asarray(cam["c2w"], np.float64).reshape(4, 4)
    depth = np.maximum((sequence.positions[0] - c2w[:3, 3]) @ -c2w[:3, 2], 1e-3)  # the camera looks down -Z
    focal = (float(cam["height"]) / 2.0) / np.tan(np.radians(float(cam.get("fovy_deg", 49.1))) / 2.0)
    return (BACKEND_DILATION_PX2 * (depth / focal) ** 2).astype(np.float32)


def frame_attribute(pattern: str, index: int) -> str:
    return pattern.replace("#", str(index))


def write_radiance(mesh, sequence: Sequence) -> None:
    """Blender's native splat colour: ``radiance:base`` = (SH DC, opacity) and ``radiance:sh_k``
    (coefficient k of each channel: ``f_rest[c * K + k]`` of a PLY), turned into Blender's frame
    like the view directions they are functions of."""
    dc = (np.asarray(sequence.colors, np.float32) - 0.5) / SH_C0
    set_attribute(mesh, "radiance:base", np.column_stack([dc, sequence.opacities]), "FLOAT4")
    rest = sh_rest_to_blender(sequence.sh_rest)
    for k in range(0 if rest is None else rest.shape[1]):
        set_attribute(mesh, f"radiance:sh_{k}", rest[:, k], "FLOAT_VECTOR")
    for name in [a.name for a in mesh.attributes if a.name.startswith("radiance:sh_")]:
        if rest is None or int(name[len("radiance:sh_"):]) >= rest.shape[1]:
            mesh.attributes.remove(mesh.attributes[name])
