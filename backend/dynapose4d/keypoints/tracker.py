"""The default, weight-free keypoint estimator: register, track with Lucas-Kanade, re-anchor.

For a support (image + N keypoints) and T frames (objects on white get masks from the
background when none are given):

1. Register the support to frame 0 (SIFT + RANSAC similarity, or homography), then refine each
   keypoint by Lucas-Kanade from the registered support image to frame 0. If registration
   fails, frame 0 is assumed to frame the object as the support does (identity or a resize),
   and frame 0's confidences say so.
2. For t = 1..T-1: pyramidal Lucas-Kanade from frame t-1 to t on a locally contrast-normalised
   CIELAB image (brightness changes cancel, hue counts), checked by tracking back
   (forward-backward error) and by the patch still looking like the point's last trusted look.
   Points on texture-less surface (by the support's colour structure tensor, silhouette edges
   excluded) are never trusted to LK: they slide.
3. Re-anchor to the support: SIFT matches support <-> frame t, gated by a loose RANSAC
   homography or the tracks' motion, cleaned by leave-one-out spline residuals; a thin-plate
   spline through the rest carries the support keypoints into the frame. Agreement pulls the
   track halfway onto the anchor (no drift); disagreement or a failed track hands the point to
   the anchor or, without one, to its tracked neighbours' motion (a spline), or to the
   silhouette's (moment-matching affine), with a low confidence. Positions that left the mask
   are put back on it.
4. A point whose final patch does not look like its last trusted look, or that is off the
   mask, is marked invisible; its look is kept so it is recognised when it reappears. A point
   that no longer looks like itself in frame 0 gets its confidence halved (slow drift).

Confidence combines the checks (forward-backward error, anchor agreement, appearance) so that
low values flag the points not to trust; ``scripts/bench_keypoints.py`` measures how well.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

from ..cameras import pixels_from_opencv, pixels_to_opencv
from ..imaging.masks import masks_on_white
from ..imaging.pixels import luma_u8
from ..imaging.register import Features, Registration, detect_features, register
from ..imaging.tps import ThinPlateSpline
from .anchor import anchor_keypoints
from .base import KeypointError, KeypointEstimator, Support, TrackResult, as_frames, as_rgb_float
from .support import WHITE_THRESHOLD, trackability


@dataclass
class TrackerConfig:
    """Settings of :class:`LKTracker`. Lengths are pixels at a 256-pixel object scale unless noted.

    Attributes:
        registration_model: ``similarity`` or ``homography`` for support -> frame 0.
        window: Lucas-Kanade window side (pixels).
        levels: pyramid levels above the full image.
        fb_threshold_px: forward-backward error above which a track fails.
        anchor: re-anchor to the support with SIFT + thin-plate spline.
        anchor_pull: fraction of the track-anchor difference applied when they agree.
        agree_px: track and anchor closer than this agree.
        min_anchor_support: matches (Gaussian-weighted count) near a keypoint for its anchor to count.
        ncc_threshold: appearance correlation (with the last trusted look) below which a point
            is taken as hidden.
        ncc_first_threshold: correlation with the point's look in frame 0 below which its
            confidence is halved (catches slow drift).
        patch: side of the appearance patch (pixels).
        sift_upscale: SIFT resize factor; 0 picks one from the object's size.
        sift_contrast: SIFT's contrast threshold (lower finds more, slower, features).
        normalize_sigma: local contrast normalisation scale of the tracked image (0 = off).
        colour: track CIELAB instead of luma.
        min_texture: :func:`trackability` at a support keypoint below which Lucas-Kanade is not
            trusted there (texture-less surface: it slides); such points follow the silhouette.
    """

    registration_model: str = "similarity"
    window: int = 9
    levels: int = 3
    fb_threshold_px: float = 1.0
    anchor: bool = True
    anchor_pull: float = 0.5
    agree_px: float = 3.0
    min_anchor_support: float = 1.5
    ncc_threshold: float = 0.5
    ncc_first_threshold: float = 0.4
    patch: int = 11
    sift_upscale: float = 0.0
    normalize_sigma: float = 4.0
    colour: bool = True
    min_texture: float = 1e-5
    sift_contrast: float = 0.02


def _lk_image(rgb: np.ndarray, colour: bool, sigma: float) -> np.ndarray:
    """The image Lucas-Kanade tracks: uint8 luma or CIELAB, locally contrast-normalised when ``sigma > 0``.

    Colour matters on smoothly shaded objects whose hue changes where the luma does not.
    LK matches raw intensities, so a brightness change biases it; subtracting a local mean and
    dividing by a local standard deviation (Gaussian windows of ``sigma`` pixels) cancels
    smooth gain and offset changes while keeping the texture.
    """
    rgb = as_rgb_float(rgb)
    if colour:
        img = cv2.cvtColor(rgb, cv2.COLOR_RGB2Lab) * np.float32([2.55, 1.0, 1.0])  # all channels ~0..255 wide
    else:
        img = luma_u8(rgb).astype(np.float32)
    if sigma > 0:
        hp = img - cv2.GaussianBlur(img, (0, 0), sigma)
        std = np.sqrt(cv2.GaussianBlur(hp * hp, (0, 0), sigma))
        img = 128 + 48 * hp / (std + 4.0)  # the floor keeps flat regions (and white) flat, not noise
    elif colour:
        img = img + np.float32([0, 128, 128])
    return np.clip(img, 0, 255).astype(np.uint8)


def _lk(prev: np.ndarray, next_: np.ndarray, xy: np.ndarray, window: int, levels: int, guess: np.ndarray | None = None):
    """Pyramidal Lucas-Kanade between two images: positions ``[M, 2]`` (ours) and a success flag ``[M]``.

    OpenCV's Python binding cannot take prebuilt pyramids, so each call builds them again.
    """
    p = pixels_to_opencv(xy).astype(np.float32).reshape(-1, 1, 2)
    flags, init = 0, None
    if guess is not None:
        init = pixels_to_opencv(guess).astype(np.float32).reshape(-1, 1, 2)
        flags = cv2.OPTFLOW_USE_INITIAL_FLOW
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 30, 0.01)
    q, status, _ = cv2.calcOpticalFlowPyrLK(prev, next_, p, init, winSize=(window, window), maxLevel=levels,
                                            criteria=criteria, flags=flags)
    return pixels_from_opencv(q.reshape(-1, 2).astype(np.float64)), status.ravel().astype(bool)


def _lk_checked(prev: np.ndarray, next_: np.ndarray, xy, cfg: TrackerConfig, guess=None):
    """Forward then backward LK: new positions ``[M, 2]``, forward-backward error ``[M]`` (inf on failure)."""
    q, ok_f = _lk(prev, next_, xy, cfg.window, cfg.levels, guess)
    r, ok_b = _lk(next_, prev, q, cfg.window, cfg.levels, xy)
    fb = np.linalg.norm(r - xy, axis=1)
    fb[~(ok_f & ok_b) | ~np.isfinite(fb)] = np.inf
    return q, fb


def _patches(gray: np.ndarray, xy: np.ndarray, size: int) -> np.ndarray:
    """Sub-pixel ``[M, size, size]`` float32 patches centred on ``xy`` (ours), zero-mean, unit-norm."""
    out = np.zeros((len(xy), size, size), np.float32)
    for i, c in enumerate(pixels_to_opencv(xy)):
        out[i] = cv2.getRectSubPix(gray, (size, size), (float(c[0]), float(c[1])))
    out -= out.mean((1, 2), keepdims=True)
    norm = np.sqrt((out**2).sum((1, 2), keepdims=True))
    return out / np.maximum(norm, 1e-6)


def _ncc(gray: np.ndarray, xy: np.ndarray, looks: np.ndarray) -> np.ndarray:
    """``[M]`` normalised cross-correlation of the patches at ``xy [M, 2]`` with ``looks [M, P, P]``."""
    return (_patches(gray, xy, looks.shape[1]) * looks).sum((1, 2))


def _inside(mask: np.ndarray | None, xy: np.ndarray, tolerance: int = 2) -> np.ndarray:
    """Whether points ``[M, 2]`` fall on the mask dilated by ``tolerance`` pixels (all True without a mask)."""
    if mask is None:
        return np.ones(len(xy), bool)
    h, w = mask.shape
    c, r = np.floor(xy[:, 0]).astype(int), np.floor(xy[:, 1]).astype(int)
    ok = (c >= 0) & (c < w) & (r >= 0) & (r < h)
    grown = cv2.dilate(mask.astype(np.uint8), np.ones((2 * tolerance + 1,) * 2, np.uint8)) > 0
    ok[ok] = grown[r[ok], c[ok]]
    return ok


def _snap_to_mask(mask: np.ndarray | None, xy: np.ndarray, tolerance: int = 2) -> np.ndarray:
    """Move points farther than ``tolerance`` pixels outside ``mask`` to the nearest mask pixel's centre.

    Keypoints lie on the object; a prediction that left the silhouette is certainly wrong there.
    """
    if mask is None or not mask.any():
        return xy
    outside = ~_inside(mask, xy, tolerance)
    if not outside.any():
        return xy
    rows, cols = np.nonzero(mask)
    pix = np.stack([cols + 0.5, rows + 0.5], 1)
    out = xy.copy()
    for i in np.flatnonzero(outside):
        out[i] = pix[np.argmin(((pix - xy[i]) ** 2).sum(1))]
    return out


class _Silhouette:
    """The affine map from frame 0 to frame t that matches the masks' first and second moments.

    ``x_t = c_t + A (x_0 - c_0)`` with centroids c and ``A = S_t^1/2 S_0^-1/2`` (S: covariance of
    the mask pixels), the stretch with no rotation. It is the motion of last resort for points
    with no texture and no tracked neighbours: for a texture-less body the silhouette is all
    there is to see, and a rotation of it cannot be told from its shape alone.
    """

    def __init__(self, mask0: np.ndarray):
        self.c0, s0 = self._moments(mask0)
        self.inv_root0 = np.linalg.inv(self._root(s0))

    @staticmethod
    def _moments(mask: np.ndarray):
        rows, cols = np.nonzero(mask)
        p = np.stack([cols + 0.5, rows + 0.5], 1)
        c = p.mean(0)
        return c, np.cov((p - c).T) + 1e-3 * np.eye(2)

    @staticmethod
    def _root(cov: np.ndarray) -> np.ndarray:
        w, v = np.linalg.eigh(cov)
        return v @ np.diag(np.sqrt(np.maximum(w, 1e-9))) @ v.T

    def predict(self, mask: np.ndarray, xy0: np.ndarray) -> np.ndarray:
        """Frame-0 points ``[M, 2]`` carried to the frame whose foreground is ``mask``."""
        c, s = self._moments(mask)
        return c + (xy0 - self.c0) @ (self._root(s) @ self.inv_root0).T


def _auto_upscale(mask: np.ndarray | None) -> float:
    """SIFT resize factor: ~150 px across the object find enough features, so small objects are enlarged."""
    if mask is None or not mask.any():
        return 1.0
    rows, cols = np.nonzero(mask.any(1))[0], np.nonzero(mask.any(0))[0]
    extent = max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1
    return float(np.clip(150.0 / extent, 1.0, 2.0))


def _white_background(frame: np.ndarray) -> bool:
    """Whether a frame looks like an object on white: its one-pixel border is (almost) all white."""
    border = np.concatenate([frame[0], frame[-1], frame[:, 0], frame[:, -1]])
    return bool(((1.0 - border).max(1) < 0.06).mean() > 0.95)


@dataclass
class _Start:
    """Validated inputs and the frame-0 placement shared by the tracker and the static baseline."""

    support: Support
    frames: list
    masks: list
    xy: np.ndarray  # [T, N, 2] float64, row 0 filled
    conf: np.ndarray  # [T, N]
    vis: np.ndarray  # [T, N]
    registration: Registration
    support_features: Features
    upscale: float


class LKTracker(KeypointEstimator):
    """Weight-free one-shot keypoint tracker (see the module docstring). Registry name: ``tracker``.

    ``LKTracker(config=None, **overrides)``: a :class:`TrackerConfig`, with fields overridden by
    keyword. Without masks, frames of an object on white get masks from the background.
    """

    name = "tracker"
    needs_weights = False

    def __init__(self, config: TrackerConfig | None = None, **overrides):
        self.config = TrackerConfig(**{**asdict(config or TrackerConfig()), **overrides})

    def estimate(self, support: Support, frames, masks=None) -> TrackResult:
        cfg = self.config
        st = self._start(support, frames, masks)
        kp = st.support.keypoints
        frames, masks = st.frames, st.masks
        scale = max(frames[0].shape[:2]) / 256.0  # thresholds are set at 256 px
        grays = [luma_u8(f).astype(np.float32) for f in frames]
        lk_images = [_lk_image(f, cfg.colour, cfg.normalize_sigma * scale) for f in frames]
        cols = np.clip(kp.xy[:, 0].astype(int), 0, st.support.image.shape[1] - 1)
        rows = np.clip(kp.xy[:, 1].astype(int), 0, st.support.image.shape[0] - 1)
        first_look = _patches(grays[0], st.xy[0], cfg.patch)
        ctx = _Context(
            support_xy=kp.xy.astype(np.float64),
            support_features=st.support_features,
            upscale=st.upscale,
            scale=scale,
            textured=trackability(st.support.image, st.support.mask, cfg.window)[rows, cols] >= cfg.min_texture,
            first_look=first_look,
            silhouette=_Silhouette(masks[0]) if masks[0] is not None and masks[0].sum() >= 3 else None,
        )
        look = first_look
        # 2-5. frame by frame
        for t in range(1, len(frames)):
            st.xy[t], st.conf[t], st.vis[t], look = self._step(
                ctx, st.xy[t - 1], st.xy[0], look, lk_images[t - 1], lk_images[t], grays[t], frames[t], masks[t])
        vis = st.vis & kp.visible[None]
        info = {"registration": st.registration.to_dict(), "sift_upscale": st.upscale}
        return TrackResult(st.xy.astype(np.float32), np.clip(st.conf, 0, 1), vis, kp.names, kp.edges, self.name, info)

    def _start(self, support: Support, frames, masks) -> "_Start":
        """Validate the inputs, fill in masks for objects on white, place the keypoints in frame 0."""
        cfg = self.config
        frames, masks = as_frames(frames, masks)
        if all(m is None for m in masks) and all(_white_background(f) for f in frames):
            masks = list(masks_on_white(np.stack(frames), threshold=WHITE_THRESHOLD) > 0.5)
        if support.mask is None and _white_background(support.image):
            support = Support(support.image, support.keypoints, masks_on_white(support.image, threshold=WHITE_THRESHOLD)[0] > 0.5)
        kp = support.keypoints
        h, w = frames[0].shape[:2]
        scale = max(h, w) / 256.0
        xy = np.zeros((len(frames), kp.n, 2), np.float64)
        conf = np.zeros((len(frames), kp.n), np.float32)
        vis = np.zeros((len(frames), kp.n), bool)
        # 1. support -> frame 0: global registration, then a per-point refinement
        s_upscale = cfg.sift_upscale or _auto_upscale(support.mask)
        upscale = cfg.sift_upscale or _auto_upscale(masks[0])
        s_feats = detect_features(support.image, support.mask, s_upscale, cfg.sift_contrast)
        reg = register(support.image, frames[0], support.mask, masks[0], cfg.registration_model,
                       support_features=s_feats,
                       frame_features=detect_features(frames[0], masks[0], upscale, cfg.sift_contrast))
        if not reg.success:
            # The best guess left: frame 0 frames the object as the support does (SVD's frame 0
            # does, at its own resolution), so the map is the identity or a plain resize.
            sh, sw = support.image.shape[:2]
            if abs(w / sw - h / sh) > 0.01 * max(w / sw, h / sh):
                raise KeypointError(
                    f"could not register the support image to frame 0 ({reg.reason}), and their aspect ratios "
                    f"differ ({sw}x{sh} vs {w}x{h}), so there is no fallback; pass keypoints annotated on frame 0 "
                    "instead"
                )
            reg.matrix = np.diag([w / sw, h / sh, 1.0])
            reg.model = "identity" if (sw, sh) == (w, h) else "resize"
        lk0 = _lk_image(frames[0], cfg.colour, cfg.normalize_sigma * scale)
        xy[0], fb0 = self._refine_frame0(support, reg, reg.apply(kp.xy).astype(np.float64), lk0, scale)
        xy[0] = _snap_to_mask(masks[0], xy[0])
        c_fb0 = np.exp(-((np.minimum(fb0, 1e6) / (cfg.fb_threshold_px * scale)) ** 2))
        conf[0] = np.maximum(c_fb0, 0.6) if reg.success else 0.3 * np.maximum(c_fb0, 0.5)
        vis[0] = _inside(masks[0], xy[0]) & kp.visible
        return _Start(support, frames, masks, xy, conf, vis, reg, s_feats, upscale)

    # -----------------------------------------------------------------------------------------

    def _refine_frame0(self, support: Support, reg: Registration, guess, lk0, scale):
        """Lucas-Kanade from the support image, warped by the registration, to frame 0.

        Corrects what a global similarity cannot (SVD's regenerated details). Returns positions
        ``[N, 2]`` and the forward-backward errors ``[N]`` (inf where the guess was kept).
        """
        cfg = self.config
        h, w = lk0.shape[:2]
        shift = np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1]])  # OpenCV pixels -> ours
        m_cv = np.linalg.inv(shift) @ reg.matrix @ shift
        warped = cv2.warpPerspective(support.image, m_cv, (w, h), flags=cv2.INTER_LINEAR,
                                     borderMode=cv2.BORDER_REPLICATE)
        warped = _lk_image(warped, cfg.colour, cfg.normalize_sigma * scale)
        q, fb = _lk_checked(warped, lk0, guess, cfg)
        ok = (fb < cfg.fb_threshold_px * scale) & (np.linalg.norm(q - guess, axis=1) < 6.0 * scale)
        return np.where(ok[:, None], q, guess), np.where(ok, fb, np.inf)

    def _step(self, ctx: "_Context", prev_xy, xy0, look, prev_lk, lk, gray, frame, mask):
        """One frame: track, anchor, fuse, check.

        Args:
            prev_xy, xy0: ``[N, 2]`` positions in the previous frame and in frame 0.
            look: ``[N, P, P]`` each point's last trusted patch (normalised luma).
            prev_lk, lk: the previous and this frame's tracking images; gray: this frame's luma.
            frame, mask: this frame (RGB) and its foreground mask (or None).

        Returns:
            positions ``[N, 2]``, confidences ``[N]``, visibility ``[N]`` and the updated looks.
        """
        cfg = self.config
        fb_thr, agree_px = cfg.fb_threshold_px * ctx.scale, cfg.agree_px * ctx.scale
        # 2. track from the previous frame, checked backwards and against the point's look
        q, fb = _lk_checked(prev_lk, lk, prev_xy, cfg)
        lk_ok = (fb < fb_thr) & (_ncc(gray, q, look) >= cfg.ncc_threshold) & ctx.textured
        # The trusted tracks' motion predicts the rest and gates the anchor's matches.
        motion = ThinPlateSpline(ctx.support_xy[lk_ok], q[lk_ok], 1e-2) if lk_ok.sum() >= 3 else None
        # 3. re-anchor to the support
        anchor = None
        if cfg.anchor:
            feats = detect_features(frame, mask, ctx.upscale, cfg.sift_contrast)
            anchor = anchor_keypoints(ctx.support_features, feats, ctx.support_xy, motion, gate_px=12 * ctx.scale,
                                      radius_px=12 * ctx.scale, residual_px=2.0 * ctx.scale)
        has_anchor = np.zeros(len(q), bool) if anchor is None else anchor.support >= cfg.min_anchor_support
        a = q if anchor is None else anchor.xy.astype(np.float64)
        d = np.linalg.norm(q - a, axis=1)
        agree = lk_ok & has_anchor & (d < agree_px)
        # A track that is self-consistent but far from a well-supported anchor has usually slid
        # onto something else (an occluder, a repeated texture): the anchor wins.
        use_anchor = has_anchor & ~agree
        neither = ~lk_ok & ~has_anchor
        # 4. fuse; points with no evidence of their own follow their tracked neighbours, else the silhouette
        out = q.copy()
        # Averaging two estimates with independent errors: the anchor removes drift, the track
        # keeps its precision (a dead zone that left small differences alone measured worse).
        out[agree] += cfg.anchor_pull * (a[agree] - q[agree])
        out[use_anchor] = a[use_anchor]
        if neither.any():
            if motion is not None and lk_ok.sum() >= 4:
                out[neither] = motion(ctx.support_xy[neither])
            elif ctx.silhouette is not None and mask is not None and mask.sum() >= 3:
                out[neither] = ctx.silhouette.predict(mask, xy0[neither])
            else:
                out[neither] = prev_xy[neither]
        out = _snap_to_mask(mask, out)
        c_fb = np.exp(-((np.minimum(fb, 1e6) / fb_thr) ** 2))
        conf = np.where(agree, c_fb * (0.75 + 0.25 * np.exp(-((d / agree_px) ** 2))), 0.7 * c_fb)
        conf = np.where(use_anchor, np.where(lk_ok, 0.35, 0.3), conf)
        conf = np.where(neither, 0.15, conf)
        # 5. appearance and mask: visible when the final position still looks like the point
        looks = _ncc(gray, out, look)
        # On a texture-less surface the look says nothing (its patch is noise): on the mask is visible.
        vis = ((looks >= cfg.ncc_threshold) | ~ctx.textured) & _inside(mask, out)
        conf = conf * np.clip(0.5 + 0.5 * (looks - cfg.ncc_threshold) / (1 - cfg.ncc_threshold), 0.5, 1.0)
        conf = np.where(vis, conf, np.minimum(conf, 0.1))
        # Refresh a look only where the point is trusted, so a hidden point is recognised by its
        # old look when it comes back.
        trusted = vis & lk_ok & (conf >= 0.5)
        if trusted.any():
            look = look.copy()
            look[trusted] = _patches(gray, out[trusted], cfg.patch)
        # A point that drifted slowly keeps passing the frame-to-frame checks but no longer looks
        # like itself in frame 0 (rotations lower this too, hence only a factor of 1/2).
        conf = np.where(ctx.textured & (_ncc(gray, out, ctx.first_look) < cfg.ncc_first_threshold), 0.5 * conf, conf)
        return out, conf, vis, look


@dataclass
class _Context:
    """What every frame of one sequence needs: the support side and per-keypoint constants."""

    support_xy: np.ndarray  # [N, 2] float64
    support_features: Features
    upscale: float  # SIFT resize factor
    scale: float  # frame size / 256: thresholds are set at 256 px
    textured: np.ndarray  # [N] bool: enough texture at the support point for LK and looks
    first_look: np.ndarray  # [N, P, P] the points' patches in frame 0
    silhouette: "_Silhouette | None"


class StaticEstimator(LKTracker):
    """The do-nothing baseline: the keypoints registered to frame 0, held still. Registry name: ``static``.

    Every accuracy number of the tracker is reported beside this one (DESIGN.md §6).
    """

    name = "static"

    def estimate(self, support: Support, frames, masks=None) -> TrackResult:
        st = self._start(support, frames, masks)
        kp = st.support.keypoints
        t = len(st.frames)
        xy = np.repeat(st.xy[:1], t, 0)
        conf = np.repeat(st.conf[:1], t, 0)
        vis = np.repeat(st.vis[:1], t, 0)
        info = {"registration": st.registration.to_dict(), "sift_upscale": st.upscale}
        return TrackResult(xy.astype(np.float32), np.clip(conf, 0, 1), vis, kp.names, kp.edges, self.name, info)
