"""Driving videos: where the motion comes from.

A :class:`VideoSource` turns the reference image (and its mask) into a :class:`DrivingVideo`:
T frames on a white background with per-frame foreground masks and the frame rate they really
have. Two sources exist:

- :class:`SVDSource`: Stable Video Diffusion (img2vid 14 frames, img2vid-xt 25 frames) from the
  reference composited on white, via diffusers' ``StableVideoDiffusionPipeline``;
- :class:`FileVideoSource`: a user's video file (decoded with OpenCV's FFmpeg backend) or a
  folder of frames, resampled to T frames, masked (alpha, a segmentation callable, or GrabCut
  seeded by the support image's colours and propagated frame to frame), composited on white
  and framed with one similarity for the whole clip (motion is kept): the one that maps frame 0's
  object onto the support's when a support is given (:mod:`dynapose4d.video.framing`), else a crop
  that scales frame 0's object box to ``fill`` of the frame.

Both sources measure the camera's pan, zoom and roll (:mod:`dynapose4d.video.stabilise`) and record it in
the sidecar; SVD's is removed by default, a user video's when asked. Masks: :mod:`dynapose4d.imaging.masks`.
Registering frame 0 to the input image is the keypoints module's job, not this one's.

Conventions (DESIGN.md §4): frames ``[T, H, W, 3]`` float32 in [0, 1], masks ``[T, H, W]`` in
[0, 1], frame index tau in [0, T-1].
"""

from __future__ import annotations

import abc
import json
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from ..formats import IMAGE_SUFFIXES, VIDEO_SUFFIXES
from ..imaging.images import DEFAULT_FILL, ImageLoadError, load_image
from ..imaging.masks import MaskError, Segmenter, grabcut_sequence, segment_frames
from ..imaging.pixels import PixelError, as_mask, as_rgb, to_uint8
from ..imaging.warp import warp
from .frame_folder import frame_files
from .framing import align_to_support, best_matching_frame
from .masks import anchored_masks, plain_background, segmenter_confidence
from .stabilise import CameraMotion, stabilise_clip, stabilise_video

__all__ = [
    "DrivingVideo",
    "VideoSource",
    "FileVideoSource",
    "VideoError",
    "grabcut_sequence",
    "sample_indices",
    "read_frames",
    "DEFAULT_FRAME_FOLDER_FPS",
]

DEFAULT_FRAME_FOLDER_FPS = 7.0  # assumed (and recorded as assumed) when a frame folder has no fps


class VideoError(ValueError):
    """A driving video cannot be read or used; the message says what to do."""


# -------------------------------------------------------------------------------------------------
# the data


