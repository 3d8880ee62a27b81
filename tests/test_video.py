"""Driving video sources: SVD on tiny models, user videos and frame folders, masks, save/load."""

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from dynapose4d.guidance.svd import SVDConfig, SVDSource
from dynapose4d.video.clip import (
    DrivingVideo,
    FileVideoSource,
    VideoError,
    VideoSource,
    grabcut_sequence,
    read_frames,
    sample_indices,
)

pytest_plugins = ["tests.conftest_models"]


def _reference(size=64):
    img = torch.ones(size, size, 3)
    img[size // 4 : 3 * size // 4, size // 3 : 2 * size // 3] = torch.tensor([0.8, 0.2, 0.1])
    return img


# -- SVD ------------------------------------------------------------------------------------------


def test_svd_source_on_tiny_model(tiny_svd, one_thread):
    steps = []
    cfg = SVDConfig(model=str(tiny_svd), num_frames=4, steps=2, size=64, seed=3)
    source = SVDSource(cfg, device="cpu", progress=lambda i, n: steps.append((i, n)))
    assert isinstance(source, VideoSource)
    video = source.generate(_reference())
    assert video.frames.shape == (4, 64, 64, 3) and video.masks.shape == (4, 64, 64)
    assert video.frames.dtype == torch.float32 and float(video.frames.min()) >= 0 and float(video.frames.max()) <= 1
    assert set(torch.unique(video.masks).tolist()) <= {0.0, 1.0}
    assert video.fps == 7.0 and video.num_frames == 4
    assert steps == [(1, 2), (2, 2)]
    assert video.meta["motion_bucket_id"] == 127 and video.meta["noise_aug_strength"] == 0.02 and video.meta["seed"] == 3
    assert "seed 3" in video.source
    # same seed, same video; output_size resizes frames and masks
    small = SVDSource(SVDConfig(model=str(tiny_svd), num_frames=4, steps=2, size=64, seed=3, output_size=32), device="cpu")
    again = small.generate(_reference())
    assert again.frames.shape == (4, 32, 32, 3)
    torch.testing.assert_close(again.frames, video.resized(32).frames)


def test_svd_input_is_composited_on_white_and_resized(tiny_svd):
    source = SVDSource(SVDConfig(model=str(tiny_svd), size=48), device="cpu")
    rgba = np.zeros((96, 96, 4), np.float32)
    rgba[..., 0] = 1.0  # red everywhere, but only the centre is opaque
    rgba[32:64, 32:64, 3] = 1.0
    image = np.asarray(source.input_image(rgba))
    assert image.shape == (48, 48, 3)
    assert tuple(image[2, 2]) == (255, 255, 255) and tuple(image[24, 24]) == (255, 0, 0)
    assert source.num_frames() == 4  # from the folder's unet config
    with pytest.raises(VideoError, match="must be square"):
        source.input_image(np.ones((40, 60, 3), np.float32))


def test_svd_missing_model_fails_at_construction(tmp_path, monkeypatch):
    from dynapose4d.weights import ModelNotFoundError

    monkeypatch.delenv("DYNAPOSE4D_SVD_XT", raising=False)
    with pytest.raises(ModelNotFoundError, match="dynapose4d models download svd-xt"):
        SVDSource(SVDConfig(model="svd-xt", cache_dir=str(tmp_path)), device="cpu")


# -- masks ----------------------------------------------------------------------------------------


def test_masks_on_white_on_a_synthetic_frame():
    from dynapose4d.imaging.masks import masks_on_white

    frame = np.ones((64, 64, 3), np.float32)
    frame[10:40, 10:40] = (0.2, 0.5, 0.9)  # object
    frame[20:25, 20:25] = 1.0  # a white patch inside the object: still object
    frame[45:60, 10:40] = 0.95  # a light shadow: background
    frame[55, 55] = 0.0  # a dark speck: noise
    mask = masks_on_white(frame)[0]
    expected = np.zeros((64, 64), np.float32)
    expected[10:40, 10:40] = 1.0
    np.testing.assert_array_equal(mask, expected)


# -- resampling -----------------------------------------------------------------------------------


def test_sample_indices():
    idx, fps = sample_indices(30, 30.0, 14)
    assert idx[0] == 0 and idx[-1] == 29 and len(idx) == 14 and np.all(np.diff(idx) > 0)
    assert fps == pytest.approx(13 / (29 / 30))
    idx, fps = sample_indices(100, 25.0, 5, start_s=1.0, end_s=2.0)
    assert idx.tolist() == [25, 31, 38, 44, 50] and fps == pytest.approx(4.0)
    idx, fps = sample_indices(3, 10.0, 5)  # fewer frames than T: repeats, faster fps
    assert idx.tolist() == [0, 0, 1, 2, 2] and fps == pytest.approx(20.0)
    with pytest.raises(VideoError, match="time span"):
        sample_indices(10, 10.0, 4, start_s=0.8, end_s=0.2)


def _disc_video(path, n=30, fps=30.0, size=(160, 120), radius=20, speed=0.5, distractor=False):
    """A red disc moving right on a grey background (and a static blue box); returns the centres."""
    w, h = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    centres = []
    for i in range(n):
        frame = np.full((h, w, 3), 110, np.uint8)
        cx, cy = 50 + speed * i, 60
        cv2.circle(frame, (int(round(cx)), cy), radius, (40, 40, 230), -1)  # BGR red
        if distractor:
            frame[70:110, 115:150] = (120, 40, 20)
        writer.write(frame)
        centres.append((cx, cy))
    writer.release()
    return centres


def test_user_video_is_resampled_masked_and_cropped(tmp_path, one_thread):
    path = tmp_path / "clip.avi"
    _disc_video(path)
    source = FileVideoSource(path, num_frames=6, size=64, fill=0.5)
    video = source.generate()
    assert isinstance(source, VideoSource)
    assert video.frames.shape == (6, 64, 64, 3) and video.masks.shape == (6, 64, 64)
    assert video.fps == pytest.approx(5 / (29 / 30)) and video.meta["source_fps"] == pytest.approx(30.0)
    assert video.meta["indices"] == [0, 6, 12, 17, 23, 29] and video.meta["masks"] == "grabcut"
    # frame 0's disc is centred with diameter fill * size = 32 px (JPEG blur widens it a little)
    masks = video.masks.numpy()
    areas = masks.sum((1, 2))
    assert abs(areas[0] - np.pi * 16**2) < 0.1 * np.pi * 16**2
    assert np.all(np.abs(areas - areas[0]) < 0.05 * areas[0])  # a rigid disc keeps its area
    ys, xs = np.nonzero(masks[0] > 0.5)
    assert abs(xs.mean() + 0.5 - 32) < 1.0 and abs(ys.mean() + 0.5 - 32) < 1.0
    # it moves right by 0.5 px per source frame, times the crop's scale (~32 / 41)
    xs_last, ys_last = np.nonzero(masks[-1] > 0.5)[::-1]
    assert xs_last.mean() - xs.mean() == pytest.approx(29 * 0.5 * 32 / 41, abs=1.0)
    assert abs(ys_last.mean() - ys.mean()) < 0.5
    # background composited on white
    np.testing.assert_allclose(video.frames[:, 2, 2].numpy(), 1.0)


def test_support_colours_seed_the_first_mask(tmp_path, one_thread):
    path = tmp_path / "clip.avi"
    centres = _disc_video(path, n=10, speed=2.0, distractor=True)
    rgbs, _, _, info = read_frames(path, num_frames=3)
    support = np.ones((64, 64, 3), np.float32)
    yy, xx = np.mgrid[:64, :64]
    disc = (((xx - 32) ** 2 + (yy - 32) ** 2) < 16**2).astype(np.float32)
    support[disc > 0] = (230 / 255, 40 / 255, 40 / 255)
    seeded = grabcut_sequence(rgbs, (support, disc))
    plain = grabcut_sequence(rgbs)
    for mask, i in zip(seeded, info["indices"]):
        truth = np.zeros((120, 160), np.uint8)
        cv2.circle(truth, (int(round(centres[i][0])), 60), 20, 1, -1)
        assert _iou(mask, truth) > 0.85  # the disc, moving, without the blue box
    assert plain[0].sum() > seeded[0].sum() + 0.8 * 35 * 40  # the border colour alone takes the box too
    # through the source: the crop follows the disc only
    video = FileVideoSource(path, num_frames=3, size=64, fill=0.5).generate(torch.from_numpy(support), torch.from_numpy(disc))
    ys, xs = np.nonzero(video.masks[0].numpy() > 0.5)
    assert abs(xs.mean() + 0.5 - 32) < 1.0


def _iou(a, b):
    a, b = np.asarray(a) > 0.5, np.asarray(b) > 0.5
    return (a & b).sum() / (a | b).sum()


def test_frame_folder_with_alpha_and_assumed_fps(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(10):
        rgba = np.zeros((50, 50, 4), np.uint8)
        rgba[10:30, 5 + 2 * i : 25 + 2 * i] = (0, 0, 255, 255)
        Image.fromarray(rgba, "RGBA").save(folder / f"f{i}.png")  # natural order: f2 before f10
    video = FileVideoSource(folder, num_frames=4, size=100, fill=0.2).generate()
    assert video.meta["masks"] == "alpha" and video.meta["fps_assumed"] is True
    assert video.fps == pytest.approx(3 / (9 / 7.0)) and video.meta["indices"] == [0, 3, 6, 9]
    sums = video.masks.numpy().sum((1, 2))
    assert np.allclose(sums, sums[0], rtol=0.02)  # a rigid box keeps its area
    rgbs, _, fps, info = read_frames(folder, num_frames=10, fps=20.0)
    assert fps == pytest.approx(20.0) and info["fps_assumed"] is False and info["indices"] == list(range(10))
    assert rgbs[1][15, 8:12, 2].min() == 1.0  # f1 is the second frame (box moved 2 px)


def test_unreadable_inputs(tmp_path):
    with pytest.raises(VideoError, match="no such file or folder"):
        read_frames(tmp_path / "absent.mp4", num_frames=4)
    (tmp_path / "bad.mp4").write_bytes(b"not a video at all")
    with pytest.raises(VideoError, match="could not be opened as a video|no decodable frames"):
        read_frames(tmp_path / "bad.mp4", num_frames=4)
    (tmp_path / "empty").mkdir()
    with pytest.raises(VideoError, match="holds no image files"):
        read_frames(tmp_path / "empty", num_frames=4)


# -- the data class -------------------------------------------------------------------------------


def test_driving_video_save_load_resample(tmp_path):
    gen = torch.Generator().manual_seed(0)
    frames = torch.rand(5, 24, 24, 3, generator=gen)
    masks = (torch.rand(5, 24, 24, generator=gen) > 0.5).float()
    video = DrivingVideo(frames, masks, 10.0, "synthetic", {"seed": 0})
    back = DrivingVideo.load(video.save(tmp_path / "v"))
    torch.testing.assert_close(back.frames, frames, atol=0.5 / 255 + 1e-6, rtol=0)
    torch.testing.assert_close(back.masks, masks)
    assert (back.fps, back.source, back.meta) == (10.0, "synthetic", {"seed": 0})
    three = video.resampled(3)
    assert three.num_frames == 3 and three.fps == pytest.approx(5.0) and three.duration == pytest.approx(video.duration)
    torch.testing.assert_close(three.frames, frames[[0, 2, 4]])
    with pytest.raises(VideoError, match="masks .* do not match frames"):
        DrivingVideo(frames, masks[:, :20], 10.0)
    with pytest.raises(VideoError, match="fps must be positive"):
        DrivingVideo(frames, masks, 0.0)
    with pytest.raises(VideoError, match="has no video.json"):
        DrivingVideo.load(tmp_path)
