"""Dense reference rasteriser: every pixel against every Gaussian, no culling, no sorting tricks.

The test oracle for the pair rasteriser (and the baseline of the render benchmark). It uses
O(pixels x Gaussians) memory, so it is for small scenes only. It implements the compositing
rules of DESIGN.md §4 directly: depth order, ``alpha = min(0.999, opacity exp(-sigma))``, pairs
with ``sigma < 0`` or ``alpha < 1/255`` skipped, and a pixel stops before the Gaussian that would
bring its transmittance to 1e-4 or below.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .projection import ALPHA_MAX, ALPHA_MIN, TRANSMITTANCE_MIN


def rasterize_dense(
    means2d: Tensor,  # [I, N, 2]
    conics: Tensor,  # [I, N, 3]
    opacities: Tensor,  # [I, N]
    colors: Tensor,  # [I, N, 3]
    depths: Tensor,  # [I, N]
    visible: Tensor,  # [I, N] bool
    width: int,
    height: int,
) -> tuple[Tensor, Tensor, Tensor]:
    """Same contract as :func:`dynapose4d.render.pairs.rasterize` (premultiplied rgb)."""
    outs = []
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=means2d.dtype, device=means2d.device) + 0.5,
        torch.arange(width, dtype=means2d.dtype, device=means2d.device) + 0.5,
        indexing="ij",
    )
    pix = torch.stack([xs.reshape(-1), ys.reshape(-1)], -1)  # [P, 2]
    for i in range(means2d.shape[0]):
        order = torch.argsort(torch.where(visible[i], depths[i], torch.full_like(depths[i], math.inf)), stable=True)
        order = order[visible[i][order]]
        m, con, op = means2d[i, order], conics[i, order], opacities[i, order]
        d = pix[:, None, :] - m[None]  # [P, n, 2]
        sigma = 0.5 * (con[:, 0] * d[..., 0] ** 2 + con[:, 2] * d[..., 1] ** 2) + con[:, 1] * d[..., 0] * d[..., 1]
        alpha = torch.clamp_max(op * torch.exp(-sigma), ALPHA_MAX)
        alpha = torch.where((sigma >= 0) & (alpha >= ALPHA_MIN), alpha, torch.zeros_like(alpha))
        t_after = torch.cumprod(1.0 - alpha, dim=1)
        t_before = torch.cat([torch.ones_like(t_after[:, :1]), t_after[:, :-1]], 1)
        # t_after is non-increasing, so this keeps a prefix of each pixel's list.
        alive = t_after > TRANSMITTANCE_MIN
        w = torch.where(alive, alpha * t_before, torch.zeros_like(alpha))
        rgb = w @ colors[i, order]
        acc = w.sum(1)
        depth = w @ depths[i, order]
        outs.append((rgb.reshape(height, width, 3), acc.reshape(height, width), depth.reshape(height, width)))
    return tuple(torch.stack(t) for t in zip(*outs))
