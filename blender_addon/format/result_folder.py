"""A result written by the command line, read without a server: a job folder (``dynapose4d
animate ... -o out/x``, ``dynapose4d demo -o ...``), its ``sequence/`` folder, or a PLY sequence's
``sequence.json``. No bpy, no backend.

The PLY sequence (``docs/wire-format.md``, "PLY sequences") holds one 3DGS PLY per frame and a
sidecar with the frame rate, the normalised times, the reference camera and the keypoint tracks,
in the file's own coordinates (``"up": "+z"`` for an animated Blender export). They are read into
the same :class:`~.wire.Frame` objects and keypoint-tracks dict a live import fetches, turned +Y
up as the wire is, and assembled by :func:`~.sequence.assemble`: the scene side cannot tell a
folder from a server.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import sh
from .coords import BACKEND_TO_BLENDER, blender_to_backend
from .sequence import MAX_FPS, MAX_FRAME_COUNT, MIN_FPS, TIME_MODES, Sampling, Sequence, assemble
from .splats import NotASplat, read_ply
from .wire import Frame

SIDECAR = "sequence.json"
FORMAT = "dynapose4d.sequence/1"


class ResultFolderError(ValueError):
    """A path that is not a readable result; the message says what was expected."""


@dataclass
class FolderResult:
    sequence: Sequence
    sidecar: Path
    job_id: str  # stable for one folder: importing it again updates the same objects
    title: str
    in_place: bool  # the input PLY's own frame (an animate job): it belongs where its data say, on the input


def find_sidecar(path: str | os.PathLike) -> Path:
    """The ``sequence.json`` of a job folder, a sequence folder, the sidecar itself or one of its PLYs."""
    path = Path(path)
    if path.is_file() and path.suffix.lower() == ".ply":
        path = path.parent
    if path.is_file():
        return path
    if not path.exists():
        raise ResultFolderError(f"{path}: no such file or folder")
    for candidate in (path / "sequence" / SIDECAR, path / SIDECAR):
        if candidate.is_file():
            return candidate
    raise ResultFolderError(f"{path} has no sequence/{SIDECAR} or {SIDECAR}: choose a finished job folder (made by "
                            f"`dynapose4d animate` or `dynapose4d demo`) or a PLY sequence's {SIDECAR}")


def read_sidecar(sidecar: Path) -> dict:
    try:
        data = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ResultFolderError(f"{sidecar}: not readable JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ResultFolderError(f"{sidecar}: not a DynaPose4D sequence sidecar (format {FORMAT!r})")
    for key in ("fps", "frames"):
        if key not in data:
            raise ResultFolderError(f"{sidecar}: the sidecar has no {key!r}")
    fps, frames = data["fps"], data["frames"]
    if not (isinstance(fps, (int, float)) and math.isfinite(fps) and MIN_FPS <= fps <= MAX_FPS):
        raise ResultFolderError(f"{sidecar}: fps must be within {MIN_FPS:g}..{MAX_FPS:g}, got {fps!r}")
    if not (isinstance(frames, list) and 1 <= len(frames) <= MAX_FRAME_COUNT and all(isinstance(f, str) for f in frames)):
        raise ResultFolderError(f"{sidecar}: 'frames' must list 1..{MAX_FRAME_COUNT} PLY file names")
    for name in frames:
        if Path(name).name != name:  # a sidecar names files beside it, never elsewhere
            raise ResultFolderError(f"{sidecar}: frame {name!r} is not a file name beside the sidecar")
    return data


def read_result(path: str | os.PathLike) -> FolderResult:
    """The result at ``path`` as a :class:`~.sequence.Sequence` (+Y up), ready for
    ``scene.importer.import_sequence``."""
    sidecar = find_sidecar(path).resolve()
    data = read_sidecar(sidecar)
    up = data.get("up", "+y")
    turn = _to_y_up(up, sidecar)
    count = len(data["frames"])
    mode = data.get("time_mode", "clamp")
    sampling = Sampling(float(data["fps"]), count, mode if mode in TIME_MODES else "clamp")
    times = data.get("times") or [i / max(1, count - 1) for i in range(count)]
    kp = data.get("keypoints") or {}
    names = [str(n) for n in kp.get("names", [])]
    try:
        keypoints = turn(np.asarray(kp.get("positions") or np.zeros((count, 0, 3)), np.float64).reshape(count, len(names), 3))
    except ValueError:
        raise ResultFolderError(f"{sidecar}: the keypoint positions are not {count} frames x {len(names)} keypoints x 3") from None
    frames = []
    for index, name in enumerate(data["frames"]):
        try:
            splats = read_ply(sidecar.parent / name)
        except NotASplat as exc:
            raise ResultFolderError(f"frame {index}: {exc}") from None
        frames.append(Frame(
            positions=turn(splats.positions).astype(np.float32),
            rotations=_turn_rotations(splats.rotations, turn),
            scales=splats.scales, opacities=splats.opacities, colors=splats.colors.astype(np.float32),
            keypoints=keypoints[index].astype(np.float32),
            header={"frame": {"index": index, "frame_count": count, "fps": sampling.fps, "time": float(times[index])}},
            sh_rest=_turn_sh(splats.sh_rest, up) if index == 0 else None,  # the colour's view dependence does not move
        ))
    tracks = {
        "fps": sampling.fps, "frame_count": count, "times": times, "names": names, "positions": keypoints,
        "edges": kp.get("edges", []), "valid": kp.get("valid", [True] * len(names)),
        "camera": _camera(data.get("camera"), turn),
    }
    try:
        sequence = assemble(frames, tracks, sampling)
    except ValueError as exc:
        raise ResultFolderError(f"{sidecar}: {exc}") from None
    return FolderResult(sequence, sidecar, folder_job_id(sidecar), _title(sidecar), data.get("coordinates") == "input-ply")


def _to_y_up(up: str, sidecar: Path):
    """The function turning the file's vectors ``[..., 3]`` +Y up (the wire's and Sequence's frame)."""
    if up == "+y":
        return lambda v: np.asarray(v)
    if up == "+z":  # a +Z-up file holds Blender-frame coordinates
        return blender_to_backend
    raise ResultFolderError(f"{sidecar}: unknown up axis {up!r} (expected '+y' or '+z')")


