"""Keypoints: support sets and their JSON, registration, the weight-free tracker, accuracy limits.

Accuracy limits come from scripts/bench_keypoints.py (256 px, 14/25 frames: tracker median
~0.15 px, ~97% within 3 px on synthetic sequences) with margin, checked here on smaller, faster
sequences (128 px, 10 frames). Each accuracy test also checks the do-nothing baseline is far
off, so a tracker that stops moving fails.
"""

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from dynapose4d.keypoints import (
    ESTIMATORS,
    KeypointError,
    KeypointEstimator,
    LKTracker,
    Support,
    SupportKeypoints,
    TrackResult,
    auto_support_keypoints,
    make_estimator,
    minimum_spanning_tree,
    parse_keypoints_json,
)
from dynapose4d.keypoints.draw import confidence_colour, draw_keypoints, draw_track, save_gif, save_strip
from dynapose4d.keypoints.evaluate import Outcome, accuracy, load_dev_scene
from dynapose4d.keypoints.support import trackability
from dynapose4d.keypoints.synthetic import KINDS, Affine, SplineWarp, make_sequence, random_texture
from dynapose4d.imaging.register import register
from dynapose4d.imaging.tps import ThinPlateSpline

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sequences():
    """Small synthetic sequences (128 px, 10 frames), made once per module."""
    return {kind: make_sequence(kind, num_frames=10, size=128, seed=1) for kind in KINDS}


def _textured(size=128, seed=0):
    """An object on white: a textured disc, and its mask."""
    rng = np.random.default_rng(seed)
    tex = random_texture(rng, size)
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    mask = (xx - size / 2) ** 2 + (yy - size / 2) ** 2 < (0.35 * size) ** 2
    return np.where(mask[..., None], tex, 1.0).astype(np.float32), mask


def _warp(image, matrix_ours, size):
    """Warp an image by a 2x3 map given in our pixel convention (white outside)."""
    to_cv = np.array([[1, 0, -0.5], [0, 1, -0.5], [0, 0, 1]])
    m = (to_cv @ np.vstack([matrix_ours, [0, 0, 1]]) @ np.linalg.inv(to_cv))[:2]
    return cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=(1, 1, 1))


# ---------------------------------------------------------------------------------------------
# support keypoints and their JSON


def test_support_keypoints_count_must_be_within_1_to_100():
    with pytest.raises(KeypointError, match=r"within 1\.\.100; got 0"):
        SupportKeypoints(np.zeros((0, 2)))
    with pytest.raises(KeypointError, match=r"within 1\.\.100; got 101"):
        SupportKeypoints(np.ones((101, 2)))
    assert SupportKeypoints(np.ones((100, 2))).n == 100
    assert issubclass(KeypointError, ValueError)


def test_support_keypoints_outside_the_image_name_the_point():
    with pytest.raises(KeypointError, match=r"keypoint 1 \('tail'\) at \(70\.0, 5\.0\) lies outside the 64x32 image"):
        SupportKeypoints(np.array([[10, 10], [70, 5]]), names=["head", "tail"], image_size=(64, 32))
    # the image border itself is inside: continuous coordinates run from 0 to W
    SupportKeypoints(np.array([[0.0, 0.0], [64.0, 32.0]]), image_size=(64, 32))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(xy=np.array([[1.0, np.nan]])), "non-finite"),
        (dict(xy=np.zeros((2, 3))), r"\[N, 2\]"),
        (dict(xy=np.zeros((2, 2)), names=["a", "a"]), "'a' is used twice"),
        (dict(xy=np.zeros((2, 2)), edges=[[0, 2]]), r"edge \[0, 2\] refers to a keypoint outside 0\.\.1"),
        (dict(xy=np.zeros((2, 2)), edges=[[1, 1]]), "joins a keypoint to itself"),
        (dict(xy=np.zeros((2, 2)), visible=[True]), "1 visibility flags for 2"),
    ],
)
def test_support_keypoints_reject_bad_input(kwargs, message):
    with pytest.raises(KeypointError, match=message):
        SupportKeypoints(**kwargs)


