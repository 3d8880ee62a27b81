"""Image and mask arrays: the one home for the conversions every stage needs.

- Images are ``[H, W, 3]`` RGB, float32 in [0, 1]; callers may pass uint8, float, a torch
  tensor, or RGBA (alpha dropped): :func:`as_rgb`. :func:`to_uint8` goes back (rounded).
- Masks are ``[H, W]`` float32 in [0, 1] (nonzero = foreground); bool, uint8 0/255, float and
  tensors are accepted: :func:`as_mask`.
- Foreground masks themselves (estimated, cleaned, tracked through a clip) live in
  :mod:`dynapose4d.imaging.masks`.
"""

from __future__ import annotations

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
