"""Foreground masks: one module for images, videos and keypoints.

- An object on a plain background (an input image, SVD's frames on white, a render):
  :func:`foreground_mask` (border colour distance refined by GrabCut); a clip on white:
  :func:`masks_on_white`; binary clean-up: :func:`clean_mask`.
- A user's clip on its own background: :func:`grabcut_sequence`. Frame 0 is seeded by the
  support image (the user's input image, or the model's reference view) registered onto it with
  SIFT + RANSAC (:func:`dynapose4d.imaging.register.register`, the registration the keypoints
  use) and, failing that, by the support's colours; each later frame is seeded by the previous
  mask carried along by dense optical flow (the object may have moved further than a band around
  its last position), refined by GrabCut, and kept only if it agrees with the carried mask
  (temporal consistency: a frame where GrabCut leaks into the background keeps the carried mask).
- A user's segmentation network for hard cases: :class:`OnnxSegmenter` (an ONNX file, e.g. a
  background-removal model; needs the ``onnx`` extra), or any :data:`Segmenter` callable.

Conventions (DESIGN.md §4): images ``[H, W, 3]`` float32 in [0, 1], masks ``[H, W]`` float32 in
[0, 1] (foreground = 1).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from .pixels import WHITE, PixelError, as_mask, as_rgb, border_pixels, border_strip, to_uint8
from .register import register
from .warp import warp

__all__ = [
    "Segmenter",
    "MaskError",
    "OnnxSegmenter",
    "clean_mask",
    "foreground_mask",
    "masks_on_white",
    "grabcut_sequence",
    "segment_frames",
    "mask_iou",
    "registered_seed",
    "grabcut_labels",
    "run_grabcut",
    "first_frame_mask",
    "template_seed",
    "foreground_odds",
    "SEEDS",
    "PROPAGATIONS",
]

Segmenter = Callable[[np.ndarray], np.ndarray]
"""``(H, W, 3) uint8 RGB -> (H, W)`` foreground mask (bool, uint8 0/255, or float in [0, 1])."""

SEEDS = ("registered", "colour")  # how frame 0 of a clip is seeded (registered falls back to colour)
PROPAGATIONS = ("flow", "previous")  # how each later frame is seeded (previous: the last mask in place)


class MaskError(ValueError):
    """No usable mask (nothing found, a segmenter that fails or returns the wrong shape); the
    message says what to do."""


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of ``a > 0.5`` and ``b > 0.5`` (1 when both are empty)."""
    a, b = np.asarray(a) > 0.5, np.asarray(b) > 0.5
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


# -------------------------------------------------------------------------------------------------
# an object on a plain background


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
                cv2.setRNGSeed(0)  # GrabCut's k-means draws from OpenCV's global RNG: same input, same mask
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
    arr = frames.detach().cpu().numpy() if hasattr(frames, "detach") else np.asarray(frames)
    if arr.ndim == 3:
        arr = arr[None]
    return np.stack([foreground_mask(f, background=WHITE, threshold=threshold, grabcut_iterations=0, min_fraction=0.1) for f in arr])


# -------------------------------------------------------------------------------------------------
# a user's segmentation network


_NORMALISATIONS = {
    "imagenet": (np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)),
    "half": (np.array([0.5, 0.5, 0.5], np.float32), np.array([0.5, 0.5, 0.5], np.float32)),  # [-1, 1]
    "unit": (np.zeros(3, np.float32), np.ones(3, np.float32)),  # [0, 1]
}


