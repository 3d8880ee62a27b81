"""Drawings of tracked keypoints for a visual check: frames with points and skeleton, as a GIF or a strip.

Each point is a disc coloured by confidence (red 0 -> yellow 0.5 -> green 1); a point the
estimator marks invisible is a hollow ring; ground truth, when given, is a small white cross.
Pillow's pixel coordinates are ours (pixel (i, j) covers [j, j+1] x [i, i+1]), so positions are
only multiplied by the drawing scale.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

from ..imaging.images import save_gif  # noqa: F401  (re-exported: one home for writing GIFs)
from ..imaging.pixels import to_uint8
from .base import TrackResult, as_rgb_float


def confidence_colour(c: float) -> tuple[int, int, int]:
    """RGB for a confidence in [0, 1]: red -> yellow -> green."""
    c = float(np.clip(c, 0.0, 1.0))
    return (255, int(510 * c), 0) if c < 0.5 else (int(510 * (1 - c)), 220, 0)


def draw_keypoints(image: np.ndarray, xy: np.ndarray, confidence: np.ndarray | None = None,
                   visible: np.ndarray | None = None, edges: np.ndarray | None = None, *,
                   truth: np.ndarray | None = None, scale: int = 2, radius: float = 3.0,
                   label: str | None = None) -> Image.Image:
    """One frame with its keypoints, upscaled by ``scale``.

    Args:
        image: ``(H, W, 3)`` RGB, float [0, 1] or uint8.
        xy: ``[N, 2]`` pixels (our convention).
        confidence: ``[N]`` in [0, 1] (all 1 when None).
        visible: ``[N]`` bool (all True when None).
        edges: ``[E, 2]`` skeleton edges.
        truth: ``[N, 2]`` ground-truth positions to draw as crosses.
        scale: integer upscaling of the frame (nearest), so small frames stay readable.
        radius: disc radius in output pixels.
        label: text written in the top-left corner.
    """
    rgb = to_uint8(as_rgb_float(image))
    im = Image.fromarray(rgb).resize((rgb.shape[1] * scale, rgb.shape[0] * scale), Image.NEAREST)
    draw = ImageDraw.Draw(im)
    xy = np.asarray(xy, np.float64) * scale
    n = len(xy)
    confidence = np.ones(n) if confidence is None else np.asarray(confidence)
    visible = np.ones(n, bool) if visible is None else np.asarray(visible, bool)
    for a, b in ([] if edges is None else np.asarray(edges)):
        dim = not (visible[a] and visible[b])
        colour = (150, 150, 150) if dim else (40, 40, 200)
        draw.line([tuple(xy[a]), tuple(xy[b])], fill=colour, width=max(1, scale // 2))
    if truth is not None:
        for x, y in np.asarray(truth, np.float64) * scale:
            r = radius
            draw.line([(x - r, y), (x + r, y)], fill=(255, 255, 255), width=1)
            draw.line([(x, y - r), (x, y + r)], fill=(255, 255, 255), width=1)
    for (x, y), c, v in zip(xy, confidence, visible):
        box = [x - radius, y - radius, x + radius, y + radius]
        colour = confidence_colour(c)
        if v:
            draw.ellipse(box, fill=colour, outline=(0, 0, 0))
        else:
            draw.ellipse(box, outline=colour, width=2)
    if label:
        draw.text((3, 2), label, fill=(0, 0, 0))
    return im


def crop_box(masks: np.ndarray, margin: int = 8) -> tuple[int, int, int, int]:
    """``(x0, y0, x1, y1)`` pixel box around the union of masks ``[T, H, W]``, grown by ``margin``."""
    union = np.asarray(masks).any(0)
    h, w = union.shape
    if not union.any():
        return 0, 0, w, h
    rows, cols = np.nonzero(union.any(1))[0], np.nonzero(union.any(0))[0]
    x0, y0 = max(0, cols[0] - margin), max(0, rows[0] - margin)
    return int(x0), int(y0), int(min(w, cols[-1] + 1 + margin)), int(min(h, rows[-1] + 1 + margin))


def draw_track(frames: Sequence[np.ndarray], result: TrackResult, truth: np.ndarray | None = None,
               scale: int = 2, box: tuple[int, int, int, int] | None = None) -> list[Image.Image]:
    """One drawing per frame of ``result`` over ``frames [T, H, W, 3]`` (``truth [T, N, 2]`` optional).

    ``box = (x0, y0, x1, y1)`` crops every frame (e.g. :func:`crop_box`), so small objects fill the drawing.
    """
    x0, y0, x1, y1 = box if box is not None else (0, 0, frames[0].shape[1], frames[0].shape[0])
    offset = np.array([x0, y0], np.float32)
    return [
        draw_keypoints(f[y0:y1, x0:x1], result.xy[t] - offset, result.confidence[t], result.visible[t], result.edges,
                       truth=None if truth is None else truth[t] - offset, scale=scale, label=f"t={t}")
        for t, f in enumerate(frames)
    ]


def save_strip(images: Sequence[Image.Image], path: str | Path, columns: int = 8) -> None:
    """A PNG grid of the images, ``columns`` per row, in order."""
    images = list(images)
    w, h = images[0].size
    rows = (len(images) + columns - 1) // columns
    sheet = Image.new("RGB", (w * min(columns, len(images)), h * rows), (255, 255, 255))
    for i, im in enumerate(images):
        sheet.paste(im, ((i % columns) * w, (i // columns) * h))
    sheet.save(path)
