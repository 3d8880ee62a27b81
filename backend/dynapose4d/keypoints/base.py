"""The keypoint interface: support keypoints, tracking results, the estimator base class.

A *support* is one image with N annotated keypoints (the one-shot example of category-agnostic
pose estimation); an estimator finds the same N points in every frame of a driving video.

Conventions (DESIGN.md §4):
- Pixel coordinates are continuous, origin at the image's top-left corner, the centre of pixel
  (row i, column j) at (x, y) = (j + 0.5, i + 0.5). Arrays of points are ``float32 [..., 2]``
  holding (x, y).
- Images are ``(H, W, 3)`` RGB, float in [0, 1] or uint8; masks are ``(H, W)`` (nonzero =
  foreground).
- Frame index tau runs over 0..T-1; frame 0 is the frame the support is registered to.

JSON schema of a support-keypoint set (``SupportKeypoints.save`` writes it,
:func:`parse_keypoints_json` and ``SupportKeypoints.load`` read it)::

    {
      "image_size": [256, 256],                               # optional: [width, height]
      "keypoints": [                                          # 1..100 entries, in order
        {"name": "head", "xy": [120.5, 40.0], "visible": true},
        {"name": "tail", "xy": [30.0, 200.25]},               # name and visible are optional
        ...
      ],
      "edges": [[0, 1], ["head", "tail"]]                     # optional skeleton: indices or names
    }

``xy`` are pixels in the convention above and must lie inside ``[0, width] x [0, height]``.
Any violation raises :class:`KeypointError` (a ValueError) naming the offending entry.
"""

from __future__ import annotations

import abc
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Sequence

import numpy as np

from ..imaging.pixels import PixelError, as_mask, as_rgb

MAX_KEYPOINTS = 100
MAX_EDGES = 10 * MAX_KEYPOINTS
MAX_KEYPOINTS_JSON_BYTES = 1024 * 1024
MAX_IMAGE_SIDE = 65535


class KeypointError(ValueError):
    """Bad keypoint input: malformed JSON, points outside the image, a wrong count, bad shapes."""


# ---------------------------------------------------------------------------------------------
# images


def as_rgb_float(image, what: str = "image") -> np.ndarray:
    """:func:`dynapose4d.imaging.pixels.as_rgb`, raising :class:`KeypointError` (the estimators' error)."""
    try:
        return as_rgb(image, what)
    except PixelError as exc:
        raise KeypointError(str(exc)) from None


def as_bool_mask(mask, shape: tuple[int, int], what: str = "mask") -> np.ndarray | None:
    """``(H, W)`` bool foreground mask (:func:`dynapose4d.imaging.pixels.as_mask` > 0.5), or None passed through."""
    try:
        m = as_mask(mask, shape, what)
    except PixelError as exc:
        raise KeypointError(str(exc)) from None
    return None if m is None else m > 0.5


# ---------------------------------------------------------------------------------------------
# support keypoints


def _check_edges(edges, n: int) -> np.ndarray:
    edges = np.asarray(edges, dtype=np.int64).reshape(-1, 2) if len(edges) else np.zeros((0, 2), np.int64)
    bad = (edges < 0) | (edges >= n)
    if bad.any():
        raise KeypointError(f"skeleton edge {edges[bad.any(1)][0].tolist()} refers to a keypoint outside 0..{n - 1}")
    if (edges[:, 0] == edges[:, 1]).any():
        raise KeypointError(f"skeleton edge {edges[edges[:, 0] == edges[:, 1]][0].tolist()} joins a keypoint to itself")
    return edges


