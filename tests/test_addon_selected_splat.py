"""Animate what is selected, and import a result folder, on real bpy: the splat layouts other tools
leave on objects read in world space, the Animate job's PLY is that splat, and the result of a
real `dynapose4d animate` on it lands exactly on the selected object, through a folder import and
through the frames a server sends. The folder import of a real `dynapose4d demo` makes the objects
a live import makes."""

import shutil
import subprocess
import sys

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")
from mathutils import Matrix  # noqa: E402

import blender_addon  # noqa: E402
from blender_addon import properties  # noqa: E402
from blender_addon.format.coords import backend_to_blender  # noqa: E402
from blender_addon.format.sequence import rotations_to_blender  # noqa: E402
from blender_addon.format.splats import SH_C0, Splats, read_ply, to_world, write_ply  # noqa: E402
from blender_addon.scene import importer, rig  # noqa: E402
from blender_addon.scene.attributes import foreach_get, set_attribute  # noqa: E402
from blender_addon.scene.result_import import SOURCE, import_result_folder  # noqa: E402
from blender_addon.scene.selected_splat import describe, read_splats, write_selected_ply  # noqa: E402
from tests.addon_fixtures import fresh_blender, make_sequence  # noqa: E402,F401
from tests.test_addon_splats import layouts_of, random_splats  # noqa: E402

pytestmark = pytest.mark.usefixtures("fresh_blender")
TYPES = {1: "FLOAT", 3: "FLOAT_VECTOR", 4: "QUATERNION"}


@pytest.fixture(scope="module")
def registered():
    """The add-on registered (the panel's settings exist); asked for by name, so that
    tests/test_addon_bpy5.py can collect these tests beside the scene tests."""
    blender_addon.register()
    yield
    blender_addon.unregister()


def placed(obj):
    """A transform with every part: a move, a turn and a uniform scale."""
    obj.matrix_world = Matrix.Translation((1.5, -0.5, 0.3)) @ Matrix.Rotation(0.6, 4, (0.2, 0.3, 1.0)) @ Matrix.Scale(1.7, 4)
    bpy.context.view_layer.update()
    return np.array(obj.matrix_world)


def splat_object(name, positions, attributes):
    mesh = bpy.data.meshes.new(name)
    mesh.vertices.add(len(positions))
    mesh.attributes["position"].data.foreach_set("vector", np.ascontiguousarray(positions, np.float32).ravel())
    for key, values in attributes.items():
        if key != "position":
            values = np.asarray(values)
            set_attribute(mesh, key, values, TYPES[1 if values.ndim == 1 else values.shape[1]])
    obj = bpy.data.objects.new(name, mesh)
    bpy.context.scene.collection.objects.link(obj)
    return obj


def world_vertices(obj) -> np.ndarray:
    """The object's frame-0 points (its mesh, the Basis) where the scene shows them."""
    local = foreach_get(obj.data.vertices, "co", (len(obj.data.vertices), 3)).astype(np.float64)
    m = np.array(obj.matrix_world)
    return local @ m[:3, :3].T + m[:3, 3]


@pytest.mark.parametrize("layout", ["3dgs-ply", "reshot", "blender-splat"])
def test_each_tools_splat_reads_in_world_space(layout):
    s = random_splats(200)
    obj = splat_object("splat", s.positions, layouts_of(s)[layout])
    m = placed(obj)
    assert describe(obj).ok and "200 splats" in describe(obj).text
    found, world = read_splats(obj)
    expected = to_world(s, m)
    assert found == layout
    for name in ("positions", "scales", "opacities", "sh_dc", "sh_rest"):
        np.testing.assert_allclose(getattr(world, name), getattr(expected, name), atol=2e-5, err_msg=name)
    np.testing.assert_allclose(np.abs(np.sum(world.rotations * expected.rotations, axis=1)), 1.0, atol=1e-5)


