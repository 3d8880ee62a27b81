"""Masks of a user's clip on a real background (video/masks.py), their confidence in the
reference losses, the keypoints' say over them, and how the job reports them."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from dynapose4d.events import LogEvent
from dynapose4d.imaging.masks import grabcut_sequence, mask_iou
from dynapose4d.losses import loss_reference
from dynapose4d.testing.synthetic_video import make_video, textured_background
from dynapose4d.video.clip import DrivingVideo
from dynapose4d.video.framing import record_framing
from dynapose4d.video.masks import ClipMasks, anchored_masks, edge_band, plain_background, trust_keypoints


def _thin_fast_clip(size: int = 160, frames: int = 10, seed: int = 4):
    """A textured block with a thin (4 px) arm swinging 108 degrees, in the same texture, over a
    blurred cluttered background: ``(frames, true masks, support)``."""
    rng = np.random.default_rng(seed)
    bg = cv2.GaussianBlur(textured_background(rng, (size, size)), (0, 0), 1.0)
    texture = cv2.resize(rng.random((size // 8, size // 8, 3)).astype(np.float32), (size, size), interpolation=cv2.INTER_NEAREST)
    pivot = np.array([size * 0.45, size * 0.6])
    rgbs, masks = [], []
    for t in range(frames):
        m = np.zeros((size, size), np.uint8)
        cv2.rectangle(m, (int(size * 0.3), int(size * 0.6)), (int(size * 0.6), int(size * 0.8)), 1, -1)
        angle = np.deg2rad(-150 + 12 * t)
        tip = pivot + 0.35 * size * np.array([np.cos(angle), np.sin(angle)])
        cv2.line(m, tuple(int(v) for v in pivot), tuple(int(v) for v in tip), 1, 4)
        m = m.astype(np.float32)
        rgbs.append((texture * m[..., None] + bg * (1 - m[..., None])).astype(np.float32))
        masks.append(m)
    reference = (texture * masks[0][..., None] + (1 - masks[0][..., None])).astype(np.float32)
    return rgbs, masks, (reference, masks[0])


def _arm_recall(found, truth, first) -> float:
    """Share of the part's pixels away from where it was in frame 0 that the mask keeps."""
    moved = (truth > 0.5) & ~(first > 0.5)
    return float((found[moved] > 0.5).mean())


def test_every_frame_keeps_a_thin_moving_part_that_the_carried_mask_loses():
    frames, truth, support = _thin_fast_clip()
    carried = grabcut_sequence(frames, support)
    found = anchored_masks(frames, support)
    carried_recall = np.mean([_arm_recall(m, g, truth[0]) for m, g in zip(carried[1:], truth[1:])])
    recall = np.mean([_arm_recall(m, g, truth[0]) for m, g in zip(found.masks[1:], truth[1:])])
    assert carried_recall < 0.7 and recall > 0.85, (carried_recall, recall)
    ious = [mask_iou(m, g) for m, g in zip(found.masks, truth)]
    assert np.mean(ious) > 0.95 and min(ious) > 0.9, np.round(ious, 3)
    # Sure pixels agree with the truth; the unsure ones are few.
    for m, c, g in zip(found.masks, found.confidence, truth):
        sure = c > 0.9
        assert ((m > 0.5) == (g > 0.5))[sure].mean() > 0.99
        assert sure.mean() > 0.8
    assert found.how == "plate+registered" and found.warning() is None



