"""Guidance: diffusion priors that score rendered images. They know nothing about geometry.

A guidance takes rendered images and the orbit poses of the cameras that rendered them, and
returns named losses (``loss_<x>``) whose gradients flow back into the images. Stages weight them
with ``lambda_<x>`` and own everything geometric (sampling cameras, rendering).

Conventions (DESIGN.md §4): images ``[B, H, W, 3]`` float in [0, 1]; orbit poses in degrees with
positive elevation = camera above the object, azimuth 0 = the input view on +Z, radius in world
units.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

__all__ = ["Guidance", "OrbitPose"]


@dataclass
class OrbitPose:
    """Orbit camera poses, each ``[B]`` (or scalars broadcast to B): degrees, degrees, world units."""

    elevation: Tensor
    azimuth: Tensor
    radius: Tensor

    @classmethod
    def of(cls, elevation, azimuth, radius, batch: int | None = None, *, device=None) -> "OrbitPose":
        """Poses from floats, lists or tensors, broadcast to a common ``[B]`` (float32)."""
        e, a, r = (torch.as_tensor(v, dtype=torch.float32, device=device).reshape(-1) for v in (elevation, azimuth, radius))
        n = max(len(e), len(a), len(r), batch or 1)
        e, a, r = (v.expand(n) if len(v) == 1 else v for v in (e, a, r))
        if not (len(e) == len(a) == len(r) == n):
            raise ValueError(f"OrbitPose: elevation/azimuth/radius have lengths {len(e)}, {len(a)}, {len(r)}; expected {n}")
        return cls(e, a, r)

    def __len__(self) -> int:
        return len(self.elevation)


@runtime_checkable
class Guidance(Protocol):
    """What a stage needs from a diffusion prior.

    ``set_reference`` stores the conditioning (one or several reference images, e.g. the input
    image, or every driving-video frame) and the pose of the camera that took them. ``__call__``
    scores a batch of renders from target poses (absolute, in the same orbit frame as the
    reference; the guidance forms what it needs relative to the reference) and returns
    ``{"loss_sds": scalar}`` plus any other ``loss_<x>`` terms.
    """

    def set_reference(self, images: Tensor, pose: OrbitPose | None = None) -> None:
        """``images [R, H, W, 3]`` or ``[H, W, 3]`` in [0, 1], on white; ``pose`` default (0, 0, 2)."""
        ...

    def __call__(
        self,
        images: Tensor,
        pose: OrbitPose,
        step_fraction: float | None = None,
        *,
        reference_index: Tensor | int | None = None,
    ) -> dict[str, Tensor]:
        """``images [B, H, W, 3]`` in [0, 1] (requires grad); ``pose`` of B target cameras;
        ``step_fraction`` in [0, 1] anneals the noise level (None: random timesteps);
        ``reference_index [B]`` picks each image's reference (default 0)."""
        ...