class OnnxSegmenter:
    """A :data:`Segmenter` running a user's ONNX segmentation model (e.g. a background-removal network).

    The model takes one ``[1, 3, H, W]`` float32 RGB image and returns a foreground map as its first
    output (``[1, 1, h, w]``, ``[1, h, w]`` or ``[h, w]``; probabilities, or logits when values fall
    outside [0, 1]), as U2-Net, IS-Net, MODNet and BiRefNet exports do. The image is resized to
    the model's fixed input size (or ``size`` when the model's is dynamic) and normalised as
    ``normalise`` says (ImageNet mean/std by default); the map is resized back to the image.

    Args:
        path: the ``.onnx`` file.
        size: input side for a model with a dynamic input size.
        normalise: ``imagenet``, ``half`` ([-1, 1]) or ``unit`` ([0, 1]).
        device: ``cpu`` or ``cuda`` (the CUDA provider when onnxruntime has it, else the CPU).
    """

    def __init__(self, path: str | Path, *, size: int = 320, normalise: str = "imagenet", device: str = "cpu"):
        path = Path(path)
        if not path.is_file():
            raise MaskError(f"segmentation model {path}: no such file; give the path of an .onnx file")
        if normalise not in _NORMALISATIONS:
            raise MaskError(f"segmentation normalise must be one of {', '.join(_NORMALISATIONS)}; got {normalise!r}")
        try:
            import onnxruntime as ort
        except ImportError:
            raise MaskError("a segmentation model needs onnxruntime: pip install 'dynapose4d[onnx]'") from None
        providers = ["CPUExecutionProvider"]
        if device == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self.session = ort.InferenceSession(str(path), providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types for unreadable models
            raise MaskError(f"segmentation model {path} could not be loaded by onnxruntime: {exc}") from None
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            shapes = [tuple(i.shape) for i in inputs]
            raise MaskError(f"segmentation model {path} must take one [1, 3, H, W] image; it takes {shapes}")
        shape = inputs[0].shape
        if isinstance(shape[1], int) and shape[1] != 3:
            raise MaskError(f"segmentation model {path} takes {shape[1]} channels; it must take 3 (RGB)")
        self.input_name = inputs[0].name
        self.height = shape[2] if isinstance(shape[2], int) else size
        self.width = shape[3] if isinstance(shape[3], int) else size
        self.mean, self.std = _NORMALISATIONS[normalise]
        self.path = path

    def __call__(self, rgb_u8: np.ndarray) -> np.ndarray:
        """``[H, W, 3]`` uint8 RGB -> ``[H, W]`` float32 foreground probability."""
        rgb = as_rgb(rgb_u8, "the image to segment")
        h, w = rgb.shape[:2]
        x = cv2.resize(rgb, (self.width, self.height), interpolation=cv2.INTER_AREA if self.width < w else cv2.INTER_LINEAR)
        x = ((x - self.mean) / self.std).transpose(2, 0, 1)[None].astype(np.float32)
        out = np.asarray(self.session.run(None, {self.input_name: x})[0], np.float32)
        out = np.squeeze(out)
        if out.ndim != 2:
            raise MaskError(f"segmentation model {self.path} returned shape {np.shape(out)}; expected one [h, w] map")
        if out.min() < 0.0 or out.max() > 1.0:
            out = 1.0 / (1.0 + np.exp(-out))  # logits
        return np.clip(cv2.resize(out, (w, h), interpolation=cv2.INTER_LINEAR), 0.0, 1.0)


def segment_frames(segmenter: Segmenter, frames) -> list[np.ndarray]:
    """``segmenter`` on every frame (float ``[H, W, 3]``): ``[H, W]`` float32 masks in [0, 1]."""
    out = []
    for i, f in enumerate(frames):
        rgb = as_rgb(f, f"frame {i}")
        try:
            out.append(as_mask(segmenter(to_uint8(rgb)), rgb.shape[:2], "the segmenter's mask"))
        except PixelError as exc:
            raise MaskError(f"frame {i}: {exc}") from None
    return out


# -------------------------------------------------------------------------------------------------
# a user's clip on its own background


def foreground_odds(pixels: np.ndarray, foreground: np.ndarray, background: np.ndarray, bins: int = 16) -> np.ndarray:
    """P(foreground | colour) of ``pixels [..., 3]`` from colour histograms (``bins`` per channel,
    add-one smoothed) of ``foreground`` and ``background`` pixels ``[N, 3]`` in [0, 1]."""

    def cells(px):
        q = np.clip((np.asarray(px, np.float32).reshape(-1, 3) * bins).astype(np.int64), 0, bins - 1)
        return (q[:, 0] * bins + q[:, 1]) * bins + q[:, 2]

    def hist(px):
        return (np.bincount(cells(px), minlength=bins**3) + 1.0) / (len(px) + bins**3)

    p_fg, p_bg = hist(foreground), hist(background)
    at = cells(pixels)
    return (p_fg[at] / (p_fg[at] + p_bg[at])).reshape(np.shape(pixels)[:-1])


def _colour_prior(frame: np.ndarray, support: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """P(foreground | colour) for ``frame`` pixels: the support's foreground colours against the
    frame border's (background)."""
    s_img, s_mask = support
    h, w = frame.shape[:2]
    return foreground_odds(frame, s_img[s_mask > 0.5], border_pixels(frame, max(2, round(0.03 * min(h, w)))))


def grabcut_labels(rough: np.ndarray, band: int) -> np.ndarray:
    """GrabCut labels around a rough object region: probably object inside, probably background
    within two ``band`` widths around it, background beyond."""
    rough = (np.asarray(rough) > 0.5).astype(np.uint8)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * band + 1,) * 2)
    labels = np.full(rough.shape, cv2.GC_BGD, np.uint8)
    labels[cv2.dilate(rough, kernel, iterations=2).astype(bool)] = cv2.GC_PR_BGD
    labels[rough.astype(bool)] = cv2.GC_PR_FGD
    return labels


