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

import cv2
import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .masks import Segmenter, foreground_mask
from .pixels import PixelError, as_mask, as_rgb, to_uint8

__all__ = [
    "ImageLoadError",
    "LoadedImage",
    "ReferenceImage",
    "load_image",
    "estimate_foreground",
    "load_on_white",
    "recentre",
    "prepare_reference",
    "MAX_PIXELS",
    "MIN_SIDE",
    "check_image",
    "DEFAULT_FILL",
]

MIN_SIDE = 32
# Decompression-bomb guard: ~50 megapixels (e.g. 8000 x 6250). Raise it with max_pixels=...
MAX_PIXELS = 50_000_000
DEFAULT_FILL = 0.85
DEFAULT_SIZE = 256



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
        img = _open_checked(path, name, max_pixels, min_side)
    with img:
        # 3. Decode all pixels.
        try:
            img.load()
        except (OSError, SyntaxError, ValueError) as exc:
            raise ImageLoadError(f"{name} is damaged or truncated ({exc}); re-export or re-download the file") from None
        mode = img.mode
        img = ImageOps.exif_transpose(img) or img
        rgb, alpha = _to_float(img, name)
    return LoadedImage(rgb, alpha, name, mode)


def check_image(path: str | Path, name: str, *, max_pixels: int = MAX_PIXELS, min_side: int = MIN_SIDE) -> tuple[int, int]:
    """Whether ``path`` can be used as an image or a video frame, checked as :func:`load_image`
    will load it but cheaply (8-bit, JPEG at reduced scale, no float copy): its ``(width,
    height)``. Raises :class:`ImageLoadError` naming ``name`` (what the user calls the file, never
    our path): not an image, above ``max_pixels``, below ``min_side``, damaged or truncated, or
    fully transparent. The server's upload check and the CLI's frame import both use it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit applies
        img = _open_checked(path, name, max_pixels, min_side)
        with img:
            w, h = img.size  # before draft(), which shrinks a JPEG's
            img.draft("RGB", (1024, 1024))  # JPEG: decode at 1/2..1/8 scale (no alpha there); other formats ignore it
            try:
                img.load()
                transparent = _fully_transparent(img)
            except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
                why = str(exc).replace(str(path), "the file") if str(exc) else type(exc).__name__
                raise ImageLoadError(f"{name} is damaged or truncated ({why}); re-export or re-download the file") from None
    if transparent:
        raise ImageLoadError(f"{name} is fully transparent (alpha is 0 everywhere): there is nothing to see; export it with the object visible")
    return w, h


def _open_checked(path: Path, name: str, max_pixels: int, min_side: int) -> Image.Image:
    """``path`` opened (its header read, no pixel decoded) and its size checked, with errors that
    name ``name`` (what the user calls the file, never our path)."""
    try:
        img = Image.open(path)
    except UnidentifiedImageError:
        raise ImageLoadError(f"{name} is not an image Pillow can read; give a PNG, JPEG, WebP, BMP or TIFF file") from None
    except Image.DecompressionBombError:
        raise ImageLoadError(f"{name} is too large to open safely (decompression-bomb guard); resize it below {max_pixels:,} pixels") from None
    except OSError as exc:
        raise ImageLoadError(f"{name} could not be read ({type(exc).__name__}); re-export the file") from None
    w, h = img.size
    if w * h > max_pixels:
        img.close()
        raise ImageLoadError(
            f"{name} is {w}x{h} = {w * h:,} pixels, above the limit of {max_pixels:,} (a decompression-bomb guard); "
            "the pipeline works at 256-1024 px, so resize it (2048 px on the long side is plenty)"
        )
    if min(w, h) < min_side:
        img.close()
        raise ImageLoadError(f"{name} is only {w}x{h} pixels; give an image at least {min_side} px on each side (256+ recommended)")
    return img


def _fully_transparent(img: Image.Image) -> bool:
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        return img.getchannel("A").getextrema()[1] == 0
    if img.mode == "P" and "transparency" in img.info:
        return img.convert("RGBA").getchannel("A").getextrema()[1] == 0
    return False


def load_on_white(source: str | Path) -> tuple[np.ndarray, np.ndarray | None]:
    """An image file as ``[H, W, 3]`` float32 RGB composited on white, and its alpha as an
    ``[H, W]`` bool mask (None without an alpha channel)."""
    loaded = load_image(source, min_side=1)
    if loaded.alpha is None:
        return loaded.rgb, None
    alpha = loaded.alpha[..., None]
    return loaded.rgb * alpha + (1.0 - alpha), loaded.alpha > 0.5


def estimate_foreground(rgb: np.ndarray) -> np.ndarray:
    """The mask of an image without alpha or a given mask (:func:`dynapose4d.imaging.masks.foreground_mask`);
    ImageLoadError when nothing stands out from the background."""
    mask = foreground_mask(rgb)
    if mask.sum() < 16:
        raise ImageLoadError(
            "could not find an object that stands out from the background; give an image with a transparent "
            "background (RGBA), a mask, or a segmentation function"
        )
    return mask


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
        return to_uint8(arr)

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


def _checked_mask(mask, shape: tuple[int, int], what: str) -> np.ndarray:
    try:
        return as_mask(mask, shape, what)
    except PixelError as exc:
        raise ImageLoadError(str(exc)) from None


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
        alpha = as_mask(arr[..., 3], arr.shape[:2]) if arr.shape[-1] == 4 else None
        alpha = alpha if alpha is not None and alpha.min() < 1.0 else None
        loaded = LoadedImage(np.ascontiguousarray(as_rgb(arr)), alpha, "array", "array")
    rgb = loaded.rgb
    hw = rgb.shape[:2]
    # 2. Foreground mask.
    if mask is not None:
        m, mask_source = _checked_mask(mask, hw, "the given mask"), "given"
    elif loaded.alpha is not None:
        m, mask_source = loaded.alpha, "alpha"
    elif segmenter is not None:
        m, mask_source = _checked_mask(segmenter(to_uint8(rgb)), hw, "the segmenter's mask"), "segmenter"
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
    arr = to_uint8(images)
    return [Image.fromarray(a) for a in arr.reshape((-1,) + arr.shape[-3:])]


def save_gif(images, path: str | Path, fps: float = 7.0) -> Path:
    """An endlessly looping GIF of PIL images (or float frames ``[F, H, W, 3]``) at ``fps``."""
    frames = images if isinstance(images, (list, tuple)) and images and isinstance(images[0], Image.Image) else to_pil(images)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames[0].save(path, save_all=True, append_images=list(frames[1:]), duration=max(20, round(1000 / fps)), loop=0)
    return path
