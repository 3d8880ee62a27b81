"""Animated GLBs written without Blender, played by three.js 0.187 under Node (its GLTFLoader, the
splat extension and AnimationMixer): rigid splat parts and the flipbook move as the backend says,
under a root node that carries the user's frame; the skinned mesh and morph points as well. The
Khronos validator checks every form."""

import numpy as np
import pytest
import torch

from dynapose4d.io.gltf_scene import (
    SceneInfo,
    write_morph_points,
    write_skinned_mesh,
    write_splat_flipbook,
    write_splat_parts,
)
from dynapose4d.io.gltf_splats import SplatAttributes
from dynapose4d.mesh.splat_parts import fit_splat_parts, handles_of_model
from tests.addon_fixtures import Glb, three_skinned_positions, validate_gltf, validation_errors
from tests.splat_fixtures import covariance, three_read_splats, tiny_result, upper

FPS = 24.0
FRAMES = 8
# An asymmetric user frame: turned about a tilted axis, scaled, moved.
_AXIS = np.array([0.3, 1.0, -0.4]) / np.linalg.norm([0.3, 1.0, -0.4])
_K = np.array([[0, -_AXIS[2], _AXIS[1]], [_AXIS[2], 0, -_AXIS[0]], [-_AXIS[1], _AXIS[0], 0]])
USER_R = np.eye(3) + np.sin(0.7) * _K + (1 - np.cos(0.7)) * _K @ _K
USER_S, USER_T = 2.5, np.array([0.4, -1.2, 3.0])


def to_user(x):
    return USER_S * np.asarray(x) @ USER_R.T + USER_T


@pytest.fixture(scope="module")
def result():
    model = tiny_result()
    times = model.times(FRAMES, FPS)
    with torch.no_grad():
        g, kp = model.sample(times)
    cam = model.camera
    info = SceneInfo(FPS, FRAMES, (USER_R, USER_S, USER_T),
                     {"c2w": cam.c2w.numpy(), "fovy_deg": float(np.degrees(float(cam.fovy))), "width": 256, "height": 256},
                     list(model.keypoints.names), model.keypoints.anchors.valid.numpy(), model.keypoints.edges.numpy(), kp.double().numpy())
    return model, times, g, info


def attributes(g):
    g = g.detach()
    return SplatAttributes.from_backend(g.means.numpy(), g.quats.numpy(), g.log_scales.numpy(), g.opacity_logits.numpy(), g.sh_dc.numpy())


def splat_errors(report):
    return sorted({(m["code"], m["message"]) for m in validation_errors(report)})


def test_three_plays_the_rigid_parts(result, tmp_path):
    model, times, g, info = result
    static = model.static
    parts = fit_splat_parts(static.means.double().numpy(), g.means.double().numpy(), handles_of_model(model, times), static.opacities.numpy())
    path = write_splat_parts(tmp_path / "parts.glb", attributes(static), parts.label, parts.pivots, parts.rotations, parts.translations, info)
    check = [0, 3, FRAMES - 1]
    out = three_read_splats(path, [f / FPS for f in check])
    names = [s["name"] for s in out["splats"]]
    assert names == [f"splatpart{p:02d}" for p in range(parts.num_parts)]  # three.js drops the dot
    moved = parts.moved(static.means.double().numpy())
    cov_rest = covariance(static.quats.double().numpy(), static.scales.double().numpy())
    for k, f in enumerate(check):
        for p, s in enumerate(out["splats"]):
            members = np.flatnonzero(parts.label == p)
            M = out["frames"][k][p]
            world = s["center"] @ M[:3, :3].T + M[:3, 3]
            np.testing.assert_allclose(world, to_user(moved[f, members]), atol=2e-5)
            # The splats turn with their part: M Sigma M^T = s^2 (R_user R_part) Sigma (...)^T.
            A = USER_S * USER_R @ parts.rotations[f, p]
            local = s["covariance"][:, [0, 1, 2, 1, 3, 4, 2, 4, 5]].reshape(-1, 3, 3)
            np.testing.assert_allclose(upper(M[:3, :3] @ local @ M[:3, :3].T), upper(A @ cov_rest[members] @ A.T), rtol=2e-3, atol=1e-9)
        # Against the full deformation: within the reported rigid error.
        err = np.linalg.norm(moved[f] - g.means[f].double().numpy(), axis=-1)
        assert err.max() / parts.max_motion == pytest.approx(parts.err_max[f], rel=1e-6)
    doc = Glb(path).json
    root = doc["nodes"][doc["scenes"][0]["nodes"][0]]
    assert root["name"] == "DynaPose4D" and root["extras"]["dynapose4d"]["keypoints"] == list(model.keypoints.names)
    assert splat_errors(validate_gltf(path)) == [("MESH_PRIMITIVE_INVALID_ATTRIBUTE", "Invalid attribute name.")]


def test_keypoint_empties_and_camera_are_in_the_users_frame(result, tmp_path):
    model, times, g, info = result
    path = write_splat_flipbook(tmp_path / "flip.glb", [attributes(g.map(lambda t, i=i: t[i])) for i in (0, 1)],
                                SceneInfo(FPS, 2, info.user_frame, info.camera, info.names, info.valid, info.edges, info.positions[:2]))
    glb = Glb(path)
    for key in (0, 1):
        world = glb.node_matrices(key)
        for p, name in enumerate(info.names):
            np.testing.assert_allclose(world[glb.node(f"kp.{name}")][:3, 3], to_user(info.positions[key, p]), atol=1e-5)
    cam = world[glb.node("camera")]
    c2w = np.asarray(info.camera["c2w"])
    np.testing.assert_allclose(cam[:3, 3], to_user(c2w[:3, 3]), atol=1e-5)
    np.testing.assert_allclose(cam[:3, :3] / USER_S, USER_R @ c2w[:3, :3], atol=1e-6)


