"""The ``poseanything`` and ``cape+tracker`` estimators: interface, pixel convention, fusion, jobs."""

import json

import numpy as np
import pytest
import torch

from dynapose4d.keypoints import ESTIMATORS, Support, SupportKeypoints, TrackResult, make_estimator
from dynapose4d.keypoints.hybrid import CapeTrackerEstimator, FusionConfig, fuse
from dynapose4d.keypoints.poseanything import DEMO_B, PoseAnything, PoseAnythingConfig
from dynapose4d.keypoints.poseanything import weights as W
from dynapose4d.keypoints.poseanything.estimator import PoseAnythingEstimator, similarity_confidence
from dynapose4d.keypoints.poseanything.preprocess import (
    MODEL_PIXEL_OFFSET,
    Geometry,
    output_to_pixels,
    prepare_images,
    support_input,
)
from dynapose4d.keypoints.registry import job_estimator
from dynapose4d.keypoints.synthetic import make_sequence
from tests.test_poseanything import _data_file, golden, small  # noqa: F401 (golden, small: shared fixtures)

pytest_plugins = ["tests.conftest_models"]


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield




def _rgb(golden, name):
    return golden["raw_inputs"]["images"][name].numpy()[..., ::-1].copy()


def test_registry_has_the_learned_estimators():
    assert ESTIMATORS["poseanything"] is PoseAnythingEstimator and ESTIMATORS["cape+tracker"] is CapeTrackerEstimator
    assert PoseAnythingEstimator.needs_weights and CapeTrackerEstimator.needs_weights
    est = job_estimator("poseanything", weights="/nowhere", device="cpu")
    assert est.weights == "/nowhere" and est.device == torch.device("cpu")
    assert job_estimator("tracker", weights="x").name == "tracker"


def test_estimator_matches_the_network_in_frame_pixels(small, golden):
    """Support clicks on the 256 frame -> our raw-image pixels -> the estimator: the same heatmaps and
    points as the network called directly on the demo's tensors, mapped back to the frame."""
    clicks = golden["raw_inputs"]["support_keypoints_xy_256"].numpy()[[0, 1, 2, 3, 4, 6]]  # (3, 200) is in the padding
    geo_s = Geometry.of(241, 180)
    xy_raw = geo_s.from_input(clicks + MODEL_PIXEL_OFFSET)
    edges = [(0, 1), (1, 2), (2, 3), (3, 4), (1, 5)]
    support = Support(_rgb(golden, "support"), SupportKeypoints(xy_raw, edges=edges))
    query = _rgb(golden, "query1")
    frames = np.stack([query, query[:, ::-1], query])
    est = PoseAnythingEstimator(model=small, device="cpu", batch_size=2, recipe="demo")
    res = est.estimate(support, frames)
    assert res.xy.shape == (3, 6, 2) and res.estimator == "poseanything" and res.info["skeleton"] == "support"
    _, maps, weights = support_input(support.image, support.keypoints.xy, recipe="demo")
    torch.testing.assert_close(maps[None], golden["inputs"]["demo_query1"]["target_s"][0][:, [0, 1, 2, 3, 4, 6]],
                               atol=1e-6, rtol=0)
    img_s = golden["inputs"]["demo_query1"]["img_s"][0]
    img_q, geo = prepare_images(frames, "demo")
    with torch.no_grad():
        out = small(img_q, img_s[None].expand(1, 3, -1, -1, -1), maps[None, None].expand(1, 3, -1, -1, -1),
                    weights[None].expand(3, -1) > 0, [edges] * 3)
    np.testing.assert_allclose(res.xy, output_to_pixels(out["output"][-1], geo), atol=1e-3)
    np.testing.assert_allclose(res.xy[0], res.xy[2], atol=1e-4)  # batch position does not matter
    conf = similarity_confidence(out["similarity_map"], out["output"][-1]).numpy()
    np.testing.assert_allclose(res.confidence, conf, atol=1e-5)
    assert ((res.confidence >= 0) & (res.confidence <= 1)).all()


