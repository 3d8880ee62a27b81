"""How good a driving video is for the dynamic stage: one number to rank SVD candidates by.

Stable Video Diffusion, for one input, gives videos that move the object, videos that only pan or
zoom the camera, videos that barely move, and videos whose object melts into something else; the
DreamGaussian4D authors pick among seeds by hand. :func:`score_video` measures five things (all
weight-free, on frames at most :data:`WORK_SIDE` pixels wide) and combines them into ``total``:

- ``object_motion`` (more is better, up to :data:`OBJECT_MOTION_ENOUGH`): how far the object moves
  once the camera's motion is removed (:mod:`dynapose4d.video.stabilise`), as a fraction of the object's
  size: the mean of (a) the residual of tracked object corners from where the camera motion alone
  would put them and (b) ``1 - IoU`` of each stabilised mask with frame 0's.
- ``camera_motion`` (less is better): the RMS displacement of frame 0's object box corners under
  the estimated camera similarity, as a fraction of the object's size, averaged over frames. On a
  stabilised video this is what stabilisation left.
- ``flicker`` (less is better): the mean absolute luma difference (0..1) between each frame and
  the previous one warped onto it by dense optical flow, inside the object: what motion does not
  explain (temporal warping error).
- ``mask_stability`` (1 is best): the mean IoU of each mask with the previous mask warped by the
  same flow: a segmentation that flickers or an object that breaks up scores low.
- ``identity_drift`` (less is better): the Hellinger distance (0..1) of the object's colour
  histogram to the input image's, half from frame 0 and half from the mean over later frames.

``total = min(object_motion / OBJECT_MOTION_ENOUGH, 1) - WEIGHTS . (c * camera, flicker, 1 - mask
stability, identity)``, where ``c`` is 1 for camera motion measured on background and 1/2 for
camera motion inferred from the object alone (a video on white: a travelling object's motion
looks like a pan there): a still video and a pure pan score below a video whose object moves.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

from ..imaging.masks import foreground_mask, mask_iou
from ..imaging.pixels import as_mask, as_rgb, luma_u8
from ..imaging.warp import warp
from .stabilise import CameraMotion, corners, estimate_camera_motion, track_points

__all__ = ["VideoScore", "score_video", "rank_videos", "WORK_SIDE", "OBJECT_MOTION_ENOUGH", "WEIGHTS"]

WORK_SIDE = 256
OBJECT_MOTION_ENOUGH = 0.12  # object motion beyond 12 % of its size earns nothing more
# Penalty weights: camera motion counts double object motion (it would be learnt as object motion).
WEIGHTS = {"camera_motion": 2.0, "flicker": 6.0, "mask_instability": 1.5, "identity_drift": 1.5}
_HIST_BINS = 8


@dataclass(frozen=True)
class VideoScore:
    """A driving video's score (``total``, higher is better) and its components (module docstring)."""

    total: float
    object_motion: float
    camera_motion: float
    flicker: float
    mask_stability: float
    identity_drift: float

    def to_dict(self) -> dict:
        return {k: round(float(v), 5) for k, v in asdict(self).items()}


