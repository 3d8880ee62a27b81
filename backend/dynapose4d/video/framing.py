"""One framing for the static model and the driving video (DESIGN.md §4, "Framing").

The rule: **the support image is the source of truth, and the video is derived from it.** The
support is what the static model shows in the reference view (``animate``: the registered
PLY's render; ``generate``: the reference layout of the input image, which the static stage
fits). Every driving video, a user's file as well as SVD's output, is brought onto it with one
2D similarity for the whole clip, the one that maps the object of video frame 0 onto the
support's object:

1. a first guess from the two foreground masks (box centre and size, and area centroid and
   size: two guesses that fail differently, e.g. on a thin part poking out of the box);
2. refined by the support -> frame 0 feature registration the keypoints use
   (:func:`dynapose4d.imaging.register.register`, SIFT + RANSAC, a similarity), run on frame
   0 already warped by the guess so both images show the object at one scale;
3. of these candidates (and the identity for a video already at the support's size), the one
   whose warped frame-0 mask overlaps the support mask best (IoU) is applied to every frame.

The deformation is pinned to the identity at t = 0, so a frame 0 that disagrees with the support
cannot be learnt away: what is left after alignment is reported (:class:`Framing`: mask IoU,
centroid offset in pixels) and a job warns when the IoU is below :data:`MIN_IOU`.

Pixel coordinates follow DESIGN.md §4 (pixel (i, j) centre at (j + 0.5, i + 0.5)); matrices
act on (x, y, 1) in that convention and are converted where OpenCV is called.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from ..events import LogEvent
from ..imaging.pixels import as_mask, as_rgb
from ..imaging.register import register
from ..imaging.warp import matrix_scale, similarity, warp
from .masks import mask_warning

MIN_IOU = 0.8  # below this, support and frame 0 disagree enough that results will suffer
MAX_SCALE_CHANGE = 8.0  # a similarity scaling by more than this (or less than its inverse) is a failed fit


class FramingError(ValueError):
    """The video's first frame has no object to align; the message says what to do."""