def _turn_sh(rest: np.ndarray | None, up: str) -> np.ndarray | None:
    """SH coefficients in the file's frame as +Y-up ones (a +Z-up file's are Blender-frame)."""
    if rest is None or up == "+y":
        return None if rest is None else np.asarray(rest, np.float32)
    return sh.rotate(rest, BACKEND_TO_BLENDER.T).astype(np.float32)


def _turn_rotations(quats: np.ndarray, turn) -> np.ndarray:
    """Rotations in the file's frame as rotations in the +Y-up frame: w stays, the axis turns."""
    out = np.array(quats, dtype=np.float32)
    out[:, 1:] = turn(out[:, 1:])
    return out


def _camera(camera: dict | None, turn) -> dict:
    if not camera or "c2w" not in camera:
        return {}
    c2w = np.asarray(camera["c2w"], np.float64).reshape(4, 4).copy()
    c2w[:3, :3] = turn(c2w[:3, :3].T).T  # each column (axis) turns
    c2w[:3, 3] = turn(c2w[:3, 3])
    return {**camera, "c2w": c2w.tolist()}


def folder_job_id(sidecar: Path) -> str:
    """An id for the folder's collection: the same folder imported again updates its objects."""
    digest = hashlib.sha1(str(sidecar).encode("utf-8")).hexdigest()[:10]
    return f"folder-{digest}"


def _title(sidecar: Path) -> str:
    """The job folder's name (``out/x`` for ``out/x/sequence/sequence.json``), else the sequence folder's."""
    folder = sidecar.parent
    return folder.parent.name if folder.name == "sequence" and folder.parent.name else folder.name