def test_similarity_confidence_is_the_mass_near_the_point():
    sim = torch.full((1, 2, 16, 16), -50.0)
    sim[0, 0, 4, 10] = 50.0  # one sharp peak at cell (row 4, column 10)
    points = torch.tensor([[[10.5 / 16, 4.5 / 16], [8.5 / 16, 8.5 / 16]]])
    conf = similarity_confidence(sim, points)[0]
    assert conf[0].item() == pytest.approx(1.0, abs=1e-6)
    assert conf[1].item() == pytest.approx(9 / 256, abs=1e-6)  # a flat map: the 3x3 cells' share (on a cell centre)
    far = similarity_confidence(sim, torch.tensor([[[0.1, 0.9], [0.5, 0.5]]]))[0]
    assert far[0].item() < 1e-6


def test_mst_skeleton_and_invisible_support_points(small):
    seq = make_sequence("affine", 3, seed=1)
    kp = seq.support.keypoints
    visible = np.ones(kp.n, bool)
    visible[2] = False
    support = Support(seq.support.image, SupportKeypoints(kp.xy, visible), seq.support.mask)
    res = PoseAnythingEstimator(model=small, device="cpu").estimate(support, seq.frames)
    assert res.info["skeleton"] == "mst"
    assert (res.confidence[:, 2] == 0).all() and not res.visible[:, 2].any()
    h, w = seq.frames.shape[1:3]
    inside = (res.xy[..., 0] >= 0) & (res.xy[..., 0] <= w) & (res.xy[..., 1] >= 0) & (res.xy[..., 1] <= h)
    assert not (res.visible & ~inside).any()


def test_missing_weights_fail_with_instructions(tmp_path):
    seq = make_sequence("affine", 2, seed=1)
    est = make_estimator("poseanything", weights=str(tmp_path / "none"), device="cpu")
    with pytest.raises(W.PoseAnythingWeightsError, match="convert-poseanything"):
        est.estimate(seq.support, seq.frames)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(small, golden):
    seq = make_sequence("affine", 3, seed=1)
    cpu = PoseAnythingEstimator(model=small, device="cpu").estimate(seq.support, seq.frames)
    gpu_model = PoseAnything(small.config)
    gpu_model.load_state_dict(small.state_dict())
    gpu = PoseAnythingEstimator(model=gpu_model, device="cuda").estimate(seq.support, seq.frames)
    np.testing.assert_allclose(gpu.xy, cpu.xy, atol=0.05)


# ---------------------------------------------------------------------------------------------
# fusion


def _result(xy, conf, vis=None, name="x"):
    xy = np.asarray(xy, np.float32)
    conf = np.asarray(conf, np.float32)
    vis = np.ones(conf.shape, bool) if vis is None else vis
    return TrackResult(xy, conf, vis, [f"k{i}" for i in range(xy.shape[1])], [], name)


def test_fusion_reanchors_where_the_tracker_fails():
    t = 10
    truth = np.stack([np.linspace(50, 100, t), np.full(t, 80.0)], -1)[:, None]  # one point moving right
    track = truth.copy()
    track[5:] += [25.0, 0.0]  # the tracker slides off at frame 5 and reports it
    tconf = np.full((t, 1), 0.9)
    tconf[5] = 0.1
    det = _result(truth, np.full((t, 1), 0.8))
    xy, conf, vis, info = fuse(_result(track, tconf), det)
    # Mostly re-anchored at once (the tracker's fallback keeps some weight), then the detections pull
    # it the rest of the way while the tracker's motion carries it.
    err = np.linalg.norm(xy - truth, axis=-1)[:, 0]
    assert err[:5].max() < 1e-3 and err[5] < 0.35 * 25.0
    assert (np.diff(err[5:]) < 0).all() and err[-1] < 2.5
    assert info["reanchored"] >= 1
    assert np.abs(_result(track, tconf).xy[5:] - truth[5:]).max() > 20


def test_fusion_smooths_detector_jitter_and_downweights_outliers():
    rng = np.random.default_rng(0)
    t = 40
    truth = np.stack([np.linspace(40, 200, t), 100 + 20 * np.sin(np.linspace(0, 3, t))], -1)[:, None]
    noisy = truth + rng.normal(0, 3.0, truth.shape)
    noisy[20] += [60.0, -40.0]  # one detection on a look-alike part
    track = truth + np.linspace(0, 6, t)[:, None, None] * [1.0, 0.0]  # a slow drift, checks passing
    xy, conf, vis, info = fuse(_result(track, np.full((t, 1), 0.9)), _result(noisy, np.full((t, 1), 0.9)))
    err_det = np.linalg.norm(noisy - truth, axis=-1)
    err = np.linalg.norm(xy - truth, axis=-1)
    assert np.median(err) < 0.75 * np.median(err_det)  # smoother than the detector
    assert err[-5:].mean() < 0.75 * 6.0  # and the drift is pulled back
    assert err[20] < 5.0 and info["outliers"] >= 1  # the outlier barely moved it
    assert conf[20, 0] < conf[19, 0]


