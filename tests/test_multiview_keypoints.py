"""Multi-view keypoints: detections in other views check and refine the lifted anchors' depth."""

import json

import numpy as np
import pytest
import torch

from dynapose4d.cameras import Cameras
from dynapose4d.keypoints import Support, SupportKeypoints
from dynapose4d.keypoints.multiview import ViewDetections, refine_anchor_depths, view_detections, zero123_views
from dynapose4d.keypoints.poseanything import PoseAnything, PoseAnythingConfig
from dynapose4d.keypoints.poseanything.estimator import PoseAnythingEstimator

pytest_plugins = ["tests.conftest_models"]


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


def _exact_views(truth, azimuths=(60.0, -45.0), elevation=15.0, conf=0.9):
    views = []
    for az in azimuths:
        cam = Cameras.orbit(elevation, az, 2.0, width=256)
        xy, _ = cam.project(truth)
        views.append(ViewDetections(cam, xy.numpy(), np.full(len(truth), conf)))
    return views


def test_wrong_depths_move_to_the_truth_and_right_ones_stay():
    torch.manual_seed(0)
    truth = torch.rand(8, 3) * 0.6 - 0.3
    ref = Cameras.orbit(0.0, 0.0, 2.0, width=256)
    pix, z = ref.project(truth)
    wrong = z * torch.tensor([1.2, 0.85, 1.0, 1.0, 1.1, 1.0, 0.9, 1.0])
    lifted = ref.unproject(pix, wrong)
    res = refine_anchor_depths(lifted, ref, _exact_views(truth))
    moved = torch.tensor([True, True, False, False, True, False, True, False])
    assert torch.equal(res.changed, moved)
    assert (res.points - truth).norm(dim=-1).max() < 2e-3
    assert (res.residual_after_px[moved] < 0.5).all() and (res.residual_before_px[moved] > 6).all()
    # The reference pixel never moves: the anchor slides along its ray.
    torch.testing.assert_close(ref.project(res.points)[0], pix, atol=1e-3, rtol=0)
    torch.testing.assert_close(res.depth_before, wrong, atol=1e-5, rtol=0)


def test_disagreeing_or_missing_detections_keep_the_lift():
    torch.manual_seed(1)
    truth = torch.rand(6, 3) * 0.6 - 0.3
    ref = Cameras.orbit(0.0, 0.0, 2.0, width=256)
    pix, z = ref.project(truth)
    lifted = ref.unproject(pix, z * 1.2)
    rng = np.random.default_rng(0)
    garbage = [ViewDetections(v.camera, rng.uniform(0, 256, (6, 2)), np.full(6, 0.9)) for v in _exact_views(truth)]
    assert not refine_anchor_depths(lifted, ref, garbage).changed.any()
    unsure = _exact_views(truth, conf=0.1)  # below min_confidence: not used
    res = refine_anchor_depths(lifted, ref, unsure)
    assert not res.changed.any() and (res.views_used == 0).all()
    invalid = refine_anchor_depths(lifted, ref, _exact_views(truth), valid=torch.zeros(6, dtype=torch.bool))
    assert not invalid.changed.any()
    with pytest.raises(ValueError, match="at least one view"):
        refine_anchor_depths(lifted, ref, [])