@dataclass
class SupportKeypoints:
    """N support keypoints on one image.

    Attributes:
        xy: ``float32 [N, 2]`` pixel positions (x, y) in our convention.
        visible: ``bool [N]``; an invisible support point is carried along but never tracked.
        names: N names (default ``kp00``, ``kp01``, ...).
        edges: ``int64 [E, 2]`` skeleton edges, indices into the keypoints.
        image_size: ``(width, height)`` of the image the positions refer to, or None; when
            given, every point must lie inside ``[0, width] x [0, height]``.
    """

    xy: np.ndarray
    visible: np.ndarray | None = None
    names: Sequence[str] | None = None
    edges: np.ndarray | None = None
    image_size: tuple[int, int] | None = None

    def __post_init__(self):
        xy = np.asarray(self.xy, dtype=np.float32)
        if xy.ndim != 2 or xy.shape[1] != 2:
            raise KeypointError(f"keypoints must be an [N, 2] array of (x, y) pixels; got shape {xy.shape}")
        n = len(xy)
        if not 1 <= n <= MAX_KEYPOINTS:
            raise KeypointError(f"the number of keypoints must be within 1..{MAX_KEYPOINTS}; got {n}")
        if not np.isfinite(xy).all():
            raise KeypointError(f"keypoint {int(np.flatnonzero(~np.isfinite(xy).all(1))[0])} has a non-finite position")
        names = tuple(f"kp{i:02d}" for i in range(n)) if self.names is None else tuple(str(s) for s in self.names)
        if len(names) != n:
            raise KeypointError(f"got {len(names)} keypoint names for {n} keypoints")
        if len(set(names)) != n:
            dup = next(s for s in names if names.count(s) > 1)
            raise KeypointError(f"keypoint name {dup!r} is used twice; names must be unique")
        visible = np.ones(n, bool) if self.visible is None else np.asarray(self.visible, dtype=bool).reshape(-1)
        if len(visible) != n:
            raise KeypointError(f"got {len(visible)} visibility flags for {n} keypoints")
        if self.image_size is not None:
            w, h = (int(v) for v in self.image_size)
            self.image_size = (w, h)
            outside = (xy[:, 0] < 0) | (xy[:, 0] > w) | (xy[:, 1] < 0) | (xy[:, 1] > h)
            if outside.any():
                i = int(np.flatnonzero(outside)[0])
                raise KeypointError(
                    f"keypoint {i} ({names[i]!r}) at ({xy[i, 0]:.1f}, {xy[i, 1]:.1f}) lies outside the "
                    f"{w}x{h} image; positions are pixels from the top-left corner"
                )
        self.xy, self.visible, self.names = xy, visible, names
        self.edges = _check_edges([] if self.edges is None else self.edges, n)

    @property
    def n(self) -> int:
        return len(self.xy)

    def to_dict(self) -> dict:
        """The JSON object of the module docstring's schema."""
        out: dict = {
            "keypoints": [
                {"name": name, "xy": [float(x), float(y)], "visible": bool(v)}
                for name, (x, y), v in zip(self.names, self.xy.tolist(), self.visible)
            ],
            "edges": self.edges.tolist(),
        }
        if self.image_size is not None:
            out["image_size"] = list(self.image_size)
        return out

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path: str | Path, image_size: tuple[int, int] | None = None) -> "SupportKeypoints":
        return parse_keypoints_json(Path(path).read_bytes(), image_size=image_size)


def _number_pair(value, where: str) -> list[float]:
    ok = isinstance(value, (list, tuple)) and len(value) == 2
    ok = ok and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)
    if not ok:
        raise KeypointError(f"{where} must be a pair of finite numbers [x, y]; got {value!r}")
    return [float(value[0]), float(value[1])]