@dataclass
class DrivingVideo:
    """T frames of the object moving, on white, with masks.

    Attributes:
        frames: ``[T, H, W, 3]`` float32 in [0, 1], white background.
        masks: ``[T, H, W]`` float32 in [0, 1], foreground = 1.
        fps: the real frame rate of these T frames (after any resampling).
        source: human-readable description (model and seed, or file and time span).
        meta: settings and provenance (JSON-serialisable).
        confidence: ``[T, H, W]`` float32 in [0, 1], how sure each mask pixel is (a soft trimap:
            :mod:`dynapose4d.video.masks`); None means sure everywhere. The reference losses are
            weighted by it.
    """

    frames: torch.Tensor
    masks: torch.Tensor
    fps: float
    source: str = ""
    meta: dict = field(default_factory=dict)
    confidence: torch.Tensor | None = None

    def __post_init__(self):
        if self.frames.dim() != 4 or self.frames.shape[-1] != 3:
            raise VideoError(f"DrivingVideo: frames must be [T, H, W, 3]; got {tuple(self.frames.shape)}")
        if self.masks.shape != self.frames.shape[:-1]:
            raise VideoError(f"DrivingVideo: masks {tuple(self.masks.shape)} do not match frames {tuple(self.frames.shape)}")
        if not self.fps > 0:
            raise VideoError(f"DrivingVideo: fps must be positive, got {self.fps}")
        if self.confidence is not None and self.confidence.shape != self.masks.shape:
            raise VideoError(f"DrivingVideo: confidence {tuple(self.confidence.shape)} does not match masks {tuple(self.masks.shape)}")

    @property
    def weights(self) -> torch.Tensor:
        """The per-pixel weight of the reference losses: the confidence, or ones."""
        return torch.ones_like(self.masks) if self.confidence is None else self.confidence

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def duration(self) -> float:
        """Seconds from the first to the last frame."""
        return (self.num_frames - 1) / self.fps

    def resampled(self, num_frames: int) -> "DrivingVideo":
        """``num_frames`` frames spanning the same time (nearest frames; fps adjusted)."""
        idx, fps = sample_indices(self.num_frames, self.fps, num_frames)
        meta = dict(self.meta, resampled_from=self.num_frames)
        conf = None if self.confidence is None else self.confidence[idx]
        return DrivingVideo(self.frames[idx], self.masks[idx], fps, self.source, meta, conf)

    def resized(self, size: int) -> "DrivingVideo":
        """Square ``size`` x ``size`` frames (the frames must be square)."""
        t, h, w, _ = self.frames.shape
        if h != w:
            raise VideoError(f"resized: frames are {w}x{h}; only square frames can be resized to {size}x{size}")
        if h == size:
            return self
        interp = cv2.INTER_AREA if size < h else cv2.INTER_LINEAR
        frames = np.stack([cv2.resize(f, (size, size), interpolation=interp) for f in self.frames.numpy()])
        masks = np.stack([cv2.resize(m, (size, size), interpolation=interp) for m in self.masks.numpy()])
        frames, masks = torch.from_numpy(frames).clamp(0, 1), torch.from_numpy(masks).clamp(0, 1)
        conf = None
        if self.confidence is not None:
            conf = torch.from_numpy(np.stack([cv2.resize(c, (size, size), interpolation=interp) for c in self.confidence.numpy()])).clamp(0, 1)
        return DrivingVideo(frames, masks, self.fps, self.source, dict(self.meta), conf)

    def save(self, folder: str | Path) -> Path:
        """``folder/frame_0000.png``..., ``mask_0000.png``..., ``confidence_0000.png``... when
        there is a confidence (8-bit) and ``video.json``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for i, (f, m) in enumerate(zip(self.frames.numpy(), self.masks.numpy())):
            Image.fromarray(to_uint8(f), "RGB").save(folder / f"frame_{i:04d}.png")
            Image.fromarray(to_uint8(m), "L").save(folder / f"mask_{i:04d}.png")
        for i, c in enumerate([] if self.confidence is None else self.confidence.numpy()):
            Image.fromarray(to_uint8(c), "L").save(folder / f"confidence_{i:04d}.png")
        info = {
            "format": "dynapose4d-driving-video",
            "version": 1,
            "num_frames": self.num_frames,
            "height": int(self.frames.shape[1]),
            "width": int(self.frames.shape[2]),
            "fps": self.fps,
            "duration_s": self.duration,  # first to last frame, at the real fps above
            "source": self.source,
            "confidence": self.confidence is not None,
            "meta": self.meta,
        }
        (folder / "video.json").write_text(json.dumps(info, indent=2))
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> "DrivingVideo":
        folder = Path(folder)
        meta_file = folder / "video.json"
        if not meta_file.is_file():
            raise VideoError(f"{folder} has no video.json; it was not written by DrivingVideo.save")
        info = json.loads(meta_file.read_text())
        frames, masks = [], []
        for i in range(info["num_frames"]):
            frames.append(np.asarray(Image.open(folder / f"frame_{i:04d}.png").convert("RGB"), np.float32) / 255.0)
            masks.append(np.asarray(Image.open(folder / f"mask_{i:04d}.png").convert("L"), np.float32) / 255.0)
        frames, masks = torch.from_numpy(np.stack(frames)), torch.from_numpy(np.stack(masks))
        conf = None
        if info.get("confidence"):
            conf = torch.from_numpy(np.stack([np.asarray(Image.open(folder / f"confidence_{i:04d}.png").convert("L"), np.float32) / 255.0
                                              for i in range(info["num_frames"])]))
        return cls(frames, masks, float(info["fps"]), info.get("source", ""), info.get("meta", {}), conf)


def input_rgb(image, what: str) -> np.ndarray:
    """``[H, W, 3|4]`` float32 in [0, 1] (alpha kept), or VideoError naming ``what``."""
    try:
        rgb = as_rgb(image, what)
    except PixelError as exc:
        raise VideoError(str(exc)) from None
    arr = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if arr.shape[-1] == 4:
        return np.concatenate([rgb, as_mask(arr[..., 3], arr.shape[:2])[..., None]], -1)
    return rgb


def input_mask(mask, shape, what: str) -> np.ndarray | None:
    try:
        return as_mask(mask, shape, what)
    except PixelError as exc:
        raise VideoError(str(exc)) from None


def sample_indices(
    num_source: int, source_fps: float, num_frames: int, *, start_s: float = 0.0, end_s: float | None = None
) -> tuple[np.ndarray, float]:
    """Indices of ``num_frames`` frames evenly spread over [start_s, end_s] of a clip, and their fps.

    ``num_source`` frames at ``source_fps``; ``end_s`` defaults to the last frame. The returned
    fps is the real rate of the chosen frames: ``(T - 1) / duration``. Fewer source frames than
    T repeat frames (nearest), and the fps says so by exceeding the source's.
    """
    if num_source < 1:
        raise VideoError("the video has no frames")
    if num_frames < 1:
        raise VideoError(f"num_frames must be >= 1, got {num_frames}")
    if not source_fps > 0:
        raise VideoError(f"the source frame rate must be positive, got {source_fps}")
    last = num_source - 1
    i0 = min(last, max(0, int(round(start_s * source_fps))))
    i1 = last if end_s is None else min(last, int(round(end_s * source_fps)))
    if i1 < i0:
        raise VideoError(f"the time span {start_s}..{end_s} s is empty for a {num_source / source_fps:.2f} s clip")
    idx = np.round(np.linspace(i0, i1, num_frames)).astype(np.int64)
    span = (i1 - i0) / source_fps
    fps = (num_frames - 1) / span if span > 0 and num_frames > 1 else float(source_fps)
    return idx, float(fps)


def read_frames(
    path: str | Path,
    *,
    num_frames: int,
    fps: float | None = None,
    start_s: float = 0.0,
    end_s: float | None = None,
) -> tuple[list[np.ndarray], list[np.ndarray | None], float, dict]:
    """Read ``num_frames`` frames of a video file or a frame folder, evenly over a time span.

    Returns ``(rgb frames [H, W, 3] float32, alphas [H, W] or None, real fps, info)``. For a
    folder the frame rate is ``fps`` (default :data:`DEFAULT_FRAME_FOLDER_FPS`, recorded as
    assumed in ``info``); a video file's own rate is used unless ``fps`` overrides it.
    """
    path = Path(path)
    if not path.exists():
        raise VideoError(f"{path}: no such file or folder")
    if path.is_dir():
        files = frame_files(path)
        if not files:
            raise VideoError(f"{path} holds no image files ({', '.join(IMAGE_SUFFIXES)})")
        source_fps = fps if fps is not None else DEFAULT_FRAME_FOLDER_FPS
        idx, real_fps = sample_indices(len(files), source_fps, num_frames, start_s=start_s, end_s=end_s)
        rgbs, alphas, cache = [], [], {}
        for i in idx:
            if i not in cache:
                try:
                    cache[i] = load_image(files[i])
                except ImageLoadError as exc:
                    raise VideoError(f"frame {i} of {path}: {exc}") from None
            rgbs.append(cache[i].rgb)
            alphas.append(cache[i].alpha)
        shapes = {r.shape for r in rgbs}
        if len(shapes) > 1:
            raise VideoError(f"the frames in {path} differ in size ({sorted(shapes)}); export them at one size")
        info = {"kind": "frames", "source_frames": len(files), "source_fps": source_fps, "fps_assumed": fps is None}
        info["indices"] = idx.tolist()
        return rgbs, alphas, real_fps, info
    # A video file: count frames (container counts can be wrong), then decode the chosen ones.
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise VideoError(
            f"{path} could not be opened as a video by OpenCV's FFmpeg (it reads {', '.join(VIDEO_SUFFIXES)} files "
            "with common codecs); convert it to MP4 (H.264), or export its frames as PNG or JPEG files and pass "
            "the folder (or a .zip of it) with its frame rate (--fps)"
        )
    try:
        file_fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
        count = 0
        while cap.grab():
            count += 1
    finally:
        cap.release()
    if count == 0:
        raise VideoError(f"{path} has no decodable frames")
    source_fps = fps if fps is not None else file_fps
    if not source_fps > 0:
        raise VideoError(f"{path} does not state its frame rate; pass fps=...")
    idx, real_fps = sample_indices(count, source_fps, num_frames, start_s=start_s, end_s=end_s)
    wanted = set(idx.tolist())
    decoded: dict[int, np.ndarray] = {}
    cap = cv2.VideoCapture(str(path))
    try:
        for i in range(int(idx.max()) + 1):
            if not cap.grab():
                break
            if i in wanted:
                ok, bgr = cap.retrieve()
                if ok:
                    decoded[i] = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0
    finally:
        cap.release()
    missing = sorted(wanted - decoded.keys())
    if missing:
        raise VideoError(f"{path}: could not decode frames {missing[:5]}; re-encode the video")
    info = {"kind": "video", "source_frames": count, "source_fps": source_fps, "fps_assumed": False, "indices": idx.tolist()}
    return [decoded[i] for i in idx], [None] * len(idx), real_fps, info


# -------------------------------------------------------------------------------------------------
# sources


class VideoSource(abc.ABC):
    """Makes the driving video for a reference image.

    ``generate(image [S, S, 3] in [0, 1] on white, mask [S, S] or None) -> DrivingVideo`` whose
    frames are in the reference layout (square, the object where the reference has it).
    """

    @abc.abstractmethod
    def generate(self, image: torch.Tensor | np.ndarray, mask: torch.Tensor | np.ndarray | None = None) -> DrivingVideo:
        ...

    def unload(self) -> None:
        """Free what the source holds once its videos are made (a model; nothing by default)."""


class FileVideoSource(VideoSource):
    """Driving video from a user's video file or frame folder.

    Args:
        path: a video file (any format OpenCV's FFmpeg reads) or a folder of frames.
        num_frames: T, the frames the optimisation uses (evenly over the time span).
        fps: frame rate of a frame folder (default 7, recorded as assumed); overrides a file's.
        start_s, end_s: the time span to use (default: the whole clip).
        size, fill: without a support, output frames are ``size`` x ``size`` and the object's box
            in frame 0 is scaled to ``fill`` of the frame; with a support (``generate``'s image and
            mask), the clip is framed like the support instead (:mod:`dynapose4d.video.framing`).
        segmenter: per-frame segmentation callable (``uint8 [H, W, 3] -> [H, W]``, e.g.
            :class:`dynapose4d.imaging.masks.OnnxSegmenter`) instead of GrabCut.
        stabilise: remove the camera's pan, zoom and roll (measured on the background where
            there is one; :mod:`dynapose4d.video.stabilise`) before framing; it is recorded either way.
        grabcut_iterations: GrabCut iterations per frame.
        max_side: masks are computed at most this many pixels wide, then upsampled.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        num_frames: int = 14,
        fps: float | None = None,
        start_s: float = 0.0,
        end_s: float | None = None,
        size: int = 256,
        fill: float = DEFAULT_FILL,
        segmenter: Segmenter | None = None,
        grabcut_iterations: int = 3,
        max_side: int = 384,
        stabilise: bool = False,
    ):
        self.path = Path(path)
        self.num_frames = num_frames
        self.fps = fps
        self.start_s, self.end_s = start_s, end_s
        self.size, self.fill = size, fill
        self.segmenter = segmenter
        self.grabcut_iterations = grabcut_iterations
        self.max_side = max_side
        self.stabilise = stabilise

    def generate(self, image=None, mask=None) -> DrivingVideo:
        """Read, mask, composite on white and crop the clip. ``image``/``mask``: the support
        (reference) whose foreground colours seed frame 0's mask; optional."""
        # 1. Read T frames.
        rgbs, alphas, fps, info = read_frames(
            self.path, num_frames=self.num_frames, fps=self.fps, start_s=self.start_s, end_s=self.end_s
        )
        # 2. Masks and their confidence: alpha, segmenter, or found in every frame (video/masks.py).
        support = None
        if image is not None and mask is not None:
            s_img = input_rgb(image, "the support image")[..., :3]
            support = (s_img, input_mask(mask, s_img.shape[:2], "the support mask"))
        masks, confidence, how, check = self._masks(rgbs, alphas, support)
        # 3. The camera's motion, measured on the frames as filmed (background included), and
        # removed if asked.
        filmed = rgbs
        rgbs, masks, info["stabilisation"] = stabilise_video(rgbs, masks, remove=self.stabilise)
        if info["stabilisation"]["removed"]:
            _, confidence = stabilise_clip(filmed, confidence, CameraMotion.from_dict(info["stabilisation"]))
        rgbs, masks, confidence = list(rgbs), list(masks), list(confidence)
        # 4. Composite on white and frame every frame like frame 0: onto the support when there
        # is one (framing.py beside this module: the support is the source of truth), else by the fill rule.
        info.update({"masks": how, "path": str(self.path), "size": self.size, "fill": self.fill})
        if check is not None:
            info["mask_check"] = check
        if mask is not None:
            filmed_masks = masks
            frames, masks, framing = align_to_support(rgbs, masks, image, mask)
            confidence = np.stack([warp(c, framing.matrix, framing.size, 1.0) for c in confidence])
            info["framing"] = framing.to_dict()
            if not framing.agrees:  # is the input view elsewhere in the clip? (recorded for the user)
                match = best_matching_frame(rgbs, filmed_masks, image, mask)
                if match["frame"] is not None and match["frame"] > 0:
                    match["time_s"] = round(self.start_s + match["frame"] * (1.0 / fps), 3)
                info["support_match"] = match
        else:
            frames, masks, confidence = _crop_clip(rgbs, masks, self.size, self.fill, confidence)
        span = f"{self.start_s:g}-{'end' if self.end_s is None else f'{self.end_s:g}'} s"
        conf = torch.from_numpy(np.clip(confidence, 0, 1).astype(np.float32))
        return DrivingVideo(torch.from_numpy(frames), torch.from_numpy(masks), fps, f"{info['kind']} {self.path} ({span})", info, conf)

    def _masks(self, rgbs, alphas, support):
        """``(masks, confidences, how, check record or None)`` of the frames as filmed."""
        if all(a is not None for a in alphas):
            masks = [a.astype(np.float32) for a in alphas]
            return masks, [np.ones_like(m) for m in masks], "alpha", None
        try:
            if self.segmenter is not None:
                masks, confidence = segmenter_confidence(segment_frames(self.segmenter, rgbs))
                name = getattr(self.segmenter, "path", None)
                return masks, confidence, f"segmenter {Path(name).name}" if name else "segmenter", None
            if support is not None and not plain_background(rgbs, support):
                found = anchored_masks(rgbs, support, iterations=self.grabcut_iterations, max_side=self.max_side)
                return found.masks, found.confidence, found.how, found.to_dict()
            # A plain background: GrabCut carried by the flow is exact there (sure everywhere, as before).
            masks = grabcut_sequence(rgbs, support, iterations=self.grabcut_iterations, max_side=self.max_side)
            return masks, [np.ones_like(m) for m in masks], "grabcut", None
        except MaskError as exc:
            raise VideoError(str(exc)) from None