def test_keypoints_json_parses_names_visibility_and_edges():
    text = json.dumps({
        "image_size": [64, 48],
        "keypoints": [{"name": "head", "xy": [10.5, 4]}, {"name": "tail", "xy": [60, 40.25], "visible": False},
                      {"xy": [1, 2]}],
        "edges": [[0, 1], ["tail", "kp02"]],
    })
    kp = parse_keypoints_json(text, image_size=(64, 48))
    np.testing.assert_array_equal(kp.xy, np.array([[10.5, 4], [60, 40.25], [1, 2]], np.float32))
    assert kp.xy.dtype == np.float32
    assert kp.names == ("head", "tail", "kp02")
    np.testing.assert_array_equal(kp.visible, [True, False, True])
    np.testing.assert_array_equal(kp.edges, [[0, 1], [1, 2]])
    assert kp.image_size == (64, 48)


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"keypoints": [', r"not valid JSON \(line 1, column 16\)"),
        ('[[1, 2]]', 'must be an object with a "keypoints" list'),
        ('{"keypoints": []}', r"within 1\.\.100; got 0"),
        ('{"keypoints": [{"xy": [1]}]}', r"keypoint 0 xy must be a pair of finite numbers"),
        ('{"keypoints": [{"xy": [1, "a"]}]}', r"keypoint 0 xy must be a pair"),
        ('{"keypoints": [{"name": "a"}]}', r'keypoint 0 must be an object with an "xy" pair'),
        ('{"keypoints": [{"xy": [1, 2], "visible": "yes"}]}', r'"visible" must be true or false'),
        ('{"keypoints": [{"xy": [1, 2]}], "edges": [["a", 0]]}', r"unknown keypoint 'a'"),
        ('{"keypoints": [{"xy": [100, 2]}]}', r"at \(100\.0, 2\.0\) lies outside the 64x48 image"),
        ('{"image_size": [32, 32], "keypoints": [{"xy": [1, 2]}]}',
         r"made for a 32x32 image but the support image is 64x48"),
    ],
)
def test_keypoints_json_errors_name_the_problem(text, message):
    with pytest.raises(KeypointError, match=message):
        parse_keypoints_json(text, image_size=(64, 48))


def test_keypoints_json_rejects_more_than_100_points():
    text = json.dumps({"keypoints": [{"xy": [1, 1]}] * 101})
    with pytest.raises(KeypointError, match=r"got 101"):
        parse_keypoints_json(text)


def test_support_keypoints_save_load_round_trip(tmp_path):
    kp = SupportKeypoints(np.array([[1.25, 2.5], [30.125, 7.0], [5, 6]]), [True, False, True], ["a", "b", "c"],
                          [[0, 1], [1, 2]], image_size=(40, 20))
    kp.save(tmp_path / "kp.json")
    back = SupportKeypoints.load(tmp_path / "kp.json")
    np.testing.assert_array_equal(back.xy, kp.xy)
    np.testing.assert_array_equal(back.visible, kp.visible)
    np.testing.assert_array_equal(back.edges, kp.edges)
    assert back.names == kp.names and back.image_size == (40, 20)
    # the saved file follows the documented schema
    obj = json.loads((tmp_path / "kp.json").read_text())
    assert obj["keypoints"][1] == {"name": "b", "xy": [30.125, 7.0], "visible": False}


def test_support_rejects_keypoints_made_for_another_image_size():
    kp = SupportKeypoints(np.array([[1.0, 1.0]]), image_size=(32, 32))
    with pytest.raises(KeypointError, match="refer to a 32x32 image but the support image is 64x48"):
        Support(np.ones((48, 64, 3), np.float32), kp)
    with pytest.raises(KeypointError, match="outside the 64x48 image"):
        Support(np.ones((48, 64, 3), np.float32), SupportKeypoints(np.array([[70.0, 1.0]])))


