"""The input image: loading with clear errors, a foreground mask, and the reference layout.

``prepare_reference(path)`` turns any reasonable image file into what the stages use: the
object composited on white, recentred and scaled so its bounding box's longer side fills
``fill`` (0.85) of a square ``size`` x ``size`` (256) frame, plus its mask. DreamGaussian does
the same with a 0.8 fill.

Masks come from, in this order: a mask given by the caller, the image's alpha channel, a
user-supplied segmentation callable (e.g. a background-removal network), or a weight-free
estimate (distance from the border colour, refined with GrabCut) that works for objects on a
plain background.

Conventions (DESIGN.md §4): images ``[H, W, 3]`` float in [0, 1], masks ``[H, W]`` in [0, 1];
pixel (row i, column j) has its centre at (x, y) = (j + 0.5, i + 0.5).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = [
    "ImageLoadError",
    "LoadedImage",
    "ReferenceImage",
    "load_image",
    "estimate_foreground",
    "clean_mask",
    "border_pixels",
    "recentre",
    "prepare_reference",
    "MAX_PIXELS",
    "MIN_SIDE",
    "DEFAULT_FILL",
]

MIN_SIDE = 32
# Decompression-bomb guard: ~50 megapixels (e.g. 8000 x 6250). Raise it with max_pixels=...
MAX_PIXELS = 50_000_000
DEFAULT_FILL = 0.85
DEFAULT_SIZE = 256

Segmenter = Callable[[np.ndarray], np.ndarray]
"""``(H, W, 3) uint8 RGB -> (H, W)`` foreground mask (bool, uint8 0/255, or float in [0, 1])."""


class ImageLoadError(ValueError):
    """An input image cannot be used; the message names the file and what to do."""


@dataclass
class LoadedImage:
    """A decoded image: ``rgb [H, W, 3]`` float32 in [0, 1] (not composited), ``alpha [H, W]`` or None."""

    rgb: np.ndarray
    alpha: np.ndarray | None
    source: str
    mode: str  # Pillow's mode of the file ("RGBA", "I;16", "P", ...)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)."""
        return self.rgb.shape[1], self.rgb.shape[0]


# -------------------------------------------------------------------------------------------------
# loading


