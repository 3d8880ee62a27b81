"""A new user's first result, on real bpy: it lands beside Blender's default Cube (not inside it),
framed in the 3D view and selected, named by its input and date; the export still writes it at
the origin; Solid shading gets a hint and a button; the panel picks jobs from the server's list
and shows an error as one line with its details behind a toggle."""

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

import blender_addon  # noqa: E402
from blender_addon import runtime, ui  # noqa: E402
from blender_addon.format.coords import backend_to_blender  # noqa: E402
from blender_addon.format.placement import bounds, overlaps  # noqa: E402
from blender_addon.format.sequence import Sampling  # noqa: E402
from blender_addon.link.follow import Finished, JobSession, JobView, SequenceReady, Status  # noqa: E402
from blender_addon.link.job_list import JobEntry  # noqa: E402
from blender_addon.scene import export, importer, placement  # noqa: E402
from blender_addon.scene.rig import find_role  # noqa: E402
from tests.addon_fixtures import Glb, drawn, make_sequence, registered  # noqa: E402,F401

JOB = "26b85edd1df74c3f8e0f2a7c9b1d4e55"
TITLE = "cat 2025-06-03 14:05"



@pytest.fixture(autouse=True)
def default_scene():
    """Blender's default scene: the Cube at the origin, a camera, a light; the 3D view in Solid."""
    runtime.reset()
    bpy.ops.wm.read_factory_settings(use_empty=False)
    yield bpy.context
    runtime.reset()
    bpy.ops.wm.read_factory_settings(use_empty=True)


def view_3d():
    return next(a.spaces.active for w in bpy.context.window_manager.windows for a in w.screen.areas if a.type == "VIEW_3D")


def world_points(obj) -> np.ndarray:
    local = np.array([v.co for v in obj.data.vertices])
    matrix = np.array(obj.matrix_world)
    return local @ matrix[:3, :3].T + matrix[:3, 3]


def test_the_first_result_lands_beside_the_default_cube_framed_and_selected():
    cube = bpy.data.objects["Cube"]
    assert cube.select_get()  # the default scene's selection
    seq = make_sequence(count=600, frames=4)
    coll = importer.import_sequence(bpy.context, seq, JOB, importer.ImportOptions(), title=TITLE)
    # 1. Named by its input and date, every object under the job's root.
    assert coll.name == f"DynaPose4D {TITLE}"
    root, gaussians = find_role(coll, "root"), find_role(coll, "gaussians")
    assert all(o.parent is root for o in coll.objects if o is not root)
    # 2. Beside the Cube, not inside it: its Gaussians' box is clear of the Cube's.
    bpy.context.view_layer.update()
    box = bounds(world_points(gaussians))
    cube_box = placement.world_box(cube)
    assert root.location.x > 1.0 and not overlaps(box, cube_box)
    np.testing.assert_allclose(world_points(gaussians) - np.array(root.location), backend_to_blender(seq.positions[0]), atol=1e-5)
    # 3. Selected and active, alone; the 3D view centred on it, far enough back to show it whole.
    assert gaussians.select_get() and bpy.context.view_layer.objects.active == gaussians and not cube.select_get()
    view = view_3d().region_3d
    centre = (box[0] + box[1]) / 2
    assert np.linalg.norm(np.array(view.view_location) - centre) < 0.2
    assert view.view_distance > np.linalg.norm(box[1] - box[0]) / 2
    # 4. A newer snapshot rewrites the objects in place and leaves the root where the user put it.
    root.location.x = 5.0
    count = len(coll.objects)
    importer.import_sequence(bpy.context, make_sequence(count=600, frames=4, version=2), JOB, importer.ImportOptions())
    assert root.location.x == 5.0 and len(coll.objects) == count and coll.name == f"DynaPose4D {TITLE}"


def test_an_empty_scene_keeps_the_result_at_the_origin():
    bpy.ops.wm.read_factory_settings(use_empty=True)
    coll = importer.import_sequence(bpy.context, make_sequence(), "job-empty", importer.ImportOptions())
    assert tuple(find_role(coll, "root").location) == (0.0, 0.0, 0.0)
    assert coll.name == "DynaPose4D job-empty"  # no title: the id, as before


def test_the_export_writes_the_result_where_the_backend_put_it(tmp_path):
    seq = make_sequence(count=300, frames=4)
    coll = importer.import_sequence(bpy.context, seq, JOB, importer.ImportOptions(), title=TITLE)
    root = find_role(coll, "root")
    moved = tuple(root.location)
    assert moved[0] > 1.0
    glb = Glb(export.export_gltf(bpy.context, coll, str(tmp_path / "moved.glb")))
    positions, _ = glb.morph_frames("gaussians", seq.sampling.fps)
    np.testing.assert_allclose(positions, seq.positions, atol=1e-5)
    t, values, _ = glb.channels()[(glb.node("kp.head"), "translation")]
    np.testing.assert_allclose(values, seq.keypoints[:, 4], atol=1e-5)
    assert coll.name not in [n.get("name") for n in glb.json["nodes"]]  # the root stays out of the file
    assert tuple(root.location) == moved  # and where it was in the scene