def run_grabcut(img: np.ndarray, labels: np.ndarray, iterations: int) -> np.ndarray:
    """GrabCut on ``img`` from ``labels`` (``cv2.GC_*``), cleaned: float32 {0, 1}."""
    seeds = labels.copy()
    has_fg = np.isin(labels, (cv2.GC_FGD, cv2.GC_PR_FGD)).any()
    has_bg = np.isin(labels, (cv2.GC_BGD, cv2.GC_PR_BGD)).any()
    if iterations > 0 and has_fg and has_bg:
        try:
            cv2.setRNGSeed(0)  # GrabCut's k-means draws from OpenCV's global RNG: same input, same mask
            cv2.grabCut(to_uint8(img)[..., ::-1].copy(), labels, None, np.zeros((1, 65)), np.zeros((1, 65)), iterations, cv2.GC_INIT_WITH_MASK)
        except cv2.error:  # degenerate colour statistics (e.g. two flat colours): the seeds are the mask
            labels = seeds
    return clean_mask(np.isin(labels, (cv2.GC_FGD, cv2.GC_PR_FGD)))


def _small(frames, max_side: int):
    h, w = frames[0].shape[:2]
    scale = min(1.0, max_side / max(h, w))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = [cv2.resize(f, size, interpolation=cv2.INTER_AREA) if scale < 1 else f for f in frames]
    return small, scale


