"""``render(gaussians, cameras, background)``: one entry point over three rasterisers.

- ``"numba"``: our numba-compiled tile rasteriser (CPU tensors only, the fast CPU path);
- ``"torch"``: our device-agnostic PyTorch rasteriser (CPU, and the CUDA fallback);
- ``"gsplat"``: gsplat's CUDA kernels.

``"auto"`` (the default, overridable with ``DYNAPOSE4D_RENDERER``) picks gsplat on CUDA when it
works, numba on the CPU when it imports, and the PyTorch rasteriser otherwise. All follow the
same rules (DESIGN.md §4).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

import torch
from torch import Tensor

from ..cameras import Cameras
from ..gaussians import Gaussians
from ..sh import eval_sh
from .pairs import DEFAULT_MAX_PAIRS, RenderBudgetError, rasterize
from .projection import EPS2D, NEAR_PLANE, project_gaussians

BACKENDS = ("auto", "numba", "torch", "gsplat")

__all__ = ["render", "RenderOutput", "RenderBudgetError", "choose_backend", "BACKENDS"]


@dataclass
class RenderOutput:
    """Rendered images; the leading dims are the Gaussians' batch shape, then the cameras'.

    rgb [..., C, H, W, 3] composited over the background; alpha [..., C, H, W];
    depth [..., C, H, W] expected z-depth (0 where nothing was hit); means2d [..., C, N, 2]
    screen positions (call ``retain_grad()`` on it for densification statistics);
    radii [..., C, N, 2] (0 = not visible).
    """

    rgb: Tensor
    alpha: Tensor
    depth: Tensor
    means2d: Tensor
    radii: Tensor
    backend: str


def choose_backend(device: torch.device, requested: str = "auto") -> str:
    requested = os.environ.get("DYNAPOSE4D_RENDERER", requested) if requested == "auto" else requested
    if requested not in BACKENDS:
        raise ValueError(f"unknown renderer {requested!r}; choose one of {', '.join(BACKENDS)}")
    if requested == "torch":
        return "torch"
    if device.type != "cuda":
        if requested == "gsplat":
            raise RuntimeError("the gsplat renderer needs CUDA tensors; use renderer='numba' or 'torch' on the CPU")
        problem = _numba_problem()
        if problem is None:
            return "numba"
        if requested == "numba":
            raise RuntimeError(f"{problem}; install numba or use renderer='torch'")
        return "torch"
    if requested == "numba":
        raise RuntimeError("the numba renderer needs CPU tensors; use renderer='gsplat' or 'torch' on CUDA")
    from .gsplat_backend import gsplat_problem

    problem = gsplat_problem(device.index or 0)
    if problem is None:
        return "gsplat"
    if requested == "gsplat":
        raise RuntimeError(problem)
    warnings.warn(f"{problem}; using the PyTorch rasteriser instead (slower)", stacklevel=3)
    return "torch"


def _numba_problem() -> str | None:
    try:
        from . import numba_raster  # noqa: F401  (the import is the check)
    except ImportError as e:
        return f"the numba rasteriser does not import ({e})"
    return None


def render(
    gaussians: Gaussians,
    cameras: Cameras,
    background: Tensor | float | None = None,
    *,
    backend: str = "auto",
    eps2d: float = EPS2D,
    near: float = NEAR_PLANE,
    max_pairs: int = DEFAULT_MAX_PAIRS,
) -> RenderOutput:
    """Render ``gaussians`` (batch shape ``[...]``) from ``cameras``.

    Cameras have batch shape ``[C]`` (shared by every scene), ``[..., C]`` (one set per scene),
    or ``[]`` (one camera; the C axis is then dropped from the outputs). ``background`` is a
    colour ``[3]``, per-camera colours ``[..., C, 3]``, a scalar, or None (black).
    Differentiable w.r.t. every Gaussian parameter.
    """
    # 1. Check inputs and bring scenes and cameras to [B, N] x [B, C].
    gaussians.validate()
    single_camera = cameras.batch_shape == ()
    if single_camera:
        cameras = Cameras(cameras.c2w[None], cameras.fovy[None], cameras.width, cameras.height)
    g_shape = gaussians.batch_shape
    if cameras.c2w.dim() == 3:  # shared cameras
        c_shape = cameras.batch_shape
    elif cameras.batch_shape[:-1] == g_shape:
        c_shape = cameras.batch_shape[-1:]
    else:
        raise ValueError(
            f"cameras batch shape {tuple(cameras.batch_shape)} does not match the Gaussians' "
            f"batch shape {tuple(g_shape)}; give [C] or {tuple(g_shape) + ('C',)}"
        )
    device, dtype = gaussians.means.device, gaussians.means.dtype
    B, N, C = int(torch.tensor(g_shape).prod()) if g_shape else 1, gaussians.num, c_shape[0]
    W, H = cameras.width, cameras.height
    flat = gaussians.map(lambda t: t.reshape((B,) + t.shape[len(g_shape):]))
    viewmats = cameras.viewmats.to(device, dtype).reshape(-1, C, 4, 4).expand(B, C, 4, 4)
    Ks = cameras.Ks.to(device, dtype).reshape(-1, C, 3, 3).expand(B, C, 3, 3)
    bg = _background(background, B, C, device, dtype)

    # 2. Rasterise.
    name = choose_backend(device, backend)
    lead = g_shape + (() if single_camera else (C,))
    if N == 0:
        rgb = torch.zeros(B, C, H, W, 3, device=device, dtype=dtype)
        alpha = depth_acc = torch.zeros(B, C, H, W, device=device, dtype=dtype)
        means2d = torch.zeros(B, C, 0, 2, device=device, dtype=dtype)
        radii = torch.zeros(B, C, 0, 2, device=device, dtype=torch.int32)
    elif name == "gsplat":
        from .gsplat_backend import render_gsplat

        rgb, alpha, depth_acc, means2d, radii = render_gsplat(
            flat.means, flat.quats, flat.scales, flat.opacities, flat.sh_coeffs, viewmats, Ks, W, H, eps2d, near
        )
    else:
        rgb, alpha, depth_acc, means2d, radii = _rasterize_cpu(
            name, flat, cameras, viewmats, Ks, lead, (B, C, N, W, H), eps2d, near, max_pairs
        )

    # 3. Background, expected depth, and the caller's shapes back (a tensor already in that
    # shape is returned as is; gsplat's means2d keeps its gradient only when no reshape is needed).
    rgb = rgb + (1.0 - alpha[..., None]) * bg[:, :, None, None, :]
    depth = torch.where(alpha > 1e-6, depth_acc / alpha.clamp_min(1e-6), torch.zeros_like(depth_acc))
    rgb, alpha, depth, radii = (t.reshape(lead + t.shape[2:]) for t in (rgb, alpha, depth, radii))
    if means2d.shape != lead + (N, 2):
        means2d = means2d.reshape(lead + (N, 2))
    return RenderOutput(rgb, alpha, depth, means2d, radii, backend=name)


def _rasterize_cpu(name, flat: Gaussians, cameras: Cameras, viewmats, Ks, lead, sizes, eps2d, near, max_pairs):
    """The CPU path of :func:`render` (``name``: numba or torch): project, colour, rasterise.
    Returns ``rgb, alpha, depth_acc`` as ``[B, C, H, W(, 3)]``, ``means2d`` in the caller's
    shape, ``radii [B, C, N, 2]``."""
    B, C, N, W, H = sizes
    if name == "numba" and _wants_fused_projection(flat, viewmats, Ks):
        from .numba_projection import project_gaussians_numba as project_fn
    else:
        project_fn = project_gaussians
    proj = project_fn(flat.means, flat.quats, flat.scales, flat.opacities, viewmats, Ks, W, H, eps2d, near)
    colors = _colors(flat, cameras, B, C)
    if name == "numba":
        from .numba_raster import rasterize_numba as rasterize_fn
    else:
        rasterize_fn = rasterize
    # The returned means2d must be the tensor the rasteriser consumes (in the caller's
    # shape), so that retain_grad() on it collects densification statistics.
    means2d = proj.means2d.reshape(lead + (N, 2))
    rgb, alpha, depth_acc = rasterize_fn(
        means2d.reshape(B * C, N, 2),
        proj.conics.reshape(B * C, N, 3),
        flat.opacities[:, None].expand(B, C, N).reshape(B * C, N),
        colors.reshape(B * C, N, 3),
        proj.depths.reshape(B * C, N),
        proj.radii.reshape(B * C, N, 2),
        W,
        H,
        max_pairs,
    )
    rgb, alpha, depth_acc = (t.reshape((B, C) + t.shape[1:]) for t in (rgb, alpha, depth_acc))
    radii = proj.radii
    return rgb, alpha, depth_acc, means2d, radii


def _wants_fused_projection(flat: Gaussians, viewmats: Tensor, Ks: Tensor) -> bool:
    """The fused numba projection serves training: Gaussians that want gradients, cameras that
    do not. Renders without gradients (a demo's ground-truth video, evaluation views, previews)
    keep the PyTorch projection, whose float32 results are those earlier releases made: a demo
    job's inputs are rendered again on resume and must match its checkpoint's digest."""
    wants_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (flat.means, flat.quats, flat.log_scales))
    return wants_grad and not (viewmats.requires_grad or Ks.requires_grad)


def _colors(flat: Gaussians, cameras: Cameras, B: int, C: int) -> Tensor:
    """Per-image Gaussian colours ``[B, C, N, 3]``; view-independent at SH degree 0."""
    coeffs = flat.sh_coeffs  # [B, N, K, 3]
    if coeffs.shape[-2] == 1:
        return eval_sh(coeffs, None)[:, None].expand(B, C, -1, 3)
    campos = cameras.positions.to(coeffs.device, coeffs.dtype).reshape(-1, C, 3).expand(B, C, 3)
    dirs = flat.means[:, None] - campos[:, :, None]
    return eval_sh(coeffs[:, None], dirs)


def _background(background, B: int, C: int, device, dtype) -> Tensor:
    if background is None:
        background = 0.0
    bg = torch.as_tensor(background, device=device, dtype=dtype)
    if bg.dim() == 0:
        bg = bg.expand(3)
    if bg.shape[-1] != 3:
        raise ValueError(f"background must be a colour [3] or [..., C, 3], got shape {tuple(bg.shape)}")
    return bg.reshape(-1, 3).expand(B * C, 3).reshape(B, C, 3) if bg.dim() == 1 else bg.reshape(B, C, 3)
