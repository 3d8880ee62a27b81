"""The driving video's front end: camera motion (video/stabilise.py), masks on real backgrounds (imaging/masks.py),
a user's ONNX segmentation model, and the candidate scorer (video/score.py).

Synthetic clips with known camera and object motion (testing/synthetic_video.py), and, when
``../shared/benchmark-dev/`` is there, its Cycles renders pasted on a textured background and
filmed by a moving camera."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dynapose4d.imaging.masks import MaskError, OnnxSegmenter, grabcut_sequence, mask_iou
from dynapose4d.pipeline.configs import VideoFrontEnd, animate_config, generate_config
from dynapose4d.pipeline.settings import JobError, validate_settings
from dynapose4d.video.stabilise import CameraMotion, estimate_camera_motion, stabilise_clip, stabilise_video
from dynapose4d.testing.synthetic_video import make_video, paste_and_film, standard_set
from dynapose4d.guidance.svd import SVDConfig, SVDSource
from dynapose4d.video.clip import FileVideoSource
from dynapose4d.video.score import VideoScore, rank_videos, score_video

pytest_plugins = ["tests.conftest_models"]


def corner_error(estimated: np.ndarray, truth: np.ndarray, size: int) -> np.ndarray:
    """``[T]`` mean distance (px) between where the two camera motions put the frame's corners."""
    pts = np.array([[0, 0], [size, 0], [0, size], [size, size]], np.float64)
    a = np.einsum("tij,pj->tpi", estimated[:, :2, :2], pts) + estimated[:, None, :2, 2]
    b = np.einsum("tij,pj->tpi", truth[:, :2, :2], pts) + truth[:, None, :2, 2]
    return np.linalg.norm(a - b, axis=-1).mean(-1)


# -- stabilisation ---------------------------------------------------------------------------------


@pytest.mark.parametrize("background", ["white", "textured"])
def test_stabilisation_recovers_a_known_pan_zoom_and_roll(background):
    video = make_video(size=160, num_frames=10, background=background, pan=(28.0, -10.0), zoom=1.2, roll_deg=6.0,
                       arm_swing_deg=50.0)
    motion = estimate_camera_motion(video.frames, video.masks)
    assert corner_error(motion.matrices, video.camera, 160).max() < 1.5
    # where there is background it is used; on white the object's own corners stand in for it
    assert set(motion.sources[1:]) == {"background" if background == "textured" else "object"}
    last = motion.params()[-1]
    # (on white the swinging arm pulls the object's rigid fit a little)
    assert last["zoom"] == pytest.approx(1.2, abs=0.01) and last["roll"] == pytest.approx(6.0, abs=0.5)
    assert (last["dx"], last["dy"]) == pytest.approx((28.0, -10.0), abs=0.8)
    # a mirrored pan must not pass: the estimate follows the sign of the motion
    flipped = video.camera.copy()
    flipped[:, 0, 2] = 2 * 80 * (1 - flipped[:, 0, 0]) - flipped[:, 0, 2]
    assert corner_error(motion.matrices, flipped, 160).max() > 20


def test_removing_the_camera_motion_puts_every_frame_in_frame_0s_view():
    video = make_video(size=128, num_frames=6, background="white", pan=(20.0, 8.0), zoom=1.25)
    frames, masks, record = stabilise_video(video.frames, video.masks, remove=True)
    assert record["removed"] and len(record["matrices"]) == 6 and record["sources"][0] == "identity"
    assert record["max_displacement_px"] > 20
    # the same as removing the true motion (parts the zoom pushed out of view stay lost)
    truth = CameraMotion(video.camera, record["sources"], record["inliers"], (128, 128))
    _, true_masks = stabilise_clip(video.frames, video.masks, truth)
    for m, t in zip(masks[1:], true_masks[1:]):
        assert mask_iou(m, t) > 0.97
        assert np.linalg.norm(np.argwhere(m > 0.5).mean(0) - np.argwhere(t > 0.5).mean(0)) < 0.3
    assert mask_iou(true_masks[-1], video.masks[-1]) < 0.5  # without removal the object moved away
    # the record round-trips, and measuring again on the stabilised clip finds (nearly) nothing
    assert np.allclose(CameraMotion.from_dict(record).matrices, np.asarray(record["matrices"]))
    again = estimate_camera_motion(frames, masks)
    assert again.displacement_px().max() < 1.5
    # measured but kept
    kept_frames, _, kept = stabilise_video(video.frames, video.masks, remove=False)
    assert not kept["removed"] and np.array_equal(kept_frames, video.frames)