def _work(frames: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t, h, w = masks.shape
    scale = min(1.0, WORK_SIDE / max(h, w))
    if scale >= 1:
        return frames, masks
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    f = np.stack([cv2.resize(x, size, interpolation=cv2.INTER_AREA) for x in frames])
    m = np.stack([cv2.resize(x, size, interpolation=cv2.INTER_AREA) for x in masks])
    return f, m


def _object_size(mask: np.ndarray) -> float:
    """Square root of the object's box area (pixels), at least 4."""
    ys, xs = np.nonzero(mask > 0.5)
    if len(xs) == 0:
        return 4.0
    return max(4.0, float(np.sqrt((xs.max() + 1 - xs.min()) * (ys.max() + 1 - ys.min()))))


def _box_corners(mask: np.ndarray) -> np.ndarray | None:
    ys, xs = np.nonzero(mask > 0.5)
    if len(xs) == 0:
        return None
    x0, x1, y0, y1 = xs.min(), xs.max() + 1.0, ys.min(), ys.max() + 1.0
    return np.array([[x0, y0], [x1, y0], [x0, y1], [x1, y1]], np.float64)


def _apply(matrix: np.ndarray, xy: np.ndarray) -> np.ndarray:
    return xy @ matrix[:2, :2].T + matrix[:2, 2]


def _object_motion(grays, masks, motion: CameraMotion, size: float) -> float:
    """Mean of the tracked-corner residual (fraction of ``size``) and the stabilised mask change."""
    # (a) Corners of frame 0 tracked through the clip; residual from the camera-only prediction.
    core = cv2.erode((masks[0] > 0.5).astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    p0 = corners(grays[0], core, max_points=200)
    residuals, xy, alive = [], p0.copy(), np.ones(len(p0), bool)
    for t in range(1, len(grays)):
        if alive.sum() < 4:
            break
        new, ok = track_points(grays[t - 1], grays[t], xy)
        alive &= ok
        xy = np.where(alive[:, None], new, xy)
        if alive.sum() >= 4:
            r = np.linalg.norm(xy[alive] - _apply(motion.matrices[t], p0[alive]), axis=1)
            residuals.append(float(r.mean()) / size)
    # (b) Masks with the camera removed (warped into frame 0's view), against frame 0's.
    stable = [np.clip(warp(m, np.linalg.inv(mat)[:2], motion.size, 0.0), 0, 1) for m, mat in zip(masks, motion.matrices)]
    change = [1.0 - mask_iou(stable[t], masks[0]) for t in range(1, len(masks))]
    points_part = float(np.mean(residuals)) if residuals else float(np.mean(change))
    return 0.5 * (points_part + float(np.mean(change)))


def _flow_terms(grays, masks) -> tuple[float, float]:
    """(flicker, mask stability) from the previous frame warped onto each frame by dense flow."""
    h, w = grays[0].shape
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    flicker, stability = [], []
    for t in range(1, len(grays)):
        # Flow from frame t back to t-1: pixel x of frame t came from x + flow(x) in frame t-1.
        flow = cv2.calcOpticalFlowFarneback(grays[t], grays[t - 1], None, 0.5, 3, 15, 3, 5, 1.2, 0)
        mx, my = gx + flow[..., 0], gy + flow[..., 1]
        prev_g = cv2.remap(grays[t - 1].astype(np.float32), mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        prev_m = cv2.remap(masks[t - 1].astype(np.float32), mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                           borderValue=0.0)
        inside = (masks[t] > 0.5) | (prev_m > 0.5)
        if inside.any():
            flicker.append(float(np.abs(grays[t].astype(np.float32) - prev_g)[inside].mean()) / 255.0)
        stability.append(mask_iou(masks[t], prev_m))
    return (float(np.mean(flicker)) if flicker else 0.0), (float(np.mean(stability)) if stability else 1.0)


def _colour_hist(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray | None:
    px = rgb[mask > 0.5]
    if len(px) < 16:
        return None
    q = np.clip((px * _HIST_BINS).astype(np.int64), 0, _HIST_BINS - 1)
    flat = (q[:, 0] * _HIST_BINS + q[:, 1]) * _HIST_BINS + q[:, 2]
    hist = np.bincount(flat, minlength=_HIST_BINS**3).astype(np.float64)
    return hist / hist.sum()


def _hellinger(p: np.ndarray | None, q: np.ndarray | None) -> float:
    if p is None or q is None:
        return 1.0  # an object that vanished has drifted all the way
    return float(np.sqrt(max(0.0, 1.0 - np.sqrt(p * q).sum())))


def score_video(video, reference_rgb: np.ndarray, reference_mask: np.ndarray | None = None) -> VideoScore:
    """Score a :class:`dynapose4d.video.clip.DrivingVideo` against the input image it was made from.

    Args:
        video: the driving video (frames ``[T, H, W, 3]`` on white, masks ``[T, H, W]``).
        reference_rgb: ``[S, S, 3]`` the input image (any size; only its object's colours are used).
        reference_mask: ``[S, S]`` its foreground; None: estimated (an object on a plain background).
    """
    frames = np.asarray(video.frames.detach().cpu().numpy() if hasattr(video.frames, "detach") else video.frames, np.float32)
    masks = np.asarray(video.masks.detach().cpu().numpy() if hasattr(video.masks, "detach") else video.masks, np.float32)
    ref = as_rgb(reference_rgb, "the reference image")
    ref_mask = foreground_mask(ref) if reference_mask is None else as_mask(reference_mask, ref.shape[:2], "the reference mask")
    frames, masks = _work(frames, masks)
    grays = [luma_u8(f) for f in frames]
    size = _object_size(masks[0])
    # 1. Camera motion (on the frames as they are: a stabilised video has little left).
    motion = estimate_camera_motion(frames, masks)
    box = _box_corners(masks[0])
    camera = float(motion.displacement_px(box).mean()) / size if box is not None else 0.0
    # 2. Object motion with the camera removed.
    obj = _object_motion(grays, masks, motion, size) if len(frames) > 1 else 0.0
    # 3. Flicker and mask stability from dense flow.
    flicker, stability = _flow_terms(grays, masks)
    # 4. Identity against the input image.
    ref_hist = _colour_hist(ref, ref_mask)
    drifts = [_hellinger(ref_hist, _colour_hist(f, m)) for f, m in zip(frames, masks)]
    identity = 0.5 * drifts[0] + 0.5 * (float(np.mean(drifts[1:])) if len(drifts) > 1 else drifts[0])
    # Without background the camera's motion is inferred from the object's dominant rigid motion,
    # which a travelling or swaying object also has: such evidence counts half.
    certainty = float(np.mean([1.0 if s == "background" else 0.5 for s in motion.sources[1:]])) if len(frames) > 1 else 1.0
    total = (
        min(obj / OBJECT_MOTION_ENOUGH, 1.0)
        - WEIGHTS["camera_motion"] * certainty * camera
        - WEIGHTS["flicker"] * flicker
        - WEIGHTS["mask_instability"] * (1.0 - stability)
        - WEIGHTS["identity_drift"] * identity
    )
    return VideoScore(float(total), float(obj), float(camera), float(flicker), float(stability), float(identity))


def rank_videos(scores: list[VideoScore]) -> list[int]:
    """Indices of ``scores`` best first (ties keep the earlier candidate first)."""
    return sorted(range(len(scores)), key=lambda i: (-scores[i].total, i))