def test_hybrid_with_the_tracker_as_detector_keeps_the_tracker(sequences=None):
    seq = make_sequence("affine", 6, seed=2)
    tracker = make_estimator("tracker").estimate(seq.support, seq.frames, seq.masks)
    hybrid = CapeTrackerEstimator(detector=make_estimator("tracker")).estimate(seq.support, seq.frames, seq.masks)
    assert hybrid.estimator == "cape+tracker" and hybrid.info["detector"]["name"] == "tracker"
    np.testing.assert_allclose(hybrid.xy, tracker.xy, atol=0.5)


def test_fusion_config_is_used():
    track = _result(np.zeros((2, 1, 2)), np.full((2, 1), 0.9))
    det = _result(np.full((2, 1, 2), 10.0), np.full((2, 1), 0.9))
    near, *_ = fuse(track, det, config=FusionConfig(detector_sigma_px=100.0))
    far, *_ = fuse(track, det, config=FusionConfig(detector_sigma_px=0.1, tracker_step_sigma_px=50.0))
    assert np.abs(near).max() < 1.0 and np.abs(far[1] - 10.0).max() < 1.0


# ---------------------------------------------------------------------------------------------
# in an animate job, with random weights in the real (full-size) layout


@pytest.fixture(scope="module")
def random_weights(tmp_path_factory):
    torch.manual_seed(3)
    folder = tmp_path_factory.mktemp("poseanything")
    return W.save_folder(PoseAnything(DEMO_B).state_dict(), DEMO_B, folder)


@pytest.mark.parametrize("estimator", ["poseanything", "cape+tracker"])
def test_animate_job_with_the_learned_estimators(tmp_path, random_weights, estimator):
    from dynapose4d.evaluation.articulated import make_articulated
    from dynapose4d.io import write_ply
    from dynapose4d.pipeline import run_job, write_job
    from tests.test_image_to_4d import lamp_mp4

    lamp = make_articulated("lamp", 1500)
    (tmp_path / "inputs").mkdir()
    write_ply(tmp_path / "inputs" / "lamp.ply", lamp.static)
    lamp_mp4(tmp_path / "inputs" / "clip.mp4", lamp, frames=6)
    settings = {"iterations": 2, "frames": 3, "previews": False, "estimator": estimator,
                "keypoint_weights": str(random_weights), "device": "cpu", "num_keypoints": 14}
    write_job(tmp_path, "animate", settings, {"ply": "lamp.ply", "video": "clip.mp4"})
    summary = run_job(tmp_path)
    assert summary["status"] == "finished"
    track = TrackResult.load(tmp_path / "keypoints" / "track.npz")
    assert track.estimator == estimator and track.xy.shape == (3, 14, 2)
    assert np.isfinite(track.xy).all()
    if estimator == "cape+tracker":
        assert track.info["detector"]["name"] == "poseanything"
    assert json.loads((tmp_path / "job.json").read_text())["settings"]["estimator"] == estimator


def test_animate_job_without_weights_fails_clearly(tmp_path, monkeypatch):
    from dynapose4d.evaluation.articulated import make_articulated
    from dynapose4d.io import write_ply
    from dynapose4d.pipeline import run_job, write_job
    from tests.test_image_to_4d import lamp_mp4

    monkeypatch.setenv("DYNAPOSE4D_POSEANYTHING", str(tmp_path / "absent"))
    lamp = make_articulated("lamp", 800)
    (tmp_path / "inputs").mkdir()
    write_ply(tmp_path / "inputs" / "lamp.ply", lamp.static)
    lamp_mp4(tmp_path / "inputs" / "clip.mp4", lamp, frames=4)
    write_job(tmp_path, "animate", {"iterations": 1, "frames": 2, "previews": False, "estimator": "poseanything"},
              {"ply": "lamp.ply", "video": "clip.mp4"})
    with pytest.raises(W.PoseAnythingWeightsError, match="convert-poseanything"):
        run_job(tmp_path)


