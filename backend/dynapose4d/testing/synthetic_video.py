"""Synthetic driving videos with known camera motion, object motion and masks.

A textured object (a body and an arm that swings about a joint) on a white or textured background,
filmed by a camera that pans, zooms and rolls by known similarities. Tests and ``bench_video.py``
use it to check stabilisation (the recovered matrices against :attr:`SyntheticVideo.camera`),
masks (against :attr:`SyntheticVideo.masks`, IoU) and the video scorer (a still video and a pure
pan must rank below a moving object).

Pixel convention as everywhere: pixel (i, j) centre at (j + 0.5, i + 0.5); the camera matrices
map frame-0 pixels to frame-t pixels (``[T, 3, 3]``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from ..imaging.warp import warp


@dataclass
class SyntheticVideo:
    """``frames [T, H, W, 3]`` float32, ``masks [T, H, W]`` float32 {0, 1} (ground truth),
    ``camera [T, 3, 3]`` (frame 0 -> frame t), and the object's reference view ``reference [H, W, 3]``
    (frame 0's object on white) with ``reference_mask``."""

    frames: np.ndarray
    masks: np.ndarray
    camera: np.ndarray
    reference: np.ndarray
    reference_mask: np.ndarray
    name: str = ""

    def driving_video(self, fps: float = 7.0):
        """A :class:`dynapose4d.video.clip.DrivingVideo` of these frames composited on white with the true masks."""
        import torch

        from ..video.clip import DrivingVideo

        m = self.masks[..., None]
        on_white = self.frames * m + (1.0 - m)
        return DrivingVideo(torch.from_numpy(on_white.astype(np.float32)), torch.from_numpy(self.masks.astype(np.float32)),
                            fps, f"synthetic {self.name}")


def camera_path(num_frames: int, size: tuple[int, int], *, pan=(0.0, 0.0), zoom: float = 1.0, roll_deg: float = 0.0) -> np.ndarray:
    """``[T, 3, 3]``: a camera moving linearly from the identity to a similarity about the frame
    centre that zooms by ``zoom``, rolls by ``roll_deg`` and moves the centre by ``pan`` pixels."""
    w, h = size
    c = np.array([w / 2.0, h / 2.0])
    out = []
    for t in np.linspace(0.0, 1.0, num_frames):
        s = zoom**t
        a = math.radians(roll_deg * t)
        r = s * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
        m = np.eye(3)
        m[:2, :2] = r
        m[:2, 2] = c + np.asarray(pan, np.float64) * t - r @ c
        out.append(m)
    return np.stack(out)


def _noise(rng, shape, scales=(4, 12, 40)) -> np.ndarray:
    """Smooth multi-scale colour noise ``[H, W, 3]`` in [0, 1]."""
    h, w = shape
    acc = np.zeros((h, w, 3), np.float32)
    for k, s in enumerate(scales):
        small = rng.random((max(2, h // s), max(2, w // s), 3)).astype(np.float32)
        acc += cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC) / (k + 1)
    acc -= acc.min()
    return acc / max(acc.max(), 1e-6)


def textured_background(rng, shape) -> np.ndarray:
    """A cluttered background: soft colour noise plus random rectangles and lines (corners to track)."""
    h, w = shape
    bg = 0.25 + 0.5 * _noise(rng, shape)
    for _ in range(max(12, (h * w) // 2500)):
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        dx, dy = int(rng.integers(6, max(8, w // 6))), int(rng.integers(6, max(8, h // 6)))
        colour = tuple(float(c) for c in rng.random(3) * 0.8 + 0.1)
        if rng.random() < 0.7:
            cv2.rectangle(bg, (x0, y0), (x0 + dx, y0 + dy), colour, -1)
        else:
            cv2.line(bg, (x0, y0), (x0 + dx, y0 - dy), colour, 2)
    return np.clip(bg, 0, 1).astype(np.float32)


def _film(scene: np.ndarray, alpha: np.ndarray, camera: np.ndarray, margin: int, size: tuple[int, int]):
    """Frame t of a scene canvas (frame-0 pixels offset by ``margin``) seen by ``camera``."""
    to_canvas = np.array([[1.0, 0, margin], [0, 1.0, margin], [0, 0, 1.0]])
    view = camera @ np.linalg.inv(to_canvas)  # canvas -> frame t
    frame = np.clip(warp(scene, view[:2], size, (1.0, 1.0, 1.0)), 0, 1).astype(np.float32)
    return frame, (warp(alpha.astype(np.float32), view[:2], size, 0.0) > 0.5).astype(np.float32)


def paste_and_film(rgba: np.ndarray, *, pan=(0.0, 0.0), zoom: float = 1.0, roll_deg: float = 0.0, seed: int = 0,
                   name: str = "") -> SyntheticVideo:
    """A rendered clip ``rgba [T, H, W, 4]`` (e.g. ``../shared/benchmark-dev/<scene>/input``) pasted
    onto a textured background and filmed by a camera that pans, zooms and rolls (known)."""
    rgba = np.asarray(rgba, np.float32)
    t, h, w = rgba.shape[:3]
    margin = max(h, w) // 2
    rng = np.random.default_rng(seed)
    bg = textured_background(rng, (h + 2 * margin, w + 2 * margin))
    camera = camera_path(t, (w, h), pan=pan, zoom=zoom, roll_deg=roll_deg)
    frames, masks = [], []
    for i in range(t):
        alpha = np.zeros(bg.shape[:2], np.float32)
        alpha[margin:margin + h, margin:margin + w] = rgba[i, ..., 3]
        colour = bg.copy()
        colour[margin:margin + h, margin:margin + w] = rgba[i, ..., :3]
        scene = bg * (1 - alpha[..., None]) + colour * alpha[..., None]
        frame, mask = _film(scene, alpha, camera[i], margin, (w, h))
        frames.append(frame)
        masks.append(mask)
    a0 = rgba[0, ..., 3:]
    reference = rgba[0, ..., :3] * a0 + (1 - a0)
    return SyntheticVideo(np.stack(frames), np.stack(masks), camera, reference, (a0[..., 0] > 0.5).astype(np.float32), name)


def make_video(
    *,
    num_frames: int = 14,
    size: int = 192,
    background: str = "white",
    pan=(0.0, 0.0),
    zoom: float = 1.0,
    roll_deg: float = 0.0,
    arm_swing_deg: float = 0.0,
    object_shift=(0.0, 0.0),
    centre=(0.5, 0.55),
    seed: int = 0,
    name: str = "",
) -> SyntheticVideo:
    """A synthetic clip (see the module docstring).

    Args:
        background: ``white`` or ``textured``.
        pan, zoom, roll_deg: the camera's motion over the clip (:func:`camera_path`).
        arm_swing_deg: the arm's swing about its joint over the clip (real object motion).
        object_shift: the whole object's translation (pixels) over the clip (also real motion).
        centre: the body's centre as fractions of the frame (near 0 or 1: touching the border).
    """
    rng = np.random.default_rng(seed)
    h = w = size
    margin = size // 2  # the scene extends beyond frame 0 so a moving camera sees more of it
    canvas_shape = (h + 2 * margin, w + 2 * margin)
    bg = np.ones(canvas_shape + (3,), np.float32) if background == "white" else textured_background(rng, canvas_shape)
    texture = 0.15 + 0.7 * _noise(rng, canvas_shape, scales=(6, 16, 40))
    texture[..., 0] = 0.55 + 0.4 * texture[..., 0]  # a warm object: distinct from grey clutter on average
    cx, cy = centre[0] * w + margin, centre[1] * h + margin
    rx, ry = 0.2 * size, 0.15 * size
    joint = (cx + 0.6 * rx, cy - 0.5 * ry)
    arm_len, arm_w = 0.3 * size, 0.07 * size
    camera = camera_path(num_frames, (w, h), pan=pan, zoom=zoom, roll_deg=roll_deg)
    frames, masks = [], []
    for i, t in enumerate(np.linspace(0.0, 1.0, num_frames)):
        shift = np.asarray(object_shift, np.float64) * t
        body = np.zeros(canvas_shape, np.uint8)
        cv2.ellipse(body, (round(cx + shift[0]), round(cy + shift[1])), (round(rx), round(ry)), 0, 0, 360, 1, -1)
        arm = np.zeros(canvas_shape, np.uint8)
        a = math.radians(-40.0 + arm_swing_deg * t)
        jx, jy = joint[0] + shift[0], joint[1] + shift[1]
        d = np.array([math.cos(a), -math.sin(a)])
        n = np.array([-d[1], d[0]]) * arm_w / 2
        p = np.array([jx, jy])
        quad = np.array([p + n, p - n, p - n + d * arm_len, p + n + d * arm_len])
        cv2.fillConvexPoly(arm, np.round(quad).astype(np.int32), 1)
        # The body's texture moves with the object; the arm's texture turns with the arm.
        tex_body = warp(texture, np.array([[1.0, 0, shift[0]], [0, 1.0, shift[1]]]), canvas_shape[::-1], 0.0)
        rot = cv2.getRotationMatrix2D((float(jx - 0.5), float(jy - 0.5)), math.degrees(a) + 40.0, 1.0)
        tex_arm = cv2.warpAffine(tex_body, rot, canvas_shape[::-1])
        obj = np.maximum(body, arm).astype(np.float32)
        colour = np.where(arm[..., None] > 0, tex_arm, tex_body)
        scene = bg * (1 - obj[..., None]) + colour * obj[..., None]
        frame, mask = _film(scene, obj, camera[i], margin, (w, h))
        frames.append(frame)
        masks.append(mask)
    frames, masks = np.stack(frames), np.stack(masks)
    m0 = masks[0][..., None]
    reference = frames[0] * m0 + (1 - m0)
    return SyntheticVideo(frames, masks, camera, reference.astype(np.float32), masks[0].copy(), name)


def standard_set(size: int = 160, num_frames: int = 12) -> dict[str, dict]:
    """The named clips the scorer is ranked on: which should win (``moving``) and which not."""
    common = dict(size=size, num_frames=num_frames)
    return {
        "still": dict(common),
        "pan": dict(common, pan=(0.18 * size, 0.06 * size)),
        "zoom": dict(common, zoom=1.35),
        "pan_zoom_roll": dict(common, pan=(0.12 * size, -0.05 * size), zoom=1.2, roll_deg=8.0),
        "moving": dict(common, arm_swing_deg=70.0),
        "moving_pan": dict(common, arm_swing_deg=70.0, pan=(0.1 * size, 0.0)),
    }