def test_a_plain_object_that_the_camera_follows_over_a_busy_desk_leaves_no_ghost():
    """A one-colour object held in the middle of the frame while the camera pans over clutter:
    it stands on the same desk pixels in most frames, so a plate made from every frame takes its
    colour there, and the desk it uncovers reads as object (a ghost) while the part of it over
    that plate reads as sure background."""
    rng = np.random.default_rng(7)
    size, frames, pan = 128, 12, 3
    desk = cv2.GaussianBlur(textured_background(rng, (size, size + pan * frames)), (0, 0), 1.0)
    alpha = np.zeros((size, size), np.float32)
    cv2.ellipse(alpha, (size // 2, size // 2), (size // 4, size // 3), 0, 0, 360, 1.0, -1)
    colour = np.array([0.55, 0.4, 0.3], np.float32)
    clip = [colour * alpha[..., None] + desk[:, t * pan:t * pan + size] * (1 - alpha[..., None]) for t in range(frames)]
    support = (colour * alpha[..., None] + (1 - alpha[..., None]), alpha)
    found = anchored_masks(clip, support)
    ious = [mask_iou(m, alpha) for m in found.masks]
    assert min(ious) > 0.8, np.round(ious, 3)  # the plate from every frame: 0.55
    for m, c in zip(found.masks, found.confidence):  # no sure pixel calls the object background
        assert (((m > 0.5) | (c < 0.9)) | (alpha < 0.5)).mean() > 0.995
    # Where the plate never sees the desk (the object covers it in nearly every frame) the plate is
    # the object's colour: the object's edge there is a guess, unsure, neither sure object nor desk.
    cover = np.zeros((size, size + pan * frames))  # frames in which the object covers each desk pixel
    for t in range(frames):
        cover[:, t * pan:t * pan + size] += alpha > 0.5
    rings = [edge_band(alpha, 2) & (cover[:, t * pan:t * pan + size] > 0.85 * frames) for t in range(frames)]
    assert sum(r.any() for r in rings) >= 4
    for ring, c in zip(rings, found.confidence):
        assert not ring.any() or (c[ring] < 0.5).all()  # (only 1 px along the edge was unsure before)


def test_a_plain_background_is_told_from_a_busy_one():
    white = make_video(size=96, num_frames=3, background="white", seed=0)
    busy = make_video(size=96, num_frames=3, background="textured", seed=0)
    assert plain_background(list(white.frames)) and not plain_background(list(busy.frames))


def test_an_unsure_region_neither_pulls_nor_pushes_the_object():
    """A mask that lost a part (target 0 where the object is) must not push the rendered part away
    where its confidence is 0; sure pixels weigh the same with or without it."""
    alpha = torch.zeros(1, 16, 16)
    alpha[:, 4:12, 4:8] = 1.0  # the body
    alpha[:, 4:6, 8:14] = 1.0  # the arm, which the mask lost
    alpha.requires_grad_(True)

    def rgb():  # grey object on white
        return alpha[..., None].expand(1, 16, 16, 3) * 0.5 + (1 - alpha[..., None])

    target_mask = torch.zeros(1, 16, 16)
    target_mask[:, 4:12, 4:8] = 1.0
    target_rgb = target_mask[..., None] * 0.5 + (1 - target_mask[..., None])
    weight = torch.ones(1, 16, 16)
    weight[:, 3:7, 8:15] = 0.0  # unsure where the keypoints say the arm is
    l_rgb, l_mask = loss_reference(rgb(), alpha, target_rgb, target_mask, weight)
    assert float(l_rgb.detach()) == 0.0 and float(l_mask.detach()) == 0.0
    (l_rgb + l_mask).backward()
    assert float(alpha.grad.abs().max()) == 0.0
    # Without the weight the lost arm is pushed away.
    alpha.grad = None
    l_rgb, l_mask = loss_reference(rgb(), alpha, target_rgb, target_mask)
    (l_rgb + l_mask).backward()
    assert float(alpha.grad[0, 4:6, 8:14].min()) > 0
    # A wrong region elsewhere still pulls as before: the mean is over all pixels.
    unweighted = loss_reference(rgb(), alpha, target_rgb, torch.ones(1, 16, 16))[1]
    weighted = loss_reference(rgb(), alpha, target_rgb, torch.ones(1, 16, 16), torch.ones(1, 16, 16))[1]
    assert torch.allclose(unweighted, weighted)


def test_keypoints_the_mask_lost_clear_its_confidence_around_them():
    masks = np.zeros((2, 32, 32), np.float32)
    masks[:, 8:24, 8:16] = 1.0
    conf = np.ones_like(masks)
    xy = np.array([[[12.5, 12.5], [26.5, 10.5]], [[12.5, 12.5], [26.5, 10.5]]])  # one inside, one outside
    weight = np.array([[1.0, 1.0], [1.0, 0.1]])  # frame 1's outside keypoint is not confident
    out, lost = trust_keypoints(conf, masks, xy, weight, radius_px=3)
    assert lost == 1
    assert out[0, 10, 26] == 0.0 and out[0, 12, 12] == 1.0  # frame 0: cleared around the lost one only
    assert out[1].min() == 1.0  # frame 1: nothing cleared


def test_frames_whose_masks_look_wrong_are_warned_about_with_their_numbers(tmp_path):
    stats = [{"area": 1.0, "seed_area": 1.0, "sure": 0.9, "suspect": False}] * 3 + [{"area": 0.42, "seed_area": 0.5, "sure": 0.35, "suspect": True}]
    check = ClipMasks([None] * 4, [], "plate+registered", stats)
    assert "1 of 4 frames: 3 (area x0.42 of the median, x0.50 of the input view's, sure 35%)" in check.warning()
    video = DrivingVideo(torch.ones(4, 8, 8, 3), torch.zeros(4, 8, 8), 8.0, meta={"masks": "plate+registered", "mask_check": check.to_dict()},
                         confidence=torch.ones(4, 8, 8))
    events = []
    warnings = record_framing(tmp_path / "framing.json", video, events.append)
    assert warnings == [check.warning()]
    messages = [e.message for e in events if isinstance(e, LogEvent)]
    assert any(m.startswith("masks: plate+registered") for m in messages)
    assert any("masks look wrong" in m for m in messages)


def test_the_confidence_travels_with_the_video(tmp_path):
    conf = torch.rand(3, 16, 16)
    video = DrivingVideo(torch.rand(3, 16, 16, 3), (torch.rand(3, 16, 16) > 0.5).float(), 8.0, confidence=conf)
    back = DrivingVideo.load(video.save(tmp_path / "v"))
    assert back.confidence is not None and torch.allclose(back.confidence, conf, atol=1 / 255)
    assert back.resized(8).confidence.shape == (3, 8, 8) and back.resampled(2).confidence.shape == (2, 16, 16)
    assert torch.equal(DrivingVideo(video.frames, video.masks, 8.0).weights, torch.ones(3, 16, 16))
    with pytest.raises(ValueError, match="confidence"):
        DrivingVideo(video.frames, video.masks, 8.0, confidence=torch.ones(2, 16, 16))


def test_a_checkpoint_of_a_video_without_confidence_keeps_its_digest():
    """Jobs written before masks had a confidence resume from their checkpoints: the inputs'
    digest counts the confidence only where there is one."""
    import hashlib

    from dynapose4d.gaussians import Gaussians
    from dynapose4d.keypoints.base import TrackResult
    from dynapose4d.stages.dynamic import _digest

    static = Gaussians.from_points(torch.rand(16, 3), torch.rand(16, 3))
    frames, masks = torch.rand(3, 8, 8, 3), (torch.rand(3, 8, 8) > 0.5).float()
    track = TrackResult(xy=np.zeros((3, 2, 2), np.float32), confidence=np.ones((3, 2), np.float32),
                        visible=np.ones((3, 2), bool), names=["a", "b"], edges=np.zeros((0, 2), np.int64))
    before = hashlib.sha256()  # the digest as the release before the confidence made it
    for t in list(static.tensors().values()) + [frames, masks]:
        before.update(t.detach().cpu().contiguous().numpy().tobytes())
    before.update(track.xy.tobytes())
    before.update(track.confidence.tobytes())
    before.update(repr(8.0).encode())
    assert _digest(static, DrivingVideo(frames, masks, 8.0), track) == before.hexdigest()
    assert _digest(static, DrivingVideo(frames, masks, 8.0, confidence=torch.full_like(masks, 0.5)), track) != before.hexdigest()
