"""Jobs: one entry point that runs a job folder, for the CLI, the server's worker and tests.

A job folder holds ``job.json`` (``{"kind": ..., "settings": {...}, "inputs": {role: file}}``),
its input files under ``inputs/``, checkpoints under ``checkpoints/``, and the results:
``model.pt`` (the 4D model), ``sequence/`` (PLY per frame + sequence.json), previews and
``metrics.json``. Running a job folder again resumes from its checkpoints.

Settings are declared once here (:data:`SETTINGS`), with types, ranges and defaults, so the CLI
and the server validate them the same way and the server can publish them.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

from .events import EventSink, ignore

JOB_FILE = "job.json"


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
_PROGRESS = (
    Setting("snapshot_every", int, 50, 1, 100_000, help="steps between live snapshots"),
    Setting("checkpoint_every", int, 50, 1, 100_000, help="steps between checkpoints (resume points)"),
)
_RUN = (
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
        Setting("zero123", str, "zero123-xl", help="Zero-1-to-3 model: registered name, hub id or folder"),
        Setting("svd", str, "", help="video model: registered name, hub id or folder ('': from the preset)"),
        Setting("svd_steps", int, 25, 1, 200, help="video denoising steps"),
        Setting("svd_size", int, 512, 64, 1024, help="video generation size in pixels (DG4D: 512)"),
        Setting("motion_bucket", int, 127, 1, 255, help="SVD's motion amount (higher: more motion)"),
        Setting("dynamic_sds", bool, True, help="novel-view SDS in the dynamic stage (DG4D)"),
    )
    + _KEYPOINTS
    + _LOSSES
    + _RUN,
    "animate": (
        Setting("up_axis", str, "y", choices=("y", "z"), help="the PLY's up axis (z for Blender exports)"),
        Setting("reference_elevation", float, 0.0, -89.0, 89.0, help="the PLY's view matching the video (degrees)"),
        Setting("reference_azimuth", float, 0.0, -360.0, 360.0, help="the PLY's view matching the video (degrees)"),
        Setting("iterations", int, 500, 1, 100_000, help="dynamic-stage steps"),
        Setting("frames", int, 14, 2, 64, help="frames sampled from the video"),
    )
    + _KEYPOINTS
    + _LOSSES
    + _RUN,
}

_IMAGE = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
_VIDEO = (".mp4", ".mov", ".avi", ".webm", ".mkv", ".gif")

# Input files per job kind: role -> (required, accepted suffixes).
INPUTS: dict[str, dict[str, tuple[bool, tuple[str, ...]]]] = {
    "demo": {},
    "generate": {"image": (True, _IMAGE), "video": (False, _VIDEO), "keypoints": (False, (".json",))},
    "animate": {"ply": (True, (".ply",)), "video": (True, _VIDEO), "keypoints": (False, (".json",))},
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


def write_job(job_dir: str | Path, kind: str, settings: dict | None = None, inputs: dict[str, str] | None = None) -> Path:
    """Create a job folder (inputs must already be under ``job_dir/inputs``); returns job.json."""
    job_dir = Path(job_dir)
    spec = {"kind": kind, "settings": validate_settings(kind, settings), "inputs": dict(inputs or {})}
    _check_inputs(job_dir, kind, spec["inputs"])
    job_dir.mkdir(parents=True, exist_ok=True)
    path = job_dir / JOB_FILE
    path.write_text(json.dumps(spec, indent=1))
    return path


def _check_inputs(job_dir: Path, kind: str, inputs: dict[str, str]) -> None:
    roles = INPUTS[kind]
    for role in inputs:
        if role not in roles:
            raise JobError(f"a {kind} job takes no {role!r} input; it takes: {', '.join(roles) or 'none'}")
    for role, (required, _) in roles.items():
        if required and role not in inputs:
            raise JobError(f"a {kind} job needs an {role!r} input")
    for role, name in inputs.items():
        if Path(name).name != name or not (job_dir / "inputs" / name).is_file():
            raise JobError(f"input {role!r}: {name!r} is not a file in the job's inputs/ folder")
        suffixes = roles[role][1]
        if Path(name).suffix.lower() not in suffixes:
            raise JobError(f"input {role!r}: {name!r} should be one of {', '.join(suffixes)}")


def run_job(job_dir: str | Path, emit: EventSink = ignore, should_stop: Callable[[], bool] = lambda: False) -> dict:
    """Run (or resume) the job in ``job_dir``; returns its summary (``status``: finished/stopped)."""
    job_dir = Path(job_dir)
    try:
        spec = json.loads((job_dir / JOB_FILE).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise JobError(f"{job_dir}: no readable {JOB_FILE} ({exc})") from None
    kind = spec.get("kind")
    settings = validate_settings(kind, spec.get("settings"))
    _check_inputs(job_dir, kind, spec.get("inputs", {}))
    return RUNNERS[kind](job_dir, settings, spec.get("inputs", {}), emit, should_stop)


def _run_demo(job_dir: Path, settings: dict, inputs: dict, emit: EventSink, should_stop) -> dict:
    from .demo import DemoConfig, run_demo

    cfg = DemoConfig(motion=settings["motion"], seed=settings["seed"], gaussians=settings["gaussians"], frames=settings["frames"])
    cfg.previews = settings["previews"]
    cfg.dynamic = replace(
        cfg.dynamic,
        iterations=settings["iterations"],
        lambda_kml=settings["lambda_kml"],
        lambda_scl=settings["lambda_scl"],
        kml_robust_scale=settings["kml_robust_scale"],
        seed=settings["seed"],
        snapshot_every=settings["snapshot_every"],
        checkpoint_every=settings["checkpoint_every"],
    )
    _, metrics = run_demo(job_dir, cfg, emit=emit, should_stop=should_stop)
    return metrics


def _run_generate(job_dir: Path, settings: dict, inputs: dict, emit: EventSink, should_stop) -> dict:
    from .image_to_4d import generate

    return generate(job_dir, settings, inputs, emit, should_stop)


def _run_animate(job_dir: Path, settings: dict, inputs: dict, emit: EventSink, should_stop) -> dict:
    from .image_to_4d import animate

    return animate(job_dir, settings, inputs, emit, should_stop)


RUNNERS: dict[str, Callable[..., dict]] = {"demo": _run_demo, "generate": _run_generate, "animate": _run_animate}

