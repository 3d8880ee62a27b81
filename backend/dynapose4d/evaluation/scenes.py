"""Built-in synthetic scenes (no files needed): benchmarks, tests and the demo's fallbacks."""

from __future__ import annotations

import math

import torch

from ..gaussians import Gaussians


def sphere_scene(n: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> Gaussians:
    """The renderer benchmark scene of DESIGN.md §6.

    ``n`` Gaussians on the surface of a sphere of radius 0.5, half of them jittered inside;
    isotropic scales log-normal with median 0.01 and sigma 0.3 (log); opacities uniform in
    [0.5, 1]; random colours. View it from radius 2 with fovy 49.1 deg.
    """
    gen = torch.Generator().manual_seed(seed)
    dirs = torch.nn.functional.normalize(torch.randn(n, 3, generator=gen, dtype=torch.float64), dim=-1)
    radius = torch.full((n, 1), 0.5, dtype=torch.float64)
    inside = torch.randperm(n, generator=gen)[: n // 2]
    radius[inside] = 0.5 * torch.rand(len(inside), 1, generator=gen, dtype=torch.float64)
    means = (dirs * radius).to(dtype)
    scales = torch.exp(math.log(0.01) + 0.3 * torch.randn(n, generator=gen, dtype=torch.float64)).to(dtype)
    opacity = (0.5 + 0.5 * torch.rand(n, generator=gen, dtype=torch.float64)).to(dtype)
    rgb = torch.rand(n, 3, generator=gen, dtype=torch.float64).to(dtype)
    return Gaussians.from_points(means, rgb, scales, opacity)
