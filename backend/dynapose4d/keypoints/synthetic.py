"""Synthetic keypoint sequences with exact ground truth, for the benchmark and the tests.

Each sequence is a textured object on white, like the driving videos the tracker gets. The
object is made of layers (one per rigid part, plus an optional occluder in front); each layer
has a texture and an alpha mask in *canonical* coordinates, which are the support image's
pixels, and a warp per frame that maps canonical points to frame pixels. Frames are rendered by
backward warping (every frame pixel looks up its canonical point), so the ground truth of a
keypoint is the forward warp of its support position, and it is visible where its own layer is
on top. Frame 0 is deliberately not the support: a small similarity (the "camera") offsets the
whole video, as SVD's regenerated frame 0 or a user video would.

Kinds (``make_sequence(kind, ...)``):
- ``affine``: smooth rotation, scaling, shear and translation of one blob-shaped object.
- ``tps``: a thin-plate-spline deformation of the blob, control points wobbling in time.
- ``articulated``: a body with a two-link arm; each link rotates about its joint.
- ``occlusion``: the affine motion with a textured bar sweeping across in front.
- ``brightness``: the affine motion while the object's brightness falls to 55% and tints.

All positions are pixels in the project's convention (pixel (i, j) centre at (j + 0.5, i + 0.5)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np

from ..cameras import pixels_to_opencv
from ..imaging.tps import ThinPlateSpline
from .base import Support
from .evaluate import LabelledSequence
from .support import DEFAULT_NUM_KEYPOINTS, auto_support_keypoints

KINDS = ("affine", "tps", "articulated", "occlusion", "brightness")


# ---------------------------------------------------------------------------------------------
# warps: canonical (support) pixels <-> frame pixels


class Affine:
    """``x_frame = A @ [x, y, 1]`` with ``A [2, 3]``."""

    def __init__(self, matrix: np.ndarray):
        self.matrix = np.asarray(matrix, np.float64).reshape(2, 3)
        full = np.vstack([self.matrix, [0.0, 0.0, 1.0]])
        self._inverse = np.linalg.inv(full)[:2]

    @classmethod
    def similarity(cls, angle_deg=0.0, scale=1.0, shift=(0.0, 0.0), centre=(0.0, 0.0), shear=0.0) -> "Affine":
        """Rotate by ``angle_deg`` (counter-clockwise on screen), scale and shear about ``centre``, then shift."""
        a = math.radians(angle_deg)
        # y points down on screen, so a visually counter-clockwise turn is R(-a) in (x, y).
        rot = np.array([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]])
        lin = scale * rot @ np.array([[1.0, shear], [0.0, 1.0]])
        c = np.asarray(centre, np.float64)
        return cls(np.concatenate([lin, (c + np.asarray(shift) - lin @ c)[:, None]], 1))

    def then(self, other: "Affine") -> "Affine":
        """The affine map ``other(self(x))``."""
        full = np.vstack([other.matrix, [0, 0, 1]]) @ np.vstack([self.matrix, [0, 0, 1]])
        return Affine(full[:2])

    def to_frame(self, xy: np.ndarray) -> np.ndarray:
        return xy @ self.matrix[:, :2].T + self.matrix[:, 2]

    def to_canonical(self, xy: np.ndarray) -> np.ndarray:
        return xy @ self._inverse[:, :2].T + self._inverse[:, 2]


class SplineWarp:
    """A thin-plate-spline deformation, then an affine map (the camera offset)."""

    def __init__(self, canonical_ctrl: np.ndarray, frame_ctrl: np.ndarray, after: Affine):
        # The spline is defined backwards (frame -> canonical) because rendering needs that
        # direction at every pixel; the forward direction is solved for the few keypoints.
        self._backward = ThinPlateSpline(frame_ctrl, canonical_ctrl)
        self._after = after

    def to_canonical(self, xy: np.ndarray) -> np.ndarray:
        return self._backward(self._after.to_canonical(xy))

    def to_frame(self, xy: np.ndarray, iterations: int = 20) -> np.ndarray:
        target = np.asarray(xy, np.float64)
        x = target.copy()
        for _ in range(iterations):  # Newton on backward(x) = target
            r = self._backward(x) - target
            jac = self._backward.jacobian(x)
            x = x - np.linalg.solve(jac, r[..., None])[..., 0]
        return self._after.to_frame(x)


# ---------------------------------------------------------------------------------------------
# textures and shapes


def random_texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """``(size, size, 3)`` float32 colourful multi-scale noise in [0.05, 0.95]."""
    tex = np.zeros((size, size, 3), np.float32)
    for sigma, amp in ((1.0, 0.35), (2.5, 0.6), (6.0, 0.8), (15.0, 1.0)):
        noise = rng.normal(size=(size, size, 3)).astype(np.float32)
        noise = cv2.GaussianBlur(noise, (0, 0), sigma)
        tex += amp * noise / (noise.std() + 1e-6)
    tex = (tex - tex.mean((0, 1))) / (tex.std((0, 1)) + 1e-6)
    return np.clip(0.5 + 0.18 * tex, 0.05, 0.95)


def blob_alpha(rng: np.random.Generator, size: int, centre, radius: float, wobble: float = 0.18) -> np.ndarray:
    """``(size, size)`` float32 alpha of a smooth star-convex blob (radius modulated by low harmonics)."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    ang = np.arctan2(ys - centre[1], xs - centre[0])
    r = np.full_like(ang, radius)
    for k in (2, 3, 5):
        r += radius * wobble / k * rng.uniform(0.5, 1.0) * np.cos(k * ang + rng.uniform(0, 2 * np.pi))
    dist = np.hypot(xs - centre[0], ys - centre[1])
    return np.clip(r - dist + 0.5, 0.0, 1.0).astype(np.float32)  # one-pixel anti-aliased edge


