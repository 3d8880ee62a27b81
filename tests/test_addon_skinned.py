"""The skinned-mesh output on real bpy: a mesh with an Armature modifier on a keyframed armature,
replaced in place, exported as a glTF skin that the validator accepts and that a numpy reader
poses to the backend's vertices.

No backend or torch here: ``tests/test_addon_bpy5.py`` runs these same tests under bpy 5.x.
"""

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

from blender_addon.format.coords import backend_to_blender  # noqa: E402
from blender_addon.scene import export, importer, rig  # noqa: E402
from blender_addon.scene.attributes import vertex_positions  # noqa: E402
from tests.addon_fixtures import Glb, fresh_blender, make_sequence, make_skinned, three_skinned_positions, validate_gltf, validation_errors  # noqa: E402,F401,E501

pytestmark = pytest.mark.usefixtures("fresh_blender")
START = 1


def imported(output="MESH", skinned=None, frames=6, job="job-m"):
    seq = make_sequence(frames=frames)
    seq.skinned = skinned or make_skinned(frames=frames)
    coll = importer.import_sequence(bpy.context, seq, job, importer.ImportOptions(frame_start=START, output=output))
    return seq, coll


def evaluated(obj):
    dg = bpy.context.evaluated_depsgraph_get()
    ev = obj.evaluated_get(dg)
    mesh = ev.to_mesh()
    try:
        return vertex_positions(mesh).astype(np.float64)
    finally:
        ev.to_mesh_clear()


def test_mesh_output_is_a_mesh_on_a_keyframed_armature_that_plays_the_backend_motion():
    seq, coll = imported()
    mesh, arm = rig.find_role(coll, "mesh"), rig.find_role(coll, "skeleton")
    assert rig.find_role(coll, "gaussians") is None
    assert arm.type == "ARMATURE" and [b.name for b in arm.data.bones] == seq.skinned.names
    assert arm.data.bones["bone_02"].parent.name == "bone_01" and arm.data.bones["bone_00"].parent is None
    mod = mesh.modifiers["Armature"]
    assert mod.type == "ARMATURE" and mod.object == arm and mesh.parent == arm
    assert len(mesh.data.polygons) == len(seq.skinned.faces) and len(mesh.vertex_groups) == 3
    assert max(len(v.groups) for v in mesh.data.vertices) <= 4
    assert all(not c.constraints for c in arm.pose.bones)  # keys, not constraints: plays and exports natively
    for k in (0, 2, 5):
        bpy.context.scene.frame_set(START + k)
        np.testing.assert_allclose(evaluated(mesh), backend_to_blender(seq.skinned.deformed[k]), atol=1e-5)


def test_both_outputs_and_switching_back_to_points():
    _, coll = imported("BOTH")
    assert {rig.find_role(coll, r) is not None for r in ("gaussians", "mesh", "skeleton")} == {True}
    importer.import_sequence(bpy.context, make_sequence(), "job-m", importer.ImportOptions(frame_start=START))
    assert rig.find_role(coll, "mesh") is None and rig.find_role(coll, "skeleton") is None
    assert rig.find_role(coll, "gaussians") is not None
    assert not [m for m in bpy.data.meshes if m.users == 0] and not [a for a in bpy.data.armatures if a.users == 0]


def test_a_new_snapshot_replaces_mesh_and_bones_in_place():
    _, coll = imported()
    names = {o.name for o in bpy.data.objects}
    second = make_skinned(frames=9, bend=-1.0, seed=3)
    seq = make_sequence(frames=9)
    seq.skinned = second
    importer.import_sequence(bpy.context, seq, "job-m", importer.ImportOptions(frame_start=START, output="MESH"))
    assert {o.name for o in bpy.data.objects} == names
    assert len(bpy.data.armatures) == 2 and len(bpy.data.meshes) == 1  # the keypoint rig and ours; our mesh
    mesh = rig.find_role(coll, "mesh")
    bpy.context.scene.frame_set(START + 8)
    np.testing.assert_allclose(evaluated(mesh), backend_to_blender(second.deformed[8]), atol=1e-5)


def test_mesh_output_without_the_skinned_mesh_is_a_clear_error():
    with pytest.raises(ValueError, match="skinned mesh"):
        importer.import_sequence(bpy.context, make_sequence(), "job-x", importer.ImportOptions(output="MESH"))
    with pytest.raises(ValueError, match="output must be one of"):
        importer.ImportOptions(output="SPLATS")


