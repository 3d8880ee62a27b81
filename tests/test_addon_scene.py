"""The add-on's scene side on real bpy: a sequence becomes a keyframed point cloud with a keypoint
rig and a reference camera, updates in place, and exports to a GLB that a numpy reader and
the Khronos validator accept.

No backend or torch here: ``tests/test_addon_bpy5.py`` runs these same tests under bpy 5.x.
"""

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")
from mathutils import Quaternion, Vector  # noqa: E402

from blender_addon.format.coords import backend_to_blender  # noqa: E402
from blender_addon.format.sequence import rotations_to_blender, srgb_to_linear  # noqa: E402
from blender_addon.scene import animation, display, export, importer, points, rig  # noqa: E402
from blender_addon.scene.attributes import get_attribute, vertex_positions  # noqa: E402
from blender_addon.scene.display import MODIFIER  # noqa: E402
from tests.addon_fixtures import Glb, fresh_blender, make_sequence, validate_gltf, validation_errors  # noqa: E402,F401
from tests.window.cycles_still import flat_footprint, render_flat_gaussian  # noqa: E402

pytestmark = pytest.mark.usefixtures("fresh_blender")
START = 1


def by_role(coll, role):
    return [o for o in coll.objects if o.get(rig.ROLE) == role]


def imported(sequence=None, job="job-a", **options):
    sequence = sequence or make_sequence()
    coll = importer.import_sequence(bpy.context, sequence, job, importer.ImportOptions(frame_start=START, **options))
    return sequence, coll


def evaluated_points(obj):
    """Vertex positions as Blender evaluates them now (shape keys, without the display modifier)."""
    mod = obj.modifiers[MODIFIER]
    mod.show_viewport = False
    try:
        dg = bpy.context.evaluated_depsgraph_get()
        ev = obj.evaluated_get(dg)
        mesh = ev.to_mesh()
        try:
            return vertex_positions(mesh)
        finally:
            ev.to_mesh_clear()
    finally:
        mod.show_viewport = True


def test_one_collection_per_job_with_its_objects():
    seq, coll = imported()
    assert coll[importer.JOB] == "job-a" and coll.name in bpy.context.scene.collection.children
    assert len(by_role(coll, "gaussians")) == 1 and len(by_role(coll, "armature")) == 1 and len(by_role(coll, "camera")) == 1
    empties = {o["dynapose4d_name"]: o for o in by_role(coll, "keypoint")}
    assert sorted(empties) == sorted(seq.names)
    assert (bpy.context.scene.frame_start, bpy.context.scene.frame_end) == (START, START + seq.frame_count - 1)
    _, other = imported(job="job-b")
    assert other != coll and len(bpy.data.collections) == 2


def test_points_show_each_frame_exactly_and_hold_between_frames():
    seq, coll = imported()
    obj = by_role(coll, "gaussians")[0]
    expected = backend_to_blender(seq.positions)
    scene = bpy.context.scene
    for k in range(seq.frame_count):
        scene.frame_set(START + k)
        values = [b.value for b in obj.data.shape_keys.key_blocks[1:]]
        assert values == [1.0 if j == k else 0.0 for j in range(seq.frame_count)]
        np.testing.assert_allclose(evaluated_points(obj), expected[k], atol=1e-6)
    scene.frame_set(START + 2, subframe=0.7)  # CONSTANT keys: no blending between frames
    np.testing.assert_allclose(evaluated_points(obj), expected[2], atol=1e-6)
    curves = animation.fcurves(obj.data.shape_keys, create=False)
    assert len(curves) == seq.frame_count
    for curve in curves:
        assert [k.co[0] for k in curve.keyframe_points] == [START + k for k in range(seq.frame_count)]
        assert {k.interpolation for k in curve.keyframe_points} == {"CONSTANT"}


def test_point_attributes():
    seq, coll = imported()
    mesh = by_role(coll, "gaussians")[0].data
    color = get_attribute(mesh, "color")
    np.testing.assert_allclose(color[:, :3], srgb_to_linear(seq.colors), atol=1e-6)
    np.testing.assert_allclose(color[:, 3], seq.opacities, atol=1e-6)
    np.testing.assert_allclose(get_attribute(mesh, "opacity"), seq.opacities, atol=1e-6)
    np.testing.assert_allclose(get_attribute(mesh, "scale"), seq.scales[0], rtol=1e-6)
    np.testing.assert_allclose(get_attribute(mesh, "rotation"), rotations_to_blender(seq.rotations), atol=1e-6)
    assert mesh.color_attributes.active_color.name == "color"