def queued_session(messages, job_id=JOB):
    session = JobSession(lambda: None, Sampling(24.0, 4), job_id=job_id)
    for message in messages:
        session.queue.put(message)
    return session


def test_solid_shading_gets_a_hint_and_a_button():
    state = runtime.STATE
    status = {"id": JOB, "kind": "generate", "state": "done", "created_at": 1748952300.0, "inputs": {"image": {"filename": "cat.png"}}}
    view = JobView()
    view.apply_status(status)
    state.session = queued_session([Status(view), SequenceReady(make_sequence(frames=4)), Finished(view)])
    state.import_options = importer.ImportOptions()
    reports = state.tick(bpy.context)
    assert ("INFO", placement.COLOUR_HINT) in reports and state.colour_hint == placement.COLOUR_HINT
    assert any(text.startswith("DynaPose4D job cat ") and text.endswith(" is done") for _, text in reports)
    coll = importer.job_collection(bpy.context.scene, JOB, create=False)
    assert coll.name == f"DynaPose4D {view.title}" and view.title.startswith("cat 20")
    log = drawn(ui.DYNAPOSE4D_PT_main)
    assert ("operator", "dynapose4d.show_colours") in log
    bpy.ops.dynapose4d.show_colours()
    assert view_3d().shading.type == "MATERIAL" and state.colour_hint is None
    assert placement.colour_hint(bpy.context) is None


# -- the panel, drawn into a recorder ------------------------------------------------------------------


def test_the_job_is_picked_from_the_server_s_list():
    state = runtime.STATE
    s = bpy.context.scene.dynapose4d
    log = drawn(ui.DYNAPOSE4D_PT_result)
    assert ("menu", "dynapose4d.pick_job", "Choose a job") in log and ("prop", "job_id") not in log
    state.jobs = [JobEntry(JOB, "generate", "done", 1748952300.0, "cat"), JobEntry("f" * 32, "demo", "running", 1748952000.0, "demo")]
    from blender_addon import operators

    assert [item[:2] for item in operators._job_items(None, bpy.context)] == [(e.id, e.label) for e in state.jobs]
    bpy.ops.dynapose4d.pick_job(job=JOB)
    assert s.job_id == JOB
    label = state.jobs[0].label
    assert label.startswith("Generate · cat · done · ")
    assert ("menu", "dynapose4d.pick_job", label) in drawn(ui.DYNAPOSE4D_PT_result)


def test_an_error_is_one_line_with_details_behind_a_toggle():
    state = runtime.STATE
    state.error = ("Traceback (most recent call last):\n  File \"worker.py\", line 3, in run\n"
                   "dynapose4d.weights.registry.ModelNotFoundError: model 'svd' is not available on this machine.")
    log = drawn(ui.DYNAPOSE4D_PT_main)
    labels = [e[2].get("text") for e in log if e[0] == "label"]
    assert "model 'svd' is not available on this machine." in labels
    assert not any("Traceback" in (t or "") for t in labels) and ("prop", "dynapose4d_error_details") in log
    bpy.context.window_manager.dynapose4d_error_details = True
    labels = [e[2].get("text") for e in drawn(ui.DYNAPOSE4D_PT_main) if e[0] == "label"]
    assert "Traceback (most recent call last):" in labels


def test_the_panel_says_which_kinds_need_which_model():
    state = runtime.STATE
    state.health.info = {"version": "0.1.0", "device": "cpu", "models": []}
    s = bpy.context.scene.dynapose4d
    for kind, words in (("demo", "Demo needs no model"), ("animate", "Animate needs no model")):
        s.kind = kind
        assert ("label", (), {"text": words, "icon": "CHECKMARK"}) in drawn(ui.DYNAPOSE4D_PT_main)
    from blender_addon.link.models import ModelRow, ModelsView

    state.models.view = ModelsView([ModelRow("zero123-xl", "Zero123-XL", "zero123", used_by="Generate (the default View Model)"),
                                    ModelRow("svd", "Stable Video Diffusion img2vid (14 frames)", "svd", state="present",
                                             used_by="Generate without a video of yours")])
    s.kind = "generate"
    labels = [(e[2].get("text"), e[2].get("icon")) for e in drawn(ui.DYNAPOSE4D_PT_main) if e[0] == "label"]
    assert ("Zero123-XL: Generate (the default View Model)", "X") in labels
    assert ("Stable Video Diffusion img2vid (14 frames): Generate without a video of yours", "CHECKMARK") in labels
    assert ("Download models in the add-on's preferences (Models)", "INFO") in labels
