"""A job's animation as plain arrays: what the add-on fetches from the backend, before any bpy.

The backend's deformation is continuous in time, so the add-on asks for ``frame_count`` frames
at the scene's own frame rate (``Sampling``), not for the T driving-video frames. The frames
(wire format, ``format.wire``) and the keypoint tracks (``GET /v1/jobs/{id}/keypoints``) of one
snapshot are assembled into a :class:`Sequence`; everything stays in backend coordinates (+Y up)
until the scene side converts it with ``format.coords``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from . import sh
from .coords import BACKEND_TO_BLENDER
from .skinned import Skinned
from .wire import Frame

TIME_MODES = ("clamp", "loop", "pingpong")
DTYPES = ("float32", "float16")
# The server's limits (backend/dynapose4d/server/frames.py); asking beyond them gets a 422.
MIN_FPS, MAX_FPS = 0.01, 1000.0
MAX_FRAME_COUNT = 10_000


class SequenceError(ValueError):
    """Frames and tracks that do not belong together; the message says what differs."""


@dataclass(frozen=True)
class Sampling:
    """Which frames to ask for: ``frame_count`` frames at ``fps``, index i at i / fps seconds.

    ``mode``: what happens past the clip's end (clamp holds the last pose, loop restarts,
    pingpong plays backwards). ``dtype``: the wire dtype of the Gaussian fields.
    """

    fps: float
    frame_count: int
    mode: str = "clamp"
    dtype: str = "float32"

    def __post_init__(self):
        if not (math.isfinite(self.fps) and MIN_FPS <= self.fps <= MAX_FPS):
            raise ValueError(f"fps must be within {MIN_FPS:g}..{MAX_FPS:g}, got {self.fps}")
        if not 1 <= self.frame_count <= MAX_FRAME_COUNT:
            raise ValueError(f"frame_count must be within 1..{MAX_FRAME_COUNT}, got {self.frame_count}")
        if self.mode not in TIME_MODES:
            raise ValueError(f"mode must be one of {', '.join(TIME_MODES)}, got {self.mode!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")

    @classmethod
    def for_duration(cls, fps: float, duration_s: float, **kwargs) -> "Sampling":
        """Frames covering ``duration_s`` seconds at ``fps`` (at least one; both ends included
        once, so 2 s at 24 fps are 48 frames: 0, 1/24, ..., 47/24 s)."""
        return cls(fps=float(fps), frame_count=max(1, min(MAX_FRAME_COUNT, round(duration_s * fps))), **kwargs)

    def for_clip(self, clip_duration_s: float) -> "Sampling":
        """These settings over a clip's own length: frames at ``fps`` from its first pose to its
        last, both included (the backend's default frame count: 0.5 s at 24 fps are 13 frames)."""
        count = int(math.floor(max(0.0, clip_duration_s) * self.fps + 1e-6)) + 1
        return Sampling(self.fps, max(2, min(MAX_FRAME_COUNT, count)), self.mode, self.dtype)

    def query(self) -> dict:
        return {"fps": repr(float(self.fps)), "frame_count": self.frame_count, "mode": self.mode}


@dataclass
class Sequence:
    """One snapshot sampled at ``frame_count`` times. Backend coordinates (+Y up).

    ``positions [F, N, 3]``, ``scales [F, N, 3]`` (activated standard deviations);
    ``rotations [N, 4]`` (w x y z), ``opacities [N]`` in [0, 1] and ``colors [N, 3]`` (sRGB in
    [0, 1]) are those of frame 0 (the deformation moves, turns and stretches Gaussians but does
    not change their colour or opacity); ``frame_rotations [F, N, 4]`` are every frame's
    rotations (None: frame 0's at every frame, see :meth:`rotations_of`); ``sh_rest [N, K, 3]``
    the view-dependent SH coefficients (None: degree 0). ``keypoints [F, P, 3]`` with ``names [P]``,
    ``valid [P]`` (False where a keypoint could not be lifted to 3D) and the skeleton ``edges``.
    ``camera``: the reference view (``c2w`` 4x4 OpenGL camera-to-world, ``fovy_deg``, ``width``,
    ``height``).
    """

    positions: np.ndarray
    scales: np.ndarray
    rotations: np.ndarray
    opacities: np.ndarray
    colors: np.ndarray
    keypoints: np.ndarray
    names: list[str]
    edges: list[tuple[int, int]]
    valid: np.ndarray
    camera: dict
    sampling: Sampling
    times: np.ndarray  # [F] normalised time t in [0, 1] of each frame
    snapshot: dict = field(default_factory=dict)
    skinned: "Skinned | None" = None  # the snapshot's skinned mesh, when it was fetched
    frame_rotations: np.ndarray | None = None  # [F, N, 4] w x y z
    sh_rest: np.ndarray | None = None  # [N, K, 3]

    def rotations_of(self) -> np.ndarray:
        """Every frame's rotations ``[F, N, 4]`` (frame 0's repeated where only those are known)."""
        if self.frame_rotations is not None:
            return self.frame_rotations
        return np.broadcast_to(self.rotations, (self.frame_count, *self.rotations.shape))

    @property
    def sh_degree(self) -> int:
        return 0 if self.sh_rest is None else sh.degree_of(int(self.sh_rest.shape[1]))

    @property
    def frame_count(self) -> int:
        return int(self.positions.shape[0])

    @property
    def count(self) -> int:
        return int(self.positions.shape[1])

    @property
    def version(self) -> int | None:
        return self.snapshot.get("version")


def assemble(frames: list[Frame], tracks: dict, sampling: Sampling) -> Sequence:
    """A :class:`Sequence` from the decoded frames ``0..F-1`` and the keypoint-tracks JSON of the
    same snapshot, sampled the same way. Raises :class:`SequenceError` when they disagree."""
    # 1. The frames: complete, in order, one snapshot, one Gaussian count.
    if len(frames) != sampling.frame_count:
        raise SequenceError(f"got {len(frames)} frames, expected {sampling.frame_count}")
    for i, frame in enumerate(frames):
        if frame.index != i:
            raise SequenceError(f"frame {i} says it is frame {frame.index}")
        if frame.count != frames[0].count:
            raise SequenceError(f"frame {i} has {frame.count} Gaussians, frame 0 has {frames[0].count}")
    versions = {f.snapshot_version for f in frames} | {tracks.get("snapshot", {}).get("version")}
    if len(versions) != 1:
        raise SequenceError(f"frames and keypoints come from different snapshots {sorted(map(str, versions))}")
    # 2. The tracks: the same sampling, one position per keypoint per frame.
    if tracks.get("frame_count") != sampling.frame_count or not math.isclose(float(tracks.get("fps", 0)), sampling.fps):
        raise SequenceError(
            f"keypoint tracks are sampled at {tracks.get('frame_count')} frames / {tracks.get('fps')} fps, "
            f"the frames at {sampling.frame_count} / {sampling.fps}"
        )
    names = [str(n) for n in tracks["names"]]
    keypoints = np.asarray(tracks["positions"], dtype=np.float32).reshape(sampling.frame_count, len(names), 3)
    edges = [(int(a), int(b)) for a, b in tracks.get("edges", [])]
    if any(not (0 <= a < len(names) and 0 <= b < len(names)) for a, b in edges):
        raise SequenceError(f"skeleton edges {edges} refer to keypoints outside 0..{len(names) - 1}")
    first = frames[0]
    return Sequence(
        positions=np.stack([f.positions for f in frames]).astype(np.float32, copy=False),
        scales=np.stack([f.scales for f in frames]).astype(np.float32, copy=False),
        rotations=np.asarray(first.rotations, dtype=np.float32),
        frame_rotations=np.stack([f.rotations for f in frames]).astype(np.float32, copy=False),
        sh_rest=None if first.sh_rest is None else np.asarray(first.sh_rest, dtype=np.float32),
        opacities=np.asarray(first.opacities, dtype=np.float32),
        colors=np.asarray(first.colors, dtype=np.float32),
        keypoints=keypoints,
        names=names,
        edges=edges,
        valid=np.asarray(tracks.get("valid", [True] * len(names)), dtype=bool),
        camera=dict(tracks.get("camera") or {}),
        sampling=sampling,
        times=np.asarray(tracks.get("times", [f.header.get("frame", {}).get("time", 0.0) for f in frames]), dtype=np.float64),
        snapshot=dict(first.header.get("snapshot") or tracks.get("snapshot") or {}),
    )


# -- colour and rotation, for Blender ---------------------------------------------------------------


def srgb_to_linear(rgb: np.ndarray) -> np.ndarray:
    """sRGB-encoded values in [0, 1] to linear light (IEC 61966-2-1).

    The backend's colours are sRGB values (it fits sRGB images). Blender's colour attributes,
    shader colours and glTF's COLOR_0 are all linear, so the add-on stores linear values.
    """
    rgb = np.clip(np.asarray(rgb, dtype=np.float32), 0.0, 1.0)
    return np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4).astype(np.float32)


