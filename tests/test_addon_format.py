"""The add-on's format side with plain pytest (no bpy): sampling, assembling a sequence, colour
and rotation conversion, the rig's math, and the job requests the panel builds."""

import numpy as np
import pytest

from blender_addon.format.coords import BACKEND_TO_BLENDER, backend_to_blender, blender_to_backend
from blender_addon.format.rig import bake_bones, matrix_to_quaternion, rotation_between, skeleton_bones
from blender_addon.format.sequence import (
    Sampling,
    SequenceError,
    assemble,
    linear_to_srgb,
    rotations_to_blender,
    srgb_to_linear,
)
from blender_addon.format.wire import Frame
from blender_addon.link import job_settings
from blender_addon.link.jobs import JobOptions, JobRequestError, build_request


# -- sampling and sequences -------------------------------------------------------------------------


def test_sampling_for_a_duration_at_the_scene_rate():
    assert Sampling.for_duration(24.0, 2.0).frame_count == 48
    assert Sampling.for_duration(30000 / 1001, 1.0).frame_count == 30
    assert Sampling.for_duration(24.0, 0.001).frame_count == 1
    assert Sampling(25.0, 10, "loop").query() == {"fps": "25.0", "frame_count": 10, "mode": "loop"}
    with pytest.raises(ValueError, match="mode"):
        Sampling(24.0, 10, "bounce")
    with pytest.raises(ValueError, match="fps"):
        Sampling(0.0, 10)
    with pytest.raises(ValueError, match="fps"):
        Sampling(0.005, 10)  # below the server's 0.01: it would answer 422
    with pytest.raises(ValueError, match="frame_count"):
        Sampling(24.0, 0)


def frames_and_tracks(count=4, frames=3, points=2, version=5):
    rng = np.random.default_rng(0)
    out = []
    for i in range(frames):
        out.append(Frame(
            positions=rng.normal(size=(count, 3)).astype(np.float32), rotations=np.tile([1, 0, 0, 0], (count, 1)).astype(np.float32),
            scales=np.full((count, 3), 0.01, np.float32), opacities=np.full(count, 0.5, np.float32),
            colors=np.full((count, 3), 0.25, np.float32), keypoints=np.zeros((points, 3), np.float32),
            header={"frame": {"index": i, "time": i / (frames - 1)}, "snapshot": {"version": version}},
        ))
    tracks = {
        "snapshot": {"version": version}, "fps": 24.0, "frame_count": frames, "names": ["a", "b"][:points],
        "edges": [[0, 1]], "valid": [True, False], "positions": rng.normal(size=(frames, points, 3)).tolist(),
        "times": [i / (frames - 1) for i in range(frames)], "camera": {"c2w": np.eye(4).tolist(), "fovy_deg": 49.1},
    }
    return out, tracks


def test_assemble_stacks_frames_and_keeps_tracks():
    frames, tracks = frames_and_tracks()
    seq = assemble(frames, tracks, Sampling(24.0, 3))
    assert seq.positions.shape == (3, 4, 3) and seq.scales.shape == (3, 4, 3) and seq.colors.shape == (4, 3)
    np.testing.assert_array_equal(seq.positions[2], frames[2].positions)
    np.testing.assert_allclose(seq.keypoints, np.asarray(tracks["positions"], np.float32))
    assert seq.edges == [(0, 1)] and seq.valid.tolist() == [True, False] and seq.version == 5


@pytest.mark.parametrize("break_it, message", [
    (lambda f, t: f.pop(), "got 2 frames"),
    (lambda f, t: f.reverse(), "says it is frame"),
    (lambda f, t: f[1].header["snapshot"].update(version=6), "different snapshots"),
    (lambda f, t: t.update(fps=25.0), "sampled at"),
    (lambda f, t: t.update(edges=[[0, 7]]), "outside"),
])
def test_assemble_refuses_pieces_that_do_not_belong_together(break_it, message):
    frames, tracks = frames_and_tracks()
    break_it(frames, tracks)
    with pytest.raises(SequenceError, match=message):
        assemble(frames, tracks, Sampling(24.0, 3))


def test_srgb_round_trip_and_known_values():
    x = np.array([0.0, 0.04045, 0.5, 1.0], np.float32)
    np.testing.assert_allclose(srgb_to_linear(x), [0.0, 0.04045 / 12.92, 0.21404114, 1.0], rtol=1e-5)
    np.testing.assert_allclose(linear_to_srgb(srgb_to_linear(x)), x, atol=1e-6)


