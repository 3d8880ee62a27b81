"""2D similarity maps and the warp that applies them, in the project's pixel convention.

Matrices are ``[2, 3]`` and act on (x, y, 1) with pixel (i, j)'s centre at (j + 0.5, i + 0.5)
(DESIGN.md §4); they are converted where OpenCV is called.
"""

from __future__ import annotations

import math

import cv2
import numpy as np


def similarity(scale: float, src_xy, dst_xy) -> np.ndarray:
    """``[2, 3]``: scale about ``src_xy`` and move it to ``dst_xy``."""
    sx, sy = src_xy
    dx, dy = dst_xy
    return np.array([[scale, 0.0, dx - scale * sx], [0.0, scale, dy - scale * sy]], np.float64)


def matrix_scale(m: np.ndarray) -> float:
    return float(math.sqrt(abs(np.linalg.det(np.asarray(m, np.float64)[:2, :2]))))


def warp(image: np.ndarray, matrix: np.ndarray, size: int | tuple[int, int], border: float | tuple) -> np.ndarray:
    """``image`` mapped by ``matrix`` (our pixel convention) onto a ``size`` x ``size`` canvas
    (or ``(width, height)``).

    A shrinking map is done as an area-filtered resize first (no aliasing), then the remaining
    near-unit similarity by bilinear warping.
    """
    m = np.asarray(matrix, np.float64)
    s = matrix_scale(m)
    img = image.astype(np.float32)
    if s < 0.8:
        h, w = img.shape[:2]
        nw, nh = max(1, round(w * s)), max(1, round(h * s))
        img = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA)
        # cv2.resize keeps pixel-centre alignment: x_small = x * (nw / w) in our convention.
        m = m @ np.diag([w / nw, h / nh, 1.0])
    # Our x = OpenCV x + 0.5 on both sides: b_cv = b + A @ (0.5, 0.5) - 0.5.
    cv = m.copy()
    cv[:, 2] = m[:, 2] + m[:, :2] @ np.array([0.5, 0.5]) - 0.5
    out_size = (size, size) if isinstance(size, int) else tuple(size)
    return cv2.warpAffine(img, cv, out_size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=border)
