"""Where the static model comes from (DESIGN.md §3): Zero-1-to-3 SDS from the image, or an
existing 3DGS PLY registered into our frame. (Driving videos come from :mod:`dynapose4d.video.clip`.)
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from ..cameras import DEFAULT_RADIUS, Cameras
from ..events import EventSink, ignore
from ..gaussians import Gaussians, transform_gaussians
from ..imaging.images import ReferenceImage
from ..io import read_ply


class StaticSource(abc.ABC):
    """Produces the static Gaussians of the reference pose (frame 0)."""

    name: str

    @abc.abstractmethod
    def static(
        self,
        reference: ReferenceImage | None,
        camera: Cameras,
        emit: EventSink = ignore,
        should_stop: Callable[[], bool] = lambda: False,
        checkpoint: Path | None = None,
    ) -> Gaussians | None:
        """The static model, or None when stopped (the checkpoint keeps the progress)."""


class Zero123Static(StaticSource):
    """The static stage: reference-view loss + Zero-1-to-3 SDS on novel views."""

    name = "zero123"

    def __init__(self, config, guidance_config=None, device=None):
        self.config, self.guidance_config, self.device = config, guidance_config, device

    def static(self, reference, camera, emit=ignore, should_stop=lambda: False, checkpoint=None):
        from ..guidance.zero123 import Zero123Config, Zero123Guidance
        from ..stages.novel_view import NovelViewSDS
        from ..stages.static import StaticStage

        guidance = Zero123Guidance(self.guidance_config or Zero123Config(), device=self.device)
        guidance.set_reference(reference.image[None])
        sds = NovelViewSDS(guidance, self.config.novel, reference_elevation=0.0, seed=self.config.seed)
        stage = StaticStage(self.config, reference, camera, sds)
        if checkpoint is not None and checkpoint.exists():
            stage.load_checkpoint(checkpoint)
        if stage.run(emit, should_stop, checkpoint) == "stopped":
            return None
        return stage.result()


@dataclass
class PlyRegistration:
    """How an arbitrary 3DGS PLY is brought into the frame the cameras expect.

    ``up_axis``: "y" or "z" (Blender and most DCC tools are +Z up); the reference view is the
    orbit pose (``elevation``, ``azimuth``) in the file's own frame that becomes our input view;
    the object is recentred on its opaque Gaussians and scaled so they fit a sphere of ``radius``.
    """

    up_axis: str = "y"
    elevation: float = 0.0
    azimuth: float = 0.0
    radius: float = 0.5
    recentre: bool = True
    min_opacity: float = 0.2


def register_gaussians(g: Gaussians, reg: PlyRegistration) -> tuple[Gaussians, dict]:
    """Recentred, rescaled and turned so the chosen view is azimuth 0, elevation 0; returns the
    scene and the transform applied (for putting results back in the file's frame)."""
    opaque = g.opacities > reg.min_opacity
    core = g.means[opaque] if int(opaque.sum()) >= 10 else g.means
    centre = 0.5 * (core.amin(0) + core.amax(0)) if reg.recentre else torch.zeros(3, dtype=g.means.dtype)
    # Scale by a high quantile of distances, so a few stray Gaussians don't shrink the object.
    extent = torch.quantile((core - centre).norm(dim=-1), 0.98).clamp_min(1e-6)
    scale = reg.radius / float(extent)
    a, e = math.radians(reg.azimuth), math.radians(reg.elevation)
    turn = torch.tensor([[math.cos(a), 0, -math.sin(a)], [0, 1, 0], [math.sin(a), 0, math.cos(a)]], dtype=g.means.dtype)
    tilt = torch.tensor([[1, 0, 0], [0, math.cos(e), -math.sin(e)], [0, math.sin(e), math.cos(e)]], dtype=g.means.dtype)
    rotation = tilt @ turn  # the reference camera (e, a) ends up at (0, 0)
    moved = transform_gaussians(g, rotation, -scale * (centre @ rotation.T), scale)
    return moved, {"centre": centre.tolist(), "scale": scale, "rotation": rotation.tolist()}


MIN_PLY_GAUSSIANS = 100  # a splat of an object has thousands; fewer cannot show it to the video's masks


def check_ply_size(count: int, name: str) -> None:
    """A PLY too small to be an object's splat is refused by name (with 1 Gaussian, the job used
    to fail much later with "could not find the object in the first video frame")."""
    if count < MIN_PLY_GAUSSIANS:
        what = "no Gaussians" if count == 0 else f"only {count} Gaussian{'s' * (count != 1)}"
        raise ValueError(f"{name} holds {what}; an animate job needs a 3D Gaussian splat of the object "
                         f"(at least {MIN_PLY_GAUSSIANS}, usually thousands)")


class PlyStatic(StaticSource):
    """An existing 3DGS PLY (animate mode)."""

    name = "ply"

    def __init__(self, path: str | Path, registration: PlyRegistration = PlyRegistration()):
        self.path, self.registration = Path(path), registration
        self.transform: dict | None = None

    def static(self, reference=None, camera=None, emit=ignore, should_stop=lambda: False, checkpoint=None):
        raw = read_ply(self.path, up_axis=self.registration.up_axis)
        check_ply_size(raw.num, self.path.name)
        g, self.transform = register_gaussians(raw, self.registration)
        return g


def reference_camera(size: int = 256, elevation: float = 0.0) -> Cameras:
    """The input view: azimuth 0 on +Z at the default radius and fov."""
    return Cameras.orbit(elevation, 0.0, DEFAULT_RADIUS, width=size)
