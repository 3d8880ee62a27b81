"""Support keypoints re-anchored in a frame by a thin-plate spline through SIFT matches.

Later frames of a driving video are re-anchored to the support this way, which bounds the drift
of frame-to-frame tracking (the global support -> frame 0 registration is
:func:`dynapose4d.imaging.register.register`).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..imaging.register import Features, match_features
from ..imaging.tps import ThinPlateSpline


@dataclass
class Anchor:
    """Support keypoints carried into one frame by a thin-plate spline through feature matches.

    Attributes:
        xy: ``float32 [N, 2]`` predicted frame positions.
        support: ``float32 [N]`` Gaussian-weighted count of inlier matches near each keypoint (in
            the support image); near zero means the prediction is an extrapolation.
        n_inliers: matches kept after outlier rejection.
    """

    xy: np.ndarray
    support: np.ndarray
    n_inliers: int


def anchor_keypoints(support_features: Features, frame_features: Features, keypoints: np.ndarray,
                     prediction=None, *, gate_px: float = 12.0, radius_px: float = 12.0,
                     residual_px: float = 2.0, regularization: float = 1e-3, ratio: float = 0.8,
                     max_matches: int = 160) -> Anchor | None:
    """Carry support ``keypoints [N, 2]`` into a frame through SIFT matches (None if too few).

    Outliers are removed in two steps: (1) a match must agree within ``gate_px`` with a global
    homography that RANSAC fits to all matches with that loose threshold, or with
    ``prediction``, a callable mapping support pixels to where tracking currently puts them
    (either gate alone can be fooled: the homography by articulated parts, the prediction by
    tracks an occluder dragged along); (2) matches whose leave-one-out spline residual (the
    distance to where the other matches put them) exceeds ``residual_px`` are dropped, worst
    first. The spline through the survivors then maps the keypoints.
    """
    pairs = match_features(support_features, frame_features, ratio, max_matches)  # the spline costs O(K^3)
    if len(pairs) < 4:
        return None
    src = support_features.xy[pairs[:, 0]].astype(np.float64)
    dst = frame_features.xy[pairs[:, 1]].astype(np.float64)
    keep = np.zeros(len(src), bool)
    if len(src) >= 8:
        _, inliers = cv2.findHomography(src, dst, cv2.RANSAC, gate_px, maxIters=500, confidence=0.99)
        if inliers is not None:
            keep |= inliers.ravel().astype(bool)
    if prediction is not None:
        keep |= np.linalg.norm(prediction(src) - dst, axis=1) < gate_px
    if prediction is None and len(src) < 8:
        keep[:] = True
    while keep.sum() >= 4:
        idx = np.flatnonzero(keep)
        loo = np.linalg.norm(ThinPlateSpline(src[idx], dst[idx], regularization).leave_one_out_residuals(), axis=1)
        worst = loo.max()
        if worst <= residual_px:
            break
        # An outlier also inflates its neighbours' residuals: drop only the clearly worst.
        keep[idx[loo > max(residual_px, 0.5 * worst)]] = False
    if keep.sum() < 4:
        return None
    spline = ThinPlateSpline(src[keep], dst[keep], regularization)
    d2 = ((np.asarray(keypoints, np.float64)[:, None] - src[keep][None]) ** 2).sum(-1)
    density = np.exp(-0.5 * d2 / radius_px**2).sum(1)
    return Anchor(spline(keypoints).astype(np.float32), density.astype(np.float32), int(keep.sum()))