def test_skinned_glb_is_valid_and_poses_to_the_backend_vertices(tmp_path):
    seq, coll = imported()
    path = export.export_gltf(bpy.context, coll, str(tmp_path / "skinned.glb"))
    report = validate_gltf(path)
    assert report["issues"]["numErrors"] == 0, validation_errors(report)
    glb = Glb(path)
    skinned = seq.skinned
    skin = glb.json["skins"][glb.json["nodes"][glb.node("mesh")]["skin"]]
    assert len(skin["joints"]) == 3
    prim = glb.json["meshes"][glb.json["nodes"][glb.node("mesh")]["mesh"]]["primitives"][0]
    weights = glb.accessor(prim["attributes"]["WEIGHTS_0"]).astype(np.float64)
    np.testing.assert_allclose(weights.sum(1), 1.0, atol=1e-3)
    # Joint animation: keyed at i / fps from 0 s, one key per frame.
    channels = glb.channels()
    times = channels[(skin["joints"][1], "rotation")][0]
    np.testing.assert_allclose(times, np.arange(skinned.frame_count) / seq.sampling.fps, atol=1e-6)
    # glTF is +Y up like the backend: the posed vertices are the backend's (order may differ:
    # match by the rest positions).
    rest = glb.accessor(prim["attributes"]["POSITION"]).astype(np.float64)
    order = np.array([np.argmin(np.linalg.norm(skinned.vertices - p, axis=1)) for p in rest])
    np.testing.assert_allclose(rest, skinned.vertices[order], atol=1e-5)
    for k in (0, 3, skinned.frame_count - 1):
        np.testing.assert_allclose(glb.skinned_positions("mesh", k), skinned.deformed[k][order], atol=1e-4)


def test_three_js_plays_the_skinned_glb_like_the_backend(tmp_path):
    """A real engine loader: three.js GLTFLoader + AnimationMixer under Node, advanced to several
    times, skins the vertices to the backend's positions."""
    seq, coll = imported(frames=8)
    path = export.export_gltf(bpy.context, coll, str(tmp_path / "engine.glb"))
    glb = Glb(path)
    prim = glb.json["meshes"][glb.json["nodes"][glb.node("mesh")]["mesh"]]["primitives"][0]
    rest = glb.accessor(prim["attributes"]["POSITION"]).astype(np.float64)
    skinned = seq.skinned
    order = np.array([np.argmin(np.linalg.norm(skinned.vertices - p, axis=1)) for p in rest])
    fps = seq.sampling.fps
    keys = [0, 3, 7]
    played = three_skinned_positions(path, [0.0, 2.5 / fps, 3 / fps, 7 / fps])  # ascending: a clip that ended stays ended
    assert played["bones"] == 3 and max(played["clips"]) == pytest.approx(7 / fps, abs=1e-4)
    for i, k in zip((0, 2, 3), keys):
        np.testing.assert_allclose(played["frames"][i], skinned.deformed[k][order], atol=1e-4)
    # Between keys the engine interpolates the joints (not the vertices): close to the blend of
    # the neighbouring frames, not equal to either.
    between = played["frames"][1]
    assert np.abs(between - skinned.deformed[2][order]).max() > 1e-3
    assert np.abs(between - 0.5 * (skinned.deformed[2] + skinned.deformed[3])[order]).max() < 5e-3


def test_cycles_renders_the_mesh_vertex_colours(tmp_path):
    skinned = make_skinned()
    skinned.colors[:] = [0.9, 0.15, 0.1]  # sRGB red
    seq, coll = imported(skinned=skinned)
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.samples = 4
    scene.render.resolution_x = scene.render.resolution_y = 64
    scene.render.film_transparent = True  # coverage from alpha, whatever the world looks like
    scene.view_settings.view_transform = "Standard"
    sun = bpy.data.objects.new("sun", bpy.data.lights.new("sun", "SUN"))
    sun.data.energy = 4.0
    sun.rotation_euler = (1.3, 0.0, 0.0)  # from the camera's side
    scene.collection.objects.link(sun)
    scene.render.filepath = str(tmp_path / "mesh.png")
    bpy.ops.render.render(write_still=True)
    image = bpy.data.images.load(scene.render.filepath)
    px = np.array(image.pixels[:]).reshape(64, 64, 4)
    covered = px[..., 3] > 0.9
    assert covered.sum() > 20
    mean = px[covered][:, :3].mean(0)
    assert mean[0] > 0.3 and mean[0] > 2 * mean[1] and mean[0] > 2 * mean[2], mean  # red, not the black of a missed attribute


def test_both_outputs_export_to_one_valid_glb(tmp_path):
    seq, coll = imported("BOTH")
    path = export.export_gltf(bpy.context, coll, str(tmp_path / "both.glb"))
    report = validate_gltf(path)
    assert report["issues"]["numErrors"] == 0, validation_errors(report)
    glb = Glb(path)
    positions, times = glb.morph_frames("gaussians", seq.sampling.fps)
    np.testing.assert_allclose(positions, seq.positions, atol=1e-6)
    skins = {s["name"]: s for s in glb.json["skins"]}  # ours and the keypoint rig's armature
    assert len(skins["skeleton"]["joints"]) == seq.skinned.num_bones