def test_splats_kept_as_faces_are_read_at_the_faces_centres():
    """KIRI 3DGS Render's face mode: one quad per Gaussian, its attributes on the faces."""
    s = random_splats(30, rest=0)
    corners = np.array([[-1, -1, 0], [1, -1, 0], [1, 1, 0], [-1, 1, 0]], float) * 0.01
    mesh = bpy.data.meshes.new("faces")
    mesh.from_pydata((s.positions[:, None] + corners[None]).reshape(-1, 3).tolist(), [],
                     [list(range(4 * i, 4 * i + 4)) for i in range(30)])
    attrs = {k: v for k, v in layouts_of(random_splats(30))["3dgs-ply"].items() if not k.startswith("f_rest_")}
    for key, values in attrs.items():
        set_attribute(mesh, key, values, "FLOAT", domain="FACE")
    obj = bpy.data.objects.new("faces", mesh)
    bpy.context.scene.collection.objects.link(obj)
    _, splats = read_splats(obj, world=False)
    np.testing.assert_allclose(splats.positions, s.positions, atol=1e-6)
    assert describe(obj).ok and "30 splats" in describe(obj).text


def test_blenders_own_ply_import_is_a_splat_and_writes_back_the_same_file(tmp_path):
    s = random_splats(300, rest=15)
    bpy.ops.wm.ply_import(filepath=str(write_ply(tmp_path / "in.ply", s)))
    obj = bpy.context.selected_objects[0]
    assert describe(obj).ok and "3DGS PLY" in describe(obj).text
    back = read_ply(write_selected_ply(obj, str(tmp_path)))  # identity transform: the same Gaussians
    for name in ("positions", "scales", "opacities", "sh_dc", "sh_rest"):
        np.testing.assert_allclose(getattr(back, name), getattr(s, name), rtol=1e-4, atol=1e-5, err_msg=name)


def test_a_dynapose4d_import_is_a_splat_where_the_scene_shows_it():
    seq = make_sequence(count=120)
    coll = importer.import_sequence(bpy.context, seq, "job-s", importer.ImportOptions(frame_start=1))
    obj = rig.find_role(coll, "gaussians")
    layout, world = read_splats(obj)
    assert layout == "dynapose4d"
    np.testing.assert_allclose(world.positions, world_vertices(obj), atol=1e-5)
    np.testing.assert_allclose(world.opacities, seq.opacities, atol=1e-6)
    np.testing.assert_allclose(world.colors, np.clip(seq.colors, 0, 1), atol=2e-3)


def test_the_panel_says_which_object_and_why_another_is_not_a_splat(registered):
    assert not describe(None).ok and "Select a splat" in describe(None).text
    bpy.ops.mesh.primitive_cube_add()
    cube = bpy.context.active_object
    selection = describe(cube)
    assert not selection.ok and selection.text.startswith("Cube is not a splat") and "KIRI 3DGS Render" in selection.text
    s = bpy.context.scene.dynapose4d
    s.kind, s.animate_input = "animate", "SELECTED"
    with pytest.raises(ValueError, match="Cube is not a splat"):
        properties.job_options(bpy.context, None, bpy.app.tempdir or "/tmp")


def test_the_animate_button_sends_the_selection_and_keeps_its_result_on_it(registered, monkeypatch, tmp_path):
    from blender_addon import runtime

    splats = random_splats(120)
    obj = splat_object("scan", splats.positions, layouts_of(splats)["3dgs-ply"])
    m = placed(obj)
    bpy.context.view_layer.objects.active = obj
    (tmp_path / "clip.mp4").write_bytes(b"not read here")
    s = bpy.context.scene.dynapose4d
    s.kind, s.animate_input, s.video_path, s.up_axis = "animate", "SELECTED", str(tmp_path / "clip.mp4"), "y"
    sessions = []
    monkeypatch.setattr(runtime.STATE, "start_session", lambda *args, **kwargs: sessions.append((args, kwargs)))
    assert bpy.ops.dynapose4d.generate() == {"FINISHED"}
    (args, kwargs), = sessions
    request = kwargs["request"]
    assert request.kind == "animate" and request.settings["up_axis"] == "z"  # Blender's world, whatever the file row says
    sent, expected = read_ply(request.files["ply"]), to_world(splats, m)
    np.testing.assert_allclose(sent.positions, expected.positions, atol=1e-5)
    np.testing.assert_allclose(sent.scales, expected.scales, rtol=1e-4)
    assert args[2].place is False  # the result lands on the selection, not beside it
    # A PLY file is placed beside what the scene holds, as before.
    s.animate_input, s.ply_path = "FILE", request.files["ply"]
    assert bpy.ops.dynapose4d.generate() == {"FINISHED"}
    assert sessions[1][0][2].place is True and sessions[1][1]["request"].settings["up_axis"] == "y"


