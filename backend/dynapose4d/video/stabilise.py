"""Camera motion of a driving video: estimated, reported, and optionally removed.

Stable Video Diffusion often pans, zooms or rolls the camera instead of moving the object, and a
hand-held user video shakes; the dynamic stage would learn that camera motion as object motion.
This module estimates a global 2D similarity (pan, zoom, roll) per frame and can warp every frame
back onto frame 0's view.

How each step ``t-1 -> t`` is estimated, first that works:

1. ``background``: corners outside the (dilated) object masks, tracked by pyramidal Lucas-Kanade
   with a forward-backward check, fitted by RANSAC. Used where the background has texture (a user
   video); a plain or white background has no corners and falls through.
2. ``object``: the same on the object's own corners. The dominant rigid motion of the object is
   then taken as the camera's: a whole-body translation of the object is indistinguishable from a
   pan without background, which is why removal is off by default for user videos.
3. ``mask``: the masks' centroids and areas (a translation and a zoom), for textureless objects.
4. ``identity`` when nothing is left to measure.

The per-step similarities are chained into :attr:`CameraMotion.matrices`, frame 0 -> frame t.
Matrices are ``float64 [3, 3]`` on homogeneous (x, y, 1) in the project's pixel convention
(pixel (i, j) centre at (j + 0.5, i + 0.5)); OpenCV's integer-centred coordinates are converted
where they enter and leave.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from ..cameras import pixels_from_opencv, pixels_to_opencv
from ..imaging.pixels import as_mask, as_rgb, luma_u8
from ..imaging.warp import warp

__all__ = ["CameraMotion", "estimate_camera_motion", "stabilise_clip", "stabilise_video", "similarity_params", "track_points", "SOURCES"]

SOURCES = ("background", "object", "mask", "identity")
WORK_SIDE = 256  # estimation runs on frames at most this wide (the matrices are for full-size frames)
_MIN_BACKGROUND_POINTS = 24
_MIN_OBJECT_POINTS = 10


@dataclass
class CameraMotion:
    """Per-frame global similarity of the camera, frame 0 -> frame t.

    Attributes:
        matrices: ``float64 [T, 3, 3]`` mapping frame-0 pixels to frame-t pixels (``matrices[0]`` is
            the identity); warping frame t by the inverse puts it in frame 0's view.
        sources: ``[T]`` how each step ``t-1 -> t`` was measured (:data:`SOURCES`; ``sources[0]`` is
            ``identity``).
        inliers: ``[T]`` RANSAC inliers of each step (0 for mask and identity steps).
        size: ``(width, height)`` of the frames the matrices are for.
    """

    matrices: np.ndarray
    sources: list[str]
    inliers: list[int]
    size: tuple[int, int]
    removed: bool = False

    @property
    def num_frames(self) -> int:
        return len(self.matrices)

    def params(self) -> list[dict]:
        """Per frame: pan ``dx, dy`` (pixels, of the image centre), ``zoom`` (scale), ``roll`` (degrees)."""
        centre = (self.size[0] / 2.0, self.size[1] / 2.0)
        return [similarity_params(m, centre) for m in self.matrices]

    def displacement_px(self, points: np.ndarray | None = None) -> np.ndarray:
        """``[T]`` RMS displacement (pixels) of ``points [P, 2]`` (default: the frame's corners)
        under each frame's camera motion."""
        if points is None:
            w, h = self.size
            points = np.array([[0, 0], [w, 0], [0, h], [w, h]], np.float64)
        pts = np.asarray(points, np.float64)
        moved = np.einsum("tij,pj->tpi", self.matrices[:, :2, :2], pts) + self.matrices[:, None, :2, 2]
        return np.sqrt(((moved - pts) ** 2).sum(-1).mean(-1))

    def to_dict(self) -> dict:
        """JSON for the video sidecar: the matrices, how each step was found, and pan/zoom/roll."""
        return {
            "matrices": np.asarray(self.matrices).round(6).tolist(),
            "sources": list(self.sources),
            "inliers": [int(i) for i in self.inliers],
            "size": list(self.size),
            "removed": self.removed,
            "params": self.params(),
            "max_displacement_px": round(float(self.displacement_px().max()), 3),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "CameraMotion":
        return cls(np.asarray(d["matrices"], np.float64), list(d["sources"]), list(d["inliers"]), tuple(d["size"]),
                   bool(d.get("removed", False)))


def similarity_params(matrix: np.ndarray, centre=(0.0, 0.0)) -> dict:
    """``{dx, dy, zoom, roll}`` of a similarity: where ``centre`` moves (pixels), scale, rotation (degrees)."""
    m = np.asarray(matrix, np.float64)
    c = np.asarray(centre, np.float64)
    moved = m[:2, :2] @ c + m[:2, 2]
    return {
        "dx": round(float(moved[0] - c[0]), 4),
        "dy": round(float(moved[1] - c[1]), 4),
        "zoom": round(math.sqrt(abs(np.linalg.det(m[:2, :2]))), 6),
        "roll": round(math.degrees(math.atan2(m[1, 0], m[0, 0])), 4),
    }


# -------------------------------------------------------------------------------------------------
# points


def track_points(prev_gray: np.ndarray, next_gray: np.ndarray, xy: np.ndarray, *, window: int = 21, levels: int = 3,
                 max_fb_px: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Lucas-Kanade from ``prev_gray`` to ``next_gray`` (uint8 ``[H, W]``) of ``xy [P, 2]`` (our
    pixels), with a forward-backward check: ``(new xy [P, 2], ok [P] bool)``."""
    if len(xy) == 0:
        return np.zeros((0, 2), np.float32), np.zeros(0, bool)
    lk = dict(winSize=(window, window), maxLevel=levels,
              criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 0.01))
    p0 = pixels_to_opencv(np.asarray(xy, np.float32)).reshape(-1, 1, 2)
    p1, st1, _ = cv2.calcOpticalFlowPyrLK(prev_gray, next_gray, p0, None, **lk)
    back, st2, _ = cv2.calcOpticalFlowPyrLK(next_gray, prev_gray, p1, None, **lk)
    fb = np.linalg.norm((back - p0).reshape(-1, 2), axis=1)
    h, w = next_gray.shape
    p1 = p1.reshape(-1, 2)
    inside = (p1[:, 0] >= 0) & (p1[:, 1] >= 0) & (p1[:, 0] <= w - 1) & (p1[:, 1] <= h - 1)
    ok = (st1.ravel() == 1) & (st2.ravel() == 1) & (fb < max_fb_px) & inside
    return pixels_from_opencv(p1).astype(np.float32), ok


def corners(gray: np.ndarray, region: np.ndarray, max_points: int = 400) -> np.ndarray:
    """``[P, 2]`` Shi-Tomasi corners of ``gray`` inside ``region`` (bool ``[H, W]``), our pixels."""
    if not region.any():
        return np.zeros((0, 2), np.float32)
    found = cv2.goodFeaturesToTrack(gray, max_points, 0.01, max(3, gray.shape[0] // 64), mask=region.astype(np.uint8) * 255,
                                    blockSize=5)
    if found is None:
        return np.zeros((0, 2), np.float32)
    return pixels_from_opencv(found.reshape(-1, 2)).astype(np.float32)


def _fit_similarity(src: np.ndarray, dst: np.ndarray, threshold: float) -> tuple[np.ndarray | None, int]:
    """RANSAC similarity ``src -> dst`` (our pixels) as ``[3, 3]`` and its inlier count."""
    if len(src) < 3:
        return None, 0
    m, inl = cv2.estimateAffinePartial2D(pixels_to_opencv(src.astype(np.float64)), pixels_to_opencv(dst.astype(np.float64)),
                                         method=cv2.RANSAC, ransacReprojThreshold=threshold, maxIters=2000,
                                         confidence=0.999, refineIters=10)
    if m is None:
        return None, 0
    # OpenCV's x = ours - 0.5 on both sides: b_ours = b_cv + 0.5 - A @ (0.5, 0.5).
    ours = np.vstack([m, [0.0, 0.0, 1.0]])
    ours[:2, 2] = m[:, 2] + 0.5 - m[:, :2] @ np.array([0.5, 0.5])
    return ours, int(inl.sum())


def _mask_similarity(prev: np.ndarray, next_: np.ndarray) -> np.ndarray | None:
    """Translation + zoom moving ``prev``'s centroid and area onto ``next_``'s."""
    ys0, xs0 = np.nonzero(prev > 0.5)
    ys1, xs1 = np.nonzero(next_ > 0.5)
    if len(xs0) < 16 or len(xs1) < 16:
        return None
    s = math.sqrt(len(xs1) / len(xs0))
    c0 = np.array([xs0.mean() + 0.5, ys0.mean() + 0.5])
    c1 = np.array([xs1.mean() + 0.5, ys1.mean() + 0.5])
    m = np.eye(3)
    m[:2, :2] *= s
    m[:2, 2] = c1 - s * c0
    return m


# -------------------------------------------------------------------------------------------------
# estimation and removal


def _work_scale(shape) -> float:
    return min(1.0, WORK_SIDE / max(shape[:2]))


def _small(frames, masks, scale):
    grays, ms = [], []
    for f, m in zip(frames, masks):
        g = luma_u8(f)
        m = np.zeros(g.shape, np.float32) if m is None else as_mask(m, g.shape)
        if scale < 1:
            size = (max(1, round(g.shape[1] * scale)), max(1, round(g.shape[0] * scale)))
            g = cv2.resize(g, size, interpolation=cv2.INTER_AREA)
            m = cv2.resize(m, size, interpolation=cv2.INTER_AREA)
        grays.append(g)
        ms.append(m > 0.5)
    return grays, ms


def _regions(m0: np.ndarray, m1: np.ndarray, band: int) -> tuple[np.ndarray, np.ndarray]:
    """(background, object) regions of a frame to look for corners in, at work scale."""
    near = cv2.dilate((m0 | m1).astype(np.uint8), np.ones((2 * band + 1,) * 2, np.uint8)).astype(bool)
    inner = np.zeros_like(near)
    inner[band:-band, band:-band] = True  # corners at the frame edge leave the frame first
    core = cv2.erode(m0.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    return ~near & inner, core


@dataclass
class _Anchors:
    """Corners followed from frame to frame: where they are now (``xy``) and where they were in
    frame 0's view (``xy0``), so each frame's similarity is fitted to frame 0 directly and small
    per-step errors do not add up."""

    xy: np.ndarray
    xy0: np.ndarray
    kind: str  # background | object
    found: int  # how many were detected


def _detect(gray, m0, m1, band, to_frame0: np.ndarray) -> _Anchors | None:
    background, core = _regions(m0, m1, band)
    for kind, region, least in (("background", background, _MIN_BACKGROUND_POINTS), ("object", core, _MIN_OBJECT_POINTS)):
        pts = corners(gray, region)
        if len(pts) >= least:
            xy0 = pts.astype(np.float64) @ to_frame0[:2, :2].T + to_frame0[:2, 2]
            return _Anchors(pts, xy0.astype(np.float32), kind, len(pts))
    return None


def _refine_to_frame0(g0, m0, gt, mt, matrix: np.ndarray, kind: str, band: int, iterations: int = 2) -> np.ndarray:
    """``matrix`` (frame 0 -> frame t) corrected by tracking frame 0's corners into frame t warped
    back onto frame 0: the two images then differ by little, where Lucas-Kanade is most accurate
    (a zoom seen frame to frame biases it; this removes what the chain accumulated)."""
    size = g0.shape[::-1]
    for _ in range(iterations):
        inv = np.linalg.inv(matrix)[:2]
        back = np.clip(warp(gt.astype(np.float32), inv, size, 0.0) + 0.5, 0, 255).astype(np.uint8)
        seen = warp(np.ones(gt.shape, np.float32), inv, size, 0.0) > 0.99
        # What frame t never saw is filled from frame 0: a black ring would pull the coarse
        # pyramid levels of Lucas-Kanade towards its edge.
        back = np.where(seen, back, g0)
        back_mask = warp(mt.astype(np.float32), inv, size, 0.0) > 0.5
        background, core = _regions(m0, back_mask, band)
        region = (background if kind == "background" else core & cv2.erode(back_mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)) & seen
        pts = corners(g0, region)
        if len(pts) < _least(kind):
            break
        new, ok = track_points(g0, back, pts, levels=1)  # what is left is a pixel or two
        if ok.sum() < _least(kind):
            break
        step, n = _fit_similarity(pts[ok], new[ok], 1.0)
        if step is None or n < max(_least(kind) // 2, int(0.4 * ok.sum())):
            break
        matrix = matrix @ step
    return matrix


def _least(kind: str) -> int:
    return _MIN_BACKGROUND_POINTS if kind == "background" else _MIN_OBJECT_POINTS


def estimate_camera_motion(frames, masks=None) -> CameraMotion:
    """Global similarity per frame (frame 0 -> frame t) of a clip.

    Args:
        frames: ``[T, H, W, 3]`` (array, tensor or list of frames), any background.
        masks: ``[T, H, W]`` object masks (or None: every pixel is background).
    """
    frames = [as_rgb(f, f"frame {i}") for i, f in enumerate(frames)]
    masks = [None] * len(frames) if masks is None else list(masks)
    if len(masks) != len(frames):
        raise ValueError(f"estimate_camera_motion: {len(frames)} frames but {len(masks)} masks")
    h, w = frames[0].shape[:2]
    scale = _work_scale((h, w))
    grays, ms = _small(frames, masks, scale)
    band = max(2, round(0.03 * max(grays[0].shape)))
    # Work-scale pixels are full-size pixels times `k` in our convention (cv2.resize keeps centres).
    kx, ky = grays[0].shape[1] / w, grays[0].shape[0] / h
    to_small, to_full = np.diag([kx, ky, 1.0]), np.diag([1 / kx, 1 / ky, 1.0])
    small = [np.eye(3)]  # frame 0 -> frame t at work scale
    sources, inliers = ["identity"], [0]
    anchors: _Anchors | None = None
    for t in range(1, len(frames)):
        g0, g1, m0, m1 = grays[t - 1], grays[t], ms[t - 1], ms[t]
        # 1. Anchors: renewed when too few are left (background preferred, then the object's own
        #    corners, whose dominant rigid motion then stands for the camera's).
        if anchors is None or len(anchors.xy) < max(_least(anchors.kind), anchors.found // 2):
            anchors = _detect(g0, m0, m1, band, np.linalg.inv(small[-1]))
        fitted = None
        if anchors is not None:
            new, ok = track_points(g0, g1, anchors.xy)
            anchors = _Anchors(new[ok], anchors.xy0[ok], anchors.kind, anchors.found)
            if ok.sum() >= _least(anchors.kind):
                m, n = _fit_similarity(anchors.xy0, anchors.xy, 1.5)
                if m is not None and n >= max(_least(anchors.kind) // 2, int(0.4 * ok.sum())):
                    fitted, how = m, anchors.kind
            if fitted is not None:
                fitted = _refine_to_frame0(grays[0], ms[0], g1, m1, fitted, how, band)
        # 2. Else the masks' centroids and areas, chained onto the previous frame.
        if fitted is None:
            step = _mask_similarity(m0, m1)
            fitted, how, n = (small[-1], "identity", 0) if step is None else (step @ small[-1], "mask", 0)
            anchors = None
        small.append(fitted)
        sources.append(how)
        inliers.append(n)
    chained = [to_full @ m @ to_small for m in small]
    return CameraMotion(np.stack(chained), sources, inliers, (w, h))


def stabilise_clip(frames, masks, motion: CameraMotion, *, background=(1.0, 1.0, 1.0)) -> tuple[np.ndarray, np.ndarray]:
    """Every frame warped into frame 0's view (``motion`` removed): ``([T, H, W, 3], [T, H, W])`` float32.

    Pixels the camera never saw in frame t are ``background`` in the frames and 0 in the masks.
    """
    out_f, out_m = [], []
    for f, m, mat in zip(frames, masks, motion.matrices):
        inv = np.linalg.inv(mat)[:2]
        f = as_rgb(f)
        m = as_mask(m, f.shape[:2])
        out_f.append(warp(f, inv, motion.size, tuple(float(c) for c in background)))
        out_m.append(warp(m, inv, motion.size, 0.0))
    return np.clip(np.stack(out_f), 0, 1).astype(np.float32), np.clip(np.stack(out_m), 0, 1).astype(np.float32)


def stabilise_video(frames, masks, *, remove: bool) -> tuple[np.ndarray, np.ndarray, dict]:
    """A clip's camera motion measured and, with ``remove``, taken out: ``(frames [T, H, W, 3],
    masks [T, H, W], record)``; ``record`` is :meth:`CameraMotion.to_dict` (the video sidecar keeps
    the removed transforms, so a result can be put back into the camera's original motion)."""
    frames = np.stack([as_rgb(f, f"frame {i}") for i, f in enumerate(frames)])
    masks = np.stack([as_mask(m, frames.shape[1:3], f"mask {i}") for i, m in enumerate(masks)])
    motion = estimate_camera_motion(frames, masks)
    if remove and motion.num_frames > 1:
        binary = bool(np.isin(masks, (0.0, 1.0)).all())
        frames, masks = stabilise_clip(frames, masks, motion)
        if binary:  # binary masks stay binary (resampling would blur their edges)
            masks = (masks > 0.5).astype(np.float32)
        motion.removed = True
    return frames, masks, motion.to_dict()
