"""Retargeting presets: which keypoints drive which bones of a user's armature (no bpy).

A mapping is a list of :class:`BonePair`: the target bone's head follows the keypoint ``head``
(Copy Location) and/or its Y axis aims at the keypoint ``aim`` (Damped Track), the two
constraints the add-on's own keypoint rig uses. Either may be empty (a bone that only aims
keeps its parent's placement). Presets are JSON files::

    {"format": "dynapose4d.retarget/1",
     "pairs": [{"bone": "Spine", "head": "root", "aim": "neck"}, ...]}
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

FORMAT = "dynapose4d.retarget/1"


class PresetError(ValueError):
    pass


@dataclass(frozen=True)
class BonePair:
    bone: str
    head: str = ""
    aim: str = ""


def check_mapping(pairs: list[BonePair], keypoints: list[str], bones: list[str]) -> None:
    """Raise :class:`PresetError` naming every bone or keypoint the mapping refers to that is missing."""
    problems = []
    seen = set()
    for p in pairs:
        if p.bone not in bones:
            problems.append(f"bone {p.bone!r} is not in the target armature")
        if p.bone in seen:
            problems.append(f"bone {p.bone!r} is mapped twice")
        seen.add(p.bone)
        if not (p.head or p.aim):
            problems.append(f"bone {p.bone!r} has neither a head nor an aim keypoint")
        for kp in (p.head, p.aim):
            if kp and kp not in keypoints:
                problems.append(f"keypoint {kp!r} (for bone {p.bone!r}) is not in this job (it has {', '.join(keypoints)})")
    if not pairs:
        problems.append("the mapping is empty: add at least one bone")
    if problems:
        raise PresetError("; ".join(problems))


def save_preset(path: str | os.PathLike, pairs: list[BonePair]) -> Path:
    path = Path(path)
    if path.suffix.lower() != ".json":
        path = path.with_suffix(".json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"format": FORMAT, "pairs": [asdict(p) for p in pairs]}, indent=1))
    return path


def load_preset(path: str | os.PathLike) -> list[BonePair]:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise PresetError(f"{path}: no such preset file") from None
    except (OSError, ValueError) as exc:
        raise PresetError(f"{path}: not a readable JSON preset ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise PresetError(f"{path}: not a DynaPose4D retarget preset (expected format {FORMAT})")
    pairs = []
    for i, item in enumerate(data.get("pairs", [])):
        if not isinstance(item, dict) or not isinstance(item.get("bone"), str):
            raise PresetError(f"{path}: pair {i} has no bone name")
        pairs.append(BonePair(item["bone"], str(item.get("head", "")), str(item.get("aim", ""))))
    return pairs