def test_load_on_white_composites_on_white(tmp_path):
    from dynapose4d.imaging.images import load_on_white

    rgba = np.zeros((4, 6, 4), np.uint8)
    rgba[..., 0] = 255  # red
    rgba[1, 2, 3] = 255  # one opaque pixel
    rgba[2, 3, 3] = 128  # one half-transparent pixel
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    rgb, mask = load_on_white(tmp_path / "a.png")
    np.testing.assert_allclose(rgb[1, 2], [1, 0, 0])
    np.testing.assert_allclose(rgb[0, 0], [1, 1, 1])
    np.testing.assert_allclose(rgb[2, 3], [1, 127 / 255, 127 / 255], atol=1e-6)
    assert mask.sum() == 2 and mask[1, 2] and mask[2, 3]


# ---------------------------------------------------------------------------------------------
# results, registry


def test_track_result_save_load_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    res = TrackResult(rng.uniform(0, 50, (5, 3, 2)), rng.uniform(0, 1, (5, 3)), rng.uniform(size=(5, 3)) > 0.3,
                      ["a", "b", "c"], [[0, 1], [1, 2]], "tracker", {"registration": {"success": True, "n": 3}})
    res.save(tmp_path / "track.npz")
    back = TrackResult.load(tmp_path / "track.npz")
    np.testing.assert_array_equal(back.xy, res.xy)
    np.testing.assert_array_equal(back.confidence, res.confidence)
    np.testing.assert_array_equal(back.visible, res.visible)
    np.testing.assert_array_equal(back.edges, res.edges)
    assert back.names == ("a", "b", "c") and back.estimator == "tracker" and back.info == res.info
    assert back.xy.dtype == np.float32


def test_track_result_rejects_confidence_outside_unit_interval():
    with pytest.raises(KeypointError, match=r"confidence must lie in \[0, 1\]"):
        TrackResult(np.zeros((2, 1, 2)), np.full((2, 1), 1.5), np.ones((2, 1), bool), ["a"], [])


def test_registry_is_a_plain_dict_of_estimators():
    assert set(ESTIMATORS) == {"tracker", "static", "poseanything", "cape+tracker"}
    for name, cls in ESTIMATORS.items():
        assert issubclass(cls, KeypointEstimator) and cls.name == name
        assert cls.needs_weights is (name in ("poseanything", "cape+tracker"))
    est = make_estimator("tracker", window=15)
    assert isinstance(est, LKTracker) and est.config.window == 15
    message = "unknown keypoint estimator 'nope'; choose one of: cape\\+tracker, poseanything, static, tracker"
    with pytest.raises(KeypointError, match=message):
        make_estimator("nope")


# ---------------------------------------------------------------------------------------------
# automatic support keypoints


def test_minimum_spanning_tree_matches_scipy():
    from scipy.sparse.csgraph import minimum_spanning_tree as scipy_mst
    from scipy.spatial.distance import cdist

    xy = np.random.default_rng(3).uniform(0, 100, (20, 2))
    edges = minimum_spanning_tree(xy)
    assert edges.shape == (19, 2)
    ours = np.linalg.norm(xy[edges[:, 0]] - xy[edges[:, 1]], axis=1).sum()
    assert ours == pytest.approx(scipy_mst(cdist(xy, xy)).sum(), rel=1e-9)
    # a tree: all points reached
    assert set(edges.ravel()) == set(range(20))


def test_minimum_spanning_tree_keeps_bones_on_the_object():
    # A U-shaped object: the two arm tips are close across the gap, but the bone between them
    # would cross background, so the tree goes round through the base.
    mask = np.zeros((100, 100), bool)
    mask[10:90, 10:25] = mask[10:90, 75:90] = mask[75:90, 10:90] = True
    xy = np.array([[17, 15], [82, 15], [17, 82], [82, 82]], float)
    plain = {tuple(sorted(e)) for e in minimum_spanning_tree(xy).tolist()}
    masked = {tuple(sorted(e)) for e in minimum_spanning_tree(xy, mask).tolist()}
    assert (0, 1) in plain and (0, 1) not in masked
    assert masked == {(0, 2), (2, 3), (1, 3)}