def parse_keypoints_json(source, image_size: tuple[int, int] | None = None) -> SupportKeypoints:
    """Support keypoints from JSON text (or the already-decoded object) in the module docstring's schema.

    ``image_size = (width, height)`` of the support image: when given, points outside it are an
    error, and so is a different ``image_size`` written in the file.
    """
    if isinstance(source, (str, bytes)):
        from ..io.jsontext import JsonTextError, load_json

        try:
            obj = load_json(source, "keypoints JSON", max_bytes=MAX_KEYPOINTS_JSON_BYTES)
        except JsonTextError as e:
            raise KeypointError(str(e)) from None
    else:
        obj = source
    if not isinstance(obj, dict) or "keypoints" not in obj:
        raise KeypointError(
            'keypoints JSON must be an object with a "keypoints" list, e.g. {"keypoints": [{"xy": [x, y]}]}'
        )
    entries = obj["keypoints"]
    if not isinstance(entries, list):
        raise KeypointError(f'"keypoints" must be a list; got {type(entries).__name__}')
    if not 1 <= len(entries) <= MAX_KEYPOINTS:
        raise KeypointError(f"the number of keypoints must be within 1..{MAX_KEYPOINTS}; got {len(entries)}")
    xy, names, visible = [], [], []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or "xy" not in entry:
            raise KeypointError(f'keypoint {i} must be an object with an "xy" pair; got {entry!r}')
        xy.append(_number_pair(entry["xy"], f"keypoint {i} xy"))
        names.append(str(entry.get("name", f"kp{i:02d}")))
        vis = entry.get("visible", True)
        if not isinstance(vis, bool):
            raise KeypointError(f'keypoint {i} "visible" must be true or false; got {vis!r}')
        visible.append(vis)
    file_size = obj.get("image_size")
    if file_size is not None:
        file_size = tuple(int(v) for v in _number_pair(file_size, '"image_size"'))
        if not all(1 <= v <= MAX_IMAGE_SIDE for v in file_size):
            raise KeypointError(f'"image_size" must be [width, height] in pixels, each 1..{MAX_IMAGE_SIDE}; got {list(file_size)}')
        if image_size is not None and tuple(image_size) != file_size:
            raise KeypointError(
                f"keypoints JSON was made for a {file_size[0]}x{file_size[1]} image but the support image is "
                f"{image_size[0]}x{image_size[1]}"
            )
    edges = []
    raw_edges = obj.get("edges", [])
    if not isinstance(raw_edges, list):
        raise KeypointError(f'"edges" must be a list of [a, b] pairs; got {raw_edges!r}')
    if len(raw_edges) > MAX_EDGES:
        raise KeypointError(f"the skeleton has {len(raw_edges)} edges; at most {MAX_EDGES} are allowed")
    for e in raw_edges:
        if not (isinstance(e, (list, tuple)) and len(e) == 2):
            raise KeypointError(f"skeleton edge {e!r} must be a pair [a, b] of keypoint indices or names")
        pair = []
        for end in e:
            if isinstance(end, str):
                if end not in names:
                    raise KeypointError(f"skeleton edge {list(e)!r} names an unknown keypoint {end!r}")
                pair.append(names.index(end))
            elif isinstance(end, int) and not isinstance(end, bool):
                if not 0 <= end < len(names):
                    raise KeypointError(f"skeleton edge {list(e)!r}: index {end} is not a keypoint index (0..{len(names) - 1})")
                pair.append(end)
            else:
                raise KeypointError(f"skeleton edge {e!r} must be a pair [a, b] of keypoint indices or names")
        edges.append(pair)
    return SupportKeypoints(np.array(xy, np.float32), np.array(visible), names, edges, image_size or file_size)


@dataclass
class Support:
    """The one-shot support: an image and its keypoints.

    Attributes:
        image: ``(H, W, 3)`` RGB, float [0, 1] or uint8 (stored as float32).
        keypoints: the support keypoints on this image.
        mask: optional ``(H, W)`` foreground mask of the image.
    """

    image: np.ndarray
    keypoints: SupportKeypoints
    mask: np.ndarray | None = None

    def __post_init__(self):
        self.image = as_rgb_float(self.image, "support image")
        h, w = self.image.shape[:2]
        self.mask = as_bool_mask(self.mask, (h, w), "support mask")
        kp = self.keypoints
        if kp.image_size is None:
            # Re-validate against this image: positions outside it are an error, not a clamp.
            kp = SupportKeypoints(kp.xy, kp.visible, kp.names, kp.edges, image_size=(w, h))
        elif tuple(kp.image_size) != (w, h):
            raise KeypointError(
                f"support keypoints refer to a {kp.image_size[0]}x{kp.image_size[1]} image but the support "
                f"image is {w}x{h}; rescale the keypoints or pass the matching image"
            )
        self.keypoints = kp


# ---------------------------------------------------------------------------------------------
# results