# -- a result folder ---------------------------------------------------------------------------------

def write_folder(folder, seq, up="+z"):
    """``seq`` as a PLY sequence with its sidecar, the way ``io/sequence.py`` writes one: an
    animate result of a Blender PLY is +Z up (Blender's frame), any other +Y up."""
    import json

    turn = backend_to_blender if up == "+z" else np.asarray
    names = []
    for k in range(seq.frame_count):
        rotations = rotations_to_blender(seq.rotations) if up == "+z" else seq.rotations
        splats = Splats(turn(seq.positions[k]), rotations, seq.scales[k], np.clip(seq.opacities, 0.01, 0.99), (seq.colors - 0.5) / SH_C0)
        names.append(write_ply(folder / f"frame_{k:04d}.ply", splats).name)
    c2w = np.array(seq.camera["c2w"], float)
    c2w[:3] = turn(c2w[:3].T).T if up == "+z" else c2w[:3]
    sidecar = {"format": "dynapose4d.sequence/1", "fps": seq.sampling.fps, "frame_count": seq.frame_count, "time_mode": "clamp",
               "up": up, "coordinates": "input-ply", "frames": names, "times": seq.times.tolist(),
               "camera": {**seq.camera, "c2w": c2w.tolist()},
               "keypoints": {"names": seq.names, "edges": seq.edges, "valid": seq.valid.tolist(), "positions": turn(seq.keypoints).tolist()}}
    (folder / "sequence.json").write_text(json.dumps(sidecar))
    return folder / "sequence.json"


@pytest.mark.parametrize("up", ["+z", "+y"])
def test_a_folder_imports_as_the_same_sequence_imports_live(tmp_path, up):
    """The same result from a server and from a folder: the same points, keypoints and camera."""
    seq = make_sequence(count=150, frames=4)
    turn = np.array(Matrix.Rotation(0.5, 4, (1.0, 0.2, 0.0)))
    seq.camera = {**seq.camera, "c2w": (turn @ np.array(seq.camera["c2w"], float)).tolist()}  # a turned camera
    live = importer.import_sequence(bpy.context, seq, "live", importer.ImportOptions(place=False))
    folder = import_result_folder(bpy.context, str(write_folder(tmp_path, seq, up)), use_result_fps=False)
    bpy.context.view_layer.update()
    for role in ("gaussians", "camera"):
        a, b = rig.find_role(live, role), rig.find_role(folder, role)
        np.testing.assert_allclose(np.array(b.matrix_world), np.array(a.matrix_world), atol=1e-5, err_msg=role)
    np.testing.assert_allclose(world_vertices(rig.find_role(folder, "gaussians")), world_vertices(rig.find_role(live, "gaussians")), atol=1e-5)
    keypoints = [{o["dynapose4d_name"]: o for o in c.objects if o.get(rig.ROLE) == "keypoint"} for c in (live, folder)]
    bpy.context.scene.frame_set(3)
    for name in seq.names:
        np.testing.assert_allclose(keypoints[1][name].matrix_world.translation, keypoints[0][name].matrix_world.translation, atol=1e-5)


# -- the real command line -----------------------------------------------------------------------------