def _to_float(img: Image.Image, source: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Any Pillow mode -> (rgb float32 [H, W, 3], alpha float32 [H, W] or None)."""
    mode = img.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        gray = np.asarray(img, dtype=np.float64)
        if mode.startswith("I;16"):
            gray = gray / 65535.0
        elif mode == "I":  # 16-bit PNGs decode as "I" in some Pillow versions
            gray = gray / (65535.0 if gray.max() > 255 else 255.0)
        else:
            gray = gray / (255.0 if gray.max() > 1.0 else 1.0)
        gray = np.clip(gray, 0.0, 1.0).astype(np.float32)
        return np.repeat(gray[..., None], 3, axis=-1), None
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in img.info)
    if mode in ("L", "1"):
        has_alpha = False
    img = img.convert("RGBA" if has_alpha else "RGB")
    arr = np.asarray(img, dtype=np.float32) / 255.0
    if not has_alpha:
        return arr, None
    alpha = arr[..., 3]
    if alpha.min() >= 1.0:  # an opaque alpha channel carries no mask
        return arr[..., :3], None
    if alpha.max() <= 0.0:
        raise ImageLoadError(f"{source}: the image is fully transparent (alpha is 0 everywhere)")
    return np.ascontiguousarray(arr[..., :3]), np.ascontiguousarray(alpha)


def load_image(
    source: str | Path,
    *,
    max_pixels: int = MAX_PIXELS,
    min_side: int = MIN_SIDE,
) -> LoadedImage:
    """Read an image file of any common format and mode, with errors a user can act on.

    Grayscale, 16-bit, palette, CMYK and LA/RGBA images are converted; EXIF orientation is
    applied. Raises :class:`ImageLoadError` for a missing, empty, non-image, truncated, tiny
    (< ``min_side`` px) or huge (> ``max_pixels``) file.
    """
    path = Path(source)
    name = str(path)
    # 1. The file itself.
    if not path.exists():
        raise ImageLoadError(f"{name}: no such file")
    if path.is_dir():
        raise ImageLoadError(f"{name} is a folder; give an image file (PNG, JPEG, WebP, ...)")
    if path.stat().st_size == 0:
        raise ImageLoadError(f"{name} is empty (0 bytes); the file was not written completely or is a placeholder")
    # 2. Header: format and size, before decoding any pixels.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit applies
        try:
            img = Image.open(path)
        except UnidentifiedImageError:
            raise ImageLoadError(
                f"{name} is not an image Pillow can read; give a PNG, JPEG, WebP, BMP or TIFF file"
            ) from None
        except Image.DecompressionBombError:
            raise ImageLoadError(
                f"{name} is too large to open safely (decompression-bomb guard); resize it below {max_pixels:,} pixels"
            ) from None
        except OSError as exc:
            raise ImageLoadError(f"{name} could not be read: {exc}") from None
    with img:
        w, h = img.size
        if w * h > max_pixels:
            raise ImageLoadError(
                f"{name} is {w}x{h} = {w * h:,} pixels, above the limit of {max_pixels:,} (a guard against "
                "decompression bombs); resize it (1024 px is plenty: the reference is 256 px) or raise max_pixels"
            )
        if min(w, h) < min_side:
            raise ImageLoadError(
                f"{name} is only {w}x{h} pixels; give an image at least {min_side} px on each side (256+ recommended)"
            )
        # 3. Decode all pixels.
        try:
            img.load()
        except (OSError, SyntaxError, ValueError) as exc:
            raise ImageLoadError(f"{name} is damaged or truncated ({exc}); re-export or re-download the file") from None
        mode = img.mode
        img = ImageOps.exif_transpose(img) or img
        rgb, alpha = _to_float(img, name)
    return LoadedImage(rgb, alpha, name, mode)


# -------------------------------------------------------------------------------------------------
# masks


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
    padded = np.pad(m, 1)
    flood = padded.copy()
    cv2.floodFill(flood, np.zeros((flood.shape[0] + 2, flood.shape[1] + 2), np.uint8), (0, 0), 1)
    holes = (flood == 0)[1:-1, 1:-1]
    return (m.astype(bool) | holes).astype(np.float32)


def border_pixels(img: np.ndarray, width: int) -> np.ndarray:
    """``[P, 3]`` colours of a strip ``width`` pixels wide along the four edges of ``img [H, W, 3]``."""
    strips = (img[:width], img[-width:], img[:, :width], img[:, -width:])
    return np.concatenate([s.reshape(-1, 3) for s in strips])


def estimate_foreground(
    rgb: np.ndarray,
    *,
    threshold: float | None = None,
    grabcut_iterations: int = 4,
    max_side: int = 512,
) -> np.ndarray:
    """Weight-free foreground mask ``[H, W]`` float32 {0, 1} of an object on a plain background.

    1. the background colour is the median of a border strip; 2. pixels far from it (Euclidean
    RGB distance above ``threshold``, default from the border's own spread, at least 0.1) seed the
    foreground; 3. GrabCut refines the seeds (border pixels that look like background are fixed as
    background); 4. :func:`clean_mask`. Works at most ``max_side`` px, then upsamples.
    Raises ImageLoadError when nothing stands out from the background.
    """
    h, w = rgb.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    small = rgb
    if scale < 1:
        small = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    sh, sw = small.shape[:2]
    # 1. Background colour and spread from the border strip.
    strip = max(2, round(0.02 * min(sh, sw)))
    border = border_pixels(small, strip)
    bg = np.median(border, axis=0)
    spread = np.median(np.linalg.norm(border - bg, axis=-1))
    thr = threshold if threshold is not None else max(0.1, 4.0 * float(spread))
    # 2. Seeds.
    dist = np.linalg.norm(small - bg, axis=-1)
    seed = clean_mask(dist > thr, open_px=1, close_px=1, min_fraction=0.05)
    if seed.sum() < 16:
        raise ImageLoadError(
            "could not find an object that stands out from the background; give an image with a transparent "
            "background (RGBA), a mask, or a segmentation function"
        )
    # 3. GrabCut from the seeds.
    labels = np.where(seed > 0, cv2.GC_PR_FGD, cv2.GC_PR_BGD).astype(np.uint8)
    edge = np.zeros((sh, sw), bool)
    edge[:strip], edge[-strip:], edge[:, :strip], edge[:, -strip:] = True, True, True, True
    labels[edge & (dist <= thr)] = cv2.GC_BGD
    core = cv2.erode(seed.astype(np.uint8), np.ones((5, 5), np.uint8), iterations=2).astype(bool)
    labels[core] = cv2.GC_FGD
    mask = seed
    if grabcut_iterations > 0 and (labels == cv2.GC_BGD).any() | (labels == cv2.GC_PR_BGD).any():
        img8 = np.clip(small * 255 + 0.5, 0, 255).astype(np.uint8)[..., ::-1].copy()  # OpenCV wants BGR
        bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
        try:
            cv2.grabCut(img8, labels, None, bgd, fgd, grabcut_iterations, cv2.GC_INIT_WITH_MASK)
            mask = ((labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)).astype(np.float32)
        except cv2.error:  # degenerate colour statistics (e.g. a two-colour image): keep the seeds
            mask = seed
    mask = clean_mask(mask)
    if mask.sum() < 16:
        mask = seed
    # 4. Back to full size.
    if scale < 1:
        mask = (cv2.resize(mask, (w, h), interpolation=cv2.INTER_LINEAR) > 0.5).astype(np.float32)
    return mask


def _as_mask(mask, shape: tuple[int, int], what: str) -> np.ndarray:
    m = np.asarray(mask.detach().cpu() if isinstance(mask, torch.Tensor) else mask)
    if m.ndim == 3 and m.shape[-1] == 1:
        m = m[..., 0]
    if m.shape != tuple(shape):
        raise ImageLoadError(f"{what} is {m.shape}; it must have the image's shape {tuple(shape)}")
    if m.dtype == bool:
        return m.astype(np.float32)
    m = m.astype(np.float32)
    if m.max() > 1.0:
        m = m / 255.0
    return np.clip(m, 0.0, 1.0)


# -------------------------------------------------------------------------------------------------
# the reference layout


@dataclass
class ReferenceImage:
    """The input image in the reference layout.

    Attributes:
        image: ``[S, S, 3]`` float32 in [0, 1], the object composited on white.
        mask: ``[S, S]`` float32 in [0, 1].
        source: where it came from (path or description).
        mask_source: ``"given"``, ``"alpha"``, ``"segmenter"`` or ``"estimated"``.
        original_size: (width, height) of the decoded file.
        crop: (x0, y0, x1, y1) of the object's box in original pixels (edges, continuous coords).
        scale: (sx, sy) reference pixels per original pixel; ``offset`` (ox, oy) in reference px.
            A point maps as ``x_ref = (x - x0) * sx + ox`` (see :meth:`to_reference`).
    """

    image: torch.Tensor
    mask: torch.Tensor
    source: str = ""
    mask_source: str = ""
    original_size: tuple[int, int] = (0, 0)
    crop: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    scale: tuple[float, float] = (1.0, 1.0)
    offset: tuple[float, float] = (0.0, 0.0)
    fill: float = DEFAULT_FILL
    meta: dict = field(default_factory=dict)

    @property
    def size(self) -> int:
        return int(self.image.shape[0])

    def to_reference(self, xy: np.ndarray) -> np.ndarray:
        """Original-image pixel coordinates ``[..., 2]`` -> reference coordinates (our convention)."""
        xy = np.asarray(xy, dtype=np.float64)
        x0, y0 = self.crop[:2]
        x = (xy[..., 0] - x0) * self.scale[0] + self.offset[0]
        y = (xy[..., 1] - y0) * self.scale[1] + self.offset[1]
        return np.stack([x, y], -1)

    def from_reference(self, xy: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`to_reference`."""
        xy = np.asarray(xy, dtype=np.float64)
        x0, y0 = self.crop[:2]
        x = (xy[..., 0] - self.offset[0]) / self.scale[0] + x0
        y = (xy[..., 1] - self.offset[1]) / self.scale[1] + y0
        return np.stack([x, y], -1)

    def rgba(self) -> np.ndarray:
        """``[S, S, 4]`` uint8: the image with the mask as alpha."""
        arr = torch.cat([self.image, self.mask[..., None]], -1).clamp(0, 1).numpy()
        return (arr * 255 + 0.5).astype(np.uint8)

    def save(self, folder: str | Path) -> Path:
        """``folder/reference.png`` (RGBA, on white with the mask as alpha) + ``reference.json``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(self.rgba(), "RGBA").save(folder / "reference.png")
        info = {k: v for k, v in asdict(self).items() if k not in ("image", "mask")}
        (folder / "reference.json").write_text(json.dumps(info, indent=2))
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> "ReferenceImage":
        folder = Path(folder)
        info = json.loads((folder / "reference.json").read_text())
        arr = np.asarray(Image.open(folder / "reference.png").convert("RGBA"), dtype=np.float32) / 255.0
        for key in ("original_size", "crop", "scale", "offset"):
            info[key] = tuple(info[key])
        return cls(torch.from_numpy(arr[..., :3].copy()), torch.from_numpy(arr[..., 3].copy()), **info)


def recentre(
    rgb: np.ndarray,
    mask: np.ndarray,
    *,
    size: int = DEFAULT_SIZE,
    fill: float = DEFAULT_FILL,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Composite on white, crop to the mask's box (mask > 0.5) and scale its longer side to
    ``fill * size``, centred in a white ``size`` x ``size`` frame.

    Returns ``(image [S, S, 3], mask [S, S], transform)`` with transform keys ``crop``,
    ``scale``, ``offset`` as in :class:`ReferenceImage`.
    """
    if not 0.0 < fill <= 1.0:
        raise ValueError(f"fill must be in (0, 1], got {fill}")
    ys, xs = np.nonzero(mask > 0.5)
    if len(xs) == 0:
        raise ImageLoadError("the foreground mask is empty; nothing to recentre")
    x0, x1, y0, y1 = int(xs.min()), int(xs.max()) + 1, int(ys.min()), int(ys.max()) + 1
    composite = rgb * mask[..., None] + (1.0 - mask[..., None])
    crop_rgb, crop_mask = composite[y0:y1, x0:x1], mask[y0:y1, x0:x1]
    cw, ch = x1 - x0, y1 - y0
    s = fill * size / max(cw, ch)
    nw, nh = max(1, round(cw * s)), max(1, round(ch * s))
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    crop_rgb = cv2.resize(np.ascontiguousarray(crop_rgb, dtype=np.float32), (nw, nh), interpolation=interp)
    crop_mask = cv2.resize(np.ascontiguousarray(crop_mask, dtype=np.float32), (nw, nh), interpolation=interp)
    ox, oy = (size - nw) // 2, (size - nh) // 2
    image = np.ones((size, size, 3), np.float32)
    out_mask = np.zeros((size, size), np.float32)
    image[oy : oy + nh, ox : ox + nw] = crop_rgb.reshape(nh, nw, 3)
    out_mask[oy : oy + nh, ox : ox + nw] = crop_mask.reshape(nh, nw)
    transform = {
        "crop": (float(x0), float(y0), float(x1), float(y1)),
        "scale": (nw / cw, nh / ch),
        "offset": (float(ox), float(oy)),
    }
    return np.clip(image, 0, 1), np.clip(out_mask, 0, 1), transform


def prepare_reference(
    source: str | Path | np.ndarray | LoadedImage,
    *,
    size: int = DEFAULT_SIZE,
    fill: float = DEFAULT_FILL,
    mask: np.ndarray | torch.Tensor | None = None,
    segmenter: Segmenter | None = None,
    max_pixels: int = MAX_PIXELS,
) -> ReferenceImage:
    """Load (if needed), mask, recentre: the input image as the stages use it.

    Args:
        source: image path, a decoded :class:`LoadedImage`, or an array ``[H, W, 3|4]`` (uint8 or
            float in [0, 1]; a 4th channel is alpha).
        size: output side in pixels (256: DreamGaussian's reference size).
        fill: fraction of the frame the object's longer side fills (0.85).
        mask: a foreground mask ``[H, W]`` for the original image (wins over everything else).
        segmenter: called on the ``uint8`` RGB image when there is no mask or alpha channel.
    """
    # 1. Decode.
    if isinstance(source, LoadedImage):
        loaded = source
    elif isinstance(source, (str, Path)):
        loaded = load_image(source, max_pixels=max_pixels)
    else:
        arr = np.asarray(source)
        if arr.ndim != 3 or arr.shape[-1] not in (3, 4):
            raise ImageLoadError(f"image array must be [H, W, 3] or [H, W, 4]; got {arr.shape}")
        arr = arr.astype(np.float32) / 255.0 if arr.dtype == np.uint8 else np.clip(arr.astype(np.float32), 0, 1)
        alpha = arr[..., 3] if arr.shape[-1] == 4 and arr[..., 3].min() < 1.0 else None
        loaded = LoadedImage(np.ascontiguousarray(arr[..., :3]), alpha, "array", "array")
    rgb = loaded.rgb
    hw = rgb.shape[:2]
    # 2. Foreground mask.
    if mask is not None:
        m, mask_source = _as_mask(mask, hw, "the given mask"), "given"
    elif loaded.alpha is not None:
        m, mask_source = loaded.alpha, "alpha"
    elif segmenter is not None:
        rgb8 = np.clip(rgb * 255 + 0.5, 0, 255).astype(np.uint8)
        m, mask_source = _as_mask(segmenter(rgb8), hw, "the segmenter's mask"), "segmenter"
    else:
        m, mask_source = estimate_foreground(rgb), "estimated"
    if (m > 0.5).sum() == 0:
        raise ImageLoadError(f"{loaded.source}: the foreground mask ({mask_source}) is empty")
    # 3. Reference layout.
    image, out_mask, transform = recentre(rgb, m, size=size, fill=fill)
    return ReferenceImage(
        image=torch.from_numpy(image),
        mask=torch.from_numpy(out_mask),
        source=loaded.source,
        mask_source=mask_source,
        original_size=(hw[1], hw[0]),
        fill=fill,
        meta={"mode": loaded.mode},
        **transform,
    )


# -- writing ---------------------------------------------------------------------------------


def to_pil(images) -> list[Image.Image]:
    """``[..., H, W, 3]`` floats in [0, 1] (tensor or array) -> 8-bit PIL images (one per leading index)."""
    arr = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    arr = (np.clip(arr, 0, 1) * 255 + 0.5).astype(np.uint8)
    return [Image.fromarray(a) for a in arr.reshape((-1,) + arr.shape[-3:])]


def save_gif(images, path: str | Path, fps: float = 7.0) -> Path:
    """An endlessly looping GIF of PIL images (or float frames ``[F, H, W, 3]``) at ``fps``."""
    frames = images if isinstance(images, (list, tuple)) and images and isinstance(images[0], Image.Image) else to_pil(images)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames[0].save(path, save_all=True, append_images=list(frames[1:]), duration=max(20, round(1000 / fps)), loop=0)
    return path
