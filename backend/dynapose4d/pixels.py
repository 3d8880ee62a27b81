"""Image arrays and foreground masks: the one home for the conversions every stage needs.

- Images are ``[H, W, 3]`` RGB, float32 in [0, 1]; callers may pass uint8, float, a torch
  tensor, or RGBA (alpha dropped): :func:`as_rgb`. :func:`to_uint8` goes back (rounded).
- Masks are ``[H, W]`` float32 in [0, 1] (nonzero = foreground); bool, uint8 0/255, float and
  tensors are accepted: :func:`as_mask`.
- Foreground of an object on a plain background (an input image, a video on white, a render):
  :func:`foreground_mask`; for a clip on white, :func:`masks_on_white`.
"""

from __future__ import annotations

import cv2
import numpy as np

WHITE = (1.0, 1.0, 1.0)


class PixelError(ValueError):
    """An image or mask array of the wrong shape or type; the message names it."""


def _numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor, without importing torch here
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def as_rgb(image, what: str = "image") -> np.ndarray:
    """``[H, W, 3]`` float32 in [0, 1] from uint8 or float RGB(A) (an alpha channel is dropped)."""
    arr = _numpy(image)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise PixelError(f"{what} must be [H, W, 3] RGB (or RGBA); got shape {arr.shape}")
    arr = arr[..., :3]
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    if not np.issubdtype(arr.dtype, np.floating):
        raise PixelError(f"{what} must be uint8 or float in [0, 1]; got dtype {arr.dtype}")
    return np.clip(arr, 0.0, 1.0).astype(np.float32, copy=False)


def as_mask(mask, shape: tuple[int, int], what: str = "mask") -> np.ndarray | None:
    """``[H, W]`` float32 in [0, 1] (bool, uint8 0/255, float or a trailing channel of 1);
    None passes through. The shape must be ``shape``."""
    if mask is None:
        return None
    arr = _numpy(mask)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.shape != tuple(shape):
        raise PixelError(f"{what} is {arr.shape}; it must have the image's shape {tuple(shape)}")
    if arr.dtype == bool:
        return arr.astype(np.float32)
    arr = arr.astype(np.float32)
    arr = arr / 255.0 if arr.max(initial=0.0) > 1.0 else arr  # 0/255 masks (a 0/1 uint8 mask stays 0/1)
    return np.clip(arr, 0.0, 1.0)


def to_uint8(x) -> np.ndarray:
    """Float in [0, 1] (any shape) -> uint8, rounded to nearest."""
    return np.clip(_numpy(x) * 255.0 + 0.5, 0, 255).astype(np.uint8)


def luma_u8(image) -> np.ndarray:
    """``[H, W]`` uint8 luma (Rec. 601, as OpenCV) of an RGB image in any accepted form."""
    return to_uint8(as_rgb(image) @ np.array([0.299, 0.587, 0.114], np.float32))


def border_strip(shape: tuple[int, int], width: int) -> np.ndarray:
    """``[H, W]`` bool: the ``width``-pixel strip along the four edges of an image."""
    edge = np.zeros(shape[:2], bool)
    edge[:width], edge[-width:], edge[:, :width], edge[:, -width:] = True, True, True, True
    return edge


def border_pixels(img: np.ndarray, width: int) -> np.ndarray:
    """``[P, 3]`` colours of the strip ``width`` pixels wide along the edges of ``img [H, W, 3]``."""
    return img[border_strip(img.shape, width)]