def displayed_instances(obj):
    """The display's ellipsoids now: each instance's 4x4 matrix (Blender 4.2-5.2 display)."""
    dg = bpy.context.evaluated_depsgraph_get()
    return np.array([np.array(i.matrix_world) for i in dg.object_instances
                     if i.is_instance and i.parent is not None and i.parent.original == obj])


def moving_sequence():
    """make_sequence with rotations and scales that change every frame."""
    seq = make_sequence(count=200)
    rng = np.random.default_rng(7)
    q = rng.normal(size=(seq.frame_count, seq.count, 4)).astype(np.float32)
    seq.frame_rotations = q / np.linalg.norm(q, axis=-1, keepdims=True)
    seq.scales = seq.scales * np.linspace(1.0, 3.0, seq.frame_count, dtype=np.float32)[:, None, None]
    return seq


@pytest.mark.skipif(display.supports_native_splats(), reason="this Blender draws native splats (tested in bpy 5.3)")
def test_display_draws_each_gaussian_as_its_ellipsoid_turning_and_stretching_per_frame():
    """Every shown Gaussian is an ellipsoid instance: rotation R and scales s of the frame on
    screen, reaching 2 * Radius Scale sigmas: its matrix's linear part is R diag(3 s). Evaluated
    at two frames: the rotations and scales of each frame reach the display (no handler). Each
    scale is widened by the backend's 0.3 px^2 at the Gaussian's depth from the reference camera."""
    seq = moving_sequence()
    _, coll = imported(sequence=seq, radius_scale=1.5)
    obj = by_role(coll, "gaussians")[0]
    assert display.get_input(obj.modifiers[MODIFIER], "Frame Count") == seq.frame_count
    shown = np.flatnonzero(seq.opacities > 0.05)  # the display's default opacity cut-off
    positions = backend_to_blender(seq.positions)
    for k in (1, 4):
        bpy.context.scene.frame_set(START + k)
        matrices = displayed_instances(obj)
        assert len(matrices) == len(shown)
        np.testing.assert_allclose(matrices[:, :3, 3], positions[k, shown], atol=1e-5)  # in point order
        rot = np.array([np.array(Quaternion(q).to_matrix()) for q in rotations_to_blender(seq.frame_rotations[k, shown])])
        widened = np.sqrt(seq.scales[k, shown] ** 2 + points.dilation_variance(seq)[shown, None])
        assert np.abs(widened - seq.scales[k, shown]).max() > 1e-4  # the sequence has a camera: a visible widening
        expected = rot * (3.0 * widened)[:, None, :]
        np.testing.assert_allclose(matrices[:, :3, :3], expected, atol=1e-5)
    assert {m.name for m in bpy.data.materials} >= {display.MATERIAL}


@pytest.mark.skipif(display.supports_native_splats(), reason="this Blender draws native splats (tested in bpy 5.3)")
def test_cycles_draws_a_gaussians_soft_anisotropic_footprint(tmp_path):
    """One flat Gaussian seen from above renders as opacity * exp(-d^2/2) in its own sigmas, to a
    few thousandths: the per-ray falloff of the ellipsoid's material (not a ball, not a disc)."""
    got = render_flat_gaussian(importer, make_sequence(count=1, frames=2), str(tmp_path / "one.exr"), size=48, samples=32, frame_start=START)
    expected, _, _ = flat_footprint(48)
    assert np.abs(got - expected).max() < 0.02, np.abs(got - expected).max()
    assert bpy.context.scene.view_settings.view_transform == "Standard"  # the import's view: colours as a 3DGS viewer


def test_cycles_renders_the_splat_colours(tmp_path):
    """A red cloud renders red with Cycles (it reads no FLOAT_COLOR point attribute: the display
    stores the colour as a vector; without that the splats render black)."""
    seq = make_sequence(count=2000)
    seq.colors[:] = (1.0, 0.0, 0.0)
    seq.opacities[:] = 1.0
    seq.scales[:] = 0.02
    importer.import_sequence(bpy.context, seq, "job-red", importer.ImportOptions(frame_start=START))
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.samples, scene.cycles.use_denoising = 16, False  # 2 left a stochastic dark sample at the centre
    scene.render.resolution_x = scene.render.resolution_y = 32
    scene.view_settings.view_transform = "Standard"
    scene.render.filepath = str(tmp_path / "red.png")
    bpy.ops.render.render(write_still=True)
    image = bpy.data.images.load(scene.render.filepath)
    pixels = np.empty(32 * 32 * 4, np.float32)
    image.pixels.foreach_get(pixels)
    r, g, b = pixels.reshape(32, 32, 4)[16, 16, :3]
    # Red, not black; not quite 1.0 where the soft splats' coverage is sampled (0.94-1.0 seen).
    assert r > 0.9 and g < 0.02 and b < 0.02, (r, g, b)


