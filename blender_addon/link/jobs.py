"""What a job asks the backend for, as plain data: the panel's values become a :class:`JobRequest`.

The settings, their names, defaults and ranges come from the add-on's one table
(:mod:`.job_settings`), whose rows are the backend's settings (``GET /v1/kinds``). A value the
preset decides (:data:`~.job_settings.AUTO`) is not sent. No bpy here: operators copy their
properties into :class:`JobOptions` and call :func:`build_request`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import job_settings

# A folder of frames is sent as a zip of its images (the server extracts it: dynapose4d/video/frame_folder.py).
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
    """The panel's values (plain Python), as the operator copies them. ``settings``: setting name
    -> value, AUTO where the preset decides; a setting left out takes the table's default."""

    kind: str = "generate"
    settings: dict[str, Any] = field(default_factory=dict)
    image_path: str = ""
    video_path: str = ""
    ply_path: str = ""


@dataclass
class JobRequest:
    kind: str
    settings: dict
    files: dict[str, str] = field(default_factory=dict)  # input role -> file path


def build_request(options: JobOptions, temp_folder: str | None = None) -> JobRequest:
    """The request for ``options.kind``: its settings (AUTO ones left to the backend) and files.
    A video given as a folder of frames is zipped into ``temp_folder`` (default: a new
    temporary folder) and sent as that zip."""
    kind = options.kind
    if kind not in job_settings.KINDS:
        raise JobRequestError(f"unknown job kind {kind!r}; choose one of {', '.join(job_settings.KINDS)}")
    settings = request_settings(kind, options.settings)
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
    return JobRequest(kind, settings, files)


def request_settings(kind: str, values: dict[str, Any]) -> dict[str, Any]:
    """The settings a ``kind`` job sends: every row of the table for that kind, ``values`` over
    the defaults, without the AUTO ones. Values of other kinds' settings are ignored; a name
    the table does not know is an error (a typo would otherwise be dropped silently)."""
    unknown = sorted(set(values) - {s.name for s in job_settings.JOB_SETTINGS})
    if unknown:
        raise JobRequestError(f"unknown job setting(s) {', '.join(unknown)}; the add-on's table is "
                              "blender_addon/link/job_settings.py")
    out = {}
    for setting in job_settings.rows(kind):
        value = values.get(setting.name, setting.initial)
        if setting.is_auto(value):
            continue
        problem = setting.problem(value)
        if problem:
            raise JobRequestError(problem)
        out[setting.name] = float(value) if setting.type is float else value
    return out


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