def test_auto_support_keypoints_are_spread_on_the_foreground():
    image, mask = _textured(128)
    kp = auto_support_keypoints(image, mask, 14)
    assert kp.n == 14 and kp.xy.dtype == np.float32 and kp.image_size == (128, 128)
    cols, rows = kp.xy[:, 0].astype(int), kp.xy[:, 1].astype(int)
    assert mask[rows, cols].all()
    d = np.linalg.norm(kp.xy[:, None] - kp.xy[None], axis=-1) + np.eye(14) * 1e9
    # 14 points on a disc of radius 45 px: farthest-point sampling keeps them > 10 px apart
    assert d.min() > 10
    assert kp.edges.shape == (13, 2) and set(kp.edges.ravel()) == set(range(14))
    # deterministic, and the mask defaults to the non-white pixels
    np.testing.assert_array_equal(auto_support_keypoints(image, None, 14).xy, kp.xy)


def test_auto_support_keypoints_errors():
    image, mask = _textured(64)
    with pytest.raises(KeypointError, match=r"within 1\.\.100; got 0"):
        auto_support_keypoints(image, mask, 0)
    with pytest.raises(KeypointError, match=r"got 101"):
        auto_support_keypoints(image, mask, 101)
    with pytest.raises(KeypointError, match="foreground mask is empty"):
        auto_support_keypoints(np.ones((32, 32, 3), np.float32))


def test_trackability_ignores_the_silhouette_of_a_flat_object():
    image, mask = _textured(96)
    flat = np.where(mask[..., None], np.float32([0.6, 0.3, 0.2]), 1.0).astype(np.float32)
    inside = mask & (cv2.erode(mask.astype(np.uint8), np.ones((15, 15), np.uint8)) == 0)  # the rim
    assert trackability(flat, mask)[mask].max() < 1e-7
    assert trackability(flat)[inside].max() > 1e-4  # without the mask the silhouette counts
    assert np.median(trackability(image, mask)[mask]) > 1e-4


# ---------------------------------------------------------------------------------------------
# thin-plate spline


def test_tps_interpolates_and_reproduces_affine_maps():
    rng = np.random.default_rng(1)
    src = rng.uniform(0, 100, (12, 2))
    dst = src + rng.normal(0, 3, src.shape)
    tps = ThinPlateSpline(src, dst)
    np.testing.assert_allclose(tps(src), dst, atol=1e-8)
    a = np.array([[1.1, 0.2], [-0.3, 0.9]])
    affine = ThinPlateSpline(src, src @ a.T + [5, -2], regularization=0.5)
    q = rng.uniform(-20, 120, (30, 2))
    np.testing.assert_allclose(affine(q), q @ a.T + [5, -2], atol=1e-8)


def test_tps_leave_one_out_residuals_match_refits():
    rng = np.random.default_rng(2)
    grid = np.stack(np.meshgrid(np.linspace(0, 100, 5), np.linspace(0, 100, 5)), -1).reshape(-1, 2)
    src = grid + rng.uniform(-3, 3, grid.shape)
    dst = src * 1.05 + np.sin(src / 17) * 4
    dst[12] += [9.0, -7.0]  # an outlier in the middle
    loo = ThinPlateSpline(src, dst).leave_one_out_residuals()
    for i in range(25):
        keep = np.arange(25) != i
        np.testing.assert_allclose(loo[i], dst[i] - ThinPlateSpline(src[keep], dst[keep])(src[i]), atol=1e-6)
    assert np.argmax(np.linalg.norm(loo, axis=1)) == 12