def test_keypoint_empties_follow_the_tracks():
    seq, coll = imported()
    expected = backend_to_blender(seq.keypoints)
    empties = {int(o[rig.KEYPOINT]): o for o in by_role(coll, "keypoint")}
    for k in range(seq.frame_count):
        bpy.context.scene.frame_set(START + k)
        for index, obj in empties.items():
            np.testing.assert_allclose(np.array(obj.matrix_world.translation), expected[k, index], atol=1e-6)


def test_invalid_keypoints_make_no_empty_and_no_bone():
    seq = make_sequence()
    seq.valid[4] = False  # the head could not be lifted to 3D
    _, coll = imported(seq)
    assert sorted(o["dynapose4d_name"] for o in by_role(coll, "keypoint")) == ["hand_l", "hand_r", "neck", "root"]
    assert [b.name for b in by_role(coll, "armature")[0].data.bones] == ["root-neck", "neck-hand_l", "neck-hand_r"]


def pose(arm):
    return {b.name: (np.array(b.head), np.array(b.tail), np.array(b.matrix)) for b in arm.pose.bones}


def test_baked_rig_equals_the_constraint_rig_and_spans_the_keypoints():
    seq, coll = imported()
    arm = by_role(coll, "armature")[0]
    kp = backend_to_blender(seq.keypoints)
    names = arm[rig.BONE_NAMES]
    assert names == ["root-neck", "neck-hand_l", "neck-hand_r", "neck-head"]
    for bone in arm.pose.bones:
        assert [c.type for c in bone.constraints] == ["COPY_LOCATION", "DAMPED_TRACK"]
    for k in range(seq.frame_count):
        bpy.context.scene.frame_set(START + k)
        driven = pose(arm)
        for name, (i, j) in zip(names, seq.edges):
            np.testing.assert_allclose(driven[name][0], kp[k, i], atol=1e-5)  # head on keypoint i
            np.testing.assert_allclose(driven[name][1], kp[k, j], atol=1e-5)  # tail on keypoint j
        for bone in arm.pose.bones:
            for c in bone.constraints:
                c.mute = True
        bpy.context.view_layer.update()
        baked = pose(arm)
        for name in names:  # the keys alone give the same pose, roll included
            np.testing.assert_allclose(baked[name][2], driven[name][2], atol=1e-5)
        for bone in arm.pose.bones:
            for c in bone.constraints:
                c.mute = False


def test_reference_camera_is_the_front_view():
    _, coll = imported()
    cam = by_role(coll, "camera")[0]
    bpy.context.view_layer.update()
    np.testing.assert_allclose(np.array(cam.matrix_world.translation), [0.0, -2.0, 0.0], atol=1e-6)
    view = cam.matrix_world.to_3x3() @ Vector((0.0, 0.0, -1.0))
    np.testing.assert_allclose(np.array(view), [0.0, 1.0, 0.0], atol=1e-6)  # looks along +Y at the object
    assert cam.data.angle_y == pytest.approx(np.radians(49.1)) and cam.data.sensor_fit == "VERTICAL"
    assert bpy.context.scene.camera == cam


def test_a_new_snapshot_updates_the_same_objects_in_place():
    first, coll = imported(make_sequence(version=1))
    objects = {o.name for o in bpy.data.objects}
    mesh_name = by_role(coll, "gaussians")[0].data.name
    second = make_sequence(version=2, seed=1)
    second_coll = importer.import_sequence(bpy.context, second, "job-a", importer.ImportOptions(frame_start=START))
    assert second_coll == coll and {o.name for o in bpy.data.objects} == objects
    obj = by_role(coll, "gaussians")[0]
    assert obj.data.name == mesh_name and coll["dynapose4d_snapshot"] == 2
    bpy.context.scene.frame_set(START + 3)
    np.testing.assert_allclose(evaluated_points(obj), backend_to_blender(second.positions[3]), atol=1e-6)
    # More Gaussians and frames (densification, a longer duration): the same object, a new mesh.
    third = make_sequence(count=450, frames=9, version=3)
    importer.import_sequence(bpy.context, third, "job-a", importer.ImportOptions(frame_start=START))
    assert {o.name for o in bpy.data.objects} == objects and obj.data.name == mesh_name
    assert len(obj.data.vertices) == 450 and len(obj.data.shape_keys.key_blocks) == 10
    assert len(bpy.data.meshes) == 1
    bpy.context.scene.frame_set(START + 8)
    np.testing.assert_allclose(evaluated_points(obj), backend_to_blender(third.positions[8]), atol=1e-6)