def ellipse_alpha(size: int, centre, axes) -> np.ndarray:
    """``(size, size)`` float32 alpha of an axis-aligned ellipse with half-axes ``axes = (ax, ay)``."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    rho = np.hypot((xs - centre[0]) / axes[0], (ys - centre[1]) / axes[1])
    return np.clip((1.0 - rho) * min(axes) + 0.5, 0.0, 1.0).astype(np.float32)


def capsule_alpha(size: int, a, b, half_width: float) -> np.ndarray:
    """``(size, size)`` float32 alpha of a capsule (segment a-b thickened by ``half_width``)."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    p = np.stack([xs, ys], -1)
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    t = np.clip(((p - a) @ (b - a)) / ((b - a) @ (b - a)), 0, 1)
    dist = np.linalg.norm(p - (a + t[..., None] * (b - a)), axis=-1)
    return np.clip(half_width - dist + 0.5, 0.0, 1.0).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# scenes


@dataclass
class Layer:
    """One rigid or deforming part: texture and alpha in canonical pixels, a warp per frame."""

    texture: np.ndarray  # (S, S, 3) float32
    alpha: np.ndarray  # (S, S) float32
    warp: Callable[[int], object]  # frame index -> warp with to_canonical / to_frame
    in_support: bool = True  # False for an occluder that only the video shows


