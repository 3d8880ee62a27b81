"""Differentiable Gaussian rasteriser in plain PyTorch (the CPU path and the CUDA fallback).

Instead of a dense pixels x Gaussians matrix it works on the sparse list of (Gaussian, pixel)
pairs that can contribute, which is what makes it fit in memory:

1. (no grad) For each visible Gaussian, enumerate the pixels of its bounding box, keep the pairs
   with ``sigma >= 0`` and ``alpha >= 1/255`` (gsplat's per-pixel test), in depth order.
2. (no grad) Stable-sort the pairs by pixel: each pixel's pairs stay front to back. A segmented
   cumulative sum of ``log(1 - alpha)`` gives every pair's transmittance; pairs after the point
   where it would fall to 1e-4 are dropped (gsplat's early stop).
3. (autograd) Recompute alpha for the surviving pairs from the differentiable screen-space
   parameters, composite with the segmented exclusive sum, and scatter into the images.

Step 3 recomputes the exact values step 1 tested, so the kept set and the image agree with
gsplat's kernels up to float rounding.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .projection import ALPHA_MAX, ALPHA_MIN, TRANSMITTANCE_MIN

# Upper bound on candidate pairs enumerated at once in step 1 (bounds temporary memory).
CANDIDATE_CHUNK = 1 << 22
DEFAULT_MAX_PAIRS = 80_000_000


class RenderBudgetError(RuntimeError):
    """The scene would need more Gaussian-pixel pairs than the renderer's budget."""


def _alpha(px: Tensor, py: Tensor, feats: Tensor) -> Tensor:
    """Alpha of pairs; ``feats [P, >=6]`` = (mx, my, conic a, b, c, opacity, ...)."""
    dx = px - feats[:, 0]
    dy = py - feats[:, 1]
    sigma = 0.5 * (feats[:, 2] * dx * dx + feats[:, 4] * dy * dy) + feats[:, 3] * dx * dy
    alpha = torch.clamp_max(feats[:, 5] * torch.exp(-sigma), ALPHA_MAX)
    return sigma, alpha


@torch.no_grad()
def _contributing_pairs(feats: Tensor, radii: Tensor, depths: Tensor, width: int, height: int, max_pairs: int):
    """Steps 1 and 2: pairs (flat Gaussian index, pixel index) in pixel-major, front-to-back order.

    ``feats [I, N, F]``, ``radii [I, N, 2]``, ``depths [I, N]``. Returns ``gauss [P]`` (index
    into I*N), ``pixel [P]`` (index into I*H*W) and the start offset of each pair's pixel
    segment ``seg_start [P]``.
    """
    device = feats.device
    I, N = depths.shape
    visible = (radii > 0).all(-1)
    order = torch.argsort(torch.where(visible, depths, torch.full_like(depths, math.inf)), dim=1, stable=True)
    n_vis = visible.sum(1)
    flat_sorted = (torch.arange(I, device=device)[:, None] * N + order)[
        torch.arange(N, device=device)[None, :] < n_vis[:, None]
    ]  # [V], image-major, front to back
    f = feats.reshape(I * N, -1)[flat_sorted]
    r = radii.reshape(I * N, 2)[flat_sorted].to(f.dtype)
    # Pixel j has its centre at j + 0.5: the box [m - r, m + r] covers j in [x0, x1).
    x0 = torch.ceil(f[:, 0] - r[:, 0] - 0.5).clamp(0, width).long()
    x1 = (torch.floor(f[:, 0] + r[:, 0] - 0.5) + 1).clamp(0, width).long()
    y0 = torch.ceil(f[:, 1] - r[:, 1] - 0.5).clamp(0, height).long()
    y1 = (torch.floor(f[:, 1] + r[:, 1] - 0.5) + 1).clamp(0, height).long()
    bw = (x1 - x0).clamp_min(0)
    counts = bw * (y1 - y0).clamp_min(0)
    image = flat_sorted // N

    ends = torch.cumsum(counts, 0)
    total = int(ends[-1]) if len(ends) else 0
    gauss_parts, pixel_parts, alpha_parts = [], [], []
    kept = 0
    start_g = 0
    while start_g < len(counts):
        # Largest run of Gaussians whose candidates fit in one chunk (at least one Gaussian).
        base = int(ends[start_g - 1]) if start_g else 0
        stop_g = int(torch.searchsorted(ends, base + CANDIDATE_CHUNK, right=True))
        stop_g = max(stop_g, start_g + 1)
        c = counts[start_g:stop_g]
        local = torch.repeat_interleave(torch.arange(start_g, stop_g, device=device), c)
        k = torch.arange(int(c.sum()), device=device) - (ends[local] - counts[local] - base)
        px = x0[local] + k % bw[local]
        py = y0[local] + k // bw[local]
        sigma, alpha = _alpha(px.to(f.dtype) + 0.5, py.to(f.dtype) + 0.5, f[local])
        ok = (sigma >= 0) & (alpha >= ALPHA_MIN)
        kept += int(ok.sum())
        if kept > max_pairs:
            raise RenderBudgetError(
                f"the scene needs more than {max_pairs:,} Gaussian-pixel pairs "
                f"({total:,} candidates from {len(counts):,} visible Gaussians); a Gaussian is probably "
                "very large on screen (camera inside the scene, or degenerate scales)"
            )
        gauss_parts.append(flat_sorted[local[ok]])
        pixel_parts.append((image[local[ok]] * height + py[ok]) * width + px[ok])
        alpha_parts.append(alpha[ok])
        start_g = stop_g

    empty = torch.zeros(0, dtype=torch.long, device=device)
    gauss = torch.cat(gauss_parts) if gauss_parts else empty
    pixel = torch.cat(pixel_parts) if pixel_parts else empty
    alpha = torch.cat(alpha_parts) if alpha_parts else empty.to(feats.dtype)
    if len(pixel) == 0:
        return gauss, pixel, empty

    key = pixel.to(torch.int32) if I * height * width < 2**31 else pixel
    key, perm = torch.sort(key, stable=True)
    gauss, pixel, alpha = gauss[perm], key.long(), alpha[perm]

    # Early stop: a pair survives while the transmittance after it stays above 1e-4.
    log1m = torch.log1p(-alpha.double())
    seg_start = _segment_starts(pixel)
    cs = torch.cumsum(log1m, 0)
    inclusive = cs - (cs - log1m)[seg_start]
    keep = inclusive > math.log(TRANSMITTANCE_MIN)
    gauss, pixel = gauss[keep], pixel[keep]
    # Dropping only segment tails keeps segments contiguous (the first pair of a pixel always
    # survives: alpha <= 0.999 leaves T >= 1e-3).
    return gauss, pixel, _segment_starts(pixel)


