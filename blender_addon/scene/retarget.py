"""Put the keypoint motion onto a user's armature: constraints to the keypoint empties, then baked.

For each :class:`~..format.retarget.BonePair` the target bone gets Copy Location (its head on
the ``head`` keypoint's empty) and/or Damped Track (its Y axis towards the ``aim`` keypoint's
empty). The result is then baked to location/rotation keys on every frame of the job's range
(the visual pose, bone by bone from the root down, so a child's keys are relative to its
parent's baked pose) and the constraints are removed: the target plays and exports alone.
"""

from __future__ import annotations

import numpy as np

from ..format.retarget import BonePair, check_mapping
from . import animation
from .rig import keypoint_empties

TAG = "DynaPose4D retarget"


def keypoint_names(collection) -> dict[str, object]:
    """keypoint name -> its empty, in the job's collection."""
    return {o["dynapose4d_name"]: o for o in keypoint_empties(collection).values() if "dynapose4d_name" in o}


def retarget(context, collection, target, pairs: list[BonePair], *, bake: bool = True) -> list[str]:
    """Drive ``target`` (an armature object) by the job's keypoints; returns the bones driven."""
    if target is None or target.type != "ARMATURE":
        raise ValueError("choose an armature object as the retarget target")
    empties = keypoint_names(collection)
    check_mapping(pairs, sorted(empties), [b.name for b in target.data.bones])
    # 1. Constraints (replacing any an earlier retarget left).
    for p in pairs:
        pose_bone = target.pose.bones[p.bone]
        for c in [c for c in pose_bone.constraints if c.name.startswith(TAG)]:
            pose_bone.constraints.remove(c)
        if p.head:
            c = pose_bone.constraints.new("COPY_LOCATION")
            c.name, c.target = f"{TAG} head", empties[p.head]
        if p.aim:
            c = pose_bone.constraints.new("DAMPED_TRACK")
            c.name, c.target, c.track_axis = f"{TAG} aim", empties[p.aim], "TRACK_Y"
    if bake:
        start = int(collection.get("dynapose4d_frame_start", context.scene.frame_start))
        count = int(collection.get("dynapose4d_frame_count", context.scene.frame_end - start + 1))
        bake_pose(context, target, [p.bone for p in pairs], start, count)
    return [p.bone for p in pairs]


def bake_pose(context, arm, bone_names: list[str], frame_start: int, frame_count: int) -> None:
    """Key the visual pose of ``bone_names`` on every frame, then remove our constraints."""
    scene = context.scene
    # Parents before children: a child's local pose is taken against its parent's baked one.
    order = sorted(bone_names, key=lambda n: len(arm.data.bones[n].parent_recursive))
    frames = frame_start + np.arange(frame_count)
    loc = {n: np.zeros((frame_count, 3)) for n in order}
    rot = {n: np.zeros((frame_count, 4)) for n in order}
    current = scene.frame_current
    for pb in (arm.pose.bones[n] for n in order):
        pb.rotation_mode = "QUATERNION"
    for k, f in enumerate(frames):
        scene.frame_set(int(f))
        for n in order:
            pb = arm.pose.bones[n]
            local = arm.convert_space(pose_bone=pb, matrix=pb.matrix, from_space="POSE", to_space="LOCAL")
            t, q, _ = local.decompose()
            loc[n][k], rot[n][k] = tuple(t), tuple(q)
    for n in order:
        pb = arm.pose.bones[n]
        for c in [c for c in pb.constraints if c.name.startswith(TAG)]:
            pb.constraints.remove(c)
        q = rot[n]
        for k in range(1, len(q)):
            if (q[k] * q[k - 1]).sum() < 0:
                q[k] *= -1
    curves = animation.fcurves(arm, action_name=f"{arm.name}Retarget")
    for n in order:
        path = f'pose.bones["{n}"]'
        for axis in range(3):
            animation.set_keys(curves, f"{path}.location", axis, frames, loc[n][:, axis])
        for axis in range(4):
            animation.set_keys(curves, f"{path}.rotation_quaternion", axis, frames, rot[n][:, axis])
    scene.frame_set(current)


def mapping_from_settings(items) -> list[BonePair]:
    """The panel's pairs (a CollectionProperty) as plain :class:`BonePair` objects."""
    return [BonePair(i.bone, i.head, i.aim) for i in items if i.bone]

