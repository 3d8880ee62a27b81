"""Retargeting on real bpy: a user's armature follows the keypoints after baking (within a stated
tolerance), keeps no constraints, exports joint animation; presets save and load; bad mappings
are refused by name."""

import json

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")
from mathutils import Vector  # noqa: E402

from blender_addon.format.coords import backend_to_blender  # noqa: E402
from blender_addon.format.retarget import BonePair, PresetError, load_preset, save_preset  # noqa: E402
from blender_addon.scene import export, importer, retarget  # noqa: E402
from tests.addon_fixtures import Glb, fresh_blender, make_sequence, registered, validate_gltf, validation_errors  # noqa: E402,F401

pytestmark = pytest.mark.usefixtures("fresh_blender")
START = 1
# Stated tolerance: bone heads within 1e-4 of their keypoints, aims within 1e-3 rad.
HEAD_TOL, AIM_TOL = 1e-4, 1e-3
MAPPING = [BonePair("Spine", head="root", aim="neck"), BonePair("Arm.L", head="neck", aim="hand_l"), BonePair("Head", head="neck", aim="head")]



def user_armature(name="Character"):
    """A small armature of the user's own, with its own rest pose (not the keypoints')."""
    coll = bpy.data.collections.new("user")
    bpy.context.scene.collection.children.link(coll)
    arm = bpy.data.objects.new(name, bpy.data.armatures.new(name))
    coll.objects.link(arm)
    bpy.context.view_layer.objects.active = arm
    bpy.ops.object.mode_set(mode="EDIT")
    bones = {}
    for bone, head, tail, parent in [("Spine", (0, 0, 0), (0, 0, 0.2), None), ("Arm.L", (0.1, 0, 0.25), (0.3, 0, 0.25), "Spine"),
                                     ("Head", (0, 0, 0.3), (0, 0.05, 0.45), "Spine")]:
        b = arm.data.edit_bones.new(bone)
        b.head, b.tail = head, tail
        if parent:
            b.parent = bones[parent]
        bones[bone] = b
    bpy.ops.object.mode_set(mode="OBJECT")
    arm.location = (0.3, -0.2, 0.1)  # not at the origin: world vs armature space must not mix
    return coll, arm


def job():
    seq = make_sequence(frames=6)
    return seq, importer.import_sequence(bpy.context, seq, "job-r", importer.ImportOptions(frame_start=START))


def check_follows(seq, arm):
    index = {n: i for i, n in enumerate(seq.names)}
    for k in range(seq.frame_count):
        bpy.context.scene.frame_set(START + k)
        kp = backend_to_blender(seq.keypoints[k])
        for p in MAPPING:
            pb = arm.pose.bones[p.bone]
            world = arm.matrix_world @ pb.matrix
            np.testing.assert_allclose(np.array(world.translation), kp[index[p.head]], atol=HEAD_TOL)
            axis = np.array((world.to_3x3() @ Vector((0, 1, 0))).normalized())
            want = kp[index[p.aim]] - kp[index[p.head]]
            angle = np.arccos(np.clip(axis @ (want / np.linalg.norm(want)), -1, 1))
            assert angle < AIM_TOL, (p.bone, k, angle)


def test_the_target_follows_the_keypoints_after_baking_and_exports_joint_animation(tmp_path):
    seq, coll = job()
    user, arm = user_armature()
    bones = retarget.retarget(bpy.context, coll, arm, MAPPING)
    assert bones == ["Spine", "Arm.L", "Head"]
    assert not [c for pb in arm.pose.bones for c in pb.constraints]  # baked: keys only
    check_follows(seq, arm)
    path = export.export_gltf(bpy.context, user, str(tmp_path / "character.glb"), camera=False)
    report = validate_gltf(path)
    assert report["issues"]["numErrors"] == 0, validation_errors(report)
    glb = Glb(path)
    channels = glb.channels()
    for name in ("Spine", "Arm.L", "Head"):
        times, values, _ = channels[(glb.node(name), "rotation")]
        assert len(times) == seq.frame_count and np.ptp(values, axis=0).max() > 1e-3, name  # it moves


def test_the_operator_does_what_the_function_does_and_presets_round_trip(tmp_path):
    seq, coll = job()
    _, arm = user_armature()
    s = bpy.context.scene.dynapose4d
    s.job_id, s.retarget_target = "job-r", arm
    for p in MAPPING:
        item = s.retarget_pairs.add()
        item.bone, item.head, item.aim = p.bone, p.head, p.aim
    s.retarget_preset = str(tmp_path / "mapping.json")
    assert bpy.ops.dynapose4d.retarget_preset(action="SAVE") == {"FINISHED"}
    assert json.loads((tmp_path / "mapping.json").read_text())["pairs"][1] == {"bone": "Arm.L", "head": "neck", "aim": "hand_l"}
    s.retarget_pairs.clear()
    assert bpy.ops.dynapose4d.retarget_preset(action="LOAD") == {"FINISHED"}
    assert [(i.bone, i.head, i.aim) for i in s.retarget_pairs] == [(p.bone, p.head, p.aim) for p in MAPPING]
    assert bpy.ops.dynapose4d.retarget() == {"FINISHED"}
    check_follows(seq, arm)


def test_bad_mappings_and_presets_name_the_problem(tmp_path):
    _, coll = job()
    _, arm = user_armature()
    with pytest.raises(PresetError, match="bone 'Tail' is not in the target armature"):
        retarget.retarget(bpy.context, coll, arm, [BonePair("Tail", head="root")])
    with pytest.raises(PresetError, match="keypoint 'elbow'.*not in this job"):
        retarget.retarget(bpy.context, coll, arm, [BonePair("Spine", head="elbow")])
    with pytest.raises(ValueError, match="armature"):
        retarget.retarget(bpy.context, coll, None, MAPPING)
    (tmp_path / "other.json").write_text('{"format": "something else"}')
    with pytest.raises(PresetError, match="not a DynaPose4D retarget preset"):
        load_preset(tmp_path / "other.json")
    assert load_preset(save_preset(tmp_path / "m", MAPPING)) == MAPPING
