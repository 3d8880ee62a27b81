"""Blender 5.3 and splats (bpy 5.3 in the trixie root, ``-m window``): a 3DGS PLY imported by
Blender 5.3 is read by the add-on in world space and written back as the PLY the Animate job
sends, equal to the input moved by the object's transform; Blender 5.3's glTF importer reads our
splat file as splats with the keypoint skeleton as an armature. Skips where the root is missing."""

from __future__ import annotations

import numpy as np
import pytest

from blender_addon.format.splats import read_ply, to_world, write_ply
from tests.test_addon_splats import random_splats
from tests.window_fixtures import DRIVERS

pytestmark = pytest.mark.window


def test_a_blender_53_splat_is_animates_input_in_world_space(bpy53_harness, extension_zip, tmp_path):
    splats = random_splats(500, rest=15)
    source = write_ply(tmp_path / "input" / "scan.ply", splats)
    res = bpy53_harness.run(DRIVERS / "bpy53_selected_splat.py", "bpy", files=[extension_zip, source], out_dir=tmp_path / "out",
                            timeout=240)
    result = res["result"] or {}
    assert res["ok"], result.get("error") or res["log"][-3000:]
    sent = read_ply(tmp_path / "out" / result["job"]["ply"])
    expected = to_world(read_ply(source), np.array(result["matrix"]))
    for name in ("positions", "scales", "opacities", "sh_dc", "sh_rest"):
        np.testing.assert_allclose(getattr(sent, name), getattr(expected, name), rtol=1e-4, atol=1e-4, err_msg=name)
    np.testing.assert_allclose(np.abs(np.sum(sent.rotations * expected.rotations, axis=1)), 1.0, atol=1e-4)


def test_blender_53_imports_our_splat_file_with_its_keypoint_bones(bpy53_harness, tmp_path):
    from dynapose4d.io.gltf_scene import write_splat_parts

    from tests.test_gltf_keypoint_bones import info, splats

    scene = info()
    f = scene.frame_count
    label = np.arange(40) % 2
    path = write_splat_parts(tmp_path / "input" / "parts.glb", splats(), label, np.zeros((2, 3)), np.tile(np.eye(3), (f, 2, 1, 1)),
                             np.zeros((f, 2, 3)), scene)
    res = bpy53_harness.run(DRIVERS / "bpy53_import_splat_glb.py", "bpy", files=[path], out_dir=tmp_path / "out", timeout=240)
    result = res["result"] or {}
    assert res["ok"], result.get("error") or res["log"][-3000:]
    clouds = [o for o in result["objects"] if o["type"] == "POINTCLOUD"]
    assert sorted(o["points"] for o in clouds) == [20, 20] and {o["pointcloud"] for o in clouds} == {"GAUSSIAN_SPLAT"}, result["objects"]
    bones = [o["bones"] for o in result["objects"] if o["type"] == "ARMATURE"]
    assert bones == [sorted(["kpbone.root.neck", "kpbone.neck.head", "kpbone.neck.hand_l", "kpbone.neck.hand_r"])], result["objects"]