@dataclass
class TrackResult:
    """Keypoints of a T-frame sequence.

    Attributes:
        xy: ``float32 [T, N, 2]`` pixel positions in our convention.
        confidence: ``float32 [T, N]`` in [0, 1]; low values mark points whose checks failed.
        visible: ``bool [T, N]``; False where the estimator believes the point is hidden or lost
            (its position is then a prediction, not a measurement).
        names, edges: as in :class:`SupportKeypoints`.
        estimator: the registry name of the estimator that produced it.
        info: JSON-able details (e.g. the support-to-frame-0 registration report).
    """

    xy: np.ndarray
    confidence: np.ndarray
    visible: np.ndarray
    names: Sequence[str]
    edges: np.ndarray
    estimator: str = ""
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        self.xy = np.asarray(self.xy, np.float32)
        t, n = self.xy.shape[:2]
        if self.xy.shape != (t, n, 2):
            raise KeypointError(f"TrackResult.xy must be [T, N, 2]; got {self.xy.shape}")
        self.confidence = np.asarray(self.confidence, np.float32)
        self.visible = np.asarray(self.visible, bool)
        for name, arr in (("confidence", self.confidence), ("visible", self.visible)):
            if arr.shape != (t, n):
                raise KeypointError(f"TrackResult.{name} must be [T, N] = [{t}, {n}]; got {arr.shape}")
        if ((self.confidence < 0) | (self.confidence > 1)).any():
            raise KeypointError("TrackResult.confidence must lie in [0, 1]")
        self.names = tuple(self.names)
        if len(self.names) != n:
            raise KeypointError(f"TrackResult has {n} keypoints but {len(self.names)} names")
        self.edges = _check_edges(self.edges, n)

    @property
    def num_frames(self) -> int:
        return self.xy.shape[0]

    def save(self, path: str | Path) -> None:
        """Write an ``.npz``: the arrays plus a JSON string with names, estimator and info."""
        meta = json.dumps({"names": list(self.names), "estimator": self.estimator, "info": self.info})
        with open(path, "wb") as f:
            np.savez(f, xy=self.xy, confidence=self.confidence, visible=self.visible, edges=self.edges,
                     meta=np.array(meta))

    @classmethod
    def load(cls, path: str | Path) -> "TrackResult":
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            return cls(z["xy"], z["confidence"], z["visible"], meta["names"], z["edges"], meta["estimator"],
                       meta["info"])


# ---------------------------------------------------------------------------------------------
# estimators


def as_frames(frames, masks=None) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
    """Validate a sequence: frames as a list of ``(H, W, 3)`` float32, masks as ``(H, W)`` bool or None.

    ``frames``: ``[T, H, W, 3]`` array or a sequence of images; ``masks``: None, ``[T, H, W]`` or a
    sequence of T masks (entries may be None).
    """
    frames = [as_rgb_float(f, f"frame {i}") for i, f in enumerate(frames)]
    if not frames:
        raise KeypointError("the driving video has no frames")
    shape = frames[0].shape
    for i, f in enumerate(frames):
        if f.shape != shape:
            raise KeypointError(
                f"frame {i} is {f.shape[1]}x{f.shape[0]} but frame 0 is {shape[1]}x{shape[0]}; resize the video"
            )
    if masks is None:
        return frames, [None] * len(frames)
    masks = list(masks)
    if len(masks) != len(frames):
        raise KeypointError(f"got {len(masks)} masks for {len(frames)} frames")
    return frames, [as_bool_mask(m, shape[:2], f"mask {i}") for i, m in enumerate(masks)]


class KeypointEstimator(abc.ABC):
    """Finds the support's keypoints in every frame of a sequence.

    Subclasses set ``name`` (their registry key) and ``needs_weights`` (True when they load a
    learned model, which may be missing on a user's machine), take their configuration as
    constructor arguments, and implement :meth:`estimate`.
    """

    name: ClassVar[str]
    needs_weights: ClassVar[bool] = False

    @abc.abstractmethod
    def estimate(self, support: Support, frames, masks=None) -> TrackResult:
        """Keypoints of ``support`` in each of T ``frames``.

        Args:
            support: the one-shot support (image + keypoints).
            frames: ``[T, H, W, 3]`` RGB (float [0, 1] or uint8), or a sequence of such images.
            masks: optional foreground masks, ``[T, H, W]`` or a sequence (None entries allowed).

        Returns:
            A :class:`TrackResult` with T rows in the frames' pixel coordinates.
        """