def test_benchmark_dev_blob_depths_improve_with_other_views(benchmark_dev):
    """Ground truth: the lift from static_gt puts 4 of blob's keypoints on the wrong surface;
    detections in three Cycles views (true projections + 3 px noise, a stand-in for CAPE on
    Zero-1-to-3 samples) bring them back."""
    from dynapose4d.deform import lift_keypoints
    from dynapose4d.gaussians import Z_UP_TO_Y_UP
    from dynapose4d.io import read_ply

    scene = benchmark_dev / "blob"
    g = read_ply(scene / "static_gt.ply", up_axis="z")
    ref = Cameras.orbit(0.0, 0.0, 2.0, width=256)
    kp2 = torch.tensor(json.loads((scene / "keypoints2d_input.json").read_text())[0])
    kp3 = torch.tensor(json.loads((scene / "keypoints3d.json").read_text())[0]) @ Z_UP_TO_Y_UP.T
    lifted, ok = lift_keypoints(g, ref, kp2)
    rng = np.random.default_rng(0)
    views = []
    for elevation, azimuth in ((0.0, 60.0), (0.0, 300.0), (20.0, 0.0)):
        cam = Cameras.orbit(elevation, azimuth, 2.0, width=256)
        xy, _ = cam.project(kp3)
        views.append(ViewDetections(cam, xy.numpy() + rng.normal(0, 3.0, xy.shape), np.full(14, 0.9)))
    res = refine_anchor_depths(lifted, ref, views, valid=ok)
    before = (lifted - kp3).norm(dim=-1)
    after = (res.points - kp3).norm(dim=-1)
    assert before.max() > 0.3 and after.max() < 0.06
    assert after.mean() < 0.5 * before.mean()


def test_view_detections_with_the_cape_estimator():
    torch.manual_seed(0)
    config = PoseAnythingConfig(embed_dim=8, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8), d_model=32, nhead=4,
                                dim_feedforward=96, similarity_proj_dim=32, dynamic_proj_dim=16, num_feats=16)
    est = PoseAnythingEstimator(model=PoseAnything(config).eval(), device="cpu")
    image = np.ones((64, 64, 3), np.float32)
    image[16:48, 20:44] = [0.9, 0.3, 0.1]
    support = Support(image, SupportKeypoints(np.array([[25.0, 20.0], [40.0, 44.0], [32.0, 32.0]])))
    cams = Cameras.orbit(0.0, torch.tensor([30.0, -30.0]), 2.0, width=64)
    dets = view_detections(est, support, np.stack([image, image[:, ::-1]]), cams)
    assert len(dets) == 2 and dets[0].xy.shape == (3, 2) and dets[1].camera.c2w.shape == (4, 4)
    assert all(((d.confidence >= 0) & (d.confidence <= 1)).all() for d in dets)


def test_zero123_views_give_images_and_their_cameras(tiny_zero123):
    from dynapose4d.guidance.zero123 import Zero123Config, Zero123Guidance

    guidance = Zero123Guidance(Zero123Config(model=str(tiny_zero123["zero123-xl"]), image_size=32))
    reference = np.ones((32, 32, 3), np.float32)
    images, cams = zero123_views(guidance, reference, [45.0, -45.0], elevation=10.0, steps=2, seed=0)
    assert images.shape == (2, 32, 32, 3) and (images >= 0).all() and (images <= 1).all()
    expected = Cameras.orbit(10.0, torch.tensor([45.0, -45.0]), 2.0, width=32)
    torch.testing.assert_close(cams.c2w, expected.c2w)


def test_refine_anchors_rebinds_the_moved_points():
    from dynapose4d.deform import Anchors
    from dynapose4d.deform.deformations import Binding
    from dynapose4d.keypoints.multiview import refine_anchors

    torch.manual_seed(2)
    truth = torch.rand(5, 3) * 0.6 - 0.3
    ref = Cameras.orbit(0.0, 0.0, 2.0, width=256)
    pix, z = ref.project(truth)
    lifted = ref.unproject(pix, z * torch.tensor([1.25, 1.0, 1.0, 1.0, 1.0]))
    handles = torch.rand(20, 3) - 0.5
    anchors = Anchors(lifted, torch.ones(5, dtype=torch.bool), Binding.nearest(lifted, handles, 4))
    refined, report = refine_anchors(anchors, ref, _exact_views(truth), handles, 4)
    assert report.changed.tolist() == [True, False, False, False, False]
    assert (refined.rest[0] - truth[0]).norm() < 2e-3
    expected = Binding.nearest(refined.rest, handles, 4)
    assert torch.equal(refined.binding.index, expected.index)
    torch.testing.assert_close(refined.binding.weights, expected.weights)
