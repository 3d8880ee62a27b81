"""Image registration with SIFT features: support -> frame 0 globally, support -> frame t non-rigidly.

The support image is the user's input image; the driving video's frame 0 is close to it but not
the same picture (Stable Video Diffusion regenerates it, a user video may start elsewhere), so the
support keypoints are first carried to frame 0 by a global similarity or homography
(:func:`register`). Later frames are re-anchored to the support by a thin-plate spline through
the matched features (:func:`anchor_keypoints`), which bounds the drift of frame-to-frame tracking.

All coordinates are pixels in the project's convention (pixel (i, j) centre at (j + 0.5, i + 0.5));
OpenCV's integer-centred coordinates are converted where they enter and leave.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import cv2
import numpy as np

from ..cameras import pixels_from_opencv
from .pixels import luma_u8

MODELS = ("similarity", "homography")


@dataclass
class Features:
    """SIFT features: ``xy float32 [M, 2]`` (pixels, our convention), ``descriptors float32 [M, 128]``."""

    xy: np.ndarray
    descriptors: np.ndarray

    def __len__(self) -> int:
        return len(self.xy)


def detect_features(image: np.ndarray, mask: np.ndarray | None = None, upscale: float = 1.0,
                    contrast_threshold: float = 0.02) -> Features:
    """SIFT features of an RGB image, restricted to a slightly dilated foreground ``mask`` if given.

    ``upscale > 1`` runs SIFT on a resized image, which finds many more features on small
    objects (a 50-pixel object gives SIFT little to work with); positions are mapped back to
    the original pixels. ``contrast_threshold`` is SIFT's, lower than OpenCV's 0.04 default
    because our objects are small and often softly textured.
    """
    gray = luma_u8(image)
    h, w = gray.shape
    m8, x0, y0 = None, 0, 0
    if mask is not None:
        # Dilate: features on the silhouette see the object against white, which is stable.
        m8 = cv2.dilate(mask.astype(np.uint8) * 255, np.ones((5, 5), np.uint8))
        if not m8.any():
            return Features(np.zeros((0, 2), np.float32), np.zeros((0, 128), np.float32))
        # Crop to the object (plus room for descriptors): SIFT's cost is per pixel.
        rows, cols = np.nonzero(m8.any(1))[0], np.nonzero(m8.any(0))[0]
        margin = 16
        y0, y1 = max(0, rows[0] - margin), min(h, rows[-1] + 1 + margin)
        x0, x1 = max(0, cols[0] - margin), min(w, cols[-1] + 1 + margin)
        gray, m8 = gray[y0:y1, x0:x1], m8[y0:y1, x0:x1]
    if upscale != 1.0:
        size = (round(gray.shape[1] * upscale), round(gray.shape[0] * upscale))
        gray = cv2.resize(gray, size, interpolation=cv2.INTER_CUBIC)
        m8 = None if m8 is None else cv2.resize(m8, size, interpolation=cv2.INTER_NEAREST)
    sift = cv2.SIFT_create(contrastThreshold=contrast_threshold)
    kps, desc = sift.detectAndCompute(gray, m8)
    if not kps:
        return Features(np.zeros((0, 2), np.float32), np.zeros((0, 128), np.float32))
    # cv2.resize keeps pixel-centre alignment: our coordinates scale exactly by `upscale`.
    xy = pixels_from_opencv(np.array([k.pt for k in kps], np.float64)) / upscale + (x0, y0)
    return Features(xy.astype(np.float32), desc.astype(np.float32))


def match_features(a: Features, b: Features, ratio: float = 0.8, max_matches: int | None = None) -> np.ndarray:
    """Index pairs ``int64 [K, 2]`` (into a, into b): Lowe's ratio test plus a mutual-nearest check.

    With ``max_matches``, only that many are kept, the most distinctive (lowest ratio) first.
    """
    if len(a) < 2 or len(b) < 2:
        return np.zeros((0, 2), np.int64)
    matcher = cv2.BFMatcher(cv2.NORM_L2)
    forward = matcher.knnMatch(a.descriptors, b.descriptors, k=2)
    backward = matcher.match(b.descriptors, a.descriptors)
    back_of = np.array([m.trainIdx for m in backward])
    found = [(m.distance / max(n.distance, 1e-9), m.queryIdx, m.trainIdx) for m, n in forward
             if m.distance < ratio * n.distance and back_of[m.trainIdx] == m.queryIdx]
    if max_matches is not None:
        found = sorted(found)[:max_matches]
    return np.array([(i, j) for _, i, j in found], np.int64).reshape(-1, 2)


# ---------------------------------------------------------------------------------------------
# global registration


@dataclass
class Registration:
    """A global map from support pixels to frame pixels, and how it was found.

    Attributes:
        success: whether the map can be trusted.
        model: ``similarity``, ``homography``, or after a failure the caller's fallback
            (``identity`` from :func:`register`; the tracker may set ``resize``).
        matrix: ``float64 [3, 3]`` acting on homogeneous (x, y, 1) in our pixel convention.
        n_matches: feature matches after the ratio and mutual checks.
        n_inliers: matches RANSAC kept.
        reprojection_error_px: RMS distance of the inliers after mapping (nan without inliers).
        reason: why it failed ("" on success).
    """

    success: bool
    model: str
    matrix: np.ndarray = field(default_factory=lambda: np.eye(3))
    n_matches: int = 0
    n_inliers: int = 0
    reprojection_error_px: float = float("nan")
    reason: str = ""

    def apply(self, xy: np.ndarray) -> np.ndarray:
        """Map ``xy [..., 2]`` support pixels to frame pixels (float32)."""
        xy = np.asarray(xy, np.float64)
        h = xy @ self.matrix[:, :2].T + self.matrix[:, 2]
        return (h[..., :2] / h[..., 2:]).astype(np.float32)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["matrix"] = np.asarray(self.matrix).tolist()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Registration":
        return cls(**{**d, "matrix": np.array(d["matrix"], np.float64)})


def _fit(model: str, src: np.ndarray, dst: np.ndarray, threshold: float):
    if model == "similarity":
        m, inl = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=threshold,
                                             maxIters=2000, confidence=0.999, refineIters=10)
        return (None, None) if m is None else (np.vstack([m, [0, 0, 1]]), inl)
    m, inl = cv2.findHomography(src, dst, cv2.RANSAC, threshold, maxIters=2000, confidence=0.999)
    return m, inl


def register(support_image: np.ndarray, frame: np.ndarray, support_mask: np.ndarray | None = None,
             frame_mask: np.ndarray | None = None, model: str = "similarity", *, min_inliers: int = 8,
             ransac_threshold_px: float = 3.0, max_error_px: float = 2.0, upscale: float = 1.0,
             support_features: Features | None = None, frame_features: Features | None = None) -> Registration:
    """Register the support image to a frame with SIFT + RANSAC.

    Args:
        support_image, frame: ``(H, W, 3)`` RGB (sizes may differ).
        support_mask, frame_mask: optional ``(H, W)`` foreground masks restricting the features.
        model: ``similarity`` (rotation, uniform scale, translation) or ``homography``.
        min_inliers: fewer RANSAC inliers than this is a failure.
        ransac_threshold_px: RANSAC's inlier distance.
        max_error_px: an inlier RMS error above this is a failure (the model does not fit).
        upscale: passed to :func:`detect_features`.
        support_features, frame_features: precomputed features (skip detection).

    Returns:
        A :class:`Registration`. On failure its matrix is the identity (model ``identity``) and
        ``reason`` says what went wrong; callers decide whether the identity is a usable guess.
    """
    if model not in MODELS:
        raise ValueError(f"registration model must be one of {MODELS}; got {model!r}")
    fa = support_features if support_features is not None else detect_features(support_image, support_mask, upscale)
    fb = frame_features if frame_features is not None else detect_features(frame, frame_mask, upscale)
    need = 2 if model == "similarity" else 4
    need = max(need, min_inliers)
    if len(fa) < need or len(fb) < need:
        return Registration(False, "identity", reason=f"too few SIFT features (support {len(fa)}, frame {len(fb)}; "
                            f"need {need}): "
                            "the images have too little texture or the masks are too small")
    pairs = match_features(fa, fb)
    if len(pairs) < need:
        return Registration(False, "identity", n_matches=len(pairs),
                            reason=f"only {len(pairs)} features matched (need {need}): the frame may show a "
                            "different view or object")
    src, dst = fa.xy[pairs[:, 0]].astype(np.float64), fb.xy[pairs[:, 1]].astype(np.float64)
    matrix, inliers = _fit(model, src, dst, ransac_threshold_px)
    if matrix is None:
        return Registration(False, "identity", n_matches=len(pairs),
                            reason=f"RANSAC found no {model} for {len(pairs)} matches")
    inliers = inliers.ravel().astype(bool)
    reg = Registration(True, model, matrix, len(pairs), int(inliers.sum()))
    if inliers.any():
        err = np.linalg.norm(reg.apply(src[inliers]) - dst[inliers], axis=1)
        reg.reprojection_error_px = float(np.sqrt((err**2).mean()))
    # Plausibility: SVD's frame 0 and a user's first frame are near the support, never mirrored
    # or wildly rescaled; a degenerate fit is worse than no fit.
    det = np.linalg.det(matrix[:2, :2])
    if reg.n_inliers < min_inliers:
        reason = f"RANSAC kept only {reg.n_inliers} of {len(pairs)} matches (need {min_inliers})"
    elif not (1 / 9 < det < 9):
        reason = f"the {model} rescales area by {det:.3g} (a mirror or a degenerate fit)"
    elif not reg.reprojection_error_px <= max_error_px:
        reason = (f"the inliers' RMS error is {reg.reprojection_error_px:.2f} px (> {max_error_px} px): "
                  f"the {model} does not fit")
    else:
        return reg
    return Registration(False, "identity", np.eye(3), reg.n_matches, reg.n_inliers, reg.reprojection_error_px, reason)