def _segment_starts(sorted_keys: Tensor) -> Tensor:
    """For each element of a sorted key list, the index where its run of equal keys starts."""
    n = len(sorted_keys)
    is_start = torch.ones(n, dtype=torch.bool, device=sorted_keys.device)
    is_start[1:] = sorted_keys[1:] != sorted_keys[:-1]
    idx = torch.arange(n, device=sorted_keys.device)
    return torch.cummax(torch.where(is_start, idx, torch.zeros_like(idx)), 0).values


def rasterize(
    means2d: Tensor,  # [I, N, 2]
    conics: Tensor,  # [I, N, 3]
    opacities: Tensor,  # [I, N]
    colors: Tensor,  # [I, N, 3]
    depths: Tensor,  # [I, N]
    radii: Tensor,  # [I, N, 2] int, 0 = culled
    width: int,
    height: int,
    max_pairs: int = DEFAULT_MAX_PAIRS,
) -> tuple[Tensor, Tensor, Tensor]:
    """Front-to-back alpha compositing of screen-space Gaussians.

    Returns ``rgb [I, H, W, 3]`` (premultiplied, no background), ``alpha [I, H, W]`` and the
    alpha-weighted z-depth ``depth_acc [I, H, W]``.
    """
    I, N = depths.shape
    feats = torch.cat([means2d, conics, opacities[..., None], colors, depths[..., None]], -1)
    gauss, pixel, seg_start = _contributing_pairs(feats.detach(), radii, depths.detach(), width, height, max_pairs)

    f = feats.reshape(I * N, -1)[gauss]  # differentiable gather [P, 10]
    hw = height * width
    in_image = pixel % hw
    px = (in_image % width).to(f.dtype) + 0.5
    py = (in_image // width).to(f.dtype) + 0.5
    _, alpha = _alpha(px, py, f)
    # Transmittance before each pair: exp of the segmented exclusive sum of log(1 - alpha).
    # float64 keeps the global running sum exact enough over millions of pairs.
    log1m = torch.log1p(-alpha).double()
    cs = torch.cumsum(log1m, 0)
    exclusive = cs - log1m
    trans = torch.exp(exclusive - exclusive[seg_start]).to(f.dtype)
    weight = alpha * trans
    contrib = torch.cat([weight[:, None] * f[:, 6:9], weight[:, None], (weight * f[:, 9])[:, None]], -1)
    out = torch.zeros(I * hw, 5, dtype=f.dtype, device=f.device).index_add(0, pixel, contrib)
    out = out.reshape(I, height, width, 5)
    return out[..., :3], out[..., 3], out[..., 4]
