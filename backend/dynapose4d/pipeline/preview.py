"""Preview animations of a 4D model: the reference view over time, and a turntable (the camera
orbits once while the animation plays)."""

from __future__ import annotations

from pathlib import Path

import torch

from ..cameras import Cameras
from ..dynamic4d import Dynamic4D
from ..imaging.images import save_gif
from ..io.job_folder import JobFolder
from ..render import render


@torch.no_grad()
def render_reference(model: Dynamic4D, frame_count: int, fps: float, size: int = 256) -> torch.Tensor:
    """``[F, S, S, 3]`` frames of the reference view."""
    gaussians, _ = model.sample(model.times(frame_count, fps))
    cam = model.camera.resized(size)
    return torch.cat([render(gaussians.map(lambda t: t[i : i + 8]), cam, 1.0).rgb for i in range(0, frame_count, 8)])


@torch.no_grad()
def render_turntable(model: Dynamic4D, frame_count: int, fps: float, size: int = 256, elevation: float = 15.0) -> torch.Tensor:
    """``[F, S, S, 3]``: one orbit over the animation, looping it ("loop" time mode)."""
    gaussians, _ = model.sample(model.times(frame_count, fps, mode="loop"))
    radius = float(model.camera.c2w[:3, 3].norm())
    azimuths = torch.arange(frame_count, dtype=torch.float32) * (360.0 / frame_count)
    frames = []
    for i in range(frame_count):
        cam = Cameras.orbit(elevation, float(azimuths[i]), radius, fovy_deg=float(torch.rad2deg(model.camera.fovy)), width=size)
        frames.append(render(gaussians.map(lambda t: t[i]), cam, 1.0).rgb)
    return torch.stack(frames)


def write_previews(model: Dynamic4D, folder: JobFolder, fps: float = 12.0, size: int = 192) -> dict[str, Path]:
    ref_frames = max(2, int(round(model.duration_s * fps)) + 1)
    return {
        "reference": save_gif(render_reference(model, ref_frames, fps, size), folder.preview("reference"), fps),
        "turntable": save_gif(render_turntable(model, 36, fps, size), folder.preview("turntable"), fps),
    }
