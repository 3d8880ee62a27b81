"""The keypoint rig: one animated empty per keypoint and an armature that follows them.

Each keypoint becomes an empty named after it, with location keys on every frame (LINEAR).
Each skeleton edge becomes a bone (``format.rig``) driven by the empties through Copy
Location + Damped Track, and baked to keyframes so the motion exports to glTF. The baked
pose equals the constraints' (tests check it), so the constraints can stay on: an animator
who moves an empty sees the rig follow; :func:`bake_rig` re-bakes from the empties' curves.
"""

from __future__ import annotations

from contextlib import contextmanager

import bpy
import numpy as np

from ..format.coords import backend_to_blender
from ..format.rig import bake_bones, skeleton_bones
from ..format.sequence import Sequence
from . import animation

ROLE = "dynapose4d_role"
KEYPOINT = "dynapose4d_keypoint"
BONES = "dynapose4d_bones"  # the edges, flattened: [i0, j0, i1, j1, ...]
BONE_NAMES = "dynapose4d_bone_names"


@contextmanager
def editing_bones(context, arm):
    """Edit mode for ``arm`` alone (bones exist only there), then object mode and the previous
    active object again, whatever happens inside."""
    view_layer = context.view_layer
    previous = view_layer.objects.active
    if context.mode != "OBJECT" and previous is not None:
        bpy.ops.object.mode_set(mode="OBJECT")
    view_layer.objects.active = arm
    bpy.ops.object.mode_set(mode="EDIT")
    try:
        yield arm.data.edit_bones
    finally:
        bpy.ops.object.mode_set(mode="OBJECT")
        view_layer.objects.active = previous


def keypoint_empties(collection) -> dict[int, object]:
    """keypoint index -> empty, for the empties of ``collection``."""
    return {int(o[KEYPOINT]): o for o in collection.objects if o.get(ROLE) == "keypoint" and KEYPOINT in o}


def find_role(collection, role: str):
    return next((o for o in collection.objects if o.get(ROLE) == role), None)


def write_keypoints(collection, sequence: Sequence, frame_start: int, empty_size: float = 0.02) -> dict[int, object]:
    """Create or update the keypoint empties (valid keypoints only) and their location keys."""
    positions = backend_to_blender(sequence.keypoints).astype(np.float64)  # [F, P, 3]
    frames = frame_start + np.arange(sequence.frame_count)
    empties = keypoint_empties(collection)
    for index, obj in list(empties.items()):
        if index >= len(sequence.names) or not sequence.valid[index]:
            _remove_object(obj)
            del empties[index]
    for index, name in enumerate(sequence.names):
        if not sequence.valid[index]:
            continue
        obj = empties.get(index)
        if obj is None:
            obj = bpy.data.objects.new(f"kp.{name}", None)
            obj.empty_display_type = "SPHERE"
            obj.empty_display_size = empty_size
            obj[ROLE] = "keypoint"
            obj[KEYPOINT] = index
            collection.objects.link(obj)
            empties[index] = obj
        obj["dynapose4d_name"] = name
        obj.location = positions[0, index]
        curves = animation.fcurves(obj, action_name=f"{obj.name}Action")
        for axis in range(3):
            animation.set_keys(curves, "location", axis, frames, positions[:, index, axis], "LINEAR")
    return empties


def write_armature(context, collection, sequence: Sequence, empties: dict[int, object], frame_start: int):
    """Create (or reuse, when the skeleton is unchanged) the armature, then bake it."""
    rest = backend_to_blender(sequence.keypoints[0]).astype(np.float64)
    bones = skeleton_bones(sequence.edges, sequence.valid, rest)
    arm = find_role(collection, "armature")
    signature = [int(v) for edge in bones for v in edge]
    if arm is not None and list(arm.get(BONES, [])) != signature:
        _remove_object(arm)
        arm = None
    if not bones:
        return None
    if arm is None:
        arm, names = _build_armature(context, collection, sequence.names, bones, rest)
        arm[BONES] = signature
        arm[BONE_NAMES] = names
        for (i, j), name in zip(bones, arm[BONE_NAMES]):
            pose_bone = arm.pose.bones[name]
            loc = pose_bone.constraints.new("COPY_LOCATION")
            loc.target = empties[i]
            track = pose_bone.constraints.new("DAMPED_TRACK")
            track.target, track.track_axis = empties[j], "TRACK_Y"
    bake_rig(arm, backend_to_blender(sequence.keypoints), frame_start)
    return arm


