"""Novel-view score distillation: random orbit cameras, renders, and a guidance that scores them.

The guidance (e.g. Zero-1-to-3) knows nothing about geometry; this is where cameras are sampled
and scenes rendered for it. The static stage conditions on the input image; the dynamic stage
(DG4D's recipe) conditions each frame's renders on the driving-video frame at that time.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..cameras import DEFAULT_FOVY_DEG, DEFAULT_RADIUS, Cameras
from ..gaussians import Gaussians
from ..guidance import Guidance, OrbitPose
from ..render import render


@dataclass
class NovelViewConfig:
    views: int = 1  # cameras per scene per step (DreamGaussian's and DG4D's configs: 1)
    resolution: int = 256
    elevation_range: tuple[float, float] = (-30.0, 30.0)  # relative to the reference elevation
    azimuth_range: tuple[float, float] = (-180.0, 180.0)
    radius: float = DEFAULT_RADIUS
    fovy_deg: float = DEFAULT_FOVY_DEG


class NovelViewSDS:
    """Scores ``[F]`` scenes from ``views`` random cameras each.

    ``reference_elevation`` is the input view's elevation (the orbit is sampled around it).
    Its own generator makes camera sampling reproducible and resumable (``state_dict``).
    """

    def __init__(self, guidance: Guidance, config: NovelViewConfig = NovelViewConfig(), reference_elevation: float = 0.0, seed: int = 0):
        self.guidance, self.config = guidance, config
        self.reference_elevation = reference_elevation
        self.generator = torch.Generator().manual_seed(seed)

    def sample_poses(self, count: int) -> OrbitPose:
        c = self.config
        u = torch.rand(count, 2, generator=self.generator)
        elevation = self.reference_elevation + c.elevation_range[0] + u[:, 0] * (c.elevation_range[1] - c.elevation_range[0])
        azimuth = c.azimuth_range[0] + u[:, 1] * (c.azimuth_range[1] - c.azimuth_range[0])
        return OrbitPose.of(elevation.clamp(-89.0, 89.0), azimuth, c.radius)

    def __call__(self, scenes: Gaussians, step_fraction: float, reference_index: Tensor | None = None) -> dict[str, Tensor]:
        """``scenes`` with batch shape [F] (or a single scene); ``reference_index [F]`` picks each
        scene's conditioning image (None: the first)."""
        c = self.config
        single = scenes.batch_shape == ()
        f = 1 if single else scenes.batch_shape[0]
        pose = self.sample_poses(f * c.views)
        device = scenes.means.device
        cams = Cameras.orbit(
            pose.elevation.view(f, c.views), pose.azimuth.view(f, c.views), c.radius,
            fovy_deg=c.fovy_deg, width=c.resolution, device=device, dtype=scenes.means.dtype,
        )
        if single:
            scenes = scenes.map(lambda t: t[None])
        images = render(scenes, cams, 1.0).rgb.reshape(f * c.views, c.resolution, c.resolution, 3)
        index = None if reference_index is None else reference_index.repeat_interleave(c.views)
        return self.guidance(images, pose, step_fraction, reference_index=index)

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])


class DynamicNovelViews:
    """The dynamic stage's guidance hook: each frame's renders scored with the driving frame at
    that time as the conditioning image (``set_reference`` with every video frame first)."""

    def __init__(self, sds: NovelViewSDS):
        self.sds = sds

    def __call__(self, gaussians: Gaussians, frame_ids: Tensor, step_fraction: float) -> dict[str, Tensor]:
        return self.sds(gaussians, step_fraction, reference_index=frame_ids)

    def state_dict(self) -> dict:
        return self.sds.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.sds.load_state_dict(state)