def linear_to_srgb(rgb: np.ndarray) -> np.ndarray:
    rgb = np.clip(np.asarray(rgb, dtype=np.float32), 0.0, 1.0)
    return np.where(rgb <= 0.0031308, rgb * 12.92, 1.055 * rgb ** (1 / 2.4) - 0.055).astype(np.float32)


# The change of basis backend -> Blender (format.coords) is +90 degrees about X, as w x y z.
_BASIS_QUAT = np.array([math.sqrt(0.5), math.sqrt(0.5), 0.0, 0.0])


def rotations_to_blender(quats: np.ndarray) -> np.ndarray:
    """Gaussians' orientations ``[..., 4]`` (w x y z, backend frame) in Blender's frame.

    A Gaussian's rotation R maps its own axes into the world (covariance R S^2 R^T); in the new
    world the covariance is C R S^2 R^T C^T, so the rotation is C R: left-multiplied by the
    change of basis C, not conjugated (C R C^T would also turn the Gaussian's own axes).
    """
    quats = np.asarray(quats, dtype=np.float32)
    w, x, y, z = np.moveaxis(quats, -1, 0)
    cw, cx = _BASIS_QUAT[0], _BASIS_QUAT[1]  # C = cw + cx i: its product with q, written out
    out = np.stack([cw * w - cx * x, cw * x + cx * w, cw * y - cx * z, cw * z + cx * y], axis=-1)
    return out.astype(np.float32)


# -- view-dependent colour, for Blender -------------------------------------------------------------


def sh_rest_to_blender(sh_rest: np.ndarray | None) -> np.ndarray | None:
    """SH coefficients ``[N, K, 3]`` of backend-frame colours as Blender-frame ones: the colour
    seen along d in Blender is the one seen along C^T d in the backend."""
    if sh_rest is None or sh_rest.shape[1] == 0:
        return None
    return sh.rotate(sh_rest, BACKEND_TO_BLENDER).astype(np.float32)