def _render(layers: list[Layer], frame: int | None, size: int, gains: tuple[np.ndarray, ...] | None = None):
    """Composite layers back to front on white: image ``(S, S, 3)``, top layer id ``(S, S)`` (-1 = background).

    ``frame=None`` renders the support (canonical pose, occluders left out).
    """
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    centres = np.stack([xs, ys], -1).reshape(-1, 2)
    image = np.ones((size, size, 3), np.float32)
    top = np.full((size, size), -1, np.int64)
    for index, layer in enumerate(layers):
        if frame is None:
            if not layer.in_support:
                continue
            tex, alpha = layer.texture, layer.alpha
        else:
            src = pixels_to_opencv(layer.warp(frame).to_canonical(centres)).reshape(size, size, 2).astype(np.float32)
            tex = cv2.remap(layer.texture, src[..., 0], src[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
            alpha = cv2.remap(layer.alpha, src[..., 0], src[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        if gains is not None and layer.in_support:
            tex = np.clip(tex * gains[0] + gains[1], 0, 1)
        image = image * (1 - alpha[..., None]) + tex * alpha[..., None]
        top[alpha > 0.5] = index
    return image.astype(np.float32), top


def _ease(t: float) -> float:
    """0 -> 1 -> 0 over t in [0, 1], smoothly: the motion goes out and comes back, so drift shows."""
    return math.sin(math.pi * t)


def _build(kind: str, size: int, num_frames: int, rng: np.random.Generator) -> tuple[list[Layer], Callable | None]:
    """The layers of a ``kind`` of sequence, and the per-frame brightness (gain, offset) or None."""
    s = size / 256.0  # motions are designed at 256 px and scale with the image
    centre = np.array([size / 2, size / 2])
    # The camera offset between the support and the video (frame 0 included).
    camera = Affine.similarity(angle_deg=rng.uniform(-4, 4), scale=rng.uniform(0.96, 1.04),
                               shift=rng.uniform(-5, 5, 2) * s, centre=centre)

    def phase(f: int) -> float:
        return f / max(num_frames - 1, 1)

    def affine_motion(f: int) -> Affine:
        u = phase(f)
        motion = Affine.similarity(angle_deg=25 * _ease(u) - 8 * u, scale=1 + 0.15 * _ease(u), shear=0.1 * _ease(u),
                                   shift=np.array([18 * u, -10 * _ease(u)]) * s, centre=centre)
        return motion.then(camera)

    if kind in ("affine", "occlusion", "brightness"):
        body = Layer(random_texture(rng, size), blob_alpha(rng, size, centre, 0.3 * size), affine_motion)
        layers = [body]
        if kind == "occlusion":
            bar = capsule_alpha(size, (0.5 * size, -0.2 * size), (0.5 * size, 1.2 * size), 0.06 * size)

            def sweep(f: int) -> Affine:  # crosses the object left to right during the middle of the video
                return Affine.similarity(angle_deg=15, shift=((phase(f) * 1.6 - 0.8) * 0.6 * size, 0), centre=centre)

            layers.append(Layer(random_texture(rng, size), bar, sweep, in_support=False))

        def dimming(f: int):  # a per-frame multiplicative gain (per channel: a tint) and offset
            u = phase(f)
            return np.array([1 - 0.45 * u, 1 - 0.40 * u, 1 - 0.5 * u], np.float32), np.float32(0.03 * u)

        return layers, (dimming if kind == "brightness" else None)

    if kind == "tps":
        grid = np.stack(np.meshgrid(np.linspace(0.2, 0.8, 4), np.linspace(0.2, 0.8, 4)), -1).reshape(-1, 2) * size
        amp = rng.uniform(-1, 1, grid.shape) * 12 * s
        freq = rng.uniform(0.6, 1.2, len(grid))[:, None]
        offset = rng.uniform(0, 2 * np.pi, len(grid))[:, None]

        def spline_motion(f: int) -> SplineWarp:
            u = phase(f)
            frame_ctrl = grid + amp * np.sin(2 * np.pi * freq * u + offset) - amp * np.sin(offset)
            turn = Affine.similarity(angle_deg=10 * _ease(u), shift=(8 * u * s, 0), centre=centre)
            return SplineWarp(grid, frame_ctrl, turn.then(camera))

        return [Layer(random_texture(rng, size), blob_alpha(rng, size, centre, 0.3 * size, 0.12), spline_motion)], None

    if kind == "articulated":
        # body ellipse, shoulder joint on its right, upper arm and forearm capsules
        body_c = centre + np.array([-0.12, 0.05]) * size
        shoulder = body_c + np.array([0.16, -0.08]) * size
        elbow = shoulder + np.array([0.2, -0.02]) * size
        hand = elbow + np.array([0.0, 0.22]) * size
        body_alpha = ellipse_alpha(size, body_c, (0.2 * size, 0.27 * size))

        def joint(angle_fn, pivot, parent=None):
            def warp(f: int) -> Affine:
                local = Affine.similarity(angle_deg=angle_fn(phase(f)), centre=pivot)
                return local.then(parent(f)) if parent else local.then(camera)

            return warp

        body_w = joint(lambda u: 6 * _ease(u), body_c)
        upper_w = joint(lambda u: 40 * _ease(u), shoulder, body_w)
        fore_w = joint(lambda u: -60 * math.sin(1.5 * math.pi * u), elbow, upper_w)
        return [
            Layer(random_texture(rng, size), body_alpha, body_w),
            Layer(random_texture(rng, size), capsule_alpha(size, shoulder, elbow, 0.05 * size), upper_w),
            Layer(random_texture(rng, size), capsule_alpha(size, elbow, hand, 0.045 * size), fore_w),
        ], None

    raise ValueError(f"unknown synthetic sequence kind {kind!r}; choose one of {', '.join(KINDS)}")


def make_sequence(kind: str, num_frames: int = 14, size: int = 256, n_keypoints: int = DEFAULT_NUM_KEYPOINTS,
                  seed: int = 0) -> LabelledSequence:
    """Render one synthetic sequence of ``kind`` (see the module docstring) with ground truth.

    The support is the canonical pose (no camera offset, no occluder) with ``n_keypoints``
    chosen by :func:`auto_support_keypoints`; frames are ``size`` x ``size``; ``seed`` fixes
    textures, shapes and motion. The result's ``visible`` is True where a keypoint's own part
    is on top and inside the image.
    """
    rng = np.random.default_rng(seed)
    layers, gains = _build(kind, size, num_frames, rng)
    support_image, support_top = _render(layers, None, size)
    support_mask = support_top >= 0
    kp = auto_support_keypoints(support_image, support_mask, n_keypoints)
    cols = np.clip(kp.xy[:, 0].astype(int), 0, size - 1)
    rows = np.clip(kp.xy[:, 1].astype(int), 0, size - 1)
    owner = support_top[rows, cols]  # the part each keypoint sits on
    frames, masks, xy, visible = [], [], [], []
    for f in range(num_frames):
        image, top = _render(layers, f, size, gains(f) if gains else None)
        pts = np.zeros((kp.n, 2))
        for part in np.unique(owner):
            sel = owner == part
            pts[sel] = layers[part].warp(f).to_frame(kp.xy[sel].astype(np.float64))
        c, r = np.floor(pts[:, 0]).astype(int), np.floor(pts[:, 1]).astype(int)
        inside = (c >= 0) & (c < size) & (r >= 0) & (r < size)
        vis = inside.copy()
        vis[inside] = top[r[inside], c[inside]] == owner[inside]
        frames.append(image)
        masks.append(top >= 0)
        xy.append(pts)
        visible.append(vis)
    support = Support(support_image, kp, support_mask)
    return LabelledSequence(f"{kind}-{num_frames}", support, np.stack(frames), np.stack(masks),
                             np.stack(xy).astype(np.float32), np.stack(visible))
