"""What a job can be asked to do: its kinds, their declared settings and input files, and the
presets of ``generate``.

Settings are declared once here (:data:`SETTINGS`), with types, ranges and defaults, so the CLI
(one flag each) and the server (validation, the published spec) agree. Nothing here imports
torch: the CLI builds its parser from these declarations at start-up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..formats import FRAME_ARCHIVE_SUFFIXES, IMAGE_SUFFIXES, KEYPOINTS_SUFFIXES, PLY_SUFFIXES, VIDEO_SUFFIXES


class JobError(ValueError):
    """A job that cannot run as specified (bad settings, missing inputs); the message says why."""


@dataclass(frozen=True)
class Setting:
    name: str
    type: type
    default: Any
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple | None = None
    help: str = ""

    def validate(self, value: Any) -> Any:
        if self.type is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if self.type is int and isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, self.type) or isinstance(value, bool) != (self.type is bool):
            raise JobError(f"setting {self.name!r} must be {self.type.__name__}, got {type(value).__name__} {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise JobError(f"setting {self.name!r} must be finite, got {value!r}")
        if self.minimum is not None and value < self.minimum:
            raise JobError(f"setting {self.name!r} must be >= {self.minimum}, got {value!r}")
        if self.maximum is not None and value > self.maximum:
            raise JobError(f"setting {self.name!r} must be <= {self.maximum}, got {value!r}")
        if self.choices is not None and value not in self.choices:
            raise JobError(f"setting {self.name!r} must be one of {', '.join(map(str, self.choices))}; got {value!r}")
        return value

    def describe(self) -> dict:
        """A JSON-schema-like description (for the server's published spec)."""
        kind = {int: "integer", float: "number", str: "string", bool: "boolean"}[self.type]
        out: dict = {"type": kind, "default": self.default, "description": self.help}
        if self.minimum is not None:
            out["minimum"] = self.minimum
        if self.maximum is not None:
            out["maximum"] = self.maximum
        if self.choices is not None:
            out["enum"] = list(self.choices)
        return out


_LOSSES = (
    Setting("seed", int, 0, 0, 2**31 - 1, help="random seed"),
    Setting("lambda_kml", float, 20000.0, 0.0, 1e9, help="weight of the Keypoint Match Loss"),
    Setting("lambda_scl", float, 100.0, 0.0, 1e9, help="weight of the Spatio-temporal Consistency Loss"),
    Setting("kml_robust_scale", float, 0.02, 0.0, 1.0, help="Cauchy scale of the KML (0: the paper's squared form)"),
)
_KEYPOINTS = (
    Setting("num_keypoints", int, 14, 1, 100, help="automatic support keypoints (when none are given)"),
    Setting("estimator", str, "tracker", choices=("tracker", "static", "poseanything", "cape+tracker"),
            help="keypoint estimator"),
    Setting("keypoint_weights", str, "", help="converted PoseAnything weights folder ('': the default location)"),
)
_VIDEO = (
    Setting("stabilise", str, "auto", choices=("auto", "on", "off"),
            help="remove the driving video's camera pan/zoom/roll (auto: for generated videos, not for yours)"),
    Setting("segmentation_model", str, "", help="an ONNX segmentation model for your video's masks ('': GrabCut)"),
)
_PROGRESS = (
    Setting("snapshot_every", int, 50, 1, 100_000, help="steps between live snapshots"),
    Setting("checkpoint_every", int, 50, 1, 100_000, help="steps between checkpoints (resume points)"),
)
_VIDEO_FPS = Setting("video_fps", float, 0.0, 0.0, 1000.0,
                     help="frame rate of a user's video: needed for a frame folder or zip (0: a file's own rate; 7 for frames)")
_RUN = (
    Setting("frames_per_step", int, 0, 0, 64,
            help="frames rendered per dynamic-stage step (0: the preset's for the device: every frame on CUDA, 4 on a CPU; "
                 "at least the frame count: every frame)"),
    Setting("previews", bool, True, help="render preview GIFs at the end"),
    Setting("device", str, "auto", choices=("auto", "cpu", "cuda"), help="where to run"),
) + _PROGRESS

SETTINGS: dict[str, tuple[Setting, ...]] = {
    "demo": (
        Setting("motion", str, "lamp", choices=("lamp", "swing", "bend"), help="the built-in motion"),
        Setting("iterations", int, 200, 1, 100_000, help="dynamic-stage optimisation steps"),
        Setting("gaussians", int, 4000, 200, 200_000, help="Gaussians in the built-in object"),
        Setting("frames", int, 14, 3, 64, help="driving-video frames"),
        Setting("previews", bool, True, help="render preview GIFs at the end"),
    )
    + _LOSSES
    + _PROGRESS,
    "generate": (
        Setting("preset", str, "standard", choices=("fast", "standard", "high", "low-vram"), help="speed/quality/memory preset"),
        Setting("static_iterations", int, 0, 0, 100_000, help="static-stage steps (0: from the preset)"),
        Setting("iterations", int, 0, 0, 100_000, help="dynamic-stage steps (0: from the preset)"),
        Setting("frames", int, 0, 0, 64, help="driving-video frames (0: the video model's, or 14 for a video)"),
        _VIDEO_FPS,
        Setting("zero123", str, "zero123-xl", help="Zero-1-to-3 model: registered name, hub id or folder"),
        Setting("svd", str, "", help="video model: registered name, hub id or folder ('': from the preset)"),
        Setting("svd_steps", int, 25, 1, 200, help="video denoising steps"),
        Setting("svd_size", int, 512, 64, 1024, help="video generation size in pixels (DG4D: 512)"),
        Setting("motion_bucket", int, 127, 1, 255, help="SVD's motion amount (higher: more motion)"),
        Setting("dynamic_sds", bool, True, help="novel-view SDS in the dynamic stage (DG4D)"),
        Setting("video_candidates", int, 0, 0, 8, help="SVD driving videos generated and scored, the best one used (0: from the preset)"),
        Setting("choose_video", str, "auto", choices=("auto", "ask"),
                help="auto: drive with the best-scored candidate; ask: wait after the candidates until one is chosen"),
        Setting("multiview_keypoints", bool, True, help="refine keypoint depths with CAPE on Zero-1-to-3 views (CAPE estimators, with dynamic_sds)"),
    )
    + _KEYPOINTS
    + _VIDEO
    + _LOSSES
    + _RUN,
    "animate": (
        Setting("up_axis", str, "y", choices=("y", "z"), help="the PLY's up axis (z for Blender exports)"),
        Setting("reference_elevation", float, 0.0, -89.0, 89.0, help="the PLY's view matching the video (degrees)"),
        Setting("reference_azimuth", float, 0.0, -360.0, 360.0, help="the PLY's view matching the video (degrees)"),
        Setting("iterations", int, 500, 1, 100_000, help="dynamic-stage steps"),
        Setting("frames", int, 14, 2, 64, help="frames sampled from the video"),
        _VIDEO_FPS,
    )
    + _KEYPOINTS
    + _VIDEO
    + _LOSSES
    + _RUN,
}

# Input files per job kind: role -> (required, accepted suffixes). A video may also be a folder
# of frames (the CLI), which a zip of frames becomes on arrival (video/frame_folder.py).
_VIDEO_INPUT = VIDEO_SUFFIXES + FRAME_ARCHIVE_SUFFIXES
INPUTS: dict[str, dict[str, tuple[bool, tuple[str, ...]]]] = {
    "demo": {},
    "generate": {"image": (True, IMAGE_SUFFIXES), "video": (False, _VIDEO_INPUT), "keypoints": (False, KEYPOINTS_SUFFIXES)},
    "animate": {"ply": (True, PLY_SUFFIXES), "video": (True, _VIDEO_INPUT), "keypoints": (False, KEYPOINTS_SUFFIXES)},
}


def validate_settings(kind: str, raw: dict | None) -> dict:
    """Defaults filled in, types and ranges checked; unknown keys are an error (typos)."""
    if kind not in SETTINGS:
        raise JobError(f"unknown job kind {kind!r}; choose one of {', '.join(SETTINGS)}")
    raw = dict(raw or {})
    known = {s.name: s for s in SETTINGS[kind]}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise JobError(f"unknown setting(s) for a {kind} job: {', '.join(unknown)}; known: {', '.join(known)}")
    return {name: s.validate(raw[name]) if name in raw else s.default for name, s in known.items()}




@dataclass(frozen=True)
class Preset:
    """A ``generate`` preset: how long each stage runs and how much memory it may use."""

    static_iterations: int
    dynamic_iterations: int
    svd: str  # registry name: 14 frames (svd) or 25 (svd-xt)
    novel_views: int
    frames_per_step: int  # on CUDA; 0 = all frames every step
    low_vram: bool = False
    video_candidates: int = 1  # SVD driving videos generated, scored and chosen from
    # On a CPU the render of a frame costs far more than the rest of a step, so a step renders a
    # few frames, every frame visited in turn (DynamicStage.sample_frames). Measured on the crane
    # of benchmark-dev with 2 cores (docs/benchmarks.md, "Speed of animate"): 4 frames per step instead of all 32.
    cpu_frames_per_step: int = 4

    def frames_per_step_on(self, device_type: str) -> int:
        return self.frames_per_step if device_type == "cuda" else self.cpu_frames_per_step


PRESETS = {
    # Candidates: DG4D's authors pick among seeds by hand; each costs one SVD run (~1 min on a GPU).
    "fast": Preset(300, 300, "svd", 1, 0, video_candidates=1),
    "standard": Preset(500, 500, "svd", 1, 0, video_candidates=3),  # the paper's settings on CUDA (+ candidates)
    "high": Preset(800, 800, "svd-xt", 2, 0, video_candidates=4),
    "low-vram": Preset(500, 500, "svd", 1, 4, low_vram=True, video_candidates=2),
}
