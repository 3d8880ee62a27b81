"""The CUDA path: gsplat's fused rasteriser, wrapped to our conventions."""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from .projection import EPS2D, NEAR_PLANE


@functools.lru_cache(maxsize=None)
def gsplat_problem(device_index: int) -> str | None:
    """None when gsplat rasterises on this CUDA device, else the reason it cannot.

    gsplat JIT-compiles its kernels on first use when no prebuilt wheel matches; a failure
    there is reported once and the caller falls back to the PyTorch rasteriser.
    """
    try:
        import gsplat
    except ImportError:
        return "gsplat is not installed (pip install gsplat)"
    device = torch.device("cuda", device_index)
    try:
        one = torch.zeros(1, 3, device=device)
        gsplat.rasterization(
            means=one,
            quats=torch.tensor([[1.0, 0, 0, 0]], device=device),
            scales=torch.full((1, 3), 0.1, device=device),
            opacities=torch.ones(1, device=device),
            colors=torch.ones(1, 3, device=device),
            viewmats=torch.eye(4, device=device)[None],
            Ks=torch.eye(3, device=device)[None],
            width=8,
            height=8,
        )
    except Exception as exc:  # compilation or driver failures surface here
        return f"gsplat failed to rasterise on {device}: {type(exc).__name__}: {exc}"
    return None


def render_gsplat(
    means: Tensor,  # [B, N, 3]
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,  # [B, N]
    sh_coeffs: Tensor,  # [B, N, K, 3]
    viewmats: Tensor,  # [B, C, 4, 4]
    Ks: Tensor,  # [B, C, 3, 3]
    width: int,
    height: int,
    eps2d: float = EPS2D,
    near: float = NEAR_PLANE,
):
    """Returns rgb [B, C, H, W, 3] (premultiplied), alpha [B, C, H, W], depth_acc, means2d, radii."""
    import gsplat

    degree = int(round(sh_coeffs.shape[-2] ** 0.5)) - 1
    colors, alphas, meta = gsplat.rasterization(
        means=means,
        quats=quats,
        scales=scales,
        opacities=opacities,
        colors=sh_coeffs,
        sh_degree=degree,
        viewmats=viewmats,
        Ks=Ks,
        width=width,
        height=height,
        near_plane=near,
        eps2d=eps2d,
        render_mode="RGB+D",
        packed=False,
    )
    return colors[..., :3], alphas[..., 0], colors[..., 3], meta["means2d"], meta["radii"]