def test_cli_animate_with_cape_weights_and_without(tmp_path):
    """From the command line: small random weights in a converted folder (the loader builds the
    network from its config.json), then a missing folder: an error naming the fix, no traceback."""
    import os
    import subprocess
    import sys

    from dynapose4d.evaluation.articulated import make_articulated
    from dynapose4d.io import write_ply
    from tests.test_image_to_4d import lamp_mp4
    from tests.test_poseanything_weights import SMALL

    torch.manual_seed(0)
    weights = W.save_folder(PoseAnything(SMALL).state_dict(), SMALL, tmp_path / "weights")
    lamp = make_articulated("lamp", 800)
    write_ply(tmp_path / "lamp.ply", lamp.static)
    lamp_mp4(tmp_path / "clip.mp4", lamp, frames=6, size=96)
    env = dict(os.environ, OMP_NUM_THREADS="1")

    def animate(out, *extra):
        args = [sys.executable, "-m", "dynapose4d", "animate", str(tmp_path / "lamp.ply"), "--video",
                str(tmp_path / "clip.mp4"), "-o", str(tmp_path / out), "--iterations", "2", "--frames", "3",
                "--no-previews", "--device", "cpu", *extra]
        return subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)

    ok = animate("job", "--estimator", "cape+tracker", "--keypoint-weights", str(weights))
    assert ok.returncode == 0, ok.stderr
    track = TrackResult.load(tmp_path / "job" / "keypoints" / "track.npz")
    assert track.estimator == "cape+tracker" and track.info["detector"]["name"] == "poseanything"
    missing = animate("job2", "--estimator", "poseanything", "--keypoint-weights", str(tmp_path / "none"))
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    assert "convert-poseanything" in missing.stderr and "model.safetensors is missing" in missing.stderr


def test_generate_with_cape_refines_anchor_depths_from_zero123_views(tmp_path, random_weights, tiny_zero123, tiny_svd):
    """The paper's multi-view keypoints inside a job: CAPE on Zero-1-to-3 views of the reference
    image (saved, so a resume does not sample again) feeds the dynamic stage's anchor refinement."""
    from dynapose4d.dynamic4d import Dynamic4D
    from dynapose4d.evaluation.articulated import make_articulated
    from dynapose4d.events import StageEvent
    from dynapose4d.keypoints.multiview import load_views
    from dynapose4d.pipeline import run_job, write_job
    from dynapose4d.pipeline.image_to_4d import MULTIVIEW_AZIMUTHS
    from tests.test_image_to_4d import TINY, lamp_png

    (tmp_path / "inputs").mkdir()
    lamp_png(tmp_path / "inputs" / "lamp.png", make_articulated("lamp", 1500))
    settings = dict(TINY, zero123=str(tiny_zero123["zero123-xl"]), svd=str(tiny_svd), estimator="poseanything",
                    keypoint_weights=str(random_weights), device="cpu", num_keypoints=8)
    write_job(tmp_path, "generate", settings, {"image": "lamp.png"})
    events = []
    assert run_job(tmp_path, events.append)["status"] == "finished"
    assert ("multiview_keypoints", "finished") in [(e.stage, e.status) for e in events if isinstance(e, StageEvent)]
    views = load_views(tmp_path / "keypoints" / "views.npz")
    assert len(views) == len(MULTIVIEW_AZIMUTHS) and all(v.xy.shape == (8, 2) for v in views)
    azimuths = [np.degrees(np.arctan2(v.camera.c2w[0, 3].item(), v.camera.c2w[2, 3].item())) for v in views]
    np.testing.assert_allclose(azimuths, MULTIVIEW_AZIMUTHS, atol=1e-3)  # the views' own cameras
    report = Dynamic4D.load(tmp_path / "model.pt").info["multiview_keypoints"]
    assert report["anchors"] == 8 and 0 <= report["changed"] <= 8
    # Without a CAPE estimator there are no views and no refinement: the tracker's generate job in
    # tests/test_image_to_4d.py checks that.
