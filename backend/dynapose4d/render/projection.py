"""EWA projection of 3D Gaussians to screen space, with gsplat's rules (DESIGN.md §4).

Device-agnostic PyTorch; differentiable w.r.t. means, quats, scales (and so every parameter
that feeds them). Mirrors gsplat's fused CUDA projection:
- a Gaussian is culled when its centre is nearer than ``near`` or its opacity is below 1/255;
- the Jacobian is evaluated at the centre clamped to 1.3x the field of view (as gsplat does),
  which keeps footprints of off-screen Gaussians bounded;
- ``eps2d`` (0.3 px^2) is added to the screen-space covariance;
- the bounding radius is opacity-aware: ``ceil(min(3.33, sqrt(2 ln(255 opacity))) * std)``
  per axis, which always encloses the region where alpha >= 1/255.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..gaussians import quat_to_rotmat

ALPHA_MIN = 1.0 / 255.0
ALPHA_MAX = 0.999
TRANSMITTANCE_MIN = 1e-4
EPS2D = 0.3
NEAR_PLANE = 0.01


@dataclass
class Projected:
    """Screen-space Gaussians for each image.

    means2d [..., C, N, 2] pixels; conics [..., C, N, 3] (a, b, c) of the inverse covariance
    [[a, b], [b, c]]; depths [..., C, N] z-depth; radii [..., C, N, 2] int32 bounding
    half-extents in pixels, 0 where culled.
    """

    means2d: Tensor
    conics: Tensor
    depths: Tensor
    radii: Tensor


def project_gaussians(
    means: Tensor,  # [..., N, 3]
    quats: Tensor,  # [..., N, 4]
    scales: Tensor,  # [..., N, 3]
    opacities: Tensor,  # [..., N]
    viewmats: Tensor,  # [..., C, 4, 4] OpenCV world-to-camera
    Ks: Tensor,  # [..., C, 3, 3]
    width: int,
    height: int,
    eps2d: float = EPS2D,
    near: float = NEAR_PLANE,
) -> Projected:
    R = viewmats[..., :3, :3].unsqueeze(-3)  # [..., C, 1, 3, 3]
    t = viewmats[..., :3, 3].unsqueeze(-2)  # [..., C, 1, 3]
    means_c = (R @ means.unsqueeze(-3).unsqueeze(-1))[..., 0] + t  # [..., C, N, 3]
    # Covariance factor M = R_view R_q S, so that cov_c = M M^T.
    M = R @ (quat_to_rotmat(quats) * scales[..., None, :]).unsqueeze(-4)  # [..., C, N, 3, 3]

    fx = Ks[..., 0, 0, None]
    fy = Ks[..., 1, 1, None]
    cx = Ks[..., 0, 2, None]
    cy = Ks[..., 1, 2, None]
    x, y, z = means_c.unbind(-1)
    valid = z >= near
    z_safe = torch.where(valid, z, torch.ones_like(z))
    lim_x_pos = (width - cx) / fx + 0.3 * (0.5 * width / fx)
    lim_x_neg = cx / fx + 0.3 * (0.5 * width / fx)
    lim_y_pos = (height - cy) / fy + 0.3 * (0.5 * height / fy)
    lim_y_neg = cy / fy + 0.3 * (0.5 * height / fy)
    tx = z_safe * torch.minimum(torch.maximum(x / z_safe, -lim_x_neg), lim_x_pos)
    ty = z_safe * torch.minimum(torch.maximum(y / z_safe, -lim_y_neg), lim_y_pos)

    # Rows of the projection Jacobian J = [[fx/z, 0, -fx tx/z^2], [0, fy/z, -fy ty/z^2]].
    zero = torch.zeros_like(z_safe)
    j0 = torch.stack([fx / z_safe, zero, -fx * tx / z_safe**2], -1)  # [..., C, N, 3]
    j1 = torch.stack([zero, fy / z_safe, -fy * ty / z_safe**2], -1)
    u = (j0.unsqueeze(-2) @ M)[..., 0, :]  # J_0 M  [..., C, N, 3]
    v = (j1.unsqueeze(-2) @ M)[..., 0, :]
    cov_a = (u * u).sum(-1) + eps2d
    cov_b = (u * v).sum(-1)
    cov_c = (v * v).sum(-1) + eps2d
    det = (cov_a * cov_c - cov_b * cov_b).clamp_min(1e-10)
    conics = torch.stack([cov_c / det, -cov_b / det, cov_a / det], -1)
    means2d = torch.stack([fx * x / z_safe + cx, fy * y / z_safe + cy], -1)

    with torch.no_grad():
        op = opacities.detach().unsqueeze(-2).expand_as(z)
        extend = torch.sqrt(2.0 * torch.log(op.clamp_min(ALPHA_MIN) / ALPHA_MIN)).clamp_max(3.33)
        rx = torch.ceil(extend * torch.sqrt(cov_a.detach()))
        ry = torch.ceil(extend * torch.sqrt(cov_c.detach()))
        m = means2d.detach()
        inside = (m[..., 0] + rx > 0) & (m[..., 0] - rx < width) & (m[..., 1] + ry > 0) & (m[..., 1] - ry < height)
        keep = valid & (op >= ALPHA_MIN) & inside & (rx > 0) & (ry > 0)
        radii = torch.stack([rx, ry], -1) * keep[..., None]
        radii = radii.to(torch.int32)
    return Projected(means2d, conics, z, radii)
