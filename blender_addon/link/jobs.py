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
                 "seed", "lambda_kml", "lambda_scl", "device", "previews", "video_fps", "video_candidates", "choose_video"),
    "animate": ("up_axis", "iterations", "frames", "num_keypoints", "estimator", "keypoint_weights", "seed", "lambda_kml",
                "lambda_scl", "device", "previews", "video_fps"),
}
# Settings where 0 (or an empty text) means "not set": the preset or the backend default decides.
ZERO_IS_DEFAULT = {"static_iterations", "iterations", "frames", "gaussians", "keypoint_weights", "video_fps", "video_candidates"}
CHOOSE_VIDEO = ("auto", "ask")  # generate: drive with the best-scored candidate, or wait for the user's pick
# A folder of frames is sent as a zip of its images (the server extracts it: dynapose4d/framezip.py).
FRAME_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
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
    video_fps: float = 0.0  # frame rate of a frame folder (0: a file's own; the backend assumes 7 for frames)
    video_candidates: int = 0  # generate: SVD candidates (0: the preset's)
    choose_video: str = "auto"
    image_path: str = ""
    video_path: str = ""
    ply_path: str = ""


@dataclass
class JobRequest:
    kind: str
    settings: dict
    files: dict[str, str] = field(default_factory=dict)  # input role -> file path


def build_request(options: JobOptions, temp_folder: str | None = None) -> JobRequest:
    """The request for ``options.kind``: its settings (zeros left to the backend) and files.
    A video given as a folder of frames is zipped into ``temp_folder`` (default: a new
    temporary folder) and sent as that zip."""
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
        if role == "video" and Path(path).is_dir():
            files[role] = zip_frames(path, temp_folder)
            continue
        if not Path(path).is_file():
            raise JobRequestError(f"the {role} file {path} does not exist")
        files[role] = path
    if settings.get("choose_video", "auto") not in CHOOSE_VIDEO:
        raise JobRequestError(f"choose_video must be one of {', '.join(CHOOSE_VIDEO)}, got {settings['choose_video']!r}")
    return JobRequest(kind, settings, files)


def zip_frames(folder: str, temp_folder: str | None = None) -> str:
    """Zip the frames (images only, no subfolders, no links) of ``folder``; the zip's path.
    Stored, not deflated: PNG and JPEG frames are compressed already."""
    import re
    import tempfile
    import zipfile

    frames = sorted(
        (p for p in Path(folder).iterdir() if p.is_file() and not p.is_symlink() and p.suffix.lower() in FRAME_SUFFIXES),
        key=lambda p: [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", p.name)],
    )
    if not frames:
        raise JobRequestError(f"the video folder {folder} holds no frames ({', '.join(FRAME_SUFFIXES)} files)")
    out_dir = Path(temp_folder or tempfile.mkdtemp(prefix="dynapose4d-frames-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{Path(folder).resolve().name or 'frames'}.zip"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as zf:
        for p in frames:
            zf.write(p, p.name)
    return str(target)


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"
