"""Jobs: one entry point that runs a job folder, for the CLI, the server's worker and tests.

A job folder (:class:`.folder.JobFolder`) holds ``job.json`` (``{"kind": ..., "settings":
{...}, "inputs": {role: file}}``), its input files under ``inputs/``, the products of each step,
checkpoints, and the results. Running a job folder again resumes where it stopped.

Settings are checked (:func:`.settings.validate_settings`) once per entry point: the CLI and the
server's upload check what the user gave before :func:`write_job` writes it (``validated=True``),
and :func:`run_job` checks the job.json it reads, unless the same process has just written it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from ..events import EventSink, ignore
from ..formats import FRAME_ARCHIVE_SUFFIXES
from ..io.job_folder import JobFolder
from .settings import INPUTS, JobError, validate_settings


def write_job(
    job_dir: str | Path, kind: str, settings: dict | None = None, inputs: dict[str, str] | None = None, *, validated: bool = False
) -> Path:
    """Create a job folder (inputs must already be under ``job_dir/inputs``); returns job.json.

    ``settings`` go through :func:`validate_settings` (defaults filled in) unless ``validated``
    says they already did: the caller's entry point checked them and they are written as given.
    """
    folder = JobFolder(job_dir)
    if not validated:
        settings = validate_settings(kind, settings)
    spec = {"kind": kind, "settings": dict(settings), "inputs": dict(inputs or {})}
    _check_inputs(folder, kind, spec["inputs"])
    folder.root.mkdir(parents=True, exist_ok=True)
    folder.job_file.write_text(json.dumps(spec, indent=1))
    return folder.job_file


def _check_inputs(folder: JobFolder, kind: str, inputs: dict[str, str]) -> None:
    roles = INPUTS[kind]
    for role in inputs:
        if role not in roles:
            raise JobError(f"a {kind} job takes no {role!r} input; it takes: {', '.join(roles) or 'none'}")
    for role, (required, _) in roles.items():
        if required and role not in inputs:
            raise JobError(f"a {kind} job needs an {role!r} input")
    for role, name in inputs.items():
        if role == "video" and Path(name).name == name and folder.input(name).is_dir():
            _check_frame_folder(folder.input(name), role)
            continue
        if Path(name).name != name or not folder.input(name).is_file():
            raise JobError(f"input {role!r}: {name!r} is not a file in the job's inputs/ folder")
        suffixes = roles[role][1]
        if Path(name).suffix.lower() not in suffixes:
            raise JobError(f"input {role!r}: {name!r} should be one of {', '.join(suffixes)}")
        if Path(name).suffix.lower() in FRAME_ARCHIVE_SUFFIXES:
            raise JobError(f"input {role!r}: the zip {name!r} must be extracted into a frame folder first (dynapose4d.video.frame_folder.import_frames)")


def _check_frame_folder(path: Path, role: str) -> None:
    """A video given as a folder of frames (a user's folder, or an extracted zip)."""
    from ..video.frame_folder import frame_files

    if not frame_files(path):
        raise JobError(f"input {role!r}: the folder {path.name!r} holds no image files; a video folder holds its frames")


def read_job(job_dir: str | Path) -> dict:
    """job.json as written (``kind``, ``settings``, ``inputs``), not checked; :class:`JobError`
    when it cannot be read."""
    folder = JobFolder(job_dir)
    try:
        spec = json.loads(folder.job_file.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise JobError(f"{folder.root}: no readable {folder.job_file.name} ({exc})") from None
    if not isinstance(spec, dict):
        raise JobError(f"{folder.job_file}: not a JSON object")
    return spec


def run_job(
    job_dir: str | Path, emit: EventSink = ignore, should_stop: Callable[[], bool] = lambda: False, *, validated: bool = False
) -> dict:
    """Run (or resume) the job in ``job_dir``; returns its summary (``status``: finished/stopped).

    ``validated``: this process has just written job.json from checked settings (:func:`write_job`),
    so they are not checked a second time; a job.json from elsewhere (the server's worker, a resume)
    is checked here."""
    folder = JobFolder(job_dir)
    spec = read_job(folder.root)
    kind = spec.get("kind")
    settings = spec.get("settings") if validated else validate_settings(kind, spec.get("settings"))
    inputs = spec.get("inputs", {})
    _check_inputs(folder, kind, inputs)
    return RUNNERS[kind](folder, settings, inputs, emit, should_stop)


def _run_demo(folder: JobFolder, settings: dict, inputs: dict, emit: EventSink, should_stop) -> dict:
    from .configs import demo_config
    from .demo import run_demo

    _, metrics = run_demo(folder.root, demo_config(settings), emit=emit, should_stop=should_stop)
    return metrics


def _run_generate(folder: JobFolder, settings: dict, inputs: dict, emit: EventSink, should_stop) -> dict:
    from .image_to_4d import generate

    return generate(folder, settings, inputs, emit, should_stop)


def _run_animate(folder: JobFolder, settings: dict, inputs: dict, emit: EventSink, should_stop) -> dict:
    from .image_to_4d import animate

    return animate(folder, settings, inputs, emit, should_stop)


RUNNERS: dict[str, Callable[..., dict]] = {"demo": _run_demo, "generate": _run_generate, "animate": _run_animate}
