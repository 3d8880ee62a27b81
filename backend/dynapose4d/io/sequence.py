"""PLY sequences: one 3DGS PLY per frame plus a JSON sidecar (DESIGN.md §4).

The sidecar ``sequence.json``::

    {"format": "dynapose4d.sequence/1", "fps": 24.0, "frame_count": 48, "up": "+z",
     "coordinates": "input-ply",  # input-ply: the animated PLY's own coordinates, units and up axis;
                                  # backend: the documented backend frame (+Y up, radius ~0.5)
     "user_frame": {...},         # the similarity backend -> this frame (userframe.UserFrame)
     "frames": ["frame_0000.ply", ...], "times": [0.0, ...],          # normalised time per frame
     "camera": {"c2w": 4x4 OpenGL camera-to-world, "fovy_deg": 49.1, "width": 256, "height": 256},
     "keypoints": {"names": [...], "edges": [[i, j], ...], "valid": [...],
                   "positions": [[[x, y, z] per keypoint] per frame]},         # in "coordinates"
     "source": {"video_fps": 7.0, "video_frames": 14, "duration_s": 1.857}}
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from ..dynamic4d import Dynamic4D
from ..userframe import to_user, user_frame_of
from .ply import write_ply

FORMAT = "dynapose4d.sequence/1"


def write_sequence(out_dir: str | os.PathLike, model: Dynamic4D, fps: float, frame_count: int, mode: str = "clamp") -> Path:
    """Sample ``model`` at ``fps`` for ``frame_count`` frames and write PLYs + sidecar; returns the sidecar path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    times = model.times(frame_count, fps, mode)
    gaussians, keypoints = to_user(model, *model.sample(times))  # the one exit from the backend frame
    frame = user_frame_of(model)
    names = []
    for i in range(frame_count):
        name = f"frame_{i:04d}.ply"
        write_ply(out / name, gaussians.map(lambda t: t[i]))
        names.append(name)
    cam = model.camera
    sidecar = {
        "format": FORMAT,
        "fps": float(fps),
        "frame_count": int(frame_count),
        "time_mode": mode,
        "up": frame.up_label("file"),
        "coordinates": frame.name,
        "user_frame": frame.to_dict(),
        "frames": names,
        "times": [round(float(t), 6) for t in times],
        "camera": {
            "c2w": frame.c2w(cam.c2w).tolist(),
            "fovy_deg": math.degrees(float(cam.fovy)),
            "width": cam.width,
            "height": cam.height,
        },
        "keypoints": {
            "names": list(model.keypoints.names),
            "edges": model.keypoints.edges.tolist(),
            "valid": model.keypoints.anchors.valid.tolist(),
            "positions": [[[round(float(v), 6) for v in p] for p in frame] for frame in keypoints],
        },
        # The driving video's real timing (after resampling to the T frames fitted).
        "source": {"video_fps": model.video_fps, "video_frames": model.num_frames, "duration_s": round(model.duration_s, 6)},
    }
    path = out / "sequence.json"
    path.write_text(json.dumps(sidecar, indent=1))
    return path


def read_sequence(sidecar: str | os.PathLike) -> dict:
    """The sidecar as a dict, checked; PLY paths resolved next to it."""
    path = Path(sidecar)
    data = json.loads(path.read_text())
    if data.get("format") != FORMAT:
        raise ValueError(f"{path}: not a DynaPose4D sequence sidecar")
    data["paths"] = [path.parent / f for f in data["frames"]]
    return data