def bone_name(names, i: int, j: int) -> str:
    return f"{names[i]}-{names[j]}"


def _build_armature(context, collection, names, bones, rest):
    data = bpy.data.armatures.new("DynaPose4D rig")
    arm = bpy.data.objects.new("rig", data)
    arm[ROLE] = "armature"
    collection.objects.link(arm)
    created = []
    with editing_bones(context, arm):
        for i, j in bones:
            bone = data.edit_bones.new(bone_name(names, i, j))
            bone.head, bone.tail, bone.roll = rest[i].tolist(), rest[j].tolist(), 0.0
            created.append(bone.name)  # Blender may have made the name unique
    for pose_bone in arm.pose.bones:
        pose_bone.rotation_mode = "QUATERNION"
    data.display_type = "STICK"
    arm.show_in_front = True
    return arm, created


def bake_rig(arm, positions: np.ndarray, frame_start: int) -> None:
    """Key every bone's location, rotation and scale on every frame from keypoint positions
    ``[F, P, 3]`` (Blender frame), as the constraints would pose it."""
    pairs = [tuple(arm[BONES][k : k + 2]) for k in range(0, len(arm[BONES]), 2)]
    bones = [arm.data.bones[name] for name in arm[BONE_NAMES]]
    rest = np.array([np.array(b.matrix_local) for b in bones])
    lengths = np.array([b.length for b in bones])
    location, rotation, scale = bake_bones(positions, pairs, rest, lengths)
    frames = frame_start + np.arange(positions.shape[0])
    curves = animation.fcurves(arm, action_name=f"{arm.name}Action")
    for b, bone in enumerate(bones):
        path = f'pose.bones["{bone.name}"]'
        for axis in range(3):
            animation.set_keys(curves, f"{path}.location", axis, frames, location[:, b, axis])
            animation.set_keys(curves, f"{path}.scale", axis, frames, scale[:, b, axis])
        for axis in range(4):
            animation.set_keys(curves, f"{path}.rotation_quaternion", axis, frames, rotation[:, b, axis])


def rebake_from_empties(collection, frame_start: int, frame_count: int) -> None:
    """Bake the armature again from the empties' current curves (after an animator edited them)."""
    arm = find_role(collection, "armature")
    if arm is None:
        return
    empties = keypoint_empties(collection)
    frames = frame_start + np.arange(frame_count)
    count = max(empties) + 1 if empties else 0
    positions = np.zeros((frame_count, count, 3))
    for index, obj in empties.items():
        curves = animation.fcurves(obj, create=False)
        for axis in range(3):
            positions[:, index, axis] = animation.evaluate(curves, "location", axis, frames) if curves else obj.location[axis]
    bake_rig(arm, positions, frame_start)


def remove_role(collection, role: str) -> None:
    """Remove the collection's object with ``role`` (and its data and animation), if any."""
    obj = find_role(collection, role)
    if obj is not None:
        _remove_object(obj)


def _remove_object(obj) -> None:
    data = obj.data
    animation.remove_animation(obj)
    bpy.data.objects.remove(obj)
    if data is not None and data.users == 0:
        if isinstance(data, bpy.types.Armature):
            bpy.data.armatures.remove(data)
        elif isinstance(data, bpy.types.Mesh):
            key = data.shape_keys
            if key is not None:
                animation.remove_animation(key)
            bpy.data.meshes.remove(data)