def clean_mask(mask: np.ndarray, *, open_px: int = 1, close_px: int = 2, min_fraction: float = 0.1) -> np.ndarray:
    """Binary clean-up of ``mask [H, W]`` (bool/float): opening, closing, hole filling, and
    dropping components smaller than ``min_fraction`` of the largest. Returns float32 {0, 1}."""
    m = (np.asarray(mask) > 0.5).astype(np.uint8)
    if open_px > 0:
        # a square element: opening keeps the corners of boxes
        m = cv2.morphologyEx(m, cv2.MORPH_OPEN, np.ones((2 * open_px + 1,) * 2, np.uint8))
    if close_px > 0:
        m = cv2.morphologyEx(m, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * close_px + 1,) * 2))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
    if count > 1:
        areas = stats[1:, cv2.CC_STAT_AREA]
        keep = np.flatnonzero(areas >= min_fraction * areas.max()) + 1
        m = np.isin(labels, keep).astype(np.uint8)
    # Fill holes: background not connected to the border becomes foreground.
    flood = np.pad(m, 1)
    cv2.floodFill(flood, np.zeros((flood.shape[0] + 2, flood.shape[1] + 2), np.uint8), (0, 0), 1)
    holes = (flood == 0)[1:-1, 1:-1]
    return (m.astype(bool) | holes).astype(np.float32)


def foreground_mask(
    rgb,
    *,
    background: tuple[float, float, float] | None = None,
    threshold: float | None = None,
    grabcut_iterations: int = 4,
    max_side: int = 512,
    min_fraction: float = 0.05,
) -> np.ndarray:
    """Weight-free foreground mask ``[H, W]`` float32 {0, 1} of an object on a plain background.

    1. The background colour is ``background`` (e.g. :data:`WHITE`), or the median of a border
       strip; 2. pixels farther from it than ``threshold`` (Euclidean RGB distance; default from
       the border's own spread, at least 0.1) seed the foreground; 3. GrabCut refines the seeds
       (``grabcut_iterations`` > 0; border pixels that look like background stay background);
       4. :func:`clean_mask`. Works at most ``max_side`` px, then upsamples. An image where
       nothing stands out gives an empty mask: callers that need an object check for one.
    """
    rgb = as_rgb(rgb)
    h, w = rgb.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    small = rgb
    if scale < 1:
        small = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    sh, sw = small.shape[:2]
    # 1. Background colour and spread.
    strip = max(2, round(0.02 * min(sh, sw)))
    edge = border_strip((sh, sw), strip)
    border = small[edge]
    bg = np.asarray(background, np.float32) if background is not None else np.median(border, axis=0)
    spread = np.median(np.linalg.norm(border - bg, axis=-1))
    thr = threshold if threshold is not None else max(0.1, 4.0 * float(spread))
    # 2. Seeds.
    dist = np.linalg.norm(small - bg, axis=-1)
    seed = clean_mask(dist > thr, open_px=1, close_px=1, min_fraction=min_fraction)
    mask = seed
    # 3. GrabCut from the seeds.
    if grabcut_iterations > 0 and seed.sum() >= 16:
        labels = np.where(seed > 0, cv2.GC_PR_FGD, cv2.GC_PR_BGD).astype(np.uint8)
        labels[edge & (dist <= thr)] = cv2.GC_BGD
        core = cv2.erode(seed.astype(np.uint8), np.ones((5, 5), np.uint8), iterations=2).astype(bool)
        labels[core] = cv2.GC_FGD
        if (labels == cv2.GC_BGD).any() or (labels == cv2.GC_PR_BGD).any():
            bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
            try:
                cv2.grabCut(to_uint8(small)[..., ::-1].copy(), labels, None, bgd, fgd, grabcut_iterations, cv2.GC_INIT_WITH_MASK)
                mask = clean_mask((labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD))
            except cv2.error:  # degenerate colour statistics (e.g. a two-colour image): keep the seeds
                mask = seed
            if mask.sum() < 16:
                mask = seed
    # 4. Back to full size.
    if scale < 1:
        mask = (cv2.resize(mask, (w, h), interpolation=cv2.INTER_LINEAR) > 0.5).astype(np.float32)
    return mask


def masks_on_white(frames, *, threshold: float = 0.1) -> np.ndarray:
    """Foreground masks ``[T, H, W]`` float32 {0, 1} of frames ``[T, H, W, 3]`` (or one frame) on
    a white background: :func:`foreground_mask` against white, without GrabCut (light shadows and
    compression noise stay background)."""
    arr = _numpy(frames)
    if arr.ndim == 3:
        arr = arr[None]
    return np.stack([foreground_mask(f, background=WHITE, threshold=threshold, grabcut_iterations=0, min_fraction=0.1) for f in arr])