def align_video(video, support_image, support_mask):
    """A :class:`dynapose4d.video.clip.DrivingVideo` framed like the support, and its :class:`dynapose4d.video.framing.Framing`
    (recorded in the video's ``meta["framing"]``)."""
    from .clip import DrivingVideo

    frames, masks, framing = align_to_support(video.frames.numpy(), video.masks.numpy(), support_image, support_mask)
    meta = dict(video.meta, framing=framing.to_dict())
    return DrivingVideo(torch.from_numpy(frames), torch.from_numpy(masks), video.fps, video.source, meta), framing


def _crop_clip(rgbs: list[np.ndarray], masks: list[np.ndarray], size: int, fill: float, confidence: list[np.ndarray]
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One similarity (crop + scale) for the whole clip, from frame 0's mask box; the confidences
    go with the masks (sure beyond the clip's edges, where the mask's 0 is sure too)."""
    ys, xs = np.nonzero(masks[0] > 0.5)
    if len(xs) == 0:
        raise VideoError("no foreground found in the first frame of the video; give a mask, an RGBA frame folder, or a segmenter")
    x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    s = fill * size / max(x1 - x0, y1 - y0)
    h, w = masks[0].shape
    # Scale whole frames first (area filter when shrinking), then shift with a sub-pixel warp.
    nw, nh = max(1, round(w * s)), max(1, round(h * s))
    sx, sy = nw / w, nh / h
    cx, cy = (x0 + x1) / 2.0 * sx, (y0 + y1) / 2.0 * sy
    # Continuous coordinates: x' = x - cx + size / 2; OpenCV's integer-centre pixels shift alike.
    shift = np.array([[1.0, 0.0, size / 2.0 - cx], [0.0, 1.0, size / 2.0 - cy]], np.float32)
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    frames, out_masks, out_conf = [], [], []
    for rgb, m, c in zip(rgbs, masks, confidence):
        comp = rgb * m[..., None] + (1.0 - m[..., None])
        comp = cv2.resize(comp.astype(np.float32), (nw, nh), interpolation=interp)
        m = cv2.resize(m.astype(np.float32), (nw, nh), interpolation=interp)
        warp = dict(flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        frames.append(cv2.warpAffine(comp, shift, (size, size), borderValue=(1.0, 1.0, 1.0), **warp))
        out_masks.append(cv2.warpAffine(m, shift, (size, size), borderValue=0.0, **warp))
        c = cv2.resize(c.astype(np.float32), (nw, nh), interpolation=interp)
        out_conf.append(cv2.warpAffine(c, shift, (size, size), borderValue=1.0, **warp))
    stack = [np.clip(np.stack(x), 0, 1).astype(np.float32) for x in (frames, out_masks, out_conf)]
    return stack[0], stack[1], stack[2]
