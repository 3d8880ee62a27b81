"""What a job asks the backend for, as plain data: the panel's values become a :class:`JobRequest`.

The names of the settings are the backend's (``dynapose4d.pipeline.SETTINGS``; the server
publishes them at ``GET /v1/kinds``). Zero for a count means "the preset's / the backend's
default" and is not sent. No bpy here: operators copy their properties into
:class:`JobOptions` and call :func:`build_request`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

KINDS = ("generate", "demo", "animate")
PRESETS = ("fast", "standard", "high", "low-vram")
MOTIONS = ("lamp", "swing", "bend")
DEVICES = ("auto", "cpu", "cuda")
# The backend's keypoint estimators (dynapose4d.keypoints.registry); the learned ones read the
# converted PoseAnything weights from ``keypoint_weights`` (a folder on the backend's machine).
ESTIMATORS = ("tracker", "static", "poseanything", "cape+tracker")

# kind -> the option names it sends (option name == backend setting name).
KIND_SETTINGS = {
    "demo": ("motion", "iterations", "gaussians", "frames", "seed", "lambda_kml", "lambda_scl", "previews"),
    "generate": ("preset", "static_iterations", "iterations", "frames", "num_keypoints", "estimator", "keypoint_weights",
                 "seed", "lambda_kml", "lambda_scl", "device", "previews"),
    "animate": ("up_axis", "iterations", "frames", "num_keypoints", "estimator", "keypoint_weights", "seed", "lambda_kml",
                "lambda_scl", "device", "previews"),
}
# Settings where 0 (or an empty text) means "not set": the preset or the backend default decides.
ZERO_IS_DEFAULT = {"static_iterations", "iterations", "frames", "gaussians", "keypoint_weights"}
# kind -> (input role, JobOptions field holding its path, required)
KIND_INPUTS = {
    "demo": (),
    "generate": (("image", "image_path", True), ("video", "video_path", False)),
    "animate": (("ply", "ply_path", True), ("video", "video_path", True)),
}


class JobRequestError(ValueError):
    """The panel's values cannot make a job; the message says which value to fix."""


@dataclass
class JobOptions:
    """The panel's values (plain Python), as the operator copies them."""

    kind: str = "generate"
    preset: str = "standard"
    motion: str = "lamp"
    static_iterations: int = 0
    iterations: int = 0
    frames: int = 0
    gaussians: int = 0
    num_keypoints: int = 14
    estimator: str = "tracker"
    keypoint_weights: str = ""  # converted PoseAnything folder ("" = the backend's default location)
    lambda_kml: float = 20000.0
    lambda_scl: float = 100.0
    seed: int = 0
    device: str = "auto"
    up_axis: str = "z"  # the animate PLY's up axis (z: a PLY exported from Blender)
    previews: bool = False  # preview GIFs are for the command line; Blender shows the result itself
    image_path: str = ""
    video_path: str = ""
    ply_path: str = ""


@dataclass
class JobRequest:
    kind: str
    settings: dict
    files: dict[str, str] = field(default_factory=dict)  # input role -> file path


def build_request(options: JobOptions) -> JobRequest:
    """The request for ``options.kind``: its settings (zeros left to the backend) and files."""
    kind = options.kind
    if kind not in KIND_SETTINGS:
        raise JobRequestError(f"unknown job kind {kind!r}; choose one of {', '.join(KINDS)}")
    settings = {}
    for name in KIND_SETTINGS[kind]:
        value = getattr(options, name)
        if name in ZERO_IS_DEFAULT and value in (0, ""):
            continue
        if name == "estimator" and value not in ESTIMATORS:
            raise JobRequestError(f"unknown keypoint estimator {value!r}; choose one of {', '.join(ESTIMATORS)}")
        settings[name] = value
    files = {}
    for role, attr, required in KIND_INPUTS[kind]:
        path = getattr(options, attr).strip()
        if not path:
            if required:
                raise JobRequestError(f"a {kind} job needs {_article(role)} {role} file: choose one in the DynaPose4D panel")
            continue
        if not Path(path).is_file():
            raise JobRequestError(f"the {role} file {path} does not exist")
        files[role] = path
    return JobRequest(kind, settings, files)


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"