def run_cli(*args):
    done = subprocess.run([sys.executable, "-m", "dynapose4d", *args], capture_output=True, text=True, timeout=600,
                          env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    return done


@pytest.fixture(scope="module")
def lamp_inputs(tmp_path_factory):
    pytest.importorskip("torch")
    from dynapose4d.evaluation.articulated import make_articulated
    from dynapose4d.io import write_ply as backend_write_ply

    from tests.test_image_to_4d import lamp_mp4

    folder = tmp_path_factory.mktemp("lamp")
    lamp = make_articulated("lamp", 800)
    backend_write_ply(folder / "lamp.ply", lamp.static)
    lamp_mp4(folder / "clip.mp4", lamp, frames=6, size=96)
    return folder


def test_an_animated_selection_lands_exactly_on_it(registered, lamp_inputs, tmp_path):
    bpy.ops.wm.ply_import(filepath=str(lamp_inputs / "lamp.ply"))
    selected = bpy.context.selected_objects[0]
    placed(selected)
    bpy.context.view_layer.objects.active = selected
    s = bpy.context.scene.dynapose4d
    s.kind, s.animate_input = "animate", "SELECTED"
    options = properties.job_options(bpy.context, None, str(tmp_path))
    assert options.settings["up_axis"] == "z" and options.ply_path.endswith("lamp.ply")
    _, expected = read_splats(selected)
    extent = float(np.ptp(expected.positions, axis=0).max())
    run_cli("animate", options.ply_path, "--video", str(lamp_inputs / "clip.mp4"), "-o", str(tmp_path / "job"), "--up-axis", "z",
            "--iterations", "3", "--frames", "4", "--no-previews")
    # 1. File > Import > DynaPose4D Result: frame 0 is the selected splat, where it stands.
    coll = import_result_folder(bpy.context, str(tmp_path / "job"), properties.import_options(bpy.context))
    result = rig.find_role(coll, "gaussians")
    assert coll[SOURCE].endswith("sequence.json") and np.allclose(np.array(rig.find_role(coll, "root").matrix_world), np.eye(4))
    assert np.abs(world_vertices(result) - expected.positions).max() < 0.01 * extent
    # 2. The live import: the frames and keypoints the server sends for the same model, imported
    # as the Animate operator imports them (not placed beside).
    from dynapose4d.server.frames import SnapshotFrames

    from blender_addon.format.sequence import Sampling, assemble
    from blender_addon.format.wire import decode_frame

    (tmp_path / "job" / "snapshots").mkdir()
    shutil.copy(tmp_path / "job" / "model.pt", tmp_path / "job" / "snapshots" / "latest.pt")
    frames = SnapshotFrames()
    sampling = Sampling(24.0, 5)
    wire = [decode_frame(frames.frame("j", tmp_path / "job", i, fps=24.0, frame_count=5)[0]) for i in range(5)]
    tracks = frames.keypoints("j", tmp_path / "job", fps=24.0, frame_count=5)
    live = importer.import_sequence(bpy.context, assemble(wire, tracks, sampling), "live", importer.ImportOptions(place=False))
    assert np.abs(world_vertices(rig.find_role(live, "gaussians")) - expected.positions).max() < 0.01 * extent


def test_a_demo_folder_imports_as_a_live_import_does(tmp_path):
    pytest.importorskip("torch")
    run_cli("demo", "-o", str(tmp_path / "demo"), "--iterations", "2")
    coll = import_result_folder(bpy.context, str(tmp_path / "demo" / "sequence" / "sequence.json"))
    roles = {o.get(rig.ROLE) for o in coll.objects}
    assert {"gaussians", "keypoint", "armature", "camera", "root"} <= roles
    assert coll["dynapose4d_frame_count"] == 14 and coll["dynapose4d_fps"] == 7.0 and bpy.context.scene.render.fps == 7
    assert coll.name == "DynaPose4D demo"
    # Its keypoints move as the sidecar says (backend +Y up -> Blender +Z up).
    import json

    sidecar = json.loads((tmp_path / "demo" / "sequence" / "sequence.json").read_text())
    kp = np.asarray(sidecar["keypoints"]["positions"])
    empties = {o["dynapose4d_name"]: o for o in coll.objects if o.get(rig.ROLE) == "keypoint"}
    name = sidecar["keypoints"]["names"][3]
    root = np.array(rig.find_role(coll, "root").matrix_world)
    for k in (0, 13):
        bpy.context.scene.frame_set(1 + k)
        got = np.array(empties[name].matrix_world.translation) - root[:3, 3]
        np.testing.assert_allclose(got, [kp[k, 3, 0], -kp[k, 3, 2], kp[k, 3, 1]], atol=1e-4)
    # Importing it again updates the same collection.
    again = import_result_folder(bpy.context, str(tmp_path / "demo"))
    assert again == coll and len([c for c in bpy.data.collections if c.get(importer.JOB) == coll[importer.JOB]]) == 1
