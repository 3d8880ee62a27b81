"""Masks of a user's clip on its own background, each frame checked on its own, with a confidence.

The first release carried frame 0's mask forward by optical flow and refined it with GrabCut:
on a busy background a thin moving part (an arm, a lamp's head) falls out of the mask within a
few frames and never comes back, and the reference losses then push that part away. Here every
frame is seeded from what the job knows about the object, not from the previous mask:

1. the support (the input image, or the model's reference view) registered onto every frame by
   SIFT + RANSAC (:func:`dynapose4d.imaging.masks.registered_seed`): where the object's body is;
2. a background plate: the camera's motion is measured on the background
   (:mod:`dynapose4d.video.stabilise`), every frame is put into frame 0's view, and each pixel takes
   its mode over the frames where it is away from the object (first the support found in the
   frame, then the first pass's masks). A moving part covers any one pixel in few frames, so the
   plate shows the desk behind it; what differs from the plate is the object, wherever it has
   moved. Where the plate never saw the background (the object stood there in nearly every
   frame: a still part, or an object the camera follows) its colour is the object's: there the
   support found in the frame is object, and a pixel looking like the plate is no sure background;
3. GrabCut refines the edges, with the plate's verdicts as hard labels only where they are clear.

Each frame also gets a per-pixel **confidence** in [0, 1] (a soft trimap): 1 where the plate and
the mask agree clearly (sure object, sure background), 0 in a band along the mask's edge (two
edge widths where the plate is unknown: the object covered those pixels in nearly every frame, so
the plate has its colour and the edge is a guess), where the plate is unknown and the mask says
background, where GrabCut overruled a clear plate verdict, and around the object in a frame
whose mask area jumps against its neighbours. The dynamic stage weights ``loss_rgb`` and
``loss_mask`` by it (:func:`dynapose4d.losses.loss_reference`) and clears it around tracked
keypoints that the mask lost, so an unsure pixel never pushes the object away.

:class:`ClipMasks` also reports what looks wrong (:meth:`ClipMasks.warning`), like the framing
warning: the frames, their area against the clip's median and their unsure share.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from ..imaging.masks import clean_mask, first_frame_mask, foreground_odds, grabcut_labels, registered_seed, run_grabcut, template_seed
from ..imaging.pixels import as_rgb, border_pixels
from ..imaging.warp import warp
from .stabilise import estimate_camera_motion

__all__ = ["ClipMasks", "mask_warning", "anchored_masks", "plain_background", "trust_keypoints", "segmenter_confidence", "edge_band", "AREA_JUMP", "SEED_AREA_OFF", "MIN_SURE"]

AREA_JUMP = 1.6  # a frame's mask area more than this factor off its neighbours' median is suspect
SEED_AREA_OFF = 1.4  # a mask this much larger or smaller than the support found in its frame is suspect
MIN_SURE = 0.5  # a frame where less than this share of the object's surroundings is sure is suspect
_PLATE_MIN_FRAMES = 0.25  # a plate pixel needs to be seen as background in this share of the frames
_MODE_TAU = 0.08  # two frames agree on a plate pixel within this colour difference (max over channels)


@dataclass
class ClipMasks:
    """Masks ``[H, W]`` float32 {0, 1}, confidences ``[H, W]`` float32 in [0, 1], and what was used.

    ``stats``: per frame ``area`` (against the clip's median), ``sure`` (share of pixels near the
    object whose confidence is above 0.9) and ``suspect`` (the frame failed a check)."""

    masks: list
    confidence: list
    how: str
    stats: list = field(default_factory=list)

    def suspect_frames(self) -> list[int]:
        return [i for i, s in enumerate(self.stats) if s.get("suspect")]

    def warning(self) -> str | None:
        """A sentence naming the suspect frames and their numbers, or None."""
        return mask_warning(self.stats)

    def to_dict(self) -> dict:
        return {"how": self.how, "suspect_frames": self.suspect_frames(),
                "frames": [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in s.items()} for s in self.stats]}


def mask_warning(stats: list[dict]) -> str | None:
    """The warning for per-frame mask stats (:attr:`ClipMasks.stats`), or None when no frame is suspect."""
    bad = [i for i, s in enumerate(stats) if s.get("suspect")]
    if not bad:
        return None
    shown = ", ".join(f"{i} (area x{stats[i]['area']:.2f} of the median, x{stats[i].get('seed_area', 1.0):.2f} of the input view's, "
                      f"sure {stats[i]['sure']:.0%})" for i in bad[:6])
    more = f" and {len(bad) - 6} more" if len(bad) > 6 else ""
    return (f"the driving video's masks look wrong on {len(bad)} of {len(stats)} frames: {shown}{more}; their unsure "
            "pixels do not pull in the reference losses. A plainer background, an RGBA frame folder or a segmentation "
            "model (segmentation_model) gives better masks")


def edge_band(mask: np.ndarray, px: int) -> np.ndarray:
    """Pixels within ``px`` of the edge of ``mask > 0.5`` (both sides), bool."""
    m = (np.asarray(mask) > 0.5).astype(np.uint8)
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * px + 1,) * 2)
    return cv2.dilate(m, k).astype(bool) & ~cv2.erode(m, k).astype(bool)


def _disk(px: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * px + 1,) * 2)


def _dilate(mask: np.ndarray, px: int) -> np.ndarray:
    return cv2.dilate((np.asarray(mask) > 0.5).astype(np.uint8), _disk(px)).astype(bool)


def _seeds(small: list[np.ndarray], support) -> tuple[list[np.ndarray], bool]:
    """The support registered onto every frame by its features, else as a template (a frame where
    both fail takes its neighbour's), and whether any frame registered."""
    seeds, scale = [], None
    for f in small:
        seed = registered_seed(f, support)
        if seed is None:  # few features of its own: the object's look as a template
            seed, found = template_seed(f, support, None if scale is None else scale * np.array([0.9, 0.95, 1.0, 1.05, 1.1]))
            scale = found if seed is not None else scale
        seeds.append(seed)
    known = [i for i, s in enumerate(seeds) if s is not None]
    if not known:  # no frame registers (e.g. a plain object): frame 0's mask found by colours
        first = first_frame_mask(small[0], support)
        return [first] * len(small), False
    return [seeds[min(known, key=lambda k: abs(k - i))] if s is None else s for i, s in enumerate(seeds)], True


def _background_motion(small, seeds, margin: int) -> list[np.ndarray]:
    """The camera's motion (frame 0 -> frame t, ``[3, 3]``) where the background shows it; a step
    measured on the object instead (a plain background has nothing to follow) is taken as a still
    camera, or the object's own motion would be taken out of the plate."""
    measured = estimate_camera_motion(small, [_dilate(s, margin).astype(np.float32) for s in seeds])
    out = [np.eye(3)]
    for m, source in zip(measured.matrices[1:], measured.sources[1:]):
        out.append(m if source == "background" else out[-1])
    return out


def _touching(held: np.ndarray, moved: list[np.ndarray], band: int) -> np.ndarray:
    """The parts of ``held`` connected to what moved in the clip (all of it when nothing moved)."""
    ever = clean_mask(np.any(moved, axis=0), min_fraction=0.05) > 0.5
    if ever.sum() < 16:
        return held
    count, labels = cv2.connectedComponents(held.astype(np.uint8), connectivity=8)
    keep = np.unique(labels[_dilate(ever, band) & held])
    return np.isin(labels, keep[keep > 0])


def _canvas(motion, size) -> tuple[list, list, tuple[int, int]]:
    """A canvas in frame 0's view wide enough for every frame of a panning camera: (frame t ->
    canvas, canvas -> frame t) ``[2, 3]`` maps, and its (width, height)."""
    w, h = size
    corners = np.array([[0, w, 0, w], [0, 0, h, h], [1, 1, 1, 1]], np.float64)
    pts = np.concatenate([(np.linalg.inv(m) @ corners)[:2] for m in motion], 1)
    lo = np.clip(np.floor(pts.min(1)), [-w, -h], [0, 0])
    hi = np.clip(np.ceil(pts.max(1)), [w, h], [2 * w, 2 * h])
    shift = np.array([[1.0, 0, -lo[0]], [0, 1.0, -lo[1]], [0, 0, 1.0]])
    to_canvas = [(shift @ np.linalg.inv(m))[:2] for m in motion]
    from_canvas = [(m @ np.linalg.inv(shift))[:2] for m in motion]
    return to_canvas, from_canvas, (int(hi[0] - lo[0]), int(hi[1] - lo[1]))


def _mode(stack: np.ndarray, valid: np.ndarray, weight: np.ndarray, tau: float = _MODE_TAU) -> np.ndarray:
    """Per pixel, the value of the frame that most other valid frames agree with (within ``tau``):
    the background where a moving, many-coloured part covers the pixel in most frames (a median
    would take the part's colour there), the object where a still part of it always is. Each
    frame's value counts ``weight [T, H, W]`` times (:func:`_vote_weight`). White where no frame
    is valid."""
    best = np.full(stack.shape[1:3], -1.0, np.float32)
    plate = np.ones(stack.shape[1:], np.float32)
    for i in range(len(stack)):
        close = (np.abs(stack - stack[i]).max(-1) < tau) & valid
        count = np.where(valid[i], close.sum(0) * weight[i], -1.0)
        better = count > best
        best[better] = count[better]
        plate[better] = stack[i][better]
    return plate


def _on_canvas(small, to_canvas, size) -> tuple[np.ndarray, np.ndarray]:
    """Every frame put on the canvas, ``[T, H, W, 3]``, and the canvas pixels it covers, ``[T, H, W]``."""
    h, w = small[0].shape[:2]
    stack = np.stack([warp(f, m, size, 0.0) for f, m in zip(small, to_canvas)])
    covered = np.stack([warp(np.ones((h, w), np.float32), m, size, 0.0) > 0.99 for m in to_canvas])
    return stack, covered


def _vote_weight(stack, support, far) -> np.ndarray:
    """How much each canvas value counts in the plate's mode, ``[T, H, W]``: less for the object's
    colours (P(object | colour) from the support's colours against ``far``, the frames' colours far
    from it), so a part that lingers over a pixel in most frames with its own colours does not
    become the background there."""
    s_img, s_mask = support
    odds = foreground_odds(stack, np.asarray(s_img, np.float32)[np.asarray(s_mask) > 0.5], far)
    return (1.0 - 0.9 * odds).astype(np.float32)


def _plate(stack, covered, weight, to_canvas=None, avoid=None, fallback=None):
    """The background plate on the canvas (``[H, W, 3]``): the per-pixel mode (:func:`_mode`) over the
    frames (those where the pixel is outside ``avoid``, masks in the frames' views put on the canvas
    by ``to_canvas``, when given, and seen at least in :data:`_PLATE_MIN_FRAMES` of them; else
    ``fallback``), and where it was not seen so (bool)."""
    valid = covered
    if avoid is not None:
        size = stack.shape[2:0:-1]
        valid = covered & np.stack([~(warp(a.astype(np.float32), m, size, 1.0) > 0.01) for a, m in zip(avoid, to_canvas)])
    plate = _mode(stack, valid, weight)
    unseen = valid.mean(0) < (_PLATE_MIN_FRAMES if avoid is not None else 1e-6)
    if fallback is not None:
        plate[unseen] = fallback[unseen]
    return plate.astype(np.float32), unseen


def _differences(small, plate, to_frame, size):
    """Per frame: the colour distance to the plate seen from the frame's camera."""
    return [np.linalg.norm(f - warp(plate, m, size, 0.0), axis=-1) / np.sqrt(3.0) for f, m in zip(small, to_frame)]


def _threshold(diffs, seeds, floor: float = 0.06) -> float:
    """The colour distance that means "not the background": above the plate's own noise (the
    difference far from the object: compression, blur, light)."""
    far = np.concatenate([d[~_dilate(s, max(4, d.shape[0] // 10))] for d, s in zip(diffs, seeds)])
    return float(max(floor, 2.5 * np.percentile(far, 95))) if far.size else floor


def _frame_mask(img, diff, static, unknown, seed, thr, iterations, band):
    """One frame: what differs from the plate, joined with the object's parts that the plate
    holds (``static``, where the frame still looks like the plate) and, where the plate never saw
    the background (``unknown``: the object stood there in nearly every frame, so the plate is its
    colour), what looks like the plate near the support found in the frame (``seed``): there a
    pixel that differs is the desk the object uncovered, not object. Refined by GrabCut; returns
    (mask, rough, clear fg, clear bg)."""
    evidence = clean_mask((diff > thr) & ~unknown, open_px=1, close_px=2, min_fraction=0.05) > 0.5
    static = static & (diff < thr)
    rough = evidence | static | (unknown & (diff < thr) & _dilate(seed, 2 * band))
    clear_fg = ((diff > 2 * thr) & evidence) | (static & (diff < 0.5 * thr))
    # An unknown plate pixel looking like the plate says nothing: it is the object's own colour.
    clear_bg = (diff < 0.5 * thr) & ~static & ~unknown & ~_dilate(rough, 1)
    labels = grabcut_labels(rough, band)
    labels[clear_bg] = cv2.GC_BGD
    labels[cv2.erode(clear_fg.astype(np.uint8), _disk(1)).astype(bool)] = cv2.GC_FGD
    m = run_grabcut(img, labels, iterations)
    if m.sum() < 16:
        m = clean_mask(rough)
    return m, rough, clear_fg, clear_bg


def _confidence(mask, clear_fg, clear_bg, band) -> np.ndarray:
    """Inside the mask 1 unless the plate clearly calls it background; outside it 1 only where the
    plate clearly does (a lost part is outside); 0 along the mask's edge."""
    inside = mask > 0.5
    conf = ((inside & ~clear_bg) | (~inside & clear_bg & ~clear_fg)).astype(np.float32)
    conf[edge_band(mask, max(1, band // 2))] = 0.0
    return conf


def _check(masks, confidence, reach_px, seeds) -> list[dict]:
    """Per frame: area against the clip's median and against the support found in the frame
    (``seed``: a slow drift, a ghost that grows, a part lost for good), share of sure pixels
    near the object, and whether any of them is off."""
    areas = np.array([float((m > 0.5).sum()) for m in masks])
    median = float(np.median(areas)) or 1.0
    stats = []
    for t, (m, c) in enumerate(zip(masks, confidence)):
        near = _dilate(m, reach_px)
        sure = float((c[near] > 0.9).mean()) if near.any() else 0.0
        neighbours = np.median(areas[max(0, t - 2): t + 3]) or 1.0
        jump = max(areas[t], 1.0) / neighbours
        seed = max(float((seeds[t] > 0.5).sum()), 1.0)
        off = max(areas[t], 1.0) / seed
        stats.append({"area": areas[t] / median, "seed_area": off, "sure": sure,
                      "suspect": bool(max(jump, 1 / jump) > AREA_JUMP or max(off, 1 / off) > SEED_AREA_OFF or sure < MIN_SURE)})
    return stats


def anchored_masks(frames, support, *, iterations: int = 3, max_side: int = 384, band_fraction: float = 0.012) -> ClipMasks:
    """Masks and confidences of a clip on any background (module docstring).

    Args:
        frames: ``[H, W, 3]`` float frames as filmed.
        support: ``(image [S, S, 3], mask [S, S])`` of the object: the input view, any size.
        iterations: GrabCut iterations per frame.
        max_side: masks are computed at most this many pixels wide, then upsampled.
        band_fraction: the unsure band along a mask's edge (fraction of the frame's side).
    """
    frames = [as_rgb(f, f"frame {i}") for i, f in enumerate(frames)]
    h, w = frames[0].shape[:2]
    scale = min(1.0, max_side / max(h, w))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = [cv2.resize(f, size, interpolation=cv2.INTER_AREA) if scale < 1 else f for f in frames]
    band = max(1, round(band_fraction * max(size)))
    seeds, registered = _seeds(small, support)
    # The camera, measured away from the object: frame 0 -> frame t.
    motion = _background_motion(small, seeds, 3 * band)
    to_frame, to_frame0 = [m[:2] for m in motion], [np.linalg.inv(m)[:2] for m in motion]
    to_canvas, from_canvas, canvas = _canvas(motion, size)
    stack, covered = _on_canvas(small, to_canvas, canvas)
    weight = _vote_weight(stack, support, np.concatenate([f[~_dilate(s, 6 * band)][::7] for f, s in zip(small, seeds)]))
    # The first plate leaves out the support found in each frame: a plain object standing where a
    # pan keeps it over the same canvas pixels in most frames would otherwise be their mode.
    everything = _plate(stack, covered, weight)[0]
    plate, unseen = _plate(stack, covered, weight, to_canvas, [_dilate(s, 2 * band) for s in seeds], fallback=everything)
    masks = None
    for _ in range(2):  # the second plate leaves out the first pass's masks (moving parts included)
        if masks is not None:
            plate, unseen_now = _plate(stack, covered, weight, to_canvas, [_dilate(m, band) for m in masks], fallback=plate)
            unseen &= unseen_now
        unknowns = [warp(unseen.astype(np.float32), m, size, 1.0) > 0.5 for m in from_canvas]
        diffs = _differences(small, plate, from_canvas, size)
        thr = _threshold(diffs, seeds)
        # The object's parts the plate holds (there in most frames): frame 0's registered object
        # where it looks like the plate, moved by the camera into every frame.
        held = cv2.erode(seeds[0].astype(np.uint8), _disk(1)).astype(bool) & (diffs[0] < thr)
        if not registered:  # a colour seed also takes still clutter of the object's colours
            held = _touching(held, [warp((d > thr).astype(np.float32), m, size, 0.0) > 0.5 for d, m in zip(diffs, to_frame0)], band)
        statics = [warp(held.astype(np.float32), m, size, 0.0) > 0.5 for m in to_frame]  # still against the background
        passes = [_frame_mask(f, d, st, u, sd, thr, iterations, band) for f, d, st, u, sd in zip(small, diffs, statics, unknowns, seeds)]
        masks = [p[0] for p in passes]
    confidence = [_confidence(m, fg, bg, band) for m, _, fg, bg in passes]
    for c, m, u in zip(confidence, masks, unknowns):  # where the plate is the object's colour, its edge is a guess
        c[edge_band(m, 2 * band) & u] = 0.0
    stats = _check(masks, confidence, 4 * band, seeds)
    for t, s in enumerate(stats):
        if s["suspect"]:  # nothing near the object is to be trusted as background in this frame
            confidence[t][~(masks[t] > 0.5) & _dilate(masks[t], 8 * band)] = 0.0
    if scale < 1:
        masks = [(cv2.resize(m, (w, h), interpolation=cv2.INTER_LINEAR) > 0.5).astype(np.float32) for m in masks]
        confidence = [cv2.resize(c, (w, h), interpolation=cv2.INTER_LINEAR) for c in confidence]
    return ClipMasks(masks, confidence, "plate+registered", stats)


def trust_keypoints(confidence, masks, xy, weight, radius_px: float, min_weight: float = 0.5) -> tuple[np.ndarray, int]:
    """Confidences ``[T, H, W]`` cleared in a disk of ``radius_px`` around every tracked keypoint
    (``xy [T, N, 2]`` pixels, ``weight [T, N]``) that the mask says is background: the keypoints
    follow the moving parts that a segmentation loses, so where the two disagree the silhouette
    must not push the part away (the keypoint loss then places it). Returns the new confidences and
    how many keypoints disagreed."""
    conf = np.array(confidence, np.float32, copy=True)
    t_count, h, w = conf.shape
    yy, xx = np.mgrid[0:h, 0:w]
    lost = 0
    for t in range(t_count):
        for (x, y), k in zip(np.asarray(xy[t], np.float64), np.asarray(weight[t], np.float64)):
            col, row = int(np.floor(x)), int(np.floor(y))
            if k < min_weight or not (0 <= col < w and 0 <= row < h) or masks[t][row, col] > 0.5:
                continue
            lost += 1
            conf[t][(xx + 0.5 - x) ** 2 + (yy + 0.5 - y) ** 2 <= radius_px**2] = 0.0
    return conf, lost


def plain_background(frames, support=None, *, tolerance: float = 0.1, share: float = 0.9) -> bool:
    """Whether a clip is filmed on a plain background (a studio sweep, a white sheet): the frames'
    borders are nearly one colour. There GrabCut carried by the flow is exact and no plate is needed."""
    strips = [border_pixels(as_rgb(f), max(2, round(0.03 * min(np.shape(f)[:2])))) for f in frames]
    px = np.concatenate(strips)
    return bool((np.abs(px - np.median(px, axis=0)).max(-1) < tolerance).mean() >= share)


def segmenter_confidence(masks, band_px: int = 2) -> tuple[list, list]:
    """Binary masks and confidences from a segmenter's soft maps: ``|2p - 1|`` (a network's own
    doubt), 0 along the binary mask's edge."""
    binary, conf = [], []
    for p in masks:
        p = np.asarray(p, np.float32)
        b = (p > 0.5).astype(np.float32)
        c = np.abs(2 * p - 1).astype(np.float32)
        c[edge_band(b, band_px)] = 0.0
        binary.append(b)
        conf.append(c)
    return binary, conf