def test_tps_with_two_points_falls_back_to_a_similarity():
    tps = ThinPlateSpline(np.array([[0.0, 0.0], [10.0, 0.0]]), np.array([[5.0, 5.0], [5.0, 25.0]]))
    np.testing.assert_allclose(tps(np.array([[5.0, 0.0], [0.0, 10.0]])), [[5.0, 15.0], [-15.0, 5.0]], atol=1e-9)


# ---------------------------------------------------------------------------------------------
# registration


@pytest.mark.parametrize("model", ["similarity", "homography"])
def test_register_recovers_a_known_similarity(model):
    image, mask = _textured(128)
    truth = Affine.similarity(angle_deg=8, scale=1.07, shift=(4.0, -3.0), centre=(64, 64))
    frame = _warp(image, truth.matrix, 128)
    reg = register(image, frame, mask, None, model)
    assert reg.success, reg.reason
    assert reg.model == model and reg.n_inliers >= 20 and reg.reprojection_error_px < 0.5
    pts = np.array([[40.0, 50.0], [90.0, 70.0], [64.0, 30.0]])
    np.testing.assert_allclose(reg.apply(pts), truth.to_frame(pts), atol=0.3)


def test_register_reports_failures():
    image, mask = _textured(96)
    blank = np.ones_like(image)
    reg = register(image, blank)
    assert not reg.success and reg.model == "identity"
    assert "too few SIFT features" in reg.reason and "frame 0" in reg.reason
    np.testing.assert_array_equal(reg.matrix, np.eye(3))
    other, _ = _textured(96, seed=7)  # a different texture: matches are chance ones
    reg = register(image, other, mask, mask)
    assert not reg.success and reg.reason


def test_registration_round_trips_through_a_dict():
    from dynapose4d.imaging.register import Registration

    reg = Registration(True, "similarity", np.array([[1.0, 0.1, 2], [-0.1, 1, 3], [0, 0, 1]]), 40, 30, 0.4)
    back = Registration.from_dict(json.loads(json.dumps(reg.to_dict())))
    np.testing.assert_array_equal(back.matrix, reg.matrix)
    assert back.n_inliers == 30 and back.success


# ---------------------------------------------------------------------------------------------
# synthetic ground truth


def test_synthetic_ground_truth_follows_the_texture():
    """The colour under each true visible point equals its colour in the support image."""
    seq = make_sequence("affine", num_frames=6, size=128, seed=0)

    def sample(img, xy):
        m = (xy - 0.5).astype(np.float32)
        return np.stack([cv2.remap(img[..., c], m[:, :1], m[:, 1:], cv2.INTER_LINEAR)[:, 0] for c in range(3)], 1)

    ref = sample(seq.support.image, seq.support.keypoints.xy)
    for t in range(6):
        np.testing.assert_allclose(sample(seq.frames[t], seq.xy[t]), ref, atol=0.03)
    # the camera offset makes frame 0 differ from the support
    assert np.abs(seq.xy[0] - seq.support.keypoints.xy).max() > 1.0


def test_spline_warp_forward_inverts_backward():
    rng = np.random.default_rng(0)
    ctrl = rng.uniform(20, 100, (9, 2))
    warp = SplineWarp(ctrl, ctrl + rng.normal(0, 4, ctrl.shape), Affine.similarity(angle_deg=5, shift=(2, 1)))
    pts = rng.uniform(30, 90, (20, 2))
    np.testing.assert_allclose(warp.to_canonical(warp.to_frame(pts)), pts, atol=1e-6)


def test_occlusion_sequence_hides_points():
    seq = make_sequence("occlusion", num_frames=10, size=96, seed=1)
    assert seq.visible[0].all() and not seq.visible.all()


# ---------------------------------------------------------------------------------------------
# the tracker