@dataclass
class Framing:
    """The similarity from video pixels to support pixels, and how well frame 0 then agrees.

    Attributes:
        matrix: ``[2, 3]`` acting on (x, y, 1), video pixels -> support pixels (our convention).
        method: the candidate chosen (``identity``, ``box``, ``area``, ``box+features``, ...).
        scale: the similarity's scale (support pixels per video pixel).
        iou: mask IoU of the support and the aligned frame 0.
        offset_px: distance between the two masks' centroids after alignment, support pixels.
        size: the support's (square) size in pixels.
        candidates: IoU of every candidate tried (for the log).
    """

    matrix: np.ndarray
    method: str
    scale: float
    iou: float
    offset_px: float
    size: int
    candidates: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["matrix"] = np.asarray(self.matrix, np.float64).round(6).tolist()
        d["iou"], d["offset_px"], d["scale"] = round(self.iou, 4), round(self.offset_px, 3), round(self.scale, 5)
        d["candidates"] = {k: round(v, 4) for k, v in self.candidates.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Framing":
        return cls(**{**d, "matrix": np.asarray(d["matrix"], np.float64)})

    @property
    def agrees(self) -> bool:
        return self.iou >= MIN_IOU

    def warning(self) -> str | None:
        """The guard-rail message when support and frame 0 disagree after alignment, else None."""
        if self.agrees:
            return None
        return (
            f"the driving video's first frame does not match the model's reference view after alignment: "
            f"mask IoU {self.iou:.2f} (below {MIN_IOU}), centroid offset {self.offset_px:.1f} px, scale {self.scale:.3f} "
            f"({self.method}). The motion is learnt relative to frame 0, so the result will be distorted: use a video "
            "that starts at the model's pose and view (for a PLY, set reference_azimuth/elevation to the video's view)"
        )


# -------------------------------------------------------------------------------------------------
# geometry helpers


def _as_mask(m) -> np.ndarray:
    return as_mask(m, tuple(np.shape(m))[:2])


def _h(m: np.ndarray) -> np.ndarray:
    return np.vstack([m, [0.0, 0.0, 1.0]])


def mask_stats(mask: np.ndarray) -> dict | None:
    """Box ``(x0, y0, x1, y1)`` (continuous pixel edges), its centre and size, area and centroid of ``mask > 0.5``."""
    ys, xs = np.nonzero(mask > 0.5)
    if len(xs) == 0:
        return None
    x0, x1, y0, y1 = float(xs.min()), float(xs.max() + 1), float(ys.min()), float(ys.max() + 1)
    return {
        "box": (x0, y0, x1, y1),
        "box_centre": ((x0 + x1) / 2, (y0 + y1) / 2),
        "box_size": math.sqrt((x1 - x0) * (y1 - y0)),
        "area": float(len(xs)),
        "centroid": (float(xs.mean()) + 0.5, float(ys.mean()) + 0.5),
    }


def iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0.5, b > 0.5
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def centroid_offset(a: np.ndarray, b: np.ndarray) -> float:
    sa, sb = mask_stats(a), mask_stats(b)
    if sa is None or sb is None:
        return float("inf")
    return float(math.dist(sa["centroid"], sb["centroid"]))


# -------------------------------------------------------------------------------------------------
# the rule


def fit_framing(frame0, mask0, support_image, support_mask, *, use_features: bool = True) -> Framing:
    """The similarity mapping video frame 0's object onto the support's (see the module docstring).

    Args:
        frame0: ``[H, W, 3]`` the first video frame, composited on white (any size).
        mask0: ``[H, W]`` its foreground mask.
        support_image: ``[S, S, 3]`` the model's reference view on white.
        support_mask: ``[S, S]`` its foreground (alpha).
        use_features: refine the mask guesses with the SIFT registration.
    """
    frame0, mask0 = as_rgb(frame0), _as_mask(mask0)
    s_img, s_mask = as_rgb(support_image), _as_mask(support_mask)
    size = s_mask.shape[0]
    if s_mask.shape != (size, size):
        raise FramingError(f"the support must be square; got {s_mask.shape}")
    ss, fs = mask_stats(s_mask), mask_stats(mask0)
    if ss is None:
        raise FramingError("the model's reference view is empty: nothing to align the video to (check up_axis and reference_azimuth/elevation)")
    if fs is None:
        raise FramingError("no foreground found in the first frame of the video; give a mask, an RGBA frame folder, or a segmenter")
    # 1. Guesses from the masks.
    candidates = {
        "box": similarity(ss["box_size"] / fs["box_size"], fs["box_centre"], ss["box_centre"]),
        "area": similarity(math.sqrt(ss["area"] / fs["area"]), fs["centroid"], ss["centroid"]),
    }
    if mask0.shape == (size, size):
        candidates["identity"] = np.array([[1.0, 0, 0], [0, 1.0, 0]])
    # 2. Each guess refined by the feature registration (support -> warped frame 0, inverted).
    if use_features:

        for name in ("box", "area"):
            guess = candidates[name]
            w_img = warp(frame0, guess, size, (1.0, 1.0, 1.0))
            w_mask = warp(mask0, guess, size, 0.0)
            reg = register(s_img, w_img, s_mask > 0.5, w_mask > 0.5, "similarity", upscale=2.0 if ss["box_size"] < 96 else 1.0)
            if reg.success and 0.8 < matrix_scale(reg.matrix) < 1.25:
                candidates[name + "+features"] = (np.linalg.inv(reg.matrix) @ _h(guess))[:2]
    # 3. The best overlap wins.
    scores, warped = {}, {}
    for name, m in candidates.items():
        s = matrix_scale(m)
        if not (1 / MAX_SCALE_CHANGE < s < MAX_SCALE_CHANGE):
            continue
        warped[name] = warp(mask0, m, size, 0.0)
        scores[name] = iou(warped[name], s_mask)
    best = max(scores, key=lambda k: (scores[k], k == "identity"))
    m = candidates[best]
    return Framing(m, best, matrix_scale(m), scores[best], centroid_offset(warped[best], s_mask), size, scores)


def warp_clip(rgbs, masks, framing: Framing) -> tuple[np.ndarray, np.ndarray]:
    """Every frame composited on white and mapped by ``framing``: ``[T, S, S, 3]``, ``[T, S, S]`` float32."""
    frames, out_masks = [], []
    for rgb, m in zip(rgbs, masks):
        rgb, m = as_rgb(rgb), _as_mask(m)
        comp = rgb * m[..., None] + (1.0 - m[..., None])
        frames.append(warp(comp, framing.matrix, framing.size, (1.0, 1.0, 1.0)))
        out_masks.append(warp(m, framing.matrix, framing.size, 0.0))
    return np.clip(np.stack(frames), 0, 1).astype(np.float32), np.clip(np.stack(out_masks), 0, 1).astype(np.float32)


def align_to_support(rgbs, masks, support_image, support_mask) -> tuple[np.ndarray, np.ndarray, Framing]:
    """Frames (any size) and masks of a clip, framed like the support: ``(frames, masks, framing)``."""
    frame0 = as_rgb(rgbs[0])
    m0 = _as_mask(masks[0])
    framing = fit_framing(frame0 * m0[..., None] + (1 - m0[..., None]), m0, support_image, support_mask)
    frames, out_masks = warp_clip(rgbs, masks, framing)
    return frames, out_masks, framing


def mask_agreement(support_mask, other_mask) -> dict:
    """How well another mask agrees with the support's (IoU, centroid offset in pixels):
    ``generate`` checks the static model's reference render against the layout it was fit to."""
    a, b = _as_mask(support_mask), _as_mask(other_mask)
    return {"iou": round(iou(a, b), 4), "offset_px": round(centroid_offset(a, b), 3)}


def record_framing(path, video, emit, checks: dict | None = None) -> list[str]:
    """Write the video's framing and any ``checks`` (e.g. the static render's agreement with the
    reference layout) to ``path`` (a job's ``framing.json``), log the numbers, and return the
    guard-rail warnings (also emitted as warning events) for the job's summary."""
    import json
    from pathlib import Path


    record = dict(video.meta.get("framing") or {})
    record.update(checks or {})
    Path(path).write_text(json.dumps(record, indent=1))
    warnings = []
    if "iou" in record:
        framing = Framing.from_dict(video.meta["framing"])
        emit(LogEvent(f"framing: video frame 0 -> reference view by {framing.method}, scale {framing.scale:.3f}; "
                      f"mask IoU {framing.iou:.3f}, centroid offset {framing.offset_px:.2f} px"))
        if framing.warning():
            warnings.append(framing.warning())
    static = record.get("static_render")
    if static is not None and static["iou"] < MIN_IOU:
        warnings.append(f"the static model's reference render does not match the reference image: mask IoU "
                        f"{static['iou']:.2f} (below {MIN_IOU}), centroid offset {static['offset_px']:.1f} px")
    warnings += _report_masks(video, emit)
    for w in warnings:
        emit(LogEvent(w, level="warning"))
    return warnings


def _report_masks(video, emit) -> list[str]:
    """Log which masks the driving video has (alpha, a segmenter by name, the plate, GrabCut) and
    return the mask check's warning when frames look wrong (video/masks.py)."""
    how = video.meta.get("masks")
    if how is None:
        return []
    check = video.meta.get("mask_check")
    unsure = "" if video.confidence is None else f"; unsure pixels {float((video.confidence < 0.5).float().mean()):.1%} (not pulled by the reference losses)"
    emit(LogEvent(f"masks: {how}{unsure}"))
    if not check:
        return []
    warning = mask_warning(check["frames"])
    return [warning] if warning else []


def best_matching_frame(rgbs, masks, support_image, support_mask) -> dict:
    """Which frame of a clip shows the support's view, for a user video whose first frame is not
    the input view: the framing rule above (mask guesses refined by the SIFT + RANSAC registration
    the keypoints and the masks use) fitted to every frame; the frame whose aligned mask overlaps
    the support's best wins.

    Returns ``{"frame": index or None (no frame has an object), "iou": [per frame]}``.
    """
    ious = []
    for rgb, m in zip(rgbs, masks):
        rgb, m = as_rgb(rgb), _as_mask(m)
        try:
            ious.append(round(fit_framing(rgb * m[..., None] + (1 - m[..., None]), m, support_image, support_mask).iou, 4))
        except FramingError:
            ious.append(0.0)
    best = int(np.argmax(ious)) if max(ious, default=0.0) > 0 else None
    return {"frame": best, "iou": ious}