def registered_seed(frame: np.ndarray, support: tuple[np.ndarray, np.ndarray], min_correlation: float = 0.6) -> np.ndarray | None:
    """The support mask mapped onto ``frame`` by the support -> frame registration, or None when
    the registration fails (frame 0 is not a view of the support)."""
    s_img, s_mask = support
    ys, xs = np.nonzero(s_mask > 0.5)
    if len(xs) < 16:
        return None
    # SIFT finds few features on a small object; upsampling finds many more (as framing.py does).
    small = max(xs.max() - xs.min(), ys.max() - ys.min()) < 128
    reg = register(s_img, frame, s_mask > 0.5, None, "similarity", upscale=2.0 if small else 1.0)
    if not reg.success:
        return None
    size = frame.shape[1::-1]
    seed = warp(s_mask.astype(np.float32), reg.matrix[:2], size, 0.0) > 0.5
    inner = cv2.erode(seed.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    if inner.sum() < 16:
        return None
    # A few features can agree on a wrong map (another view of the object): the support, mapped,
    # must also look like the frame there (luma correlation, which ignores gain and offset).
    luma = np.array([0.299, 0.587, 0.114], np.float32)
    a = (warp(s_img.astype(np.float32), reg.matrix[:2], size, 0.0) @ luma)[inner]
    b = (frame.astype(np.float32) @ luma)[inner]
    a, b = a - a.mean(), b - b.mean()
    ncc = float((a * b).sum() / (np.sqrt((a * a).sum() * (b * b).sum()) + 1e-9))
    return seed.astype(np.float32) if ncc >= min_correlation else None


def template_seed(frame: np.ndarray, support: tuple[np.ndarray, np.ndarray], scales=None, min_score: float = 0.6
                  ) -> tuple[np.ndarray | None, float]:
    """The support mask placed on ``frame`` where the support's object, as a masked template, best
    matches it (normalised cross-correlation, or for a plain object its colours' mean squared
    difference, over positions and ``scales``; default 0.6-1.6x):
    ``(seed or None when the best score is below min_score, that scale)``. For an object with few
    features of its own (SIFT's matches on a plain object's outline vanish on a busy background)."""
    s_img, s_mask = support
    ys, xs = np.nonzero(s_mask > 0.5)
    if len(xs) < 16:
        return None, 1.0
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    tpl = s_img[y0:y1, x0:x1].astype(np.float32)
    tmask = (s_mask[y0:y1, x0:x1] > 0.5).astype(np.float32)
    frame = frame.astype(np.float32)
    found = []
    for scale in np.geomspace(0.6, 1.6, 11) if scales is None else scales:
        tw, th = max(4, round(tpl.shape[1] * scale)), max(4, round(tpl.shape[0] * scale))
        if tw >= frame.shape[1] or th >= frame.shape[0]:
            continue
        t = cv2.resize(tpl, (tw, th), interpolation=cv2.INTER_AREA)
        m = (cv2.resize(tmask, (tw, th), interpolation=cv2.INTER_LINEAR) > 0.5).astype(np.float32)
        score = np.nan_to_num(cv2.matchTemplate(frame, t, cv2.TM_CCOEFF_NORMED, mask=m), nan=-1.0, posinf=-1.0, neginf=-1.0)
        # A plain object has no pattern to correlate: its colour over its shape (mean squared
        # difference per channel, mapped so that 0.01 scores min_score) stands in.
        sq = cv2.matchTemplate(frame, t, cv2.TM_SQDIFF, mask=m) / (3.0 * max(m.sum(), 1.0))
        score = np.maximum(score, 1.0 - (1.0 - min_score) * sq / 0.01)
        _, top, _, at = cv2.minMaxLoc(score)
        found.append((top, float(scale), at))
    if not found:
        return None, 1.0
    # A smaller copy of a plain object fits inside it as well: the largest scale that scores
    # about as well as the best wins.
    best = max(top for top, _, _ in found)
    top, scale, (x, y) = max((f for f in found if f[0] >= best - 0.03), key=lambda f: f[1])
    if top < min_score:
        return None, scale
    matrix = np.array([[scale, 0.0, x - scale * x0], [0.0, scale, y - scale * y0]])
    return (warp(s_mask.astype(np.float32), matrix, frame.shape[1::-1], 0.0) > 0.5).astype(np.float32), scale


def _colour_seed(frame: np.ndarray, support: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray:
    """Frame 0's seed from colours: what stands out from the border, and with a support, pixels
    with the support's colours plus what stands out and is connected to them (parts hidden in the
    support view), but not separate things of other colours."""
    border_seed = foreground_mask(frame, grabcut_iterations=0)
    if support is None:
        return border_seed
    prior = _colour_prior(frame, support)
    confident = clean_mask(prior > 0.6, close_px=0) > 0.5
    candidates = (confident | ((prior > 0.4) & (border_seed > 0.5))).astype(np.uint8)
    _, labels = cv2.connectedComponents(candidates, connectivity=8)
    keep = np.unique(labels[confident])
    return clean_mask(np.isin(labels, keep[keep > 0]))


def _carry(prev_img: np.ndarray, img: np.ndarray, prev_mask: np.ndarray) -> np.ndarray:
    """``prev_mask`` carried onto ``img`` by dense optical flow (DIS, from ``img`` back to
    ``prev_img``: each pixel takes the mask value where it came from)."""
    g0, g1 = to_uint8(prev_img @ np.array([0.299, 0.587, 0.114], np.float32)), to_uint8(img @ np.array([0.299, 0.587, 0.114], np.float32))
    # DIS (dense inverse search) follows larger motions than Farneback: carried-mask IoU 0.93 vs
    # 0.90 on the fast synthetic clip of bench_video.py.
    flow = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM).calc(g1, g0, None)
    h, w = g1.shape
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    carried = cv2.remap(prev_mask.astype(np.float32), gx + flow[..., 0], gy + flow[..., 1], cv2.INTER_LINEAR,
                        borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
    return (carried > 0.5).astype(np.float32)


def _textured(img: np.ndarray, mask: np.ndarray, *, gradient: float = 0.01, fraction: float = 0.15) -> bool:
    """Whether enough of the object inside ``mask`` has gradients for optical flow to follow."""
    g = img @ np.array([0.299, 0.587, 0.114], np.float32)
    mag = np.hypot(cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3)) / 8.0
    inner = cv2.erode(mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    return bool(inner.any() and (mag[inner] > gradient).mean() >= fraction)


def first_frame_mask(frame: np.ndarray, support, *, seed: str = "registered", iterations: int = 3, band: int = 2,
                     min_agreement: float = 0.75) -> np.ndarray:
    """The object's mask in a clip's first frame: the registered support mask refined by GrabCut
    (kept when GrabCut strays from it), else the object found by the support's colours."""
    sh, sw = frame.shape[:2]
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * band + 1,) * 2)
    first = registered_seed(frame, support) if seed == "registered" and support is not None else None
    if first is not None:
        labels = np.full((sh, sw), cv2.GC_BGD, np.uint8)
        labels[cv2.dilate(first.astype(np.uint8), kernel, iterations=1).astype(bool)] = cv2.GC_PR_BGD
        labels[first > 0.5] = cv2.GC_PR_FGD
        labels[cv2.erode(first.astype(np.uint8), kernel, iterations=1).astype(bool)] = cv2.GC_FGD
        m = run_grabcut(frame, labels, iterations)
        # The registered shape is the better guess when GrabCut strays far from it (a leak into
        # background of the object's colours).
        return m if mask_iou(m, first) >= min_agreement else first
    first = _colour_seed(frame, support)
    if first.sum() < 16:
        raise MaskError("could not find the object in the first video frame; give an RGBA frame folder or a segmentation model")
    labels = np.where(first > 0.5, cv2.GC_PR_FGD, cv2.GC_PR_BGD).astype(np.uint8)
    edge = border_strip((sh, sw), max(2, round(0.02 * min(sh, sw))))
    labels[edge & (first < 0.5)] = cv2.GC_BGD
    return run_grabcut(frame, labels, iterations)