def test_glb_round_trip_reproduces_backend_positions_colours_and_motion(tmp_path):
    seq, coll = imported()
    path = export.export_gltf(bpy.context, coll, str(tmp_path / "result"))
    assert path.suffix == ".glb"
    report = validate_gltf(path)
    assert report["issues"]["numErrors"] == 0, validation_errors(report)
    glb = Glb(path)
    fps = seq.sampling.fps
    # 1. The points: one morph target per frame, STEP weights; glTF (+Y up) = backend frame.
    positions, times = glb.morph_frames("gaussians", fps)
    np.testing.assert_allclose(times, np.arange(seq.frame_count) / fps, atol=1e-6)  # sample i at i / fps
    weights = animation.fcurves(by_role(coll, "gaussians")[0].data.shape_keys, create=False)
    assert weights[0].keyframe_points[0].co[0] == START  # the scene's keys are back where they were
    np.testing.assert_allclose(positions, seq.positions, atol=1e-6)
    prim = glb.json["meshes"][0]["primitives"][0]
    assert prim["mode"] == 0  # POINTS
    color = glb.accessor(prim["attributes"]["COLOR_0"])  # 16-bit normalised: 1/65535 steps
    np.testing.assert_allclose(color[:, :3], srgb_to_linear(seq.colors), atol=2e-5)
    # 2. The empties: translations in backend coordinates at every frame.
    channels = glb.channels()
    for p, name in enumerate(seq.names):
        t, values, interpolation = channels[(glb.node(f"kp.{name}"), "translation")]
        assert interpolation == "LINEAR"
        np.testing.assert_allclose(t, np.arange(seq.frame_count) / fps, atol=1e-6)
        np.testing.assert_allclose(values, seq.keypoints[:, p], atol=1e-5)
    # 3. The joints: animated (sampled from the baked rig), heads on the keypoints.
    for name, (i, _) in zip(["root-neck", "neck-hand_l", "neck-hand_r", "neck-head"], seq.edges):
        node = glb.node(name)
        assert {(node, "translation"), (node, "rotation"), (node, "scale")} <= set(channels)
        rotations = channels[(node, "rotation")][1]
        assert np.ptp(rotations, axis=0).max() > 1e-3  # it moves
    # 4. The camera: the reference view's field of view and its (square) aspect, whatever the
    # scene's resolution was.
    perspective = glb.json["cameras"][0]["perspective"]
    assert perspective["yfov"] == pytest.approx(np.radians(49.1), rel=1e-5)
    assert perspective["aspectRatio"] == pytest.approx(1.0)


def test_glb_camera_aspect_is_the_reference_views_even_in_a_wide_scene(tmp_path):
    scene = bpy.context.scene
    scene.render.resolution_x, scene.render.resolution_y = 1920, 1080
    seq = make_sequence()
    seq.camera = dict(seq.camera, width=320, height=240)
    scene.camera = bpy.data.objects.new("user camera", bpy.data.cameras.new("user camera"))  # not replaced
    _, coll = imported(seq)
    assert (scene.render.resolution_x, scene.render.resolution_y) == (1920, 1080)
    glb = Glb(export.export_gltf(bpy.context, coll, str(tmp_path / "wide.glb")))
    assert glb.json["cameras"][0]["perspective"]["aspectRatio"] == pytest.approx(320 / 240)
    assert (scene.render.resolution_x, scene.render.resolution_y) == (1920, 1080)  # restored


def test_the_reference_camera_made_the_scene_camera_sets_the_render_size():
    scene = bpy.context.scene
    scene.render.resolution_x, scene.render.resolution_y = 1920, 1080
    imported()
    assert (scene.render.resolution_x, scene.render.resolution_y) == (256, 256)


def test_export_after_editing_an_empty_rebakes_the_rig(tmp_path):
    seq, coll = imported()
    head = next(o for o in by_role(coll, "keypoint") if o["dynapose4d_name"] == "head")
    curves = animation.fcurves(head, create=False)
    moved = backend_to_blender(seq.keypoints[:, 4]) + np.array([0.0, 0.0, 0.1])
    frames = START + np.arange(seq.frame_count)
    for axis in range(3):
        animation.set_keys(curves, "location", axis, frames, moved[:, axis])
    export.export_gltf(bpy.context, coll, str(tmp_path / "edited.glb"))
    arm = by_role(coll, "armature")[0]
    for c in (c for b in arm.pose.bones for c in b.constraints):
        c.mute = True
    bpy.context.scene.frame_set(START + 2)
    np.testing.assert_allclose(np.array(arm.pose.bones["neck-head"].tail), moved[2], atol=1e-5)