def test_tracker_pixel_convention_on_an_exact_shift():
    """Frame 0 is the support; frame 1 shifts it by (+5, +2) px: positions move by exactly that."""
    image, mask = _textured(128, seed=4)
    shifted = np.ones_like(image)
    shifted[2:, 5:] = image[:-2, :-5]
    kp = auto_support_keypoints(image, mask, 10)
    res = LKTracker().estimate(Support(image, kp, mask), [image, shifted])
    assert res.xy.shape == (2, 10, 2) and res.xy.dtype == np.float32
    np.testing.assert_allclose(res.xy[0], kp.xy, atol=0.05)
    np.testing.assert_allclose(res.xy[1] - kp.xy, np.tile([5.0, 2.0], (10, 1)), atol=0.1)
    assert (res.confidence[1] > 0.7).all() and res.visible.all()
    assert res.names == kp.names
    np.testing.assert_array_equal(res.edges, kp.edges)
    assert res.info["registration"]["success"]


LIMITS = {  # median px, share within 3 px (measured at 128 px / 10 frames: <= 0.3 px and >= 0.84)
    "affine": (0.5, 0.97),
    "tps": (0.6, 0.95),
    "articulated": (0.5, 0.75),
    "occlusion": (0.5, 0.95),
    "brightness": (0.5, 0.97),
}


@pytest.mark.parametrize("kind", KINDS)
def test_tracker_accuracy_on_synthetic_sequences(sequences, kind):
    seq = sequences[kind]
    res = make_estimator("tracker").estimate(seq.support, seq.frames, seq.masks)
    acc = accuracy(res, seq.xy, seq.visible)
    base = accuracy(make_estimator("static").estimate(seq.support, seq.frames, seq.masks), seq.xy, seq.visible)
    median, within = LIMITS[kind]
    assert acc["median_err_px"] < median, acc
    assert acc["within_3px"] > within, acc
    assert base["median_err_px"] > 3 * acc["median_err_px"] and base["within_3px"] < acc["within_3px"]
    assert res.info["registration"]["success"]
    if kind == "occlusion":
        assert acc["hidden_flagged"] > 0.9, acc  # hidden points are not silently trusted


def test_tracker_works_without_masks_on_white(sequences):
    seq = sequences["affine"]
    support = Support(seq.support.image, seq.support.keypoints)  # no mask either
    acc = accuracy(LKTracker().estimate(support, (seq.frames * 255).astype(np.uint8)), seq.xy, seq.visible)
    assert acc["median_err_px"] < 0.6 and acc["within_3px"] > 0.95


def test_tracker_flags_a_frame_that_shows_something_else(sequences):
    seq = sequences["affine"]
    frames = seq.frames.copy()
    other, _ = _textured(128, seed=9)
    frames[5] = other
    res = LKTracker().estimate(seq.support, frames, None)
    flagged = (res.confidence[5] < 0.5) | ~res.visible[5]
    assert flagged.mean() > 0.8
    assert (res.confidence[2] >= 0.5).mean() > 0.9


def test_tracker_refuses_an_unregistrable_support_of_another_shape(sequences):
    seq = sequences["affine"]
    blank = Support(np.ones((64, 96, 3), np.float32), SupportKeypoints(np.array([[10.0, 10.0]])))
    with pytest.raises(KeypointError, match="could not register the support image to frame 0 .*aspect ratios differ"):
        LKTracker().estimate(blank, seq.frames)


def test_tracker_handles_a_video_at_another_resolution(sequences):
    """SVD renders 512 px from a 256 px input: the support is registered across the scale change."""
    seq = sequences["affine"]
    frames = np.stack([cv2.resize(f, (256, 256), interpolation=cv2.INTER_CUBIC) for f in seq.frames[:4]]).clip(0, 1)
    res = LKTracker().estimate(seq.support, frames)
    assert res.info["registration"]["success"] and res.info["registration"]["model"] == "similarity"
    err = np.linalg.norm(res.xy - 2 * seq.xy[:4], axis=-1)  # our pixel convention scales exactly
    assert np.median(err) < 0.6 and err.max() < 3, err
    # an unregistrable support of the same shape falls back to a plain resize, flagged
    flat = Support(np.full((128, 128, 3), 0.5, np.float32), seq.support.keypoints)
    res = LKTracker().estimate(flat, frames)
    reg = res.info["registration"]
    assert not reg["success"] and reg["model"] == "resize" and reg["reason"]
    np.testing.assert_allclose(res.xy[0], 2 * seq.support.keypoints.xy, atol=8)
    assert (res.confidence[0] < 0.5).all()


