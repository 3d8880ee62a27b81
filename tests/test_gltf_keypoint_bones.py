"""The keypoint skeleton in the splat glTF: one joint per skeleton edge with a skin, at its head
keypoint with +Y towards its tail at every frame, parents first, beside the keypoint empties;
the validator finds no errors but the extension's attribute names."""

import numpy as np
import pytest

from dynapose4d.io.gltf_scene import SceneInfo, _turn_y_to, write_splat_flipbook, write_splat_parts
from dynapose4d.io.gltf_splats import SplatAttributes
from tests.addon_fixtures import Glb, validate_gltf, validation_errors

NAMES = ["root", "neck", "hand_l", "hand_r", "head", "lost"]
EDGES = [(1, 4), (0, 1), (1, 2), (1, 3), (0, 5)]  # a child before its parent, and an edge to an invalid keypoint


def keypoint_tracks(frames=5):
    kp0 = np.array([[0.0, 0.0, 0.0], [0.0, 0.3, 0.05], [0.2, 0.32, 0.0], [-0.18, 0.3, 0.02], [0.02, 0.5, 0.1], [1, 1, 1]])
    out = []
    for a in np.linspace(0.0, 1.2, frames):
        rot = np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])
        out.append(kp0 @ rot.T + np.array([0.1 * a, -0.05 * a, 0.2 * a]))
    return np.asarray(out)


def info(frames=5):
    return SceneInfo(fps=10.0, frame_count=frames, names=NAMES, valid=np.array([1, 1, 1, 1, 1, 0], bool),
                     edges=np.array(EDGES), positions=keypoint_tracks(frames))


def splats(n=40, seed=0):
    rng = np.random.default_rng(seed)
    return SplatAttributes.from_backend(rng.normal(0, 0.2, (n, 3)), rng.normal(size=(n, 4)), np.full((n, 3), -4.0),
                                        np.zeros((n, 1)), rng.normal(size=(n, 3)), None)


def test_the_smallest_turn_takes_y_to_each_direction():
    d = np.array([[1.0, 0, 0], [0, 1, 0], [0, -1, 0], [0.3, -0.2, 0.9], [0, 0, 0]])
    r = _turn_y_to(d)
    np.testing.assert_allclose(r @ r.transpose(0, 2, 1), np.tile(np.eye(3), (5, 1, 1)), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(r), 1.0, atol=1e-12)
    unit = d[:4] / np.linalg.norm(d[:4], axis=1, keepdims=True)
    np.testing.assert_allclose(r[:4, :, 1], unit, atol=1e-12)


@pytest.mark.parametrize("form", ["parts", "flipbook"])
def test_the_splat_file_carries_the_keypoint_bones(tmp_path, form):
    path = tmp_path / f"{form}.glb"
    scene = info()
    if form == "parts":
        f = scene.frame_count
        write_splat_parts(path, splats(), np.zeros(40, int), np.zeros((1, 3)), np.tile(np.eye(3), (f, 1, 1, 1)), np.zeros((f, 1, 3)), scene)
    else:
        write_splat_flipbook(path, [splats(seed=k) for k in range(scene.frame_count)], scene)
    glb = Glb(path)
    skin = next(s for s in glb.json["skins"] if s["name"] == "keypoint_skeleton")
    names = [glb.json["nodes"][j]["name"] for j in skin["joints"]]
    # Every valid edge once, parents first: neck's bones under root>neck, the invalid keypoint left out.
    assert sorted(names) == sorted(["kpbone.root.neck", "kpbone.neck.head", "kpbone.neck.hand_l", "kpbone.neck.hand_r"])
    assert names[0] == "kpbone.root.neck"
    neck = skin["joints"][0]
    assert all(j in glb.json["nodes"][neck]["children"] for j in skin["joints"][1:])
    inverse_bind = glb.accessor(skin["inverseBindMatrices"]).reshape(-1, 4, 4).transpose(0, 2, 1)
    tracks = scene.positions
    for key in (0, 2, 4):
        world = glb.node_matrices(key)
        for joint, name in zip(skin["joints"], names):
            a, b = (NAMES.index(n) for n in name.split(".")[1:])
            np.testing.assert_allclose(world[joint][:3, 3], tracks[key, a], atol=1e-6)
            direction = (tracks[key, b] - tracks[key, a]) / np.linalg.norm(tracks[key, b] - tracks[key, a])
            np.testing.assert_allclose(world[joint][:3, 1], direction, atol=1e-5)
            if key == 0:  # bound at frame 0: joint matrix x inverse bind is the identity there
                np.testing.assert_allclose(world[joint] @ inverse_bind[skin["joints"].index(joint)], np.eye(4), atol=1e-6)
    # The empties are still there, one per valid keypoint.
    assert {n["name"] for n in glb.json["nodes"] if n["name"].startswith("kp.")} == {f"kp.{n}" for n in NAMES[:5]}
    assert {m["code"] for m in validation_errors(validate_gltf(path))} == {"MESH_PRIMITIVE_INVALID_ATTRIBUTE"}


def test_blenders_importer_makes_an_armature_of_them(tmp_path):
    bpy = pytest.importorskip("bpy")
    write_splat_flipbook(tmp_path / "f.glb", [splats(seed=k) for k in range(3)], info(3))
    bpy.ops.wm.read_factory_settings(use_empty=True)
    try:
        bpy.ops.import_scene.gltf(filepath=str(tmp_path / "f.glb"))
        armatures = [o for o in bpy.data.objects if o.type == "ARMATURE"]
        assert len(armatures) == 1
        assert sorted(b.name for b in armatures[0].data.bones) == sorted(
            ["kpbone.root.neck", "kpbone.neck.head", "kpbone.neck.hand_l", "kpbone.neck.hand_r"])
    finally:
        bpy.ops.wm.read_factory_settings(use_empty=True)