def test_a_still_clip_has_no_camera_motion():
    video = make_video(size=96, num_frames=5, background="textured", arm_swing_deg=60.0)
    motion = estimate_camera_motion(video.frames, video.masks)
    assert motion.displacement_px().max() < 0.3


def test_estimate_rejects_mismatched_masks():
    video = make_video(size=64, num_frames=3)
    with pytest.raises(ValueError, match="3 frames but 2 masks"):
        estimate_camera_motion(video.frames, video.masks[:2])


# -- masks -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "clip",
    [
        dict(arm_swing_deg=70.0, seed=2),  # still camera, moving arm
        dict(arm_swing_deg=50.0, pan=(40.0, 15.0), zoom=1.2, roll_deg=5.0, seed=1),  # moving camera
        dict(arm_swing_deg=120.0, object_shift=(50.0, 0.0), seed=1),  # fast motion
        dict(arm_swing_deg=50.0, centre=(0.2, 0.75), object_shift=(-20.0, 10.0), seed=1),  # touching the border
    ],
    ids=["still-camera", "moving-camera", "fast", "border"],
)
def test_masks_on_a_textured_background_match_the_ground_truth(clip):
    video = make_video(size=192, num_frames=10, background="textured", **clip)
    support = (video.reference, video.reference_mask)
    masks = grabcut_sequence(list(video.frames), support)
    ious = [mask_iou(m, g) for m, g in zip(masks, video.masks)]
    assert np.mean(ious) > 0.85 and min(ious) > 0.75, np.round(ious, 3)


def test_the_registered_seed_and_flow_beat_the_first_release_on_texture():
    video = make_video(size=192, num_frames=10, background="textured", arm_swing_deg=120.0, object_shift=(50.0, 0.0), seed=1)
    support = (video.reference, video.reference_mask)
    new = np.mean([mask_iou(m, g) for m, g in zip(grabcut_sequence(list(video.frames), support), video.masks)])
    old_masks = grabcut_sequence(list(video.frames), support, seed="colour", propagate="previous")
    old = np.mean([mask_iou(m, g) for m, g in zip(old_masks, video.masks)])
    assert new > 0.85 and new > old + 0.15, (new, old)


def test_a_support_from_another_view_does_not_force_its_shape():
    """The registration must not map a different picture onto frame 0 (luma correlation check):
    a reference of another object leaves frame 0 to the colour seed."""
    video = make_video(size=160, num_frames=2, background="white", arm_swing_deg=0.0, seed=0)
    other = make_video(size=160, num_frames=1, background="white", centre=(0.35, 0.4), seed=5)
    flipped = np.ascontiguousarray(other.reference[:, ::-1]), np.ascontiguousarray(other.reference_mask[:, ::-1])
    masks = grabcut_sequence(list(video.frames), flipped)
    assert mask_iou(masks[0], video.masks[0]) > 0.95


def test_mask_options_are_checked():
    video = make_video(size=64, num_frames=2)
    with pytest.raises(MaskError, match="propagate must be one of flow, previous"):
        grabcut_sequence(list(video.frames), propagate="optical")
    with pytest.raises(MaskError, match="seed must be one of"):
        grabcut_sequence(list(video.frames), seed="magic")


# -- a user's ONNX segmentation model --------------------------------------------------------------