def test_rotations_turn_a_known_gaussian_with_the_world():
    """A flat Gaussian lying level in the backend (thin along +Y, up) lies level in Blender (thin
    along +Z, up): its covariance is C R S^2 R^T C^T, the rotation left-multiplied by the basis
    change. (Conjugating, C R C^T, left this one standing upright, thin along Blender's Y.)"""
    scale = np.array([0.1, 0.001, 0.05])
    level = np.array([[1.0, 0.0, 0.0, 0.0]], np.float32)
    cov = covariance(rotations_to_blender(level)[0], scale)
    np.testing.assert_allclose(cov, np.diag([0.1, 0.05, 0.001]) ** 2, atol=1e-9)
    # and any Gaussian: its covariance in Blender is the backend one seen through the basis change
    rng = np.random.default_rng(1)
    q = rng.normal(size=(5, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    C = BACKEND_TO_BLENDER
    for qi, qb in zip(q, rotations_to_blender(q)):
        np.testing.assert_allclose(covariance(qb, scale), C @ covariance(qi, scale) @ C.T, atol=1e-7)
        np.testing.assert_allclose(quat_matrix(qb), C @ quat_matrix(qi), atol=1e-6)
    # 90 degrees about backend +Y (up) is still a turn about Blender's up after the basis change
    about_up = np.array([[np.cos(np.pi / 4), 0.0, np.sin(np.pi / 4), 0.0]], np.float32)
    turned = quat_matrix(rotations_to_blender(about_up)[0]) @ quat_matrix(rotations_to_blender(level)[0]).T
    np.testing.assert_allclose(turned @ [0, 0, 1.0], [0, 0, 1.0], atol=1e-6)


def covariance(q, scale):
    r = quat_matrix(q)
    return r @ np.diag(np.asarray(scale) ** 2) @ r.T


def quat_matrix(q):
    w, x, y, z = q
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])


def test_coordinate_conversion_keeps_float32():
    p = np.ones((2, 3), np.float32)
    assert backend_to_blender(p).dtype == np.float32 and blender_to_backend(p).dtype == np.float32
    assert backend_to_blender(p.astype(np.float64)).dtype == np.float64


# -- the rig's math ------------------------------------------------------------------------------------


def test_rotation_between_is_the_shortest_arc():
    a, b = np.array([0.0, 1.0, 0.0]), np.array([1.0, 0.0, 0.0])
    r = rotation_between(a, b)
    np.testing.assert_allclose(r @ a, b, atol=1e-12)
    np.testing.assert_allclose(r @ np.array([0.0, 0.0, 1.0]), [0.0, 0.0, 1.0], atol=1e-12)  # the axis a x b stays
    r = rotation_between(a, -a)  # opposite: half a turn
    np.testing.assert_allclose(r @ a, -a, atol=1e-12)
    assert np.linalg.det(r) == pytest.approx(1.0)
    np.testing.assert_allclose(rotation_between(a, a), np.eye(3), atol=1e-12)