def test_three_shows_one_flipbook_frame_at_a_time(result, tmp_path):
    model, times, g, info = result
    frames = [attributes(g.map(lambda t, i=i: t[i])) for i in range(3)]
    path = write_splat_flipbook(tmp_path / "flip.glb", frames, SceneInfo(FPS, 3, info.user_frame))
    out = three_read_splats(path, [0.0, 1.0 / FPS, 2.0 / FPS, 1.5 / FPS])
    for k, shown in enumerate([0, 1, 2, 1]):  # STEP keys: between frames the earlier one shows
        scales = [np.linalg.norm(M[:3, 0]) for M in out["frames"][k]]
        assert np.allclose(scales, USER_S * (np.arange(3) == shown), atol=1e-6), (k, scales)
        M = out["frames"][k][shown]
        world = out["splats"][shown]["center"] @ M[:3, :3].T + M[:3, 3]
        np.testing.assert_allclose(world, to_user(g.means[shown].double().numpy()), atol=2e-5)
    assert splat_errors(validate_gltf(path)) == [("MESH_PRIMITIVE_INVALID_ATTRIBUTE", "Invalid attribute name.")]


def test_three_skins_the_mesh_as_the_backend_does(result, tmp_path):
    from dynapose4d.mesh import SkeletonConfig, SurfaceConfig, build_skinned_mesh

    model, times, g, info = result
    sk = build_skinned_mesh(model, times, FPS, SurfaceConfig(target_faces=2000), SkeletonConfig(max_bones=8), surface_error=False)
    s = sk.skeleton
    path = write_skinned_mesh(tmp_path / "mesh.glb", sk.vertices, sk.faces, sk.colors, sk.joints, sk.weights, s.heads, s.parents,
                              s.rotations, s.translations, s.names, info)
    report = validate_gltf(path)
    assert validation_errors(report) == [] and report["issues"]["numWarnings"] == 0, report["issues"]["messages"][:5]
    keys = [0, 4, FRAMES - 1]
    played = three_skinned_positions(path, [k / FPS for k in keys])
    assert played["bones"] == s.num_bones
    expected = sk.skinned()
    for i, k in enumerate(keys):
        np.testing.assert_allclose(played["frames"][i], to_user(expected[k]), atol=1e-4)
    glb = Glb(path)  # and the spec's formula, decoded without three.js
    np.testing.assert_allclose(glb.skinned_positions("mesh", 4), to_user(expected[4]), atol=1e-4)


def test_morph_points_step_through_the_frames(result, tmp_path):
    model, times, g, info = result
    path = write_morph_points(tmp_path / "points.glb", g.means.numpy(), g.rgb[0].clamp(0, 1).numpy(), info)
    report = validate_gltf(path)
    assert validation_errors(report) == [], report["issues"]["messages"][:5]
    glb = Glb(path)
    positions, key_times = glb.morph_frames("points", FPS)
    np.testing.assert_allclose(key_times, np.arange(FRAMES) / FPS, atol=1e-6)
    np.testing.assert_allclose(positions, g.means.double().numpy(), atol=1e-5)  # in the points' node
    world = glb.node_matrices(0)[glb.node("points")]
    np.testing.assert_allclose(world[:3, :3], USER_S * USER_R, atol=1e-6)


def test_an_animate_jobs_result_comes_back_in_the_users_frame(result, tmp_path):
    """A model that records a user frame (an animate job's input PLY, +Z up, elsewhere and
    larger) exports with positions in that frame, +Y up: as ``to_user(..., up="y")`` says."""
    from dynapose4d.dynamic4d import Dynamic4D
    from dynapose4d.pipeline.export import ExportOptions, export_result
    from dynapose4d.userframe import UserFrame, to_user

    model = result[0]
    model.save(tmp_path / "model.pt")
    model = Dynamic4D.load(tmp_path / "model.pt")  # a copy: the fixture's model stays as it is
    frame = UserFrame("input-ply", rotation=tuple(map(tuple, USER_R)), scale=USER_S, translation=tuple(USER_T), up_axis="z")
    model.info = {**model.info, "user_frame": frame.to_dict()}
    model.save(tmp_path / "model.pt")
    export_result(tmp_path / "model.pt", tmp_path / "user.glb", ExportOptions(fps=FPS, frames=FRAMES, splat_motion="flipbook"))
    loaded = Dynamic4D.load(tmp_path / "model.pt")
    gaussians, keypoints = to_user(loaded, *loaded.sample(loaded.times(FRAMES, FPS)), up="y")
    glb = Glb(tmp_path / "user.glb")
    world = glb.node_matrices(3)
    for p, name in enumerate(model.keypoints.names):
        np.testing.assert_allclose(world[glb.node(f"kp.{name}")][:3, 3], keypoints[3, p].numpy(), atol=1e-4)
    node = glb.node("splat.frame0003")
    local = glb.accessor(glb.json["meshes"][glb.json["nodes"][node]["mesh"]]["primitives"][0]["attributes"]["POSITION"])
    np.testing.assert_allclose(local @ world[node][:3, :3].T + world[node][:3, 3], gaussians.means[3].numpy(), atol=1e-4)
