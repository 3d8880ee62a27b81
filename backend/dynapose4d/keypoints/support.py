"""Automatic support keypoints: N well-spread, trackable points on the foreground, with a skeleton.

Used when the user gives no keypoints (their JSON is read by
:func:`dynapose4d.keypoints.base.parse_keypoints_json`). Pixel coordinates follow the project's
convention: pixel (row i, column j) is centred at (j + 0.5, i + 0.5).
"""

from __future__ import annotations

import cv2
import numpy as np

from ..imaging.masks import masks_on_white
from .base import MAX_KEYPOINTS, KeypointError, SupportKeypoints, as_bool_mask, as_rgb_float

DEFAULT_NUM_KEYPOINTS = 14  # PoseAnything's N in the paper
WHITE_THRESHOLD = 0.06  # an object on white without a mask: how far from white is foreground


# ---------------------------------------------------------------------------------------------
# automatic support keypoints


def trackability(image: np.ndarray, mask: np.ndarray | None = None, window: int = 9) -> np.ndarray:
    """``(H, W)`` float32 texture strength: the smaller eigenvalue of the colour structure tensor.

    The tensor sums ``[gx^2, gx gy; gx gy, gy^2]`` over the CIELAB channels (each divided by
    100, so lightness spans [0, 1]) and averages it over a ``window`` box; gradients are per
    pixel. Large values are corners Lucas-Kanade can lock onto in both directions (Shi-Tomasi,
    with colour, because smoothly shaded objects often vary in hue where luma is flat). With a
    ``mask``, gradients within two pixels of its edge are ignored: the silhouette against the
    background is not texture of the object (a point there slides along the edge), so a
    texture-less object scores ~0 everywhere.
    """
    lab = cv2.cvtColor(as_rgb_float(image), cv2.COLOR_RGB2Lab) / 100.0
    inner = None
    if mask is not None:
        inner = cv2.erode(np.asarray(mask).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    a = b = c = 0.0
    for ch in range(3):
        gx = cv2.Sobel(lab[..., ch], cv2.CV_32F, 1, 0, ksize=3) / 8.0
        gy = cv2.Sobel(lab[..., ch], cv2.CV_32F, 0, 1, ksize=3) / 8.0
        if inner is not None:
            gx[~inner], gy[~inner] = 0.0, 0.0
        a = a + cv2.boxFilter(gx * gx, -1, (window, window))
        b = b + cv2.boxFilter(gx * gy, -1, (window, window))
        c = c + cv2.boxFilter(gy * gy, -1, (window, window))
    return (a + c) / 2 - np.sqrt(((a - c) / 2) ** 2 + b * b)


def minimum_spanning_tree(xy: np.ndarray, mask: np.ndarray | None = None, outside_penalty: float = 10.0) -> np.ndarray:
    """Skeleton edges ``int64 [N-1, 2]``: the minimum spanning tree over points ``xy [N, 2]``.

    Edge cost is the Euclidean length, multiplied by ``1 + outside_penalty * f`` where f is the
    fraction of the segment outside ``mask`` (so bones prefer to stay on the object instead of
    jumping across background between parts). Prim's algorithm, O(N^2).
    """
    xy = np.asarray(xy, np.float64).reshape(-1, 2)
    n = len(xy)
    cost = np.linalg.norm(xy[:, None] - xy[None], axis=-1)
    if mask is not None and n > 1:
        h, w = mask.shape
        s = np.linspace(0.0, 1.0, 17)[:, None, None, None]
        pts = xy[None, :, None] * (1 - s) + xy[None, None, :] * s  # [17, N, N, 2]
        cols = np.clip(np.floor(pts[..., 0]).astype(int), 0, w - 1)
        rows = np.clip(np.floor(pts[..., 1]).astype(int), 0, h - 1)
        outside = 1.0 - mask[rows, cols].mean(0)
        cost = cost * (1.0 + outside_penalty * outside)
    in_tree = np.zeros(n, bool)
    in_tree[0] = True
    best, parent = cost[0].copy(), np.zeros(n, np.int64)
    edges = []
    for _ in range(n - 1):
        j = int(np.argmin(np.where(in_tree, np.inf, best)))
        edges.append((int(parent[j]), j))
        in_tree[j] = True
        closer = cost[j] < best
        best[closer], parent[closer] = cost[j][closer], j
    return np.array(edges, np.int64).reshape(-1, 2)


def auto_support_keypoints(
    image: np.ndarray,
    mask: np.ndarray | None = None,
    n: int = DEFAULT_NUM_KEYPOINTS,
    border_px: float | None = None,
) -> SupportKeypoints:
    """N well-spread, trackable keypoints on the foreground of ``image``, with an MST skeleton.

    Args:
        image: ``(H, W, 3)`` RGB (float [0, 1] or uint8), an object on white.
        mask: ``(H, W)`` foreground mask; estimated from the white background when None.
        n: number of keypoints, 1..100.
        border_px: keep points this far inside the mask edge (default 1.5% of the image size),
            so their tracking window sees mostly the object.

    Farthest-point sampling over the mask where each candidate's distance to the chosen set is
    weighted by its corner strength (Shi-Tomasi), so points spread over the object but prefer
    texture; each pick is then moved to the strongest corner within a few pixels.
    """
    if not isinstance(n, (int, np.integer)) or not 1 <= n <= MAX_KEYPOINTS:
        raise KeypointError(f"the number of keypoints must be an integer within 1..{MAX_KEYPOINTS}; got {n!r}")
    rgb = as_rgb_float(image, "support image")
    h, w = rgb.shape[:2]
    mask = masks_on_white(rgb, threshold=WHITE_THRESHOLD)[0] > 0.5 if mask is None else as_bool_mask(mask, (h, w), "support mask")
    if not mask.any():
        raise KeypointError("the support's foreground mask is empty: pass a mask, or an image of an object on white")
    # 1. candidates: the mask shrunk by a border (unless the object is too thin for that).
    border = max(2, round(0.015 * max(h, w))) if border_px is None else max(0, round(border_px))
    inner = mask
    if border > 0:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * border + 1, 2 * border + 1))
        eroded = cv2.erode(mask.astype(np.uint8), kernel) > 0
        if eroded.sum() >= 4 * n:
            inner = eroded
    rows, cols = np.nonzero(inner)
    cand = np.stack([cols + 0.5, rows + 0.5], 1)
    # 2. weights from corner strength; flat regions keep a floor so spread still wins there.
    strength = trackability(rgb, mask)
    s = strength[rows, cols]
    weight = 0.2 + 0.8 * np.sqrt(np.clip(s / max(float(s.max()), 1e-12), 0, 1))
    # 3. farthest-point sampling, seeded at the strongest candidate far from the centroid.
    dist = np.linalg.norm(cand - cand.mean(0), axis=1) + 1.0
    chosen = []
    for _ in range(min(n, len(cand))):
        i = int(np.argmax(dist * weight))
        chosen.append(i)
        dist = np.minimum(dist, np.linalg.norm(cand - cand[i], axis=1))
    # 4. snap each pick to the local strength maximum (radius ~1% of the image) inside `inner`.
    radius = max(1, round(0.01 * max(h, w)))
    local = np.where(inner, strength, -1.0)
    xy = []
    for i in chosen:
        r, c = rows[i], cols[i]
        r0, r1, c0, c1 = max(0, r - radius), min(h, r + radius + 1), max(0, c - radius), min(w, c + radius + 1)
        win = local[r0:r1, c0:c1]
        dr, dc = np.unravel_index(int(np.argmax(win)), win.shape)
        p = (c0 + dc + 0.5, r0 + dr + 0.5)
        xy.append(p if p not in xy else (c + 0.5, r + 0.5))
    xy = np.array(xy, np.float32)
    if len(xy) < n:
        raise KeypointError(f"the foreground has only {len(xy)} pixels, fewer than the {n} keypoints asked for")
    return SupportKeypoints(xy, names=None, edges=minimum_spanning_tree(xy, mask), image_size=(w, h))