def test_matrix_to_quaternion_known_and_round_trip():
    half = np.sqrt(0.5)
    rz90 = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    np.testing.assert_allclose(matrix_to_quaternion(rz90), [half, 0.0, 0.0, half], atol=1e-12)
    rng = np.random.default_rng(3)
    q = rng.normal(size=(50, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    q[q[:, 0] < 0] *= -1
    mats = np.stack([quat_matrix(x) for x in q])
    np.testing.assert_allclose(matrix_to_quaternion(mats), q, atol=1e-9)


def test_skeleton_bones_skip_invalid_repeated_and_degenerate_edges():
    rest = np.array([[0, 0, 0], [0, 0, 1], [0, 0, 1], [1, 0, 0]], float)
    bones = skeleton_bones([(0, 1), (1, 2), (0, 1), (2, 3), (3, 3), (0, 3)], [True, True, True, False], rest)
    assert bones == [(0, 1)]


def test_bake_bones_on_a_hand_computed_bone():
    # A bone along +Z from the origin (Blender's rest matrix for that: its Y axis is +Z).
    rest = np.eye(4)
    rest[:3, :3] = [[1, 0, 0], [0, 0, -1], [0, 1, 0]]  # columns: x, y (= +Z), z
    positions = np.array([
        [[0, 0, 0], [0, 0, 1]],  # rest
        [[1, 0, 0], [1, 2, 0]],  # moved to x=1, pointing +Y, twice as long
    ], float)
    loc, rot, scale = bake_bones(positions, [(0, 1)], rest[None], np.array([1.0]))
    np.testing.assert_allclose(loc[0, 0], 0.0, atol=1e-12)
    np.testing.assert_allclose(rot[0, 0], [1, 0, 0, 0], atol=1e-12)
    np.testing.assert_allclose(scale[:, 0], [[1, 1, 1], [1, 2, 1]], atol=1e-12)
    # pose = matrix_local @ basis: its head is at (1, 0, 0) and its Y axis points along +Y
    basis = np.eye(4)
    basis[:3, :3] = quat_matrix(rot[1, 0])
    basis[:3, 3] = loc[1, 0]
    pose = rest @ basis
    np.testing.assert_allclose(pose[:3, 3], [1, 0, 0], atol=1e-12)
    np.testing.assert_allclose(pose[:3, 1], [0, 1, 0], atol=1e-12)


# -- job requests --------------------------------------------------------------------------------------


def test_requests_send_only_the_kind_s_settings_and_leave_auto_ones_to_the_preset(tmp_path):
    image = tmp_path / "cat.png"
    image.write_bytes(b"png")
    options = JobOptions(kind="generate", settings={"preset": "fast", "iterations": job_settings.AUTO, "seed": 3}, image_path=str(image))
    request = build_request(options)
    assert request.files == {"image": str(image)}
    assert request.settings["preset"] == "fast" and request.settings["seed"] == 3
    assert "iterations" not in request.settings and "gaussians" not in request.settings and "motion" not in request.settings
    demo = build_request(JobOptions(kind="demo", settings={"gaussians": 600, "frames": 5, "iterations": 3}))
    assert demo.files == {} and demo.settings["gaussians"] == 600 and "preset" not in demo.settings


def test_request_settings_are_the_backend_s(tmp_path):
    """Every name the panel sends is a setting the backend declares, and the defaults validate."""
    pipeline = pytest.importorskip("dynapose4d.pipeline")
    files = {}
    for name in ("image.png", "video.mp4", "model.ply"):
        files[name] = tmp_path / name
        files[name].write_bytes(b"x")
    requests = [
        build_request(JobOptions(kind="demo", settings={"gaussians": 600, "frames": 5, "iterations": 3})),
        build_request(JobOptions(kind="generate", image_path=str(files["image.png"]))),
        build_request(JobOptions(kind="animate", ply_path=str(files["model.ply"]), video_path=str(files["video.mp4"]))),
    ]
    for request in requests:
        pipeline.validate_settings(request.kind, request.settings)
        assert set(request.files) <= set(pipeline.INPUTS[request.kind])


def test_requests_name_the_missing_input(tmp_path):
    with pytest.raises(JobRequestError, match="needs an image file"):
        build_request(JobOptions(kind="generate"))
    with pytest.raises(JobRequestError, match="does not exist"):
        build_request(JobOptions(kind="generate", image_path=str(tmp_path / "nope.png")))
    with pytest.raises(JobRequestError, match="needs a ply file"):
        build_request(JobOptions(kind="animate"))
    with pytest.raises(JobRequestError, match="unknown job kind"):
        build_request(JobOptions(kind="dance"))


def test_the_add_on_asks_within_the_server_s_limits():
    frames = pytest.importorskip("dynapose4d.server.frames")
    from blender_addon.format import sequence

    assert (sequence.MIN_FPS, sequence.MAX_FPS, sequence.MAX_FRAME_COUNT) == (frames.MIN_FPS, frames.MAX_FPS, frames.MAX_FRAME_COUNT)


@pytest.mark.parametrize("degree", [1, 2, 3])
def test_view_dependent_colour_turns_with_the_world(degree):
    """The colour a Gaussian shows along a Blender direction d is the one it showed along the
    backend direction C^T d (``sh_rest_to_blender``), for every SH degree."""
    from blender_addon.format.sequence import sh_rest_to_blender
    from blender_addon.format.sh import basis as sh_basis

    k = (degree + 1) ** 2 - 1
    rest = np.random.default_rng(degree).normal(size=(4, k, 3))
    dirs = np.random.default_rng(9).normal(size=(50, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    in_blender = np.einsum("dk,nkc->ndc", sh_basis(dirs, degree), sh_rest_to_blender(rest))
    in_backend = np.einsum("dk,nkc->ndc", sh_basis(blender_to_backend(dirs), degree), rest)
    np.testing.assert_allclose(in_blender, in_backend, atol=1e-5)
    assert sh_rest_to_blender(None) is None