def grabcut_sequence(
    frames: list[np.ndarray],
    support: tuple[np.ndarray, np.ndarray] | None = None,
    *,
    iterations: int = 3,
    max_side: int = 384,
    band_fraction: float = 0.04,
    seed: str = "registered",
    propagate: str = "flow",
    min_agreement: float = 0.75,
) -> list[np.ndarray]:
    """Foreground masks ``[H, W]`` float32 {0, 1} of a clip on any background (module docstring).

    Args:
        frames: ``[H, W, 3]`` float frames.
        support: ``(image [S, S, 3], mask [S, S])`` of the object (any size), or None (frame 0's
            object is what stands out from the frame border).
        iterations: GrabCut iterations per frame.
        max_side: masks are computed at most this many pixels wide, then upsampled.
        band_fraction: the band of probable background around a seed (fraction of the frame).
        seed: frame 0's seed (:data:`SEEDS`): ``registered`` (falls back to ``colour``) or ``colour``.
        propagate: later frames' seed (:data:`PROPAGATIONS`): ``flow`` or ``previous`` (the last
            mask where it was, the first release's rule).
        min_agreement: a GrabCut mask whose IoU with its seed (frame 0's registered seed, a
            later frame's flow-carried mask) is below this is a leak into the background or a
            loss; the seed is kept instead.
    """
    if seed not in SEEDS:
        raise MaskError(f"seed must be one of {', '.join(SEEDS)}; got {seed!r}")
    if propagate not in PROPAGATIONS:
        raise MaskError(f"propagate must be one of {', '.join(PROPAGATIONS)}; got {propagate!r}")
    h, w = frames[0].shape[:2]
    small, scale = _small(frames, max_side)
    sh, sw = small[0].shape[:2]
    band = max(2, round(band_fraction * max(sh, sw)))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * band + 1,) * 2)
    # 1. Frame 0: the registered support mask (a shape prior), else colours.
    masks = [first_frame_mask(small[0], support, seed=seed, iterations=iterations, band=band, min_agreement=min_agreement)]
    # 2. Later frames, each seeded by the previous mask: carried by the flow where the object
    # has texture for the flow to follow, else where it was (a flat colour gives the flow nothing
    # to hold on to, and GrabCut separates flat colours well anyway).
    for prev_img, img in zip(small[:-1], small[1:]):
        prev = (masks[-1] > 0.5).astype(np.uint8)
        follow = propagate == "flow" and _textured(prev_img, prev)
        guide = (_carry(prev_img, img, prev) > 0.5).astype(np.uint8) if follow else prev
        if guide.sum() < 16:
            guide, follow = prev, False
        labels = np.full((sh, sw), cv2.GC_BGD, np.uint8)
        labels[cv2.dilate(guide, kernel, iterations=2).astype(bool)] = cv2.GC_PR_BGD
        labels[guide.astype(bool)] = cv2.GC_PR_FGD
        if follow:
            # Deep inside the carried mask is the object (in place there is no such certainty:
            # where the object was may be background now that it has moved).
            labels[cv2.erode(guide, kernel, iterations=1).astype(bool)] = cv2.GC_FGD
        m = run_grabcut(img, labels, iterations)
        if m.sum() < 16 or (follow and mask_iou(m, guide) < min_agreement):
            m = guide.astype(np.float32)  # GrabCut leaked or lost the object: the flow's mask is the better guess
        masks.append(m)
    if scale < 1:
        masks = [(cv2.resize(m, (w, h), interpolation=cv2.INTER_LINEAR) > 0.5).astype(np.float32) for m in masks]
    return masks