def test_outcome_pools_and_counts_flags():
    res = TrackResult(np.zeros((3, 2, 2)), [[1, 1], [1, 0.2], [1, 1]], np.ones((3, 2), bool), ["a", "b"], [])
    truth = np.zeros((3, 2, 2))
    truth[1, 1] = [6.0, 8.0]  # a 10 px error, flagged by low confidence
    truth[2, 0] = [0.0, 2.0]
    s = Outcome.pool([Outcome.of(res, truth), Outcome.of(res, truth)]).summary()
    assert s["n"] == 8 and s["bad_flagged"] == 1.0 and s["within_3px"] == 0.75
    assert s["median_err_flagged_px"] == 10.0 and s["median_err_trusted_px"] == 0.0


# ---------------------------------------------------------------------------------------------
# drawing and the scripts


def test_draw_colours_points_by_confidence(tmp_path):
    image = np.ones((20, 30, 3), np.float32)
    xy = np.array([[5.0, 10.0], [25.0, 10.0]])
    im = draw_keypoints(image, xy, [1.0, 0.0], [True, True], [[0, 1]], scale=2, radius=3)
    assert im.size == (60, 40)
    px = np.asarray(im)
    assert tuple(px[20, 10]) == confidence_colour(1.0) and tuple(px[20, 50]) == confidence_colour(0.0)
    assert confidence_colour(1.0)[1] > confidence_colour(1.0)[0] and confidence_colour(0.0) == (255, 0, 0)
    res = TrackResult(np.tile(xy, (3, 1, 1)), np.ones((3, 2)), np.ones((3, 2), bool), ["a", "b"], [[0, 1]])
    frames = draw_track([image] * 3, res, scale=1)
    save_gif(frames, tmp_path / "t.gif")
    save_strip(frames, tmp_path / "t.png", columns=2)
    with Image.open(tmp_path / "t.gif") as gif:
        assert gif.n_frames == 3
    assert Image.open(tmp_path / "t.png").size == (60, 40)


def test_bench_script_ends_with_a_result_line(tmp_path):
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench_keypoints.py"), "--frames", "5", "--size", "96",
         "--kinds", "affine", "--dev-dir", str(tmp_path / "absent")],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout.strip().splitlines()
    assert any("benchmark-dev not found" in line for line in out)
    assert out[-1].startswith("RESULT ")
    result = json.loads(out[-1][len("RESULT "):])
    assert result["median_err_px"] < 1.0 and result["within_3px"] > 0.9 and result["dev_median_err_px"] is None


def test_draw_script_writes_gif_and_png(tmp_path):
    subprocess.run([sys.executable, str(ROOT / "scripts" / "draw_keypoints.py"), "--synthetic", "affine",
                    "--frames", "4", "--size", "96", "--out", str(tmp_path / "a")],
                   capture_output=True, text=True, timeout=120, check=True)
    with Image.open(tmp_path / "a.gif") as gif:
        assert gif.n_frames == 4
    assert (tmp_path / "a.png").is_file()


def test_dev_scene_loads(benchmark_dev):
    seq = load_dev_scene(benchmark_dev / "crane")
    assert seq.frames.shape[1:] == (256, 256, 3) and seq.xy.shape == (len(seq.frames), 14, 2)
    assert seq.visible is None and seq.masks.any()
    np.testing.assert_array_equal(seq.support.keypoints.xy, seq.xy[0])