def _redness_model(path: Path, size: int | None = 32) -> Path:
    """A tiny real ONNX model: logits = 12 * (R - (G + B) / 2 - 0.2) on ImageNet-normalised input
    (a 1x1 convolution that undoes the normalisation), output [1, 1, H, W]."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    # x_norm = (x - mean) / std  ->  x = x_norm * std + mean; logits = w . x + b
    w_rgb = 12.0 * np.array([1.0, -0.5, -0.5])
    weight = (w_rgb * std).reshape(1, 3, 1, 1).astype(np.float32)
    bias = np.array([float(w_rgb @ mean) - 12.0 * 0.2], np.float32)
    h = w = size if size is not None else "H"
    graph = helper.make_graph(
        [helper.make_node("Conv", ["image", "w", "b"], ["logits"])],
        "redness",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, h, w])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 1, h, w])],
        [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _red_disc(h=80, w=100):
    img = np.full((h, w, 3), 0.5, np.float32)
    yy, xx = np.mgrid[:h, :w]
    disc = ((xx - 60) ** 2 + (yy - 35) ** 2) < 18**2
    img[disc] = (0.9, 0.1, 0.1)
    return img, disc


@pytest.mark.parametrize("size", [32, None], ids=["fixed-size", "dynamic-size"])
def test_onnx_segmenter_runs_a_users_model(tmp_path, size):
    pytest.importorskip("onnxruntime")
    model = _redness_model(tmp_path / "seg.onnx", size)
    seg = OnnxSegmenter(model, size=48)
    assert (seg.height, seg.width) == ((32, 32) if size else (48, 48))
    img, disc = _red_disc()
    mask = seg((img * 255).astype(np.uint8))
    assert mask.shape == disc.shape and mask.dtype == np.float32 and 0 <= mask.min() and mask.max() <= 1
    assert mask_iou(mask > 0.5, disc) > 0.85


def test_onnx_segmenter_feeds_a_user_video(tmp_path):
    pytest.importorskip("onnxruntime")
    model = _redness_model(tmp_path / "seg.onnx", 64)
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(4):
        img, disc = _red_disc()
        img = np.roll(img, 3 * i, axis=1)
        Image.fromarray((img * 255).astype(np.uint8)).save(folder / f"f{i}.png")
    options = VideoFrontEnd(segmentation_model=str(model)).file_source_options()
    video = FileVideoSource(folder, num_frames=4, size=64, **options).generate()
    assert video.meta["masks"] == "segmenter seg.onnx" and video.masks.shape == (4, 64, 64)  # the job names the model it used
    assert video.confidence is not None and video.confidence.shape == video.masks.shape
    areas = video.masks.numpy().sum((1, 2))
    assert areas.min() > 0.8 * areas.max() > 0  # the disc, in every frame


def test_onnx_segmenter_errors_name_the_problem(tmp_path):
    pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    with pytest.raises(MaskError, match="no such file"):
        OnnxSegmenter(tmp_path / "missing.onnx")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a model")
    with pytest.raises(MaskError, match="could not be loaded by onnxruntime"):
        OnnxSegmenter(garbage)
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])], "grey",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 8, 8])],
    )
    grey = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    grey.ir_version = 8
    onnx.save(grey, str(tmp_path / "grey.onnx"))
    with pytest.raises(MaskError, match="takes 1 channels; it must take 3"):
        OnnxSegmenter(tmp_path / "grey.onnx")
    with pytest.raises(MaskError, match="normalise must be one of"):
        OnnxSegmenter(_redness_model(tmp_path / "seg.onnx"), normalise="zscore")


# -- the scorer ------------------------------------------------------------------------------------


def test_the_scorer_ranks_still_and_camera_only_videos_below_object_motion():
    clips = {name: make_video(name=name, **kw) for name, kw in standard_set(size=128, num_frames=8).items()}
    scores = {name: score_video(c.driving_video(), c.reference, c.reference_mask) for name, c in clips.items()}
    for loser in ("still", "pan", "zoom", "pan_zoom_roll"):
        assert scores["moving"].total > scores[loser].total, (loser, scores[loser], scores["moving"])
        assert scores["moving_pan"].total > scores[loser].total, (loser, scores[loser], scores["moving_pan"])
    assert scores["moving"].total > scores["moving_pan"].total  # the same motion, plus camera motion
    assert scores["pan"].camera_motion > 0.1 > scores["still"].camera_motion
    assert scores["moving"].object_motion > 3 * scores["pan"].object_motion
    order = rank_videos(list(scores.values()))
    assert list(scores)[order[0]] == "moving"
    d = scores["pan"].to_dict()
    assert set(d) == {"total", "object_motion", "camera_motion", "flicker", "mask_stability", "identity_drift"}
    assert isinstance(scores["pan"], VideoScore) and all(isinstance(v, float) for v in d.values())


def test_the_scorer_sees_identity_drift_flicker_and_unstable_masks():
    clip = make_video(size=128, num_frames=8, arm_swing_deg=60.0)
    base = score_video(clip.driving_video(), clip.reference, clip.reference_mask)
    video = clip.driving_video()
    # drift: the object's colours turn blue over the clip
    drifted = video.frames.clone()
    ramp = torch.linspace(0, 1, 8)[:, None, None]
    drifted[..., 0] = torch.where(video.masks > 0.5, drifted[..., 0] * (1 - 0.8 * ramp), drifted[..., 0])
    drifted[..., 2] = torch.where(video.masks > 0.5, (drifted[..., 2] + 0.6 * ramp).clamp(0, 1), drifted[..., 2])
    s = score_video(type(video)(drifted, video.masks, video.fps), clip.reference, clip.reference_mask)
    assert s.identity_drift > base.identity_drift + 0.1 and s.total < base.total
    # flicker: alternate frames brighter
    flick = video.frames.clone()
    flick[1::2] = torch.where(video.masks[1::2, ..., None] > 0.5, (flick[1::2] * 1.4).clamp(0, 1), flick[1::2])
    s = score_video(type(video)(flick, video.masks, video.fps), clip.reference, clip.reference_mask)
    assert s.flicker > base.flicker + 0.03 and s.total < base.total
    # unstable masks: every other mask loses a quarter of the object
    masks = video.masks.clone()
    masks[1::2, :, :48] = 0
    s = score_video(type(video)(video.frames, masks, video.fps), clip.reference, clip.reference_mask)
    assert s.mask_stability < base.mask_stability - 0.05 and s.total < base.total


# -- sources and settings --------------------------------------------------------------------------


def test_a_user_frame_folder_is_stabilised_when_asked(tmp_path):
    clip = make_video(size=96, num_frames=5, background="textured", pan=(14.0, 0.0), arm_swing_deg=40.0)
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, (f, m) in enumerate(zip(clip.frames, clip.masks)):
        rgba = np.concatenate([f, m[..., None]], -1)
        Image.fromarray((rgba * 255 + 0.5).astype(np.uint8), "RGBA").save(folder / f"{i:03d}.png")
    kept = FileVideoSource(folder, num_frames=5, size=96, fill=0.6).generate()
    removed = FileVideoSource(folder, num_frames=5, size=96, fill=0.6, stabilise=True).generate()
    for video, was_removed in ((kept, False), (removed, True)):
        record = video.meta["stabilisation"]
        assert record["removed"] is was_removed and record["sources"][1:] == ["background"] * 4
        assert record["params"][-1]["dx"] == pytest.approx(14.0, abs=0.5)
    # with the pan removed the object stays put, without it the object drifts by the pan's scale
    def centroid_x(m):
        return float(np.nonzero(m > 0.5)[1].mean())

    assert abs(centroid_x(removed.masks[-1].numpy()) - centroid_x(removed.masks[0].numpy())) < 1.5
    assert abs(centroid_x(kept.masks[-1].numpy()) - centroid_x(kept.masks[0].numpy())) > 5.0


def test_svd_output_is_stabilised_by_default(tiny_svd):
    ref = torch.ones(64, 64, 3)
    ref[16:48, 20:44] = torch.tensor([0.8, 0.2, 0.1])
    video = SVDSource(SVDConfig(model=str(tiny_svd), num_frames=3, steps=1, size=64, seed=1), device="cpu").generate(ref)
    record = video.meta["stabilisation"]
    assert record["removed"] is True and len(record["matrices"]) == 3
    off = SVDSource(SVDConfig(model=str(tiny_svd), num_frames=3, steps=1, size=64, seed=1, stabilise=False), device="cpu")
    assert off.generate(ref).meta["stabilisation"]["removed"] is False


def test_stabilise_and_segmentation_settings():
    assert generate_config(validate_settings("generate", {}), user_video=False).svd.stabilise is True
    assert generate_config(validate_settings("generate", {"stabilise": "off"}), user_video=False).svd.stabilise is False
    cfg = animate_config(validate_settings("animate", {}))
    assert cfg.front_end.file_source_options() == {"stabilise": False, "segmenter": None}
    cfg = animate_config(validate_settings("animate", {"stabilise": "on"}))
    assert cfg.front_end.file_source_options()["stabilise"] is True
    with pytest.raises(JobError, match="stabilise"):
        validate_settings("animate", {"stabilise": "yes"})
    with pytest.raises(MaskError, match="no such file"):
        VideoFrontEnd(segmentation_model="missing.onnx").file_source_options()


# -- benchmark-dev: Cycles renders pasted on a textured background, filmed by a moving camera -------


@pytest.mark.parametrize("scene", ["crane", "blob"])
def test_benchmark_dev_keypoints_return_to_the_ground_truth_after_stabilisation(benchmark_dev, scene):
    root = benchmark_dev / scene
    idx = np.linspace(0, 31, 8).round().astype(int)
    rgba = np.stack([np.asarray(Image.open(root / "input" / f"{i:04d}.png").convert("RGBA"), np.float32) / 255 for i in idx])
    truth = np.asarray(json.loads((root / "keypoints2d_input.json").read_text()), np.float64)[idx]
    clip = paste_and_film(rgba, pan=(30.0, -12.0), zoom=1.15, roll_deg=4.0, seed=3)
    masks = grabcut_sequence(list(clip.frames), (clip.reference, clip.reference_mask))
    assert mask_iou(masks[0], clip.masks[0]) > 0.6
    motion = estimate_camera_motion(clip.frames, np.stack(masks))
    # the keypoints as filmed, taken back by the estimated (inverse) camera motion
    filmed = np.einsum("tij,tpj->tpi", clip.camera[:, :2, :2], truth) + clip.camera[:, None, :2, 2]
    inv = np.linalg.inv(motion.matrices)
    back = np.einsum("tij,tpj->tpi", inv[:, :2, :2], filmed) + inv[:, None, :2, 2]
    assert np.linalg.norm(back - truth, axis=-1).max() < 1.0
    assert np.linalg.norm(filmed - truth, axis=-1).max() > 20  # the injected motion was large
    frames, _ = stabilise_clip(clip.frames, np.stack(masks), motion)
    assert frames.shape == clip.frames.shape


def test_the_frame_showing_the_input_view_is_found(tmp_path):
    """A user video whose first frame is not the input view: the support registers best onto the
    frame that shows it (the registration the keypoints and masks use)."""
    from dynapose4d.video.framing import best_matching_frame

    clip = make_video(size=160, num_frames=8, background="textured", arm_swing_deg=120.0, object_shift=(30.0, 0.0), seed=2)
    k = 5
    m = clip.masks[k][..., None]
    support = clip.frames[k] * m + (1 - m), clip.masks[k]
    match = best_matching_frame(list(clip.frames), list(clip.masks), *support)
    assert match["frame"] == k and len(match["iou"]) == 8
    assert match["iou"][k] > 0.97 > match["iou"][0] + 0.1
    # through the source: frame 0 disagrees, and the sidecar says where the input view is
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, (f, mask) in enumerate(zip(clip.frames, clip.masks)):
        Image.fromarray((np.concatenate([f, mask[..., None]], -1) * 255 + 0.5).astype(np.uint8), "RGBA").save(folder / f"{i}.png")
    video = FileVideoSource(folder, num_frames=8, fps=8.0, size=160).generate(*support)
    assert video.meta["framing"]["iou"] < 0.8
    assert video.meta["support_match"]["frame"] == k and video.meta["support_match"]["time_s"] == pytest.approx(k / 8.0)
