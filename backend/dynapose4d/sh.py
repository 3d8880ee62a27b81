"""Real spherical harmonics up to degree 3, in the 3DGS/gsplat basis and ordering."""

from __future__ import annotations

import torch
from torch import Tensor

C0 = 0.28209479177387814
C1 = 0.4886025119029199
C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
C3 = (
    -0.5900435899266435,
    2.890611442640554,
    -0.4570457994644658,
    0.3731763325901154,
    -0.4570457994644658,
    1.445305721320277,
    -0.5900435899266435,
)


def sh_basis(dirs: Tensor, degree: int) -> Tensor:
    """Basis values ``[..., (degree+1)^2]`` at unit directions ``dirs [..., 3]``."""
    x, y, z = dirs.unbind(-1)
    out = [torch.full_like(x, C0)]
    if degree >= 1:
        out += [-C1 * y, C1 * z, -C1 * x]
    if degree >= 2:
        xx, yy, zz, xy, yz, xz = x * x, y * y, z * z, x * y, y * z, x * z
        out += [
            C2[0] * xy,
            C2[1] * yz,
            C2[2] * (2.0 * zz - xx - yy),
            C2[3] * xz,
            C2[4] * (xx - yy),
        ]
    if degree >= 3:
        out += [
            C3[0] * y * (3 * xx - yy),
            C3[1] * xy * z,
            C3[2] * y * (4 * zz - xx - yy),
            C3[3] * z * (2 * zz - 3 * xx - 3 * yy),
            C3[4] * x * (4 * zz - xx - yy),
            C3[5] * z * (xx - yy),
            C3[6] * x * (xx - 3 * yy),
        ]
    if degree > 3:
        raise ValueError(f"SH degree {degree} is not supported (max 3)")
    return torch.stack(out, -1)


def eval_sh(coeffs: Tensor, dirs: Tensor | None) -> Tensor:
    """Colours ``[..., 3]`` from coefficients ``[..., K, 3]``; ``+0.5`` and clamped at 0 like gsplat.

    ``dirs`` (from the camera to the Gaussian) is only needed for degree > 0.
    """
    k = coeffs.shape[-2]
    if k == 1:
        return (C0 * coeffs[..., 0, :] + 0.5).clamp_min(0.0)
    degree = int(round(k**0.5)) - 1
    basis = sh_basis(torch.nn.functional.normalize(dirs, dim=-1), degree)
    return ((basis[..., None] * coeffs).sum(-2) + 0.5).clamp_min(0.0)


def rotate_sh(coeffs: Tensor, rotation: Tensor) -> Tensor:
    """Coefficients ``[..., K, 3]`` of the colour field rotated by ``rotation [3, 3]``.

    The new field is f'(d) = f(R^-1 d). Each band rotates by a (2l+1)^2 matrix, found here by
    least squares on sample directions (exact: the bands are closed under rotation).
    """
    k = coeffs.shape[-2]
    degree = int(round(k**0.5)) - 1
    if degree == 0:
        return coeffs
    gen = torch.Generator().manual_seed(0)
    dirs = torch.nn.functional.normalize(torch.randn(64, 3, generator=gen, dtype=torch.float64), dim=-1)
    R = rotation.to(torch.float64)
    basis = sh_basis(dirs, degree)  # Y(d)
    basis_rot = sh_basis(dirs @ R, degree)  # Y(R^T d) = Y(R^-1 d)
    D = torch.zeros(k, k, dtype=torch.float64)
    D[0, 0] = 1.0
    for l in range(1, degree + 1):
        s = slice(l * l, (l + 1) * (l + 1))
        D[s, s] = torch.linalg.lstsq(basis[:, s], basis_rot[:, s]).solution  # Y(R^-1 d) = Y(d) D
    return (D.to(coeffs) @ coeffs) if coeffs.dim() == 2 else torch.einsum("ij,...jc->...ic", D.to(coeffs), coeffs)
